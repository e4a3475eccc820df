//! `speed::<workload>`: the agent's standard matrix, one job at a time, on one volume per class.
//!
//! The speed trials of a class share one volume ([`SpeedVolumes`]), provisioned by the first and
//! destroyed after the last (the scheduler knows how many run), so the matrix measures the
//! volume, not provisioning. The scheduler also guarantees no other trial runs meanwhile.
//!
//! `--repeat N` (issue 12): each workload runs N times, each repetition a new agent process.
//! With N ≥ 2 the class has two speed volumes, provisioned independently: the first half of
//! the repetitions (rounded up) runs on the first, the rest on the second, so the first and
//! the last repetition are on different volumes and the spread between repetitions includes
//! the volume-to-volume variation a new run will meet. Every repetition is kept in the trial's
//! metrics (`repetitions: [{volume, seconds, bench}]`); `bench` stays the first repetition's
//! result, where readers of a single result find it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;

use serde_json::Value;

use super::{CheckCtx, Failure, Verdict, agent_json};
use crate::platform::{
    AgentBatch, AgentCall, AgentOutput, AgentTarget, PlatformError, Pod, Volume, VolumeRequest,
};
use pvcheck_workloads::units::format_size;

/// The workload names of the agent's standard matrix, in the order they run (issue 3).
pub fn workloads() -> &'static [&'static str] {
    &pvcheck_workloads::speed::matrix::NAMES
}

/// A class's shared speed volume with its running pod.
type Shared = (Box<dyn Volume>, Box<dyn Pod>);

/// The shared speed volumes of a run, per class and slot (0, and 1 with repetitions).
pub struct SpeedVolumes {
    by_class: Mutex<HashMap<(String, usize), Shared>>,
    /// Classes whose speed figures were already said to be cacheable (the trial that said it):
    /// the warning is one line per class, not one per workload.
    cache_warned: Mutex<HashMap<String, String>>,
    /// Repetitions per workload (`--repeat`).
    repeat: u32,
    /// `run --baseline`: what a workload is judged against while it runs, so that one still
    /// inconclusive gets more repetitions.
    gate: Option<RepeatUntilDecided>,
    /// Per class: its planned speed workloads and the batch running them ahead.
    batches: Mutex<HashMap<String, Batches>>,
}

/// A planned repetition: (workload, 0-based repetition).
type Key = (String, u32);

/// A class's speed matrix run ahead in batches.
#[derive(Default)]
struct Batches {
    /// The class's speed workloads that will run, in the order they run.
    plan: Vec<String>,
    /// Outputs that came before their trial asked, with where they ran.
    ready: HashMap<Key, (Result<AgentOutput, PlatformError>, Value)>,
    /// Repetitions a batch has delivered or is still to deliver: never put in another one.
    taken: HashSet<Key>,
    running: Option<Running>,
    /// The platform runs agents as cheaply one by one (no batches).
    unbatched: bool,
}

struct Running {
    batch: Box<dyn AgentBatch>,
    /// What it is still to deliver, in order.
    pending: VecDeque<Key>,
    delivered: usize,
}

impl Batches {
    /// Takes the batch's next output into `ready`; an error or an early end stops the batch
    /// and gives what it did not deliver back to the trials.
    fn pull(&mut self) {
        let Some(run) = self.running.as_mut() else {
            return;
        };
        let of = run.delivered + run.pending.len();
        let Some(key) = run.pending.pop_front() else {
            self.stop();
            return;
        };
        let info = serde_json::json!({ "pod": run.batch.id(), "index": run.delivered, "of": of });
        run.delivered += 1;
        match run.batch.next() {
            Some(Ok(out)) => {
                self.ready.insert(key, (Ok(out), info));
                if run.pending.is_empty() {
                    self.stop();
                }
            }
            Some(Err(e)) => {
                self.ready.insert(key, (Err(e), info));
                self.stop();
            }
            None => {
                self.taken.remove(&key);
                self.stop();
            }
        }
    }

