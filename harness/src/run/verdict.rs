//! How a run ends: the exit code from the trials' outcomes, and the last lines a user reads —
//! the verdict (passed / failed by category / ignored, with what the exit code means), then
//! where the result file is (or why there is none).

use std::path::Path;

use crate::exit_code;
use crate::report::results::{FailureCategory, Status, TrialResult};
use crate::report::summary::Summary;

/// What decides the exit code besides the trials.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ending {
    /// Something the run created could not be removed.
    pub leftovers: bool,
    /// The result file could not be written.
    pub no_result: bool,
    /// `--push-metrics` failed: said in the verdict line, never in the exit code.
    pub not_pushed: bool,
}

/// A failure `--strict` made of a trial that passed with warnings.
pub fn is_strict_failure(t: &TrialResult) -> bool {
    t.failure
        .as_ref()
        .is_some_and(|f| f.category == FailureCategory::Strict)
}

/// The exit code (see `crate::exit_code`):
/// 1 when a check failed for a reason in the volume or driver (data, setup, protocol, timeout)
/// or the run could not remove what it created; 5 when the only failures are the harness's own
/// (infrastructure) or the result file could not be written; 4 when the only failures are
/// warnings `--strict` refused; 6 when nothing was tested (every trial ignored: nothing passed,
/// nothing failed); 0 otherwise.
pub fn exit_code(trials: &[TrialResult], ending: Ending) -> u8 {
    let failed: Vec<&TrialResult> = trials
        .iter()
        .filter(|t| t.status == Status::Failed)
        .collect();
    let real = failed.iter().any(|t| {
        !is_strict_failure(t)
            && t.failure
                .as_ref()
                .is_some_and(|f| f.category != FailureCategory::Infrastructure)
    });
    let infra = failed.iter().any(|t| {
        !is_strict_failure(t)
            && t.failure
                .as_ref()
                .is_none_or(|f| f.category == FailureCategory::Infrastructure)
    });
    if real || ending.leftovers {
        exit_code::FAILED
    } else if infra || ending.no_result {
        exit_code::INFRASTRUCTURE
    } else if !failed.is_empty() {
        exit_code::INCONCLUSIVE
    } else if !trials.iter().any(|t| t.status == Status::Passed) {
        exit_code::NOTHING_TESTED
    } else {
        exit_code::OK
    }
}

/// `pvcheck: FAILED: 2 of 45 trials failed (1 setup, 1 data), 38 passed, 5 ignored, 3 with warnings; exit 1: at least one check failed`.
pub fn line(s: &Summary, code: u8, ending: Ending) -> String {
    let mut parts = Vec::new();
    if s.failed > 0 {
        // `--strict` failures are said as what they are: a warning, not a finding.
        let strict = s.failed_in(FailureCategory::Strict);
        let because = format!("{strict} because of a warning (--strict)");
        let of = format!(
            "{} of {} trial{} failed",
            s.failed,
            s.total,
            if s.total == 1 { "" } else { "s" }
        );
        parts.push(if strict == s.failed {
            format!("{of} because of a warning (--strict)")
        } else if strict > 0 {
            format!("{of} ({}; {because})", s.categories_text_without_strict())
        } else {
            format!("{of} ({})", s.categories_text())
        });
    }
    parts.push(format!("{} passed", s.passed));
    if s.ignored > 0 {
        parts.push(format!("{} ignored", s.ignored));
    }
    if s.interrupted > 0 {
        parts.push(format!("{} interrupted", s.interrupted));
    }
    if s.with_warnings > 0 {
        parts.push(format!("{} with warnings", s.with_warnings));
    }
    if ending.leftovers {
        parts.push("something the run created could not be removed".into());
    }
    if ending.no_result {
        parts.push("no result file".into());
    }
    if ending.not_pushed {
        parts.push("the Pushgateway did NOT get the metrics".into());
    }
    let head = match code {
        exit_code::NOTHING_TESTED => "NOTHING TESTED",
        exit_code::OK => "PASSED",
        exit_code::INCONCLUSIVE => "INCONCLUSIVE",
        exit_code::REGRESSED => "REGRESSED",
        exit_code::INFRASTRUCTURE => "HARNESS FAILURE",
        exit_code::INTERRUPTED => "INTERRUPTED",
        _ if s.failed_in(FailureCategory::Data) > 0 => "FAILED, DATA DAMAGED",
        _ => "FAILED",
    };
    format!(
        "pvcheck: {head}: {}; exit {code}: {}",
        parts.join(", "),
        exit_code::meaning(code)
    )
}

/// The very last line: where the result is, or why there is none.
pub fn result_line(path: Result<&Path, &str>) -> String {
    match path {
        Ok(p) => format!("pvcheck: results in {}", p.display()),
        Err(e) => format!("pvcheck: NO result file: {e}"),
    }
}
