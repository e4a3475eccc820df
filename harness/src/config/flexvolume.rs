//! The `local.flexvolume` class kind: a flexVolume driver called as kubelet calls it.
//!
//! ```yaml
//!   - name: flex-loop
//!     local:
//!       flexvolume:
//!         driver: flexvolume/loop/v1/loop     # the executable, relative to this YAML file
//!         fs_type: ext4                       # kubernetes.io/fsType
//!         options: { size: 1GiB }             # FlexVolumeSource.options: a map of strings
//!         secrets: { password: s3cret }       # kubernetes.io/secret/KEY on mount; never shown
//!         call_timeout: 2m                    # every call but waitforattach (kubelet: 2m)
//!         waitforattach_timeout: 10m          # (kubelet: 10m)
//!     upgrade:
//!       driver: flexvolume/loop/v2/loop       # swapped in place as a DaemonSet would
//!       rollback: true                        # then back to the first driver, verified again
//! ```
//! In the built-in class file, driver paths name the sample drivers shipped in the binary; they
//! are written out (mode 0755) to the run's own directory when used.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pvcheck_workloads::units::Dur;
use serde::Deserialize;
use serde_saphyr::Spanned;

/// `local: { flexvolume: { driver, fs_type, options, secrets, call_timeout, waitforattach_timeout } }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlexvolumeSpec {
    /// The driver executable; relative paths are relative to the YAML file.
    pub driver: Spanned<PathBuf>,
    /// `kubernetes.io/fsType` passed to the driver.
    #[serde(default)]
    pub fs_type: Option<String>,
    /// User options, passed in the JSON like `FlexVolumeSource.options`: must be a map of strings
    /// (checked by the loader, which names the class and field; see [`FlexvolumeSpec::user_options`]).
    #[serde(default)]
    pub options: Option<Spanned<serde_json::Value>>,
    /// Secrets, passed base64-encoded as `kubernetes.io/secret/KEY` on `mount`, as kubelet passes
    /// a `secretRef`. Their values never appear in output, logs or results.
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    /// Limit for every call except waitforattach (default 2m, as kubelet).
    #[serde(default)]
    pub call_timeout: Option<Dur>,
    /// Limit for waitforattach (default 10m, as kubelet).
    #[serde(default)]
    pub waitforattach_timeout: Option<Dur>,
    /// Resolved by the loader.
    #[serde(skip)]
    pub source: Option<DriverSource>,
    /// `options`, checked, by the loader.
    #[serde(skip)]
    pub user_options: BTreeMap<String, String>,
}

/// Where a driver's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriverSource {
    /// A file on this machine (absolute after loading).
    File(PathBuf),
    /// A sample driver shipped in the binary, by its path under `storageclasses/`.
    Embedded(&'static str),
}

impl DriverSource {
    pub fn bytes(&self) -> std::io::Result<Cow<'static, [u8]>> {
        match self {
            DriverSource::File(p) => std::fs::read(p).map(Cow::Owned),
            DriverSource::Embedded(rel) => {
                crate::platform::local::flexvolume::embedded::sample(rel)
                    .map(|t| Cow::Borrowed(t.as_bytes()))
                    .ok_or_else(|| {
                        std::io::Error::new(
                            std::io::ErrorKind::NotFound,
                            format!("no built-in driver {rel}"),
                        )
                    })
            }
        }
    }

    /// The executable's file name (the driver's name under `<vendor>~<name>/`).
    pub fn file_name(&self) -> String {
        let p: &Path = match self {
            DriverSource::File(p) => p,
            DriverSource::Embedded(rel) => Path::new(rel),
        };
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "driver".into())
    }

    /// How results and messages name it.
    pub fn describe(&self) -> String {
        match self {
            DriverSource::File(p) => p.display().to_string(),
            DriverSource::Embedded(rel) => format!("<built-in storageclasses/{rel}>"),
        }
    }
}

impl FlexvolumeSpec {
    pub fn source(&self) -> DriverSource {
        self.source
            .clone()
            .unwrap_or_else(|| DriverSource::File(self.driver.value.clone()))
    }
}
