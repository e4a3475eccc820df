//! kubelet's (and the controller manager's) call sequence for one volume and one pod.
//!
//! Set-up: `init` → with attach: `attach`, `waitforattach`, `isattached`, `mountdevice` into the
//! volume's global mount directory, then `mount` into the pod's directory, which an attachable
//! driver usually answers "Not supported" so kubelet bind-mounts the global directory itself.
//! Without attach: `mount` only. Tear-down: `unmount`, then with attach `unmountdevice` and
//! `detach`. "Not supported" is handled as kubelet's defaults handle it (kubelet formats and mounts
//! the device itself, unmounts itself, assumes attached). After each mount call the kernel is
//! asked whether something is mounted there, and after tear-down whether anything is left.

use std::path::{Path, PathBuf};
use std::process::Command;

use nix::mount::{MntFlags, MsFlags, mount, umount2};

use super::driver::Driver;
use super::error::FlexError;
use super::mounts::{block_device_number, loop_backing_file, mounts_at, mounts_under};
use super::options::{Masker, PodInfo, VolumeOptions, to_json};
use super::protocol::{Call, Capabilities, Status};

/// Where kubelet keeps a volume's mounts, under a root pvcheck owns (kubelet: /var/lib/kubelet).
#[derive(Debug, Clone)]
pub struct Layout {
    /// `plugins/kubernetes.io/flexvolume/<vendor>/<driver>/mounts/<volume>`: mountdevice's target.
    pub global_dir: PathBuf,
    /// `pods/<uid>/volumes/<vendor>~<driver>/<volume>`: what the pod sees.
    pub pod_dir: PathBuf,
}

impl Layout {
    pub fn new(root: &Path, vendor: &str, driver: &str, volume: &str, pod_uid: &str) -> Self {
        Layout {
            global_dir: root
                .join("plugins/kubernetes.io/flexvolume")
                .join(vendor)
                .join(driver)
                .join("mounts")
                .join(volume),
            pod_dir: root
                .join("pods")
                .join(pod_uid)
                .join("volumes")
                .join(format!("{vendor}~{driver}"))
                .join(volume),
        }
    }
}

/// A volume set up for a pod.
#[derive(Debug, Clone)]
pub struct Mounted {
    pub attach: bool,
    /// The device waitforattach named (attachable drivers).
    pub device: Option<String>,
    /// What the loop device was backed by at attach, to check it is gone after detach.
    pub device_backing: Option<PathBuf>,
    pub global_dir: Option<PathBuf>,
    pub pod_dir: PathBuf,
}

/// One node's kubelet for one driver.
#[derive(Debug)]
pub struct Kubelet<'a> {
    pub driver: &'a Driver,
    pub node: String,
    pub options: &'a VolumeOptions,
    masker: Masker,
    capabilities: Option<Capabilities>,
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

impl<'a> Kubelet<'a> {
    pub fn new(driver: &'a Driver, node: &str, options: &'a VolumeOptions) -> Self {
        Kubelet {
            driver,
            node: node.into(),
            options,
            masker: options.masker(),
            capabilities: None,
        }
    }

    /// Capabilities already known from an earlier `init` of the same driver version.
    pub fn with_capabilities(mut self, caps: Option<Capabilities>) -> Self {
        self.capabilities = caps;
        self
    }

    pub fn masker(&self) -> &Masker {
        &self.masker
    }

    fn json(&self, call: Call, dir: Option<&Path>, pod: Option<&PodInfo>) -> String {
        let d = dir.map(s);
        to_json(&self.options.for_call(call, d.as_deref(), pod))
    }

    /// `init`, once per driver version (kubelet re-runs it when the executable changes).
    pub fn init(&mut self) -> Result<Capabilities, FlexError> {
        let reply = self.driver.call_ok(Call::Init, &[], &self.masker)?;
        let caps = reply.capabilities.unwrap_or(Capabilities { attach: true });
        self.capabilities = Some(caps);
        Ok(caps)
    }

    /// Forgets the capabilities, so the next set-up calls `init` again (after a driver swap).
    pub fn reinit(&mut self) {
        self.capabilities = None;
    }

    fn caps(&mut self) -> Result<Capabilities, FlexError> {
        match self.capabilities {
            Some(c) => Ok(c),
            None => self.init(),
        }
    }

