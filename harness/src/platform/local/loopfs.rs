//! `local: { loop: { fs, size, mkfs_options, mount_options } }`: a fresh sparse image per volume,
//! formatted with mkfs and loop-mounted. Recreating the pod is a real unmount, `losetup -d`,
//! `losetup` and mount; expansion grows the image, `losetup -c` and the filesystem online;
//! a snapshot is a copy of the image taken with the filesystem frozen.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::backend::{Backend, BackendCtx};
use crate::config::{FsType, LoopSpec};
use crate::platform::PlatformError;
use crate::registry::Resource;
use crate::sys;

pub struct LoopBackend {
    spec: LoopSpec,
    image: Option<PathBuf>,
    size: u64,
    device: Option<PathBuf>,
    mounted: Option<PathBuf>,
    /// Restored from a snapshot: XFS refuses two mounts with one UUID unless told `nouuid`.
    from_snapshot: bool,
    /// Mount options as the kernel reports them at the last mount.
    effective_options: Option<String>,
    mkfs_version: Option<String>,
    /// How the last expansion grew the filesystem (online, or offline and why).
    expansion: Option<String>,
    /// Whether the loop device reads and writes the image with direct I/O (`losetup
    /// --direct-io=on`, as the kernel reports it after attaching), so O_DIRECT on the volume
    /// does not end in the host's page cache. None until attached.
    direct_io: Option<bool>,
    /// What was done differently from what was asked, for `Volume::take_warnings`.
    warnings: Vec<String>,
}

impl LoopBackend {
    pub fn new(spec: LoopSpec) -> Self {
        let size = spec.size.bytes();
        Self {
            spec,
            image: None,
            size,
            device: None,
            mounted: None,
            from_snapshot: false,
            effective_options: None,
            mkfs_version: None,
            expansion: None,
            direct_io: None,
            warnings: Vec::new(),
        }
    }

    fn image(&self) -> Result<&Path, PlatformError> {
        self.image
            .as_deref()
            .ok_or_else(|| PlatformError::Other("loop volume not created".into()))
    }

    fn image_path(&self, ctx: &BackendCtx) -> PathBuf {
        match &self.spec.image_dir {
            Some(d) => d.join(format!("{}.img", ctx.volume)),
            None => ctx.work_dir.join("image"),
        }
    }

    fn mount_options(&self) -> Vec<String> {
        let mut o = self.spec.mount_options.clone();
        if self.from_snapshot && self.spec.fs == FsType::Xfs && !o.iter().any(|x| x == "nouuid") {
            o.push("nouuid".into());
        }
        o
    }
}

/// `mkfs.ext4 -V` and friends print their version on stdout or stderr.
fn mkfs_version(fs: FsType) -> Option<String> {
    let flag = if fs == FsType::Btrfs {
        "--version"
    } else {
        "-V"
    };
    let out = sys::run(
        Command::new(fs.mkfs()).arg(flag),
        std::time::Duration::from_secs(10),
    )
    .ok()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    text.lines()
        .find(|l| !l.trim().is_empty())
        .map(|l| l.trim().to_string())
}

