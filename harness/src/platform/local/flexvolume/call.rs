//! Running a driver executable once: arguments in, exit status and captured output out.
//!
//! A flexVolume driver is an arbitrary executable, so every call is bounded: a timeout after
//! which the driver's whole process group is killed (mkfs or mount it started included), and a
//! cap on what is kept of stdout and stderr, so a driver that writes megabytes cannot exhaust
//! memory. The child is always reaped before `run` returns.

use std::io::{self, Read};
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// How much of each stream is kept by default: a reply is a few hundred bytes.
pub const DEFAULT_OUTPUT_CAP: usize = 64 * 1024;

/// After the driver exits, how long a process it left behind may keep its output open before
/// that is reported (kubelet waits for the pipe to close, so pvcheck does too, up to the call's
/// timeout).
const LINGER: Duration = Duration::from_secs(2);

/// One call of an executable.
#[derive(Clone)]
pub struct Invocation<'a> {
    pub program: &'a Path,
    pub args: &'a [String],
    pub timeout: Duration,
    /// Bytes kept of each of stdout and stderr; the rest is read and counted, not kept.
    pub output_cap: usize,
    /// Wraps the spawn, e.g. to record the process in the run registry.
    pub hook: Option<&'a dyn SpawnHook>,
}

/// Lets the caller make the spawn part of its own bookkeeping: a run records every process it
/// starts, so a run shutting down (Ctrl-C) kills a driver call still in flight, with its group.
pub trait SpawnHook: Send + Sync {
    /// Calls `spawn` (exactly once when it returns Ok) and returns its child.
    fn spawn(&self, spawn: &mut dyn FnMut() -> io::Result<Child>) -> io::Result<Child>;
}

/// How the driver ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "exit code {c}"),
            Exit::Signal(s) => write!(f, "killed by signal {s}"),
        }
    }
}

/// What was kept of one output stream, and how much the driver wrote in all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Captured {
    pub bytes: Vec<u8>,
    pub total: u64,
}

impl Captured {
    pub fn truncated(&self) -> bool {
        self.total > self.bytes.len() as u64
    }

    /// The kept bytes as text, for messages.
    pub fn text(&self) -> String {
        let mut s = String::from_utf8_lossy(&self.bytes).into_owned();
        if self.truncated() {
            s.push_str(&format!(
                " … ({} bytes in all, {} shown)",
                self.total,
                self.bytes.len()
            ));
        }
        s
    }
}

/// The result of a call that ran to its end.
#[derive(Debug, Clone)]
pub struct Output {
    pub exit: Exit,
    pub stdout: Captured,
    pub stderr: Captured,
    /// Both streams in the order they were read: what kubelet's `CombinedOutput` sees (it gives
    /// the driver one pipe for both). Kept up to twice the cap.
    pub combined: Captured,
    pub elapsed: Duration,
    /// The driver exited but something it started kept stdout or stderr open past [`LINGER`].
    pub left_process: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("driver {} does not exist", .0.display())]
    Missing(PathBuf),
    #[error("driver {} is not an executable file", .0.display())]
    NotExecutable(PathBuf),
    #[error("cannot start driver {}: {source}", path.display())]
    Spawn { path: PathBuf, source: io::Error },
    #[error("driver did not answer within {:?} and was killed", timeout)]
    TimedOut {
        timeout: Duration,
        output: Box<Output>,
    },
    #[error("reading the driver's output: {0}")]
    Io(#[from] io::Error),
}

/// Checks what `execve` would refuse, so the error says which of the two it is.
pub fn check_executable(program: &Path) -> Result<(), RunError> {
    match std::fs::metadata(program) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(RunError::Missing(program.into())),
        Err(source) => Err(RunError::Spawn {
            path: program.into(),
            source,
        }),
        Ok(m) if !m.is_file() || m.permissions().mode() & 0o111 == 0 => {
            Err(RunError::NotExecutable(program.into()))
        }
        Ok(_) => Ok(()),
    }
}

/// Runs the program, waits for it within the timeout, and returns what it printed.
pub fn run(inv: &Invocation<'_>) -> Result<Output, RunError> {
    check_executable(inv.program)?;
    let start = Instant::now();
    let mut attempt = 0;
    let mut cmd = Command::new(inv.program);
    cmd.args(inv.args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a timeout kills what the driver started too.
        .process_group(0);
    // What the driver leaves running (a FUSE daemon for the mount) is then known as the run's.
    crate::sys::label_with_run(&mut cmd);
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        // If pvcheck dies, so does the driver call: no orphan keeps running.
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut child = loop {
        let spawned = match inv.hook {
            Some(h) => h.spawn(&mut || cmd.spawn()),
            None => cmd.spawn(),
        };
        match spawned {
            Ok(c) => break c,
            // A driver just written (installed or swapped) can be briefly "text file busy": a
            // fork elsewhere in this process holds the writer's descriptor until its exec.
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && attempt < 20 => {
                attempt += 1;
                std::thread::sleep(Duration::from_millis(25));
            }
            Err(source) => {
                return Err(match source.kind() {
                    io::ErrorKind::NotFound => RunError::Missing(inv.program.into()),
                    io::ErrorKind::PermissionDenied => RunError::NotExecutable(inv.program.into()),
                    _ => RunError::Spawn {
                        path: inv.program.into(),
                        source,
                    },
                });
            }
        }
    };
    let guard = ChildGuard(Some(child.id()));
    let result = collect(&mut child, inv, start);
    if result.is_err() {
        kill_group(child.id());
    }
    // Reap in every case, so no zombie and no running child is left behind.
    let status = child.wait();
    drop(guard);
    let (mut out, timed_out) = result?;
    let status = status?;
    out.exit = match (status.code(), status.signal()) {
        (Some(c), _) => Exit::Code(c),
        (None, Some(s)) => Exit::Signal(s),
        (None, None) => Exit::Signal(0),
    };
    out.elapsed = start.elapsed();
    if timed_out {
        return Err(RunError::TimedOut {
            timeout: inv.timeout,
            output: Box::new(out),
        });
    }
    Ok(out)
}

/// Kills the group if `run` unwinds between spawn and wait.
struct ChildGuard(Option<u32>);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(pid) = self.0.take()
        {
            kill_group(pid);
        }
    }
}

