//! One agent run on Kubernetes: a pod that runs `pvcheck-agent pod -- <agent args>` next to the
//! volume, its inputs in a read-only ConfigMap, its output read from the pod's log.
//!
//! A pod that cannot start fails with the reason Kubernetes gives (an image that cannot be
//! pulled fails at once; scheduling, attach and mount problems at the timeout, with the pod's
//! events), and an evicted or deleted pod fails naming that, never with a bare timeout.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::{AsyncBufReadExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::{DeleteParams, LogParams, PostParams};

use super::attach;
use super::context::VolumeCtx;
use super::logs::{Framed, Parser};
use super::podspec::{self, PodPlan};
use super::wait::{self, Decision};
use crate::platform::timeline::{self, Wait};
use crate::platform::{AgentCall, PlatformError};

/// How a pod's wait for start ended.
pub enum Started {
    Running {
        node: String,
    },
    /// It ran to the end before we saw it running (short agent runs).
    Finished {
        node: String,
    },
}

/// Why the agent image cannot run: the harness's setup, not the storage (infrastructure).
const IMAGE_PROBLEMS: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
];

/// The reasons a container waits that no amount of waiting fixes.
const HOPELESS: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

/// Why the pod is being (or was) evicted, if it is: the kubelet's `Evicted` (node pressure), or
/// the `DisruptionTarget` condition Kubernetes sets before it deletes a pod for the Eviction
/// API (`kubectl drain`), preemption or a taint. A pod evicted through the Eviction API never
/// gets the `Evicted` reason: it is deleted gracefully, and without this its agent would look
/// like one that died (exit 143) or a pod that vanished.
pub fn eviction(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    if status.reason.as_deref() == Some("Evicted") {
        return Some(format!(
            "was evicted by the kubelet ({})",
            super::client::one_line(status.message.as_deref().unwrap_or("no message"))
        ));
    }
    let c = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "DisruptionTarget" && c.status == "True")?;
    Some(format!(
        "was evicted ({}: {})",
        c.reason.as_deref().unwrap_or("DisruptionTarget"),
        super::client::one_line(c.message.as_deref().unwrap_or("no message"))
    ))
}

/// Why a pod is not running, if it never will be; `None` while it may still start.
fn hopeless(pod: &Pod) -> Option<String> {
    if let Some(why) = eviction(pod) {
        return Some(why);
    }
    let status = pod.status.as_ref()?;
    for cs in status.container_statuses.iter().flatten() {
        if let Some(w) = cs.state.as_ref().and_then(|s| s.waiting.as_ref())
            && let Some(r) = w.reason.as_deref()
            && HOPELESS.contains(&r)
        {
            return Some(format!(
                "{r}: {}",
                super::client::one_line(w.message.as_deref().unwrap_or(""))
            ));
        }
    }
    None
}

fn node_of(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .unwrap_or_default()
}

fn terminated(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded") | Some("Failed")
    )
}

