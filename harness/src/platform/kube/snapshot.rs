//! `snapshot`: a VolumeSnapshot of the class's snapshot class (through the dynamic API: the
//! snapshot CRDs are not in k8s-openapi), waited for `readyToUse`, restored as a new PVC with
//! the snapshot as its dataSource.

use std::time::Instant;

use k8s_openapi::api::core::v1::TypedLocalObjectReference;
use kube::Api;
use kube::api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind, PostParams};

use super::context::VolumeCtx;
use super::volume::KubeVolume;
use super::wait::{self, Decision};
use super::{agent_pod, labels};
use crate::platform::PlatformError;

pub fn resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        "snapshot.storage.k8s.io",
        "v1",
        "VolumeSnapshot",
    ))
}

pub fn take_and_restore(vol: &mut KubeVolume, name: &str) -> Result<KubeVolume, PlatformError> {
    let spec = vol
        .class
        .kube
        .clone()
        .ok_or_else(|| PlatformError::Unsupported("no kube section".into()))?;
    let Some(vsc) = spec.snapshot_class.clone() else {
        return Err(PlatformError::Unsupported(format!(
            "class {} names no kube.snapshot_class",
            vol.class.name()
        )));
    };
    let ctx = vol.ctx.clone();
    let shared = ctx.shared.clone();
    let snap_name = labels::object_name(&format!("{}-{name}", ctx.pvc));
    let restored_name = labels::object_name(&format!("{}-{name}-restored", ctx.pvc));
    let l = labels::of(&shared.run_id, Some(&ctx.class), Some(&ctx.pvc), "snapshot");
    let start = Instant::now();
    shared
        .conn
        .block_on(async {
            let api: Api<DynamicObject> =
                Api::namespaced_with(ctx.client.clone(), &shared.namespace, &resource());
            let mut obj = DynamicObject::new(&snap_name, &resource()).within(&shared.namespace);
            obj.metadata.labels = Some(l.clone());
            obj.data = serde_json::json!({
                "spec": {
                    "volumeSnapshotClassName": vsc,
                    "source": { "persistentVolumeClaimName": ctx.pvc },
                }
            });
            api.create(&PostParams::default(), &obj)
                .await
                .map_err(|e| {
                    agent_pod::api_error(
                        &format!("creating VolumeSnapshot {}/{snap_name}", shared.namespace),
                        e,
                    )
                })?;
            wait::until(
                api,
                &snap_name,
                &format!(
                    "VolumeSnapshot {}/{snap_name} to be ready",
                    shared.namespace
                ),
                ctx.timeouts.provision,
                |o: Option<&DynamicObject>| {
                    let Some(o) = o else { return Decision::Wait };
                    let st = o.data.get("status");
                    if let Some(err) = st
                        .and_then(|s| s.get("error"))
                        .and_then(|e| e.get("message"))
                        .and_then(|m| m.as_str())
                    {
                        return Decision::Fail(format!("the snapshot failed: {err}"));
                    }
                    if st
                        .and_then(|s| s.get("readyToUse"))
                        .and_then(|r| r.as_bool())
                        == Some(true)
                    {
                        Decision::Done(())
                    } else {
                        Decision::Wait
                    }
                },
            )
            .await
            .map_err(|e| PlatformError::Other(e.to_string()))
        })
        .inspect_err(|_| {
            let _ = shared.conn.block_on(delete(&ctx, &snap_name));
        })?;
    let snapshot_seconds = start.elapsed().as_secs_f64();
    // The restored claim: same class, the snapshot as its data source.
    let timings = serde_json::Map::from_iter([(
        "snapshot_ready_seconds".to_string(),
        snapshot_seconds.into(),
    )]);
    vol.derived(
        restored_name,
        TypedLocalObjectReference {
            api_group: Some("snapshot.storage.k8s.io".into()),
            kind: "VolumeSnapshot".into(),
            name: snap_name.clone(),
        },
        Some(snap_name),
        timings,
    )
}

pub async fn delete(ctx: &VolumeCtx, name: &str) -> Result<(), PlatformError> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(ctx.client.clone(), &ctx.shared.namespace, &resource());
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
        Err(e) => {
            return Err(agent_pod::api_error(
                &format!("deleting VolumeSnapshot {name}"),
                e,
            ));
        }
    }
    wait::until(
        api,
        name,
        &format!("VolumeSnapshot {name} to be gone"),
        ctx.timeouts.provision,
        |o: Option<&DynamicObject>| {
            if o.is_none() {
                Decision::Done(())
            } else {
                Decision::Wait
            }
        },
    )
    .await
    .map_err(|e| PlatformError::Other(e.to_string()))
}
