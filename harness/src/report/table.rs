//! The end-of-run summary: one table per class with IOPS, MB/s, p99 latency and the integrity verdict.

use comfy_table::{Cell, ContentArrangement, Table, presets};
use serde_json::Value;

use super::results::{Status, TrialResult};
use crate::checks::agent_json::f64_at;

fn fmt_latency(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.1} µs", ns / 1e3)
    }
}

fn status_cell(t: &TrialResult) -> String {
    match t.status {
        Status::Passed => "ok".into(),
        Status::Failed => "FAILED".into(),
        Status::Ignored => format!("ignored: {}", t.ignored_reason.as_deref().unwrap_or("")),
        Status::Interrupted => "interrupted".into(),
    }
}

/// The integrity verdict of a class: clean / DAMAGED (which checks) / not run.
pub fn integrity_verdict(trials: &[&TrialResult]) -> String {
    let integ: Vec<&&TrialResult> = trials
        .iter()
        .filter(|t| {
            t.check.starts_with("integrity::") || t.check == "expand" || t.check == "snapshot"
        })
        .collect();
    let failed: Vec<&str> = integ
        .iter()
        .filter(|t| t.status == Status::Failed)
        .map(|t| t.check.as_str())
        .collect();
    let passed = integ.iter().filter(|t| t.status == Status::Passed).count();
    if !failed.is_empty() {
        format!("FAILED: {}", failed.join(", "))
    } else if passed == 0 {
        "not checked".into()
    } else {
        format!("clean ({passed} check(s) passed)")
    }
}

/// Renders the per-class tables, in the order classes first appear in `trials`.
pub fn render(trials: &[TrialResult]) -> String {
    let mut classes: Vec<&str> = Vec::new();
    for t in trials {
        if !classes.contains(&t.class.as_str()) {
            classes.push(&t.class);
        }
    }
    let mut out = String::new();
    for class in classes {
        let mut of: Vec<&TrialResult> = trials.iter().filter(|t| t.class == class).collect();
        // In check order, not in the order they finished.
        let order: Vec<String> = crate::checks::Check::all()
            .iter()
            .map(crate::checks::Check::name)
            .collect();
        of.sort_by_key(|t| {
            order
                .iter()
                .position(|n| *n == t.check)
                .unwrap_or(usize::MAX)
        });
        // A class whose every trial is ignored for one reason is one line, not a table that
        // repeats the reason on every row (issue 12: 17 identical rows per flexVolume class).
        if let Some(first) = of.first()
            && of
                .iter()
                .all(|t| t.status == Status::Ignored && t.ignored_reason == first.ignored_reason)
        {
            out.push_str(&format!(
                "\n{class}: all {} trials ignored: {}\n",
                of.len(),
                first.ignored_reason.as_deref().unwrap_or("")
            ));
            continue;
        }
        let mut table = Table::new();
        // No rule between rows: compact, as the comparison table.
        table.load_style(presets::ASCII_FULL_CONDENSED);
        // Wrap to the terminal's width only where it is known and usable (not in a 0-column pty).
        if table.width().is_some_and(|w| w >= 60) {
            table.set_content_arrangement(ContentArrangement::Dynamic);
        }
        table.set_header(vec![
            "check",
            "status",
            "IOPS",
            "MB/s",
            "p99 latency",
            "time",
        ]);
        for t in &of {
            let bench = t.metrics.get("bench");
            let num = |path: &[&str]| bench.and_then(|b| f64_at(b, path));
            // Metadata operations are a rate of operations, not of bytes.
            let metadata = bench.and_then(|b| b.get("metadata")).is_some();
            let iops = num(&["iops"])
                .map(|v| {
                    if metadata {
                        format!("{v:.0} ops/s")
                    } else {
                        format!("{v:.0}")
                    }
                })
                .unwrap_or_default();
            let mbs = num(&["bw_bytes"])
                .filter(|_| !metadata)
                .map(|v| format!("{:.1}", v / 1e6))
                .unwrap_or_default();
            let p99 = num(&["lat_ns", "p99"]).map(fmt_latency).unwrap_or_default();
            table.add_row(vec![
                Cell::new(&t.check),
                Cell::new(status_cell(t)),
                Cell::new(iops),
                Cell::new(mbs),
                Cell::new(p99),
                Cell::new(format!("{:.1}s", t.duration_s)),
            ]);
        }
        out.push_str(&format!(
            "\n{class}: integrity {}\n{table}\n",
            integrity_verdict(&of)
        ));
    }
    out
}

/// The metrics of a speed trial as (iops, bytes/s, p99 ns), for other reports.
pub fn speed_figures(metrics: &Value) -> Option<(f64, f64, f64)> {
    let b = metrics.get("bench")?;
    Some((
        f64_at(b, &["iops"])?,
        f64_at(b, &["bw_bytes"])?,
        f64_at(b, &["lat_ns", "p99"])?,
    ))
}
