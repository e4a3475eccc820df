//! `local: { flexvolume: … }` volumes: the local [`Backend`] over a flexVolume driver.
//!
//! Each volume gets its own plugin directory (`<volume dir>/plugins/pvcheck~<name>/<name>`), so a
//! driver swap in one trial never touches another trial's volume, and its own kubelet root
//! (`<volume dir>/kubelet/`: global mounts under `plugins/kubernetes.io/flexvolume/…`, pod mounts
//! under `pods/<uid>/volumes/…`). Unless the class sets the `dir` option, the volume's backing
//! data (the sample drivers' images and directories) goes to `<volume dir>/data`, created and
//! removed by pvcheck. Attaching is kubelet's set-up, detaching kubelet's tear-down; an upgrade
//! step swaps the executable in place (write + rename, as a DaemonSet does) and calls `init`.

use std::path::PathBuf;

use std::sync::Arc;

use super::driver::{Driver, DriverIdentity, PluginState, Timeouts, identity};
use super::embedded::write_executable;
use super::error::FlexError;
use super::kubelet::{Kubelet, Layout, Mounted};
use super::options::{PodInfo, VolumeOptions};
use super::protocol::{Call, Capabilities};
use crate::config::{ClassSpec, DriverSource, FlexvolumeSpec};
use crate::platform::local::backend::{Backend, BackendCtx};
use crate::platform::{PlatformError, UpgradeStep};
use crate::registry::Resource;

/// The vendor part of the plugin directory name (`<vendor>~<driver>`).
pub const VENDOR: &str = "pvcheck";
/// Name of the step that swaps in `upgrade.driver`.
pub const UPGRADE_STEP: &str = "upgrade";
/// Name of the step that swaps the class's driver back.
pub const ROLLBACK_STEP: &str = "rollback";

/// One driver version of the class: where it comes from, its staged copy, its identity.
#[derive(Debug, Clone)]
struct Version {
    role: &'static str,
    source: DriverSource,
    staged: Option<PathBuf>,
    identity: Option<DriverIdentity>,
}

pub struct FlexBackend {
    class: String,
    spec: FlexvolumeSpec,
    /// [0] the class's driver, [1] `upgrade.driver` when set.
    versions: Vec<Version>,
    rollback: bool,
    /// Index into `versions` of the installed driver.
    current: usize,
    installed: Option<PathBuf>,
    caps: Option<Capabilities>,
    /// What kubelet knows about the installed version ("Not supported" calls) and the warnings.
    plugin: Arc<PluginState>,
    /// Warnings of earlier driver versions not yet taken.
    pending: Vec<String>,
    options: Option<VolumeOptions>,
    kubelet_root: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    mounted: Option<Mounted>,
    pods: u32,
    node: String,
    effective_options: Option<String>,
}

impl FlexBackend {
    pub fn new(class: &ClassSpec, spec: FlexvolumeSpec) -> Self {
        let mut versions = vec![Version {
            role: "driver",
            source: spec.source(),
            staged: None,
            identity: None,
        }];
        let mut rollback = false;
        if let Some(u) = &class.upgrade
            && let Some(src) = u.driver_source.clone().or_else(|| {
                u.driver
                    .as_ref()
                    .map(|d| DriverSource::File(d.value.clone()))
            })
        {
            versions.push(Version {
                role: "upgrade",
                source: src,
                staged: None,
                identity: None,
            });
            rollback = u.rollback;
        }
        let node = nix::sys::utsname::uname()
            .map(|u| u.nodename().to_string_lossy().into_owned())
            .unwrap_or_else(|_| "localhost".into());
        FlexBackend {
            class: class.name().to_string(),
            spec,
            versions,
            rollback,
            current: 0,
            installed: None,
            caps: None,
            plugin: PluginState::new(),
            pending: Vec::new(),
            options: None,
            kubelet_root: None,
            data_dir: None,
            mounted: None,
            pods: 0,
            node,
            effective_options: None,
        }
    }

    fn timeouts(&self) -> Timeouts {
        let mut t = Timeouts::default();
        for c in Call::ALL {
            let limit = if c == Call::WaitForAttach {
                self.spec.waitforattach_timeout
            } else {
                self.spec.call_timeout
            };
            if let Some(d) = limit {
                t.per_call.insert(c, d.0);
            }
        }
        t
    }

    fn driver_in(&self, ctx: &BackendCtx) -> Result<Driver, PlatformError> {
        Ok(self
            .driver()?
            .with_spawn_hook(std::sync::Arc::new(RegistryHook(ctx.clone()))))
    }

