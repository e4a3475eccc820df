//! `pvcheck compare BASE NEW`: is NEW worse than BASE? (issue 12)
//!
//! [`rundoc`] reads run and baseline files, [`fingerprint`] refuses unlike setups (listing
//! every difference), [`metrics`] picks the figures of each workload, [`gate`] gives each
//! (class, workload, metric) its verdict with the statistics of [`crate::stats`].
//! [`Comparison`] results feed every report (`crate::report`). [`history`] is the other
//! direction: change points over a results directory's nightly runs (`pvcheck history`).

pub mod fingerprint;
pub mod gate;
pub mod history;
pub mod metrics;
pub mod rundoc;
pub mod synthetic;

pub use fingerprint::Difference;
pub use gate::{Comparison, Noise, Verdict};
pub use rundoc::{ReadError, RunDoc, TrialDoc};

use crate::exit_code;

/// Why two results are not compared.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(
        "{base} and {new} are the same run ({run_id}): a run compared with itself proves nothing"
    )]
    SameRun {
        base: String,
        new: String,
        run_id: String,
    },
    #[error(
        "refusing to compare unlike setups ({} difference(s); --allow-mismatch compares anyway):\n{}",
        .0.len(),
        .0.iter().map(|d| format!("  {d}")).collect::<Vec<_>>().join("\n")
    )]
    Mismatch(Vec<Difference>),
    #[error("nothing to compare: no speed workload has results on both sides ({base} and {new})")]
    NothingInCommon { base: String, new: String },
}

impl CompareError {
    /// 2 for a file that cannot be read (bad input), 7 for a refusal.
    pub fn exit_code(&self) -> u8 {
        match self {
            CompareError::Read(_) => exit_code::USAGE,
            _ => exit_code::REFUSED,
        }
    }
}

/// A failed trial of the new side.
#[derive(Debug, Clone)]
pub struct FailedTrial {
    pub name: String,
    pub message: String,
    pub integrity: bool,
    /// Category `upgrade`: the upgraded driver could not take over the old one's objects.
    pub upgrade: bool,
}

/// The whole comparison.
#[derive(Debug, Clone)]
pub struct Report {
    pub base: RunDoc,
    pub new: RunDoc,
    /// Fingerprint differences (only with --allow-mismatch; otherwise the comparison is refused).
    pub differences: Vec<Difference>,
    pub comparisons: Vec<Comparison>,
    pub failed: Vec<FailedTrial>,
    /// Things the reader should know (classes or workloads on one side only).
    pub notes: Vec<String>,
}

impl Report {
    pub fn count(&self, v: Verdict) -> usize {
        self.comparisons.iter().filter(|c| c.verdict == v).count()
    }

    /// How many figures were not judged (inconclusive or unreliable).
    pub fn not_judged(&self) -> usize {
        self.comparisons
            .iter()
            .filter(|c| c.verdict.not_judged())
            .count()
    }

    /// The exit code of the gate: 1 a check failed in the new run (integrity first of all),
    /// 3 a regression, 4 figures not judged (inconclusive or unreliable) unless
    /// `allow_inconclusive`, else 0.
    pub fn exit_code(&self, allow_inconclusive: bool) -> u8 {
        if !self.failed.is_empty() {
            exit_code::CHECK_FAILED
        } else if self.count(Verdict::Regressed) > 0 {
            exit_code::REGRESSED
        } else if !allow_inconclusive && self.not_judged() > 0 {
            exit_code::INCONCLUSIVE
        } else {
            exit_code::OK
        }
    }

    /// The gate's verdict in one word, first in every report: `FAILED` (a check failed),
    /// `REGRESSED`, `NOT JUDGED` (figures inconclusive or unreliable), `PASS`.
    pub fn headline(&self) -> &'static str {
        if !self.failed.is_empty() {
            "FAILED"
        } else if self.count(Verdict::Regressed) > 0 {
            "REGRESSED"
        } else if self.not_judged() > 0 {
            "NOT JUDGED"
        } else {
            "PASS"
        }
    }

    /// One line: what the gate says, always with how many figures were not judged.
    pub fn summary(&self) -> String {
        let mut parts: Vec<String> = Verdict::ALL
            .iter()
            .rev()
            .filter(|v| self.count(**v) > 0)
            .map(|v| format!("{} {}", self.count(*v), v.as_str()))
            .collect();
        if parts.is_empty() {
            parts.push("no comparisons".into());
        }
        let integrity = self.failed.iter().filter(|f| f.integrity).count();
        let head = if integrity > 0 {
            format!("GATE FAILED: {integrity} integrity failure(s); ")
        } else if !self.failed.is_empty() {
            format!("GATE FAILED: {} check(s) failed; ", self.failed.len())
        } else {
            format!("{}: ", self.headline())
        };
        format!(
            "{head}{} of {} figure(s); {} not judged",
            parts.join(", "),
            self.comparisons.len(),
            self.not_judged()
        )
    }
}

