//! Like with like: what must be equal on both sides of a comparison (issue 12), and every
//! difference, listed.
//!
//! Compared: platform, kernel, profile and agent version; on Kubernetes the nodes' kernels, OS
//! images, architectures, kubelet and runtime versions (each distinct combination once, without
//! the node names); per class its parameters (the `local:` section: kind, filesystem, mkfs and
//! mount options, sizes, driver; the `kube:` section: StorageClass, access and volume modes,
//! size, snapshot class) and its volume as measured (local: filesystem, effective mount options,
//! mkfs version, size, flexVolume driver identities; Kubernetes: the StorageClass with its
//! provisioner, parameters and mount options, the CSIDriver and the images of the driver's pods,
//! the bound PV's filesystem, mount options, mode and capacity); per speed workload the job
//! (block size, queue depth, size, run time), the engine and whether O_DIRECT was in effect.
//! Left out: what names one run or differs by nature between two runs of one setup (run,
//! volume, claim, PV and node names, paths of images and directories, the host name, timings,
//! time limits, the class file's path and a PV template's path).

use std::collections::BTreeMap;

use serde_json::Value;

use super::rundoc::RunDoc;

/// Volume fields that name this particular volume, not the setup.
const VOLATILE: &[&str] = &[
    "volume_id",
    "dir",
    "image",
    "requested_bytes",
    "from_snapshot",
    "expansion",
    "installed",
    "device",
    "path",
    // Kubernetes: the claim (`namespace/pvc`), its PV, the node it ran on, its latencies.
    "id",
    "pv",
    "node",
    "timings",
    "pv_template",
];

/// One field that differs; `None` where a side lacks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    pub key: String,
    pub base: Option<String>,
    pub new: Option<String>,
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "(absent)".into());
        write!(
            f,
            "{}: {} → {}",
            self.key,
            show(&self.base),
            show(&self.new)
        )
    }
}

/// Flattens `v` under `prefix`, leaving out [`VOLATILE`] keys; inside a Kubernetes volume's
/// `setup` (StorageClass parameters, driver facts: what a user or driver names) every key counts.
fn flatten(prefix: &str, v: &Value, out: &mut BTreeMap<String, String>) {
    flatten_with(prefix, v, out, VOLATILE)
}

fn flatten_with(prefix: &str, v: &Value, out: &mut BTreeMap<String, String>, skip: &[&str]) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if skip.contains(&k.as_str()) {
                    continue;
                }
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                let skip = if k == "setup" { &[][..] } else { skip };
                flatten_with(&key, x, out, skip);
            }
        }
        Value::Null => {}
        other => {
            let text = match other {
                Value::String(s) => s.clone(),
                x => x.to_string(),
            };
            out.insert(prefix.to_string(), text);
        }
    }
}

/// The fingerprint of `doc` restricted to `classes` and `workloads` per class, flattened to
/// `key → value`.
pub fn fingerprint(doc: &RunDoc, classes: &[(String, Vec<String>)]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let env = &doc.environment;
    for (key, v) in [
        ("platform", Value::String(doc.platform.clone())),
        ("profile", Value::String(doc.profile.clone())),
        ("kernel", env.get("kernel").cloned().unwrap_or(Value::Null)),
        (
            "agent_version",
            env.get("agent_version").cloned().unwrap_or(Value::Null),
        ),
    ] {
        flatten(key, &v, &mut out);
    }
    // Kubernetes: the nodes as a set of distinct setups, names left out.
    if let Some(nodes) = env.get("nodes").and_then(Value::as_array) {
        let mut kinds: Vec<String> = nodes
            .iter()
            .filter(|n| n.get("schedulable") != Some(&Value::Bool(false)))
            .map(|n| {
                ["kernel", "os", "architecture", "kubelet", "runtime"]
                    .iter()
                    .map(|k| match n.get(*k) {
                        Some(Value::String(s)) => s.clone(),
                        _ => "?".into(),
                    })
                    .collect::<Vec<_>>()
                    .join(" | ")
            })
            .collect();
        kinds.sort();
        kinds.dedup();
        out.insert("nodes".into(), kinds.join("; "));
    }
    for (class, workloads) in classes {
        let c = env.get("classes").and_then(|c| c.get(class));
        if let Some(local) = c
            .and_then(|c| c.get("parameters"))
            .and_then(|p| p.get("local"))
        {
            flatten(&format!("{class}: class.local"), local, &mut out);
        }
        if let Some(kube) = c
            .and_then(|c| c.get("parameters"))
            .and_then(|p| p.get("kube"))
        {
            flatten(&format!("{class}: class.kube"), kube, &mut out);
        }
        // The speed volume as measured, else the class's first volume.
        let speed_vol = workloads
            .iter()
            .filter_map(|w| doc.speed_trial(class, w))
            .find_map(|t| t.rep_volumes.first().cloned());
        if let Some(vol) = speed_vol.or_else(|| c.and_then(|c| c.get("volume")).cloned()) {
            flatten(&format!("{class}: volume"), &vol, &mut out);
        }
        for w in workloads {
            let Some(b) = doc
                .speed_trial(class, w)
                .and_then(|t| t.repetitions.first())
            else {
                continue;
            };
            let p = format!("{class}: {w}");
            for k in ["engine", "direct"] {
                if let Some(v) = b.get(k) {
                    flatten(&format!("{p}.{k}"), v, &mut out);
                }
            }
            if let Some(job) = b.get("job") {
                flatten(&format!("{p}.job"), job, &mut out);
            }
        }
    }
    out
}

