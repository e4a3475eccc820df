//! Where a volume may move (the other-node check): nodes that are schedulable for the agent's
//! pods (Ready, not cordoned, matching the class's `placement.node_selector`, no NoSchedule or
//! NoExecute taint the class's tolerations do not tolerate) and that the PV's `nodeAffinity`
//! allows, as the scheduler's VolumeBinding plugin reads it.

use k8s_openapi::api::core::v1::{
    Node, NodeSelectorRequirement, NodeSelectorTerm, PersistentVolume, Taint,
};

use crate::config::kube::{PlacementSpec, Toleration};
use crate::platform::Elsewhere;

/// The nodes other than `current` the PV can be used on by the class's pods, or why there are none.
pub fn elsewhere(
    nodes: &[Node],
    pv: &PersistentVolume,
    current: &str,
    placement: &PlacementSpec,
) -> Elsewhere {
    let schedulable: Vec<&Node> = nodes
        .iter()
        .filter(|n| super::preflight::schedulable(n) && placement_allows(n, placement))
        .collect();
    let others: Vec<&Node> = schedulable
        .iter()
        .copied()
        .filter(|n| name(n) != current)
        .collect();
    if others.is_empty() {
        return Elsewhere::Nowhere(format!(
            "the cluster has no schedulable node for this class's pods other than {current}: the volume cannot move"
        ));
    }
    let allowed: Vec<String> = others
        .iter()
        .filter(|n| pv_allows(n, pv))
        .map(|n| name(n).to_string())
        .collect();
    if allowed.is_empty() {
        let pv_name = pv.metadata.name.as_deref().unwrap_or("?");
        return Elsewhere::Nowhere(format!(
            "PV {pv_name}'s node affinity allows no schedulable node but {current} ({}): a node-local volume cannot move",
            affinity_text(pv)
        ));
    }
    Elsewhere::Nodes(allowed)
}

fn name(n: &Node) -> &str {
    n.metadata.name.as_deref().unwrap_or("")
}

/// The PV's required node affinity allows `node` (no affinity: every node).
pub fn pv_allows(node: &Node, pv: &PersistentVolume) -> bool {
    let Some(terms) = pv
        .spec
        .as_ref()
        .and_then(|s| s.node_affinity.as_ref())
        .and_then(|a| a.required.as_ref())
        .map(|r| &r.node_selector_terms)
    else {
        return true;
    };
    // Terms are ORed; an empty list of terms matches nothing (as the scheduler reads it).
    terms.iter().any(|t| term_matches(node, t))
}

/// Requirements within a term are ANDed; a term with no requirement matches nothing.
fn term_matches(node: &Node, term: &NodeSelectorTerm) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    let labels = node.metadata.labels.clone().unwrap_or_default();
    exprs
        .iter()
        .all(|r| requirement(labels.get(&r.key).map(String::as_str), r))
        && fields.iter().all(|r| {
            let value = (r.key == "metadata.name").then(|| name(node));
            requirement(value, r)
        })
}

fn requirement(value: Option<&str>, r: &NodeSelectorRequirement) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    let number = |s: &str| s.parse::<i64>().ok();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| values.iter().all(|x| x != v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(bound)) = (
                value.and_then(number),
                values.first().and_then(|x| number(x)),
            ) else {
                return false;
            };
            if r.operator == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

/// The class's nodeSelector matches and every NoSchedule/NoExecute taint is tolerated.
fn placement_allows(node: &Node, placement: &PlacementSpec) -> bool {
    let labels = node.metadata.labels.clone().unwrap_or_default();
    let selected = placement
        .node_selector
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v));
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    selected
        && taints
            .iter()
            .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
            .all(|t| placement.tolerations.iter().any(|tol| tolerates(tol, t)))
}