/// Creates `pod` and waits until it runs (or already ran), within `limit`. The waits go to the
/// trial's timeline: scheduled, then container started; with `watch_attach` (a pod that may be
/// the first on its node: the holder) also the claim bound and the volume attached in between,
/// from a watch beside the pod's.
pub async fn create_and_start(
    v: &VolumeCtx,
    pod: Pod,
    limit: Duration,
    watch_attach: bool,
) -> Result<Started, PlatformError> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let violations = podspec::restricted_violations(&pod);
    if !violations.is_empty() {
        return Err(PlatformError::Other(format!(
            "pvcheck bug: pod {name} would break Pod Security restricted: {}",
            violations.join("; ")
        )));
    }
    let api: Api<Pod> = Api::namespaced(v.client.clone(), &v.shared.namespace);
    let created = Instant::now();
    api.create(&PostParams::default(), &pod)
        .await
        .map_err(|e| api_error(&format!("creating pod {}/{name}", v.shared.namespace), e))?;
    let mut seen = false;
    let scheduled: std::cell::Cell<Option<Instant>> = std::cell::Cell::new(None);
    let (node_tx, node_rx) = tokio::sync::oneshot::channel();
    let mut node_tx = Some(node_tx);
    let what = format!("pod {}/{name} to start", v.shared.namespace);
    let pod_wait = wait::until(api, &name, &what, limit, |p: Option<&Pod>| {
        let Some(p) = p else {
            return if seen {
                Decision::Fail(
                    "the pod was deleted before it ran (evicted or removed by someone else)".into(),
                )
            } else {
                Decision::Wait
            };
        };
        seen = true;
        if scheduled.get().is_none() && !node_of(p).is_empty() {
            scheduled.set(Some(Instant::now()));
            if let Some(tx) = node_tx.take() {
                let _ = tx.send(node_of(p));
            }
        }
        if let Some(why) = hopeless(p) {
            return Decision::Fail(why);
        }
        match p.status.as_ref().and_then(|s| s.phase.as_deref()) {
            Some("Running") => Decision::Done(Started::Running { node: node_of(p) }),
            Some("Succeeded") | Some("Failed") => {
                Decision::Done(Started::Finished { node: node_of(p) })
            }
            _ => Decision::Wait,
        }
    });
    let mut pod_wait = std::pin::pin!(pod_wait);
    let mut milestones = attach::Milestones::default();
    let r = if watch_attach {
        let watch = attach::milestones(
            &v.client,
            &v.shared.in_use,
            &v.shared.namespace,
            &v.pvc,
            node_rx,
            &mut milestones,
        );
        let mut watch = std::pin::pin!(watch);
        let mut watching = true;
        loop {
            tokio::select! {
                r = &mut pod_wait => break r,
                () = &mut watch, if watching => watching = false,
            }
        }
    } else {
        pod_wait.await
    };
    if r.is_ok() {
        let running = Instant::now();
        let scheduled = scheduled.get().unwrap_or(running);
        let mut from = created;
        if let Some(bound) = milestones.bound.filter(|b| *b <= scheduled) {
            timeline::record(Wait::ClaimBound, &v.pvc, created, bound);
            from = bound;
        }
        timeline::record(Wait::PodScheduled, &name, from, scheduled);
        // Then the volume's milestones that came after it, each from the one before.
        let pv = milestones.pv.as_deref().unwrap_or(&v.pvc);
        let mut from = scheduled;
        for (wait, at) in [
            (Wait::VolumeAttached, milestones.attached),
            (Wait::InUseReported, milestones.in_use),
        ] {
            if let Some(at) = at.filter(|t| *t >= from) {
                timeline::record(wait, pv, from, at);
                from = at;
            }
        }
        timeline::record(Wait::ContainerStarted, &name, from, running);
    }
    match r {
        Ok(s) => Ok(s),
        Err(e) => {
            let events =
                super::events::about(&v.client, &v.shared.namespace, "Pod", &name, 4).await;
            let pvc_events = super::events::about(
                &v.client,
                &v.shared.namespace,
                "PersistentVolumeClaim",
                &v.pvc,
                2,
            )
            .await;
            let mut all = events;
            all.extend(pvc_events);
            let msg = format!(
                "pod {}/{name} did not start: {e}{}",
                v.shared.namespace,
                super::events::suffix(&all)
            );
            let unbound = match super::pvc::get(&v.client, &v.shared.namespace, &v.pvc).await {
                Ok(c) => c.status.and_then(|s| s.phase).as_deref() != Some("Bound"),
                Err(_) => false,
            };
            Err(match e {
                // The first pod of a WaitForFirstConsumer claim also waits for provisioning.
                wait::WaitError::Timeout { .. } if unbound => {
                    PlatformError::Infrastructure(format!(
                        "{msg}; PVC {} was never bound: the volume was not provisioned in time (timeouts.provision)",
                        v.pvc
                    ))
                }
                // The node's driver answered the kubelet's mount call with an error until the
                // limit: its refusal, not a slow cluster.
                wait::WaitError::Timeout { .. }
                    if super::events::driver_refusal(&all).is_some() =>
                {
                    PlatformError::Protocol(format!(
                        "{msg} (the node's CSI driver answered the kubelet's mount call with an error for all of the {} s: its refusal, not a slow cluster)",
                        limit.as_secs()
                    ))
                }
                wait::WaitError::Timeout { .. } => PlatformError::Timeout {
                    command: msg,
                    limit,
                },
                wait::WaitError::Failed(why)
                    if IMAGE_PROBLEMS
                        .iter()
                        .any(|r| why.starts_with(&format!("{r}:"))) =>
                {
                    PlatformError::Infrastructure(format!(
                        "{msg} (the agent image {} cannot run: see --agent-image, --image-pull-secret)",
                        v.shared.image
                    ))
                }
                // RBAC refusing the watch, or the API server failing it: not the storage.
                wait::WaitError::Api { .. } => PlatformError::Infrastructure(msg),
                _ => PlatformError::Other(msg),
            })
        }
    }
}