/// Every field whose value differs, in key order.
pub fn differences(
    base: &RunDoc,
    new: &RunDoc,
    classes: &[(String, Vec<String>)],
) -> Vec<Difference> {
    let a = fingerprint(base, classes);
    let b = fingerprint(new, classes);
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| Difference {
            key: k.clone(),
            base: a.get(k).cloned(),
            new: b.get(k).cloned(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use serde_json::{Value, json};

    use super::super::rundoc::RunDoc;

    /// A Kubernetes run of class `hostpath` whose volume and nodes carry this run's names.
    fn kube_run(run: &str, sc_mount_options: &[&str]) -> RunDoc {
        let volume = json!({
            "kind": "pvc", "id": format!("pvcheck-{run}/provision-0"), "pv": format!("pvc-{run}"),
            "node": format!("node-{run}"), "requested_bytes": 1073741824u64,
            "storage_class": "sc", "volume_mode": "Filesystem", "access_modes": ["ReadWriteOnce"],
            "timings": { "first_pod_seconds": [run.len() as f64 * 0.37] },
            "setup": {
                "storage": {
                    "storage_class": { "provisioner": "hostpath.csi.example",
                        "parameters": { "node": "fast", "path": "/pool" },
                        "mount_options": sc_mount_options },
                    "driver": { "name": "hostpath.csi.example", "images": ["driver:1 sha256:ab"] },
                },
                "mounted": { "fs_type": "ext4", "mount_options": sc_mount_options },
            },
        });
        let doc = json!({
            "schema_version": 1, "run_id": run, "platform": "kubernetes", "profile": "quick",
            "environment": { "platform": "kubernetes", "agent_version": "pvcheck-agent 0.1.0",
                "nodes": [
                    { "name": format!("a-{run}"), "kernel": "6.1", "os": "Debian 12", "kubelet": "v1.34.0", "schedulable": true },
                    { "name": format!("b-{run}"), "kernel": "6.1", "os": "Debian 12", "kubelet": "v1.34.0", "schedulable": true },
                ],
                "classes": { "hostpath": {
                    "parameters": { "name": "hostpath", "file": format!("/tmp/{run}/classes.yaml"),
                        "kube": { "storage_class": "sc", "size": "1Gi" } },
                    "volume": volume } } },
            "trials": [], "kept": [], "timing": {},
        });
        RunDoc::from_value(Path::new("x.json"), doc).unwrap()
    }

    fn classes() -> Vec<(String, Vec<String>)> {
        vec![("hostpath".into(), Vec::new())]
    }

    #[test]
    fn two_kubernetes_runs_of_one_setup_fingerprint_alike_despite_their_names_and_timings() {
        let a = kube_run("aaaa1111", &["noatime"]);
        let b = kube_run("bbbb22223333", &["noatime"]);
        assert_eq!(super::differences(&a, &b, &classes()), Vec::new());
        let fp = super::fingerprint(&a, &classes());
        let text = format!("{fp:?}");
        for name in ["aaaa1111", "first_pod_seconds"] {
            assert!(!text.contains(name), "{name} in the fingerprint: {text}");
        }
        // What describes the setup is there, StorageClass parameters whatever their names.
        assert_eq!(fp["nodes"], "6.1 | Debian 12 | ? | v1.34.0 | ?");
        assert_eq!(
            fp["hostpath: volume.setup.storage.storage_class.parameters.path"],
            "/pool"
        );
        assert_eq!(fp["hostpath: class.kube.storage_class"], "sc");
    }

    #[test]
    fn a_storage_class_mount_option_makes_kubernetes_runs_unlike_and_is_named() {
        let a = kube_run("aaaa1111", &["noatime"]);
        let b = kube_run("bbbb2222", &["sync"]);
        let keys: Vec<String> = super::differences(&a, &b, &classes())
            .into_iter()
            .map(|d| d.key)
            .collect();
        assert_eq!(
            keys,
            vec![
                "hostpath: volume.setup.mounted.mount_options".to_string(),
                "hostpath: volume.setup.storage.storage_class.mount_options".to_string(),
            ]
        );
    }

    #[test]
    fn a_node_with_another_kernel_makes_kubernetes_runs_unlike() {
        let a = kube_run("aaaa1111", &[]);
        let mut b = kube_run("bbbb2222", &[]);
        b.environment["nodes"][1]["kernel"] = Value::String("6.12".into());
        let keys: Vec<String> = super::differences(&a, &b, &classes())
            .into_iter()
            .map(|d| d.key)
            .collect();
        assert_eq!(keys, vec!["nodes".to_string()]);
    }
}
