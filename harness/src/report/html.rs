//! `--html FILE`: one self-contained page (inline CSS and SVG; no script, no external URL)
//! with the verdicts and, per class, charts drawn by plotters: IOPS, bandwidth and metadata
//! rates of both sides with 95 % whiskers, latency percentile curves (p50 … p99.99) of both
//! sides from the stored HDR histograms (merged over repetitions), and each workload's trend
//! over the newest runs in `<results>/runs` with the change points `pvcheck history` finds.

use std::fmt::Write as _;

use pvcheck_workloads::speed::latency::LatencyHistogram;

use super::charts::{self, RateRow, Whisker};
use super::compare_table::{change, interval, old_new};
use super::outputs::ReportInput;
use crate::compare::history;
use crate::compare::metrics::{self, Metric};
use crate::compare::{RunDoc, Verdict};

const QUANTILES: [f64; 9] = [0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9995, 0.9999];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn values(doc: &RunDoc, class: &str, workload: &str, m: Metric) -> Vec<f64> {
    doc.speed_trial(class, workload)
        .map(|t| {
            t.repetitions
                .iter()
                .filter_map(|b| metrics::value(b, m))
                .collect()
        })
        .unwrap_or_default()
}

fn whisker(vals: &[f64], seed: u64) -> Option<Whisker> {
    let median = crate::stats::median(vals)?;
    let (low, high) = crate::stats::median_interval(vals, 2000, 0.95, seed)?;
    Some(Whisker { median, low, high })
}

/// The speed workloads of a class, in the run's order.
fn workloads(doc: &RunDoc, class: &str) -> Vec<(String, Vec<Metric>)> {
    doc.trials
        .iter()
        .filter(|t| t.class == class && !t.repetitions.is_empty())
        .filter_map(|t| {
            Some((
                t.workload()?.to_string(),
                metrics::metrics_of(&t.repetitions[0]),
            ))
        })
        .collect()
}

/// Percentile curve of a side's histograms merged over its repetitions.
fn curve(doc: &RunDoc, class: &str, workload: &str) -> Option<Vec<(f64, f64)>> {
    let t = doc.speed_trial(class, workload)?;
    let mut merged = LatencyHistogram::new();
    for b in &t.repetitions {
        let h = LatencyHistogram::decode(b.get("histogram")?.as_str()?).ok()?;
        merged.add(&h);
    }
    if merged.count() == 0 {
        return None;
    }
    Some(
        QUANTILES
            .iter()
            .map(|&q| (q, merged.inner().value_at_quantile(q) as f64))
            .collect(),
    )
}

/// Each workload's headline figure over the newest runs of `<results>/runs`, with the change
/// points `pvcheck history` finds (the same detection, on the same runs) and the setup changes
/// marked.
fn trend(h: Option<&history::History>, class: &str) -> Option<String> {
    let h = h?;
    // The headline figure of each workload: its first metric.
    let mut headline: Vec<&history::Series> = Vec::new();
    for s in h.series.iter().filter(|s| s.class == class) {
        if !headline.iter().any(|x| x.workload == s.workload) {
            headline.push(s);
        }
    }
    let mut runs: Vec<(&str, &str)> = headline
        .iter()
        .flat_map(|s| {
            s.points
                .iter()
                .map(|p| (p.start.as_str(), p.run_id.as_str()))
        })
        .collect();
    runs.sort();
    runs.dedup();
    let x_of = |p: &history::Point| {
        runs.binary_search(&(p.start.as_str(), p.run_id.as_str()))
            .unwrap_or(0)
    };
    let labels: Vec<String> = runs
        .iter()
        .map(|(start, _)| start.get(5..16).unwrap_or(start).replace('T', " "))
        .collect();
    let mut series = Vec::new();
    let mut marks = Vec::new();
    for (k, s) in headline.iter().enumerate() {
        let all: Vec<f64> = s.points.iter().map(|p| p.value).collect();
        let Some(mid) = crate::stats::median(&all).filter(|m| *m > 0.0) else {
            continue;
        };
        for c in &s.changes {
            marks.push(charts::Mark {
                at: x_of(&s.points[c.index]) as f64 - 0.5,
                series: Some(k),
                label: format!("{} {:+.0}%", s.workload, 100.0 * c.change),
            });
        }
        for e in s.epochs.iter().skip(1) {
            marks.push(charts::Mark {
                at: x_of(&s.points[e.first]) as f64 - 0.5,
                series: None,
                label: format!("{}: setup changed", s.workload),
            });
        }
        series.push((
            format!("{} {}", s.workload, s.metric.label()),
            s.points
                .iter()
                .map(|p| (x_of(p), 100.0 * p.value / mid))
                .collect(),
        ));
    }
    charts::trend(
        &format!(
            "{class}: trend over {} runs (headline figure per workload; | change points)",
            runs.len()
        ),
        &labels,
        &series,
        &marks,
    )
}

