//! `pvcheck classes`: what storage the cluster offers (StorageClasses with provisioner, binding
//! mode and expansion; CSIDrivers; VolumeSnapshotClasses), and a starter class file for it.

use k8s_openapi::api::storage::v1::{CSIDriver, StorageClass};
use kube::Api;
use kube::api::{DynamicObject, ListParams};

use super::KubeOptions;
use crate::exit_code;

/// Runs `pvcheck classes`; returns the exit code.
pub fn main(opts: &KubeOptions) -> u8 {
    let conn = match super::client::connect(opts, None) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("pvcheck: {e}");
            return e.exit_code();
        }
    };
    let listed = conn.block_on(async {
        let scs: Api<StorageClass> = Api::all(conn.client.clone());
        let scs = scs.list(&ListParams::default()).await?.items;
        let drivers: Api<CSIDriver> = Api::all(conn.client.clone());
        let drivers = drivers.list(&ListParams::default()).await?.items;
        let vscs: Api<DynamicObject> = Api::all_with(
            conn.client.clone(),
            &super::preflight::snapshot_class_resource(),
        );
        let vscs = match vscs.list(&ListParams::default()).await {
            Ok(l) => l.items,
            Err(kube::Error::Api(s)) if s.code == 404 => Vec::new(),
            Err(e) => return Err(e),
        };
        Ok::<_, kube::Error>((scs, drivers, vscs))
    });
    let (scs, drivers, vscs) = match listed {
        Ok(x) => x,
        Err(e) => {
            eprintln!(
                "pvcheck: classes: {}",
                super::client::one_line(&e.to_string())
            );
            return exit_code::INFRASTRUCTURE;
        }
    };
    println!(
        "# cluster {} ({})",
        conn.config.cluster_url, conn.server_version
    );
    println!("# StorageClasses:");
    for sc in &scs {
        println!(
            "#   {:<28} provisioner {:<28} binding {:<22} expansion {}{}",
            sc.metadata.name.clone().unwrap_or_default(),
            sc.provisioner,
            sc.volume_binding_mode
                .clone()
                .unwrap_or_else(|| "Immediate".into()),
            sc.allow_volume_expansion.unwrap_or(false),
            if is_default(sc) { "  (default)" } else { "" }
        );
    }
    println!("# CSIDrivers:");
    for d in &drivers {
        let s = d.spec.clone();
        println!(
            "#   {:<28} attachRequired {:<5} podInfoOnMount {:<5} fsGroupPolicy {} modes {}",
            d.metadata.name.clone().unwrap_or_default(),
            s.attach_required.unwrap_or(true),
            s.pod_info_on_mount.unwrap_or(false),
            s.fs_group_policy
                .clone()
                .unwrap_or_else(|| "ReadWriteOnceWithFSType".into()),
            s.volume_lifecycle_modes
                .clone()
                .unwrap_or_default()
                .join(",")
        );
    }
    println!("# VolumeSnapshotClasses:");
    for v in &vscs {
        println!(
            "#   {:<28} driver {:<28} deletionPolicy {}",
            v.metadata.name.clone().unwrap_or_default(),
            v.data.get("driver").and_then(|d| d.as_str()).unwrap_or(""),
            v.data
                .get("deletionPolicy")
                .and_then(|d| d.as_str())
                .unwrap_or("")
        );
    }
    println!("{}", starter(&scs, &vscs));
    exit_code::OK
}

fn is_default(sc: &StorageClass) -> bool {
    sc.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("storageclass.kubernetes.io/is-default-class"))
        .is_some_and(|v| v == "true")
}

/// A class file with one class per StorageClass; capabilities from what the cluster says
/// (expansion from allowVolumeExpansion, snapshot when a snapshot class has the same driver).
pub fn starter(scs: &[StorageClass], vscs: &[DynamicObject]) -> String {
    let mut out = String::from("classes:\n");
    for sc in scs {
        let name = sc.metadata.name.clone().unwrap_or_default();
        let class_name = super::labels::object_name(&name);
        let vsc = vscs.iter().find(|v| {
            v.data.get("driver").and_then(|d| d.as_str()) == Some(sc.provisioner.as_str())
        });
        let expansion = sc.allow_volume_expansion.unwrap_or(false);
        out.push_str(&format!("  - name: {class_name}\n    kube:\n      storage_class: {name}\n      access_modes: [ReadWriteOnce]\n      volume_mode: Filesystem\n      size: 1Gi\n"));
        if let Some(v) = vsc {
            out.push_str(&format!(
                "      snapshot_class: {}\n",
                v.metadata.name.clone().unwrap_or_default()
            ));
        }
        out.push_str(&format!(
            "    capabilities: {{ expansion: {expansion}, snapshot: {} }}\n    placement: {{ node_selector: {{}}, tolerations: [] }}\n    timeouts: {{ provision: 5m, attach: 5m, pod_start: 5m }}\n",
            vsc.is_some()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The starter file must load as it is printed: a user's first step must not be an error.
    #[test]
    fn the_starter_class_file_loads() {
        let sc = StorageClass {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some("csi-hostpath-sc".into()),
                ..Default::default()
            },
            provisioner: "hostpath.csi.k8s.io".into(),
            allow_volume_expansion: Some(true),
            ..Default::default()
        };
        let mut v = DynamicObject::new(
            "csi-hostpath-snapclass",
            &super::super::preflight::snapshot_class_resource(),
        );
        v.data = serde_json::json!({ "driver": "hostpath.csi.k8s.io", "deletionPolicy": "Delete" });
        let text = starter(&[sc], &[v]);
        let classes = crate::config::parse_str(
            &text,
            std::path::Path::new("starter.yaml"),
            std::path::Path::new("."),
        )
        .unwrap();
        assert_eq!(classes.len(), 1);
        let k = classes[0].kube.as_ref().unwrap();
        assert_eq!(k.snapshot_class.as_deref(), Some("csi-hostpath-snapclass"));
        assert!(classes[0].capabilities.expansion && classes[0].capabilities.snapshot);
    }
}
