//! Small, checked wrappers over the system: processes, mounts, loop devices, commands with timeouts.
//!
//! Everything here is what the run registry needs to tell whether a recorded resource is still
//! present and to remove it, plus running external commands (mkfs, losetup, mount, upgrade
//! commands) with a time limit, in their own process group so a timeout kills all of it.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

use crate::platform::PlatformError;
use crate::registry::Resource;

/// Field 22 of /proc/PID/stat (start time in clock ticks since boot): with the pid, it names a
/// process uniquely, so a recycled pid is never mistaken for ours.
pub fn process_start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    // rest starts at field 3; start time is field 22.
    let f: Vec<&str> = rest.split_whitespace().collect();
    let state = f.first()?;
    if *state == "Z" || *state == "X" {
        return None; // a zombie is gone for our purposes
    }
    f.get(19)?.parse().ok()
}

/// The command line of a live process, for messages (`pvcheck agent bench --dir …`).
pub fn process_command(pid: i32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let words: Vec<String> = raw
        .split(|b| *b == 0)
        .filter(|w| !w.is_empty())
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .collect();
    if words.is_empty() {
        return None;
    }
    let mut line = words.join(" ");
    if line.chars().count() > 80 {
        line = line.chars().take(77).collect::<String>() + "...";
    }
    Some(line)
}

/// The environment variable every process a run starts carries: `PVCHECK_RUN_LABEL=<run id>`.
pub const RUN_LABEL_ENV: &str = "PVCHECK_RUN_LABEL";

static RUN_LABEL: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// Sets the label [`spawn_group`] gives every child (the run id; see [`RUN_LABEL_ENV`]).
pub fn set_run_label(run_id: &str) {
    *RUN_LABEL.lock().unwrap_or_else(|e| e.into_inner()) = Some(run_id.to_string());
}

fn run_label() -> Option<String> {
    RUN_LABEL.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Gives `cmd` the run's label ([`RUN_LABEL_ENV`]) where it is started without
/// [`spawn_group`] (a flexVolume driver call): what it leaves running is then known as the run's.
pub fn label_with_run(cmd: &mut Command) {
    if let Some(label) = run_label() {
        cmd.env(RUN_LABEL_ENV, label);
    }
}

/// Live processes in process group `pgid` whose environment carries `PVCHECK_RUN_LABEL=label`,
/// except the group leader itself.
///
/// When a recorded process (a group leader: pvcheck starts every child in its own group) died
/// but its children did not (an upgrade command's `sleep`, a daemon a driver started), they are
/// orphans of the run. Both conditions are needed to kill one: the group alone could be a new
/// group that reused a dead leader's pid, the label alone could be a process another tool
/// started from a run's command.
pub fn labelled_group_members(pgid: i32, label: &str) -> Vec<i32> {
    // Cheap first: signal 0 to the group says whether it has any member at all (most recorded
    // processes ended long ago, and scanning /proc for each would make `present` slow).
    match killpg(Pid::from_raw(pgid), None) {
        Ok(()) | Err(nix::errno::Errno::EPERM) => {}
        Err(_) => return Vec::new(),
    }
    let want = format!("{RUN_LABEL_ENV}={label}");
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        if pid == pgid {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
            continue;
        };
        // rest starts at field 3 (state); field 5 is the process group.
        let f: Vec<&str> = rest.split_whitespace().collect();
        if matches!(f.first(), Some(&"Z") | Some(&"X"))
            || f.get(2) != Some(&pgid.to_string().as_str())
        {
            continue;
        }
        let labelled = std::fs::read(format!("/proc/{pid}/environ"))
            .is_ok_and(|env| env.split(|b| *b == 0).any(|kv| kv == want.as_bytes()));
        if labelled {
            out.push(pid);
        }
    }
    out
}

