//! Every job kind, briefly, on a temporary directory: the JSON is complete and plausible.

mod speed_common;

use pvcheck_workloads::speed::result::{EngineKind, Status};
use speed_common::*;

fn dir_job(
    extra: &[&str],
) -> (
    tempfile::TempDir,
    pvcheck_workloads::speed::result::BenchResult,
) {
    let d = tempfile::Builder::new()
        .prefix("pvcheck-speed-")
        .tempdir()
        .unwrap();
    let mut args = vec!["--dir", d.path().to_str().unwrap()];
    // SHORT starts with --size 8MiB: an explicit --size replaces it.
    let short = if extra.contains(&"--size") {
        &SHORT[2..]
    } else {
        SHORT
    };
    args.extend_from_slice(short);
    args.extend_from_slice(extra);
    let (r, raw) = bench_ok(&args, 0);
    assert_eq!(r.status, Status::Ok);
    if r.job.rw != pvcheck_workloads::speed::job::JobKind::Metadata {
        assert_plausible_io(&r, &raw);
    }
    assert_no_leftovers(d.path());
    (d, r)
}

#[test]
fn randread_qd8_uses_io_uring_and_keeps_the_queue_full() {
    let (_d, r) = dir_job(&["--rw", "randread", "--iodepth", "8"]);
    assert_eq!(r.engine, EngineKind::Uring);
    assert!(r.direct, "/tmp is ext4 here: O_DIRECT must be used");
    assert!(r.qd_achieved > 4.0, "qd {}", r.qd_achieved);
    assert!(r.write.is_none());
}

#[test]
fn sequential_read_and_write_with_large_blocks() {
    let (_d, r) = dir_job(&["--rw", "read", "--bs", "1MiB", "--iodepth", "4"]);
    assert_eq!(r.read.as_ref().unwrap().io_count, r.io_count);
    let (_d, r) = dir_job(&["--rw", "write", "--bs", "128KiB", "--iodepth", "2"]);
    assert_eq!(r.write.as_ref().unwrap().io_count, r.io_count);
}

#[test]
fn randwrite_with_two_jobs_and_fsync_every_8() {
    let (_d, r) = dir_job(&[
        "--rw",
        "randwrite",
        "--iodepth",
        "4",
        "--jobs",
        "2",
        "--fsync-every",
        "8",
    ]);
    let s = r.sync.as_ref().expect("sync section");
    assert!(s.count > 0);
    // One fdatasync per 8 writes (per job), give or take the window's edges.
    let expect = r.io_count as f64 / 8.0;
    assert!(
        (s.count as f64 - expect).abs() <= expect * 0.2 + 4.0,
        "{} syncs for {} writes",
        s.count,
        r.io_count
    );
}

/// The engine watches its ring for 50 us by default before it sleeps, and says so in the job;
/// `--spin-wait 0s` sleeps at once (the engine before 2026-12-07) and the result has no spin
/// time. Both keep the queue full and give plausible figures (checked by `dir_job`).
#[test]
fn the_engine_spins_50us_by_default_and_spin_wait_0s_sleeps_at_once() {
    let (_d, r) = dir_job(&["--rw", "randread", "--iodepth", "4"]);
    assert_eq!(r.job.spin_wait_us, 50);
    let (_d, r0) = dir_job(&["--rw", "randread", "--iodepth", "4", "--spin-wait", "0s"]);
    assert_eq!(r0.job.spin_wait_us, 0);
    assert_eq!(r0.cpu.spin_s, None, "spun with --spin-wait 0s");
    assert!(r0.qd_achieved > 2.0, "qd {}", r0.qd_achieved);
    let (_d, r2) = dir_job(&[
        "--rw",
        "randwrite",
        "--iodepth",
        "1",
        "--spin-wait",
        "200us",
    ]);
    assert_eq!(r2.job.spin_wait_us, 200);
}

#[test]
fn randrw_70_mixes_reads_and_writes_in_that_ratio() {
    let (_d, r) = dir_job(&["--rw", "randrw", "--read-pct", "70", "--iodepth", "4"]);
    let reads = r.read.as_ref().unwrap().io_count as f64;
    let frac = reads / r.io_count as f64;
    assert!((0.6..0.8).contains(&frac), "read fraction {frac}");
}

