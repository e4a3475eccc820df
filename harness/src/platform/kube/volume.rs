//! The `Volume` of the Kubernetes platform: one PVC (and the PV of a template class, or the
//! VolumeSnapshot it was restored from), a holder pod while it is "mounted", agent pods.

use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::core::v1::{
    Node, PersistentVolume, PersistentVolumeClaim, TypedLocalObjectReference,
};
use kube::Api;
use kube::api::{Patch, PatchParams};

use super::context::{Shared, VolumeCtx};
use super::pod::KubePod;
use super::{agent_pod, attach, labels, podspec, pvc, topology};
use crate::config::ClassSpec;
use crate::platform::{
    AgentCall, AgentOutput, AgentTarget, DriverWindow, Elsewhere, MountCount, NodeAgentDisruption,
    PlatformError, Pod, PodRunning, UpgradeStep, Volume, VolumeRequest,
};

/// A holder pod started, and the output of the call it ran first when it was given one.
type HolderStarted = (Box<dyn Pod>, Option<Result<AgentOutput, PlatformError>>);

pub struct KubeVolume {
    pub ctx: Arc<VolumeCtx>,
    pub class: ClassSpec,
    /// `<namespace>/<pvc>`.
    id: String,
    /// Bytes requested.
    requested: u64,
    /// The bound PV, once known.
    pv: Option<String>,
    /// The node of the last holder pod.
    node: Option<String>,
    /// WaitForFirstConsumer and no pod yet: the first start also waits for provisioning.
    unbound: bool,
    /// A VolumeSnapshot this volume was restored from (removed with it).
    pub from_snapshot: Option<String>,
    /// The ConfigMap holding the ledger of a volume kept for an upgrade (removed with it by
    /// the run that resumed it).
    ledger_config_map: Option<String>,
    /// Latencies (seconds) the checks' metrics could use: provision, attach+start.
    pub timings: serde_json::Map<String, serde_json::Value>,
    /// What the volume did differently from what was asked, for `Volume::take_warnings`.
    warnings: Vec<String>,
    /// The inputs (ConfigMaps) of the holders that ran a call first: mounted while their
    /// holder runs, deleted once it is gone.
    holder_inputs: Vec<String>,
    done: bool,
}

/// The request: the class's `kube.size` or what the check needs, whichever is more.
fn request_bytes(class: &ClassSpec, needed: u64) -> u64 {
    let min = class
        .kube
        .as_ref()
        .and_then(|k| k.size)
        .map(|q| q.bytes)
        .unwrap_or(0);
    needed.max(min).div_ceil(1 << 20) * (1 << 20)
}

/// Creates the claim (and the PV of a template class), and waits for Bound unless the class
/// binds at the first consumer.
pub fn provision(
    shared: Arc<Shared>,
    class: &ClassSpec,
    req: &VolumeRequest,
) -> Result<KubeVolume, PlatformError> {
    let spec = class.kube.as_ref().ok_or_else(|| {
        PlatformError::Unsupported(format!("class {} has no `kube:` section", class.name()))
    })?;
    let name = labels::object_name(&req.name);
    let ctx = VolumeCtx::for_class(&shared, class, spec.volume_mode, &req.name, name.clone(), 0)?;
    let bytes = request_bytes(class, req.size);
    let l = labels::of(&shared.run_id, Some(class.name()), Some(&name), "volume");
    let start = Instant::now();
    let mut vol = KubeVolume {
        ctx: ctx.clone(),
        class: class.clone(),
        id: format!("{}/{name}", shared.namespace),
        requested: bytes,
        pv: None,
        node: None,
        unbound: false,
        from_snapshot: None,
        ledger_config_map: None,
        timings: Default::default(),
        warnings: Vec::new(),
        holder_inputs: Vec::new(),
        done: false,
    };
    let created = shared.conn.block_on(async {
        let volume_name = match &spec.pv_template_yaml {
            Some(yaml) => {
                let pv_name = labels::object_name(&format!("{}-{name}", shared.namespace));
                let pv =
                    pvc::pv_from_template(yaml, &pv_name, &shared.namespace, &name, l.clone())?;
                let sc = pv
                    .spec
                    .as_ref()
                    .and_then(|s| s.storage_class_name.clone())
                    .unwrap_or_default();
                let api: Api<k8s_openapi::api::core::v1::PersistentVolume> =
                    Api::all(ctx.client.clone());
                api.create(&Default::default(), &pv)
                    .await
                    .map_err(|e| agent_pod::api_error(&format!("creating PV {pv_name}"), e))?;
                Some((pv_name, sc))
            }
            None => None,
        };
        let claim = pvc::claim(
            &name,
            &shared.namespace,
            l.clone(),
            spec,
            bytes,
            None,
            volume_name,
        );
        pvc::create(&ctx.client, &claim).await
    });
    if let Err(e) = created {
        vol.done = true;
        let _ = shared.conn.block_on(pvc::delete(
            &ctx.client,
            &shared.namespace,
            &name,
            None,
            ctx.timeouts.provision,
        ));
        return Err(e);
    }
    vol.finish_provisioning(start)?;
    Ok(vol)
}