/// Makes the child of `cmd` die with SIGKILL when pvcheck dies (`PR_SET_PDEATHSIG`), so a
/// killed run leaves no agent or command running under PID 1 (issue 15, finding 5).
///
/// The kernel sends the signal when the *thread* that started the child ends, not only the
/// process: start children from a thread that outlives them (every caller waits for its child
/// in the thread that spawned it).
pub fn die_with_parent(cmd: &mut Command) {
    let parent = std::process::id() as i32;
    // SAFETY: prctl and getppid are async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // pvcheck died between fork and prctl: no signal will come, so do not start.
            if libc::getppid() != parent {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

/// Mount points currently mounted (from /proc/self/mountinfo, octal escapes decoded).
pub fn mount_points() -> Vec<PathBuf> {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    parse_mountinfo(&text)
        .into_iter()
        .map(|e| e.mount_point)
        .collect()
}

/// The mount options of the mount at `path` (`rw,relatime` + superblock options), if mounted.
pub fn mount_options(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let line = text.lines().rev().find(|l| {
        l.split(' ')
            .nth(4)
            .is_some_and(|p| Path::new(&unescape_mount(p)) == path)
    })?;
    let opts = line.split(' ').nth(5)?;
    let super_opts = line.split(" - ").nth(1)?.split(' ').nth(2).unwrap_or("");
    // The mount's options, then the superblock's not already named (both usually say `rw`).
    let mut all: Vec<&str> = Vec::new();
    for o in opts.split(',').chain(super_opts.split(',')) {
        if !o.is_empty() && !all.contains(&o) {
            all.push(o);
        }
    }
    Some(all.join(","))
}

/// `bytes` in lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// sha256 of `bytes`, in lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex(&Sha256::digest(bytes))
}

/// One line of a mountinfo table (/proc/PID/mountinfo).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// The mount's id, and its parent's: a mount stacked on another at the same path has that
    /// one as its parent.
    pub id: u64,
    pub parent: u64,
    pub major: u32,
    pub minor: u32,
    pub mount_point: PathBuf,
    pub fs_type: String,
    pub source: String,
}

/// The lines of a mountinfo table that parse; others are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let (pre, post) = line.split_once(" - ")?;
            let f: Vec<&str> = pre.split(' ').collect();
            let (major, minor) = f.get(2)?.split_once(':')?;
            let p: Vec<&str> = post.split(' ').collect();
            Some(MountEntry {
                id: f.first()?.parse().ok()?,
                parent: f.get(1)?.parse().ok()?,
                major: major.parse().ok()?,
                minor: minor.parse().ok()?,
                mount_point: PathBuf::from(unescape_mount(f.get(4)?)),
                fs_type: p.first()?.to_string(),
                source: unescape_mount(p.get(1).unwrap_or(&"")),
            })
        })
        .collect()
}

/// Undoes mountinfo's octal escapes (`\040` is a space).
pub fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn is_mounted(path: &Path) -> bool {
    mount_points().iter().any(|p| p == path)
}

/// True when anything is mounted at or below `dir`.
pub fn mounted_below(dir: &Path) -> bool {
    mount_points().iter().any(|p| p.starts_with(dir))
}

/// Loop devices whose backing file is `image` (from /sys/block/loop*/loop/backing_file).
pub fn loop_devices_of(image: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/sys/block") else {
        return out;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with("loop") {
            continue;
        }
        if let Ok(b) = std::fs::read_to_string(e.path().join("loop/backing_file")) {
            let b = b.trim_end_matches('\n');
            // A deleted backing file shows as "path (deleted)".
            let b = b.strip_suffix(" (deleted)").unwrap_or(b);
            if Path::new(b) == image {
                out.push(PathBuf::from("/dev").join(&name));
            }
        }
    }
    out
}

/// Whether a recorded resource is still there (without looking for a dead process's orphans:
/// see [`resource_present_in_run`]).
pub fn resource_present(r: &Resource) -> bool {
    resource_present_in_run(r, None)
}

/// Whether a recorded resource of run `run_id` is still there; for a process, also whether
/// children labelled with the run survive in its group.
pub fn resource_present_in_run(r: &Resource, run_id: Option<&str>) -> bool {
    match r {
        Resource::Dir { path } => path.is_dir(),
        // Shared by runs: "ours to remove" only while empty.
        Resource::SharedDir { path } => {
            std::fs::read_dir(path).is_ok_and(|mut d| d.next().is_none())
        }
        Resource::Image { path } => path.exists(),
        Resource::Loop { image } => !loop_devices_of(image).is_empty(),
        Resource::Mount { path } => is_mounted(path),
        Resource::Process { pid, start_time } => {
            process_start_time(*pid) == Some(*start_time)
                || run_id.is_some_and(|id| !labelled_group_members(*pid, id).is_empty())
        }
        Resource::Kept { .. } => false,
    }
}

/// Removes a recorded resource, if it is still what was recorded. The error is one sentence.
pub fn remove_resource(r: &Resource) -> Result<(), String> {
    remove_resource_in_run(r, None)
}

