//! The verdict per (class, workload, metric): pass, improved, regressed, inconclusive, invalid.
//!
//! In this order (issue 12; REFERENCE.md "Deciding regressed vs noise"):
//! 1. **invalid** when a repetition on either side stalled, varied more than `max_cv` within
//!    its own run, or kept fewer than `min_qd` of its queue depth in flight (or the trial
//!    failed): such numbers describe the machine's trouble, not the volume;
//! 2. **inconclusive** with fewer than [`MIN_REPETITIONS`] repetitions on a side, or when the
//!    spread across a side's repetitions (1.4826 × MAD / median, a robust coefficient of
//!    variation) exceeds half the threshold (touchstone's rule: noise that large hides a
//!    change of the threshold's size);
//! 3. the rest form the family: a one-sided Mann–Whitney test towards "worse" (and one towards
//!    "better"), Holm-adjusted over the whole family, and a seeded bootstrap 95 % interval of
//!    the ratio of medians (new / old);
//!    - **regressed**: adjusted p < α **and** the whole interval beyond the threshold;
//!    - **improved**: adjusted p < α towards "better" and the whole interval beyond the
//!      threshold on the good side;
//!    - **pass**: the whole interval on the acceptable side of the threshold;
//!    - **inconclusive** otherwise (the interval straddles the threshold, or a change beyond it
//!      that is not significant after the correction, e.g. too few repetitions for the
//!      family's size: the reason says which).

use serde::Serialize;

use super::metrics::{self, Metric};
use super::rundoc::TrialDoc;
use crate::config::thresholds::Limits;
use crate::stats::{self, Alternative, RatioInterval};

/// Fewer repetitions than this on either side: inconclusive.
pub const MIN_REPETITIONS: usize = 5;
/// The family-wise error rate.
pub const ALPHA: f64 = 0.05;
/// Bootstrap resamples per comparison.
pub const RESAMPLES: u32 = 10_000;
pub const CONFIDENCE: f64 = 0.95;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Improved,
    Inconclusive,
    Invalid,
    Regressed,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Improved => "improved",
            Verdict::Inconclusive => "inconclusive",
            Verdict::Invalid => "invalid",
            Verdict::Regressed => "regressed",
        }
    }
    pub const ALL: [Verdict; 5] = [
        Verdict::Pass,
        Verdict::Improved,
        Verdict::Inconclusive,
        Verdict::Invalid,
        Verdict::Regressed,
    ];
}

/// One side's repetitions of one metric.
#[derive(Debug, Clone, Serialize)]
pub struct Side {
    pub values: Vec<f64>,
    pub median: Option<f64>,
    /// Spread across the repetitions: 1.4826 × MAD / median, the robust counterpart of the
    /// coefficient of variation (equal to it for normal noise), so that one odd repetition
    /// (the cold first one on a fresh volume) does not alone make a side unjudgeable.
    pub spread: Option<f64>,
}

impl Side {
    pub fn new(values: Vec<f64>) -> Self {
        Side {
            median: stats::median(&values),
            spread: stats::robust_spread(&values),
            values,
        }
    }
}

/// One verdict with everything that led to it.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub class: String,
    pub workload: String,
    pub metric: Metric,
    pub base: Side,
    pub new: Side,
    /// The regression threshold, a positive fraction.
    pub threshold: f64,
    /// median(new) / median(base) with its bootstrap interval.
    pub ratio: Option<RatioInterval>,
    /// One-sided p towards "worse", raw and Holm-adjusted (when tested).
    pub p_worse: Option<f64>,
    pub p_worse_adjusted: Option<f64>,
    pub p_better: Option<f64>,
    pub p_better_adjusted: Option<f64>,
    pub verdict: Verdict,
    pub reason: String,
}

impl Serialize for Metric {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.key())
    }
}

impl Comparison {
    /// The change in percent, signed as measured (new over base − 1).
    pub fn change_pct(&self) -> Option<f64> {
        self.ratio.map(|r| (r.ratio - 1.0) * 100.0)
    }
}