/// Waits until the pod has terminated (or is gone), within `limit`.
pub async fn until_terminated(
    v: &VolumeCtx,
    name: &str,
    limit: Duration,
) -> Result<Option<Pod>, PlatformError> {
    let api: Api<Pod> = Api::namespaced(v.client.clone(), &v.shared.namespace);
    let ns = &v.shared.namespace;
    wait::until(
        api,
        name,
        &format!("pod {ns}/{name} to finish"),
        limit,
        |p: Option<&Pod>| match p {
            // Only pvcheck deletes its agent pods, and only after this wait: someone else did.
            None => Decision::Fail(
                "was deleted before the agent finished (evicted, or removed by someone else)"
                    .into(),
            ),
            // An eviction shows before the grace period ends and the pod terminates.
            Some(p) if eviction(p).is_some() => Decision::Fail(eviction(p).unwrap_or_default()),
            Some(p) if terminated(p) => Decision::Done(Some(p.clone())),
            Some(p) => match hopeless(p) {
                Some(why) => Decision::Fail(why),
                None => Decision::Wait,
            },
        },
    )
    .await
    .map_err(|e| match e {
        wait::WaitError::Timeout { .. } => PlatformError::Timeout {
            command: format!("agent pod {ns}/{name}"),
            limit,
        },
        wait::WaitError::Failed(why) => {
            PlatformError::Other(format!("agent pod {ns}/{name} {why} while the agent ran"))
        }
        e @ wait::WaitError::Api { .. } => PlatformError::Infrastructure(e.to_string()),
    })
}

/// Why the holder pod `name` no longer keeps the volume mounted, if it does not: evicted,
/// being deleted, terminated or gone. One GET.
pub async fn holder_lost(v: &VolumeCtx, name: &str) -> Result<Option<String>, PlatformError> {
    let api: Api<Pod> = Api::namespaced(v.client.clone(), &v.shared.namespace);
    let pod = match api.get_opt(name).await {
        Ok(p) => p,
        Err(e) => {
            return Err(api_error(
                &format!("reading the holder pod {}/{name}", v.shared.namespace),
                e,
            ));
        }
    };
    Ok(match pod {
        None => Some("is gone (evicted, or deleted by someone else)".into()),
        Some(p) => eviction(&p)
            .or_else(|| terminated(&p).then(|| "has terminated".to_string()))
            .or_else(|| {
                p.metadata
                    .deletion_timestamp
                    .is_some()
                    .then(|| "is being deleted by someone else".to_string())
            }),
    })
}

/// Why the agent in pod `name` was told to stop by someone other than pvcheck, when its
/// supervisor's end line says it was (`terminated`): the pod's eviction when it shows one, else
/// that it was deleted. One GET, before pvcheck deletes the pod itself. An agent that finished
/// within the grace period after the SIGTERM of a `kubectl drain` looks complete, but the node
/// was being drained under the check: the run never counts as undisturbed.
pub async fn stopped_by_others(v: &VolumeCtx, name: &str, framed: &Framed) -> Option<String> {
    let (signal, after) = framed.terminated()?;
    let api: Api<Pod> = Api::namespaced(v.client.clone(), &v.shared.namespace);
    let why = match api.get_opt(name).await {
        Ok(Some(p)) => eviction(&p).unwrap_or_else(|| "was deleted by someone else".into()),
        Ok(None) => "is gone (evicted, or deleted by someone else)".into(),
        Err(e) => format!(
            "was told to stop (reading it: {})",
            super::client::one_line(&e.to_string())
        ),
    };
    Some(format!(
        "agent pod {}/{name} {why} while the agent ran ({signal} {after:.1} s after it started)",
        v.shared.namespace
    ))
}

/// Deletes a pod (and waits until it is gone when `wait`).
pub async fn delete(
    v: &VolumeCtx,
    name: &str,
    grace: u32,
    wait_gone: bool,
    limit: Duration,
) -> Result<(), PlatformError> {
    let api: Api<Pod> = Api::namespaced(v.client.clone(), &v.shared.namespace);
    match api
        .delete(name, &DeleteParams::default().grace_period(grace))
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
        Err(e) => {
            return Err(api_error(
                &format!("deleting pod {}/{name}", v.shared.namespace),
                e,
            ));
        }
    }
    if !wait_gone {
        return Ok(());
    }
    let asked = Instant::now();
    let what = format!("pod {}/{name} to be gone", v.shared.namespace);
    if let Err(e) = until_gone(api, name, &what, limit).await {
        let why = not_gone(&v.client, &v.shared.namespace, name).await;
        return Err(match e {
            PlatformError::Other(m) => PlatformError::Other(format!("{m}{why}")),
            e => e,
        });
    }
    timeline::since(Wait::PodDeleted, name, asked);
    Ok(())
}

