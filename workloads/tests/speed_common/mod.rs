//! Helpers shared by the speed engine's integration tests: running the agent, loop devices
//! with Drop guards, and the plausibility check every result must pass.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use pvcheck_workloads::speed::latency::LatencyHistogram;
use pvcheck_workloads::speed::result::{BenchResult, LatencySummary};

pub const AGENT: &str = env!("CARGO_BIN_EXE_pvcheck-agent");

pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test needs root (loop devices, mounts); CI runs as root"
    );
}

/// Runs `pvcheck-agent bench ARGS`.
pub fn bench(args: &[&str]) -> Output {
    Command::new(AGENT)
        .arg("bench")
        .args(args)
        .output()
        .expect("agent runs")
}

/// Short-run flags every test uses: small file, 100 ms ramp, 300 ms measured, 100 ms samples.
pub const SHORT: &[&str] = &[
    "--size",
    "8MiB",
    "--ramp",
    "100ms",
    "--runtime",
    "300ms",
    "--sample-interval",
    "100ms",
    "--seed",
    "42",
];

/// A refusal: exit 2, no result on stdout, one `pvcheck-agent: ` line on stderr naming `needle`.
pub fn assert_refused(out: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(out.stdout.is_empty(), "a result on stdout: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("pvcheck-agent: "), "{err}");
    assert!(err.contains(needle), "{err:?} should mention {needle:?}");
}

/// Runs and parses a result that must have exit code `code`.
pub fn bench_ok(args: &[&str], code: i32) -> (BenchResult, serde_json::Value) {
    let out = bench(args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(code),
        "args {args:?}\nstdout {stdout}\nstderr {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let raw: serde_json::Value = serde_json::from_str(&stdout).expect("one JSON object");
    let r: BenchResult = serde_json::from_str(&stdout).expect("BenchResult deserializes");
    (r, raw)
}

fn rel(a: f64, b: f64) -> f64 {
    if a == b {
        0.0
    } else {
        (a - b).abs() / a.abs().max(b.abs())
    }
}

pub fn assert_ordered(l: &LatencySummary, what: &str) {
    assert!(l.p50 > 0, "{what}: p50 is 0: {l:?}");
    assert!(
        l.min <= l.p50
            && l.p50 <= l.p90
            && l.p90 <= l.p99
            && l.p99 <= l.p999
            && l.p999 <= l.p9999
            && l.p9999 <= l.max,
        "{what}: percentiles out of order: {l:?}"
    );
    assert!(
        l.mean >= l.min as f64 && l.mean <= l.max as f64 * 1.001,
        "{what}: mean outside min..max: {l:?}"
    );
}

/// The keys the harness relies on, checked on the raw JSON (not only through serde defaults).
pub fn assert_complete(raw: &serde_json::Value) {
    for k in [
        "schema",
        "status",
        "engine",
        "direct",
        "iops",
        "bw_bytes",
        "lat_ns",
        "qd_achieved",
        "cpu",
        "cv",
        "histogram",
        "histogram_encoding",
        "runtime_s",
        "io_count",
        "bytes",
        "warnings",
        "job",
        "target",
        "iops_samples",
        "seed",
    ] {
        assert!(raw.get(k).is_some(), "missing key {k} in {raw}");
    }
    for k in ["p50", "p90", "p99", "p999", "p9999", "max", "mean"] {
        assert!(raw["lat_ns"].get(k).is_some(), "missing lat_ns.{k}");
    }
    for k in ["user_s", "sys_s"] {
        assert!(raw["cpu"].get(k).is_some(), "missing cpu.{k}");
    }
}

/// Everything a data job's result must satisfy: bytes = IOPS × bs × time within 1 %, the
/// histogram decodes to the I/O count, queue depth within what was asked, sane percentiles.
pub fn assert_plausible_io(r: &BenchResult, raw: &serde_json::Value) {
    assert_complete(raw);
    let j = &r.job;
    assert!(r.io_count > 0, "no I/O: {raw}");
    assert!(
        rel(r.runtime_s, j.runtime_s) < 0.01,
        "runtime {} vs {}",
        r.runtime_s,
        j.runtime_s
    );
    assert_eq!(r.bytes, r.io_count * j.bs);
    let moved = r.iops * j.bs as f64 * r.runtime_s;
    assert!(
        rel(moved, r.bytes as f64) < 0.01,
        "bytes {} vs iops×bs×t {moved}",
        r.bytes
    );
    assert!(rel(r.bw_bytes, r.iops * j.bs as f64) < 0.01);
    assert_ordered(&r.lat_ns, "lat_ns");
    let h = LatencyHistogram::decode(&r.histogram).expect("histogram decodes");
    let headline = if let Some(s) = &r.sync
        && j.rw == pvcheck_workloads::speed::job::JobKind::FsyncLatency
    {
        s.count
    } else {
        r.io_count
    };
    assert_eq!(h.count(), headline, "histogram count");
    let max_qd = (j.iodepth * j.jobs) as f64;
    assert!(
        r.qd_achieved > 0.0 && r.qd_achieved <= max_qd * 1.05 + 0.05,
        "qd_achieved {} with iodepth {} × jobs {}",
        r.qd_achieved,
        j.iodepth,
        j.jobs
    );
    assert!(r.cpu.user_s >= 0.0 && r.cpu.sys_s >= 0.0);
    assert!(
        r.cpu.user_s + r.cpu.sys_s > 0.0,
        "no CPU time recorded: {:?}",
        r.cpu
    );
    assert!(r.iops_samples.len() >= 2, "samples {:?}", r.iops_samples);
    // A single interval may see no completion (a slow fdatasync), never all of them.
    assert!(
        r.iops_samples.iter().all(|s| *s >= 0.0) && r.iops_samples.iter().any(|s| *s > 0.0),
        "{:?}",
        r.iops_samples
    );
    let cv = r.cv.expect("cv with at least 2 samples");
    assert!(cv >= 0.0 && cv.is_finite());
    let mut sum = 0;
    for d in [&r.read, &r.write].into_iter().flatten() {
        assert_eq!(d.bytes, d.io_count * j.bs);
        sum += d.io_count;
        if d.io_count > 0 {
            assert_ordered(&d.lat_ns, "direction lat_ns");
            assert_eq!(
                LatencyHistogram::decode(&d.histogram).unwrap().count(),
                d.io_count
            );
        }
    }
    assert_eq!(sum, r.io_count, "read + write = io_count");
}

/// No `pvcheck-bench.*` / `pvcheck-meta.*` left in `dir`.
pub fn assert_no_leftovers(dir: &Path) {
    let left: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with("pvcheck-"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

fn sh(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd).args(args).output().expect(cmd)
}

/// A loop device over a sparse image in a private temp dir; detached on drop.
pub struct LoopDev {
    pub dev: PathBuf,
    _dir: tempfile::TempDir,
}

impl LoopDev {
    pub fn new(size: u64, read_only: bool) -> Self {
        require_root();
        let dir = tempfile::Builder::new()
            .prefix("pvcheck-speed-loop-")
            .tempdir()
            .unwrap();
        let img = dir.path().join("img");
        std::fs::File::create(&img).unwrap().set_len(size).unwrap();
        let mut args = vec!["--find", "--show"];
        if read_only {
            args.push("--read-only");
        }
        let img_s = img.to_str().unwrap().to_string();
        args.push(&img_s);
        let out = sh("losetup", &args);
        assert!(
            out.status.success(),
            "losetup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let dev = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
        LoopDev { dev, _dir: dir }
    }
    pub fn path(&self) -> &str {
        self.dev.to_str().unwrap()
    }
}

impl Drop for LoopDev {
    fn drop(&mut self) {
        // io_uring releases its files asynchronously after the agent exits: retry briefly.
        for _ in 0..50 {
            if sh("losetup", &["-d", self.path()]).status.success() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        eprintln!("warning: could not detach {}", self.path());
    }
}

/// A mount that is unmounted (with retries) on drop.
pub struct MountGuard(pub PathBuf);

impl MountGuard {
    pub fn tmpfs(dir: &Path, opts: &str) -> Self {
        Self::fs("tmpfs", dir, opts)
    }
    pub fn fs(fstype: &str, dir: &Path, opts: &str) -> Self {
        require_root();
        let out = sh(
            "mount",
            &[
                "-t",
                fstype,
                "-o",
                opts,
                "pvcheck-speed-test",
                dir.to_str().unwrap(),
            ],
        );
        assert!(
            out.status.success(),
            "mount: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        MountGuard(dir.to_path_buf())
    }
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        for _ in 0..50 {
            if sh("umount", &[self.0.to_str().unwrap()]).status.success() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        eprintln!("warning: could not unmount {}", self.0.display());
    }
}
