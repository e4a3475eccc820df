//! Baselines: `results/baselines/NAME.json`, made from one or several runs (issue 12).
//!
//! A baseline has the run schema (version 1) so everything that reads runs reads it, plus
//! `kind: "baseline"`, `name`, `created` and `sources` (the runs it was made from). Each speed
//! trial holds the repetitions of every source run, pooled in source order (more repetitions,
//! a narrower interval); the other trials are the first run's. Runs are pooled only when
//! their setups match (the fingerprint of `crate::compare::fingerprint`) and they are clean
//! (no failed or interrupted trial): a baseline is what "good" means.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::compare::{Difference, ReadError, RunDoc, fingerprint};

#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("--name {0:?}: use letters, digits, '.', '_' and '-' (not starting with '.')")]
    BadName(String),
    #[error("{0} exists: give --force to replace it")]
    Exists(PathBuf),
    #[error("{path}: {what}: a baseline must come from clean runs")]
    NotClean { path: PathBuf, what: String },
    #[error("{path} is a baseline: save baselines from run files")]
    IsBaseline { path: PathBuf },
    #[error("{0}: the same run is given twice")]
    Duplicate(String),
    #[error(
        "{path} is not like {first} ({} difference(s)):\n{}",
        .differences.len(),
        .differences.iter().map(|d| format!("  {d}")).collect::<Vec<_>>().join("\n")
    )]
    Mismatch {
        path: PathBuf,
        first: PathBuf,
        differences: Vec<Difference>,
    },
    #[error("cannot write {path}: {err}")]
    Write { path: PathBuf, err: std::io::Error },
    #[error("no run files given")]
    NoRuns,
    #[error(
        "refusing a baseline most of whose workloads have unreliable repetitions ({} of {}): every later comparison would be 'unreliable' (give --force to keep it anyway):\n{}",
        .unreliable.len(),
        .workloads,
        .unreliable.iter().map(|u| format!("  {u}")).collect::<Vec<_>>().join("\n")
    )]
    MostlyUnreliable {
        unreliable: Vec<String>,
        workloads: usize,
    },
}

/// The speed workloads of a baseline with repetitions the gate will not trust (stalled,
/// unstable within the run, shallow queue), one line each (`class::speed::w: repetition 3:
/// IOPS varied 14.6% …`); and how many speed workloads there are.
pub fn unreliable(doc: &RunDoc) -> (Vec<String>, usize) {
    let mut out = Vec::new();
    let mut total = 0;
    for t in doc.trials.iter().filter(|t| !t.repetitions.is_empty()) {
        let Some(w) = t.workload() else { continue };
        total += 1;
        let limits = doc.thresholds(&t.class).for_workload(w);
        let why: Vec<String> = t
            .repetitions
            .iter()
            .enumerate()
            .filter_map(|(i, b)| {
                crate::compare::metrics::invalid_reason(b, &limits)
                    .map(|r| format!("repetition {}: {r}", i + 1))
            })
            .collect();
        if !why.is_empty() {
            out.push(format!("{}: {}", t.name, why.join("; ")));
        }
    }
    (out, total)
}

/// Names of the baselines in `dir` (sorted), for messages and `baseline list`.
pub fn names(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let p = e.path();
            if p.extension()? != "json" {
                return None;
            }
            Some(p.file_stem()?.to_string_lossy().into_owned())
        })
        .collect();
    out.sort();
    out
}

pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name.len() <= 100
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Every class with speed results and its workloads.
fn speed_classes(doc: &RunDoc) -> Vec<(String, Vec<String>)> {
    doc.classes()
        .into_iter()
        .map(|c| {
            let ws = doc
                .trials
                .iter()
                .filter(|t| t.class == c && !t.repetitions.is_empty())
                .filter_map(|t| t.workload().map(String::from))
                .collect::<Vec<_>>();
            (c, ws)
        })
        .filter(|(_, ws)| !ws.is_empty())
        .collect()
}

