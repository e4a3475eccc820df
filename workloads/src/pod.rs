//! `pvcheck-agent pod`: what the agent image's container runs on Kubernetes.
//!
//! A pod's log mixes stdout and stderr, and the harness never uses `exec` (it breaks, and
//! Pod Security "restricted" users forbid it), so the container runs this supervisor: it starts
//! the agent as a child process (`/proc/self/exe <args>`), and frames what the child prints
//! into its own stdout, one line at a time, flushed at once so a log follower sees every
//! acknowledgement the moment it is printed:
//!
//! | line                | meaning                                                         |
//! |---------------------|-----------------------------------------------------------------|
//! | `o TEXT`            | the agent printed `TEXT\n` on stdout                             |
//! | `O TEXT`            | the agent's stdout ended with `TEXT` and no newline (cut by a kill) |
//! | `e TEXT`            | a line of the agent's stderr                                      |
//! | `x {JSON}`          | the end: `code` or `signal`, `killed_after_s`, `statfs`, `terminated` |
//!
//! `--kill-after D` SIGKILLs the agent D after it started (the durability check's crash, a real
//! SIGKILL from inside the pod: deleting a pod only sends SIGTERM first). `--statfs DIR` adds
//! the capacity of DIR as the agent sees it; with no agent arguments that is all it does.
//! `terminated` (`{"signal": "SIGTERM", "after_s"}`) says the pod was told to stop while the
//! agent ran (deleted or evicted): the supervisor notes it and lets the agent go on, so the
//! harness never takes such a run for an undisturbed one.
//! `--hold` waits for SIGTERM: the pod that keeps a volume attached and mounted between agent
//! runs. With agent arguments it runs that agent first, framed and ended by its `x` line as
//! above, then holds: where the holder's start is a takeover or a recreation, the verify that
//! follows it costs no pod start of its own.
//! `--batch JSON` (a JSON array of argument arrays) runs several agents one after the other, each
//! framed as above and ended by its own `x` line with `index` (0-based): one pod runs a class's
//! speed matrix, each workload still its own agent process with its own figures. A batch told to
//! stop (`terminated`) starts no further agent.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;

use crate::exit;
use crate::units::Dur;

/// `pvcheck-agent pod [--statfs DIR] [--kill-after D] [--hold] -- <agent subcommand and flags>`.
#[derive(Debug, Args)]
pub struct PodArgs {
    /// Report the capacity (statfs) of this directory in the final `x` line.
    #[arg(long, value_name = "DIR")]
    pub statfs: Option<PathBuf>,
    /// SIGKILL the agent this long after it started (e.g. `2.5s`).
    #[arg(long, value_name = "DURATION")]
    pub kill_after: Option<Dur>,
    /// Wait for SIGTERM or SIGINT, then exit 0; with agent arguments, after running that agent.
    #[arg(long, conflicts_with_all = ["kill_after", "batch"])]
    pub hold: bool,
    /// Run these agents one after the other (a JSON array of argument arrays), one `x` line each.
    #[arg(long, value_name = "JSON", conflicts_with_all = ["kill_after", "args"])]
    pub batch: Option<String>,
    /// The agent's subcommand and flags, after `--`.
    #[arg(last = true, value_name = "AGENT ARGS")]
    pub args: Vec<String>,
}