/// Why a deleted pod may still be there, read when its deletion was not done in time: the
/// CSI drivers of its claims that its node's CSINode does not list (the kubelet cannot
/// unmount a volume of a driver not registered with it), and the pod's last events. Empty
/// where nothing is found (or nothing can be read).
async fn not_gone(client: &kube::Client, namespace: &str, name: &str) -> String {
    let mut why = String::new();
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let pod = pods.get_opt(name).await.ok().flatten();
    let node = pod
        .as_ref()
        .and_then(|p| p.spec.as_ref())
        .and_then(|s| s.node_name.clone());
    if let (Some(pod), Some(node)) = (&pod, node) {
        let claims: Vec<String> = pod
            .spec
            .as_ref()
            .and_then(|s| s.volumes.as_ref())
            .map(|vs| {
                vs.iter()
                    .filter_map(|v| v.persistent_volume_claim.as_ref())
                    .map(|c| c.claim_name.clone())
                    .collect()
            })
            .unwrap_or_default();
        let mut drivers = Vec::new();
        for claim in claims {
            if let Some(d) = csi_driver_of_claim(client, namespace, &claim).await
                && !drivers.contains(&d)
            {
                drivers.push(d);
            }
        }
        if !drivers.is_empty()
            && let Ok(listed) = super::csi::node_drivers(client, &node).await
        {
            why.push_str(&unregistered(&node, &drivers, &listed));
        }
    }
    let events = super::events::about(client, namespace, "Pod", name, 3).await;
    why.push_str(&super::events::suffix(&events));
    why
}

/// The CSI driver of claim `claim`'s PV, where it is a CSI volume.
async fn csi_driver_of_claim(
    client: &kube::Client,
    namespace: &str,
    claim: &str,
) -> Option<String> {
    use k8s_openapi::api::core::v1::PersistentVolumeClaim;
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    let pv = pvcs.get_opt(claim).await.ok()??.spec?.volume_name?;
    super::csi::driver_of_pv(client, &pv).await.ok()?
}

/// `; the kubelet of node N cannot unmount …` for the `drivers` that CSINode `node` does not
/// list (`listed`), or nothing.
fn unregistered(node: &str, drivers: &[String], listed: &[String]) -> String {
    let missing: Vec<&str> = drivers
        .iter()
        .filter(|d| !listed.contains(d))
        .map(String::as_str)
        .collect();
    if missing.is_empty() {
        return String::new();
    }
    format!(
        "; the kubelet of node {node} cannot unmount its volumes: CSINode {node} does not list driver {} (the driver is not registered with the kubelet there)",
        missing.join(", ")
    )
}

/// The pods of the volume (holder and agents: its label), one list.
pub async fn volume_pods(v: &VolumeCtx) -> Result<Vec<Pod>, PlatformError> {
    let api: Api<Pod> = Api::namespaced(v.client.clone(), &v.shared.namespace);
    let lp = kube::api::ListParams::default().labels(&format!(
        "{}={}",
        super::labels::VOLUME,
        super::labels::label_value(&v.pvc)
    ));
    api.list(&lp)
        .await
        .map(|l| l.items)
        .map_err(|e| api_error("listing the volume's pods", e))
}

/// Waits until pod `name` is gone (a watch), within `limit`; `what` names the wait.
pub async fn until_gone(
    api: Api<Pod>,
    name: &str,
    what: &str,
    limit: Duration,
) -> Result<(), PlatformError> {
    wait::until(api, name, what, limit, |p: Option<&Pod>| {
        if p.is_none() {
            Decision::Done(())
        } else {
            Decision::Wait
        }
    })
    .await
    .map_err(|e| PlatformError::Other(e.to_string()))
}

/// A ConfigMap holding the agent's input files; returns its name and the arguments that name
/// the files as the agent sees them.
pub async fn inputs(
    v: &VolumeCtx,
    name: &str,
    call: &AgentCall,
    labels: BTreeMap<String, String>,
) -> Result<(Option<String>, Vec<String>), PlatformError> {
    if call.inputs.is_empty() {
        return Ok((None, Vec::new()));
    }
    let mut data = BTreeMap::new();
    let mut args = Vec::new();
    let mut total = 0usize;
    for (i, (flag, path)) in call.inputs.iter().enumerate() {
        let text = std::fs::read_to_string(path).map_err(|e| {
            PlatformError::io(format!("reading the agent input {}", path.display()), e)
        })?;
        total += text.len();
        let key = format!("input-{i}");
        args.push(flag.clone());
        args.push(format!("{}/{key}", podspec::INPUTS_DIR));
        data.insert(key, text);
    }
    if total > 1_000_000 {
        return Err(PlatformError::Unsupported(format!(
            "the agent's inputs are {total} bytes, more than a ConfigMap holds (1 MiB): use a smaller profile"
        )));
    }
    create_config_map(v, name, labels, data).await?;
    Ok((Some(name.to_string()), args))
}

