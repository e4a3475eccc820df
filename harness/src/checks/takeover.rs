//! `integrity::upgrade`'s takeover: after each upgrade step the driver now installed must take
//! over what the driver before it made. The pod is recreated, so the new driver unpublishes and
//! unstages the volume made before the step and stages and publishes it again; after the first
//! step, with the upgraded driver, the calls that touch pre-upgrade objects follow (expand the
//! old volume, snapshot it, delete the snapshot taken before the upgrade and the volume restored
//! from it), each where the class's capabilities allow it, else skipped with the reason.
//!
//! A failure there is category `upgrade` (kept `data` for damage, `timeout` and
//! `infrastructure` as they are) and names the version, the step and the pre-upgrade object:
//! "after upgrade to 0.1.0+v2 (step upgrade): recreating the pod of volume V, created before
//! the upgrade: stopping the pod: … NodeUnpublishVolume answered NotFound …".
//!
//! Per step the trial's metrics get `upgrade_steps[]`: the step, how long it took, the driver's
//! version before and after, what the platform ran (`report`), the takeover (its calls, as the
//! platform saw them) and the pre-upgrade objects (done or skipped, with the reason). A step
//! after which the driver's version is what it was before warns: an upgrade that upgraded
//! nothing proves nothing.

use std::time::Instant;

use serde_json::{Value, json};

use super::{CheckCtx, Failure, StartPod, recreate_with};
use crate::platform::{PlatformError, Pod, UpgradeStep, Volume};
use crate::report::results::FailureCategory;

/// Where the check is: the last upgrade step and the driver it left.
#[derive(Debug, Clone)]
pub struct After {
    pub step: String,
    pub version: Option<String>,
}

impl After {
    /// `after upgrade to 0.1.0+v2 (step upgrade)`, `after rollback to 0.1.0 (step rollback)`.
    pub fn describe(&self) -> String {
        let what = if self.step == "rollback" {
            "rollback"
        } else {
            "upgrade"
        };
        match &self.version {
            Some(v) => format!("after {what} to {v} (step {})", self.step),
            None => format!("after {what} step {}", self.step),
        }
    }
}

/// `f`, which happened to `object` of volume `volume` made before the step, as an `upgrade`
/// failure naming the version and step (damage stays `data`; a timeout and the harness's own
/// trouble keep their category).
pub fn failure(after: &After, volume: &str, object: &str, f: Failure) -> Failure {
    let category = match f.category {
        FailureCategory::Data | FailureCategory::Timeout | FailureCategory::Infrastructure => {
            f.category
        }
        _ => FailureCategory::Upgrade,
    };
    Failure::new(format!(
        "{}: {object} volume {volume}, created before the upgrade: {}",
        after.describe(),
        f.message
    ))
    .category(category)
    .with_details(f.details)
}

/// A verify's failure after the step: damage as the verify said it (`data`, its first line
/// naming the damage), anything else as [`failure`] of `object`.
pub fn verify_failure(after: &After, volume: &str, object: &str, f: Failure) -> Failure {
    if f.category == FailureCategory::Data {
        f
    } else {
        failure(after, volume, object, f)
    }
}

/// The steps' records, written to the trial's metrics (`upgrade_steps`) as they grow.
#[derive(Default)]
pub struct Steps {
    records: Vec<Value>,
}

impl Steps {
    fn save(&self, ctx: &CheckCtx) {
        ctx.metric("upgrade_steps", Value::Array(self.records.clone()));
    }

    fn last(&mut self) -> Option<&mut serde_json::Map<String, Value>> {
        self.records.last_mut().and_then(Value::as_object_mut)
    }

    /// Runs `step` (the pod's agent stopped, the volume left as the platform upgrades it) and
    /// records it; warns when the driver's version did not change.
    pub fn upgrade(
        &mut self,
        ctx: &CheckCtx,
        vol: &mut dyn Volume,
        pod: Box<dyn Pod>,
        step: &UpgradeStep,
    ) -> Result<(Box<dyn Pod>, After), Failure> {
        let before = vol.driver_version();
        let start = Instant::now();
        let r = vol.upgrade(pod, step);
        ctx.noticed(vol);
        let after = vol.driver_version();
        let mut rec = json!({
            "step": step.name,
            "seconds": start.elapsed().as_secs_f64(),
            "driver_version_before": before,
            "driver_version_after": after,
            "report": vol.take_upgrade_report(),
        });
        if let Err(e) = &r {
            rec["error"] = e.to_string().into();
        }
        self.records.push(rec);
        self.save(ctx);
        let pod =
            r.map_err(|e| Failure::from(e).context(&format!("upgrade step {:?}", step.name)))?;
        if let (Some(b), Some(a)) = (&before, &after)
            && a == b
        {
            ctx.warn(format!(
                "upgrade step {:?}: the driver is {a} before and after: an upgrade that upgraded nothing proves nothing",
                step.name
            ));
        }
        Ok((
            pod,
            After {
                step: step.name.clone(),
                version: after,
            },
        ))
    }

    /// Recreates the pod so the driver installed now unpublishes, unstages, stages and publishes
    /// the volume made before the step; records the calls it made. `start_pod` starts the new
    /// pod (with its first work: [`crate::platform::Volume::start_pod_running`]).
    pub fn take_over(
        &mut self,
        ctx: &CheckCtx,
        vol: &mut dyn Volume,
        pod: Box<dyn Pod>,
        after: &After,
        start_pod: &mut StartPod<'_>,
    ) -> Result<Box<dyn Pod>, Failure> {
        let _ = vol.take_driver_calls(); // those before the takeover are not its evidence
        let start = Instant::now();
        let r = recreate_with(vol, pod, start_pod);
        ctx.noticed(vol);
        let calls = vol.take_driver_calls();
        let by = vol.driver_version();
        if let Some(rec) = self.last() {
            rec.insert(
                "takeover".into(),
                json!({
                    "driver_version": by,
                    "seconds": start.elapsed().as_secs_f64(),
                    "calls": calls,
                    "ok": r.is_ok(),
                }),
            );
        }
        self.save(ctx);
        r.map_err(|f| failure(after, vol.id(), "recreating the pod of", f))
    }

