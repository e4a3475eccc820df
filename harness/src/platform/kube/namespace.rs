//! The run's namespace: `pvcheck-<run id>`, enforcing Pod Security "restricted", labelled with
//! the run id, annotated with the owning process so `pvcheck cleanup` can tell a crashed run.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::PostParams;

use super::agent_pod::api_error;
use super::labels;
use crate::platform::PlatformError;

/// `host:pid` of this process.
pub fn owner() -> String {
    let host = nix::sys::utsname::uname()
        .map(|u| u.nodename().to_string_lossy().into_owned())
        .unwrap_or_default();
    format!("{host}:{}", std::process::id())
}

/// The namespace's manifest.
pub fn manifest(run_id: &str, name: &str) -> Namespace {
    let mut l = labels::of(run_id, None, None, "namespace");
    for mode in ["enforce", "audit", "warn"] {
        l.insert(
            format!("pod-security.kubernetes.io/{mode}"),
            "restricted".into(),
        );
        l.insert(
            format!("pod-security.kubernetes.io/{mode}-version"),
            "latest".into(),
        );
    }
    Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(l),
            annotations: Some(BTreeMap::from([(labels::OWNER.to_string(), owner())])),
            ..Default::default()
        },
        ..Default::default()
    }
}

pub async fn create(client: &kube::Client, run_id: &str, name: &str) -> Result<(), PlatformError> {
    let api: Api<Namespace> = Api::all(client.clone());
    api.create(&PostParams::default(), &manifest(run_id, name))
        .await
        .map(|_| ())
        .map_err(|e| api_error(&format!("creating namespace {name}"), e))
}

#[cfg(test)]
mod tests {
    /// The run's pods are admitted under "restricted", so a pod that needs more fails here, not
    /// in a user's cluster.
    #[test]
    fn the_namespace_enforces_restricted_and_carries_the_run_label() {
        let ns = super::manifest("abcd1234", "pvcheck-abcd1234");
        let l = ns.metadata.labels.unwrap();
        assert_eq!(l["pod-security.kubernetes.io/enforce"], "restricted");
        assert_eq!(l[super::labels::RUN], "abcd1234");
    }
}
