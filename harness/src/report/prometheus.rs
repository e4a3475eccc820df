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
}

impl Family<'_> {
    fn head(&mut self, name: &str, help: &str, kind: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], v: f64) {
        let l: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", lv(v)))
            .collect();
        let _ = writeln!(self.out, "{name}{{{}}} {}", l.join(","), num(v));
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

fn medians(run: &RunDoc) -> Vec<(String, String, Metric, f64, usize)> {
    let mut out = Vec::new();
    for t in run.trials.iter().filter(|t| !t.repetitions.is_empty()) {
        let Some(w) = t.workload() else { continue };
        for m in metrics::metrics_of(&t.repetitions[0]) {
            let vals: Vec<f64> = t
                .repetitions
                .iter()
                .filter_map(|b| metrics::value(b, m))
                .collect();
            if let Some(med) = crate::stats::median(&vals) {
                let v = if m.is_latency() { med / 1e9 } else { med };
                out.push((t.class.clone(), w.to_string(), m, v, vals.len()));
            }
        }
    }
    out
}

pub fn render(input: &ReportInput) -> String {
    let run = input.run;
    let mut out = String::new();
    let mut f = Family { out: &mut out };
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
    let mut names: Vec<&str> = meds.iter().map(|(_, _, m, _, _)| series(*m).0).collect();
    names.dedup();
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
        for (class, w, m, v, _) in meds.iter().filter(|x| series(x.2).0 == name) {
            let mut labels = vec![("class", class.as_str()), ("workload", w.as_str())];
            if let Some(extra) = series(*m).1 {
                labels.push(extra);
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
    for (class, w, _, _, n) in &meds {
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
