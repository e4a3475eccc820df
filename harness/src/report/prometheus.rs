//! `--prometheus FILE`: the text exposition format, for node-exporter's textfile collector
//! (write it into the collector's directory; the file is replaced atomically).
//!
//! Per speed workload the median over repetitions in base units (operations per second, bytes
//! per second, seconds), per trial its status, and with a comparison the verdict (one series
//! per verdict, 1 for the one that holds), the ratio new / base with its interval, and the
//! count of regressions.

use std::fmt::Write as _;

use super::outputs::ReportInput;
use crate::compare::metrics::{self, Metric};
use crate::compare::{RunDoc, Verdict};

/// A label value, escaped as the format requires.
fn lv(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn num(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else if v.is_nan() {
        "NaN".into()
    } else if v > 0.0 {
        "+Inf".into()
    } else {
        "-Inf".into()
    }
}

struct Family<'a> {
    out: &'a mut String,
    /// A label left out of every sample: the push's grouping key carries it (`class`).
    drop: Option<&'static str>,
}

impl Family<'_> {
    fn head(&mut self, name: &str, help: &str, kind: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], v: f64) {
        let l: Vec<String> = labels
            .iter()
            .filter(|(k, _)| Some(*k) != self.drop)
            .map(|(k, v)| format!("{k}=\"{}\"", lv(v)))
            .collect();
        if l.is_empty() {
            let _ = writeln!(self.out, "{name} {}", num(v));
        } else {
            let _ = writeln!(self.out, "{name}{{{}}} {}", l.join(","), num(v));
        }
    }
}

/// The base-unit value and the Prometheus series a metric belongs to.
fn series(m: Metric) -> (&'static str, Option<(&'static str, &'static str)>) {
    match m {
        Metric::Iops => ("pvcheck_speed_iops", None),
        Metric::Bandwidth => ("pvcheck_speed_bandwidth_bytes_per_second", None),
        Metric::P99 => ("pvcheck_speed_latency_seconds", Some(("quantile", "0.99"))),
        Metric::P999 => ("pvcheck_speed_latency_seconds", Some(("quantile", "0.999"))),
        Metric::FsyncP99 => ("pvcheck_fsync_latency_seconds", Some(("quantile", "0.99"))),
        Metric::Creates => ("pvcheck_metadata_ops_per_second", Some(("op", "create"))),
        Metric::Stats => ("pvcheck_metadata_ops_per_second", Some(("op", "stat"))),
        Metric::Renames => ("pvcheck_metadata_ops_per_second", Some(("op", "rename"))),
        Metric::Unlinks => ("pvcheck_metadata_ops_per_second", Some(("op", "unlink"))),
    }
}

/// One figure: class, workload, series, its extra label, the median, repetitions behind it.
type Figure = (
    String,
    String,
    &'static str,
    Option<(&'static str, &'static str)>,
    f64,
    usize,
);

fn medians(run: &RunDoc) -> Vec<Figure> {
    let mut out = Vec::new();
    for t in run.trials.iter().filter(|t| !t.repetitions.is_empty()) {
        let Some(w) = t.workload() else { continue };
        let mut push = |name, extra, vals: Vec<f64>, latency: bool| {
            if let Some(med) = crate::stats::median(&vals) {
                let v = if latency { med / 1e9 } else { med };
                out.push((t.class.clone(), w.to_string(), name, extra, v, vals.len()));
            }
        };
        for m in metrics::metrics_of(&t.repetitions[0]) {
            let vals: Vec<f64> = t
                .repetitions
                .iter()
                .filter_map(|b| metrics::value(b, m))
                .collect();
            let (name, extra) = series(m);
            push(name, extra, vals, m.is_latency());
            // The median latency beside the 99th percentile (the dashboard's p50; not gated).
            if matches!(m, Metric::P99 | Metric::FsyncP99) {
                let p50: Vec<f64> = t
                    .repetitions
                    .iter()
                    .filter_map(|b| b.get("lat_ns")?.get("p50")?.as_f64())
                    .collect();
                push(name, Some(("quantile", "0.5")), p50, true);
            }
        }
    }
    out
}

