//! The platform boundary: where volumes come from and where the agent runs.
//!
//! Checks (`crate::checks`) only ever talk to these traits, so the same checks run on the local
//! platform (directories, loop-mounted images, flexVolume drivers) and on a Kubernetes platform
//! (PVCs and pods).
//!
//! - [`Platform`]: provisions a [`Volume`] for a class, says how many nodes it has (checks that
//!   need two nodes are ignored with that reason where there is one), and finds what runs left
//!   behind ([`Platform::leftovers`]) for the `cleanup` check and `pvcheck cleanup`.
//! - [`Volume`]: one provisioned volume. [`Volume::start_pod`] attaches and mounts it and gives a
//!   place where the agent runs ([`Pod`]); [`Volume::stop_pod`] ends the agent, unmounts and
//!   detaches. Recreating a pod is `stop_pod` + `start_pod`: on the local platform that is a real
//!   unmount and mount, on Kubernetes a pod deletion (waiting for the detach) and a new pod.
//!   [`Volume::upgrade`] runs one upgrade step between phases, [`Volume::expand`] grows the volume,
//!   [`Volume::snapshot`] takes a point-in-time copy and restores it as a new volume,
//!   [`Volume::destroy`] removes everything, [`Volume::keep`] leaves it for a human.
//! - [`Pod`]: runs the agent to completion ([`Pod::run_agent`]) or in the background
//!   ([`Pod::spawn_agent`], for the durability check's SIGKILL), and reports the capacity seen
//!   from inside.
//!
//! Files the agent reads (ledgers, acknowledgement lists) live on the harness side, off the
//! volume; an [`AgentCall`] names them as inputs and the platform makes them visible to the agent.
//! Everything a platform creates is recorded in the run registry (`crate::registry`) with the
//! run id before it is created, so it can be removed on failure, timeout, Ctrl-C, or by a later
//! `pvcheck cleanup` after a crash.

mod agent;
mod error;
#[cfg(feature = "kubernetes")]
pub mod kube;
pub mod local;
pub mod select;
pub mod timeline;
pub mod unanswered;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use agent::{AgentCall, AgentOutput};

/// A pod just started and the result of the call it ran first ([`Volume::start_pod_running`]).
pub type PodRunning = (Box<dyn Pod>, Result<AgentOutput, PlatformError>);
pub use error::PlatformError;
pub use select::{PlatformKind, select};

use crate::config::ClassSpec;

/// What a check asks for.
#[derive(Debug, Clone)]
pub struct VolumeRequest {
    pub run_id: String,
    /// Unique within the run, `[a-z0-9-]` (e.g. `ext4-loop-recreate`); part of the volume id.
    pub name: String,
    /// Bytes the check needs to be able to write; the volume's usable capacity must be at least this.
    pub size: u64,
}

/// Capacity as seen from inside a pod (statfs of the mounted volume).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Capacity {
    /// Size of the filesystem.
    pub total_bytes: u64,
    /// What an unprivileged writer can still use.
    pub available_bytes: u64,
}

/// One step of an upgrade (`upgrade` for the command or the new driver, `rollback` back to the old one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeStep {
    /// Short name used in trial output (`upgrade`, `rollback`).
    pub name: String,
}

/// When a driver was replaced under a volume ([`Volume::upgrade_live`], [`Volume::kill_driver`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DriverWindow {
    /// What was done (`upgrade`, `rollback`, `SIGKILL`).
    pub what: String,
    /// When the replacement began (Unix milliseconds).
    pub began_ms: u64,
    /// When the old driver was gone (Unix ms), where the platform knows it.
    pub old_stopped_ms: Option<u64>,
    /// When the new driver answered (Unix ms).
    pub new_answered_ms: u64,
    /// The node whose driver was replaced, where the platform has nodes.
    pub node: Option<String>,
    /// What the platform ran (command, exit status, the driver's command line).
    pub report: serde_json::Value,
}

/// What [`Volume::disrupt_node_agent`] does to the node agent under the volume's pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeAgentDisruption {
    /// Stopped, a few seconds, started again; the pod runs on.
    Restart,
    /// Stopped; the volume's pods are deleted through the API meanwhile; started again, it must
    /// remove them and unpublish and unstage the volume (kubernetes#121937).
    PodsDeletedWhileDown,
}

/// One place a volume is (or must no longer be) mounted, with the mounts found there.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MountCount {
    /// `staging`, `published`, `orphaned`.
    pub role: String,
    pub path: String,
    pub found: usize,
    pub expected: usize,
}

