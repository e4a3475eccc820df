//! The result file: `<results>/runs/<UTC timestamp>-<run id>.json`.
//!
//! ```json
//! { "schema_version": 1, "run_id": "…", "seed": 123, "start": "2026-11-27T03:45:00Z", "end": "…",
//!   "interrupted": false, "platform": "local", "profile": "quick",
//!   "environment": { "kernel": "…", "node": "…", "pvcheck_version": "…", "agent_version": "…",
//!                    "classes": { "<class>": { "parameters": {…}, "volume": {…fs, mount options, size…} } } },
//!   "trials": [ { "name": "ext4-loop::integrity::recreate", "class": "ext4-loop", "check": "integrity::recreate",
//!                 "status": "passed|failed|ignored|interrupted", "duration_s": 1.2, "metrics": {…agent JSON…},
//!                 "ignored_reason": null, "failure": { "message": "…", "details": {…} } } ],
//!   "kept": [ "volume … kept: …" ] }
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

#[derive(Debug, Clone, Serialize)]
pub struct FailureRecord {
    pub message: String,
    pub details: Value,
}

#[derive(Debug, Clone, Serialize)]
pub struct TrialResult {
    pub name: String,
    pub class: String,
    pub check: String,
    pub status: Status,
    pub duration_s: f64,
    pub metrics: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ignored_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<FailureRecord>,
    /// What the trial noticed that is no failure (always present, possibly empty).
    pub warnings: Vec<String>,
}

/// Collects trial results as they finish (from any thread).
#[derive(Debug, Default)]
pub struct ResultSink {
    trials: Mutex<Vec<TrialResult>>,
    volumes: Mutex<Vec<(String, Value)>>,
}

impl ResultSink {
    pub fn push(&self, r: TrialResult) {
        self.trials
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(r);
    }
    /// Remembers a volume fingerprint for the class (the first one recorded wins).
    pub fn volume(&self, class: &str, fp: Value) {
        let mut v = self.volumes.lock().unwrap_or_else(|e| e.into_inner());
        if !v.iter().any(|(c, _)| c == class) {
            v.push((class.to_string(), fp));
        }
    }
    pub fn trials(&self) -> Vec<TrialResult> {
        self.trials
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
    pub fn volume_of(&self, class: &str) -> Option<Value> {
        self.volumes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|(c, _)| c == class)
            .map(|(_, v)| v.clone())
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
    pub environment: Value,
    pub trials: Vec<TrialResult>,
    pub kept: Vec<String>,
    /// `wall_s`, `agent_busy_s` (some agent running), `agent_summed_s`, `harness_only_s`, `harness_only_share`.
    pub timing: Value,
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
