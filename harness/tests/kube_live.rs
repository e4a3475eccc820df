//! `integrity::live-upgrade` and `disruption::node-plugin-kill` on the real test cluster (issue
//! 20): the test driver's node plugin pods (testenv's DaemonSet pvcheck-test-csi-node, one per
//! node) are rolled node by node by the class's upgrade (`kubectl rollout restart`, then the
//! rollout waited for) or deleted with grace period 0 on every node while agent pods (one per
//! node) stream fsync-acknowledged records.
//!
//! With bind mounts (testenv/up's driver) both pass and verify every acknowledged record; with
//! the driver switched to `--data-path fuse-inside` (`testenv/csi-data-path`: the FUSE mounts are
//! served by the plugin process and die with it) both fail `upgrade` with ENOTCONN, naming the
//! node and the window. The tests restart the cluster's driver, so they hold one lock, and the
//! driver is switched back to bind mounts however they end.
//!
//! `disruption::kubelet-restart` and `disruption::pod-deleted-while-kubelet-down` stop and start
//! the volume's node's kubelet with `testenv/kubelet` (the class's `disruption.kubelet` commands) under the
//! same stream: the healthy driver passes both with every record verified; a stop command that
//! fails is `setup`, naming its stderr, and the kubelet stays up.
//!
//! Without `PVCHECK_TEST_KUBECONFIG` (and, for switching the driver, `PVCHECK_TESTENV_STATE`)
//! every test prints one line and passes as skipped, as the other kube tests do.

mod common;

use std::path::PathBuf;
use std::sync::Mutex;

use common::kube::{
    ServiceAccount, cordoned_nodes, driver_rollout, kube_args, kubeconfig, kubectl_out, node_names,
    objects_of_run, run_id, run_kube, testenv_var,
};
use common::{Env, stderr, stdout, trial};
use serde_json::Value;

/// The two tests restart the one driver of the cluster: one at a time.
static DRIVER: Mutex<()> = Mutex::new(());

const CHECKS: [&str; 2] = ["integrity::live-upgrade", "disruption::node-plugin-kill"];

fn switch_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testenv/csi-data-path")
}

/// Switches the cluster's driver to `mode` (`testenv/csi-data-path`; `mode` may carry its
/// `--lose-acked-writes-on-restart`), panicking when it fails.
fn switch(state: &str, mode: &str) {
    let out = std::process::Command::new(switch_script())
        .args(mode.split(' '))
        .args(["--state", state])
        .output()
        .expect("testenv/csi-data-path");
    assert!(
        out.status.success(),
        "testenv/csi-data-path {mode}: {}",
        stderr(&out)
    );
}

/// The cluster's one driver, held by a test: when the test ends, passed or not, the driver is
/// put back on bind mounts, and only then is the next test let in. The lock is this struct's
/// own field, so the order holds however a test binds it: CI stop 31's lose-acked-writes test
/// was switched back to bind under its feet by the previous test, whose destructured guard
/// (`_one`) had been dropped before its switch back (`_back`).
struct BackToBind {
    state: String,
    _one: std::sync::MutexGuard<'static, ()>,
}

impl Drop for BackToBind {
    fn drop(&mut self) {
        let _ = std::process::Command::new(switch_script())
            .args(["bind", "--state", &self.state])
            .output();
        // `_one` is dropped after this body: the next test starts on bind mounts.
    }
}

/// The class's `disruption.node_mounts` for the test cluster at `state` (`testenv/kubelet
/// mounts`), or none without one.
fn node_mounts(state: Option<&str>) -> String {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testenv/kubelet");
    state
        .map(|s| {
            format!(
                "      node_mounts: \"{} mounts $PVCHECK_NODE --state {s}\"\n",
                script.display()
            )
        })
        .unwrap_or_default()
}

/// A class on testenv's StorageClass whose upgrade is a rollout restart of the driver, its
/// node mounts read with `testenv/kubelet mounts` where the cluster's state is known.
fn class_file(env: &Env, name: &str) -> String {
    let kubectl = std::env::var("PVCHECK_TEST_KUBECTL").unwrap_or_else(|_| "kubectl".into());
    let mounts = node_mounts(testenv_var("PVCHECK_TESTENV_STATE").as_deref());
    let file = env.scratch.path().join("classes.yaml");
    std::fs::write(
        &file,
        format!(
            "classes:\n  - name: {name}\n    kube:\n      storage_class: csi-hostpath-sc\n      size: 256Mi\n    upgrade:\n      command: \"{kubectl} -n pvcheck-testenv rollout restart daemonset/pvcheck-test-csi-node\"\n      rollout: [ {{ kind: DaemonSet, namespace: pvcheck-testenv, name: pvcheck-test-csi-node }} ]\n    disruption:\n      node_plugin_kill: true\n{mounts}    timeouts: {{ provision: 2m, attach: 2m, pod_start: 3m, upgrade: 3m }}\n"
        ),
    )
    .unwrap();
    file.display().to_string()
}