/// [`remove_resource`] for a resource of run `run_id`: a process's labelled orphans in its group
/// are killed too.
pub fn remove_resource_in_run(r: &Resource, run_id: Option<&str>) -> Result<(), String> {
    match r {
        Resource::Process { pid, start_time } => {
            let ours = |p: i32, t: u64| process_start_time(p) == Some(t);
            if ours(*pid, *start_time) {
                // Our children run in their own process group (pgid = pid): kill all of it.
                let _ = killpg(Pid::from_raw(*pid), Signal::SIGKILL);
                let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
            }
            // The leader may be gone and its children not (they do not die with pvcheck): kill
            // the run's labelled members of its group one by one (see labelled_group_members).
            let orphans: Vec<(i32, u64)> = run_id
                .map(|id| labelled_group_members(*pid, id))
                .unwrap_or_default()
                .into_iter()
                .filter_map(|p| process_start_time(p).map(|t| (p, t)))
                .collect();
            for (p, _) in &orphans {
                let _ = kill(Pid::from_raw(*p), Signal::SIGKILL);
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while ours(*pid, *start_time) || orphans.iter().any(|(p, t)| ours(*p, *t)) {
                if Instant::now() > deadline {
                    return Err(format!(
                        "process {pid} (or a child in its group) survived SIGKILL for 5 s"
                    ));
                }
                thread::sleep(Duration::from_millis(10));
            }
            Ok(())
        }
        Resource::Mount { path } => {
            // A mount may be stacked; unmount until nothing is left at the path.
            for _ in 0..8 {
                if !is_mounted(path) {
                    return Ok(());
                }
                umount(path).map_err(|e| e.to_string())?;
            }
            Err(format!(
                "{} was still mounted after 8 unmounts",
                path.display()
            ))
        }
        Resource::Loop { image } => {
            // `losetup -d` on a device someone still holds open (a filesystem just unmounted, an
            // io_uring ring the kernel tears down after its process exited) succeeds but only
            // sets autoclear: the device goes away when the last opener closes it. So detach,
            // then wait until the device is really gone, detaching again while it lingers.
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                let devs = loop_devices_of(image);
                if devs.is_empty() {
                    return Ok(());
                }
                if Instant::now() > deadline {
                    return Err(format!(
                        "loop device {} was still attached 15 s after `losetup -d`",
                        devs[0].display()
                    ));
                }
                for dev in devs {
                    let out = run(
                        Command::new("losetup").arg("-d").arg(&dev),
                        Duration::from_secs(30),
                    )
                    .map_err(|e| e.to_string())?;
                    // A device that vanished between listing and detaching is what we want.
                    if !out.status.success() && dev.exists() && !loop_devices_of(image).is_empty() {
                        check_output("losetup -d", &out).map_err(|e| e.to_string())?;
                    }
                }
                thread::sleep(Duration::from_millis(50));
            }
        }
        Resource::Image { path } => match std::fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("cannot remove {}: {e}", path.display())),
        },
        Resource::Dir { path } => {
            if mounted_below(path) {
                return Err(format!(
                    "{} was not removed because something is still mounted below it",
                    path.display()
                ));
            }
            match std::fs::remove_dir_all(path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(format!("cannot remove {}: {e}", path.display())),
            }
        }
        Resource::SharedDir { path } => {
            // Shared by runs: removed only when empty; not empty means another run uses it.
            let _ = std::fs::remove_dir(path);
            Ok(())
        }
        Resource::Kept { .. } => Ok(()),
    }
}

/// `umount PATH`, retried briefly while the kernel still sees it busy (a just-killed process).
pub fn umount(path: &Path) -> Result<(), PlatformError> {
    let mut last = None;
    for _ in 0..50 {
        match nix::mount::umount(path) {
            Ok(()) => return Ok(()),
            Err(nix::errno::Errno::EBUSY) => {
                last = Some(nix::errno::Errno::EBUSY);
                thread::sleep(Duration::from_millis(100));
            }
            Err(nix::errno::Errno::EINVAL) if !is_mounted(path) => return Ok(()),
            Err(e) => {
                return Err(PlatformError::Other(format!(
                    "umount {}: {e}",
                    path.display()
                )));
            }
        }
    }
    Err(PlatformError::Other(format!(
        "umount {}: {} (still busy after 5s)",
        path.display(),
        last.map(|e| e.to_string()).unwrap_or_default()
    )))
}

/// The command line of `cmd`, for messages and for reproducing by hand.
pub fn command_line(cmd: &Command) -> String {
    let mut s = shell_quote(&cmd.get_program().to_string_lossy());
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&shell_quote(&a.to_string_lossy()));
    }
    s
}

/// Quotes a word for sh when it needs it.
pub fn shell_quote(w: &str) -> String {
    if !w.is_empty()
        && w.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b))
    {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', "'\\''"))
    }
}

