//! kubelet's (and the controller manager's) call sequence for one volume and one pod.
//!
//! Set-up: `init` (once per driver version) → `getvolumename` → with attach: `attach`,
//! `waitforattach`, `mountdevice` into the device mount path (skipped when already a mount
//! point) → `mount` into the pod's directory (skipped when already a mount point), which an
//! attachable driver usually answers "Not supported", so kubelet bind-mounts the device mount
//! path itself. Tear-down: `unmount` (when the pod's directory exists), then with attach
//! `unmountdevice` (when the device mount path is a mount point) and `detach <volume name>
//! <node>`; kubelet removes each directory after its unmount. "Not supported" is handled by
//! kubelet's defaults (`*-defaults.go`), and remembered: kubelet stops calling that command for
//! this driver version. After set-up and tear-down the kernel is asked what is mounted and
//! attached (pvcheck's own checks: a Success that mounts nothing is caught before the pod writes
//! to the node's root filesystem).

use std::path::{Path, PathBuf};
use std::process::Command;

use nix::mount::{MntFlags, MsFlags, mount, umount2};

use super::driver::{Answer, Driver};
use super::error::FlexError;
use super::options::{Masker, PodInfo, VolumeOptions, to_json};
use super::protocol::{Call, Capabilities};
use crate::platform::local::mounts::{
    block_device_number, loop_backing_file, loop_still_backed, mounts_at,
};

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

/// Who mounted a directory during set-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountedBy {
    /// The driver's call answered Success.
    Driver,
    /// The driver answered "Not supported" and pvcheck did kubelet's default.
    KubeletDefault,
    /// "Not supported" with no device: kubelet mounts nothing (mountdevice only).
    Nothing,
    /// Already a mount point (kubelet's `prepareForMount`): no call made.
    AlreadyMounted,
}

/// A volume set up for a pod.
#[derive(Debug, Clone)]
pub struct Mounted {
    pub attach: bool,
    /// The device waitforattach named (attachable drivers; None when it gave none).
    pub device: Option<String>,
    /// What the loop device was backed by at attach, to check it is gone after detach.
    pub device_backing: Option<PathBuf>,
    /// The device mount path (attachable drivers).
    pub global_dir: Option<PathBuf>,
    pub pod_dir: PathBuf,
    /// The device mount path kubelet's default mount binds from (also for non-attachable drivers).
    pub default_source: PathBuf,
    pub device_mount: Option<MountedBy>,
    pub pod_mount: Option<MountedBy>,
}

impl Mounted {
    /// An attached volume with nothing mounted yet (the attach checks).
    pub fn for_attach(layout: &Layout) -> Self {
        Mounted::new(true, layout)
    }

    fn new(attach: bool, layout: &Layout) -> Self {
        Mounted {
            attach,
            device: None,
            device_backing: None,
            global_dir: attach.then(|| layout.global_dir.clone()),
            pod_dir: layout.pod_dir.clone(),
            default_source: layout.global_dir.clone(),
            device_mount: None,
            pod_mount: None,
        }
    }
}

/// One node's kubelet (and the controller manager) for one driver.
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

/// mount-utils' `IsLikelyNotMountPoint` as kubelet uses it in `prepareForMount` and
/// `isNotMounted`: a directory is a mount point when its device differs from its parent's
/// (so a bind mount from the same filesystem looks unmounted). None: it does not exist.
pub fn likely_mounted(dir: &Path) -> Option<bool> {
    use std::os::unix::fs::MetadataExt;
    let me = std::fs::metadata(dir).ok()?;
    let parent = dir.parent().and_then(|p| std::fs::metadata(p).ok())?;
    Some(me.dev() != parent.dev())
}