    /// Stops the running batch (waiting until nothing of it runs); what it did not deliver
    /// goes back to the trials.
    fn stop(&mut self) {
        if let Some(run) = self.running.take() {
            for k in &run.pending {
                self.taken.remove(k);
            }
            let _ = run.batch.stop();
        }
    }
}

/// Repetitions until decided (issue 19): after `--repeat` repetitions a workload is judged
/// against the baseline as `compare` will judge it; while a figure is inconclusive, one more
/// repetition runs (on alternating volumes), up to `max_repeat` in all.
pub struct RepeatUntilDecided {
    pub baseline: crate::compare::RunDoc,
    pub noise: crate::compare::Noise,
    pub max_repeat: u32,
}

impl Default for SpeedVolumes {
    fn default() -> Self {
        Self::new(1)
    }
}

impl SpeedVolumes {
    pub fn new(repeat: u32) -> Self {
        Self {
            by_class: Mutex::new(HashMap::new()),
            cache_warned: Mutex::new(HashMap::new()),
            repeat: repeat.max(1),
            gate: None,
            batches: Mutex::new(HashMap::new()),
        }
    }

    /// Declares that speed workload `workload` of `class` will run (in run order): what its
    /// batches run ahead.
    /// Returns whether it is the class's first.
    pub fn plan(&self, class: &str, workload: &str) -> bool {
        let mut all = self.batches.lock().unwrap_or_else(|e| e.into_inner());
        let plan = &mut all.entry(class.to_string()).or_default().plan;
        plan.push(workload.to_string());
        plan.len() == 1
    }

    /// Provisions the class's speed volumes (with `--repeat` 2 or more, both) and starts their
    /// pods, ahead of the class's first speed trial. Not under the lock the trials measure
    /// under: other classes prepare at the same time.
    pub fn prepare(&self, ctx: &CheckCtx) -> Result<(), Failure> {
        for slot in 0..if self.repeat > 1 { 2 } else { 1 } {
            let key = (ctx.class.name().to_string(), slot);
            let exists = |g: &HashMap<(String, usize), Shared>| g.contains_key(&key);
            if exists(&self.by_class.lock().unwrap_or_else(|e| e.into_inner())) {
                continue;
            }
            let shared = new_volume(ctx, slot)?;
            let mut g = self.by_class.lock().unwrap_or_else(|e| e.into_inner());
            if exists(&g) {
                drop(g);
                let (mut vol, pod) = shared;
                let _ = vol.stop_pod(pod);
                let _ = vol.destroy();
            } else {
                g.insert(key, shared);
            }
        }
        Ok(())
    }

    /// Stops the class's running batch, if any.
    fn stop_batch(&self, class: &str) {
        if let Some(b) = self
            .batches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(class)
        {
            b.stop();
        }
    }

