//! A target that stops completing I/O (a frozen filesystem: this kernel has no device-mapper
//! to suspend) never hangs the agent: the watchdog prints a `stalled` result saying how many I/Os were in flight, exit 1.

mod speed_common;

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use pvcheck_workloads::speed::result::{BenchResult, Status};
use speed_common::*;

/// An ext4 filesystem on a loop device, mounted in a private directory: frozen on demand,
/// thawed and unmounted on drop, so a failing test never leaves writes blocked.
struct FrozenFs {
    mnt: tempfile::TempDir,
    mounted: bool,
    _lo: LoopDev,
}

impl FrozenFs {
    fn new() -> Self {
        let lo = LoopDev::new(64 << 20, false);
        let out = Command::new("mkfs.ext4")
            .args(["-q", "-F", lo.path()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mkfs.ext4: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mnt = tempfile::Builder::new()
            .prefix("pvcheck-speed-stall-")
            .tempdir()
            .unwrap();
        let out = Command::new("mount")
            .args([lo.path(), mnt.path().to_str().unwrap()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mount: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        FrozenFs {
            mnt,
            mounted: true,
            _lo: lo,
        }
    }
    fn dir(&self) -> &str {
        self.mnt.path().to_str().unwrap()
    }
    fn freeze(&self) {
        let out = Command::new("fsfreeze")
            .args(["-f", self.dir()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "fsfreeze: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    fn thaw(&mut self) {
        let _ = Command::new("fsfreeze").args(["-u", self.dir()]).output();
    }
}

impl Drop for FrozenFs {
    fn drop(&mut self) {
        self.thaw();
        if self.mounted {
            for _ in 0..50 {
                if Command::new("umount")
                    .arg(self.dir())
                    .output()
                    .is_ok_and(|o| o.status.success())
                {
                    self.mounted = false;
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn stalls(engine: &str, env: &[(&str, &str)]) {
    let mut fs = FrozenFs::new();
    let mut child = Command::new(AGENT)
        .envs(env.iter().copied())
        .args([
            "bench",
            "--dir",
            fs.dir(),
            "--rw",
            "randwrite",
            "--iodepth",
            "4",
        ])
        .args([
            "--size",
            "4MiB",
            "--runtime",
            "60s",
            "--ramp",
            "0s",
            "--stall-timeout",
            "1s",
        ])
        .args(["--engine", engine])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Let the prefill finish and the job run, then freeze the filesystem: writes now block.
    std::thread::sleep(Duration::from_millis(700));
    fs.freeze();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    // The result line arrives even though the I/Os never complete (the process itself may
    // only finish exiting once the device answers again, which the kernel decides).
    let line = rx.recv_timeout(Duration::from_secs(10));
    fs.thaw(); // so the kernel can finish the frozen writes and the process can exit
    let status = child.wait().unwrap();
    let line = line.expect("no result within 10 s of a stall: the agent hung");
    let r: BenchResult = serde_json::from_str(&line).expect("stalled result is JSON");
    assert_eq!(r.status, Status::Stalled);
    let s = r.stall.expect("stall section");
    assert!(s.inflight > 0, "{s:?}");
    assert!(s.seconds_without_completion >= 1.0, "{s:?}");
    assert!(r.warnings.iter().any(|w| w.contains("stalled")));
    assert_eq!(status.code(), Some(1));
}

#[test]
fn stalled_device_gives_a_stalled_result_with_io_uring() {
    stalls("uring", &[]);
}

/// Kernels before 6.4 refuse the multishot timeout that wakes the io_uring worker: each wait
/// then carries a timeout of its own, and the watchdog must still end the job.
#[test]
fn stalled_device_gives_a_stalled_result_with_io_uring_and_timed_waits() {
    stalls("uring", &[("PVCHECK_AGENT_TIMED_WAITS", "1")]);
}

#[test]
fn stalled_device_gives_a_stalled_result_with_threads() {
    stalls("threads", &[]);
}
