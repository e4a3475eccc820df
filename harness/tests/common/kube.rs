//! What the Kubernetes end-to-end tests share: the test cluster from the environment
//! (`PVCHECK_TEST_KUBECONFIG`, `PVCHECK_TEST_KUBECTL`, testenv's env file as `scripts/test-all`
//! exports it), pvcheck's arguments for it, and the objects a run left (listed with kubectl, a
//! client other than pvcheck's own, so a bug in pvcheck's listing cannot hide a leak).

use std::process::Command;

use serde_json::Value;

/// The test cluster's kubeconfig, or `None` after one line saying the test is skipped.
pub fn kubeconfig() -> Option<String> {
    match std::env::var("PVCHECK_TEST_KUBECONFIG") {
        Ok(k) if !k.is_empty() => Some(k),
        _ => {
            eprintln!(
                "skipped: PVCHECK_TEST_KUBECONFIG is not set (no test cluster; testenv/up starts one)"
            );
            None
        }
    }
}

/// A variable of testenv's env file, or `None` after one line saying the test is skipped.
pub fn testenv_var(name: &str) -> Option<String> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            eprintln!(
                "skipped: {name} is not set (testenv's env file gives it; scripts/test-all exports it)"
            );
            None
        }
    }
}

pub fn image() -> String {
    std::env::var("PVCHECK_TEST_AGENT_IMAGE")
        .unwrap_or_else(|_| format!("docker.io/pvcheck/agent:{}", env!("CARGO_PKG_VERSION")))
}

pub fn kubectl() -> Command {
    Command::new(std::env::var("PVCHECK_TEST_KUBECTL").unwrap_or_else(|_| "kubectl".into()))
}

/// `kubectl --kubeconfig KC ARGS…`: its stdout; panics when kubectl fails.
pub fn kubectl_out(kc: &str, args: &[&str]) -> String {
    let out = kubectl()
        .args(["--kubeconfig", kc])
        .args(args)
        .output()
        .expect("kubectl (set PVCHECK_TEST_KUBECTL)");
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn kube_args(kc: &str) -> Vec<String> {
    vec![
        "--platform".into(),
        "kubernetes".into(),
        "--kubeconfig".into(),
        kc.into(),
        "--agent-image".into(),
        image(),
    ]
}

/// Objects carrying pvcheck's run label for `run_id`, and PVs whose claim was in its namespace.
pub fn objects_of_run(kc: &str, run_id: &str) -> Vec<String> {
    let mut left = Vec::new();
    for kind in ["namespaces", "pods", "pvc", "configmaps", "pv"] {
        let out = kubectl_out(
            kc,
            &[
                "get",
                kind,
                "-A",
                "-l",
                &format!("pvcheck.io/run-id={run_id}"),
                "-o",
                "name",
            ],
        );
        left.extend(out.lines().map(str::to_string));
    }
    // PVs do not carry the claim's labels: find them by their claim's namespace.
    let out = kubectl_out(
        kc,
        &[
            "get",
            "pv",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name} {.spec.claimRef.namespace}{\"\\n\"}{end}",
        ],
    );
    for l in out.lines() {
        if l.ends_with(&format!(" pvcheck-{run_id}")) {
            left.push(format!("pv {l}"));
        }
    }
    left
}

pub fn run_id(result: &Value) -> String {
    result["run_id"].as_str().unwrap().to_string()
}

/// The cluster's node names.
pub fn node_names(kc: &str) -> Vec<String> {
    kubectl_out(kc, &["get", "nodes", "-o", "name"])
        .lines()
        .map(|l| l.trim_start_matches("node/").to_string())
        .collect()
}
