//! How one kind of local volume is made, attached, mounted and removed.
//!
//! [`super::LocalVolume`] implements the generic parts once (the pod as an agent process,
//! recreation as unmount + mount, the upgrade command, the registry bookkeeping) on top of a
//! [`Backend`]: `dir` (a fresh subdirectory), `loop` (image + mkfs + loop mount) and
//! `flexvolume` (a driver called as kubelet calls it, in `flexvolume/`).
//!
//! Contract for implementations:
//! - record every resource in the registry (`ctx.registry.record` inside `ctx.registry.begin()`)
//!   *before* creating it, with `ctx.class` and `ctx.volume`, so a crash never leaks it;
//! - `attach_mount` and `unmount_detach` are called alternately, starting with `attach_mount`;
//!   `unmount_detach` is also called on a half-attached volume and must tolerate that;
//! - `destroy` is called once, after `unmount_detach`, and removes what `create` made.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::platform::{PlatformError, UpgradeStep};
use crate::registry::{Registry, Resource};

/// What a backend needs from the volume around it.
#[derive(Debug, Clone)]
pub struct BackendCtx {
    pub registry: Arc<Registry>,
    pub run_id: String,
    pub class: String,
    /// The volume id (unique in the run).
    pub volume: String,
    /// Harness-side directory of this volume (`<state>/runs/<run>/volumes/<volume>`), off the volume.
    pub work_dir: PathBuf,
    /// The pod's mount point (an empty directory under `work_dir`).
    pub mount_point: PathBuf,
    /// Limit for a single attach/mount/mkfs/… step.
    pub step_timeout: Duration,
}

impl BackendCtx {
    /// Records `resource` for this volume; the returned guard must live until it is created.
    pub fn record(&self, resource: Resource) -> Result<crate::registry::Op<'_>, PlatformError> {
        let op = self
            .registry
            .begin()
            .map_err(|_| PlatformError::Interrupted)?;
        self.registry
            .record(&op, resource, Some(&self.class), Some(&self.volume))
            .map_err(|e| PlatformError::Registry(e.to_string()))?;
        Ok(op)
    }
}