    /// Sets the volume up for `pod`; on error, undoes what it did before returning.
    pub fn setup(&mut self, layout: &Layout, pod: &PodInfo) -> Result<Mounted, FlexError> {
        let caps = self.caps()?;
        let mut m = Mounted {
            attach: caps.attach,
            device: None,
            device_backing: None,
            global_dir: caps.attach.then(|| layout.global_dir.clone()),
            pod_dir: layout.pod_dir.clone(),
        };
        let result = if caps.attach {
            self.setup_attachable(&mut m, pod)
        } else {
            self.mount(&m, pod)
        };
        if let Err(e) = result {
            // Best effort: the first error is the one to report.
            let _ = self.teardown(&m);
            return Err(e);
        }
        Ok(m)
    }

    /// The controller manager's half: attach, then kubelet's waitforattach.
    pub fn attach(&self) -> Result<(Option<String>, Option<PathBuf>), FlexError> {
        let json = self.json(Call::Attach, None, None);
        let args = [json, self.node.clone()];
        let reply = self.driver.call(Call::Attach, &args, &self.masker)?;
        // kubelet's attacher defaults: a driver without attach gives no device here.
        let attached = match reply.status {
            Status::NotSupported => None,
            _ => {
                self.driver
                    .require_success(Call::Attach, &args, &self.masker, reply)?
                    .device
            }
        };
        let json = self.json(Call::WaitForAttach, None, None);
        let args = [attached.clone().unwrap_or_default(), json];
        let reply = self.driver.call(Call::WaitForAttach, &args, &self.masker)?;
        let device = match reply.status {
            Status::NotSupported => attached,
            _ => {
                self.driver
                    .require_success(Call::WaitForAttach, &args, &self.masker, reply)?
                    .device
            }
        };
        let backing = device
            .as_deref()
            .and_then(|d| loop_backing_file(Path::new(d)));
        Ok((device, backing))
    }

    /// `isattached`: None when the driver does not support it (kubelet then assumes attached).
    pub fn is_attached(&self) -> Result<Option<bool>, FlexError> {
        let json = self.json(Call::IsAttached, None, None);
        let args = [json, self.node.clone()];
        let reply = self.driver.call(Call::IsAttached, &args, &self.masker)?;
        match reply.status {
            Status::NotSupported => Ok(None),
            _ => Ok(self
                .driver
                .require_success(Call::IsAttached, &args, &self.masker, reply)?
                .attached),
        }
    }

    fn setup_attachable(&self, m: &mut Mounted, pod: &PodInfo) -> Result<(), FlexError> {
        let (device, backing) = self.attach()?;
        m.device = device;
        m.device_backing = backing;
        if self.is_attached()? == Some(false) {
            return Err(FlexError::Kernel {
                call: Call::IsAttached,
                what: "answered attached: false right after attach and waitforattach succeeded"
                    .into(),
            });
        }
        let global = m
            .global_dir
            .clone()
            .expect("attachable volumes have a global dir");
        self.mount_device(&global, m.device.as_deref())?;
        self.mount(m, pod)
    }

    /// `mountdevice <dir> <device> <json>`, or kubelet's own format-and-mount when Not supported.
    pub fn mount_device(&self, dir: &Path, device: Option<&str>) -> Result<(), FlexError> {
        let call = Call::MountDevice;
        std::fs::create_dir_all(dir).map_err(|source| FlexError::Io {
            call,
            what: format!("creating {}", dir.display()),
            source,
        })?;
        let json = self.json(call, Some(dir), None);
        let args = [s(dir), device.unwrap_or_default().to_string(), json];
        let reply = self.driver.call(call, &args, &self.masker)?;
        if reply.status == Status::NotSupported {
            let dev = device.ok_or_else(|| FlexError::Kernel {
                call,
                what: "Not supported, and attach gave no device for kubelet to mount".into(),
            })?;
            format_and_mount(
                dev,
                dir,
                self.options.fs_type.as_deref().unwrap_or("ext4"),
                self.options.read_only,
            )
            .map_err(|what| FlexError::Kernel {
                call,
                what: format!("kubelet's default mount: {what}"),
            })?;
        } else {
            self.driver
                .require_success(call, &args, &self.masker, reply)?;
        }
        check_mounted(call, dir, device)
    }

