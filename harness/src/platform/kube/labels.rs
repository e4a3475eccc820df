//! The labels and names that make an object pvcheck's. Cleanup deletes only what carries
//! [`RUN`]; nothing unlabelled is ever deleted (csi-test#223 deleted every listed volume).

use std::collections::BTreeMap;

/// The run an object belongs to.
pub const RUN: &str = "pvcheck.io/run-id";
/// The class whose check created the object.
pub const CLASS: &str = "pvcheck.io/class";
/// The volume (PVC) an object belongs to.
pub const VOLUME: &str = "pvcheck.io/volume";
/// What the object is to pvcheck: `agent`, `holder`, `inputs`, `volume`, `snapshot`, `ledgers`.
pub const ROLE: &str = "pvcheck.io/role";
/// Set on everything: `app.kubernetes.io/managed-by=pvcheck`.
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// On the run's namespace: `host:pid` of the pvcheck process, so `pvcheck cleanup` on the same
/// host can tell a crashed run from a running one.
pub const OWNER: &str = "pvcheck.io/owner";

/// On the namespace of a `--phase before-upgrade` run that kept volumes: `after-upgrade`, until
/// a `--phase after-upgrade --resume` run takes it over. `pvcheck cleanup` without a run id
/// leaves such a namespace alone (unless `--older-than` says it was abandoned).
pub const AWAITING: &str = "pvcheck.io/awaiting";
/// On a resumed run's namespace: the run id that took it over.
pub const RESUMED_BY: &str = "pvcheck.io/resumed-by";

/// On a node pvcheck cordoned for a drained upgrade (`upgrade.drain`): the run id, until
/// pvcheck uncordons it; `pvcheck cleanup` of the run uncordons a node still carrying it.
pub const CORDONED_BY: &str = "pvcheck.io/cordoned-by";

/// The namespace of a run.
pub fn namespace(run_id: &str) -> String {
    format!("pvcheck-{run_id}")
}

/// The labels of an object of `run_id` (and of `class` and `volume`, when it has them).
pub fn of(
    run_id: &str,
    class: Option<&str>,
    volume: Option<&str>,
    role: &str,
) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    m.insert(RUN.to_string(), run_id.to_string());
    m.insert(MANAGED_BY.to_string(), "pvcheck".to_string());
    m.insert(ROLE.to_string(), role.to_string());
    if let Some(c) = class {
        m.insert(CLASS.to_string(), label_value(c));
    }
    if let Some(v) = volume {
        m.insert(VOLUME.to_string(), label_value(v));
    }
    m
}

/// A label value is at most 63 characters: longer names keep a hash of the rest.
pub fn label_value(s: &str) -> String {
    if s.len() <= 63 {
        return s.to_string();
    }
    let h = crate::checks::derive_u64(s);
    format!("{}-{:08x}", &s[..54], h as u32)
}

/// An object name (DNS-1123 label, at most 63 characters) from `s`.
pub fn object_name(s: &str) -> String {
    let clean: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    label_value(clean.trim_matches('-'))
}

/// `pvcheck.io/run-id=<id>[,pvcheck.io/class=<class>]`.
pub fn selector(run_id: Option<&str>, class: Option<&str>) -> String {
    let mut s = match run_id {
        Some(r) => format!("{RUN}={r}"),
        None => RUN.to_string(),
    };
    if let Some(c) = class {
        s.push_str(&format!(",{CLASS}={}", label_value(c)));
    }
    s
}
