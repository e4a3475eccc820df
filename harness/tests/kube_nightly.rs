//! Issue 22: the shipped nightly, as users deploy it. An overlay of `deploy/` (its own
//! namespace, the results claim's StorageClass, a quick filter) is applied with kustomize as
//! docs/deploy.md tells users; the runner image is the one `pvcheck image export --runner`
//! writes, imported into the test cluster; the CronJob is triggered as a Job twice. The first
//! night becomes the baseline (exit 0, said), the second is gated against it (the comparison
//! made, never refused), JUnit says the gate's verdict, and nothing of pvcheck's runs is left.
//!
//! Needs the test cluster (scripts/test-all) and a statically linked pvcheck (the CI build);
//! otherwise one line says why and the test passes as skipped.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::kube::{kubeconfig, kubectl, kubectl_out, testenv_var};

const NS: &str = "pvcheck-nightly-e2e";

/// The test cluster has no kube-proxy: the runner reaches the API server the way testenv's own
/// controllers do, over the host's network, at the kubeconfig's address.
fn api_server(kc: &str) -> (String, String) {
    let text = std::fs::read_to_string(kc).unwrap();
    let url = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: "))
        .expect("a server in the kubeconfig")
        .trim_start_matches("https://")
        .to_string();
    let (host, port) = url.rsplit_once(':').expect("host:port");
    (host.to_string(), port.to_string())
}

/// `deploy/` as the overlay's resource, relative to the overlay (kustomize wants that).
fn relative_to(from: &Path, to: &Path) -> PathBuf {
    let depth = from.components().count() - 1;
    let mut p = PathBuf::new();
    for _ in 0..depth {
        p.push("..");
    }
    p.join(to.strip_prefix("/").unwrap())
}

fn overlay(dir: &Path, kc: &str) {
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    let deploy = deploy.canonicalize().unwrap();
    let (host, port) = api_server(kc);
    let rel = relative_to(dir, &deploy);
    // The shipped classes, with the quality limits opened: this test is about the nightly's
    // flow, and a busy test machine must not make the first night's baseline be refused
    // (the limits themselves are pinned by gate_statistics and gate_e2e).
    let shipped: serde_json::Value =
        serde_saphyr::from_str(&std::fs::read_to_string(deploy.join("classes.yaml")).unwrap())
            .unwrap();
    let classes = format!(
        "{}    thresholds: {{ max_cv: 10000%, max_cpu_wait: 100%, min_qd: 1% }}\n",
        shipped["data"]["classes.yaml"].as_str().unwrap()
    );
    let patch = serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": { "name": "pvcheck-classes" },
        "data": { "classes.yaml": classes },
    });
    std::fs::write(dir.join("classes-patch.yaml"), patch.to_string()).unwrap();
    let text = format!(
        r#"apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: {NS}
resources: [ {rel} ]
patches:
  - path: classes-patch.yaml
    target: {{ kind: ConfigMap, name: pvcheck-classes }}
  - target: {{ kind: PersistentVolumeClaim, name: pvcheck-results }}
    patch: |
      - {{ op: replace, path: /spec/storageClassName, value: csi-hostpath-sc }}
  # The test cluster only (no kube-proxy): the runner uses the host's network, which Pod
  # Security "restricted" forbids. A real cluster needs neither this nor the env below.
  - target: {{ kind: Namespace }}
    patch: |
      - {{ op: replace, path: /metadata/labels/pod-security.kubernetes.io~1enforce, value: privileged }}
  - target: {{ kind: CronJob, name: pvcheck-nightly }}
    patch: |
      - {{ op: add, path: /spec/jobTemplate/spec/template/spec/hostNetwork, value: true }}
      - op: add
        path: /spec/jobTemplate/spec/template/spec/containers/0/env
        value:
          - {{ name: KUBERNETES_SERVICE_HOST, value: "{host}" }}
          - {{ name: KUBERNETES_SERVICE_PORT, value: "{port}" }}
      - {{ op: test, path: /spec/jobTemplate/spec/template/spec/containers/0/args/3, value: --profile=standard }}
      - {{ op: replace, path: /spec/jobTemplate/spec/template/spec/containers/0/args/3, value: --profile=quick }}
      - op: add
        path: /spec/jobTemplate/spec/template/spec/containers/0/args/-
        value: --repeat=5
      - op: add
        path: /spec/jobTemplate/spec/template/spec/containers/0/args/-
        value: --max-repeat=5
      - op: add
        path: /spec/jobTemplate/spec/template/spec/containers/0/args/-
        value: --exact
      - op: add
        path: /spec/jobTemplate/spec/template/spec/containers/0/args/-
        value: hostpath::speed::randread-4k-qd1
"#,
        rel = rel.display()
    );
    std::fs::write(dir.join("kustomization.yaml"), text).unwrap();
}