#[test]
fn forced_thread_engine_gives_a_valid_result_at_the_asked_depth() {
    let (_d, r) = dir_job(&["--rw", "randread", "--iodepth", "4", "--engine", "threads"]);
    assert_eq!(r.engine, EngineKind::Threads);
    assert!(r.qd_achieved > 2.0, "qd {}", r.qd_achieved);
    let (_d, r) = dir_job(&[
        "--rw",
        "randrw",
        "--iodepth",
        "2",
        "--engine",
        "threads",
        "--fsync-every",
        "4",
    ]);
    assert_eq!(r.engine, EngineKind::Threads);
    assert!(r.sync.unwrap().count > 0);
}

#[test]
fn fsync_latency_reports_fdatasync_latency_after_every_write() {
    let (_d, r) = dir_job(&["--workload", "fsync-latency"]);
    assert_eq!(r.job.bs, 2300);
    assert!(!r.direct);
    let s = r.sync.as_ref().unwrap();
    assert!(
        s.count.abs_diff(r.io_count) <= 1,
        "{} syncs for {} writes",
        s.count,
        r.io_count
    );
    assert_eq!(r.lat_ns, s.lat_ns, "headline latency is fdatasync's");
}

#[test]
fn metadata_reports_each_operation_rate() {
    let (_d, r) = dir_job(&["--workload", "metadata", "--size", "128KiB"]);
    let m = r.metadata.as_ref().expect("metadata section");
    let ops = [&m.create, &m.stat, &m.rename, &m.unlink];
    let total: u64 = ops.iter().map(|o| o.count).sum();
    assert_eq!(total, r.io_count);
    for o in ops {
        assert!(o.count > 0 && o.ops_per_s > 0.0);
        assert!((o.ops_per_s * r.runtime_s - o.count as f64).abs() <= o.count as f64 * 0.01);
        assert_ordered(&o.lat_ns, "op");
    }
    assert!(r.cv.is_some());
    assert!(
        r.warnings.iter().all(|w| !w.contains("not measured")),
        "{:?}",
        r.warnings
    );
}

#[test]
fn metadata_batches_too_large_for_the_runtime_say_so() {
    let (_d, r) = dir_job(&["--workload", "metadata", "--size", "64MiB"]);
    assert!(
        r.warnings.iter().any(|w| w.contains("not measured")),
        "{:?}",
        r.warnings
    );
}

/// tmpfs accepts O_DIRECT since Linux 6.6; ramfs still refuses it everywhere.
#[test]
fn a_filesystem_refusing_o_direct_runs_buffered_and_says_so() {
    require_root();
    let d = tempfile::Builder::new()
        .prefix("pvcheck-speed-ramfs-")
        .tempdir()
        .unwrap();
    let _m = MountGuard::fs("ramfs", d.path(), "mode=0700");
    let mut args = vec!["--dir", d.path().to_str().unwrap(), "--rw", "randread"];
    args.extend_from_slice(SHORT);
    let (r, raw) = bench_ok(&args, 0);
    assert_plausible_io(&r, &raw);
    assert!(r.job.direct && !r.direct);
    assert!(
        r.warnings.iter().any(|w| w.contains("O_DIRECT")),
        "{:?}",
        r.warnings
    );
    assert_no_leftovers(d.path());
}

#[test]
fn named_workload_with_quick_profile_and_overrides() {
    let (_d, r) = dir_job(&[
        "--profile",
        "quick",
        "--workload",
        "randwrite-4k-qd64",
        "--iodepth",
        "16",
    ]);
    assert_eq!(r.workload.as_deref(), Some("randwrite-4k-qd64"));
    assert_eq!(r.job.iodepth, 16);
    assert_eq!(r.job.size, 8 << 20, "explicit --size overrides the profile");
}

#[test]
fn list_workloads_prints_the_matrix_in_order() {
    let out = bench(&["--list-workloads"]);
    assert!(out.status.success());
    let names: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(names, pvcheck_workloads::speed::matrix::NAMES);
}
