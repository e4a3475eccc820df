//! The report files a run or a comparison can write: `--junit`, `--markdown`, `--html`,
//! `--prometheus`. Each is written atomically (a temporary file renamed), so a dashboard's
//! collector never reads half a file.

use std::path::{Path, PathBuf};

use crate::compare::{Report, RunDoc};

/// Where each report goes (none by default).
#[derive(Debug, Clone, Default)]
pub struct ReportPaths {
    pub junit: Option<PathBuf>,
    pub markdown: Option<PathBuf>,
    pub html: Option<PathBuf>,
    pub prometheus: Option<PathBuf>,
    /// `--push-metrics`: the Pushgateway.
    pub push: Option<super::push::PushTarget>,
}

impl ReportPaths {
    pub fn is_empty(&self) -> bool {
        self.junit.is_none()
            && self.markdown.is_none()
            && self.html.is_none()
            && self.prometheus.is_none()
            && self.push.is_none()
    }
}

/// What reports are made of: a run, and the comparison when there is one.
pub struct ReportInput<'a> {
    pub run: &'a RunDoc,
    pub comparison: Option<&'a Report>,
    /// A comparison was asked for (`--baseline`) but refused: why (unlike setups, …).
    pub refused: Option<&'a str>,
    /// `--allow-inconclusive`: figures not judged do not fail the gate.
    pub allow_inconclusive: bool,
    /// `<results>`: the trend chart reads `<results>/runs/*.json`.
    pub results: &'a Path,
}

/// The gate's verdict, which every report states first (issue 19: never greener than the
/// verdict).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateState {
    /// Asked for, but no comparison was made.
    Refused,
    /// A check of the new run failed.
    Failed,
    Regressed,
    /// Figures inconclusive or unreliable; `accepted` with `--allow-inconclusive`.
    NotJudged {
        accepted: bool,
    },
    Pass,
}

impl GateState {
    pub fn word(self) -> &'static str {
        match self {
            GateState::Refused => "REFUSED",
            GateState::Failed => "FAILED",
            GateState::Regressed => "REGRESSED",
            GateState::NotJudged { .. } => "NOT JUDGED",
            GateState::Pass => "PASS",
        }
    }
    /// Whether the gate failed (a CI system must show red).
    pub fn is_failure(self) -> bool {
        !matches!(
            self,
            GateState::Pass | GateState::NotJudged { accepted: true }
        )
    }
}

impl ReportInput<'_> {
    /// The gate's state; `None` when no comparison was asked for.
    pub fn gate(&self) -> Option<GateState> {
        if self.refused.is_some() {
            return Some(GateState::Refused);
        }
        let r = self.comparison?;
        Some(match r.headline() {
            "FAILED" => GateState::Failed,
            "REGRESSED" => GateState::Regressed,
            "NOT JUDGED" => GateState::NotJudged {
                accepted: self.allow_inconclusive,
            },
            _ => GateState::Pass,
        })
    }
}

fn write_atomic(path: &Path, text: &str) -> Result<(), String> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "report".into());
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            format!("cannot write {}: {e}", path.display())
        })
}

/// Writes every requested report; returns the problems, one line each.
pub fn write_all(paths: &ReportPaths, input: &ReportInput) -> Vec<String> {
    let mut problems = Vec::new();
    let mut put = |p: &Option<PathBuf>, make: &dyn Fn() -> String| {
        if let Some(p) = p
            && let Err(e) = write_atomic(p, &make())
        {
            problems.push(e);
        }
    };
    put(&paths.junit, &|| super::junit::render(input));
    put(&paths.markdown, &|| super::markdown::render(input));
    put(&paths.html, &|| super::html::render(input));
    put(&paths.prometheus, &|| super::prometheus::render(input));
    problems
}

/// `--push-metrics`: pushes the figures; a failure is one line on stderr and changes no exit
/// code (the exit code is the storage's verdict; the dashboard's "last run" turns red when a
/// night is missing). Returns whether everything asked for was pushed.
pub fn push(paths: &ReportPaths, input: &ReportInput) -> bool {
    let Some(target) = &paths.push else {
        return true;
    };
    match super::push::push(target, input) {
        Ok(_) => true,
        Err(e) => {
            eprintln!(
                "pvcheck: warning: {e} (the exit code stays the verdict's; the dashboard will miss this run)"
            );
            false
        }
    }
}
