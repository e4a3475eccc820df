//! Clones: a new PVC of the same class whose `dataSource` is the volume's PVC (CSI
//! CreateVolume from a volume, the driver's CLONE_VOLUME). The clone is a volume of its own,
//! removed with its own claim; a `WaitForFirstConsumer` clone is provisioned at its first pod.

use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::core::v1::TypedLocalObjectReference;

use super::volume::KubeVolume;
use super::{VolumeCtx, labels, pvc};
use crate::platform::{PlatformError, Volume};

/// Creates the clone `<pvc>-<name>` of `vol` (its current content) and waits for Bound unless
/// the class binds at the first consumer.
pub fn clone_of(vol: &mut KubeVolume, name: &str) -> Result<KubeVolume, PlatformError> {
    let spec = vol
        .class
        .kube
        .clone()
        .ok_or_else(|| PlatformError::Unsupported("no kube section".into()))?;
    if spec.pv_template_yaml.is_some() {
        return Err(PlatformError::Unsupported(format!(
            "class {}: a PV made from kube.pv_template cannot be cloned (clones come from a StorageClass's provisioner)",
            vol.class.name()
        )));
    }
    let ctx = vol.ctx.clone();
    let shared = ctx.shared.clone();
    let clone_name = labels::object_name(&format!("{}-{name}", ctx.pvc));
    let client = shared
        .conn
        .client_for(&clone_name)
        .map_err(|e| PlatformError::Other(format!("API client: {e}")))?;
    let cctx = Arc::new(VolumeCtx {
        shared: shared.clone(),
        client,
        class: ctx.class.clone(),
        pvc: clone_name.clone(),
        volume_mode: ctx.volume_mode,
        placement: ctx.placement.clone(),
        timeouts: ctx.timeouts,
        seq: Default::default(),
    });
    shared
        .created
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((ctx.class.clone(), clone_name.clone()));
    let claim = pvc::claim(
        &clone_name,
        &shared.namespace,
        labels::of(
            &shared.run_id,
            Some(&ctx.class),
            Some(&clone_name),
            "volume",
        ),
        &spec,
        vol.size(),
        Some(TypedLocalObjectReference {
            api_group: None,
            kind: "PersistentVolumeClaim".into(),
            name: ctx.pvc.clone(),
        }),
        None,
    );
    // Made before the claim is created: if anything below fails, dropping it deletes the claim.
    let mut clone = KubeVolume::new_restored(vol, cctx.clone(), vol.size(), None);
    let start = Instant::now();
    shared.conn.block_on(pvc::create(&cctx.client, &claim))?;
    clone.finish_provisioning(start)?;
    Ok(clone)
}
