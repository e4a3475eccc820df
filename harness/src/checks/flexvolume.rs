//! `flexvolume::<call>`: one flexVolume call of the class's driver, made as kubelet makes it,
//! repeated where kubelet repeats it, its reply checked against the protocol and its effect
//! against the kernel (see `platform::local::flexvolume::conformance`). A call kubelet never makes
//! for this driver (attach when `init` says attach: false) is ignored with that reason.

use super::{CheckCtx, Failure, Verdict};
use crate::platform::{ProtocolOutcome, VolumeRequest};

/// Runs one driver-protocol trial (`flexvolume::<call>`, `csi::<call>`): the platform makes the
/// call on a scratch volume of its own; what it tolerated but noticed becomes warnings.
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