    /// Planned repetition `rep` of `workload` on the volume in `slot` from a batch: its
    /// output, waited for (a batch started here when none runs it yet), or `None` where it runs
    /// on its own (a platform without batches, or nothing left to batch with it).
    fn from_batch(
        &self,
        class: &str,
        workload: &str,
        rep: u32,
        slot: usize,
        pod: &mut dyn Pod,
        call: &dyn Fn(&str, AgentTarget) -> AgentCall,
    ) -> Option<(Result<AgentOutput, PlatformError>, Value)> {
        let mut all = self.batches.lock().unwrap_or_else(|e| e.into_inner());
        let b = all.entry(class.to_string()).or_default();
        let key: Key = (workload.to_string(), rep);
        loop {
            if let Some(r) = b.ready.remove(&key) {
                return Some(r);
            }
            if crate::signals::interrupted() {
                // The run's teardown waits for these locks: one output at most, not a drain.
                b.stop();
                let e = PlatformError::Other("the run was interrupted".into());
                return Some((Err(e), Value::Null));
            }
            if b.running.is_some() {
                // One output more: this one's, one before it, or one of another volume's
                // batch, which finishes what it measures for the trials to come before
                // anything else measures.
                b.pull();
                continue;
            }
            if b.unbatched || b.taken.contains(&key) {
                return None;
            }
            let n = self.repeat;
            let from = b.plan.iter().position(|w| w == workload)?;
            let keys: Vec<Key> = b.plan[from..]
                .iter()
                .flat_map(|w| (0..n).map(move |r| (w.clone(), r)))
                .filter(|(w, r)| (w != workload || *r >= rep) && slot_of(*r, n) == slot)
                .filter(|k| !b.taken.contains(k))
                .collect();
            if keys.len() < 2 {
                return None;
            }
            let target = pod.target();
            let calls: Vec<AgentCall> = keys.iter().map(|(w, _)| call(w, target)).collect();
            match pod.start_batch(&calls) {
                Ok(Some(batch)) => {
                    b.taken.extend(keys.iter().cloned());
                    b.running = Some(Running {
                        batch,
                        pending: keys.into(),
                        delivered: 0,
                    });
                }
                Ok(None) => {
                    b.unbatched = true;
                    return None;
                }
                Err(e) => return Some((Err(e), Value::Null)),
            }
        }
    }

    /// With a baseline: repeat still-inconclusive workloads up to `gate.max_repeat`.
    pub fn repeating_until_decided(mut self, gate: RepeatUntilDecided) -> Self {
        self.gate = Some(gate);
        self
    }

    /// Why `workload` of `class` needs another repetition (a figure still inconclusive against
    /// the baseline, and one more repetitions may decide), or `None` when decided, not
    /// comparable, beyond what repetitions can decide, or at the limit.
    fn undecided(&self, class: &str, workload: &str, reps: &[Value]) -> Option<String> {
        let gate = self.gate.as_ref()?;
        if reps.len() as u32 >= gate.max_repeat {
            return None;
        }
        let base = gate.baseline.speed_trial(class, workload)?;
        let new = crate::compare::TrialDoc {
            name: String::new(),
            class: class.to_string(),
            check: format!("speed::{workload}"),
            status: "passed".into(),
            duration_s: 0.0,
            ignored_reason: None,
            failure_message: None,
            failure_category: None,
            repetitions: reps
                .iter()
                .filter_map(|r| r.get("bench").cloned())
                .collect(),
            rep_volumes: Vec::new(),
            rep_runs: Vec::new(),
        };
        let limits = gate.baseline.thresholds(class).for_workload(workload);
        crate::compare::gate::judge_workload(class, workload, base, &new, &limits, &gate.noise)
            .into_iter()
            .find(|c| c.more_repetitions_may_decide())
            .map(|c| format!("{} {}", c.metric.label(), c.reason))
    }

    pub fn repeat(&self) -> u32 {
        self.repeat
    }

