//! A volume's mounts on its node, read from the node's mount table: staged once, published
//! once for each pod of the run that uses it there, and no mount of it left by a pod that is
//! gone (the disruption checks' "staged and published exactly once").
//!
//! pvcheck's pods are restricted and cannot read a node's mount table: the class's
//! `disruption.node_mounts` command prints it (mountinfo lines of the kubelet's mount
//! namespace). The kubelet's paths are found by their ends, so any `--root-dir` matches:
//! `…/plugins/kubernetes.io/csi/<driver>/<sha256 of the volume handle>/globalmount` (the
//! staging path; `…/csi/pv/<pv>/globalmount` before Kubernetes 1.24) and
//! `…/pods/<pod uid>/volumes/kubernetes.io~csi/<pv>/mount` (a pod's).
//!
//! A running pod's mount must be there once. A pod the API no longer has must have none
//! within 30 s (a pod deleted with grace period 0 leaves the API before its kubelet unmounts;
//! one left after that is an orphan). A pod being deleted or finished is in between and not
//! counted. The pods are listed before the table is read, so a pod gone in between is not
//! taken for an orphan. A path seen twice in the table is counted as mounts stacked on each
//! other only where one is the other's parent: the same mount propagated to a second place (a
//! bind-mounted kubelet directory) is not a stack.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::Api;

use super::volume::KubeVolume;
use crate::config::kube::VolumeMode;
use crate::platform::{MountCount, PlatformError};
use crate::sys::MountEntry;

/// The class field that gives the command.
const FIELD: &str = "disruption.node_mounts";

/// What identifies a volume's mounts on a node.
#[derive(Debug, Clone)]
pub struct Mounts<'a> {
    pub driver: &'a str,
    pub handle: &'a str,
    pub pv: &'a str,
    /// The UIDs of the pods on the node that use the volume and run (not being deleted).
    pub running: &'a [String],
    /// The UIDs of the other pods on the node that use the volume and are still in the API
    /// (being deleted, finished): their mounts may or may not be there yet.
    pub leaving: &'a [String],
}

/// A path's components.
fn parts(path: &Path) -> Vec<&str> {
    path.components()
        .filter_map(|c| c.as_os_str().to_str())
        .collect()
}

/// The end of a path, component by component.
fn ends_with(path: &Path, tail: &[&str]) -> bool {
    let parts = parts(path);
    parts.len() > tail.len() && parts[parts.len() - tail.len()..] == *tail
}

/// The pod UID of a pod's mount of `pv`: `…/pods/<uid>/volumes/kubernetes.io~csi/<pv>/mount`.
fn pod_of(path: &Path, pv: &str) -> Option<String> {
    let parts = parts(path);
    let n = parts.len();
    (n >= 6
        && parts[n - 6] == "pods"
        && parts[n - 4..] == ["volumes", "kubernetes.io~csi", pv, "mount"])
    .then(|| parts[n - 5].to_string())
}

/// How many mounts are stacked at `path`: the longest chain of entries there, each the
/// parent of the next.
fn stacked(entries: &[MountEntry], path: &Path) -> usize {
    let here: Vec<&MountEntry> = entries.iter().filter(|e| e.mount_point == path).collect();
    let depth = |e: &MountEntry| {
        let mut d = 1;
        let mut cur = e;
        while let Some(p) = here.iter().find(|p| p.id == cur.parent) {
            d += 1;
            cur = p;
            if d > here.len() {
                break; // a loop in a malformed table
            }
        }
        d
    };
    here.iter().map(|e| depth(e)).max().unwrap_or(0)
}

/// The volume's mount counts in a node's table (see the module's comment).
pub fn count(entries: &[MountEntry], v: &Mounts) -> Vec<MountCount> {
    let sha = crate::sys::sha256_hex(v.handle.as_bytes());
    let staging = |p: &Path| {
        ends_with(p, &["kubernetes.io", "csi", v.driver, &sha, "globalmount"])
            || ends_with(p, &["kubernetes.io", "csi", "pv", v.pv, "globalmount"])
    };
    // Every place once, in the table's order.
    let mut places: BTreeMap<PathBuf, (String, usize)> = BTreeMap::new();
    let mut published = Vec::new();
    for e in entries {
        let p = &e.mount_point;
        let (role, expected) = if staging(p) {
            if !v.running.is_empty() {
                ("staging", 1)
            } else if v.leaving.is_empty() {
                ("orphaned", 0)
            } else {
                continue;
            }
        } else if let Some(uid) = pod_of(p, v.pv) {
            if v.running.contains(&uid) {
                published.push(uid);
                ("published", 1)
            } else if v.leaving.contains(&uid) {
                continue;
            } else {
                ("orphaned", 0)
            }
        } else {
            continue;
        };
        places.insert(p.clone(), (role.to_string(), expected));
    }
    let mut out: Vec<MountCount> = places
        .into_iter()
        .map(|(path, (role, expected))| MountCount {
            found: stacked(entries, &path),
            path: path.display().to_string(),
            role,
            expected,
        })
        .collect();
    // A running pod whose mount is not in the table at all.
    for uid in v.running.iter().filter(|u| !published.contains(u)) {
        out.push(MountCount {
            role: "published".into(),
            path: format!("…/pods/{uid}/volumes/kubernetes.io~csi/{}/mount", v.pv),
            found: 0,
            expected: 1,
        });
    }
    out
}