impl Backend for LoopBackend {
    fn kind(&self) -> &'static str {
        "loop"
    }

    fn create(&mut self, ctx: &BackendCtx) -> Result<(), PlatformError> {
        let image = self.image_path(ctx);
        {
            let _op = ctx.record(Resource::Image {
                path: image.clone(),
            })?;
            let f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&image)
                .map_err(|e| PlatformError::io(format!("create image {}", image.display()), e))?;
            f.set_len(self.size)
                .map_err(|e| PlatformError::io(format!("size image {}", image.display()), e))?;
        }
        self.image = Some(image.clone());
        let mut c = Command::new(self.spec.fs.mkfs());
        match self.spec.fs {
            FsType::Ext4 => c.args(["-F", "-q"]),
            FsType::Xfs => c.args(["-f", "-q"]),
            FsType::Btrfs => c.args(["-f", "-q"]),
        };
        c.args(&self.spec.mkfs_options).arg(&image);
        sys::run_ok(&mut c, ctx.step_timeout)?;
        self.mkfs_version = mkfs_version(self.spec.fs);
        Ok(())
    }

    fn attach_mount(&mut self, ctx: &BackendCtx) -> Result<PathBuf, PlatformError> {
        let image = self.image()?.to_path_buf();
        let dev = {
            let _op = ctx.record(Resource::Loop {
                image: image.clone(),
            })?;
            // Direct I/O where the backing filesystem allows it, so O_DIRECT on the volume
            // does not end in the host's page cache. Where it does not (ramfs, some network
            // filesystems) losetup refuses the device altogether: attach it buffered then;
            // sysfs says which it got, and the fingerprint and speed trials say so.
            let attach = |direct: bool| {
                let mut c = Command::new("losetup");
                c.args(["--find", "--show"]);
                if direct {
                    c.arg("--direct-io=on");
                }
                sys::run_ok(c.arg(&image), ctx.step_timeout)
            };
            let out = match attach(true) {
                Ok(o) => o,
                Err(PlatformError::Command { .. }) if sys::loop_devices_of(&image).is_empty() => {
                    attach(false)?
                }
                Err(e) => return Err(e),
            };
            PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
        };
        self.device = Some(dev.clone());
        self.direct_io = loop_direct_io(&dev);
        let mp = ctx.mount_point.clone();
        {
            let _op = ctx.record(Resource::Mount { path: mp.clone() })?;
            std::fs::create_dir_all(&mp)
                .map_err(|e| PlatformError::io(format!("mkdir {}", mp.display()), e))?;
            let mut c = Command::new("mount");
            c.args(["-t", self.spec.fs.as_str()]);
            let opts = self.mount_options();
            if !opts.is_empty() {
                c.arg("-o").arg(opts.join(","));
            }
            c.arg(&dev).arg(&mp);
            let since = super::kernel_log::Mark::now();
            let name = dev.file_name().map(|n| n.to_string_lossy().into_owned());
            sys::run_ok(&mut c, ctx.step_timeout).map_err(|e| {
                super::kernel_log::explain(
                    e,
                    &since,
                    &[name.as_deref().unwrap_or(""), self.spec.fs.as_str()],
                )
            })?;
        }
        self.mounted = Some(mp.clone());
        self.effective_options = sys::mount_options(&mp);
        Ok(mp)
    }

    fn unmount_detach(&mut self, ctx: &BackendCtx) -> Result<(), PlatformError> {
        if let Some(mp) = self.mounted.take() {
            sys::umount(&mp)?;
        } else if sys::is_mounted(&ctx.mount_point) {
            sys::umount(&ctx.mount_point)?; // half-attached: mount ran but we did not see it succeed
        }
        self.device = None;
        if let Some(image) = &self.image {
            sys::remove_resource(&Resource::Loop {
                image: image.clone(),
            })
            .map_err(PlatformError::Other)?;
        }
        Ok(())
    }

    fn expand(
        &mut self,
        ctx: &BackendCtx,
        mounted: Option<&Path>,
        new_size: u64,
    ) -> Result<(), PlatformError> {
        if new_size <= self.size {
            return Err(PlatformError::Unsupported(format!(
                "cannot shrink from {} to {} bytes",
                self.size, new_size
            )));
        }
        let image = self.image()?.to_path_buf();
        let Some(dev) = self.device.clone() else {
            return Err(PlatformError::Unsupported(
                "loop volumes are expanded online: start a pod first".into(),
            ));
        };
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&image)
            .map_err(|e| PlatformError::io(image.display().to_string(), e))?;
        f.set_len(new_size)
            .map_err(|e| PlatformError::io(format!("grow {}", image.display()), e))?;
        self.size = new_size;
        sys::run_ok(
            Command::new("losetup").arg("-c").arg(&dev),
            ctx.step_timeout,
        )?;
        match self.spec.fs {
            FsType::Ext4 => {
                match sys::run_ok(Command::new("resize2fs").arg(&dev), ctx.step_timeout) {
                    Ok(o) => {
                        self.expansion = Some("online".into());
                        o
                    }
                    // Online resize needs CAP_SYS_RESOURCE (containers often drop it): grow offline,
                    // as a node without online expansion would (unmount, fsck, resize, mount).
                    Err(online) if mounted.is_some() => {
                        let mp = mounted.unwrap_or(&ctx.mount_point);
                        sys::umount(mp)?;
                        let offline = (|| {
                            // e2fsck -p exits 1 when it fixed something: acceptable, 4+ is not.
                            let fsck = sys::run(
                                Command::new("e2fsck").args(["-f", "-p"]).arg(&dev),
                                ctx.step_timeout,
                            )?;
                            if fsck.status.code().is_none_or(|c| c >= 4) {
                                sys::check_output("e2fsck -f -p", &fsck)?;
                            }
                            sys::run_ok(Command::new("resize2fs").arg(&dev), ctx.step_timeout)
                        })();
                        let mut c = Command::new("mount");
                        c.args(["-t", "ext4"]);
                        let opts = self.mount_options();
                        if !opts.is_empty() {
                            c.arg("-o").arg(opts.join(","));
                        }
                        c.arg(&dev).arg(mp);
                        let remounted = sys::run_ok(&mut c, ctx.step_timeout);
                        if remounted.is_err() {
                            self.mounted = None;
                        }
                        let o = offline?;
                        remounted?;
                        self.expansion = Some(format!("offline (online resize refused: {online})"));
                        self.warnings.push(format!(
                            "grown offline (unmount, e2fsck, resize2fs, mount), not online: the online resize was refused ({})",
                            first_line(&online.to_string())
                        ));
                        o
                    }
                    Err(e) => return Err(e),
                }
            }
            FsType::Xfs => {
                let mp = mounted.ok_or_else(|| {
                    PlatformError::Unsupported("xfs grows only while mounted".into())
                })?;
                sys::run_ok(Command::new("xfs_growfs").arg(mp), ctx.step_timeout)?
            }
            FsType::Btrfs => {
                let mp = mounted.ok_or_else(|| {
                    PlatformError::Unsupported("btrfs grows only while mounted".into())
                })?;
                sys::run_ok(
                    Command::new("btrfs")
                        .args(["filesystem", "resize", "max"])
                        .arg(mp),
                    ctx.step_timeout,
                )?
            }
        };
        Ok(())
    }

    fn snapshot(
        &mut self,
        ctx: &BackendCtx,
        mounted: Option<&Path>,
        new: &BackendCtx,
    ) -> Result<Box<dyn Backend>, PlatformError> {
        let image = self.image()?.to_path_buf();
        let mut copy = LoopBackend::new(self.spec.clone());
        copy.size = self.size;
        copy.from_snapshot = true;
        copy.mkfs_version = self.mkfs_version.clone();
        let target = copy.image_path(new);
        // Freeze so the copy is one point in time with everything acknowledged in it.
        if let Some(mp) = mounted {
            sys::run_ok(Command::new("fsfreeze").arg("-f").arg(mp), ctx.step_timeout)?;
        }
        let copied = (|| {
            let _op = new.record(Resource::Image {
                path: target.clone(),
            })?;
            sys::run_ok(
                Command::new("cp")
                    .arg("--sparse=always")
                    .arg(&image)
                    .arg(&target),
                ctx.step_timeout,
            )
        })();
        if let Some(mp) = mounted {
            let thawed = sys::run_ok(Command::new("fsfreeze").arg("-u").arg(mp), ctx.step_timeout);
            thawed?;
        }
        copied?;
        copy.image = Some(target);
        Ok(Box::new(copy))
    }

    fn destroy(&mut self, ctx: &BackendCtx) -> Result<(), PlatformError> {
        self.unmount_detach(ctx)?;
        if let Some(image) = self.image.take() {
            sys::remove_resource(&Resource::Image { path: image }).map_err(PlatformError::Other)?;
        }
        let _ = std::fs::remove_dir(&ctx.mount_point);
        Ok(())
    }

    fn size(&self) -> Option<u64> {
        Some(self.size)
    }

    fn fingerprint(&self) -> serde_json::Value {
        serde_json::json!({
            "fs": self.spec.fs.as_str(),
            "size_bytes": self.size,
            "mkfs_options": self.spec.mkfs_options,
            "mount_options": self.mount_options(),
            "effective_mount_options": self.effective_options,
            "mkfs_version": self.mkfs_version,
            "image": self.image,
            "from_snapshot": self.from_snapshot,
            "expansion": self.expansion,
            "direct_io": self.direct_io,
        })
    }

    fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }

    fn location(&self) -> String {
        let mut s = format!(
            "image {}",
            self.image
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        );
        if let Some(d) = &self.device {
            s.push_str(&format!(" on {}", d.display()));
        }
        s
    }
}

/// `/sys/block/loopN/loop/dio`: whether the loop device uses direct I/O on its backing file.
fn loop_direct_io(dev: &Path) -> Option<bool> {
    let name = dev.file_name()?.to_string_lossy().into_owned();
    let v = std::fs::read_to_string(format!("/sys/block/{name}/loop/dio")).ok()?;
    Some(v.trim() == "1")
}

/// The first line of an error, without the command's stderr that follows.
fn first_line(s: &str) -> String {
    let l = s.lines().next().unwrap_or("").trim();
    if l.chars().count() > 160 {
        format!("{}…", l.chars().take(160).collect::<String>())
    } else {
        l.to_string()
    }
}