const STYLE: &str = "body{font-family:sans-serif;margin:2em;color:#222;max-width:1400px}\
h1{font-size:1.5em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}\
table{border-collapse:collapse;font-size:.85em}td,th{padding:2px 8px;border-bottom:1px solid #eee;text-align:left}\
td.n{text-align:right;font-variant-numeric:tabular-nums}.v-pass{color:#2a7a2a}.v-improved{color:#1f5fa8}\
.v-regressed{color:#fff;background:#c0392b;font-weight:bold}.v-unreliable{color:#8a5a00}.gate{font-size:1.4em;font-weight:bold;padding:.3em .6em;display:inline-block}.gate-red{color:#fff;background:#c0392b}.gate-green{color:#fff;background:#27ae60}.v-inconclusive{color:#777}\
.summary{font-size:1.1em;font-weight:bold;padding:.5em;background:#f4f4f4}.diff{color:#a03000}\
.grid{display:flex;flex-wrap:wrap;gap:8px}.why{color:#666;font-size:.9em}";

pub fn render(input: &ReportInput) -> String {
    let new = input.run;
    let base = input.comparison.map(|c| &c.base);
    let mut h = String::new();
    let title = match base {
        Some(b) => format!("pvcheck: {} → {}", b.label, new.label),
        None => format!("pvcheck run {}", new.label),
    };
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body>\n<h1>{}</h1>\n",
        esc(&title),
        esc(&title)
    );
    let _ = writeln!(
        h,
        "<p>Profile <b>{}</b>, platform <b>{}</b>, kernel {}; new run started {}{}.</p>",
        esc(&new.profile),
        esc(&new.platform),
        esc(new.environment["kernel"].as_str().unwrap_or("?")),
        esc(&new.start),
        base.map(|b| format!(
            "; baseline {} ({} run(s), {})",
            esc(&b.label),
            b.run_ids.len(),
            esc(&b.start)
        ))
        .unwrap_or_default()
    );
    if let Some(state) = input.gate() {
        let _ = writeln!(
            h,
            "<p class=\"gate {}\">Gate: {}</p>",
            if state.is_failure() {
                "gate-red"
            } else {
                "gate-green"
            },
            state.word()
        );
    }
    if let Some(why) = input.refused {
        let _ = writeln!(
            h,
            "<p class=\"summary\">No speed verdict: the comparison with the baseline was refused.</p><pre>{}</pre>",
            esc(why)
        );
    }
    if let Some(r) = input.comparison {
        let _ = writeln!(h, "<p class=\"summary\">{}</p>", esc(&r.summary()));
        if !r.differences.is_empty() {
            let _ = writeln!(
                h,
                "<h3 class=\"diff\">Unlike setups, compared with --allow-mismatch</h3><ul>"
            );
            for d in &r.differences {
                let _ = writeln!(h, "<li class=\"diff\">{}</li>", esc(&d.to_string()));
            }
            h.push_str("</ul>\n");
        }
        for n in &r.notes {
            let _ = writeln!(h, "<p class=\"why\">{}</p>", esc(n));
        }
    }
    let failed: Vec<_> = new.trials.iter().filter(|t| t.status == "failed").collect();
    if !failed.is_empty() {
        h.push_str("<h3>Failed trials</h3><ul>\n");
        for t in failed {
            let _ = writeln!(
                h,
                "<li><b>{}</b>{}: {}</li>",
                esc(&t.name),
                if t.is_integrity_failure() {
                    " (integrity)"
                } else if t.is_upgrade_failure() {
                    " (upgrade)"
                } else {
                    ""
                },
                esc(t
                    .failure_message
                    .as_deref()
                    .unwrap_or("")
                    .lines()
                    .next()
                    .unwrap_or(""))
            );
        }
        h.push_str("</ul>\n");
    }
    if let Some(r) = input.comparison {
        h.push_str("<h2>Verdicts</h2>\n<table><tr><th>class</th><th>workload</th><th>metric</th><th>base → new</th><th>change</th><th>interval</th><th>verdict</th><th>why</th></tr>\n");
        for c in &r.comparisons {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"v-{}\">{}</td><td class=\"why\">{}</td></tr>",
                esc(&c.class),
                esc(&c.workload),
                esc(c.metric.label()),
                esc(&old_new(c)),
                esc(&change(c)),
                esc(&interval(c)),
                c.verdict.as_str(),
                c.verdict.as_str(),
                if c.verdict == Verdict::Pass {
                    String::new()
                } else {
                    esc(&c.reason)
                }
            );
        }
        h.push_str("</table>\n");
    }
    // The history behind the trend charts, read once for every class.
    let hist = history::load(
        input.results,
        &history::Options {
            newest_files: Some(history::DEFAULT_LAST),
            ..history::Options::default()
        },
    )
    .ok();
    for class in new.classes() {
        let ws = workloads(new, &class);
        if ws.is_empty() {
            continue;
        }
        let _ = writeln!(h, "<h2>{}</h2>", esc(&class));
        let seed = |w: &str, side: u64| crate::checks::derive_u64(&format!("{class}:{w}:{side}"));
        for (metric, title, unit, scale) in [
            (Metric::Iops, "IOPS", "IOPS", 1.0),
            (Metric::Bandwidth, "bandwidth", "MiB/s", 1_048_576.0),
        ] {
            let rows: Vec<RateRow> = ws
                .iter()
                .filter(|(_, ms)| ms.contains(&metric))
                .map(|(w, _)| RateRow {
                    label: w.clone(),
                    base: base.and_then(|b| whisker(&values(b, &class, w, metric), seed(w, 0))),
                    new: whisker(&values(new, &class, w, metric), seed(w, 1)),
                })
                .collect();
            if let Some(svg) = (!rows.is_empty())
                .then(|| {
                    charts::rates(
                        &format!("{class}: {title}, median and 95% interval"),
                        unit,
                        &rows,
                        scale,
                    )
                })
                .flatten()
            {
                h.push_str(&svg);
                h.push('\n');
            }
        }
        if ws.iter().any(|(w, _)| w == "metadata") {
            let rows: Vec<RateRow> = [
                Metric::Creates,
                Metric::Stats,
                Metric::Renames,
                Metric::Unlinks,
            ]
            .iter()
            .map(|&m| RateRow {
                label: m.label().to_string(),
                base: base
                    .and_then(|b| whisker(&values(b, &class, "metadata", m), seed(m.key(), 0))),
                new: whisker(&values(new, &class, "metadata", m), seed(m.key(), 1)),
            })
            .collect();
            if let Some(svg) = charts::rates(
                &format!("{class}: metadata operations per second"),
                "ops/s",
                &rows,
                1.0,
            ) {
                h.push_str(&svg);
                h.push('\n');
            }
        }
        h.push_str("<h3>Latency percentiles (all repetitions merged)</h3>\n<div class=\"grid\">\n");
        for (w, _) in &ws {
            let b = base.and_then(|b| curve(b, &class, w));
            let n = curve(new, &class, w);
            if let Some(svg) = charts::percentiles(w, b.as_deref(), n.as_deref()) {
                h.push_str(&svg);
                h.push('\n');
            }
        }
        h.push_str("</div>\n");
        match trend(hist.as_ref(), &class) {
            Some(svg) => {
                h.push_str("<h3>Trend</h3>\n");
                h.push_str(&svg);
                h.push('\n');
            }
            None => {
                let _ = writeln!(
                    h,
                    "<p class=\"why\">No trend: fewer than two runs of {} in {}.</p>",
                    esc(&class),
                    esc(&input.results.join("runs").display().to_string())
                );
            }
        }
    }
    h.push_str("</body></html>\n");
    h
}
