//! End to end on a real cluster (testenv, issue 7): the `pvcheck` binary against the API server
//! of `PVCHECK_TEST_KUBECONFIG`. Without it every test prints one line and passes as skipped.
//!
//! The agent image must be in the cluster: `pvcheck image export` + `testenv/import-image`
//! (these tests do it when `PVCHECK_TEST_IMPORT_IMAGE` names the import command).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::kube::{
    kube_args, kube_cmd, kubeconfig, objects_of_run, run_fixture_ok, run_id, run_kube,
};
use common::{Env, assert_exit, fixtures, stderr, stdout, trial};
use serde_json::Value;

/// Requests of run `run_id` in the test cluster's audit log (`$PVCHECK_TESTENV_STATE/audit.log`,
/// written by testenv/up): distinct audit ids under the run's User-Agent. `None` (with a line)
/// when the cluster's state directory is not known.
fn audited_requests(run_id: &str) -> Option<u64> {
    let Some(state) = std::env::var_os("PVCHECK_TESTENV_STATE") else {
        eprintln!(
            "audit log not checked: PVCHECK_TESTENV_STATE is not set (scripts/test-all sets it)"
        );
        return None;
    };
    let log = std::path::Path::new(&state).join("audit.log");
    let text = std::fs::read_to_string(&log)
        .unwrap_or_else(|e| panic!("the test cluster's audit log {}: {e}", log.display()));
    let agent = format!("(run {run_id})");
    let ids: std::collections::BTreeSet<String> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["userAgent"].as_str().is_some_and(|a| a.ends_with(&agent)))
        .filter_map(|e| e["auditID"].as_str().map(str::to_string))
        .collect();
    Some(ids.len() as u64)
}

/// Pods run `run_id` created, from the test cluster's audit log; `None` as for
/// [`audited_requests`].
fn audited_pod_creates(run_id: &str) -> Option<usize> {
    let state = std::env::var_os("PVCHECK_TESTENV_STATE")?;
    let text = std::fs::read_to_string(std::path::Path::new(&state).join("audit.log")).ok()?;
    let agent = format!("(run {run_id})");
    let ids: std::collections::BTreeSet<String> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["userAgent"].as_str().is_some_and(|a| a.ends_with(&agent)))
        .filter(|e| e["verb"] == "create" && e["objectRef"]["resource"] == "pods")
        .filter(|e| e["objectRef"]["subresource"].is_null())
        .filter_map(|e| e["auditID"].as_str().map(str::to_string))
        .collect();
    Some(ids.len())
}

/// Issue 21: the quick speed matrix took one agent pod per workload (and one more to read the
/// volume's capacity per workload), 2.7 s of each 4.0 s trial spent starting a pod. It now runs
/// in one pod: every workload still its own trial with its own figures, in the matrix's order,
/// each saying where it ran.
#[test]
fn the_speed_matrix_runs_in_one_agent_pod_each_workload_its_own_trial() {
    let Some(kc) = kubeconfig() else { return };
    let env = Env::new();
    let r = run_fixture_ok(&env, &kc, "kube/hostpath.yaml", &["speed::"]);
    let speed: Vec<&Value> = r["trials"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| {
            t["check"]
                .as_str()
                .is_some_and(|c| c.starts_with("speed::"))
        })
        .collect();
    assert_eq!(speed.len(), 9, "{r}");
    let mut pods = std::collections::BTreeSet::new();
    for (i, t) in speed.iter().enumerate() {
        assert_eq!(t["status"], "passed", "{t}");
        let w = t["check"].as_str().unwrap().trim_start_matches("speed::");
        assert_eq!(t["metrics"]["bench"]["workload"], w, "its own figures: {t}");
        let batch = &t["metrics"]["repetitions"][0]["batch"];
        assert_eq!(batch["index"], i, "{t}");
        assert_eq!(batch["of"], 9, "{t}");
        pods.insert(batch["pod"].as_str().unwrap().to_string());
    }
    assert_eq!(pods.len(), 1, "one pod ran the matrix: {pods:?}");
    // The holder, one capacity read of the new volume, the matrix.
    if let Some(created) = audited_pod_creates(&run_id(&r)) {
        assert_eq!(created, 3, "pods the run created");
    }
    assert!(objects_of_run(&kc, &run_id(&r)).is_empty());
}