/// Builds the baseline document from runs (read already).
pub fn build(runs: &[RunDoc], name: &str, allow_mismatch: bool) -> Result<Value, BaselineError> {
    let Some(first) = runs.first() else {
        return Err(BaselineError::NoRuns);
    };
    let mut seen = Vec::new();
    for r in runs {
        if r.baseline.is_some() {
            return Err(BaselineError::IsBaseline {
                path: r.path.clone(),
            });
        }
        if seen.contains(&r.run_ids) {
            return Err(BaselineError::Duplicate(r.path.display().to_string()));
        }
        seen.push(r.run_ids.clone());
        if r.doc.get("interrupted").and_then(Value::as_bool) == Some(true) {
            return Err(BaselineError::NotClean {
                path: r.path.clone(),
                what: "the run was interrupted".into(),
            });
        }
        let failed: Vec<&str> = r
            .trials
            .iter()
            .filter(|t| t.status == "failed")
            .map(|t| t.name.as_str())
            .collect();
        if !failed.is_empty() {
            return Err(BaselineError::NotClean {
                path: r.path.clone(),
                what: format!("failed trials ({})", failed.join(", ")),
            });
        }
        if !allow_mismatch && r.path != first.path {
            let classes = speed_classes(first);
            let differences = fingerprint::differences(first, r, &classes);
            if !differences.is_empty() {
                return Err(BaselineError::Mismatch {
                    path: r.path.clone(),
                    first: first.path.clone(),
                    differences,
                });
            }
        }
    }
    let mut doc = first.doc.clone();
    let trials = doc
        .get_mut("trials")
        .and_then(Value::as_array_mut)
        .map(std::mem::take)
        .unwrap_or_default();
    let mut pooled = Vec::with_capacity(trials.len());
    for mut t in trials {
        let name_t = t
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let is_speed = t
            .get("check")
            .and_then(Value::as_str)
            .is_some_and(|c| c.starts_with("speed::"));
        if is_speed {
            let mut reps = Vec::new();
            for r in runs {
                let Some(src) = r.doc["trials"]
                    .as_array()
                    .and_then(|a| a.iter().find(|x| x["name"] == name_t.as_str()))
                else {
                    continue;
                };
                let m = &src["metrics"];
                match m.get("repetitions").and_then(Value::as_array) {
                    Some(rs) => reps.extend(rs.iter().map(|x| {
                        let mut x = x.clone();
                        x["run_id"] = json!(r.run_ids.first());
                        x
                    })),
                    None => {
                        if let Some(b) = m.get("bench") {
                            reps.push(json!({ "bench": b, "run_id": r.run_ids.first() }));
                        }
                    }
                }
            }
            if let Some(m) = t.get_mut("metrics").and_then(Value::as_object_mut) {
                m.insert("repetitions".into(), Value::Array(reps));
            }
        }
        pooled.push(t);
    }
    doc["trials"] = Value::Array(pooled);
    doc["kind"] = json!("baseline");
    doc["name"] = json!(name);
    doc["run_id"] = json!(format!("baseline:{name}"));
    doc["created"] = json!(crate::report::results::rfc3339_utc(
        std::time::SystemTime::now()
    ));
    doc["sources"] = runs
        .iter()
        .map(|r| {
            json!({
                "run_id": r.run_ids.first(),
                "file": r.path.display().to_string(),
                "start": r.start,
            })
        })
        .collect();
    Ok(doc)
}