fn tolerates(tol: &Toleration, taint: &Taint) -> bool {
    if tol.effect.as_deref().is_some_and(|e| e != taint.effect) {
        return false;
    }
    match tol.operator.as_deref() {
        Some("Exists") => tol.key.as_deref().is_none_or(|k| k == taint.key),
        _ => {
            tol.key.as_deref() == Some(taint.key.as_str())
                && tol.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
    }
}

/// `topology.x/node In [n1]`, for a message.
fn affinity_text(pv: &PersistentVolume) -> String {
    let terms = pv
        .spec
        .as_ref()
        .and_then(|s| s.node_affinity.as_ref())
        .and_then(|a| a.required.as_ref())
        .map(|r| r.node_selector_terms.clone())
        .unwrap_or_default();
    terms
        .iter()
        .map(|t| {
            t.match_expressions
                .iter()
                .flatten()
                .chain(t.match_fields.iter().flatten())
                .map(|r| {
                    format!(
                        "{} {} [{}]",
                        r.key,
                        r.operator,
                        r.values.clone().unwrap_or_default().join(", ")
                    )
                })
                .collect::<Vec<_>>()
                .join(" and ")
        })
        .collect::<Vec<_>>()
        .join(" or ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        NodeCondition, NodeSelector, NodeSpec, NodeStatus, PersistentVolumeSpec, VolumeNodeAffinity,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use std::collections::BTreeMap;

    fn node(name: &str, labels: &[(&str, &str)]) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect::<BTreeMap<_, _>>(),
                ),
                ..Default::default()
            },
            spec: Some(NodeSpec::default()),
            status: Some(NodeStatus {
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    fn pv(exprs: Option<Vec<NodeSelectorRequirement>>) -> PersistentVolume {
        PersistentVolume {
            metadata: ObjectMeta {
                name: Some("pv1".into()),
                ..Default::default()
            },
            spec: Some(PersistentVolumeSpec {
                node_affinity: exprs.map(|e| VolumeNodeAffinity {
                    required: Some(NodeSelector {
                        node_selector_terms: vec![NodeSelectorTerm {
                            match_expressions: Some(e),
                            match_fields: None,
                        }],
                    }),
                }),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn req(key: &str, op: &str, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|v| v.to_string()).collect()),
        }
    }

    fn nodes() -> Vec<Node> {
        vec![
            node("n1", &[("topology.pvcheck.io/node", "n1"), ("zone", "a")]),
            node("n2", &[("zone", "a")]),
            node("n3", &[("zone", "b")]),
        ]
    }

    #[test]
    fn a_pv_without_node_affinity_moves_to_every_other_schedulable_node() {
        let e = elsewhere(&nodes(), &pv(None), "n1", &PlacementSpec::default());
        assert_eq!(e, Elsewhere::Nodes(vec!["n2".into(), "n3".into()]));
    }

    /// The test cluster's CSI driver: topology key on node 1 only.
    #[test]
    fn a_node_local_pv_is_nowhere_and_says_its_affinity() {
        let p = pv(Some(vec![req("topology.pvcheck.io/node", "In", &["n1"])]));
        let Elsewhere::Nowhere(why) = elsewhere(&nodes(), &p, "n1", &PlacementSpec::default())
        else {
            panic!("a node-local PV moved")
        };
        assert!(
            why.contains("pv1") && why.contains("topology.pvcheck.io/node In [n1]"),
            "{why}"
        );
    }

    #[test]
    fn a_zonal_pv_moves_within_its_zone_only() {
        let p = pv(Some(vec![req("zone", "In", &["a"])]));
        let e = elsewhere(&nodes(), &p, "n1", &PlacementSpec::default());
        assert_eq!(e, Elsewhere::Nodes(vec!["n2".into()]));
    }

    #[test]
    fn one_schedulable_node_is_nowhere() {
        let mut ns = nodes();
        ns[1].spec.as_mut().unwrap().unschedulable = Some(true);
        ns[2].status = None; // not Ready
        let e = elsewhere(&ns, &pv(None), "n1", &PlacementSpec::default());
        assert!(
            matches!(&e, Elsewhere::Nowhere(w) if w.contains("no schedulable node")),
            "{e:?}"
        );
    }

    #[test]
    fn a_tainted_node_counts_only_when_the_class_tolerates_it() {
        let mut ns = nodes();
        ns[1].spec.as_mut().unwrap().taints = Some(vec![Taint {
            key: "dedicated".into(),
            value: Some("db".into()),
            effect: "NoSchedule".into(),
            time_added: None,
        }]);
        let e = elsewhere(&ns, &pv(None), "n1", &PlacementSpec::default());
        assert_eq!(e, Elsewhere::Nodes(vec!["n3".into()]));
        let placement = PlacementSpec {
            node_selector: BTreeMap::new(),
            tolerations: vec![Toleration {
                key: Some("dedicated".into()),
                operator: Some("Equal".into()),
                value: Some("db".into()),
                effect: Some("NoSchedule".into()),
                toleration_seconds: None,
            }],
        };
        let e = elsewhere(&ns, &pv(None), "n1", &placement);
        assert_eq!(e, Elsewhere::Nodes(vec!["n2".into(), "n3".into()]));
    }

    #[test]
    fn the_class_node_selector_limits_the_candidates() {
        let placement = PlacementSpec {
            node_selector: BTreeMap::from([("zone".to_string(), "b".to_string())]),
            tolerations: vec![],
        };
        let e = elsewhere(&nodes(), &pv(None), "n1", &placement);
        assert_eq!(e, Elsewhere::Nodes(vec!["n3".into()]));
    }

    #[test]
    fn operators_read_as_the_scheduler_reads_them() {
        let n = node("n9", &[("rack", "7"), ("zone", "a")]);
        let ok = |r: NodeSelectorRequirement| pv_allows(&n, &pv(Some(vec![r])));
        assert!(ok(req("zone", "NotIn", &["b"])));
        assert!(ok(req("missing", "NotIn", &["b"])));
        assert!(!ok(req("zone", "NotIn", &["a"])));
        assert!(ok(req("rack", "Gt", &["6"])) && !ok(req("rack", "Gt", &["7"])));
        assert!(ok(req("rack", "Lt", &["8"])) && !ok(req("zone", "Lt", &["8"])));
        assert!(ok(req("zone", "Exists", &[])) && !ok(req("zone", "DoesNotExist", &[])));
        let by_name = PersistentVolume {
            spec: Some(PersistentVolumeSpec {
                node_affinity: Some(VolumeNodeAffinity {
                    required: Some(NodeSelector {
                        node_selector_terms: vec![NodeSelectorTerm {
                            match_expressions: None,
                            match_fields: Some(vec![req("metadata.name", "In", &["n9"])]),
                        }],
                    }),
                }),
                ..Default::default()
            }),
            ..pv(None)
        };
        assert!(pv_allows(&n, &by_name));
        assert!(!pv_allows(&node("n8", &[]), &by_name));
    }
}
