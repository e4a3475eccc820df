//! The `local.flexvolume` class kind: a flexVolume driver called as kubelet calls it.
//!
//! Its fields (`driver`, `fs_type`, `options`) and the matching `upgrade.driver` and
//! `upgrade.rollback` are defined by the flexVolume work (issue 5), which also provides the
//! backend in `platform::local::flexvolume`. Until that lands a class of this kind parses and is
//! ignored with that reason, so a class file written for it is not rejected.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use serde_saphyr::Spanned;

/// `local: { flexvolume: { driver, fs_type, options } }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlexvolumeSpec {
    /// The driver executable; relative paths are relative to the YAML file.
    pub driver: Spanned<PathBuf>,
    /// `kubernetes.io/fsType` passed to the driver.
    #[serde(default)]
    pub fs_type: Option<String>,
    /// User options, passed in the JSON like `FlexVolumeSource.options`.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}
