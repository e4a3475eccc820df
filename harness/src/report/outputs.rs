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
}

impl ReportPaths {
    pub fn is_empty(&self) -> bool {
        self.junit.is_none()
            && self.markdown.is_none()
            && self.html.is_none()
            && self.prometheus.is_none()
    }
}

/// What reports are made of: a run, and the comparison when there is one.
pub struct ReportInput<'a> {
    pub run: &'a RunDoc,
    pub comparison: Option<&'a Report>,
    /// `<results>`: the trend chart reads `<results>/runs/*.json`.
    pub results: &'a Path,
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
