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
    #[error("cannot use {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the run is shutting down (interrupted): nothing new is created")]
    Closed,
    #[error("{0}")]
    Invalid(String),
    /// The run directory could not be removed because recorded things are still there.
    #[error("the run directory {dir} was kept because {} of what the run created could not be removed ({})", count(.left.len(), "thing"), .left.join("; "))]
    StillPresent { dir: PathBuf, left: Vec<String> },
    #[error("the run directory {0} was kept because something is still mounted below it")]
    MountedBelow(PathBuf),
}

/// `1 thing`, `3 things`: counts in sentences.
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else if let Some(stem) = noun
        .strip_suffix('y')
        .filter(|s| !s.ends_with(['a', 'e', 'o', 'u']))
    {
        format!("{n} {stem}ies")
    } else if noun.ends_with('s') || noun.ends_with("sh") || noun.ends_with("ch") {
        format!("{n} {noun}es")
    } else {
        format!("{n} {noun}s")
    }
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

impl Resource {
    /// What a user calls this kind of thing, for sentences (`removed 2 loop devices`).
    pub fn noun(&self) -> &'static str {
        match self {
            Resource::Dir { .. } => "directory",
            Resource::SharedDir { .. } => "shared directory",
            Resource::Image { .. } => "image",
            Resource::Loop { .. } => "loop device",
            Resource::Mount { .. } => "mount",
            Resource::Process { .. } => "process",
            Resource::Kept { .. } => "kept volume",
        }
    }

    /// The thing as a user can find it: a path, a device with its backing file, a pid with its
    /// command. Read from the system *now*, so call it before removing (a detached loop device
    /// has no name any more).
    pub fn describe(&self) -> String {
        self.describe_in_run(None)
    }

    /// [`Resource::describe`] for a resource of run `run_id`: a dead process whose labelled
    /// children outlived it is described by them.
    pub fn describe_in_run(&self, run_id: Option<&str>) -> String {
        match self {
            Resource::Dir { path } | Resource::SharedDir { path } | Resource::Image { path } => {
                path.display().to_string()
            }
            Resource::Mount { path } => format!("at {}", path.display()),
            // `removed loop device /dev/loop3 backed by …/image`
            Resource::Loop { image } => {
                let devs: Vec<String> = sys::loop_devices_of(image)
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect();
                if devs.is_empty() {
                    format!("backed by {}", image.display())
                } else {
                    format!("{} backed by {}", devs.join(", "), image.display())
                }
            }
            Resource::Process { pid, start_time } => {
                if sys::process_start_time(*pid) == Some(*start_time)
                    && let Some(cmd) = sys::process_command(*pid)
                {
                    return format!("{pid} `{cmd}`");
                }
                let orphans: Vec<String> = run_id
                    .map(|id| sys::labelled_group_members(*pid, id))
                    .unwrap_or_default()
                    .into_iter()
                    .map(|p| match sys::process_command(p) {
                        Some(cmd) => format!("{p} `{cmd}`"),
                        None => p.to_string(),
                    })
                    .collect();
                if orphans.is_empty() {
                    pid.to_string()
                } else {
                    format!(
                        "{} (outlived process {pid}, which started it)",
                        orphans.join(", ")
                    )
                }
            }
            Resource::Kept { kept } => kept.clone(),
        }
    }
}

/// A removed (or not removable) record, described before the removal was tried.
#[derive(Debug, Clone)]
pub struct Described {
    pub record: Record,
    /// [`Resource::describe`] taken before removal.
    pub what: String,
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

/// What [`Registry::remove_present`] removed, and what it could not remove (with why, one
/// sentence).
pub type Removal = (Vec<Described>, Vec<(Described, String)>);

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
        // Every process this run starts carries the label, so `pvcheck cleanup` can tell the
        // run's orphans (a killed upgrade command's children) from anyone else's.
        sys::set_run_label(run_id);
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
            let alive = owner_alive(&p).is_some();
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

    /// Every recorded resource once (newest record first), optionally only those of one class,
    /// skipping kept volumes unless `include_kept`. `Kept` markers themselves are not resources.
    fn unique_records(
        &self,
        class: Option<&str>,
        include_kept: bool,
    ) -> Result<Vec<Record>, RegistryError> {
        let recs = self.records()?;
        let kept = kept_volumes(&recs);
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
            out.push(r);
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
        Ok(self
            .unique_records(class, include_kept)?
            .into_iter()
            .filter(|r| sys::resource_present_in_run(&r.resource, Some(&self.run_id)))
            .collect())
    }

