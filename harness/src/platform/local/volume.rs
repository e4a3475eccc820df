//! A local volume over any [`Backend`], and its pod: an agent process beside the mount.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::backend::{Backend, BackendCtx};
use crate::config::UpgradeSpec;
use crate::platform::{
    AgentBinary, AgentCall, AgentOutput, AgentProcess, AgentTarget, Capacity, DriverWindow,
    MountCount, PlatformError, Pod, UpgradeStep, Volume,
};
use crate::registry::Resource;
use crate::{signals, sys};

/// The steps that run the class's `upgrade.command`: once between the write and the first
/// verify, once more between the rewrite and the second verify ("runs between phases"), so a
/// command can also act on data written after the first upgrade (e.g. put back an older copy).
pub const COMMAND_STEPS: [&str; 2] = ["upgrade", "upgrade-after-rewrite"];

/// A local volume: a backend plus the generic pod, recreation and upgrade logic.
pub struct LocalVolume {
    pub(super) ctx: BackendCtx,
    pub(super) backend: Box<dyn Backend>,
    pub(super) agent: AgentBinary,
    pub(super) upgrade: Option<UpgradeSpec>,
    pub(super) upgrade_timeout: Duration,
    /// Upgrade commands run here: the directory of the class file, so `./script.sh` works.
    pub(super) upgrade_cwd: Option<PathBuf>,
    /// The directory the agent uses while attached.
    pub(super) attached: Option<PathBuf>,
    /// What the last upgrade step ran (see [`Volume::take_upgrade_report`]).
    pub(super) last_upgrade: Option<serde_json::Value>,
    pub(super) requested: u64,
    /// Destroyed or kept: Drop leaves it alone.
    pub(super) done: bool,
}

impl Drop for LocalVolume {
    fn drop(&mut self) {
        // A volume dropped without destroy() (a panicking check) is still removed.
        if !self.done {
            self.done = true;
            let _ = self.detach();
            let _ = self.backend.destroy(&self.ctx);
        }
    }
}

impl LocalVolume {
    fn detach(&mut self) -> Result<(), PlatformError> {
        if self.attached.take().is_some() {
            self.backend.unmount_detach(&self.ctx)?;
        }
        Ok(())
    }

