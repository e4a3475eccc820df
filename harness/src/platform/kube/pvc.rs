//! The PersistentVolumeClaim of a volume: through the class's StorageClass, or bound to a PV
//! made from `pv_template`; waiting for Bound except under `WaitForFirstConsumer`, where the
//! first pod is what makes the provisioner act.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    ObjectReference, PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    TypedLocalObjectReference, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::{DeleteParams, PostParams};

use super::agent_pod::api_error;
use super::wait::{self, Decision};
use crate::config::kube::{KubeSpec, VolumeMode, format_quantity};
use crate::platform::PlatformError;

/// The claim's manifest.
pub fn claim(
    name: &str,
    namespace: &str,
    labels: BTreeMap<String, String>,
    spec: &KubeSpec,
    bytes: u64,
    data_source: Option<TypedLocalObjectReference>,
    volume_name: Option<(String, String)>,
) -> PersistentVolumeClaim {
    let storage_class = match &volume_name {
        Some((_, sc)) => Some(sc.clone()),
        None => spec.storage_class_name().map(str::to_string),
    };
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            labels: Some(labels),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(
                spec.access_modes
                    .iter()
                    .map(|m| m.as_str().to_string())
                    .collect(),
            ),
            storage_class_name: storage_class,
            volume_mode: Some(match spec.volume_mode {
                VolumeMode::Filesystem => "Filesystem".into(),
                VolumeMode::Block => "Block".into(),
            }),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    Quantity(format_quantity(bytes)),
                )])),
                ..Default::default()
            }),
            data_source,
            volume_name: volume_name.map(|(v, _)| v),
            ..Default::default()
        }),
        status: None,
    }
}

/// A PV from the class's template, bound ahead to the claim `namespace/claim`.
pub fn pv_from_template(
    yaml: &str,
    name: &str,
    namespace: &str,
    claim: &str,
    labels: BTreeMap<String, String>,
) -> Result<PersistentVolume, PlatformError> {
    let mut pv: PersistentVolume = serde_saphyr::from_str(yaml).map_err(|e| {
        PlatformError::Other(format!(
            "kube.pv_template: not a PersistentVolume: {}",
            super::client::one_line(&e.to_string())
        ))
    })?;
    pv.metadata.name = Some(name.to_string());
    let mut l = pv.metadata.labels.take().unwrap_or_default();
    l.extend(labels);
    pv.metadata.labels = Some(l);
    if let Some(s) = pv.spec.as_mut() {
        s.claim_ref = Some(ObjectReference {
            namespace: Some(namespace.to_string()),
            name: Some(claim.to_string()),
            ..Default::default()
        });
        // A pre-provisioned volume is pvcheck's to write, not to delete from the backend.
        if s.persistent_volume_reclaim_policy.is_none() {
            s.persistent_volume_reclaim_policy = Some("Retain".into());
        }
    }
    Ok(pv)
}

/// Waits until the claim is Bound; returns the PV's name.
pub async fn until_bound(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    limit: Duration,
) -> Result<String, PlatformError> {
    let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    let r = wait::until(
        api,
        name,
        &format!("PVC {namespace}/{name} to bind"),
        limit,
        |c: Option<&PersistentVolumeClaim>| {
            let Some(c) = c else { return Decision::Wait };
            let bound = c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
            match c.spec.as_ref().and_then(|s| s.volume_name.clone()) {
                Some(v) if bound => Decision::Done(v),
                _ => Decision::Wait,
            }
        },
    )
    .await;
    match r {
        Ok(v) => Ok(v),
        Err(e) => {
            let ev =
                super::events::about(client, namespace, "PersistentVolumeClaim", name, 4).await;
            let msg = format!(
                "PVC {namespace}/{name} was not bound: {e}{}",
                super::events::suffix(&ev)
            );
            Err(match e {
                // Not provisioned in time: the cluster could not give the harness a volume.
                wait::WaitError::Timeout { .. } => PlatformError::Infrastructure(format!(
                    "{msg} (timeouts.provision): no volume to check"
                )),
                _ => PlatformError::Other(msg),
            })
        }
    }
}