/// Every check on the hostpath class passes; API requests are counted per check and printed.
#[test]
fn every_check_passes_on_the_hostpath_class() {
    let Some(kc) = kubeconfig() else { return };
    let env = Env::new();
    let classes = fixtures().join("kube/hostpath.yaml");
    let mut args: Vec<String> = kube_args(&kc);
    args.extend([
        "--classes".into(),
        classes.display().to_string(),
        "--skip".into(),
        "speed::".into(),
        // They restart the cluster's one driver under the other tests' pods, and the fixture's
        // upgrade replaces nothing: kube_live.rs runs them alone.
        "--skip".into(),
        "integrity::live-upgrade".into(),
        "--skip".into(),
        "disruption::".into(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let start = Instant::now();
    let out = env.run(&args);
    eprintln!("{}", stderr(&out));
    println!("{}", stdout(&out));
    assert_exit(&out, 0);
    let r = env.result();
    assert_eq!(r["platform"], "kubernetes");
    for name in [
        "provision",
        "integrity::recreate",
        "integrity::durability",
        "integrity::selftest",
        "integrity::upgrade",
        "expand",
        "snapshot",
        "clone",
        "cleanup",
    ] {
        let t = trial(&r, &format!("hostpath::{name}"));
        assert_eq!(t["status"], "passed", "{name}: {t}");
    }
    assert_timeline_shows_the_platform_waits(&r, &stderr(&out));
    let requests = &r["environment"]["platform_report"]["api_requests"];
    eprintln!(
        "API requests: {} in {:.0}s",
        requests["total"],
        start.elapsed().as_secs_f64()
    );
    for (check, n) in requests["by_check"].as_object().unwrap() {
        eprintln!("  {check}: {}", n["total"]);
        // Bounded: a check's requests do not grow with how long it waits (watches, not polls).
        assert!(n["total"].as_u64().unwrap() < 400, "{check}: {n}");
    }
    // The API server's own count: its audit log records every request of the run under
    // pvcheck's User-Agent, which names the run (a count pvcheck keeps itself could be blind
    // to requests it makes around its counter).
    if let Some(audited) = audited_requests(&run_id(&r)) {
        eprintln!(
            "API requests in the API server's audit log: {audited} (pvcheck counted {})",
            requests["total"]
        );
        assert_eq!(
            Some(audited),
            requests["total"].as_u64(),
            "the audit log and pvcheck's count of the run's API requests differ"
        );
    }
    assert!(
        objects_of_run(&kc, &run_id(&r)).is_empty(),
        "{:?}",
        objects_of_run(&kc, &run_id(&r))
    );
}

/// Issue 21: where a trial's time goes. The recreate trial's timeline has each wait of a pod's
/// life on this attachable, WaitForFirstConsumer class (claim bound within the first pod's
/// start, pod scheduled, volume attached, the kubelet's in-use report, container started,
/// agent ran, pod deleted, the kubelet's in-use clear, detached, claim deleted), each inside
/// the trial; the result's timing sums them and the run prints their shares. The two kubelet
/// waits are the kubelet's status period (5 s on testenv's nodes): each of the trial's three
/// holder starts and three detaches crosses one, and a figure is missed only when the
/// kubelet's status write lands in the few milliseconds before pvcheck's watch of the node
/// begins, so one of three is required. (`log_read` is not required: an agent run that ends at its end line in the
/// followed log reads no log afterwards, and which comes first, that line or the pod's
/// terminated status, varies from run to run.)
fn assert_timeline_shows_the_platform_waits(r: &serde_json::Value, stderr: &str) {
    let t = trial(r, "hostpath::integrity::recreate");
    let duration = t["duration_s"].as_f64().unwrap();
    let spans = t["timeline"].as_array().expect("a timeline");
    for s in spans {
        let (at, secs) = (s["at_s"].as_f64().unwrap(), s["seconds"].as_f64().unwrap());
        assert!(
            at >= 0.0 && secs >= 0.0 && at + secs <= duration + 0.01,
            "{s} in {duration}s"
        );
        assert!(!s["subject"].as_str().unwrap().is_empty(), "{s}");
    }
    let waits: std::collections::BTreeSet<&str> =
        spans.iter().map(|s| s["wait"].as_str().unwrap()).collect();
    for w in [
        "claim_bound",
        "pod_scheduled",
        "volume_attached",
        "in_use_reported",
        "container_started",
        "agent_ran",
        "pod_deleted",
        "in_use_cleared",
        "volume_detached",
        "claim_deleted",
    ] {
        assert!(waits.contains(w), "{w} missing from {spans:#?}");
    }
    // A recreate: a second attach after the detach.
    let attaches = spans
        .iter()
        .filter(|s| s["wait"] == "volume_attached")
        .count();
    assert!(attaches >= 2, "{spans:#?}");
    let sums = &r["timing"]["waits_s"];
    assert!(sums["agent_ran"].as_f64().unwrap() > 0.0, "{sums}");
    assert!(
        stderr.contains("pvcheck: where the trials'") && stderr.contains("agents "),
        "{stderr}"
    );
}

/// volumeMode Block: the PVC is a raw device in the pod (`volumeDevices`), the non-root agent
/// opens it (the device belongs to the pod's user), and every data check that needs no
/// filesystem runs through it; the others are ignored with the reason.
#[test]
fn block_volumes_run_the_data_checks_on_the_raw_device_in_the_pod() {
    let Some(kc) = kubeconfig() else { return };
    let env = Env::new();
    let r = run_fixture_ok(
        &env,
        &kc,
        "kube/hostpath-block.yaml",
        &["--skip", "speed::"],
    );
    for name in [
        "provision",
        "integrity::recreate",
        "expand",
        "snapshot",
        "cleanup",
    ] {
        let t = trial(&r, &format!("hostpath-block::{name}"));
        assert_eq!(t["status"], "passed", "{name}: {t}");
    }
    let recreate = trial(&r, "hostpath-block::integrity::recreate");
    assert_eq!(
        recreate["metrics"]["verify_after_rewrite_and_recreate"]["target"], "device",
        "{recreate}"
    );
    for name in ["integrity::durability", "integrity::selftest"] {
        let t = trial(&r, &format!("hostpath-block::{name}"));
        assert_eq!(t["status"], "ignored", "{name}: {t}");
        assert!(
            t["ignored_reason"]
                .as_str()
                .unwrap_or_default()
                .contains("raw block volume"),
            "{name}: {t}"
        );
    }
    assert!(
        objects_of_run(&kc, &run_id(&r)).is_empty(),
        "{:?}",
        objects_of_run(&kc, &run_id(&r))
    );
}

/// Two pods on one ReadWriteMany claim at the same time: each writes its own region while the
/// other writes, then verifies the other's. The test driver stages a volume on one node at a
/// time, so the class's placement pins the pods to node 1: on the two-node test cluster both
/// pods run there and the result says so (a warning, not silence).
#[test]
fn rwx_runs_two_pods_at_once_each_verifying_the_others_region() {
    let Some(kc) = kubeconfig() else { return };
    let env = Env::new();
    let classes = fixtures().join("kube/hostpath-rwx.yaml");
    let out = run_kube(&env, &kc, &classes, &["--exact", "hostpath-rwx::rwx"]);
    assert_exit(&out, 0);
    let r = env.result();
    let t = trial(&r, "hostpath-rwx::rwx");
    assert_eq!(t["status"], "passed", "{t}");
    let m = &t["metrics"];
    for key in [
        "verify_by_pod_a_of_what_pod_b_wrote",
        "verify_by_pod_b_of_what_pod_a_wrote",
    ] {
        assert_eq!(m[key]["clean"], true, "{key}: {t}");
        assert!(
            m[key]["blocks_checked"].as_u64().unwrap_or(0) > 0,
            "{key}: {t}"
        );
    }
    let (a, b) = (
        m["nodes"]["a"].as_str().unwrap(),
        m["nodes"]["b"].as_str().unwrap(),
    );
    let nodes = common::kube::node_names(&kc);
    if a == b && nodes.len() > 1 {
        assert!(
            t["warnings"][0]
                .as_str()
                .unwrap()
                .contains("both pods ran on node"),
            "{t}"
        );
    }
    assert!(objects_of_run(&kc, &run_id(&r)).is_empty());
}

/// An upgrade command that damages one block on the node (under the driver's data directory)
/// is caught with the right kind, file and offset.
#[test]
fn an_upgrade_that_damages_a_block_on_the_node_is_caught_with_kind_and_offset() {
    let Some(kc) = kubeconfig() else { return };
    let Ok(data_dir) = std::env::var("CSI_HOSTPATH_DATA_DIR") else {
        eprintln!("skipped: CSI_HOSTPATH_DATA_DIR is not set (testenv's env file gives it)");
        return;
    };
    let env = Env::new();
    let classes = fixtures().join("kube/hostpath-flip-byte.yaml");
    let mut c = kube_cmd(
        &env,
        &kc,
        &classes,
        &["--exact", "hostpath-flip::integrity::upgrade"],
    );
    c.env("CSI_HOSTPATH_DATA_DIR", data_dir);
    let out = c.output().unwrap();
    assert_exit(&out, 1);
    let record = env.record();
    let (file, byte) = record
        .trim()
        .split_once(' ')
        .expect("the fixture recorded what it flipped");
    let block = byte.parse::<u64>().unwrap() / 4096 * 4096;
    let r = env.result();
    let t = trial(&r, "hostpath-flip::integrity::upgrade");
    let damage = t["failure"]["details"]["damage"].as_array().unwrap();
    assert_eq!(damage.len(), 1, "{damage:?}");
    assert_eq!(damage[0]["kind"], "corrupt");
    assert_eq!(damage[0]["file"], file);
    assert_eq!(damage[0]["offset"], block);
    assert!(objects_of_run(&kc, &run_id(&r)).is_empty());
}

/// SIGINT in the middle of a run: exit 130 and no object of the run is left (listed by label).
#[test]
fn sigint_mid_run_leaves_no_object() {
    let Some(kc) = kubeconfig() else { return };
    let env = Env::new();
    let classes = fixtures().join("kube/hostpath.yaml");
    let child = kube_cmd(&env, &kc, &classes, &["--skip", "speed::"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the run's pods exist, so the signal lands in the middle.
    let deadline = Instant::now() + Duration::from_secs(120);
    let kubectl = std::env::var("PVCHECK_TEST_KUBECTL").unwrap_or_else(|_| "kubectl".into());
    let mut started = false;
    while Instant::now() < deadline {
        let out = Command::new(&kubectl)
            .args([
                "--kubeconfig",
                &kc,
                "get",
                "pods",
                "-A",
                "-l",
                "pvcheck.io/role=agent",
                "-o",
                "name",
            ])
            .output()
            .unwrap();
        if !out.stdout.is_empty() {
            started = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(started, "no agent pod appeared within 120 s");
    nix_kill(child.id());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "stderr: {}", stderr(&out));
    let r = env.result();
    assert_eq!(r["interrupted"], true);
    let left = objects_of_run(&kc, &run_id(&r));
    assert!(left.is_empty(), "left after SIGINT: {left:?}");
}

fn nix_kill(pid: u32) {
    Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
}

/// A StorageClass that does not exist: exit 2 before anything is created.
#[test]
fn a_storageclass_that_does_not_exist_is_exit_2_and_creates_nothing() {
    let Some(kc) = kubeconfig() else { return };
    let env = Env::new();
    let classes = fixtures().join("kube/missing-storageclass.yaml");
    let out = run_kube(&env, &kc, &classes, &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.trim().lines().count() == 1
            && err.contains("no-such-storageclass")
            && err.contains("missing-storageclass.yaml"),
        "{err}"
    );
    assert!(
        !env.results.path().join("runs").exists(),
        "a result file was written"
    );
}
