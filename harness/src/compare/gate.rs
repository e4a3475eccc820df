//! The verdict per (class, workload, metric): pass, improved, inconclusive, unreliable,
//! regressed (issue 19; REFERENCE.md "Deciding regressed vs noise"; docs/gate.md).
//!
//! Each figure is judged on its own — no correction over the run's family: what holds false
//! alarms down is a **margin**, not Holm (with 5 against 5 Holm could never fire past 12
//! figures, so a whole run could never say "regressed").
//!
//! 1. On the log scale, the shift of the new side against the base side: the Hodges–Lehmann
//!    estimate (median of the pairwise log ratios) with an exact distribution-free interval
//!    (order statistics of the pairwise differences: `stats::shift`), each bound at one-sided
//!    confidence ≥ 1 − [`ALPHA`]. Oriented so that positive means worse.
//! 2. The margin δ: the class's threshold for the figure, raised to [`SIGMA_FACTOR`]·σ of the
//!    figure's run-to-run noise ([`RunToRun`]): σ as measured in the results' history (a stable
//!    segment of at least six runs: `compare::history`), or, until history has measured it, the
//!    class's `thresholds.assumed_noise` (12 % by default: two runs of one setup on a shared
//!    machine differ by that much, which their repetitions cannot show; docs/gate.md).
//!    - **regressed**: the lower bound of "worse" lies beyond δ;
//!    - **improved**: the upper bound of "worse" lies below −δ (better beyond δ);
//!    - **pass**: the upper bound of "worse" stays within the class's *threshold* (a regression
//!      of the threshold or more is excluded at the bound's confidence; a possible improvement
//!      is no reason to hold a patch). Not within δ: noise raises the bar for "regressed", never
//!      lowers it for "pass", so a slowdown hidden in a noisy figure's margin is not judged;
//!    - **inconclusive** otherwise: the interval reaches past δ, or the repetitions are too few
//!      for an exact bound (3 against 3): more repetitions decide.
//! 3. **Noise never turns into a pass.** A repetition that stalled, varied more than `max_cv`
//!    within its run or kept fewer than `min_qd` of its queue depth (or a failed trial) makes
//!    the figure **unreliable** unless the figure regressed anyway; and a change whose every new
//!    repetition is worse than every base repetition by more than 2δ is **regressed** whatever
//!    the flags or the interval.

use serde::Serialize;

use super::metrics::{self, Metric};
use super::rundoc::TrialDoc;
use crate::config::thresholds::Limits;
use crate::stats;

/// The one-sided error of each bound of the interval: a two-sided 95 % interval.
pub const ALPHA: f64 = 0.025;
/// The margin is at least this many run-to-run standard deviations (of the log figure) where
/// history knows them: two runs' offsets differ by √2·σ, so 3σ is 2.1 of their standard
/// deviations before the estimate alone, and further still for the bound.
pub const SIGMA_FACTOR: f64 = 3.0;
/// "Regressed whatever the flags" needs this many repetitions on each side (with fewer, two
/// noisy values can be apart by chance).
pub const DOMINANCE_MIN_REPETITIONS: usize = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Improved,
    Inconclusive,
    Unreliable,
    Regressed,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Improved => "improved",
            Verdict::Inconclusive => "inconclusive",
            Verdict::Unreliable => "unreliable",
            Verdict::Regressed => "regressed",
        }
    }
    /// Not judged: neither a pass nor a regression could be said.
    pub fn not_judged(self) -> bool {
        matches!(self, Verdict::Inconclusive | Verdict::Unreliable)
    }
    pub const ALL: [Verdict; 5] = [
        Verdict::Pass,
        Verdict::Improved,
        Verdict::Inconclusive,
        Verdict::Unreliable,
        Verdict::Regressed,
    ];
}

/// One side's repetitions of one metric.
#[derive(Debug, Clone, Serialize)]
pub struct Side {
    pub values: Vec<f64>,
    pub median: Option<f64>,
    /// Spread across the repetitions: 1.4826 × MAD / median (shown, not judged on).
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

/// The change new / base as a ratio: the Hodges–Lehmann estimate and its exact interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RatioInterval {
    pub ratio: f64,
    /// 0 and +∞ when the repetitions are too few for a bound.
    pub low: f64,
    pub high: f64,
    /// One-sided confidence of each bound (0 when unbounded).
    pub confidence: f64,
}

