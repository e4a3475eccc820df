//! The io_uring engine: one ring per job, `iodepth` slots, all of them kept in flight.
//!
//! Per loop: prepare an entry for every free slot, then submit them all in the very
//! `io_uring_enter` that waits for at least one completion (`submit_and_wait(1)`, fio's
//! `iodepth_batch_submit=iodepth` with `iodepth_batch_complete_min=1`). One syscall per loop,
//! however many slots were refilled.
//!
//! The engine used to submit each I/O in its own `io_uring_enter` as soon as it was prepared
//! (fio's default `iodepth_batch_submit=1`), so that the device started on the first refill
//! while the others were prepared. On a fast device that left slots empty: after a wake-up
//! with k completions, the last of the k refills waited for k−1 syscalls before it was in
//! flight, and the engine kept 21.2 of 32 I/Os in flight (66 %) for 4 KiB randread QD32 on
//! ext4 over a RAM-backed loop. Measured figures of both ways: docs/agent-speed.md.
//!
//! Before it sleeps for a completion, the engine watches the ring for up to the job's
//! `spin_wait_us` (default 50 µs): the kernel raises IORING_SQ_TASKRUN in the shared ring flags
//! when a completion is queued for this task (IORING_SETUP_TASKRUN_FLAG), and one non-blocking
//! `io_uring_enter` then posts it. On a VM an idle vCPU halts, and the wake-up of a sleeping
//! thread costs more than a fast device's whole I/O: 4 KiB QD1 writes on ext4 over a RAM loop
//! ran at 0.89 of tuned fio's rate sleeping at once and 1.41× with the spin, in one session
//! (docs/agent-speed.md, "Waiting for completions"). It spins only while its spins find their
//! completions ([`SpinPolicy`]): on a device slower than the spin it costs one window of spins
//! per 2,048 waits.
//!
//! A multishot timeout posts a completion every 250 ms, so stop requests and the watchdog are
//! seen even when the device stops answering, without a timer armed per wait (on kernels
//! before 6.4 each wait carries a 250 ms timeout argument instead; the per-wait timer cost p99
//! 7–10 µs against 5–7 µs for 4 KiB buffered reads at QD1 on tmpfs).
//!
//! Each I/O is stamped just before the call that submits it, every completion reaped together
//! by one clock reading after the wait. Registered file and buffers spare the kernel a file
//! lookup and page pinning per I/O where the kernel and limits allow it.

use std::io;
use std::sync::atomic::Ordering;
use std::time::Duration;

use io_uring::{IoUring, Probe, opcode, squeue, types};

use super::{WorkerOutput, WorkerPlan};
use crate::speed::buffers::{ALIGN, AlignedBuf};
use crate::speed::clock::now_ns;
use crate::speed::error::Error;
use crate::speed::offsets::SplitMix;
use crate::speed::stats::ThreadCpuWindow;

const SYNC_TAG: u64 = u64::MAX;
const TICK_TAG: u64 = u64::MAX - 1;
/// IORING_ENTER_GETEVENTS (the crate keeps its constants private).
const ENTER_GETEVENTS: u32 = 1;
const WAIT: Duration = Duration::from_millis(250);

/// Arms a multishot timeout (Linux 6.4+) that posts a completion every [`WAIT`], so the worker
/// can wait for completions with a plain `io_uring_enter` and still wake for stop requests and
/// the watchdog. Waiting with a timeout argument instead arms and cancels an hrtimer on every
/// wait, which on a VM means reprogramming the timer device per I/O. False when the kernel
/// refuses it: then every wait carries the timeout argument.
///
/// `PVCHECK_AGENT_TIMED_WAITS=1` takes that older kernels' path on purpose, so the tests can
/// show the watchdog and stop requests work there too.
fn arm_ticker(ring: &mut IoUring, ts: &types::Timespec) -> bool {
    if std::env::var_os("PVCHECK_AGENT_TIMED_WAITS").is_some_and(|v| v == "1") {
        return false;
    }
    let e = opcode::Timeout::new(ts)
        .count(0)
        .flags(types::TimeoutFlags::MULTISHOT)
        .build()
        .user_data(TICK_TAG);
    // SAFETY: `ts` outlives the submission (the kernel copies it while preparing the entry).
    if unsafe { ring.submission().push(&e) }.is_err() || ring.submit().is_err() {
        return false;
    }
    // An unsupported flag is refused while the entry is prepared, so its error completion is
    // already there; an armed timer posts nothing for 250 ms.
    let refused = ring.completion().any(|c| c.user_data() == TICK_TAG);
    !refused
}