/// Something a run created and did not remove, found by [`Platform::leftovers`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct Leftover {
    pub run_id: String,
    /// The class whose volume it belonged to, when known.
    pub class: Option<String>,
    /// `dir`, `image`, `loop`, `mount`, `process`, … (platform specific).
    pub kind: String,
    /// A description a human can act on (path, device, pid).
    pub what: String,
}

/// Which runs [`Platform::leftovers`] looks at.
#[derive(Debug, Clone)]
pub enum RunFilter {
    /// One run (the current one, for the `cleanup` check), optionally one class of it.
    Run {
        run_id: String,
        class: Option<String>,
    },
    /// Every run whose pvcheck process is gone (crashed or killed), for `pvcheck cleanup`.
    Dead,
}

/// Where volumes come from.
pub trait Platform: Send + Sync {
    /// `local`, `kubernetes`.
    fn name(&self) -> &'static str;
    /// Nodes volumes can be attached on. Checks that need two are ignored when this is 1.
    fn node_count(&self) -> usize;
    /// `Err(reason)` when this platform cannot use the class here (no root for loop devices,
    /// missing mkfs, no `local:` section): its trials are ignored with that reason.
    fn usable(&self, class: &ClassSpec) -> Result<(), String>;
    /// Whether the class's volumes reach the agent as a raw block device here (a CSI class
    /// with `access_type: block` on the local platform, `volume_mode: Block` on Kubernetes).
    fn raw_block(&self, class: &ClassSpec) -> bool {
        let _ = class;
        false
    }
    /// The storage backend a class's volumes live on when the class names none
    /// (`ClassSpec::backend`): speed trials of one backend run one at a time. By default every
    /// class shares one: this machine's disks and CPUs.
    fn default_backend(&self, class: &ClassSpec) -> String {
        let _ = class;
        "this machine".into()
    }
    /// `Err(reason)` when two pods cannot use a volume of the class at the same time here (the
    /// `rwx` check is then ignored with that reason).
    fn shares_volumes(&self, class: &ClassSpec) -> Result<(), String> {
        let _ = class;
        Err("this platform runs one pod per volume at a time".into())
    }
    /// Creates a volume of the class. It is not attached until [`Volume::start_pod`].
    fn provision(
        &self,
        class: &ClassSpec,
        req: &VolumeRequest,
    ) -> Result<Box<dyn Volume>, PlatformError>;
    /// What runs matching `filter` left behind (nothing is removed).
    fn leftovers(&self, filter: &RunFilter) -> Result<Vec<Leftover>, PlatformError>;
    /// Removes what runs matching `filter` left behind, and only that; returns what it removed.
    fn remove_leftovers(&self, filter: &RunFilter) -> Result<Vec<Leftover>, PlatformError>;
    /// Facts about the platform for the run's fingerprint (kernel, node, versions).
    fn fingerprint(&self) -> serde_json::Value;
    /// What the platform measured about itself during the run (the Kubernetes platform's API
    /// requests per check), for the result file and the end of the run's output.
    fn report(&self) -> Option<serde_json::Value> {
        None
    }
    /// `--phase after-upgrade`: the volume of `class` the resumed run kept for the upgrade, with
    /// its ledger; `None` when that run kept none of this class. Each is handed out once.
    fn resume(&self, class: &ClassSpec) -> Result<Option<Resumed>, PlatformError> {
        Err(PlatformError::Unsupported(format!(
            "class {}: this platform keeps no volume between runs (--phase needs --platform kubernetes)",
            class.name()
        )))
    }
    /// Called once when the trials are over, before what is left is removed. `interrupted`: a
    /// signal ended the run, and what the run meant to keep for a later one
    /// ([`Volume::keep_for_upgrade`]) is not worth keeping; otherwise it is marked as waiting.
    fn end_of_run(&self, interrupted: bool) -> Result<(), PlatformError> {
        let _ = interrupted;
        Ok(())
    }
    /// Runs one driver-protocol check of the class (`flexvolume::<call>` on the local platform)
    /// on a scratch volume of its own, named after `req`.
    fn protocol_check(
        &self,
        class: &ClassSpec,
        req: &VolumeRequest,
        check: &str,
    ) -> Result<ProtocolOutcome, PlatformError> {
        let _ = (req, check);
        Err(PlatformError::Unsupported(format!(
            "class {} has no driver protocol to check on this platform",
            class.name()
        )))
    }
}