/// The inputs of `call` for pod `pod_name`, in ConfigMap `<pod_name>-in` labelled with the
/// run, class and volume ([`inputs`]; `None` when it has none), and the agent's arguments
/// with the inputs' paths in the pod.
pub async fn call_inputs(
    v: &VolumeCtx,
    pod_name: &str,
    call: &AgentCall,
) -> Result<(Option<String>, Vec<String>), PlatformError> {
    let labels = super::labels::of(&v.shared.run_id, Some(&v.class), Some(&v.pvc), "inputs");
    let (cm, input_args) = inputs(v, &format!("{pod_name}-in"), call, labels).await?;
    let mut args = call.args.clone();
    args.extend(input_args);
    Ok((cm, args))
}

/// Creates an immutable ConfigMap `name` in the run's namespace.
pub async fn create_config_map(
    v: &VolumeCtx,
    name: &str,
    labels: BTreeMap<String, String>,
    data: BTreeMap<String, String>,
) -> Result<(), PlatformError> {
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(v.shared.namespace.clone()),
            labels: Some(labels),
            ..Default::default()
        },
        data: Some(data),
        immutable: Some(true),
        ..Default::default()
    };
    let api: Api<ConfigMap> = Api::namespaced(v.client.clone(), &v.shared.namespace);
    api.create(&PostParams::default(), &cm)
        .await
        .map(|_| ())
        .map_err(|e| {
            api_error(
                &format!("creating ConfigMap {}/{name}", v.shared.namespace),
                e,
            )
        })
}

pub async fn delete_config_map(v: &VolumeCtx, name: &str) {
    let api: Api<ConfigMap> = Api::namespaced(v.client.clone(), &v.shared.namespace);
    let _ = api.delete(name, &DeleteParams::default()).await;
}

/// The whole log of a finished pod, parsed.
pub async fn read_log(v: &VolumeCtx, name: &str) -> Result<Framed, PlatformError> {
    Ok(super::logs::parse(&read_log_text(v, name).await?))
}

/// The whole log of pod `name`, as text.
pub async fn read_log_text(v: &VolumeCtx, name: &str) -> Result<String, PlatformError> {
    let api: Api<Pod> = Api::namespaced(v.client.clone(), &v.shared.namespace);
    api.logs(name, &LogParams::default()).await.map_err(|e| {
        api_error(
            &format!("reading the log of pod {}/{name}", v.shared.namespace),
            e,
        )
    })
}

/// How many lines of a dead pod's log a failure shows.
pub const LOG_LINES_SHOWN: usize = 5;

/// Why a pod that should have kept running ended (the holder pod "ended at once"): its
/// container's last state (reason, exit code, message) and the last lines of its log, read
/// before the pod is deleted. Whatever cannot be read is said, not hidden.
pub async fn ended_at_once(client: &kube::Client, namespace: &str, name: &str) -> String {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let state = match api.get_opt(name).await {
        Ok(Some(p)) => last_state(&p),
        Ok(None) => "the pod is gone".to_string(),
        Err(e) => format!(
            "its state could not be read: {}",
            super::client::one_line(&e.to_string())
        ),
    };
    let log = match api.logs(name, &LogParams::default()).await {
        Ok(text) => log_tail(&text, LOG_LINES_SHOWN),
        Err(e) => format!(
            "\n  (its log could not be read: {})",
            super::client::one_line(&e.to_string())
        ),
    };
    format!("{state}{log}")
}

/// `last state: terminated, Error (exit 2): message` from the pod's first container.
pub fn last_state(p: &Pod) -> String {
    let status = p.status.as_ref();
    let c = status
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first());
    let terminated = c.and_then(|c| {
        c.state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .or_else(|| c.last_state.as_ref().and_then(|s| s.terminated.as_ref()))
    });
    match terminated {
        Some(t) => format!(
            "last state: terminated, {} (exit {}){}",
            t.reason.as_deref().unwrap_or("no reason given"),
            t.exit_code,
            t.message
                .as_deref()
                .map(|m| format!(": {}", super::client::one_line(m)))
                .unwrap_or_default()
        ),
        None => format!(
            "last state: phase {}{}",
            status.and_then(|s| s.phase.as_deref()).unwrap_or("unknown"),
            status
                .and_then(|s| s.message.as_deref())
                .map(|m| format!(": {}", super::client::one_line(m)))
                .unwrap_or_default()
        ),
    }
}