/// How long an orphaned mount may take to go: pvcheck deletes finished agent pods with grace
/// period 0, which removes them from the API at once, and their node's kubelet unmounts
/// their volumes a few seconds later.
const ORPHAN_GRACE: Duration = Duration::from_secs(30);

/// The volume's mounts on the node of its last pod, from the class's command; while a mount
/// of a pod that is gone is there, read again (every second, up to [`ORPHAN_GRACE`]). The
/// command, the node and the PV's driver and handle are looked up once; each reading lists
/// the pods, then runs the command.
pub fn of(vol: &KubeVolume) -> Result<Vec<MountCount>, PlatformError> {
    let Some(cmd) = vol.class.disruption.node_mounts.as_ref() else {
        return Err(PlatformError::Unsupported(format!(
            "staged and published exactly once was not checked: on Kubernetes that needs the node's mount table, which pvcheck's restricted pods cannot read; the class gives no `{FIELD}` command to print it"
        )));
    };
    if vol.ctx.volume_mode == VolumeMode::Block {
        return Err(PlatformError::Unsupported(
            "staged and published exactly once was not checked: a Block volume's node paths (volumeDevices) are not counted".into(),
        ));
    }
    let (Some(pv), Some(node)) = (vol.pv(), vol.node()) else {
        return Err(PlatformError::Other(format!(
            "volume {}: no pod ran yet, so its PV and node are not known",
            crate::platform::Volume::id(vol)
        )));
    };
    let ctx = vol.ctx.clone();
    let Some((driver, handle)) = ctx
        .shared
        .conn
        .block_on(super::csi::source_of_pv(&ctx.client, pv))?
    else {
        return Err(PlatformError::Unsupported(format!(
            "staged and published exactly once was not checked: PV {pv} is not a CSI volume"
        )));
    };
    let since = Instant::now();
    loop {
        let (running, leaving) = pods_on(vol, node)?;
        let (_, stdout) =
            super::kubelet::node_command(vol, FIELD, &cmd.value, node).map_err(|(_, e)| e)?;
        let entries = crate::sys::parse_mountinfo(&String::from_utf8_lossy(&stdout));
        if entries.is_empty() {
            // A command that printed nothing readable must not pass as "nothing mounted".
            return Err(PlatformError::Command {
                command: format!("{FIELD} {:?} (node {node})", cmd.value),
                status: "exit status 0".into(),
                stderr: format!(
                    "printed no mountinfo line ({} bytes): expected the node's /proc/PID/mountinfo",
                    stdout.len()
                ),
            });
        }
        let counts = count(
            &entries,
            &Mounts {
                driver: &driver,
                handle: &handle,
                pv,
                running: &running,
                leaving: &leaving,
            },
        );
        let orphans = counts
            .iter()
            .any(|c| c.role == "orphaned" && c.found > c.expected);
        if !orphans || since.elapsed() >= ORPHAN_GRACE {
            return Ok(counts);
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// The UIDs of the run's pods on `node` that use the volume: those running, and the others
/// still in the API (see [`Mounts`]).
fn pods_on(vol: &KubeVolume, node: &str) -> Result<(Vec<String>, Vec<String>), PlatformError> {
    let ctx = &vol.ctx;
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ctx.shared.namespace);
    let pods = ctx
        .shared
        .conn
        .block_on(api.list(&Default::default()))
        .map_err(|e| {
            super::agent_pod::api_error(
                &format!("listing the pods of namespace {}", ctx.shared.namespace),
                e,
            )
        })?;
    let uses = |p: &Pod| {
        p.spec.as_ref().is_some_and(|s| {
            s.node_name.as_deref() == Some(node)
                && s.volumes.iter().flatten().any(|v| {
                    v.persistent_volume_claim
                        .as_ref()
                        .is_some_and(|c| c.claim_name == ctx.pvc)
                })
        })
    };
    let runs = |p: &Pod| {
        p.metadata.deletion_timestamp.is_none()
            && p.status
                .as_ref()
                .and_then(|s| s.phase.as_deref())
                .is_some_and(|ph| ph == "Running" || ph == "Pending")
    };
    let (mut running, mut leaving) = (Vec::new(), Vec::new());
    for p in pods.items.iter().filter(|p| uses(p)) {
        if let Some(uid) = p.metadata.uid.clone() {
            if runs(p) {
                running.push(uid);
            } else {
                leaving.push(uid);
            }
        }
    }
    Ok((running, leaving))
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "6f1c0e2a-1111-2222-3333-444455556666";
    const OLD: &str = "0b0b0b0b-aaaa-bbbb-cccc-ddddeeeeffff";

    fn staging() -> String {
        let sha = crate::sys::sha256_hex(b"vol-1");
        format!(
            "/var/lib/kubelet/plugins/kubernetes.io/csi/hostpath.csi.pvcheck.io/{sha}/globalmount"
        )
    }

    fn publish(uid: &str) -> String {
        format!("/var/lib/kubelet/pods/{uid}/volumes/kubernetes.io~csi/pvc-1/mount")
    }

    fn line(id: u64, parent: u64, at: &str) -> String {
        format!("{id} {parent} 8:1 /data {at} rw,relatime shared:1 - ext4 /dev/sda1 rw\n")
    }

    fn counts(table: &str, running: &[&str]) -> Vec<(String, usize, usize)> {
        counts_leaving(table, running, &[])
    }

    fn counts_leaving(
        table: &str,
        running: &[&str],
        leaving: &[&str],
    ) -> Vec<(String, usize, usize)> {
        let owned = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (running, leaving) = (owned(running), owned(leaving));
        let v = Mounts {
            driver: "hostpath.csi.pvcheck.io",
            handle: "vol-1",
            pv: "pvc-1",
            running: &running,
            leaving: &leaving,
        };
        count(&crate::sys::parse_mountinfo(table), &v)
            .into_iter()
            .map(|c| (c.role, c.found, c.expected))
            .collect()
    }

    #[test]
    fn a_healthy_volume_is_staged_once_and_published_once_and_other_volumes_are_ignored() {
        let t = [
            line(20, 1, "/var/lib/kubelet"),
            line(30, 20, &staging()),
            line(31, 20, &publish(UID)),
            line(
                32,
                20,
                "/var/lib/kubelet/pods/x/volumes/kubernetes.io~csi/pvc-2/mount",
            ),
        ]
        .concat();
        let mut c = counts(&t, &[UID]);
        c.sort();
        assert_eq!(
            c,
            vec![("published".into(), 1, 1), ("staging".into(), 1, 1)]
        );
    }

    #[test]
    fn stacked_mounts_after_a_kubelet_restart_are_counted_as_a_stack() {
        // spiffe-csi #331: each repeated NodePublishVolume mounted again on top.
        let t = [
            line(30, 20, &staging()),
            line(40, 30, &staging()),
            line(31, 20, &publish(UID)),
            line(41, 31, &publish(UID)),
            line(42, 41, &publish(UID)),
        ]
        .concat();
        let mut c = counts(&t, &[UID]);
        c.sort();
        assert_eq!(
            c,
            vec![("published".into(), 3, 1), ("staging".into(), 2, 1)]
        );
    }

    #[test]
    fn a_mount_propagated_to_a_second_place_is_not_a_stack() {
        // The same path twice, under two different parents (a bind-mounted kubelet directory
        // whose mounts propagate): one mount each.
        let t = [line(31, 20, &publish(UID)), line(51, 50, &publish(UID))].concat();
        assert_eq!(counts(&t, &[UID]), vec![("published".into(), 1, 1)]);
    }

    #[test]
    fn a_gone_pod_s_mount_is_orphaned_and_a_pod_s_missing_mount_is_found_zero_times() {
        let t = [line(30, 20, &staging()), line(31, 20, &publish(OLD))].concat();
        let mut c = counts(&t, &[UID]);
        c.sort();
        assert_eq!(
            c,
            vec![
                ("orphaned".into(), 1, 0),
                ("published".into(), 0, 1),
                ("staging".into(), 1, 1)
            ]
        );
        // No pod of the run on the node any more: its staging is orphaned too.
        let mut c = counts(&t, &[]);
        c.sort();
        assert_eq!(
            c,
            vec![("orphaned".into(), 1, 0), ("orphaned".into(), 1, 0)]
        );
    }

    #[test]
    fn a_pod_being_deleted_or_finished_is_not_counted_either_way() {
        // The live checks' agent pods come and go beside the holder: a finished agent's mount
        // may still be there while the kubelet tears it down (kube_live, 2026-12-07).
        let t = [
            line(30, 20, &staging()),
            line(31, 20, &publish(UID)),
            line(32, 20, &publish(OLD)),
        ]
        .concat();
        let mut c = counts_leaving(&t, &[UID], &[OLD]);
        c.sort();
        assert_eq!(
            c,
            vec![("published".into(), 1, 1), ("staging".into(), 1, 1)]
        );
        // Only a leaving pod on the node: its staging may go or stay.
        let t = [line(30, 20, &staging()), line(32, 20, &publish(OLD))].concat();
        assert_eq!(counts_leaving(&t, &[], &[OLD]), vec![]);
    }

    #[test]
    fn the_staging_path_before_kubernetes_1_24_is_recognised() {
        let t = line(
            30,
            20,
            "/data/kubelet/plugins/kubernetes.io/csi/pv/pvc-1/globalmount",
        );
        assert_eq!(
            counts(&t, &[UID]),
            vec![("staging".into(), 1, 1), ("published".into(), 0, 1)]
        );
    }
}
