//! Reading a run file (`results/runs/*.json`) or a baseline (`results/baselines/NAME.json`)
//! for comparison and reports. Both have the run schema (version 1); a baseline adds `kind`,
//! `name`, `created` and `sources`, and pools the repetitions of its runs.
//!
//! Only what comparisons need is lifted out of the JSON; the whole document stays available.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::report::results::SCHEMA_VERSION;

/// Why a result file cannot be used. Each displays as one line naming the file.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{path}: cannot read: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    #[error("{path}: not a pvcheck result file: {what}")]
    Corrupt { path: PathBuf, what: String },
    #[error(
        "{path}: schema_version {found}, this pvcheck reads version {SCHEMA_VERSION} (a result of another pvcheck release)"
    )]
    Schema { path: PathBuf, found: String },
    #[error("no baseline named {name:?} in {dir} ({have})")]
    UnknownBaseline {
        name: String,
        dir: PathBuf,
        have: String,
    },
}

/// One trial of a run, as comparisons see it.
#[derive(Debug, Clone)]
pub struct TrialDoc {
    pub name: String,
    pub class: String,
    pub check: String,
    /// `passed`, `failed`, `ignored`, `interrupted`.
    pub status: String,
    pub duration_s: f64,
    pub ignored_reason: Option<String>,
    pub failure_message: Option<String>,
    /// `failure.category` where the run recorded one (`data` = damage found).
    pub failure_category: Option<String>,
    /// The agent's bench JSON of every repetition (speed trials), in order.
    pub repetitions: Vec<Value>,
    /// The fingerprint of the volume each repetition ran on, where recorded.
    pub rep_volumes: Vec<Value>,
    /// The run each repetition of `repetitions` came from, in a baseline pooled from several
    /// runs (`""` where not recorded: a run file).
    pub rep_runs: Vec<String>,
}

impl TrialDoc {
    /// The workload of a `speed::<workload>` trial.
    pub fn workload(&self) -> Option<&str> {
        self.check.strip_prefix("speed::")
    }
    /// A failure that means damaged data (the category where recorded, else the check's kind).
    /// A failure of category `upgrade`: the upgraded driver could not take over what the old
    /// one made.
    pub fn is_upgrade_failure(&self) -> bool {
        self.status == "failed" && self.failure_category.as_deref() == Some("upgrade")
    }

    pub fn is_integrity_failure(&self) -> bool {
        self.status == "failed"
            && match &self.failure_category {
                Some(c) => c == "data",
                None => {
                    self.check.starts_with("integrity::")
                        || self.check == "expand"
                        || self.check == "snapshot"
                }
            }
    }
}

/// A run or a baseline.
#[derive(Debug, Clone)]
pub struct RunDoc {
    pub path: PathBuf,
    /// How reports name it: the baseline's name or the run file's stem.
    pub label: String,
    /// A baseline's name.
    pub baseline: Option<String>,
    /// The run id, or for a baseline the ids of the runs it was made from.
    pub run_ids: Vec<String>,
    pub start: String,
    pub profile: String,
    pub platform: String,
    pub environment: Value,
    pub trials: Vec<TrialDoc>,
    pub doc: Value,
}

fn s(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or("").to_string()
}

impl RunDoc {
    /// Reads and checks a run or baseline file.
    pub fn read(path: &Path) -> Result<RunDoc, ReadError> {
        let text = std::fs::read(path).map_err(|err| ReadError::Io {
            path: path.to_path_buf(),
            err,
        })?;
        let doc: Value = serde_json::from_slice(&text).map_err(|e| ReadError::Corrupt {
            path: path.to_path_buf(),
            what: if e.is_eof() {
                format!("truncated ({e})")
            } else {
                format!("invalid JSON ({e})")
            },
        })?;
        Self::from_value(path, doc)
    }

