//! The local platform: volumes are directories, loop-mounted images or flexVolume drivers on this
//! machine, and a "pod" is an agent process beside the mount. One node.
//!
//! - [`backend::Backend`]: how one kind of volume is created, attached, mounted and removed;
//!   implementations [`dir::DirBackend`], [`loopfs::LoopBackend`] and (issue 5) `flexvolume`.
//! - [`volume::LocalVolume`]: the generic volume over any backend: pods, recreation (the agent
//!   ends, the volume is unmounted and mounted again), the class's upgrade command, snapshots.
//! - Everything is recorded in the run [`Registry`] before it is created (see `crate::registry`).

pub mod backend;
pub mod csi;
pub mod dir;
pub mod flexvolume;
pub mod kernel_log;
pub mod loopfs;
pub mod mounts;
pub mod volume;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use backend::{Backend, BackendCtx};
use volume::LocalVolume;

use super::{AgentBinary, Leftover, Platform, PlatformError, RunFilter, Volume, VolumeRequest};
use crate::config::{ClassSpec, LocalKind};
use crate::registry::{Record, Registry, Resource};
use crate::sys;

/// The local platform of one run.
pub struct LocalPlatform {
    registry: Arc<Registry>,
    state_dir: PathBuf,
    agent: AgentBinary,
}

impl LocalPlatform {
    /// Where a volume of `class` lives and what it is called: one place, so provisioning and
    /// the flexVolume protocol checks record the same paths under the run label.
    fn backend_ctx(
        &self,
        class: &ClassSpec,
        req: &VolumeRequest,
    ) -> Result<BackendCtx, PlatformError> {
        let volume = format!("{}-{}", req.run_id, req.name);
        let work_dir = self
            .registry
            .volume_dir(&volume)
            .map_err(|e| PlatformError::Registry(e.to_string()))?;
        Ok(BackendCtx {
            registry: self.registry.clone(),
            run_id: req.run_id.clone(),
            class: class.name().to_string(),
            mount_point: work_dir.join("mnt"),
            work_dir,
            volume,
            step_timeout: class.timeouts.provision.0.max(Duration::from_secs(1)),
        })
    }

    pub fn new(registry: Arc<Registry>, state_dir: PathBuf, agent: AgentBinary) -> Self {
        Self {
            registry,
            state_dir,
            agent,
        }
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    fn backend_for(
        &self,
        class: &ClassSpec,
        req: &VolumeRequest,
    ) -> Result<Box<dyn Backend>, PlatformError> {
        match &class.local {
            Some(LocalKind::Dir(d)) => Ok(Box::new(dir::DirBackend::new(d.value.clone()))),
            Some(LocalKind::Loop(l)) => Ok(Box::new(loopfs::LoopBackend::new(l.clone()))),
            Some(LocalKind::Flexvolume(f)) => Ok(Box::new(flexvolume::backend::FlexBackend::new(
                class,
                (**f).clone(),
            ))),
            Some(LocalKind::Csi(c)) => Ok(Box::new(csi::backend::CsiBackend::new(
                class,
                (**c).clone(),
                req.size,
            ))),
            None => Err(PlatformError::Unsupported(format!(
                "class {} has no `local:` section",
                class.name()
            ))),
        }
    }
}

fn leftover(run_id: &str, r: &Record) -> Leftover {
    leftover_described(run_id, r, r.resource.describe())
}

/// `what` is [`Resource::describe`] taken before the thing was removed (a detached loop device
/// has no name any more).
fn leftover_described(run_id: &str, r: &Record, what: String) -> Leftover {
    let kind = match &r.resource {
        Resource::Dir { .. } => "dir",
        Resource::SharedDir { .. } => "shared-dir",
        Resource::Image { .. } => "image",
        Resource::Loop { .. } => "loop",
        Resource::Mount { .. } => "mount",
        Resource::Process { .. } => "process",
        Resource::Kept { .. } => "kept",
    };
    Leftover {
        run_id: run_id.into(),
        class: r.class.clone(),
        kind: kind.into(),
        what,
    }
}

impl Platform for LocalPlatform {
    fn name(&self) -> &'static str {
        "local"
    }

    fn node_count(&self) -> usize {
        1
    }

    fn raw_block(&self, class: &ClassSpec) -> bool {
        crate::checks::csi::block_mode(class)
    }

    fn usable(&self, class: &ClassSpec) -> Result<(), String> {
        match &class.local {
            None => Err("no `local:` section: the class is for another platform".into()),
            Some(LocalKind::Dir(_)) => Ok(()),
            Some(LocalKind::Loop(l)) => {
                if !sys::is_root() {
                    return Err("loop classes need root (losetup and mount)".into());
                }
                if sys::which(l.fs.mkfs()).is_none() {
                    return Err(format!("{} is not installed", l.fs.mkfs()));
                }
                if sys::which("losetup").is_none() {
                    return Err("losetup is not installed".into());
                }
                Ok(())
            }
            Some(LocalKind::Flexvolume(f)) => flexvolume::usable(class, f),
            Some(LocalKind::Csi(c)) => csi::usable(class, c),
        }
    }

