//! The agent pod's manifest, built to pass Pod Security "restricted" (kubernetes#118184: do not
//! hide problems behind privileged pods).
//!
//! Non-root user 65532 (the image's), no privilege escalation, every capability dropped,
//! seccomp `RuntimeDefault` (so io_uring is refused and the agent's thread engine runs; the
//! speed result says so), a read-only root filesystem, and an fsGroup so the volume is writable.
//! Ledgers and acknowledgement lists come in as a read-only ConfigMap volume at [`INPUTS_DIR`];
//! results go out through the log. No service-account token. Placement through nodeSelector,
//! tolerations and node affinity only: never `nodeName`, which bypasses the scheduler.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMapVolumeSource, Container, EmptyDirVolumeSource,
    LocalObjectReference, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
    PersistentVolumeClaimVolumeSource, Pod, PodSecurityContext, PodSpec, ResourceRequirements,
    SeccompProfile, SecurityContext, Toleration, Volume, VolumeDevice, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::config::kube::{PlacementSpec, VolumeMode};

/// The image's non-root user and group.
pub const AGENT_UID: i64 = 65532;
/// Where the volume is mounted (Filesystem) in the agent's container.
pub const DATA_DIR: &str = "/data";
/// Where a Block volume's device appears.
pub const DEVICE_PATH: &str = "/dev/pvcheck-volume";
/// What the agent works on in the container: the mount, or a Block volume's device.
pub fn target_path(mode: VolumeMode) -> &'static str {
    match mode {
        VolumeMode::Filesystem => DATA_DIR,
        VolumeMode::Block => DEVICE_PATH,
    }
}
/// What the agent is pointed at in a pod of a volume in `mode`: its mount or its device.
pub fn agent_target(mode: VolumeMode) -> crate::platform::AgentTarget<'static> {
    let path = std::path::Path::new(target_path(mode));
    match mode {
        VolumeMode::Filesystem => crate::platform::AgentTarget::Dir(path),
        VolumeMode::Block => crate::platform::AgentTarget::Device(path),
    }
}
/// Where the agent's inputs (ledgers, acks) appear, read-only.
pub const INPUTS_DIR: &str = "/inputs";
/// The agent binary in the image.
pub const AGENT_PATH: &str = "/pvcheck-agent";

/// What one pod is for.
pub struct PodPlan<'a> {
    pub name: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub image: &'a str,
    pub pull_secrets: &'a [String],
    pub claim: &'a str,
    pub volume_mode: VolumeMode,
    /// The container's arguments after the agent binary.
    pub args: Vec<String>,
    /// A ConfigMap with the agent's inputs, mounted at [`INPUTS_DIR`].
    pub inputs: Option<String>,
    /// Run on this node (node affinity on `metadata.name`, as DaemonSets do).
    pub node: Option<String>,
    /// Never on these nodes (the other-node check).
    pub not_nodes: Vec<String>,
    pub placement: &'a PlacementSpec,
    pub grace_seconds: i64,
}

fn q(s: &str) -> Quantity {
    Quantity(s.to_string())
}