    /// The volumes kept with --keep-on-failure.
    pub fn kept(&self) -> Result<Vec<String>, RegistryError> {
        Ok(kept_volumes(&self.records()?))
    }

    /// Removes what is still present, skipping kept volumes unless `include_kept`. Returns what
    /// was removed and what could not be, each described before the removal was tried.
    ///
    /// Order: processes, then mounts, loop devices, images, directories, and shared parent
    /// directories last. Whether a thing is present is decided at its turn, not up front: a
    /// shared parent directory becomes removable (empty) only once this run's directories
    /// inside it are gone, so one pass removes everything (a first version decided up front
    /// and needed a second `pvcheck cleanup`).
    pub fn remove_present(
        &self,
        class: Option<&str>,
        include_kept: bool,
    ) -> Result<Removal, RegistryError> {
        let mut recs = self.unique_records(class, include_kept)?;
        recs.sort_by_key(|r| removal_order(&r.resource));
        let mut removed = Vec::new();
        let mut failed = Vec::new();
        for r in recs {
            if !sys::resource_present_in_run(&r.resource, Some(&self.run_id)) {
                continue;
            }
            let what = r.resource.describe_in_run(Some(&self.run_id));
            match sys::remove_resource_in_run(&r.resource, Some(&self.run_id)) {
                Ok(()) => removed.push(Described { record: r, what }),
                Err(e) => failed.push((Described { record: r, what }, e)),
            }
        }
        Ok((removed, failed))
    }

    /// Files under the run directory that are evidence (ledgers, acknowledgement streams, agent
    /// reports of the trials), not bookkeeping: what `pvcheck cleanup` warns about deleting.
    pub fn evidence_files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![self.dir.join("trials"), self.dir.join("volumes")];
        while let Some(d) = stack.pop() {
            let Ok(entries) = fs::read_dir(&d) else {
                continue;
            };
            for e in entries.flatten() {
                let Ok(ft) = e.file_type() else { continue };
                let p = e.path();
                // Never descend into a mount point (a kept volume's data is not ours to count).
                if ft.is_dir() && !sys::is_mounted(&p) {
                    stack.push(p);
                } else if ft.is_file() && p.file_name().is_some_and(|n| n != "image") {
                    out.push(p);
                }
            }
        }
        out.sort();
        out
    }

    /// Removes the run directory itself once nothing recorded is left (and nothing is mounted
    /// in it). A shared parent directory outside it never holds it back: other runs may use it.
    pub fn remove_run_dir(&self) -> Result<(), RegistryError> {
        let left: Vec<String> = self
            .present(None, true)?
            .iter()
            .filter(|r| !matches!(r.resource, Resource::SharedDir { .. }))
            .map(|r| {
                format!(
                    "{} {}",
                    r.resource.noun(),
                    r.resource.describe_in_run(Some(&self.run_id))
                )
            })
            .collect();
        if !left.is_empty() {
            return Err(RegistryError::StillPresent {
                dir: self.dir.clone(),
                left,
            });
        }
        if sys::mounted_below(&self.dir) {
            return Err(RegistryError::MountedBelow(self.dir.clone()));
        }
        match fs::remove_dir_all(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(RegistryError::Io {
                path: self.dir.clone(),
                source: e,
            }),
        }
    }

    /// The pid of the process that owns this run, if it is still alive.
    pub fn owner_alive(&self) -> Option<i32> {
        owner_alive(&self.dir)
    }
}

fn kept_volumes(recs: &[Record]) -> Vec<String> {
    recs.iter()
        .filter_map(|r| match &r.resource {
            Resource::Kept { kept } => Some(kept.clone()),
            _ => None,
        })
        .collect()
}

/// Processes first, then mounts, loop devices, files, directories: each frees the next.
fn removal_order(r: &Resource) -> u8 {
    match r {
        Resource::Process { .. } => 0,
        Resource::Mount { .. } => 1,
        Resource::Loop { .. } => 2,
        Resource::Image { .. } => 3,
        Resource::Dir { .. } => 4,
        Resource::SharedDir { .. } => 5,
        Resource::Kept { .. } => 6,
    }
}

