//! The driver: a socket someone else's driver listens on, or a command pvcheck starts (and
//! stops) itself with `{endpoint}`, `{node_id}` and `{state_dir}` filled in.
//!
//! A started driver runs in its own process group, recorded in the run registry before
//! anything can be lost; its stdout and stderr go to a log file beside the volume (the last
//! lines are quoted when it fails). It is ready when Probe answers without `ready: false`.
//! Stopping it is SIGTERM to the group, then SIGKILL after 5 s, as a DaemonSet pod is ended.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use super::call::Call;
use super::client::{CsiClient, Masker};
use super::error::CsiError;
use super::proto;
use crate::platform::local::backend::BackendCtx;
use crate::registry::Resource;

/// Where and as whom a started driver runs.
#[derive(Debug, Clone)]
pub struct Placement {
    pub socket: PathBuf,
    pub node_id: String,
    pub state_dir: PathBuf,
    /// The driver's stdout and stderr go to `<log_dir>/driver-<n>.log`.
    pub log_dir: PathBuf,
}

/// One driver process (a started command).
struct Process {
    child: Child,
    argv: Vec<String>,
    log: PathBuf,
}

/// The driver of one class volume (and the volumes restored or cloned from it).
pub struct Driver {
    /// `class <name> (<file>:<line>)`, to start every message.
    pub origin: String,
    pub client: CsiClient,
    placement: Option<Placement>,
    process: Mutex<Option<Process>>,
    started: Mutex<u32>,
    ctx: Option<BackendCtx>,
    start_timeout: Duration,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("origin", &self.origin)
            .field("socket", &self.client.socket())
            .finish()
    }
}

fn fill(argv: &[String], p: &Placement) -> Vec<String> {
    argv.iter()
        .map(|a| {
            a.replace("{endpoint}", &format!("unix://{}", p.socket.display()))
                .replace("{node_id}", &p.node_id)
                .replace("{state_dir}", &p.state_dir.display().to_string())
        })
        .collect()
}

/// The last lines of a log, joined on one line.
fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let from = lines.len().saturating_sub(3);
    let t = lines[from..].join(" | ");
    if t.is_empty() {
        "(it printed nothing)".into()
    } else if t.len() > 600 {
        let mut end = 600;
        while !t.is_char_boundary(end) {
            end -= 1;
        }
        format!("{} …", &t[..end])
    } else {
        t
    }
}

impl Driver {
    /// A driver that is already running at `socket`.
    pub fn external(
        origin: String,
        socket: &Path,
        timeout: Duration,
        masker: Masker,
    ) -> Result<Self, CsiError> {
        let d = Driver {
            origin,
            client: CsiClient::new(socket, timeout, masker)?,
            placement: None,
            process: Mutex::new(None),
            started: Mutex::new(0),
            ctx: None,
            start_timeout: timeout,
        };
        d.wait_ready(None, false)?;
        Ok(d)
    }

    /// Starts `argv` at `placement`, recorded under `ctx`, and waits until it is ready.
    pub fn start(
        origin: String,
        argv: &[String],
        placement: Placement,
        ctx: &BackendCtx,
        call_timeout: Duration,
        start_timeout: Duration,
        masker: Masker,
    ) -> Result<Self, CsiError> {
        let d = Driver {
            origin,
            client: CsiClient::new(&placement.socket, call_timeout, masker)?,
            placement: Some(placement),
            process: Mutex::new(None),
            started: Mutex::new(0),
            ctx: Some(ctx.clone()),
            start_timeout,
        };
        d.launch(argv)?;
        Ok(d)
    }

    /// The driver's log files and the argv of what runs now, for failure messages.
    pub fn describe(&self) -> String {
        let p = self.process.lock().unwrap_or_else(|e| e.into_inner());
        match p.as_ref() {
            Some(p) => format!("driver `{}` (log {})", p.argv.join(" "), p.log.display()),
            None => format!("driver at {}", self.client.socket().display()),
        }
    }

