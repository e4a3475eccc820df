//! The result file: `<results>/runs/<UTC timestamp>-<run id>.json`.
//!
//! Every field is documented in `docs/results.md`; `docs/results.schema.json` is its JSON
//! Schema, checked by a test against real result files. In short:
//!
//! ```json
//! { "schema_version": 1, "run_id": "…", "seed": 123, "start": "2026-11-27T03:45:00Z", "end": "…",
//!   "interrupted": false, "platform": "local", "profile": "quick", "exit_code": 1,
//!   "command_line": ["pvcheck", "run", "…"], "selection": { "filter": "ext4-loop::", … },
//!   "summary": { "total": 20, "passed": 17, "failed": 1, "failed_by_category": { "setup": 1, … }, … },
//!   "environment": { "kernel": "…", "node": "…", "pvcheck_version": "…", "agent_version": "…",
//!                    "classes": { "<class>": { "parameters": {…}, "volume": {…}, "volume_from": "<trial>" } } },
//!   "trials": [ { "name": "ext4-loop::integrity::recreate", "class": "ext4-loop", "check": "integrity::recreate",
//!                 "status": "passed|failed|ignored|interrupted", "started": "…", "duration_s": 1.2,
//!                 "metrics": {…agent JSON…}, "warnings": [],
//!                 "ignored_reason": null, "failure": { "category": "data", "message": "…", "details": {…} } } ],
//!   "kept": [ "volume … kept: …" ], "kept_volumes": [ { "volume": "…", "location": "…", "ledgers": "…" } ] }
//! ```

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use serde::Serialize;
use serde_json::Value;

/// Bumped when a field changes meaning or disappears (additions do not bump it).
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Passed,
    Failed,
    Ignored,
    /// Was running when SIGINT/SIGTERM arrived (partial result files only): no verdict.
    Interrupted,
}

/// What kind of failure a failed trial is. Only [`FailureCategory::Data`] means damaged data
/// (and may be printed as "integrity FAILED").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureCategory {
    /// Damage found: verify reported blocks that differ from what was acknowledged.
    Data,
    /// The volume could not be provisioned, mounted, grown, removed; a command failed; no space.
    Setup,
    /// The driver broke its protocol (a reply, or a claim the kernel contradicts).
    Protocol,
    /// Something did not finish within its limit (or I/O stalled).
    Timeout,
    /// The upgraded (or rolled back) driver could not take over what the driver before it
    /// made: unpublish, stage, publish, expand, snapshot or delete a volume or snapshot created
    /// before the step (`integrity::upgrade`).
    Upgrade,
    /// The harness or the agent could not do its work (crash, registry, I/O on the harness side).
    Infrastructure,
    /// `--strict`: the check passed, but with warnings, which `--strict` does not accept. Not a
    /// finding about the volume: the warnings say what the check did differently.
    Strict,
}