/// The bootstrap seed of one comparison: fixed per (class, workload, metric), so the same
/// two files always give the same intervals.
fn seed_of(class: &str, workload: &str, metric: Metric) -> u64 {
    crate::checks::derive_u64(&format!("pvcheck-gate:{class}:{workload}:{}", metric.key()))
}

/// Judges one (class, workload): every metric of the job. P-values are raw here; [`finish`]
/// adjusts them over the whole family and gives the final verdicts.
pub fn judge_workload(
    class: &str,
    workload: &str,
    base: &TrialDoc,
    new: &TrialDoc,
    limits: &Limits,
) -> Vec<Comparison> {
    let Some(first) = new.repetitions.first().or(base.repetitions.first()) else {
        return Vec::new();
    };
    let invalid = invalid_reason(base, new, limits);
    metrics::metrics_of(first)
        .into_iter()
        .map(|m| {
            let vals = |t: &TrialDoc| {
                t.repetitions
                    .iter()
                    .filter_map(|b| metrics::value(b, m))
                    .collect::<Vec<f64>>()
            };
            judge_metric(
                class,
                workload,
                m,
                Side::new(vals(base)),
                Side::new(vals(new)),
                m.threshold(limits),
                invalid.clone(),
            )
        })
        .collect()
}

fn invalid_reason(base: &TrialDoc, new: &TrialDoc, limits: &Limits) -> Option<String> {
    for (side, t) in [("base", base), ("new", new)] {
        if t.status == "failed" {
            return Some(format!("the trial failed in the {side} run"));
        }
        for (i, b) in t.repetitions.iter().enumerate() {
            if let Some(why) = metrics::invalid_reason(b, limits) {
                return Some(format!("{side} repetition {}: {why}", i + 1));
            }
        }
    }
    None
}

/// The verdict of one metric before the family's correction: invalid and inconclusive are
/// final; the rest carry raw p-values and are decided by [`finish`].
pub fn judge_metric(
    class: &str,
    workload: &str,
    metric: Metric,
    base: Side,
    new: Side,
    threshold: f64,
    invalid: Option<String>,
) -> Comparison {
    let ratio = stats::ratio_of_medians(
        &base.values,
        &new.values,
        RESAMPLES,
        CONFIDENCE,
        seed_of(class, workload, metric),
    );
    let mut c = Comparison {
        class: class.to_string(),
        workload: workload.to_string(),
        metric,
        base,
        new,
        threshold,
        ratio,
        p_worse: None,
        p_worse_adjusted: None,
        p_better: None,
        p_better_adjusted: None,
        verdict: Verdict::Inconclusive,
        reason: String::new(),
    };
    if let Some(why) = invalid {
        c.verdict = Verdict::Invalid;
        c.reason = why;
        return c;
    }
    let (nb, nn) = (c.base.values.len(), c.new.values.len());
    if nb < MIN_REPETITIONS || nn < MIN_REPETITIONS {
        c.reason = format!(
            "{nb} vs {nn} repetitions: at least {MIN_REPETITIONS} on each side are needed (pvcheck run --repeat {MIN_REPETITIONS})"
        );
        return c;
    }
    let spreads = [("base", c.base.spread), ("new", c.new.spread)];
    for (side, spread) in spreads {
        if let Some(sp) = spread
            && sp > threshold / 2.0
        {
            c.reason = format!(
                "the {side} repetitions spread {:.1}% (1.4826·MAD/median), more than half the {:.0}% threshold",
                sp * 100.0,
                threshold * 100.0
            );
            return c;
        }
    }
    let Some(_) = c.ratio else {
        c.reason = "no ratio: a median is zero or a value is missing".into();
        return c;
    };
    // "worse" is new < base for rates, new > base for latencies.
    let (worse, better) = if metric.higher_is_better() {
        (Alternative::Less, Alternative::Greater)
    } else {
        (Alternative::Greater, Alternative::Less)
    };
    c.p_worse = stats::mann_whitney(&c.new.values, &c.base.values, worse).map(|r| r.p);
    c.p_better = stats::mann_whitney(&c.new.values, &c.base.values, better).map(|r| r.p);
    c
}

