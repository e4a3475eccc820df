//! `snapshot`: write generation 1 → snapshot → rewrite the source (generation 2) → restore the
//! snapshot as a new volume: it must hold exactly generation 1 (a later write leaking into the
//! snapshot fails verify), and the source exactly generation 2.

use super::integrity::{self, Expect};
use super::{CheckCtx, Failure, Verdict};

pub fn check(ctx: &CheckCtx) -> Result<Verdict, Failure> {
    let size = ctx.profile.dataset_bytes() + ctx.profile.dataset_bytes() / 4 + (8 << 20);
    ctx.with_volume("", size, |vol| {
        let mut pod = vol.start_pod()?;
        let l1 = ctx.work_dir.join("ledger-1.json");
        let l2 = ctx.work_dir.join("ledger-2.json");
        integrity::write(ctx, vol, pod.as_mut(), &l1)?;
        let snap = vol
            .snapshot("snap")
            .map_err(|e| Failure::from(e).context("snapshot"));
        ctx.noticed(vol);
        let snap = snap?;
        let restored = (|| {
            integrity::rewrite(ctx, vol, pod.as_mut(), &l1, &l2)?;
            Ok::<_, Failure>(())
        })();
        let mut snap = snap;
        let checked = restored.and_then(|()| {
            let mut spod = snap
                .start_pod()
                .map_err(|e| Failure::from(e).context("mounting the restored snapshot"))?;
            // The snapshot carries the source's blocks (same agent volume id), so verify against the source's ledger.
            let r = integrity::verify(
                ctx,
                vol,
                spod.as_mut(),
                Expect::Ledger(&l1),
                "verify of the restored snapshot (generation 1)",
            );
            snap.stop_pod(spod)?;
            r.map(|_| ())
        });
        ctx.finish_volume(snap, checked)?;
        integrity::verify(
            ctx,
            vol,
            pod.as_mut(),
            Expect::Ledger(&l2),
            "verify of the source after the snapshot (generation 2)",
        )?;
        vol.stop_pod(pod)?;
        Ok(Verdict::Passed)
    })
}