/// `pvcheck baseline save RUN.json… --name NAME [--force]`: writes
/// `<results>/baselines/NAME.json` atomically; never replaces one without `force`.
pub fn save(
    run_files: &[PathBuf],
    name: &str,
    results: &Path,
    force: bool,
    allow_mismatch: bool,
) -> Result<(PathBuf, Value), BaselineError> {
    if !valid_name(name) {
        return Err(BaselineError::BadName(name.to_string()));
    }
    let dir = results.join("baselines");
    let path = dir.join(format!("{name}.json"));
    if path.exists() && !force {
        return Err(BaselineError::Exists(path));
    }
    let runs = run_files
        .iter()
        .map(|p| RunDoc::read(p))
        .collect::<Result<Vec<_>, _>>()?;
    let doc = build(&runs, name, allow_mismatch)?;
    let (flagged, workloads) = unreliable(&RunDoc::from_value(&path, doc.clone())?);
    if !force && workloads > 0 && 2 * flagged.len() > workloads {
        return Err(BaselineError::MostlyUnreliable {
            unreliable: flagged,
            workloads,
        });
    }
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(&dir)?;
        let tmp = dir.join(format!(".{name}.json.tmp"));
        let mut text = serde_json::to_vec_pretty(&doc).map_err(std::io::Error::other)?;
        text.push(b'\n');
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, &path)
    };
    write().map_err(|err| BaselineError::Write {
        path: path.clone(),
        err,
    })?;
    Ok((path, doc))
}

/// One row of `pvcheck baseline list`.
#[derive(Debug, Clone)]
pub struct Listed {
    pub name: String,
    pub created: String,
    pub runs: usize,
    pub profile: String,
    pub platform: String,
    pub kernel: String,
    pub agent: String,
    /// `class (kind, fs, mount options) ×reps`.
    pub classes: Vec<String>,
    /// A baseline that cannot be read: why.
    pub error: Option<String>,
}

/// What a class is, in a few words: `loop, ext4, -o sync` for a local class;
/// `StorageClass csi-hostpath-sc, Filesystem` on Kubernetes.
fn describe_class(params: &Value) -> Vec<String> {
    if let Some(k) = params.get("kube").filter(|k| k.is_object()) {
        let mut what = Vec::new();
        match (k["storage_class"].as_str(), k["pv_template"].as_str()) {
            (Some(sc), _) => what.push(format!("StorageClass {sc}")),
            (None, Some(t)) => what.push(format!("PV template {t}")),
            _ => what.push("kubernetes".into()),
        }
        if let Some(m) = k["volume_mode"].as_str() {
            what.push(m.to_string());
        }
        return what;
    }
    let p = &params["local"];
    let Some(kind) = p.as_object().and_then(|o| o.keys().next().cloned()) else {
        return vec!["unknown kind".into()];
    };
    let mut what = vec![kind.clone()];
    if let Some(fs) = p[&kind]["fs"].as_str().or(p[&kind]["fs_type"].as_str()) {
        what.push(fs.to_string());
    }
    if let Some(mo) = p[&kind]["mount_options"].as_array()
        && !mo.is_empty()
    {
        what.push(format!(
            "-o {}",
            mo.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(",")
        ));
    }
    what
}

