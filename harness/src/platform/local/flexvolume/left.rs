//! What a flexVolume driver left running for a volume.
//!
//! A flexVolume driver is an executable kubelet runs once per call, but real ones leave a
//! process behind for the mount (a FUSE daemon: blobfuse, s3fs, goofys-based drivers): the
//! volume's data path then depends on it, and it is what a driver "restart" can break. A
//! process counts as left by this volume's driver when all of these hold:
//! - it carries the run's label (`PVCHECK_RUN_LABEL`, given to every driver call), so pvcheck
//!   started it;
//! - pvcheck is not among its ancestors (the call that started it has ended: the agent and
//!   the calls in flight are pvcheck's children, never "left");
//! - it is in the process group of one of this volume's driver calls, or its command line names
//!   a path under the volume's own directory (a daemon that started its own session still
//!   names the mount point it serves).
//!
//! `disruption::node-plugin-kill` SIGKILLs exactly these (each checked by pid and start time
//! just before); `integrity::live-upgrade` lists them before and after the driver swap.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// How long a SIGKILLed process may take to be gone.
const GONE_WITHIN: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum LeftError {
    #[error("SIGKILL to pid {pid} ({cmdline}): {errno}")]
    Kill {
        pid: i32,
        cmdline: String,
        errno: nix::errno::Errno,
    },
    #[error("pid {pid} ({cmdline}) still runs {:?} after SIGKILL", GONE_WITHIN)]
    StillRunning { pid: i32, cmdline: String },
}

/// One process as read from /proc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcInfo {
    pub pid: i32,
    pub ppid: i32,
    pub pgid: i32,
    pub start_time: u64,
    /// The value of `PVCHECK_RUN_LABEL` in its environment.
    pub label: Option<String>,
    pub args: Vec<String>,
}

/// A process the volume's driver left, and why it counts as such.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LeftProcess {
    pub pid: i32,
    #[serde(skip)]
    pub start_time: u64,
    pub cmdline: String,
    pub why: &'static str,
}

fn read(pid: i32) -> Option<ProcInfo> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    // rest starts at field 3 (state): 4 ppid, 5 pgrp, 22 start time.
    let f: Vec<&str> = rest.split_whitespace().collect();
    if matches!(f.first(), Some(&"Z") | Some(&"X")) {
        return None;
    }
    let want = format!("{}=", crate::sys::RUN_LABEL_ENV);
    let label = std::fs::read(format!("/proc/{pid}/environ"))
        .ok()
        .and_then(|env| {
            env.split(|b| *b == 0)
                .find_map(|kv| kv.strip_prefix(want.as_bytes()))
                .map(|v| String::from_utf8_lossy(v).into_owned())
        });
    let args = std::fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    Some(ProcInfo {
        pid,
        ppid: f.get(1)?.parse().ok()?,
        pgid: f.get(2)?.parse().ok()?,
        start_time: f.get(19)?.parse().ok()?,
        label,
        args,
    })
}

fn all() -> Vec<ProcInfo> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(read)
        .collect()
}

/// The processes of `procs` this volume's driver left (see the module's rules): `me` is
/// pvcheck's pid, `call_pgids` the process groups of the volume's driver calls (each call is
/// its own group), `volume_dir` the volume's own directory.
pub fn select(
    procs: &[ProcInfo],
    run_id: &str,
    me: i32,
    call_pgids: &[i32],
    volume_dir: &Path,
) -> Vec<LeftProcess> {
    let parent: HashMap<i32, i32> = procs.iter().map(|p| (p.pid, p.ppid)).collect();
    let under_me = |mut pid: i32| {
        for _ in 0..64 {
            if pid == me {
                return true;
            }
            match parent.get(&pid) {
                Some(&pp) if pp > 1 && pp != pid => pid = pp,
                _ => return false,
            }
        }
        false
    };
    let dir = volume_dir.display().to_string();
    let below = format!("{dir}/");
    // `v1/…` or `v1` itself, never `v10/…`.
    let names_dir = |a: &str| a.contains(&below) || a.ends_with(&dir);
    let mut out: Vec<LeftProcess> = procs
        .iter()
        .filter(|p| p.label.as_deref() == Some(run_id) && !under_me(p.pid))
        .filter_map(|p| {
            let why = if call_pgids.contains(&p.pgid) {
                "in the process group of one of the volume's driver calls"
            } else if p.args.iter().any(|a| names_dir(a)) {
                "its command line names the volume's path"
            } else {
                return None;
            };
            Some(LeftProcess {
                pid: p.pid,
                start_time: p.start_time,
                cmdline: p.args.join(" "),
                why,
            })
        })
        .collect();
    out.sort_by_key(|p| p.pid);
    out
}

