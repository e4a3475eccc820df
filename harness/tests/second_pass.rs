//! Issue 23: what a user meets, second pass. One test per item, named after the bug it pins,
//! end to end through the `pvcheck` binary. (Items tested closer to their code: 3 in
//! `interrupt.rs`, 5 in `csi_zoo.rs`, 6 in `workloads/tests/hostile_volumes.rs`, 11 in
//! `checks::integrity`, 14 in `report::table`, 17 in `platform::kube::discover`.)

mod common;

use common::{Env, assert_exit, last_two, stderr, stdout, trial};
use serde_json::Value;

/// A class for the cluster only: on the local platform every trial of it is ignored.
fn kube_only_class(env: &Env) -> String {
    env.write(
        "kube-only.yaml",
        "classes:\n  - name: gp3\n    kube: { storage_class: gp3, size: 1Gi }\n",
    )
}

// 1. A run that tested nothing was green.

#[test]
fn a_run_that_tested_nothing_exits_6_not_0() {
    let env = Env::new();
    let f = kube_only_class(&env);
    let out = env.run(&["--classes", &f]);
    assert_exit(&out, 6);
    let (verdict, last) = last_two(&out);
    assert!(
        verdict.starts_with("pvcheck: NOTHING TESTED: 0 passed, ")
            && verdict.contains("ignored")
            && verdict.contains("exit 6: nothing was tested"),
        "{verdict}"
    );
    assert!(last.starts_with("pvcheck: results in "), "{last}");
    let r = env.result();
    assert_eq!(r["exit_code"], 6);
    assert_eq!(r["summary"]["passed"], 0);
    assert!(env.leftovers().is_empty(), "{:?}", env.leftovers());
}

// 2. --strict misreported a warning as a setup failure.

#[test]
fn strict_fails_a_warned_trial_as_strict_because_of_a_warning_not_as_setup() {
    let env = Env::new();
    // 16 MiB in tmpfs is served from memory: the speed trial passes with the cache warning.
    let out = env.run(&[
        "--exact",
        "tmpfs::speed::randread-4k-qd1",
        "--speed-size",
        "16MiB",
        "--strict",
    ]);
    assert_exit(&out, 4);
    let (verdict, _) = last_two(&out);
    assert!(
        verdict.starts_with(
            "pvcheck: INCONCLUSIVE: 1 of 1 trial failed because of a warning (--strict), 0 passed, 1 with warnings; exit 4"
        ),
        "{verdict}"
    );
    assert!(!verdict.contains("setup"), "{verdict}");
    let r = env.result();
    let t = trial(&r, "tmpfs::speed::randread-4k-qd1");
    assert_eq!(t["status"], "failed");
    assert_eq!(t["failure"]["category"], "strict");
    assert_eq!(t["failure"]["details"]["strict"], true);
    assert!(
        t["failure"]["message"]
            .as_str()
            .unwrap()
            .starts_with("failed because of a warning"),
        "{t}"
    );
    assert_eq!(r["summary"]["failed_by_category"]["strict"], 1);
    assert_eq!(r["summary"]["failed_by_category"]["setup"], 0);
    // The class's line says so too.
    assert!(
        stdout(&out)
            .contains("tmpfs: failed because of a warning (--strict): speed::randread-4k-qd1"),
        "{}",
        stdout(&out)
    );
}

// 4. Resuming a run that was already resumed.

#[test]
fn resuming_an_already_resumed_run_names_the_run_that_resumed_it_and_when() {
    let env = Env::new();
    let runs = env.results.path().join("runs");
    std::fs::create_dir_all(&runs).unwrap();
    let file = runs.join("20261205T110000Z-4567cdef.json");
    std::fs::write(
        &file,
        r#"{"schema_version": 1, "run_id": "4567cdef", "start": "2026-12-05T11:00:00Z", "phase": {"name": "after-upgrade", "resumes": "0123abcd", "resumed_result": null}}"#,
    )
    .unwrap();
    let f = kube_only_class(&env);
    // No cluster: the refusal comes before any contact.
    let out = env.run(&[
        "--platform",
        "kubernetes",
        "--kubeconfig",
        "/nonexistent",
        "--classes",
        &f,
        "--phase",
        "after-upgrade",
        "--resume",
        "0123abcd",
    ]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].contains("already resumed by run 4567cdef at 2026-12-05T11:00:00Z")
            && lines[0].contains(&format!("(result file {})", file.display())),
        "{err}"
    );
    assert!(env.leftovers().is_empty(), "{:?}", env.leftovers());
}