/// The scopes of a platform report's API requests ([`Platform::report`], the Kubernetes
/// platform's), sorted by their totals (largest first), as lines for the end of a run.
pub fn format_api_requests(report: &serde_json::Value) -> Vec<String> {
    let mut rows: Vec<(String, u64, String)> = Vec::new();
    if let Some(m) = report
        .pointer("/api_requests/by_check")
        .and_then(|v| v.as_object())
    {
        for (k, v) in m {
            let total = v.get("total").and_then(|t| t.as_u64()).unwrap_or(0);
            let verbs: std::collections::BTreeMap<&String, u64> = v
                .as_object()
                .map(|o| {
                    o.iter()
                        .filter(|(k, _)| *k != "total")
                        .map(|(k, v)| (k, v.as_u64().unwrap_or(0)))
                        .collect()
                })
                .unwrap_or_default();
            let detail = verbs
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ");
            rows.push((k.clone(), total, detail));
        }
    }
    rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    rows.into_iter()
        .map(|(k, t, d)| format!("{t:>6}  {k}  ({d})"))
        .collect()
}

/// How a [`Platform::protocol_check`] ended when the driver did nothing wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtocolOutcome {
    /// What was checked, in one line.
    Passed(String),
    /// The call is never made for this driver (e.g. attach when init says attach: false).
    NotApplicable(String),
    /// Passed, but the driver did something a strict reading of the protocol does not allow
    /// (kubelet tolerates it): the trial passes with these warnings.
    Warned {
        summary: String,
        warnings: Vec<String>,
    },
}