/// Both kubelet checks.
const KUBELET_CHECKS: [&str; 2] = [
    "disruption::kubelet-restart",
    "disruption::pod-deleted-while-kubelet-down",
];

/// A class on testenv's StorageClass whose `disruption.kubelet` commands (and
/// `disruption.node_mounts`) are testenv/kubelet's for the cluster at `state`,
/// `{name}-badstop`, whose stop command fails, and `{name}-nokubelet` without either.
fn kubelet_class_file(env: &Env, name: &str, state: &str) -> String {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testenv/kubelet");
    let script = script.display();
    let file = env.scratch.path().join("kubelet-classes.yaml");
    let class = |n: &str, stop_state: &str| {
        format!(
            "  - name: {n}\n    kube:\n      storage_class: csi-hostpath-sc\n      size: 256Mi\n    disruption:\n      kubelet:\n        stop: \"{script} stop $PVCHECK_NODE --state {stop_state}\"\n        start: \"{script} start $PVCHECK_NODE --state {state}\"\n{}    timeouts: {{ provision: 2m, attach: 2m, pod_start: 3m, upgrade: 2m }}\n",
            node_mounts(Some(state))
        )
    };
    std::fs::write(
        &file,
        format!(
            "classes:\n{}{}  - name: {name}-nokubelet\n    kube: {{ storage_class: csi-hostpath-sc, size: 256Mi }}\n",
            class(name, state),
            class(&format!("{name}-badstop"), "/nonexistent/pvcheck-testenv")
        ),
    )
    .unwrap();
    file.display().to_string()
}

/// Runs both checks of `class`, one after the other; returns the exit code and the result.
fn run_both(kc: &str, env: &Env, class: &str) -> (Option<i32>, Value) {
    run_both_as(kc, kc, env, class)
}

/// [`run_both`] with pvcheck using the kubeconfig `as_kc` (objects are listed with `kc`).
fn run_both_as(kc: &str, as_kc: &str, env: &Env, class: &str) -> (Option<i32>, Value) {
    let file = class_file(env, class);
    let mut args = kube_args(as_kc);
    args.extend([
        "--classes".into(),
        file,
        "--test-threads".into(),
        "1".into(),
    ]);
    args.push("--exact".into());
    args.extend(CHECKS.iter().map(|c| format!("{class}::{c}")));
    let (out, r) = run_leaving_nothing(kc, env, &args);
    (out.status.code(), r)
}

/// pvcheck with `args`, its output printed: the output and the result, once nothing of the
/// run is left on the cluster.
fn run_leaving_nothing(kc: &str, env: &Env, args: &[String]) -> (std::process::Output, Value) {
    let out = env.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    eprintln!("{}", stderr(&out));
    println!("{}", stdout(&out));
    let r = env.result();
    assert!(
        objects_of_run(kc, &run_id(&r)).is_empty(),
        "left: {:?}",
        objects_of_run(kc, &run_id(&r))
    );
    (out, r)
}

/// A test holding the cluster's one driver, switched to a data path and put back on bind
/// mounts however the test ends ([`BackToBind`]), with a scratch environment and the class
/// file ([`class_file`]) of class `class`.
struct OnDriver {
    kc: String,
    state: String,
    env: Env,
    class: String,
    file: String,
    _back: BackToBind,
}

/// [`OnDriver`] with the driver switched to `mode`, a class named `{prefix}-<pid>`. `None`
/// (the test skips) without a test cluster.
fn on_driver(mode: &str, prefix: &str) -> Option<OnDriver> {
    let kc = kubeconfig()?;
    let state = testenv_var("PVCHECK_TESTENV_STATE")?;
    let back = BackToBind {
        state: state.clone(),
        _one: DRIVER.lock().unwrap_or_else(|e| e.into_inner()),
    };
    switch(&state, mode);
    let env = Env::new();
    let class = format!("{prefix}-{}", std::process::id());
    let file = class_file(&env, &class);
    Some(OnDriver {
        kc,
        state,
        env,
        class,
        file,
        _back: back,
    })
}

/// Both checks on a class of `prefix`, with the cluster's driver switched to `mode` and put
/// back on bind mounts however the test ends: the exit code, the result and the class's name.
/// `None` (the test skips) without a test cluster.
fn run_with_driver(mode: &str, prefix: &str) -> Option<(Option<i32>, Value, String)> {
    let d = on_driver(mode, prefix)?;
    let (code, r) = run_both(&d.kc, &d.env, &d.class);
    Some((code, r, d.class.clone()))
}

/// `check` of `class` (in class file `file`) alone: pvcheck's output.
fn run_check(kc: &str, env: &Env, file: &str, class: &str, check: &str) -> std::process::Output {
    let exact = format!("{class}::{check}");
    run_kube(env, kc, std::path::Path::new(file), &["--exact", &exact])
}

/// `integrity::live-upgrade` of `class` (in class file `file`) alone: pvcheck's output.
fn run_live_upgrade(kc: &str, env: &Env, file: &str, class: &str) -> std::process::Output {
    run_check(kc, env, file, class, "integrity::live-upgrade")
}

