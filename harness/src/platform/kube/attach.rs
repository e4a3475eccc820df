//! Detach: after a pod is gone, its volume's VolumeAttachment must go before the next pod
//! starts, so recreating a pod crosses a real detach and attach (as Dell's cert-csi does).
//! Attachable drivers without VolumeAttachments (flexVolume) are detached when the node's status
//! no longer lists the volume; drivers that do not attach have neither: nothing to wait for.
//!
//! Both ways the node's kubelet has a say: it mounts an attached volume only once its status
//! lists it in `volumesInUse`, and the attach/detach controller detaches only once that no
//! longer does; the kubelet writes its status every `nodeStatusUpdateFrequency` (10 s by
//! default). The timeline shows those waits apart (`in_use_reported`, `in_use_cleared`), from a
//! watch of the node, for CSI volumes.

use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::VolumeAttachment;
use kube::Api;
use kube::api::ListParams;
use kube::runtime::watcher;

use super::agent_pod::api_error;
use super::in_use::NodeWatches;
use super::wait::{self, Decision};
use crate::platform::PlatformError;

/// When, during a pod's start, its claim became bound, its volume attached and reported in use
/// by the node's kubelet (`None`: it already was when the watch began, or it never happened
/// while watched).
#[derive(Debug, Default)]
pub struct Milestones {
    pub bound: Option<Instant>,
    pub pv: Option<String>,
    pub attached: Option<Instant>,
    pub in_use: Option<Instant>,
}

/// Fills `m` as claim `pvc` gets bound, its PV's VolumeAttachment becomes attached and the
/// pod's `node` (sent once the pod is scheduled) lists the volume in `volumesInUse`; runs
/// beside a pod's start and is dropped when the pod runs (a driver without VolumeAttachments
/// never attaches: the watch simply ends with the pod's). Watches only, no polling; an error
/// ends it without a figure.
pub async fn milestones(
    client: &kube::Client,
    nodes: &NodeWatches,
    namespace: &str,
    pvc: &str,
    node: tokio::sync::oneshot::Receiver<String>,
    m: &mut Milestones,
) {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    let mut first = true;
    let bound = wait::until(
        claims,
        pvc,
        &format!("PVC {namespace}/{pvc} to be bound"),
        Duration::from_secs(24 * 3600),
        |c: Option<&PersistentVolumeClaim>| {
            let pv = c
                .and_then(|c| c.spec.as_ref())
                .and_then(|s| s.volume_name.clone());
            let was_first = std::mem::replace(&mut first, false);
            match pv {
                Some(pv) => Decision::Done((pv, was_first)),
                None => Decision::Wait,
            }
        },
    )
    .await;
    let Ok((pv, already)) = bound else { return };
    if !already {
        m.bound = Some(Instant::now());
    }
    m.pv = Some(pv.clone());
    let Milestones {
        attached, in_use, ..
    } = m;
    let attach = async {
        let api: Api<VolumeAttachment> = Api::all(client.clone());
        let mut stream = std::pin::pin!(watcher::watcher(api, watcher::Config::default()));
        let mut listing = false;
        while let Some(ev) = stream.next().await {
            let (va, during_list) = match ev {
                Ok(watcher::Event::Init) => {
                    listing = true;
                    continue;
                }
                Ok(watcher::Event::InitDone) => {
                    listing = false;
                    continue;
                }
                Ok(watcher::Event::InitApply(va)) => (va, listing),
                Ok(watcher::Event::Apply(va)) => (va, false),
                Ok(watcher::Event::Delete(_)) => continue,
                Err(_) => return,
            };
            let ours = va.spec.source.persistent_volume_name.as_deref() == Some(pv.as_str());
            if ours && va.status.as_ref().is_some_and(|s| s.attached) {
                if !during_list {
                    *attached = Some(Instant::now());
                }
                return;
            }
        }
    };
    // The kubelet mounts an attached volume once its own status lists it in use: watched on
    // the pod's node from its scheduling (the report may come before the attach or after it).
    let reported = async {
        let (Some(unique), Ok(node)) = (nodes.unique_name(client, &pv).await, node.await) else {
            return;
        };
        *in_use = nodes.until(&node, &unique, true).await;
    };
    tokio::join!(attach, reported);
}

/// The VolumeAttachments of PV `pv` (on `node`, when given).
pub async fn of_pv(
    client: &kube::Client,
    pv: &str,
    node: Option<&str>,
) -> Result<Vec<VolumeAttachment>, PlatformError> {
    let api: Api<VolumeAttachment> = Api::all(client.clone());
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(|e| api_error("listing VolumeAttachments", e))?;
    Ok(list
        .items
        .into_iter()
        .filter(|va| va.spec.source.persistent_volume_name.as_deref() == Some(pv))
        .filter(|va| node.is_none_or(|n| va.spec.node_name == n))
        .collect())
}

