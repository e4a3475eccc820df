//! Detach: after a pod is gone, its volume's VolumeAttachment must go before the next pod
//! starts, so recreating a pod crosses a real detach and attach (as Dell's cert-csi does).
//! Drivers that do not attach have no VolumeAttachment: nothing to wait for.

use std::time::Duration;

use k8s_openapi::api::storage::v1::VolumeAttachment;
use kube::Api;
use kube::api::ListParams;

use super::agent_pod::api_error;
use super::wait::{self, Decision};
use crate::platform::PlatformError;

/// The VolumeAttachments of PV `pv` (on `node`, when given).
pub async fn of_pv(
    client: &kube::Client,
    pv: &str,
    node: Option<&str>,
) -> Result<Vec<VolumeAttachment>, PlatformError> {
    let api: Api<VolumeAttachment> = Api::all(client.clone());
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(|e| api_error("listing VolumeAttachments", e))?;
    Ok(list
        .items
        .into_iter()
        .filter(|va| va.spec.source.persistent_volume_name.as_deref() == Some(pv))
        .filter(|va| node.is_none_or(|n| va.spec.node_name == n))
        .collect())
}

/// Waits until every VolumeAttachment of `pv` on `node` is gone; returns how many there were.
pub async fn until_detached(
    client: &kube::Client,
    pv: &str,
    node: Option<&str>,
    limit: Duration,
) -> Result<usize, PlatformError> {
    let vas = of_pv(client, pv, node).await?;
    let api: Api<VolumeAttachment> = Api::all(client.clone());
    for va in &vas {
        let name = va.metadata.name.clone().unwrap_or_default();
        wait::until(
            api.clone(),
            &name,
            &format!("VolumeAttachment {name} of PV {pv} to be gone (detach)"),
            limit,
            |v: Option<&VolumeAttachment>| {
                match v {
                    None => Decision::Done(()),
                    Some(v) => match v.status.as_ref().and_then(|s| s.detach_error.as_ref()) {
                        // A detach error may clear on retry: keep waiting, but it is in the timeout's message.
                        Some(_) | None => Decision::Wait,
                    },
                }
            },
        )
        .await
        .map_err(|e| match e {
            wait::WaitError::Timeout { what, .. } => PlatformError::Timeout {
                command: what,
                limit,
            },
            e => PlatformError::Other(e.to_string()),
        })?;
    }
    Ok(vas.len())
}