/// The claim as it is now.
pub async fn get(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<PersistentVolumeClaim, PlatformError> {
    let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    api.get(name)
        .await
        .map_err(|e| api_error(&format!("reading PVC {namespace}/{name}"), e))
}

pub async fn create(
    client: &kube::Client,
    pvc: &PersistentVolumeClaim,
) -> Result<(), PlatformError> {
    let ns = pvc.metadata.namespace.clone().unwrap_or_default();
    let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    api.create(&PostParams::default(), pvc)
        .await
        .map(|_| ())
        .map_err(|e| {
            api_error(
                &format!(
                    "creating PVC {ns}/{}",
                    pvc.metadata.name.clone().unwrap_or_default()
                ),
                e,
            )
        })
}

/// Deletes the claim and waits until it is gone; then, when its PV is deleted with it (reclaim
/// policy Delete), until the PV is gone too (leaked disks hid deletion bugs: kubernetes#74380).
pub async fn delete(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    pv: Option<&str>,
    limit: Duration,
) -> Result<(), PlatformError> {
    let asked = std::time::Instant::now();
    delete_and_wait(client, namespace, name, pv, limit).await?;
    crate::platform::timeline::since(crate::platform::timeline::Wait::ClaimDeleted, name, asked);
    Ok(())
}

async fn delete_and_wait(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    pv: Option<&str>,
    limit: Duration,
) -> Result<(), PlatformError> {
    let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => return Err(api_error(&format!("deleting PVC {namespace}/{name}"), e)),
    }
    wait::until(
        api,
        name,
        &format!("PVC {namespace}/{name} to be gone"),
        limit,
        |c: Option<&PersistentVolumeClaim>| {
            if c.is_none() {
                Decision::Done(())
            } else {
                Decision::Wait
            }
        },
    )
    .await
    .map_err(|e| PlatformError::Other(e.to_string()))?;
    let Some(pv) = pv else { return Ok(()) };
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let found = match pvs.get_opt(pv).await {
        Ok(Some(p)) => p,
        Ok(None) => return Ok(()),
        Err(e) => return Err(api_error(&format!("reading PV {pv}"), e)),
    };
    if !provisioned_for(&found, namespace, name) {
        // A PV that existed before the claim (a static PV an administrator made, which the
        // claim bound to) is not pvcheck's: it stays, Released, as the cluster's policy has it.
        return Ok(());
    }
    let policy = found
        .spec
        .and_then(|s| s.persistent_volume_reclaim_policy)
        .unwrap_or_default();
    if policy != "Delete" {
        // Retained: the provisioner made it for pvcheck's claim; the object goes (the
        // backend's data stays, as `Retain` asks).
        match pvs.delete(pv, &DeleteParams::default()).await {
            Ok(_) | Err(kube::Error::Api(_)) => {}
            Err(e) => return Err(api_error(&format!("deleting PV {pv}"), e)),
        }
    }
    wait::until(
        pvs,
        pv,
        &format!("PV {pv} to be deleted"),
        limit,
        |p: Option<&PersistentVolume>| match p {
            None => Decision::Done(()),
            Some(p) if p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed") => {
                Decision::Fail(format!(
                    "PV {pv} failed to delete: {}",
                    p.status
                        .as_ref()
                        .and_then(|s| s.message.clone())
                        .unwrap_or_default()
                ))
            }
            Some(_) => Decision::Wait,
        },
    )
    .await
    .map_err(|e| PlatformError::Other(format!("the driver did not delete the volume: {e}")))
}

/// Whether `pv` is pvcheck's to delete with the claim `namespace/name`: made by pvcheck from
/// the class's `pv_template` (it carries the run label), or provisioned dynamically for that
/// claim (the provisioner's annotation and a claim reference to it). A static PV an
/// administrator made, which the claim merely bound to, is neither.
fn provisioned_for(pv: &PersistentVolume, namespace: &str, name: &str) -> bool {
    let has = |m: &Option<BTreeMap<String, String>>, k: &str| {
        m.as_ref().is_some_and(|m| m.contains_key(k))
    };
    let templated = has(&pv.metadata.labels, super::labels::RUN);
    let dynamic = has(&pv.metadata.annotations, "pv.kubernetes.io/provisioned-by");
    let claim = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
    let bound_to_ours = claim.is_some_and(|c| {
        c.namespace.as_deref() == Some(namespace) && c.name.as_deref() == Some(name)
    });
    bound_to_ours && (templated || dynamic)
}

#[cfg(test)]
mod deletion_tests {
    use super::*;
    use k8s_openapi::api::core::v1::PersistentVolumeSpec;

    fn pv(
        labels: &[(&str, &str)],
        annotations: &[(&str, &str)],
        claim: (&str, &str),
    ) -> PersistentVolume {
        let map = |kv: &[(&str, &str)]| {
            (!kv.is_empty()).then(|| {
                kv.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            })
        };
        PersistentVolume {
            metadata: ObjectMeta {
                name: Some("pv-1".into()),
                labels: map(labels),
                annotations: map(annotations),
                ..Default::default()
            },
            spec: Some(PersistentVolumeSpec {
                claim_ref: Some(ObjectReference {
                    namespace: Some(claim.0.into()),
                    name: Some(claim.1.into()),
                    ..Default::default()
                }),
                persistent_volume_reclaim_policy: Some("Retain".into()),
                ..Default::default()
            }),
            status: None,
        }
    }

    #[test]
    fn a_static_pv_the_claim_bound_to_is_never_pvchecks_to_delete() {
        assert!(!provisioned_for(
            &pv(&[], &[], ("pvcheck-r1", "vol-a")),
            "pvcheck-r1",
            "vol-a"
        ));
    }

    #[test]
    fn a_pv_provisioned_for_the_claim_or_made_from_the_template_is() {
        let prov = [("pv.kubernetes.io/provisioned-by", "hostpath.csi.pvcheck.io")];
        assert!(provisioned_for(
            &pv(&[], &prov, ("pvcheck-r1", "vol-a")),
            "pvcheck-r1",
            "vol-a"
        ));
        let run = [(super::super::labels::RUN, "r1")];
        assert!(provisioned_for(
            &pv(&run, &[], ("pvcheck-r1", "vol-a")),
            "pvcheck-r1",
            "vol-a"
        ));
        // ... but only for that claim.
        assert!(!provisioned_for(
            &pv(&[], &prov, ("other", "vol-a")),
            "pvcheck-r1",
            "vol-a"
        ));
        assert!(!provisioned_for(
            &pv(&run, &[], ("pvcheck-r1", "vol-b")),
            "pvcheck-r1",
            "vol-a"
        ));
    }
}