/// A run of `trial` alone that must have failed `upgrade` and left nothing of itself on the
/// cluster: exit 1, the trial failed as `upgrade`; returns its message.
fn failed_as_upgrade(kc: &str, env: &Env, out: &std::process::Output, trial_name: &str) -> String {
    eprintln!("{}", stderr(out));
    let r = env.result();
    assert_eq!(out.status.code(), Some(1), "{r}");
    let t = trial(&r, trial_name);
    assert_eq!(t["status"], "failed", "{t}");
    assert_eq!(t["failure"]["category"], "upgrade", "{t}");
    assert!(
        objects_of_run(kc, &run_id(&r)).is_empty(),
        "left: {:?}",
        objects_of_run(kc, &run_id(&r))
    );
    t["failure"]["message"].as_str().unwrap_or("").to_string()
}

/// A node of the test cluster (`pvcheck-node-<n>`).
fn is_node(v: &Value) -> bool {
    v.as_str().is_some_and(|n| n.starts_with("pvcheck-node-"))
}

/// The driver replaced under each agent's pod: node, old and new pod UIDs.
fn assert_window_names_the_replaced_pod(live: &Value, check: &str) {
    let windows = live["windows"].as_array().expect("windows");
    assert!(!windows.is_empty(), "{check}: no window: {live}");
    for w in windows {
        assert!(is_node(&w["node"]), "{check}: {w}");
        let (old, new) = (&w["report"]["old"]["uid"], &w["report"]["new"]["uid"]);
        assert!(
            old.is_string() && new.is_string() && old != new,
            "{check}: the node plugin pod was not replaced: {w}"
        );
        assert!(
            w["new_driver_answered_s"].as_f64() >= w["began_s"].as_f64(),
            "{check}: {w}"
        );
        // The window ends when the kubelet lists the driver again, not at a Ready pod.
        assert!(
            w["report"]["registered_ms"].as_u64() >= w["report"]["new_ready_ms"].as_u64(),
            "{check}: {w}"
        );
    }
}

/// `live-upgrade` on the two-node cluster: one agent per node (at least two), one window per
/// node, each naming its node and the node plugin pod it replaced (old and new UIDs), and
/// every agent's acknowledged records verified in place and after the recreate, the second
/// volume recreated on another node.
fn assert_rolled_on_every_node(t: &Value) {
    let live = &t["metrics"]["live"];
    let agents = live["agents"].as_array().expect("agents");
    assert!(agents.len() >= 2, "one agent per node: {live}");
    let windows = live["windows"].as_array().expect("windows");
    let mut nodes: Vec<&str> = windows.iter().filter_map(|w| w["node"].as_str()).collect();
    nodes.sort();
    nodes.dedup();
    assert!(
        nodes.len() >= 2 && windows.len() >= 2,
        "a window per node: {live}"
    );
    for w in windows {
        let pod = w["report"]["old"]["pod"].as_str().unwrap_or("");
        assert!(
            pod.starts_with("pvcheck-testenv/pvcheck-test-csi-node-"),
            "the window names the replaced DaemonSet pod: {w}"
        );
        assert!(w["agent"]["records_acknowledged"].as_u64() > Some(0), "{w}");
    }
    for a in agents {
        let acked = a["records_acknowledged"].as_u64().unwrap_or(0);
        assert!(acked > 0, "{a}");
        assert_eq!(a["records_verified_in_place"], acked, "{a}");
        assert_eq!(a["records_verified_after_recreate"], acked, "{a}");
    }
    assert_ne!(
        agents[1]["recreated_on"], agents[1]["node"],
        "the second volume is recreated on another node: {live}"
    );
}

/// The healthy driver (bind mounts survive their plugin): the upgrade rolled and the plugin pod
/// deleted with grace period 0 under the writing agent cost no error and no record; every
/// acknowledged record verified in place and after the recreate; after the kill the volume
/// staged and published once in its node's mount table; an upgrade whose new pod runs the very
/// same images is named (a warning), not passed over.
#[test]
fn the_healthy_driver_passes_live_upgrade_and_node_plugin_kill_with_every_record_verified() {
    let Some((code, r, class)) = run_with_driver("bind", "live-bind") else {
        return;
    };
    assert_eq!(code, Some(0), "{r}");
    for check in CHECKS {
        let t = trial(&r, &format!("{class}::{check}"));
        assert_eq!(t["status"], "passed", "{check}: {t}");
        let live = &t["metrics"]["live"];
        let acked = live["records_acknowledged"].as_u64().unwrap();
        assert!(acked > 0, "{check}: {live}");
        assert_eq!(live["records_verified_in_place"], acked, "{check}: {live}");
        assert_eq!(
            live["records_verified_after_recreate"], acked,
            "{check}: {live}"
        );
        assert_eq!(live["errors_by_kind"], serde_json::json!({}), "{check}");
        assert_window_names_the_replaced_pod(live, check);
        eprintln!(
            "{check}: {:.1} s, {acked} acknowledged records verified twice",
            t["duration_s"].as_f64().unwrap_or(f64::NAN)
        );
    }
    // The upgrade rolled node by node under one agent per node: a window per node, each
    // naming its node and the replaced pod, and every agent's records all verified.
    let upgrade = trial(&r, &format!("{class}::integrity::live-upgrade"));
    assert_rolled_on_every_node(upgrade);
    // A rollout restart is not a new version: the trial says what its window tested.
    assert!(
        upgrade["warnings"]
            .to_string()
            .contains("replaced by one with the same images and image IDs"),
        "{upgrade}"
    );
    let kill = trial(&r, &format!("{class}::disruption::node-plugin-kill"));
    // The plugin killed on every node under one agent per node, each volume usable after.
    assert_rolled_on_every_node(kill);
    assert_eq!(kill["metrics"]["live"]["usable_after"], true, "{kill}");
    // The kill node's mount table, read with `disruption.node_mounts` while the agents ran,
    // then after the recreate.
    assert_mounted_once("disruption::node-plugin-kill", &kill["metrics"]["live"]);
    assert!(
        !kill["warnings"]
            .to_string()
            .contains("staged and published exactly once was not checked"),
        "{kill}"
    );
}

