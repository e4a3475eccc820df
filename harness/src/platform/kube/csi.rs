//! What the API says of CSI on a volume and a node: the CSI driver (and handle) of a PV, and the drivers
//! a node's CSINode lists (those the node's kubelet registered). Read by the kubelet checks,
//! the node plugin's replacement and a pod deletion that did not finish.

use k8s_openapi::api::core::v1::PersistentVolume;
use k8s_openapi::api::storage::v1::CSINode;
use kube::Api;

use super::agent_pod::api_error;
use crate::platform::PlatformError;

/// The CSI driver of PV `pv`; `None` where it is not a CSI volume.
pub async fn driver_of_pv(
    client: &kube::Client,
    pv: &str,
) -> Result<Option<String>, PlatformError> {
    Ok(source_of_pv(client, pv).await?.map(|(driver, _)| driver))
}

/// The CSI driver and volume handle of PV `pv`; `None` where it is not a CSI volume.
pub async fn source_of_pv(
    client: &kube::Client,
    pv: &str,
) -> Result<Option<(String, String)>, PlatformError> {
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    Ok(pvs
        .get(pv)
        .await
        .map_err(|e| api_error(&format!("reading PV {pv}"), e))?
        .spec
        .and_then(|s| s.csi)
        .map(|c| (c.driver, c.volume_handle)))
}

/// Whether CSINode `c` lists `driver` (no CSINode lists nothing).
pub fn lists(c: Option<&CSINode>, driver: &str) -> bool {
    c.is_some_and(|c| c.spec.drivers.iter().any(|d| d.name == driver))
}

/// The drivers node `node`'s CSINode lists (none without a CSINode).
pub async fn node_drivers(client: &kube::Client, node: &str) -> Result<Vec<String>, PlatformError> {
    let csinodes: Api<CSINode> = Api::all(client.clone());
    Ok(csinodes
        .get_opt(node)
        .await
        .map_err(|e| api_error(&format!("reading CSINode {node}"), e))?
        .map(|c| c.spec.drivers.into_iter().map(|d| d.name).collect())
        .unwrap_or_default())
}
