//! End to end: `pvcheck run` on the built-in default classes (tmpfs, ext4-loop, xfs-loop) with
//! the quick profile, checked through the result file.

mod common;

use common::{Env, require_root, stderr, stdout, trial};
use serde_json::Value;

const CLASSES: [&str; 3] = ["tmpfs", "ext4-loop", "xfs-loop"];
const WORKLOADS: [&str; 9] = [
    "randread-4k-qd64",
    "randwrite-4k-qd64",
    "randread-4k-qd1",
    "randwrite-4k-qd1",
    "read-1m-qd16",
    "write-1m-qd16",
    "randrw70-4k-qd64",
    "fsync-latency",
    "metadata",
];

/// The whole default suite passes, every trial is in the result file with its status, the
/// fingerprint names what a comparison needs, and nothing is left behind.
#[test]
fn default_suite_passes_and_the_result_file_is_complete() {
    require_root();
    let env = Env::new();
    let out = env.run(&[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        stdout(&out),
        stderr(&out)
    );
    let r = env.result();
    assert_eq!(r["schema_version"], 1);
    assert_eq!(r["platform"], "local");
    assert_eq!(r["profile"], "quick");
    assert_eq!(r["interrupted"], false);
    assert!(r["run_id"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(r["seed"].as_u64().is_some_and(|s| s < 1 << 53));
    for k in ["start", "end"] {
        assert!(
            r[k].as_str().is_some_and(|s| s.ends_with('Z')),
            "{k}: {}",
            r[k]
        );
    }
    let env_fp = &r["environment"];
    for k in ["kernel", "node", "pvcheck_version", "agent_version"] {
        assert!(
            env_fp[k].as_str().is_some_and(|s| !s.is_empty()),
            "environment.{k} missing: {env_fp}"
        );
    }
    for class in CLASSES {
        let c = &env_fp["classes"][class];
        assert_eq!(c["parameters"]["name"], class);
        assert!(
            c["volume"].is_object(),
            "no volume fingerprint for {class}: {c}"
        );
    }
    let ext4 = &env_fp["classes"]["ext4-loop"]["volume"];
    assert_eq!(ext4["fs"], "ext4");
    assert!(
        ext4["effective_mount_options"]
            .as_str()
            .is_some_and(|o| o.contains("rw")),
        "{ext4}"
    );
    assert_eq!(ext4["size_bytes"], 512u64 << 20);

    let trials = r["trials"].as_array().unwrap();
    // Every class of the default file (more may be added, e.g. flexVolume classes) has every check.
    let all_classes: Vec<&String> = env_fp["classes"].as_object().unwrap().keys().collect();
    for class in &all_classes {
        for check in [
            "provision",
            "integrity::recreate",
            "integrity::durability",
            "integrity::selftest",
            "integrity::upgrade",
            "expand",
            "snapshot",
            "cleanup",
        ] {
            trial(&r, &format!("{class}::{check}"));
        }
        for w in WORKLOADS {
            trial(&r, &format!("{class}::speed::{w}"));
        }
    }
    // flex-loop upgrades its driver 1.0.0 -> 2.0.0 and rolls back; both are in the fingerprint.
    assert_eq!(
        trial(&r, "flex-loop::integrity::upgrade")["status"],
        "passed"
    );
    assert_eq!(
        trial(&r, "flex-loop::flexvolume::mountdevice")["status"],
        "passed"
    );
    assert_eq!(
        trial(&r, "flex-bind::flexvolume::mount")["status"],
        "passed"
    );
    let fp = env_fp["classes"]["flex-loop"]["volume"].to_string();
    assert!(
        fp.contains("pvcheck-loop 1.0.0") && fp.contains("pvcheck-loop 2.0.0"),
        "{fp}"
    );
    for t in trials {
        let status = t["status"].as_str().unwrap();
        assert!(
            status == "passed" || status == "ignored",
            "{}: {status}: {}",
            t["name"],
            t["failure"]
        );
        assert!(t["duration_s"].as_f64().is_some());
        if status == "ignored" {
            assert!(
                t["ignored_reason"].as_str().is_some_and(|s| !s.is_empty()),
                "ignored without a reason: {t}"
            );
        }
    }
    for class in CLASSES {
        for check in [
            "provision",
            "integrity::recreate",
            "integrity::durability",
            "integrity::selftest",
            "cleanup",
        ] {
            assert_eq!(
                trial(&r, &format!("{class}::{check}"))["status"],
                "passed",
                "{class}::{check}"
            );
        }
        // The matrix ran in the order (by start time: the file lists trials in plan
        // order), the first data workload prefilled the shared file and the others reused it.
        let mut speed: Vec<(&str, &str)> = trials
            .iter()
            .filter_map(|t| {
                let n = t["name"]
                    .as_str()?
                    .strip_prefix(&format!("{class}::speed::"))?;
                Some((t["started"].as_str()?, n))
            })
            .collect();
        speed.sort();
        let ran: Vec<&str> = speed.iter().map(|(_, n)| *n).collect();
        assert_eq!(ran, WORKLOADS, "{class}: speed trials ran out of order");
        let prefill = |w: &str| {
            trial(&r, &format!("{class}::speed::{w}"))["metrics"]["bench"]["prefill"]["kind"]
                .clone()
        };
        assert_eq!(prefill(WORKLOADS[0]), "written");
        for w in &WORKLOADS[1..7] {
            assert_eq!(prefill(w), "reused", "{class}::speed::{w}");
        }
        assert_eq!(prefill("metadata"), "none");
        // The default classes define no upgrade: ignored, saying so.
        let up = trial(&r, &format!("{class}::integrity::upgrade"));
        assert_eq!(up["status"], "ignored");
        assert!(up["ignored_reason"].as_str().unwrap().contains("upgrade"));
        for w in WORKLOADS {
            let t = trial(&r, &format!("{class}::speed::{w}"));
            assert_eq!(t["status"], "passed");
            let bench = &t["metrics"]["bench"];
            let num = |v: &Value| v.as_f64().unwrap_or(-1.0);
            assert!(
                num(&bench["iops"]) > 0.0,
                "{class}::speed::{w}: iops {}",
                bench["iops"]
            );
            assert!(
                num(&bench["lat_ns"]["p99"]) > 0.0,
                "{class}::speed::{w}: p99 {}",
                bench["lat_ns"]
            );
        }
    }
    for class in ["ext4-loop", "xfs-loop"] {
        for check in ["expand", "snapshot"] {
            assert_eq!(
                trial(&r, &format!("{class}::{check}"))["status"],
                "passed",
                "{class}::{check}"
            );
        }
        let e = trial(&r, &format!("{class}::expand"));
        assert!(e["metrics"]["fs_total_after"].as_u64() > e["metrics"]["fs_total_before"].as_u64());
    }
    for check in ["expand", "snapshot"] {
        assert_eq!(trial(&r, &format!("tmpfs::{check}"))["status"], "ignored");
    }
    let p = trial(&r, "ext4-loop::provision");
    assert!(p["metrics"]["available_bytes"].as_u64() >= p["metrics"]["requested_bytes"].as_u64());
    // The terminal: libtest lines and a line per class (the tables of passed classes are
    // behind --verbose, issue 23).
    let so = stdout(&out);
    assert!(
        so.contains("test ext4-loop::integrity::recreate ... ok")
            || so.contains("test ext4-loop::integrity::recreate "),
        "{so}"
    );
    for class in CLASSES {
        assert!(so.contains(&format!("{class}: integrity clean")), "{so}");
    }
    assert!(!so.contains("p99 latency"), "{so}");
    assert!(
        so.contains("(the per-check tables of the classes that passed: --verbose)"),
        "{so}"
    );
    assert!(env.leftovers().is_empty(), "{:?}", env.leftovers());
}

/// `--list` names every (class × check) as cargo test does, and creates nothing.
#[test]
fn list_names_every_class_and_check_and_creates_nothing() {
    let env = Env::new();
    let out = env.run(&["--list"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let so = stdout(&out);
    for class in CLASSES {
        for check in [
            "provision",
            "integrity::recreate",
            "integrity::durability",
            "integrity::selftest",
            "integrity::upgrade",
            "expand",
            "snapshot",
            "cleanup",
        ] {
            assert!(
                so.lines().any(|l| l == format!("{class}::{check}: test")
                    || l.starts_with(&format!("{class}::{check}: test (ignored: "))),
                "{class}::{check} not listed:\n{so}"
            );
        }
        for w in WORKLOADS {
            assert!(
                so.lines().any(|l| l == format!("{class}::speed::{w}: test")
                    || l.starts_with(&format!("{class}::speed::{w}: test (ignored: "))),
                "{class}::speed::{w} not listed"
            );
        }
    }
    assert!(
        !env.state.path().join("runs").exists()
            || std::fs::read_dir(env.state.path().join("runs"))
                .unwrap()
                .next()
                .is_none()
    );
    assert!(!env.results.path().join("runs").exists());
}

/// Filters, --exact, --skip and --format json behave as in cargo test.
#[test]
fn filters_exact_skip_and_json_format_select_as_cargo_test_does() {
    let env = Env::new();
    let out = env.run(&[
        "--exact",
        "tmpfs::provision",
        "--format",
        "json",
        "--test-threads",
        "1",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    let so = stdout(&out);
    let events: Vec<Value> = so
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "test" && e["name"] == "tmpfs::provision" && e["event"] == "ok"),
        "{so}"
    );
    let r = env.result();
    let names: Vec<&str> = r["trials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["tmpfs::provision"]);

    let env = Env::new();
    let out = env.run(&[
        "tmpfs::",
        "--skip",
        "speed",
        "--skip",
        "integrity",
        "--list",
    ]);
    let so = stdout(&out);
    assert!(
        so.contains("tmpfs::provision: test")
            && !so.contains("speed")
            && !so.contains("integrity")
            && !so.contains("ext4"),
        "{so}"
    );
}
