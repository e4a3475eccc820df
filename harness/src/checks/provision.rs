//! `provision`: time until a new volume is usable, and usable capacity ≥ what was requested.

use std::time::Instant;

use super::{CheckCtx, Failure, Verdict};
use crate::platform::VolumeRequest;

/// What `provision` requests: enough for the largest check of the profile.
pub fn requested(ctx: &CheckCtx) -> u64 {
    ctx.profile.dataset_bytes().max(ctx.speed_volume_bytes())
}

pub fn check(ctx: &CheckCtx) -> Result<Verdict, Failure> {
    let size = requested(ctx);
    let req = VolumeRequest {
        run_id: ctx.run_id.clone(),
        name: format!("{}-provision", ctx.class.name()),
        size,
    };
    let start = Instant::now();
    let mut vol = ctx
        .platform
        .provision(&ctx.class, &req)
        .map_err(|e| Failure::from(e).context("provision"))?;
    let created = start.elapsed();
    ctx.data.lock().unwrap_or_else(|e| e.into_inner()).volume = Some(vol.fingerprint());
    ctx.noticed(vol.as_mut());
    let result = (|| {
        let pod = vol.start_pod();
        ctx.noticed(vol.as_mut());
        let pod = pod?;
        let usable = start.elapsed();
        let cap = pod.capacity()?;
        ctx.metric("create_seconds", created.as_secs_f64().into());
        ctx.metric("usable_seconds", usable.as_secs_f64().into());
        ctx.metric("requested_bytes", size.into());
        ctx.metric("total_bytes", cap.total_bytes.into());
        ctx.metric("available_bytes", cap.available_bytes.into());
        // The fingerprint after mounting carries the effective mount options.
        ctx.data.lock().unwrap_or_else(|e| e.into_inner()).volume = Some(vol.fingerprint());
        vol.stop_pod(pod)?;
        let limit = ctx.class.timeouts.provision.0;
        if usable > limit {
            return Err(Failure::timeout(format!(
                "volume {} took {:.1}s to become usable, more than timeouts.provision ({:.0}s)",
                vol.id(),
                usable.as_secs_f64(),
                limit.as_secs_f64()
            )));
        }
        if cap.available_bytes < size {
            return Err(Failure::setup(format!(
                "volume {}: {} bytes usable, {} requested (profile {}): make the class larger",
                vol.id(),
                cap.available_bytes,
                size,
                ctx.profile.name()
            )));
        }
        Ok(Verdict::Passed)
    })();
    ctx.finish_volume(vol, result)
}