    /// Runs the class's upgrade command, then polls `ready`, both within the upgrade timeout.
    fn run_upgrade_command(
        &mut self,
        spec: &UpgradeSpec,
        step: &str,
        volume_dir: &Path,
    ) -> Result<(), PlatformError> {
        let deadline = Instant::now() + self.upgrade_timeout;
        let vars = [
            ("PVCHECK_CLASS", self.ctx.class.clone()),
            ("PVCHECK_RUN_ID", self.ctx.run_id.clone()),
            ("PVCHECK_VOLUME_ID", self.ctx.volume.clone()),
            ("PVCHECK_UPGRADE_STEP", step.to_string()),
        ];
        let env = move |c: &mut Command| {
            c.envs(vars.iter().map(|(k, v)| (k, v)))
                .env("PVCHECK_VOLUME_DIR", volume_dir);
        };
        if let Some(command) = &spec.command {
            let mut c = Command::new("sh");
            c.arg("-c").arg(command);
            env(&mut c);
            if let Some(d) = &self.upgrade_cwd {
                c.current_dir(d);
            }
            let start = Instant::now();
            let out = self.run_recorded(
                &mut c,
                deadline.saturating_duration_since(Instant::now()),
                command,
            );
            self.last_upgrade = Some(serde_json::json!({
                "command": command,
                "exit_status": match &out {
                    Ok(o) => sys::exit_status_string(&o.status),
                    Err(e) => e.to_string(),
                },
                "seconds": start.elapsed().as_secs_f64(),
                "output_tail": out.as_ref().map(output_tail).unwrap_or_default(),
            }));
            let out = out.map_err(|e| match e {
                PlatformError::Timeout { .. } => PlatformError::Timeout {
                    command: format!("upgrade.command {command:?}"),
                    limit: self.upgrade_timeout,
                },
                e => e,
            })?;
            if !out.status.success() {
                let stderr = String::from_utf8_lossy(&out.stderr);
                return Err(PlatformError::Command {
                    command: format!("upgrade.command {command:?}"),
                    status: sys::exit_status_string(&out.status),
                    stderr: stderr
                        .lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty())
                        .collect::<Vec<_>>()
                        .join("; "),
                });
            }
        }
        if let Some(ready) = &spec.ready {
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(PlatformError::Timeout {
                        command: format!("upgrade.ready {ready:?}"),
                        limit: self.upgrade_timeout,
                    });
                }
                let mut c = Command::new("sh");
                c.arg("-c").arg(ready);
                env(&mut c);
                if let Some(d) = &self.upgrade_cwd {
                    c.current_dir(d);
                }
                match self.run_recorded(&mut c, left, ready) {
                    Ok(out) if out.status.success() => break,
                    Ok(_) => std::thread::sleep(Duration::from_millis(200).min(left)),
                    Err(PlatformError::Timeout { .. }) => {
                        return Err(PlatformError::Timeout {
                            command: format!("upgrade.ready {ready:?}"),
                            limit: self.upgrade_timeout,
                        });
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    /// Runs a shell command recorded in the registry (so Ctrl-C or a crash cannot leave it running).
    fn run_recorded(
        &self,
        c: &mut Command,
        limit: Duration,
        what: &str,
    ) -> Result<std::process::Output, PlatformError> {
        c.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = spawn_recorded(&self.ctx, c, &format!("{what:?}"))?;
        match sys::wait_captured(&mut child, limit, what, &signals::interrupted) {
            Err(PlatformError::Timeout { limit, .. }) => Err(PlatformError::Timeout {
                command: what.to_string(),
                limit,
            }),
            other => other,
        }
    }
}

/// How many of an upgrade command's last output lines its step's record keeps.
const OUTPUT_TAIL: usize = 5;

/// The last non-empty lines of a command's stdout, then its stderr.
fn output_tail(out: &std::process::Output) -> Vec<String> {
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<String> = text
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    lines[lines.len().saturating_sub(OUTPUT_TAIL)..].to_vec()
}

/// Starts `c` in its own process group and records it under the run label within one
/// registry operation, so an interrupt can never see the process without its record.
/// `label` names the command in the error ("cannot start {label}").
fn spawn_recorded(ctx: &BackendCtx, c: &mut Command, label: &str) -> Result<Child, PlatformError> {
    let op = ctx
        .registry
        .begin()
        .map_err(|_| PlatformError::Interrupted)?;
    let child =
        sys::spawn_group(c).map_err(|e| PlatformError::io(format!("cannot start {label}"), e))?;
    let pid = child.id() as i32;
    let start_time = sys::process_start_time(pid).unwrap_or(0);
    ctx.registry
        .record(
            &op,
            Resource::Process { pid, start_time },
            Some(&ctx.class),
            Some(&ctx.volume),
        )
        .map_err(|e| PlatformError::Registry(e.to_string()))?;
    Ok(child)
}

impl Volume for LocalVolume {
    fn id(&self) -> &str {
        &self.ctx.volume
    }

    fn take_warnings(&mut self) -> Vec<String> {
        self.backend.take_warnings()
    }

    fn driver_version(&self) -> Option<String> {
        self.backend.driver_version()
    }

    fn take_driver_calls(&mut self) -> Vec<String> {
        self.backend.take_driver_calls()
    }

    fn take_upgrade_report(&mut self) -> Option<serde_json::Value> {
        self.last_upgrade.take()
    }

    fn size(&self) -> u64 {
        self.backend.size().unwrap_or_else(|| {
            let dir = self
                .attached
                .clone()
                .unwrap_or_else(|| PathBuf::from(self.backend.location()));
            sys::statvfs(&dir).map(|(total, _)| total).unwrap_or(0)
        })
    }

    fn fingerprint(&self) -> serde_json::Value {
        let mut fp = self.backend.fingerprint();
        if let Some(o) = fp.as_object_mut() {
            o.insert("kind".into(), self.backend.kind().into());
            o.insert("volume_id".into(), self.ctx.volume.clone().into());
            o.insert("requested_bytes".into(), self.requested.into());
        }
        fp
    }

    fn start_pod(&mut self) -> Result<Box<dyn Pod>, PlatformError> {
        if self.attached.is_some() {
            return Err(PlatformError::Other(format!(
                "volume {} already has a pod",
                self.ctx.volume
            )));
        }
        let dir = match self.backend.attach_mount(&self.ctx) {
            Ok(d) => d,
            Err(e) => {
                // Half-attached (loop device set up, mount failed): undo what was done.
                let _ = self.backend.unmount_detach(&self.ctx);
                return Err(e);
            }
        };
        self.attached = Some(dir.clone());
        Ok(Box::new(LocalPod {
            ctx: self.ctx.clone(),
            agent: self.agent.clone(),
            block: sys::is_block_device(&dir),
            dir,
            children: Vec::new(),
        }))
    }

    fn stop_pod(&mut self, pod: Box<dyn Pod>) -> Result<(), PlatformError> {
        // Ending the pod ends its processes (LocalPod's Drop), then the volume is unmounted.
        drop(pod);
        self.detach()
    }

    fn upgrade_steps(&self) -> Vec<UpgradeStep> {
        let mut steps = Vec::new();
        if self.upgrade.as_ref().is_some_and(|u| u.command.is_some()) {
            steps.extend(
                COMMAND_STEPS
                    .iter()
                    .map(|n| UpgradeStep { name: (*n).into() }),
            );
        }
        steps.extend(self.backend.upgrade_steps());
        steps
    }

    fn upgrade(
        &mut self,
        pod: Box<dyn Pod>,
        step: &UpgradeStep,
    ) -> Result<Box<dyn Pod>, PlatformError> {
        let dir = pod.data_dir().to_path_buf();
        drop(pod); // the agent stops before the upgrade, as a pod would be deleted
        self.last_upgrade = None;
        let is_command = COMMAND_STEPS.contains(&step.name.as_str())
            && self.upgrade.as_ref().is_some_and(|u| u.command.is_some());
        if is_command {
            // Drivers are replaced while volumes are mounted: run the command with the volume mounted.
            let spec = self
                .upgrade
                .clone()
                .ok_or_else(|| PlatformError::Other("no upgrade".into()))?;
            self.run_upgrade_command(&spec, &step.name, &dir)?;
            self.backend.after_upgrade_command(&self.ctx)?;
            self.detach()?;
        } else if self.backend.upgrades_in_place() && self.attached.is_some() {
            // The volume stays published: the pod goes on over the same mount.
            self.last_upgrade = Some(serde_json::json!({
                "driver_swap": self.backend.kind(),
                "in_place": true,
            }));
            self.backend.upgrade(&self.ctx, step)?;
            return Ok(Box::new(LocalPod {
                ctx: self.ctx.clone(),
                agent: self.agent.clone(),
                block: sys::is_block_device(&dir),
                dir,
                children: Vec::new(),
            }));
        } else {
            self.detach()?;
            self.last_upgrade = Some(serde_json::json!({
                "driver_swap": self.backend.kind(),
                "in_place": false,
            }));
            self.backend.upgrade(&self.ctx, step)?;
        }
        self.start_pod()
    }

    fn upgrade_live(&mut self, step: &UpgradeStep) -> Result<DriverWindow, PlatformError> {
        self.last_upgrade = None;
        let is_command = COMMAND_STEPS.contains(&step.name.as_str())
            && self.upgrade.as_ref().is_some_and(|u| u.command.is_some());
        if !is_command {
            let w = self.backend.upgrade_live(&self.ctx, step)?;
            self.last_upgrade = Some(w.report.clone());
            return Ok(w);
        }
        // The class's command runs while the agent writes; then the driver is waited for.
        if !matches!(self.backend.kind(), "csi" | "flexvolume") {
            return Err(PlatformError::Unsupported(format!(
                "{} volumes: live-upgrade runs on the local platform's csi and flexvolume kinds only",
                self.backend.kind()
            )));
        }
        let spec = self
            .upgrade
            .clone()
            .ok_or_else(|| PlatformError::Other("no upgrade".into()))?;
        let dir = self
            .attached
            .clone()
            .unwrap_or_else(|| self.ctx.mount_point.clone());
        let began = sys::unix_ms();
        self.run_upgrade_command(&spec, &step.name, &dir)?;
        self.backend.after_upgrade_command(&self.ctx)?;
        Ok(DriverWindow {
            what: step.name.clone(),
            began_ms: began,
            old_stopped_ms: None,
            new_answered_ms: sys::unix_ms(),
            node: None,
            report: self.last_upgrade.clone().unwrap_or_default(),
        })
    }

    fn kill_driver(&mut self) -> Result<DriverWindow, PlatformError> {
        self.backend.kill_driver(&self.ctx)
    }

    fn mount_counts(&self) -> Result<Vec<MountCount>, PlatformError> {
        self.backend.mount_counts(&self.ctx)
    }

    fn expand(&mut self, new_size: u64) -> Result<(), PlatformError> {
        let mounted = self
            .attached
            .is_some()
            .then(|| self.ctx.mount_point.clone());
        self.backend.expand(&self.ctx, mounted.as_deref(), new_size)
    }

    fn snapshot(&mut self, name: &str) -> Result<Box<dyn Volume>, PlatformError> {
        self.derived(name, true)
    }

    fn clone_volume(&mut self, name: &str) -> Result<Box<dyn Volume>, PlatformError> {
        self.derived(name, false)
    }

    fn keep(mut self: Box<Self>) -> String {
        self.done = true;
        let op = self.ctx.registry.begin();
        if let Ok(op) = &op {
            let _ = self.ctx.registry.record(
                op,
                Resource::Kept {
                    kept: self.ctx.volume.clone(),
                },
                Some(&self.ctx.class),
                Some(&self.ctx.volume),
            );
        }
        // Where the data is; the check adds where its ledgers are (the trial's directory).
        let mut s = self.backend.location();
        if let Some(d) = &self.attached {
            s.push_str(&format!(", mounted at {}", d.display()));
        }
        // Not destroyed: the registry entry keeps it out of the end-of-run removal.
        s
    }

    fn destroy(mut self: Box<Self>) -> Result<(), PlatformError> {
        self.done = true;
        let detached = self.detach();
        let destroyed = self.backend.destroy(&self.ctx);
        detached.and(destroyed)
    }
}

/// The local "pod": agent processes started beside the mount; ending it kills them.
struct LocalPod {
    ctx: BackendCtx,
    agent: AgentBinary,
    /// The mount point, or the device node of a published raw block volume (`block`).
    dir: PathBuf,
    block: bool,
    /// Background agents (pid), killed when the pod ends.
    children: Vec<i32>,
}

impl LocalPod {
    fn command(&self, call: &AgentCall) -> Command {
        let mut c = Command::new(&self.agent.path);
        c.args(&self.agent.prefix).args(&call.args);
        for (flag, path) in &call.inputs {
            c.arg(flag).arg(path); // the agent runs on this machine: harness paths are its paths
        }
        c.stdin(Stdio::null());
        c
    }

    fn spawn(&mut self, c: &mut Command) -> Result<(Child, String), PlatformError> {
        let line = sys::command_line(c);
        let child = spawn_recorded(&self.ctx, c, &format!("`{line}`"))?;
        Ok((child, line))
    }
}

impl Pod for LocalPod {
    fn data_dir(&self) -> &Path {
        &self.dir
    }

    fn target(&self) -> AgentTarget<'_> {
        if self.block {
            AgentTarget::Device(&self.dir)
        } else {
            AgentTarget::Dir(&self.dir)
        }
    }

    fn capacity(&self) -> Result<Capacity, PlatformError> {
        if self.block {
            let dev = std::fs::File::open(&self.dir)
                .map_err(|e| PlatformError::io(format!("opening {}", self.dir.display()), e))?;
            let size = pvcheck_workloads::integrity::io::target_size(&dev, &self.dir)
                .map_err(|e| PlatformError::Other(e.to_string()))?;
            return Ok(Capacity {
                total_bytes: size,
                available_bytes: size,
            });
        }
        let (total_bytes, available_bytes) = sys::statvfs(&self.dir)
            .map_err(|e| PlatformError::io(format!("statfs {}", self.dir.display()), e))?;
        Ok(Capacity {
            total_bytes,
            available_bytes,
        })
    }

    fn run_agent(&mut self, call: &AgentCall) -> Result<AgentOutput, PlatformError> {
        let mut c = self.command(call);
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        let start = Instant::now();
        let (mut child, line) = self.spawn(&mut c)?;
        let out = sys::wait_captured(&mut child, call.timeout, &line, &signals::interrupted)?;
        use std::os::unix::process::ExitStatusExt;
        Ok(AgentOutput {
            command: line,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            code: out.status.code(),
            signal: out.status.signal(),
            elapsed: start.elapsed(),
        })
    }

    fn spawn_agent(
        &mut self,
        call: &AgentCall,
        stdout_to: &Path,
    ) -> Result<Box<dyn AgentProcess>, PlatformError> {
        let mut c = self.command(call);
        let out = File::create(stdout_to)
            .map_err(|e| PlatformError::io(stdout_to.display().to_string(), e))?;
        let err_path = stdout_to.with_extension("stderr");
        let err = File::create(&err_path)
            .map_err(|e| PlatformError::io(err_path.display().to_string(), e))?;
        c.stdout(out).stderr(err);
        let (child, line) = self.spawn(&mut c)?;
        self.children.push(child.id() as i32);
        Ok(Box::new(LocalAgentProcess {
            child,
            line,
            err_path,
            start: Instant::now(),
        }))
    }
}

impl Drop for LocalPod {
    fn drop(&mut self) {
        for pid in self.children.drain(..) {
            if let Some(start_time) = sys::process_start_time(pid) {
                let _ = sys::remove_resource(&Resource::Process { pid, start_time });
            }
        }
    }
}

struct LocalAgentProcess {
    child: Child,
    line: String,
    err_path: PathBuf,
    start: Instant,
}

impl AgentProcess for LocalAgentProcess {
    fn kill(&mut self) -> Result<(), PlatformError> {
        // SIGKILL to the agent alone, exactly the crash being simulated.
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .or_else(|e| {
            if e == nix::errno::Errno::ESRCH {
                Ok(())
            } else {
                Err(e)
            }
        })
        .map_err(|e| PlatformError::Other(format!("kill {}: {e}", self.child.id())))
    }

