//! What every file of the Kubernetes platform shares, at the bottom of its imports: the run's
//! [`Shared`] state and a volume's [`VolumeCtx`] (its client, claim, class, limits). `mod.rs`
//! only wires the platform together; the files below it import their context from here.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::client::Connection;
use super::labels::object_name;
use super::phase::KeptFacts;
use crate::config::ClassSpec;
use crate::config::kube::{PlacementSpec, VolumeMode};
use crate::platform::PlatformError;

/// What every volume of the run shares.
pub struct Shared {
    pub conn: Connection,
    pub namespace: String,
    /// The run the namespace and the labels belong to: this run's id, or with `--resume` the
    /// id of the run it finishes.
    pub run_id: String,
    /// This run's own id (the result file's), which `RunFilter::Run` names.
    pub own_run_id: String,
    pub image: String,
    pub pull_secrets: Vec<String>,
    /// StorageClass name → volumeBindingMode is WaitForFirstConsumer.
    pub wffc: HashMap<String, bool>,
    /// StorageClass name → its provisioner (a class's default storage backend).
    pub provisioners: HashMap<String, String>,
    /// (class, PVC) of every claim the run created, for the per-class leftovers.
    pub created: Mutex<Vec<(String, String)>>,
    /// PVCs kept with --keep-on-failure: the end of the run leaves them and their namespace.
    pub kept: Mutex<Vec<String>>,
    /// PVCs kept for an upgrade (`--phase before-upgrade`): kept with the namespace at the end
    /// of the run, or removed with everything else when a signal ended it.
    pub for_upgrade: Mutex<Vec<String>>,
    /// `--resume`: the kept volumes of the resumed run by class, each handed out once.
    pub resumable: Mutex<HashMap<String, KeptFacts>>,
    /// Latencies per volume (bound, first pod, pod start, detach), for the run's report.
    pub latencies: Mutex<BTreeMap<String, serde_json::Value>>,
    /// StorageClass name → its setup as [`super::setup::storage`] read it (once per run).
    pub setups: Mutex<HashMap<String, serde_json::Value>>,
    /// What each node's kubelet reports in use, one watch per node (timeline figures).
    pub in_use: super::in_use::NodeWatches,
}

/// Time limits of one class.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub provision: Duration,
    pub attach: Duration,
    pub pod_start: Duration,
    pub upgrade: Duration,
}

impl Limits {
    /// The class's `timeouts`.
    pub fn of(class: &ClassSpec) -> Limits {
        Limits {
            provision: class.timeouts.provision.0,
            attach: class.timeouts.attach.0,
            pod_start: class.timeouts.pod_start.0,
            upgrade: class.timeouts.upgrade.0,
        }
    }
}

/// What a volume's operations need.
pub struct VolumeCtx {
    pub shared: Arc<Shared>,
    /// Counted under the volume's name (its check).
    pub client: kube::Client,
    pub class: String,
    pub pvc: String,
    pub volume_mode: VolumeMode,
    pub placement: PlacementSpec,
    pub timeouts: Limits,
    seq: std::sync::atomic::AtomicU32,
}

impl VolumeCtx {
    /// The context of claim `pvc` of `class`: a client counted under `scope` (the check's
    /// volume name), the class's mode, placement and limits; the claim is recorded among the
    /// run's (the per-class leftovers). Pod and ConfigMap names count from `first_name`.
    pub fn for_class(
        shared: &Arc<Shared>,
        class: &ClassSpec,
        volume_mode: VolumeMode,
        scope: &str,
        pvc: String,
        first_name: u32,
    ) -> Result<Arc<VolumeCtx>, PlatformError> {
        let client = shared
            .conn
            .client_for(scope)
            .map_err(|e| PlatformError::Other(format!("API client: {e}")))?;
        shared
            .created
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((class.name().to_string(), pvc.clone()));
        Ok(Arc::new(VolumeCtx {
            shared: shared.clone(),
            client,
            class: class.name().to_string(),
            pvc,
            volume_mode,
            placement: class.placement.clone(),
            timeouts: Limits::of(class),
            seq: std::sync::atomic::AtomicU32::new(first_name),
        }))
    }

    /// A claim `pvc` of the same class as this one (a clone, a restored snapshot), counted
    /// under its own name.
    pub fn sibling(&self, pvc: String) -> Result<Arc<VolumeCtx>, PlatformError> {
        let shared = &self.shared;
        let client = shared
            .conn
            .client_for(&pvc)
            .map_err(|e| PlatformError::Other(format!("API client: {e}")))?;
        shared
            .created
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((self.class.clone(), pvc.clone()));
        Ok(Arc::new(VolumeCtx {
            shared: shared.clone(),
            client,
            class: self.class.clone(),
            pvc,
            volume_mode: self.volume_mode,
            placement: self.placement.clone(),
            timeouts: self.timeouts,
            seq: Default::default(),
        }))
    }

    /// `<pvc>-<what><n>`: a fresh pod or ConfigMap name.
    pub fn next_name(&self, what: &str) -> String {
        let n = self.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        object_name(&format!("{}-{what}{n}", self.pvc))
    }
}
