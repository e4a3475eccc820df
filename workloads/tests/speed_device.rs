//! Every data job kind on a raw loop device (root): complete, plausible JSON; the metadata
//! job and oversize regions are refused.

mod speed_common;

use speed_common::*;

fn dev_job(dev: &LoopDev, extra: &[&str]) -> pvcheck_workloads::speed::result::BenchResult {
    let mut args = vec!["--device", dev.path()];
    args.extend_from_slice(SHORT);
    args.extend_from_slice(extra);
    let (r, raw) = bench_ok(&args, 0);
    assert_plausible_io(&r, &raw);
    assert!(r.direct || !r.job.direct, "block devices accept O_DIRECT");
    r
}

#[test]
fn every_data_job_runs_on_a_loop_device() {
    let dev = LoopDev::new(64 << 20, false);
    dev_job(&dev, &["--rw", "randread", "--iodepth", "8"]);
    dev_job(
        &dev,
        &["--rw", "randwrite", "--iodepth", "8", "--jobs", "2"],
    );
    dev_job(&dev, &["--rw", "read", "--bs", "1MiB", "--iodepth", "2"]);
    dev_job(
        &dev,
        &[
            "--rw",
            "write",
            "--bs",
            "64KiB",
            "--iodepth",
            "2",
            "--fsync-every",
            "4",
        ],
    );
    dev_job(
        &dev,
        &["--rw", "randrw", "--read-pct", "70", "--iodepth", "4"],
    );
    dev_job(
        &dev,
        &["--rw", "randread", "--iodepth", "2", "--engine", "threads"],
    );
    let r = dev_job(&dev, &["--workload", "fsync-latency"]);
    assert!(r.sync.unwrap().count > 0);
}

#[test]
fn metadata_on_a_device_and_regions_beyond_its_end_are_refused() {
    let dev = LoopDev::new(16 << 20, false);
    let out = bench(&["--device", dev.path(), "--workload", "metadata"]);
    assert_eq!(out.status.code(), Some(2));
    let out = bench(&[
        "--device",
        dev.path(),
        "--rw",
        "randread",
        "--size",
        "16MiB",
        "--jobs",
        "2",
        "--runtime",
        "1s",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--size") && err.contains("does not fit"),
        "{err}"
    );
}