/// The pod manifest.
pub fn build(p: &PodPlan<'_>) -> Pod {
    let mut volumes = vec![
        Volume {
            name: "data".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: p.claim.to_string(),
                read_only: Some(false),
            }),
            ..Default::default()
        },
        // The root filesystem is read-only; nothing of the agent's needs /tmp, but a library
        // that does gets a small scratch space instead of an error (kbench#11).
        Volume {
            name: "tmp".into(),
            empty_dir: Some(EmptyDirVolumeSource {
                size_limit: Some(q("16Mi")),
                ..Default::default()
            }),
            ..Default::default()
        },
    ];
    let mut mounts = vec![VolumeMount {
        name: "tmp".into(),
        mount_path: "/tmp".into(),
        ..Default::default()
    }];
    let mut devices = Vec::new();
    match p.volume_mode {
        VolumeMode::Filesystem => mounts.push(VolumeMount {
            name: "data".into(),
            mount_path: DATA_DIR.into(),
            ..Default::default()
        }),
        VolumeMode::Block => devices.push(VolumeDevice {
            name: "data".into(),
            device_path: DEVICE_PATH.into(),
        }),
    }
    if let Some(cm) = &p.inputs {
        volumes.push(Volume {
            name: "inputs".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: cm.clone(),
                default_mode: Some(0o444),
                optional: Some(false),
                ..Default::default()
            }),
            ..Default::default()
        });
        mounts.push(VolumeMount {
            name: "inputs".into(),
            mount_path: INPUTS_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        });
    }
    // A holder pod (`pod --hold`) only sleeps: requesting an agent's CPU for it let a run's
    // holders fill a small cluster's CPU requests until the agent pods their checks waited
    // for could not be scheduled (ten classes on the 2-node test cluster with 64 trial
    // threads, 2026-12-06).
    let holds = p.args.iter().any(|a| a == "--hold");
    let container = Container {
        name: "agent".into(),
        image: Some(p.image.to_string()),
        image_pull_policy: Some("IfNotPresent".into()),
        command: Some(vec![AGENT_PATH.into()]),
        args: Some(p.args.clone()),
        volume_mounts: Some(mounts),
        volume_devices: (!devices.is_empty()).then_some(devices),
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_string(), q(if holds { "10m" } else { "100m" })),
                (
                    "memory".to_string(),
                    q(if holds { "16Mi" } else { "128Mi" }),
                ),
            ])),
            // No CPU limit: throttling would show up as latency in the speed trials.
            limits: Some(BTreeMap::from([("memory".to_string(), q("2Gi"))])),
            ..Default::default()
        }),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            privileged: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            run_as_user: Some(AGENT_UID),
            run_as_group: Some(AGENT_UID),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add: None,
            }),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                localhost_profile: None,
            }),
            ..Default::default()
        }),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Default::default()
    };
    let mut terms = Vec::new();
    if let Some(n) = &p.node {
        terms.push(NodeSelectorRequirement {
            key: "metadata.name".into(),
            operator: "In".into(),
            values: Some(vec![n.clone()]),
        });
    }
    if !p.not_nodes.is_empty() {
        terms.push(NodeSelectorRequirement {
            key: "metadata.name".into(),
            operator: "NotIn".into(),
            values: Some(p.not_nodes.clone()),
        });
    }
    let affinity = (!terms.is_empty()).then(|| Affinity {
        node_affinity: Some(NodeAffinity {
            required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                node_selector_terms: vec![NodeSelectorTerm {
                    match_fields: Some(terms),
                    match_expressions: None,
                }],
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let tolerations: Vec<Toleration> = p
        .placement
        .tolerations
        .iter()
        .map(|t| Toleration {
            key: t.key.clone(),
            operator: t.operator.clone(),
            value: t.value.clone(),
            effect: t.effect.clone(),
            toleration_seconds: t.toleration_seconds,
        })
        .collect();
    Pod {
        metadata: ObjectMeta {
            name: Some(p.name.clone()),
            namespace: Some(p.namespace.clone()),
            labels: Some(p.labels.clone()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![container],
            volumes: Some(volumes),
            restart_policy: Some("Never".into()),
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            termination_grace_period_seconds: Some(p.grace_seconds),
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(AGENT_UID),
                run_as_group: Some(AGENT_UID),
                fs_group: Some(AGENT_UID),
                fs_group_change_policy: Some("OnRootMismatch".into()),
                seccomp_profile: Some(SeccompProfile {
                    type_: "RuntimeDefault".into(),
                    localhost_profile: None,
                }),
                ..Default::default()
            }),
            node_selector: (!p.placement.node_selector.is_empty())
                .then(|| p.placement.node_selector.clone()),
            tolerations: (!tolerations.is_empty()).then_some(tolerations),
            affinity,
            image_pull_secrets: (!p.pull_secrets.is_empty()).then(|| {
                p.pull_secrets
                    .iter()
                    .map(|s| LocalObjectReference { name: s.clone() })
                    .collect()
            }),
            ..Default::default()
        }),
        status: None,
    }
}

/// The rules of Pod Security "restricted" (kubernetes.io/docs/concepts/security/pod-security-standards),
/// checked on a manifest: every violation, one line each. Used by the tests, and before a pod
/// is created so a violation is pvcheck's bug reported as such, not an admission error.
pub fn restricted_violations(pod: &Pod) -> Vec<String> {
    let mut v = Vec::new();
    let Some(spec) = &pod.spec else {
        return vec!["no spec".into()];
    };
    let psc = spec.security_context.clone().unwrap_or_default();
    if spec.host_network == Some(true) || spec.host_pid == Some(true) || spec.host_ipc == Some(true)
    {
        v.push("host namespaces".into());
    }
    for vol in spec.volumes.iter().flatten() {
        let allowed = vol.config_map.is_some()
            || vol.persistent_volume_claim.is_some()
            || vol.empty_dir.is_some()
            || vol.secret.is_some()
            || vol.projected.is_some()
            || vol.downward_api.is_some()
            || vol.csi.is_some()
            || vol.ephemeral.is_some();
        if !allowed {
            v.push(format!("volume {} has a type restricted forbids", vol.name));
        }
    }
    let pod_seccomp = psc.seccomp_profile.as_ref().map(|s| s.type_.as_str());
    for c in spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
    {
        let sc = c.security_context.clone().unwrap_or_default();
        if sc.privileged == Some(true) {
            v.push(format!("container {}: privileged", c.name));
        }
        if sc.allow_privilege_escalation != Some(false) {
            v.push(format!(
                "container {}: allowPrivilegeEscalation is not false",
                c.name
            ));
        }
        let drops_all = sc
            .capabilities
            .as_ref()
            .and_then(|c| c.drop.as_ref())
            .is_some_and(|d| d.iter().any(|x| x == "ALL"));
        if !drops_all {
            v.push(format!(
                "container {}: capabilities do not drop ALL",
                c.name
            ));
        }
        let adds = sc
            .capabilities
            .as_ref()
            .and_then(|c| c.add.as_ref())
            .map(|a| a.iter().any(|x| x != "NET_BIND_SERVICE"))
            .unwrap_or(false);
        if adds {
            v.push(format!("container {}: adds capabilities", c.name));
        }
        let non_root = sc.run_as_non_root.or(psc.run_as_non_root) == Some(true);
        if !non_root {
            v.push(format!("container {}: runAsNonRoot is not true", c.name));
        }
        if sc.run_as_user.or(psc.run_as_user) == Some(0) {
            v.push(format!("container {}: runs as uid 0", c.name));
        }
        let seccomp = sc
            .seccomp_profile
            .as_ref()
            .map(|s| s.type_.as_str())
            .or(pod_seccomp);
        if !matches!(seccomp, Some("RuntimeDefault") | Some("Localhost")) {
            v.push(format!(
                "container {}: seccompProfile is not RuntimeDefault or Localhost",
                c.name
            ));
        }
        if c.ports
            .iter()
            .flatten()
            .any(|p| p.host_port.is_some_and(|h| h != 0))
        {
            v.push(format!("container {}: hostPort", c.name));
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(placement: &PlacementSpec, mode: VolumeMode) -> PodPlan<'_> {
        PodPlan {
            name: "p".into(),
            namespace: "ns".into(),
            labels: BTreeMap::new(),
            image: "img",
            pull_secrets: &[],
            claim: "c",
            volume_mode: mode,
            args: vec!["pod".into()],
            inputs: Some("cm".into()),
            node: Some("n1".into()),
            not_nodes: vec![],
            placement,
            grace_seconds: 5,
        }
    }

    /// kubernetes#118184: the agent must run where users run, under "restricted".
    #[test]
    fn the_agent_pod_passes_pod_security_restricted() {
        let placement = PlacementSpec::default();
        for mode in [VolumeMode::Filesystem, VolumeMode::Block] {
            let pod = build(&plan(&placement, mode));
            assert_eq!(restricted_violations(&pod), Vec::<String>::new());
            let spec = pod.spec.unwrap();
            let c = &spec.containers[0];
            let sc = c.security_context.as_ref().unwrap();
            assert_eq!(sc.read_only_root_filesystem, Some(true), "kbench#11");
            assert_eq!(spec.security_context.unwrap().fs_group, Some(AGENT_UID));
            assert_eq!(spec.automount_service_account_token, Some(false));
            assert!(c.resources.as_ref().unwrap().requests.is_some());
            assert!(c.resources.as_ref().unwrap().limits.is_some());
        }
    }

    /// A holder only sleeps: it asks for a tenth of an agent's CPU, so holders cannot fill a
    /// node's requests before their checks' agent pods are scheduled.
    #[test]
    fn a_holder_pod_requests_a_tenth_of_an_agents_cpu() {
        let placement = PlacementSpec::default();
        let mut p = plan(&placement, VolumeMode::Filesystem);
        let cpu = |p: &PodPlan<'_>| {
            let pod = build(p);
            let c = &pod.spec.unwrap().containers[0];
            c.resources.as_ref().unwrap().requests.as_ref().unwrap()["cpu"]
                .0
                .clone()
        };
        assert_eq!(cpu(&p), "100m");
        p.args = vec!["pod".into(), "--hold".into()];
        assert_eq!(cpu(&p), "10m");
    }

    /// The checker itself must not be blind: each rule it knows is caught when broken.
    #[test]
    fn the_restricted_checker_catches_each_broken_rule() {
        let placement = PlacementSpec::default();
        let base = build(&plan(&placement, VolumeMode::Filesystem));
        type Breaker = fn(&mut Pod);
        let breakers: [(&str, Breaker); 6] = [
            ("privileged", |p| {
                p.spec.as_mut().unwrap().containers[0]
                    .security_context
                    .as_mut()
                    .unwrap()
                    .privileged = Some(true)
            }),
            ("allowPrivilegeEscalation", |p| {
                p.spec.as_mut().unwrap().containers[0]
                    .security_context
                    .as_mut()
                    .unwrap()
                    .allow_privilege_escalation = None
            }),
            ("drop ALL", |p| {
                p.spec.as_mut().unwrap().containers[0]
                    .security_context
                    .as_mut()
                    .unwrap()
                    .capabilities = None
            }),
            ("runAsNonRoot", |p| {
                p.spec.as_mut().unwrap().containers[0]
                    .security_context
                    .as_mut()
                    .unwrap()
                    .run_as_non_root = None;
                p.spec
                    .as_mut()
                    .unwrap()
                    .security_context
                    .as_mut()
                    .unwrap()
                    .run_as_non_root = None;
            }),
            ("seccompProfile", |p| {
                p.spec.as_mut().unwrap().containers[0]
                    .security_context
                    .as_mut()
                    .unwrap()
                    .seccomp_profile = None;
                p.spec
                    .as_mut()
                    .unwrap()
                    .security_context
                    .as_mut()
                    .unwrap()
                    .seccomp_profile = None;
            }),
            ("hostPath", |p| {
                p.spec
                    .as_mut()
                    .unwrap()
                    .volumes
                    .as_mut()
                    .unwrap()
                    .push(Volume {
                        name: "h".into(),
                        host_path: Some(Default::default()),
                        ..Default::default()
                    })
            }),
        ];
        for (what, brk) in breakers {
            let mut pod = base.clone();
            brk(&mut pod);
            assert!(!restricted_violations(&pod).is_empty(), "{what} not caught");
        }
    }

    /// kubernetes#70259: nodeName bypasses the scheduler; a pinned pod uses node affinity.
    #[test]
    fn a_pinned_pod_uses_node_affinity_never_node_name() {
        let placement = PlacementSpec::default();
        let pod = build(&plan(&placement, VolumeMode::Filesystem));
        let spec = pod.spec.unwrap();
        assert!(spec.node_name.is_none());
        let terms = spec
            .affinity
            .unwrap()
            .node_affinity
            .unwrap()
            .required_during_scheduling_ignored_during_execution
            .unwrap()
            .node_selector_terms;
        let f = terms[0].match_fields.as_ref().unwrap();
        assert_eq!(f[0].key, "metadata.name");
        assert_eq!(f[0].values.as_deref(), Some(&["n1".to_string()][..]));
    }

    /// The volume under test reaches the container: as a mount (Filesystem) or a device (Block).
    #[test]
    fn the_claim_is_mounted_at_the_data_dir() {
        let placement = PlacementSpec::default();
        let spec = build(&plan(&placement, VolumeMode::Filesystem))
            .spec
            .unwrap();
        let v = spec
            .volumes
            .as_ref()
            .unwrap()
            .iter()
            .find(|v| v.name == "data")
            .unwrap();
        assert_eq!(v.persistent_volume_claim.as_ref().unwrap().claim_name, "c");
        let c = &spec.containers[0];
        assert!(
            c.volume_mounts
                .as_ref()
                .unwrap()
                .iter()
                .any(|m| m.name == "data" && m.mount_path == DATA_DIR)
        );
        let spec = build(&plan(&placement, VolumeMode::Block)).spec.unwrap();
        let c = &spec.containers[0];
        assert!(
            c.volume_devices
                .as_ref()
                .unwrap()
                .iter()
                .any(|d| d.name == "data" && d.device_path == DEVICE_PATH)
        );
    }

    #[test]
    fn inputs_are_mounted_read_only() {
        let placement = PlacementSpec::default();
        let pod = build(&plan(&placement, VolumeMode::Filesystem));
        let c = &pod.spec.unwrap().containers[0];
        let m = c
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .find(|m| m.mount_path == INPUTS_DIR)
            .unwrap();
        assert_eq!(m.read_only, Some(true));
    }
}
