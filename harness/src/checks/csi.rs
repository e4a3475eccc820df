//! `csi::<call>`: one CSI call of the class's driver, made as kubelet or a sidecar makes it,
//! repeated where they repeat it, with the error codes the spec requires, its effect checked
//! against the kernel (see `platform::local::csi::conformance`). A call the CO never makes for
//! this plugin (ControllerPublishVolume without PUBLISH_UNPUBLISH_VOLUME) is ignored with that
//! reason.

use super::{CheckCtx, Failure, Verdict};
use crate::config::{ClassSpec, LocalKind};
use crate::platform::{ProtocolOutcome, VolumeRequest};

/// Why data checks of a block-mode class are ignored (they need the agent's `--device`).
pub const BLOCK_DATA: &str = "access_type block: the data checks run the agent with --dir; block volumes need --device, which the checks do not pass yet (the csi::* checks cover block publishing)";

/// Whether the class publishes raw block volumes.
pub fn block_mode(class: &ClassSpec) -> bool {
    matches!(&class.local, Some(LocalKind::Csi(c)) if c.access_type == crate::config::csi::AccessType::Block)
}

pub fn check(ctx: &CheckCtx, call: &str) -> Result<Verdict, Failure> {
    let req = VolumeRequest {
        run_id: ctx.run_id.clone(),
        name: format!("{}-{}", ctx.class.name(), ctx.check.tag()),
        size: 0,
    };
    match ctx.platform.protocol_check(&ctx.class, &req, call) {
        Ok(ProtocolOutcome::Passed(note)) => {
            ctx.metric("checked", note.into());
            Ok(Verdict::Passed)
        }
        Ok(ProtocolOutcome::Warned { summary, warnings }) => {
            ctx.metric("checked", summary.into());
            for w in warnings {
                ctx.warn(w);
            }
            Ok(Verdict::Passed)
        }
        Ok(ProtocolOutcome::NotApplicable(reason)) => Ok(Verdict::Ignored(reason)),
        Err(e) => Err(Failure::from(e)),
    }
}