/// FUSE mounts served inside the node plugin process: the rollout and the forced deletion each
/// leave the agent's mount answering ENOTCONN. Both checks fail `upgrade`, a line naming
/// ENOTCONN, the node and the window; the records acknowledged before are still all there
/// (verified through a new mount), so it is not `data`.
#[test]
fn fuse_inside_the_node_plugin_fails_live_upgrade_and_node_plugin_kill_with_enotconn_naming_the_node()
 {
    let Some((code, r, class)) = run_with_driver("fuse-inside", "live-fuse") else {
        return;
    };
    assert_eq!(code, Some(1), "{r}");
    for check in CHECKS {
        let t = trial(&r, &format!("{class}::{check}"));
        assert_eq!(t["status"], "failed", "{check}: {t}");
        assert_eq!(t["failure"]["category"], "upgrade", "{check}: {t}");
        let message = t["failure"]["message"].as_str().unwrap();
        let first = message.lines().next().unwrap_or("");
        // Errors are listed by errno: a dying FUSE mount may answer one ECONNABORTED first.
        assert!(
            first.contains("on node pvcheck-node-")
                && first.contains("s into the stream")
                && message.lines().any(|l| l
                    .contains("the mount answered ENOTCONN: transport endpoint is not connected")
                    && l.contains("on node pvcheck-node-")),
            "{check}: a line must name ENOTCONN, the node and the window: {message}"
        );
        let live = &t["metrics"]["live"];
        assert!(
            live["errors_by_kind"]["ENOTCONN"]["count"].as_u64() > Some(0),
            "{check}: {live}"
        );
        assert_window_names_the_replaced_pod(live, check);
        // Both roll on every node: a window per node.
        assert!(
            live["windows"].as_array().map_or(0, Vec::len) >= 2,
            "{check}: a window per node: {live}"
        );
    }
}

/// `upgrade.drain: true` on the cluster, as FUSE drivers document their upgrade: with the
/// FUSE-inside-the-plugin driver (whose rollout kills every mount it serves, the failure above)
/// pvcheck cordons the agents' nodes, evicts their pods through the Eviction API, rolls the
/// upgrade, uncordons and brings the pods back: the live upgrade passes with no error and every
/// record verified, each step names the nodes it cordoned and the pods it evicted, a window per
/// node; afterwards no node is left cordoned and nothing of the run is left.
#[test]
fn a_drained_upgrade_cordons_evicts_and_uncordons_and_passes_the_fuse_inside_driver() {
    let Some(OnDriver {
        kc,
        env,
        class,
        file,
        _back,
        ..
    }) = on_driver("fuse-inside", "live-drain")
    else {
        return;
    };
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("    upgrade:\n", "    upgrade:\n      drain: true\n");
    std::fs::write(&file, text).unwrap();
    let before = cordoned_nodes(&kc);
    let out = run_live_upgrade(&kc, &env, &file, &class);
    let r = env.result();
    assert_eq!(out.status.code(), Some(0), "{}\n{r}", stderr(&out));
    let t = trial(&r, &format!("{class}::integrity::live-upgrade"));
    assert_eq!(t["status"], "passed", "{t}");
    let live = &t["metrics"]["live"];
    assert_eq!(live["drain"], true, "{live}");
    assert_eq!(live["errors_by_kind"], serde_json::json!({}), "{live}");
    let acked = live["records_acknowledged"].as_u64().unwrap_or(0);
    assert!(acked > 0, "{live}");
    assert_eq!(live["records_verified_in_place"], acked, "{live}");
    assert_eq!(live["records_verified_after_recreate"], acked, "{live}");
    let drained = live["drained"].as_array().expect("drained");
    assert_eq!(drained.len(), 2, "one drain per step: {live}");
    for d in drained {
        let cordoned = d["cordoned"].as_array().map_or(0, Vec::len);
        let evicted = d["evicted"].as_array().map_or(0, Vec::len);
        assert!(
            cordoned >= 2 && evicted >= 2,
            "every agent's node and pod: {d}"
        );
    }
    assert!(
        live["windows"].as_array().map_or(0, Vec::len) >= 2,
        "a window per node: {live}"
    );
    assert_eq!(cordoned_nodes(&kc), before, "a node was left cordoned");
    assert!(objects_of_run(&kc, &run_id(&r)).is_empty());
}

