//! The thread engine: one thread per I/O slot doing synchronous pread/pwrite, so that `iodepth`
//! I/Os are in flight without io_uring (e.g. under containerd's default seccomp profile).

use std::io;
use std::sync::atomic::Ordering;

use super::{WorkerOutput, WorkerPlan};
use crate::speed::buffers::AlignedBuf;
use crate::speed::clock::now_ns;
use crate::speed::error::Error;
use crate::speed::offsets::SplitMix;
use crate::speed::stats::ThreadCpuWindow;

/// Runs one slot. `plan.iodepth` is ignored here: the runner starts one thread per slot.
pub fn run(mut plan: WorkerPlan) -> WorkerOutput {
    let mut out = WorkerOutput::default();
    let bs = plan.bs as usize;
    let ctl = plan.control.clone();
    let (measure_start, deadline) = (ctl.measure_start_ns, ctl.deadline_ns);
    let buf = AlignedBuf::zeroed(bs);
    let mut mix = SplitMix::new(plan.mix_seed);
    let mut done = 0u64;
    let mut syncs = 0u64;
    let fd = plan.fd;
    let mut cpu = ThreadCpuWindow::default();
    loop {
        if ctl.stop.load(Ordering::Relaxed) || ctl.abandon.load(Ordering::Relaxed) {
            break;
        }
        let read = match plan.read_pct {
            100 => true,
            0 => false,
            p => mix.below(100) < p as u64,
        };
        let off = plan.offsets.next_offset();
        plan.progress.inflight.store(1, Ordering::Relaxed);
        let t0 = now_ns();
        if t0 >= deadline {
            plan.progress.inflight.store(0, Ordering::Relaxed);
            break;
        }
        // SAFETY: the buffers hold `bs` bytes (read buffer owned, write data from the pool).
        let res = unsafe {
            if read {
                libc::pread(fd, buf.as_ptr() as *mut libc::c_void, bs, off as i64)
            } else {
                let p = plan.cursor.next(bs);
                libc::pwrite(fd, p as *const libc::c_void, bs, off as i64)
            }
        };
        let t1 = now_ns();
        cpu.tick(t1, measure_start, deadline);
        plan.progress.inflight.store(0, Ordering::Relaxed);
        done += 1;
        plan.progress.done.store(done, Ordering::Relaxed);
        let op = if read { "read" } else { "write" };
        if res < 0 {
            out.error = Some(Error::Io {
                path: plan.path.clone(),
                offset: off,
                op,
                source: io::Error::last_os_error(),
            });
            break;
        }
        if res as usize != bs {
            out.error = Some(Error::ShortIo {
                path: plan.path.clone(),
                offset: off,
                op,
                done: res as u64,
                len: bs as u64,
            });
            break;
        }
        let in_window = t1 >= measure_start && t1 <= deadline;
        if in_window {
            let lat = t1 - t0;
            out.busy_ns += (t1 - t0.max(measure_start)) as u128;
            if read {
                out.read.record(lat);
                out.read_sum_ns += lat as u128;
            } else {
                out.write.record(lat);
                out.write_sum_ns += lat as u128;
            }
        }
        if !read && plan.fsync_every > 0 {
            let n = plan.job_writes.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_multiple_of(plan.fsync_every as u64) {
                plan.progress.inflight.store(1, Ordering::Relaxed);
                let s0 = now_ns();
                // SAFETY: fd is open for the whole run.
                let r = unsafe { libc::fdatasync(fd) };
                let s1 = now_ns();
                plan.progress.inflight.store(0, Ordering::Relaxed);
                syncs += 1;
                plan.progress.syncs.store(syncs, Ordering::Relaxed);
                if r < 0 {
                    out.error = Some(Error::Io {
                        path: plan.path.clone(),
                        offset: 0,
                        op: "fdatasync",
                        source: io::Error::last_os_error(),
                    });
                    break;
                }
                if s1 >= measure_start && s1 <= deadline {
                    out.sync.record(s1 - s0);
                    out.sync_sum_ns += (s1 - s0) as u128;
                    out.busy_ns += (s1 - s0.max(measure_start)) as u128;
                }
            }
        }
    }
    out.thread_cpu = cpu.finish();
    out
}