/// One kind of local volume.
pub trait Backend: Send {
    /// `dir`, `loop`, `flexvolume`.
    fn kind(&self) -> &'static str;
    /// Creates the storage (directory; image + mkfs; driver init). Called once.
    fn create(&mut self, ctx: &BackendCtx) -> Result<(), PlatformError>;
    /// Attaches and mounts; returns the directory the agent uses (the mount point, or for `dir`
    /// the volume's directory itself).
    fn attach_mount(&mut self, ctx: &BackendCtx) -> Result<PathBuf, PlatformError>;
    /// Unmounts and detaches (tolerates a half-attached volume).
    fn unmount_detach(&mut self, ctx: &BackendCtx) -> Result<(), PlatformError>;
    /// What the backend noticed since the last call that is no failure (see
    /// [`crate::platform::Volume::take_warnings`]).
    fn take_warnings(&mut self) -> Vec<String> {
        Vec::new()
    }
    /// Upgrade steps this backend brings itself (a flexVolume driver swap); the class's
    /// `upgrade.command` is handled by the volume, not here.
    fn upgrade_steps(&self) -> Vec<UpgradeStep> {
        Vec::new()
    }
    /// Called after the class's `upgrade.command` ran (the volume still mounted), before the
    /// volume is detached: a driver the command restarted is waited for here.
    fn after_upgrade_command(&mut self, _ctx: &BackendCtx) -> Result<(), PlatformError> {
        Ok(())
    }
    /// Whether [`Backend::upgrade`] runs with the volume still attached and mounted (a CSI node
    /// plugin is restarted under published volumes); the pod then goes on with the same mount.
    fn upgrades_in_place(&self) -> bool {
        false
    }
    /// Performs one of [`Backend::upgrade_steps`]; called while unmounted and detached (or,
    /// when [`Backend::upgrades_in_place`], while mounted).
    fn upgrade(&mut self, _ctx: &BackendCtx, step: &UpgradeStep) -> Result<(), PlatformError> {
        Err(PlatformError::Unsupported(format!(
            "{} volumes have no upgrade step {:?}",
            self.kind(),
            step.name
        )))
    }
    /// Replaces the driver under a published volume, or, unpublished, just replaces it (see
    /// [`crate::platform::Volume::upgrade_live`]).
    fn upgrade_live(
        &mut self,
        _ctx: &BackendCtx,
        step: &UpgradeStep,
    ) -> Result<crate::platform::DriverWindow, PlatformError> {
        Err(PlatformError::Unsupported(format!(
            "{} volumes: no driver to upgrade while the agent writes (step {:?}; live-upgrade runs on the local platform's csi and flexvolume kinds)",
            self.kind(),
            step.name
        )))
    }
    /// SIGKILL to the driver and the same driver started again (see
    /// [`crate::platform::Volume::kill_driver`]).
    fn kill_driver(
        &mut self,
        _ctx: &BackendCtx,
    ) -> Result<crate::platform::DriverWindow, PlatformError> {
        Err(PlatformError::Unsupported(format!(
            "{} volumes have no driver process to kill (the local platform's csi kind does; a flexvolume driver where it leaves one for the mount)",
            self.kind()
        )))
    }
    /// See [`crate::platform::Volume::mount_counts`].
    fn mount_counts(
        &self,
        _ctx: &BackendCtx,
    ) -> Result<Vec<crate::platform::MountCount>, PlatformError> {
        Err(PlatformError::Unsupported(format!(
            "{} volumes: mounts are not counted",
            self.kind()
        )))
    }
    /// What identifies the driver serving the volume now (see
    /// [`crate::platform::Volume::driver_version`]).
    fn driver_version(&self) -> Option<String> {
        None
    }
    /// The driver calls made since the last call (see
    /// [`crate::platform::Volume::take_driver_calls`]).
    fn take_driver_calls(&mut self) -> Vec<String> {
        Vec::new()
    }
    /// Grows the volume and its filesystem to `new_size`; `mounted` is the mount point when attached.
    fn expand(
        &mut self,
        _ctx: &BackendCtx,
        _mounted: Option<&Path>,
        _new_size: u64,
    ) -> Result<(), PlatformError> {
        Err(PlatformError::Unsupported(format!(
            "{} volumes cannot be expanded",
            self.kind()
        )))
    }
    /// Takes a point-in-time copy and returns a backend over the copy, for the volume `new`
    /// (already created: `create` is not called on it).
    fn snapshot(
        &mut self,
        _ctx: &BackendCtx,
        _mounted: Option<&Path>,
        _new: &BackendCtx,
    ) -> Result<Box<dyn Backend>, PlatformError> {
        Err(PlatformError::Unsupported(format!(
            "{} volumes cannot be snapshotted",
            self.kind()
        )))
    }
    /// Makes a new volume with this one's content (a clone) and returns a backend over it, for
    /// the volume `new` (already created: `create` is not called on it).
    fn clone_to(
        &mut self,
        _ctx: &BackendCtx,
        _new: &BackendCtx,
    ) -> Result<Box<dyn Backend>, PlatformError> {
        Err(PlatformError::Unsupported(format!(
            "{} volumes cannot be cloned",
            self.kind()
        )))
    }
    /// Removes what `create` made.
    fn destroy(&mut self, ctx: &BackendCtx) -> Result<(), PlatformError>;
    /// Nominal size in bytes, when the backend has one (an image); None for a plain directory.
    fn size(&self) -> Option<u64> {
        None
    }
    /// This volume's fingerprint: filesystem, mount options, size, driver version, …
    fn fingerprint(&self) -> serde_json::Value;
    /// Where the volume's data is, for `--keep-on-failure` messages.
    fn location(&self) -> String;
}