// 8. A nested seed above 2^53.

/// Every number anywhere in `v` that a double cannot hold exactly, with its path.
fn unsafe_numbers(v: &Value, path: &str, out: &mut Vec<String>) {
    match v {
        Value::Number(n) => {
            let too_big = n.as_u64().is_some_and(|u| u > (1u64 << 53) - 1)
                || n.as_i64().is_some_and(|i| i < -((1i64 << 53) - 1));
            if too_big {
                out.push(format!("{path} = {n}"));
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                unsafe_numbers(x, &format!("{path}[{i}]"), out);
            }
        }
        Value::Object(o) => {
            for (k, x) in o {
                unsafe_numbers(x, &format!("{path}.{k}"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn every_seed_and_id_in_a_real_result_file_is_below_2_pow_53() {
    let env = Env::new();
    let out = env.run(&["tmpfs::", "--skip", "speed"]);
    assert_exit(&out, 0);
    let r = env.result();
    // The walk must meet the nested seeds it is about, or it proves nothing.
    let selftest = &trial(&r, "tmpfs::integrity::selftest")["metrics"]["selftest"];
    assert!(
        selftest
            .pointer("/acks/verify/seed")
            .is_some_and(Value::is_u64),
        "{selftest}"
    );
    let mut bad = Vec::new();
    unsafe_numbers(&r, "", &mut bad);
    assert!(bad.is_empty(), "numbers jq would mangle: {bad:#?}");
}

// 13. The cache warning on every quick speed trial.

#[test]
fn the_cache_warning_is_said_once_per_class_not_once_per_workload() {
    let env = Env::new();
    let out = env.run(&["tmpfs::speed::", "--speed-size", "16MiB"]);
    assert_exit(&out, 0);
    let r = env.result();
    let trials = r["trials"].as_array().unwrap();
    let speed: Vec<&Value> = trials
        .iter()
        .filter(|t| t["check"].as_str().unwrap().starts_with("speed::"))
        .collect();
    let warned: Vec<&str> = speed
        .iter()
        .filter(|t| {
            t["warnings"]
                .as_array()
                .unwrap()
                .iter()
                .any(|w| w.as_str().unwrap().contains("caches may flatter"))
        })
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(warned.len(), 1, "{warned:?}");
    // The others that met it say where it was said.
    let noted = speed
        .iter()
        .filter(|t| {
            t["metrics"]["cache_warning"]
                .as_str()
                .is_some_and(|s| s.contains(warned[0]))
        })
        .count();
    assert!(
        noted >= 1,
        "no other workload met the rule: the test proves nothing"
    );
    let so = stdout(&out);
    assert_eq!(so.matches("caches may flatter").count(), 1, "{so}");
}

// 15. --list on another platform without a class file, and ignored trials in the list.

#[test]
fn list_on_kubernetes_without_classes_says_no_class_file_was_given_for_that_platform() {
    let env = Env::new();
    let out = env.run(&["--platform", "kubernetes", "--list"]);
    assert_exit(&out, 0);
    let err = stderr(&out);
    assert!(
        err.contains("no class file given for --platform kubernetes"),
        "{err}"
    );
    // Each listed trial says it will be ignored, and why.
    let so = stdout(&out);
    assert!(
        so.contains("tmpfs::provision: test (ignored: ")
            && so.contains("will be ignored (the reason is on each line)"),
        "{so}"
    );
}

#[test]
fn list_marks_trials_that_will_be_ignored_with_the_reason_in_text_and_json() {
    let env = Env::new();
    let f = kube_only_class(&env);
    let out = env.run(&["--classes", &f, "--list"]);
    assert_exit(&out, 0);
    let so = stdout(&out);
    let line = so
        .lines()
        .find(|l| l.starts_with("gp3::provision: test"))
        .unwrap_or_else(|| panic!("{so}"));
    assert!(
        line.contains("(ignored: ") && line.contains("local:"),
        "{line}"
    );
    let out = env.run(&["--classes", &f, "--list", "--format", "json"]);
    assert_exit(&out, 0);
    let events: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let p = events
        .iter()
        .find(|e| e["name"] == "gp3::provision")
        .unwrap();
    assert_eq!(p["ignore"], true, "{p}");
    assert!(
        p["ignore_message"].as_str().unwrap().contains("local:"),
        "{p}"
    );
}

// 16. Only one name filter was accepted.

#[test]
fn several_name_filters_select_the_union_as_cargo_test_does() {
    let env = Env::new();
    let out = env.run(&["tmpfs::provision", "tmpfs::cleanup", "--list"]);
    assert_exit(&out, 0);
    let so = stdout(&out);
    let names: Vec<&str> = so
        .lines()
        .filter_map(|l| l.split(": test").next().filter(|_| l.contains(": test")))
        .collect();
    assert_eq!(names, ["tmpfs::provision", "tmpfs::cleanup"], "{so}");
    // A real run, with --exact, records both filters.
    let out = env.run(&["--exact", "tmpfs::provision", "tmpfs::cleanup"]);
    assert_exit(&out, 0);
    let r = env.result();
    let ran: Vec<&str> = r["trials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(ran, ["tmpfs::provision", "tmpfs::cleanup"]);
    assert_eq!(
        r["selection"]["filters"],
        serde_json::json!(["tmpfs::provision", "tmpfs::cleanup"])
    );
    // Filters that match nothing are still one line and exit 2.
    let out = env.run(&["nope::a", "nope::b"]);
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains(r#"the filters ["nope::a", "nope::b"] match no trial"#),
        "{}",
        stderr(&out)
    );
}

// 18. The README read top to bottom as a newcomer.

#[test]
fn the_readme_says_each_fact_once_and_keeps_test_cluster_paths_off_the_user_s_path() {
    let readme = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"),
    )
    .unwrap();
    // A user's path: everything before the developers' section.
    let users = readme.split("## Development").next().unwrap();
    for dev_only in ["target/debug", "target/release", "/var/tmp/pvcheck-testenv"] {
        assert!(
            !users.contains(dev_only),
            "{dev_only:?} is on the user's path"
        );
    }
    // Each command line once.
    let mut in_code = false;
    let mut seen = std::collections::HashSet::new();
    for line in readme.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
            continue;
        }
        let cmd = line.split(" #").next().unwrap().trim();
        if in_code && cmd.starts_with("pvcheck ") {
            assert!(seen.insert(cmd.to_string()), "twice: {cmd}");
        }
    }
    // Each paragraph once.
    let mut paragraphs = std::collections::HashSet::new();
    for p in readme.split("\n\n") {
        let p = p.trim();
        if p.len() > 80 && !p.starts_with("```") && !p.starts_with('|') {
            assert!(paragraphs.insert(p), "a paragraph twice:\n{p}");
        }
    }
    // One list of the upgrade command's environment; `PVCHECK_NODE` is in one more, the
    // kubelet commands' (`disruption.kubelet`), and nowhere else.
    for (var, lists) in [
        ("`PVCHECK_PVC`", 1),
        ("`PVCHECK_NODE`", 2),
        ("`PVCHECK_VOLUME_HANDLE`", 1),
        ("`PVCHECK_VOLUME_DIR`", 1),
    ] {
        assert_eq!(
            readme.matches(var).count(),
            lists,
            "{var} is listed more than once per command"
        );
    }
    // One unit system: the terminal's.
    assert!(!readme.contains("MB/s"), "MB/s beside MiB/s");
}
