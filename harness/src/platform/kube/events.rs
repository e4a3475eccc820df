//! The reasons Kubernetes gives in events: why a pod does not start (scheduling, image pull,
//! attach, mount) or a PVC does not bind, so a failure names the cause instead of a timeout.

use k8s_openapi::api::core::v1::Event;
use kube::Api;
use kube::api::ListParams;

/// The last `max` distinct events about `kind/name` in `namespace`, Warnings first, as
/// `Reason: message` (one line each, oldest first among each kind).
pub async fn about(
    client: &kube::Client,
    namespace: &str,
    kind: &str,
    name: &str,
    max: usize,
) -> Vec<String> {
    let api: Api<Event> = Api::namespaced(client.clone(), namespace);
    let lp = ListParams::default().fields(&format!(
        "involvedObject.kind={kind},involvedObject.name={name}"
    ));
    let Ok(list) = api.list(&lp).await else {
        return Vec::new();
    };
    let mut items = list.items;
    items.sort_by_key(|e| {
        (
            e.type_.as_deref() != Some("Warning"),
            e.last_timestamp
                .as_ref()
                .map(|t| t.0.to_string())
                .or_else(|| e.event_time.as_ref().map(|t| t.0.to_string()))
                .unwrap_or_default(),
        )
    });
    let mut out: Vec<String> = Vec::new();
    for e in items {
        let line = format!(
            "{}: {}",
            e.reason.as_deref().unwrap_or("?"),
            super::client::one_line(e.message.as_deref().unwrap_or(""))
        );
        if !out.contains(&line) {
            out.push(line);
        }
    }
    out.truncate(max);
    out
}

/// `; events: A; B` or nothing.
pub fn suffix(events: &[String]) -> String {
    if events.is_empty() {
        String::new()
    } else {
        format!("; events: {}", events.join(" | "))
    }
}

/// The first of `events` (`Reason: message`) in which the node's CSI driver itself answered the
/// kubelet's mount (or block map) call with an error: `FailedMount` or `FailedMapVolume` whose
/// message carries a gRPC status the driver gave (`rpc error: code = NotFound desc = …`). Not a
/// driver still missing from the kubelet's list, a volume not yet attached or a timeout of the
/// kubelet's own, and not the statuses the kubelet's gRPC client makes up itself when the
/// driver did not answer (`DeadlineExceeded`: the call outlived the kubelet's deadline, a
/// hung driver; `Unavailable`: no connection to its socket; `Canceled`): those stay timeouts.
pub fn driver_refusal(events: &[String]) -> Option<&str> {
    const NO_ANSWER: [&str; 3] = ["DeadlineExceeded", "Unavailable", "Canceled"];
    events
        .iter()
        .find(|e| {
            (e.starts_with("FailedMount:") || e.starts_with("FailedMapVolume:"))
                && e.split("rpc error: code = ").skip(1).any(|rest| {
                    let code = rest.split_whitespace().next().unwrap_or("");
                    !NO_ANSWER.contains(&code)
                })
        })
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A release that forgot the volumes its predecessor created (issue 20) answers NodePublish
    /// with NotFound: the pod's start is the driver's refusal, not a slow cluster; a driver
    /// not registered yet or a volume not attached yet is not the driver's answer.
    #[test]
    fn only_an_answer_of_the_driver_itself_is_its_refusal() {
        let refused = "FailedMount: MountVolume.SetUp failed for volume \"pvc-1\" : rpc error: code = NotFound desc = volume 7f3 not found";
        let events = vec![
            "Scheduled: Successfully assigned ns/p to pvcheck-node-1".to_string(),
            refused.to_string(),
        ];
        assert_eq!(driver_refusal(&events), Some(refused));
        for not_yet in [
            "FailedMount: MountVolume.MountDevice failed for volume \"pvc-1\" : kubernetes.io/csi: attacher.MountDevice failed to create newCsiDriverClient: driver name hostpath.csi.pvcheck.io not found in the list of registered CSI drivers",
            "FailedMount: Unable to attach or mount volumes: unmounted volumes=[data], unattached volumes=[], failed to process volumes=[]: timed out waiting for the condition",
            "FailedAttachVolume: AttachVolume.Attach failed for volume \"pvc-1\" : rpc error: code = Internal desc = attach",
            // A hung driver, or one whose socket is gone: the kubelet gave up, the driver said
            // nothing.
            "FailedMount: MountVolume.SetUp failed for volume \"pvc-1\" : rpc error: code = DeadlineExceeded desc = context deadline exceeded",
            "FailedMount: MountVolume.MountDevice failed for volume \"pvc-1\" : rpc error: code = Unavailable desc = connection error: desc = \"transport: Error while dialing: dial unix /csi/csi.sock: connect: connection refused\"",
        ] {
            assert_eq!(driver_refusal(&[not_yet.to_string()]), None, "{not_yet}");
        }
    }
}