/// What this volume's driver left running now.
pub fn find(run_id: &str, call_pgids: &[i32], volume_dir: &Path) -> Vec<LeftProcess> {
    let dir = std::fs::canonicalize(volume_dir).unwrap_or_else(|_| volume_dir.to_path_buf());
    let procs = all();
    let me = std::process::id() as i32;
    let mut out = select(&procs, run_id, me, call_pgids, &dir);
    if dir != volume_dir {
        for p in select(&procs, run_id, me, call_pgids, volume_dir) {
            if !out.iter().any(|o| o.pid == p.pid) {
                out.push(p);
            }
        }
    }
    out
}

/// SIGKILLs each (when it is still the same process: pid and start time) and waits until they
/// are gone; returns when the last one was.
pub fn kill_all(procs: &[LeftProcess]) -> Result<(), LeftError> {
    for p in procs {
        if crate::sys::process_start_time(p.pid) != Some(p.start_time) {
            continue; // ended meanwhile: not ours to signal any more
        }
        match kill(Pid::from_raw(p.pid), Signal::SIGKILL) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
            Err(errno) => {
                return Err(LeftError::Kill {
                    pid: p.pid,
                    cmdline: p.cmdline.clone(),
                    errno,
                });
            }
        }
    }
    let deadline = Instant::now() + GONE_WITHIN;
    for p in procs {
        // Gone, a zombie, or the pid reused by another process.
        while crate::sys::process_start_time(p.pid) == Some(p.start_time) {
            if Instant::now() > deadline {
                return Err(LeftError::StillRunning {
                    pid: p.pid,
                    cmdline: p.cmdline.clone(),
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pid: i32, ppid: i32, pgid: i32, label: Option<&str>, args: &[&str]) -> ProcInfo {
        ProcInfo {
            pid,
            ppid,
            pgid,
            start_time: 7,
            label: label.map(str::to_string),
            args: args.iter().map(|a| a.to_string()).collect(),
        }
    }

    /// The daemon a mount call left (reparented to init, in the call's group or naming the
    /// mount point) is the volume's; pvcheck's own children (the agent writing to the same
    /// mount), another run's daemon and an unlabelled process naming the path are not.
    #[test]
    fn only_orphans_of_this_runs_driver_calls_for_this_volume_count_as_left() {
        let vol = Path::new("/state/runs/r1/volumes/v1");
        let procs = vec![
            p(100, 1, 100, None, &["pvcheck", "run"]),
            // the agent: pvcheck's child, names the mount
            p(
                101,
                100,
                101,
                Some("r1"),
                &[
                    "pvcheck",
                    "agent",
                    "live-stream",
                    "--dir",
                    "/state/runs/r1/volumes/v1/kubelet/pods/x",
                ],
            ),
            // a daemon in a (dead) mount call's group
            p(
                200,
                1,
                150,
                Some("r1"),
                &["fuse-daemon", "--source", "/data/v1"],
            ),
            // a daemon in its own session naming the mount point
            p(
                201,
                1,
                201,
                Some("r1"),
                &[
                    "fuse-daemon",
                    "--mountpoint",
                    "/state/runs/r1/volumes/v1/kubelet/pods/x",
                ],
            ),
            // another run's daemon for a path of the same name
            p(
                202,
                1,
                202,
                Some("r0"),
                &[
                    "fuse-daemon",
                    "--mountpoint",
                    "/state/runs/r1/volumes/v1/kubelet/pods/x",
                ],
            ),
            // not started by pvcheck
            p(203, 1, 203, None, &["s3fs", "/state/runs/r1/volumes/v1/x"]),
            // another volume's daemon of the same run
            p(
                204,
                1,
                204,
                Some("r1"),
                &[
                    "fuse-daemon",
                    "--mountpoint",
                    "/state/runs/r1/volumes/v10/m",
                ],
            ),
        ];
        let left = select(&procs, "r1", 100, &[150], vol);
        let pids: Vec<(i32, &str)> = left.iter().map(|l| (l.pid, l.why)).collect();
        assert_eq!(
            pids,
            [
                (
                    200,
                    "in the process group of one of the volume's driver calls"
                ),
                (201, "its command line names the volume's path")
            ]
        );
    }

    /// Killing a process that is already gone (or whose pid now names another start time) is
    /// no error and signals nothing.
    #[test]
    fn a_process_gone_before_the_kill_is_not_signalled() {
        let gone = LeftProcess {
            pid: std::process::id() as i32,
            start_time: u64::MAX, // not pvcheck's own start time
            cmdline: "x".into(),
            why: "test",
        };
        assert!(kill_all(&[gone]).is_ok());
    }
}