/// One provisioned volume.
pub trait Volume: Send {
    /// Unique id (also given to the agent as `--volume-id`).
    fn id(&self) -> &str;
    /// Nominal capacity in bytes (the image size, the PVC's capacity; for a plain directory the
    /// size of the filesystem holding it).
    fn size(&self) -> u64;
    /// The volume's part of the environment fingerprint: filesystem, mount options, size, driver.
    fn fingerprint(&self) -> serde_json::Value;
    /// Attaches and mounts the volume and starts a place where the agent runs.
    fn start_pod(&mut self) -> Result<Box<dyn Pod>, PlatformError>;
    /// [`Volume::start_pod`], then the agent call that `call` makes for the pod's target, run
    /// in it. Where a pod's start is costly the platform folds the two into one start
    /// (Kubernetes: the holder pod runs the call, then holds the volume; one pod start where
    /// there were two). `Err` when the pod did not start; the call's own result comes with
    /// the started pod, which the caller stops as any other.
    fn start_pod_running(
        &mut self,
        call: &dyn Fn(AgentTarget<'_>) -> AgentCall,
    ) -> Result<PodRunning, PlatformError> {
        let mut pod = self.start_pod()?;
        let c = call(pod.target());
        let out = pod.run_agent(&c);
        Ok((pod, out))
    }
    /// Ends every agent process of the pod, unmounts and detaches.
    fn stop_pod(&mut self, pod: Box<dyn Pod>) -> Result<(), PlatformError>;
    /// The upgrade steps this volume's class defines, in order (empty: no upgrade).
    fn upgrade_steps(&self) -> Vec<UpgradeStep>;
    /// Runs one upgrade step with the pod's agent stopped; returns the pod the check goes on
    /// with (the local platform remounts where the step needs the volume detached; Kubernetes
    /// keeps the holder, as a workload would be kept).
    fn upgrade(
        &mut self,
        pod: Box<dyn Pod>,
        step: &UpgradeStep,
    ) -> Result<Box<dyn Pod>, PlatformError>;
    /// What identifies the driver serving this volume now: a CSI plugin's `vendor_version`, a
    /// flexVolume driver's `--version` line or checksum. `None` where the platform cannot tell;
    /// `integrity::upgrade` names it in messages and compares it before and after each step.
    fn driver_version(&self) -> Option<String> {
        None
    }
    /// The driver calls made for this volume since the last call of this method, oldest first,
    /// each as `<call> <outcome>` (`NodeStageVolume OK`), where the platform sees them (empty
    /// where it does not): the evidence that an upgraded driver took over a volume.
    fn take_driver_calls(&mut self) -> Vec<String> {
        Vec::new()
    }
    /// What the last [`Volume::upgrade`] ran, for the step's record: a command with its exit
    /// status, duration and last output lines, or the driver swap; `None` where the platform
    /// records nothing.
    fn take_upgrade_report(&mut self) -> Option<serde_json::Value> {
        None
    }
    /// Runs one upgrade step *while the pod's agents keep running* (`integrity::live-upgrade`):
    /// the old driver stops and the new one starts under the published volume, or, when no pod
    /// runs (a drained upgrade), the driver is simply replaced. Returns when the new driver
    /// answers; `Unsupported` with the reason where the platform cannot do it.
    fn upgrade_live(&mut self, step: &UpgradeStep) -> Result<DriverWindow, PlatformError> {
        Err(PlatformError::Unsupported(format!(
            "volume {}: this platform cannot upgrade its driver while a pod writes (step {})",
            self.id(),
            step.name
        )))
    }
    /// [`Volume::upgrade_live`] while agents write on several nodes (this volume's pod on one,
    /// other volumes' pods on the others): the step runs once, and the platform follows the
    /// driver's replacement node by node, one window per node of `nodes` (in that order), each
    /// from when that node's old driver began to stop to when its new one answered. With one
    /// node (or none given) it is [`Volume::upgrade_live`]'s one window.
    fn upgrade_live_nodes(
        &mut self,
        step: &UpgradeStep,
        nodes: &[String],
    ) -> Result<Vec<DriverWindow>, PlatformError> {
        if nodes.len() <= 1 {
            return self.upgrade_live(step).map(|w| vec![w]);
        }
        Err(PlatformError::Unsupported(format!(
            "volume {}: this platform cannot follow an upgrade across {} nodes",
            self.id(),
            nodes.len()
        )))
    }
    /// Kills the driver serving this volume at once (SIGKILL, as a crash or a pod deleted with
    /// grace period 0) and starts it again the same way (`disruption::node-plugin-kill`);
    /// returns when it answers again.
    fn kill_driver(&mut self) -> Result<DriverWindow, PlatformError> {
        Err(PlatformError::Unsupported(format!(
            "volume {}: this platform cannot kill and restart its driver",
            self.id()
        )))
    }
    /// `upgrade.drain` as operators do it on a platform with nodes: `nodes` made unschedulable
    /// until [`Volume::uncordon`]. Returns the nodes this call cordoned (a node someone else
    /// had cordoned is left alone, and said in a warning). Without nodes: nothing to do.
    fn cordon(&mut self, nodes: &[String]) -> Result<Vec<String>, PlatformError> {
        let _ = nodes;
        Ok(Vec::new())
    }
    /// Undoes [`Volume::cordon`] for the nodes it returned.
    fn uncordon(&mut self, nodes: &[String]) -> Result<(), PlatformError> {
        let _ = nodes;
        Ok(())
    }
    /// [`Volume::stop_pod`] the way a drain stops a workload: evicted where the platform has an
    /// eviction (Kubernetes: the Eviction API, disruption budgets respected), then, as
    /// `stop_pod`, the volume detached from the node. Returns what was evicted.
    fn evict_pod(&mut self, pod: Box<dyn Pod>) -> Result<Vec<String>, PlatformError> {
        self.stop_pod(pod).map(|_| Vec::new())
    }
    /// [`Volume::kill_driver`] on several nodes at once, while agents write there (this
    /// volume's pod on one, other volumes' pods on the others): one window per node of `nodes`
    /// (in that order). With one node (or none given) it is [`Volume::kill_driver`]'s window.
    fn kill_driver_nodes(&mut self, nodes: &[String]) -> Result<Vec<DriverWindow>, PlatformError> {
        if nodes.len() <= 1 {
            return self.kill_driver().map(|w| vec![w]);
        }
        Err(PlatformError::Unsupported(format!(
            "volume {}: this platform cannot kill its driver on {} nodes",
            self.id(),
            nodes.len()
        )))
    }
    /// Stops the node agent (the kubelet) of the node the volume's pod runs on, and starts it
    /// again, by the class's commands (`disruption.kubelet`), while the pod's agents keep
    /// running (`disruption::kubelet-restart`); with [`NodeAgentDisruption::PodsDeletedWhileDown`]
    /// every pod of the volume is deleted through the API while it is down, and this returns
    /// once the node agent, back, has removed them and torn the volume down. The window's
    /// report carries what was run and what the API showed; its `problems` are findings (the
    /// volume's attachment changed, the driver left the node's registration).
    fn disrupt_node_agent(
        &mut self,
        how: NodeAgentDisruption,
    ) -> Result<DriverWindow, PlatformError> {
        let _ = how;
        Err(PlatformError::Unsupported(format!(
            "volume {}: this platform has no node agent (kubelet) to stop and start",
            self.id()
        )))
    }
    /// Where the volume is mounted for its pod now and how many times each place is mounted
    /// (a staged and a published volume: once each), plus mounts of the volume nobody uses any
    /// more; the disruption checks require every count to be what is expected.
    fn mount_counts(&self) -> Result<Vec<MountCount>, PlatformError> {
        Err(PlatformError::Unsupported(format!(
            "volume {}: this platform cannot count its mounts",
            self.id()
        )))
    }
    /// Grows the volume (and its filesystem) to `new_size` bytes, online where a pod runs.
    fn expand(&mut self, new_size: u64) -> Result<(), PlatformError>;
    /// Takes a point-in-time copy now and restores it as a new volume named `name`.
    fn snapshot(&mut self, name: &str) -> Result<Box<dyn Volume>, PlatformError>;
    /// Nodes other than the last pod's that this volume may move to (schedulable, and allowed by
    /// the volume's topology), for the other-node check; call it after a pod ran. `Nowhere`
    /// says why there is none (one node, a node-local volume): the check is ignored with it.
    fn other_nodes(&mut self) -> Result<Elsewhere, PlatformError> {
        Ok(Elsewhere::Nowhere(
            "this platform has one node: a volume cannot move to another".into(),
        ))
    }
    /// [`Volume::start_pod`] on any node but those in `avoid` (after [`Volume::stop_pod`], so
    /// the volume was detached from them first).
    fn start_pod_avoiding(&mut self, avoid: &[String]) -> Result<Box<dyn Pod>, PlatformError> {
        let _ = avoid;
        Err(PlatformError::Unsupported(format!(
            "volume {} cannot be moved to another node",
            self.id()
        )))
    }
    /// A second pod using the volume at the same time as the running one (after
    /// [`Volume::start_pod`]): on another node where the volume's access mode and topology allow
    /// it, else on the same node. [`Volume::stop_pod`] of either then stops both.
    fn share(&mut self) -> Result<Box<dyn Pod>, PlatformError> {
        Err(PlatformError::Unsupported(format!(
            "volume {}: this platform runs one pod per volume at a time",
            self.id()
        )))
    }
    /// Makes a new volume named `name` with this volume's content now (a CSI clone).
    fn clone_volume(&mut self, name: &str) -> Result<Box<dyn Volume>, PlatformError> {
        let _ = name;
        Err(PlatformError::Unsupported(format!(
            "volume {} cannot be cloned",
            self.id()
        )))
    }
    /// Leaves the volume (mounted if a pod ran) for a human; returns where it is.
    fn keep(self: Box<Self>) -> String;
    /// `--phase before-upgrade`: leaves the volume with `pod` running on it (attached and
    /// mounted through the upgrade, as a workload's volume is) and stores `ledger` beside it,
    /// for a later run's [`Platform::resume`]; returns where they are.
    fn keep_for_upgrade(
        self: Box<Self>,
        pod: Box<dyn Pod>,
        ledger: &KeptLedger,
    ) -> Result<String, PlatformError> {
        let _ = (pod, ledger);
        Err(PlatformError::Unsupported(format!(
            "volume {}: this platform keeps no volume between runs",
            self.id()
        )))
    }
    /// Removes everything the volume consists of.
    fn destroy(self: Box<Self>) -> Result<(), PlatformError>;
    /// What the volume noticed since the last call and did differently from what was asked
    /// (an expansion done offline, a loop device without direct I/O): the checks call this after
    /// every volume and pod operation and record each as a warning of the trial.
    fn take_warnings(&mut self) -> Vec<String> {
        Vec::new()
    }
}

/// The evidence a `--phase before-upgrade` run keeps with a volume.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct KeptLedger {
    /// The class the volume belongs to.
    pub class: String,
    /// The ledger the agent's `write` printed (JSON text).
    pub ledger: String,
    /// The seed the dataset was written with (also in the ledger).
    pub seed: u64,
    /// The agent volume id stamped in every block.
    pub agent_volume_id: u64,
}