    fn driver(&self) -> Result<Driver, PlatformError> {
        let path = self.installed.clone().ok_or_else(|| {
            PlatformError::Other(format!(
                "class {}: flexVolume driver not installed",
                self.class
            ))
        })?;
        Ok(Driver::new(path)
            .with_timeouts(self.timeouts())
            .with_plugin(self.plugin.clone()))
    }

    fn options(&self) -> Result<&VolumeOptions, PlatformError> {
        self.options.as_ref().ok_or_else(|| {
            PlatformError::Other(format!(
                "class {}: flexVolume volume not created",
                self.class
            ))
        })
    }

    /// A flexVolume error as the platform reports it: the first line names the class and the call.
    fn err(&self, e: FlexError) -> PlatformError {
        match e {
            FlexError::Protocol(_) | FlexError::Kernel { .. } => {
                PlatformError::Protocol(format!("class {}: {e}", self.class))
            }
            e => PlatformError::Other(format!("class {}: {e}", self.class)),
        }
    }

    /// Installs version `i` in the plugin directory (replacing what is there) and runs `init`.
    fn install(&mut self, ctx: &BackendCtx, i: usize) -> Result<(), PlatformError> {
        let v = &self.versions[i];
        let staged = v
            .staged
            .clone()
            .ok_or_else(|| PlatformError::Other("driver not staged".into()))?;
        let name = v.source.file_name();
        let target = ctx
            .work_dir
            .join("plugins")
            .join(format!("{VENDOR}~{name}"))
            .join(&name);
        let bytes = std::fs::read(&staged)
            .map_err(|e| PlatformError::io(format!("reading {}", staged.display()), e))?;
        write_executable(&target, &bytes).map_err(|e| {
            PlatformError::io(
                format!("installing the flexVolume driver at {}", target.display()),
                e,
            )
        })?;
        self.installed = Some(target);
        self.current = i;
        // kubelet's prober makes a new plugin for a changed driver: it forgets what answered
        // "Not supported". The old version's warnings stay to be taken.
        self.pending.extend(self.plugin.take_warnings());
        self.plugin = PluginState::new();
        // kubelet probes a driver again when its executable changes: init, capabilities.
        let driver = self.driver_in(ctx)?;
        let opts = self.options()?.clone();
        let mut k = Kubelet::new(&driver, &self.node, &opts);
        let caps = k.init().map_err(|e| self.err(e))?;
        self.caps = Some(caps);
        Ok(())
    }

    /// Protocol checks need the same set-up as a volume: see [`super::conformance`].
    pub fn conformance_subject_parts(&self) -> Option<(PathBuf, VolumeOptions, PathBuf, String)> {
        Some((
            self.installed.clone()?,
            self.options.clone()?,
            self.kubelet_root.clone()?,
            self.versions[self.current].source.file_name(),
        ))
    }

    pub fn driver_for_checks(&self) -> Result<Driver, PlatformError> {
        self.driver()
    }
}

