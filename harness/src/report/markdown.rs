//! `--markdown FILE`: for a pull-request comment or a CI job summary. The verdict first, then
//! what needs attention (regressions, failed trials, unreliable and inconclusive comparisons),
//! then every comparison in a collapsed section.

use std::fmt::Write as _;

use super::compare_table::{change, interval, old_new};
use super::outputs::ReportInput;
use crate::compare::{Comparison, Verdict};

fn esc(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn table(out: &mut String, rows: &[&Comparison], with_reason: bool) {
    out.push_str("| class | workload | metric | base → new | change | interval | verdict |");
    out.push_str(if with_reason { " why |\n" } else { "\n" });
    out.push_str("|---|---|---|---:|---:|---|---|");
    out.push_str(if with_reason { "---|\n" } else { "\n" });
    for c in rows {
        let verdict = match c.verdict {
            Verdict::Regressed => "**regressed**",
            v => v.as_str(),
        };
        let _ = write!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            c.class,
            c.workload,
            c.metric.label(),
            old_new(c),
            change(c),
            interval(c),
            verdict
        );
        if with_reason {
            let _ = write!(out, " {} |", esc(&c.reason));
        }
        out.push('\n');
    }
}

pub fn render(input: &ReportInput) -> String {
    let run = input.run;
    let mut out = String::new();
    let failed: Vec<_> = run.trials.iter().filter(|t| t.status == "failed").collect();
    let passed = run.trials.iter().filter(|t| t.status == "passed").count();
    let ignored = run.trials.iter().filter(|t| t.status == "ignored").count();
    if let Some(why) = input.refused {
        let _ = writeln!(
            out,
            "## ❌ pvcheck gate: REFUSED — {} was not compared\n",
            run.label
        );
        let _ = writeln!(
            out,
            "**No speed verdict was given: the comparison with the baseline was refused.**\n"
        );
        let _ = writeln!(out, "```\n{}\n```\n", why.trim_end());
    }
    match input.comparison {
        Some(r) => {
            let state = input.gate().unwrap_or(super::outputs::GateState::Pass);
            let icon = match state {
                super::outputs::GateState::Pass => "✅",
                super::outputs::GateState::NotJudged { accepted: true } => "⚠️",
                _ => "❌",
            };
            let _ = writeln!(
                out,
                "## {icon} pvcheck gate: {} — {} → {}\n",
                state.word(),
                r.base.label,
                r.new.label
            );
            let _ = writeln!(out, "**{}**\n", r.summary());
            let _ = writeln!(
                out,
                "Profile `{}`, platform `{}`; {passed} trial(s) passed, {} failed, {ignored} ignored. Regressed means: the exact interval of the change (Hodges–Lehmann, one-sided bounds of at least {:.1}%) lies wholly beyond the margin (the class's threshold, or 3σ of the figure's run-to-run noise in history when larger), or every new repetition is worse than every base one by more than twice the margin. Not judged: inconclusive (more repetitions needed) or unreliable (stalls, unstable or shallow repetitions).\n",
                run.profile,
                run.platform,
                failed.len(),
                (1.0 - crate::compare::gate::ALPHA) * 100.0
            );
            if !r.differences.is_empty() {
                let _ = writeln!(
                    out,
                    "### ⚠️ Unlike setups (compared with `--allow-mismatch`)\n"
                );
                for d in &r.differences {
                    let _ = writeln!(out, "- `{}`", d);
                }
                out.push('\n');
            }
            for n in &r.notes {
                let _ = writeln!(out, "> {n}\n");
            }
            if !r.failed.is_empty() {
                let _ = writeln!(out, "### Failed trials\n");
                for f in &r.failed {
                    let _ = writeln!(
                        out,
                        "- `{}`{}: {}",
                        f.name,
                        if f.integrity {
                            " (**integrity**)"
                        } else if f.upgrade {
                            " (**upgrade**)"
                        } else {
                            ""
                        },
                        esc(f.message.lines().next().unwrap_or(""))
                    );
                }
                out.push('\n');
            }
            let attention: Vec<&Comparison> = r
                .comparisons
                .iter()
                .filter(|c| c.verdict != Verdict::Pass && c.verdict != Verdict::Improved)
                .collect();
            if !attention.is_empty() {
                let _ = writeln!(out, "### Needs attention\n");
                let mut sorted = attention.clone();
                sorted.sort_by_key(|c| std::cmp::Reverse(c.verdict));
                table(&mut out, &sorted, true);
                out.push('\n');
            }
            let all: Vec<&Comparison> = r.comparisons.iter().collect();
            let _ = writeln!(
                out,
                "<details><summary>All {} comparisons</summary>\n",
                all.len()
            );
            table(&mut out, &all, false);
            out.push_str("\n</details>\n");
        }
        None => {
            if input.refused.is_none() {
                let icon = if failed.is_empty() { "✅" } else { "❌" };
                let _ = writeln!(out, "## pvcheck run {} {icon}\n", run.label);
            }
            let _ = writeln!(
                out,
                "Profile `{}`, platform `{}`: {passed} passed, {} failed, {ignored} ignored.\n",
                run.profile,
                run.platform,
                failed.len()
            );
            for t in &failed {
                let _ = writeln!(
                    out,
                    "- ❌ `{}`{}: {}",
                    t.name,
                    if t.is_upgrade_failure() {
                        " (**upgrade**)"
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
            if !failed.is_empty() {
                out.push('\n');
            }
            out.push_str(
                "| class | workload | metric | median | repetitions |\n|---|---|---|---:|---:|\n",
            );
            for t in run.trials.iter().filter(|t| !t.repetitions.is_empty()) {
                let Some(w) = t.workload() else { continue };
                for m in crate::compare::metrics::metrics_of(&t.repetitions[0]) {
                    let vals: Vec<f64> = t
                        .repetitions
                        .iter()
                        .filter_map(|b| crate::compare::metrics::value(b, m))
                        .collect();
                    let med = crate::stats::median(&vals)
                        .map(|v| m.format(v))
                        .unwrap_or_default();
                    let _ = writeln!(
                        out,
                        "| {} | {w} | {} | {med} | {} |",
                        t.class,
                        m.label(),
                        vals.len()
                    );
                }
            }
        }
    }
    out
}