impl KubeVolume {
    /// A warning per window whose new plugin's registration with the kubelet could not be read
    /// (reading CSINodes refused): the window ends at Ready there, not at registration.
    fn registration_not_checked(&mut self, ws: &[DriverWindow]) {
        for w in ws {
            if let Some(why) = w.report["registration_not_checked"].as_str() {
                self.warnings.push(format!(
                    "{} on node {}: whether the new node plugin registered with the kubelet was not checked (reading CSINode: {why}); grant get, list and watch on csinodes (deploy/rbac.yaml does)",
                    w.what,
                    w.node.as_deref().unwrap_or("?")
                ));
            }
        }
    }

    /// Waits for Bound unless the StorageClass binds at the first consumer.
    pub fn finish_provisioning(&mut self, start: Instant) -> Result<(), PlatformError> {
        let sc = self
            .class
            .kube
            .as_ref()
            .and_then(|k| k.storage_class_name())
            .unwrap_or("");
        let wffc = self.ctx.shared.wffc.get(sc).copied().unwrap_or(false);
        if wffc
            && self
                .class
                .kube
                .as_ref()
                .is_some_and(|k| k.pv_template_yaml.is_none())
        {
            self.unbound = true;
            return Ok(());
        }
        let ctx = self.ctx.clone();
        let pv = ctx.shared.conn.block_on(pvc::until_bound(
            &ctx.client,
            &ctx.shared.namespace,
            &ctx.pvc,
            ctx.timeouts.provision,
        ))?;
        self.pv = Some(pv);
        crate::platform::timeline::since(
            crate::platform::timeline::Wait::ClaimBound,
            &ctx.pvc,
            start,
        );
        self.timings
            .insert("bound_seconds".into(), start.elapsed().as_secs_f64().into());
        Ok(())
    }

    /// A new claim `pvc` of this volume's class and size whose data comes from `source` (the
    /// PVC to clone, the VolumeSnapshot to restore): created, then Bound unless the class binds
    /// at the first consumer. `snapshot` is removed with it; `timings` are its first figures.
    pub fn derived(
        &self,
        pvc: String,
        source: TypedLocalObjectReference,
        snapshot: Option<String>,
        timings: serde_json::Map<String, serde_json::Value>,
    ) -> Result<KubeVolume, PlatformError> {
        let spec = self.class.kube.as_ref().ok_or_else(|| {
            PlatformError::Unsupported(format!(
                "class {} has no `kube:` section",
                self.class.name()
            ))
        })?;
        let ctx = self.ctx.sibling(pvc)?;
        let shared = &ctx.shared;
        let claim = pvc::claim(
            &ctx.pvc,
            &shared.namespace,
            labels::of(&shared.run_id, Some(&ctx.class), Some(&ctx.pvc), "volume"),
            spec,
            self.requested,
            Some(source),
            None,
        );
        // Made before the claim is created: if anything below fails, dropping it deletes the
        // claim (and the snapshot).
        let mut v = KubeVolume {
            id: format!("{}/{}", shared.namespace, ctx.pvc),
            ctx: ctx.clone(),
            class: self.class.clone(),
            requested: self.requested,
            pv: None,
            node: None,
            unbound: true,
            from_snapshot: snapshot,
            ledger_config_map: None,
            timings,
            warnings: Vec::new(),
            holder_inputs: Vec::new(),
            done: false,
        };
        let start = Instant::now();
        shared.conn.block_on(pvc::create(&ctx.client, &claim))?;
        v.finish_provisioning(start)?;
        Ok(v)
    }