/// The last `n` lines of a pod's log, the agent's stderr first where its supervisor framed it,
/// as indented lines after a heading.
pub fn log_tail(raw: &str, n: usize) -> String {
    let framed = super::logs::parse(raw);
    let text = if framed.stderr.trim().is_empty() {
        raw
    } else {
        &framed.stderr
    };
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return "; its log is empty".into();
    }
    let from = lines.len().saturating_sub(n);
    let mut out = format!(
        "; the last {} of its log:",
        if lines.len() - from == 1 {
            "line".to_string()
        } else {
            format!("{} lines", lines.len() - from)
        }
    );
    for l in &lines[from..] {
        out.push_str("\n  ");
        out.push_str(l);
    }
    out
}

/// Follows the log of a running pod into `to` (the agent's stdout, unframed) until it ends.
pub async fn follow_log(
    client: kube::Client,
    namespace: String,
    name: String,
    to: std::path::PathBuf,
) -> Result<Framed, PlatformError> {
    use std::io::Write;
    let api: Api<Pod> = Api::namespaced(client, &namespace);
    let lp = LogParams {
        follow: true,
        ..Default::default()
    };
    let stream = api
        .log_stream(&name, &lp)
        .await
        .map_err(|e| api_error(&format!("following the log of pod {namespace}/{name}"), e))?;
    let mut file =
        std::fs::File::create(&to).map_err(|e| PlatformError::io(to.display().to_string(), e))?;
    let mut parser = Parser::default();
    let mut lines = std::pin::pin!(stream.lines());
    while let Ok(Some(line)) = lines.try_next().await {
        let before = parser.out.stdout.len();
        parser.line(&line);
        let added = &parser.out.stdout[before..];
        if !added.is_empty() {
            file.write_all(added.as_bytes())
                .map_err(|e| PlatformError::io(to.display().to_string(), e))?;
            file.flush()
                .map_err(|e| PlatformError::io(to.display().to_string(), e))?;
        }
    }
    Ok(parser.out)
}

/// Follows pod `name`'s log until the supervisor's end line: the whole framed output, or
/// `None` when the stream ended (or failed) before that line.
async fn until_end_line(v: &VolumeCtx, name: &str) -> Option<Framed> {
    let api: Api<Pod> = Api::namespaced(v.client.clone(), &v.shared.namespace);
    let lp = LogParams {
        follow: true,
        ..Default::default()
    };
    let stream = api.log_stream(name, &lp).await.ok()?;
    let mut parser = Parser::default();
    let mut lines = std::pin::pin!(stream.lines());
    while let Ok(Some(line)) = lines.try_next().await {
        parser.line(&line);
        if parser.out.end.is_some() {
            return Some(parser.out);
        }
    }
    None
}

/// The output of the call a holder pod runs before it holds (`pod --hold -- ARGS`): its log
/// followed up to the call's end line, within the call's `timeout` and a pod start's. The
/// holder runs on. A holder told to stop while its agent ran (evicted, deleted by someone
/// else), or whose log ended without the end line, fails naming why, as an agent pod does
/// ([`stopped_by_others`]).
pub async fn first_call(
    v: &VolumeCtx,
    name: &str,
    command: &str,
    timeout: Duration,
) -> Result<Framed, PlatformError> {
    let running = Instant::now();
    let limit = timeout + v.timeouts.pod_start;
    let lost = |why: String| {
        PlatformError::Other(format!(
            "holder pod {}/{name} {why} while its agent ran: {command}",
            v.shared.namespace
        ))
    };
    let framed = match tokio::time::timeout(limit, until_end_line(v, name)).await {
        Ok(Some(framed)) => framed,
        // The follow ended early (a kubelet that restarted ends it): the whole log, once.
        Ok(None) => match read_log(v, name).await {
            Ok(framed) if framed.end.is_some() => framed,
            read => {
                let why = holder_lost(v, name).await?;
                return Err(lost(why.unwrap_or_else(|| match read {
                    Ok(f) => format!(
                        "ended its log without its agent's final line (stderr: {})",
                        f.stderr.lines().last().unwrap_or("")
                    ),
                    Err(e) => format!("has a log that could not be read ({e})"),
                })));
            }
        },
        Err(_) => {
            return Err(PlatformError::Timeout {
                command: command.to_string(),
                limit,
            });
        }
    };
    timeline::since(Wait::AgentRan, name, running);
    if let Some((signal, after)) = framed.terminated() {
        let why = holder_lost(v, name)
            .await?
            .unwrap_or_else(|| "was told to stop".into());
        return Err(lost(format!(
            "{why} ({signal} {after:.1} s after its agent started)"
        )));
    }
    Ok(framed)
}

