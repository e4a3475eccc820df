//! A driver upgrade between the write and the verify: the class's `upgrade.command` (env
//! `PVCHECK_CLASS`, `PVCHECK_RUN_ID`, `KUBECONFIG`, and where the volume is), then every listed
//! rollout must complete (observedGeneration caught up, every replica updated and available),
//! then `upgrade.ready` if given, all within `timeouts.upgrade`.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use kube::Api;

use super::volume::KubeVolume;
use super::wait::{self, Decision};
use crate::config::kube::{Rollout, RolloutKind};
use crate::platform::{PlatformError, UpgradeStep, Volume};

/// Runs one upgrade step of the class for `vol` (whose holder pod keeps it mounted).
pub fn run(vol: &KubeVolume, step: &UpgradeStep) -> Result<(), PlatformError> {
    let Some(spec) = vol.class.upgrade.clone() else {
        return Err(PlatformError::Unsupported(
            "the class defines no upgrade".into(),
        ));
    };
    let limit = vol.ctx.timeouts.upgrade;
    let start = Instant::now();
    let shared = &vol.ctx.shared;
    let conn = &shared.conn;
    let cwd = vol
        .class
        .file
        .parent()
        .filter(|d| d.is_dir())
        .map(std::path::Path::to_path_buf);
    let handle = vol.pv().and_then(|pv| {
        conn.block_on(async {
            let api: Api<k8s_openapi::api::core::v1::PersistentVolume> =
                Api::all(vol.ctx.client.clone());
            api.get_opt(pv).await.ok().flatten()
        })
        .and_then(|p| p.spec.and_then(|s| s.csi.map(|c| c.volume_handle)))
    });
    let env = |c: &mut std::process::Command| {
        c.env("PVCHECK_CLASS", vol.class.name())
            .env("PVCHECK_RUN_ID", &shared.run_id)
            .env("PVCHECK_NAMESPACE", &shared.namespace)
            .env("PVCHECK_PVC", &vol.ctx.pvc)
            .env("PVCHECK_PV", vol.pv().unwrap_or(""))
            .env("PVCHECK_VOLUME_HANDLE", handle.as_deref().unwrap_or(""))
            .env("PVCHECK_NODE", vol.node().unwrap_or(""))
            .env("PVCHECK_VOLUME_ID", vol.id())
            .env("PVCHECK_UPGRADE_STEP", &step.name);
        if !shared.conn.source.starts_with("in-cluster") {
            c.env("KUBECONFIG", &shared.conn.source);
        }
        if let Some(d) = &cwd {
            c.current_dir(d);
        }
    };
    if let Some(cmd) = &spec.command {
        let mut c = std::process::Command::new("sh");
        c.arg("-c").arg(cmd);
        env(&mut c);
        let out = crate::sys::run(&mut c, limit)?;
        if !out.status.success() {
            return Err(PlatformError::Command {
                command: format!("upgrade.command {cmd:?}"),
                status: out.status.to_string(),
                stderr: super::client::one_line(&String::from_utf8_lossy(&out.stderr)),
            });
        }
    }
    for r in &spec.rollout {
        let left = limit
            .saturating_sub(start.elapsed())
            .max(Duration::from_secs(1));
        conn.block_on(until_rolled_out(&vol.ctx.client, r, left))?;
    }
    if let Some(ready) = &spec.ready {
        loop {
            let left = limit.saturating_sub(start.elapsed());
            if left.is_zero() {
                return Err(PlatformError::Timeout {
                    command: format!("upgrade.ready {ready:?}"),
                    limit,
                });
            }
            let mut c = std::process::Command::new("sh");
            c.arg("-c").arg(ready);
            env(&mut c);
            if crate::sys::run(&mut c, left)?.status.success() {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    Ok(())
}

/// The rollout's progress: `Ok(true)` when complete.
fn progress(
    generation: Option<i64>,
    observed: Option<i64>,
    desired: i32,
    updated: i32,
    available: i32,
) -> bool {
    generation.is_some() && observed >= generation && updated >= desired && available >= desired
}

/// Waits until a DaemonSet, Deployment or StatefulSet has finished rolling out (what
/// `kubectl rollout status` checks), by watching it.
pub async fn until_rolled_out(
    client: &kube::Client,
    r: &Rollout,
    limit: Duration,
) -> Result<(), PlatformError> {
    let what = format!(
        "{} {}/{} to finish rolling out",
        r.kind.as_str(),
        r.namespace,
        r.name
    );
    let gone = |what: &str| Decision::Fail(format!("{what}: it does not exist"));
    let res = match r.kind {
        RolloutKind::DaemonSet => {
            let api: Api<DaemonSet> = Api::namespaced(client.clone(), &r.namespace);
            wait::until(api, &r.name, &what, limit, |d: Option<&DaemonSet>| {
                let Some(d) = d else { return gone(&what) };
                let s = d.status.clone().unwrap_or_default();
                if progress(
                    d.metadata.generation,
                    s.observed_generation,
                    s.desired_number_scheduled,
                    s.updated_number_scheduled.unwrap_or(0),
                    s.number_available.unwrap_or(0),
                ) {
                    Decision::Done(())
                } else {
                    Decision::Wait
                }
            })
            .await
        }
        RolloutKind::Deployment => {
            let api: Api<Deployment> = Api::namespaced(client.clone(), &r.namespace);
            wait::until(api, &r.name, &what, limit, |d: Option<&Deployment>| {
                let Some(d) = d else { return gone(&what) };
                let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                let s = d.status.clone().unwrap_or_default();
                let old = s.replicas.unwrap_or(0) > s.updated_replicas.unwrap_or(0);
                if !old
                    && progress(
                        d.metadata.generation,
                        s.observed_generation,
                        want,
                        s.updated_replicas.unwrap_or(0),
                        s.available_replicas.unwrap_or(0),
                    )
                {
                    Decision::Done(())
                } else {
                    Decision::Wait
                }
            })
            .await
        }
        RolloutKind::StatefulSet => {
            let api: Api<StatefulSet> = Api::namespaced(client.clone(), &r.namespace);
            wait::until(api, &r.name, &what, limit, |d: Option<&StatefulSet>| {
                let Some(d) = d else { return gone(&what) };
                let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                let s = d.status.clone().unwrap_or_default();
                if progress(
                    d.metadata.generation,
                    s.observed_generation,
                    want,
                    s.updated_replicas.unwrap_or(0),
                    s.available_replicas.unwrap_or(0),
                ) {
                    Decision::Done(())
                } else {
                    Decision::Wait
                }
            })
            .await
        }
    };
    res.map_err(|e| match e {
        wait::WaitError::Timeout { what, .. } => PlatformError::Timeout {
            command: what,
            limit,
        },
        e => PlatformError::Other(e.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::progress;

    /// A rollout the controller has not seen yet is not complete, whatever the counts say.
    #[test]
    fn a_rollout_is_complete_only_when_observed_updated_and_available() {
        assert!(
            !progress(Some(3), Some(2), 1, 1, 1),
            "observedGeneration behind"
        );
        assert!(
            !progress(Some(3), Some(3), 2, 1, 2),
            "not every pod updated"
        );
        assert!(
            !progress(Some(3), Some(3), 2, 2, 1),
            "not every pod available"
        );
        assert!(progress(Some(3), Some(3), 2, 2, 2));
    }
}