    /// `mount <dir> <json>`, or (attachable, Not supported) kubelet's bind mount of the global dir.
    pub fn mount(&self, m: &Mounted, pod: &PodInfo) -> Result<(), FlexError> {
        let call = Call::Mount;
        let dir = &m.pod_dir;
        std::fs::create_dir_all(dir).map_err(|source| FlexError::Io {
            call,
            what: format!("creating {}", dir.display()),
            source,
        })?;
        let json = self.json(call, Some(dir), Some(pod));
        let args = [s(dir), json];
        let reply = self.driver.call(call, &args, &self.masker)?;
        match (reply.status, &m.global_dir) {
            (Status::NotSupported, Some(global)) => {
                if mounts_at(dir).map(|v| v.is_empty()).unwrap_or(true) {
                    let mut flags = MsFlags::MS_BIND;
                    mount(
                        Some(global.as_path()),
                        dir.as_path(),
                        None::<&str>,
                        flags,
                        None::<&str>,
                    )
                    .map_err(|e| FlexError::Io {
                        call,
                        what: format!("bind-mounting {} on {}", global.display(), dir.display()),
                        source: e.into(),
                    })?;
                    if self.options.read_only {
                        flags |= MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
                        mount(
                            None::<&str>,
                            dir.as_path(),
                            None::<&str>,
                            flags,
                            None::<&str>,
                        )
                        .map_err(|e| FlexError::Io {
                            call,
                            what: format!("remounting {} read-only", dir.display()),
                            source: e.into(),
                        })?;
                    }
                }
            }
            _ => {
                self.driver
                    .require_success(call, &args, &self.masker, reply)?;
            }
        }
        check_mounted(call, dir, m.device.as_deref())
    }

    /// `unmount <dir>`, or kubelet's own unmount when Not supported.
    pub fn unmount(&self, dir: &Path) -> Result<(), FlexError> {
        retry_failures(|| self.unmount_call(Call::Unmount, dir))
    }

    /// `unmountdevice <dir>`, or kubelet's own unmount when Not supported.
    pub fn unmount_device(&self, dir: &Path) -> Result<(), FlexError> {
        retry_failures(|| self.unmount_call(Call::UnmountDevice, dir))
    }

    fn unmount_call(&self, call: Call, dir: &Path) -> Result<(), FlexError> {
        let args = [s(dir)];
        let reply = self.driver.call(call, &args, &self.masker)?;
        if reply.status == Status::NotSupported {
            if !mounts_at(dir).map(|v| v.is_empty()).unwrap_or(true) {
                umount_retrying(dir).map_err(|e| FlexError::Io {
                    call,
                    what: format!("kubelet's default unmount of {}", dir.display()),
                    source: e.into(),
                })?;
            }
        } else {
            self.driver
                .require_success(call, &args, &self.masker, reply)?;
        }
        let left = mounts_at(dir).map_err(|source| FlexError::Io {
            call,
            what: "reading /proc/self/mountinfo".into(),
            source,
        })?;
        if !left.is_empty() {
            return Err(FlexError::Kernel {
                call,
                what: format!(
                    "answered Success but {} is still mounted ({} mount(s))",
                    dir.display(),
                    left.len()
                ),
            });
        }
        Ok(())
    }

    /// `detach <device> <node>` (Not supported: nothing to do, as in kubelet).
    pub fn detach(&self, device: &str) -> Result<(), FlexError> {
        retry_failures(|| self.detach_once(device))
    }

    fn detach_once(&self, device: &str) -> Result<(), FlexError> {
        let args = [device.to_string(), self.node.clone()];
        let reply = self.driver.call(Call::Detach, &args, &self.masker)?;
        if reply.status != Status::NotSupported {
            self.driver
                .require_success(Call::Detach, &args, &self.masker, reply)?;
        }
        Ok(())
    }

