//! What the driver knows, persisted as `<statedir>/state.json` (written to a temporary file,
//! synced, renamed over the old one), so that a restarted driver (an upgrade) still knows its
//! volumes, snapshots, stagings and publications and can undo what the old process mounted.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::DataPath;

/// How a volume's data is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VolumeKind {
    /// A directory; mount access only.
    Dir,
    /// A sparse image file; block access, and mount access with a filesystem on it.
    Image,
}

/// Where a volume's initial data came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Snapshot(String),
    Volume(String),
}

/// Access a staging or publication was made for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    Mount {
        fs_type: String,
        mount_flags: Vec<String>,
    },
    Block,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Staging {
    pub staging_path: PathBuf,
    pub access: Access,
    /// The loop device attached over the image (image volumes only).
    pub loop_device: Option<PathBuf>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Publication {
    pub target_path: PathBuf,
    pub access: Access,
    pub readonly: bool,
    /// Whether the target (directory or file) was created by the driver, which must then
    /// remove it at NodeUnpublishVolume.
    pub created_target: bool,
    /// False under the `publish-without-mount` fault.
    pub mounted: bool,
    /// How the target was mounted (`--data-path` of the process that published it; state from
    /// before the flag existed reads as `bind`).
    #[serde(default)]
    pub data_path: DataPath,
    /// `fuse-outside`: the pid file of the `fuse-daemon` serving the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuse_daemon_pid_file: Option<PathBuf>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Volume {
    pub id: String,
    pub name: String,
    pub capacity_bytes: i64,
    pub kind: VolumeKind,
    pub source: Option<Source>,
    pub parameters: BTreeMap<String, String>,
    /// ControllerPublishVolume records: node id → readonly.
    #[serde(default)]
    pub attached: BTreeMap<String, bool>,
    #[serde(default)]
    pub staging: Option<Staging>,
    #[serde(default)]
    pub publications: BTreeMap<PathBuf, Publication>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Snapshot {
    pub id: String,
    pub name: String,
    pub source_volume_id: String,
    pub size_bytes: i64,
    pub kind: VolumeKind,
    pub created_seconds: i64,
    pub created_nanos: i32,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct State {
    #[serde(default)]
    pub volumes: BTreeMap<String, Volume>,
    #[serde(default)]
    pub snapshots: BTreeMap<String, Snapshot>,
}

/// state.json cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a state file of this driver: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The on-disk layout under `--statedir`.
#[derive(Clone, Debug)]
pub struct Layout {
    pub root: PathBuf,
    /// The state file's name under `root` (`--state-file`, default [`STATE_FILE`]).
    pub state_name: String,
}

/// The state file's name unless `--state-file` says otherwise.
pub const STATE_FILE: &str = "state.json";

impl Layout {
    pub fn state_file(&self) -> PathBuf {
        self.root.join(&self.state_name)
    }
    pub fn lock_file(&self) -> PathBuf {
        self.root.join("lock")
    }
    pub fn volume_dir(&self, id: &str) -> PathBuf {
        self.root.join("volumes").join(id)
    }
    /// `--lose-acked-writes-on-restart`: the copy of a published volume's files.
    pub fn checkpoint_dir(&self, id: &str) -> PathBuf {
        self.volume_dir(id).join("checkpoint")
    }
    /// `fuse-outside`: the pid file of the daemon serving `target` (its log beside it, `.log`).
    pub fn fuse_daemon_pid_file(&self, id: &str, target: &Path) -> PathBuf {
        self.volume_dir(id)
            .join(format!("fuse-daemon-{:016x}.pid", fnv1a(target)))
    }
    pub fn snapshot_dir(&self, id: &str) -> PathBuf {
        self.root.join("snapshots").join(id)
    }
    /// A directory volume's data, or an image volume's image file.
    pub fn volume_data(&self, id: &str, kind: VolumeKind) -> PathBuf {
        data_path(&self.volume_dir(id), kind)
    }
    pub fn snapshot_data(&self, id: &str, kind: VolumeKind) -> PathBuf {
        data_path(&self.snapshot_dir(id), kind)
    }

    pub fn load(&self) -> Result<State, StateError> {
        let path = self.state_file();
        match fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|source| StateError::Parse { path, source })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// Atomic replace: a crash leaves either the old or the new state, never half of one.
    pub fn save(&self, state: &State) -> Result<(), StateError> {
        let path = self.state_file();
        let tmp = self.root.join(format!(".{}.tmp", self.state_name));
        let bytes = serde_json::to_vec_pretty(state).expect("state serializes");
        let mut f = fs::File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(&bytes).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
        fs::rename(&tmp, &path).map_err(io_err(&path))?;
        fs::File::open(&self.root)
            .and_then(|d| d.sync_all())
            .map_err(io_err(&self.root))?;
        Ok(())
    }
}

/// A hash that stays the same across builds and releases (file names in the statedir).
fn fnv1a(path: &Path) -> u64 {
    use std::os::unix::ffi::OsStrExt;
    path.as_os_str()
        .as_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
}

fn data_path(dir: &Path, kind: VolumeKind) -> PathBuf {
    match kind {
        VolumeKind::Dir => dir.join("data"),
        VolumeKind::Image => dir.join("image"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_through_the_atomic_file() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout {
            root: dir.path().to_path_buf(),
            state_name: STATE_FILE.into(),
        };
        assert!(
            layout.load().unwrap().volumes.is_empty(),
            "a fresh statedir has no volumes"
        );
        let mut state = State::default();
        let mut publications = BTreeMap::new();
        publications.insert(
            PathBuf::from("/t"),
            Publication {
                target_path: "/t".into(),
                access: Access::Block,
                readonly: true,
                created_target: true,
                mounted: true,
                data_path: DataPath::FuseOutside,
                fuse_daemon_pid_file: Some("/p.pid".into()),
            },
        );
        state.volumes.insert(
            "v".into(),
            Volume {
                id: "v".into(),
                name: "n".into(),
                capacity_bytes: 5,
                kind: VolumeKind::Image,
                source: Some(Source::Snapshot("s".into())),
                parameters: BTreeMap::new(),
                attached: BTreeMap::new(),
                staging: Some(Staging {
                    staging_path: "/s".into(),
                    access: Access::Block,
                    loop_device: Some("/dev/loop9".into()),
                }),
                publications,
            },
        );
        layout.save(&state).unwrap();
        let back = layout.load().unwrap();
        let v = &back.volumes["v"];
        assert_eq!(
            v.staging.as_ref().unwrap().loop_device,
            Some(PathBuf::from("/dev/loop9"))
        );
        assert!(v.publications[Path::new("/t")].readonly);
        assert_eq!(
            v.publications[Path::new("/t")].data_path,
            DataPath::FuseOutside
        );
        assert!(!dir.path().join(".state.json.tmp").exists());
    }

    #[test]
    fn a_publication_recorded_before_data_paths_existed_reads_as_a_bind() {
        let p: Publication = serde_json::from_str(
            r#"{"target_path":"/t","access":"block","readonly":false,"created_target":true,"mounted":true}"#,
        )
        .unwrap();
        assert_eq!(p.data_path, DataPath::Bind);
        assert_eq!(p.fuse_daemon_pid_file, None);
        assert_eq!(fnv1a(Path::new("")), 0xcbf2_9ce4_8422_2325);
    }

    /// Issue 20's state-forgetting release: a driver reading another state file name starts
    /// empty, and the old release's state stays where it was, unread.
    #[test]
    fn a_renamed_state_file_forgets_what_the_old_name_held() {
        let dir = tempfile::tempdir().unwrap();
        let old = Layout {
            root: dir.path().to_path_buf(),
            state_name: STATE_FILE.into(),
        };
        let mut state = State::default();
        state.snapshots.insert(
            "s1".into(),
            Snapshot {
                id: "s1".into(),
                name: "s".into(),
                source_volume_id: "v".into(),
                size_bytes: 1,
                kind: VolumeKind::Dir,
                created_seconds: 0,
                created_nanos: 0,
            },
        );
        old.save(&state).unwrap();
        let new = Layout {
            root: dir.path().to_path_buf(),
            state_name: "volumes.json".into(),
        };
        assert!(new.load().unwrap().snapshots.is_empty());
        new.save(&State::default()).unwrap();
        assert_eq!(old.load().unwrap().snapshots.len(), 1);
        assert!(!dir.path().join(".volumes.json.tmp").exists());
    }
}
