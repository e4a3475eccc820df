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