/// `pvcheck_class_verdict`'s encoding: the worst that holds for the class, in this order.
pub const VERDICT_PASS: u8 = 0;
pub const VERDICT_NOT_JUDGED: u8 = 1;
pub const VERDICT_REGRESSED: u8 = 2;
pub const VERDICT_FAILED: u8 = 3;
pub const VERDICT_REFUSED: u8 = 4;
/// Every trial of the class was ignored (no section for the platform, a filter): never green.
pub const VERDICT_NOTHING_TESTED: u8 = 5;

/// The classes of the run, in the order their first trial appears.
pub fn classes(run: &RunDoc) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for t in &run.trials {
        if !out.contains(&t.class) {
            out.push(t.class.clone());
        }
    }
    out
}

/// Each class's verdict ([`VERDICT_PASS`] …): 4 the comparison was refused (every class);
/// 3 a trial of the class failed or was interrupted; 2 a figure of the class regressed;
/// 1 a figure of the class was not judged (inconclusive or unreliable; with
/// `--allow-inconclusive` too: the fact, not the exit code); 5 every trial of the class was
/// ignored; 0 otherwise. Without a comparison only 0, 3 and 5 occur.
pub fn class_verdicts(input: &ReportInput) -> Vec<(String, u8)> {
    classes(input.run)
        .into_iter()
        .map(|c| {
            let failed = input
                .run
                .trials
                .iter()
                .any(|t| t.class == c && matches!(t.status.as_str(), "failed" | "interrupted"));
            let of_class = || {
                input
                    .comparison
                    .into_iter()
                    .flat_map(|r| r.comparisons.iter())
                    .filter(|x| x.class == c)
            };
            let tested = input
                .run
                .trials
                .iter()
                .any(|t| t.class == c && t.status != "ignored");
            let v = if input.refused.is_some() {
                VERDICT_REFUSED
            } else if !tested {
                VERDICT_NOTHING_TESTED
            } else if failed {
                VERDICT_FAILED
            } else if of_class().any(|x| x.verdict == Verdict::Regressed) {
                VERDICT_REGRESSED
            } else if of_class().any(|x| x.verdict.not_judged()) {
                VERDICT_NOT_JUDGED
            } else {
                VERDICT_PASS
            };
            (c, v)
        })
        .collect()
}

/// When the run started (`start` of the result file), seconds since the Unix epoch.
pub fn start_seconds(start: &str) -> Option<f64> {
    let b = start.as_bytes();
    let n = |r: std::ops::Range<usize>| -> Option<i64> { start.get(r)?.parse().ok() };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || !start.ends_with('Z') {
        return None;
    }
    let (y, mo, d) = (n(0..4)?, n(5..7)?, n(8..10)?);
    let (h, mi, s) = (n(11..13)?, n(14..16)?, n(17..19)?);
    let frac: f64 = match &start[19..start.len() - 1] {
        "" => 0.0,
        f if f.starts_with('.') => format!("0{f}").parse().ok()?,
        _ => return None,
    };
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    // Days from the civil date (proleptic Gregorian), the inverse of results.rs's `civil`.
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + h * 3600 + mi * 60 + s) as f64 + frac)
}

/// The figures of one class only, as pushed to its Pushgateway group
/// (`…/metrics/job/pvcheck/class/<class>`): every family of [`render`], the samples of that
/// class, without the `class` label (the grouping key adds it); the run-wide families
/// (`pvcheck_gate_outcome`, `pvcheck_gate_regressions`, `pvcheck_gate_failed_trials`) say what
/// holds for that class.
pub fn render_class(input: &ReportInput, class: &str) -> String {
    let mut run = input.run.clone();
    run.trials.retain(|t| t.class == class);
    let report = input.comparison.map(|r| {
        let mut r = r.clone();
        r.comparisons.retain(|c| c.class == class);
        let names: Vec<&str> = run.trials.iter().map(|t| t.name.as_str()).collect();
        r.failed.retain(|f| names.contains(&f.name.as_str()));
        r.new = run.clone();
        r
    });
    let scoped = ReportInput {
        run: &run,
        comparison: report.as_ref(),
        refused: input.refused,
        allow_inconclusive: input.allow_inconclusive,
        results: input.results,
    };
    render_with(&scoped, Some("class"))
}

