//! Which figures of a bench result the gate compares, and which way is worse.
//!
//! Per workload, one rate and the tail latencies: IOPS for small blocks, bandwidth for
//! 64 KiB and more (the other is the same number times the block size: comparing both would
//! only enlarge the Holm family), p99 and p99.9 completion latency; `fsync-latency` is judged
//! by its fdatasync p99 (etcd's figure), `metadata` by its four operation rates.

use serde_json::Value;

use crate::config::thresholds::Limits;

/// A compared figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Metric {
    Iops,
    Bandwidth,
    P99,
    P999,
    FsyncP99,
    Creates,
    Stats,
    Renames,
    Unlinks,
}

impl Metric {
    /// Stable key (reports, Prometheus labels).
    pub fn key(self) -> &'static str {
        match self {
            Metric::Iops => "iops",
            Metric::Bandwidth => "bandwidth",
            Metric::P99 => "p99",
            Metric::P999 => "p999",
            Metric::FsyncP99 => "fsync_p99",
            Metric::Creates => "creates_per_s",
            Metric::Stats => "stats_per_s",
            Metric::Renames => "renames_per_s",
            Metric::Unlinks => "unlinks_per_s",
        }
    }
    /// For people.
    pub fn label(self) -> &'static str {
        match self {
            Metric::Iops => "IOPS",
            Metric::Bandwidth => "MiB/s",
            Metric::P99 => "p99",
            Metric::P999 => "p99.9",
            Metric::FsyncP99 => "fsync p99",
            Metric::Creates => "creates/s",
            Metric::Stats => "stats/s",
            Metric::Renames => "renames/s",
            Metric::Unlinks => "unlinks/s",
        }
    }
    pub fn higher_is_better(self) -> bool {
        !self.is_latency()
    }
    pub fn is_latency(self) -> bool {
        matches!(self, Metric::P99 | Metric::P999 | Metric::FsyncP99)
    }
    /// The regression threshold (a fraction, positive) from the class's limits.
    pub fn threshold(self, l: &Limits) -> f64 {
        match self {
            Metric::Iops => l.iops,
            Metric::Bandwidth => l.bandwidth,
            Metric::P99 => l.p99,
            Metric::P999 => l.p999,
            Metric::FsyncP99 => l.fsync_p99,
            Metric::Creates | Metric::Stats | Metric::Renames | Metric::Unlinks => l.metadata,
        }
    }
    /// A value in its unit, compact: `97.2k`, `1719.2`, `207.5 µs`, `2.30 ms`.
    pub fn format(self, v: f64) -> String {
        if self.is_latency() {
            return format_ns(v);
        }
        // MiB/s, as the terminal's speed tables show bandwidth.
        let v = if self == Metric::Bandwidth {
            v / 1_048_576.0
        } else {
            v
        };
        if v >= 1e6 {
            format!("{:.2}M", v / 1e6)
        } else if v >= 1e4 {
            format!("{:.1}k", v / 1e3)
        } else if v >= 100.0 {
            format!("{v:.0}")
        } else {
            format!("{v:.1}")
        }
    }
}

/// Nanoseconds, in µs or ms.
pub fn format_ns(ns: f64) -> String {
    if ns >= 1e9 {
        format!("{:.2} s", ns / 1e9)
    } else if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.1} µs", ns / 1e3)
    }
}

pub(crate) fn at(v: &Value, path: &[&str]) -> Option<f64> {
    let mut cur = v;
    for p in path {
        cur = cur.get(*p)?;
    }
    cur.as_f64()
}

