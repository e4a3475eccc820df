//! The regression gate end to end on real local volumes (issues 12 and 19): two runs of one
//! class compare without a false alarm; the same class on a slower mount (`sync`) is refused as
//! unlike (exit 7), and with --allow-mismatch is called regressed with exit 3; the cases that
//! passed before issue 19 — tmpfs against a `sync` ext4 mount, and writes throttled by a blkio
//! cgroup to 60 % of their speed, at default thresholds — exit 3 naming the workload.
//!
//! Kept cheap: quick profile, 5 repetitions, one or two workloads per run.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::blockdev::{ScratchFs, WriteThrottle, median_of};

/// The tests measure speed: they must not run at the same time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn pvcheck(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pvcheck"))
        .args(args)
        .output()
        .expect("run pvcheck")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `pvcheck run` of the class file with 5 repetitions, one test thread, and `args`.
fn run_command(classes: &Path, results: &Path, state: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pvcheck"));
    cmd.args([
        "run",
        "--classes",
        classes.to_str().unwrap(),
        "--repeat",
        "5",
        "--results",
        results.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
        "--test-threads",
        "1",
    ])
    .args(args);
    cmd
}

/// Runs `filter` of the class file with 5 repetitions (inside `throttle` when given); returns
/// the result file.
fn run_in(
    classes: &Path,
    results: &Path,
    state: &Path,
    args: &[&str],
    throttle: Option<&WriteThrottle>,
) -> PathBuf {
    let before: Vec<_> = std::fs::read_dir(results.join("runs"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    let mut cmd = run_command(classes, results, state, args);
    if let Some(t) = throttle {
        t.apply(&mut cmd);
    }
    let o = cmd.output().expect("run pvcheck");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let after: Vec<_> = std::fs::read_dir(results.join("runs"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    after
        .into_iter()
        .find(|p| !before.contains(p))
        .expect("a new result file")
}

fn run(classes: &Path, results: &Path, state: &Path, args: &[&str]) -> PathBuf {
    run_in(classes, results, state, args, None)
}

fn dir_class(name: &str, dir: &Path) -> String {
    format!(
        "classes:\n  - name: {name}\n    local:\n      dir: {}\n",
        dir.display()
    )
}

fn needs_root_and_mkfs() -> bool {
    if !common::is_root() || pvcheck::sys::which("mkfs.ext4").is_none() {
        eprintln!("skipped: needs root and mkfs.ext4 for loop devices");
        return false;
    }
    true
}

#[test]
fn two_runs_of_one_local_class_compare_without_a_false_alarm() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let d = tempfile::tempdir().unwrap();
    // The volume in memory (/dev/shm where there is one): in CI on 2026-12-05 a directory on
    // the runner's disk, shared with the test cluster's etcd and containerd, wrote 38 % slower
    // in the second run than in the first, in every repetition — the disk's neighbours, which
    // no statistic over the runs' own repetitions can tell from the volume (docs/gate.md has
    // the false-alarm rate measured on a disk). The CPU's neighbours are the gate's to handle
    // (nice −10, cpu.wait_share), and stay in this test.
    let mem = tempfile::Builder::new()
        .prefix("pvcheck-gate-e2e")
        .tempdir_in(if Path::new("/dev/shm").is_dir() {
            Path::new("/dev/shm")
        } else {
            d.path()
        })
        .unwrap();
    let data = mem.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let classes = d.path().join("classes.yaml");
    // Default thresholds: this is the promise as users get it.
    std::fs::write(&classes, dir_class("gate-dir", &data)).unwrap();
    let results = d.path().join("results");
    let state = d.path().join("state");
    let filter = ["speed::rand", "--skip", "qd64"];
    let a = run(&classes, &results, &state, &filter);
    let b = run(&classes, &results, &state, &filter);
    let o = pvcheck(&[
        "compare",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--results",
        results.to_str().unwrap(),
    ]);
    let out = text(&o);
    eprintln!("{out}");
    // Not judged (exit 4) is allowed on a busy machine; a regression is a false alarm.
    assert!(matches!(o.status.code(), Some(0 | 4)), "{out}");
    assert!(!out.contains("REGRESSED"), "a false alarm: {out}");
    assert!(
        out.contains("randread-4k-qd1") && out.contains("randwrite-4k-qd1"),
        "{out}"
    );
}

/// Needs root (loop devices) and mkfs.ext4; otherwise one line says so and the test passes
/// as skipped.
#[test]
fn a_class_on_a_sync_mount_is_refused_as_unlike_and_regressed_with_allow_mismatch() {
    if !needs_root_and_mkfs() {
        return;
    }
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let d = tempfile::tempdir().unwrap();
    // The quick profile's 1-second jobs on a loop device over a shared disk vary far more than
    // the default 10 % within a run, and their repetitions spread more than half of a 5 %
    // threshold: the limits are opened so that this test is about the fingerprint and the
    // verdict (the limits themselves are pinned by the unit tests). A sync mount makes each
    // metadata operation wait for the device: tens of times slower, far beyond -90 %. mkfs
    // without lazy init, or ext4lazyinit writes to the fresh volumes while they are measured.
    let class = |opts: &str| {
        format!(
            "classes:\n  - name: gate-loop\n    local:\n      loop: {{ fs: ext4, size: 512MiB, mkfs_options: [-E, \"lazy_itable_init=0,lazy_journal_init=0\"], mount_options: {opts} }}\n    thresholds: {{ iops: -90%, metadata: -90%, p99: +900%, p999: +900%, max_cv: 1000%, min_qd: 50% }}\n"
        )
    };
    let plain = d.path().join("plain.yaml");
    let sync = d.path().join("sync.yaml");
    std::fs::write(&plain, class("[]")).unwrap();
    std::fs::write(&sync, class("[sync]")).unwrap();
    let results = d.path().join("results");
    let state = d.path().join("state");
    let filter = [
        "speed::", "--skip", "read", "--skip", "qd64", "--skip", "1m", "--skip", "fsync",
    ];
    let a = run(&plain, &results, &state, &filter);
    let b = run(&sync, &results, &state, &filter);
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
    let r = results.to_str().unwrap();
    let o = pvcheck(&["compare", a, b, "--results", r]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(7), "{out}");
    assert!(out.contains("refusing to compare unlike setups"), "{out}");
    assert!(
        out.contains("gate-loop: class.local.loop.mount_options: [] → [\"sync\"]"),
        "{out}"
    );
    let o = pvcheck(&["compare", a, b, "--allow-mismatch", "--results", r]);
    let out = text(&o);
    eprintln!("{out}");
    assert_eq!(o.status.code(), Some(3), "{out}");
    assert!(
        out.contains("UNLIKE SETUPS") && out.contains("REGRESSED"),
        "{out}"
    );
}

/// Issue 19's first case: the same `dir` class on tmpfs, then on ext4 mounted `sync`, compared
/// with --allow-mismatch at default thresholds. It passed with exit 0 ("invalid": IOPS varied
/// within the run); a 70 %+ write slowdown must exit 3 with the workload named.
#[test]
fn a_write_slowdown_from_tmpfs_to_a_sync_mount_exits_3_whatever_the_noise() {
    if !needs_root_and_mkfs() {
        return;
    }
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let d = tempfile::tempdir().unwrap();
    let shm = tempfile::Builder::new()
        .prefix("pvcheck-test-gate-")
        .tempdir_in("/dev/shm")
        .unwrap();
    let sync = ScratchFs::ext4("1G", "sync");
    let (a_yaml, c_yaml) = (d.path().join("a.yaml"), d.path().join("c.yaml"));
    std::fs::write(&a_yaml, dir_class("gate", shm.path())).unwrap();
    std::fs::write(&c_yaml, dir_class("gate", &sync.dir("vols"))).unwrap();
    let (results, state) = (d.path().join("results"), d.path().join("state"));
    let filter = ["--exact", "gate::speed::randwrite-4k-qd1"];
    let a = run(&a_yaml, &results, &state, &filter);
    let c = run(&c_yaml, &results, &state, &filter);
    let (a, c) = (a.to_str().unwrap(), c.to_str().unwrap());
    let r = results.to_str().unwrap();
    let o = pvcheck(&["compare", a, c, "--results", r]);
    assert_eq!(
        o.status.code(),
        Some(7),
        "unlike setups are refused: {}",
        text(&o)
    );
    let o = pvcheck(&["compare", "--allow-mismatch", a, c, "--results", r]);
    let out = text(&o);
    eprintln!("{out}");
    assert_eq!(o.status.code(), Some(3), "{out}");
    assert!(
        out.contains("REGRESSED") && out.contains("randwrite-4k-qd1"),
        "{out}"
    );
}

/// Issue 19's second case: one class on an ext4 loop, then the same run with the agents in a
/// blkio cgroup capping writes at 60 % of the measured randwrite-4k-qd1 IOPS (nothing else
/// changed, fingerprints equal). The issue ran the whole matrix; this runs its random-write
/// workloads, QD1 and QD64, under the same cap. It passed with exit 0; it must exit 3 naming a
/// random-write workload. Without history the gate assumes 12 % run-to-run noise, so QD1's
/// own −40 % may be "not judged" when its repetitions vary within their runs (blkio throttling
/// is bursty) — never a pass.
#[test]
fn writes_throttled_to_sixty_percent_by_a_blkio_cgroup_exit_3() {
    if !needs_root_and_mkfs() {
        return;
    }
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let d = tempfile::tempdir().unwrap();
    let fs = ScratchFs::ext4("1G", "");
    let yaml = d.path().join("c.yaml");
    std::fs::write(&yaml, dir_class("gate", &fs.dir("vols"))).unwrap();
    let (results, state) = (d.path().join("results"), d.path().join("state"));
    let filter = [
        "--exact",
        "gate::speed::randwrite-4k-qd1",
        "gate::speed::randwrite-4k-qd64",
    ];
    let a = run(&yaml, &results, &state, &filter);
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&a).unwrap()).unwrap();
    let iops = median_of(&doc, "gate::speed::randwrite-4k-qd1", "iops");
    let Some(throttle) = WriteThrottle::new(&fs.major_minor(), (iops * 0.6) as u64) else {
        eprintln!("skipped: no cgroup v1 blkio controller to throttle with");
        return;
    };
    let b = run_in(&yaml, &results, &state, &filter, Some(&throttle));
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
    let o = pvcheck(&["compare", a, b, "--results", results.to_str().unwrap()]);
    let out = text(&o);
    eprintln!("base {iops:.0} IOPS, capped at {:.0}:\n{out}", iops * 0.6);
    assert_eq!(o.status.code(), Some(3), "{out}");
    assert!(
        out.contains("REGRESSED") && out.contains("randwrite-4k"),
        "{out}"
    );
    let qd1 = out
        .lines()
        .find(|l| l.contains("randwrite-4k-qd1") && l.contains("IOPS"))
        .unwrap_or_default();
    assert!(!qd1.trim_end().ends_with("pass |"), "{out}");
}

/// Issue 19 item 3: `run --baseline` repeats a workload still inconclusive against the baseline
/// (3 against 3 repetitions allow no exact bound), up to --max-repeat, records how many it took,
/// and `compare` says so. Wide thresholds, so the verdict is decided by the repetitions' count,
/// not by this machine's speed.
#[test]
fn an_inconclusive_workload_is_repeated_until_decided_up_to_max_repeat() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let classes = d.path().join("classes.yaml");
    std::fs::write(
        &classes,
        format!(
            "{}    thresholds: {{ iops: -60%, p99: +500%, p999: +900%, max_cv: 1000%, min_qd: 1% }}\n",
            dir_class("gate-dir", &data)
        ),
    )
    .unwrap();
    let (results, state) = (d.path().join("results"), d.path().join("state"));
    let r = results.to_str().unwrap();
    let common = [
        "run",
        "--classes",
        classes.to_str().unwrap(),
        "--results",
        r,
        "--state-dir",
        state.to_str().unwrap(),
        "--exact",
        "gate-dir::speed::randread-4k-qd1",
        "--repeat",
        "3",
    ];
    let o = pvcheck(&common);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let base = std::fs::read_dir(results.join("runs"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .next()
        .unwrap();
    let mut args = common.to_vec();
    let b = base.to_str().unwrap().to_string();
    args.extend(["--baseline", &b, "--max-repeat", "6"]);
    let o = pvcheck(&args);
    let out = text(&o);
    assert!(matches!(o.status.code(), Some(0 | 4)), "{out}");
    assert!(
        out.contains("randread-4k-qd1 needed") && out.contains("repetitions to decide"),
        "{out}"
    );
    let newest = std::fs::read_dir(results.join("runs"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| *p != base)
        .next()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(newest).unwrap()).unwrap();
    let t = common::trial(&doc, "gate-dir::speed::randread-4k-qd1");
    let r = &t["metrics"]["repeated_until_decided"];
    let total = r["total"].as_u64().unwrap();
    // 3 against 4 still has no bound (P(U = 0) = 1/35 > 2.5 %): at least 5 were needed.
    assert!((5..=6).contains(&total), "{r}");
    assert_eq!(r["initial"], 3, "{r}");
    assert_eq!(
        t["metrics"]["repetitions"].as_array().unwrap().len() as u64,
        total
    );
}

/// Issue 22: the shipped nightly had no gate because `--baseline` needs a baseline the first
/// night cannot have. With `--create-baseline` the first night becomes it (exit 0, said), the
/// second is gated against it (a table, never a refusal), and `--keep-runs` leaves the newest
/// result files only, the baseline untouched.
#[test]
fn a_nightly_first_night_becomes_the_baseline_and_the_second_is_gated() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let classes = d.path().join("classes.yaml");
    // This test is about the nightly's flow, not the quality flags (pinned elsewhere): a busy
    // machine must not make the first night's baseline be refused.
    let class = format!(
        "{}    thresholds: {{ max_cv: 10000%, max_cpu_wait: 100%, min_qd: 1% }}\n",
        dir_class("nightly-dir", &data)
    );
    std::fs::write(&classes, class).unwrap();
    let results = d.path().join("results");
    let state = d.path().join("state");
    let junit = d.path().join("junit.xml");
    let night = || {
        let o = run_command(
            &classes,
            &results,
            &state,
            &[
                "--baseline",
                "nightly",
                "--create-baseline",
                "--keep-runs",
                "1",
                "--junit",
                junit.to_str().unwrap(),
                "--exact",
                "nightly-dir::speed::randread-4k-qd1",
            ],
        )
        .output()
        .expect("run pvcheck");
        (o.status.code(), text(&o))
    };
    let (code, out) = night();
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("NO BASELINE YET"), "{out}");
    assert!(results.join("baselines/nightly.json").is_file(), "{out}");
    let (code, out) = night();
    // The exit is the gate's verdict, whatever it is (CI's disk alarmed here once: a p99 of
    // +52 % between two nights of one class); refused (7) or failed is never right.
    assert!(matches!(code, Some(0 | 3 | 4)), "{out}");
    assert_eq!(code, common::gate_line_exit(&out), "{out}");
    assert!(
        out.contains("comparing") && out.contains("randread-4k-qd1"),
        "{out}"
    );
    assert!(!out.contains("NO BASELINE YET"), "{out}");
    let runs: Vec<_> = std::fs::read_dir(results.join("runs"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(runs.len(), 1, "--keep-runs 1 left {runs:?}");
    assert!(out.contains("removed 1 older result file"), "{out}");
    assert!(results.join("baselines/nightly.json").is_file());
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("pvcheck-gate"), "{xml}");
}
