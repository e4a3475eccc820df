//! What runs left in the cluster, found and removed by label only: an object without
//! `pvcheck.io/run-id` is never deleted (csi-test#223 deleted every volume it listed).
//!
//! A run lives in its namespace `pvcheck-<run id>`; removing a run deletes its namespace and
//! waits until it is gone, then until the PVs its claims were bound to are gone too (leaked
//! disks hid deletion bugs: kubernetes#74380). VolumeAttachments are listed, not deleted: the
//! attach/detach controller owns them, and one that stays is the driver's leak to report.

use std::time::Duration;

use k8s_openapi::api::core::v1::{
    ConfigMap, Namespace, Node, PersistentVolume, PersistentVolumeClaim, Pod,
};
use k8s_openapi::api::storage::v1::VolumeAttachment;
use kube::Api;
use kube::api::{DeleteParams, DynamicObject, ListParams};

use super::agent_pod::api_error;
use super::context::Shared;
use super::labels;
use super::wait::{self, Decision};
use crate::platform::{Leftover, PlatformError, RunFilter};

/// How long removing one run may take (namespace finalization, PV deletion by the driver).
const REMOVE_LIMIT: Duration = Duration::from_secs(300);

fn leftover(run_id: &str, class: Option<String>, kind: &str, what: String) -> Leftover {
    Leftover {
        run_id: run_id.to_string(),
        class,
        kind: kind.to_string(),
        what,
    }
}

fn label(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    key: &str,
) -> Option<String> {
    meta.labels.as_ref().and_then(|l| l.get(key).cloned())
}

/// The runs (namespaces) the filter selects: (run id, namespace).
async fn runs(
    client: &kube::Client,
    filter: &RunFilter,
    older_than: Option<Duration>,
    say_why_not: bool,
) -> Result<Vec<(String, String)>, PlatformError> {
    let api: Api<Namespace> = Api::all(client.clone());
    let lp = ListParams::default().labels(labels::RUN);
    let list = api
        .list(&lp)
        .await
        .map_err(|e| api_error("listing pvcheck's namespaces", e))?;
    let me = super::namespace::owner();
    let host = me.split(':').next().unwrap_or("").to_string();
    let now = std::time::SystemTime::now();
    let mut out = Vec::new();
    for ns in list.items {
        let Some(run) = label(&ns.metadata, labels::RUN) else {
            continue;
        };
        let name = ns.metadata.name.clone().unwrap_or_default();
        let keep = match filter {
            RunFilter::Run { run_id, .. } => &run == run_id,
            RunFilter::Dead => {
                let age = ns
                    .metadata
                    .creation_timestamp
                    .as_ref()
                    .and_then(|t| u64::try_from(t.0.as_second()).ok())
                    .and_then(|s| {
                        now.duration_since(std::time::UNIX_EPOCH)
                            .ok()
                            .map(|n| n.as_secs().saturating_sub(s))
                    })
                    .map(Duration::from_secs);
                let owner = ns
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(labels::OWNER).cloned())
                    .unwrap_or_default();
                let (ohost, opid) = owner.split_once(':').unwrap_or(("", ""));
                let dead_here = ohost == host
                    && opid.parse::<i32>().is_ok_and(|p| {
                        nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), None).is_err()
                    });
                let awaiting = ns
                    .metadata
                    .annotations
                    .as_ref()
                    .is_some_and(|a| a.contains_key(labels::AWAITING));
                match older_than {
                    Some(limit) => age.is_some_and(|a| a >= limit),
                    // A before-upgrade run's volumes wait for their after-upgrade run: its
                    // process is gone on purpose. Only naming the run (or --older-than) removes them.
                    None if awaiting => {
                        if say_why_not {
                            eprintln!(
                                "pvcheck: run {run} (namespace {name}) keeps volumes for `pvcheck run --phase after-upgrade --resume {run}`: left alone; remove it with --run-id {run}"
                            );
                        }
                        false
                    }
                    None => dead_here,
                }
            }
        };
        if keep {
            out.push((run, name));
        }
    }
    Ok(out)
}

