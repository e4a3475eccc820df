//! Shared helpers for the integrity integration tests: run the real agent binary, parse its
//! JSON, and set up loop devices and mounts that are always torn down (Drop guards).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use pvcheck_workloads::integrity::ledger::Ledger;
use pvcheck_workloads::integrity::report::VerifyReport;

pub const AGENT: &str = env!("CARGO_BIN_EXE_pvcheck-agent");

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub fn agent<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Run {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(AGENT)
        .args(args)
        .output()
        .expect("run pvcheck-agent");
    Run {
        code: status.code().expect("agent exited by a signal"),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// Runs `write` and returns the ledger (also saved next to the dir).
pub fn write_dir(dir: &Path, size: &str, seed: u64, threads: u32) -> (Ledger, PathBuf) {
    let r = agent(&[
        "write",
        "--dir",
        dir.to_str().unwrap(),
        "--size",
        size,
        "--seed",
        &seed.to_string(),
        "--volume-id",
        "77",
        "--threads",
        &threads.to_string(),
    ]);
    assert_eq!(r.code, 0, "write failed: {}", r.stderr);
    save_ledger(dir, &r.stdout, "ledger1.json")
}

pub fn save_ledger(dir: &Path, text: &str, name: &str) -> (Ledger, PathBuf) {
    let l: Ledger = serde_json::from_str(text).expect("ledger JSON");
    let path = dir.parent().unwrap().join(format!(
        "{}-{name}",
        dir.file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(&path, text).unwrap();
    (l, path)
}

pub fn verify(
    dir_flag: &str,
    target: &Path,
    ledger: &Path,
    extra: &[&str],
) -> (i32, VerifyReport, String) {
    let mut args = vec![
        "verify",
        dir_flag,
        target.to_str().unwrap(),
        "--ledger",
        ledger.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let r = agent(&args);
    assert!(
        r.code == 0 || r.code == 1,
        "verify exit {}: {}",
        r.code,
        r.stderr
    );
    let rep: VerifyReport = serde_json::from_str(&r.stdout)
        .unwrap_or_else(|e| panic!("report JSON: {e}\n{}", r.stdout));
    assert_eq!(r.code == 0, rep.clean, "exit code agrees with `clean`");
    (r.code, rep, r.stderr)
}

/// A scratch directory that holds a `data` subdir (the --dir) and ledgers beside it.
pub struct Scratch {
    pub root: tempfile::TempDir,
    pub dir: PathBuf,
}

pub fn scratch() -> Scratch {
    let root = tempfile::Builder::new()
        .prefix("pvcheck-integrity-test-")
        .tempdir()
        .unwrap();
    let dir = root.path().join("data");
    std::fs::create_dir(&dir).unwrap();
    Scratch { root, dir }
}

pub fn is_root() -> bool {
    // SAFETY: plain syscall.
    unsafe { libc::geteuid() == 0 }
}

pub fn sh(cmd: &str, args: &[&str]) -> String {
    let o = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        o.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// A loop device over a sparse image; detached on drop.
pub struct LoopDev {
    pub dev: PathBuf,
    pub image: PathBuf,
}

impl LoopDev {
    pub fn new(dir: &Path, size: &str) -> LoopDev {
        assert!(
            is_root(),
            "this test needs root (CI runs as root): loop devices and mounts"
        );
        let image = dir.join(format!("img-{}-{}", std::process::id(), rand_suffix()));
        sh("truncate", &["-s", size, image.to_str().unwrap()]);
        let dev = sh("losetup", &["--find", "--show", image.to_str().unwrap()]);
        LoopDev {
            dev: dev.into(),
            image,
        }
    }
}

impl Drop for LoopDev {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.dev).status();
        let _ = std::fs::remove_file(&self.image);
    }
}

/// A mounted filesystem; unmounted (lazily if busy) on drop, before the loop device detaches.
pub struct Mount {
    pub point: PathBuf,
    pub dev: LoopDev,
}

impl Mount {
    pub fn ext4(dir: &Path, size: &str) -> Mount {
        let dev = LoopDev::new(dir, size);
        sh("mkfs.ext4", &["-q", "-F", dev.dev.to_str().unwrap()]);
        let point = dir.join(format!("mnt-{}-{}", std::process::id(), rand_suffix()));
        std::fs::create_dir(&point).unwrap();
        sh(
            "mount",
            &[dev.dev.to_str().unwrap(), point.to_str().unwrap()],
        );
        Mount { point, dev }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.point)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.point).status();
        }
        let _ = std::fs::remove_dir(&self.point);
    }
}

fn rand_suffix() -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{:x}", n & 0xFFFF_FFFF)
}
