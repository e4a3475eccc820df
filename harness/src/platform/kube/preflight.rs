//! Before anything is created: every class's StorageClass (and snapshot class) must exist, or
//! the run stops with exit 2 naming the class, its file and line, and what the cluster has.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::Api;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams};

use super::client::{Connection, one_line};
use crate::config::ClassSpec;
use crate::platform::select::SelectError;

/// What the run learned about the cluster.
#[derive(Debug, Default)]
pub struct Facts {
    /// StorageClass → WaitForFirstConsumer.
    pub wffc: HashMap<String, bool>,
    /// StorageClass → its provisioner.
    pub provisioners: HashMap<String, String>,
    /// Ready, schedulable nodes.
    pub nodes: usize,
}

/// The VolumeSnapshotClass resource (snapshot.storage.k8s.io/v1).
pub fn snapshot_class_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        "snapshot.storage.k8s.io",
        "v1",
        "VolumeSnapshotClass",
    ))
}

fn api_err(what: &str, e: kube::Error) -> SelectError {
    match &e {
        kube::Error::Api(s) if s.code == 403 => SelectError::Infrastructure(format!(
            "{what}: forbidden by RBAC ({})",
            one_line(&s.message)
        )),
        _ => SelectError::Infrastructure(format!("{what}: {}", one_line(&e.to_string()))),
    }
}

pub fn check(conn: &Connection, classes: &[ClassSpec]) -> Result<Facts, SelectError> {
    conn.block_on(async {
        let scs: Api<StorageClass> = Api::all(conn.client.clone());
        let list = scs.list(&ListParams::default()).await.map_err(|e| api_err("listing StorageClasses", e))?;
        let mut facts = Facts::default();
        let names: Vec<String> = list.items.iter().filter_map(|s| s.metadata.name.clone()).collect();
        for sc in &list.items {
            facts.provisioners.insert(
                sc.metadata.name.clone().unwrap_or_default(),
                sc.provisioner.clone(),
            );
            facts.wffc.insert(
                sc.metadata.name.clone().unwrap_or_default(),
                sc.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer"),
            );
        }
        let mut snap_classes: Option<Vec<String>> = None;
        for c in classes {
            let Some(k) = &c.kube else { continue };
            if let Some(sc) = &k.storage_class
                && !names.contains(&sc.value)
            {
                return Err(SelectError::Usage(format!(
                    "{}:{}: class {}: kube.storage_class: StorageClass {:?} does not exist in the cluster (it has: {})",
                    c.file.display(),
                    sc.referenced.line(),
                    c.name(),
                    sc.value,
                    if names.is_empty() { "none".to_string() } else { names.join(", ") }
                )));
            }
            if c.capabilities.snapshot
                && let Some(vsc) = &k.snapshot_class
            {
                if snap_classes.is_none() {
                    let api: Api<DynamicObject> = Api::all_with(conn.client.clone(), &snapshot_class_resource());
                    snap_classes = Some(match api.list(&ListParams::default()).await {
                        Ok(l) => l.items.into_iter().filter_map(|o| o.metadata.name).collect(),
                        Err(kube::Error::Api(s)) if s.code == 404 => Vec::new(),
                        Err(e) => return Err(api_err("listing VolumeSnapshotClasses", e)),
                    });
                }
                let have = snap_classes.as_deref().unwrap_or_default();
                if !have.contains(vsc) {
                    return Err(SelectError::Usage(format!(
                        "{}:{}: class {}: kube.snapshot_class {vsc:?} does not exist in the cluster (it has: {})",
                        c.file.display(),
                        c.line(),
                        c.name(),
                        if have.is_empty() { "none".to_string() } else { have.join(", ") }
                    )));
                }
            }
        }
        let nodes: Api<Node> = Api::all(conn.client.clone());
        let nl = nodes.list(&ListParams::default()).await.map_err(|e| api_err("listing nodes", e))?;
        facts.nodes = nl.items.iter().filter(|n| schedulable(n)).count();
        Ok(facts)
    })
}

/// Ready and not cordoned.
pub fn schedulable(n: &Node) -> bool {
    let cordoned = n
        .spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false);
    let ready = n
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    ready && !cordoned
}

/// Node names, kernels, OS images and kubelet versions, for the fingerprint (which leaves the
/// names out).
pub async fn node_facts(client: &kube::Client) -> serde_json::Value {
    let nodes: Api<Node> = Api::all(client.clone());
    let Ok(nl) = nodes.list(&ListParams::default()).await else {
        return serde_json::Value::Null;
    };
    nl.items
        .iter()
        .map(|n| {
            let info = n.status.as_ref().and_then(|s| s.node_info.as_ref());
            serde_json::json!({
                "name": n.metadata.name,
                "kernel": info.map(|i| i.kernel_version.clone()),
                "os": info.map(|i| i.os_image.clone()),
                "architecture": info.map(|i| i.architecture.clone()),
                "kubelet": info.map(|i| i.kubelet_version.clone()),
                "runtime": info.map(|i| i.container_runtime_version.clone()),
                "schedulable": schedulable(n),
            })
        })
        .collect()
}
