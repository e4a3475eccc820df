//! The run registry: everything a run creates, recorded with the run id *before* it is created.
//!
//! Layout (the state directory is `/var/lib/pvcheck` for root, else
//! `$XDG_STATE_HOME/pvcheck` or `~/.local/state/pvcheck`; `--state-dir` or `PVCHECK_STATE_DIR`
//! override it):
//!
//! ```text
//! <state>/runs/<run-id>/owner.json        pid and start time of the pvcheck process that owns the run
//! <state>/runs/<run-id>/resources.jsonl   one Resource per line, appended and fsynced before creation
//! <state>/runs/<run-id>/volumes/<vol>/    harness-side files of a volume: ledgers, acks, mount point, image
//! ```
//!
//! Removal walks the records backwards (processes, then mounts, loop devices, images,
//! directories) and touches only what is recorded, and only if it still is what was recorded
//! (same pid and start time; a loop device still backed by the recorded image; a path still
//! mounted). A run whose owner process is alive is never touched by `pvcheck cleanup`.
//!
//! To close the race between "recorded" and "created", creation happens inside an [`Op`] guard:
//! [`Registry::close`] (on SIGINT) refuses new operations and waits for running ones to finish
//! before anything is removed.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::sys;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the run is shutting down (interrupted): nothing new is created")]
    Closed,
    #[error("{0}")]
    Invalid(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RegistryError + '_ {
    move |source| RegistryError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Something a run creates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Resource {
    /// A directory pvcheck created (removed recursively, unless something is mounted below it).
    Dir { path: PathBuf },
    /// A directory pvcheck created as a shared parent (removed only when empty).
    SharedDir { path: PathBuf },
    /// An image file.
    Image { path: PathBuf },
    /// Any loop device whose backing file is this image.
    Loop { image: PathBuf },
    /// A mount point pvcheck mounted something on.
    Mount { path: PathBuf },
    /// A process pvcheck started (killed with its process group).
    Process { pid: i32, start_time: u64 },
    /// A volume kept with --keep-on-failure (its id): its records are skipped by the end-of-run removal.
    Kept { kept: String },
}

/// One line of `resources.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    #[serde(flatten)]
    pub resource: Resource,
    pub class: Option<String>,
    pub volume: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Owner {
    pid: i32,
    start_time: u64,
    run_id: String,
}

/// What [`Registry::remove_present`] removed, and what it could not remove (with why).
pub type Removal = (Vec<Record>, Vec<(Record, String)>);

/// The registry of one run (the current one, or a dead one being cleaned up).
#[derive(Debug)]
pub struct Registry {
    run_id: String,
    dir: PathBuf,
    state: Mutex<State>,
    idle: Condvar,
}

#[derive(Debug, Default)]
struct State {
    closed: bool,
    in_flight: usize,
}

/// Held while a recorded resource is being created; see the module docs.
#[must_use]
pub struct Op<'a> {
    reg: &'a Registry,
}

impl Drop for Op<'_> {
    fn drop(&mut self) {
        let mut st = self.reg.state.lock().unwrap_or_else(|e| e.into_inner());
        st.in_flight -= 1;
        self.reg.idle.notify_all();
    }
}

/// The default state directory (see the module docs).
pub fn default_state_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("PVCHECK_STATE_DIR") {
        return PathBuf::from(d);
    }
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/var/lib/pvcheck");
    }
    if let Some(d) = std::env::var_os("XDG_STATE_HOME") {
        return PathBuf::from(d).join("pvcheck");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    home.join(".local/state/pvcheck")
}

impl Registry {
    /// Creates the registry of a new run owned by this process.
    pub fn create(state_dir: &Path, run_id: &str) -> Result<Self, RegistryError> {
        let dir = state_dir.join("runs").join(run_id);
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let owner = Owner {
            pid: std::process::id() as i32,
            start_time: sys::process_start_time(std::process::id() as i32).unwrap_or(0),
            run_id: run_id.into(),
        };
        // Written whole (temp file + rename) before anything else: `pvcheck cleanup` must never
        // see a half-written owner and take a starting run for a dead one.
        let p = dir.join("owner.json");
        let tmp = dir.join("owner.json.tmp");
        fs::write(&tmp, serde_json::to_vec(&owner).unwrap_or_default()).map_err(io(&tmp))?;
        fs::rename(&tmp, &p).map_err(io(&p))?;
        File::create(dir.join("resources.jsonl")).map_err(io(&dir))?;
        Ok(Self {
            run_id: run_id.into(),
            dir,
            state: Mutex::default(),
            idle: Condvar::new(),
        })
    }

