//! The end-of-run summary in the terminal: per class a heading with its verdict, a table of the
//! checks, a table of the speed figures, and the warnings and grouped errors.
//!
//! Rules (issue 15): no rule between rows; a class whose trials were all ignored for one reason
//! is one line; the status cell carries a short reason; speed columns only for speed trials;
//! MiB/s everywhere, ops/s for metadata, "fdatasync" for fsync-latency's p99; only the `data`
//! category says "integrity FAILED".

use comfy_table::{Cell, CellAlignment, ContentArrangement, LineStyle, Table, TableStyle};
use serde_json::Value;

use super::results::{FailureCategory, Status, TrialResult};
use crate::checks::agent_json::f64_at;

/// Longest status reason shown in a cell; the full text is in the result file.
const REASON_WIDTH: usize = 48;

fn fmt_latency(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.1} µs", ns / 1e3)
    }
}

/// `12345` → `12345`; above 100k as `123k`.
fn fmt_rate(v: f64) -> String {
    if v >= 100_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else {
        format!("{v:.0}")
    }
}

/// Cuts `s` to `n` characters, with an ellipsis.
pub fn short(s: &str, n: usize) -> String {
    let line = s.lines().next().unwrap_or("").trim();
    if line.chars().count() <= n {
        line.to_string()
    } else {
        format!("{}…", line.chars().take(n - 1).collect::<String>())
    }
}

fn status_cell(t: &TrialResult) -> String {
    let warned = match t.warnings.len() {
        0 => String::new(),
        1 => ", 1 warning".into(),
        n => format!(", {n} warnings"),
    };
    match t.status {
        Status::Passed => format!("ok{warned}"),
        Status::Failed => {
            let f = t.failure.as_ref();
            let cat = f.map_or("infrastructure", |f| f.category.as_str());
            let first = f
                .map(|f| short(&f.message, REASON_WIDTH))
                .unwrap_or_default();
            format!("FAILED ({cat}): {first}")
        }
        Status::Ignored => format!(
            "ignored: {}",
            short(t.ignored_reason.as_deref().unwrap_or(""), REASON_WIDTH)
        ),
        Status::Interrupted => "interrupted".into(),
    }
}

/// The failure categories of a class's failed trials, with their checks.
fn failed_by_category(trials: &[&TrialResult]) -> Vec<(FailureCategory, Vec<String>)> {
    let mut out: Vec<(FailureCategory, Vec<String>)> = Vec::new();
    for c in FailureCategory::ALL {
        let checks: Vec<String> = trials
            .iter()
            .filter(|t| t.status == Status::Failed)
            .filter(|t| {
                t.failure
                    .as_ref()
                    .map_or(FailureCategory::Infrastructure, |f| f.category)
                    == c
            })
            .map(|t| t.check.clone())
            .collect();
        if !checks.is_empty() {
            out.push((c, checks));
        }
    }
    out
}

/// A class's verdict: `integrity FAILED (data damaged): …` only for data; otherwise the
/// categories that failed, or clean.
pub fn class_verdict(trials: &[&TrialResult]) -> String {
    let failed = failed_by_category(trials);
    let list = |v: &[String]| {
        if v.len() > 4 {
            format!("{}, … ({} trials)", v[..3].join(", "), v.len())
        } else {
            v.join(", ")
        }
    };
    if !failed.is_empty() {
        let parts: Vec<String> = failed
            .iter()
            .map(|(c, v)| match c {
                FailureCategory::Data => format!("integrity FAILED (data damaged): {}", list(v)),
                FailureCategory::Strict => {
                    format!("failed because of a warning (--strict): {}", list(v))
                }
                c => format!("{} failure: {}", c.as_str(), list(v)),
            })
            .collect();
        // Data damage speaks for itself; a warning --strict refused is not a finding at all.
        let head = if failed.iter().all(|(c, _)| *c == FailureCategory::Strict)
            || failed.iter().any(|(c, _)| *c == FailureCategory::Data)
        {
            ""
        } else {
            "FAILED, not a data problem: "
        };
        return format!("{head}{}", parts.join("; "));
    }
    let integ = trials
        .iter()
        .filter(|t| {
            // Every check that verifies written data against its ledger.
            (t.check.starts_with("integrity::")
                || matches!(t.check.as_str(), "expand" | "snapshot" | "clone" | "rwx"))
                && t.status == Status::Passed
        })
        .count();
    if integ == 0 {
        "integrity not checked".into()
    } else {
        format!("integrity clean ({integ} check(s) passed)")
    }
}