impl FailureCategory {
    pub const ALL: [FailureCategory; 7] = [
        FailureCategory::Data,
        FailureCategory::Setup,
        FailureCategory::Protocol,
        FailureCategory::Timeout,
        FailureCategory::Upgrade,
        FailureCategory::Infrastructure,
        FailureCategory::Strict,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            FailureCategory::Data => "data",
            FailureCategory::Setup => "setup",
            FailureCategory::Protocol => "protocol",
            FailureCategory::Timeout => "timeout",
            FailureCategory::Upgrade => "upgrade",
            FailureCategory::Infrastructure => "infrastructure",
            FailureCategory::Strict => "strict",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct FailureRecord {
    pub category: FailureCategory,
    pub message: String,
    pub details: Value,
}

/// A volume kept by `--keep-on-failure`, as fields.
#[derive(Debug, Clone, Serialize)]
pub struct KeptVolume {
    pub class: String,
    pub trial: String,
    /// The platform's volume id.
    pub volume: String,
    /// Where the data is (image, device, directory, mount point), as the platform says.
    pub location: String,
    /// The directory holding the trial's ledgers and acknowledgement lists.
    pub ledgers: String,
    /// The one-line description printed at the end of the run.
    pub message: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct TrialResult {
    pub name: String,
    pub class: String,
    pub check: String,
    pub status: Status,
    /// When the trial started (RFC 3339, UTC, milliseconds).
    pub started: String,
    pub duration_s: f64,
    pub metrics: Value,
    /// What the check did differently from what its name says (always present, maybe empty).
    pub warnings: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ignored_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<FailureRecord>,
    /// The platform's waits during the trial, in the order they ended (left out when the
    /// platform recorded none: the local platform).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub timeline: Vec<crate::platform::timeline::Span>,
}

/// Collects trial results as they finish (from any thread).
#[derive(Debug, Default)]
pub struct ResultSink {
    trials: Mutex<Vec<TrialResult>>,
    /// (trial name, volume fingerprint) of every trial that provisioned a volume.
    volumes: Mutex<Vec<(String, Value)>>,
    /// Trial names in plan order: [`ResultSink::trials`] returns them in this order.
    order: Mutex<Vec<String>>,
}

impl ResultSink {
    /// Sets the plan order (trial names) results are returned in.
    pub fn set_order(&self, names: Vec<String>) {
        *self.order.lock().unwrap_or_else(|e| e.into_inner()) = names;
    }
    pub fn push(&self, r: TrialResult) {
        self.trials
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(r);
    }
    /// The result of one trial, once it has finished.
    pub fn find(&self, name: &str) -> Option<TrialResult> {
        self.trials
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|t| t.name == name)
            .cloned()
    }
    /// Remembers the volume fingerprint a trial recorded.
    pub fn volume(&self, trial: &str, fp: Value) {
        let mut v = self.volumes.lock().unwrap_or_else(|e| e.into_inner());
        v.retain(|(t, _)| t != trial);
        v.push((trial.to_string(), fp));
    }
    /// Trials in plan order (those not in the plan, e.g. interrupted ones, after them by name).
    pub fn trials(&self) -> Vec<TrialResult> {
        let mut t = self
            .trials
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let order = self.order.lock().unwrap_or_else(|e| e.into_inner()).clone();
        t.sort_by_key(|r| {
            (
                order
                    .iter()
                    .position(|n| *n == r.name)
                    .unwrap_or(usize::MAX),
                r.name.clone(),
            )
        });
        t
    }
    /// The class's volume fingerprint: the one recorded by the class's first trial in plan
    /// order that provisioned a volume (normally `provision`, taken after mounting), and that
    /// trial's name. Defined by the plan, not by which trial finished first.
    pub fn volume_of(&self, class: &str) -> Option<(String, Value)> {
        let vols = self.volumes.lock().unwrap_or_else(|e| e.into_inner());
        let order = self.order.lock().unwrap_or_else(|e| e.into_inner());
        let prefix = format!("{class}::");
        let of_class = || vols.iter().filter(|(t, _)| t.starts_with(&prefix));
        of_class()
            .min_by_key(|(t, _)| {
                (
                    order.iter().position(|n| n == t).unwrap_or(usize::MAX),
                    t.clone(),
                )
            })
            .map(|(t, v)| (t.clone(), v.clone()))
    }
}

/// The whole result document.
#[derive(Debug, Serialize)]
pub struct RunResult {
    pub schema_version: u32,
    pub run_id: String,
    pub seed: u64,
    pub start: String,
    pub end: String,
    pub interrupted: bool,
    pub platform: String,
    pub profile: String,
    /// The exit code of `pvcheck run` (except when this file could not be written: then 5).
    pub exit_code: u8,
    /// The command line, argument by argument.
    pub command_line: Vec<String>,
    /// What was selected: filters, and how many trials were planned and selected.
    pub selection: Value,
    /// Counts over `trials`.
    pub summary: super::summary::Summary,
    pub environment: Value,
    pub trials: Vec<TrialResult>,
    /// One line per kept volume (as printed).
    pub kept: Vec<String>,
    /// The kept volumes as fields.
    pub kept_volumes: Vec<KeptVolume>,
    /// `wall_s`, `agent_busy_s` (some agent running), `agent_summed_s`, `harness_only_s`, `harness_only_share`.
    pub timing: Value,
    /// `--phase` runs only: `name` (`before-upgrade`, `after-upgrade`), and the link to the other
    /// run (`resume_with`: the command; `resumes` and `resumed_result`: the run finished).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<Value>,
}

impl RunResult {
    /// Writes `<dir>/runs/<timestamp>-<run id>.json` (atomically: a temp file renamed) and returns the path.
    pub fn write(&self, results_dir: &Path, started: SystemTime) -> std::io::Result<PathBuf> {
        let runs = results_dir.join("runs");
        std::fs::create_dir_all(&runs)?;
        let path = runs.join(format!("{}-{}.json", compact_utc(started), self.run_id));
        let tmp = path.with_extension("json.tmp");
        let mut text = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        text.push(b'\n');
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, &path)?;
        Ok(path)
    }
}

/// `--keep-runs N`: removes all but the newest `keep` result files of `results_dir/runs`
/// (only names pvcheck writes, `<timestamp>-<run id>.json`, ordered by that timestamp; never
/// `current`, never anything else). Returns the files removed.
pub fn prune_runs(
    results_dir: &Path,
    keep: usize,
    current: Option<&Path>,
) -> std::io::Result<Vec<PathBuf>> {
    let runs = results_dir.join("runs");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&runs)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(is_result_file_name)
        })
        .collect();
    files.sort();
    let excess = files.len().saturating_sub(keep);
    let mut removed = Vec::new();
    for p in files.into_iter().take(excess) {
        if current.is_some_and(|c| c == p) {
            continue;
        }
        std::fs::remove_file(&p)?;
        removed.push(p);
    }
    Ok(removed)
}

