//! `--format terse`: libtest's dots, then per class one line with the verdict and the speed
//! figures, and the warnings (identical ones once).

use super::results::{Status, TrialResult};
use super::table::{class_verdict, short, speed_cells};

pub fn render(trials: &[TrialResult]) -> String {
    let mut classes: Vec<&str> = Vec::new();
    for t in trials {
        if !classes.contains(&t.class.as_str()) {
            classes.push(&t.class);
        }
    }
    let mut out = String::new();
    for class in classes {
        let of: Vec<&TrialResult> = trials.iter().filter(|t| t.class == class).collect();
        if of.iter().all(|t| t.status == Status::Ignored) {
            let reason = of
                .first()
                .and_then(|t| t.ignored_reason.as_deref())
                .unwrap_or("");
            out.push_str(&format!("{class}: ignored: {}\n", short(reason, 80)));
            continue;
        }
        out.push_str(&format!("{class}: {}\n", class_verdict(&of)));
        let figures: Vec<String> = of
            .iter()
            .filter(|t| t.status == Status::Passed)
            .filter_map(|t| {
                let w = t.check.strip_prefix("speed::")?;
                let (rate, mibs, p99) = speed_cells(t)?;
                let mut cell = format!("{w} {rate}");
                if !mibs.is_empty()
                    && (w.contains("1m") || w.starts_with("read") || w.starts_with("write"))
                {
                    cell = format!("{w} {mibs} MiB/s");
                }
                if w == "fsync-latency" || w.ends_with("qd1") {
                    cell.push_str(&format!(" p99 {p99}"));
                }
                Some(cell)
            })
            .collect();
        if !figures.is_empty() {
            out.push_str(&format!("{class} speed: {}\n", figures.join(", ")));
        }
        for (text, who) in super::table::grouped_warnings(&of) {
            let count = if who.len() > 1 {
                format!(" ×{}", who.len())
            } else {
                String::new()
            };
            out.push_str(&format!("{class}: warning{count} ({}): {text}\n", who[0]));
        }
    }
    out
}
