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
    println!("{}", starter(&scs, &drivers, &vscs));
    exit_code::OK
}

fn is_default(sc: &StorageClass) -> bool {
    sc.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("storageclass.kubernetes.io/is-default-class"))
        .is_some_and(|v| v == "true")
}

/// One capability of a starter class: its value and why (what the cluster showed, or
/// "unknown, verify" where the API does not say).
struct Derived {
    name: &'static str,
    on: bool,
    why: String,
}

/// The capabilities of a StorageClass as far as the cluster shows them: `expansion` from
/// allowVolumeExpansion, `snapshot` from a VolumeSnapshotClass of its driver, `clone` from
/// whether its provisioner is a CSI driver (cloning is CSI's; whether the driver has the
/// CLONE_VOLUME capability the API does not show: on, "unknown, verify", so the first run's
/// `clone` trial answers it). `block` and `rwx` are the node plugin's and the backend's: off,
/// "unknown, verify".
fn derive(sc: &StorageClass, drivers: &[CSIDriver], vsc: Option<&DynamicObject>) -> Vec<Derived> {
    let expansion = sc.allow_volume_expansion.unwrap_or(false);
    let csi = drivers
        .iter()
        .find(|d| d.metadata.name.as_deref() == Some(sc.provisioner.as_str()));
    vec![
        Derived {
            name: "expansion",
            on: expansion,
            why: format!("StorageClass allowVolumeExpansion: {expansion}"),
        },
        Derived {
            name: "snapshot",
            on: vsc.is_some(),
            why: match vsc {
                Some(v) => format!(
                    "VolumeSnapshotClass {} has driver {}",
                    v.metadata.name.clone().unwrap_or_default(),
                    sc.provisioner
                ),
                None => format!("no VolumeSnapshotClass has driver {}", sc.provisioner),
            },
        },
        match csi {
            Some(_) => Derived {
                name: "clone",
                on: true,
                why: format!(
                    "unknown, verify: {} is a CSI driver (CSIDriver object), whose cloning (CLONE_VOLUME) the API does not show; the clone trial tests it, set false if it fails as unsupported",
                    sc.provisioner
                ),
            },
            None => Derived {
                name: "clone",
                on: false,
                why: format!(
                    "provisioner {} has no CSIDriver object: cloning needs a CSI driver",
                    sc.provisioner
                ),
            },
        },
        Derived {
            name: "block",
            on: false,
            why: "unknown, verify: raw block volumes are the node plugin's, which the API does not show".into(),
        },
        Derived {
            name: "rwx",
            on: false,
            why: "unknown, verify: ReadWriteMany is the backend's, which the API does not show".into(),
        },
    ]
}

/// A class file with one class per StorageClass; each capability with what the cluster shows
/// about it, or "unknown, verify" ([`derive`]).
pub fn starter(scs: &[StorageClass], drivers: &[CSIDriver], vscs: &[DynamicObject]) -> String {
    let mut out = String::from("classes:\n");
    for sc in scs {
        let name = sc.metadata.name.clone().unwrap_or_default();
        let class_name = super::labels::object_name(&name);
        let vsc = vscs.iter().find(|v| {
            v.data.get("driver").and_then(|d| d.as_str()) == Some(sc.provisioner.as_str())
        });
        out.push_str(&format!("  - name: {class_name}\n    kube:\n      storage_class: {name}\n      access_modes: [ReadWriteOnce]\n      volume_mode: Filesystem\n      size: 1Gi\n"));
        if let Some(v) = vsc {
            out.push_str(&format!(
                "      snapshot_class: {}\n",
                v.metadata.name.clone().unwrap_or_default()
            ));
        }
        out.push_str("    capabilities:\n");
        for d in derive(sc, drivers, vsc) {
            out.push_str(&format!(
                "      {:<10} {:<6} # {}\n",
                format!("{}:", d.name),
                d.on,
                d.why
            ));
        }
        out.push_str("    placement: { node_selector: {}, tolerations: [] }\n    timeouts: { provision: 5m, attach: 5m, pod_start: 5m }\n");
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
        let text = starter(&[sc], &[], &[v]);
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

    /// Issue 23, item 17: the starter file left `clone` off for a CSI driver that clones. What
    /// the cluster shows is derived; what it does not is marked "unknown, verify".
    #[test]
    fn the_starter_derives_clone_from_the_csi_driver_and_marks_the_rest_unknown_verify() {
        let meta = |n: &str| k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some(n.into()),
            ..Default::default()
        };
        let csi_sc = StorageClass {
            metadata: meta("csi-hostpath-sc"),
            provisioner: "hostpath.csi.k8s.io".into(),
            ..Default::default()
        };
        let intree = StorageClass {
            metadata: meta("standard"),
            provisioner: "rancher.io/local-path".into(),
            allow_volume_expansion: Some(false),
            ..Default::default()
        };
        let driver = CSIDriver {
            metadata: meta("hostpath.csi.k8s.io"),
            ..Default::default()
        };
        let text = starter(&[csi_sc, intree], &[driver], &[]);
        let classes = crate::config::parse_str(
            &text,
            std::path::Path::new("starter.yaml"),
            std::path::Path::new("."),
        )
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(classes.len(), 2);
        assert!(classes[0].capabilities.clone, "{text}");
        assert!(!classes[1].capabilities.clone, "{text}");
        let first: Vec<&str> = text
            .lines()
            .take_while(|l| !l.contains("standard"))
            .collect();
        let line = |cap: &str| {
            *first
                .iter()
                .find(|l| l.trim_start().starts_with(&format!("{cap}:")))
                .unwrap()
        };
        assert!(line("clone").contains("unknown, verify"), "{text}");
        assert!(line("block").contains("unknown, verify"), "{text}");
        assert!(line("rwx").contains("unknown, verify"), "{text}");
        assert!(
            line("expansion").contains("allowVolumeExpansion: false"),
            "{text}"
        );
        assert!(
            line("snapshot").contains("no VolumeSnapshotClass has driver hostpath.csi.k8s.io"),
            "{text}"
        );
        assert!(
            text.contains("provisioner rancher.io/local-path has no CSIDriver object"),
            "{text}"
        );
    }
}