/// A volume kept by a `--phase before-upgrade` run, taken over by the after-upgrade run.
pub struct Resumed {
    pub volume: Box<dyn Volume>,
    /// The pod the first run left on it, when it still runs (the upgrade may have evicted it).
    pub pod: Option<Box<dyn Pod>>,
    pub kept: KeptLedger,
    /// Where it was kept (namespace, claim, PV, node, holder), for the result file.
    pub facts: serde_json::Value,
}

/// What the agent works on: a mounted filesystem (`--dir`) or a raw block volume (`--device`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentTarget<'a> {
    Dir(&'a Path),
    Device(&'a Path),
}

impl AgentTarget<'_> {
    /// The agent's flag and its value.
    pub fn args(self) -> [String; 2] {
        match self {
            AgentTarget::Dir(p) => ["--dir".into(), p.display().to_string()],
            AgentTarget::Device(p) => ["--device".into(), p.display().to_string()],
        }
    }
    pub fn is_device(self) -> bool {
        matches!(self, AgentTarget::Device(_))
    }
}

/// Where a volume can move, from [`Volume::other_nodes`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Elsewhere {
    /// These nodes (never empty).
    Nodes(Vec<String>),
    /// None, and why.
    Nowhere(String),
}

/// A place where the agent runs with the volume mounted.
pub trait Pod: Send {
    /// The mounted volume, as the agent sees it (its `--dir`), or the raw block volume's device.
    fn data_dir(&self) -> &Path;
    /// What the agent is pointed at: [`Pod::data_dir`] as a directory unless the pod publishes
    /// a raw block volume.
    fn target(&self) -> AgentTarget<'_> {
        AgentTarget::Dir(self.data_dir())
    }
    /// The node the pod runs on, where the platform has nodes.
    fn node(&self) -> Option<&str> {
        None
    }
    /// Capacity of the mounted volume, seen from inside (a block volume: the device's size,
    /// all of it available).
    fn capacity(&self) -> Result<Capacity, PlatformError>;
    /// Runs the agent to completion (killed after `call.timeout`).
    fn run_agent(&mut self, call: &AgentCall) -> Result<AgentOutput, PlatformError>;
    /// Starts the agent in the background; its stdout goes to `stdout_to` (a harness-side file,
    /// off the volume) as it is written, so what it printed before a kill is kept.
    fn spawn_agent(
        &mut self,
        call: &AgentCall,
        stdout_to: &Path,
    ) -> Result<Box<dyn AgentProcess>, PlatformError>;
    /// Starts `calls` to run one after the other, each a process of its own, in one place
    /// where starting that place is costly (Kubernetes: one pod for a class's speed matrix,
    /// not one pod start per workload). `None` (the default): the platform runs each call
    /// with [`Pod::run_agent`] as cheaply, and the caller does that.
    fn start_batch(
        &mut self,
        _calls: &[AgentCall],
    ) -> Result<Option<Box<dyn AgentBatch>>, PlatformError> {
        Ok(None)
    }
}

