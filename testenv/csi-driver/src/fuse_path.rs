//! The FUSE data paths of NodePublishVolume (`--data-path fuse-inside|fuse-outside`): a
//! passthrough of the staging path mounted at the target, served either by a thread of the
//! driver (the mount dies with the process: every access then fails with ENOTCONN, "transport
//! endpoint is not connected") or by a `fuse-daemon` process of its own that outlives the driver
//! and is found again through its pid file in the statedir.

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::mount::{MntFlags, umount2};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::config::DataPath;
use crate::log;
use crate::mounts;
use crate::passthrough;
use crate::state::{Layout, State};

/// The hidden subcommand a `fuse-outside` driver starts its daemons with.
pub const DAEMON_SUBCOMMAND: &str = "fuse-daemon";
/// How long NodePublishVolume waits for a daemon's mount.
const MOUNT_WAIT: Duration = Duration::from_secs(10);
/// How long NodeUnpublishVolume waits for a daemon to end by itself after the unmount, and
/// then after SIGTERM, before SIGKILL.
const EXIT_WAIT: Duration = Duration::from_secs(3);

/// The filesystem type of our FUSE mounts in mountinfo.
pub fn fs_type() -> String {
    format!("fuse.{}", passthrough::SUBTYPE)
}

/// `fuse-inside`: mount and serve from a thread of this process. Nothing keeps the session but
/// the thread, so when the process ends (SIGTERM, SIGKILL, a crash) its /dev/fuse descriptor
/// closes, the kernel aborts the connection, and the mount stays behind, dead.
pub fn serve_inside(source: &Path, target: &Path, readonly: bool) -> io::Result<()> {
    let session = passthrough::mount(source, target, readonly)?;
    let shown = target.to_path_buf();
    let spawned = std::thread::Builder::new()
        .name("fuse-inside".into())
        .spawn(move || match session.run() {
            Ok(()) => log!("FUSE mount {} ended (unmounted)", shown.display()),
            Err(e) => log!("FUSE mount {} ended: {e}", shown.display()),
        });
    if let Err(e) = spawned {
        // The session went with the thread that never started: the mount is dead.
        let _ = umount2(target, MntFlags::MNT_DETACH);
        return Err(e);
    }
    Ok(())
}

/// The `fuse-daemon` processes this driver process started (its children, to be reaped).
#[derive(Default)]
pub struct Daemons(Mutex<HashMap<i32, Child>>);