fn describe(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::EPERM) => "EPERM: blocked by seccomp or kernel.io_uring_disabled".into(),
        Some(libc::ENOSYS) => "ENOSYS: kernel without io_uring".into(),
        _ => e.to_string(),
    }
}

/// Can this process use io_uring for the job? Checks setup, the opcodes used and the
/// extended wait argument (kernel 5.11+) that the watchdog needs.
pub fn probe() -> Result<(), String> {
    let ring: IoUring = IoUring::new(4).map_err(|e| describe(&e))?;
    if !ring.params().is_feature_ext_arg() {
        return Err("kernel lacks IORING_FEAT_EXT_ARG (needs Linux 5.11+)".into());
    }
    let mut probe = Probe::new();
    ring.submitter()
        .register_probe(&mut probe)
        .map_err(|e| describe(&e))?;
    for (code, name) in [
        (opcode::Read::CODE, "READ"),
        (opcode::Write::CODE, "WRITE"),
        (opcode::Fsync::CODE, "FSYNC"),
    ] {
        if !probe.is_supported(code) {
            return Err(format!("kernel lacks IORING_OP_{name}"));
        }
    }
    Ok(())
}

/// `io_uring_enter` errors after which the entries stay queued and the next call retries.
fn transient(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINTR) | Some(libc::EBUSY) | Some(libc::EAGAIN)
    )
}

fn build_ring(entries: u32, defer_taskrun: bool) -> io::Result<IoUring> {
    // COOP_TASKRUN (Linux 5.19+): completions arriving from other contexts are queued for us
    // without an inter-processor interrupt. SINGLE_ISSUER (6.0+): only this thread submits,
    // which spares the kernel the ring's submission lock. Each flag is dropped again where the
    // kernel refuses it.
    //
    // DEFER_TASKRUN (6.1+, what fio 3.33 sets): completions are queued on the ring and run
    // in the `io_uring_enter` that waits for them, under the lock that call already holds,
    // instead of as task work that takes the ring's lock once per batch (`ctx_flush_and_put`,
    // 7 % of the engine thread in a profile of 4 KiB randread QD32, docs/agent-speed.md). Only
    // for O_DIRECT, whose completions come from the block layer: buffered reads complete
    // through io-wq, and there it was measured 10× slower for tmpfs reads at QD1.
    let fast = if defer_taskrun {
        IoUring::builder()
            .setup_coop_taskrun()
            .setup_taskrun_flag()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .build(entries)
    } else {
        Err(io::Error::from_raw_os_error(libc::EINVAL))
    };
    fast.or_else(|_| {
        IoUring::builder()
            .setup_coop_taskrun()
            .setup_taskrun_flag()
            .setup_single_issuer()
            .build(entries)
    })
    .or_else(|_| IoUring::builder().setup_coop_taskrun().build(entries))
    .or_else(|_| IoUring::new(entries))
}

/// Whether to watch the ring before sleeping: only while that nearly always finds a
/// completion. Each [`SpinPolicy::WINDOW`] spins are judged together: fewer than
/// [`SpinPolicy::HITS`] of them found one (the device is slower than the spin, or completes
/// in bursts further apart), and the next [`SpinPolicy::REST`] waits sleep at once; then it
/// tries again. On the disk-backed loop of the fio comparison, spins that seldom succeeded cost
/// a fifth of the QD1 rate (the VM's disk emulation competes with a vCPU that never halts);
/// on the RAM-backed loop the 1 MiB jobs, whose completions come ~180 us apart, found one in
/// about a quarter of their spins and gained nothing.
#[derive(Default)]
struct SpinPolicy {
    tries: u32,
    hits: u32,
    resting: u32,
}

impl SpinPolicy {
    const WINDOW: u32 = 16;
    const HITS: u32 = 12;
    const REST: u32 = 2048;

    fn spin(&mut self) -> bool {
        if self.resting > 0 {
            self.resting -= 1;
            return false;
        }
        true
    }

    fn spun(&mut self, found: bool) {
        self.tries += 1;
        self.hits += u32::from(found);
        if self.tries == Self::WINDOW {
            if self.hits < Self::HITS {
                self.resting = Self::REST;
            }
            self.tries = 0;
            self.hits = 0;
        }
    }
}

