//! SIGINT/SIGTERM end a job within a second and remove its files unless --keep.

mod speed_common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use speed_common::*;

fn interrupt(sig: libc::c_int, keep: bool) {
    let d = tempfile::Builder::new()
        .prefix("pvcheck-speed-sig-")
        .tempdir()
        .unwrap();
    let mut cmd = Command::new(AGENT);
    cmd.args([
        "bench",
        "--dir",
        d.path().to_str().unwrap(),
        "--rw",
        "randrw",
        "--iodepth",
        "4",
    ])
    .args(["--size", "8MiB", "--runtime", "60s", "--ramp", "0s"]);
    if keep {
        cmd.arg("--keep");
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the job file exists and the job has been running a little.
    let t = Instant::now();
    while std::fs::read_dir(d.path()).unwrap().count() == 0 {
        assert!(t.elapsed() < Duration::from_secs(10), "job never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(400));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, sig) };
    let sent = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if sent.elapsed() > Duration::from_secs(5) {
            let _ = child.kill();
            panic!("agent did not stop within 5 s of the signal");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let took = sent.elapsed();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(took < Duration::from_secs(1), "took {took:?} to stop");
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(err.contains("interrupted"), "{err}");
    assert!(out.stdout.is_empty(), "no result for an interrupted job");
    let left = std::fs::read_dir(d.path()).unwrap().count();
    if keep {
        assert_eq!(left, 1, "--keep keeps the data file");
    } else {
        assert_no_leftovers(d.path());
    }
}

#[test]
fn sigint_stops_within_a_second_and_removes_the_data_file() {
    interrupt(libc::SIGINT, false);
}

#[test]
fn sigterm_with_keep_leaves_the_data_file() {
    interrupt(libc::SIGTERM, true);
}