impl Daemons {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i32, Child>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// `fuse-outside`: start `pvcheck-test-csi fuse-daemon` in a session of its own (a signal to the
/// driver's process group does not reach it, and it has no parent-death signal), write its pid
/// file, and wait until its mount is there. Returns the pid file.
pub fn spawn_daemon(
    layout: &Layout,
    daemons: &Daemons,
    volume_id: &str,
    source: &Path,
    target: &Path,
    readonly: bool,
) -> io::Result<PathBuf> {
    let pid_file = layout.fuse_daemon_pid_file(volume_id, target);
    let log_file = pid_file.with_extension("log");
    let log_out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_file)?;
    let argv0 = std::env::current_exe()
        .map(|p| p.into_os_string())
        .unwrap_or_else(|_| "pvcheck-test-csi".into());
    let mut cmd = Command::new("/proc/self/exe");
    cmd.arg0(argv0)
        .arg(DAEMON_SUBCOMMAND)
        .arg("--source")
        .arg(source)
        .arg("--mountpoint")
        .arg(target)
        .arg("--volume-id")
        .arg(volume_id)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(log_out.try_clone()?)
        .stderr(log_out);
    if readonly {
        cmd.arg("--readonly");
    }
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    let pid = child.id() as i32;
    let written = write_pid_file(&pid_file, pid, target);
    let deadline = Instant::now() + MOUNT_WAIT;
    let failure = loop {
        if let Err(e) = &written {
            break format!("writing {}: {e}", pid_file.display());
        }
        if mounts::fs_type_at(target).as_deref() == Some(fs_type().as_str()) {
            daemons.lock().insert(pid, child);
            log!(
                "fuse-daemon pid {pid} serves {} at {} (pid file {})",
                source.display(),
                target.display(),
                pid_file.display()
            );
            return Ok(pid_file);
        }
        match child.try_wait() {
            Ok(Some(status)) => {
                break format!(
                    "fuse-daemon exited with {status} before mounting: {}",
                    last_line(&log_file)
                );
            }
            Ok(None) => {}
            Err(e) => break format!("fuse-daemon pid {pid}: {e}"),
        }
        if Instant::now() > deadline {
            break format!(
                "fuse-daemon pid {pid} did not mount {} within {MOUNT_WAIT:?}",
                target.display()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let _ = child.kill();
    let _ = child.wait();
    let _ = unmount(target);
    let _ = fs::remove_file(&pid_file);
    Err(io::Error::other(failure))
}

fn write_pid_file(path: &Path, pid: i32, target: &Path) -> io::Result<()> {
    let tmp = path.with_extension("pid.tmp");
    fs::write(&tmp, format!("{pid}\n{}\n", target.display()))?;
    fs::rename(&tmp, path)
}

fn last_line(path: &Path) -> String {
    fs::read_to_string(path)
        .ok()
        .and_then(|s| s.lines().last().map(str::to_string))
        .unwrap_or_else(|| "(no output)".into())
}

/// The pid a pid file names.
pub fn read_pid(pid_file: &Path) -> Option<i32> {
    fs::read_to_string(pid_file)
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

/// Whether `pid` is a live (not zombie) `fuse-daemon` serving `target`: pids are reused, so
/// the command line must say so.
pub fn is_daemon_for(pid: i32, target: &Path) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the parenthesised command name, which may itself hold ") ".
    let state = stat
        .rsplit_once(") ")
        .and_then(|(_, rest)| rest.chars().next());
    if matches!(state, None | Some('Z') | Some('X')) {
        return false;
    }
    let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
    use std::os::unix::ffi::OsStrExt;
    let target = target.as_os_str().as_bytes();
    args.contains(&DAEMON_SUBCOMMAND.as_bytes())
        && args
            .windows(2)
            .any(|w| w[0] == b"--mountpoint" && w[1] == target)
}

/// Unmount a FUSE target, live or dead. A dead mount (its server gone) unmounts like any
/// other; one still in use (EBUSY) is detached (lazy unmount), so nothing stays in the mount
/// table either way.
pub fn unmount(target: &Path) -> Result<(), Errno> {
    for _ in 0..16 {
        if !mounts::is_mount_point(target) {
            return Ok(());
        }
        match umount2(target, MntFlags::empty()) {
            Ok(()) => {}
            Err(Errno::EBUSY) => umount2(target, MntFlags::MNT_DETACH)?,
            Err(Errno::EINVAL | Errno::ENOENT) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    Err(Errno::EBUSY)
}

/// After the unmount: the daemon of `pid_file` ends by itself (its session sees the unmount);
/// if it does not, SIGTERM, then SIGKILL. Reaps it when it is our child; removes the pid file.
pub fn stop_daemon(daemons: &Daemons, pid_file: &Path, target: &Path) -> io::Result<()> {
    let Some(pid) = read_pid(pid_file) else {
        let _ = fs::remove_file(pid_file);
        return Ok(());
    };
    let mut child = daemons.lock().remove(&pid);
    let mut ended = wait_for_end(&mut child, pid, target);
    for signal in [Signal::SIGTERM, Signal::SIGKILL] {
        if ended {
            break;
        }
        log!(
            "fuse-daemon pid {pid} still runs after the unmount of {}: {signal}",
            target.display()
        );
        let _ = kill(Pid::from_raw(pid), signal);
        ended = wait_for_end(&mut child, pid, target);
    }
    if let Some(mut c) = child {
        let _ = c.wait();
    }
    if !ended {
        return Err(io::Error::other(format!(
            "fuse-daemon pid {pid} for {} does not stop",
            target.display()
        )));
    }
    log!("fuse-daemon pid {pid} for {} stopped", target.display());
    fs::remove_file(pid_file).or_else(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            Ok(())
        } else {
            Err(e)
        }
    })
}

/// Whether the daemon ended within [`EXIT_WAIT`]: our child has exited (not yet reaped), or
/// another process's is no longer a live daemon for `target`.
fn wait_for_end(child: &mut Option<Child>, pid: i32, target: &Path) -> bool {
    let deadline = Instant::now() + EXIT_WAIT;
    loop {
        let gone = match child {
            Some(c) => !matches!(c.try_wait(), Ok(None)),
            None => !is_daemon_for(pid, target),
        };
        if gone || Instant::now() > deadline {
            return gone;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// At startup: say what became of the FUSE publications an earlier process made. Nothing is
/// changed: a dead `fuse-inside` mount stays dead until NodeUnpublishVolume (as with the real
/// drivers), a `fuse-outside` daemon keeps serving.
pub fn report_at_start(state: &State) {
    for v in state.volumes.values() {
        for p in v.publications.values() {
            let target = p.target_path.display();
            match p.data_path {
                DataPath::Bind => {}
                DataPath::FuseInside => match fs::metadata(&p.target_path) {
                    Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => log!(
                        "volume {}: FUSE mount {target} was served by an earlier driver process and is dead ({e}) until NodeUnpublishVolume",
                        v.id
                    ),
                    Err(e) => log!("volume {}: FUSE mount {target}: {e}", v.id),
                    Ok(_) => log!("volume {}: FUSE mount {target} answers", v.id),
                },
                DataPath::FuseOutside => {
                    let pid = p.fuse_daemon_pid_file.as_deref().and_then(read_pid);
                    match pid {
                        Some(pid) if is_daemon_for(pid, &p.target_path) => log!(
                            "volume {}: fuse-daemon pid {pid} still serves {target}",
                            v.id
                        ),
                        _ => log!(
                            "volume {}: the fuse-daemon of {target} is gone (pid file {})",
                            v.id,
                            p.fuse_daemon_pid_file
                                .as_deref()
                                .map(|f| f.display().to_string())
                                .unwrap_or_else(|| "none".into())
                        ),
                    }
                }
            }
        }
    }
}

/// `pvcheck-test-csi fuse-daemon`: mount the passthrough and serve it until it is unmounted.
/// SIGTERM or SIGKILL end it at once and leave the mount dead.
pub fn daemon_main(args: crate::config::DaemonArgs) -> ExitCode {
    raise_open_file_limit();
    let session = match passthrough::mount(&args.source, &args.mountpoint, args.readonly) {
        Ok(s) => s,
        Err(e) => {
            log!(
                "fuse-daemon: mounting {} at {}: {e}",
                args.source.display(),
                args.mountpoint.display()
            );
            return ExitCode::from(1);
        }
    };
    log!(
        "fuse-daemon pid {}: volume {} serving {} at {} (readonly={})",
        std::process::id(),
        args.volume_id.as_deref().unwrap_or("?"),
        args.source.display(),
        args.mountpoint.display(),
        args.readonly
    );
    match session.run() {
        Ok(()) => {
            log!(
                "fuse-daemon: {} unmounted; exiting",
                args.mountpoint.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            log!("fuse-daemon: serving {}: {e}", args.mountpoint.display());
            ExitCode::from(1)
        }
    }
}

/// Every inode the kernel holds is an open descriptor: allow as many as the hard limit does.
fn raise_open_file_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}
