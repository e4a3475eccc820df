//! `rwx`: two pods use one volume at the same time (on two nodes where its access mode and
//! topology allow, else on one). Each writes a dataset of its own, in a directory of its own, at
//! the same moment as the other; then each verifies the other's. A driver that caches per node,
//! serves one client stale pages or mixes up two writers' blocks fails here with the damage
//! named, where every single-pod check passes.

use super::integrity::{Dataset, Expect, verify_target, write_dataset};
use super::{CheckCtx, Failure, Verdict, derive_u64};
use crate::platform::Pod;

/// The two regions' directory names under the mount.
const REGIONS: [&str; 2] = ["pvcheck-rwx-a", "pvcheck-rwx-b"];

fn region(pod: &dyn Pod, which: usize) -> [String; 2] {
    [
        "--dir".into(),
        pod.data_dir().join(REGIONS[which]).display().to_string(),
    ]
}

pub fn check(ctx: &CheckCtx) -> Result<Verdict, Failure> {
    let half = (ctx.profile.dataset_bytes() / 2).div_ceil(1 << 20) * (1 << 20);
    let size = 2 * half + 2 * half / 4 + (8 << 20);
    ctx.with_volume("", size, |vol| {
        let mut a = vol.start_pod()?;
        ctx.noticed(vol);
        let mut b = match vol.share() {
            Ok(b) => b,
            Err(e) => {
                let _ = vol.stop_pod(a);
                return Err(Failure::from(e).context("starting the second pod"));
            }
        };
        ctx.noticed(vol);
        ctx.metric(
            "nodes",
            serde_json::json!({ "a": a.node(), "b": b.node() }),
        );
        if let (Some(na), Some(nb)) = (a.node(), b.node())
            && na == nb
            && ctx.platform.node_count() > 1
        {
            ctx.warn(format!(
                "both pods ran on node {na}: the volume's access mode, topology or the class's placement allowed no other node, so this proves shared access from one node only"
            ));
        }
        let agent_volume_id = CheckCtx::agent_volume_id(vol);
        let dataset = |pod: &dyn Pod, which: usize| Dataset {
            target: region(pod, which),
            seed: derive_u64(&format!("{}:{}", ctx.seed(), REGIONS[which])),
            agent_volume_id,
            size: half,
            mkdir: true,
        };
        let (da, db) = (dataset(a.as_ref(), 0), dataset(b.as_ref(), 1));
        let ledgers = [
            ctx.work_dir.join("ledger-a.json"),
            ctx.work_dir.join("ledger-b.json"),
        ];
        // Both writers at once: that is the point of a shared volume.
        let (wa, wb) = std::thread::scope(|s| {
            let (pa, pb) = (a.as_mut(), b.as_mut());
            let ha = s.spawn(|| write_dataset(ctx, pa, &da, &ledgers[0], "write by pod a"));
            let hb = s.spawn(|| write_dataset(ctx, pb, &db, &ledgers[1], "write by pod b"));
            (join(ha), join(hb))
        });
        let written = wa.and(wb).and_then(|_| {
            verify_target(
                ctx,
                vol,
                a.as_mut(),
                region(b.as_ref(), 1),
                Expect::Ledger(&ledgers[1]),
                "verify by pod a of what pod b wrote",
            )?;
            verify_target(
                ctx,
                vol,
                b.as_mut(),
                region(a.as_ref(), 0),
                Expect::Ledger(&ledgers[0]),
                "verify by pod b of what pod a wrote",
            )
        });
        // Stopping one pod stops both (the volume's pods go together).
        let stopped = vol.stop_pod(b).and_then(|()| vol.stop_pod(a));
        written?;
        stopped?;
        Ok(Verdict::Passed)
    })
}

/// A writer thread's result; a panic in it is a failure of the check, not of the run.
fn join<T>(h: std::thread::ScopedJoinHandle<'_, Result<T, Failure>>) -> Result<T, Failure> {
    h.join()
        .unwrap_or_else(|_| Err(Failure::new("a writer thread panicked")))
}