    pub fn from_value(path: &Path, doc: Value) -> Result<RunDoc, ReadError> {
        let corrupt = |what: &str| ReadError::Corrupt {
            path: path.to_path_buf(),
            what: what.to_string(),
        };
        if !doc.is_object() {
            return Err(corrupt("the document is not a JSON object"));
        }
        match doc.get("schema_version") {
            None => return Err(corrupt("no schema_version field")),
            Some(v) if v.as_u64() == Some(u64::from(SCHEMA_VERSION)) => {}
            Some(v) => {
                return Err(ReadError::Schema {
                    path: path.to_path_buf(),
                    found: v.to_string(),
                });
            }
        }
        let trials_v = doc
            .get("trials")
            .and_then(Value::as_array)
            .ok_or_else(|| corrupt("no trials array"))?;
        let mut trials = Vec::with_capacity(trials_v.len());
        for (i, t) in trials_v.iter().enumerate() {
            let name = s(t, "name");
            let class = s(t, "class");
            let check = s(t, "check");
            if name.is_empty() || class.is_empty() || check.is_empty() {
                return Err(corrupt(&format!("trials[{i}] lacks name, class or check")));
            }
            let metrics = t.get("metrics").cloned().unwrap_or(Value::Null);
            let (repetitions, rep_runs) = match metrics.get("repetitions").and_then(Value::as_array)
            {
                Some(reps) => reps
                    .iter()
                    .filter_map(|r| Some((r.get("bench")?.clone(), s(r, "run_id"))))
                    .unzip(),
                None => metrics
                    .get("bench")
                    .map(|b| (b.clone(), String::new()))
                    .into_iter()
                    .unzip(),
            };
            let rep_volumes = metrics
                .get("repetitions")
                .and_then(Value::as_array)
                .map(|reps| {
                    reps.iter()
                        .filter_map(|r| r.get("volume").cloned())
                        .collect()
                })
                .unwrap_or_default();
            let failure = t.get("failure");
            trials.push(TrialDoc {
                name,
                class,
                check,
                status: s(t, "status"),
                duration_s: t.get("duration_s").and_then(Value::as_f64).unwrap_or(0.0),
                ignored_reason: t
                    .get("ignored_reason")
                    .and_then(Value::as_str)
                    .map(String::from),
                failure_message: failure
                    .and_then(|f| f.get("message"))
                    .and_then(Value::as_str)
                    .map(String::from),
                failure_category: failure
                    .and_then(|f| f.get("category"))
                    .and_then(Value::as_str)
                    .map(String::from),
                repetitions,
                rep_volumes,
                rep_runs,
            });
        }
        let baseline = (s(&doc, "kind") == "baseline").then(|| s(&doc, "name"));
        let run_ids = match &baseline {
            Some(_) => doc
                .get("sources")
                .and_then(Value::as_array)
                .map(|a| a.iter().map(|x| s(x, "run_id")).collect())
                .unwrap_or_default(),
            None => vec![s(&doc, "run_id")],
        };
        let label = baseline.clone().unwrap_or_else(|| {
            path.file_stem()
                .map(|x| x.to_string_lossy().into_owned())
                .unwrap_or_default()
        });
        Ok(RunDoc {
            path: path.to_path_buf(),
            label,
            baseline,
            run_ids,
            start: s(&doc, "start"),
            profile: s(&doc, "profile"),
            platform: s(&doc, "platform"),
            environment: doc.get("environment").cloned().unwrap_or(Value::Null),
            trials,
            doc,
        })
    }

    /// The class's recorded thresholds (defaults where the run recorded none).
    pub fn thresholds(&self, class: &str) -> crate::config::thresholds::Thresholds {
        self.environment
            .get("classes")
            .and_then(|c| c.get(class))
            .and_then(|c| c.get("thresholds"))
            .and_then(|t| serde_json::from_value(t.clone()).ok())
            .unwrap_or_default()
    }

    /// Classes in the order their trials appear.
    pub fn classes(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for t in &self.trials {
            if !out.contains(&t.class) {
                out.push(t.class.clone());
            }
        }
        out
    }

    pub fn speed_trial(&self, class: &str, workload: &str) -> Option<&TrialDoc> {
        self.trials
            .iter()
            .find(|t| t.class == class && t.workload() == Some(workload))
    }
}

/// `ARG` as given to `compare` or `--baseline`: an existing file, or a baseline name looked
/// up in `<results>/baselines/`.
pub fn resolve(arg: &str, results: &Path) -> Result<RunDoc, ReadError> {
    let p = Path::new(arg);
    if p.is_file() || arg.ends_with(".json") || arg.contains('/') {
        return RunDoc::read(p);
    }
    let dir = results.join("baselines");
    let file = dir.join(format!("{arg}.json"));
    if file.is_file() {
        return RunDoc::read(&file);
    }
    let have = crate::baseline::names(&dir);
    Err(ReadError::UnknownBaseline {
        name: arg.to_string(),
        dir,
        have: if have.is_empty() {
            "there are none yet: `pvcheck baseline save RUN.json --name NAME`".into()
        } else {
            format!("have: {}", have.join(", "))
        },
    })
}