    fn provision(
        &self,
        class: &ClassSpec,
        req: &VolumeRequest,
    ) -> Result<Box<dyn Volume>, PlatformError> {
        let ctx = self.backend_ctx(class, req)?;
        let mut backend = self.backend_for(class, req)?;
        let created = backend.create(&ctx);
        let mut vol = LocalVolume {
            ctx,
            backend,
            agent: self.agent.clone(),
            upgrade: class.upgrade.clone(),
            upgrade_timeout: class.timeouts.upgrade.0,
            upgrade_cwd: class
                .file
                .parent()
                .filter(|d| d.is_dir())
                .map(std::path::Path::to_path_buf),
            attached: None,
            last_upgrade: None,
            requested: req.size,
            done: false,
        };
        if let Err(e) = created {
            vol.done = true;
            let _ = vol.backend.destroy(&vol.ctx);
            return Err(e);
        }
        Ok(Box::new(vol))
    }

    fn leftovers(&self, filter: &RunFilter) -> Result<Vec<Leftover>, PlatformError> {
        let reg_err = |e: crate::registry::RegistryError| PlatformError::Registry(e.to_string());
        match filter {
            RunFilter::Run { run_id, class } => {
                let reg = if run_id == self.registry.run_id() {
                    None
                } else {
                    Some(
                        Registry::open(&self.state_dir.join("runs").join(run_id))
                            .map_err(reg_err)?,
                    )
                };
                let reg = reg.as_ref().unwrap_or(&self.registry);
                // A shared parent directory belongs to no class's volume: the end of the run removes it.
                let present = reg.present(class.as_deref(), false).map_err(reg_err)?;
                Ok(present
                    .iter()
                    .filter(|r| !matches!(r.resource, Resource::SharedDir { .. }))
                    .map(|r| leftover(run_id, r))
                    .collect())
            }
            RunFilter::Dead => {
                let mut out = Vec::new();
                for dir in Registry::dead_runs(&self.state_dir).map_err(reg_err)? {
                    let reg = Registry::open(&dir).map_err(reg_err)?;
                    out.extend(
                        reg.present(None, true)
                            .map_err(reg_err)?
                            .iter()
                            .map(|r| leftover(reg.run_id(), r)),
                    );
                }
                Ok(out)
            }
        }
    }

    fn remove_leftovers(&self, filter: &RunFilter) -> Result<Vec<Leftover>, PlatformError> {
        let reg_err = |e: crate::registry::RegistryError| PlatformError::Registry(e.to_string());
        let mut removed = Vec::new();
        let mut failures = Vec::new();
        let mut one = |reg: &Registry,
                       class: Option<&str>,
                       include_kept: bool,
                       remove_dir: bool|
         -> Result<(), PlatformError> {
            let (ok, failed) = reg.remove_present(class, include_kept).map_err(reg_err)?;
            removed.extend(
                ok.into_iter()
                    .map(|d| leftover_described(reg.run_id(), &d.record, d.what)),
            );
            failures.extend(failed.into_iter().map(|(_, e)| e));
            if remove_dir && failures.is_empty() {
                reg.remove_run_dir().map_err(reg_err)?;
            }
            Ok(())
        };
        match filter {
            RunFilter::Run { run_id, class } if run_id == self.registry.run_id() => {
                one(&self.registry, class.as_deref(), false, false)?
            }
            RunFilter::Run { run_id, class } => {
                let reg =
                    Registry::open(&self.state_dir.join("runs").join(run_id)).map_err(reg_err)?;
                one(&reg, class.as_deref(), false, false)?
            }
            RunFilter::Dead => {
                for dir in Registry::dead_runs(&self.state_dir).map_err(reg_err)? {
                    let reg = Registry::open(&dir).map_err(reg_err)?;
                    one(&reg, None, true, true)?;
                }
            }
        }
        if !failures.is_empty() {
            return Err(PlatformError::Other(format!(
                "{} could not be removed: {}",
                crate::registry::count(failures.len(), "thing"),
                failures.join("; ")
            )));
        }
        Ok(removed)
    }

    fn protocol_check(
        &self,
        class: &ClassSpec,
        req: &VolumeRequest,
        check: &str,
    ) -> Result<super::ProtocolOutcome, PlatformError> {
        let ctx = self.backend_ctx(class, req)?;
        match &class.local {
            Some(LocalKind::Flexvolume(f)) => {
                flexvolume::backend::protocol_check(class, f, &ctx, check)
            }
            Some(LocalKind::Csi(c)) => csi::conformance::protocol_check(class, c, &ctx, check),
            _ => Err(PlatformError::Unsupported(format!(
                "class {} has no driver protocol to check",
                class.name()
            ))),
        }
    }

    fn fingerprint(&self) -> serde_json::Value {
        let host = nix::sys::utsname::uname()
            .map(|u| u.nodename().to_string_lossy().into_owned())
            .unwrap_or_default();
        serde_json::json!({ "platform": "local", "node": host, "kernel": sys::kernel_release() })
    }
}