/// Runs the supervisor; its own exit code is 0 when it framed the agent's run completely
/// (the agent's code is in the `x` line), 2 when it could not start the agent.
pub fn run(a: PodArgs) -> ExitCode {
    if a.hold && a.args.is_empty() {
        return hold();
    }
    let out = Arc::new(Mutex::new(std::io::stdout()));
    let runs: Vec<Vec<String>> = match &a.batch {
        Some(json) => match serde_json::from_str(json) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("pvcheck-agent: pod: --batch: not a JSON array of argument arrays: {e}");
                return ExitCode::from(exit::USAGE_OR_IO);
            }
        },
        None if a.args.is_empty() => Vec::new(),
        None => vec![a.args.clone()],
    };
    let exe = if runs.is_empty() {
        None
    } else {
        match std::env::current_exe() {
            Ok(p) => Some(p),
            Err(e) => {
                eprintln!("pvcheck-agent: pod: cannot find the agent binary itself: {e}");
                return ExitCode::from(exit::USAGE_OR_IO);
            }
        }
    };
    // Blocked before the children and the framing threads start (they inherit the mask; std
    // gives a child an empty one), so every SIGTERM/SIGINT reaches `stop_signals`' sigwait.
    let stopped = exe.as_ref().and_then(|_| stop_signals());
    if runs.is_empty() {
        end_line(&out, serde_json::Map::new(), &a);
        return ExitCode::from(exit::OK);
    }
    for (i, args) in runs.iter().enumerate() {
        let Some(exe) = &exe else { break };
        if i > 0
            && stopped
                .as_ref()
                .is_some_and(|s| s.lock().unwrap_or_else(|e| e.into_inner()).is_some())
        {
            break;
        }
        let mut end = match run_one(exe, args, &a, &out, stopped.as_ref()) {
            Ok(end) => end,
            Err(code) => return code,
        };
        let told_to_stop = end.contains_key("terminated");
        if a.batch.is_some() {
            end.insert("index".into(), i.into());
        }
        end_line(&out, end, &a);
        if told_to_stop {
            break;
        }
    }
    if a.hold {
        // Held until told to stop (a stop during the agent ends the hold at once).
        let Some(stopped) = stopped else {
            return hold();
        };
        while stopped.lock().unwrap_or_else(|e| e.into_inner()).is_none() {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    ExitCode::from(exit::OK)
}

/// Prints the `x` line (with the capacity when `--statfs` asks for it).
fn end_line(
    out: &Arc<Mutex<std::io::Stdout>>,
    mut end: serde_json::Map<String, serde_json::Value>,
    a: &PodArgs,
) {
    if let Some(dir) = &a.statfs {
        end.insert("statfs".into(), statfs(dir));
    }
    let mut o = out.lock().unwrap_or_else(|e| e.into_inner());
    let _ = writeln!(o, "x {}", serde_json::Value::Object(end));
    let _ = o.flush();
}

/// Runs one agent (`exe args`), framing its output; its end line's fields, or the supervisor's
/// exit code when the agent could not be started.
fn run_one(
    exe: &std::path::Path,
    args: &[String],
    a: &PodArgs,
    out: &Arc<Mutex<std::io::Stdout>>,
    stopped: Option<&Stopped>,
) -> Result<serde_json::Map<String, serde_json::Value>, ExitCode> {
    let mut end = serde_json::Map::new();
    let mut child = match Command::new(exe)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("pvcheck-agent: pod: cannot start {}: {e}", exe.display());
            return Err(ExitCode::from(exit::USAGE_OR_IO));
        }
    };
    let started = Instant::now();
    let stdout = child.stdout.take().map(|s| frame(s, 'o', out.clone()));
    let stderr = child.stderr.take().map(|s| frame(s, 'e', out.clone()));
    let pid = child.id() as libc::pid_t;
    let killer = a.kill_after.map(|d| {
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = done.clone();
        let t = std::thread::spawn(move || {
            let until = started + d.0;
            while !flag.load(std::sync::atomic::Ordering::Acquire) {
                let now = Instant::now();
                if now >= until {
                    // SAFETY: kill(2) on our own child's pid; it is not reaped before
                    // `done` is set, so the pid cannot have been reused.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                    return Some(started.elapsed());
                }
                std::thread::sleep((until - now).min(Duration::from_millis(20)));
            }
            None
        });
        (done, t)
    });
    for t in [stdout, stderr].into_iter().flatten() {
        let _ = t.join();
    }
    let status = child.wait();
    if let Some((done, t)) = killer {
        done.store(true, std::sync::atomic::Ordering::Release);
        if let Ok(Some(at)) = t.join() {
            end.insert("killed_after_s".into(), at.as_secs_f64().into());
        }
    }
    use std::os::unix::process::ExitStatusExt;
    match status {
        Ok(s) => {
            end.insert("code".into(), s.code().into());
            end.insert("signal".into(), s.signal().into());
        }
        Err(e) => {
            end.insert("error".into(), format!("waiting for the agent: {e}").into());
        }
    }
    end.insert("elapsed_s".into(), started.elapsed().as_secs_f64().into());
    if let Some((signal, at)) = stopped.and_then(|s| *s.lock().unwrap_or_else(|e| e.into_inner())) {
        end.insert(
            "terminated".into(),
            serde_json::json!({ "signal": signal, "after_s": at.duration_since(started).as_secs_f64() }),
        );
    }
    Ok(end)
}