/// The `--prometheus` file: every class of the run.
pub fn render(input: &ReportInput) -> String {
    render_with(input, None)
}

fn render_with(input: &ReportInput, drop: Option<&'static str>) -> String {
    let run = input.run;
    let mut out = String::new();
    let mut f = Family {
        out: &mut out,
        drop,
    };
    f.head(
        "pvcheck_run_info",
        "The run these figures come from.",
        "gauge",
    );
    let kernel = run.environment["kernel"].as_str().unwrap_or("");
    f.sample(
        "pvcheck_run_info",
        &[
            ("run_id", &run.run_ids.join(",")),
            ("profile", &run.profile),
            ("platform", &run.platform),
            ("kernel", kernel),
        ],
        1.0,
    );
    f.head(
        "pvcheck_run_timestamp_seconds",
        "When the run started, seconds since the Unix epoch.",
        "gauge",
    );
    if let Some(t) = start_seconds(&run.start) {
        f.sample("pvcheck_run_timestamp_seconds", &[], t);
    }
    f.head(
        "pvcheck_class_verdict",
        "The class's verdict: 0 pass, 1 not judged, 2 regressed, 3 failed, 4 refused, 5 nothing tested (the worst that holds).",
        "gauge",
    );
    for (class, v) in class_verdicts(input) {
        f.sample("pvcheck_class_verdict", &[("class", &class)], f64::from(v));
    }
    f.head(
        "pvcheck_trial_status",
        "1 for the status each trial ended with.",
        "gauge",
    );
    for t in &run.trials {
        for s in ["passed", "failed", "ignored", "interrupted"] {
            f.sample(
                "pvcheck_trial_status",
                &[("class", &t.class), ("check", &t.check), ("status", s)],
                f64::from(u8::from(t.status == s)),
            );
        }
    }
    let meds = medians(run);
    let mut names: Vec<&str> = meds.iter().map(|x| x.2).collect();
    names.sort_unstable();
    names.dedup();
    for name in names {
        let help = match name {
            "pvcheck_speed_iops" => "Median IOPS over the repetitions.",
            "pvcheck_speed_bandwidth_bytes_per_second" => "Median bandwidth over the repetitions.",
            "pvcheck_speed_latency_seconds" => {
                "Median completion latency percentile over the repetitions."
            }
            "pvcheck_fsync_latency_seconds" => {
                "Median fdatasync latency percentile over the repetitions."
            }
            _ => "Median metadata operation rate over the repetitions.",
        };
        f.head(name, help, "gauge");
        for (class, w, _, extra, v, _) in meds.iter().filter(|x| x.2 == name) {
            let mut labels = vec![("class", class.as_str()), ("workload", w.as_str())];
            if let Some(extra) = extra {
                labels.push(*extra);
            }
            f.sample(name, &labels, *v);
        }
    }
    f.head(
        "pvcheck_speed_repetitions",
        "Repetitions behind each speed figure.",
        "gauge",
    );
    let mut seen = Vec::new();
    for (class, w, _, _, _, n) in &meds {
        if !seen.contains(&(class, w)) {
            seen.push((class, w));
            f.sample(
                "pvcheck_speed_repetitions",
                &[("class", class), ("workload", w)],
                *n as f64,
            );
        }
    }
    if let Some(state) = input.gate() {
        f.head(
            "pvcheck_gate_outcome",
            "1 for the gate's verdict of this run (refused, failed, regressed, not_judged, pass).",
            "gauge",
        );
        for o in ["refused", "failed", "regressed", "not_judged", "pass"] {
            let word = state.word().to_lowercase().replace(' ', "_");
            f.sample(
                "pvcheck_gate_outcome",
                &[("outcome", o)],
                f64::from(u8::from(word == o)),
            );
        }
    }
    if let Some(r) = input.comparison {
        f.head(
            "pvcheck_gate_verdict",
            "1 for the verdict of each compared figure against the baseline.",
            "gauge",
        );
        for c in &r.comparisons {
            for v in Verdict::ALL {
                f.sample(
                    "pvcheck_gate_verdict",
                    &[
                        ("class", &c.class),
                        ("workload", &c.workload),
                        ("metric", c.metric.key()),
                        ("baseline", &r.base.label),
                        ("verdict", v.as_str()),
                    ],
                    f64::from(u8::from(c.verdict == v)),
                );
            }
        }
        f.head(
            "pvcheck_gate_ratio",
            "The change new / baseline (Hodges–Lehmann estimate) with its exact interval's bounds.",
            "gauge",
        );
        for c in &r.comparisons {
            if let Some(x) = c.ratio {
                for (bound, v) in [("median", x.ratio), ("low", x.low), ("high", x.high)] {
                    f.sample(
                        "pvcheck_gate_ratio",
                        &[
                            ("class", &c.class),
                            ("workload", &c.workload),
                            ("metric", c.metric.key()),
                            ("bound", bound),
                        ],
                        v,
                    );
                }
            }
        }
        f.head(
            "pvcheck_gate_regressions",
            "Figures that regressed against the baseline.",
            "gauge",
        );
        f.sample(
            "pvcheck_gate_regressions",
            &[("baseline", &r.base.label)],
            r.count(Verdict::Regressed) as f64,
        );
        f.head(
            "pvcheck_gate_failed_trials",
            "Trials that failed in the compared run (integrity fails the gate).",
            "gauge",
        );
        f.sample(
            "pvcheck_gate_failed_trials",
            &[("baseline", &r.base.label)],
            r.failed.len() as f64,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::compare::synthetic::{Spec, run};

    /// A comparison of two synthetic runs of two classes, class-0 15 % slower.
    fn report() -> crate::compare::Report {
        let base = run(&Spec {
            noise: 0.01,
            ..Spec::new("base0001", 2, 3, 8)
        });
        let mut new = run(&Spec {
            noise: 0.01,
            seed: 2,
            ..Spec::new("new00002", 2, 3, 8)
        });
        for t in new["trials"].as_array_mut().unwrap() {
            if t["class"] == "class-0" && t["check"].as_str().unwrap().starts_with("speed::") {
                for r in t["metrics"]["repetitions"].as_array_mut().unwrap() {
                    let b = &mut r["bench"];
                    b["iops"] = (b["iops"].as_f64().unwrap() * 0.85).into();
                }
            }
        }
        let b = RunDoc::from_value(Path::new("b.json"), base).unwrap();
        let n = RunDoc::from_value(Path::new("n.json"), new).unwrap();
        crate::compare::compare(b, n, false).unwrap()
    }

    fn input(r: &crate::compare::Report) -> ReportInput<'_> {
        ReportInput {
            run: &r.new,
            comparison: Some(r),
            refused: None,
            allow_inconclusive: false,
            results: Path::new("/nonexistent"),
        }
    }

    /// The family names a text declares (`# TYPE name gauge`).
    fn families(text: &str) -> Vec<String> {
        text.lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn the_start_time_converts_to_unix_seconds() {
        assert_eq!(start_seconds("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(start_seconds("2026-11-27T03:45:00Z"), Some(1_795_751_100.0));
        assert_eq!(
            start_seconds("2000-02-29T12:00:00.500Z"),
            Some(951_825_600.5)
        );
        for bad in [
            "",
            "yesterday",
            "2026-13-01T00:00:00Z",
            "2026-11-27 03:45:00",
        ] {
            assert_eq!(start_seconds(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_class_verdict_is_the_worst_that_holds_for_each_class() {
        let mut r = report();
        let v = class_verdicts(&input(&r));
        assert_eq!(v[0], ("class-0".into(), VERDICT_REGRESSED), "{v:?}");
        assert!(v[1].1 <= VERDICT_NOT_JUDGED, "{v:?}");
        let text = render(&input(&r));
        assert!(
            text.contains("pvcheck_class_verdict{class=\"class-0\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("pvcheck_run_timestamp_seconds 1795751100\n"),
            "{text}"
        );
        // A failed trial outranks a regression; a refusal outranks everything, every class.
        r.new.trials[0].status = "failed".into();
        assert_eq!(class_verdicts(&input(&r))[0].1, VERDICT_FAILED);
        let refused = ReportInput {
            refused: Some("unlike setups"),
            comparison: None,
            ..input(&r)
        };
        assert!(
            class_verdicts(&refused)
                .iter()
                .all(|(_, v)| *v == VERDICT_REFUSED)
        );
        // Without a comparison: checks only.
        let plain = ReportInput {
            comparison: None,
            ..input(&r)
        };
        let v = class_verdicts(&plain);
        assert_eq!((v[0].1, v[1].1), (VERDICT_FAILED, VERDICT_PASS));
        // A class whose every trial was ignored is never green.
        for t in r.new.trials.iter_mut().filter(|t| t.class == "class-1") {
            t.status = "ignored".into();
        }
        let plain = ReportInput {
            comparison: None,
            ..input(&r)
        };
        assert_eq!(class_verdicts(&plain)[1].1, VERDICT_NOTHING_TESTED);
    }

    #[test]
    fn a_class_group_holds_that_class_only_without_a_class_label() {
        let r = report();
        let all = render(&input(&r));
        let one = render_class(&input(&r), "class-1");
        assert_eq!(families(&all), families(&one), "the same families");
        assert!(!one.contains("class="), "{one}");
        assert!(one.contains("pvcheck_class_verdict "), "{one}");
        assert!(
            one.contains("pvcheck_gate_regressions{baseline=\"b\"} 0"),
            "{one}"
        );
        let zero = render_class(&input(&r), "class-0");
        assert!(
            zero.contains("pvcheck_gate_outcome{outcome=\"regressed\"} 1"),
            "{zero}"
        );
        assert!(one.contains("quantile=\"0.5\"") && one.contains("quantile=\"0.99\""));
    }

    /// deploy/grafana-dashboard.json queries only families pvcheck emits: a rename here breaks
    /// this test, not the dashboard in silence.
    #[test]
    fn every_metric_the_grafana_dashboard_queries_is_one_pvcheck_emits() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/grafana-dashboard.json");
        let doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(doc["schemaVersion"], 39);
        assert_eq!(doc["__inputs"][0]["name"], "DS_PROMETHEUS");
        let mut exprs = Vec::new();
        fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
            match v {
                serde_json::Value::Object(m) => {
                    for (k, x) in m {
                        match (k.as_str(), x) {
                            ("expr" | "definition", serde_json::Value::String(s)) => {
                                out.push(s.clone())
                            }
                            _ => walk(x, out),
                        }
                    }
                }
                serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
                _ => {}
            }
        }
        walk(&doc, &mut exprs);
        let emitted = families(&render(&input(&report())));
        let mut used = Vec::new();
        for e in &exprs {
            let mut rest = e.as_str();
            while let Some(i) = rest.find("pvcheck_") {
                let name: String = rest[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                rest = &rest[i + name.len()..];
                assert!(
                    emitted.contains(&name),
                    "the dashboard queries {name}, which pvcheck does not emit ({e}); emitted: {emitted:?}"
                );
                used.push(name);
            }
        }
        for needed in [
            "pvcheck_class_verdict",
            "pvcheck_speed_iops",
            "pvcheck_speed_latency_seconds",
            "pvcheck_run_timestamp_seconds",
        ] {
            assert!(
                used.iter().any(|u| u == needed),
                "no panel queries {needed}"
            );
        }
        let var = &doc["templating"]["list"][0];
        assert_eq!(var["name"], "class");
        assert!(
            var["definition"]
                .as_str()
                .unwrap()
                .starts_with("label_values(")
        );
    }
}
