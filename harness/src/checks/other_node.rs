//! `integrity::other-node`: write on one node → delete the pod and wait until the volume is
//! detached from that node → verify on another schedulable node that the volume's topology
//! allows → rewrite a fraction → verify there again.
//!
//! Ignored, with the reason, on the local platform (one machine), on a cluster with one
//! schedulable node, and when the PV's node affinity allows no other node (a node-local
//! driver). The nodes are in the trial's metrics (`nodes.write`, `nodes.verify`).

use super::integrity::{self, Expect};
use super::{CheckCtx, Failure, Verdict};
use crate::platform::{Elsewhere, Platform};

/// Why the platform can never run the check (known when the trials are planned).
pub fn unsupported(platform: &dyn Platform) -> Option<String> {
    (platform.name() == "local").then(|| "the local platform has one node".to_string())
}

pub fn check(ctx: &CheckCtx) -> Result<Verdict, Failure> {
    let nodes = ctx.platform.node_count();
    if nodes < 2 {
        return Ok(Verdict::Ignored(format!(
            "the cluster has {nodes} schedulable node: a volume cannot move to another"
        )));
    }
    let size = ctx.profile.dataset_bytes() + ctx.profile.dataset_bytes() / 4 + (8 << 20);
    ctx.with_volume("", size, |vol| {
        let pod = vol.start_pod();
        ctx.noticed(vol);
        let pod = pod.map_err(|e| Failure::from(e).context("starting the first pod"))?;
        let first = pod.node().unwrap_or_default().to_string();
        let candidates = match vol.other_nodes() {
            Ok(Elsewhere::Nodes(n)) => n,
            Ok(Elsewhere::Nowhere(why)) => {
                vol.stop_pod(pod)?;
                return Ok(Verdict::Ignored(why));
            }
            Err(e) => return Err(Failure::from(e).context("finding another node")),
        };
        ctx.metric(
            "nodes",
            serde_json::json!({ "write": first, "candidates": candidates }),
        );
        let l1 = ctx.work_dir.join("ledger-1.json");
        let l2 = ctx.work_dir.join("ledger-2.json");
        let mut pod = pod;
        integrity::write(ctx, vol, pod.as_mut(), &l1)?;
        let stopped = vol.stop_pod(pod);
        ctx.noticed(vol);
        stopped.map_err(|e| {
            Failure::from(e).context(&format!(
                "deleting the pod on {first} and waiting for the volume to be detached"
            ))
        })?;
        let started = vol.start_pod_avoiding(std::slice::from_ref(&first));
        ctx.noticed(vol);
        let mut pod = started.map_err(|e| {
            Failure::from(e).context(&format!("starting a pod on a node but {first}"))
        })?;
        let second = pod.node().unwrap_or_default().to_string();
        ctx.metric(
            "nodes",
            serde_json::json!({ "write": first, "verify": second, "candidates": candidates }),
        );
        if second == first {
            return Err(Failure::setup(format!(
                "the pod that had to avoid node {first} runs on it: the volume did not move"
            )));
        }
        let moved =
            |f: Failure| f.context(&format!("written on node {first}, read on node {second}"));
        integrity::verify(
            ctx,
            vol,
            pod.as_mut(),
            Expect::Ledger(&l1),
            "verify on the other node",
        )
        .map_err(moved)?;
        integrity::rewrite(ctx, vol, pod.as_mut(), &l1, &l2)?;
        integrity::verify(
            ctx,
            vol,
            pod.as_mut(),
            Expect::Ledger(&l2),
            "verify after the rewrite on the other node",
        )
        .map_err(moved)?;
        vol.stop_pod(pod)?;
        Ok(Verdict::Passed)
    })
}
