//! CSI: a driver called over its unix socket exactly as kubelet and the sidecars
//! (external-provisioner, -attacher, -resizer, -snapshotter) call it.
//!
//! - [`proto`]: the CSI v1.12 messages and services, generated at build time from the vendored
//!   spec with `protox` (pure Rust, no `protoc`) and `tonic-prost-build`;
//! - [`client`]: a blocking client over a unix socket: deadlines, masked secrets, transcript;
//! - [`call`]: the RPCs and their trial names;
//! - [`driver`]: a running driver's socket, or a command pvcheck starts, restarts and stops;
//! - [`co`]: the orchestrator's call sequence, each reply checked against the spec by [`reply`]
//!   (pure functions: a reply in, `Ok` or the breach out; fuzzed by `fuzz/`'s `csi_reply`);
//! - [`backend`]: the local [`crate::platform::local::backend::Backend`] over it;
//! - [`conformance`]: the checks that become `<class>::csi::<call>` trials.

pub mod backend;
pub mod call;
pub mod client;
pub mod co;
pub mod conformance;
pub mod driver;
pub mod error;
pub mod proto;
pub mod reply;

pub use call::Call;
pub use error::CsiError;

use crate::config::ClassSpec;
use crate::config::csi::{CsiDriverSource, CsiSpec};

/// Why this machine cannot run the class, if it cannot: node plugins mount, so they need root
/// (kubelet runs them privileged).
pub fn usable(_class: &ClassSpec, spec: &CsiSpec) -> Result<(), String> {
    if matches!(spec.source(), Some(CsiDriverSource::Command(_))) && !crate::sys::is_root() {
        return Err(
            "a CSI node plugin mounts volumes: starting one needs root, as under kubelet".into(),
        );
    }
    if !crate::sys::is_root() {
        return Err("publishing CSI volumes needs root (the plugin mounts into pvcheck's directories, which pvcheck must then unmount)".into());
    }
    Ok(())
}
