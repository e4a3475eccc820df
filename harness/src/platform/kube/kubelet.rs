//! The kubelet of the volume's node stopped and started under a running pod
//! (`disruption::kubelet-restart`, `disruption::pod-deleted-while-kubelet-down`).
//!
//! pvcheck has no node access: the class gives the commands (`disruption.kubelet.stop`,
//! `.start`, `sh -c` with `PVCHECK_NODE`). Around them the API shows what it can: the PV's
//! VolumeAttachments and the node's CSINode before and after, and the node's Lease, renewed by
//! the kubelet once it is back (the window's end). With the pods deleted while it is down, the
//! kubelet, back, must remove them (they only carry a deletion timestamp until it does) and
//! tear the volume down: the VolumeAttachment goes only once it reported the volume unmounted.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::storage::v1::VolumeAttachment;
use kube::Api;
use serde_json::{Value, json};

use super::volume::KubeVolume;
use super::wait::{self, Decision};
use super::{agent_pod, attach};
use crate::config::ClassSpec;
use crate::platform::{DriverWindow, NodeAgentDisruption, PlatformError};

/// How long the kubelet stays down in a restart (and at least, with the pods deleted).
pub const DOWN: Duration = Duration::from_secs(5);

/// Output lines kept per command.
const LAST_LINES: usize = 5;

/// One VolumeAttachment as the check compares it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Attachment {
    pub name: String,
    pub node: String,
    pub attached: bool,
}

fn attachment(va: &VolumeAttachment) -> Attachment {
    Attachment {
        name: va.metadata.name.clone().unwrap_or_default(),
        node: va.spec.node_name.clone(),
        attached: va.status.as_ref().is_some_and(|s| s.attached),
    }
}

/// What changed in the PV's attachments across a restart (none may): problem lines.
pub fn attachment_changes(before: &[Attachment], after: &[Attachment]) -> Vec<String> {
    let mut out = Vec::new();
    for b in before {
        match after.iter().find(|a| a.name == b.name) {
            None => out.push(format!(
                "VolumeAttachment {} (node {}) is gone",
                b.name, b.node
            )),
            Some(a) if a != b => out.push(format!(
                "VolumeAttachment {} changed: node {} attached {} became node {} attached {}",
                b.name, b.node, b.attached, a.node, a.attached
            )),
            Some(_) => {}
        }
    }
    for a in after {
        if !before.iter().any(|b| b.name == a.name) {
            out.push(format!(
                "VolumeAttachment {} (node {}) appeared",
                a.name, a.node
            ));
        }
    }
    out
}

/// The class's commands, or why the checks cannot run.
pub fn commands(class: &ClassSpec) -> Result<(String, String), PlatformError> {
    class
        .disruption
        .kubelet
        .as_ref()
        .map(|k| (k.stop.value.clone(), k.start.value.clone()))
        .ok_or_else(|| {
            PlatformError::Unsupported(
                "pvcheck has no node access: the class gives none in `disruption.kubelet` (`stop` and `start` commands)".into(),
            )
        })
}

/// Runs one of the class's kubelet commands; its record (command, exit status, seconds, last
/// lines), or a `Command` error naming its stderr.
fn run_command(
    vol: &KubeVolume,
    which: &str,
    cmd: &str,
    node: &str,
) -> Result<Value, (Value, PlatformError)> {
    node_command(vol, &format!("disruption.kubelet.{which}"), cmd, node).map(|(rec, _)| rec)
}

