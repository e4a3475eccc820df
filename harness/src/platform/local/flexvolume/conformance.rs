//! The protocol checks behind the `<class>::flexvolume::<call>` trials.
//!
//! Each check sets up its own scratch volume, makes its call the way kubelet does, repeats it
//! where kubelet repeats it (after a kubelet or controller-manager restart: attach of an attached
//! volume, mount on a mounted directory, unmount of an unmounted one, detach of a detached
//! device), and always tears the volume down. Every reply is checked against the protocol by
//! [`super::Driver::call`]; every mount call against the kernel by [`super::kubelet`].

use std::path::{Path, PathBuf};

use super::driver::Driver;
use super::error::FlexError;
use super::kubelet::{Kubelet, Layout, Mounted};
use super::mounts::{block_device_number, loop_backing_file, mounts_under};
use super::options::{PodInfo, VolumeOptions};
use super::protocol::Call;

/// What a check needs: the driver, the class's options, and a kubelet root pvcheck owns.
#[derive(Debug, Clone)]
pub struct Subject<'a> {
    pub driver: &'a Driver,
    /// The volume name in here is a prefix: each check appends its own suffix.
    pub options: VolumeOptions,
    pub kubelet_root: PathBuf,
    pub vendor: String,
    pub driver_name: String,
    pub node: String,
}

/// A passed check's one-line note, or why the call does not apply to this driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Passed(String),
    NotApplicable(String),
}

/// Whether `call` is made at all for a driver with these capabilities (None: not yet known).
pub fn applies(call: Call, attach: bool) -> Result<(), String> {
    let attach_only = matches!(
        call,
        Call::Attach
            | Call::WaitForAttach
            | Call::IsAttached
            | Call::MountDevice
            | Call::UnmountDevice
            | Call::Detach
    );
    if attach_only && !attach {
        return Err(format!(
            "init says capabilities.attach is false: kubelet never calls {call}"
        ));
    }
    Ok(())
}

fn pod(uid: &str) -> PodInfo {
    PodInfo {
        name: format!("pvcheck-{uid}"),
        namespace: "pvcheck".into(),
        uid: uid.into(),
        service_account: "default".into(),
    }
}

/// A volume set up for the duration of one check, torn down even when the check fails.
struct Scratch<'k, 'a> {
    kubelet: &'k Kubelet<'a>,
    mounted: Option<Mounted>,
}

impl Drop for Scratch<'_, '_> {
    fn drop(&mut self) {
        if let Some(m) = self.mounted.take() {
            let _ = self.kubelet.teardown(&m);
        }
    }
}

fn pod_uid(call: Call) -> String {
    format!("{}-{}", call.name(), std::process::id())
}

/// Where the check for `call` mounts (`volume` already carries the call's suffix), so a caller can
/// record it before the check runs.
pub fn layout_for(
    call: Call,
    root: &Path,
    vendor: &str,
    driver_name: &str,
    volume: &str,
) -> Layout {
    Layout::new(root, vendor, driver_name, volume, &pod_uid(call))
}

/// Runs the check for `call`.
pub fn check(call: Call, subject: &Subject<'_>) -> Result<Verdict, FlexError> {
    let mut options = subject.options.clone();
    options.volume_name = format!("{}-{}", options.volume_name, call.name());
    let mut kubelet = Kubelet::new(subject.driver, &subject.node, &options);
    let caps = kubelet.init()?;
    if call == Call::Init {
        return Ok(Verdict::Passed(format!(
            "capabilities.attach = {}",
            caps.attach
        )));
    }
    if let Err(reason) = applies(call, caps.attach) {
        return Ok(Verdict::NotApplicable(reason));
    }
    let layout = layout_for(
        call,
        &subject.kubelet_root,
        &subject.vendor,
        &subject.driver_name,
        &options.volume_name,
    );
    let pod = pod(&pod_uid(call));
    match call {
        Call::Init => unreachable!("handled above"),
        Call::Attach | Call::WaitForAttach | Call::IsAttached => {
            check_attach(call, &kubelet, &layout)
        }
        Call::MountDevice | Call::Mount | Call::Unmount | Call::UnmountDevice | Call::Detach => {
            let mounted = kubelet.setup(&layout, &pod)?;
            let mut scratch = Scratch {
                kubelet: &kubelet,
                mounted: Some(mounted.clone()),
            };
            let note = match call {
                Call::MountDevice => {
                    let global = mounted.global_dir.as_deref().expect("attachable");
                    kubelet.mount_device(global, mounted.device.as_deref())?;
                    "repeated mountdevice on the mounted directory: Success, one mount".to_string()
                }
                Call::Mount => {
                    kubelet.mount(&mounted, &pod)?;
                    let bound = subject
                        .driver
                        .transcript()
                        .iter()
                        .any(|r| r.call == Call::Mount && r.outcome == "Not supported");
                    if bound {
                        "Not supported, so kubelet bind-mounted the device's global mount; again: one mount".to_string()
                    } else {
                        "repeated mount on the mounted directory: Success, one mount".to_string()
                    }
                }
                Call::Unmount => {
                    kubelet.unmount(&mounted.pod_dir)?;
                    kubelet.unmount(&mounted.pod_dir)?;
                    "unmount, then unmount of the unmounted directory: Success, nothing mounted"
                        .to_string()
                }
                Call::UnmountDevice => {
                    let global = mounted.global_dir.as_deref().expect("attachable");
                    kubelet.unmount(&mounted.pod_dir)?;
                    kubelet.unmount_device(global)?;
                    kubelet.unmount_device(global)?;
                    "unmountdevice, then again on the unmounted directory: Success, nothing mounted"
                        .to_string()
                }
                _ => {
                    scratch.mounted = None;
                    kubelet.teardown(&mounted)?;
                    let device = mounted.device.clone().unwrap_or_default();
                    kubelet.detach(&device)?;
                    nothing_left(
                        Call::Detach,
                        &subject.kubelet_root,
                        &options.volume_name,
                        &mounted,
                    )?;
                    format!(
                        "teardown, then detach of the detached device {device}: Success, nothing left"
                    )
                }
            };
            if let Some(m) = scratch.mounted.take() {
                kubelet.teardown(&m)?;
                nothing_left(call, &subject.kubelet_root, &options.volume_name, &m)?;
            }
            Ok(Verdict::Passed(note))
        }
    }
}

