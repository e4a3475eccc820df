//! What one bench run does: the job definition (serialized into the result) and the run options.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::Error;
use super::matrix::Profile;

/// The access pattern, or one of the two special jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum JobKind {
    Read,
    Write,
    Randread,
    Randwrite,
    Randrw,
    /// Small sequential writes, each followed by fdatasync (etcd's storage check).
    FsyncLatency,
    /// create, stat, rename and unlink of small files.
    Metadata,
}

impl JobKind {
    pub fn name(self) -> &'static str {
        match self {
            JobKind::Read => "read",
            JobKind::Write => "write",
            JobKind::Randread => "randread",
            JobKind::Randwrite => "randwrite",
            JobKind::Randrw => "randrw",
            JobKind::FsyncLatency => "fsync-latency",
            JobKind::Metadata => "metadata",
        }
    }
    pub fn is_random(self) -> bool {
        matches!(
            self,
            JobKind::Randread | JobKind::Randwrite | JobKind::Randrw
        )
    }
    /// Jobs that read data: their files are prefilled so that a thin volume cannot answer with
    /// zeros it never stored.
    pub fn reads(self) -> bool {
        matches!(self, JobKind::Read | JobKind::Randread | JobKind::Randrw)
    }
    pub fn writes(self) -> bool {
        matches!(
            self,
            JobKind::Write | JobKind::Randwrite | JobKind::Randrw | JobKind::FsyncLatency
        )
    }
}

/// Which engine keeps the I/Os in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum EngineChoice {
    /// io_uring where the kernel and seccomp allow it, else threads.
    Auto,
    Uring,
    Threads,
}

/// The job itself: everything that decides what the numbers mean. Part of the result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobParams {
    pub rw: JobKind,
    /// Block size in bytes.
    pub bs: u64,
    /// I/Os kept in flight per job.
    pub iodepth: u32,
    /// Parallel jobs, each with its own file (directory) or region (device).
    pub jobs: u32,
    /// Bytes per job: file size, or region size on a device; for `metadata`, the bytes of one
    /// batch of small files (batch = size / bs files).
    pub size: u64,
    /// Measured time in seconds (after the ramp).
    pub runtime_s: f64,
    /// Warm-up in seconds, excluded from every figure.
    pub ramp_s: f64,
    /// O_DIRECT asked for (see the result's `direct` for what actually ran).
    pub direct: bool,
    /// Percentage of reads in `randrw`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_pct: Option<u8>,
    /// fdatasync after every N writes (0: never).
    #[serde(default)]
    pub fsync_every: u32,
    /// io_uring engine: how long it watches the ring for a completion before it sleeps in the
    /// kernel, in microseconds (0: it sleeps at once, as before 2026-12-07). A wake-up costs
    /// more than a fast device's I/O on a VM; see docs/agent-speed.md "Waiting for completions".
    /// Absent from results written before it existed, so `compare` sees the difference.
    #[serde(default)]
    pub spin_wait_us: u32,
}

/// The io_uring engine's default [`JobParams::spin_wait_us`].
pub const DEFAULT_SPIN_WAIT_US: u32 = 50;
/// The largest `--spin-wait` accepted: beyond it the engine would mostly burn its CPU.
pub const MAX_SPIN_WAIT_US: u32 = 1000;

/// Where the job runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "path")]
pub enum Target {
    /// Files named `pvcheck-bench.<pid>.<job>` created (and removed) in this directory, or with
    /// `--reuse` `pvcheck-bench.<job>`, kept for the next run.
    Dir(PathBuf),
    /// A raw block device, written over.
    Device(PathBuf),
}

impl Target {
    pub fn path(&self) -> &PathBuf {
        match self {
            Target::Dir(p) | Target::Device(p) => p,
        }
    }
}

/// A complete, validated request: job + where + how.
#[derive(Debug, Clone)]
pub struct JobSpec {
    pub job: JobParams,
    pub target: Target,
    pub workload: Option<String>,
    pub profile: Option<Profile>,
    pub engine: EngineChoice,
    pub stall_timeout: Duration,
    pub sample_interval: Duration,
    pub keep: bool,
    /// Stable, kept job files that later runs reuse without writing them again (`--reuse`).
    pub reuse: bool,
    pub seed: u64,
}

/// Largest block size accepted: beyond it, the data pool no longer fits comfortably in memory.
pub const MAX_BS: u64 = 64 << 20;
/// Bytes the write-data pool may hold (jobs × iodepth × bs, see `buffers::pool_len`).
pub const MAX_POOL: u64 = 1 << 30;

impl JobSpec {
    pub fn runtime(&self) -> Duration {
        Duration::from_secs_f64(self.job.runtime_s)
    }
    pub fn ramp(&self) -> Duration {
        Duration::from_secs_f64(self.job.ramp_s)
    }

    /// Refuses what cannot give a meaningful result. Device-dependent checks (sector size,
    /// device size) happen when the target is opened.
    pub fn validate(&self) -> Result<(), Error> {
        let j = &self.job;
        let bad = |flag, msg: String| Err(Error::BadFlag { flag, msg });
        if j.iodepth == 0 {
            return bad("--iodepth", "must be at least 1".into());
        }
        if j.jobs == 0 {
            return bad("--jobs", "must be at least 1".into());
        }
        if j.bs == 0 {
            return bad("--bs", "must be at least 1B".into());
        }
        if j.bs > MAX_BS {
            return bad("--bs", format!("{} is above the maximum of 64MiB", j.bs));
        }
        if j.direct && !j.bs.is_multiple_of(512) {
            return bad(
                "--bs",
                format!(
                    "{} is not a multiple of 512 bytes, which O_DIRECT requires (or give --direct=false)",
                    crate::units::format_size(j.bs)
                ),
            );
        }
        if j.size < j.bs {
            return bad(
                "--size",
                format!(
                    "{} is smaller than the block size {}",
                    crate::units::format_size(j.size),
                    crate::units::format_size(j.bs)
                ),
            );
        }
        if j.runtime_s.is_nan() || j.runtime_s <= 0.0 {
            return bad("--runtime", "must be longer than 0".into());
        }
        if let Some(p) = j.read_pct {
            if p > 100 {
                return bad("--read-pct", format!("{p} is not a percentage (0..=100)"));
            }
            if j.rw != JobKind::Randrw {
                return bad("--read-pct", "applies only to --rw randrw".into());
            }
        }
        if j.fsync_every > 0 && !j.rw.writes() {
            return bad(
                "--fsync-every",
                format!("job {} does not write", j.rw.name()),
            );
        }
        if j.rw == JobKind::Metadata && matches!(self.target, Target::Device(_)) {
            return bad(
                "--device",
                "the metadata job needs a filesystem: use --dir".into(),
            );
        }
        if self.stall_timeout.is_zero() {
            return bad("--stall-timeout", "must be longer than 0".into());
        }
        if self.sample_interval.is_zero() {
            return bad("--sample-interval", "must be longer than 0".into());
        }
        let pool = super::buffers::pool_len(j);
        if pool > MAX_POOL {
            return bad(
                "--bs",
                "bs × iodepth × jobs is too large: the write-data pool would exceed 1GiB".into(),
            );
        }
        Ok(())
    }
}