/// The classes and speed workloads both sides have results for, in the new run's order.
fn common(base: &RunDoc, new: &RunDoc, notes: &mut Vec<String>) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for class in new.classes() {
        let mut ws = Vec::new();
        for t in new.trials.iter().filter(|t| t.class == class) {
            let Some(w) = t.workload() else { continue };
            let other = base.speed_trial(&class, w);
            match other {
                Some(o) if !o.repetitions.is_empty() && !t.repetitions.is_empty() => {
                    ws.push(w.to_string())
                }
                Some(_) | None => {}
            }
        }
        if !ws.is_empty() {
            out.push((class, ws));
        } else if new
            .trials
            .iter()
            .any(|t| t.class == class && t.workload().is_some() && !t.repetitions.is_empty())
        {
            notes.push(format!(
                "class {class}: no speed results in {} to compare with",
                base.label
            ));
        }
    }
    for class in base.classes() {
        if !new.classes().contains(&class)
            && base
                .trials
                .iter()
                .any(|t| t.class == class && !t.repetitions.is_empty())
        {
            notes.push(format!("class {class}: only in {}", base.label));
        }
    }
    out
}

/// Compares two results. Refuses the same run on both sides, and unlike setups unless
/// `allow_mismatch` (then the differences are part of the report).
pub fn compare(base: RunDoc, new: RunDoc, allow_mismatch: bool) -> Result<Report, CompareError> {
    compare_with_noise(base, new, allow_mismatch, &Noise::new())
}

/// The run-to-run noise a baseline pooled from several runs carries (`baseline save A B C …`):
/// per figure, 1.4826 × MAD of the log of each source run's median, where the baseline pools
/// at least [`history::NOISE_MIN_RUNS`] runs with that figure. So a pull-request gate that
/// keeps only its baseline file judges with measured noise, as a nightly with its history does.
pub fn baseline_noise(base: &RunDoc) -> Noise {
    let mut out = Noise::new();
    if base.baseline.is_none() {
        return out;
    }
    for t in base.trials.iter() {
        let Some(w) = t.workload() else { continue };
        let Some(first) = t.repetitions.first() else {
            continue;
        };
        for m in metrics::metrics_of(first) {
            let mut by_run: std::collections::BTreeMap<&str, Vec<f64>> = Default::default();
            for (b, run) in t.repetitions.iter().zip(&t.rep_runs) {
                if let Some(v) = metrics::value(b, m).filter(|v| *v > 0.0 && v.is_finite())
                    && !run.is_empty()
                {
                    by_run.entry(run.as_str()).or_default().push(v);
                }
            }
            if by_run.len() < history::NOISE_MIN_RUNS {
                continue;
            }
            let medians = by_run.values().filter_map(|v| crate::stats::median(v));
            if let Some(s) = history::log_sigma(medians) {
                out.insert((t.class.clone(), w.to_string(), m.key().to_string()), s);
            }
        }
    }
    out
}

/// History's σ for each figure where it has one, else the baseline's ([`baseline_noise`]).
pub fn noise_for(history: &Noise, base: &RunDoc) -> Noise {
    let mut out = baseline_noise(base);
    out.extend(history.iter().map(|(k, v)| (k.clone(), *v)));
    out
}

/// [`compare`], with the run-to-run noise of each figure known from history (it raises the
/// margins: `gate`) or carried by a baseline pooled from six runs or more.
pub fn compare_with_noise(
    base: RunDoc,
    new: RunDoc,
    allow_mismatch: bool,
    noise: &Noise,
) -> Result<Report, CompareError> {
    if let Some(id) = new
        .run_ids
        .iter()
        .find(|id| !id.is_empty() && base.run_ids.contains(id))
    {
        return Err(CompareError::SameRun {
            base: base.path.display().to_string(),
            new: new.path.display().to_string(),
            run_id: id.clone(),
        });
    }
    let mut notes = Vec::new();
    let classes = common(&base, &new, &mut notes);
    if classes.is_empty() {
        return Err(CompareError::NothingInCommon {
            base: base.label.clone(),
            new: new.label.clone(),
        });
    }
    let differences = fingerprint::differences(&base, &new, &classes);
    if !differences.is_empty() && !allow_mismatch {
        return Err(CompareError::Mismatch(differences));
    }
    let noise = &noise_for(noise, &base);
    // Every (class, workload) is judged on its own, in the new run's order (exact intervals:
    // no resampling, so one thread is enough).
    let mut comparisons: Vec<Comparison> = Vec::new();
    for (class, workloads) in &classes {
        let thresholds = new.thresholds(class);
        for w in workloads {
            if let (Some(b), Some(n)) = (base.speed_trial(class, w), new.speed_trial(class, w)) {
                comparisons.extend(gate::judge_workload(
                    class,
                    w,
                    b,
                    n,
                    &thresholds.for_workload(w),
                    noise,
                ));
            }
        }
    }
    let failed = new
        .trials
        .iter()
        .filter(|t| t.status == "failed")
        .map(|t| FailedTrial {
            name: t.name.clone(),
            message: t.failure_message.clone().unwrap_or_default(),
            integrity: t.is_integrity_failure(),
            upgrade: t.is_upgrade_failure(),
        })
        .collect();
    Ok(Report {
        base,
        new,
        differences,
        comparisons,
        failed,
        notes,
    })
}