fn check_attach(call: Call, kubelet: &Kubelet<'_>, layout: &Layout) -> Result<Verdict, FlexError> {
    let (device, backing) = kubelet.attach()?;
    let mounted = Mounted {
        attach: true,
        device: device.clone(),
        device_backing: backing,
        global_dir: Some(layout.global_dir.clone()),
        pod_dir: layout.pod_dir.clone(),
    };
    let scratch = Scratch {
        kubelet,
        mounted: Some(mounted),
    };
    let dev = device.clone().unwrap_or_default();
    let note = match call {
        Call::Attach => {
            // The controller manager attaches again after a restart: same volume, same device.
            let (again, _) = kubelet.attach()?;
            if again != device {
                return Err(FlexError::Kernel {
                    call,
                    what: format!(
                        "a repeated attach of the attached volume gave {}, the first gave {dev}: the first device leaks",
                        again.unwrap_or_default()
                    ),
                });
            }
            format!("attach, then attach again: the same device {dev}")
        }
        Call::WaitForAttach => {
            match block_device_number(Path::new(&dev)) {
                Ok(Some(_)) => {}
                _ => {
                    return Err(FlexError::Kernel {
                        call,
                        what: format!("named {dev:?}, which is not a block device"),
                    });
                }
            }
            format!("device {dev} is a block device")
        }
        _ => {
            let before = kubelet.is_attached()?;
            drop(scratch);
            let after = kubelet.is_attached()?;
            match (before, after) {
                (Some(false), _) => {
                    return Err(FlexError::Kernel {
                        call,
                        what: "answered attached: false for an attached volume".into(),
                    });
                }
                (_, Some(true)) => {
                    return Err(FlexError::Kernel {
                        call,
                        what: "answered attached: true after detach".into(),
                    });
                }
                (None, _) | (_, None) => {
                    return Ok(Verdict::Passed(
                        "Not supported: kubelet assumes attached".into(),
                    ));
                }
                _ => {}
            }
            return Ok(Verdict::Passed(
                "attached: true after attach, false after detach".into(),
            ));
        }
    };
    drop(scratch);
    Ok(Verdict::Passed(note))
}

/// After teardown: no mount under the volume's kubelet directories, the device freed.
pub fn nothing_left(call: Call, root: &Path, volume: &str, m: &Mounted) -> Result<(), FlexError> {
    let io = |source| FlexError::Io {
        call,
        what: "reading /proc/self/mountinfo".into(),
        source,
    };
    let mut left: Vec<String> = Vec::new();
    for dir in [Some(&m.pod_dir), m.global_dir.as_ref()]
        .into_iter()
        .flatten()
    {
        for e in mounts_under(dir).map_err(io)? {
            left.push(format!("{} still mounted", e.mount_point.display()));
        }
    }
    if let (Some(dev), Some(backing)) = (&m.device, &m.device_backing)
        && loop_backing_file(Path::new(dev)).as_ref() == Some(backing)
    {
        left.push(format!("{dev} still attached to {}", backing.display()));
    }
    if left.is_empty() {
        return Ok(());
    }
    Err(FlexError::Kernel {
        call,
        what: format!(
            "after teardown of {volume} under {}: {}",
            root.display(),
            left.join("; ")
        ),
    })
}
