//! `--phase before-upgrade` / `--phase after-upgrade --resume RUN_ID` on Kubernetes (see
//! `crate::phase`): what the first run leaves in its namespace and how the second takes it over.
//!
//! Each kept volume has a ConfigMap `<pvc>-ledger` (labels: the run, the class, the volume, role
//! `ledgers`) with the ledger and where the volume was ([`KeptFacts`]). At the end of the first
//! run its namespace is annotated [`labels::AWAITING`]; the second run checks that annotation,
//! swaps it for [`labels::RESUMED_BY`] with a resourceVersion precondition (two resumes of one
//! run cannot both win) and makes the namespace its own. Everything it then creates carries the
//! first run's id, so removing "the run" at its end removes the whole namespace.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, PersistentVolumeClaim, Pod};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};

use super::agent_pod::api_error;
use super::context::{Shared, VolumeCtx};
use super::pod::KubePod;
use super::volume::KubeVolume;
use super::{labels, podspec};
use crate::config::ClassSpec;
use crate::platform::select::SelectError;
use crate::platform::{KeptLedger, PlatformError, Resumed};

/// The ConfigMap role of a kept volume's ledger.
const ROLE: &str = "ledgers";

/// Where a kept volume is, and its ledger: the `kept.json` key of its ConfigMap.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct KeptFacts {
    pub pvc: String,
    pub pv: Option<String>,
    /// The node its holder pod ran on.
    pub node: Option<String>,
    pub requested_bytes: u64,
    pub kept: KeptLedger,
}

/// The ConfigMap of the ledger of kept claim `pvc`.
fn ledger_config_map(pvc: &str) -> String {
    labels::object_name(&format!("{pvc}-ledger"))
}

/// Stores the ledger and facts of a volume kept for the upgrade; returns the ConfigMap's name.
pub async fn store(v: &VolumeCtx, facts: &KeptFacts) -> Result<String, PlatformError> {
    let name = ledger_config_map(&v.pvc);
    let text = serde_json::to_string_pretty(facts)
        .map_err(|e| PlatformError::Other(format!("the kept volume's facts: {e}")))?;
    let labels = labels::of(&v.shared.run_id, Some(&v.class), Some(&v.pvc), ROLE);
    let data = BTreeMap::from([("kept.json".to_string(), text)]);
    super::agent_pod::create_config_map(v, &name, labels, data).await?;
    Ok(name)
}

/// The end of a before-upgrade run that kept volumes: the namespace waits for its resume.
pub async fn mark_waiting(shared: &Shared) -> Result<(), PlatformError> {
    let api: Api<Namespace> = Api::all(shared.conn.client.clone());
    let patch = serde_json::json!({ "metadata": { "annotations": {
        labels::AWAITING: "after-upgrade",
    } } });
    api.patch(
        &shared.namespace,
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .map(|_| ())
    .map_err(|e| {
        api_error(
            &format!(
                "marking namespace {} as waiting for --phase after-upgrade",
                shared.namespace
            ),
            e,
        )
    })
}

/// `--resume RUN_ID`: checks that run `resumes` waits in the cluster with volumes of the given
/// classes only, and takes its namespace over for run `own_run` (this process becomes its
/// owner). Every refusal is a usage error: nothing was created.
pub async fn take_over(
    client: &kube::Client,
    resumes: &str,
    own_run: &str,
    classes: &[ClassSpec],
) -> Result<HashMap<String, KeptFacts>, SelectError> {
    let ns_name = labels::namespace(resumes);
    let nss: Api<Namespace> = Api::all(client.clone());
    let infra = |e: PlatformError| SelectError::Infrastructure(e.to_string());
    let ns = match nss.get_opt(&ns_name).await {
        Ok(Some(ns)) => ns,
        Ok(None) => {
            return Err(SelectError::Usage(format!(
                "--resume {resumes}: no run {resumes} waits in this cluster (namespace {ns_name} does not exist: already resumed by an after-upgrade run whose result file is not under this --results, removed by `pvcheck cleanup`, or the before-upgrade run kept nothing)"
            )));
        }
        Err(e) => return Err(infra(api_error(&format!("reading namespace {ns_name}"), e))),
    };
    let meta = &ns.metadata;
    let label = meta.labels.as_ref().and_then(|l| l.get(labels::RUN));
    if label.map(String::as_str) != Some(resumes) {
        return Err(SelectError::Usage(format!(
            "--resume {resumes}: namespace {ns_name} does not carry {}={resumes}: it is not pvcheck's, and is left alone",
            labels::RUN
        )));
    }
    let annotations = meta.annotations.clone().unwrap_or_default();
    if let Some(by) = annotations.get(labels::RESUMED_BY) {
        return Err(SelectError::Usage(format!(
            "--resume {resumes}: run {resumes} was already resumed by run {by}; its volumes were verified and rewritten then, so its ledgers no longer describe them"
        )));
    }
    if annotations.get(labels::AWAITING).map(String::as_str) != Some("after-upgrade") {
        return Err(SelectError::Usage(format!(
            "--resume {resumes}: run {resumes} is not waiting for an after-upgrade run (it was not a --phase before-upgrade run, or it has not finished, or it kept nothing); remove it with `pvcheck cleanup --platform kubernetes --run-id {resumes}`"
        )));
    }
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns_name);
    let lp = ListParams::default().labels(&format!(
        "{}={resumes},{}={ROLE}",
        labels::RUN,
        labels::ROLE
    ));
    let list = cms
        .list(&lp)
        .await
        .map_err(|e| infra(api_error(&format!("listing the ledgers in {ns_name}"), e)))?;
    let mut kept = HashMap::new();
    for cm in list.items {
        let name = cm.metadata.name.clone().unwrap_or_default();
        let text = cm
            .data
            .as_ref()
            .and_then(|d| d.get("kept.json"))
            .ok_or_else(|| {
                SelectError::Usage(format!(
                    "--resume {resumes}: ConfigMap {ns_name}/{name} has no `kept.json`: the ledger of that volume is lost"
                ))
            })?;
        let facts: KeptFacts = serde_json::from_str(text).map_err(|e| {
            SelectError::Usage(format!(
                "--resume {resumes}: ConfigMap {ns_name}/{name}, key kept.json: {e}"
            ))
        })?;
        if !classes.iter().any(|c| c.name() == facts.kept.class) {
            return Err(SelectError::Usage(format!(
                "--resume {resumes}: run {resumes} kept a volume of class {} (ConfigMap {ns_name}/{name}), which is not in the class files given: pass the same --classes as the before-upgrade run",
                facts.kept.class
            )));
        }
        kept.insert(facts.kept.class.clone(), facts);
    }
    // Take it over: compare-and-swap on the resourceVersion, so of two resumes one wins.
    let patch = serde_json::json!({ "metadata": {
        "resourceVersion": meta.resource_version,
        "annotations": {
            labels::AWAITING: serde_json::Value::Null,
            labels::RESUMED_BY: own_run,
            labels::OWNER: super::namespace::owner(),
        },
    } });
    match nss
        .patch(&ns_name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(kept),
        Err(kube::Error::Api(s)) if s.code == 409 => Err(SelectError::Usage(format!(
            "--resume {resumes}: another run is resuming run {resumes} at this moment"
        ))),
        Err(e) => Err(infra(api_error(
            &format!("taking namespace {ns_name} over"),
            e,
        ))),
    }
}

