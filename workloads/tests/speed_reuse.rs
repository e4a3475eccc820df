//! `bench --reuse`: the matrix prefills its data file once; later jobs reuse it, a size change
//! or an interrupted prefill writes it again, and a file that is not ours is never touched.

mod speed_common;

use std::path::Path;

use pvcheck_workloads::speed::result::PrefillKind;
use speed_common::*;

fn run(dir: &Path, rw: &str, size: &str) -> pvcheck_workloads::speed::result::BenchResult {
    let mut args = vec!["--dir", dir.to_str().unwrap(), "--rw", rw, "--reuse"];
    // SHORT starts with its own --size: replaced by the one asked for.
    args.extend_from_slice(&["--size", size]);
    args.extend_from_slice(&SHORT[2..]);
    let (r, raw) = bench_ok(&args, 0);
    assert_plausible_io(&r, &raw);
    r
}

fn marker(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("pvcheck-bench.0.prefill")).unwrap()
}

#[test]
fn the_second_job_reuses_the_prefill_and_a_new_size_writes_it_again() {
    let d = tempfile::Builder::new()
        .prefix("pvcheck-speed-reuse-")
        .tempdir()
        .unwrap();
    let r = run(d.path(), "randread", "8MiB");
    assert_eq!(r.prefill.kind, PrefillKind::Written);
    assert_eq!(r.prefill.bytes, 8 << 20);
    assert_eq!(marker(d.path()).trim(), format!("ready {}", 8 << 20));

    let r = run(d.path(), "randwrite", "8MiB");
    assert_eq!(r.prefill.kind, PrefillKind::Reused);
    assert_eq!(r.prefill.bytes, 0);
    let len = std::fs::metadata(d.path().join("pvcheck-bench.0"))
        .unwrap()
        .len();
    assert_eq!(len, 8 << 20, "kept for the next job");

    let r = run(d.path(), "read", "4MiB");
    assert_eq!(
        r.prefill.kind,
        PrefillKind::Written,
        "another size: prefilled again"
    );
    assert_eq!(marker(d.path()).trim(), format!("ready {}", 4 << 20));
    let len = std::fs::metadata(d.path().join("pvcheck-bench.0"))
        .unwrap()
        .len();
    assert_eq!(len, 4 << 20);
}

#[test]
fn an_unfinished_prefill_is_never_taken_for_a_whole_one() {
    // What a prefill interrupted by SIGKILL leaves: our marker, not yet "ready".
    let d = tempfile::Builder::new()
        .prefix("pvcheck-speed-reuse-")
        .tempdir()
        .unwrap();
    std::fs::write(d.path().join("pvcheck-bench.0.prefill"), "filling\n").unwrap();
    std::fs::write(d.path().join("pvcheck-bench.0"), b"partial").unwrap();
    let r = run(d.path(), "randread", "8MiB");
    assert_eq!(r.prefill.kind, PrefillKind::Written);
    assert_eq!(r.prefill.bytes, 8 << 20);
}

#[test]
fn a_ready_marker_whose_file_was_removed_prefills_a_new_file() {
    let d = tempfile::Builder::new()
        .prefix("pvcheck-speed-reuse-")
        .tempdir()
        .unwrap();
    run(d.path(), "randread", "8MiB");
    std::fs::remove_file(d.path().join("pvcheck-bench.0")).unwrap();
    let r = run(d.path(), "randread", "8MiB");
    assert_eq!(r.prefill.kind, PrefillKind::Written);
    assert_eq!(r.prefill.bytes, 8 << 20);
}

#[test]
fn a_file_of_that_name_without_our_marker_is_refused_and_left_alone() {
    let d = tempfile::Builder::new()
        .prefix("pvcheck-speed-reuse-")
        .tempdir()
        .unwrap();
    let theirs = d.path().join("pvcheck-bench.0");
    std::fs::write(&theirs, b"somebody's data").unwrap();
    let mut args = vec![
        "--dir",
        d.path().to_str().unwrap(),
        "--rw",
        "randwrite",
        "--reuse",
    ];
    args.extend_from_slice(SHORT);
    assert_refused(&bench(&args), "pvcheck-bench.0: exists without the marker");
    assert_eq!(std::fs::read(&theirs).unwrap(), b"somebody's data");
}

#[test]
fn reuse_with_a_device_is_refused() {
    let out = bench(&["--device", "/dev/null", "--rw", "read", "--reuse"]);
    assert_refused(&out, "--reuse: works with --dir only");
}