fn kill_group(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        // ESRCH (already gone) is the good case.
        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

/// Reads both streams until the driver exits and they close, or the deadline passes (then the
/// group is killed and `true` is returned with what was read so far).
fn collect(
    child: &mut Child,
    inv: &Invocation<'_>,
    start: Instant,
) -> Result<(Output, bool), RunError> {
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let mut kept = [Captured::default(), Captured::default()];
    let mut combined = Captured::default();
    let deadline = start + inv.timeout;
    let mut exited_at: Option<Instant> = None;
    let mut buf = vec![0u8; 16 * 1024];
    let mut timed_out = false;
    let mut left_process = false;
    loop {
        if stdout.is_none() && stderr.is_none() {
            if exited_at.is_some() {
                break;
            }
            // Both closed: only the exit is left to wait for.
            if child.try_wait()?.is_some() {
                break;
            }
        }
        let now = Instant::now();
        if now >= deadline {
            kill_group(child.id());
            timed_out = true;
            break;
        }
        if exited_at.is_none() && child.try_wait()?.is_some() {
            exited_at = Some(now);
        }
        if let Some(t) = exited_at
            && now.duration_since(t) > LINGER
        {
            left_process = true;
        }
        let wait = deadline
            .saturating_duration_since(now)
            .min(Duration::from_millis(20));
        let timeout = PollTimeout::try_from(wait).unwrap_or(PollTimeout::ZERO);
        let (out_ready, err_ready) = {
            let mut fds = Vec::with_capacity(2);
            if let Some(s) = &stdout {
                fds.push(PollFd::new(s.as_fd(), PollFlags::POLLIN));
            }
            if let Some(s) = &stderr {
                fds.push(PollFd::new(s.as_fd(), PollFlags::POLLIN));
            }
            if fds.is_empty() {
                std::thread::sleep(wait);
                (false, false)
            } else {
                match poll(&mut fds, timeout) {
                    Ok(_) => {}
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => return Err(RunError::Io(e.into())),
                }
                let ready = |fd: &PollFd<'_>| fd.revents().is_some_and(|r| !r.is_empty());
                let mut it = fds.iter();
                let o = if stdout.is_some() {
                    it.next().is_some_and(ready)
                } else {
                    false
                };
                let e = if stderr.is_some() {
                    it.next().is_some_and(ready)
                } else {
                    false
                };
                (o, e)
            }
        };
        if out_ready
            && drain_once(
                &mut stdout,
                &mut kept[0],
                &mut combined,
                &mut buf,
                inv.output_cap,
            )?
        {
            stdout = None;
        }
        if err_ready
            && drain_once(
                &mut stderr,
                &mut kept[1],
                &mut combined,
                &mut buf,
                inv.output_cap,
            )?
        {
            stderr = None;
        }
    }
    let [stdout_kept, stderr_kept] = kept;
    Ok((
        Output {
            exit: Exit::Code(0),
            stdout: stdout_kept,
            stderr: stderr_kept,
            combined,
            elapsed: start.elapsed(),
            left_process,
        },
        timed_out,
    ))
}

/// One read from a ready stream; `true` at end of file.
fn drain_once<R: Read>(
    stream: &mut Option<R>,
    kept: &mut Captured,
    combined: &mut Captured,
    buf: &mut [u8],
    cap: usize,
) -> Result<bool, RunError> {
    let Some(s) = stream.as_mut() else {
        return Ok(true);
    };
    match s.read(buf) {
        Ok(0) => Ok(true),
        Ok(n) => {
            kept.total += n as u64;
            let room = cap.saturating_sub(kept.bytes.len());
            kept.bytes.extend_from_slice(&buf[..n.min(room)]);
            combined.total += n as u64;
            let room = (2 * cap).saturating_sub(combined.bytes.len());
            combined.bytes.extend_from_slice(&buf[..n.min(room)]);
            Ok(false)
        }
        Err(e)
            if e.kind() == io::ErrorKind::Interrupted || e.kind() == io::ErrorKind::WouldBlock =>
        {
            Ok(false)
        }
        Err(e) => Err(e.into()),
    }
}
