//! The node plugin under a running pod (`integrity::live-upgrade`, `disruption::node-plugin-kill`):
//! the pod of the volume's CSI driver on the volume's node, replaced by the class's upgrade
//! (command, rollouts) or deleted with grace period 0, and when that happened.
//!
//! The plugin pod is found, not configured: on the node, a running pod owned by a DaemonSet
//! (or a StatefulSet, as the test cluster's single-node driver is) with a host path volume one
//! of whose path components is the driver's name, the `…/kubelet/plugins/<driver>/` directory
//! where every node plugin puts its socket. A watch on the node's pods, started before the
//! upgrade or the deletion, records when the old pod began terminating and was gone, and when a
//! pod of the same owner (another UID) was Ready on the node; then a watch of the node's
//! CSINode until it lists the driver again (the new plugin registered with the kubelet): the
//! window ends at the later of the two. A new pod that is Ready but never registered (within
//! [`REGISTER`]) fails the replacement: the kubelet can then neither mount nor unmount any
//! volume of the driver on that node, which is what a registrar that removes its successor's
//! socket as it exits does.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::storage::v1::CSINode;
use kube::Api;
use kube::api::{DeleteParams, ListParams};
use kube::runtime::watcher;
use serde_json::{Value, json};

use super::agent_pod::api_error;
use super::volume::KubeVolume;
use super::wait::{Decision, WaitError};
use crate::platform::{DriverWindow, PlatformError, UpgradeStep};

/// After the upgrade's rollouts are complete, how long the node's replacement may still take
/// to show in the watch (a rollout counts the pod available before the watch delivers it).
const AFTER_ROLLOUT: Duration = Duration::from_secs(30);
/// How long after its new node plugin pod is Ready the driver may take to be listed in the
/// node's CSINode again (the kubelet's plugin watcher registers it within seconds).
const REGISTER: Duration = Duration::from_secs(60);

/// One node plugin pod as found.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginPod {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// `DaemonSet` or `StatefulSet`, its name and UID.
    pub owner_kind: String,
    pub owner_name: String,
    pub owner_uid: String,
    /// `container=image` per container, and the image IDs the runtime resolved.
    pub images: Vec<String>,
    pub image_ids: Vec<String>,
}

impl PluginPod {
    fn of(p: &Pod) -> Option<PluginPod> {
        let owner = p
            .metadata
            .owner_references
            .as_ref()?
            .iter()
            .find(|o| o.controller == Some(true))?;
        let spec = p.spec.as_ref()?;
        let mut image_ids: Vec<String> = p
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .map(|cs| {
                cs.iter()
                    .map(|c| format!("{}={}", c.name, c.image_id))
                    .collect()
            })
            .unwrap_or_default();
        image_ids.sort();
        Some(PluginPod {
            namespace: p.metadata.namespace.clone().unwrap_or_default(),
            name: p.metadata.name.clone().unwrap_or_default(),
            uid: p.metadata.uid.clone().unwrap_or_default(),
            owner_kind: owner.kind.clone(),
            owner_name: owner.name.clone(),
            owner_uid: owner.uid.clone(),
            images: spec
                .containers
                .iter()
                .map(|c| format!("{}={}", c.name, c.image.as_deref().unwrap_or("")))
                .collect(),
            image_ids,
        })
    }

    fn facts(&self) -> Value {
        json!({
            "pod": format!("{}/{}", self.namespace, self.name),
            "uid": self.uid,
            "images": self.images,
            "image_ids": self.image_ids,
        })
    }
}