    fn remove(&mut self) -> Result<(), PlatformError> {
        self.done = true;
        self.ctx
            .shared
            .latencies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                self.ctx.pvc.clone(),
                serde_json::Value::Object(self.timings.clone()),
            );
        let ctx = self.ctx.clone();
        let conn = &ctx.shared.conn;
        conn.block_on(async {
            // Agent pods are deleted after each run; a holder or agent a failure left goes now.
            if let Ok(list) = agent_pod::volume_pods(&ctx).await {
                for p in list {
                    let n = p.metadata.name.unwrap_or_default();
                    agent_pod::delete(&ctx, &n, 0, true, ctx.timeouts.pod_start).await?;
                }
            }
            for cm in self.holder_inputs.drain(..) {
                agent_pod::delete_config_map(&ctx, &cm).await;
            }
            let pv = match &self.pv {
                Some(p) => Some(p.clone()),
                None => pvc::get(&ctx.client, &ctx.shared.namespace, &ctx.pvc)
                    .await
                    .ok()
                    .and_then(|c| c.spec.and_then(|s| s.volume_name)),
            };
            if let Some(pv) = &pv {
                attach::until_detached(
                    &ctx.client,
                    &ctx.shared.in_use,
                    pv,
                    None,
                    ctx.timeouts.attach,
                )
                .await?;
            }
            pvc::delete(
                &ctx.client,
                &ctx.shared.namespace,
                &ctx.pvc,
                pv.as_deref(),
                ctx.timeouts.provision,
            )
            .await?;
            if let Some(s) = &self.from_snapshot {
                super::snapshot::delete(&ctx, s).await?;
            }
            if let Some(cm) = &self.ledger_config_map {
                agent_pod::delete_config_map(&ctx, cm).await;
            }
            Ok::<_, PlatformError>(())
        })
    }

    /// Every pod of the volume deleted (or, `evict`, evicted: [`super::drain`]) and gone, then
    /// the volume detached from its node; the time it took is a `detach_seconds` timing.
    /// Returns the pods evicted.
    fn pods_gone(&mut self, evict: bool) -> Result<Vec<String>, PlatformError> {
        let ctx = self.ctx.clone();
        let conn = &ctx.shared.conn;
        let start = Instant::now();
        let (evicted, warning) = conn.block_on(async {
            let (evicted, warning) = if evict {
                super::drain::evict_volume_pods(&ctx, ctx.timeouts.pod_start).await?
            } else {
                (Vec::new(), None)
            };
            for p in agent_pod::volume_pods(&ctx).await? {
                let n = p.metadata.name.unwrap_or_default();
                agent_pod::delete(&ctx, &n, 5, true, ctx.timeouts.pod_start).await?;
            }
            for cm in self.holder_inputs.drain(..) {
                agent_pod::delete_config_map(&ctx, &cm).await;
            }
            if let Some(pv) = &self.pv {
                let attachments = attach::until_detached(
                    &ctx.client,
                    &ctx.shared.in_use,
                    pv,
                    self.node.as_deref(),
                    ctx.timeouts.attach,
                )
                .await?;
                // An attachable driver without VolumeAttachments (flexVolume): the node's status.
                if attachments == 0
                    && let Some(node) = &self.node
                {
                    attach::until_off_node(&ctx.client, pv, node, ctx.timeouts.attach).await?;
                }
            }
            Ok::<_, PlatformError>((evicted, warning))
        })?;
        self.warnings.extend(warning);
        let took = start.elapsed().as_secs_f64();
        match self
            .timings
            .get_mut("detach_seconds")
            .and_then(|v| v.as_array_mut())
        {
            Some(a) => a.push(took.into()),
            None => {
                self.timings.insert(
                    "detach_seconds".into(),
                    vec![serde_json::Value::from(took)].into(),
                );
            }
        }
        Ok(evicted)
    }

    /// The holder pod: on `node` when given (the volume's last node, so a recreate stays
    /// there), never on `avoid`; waits until it runs.
    fn start_holder(
        &mut self,
        node: Option<String>,
        avoid: Vec<String>,
    ) -> Result<Box<dyn Pod>, PlatformError> {
        self.start_holder_running(node, avoid, None)
            .map(|(pod, _)| pod)
    }

    /// [`KubeVolume::start_holder`]; with `first`, the holder runs that agent call before it
    /// holds (`pod --hold -- ARGS`) and its output is read from the holder's log up to the
    /// call's end line: one pod start for a start and a call.
    fn start_holder_running(
        &mut self,
        node: Option<String>,
        avoid: Vec<String>,
        first: Option<&AgentCall>,
    ) -> Result<HolderStarted, PlatformError> {
        let ctx = self.ctx.clone();
        let name = ctx.next_name("holder");
        let conn = &ctx.shared.conn;
        let mut args = vec!["pod".to_string(), "--hold".into()];
        let mut inputs = None;
        let mut agent_args = Vec::new();
        if let Some(call) = first {
            let (cm, call_args) = conn.block_on(agent_pod::call_inputs(&ctx, &name, call))?;
            if let Some(cm) = &cm {
                self.holder_inputs.push(cm.clone());
            }
            inputs = cm;
            agent_args = call_args;
            args.push("--statfs".into());
            args.push(podspec::target_path(ctx.volume_mode).into());
            args.push("--".into());
            args.extend(agent_args.iter().cloned());
        }
        let mut plan = agent_pod::plan(&ctx, &name, args, inputs, node, "holder");
        plan.not_nodes = avoid;
        plan.grace_seconds = 10;
        let pod = podspec::build(&plan);
        // The first pod of a WaitForFirstConsumer claim also waits for the volume to be created.
        let mut limit = ctx.timeouts.attach + ctx.timeouts.pod_start;
        if self.unbound {
            limit += ctx.timeouts.provision;
        }
        let start = Instant::now();
        let started = conn.block_on(agent_pod::create_and_start(&ctx, pod, limit, true));
        let node = match started {
            Ok(super::agent_pod::Started::Running { node }) => node,
            Ok(super::agent_pod::Started::Finished { .. }) => {
                // Why, read before the pod goes: its last state and its log's last lines.
                let why = conn.block_on(agent_pod::ended_at_once(
                    &ctx.client,
                    &ctx.shared.namespace,
                    &name,
                ));
                let _ = conn.block_on(agent_pod::delete(
                    &ctx,
                    &name,
                    0,
                    true,
                    ctx.timeouts.pod_start,
                ));
                return Err(PlatformError::Other(format!(
                    "the holder pod {}/{name} ended at once: {why}",
                    ctx.shared.namespace
                )));
            }
            Err(e) => {
                let _ = conn.block_on(agent_pod::delete(
                    &ctx,
                    &name,
                    0,
                    true,
                    ctx.timeouts.pod_start,
                ));
                return Err(e);
            }
        };
        let key = if self.unbound {
            "first_pod_seconds"
        } else {
            "pod_start_seconds"
        };
        let took = start.elapsed().as_secs_f64();
        match self.timings.get_mut(key).and_then(|v| v.as_array_mut()) {
            Some(a) => a.push(took.into()),
            None => {
                self.timings
                    .insert(key.into(), vec![serde_json::Value::from(took)].into());
            }
        }
        if self.pv.is_none() {
            let claim = conn.block_on(pvc::get(&ctx.client, &ctx.shared.namespace, &ctx.pvc))?;
            self.pv = claim.spec.and_then(|s| s.volume_name);
        }
        self.unbound = false;
        self.node = Some(node.clone());
        let output = first.map(|call| {
            let command = format!(
                "pvcheck-agent {} (in holder pod {}/{name} on node {node})",
                agent_args.join(" "),
                ctx.shared.namespace
            );
            let running = Instant::now();
            conn.block_on(agent_pod::first_call(&ctx, &name, &command, call.timeout))
                .map(|framed| {
                    let elapsed = framed.elapsed().unwrap_or_else(|| running.elapsed());
                    KubePod::output(framed, command, elapsed)
                })
        });
        let data_dir = podspec::target_path(ctx.volume_mode).into();
        let pod: Box<dyn Pod> = Box::new(KubePod {
            ctx,
            holder: name,
            node,
            data_dir,
        });
        Ok((pod, output))
    }

    /// A claim another run made and kept (`--phase after-upgrade`), bound to `pv`, last
    /// mounted on `node`, its ledger in ConfigMap `ledger_config_map`.
    pub fn adopted(
        ctx: Arc<VolumeCtx>,
        class: &ClassSpec,
        requested: u64,
        pv: Option<String>,
        node: Option<String>,
        ledger_config_map: String,
    ) -> KubeVolume {
        KubeVolume {
            id: format!("{}/{}", ctx.shared.namespace, ctx.pvc),
            ctx,
            class: class.clone(),
            requested,
            pv,
            node,
            unbound: false,
            from_snapshot: None,
            ledger_config_map: Some(ledger_config_map),
            timings: Default::default(),
            warnings: Vec::new(),
            holder_inputs: Vec::new(),
            done: false,
        }
    }

    /// `keep` without the message: the end of the run leaves the claim, its pods and the
    /// objects labelled with its name.
    fn mark_kept(&mut self, list: &std::sync::Mutex<Vec<String>>) {
        self.done = true;
        list.lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(self.ctx.pvc.clone());
    }

    pub fn pv(&self) -> Option<&str> {
        self.pv.as_deref()
    }
    pub fn node(&self) -> Option<&str> {
        self.node.as_deref()
    }

    /// The StorageClass and driver (read once per run and StorageClass) and the bound PV as
    /// mounted: the fingerprint's description of the setup, free of this run's names.
    fn setup(&self) -> serde_json::Value {
        let shared = &self.ctx.shared;
        let client = &self.ctx.client;
        let sc = self
            .class
            .kube
            .as_ref()
            .and_then(|k| k.storage_class_name())
            .map(str::to_string);
        let storage = sc.map(|name| {
            let cached = shared
                .setups
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&name)
                .cloned();
            cached.unwrap_or_else(|| {
                let v = shared.conn.block_on(super::setup::storage(client, &name));
                shared
                    .setups
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(name, v.clone());
                v
            })
        });
        let pv = self.pv.as_deref().map(|pv| {
            shared
                .conn
                .block_on(super::setup::persistent_volume(client, pv))
        });
        serde_json::json!({ "storage": storage, "mounted": pv })
    }
}

