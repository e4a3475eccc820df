//! The Kubernetes platform (`--platform kubernetes`, alias `kube`): a PVC per volume through the
//! class's StorageClass (or a PV from its template), agent pods that pass Pod Security
//! "restricted", results through the pod's log, everything in one namespace per run and
//! labelled with the run id.
//!
//! - [`context`]: what every file shares (the run's `Shared`, a volume's `VolumeCtx`), at the
//!   bottom of the imports: this file only wires the platform together.
//! - [`client`]: kubeconfig, the runtime, one client per scope; [`counting`]: API requests per check.
//! - [`labels`]: what makes an object pvcheck's; [`namespace`]: the run's namespace.
//! - [`pvc`]: claims, binding, deletion (waiting for the PV to go); [`attach`]: waiting for detach.
//! - [`podspec`]: the restricted pod manifest; [`agent_pod`]: one agent run in a pod;
//!   [`logs`]: the framed log; [`events`]: the reasons Kubernetes gives; [`wait`]: watches.
//! - [`volume`]: the `Volume`; [`pod`]: the `Pod` (a holder pod keeps the volume attached and
//!   mounted on its node; each agent run is a pod on that node).
//! - [`upgrade`]: the class's upgrade command and rollouts; [`snapshot`]: VolumeSnapshots;
//!   [`clone`]: PVCs with a PVC data source; [`topology`]: where a volume may move;
//!   [`cleanup`]: finding and removing what runs left, by label; [`preflight`]: the classes
//!   against the cluster before anything is created; [`phase`]: volumes kept by a
//!   `--phase before-upgrade` run and taken over by its `--phase after-upgrade` run.
//! - [`setup`]: the StorageClass, driver and PV facts of the fingerprint (no per-run names).
//!
//! The trait boundary stays synchronous: the platform owns one tokio runtime and every
//! operation is a `block_on` (see `client`).

pub mod agent_pod;
pub mod attach;
pub mod batch;
pub mod cleanup;
pub mod client;
pub mod clone;
pub mod context;
pub mod counting;
pub mod csi;
pub mod discover;
pub mod drain;
pub mod events;
#[cfg(test)]
pub mod fake_api;
pub mod in_use;
pub mod kubelet;
pub mod labels;
pub mod logs;
pub mod namespace;
pub mod node_mounts;
pub mod node_plugin;
pub mod phase;
pub mod pod;
pub mod podspec;
pub mod preflight;
pub mod pvc;
pub mod setup;
pub mod snapshot;
pub mod topology;
pub mod upgrade;
pub mod volume;
pub mod wait;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::select::{Purpose, SelectCtx, SelectError};
use super::{Leftover, Platform, PlatformError, RunFilter, Volume, VolumeRequest};
use crate::config::ClassSpec;
use crate::config::kube::VolumeMode;

use context::Shared;

/// What the command line says about the cluster (built by the command line, kept in
/// [`super::select::Choice`]).
pub use super::select::KubeOptions;

/// The Kubernetes platform of one run (or listing, or cleanup).
pub struct KubePlatform {
    /// `None` for a listing: nothing is contacted.
    shared: Option<Arc<Shared>>,
    nodes: usize,
    purpose: Purpose,
    older_than: Option<Duration>,
}

/// Builds the platform: for a listing without contacting anything; for a run, connects,
/// checks every class against the cluster (exit 2 before anything is created) and creates the
/// run's namespace.
pub fn select(opts: &KubeOptions, ctx: SelectCtx<'_>) -> Result<Arc<dyn Platform>, SelectError> {
    if ctx.purpose == Purpose::List {
        return Ok(Arc::new(KubePlatform {
            shared: None,
            nodes: 1,
            purpose: ctx.purpose,
            older_than: None,
        }));
    }
    let run_id = ctx.registry.run_id().to_string();
    let conn = client::connect(opts, Some(&run_id))?;
    let facts = if ctx.purpose == Purpose::Run {
        preflight::check(&conn, ctx.classes)?
    } else {
        preflight::Facts::default()
    };
    let own_run_id = run_id.clone();
    let (run_id, resumable) = match (&opts.resume, ctx.purpose) {
        (Some(resumes), Purpose::Run) => {
            let kept = conn.block_on(phase::take_over(
                &conn.client,
                resumes,
                &own_run_id,
                ctx.classes,
            ))?;
            (resumes.clone(), kept)
        }
        _ => (run_id, HashMap::new()),
    };
    let namespace = labels::namespace(&run_id);
    if ctx.purpose == Purpose::Run && opts.resume.is_none() {
        conn.block_on(namespace::create(&conn.client, &run_id, &namespace))
            .map_err(|e| SelectError::Infrastructure(e.to_string()))?;
    }
    let in_use = in_use::NodeWatches::new(conn.client.clone());
    let shared = Arc::new(Shared {
        conn,
        namespace,
        run_id,
        own_run_id,
        for_upgrade: Mutex::new(Vec::new()),
        resumable: Mutex::new(resumable),
        image: opts
            .agent_image
            .clone()
            .unwrap_or_else(crate::image::default_agent_image),
        pull_secrets: opts.image_pull_secrets.clone(),
        wffc: facts.wffc,
        provisioners: facts.provisioners,
        created: Mutex::new(Vec::new()),
        kept: Mutex::new(Vec::new()),
        latencies: Mutex::new(BTreeMap::new()),
        setups: Mutex::new(HashMap::new()),
        in_use,
    });
    Ok(Arc::new(KubePlatform {
        shared: Some(shared),
        nodes: facts.nodes.max(1),
        purpose: ctx.purpose,
        older_than: opts.older_than,
    }))
}

