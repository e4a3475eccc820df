//! The state all three services share, the statedir lock, startup reconciliation, the
//! `bitflip-on-start` fault, and the request checks every service uses.

use std::fs::{self, File};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::fcntl::{Flock, FlockArg};
use tonic::Status;

use crate::checkpoint;
use crate::config::Config;
use crate::csi;
use crate::csi::volume_capability::{AccessType, access_mode::Mode};
use crate::fault_actions;
use crate::faults::Fault;
use crate::fuse_path;
use crate::log;
use crate::loopdev;
use crate::state::{Access, Layout, State, StateError, VolumeKind};
use crate::store::StateStore;

/// The driver cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("--statedir {path}: {source}")]
    StateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "--statedir {0}: another pvcheck-test-csi uses it (its lock file is held); stop that one first"
    )]
    Locked(PathBuf),
    #[error("--statedir: {0}")]
    State(#[from] StateError),
}

pub struct Driver {
    pub config: Config,
    pub layout: Layout,
    pub state: StateStore,
    /// Set after the first successful NodePublishVolume (the `hang` fault's trigger).
    published_once: AtomicBool,
    /// `fuse-outside` daemons this process started (its children).
    pub fuse_daemons: fuse_path::Daemons,
    /// The statedir's exclusive lock (`None` with `--shared-statedir`).
    _lock: Option<Flock<File>>,
}

impl Driver {
    /// Lock the statedir, load the state, check the loop devices it names, and apply
    /// `bitflip-on-start`.
    pub fn open(config: Config) -> Result<Arc<Driver>, StartError> {
        let layout = Layout {
            root: config.state_dir.clone(),
            state_name: config.state_file.clone(),
        };
        let dir_err = |source| StartError::StateDir {
            path: layout.root.clone(),
            source,
        };
        for sub in ["", "volumes", "snapshots"] {
            fs::create_dir_all(layout.root.join(sub)).map_err(dir_err)?;
        }
        // Shared: other processes use the directory too, and the state file's lock orders the
        // changes (crate::store); else this process is the directory's only user.
        let (lock, file_lock) = if config.shared_statedir {
            (
                None,
                Some(crate::store::file_lock(&layout).map_err(dir_err)?),
            )
        } else {
            let lock_file = File::create(layout.lock_file()).map_err(dir_err)?;
            let lock = Flock::lock(lock_file, FlockArg::LockExclusiveNonblock)
                .map_err(|_| StartError::Locked(layout.root.clone()))?;
            (Some(lock), None)
        };
        let mut state = layout.load()?;
        reconcile_loop_devices(&layout, &mut state);
        fuse_path::report_at_start(&state);
        if config.lose_acked_writes_on_restart {
            lose_acked_writes(&layout, &state, &config.node_id);
        }
        layout.save(&state)?;
        drop(file_lock);
        let shared = config.shared_statedir.then(|| layout.clone());
        let driver = Driver {
            config,
            layout,
            state: StateStore::new(state, shared),
            published_once: AtomicBool::new(false),
            fuse_daemons: fuse_path::Daemons::default(),
            _lock: lock,
        };
        if driver.fault(Fault::BitflipOnStart) {
            driver.flip_bits_now();
        }
        Ok(Arc::new(driver))
    }

    /// Whether `fault` is injected.
    pub fn fault(&self, fault: Fault) -> bool {
        self.config.faults.has(fault)
    }

    /// Log one line for an injected fault.
    pub fn log_fault(&self, fault: Fault, what: impl std::fmt::Display) {
        log!("FAULT {fault}: {what}");
    }

    pub fn mark_published(&self) {
        self.published_once.store(true, Ordering::SeqCst);
    }

    /// The `hang` fault: every Node call after the first NodePublishVolume never returns.
    pub async fn hang_if_due(&self, call: &str) {
        if self.fault(Fault::Hang) && self.published_once.load(Ordering::SeqCst) {
            self.log_fault(Fault::Hang, format_args!("{call} will never return"));
            std::future::pending::<()>().await;
        }
    }

    /// Persist `state`; a failure is an INTERNAL error of the call that changed it.
    pub fn save(&self, state: &State) -> Result<(), Status> {
        self.layout
            .save(state)
            .map_err(|e| Status::internal(format!("saving state: {e}")))
    }

    fn flip_bits_now(&self) {
        let state = self.state.try_lock().expect("no call is served yet");
        // (With --shared-statedir the flips are of the state read at startup.)
        for v in state.volumes.values() {
            let target = match v.kind {
                VolumeKind::Dir => {
                    fault_actions::largest_file(&self.layout.volume_data(&v.id, v.kind))
                }
                // Through the loop device when attached, so its page cache cannot hide the flip.
                VolumeKind::Image => Some(
                    v.staging
                        .as_ref()
                        .and_then(|s| s.loop_device.clone())
                        .unwrap_or_else(|| self.layout.volume_data(&v.id, v.kind)),
                ),
            };
            match target {
                None => self.log_fault(
                    Fault::BitflipOnStart,
                    format_args!("volume {} has no non-empty file", v.id),
                ),
                Some(path) => match fault_actions::flip_bit_at(&path, self.config.flip_at) {
                    Ok(offset) => self.log_fault(
                        Fault::BitflipOnStart,
                        format_args!(
                            "volume {} file {} offset {offset}: flipped bit 0",
                            v.id,
                            path.display()
                        ),
                    ),
                    Err(e) => self.log_fault(
                        Fault::BitflipOnStart,
                        format_args!("volume {} file {}: {e}", v.id, path.display()),
                    ),
                },
            }
        }
    }
}