/// Starts `cmd` in its own process group (so a timeout can kill everything it started), dying
/// with pvcheck ([`die_with_parent`]) and labelled with the run ([`RUN_LABEL_ENV`]).
pub fn spawn_group(cmd: &mut Command) -> std::io::Result<Child> {
    if let Some(label) = run_label() {
        cmd.env(RUN_LABEL_ENV, label);
    }
    die_with_parent(cmd);
    cmd.process_group(0).spawn()
}

/// Runs `cmd` to completion with stdout and stderr captured; kills its process group after `limit`.
pub fn run(cmd: &mut Command, limit: Duration) -> Result<Output, PlatformError> {
    let line = command_line(cmd);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child =
        spawn_group(cmd).map_err(|e| PlatformError::io(format!("cannot start `{line}`"), e))?;
    wait_captured(&mut child, limit, &line, &|| false)
}

/// Waits for a child whose stdout and stderr are piped, reading both; kills its process group
/// after `limit` or as soon as `stop()` says so (interruption).
pub fn wait_captured(
    child: &mut Child,
    limit: Duration,
    line: &str,
    stop: &dyn Fn() -> bool,
) -> Result<Output, PlatformError> {
    let out_reader = child.stdout.take().map(|mut s| {
        thread::spawn(move || {
            let mut v = Vec::new();
            let _ = s.read_to_end(&mut v);
            v
        })
    });
    let err_reader = child.stderr.take().map(|mut s| {
        thread::spawn(move || {
            let mut v = Vec::new();
            let _ = s.read_to_end(&mut v);
            v
        })
    });
    let deadline = Instant::now() + limit;
    let pid = Pid::from_raw(child.id() as i32);
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break Ok(st),
            Ok(None) => {}
            Err(e) => break Err(PlatformError::io(format!("waiting for `{line}`"), e)),
        }
        let interrupted = stop();
        if Instant::now() >= deadline || interrupted {
            let _ = killpg(pid, Signal::SIGKILL);
            let _ = child.kill();
            let _ = child.wait();
            // Readers end once every process holding the pipes is gone.
            let _ = out_reader.map(|h| h.join());
            let _ = err_reader.map(|h| h.join());
            if interrupted {
                return Err(PlatformError::Interrupted);
            }
            return Err(PlatformError::Timeout {
                command: line.to_string(),
                limit,
            });
        }
        thread::sleep(Duration::from_millis(5));
    };
    let status = status?;
    // Anything the command left in its group (a daemonized child) holding our pipes: end it.
    let _ = killpg(pid, Signal::SIGKILL);
    let stdout = out_reader.and_then(|h| h.join().ok()).unwrap_or_default();
    let stderr = err_reader.and_then(|h| h.join().ok()).unwrap_or_default();
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

/// Turns a non-zero exit into [`PlatformError::Command`] with the command's stderr.
pub fn check_output(line: &str, out: &Output) -> Result<(), PlatformError> {
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stderr = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    Err(PlatformError::Command {
        command: line.to_string(),
        status: exit_status_string(&out.status),
        stderr,
    })
}

pub fn exit_status_string(st: &std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (st.code(), st.signal()) {
        (Some(c), _) => format!("exit {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => "unknown status".into(),
    }
}

/// Runs `cmd` and requires success.
pub fn run_ok(cmd: &mut Command, limit: Duration) -> Result<Output, PlatformError> {
    let line = command_line(cmd);
    let out = run(cmd, limit)?;
    check_output(&line, &out)?;
    Ok(out)
}

/// Whether `prog` is found on PATH (or is an executable path).
pub fn which(prog: &str) -> Option<PathBuf> {
    let p = Path::new(prog);
    if p.components().count() > 1 {
        return is_executable(p).then(|| p.to_path_buf());
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    // PATH only: the same lookup `Command` does, so "usable" means "will run".
    std::env::split_paths(&path)
        .map(|d| d.join(prog))
        .find(|c| is_executable(c))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// `uname -r`.
pub fn kernel_release() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Whether `path` is a block device (a published raw block volume).
pub fn is_block_device(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_block_device())
}

/// statvfs of `path`: (total, available) bytes.
pub fn statvfs(path: &Path) -> std::io::Result<(u64, u64)> {
    let s = nix::sys::statvfs::statvfs(path).map_err(std::io::Error::from)?;
    let f = s.fragment_size() as u64;
    Ok((s.blocks() as u64 * f, s.blocks_available() as u64 * f))
}

/// The wall clock in Unix milliseconds (the live checks' windows; the agent stamps its events
/// the same way).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
