//! What describes a class's storage on Kubernetes, for the fingerprint (issue 19 item 6): the
//! StorageClass (provisioner, parameters, mount options, binding mode, reclaim policy,
//! expansion), the CSIDriver of its provisioner (spec, version labels), the images of the
//! driver's pods (node plugin and sidecars: the driver's version), and the bound PV as the
//! kubelet mounts it (filesystem, mount options, volume mode, capacity).
//!
//! Never a name that one run chose (claim, PV, pod, node names) nor a time: two runs of one
//! setup must fingerprint alike. What could not be read (an API error, a right not granted)
//! is recorded as such, so both sides of a comparison show it.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{PersistentVolume, Pod};
use k8s_openapi::api::storage::v1::{CSIDriver, StorageClass};
use kube::Api;
use kube::api::ListParams;
use serde_json::{Value, json};

/// Labels that carry a driver's version by convention (Helm charts, the recommended labels).
const VERSION_LABELS: &[&str] = &["app.kubernetes.io/version", "helm.sh/chart"];

fn unreadable(what: &str, e: &kube::Error) -> Value {
    let why = match e {
        kube::Error::Api(s) => format!("{} ({})", s.reason, s.code),
        other => super::client::one_line(&other.to_string()),
    };
    Value::String(format!("unknown: {what}: {why}"))
}

/// The StorageClass `name` and the driver behind it.
pub async fn storage(client: &kube::Client, name: &str) -> Value {
    let scs: Api<StorageClass> = Api::all(client.clone());
    let sc = match scs.get_opt(name).await {
        Ok(Some(sc)) => sc,
        Ok(None) => return json!({ "storage_class": "absent" }),
        Err(e) => return json!({ "storage_class": unreadable("reading the StorageClass", &e) }),
    };
    let driver = driver(client, &sc.provisioner).await;
    json!({
        "storage_class": {
            "provisioner": sc.provisioner,
            "parameters": sc.parameters,
            "mount_options": sc.mount_options,
            "reclaim_policy": sc.reclaim_policy.unwrap_or_else(|| "Delete".into()),
            "volume_binding_mode": sc.volume_binding_mode.unwrap_or_else(|| "Immediate".into()),
            "allow_volume_expansion": sc.allow_volume_expansion.unwrap_or(false),
        },
        "driver": driver,
    })
}

/// The CSIDriver `name` (absent for in-tree and external provisioners without one) and the
/// images of the pods that run it.
async fn driver(client: &kube::Client, name: &str) -> Value {
    let drivers: Api<CSIDriver> = Api::all(client.clone());
    let csidriver = match drivers.get_opt(name).await {
        Ok(Some(d)) => {
            let labels = d.metadata.labels.unwrap_or_default();
            let version: serde_json::Map<String, Value> = VERSION_LABELS
                .iter()
                .filter_map(|k| labels.get(*k).map(|v| (k.to_string(), v.clone().into())))
                .collect();
            json!({ "spec": d.spec, "version_labels": version })
        }
        Ok(None) => Value::String("absent".into()),
        Err(e) => unreadable("reading the CSIDriver", &e),
    };
    json!({ "name": name, "csidriver": csidriver, "images": images(client, name).await })
}

/// Whether pod `p` runs driver `name`: a container's command or arguments name it (the
/// plugin's `--drivername`, the registrar's `--kubelet-registration-path`), or a hostPath
/// volume is its plugin directory.
fn runs_driver(p: &Pod, name: &str) -> bool {
    let Some(spec) = &p.spec else { return false };
    let in_args = spec.containers.iter().any(|c| {
        c.command
            .iter()
            .chain(c.args.iter())
            .flatten()
            .any(|a| a.contains(name))
    });
    let in_paths = spec.volumes.iter().flatten().any(|v| {
        v.host_path
            .as_ref()
            .is_some_and(|h| h.path.contains(&format!("/plugins/{name}")))
    });
    in_args || in_paths
}

/// The images (and their digests as the nodes pulled them) of the running pods of driver
/// `name`, each once, sorted: how many replicas run, and where, is not part of the setup.
async fn images(client: &kube::Client, name: &str) -> Value {
    let pods: Api<Pod> = Api::all(client.clone());
    let lp = ListParams::default().fields("status.phase=Running");
    let list = match pods.list(&lp).await {
        Ok(l) => l.items,
        Err(e) => return unreadable("listing the driver's pods", &e),
    };
    let mut images = BTreeSet::new();
    for p in list.iter().filter(|p| runs_driver(p, name)) {
        for s in p
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .into_iter()
            .flatten()
        {
            images.insert(format!("{} {}", s.image, s.image_id));
        }
    }
    if images.is_empty() {
        return Value::String("unknown: no running pod names the driver".into());
    }
    images.into_iter().collect()
}

/// PV `name` as the kubelet mounts it.
pub async fn persistent_volume(client: &kube::Client, name: &str) -> Value {
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let pv = match pvs.get_opt(name).await {
        Ok(Some(pv)) => pv,
        Ok(None) => return Value::String("absent".into()),
        Err(e) => return unreadable("reading the PV", &e),
    };
    let Some(spec) = pv.spec else {
        return Value::Null;
    };
    let csi = spec.csi.as_ref();
    json!({
        "csi_driver": csi.map(|c| c.driver.clone()),
        "fs_type": csi.and_then(|c| c.fs_type.clone()),
        "mount_options": spec.mount_options,
        "volume_mode": spec.volume_mode,
        "capacity": spec.capacity.and_then(|c| c.get("storage").map(|q| q.0.clone())),
    })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Pod;
    use serde_json::json;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_driver_pod_is_known_by_its_arguments_or_plugin_directory() {
        let d = "hostpath.csi.example";
        let by_arg = pod(json!({ "spec": { "containers": [
            { "name": "d", "image": "x", "args": [format!("--drivername={d}")] }] } }));
        let by_path = pod(
            json!({ "spec": { "containers": [{ "name": "d", "image": "x" }],
            "volumes": [{ "name": "s", "hostPath": { "path": format!("/var/lib/kubelet/plugins/{d}") } }] } }),
        );
        let other = pod(json!({ "spec": { "containers": [
            { "name": "d", "image": "x", "args": ["--name=other.csi"] }] } }));
        assert!(super::runs_driver(&by_arg, d));
        assert!(super::runs_driver(&by_path, d));
        assert!(!super::runs_driver(&other, d));
    }
}