/// `20261205T190128Z-22fa3c21.json`: what [`RunResult::write`] names a result file.
fn is_result_file_name(n: &str) -> bool {
    let Some(stem) = n.strip_suffix(".json") else {
        return false;
    };
    let b = stem.as_bytes();
    b.len() > 17
        && b[..8].iter().all(u8::is_ascii_digit)
        && b[8] == b'T'
        && b[9..15].iter().all(u8::is_ascii_digit)
        && b[15] == b'Z'
        && b[16] == b'-'
        && stem[17..]
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-')
}

/// Days since 1970-01-01 → (year, month, day) (Howard Hinnant's civil_from_days).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn parts(t: SystemTime) -> (i64, u32, u32, u64, u64, u64) {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (y, mo, d) = civil((secs / 86_400) as i64);
    let s = secs % 86_400;
    (y, mo, d, s / 3600, s % 3600 / 60, s % 60)
}

/// `2026-11-27T03:45:00.123Z`.
pub fn rfc3339_utc_millis(t: SystemTime) -> String {
    let (y, mo, d, h, mi, s) = parts(t);
    let ms = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_millis())
        .unwrap_or(0);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z")
}

/// `2026-11-27T03:45:00Z`.
pub fn rfc3339_utc(t: SystemTime) -> String {
    let (y, mo, d, h, mi, s) = parts(t);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// `20261127T034500Z`, for file names.
pub fn compact_utc(t: SystemTime) -> String {
    let (y, mo, d, h, mi, s) = parts(t);
    format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--keep-runs` removes the oldest result files only: never a baseline, a file of
    /// another name, or the run just written.
    #[test]
    fn keep_runs_removes_only_the_oldest_result_files() {
        let d = tempfile::tempdir().unwrap();
        let runs = d.path().join("runs");
        std::fs::create_dir_all(&runs).unwrap();
        let names = [
            "20261201T020000Z-aaaa1111.json",
            "20261202T020000Z-bbbb2222.json",
            "20261203T020000Z-cccc3333.json",
            "notes.json",
            "20261203T020000Z-cccc3333.json.tmp",
        ];
        for n in names {
            std::fs::write(runs.join(n), "{}").unwrap();
        }
        let removed = prune_runs(d.path(), 2, None).unwrap();
        assert_eq!(removed, vec![runs.join(names[0])]);
        let left: Vec<_> = names.iter().filter(|n| runs.join(n).exists()).collect();
        assert_eq!(left.len(), 4, "{left:?}");
        // The current run is never removed, even when it sorts first.
        let current = runs.join(names[1]);
        assert!(prune_runs(d.path(), 1, Some(&current)).unwrap().is_empty());
        assert!(current.exists());
    }
    use std::time::Duration;

    #[test]
    fn utc_timestamps_are_civil_dates() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_751_100); // 2026-11-27T03:45:00Z
        assert_eq!(rfc3339_utc(t), "2026-11-27T03:45:00Z");
        assert_eq!(compact_utc(t), "20261127T034500Z");
        assert_eq!(rfc3339_utc(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339_utc(leap), "2000-02-29T00:00:00Z");
    }
}