/// Submits what is queued, then watches the ring for up to `spin_ns`: the kernel raises
/// IORING_SQ_TASKRUN when a completion is queued for this task (DEFER_TASKRUN's local work, or
/// COOP_TASKRUN's task work), and a non-blocking `io_uring_enter` with GETEVENTS then runs it
/// and posts the completion. Whether one came, and how long it watched; the caller makes the
/// blocking wait when none did. Between looks it yields the CPU to anything else runnable on
/// it; the clock is read every eighth look.
fn spin_wait(
    submitter: &io_uring::Submitter<'_>,
    sq: &io_uring::SubmissionQueue<'_>,
    cq: &mut io_uring::CompletionQueue<'_>,
    spin_ns: u64,
) -> io::Result<(bool, u64)> {
    submitter.submit()?;
    let start = now_ns();
    let mut i = 0u32;
    let found = loop {
        if sq.taskrun() {
            // SAFETY: no argument; GETEVENTS with min_complete 0 returns once the work ran.
            unsafe { submitter.enter::<()>(0, 0, ENTER_GETEVENTS, None)? };
        }
        cq.sync();
        if !io_uring::CompletionQueue::is_empty(cq) {
            break true;
        }
        i = i.wrapping_add(1);
        if i.is_multiple_of(8) && now_ns() - start >= spin_ns {
            break false;
        }
        // Whatever else is runnable on this CPU goes first: often the very work that completes
        // the I/O (the loop device's worker, a FUSE daemon), which the agent's nice −10 would
        // otherwise hold off for the whole spin. With nothing else to run it returns at once.
        // SAFETY: no arguments, no memory.
        unsafe { libc::sched_yield() };
    };
    Ok((found, now_ns() - start))
}

#[inline]
#[allow(clippy::too_many_arguments)]
fn rw_entry(
    read: bool,
    fixed_file: bool,
    fixed_bufs: bool,
    fd: i32,
    buf: *mut u8,
    len: u32,
    off: u64,
    ud: u64,
) -> squeue::Entry {
    macro_rules! with {
        ($fd:expr) => {
            match (read, fixed_bufs) {
                (true, true) => opcode::ReadFixed::new($fd, buf, len, 1).offset(off).build(),
                (true, false) => opcode::Read::new($fd, buf, len).offset(off).build(),
                (false, true) => opcode::WriteFixed::new($fd, buf, len, 0)
                    .offset(off)
                    .build(),
                (false, false) => opcode::Write::new($fd, buf, len).offset(off).build(),
            }
        };
    }
    let e = if fixed_file {
        with!(types::Fixed(0))
    } else {
        with!(types::Fd(fd))
    };
    e.user_data(ud)
}

