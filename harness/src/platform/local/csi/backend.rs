//! `local: { csi: … }` volumes: the local [`Backend`] over a CSI driver.
//!
//! With `command`, each class volume gets a driver of its own (started at create, stopped at
//! destroy) with its own socket, state directory and log, so an upgrade in one trial never
//! touches another trial's volume; volumes restored from it or cloned share it. With
//! `endpoint`, every volume talks to the running driver. Each volume gets a kubelet root of
//! its own (`<volume dir>/kubelet/`: staging under `plugins/kubernetes.io/csi/…`, targets
//! under `pods/<uid>/…`). Attaching is kubelet's and the attacher's set-up, detaching the
//! tear-down; an upgrade step restarts the node plugin on the same socket *while the volume
//! stays published*, and the next tear-down is the new version's.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use super::client::Masker;
use super::co::{Caps, Co, CsiVolume, Paths, Published};
use super::driver::{Driver, Placement};
use super::error::CsiError;
use super::proto;
use crate::config::ClassSpec;
use crate::config::csi::{AccessType, CsiDriverSource, CsiSpec};
use crate::platform::local::backend::{Backend, BackendCtx};
use crate::platform::{DriverWindow, MountCount, PlatformError, UpgradeStep};
use crate::registry::Resource;

/// Name of the step that starts `upgrade.csi.command`.
pub const UPGRADE_STEP: &str = "upgrade";
/// Name of the step that starts the class's command again.
pub const ROLLBACK_STEP: &str = "rollback";

/// The longest unix socket path the kernel takes (sun_path is 108 bytes with the NUL).
const SOCKET_MAX: usize = 107;

static SOCKETS: AtomicU32 = AtomicU32::new(0);

/// How a class names itself in messages: `class NAME (FILE:LINE)`.
pub fn origin(class: &ClassSpec) -> String {
    format!(
        "class {} ({}:{})",
        class.name(),
        class.file.display(),
        class.line()
    )
}

/// The masker of a class: every secret value.
pub fn masker(spec: &CsiSpec) -> Masker {
    Masker::new(spec.secrets.values())
}

/// A CSI error as the platform reports it: one first line naming the class. A call with no
/// answer within `call_timeout` is a `timeout`, and noted: the class's driver stopped answering
/// (see `crate::platform::unanswered`).
pub fn platform_error(class: &str, origin: &str, e: CsiError) -> PlatformError {
    match e {
        CsiError::Driver(m) if m.starts_with("class ") => PlatformError::Other(m),
        e if e.is_timeout() => {
            let text = e.to_string();
            crate::platform::unanswered::note(class, &text);
            PlatformError::DriverTimeout(format!("{origin}: {text}"))
        }
        e => PlatformError::Other(format!("{origin}: {e}")),
    }
}

/// Starts (or connects to) the class's driver for the volume of `ctx`.
pub fn driver_for(
    class: &ClassSpec,
    spec: &CsiSpec,
    ctx: &BackendCtx,
) -> Result<(Driver, Option<PathBuf>), PlatformError> {
    let origin = origin(class);
    let err = |e| platform_error(class.name(), &origin, e);
    match spec.source() {
        Some(CsiDriverSource::Endpoint(socket)) => Ok((
            Driver::external(origin.clone(), socket, spec.call_timeout(), masker(spec))
                .map_err(err)?,
            None,
        )),
        Some(CsiDriverSource::Command(argv)) => {
            let state_dir = ctx.work_dir.join("driver-state");
            {
                let _op = ctx.record(Resource::Dir {
                    path: state_dir.clone(),
                })?;
                std::fs::create_dir_all(&state_dir)
                    .map_err(|e| PlatformError::io(format!("mkdir {}", state_dir.display()), e))?;
            }
            let sockets = ctx.registry.dir().join("csi");
            std::fs::create_dir_all(&sockets)
                .map_err(|e| PlatformError::io(format!("mkdir {}", sockets.display()), e))?;
            let socket = sockets.join(format!("{}.sock", SOCKETS.fetch_add(1, Ordering::Relaxed)));
            if socket.as_os_str().len() > SOCKET_MAX {
                return Err(PlatformError::Other(format!(
                    "{origin}: the driver's socket path {} is longer than {SOCKET_MAX} bytes: use a shorter --state directory",
                    socket.display()
                )));
            }
            let placement = Placement {
                socket,
                node_id: node_id(),
                state_dir: state_dir.clone(),
                log_dir: ctx.work_dir.clone(),
            };
            let d = Driver::start(
                origin.clone(),
                argv,
                placement,
                ctx,
                spec.call_timeout(),
                spec.start_timeout(),
                masker(spec),
            )
            .map_err(err);
            match d {
                Ok(d) => Ok((d, Some(state_dir))),
                Err(e) => {
                    let _ = crate::sys::remove_resource(&Resource::Dir { path: state_dir });
                    Err(e)
                }
            }
        }
        None => Err(PlatformError::Other(format!(
            "{origin}: local.csi was not resolved by the loader"
        ))),
    }
}