/// The plan of an agent pod of the volume.
pub fn plan<'a>(
    v: &'a VolumeCtx,
    name: &str,
    args: Vec<String>,
    inputs: Option<String>,
    node: Option<String>,
    role: &str,
) -> PodPlan<'a> {
    PodPlan {
        name: name.to_string(),
        namespace: v.shared.namespace.clone(),
        labels: super::labels::of(&v.shared.run_id, Some(&v.class), Some(&v.pvc), role),
        image: &v.shared.image,
        pull_secrets: &v.shared.pull_secrets,
        claim: &v.pvc,
        volume_mode: v.volume_mode,
        args,
        inputs,
        node,
        not_nodes: Vec::new(),
        placement: &v.placement,
        grace_seconds: 5,
    }
}

/// Runs one agent call to completion in a pod on `node`; the pod and its inputs are removed.
pub async fn run(
    v: &VolumeCtx,
    name: &str,
    call: &AgentCall,
    node: &str,
    statfs_only: bool,
) -> Result<(Framed, String), PlatformError> {
    let (cm, agent_args) = call_inputs(v, name, call).await?;
    let mut args = vec![
        "pod".to_string(),
        "--statfs".into(),
        podspec::target_path(v.volume_mode).into(),
    ];
    if !statfs_only {
        args.push("--".into());
        args.extend(agent_args.iter().cloned());
    }
    let command = format!(
        "pvcheck-agent {} (in pod {}/{name} on node {node})",
        agent_args.join(" "),
        v.shared.namespace
    );
    let pod = podspec::build(&plan(
        v,
        name,
        args,
        cm.clone(),
        Some(node.to_string()),
        "agent",
    ));
    let start = Instant::now();
    let result = async {
        create_and_start(v, pod, v.timeouts.pod_start, false).await?;
        let left = call
            .timeout
            .saturating_sub(start.elapsed())
            .max(Duration::from_secs(1))
            + v.timeouts.pod_start;
        let running = Instant::now();
        // Done at the supervisor's end line in the followed log (it prints it last, once the
        // agent has exited), not when the kubelet's next status report shows the pod
        // terminated, a second or more later. When the log ends (or stalls past the limit)
        // without that line, the pod's status decides, as before. One request after the other,
        // never two raced with the loser dropped: a request cancelled in flight is one the
        // API server may never log, and the run's count of its requests must match the
        // server's audit log.
        let followed = tokio::time::timeout(left, until_end_line(v, name))
            .await
            .ok()
            .flatten();
        let (done, framed) = match followed {
            Some(framed) => {
                timeline::since(Wait::AgentRan, name, running);
                (None, framed)
            }
            None => {
                let done = until_terminated(v, name, left).await?;
                timeline::since(Wait::AgentRan, name, running);
                let reading = Instant::now();
                let framed = read_log(v, name).await?;
                timeline::since(Wait::LogRead, name, reading);
                (done, framed)
            }
        };
        if let Some(why) = stopped_by_others(v, name, &framed).await {
            return Err(PlatformError::Other(why));
        }
        if framed.end.is_none() {
            let why = terminated_reason(done.as_ref());
            return Err(PlatformError::Other(format!(
                "the agent pod {}/{name} ended without its final line: {why}; stderr: {}",
                v.shared.namespace,
                framed.stderr.lines().last().unwrap_or("")
            )));
        }
        Ok(framed)
    }
    .await;
    let _ = delete(v, name, 0, false, Duration::ZERO).await;
    if let Some(cm) = &cm {
        delete_config_map(v, cm).await;
    }
    result.map(|f| (f, command))
}

/// How a terminated agent pod's container ended (`Error (exit 2)`), or that the pod is gone.
pub fn terminated_reason(done: Option<&Pod>) -> String {
    done.and_then(|p| p.status.as_ref())
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first())
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.terminated.as_ref())
        .map(|t| {
            format!(
                "{} (exit {})",
                t.reason.clone().unwrap_or_default(),
                t.exit_code
            )
        })
        .unwrap_or_else(|| "the pod is gone".into())
}