impl RatioInterval {
    /// The interval's ends as "worse" distances on the log scale (positive = worse): a drop for
    /// rates, a rise for latencies.
    pub fn worse_bounds(&self, metric: Metric) -> (f64, f64) {
        if metric.higher_is_better() {
            (-self.high.ln(), -self.low.ln())
        } else {
            (self.low.ln(), self.high.ln())
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
    /// The class's regression threshold, a positive fraction.
    pub threshold: f64,
    /// The margin used (≥ the threshold), a positive fraction of the base figure.
    pub margin: f64,
    /// The run-to-run σ of the log figure the margin was raised with: measured or assumed.
    pub noise: RunToRun,
    /// new / base with its interval.
    pub ratio: Option<RatioInterval>,
    /// Why a repetition cannot be trusted (stalls, within-run variation, queue depth).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<String>,
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
    /// Whether more repetitions could still decide an inconclusive figure: the interval has no
    /// bound yet, or reaches into "pass" (within the threshold) or into "regressed" (beyond the
    /// margin). An interval wholly between the two is a change larger than the threshold and
    /// smaller than the run-to-run noise can tell: more repetitions of the same run narrow it
    /// but cannot move it, so `run --baseline` does not spend them there.
    pub fn more_repetitions_may_decide(&self) -> bool {
        if self.verdict != Verdict::Inconclusive {
            return false;
        }
        let Some(r) = self.ratio.filter(|r| r.confidence > 0.0) else {
            return true;
        };
        let (worse_low, worse_high) = r.worse_bounds(self.metric);
        worse_low <= log_margin(self.metric, self.threshold)
            || worse_high > log_margin(self.metric, self.margin)
    }
    /// The margin as a signed percentage in the figure's bad direction (`-5%`, `+10%`).
    pub fn margin_pct(&self) -> f64 {
        if self.metric.higher_is_better() {
            -self.margin * 100.0
        } else {
            self.margin * 100.0
        }
    }
}

/// Run-to-run noise per figure, from history: (class, workload, metric key) → σ of the log
/// figure. Empty when no history is known.
pub type Noise = std::collections::BTreeMap<(String, String, String), f64>;

/// What is known of one figure's run-to-run noise: the σ of its log between runs of one setup
/// (volumes made afresh, minutes or nights apart), which no run's own repetitions show.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "source", content = "sigma", rename_all = "lowercase")]
pub enum RunToRun {
    /// Measured over past runs: the results' history, or the runs a baseline pools.
    Measured(f64),
    /// Not measured yet: the class's `thresholds.assumed_noise`.
    Assumed(f64),
    /// Neither (`assumed_noise: 0%` and no history): the margin is the bare threshold.
    Unknown,
}

impl RunToRun {
    /// History's σ where it has one, else the class's assumption (none when it is 0).
    pub fn of(measured: Option<f64>, assumed: f64) -> Self {
        match measured {
            Some(s) if s.is_finite() && s >= 0.0 => RunToRun::Measured(s),
            _ if assumed > 0.0 && assumed.is_finite() => RunToRun::Assumed(assumed),
            _ => RunToRun::Unknown,
        }
    }
    pub fn sigma(self) -> Option<f64> {
        match self {
            RunToRun::Measured(s) | RunToRun::Assumed(s) => Some(s),
            RunToRun::Unknown => None,
        }
    }
}

/// Judges one (class, workload): every metric of the job.
pub fn judge_workload(
    class: &str,
    workload: &str,
    base: &TrialDoc,
    new: &TrialDoc,
    limits: &Limits,
    noise: &Noise,
) -> Vec<Comparison> {
    let Some(first) = new.repetitions.first().or(base.repetitions.first()) else {
        return Vec::new();
    };
    let flags = flags_of(base, new, limits);
    let waits = CpuWaits {
        base: median_wait(base),
        new: median_wait(new),
        limit: limits.max_cpu_wait,
    };
    metrics::metrics_of(first)
        .into_iter()
        .map(|m| {
            let vals = |t: &TrialDoc| {
                t.repetitions
                    .iter()
                    .filter_map(|b| metrics::value(b, m))
                    .collect::<Vec<f64>>()
            };
            let measured = noise
                .get(&(class.to_string(), workload.to_string(), m.key().to_string()))
                .copied();
            judge_metric(
                class,
                workload,
                m,
                Side::new(vals(base)),
                Side::new(vals(new)),
                m.threshold(limits),
                RunToRun::of(measured, limits.assumed_noise),
                flags.clone(),
            )
        })
        .map(|c| not_blamed_on_the_machine(c, &waits))
        .collect()
}

/// How long each side's agent waited for a CPU: the median over its repetitions of
/// `cpu.wait_share` (the largest share of the measured time one engine thread spent runnable
/// but not running), `None` where the results do not say.
struct CpuWaits {
    base: Option<f64>,
    new: Option<f64>,
    /// `max_cpu_wait`: for latencies, a larger difference between the sides is the machine's.
    limit: f64,
}

fn median_wait(t: &TrialDoc) -> Option<f64> {
    let mut w: Vec<f64> = t
        .repetitions
        .iter()
        .filter_map(|b| metrics::at(b, &["cpu", "wait_share"]))
        .filter(|w| w.is_finite())
        .map(|w| w.clamp(0.0, 0.99))
        .collect();
    if w.is_empty() {
        return None;
    }
    w.sort_by(f64::total_cmp);
    Some(w[w.len() / 2])
}

/// The machine is not blamed on the volume. A thread that waited for a CPU a share `w` of the
/// time did its work in `1 − w` of it, so a side whose agent waited more may have lost up to
/// `ln((1 − w_other)/(1 − w_self))` of a rate, on the log scale. A regression of a rate must
/// clear the margin *plus* what the new side's extra wait explains; a pass or an improvement
/// must hold *after* what the base side's extra wait explains. Latencies take a scheduling
/// delay whole, so a latency verdict towards the side that waited more than `max_cpu_wait`
/// longer is not judged. Such figures are **unreliable** (exit 4), never a pass, and the
/// reason says what the verdict would have been. Where the results carry no wait (older
/// agents), nothing changes.
fn not_blamed_on_the_machine(mut c: Comparison, w: &CpuWaits) -> Comparison {
    let (Some(wb), Some(wn), Some(r)) = (w.base, w.new, c.ratio) else {
        return c;
    };
    // Positive: the new side waited more (a slowdown it may explain).
    let explained = ((1.0 - wb) / (1.0 - wn)).ln();
    let margin_log = log_margin(c.metric, c.margin);
    let rate = c.metric.higher_is_better();
    // The interval's ends as "worse" distances on the log scale (positive = worse).
    let (worse_low, worse_high) = r.worse_bounds(c.metric);
    let who = |wait: f64, other: f64, side: &str| {
        format!(
            "the {side} run's agent waited for a CPU {:.1}% of the measured time, the other's {:.1}%",
            wait * 100.0,
            other * 100.0
        )
    };
    let blame = match c.verdict {
        Verdict::Regressed if explained > 0.0 => {
            let kept = if rate {
                r.confidence > 0.0 && worse_low > margin_log + explained
            } else {
                wn - wb <= w.limit
            };
            (!kept).then(|| who(wn, wb, "new"))
        }
        Verdict::Pass | Verdict::Improved if explained < 0.0 => {
            let kept = if rate {
                match c.verdict {
                    Verdict::Pass => worse_high - explained <= margin_log,
                    _ => worse_high - explained < -margin_log,
                }
            } else {
                wb - wn <= w.limit
            };
            (!kept).then(|| who(wb, wn, "base"))
        }
        _ => None,
    };
    let Some(why) = blame else {
        return c;
    };
    let change = c
        .change_pct()
        .map_or(String::new(), |p| format!(" {p:+.1}%"));
    c.reason = format!(
        "not judged: {why}, which alone may account for the{change} change (up to {:.1}% of a rate): the machine's other work, not the volume, may have set it (the verdict would have been {}: {})",
        (1.0 - (-explained.abs()).exp()) * 100.0,
        c.verdict.as_str(),
        c.reason
    );
    c.verdict = Verdict::Unreliable;
    c
}

/// Every reason a repetition of either side cannot be trusted, in order.
fn flags_of(base: &TrialDoc, new: &TrialDoc, limits: &Limits) -> Vec<String> {
    let mut out = Vec::new();
    for (side, t) in [("base", base), ("new", new)] {
        if t.status == "failed" {
            out.push(format!("the trial failed in the {side} run"));
        }
        for (i, b) in t.repetitions.iter().enumerate() {
            if let Some(why) = metrics::invalid_reason(b, limits) {
                out.push(format!("{side} repetition {}: {why}", i + 1));
            }
        }
    }
    out
}

/// `ln` of the ratio at which a change of `fraction` in the bad direction begins, as a positive
/// distance on the log scale: `−ln(1 − f)` for rates, `ln(1 + f)` for latencies.
fn log_margin(metric: Metric, fraction: f64) -> f64 {
    if metric.higher_is_better() {
        -(1.0 - fraction.min(0.99)).ln()
    } else {
        fraction.ln_1p()
    }
}

/// The fraction a log distance stands for, in the figure's bad direction (inverse of
/// [`log_margin`]).
fn fraction_of(metric: Metric, log: f64) -> f64 {
    if metric.higher_is_better() {
        1.0 - (-log).exp()
    } else {
        log.exp_m1()
    }
}

/// The flags in a reason: all of them when few, else the first two and how many more (the
/// result file keeps every one in `flags`).
fn said(flags: &[String]) -> String {
    match flags.len() {
        0..=3 => flags.join("; "),
        n => format!("{}; {} and {} more", flags[0], flags[1], n - 2),
    }
}

fn pct(x: f64) -> String {
    format!("{:+.1}%", x * 100.0)
}

/// The verdict of one metric.
#[allow(clippy::too_many_arguments)]
pub fn judge_metric(
    class: &str,
    workload: &str,
    metric: Metric,
    base: Side,
    new: Side,
    threshold: f64,
    noise: RunToRun,
    flags: Vec<String>,
) -> Comparison {
    let by_threshold = log_margin(metric, threshold);
    let margin_log = match noise.sigma() {
        Some(s) if SIGMA_FACTOR * s > by_threshold => SIGMA_FACTOR * s,
        _ => by_threshold,
    };
    let margin = fraction_of(metric, margin_log);
    let positive = |v: &[f64]| v.iter().all(|x| *x > 0.0 && x.is_finite());
    let shift = if positive(&base.values) && positive(&new.values) {
        let ln = |v: &[f64]| v.iter().map(|x| x.ln()).collect::<Vec<f64>>();
        stats::shift(&ln(&base.values), &ln(&new.values), ALPHA)
    } else {
        None
    };
    let mut c = Comparison {
        class: class.to_string(),
        workload: workload.to_string(),
        metric,
        base,
        new,
        threshold,
        margin,
        noise,
        ratio: shift.map(|s| RatioInterval {
            ratio: s.estimate.exp(),
            low: s.low.exp(),
            high: s.high.exp(),
            confidence: s.one_sided_confidence,
        }),
        flags,
        verdict: Verdict::Inconclusive,
        reason: String::new(),
    };
    let Some(s) = shift else {
        c.verdict = if c.flags.is_empty() {
            Verdict::Inconclusive
        } else {
            Verdict::Unreliable
        };
        c.reason = if c.base.values.is_empty() || c.new.values.is_empty() {
            format!(
                "{} vs {} repetitions with this figure: nothing to compare",
                c.base.values.len(),
                c.new.values.len()
            )
        } else {
            "a value is zero, negative or missing: no ratio".into()
        };
        return c;
    };
    // Oriented: positive = worse.
    let worse = |d: f64| if metric.higher_is_better() { -d } else { d };
    let (worse_low, worse_high) = if metric.higher_is_better() {
        (worse(s.high), worse(s.low))
    } else {
        (worse(s.low), worse(s.high))
    };
    let worse_min = if metric.higher_is_better() {
        worse(s.max)
    } else {
        worse(s.min)
    };
    let (nb, nn) = (c.base.values.len(), c.new.values.len());
    let limit = pct(c.margin_pct() / 100.0);
    let threshold_signed = worse(threshold);
    let raised = margin_log > by_threshold;
    let min_runs = super::history::NOISE_MIN_RUNS;
    let why_margin = match noise {
        RunToRun::Measured(sig) if raised => format!(
            " (the {} threshold raised to {SIGMA_FACTOR}σ, σ = {:.1}% run to run as measured over past runs: the results' history or the baseline's)",
            pct(threshold_signed),
            sig * 100.0
        ),
        RunToRun::Assumed(sig) if raised => format!(
            " (the {} threshold raised to {SIGMA_FACTOR}σ, σ = {:.1}% run to run as assumed by `thresholds.assumed_noise` until the results' history holds {min_runs} runs of this setup since its last change)",
            pct(threshold_signed),
            sig * 100.0
        ),
        _ => String::new(),
    };
    // Said with a regression judged against the bare threshold: on a machine whose runs differ
    // by more than it, such a verdict can be the machine's (docs/gate.md, the calibration).
    let unknown_noise = if noise == RunToRun::Unknown {
        format!(
            "; no run-to-run noise known (`thresholds.assumed_noise` is 0% and the results' history holds fewer than {min_runs} runs of this setup since its last change), so the margin is the bare threshold"
        )
    } else {
        String::new()
    };
    let interval = if s.one_sided_confidence > 0.0 {
        let r = c.ratio.unwrap_or(RatioInterval {
            ratio: 1.0,
            low: 1.0,
            high: 1.0,
            confidence: 0.0,
        });
        format!(
            "{} … {} ({:.1}% bounds, {nb} vs {nn})",
            pct(r.low - 1.0),
            pct(r.high - 1.0),
            s.one_sided_confidence * 100.0
        )
    } else {
        String::new()
    };
    let flagged = !c.flags.is_empty();
    let flags_said = said(&c.flags);
    let flag_note = if flagged {
        format!("; despite: {flags_said}")
    } else {
        String::new()
    };
    if nb >= DOMINANCE_MIN_REPETITIONS
        && nn >= DOMINANCE_MIN_REPETITIONS
        && worse_min > 2.0 * margin_log
    {
        c.verdict = Verdict::Regressed;
        c.reason = format!(
            "every new repetition is worse than every base repetition by more than twice the {limit} margin{why_margin} (the closest pair: {}){flag_note}{unknown_noise}",
            pct(worse(fraction_of(metric, worse_min)))
        );
        return c;
    }
    if s.one_sided_confidence == 0.0 {
        c.verdict = if flagged {
            Verdict::Unreliable
        } else {
            Verdict::Inconclusive
        };
        let needed = (2..=20)
            .find(|&n| stats::shift::order_statistic(n, n, ALPHA).0 > 0)
            .unwrap_or(4);
        c.reason = format!(
            "{nb} vs {nn} repetitions allow no exact bound at {:.1}%: at least {needed} on each side are needed (--repeat {needed}){}",
            (1.0 - ALPHA) * 100.0,
            if flagged {
                format!("; and {flags_said}")
            } else {
                String::new()
            }
        );
        return c;
    }
    if worse_low > margin_log {
        c.verdict = Verdict::Regressed;
        c.reason = format!(
            "the interval {interval} lies wholly beyond the {limit} margin{why_margin}{flag_note}{unknown_noise}"
        );
        return c;
    }
    if flagged {
        c.verdict = Verdict::Unreliable;
        c.reason = format!("not judged: {flags_said} (interval {interval}, margin {limit})");
        return c;
    }
    if worse_high < -margin_log {
        c.verdict = Verdict::Improved;
        c.reason =
            format!("the interval {interval} lies wholly beyond the margin on the good side");
    } else if worse_high <= by_threshold {
        // Against the class's threshold, not the noise-raised margin: "pass" says a regression
        // of the threshold is excluded, and noise can only make that harder to say.
        c.verdict = Verdict::Pass;
        c.reason = format!(
            "the interval {interval} excludes a change beyond the {} threshold",
            pct(threshold_signed)
        );
    } else if worse_high <= margin_log {
        c.verdict = Verdict::Inconclusive;
        c.reason = format!(
            "the interval {interval} stays within the {limit} margin{why_margin} but reaches past the {} threshold: not a regression this machine's noise can tell, nor a pass",
            pct(threshold_signed)
        );
    } else {
        c.verdict = Verdict::Inconclusive;
        c.reason = format!(
            "the interval {interval} reaches past the {limit} margin{why_margin}: more repetitions decide"
        );
    }
    c
}