/// Waits until every VolumeAttachment of `pv` on `node` is gone; returns how many there were.
/// The wait goes to the trial's timeline: for one attachment of a CSI volume, until its node's
/// kubelet no longer reported it in use, then until it was gone; else as one detach.
pub async fn until_detached(
    client: &kube::Client,
    nodes: &NodeWatches,
    pv: &str,
    node: Option<&str>,
    limit: Duration,
) -> Result<usize, PlatformError> {
    let asked = Instant::now();
    let vas = of_pv(client, pv, node).await?;
    let cleared = match vas.as_slice() {
        [va] => {
            let (done, cleared) = gone_watching_in_use(client, nodes, pv, va, limit).await;
            done?;
            cleared
        }
        _ => {
            gone(client, pv, &vas, limit).await?;
            None
        }
    };
    if !vas.is_empty() {
        use crate::platform::timeline::{self, Wait};
        match cleared.filter(|c| *c >= asked) {
            Some(c) => {
                timeline::record(Wait::InUseCleared, pv, asked, c);
                timeline::since(Wait::VolumeDetached, pv, c);
            }
            None => timeline::since(Wait::VolumeDetached, pv, asked),
        }
    }
    Ok(vas.len())
}

/// [`gone`] for one attachment, with a watch beside it on the attachment's node for when its
/// kubelet stopped reporting the volume in use (dropped once the attachment is gone).
async fn gone_watching_in_use(
    client: &kube::Client,
    nodes: &NodeWatches,
    pv: &str,
    va: &VolumeAttachment,
    limit: Duration,
) -> (Result<(), PlatformError>, Option<Instant>) {
    let watch = async {
        match nodes.unique_name(client, pv).await {
            Some(unique) => nodes.until(&va.spec.node_name, &unique, false).await,
            None => None,
        }
    };
    let gone = gone(client, pv, std::slice::from_ref(va), limit);
    let mut gone = std::pin::pin!(gone);
    tokio::select! {
        r = &mut gone => (r, None),
        cleared = watch => (gone.await, cleared),
    }
}

/// Waits until each of `vas` (of PV `pv`) is gone.
async fn gone(
    client: &kube::Client,
    pv: &str,
    vas: &[VolumeAttachment],
    limit: Duration,
) -> Result<(), PlatformError> {
    let api: Api<VolumeAttachment> = Api::all(client.clone());
    for va in vas {
        let name = va.metadata.name.clone().unwrap_or_default();
        wait::until(
            api.clone(),
            &name,
            &format!("VolumeAttachment {name} of PV {pv} to be gone (detach)"),
            limit,
            |v: Option<&VolumeAttachment>| {
                match v {
                    None => Decision::Done(()),
                    Some(v) => match v.status.as_ref().and_then(|s| s.detach_error.as_ref()) {
                        // A detach error may clear on retry: keep waiting, but it is in the timeout's message.
                        Some(_) | None => Decision::Wait,
                    },
                }
            },
        )
        .await
        .map_err(|e| match e {
            wait::WaitError::Timeout { what, .. } => PlatformError::Timeout {
                command: what,
                limit,
            },
            e => PlatformError::Other(e.to_string()),
        })?;
    }
    Ok(())
}

/// Waits until `node`'s status no longer lists PV `pv` among its attached volumes: the detach of
/// attachable drivers that have no VolumeAttachment (flexVolume), as the attach/detach
/// controller records it. A volume that was never listed (a driver that does not attach) is
/// done at once. Entries are matched by the PV's name in their unique volume name
/// (`<vendor>/<driver>/<pv>` for flexVolume, as in `pvcheck/loop/pvcheck-1a2b3c4d-x`).
pub async fn until_off_node(
    client: &kube::Client,
    pv: &str,
    node: &str,
    limit: Duration,
) -> Result<(), PlatformError> {
    let api: Api<Node> = Api::all(client.clone());
    wait::until(
        api,
        node,
        &format!("PV {pv} to be detached from node {node} (node status volumesAttached)"),
        limit,
        |n: Option<&Node>| {
            let attached = n
                .and_then(|n| n.status.as_ref())
                .and_then(|s| s.volumes_attached.as_ref())
                .is_some_and(|v| v.iter().any(|a| lists(&a.name, pv)));
            if attached {
                Decision::Wait
            } else {
                Decision::Done(())
            }
        },
    )
    .await
    .map_err(|e| match e {
        wait::WaitError::Timeout { what, .. } => PlatformError::Timeout {
            command: what,
            limit,
        },
        e => PlatformError::Other(e.to_string()),
    })
}

/// A node status entry `unique` names PV `pv`: `…/<pv>` or `…^<pv>`.
fn lists(unique: &str, pv: &str) -> bool {
    unique
        .rsplit(['/', '^'])
        .next()
        .is_some_and(|last| last == pv)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_node_status_entry_names_its_pv_by_the_last_path_element() {
        assert!(super::lists("pvcheck/loop/pvcheck-1a-x", "pvcheck-1a-x"));
        assert!(!super::lists("pvcheck/loop/pvcheck-1a-xy", "pvcheck-1a-x"));
        assert!(!super::lists("kubernetes.io/csi/d^vol-1", "pvcheck-1a-x"));
    }
}