    /// Opens the registry of an existing run (for cleanup).
    pub fn open(run_dir: &Path) -> Result<Self, RegistryError> {
        let run_id = run_dir
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| {
                RegistryError::Invalid(format!("{}: not a run directory", run_dir.display()))
            })?;
        Ok(Self {
            run_id: run_id.into(),
            dir: run_dir.to_path_buf(),
            state: Mutex::default(),
            idle: Condvar::new(),
        })
    }

    /// Every run directory under `state_dir` whose owner process is gone.
    pub fn dead_runs(state_dir: &Path) -> Result<Vec<PathBuf>, RegistryError> {
        let runs = state_dir.join("runs");
        let mut out = Vec::new();
        let entries = match fs::read_dir(&runs) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => {
                return Err(RegistryError::Io {
                    path: runs,
                    source: e,
                });
            }
        };
        for e in entries.flatten() {
            let p = e.path();
            // owner.json is written first and whole: without it the directory is a run being
            // created (or not a run at all), never a dead run.
            if !p.join("owner.json").exists() {
                continue;
            }
            let alive = fs::read(p.join("owner.json"))
                .ok()
                .and_then(|b| serde_json::from_slice::<Owner>(&b).ok())
                .is_some_and(|o| sys::process_start_time(o.pid) == Some(o.start_time));
            if !alive {
                out.push(p);
            }
        }
        out.sort();
        Ok(out)
    }

    pub fn run_id(&self) -> &str {
        &self.run_id
    }
    /// `<state>/runs/<run-id>`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// `<state>/runs/<run-id>/volumes/<volume>`, created.
    pub fn volume_dir(&self, volume: &str) -> Result<PathBuf, RegistryError> {
        let d = self.dir.join("volumes").join(volume);
        fs::create_dir_all(&d).map_err(io(&d))?;
        Ok(d)
    }

    /// Starts creating something; fails once the run is closed.
    pub fn begin(&self) -> Result<Op<'_>, RegistryError> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.closed {
            return Err(RegistryError::Closed);
        }
        st.in_flight += 1;
        Ok(Op { reg: self })
    }

    /// Refuses new operations and waits (at most `limit`) for running ones.
    pub fn close(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.closed = true;
        while st.in_flight > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            st = self
                .idle
                .wait_timeout(st, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    pub fn is_closed(&self) -> bool {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).closed
    }

    /// Appends a record (fsynced) under an [`Op`].
    pub fn record(
        &self,
        _op: &Op<'_>,
        resource: Resource,
        class: Option<&str>,
        volume: Option<&str>,
    ) -> Result<(), RegistryError> {
        let rec = Record {
            resource,
            class: class.map(Into::into),
            volume: volume.map(Into::into),
        };
        let p = self.dir.join("resources.jsonl");
        let mut line =
            serde_json::to_vec(&rec).map_err(|e| RegistryError::Invalid(e.to_string()))?;
        line.push(b'\n');
        // One write per record under the lock, so concurrent trials never interleave lines.
        let _st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut f = OpenOptions::new()
            .append(true)
            .create(true)
            .open(&p)
            .map_err(io(&p))?;
        f.write_all(&line).map_err(io(&p))?;
        f.sync_data().map_err(io(&p))?;
        Ok(())
    }

    /// Every record, in the order recorded.
    pub fn records(&self) -> Result<Vec<Record>, RegistryError> {
        let p = self.dir.join("resources.jsonl");
        let f = match File::open(&p) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(RegistryError::Io { path: p, source: e }),
        };
        let mut out = Vec::new();
        for line in BufReader::new(f).lines() {
            let line = line.map_err(io(&p))?;
            // A line cut by a crash mid-write is skipped: its resource was not created yet.
            if let Ok(r) = serde_json::from_str::<Record>(&line) {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// Records still present on the system, newest first, optionally only those of one class
    /// (skipping kept volumes unless `include_kept`).
    pub fn present(
        &self,
        class: Option<&str>,
        include_kept: bool,
    ) -> Result<Vec<Record>, RegistryError> {
        let recs = self.records()?;
        let kept: Vec<String> = recs
            .iter()
            .filter_map(|r| match &r.resource {
                Resource::Kept { kept } => Some(kept.clone()),
                _ => None,
            })
            .collect();
        let mut seen = Vec::new();
        let mut out = Vec::new();
        for r in recs.into_iter().rev() {
            if matches!(r.resource, Resource::Kept { .. }) || seen.contains(&r.resource) {
                continue;
            }
            seen.push(r.resource.clone());
            if class.is_some() && r.class.as_deref() != class {
                continue;
            }
            if !include_kept && r.volume.as_ref().is_some_and(|v| kept.contains(v)) {
                continue;
            }
            if sys::resource_present(&r.resource) {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// Removes what is still present (newest first), skipping kept volumes unless `include_kept`.
    /// Returns what was removed and what could not be.
    pub fn remove_present(
        &self,
        class: Option<&str>,
        include_kept: bool,
    ) -> Result<Removal, RegistryError> {
        let mut present = self.present(class, include_kept)?;
        // Processes first, then mounts, loop devices, files, directories: each frees the next.
        present.sort_by_key(|r| match r.resource {
            Resource::Process { .. } => 0,
            Resource::Mount { .. } => 1,
            Resource::Loop { .. } => 2,
            Resource::Image { .. } => 3,
            Resource::Dir { .. } => 4,
            Resource::SharedDir { .. } => 5,
            Resource::Kept { .. } => 6,
        });
        let mut removed = Vec::new();
        let mut failed = Vec::new();
        for r in present {
            match sys::remove_resource(&r.resource) {
                Ok(()) => removed.push(r),
                Err(e) => failed.push((r, e)),
            }
        }
        Ok((removed, failed))
    }

    /// Removes the run directory itself once nothing recorded is left (and nothing is mounted in it).
    pub fn remove_run_dir(&self) -> Result<(), RegistryError> {
        let present = self.present(None, true)?;
        if !present.is_empty() {
            return Err(RegistryError::Invalid(format!(
                "{}: still present: {}",
                self.dir.display(),
                present
                    .iter()
                    .map(|r| format!("{:?}", r.resource))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        if sys::mounted_below(&self.dir) {
            return Err(RegistryError::Invalid(format!(
                "{}: something is mounted below it",
                self.dir.display()
            )));
        }
        fs::remove_dir_all(&self.dir).map_err(io(&self.dir))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A kept volume's record once carried `volume` twice (the resource's and the record's
    /// field), so it did not parse back and the kept volume was removed at the end of the run.
    #[test]
    fn every_resource_kind_round_trips_through_a_record_line() {
        let all = [
            Resource::Dir { path: "/a".into() },
            Resource::SharedDir { path: "/b".into() },
            Resource::Image { path: "/c".into() },
            Resource::Loop { image: "/c".into() },
            Resource::Mount { path: "/d".into() },
            Resource::Process {
                pid: 7,
                start_time: 9,
            },
            Resource::Kept { kept: "v".into() },
        ];
        for r in all {
            let rec = Record {
                resource: r.clone(),
                class: Some("c".into()),
                volume: Some("v".into()),
            };
            let line = serde_json::to_string(&rec).unwrap();
            let back: Record =
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line}: {e}"));
            assert_eq!(back.resource, r);
            assert_eq!(back.volume.as_deref(), Some("v"));
        }
    }

    #[test]
    fn closed_registry_refuses_new_operations() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::create(dir.path(), "t1").unwrap();
        let op = reg.begin().unwrap();
        reg.record(
            &op,
            Resource::Dir {
                path: dir.path().join("x"),
            },
            None,
            None,
        )
        .unwrap();
        drop(op);
        reg.close(Duration::from_millis(10));
        assert!(matches!(reg.begin(), Err(RegistryError::Closed)));
        assert_eq!(reg.records().unwrap().len(), 1);
    }
}