/// Runs a class's command for node `node` (field `field`: `sh -c`, in the class file's
/// directory, env `PVCHECK_NODE`, `PVCHECK_CLASS`, `PVCHECK_RUN_ID`, `KUBECONFIG`, within
/// `timeouts.upgrade`); its record (command, exit status, seconds, last lines) and its
/// stdout, or a `Command` error naming its stderr.
pub fn node_command(
    vol: &KubeVolume,
    field: &str,
    cmd: &str,
    node: &str,
) -> Result<(Value, Vec<u8>), (Value, PlatformError)> {
    let shared = &vol.ctx.shared;
    let mut c = std::process::Command::new("sh");
    c.arg("-c")
        .arg(cmd)
        .env("PVCHECK_NODE", node)
        .env("PVCHECK_CLASS", vol.class.name())
        .env("PVCHECK_RUN_ID", &shared.run_id);
    if !shared.conn.source.starts_with("in-cluster") {
        c.env("KUBECONFIG", &shared.conn.source);
    }
    if let Some(d) = vol.class.file.parent().filter(|d| d.is_dir()) {
        c.current_dir(d);
    }
    let start = Instant::now();
    let out = match crate::sys::run(&mut c, vol.ctx.timeouts.upgrade) {
        Ok(o) => o,
        Err(e) => {
            let rec = json!({"command": cmd, "status": Value::Null,
                "seconds": start.elapsed().as_secs_f64(), "error": e.to_string()});
            return Err((rec, e));
        }
    };
    let last = |b: &[u8]| -> Vec<String> {
        let text = String::from_utf8_lossy(b);
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        lines[lines.len().saturating_sub(LAST_LINES)..]
            .iter()
            .map(|l| l.to_string())
            .collect()
    };
    let rec = json!({
        "command": cmd,
        "status": out.status.code(),
        "seconds": start.elapsed().as_secs_f64(),
        "stdout_last_lines": last(&out.stdout),
        "stderr_last_lines": last(&out.stderr),
    });
    if !out.status.success() {
        let e = PlatformError::Command {
            command: format!("{field} {cmd:?} (node {node})"),
            status: out.status.to_string(),
            stderr: super::client::one_line(&String::from_utf8_lossy(&out.stderr)),
        };
        return Err((rec, e));
    }
    Ok((rec, out.stdout))
}

/// The PV's CSI driver, its attachments, and whether the node's CSINode lists the driver.
async fn look(
    client: &kube::Client,
    pv: &str,
    node: &str,
) -> Result<(String, Vec<Attachment>, bool), PlatformError> {
    let driver = super::csi::driver_of_pv(client, pv)
        .await?
        .unwrap_or_default();
    let vas = attach::of_pv(client, pv, None)
        .await?
        .iter()
        .map(attachment)
        .collect();
    let listed = super::csi::node_drivers(client, node)
        .await?
        .contains(&driver);
    Ok((driver, vas, listed))
}