/// Copies `from` into `out` as framed lines (`<tag> TEXT`), flushing each one.
fn frame(
    from: impl Read + Send + 'static,
    tag: char,
    out: Arc<Mutex<std::io::Stdout>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut r = BufReader::new(from);
        let mut line = Vec::new();
        loop {
            line.clear();
            match r.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let complete = line.last() == Some(&b'\n');
            if complete {
                line.pop();
            }
            let t = if complete {
                tag
            } else {
                tag.to_ascii_uppercase()
            };
            let mut o = out.lock().unwrap_or_else(|e| e.into_inner());
            let _ = write!(o, "{t} ");
            let _ = o.write_all(&line);
            let _ = o.write_all(b"\n");
            let _ = o.flush();
        }
    })
}

/// `{"total_bytes", "available_bytes"}` of `dir`, or `{"error"}`. A Block volume's device
/// (`--statfs /dev/…`) has no filesystem: its size, all of it available.
#[allow(clippy::unnecessary_cast)] // statvfs's c_ulong is u32 on 32-bit targets
fn statfs(dir: &std::path::Path) -> serde_json::Value {
    use std::os::unix::fs::FileTypeExt;
    if std::fs::metadata(dir).is_ok_and(|m| m.file_type().is_block_device()) {
        let size = std::fs::File::open(dir)
            .map_err(|e| format!("opening {}: {e}", dir.display()))
            .and_then(|f| crate::integrity::io::target_size(&f, dir).map_err(|e| e.to_string()));
        return match size {
            Ok(size) => serde_json::json!({ "total_bytes": size, "available_bytes": size }),
            Err(e) => serde_json::json!({ "error": e }),
        };
    }
    match nix::sys::statvfs::statvfs(dir) {
        Ok(s) => {
            let f = s.fragment_size() as u64;
            serde_json::json!({
                "total_bytes": s.blocks() as u64 * f,
                "available_bytes": s.blocks_available() as u64 * f,
            })
        }
        Err(e) => serde_json::json!({ "error": format!("statfs {}: {e}", dir.display()) }),
    }
}

/// The first SIGTERM or SIGINT the supervisor receives while the agent runs, and when.
type Stopped = Arc<Mutex<Option<(&'static str, Instant)>>>;

/// Blocks SIGTERM and SIGINT in this thread (and so in the threads it starts) and takes them in
/// a thread of their own, which notes the first. The supervisor is the container's PID 1, which
/// the kernel never kills with a signal it does not handle: a pod deleted or evicted (`kubectl
/// drain`) used to leave its agent running to the end of the grace period unnoticed, and an
/// agent that finished within it looked like a run nobody disturbed. The agent is left to
/// finish or die by the runtime's SIGKILL as before; the end line says the pod was told to stop
/// (`terminated`), and the harness fails the run naming why. `None` when the signals could not
/// be blocked (the run goes on, unwatched, as before).
fn stop_signals() -> Option<Stopped> {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    if let Err(e) = set.thread_block() {
        eprintln!("pvcheck-agent: pod: cannot block SIGTERM/SIGINT: {e}");
        return None;
    }
    let stopped: Stopped = Arc::new(Mutex::new(None));
    let note = stopped.clone();
    std::thread::spawn(move || {
        while let Ok(sig) = set.wait() {
            let mut s = note.lock().unwrap_or_else(|e| e.into_inner());
            if s.is_none() {
                *s = Some((sig.as_str(), Instant::now()));
            }
        }
    });
    Some(stopped)
}

/// Waits for SIGTERM or SIGINT (blocked, then taken with sigwait), and exits 0.
fn hold() -> ExitCode {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    if let Err(e) = set.thread_block() {
        eprintln!("pvcheck-agent: pod --hold: cannot block signals: {e}");
        return ExitCode::from(exit::USAGE_OR_IO);
    }
    println!("x {{\"hold\":\"ready\"}}");
    let _ = std::io::stdout().flush();
    let _ = set.wait();
    ExitCode::from(exit::OK)
}