/// Holm over every tested comparison of the run, then the final verdicts.
pub fn finish(comparisons: &mut [Comparison]) -> usize {
    let tested: Vec<usize> = (0..comparisons.len())
        .filter(|&i| comparisons[i].p_worse.is_some() && comparisons[i].verdict != Verdict::Invalid)
        .collect();
    let m = tested.len();
    let worse: Vec<f64> = tested
        .iter()
        .map(|&i| comparisons[i].p_worse.unwrap_or(1.0))
        .collect();
    let better: Vec<f64> = tested
        .iter()
        .map(|&i| comparisons[i].p_better.unwrap_or(1.0))
        .collect();
    let (aw, ab) = (stats::holm_adjust(&worse), stats::holm_adjust(&better));
    for (k, &i) in tested.iter().enumerate() {
        let c = &mut comparisons[i];
        c.p_worse_adjusted = Some(aw[k]);
        c.p_better_adjusted = Some(ab[k]);
        decide(c, m);
    }
    m
}

fn decide(c: &mut Comparison, family: usize) {
    let Some(r) = c.ratio else { return };
    let t = c.threshold;
    let higher = c.metric.higher_is_better();
    // Beyond the threshold towards worse / better; within the acceptable side.
    let (worse_beyond, better_beyond, acceptable) = if higher {
        (r.high < 1.0 - t, r.low > 1.0 + t, r.low >= 1.0 - t)
    } else {
        (r.low > 1.0 + t, r.high < 1.0 - t, r.high <= 1.0 + t)
    };
    let pw = c.p_worse_adjusted.unwrap_or(1.0);
    let pb = c.p_better_adjusted.unwrap_or(1.0);
    let interval = format!(
        "{:+.1}% … {:+.1}%",
        (r.low - 1.0) * 100.0,
        (r.high - 1.0) * 100.0
    );
    let limit = if higher { -t } else { t } * 100.0;
    if worse_beyond && pw < ALPHA {
        c.verdict = Verdict::Regressed;
        c.reason = format!(
            "the 95% interval {interval} lies beyond the {limit:+.0}% threshold; p = {pw:.4} after Holm over {family} comparisons"
        );
    } else if better_beyond && pb < ALPHA {
        c.verdict = Verdict::Improved;
        c.reason = format!(
            "the 95% interval {interval} lies beyond {:+.0}%; p = {pb:.4} after Holm",
            -limit
        );
    } else if acceptable {
        c.verdict = Verdict::Pass;
        c.reason = format!("the 95% interval {interval} stays within the {limit:+.0}% threshold");
    } else if worse_beyond {
        let best = 1.0 / binomial(c.base.values.len() + c.new.values.len(), c.new.values.len());
        c.verdict = Verdict::Inconclusive;
        c.reason = format!(
            "the 95% interval {interval} lies beyond the {limit:+.0}% threshold, but p = {pw:.4} after Holm over {family} comparisons is not below {ALPHA}{}",
            if best * family as f64 >= ALPHA {
                format!(
                    " (with {} vs {} repetitions no p below {best:.4} exists: more repetitions are needed for {family} comparisons)",
                    c.base.values.len(),
                    c.new.values.len()
                )
            } else {
                String::new()
            }
        );
    } else {
        c.verdict = Verdict::Inconclusive;
        c.reason = format!("the 95% interval {interval} reaches past the {limit:+.0}% threshold");
    }
}

fn binomial(n: usize, k: usize) -> f64 {
    let mut r = 1.0f64;
    for i in 0..k.min(n - k) {
        r = r * (n - i) as f64 / (i + 1) as f64;
    }
    r
}