    /// Tears the volume down and checks nothing is left: every step is tried, the first error
    /// is returned. The directories kubelet made are removed (only when empty).
    pub fn teardown(&self, m: &Mounted) -> Result<(), FlexError> {
        let mut first: Option<FlexError> = None;
        let mut note = |r: Result<(), FlexError>| {
            if let Err(e) = r
                && first.is_none()
            {
                first = Some(e);
            }
        };
        note(self.unmount(&m.pod_dir));
        if let Some(global) = &m.global_dir {
            note(self.unmount_device(global));
        }
        if m.attach
            && let Some(device) = &m.device
        {
            note(self.detach(device));
            if let Some(backing) = &m.device_backing
                && loop_backing_file(Path::new(device)).as_ref() == Some(backing)
            {
                note(Err(FlexError::Kernel {
                    call: Call::Detach,
                    what: format!(
                        "answered Success but {device} is still attached to {}",
                        backing.display()
                    ),
                }));
            }
        }
        for dir in [Some(&m.pod_dir), m.global_dir.as_ref()]
            .into_iter()
            .flatten()
        {
            if mounts_under(dir).map(|v| v.is_empty()).unwrap_or(false) {
                let _ = std::fs::remove_dir(dir);
            }
        }
        match first {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// How long a tear-down call that answers Failure is retried. kubelet's reconciler retries a
/// failed unmount or detach with exponential backoff; the usual cause is "target is busy" for a
/// moment after the pod's processes end (e.g. io_uring workers still releasing files).
const TEARDOWN_RETRY: std::time::Duration = std::time::Duration::from_secs(6);

/// Retries `f` while it answers a well-formed Failure (never a protocol violation or a timeout,
/// which are the driver's fault), with backoff from 100 ms, within [`TEARDOWN_RETRY`].
fn retry_failures(mut f: impl FnMut() -> Result<(), FlexError>) -> Result<(), FlexError> {
    let deadline = std::time::Instant::now() + TEARDOWN_RETRY;
    let mut pause = std::time::Duration::from_millis(100);
    loop {
        match f() {
            Err(e @ FlexError::Failed { .. }) => {
                let now = std::time::Instant::now();
                if now + pause > deadline {
                    return Err(e);
                }
                std::thread::sleep(pause);
                pause = (pause * 2).min(std::time::Duration::from_secs(2));
            }
            other => return other,
        }
    }
}

/// After a mount call: `dir` must be a mount point, mounted once, of `device` when known.
fn check_mounted(call: Call, dir: &Path, device: Option<&str>) -> Result<(), FlexError> {
    let io = |source| FlexError::Io {
        call,
        what: "reading /proc/self/mountinfo".into(),
        source,
    };
    let at = mounts_at(dir).map_err(io)?;
    if at.is_empty() {
        return Err(FlexError::Kernel {
            call,
            what: format!(
                "answered Success but {} is not a mount point: the pod would write to the node's root filesystem",
                dir.display()
            ),
        });
    }
    if at.len() > 1 {
        return Err(FlexError::Kernel {
            call,
            what: format!(
                "{} has {} mounts stacked on it: a repeated call mounted again",
                dir.display(),
                at.len()
            ),
        });
    }
    if let Some(dev) = device
        && let Ok(Some((major, minor))) = block_device_number(Path::new(dev))
    {
        let top = &at[at.len() - 1];
        if (top.major, top.minor) != (major, minor) {
            return Err(FlexError::Kernel {
                call,
                what: format!(
                    "{} is mounted from {} ({}:{}), not from the attached device {dev} ({major}:{minor})",
                    dir.display(),
                    top.source,
                    top.major,
                    top.minor
                ),
            });
        }
    }
    Ok(())
}

/// kubelet's own unmount (driver said Not supported), retried while the target is busy.
fn umount_retrying(dir: &Path) -> nix::Result<()> {
    let deadline = std::time::Instant::now() + TEARDOWN_RETRY;
    loop {
        match umount2(dir, MntFlags::empty()) {
            Err(nix::errno::Errno::EBUSY) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            other => return other,
        }
    }
}

/// kubelet's SafeFormatAndMount: make a filesystem only when the device has none, then mount.
fn format_and_mount(device: &str, dir: &Path, fs: &str, read_only: bool) -> Result<(), String> {
    let probe = Command::new("blkid")
        .args(["-p", device])
        .output()
        .map_err(|e| format!("blkid: {e}"))?;
    if !probe.status.success() {
        let out = Command::new(format!("mkfs.{fs}"))
            .arg(if fs.starts_with("ext") { "-F" } else { "-f" })
            .arg(device)
            .output()
            .map_err(|e| format!("mkfs.{fs}: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mkfs.{fs} {device}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    let flags = if read_only {
        MsFlags::MS_RDONLY
    } else {
        MsFlags::empty()
    };
    mount(Some(device), dir, Some(fs), flags, None::<&str>)
        .map_err(|e| format!("mount {device} {}: {e}", dir.display()))
}