    /// Waits until the driver answers Probe ready again (within `start_timeout`): after an
    /// `upgrade.command` that restarted a driver pvcheck does not own (systemd, a DaemonSet),
    /// its socket may be gone for a moment.
    pub fn wait_until_ready(&self) -> Result<(), CsiError> {
        let log = self
            .process
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|p| p.log.clone());
        self.wait_ready(log.as_deref(), true)
    }

    /// Whether pvcheck started this driver (and so can restart it).
    pub fn is_started(&self) -> bool {
        self.placement.is_some()
    }

    fn launch(&self, argv: &[String]) -> Result<(), CsiError> {
        let placement = self
            .placement
            .as_ref()
            .ok_or_else(|| CsiError::Driver("an external driver cannot be started".into()))?;
        let ctx = self
            .ctx
            .as_ref()
            .ok_or_else(|| CsiError::Driver("no registry".into()))?;
        let argv = fill(argv, placement);
        let n = {
            let mut s = self.started.lock().unwrap_or_else(|e| e.into_inner());
            *s += 1;
            *s
        };
        let log = placement.log_dir.join(format!("driver-{n}.log"));
        let io = |what: String| move |e: std::io::Error| CsiError::Driver(format!("{what}: {e}"));
        std::fs::create_dir_all(&placement.log_dir)
            .map_err(io(format!("mkdir {}", placement.log_dir.display())))?;
        let out = File::create(&log).map_err(io(format!("creating {}", log.display())))?;
        let err = out
            .try_clone()
            .map_err(io(format!("opening {}", log.display())))?;
        // A socket left by an earlier driver would make the new one fail to listen; the
        // socket's directory belongs to pvcheck, so anything there is ours.
        let _ = std::fs::remove_file(&placement.socket);
        let mut c = Command::new(&argv[0]);
        c.args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let child = {
            let op = ctx
                .registry
                .begin()
                .map_err(|_| CsiError::Driver("the run is shutting down".into()))?;
            let child = crate::sys::spawn_group(&mut c).map_err(|e| {
                CsiError::Driver(format!(
                    "{}: cannot start `{}`: {e}",
                    self.origin,
                    argv.join(" ")
                ))
            })?;
            let pid = child.id() as i32;
            let start_time = crate::sys::process_start_time(pid).unwrap_or(0);
            ctx.registry
                .record(
                    &op,
                    Resource::Process { pid, start_time },
                    Some(&ctx.class),
                    Some(&ctx.volume),
                )
                .map_err(|e| CsiError::Driver(e.to_string()))?;
            child
        };
        *self.process.lock().unwrap_or_else(|e| e.into_inner()) = Some(Process {
            child,
            argv: argv.clone(),
            log: log.clone(),
        });
        self.client.reconnect()?;
        if let Err(e) = self.wait_ready(Some(&log), false) {
            self.stop();
            return Err(e);
        }
        Ok(())
    }

    /// Polls Probe until it answers ready, the process exits, or the start timeout passes.
    /// `restarting`: the driver is known to be coming back (after an upgrade command), so an
    /// external one is waited for too.
    fn wait_ready(&self, log: Option<&Path>, restarting: bool) -> Result<(), CsiError> {
        let deadline = Instant::now() + self.start_timeout;
        let mut last: Option<CsiError> = None;
        loop {
            if let Some(status) = self.exited() {
                return Err(CsiError::Driver(format!(
                    "{}: `{}` exited at once ({status}) before answering on {}: {}",
                    self.origin,
                    self.argv().join(" "),
                    self.client.socket().display(),
                    log.map(tail).unwrap_or_default()
                )));
            }
            if crate::signals::interrupted() {
                return Err(CsiError::Driver("interrupted".into()));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let why = last.map(|e| e.to_string()).unwrap_or_default();
                let why = why.lines().next().unwrap_or_default().to_string();
                return Err(CsiError::Driver(format!(
                    "{}: the driver did not answer Probe ready on {} within {:.0}s (start_timeout): {why}{}",
                    self.origin,
                    self.client.socket().display(),
                    self.start_timeout.as_secs_f64(),
                    log.map(|l| format!("; its log: {}", tail(l)))
                        .unwrap_or_default()
                )));
            }
            if self.client.socket().exists() || log.is_none() {
                let limit = left.min(self.client.timeout()).min(Duration::from_secs(5));
                match self.client.call_within(
                    Call::Probe,
                    proto::ProbeRequest {},
                    limit,
                    |ch, r| async move {
                        proto::identity_client::IdentityClient::new(ch)
                            .probe(r)
                            .await
                    },
                ) {
                    Ok(r) if r.ready != Some(false) => return Ok(()),
                    Ok(_) => last = Some(CsiError::Driver("Probe answered ready: false".into())),
                    // A driver that answers with an error code or garbage is up but broken:
                    // waiting longer would not change it.
                    Err(e @ CsiError::Status { .. }) => return Err(e),
                    Err(e @ CsiError::Unreachable { .. })
                        if e.to_string().contains("h2 protocol error")
                            || e.to_string().contains("frame") =>
                    {
                        return Err(e);
                    }
                    Err(e) => last = Some(e),
                }
                if log.is_none() && last.is_some() && !restarting {
                    // An external driver is either there or not: do not wait a minute for it.
                    return Err(last.unwrap_or_else(|| CsiError::Driver("not ready".into())));
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn argv(&self) -> Vec<String> {
        self.process
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|p| p.argv.clone())
            .unwrap_or_default()
    }

    /// `Some(status)` when the started process has ended.
    pub fn exited(&self) -> Option<String> {
        let mut p = self.process.lock().unwrap_or_else(|e| e.into_inner());
        let p = p.as_mut()?;
        match p.child.try_wait() {
            Ok(Some(st)) => Some(crate::sys::exit_status_string(&st)),
            _ => None,
        }
    }

    /// Ends the started process (SIGTERM to its group, SIGKILL after 5 s); removes its socket.
    pub fn stop(&self) {
        let Some(mut p) = self
            .process
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        else {
            return;
        };
        self.client.disconnect();
        let pid = Pid::from_raw(p.child.id() as i32);
        let _ = killpg(pid, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match p.child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    let _ = killpg(pid, Signal::SIGKILL);
                    let _ = p.child.wait();
                    break;
                }
            }
        }
        // Children of the driver in its group (mount helpers) end with it.
        let _ = killpg(pid, Signal::SIGKILL);
        if let Some(pl) = &self.placement {
            let _ = std::fs::remove_file(&pl.socket);
        }
    }

    /// [`Driver::restart`], saying when the old process was gone (Unix ms).
    pub fn restart_timed(&self, argv: &[String]) -> Result<u64, CsiError> {
        self.stop();
        let stopped = crate::sys::unix_ms();
        self.launch(argv)?;
        Ok(stopped)
    }

    /// SIGKILL to the driver's process group at once (a crash, a pod deleted with grace period
    /// 0), then `argv` started again on the same socket, node id and state dir. Returns when
    /// the old process was gone (Unix ms).
    pub fn kill_and_restart(&self, argv: &[String]) -> Result<u64, CsiError> {
        if let Some(mut p) = self
            .process
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            self.client.disconnect();
            let pid = Pid::from_raw(p.child.id() as i32);
            let _ = killpg(pid, Signal::SIGKILL);
            let _ = p.child.wait();
        } else {
            return Err(CsiError::Driver(format!(
                "{}: no driver process to kill",
                self.origin
            )));
        }
        let stopped = crate::sys::unix_ms();
        // The dead driver's socket file stays behind, as it does on a node.
        self.launch(argv)?;
        Ok(stopped)
    }

    /// Stops the running process and starts `argv` on the same socket, node id and state dir
    /// (an upgrade of the node plugin: volumes stay published meanwhile).
    pub fn restart(&self, argv: &[String]) -> Result<(), CsiError> {
        self.stop();
        self.launch(argv)
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.stop();
    }
}