impl Volume for KubeVolume {
    fn id(&self) -> &str {
        &self.id
    }

    fn size(&self) -> u64 {
        self.requested
    }

    fn fingerprint(&self) -> serde_json::Value {
        serde_json::json!({
            "kind": "pvc",
            "id": self.id,
            "pv": self.pv,
            "node": self.node,
            "requested_bytes": self.requested,
            "storage_class": self.class.kube.as_ref().and_then(|k| k.storage_class_name()),
            "volume_mode": self.class.kube.as_ref().map(|k| k.volume_mode),
            "access_modes": self.class.kube.as_ref().map(|k| k.access_modes.clone()),
            "timings": self.timings,
            "setup": self.setup(),
        })
    }

    fn start_pod(&mut self) -> Result<Box<dyn Pod>, PlatformError> {
        let node = self.node.clone();
        self.start_holder(node, Vec::new())
    }

    fn other_nodes(&mut self) -> Result<Elsewhere, PlatformError> {
        let ctx = self.ctx.clone();
        let (Some(pv), Some(current)) = (self.pv.clone(), self.node.clone()) else {
            return Err(PlatformError::Other(format!(
                "volume {}: no pod ran yet, so its PV and node are not known",
                self.id
            )));
        };
        ctx.shared.conn.block_on(async {
            let nodes: Api<Node> = Api::all(ctx.client.clone());
            let nodes = nodes
                .list(&Default::default())
                .await
                .map_err(|e| agent_pod::api_error("listing nodes", e))?;
            let pvs: Api<PersistentVolume> = Api::all(ctx.client.clone());
            let pv = pvs
                .get(&pv)
                .await
                .map_err(|e| agent_pod::api_error(&format!("reading PV {pv}"), e))?;
            Ok(topology::elsewhere(
                &nodes.items,
                &pv,
                &current,
                &ctx.placement,
            ))
        })
    }

