//! The regression gate's promises on synthetic repetitions (issues 12 and 19): a real 10 %
//! slowdown is caught at 5 against 5 repetitions, also in a run of a whole matrix (26 figures);
//! identical setups are called regressed in at most 5 % of whole-matrix runs; noise flags never
//! turn a clear regression into a pass; too few repetitions say so instead of passing.

use pvcheck::compare::gate::{self, RunToRun, Side, Verdict};
use pvcheck::compare::metrics::Metric;
use rand_core::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

/// Standard normal deviates (Box–Muller), seeded.
struct Normal(Xoshiro256PlusPlus);

impl Normal {
    fn new(seed: u64) -> Self {
        Normal(Xoshiro256PlusPlus::seed_from_u64(seed))
    }
    fn unit(&mut self) -> f64 {
        ((self.0.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn next(&mut self) -> f64 {
        let (u, v) = (self.unit(), self.unit());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
    fn sample(&mut self, n: usize, center: f64, noise: f64) -> Vec<f64> {
        (0..n)
            .map(|_| center * (1.0 + noise * self.next()))
            .collect()
    }
}

/// One IOPS comparison through the gate's rule alone (5 % threshold, no run-to-run noise
/// known or assumed: `assumed_noise: 0%`).
fn judge(base: Vec<f64>, new: Vec<f64>) -> gate::Comparison {
    judge_flagged(base, new, Vec::new())
}

fn judge_flagged(base: Vec<f64>, new: Vec<f64>, flags: Vec<String>) -> gate::Comparison {
    judge_with(base, new, flags, RunToRun::Unknown)
}

/// As a class with the default thresholds judges it without history: 12 % run-to-run noise
/// assumed.
fn judge_as_shipped(base: Vec<f64>, new: Vec<f64>, flags: Vec<String>) -> gate::Comparison {
    let assumed = pvcheck::config::thresholds::Limits::default().assumed_noise;
    judge_with(base, new, flags, RunToRun::of(None, assumed))
}

fn judge_with(
    base: Vec<f64>,
    new: Vec<f64>,
    flags: Vec<String>,
    noise: RunToRun,
) -> gate::Comparison {
    gate::judge_metric(
        "c",
        "randread-4k-qd64",
        Metric::Iops,
        Side::new(base),
        Side::new(new),
        0.05,
        noise,
        flags,
    )
}

/// 2 % noise taken literally: both sides' repetitions have a coefficient of variation of
/// 2 %, in different orders; the new side is 10 % slower.
#[test]
fn a_ten_percent_slowdown_with_two_percent_noise_is_regressed_at_five_against_five() {
    let shape = [-1.26, 0.63, 0.0, -0.63, 1.26];
    let base: Vec<f64> = shape.iter().map(|z| 100_000.0 * (1.0 + 0.02 * z)).collect();
    let new: Vec<f64> = shape
        .iter()
        .rev()
        .map(|z| 90_000.0 * (1.0 + 0.02 * z))
        .collect();
    assert!((pvcheck::stats::cv(&base).unwrap() - 0.02).abs() < 0.001);
    let c = judge(base, new);
    assert_eq!(c.verdict, Verdict::Regressed, "{}", c.reason);
    let r = c.ratio.unwrap();
    assert!(r.high < 0.95 && (r.ratio - 0.9).abs() < 0.01, "{r:?}");
}

/// Under random normal noise of 2 % a 10 % slowdown is never passed or called an improvement,
/// and is regressed in nearly every sample.
#[test]
fn a_ten_percent_slowdown_under_random_noise_is_never_passed() {
    let mut rng = Normal::new(12);
    let (mut regressed, trials) = (0, 1000);
    for _ in 0..trials {
        let base = rng.sample(5, 100_000.0, 0.02);
        let new = rng.sample(5, 90_000.0, 0.02);
        let c = judge(base, new);
        match c.verdict {
            Verdict::Regressed => regressed += 1,
            Verdict::Inconclusive => {}
            other => panic!("a 10% slowdown was called {other:?}: {}", c.reason),
        }
    }
    eprintln!("10% slowdown, 5 vs 5, 2% normal noise: regressed in {regressed} of {trials}");
    // 890 of 1000 at the time of writing; the rest are inconclusive (more repetitions decide).
    assert!(
        regressed * 100 >= trials * 85,
        "regressed only {regressed} of {trials}"
    );
}

/// The whole matrix of one class: 26 figures, as many as 9 workloads give (IOPS or MB/s, p99,
/// p99.9; fsync p99; four metadata rates).
fn matrix_metrics() -> Vec<Metric> {
    let mut ms = Vec::new();
    for _ in 0..7 {
        ms.extend([Metric::Iops, Metric::P99, Metric::P999]);
    }
    ms.push(Metric::FsyncP99);
    ms.extend([
        Metric::Creates,
        Metric::Stats,
        Metric::Renames,
        Metric::Unlinks,
    ]);
    ms.truncate(26);
    ms
}

/// The false-alarm promise: 1 000 seeded whole-matrix runs of identical distributions (26
/// figures, 5 against 5, 2 % noise, default thresholds): a run with any figure called regressed
/// is a false alarm.
#[test]
fn identical_distributions_are_called_regressed_in_at_most_five_percent_of_1000_matrix_runs() {
    let mut rng = Normal::new(2026);
    let (mut runs_with_alarm, mut passed, mut figures) = (0, 0, 0);
    let runs = 1000;
    for run in 0..runs {
        let cs: Vec<gate::Comparison> = matrix_metrics()
            .into_iter()
            .enumerate()
            .map(|(i, m)| {
                gate::judge_metric(
                    "c",
                    &format!("w{run}-{i}"),
                    m,
                    Side::new(rng.sample(5, 1000.0, 0.02)),
                    Side::new(rng.sample(5, 1000.0, 0.02)),
                    m.threshold(&Default::default()),
                    RunToRun::Unknown,
                    Vec::new(),
                )
            })
            .collect();
        figures += cs.len();
        passed += cs.iter().filter(|c| c.verdict == Verdict::Pass).count();
        if cs.iter().any(|c| c.verdict == Verdict::Regressed) {
            runs_with_alarm += 1;
        }
    }
    eprintln!(
        "identical distributions: {runs_with_alarm} of {runs} matrix runs called regressed; {passed} of {figures} figures passed"
    );
    assert!(
        runs_with_alarm * 20 <= runs,
        "{runs_with_alarm} false alarms in {runs} runs"
    );
    // And the gate still decides: most figures pass rather than staying inconclusive.
    assert!(
        passed * 2 > figures,
        "only {passed} of {figures} figures passed"
    );
}

/// The bug of issue 19: with Holm over the run's family, no figure of a whole matrix could ever
/// be called regressed at --repeat 5. Now one slowed figure among 26 is.
#[test]
fn one_slow_figure_in_a_whole_matrix_is_regressed_at_five_repetitions() {
    let mut rng = Normal::new(7);
    let cs: Vec<gate::Comparison> = matrix_metrics()
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            let slow = if i == 3 { 0.8 } else { 1.0 };
            gate::judge_metric(
                "c",
                &format!("w{i}"),
                m,
                Side::new(rng.sample(5, 1000.0, 0.01)),
                Side::new(rng.sample(5, 1000.0 * slow, 0.01)),
                m.threshold(&Default::default()),
                RunToRun::Unknown,
                Vec::new(),
            )
        })
        .collect();
    assert_eq!(cs[3].verdict, Verdict::Regressed, "{}", cs[3].reason);
    assert_eq!(
        cs.iter()
            .filter(|c| c.verdict == Verdict::Regressed)
            .count(),
        1
    );
}

/// 3 against 3 allows no exact bound at 97.5 %: a small change is inconclusive and the reason
/// says how many repetitions are needed; a change beyond twice the margin in every pair is
/// regressed all the same.
#[test]
fn three_against_three_says_more_repetitions_unless_the_change_is_plain() {
    let c = judge(vec![100.0, 101.0, 99.0], vec![93.0, 94.0, 92.0]);
    assert_eq!(c.verdict, Verdict::Inconclusive, "{}", c.reason);
    assert!(
        c.reason.contains("3 vs 3") && c.reason.contains("--repeat 4"),
        "{}",
        c.reason
    );
    let c = judge(vec![100.0, 101.0, 99.0], vec![100.0, 101.0, 99.0]);
    assert_eq!(c.verdict, Verdict::Inconclusive, "{}", c.reason);
    let c = judge(vec![100.0, 101.0, 99.0], vec![50.0, 51.0, 49.0]);
    assert_eq!(c.verdict, Verdict::Regressed, "{}", c.reason);
}

fn noisy(why: &str) -> Vec<String> {
    vec![why.to_string()]
}

/// The cases of issue 19 that passed with exit 0: a 77 % and a 43 % write slowdown whose
/// repetitions varied within their runs. Noise never turns them into a pass.
#[test]
fn a_seventy_seven_and_a_forty_three_percent_slowdown_with_unstable_repetitions_are_regressed() {
    let base = vec![25_300.0, 24_100.0, 26_000.0, 25_500.0, 22_900.0];
    let c = judge_flagged(
        base.clone(),
        vec![5812.0, 6100.0, 5500.0, 5900.0, 5700.0],
        noisy("base repetition 1: IOPS varied 14.6% within the run (limit 10%)"),
    );
    assert_eq!(c.verdict, Verdict::Regressed, "{}", c.reason);
    assert!(
        c.reason.contains("14.6%"),
        "the flag is still shown: {}",
        c.reason
    );
    let forty_three = || {
        (
            vec![20_900.0, 18_000.0, 22_500.0, 21_000.0, 19_800.0],
            vec![11_900.0, 12_300.0, 11_000.0, 12_100.0, 11_700.0],
            noisy("base repetition 1: IOPS varied 80.9% within the run (limit 10%)"),
        )
    };
    let (b, n, f) = forty_three();
    let c = judge_flagged(b, n, f);
    assert_eq!(c.verdict, Verdict::Regressed, "{}", c.reason);
    // And as shipped, with no history: the assumed run-to-run noise does not hide them.
    let (b, n, f) = forty_three();
    let c = judge_as_shipped(b, n, f);
    assert_eq!(c.verdict, Verdict::Regressed, "{}", c.reason);
    let c = judge_as_shipped(
        base,
        vec![5812.0, 6100.0, 5500.0, 5900.0, 5700.0],
        Vec::new(),
    );
    assert_eq!(c.verdict, Verdict::Regressed, "{}", c.reason);
}

/// Issue 19, calibration of 2026-12-06: without history, two runs of one unchanged setup on a
/// quiet 2-core machine were called regressed 13 times in 28, because whole figures moved −20
/// to −40 % between runs, in every repetition: a run's repetitions cannot show that. Until
/// history measures a figure's run-to-run noise, the class's assumed 12 % raises the margin to
/// 3σ (−30 % for a rate): such a drift is not judged (exit 4), never a pass, and what history
/// measures replaces the assumption, smaller or larger.
#[test]
fn without_history_a_drift_between_runs_is_not_judged_and_what_history_measures_replaces_the_assumption()
 {
    let shape = [-1.0, 0.5, 0.0, -0.5, 1.0];
    let side = |c: f64| {
        shape
            .iter()
            .map(|z| c * (1.0 + 0.005 * z))
            .collect::<Vec<_>>()
    };
    let drift = judge_as_shipped(side(1000.0), side(800.0), Vec::new());
    assert_eq!(drift.verdict, Verdict::Inconclusive, "{}", drift.reason);
    assert!(
        drift.reason.contains("assumed_noise") && drift.reason.contains("σ = 12.0%"),
        "{}",
        drift.reason
    );
    assert_eq!(drift.noise, RunToRun::Assumed(0.12));
    assert!((drift.margin - (1.0 - (-0.36f64).exp())).abs() < 1e-9);
    // A pass is still judged against the threshold.
    let same = judge_as_shipped(side(1000.0), side(995.0), Vec::new());
    assert_eq!(same.verdict, Verdict::Pass, "{}", same.reason);
    // Beyond 3σ: regressed.
    let big = judge_as_shipped(side(1000.0), side(600.0), Vec::new());
    assert_eq!(big.verdict, Verdict::Regressed, "{}", big.reason);
    let with_history = |new: f64, sigma: f64| {
        judge_with(
            side(1000.0),
            side(new),
            Vec::new(),
            RunToRun::of(Some(sigma), 0.12),
        )
    };
    // History that measured 2 % sharpens the gate back to the threshold …
    let measured = with_history(800.0, 0.02);
    assert_eq!(measured.verdict, Verdict::Regressed, "{}", measured.reason);
    assert!(!measured.reason.contains("assumed"), "{}", measured.reason);
    // … and history that measured 20 % widens it past the assumption.
    let wide = with_history(600.0, 0.20);
    assert_eq!(wide.verdict, Verdict::Inconclusive, "{}", wide.reason);
    assert!(wide.reason.contains("as measured"), "{}", wide.reason);
}

/// A flagged figure whose change is within the margin is not judged (unreliable), never pass.
#[test]
fn an_unstable_repetition_makes_an_unchanged_figure_unreliable_not_pass() {
    let c = judge_flagged(
        vec![100.0, 101.0, 99.0, 100.5, 99.5],
        vec![100.2, 100.8, 99.1, 100.4, 99.7],
        noisy("new repetition 2: the job stalled"),
    );
    assert_eq!(c.verdict, Verdict::Unreliable, "{}", c.reason);
    assert!(c.verdict.not_judged());
}

/// Where history knows a figure's run-to-run noise, the margin for "regressed" grows to 3σ: a
/// 6 % change of a figure that moves 4 % from night to night is no regression, though beyond a
/// 5 % threshold. Nor is it a pass: "pass" still means a regression of the threshold is excluded.
#[test]
fn history_noise_raises_the_margin_to_three_sigma_for_regressed_but_never_for_pass() {
    let shape = [-1.0, 0.5, 0.0, -0.5, 1.0];
    let side = |c: f64| {
        shape
            .iter()
            .map(|z| c * (1.0 + 0.005 * z))
            .collect::<Vec<_>>()
    };
    let judge = |new: f64, sigma: Option<f64>| {
        gate::judge_metric(
            "c",
            "w",
            Metric::Iops,
            Side::new(side(1000.0)),
            Side::new(side(new)),
            0.05,
            RunToRun::of(sigma, 0.0),
            Vec::new(),
        )
    };
    let without = judge(940.0, None);
    assert_eq!(without.verdict, Verdict::Regressed, "{}", without.reason);
    let with = judge(940.0, Some(0.04));
    assert_eq!(with.verdict, Verdict::Inconclusive, "{}", with.reason);
    assert!(
        (with.margin - (1.0 - (-0.12f64).exp())).abs() < 1e-9,
        "{}",
        with.margin
    );
    assert!(
        with.reason.contains("3σ") && with.reason.contains("-5.0% threshold"),
        "{}",
        with.reason
    );
    // Within the threshold it passes, noise or not.
    assert_eq!(judge(985.0, Some(0.04)).verdict, Verdict::Pass);
    // Calibration, 2026-12-06: on this machine a figure's σ is 10 % or more, so 3σ is a 26 %
    // margin, and writes capped at 80 % of their speed (−20 %) fall inside it. They must never
    // pass (issue 19): not judged.
    let capped = judge(800.0, Some(0.10));
    assert_eq!(capped.verdict, Verdict::Inconclusive, "{}", capped.reason);
    // Beyond 3σ it is a regression again.
    assert_eq!(judge(600.0, Some(0.10)).verdict, Verdict::Regressed);
}

#[test]
fn latency_regresses_upwards_and_improves_downwards() {
    let shape = [-1.0, 0.5, 0.0, -0.5, 1.0];
    let lat = |c: f64| {
        shape
            .iter()
            .map(|z| c * (1.0 + 0.01 * z))
            .collect::<Vec<_>>()
    };
    let judge_p99 = |new: f64| {
        gate::judge_metric(
            "c",
            "a",
            Metric::P99,
            Side::new(lat(100.0)),
            Side::new(lat(new)),
            0.10,
            RunToRun::Unknown,
            Vec::new(),
        )
    };
    let up = judge_p99(130.0);
    assert_eq!(up.verdict, Verdict::Regressed, "{}", up.reason);
    let down = judge_p99(70.0);
    assert_eq!(down.verdict, Verdict::Improved, "{}", down.reason);
    let same = judge_p99(101.0);
    assert_eq!(same.verdict, Verdict::Pass, "{}", same.reason);
}

/// A speed trial of `iops` per repetition, each of whose agents waited for a CPU `wait` of
/// the measured time.
fn trial(iops: &[f64], wait: f64) -> pvcheck::compare::rundoc::TrialDoc {
    pvcheck::compare::rundoc::TrialDoc {
        name: "c::speed::randwrite-4k-qd1".into(),
        class: "c".into(),
        check: "speed::randwrite-4k-qd1".into(),
        status: "passed".into(),
        duration_s: 1.0,
        ignored_reason: None,
        failure_message: None,
        failure_category: None,
        repetitions: iops
            .iter()
            .map(|v| {
                serde_json::json!({
                    "job": { "rw": "randwrite", "bs": 4096, "iodepth": 1, "jobs": 1 },
                    "iops": v, "cv": 0.01, "qd_achieved": 1.0,
                    "lat_ns": { "p99": 1e9 / v, "p999": 1e9 / v },
                    "cpu": { "wait_share": wait },
                })
            })
            .collect(),
        rep_volumes: Vec::new(),
        rep_runs: Vec::new(),
    }
}

fn iops_verdict(base: &[f64], base_wait: f64, new: &[f64], new_wait: f64) -> gate::Comparison {
    // The CPU-wait rule alone: no run-to-run noise assumed.
    let limits = pvcheck::config::thresholds::Limits {
        assumed_noise: 0.0,
        ..Default::default()
    };
    gate::judge_workload(
        "c",
        "randwrite-4k-qd1",
        &trial(base, base_wait),
        &trial(new, new_wait),
        &limits,
        &gate::Noise::new(),
    )
    .into_iter()
    .find(|c| c.metric == Metric::Iops)
    .unwrap()
}

/// CI, 2026-12-05: two runs of one unchanged class, the second while the test cluster's
/// components took the CPU, differed by −38 % in every repetition and were called regressed.
/// The agent's own schedstat shows the cause: its thread waited for a CPU a quarter of the
/// time. Such a change is the machine's: not judged, and never a pass.
#[test]
fn a_slowdown_while_the_agent_waited_for_a_cpu_is_not_judged_instead_of_regressed() {
    let base = [25_300.0, 24_000.0, 26_000.0, 23_000.0, 27_500.0];
    let new = [20_000.0, 15_600.0, 13_000.0, 17_500.0, 11_000.0];
    let c = iops_verdict(&base, 0.01, &new, 0.01);
    assert_eq!(c.verdict, Verdict::Regressed, "{}", c.reason);
    let c = iops_verdict(&base, 0.01, &new, 0.26);
    assert_eq!(c.verdict, Verdict::Unreliable, "{}", c.reason);
    assert!(
        c.reason.contains("waited for a CPU 26.0%")
            && c.reason.contains("would have been regressed"),
        "{}",
        c.reason
    );
    // What the wait cannot explain is still a regression: the same wait, 40 % slower again.
    let slower: Vec<f64> = new.iter().map(|v| v * 0.6).collect();
    let c = iops_verdict(&base, 0.01, &slower, 0.26);
    assert_eq!(c.verdict, Verdict::Regressed, "{}", c.reason);
}

/// A base run slowed by a busy machine makes an unchanged new run look fine when it may be
/// worse: not a pass.
#[test]
fn an_unchanged_figure_whose_base_waited_for_a_cpu_does_not_pass() {
    let base = [25_300.0, 25_100.0, 24_900.0, 25_200.0, 25_000.0];
    let c = iops_verdict(&base, 0.01, &base, 0.01);
    assert_eq!(c.verdict, Verdict::Pass, "{}", c.reason);
    let c = iops_verdict(&base, 0.30, &base, 0.01);
    assert_eq!(c.verdict, Verdict::Unreliable, "{}", c.reason);
    assert!(c.reason.contains("would have been pass"), "{}", c.reason);
}

/// The same wait on the base side explains no slowdown of the new side: still regressed.
#[test]
fn a_base_that_waited_for_a_cpu_does_not_excuse_a_slower_new_run() {
    let base = [25_300.0, 25_100.0, 24_900.0, 25_200.0, 25_000.0];
    let new = [15_800.0, 15_500.0, 15_900.0, 15_400.0, 15_600.0];
    let c = iops_verdict(&base, 0.26, &new, 0.01);
    assert_eq!(c.verdict, Verdict::Regressed, "{}", c.reason);
}