/// Triggers the CronJob as Job `name`, waits for it to end; returns (exit code, log).
fn night(kc: &str, name: &str) -> (Option<i64>, String) {
    kubectl_out(
        kc,
        &[
            "-n",
            NS,
            "create",
            "job",
            name,
            "--from=cronjob/pvcheck-nightly",
        ],
    );
    let start = Instant::now();
    let code = loop {
        let pods = kubectl_out(
            kc,
            &[
                "-n",
                NS,
                "get",
                "pods",
                "-l",
                &format!("job-name={name}"),
                "-o",
                "json",
            ],
        );
        let v: serde_json::Value = serde_json::from_str(&pods).unwrap();
        let term = v["items"][0]["status"]["containerStatuses"][0]["state"]["terminated"].clone();
        if !term.is_null() {
            break term["exitCode"].as_i64();
        }
        if start.elapsed() > Duration::from_secs(900) {
            let describe = kubectl()
                .args(["--kubeconfig", kc, "-n", NS, "describe", "pods"])
                .output()
                .unwrap();
            panic!(
                "night {name} did not end in 15 minutes:\n{}",
                String::from_utf8_lossy(&describe.stdout)
            );
        }
        std::thread::sleep(Duration::from_secs(3));
    };
    let log = kubectl()
        .args(["--kubeconfig", kc, "-n", NS, "logs", &format!("job/{name}")])
        .output()
        .unwrap();
    (
        code,
        format!(
            "{}{}",
            String::from_utf8_lossy(&log.stdout),
            String::from_utf8_lossy(&log.stderr)
        ),
    )
}

/// The run id of the result file a log names (`results in /results/runs/<ts>-<id>.json`).
fn run_id_of(log: &str) -> Option<String> {
    let line = log
        .lines()
        .find(|l| l.contains("results in /results/runs/"))?;
    let file = line.rsplit('/').next()?.trim().trim_end_matches(".json");
    file.split_once('-').map(|(_, id)| id.to_string())
}

/// Removes the overlay's objects (whatever the test's outcome).
struct Applied {
    kc: String,
    dir: PathBuf,
}

impl Drop for Applied {
    fn drop(&mut self) {
        let _ = kubectl()
            .args(["--kubeconfig", &self.kc, "delete", "-k"])
            .arg(&self.dir)
            .args(["--wait=true", "--timeout=180s", "--ignore-not-found"])
            .output();
    }
}

#[test]
fn the_shipped_nightly_first_becomes_the_baseline_then_gates_the_second_night() {
    let Some(kc) = kubeconfig() else { return };
    let Some(state) = testenv_var("PVCHECK_TESTENV_STATE") else {
        return;
    };
    let Some(data_dir) = testenv_var("CSI_HOSTPATH_DATA_DIR") else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let archive = d.path().join("pvcheck.tar");
    let export = Command::new(env!("CARGO_BIN_EXE_pvcheck"))
        .args(["image", "export", "--runner", "--out"])
        .arg(&archive)
        .output()
        .unwrap();
    if !export.status.success() {
        let err = String::from_utf8_lossy(&export.stderr);
        assert!(
            err.contains("dynamically linked"),
            "image export --runner failed: {err}"
        );
        eprintln!(
            "skipped: this pvcheck is dynamically linked (scripts/test-all builds it static): {err}"
        );
        return;
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let import = Command::new(repo.join("testenv/import-image"))
        .arg(&archive)
        .args(["--state", &state])
        .output()
        .unwrap();
    assert!(
        import.status.success(),
        "{}",
        String::from_utf8_lossy(&import.stderr)
    );
    let dir = d.path().join("overlay");
    std::fs::create_dir(&dir).unwrap();
    overlay(&dir, &kc);
    let _applied = Applied {
        kc: kc.clone(),
        dir: dir.clone(),
    };
    kubectl_out(&kc, &["apply", "-k", dir.to_str().unwrap()]);

    let (code, log) = night(&kc, "night-1");
    assert_eq!(code, Some(0), "night 1:\n{log}");
    assert!(log.contains("NO BASELINE YET"), "night 1:\n{log}");
    let first = run_id_of(&log).expect("night 1 names its result file");

    let (code, log) = night(&kc, "night-2");
    let tail: Vec<&str> = log.lines().rev().take(12).collect();
    eprintln!(
        "night 2 exited {code:?}; the end of its log:\n{}",
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    );
    // The Job's exit is the gate's verdict, whatever the busy test machine makes it; refused
    // (7) or failed is never right.
    assert!(
        matches!(code, Some(0 | 3 | 4)),
        "night 2 exit {code:?}:\n{log}"
    );
    assert_eq!(
        code.map(|c| c as i32),
        common::gate_line_exit(&log),
        "night 2:\n{log}"
    );
    assert!(
        log.contains("comparing") && log.contains("randread-4k-qd1"),
        "night 2:\n{log}"
    );
    assert!(!log.contains("NO BASELINE YET"), "night 2:\n{log}");
    let second = run_id_of(&log).expect("night 2 names its result file");

    // The JUnit file on the results claim (read on the host, where the test driver keeps it).
    let pv = kubectl_out(
        &kc,
        &[
            "-n",
            NS,
            "get",
            "pvc",
            "pvcheck-results",
            "-o",
            "jsonpath={.spec.volumeName}",
        ],
    );
    let handle = kubectl_out(
        &kc,
        &["get", "pv", &pv, "-o", "jsonpath={.spec.csi.volumeHandle}"],
    );
    let found = Command::new("find")
        .args([&data_dir, "-name", "junit.xml", "-path"])
        .arg(format!("*{handle}*"))
        .output()
        .unwrap();
    let path = String::from_utf8_lossy(&found.stdout)
        .lines()
        .next()
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no junit.xml of volume {handle} under {data_dir}"));
    let xml = std::fs::read_to_string(&path).unwrap();
    assert!(xml.contains("pvcheck-gate"), "{xml}");

    for run in [first, second] {
        let left = common::kube::objects_of_run(&kc, &run);
        assert!(left.is_empty(), "run {run} left {left:?}");
    }
}