/// The owner's pid when the owner of the run directory is alive (same pid *and* start time).
fn owner_alive(run_dir: &Path) -> Option<i32> {
    let o = fs::read(run_dir.join("owner.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<Owner>(&b).ok())?;
    (sys::process_start_time(o.pid) == Some(o.start_time)).then_some(o.pid)
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

    /// Issue 14: after a SIGKILL, `pvcheck cleanup` printed `still present: SharedDir { … }` and
    /// needed a second pass: the shared parent was judged (not empty: not ours) before this
    /// run's directories inside it were removed, and found empty (ours) only afterwards.
    #[test]
    fn one_pass_removes_a_shared_parent_emptied_by_removing_the_run_s_directories() {
        let state = tempfile::tempdir().unwrap();
        let shared = state.path().join("shm-like");
        let reg = Registry::create(state.path(), "deadrun1").unwrap();
        let op = reg.begin().unwrap();
        reg.record(
            &op,
            Resource::SharedDir {
                path: shared.clone(),
            },
            None,
            None,
        )
        .unwrap();
        fs::create_dir(&shared).unwrap();
        for v in ["deadrun1-a", "deadrun1-b"] {
            let d = shared.join(v);
            reg.record(
                &op,
                Resource::Dir { path: d.clone() },
                Some("tmpfs"),
                Some(v),
            )
            .unwrap();
            fs::create_dir(&d).unwrap();
            fs::write(d.join("data"), b"x").unwrap();
        }
        drop(op);
        let (removed, failed) = reg.remove_present(None, true).unwrap();
        assert!(failed.is_empty(), "{failed:?}");
        assert_eq!(
            removed.len(),
            3,
            "two directories and the emptied shared parent"
        );
        assert!(!shared.exists());
        reg.remove_run_dir().unwrap();
        assert!(!reg.dir().exists());
    }

    /// The shared parent may hold another run's volumes: then it stays, and it never keeps
    /// this run's directory from being removed.
    #[test]
    fn a_shared_parent_still_in_use_by_another_run_is_left_and_does_not_block() {
        let state = tempfile::tempdir().unwrap();
        let shared = state.path().join("shm-like");
        fs::create_dir_all(shared.join("otherrun-x")).unwrap();
        let reg = Registry::create(state.path(), "deadrun2").unwrap();
        let op = reg.begin().unwrap();
        reg.record(
            &op,
            Resource::SharedDir {
                path: shared.clone(),
            },
            None,
            None,
        )
        .unwrap();
        let mine = shared.join("deadrun2-a");
        reg.record(&op, Resource::Dir { path: mine.clone() }, None, None)
            .unwrap();
        fs::create_dir(&mine).unwrap();
        drop(op);
        let (removed, failed) = reg.remove_present(None, true).unwrap();
        assert!(failed.is_empty(), "{failed:?}");
        assert_eq!(removed.len(), 1);
        assert!(
            shared.join("otherrun-x").is_dir(),
            "another run's directory was touched"
        );
        reg.remove_run_dir().unwrap();
    }

    /// Every message a user sees is a sentence: no `Dir { path: … }` debug strings.
    #[test]
    fn a_run_directory_that_cannot_go_yet_is_explained_in_a_sentence() {
        let state = tempfile::tempdir().unwrap();
        let reg = Registry::create(state.path(), "deadrun3").unwrap();
        let op = reg.begin().unwrap();
        let d = state.path().join("elsewhere");
        reg.record(&op, Resource::Dir { path: d.clone() }, None, None)
            .unwrap();
        fs::create_dir(&d).unwrap();
        drop(op);
        let msg = reg.remove_run_dir().unwrap_err().to_string();
        assert!(!msg.contains('{') && !msg.contains("Some("), "{msg}");
        assert!(
            msg.contains("1 thing") && msg.contains(&d.display().to_string()),
            "{msg}"
        );
    }

    #[test]
    fn counts_read_as_words() {
        assert_eq!(count(1, "thing"), "1 thing");
        assert_eq!(count(3, "thing"), "3 things");
        assert_eq!(count(2, "directory"), "2 directories");
        assert_eq!(count(2, "process"), "2 processes");
        assert_eq!(count(0, "loop device"), "0 loop devices");
    }
}
