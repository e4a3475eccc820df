//! Under a seccomp filter that refuses io_uring with EPERM (as containerd's default profile,
//! required by Pod Security "restricted", does), `--engine auto` falls back to the thread
//! engine and says so; `--engine uring` is refused with one line.

#![cfg(target_arch = "x86_64")]

mod speed_common;

use std::os::unix::process::CommandExt;
use std::process::Command;

use pvcheck_workloads::speed::result::{BenchResult, EngineKind};
use speed_common::*;

const SYS_IO_URING_SETUP: u32 = 425;
const SYS_IO_URING_ENTER: u32 = 426;
const SYS_IO_URING_REGISTER: u32 = 427;
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;

fn stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}
fn jump(k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter {
        code: 0x15,
        jt,
        jf,
        k,
    } // BPF_JMP | BPF_JEQ | BPF_K
}

/// The agent with io_uring's three syscalls answering EPERM.
fn agent_without_io_uring(args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(AGENT);
    cmd.arg("bench").args(args);
    // SAFETY: only async-signal-safe calls (prctl) between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            const LD_ABS_W: u16 = 0x20;
            const RET_K: u16 = 0x06;
            let mut prog = [
                stmt(LD_ABS_W, 4), // seccomp_data.arch
                jump(AUDIT_ARCH_X86_64, 0, 5),
                stmt(LD_ABS_W, 0), // seccomp_data.nr
                jump(SYS_IO_URING_SETUP, 2, 0),
                jump(SYS_IO_URING_ENTER, 1, 0),
                jump(SYS_IO_URING_REGISTER, 0, 1),
                stmt(RET_K, 0x0005_0000 | libc::EPERM as u32), // SECCOMP_RET_ERRNO
                stmt(RET_K, 0x7fff_0000),                      // SECCOMP_RET_ALLOW
            ];
            let fprog = libc::sock_fprog {
                len: prog.len() as u16,
                filter: prog.as_mut_ptr(),
            };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(libc::PR_SET_SECCOMP, 2, &fprog as *const _ as usize, 0, 0) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.output().expect("agent runs")
}

#[test]
fn io_uring_refused_by_seccomp_falls_back_to_threads_and_says_so() {
    let d = tempfile::Builder::new()
        .prefix("pvcheck-speed-seccomp-")
        .tempdir()
        .unwrap();
    let mut args = vec![
        "--dir",
        d.path().to_str().unwrap(),
        "--rw",
        "randread",
        "--iodepth",
        "4",
    ];
    args.extend_from_slice(SHORT);
    let out = agent_without_io_uring(&args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: BenchResult = serde_json::from_str(&stdout).unwrap();
    assert_eq!(r.engine, EngineKind::Threads);
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains("io_uring") && w.contains("EPERM")),
        "{:?}",
        r.warnings
    );
    assert_plausible_io(&r, &serde_json::from_str(&stdout).unwrap());
}

#[test]
fn forcing_io_uring_where_seccomp_refuses_it_is_one_clear_line() {
    let d = tempfile::Builder::new()
        .prefix("pvcheck-speed-seccomp-")
        .tempdir()
        .unwrap();
    let out = agent_without_io_uring(&[
        "--dir",
        d.path().to_str().unwrap(),
        "--rw",
        "randread",
        "--runtime",
        "1s",
        "--engine",
        "uring",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains("io_uring is not available") && err.contains("EPERM"),
        "{err}"
    );
    assert_no_leftovers(d.path());
}
