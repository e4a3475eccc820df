//! The bench result: one JSON object on stdout. The harness deserializes it with this type.

use serde::{Deserialize, Serialize};

use super::job::{JobParams, Target};
use super::matrix::Profile;
use super::stats::CpuTimes;

/// Identifies the shape of this JSON; bumped when a field changes meaning.
pub const SCHEMA: &str = "pvcheck.bench/1";

/// Which engine kept the I/Os in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EngineKind {
    /// io_uring, one ring per job.
    Uring,
    /// One thread per I/O slot doing synchronous pread/pwrite (and the syscall-based
    /// metadata job).
    Threads,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    /// No I/O completed for the stall timeout: the job was ended, see [`BenchResult::stall`].
    Stalled,
}

/// How the data the job reads (and overwrites) got onto the target before the ramp.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrefillKind {
    /// Nothing to prefill (metadata job, or a write job on a raw device).
    #[default]
    None,
    /// This run wrote every byte of the job files or regions.
    Written,
    /// `--reuse`: files an earlier run prefilled were used as they are.
    Reused,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Prefill {
    pub kind: PrefillKind,
    /// Bytes this run wrote to prefill (0 when reused).
    pub bytes: u64,
    /// Wall time the prefill took, before the ramp; not part of any figure.
    pub seconds: f64,
}

/// Latency figures in nanoseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub mean: f64,
    pub min: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub p9999: u64,
    pub max: u64,
}

/// Figures for one direction (read or write) of a job.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DirectionResult {
    pub io_count: u64,
    pub bytes: u64,
    pub iops: f64,
    pub bw_bytes: f64,
    pub lat_ns: LatencySummary,
    pub histogram: String,
}

/// fdatasync calls (`--fsync-every`, `fsync-latency`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SyncResult {
    pub count: u64,
    pub lat_ns: LatencySummary,
    pub histogram: String,
}

/// One metadata operation kind (create, stat, rename, unlink).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OpRate {
    pub count: u64,
    pub ops_per_s: f64,
    pub lat_ns: LatencySummary,
    pub histogram: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetadataResult {
    pub create: OpRate,
    pub stat: OpRate,
    pub rename: OpRate,
    pub unlink: OpRate,
}

/// What the watchdog saw when it ended a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StallInfo {
    /// I/Os submitted and never completed when the job was ended.
    pub inflight: u64,
    /// Seconds since the last completion.
    pub seconds_without_completion: f64,
    /// Workers that never returned (stuck in the kernel); their figures are missing.
    pub stuck_workers: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CpuResult {
    pub user_s: f64,
    pub sys_s: f64,
    /// (user + sys) / measured time / online CPUs, in percent.
    pub util_pct: f64,
    /// CPU microseconds per I/O (per operation for metadata).
    pub per_io_us: f64,
    /// CPU of the engine's own threads only (RUSAGE_THREAD, as fio counts it): leaves out
    /// io_uring's kernel workers, which run I/O that cannot complete inline.
    pub threads_user_s: f64,
    pub threads_sys_s: f64,
    pub threads_per_io_us: f64,
    /// The largest share of the measured time one of the agent's threads spent runnable but
    /// waiting for a CPU (from schedstat): other work on the machine delayed the job by up to
    /// this much. Absent where the kernel does not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_share: Option<f64>,
    /// The agent's nice value while it measured (−10 where it may raise its priority).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nice: Option<i32>,
    /// Of the engine threads' CPU, the seconds spent watching the ring for completions before
    /// sleeping (the job's `spin_wait_us`); absent when none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spin_s: Option<f64>,
}

impl CpuResult {
    pub fn new(t: CpuTimes, threads: CpuTimes, runtime_s: f64, ios: u64) -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let total = t.user_s + t.sys_s;
        CpuResult {
            user_s: t.user_s,
            sys_s: t.sys_s,
            util_pct: if runtime_s > 0.0 {
                100.0 * total / runtime_s / cpus
            } else {
                0.0
            },
            per_io_us: if ios > 0 {
                total * 1e6 / ios as f64
            } else {
                0.0
            },
            threads_user_s: threads.user_s,
            threads_sys_s: threads.sys_s,
            threads_per_io_us: if ios > 0 {
                (threads.user_s + threads.sys_s) * 1e6 / ios as f64
            } else {
                0.0
            },
            wait_share: None,
            nice: None,
            spin_s: None,
        }
    }

    /// `util_pct` without the time spent watching the ring (`spin_s`): the CPU the job needed.
    pub fn util_pct_working(&self) -> f64 {
        let Some(spin) = self.spin_s else {
            return self.util_pct;
        };
        let total = self.user_s + self.sys_s;
        if total <= 0.0 {
            return self.util_pct;
        }
        self.util_pct * ((total - spin).max(0.0) / total)
    }
}

/// The result of one `pvcheck-agent bench` run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchResult {
    pub schema: String,
    pub status: Status,
    /// The matrix name, when the job came from `--workload`.
    pub workload: Option<String>,
    pub profile: Option<Profile>,
    pub job: JobParams,
    pub target: Target,
    pub engine: EngineKind,
    /// O_DIRECT actually used (false when the filesystem refused it, see `warnings`).
    pub direct: bool,
    /// Measured seconds (excluding the ramp).
    pub runtime_s: f64,
    /// I/Os (operations for metadata) completed in the measured window.
    pub io_count: u64,
    pub bytes: u64,
    pub iops: f64,
    /// Bytes per second.
    pub bw_bytes: f64,
    /// Completion latency of every I/O; for `fsync-latency`, of every fdatasync (etcd's figure).
    pub lat_ns: LatencySummary,
    /// `lat_ns`'s histogram, see `histogram_encoding`.
    pub histogram: String,
    pub histogram_encoding: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read: Option<DirectionResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write: Option<DirectionResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<SyncResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<MetadataResult>,
    /// Average I/Os in flight over the measured window, all jobs together: the in-window part
    /// of every completed I/O's time in flight, divided by the window.
    pub qd_achieved: f64,
    pub cpu: CpuResult,
    /// Coefficient of variation of IOPS sampled every `sample_interval_s`; null below 2 samples.
    pub cv: Option<f64>,
    pub sample_interval_s: f64,
    pub iops_samples: Vec<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stall: Option<StallInfo>,
    pub warnings: Vec<String>,
    #[serde(default)]
    pub prefill: Prefill,
    /// Seed of the data and the offsets: rerun with `--seed` to get the same I/O sequence.
    pub seed: u64,
}
