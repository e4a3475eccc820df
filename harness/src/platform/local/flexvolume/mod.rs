//! flexVolume: drivers called exactly as kubelet and the controller manager call them.
//!
//! - [`call`]: run the executable once, bounded in time and output;
//! - [`protocol`]: what each reply must hold;
//! - [`options`]: the JSON options kubelet passes, and secret masking;
//! - [`driver`]: a driver with its timeouts, transcript and identity;
//! - [`mounts`]: what the kernel says is mounted;
//! - [`kubelet`]: the call sequence for a volume and a pod;
//! - [`left`]: what a driver left running for a volume (a FUSE daemon), found and killed;
//! - [`conformance`]: the protocol checks that become `<class>::flexvolume::<call>` trials;
//! - [`embedded`]: the sample drivers shipped in the binary.

pub mod backend;
pub mod call;
pub mod conformance;
pub mod driver;
pub mod embedded;
pub mod error;
pub mod kubelet;
pub mod left;
pub mod options;
pub mod protocol;

pub use driver::{Answer, Driver, DriverIdentity, PluginState, Timeouts, identity};
pub use error::{FlexError, ProtocolViolation};
pub use kubelet::{Kubelet, Layout, Mounted, MountedBy};
pub use options::{PodInfo, VolumeOptions};
pub use protocol::{Breach, Call, Capabilities, Classified, Notice, Reply, Status, Verdict};

use crate::config::{ClassSpec, DriverSource, FlexvolumeSpec};

/// Why this machine cannot run the class's flexVolume driver, if it cannot: kubelet runs drivers
/// as root, and the built-in sample drivers need jq, losetup and mkfs.
pub fn usable(class: &ClassSpec, spec: &FlexvolumeSpec) -> Result<(), String> {
    if !crate::sys::is_root() {
        return Err("flexVolume drivers mount and attach: they need root, as under kubelet".into());
    }
    let mut sources = vec![spec.source()];
    if let Some(u) = &class.upgrade
        && let Some(d) = &u.driver_source
    {
        sources.push(d.clone());
    }
    let embedded: Vec<&str> = sources
        .iter()
        .filter_map(|s| match s {
            DriverSource::Embedded(rel) => Some(*rel),
            DriverSource::File(_) => None,
        })
        .collect();
    if !embedded.is_empty() {
        let mut tools = vec!["jq".to_string(), "mountpoint".to_string()];
        // The loop sample attaches images and makes their filesystem; the bind sample does neither.
        if embedded.iter().any(|rel| rel.contains("/loop/")) {
            let fs = spec.fs_type.as_deref().unwrap_or("ext4");
            tools.extend([
                "losetup".to_string(),
                "blkid".to_string(),
                format!("mkfs.{fs}"),
            ]);
        }
        for tool in &tools {
            if crate::sys::which(tool).is_none() {
                return Err(format!(
                    "the built-in sample drivers need {tool}, which is not installed"
                ));
            }
        }
    }
    Ok(())
}