/// `--lose-acked-writes-on-restart` at startup: every volume published for mount access is
/// rewound to the checkpoint its publication made (one line per file that lost data); one
/// without a checkpoint (published by a process without the flag) gets one now.
/// Volumes attached to another node (a shared statedir) are that node's plugin's to rewind.
fn lose_acked_writes(layout: &Layout, state: &State, node_id: &str) {
    for v in state.volumes.values() {
        if !v.attached.is_empty() && !v.attached.contains_key(node_id) {
            continue;
        }
        let Some(staging) = v.staging.as_ref() else {
            continue;
        };
        let published = v
            .publications
            .values()
            .any(|p| p.mounted && matches!(p.access, Access::Mount { .. }));
        if !published || !matches!(staging.access, Access::Mount { .. }) {
            continue;
        }
        let fault = |what: std::fmt::Arguments| log!("FAULT {}: {what}", checkpoint::NAME);
        if !checkpoint::exists(layout, &v.id) {
            match checkpoint::record(layout, &v.id, &staging.staging_path) {
                Ok(n) => fault(format_args!(
                    "volume {} had no checkpoint; recorded one now ({} files)",
                    v.id,
                    n.unwrap_or(0)
                )),
                Err(e) => fault(format_args!("volume {}: recording a checkpoint: {e}", v.id)),
            }
            continue;
        }
        match checkpoint::restore(layout, &v.id, &staging.staging_path) {
            Ok(rewound) if rewound.is_empty() => fault(format_args!(
                "volume {}: nothing written since the checkpoint",
                v.id
            )),
            Ok(rewound) => {
                for r in rewound {
                    fault(format_args!(
                        "volume {} file {}: {} bytes -> {} bytes (rewound to the checkpoint of its publication)",
                        v.id,
                        r.file.display(),
                        r.bytes_before,
                        r.bytes_after
                    ));
                }
            }
            Err(e) => fault(format_args!(
                "volume {}: restoring the checkpoint: {e}",
                v.id
            )),
        }
    }
}

/// A loop device recorded by an earlier process must still be attached to the volume's image;
/// one that is not is forgotten (and said so) rather than used for another file's data.
fn reconcile_loop_devices(layout: &Layout, state: &mut State) {
    for v in state.volumes.values_mut() {
        let image = layout.volume_data(&v.id, v.kind);
        if let Some(staging) = v.staging.as_mut()
            && let Some(dev) = staging.loop_device.clone()
            && !loopdev::is_attached_to(&dev, &image)
        {
            log!(
                "volume {}: recorded loop device {} is no longer attached to {}; forgetting it",
                v.id,
                dev.display(),
                image.display()
            );
            staging.loop_device = None;
        }
    }
}

/// An empty required string field → INVALID_ARGUMENT naming it.
pub fn require(field: &str, value: &str) -> Result<(), Status> {
    if value.is_empty() {
        Err(Status::invalid_argument(format!("{field} is required")))
    } else {
        Ok(())
    }
}

/// A volume capability's access (type and mode checked).
pub fn access_of(
    cap: Option<&csi::VolumeCapability>,
    field: &str,
) -> Result<(Access, Mode), Status> {
    let cap = cap.ok_or_else(|| Status::invalid_argument(format!("{field} is required")))?;
    let mode = cap
        .access_mode
        .as_ref()
        .and_then(|m| Mode::try_from(m.mode).ok())
        .filter(|m| *m != Mode::Unknown)
        .ok_or_else(|| {
            Status::invalid_argument(format!("{field}.access_mode is missing or unknown"))
        })?;
    let access = match &cap.access_type {
        Some(AccessType::Block(_)) => Access::Block,
        Some(AccessType::Mount(m)) => Access::Mount {
            fs_type: m.fs_type.clone(),
            mount_flags: m.mount_flags.clone(),
        },
        None => {
            return Err(Status::invalid_argument(format!(
                "{field}.access_type is required"
            )));
        }
    };
    Ok((access, mode))
}

/// Whether a volume of `kind` can serve `access`.
pub fn supports(kind: VolumeKind, access: &Access) -> bool {
    !(kind == VolumeKind::Dir && *access == Access::Block)
}

pub fn is_reader_only(mode: Mode) -> bool {
    matches!(mode, Mode::SingleNodeReaderOnly | Mode::MultiNodeReaderOnly)
}

/// Same kind of access (block vs mount) — what a publication must share with its staging.
pub fn same_access_type(a: &Access, b: &Access) -> bool {
    matches!(
        (a, b),
        (Access::Block, Access::Block) | (Access::Mount { .. }, Access::Mount { .. })
    )
}

/// The topology segment of this process (`Config::topology`: the node, or the zone).
pub fn topology(segment: &(String, String)) -> csi::Topology {
    csi::Topology {
        segments: [segment.clone()].into(),
    }
}

/// Whether `t` can be satisfied here: every key is ours with our value.
pub fn topology_matches(t: &csi::Topology, segment: &(String, String)) -> bool {
    t.segments
        .iter()
        .all(|(k, v)| *k == segment.0 && *v == segment.1)
}

pub fn io_internal(what: impl std::fmt::Display, e: impl std::fmt::Display) -> Status {
    Status::internal(format!("{what}: {e}"))
}