    /// With the upgraded driver, the calls that touch pre-upgrade objects: expand the volume,
    /// snapshot it (and delete that snapshot's restored volume), delete `old_snapshot` (taken
    /// before the upgrade, restored as a volume) with its volume. Each is skipped with the
    /// reason where the class's capabilities or the platform do not allow it.
    pub fn pre_upgrade_objects(
        &mut self,
        ctx: &CheckCtx,
        vol: &mut dyn Volume,
        old_snapshot: Result<Box<dyn Volume>, String>,
        after: &After,
    ) -> Result<(), Failure> {
        let mut done: Vec<String> = Vec::new();
        let mut skipped: Vec<String> = Vec::new();
        let id = vol.id().to_string();
        let mut result = Ok(());
        // Expand.
        if !ctx.class.capabilities.expansion {
            skipped.push("expand: capability `expansion` is off for this class".into());
        } else {
            // A directory-backed mount volume reports its host filesystem's size (statfs):
            // grow from what the check asked for then, not to 1.5 × the host's disk. A class's
            // own minimum size (`kube.size: 256Mi` for a 48 MiB request) is the volume's and
            // stays: shrinking below it is refused by the API server.
            let asked = super::integrity::size_for(ctx);
            let old = match vol.size() {
                s if s > asked.saturating_mul(64) => asked,
                s => s,
            };
            // 1.5 ×, as the `expand` check grows.
            let new = old + old / 2;
            let r = vol.expand(new);
            ctx.noticed(vol);
            match r {
                Ok(()) => done.push(format!("expand from {old} to {new} bytes")),
                Err(e) => {
                    result = result.and(self.unsupported_or(ctx, "expand", e, &mut skipped, |f| {
                        failure(
                            after,
                            &id,
                            &format!("expanding from {old} to {new} bytes"),
                            f,
                        )
                    }))
                }
            }
        }
        // Snapshot of the old volume, and the deletion of that snapshot.
        if result.is_ok() {
            if !ctx.class.capabilities.snapshot {
                skipped.push("snapshot: capability `snapshot` is off for this class".into());
            } else {
                let r = vol.snapshot("after-upgrade");
                ctx.noticed(vol);
                match r {
                    Ok(restored) => {
                        done.push("snapshot".into());
                        match restored.destroy() {
                            Ok(()) => {
                                done.push("delete the snapshot taken after the upgrade".into())
                            }
                            Err(e) => {
                                result = Err(failure(
                                    after,
                                    &id,
                                    "deleting the snapshot (taken after the upgrade) of",
                                    Failure::from(e),
                                ))
                            }
                        }
                    }
                    Err(e) => {
                        result =
                            result.and(self.unsupported_or(ctx, "snapshot", e, &mut skipped, |f| {
                                failure(after, &id, "snapshotting", f)
                            }))
                    }
                }
            }
        }
        // The snapshot taken before the upgrade: deleted by the upgraded driver. Dropped (and
        // so removed) on an earlier failure.
        match old_snapshot {
            Ok(old) if result.is_ok() => match old.destroy() {
                Ok(()) => done.push(
                    "delete the snapshot taken before the upgrade, and the volume restored from it"
                        .into(),
                ),
                Err(e) => {
                    result = Err(failure(
                        after,
                        &id,
                        "deleting the snapshot taken before the upgrade (and the volume restored from it) of",
                        Failure::from(e),
                    ))
                }
            },
            Ok(_) => {}
            Err(why) => skipped.push(format!("delete a snapshot taken before the upgrade: {why}")),
        }
        if let Some(rec) = self.last() {
            rec.insert(
                "pre_upgrade_objects".into(),
                json!({ "done": done, "skipped": skipped }),
            );
        }
        self.save(ctx);
        result
    }

    /// An `Unsupported` answer is a skip with its reason (and a warning: the class says it can);
    /// anything else fails through `fail`.
    fn unsupported_or(
        &self,
        ctx: &CheckCtx,
        what: &str,
        e: PlatformError,
        skipped: &mut Vec<String>,
        fail: impl FnOnce(Failure) -> Failure,
    ) -> Result<(), Failure> {
        match e {
            PlatformError::Unsupported(why) => {
                ctx.warn(format!(
                    "integrity::upgrade: {what} of the pre-upgrade volume skipped: {why}"
                ));
                skipped.push(format!("{what}: {why}"));
                Ok(())
            }
            e => Err(fail(Failure::from(e))),
        }
    }
}

/// Before the first step: a snapshot of the volume, restored as a volume, for the upgraded
/// driver to delete. `Err(reason)` when the class or the platform cannot take one.
pub fn snapshot_before(
    ctx: &CheckCtx,
    vol: &mut dyn Volume,
) -> Result<Result<Box<dyn Volume>, String>, Failure> {
    if !ctx.class.capabilities.snapshot {
        return Ok(Err("capability `snapshot` is off for this class".into()));
    }
    let r = vol.snapshot("pre-upgrade");
    ctx.noticed(vol);
    match r {
        Ok(v) => Ok(Ok(v)),
        Err(PlatformError::Unsupported(why)) => {
            ctx.warn(format!(
                "integrity::upgrade: no snapshot before the upgrade: {why}"
            ));
            Ok(Err(why))
        }
        Err(e) => Err(Failure::from(e).context("snapshot before the upgrade")),
    }
}
