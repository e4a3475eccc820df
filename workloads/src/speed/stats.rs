//! Run statistics that are not latencies: IOPS stability and CPU time.

use serde::{Deserialize, Serialize};

/// Coefficient of variation (sample standard deviation / mean) of per-interval rates.
/// `None` below two samples or when nothing completed: there is no variation to speak of.
pub fn cv(samples: &[f64]) -> Option<f64> {
    if samples.len() < 2 {
        return None;
    }
    let n = samples.len() as f64;
    let mean = samples.iter().sum::<f64>() / n;
    if mean <= 0.0 {
        return None;
    }
    let var = samples.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    Some(var.sqrt() / mean)
}

/// Run-queue wait of each engine worker thread of this process so far (thread id → seconds runnable but not
/// running), from the second field of `/proc/self/task/*/schedstat`. Empty where the kernel
/// does not provide it (no `CONFIG_SCHED_INFO`).
pub fn run_queue_waits() -> std::collections::HashMap<u32, f64> {
    let mut out = std::collections::HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(tid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        // The engine's workers only (`bench-…`): the main and watcher threads sleep, and
        // io_uring's kernel workers (`iou-wrk-…`) are part of the I/O path being measured.
        let is_worker = std::fs::read_to_string(e.path().join("comm"))
            .is_ok_and(|c| c.starts_with("bench-") && !c.starts_with("bench-cleanup"));
        if !is_worker {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(e.path().join("schedstat")) else {
            continue;
        };
        if let Some(ns) = text
            .split_whitespace()
            .nth(1)
            .and_then(|f| f.parse::<u64>().ok())
        {
            out.insert(tid, ns as f64 / 1e9);
        }
    }
    out
}

/// The largest share of `window_s` that one thread spent waiting for a CPU between two
/// [`run_queue_waits`] readings (threads present in both). `None` when nothing was read.
pub fn max_wait_share(
    start: &std::collections::HashMap<u32, f64>,
    end: &std::collections::HashMap<u32, f64>,
    window_s: f64,
) -> Option<f64> {
    if window_s <= 0.0 {
        return None;
    }
    end.iter()
        .filter_map(|(tid, e)| start.get(tid).map(|s| ((e - s) / window_s).max(0.0)))
        .reduce(f64::max)
}

/// Asks the kernel to run this thread, and the threads it starts afterwards, ahead of the
/// machine's ordinary work (nice −10), so that a busy neighbour disturbs the figures less.
/// Returns the nice value in effect: −10 where allowed (root, CAP_SYS_NICE), else unchanged
/// (an unprivileged pod keeps 0, and says so in its result).
pub fn raise_priority() -> i32 {
    const WANTED: libc::c_int = -10;
    // SAFETY: setpriority/getpriority on the calling thread (who = 0) with plain integers.
    unsafe {
        let _ = libc::setpriority(libc::PRIO_PROCESS, 0, WANTED);
        *libc::__errno_location() = 0;
        libc::getpriority(libc::PRIO_PROCESS, 0)
    }
}

/// User and system CPU seconds of the whole process (every thread, including io_uring's
/// kernel workers, which belong to the process).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuTimes {
    pub user_s: f64,
    pub sys_s: f64,
}

impl CpuTimes {
    /// The whole process so far.
    pub fn now() -> Self {
        Self::of(libc::RUSAGE_SELF)
    }

    /// The calling thread only: what fio reports (it uses RUSAGE_THREAD), which leaves out
    /// io_uring's kernel workers.
    pub fn thread_now() -> Self {
        Self::of(libc::RUSAGE_THREAD)
    }

    fn of(who: libc::c_int) -> Self {
        // SAFETY: getrusage fills the zeroed struct; both `who` values are valid on Linux.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::getrusage(who, &mut ru) };
        let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
        Self {
            user_s: tv(ru.ru_utime),
            sys_s: tv(ru.ru_stime),
        }
    }

    pub fn plus(self, o: CpuTimes) -> CpuTimes {
        CpuTimes {
            user_s: self.user_s + o.user_s,
            sys_s: self.sys_s + o.sys_s,
        }
    }

    pub fn since(self, start: CpuTimes) -> CpuTimes {
        CpuTimes {
            user_s: (self.user_s - start.user_s).max(0.0),
            sys_s: (self.sys_s - start.sys_s).max(0.0),
        }
    }
}

/// A worker thread's own CPU time between the measurement window's start and end.
#[derive(Debug, Default)]
pub struct ThreadCpuWindow {
    start: Option<CpuTimes>,
    end: Option<CpuTimes>,
}

impl ThreadCpuWindow {
    /// Call with each fresh timestamp: reads the clock twice per run, not per I/O.
    #[inline]
    pub fn tick(&mut self, now: u64, start_ns: u64, end_ns: u64) {
        if self.start.is_none() {
            if now >= start_ns {
                self.start = Some(CpuTimes::thread_now());
            }
        } else if self.end.is_none() && now >= end_ns {
            self.end = Some(CpuTimes::thread_now());
        }
    }

    pub fn finish(self) -> CpuTimes {
        match self.start {
            Some(s) => self.end.unwrap_or_else(CpuTimes::thread_now).since(s),
            None => CpuTimes::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cv_of_constant_rates_is_zero_and_of_known_rates_matches_hand_computation() {
        assert_eq!(cv(&[100.0, 100.0, 100.0]), Some(0.0));
        // mean 20, sample sd sqrt(((10)^2 + 0 + 10^2) / 2) = 10 -> cv 0.5
        let c = cv(&[10.0, 20.0, 30.0]).unwrap();
        assert!((c - 0.5).abs() < 1e-12, "{c}");
    }

    #[test]
    fn cv_needs_two_samples_and_some_progress() {
        assert_eq!(cv(&[]), None);
        assert_eq!(cv(&[5.0]), None);
        assert_eq!(cv(&[0.0, 0.0]), None);
    }

    #[test]
    fn cpu_time_grows_with_work() {
        let a = CpuTimes::now();
        let mut x = 0u64;
        let t = std::time::Instant::now();
        while t.elapsed().as_millis() < 30 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let d = CpuTimes::now().since(a);
        assert!(d.user_s + d.sys_s > 0.01, "{d:?}");
    }
}
