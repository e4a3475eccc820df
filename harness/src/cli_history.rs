//! `pvcheck history`: the nightly history of a results directory, its change points and
//! whether the newest segment regressed (issue 19). Thin: flags and printing; the work is in
//! [`crate::compare::history`] and [`crate::stats::edivisive`].

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;

use clap::Args;
use serde_json::{Value, json};

use crate::compare::history::{self, History, Options, Series, Verdict};
use crate::exit_code;

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Results root: the runs are read from DIR/runs/*.json.
    #[arg(long, value_name = "DIR", default_value = "results")]
    pub results: PathBuf,
    /// Only this class.
    #[arg(long, value_name = "CLASS")]
    pub class: Option<String>,
    /// Only this workload (e.g. randwrite-4k-qd1).
    #[arg(long, value_name = "WORKLOAD")]
    pub workload: Option<String>,
    /// How many of each series' newest runs are searched and shown.
    #[arg(long, value_name = "N", default_value_t = history::DEFAULT_LAST as u32,
          value_parser = clap::value_parser!(u32).range(2..=100_000))]
    pub last: u32,
    /// Output: a table for people, or JSON.
    #[arg(long, value_name = "text|json", default_value = "text", value_parser = ["text", "json"])]
    pub format: String,
    /// Exit 0 rather than 4 when no series regressed but some have too short a history to be
    /// judged (the summary still counts them).
    #[arg(long)]
    pub allow_inconclusive: bool,
}

/// `pvcheck history`.
pub fn history_cmd(a: HistoryArgs) -> u8 {
    let opts = Options {
        class: a.class.clone(),
        workload: a.workload.clone(),
        last: a.last as usize,
        newest_files: None,
    };
    let h = match history::load(&a.results, &opts) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("pvcheck: {}: {e}", e.flag());
            return exit_code::USAGE;
        }
    };
    for w in &h.warnings {
        eprintln!("pvcheck: warning: {w}");
    }
    let code = h.exit_code(a.allow_inconclusive);
    let text = if a.format == "json" {
        let mut v = to_json(&h);
        v["exit_code"] = json!(code);
        let mut t = serde_json::to_string_pretty(&v).unwrap_or_else(|_| "{}".into());
        t.push('\n');
        t
    } else {
        render(&h)
    };
    // A reader that went away (`| head`) is not an error of the history: the verdict stands.
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
    code
}

const LEVELS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// The points `[a, b)` as a sparkline on the series' log scale.
fn spark(s: &Series, a: usize, b: usize, lo: f64, span: f64) -> String {
    s.points[a..b]
        .iter()
        .map(|p| {
            let x = ((p.value.ln() - lo) / span * 8.0).floor();
            LEVELS[(x.max(0.0) as usize).min(7)]
        })
        .collect()
}

fn median(s: &Series, a: usize, b: usize) -> f64 {
    let v: Vec<f64> = s.points[a..b].iter().map(|p| p.value).collect();
    crate::stats::median(&v).unwrap_or(f64::NAN)
}

/// `20.0k ▅▆▅▆ |-20.0%| 16.0k ▂▁▂ ‖ 9.8k ▄▄▅`: per segment its median and sparkline.
fn line(s: &Series) -> String {
    let logs: Vec<f64> = s.points.iter().map(|p| p.value.ln()).collect();
    let lo = logs.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = logs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    // At least twice the threshold tall, so run-to-run noise does not look like a cliff.
    let span = (hi - lo).max((1.0 + 2.0 * s.margin).ln()).max(1e-9);
    let lo = lo - ((span - (hi - lo)) / 2.0).max(0.0);
    let mut cuts: Vec<(usize, String)> = Vec::new();
    for e in s.epochs.iter().skip(1) {
        cuts.push((e.first, " ‖ ".into()));
    }
    for c in &s.changes {
        cuts.push((c.index, format!(" |{:+.1}%| ", 100.0 * c.change)));
    }
    cuts.sort_by_key(|c| c.0);
    let mut out = String::new();
    let mut from = 0;
    let end = (s.points.len(), String::new());
    for (at, mark) in cuts.iter().chain(std::iter::once(&end)) {
        let _ = write!(
            out,
            "{} {}{mark}",
            s.metric.format(median(s, from, *at)),
            spark(s, from, *at, lo, span)
        );
        from = *at;
    }
    out
}

/// The whole text output.
pub fn render(h: &History) -> String {
    let mut o = String::new();
    let span = h
        .span
        .as_ref()
        .map(|(a, b)| {
            format!(
                " from {} to {}",
                a.get(..10).unwrap_or(a),
                b.get(..10).unwrap_or(b)
            )
        })
        .unwrap_or_default();
    let _ = writeln!(
        o,
        "pvcheck history of {}: {}{span}, {} (class × workload × figure)",
        h.runs_dir.display(),
        crate::registry::count(h.runs, "run"),
        format!("{} series", h.series.len()),
    );
    let _ = writeln!(
        o,
        "One point per run (the median of its repetitions), oldest → newest. Change points: E-Divisive means on log values,\n\
         {} permutations, p ≤ {}, ≥ {} runs per segment; a series is judged from {} runs of one setup.\n\
         Marks: |±x%| a change point, ‖ the setup changed (kernel, class, job, …: history restarts).\n",
        h.params.permutations, h.params.alpha, h.params.min_segment, h.min_runs
    );
    let label = |s: &Series| format!("{} {} {}", s.class, s.workload, s.metric.label());
    let width = h
        .series
        .iter()
        .map(|s| label(s).chars().count())
        .max()
        .unwrap_or(0);
    for s in &h.series {
        let _ = writeln!(
            o,
            "{:<10}  {:<width$}  {}",
            s.verdict.as_str(),
            label(s),
            line(s)
        );
        for e in s.epochs.iter().skip(1) {
            let p = &s.points[e.first];
            let what: Vec<String> = e
                .differences
                .iter()
                .take(3)
                .map(|d| d.to_string())
                .collect();
            let more = e.differences.len().saturating_sub(3);
            let _ = writeln!(
                o,
                "{:12}setup changed on {} (run {}): {}{}",
                "",
                p.date(),
                p.run_id,
                what.join("; "),
                if more > 0 {
                    format!("; {more} more")
                } else {
                    String::new()
                }
            );
        }
        for c in &s.changes {
            let p = &s.points[c.index];
            let _ = writeln!(
                o,
                "{:12}change on {} (run {}): {} → {} ({:+.1}%, p = {:.3})",
                "",
                p.date(),
                p.run_id,
                s.metric.format(c.before),
                s.metric.format(c.after),
                100.0 * c.change,
                c.p
            );
        }
        if s.verdict != Verdict::Stable || !s.changes.is_empty() {
            let _ = writeln!(o, "{:12}{}: {}", "", s.verdict.as_str(), s.why);
        }
    }
    let _ = writeln!(o, "\n{}", h.summary());
    o
}

/// The JSON output (`--format json`).
pub fn to_json(h: &History) -> Value {
    let series: Vec<Value> = h
        .series
        .iter()
        .map(|s| {
            let at = |i: usize| json!({ "run_id": s.points[i].run_id, "start": s.points[i].start });
            json!({
                "class": s.class,
                "workload": s.workload,
                "metric": s.metric.key(),
                "label": s.metric.label(),
                "higher_is_better": s.metric.higher_is_better(),
                "verdict": s.verdict.key(),
                "why": s.why,
                "threshold": s.margin,
                "noise_sigma": s.noise_sigma,
                "points": s.points.iter().map(|p| json!({
                    "run_id": p.run_id, "start": p.start, "file": p.file.display().to_string(),
                    "value": p.value, "repetitions": p.repetitions,
                })).collect::<Vec<_>>(),
                "change_points": s.changes.iter().map(|c| json!({
                    "index": c.index, "run_id": s.points[c.index].run_id, "start": s.points[c.index].start,
                    "before": c.before, "after": c.after, "change": c.change, "p": c.p,
                })).collect::<Vec<_>>(),
                "setup_changes": s.epochs.iter().skip(1).map(|e| json!({
                    "index": e.first, "run_id": s.points[e.first].run_id, "start": s.points[e.first].start,
                    "differences": e.differences.iter().map(|d| json!({
                        "key": d.key, "before": d.base, "after": d.new,
                    })).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
                "judged": s.judged.map(|j| json!({
                    "reference_since": at(j.reference_first), "reference": j.reference,
                    "newest_since": at(j.newest_first), "newest": j.newest, "change": j.change,
                })),
            })
        })
        .collect();
    json!({
        "runs_dir": h.runs_dir.display().to_string(),
        "runs": h.runs,
        "from": h.span.as_ref().map(|s| &s.0),
        "to": h.span.as_ref().map(|s| &s.1),
        "method": {
            "name": "E-Divisive means (Matteson & James 2014), on log values",
            "permutations": h.params.permutations,
            "alpha": h.params.alpha,
            "min_segment": h.params.min_segment,
            "min_runs": h.min_runs,
        },
        "series": series,
        "summary": {
            "regressed": h.count(Verdict::Regressed),
            "not_judged": h.count(Verdict::NotJudged),
            "improved": h.count(Verdict::Improved),
            "stable": h.count(Verdict::Stable),
        },
        "warnings": h.warnings,
    })
}
