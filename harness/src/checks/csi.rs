//! `csi::<call>`: one CSI call of the class's driver, made as kubelet or a sidecar makes it,
//! repeated where they repeat it, with the error codes the spec requires, its effect checked
//! against the kernel (see `platform::local::csi::conformance`). A call the CO never makes for
//! this plugin (ControllerPublishVolume without PUBLISH_UNPUBLISH_VOLUME) is ignored with that
//! reason.

use super::{CheckCtx, Failure, Verdict};
use crate::config::{ClassSpec, LocalKind};

/// Why data checks of a block-mode class are ignored (they need the agent's `--device`).
pub const BLOCK_DATA: &str = "access_type block: the data checks run the agent with --dir; block volumes need --device, which the checks do not pass yet (the csi::* checks cover block publishing)";

/// Whether the class publishes raw block volumes.
pub fn block_mode(class: &ClassSpec) -> bool {
    matches!(&class.local, Some(LocalKind::Csi(c)) if c.access_type == crate::config::csi::AccessType::Block)
}

/// The same trial as a flexVolume call's: the platform knows which protocol the class speaks.
pub fn check(ctx: &CheckCtx, call: &str) -> Result<Verdict, Failure> {
    super::flexvolume::check(ctx, call)
}