    fn start_pod_running(
        &mut self,
        call: &dyn Fn(AgentTarget<'_>) -> AgentCall,
    ) -> Result<PodRunning, PlatformError> {
        let c = call(podspec::agent_target(self.ctx.volume_mode));
        let node = self.node.clone();
        let (pod, out) = self.start_holder_running(node, Vec::new(), Some(&c))?;
        let out = out.unwrap_or_else(|| Err(PlatformError::Other("pvcheck bug: no output".into())));
        Ok((pod, out))
    }

    fn start_pod_avoiding(&mut self, avoid: &[String]) -> Result<Box<dyn Pod>, PlatformError> {
        self.start_holder(None, avoid.to_vec())
    }

    fn share(&mut self) -> Result<Box<dyn Pod>, PlatformError> {
        let first = self.node.clone();
        // Another node when the PV's topology and the placement allow one, else the same node.
        let target = match self.other_nodes()? {
            Elsewhere::Nodes(n) => n.into_iter().next(),
            Elsewhere::Nowhere(_) => first.clone(),
        };
        let pod = self.start_holder(target, Vec::new());
        // The volume's node stays the first pod's: a recreate goes back there.
        self.node = first;
        pod
    }

    fn stop_pod(&mut self, pod: Box<dyn Pod>) -> Result<(), PlatformError> {
        // The pod is ours (a KubePod): its holder is named after this volume.
        drop(pod);
        self.pods_gone(false).map(|_| ())
    }

    fn evict_pod(&mut self, pod: Box<dyn Pod>) -> Result<Vec<String>, PlatformError> {
        drop(pod);
        self.pods_gone(true)
    }

    fn cordon(&mut self, nodes: &[String]) -> Result<Vec<String>, PlatformError> {
        let ctx = self.ctx.clone();
        let (cordoned, warnings) = ctx
            .shared
            .conn
            .block_on(super::drain::cordon(&ctx, nodes))?;
        self.warnings.extend(warnings);
        Ok(cordoned)
    }

    fn uncordon(&mut self, nodes: &[String]) -> Result<(), PlatformError> {
        let ctx = self.ctx.clone();
        ctx.shared.conn.block_on(super::drain::uncordon(
            &ctx.client,
            &ctx.shared.run_id,
            nodes,
        ))
    }

    fn upgrade_steps(&self) -> Vec<UpgradeStep> {
        if self
            .class
            .upgrade
            .as_ref()
            .is_some_and(|u| u.command.is_some())
        {
            ["upgrade", "upgrade-after-rewrite"]
                .iter()
                .map(|n| UpgradeStep { name: (*n).into() })
                .collect()
        } else {
            Vec::new()
        }
    }

    fn upgrade(
        &mut self,
        pod: Box<dyn Pod>,
        step: &UpgradeStep,
    ) -> Result<Box<dyn Pod>, PlatformError> {
        // The holder keeps the volume attached and mounted while the driver is upgraded, as a
        // workload would, and goes on holding it: the check's verify after the step is a new
        // agent pod, which the new driver publishes from the staging that survived, and the
        // check's takeover then recreates the holder (the new driver unpublishes, unstages,
        // detaches, attaches, stages and publishes the pre-upgrade volume), so what fails there
        // is the upgrade's, named as such. Recreating it here too would only repeat that, and
        // a failure here would read as the harness's.
        super::upgrade::run(self, step)?;
        Ok(pod)
    }

    fn upgrade_live_nodes(
        &mut self,
        step: &UpgradeStep,
        nodes: &[String],
    ) -> Result<Vec<DriverWindow>, PlatformError> {
        if nodes.len() <= 1 {
            return self.upgrade_live(step).map(|w| vec![w]);
        }
        let (ws, untouched) = super::node_plugin::upgrade_live_nodes(self, step, nodes)?;
        self.registration_not_checked(&ws);
        if ws.is_empty() {
            // Not one window: passing would say an upgrade was tested under writes.
            return Err(PlatformError::Unsupported(format!(
                "upgrade step {}: the upgrade replaced no node plugin pod on any node of the agents ({}: the same pods still run), so it tested no upgrade of the driver",
                step.name,
                untouched.join(", ")
            )));
        }
        if !untouched.is_empty() {
            self.warnings.push(format!(
                "upgrade step {}: the upgrade replaced no node plugin pod on {} (the same pod still runs): nothing rolled under the agents there, so this step tested no upgrade of the driver on {}",
                step.name,
                untouched.join(", "),
                if untouched.len() == 1 { "that node" } else { "those nodes" }
            ));
        }
        let same: Vec<String> = ws
            .iter()
            .filter(|w| w.report["image_changed"] == false)
            .map(|w| {
                format!(
                    "{} on node {}",
                    w.report["old"]["pod"].as_str().unwrap_or("?"),
                    w.node.as_deref().unwrap_or("?")
                )
            })
            .collect();
        if !same.is_empty() {
            self.warnings.push(format!(
                "upgrade step {}: the node plugin pods {} were each replaced by one with the same images and image IDs: the windows tested a restart of the driver, not a new version",
                step.name,
                same.join(", ")
            ));
        }
        Ok(ws)
    }

    fn upgrade_live(&mut self, step: &UpgradeStep) -> Result<DriverWindow, PlatformError> {
        let w = super::node_plugin::upgrade_live(self, step)?;
        self.registration_not_checked(std::slice::from_ref(&w));
        if w.report["image_changed"] == false {
            self.warnings.push(format!(
                "upgrade step {}: the node plugin pod {} on node {} was replaced by one with the same images and image IDs: the window tested a restart of the driver, not a new version",
                step.name,
                w.report["old"]["pod"].as_str().unwrap_or("?"),
                w.node.as_deref().unwrap_or("?")
            ));
        }
        Ok(w)
    }

    fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }

    fn kill_driver(&mut self) -> Result<DriverWindow, PlatformError> {
        let w = super::node_plugin::kill(self)?;
        self.registration_not_checked(std::slice::from_ref(&w));
        Ok(w)
    }

    fn kill_driver_nodes(&mut self, nodes: &[String]) -> Result<Vec<DriverWindow>, PlatformError> {
        if nodes.len() <= 1 {
            return self.kill_driver().map(|w| vec![w]);
        }
        let (ws, untouched) = super::node_plugin::kill_nodes(self, nodes)?;
        self.registration_not_checked(&ws);
        if !untouched.is_empty() {
            // Deleted by pvcheck, yet the same pod runs: not a crash of the driver there.
            return Err(PlatformError::Other(format!(
                "the node plugin pods {} were deleted with grace period 0 and still run, unchanged",
                untouched.join(", ")
            )));
        }
        Ok(ws)
    }

    fn disrupt_node_agent(
        &mut self,
        how: NodeAgentDisruption,
    ) -> Result<DriverWindow, PlatformError> {
        super::kubelet::disrupt(self, how)
    }

    fn mount_counts(&self) -> Result<Vec<MountCount>, PlatformError> {
        super::node_mounts::of(self)
    }

    fn expand(&mut self, new_size: u64) -> Result<(), PlatformError> {
        let ctx = self.ctx.clone();
        let bytes = new_size.div_ceil(1 << 20) * (1 << 20);
        let q = crate::config::kube::format_quantity(bytes);
        let conn = &ctx.shared.conn;
        conn.block_on(async {
            let api: Api<PersistentVolumeClaim> =
                Api::namespaced(ctx.client.clone(), &ctx.shared.namespace);
            let patch =
                serde_json::json!({ "spec": { "resources": { "requests": { "storage": q } } } });
            api.patch(&ctx.pvc, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(|e| {
                    agent_pod::api_error(&format!("expanding PVC {} to {q}", self.id), e)
                })?;
            let limit = ctx.timeouts.provision + ctx.timeouts.attach;
            super::wait::until(
                api,
                &ctx.pvc,
                &format!("PVC {} to be resized to {q}", self.id),
                limit,
                |c: Option<&PersistentVolumeClaim>| {
                    let Some(c) = c else {
                        return super::wait::Decision::Fail("the PVC is gone".into());
                    };
                    let st = c.status.as_ref();
                    let cap = st
                        .and_then(|s| s.capacity.as_ref())
                        .and_then(|m| m.get("storage"))
                        .and_then(|q| crate::config::kube::parse_quantity(&q.0).ok())
                        .unwrap_or(0);
                    let pending = st.and_then(|s| s.conditions.as_ref()).is_some_and(|cs| {
                        cs.iter().any(|c| {
                            c.status == "True"
                                && (c.type_ == "Resizing" || c.type_ == "FileSystemResizePending")
                        })
                    });
                    let failed = st
                        .and_then(|s| s.allocated_resource_statuses.as_ref())
                        .and_then(|m| m.get("storage"))
                        .filter(|s| s.contains("Infeasible") || s.contains("Failed"))
                        .cloned();
                    if let Some(f) = failed {
                        return super::wait::Decision::Fail(format!("the resize failed: {f}"));
                    }
                    if cap >= bytes && !pending {
                        super::wait::Decision::Done(())
                    } else {
                        super::wait::Decision::Wait
                    }
                },
            )
            .await
            .map_err(|e| PlatformError::Other(e.to_string()))
        })?;
        self.requested = bytes;
        Ok(())
    }

    fn snapshot(&mut self, name: &str) -> Result<Box<dyn Volume>, PlatformError> {
        super::snapshot::take_and_restore(self, name).map(|v| Box::new(v) as Box<dyn Volume>)
    }

    fn clone_volume(&mut self, name: &str) -> Result<Box<dyn Volume>, PlatformError> {
        super::clone::clone_of(self, name).map(|v| Box::new(v) as Box<dyn Volume>)
    }

    fn keep(mut self: Box<Self>) -> String {
        let shared = self.ctx.shared.clone();
        self.mark_kept(&shared.kept);
        let ns = &self.ctx.shared.namespace;
        format!(
            "kept PVC {} (PV {}) of class {}: inspect with `kubectl -n {ns} describe pvc {}` and `kubectl -n {ns} describe pods -l {}={}`; remove with `pvcheck cleanup --platform kubernetes --run-id {}`",
            self.id,
            self.pv.as_deref().unwrap_or("-"),
            self.class.name(),
            self.ctx.pvc,
            labels::VOLUME,
            labels::label_value(&self.ctx.pvc),
            self.ctx.shared.run_id
        )
    }

    fn keep_for_upgrade(
        mut self: Box<Self>,
        pod: Box<dyn Pod>,
        ledger: &crate::platform::KeptLedger,
    ) -> Result<String, PlatformError> {
        let node = pod.node().map(str::to_string);
        drop(pod); // the holder pod stays: the volume is in use through the upgrade
        let ctx = self.ctx.clone();
        let facts = super::phase::KeptFacts {
            pvc: ctx.pvc.clone(),
            pv: self.pv.clone(),
            node,
            requested_bytes: self.requested,
            kept: ledger.clone(),
        };
        let cm = ctx
            .shared
            .conn
            .block_on(super::phase::store(&ctx, &facts))?;
        self.mark_kept(&ctx.shared.for_upgrade);
        Ok(format!(
            "PVC {} (PV {}) on node {}, its holder pod running; ledger in ConfigMap {}/{cm}",
            self.id,
            self.pv.as_deref().unwrap_or("-"),
            facts.node.as_deref().unwrap_or("-"),
            ctx.shared.namespace
        ))
    }

    fn destroy(mut self: Box<Self>) -> Result<(), PlatformError> {
        self.remove()
    }
}

impl Drop for KubeVolume {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.remove();
        }
    }
}