/// The kernel of a local run, or the distinct kernels of a cluster's nodes.
fn kernels(env: &Value) -> String {
    if let Some(k) = env["kernel"].as_str() {
        return k.to_string();
    }
    let mut ks: Vec<&str> = env["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["kernel"].as_str())
        .collect();
    ks.sort_unstable();
    ks.dedup();
    if ks.is_empty() {
        "unknown".into()
    } else {
        ks.join(", ")
    }
}

/// Every baseline in `<results>/baselines`, with its fingerprint summary.
pub fn list(results: &Path) -> Vec<Listed> {
    let dir = results.join("baselines");
    names(&dir)
        .into_iter()
        .map(|name| {
            let path = dir.join(format!("{name}.json"));
            match RunDoc::read(&path) {
                Err(e) => Listed {
                    name,
                    created: String::new(),
                    runs: 0,
                    profile: String::new(),
                    platform: String::new(),
                    kernel: String::new(),
                    agent: String::new(),
                    classes: Vec::new(),
                    error: Some(e.to_string()),
                },
                Ok(d) => {
                    let env = &d.environment;
                    let classes = speed_classes(&d)
                        .into_iter()
                        .map(|(c, ws)| {
                            let reps = ws
                                .first()
                                .and_then(|w| d.speed_trial(&c, w))
                                .map_or(0, |t| t.repetitions.len());
                            let params = &env["classes"][&c]["parameters"];
                            let what = describe_class(params);
                            format!("{c} ({}) ×{reps}", what.join(", "))
                        })
                        .collect();
                    Listed {
                        name,
                        created: d.doc["created"].as_str().unwrap_or("").to_string(),
                        runs: d.run_ids.len(),
                        profile: d.profile.clone(),
                        platform: d.platform.clone(),
                        kernel: kernels(env),
                        agent: env["agent_version"].as_str().unwrap_or("").to_string(),
                        classes,
                        error: None,
                    }
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::{self, synthetic};

    fn synthetic_run(id: &str, speed: f64) -> RunDoc {
        let mut spec = synthetic::Spec::new(id, 1, 1, 5);
        spec.speed = speed;
        spec.noise = 0.005;
        spec.start = format!("2026-12-06T0{}:00:00Z", id.len() % 10);
        let path = PathBuf::from(format!("{id}.json"));
        RunDoc::from_value(&path, synthetic::run(&spec)).unwrap()
    }

    /// Issue 19: a pull-request gate keeps its baseline file, not a nightly's history. A baseline
    /// pooled from six runs carries their run-to-run noise (per-run medians, robust spread), so
    /// a drift of that size between runs is not judged a regression; three runs carry none.
    #[test]
    fn a_baseline_pooled_from_six_runs_carries_their_run_to_run_noise_and_three_carry_none() {
        let speeds = [1.0, 0.88, 1.1, 0.95, 1.06, 0.9];
        let runs: Vec<RunDoc> = speeds
            .iter()
            .enumerate()
            .map(|(i, s)| synthetic_run(&format!("r{i}"), *s))
            .collect();
        let six =
            RunDoc::from_value(Path::new("six.json"), build(&runs, "six", false).unwrap()).unwrap();
        let noise = compare::baseline_noise(&six);
        let w = pvcheck_workloads::speed::matrix::NAMES[0];
        let sigma = noise[&("class-0".to_string(), w.to_string(), "iops".to_string())];
        assert!((0.08..0.16).contains(&sigma), "σ {sigma}");
        let three = RunDoc::from_value(
            Path::new("three.json"),
            build(&runs[..3], "three", false).unwrap(),
        )
        .unwrap();
        assert!(compare::baseline_noise(&three).is_empty());
        // A run file carries none either, and history's σ wins over the baseline's.
        assert!(compare::baseline_noise(&runs[0]).is_empty());
        let mut history = compare::Noise::new();
        history.insert(("class-0".into(), w.into(), "iops".into()), 0.5);
        let merged = compare::noise_for(&history, &six);
        assert_eq!(
            merged[&("class-0".to_string(), w.to_string(), "iops".to_string())],
            0.5
        );
        assert!(merged.len() > 1);
    }

    /// Issue 23 item 12: `baseline list` showed an empty kernel column and `csi-hostpath-sc ()`
    /// for a Kubernetes baseline.
    #[test]
    fn baseline_list_names_a_kubernetes_class_and_its_node_kernels() {
        let params = json!({ "name": "csi-hostpath-sc", "kube": { "storage_class": "csi-hostpath-sc", "volume_mode": "Filesystem" } });
        assert_eq!(
            describe_class(&params),
            ["StorageClass csi-hostpath-sc", "Filesystem"]
        );
        let env = json!({ "platform": "kubernetes", "nodes": [
            { "name": "a", "kernel": "6.1.0-13-amd64" }, { "name": "b", "kernel": "6.1.0-13-amd64" } ] });
        assert_eq!(kernels(&env), "6.1.0-13-amd64");
        assert_eq!(kernels(&json!({ "kernel": "6.8.0" })), "6.8.0");
        let local = json!({ "local": { "loop": { "fs": "ext4", "mount_options": ["sync"] } } });
        assert_eq!(describe_class(&local), ["loop", "ext4", "-o sync"]);
    }
}
