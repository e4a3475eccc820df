//! `upgrade.drain: true` as cluster operators do it before upgrading a driver whose upgrade
//! breaks its mounts (what FUSE drivers document): cordon the nodes, evict the workloads
//! through the Eviction API (as `kubectl drain` does: disruption budgets respected, the pod's
//! grace period honoured), upgrade, uncordon, and let the workloads come back.
//!
//! A node is pvcheck's to uncordon only when pvcheck cordoned it: it must have been schedulable
//! before, and carries [`labels::CORDONED_BY`] with the run id while cordoned, so `pvcheck
//! cleanup` of a run that was killed mid-drain finds it and makes it schedulable again. A node
//! someone else cordoned is left as it is. A cluster that refuses the cordon or the eviction
//! (RBAC: deploy/ grants neither) is said in a warning, and the drain goes on without it (the
//! pods are then deleted as `stop_pod` deletes them): the check still requires zero loss.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::{EvictParams, Patch, PatchParams};
use serde_json::json;

use super::agent_pod::api_error;
use super::context::VolumeCtx;
use super::labels;
use crate::platform::PlatformError;

/// Whether the API server refused the call for lack of permission.
fn forbidden(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 403)
}

/// Cordons every node of `nodes` that is schedulable now, labelled with the run. Returns the
/// nodes it cordoned (only those are uncordoned later) and warnings (a node already
/// unschedulable, a refused cordon).
pub async fn cordon(
    v: &VolumeCtx,
    nodes: &[String],
) -> Result<(Vec<String>, Vec<String>), PlatformError> {
    let api: Api<Node> = Api::all(v.client.clone());
    let mut cordoned = Vec::new();
    let mut warnings = Vec::new();
    for node in nodes {
        let n = api
            .get(node)
            .await
            .map_err(|e| api_error(&format!("reading node {node}"), e))?;
        if n.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
            warnings.push(format!(
                "node {node} was already cordoned by someone else: pvcheck left it so, and will not uncordon it"
            ));
            continue;
        }
        let patch = json!({
            "metadata": {"labels": {labels::CORDONED_BY: v.shared.run_id}},
            "spec": {"unschedulable": true},
        });
        match api
            .patch(node, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => cordoned.push(node.clone()),
            Err(e) if forbidden(&e) => warnings.push(format!(
                "cordoning node {node} for the drained upgrade was refused ({}): the agents were evicted without it",
                super::client::one_line(&e.to_string())
            )),
            Err(e) => return Err(api_error(&format!("cordoning node {node}"), e)),
        }
    }
    Ok((cordoned, warnings))
}

/// Makes `nodes` schedulable again and removes the run's label, where the label is still the
/// run's (a node someone uncordoned and cordoned again since is theirs).
pub async fn uncordon(
    client: &kube::Client,
    run_id: &str,
    nodes: &[String],
) -> Result<(), PlatformError> {
    let api: Api<Node> = Api::all(client.clone());
    let mut failed = Vec::new();
    for node in nodes {
        let ours = match api.get_opt(node).await {
            Ok(Some(n)) => n
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(labels::CORDONED_BY))
                .is_some_and(|r| r == run_id),
            Ok(None) => false,
            Err(e) => {
                failed.push(format!(
                    "{node}: {}",
                    super::client::one_line(&e.to_string())
                ));
                continue;
            }
        };
        if !ours {
            continue;
        }
        let patch = json!({
            "metadata": {"labels": {labels::CORDONED_BY: null}},
            "spec": {"unschedulable": false},
        });
        if let Err(e) = api
            .patch(node, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            failed.push(format!(
                "{node}: {}",
                super::client::one_line(&e.to_string())
            ));
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(PlatformError::Infrastructure(format!(
            "uncordoning the nodes pvcheck cordoned failed ({}): run `pvcheck cleanup --run {run_id}` or `kubectl uncordon` them",
            failed.join("; ")
        )))
    }
}

/// Evicts every pod of the volume (label) through the Eviction API, retrying while a
/// disruption budget refuses it (429), and waits until they are gone, within `limit`. Returns
/// the pods evicted and a warning when the cluster refused evictions (they were deleted).
pub async fn evict_volume_pods(
    v: &VolumeCtx,
    limit: Duration,
) -> Result<(Vec<String>, Option<String>), PlatformError> {
    let ns = &v.shared.namespace;
    let api: Api<Pod> = Api::namespaced(v.client.clone(), ns);
    let list = super::agent_pod::volume_pods(v).await?;
    let deadline = Instant::now() + limit;
    let mut evicted = Vec::new();
    let mut warning = None;
    for p in list {
        let name = p.metadata.name.unwrap_or_default();
        loop {
            match api.evict(&name, &EvictParams::default()).await {
                Ok(_) => {
                    evicted.push(format!("{ns}/{name}"));
                    break;
                }
                Err(kube::Error::Api(s)) if s.code == 404 => break,
                Err(kube::Error::Api(s)) if s.code == 429 && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) if forbidden(&e) => {
                    warning = Some(format!(
                        "evicting pod {ns}/{name} for the drained upgrade was refused ({}): it was deleted instead",
                        super::client::one_line(&e.to_string())
                    ));
                    super::agent_pod::delete(v, &name, 10, false, Duration::ZERO).await?;
                    break;
                }
                Err(e) => return Err(api_error(&format!("evicting pod {ns}/{name}"), e)),
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        super::agent_pod::until_gone(
            api.clone(),
            &name,
            &format!("evicted pod {ns}/{name} to be gone"),
            left.max(Duration::from_secs(1)),
        )
        .await?;
    }
    Ok((evicted, warning))
}