/// The node id a started driver gets: this machine's name.
pub fn node_id() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.nodename().to_string_lossy().into_owned())
        .unwrap_or_else(|_| "localhost".into())
}

/// What the class's volumes share: the driver and, when pvcheck made it, its state directory.
struct Shared {
    driver: Driver,
    state_dir: Option<PathBuf>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.driver.stop();
        if let Some(d) = self.state_dir.take() {
            let _ = crate::sys::remove_resource(&Resource::Dir { path: d });
        }
    }
}

pub struct CsiBackend {
    origin: String,
    spec: CsiSpec,
    /// [0] the class's command, [1] `upgrade.csi.command`.
    commands: Vec<Vec<String>>,
    rollback: bool,
    current: usize,
    requested: u64,
    shared: Option<Arc<Shared>>,
    caps: Option<Caps>,
    volume: Option<CsiVolume>,
    /// The snapshot this volume was restored from: deleted with it.
    snapshot_id: Option<String>,
    published: Option<Published>,
    pods: u32,
    class_for_driver: ClassSpec,
    /// The driver's exchanges already handed out by `take_driver_calls`.
    calls_seen: u64,
}

impl CsiBackend {
    pub fn new(class: &ClassSpec, spec: CsiSpec, requested: u64) -> Self {
        let mut commands = Vec::new();
        if let Some(CsiDriverSource::Command(a)) = spec.source() {
            commands.push(a.clone());
        }
        let mut rollback = false;
        if let Some(u) = class.upgrade.as_ref()
            && let Some(c) = &u.csi
        {
            commands.push(c.resolved.clone());
            rollback = u.rollback;
        }
        CsiBackend {
            origin: origin(class),
            spec,
            commands,
            rollback,
            current: 0,
            // The filesystem and the agent's own files need room beyond the dataset.
            requested: round_mib(requested + requested / 8 + (32 << 20)),
            shared: None,
            caps: None,
            volume: None,
            snapshot_id: None,
            published: None,
            pods: 0,
            class_for_driver: class.clone(),
            calls_seen: 0,
        }
    }

    fn err(&self, e: CsiError) -> PlatformError {
        platform_error(self.class_for_driver.name(), &self.origin, e)
    }

    fn driver(&self) -> Result<&Driver, PlatformError> {
        self.shared
            .as_ref()
            .map(|s| &s.driver)
            .ok_or_else(|| PlatformError::Other(format!("{}: no CSI driver", self.origin)))
    }

    fn co(&self) -> Result<Co<'_>, PlatformError> {
        let d = self.driver()?;
        let caps = self.caps.clone().ok_or_else(|| {
            PlatformError::Other(format!("{}: driver not discovered", self.origin))
        })?;
        Ok(Co {
            client: &d.client,
            spec: &self.spec,
            caps,
        })
    }

    /// The driver, when pvcheck started it (a driver at an `endpoint` is someone else's).
    fn started_driver(&self, what: &str) -> Result<&Driver, PlatformError> {
        let d = self.driver()?;
        if !d.is_started() {
            return Err(PlatformError::Unsupported(format!(
                "{}: the driver at `endpoint` is not pvcheck's to {what} (give `command`)",
                self.origin
            )));
        }
        Ok(d)
    }

    fn volume(&self) -> Result<&CsiVolume, PlatformError> {
        self.volume
            .as_ref()
            .ok_or_else(|| PlatformError::Other(format!("{}: CSI volume not created", self.origin)))
    }
}

fn round_mib(n: u64) -> u64 {
    n.div_ceil(1 << 20) << 20
}

/// The loop device image behind a published block target, if it is one (to record it).
fn loop_backing(target: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(target).ok()?;
    let rdev = md.rdev();
    let (major, minor) = (nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev));
    let s = std::fs::read_to_string(format!("/sys/dev/block/{major}:{minor}/loop/backing_file"))
        .ok()?;
    Some(PathBuf::from(s.trim()))
}

