//! The shape of a storage class, as deserialized (strictly) from YAML.

use std::path::PathBuf;
use std::time::Duration;

use pvcheck_workloads::units::{Dur, Size};
use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

use super::flexvolume::FlexvolumeSpec;

/// One storage class. Fields are the public contract of the class file (issue 4): new fields may
/// be added, existing ones are never renamed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassSpec {
    /// Unique, `[a-z0-9-]`, used in trial names (`<class>::<check>`).
    pub name: Spanned<String>,
    /// How the local platform makes a volume of this class. A class without it (one written for
    /// another platform) is ignored on the local platform, with that reason.
    #[serde(default)]
    pub local: Option<LocalKind>,
    /// How the Kubernetes platform makes a volume of this class (`config::kube`).
    #[serde(default)]
    pub kube: Option<super::kube::KubeSpec>,
    /// Where the Kubernetes platform's agent pods may run (`config::kube`).
    #[serde(default)]
    pub placement: super::kube::PlacementSpec,
    #[serde(default)]
    pub capabilities: Capabilities,
    /// Run between the write and the verify of `integrity::upgrade`.
    #[serde(default)]
    pub upgrade: Option<UpgradeSpec>,
    /// What pvcheck may do to a driver it did not start (`disruption::*` checks).
    #[serde(default)]
    pub disruption: DisruptionSpec,
    #[serde(default)]
    pub timeouts: Timeouts,
    /// How large a speed change the regression gate calls a regression (`thresholds.rs`).
    #[serde(default)]
    pub thresholds: Option<super::thresholds::ThresholdsSpec>,
    /// The storage backend the class's volumes live on: speed trials of classes naming the
    /// same backend never run at the same time (one may disturb the other's figures); classes
    /// of different backends measure at once. Default: the platform's (Kubernetes: the
    /// StorageClass's provisioner; local: this machine).
    #[serde(default)]
    pub backend: Option<Spanned<String>>,
    /// The YAML file this class came from (set by the loader).
    #[serde(skip)]
    pub file: PathBuf,
}

impl ClassSpec {
    pub fn name(&self) -> &str {
        &self.name.value
    }
    /// Whether the class's later trials still call a driver that missed a deadline
    /// (`local.csi.retry_after_timeout`); by default they fail at once.
    pub fn retries_after_timeout(&self) -> bool {
        matches!(&self.local, Some(LocalKind::Csi(c)) if c.retry_after_timeout)
    }
    /// The storage backend of [`ClassSpec::backend`], when the class names one.
    pub fn backend(&self) -> Option<&str> {
        self.backend.as_ref().map(|b| b.value.as_str())
    }
    /// The line of the class's `name:` in its file.
    pub fn line(&self) -> u64 {
        self.name.referenced.line()
    }
    /// The class parameters as they go into a run's environment fingerprint.
    pub fn parameters(&self) -> serde_json::Value {
        let local = match &self.local {
            None => serde_json::Value::Null,
            Some(LocalKind::Dir(p)) => serde_json::json!({ "dir": p.value }),
            Some(LocalKind::Loop(l)) => serde_json::json!({ "loop": l }),
            Some(LocalKind::Flexvolume(f)) => serde_json::json!({ "flexvolume": {
                "driver": f.source().describe(), "fs_type": f.fs_type,
                "options": f.user_options,
                // Secret values never go into results: only their names.
                "secrets": f.secrets.keys().collect::<Vec<_>>(),
            }}),
            Some(LocalKind::Csi(c)) => serde_json::json!({ "csi": c.parameters_json() }),
        };
        let mut p = serde_json::json!({
            "name": self.name(),
            "file": self.file,
            "local": local,
            "kube": self.kube,
            "placement": self.placement,
            "capabilities": self.capabilities,
            "upgrade": self.upgrade.as_ref().map(|u| serde_json::json!({
                "command": u.command, "ready": u.ready,
                "driver": u.driver_source.as_ref().map(|d| d.describe()), "rollback": u.rollback,
                "drain": u.drain,
                "rollout": u.rollout,
                "csi": u.csi.as_ref().map(|c| &c.command.value),
            })),
            "timeouts": self.timeouts,
        });
        if let (Some(b), Some(o)) = (self.backend(), p.as_object_mut()) {
            o.insert("backend".into(), b.into());
        }
        p
    }
}

