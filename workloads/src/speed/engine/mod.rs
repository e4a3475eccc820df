//! The two engines that keep I/Os in flight, and what they share with the runner.
//!
//! A worker (one per job for io_uring, one per I/O slot for threads) runs until the deadline,
//! records only completions inside the measured window, publishes progress through relaxed
//! atomics on its own cache line (for the IOPS sampler and the watchdog), and sends its
//! [`WorkerOutput`] back when done.

pub mod threads;
pub mod uring;

use std::os::fd::RawFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};

use super::buffers::PoolCursor;
use super::error::Error;
use super::job::{EngineChoice, JobKind};
use super::latency::LatencyHistogram;
use super::offsets::Offsets;
use super::result::EngineKind;
use super::stats::CpuTimes;

/// Shared between the runner and every worker of a run.
#[derive(Debug)]
pub struct Control {
    /// Stop submitting, drain what is in flight, return.
    pub stop: AtomicBool,
    /// Return at once, even with I/Os in flight (stall or signal): memory those I/Os use is leaked.
    pub abandon: AtomicBool,
    /// Completions before this instant are ramp: not recorded.
    pub measure_start_ns: u64,
    /// No new I/O after this instant; completions after it are not recorded.
    pub deadline_ns: u64,
}

/// A worker's counters, read by the runner. Aligned so that workers never share a cache line.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct Progress {
    /// Data I/Os (or metadata ops) completed, ramp included: the IOPS sampler's counter.
    pub done: AtomicU64,
    /// fdatasync calls completed: with `done`, the watchdog's sign of life.
    pub syncs: AtomicU64,
    /// I/Os submitted and not completed.
    pub inflight: AtomicU64,
}

/// What a worker does.
pub struct WorkerPlan {
    pub fd: RawFd,
    pub path: PathBuf,
    pub kind: JobKind,
    pub bs: u64,
    pub iodepth: u32,
    /// The file was opened with O_DIRECT: completions arrive from the block layer's interrupt
    /// context, not from io_uring's worker threads (the uring engine's ring setup depends on it).
    pub direct: bool,
    /// Reads in percent: 100 for read jobs, 0 for write jobs.
    pub read_pct: u8,
    pub fsync_every: u32,
    /// io_uring engine: how long to watch the ring before sleeping for a completion.
    pub spin_ns: u64,
    pub offsets: Offsets,
    /// Decides read or write in a mix.
    pub mix_seed: u64,
    pub cursor: PoolCursor,
    pub control: Arc<Control>,
    pub progress: Arc<Progress>,
    /// Writes of the whole job, for `fsync_every` across thread-engine slots.
    pub job_writes: Arc<AtomicU64>,
}

/// What a worker measured.
#[derive(Debug, Default)]
pub struct WorkerOutput {
    pub read: LatencyHistogram,
    pub write: LatencyHistogram,
    pub sync: LatencyHistogram,
    pub read_sum_ns: u128,
    pub write_sum_ns: u128,
    pub sync_sum_ns: u128,
    /// In-window part of every recorded I/O's time in flight: busy time / window = queue depth.
    pub busy_ns: u128,
    pub error: Option<Error>,
    /// I/Os still in flight when the worker returned (abandoned).
    pub inflight_at_exit: u64,
    /// The worker thread's own CPU time in the measured window.
    pub thread_cpu: CpuTimes,
    /// Of it, about how long the io_uring engine watched its ring for completions instead of
    /// sleeping (the job's `spin_wait_us`), waits that ended in the window.
    pub spun_ns: u128,
}

impl WorkerOutput {
    pub fn merge(&mut self, o: WorkerOutput) {
        self.read.add(&o.read);
        self.write.add(&o.write);
        self.sync.add(&o.sync);
        self.read_sum_ns += o.read_sum_ns;
        self.write_sum_ns += o.write_sum_ns;
        self.sync_sum_ns += o.sync_sum_ns;
        self.busy_ns += o.busy_ns;
        self.spun_ns += o.spun_ns;
        self.inflight_at_exit += o.inflight_at_exit;
        self.thread_cpu = self.thread_cpu.plus(o.thread_cpu);
        if self.error.is_none() {
            self.error = o.error;
        }
    }
}

/// Picks the engine. `auto` falls back to threads where io_uring is refused (seccomp: EPERM,
/// kernels without it: ENOSYS, `kernel.io_uring_disabled`), and says so in a warning.
pub fn select(choice: EngineChoice) -> Result<(EngineKind, Option<String>), Error> {
    match choice {
        EngineChoice::Threads => Ok((EngineKind::Threads, None)),
        EngineChoice::Uring => uring::probe()
            .map(|()| (EngineKind::Uring, None))
            .map_err(Error::UringUnavailable),
        EngineChoice::Auto => Ok(match uring::probe() {
            Ok(()) => (EngineKind::Uring, None),
            Err(why) => (
                EngineKind::Threads,
                Some(format!(
                    "io_uring is refused here ({why}): ran the thread engine"
                )),
            ),
        }),
    }
}
