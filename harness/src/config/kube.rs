//! The `kube:` and `placement:` sections of a class: how the Kubernetes platform makes a volume
//! of the class and where its agent pods may run.
//!
//! ```yaml
//!   - name: hostpath
//!     kube:
//!       storage_class: csi-hostpath-sc     # or pv_template: FILE
//!       access_modes: [ReadWriteOnce]
//!       volume_mode: Filesystem            # Block: raw device checks
//!       size: 1Gi                          # a Kubernetes quantity (Gi, G, Mi, …)
//!       snapshot_class: csi-hostpath-snapclass
//!     placement: { node_selector: {}, tolerations: [] }
//! ```
//!
//! `size` is a Kubernetes quantity: `Ki Mi Gi Ti` are powers of two, `k M G T` powers of ten,
//! as in a PVC (pvcheck's own `KiB MiB GiB` are accepted too). A bare number is refused: a
//! size without its unit silently did the wrong thing in kubestr#145.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize};
use serde_saphyr::Spanned;

/// `kube:`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KubeSpec {
    /// The StorageClass PVCs of this class name (dynamic provisioning).
    #[serde(default)]
    pub storage_class: Option<Spanned<String>>,
    /// A PersistentVolume manifest (YAML) for pre-provisioned or flexVolume volumes, relative to
    /// the class file; pvcheck fills in the name, labels and claimRef per volume.
    #[serde(default)]
    pub pv_template: Option<Spanned<PathBuf>>,
    #[serde(default = "default_access_modes")]
    pub access_modes: Vec<AccessMode>,
    #[serde(default)]
    pub volume_mode: VolumeMode,
    /// The smallest PVC request; a check asks for more when it needs more.
    #[serde(default)]
    pub size: Option<Quantity>,
    /// The VolumeSnapshotClass of the `snapshot` check.
    #[serde(default)]
    pub snapshot_class: Option<String>,
    /// The manifest of `pv_template`, read by the loader.
    #[serde(skip)]
    pub pv_template_yaml: Option<String>,
}

impl KubeSpec {
    pub fn storage_class_name(&self) -> Option<&str> {
        self.storage_class.as_ref().map(|s| s.value.as_str())
    }
}

fn default_access_modes() -> Vec<AccessMode> {
    vec![AccessMode::ReadWriteOnce]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum AccessMode {
    ReadWriteOnce,
    ReadOnlyMany,
    ReadWriteMany,
    ReadWriteOncePod,
}

impl AccessMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AccessMode::ReadWriteOnce => "ReadWriteOnce",
            AccessMode::ReadOnlyMany => "ReadOnlyMany",
            AccessMode::ReadWriteMany => "ReadWriteMany",
            AccessMode::ReadWriteOncePod => "ReadWriteOncePod",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
pub enum VolumeMode {
    #[default]
    Filesystem,
    Block,
}

/// `placement:`: where agent pods may run. pvcheck never sets `nodeName` (it bypasses the
/// scheduler, kubernetes#70259): pods are placed by these and by node affinity.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PlacementSpec {
    #[serde(default)]
    pub node_selector: BTreeMap<String, String>,
    #[serde(default)]
    pub tolerations: Vec<Toleration>,
}

/// A pod toleration, with the fields of `core/v1 Toleration`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Toleration {
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub operator: Option<String>,
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub effect: Option<String>,
    #[serde(default)]
    pub toleration_seconds: Option<i64>,
}

/// A rollout `upgrade.rollout` waits for after the upgrade command.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Rollout {
    pub kind: RolloutKind,
    pub namespace: String,
    pub name: String,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
pub enum RolloutKind {
    DaemonSet,
    Deployment,
    StatefulSet,
}

impl RolloutKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RolloutKind::DaemonSet => "DaemonSet",
            RolloutKind::Deployment => "Deployment",
            RolloutKind::StatefulSet => "StatefulSet",
        }
    }
}

/// A Kubernetes quantity of bytes (`10Gi`, `500M`, `512Mi`), kept with its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity {
    pub bytes: u64,
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", format_quantity(self.bytes))
    }
}

impl Serialize for Quantity {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_quantity(self.bytes))
    }
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        let s = match &v {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(n) => {
                return Err(serde::de::Error::custom(format!(
                    "{n} has no unit: write e.g. {n}Gi (a PVC request takes Ki, Mi, Gi, Ti, or k, M, G, T)"
                )));
            }
            other => {
                return Err(serde::de::Error::custom(format!(
                    "expected a size such as 10Gi, found {other}"
                )));
            }
        };
        parse_quantity(&s)
            .map(|bytes| Quantity { bytes })
            .map_err(serde::de::Error::custom)
    }
}

