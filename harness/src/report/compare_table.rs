//! The terminal view of a comparison: per class, old → new, change, interval and verdict, one
//! row per metric without rules between rows; below it, why each non-passing verdict is what
//! it is (one line per distinct reason).

use comfy_table::{Cell, CellAlignment, ContentArrangement, Table, presets};

use crate::compare::{Comparison, Report, Verdict};

fn pct(x: f64) -> String {
    format!("{:+.1}%", x)
}

/// `-2.1% … +1.5%` (the exact interval of the change), or `unbounded` when the repetitions are
/// too few for a bound.
pub fn interval(c: &Comparison) -> String {
    c.ratio
        .map(|r| {
            if r.confidence == 0.0 {
                return "unbounded".to_string();
            }
            format!(
                "{} … {}",
                pct((r.low - 1.0) * 100.0),
                pct((r.high - 1.0) * 100.0)
            )
        })
        .unwrap_or_default()
}

/// `97.2k → 96.8k`.
pub fn old_new(c: &Comparison) -> String {
    let f = |m: Option<f64>| m.map(|v| c.metric.format(v)).unwrap_or_else(|| "–".into());
    format!("{} → {}", f(c.base.median), f(c.new.median))
}

pub fn change(c: &Comparison) -> String {
    c.change_pct().map(pct).unwrap_or_default()
}

fn verdict_cell(v: Verdict) -> String {
    match v {
        Verdict::Regressed => "REGRESSED".into(),
        other => other.as_str().into(),
    }
}

/// The workloads of `class` that `run --baseline` repeated until decided: (workload, asked,
/// total).
pub fn repeated(run: &crate::compare::RunDoc, class: &str) -> Vec<(String, u64, u64)> {
    run.doc["trials"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["class"] == class)
        .filter_map(|t| {
            let r = &t["metrics"]["repeated_until_decided"];
            let w = t["check"].as_str()?.strip_prefix("speed::")?;
            Some((w.to_string(), r["initial"].as_u64()?, r["total"].as_u64()?))
        })
        .collect()
}

/// Renders the whole report for a terminal.
pub fn render(r: &Report) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "\ncomparing {} ({}, {} run(s)) → {} ({})\n",
        r.base.label,
        r.base.start,
        r.base.run_ids.len(),
        r.new.label,
        r.new.start
    ));
    if !r.differences.is_empty() {
        out.push_str(&format!(
            "UNLIKE SETUPS (--allow-mismatch): {} difference(s):\n",
            r.differences.len()
        ));
        for d in &r.differences {
            out.push_str(&format!("  {d}\n"));
        }
    }
    for n in &r.notes {
        out.push_str(&format!("note: {n}\n"));
    }
    let mut classes: Vec<&str> = Vec::new();
    for c in &r.comparisons {
        if !classes.contains(&c.class.as_str()) {
            classes.push(&c.class);
        }
    }
    for class in classes {
        let rows: Vec<&Comparison> = r.comparisons.iter().filter(|c| c.class == class).collect();
        let reps = |f: fn(&Comparison) -> usize| {
            let mut v: Vec<usize> = rows.iter().map(|c| f(c)).collect();
            v.sort_unstable();
            v.dedup();
            v.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join("/")
        };
        let counts: Vec<String> = Verdict::ALL
            .iter()
            .rev()
            .map(|v| (v, rows.iter().filter(|c| c.verdict == *v).count()))
            .filter(|(_, n)| *n > 0)
            .map(|(v, n)| format!("{n} {}", v.as_str()))
            .collect();
        out.push_str(&format!(
            "\n{class}: {} ({} vs {} repetitions)\n",
            counts.join(", "),
            reps(|c| c.base.values.len()),
            reps(|c| c.new.values.len())
        ));
        let mut t = Table::new();
        t.load_style(presets::ASCII_FULL_CONDENSED);
        if t.width().is_some_and(|w| w >= 60) {
            t.set_content_arrangement(ContentArrangement::Dynamic);
        }
        t.set_header(vec![
            "workload",
            "metric",
            "base → new",
            "change",
            "interval",
            "verdict",
        ]);
        let mut last_w = "";
        for c in &rows {
            let w = if c.workload == last_w {
                ""
            } else {
                c.workload.as_str()
            };
            last_w = &c.workload;
            t.add_row(vec![
                Cell::new(w),
                Cell::new(c.metric.label()),
                Cell::new(old_new(c)).set_alignment(CellAlignment::Right),
                Cell::new(change(c)).set_alignment(CellAlignment::Right),
                Cell::new(interval(c)),
                Cell::new(verdict_cell(c.verdict)),
            ]);
        }
        out.push_str(&format!("{t}\n"));
        for (w, initial, total) in repeated(&r.new, class) {
            out.push_str(&format!(
                "  {w} needed {total} repetitions to decide ({initial} asked, {} more while a figure was inconclusive)\n",
                total.saturating_sub(initial)
            ));
        }
        let mut seen: Vec<(String, String)> = Vec::new();
        for c in rows.iter().filter(|c| c.verdict != Verdict::Pass) {
            let key = (c.workload.clone(), c.reason.clone());
            if seen.contains(&key) {
                continue;
            }
            seen.push(key);
            let same: Vec<&str> = rows
                .iter()
                .filter(|o| o.workload == c.workload && o.reason == c.reason)
                .map(|o| o.metric.label())
                .collect();
            out.push_str(&format!(
                "  {} {} {}: {}\n",
                c.workload,
                same.join(", "),
                c.verdict.as_str(),
                c.reason
            ));
        }
    }
    for f in &r.failed {
        out.push_str(&format!(
            "{} {}: {}\n",
            if f.integrity {
                "INTEGRITY FAILED"
            } else if f.upgrade {
                "UPGRADE FAILED"
            } else {
                "FAILED"
            },
            f.name,
            f.message.lines().next().unwrap_or("")
        ));
    }
    out.push_str(&format!("\ngate: {}\n", r.summary()));
    out
}
