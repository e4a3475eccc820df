//! `--phase before-upgrade` / `--phase after-upgrade --resume RUN_ID` on the real test cluster
//! (issue 9): an upgrade done by another pipeline between two pvcheck runs. Without a cluster the
//! cluster tests print one line and pass as skipped; the flag checks need none.

mod common;

use std::sync::Mutex;

use common::kube::{
    driver_rollout, kube_args, kubeconfig, kubectl_out, objects_of_run, run_id, testenv_var,
};
use common::{Env, fixtures, stderr, stdout, trial};
use serde_json::Value;

/// The tests below share the cluster's one CSI driver, and one of them restarts it: they take
/// turns, so a restart never lands in the middle of another test's run.
static DRIVER: Mutex<()> = Mutex::new(());

fn hostpath_classes() -> String {
    fixtures().join("kube/hostpath.yaml").display().to_string()
}

/// `pvcheck run --platform kubernetes … --classes hostpath.yaml EXTRA…` in `env`.
fn run_phase(env: &Env, kc: &str, extra: &[&str]) -> std::process::Output {
    let mut args = kube_args(kc);
    args.extend(["--classes".into(), hostpath_classes()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    env.run(&args)
}

/// The result file of run `id` in `env` (each phase writes its own).
fn result_of(env: &Env, id: &str) -> Value {
    let runs = env.results.path().join("runs");
    let path = std::fs::read_dir(&runs)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(&format!("-{id}.json")))
        .unwrap_or_else(|| panic!("no result file of run {id} in {}", runs.display()));
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The only result file in `env` (the before-upgrade run's, before the second run).
fn only_result(env: &Env) -> Value {
    env.result()
}

/// Runs the before-upgrade phase and checks what it must leave: the claim, its holder pod
/// running, the ledger ConfigMap, the namespace marked as waiting. Returns the run id.
fn before_upgrade(env: &Env, kc: &str) -> String {
    let out = run_phase(env, kc, &["--phase", "before-upgrade"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        stdout(&out),
        stderr(&out)
    );
    // Kept is not "left behind": nothing is reported as removed.
    assert!(!stderr(&out).contains("left behind"), "{}", stderr(&out));
    let r = only_result(env);
    let id = run_id(&r);
    assert_eq!(r["phase"]["name"], "before-upgrade");
    let resume = r["phase"]["resume_with"].as_str().unwrap();
    assert!(
        resume.contains(&format!("--phase after-upgrade --resume {id}")),
        "{resume}"
    );
    assert!(
        stderr(&out).contains(resume),
        "the resume command is printed: {}",
        stderr(&out)
    );
    // Only integrity::upgrade runs in a phase.
    let names: Vec<&str> = r["trials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["hostpath::integrity::upgrade"]);
    let t = trial(&r, "hostpath::integrity::upgrade");
    assert_eq!(t["status"], "passed", "{t}");
    assert_eq!(
        t["metrics"]["ledger"]["format"], "pvcheck-integrity-ledger",
        "the ledger is in the result file: {t}"
    );
    let ns = format!("pvcheck-{id}");
    let sel = format!("pvcheck.io/run-id={id}");
    let pvcs = kubectl_out(kc, &["-n", &ns, "get", "pvc", "-l", &sel, "-o", "name"]);
    assert_eq!(pvcs.lines().count(), 1, "one kept claim: {pvcs}");
    let phases = kubectl_out(
        kc,
        &[
            "-n",
            &ns,
            "get",
            "pods",
            "-l",
            &format!("{sel},pvcheck.io/role=holder"),
            "-o",
            "jsonpath={.items[*].status.phase}",
        ],
    );
    assert_eq!(phases, "Running", "the holder pod keeps the volume in use");
    let cms = kubectl_out(
        kc,
        &[
            "-n",
            &ns,
            "get",
            "configmaps",
            "-l",
            &format!("{sel},pvcheck.io/role=ledgers"),
            "-o",
            "name",
        ],
    );
    assert_eq!(cms.lines().count(), 1, "the ledger's ConfigMap: {cms}");
    let awaiting = kubectl_out(
        kc,
        &[
            "get",
            "ns",
            &ns,
            "-o",
            "jsonpath={.metadata.annotations.pvcheck\\.io/awaiting}",
        ],
    );
    assert_eq!(awaiting, "after-upgrade");
    id
}

/// The whole flow with a real driver upgrade between the runs: the node plugin DaemonSet is
/// restarted (a new driver process serves the kept volume), the resume verifies, rewrites,
/// verifies and removes everything; `pvcheck cleanup` in between leaves the waiting run alone,
/// and a second resume of the same run is refused.
#[test]
fn a_kept_volume_survives_a_driver_rollout_and_the_resume_verifies_and_removes_it() {
    let Some(kc) = kubeconfig() else { return };
    let _turn = DRIVER.lock().unwrap_or_else(|e| e.into_inner());
    let env = Env::new();
    let id = before_upgrade(&env, &kc);

    // A cleanup of dead runs must not take a run that waits for its resume (its process is gone
    // on purpose).
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pvcheck"))
        .args(["cleanup", "--platform", "kubernetes", "--kubeconfig", &kc])
        .arg("--state-dir")
        .arg(env.state.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("run {id} (namespace pvcheck-{id}) keeps volumes")),
        "{}",
        stderr(&out)
    );
    assert!(
        !objects_of_run(&kc, &id).is_empty(),
        "cleanup removed a waiting run"
    );

    // The upgrade, done by "another pipeline": a rollout restart of the driver.
    driver_rollout(&kc, "restart");
    driver_rollout(&kc, "status");

    let out = run_phase(&env, &kc, &["--phase", "after-upgrade", "--resume", &id]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        stdout(&out),
        stderr(&out)
    );
    // The check removed the volume and its ledger itself: the end of the run found nothing.
    assert!(!stderr(&out).contains("left behind"), "{}", stderr(&out));
    let runs = std::fs::read_dir(env.results.path().join("runs"))
        .unwrap()
        .count();
    assert_eq!(runs, 2, "each phase writes its own result file");
    let first = result_of(&env, &id);
    let second_id = {
        let mut ids: Vec<String> = std::fs::read_dir(env.results.path().join("runs"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .filter(|n| !n.ends_with(&format!("-{id}.json")))
            .collect();
        let n = ids.pop().unwrap();
        n.trim_end_matches(".json")
            .rsplit('-')
            .next()
            .unwrap()
            .to_string()
    };
    let r = result_of(&env, &second_id);
    assert_eq!(r["phase"]["name"], "after-upgrade");
    assert_eq!(r["phase"]["resumes"], id.as_str());
    assert!(
        r["phase"]["resumed_result"]
            .as_str()
            .is_some_and(|p| p.ends_with(&format!("-{id}.json"))),
        "the two result files are linked: {}",
        r["phase"]
    );
    let t = trial(&r, "hostpath::integrity::upgrade");
    assert_eq!(t["status"], "passed", "{t}");
    assert_eq!(t["metrics"]["resumed_run"], id.as_str());
    // The holder pod the first run left ran through the restart, and this run took it over.
    assert!(
        t["metrics"]["kept_by_resumed_run"]["holder_after_upgrade"].is_string(),
        "{t}"
    );
    assert_eq!(t["warnings"], serde_json::json!([]), "{t}");
    // The same volume: the claim the first run made, verified against the first run's ledger.
    assert_eq!(
        r["trials"][0]["metrics"]["kept_by_resumed_run"]["pvc"],
        first["trials"][0]["metrics"]["kept_for_upgrade"]
            .as_str()
            .map(|s| s.split('/').nth(1).unwrap().split(' ').next().unwrap())
            .unwrap()
    );
    let verified = &t["metrics"]["verify_after_the_upgrade_written_by_run_".to_string() + &id];
    assert_eq!(verified["clean"], true, "{t}");
    assert!(
        verified["blocks_checked"].as_u64().unwrap_or(0) > 0,
        "{verified}"
    );
    assert!(
        objects_of_run(&kc, &id).is_empty(),
        "the resume removes everything: {:?}",
        objects_of_run(&kc, &id)
    );

    // Its ledgers are spent: resuming again is a usage error, and creates nothing.
    let again = Env::new();
    let out = run_phase(&again, &kc, &["--phase", "after-upgrade", "--resume", &id]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("namespace pvcheck-{id} does not exist")),
        "{err}"
    );
    assert!(!again.results.path().join("runs").exists());
}

/// A block damaged on the node between the phases (as a faulty upgrade would) is caught by the
/// after-upgrade run with the kind, file and offset, and the run still removes everything. The
/// "upgrade" also removed the holder pod (a drain): the resume starts a new one and says so.
#[test]
fn damage_done_between_the_phases_is_caught_by_the_resume_with_kind_and_offset() {
    let Some(kc) = kubeconfig() else { return };
    let Some(data_dir) = testenv_var("CSI_HOSTPATH_DATA_DIR") else {
        return;
    };
    let _turn = DRIVER.lock().unwrap_or_else(|e| e.into_inner());
    let env = Env::new();
    let id = before_upgrade(&env, &kc);
    let ns = format!("pvcheck-{id}");
    let pv = kubectl_out(
        &kc,
        &[
            "-n",
            &ns,
            "get",
            "pvc",
            "-l",
            &format!("pvcheck.io/run-id={id}"),
            "-o",
            "jsonpath={.items[0].spec.volumeName}",
        ],
    );
    let handle = kubectl_out(
        &kc,
        &["get", "pv", &pv, "-o", "jsonpath={.spec.csi.volumeHandle}"],
    );
    // The same damage the upgrade fixture does, run by hand "during the upgrade".
    let record = env.scratch.path().join("record");
    let st = std::process::Command::new(fixtures().join("kube/flip-byte-on-node.sh"))
        .env("PVCHECK_UPGRADE_STEP", "upgrade")
        .env("PVCHECK_VOLUME_HANDLE", &handle)
        .env("CSI_HOSTPATH_DATA_DIR", &data_dir)
        .env("FIXTURE_RECORD", &record)
        .status()
        .unwrap();
    assert!(st.success());
    // The upgrade also drained the node: the holder pod the first run left is gone.
    kubectl_out(
        &kc,
        &[
            "-n",
            &ns,
            "delete",
            "pods",
            "-l",
            "pvcheck.io/role=holder",
            "--wait=true",
        ],
    );
    let flipped = std::fs::read_to_string(&record).unwrap();
    let (file, byte) = flipped.trim().split_once(' ').unwrap();
    let block = byte.parse::<u64>().unwrap() / 4096 * 4096;

    let out = run_phase(&env, &kc, &["--phase", "after-upgrade", "--resume", &id]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout: {}\nstderr: {}",
        stdout(&out),
        stderr(&out)
    );
    let runs = env.results.path().join("runs");
    let second = std::fs::read_dir(&runs)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| !p.to_string_lossy().ends_with(&format!("-{id}.json")))
        .unwrap();
    let r: Value = serde_json::from_slice(&std::fs::read(second).unwrap()).unwrap();
    let t = trial(&r, "hostpath::integrity::upgrade");
    assert_eq!(t["failure"]["category"], "data", "{t}");
    let message = t["failure"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("verify after the upgrade (written by run {id})")),
        "{message}"
    );
    let damage = t["failure"]["details"]["damage"].as_array().unwrap();
    assert_eq!(damage.len(), 1, "{damage:?}");
    assert_eq!(damage[0]["kind"], "corrupt");
    assert_eq!(damage[0]["file"], file);
    assert_eq!(damage[0]["offset"], block);
    // Said, not hidden: the volume was not in use through the whole upgrade.
    assert!(
        t["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w.as_str().unwrap().contains("was gone after the upgrade")),
        "{t}"
    );
    assert!(
        objects_of_run(&kc, &id).is_empty(),
        "{:?}",
        objects_of_run(&kc, &id)
    );
}

/// Ctrl-C during a before-upgrade run: nobody will resume half a run, so everything goes, the
/// volume already kept for the upgrade (and its ledger ConfigMap) included.
#[test]
fn sigint_during_before_upgrade_removes_the_volumes_already_kept() {
    let Some(kc) = kubeconfig() else { return };
    let _turn = DRIVER.lock().unwrap_or_else(|e| e.into_inner());
    let env = Env::new();
    let mut args = kube_args(&kc);
    args.extend([
        "--classes".into(),
        hostpath_classes(),
        // A second class, after the first in one thread: the signal lands while it runs.
        "--classes".into(),
        fixtures()
            .join("kube/hostpath-rwx.yaml")
            .display()
            .to_string(),
        "--test-threads".into(),
        "1".into(),
        "--phase".into(),
        "before-upgrade".into(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // Ledger ConfigMaps by namespace: those there before this run (a killed earlier test's) do
    // not count.
    let ledgers = || {
        kubectl_out(
            &kc,
            &[
                "get",
                "configmaps",
                "-A",
                "-l",
                "pvcheck.io/role=ledgers,pvcheck.io/class=hostpath",
                "-o",
                "jsonpath={range .items[*]}{.metadata.namespace}{\"\\n\"}{end}",
            ],
        )
    };
    let before = ledgers();
    let child = env.spawn(&args);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let mut kept = false;
    while std::time::Instant::now() < deadline && !kept {
        kept = ledgers().lines().any(|ns| !before.lines().any(|b| b == ns));
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    assert!(kept, "the first class's volume was not kept within 120 s");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "stderr: {}", stderr(&out));
    let r = env.result();
    assert_eq!(r["interrupted"], true);
    let left = objects_of_run(&kc, &run_id(&r));
    assert!(left.is_empty(), "left after SIGINT: {left:?}");
}

/// A run id that waits nowhere is exit 2 before anything is created, naming the namespace.
#[test]
fn resuming_a_run_that_is_not_in_the_cluster_is_exit_2_and_creates_nothing() {
    let Some(kc) = kubeconfig() else { return };
    let env = Env::new();
    let before = kubectl_out(&kc, &["get", "ns", "-l", "pvcheck.io/run-id", "-o", "name"]);
    let out = run_phase(
        &env,
        &kc,
        &["--phase", "after-upgrade", "--resume", "0000beef"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(
        err.contains("--resume 0000beef") && err.contains("namespace pvcheck-0000beef"),
        "{err}"
    );
    assert!(!env.results.path().join("runs").exists());
    let after = kubectl_out(&kc, &["get", "ns", "-l", "pvcheck.io/run-id", "-o", "name"]);
    for ns in after.lines() {
        assert!(
            before.lines().any(|b| b == ns) || !ns.contains("0000beef"),
            "{ns}"
        );
    }
}

/// The flags alone: each wrong combination is one line and exit 2, with no cluster contacted.
#[test]
fn phase_flags_that_do_not_fit_together_are_one_line_and_exit_2() {
    let env = Env::new();
    let cases: &[(&[&str], &str)] = &[
        (&["--phase", "before-upgrade"], "need --platform kubernetes"),
        (
            &["--platform", "kubernetes", "--phase", "after-upgrade"],
            "--phase after-upgrade needs --resume RUN_ID",
        ),
        (
            &["--platform", "kubernetes", "--resume", "0123abcd"],
            "--resume RUN_ID goes with --phase after-upgrade",
        ),
        (
            &[
                "--platform",
                "kubernetes",
                "--phase",
                "after-upgrade",
                "--resume",
                "../x",
            ],
            "8 lowercase hex digits",
        ),
        (
            &[
                "--platform",
                "kubernetes",
                "--phase",
                "after-upgrade",
                "--resume",
                "0123abcd",
                "--classes",
                &hostpath_classes(),
                "hostpath::",
            ],
            "a filter or --skip would leave volumes behind",
        ),
    ];
    for (args, want) in cases {
        let out = env.run(args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: one line: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    assert!(!env.results.path().join("runs").exists());
}
