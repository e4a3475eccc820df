//! `local: { dir: PATH }`: every volume is a fresh subdirectory of PATH. No mount, no root.

use std::path::PathBuf;

use super::backend::{Backend, BackendCtx};
use crate::platform::PlatformError;
use crate::registry::Resource;
use crate::sys;

pub struct DirBackend {
    /// The class's directory (e.g. /dev/shm/pvcheck).
    parent: PathBuf,
    /// `<parent>/<run-id>-<volume>`.
    path: Option<PathBuf>,
}

impl DirBackend {
    pub fn new(parent: PathBuf) -> Self {
        Self { parent, path: None }
    }
}

impl Backend for DirBackend {
    fn kind(&self) -> &'static str {
        "dir"
    }

    fn create(&mut self, ctx: &BackendCtx) -> Result<(), PlatformError> {
        let path = self.parent.join(&ctx.volume);
        let _op = ctx.record(Resource::Dir { path: path.clone() })?;
        // The parent may be shared with other runs, which remove it when they find it empty:
        // recreate it and retry if it vanished between the two calls.
        for attempt in 0.. {
            if !self.parent.is_dir() {
                let _op = ctx.record(Resource::SharedDir {
                    path: self.parent.clone(),
                })?;
                std::fs::create_dir(&self.parent)
                    .or_else(|e| {
                        if e.kind() == std::io::ErrorKind::AlreadyExists {
                            Ok(())
                        } else {
                            Err(e)
                        }
                    })
                    .map_err(|e| {
                        PlatformError::io(format!("mkdir {}", self.parent.display()), e)
                    })?;
            }
            // create_dir, not create_dir_all: the directory must be fresh, never someone else's.
            match std::fs::create_dir(&path) {
                Ok(()) => break,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && attempt < 5 => continue,
                Err(e) => return Err(PlatformError::io(format!("mkdir {}", path.display()), e)),
            }
        }
        self.path = Some(path);
        Ok(())
    }

    fn attach_mount(&mut self, _ctx: &BackendCtx) -> Result<PathBuf, PlatformError> {
        self.path
            .clone()
            .ok_or_else(|| PlatformError::Other("dir volume not created".into()))
    }

    fn unmount_detach(&mut self, _ctx: &BackendCtx) -> Result<(), PlatformError> {
        Ok(())
    }

    fn destroy(&mut self, _ctx: &BackendCtx) -> Result<(), PlatformError> {
        if let Some(p) = self.path.take() {
            sys::remove_resource(&Resource::Dir { path: p }).map_err(PlatformError::Other)?;
        }
        Ok(())
    }

    fn fingerprint(&self) -> serde_json::Value {
        let fs = self
            .path
            .as_ref()
            .and_then(|p| nix::sys::statfs::statfs(p.as_path()).ok())
            .map(|s| format!("{:?}", s.filesystem_type()));
        let mount = self.path.as_ref().and_then(|p| mount_of(p));
        serde_json::json!({
            "dir": self.path,
            "filesystem_magic": fs,
            "mount_point": mount.as_ref().map(|m| m.0.clone()),
            "mount_options": mount.map(|m| m.1),
        })
    }

    fn location(&self) -> String {
        self.path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    }
}

/// The mount holding `p` and its options.
fn mount_of(p: &std::path::Path) -> Option<(PathBuf, String)> {
    let mp = sys::mount_points()
        .into_iter()
        .filter(|m| p.starts_with(m))
        .max_by_key(|m| m.as_os_str().len())?;
    let opts = sys::mount_options(&mp)?;
    Some((mp, opts))
}