fn is_ready(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none()
        && p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Whether `p` is a node plugin of `driver`: owned by a DaemonSet or StatefulSet, running, with
/// a host path one of whose components is the driver's name.
fn serves(p: &Pod, driver: &str) -> bool {
    let owned = p.metadata.owner_references.as_ref().is_some_and(|os| {
        os.iter().any(|o| {
            o.controller == Some(true) && (o.kind == "DaemonSet" || o.kind == "StatefulSet")
        })
    });
    let running = p.metadata.deletion_timestamp.is_none()
        && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
    let mounts_socket_dir = p
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .is_some_and(|vs| {
            vs.iter().any(|v| {
                v.host_path
                    .as_ref()
                    .is_some_and(|h| h.path.split('/').any(|c| c == driver))
            })
        });
    owned && running && mounts_socket_dir
}

/// The one node plugin pod of `driver` among `pods` (the node's), preferring a DaemonSet's.
pub fn pick(pods: &[Pod], driver: &str, node: &str) -> Result<PluginPod, PlatformError> {
    let found: Vec<PluginPod> = pods
        .iter()
        .filter(|p| serves(p, driver))
        .filter_map(PluginPod::of)
        .collect();
    let daemons: Vec<&PluginPod> = found
        .iter()
        .filter(|p| p.owner_kind == "DaemonSet")
        .collect();
    let pool: Vec<&PluginPod> = if daemons.is_empty() {
        found.iter().collect()
    } else {
        daemons
    };
    match pool.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(PlatformError::Unsupported(format!(
            "no node plugin pod of driver {driver} found on node {node} (a running DaemonSet or StatefulSet pod with a host path named after the driver, …/plugins/{driver})"
        ))),
        many => Err(PlatformError::Unsupported(format!(
            "{} pods on node {node} look like driver {driver}'s node plugin ({}): pvcheck does not guess which to replace",
            many.len(),
            many.iter()
                .map(|p| format!("{}/{}", p.namespace, p.name))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// A request the cluster refused (RBAC, or an admission policy such as deploy/'s confinement)
/// is `Unsupported`: pvcheck may not replace the driver here, and the check says so.
fn refused(what: &str, e: kube::Error) -> PlatformError {
    match &e {
        kube::Error::Api(s) if s.code == 403 => PlatformError::Unsupported(format!(
            "{what} was refused ({}): pvcheck may not replace the driver's node plugin on this cluster",
            super::client::one_line(&s.message)
        )),
        _ => api_error(what, e),
    }
}

/// The volume's CSI driver (from its PV) and node plugin pod on its node.
fn find(vol: &KubeVolume) -> Result<(String, PluginPod), PlatformError> {
    let Some(node) = vol.node() else {
        return Err(PlatformError::Other(format!(
            "volume {}: no pod ran on it yet, so its PV and node are not known",
            crate::platform::Volume::id(vol)
        )));
    };
    let driver = driver_of(vol)?;
    let plugin = plugin_on(vol, &driver, node)?;
    Ok((driver, plugin))
}

/// The CSI driver of the volume's PV.
fn driver_of(vol: &KubeVolume) -> Result<String, PlatformError> {
    let ctx = &vol.ctx;
    let Some(pv) = vol.pv() else {
        return Err(PlatformError::Other(format!(
            "volume {}: no pod ran on it yet, so its PV and node are not known",
            crate::platform::Volume::id(vol)
        )));
    };
    ctx.shared
        .conn
        .block_on(super::csi::driver_of_pv(&ctx.client, pv))?
        .ok_or_else(|| {
            PlatformError::Unsupported(format!(
                "PV {pv} is not a CSI volume: there is no node plugin pod to replace"
            ))
        })
}

/// The node plugin pod of `driver` on `node`.
fn plugin_on(vol: &KubeVolume, driver: &str, node: &str) -> Result<PluginPod, PlatformError> {
    let ctx = &vol.ctx;
    ctx.shared.conn.block_on(async {
        let pods: Api<Pod> = Api::all(ctx.client.clone());
        let list = pods
            .list(&ListParams::default().fields(&format!("spec.nodeName={node}")))
            .await
            .map_err(|e| refused(&format!("listing the pods on node {node}"), e))?;
        pick(&list.items, driver, node)
    })
}

/// What the watch saw (Unix ms).
#[derive(Debug, Default, Clone)]
struct Seen {
    old_terminating_ms: Option<u64>,
    old_gone_ms: Option<u64>,
    new: Option<(PluginPod, u64)>,
}

/// Watches the plugin's namespace on `node` until a pod of `old`'s owner other than `old` is
/// Ready; `began` is sent once the watch has listed the pods (so nothing done after it is
/// missed). Ends with what it saw when `stop` fires first.
async fn watch(
    client: kube::Client,
    old: PluginPod,
    node: String,
    began: tokio::sync::oneshot::Sender<()>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) -> Result<Seen, PlatformError> {
    let api: Api<Pod> = Api::namespaced(client, &old.namespace);
    let cfg = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
    let mut stream = std::pin::pin!(watcher::watcher(api, cfg));
    let mut seen = Seen::default();
    let mut began = Some(began);
    let mut listed: BTreeSet<String> = BTreeSet::new();
    let mut errors = 0u32;
    loop {
        let item = tokio::select! {
            item = stream.next() => item,
            _ = &mut stop => return Ok(seen),
        };
        let Some(item) = item else {
            return Ok(seen);
        };
        let now = crate::sys::unix_ms();
        let ev = match item {
            Ok(ev) => {
                errors = 0;
                ev
            }
            Err(e) => {
                errors += 1;
                if errors >= 5 {
                    return Err(PlatformError::Other(format!(
                        "watching the pods on node {node}: {}",
                        super::client::one_line(&e.to_string())
                    )));
                }
                tokio::time::sleep(Duration::from_millis(250 * u64::from(errors))).await;
                continue;
            }
        };
        let mut look = |p: &Pod, deleted: bool| {
            let uid = p.metadata.uid.as_deref().unwrap_or("");
            if uid == old.uid {
                if p.metadata.deletion_timestamp.is_some() || deleted {
                    seen.old_terminating_ms.get_or_insert(now);
                }
                if deleted {
                    seen.old_gone_ms.get_or_insert(now);
                }
            } else if seen.new.is_none()
                && !deleted
                && is_ready(p)
                && p.metadata
                    .owner_references
                    .as_ref()
                    .is_some_and(|os| os.iter().any(|o| o.uid == old.owner_uid))
                && let Some(new) = PluginPod::of(p)
            {
                seen.new = Some((new, now));
            }
        };
        match ev {
            watcher::Event::Init => listed.clear(),
            watcher::Event::InitApply(p) => {
                listed.insert(p.metadata.uid.clone().unwrap_or_default());
                look(&p, false);
            }
            watcher::Event::InitDone => {
                if !listed.contains(&old.uid) {
                    // Gone while the watch was (re)listing.
                    seen.old_terminating_ms.get_or_insert(now);
                    seen.old_gone_ms.get_or_insert(now);
                }
                if let Some(b) = began.take() {
                    let _ = b.send(());
                }
            }
            watcher::Event::Apply(p) => look(&p, false),
            watcher::Event::Delete(p) => look(&p, true),
        }
        if seen.new.is_some() && seen.old_gone_ms.is_some() {
            return Ok(seen);
        }
    }
}

/// [`watch`] of node `node`'s pods, running once its first list is in.
struct PodWatch {
    task: tokio::task::JoinHandle<Result<Seen, PlatformError>>,
    stop: tokio::sync::oneshot::Sender<()>,
    node: String,
}

impl PodWatch {
    /// Starts the watch of `old`'s node and waits (30 s at most) until it has listed the pods.
    fn start(vol: &KubeVolume, old: &PluginPod, node: &str) -> Result<PodWatch, PlatformError> {
        let conn = &vol.ctx.shared.conn;
        let (began_tx, began_rx) = tokio::sync::oneshot::channel();
        let (stop, stop_rx) = tokio::sync::oneshot::channel();
        let task = conn.rt.spawn(watch(
            vol.ctx.client.clone(),
            old.clone(),
            node.to_string(),
            began_tx,
            stop_rx,
        ));
        let listed =
            conn.block_on(async { tokio::time::timeout(Duration::from_secs(30), began_rx).await });
        if !matches!(listed, Ok(Ok(()))) {
            task.abort();
            return Err(PlatformError::Other(format!(
                "watching the pods on node {node}: no list within 30 s"
            )));
        }
        Ok(PodWatch {
            task,
            stop,
            node: node.to_string(),
        })
    }

    /// What the watch saw: by itself once the new pod is Ready, else what it had at `deadline`.
    fn seen(self, vol: &KubeVolume, deadline: tokio::time::Instant) -> Result<Seen, PlatformError> {
        let PodWatch { task, stop, node } = self;
        let seen = vol.ctx.shared.conn.block_on(async {
            let mut task = task;
            match tokio::time::timeout_at(deadline, &mut task).await {
                Ok(r) => r,
                Err(_) => {
                    let _ = stop.send(());
                    task.await
                }
            }
        });
        seen.map_err(|e| PlatformError::Other(format!("watching the pods on node {node}: {e}")))?
    }
}

/// When the node's kubelet lists `driver` in CSINode `node` (Unix ms), after `new` was Ready:
/// `Ok(Err(reason))` where reading CSINodes is refused (the window then ends at Ready, and the
/// report says registration was not checked); an error where it is not listed within
/// [`REGISTER`].
fn registered(
    vol: &KubeVolume,
    what: &str,
    driver: &str,
    node: &str,
    new: &PluginPod,
) -> Result<Result<u64, String>, PlatformError> {
    let client = vol.ctx.client.clone();
    let listed = vol
        .ctx
        .shared
        .conn
        .block_on(until_listed(client, node, driver, REGISTER));
    match listed {
        Ok(ms) => Ok(Ok(ms)),
        Err(WaitError::Api { reason, .. }) => Ok(Err(reason)),
        Err(e) => Err(PlatformError::Other(format!(
            "{what} on node {node}: the new node plugin pod {}/{} of driver {driver} was Ready, but the kubelet did not list the driver in CSINode {node} within {:.0} s ({e}): the new plugin did not register with the kubelet (a registrar naming the wrong socket, or one whose socket the old pod's registrar removed as it exited), so no volume of the driver can be mounted or unmounted on that node",
            new.namespace,
            new.name,
            REGISTER.as_secs_f64()
        ))),
    }
}

/// Waits (a watch) until CSINode `node` lists `driver`; when it did (Unix ms).
async fn until_listed(
    client: kube::Client,
    node: &str,
    driver: &str,
    limit: Duration,
) -> Result<u64, WaitError> {
    let api: Api<CSINode> = Api::all(client);
    super::wait::until(
        api,
        node,
        &format!("CSINode {node} to list driver {driver}"),
        limit,
        |c: Option<&CSINode>| {
            if super::csi::lists(c, driver) {
                Decision::Done(crate::sys::unix_ms())
            } else {
                Decision::Wait
            }
        },
    )
    .await
}

/// Replaces the node plugin under the volume's pod by `act` (the upgrade, or the deletion) and
/// returns the window: `act` returns how long the replacement may still take once it is done.
fn replace(
    vol: &KubeVolume,
    what: &str,
    act: impl FnOnce(&PluginPod) -> Result<(Value, Duration), PlatformError>,
) -> Result<DriverWindow, PlatformError> {
    let (driver, old) = find(vol)?;
    let node = vol.node().unwrap_or_default().to_string();
    let pods = PodWatch::start(vol, &old, &node)?;
    let began_ms = crate::sys::unix_ms();
    let start = Instant::now();
    let acted = act(&old);
    let (report, grace) = match acted {
        Ok(r) => r,
        Err(e) => {
            pods.task.abort();
            return Err(e);
        }
    };
    let acted_s = start.elapsed().as_secs_f64();
    let seen = pods.seen(vol, tokio::time::Instant::now() + grace)?;
    let waited = start.elapsed();
    let old_facts = old.facts();
    let Some((new, ready_ms)) = seen.new.clone() else {
        if seen.old_terminating_ms.is_none() {
            // Nothing was replaced: no window, and nothing tested (the check is ignored with
            // this, never passed), not a driver that failed to come back.
            return Err(PlatformError::Unsupported(format!(
                "{what} on node {node}: the node plugin pod {}/{} of driver {driver} still runs, untouched, {:.0} s later: nothing was replaced under the agent, so this tested no upgrade of the driver",
                old.namespace,
                old.name,
                waited.as_secs_f64()
            )));
        }
        return Err(PlatformError::Other(format!(
            "{what} on node {node}: the node plugin pod {}/{} of driver {driver} ({} {}, uid {}) was deleted, and no new pod of it was Ready on the node within {:.0} s",
            old.namespace,
            old.name,
            old.owner_kind,
            old.owner_name,
            old.uid,
            waited.as_secs_f64()
        )));
    };
    let image_changed = new.images != old.images || new.image_ids != old.image_ids;
    let registration = registered(vol, what, &driver, &node, &new)?;
    Ok(DriverWindow {
        what: what.to_string(),
        began_ms,
        old_stopped_ms: seen.old_gone_ms.or(seen.old_terminating_ms),
        new_answered_ms: answered(ready_ms, &registration),
        node: Some(node.clone()),
        report: json!({
            "registered_ms": registration.as_ref().ok(),
            "registration_not_checked": registration.as_ref().err(),
            "node": node,
            "driver": driver,
            "owner": format!("{} {}/{}", old.owner_kind, old.namespace, old.owner_name),
            "old": old_facts,
            "new": new.facts(),
            "image_changed": image_changed,
            "old_terminating_ms": seen.old_terminating_ms,
            "old_gone_ms": seen.old_gone_ms,
            "new_ready_ms": ready_ms,
            "action_seconds": acted_s,
            "action": report,
        }),
    })
}

/// When the new driver answered: Ready, and registered with the kubelet where that was seen.
fn answered(ready_ms: u64, registration: &Result<u64, String>) -> u64 {
    registration.as_ref().map_or(ready_ms, |&r| r.max(ready_ms))
}

/// `Volume::upgrade_live`: the class's upgrade (command, rollouts, ready) while the pods run.
pub fn upgrade_live(vol: &KubeVolume, step: &UpgradeStep) -> Result<DriverWindow, PlatformError> {
    replace(vol, &step.name, |_| upgrade_step(vol, step, None))
}

/// Runs upgrade step `step` (command, rollouts) for [`replace`] and [`replace_nodes`]: what it
/// did, and how long the node plugin's replacement may still take. With rollouts waited for,
/// the nodes' new pods are Ready already; without, the command may have only started the
/// rollout.
fn upgrade_step(
    vol: &KubeVolume,
    step: &UpgradeStep,
    nodes: Option<&[String]>,
) -> Result<(Value, Duration), PlatformError> {
    let rollouts = vol
        .class
        .upgrade
        .as_ref()
        .map(|u| u.rollout.len())
        .unwrap_or(0);
    let limit = vol.ctx.timeouts.upgrade;
    let start = Instant::now();
    super::upgrade::run(vol, step)?;
    let grace = if rollouts > 0 {
        AFTER_ROLLOUT
    } else {
        limit.saturating_sub(start.elapsed()).max(AFTER_ROLLOUT)
    };
    Ok((
        json!({"step": step.name, "rollouts_waited_for": rollouts, "seconds": start.elapsed().as_secs_f64(), "nodes": nodes}),
        grace,
    ))
}

/// `Volume::upgrade_live_nodes`: the class's upgrade once, while agents write on every node of
/// `nodes`: [`replace_nodes`] by the upgrade.
pub fn upgrade_live_nodes(
    vol: &KubeVolume,
    step: &UpgradeStep,
    nodes: &[String],
) -> Result<(Vec<DriverWindow>, Vec<String>), PlatformError> {
    replace_nodes(vol, &step.name, nodes, |_| {
        upgrade_step(vol, step, Some(nodes))
    })
}

/// `Volume::kill_driver_nodes`: the node plugin pod of every node of `nodes` deleted with grace
/// period 0, one right after the other (a crash of the driver on every node under the agents);
/// their controller starts new ones. [`replace_nodes`] by those deletions.
pub fn kill_nodes(
    vol: &KubeVolume,
    nodes: &[String],
) -> Result<(Vec<DriverWindow>, Vec<String>), PlatformError> {
    let limit = vol.ctx.timeouts.upgrade.max(vol.ctx.timeouts.pod_start);
    let ctx = vol.ctx.clone();
    replace_nodes(vol, "pod deleted with grace period 0", nodes, |olds| {
        for old in olds {
            delete_now(&ctx, old)?;
        }
        Ok((json!({"grace_period_seconds": 0, "nodes": nodes}), limit))
    })
}

/// Deletes the node plugin pod `old` with grace period 0, only that pod (its UID as the
/// precondition).
fn delete_now(ctx: &super::context::VolumeCtx, old: &PluginPod) -> Result<(), PlatformError> {
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &old.namespace);
    ctx.shared.conn.block_on(async {
        api.delete(
            &old.name,
            &DeleteParams::default()
                .grace_period(0)
                .preconditions(kube::api::Preconditions {
                    uid: Some(old.uid.clone()),
                    resource_version: None,
                }),
        )
        .await
        .map(|_| ())
        .map_err(|e| {
            refused(
                &format!(
                    "deleting the node plugin pod {}/{}",
                    old.namespace, old.name
                ),
                e,
            )
        })
    })
}

/// Replaces the driver's node plugin on every node of `nodes` by `act` (given the old pods, in
/// the order of `nodes`; it returns what it did and how long the replacement may still take
/// once it is done), while agents write there. Each node is followed by a watch of its pods
/// started before `act` (the old plugin pod's UID gone, a new pod of its owner Ready there):
/// one window per node, in the order of `nodes`, from when that node's old pod began
/// terminating (`act`'s start where the watch did not see it) to when the new one was Ready.
/// The second list names the nodes whose plugin pod `act` never touched (still the same pod,
/// not terminating): no window there; the caller says so (an upgrade that replaces nothing
/// proves nothing), it is not a failure of the driver.
fn replace_nodes(
    vol: &KubeVolume,
    what: &str,
    nodes: &[String],
    act: impl FnOnce(&[PluginPod]) -> Result<(Value, Duration), PlatformError>,
) -> Result<(Vec<DriverWindow>, Vec<String>), PlatformError> {
    let driver = driver_of(vol)?;
    let mut olds = Vec::new();
    for node in nodes {
        olds.push(plugin_on(vol, &driver, node)?);
    }
    let mut watches: Vec<PodWatch> = Vec::new();
    for (node, old) in nodes.iter().zip(&olds) {
        match PodWatch::start(vol, old, node) {
            Ok(w) => watches.push(w),
            Err(e) => {
                for w in &watches {
                    w.task.abort();
                }
                return Err(e);
            }
        }
    }
    let began_ms = crate::sys::unix_ms();
    let start = Instant::now();
    let (action, grace) = match act(&olds) {
        Ok(r) => r,
        Err(e) => {
            for w in &watches {
                w.task.abort();
            }
            return Err(e);
        }
    };
    let acted_s = start.elapsed().as_secs_f64();
    let deadline = tokio::time::Instant::now() + grace;
    let mut windows = Vec::new();
    let mut untouched = Vec::new();
    for ((node, old), pods) in nodes.iter().zip(olds).zip(watches) {
        let seen = pods.seen(vol, deadline)?;
        let Some((new, ready_ms)) = seen.new.clone() else {
            if seen.old_terminating_ms.is_none() {
                untouched.push(format!("{}/{} on node {node}", old.namespace, old.name));
                continue;
            }
            return Err(PlatformError::Other(format!(
                "{what} on node {node}: the node plugin pod {}/{} of driver {driver} ({} {}, uid {}) was deleted, and no new pod of it was Ready on the node within {:.0} s",
                old.namespace,
                old.name,
                old.owner_kind,
                old.owner_name,
                old.uid,
                start.elapsed().as_secs_f64()
            )));
        };
        let image_changed = new.images != old.images || new.image_ids != old.image_ids;
        let registration = registered(vol, what, &driver, node, &new)?;
        windows.push(DriverWindow {
            what: what.to_string(),
            began_ms: seen.old_terminating_ms.unwrap_or(began_ms).max(began_ms),
            old_stopped_ms: seen.old_gone_ms.or(seen.old_terminating_ms),
            new_answered_ms: answered(ready_ms, &registration),
            node: Some(node.clone()),
            report: json!({
                "registered_ms": registration.as_ref().ok(),
                "registration_not_checked": registration.as_ref().err(),
                "node": node,
                "driver": driver,
                "owner": format!("{} {}/{}", old.owner_kind, old.namespace, old.owner_name),
                "old": old.facts(),
                "new": new.facts(),
                "image_changed": image_changed,
                "upgrade_began_ms": began_ms,
                "old_terminating_ms": seen.old_terminating_ms,
                "old_gone_ms": seen.old_gone_ms,
                "new_ready_ms": ready_ms,
                "action_seconds": acted_s,
                "action": action,
            }),
        });
    }
    Ok((windows, untouched))
}

/// `Volume::kill_driver`: the node plugin pod deleted with grace period 0; its controller
/// starts another on the node.
pub fn kill(vol: &KubeVolume) -> Result<DriverWindow, PlatformError> {
    let limit = vol.ctx.timeouts.upgrade.max(vol.ctx.timeouts.pod_start);
    let ctx = vol.ctx.clone();
    replace(vol, "pod deleted with grace period 0", |old| {
        delete_now(&ctx, old)?;
        Ok((json!({"grace_period_seconds": 0}), limit))
    })
}

#[cfg(test)]
mod tests {
    use super::super::fake_api::{FakeApi, block_on, forbidding};
    use std::sync::Arc;

    fn csinode(drivers: &[&str]) -> String {
        let ds: Vec<_> = drivers
            .iter()
            .map(|d| json!({"name": d, "nodeID": "n1"}))
            .collect();
        json!({"apiVersion": "storage.k8s.io/v1", "kind": "CSINodeList",
            "metadata": {"resourceVersion": "5"},
            "items": [{"apiVersion": "storage.k8s.io/v1", "kind": "CSINode",
                "metadata": {"name": "n1", "resourceVersion": "5"}, "spec": {"drivers": ds}}]})
        .to_string()
    }

    fn listed(api: &FakeApi, limit: Duration) -> Result<u64, WaitError> {
        block_on(async { until_listed(api.client(), "n1", "d.example.com", limit).await })
    }

    /// CI stop 30: the old registrar removed its successor's socket as it exited, the kubelet
    /// deregistered the driver, and the check only failed three minutes later on a pod that
    /// could not be unmounted. The window now waits for the node's CSINode to list the driver:
    /// listed is when it answered; never listed is a timeout (the replacement fails naming it);
    /// reading CSINodes refused is its own answer (a warning, not a pass or a failure).
    #[test]
    fn a_new_node_plugin_answers_only_once_the_node_s_csinode_lists_its_driver() {
        let api = FakeApi::start(Arc::new(|_m: &str, p: &str| {
            if p.contains("watch=true") {
                return None;
            }
            Some((200, csinode(&["other.example.com", "d.example.com"])))
        }));
        assert!(listed(&api, Duration::from_secs(5)).is_ok());

        let api = FakeApi::start(Arc::new(|_m: &str, p: &str| {
            if p.contains("watch=true") {
                std::thread::sleep(Duration::from_secs(3));
                return None;
            }
            Some((200, csinode(&["other.example.com"])))
        }));
        match listed(&api, Duration::from_millis(600)) {
            Err(WaitError::Timeout { what, .. }) => {
                assert_eq!(what, "CSINode n1 to list driver d.example.com")
            }
            other => panic!("{other:?}"),
        }

        let api = FakeApi::start(forbidding("csinodes.storage.k8s.io \"n1\" is forbidden"));
        match listed(&api, Duration::from_secs(5)) {
            Err(WaitError::Api { reason, .. }) => assert!(reason.contains("403"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }

    use super::*;

    fn pod(name: &str, owner_kind: &str, host_path: &str, phase: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "kube-system", "uid": format!("uid-{name}"),
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": owner_kind, "name": "csi-node",
                    "uid": "owner-1", "controller": true}]},
            "spec": {"containers": [{"name": "driver", "image": "driver:1"}],
                "volumes": [{"name": "socket", "hostPath": {"path": host_path}}]},
            "status": {"phase": phase}
        }))
        .unwrap()
    }

    /// The plugin is the pod with the driver's socket directory; the registration directory
    /// every plugin shares does not make a pod the plugin of every driver.
    #[test]
    fn the_node_plugin_is_the_pod_mounting_the_drivers_socket_directory() {
        let pods = vec![
            pod(
                "other",
                "DaemonSet",
                "/var/lib/kubelet/plugins/other.csi.io",
                "Running",
            ),
            pod(
                "reg",
                "DaemonSet",
                "/var/lib/kubelet/plugins_registry",
                "Running",
            ),
            pod(
                "mine",
                "DaemonSet",
                "/var/lib/kubelet/plugins/my.csi.io/",
                "Running",
            ),
        ];
        let p = pick(&pods, "my.csi.io", "n1").unwrap();
        assert_eq!(
            (p.name.as_str(), p.owner_kind.as_str()),
            ("mine", "DaemonSet")
        );
    }

    /// None found, or two of the same rank: Unsupported with one line naming the node, never a guess.
    #[test]
    fn no_plugin_or_two_plugins_is_unsupported_naming_the_node() {
        let pods = vec![
            pod("done", "DaemonSet", "/k/plugins/my.csi.io", "Succeeded"),
            pod("rs", "ReplicaSet", "/k/plugins/my.csi.io", "Running"),
        ];
        let e = pick(&pods, "my.csi.io", "n1").unwrap_err().to_string();
        assert!(
            e.contains("no node plugin pod of driver my.csi.io found on node n1"),
            "{e}"
        );
        let pods = vec![
            pod("a", "DaemonSet", "/k/plugins/my.csi.io", "Running"),
            pod("b", "DaemonSet", "/k/plugins/my.csi.io", "Running"),
        ];
        let e = pick(&pods, "my.csi.io", "n1").unwrap_err().to_string();
        assert!(
            e.contains("2 pods on node n1") && e.contains("kube-system/a, kube-system/b"),
            "{e}"
        );
    }

    /// A DaemonSet's pod wins over a StatefulSet's (a controller pinned to the node).
    #[test]
    fn a_daemonset_pod_is_preferred_to_a_statefulset_pod() {
        let pods = vec![
            pod("ctrl", "StatefulSet", "/k/plugins/my.csi.io", "Running"),
            pod("node", "DaemonSet", "/k/plugins/my.csi.io", "Running"),
        ];
        assert_eq!(pick(&pods, "my.csi.io", "n1").unwrap().name, "node");
        let pods = vec![pod(
            "ctrl",
            "StatefulSet",
            "/k/plugins/my.csi.io",
            "Running",
        )];
        assert_eq!(pick(&pods, "my.csi.io", "n1").unwrap().name, "ctrl");
    }
}
