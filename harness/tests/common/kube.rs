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

/// `kubectl rollout ACTION` (`restart`, `status`: waited for, 180 s at most) of the test
/// driver's node plugin, DaemonSet pvcheck-testenv/pvcheck-test-csi-node.
pub fn driver_rollout(kc: &str, action: &str) {
    let ds = "daemonset/pvcheck-test-csi-node";
    let mut args = vec!["-n", "pvcheck-testenv", "rollout", action, ds];
    if action == "status" {
        args.push("--timeout=180s");
    }
    kubectl_out(kc, &args);
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
    // A node the run cordoned (a drained upgrade) and left so.
    let out = kubectl_out(
        kc,
        &[
            "get",
            "nodes",
            "-l",
            &format!("pvcheck.io/cordoned-by={run_id}"),
            "-o",
            "name",
        ],
    );
    left.extend(
        out.lines()
            .map(|n| format!("cordon/{}", n.trim_start_matches("node/"))),
    );
    left
}

/// The nodes marked unschedulable now.
pub fn cordoned_nodes(kc: &str) -> Vec<String> {
    kubectl_out(
        kc,
        &[
            "get",
            "nodes",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name} {.spec.unschedulable}{\"\\n\"}{end}",
        ],
    )
    .lines()
    .filter(|l| l.ends_with(" true"))
    .map(|l| l.split(' ').next().unwrap_or("").to_string())
    .collect()
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

/// `kubectl --kubeconfig KC ARGS…` with `input` on stdin: its stdout; panics when it fails.
pub fn kubectl_stdin(kc: &str, args: &[&str], input: &str) -> String {
    let out = kubectl_try(kc, args, Some(input));
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `kubectl --kubeconfig KC ARGS…` (with `input` on stdin if given), whatever its outcome.
pub fn kubectl_try(kc: &str, args: &[&str], input: Option<&str>) -> std::process::Output {
    use std::io::Write;
    let mut c = kubectl()
        .args(["--kubeconfig", kc])
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl (set PVCHECK_TEST_KUBECTL)");
    let mut stdin = c.stdin.take().unwrap();
    if let Some(input) = input {
        stdin.write_all(input.as_bytes()).unwrap();
    }
    drop(stdin);
    c.wait_with_output().unwrap()
}

/// Evicts `namespace/pod` through the Eviction API (policy/v1), as `kubectl drain` does: the
/// pod gets the `DisruptionTarget` condition and is deleted gracefully.
pub fn evict(kc: &str, namespace: &str, pod: &str) {
    let body = format!(
        "{{\"apiVersion\":\"policy/v1\",\"kind\":\"Eviction\",\"metadata\":{{\"name\":\"{pod}\",\"namespace\":\"{namespace}\"}}}}"
    );
    kubectl_stdin(
        kc,
        &[
            "create",
            "--raw",
            &format!("/api/v1/namespaces/{namespace}/pods/{pod}/eviction"),
            "-f",
            "-",
        ],
        &body,
    );
}

/// The first pod (namespace, name) matching the label `selector` in any namespace whose phase
/// is `phase`, polled with kubectl until `limit`; `None` when none showed up.
pub fn wait_for_pod(
    kc: &str,
    selector: &str,
    phase: &str,
    limit: std::time::Duration,
) -> Option<(String, String)> {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        let out = kubectl_out(
            kc,
            &[
                "get",
                "pods",
                "-A",
                "-l",
                selector,
                "-o",
                "jsonpath={range .items[*]}{.metadata.namespace} {.metadata.name} {.status.phase}{\"\\n\"}{end}",
            ],
        );
        for l in out.lines() {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() == 3 && f[2] == phase {
                return Some((f[0].to_string(), f[1].to_string()));
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    None
}

/// A kubeconfig at `path` for ServiceAccount `namespace/sa` of the test cluster, with a token
/// from `kubectl create token` (valid one hour), the cluster's server and CA taken from `kc`.
pub fn service_account_kubeconfig(kc: &str, namespace: &str, sa: &str, path: &std::path::Path) {
    let server = kubectl_out(
        kc,
        &[
            "config",
            "view",
            "--raw",
            "--minify",
            "-o",
            "jsonpath={.clusters[0].cluster.server}",
        ],
    );
    let ca = kubectl_out(
        kc,
        &[
            "config",
            "view",
            "--raw",
            "--minify",
            "-o",
            "jsonpath={.clusters[0].cluster.certificate-authority-data}",
        ],
    );
    let ca_file = kubectl_out(
        kc,
        &[
            "config",
            "view",
            "--raw",
            "--minify",
            "-o",
            "jsonpath={.clusters[0].cluster.certificate-authority}",
        ],
    );
    let tls = match (ca.trim(), ca_file.trim()) {
        ("", "") => "insecure-skip-tls-verify: true".to_string(),
        ("", file) => format!("certificate-authority: {file}"),
        (data, _) => format!("certificate-authority-data: {data}"),
    };
    let token = kubectl_out(
        kc,
        &["-n", namespace, "create", "token", sa, "--duration", "1h"],
    );
    std::fs::write(
        path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n    {tls}\nusers:\n- name: {sa}\n  user:\n    token: {}\ncontexts:\n- name: sa\n  context: {{cluster: c, user: {sa}}}\ncurrent-context: sa\n",
            server.trim(),
            token.trim()
        ),
    )
    .unwrap();
}

/// A ServiceAccount with deploy/rbac.yaml's rules (optionally edited), its binding and a
/// kubeconfig for it; everything is deleted when the test ends. The rules are deploy/'s own
/// text, renamed per test, so a change there is what these tests exercise.
pub struct ServiceAccount {
    kc: String,
    pub namespace: String,
    role: String,
    kubeconfig: std::path::PathBuf,
    /// The name of deploy/confine.yaml's policy and binding, once [`ServiceAccount::confine`]
    /// applied them.
    policy: Option<String>,
}

impl ServiceAccount {
    /// `edit` rewrites the rules (each `(from, to)` must be found, so a change in deploy/ that
    /// makes an edit miss fails loudly instead of testing something else).
    pub fn from_deploy(kc: &str, env: &super::Env, tag: &str, edit: &[(&str, &str)]) -> Self {
        let pid = std::process::id();
        let namespace = format!("kf-rbac-{tag}-{pid}");
        let role = format!("pvcheck-test-{tag}-{pid}");
        let deploy = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/rbac.yaml");
        let mut text = std::fs::read_to_string(&deploy).unwrap();
        for (from, to) in edit {
            assert!(
                text.contains(from),
                "deploy/rbac.yaml no longer has {from:?}"
            );
            text = text.replace(from, to);
        }
        assert_eq!(text.matches("name: pvcheck-runner").count(), 3, "{text}");
        let text = text
            .replace("name: pvcheck-runner", &format!("name: {role}"))
            .replace(
                "namespace: pvcheck-system",
                &format!("namespace: {namespace}"),
            );
        kubectl_out(kc, &["create", "namespace", &namespace]);
        let sa = ServiceAccount {
            kc: kc.to_string(),
            namespace,
            role,
            kubeconfig: env.scratch.path().join("sa-kubeconfig"),
            policy: None,
        };
        kubectl_stdin(kc, &["apply", "-f", "-"], &text);
        service_account_kubeconfig(kc, &sa.namespace, "pvcheck", &sa.kubeconfig);
        sa
    }

    pub fn kubeconfig(&self) -> String {
        self.kubeconfig.display().to_string()
    }

    /// The account's user name, as admission sees it.
    pub fn user(&self) -> String {
        format!("system:serviceaccount:{}:pvcheck", self.namespace)
    }

    /// Applies deploy/confine.yaml (its own text; the policy and binding renamed per test, and
    /// matched to this account only, so tests running beside it keep their accounts as they
    /// are) and waits until the API server enforces it: until this account's server-side dry
    /// run of deleting its own namespace (not pvcheck's: RBAC allows it, the policy does not)
    /// is refused by the policy (admission policies take effect once the API server's informer
    /// has seen them).
    pub fn confine(&mut self) {
        let pid = std::process::id();
        let name = format!(
            "pvcheck-confine-{}",
            self.role.trim_start_matches("pvcheck-test-")
        );
        let deploy =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/confine.yaml");
        let text = std::fs::read_to_string(&deploy).unwrap();
        let matcher = "request.userInfo.username.startsWith('system:serviceaccount:') &&\n        request.userInfo.username.endsWith(':pvcheck')";
        assert!(
            text.contains(matcher),
            "deploy/confine.yaml no longer matches accounts named pvcheck as this test expects"
        );
        assert_eq!(text.matches("pvcheck-confine").count(), 3, "{text}");
        let text = text
            .replace(
                matcher,
                &format!("request.userInfo.username == '{}'", self.user()),
            )
            .replace("pvcheck-confine", &name);
        kubectl_stdin(&self.kc, &["apply", "-f", "-"], &text);
        self.policy = Some(name);
        let start = std::time::Instant::now();
        loop {
            let out = kubectl_try(
                &self.kubeconfig(),
                &["delete", "namespace", &self.namespace, "--dry-run=server"],
                None,
            );
            let err = String::from_utf8_lossy(&out.stderr);
            if err.contains("pvcheck may") {
                return;
            }
            assert!(
                start.elapsed() < std::time::Duration::from_secs(60),
                "the confinement policy was not enforced within 60 s (pid {pid}): {err}"
            );
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
    }
}

impl Drop for ServiceAccount {
    fn drop(&mut self) {
        if let Some(policy) = &self.policy {
            for kind in [
                "validatingadmissionpolicybinding",
                "validatingadmissionpolicy",
            ] {
                let _ = kubectl()
                    .args(["--kubeconfig", &self.kc, "delete", kind, policy])
                    .arg("--ignore-not-found")
                    .output();
            }
        }
        for what in [
            vec![
                "delete",
                "clusterrolebinding",
                &self.role,
                "--ignore-not-found",
            ],
            vec!["delete", "clusterrole", &self.role, "--ignore-not-found"],
            vec![
                "delete",
                "namespace",
                &self.namespace,
                "--ignore-not-found",
                "--wait=false",
            ],
        ] {
            let _ = kubectl()
                .args(["--kubeconfig", &self.kc])
                .args(&what)
                .output();
        }
    }
}

/// `pvcheck run` on the cluster ([`kube_args`]) with the class file `classes` and `extra`
/// arguments, not yet run (a test may add to its environment).
pub fn kube_cmd(
    env: &super::Env,
    kc: &str,
    classes: &std::path::Path,
    extra: &[&str],
) -> std::process::Command {
    let mut args: Vec<String> = kube_args(kc);
    args.push("--classes".into());
    args.push(classes.display().to_string());
    args.extend(extra.iter().map(|a| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    env.run_cmd(&args)
}

/// [`kube_cmd`], run.
pub fn run_kube(
    env: &super::Env,
    kc: &str,
    classes: &std::path::Path,
    extra: &[&str],
) -> std::process::Output {
    kube_cmd(env, kc, classes, extra).output().unwrap()
}

/// Runs pvcheck on the cluster with the class file `fixtures()/<classes>` and `extra` arguments,
/// requires exit 0 (showing both outputs if not), and returns the result file.
pub fn run_fixture_ok(
    env: &super::Env,
    kc: &str,
    classes: &str,
    extra: &[&str],
) -> serde_json::Value {
    let out = run_kube(env, kc, &super::fixtures().join(classes), extra);
    super::assert_exit(&out, 0);
    env.result()
}
