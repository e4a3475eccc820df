//! Like with like: what must be equal on both sides of a comparison (issue 12), and every
//! difference, listed.
//!
//! Compared: platform, kernel, profile and agent version; per class its parameters (the
//! `local:` section: kind, filesystem, mkfs and mount options, sizes, driver) and its volume
//! as measured (filesystem, effective mount options, mkfs version, size, flexVolume driver
//! identities); per speed workload the job (block size, queue depth, size, run time), the
//! engine and whether O_DIRECT was in effect. Left out: what differs by nature between two
//! runs of one setup (run and volume ids, paths of images and directories, the host name,
//! time limits, the class file's path).

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

fn flatten(prefix: &str, v: &Value, out: &mut BTreeMap<String, String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if VOLATILE.contains(&k.as_str()) {
                    continue;
                }
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, x, out);
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
    for (class, workloads) in classes {
        let c = env.get("classes").and_then(|c| c.get(class));
        if let Some(local) = c
            .and_then(|c| c.get("parameters"))
            .and_then(|p| p.get("local"))
        {
            flatten(&format!("{class}: class.local"), local, &mut out);
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