/// Parses a Kubernetes quantity of bytes. A bare number is refused.
pub fn parse_quantity(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| {
            format!("{t:?} has no unit: write e.g. {t}Gi (Ki, Mi, Gi, Ti, or k, M, G, T)")
        })?;
    let (num, unit) = t.split_at(split);
    let mult: u64 = match unit {
        "Ki" | "KiB" => 1 << 10,
        "Mi" | "MiB" => 1 << 20,
        "Gi" | "GiB" => 1 << 30,
        "Ti" | "TiB" => 1 << 40,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        _ => {
            return Err(format!(
                "{t:?}: unknown unit {unit:?} (Ki, Mi, Gi, Ti, or k, M, G, T)"
            ));
        }
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{t:?} is not a number followed by a unit"))?;
    if n.is_nan() || n <= 0.0 {
        return Err(format!("{t:?} must be larger than zero"));
    }
    Ok((n * mult as f64).ceil() as u64)
}

/// Bytes as a PVC request: the largest binary unit that divides them, else bytes rounded up
/// to a MiB.
pub fn format_quantity(bytes: u64) -> String {
    for (unit, m) in [("Ti", 1u64 << 40), ("Gi", 1 << 30), ("Mi", 1 << 20)] {
        if bytes >= m && bytes.is_multiple_of(m) {
            return format!("{}{unit}", bytes / m);
        }
    }
    format!("{}Mi", bytes.div_ceil(1 << 20).max(1))
}

/// The checks serde cannot do, for the loader: exactly one of `storage_class` and
/// `pv_template`, the template readable, a snapshot class when the snapshot capability is on.
pub(super) fn check(
    class: &mut super::ClassSpec,
    index: usize,
    file: &std::path::Path,
    base: &std::path::Path,
) -> Result<(), super::ConfigError> {
    use super::ConfigError;
    let line = class.line();
    let field = |f: &str| Some(format!("classes[{index}].{f}"));
    let snapshot = class.capabilities.snapshot;
    let block = class.capabilities.block;
    let Some(k) = &mut class.kube else {
        if class
            .upgrade
            .as_ref()
            .is_some_and(|u| !u.rollout.is_empty())
        {
            return Err(ConfigError::new(
                file,
                Some(line),
                field("upgrade.rollout"),
                "rollouts are waited for on Kubernetes: the class has no `kube:` section",
            ));
        }
        return Ok(());
    };
    match (&k.storage_class, &k.pv_template) {
        (Some(_), Some(t)) => {
            return Err(ConfigError::new(
                file,
                Some(t.referenced.line()),
                field("kube.pv_template"),
                "give either kube.storage_class or kube.pv_template, not both",
            ));
        }
        (None, None) => {
            return Err(ConfigError::new(
                file,
                Some(line),
                field("kube"),
                "say where volumes come from: kube.storage_class (a StorageClass name) or kube.pv_template (a PV manifest)",
            ));
        }
        (Some(sc), None) => {
            if sc.value.is_empty() {
                return Err(ConfigError::new(
                    file,
                    Some(sc.referenced.line()),
                    field("kube.storage_class"),
                    "the StorageClass name is empty",
                ));
            }
        }
        (None, Some(t)) => {
            let path = if t.value.is_absolute() {
                t.value.clone()
            } else {
                base.join(&t.value)
            };
            let text = std::fs::read_to_string(&path).map_err(|e| {
                ConfigError::new(
                    file,
                    Some(t.referenced.line()),
                    field("kube.pv_template"),
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            k.pv_template_yaml = Some(text);
        }
    }
    if k.access_modes.is_empty() {
        return Err(ConfigError::new(
            file,
            Some(line),
            field("kube.access_modes"),
            "at least one access mode (e.g. [ReadWriteOnce])",
        ));
    }
    if snapshot && k.snapshot_class.is_none() {
        return Err(ConfigError::new(
            file,
            Some(line),
            field("kube.snapshot_class"),
            "capabilities.snapshot is on: name the VolumeSnapshotClass in kube.snapshot_class",
        ));
    }
    if k.volume_mode == VolumeMode::Block && !block {
        return Err(ConfigError::new(
            file,
            Some(line),
            field("kube.volume_mode"),
            "volume_mode Block needs capabilities.block: true",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// kubestr#145: `-z 45` silently meant 45 bytes; a class size must carry its unit.
    #[test]
    fn a_size_without_a_unit_is_refused() {
        assert!(parse_quantity("45").unwrap_err().contains("no unit"));
    }

    #[test]
    fn kubernetes_quantities_mean_what_they_mean_in_a_pvc() {
        assert_eq!(parse_quantity("10Gi").unwrap(), 10 << 30);
        assert_eq!(parse_quantity("10G").unwrap(), 10_000_000_000);
        assert_eq!(parse_quantity("512Mi").unwrap(), 512 << 20);
        assert_eq!(parse_quantity("1.5Gi").unwrap(), 3 << 29);
        assert_eq!(parse_quantity("2GiB").unwrap(), 2 << 30);
        assert!(parse_quantity("10gb").is_err());
        assert!(parse_quantity("0Gi").is_err());
    }

    #[test]
    fn requests_are_written_in_the_largest_exact_binary_unit() {
        assert_eq!(format_quantity(10 << 30), "10Gi");
        assert_eq!(format_quantity(1536 << 20), "1536Mi");
        assert_eq!(format_quantity((1 << 20) + 1), "2Mi");
    }
}