/// kubelet's `IsCorruptedMnt`: the mount point answers ENOTCONN, ESTALE, EIO, EACCES or
/// EHOSTDOWN (a FUSE mount whose daemon died, a dead network mount): still a mount to tear down.
pub fn corrupted_mount(dir: &Path) -> bool {
    std::fs::metadata(dir).is_err_and(|e| {
        matches!(
            e.raw_os_error(),
            Some(libc::ENOTCONN | libc::ESTALE | libc::EIO | libc::EACCES | libc::EHOSTDOWN)
        )
    })
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

    fn json(&self, call: Call, pod: Option<&PodInfo>) -> String {
        to_json(&self.options.for_call(call, pod))
    }

    /// `init`, once per driver version (kubelet probes a driver again when its executable
    /// changes). It must answer Success; left-out capabilities take kubelet's defaults.
    pub fn init(&mut self) -> Result<Capabilities, FlexError> {
        let reply = self.driver.call_ok(Call::Init, &[], &self.masker)?;
        let caps = reply.capabilities.unwrap_or_default();
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

    /// `getvolumename <json>`, made wherever kubelet and the controller manager ask the plugin
    /// for the volume's name. A Failure breaks the operation; whatever it answers, the name used
    /// is the PV or volume name (kubelet: "GetVolumeName is not supported yet").
    pub fn volume_name(&self) -> Result<String, FlexError> {
        let name = self.options.volume_name.clone();
        let args = [self.json(Call::GetVolumeName, None)];
        if let Answer::Success(r) = self.driver.call(Call::GetVolumeName, &args, &self.masker)?
            && !r.volume_name.is_empty()
            && r.volume_name != name
        {
            self.driver.plugin().warn(
                Call::GetVolumeName,
                "ignored-name",
                &format!(
                    "answered volumeName {:?}; kubelet ignores it and uses the PV or volume name {name:?}",
                    r.volume_name
                ),
            );
        }
        Ok(name)
    }

    /// Sets the volume up for `pod`; on error, undoes what it did before returning.
    pub fn setup(&mut self, layout: &Layout, pod: &PodInfo) -> Result<Mounted, FlexError> {
        let caps = self.caps()?;
        let mut m = Mounted::new(caps.attach, layout);
        let result = (|| {
            // The desired state of the world (kubelet) and the controller name the volume first.
            self.volume_name()?;
            if caps.attach {
                self.setup_attachable(&mut m)?;
            }
            self.mount(&mut m, pod)?;
            self.check_setup(&m)
        })();
        if let Err(e) = result {
            // Best effort: the first error is the one to report.
            let _ = self.teardown(&m);
            return Err(e);
        }
        Ok(m)
    }

    /// The controller manager's `attach`, then kubelet's `waitforattach`: the device, if any.
    pub fn attach(&self) -> Result<(Option<String>, Option<PathBuf>), FlexError> {
        let args = [self.json(Call::Attach, None), self.node.clone()];
        // attacherDefaults.Attach: no device.
        let attached = match self.driver.call(Call::Attach, &args, &self.masker)? {
            Answer::Success(r) if r.device.is_empty() => {
                self.driver.plugin().warn(
                    Call::Attach,
                    "no-device",
                    "answered Success without \"device\"; kubelet passes an empty device to waitforattach and mountdevice",
                );
                None
            }
            Answer::Success(r) => Some(r.device),
            Answer::NotSupported => None,
        };
        let args = [
            attached.clone().unwrap_or_default(),
            self.json(Call::WaitForAttach, None),
        ];
        // attacherDefaults.WaitForAttach: the device attach gave.
        let device = match self.driver.call(Call::WaitForAttach, &args, &self.masker)? {
            Answer::Success(r) => (!r.device.is_empty()).then_some(r.device),
            Answer::NotSupported => attached,
        };
        let backing = device
            .as_deref()
            .and_then(|d| loop_backing_file(Path::new(d)));
        Ok((device, backing))
    }

    /// `isattached <json> <node>` (the controller's periodic check): None when the driver does
    /// not support it (kubelet then assumes attached). A Success without `attached` is false.
    pub fn is_attached(&self) -> Result<Option<bool>, FlexError> {
        let args = [self.json(Call::IsAttached, None), self.node.clone()];
        match self.driver.call(Call::IsAttached, &args, &self.masker)? {
            Answer::NotSupported => Ok(None),
            Answer::Success(r) => Ok(Some(r.attached)),
        }
    }

    fn setup_attachable(&self, m: &mut Mounted) -> Result<(), FlexError> {
        let (device, backing) = self.attach()?;
        m.device = device;
        m.device_backing = backing;
        let global = m
            .global_dir
            .clone()
            .expect("attachable volumes have a global dir");
        m.device_mount = Some(self.mount_device(&global, m.device.as_deref())?);
        Ok(())
    }

    /// `mountdevice <dir> <device> <json>` unless `dir` is already a mount point; "Not
    /// supported" with a device: kubelet's own format-and-mount; without one: nothing.
    pub fn mount_device(&self, dir: &Path, device: Option<&str>) -> Result<MountedBy, FlexError> {
        let call = Call::MountDevice;
        // GetDeviceMountPath asks the plugin for the volume's name.
        self.volume_name()?;
        if prepare_for_mount(call, dir)? {
            return Ok(MountedBy::AlreadyMounted);
        }
        let args = [
            s(dir),
            device.unwrap_or_default().to_string(),
            self.json(call, None),
        ];
        let by = match self.driver.call(call, &args, &self.masker)? {
            Answer::Success(_) => MountedBy::Driver,
            Answer::NotSupported => match device {
                Some(dev) => {
                    format_and_mount(
                        dev,
                        dir,
                        self.options.fs_type.as_deref(),
                        self.options.read_only,
                    )
                    .map_err(|what| FlexError::Kernel {
                        call,
                        what: format!(
                            "answered Not supported, and kubelet's default mount failed: {what}"
                        ),
                    })?;
                    MountedBy::KubeletDefault
                }
                None => MountedBy::Nothing,
            },
        };
        check_device_mount(self.driver, call, dir, device)?;
        Ok(by)
    }

    /// `mount <dir> <json>` unless the pod's directory is already a mount point; "Not
    /// supported": kubelet's bind mount of the device mount path into the pod's directory.
    pub fn mount(&self, m: &mut Mounted, pod: &PodInfo) -> Result<(), FlexError> {
        let call = Call::Mount;
        let dir = m.pod_dir.clone();
        if prepare_for_mount(call, &dir)? {
            m.pod_mount = Some(MountedBy::AlreadyMounted);
            return Ok(());
        }
        let args = [s(&dir), self.json(call, Some(pod))];
        let result = match self.driver.call(call, &args, &self.masker) {
            Ok(Answer::Success(_)) => Ok(MountedBy::Driver),
            Ok(Answer::NotSupported) => self.default_mount(m).map(|()| MountedBy::KubeletDefault),
            Err(e) => Err(e),
        };
        match result {
            Ok(by) => {
                m.pod_mount = Some(by);
                Ok(())
            }
            Err(e) => {
                // kubelet removes the pod's directory after a failed mount.
                let _ = std::fs::remove_dir(&dir);
                Err(e)
            }
        }
    }

    /// mounterDefaults.SetUpAt: `mount -t auto -o bind <device mount path> <dir>`.
    fn default_mount(&self, m: &Mounted) -> Result<(), FlexError> {
        let call = Call::Mount;
        self.volume_name()?;
        let src = &m.default_source;
        if !src.exists() {
            return Err(FlexError::Kernel {
                call,
                what: format!(
                    "answered Not supported, so kubelet bind-mounts the device mount path {}, which does not exist{}",
                    src.display(),
                    if m.attach {
                        ""
                    } else {
                        " (a driver without attach must implement mount)"
                    }
                ),
            });
        }
        mount(
            Some(src.as_path()),
            m.pod_dir.as_path(),
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| FlexError::Io {
            call,
            what: format!(
                "kubelet's default mount (bind of {} on {})",
                src.display(),
                m.pod_dir.display()
            ),
            source: e.into(),
        })
    }

    /// pvcheck's kernel checks once the pod's directory is set up: it is a mount point, mounted
    /// once, and when it is kubelet's bind of the device mount path, that path is mounted.
    fn check_setup(&self, m: &Mounted) -> Result<(), FlexError> {
        let call = Call::Mount;
        let at = mounts_at(&m.pod_dir).map_err(|source| FlexError::Io {
            call,
            what: "reading /proc/self/mountinfo".into(),
            source,
        })?;
        if at.is_empty() {
            return Err(FlexError::Kernel {
                call,
                what: format!(
                    "answered Success but {} is not a mount point: the pod would write to the node's root filesystem",
                    m.pod_dir.display()
                ),
            });
        }
        if at.len() > 1 {
            return Err(FlexError::Kernel {
                call,
                what: format!(
                    "{} has {} mounts stacked on it: a repeated call mounted again",
                    m.pod_dir.display(),
                    at.len()
                ),
            });
        }
        if m.pod_mount == Some(MountedBy::KubeletDefault) {
            let global = mounts_at(&m.default_source).unwrap_or_default();
            if global.is_empty() {
                let what = match m.device_mount {
                    Some(MountedBy::Nothing) => format!(
                        "attach gave no device and mountdevice answered Not supported, so kubelet mounted nothing on {}; mount answered Not supported too, so kubelet bind-mounts that empty directory into the pod: the pod would write to the node's root filesystem",
                        m.default_source.display()
                    ),
                    _ => format!(
                        "answered Success but {} is not a mount point; mount answered Not supported, so kubelet bind-mounts that directory into the pod: the pod would write to the node's root filesystem",
                        m.default_source.display()
                    ),
                };
                return Err(FlexError::Kernel {
                    call: Call::MountDevice,
                    what,
                });
            }
        }
        if let Some(dev) = &m.device {
            warn_if_other_device(self.driver, call, &m.pod_dir, &at[0], dev);
        }
        Ok(())
    }

    /// `unmount <dir>` when the directory exists (kubelet calls it whether or not something is
    /// mounted there), or kubelet's own unmount when Not supported; then kubelet removes it.
    pub fn unmount(&self, dir: &Path) -> Result<(), FlexError> {
        // A dead FUSE mount answers ENOTCONN, not "missing": kubelet unmounts it (its
        // `IsCorruptedMnt`), so does this.
        if !dir.exists() && !corrupted_mount(dir) {
            return Ok(());
        }
        retry_failures(|| self.unmount_call(Call::Unmount, dir))?;
        remove_mount_dir(Call::Unmount, dir)
    }

    /// Only the driver call (and kubelet's default), without removing the directory: what a
    /// kubelet that crashes right after the call has done.
    pub fn unmount_without_cleanup(&self, dir: &Path) -> Result<(), FlexError> {
        retry_failures(|| self.unmount_call(Call::Unmount, dir))
    }

    /// `unmountdevice <dir>` when the directory is (likely) a mount point, or kubelet's own
    /// unmount when Not supported; then kubelet removes it.
    pub fn unmount_device(&self, dir: &Path) -> Result<(), FlexError> {
        let state = if corrupted_mount(dir) {
            Some(true)
        } else {
            likely_mounted(dir)
        };
        match state {
            None => return Ok(()),
            Some(false) => {}
            Some(true) => {
                // GetDeviceMountPath asks the plugin for the volume's name.
                self.volume_name()?;
                retry_failures(|| self.unmount_call(Call::UnmountDevice, dir))?;
            }
        }
        remove_mount_dir(Call::UnmountDevice, dir)
    }

    fn unmount_call(&self, call: Call, dir: &Path) -> Result<(), FlexError> {
        let args = [s(dir)];
        match self.driver.call(call, &args, &self.masker)? {
            Answer::NotSupported => {
                if !mounts_at(dir).map(|v| v.is_empty()).unwrap_or(true) {
                    umount_retrying(dir).map_err(|e| FlexError::Io {
                        call,
                        what: format!("kubelet's default unmount of {}", dir.display()),
                        source: e.into(),
                    })?;
                }
            }
            Answer::Success(_) => {}
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

    /// The controller manager's `detach <volume name> <node>` (the PV or volume name, not the
    /// device); "Not supported": nothing to do, as in kubelet.
    pub fn detach(&self) -> Result<(), FlexError> {
        let name = self.volume_name()?;
        retry_failures(|| {
            let args = [name.clone(), self.node.clone()];
            self.driver
                .call(Call::Detach, &args, &self.masker)
                .map(|_| ())
        })
    }

    /// Tears the volume down and checks nothing is left: every step is tried, the first error
    /// is returned.
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
        if m.attach {
            note(self.detach());
            if let (Some(device), Some(backing)) = (&m.device, &m.device_backing)
                && loop_still_backed(Path::new(device), backing)
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
        match first {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// kubelet's `prepareForMount`: creates the directory (0750) when missing; true when it is
/// already (likely) a mount point, and then kubelet makes no call.
fn prepare_for_mount(call: Call, dir: &Path) -> Result<bool, FlexError> {
    match likely_mounted(dir) {
        Some(mounted) => Ok(mounted),
        None => {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o750)
                .create(dir)
                .map_err(|source| FlexError::Io {
                    call,
                    what: format!("creating {}", dir.display()),
                    source,
                })?;
            Ok(false)
        }
    }
}

/// kubelet removes a mount directory after unmounting it; that fails when something is still
/// mounted there or the directory is not empty, and so does the tear-down.
fn remove_mount_dir(call: Call, dir: &Path) -> Result<(), FlexError> {
    match std::fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(FlexError::Kernel {
            call,
            what: format!(
                "kubelet removes {} after the unmount, and that fails: {e}",
                dir.display()
            ),
        }),
    }
}

/// A directory must hold exactly one mount (a stacked one is a repeated mount).
pub fn check_single_mount(call: Call, dir: &Path) -> Result<(), FlexError> {
    let at = mounts_at(dir).map_err(|source| FlexError::Io {
        call,
        what: "reading /proc/self/mountinfo".into(),
        source,
    })?;
    if at.len() != 1 {
        return Err(FlexError::Kernel {
            call,
            what: format!(
                "{} has {} mounts: a repeated call must leave exactly one",
                dir.display(),
                at.len()
            ),
        });
    }
    Ok(())
}

/// After mountdevice: a mount point must hold one mount (a stacked one is a repeated mount).
/// Nothing mounted is judged once the pod's directory is set up (a driver may mount in `mount`).
fn check_device_mount(
    driver: &Driver,
    call: Call,
    dir: &Path,
    device: Option<&str>,
) -> Result<(), FlexError> {
    let at = mounts_at(dir).map_err(|source| FlexError::Io {
        call,
        what: "reading /proc/self/mountinfo".into(),
        source,
    })?;
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
    if let (Some(top), Some(dev)) = (at.first(), device) {
        warn_if_other_device(driver, call, dir, top, dev);
    }
    Ok(())
}

/// kubelet does not check which device is mounted; a mount from another device than the one
/// waitforattach named (say, a device-mapper target on top of it) is worth a word, no more.
fn warn_if_other_device(
    driver: &Driver,
    call: Call,
    dir: &Path,
    top: &crate::platform::local::mounts::MountEntry,
    dev: &str,
) {
    if let Ok(Some((major, minor))) = block_device_number(Path::new(dev))
        && (top.major, top.minor) != (major, minor)
    {
        driver.plugin().warn(
            call,
            "other-device",
            &format!(
                "{} is mounted from {} ({}:{}), not from the attached device {dev} ({major}:{minor})",
                dir.display(),
                top.source,
                top.major,
                top.minor
            ),
        );
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

/// mount-utils' `SafeFormatAndMount.FormatAndMount` as kubelet's default MountDevice uses it:
/// ext4 when no type is given; `blkid -p -s TYPE -s PTTYPE -o export` exit code 2 means no
/// filesystem, then `mkfs.<fs>` (`-F -m0` for ext3/ext4, `-f` for xfs); mounted `rw` or `ro`.
fn format_and_mount(
    device: &str,
    dir: &Path,
    fs: Option<&str>,
    read_only: bool,
) -> Result<(), String> {
    let fs = fs.filter(|f| !f.is_empty()).unwrap_or("ext4");
    let probe = Command::new("blkid")
        .args(["-p", "-s", "TYPE", "-s", "PTTYPE", "-o", "export", device])
        .output()
        .map_err(|e| format!("blkid: {e}"))?;
    match probe.status.code() {
        Some(0) => {
            let text = String::from_utf8_lossy(&probe.stdout);
            if !text.lines().any(|l| l.starts_with("TYPE=")) {
                return Err(format!(
                    "{device} holds a partition table and no filesystem: kubelet does not format it"
                ));
            }
        }
        Some(2) => {
            let mut args: Vec<&str> = match fs {
                "ext3" | "ext4" => vec!["-F", "-m0"],
                "xfs" => vec!["-f"],
                _ => vec![],
            };
            args.push(device);
            let out = Command::new(format!("mkfs.{fs}"))
                .args(&args)
                .output()
                .map_err(|e| format!("mkfs.{fs}: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "mkfs.{fs} {device}: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
        }
        _ => {
            return Err(format!(
                "blkid {device}: {}",
                String::from_utf8_lossy(&probe.stderr).trim()
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
