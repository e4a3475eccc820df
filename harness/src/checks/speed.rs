//! `speed::<workload>`: the agent's standard matrix, one job at a time, on one volume per class.
//!
//! The speed trials of a class share one volume ([`SpeedVolumes`]), provisioned by the first and
//! destroyed after the last (the scheduler knows how many run), so the matrix measures the
//! volume, not provisioning. The scheduler also guarantees no other trial runs meanwhile.

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

/// The shared speed volumes of a run, per class.
#[derive(Default)]
pub struct SpeedVolumes {
    by_class: Mutex<HashMap<String, Shared>>,
}

impl SpeedVolumes {
    /// Stops and destroys the class's speed volume (after its last speed trial).
    pub fn release(&self, class: &str) -> Result<(), Failure> {
        let taken = self
            .by_class
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(class);
        if let Some((mut vol, pod)) = taken {
            let stopped = vol.stop_pod(pod);
            let destroyed = vol.destroy();
            stopped?;
            destroyed?;
        }
        Ok(())
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

pub fn check(ctx: &CheckCtx, workload: &str) -> Result<Verdict, Failure> {
    let mut guard = ctx.speed.by_class.lock().unwrap_or_else(|e| e.into_inner());
    if !guard.contains_key(ctx.class.name()) {
        let req = VolumeRequest {
            run_id: ctx.run_id.clone(),
            name: format!("{}-speed", ctx.class.name()),
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
                ctx.noticed(vol.as_mut());
                let _ = vol.destroy();
                return Err(Failure::from(e).context("starting the pod"));
            }
        };
        ctx.noticed(vol.as_mut());
        guard.insert(ctx.class.name().to_string(), (vol, pod));
    }
    let Some((vol, pod)) = guard.get_mut(ctx.class.name()) else {
        return Err(Failure::new("speed volume vanished"));
    };
    let fp = vol.fingerprint();
    if fp.get("direct_io") == Some(&Value::Bool(false)) {
        // O_DIRECT on the volume ends in the loop device, which then goes through the host's
        // page cache: the figures may be the host's memory, not the storage.
        ctx.warn(
            "the loop device could not use direct I/O on its image (the backing filesystem refused it): \
             O_DIRECT reads may be served from the host's page cache",
        );
    }
    ctx.data.lock().unwrap_or_else(|e| e.into_inner()).volume = Some(fp);
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
        "--dir".into(),
        pod.data_dir().display().to_string(),
    ];
    if shares_prefill(ctx.profile, workload) {
        args.push("--reuse".into());
        if let Some(size) = ctx.speed_size {
            args.push("--size".into());
            args.push(format_size(size));
        }
    }
    let call = AgentCall::new(args, ctx.agent_timeout());
    let out = agent_json::run(ctx, pod.as_mut(), &call, workload)?;
    let result = agent_json::parse(&out, workload);
    if let Ok(v) = &result {
        // Kept whole, histograms included, so runs can be merged and compared later.
        ctx.metric("bench", v.clone());
        // What the agent says about its own figures (a data set that caches can hold, too few
        // samples, a busy CPU) is a warning of the trial, shown with the figures.
        for w in v
            .get("warnings")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
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
    Ok(Verdict::Passed)
}
