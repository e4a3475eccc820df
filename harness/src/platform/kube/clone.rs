//! Clones: a new PVC of the same class whose `dataSource` is the volume's PVC (CSI
//! CreateVolume from a volume, the driver's CLONE_VOLUME). The clone is a volume of its own,
//! removed with its own claim; a `WaitForFirstConsumer` clone is provisioned at its first pod.

use k8s_openapi::api::core::v1::TypedLocalObjectReference;

use super::labels;
use super::volume::KubeVolume;
use crate::platform::PlatformError;

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
    let clone_name = labels::object_name(&format!("{}-{name}", vol.ctx.pvc));
    vol.derived(
        clone_name,
        TypedLocalObjectReference {
            api_group: None,
            kind: "PersistentVolumeClaim".into(),
            name: vol.ctx.pvc.clone(),
        },
        None,
        Default::default(),
    )
}