impl Backend for FlexBackend {
    fn kind(&self) -> &'static str {
        "flexvolume"
    }

    fn create(&mut self, ctx: &BackendCtx) -> Result<(), PlatformError> {
        // Stage every version in the run's own directory, executable, and identify it.
        for i in 0..self.versions.len() {
            let v = &self.versions[i];
            let bytes = v.source.bytes().map_err(|e| {
                PlatformError::Other(format!(
                    "class {}: flexVolume driver {}: {e}",
                    self.class,
                    v.source.describe()
                ))
            })?;
            let staged = ctx
                .work_dir
                .join("drivers")
                .join(v.role)
                .join(v.source.file_name());
            write_executable(&staged, &bytes)
                .map_err(|e| PlatformError::io(format!("writing {}", staged.display()), e))?;
            let id = identity(&staged)
                .map_err(|e| PlatformError::io(format!("identifying {}", staged.display()), e))?;
            let v = &mut self.versions[i];
            v.identity = Some(DriverIdentity {
                path: v.source.describe(),
                ..id
            });
            v.staged = Some(staged);
        }
        let mut user = self.spec.user_options.clone();
        if !user.contains_key("dir") {
            let data = ctx.work_dir.join("data");
            let _op = ctx.record(Resource::Dir { path: data.clone() })?;
            std::fs::create_dir_all(&data)
                .map_err(|e| PlatformError::io(format!("mkdir {}", data.display()), e))?;
            user.insert("dir".into(), data.display().to_string());
            self.data_dir = Some(data);
        }
        self.options = Some(VolumeOptions {
            user,
            fs_type: self.spec.fs_type.clone(),
            read_only: false,
            fs_group: None,
            volume_name: ctx.volume.clone(),
            secrets: self.spec.secrets.clone(),
        });
        self.kubelet_root = Some(ctx.work_dir.join("kubelet"));
        self.install(ctx, 0)
    }

    fn attach_mount(&mut self, ctx: &BackendCtx) -> Result<PathBuf, PlatformError> {
        let root = self
            .kubelet_root
            .clone()
            .ok_or_else(|| PlatformError::Other("flexVolume volume not created".into()))?;
        self.pods += 1;
        let uid = format!("{}-pod{}", ctx.volume, self.pods);
        let name = self.versions[self.current].source.file_name();
        let layout = Layout::new(&root, VENDOR, &name, &ctx.volume, &uid);
        let pod = PodInfo {
            name: format!("pvcheck-{}", self.pods),
            namespace: "pvcheck".into(),
            uid,
            service_account: "default".into(),
        };
        // Recorded before they exist, so a crash in the middle leaves nothing `pvcheck cleanup`
        // cannot find; the sample loop driver's image is <dir>/<volume>.img.
        let data_image = self
            .data_dir
            .as_ref()
            .map(|d| d.join(format!("{}.img", ctx.volume)));
        // The guards are held until set-up ends: a run shutting down waits for them, then
        // removes what they name.
        let _global = ctx.record(Resource::Mount {
            path: layout.global_dir.clone(),
        })?;
        let _pod = ctx.record(Resource::Mount {
            path: layout.pod_dir.clone(),
        })?;
        let _image = match &data_image {
            Some(img) => Some(ctx.record(Resource::Loop { image: img.clone() })?),
            None => None,
        };
        let driver = self.driver_in(ctx)?;
        let opts = self.options()?.clone();
        let mut k = Kubelet::new(&driver, &self.node, &opts).with_capabilities(self.caps);
        let m = k.setup(&layout, &pod).map_err(|e| self.err(e))?;
        if let Some(backing) = &m.device_backing
            && Some(backing) != data_image.as_ref()
        {
            let _op = ctx.record(Resource::Loop {
                image: backing.clone(),
            })?;
        }
        self.effective_options = crate::sys::mount_options(&m.pod_dir);
        let dir = m.pod_dir.clone();
        self.mounted = Some(m);
        Ok(dir)
    }

    fn unmount_detach(&mut self, ctx: &BackendCtx) -> Result<(), PlatformError> {
        let Some(m) = self.mounted.take() else {
            return Ok(());
        };
        let driver = self.driver_in(ctx)?;
        let opts = self.options()?.clone();
        let k = Kubelet::new(&driver, &self.node, &opts).with_capabilities(self.caps);
        k.teardown(&m).map_err(|e| self.err(e))
    }

    fn take_warnings(&mut self) -> Vec<String> {
        let mut w = std::mem::take(&mut self.pending);
        w.extend(self.plugin.take_warnings());
        w
    }

    fn upgrade_steps(&self) -> Vec<UpgradeStep> {
        let mut steps = Vec::new();
        if self.versions.len() > 1 {
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

    fn driver_version(&self) -> Option<String> {
        // The checksum tells two builds apart where the version line does not.
        let id = self.versions[self.current].identity.as_ref()?;
        let sha = id.sha256.get(..12).unwrap_or(&id.sha256);
        Some(match &id.version {
            Some(v) => format!("{v} (sha256:{sha})"),
            None => format!("sha256:{sha}"),
        })
    }

    fn upgrade(&mut self, ctx: &BackendCtx, step: &UpgradeStep) -> Result<(), PlatformError> {
        let to = match step.name.as_str() {
            UPGRADE_STEP if self.versions.len() > 1 => 1,
            ROLLBACK_STEP if self.versions.len() > 1 => 0,
            other => {
                return Err(PlatformError::Unsupported(format!(
                    "class {}: no flexVolume upgrade step {other:?}",
                    self.class
                )));
            }
        };
        self.install(ctx, to)
    }

    fn destroy(&mut self, ctx: &BackendCtx) -> Result<(), PlatformError> {
        self.unmount_detach(ctx)?;
        if let Some(d) = self.data_dir.take() {
            crate::sys::remove_resource(&Resource::Dir { path: d })
                .map_err(PlatformError::Other)?;
        }
        Ok(())
    }

    fn fingerprint(&self) -> serde_json::Value {
        let drivers: Vec<serde_json::Value> = self
            .versions
            .iter()
            .map(|v| serde_json::json!({ "role": v.role, "identity": v.identity }))
            .collect();
        serde_json::json!({
            "flexvolume": {
                "drivers": drivers,
                "installed": self.versions[self.current].role,
                "fs_type": self.spec.fs_type,
                "options": self.spec.user_options,
                "attach": self.caps.map(|c| c.attach),
                "effective_mount_options": self.effective_options,
            }
        })
    }

    fn location(&self) -> String {
        let mut s = format!(
            "flexVolume driver {}",
            self.installed
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        );
        if let Some(d) = &self.data_dir {
            s.push_str(&format!(", data in {}", d.display()));
        }
        if let Some(m) = &self.mounted {
            if let Some(dev) = &m.device {
                s.push_str(&format!(", device {dev}"));
            }
            if let Some(g) = &m.global_dir {
                s.push_str(&format!(", global mount {}", g.display()));
            }
        }
        s
    }
}

/// Records every driver call's process in the run registry (while the run accepts new work), so a
/// run shutting down kills a call still in flight with its process group.
struct RegistryHook(BackendCtx);

impl super::call::SpawnHook for RegistryHook {
    fn spawn(
        &self,
        spawn: &mut dyn FnMut() -> std::io::Result<std::process::Child>,
    ) -> std::io::Result<std::process::Child> {
        let op = self.0.registry.begin().map_err(|_| {
            std::io::Error::other("the run is shutting down: no new driver call is made")
        })?;
        let child = spawn()?;
        let pid = child.id() as i32;
        let start_time = crate::sys::process_start_time(pid).unwrap_or(0);
        // A failed record only loses the Ctrl-C kill; PR_SET_PDEATHSIG still ends the call.
        let _ = self.0.registry.record(
            &op,
            Resource::Process { pid, start_time },
            Some(&self.0.class),
            Some(&self.0.volume),
        );
        Ok(child)
    }
}

/// One `flexvolume::<call>` check on a scratch volume set up like a class volume (staged driver,
/// data directory, kubelet root), removed afterwards whatever the outcome.
pub fn protocol_check(
    class: &ClassSpec,
    spec: &FlexvolumeSpec,
    ctx: &BackendCtx,
    check: &str,
) -> Result<crate::platform::ProtocolOutcome, PlatformError> {
    use super::conformance::{self, Subject, Verdict};
    use crate::platform::ProtocolOutcome;
    let call = Call::CHECKED
        .into_iter()
        .find(|c| c.name() == check)
        .ok_or_else(|| PlatformError::Unsupported(format!("no flexVolume call {check:?}")))?;
    let mut b = FlexBackend::new(class, spec.clone());
    let result = (|| {
        b.create(ctx)?;
        let (installed, options, root, name) = b
            .conformance_subject_parts()
            .ok_or_else(|| PlatformError::Other("flexVolume volume not created".into()))?;
        // Everything the check mounts or attaches is recorded first, and the guards are held for
        // the whole check, so a run shutting down waits for it and then removes what is left.
        let volume = format!("{}-{}", options.volume_name, call.name());
        let layout = conformance::layout_for(call, &root, VENDOR, &name, &volume);
        let _global = ctx.record(Resource::Mount {
            path: layout.global_dir.clone(),
        })?;
        let _pod = ctx.record(Resource::Mount {
            path: layout.pod_dir.clone(),
        })?;
        let _image = match &b.data_dir {
            Some(d) => Some(ctx.record(Resource::Loop {
                image: d.join(format!("{volume}.img")),
            })?),
            None => None,
        };
        // A fresh kubelet: the scratch volume's driver was just installed.
        let driver = Driver::new(installed)
            .with_timeouts(b.timeouts())
            .with_plugin(PluginState::new())
            .with_spawn_hook(std::sync::Arc::new(RegistryHook(ctx.clone())));
        let subject = Subject {
            driver: &driver,
            options,
            kubelet_root: root,
            vendor: VENDOR.into(),
            driver_name: name,
            node: b.node.clone(),
        };
        let verdict = conformance::check(call, &subject);
        let mut warnings = b.take_warnings();
        warnings.extend(driver.plugin().take_warnings());
        match verdict {
            Ok(Verdict::Passed(note)) if warnings.is_empty() => Ok(ProtocolOutcome::Passed(note)),
            Ok(Verdict::Passed(summary)) => Ok(ProtocolOutcome::Warned { summary, warnings }),
            Ok(Verdict::NotApplicable(reason)) => Ok(ProtocolOutcome::NotApplicable(reason)),
            Err(e) => Err(b.err(e)),
        }
    })();
    let destroyed = b.destroy(ctx);
    match (result, destroyed) {
        (Ok(o), Ok(())) => Ok(o),
        (Ok(_), Err(e)) => Err(e),
        (Err(e), _) => Err(e),
    }
}