impl Backend for CsiBackend {
    fn kind(&self) -> &'static str {
        "csi"
    }

    fn create(&mut self, ctx: &BackendCtx) -> Result<(), PlatformError> {
        let (driver, state_dir) = driver_for(&self.class_for_driver, &self.spec, ctx)?;
        self.shared = Some(Arc::new(Shared { driver, state_dir }));
        let d = self.driver()?;
        let co = Co::discover(&d.client, &self.spec).map_err(|e| self.err(e))?;
        if !co.caps.controller_service || !co.caps.create_delete_volume {
            return Err(PlatformError::Other(format!(
                "{}: plugin {} has no CREATE_DELETE_VOLUME controller capability: pvcheck cannot provision its volumes",
                self.origin, co.caps.name
            )));
        }
        let req = co.create_request(&ctx.volume, self.requested, None);
        let v = co.create_volume(req).map_err(|e| self.err(e))?;
        self.caps = Some(co.caps);
        self.volume = Some(v);
        Ok(())
    }

    fn attach_mount(&mut self, ctx: &BackendCtx) -> Result<PathBuf, PlatformError> {
        self.pods += 1;
        let uid = format!("pod{}", self.pods);
        let vol = self.volume()?.clone();
        let paths = Paths::new(
            &ctx.work_dir.join("kubelet"),
            &ctx.volume,
            &uid,
            self.spec.access_type,
        );
        // Recorded before they exist; the guards are held until set-up ends.
        let _staging = ctx.record(Resource::Mount {
            path: paths.staging.clone(),
        })?;
        let _target = ctx.record(Resource::Mount {
            path: paths.target.clone(),
        })?;
        let co = self.co()?;
        let p = co.publish(&vol, &paths).map_err(|e| self.err(e))?;
        if self.spec.access_type == AccessType::Block
            && let Some(image) = loop_backing(&p.target)
        {
            let _ = ctx.record(Resource::Loop { image });
        }
        let target = p.target.clone();
        self.published = Some(p);
        Ok(target)
    }

    fn unmount_detach(&mut self, _ctx: &BackendCtx) -> Result<(), PlatformError> {
        let Some(p) = self.published.take() else {
            return Ok(());
        };
        let co = self.co()?;
        co.unpublish(&p).map_err(|e| self.err(e))
    }

    fn upgrade_steps(&self) -> Vec<UpgradeStep> {
        let mut steps = Vec::new();
        if self.commands.len() > 1 {
            steps.push(UpgradeStep {
                name: UPGRADE_STEP.into(),
            });
            if self.rollback {
                steps.push(UpgradeStep {
                    name: ROLLBACK_STEP.into(),
                });
            }
        }
        steps
    }

    fn upgrades_in_place(&self) -> bool {
        true
    }

    fn after_upgrade_command(&mut self, _ctx: &BackendCtx) -> Result<(), PlatformError> {
        let d = self.driver()?;
        d.wait_until_ready().map_err(|e| self.err(e))?;
        // The command may have replaced the driver: kubelet discovers it again.
        let co = Co::discover(&d.client, &self.spec).map_err(|e| self.err(e))?;
        self.caps = Some(co.caps);
        Ok(())
    }

    fn driver_version(&self) -> Option<String> {
        self.caps.as_ref().map(|c| c.vendor_version.clone())
    }

    fn take_driver_calls(&mut self) -> Vec<String> {
        let Ok(d) = self.driver() else {
            return Vec::new();
        };
        let (exchanges, seen) = d.client.exchanges_since(self.calls_seen);
        self.calls_seen = seen;
        exchanges
            .iter()
            .map(|x| {
                let outcome = x.outcome.lines().next().unwrap_or("");
                format!("{} {outcome}", x.call)
            })
            .collect()
    }

    fn upgrade(&mut self, _ctx: &BackendCtx, step: &UpgradeStep) -> Result<(), PlatformError> {
        let to = match step.name.as_str() {
            UPGRADE_STEP if self.commands.len() > 1 => 1,
            ROLLBACK_STEP if self.commands.len() > 1 => 0,
            other => {
                return Err(PlatformError::Unsupported(format!(
                    "{}: no CSI upgrade step {other:?}",
                    self.origin
                )));
            }
        };
        let argv = self.commands[to].clone();
        self.driver()?.restart(&argv).map_err(|e| self.err(e))?;
        self.current = to;
        // kubelet discovers a re-registered plugin again.
        let d = self.driver()?;
        let co = Co::discover(&d.client, &self.spec).map_err(|e| self.err(e))?;
        self.caps = Some(co.caps);
        Ok(())
    }

    fn upgrade_live(
        &mut self,
        _ctx: &BackendCtx,
        step: &UpgradeStep,
    ) -> Result<DriverWindow, PlatformError> {
        let to = match step.name.as_str() {
            UPGRADE_STEP if self.commands.len() > 1 => 1,
            ROLLBACK_STEP if self.commands.len() > 1 => 0,
            other => {
                return Err(PlatformError::Unsupported(format!(
                    "{}: no CSI upgrade step {other:?}",
                    self.origin
                )));
            }
        };
        self.started_driver("upgrade it while the agent writes")?;
        let argv = self.commands[to].clone();
        let began = crate::sys::unix_ms();
        let stopped = self
            .driver()?
            .restart_timed(&argv)
            .map_err(|e| self.err(e))?;
        let answered = crate::sys::unix_ms();
        self.current = to;
        let d = self.driver()?;
        let co = Co::discover(&d.client, &self.spec).map_err(|e| self.err(e))?;
        self.caps = Some(co.caps);
        Ok(DriverWindow {
            what: step.name.clone(),
            began_ms: began,
            old_stopped_ms: Some(stopped),
            new_answered_ms: answered,
            node: None,
            report: serde_json::json!({
                "driver_swap": "csi",
                "in_place": self.published.is_some(),
                "command": self.driver()?.describe(),
            }),
        })
    }

    fn kill_driver(&mut self, _ctx: &BackendCtx) -> Result<DriverWindow, PlatformError> {
        self.started_driver("kill it")?;
        let argv = self.commands[self.current].clone();
        let began = crate::sys::unix_ms();
        let stopped = self
            .driver()?
            .kill_and_restart(&argv)
            .map_err(|e| self.err(e))?;
        let answered = crate::sys::unix_ms();
        let d = self.driver()?;
        let co = Co::discover(&d.client, &self.spec).map_err(|e| self.err(e))?;
        self.caps = Some(co.caps);
        Ok(DriverWindow {
            what: "SIGKILL".into(),
            began_ms: began,
            old_stopped_ms: Some(stopped),
            new_answered_ms: answered,
            node: None,
            report: serde_json::json!({
                "signal": "SIGKILL",
                "restarted": self.driver()?.describe(),
            }),
        })
    }

    fn mount_counts(&self, ctx: &BackendCtx) -> Result<Vec<MountCount>, PlatformError> {
        let mut places: Vec<(&str, &Path)> = Vec::new();
        if let Some(p) = &self.published {
            if let Some(st) = &p.staging {
                places.push(("staging", st));
            }
            places.push(("published", &p.target));
        }
        crate::platform::local::mounts::counts_under(&places, &ctx.work_dir.join("kubelet"))
            .map_err(|e| PlatformError::io("reading /proc/self/mountinfo", e))
    }

    fn expand(
        &mut self,
        _ctx: &BackendCtx,
        _mounted: Option<&Path>,
        new_size: u64,
    ) -> Result<(), PlatformError> {
        let id = self.volume()?.id.clone();
        let co = self.co()?;
        if self.published.is_some() && !co.caps.online_expansion {
            return Err(PlatformError::Other(format!(
                "{}: plugin {} does not announce ONLINE volume expansion, and the volume is published",
                self.origin, co.caps.name
            )));
        }
        let cap = co
            .expand(&id, new_size, self.published.as_ref())
            .map_err(|e| self.err(e))?;
        if let Some(v) = self.volume.as_mut() {
            v.capacity = cap;
        }
        Ok(())
    }

    fn snapshot(
        &mut self,
        _ctx: &BackendCtx,
        _mounted: Option<&Path>,
        new: &BackendCtx,
    ) -> Result<Box<dyn Backend>, PlatformError> {
        let vol = self.volume()?.clone();
        let co = self.co()?;
        if !co.caps.snapshots {
            return Err(PlatformError::Unsupported(format!(
                "{}: plugin {} has no CREATE_DELETE_SNAPSHOT capability",
                self.origin, co.caps.name
            )));
        }
        let snap = co
            .create_snapshot(&vol.id, &format!("{}-snapshot", new.volume))
            .map_err(|e| self.err(e))?;
        let source = proto::VolumeContentSource {
            r#type: Some(proto::volume_content_source::Type::Snapshot(
                proto::volume_content_source::SnapshotSource {
                    snapshot_id: snap.clone(),
                },
            )),
        };
        let req = co.create_request(&new.volume, vol.capacity.max(self.requested), Some(source));
        let restored = match co.create_volume(req) {
            Ok(v) => v,
            Err(e) => {
                let _ = co.delete_snapshot(&snap);
                return Err(self.err(e));
            }
        };
        Ok(Box::new(CsiBackend {
            origin: self.origin.clone(),
            spec: self.spec.clone(),
            commands: self.commands.clone(),
            rollback: self.rollback,
            current: self.current,
            requested: self.requested,
            shared: self.shared.clone(),
            caps: self.caps.clone(),
            volume: Some(restored),
            snapshot_id: Some(snap),
            published: None,
            pods: 0,
            class_for_driver: self.class_for_driver.clone(),
            calls_seen: 0,
        }))
    }

    fn clone_to(
        &mut self,
        _ctx: &BackendCtx,
        new: &BackendCtx,
    ) -> Result<Box<dyn Backend>, PlatformError> {
        let vol = self.volume()?.clone();
        let co = self.co()?;
        if !co.caps.clone {
            return Err(PlatformError::Unsupported(format!(
                "{}: plugin {} has no CLONE_VOLUME capability",
                self.origin, co.caps.name
            )));
        }
        let source = proto::VolumeContentSource {
            r#type: Some(proto::volume_content_source::Type::Volume(
                proto::volume_content_source::VolumeSource {
                    volume_id: vol.id.clone(),
                },
            )),
        };
        let req = co.create_request(&new.volume, vol.capacity.max(self.requested), Some(source));
        let cloned = co.create_volume(req).map_err(|e| self.err(e))?;
        Ok(Box::new(CsiBackend {
            origin: self.origin.clone(),
            spec: self.spec.clone(),
            commands: self.commands.clone(),
            rollback: self.rollback,
            current: self.current,
            requested: self.requested,
            shared: self.shared.clone(),
            caps: self.caps.clone(),
            volume: Some(cloned),
            snapshot_id: None,
            published: None,
            pods: 0,
            class_for_driver: self.class_for_driver.clone(),
            calls_seen: 0,
        }))
    }

    fn destroy(&mut self, ctx: &BackendCtx) -> Result<(), PlatformError> {
        let mut first: Option<PlatformError> = None;
        if let Err(e) = self.unmount_detach(ctx) {
            first.get_or_insert(e);
        }
        if self.shared.is_some() && self.caps.is_some() {
            let volume = self.volume.take();
            let snapshot = self.snapshot_id.take();
            let co = self.co()?;
            if let Some(v) = volume
                && let Err(e) = co.delete_volume(&v.id)
            {
                first.get_or_insert(self.err(e));
            }
            if let Some(s) = snapshot
                && let Err(e) = co.delete_snapshot(&s)
            {
                first.get_or_insert(self.err(e));
            }
        }
        // The last volume using the driver stops it and removes its state directory.
        self.shared = None;
        match first {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn size(&self) -> Option<u64> {
        // A mount volume of a plugin that gives no capacity is a directory: statfs tells.
        self.volume
            .as_ref()
            .map(|v| v.capacity)
            .filter(|c| *c > 0)
            .filter(|_| self.spec.access_type == AccessType::Block)
    }

    fn fingerprint(&self) -> serde_json::Value {
        serde_json::json!({
            "csi": {
                "plugin": self.caps.as_ref().map(|c| &c.name),
                "vendor_version": self.caps.as_ref().map(|c| &c.vendor_version),
                "capabilities": self.caps,
                "command": self.commands.get(self.current),
                "installed": if self.current == 0 { "driver" } else { "upgrade" },
                "access_type": self.spec.access_type,
                "fs_type": self.spec.fs_type,
                "parameters": self.spec.parameters,
                "volume_id": self.volume.as_ref().map(|v| &v.id),
                "capacity_bytes": self.volume.as_ref().map(|v| v.capacity),
                "requested_bytes": self.requested,
            }
        })
    }

    fn location(&self) -> String {
        let mut s = format!(
            "CSI volume {} ",
            self.volume.as_ref().map(|v| v.id.as_str()).unwrap_or("-")
        );
        if let Ok(d) = self.driver() {
            s.push_str(&format!("of {}", d.describe()));
        }
        if let Some(p) = &self.published {
            s.push_str(&format!(", published at {}", p.target.display()));
            if let Some(st) = &p.staging {
                s.push_str(&format!(", staged at {}", st.display()));
            }
        }
        s
    }
}

impl Drop for CsiBackend {
    fn drop(&mut self) {
        // A kept volume's driver stays down with it: `pvcheck cleanup` removes what is left.
        self.shared = None;
    }
}
