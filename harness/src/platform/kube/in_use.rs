//! The volumes each node's kubelet reports in use (`status.volumesInUse`), for the timeline's
//! `in_use_reported` and `in_use_cleared`: the kubelet mounts an attached volume only once its
//! status lists it, and the attach/detach controller detaches only once it no longer does; the
//! kubelet writes its status every `nodeStatusUpdateFrequency` (10 s by default).
//!
//! One watch per node, started by the first wait on that node and shared by every later one
//! (ten classes start dozens of pods on each node at once: a watch each would send every
//! status change of the node to each of them). A figure, never a verdict: a watch that fails
//! ends, and the waits on it give no figure.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Instant;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, PersistentVolume};
use kube::Api;
use kube::runtime::watcher;
use tokio::sync::watch;

/// What a node's kubelet last reported in use (`None` until the watch's first answer).
type Reported = Option<BTreeSet<String>>;

/// The run's node watches, by node name; their requests count as the run's own. Also the
/// unique volume names of the run's PVs, read once each.
pub struct NodeWatches {
    client: kube::Client,
    by_node: Mutex<HashMap<String, watch::Receiver<Reported>>>,
    unique: Mutex<HashMap<String, Option<String>>>,
}

impl NodeWatches {
    pub fn new(client: kube::Client) -> NodeWatches {
        NodeWatches {
            client,
            by_node: Mutex::new(HashMap::new()),
            unique: Mutex::new(HashMap::new()),
        }
    }

    /// The name the kubelet and the attach/detach controller give PV `pv`'s volume in a node's
    /// status (`volumesInUse`, `volumesAttached`): `kubernetes.io/csi/<driver>^<volumeHandle>`.
    /// `None` for a volume of another kind, or when the PV cannot be read (then asked again
    /// next time). Read once per PV: a PV's driver and handle never change.
    pub async fn unique_name(&self, client: &kube::Client, pv: &str) -> Option<String> {
        if let Some(u) = self
            .unique
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(pv)
        {
            return u.clone();
        }
        let api: Api<PersistentVolume> = Api::all(client.clone());
        let unique = api
            .get_opt(pv)
            .await
            .ok()??
            .spec
            .and_then(|s| s.csi)
            .map(|c| format!("kubernetes.io/csi/{}^{}", c.driver, c.volume_handle));
        self.unique
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(pv.to_string(), unique.clone());
        unique
    }

    /// Waits until `node`'s kubelet reports volume `unique` in use (`want`) or no longer
    /// (`!want`); returns when that changed. `None` when it already was so when asked (nothing
    /// was waited for) or the node's watch ended. Must run on the platform's runtime.
    pub async fn until(&self, node: &str, unique: &str, want: bool) -> Option<Instant> {
        wait_on(self.subscribe(node), unique, want).await
    }

    fn subscribe(&self, node: &str) -> watch::Receiver<Reported> {
        let mut g = self.by_node.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(rx) = g.get(node).filter(|rx| rx.has_changed().is_ok()) {
            return rx.clone();
        }
        let (tx, rx) = watch::channel(None);
        tokio::spawn(follow(Api::all(self.client.clone()), node.to_string(), tx));
        g.insert(node.to_string(), rx.clone());
        rx
    }
}

/// [`NodeWatches::until`] on one node's receiver.
async fn wait_on(mut rx: watch::Receiver<Reported>, unique: &str, want: bool) -> Option<Instant> {
    let now = rx
        .wait_for(Option::is_some)
        .await
        .ok()?
        .as_ref()
        .is_some_and(|s| s.contains(unique));
    if now == want {
        return None;
    }
    rx.wait_for(|r| r.as_ref().is_some_and(|s| s.contains(unique) == want))
        .await
        .ok()?;
    Some(Instant::now())
}

/// Node `name`'s `volumesInUse` into `tx` at each change, for the rest of the run, unless the
/// watch fails as [`super::wait::until`]'s would (RBAC refuses it, or five errors in a row):
/// then it ends, and the next wait on the node starts another.
async fn follow(api: Api<Node>, name: String, tx: watch::Sender<Reported>) {
    let mut stream = std::pin::pin!(watcher::watch_object(api, &name));
    let mut errors = 0u32;
    while let Some(item) = stream.next().await {
        match item {
            Ok(node) => {
                errors = 0;
                let now = reported(node.as_ref());
                tx.send_if_modified(|r| {
                    let changed = r.as_ref() != Some(&now);
                    *r = Some(now);
                    changed
                });
            }
            Err(e) => {
                if super::wait::after_error(&mut errors, &e).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// The unique volume names node `n`'s status lists in `volumesInUse`.
fn reported(n: Option<&Node>) -> BTreeSet<String> {
    n.and_then(|n| n.status.as_ref())
        .and_then(|s| s.volumes_in_use.clone())
        .unwrap_or_default()
        .into_iter()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first answer says whether anything was waited for; a later change is the moment; a
    /// watch that ended gives no figure.
    #[test]
    fn a_wait_gives_a_moment_only_when_the_report_changed_after_it_began() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let set = |v: &[&str]| Some(v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>());
        rt.block_on(async {
            let (tx, rx) = watch::channel::<Reported>(None);
            // The watch's first answer comes after the wait began: still the state as asked.
            let first = async {
                tokio::task::yield_now().await;
                tx.send(set(&["v1"])).unwrap();
            };
            let (got, ()) = tokio::join!(wait_on(rx.clone(), "v1", true), first);
            assert_eq!(got, None, "already in use when asked: nothing waited for");
            let later = async {
                tokio::task::yield_now().await;
                tx.send(set(&["v1", "v2"])).unwrap();
            };
            let (got, ()) = tokio::join!(wait_on(rx.clone(), "v2", true), later);
            assert!(got.is_some(), "reported after the wait began");
            let clear = async {
                tokio::task::yield_now().await;
                tx.send(set(&["v2"])).unwrap();
            };
            let (got, ()) = tokio::join!(wait_on(rx.clone(), "v1", false), clear);
            assert!(got.is_some(), "cleared after the wait began");
            drop(tx);
            assert_eq!(wait_on(rx, "v3", true).await, None);
        });
    }

    #[test]
    fn the_report_is_the_nodes_volumes_in_use() {
        let n: Node = serde_json::from_value(serde_json::json!({
            "metadata": { "name": "n1" },
            "status": { "volumesInUse": ["kubernetes.io/csi/d^h1", "kubernetes.io/csi/d^h2"] }
        }))
        .unwrap();
        assert_eq!(reported(Some(&n)).len(), 2);
        assert!(reported(None).is_empty());
    }
}
