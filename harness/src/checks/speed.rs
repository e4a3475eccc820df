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

use std::collections::HashMap;
use std::sync::Mutex;

use serde_json::Value;

use super::{CheckCtx, Failure, Verdict, agent_json};
use crate::platform::{AgentCall, Pod, Volume, VolumeRequest};
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
        let (volume, out) = repetition(ctx, workload, slot);
        if let Some(v) = out
            .as_ref()
            .ok()
            .or(out.as_ref().err().and_then(|(v, _)| v.as_ref()))
        {
            if i == 0 {
                // Kept whole, histograms included, so runs can be merged and compared later.
                ctx.metric("bench", v.clone());
            }
            reps.push(serde_json::json!({
                "volume": volume,
                "seconds": started.elapsed().as_secs_f64(),
                "bench": v,
            }));
        }
        if let Err((_, f)) = out {
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

/// One repetition on the class's volume in `slot`: (the volume's fingerprint, the bench JSON
/// or the failure with whatever JSON the agent printed).
#[allow(clippy::type_complexity)]
fn repetition(
    ctx: &CheckCtx,
    workload: &str,
    slot: usize,
) -> (Option<Value>, Result<Value, (Option<Value>, Failure)>) {
    let mut guard = ctx.speed.by_class.lock().unwrap_or_else(|e| e.into_inner());
    let key = (ctx.class.name().to_string(), slot);
    if !guard.contains_key(&key) {
        let req = VolumeRequest {
            run_id: ctx.run_id.clone(),
            name: if slot == 0 {
                format!("{}-speed", ctx.class.name())
            } else {
                format!("{}-speed-{}", ctx.class.name(), slot + 1)
            },
            size: ctx.speed_volume_bytes(),
        };
        let mut vol = match ctx.platform.provision(&ctx.class, &req) {
            Ok(v) => v,
            Err(e) => return (None, Err((None, Failure::from(e).context("provision")))),
        };
        ctx.noticed(vol.as_mut());
        let pod = match vol.start_pod() {
            Ok(p) => p,
            Err(e) => {
                let _ = vol.destroy();
                return (
                    None,
                    Err((None, Failure::from(e).context("starting the pod"))),
                );
            }
        };
        ctx.noticed(vol.as_mut());
        guard.insert(key.clone(), (vol, pod));
    }
    let Some((vol, pod)) = guard.get_mut(&key) else {
        return (None, Err((None, Failure::new("speed volume vanished"))));
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
    let mut json = None;
    let out = match run_bench(ctx, workload, vol.as_ref(), pod.as_mut(), &mut json) {
        Ok(()) => match json {
            Some(v) => Ok(v),
            None => Err((None, Failure::new("the agent printed no result"))),
        },
        Err(f) => Err((json, f)),
    };
    (Some(fingerprint), out)
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

/// Runs the agent's bench once; `json` receives its result whenever it printed one.
fn run_bench(
    ctx: &CheckCtx,
    workload: &str,
    vol: &dyn Volume,
    pod: &mut dyn Pod,
    json: &mut Option<Value>,
) -> Result<(), Failure> {
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
    let mut args = vec![
        "bench".to_string(),
        "--workload".into(),
        workload.into(),
        "--profile".into(),
        ctx.profile.name().into(),
    ];
    let target = pod.target();
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
    let call = AgentCall::new(args, ctx.agent_timeout());
    let out = agent_json::run(ctx, pod, &call, workload)?;
    let result = agent_json::parse(&out, workload);
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
            agent_json::category(&out)
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
