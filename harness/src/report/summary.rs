//! Counts over a run's trials: what the verdict line says and what dashboards read
//! (`summary` in the result file).

use std::collections::BTreeMap;

use serde::Serialize;

use super::results::{FailureCategory, Status, TrialResult};

/// `summary` in the result file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Trials in the result (selected trials; a filtered run has fewer, see `selection`).
    pub total: usize,
    pub passed: usize,
    pub failed: usize,
    /// Failed trials per category; every category is present (0 when none).
    pub failed_by_category: BTreeMap<&'static str, usize>,
    pub ignored: usize,
    /// Running when SIGINT/SIGTERM arrived (partial results only).
    pub interrupted: usize,
    /// Trials with at least one warning (whatever their status).
    pub with_warnings: usize,
    /// Warnings over all trials.
    pub warnings: usize,
}

impl Summary {
    pub fn of(trials: &[TrialResult]) -> Summary {
        let mut s = Summary {
            total: trials.len(),
            failed_by_category: FailureCategory::ALL
                .iter()
                .map(|c| (c.as_str(), 0))
                .collect(),
            ..Summary::default()
        };
        for t in trials {
            match t.status {
                Status::Passed => s.passed += 1,
                Status::Failed => {
                    s.failed += 1;
                    let c = t
                        .failure
                        .as_ref()
                        .map_or(FailureCategory::Infrastructure, |f| f.category);
                    *s.failed_by_category.entry(c.as_str()).or_default() += 1;
                }
                Status::Ignored => s.ignored += 1,
                Status::Interrupted => s.interrupted += 1,
            }
            if !t.warnings.is_empty() {
                s.with_warnings += 1;
                s.warnings += t.warnings.len();
            }
        }
        s
    }

    /// Failed trials of `c`.
    pub fn failed_in(&self, c: FailureCategory) -> usize {
        self.failed_by_category
            .get(c.as_str())
            .copied()
            .unwrap_or(0)
    }

    /// `1 setup, 1 data` (categories with failures, in [`FailureCategory::ALL`] order).
    pub fn categories_text(&self) -> String {
        self.categories_text_where(|_| true)
    }

    /// [`Summary::categories_text`] without `strict` (said apart: "because of a warning").
    pub fn categories_text_without_strict(&self) -> String {
        self.categories_text_where(|c| c != FailureCategory::Strict)
    }

    fn categories_text_where(&self, keep: impl Fn(FailureCategory) -> bool) -> String {
        FailureCategory::ALL
            .iter()
            .filter(|c| keep(**c) && self.failed_in(**c) > 0)
            .map(|c| format!("{} {}", self.failed_in(*c), c.as_str()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}