/// A kube error as a platform error, one line, naming what was being done. RBAC refusing a
/// call is the harness's environment keeping it from its work, not something the storage did:
/// category `infrastructure` (exit 5 when nothing else failed), as a refusal before the first
/// trial is (preflight, the run's namespace).
pub fn api_error(what: &str, e: kube::Error) -> PlatformError {
    match &e {
        kube::Error::Api(s) if s.code == 403 => PlatformError::Infrastructure(format!(
            "{what}: forbidden by RBAC ({})",
            super::client::one_line(&s.message)
        )),
        _ => PlatformError::Other(format!(
            "{what}: {}",
            super::client::one_line(&e.to_string())
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::kube::fake_api::FakeApi;
    use std::sync::Arc;

    /// CI stop 30: a pod of a volume whose driver the kubelet had lost stayed Terminating,
    /// and the failure said only "pod … to be gone: not within 3m". The timeout now names the
    /// node's CSINode missing the pod's driver, and the pod's last events.
    #[test]
    fn a_pod_not_gone_in_time_names_the_driver_its_node_s_csinode_lacks() {
        let api = FakeApi::start(Arc::new(|_m: &str, p: &str| {
            let body = if p.starts_with("/api/v1/namespaces/ns/pods/a-0") {
                serde_json::json!({"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": "a-0", "namespace": "ns"},
                    "spec": {"nodeName": "n1", "containers": [{"name": "agent"}],
                        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "c"}}]}})
            } else if p.starts_with("/api/v1/namespaces/ns/persistentvolumeclaims/c") {
                serde_json::json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                    "metadata": {"name": "c", "namespace": "ns"}, "spec": {"volumeName": "pv-1"}})
            } else if p.starts_with("/api/v1/persistentvolumes/pv-1") {
                serde_json::json!({"apiVersion": "v1", "kind": "PersistentVolume",
                    "metadata": {"name": "pv-1"},
                    "spec": {"csi": {"driver": "d.example.com", "volumeHandle": "h"}}})
            } else if p.starts_with("/apis/storage.k8s.io/v1/csinodes/n1") {
                serde_json::json!({"apiVersion": "storage.k8s.io/v1", "kind": "CSINode",
                    "metadata": {"name": "n1"},
                    "spec": {"drivers": [{"name": "other.example.com", "nodeID": "n1"}]}})
            } else if p.contains("/events") {
                serde_json::json!({"apiVersion": "v1", "kind": "EventList", "metadata": {},
                    "items": [{"metadata": {"name": "e1", "namespace": "ns"},
                        "involvedObject": {"kind": "Pod", "name": "a-0"}, "type": "Warning",
                        "reason": "FailedKillPod", "message": "error killing pod"}]})
            } else {
                return Some((
                    404,
                    crate::platform::kube::fake_api::status(404, "NotFound", p),
                ));
            };
            Some((200, body.to_string()))
        }));
        let why = crate::platform::kube::fake_api::block_on(async {
            not_gone(&api.client(), "ns", "a-0").await
        });
        assert_eq!(
            why,
            "; the kubelet of node n1 cannot unmount its volumes: CSINode n1 does not list driver d.example.com (the driver is not registered with the kubelet there); events: FailedKillPod: error killing pod"
        );
        // Registered: nothing to say about the driver.
        assert_eq!(
            unregistered("n1", &["d".into()], &["d".into(), "e".into()]),
            ""
        );
    }

    /// Issue 23, item 7: "the holder pod … ended at once (see its log)" sent the user to a log
    /// that was deleted with the pod. The failure carries the pod's last state and its log's
    /// last lines, read before the pod goes (here from a fake API server).
    #[test]
    fn a_holder_pod_that_ended_at_once_shows_its_last_state_and_its_log_s_last_lines() {
        let pod = serde_json::json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "h-0", "namespace": "ns"},
            "status": {"phase": "Failed", "containerStatuses": [{"name": "agent", "image": "i",
                "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 2, "reason": "Error",
                    "message": "mount failed\nsecond line"}}}]}})
        .to_string();
        let api = FakeApi::start(Arc::new(move |_m: &str, p: &str| {
            if p.contains("/log") {
                Some((
                    200,
                    "e line 1\ne line 2\ne line 3\ne line 4\ne line 5\ne pvcheck-agent: /data: EROFS\nx {\"code\":2}\n"
                        .into(),
                ))
            } else {
                Some((200, pod.clone()))
            }
        }));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let why = rt.block_on(async { ended_at_once(&api.client(), "ns", "h-0").await });
        assert!(
            why.starts_with("last state: terminated, Error (exit 2): mount failed"),
            "{why}"
        );
        assert!(why.contains("; the last 5 lines of its log:"), "{why}");
        assert!(why.ends_with("\n  pvcheck-agent: /data: EROFS"), "{why}");
        assert!(!why.contains("e line 1"), "{why}");
        // A pod already gone, and a log that cannot be read, are said.
        let api = FakeApi::start(Arc::new(|_m: &str, _p: &str| {
            Some((
                404,
                crate::platform::kube::fake_api::status(404, "NotFound", "pods \"h-0\" not found"),
            ))
        }));
        let why = rt.block_on(async { ended_at_once(&api.client(), "ns", "h-0").await });
        assert!(
            why.starts_with("the pod is gone") && why.contains("its log could not be read"),
            "{why}"
        );
    }
}
