//! Runs one job: opens and prefills the target, starts the workers, watches them (IOPS
//! samples, CPU window, watchdog, signals), and builds the [`BenchResult`].

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::Duration;

use super::buffers::{DataPool, pool_len};
use super::clock::now_ns;
use super::engine::{self, Control, Progress, WorkerOutput, WorkerPlan};
use super::error::Error;
use super::job::{JobKind, JobSpec, Target};
use super::latency::{ENCODING, LatencyHistogram};
use super::metadata::{self, MetaOutput, MetaPlan};
use super::offsets::{Counter, Offsets, SplitMix};
use super::result::{
    BenchResult, CpuResult, DirectionResult, EngineKind, LatencySummary, MetadataResult, OpRate,
    Prefill, PrefillKind, SCHEMA, StallInfo, Status, SyncResult,
};
use super::signals;
use super::stats::{self, CpuTimes, cv};
use super::target::{self, Prepared};

/// The nice value the agent measured at (see [`stats::raise_priority`]).
static NICE: std::sync::OnceLock<i32> = std::sync::OnceLock::new();

fn spec_nice() -> i32 {
    NICE.get().copied().unwrap_or(0)
}

/// How often the watcher wakes at least (signals, watchdog).
const TICK: Duration = Duration::from_millis(50);

