//! `csi::<call>`: one CSI call of the class's driver, made as kubelet or a sidecar makes it,
//! repeated where they repeat it, with the error codes the spec requires, its effect checked
//! against the kernel (see `platform::local::csi::conformance`). A call the CO never makes for
//! this plugin (ControllerPublishVolume without PUBLISH_UNPUBLISH_VOLUME) is ignored with that
//! reason.

use super::{CheckCtx, Failure, Verdict};
use crate::config::{ClassSpec, LocalKind};

/// Whether the class publishes raw block volumes.
pub fn block_mode(class: &ClassSpec) -> bool {
    matches!(&class.local, Some(LocalKind::Csi(c)) if c.access_type == crate::config::csi::AccessType::Block)
}

/// The same trial as a flexVolume call's: the platform knows which protocol the class speaks.
pub fn check(ctx: &CheckCtx, call: &str) -> Result<Verdict, Failure> {
    super::flexvolume::check(ctx, call)
}