impl KubePlatform {
    fn shared(&self) -> Result<&Arc<Shared>, PlatformError> {
        self.shared
            .as_ref()
            .ok_or_else(|| PlatformError::Unsupported("a listing platform creates nothing".into()))
    }

    /// `filter` with this run's id read as the id its namespace and labels carry (they differ
    /// for a run that resumes another).
    fn own(&self, filter: &RunFilter) -> RunFilter {
        match (filter, &self.shared) {
            (RunFilter::Run { run_id, class }, Some(s)) if *run_id == s.own_run_id => {
                RunFilter::Run {
                    run_id: s.run_id.clone(),
                    class: class.clone(),
                }
            }
            _ => filter.clone(),
        }
    }

    /// API requests per scope, and their sum (printed at the end of a run).
    pub fn api_requests(&self) -> Option<(serde_json::Value, u64)> {
        self.shared.as_ref().map(|s| s.conn.counters.report())
    }
}

impl Platform for KubePlatform {
    fn name(&self) -> &'static str {
        "kubernetes"
    }

    fn node_count(&self) -> usize {
        self.nodes
    }

    fn raw_block(&self, class: &ClassSpec) -> bool {
        class
            .kube
            .as_ref()
            .is_some_and(|k| k.volume_mode == VolumeMode::Block)
    }

    fn shares_volumes(&self, class: &ClassSpec) -> Result<(), String> {
        let many = class.kube.as_ref().is_some_and(|k| {
            k.access_modes
                .contains(&crate::config::kube::AccessMode::ReadWriteMany)
        });
        if many {
            Ok(())
        } else {
            Err(
                "kube.access_modes has no ReadWriteMany: two pods may not use the claim at once"
                    .into(),
            )
        }
    }

    fn usable(&self, class: &ClassSpec) -> Result<(), String> {
        match &class.kube {
            None => Err("no `kube:` section: the class is for another platform".into()),
            Some(_) => Ok(()),
        }
    }

    /// The StorageClass's provisioner: its classes share the driver's storage. A class with
    /// a PV template (static PVs, no provisioner) shares the cluster's.
    fn default_backend(&self, class: &ClassSpec) -> String {
        let provisioner = class
            .kube
            .as_ref()
            .and_then(|k| k.storage_class_name())
            .and_then(|sc| self.shared.as_ref()?.provisioners.get(sc));
        match provisioner {
            Some(p) => format!("provisioner {p}"),
            None => "this cluster".into(),
        }
    }

    fn provision(
        &self,
        class: &ClassSpec,
        req: &VolumeRequest,
    ) -> Result<Box<dyn Volume>, PlatformError> {
        let shared = self.shared()?.clone();
        volume::provision(shared, class, req).map(|v| Box::new(v) as Box<dyn Volume>)
    }

    fn leftovers(&self, filter: &RunFilter) -> Result<Vec<Leftover>, PlatformError> {
        let shared = self.shared()?;
        let conn = &shared.conn;
        conn.block_on(cleanup::find(
            &conn.client,
            &self.own(filter),
            Some(shared),
            self.older_than,
        ))
    }

    fn remove_leftovers(&self, filter: &RunFilter) -> Result<Vec<Leftover>, PlatformError> {
        let shared = self.shared()?;
        let conn = &shared.conn;
        conn.block_on(cleanup::remove(
            &conn.client,
            &self.own(filter),
            Some(shared),
            self.older_than,
        ))
    }

    fn resume(&self, class: &ClassSpec) -> Result<Option<super::Resumed>, PlatformError> {
        phase::resume(self.shared()?, class)
    }

    fn end_of_run(&self, interrupted: bool) -> Result<(), PlatformError> {
        let Some(shared) = &self.shared else {
            return Ok(());
        };
        let kept: Vec<String> =
            std::mem::take(&mut *shared.for_upgrade.lock().unwrap_or_else(|e| e.into_inner()));
        if kept.is_empty() || interrupted {
            // Interrupted: nobody will resume half a before-upgrade run; all of it goes.
            return Ok(());
        }
        shared.conn.block_on(phase::mark_waiting(shared))?;
        shared
            .kept
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(kept);
        Ok(())
    }

    fn fingerprint(&self) -> serde_json::Value {
        let Some(s) = &self.shared else {
            return serde_json::json!({ "platform": "kubernetes" });
        };
        let nodes = s.conn.block_on(preflight::node_facts(&s.conn.client));
        serde_json::json!({
            "platform": "kubernetes",
            "server_version": s.conn.server_version,
            "api_server": s.conn.config.cluster_url.to_string(),
            "kubeconfig": s.conn.source,
            "namespace": s.namespace,
            "agent_image": s.image,
            "nodes": nodes,
            "purpose": format!("{:?}", self.purpose),
        })
    }

    fn report(&self) -> Option<serde_json::Value> {
        let (by_scope, total) = self.api_requests()?;
        let latencies = self
            .shared
            .as_ref()
            .map(|s| {
                s.latencies
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone()
            })
            .unwrap_or_default();
        Some(serde_json::json!({
            "api_requests": { "total": total, "by_check": by_scope },
            "latencies_s": latencies,
        }))
    }
}
