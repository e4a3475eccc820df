//! Every refused input: exit 2, exactly one line on stderr naming the problem, nothing left.

mod speed_common;

use speed_common::*;

fn refused(args: &[&str], needle: &str) {
    let d = tempfile::Builder::new()
        .prefix("pvcheck-speed-bad-")
        .tempdir()
        .unwrap();
    let mut a = vec!["--dir", d.path().to_str().unwrap()];
    a.extend_from_slice(args);
    if !args.contains(&"--rw") && !args.contains(&"--workload") {
        a.extend_from_slice(&["--rw", "randread"]);
    }
    if !args.contains(&"--runtime") {
        a.extend_from_slice(&["--runtime", "1s"]);
    }
    assert_refused(&bench(&a), needle);
    assert_no_leftovers(d.path());
}

#[test]
fn iodepth_0_is_refused() {
    refused(&["--iodepth", "0"], "--iodepth");
}

#[test]
fn jobs_0_is_refused() {
    refused(&["--jobs", "0"], "--jobs");
}

#[test]
fn block_size_not_a_multiple_of_512_with_direct_io_is_refused() {
    refused(&["--bs", "1000B"], "multiple of 512");
    // ... but accepted buffered (checked by running it would take time; validation suffices)
}

/// The write pool holds what can be in flight: 64 MiB × 17 is past its 1 GiB limit, refused
/// before any memory is taken; 64 MiB × 16 (exactly 1 GiB) is not.
#[test]
fn in_flight_data_above_1gib_is_refused() {
    refused(
        &["--bs", "64MiB", "--iodepth", "17", "--size", "2GiB"],
        "exceed 1GiB",
    );
    use pvcheck_workloads::speed::matrix::{Profile, workload};
    let spec = pvcheck_workloads::speed::job::JobParams {
        bs: 64 << 20,
        iodepth: 16,
        ..workload(Profile::Quick, "write-1m-qd16").unwrap().job
    };
    assert_eq!(
        pvcheck_workloads::speed::buffers::pool_len(&spec),
        pvcheck_workloads::speed::job::MAX_POOL
    );
}

/// A spin longer than 1 ms would mostly burn the CPU it measures with: refused, one line.
#[test]
fn spin_wait_above_1ms_is_refused() {
    refused(&["--spin-wait", "2ms"], "--spin-wait");
    refused(&["--spin-wait", "50"], "--spin-wait");
}

#[test]
fn size_smaller_than_block_size_is_refused() {
    refused(
        &["--bs", "64KiB", "--size", "4KiB"],
        "smaller than the block size",
    );
}

#[test]
fn runtime_0_is_refused() {
    refused(&["--runtime", "0s"], "--runtime");
}

#[test]
fn runtime_and_sizes_without_unit_are_refused() {
    refused(&["--runtime", "5"], "no unit");
    refused(&["--size", "64"], "no unit");
    refused(&["--bs", "4096"], "no unit");
    refused(&["--ramp", "1"], "no unit");
    refused(&["--stall-timeout", "10"], "no unit");
}

#[test]
fn unknown_workload_and_bad_percentages_are_refused() {
    refused(&["--workload", "randread-4k-qd128"], "unknown workload");
    refused(&["--rw", "randrw", "--read-pct", "150"], "--read-pct");
    refused(&["--rw", "randread", "--read-pct", "50"], "randrw");
    refused(
        &["--rw", "randread", "--fsync-every", "2"],
        "does not write",
    );
}

#[test]
fn missing_directory_and_missing_target_are_refused() {
    let out = bench(&["--dir", "/nonexistent/pvcheck", "--rw", "read"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr)
            .trim_end()
            .lines()
            .count(),
        1
    );
    let out = bench(&["--rw", "read"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--dir"));
}

#[test]
fn read_only_directory_is_refused() {
    require_root();
    let d = tempfile::Builder::new()
        .prefix("pvcheck-speed-ro-")
        .tempdir()
        .unwrap();
    let _m = MountGuard::tmpfs(d.path(), "ro,size=1m");
    let out = bench(&[
        "--dir",
        d.path().to_str().unwrap(),
        "--rw",
        "randwrite",
        "--runtime",
        "1s",
        "--size",
        "1MiB",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("read-only"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1);
    let out = bench(&[
        "--dir",
        d.path().to_str().unwrap(),
        "--workload",
        "metadata",
        "--runtime",
        "1s",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("read-only"));
}

#[test]
fn read_only_device_is_refused() {
    let dev = LoopDev::new(8 << 20, true);
    let out = bench(&[
        "--device",
        dev.path(),
        "--rw",
        "randread",
        "--runtime",
        "1s",
        "--size",
        "4MiB",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("read-only"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1);
}
