//! `clone`: write generation 1 → clone the volume and mount the clone (a `WaitForFirstConsumer`
//! clone is made at its first pod) → rewrite the source (generation 2) → the
//! clone must hold exactly generation 1 (a later write of the source leaking into it, or a
//! clone of stale data, fails verify) → write on the clone (generations 2 and 3 there) and
//! verify it → the source must still hold exactly its generation 2 (a write on the clone
//! leaking into the source shows as generation 3 where the source has 1 or 2).

use super::integrity::{self, Expect};
use super::{CheckCtx, Failure, Verdict};

pub fn check(ctx: &CheckCtx) -> Result<Verdict, Failure> {
    let size = ctx.profile.dataset_bytes() + ctx.profile.dataset_bytes() / 4 + (8 << 20);
    ctx.with_volume("", size, |vol| {
        let mut pod = vol.start_pod()?;
        let l1 = ctx.work_dir.join("ledger-1.json");
        let l2 = ctx.work_dir.join("ledger-2.json");
        let c2 = ctx.work_dir.join("clone-ledger-2.json");
        let c3 = ctx.work_dir.join("clone-ledger-3.json");
        integrity::write(ctx, vol, pod.as_mut(), &l1)?;
        let mut copy = vol
            .clone_volume("clone")
            .map_err(|e| Failure::from(e).context("clone"))?;
        // Mounted before the source changes: a WaitForFirstConsumer clone is made (the data
        // copied) only when its first pod is scheduled.
        let checked = copy
            .start_pod()
            .map_err(|e| Failure::from(e).context("mounting the clone"));
        let checked = checked.and_then(|mut cpod| {
            integrity::rewrite(ctx, vol, pod.as_mut(), &l1, &l2)?;
            // The clone carries the source's blocks (same agent volume id): the source's ledger.
            integrity::verify(
                ctx,
                vol,
                cpod.as_mut(),
                Expect::Ledger(&l1),
                "verify of the clone (generation 1)",
            )?;
            // Two generations, so what the clone writes differs from the source's generation 2.
            integrity::rewrite(ctx, vol, cpod.as_mut(), &l1, &c2)?;
            integrity::rewrite(ctx, vol, cpod.as_mut(), &c2, &c3)?;
            integrity::verify(
                ctx,
                vol,
                cpod.as_mut(),
                Expect::Ledger(&c3),
                "verify of the clone after writing on it (generation 3)",
            )?;
            copy.stop_pod(cpod)?;
            Ok(())
        });
        ctx.finish_volume(copy, checked)?;
        integrity::verify(
            ctx,
            vol,
            pod.as_mut(),
            Expect::Ledger(&l2),
            "verify of the source after writing on the clone (generation 2)",
        )?;
        vol.stop_pod(pod)?;
        Ok(Verdict::Passed)
    })
}