/// What the filter selects, nothing removed.
pub async fn find(
    client: &kube::Client,
    filter: &RunFilter,
    shared: Option<&Shared>,
    older_than: Option<Duration>,
) -> Result<Vec<Leftover>, PlatformError> {
    let class = match filter {
        RunFilter::Run { class, .. } => class.clone(),
        RunFilter::Dead => None,
    };
    let mut out = Vec::new();
    for (run, ns) in runs(client, filter, older_than, true).await? {
        let sel = labels::selector(Some(&run), class.as_deref());
        let lp = ListParams::default().labels(&sel);
        let cls = |m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
            label(m, labels::CLASS)
        };
        let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
        for p in pods
            .list(&lp)
            .await
            .map_err(|e| api_error("listing pods", e))?
            .items
        {
            out.push(leftover(
                &run,
                cls(&p.metadata),
                "pod",
                format!("{ns}/{}", p.metadata.name.unwrap_or_default()),
            ));
        }
        let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
        for p in pvcs
            .list(&lp)
            .await
            .map_err(|e| api_error("listing PVCs", e))?
            .items
        {
            out.push(leftover(
                &run,
                cls(&p.metadata),
                "pvc",
                format!("{ns}/{}", p.metadata.name.unwrap_or_default()),
            ));
        }
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
        for p in cms
            .list(&lp)
            .await
            .map_err(|e| api_error("listing ConfigMaps", e))?
            .items
        {
            out.push(leftover(
                &run,
                cls(&p.metadata),
                "configmap",
                format!("{ns}/{}", p.metadata.name.unwrap_or_default()),
            ));
        }
        let snaps: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), &ns, &super::snapshot::resource());
        if let Ok(l) = snaps.list(&lp).await {
            for p in l.items {
                out.push(leftover(
                    &run,
                    cls(&p.metadata),
                    "volumesnapshot",
                    format!("{ns}/{}", p.metadata.name.unwrap_or_default()),
                ));
            }
        }
        // Nodes the run cordoned for a drained upgrade and did not get to uncordon. (Where
        // listing nodes is refused, none is listed: pvcheck's preflight lists nodes, so such a
        // run never got to a drain.)
        for n in cordoned_nodes(client, &run).await.unwrap_or_default() {
            out.push(leftover(&run, None, "cordon", n));
        }
        // PVs bound to the run's claims (their labels do not come from the claim).
        let claims: Option<Vec<String>> = match (&class, shared) {
            (Some(c), Some(s)) => Some(
                s.created
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .iter()
                    .filter(|(k, _)| k == c)
                    .map(|(_, p)| p.clone())
                    .collect(),
            ),
            _ => None,
        };
        let pvs: Api<PersistentVolume> = Api::all(client.clone());
        let mut pv_names = Vec::new();
        for pv in pvs
            .list(&ListParams::default())
            .await
            .map_err(|e| api_error("listing PVs", e))?
            .items
        {
            let cref = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
            let ours = cref.is_some_and(|r| r.namespace.as_deref() == Some(&ns))
                && claims.as_ref().is_none_or(|c| {
                    cref.and_then(|r| r.name.as_ref())
                        .is_some_and(|n| c.contains(n))
                });
            if ours {
                let name = pv.metadata.name.clone().unwrap_or_default();
                let phase = pv
                    .status
                    .as_ref()
                    .and_then(|s| s.phase.clone())
                    .unwrap_or_default();
                out.push(leftover(
                    &run,
                    class.clone(),
                    "pv",
                    format!(
                        "{name} ({phase}, claim {ns}/{})",
                        cref.and_then(|r| r.name.clone()).unwrap_or_default()
                    ),
                ));
                pv_names.push(name);
            }
        }
        if !pv_names.is_empty() {
            let vas: Api<VolumeAttachment> = Api::all(client.clone());
            for va in vas
                .list(&ListParams::default())
                .await
                .map_err(|e| api_error("listing VolumeAttachments", e))?
                .items
            {
                if va
                    .spec
                    .source
                    .persistent_volume_name
                    .as_ref()
                    .is_some_and(|p| pv_names.contains(p))
                {
                    out.push(leftover(
                        &run,
                        class.clone(),
                        "volumeattachment",
                        format!(
                            "{} (PV {}, node {})",
                            va.metadata.name.unwrap_or_default(),
                            va.spec.source.persistent_volume_name.unwrap_or_default(),
                            va.spec.node_name
                        ),
                    ));
                }
            }
        }
        if class.is_none()
            && !matches!(filter, RunFilter::Run { .. } if shared.is_some_and(|s| s.run_id == run))
        {
            out.push(leftover(&run, None, "namespace", ns.clone()));
        }
    }
    Ok(out)
}

/// The nodes still carrying the run's cordon label.
async fn cordoned_nodes(client: &kube::Client, run: &str) -> Result<Vec<String>, PlatformError> {
    let api: Api<Node> = Api::all(client.clone());
    let lp = ListParams::default().labels(&format!("{}={run}", labels::CORDONED_BY));
    Ok(api
        .list(&lp)
        .await
        .map_err(|e| api_error("listing the nodes the run cordoned", e))?
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect())
}

