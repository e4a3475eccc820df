//! The metadata job: batches of small files created (with `bs` bytes of data), stat'ed, renamed
//! and unlinked, in a private subdirectory. Each operation kind gets its own rate and latency.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::buffers::PoolCursor;
use super::clock::now_ns;
use super::engine::{Control, Progress};
use super::error::Error;
use super::latency::LatencyHistogram;
use super::stats::{CpuTimes, ThreadCpuWindow};

pub const OPS: [&str; 4] = ["create", "stat", "rename", "unlink"];

/// One op kind's figures from one worker.
#[derive(Debug, Default)]
pub struct OpStats {
    pub hist: LatencyHistogram,
    pub sum_ns: u128,
    /// In-window part of the ops' durations (see `WorkerOutput::busy_ns`).
    pub busy_ns: u128,
}

#[derive(Debug, Default)]
pub struct MetaOutput {
    pub ops: [OpStats; 4],
    pub error: Option<Error>,
    pub inflight_at_exit: u64,
    pub thread_cpu: CpuTimes,
}

impl MetaOutput {
    pub fn merge(&mut self, o: MetaOutput) {
        for (a, b) in self.ops.iter_mut().zip(o.ops) {
            a.hist.add(&b.hist);
            a.sum_ns += b.sum_ns;
            a.busy_ns += b.busy_ns;
        }
        self.inflight_at_exit += o.inflight_at_exit;
        self.thread_cpu = self.thread_cpu.plus(o.thread_cpu);
        if self.error.is_none() {
            self.error = o.error;
        }
    }
}

pub struct MetaPlan {
    /// The worker's own subdirectory (created by the runner, removed by it).
    pub dir: PathBuf,
    pub files_per_batch: u64,
    pub bs: usize,
    pub cursor: PoolCursor,
    pub control: Arc<Control>,
    pub progress: Arc<Progress>,
}

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("paths we build have no NUL")
}

/// Runs batches until the deadline. Files left from an interrupted batch are removed.
pub fn run(mut plan: MetaPlan) -> MetaOutput {
    let mut out = MetaOutput::default();
    let ctl = plan.control.clone();
    let n = plan.files_per_batch as usize;
    let names: Vec<(CString, CString)> = (0..n)
        .map(|i| {
            (
                cpath(&plan.dir.join(format!("f{i}"))),
                cpath(&plan.dir.join(format!("r{i}"))),
            )
        })
        .collect();
    let mut done = 0u64;
    let mut cpu = ThreadCpuWindow::default();
    'outer: loop {
        // Phase by phase over the batch, so each op meets a directory of realistic size.
        for (k, op) in OPS.iter().enumerate() {
            for (a, b) in names.iter() {
                if ctl.stop.load(Ordering::Relaxed)
                    || ctl.abandon.load(Ordering::Relaxed)
                    || now_ns() >= ctl.deadline_ns
                {
                    cleanup(&names);
                    break 'outer;
                }
                plan.progress.inflight.store(1, Ordering::Relaxed);
                let t0 = now_ns();
                let r = match k {
                    0 => create(a, plan.cursor.next(plan.bs), plan.bs),
                    1 => stat(a),
                    2 => rename(a, b),
                    _ => unlink(b),
                };
                let t1 = now_ns();
                cpu.tick(t1, ctl.measure_start_ns, ctl.deadline_ns);
                plan.progress.inflight.store(0, Ordering::Relaxed);
                done += 1;
                plan.progress.done.store(done, Ordering::Relaxed);
                if let Err(source) = r {
                    out.error = Some(Error::Io {
                        path: plan.dir.clone(),
                        offset: 0,
                        op,
                        source,
                    });
                    cleanup(&names);
                    break 'outer;
                }
                if t1 >= ctl.measure_start_ns && t1 <= ctl.deadline_ns {
                    out.ops[k].hist.record(t1 - t0);
                    out.ops[k].sum_ns += (t1 - t0) as u128;
                    out.ops[k].busy_ns += (t1 - t0.max(ctl.measure_start_ns)) as u128;
                }
            }
        }
    }
    out.thread_cpu = cpu.finish();
    out
}

/// Removes whatever the batch left, under either name (a failed rename leaves either).
fn cleanup(names: &[(CString, CString)]) {
    for (a, b) in names {
        let _ = unlink(a);
        let _ = unlink(b);
    }
}

fn check(r: libc::c_int) -> io::Result<()> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn create(p: &CString, data: *const u8, len: usize) -> io::Result<()> {
    // SAFETY: valid C string; data holds len bytes from the pool.
    unsafe {
        let fd = libc::open(
            p.as_ptr(),
            libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_CLOEXEC,
            0o644,
        );
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let w = libc::write(fd, data as *const libc::c_void, len);
        let e = io::Error::last_os_error();
        libc::close(fd);
        if w < 0 {
            return Err(e);
        }
        if w as usize != len {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "short write"));
        }
    }
    Ok(())
}

fn stat(p: &CString) -> io::Result<()> {
    // SAFETY: valid C string and a writable stat buffer.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    check(unsafe { libc::stat(p.as_ptr(), &mut st) })
}

fn rename(a: &CString, b: &CString) -> io::Result<()> {
    // SAFETY: valid C strings.
    check(unsafe { libc::rename(a.as_ptr(), b.as_ptr()) })
}

fn unlink(p: &CString) -> io::Result<()> {
    // SAFETY: valid C string.
    check(unsafe { libc::unlink(p.as_ptr()) })
}