    /// Stops and destroys the class's speed volumes (after its last speed trial).
    pub fn release(&self, class: &str) -> Result<(), Failure> {
        self.stop_batch(class);
        let taken: Vec<Shared> = {
            let mut g = self.by_class.lock().unwrap_or_else(|e| e.into_inner());
            let keys: Vec<_> = g.keys().filter(|k| k.0 == class).cloned().collect();
            keys.into_iter().filter_map(|k| g.remove(&k)).collect()
        };
        let mut first_err = None;
        for (mut vol, pod) in taken {
            let stopped = vol.stop_pod(pod);
            let destroyed = vol.destroy();
            if let Err(e) = stopped.and(destroyed) {
                first_err.get_or_insert(e);
            }
        }
        match first_err {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    /// Destroys every remaining speed volume (end of run, interruption).
    pub fn release_all(&self) {
        let classes: Vec<String> = self
            .batches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        for c in classes {
            self.stop_batch(&c);
        }
        let all: Vec<_> = self
            .by_class
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .collect();
        for (_, (mut vol, pod)) in all {
            let _ = vol.stop_pod(pod);
            let _ = vol.destroy();
        }
    }
}

/// The data workloads of the matrix use one set of files of the profile's size: the first
/// prefills them, the rest reuse them (`bench --reuse`), instead of writing 4 GiB again per
/// workload under the standard profile. The files go with the shared volume. fsync-latency
/// (a small file of its own size) and metadata (many small files) keep their own.
fn shares_prefill(profile: crate::profile::Profile, workload: &str) -> bool {
    use pvcheck_workloads::speed::job::JobKind;
    pvcheck_workloads::speed::matrix::workload(profile.agent(), workload)
        .is_some_and(|w| !matches!(w.job.rw, JobKind::FsyncLatency | JobKind::Metadata))
}

/// The volume slot of repetition `i` (0-based) of `n`: the first half (rounded up) on slot 0,
/// the rest on slot 1.
pub fn slot_of(i: u32, n: u32) -> usize {
    usize::from(n > 1 && i >= n.div_ceil(2))
}

pub fn check(ctx: &CheckCtx, workload: &str) -> Result<Verdict, Failure> {
    let n = ctx.speed.repeat;
    let mut reps = Vec::new();
    let mut result = Ok(Verdict::Passed);
    let mut added: Vec<String> = Vec::new();
    for i in 0.. {
        if i >= n {
            // Past --repeat only with a baseline, while a figure is still inconclusive.
            match ctx.speed.undecided(ctx.class.name(), workload, &reps) {
                Some(why) => added.push(why),
                None => break,
            }
        }
        let slot = if i < n {
            slot_of(i, n)
        } else {
            (i % 2) as usize
        };
        let started = std::time::Instant::now();
        let r = repetition(ctx, workload, i, slot, i < n);
        if let Some(v) = r
            .out
            .as_ref()
            .ok()
            .or(r.out.as_ref().err().and_then(|(v, _)| v.as_ref()))
        {
            if i == 0 {
                // Kept whole, histograms included, so runs can be merged and compared later.
                ctx.metric("bench", v.clone());
            }
            let mut rep = serde_json::json!({
                "volume": r.volume,
                "seconds": r.seconds.unwrap_or_else(|| started.elapsed().as_secs_f64()),
                "bench": v,
            });
            if let Some(b) = &r.batch {
                rep["batch"] = b.clone();
            }
            reps.push(rep);
        }
        if let Err((_, f)) = r.out {
            result = Err(if n > 1 || i > 0 {
                f.context(&format!("repetition {} of {}", i + 1, n.max(i + 1)))
            } else {
                f
            });
            break;
        }
    }
    ctx.metric("repetitions", Value::Array(reps));
    if !added.is_empty() {
        // How many repetitions deciding took, and why each was added (compare shows it).
        ctx.metric(
            "repeated_until_decided",
            serde_json::json!({
                "initial": n,
                "total": n as usize + added.len(),
                "why": added,
            }),
        );
    }
    result
}

/// One repetition's outcome.
struct Rep {
    /// The volume's fingerprint.
    volume: Option<Value>,
    /// The bench JSON, or the failure with whatever JSON the agent printed.
    out: Result<Value, (Option<Value>, Failure)>,
    /// Where a batch ran it (`{pod, index, of}`).
    batch: Option<Value>,
    /// The agent's own run time, where it ran ahead in a batch (the trial's wall time says
    /// nothing about it then).
    seconds: Option<f64>,
}

impl Rep {
    fn failed(f: Failure) -> Rep {
        Rep {
            volume: None,
            out: Err((None, f)),
            batch: None,
            seconds: None,
        }
    }
}

/// A new speed volume for `slot` with its pod running, checked to have room for the matrix.
fn new_volume(ctx: &CheckCtx, slot: usize) -> Result<Shared, Failure> {
    let req = VolumeRequest {
        run_id: ctx.run_id.clone(),
        name: if slot == 0 {
            format!("{}-speed", ctx.class.name())
        } else {
            format!("{}-speed-{}", ctx.class.name(), slot + 1)
        },
        size: ctx.speed_volume_bytes(),
    };
    let mut vol = ctx
        .platform
        .provision(&ctx.class, &req)
        .map_err(|e| Failure::from(e).context("provision"))?;
    ctx.noticed(vol.as_mut());
    let pod = match vol.start_pod() {
        Ok(p) => p,
        Err(e) => {
            let _ = vol.destroy();
            return Err(Failure::from(e).context("starting the pod"));
        }
    };
    ctx.noticed(vol.as_mut());
    // Room for the matrix, checked once on the new volume, before anything is written.
    if let Err(f) = has_room(ctx, vol.as_ref(), pod.as_ref()) {
        let _ = vol.stop_pod(pod);
        let _ = vol.destroy();
        return Err(f);
    }
    Ok((vol, pod))
}

/// Repetition `rep` (`planned`: one of `--repeat`'s, not one the gate added) on the class's
/// volume in `slot`.
fn repetition(ctx: &CheckCtx, workload: &str, rep: u32, slot: usize, planned: bool) -> Rep {
    let mut guard = ctx.speed.by_class.lock().unwrap_or_else(|e| e.into_inner());
    let key = (ctx.class.name().to_string(), slot);
    if !guard.contains_key(&key) {
        match new_volume(ctx, slot) {
            Ok(shared) => guard.insert(key.clone(), shared),
            Err(f) => return Rep::failed(f),
        };
    }
    let Some((vol, pod)) = guard.get_mut(&key) else {
        return Rep::failed(Failure::new("speed volume vanished"));
    };
    let fingerprint = vol.fingerprint();
    if fingerprint.get("direct_io") == Some(&Value::Bool(false)) {
        // O_DIRECT on the volume ends in the loop device, which then goes through the host's
        // page cache: the figures may be the host's memory, not the storage.
        ctx.warn(
            "the loop device could not use direct I/O on its image (the backing filesystem refused it): \
             O_DIRECT reads may be served from the host's page cache",
        );
    }
    ctx.data.lock().unwrap_or_else(|e| e.into_inner()).volume = Some(fingerprint.clone());
    let (out, batch) = if planned {
        let start = std::time::Instant::now();
        let got = ctx.speed.from_batch(
            ctx.class.name(),
            workload,
            rep,
            slot,
            pod.as_mut(),
            &|w, target| bench_call(ctx, w, target),
        );
        if got.is_some() {
            ctx.agent_clock.span(start, std::time::Instant::now());
        }
        match got {
            Some((out, info)) => (Some(out), Some(info)),
            None => (None, None),
        }
    } else {
        // A repetition the gate added: nothing of a batch may run beside it.
        ctx.speed.stop_batch(ctx.class.name());
        (None, None)
    };
    let seconds = out
        .as_ref()
        .and_then(|o| o.as_ref().ok())
        .map(|o| o.elapsed.as_secs_f64());
    let out = match out {
        Some(o) => o.map_err(|e| Failure::from(e).context(workload)),
        None => {
            let call = bench_call(ctx, workload, pod.target());
            agent_json::run(ctx, pod.as_mut(), &call, workload)
        }
    };
    let mut json = None;
    let out = match out.and_then(|o| judge(ctx, workload, vol.as_ref(), &o, &mut json)) {
        Ok(()) => match json {
            Some(v) => Ok(v),
            None => Err((None, Failure::new("the agent printed no result"))),
        },
        Err(f) => Err((json, f)),
    };
    Rep {
        volume: Some(fingerprint),
        out,
        batch: batch.filter(|b| !b.is_null()),
        seconds,
    }
}

/// The agent's "caches may flatter the result" warning (kbench's 25 × bandwidth rule).
fn is_cache_warning(w: &str) -> bool {
    w.starts_with("the data set (") && w.contains("caches may flatter")
}

/// Whether no cache can hold the data of this measurement: the agent used O_DIRECT, and the
/// volume is a loop device that reads and writes its image with direct I/O, so nothing ends in
/// the host's page cache.
pub fn data_path_bypasses_caches(bench: &Value, fingerprint: &Value) -> bool {
    bench.get("direct") == Some(&Value::Bool(true))
        && fingerprint.get("direct_io") == Some(&Value::Bool(true))
}

/// The cache warning, once per class: the first speed trial that meets it says it for the
/// class; the others note where it was said (metric `cache_warning`). Not said at all where the
/// data path bypasses caches.
fn cache_warning(ctx: &CheckCtx, w: &str, uncached: bool) {
    if uncached {
        ctx.metric(
            "cache_warning",
            "not raised: O_DIRECT on a loop device with direct I/O, no cache holds the data".into(),
        );
        return;
    }
    let trial = format!("{}::{}", ctx.class.name(), ctx.check.name());
    let first = {
        let mut g = ctx
            .speed
            .cache_warned
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        g.entry(ctx.class.name().to_string())
            .or_insert_with(|| trial.clone())
            .clone()
    };
    let said_here = ctx
        .data
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .warnings
        .iter()
        .any(|x| is_cache_warning(x));
    if first == trial && !said_here {
        ctx.warn(format!(
            "{} (said once for the class's speed workloads)",
            w.replace("use a larger --size", "use a larger --speed-size")
        ));
    } else if first != trial {
        ctx.metric(
            "cache_warning",
            format!("said once for the class, in {first}: {w}").into(),
        );
    }
}

/// Whether the volume has room for the profile's speed matrix (a setup failure if not).
fn has_room(ctx: &CheckCtx, vol: &dyn Volume, pod: &dyn Pod) -> Result<(), Failure> {
    let cap = pod.capacity()?;
    if cap.available_bytes < ctx.speed_volume_bytes() {
        return Err(Failure::setup(format!(
            "volume {} has {} available, the {} profile's speed matrix needs {}: enlarge the class, or use --speed-size",
            vol.id(),
            format_size(cap.available_bytes),
            ctx.profile.name(),
            format_size(ctx.speed_volume_bytes())
        )));
    }
    Ok(())
}

/// The agent's bench of `workload` on `target`.
fn bench_call(ctx: &CheckCtx, workload: &str, target: AgentTarget) -> AgentCall {
    let mut args = vec![
        "bench".to_string(),
        "--workload".into(),
        workload.into(),
        "--profile".into(),
        ctx.profile.name().into(),
    ];
    args.extend(target.args());
    // A raw device has no room beside the data for the marker that `--reuse` keeps: each
    // workload prefills its region again.
    if shares_prefill(ctx.profile, workload) && !target.is_device() {
        args.push("--reuse".into());
        if let Some(size) = ctx.speed_size {
            args.push("--size".into());
            args.push(format_size(size));
        }
    }
    AgentCall::new(args, ctx.agent_timeout())
}

/// Judges one bench run's output; `json` receives its result whenever it printed one.
fn judge(
    ctx: &CheckCtx,
    workload: &str,
    vol: &dyn Volume,
    out: &AgentOutput,
    json: &mut Option<Value>,
) -> Result<(), Failure> {
    let result = agent_json::parse(out, workload);
    if let Ok(v) = &result {
        *json = Some(v.clone());
        // What the agent says about its own figures (a data set that caches can hold, too few
        // samples, a busy CPU) is a warning of the trial, shown with the figures.
        let uncached = data_path_bypasses_caches(v, &vol.fingerprint());
        for w in v
            .get("warnings")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if is_cache_warning(w) {
                cache_warning(ctx, w, uncached);
                continue;
            }
            // The agent's advice names its own flag; through pvcheck it is --speed-size.
            ctx.warn(w.replace("use a larger --size", "use a larger --speed-size"));
        }
    }
    if out.code != Some(0) {
        let status = result
            .as_ref()
            .ok()
            .and_then(|v| v.get("status"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let category = if status == "stalled" {
            crate::report::results::FailureCategory::Timeout
        } else {
            agent_json::category(out)
        };
        return Err(Failure::new(format!(
            "{workload} on volume {}: the agent reported {} ({}): {}\nreproduce: {}",
            vol.id(),
            if status.is_empty() {
                "an error".into()
            } else {
                status
            },
            out.status(),
            out.stderr_line(),
            out.command
        ))
        .category(category));
    }
    result?;
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The order batches run a class's matrix in: what the scheduler's "nothing else measures
    //! beside a speed trial" relies on.
    use super::*;
    use crate::platform::{AgentProcess, Capacity};
    use std::path::Path;
    use std::sync::Arc;
    use std::time::Duration;

    type Log = Arc<Mutex<Vec<String>>>;

    /// A pod whose batches log what runs, in order; `fail` names a workload whose run fails.
    struct FakePod {
        name: &'static str,
        log: Log,
        fail: Option<&'static str>,
    }

    struct FakeBatch {
        pod: &'static str,
        log: Log,
        calls: VecDeque<String>,
        fail: Option<&'static str>,
    }

    impl Pod for FakePod {
        fn data_dir(&self) -> &Path {
            Path::new("/fake")
        }
        fn capacity(&self) -> Result<Capacity, PlatformError> {
            unreachable!()
        }
        fn run_agent(&mut self, _: &AgentCall) -> Result<AgentOutput, PlatformError> {
            unreachable!("a batch runs every planned repetition here")
        }
        fn spawn_agent(
            &mut self,
            _: &AgentCall,
            _: &Path,
        ) -> Result<Box<dyn AgentProcess>, PlatformError> {
            unreachable!()
        }
        fn start_batch(
            &mut self,
            calls: &[AgentCall],
        ) -> Result<Option<Box<dyn AgentBatch>>, PlatformError> {
            let calls: VecDeque<String> = calls.iter().map(|c| c.args[0].clone()).collect();
            self.log.lock().unwrap().push(format!(
                "start {} {}",
                self.name,
                calls.iter().cloned().collect::<Vec<_>>().join(",")
            ));
            Ok(Some(Box::new(FakeBatch {
                pod: self.name,
                log: self.log.clone(),
                calls,
                fail: self.fail,
            })))
        }
    }

    impl AgentBatch for FakeBatch {
        fn next(&mut self) -> Option<Result<AgentOutput, PlatformError>> {
            let w = self.calls.pop_front()?;
            self.log
                .lock()
                .unwrap()
                .push(format!("run {} {w}", self.pod));
            if self.fail == Some(w.as_str()) {
                self.calls.clear();
                return Some(Err(PlatformError::Other(format!("{w} broke the pod"))));
            }
            Some(Ok(AgentOutput {
                command: w.clone(),
                stdout: w,
                stderr: String::new(),
                code: Some(0),
                signal: None,
                elapsed: Duration::from_millis(1),
            }))
        }
        fn id(&self) -> &str {
            self.pod
        }
        fn stop(self: Box<Self>) -> Result<(), PlatformError> {
            self.log.lock().unwrap().push(format!("stop {}", self.pod));
            Ok(())
        }
    }

    fn speed(repeat: u32, plan: &[&str]) -> SpeedVolumes {
        let s = SpeedVolumes::new(repeat);
        for w in plan {
            s.plan("c", w);
        }
        s
    }

    fn pods(fail: Option<&'static str>) -> (Log, [FakePod; 2]) {
        let log: Log = Arc::default();
        let pod = |name| FakePod {
            name,
            log: log.clone(),
            fail,
        };
        (log.clone(), [pod("s0"), pod("s1")])
    }

    /// Takes repetition `rep` of `w` as its trial would: `Some(the workload that ran)`.
    fn take(s: &SpeedVolumes, pods: &mut [FakePod; 2], w: &str, rep: u32) -> Option<String> {
        let slot = slot_of(rep, s.repeat);
        let call = |w: &str, _: AgentTarget| AgentCall::new([w], Duration::from_secs(1));
        let (out, _) = s.from_batch("c", w, rep, slot, &mut pods[slot], &call)?;
        Some(out.map(|o| o.stdout).unwrap_or_else(|e| e.to_string()))
    }

    fn log(l: &Log) -> Vec<String> {
        l.lock().unwrap().clone()
    }

    #[test]
    fn one_repetition_runs_the_whole_matrix_in_one_batch_in_trial_order() {
        let s = speed(1, &["a", "b", "c"]);
        let (l, mut p) = pods(None);
        for w in ["a", "b", "c"] {
            assert_eq!(take(&s, &mut p, w, 0).as_deref(), Some(w));
        }
        assert_eq!(
            log(&l),
            [
                "start s0 a,b,c",
                "run s0 a",
                "run s0 b",
                "run s0 c",
                "stop s0"
            ]
        );
    }

    /// Repetitions on two volumes: the first volume's batch finishes every workload before the
    /// second volume's starts, so two volumes never measure at once.
    #[test]
    fn a_volumes_batch_is_drained_before_the_other_volumes_starts() {
        let s = speed(3, &["a", "b"]);
        let (l, mut p) = pods(None);
        for w in ["a", "b"] {
            for rep in 0..3 {
                assert_eq!(take(&s, &mut p, w, rep).as_deref(), Some(w));
            }
        }
        assert_eq!(
            log(&l),
            [
                "start s0 a,a,b,b",
                "run s0 a",
                "run s0 a",
                "run s0 b",
                "run s0 b",
                "stop s0",
                "start s1 a,b",
                "run s1 a",
                "run s1 b",
                "stop s1",
            ]
        );
    }

    /// The gate adds a repetition: the batch stops first, and the workloads it had not run yet
    /// go into a new batch when their trials come.
    #[test]
    fn a_repetition_the_gate_adds_stops_the_batch_and_the_rest_is_batched_again() {
        let s = speed(1, &["a", "b", "c"]);
        let (l, mut p) = pods(None);
        assert_eq!(take(&s, &mut p, "a", 0).as_deref(), Some("a"));
        s.stop_batch("c");
        assert_eq!(take(&s, &mut p, "b", 0).as_deref(), Some("b"));
        assert_eq!(take(&s, &mut p, "c", 0).as_deref(), Some("c"));
        assert_eq!(
            log(&l),
            [
                "start s0 a,b,c",
                "run s0 a",
                "stop s0",
                "start s0 b,c",
                "run s0 b",
                "run s0 c",
                "stop s0"
            ]
        );
    }

    /// A batch that breaks fails the workload it was running; the ones after it are not lost.
    #[test]
    fn a_broken_batch_fails_its_workload_and_the_rest_run_again() {
        let s = speed(1, &["a", "b", "c", "d"]);
        let (l, mut p) = pods(Some("b"));
        assert_eq!(take(&s, &mut p, "a", 0).as_deref(), Some("a"));
        let b = take(&s, &mut p, "b", 0).unwrap();
        assert!(b.contains("b broke the pod"), "{b}");
        assert_eq!(take(&s, &mut p, "c", 0).as_deref(), Some("c"));
        assert_eq!(take(&s, &mut p, "d", 0).as_deref(), Some("d"));
        assert_eq!(
            log(&l),
            [
                "start s0 a,b,c,d",
                "run s0 a",
                "run s0 b",
                "stop s0",
                "start s0 c,d",
                "run s0 c",
                "run s0 d",
                "stop s0"
            ]
        );
    }

    /// The last workload alone is no batch: it runs as any agent call.
    #[test]
    fn a_single_repetition_left_runs_on_its_own() {
        let s = speed(1, &["a"]);
        let (_, mut p) = pods(None);
        assert_eq!(take(&s, &mut p, "a", 0), None);
    }
}