/// The release that acknowledges writes and rewinds the volume when its plugin restarts: both
/// checks fail `data` (never only `upgrade`), the first line naming the verify over the
/// surviving mount, the node and the window, then the first damaged acknowledged record.
#[test]
fn a_driver_that_drops_acknowledged_writes_on_restart_fails_both_as_data_naming_record_and_node() {
    let Some(d) = on_driver("bind --lose-acked-writes-on-restart", "live-lose") else {
        return;
    };
    let (code, r) = run_both(&d.kc, &d.env, &d.class);
    let class = &d.class;
    // CI stop 31 ran this on the healthy release (see BackToBind): the driver's log says
    // which release served (its banner names the flag) and what it rewound at its start.
    assert_eq!(code, Some(1), "{r}\n{}", driver_log(&d.kc));
    for check in CHECKS {
        let t = trial(&r, &format!("{class}::{check}"));
        assert_eq!(t["status"], "failed", "{check}: {t}");
        assert_eq!(t["failure"]["category"], "data", "{check}: {t}");
        let message = t["failure"]["message"].as_str().unwrap();
        let mut lines = message.lines();
        let first = lines.next().unwrap_or("");
        assert!(
            first.starts_with("verify of acknowledged records over the surviving mount")
                && first.contains("on node pvcheck-node-"),
            "{check}: {message}"
        );
        assert!(
            lines.next().unwrap_or("").contains(
                "first damaged acknowledged record: 0 (live-1/pvcheck-durability.log offset 0)"
            ),
            "{check}: {message}"
        );
        assert_window_names_the_replaced_pod(&t["metrics"]["live"], check);
    }
}

/// CI stop 30: a node plugin whose registration the kubelet lost after a restart passed the
/// window (its pod was Ready) and the check failed three minutes later on a pod that could not
/// be unmounted. Here the upgrade is a release whose registrar names a socket where no driver
/// listens (node-driver-registrar's `--kubelet-registration-path` set wrong): the pods roll
/// and are Ready, the kubelet never registers the driver. The live upgrade fails `upgrade`
/// once the node's CSINode has not listed the driver for 60 s, naming the node, the new pod
/// and the driver; rolled back meanwhile (by this test, as an operator would, after the
/// verdict), everything of the run is removed.
#[test]
fn a_release_whose_registrar_never_registers_fails_live_upgrade_naming_the_node_s_csinode() {
    let Some(OnDriver {
        kc,
        state,
        env,
        class,
        file,
        _back,
        ..
    }) = on_driver("bind", "live-unregistered")
    else {
        return;
    };
    let upgrade = format!(
        "{} bind --register-wrong-socket --state {state}",
        switch_script().display()
    );
    edit_class(&file, &[("command: ", format!("command: \"{upgrade}\""))]);
    // The rollback: once the bad release has rolled out, 75 s (pvcheck gives the kubelet 60 s
    // to list the driver after the new pod is Ready), then back to the healthy release, so the
    // run's pods can be unmounted and removed.
    let rollback = Rollback::after(&kc, &state, "not-the-driver.sock", 75);
    let out = run_live_upgrade(&kc, &env, &file, &class);
    rollback.join();
    let message = failed_as_upgrade(
        &kc,
        &env,
        &out,
        &format!("{class}::integrity::live-upgrade"),
    );
    assert!(
        message.contains("the new node plugin pod pvcheck-testenv/pvcheck-test-csi-node-")
            && message.contains("did not list the driver in CSINode pvcheck-node-")
            && message.contains("driver hostpath.csi.pvcheck.io")
            && message.contains("within 60 s"),
        "{message}"
    );
    // The failed upgrade still says what the agents' volumes held (verified through new agent
    // pods on the nodes, which start once the test has rolled the driver back).
    assert!(
        message.contains("over the mount(s) that survived the failed replacement"),
        "{message}"
    );
}

