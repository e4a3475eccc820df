//! `local: { flexvolume: … }` volumes: the local [`Backend`] over a flexVolume driver.
//!
//! Each volume gets its own plugin directory (`<volume dir>/plugins/pvcheck~<name>/<name>`), so a
//! driver swap in one trial never touches another trial's volume, and its own kubelet root
//! (`<volume dir>/kubelet/`: global mounts under `plugins/kubernetes.io/flexvolume/…`, pod mounts
//! under `pods/<uid>/volumes/…`). Unless the class sets the `dir` option, the volume's backing
//! data (the sample drivers' images and directories) goes to `<volume dir>/data`, created and
//! removed by pvcheck. Attaching is kubelet's set-up, detaching kubelet's tear-down; an upgrade
//! step swaps the executable in place (write + rename, as a DaemonSet does) and calls `init`.

use std::path::{Path, PathBuf};

use std::sync::{Arc, Mutex};

use super::driver::{Driver, DriverIdentity, PluginState, Timeouts, identity};
use super::embedded::write_executable;
use super::error::FlexError;
use super::kubelet::{Kubelet, Layout, Mounted};
use super::left;
use super::options::{PodInfo, VolumeOptions};
use super::protocol::{Call, Capabilities};
use crate::config::{ClassSpec, DriverSource, FlexvolumeSpec};
use crate::platform::local::backend::{Backend, BackendCtx};
use crate::platform::{DriverWindow, MountCount, PlatformError, UpgradeStep};
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
    /// The pids (= process groups) of this volume's driver calls: what a call left running is
    /// found by them ([`left`]).
    calls: Arc<Mutex<Vec<i32>>>,
    /// When the last [`FlexBackend::install`] renamed the new executable into place (Unix ms).
    swapped_ms: u64,
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
            calls: Arc::default(),
            swapped_ms: 0,
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
            .with_spawn_hook(std::sync::Arc::new(RegistryHook(
                ctx.clone(),
                Some(self.calls.clone()),
            ))))
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
        self.swapped_ms = crate::sys::unix_ms();
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

    /// What this volume's driver calls left running now (see [`left`]).
    fn left_processes(&self, ctx: &BackendCtx) -> Vec<left::LeftProcess> {
        let calls = self.calls.lock().unwrap_or_else(|e| e.into_inner()).clone();
        left::find(&ctx.run_id, &calls, &ctx.work_dir)
    }

    fn step_index(&self, step: &UpgradeStep) -> Result<usize, PlatformError> {
        match step.name.as_str() {
            UPGRADE_STEP if self.versions.len() > 1 => Ok(1),
            ROLLBACK_STEP if self.versions.len() > 1 => Ok(0),
            other => Err(PlatformError::Unsupported(format!(
                "class {}: no flexVolume upgrade step {other:?}",
                self.class
            ))),
        }
    }

    /// The published volume's mounts, for messages: `<pod dir>` and `<global dir>`.
    fn mounted_paths(&self) -> String {
        match &self.mounted {
            Some(m) => {
                let mut s = m.pod_dir.display().to_string();
                if let Some(g) = &m.global_dir {
                    s.push_str(&format!(" (device mount {})", g.display()));
                }
                s
            }
            None => "nothing (no pod)".into(),
        }
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
        let to = self.step_index(step)?;
        self.install(ctx, to)
    }

    /// The executable under the plugin directory is replaced (write + rename, as a DaemonSet
    /// installing a driver does) while the volume stays mounted, and kubelet's prober calls
    /// `init` of the new one. Whatever the old release left running for the mount (a FUSE
    /// daemon) keeps running, as under kubelet: the report lists it before and after. The
    /// new release meets the pre-upgrade volume at the next tear-down (the recreate).
    fn upgrade_live(
        &mut self,
        ctx: &BackendCtx,
        step: &UpgradeStep,
    ) -> Result<DriverWindow, PlatformError> {
        let to = self.step_index(step)?;
        let before = self.left_processes(ctx);
        let from = self.driver_version();
        let began = crate::sys::unix_ms();
        self.install(ctx, to)?;
        let answered = crate::sys::unix_ms();
        let after = self.left_processes(ctx);
        Ok(DriverWindow {
            what: step.name.clone(),
            began_ms: began,
            old_stopped_ms: Some(self.swapped_ms),
            new_answered_ms: answered,
            node: None,
            report: serde_json::json!({
                "driver_swap": "flexvolume",
                "in_place": self.mounted.is_some(),
                "executable": self.installed.as_ref().map(|p| p.display().to_string()),
                "from": from,
                "to": self.driver_version(),
                "answered": "init",
                "processes_left_for_the_volume_before": before,
                "processes_left_for_the_volume_after": after,
            }),
        })
    }

    /// A flexVolume driver has no process of its own: what can die under a mounted volume is
    /// what the driver left running for it (a FUSE daemon), and that is SIGKILLed. Where the
    /// driver left nothing, there is nothing to kill and the check says so (`Unsupported`).
    /// kubelet restarts nothing: the "restarted driver" is the next call, `init`.
    fn kill_driver(&mut self, ctx: &BackendCtx) -> Result<DriverWindow, PlatformError> {
        let procs = self.left_processes(ctx);
        if procs.is_empty() {
            return Err(PlatformError::Unsupported(format!(
                "the flexVolume driver {} left no process running for volume {} (mounted at {}): it is an executable kubelet runs per call, and the volume's data path is the kernel's, so there is no driver process to kill",
                self.versions[self.current].source.describe(),
                ctx.volume,
                self.mounted_paths()
            )));
        }
        let began = crate::sys::unix_ms();
        left::kill_all(&procs).map_err(|e| {
            PlatformError::Other(format!(
                "class {}: killing what the flexVolume driver left for volume {}: {e}",
                self.class, ctx.volume
            ))
        })?;
        let stopped = crate::sys::unix_ms();
        let driver = self.driver_in(ctx)?;
        let opts = self.options()?.clone();
        let mut k = Kubelet::new(&driver, &self.node, &opts);
        let caps = k.init().map_err(|e| self.err(e))?;
        self.caps = Some(caps);
        let answered = crate::sys::unix_ms();
        Ok(DriverWindow {
            what: "SIGKILL".into(),
            began_ms: began,
            old_stopped_ms: Some(stopped),
            new_answered_ms: answered,
            node: None,
            report: serde_json::json!({
                "signal": "SIGKILL",
                "killed": procs,
                "restarted": "nothing: kubelet runs a flexVolume driver per call and restarts no process; the driver answered init again",
            }),
        })
    }

    /// The pod's mount and, for an attachable driver, the device mount: once each; anything
    /// else mounted under the volume's kubelet root is orphaned.
    fn mount_counts(&self, ctx: &BackendCtx) -> Result<Vec<MountCount>, PlatformError> {
        let mut places: Vec<(&str, &Path)> = Vec::new();
        if let Some(m) = &self.mounted {
            if let Some(g) = &m.global_dir {
                places.push(("staging", g));
            }
            places.push(("published", &m.pod_dir));
        }
        crate::platform::local::mounts::counts_under(&places, &ctx.work_dir.join("kubelet"))
            .map_err(|e| PlatformError::io("reading /proc/self/mountinfo", e))
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
/// The second field, where given, collects the calls' pids (each call is its own process group).
struct RegistryHook(BackendCtx, Option<Arc<Mutex<Vec<i32>>>>);

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
        if let Some(calls) = &self.1 {
            let mut c = calls.lock().unwrap_or_else(|e| e.into_inner());
            if !c.contains(&pid) {
                c.push(pid);
            }
        }
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
            .with_spawn_hook(std::sync::Arc::new(RegistryHook(ctx.clone(), None)));
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
