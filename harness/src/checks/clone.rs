//! `clone`: write generation 1 → clone the volume → rewrite the source (generation 2) → the
//! clone must hold exactly generation 1 (a later write leaking into it, or a clone of stale
//! data, fails verify), and the source exactly generation 2.

use super::integrity::{self, Expect};
use super::{CheckCtx, Failure, Verdict};

pub fn check(ctx: &CheckCtx) -> Result<Verdict, Failure> {
    let size = ctx.profile.dataset_bytes() + ctx.profile.dataset_bytes() / 4 + (8 << 20);
    ctx.with_volume("", size, |vol| {
        let mut pod = vol.start_pod()?;
        let l1 = ctx.work_dir.join("ledger-1.json");
        let l2 = ctx.work_dir.join("ledger-2.json");
        integrity::write(ctx, vol, pod.as_mut(), &l1)?;
        let mut copy = vol
            .clone_volume("clone")
            .map_err(|e| Failure::from(e).context("clone"))?;
        let checked = integrity::rewrite(ctx, vol, pod.as_mut(), &l1, &l2).and_then(|()| {
            let mut cpod = copy
                .start_pod()
                .map_err(|e| Failure::from(e).context("mounting the clone"))?;
            // The clone carries the source's blocks (same agent volume id): the source's ledger.
            let r = integrity::verify(
                ctx,
                vol,
                cpod.as_mut(),
                Expect::Ledger(&l1),
                "verify of the clone (generation 1)",
            );
            copy.stop_pod(cpod)?;
            r.map(|_| ())
        });
        ctx.finish_volume(copy, checked)?;
        integrity::verify(
            ctx,
            vol,
            pod.as_mut(),
            Expect::Ledger(&l2),
            "verify of the source after the clone (generation 2)",
        )?;
        vol.stop_pod(pod)?;
        Ok(Verdict::Passed)
    })
}