/// Removes what the filter selects (for a whole run: its namespace, then waits for its PVs);
/// returns what was there.
pub async fn remove(
    client: &kube::Client,
    filter: &RunFilter,
    shared: Option<&Shared>,
    older_than: Option<Duration>,
) -> Result<Vec<Leftover>, PlatformError> {
    let found = find(client, filter, shared, older_than).await?;
    let class = match filter {
        RunFilter::Run { class, .. } => class.clone(),
        RunFilter::Dead => None,
    };
    let kept: Vec<String> = shared
        .map(|s| s.kept.lock().unwrap_or_else(|e| e.into_inner()).clone())
        .unwrap_or_default();
    let mut problems = Vec::new();
    // What stayed on purpose (a kept volume's claim, pods, ConfigMaps, and its PV and
    // attachment): not reported as removed.
    let mut stayed: Vec<String> = Vec::new();
    // The PVs of the kept claims (their PV and VolumeAttachment lines name them).
    let mut stayed_pvs: Vec<String> = Vec::new();
    for (run, ns) in runs(client, filter, older_than, false).await? {
        // First what the run did to nodes that are not its own: schedulable again.
        if let Ok(nodes) = cordoned_nodes(client, &run).await
            && let Err(e) = super::drain::uncordon(client, &run, &nodes).await
        {
            problems.push(e.to_string());
        }
        if class.is_some() || !kept.is_empty() {
            // One class, or a run that keeps a failed volume: its objects one by one, the
            // kept volume's and the namespace stay.
            let sel = labels::selector(Some(&run), class.as_deref());
            let lp = ListParams::default().labels(&sel);
            let is_kept = |m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
                label(m, labels::VOLUME)
                    .is_some_and(|v| kept.iter().any(|k| labels::label_value(k) == v))
            };
            let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
            for p in pods.list(&lp).await.map(|l| l.items).unwrap_or_default() {
                if is_kept(&p.metadata) {
                    stayed.push(format!("pod {ns}/{}", p.metadata.name.unwrap_or_default()));
                } else {
                    let _ = pods
                        .delete(
                            &p.metadata.name.unwrap_or_default(),
                            &DeleteParams::default().grace_period(0),
                        )
                        .await;
                }
            }
            let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
            for p in cms.list(&lp).await.map(|l| l.items).unwrap_or_default() {
                if is_kept(&p.metadata) {
                    stayed.push(format!(
                        "configmap {ns}/{}",
                        p.metadata.name.unwrap_or_default()
                    ));
                } else {
                    let _ = cms
                        .delete(
                            &p.metadata.name.unwrap_or_default(),
                            &DeleteParams::default(),
                        )
                        .await;
                }
            }
            let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
            for p in pvcs.list(&lp).await.map(|l| l.items).unwrap_or_default() {
                let claim = format!("{ns}/{}", p.metadata.name.clone().unwrap_or_default());
                if is_kept(&p.metadata) {
                    stayed.push(format!("pvc {claim}"));
                    if let Some(pv) = p.spec.as_ref().and_then(|s| s.volume_name.clone()) {
                        stayed_pvs.push(pv);
                    }
                } else {
                    let n = p.metadata.name.clone().unwrap_or_default();
                    let pv = p.spec.and_then(|s| s.volume_name);
                    if let Err(e) =
                        super::pvc::delete(client, &ns, &n, pv.as_deref(), REMOVE_LIMIT).await
                    {
                        problems.push(e.to_string());
                    }
                }
            }
            continue;
        }
        let nss: Api<Namespace> = Api::all(client.clone());
        match nss.delete(&ns, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => {
                problems.push(api_error(&format!("deleting namespace {ns}"), e).to_string());
                continue;
            }
        }
        if let Err(e) = wait::until(
            nss,
            &ns,
            &format!("namespace {ns} to be gone"),
            REMOVE_LIMIT,
            |n: Option<&Namespace>| {
                if n.is_none() {
                    Decision::Done(())
                } else {
                    Decision::Wait
                }
            },
        )
        .await
        {
            problems.push(e.to_string());
            continue;
        }
        let pvs: Api<PersistentVolume> = Api::all(client.clone());
        for pv in pvs
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default()
        {
            let ours = pv
                .spec
                .as_ref()
                .and_then(|s| s.claim_ref.as_ref())
                .is_some_and(|r| r.namespace.as_deref() == Some(&ns));
            if !ours {
                continue;
            }
            let name = pv.metadata.name.clone().unwrap_or_default();
            let policy = pv
                .spec
                .as_ref()
                .and_then(|s| s.persistent_volume_reclaim_policy.clone())
                .unwrap_or_default();
            // Only a PV pvcheck made from a template carries the run label: that one it deletes.
            if policy != "Delete" && label(&pv.metadata, labels::RUN).as_deref() == Some(&run) {
                let _ = pvs.delete(&name, &DeleteParams::default()).await;
            }
            if (policy == "Delete" || label(&pv.metadata, labels::RUN).as_deref() == Some(&run))
                && let Err(e) = wait::until(
                    pvs.clone(),
                    &name,
                    &format!("PV {name} to be deleted"),
                    REMOVE_LIMIT,
                    |p: Option<&PersistentVolume>| {
                        if p.is_none() {
                            Decision::Done(())
                        } else {
                            Decision::Wait
                        }
                    },
                )
                .await
            {
                problems.push(e.to_string());
            }
        }
    }
    if !problems.is_empty() {
        return Err(PlatformError::Other(problems.join("; ")));
    }
    let kept_pv = |what: &str| {
        stayed_pvs
            .iter()
            .any(|pv| what.starts_with(&format!("{pv} ")) || what.contains(&format!("(PV {pv},")))
    };
    Ok(found
        .into_iter()
        .filter(|l| match l.kind.as_str() {
            "pv" | "volumeattachment" => !kept_pv(&l.what),
            kind => !stayed.contains(&format!("{kind} {}", l.what)),
        })
        .collect())
}