/// Runs `spec` and returns its result; `Err` for bad input, I/O errors and interruption.
pub fn run(spec: &JobSpec) -> Result<BenchResult, Error> {
    spec.validate()?;
    signals::install().map_err(Error::Signals)?;
    // Before any worker starts, so that every thread inherits it.
    let _ = NICE.get_or_init(stats::raise_priority);
    let pool = Arc::new(DataPool::new(pool_len(&spec.job), spec.seed));
    if spec.job.rw == JobKind::Metadata {
        return run_metadata(spec, pool);
    }
    let (engine, why) = engine::select(spec.engine)?;
    let prep = target::open(spec)?;
    let mut warnings: Vec<String> = why.into_iter().collect();
    warnings.extend(prep.warnings.iter().cloned());
    // Files are always prefilled (like fio's layout: writes then overwrite, never allocate);
    // a device only for jobs that read (thin volumes answer unwritten blocks with zeros).
    let prefill_needed = matches!(spec.target, Target::Dir(_)) || spec.job.rw.reads();
    let mut prefill = Prefill::default();
    let stalled_prefill = if prefill_needed {
        let t = now_ns();
        let stall = prefill_watched(spec, &prep, &pool)?;
        let fresh: Vec<&target::JobFile> = prep.files.iter().filter(|f| !f.reused).collect();
        prefill = Prefill {
            kind: if fresh.is_empty() {
                PrefillKind::Reused
            } else {
                PrefillKind::Written
            },
            bytes: fresh.iter().map(|f| f.len).sum(),
            seconds: (now_ns() - t) as f64 / 1e9,
        };
        if stall.is_none() {
            for f in fresh {
                target::mark_prefilled(f)?;
            }
        }
        stall
    } else {
        None
    };
    if let Some(stall) = stalled_prefill {
        warnings.push(format!(
            "the prefill stalled: no write completed for {:.1}s; no measurement was made",
            stall.seconds_without_completion
        ));
        let direct = prep.direct;
        if !drop_bounded(prep, Duration::from_secs(2)) {
            warnings.push("could not remove the data files while the target is stalled".into());
        }
        let mut r = build_io_result(
            spec,
            engine,
            direct,
            WorkerOutput::default(),
            Watch::empty(stall),
            warnings,
        );
        r.prefill = prefill;
        return Ok(r);
    }

    let ramp = spec.ramp().as_nanos() as u64;
    let runtime = spec.runtime().as_nanos() as u64;
    let t0 = now_ns();
    let control = Arc::new(Control {
        stop: AtomicBool::new(false),
        abandon: AtomicBool::new(false),
        measure_start_ns: t0 + ramp,
        deadline_ns: t0 + ramp + runtime,
    });
    let (tx, rx) = mpsc::channel::<WorkerOutput>();
    let mut progress = Vec::new();
    let j = &spec.job;
    let read_pct = match j.rw {
        JobKind::Read | JobKind::Randread => 100,
        JobKind::Randrw => j.read_pct.unwrap_or(50),
        _ => 0,
    };
    let slots = match engine {
        EngineKind::Uring => 1,
        EngineKind::Threads => j.iodepth as usize,
    };
    let n = prep.files.len() * slots;
    let mut seeds = SplitMix::new(spec.seed ^ 0x5eed);
    for (i, f) in prep.files.iter().enumerate() {
        let blocks = f.len / j.bs;
        // The slots of one file walk it together: one counter, one order (thread engine).
        let counter = if slots == 1 {
            Counter::Local(0)
        } else {
            Counter::shared()
        };
        let order_seed = seeds.next_u64();
        let job_writes = Arc::new(AtomicU64::new(0));
        for slot in 0..slots {
            let offsets = if j.rw.is_random() {
                Offsets::random(f.start, blocks, j.bs, order_seed, counter.clone())
            } else {
                Offsets::sequential(f.start, blocks, j.bs, counter.clone())
            };
            let p = Arc::new(Progress::default());
            progress.push(p.clone());
            let plan = WorkerPlan {
                fd: std::os::fd::AsRawFd::as_raw_fd(&f.file),
                path: f.path.clone(),
                kind: j.rw,
                bs: j.bs,
                iodepth: j.iodepth,
                direct: prep.direct,
                read_pct,
                fsync_every: j.fsync_every,
                spin_ns: u64::from(j.spin_wait_us) * 1000,
                offsets,
                mix_seed: seeds.next_u64(),
                cursor: pool.cursor(i * slots + slot, n, seeds.next_u64()),
                control: control.clone(),
                progress: p,
                job_writes: job_writes.clone(),
            };
            let tx = tx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("bench-{i}-{slot}"))
                .spawn(move || {
                    let out = match engine {
                        EngineKind::Uring => engine::uring::run(plan),
                        EngineKind::Threads => engine::threads::run(plan),
                    };
                    let _ = tx.send(out);
                });
            if let Err(e) = spawned {
                control.abandon.store(true, Ordering::Relaxed);
                return Err(Error::Spawn(e));
            }
        }
    }
    drop(tx);
    let mut outputs = Vec::new();
    let watch = watch(&rx, n, &control, &progress, spec, &mut outputs);
    if let Some(sig) = watch.interrupted {
        let e = interrupted(sig, &prep);
        drop_bounded(prep, Duration::from_millis(300));
        return Err(e);
    }
    let mut merged = WorkerOutput::default();
    for o in outputs {
        merged.merge(o);
    }
    if let Some(e) = merged.error.take() {
        return Err(e);
    }
    let stalled = watch.stall.is_some();
    let direct = prep.direct;
    if stalled {
        // Removing a file on a stalled target can block forever (a frozen filesystem blocks
        // unlink too): try for a while, then report what is left instead of hanging.
        let left: Vec<PathBuf> = if prep.keeps() {
            Vec::new()
        } else {
            prep.created().to_vec()
        };
        if !drop_bounded(prep, Duration::from_secs(2)) && !left.is_empty() {
            warnings.push(format!(
                "could not remove {} while the target is stalled: remove by hand",
                left.iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    } else {
        drop(prep); // removes the files (unless --keep) before the result is printed
    }
    let mut r = build_io_result(spec, engine, direct, merged, watch, warnings);
    r.prefill = prefill;
    Ok(r)
}

/// Drops `v` in a helper thread; false when that did not finish within `limit`.
fn drop_bounded<T: Send + 'static>(v: T, limit: Duration) -> bool {
    let (tx, rx) = mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("bench-cleanup".into())
        .spawn(move || {
            drop(v);
            let _ = tx.send(());
        });
    spawned.is_ok() && rx.recv_timeout(limit).is_ok()
}

fn interrupted(sig: &'static str, prep: &Prepared) -> Error {
    let what = if prep.created().is_empty() {
        ""
    } else if prep.keeps() {
        "; files kept (--keep)"
    } else {
        "; files removed"
    };
    Error::Interrupted(sig, what)
}

/// Prefills in a helper thread so a stalled device or a signal cannot hang the agent.
/// `Ok(Some(stall))` when the device stopped answering.
fn prefill_watched(
    spec: &JobSpec,
    prep: &Prepared,
    pool: &Arc<DataPool>,
) -> Result<Option<StallInfo>, Error> {
    let mut files = Vec::new();
    for f in prep.files.iter().filter(|f| !f.reused) {
        let file = f.file.try_clone().map_err(|source| Error::Target {
            path: f.path.clone(),
            what: "cannot duplicate descriptor",
            source,
        })?;
        files.push((file, f.path.clone(), f.start, f.len));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(AtomicU64::new(0));
    let (tx, rx) = mpsc::channel();
    let (pool2, stop2, progress2) = (pool.clone(), stop.clone(), progress.clone());
    let mut cursor = pool.cursor(0, 1, spec.seed);
    std::thread::Builder::new()
        .name("bench-prefill".into())
        .spawn(move || {
            let r = target::prefill(&files, &mut cursor, &stop2, &progress2);
            drop(pool2);
            let _ = tx.send(r);
        })
        .map_err(Error::Spawn)?;
    let stall_ns = spec.stall_timeout.as_nanos() as u64;
    let mut last = 0u64;
    let mut last_change = now_ns();
    loop {
        match rx.recv_timeout(TICK) {
            Ok(r) => {
                return match r {
                    Ok(true) => Ok(None),
                    Ok(false) => Err(interrupted(signals::received().unwrap_or("a signal"), prep)),
                    Err(e) => Err(e),
                };
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Err(Error::Spawn(std::io::Error::other("prefill thread died")));
            }
            Err(RecvTimeoutError::Timeout) => {}
        }
        if let Some(sig) = signals::received() {
            stop.store(true, Ordering::Relaxed);
            let _ = rx.recv_timeout(Duration::from_millis(800));
            return Err(interrupted(sig, prep));
        }
        let now = now_ns();
        let p = progress.load(Ordering::Relaxed);
        if p != last {
            last = p;
            last_change = now;
        } else if now - last_change >= stall_ns {
            stop.store(true, Ordering::Relaxed);
            return Ok(Some(StallInfo {
                inflight: 1,
                seconds_without_completion: (now - last_change) as f64 / 1e9,
                stuck_workers: 1,
            }));
        }
    }
}

/// What the watcher saw while the workers ran.
struct Watch {
    stall: Option<StallInfo>,
    interrupted: Option<&'static str>,
    cpu: CpuTimes,
    /// The largest share of the window one thread waited for a CPU.
    wait_share: Option<f64>,
    samples: Vec<f64>,
    runtime_ns: u64,
}

impl Watch {
    fn empty(stall: StallInfo) -> Self {
        Watch {
            stall: Some(stall),
            interrupted: None,
            cpu: CpuTimes::default(),
            wait_share: None,
            samples: Vec::new(),
            runtime_ns: 0,
        }
    }
}

fn collect<T>(rx: &Receiver<T>, n: usize, outputs: &mut Vec<T>, until_ns: u64) {
    while outputs.len() < n {
        let now = now_ns();
        if now >= until_ns {
            break;
        }
        match rx.recv_timeout(Duration::from_nanos(until_ns - now)) {
            Ok(o) => outputs.push(o),
            Err(_) => break,
        }
    }
}

/// Waits for `n` worker outputs while sampling IOPS, timing the CPU window, and running the
/// watchdog; on a stall or a signal it stops (then abandons) the workers.
fn watch<T>(
    rx: &Receiver<T>,
    n: usize,
    ctl: &Control,
    progress: &[Arc<Progress>],
    spec: &JobSpec,
    outputs: &mut Vec<T>,
) -> Watch {
    let (ms, dl) = (ctl.measure_start_ns, ctl.deadline_ns);
    let interval = spec.sample_interval.as_nanos() as u64;
    let stall_ns = spec.stall_timeout.as_nanos() as u64;
    let done = || -> u64 {
        progress
            .iter()
            .map(|p| p.done.load(Ordering::Relaxed))
            .sum()
    };
    let alive = || -> u64 {
        progress
            .iter()
            .map(|p| p.done.load(Ordering::Relaxed) + p.syncs.load(Ordering::Relaxed))
            .sum()
    };
    let inflight = || -> u64 {
        progress
            .iter()
            .map(|p| p.inflight.load(Ordering::Relaxed))
            .sum()
    };
    let mut cpu_start: Option<CpuTimes> = None;
    let mut cpu_end: Option<CpuTimes> = None;
    let (mut waits_start, mut waits_end) = (None, None::<std::collections::HashMap<u32, f64>>);
    let mut last_sample = (0u64, 0u64);
    let mut next_sample = ms + interval;
    let mut samples = Vec::new();
    let mut last_alive = alive();
    let mut last_change = now_ns();
    let mut stall = None;
    let mut interrupted = None;
    while outputs.len() < n {
        let now = now_ns();
        let mut wake = now + TICK.as_nanos() as u64;
        if cpu_start.is_none() {
            wake = wake.min(ms);
        } else if next_sample <= dl {
            wake = wake.min(next_sample);
        }
        if cpu_end.is_none() {
            wake = wake.min(dl);
        }
        match rx.recv_timeout(Duration::from_nanos(wake.saturating_sub(now))) {
            Ok(o) => {
                outputs.push(o);
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {}
        }
        let now = now_ns();
        if cpu_start.is_none() && now >= ms {
            cpu_start = Some(CpuTimes::now());
            waits_start = Some(stats::run_queue_waits());
            last_sample = (now, done());
        }
        if cpu_start.is_some() && now >= next_sample && next_sample <= dl {
            let d = done();
            let secs = (now - last_sample.0) as f64 / 1e9;
            samples.push((d - last_sample.1) as f64 / secs);
            last_sample = (now, d);
            next_sample += interval;
        }
        if cpu_end.is_none() && now >= dl {
            cpu_end = Some(CpuTimes::now());
            waits_end = Some(stats::run_queue_waits());
        }
        let a = alive();
        if a != last_alive {
            last_alive = a;
            last_change = now;
        } else {
            let inf = inflight();
            if inf > 0 && now - last_change >= stall_ns {
                stall = Some(StallInfo {
                    inflight: inf,
                    seconds_without_completion: (now - last_change) as f64 / 1e9,
                    stuck_workers: 0,
                });
                break;
            }
        }
        if let Some(sig) = signals::received() {
            interrupted = Some(sig);
            break;
        }
    }
    let end = now_ns();
    let cpu_end = cpu_end.unwrap_or_else(CpuTimes::now);
    let cpu = cpu_end.since(cpu_start.unwrap_or(cpu_end));
    if stall.is_some() || interrupted.is_some() {
        ctl.stop.store(true, Ordering::Relaxed);
        if interrupted.is_some() {
            collect(rx, n, outputs, now_ns() + 500_000_000);
        }
        ctl.abandon.store(true, Ordering::Relaxed);
        collect(rx, n, outputs, now_ns() + 400_000_000);
    }
    if let Some(s) = &mut stall {
        s.stuck_workers = (n - outputs.len()) as u32;
    }
    let stop = if stall.is_some() || interrupted.is_some() {
        end.min(dl)
    } else {
        dl
    };
    let runtime_ns = stop.saturating_sub(ms);
    // Ended early (stall, signal): the window closes now.
    let wait_share = waits_start.and_then(|start| {
        let end = waits_end.unwrap_or_else(stats::run_queue_waits);
        stats::max_wait_share(&start, &end, runtime_ns as f64 / 1e9)
    });
    Watch {
        stall,
        interrupted,
        cpu,
        wait_share,
        samples,
        runtime_ns,
    }
}

fn rate(count: u64, secs: f64) -> f64 {
    if secs > 0.0 { count as f64 / secs } else { 0.0 }
}

fn direction(h: &LatencyHistogram, sum: u128, bs: u64, secs: f64) -> DirectionResult {
    let n = h.count();
    DirectionResult {
        io_count: n,
        bytes: n * bs,
        iops: rate(n, secs),
        bw_bytes: rate(n * bs, secs),
        lat_ns: h.summary(Some(sum)),
        histogram: h.encode(),
    }
}

/// Fields common to every result; `lat`/`hist` are the job's headline latency.
#[allow(clippy::too_many_arguments)]
fn base_result(
    spec: &JobSpec,
    engine: EngineKind,
    direct: bool,
    watch: &Watch,
    io_count: u64,
    bytes: u64,
    lat: LatencySummary,
    hist: String,
    busy_ns: u128,
    thread_cpu: CpuTimes,
    spun_ns: u128,
    mut warnings: Vec<String>,
) -> BenchResult {
    let secs = watch.runtime_ns as f64 / 1e9;
    let cv = cv(&watch.samples);
    if cv.is_none() && watch.stall.is_none() {
        warnings.push(format!(
            "fewer than 2 IOPS samples ({} s measured, one sample every {} s): cv is null",
            secs,
            spec.sample_interval.as_secs_f64()
        ));
    }
    let mut cpu = CpuResult::new(watch.cpu, thread_cpu, secs, io_count);
    cpu.wait_share = watch.wait_share;
    cpu.nice = Some(spec_nice());
    cpu.spin_s = (spun_ns > 0).then(|| spun_ns as f64 / 1e9);
    // No warning: `cpu.wait_share` is weighed by the gate (compare::gate), and a warning that
    // comes and goes with the machine's load would fail `--strict` runs at random.
    // Watching the ring (`--spin-wait`) is CPU the engine chose to spend, not queuing: left out.
    if cpu.util_pct_working() > 60.0 {
        warnings.push(format!(
            "the CPU was {:.0} % busy: latencies may include CPU queuing (kbench asks for at least 40 % idle)",
            cpu.util_pct_working()
        ));
    }
    if let Some(s) = &watch.stall {
        warnings.push(format!(
            "stalled: no I/O completed for {:.1} s with {} in flight; the watchdog ended the job",
            s.seconds_without_completion, s.inflight
        ));
    }
    BenchResult {
        schema: SCHEMA.into(),
        status: if watch.stall.is_some() {
            Status::Stalled
        } else {
            Status::Ok
        },
        workload: spec.workload.clone(),
        profile: spec.profile,
        job: spec.job.clone(),
        target: spec.target.clone(),
        engine,
        direct,
        runtime_s: secs,
        io_count,
        bytes,
        iops: rate(io_count, secs),
        bw_bytes: rate(bytes, secs),
        lat_ns: lat,
        histogram: hist,
        histogram_encoding: ENCODING.into(),
        read: None,
        write: None,
        sync: None,
        metadata: None,
        qd_achieved: if watch.runtime_ns > 0 {
            busy_ns as f64 / watch.runtime_ns as f64
        } else {
            0.0
        },
        cpu,
        cv,
        sample_interval_s: spec.sample_interval.as_secs_f64(),
        iops_samples: watch.samples.clone(),
        stall: watch.stall.clone(),
        warnings,
        prefill: Default::default(),
        seed: spec.seed,
    }
}

fn build_io_result(
    spec: &JobSpec,
    engine: EngineKind,
    direct: bool,
    o: WorkerOutput,
    watch: Watch,
    mut warnings: Vec<String>,
) -> BenchResult {
    let j = &spec.job;
    let secs = watch.runtime_ns as f64 / 1e9;
    let mut all = o.read.clone();
    all.add(&o.write);
    let io_count = all.count();
    let bytes = io_count * j.bs;
    let data_sum = o.read_sum_ns + o.write_sum_ns;
    let fsync_job = j.rw == JobKind::FsyncLatency;
    let sync_lat = o.sync.summary(Some(o.sync_sum_ns));
    let (lat, hist) = if fsync_job {
        (sync_lat, o.sync.encode())
    } else {
        (all.summary(Some(data_sum)), all.encode())
    };
    let bw = rate(bytes, secs);
    let total = j.size.saturating_mul(j.jobs as u64);
    if !fsync_job && bw > 0.0 && (total as f64) < 25.0 * bw {
        warnings.push(format!(
            "the data set ({}) is below 25 × the measured bandwidth ({:.1} MiB/s): caches may flatter the result (kbench's rule); use a larger --size",
            crate::units::format_size(total),
            bw / 1048576.0
        ));
    }
    if fsync_job && o.sync.count() > 0 && sync_lat.p99 > 10_000_000 {
        warnings.push(format!(
            "fdatasync p99 is {:.1} ms, above etcd's 10 ms guideline",
            sync_lat.p99 as f64 / 1e6
        ));
    }
    let mut r = base_result(
        spec,
        engine,
        direct,
        &watch,
        io_count,
        bytes,
        lat,
        hist,
        o.busy_ns,
        o.thread_cpu,
        o.spun_ns,
        warnings,
    );
    if j.rw.reads() {
        r.read = Some(direction(&o.read, o.read_sum_ns, j.bs, secs));
    }
    if j.rw.writes() {
        r.write = Some(direction(&o.write, o.write_sum_ns, j.bs, secs));
    }
    if j.fsync_every > 0 {
        r.sync = Some(SyncResult {
            count: o.sync.count(),
            lat_ns: sync_lat,
            histogram: o.sync.encode(),
        });
    }
    r
}

/// Removes the metadata job's subdirectories (only those we created).
struct MetaDirs(Vec<PathBuf>);

impl Drop for MetaDirs {
    fn drop(&mut self) {
        for d in &self.0 {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

fn run_metadata(spec: &JobSpec, pool: Arc<DataPool>) -> Result<BenchResult, Error> {
    let Target::Dir(dir) = &spec.target else {
        return Err(Error::BadFlag {
            flag: "--device",
            msg: "the metadata job needs a filesystem: use --dir".into(),
        });
    };
    let j = &spec.job;
    let mut dirs = MetaDirs(Vec::new());
    for i in 0..j.jobs {
        let d = dir.join(format!("pvcheck-meta.{}.{i}", std::process::id()));
        std::fs::create_dir(&d).map_err(|source| {
            if matches!(
                source.raw_os_error(),
                Some(libc::EROFS) | Some(libc::EACCES) | Some(libc::EPERM)
            ) {
                Error::ReadOnly {
                    path: dir.clone(),
                    source,
                }
            } else {
                Error::Target {
                    path: d.clone(),
                    what: "cannot create the metadata directory",
                    source,
                }
            }
        })?;
        dirs.0.push(d);
    }
    let t0 = now_ns();
    let ramp = spec.ramp().as_nanos() as u64;
    let control = Arc::new(Control {
        stop: AtomicBool::new(false),
        abandon: AtomicBool::new(false),
        measure_start_ns: t0 + ramp,
        deadline_ns: t0 + ramp + spec.runtime().as_nanos() as u64,
    });
    let (tx, rx) = mpsc::channel::<MetaOutput>();
    let mut progress = Vec::new();
    let n = dirs.0.len();
    for (i, d) in dirs.0.iter().enumerate() {
        let p = Arc::new(Progress::default());
        progress.push(p.clone());
        let plan = MetaPlan {
            dir: d.clone(),
            files_per_batch: (j.size / j.bs).max(1),
            bs: j.bs as usize,
            cursor: pool.cursor(i, n, spec.seed ^ i as u64),
            control: control.clone(),
            progress: p,
        };
        let tx = tx.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("bench-meta-{i}"))
            .spawn(move || {
                let _ = tx.send(metadata::run(plan));
            });
        if let Err(e) = spawned {
            control.abandon.store(true, Ordering::Relaxed);
            return Err(Error::Spawn(e));
        }
    }
    drop(tx);
    let mut outputs = Vec::new();
    let watch = watch(&rx, n, &control, &progress, spec, &mut outputs);
    if let Some(sig) = watch.interrupted {
        drop_bounded(dirs, Duration::from_millis(300));
        return Err(Error::Interrupted(sig, "; files removed"));
    }
    let mut o = MetaOutput::default();
    for x in outputs {
        o.merge(x);
    }
    if let Some(e) = o.error.take() {
        return Err(e);
    }
    let secs = watch.runtime_ns as f64 / 1e9;
    let mut all = LatencyHistogram::new();
    let mut sum = 0u128;
    let mut busy = 0u128;
    for op in &o.ops {
        all.add(&op.hist);
        sum += op.sum_ns;
        busy += op.busy_ns;
    }
    let op_rate = |k: usize| {
        let s = &o.ops[k];
        OpRate {
            count: s.hist.count(),
            ops_per_s: rate(s.hist.count(), secs),
            lat_ns: s.hist.summary(Some(s.sum_ns)),
            histogram: s.hist.encode(),
        }
    };
    let creates = o.ops[0].hist.count();
    let mut r = base_result(
        spec,
        EngineKind::Threads,
        false,
        &watch,
        all.count(),
        creates * j.bs,
        all.summary(Some(sum)),
        all.encode(),
        busy,
        o.thread_cpu,
        0,
        Vec::new(),
    );
    let missing: Vec<&str> = (0..4)
        .filter(|&k| o.ops[k].hist.count() == 0)
        .map(|k| metadata::OPS[k])
        .collect();
    if !missing.is_empty() && r.status == Status::Ok {
        r.warnings.push(format!(
            "{} not measured: one batch of {} files did not finish within the runtime; use a smaller --size or a longer --runtime",
            missing.join(", "),
            (j.size / j.bs).max(1)
        ));
    }
    r.metadata = Some(MetadataResult {
        create: op_rate(0),
        stat: op_rate(1),
        rename: op_rate(2),
        unlink: op_rate(3),
    });
    if r.status == Status::Stalled {
        if !drop_bounded(dirs, Duration::from_secs(2)) {
            r.warnings.push(
                "could not remove the metadata directories while the target is stalled".into(),
            );
        }
    } else {
        drop(dirs);
    }
    Ok(r)
}