/// The kept volume of `class`, as a volume of this run, with its holder pod if it still runs.
pub fn resume(shared: &Arc<Shared>, class: &ClassSpec) -> Result<Option<Resumed>, PlatformError> {
    let Some(facts) = shared
        .resumable
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(class.name())
    else {
        return Ok(None);
    };
    let spec = class.kube.as_ref().ok_or_else(|| {
        PlatformError::Unsupported(format!("class {} has no `kube:` section", class.name()))
    })?;
    // The first run named its pods from 0: this run's names must not meet a pod of it that is
    // still terminating.
    let ctx = VolumeCtx::for_class(
        shared,
        class,
        spec.volume_mode,
        &facts.pvc,
        facts.pvc.clone(),
        1000,
    )?;
    let ns = shared.namespace.clone();
    let holder = shared.conn.block_on(async {
        let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
        let claim = pvcs
            .get_opt(&facts.pvc)
            .await
            .map_err(|e| api_error(&format!("reading PVC {ns}/{}", facts.pvc), e))?;
        if claim.is_none() {
            return Err(PlatformError::Other(format!(
                "PVC {ns}/{} that run {} kept for the upgrade is gone: someone removed it",
                facts.pvc, shared.run_id
            )));
        }
        let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
        let lp = ListParams::default().labels(&format!(
            "{}={},{}=holder",
            labels::VOLUME,
            labels::label_value(&facts.pvc),
            labels::ROLE
        ));
        let list = pods
            .list(&lp)
            .await
            .map_err(|e| api_error("listing the kept volume's pods", e))?;
        Ok(list.items.into_iter().find_map(|p| {
            let running = p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
            let node = p.spec.as_ref().and_then(|s| s.node_name.clone())?;
            (running && p.metadata.deletion_timestamp.is_none())
                .then(|| (p.metadata.name.unwrap_or_default(), node))
        }))
    })?;
    let fact_json = serde_json::json!({
        "namespace": ns,
        "pvc": facts.pvc,
        "pv": facts.pv,
        "node": facts.node,
        "holder_after_upgrade": holder.as_ref().map(|(n, _)| n.clone()),
        "seed": facts.kept.seed,
    });
    let vol = KubeVolume::adopted(
        ctx.clone(),
        class,
        facts.requested_bytes,
        facts.pv.clone(),
        holder
            .as_ref()
            .map(|(_, n)| n.clone())
            .or(facts.node.clone()),
        ledger_config_map(&facts.pvc),
    );
    let pod = holder.map(|(name, node)| {
        Box::new(KubePod {
            ctx: ctx.clone(),
            holder: name,
            node,
            data_dir: podspec::target_path(ctx.volume_mode).into(),
        }) as Box<dyn crate::platform::Pod>
    });
    Ok(Some(Resumed {
        volume: Box::new(vol),
        pod,
        kept: facts.kept,
        facts: fact_json,
    }))
}