/// Agent calls running one after the other ([`Pod::start_batch`]), each output taken in turn.
pub trait AgentBatch: Send {
    /// The output of the next call, in the order given (waiting for it, within that call's
    /// timeout); `None` after the last. After an error the batch is over: the calls after it
    /// never ran.
    fn next(&mut self) -> Option<Result<AgentOutput, PlatformError>>;
    /// Where the calls run (a pod's name), for the result file.
    fn id(&self) -> &str;
    /// Stops it: the call running is killed and the rest never run. Returns once nothing of
    /// the batch runs any more, so what is measured next is not measured beside it.
    fn stop(self: Box<Self>) -> Result<(), PlatformError>;
}

/// An agent started with [`Pod::spawn_agent`].
pub trait AgentProcess: Send {
    /// SIGKILL, as a node crash or an OOM kill would.
    fn kill(&mut self) -> Result<(), PlatformError>;
    /// Waits (at most `timeout`, then kills) and returns what it printed on stderr and how it ended;
    /// `stdout` in the result is empty (it went to the file).
    fn wait(&mut self, timeout: Duration) -> Result<AgentOutput, PlatformError>;
}

/// Where the agent binary is: `pvcheck` itself (`pvcheck agent …`) or a `pvcheck-agent` given
/// with `--agent PATH`.
#[derive(Debug, Clone)]
pub struct AgentBinary {
    pub path: PathBuf,
    /// Arguments before the subcommand (`["agent"]` for pvcheck itself, none for pvcheck-agent).
    pub prefix: Vec<String>,
}

impl AgentBinary {
    /// The running `pvcheck` binary, used as `pvcheck agent …`.
    pub fn current() -> std::io::Result<Self> {
        Ok(Self {
            path: std::env::current_exe()?,
            prefix: vec!["agent".into()],
        })
    }
    /// A separate `pvcheck-agent` binary.
    pub fn external(path: PathBuf) -> Self {
        Self {
            path,
            prefix: Vec::new(),
        }
    }
}