/// Replaces each line of the class file `file` that starts (after its indent) with a key of
/// `edits` by the line given, at the same indent.
fn edit_class(file: &str, edits: &[(&str, String)]) {
    let text = std::fs::read_to_string(file).unwrap();
    let text = text
        .lines()
        .map(|l| {
            let indent = &l[..l.len() - l.trim_start().len()];
            match edits.iter().find(|(k, _)| l.trim_start().starts_with(k)) {
                Some((_, line)) => format!("{indent}{line}"),
                None => l.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(file, text + "\n").unwrap();
}

/// An operator rolling a bad release back: once the driver's DaemonSet holds `marker` (the
/// bad release was applied) and has rolled out, `secs` later the driver goes back to the
/// healthy release, so the run's pods can be unmounted and removed. Nothing when pvcheck ends
/// before the bad release came.
struct Rollback {
    ran: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Rollback {
    fn after(kc: &str, state: &str, marker: &str, secs: u64) -> Rollback {
        let ran = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (kc, state, marker, done) = (
            kc.to_string(),
            state.to_string(),
            marker.to_string(),
            ran.clone(),
        );
        let thread = std::thread::spawn(move || {
            let ds = [
                "-n",
                "pvcheck-testenv",
                "get",
                "daemonset/pvcheck-test-csi-node",
                "-o",
                "json",
            ];
            while !kubectl_out(&kc, &ds).contains(&marker) {
                if done.load(std::sync::atomic::Ordering::SeqCst) {
                    return; // pvcheck ended before the upgrade: the asserts say why
                }
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
            driver_rollout(&kc, "status");
            std::thread::sleep(std::time::Duration::from_secs(secs));
            switch(&state, "bind");
        });
        Rollback { ran, thread }
    }

    /// pvcheck has ended: waits for the rollback (if the bad release came).
    fn join(self) {
        self.ran.store(true, std::sync::atomic::Ordering::SeqCst);
        self.thread.join().expect("the rollback");
    }
}

/// Issue 20's state-forgetting release on the cluster (ceph-csi 1.1 could not tear down volumes
/// attached under 1.0, ceph/ceph-csi#658): the upgrade is a node plugin that keeps its state
/// under a new file name and migrates nothing (`testenv/csi-data-path bind --state-file …`), so
/// it no longer knows the volume it is to take over. `integrity::upgrade` fails `upgrade`: its
/// verify after the step is a new agent pod on the node, and the new driver answers the
/// kubelet's NodePublishVolume with NotFound until the pod's start limit. The failure names the
/// step, the pre-upgrade volume and the driver's answer (not a slow cluster: not `timeout`).
/// Rolled back meanwhile (by this test, as an operator would), nothing of the run is left.
#[test]
fn a_release_that_forgets_its_predecessors_volumes_fails_the_upgrade_check_naming_not_found() {
    let Some(OnDriver {
        kc,
        state,
        env,
        class,
        file,
        _back,
        ..
    }) = on_driver("bind", "forgetful")
    else {
        return;
    };
    let upgrade = format!(
        "{} bind --state-file forgotten-{}.json --state {state}",
        switch_script().display(),
        std::process::id()
    );
    edit_class(
        &file,
        &[
            ("command: ", format!("command: \"{upgrade}\"")),
            (
                "timeouts: ",
                "timeouts: { provision: 2m, attach: 2m, pod_start: 45s, upgrade: 3m }".into(),
            ),
        ],
    );
    // Back to the healthy release 60 s after the bad one rolled out: past the 45 s the
    // verify's pod is given to start, before pvcheck stops waiting for its pods to go.
    let rollback = Rollback::after(&kc, &state, "--state-file=forgotten", 60);
    let out = run_check(&kc, &env, &file, &class, "integrity::upgrade");
    rollback.join();
    let message = failed_as_upgrade(&kc, &env, &out, &format!("{class}::integrity::upgrade"));
    assert!(
        message.contains("step upgrade")
            && message.contains("created before the upgrade")
            && message.contains("code = NotFound")
            && message.contains("answered the kubelet's mount call with an error"),
        "{message}"
    );
}

/// The last lines of the test driver's node plugin containers (what they did at their start).
fn driver_log(kc: &str) -> String {
    kubectl_out(
        kc,
        &[
            "-n",
            "pvcheck-testenv",
            "logs",
            "-l",
            "app.kubernetes.io/name=pvcheck-test-csi-node",
            "-c",
            "driver",
            "--prefix",
            "--tail",
            "40",
        ],
    )
}

/// The UIDs of the driver's node plugin pods now.
fn driver_pod_uid(kc: &str) -> String {
    kubectl_out(
        kc,
        &[
            "-n",
            "pvcheck-testenv",
            "get",
            "pod",
            "-l",
            "app.kubernetes.io/name=pvcheck-test-csi-node",
            "-o",
            "jsonpath={.items[*].metadata.uid}",
        ],
    )
}

/// deploy/'s nightly account, confined by deploy/confine.yaml, may not touch the driver: the
/// kill's deletion and the upgrade command's patch of the driver are refused. The kill is
/// ignored naming the refusal (not failed as a broken driver, not passed as if it had been
/// checked); the upgrade command, run with that account's kubeconfig, fails. The driver's pod
/// is the same one before and after.
#[test]
fn under_deploys_confinement_node_plugin_kill_is_ignored_naming_the_refusal_and_the_driver_stays() {
    let Some(OnDriver {
        kc,
        env,
        class,
        _back,
        ..
    }) = on_driver("bind", "live-confined")
    else {
        return;
    };
    let mut sa = ServiceAccount::from_deploy(&kc, &env, "live", &[]);
    sa.confine();
    let before = driver_pod_uid(&kc);
    let (code, r) = run_both_as(&kc, &sa.kubeconfig(), &env, &class);
    assert_eq!(
        driver_pod_uid(&kc),
        before,
        "the confined run replaced the driver's pod"
    );
    assert_eq!(code, Some(1), "the refused upgrade command fails: {r}");
    let kill = trial(&r, &format!("{class}::disruption::node-plugin-kill"));
    assert_eq!(kill["status"], "ignored", "{kill}");
    let why = kill["ignored_reason"].as_str().unwrap_or("");
    assert!(
        why.contains("deleting the node plugin pod pvcheck-testenv/pvcheck-test-csi-node-")
            && why.contains("was refused")
            && why.contains("pvcheck may"),
        "{why}"
    );
    let upgrade = trial(&r, &format!("{class}::integrity::live-upgrade"));
    assert_eq!(upgrade["status"], "failed", "{upgrade}");
    assert!(
        upgrade["failure"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("upgrade.command"),
        "{upgrade}"
    );
}

/// The trials `checks` of [`kubelet_class_file`]'s classes for `class`, one at a time: pvcheck's
/// output and the result, once nothing of the run is left on the cluster.
fn run_kubelet_checks(
    kc: &str,
    state: &str,
    env: &Env,
    class: &str,
    checks: &[String],
) -> (std::process::Output, Value) {
    let mut args = kube_args(kc);
    args.extend([
        "--classes".into(),
        kubelet_class_file(env, class, state),
        "--test-threads".into(),
        "1".into(),
        "--exact".into(),
    ]);
    args.extend(checks.iter().cloned());
    run_leaving_nothing(kc, env, &args)
}

/// Every count of the volume's mounts read from the node's table (`metrics.live.mounts`) is
/// what was expected, and the volume was seen staged and published.
fn assert_mounted_once(check: &str, live: &Value) {
    let reads = live["mounts"].as_array().cloned().unwrap_or_default();
    assert!(!reads.is_empty(), "{check}: no mount table read: {live}");
    for read in &reads {
        let counts = read["counts"].as_array().cloned().unwrap_or_default();
        for role in ["staging", "published"] {
            assert!(
                counts.iter().any(|c| c["role"] == role && c["found"] == 1),
                "{check}: {role} once: {read}"
            );
        }
        assert!(
            counts.iter().all(|c| c["found"] == c["expected"]),
            "{check}: {read}"
        );
    }
}

/// Whether node `n`'s kubelet runs (`testenv/kubelet status`).
fn kubelet_running(state: &str, n: &str) -> bool {
    let out = std::process::Command::new(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testenv/kubelet"),
    )
    .args(["status", n, "--state", state])
    .output()
    .expect("testenv/kubelet");
    stdout(&out).trim() == "running"
}

/// A release whose NodeStageVolume and NodePublishVolume mount again on top of what is
/// mounted (the test driver's `stack-mounts` fault; spiffe-csi #331, aws-ebs-csi-driver
/// #1007): the restarted kubelet calls both again for the running pod, and
/// `disruption::kubelet-restart` fails `upgrade`, naming the stacked staging and published
/// paths it read in the node's mount table (`disruption.node_mounts`), while every
/// acknowledged record still verifies (not a data failure).
#[test]
fn a_driver_that_stacks_a_mount_at_each_kubelet_restart_fails_kubelet_restart_naming_the_paths() {
    let Some(OnDriver {
        kc,
        state,
        env,
        class,
        _back,
        ..
    }) = on_driver("bind --fault stack-mounts", "stacking")
    else {
        return;
    };
    let (out, r) = run_kubelet_checks(
        &kc,
        &state,
        &env,
        &class,
        &[format!("{class}::disruption::kubelet-restart")],
    );
    assert_eq!(out.status.code(), Some(1), "{r}");
    let t = trial(&r, &format!("{class}::disruption::kubelet-restart"));
    assert_eq!(t["status"], "failed", "{t}");
    assert_eq!(t["failure"]["category"], "upgrade", "{t}");
    let message = t["failure"]["message"].as_str().unwrap_or("");
    let live = &t["metrics"]["live"];
    let after = live["mounts"]
        .as_array()
        .and_then(|m| m.iter().find(|r| r["when"] == "after the restart"))
        .unwrap_or_else(|| panic!("the table read after the restart: {live}"));
    for role in ["staging", "published"] {
        let c = after["counts"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["role"] == role))
            .unwrap_or_else(|| panic!("no {role} count: {after}"));
        let found = c["found"].as_u64().unwrap_or(0);
        assert!(found >= 2, "the {role} path has mounts stacked: {c}");
        assert!(
            message.contains(&format!(
                "after the restart: {found} mount(s) at the {role} path {}",
                c["path"].as_str().unwrap_or("?")
            )) && message.contains("stacked or orphaned mounts"),
            "the failure names the stacked {role} path: {message}"
        );
    }
    let acked = live["records_acknowledged"].as_u64().unwrap_or(0);
    assert!(acked > 0, "{live}");
    assert_eq!(live["records_verified_in_place"], acked, "{live}");
}

/// The kubelet of the volume's node stopped and started under the writing agent, and stopped
/// while every pod of the volume was deleted through the API: with the healthy driver both
/// pass, every record the harness saw acknowledged verified (in place and after a recreate;
/// in a new pod on the same node once the kubelet, back, removed the pods and the volume was
/// detached), the volume usable, the VolumeAttachment unchanged across the restart, the driver
/// still in the node's CSINode, the volume staged and published once in the node's mount
/// table (`testenv/kubelet mounts`). A class whose stop command fails: `setup`, naming the
/// command's stderr; the kubelet is left running. A class without the commands: ignored,
/// naming `disruption.kubelet`.
#[test]
fn kubelet_restart_and_pod_deleted_while_kubelet_down_pass_on_the_healthy_driver_and_a_failing_stop_is_setup()
 {
    let Some(OnDriver {
        kc,
        state,
        env,
        class,
        _back,
        ..
    }) = on_driver("bind", "kubelet")
    else {
        return;
    };
    let mut checks: Vec<String> = KUBELET_CHECKS
        .iter()
        .map(|c| format!("{class}::{c}"))
        .collect();
    checks.push(format!("{class}-badstop::disruption::kubelet-restart"));
    checks.push(format!("{class}-nokubelet::disruption::kubelet-restart"));
    let (out, r) = run_kubelet_checks(&kc, &state, &env, &class, &checks);
    for node in node_names(&kc) {
        let n = node.trim_start_matches("pvcheck-node-");
        assert!(
            kubelet_running(&state, n),
            "the kubelet of node {node} was left stopped"
        );
    }
    assert_eq!(
        out.status.code(),
        Some(1),
        "the failing stop fails the run: {r}"
    );
    for check in KUBELET_CHECKS {
        let t = trial(&r, &format!("{class}::{check}"));
        assert_eq!(t["status"], "passed", "{check}: {t}");
        let live = &t["metrics"]["live"];
        let acked = live["records_acknowledged"].as_u64().unwrap();
        assert!(acked > 0, "{check}: {live}");
        assert_eq!(
            live["records_verified_after_recreate"], acked,
            "{check}: {live}"
        );
        assert_eq!(live["usable_after"], true, "{check}: {live}");
        assert_eq!(live["errors_by_kind"], serde_json::json!({}), "{check}");
        let w = &live["windows"][0];
        assert!(is_node(&w["node"]), "{check}: {w}");
        let report = &w["report"];
        assert_eq!(report["stop"]["status"], 0, "{check}: {report}");
        assert_eq!(report["start"]["status"], 0, "{check}: {report}");
        assert_eq!(
            report["csinode_lists_driver_after"], true,
            "{check}: {report}"
        );
        assert_mounted_once(check, live);
        assert!(
            !t["warnings"]
                .to_string()
                .contains("staged and published exactly once was not checked"),
            "{check}: the node's mount table was read (`disruption.node_mounts`): {t}"
        );
        eprintln!(
            "{check}: {:.1} s, {acked} acknowledged records verified",
            t["duration_s"].as_f64().unwrap_or(f64::NAN)
        );
    }
    let restart = &trial(&r, &format!("{class}::disruption::kubelet-restart"))["metrics"]["live"];
    assert_eq!(
        restart["records_verified_in_place"], restart["records_acknowledged"],
        "{restart}"
    );
    let report = &restart["windows"][0]["report"];
    assert!(
        report["volume_attachments_before"]
            .as_array()
            .is_some_and(|a| a.len() == 1)
            && report["volume_attachments_before"] == report["volume_attachments_after"],
        "the VolumeAttachment must be the same one across the restart: {report}"
    );
    let deleted = &trial(
        &r,
        &format!("{class}::disruption::pod-deleted-while-kubelet-down"),
    )["metrics"]["live"]["windows"][0]["report"]["teardown"];
    assert!(
        deleted["pods_deleted"]
            .as_array()
            .is_some_and(|p| p.len() >= 2),
        "the holder and the stream pod are deleted while the kubelet is down: {deleted}"
    );
    let none = trial(
        &r,
        &format!("{class}-nokubelet::disruption::kubelet-restart"),
    );
    assert_eq!(none["status"], "ignored", "{none}");
    assert!(
        none["ignored_reason"]
            .as_str()
            .is_some_and(|w| w.contains("no node access") && w.contains("disruption: { kubelet:")),
        "without the commands the check is ignored naming the field: {none}"
    );
    let bad = trial(&r, &format!("{class}-badstop::disruption::kubelet-restart"));
    assert_eq!(bad["status"], "failed", "{bad}");
    assert_eq!(bad["failure"]["category"], "setup", "{bad}");
    let message = bad["failure"]["message"].as_str().unwrap_or("");
    assert!(
        message.contains("disruption.kubelet.stop")
            && message.contains("no test cluster at /nonexistent/pvcheck-testenv"),
        "the failure names the command and its stderr: {message}"
    );
}
