//! The protocol checks behind the `<class>::flexvolume::<call>` trials.
//!
//! Each check sets up its own scratch volume, makes its call the way kubelet does, repeats it
//! where kubelet repeats it (after a kubelet or controller-manager restart, which forgets what
//! answered "Not supported": attach of an attached volume, mountdevice and mount when the
//! directory does not look like a mount point, unmount of an unmounted but existing directory,
//! detach of a detached volume), and always tears the volume down. Every reply is checked against the protocol by
//! [`super::Driver::call`]; every mount call against the kernel by [`super::kubelet`].

use std::path::{Path, PathBuf};

use super::driver::Driver;
use super::error::FlexError;
use super::kubelet::{Kubelet, Layout, Mounted, MountedBy};
use super::options::{PodInfo, VolumeOptions};
use super::protocol::Call;
use crate::platform::local::mounts::{block_device_number, loop_still_backed, mounts_under};

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

/// Whether `call` is made at all for a driver with these capabilities.
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
    if matches!(call, Call::ExpandVolume | Call::ExpandFs) {
        return Err(format!(
            "{call} is not checked: flexVolume classes have no expansion"
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

/// The note of a call that may have been answered by kubelet's default.
fn answered(driver: &Driver, call: Call, from: usize) -> &'static str {
    let t = driver.transcript();
    match t[from.min(t.len())..].iter().find(|r| r.call == call) {
        None => "not called",
        Some(r) if r.outcome.starts_with("Not supported") => "Not supported",
        Some(_) => "Success",
    }
}

/// Runs the check for `call`.
pub fn check(call: Call, subject: &Subject<'_>) -> Result<Verdict, FlexError> {
    let mut options = subject.options.clone();
    options.volume_name = format!("{}-{}", options.volume_name, call.name());
    let mut kubelet = Kubelet::new(subject.driver, &subject.node, &options);
    let caps = kubelet.init()?;
    if call == Call::Init {
        return Ok(Verdict::Passed(format!(
            "capabilities: attach {}, selinuxRelabel {}, fsGroup {}, supportsMetrics {}, requiresFSResize {}",
            caps.attach,
            caps.selinux_relabel,
            caps.fs_group,
            caps.supports_metrics,
            caps.requires_fs_resize
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
    let driver = subject.driver;
    let restart = || driver.plugin().forget_unsupported();
    match call {
        Call::Init | Call::ExpandVolume | Call::ExpandFs => unreachable!("handled above"),
        Call::GetVolumeName => {
            let from = driver.transcript().len();
            let name = kubelet.volume_name()?;
            Ok(Verdict::Passed(format!(
                "{}: kubelet names the volume {name:?}",
                answered(driver, call, from)
            )))
        }
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
                    let first = match mounted.device_mount {
                        Some(MountedBy::KubeletDefault) => {
                            "Not supported: kubelet formatted and mounted the device"
                        }
                        Some(MountedBy::Nothing) => {
                            "Not supported and no device: kubelet mounted nothing"
                        }
                        _ => "Success",
                    };
                    // A restarted kubelet sets the volume up again; it calls mountdevice only
                    // when the directory does not look like a mount point.
                    restart();
                    let global = mounted.global_dir.as_deref().expect("attachable");
                    let again = match kubelet.mount_device(global, mounted.device.as_deref())? {
                        MountedBy::AlreadyMounted => {
                            "after a kubelet restart the directory is a mount point, so kubelet does not call it again"
                        }
                        _ => {
                            "after a kubelet restart, called again on the mounted directory: one mount"
                        }
                    };
                    format!("{first}; {again}")
                }
                Call::Mount => {
                    let first = match mounted.pod_mount {
                        Some(MountedBy::KubeletDefault) => {
                            "Not supported: kubelet bind-mounted the device mount path"
                        }
                        _ => "Success",
                    };
                    restart();
                    let mut again_m = mounted.clone();
                    kubelet.mount(&mut again_m, &pod)?;
                    let again = match again_m.pod_mount {
                        Some(MountedBy::AlreadyMounted) => {
                            "after a kubelet restart the directory is a mount point, so kubelet does not call it again"
                        }
                        _ => {
                            "after a kubelet restart, called again on the mounted directory: still one mount"
                        }
                    };
                    super::kubelet::check_single_mount(call, &mounted.pod_dir)?;
                    format!("{first}; {again}")
                }
                Call::Unmount => {
                    let from = driver.transcript().len();
                    kubelet.unmount_without_cleanup(&mounted.pod_dir)?;
                    let first = answered(driver, call, from);
                    // kubelet crashed before removing the directory: the restarted one tears
                    // it down again, calling unmount on an unmounted directory.
                    restart();
                    kubelet.unmount(&mounted.pod_dir)?;
                    format!(
                        "{first}; after a kubelet restart, unmount of the unmounted directory: Success, nothing mounted"
                    )
                }
                Call::UnmountDevice => {
                    let global = mounted.global_dir.as_deref().expect("attachable");
                    kubelet.unmount(&mounted.pod_dir)?;
                    let from = driver.transcript().len();
                    kubelet.unmount_device(global)?;
                    let first = answered(driver, call, from);
                    format!(
                        "{first}; nothing mounted (kubelet does not call it again on an unmounted directory)"
                    )
                }
                _ => {
                    scratch.mounted = None;
                    kubelet.teardown(&mounted)?;
                    let from = driver.transcript().len();
                    // The controller manager restarted and detaches the volume again.
                    restart();
                    kubelet.detach()?;
                    nothing_left(
                        Call::Detach,
                        &subject.kubelet_root,
                        &options.volume_name,
                        &mounted,
                    )?;
                    format!(
                        "teardown, then after a controller restart detach of the detached volume {:?}: {}, nothing left",
                        options.volume_name,
                        answered(driver, call, from)
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
    let mut mounted = Mounted::for_attach(layout);
    mounted.device = device.clone();
    mounted.device_backing = backing;
    let scratch = Scratch {
        kubelet,
        mounted: Some(mounted),
    };
    let dev = device.clone().unwrap_or_default();
    let note = match call {
        Call::Attach => {
            // The controller manager attaches again after a restart: same volume, same device.
            kubelet.driver.plugin().forget_unsupported();
            let (again, _) = kubelet.attach()?;
            if again != device {
                return Err(FlexError::Kernel {
                    call,
                    what: format!(
                        "a repeated attach of the attached volume gave {:?}, the first gave {dev:?}: the first device leaks",
                        again.unwrap_or_default()
                    ),
                });
            }
            format!("attach, then attach again after a controller restart: the same device {dev:?}")
        }
        Call::WaitForAttach => match &device {
            None => {
                kubelet.driver.plugin().warn(
                    call,
                    "no-device",
                    "gave no device (nor did attach): kubelet passes an empty device to mountdevice",
                );
                "no device: kubelet passes an empty device to mountdevice".to_string()
            }
            Some(d) => match block_device_number(Path::new(d)) {
                Ok(Some(_)) => format!("device {d} is a block device"),
                _ => {
                    kubelet.driver.plugin().warn(
                        call,
                        "not-block",
                        &format!("named {d:?}, which is not a block device: kubelet's default mountdevice could not format or mount it"),
                    );
                    format!("device {d:?} (not a block device)")
                }
            },
        },
        _ => {
            let before = kubelet.is_attached()?;
            drop(scratch);
            let after = kubelet.is_attached()?;
            match (before, after) {
                (Some(false), _) => {
                    return Err(FlexError::Kernel {
                        call,
                        what: "answered attached: false (or Success without \"attached\", which kubelet reads as false) for an attached volume: the controller would mark it detached and let it attach elsewhere".into(),
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
        && loop_still_backed(Path::new(dev), backing)
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