    fn wait(&mut self, timeout: Duration) -> Result<AgentOutput, PlatformError> {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(st) = self
                .child
                .try_wait()
                .map_err(|e| PlatformError::io("wait", e))?
            {
                break st;
            }
            if Instant::now() >= deadline || signals::interrupted() {
                let _ = self.child.kill();
                let _ = self.child.wait();
                if signals::interrupted() {
                    return Err(PlatformError::Interrupted);
                }
                return Err(PlatformError::Timeout {
                    command: self.line.clone(),
                    limit: timeout,
                });
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        use std::os::unix::process::ExitStatusExt;
        Ok(AgentOutput {
            command: self.line.clone(),
            stdout: String::new(),
            stderr: std::fs::read_to_string(&self.err_path).unwrap_or_default(),
            code: status.code(),
            signal: status.signal(),
            elapsed: self.start.elapsed(),
        })
    }
}

impl Drop for LocalAgentProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl LocalVolume {
    /// A new volume `<this volume>-<name>` from a snapshot of this one, or a clone of it.
    fn derived(&mut self, name: &str, snapshot: bool) -> Result<Box<dyn Volume>, PlatformError> {
        let volume = format!("{}-{name}", self.ctx.volume);
        let work_dir = self
            .ctx
            .registry
            .volume_dir(&volume)
            .map_err(|e| PlatformError::Registry(e.to_string()))?;
        let new_ctx = BackendCtx {
            volume,
            mount_point: work_dir.join("mnt"),
            work_dir,
            ..self.ctx.clone()
        };
        let mounted = self
            .attached
            .is_some()
            .then(|| self.ctx.mount_point.clone());
        let backend = if snapshot {
            self.backend
                .snapshot(&self.ctx, mounted.as_deref(), &new_ctx)?
        } else {
            self.backend.clone_to(&self.ctx, &new_ctx)?
        };
        Ok(Box::new(LocalVolume {
            ctx: new_ctx,
            backend,
            agent: self.agent.clone(),
            upgrade: self.upgrade.clone(),
            upgrade_timeout: self.upgrade_timeout,
            upgrade_cwd: self.upgrade_cwd.clone(),
            attached: None,
            last_upgrade: None,
            requested: self.requested,
            done: false,
        }))
    }
}