/// The kinds of local volumes (`local: { dir: … }`, `local: { loop: … }`, `local: { flexvolume: … }`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LocalKind {
    /// Each volume is a fresh subdirectory of this directory.
    Dir(Spanned<PathBuf>),
    /// Each volume is a fresh image file, formatted and loop-mounted.
    Loop(LoopSpec),
    /// A flexVolume driver (issue 5).
    Flexvolume(Box<FlexvolumeSpec>),
    /// A CSI driver over its unix socket (issue 11).
    Csi(Box<super::csi::CsiSpec>),
}

impl LocalKind {
    pub fn kind(&self) -> &'static str {
        match self {
            LocalKind::Dir(_) => "dir",
            LocalKind::Loop(_) => "loop",
            LocalKind::Flexvolume(_) => "flexvolume",
            LocalKind::Csi(_) => "csi",
        }
    }
}

/// `local: { loop: { fs: ext4, size: 1GiB, mkfs_options: [], mount_options: [] } }`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LoopSpec {
    pub fs: FsType,
    /// The image size, i.e. the volume's capacity before the filesystem takes its share.
    pub size: Size,
    #[serde(default)]
    pub mkfs_options: Vec<String>,
    #[serde(default)]
    pub mount_options: Vec<String>,
    /// Where images go (default: the run's state directory). Relative to the YAML file.
    #[serde(default)]
    pub image_dir: Option<PathBuf>,
}

/// Filesystems a loop class can be formatted with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FsType {
    Ext4,
    Xfs,
    Btrfs,
}

impl FsType {
    pub fn as_str(self) -> &'static str {
        match self {
            FsType::Ext4 => "ext4",
            FsType::Xfs => "xfs",
            FsType::Btrfs => "btrfs",
        }
    }
    /// The mkfs program for this filesystem.
    pub fn mkfs(self) -> &'static str {
        match self {
            FsType::Ext4 => "mkfs.ext4",
            FsType::Xfs => "mkfs.xfs",
            FsType::Btrfs => "mkfs.btrfs",
        }
    }
}

/// What a class can do beyond reading and writing.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Capabilities {
    #[serde(default)]
    pub expansion: bool,
    #[serde(default)]
    pub snapshot: bool,
    /// Raw block volumes (Kubernetes: volumeMode Block; CSI classes: `access_type: block`).
    #[serde(default)]
    pub block: bool,
    /// Kubernetes: ReadWriteMany (two pods write at once).
    #[serde(default)]
    pub rwx: bool,
    /// A new volume from an existing one (Kubernetes: a PVC with a PVC dataSource; CSI classes:
    /// CreateVolume from a volume).
    #[serde(default)]
    pub clone: bool,
}

/// `disruption:`: disruptions of a driver pvcheck did not start, each allowed by the class.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DisruptionSpec {
    /// Kubernetes: `disruption::node-plugin-kill` may delete the driver's node plugin pod on the
    /// volume's node (grace period 0) while the agent writes. Off by default: that pod is not
    /// pvcheck's, and its restart touches every volume of its node. (On the local platform the
    /// check kills only a driver pvcheck started: `local.csi.command`.)
    #[serde(default)]
    pub node_plugin_kill: bool,
    /// Kubernetes: how to stop and start the kubelet of a node, for
    /// `disruption::kubelet-restart` and `disruption::pod-deleted-while-kubelet-down`. pvcheck
    /// has no node access of its own; unset, both checks are ignored naming this field.
    #[serde(default, skip_serializing)]
    pub kubelet: Option<KubeletCommands>,
    /// Kubernetes: a shell command that prints the mount table of node `$PVCHECK_NODE` as its
    /// kubelet sees it (/proc/PID/mountinfo lines; e.g. `ssh "$PVCHECK_NODE" cat
    /// /proc/self/mountinfo`), run like the `kubelet` commands. With it the disruption checks
    /// require the volume staged once, published once per pod, and no mount of it left by a
    /// pod that is gone; unset, the trial says that was not checked.
    #[serde(default, skip_serializing)]
    pub node_mounts: Option<Spanned<String>>,
}