/// The old name of [`class_verdict`].
pub fn integrity_verdict(trials: &[&TrialResult]) -> String {
    class_verdict(trials)
}

fn counts(trials: &[&TrialResult]) -> String {
    let n = |s: Status| trials.iter().filter(|t| t.status == s).count();
    let mut parts = vec![format!("{} passed", n(Status::Passed))];
    if n(Status::Failed) > 0 {
        parts.push(format!("{} failed", n(Status::Failed)));
    }
    if n(Status::Ignored) > 0 {
        parts.push(format!("{} ignored", n(Status::Ignored)));
    }
    if n(Status::Interrupted) > 0 {
        parts.push(format!("{} interrupted", n(Status::Interrupted)));
    }
    let warned = trials.iter().filter(|t| !t.warnings.is_empty()).count();
    if warned > 0 {
        parts.push(format!("{warned} with warnings"));
    }
    parts.join(", ")
}

fn new_table(header: Vec<&str>) -> Table {
    let mut table = Table::new();
    // A line under the header only: no borders, no rule between rows.
    table.load_style(TableStyle::new().header_separator(LineStyle::none().fill('-').junction(' ')));
    // Wrap to the terminal's width only where it is known and usable (not in a 0-column pty).
    if table.width().is_some_and(|w| w >= 60) {
        table.set_content_arrangement(ContentArrangement::Dynamic);
    }
    table.set_header(header);
    table
}

/// Speed figures of a trial: (rate cell, MiB/s cell, p99 cell).
pub fn speed_cells(t: &TrialResult) -> Option<(String, String, String)> {
    let b = t.metrics.get("bench")?;
    let num = |path: &[&str]| f64_at(b, path);
    let workload = t.check.strip_prefix("speed::").unwrap_or("");
    let metadata = workload == "metadata" || b.get("metadata").is_some_and(|m| !m.is_null());
    let fsync = workload == "fsync-latency";
    let rate = num(&["iops"]).map(|v| {
        if metadata {
            format!("{} ops/s", fmt_rate(v))
        } else {
            format!("{} IOPS", fmt_rate(v))
        }
    });
    // The queue depth the agent kept, where it fell below 97 % of the job's: such a figure
    // measured a shallower queue than the workload names.
    let depth = num(&["job", "iodepth"]).unwrap_or(0.0) * num(&["job", "jobs"]).unwrap_or(1.0);
    let rate = match (rate, num(&["qd_achieved"])) {
        (Some(r), Some(qd)) if depth > 0.0 && qd < 0.97 * depth => {
            Some(format!("{r} (QD {qd:.1} of {depth:.0})"))
        }
        (r, _) => r,
    };
    let mibs = if metadata {
        None
    } else {
        num(&["bw_bytes"]).map(|v| format!("{:.1}", v / 1048576.0))
    };
    let p99 = num(&["lat_ns", "p99"]).map(|v| {
        if fsync {
            format!("{} fdatasync", fmt_latency(v))
        } else {
            fmt_latency(v)
        }
    });
    Some((
        rate.unwrap_or_default(),
        mibs.unwrap_or_default(),
        p99.unwrap_or_default(),
    ))
}

/// `w` with its figures taken out: the same warning about different measurements.
fn shape(w: &str) -> String {
    let mut out = String::with_capacity(w.len());
    let mut in_number = false;
    for c in w.chars() {
        if c.is_ascii_digit() || (in_number && c == '.') {
            if !in_number {
                out.push('#');
            }
            in_number = true;
        } else {
            in_number = false;
            out.push(c);
        }
    }
    out
}

/// Warnings of several trials that say the same (figures aside), once, with the trials; the
/// text shown is the first trial's.
pub fn grouped_warnings(trials: &[&TrialResult]) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, String, Vec<String>)> = Vec::new();
    for t in trials {
        for w in &t.warnings {
            let key = shape(w);
            match out.iter_mut().find(|(k, _, _)| *k == key) {
                Some((_, _, who)) => who.push(t.check.clone()),
                None => out.push((key, w.clone(), vec![t.check.clone()])),
            }
        }
    }
    out.into_iter().map(|(_, text, who)| (text, who)).collect()
}