/// The metrics of a bench result's job kind, in display order.
pub fn metrics_of(bench: &Value) -> Vec<Metric> {
    let rw = bench
        .get("job")
        .and_then(|j| j.get("rw"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let bs = at(bench, &["job", "bs"]).unwrap_or(0.0);
    match rw {
        "metadata" => vec![
            Metric::Creates,
            Metric::Stats,
            Metric::Renames,
            Metric::Unlinks,
        ],
        "fsync-latency" => vec![Metric::FsyncP99],
        "" => vec![],
        _ if bs >= 65536.0 => vec![Metric::Bandwidth, Metric::P99, Metric::P999],
        _ => vec![Metric::Iops, Metric::P99, Metric::P999],
    }
}

/// The metric's value in one bench result.
pub fn value(bench: &Value, m: Metric) -> Option<f64> {
    match m {
        Metric::Iops => at(bench, &["iops"]),
        Metric::Bandwidth => at(bench, &["bw_bytes"]),
        Metric::P99 | Metric::FsyncP99 => at(bench, &["lat_ns", "p99"]),
        Metric::P999 => at(bench, &["lat_ns", "p999"]),
        Metric::Creates => at(bench, &["metadata", "create", "ops_per_s"]),
        Metric::Stats => at(bench, &["metadata", "stat", "ops_per_s"]),
        Metric::Renames => at(bench, &["metadata", "rename", "ops_per_s"]),
        Metric::Unlinks => at(bench, &["metadata", "unlink", "ops_per_s"]),
    }
}

/// Why a repetition cannot be trusted, if it cannot: stalled, unstable within its own run, or
/// not keeping its queue depth.
pub fn invalid_reason(bench: &Value, limits: &Limits) -> Option<String> {
    if bench.get("status").and_then(Value::as_str) == Some("stalled") {
        return Some("the job stalled".into());
    }
    // Judged on the printed values (one decimal of a percent), so that a flag never reads
    // "varied 10.0% (limit 10.0%)".
    let tenths = |fraction: f64| (fraction * 1000.0).round() / 10.0;
    if let Some(cv) = at(bench, &["cv"])
        && tenths(cv) > tenths(limits.max_cv)
    {
        return Some(format!(
            "IOPS varied {:.1}% within the run (limit {:.1}%)",
            tenths(cv),
            tenths(limits.max_cv)
        ));
    }
    let target =
        at(bench, &["job", "iodepth"]).unwrap_or(0.0) * at(bench, &["job", "jobs"]).unwrap_or(1.0);
    if let Some(qd) = at(bench, &["qd_achieved"])
        && target > 0.0
        && tenths(qd / target) < tenths(limits.min_qd)
    {
        return Some(format!(
            "kept {qd:.1} I/Os in flight of {target:.0} ({:.1}%, limit {:.1}%)",
            tenths(qd / target),
            tenths(limits.min_qd)
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bench(cv: f64, qd: f64) -> Value {
        serde_json::json!({ "cv": cv, "qd_achieved": qd, "job": { "iodepth": 32, "jobs": 1 } })
    }

    /// Issue 23 item 10: "IOPS varied 10.0% within the run (limit 10%)" read as a pass that
    /// failed. A figure is flagged only when its printed value is beyond the printed limit.
    #[test]
    fn a_variation_printed_as_the_limit_is_not_flagged_and_a_flag_shows_why() {
        let l = Limits::default();
        assert_eq!(invalid_reason(&bench(0.10004, 32.0), &l), None);
        let why = invalid_reason(&bench(0.1006, 32.0), &l).unwrap();
        assert_eq!(why, "IOPS varied 10.1% within the run (limit 10.0%)");
        assert_eq!(invalid_reason(&bench(0.05, 28.79), &l), None);
        let why = invalid_reason(&bench(0.05, 28.7), &l).unwrap();
        assert_eq!(why, "kept 28.7 I/Os in flight of 32 (89.7%, limit 90.0%)");
    }

    /// Issue 23 item 9: Markdown showed `MB/s 1252` where the terminal showed `1194 MiB/s`.
    #[test]
    fn bandwidth_is_in_mib_per_second_as_the_terminal_shows_it() {
        assert_eq!(Metric::Bandwidth.label(), "MiB/s");
        assert_eq!(Metric::Bandwidth.format(1194.0 * 1_048_576.0), "1194");
    }
}