/// Waits until the node's Lease is renewed after `since_ms`: the kubelet is back.
async fn until_lease_renewed(
    client: &kube::Client,
    node: &str,
    since_ms: u64,
    limit: Duration,
) -> Result<u64, PlatformError> {
    let api: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    wait::until(
        api,
        node,
        &format!("the kubelet of node {node} to renew its Lease after the start command"),
        limit,
        |l: Option<&Lease>| {
            let renewed = l
                .and_then(|l| l.spec.as_ref())
                .and_then(|s| s.renew_time.as_ref())
                .map(|t| t.0.as_millisecond());
            match renewed {
                Some(ms) if ms >= 0 && ms as u64 >= since_ms => Decision::Done(ms as u64),
                _ => Decision::Wait,
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

/// `Volume::disrupt_node_agent` on Kubernetes.
pub fn disrupt(
    vol: &mut KubeVolume,
    how: NodeAgentDisruption,
) -> Result<DriverWindow, PlatformError> {
    let (stop, start) = commands(&vol.class)?;
    let (Some(pv), Some(node)) = (vol.pv().map(str::to_string), vol.node().map(str::to_string))
    else {
        return Err(PlatformError::Other(format!(
            "volume {}: no pod ran on it yet, so its PV and node are not known",
            crate::platform::Volume::id(vol)
        )));
    };
    let ctx = vol.ctx.clone();
    let conn = &ctx.shared.conn;
    let client = ctx.client.clone();
    let (driver, before, listed_before) = conn.block_on(look(&client, &pv, &node))?;
    let began_ms = crate::sys::unix_ms();
    let stopped = match run_command(vol, "stop", &stop, &node) {
        Ok(r) => r,
        Err((rec, e)) => {
            // The stop may have stopped it halfway: the start command puts it back.
            let _ = rec;
            let _ = run_command(vol, "start", &start, &node);
            return Err(e);
        }
    };
    let stopped_ms = crate::sys::unix_ms();
    let mut deleted = Vec::new();
    let mut delete_error = None;
    if how == NodeAgentDisruption::PodsDeletedWhileDown {
        // Every pod of the volume (the holder and the agents): the node keeps the volume
        // staged and published until the kubelet, back, notices they are gone.
        let r = conn.block_on(async {
            for p in agent_pod::volume_pods(&ctx).await? {
                let n = p.metadata.name.unwrap_or_default();
                agent_pod::delete(&ctx, &n, 5, false, Duration::ZERO).await?;
                deleted.push(n);
            }
            Ok::<_, PlatformError>(())
        });
        delete_error = r.err();
    }
    std::thread::sleep(DOWN.saturating_sub(Duration::from_millis(
        crate::sys::unix_ms().saturating_sub(stopped_ms),
    )));
    let start_ms = crate::sys::unix_ms();
    let started = run_command(vol, "start", &start, &node).map_err(|(_, e)| e)?;
    if let Some(e) = delete_error {
        return Err(e);
    }
    // Lease times are kept to the microsecond, the command's start to the millisecond.
    let back_ms = conn.block_on(until_lease_renewed(
        &client,
        &node,
        start_ms,
        ctx.timeouts.pod_start,
    ))?;
    let mut problems = Vec::new();
    let mut teardown = Value::Null;
    if how == NodeAgentDisruption::PodsDeletedWhileDown {
        // The kubelet, back, kills the pods and removes them, unpublishes and unstages the
        // volume; the VolumeAttachment goes once it reported the volume unmounted.
        let t = Instant::now();
        conn.block_on(async {
            for n in &deleted {
                agent_pod::delete(&ctx, n, 5, true, ctx.timeouts.pod_start)
                    .await
                    .map_err(|e| {
                        PlatformError::Other(format!(
                            "after the kubelet of node {node} came back, pod {}/{n} deleted while it was down was not removed: {e}",
                            ctx.shared.namespace
                        ))
                    })?;
            }
            Ok::<_, PlatformError>(())
        })?;
        let pods_gone_s = t.elapsed().as_secs_f64();
        conn.block_on(attach::until_detached(
            &client,
            &ctx.shared.in_use,
            &pv,
            Some(&node),
            ctx.timeouts.attach,
        ))
        .map_err(|e| {
            PlatformError::Other(format!(
                "after the kubelet of node {node} came back and removed the pods, the volume was not detached (the kubelet did not report it unmounted): {e}"
            ))
        })?;
        teardown = json!({"pods_deleted": deleted, "pods_gone_seconds": pods_gone_s,
            "detached_seconds": t.elapsed().as_secs_f64()});
    }
    let (_, after, listed_after) = conn.block_on(look(&client, &pv, &node))?;
    if how == NodeAgentDisruption::Restart {
        problems.extend(
            attachment_changes(&before, &after)
                .into_iter()
                .map(|p| format!("after the kubelet of node {node} restarted: {p}")),
        );
    }
    if listed_before && !listed_after {
        problems.push(format!(
            "after the kubelet of node {node} restarted, its CSINode no longer lists driver {driver}"
        ));
    }
    Ok(DriverWindow {
        what: match how {
            NodeAgentDisruption::Restart => "kubelet restart".into(),
            NodeAgentDisruption::PodsDeletedWhileDown => {
                "kubelet stopped, pods deleted, kubelet started".into()
            }
        },
        began_ms,
        old_stopped_ms: Some(stopped_ms),
        new_answered_ms: back_ms.max(start_ms),
        node: Some(node.clone()),
        report: json!({
            "node": node,
            "driver": driver,
            "stop": stopped,
            "start": started,
            "down_seconds": start_ms.saturating_sub(stopped_ms) as f64 / 1000.0,
            "lease_renewed_ms": back_ms,
            "volume_attachments_before": before,
            "volume_attachments_after": after,
            "csinode_lists_driver_before": listed_before,
            "csinode_lists_driver_after": listed_after,
            "teardown": teardown,
            "problems": problems,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(name: &str, node: &str, attached: bool) -> Attachment {
        Attachment {
            name: name.into(),
            node: node.into(),
            attached,
        }
    }

    /// Same name, node and attached state: nothing to say; anything else is named.
    #[test]
    fn an_attachment_that_moved_detached_or_vanished_is_named() {
        let before = vec![a("csi-1", "n1", true)];
        assert!(attachment_changes(&before, &before.clone()).is_empty());
        let c = attachment_changes(&before, &[a("csi-1", "n1", false)]);
        assert_eq!(
            c,
            ["VolumeAttachment csi-1 changed: node n1 attached true became node n1 attached false"]
        );
        let c = attachment_changes(&before, &[a("csi-2", "n2", true)]);
        assert_eq!(
            c,
            [
                "VolumeAttachment csi-1 (node n1) is gone",
                "VolumeAttachment csi-2 (node n2) appeared"
            ]
        );
    }
}