/// Identical failures (after taking out what names the trial's own volume), once, with a count.
fn grouped_failures(trials: &[&TrialResult], run_id: &str) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for t in trials.iter().filter(|t| t.status == Status::Failed) {
        let Some(f) = &t.failure else { continue };
        let key = super::errors::normalize(f.message.lines().next().unwrap_or(""), run_id);
        match out.iter_mut().find(|(k, _)| *k == key) {
            Some((_, who)) => who.push(t.check.clone()),
            None => out.push((key, vec![t.check.clone()])),
        }
    }
    out
}

fn names(v: &[String]) -> String {
    if v.len() > 3 {
        format!("{}, … ({} trials)", v[..2].join(", "), v.len())
    } else {
        v.join(", ")
    }
}

/// Renders the per-class summaries, every class with its tables (`--verbose`).
pub fn render(trials: &[TrialResult], run_id: &str) -> String {
    render_with(trials, run_id, true)
}

/// Renders the per-class summaries, in the order classes first appear in `trials` (plan order).
/// Without `verbose` a class with no failure is its line and its warnings (each once); a class
/// with a failure always gets its tables and errors in full.
pub fn render_with(trials: &[TrialResult], run_id: &str, verbose: bool) -> String {
    let mut classes: Vec<&str> = Vec::new();
    for t in trials {
        if !classes.contains(&t.class.as_str()) {
            classes.push(&t.class);
        }
    }
    let mut out = String::new();
    // Compact class lines follow each other without a blank line between them.
    let mut compact_before = false;
    let mut hidden_tables = false;
    for class in classes {
        let of: Vec<&TrialResult> = trials.iter().filter(|t| t.class == class).collect();
        // All ignored for one reason: one line.
        let first_reason = of.first().and_then(|t| t.ignored_reason.as_deref());
        if of
            .iter()
            .all(|t| t.status == Status::Ignored && t.ignored_reason.as_deref() == first_reason)
        {
            out.push_str(&format!(
                "{}{class}: all {} trial(s) ignored: {}\n",
                if compact_before { "" } else { "\n" },
                of.len(),
                first_reason.unwrap_or("")
            ));
            compact_before = true;
            continue;
        }
        let failed = of.iter().any(|t| t.status == Status::Failed);
        if !verbose && !failed {
            out.push_str(&format!(
                "{}{class}: {} · {}\n",
                if compact_before { "" } else { "\n" },
                class_verdict(&of),
                counts(&of)
            ));
            compact_before = true;
            hidden_tables = true;
            push_warnings(&mut out, &of);
            continue;
        }
        compact_before = false;
        out.push_str(&format!(
            "\n{class}: {} · {}\n",
            class_verdict(&of),
            counts(&of)
        ));
        let (speed, checks): (Vec<&TrialResult>, Vec<&TrialResult>) =
            of.iter().partition(|t| t.check.starts_with("speed::"));
        if !checks.is_empty() {
            let mut table = new_table(vec!["check", "status", "time"]);
            for t in &checks {
                table.add_row(vec![
                    Cell::new(&t.check),
                    Cell::new(status_cell(t)),
                    Cell::new(format!("{:.1}s", t.duration_s)).set_alignment(CellAlignment::Right),
                ]);
            }
            out.push_str(&format!("{table}\n"));
            for t in &checks {
                if let Some(line) = live_line(t) {
                    out.push_str(&format!("  {line}\n"));
                }
            }
        }
        if !speed.is_empty() {
            let mut table = new_table(vec![
                "speed",
                "status",
                "rate",
                "MiB/s",
                "p99 latency",
                "time",
            ]);
            for t in &speed {
                let (rate, mibs, p99) = speed_cells(t).unwrap_or_default();
                table.add_row(vec![
                    Cell::new(t.check.strip_prefix("speed::").unwrap_or(&t.check)),
                    Cell::new(status_cell(t)),
                    Cell::new(rate).set_alignment(CellAlignment::Right),
                    Cell::new(mibs).set_alignment(CellAlignment::Right),
                    Cell::new(p99).set_alignment(CellAlignment::Right),
                    Cell::new(format!("{:.1}s", t.duration_s)).set_alignment(CellAlignment::Right),
                ]);
            }
            out.push_str(&format!("{table}\n"));
        }
        for (text, who) in grouped_failures(&of, run_id) {
            let count = if who.len() > 1 {
                format!(" ×{}", who.len())
            } else {
                String::new()
            };
            out.push_str(&format!("  error{count} ({}): {text}\n", names(&who)));
        }
        push_warnings(&mut out, &of);
    }
    if hidden_tables {
        out.push_str("(the per-check tables of the classes that passed: --verbose)\n");
    }
    out
}

