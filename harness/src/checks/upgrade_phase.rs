//! `integrity::upgrade` split around an upgrade another pipeline does (`crate::phase`).
//!
//! before-upgrade: provision → write (generation 1) → keep the volume with its pod running and
//! the ledger beside it. after-upgrade: take the kept volume over → recreate the pod (a detach
//! and an attach by the upgraded driver) → verify generation 1 → rewrite → recreate → verify
//! generation 2 → remove. The verify after the upgrade is the one that answers "did the
//! upgrade keep every acknowledged byte"; the second pair proves the upgraded driver still
//! writes, and reads back what it wrote, across a pod recreation.

use super::integrity::{Expect, rewrite, size_for, verify, write};
use super::{CheckCtx, Failure, Verdict, recreate_noticed};
use crate::platform::KeptLedger;

/// `--phase before-upgrade`: writes generation 1 and keeps the volume for the upgrade.
pub fn before(ctx: &CheckCtx) -> Result<Verdict, Failure> {
    let mut vol = ctx.provision("", size_for(ctx))?;
    let ledger_path = ctx.work_dir.join("ledger-1.json");
    let written = (|| {
        let mut pod = vol.start_pod()?;
        ctx.noticed(vol.as_mut());
        write(ctx, vol.as_ref(), pod.as_mut(), &ledger_path)?;
        Ok::<_, Failure>(pod)
    })();
    let pod = match written {
        Ok(pod) => pod,
        Err(f) => return ctx.finish_volume(vol, Err(f)),
    };
    let ledger = std::fs::read_to_string(&ledger_path)
        .map_err(|e| Failure::new(format!("reading the ledger {}: {e}", ledger_path.display())))?;
    let kept = KeptLedger {
        class: ctx.class.name().to_string(),
        seed: ctx.seed(),
        agent_volume_id: CheckCtx::agent_volume_id(vol.as_ref()),
        ledger,
    };
    // The ledger goes into the result file too: the ConfigMap dies with the namespace, the
    // result file is the record of what was written.
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&kept.ledger) {
        ctx.metric("ledger", v);
    }
    let id = vol.id().to_string();
    let location = vol
        .keep_for_upgrade(pod, &kept)
        .map_err(|e| Failure::from(e).context(&format!("keeping volume {id} for the upgrade")))?;
    ctx.metric("kept_for_upgrade", location.into());
    Ok(Verdict::Passed)
}

/// `--phase after-upgrade --resume RUN_ID`: verifies what the resumed run wrote, rewrites,
/// verifies again, and removes the volume.
pub fn after(ctx: &CheckCtx) -> Result<Verdict, Failure> {
    let resumes = ctx.phase.resumes().unwrap_or_default().to_string();
    let Some(resumed) = ctx
        .platform
        .resume(&ctx.class)
        .map_err(|e| Failure::from(e).context(&format!("taking over run {resumes}'s volume")))?
    else {
        return Ok(Verdict::Ignored(format!(
            "run {resumes} kept no volume of this class (its integrity::upgrade did not pass, or it did not run this class)"
        )));
    };
    let mut vol = resumed.volume;
    ctx.adopted(vol.as_mut());
    ctx.metric("resumed_run", resumes.clone().into());
    ctx.metric("kept_by_resumed_run", resumed.facts);
    let l1 = ctx.work_dir.join("ledger-1.json");
    let l2 = ctx.work_dir.join("ledger-2.json");
    let result = (|| {
        std::fs::write(&l1, &resumed.kept.ledger)
            .map_err(|e| Failure::new(format!("saving the ledger {}: {e}", l1.display())))?;
        let mut pod = match resumed.pod {
            // The pod the first run left ran through the upgrade; a new one crosses a detach
            // and an attach by the upgraded driver.
            Some(p) => recreate_noticed(ctx, vol.as_mut(), p)?,
            None => {
                ctx.warn(format!(
                    "the pod run {resumes} left on the volume was gone after the upgrade (evicted or deleted by it): the volume was not in use through the whole upgrade"
                ));
                let p = vol.start_pod()?;
                ctx.noticed(vol.as_mut());
                p
            }
        };
        verify(
            ctx,
            vol.as_ref(),
            pod.as_mut(),
            Expect::Ledger(&l1),
            &format!("verify after the upgrade (written by run {resumes})"),
        )?;
        rewrite(ctx, vol.as_ref(), pod.as_mut(), &l1, &l2)?;
        pod = recreate_noticed(ctx, vol.as_mut(), pod)?;
        verify(
            ctx,
            vol.as_ref(),
            pod.as_mut(),
            Expect::Ledger(&l2),
            "verify after the upgrade, rewrite and recreate",
        )?;
        vol.stop_pod(pod)?;
        Ok(Verdict::Passed)
    })();
    ctx.finish_volume(vol, result)
}