/// `disruption.kubelet`: two shell commands (`sh -c`, in the class file's directory, env
/// `PVCHECK_NODE`, `PVCHECK_CLASS`, `PVCHECK_RUN_ID`, `KUBECONFIG`), each within
/// `timeouts.upgrade`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubeletCommands {
    /// Stops the kubelet of node `$PVCHECK_NODE` (its containers keep running).
    pub stop: Spanned<String>,
    /// Starts it again, as the node started it.
    pub start: Spanned<String>,
}

/// `upgrade:`: what happens to the driver between the write and the verify.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpgradeSpec {
    /// A shell command (`sh -c`, in the class file's directory), run with the agent stopped and
    /// the volume still mounted, after the write and again after the rewrite; env
    /// `PVCHECK_CLASS`, `PVCHECK_RUN_ID`, `PVCHECK_VOLUME_DIR`, `PVCHECK_VOLUME_ID`,
    /// `PVCHECK_UPGRADE_STEP` (`upgrade`, `upgrade-after-rewrite`). Then the volume is remounted.
    #[serde(default)]
    pub command: Option<String>,
    /// Polled (every 200 ms) until it exits 0, within `timeouts.upgrade`.
    #[serde(default)]
    pub ready: Option<String>,
    /// flexVolume classes: the new driver executable, swapped in place of the class's driver
    /// while the volume is unmounted (relative to the YAML file).
    #[serde(default)]
    pub driver: Option<Spanned<PathBuf>>,
    /// CSI classes: the new node plugin, started on the same socket while volumes stay published.
    #[serde(default)]
    pub csi: Option<super::csi::CsiUpgradeSpec>,
    /// flexVolume and CSI classes: after the upgrade, go back to the first driver and verify again.
    #[serde(default)]
    pub rollback: bool,
    /// `integrity::live-upgrade`: the driver's documented upgrade stops its workloads first (a
    /// FUSE driver whose mounts die with the node plugin): the stream is stopped and the volume
    /// unpublished before each step, published again after it, and zero loss is required.
    /// Without it, the upgrade rolls while the agent writes and must cause no I/O error.
    #[serde(default)]
    pub drain: bool,
    /// Kubernetes: workloads whose rollout must be complete after the command (observed
    /// generation, updated and available replicas), within `timeouts.upgrade`.
    #[serde(default)]
    pub rollout: Vec<super::kube::Rollout>,
    /// `driver`, resolved by the loader.
    #[serde(skip)]
    pub driver_source: Option<super::flexvolume::DriverSource>,
}

/// Per-class time limits, so slow drivers get the time they need (kubernetes#88848).
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    /// Until a new volume is usable.
    #[serde(default = "default_provision")]
    pub provision: Dur,
    /// For `upgrade.command` plus `upgrade.ready`.
    #[serde(default = "default_upgrade")]
    pub upgrade: Dur,
    /// For one agent run (write, verify, bench, …).
    #[serde(default = "default_agent")]
    pub agent: Dur,
    /// Kubernetes: until a volume is attached to the pod's node (and detached after it).
    #[serde(default = "default_attach")]
    pub attach: Dur,
    /// Kubernetes: until an agent pod runs, once its volume is attached.
    #[serde(default = "default_pod_start")]
    pub pod_start: Dur,
}

fn default_provision() -> Dur {
    Dur(Duration::from_secs(120))
}
fn default_upgrade() -> Dur {
    Dur(Duration::from_secs(600))
}
fn default_agent() -> Dur {
    Dur(Duration::from_secs(600))
}
fn default_attach() -> Dur {
    Dur(Duration::from_secs(300))
}
fn default_pod_start() -> Dur {
    Dur(Duration::from_secs(300))
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            provision: default_provision(),
            upgrade: default_upgrade(),
            agent: default_agent(),
            attach: default_attach(),
            pod_start: default_pod_start(),
        }
    }
}