/// The figures of a live check (`integrity::live-upgrade`, `disruption::node-plugin-kill`) in
/// one line: each window, the errors by kind, the longest stall, the records.
pub fn live_line(t: &TrialResult) -> Option<String> {
    let m = t.metrics.get("live")?;
    let name = t.check.rsplit("::").next().unwrap_or(&t.check);
    let windows: Vec<String> = m["windows"]
        .as_array()
        .map(|ws| {
            ws.iter()
                .map(|w| {
                    format!(
                        "{} window {:.1} s{}",
                        w["what"].as_str().unwrap_or("?"),
                        w["seconds"].as_f64().unwrap_or(0.0),
                        w["node"]
                            .as_str()
                            .map(|n| format!(" on {n}"))
                            .unwrap_or_default()
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let errors: Vec<String> = m["errors_by_kind"]
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| format!("{k} ×{}", v["count"].as_u64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default();
    let n = |k: &str| m[k].as_u64().unwrap_or(0);
    Some(format!(
        "{name}: {}{} · errors: {} · longest stall {:.1} s · {} records acknowledged, {} verified in place, {} after the recreate",
        if windows.is_empty() {
            "no window".to_string()
        } else {
            windows.join(", ")
        },
        if m["drain"] == true { " (drained)" } else { "" },
        if errors.is_empty() {
            "none".to_string()
        } else {
            errors.join(", ")
        },
        m["longest_stall_seconds"].as_f64().unwrap_or(0.0),
        n("records_acknowledged"),
        n("records_verified_in_place"),
        n("records_verified_after_recreate"),
    ))
}

/// A class's warnings, each once (with the trials that had it).
fn push_warnings(out: &mut String, of: &[&TrialResult]) {
    for (text, who) in grouped_warnings(of) {
        let (count, first) = if who.len() > 1 {
            (format!(" ×{}", who.len()), " (figures of the first)")
        } else {
            (String::new(), "")
        };
        out.push_str(&format!(
            "  warning{count} ({}){first}: {text}\n",
            names(&who)
        ));
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::results::FailureRecord;

    fn t(class: &str, check: &str, status: Status) -> TrialResult {
        TrialResult {
            name: format!("{class}::{check}"),
            class: class.into(),
            check: check.into(),
            status,
            started: "2026-11-28T00:00:00.000Z".into(),
            duration_s: 0.5,
            metrics: serde_json::json!({}),
            warnings: Vec::new(),
            ignored_reason: (status == Status::Ignored).then(|| "mkfs.xfs is not installed".into()),
            failure: (status == Status::Failed).then(|| FailureRecord {
                category: FailureCategory::Setup,
                message: "`mount` failed (exit 32): bad option".into(),
                details: serde_json::Value::Null,
            }),
            timeline: Vec::new(),
        }
    }

    /// A class this machine cannot run is one line, not a table of identical reasons.
    #[test]
    fn a_class_ignored_for_one_reason_is_one_line() {
        let trials = vec![
            t("xfs-loop", "provision", Status::Ignored),
            t("xfs-loop", "speed::metadata", Status::Ignored),
        ];
        let out = render(&trials, "ab12cd34");
        assert_eq!(
            out.trim(),
            "xfs-loop: all 2 trial(s) ignored: mkfs.xfs is not installed"
        );
    }

    /// Issue 23, item 14: `pvcheck run` printed every class's tables (about 300 lines for the
    /// default classes). Without --verbose a class that passed is its line (and its warnings); a
    /// class with a failure keeps its tables and errors in full.
    #[test]
    fn passed_classes_are_one_line_without_verbose_and_failures_stay_in_full() {
        let mut warned = t("good", "expand", Status::Passed);
        warned.warnings = vec!["grown offline".into()];
        let trials = vec![
            t("good", "provision", Status::Passed),
            t("good", "integrity::recreate", Status::Passed),
            warned,
            t("other", "provision", Status::Passed),
            t("bad", "provision", Status::Failed),
            t("bad", "integrity::recreate", Status::Passed),
        ];
        let out = render_with(&trials, "ab12cd34", false);
        assert!(
            out.starts_with(
                "\ngood: integrity clean (2 check(s) passed) · 3 passed, 1 with warnings\n  warning (expand): grown offline\nother: integrity not checked · 1 passed\n\nbad: FAILED, not a data problem: setup failure: provision · 1 passed, 1 failed\n"
            ),
            "{out}"
        );
        // The failed class in full: its table (both rows) and its error.
        assert!(out.contains("FAILED (setup): `mount` failed"), "{out}");
        assert!(
            out.lines()
                .any(|l| l.trim_start().starts_with("integrity::recreate") && l.contains("ok")),
            "{out}"
        );
        assert!(out.contains("  error (provision): `mount` failed"), "{out}");
        assert!(
            out.ends_with("(the per-check tables of the classes that passed: --verbose)\n"),
            "{out}"
        );
        // Only the failed class has a table.
        assert_eq!(out.matches(" check ").count(), 1, "{out}");
        // --verbose: every class with its table.
        let full = render_with(&trials, "ab12cd34", true);
        assert_eq!(full.matches(" check ").count(), 3, "{full}");
        assert!(!full.contains("--verbose"), "{full}");
    }

    /// A class whose data checks were clone and rwx said "integrity not checked": both verify
    /// written data against its ledger.
    #[test]
    fn clone_and_rwx_count_as_integrity_checks() {
        let trials = vec![
            t("nfs", "clone", Status::Passed),
            t("nfs", "rwx", Status::Passed),
            t("nfs", "speed::metadata", Status::Passed),
        ];
        let out = render(&trials, "ab12cd34");
        assert!(
            out.contains("nfs: integrity clean (2 check(s) passed)"),
            "{out}"
        );
    }

    /// Only `data` may read as damaged data; no rule between rows; speed columns only for speed.
    #[test]
    fn a_setup_failure_does_not_say_integrity_failed_and_rows_have_no_rules() {
        let mut speed = t("c", "speed::metadata", Status::Passed);
        speed.metrics = serde_json::json!({ "bench": { "iops": 5000.0, "bw_bytes": 1.0, "lat_ns": { "p99": 2000.0 }, "metadata": {} } });
        let mut fsync = t("c", "speed::fsync-latency", Status::Passed);
        fsync.metrics = serde_json::json!({ "bench": { "iops": 900.0, "bw_bytes": 2e6, "lat_ns": { "p99": 1.5e6 } } });
        fsync.warnings = vec!["fdatasync p99 is 1.5 ms".into()];
        let trials = vec![
            t("c", "provision", Status::Failed),
            t("c", "integrity::recreate", Status::Failed),
            t("c", "expand", Status::Passed),
            speed,
            fsync,
        ];
        let out = render(&trials, "ab12cd34");
        assert!(!out.contains("integrity FAILED"), "{out}");
        assert!(
            out.contains(
                "c: FAILED, not a data problem: setup failure: provision, integrity::recreate"
            ),
            "{out}"
        );
        assert!(out.contains("FAILED (setup): `mount` failed"), "{out}");
        assert!(
            out.contains("error ×2 (provision, integrity::recreate)"),
            "{out}"
        );
        assert!(
            out.contains("5000 ops/s") && out.contains("1.50 ms fdatasync"),
            "{out}"
        );
        assert!(
            out.contains("ok, 1 warning") && out.contains("warning (speed::fsync-latency)"),
            "{out}"
        );
        // One separator line per table (under the header), none between rows.
        let rules = out
            .lines()
            .filter(|l| l.trim_start().starts_with("---"))
            .count();
        assert_eq!(rules, 2, "{out}");
        // The checks table has no speed columns.
        let checks_header = out
            .lines()
            .find(|l| l.contains("check") && l.contains("status"))
            .unwrap();
        assert!(!checks_header.contains("MiB/s"), "{checks_header}");
    }

    #[test]
    fn speed_rate_shows_the_queue_depth_only_when_under_97_percent() {
        let mut short = t("c", "speed::randread-4k-qd32", Status::Passed);
        short.metrics = serde_json::json!({ "bench": { "iops": 5000.0, "bw_bytes": 1.0, "lat_ns": { "p99": 2000.0 },
            "job": { "iodepth": 32, "jobs": 1 }, "qd_achieved": 21.2 } });
        assert_eq!(speed_cells(&short).unwrap().0, "5000 IOPS (QD 21.2 of 32)");
        let mut full = short.clone();
        full.metrics["bench"]["qd_achieved"] = serde_json::json!(31.2);
        assert_eq!(speed_cells(&full).unwrap().0, "5000 IOPS");
    }
}