pub fn run(mut plan: WorkerPlan) -> WorkerOutput {
    let mut out = WorkerOutput::default();
    let depth = plan.iodepth as usize;
    let bs = plan.bs as usize;
    let len32 = plan.bs as u32;
    let ctl = plan.control.clone();
    let (measure_start, deadline) = (ctl.measure_start_ns, ctl.deadline_ns);
    let mut ring = match build_ring((depth as u32 + 1).next_power_of_two(), plan.direct) {
        Ok(r) => r,
        Err(e) => {
            out.error = Some(Error::UringUnavailable(describe(&e)));
            return out;
        }
    };
    let stride = bs.next_multiple_of(ALIGN);
    let readbufs = AlignedBuf::zeroed(stride * depth);
    let fixed_file = ring.submitter().register_files(&[plan.fd]).is_ok();
    let (pbase, plen) = plan.cursor.region();
    let iov = [
        libc::iovec {
            iov_base: pbase as *mut libc::c_void,
            iov_len: plen,
        },
        libc::iovec {
            iov_base: readbufs.as_ptr() as *mut libc::c_void,
            iov_len: readbufs.len(),
        },
    ];
    // SAFETY: both regions stay allocated until the ring is dropped (or are leaked with it).
    // Fails without CAP_IPC_LOCK under a small RLIMIT_MEMLOCK: then plain buffers are used.
    let fixed_bufs = unsafe { ring.submitter().register_buffers(&iov) }.is_ok();

    // One share of the pool per slot: a slot's data is restamped only after its write is done.
    let mut slot_data = plan.cursor.split(depth);
    let mut start_ns = vec![0u64; depth];
    let mut is_write = vec![false; depth];
    let mut offset_of = vec![0u64; depth];
    let mut free: Vec<u32> = (0..depth as u32).rev().collect();
    let mut batch: Vec<u32> = Vec::with_capacity(depth);
    let mut inflight = 0usize;
    let mut mix = SplitMix::new(plan.mix_seed);
    let mut writes_since_sync = 0u32;
    let mut sync_due = false;
    let mut sync_inflight = false;
    let mut sync_start = 0u64;
    let mut stopping = false;
    let mut done = 0u64;
    let mut syncs = 0u64;
    let ts = types::Timespec::from(WAIT);
    let args = types::SubmitArgs::new().timespec(&ts);
    let mut ticker = arm_ticker(&mut ring, &ts);
    let fd = plan.fd;
    let mut cpu = ThreadCpuWindow::default();
    let spin_ns = plan.spin_ns;
    let mut spin_policy = SpinPolicy::default();

    // The split borrows the ring; scoped so the ring can be leaked afterwards if needed.
    {
        let (submitter, mut sq, mut cq) = ring.split();
        // The reading taken after each wait serves the next loop's deadline check too: two
        // clock readings per loop (submission stamp, completion stamp), not three.
        let mut now = now_ns();
        loop {
            if !stopping && (now >= deadline || ctl.stop.load(Ordering::Relaxed)) {
                stopping = true;
            }
            if ctl.abandon.load(Ordering::Relaxed) || out.error.is_some() {
                break;
            }
            if stopping && inflight == 0 && !sync_inflight {
                break;
            }
            if !stopping {
                if sync_due {
                    if inflight == 0 && !sync_inflight {
                        let e = opcode::Fsync::new(types::Fd(fd))
                            .flags(types::FsyncFlags::DATASYNC)
                            .build()
                            .user_data(SYNC_TAG);
                        // SAFETY: the SQ has room (depth + 1 entries, nothing else queued).
                        let _ = unsafe { sq.push(&e) };
                        sync_inflight = true;
                        sync_due = false;
                        sync_start = 0; // stamped just before submission
                    }
                } else if !sync_inflight {
                    // fdatasync is a barrier: writes resume once it has completed.
                    while let Some(slot) = free.pop() {
                        let s = slot as usize;
                        let read = match plan.read_pct {
                            100 => true,
                            0 => false,
                            p => mix.below(100) < p as u64,
                        };
                        let off = plan.offsets.next_offset();
                        let buf = if read {
                            // SAFETY: slot < depth, each slot owns `stride` bytes of readbufs.
                            unsafe { readbufs.as_ptr().add(s * stride) }
                        } else {
                            slot_data[s].next(bs) as *mut u8
                        };
                        let e = rw_entry(
                            read,
                            fixed_file,
                            fixed_bufs,
                            fd,
                            buf,
                            len32,
                            off,
                            slot as u64,
                        );
                        // SAFETY: buffers outlive the I/O; the SQ has `depth + 1` entries.
                        if unsafe { sq.push(&e) }.is_err() {
                            free.push(slot);
                            break;
                        }
                        batch.push(slot);
                        is_write[s] = !read;
                        offset_of[s] = off;
                        inflight += 1;
                        if !read && plan.fsync_every > 0 {
                            writes_since_sync += 1;
                            if writes_since_sync >= plan.fsync_every {
                                writes_since_sync = 0;
                                sync_due = true;
                                break;
                            }
                        }
                    }
                }
            }
            sq.sync();
            // Stamp the batch as late as possible: just before the syscall that submits it.
            if !batch.is_empty() || sync_inflight && sync_start == 0 {
                let t = now_ns();
                for &b in &batch {
                    start_ns[b as usize] = t;
                }
                batch.clear();
                if sync_inflight && sync_start == 0 {
                    sync_start = t;
                }
            }
            plan.progress.inflight.store(
                (inflight + sync_inflight as usize) as u64,
                Ordering::Relaxed,
            );
            let block = || {
                if ticker {
                    submitter.submit_and_wait(1)
                } else {
                    submitter.submit_with_args(1, &args)
                }
            };
            let mut spun = 0;
            let spin = spin_ns > 0 && (inflight > 0 || sync_inflight) && spin_policy.spin();
            let waited = if spin {
                let watched = spin_wait(&submitter, &sq, &mut cq, spin_ns);
                spin_policy.spun(matches!(watched, Ok((true, _))));
                match watched {
                    Ok((found, took)) => {
                        spun = took;
                        if found { Ok(0) } else { block() }
                    }
                    Err(e) => Err(e),
                }
            } else {
                block()
            };
            match waited {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::ETIME) || transient(&e) => {}
                Err(e) => {
                    out.error = Some(Error::Io {
                        path: plan.path.clone(),
                        offset: 0,
                        op: "io_uring_enter",
                        source: e,
                    });
                    break;
                }
            }
            now = now_ns();
            cpu.tick(now, measure_start, deadline);
            let in_window = now >= measure_start && now <= deadline;
            if in_window {
                out.spun_ns += u128::from(spun);
            }
            cq.sync();
            for cqe in &mut cq {
                let ud = cqe.user_data();
                let res = cqe.result();
                if ud == TICK_TAG {
                    // Without "more" the kernel ended the multishot timer: wait with timeouts.
                    ticker &= io_uring::cqueue::more(cqe.flags());
                    continue;
                }
                if ud == SYNC_TAG {
                    syncs += 1;
                    plan.progress.syncs.store(syncs, Ordering::Relaxed);
                    sync_inflight = false;
                    if res < 0 {
                        out.error = Some(Error::Io {
                            path: plan.path.clone(),
                            offset: 0,
                            op: "fdatasync",
                            source: io::Error::from_raw_os_error(-res),
                        });
                    } else if in_window {
                        let lat = now - sync_start;
                        out.sync.record(lat);
                        out.sync_sum_ns += lat as u128;
                        out.busy_ns += (now - sync_start.max(measure_start)) as u128;
                    }
                    continue;
                }
                let s = ud as usize;
                done += 1;
                inflight -= 1;
                free.push(s as u32);
                let w = is_write[s];
                if res < 0 || res as u32 != len32 {
                    let op = if w { "write" } else { "read" };
                    out.error = Some(if res < 0 {
                        Error::Io {
                            path: plan.path.clone(),
                            offset: offset_of[s],
                            op,
                            source: io::Error::from_raw_os_error(-res),
                        }
                    } else {
                        Error::ShortIo {
                            path: plan.path.clone(),
                            offset: offset_of[s],
                            op,
                            done: res as u64,
                            len: len32 as u64,
                        }
                    });
                    continue;
                }
                if in_window {
                    let lat = now - start_ns[s];
                    out.busy_ns += (now - start_ns[s].max(measure_start)) as u128;
                    if w {
                        out.write.record(lat);
                        out.write_sum_ns += lat as u128;
                    } else {
                        out.read.record(lat);
                        out.read_sum_ns += lat as u128;
                    }
                }
            }
            plan.progress.done.store(done, Ordering::Relaxed);
        }
    }
    out.thread_cpu = cpu.finish();
    out.inflight_at_exit = (inflight + sync_inflight as usize) as u64;
    plan.progress
        .inflight
        .store(out.inflight_at_exit, Ordering::Relaxed);
    if out.inflight_at_exit == 0 {
        // Release the registered file now: the ring itself is torn down asynchronously after
        // close, and until then it would keep the device claimed (the next O_EXCL open fails).
        let _ = ring.submitter().unregister_files();
        let _ = ring.submitter().unregister_buffers();
    }
    if out.inflight_at_exit > 0 {
        // The kernel may still write into these buffers: never give them back.
        std::mem::forget(ring);
        readbufs.leak();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::SpinPolicy;

    /// Runs `n` waits whose spins find a completion when `found(i)` says so; counts the spins.
    fn spins(p: &mut SpinPolicy, n: u32, found: impl Fn(u32) -> bool) -> u32 {
        let mut spun = 0;
        for i in 0..n {
            if p.spin() {
                spun += 1;
                p.spun(found(i));
            }
        }
        spun
    }

    /// A device faster than the spin (every spin finds its completion) is always spun for.
    #[test]
    fn spins_that_find_their_completion_go_on() {
        let mut p = SpinPolicy::default();
        assert_eq!(spins(&mut p, 10_000, |_| true), 10_000);
    }

    /// A device slower than the spin costs one window of spins per rest, then sleeps at once
    /// (the disk-backed loop at QD1), and is tried again after the rest.
    #[test]
    fn a_window_of_missed_spins_rests_and_then_tries_again() {
        let mut p = SpinPolicy::default();
        assert_eq!(
            spins(&mut p, SpinPolicy::WINDOW, |_| false),
            SpinPolicy::WINDOW
        );
        assert_eq!(
            spins(&mut p, SpinPolicy::REST, |_| true),
            0,
            "spun while resting"
        );
        assert_eq!(
            spins(&mut p, 100, |_| true),
            100,
            "not tried again after the rest"
        );
    }

    /// Finding a completion in a quarter of the spins (1 MiB jobs, completions ~180 us apart)
    /// is not enough; in three of four it is.
    #[test]
    fn a_quarter_of_hits_is_not_enough_and_three_quarters_is() {
        let mut p = SpinPolicy::default();
        let n = SpinPolicy::WINDOW + SpinPolicy::REST;
        assert_eq!(spins(&mut p, n, |i| i % 4 == 0), SpinPolicy::WINDOW);
        let mut p = SpinPolicy::default();
        assert_eq!(spins(&mut p, 1000, |i| i % 4 != 0), 1000);
    }
}
