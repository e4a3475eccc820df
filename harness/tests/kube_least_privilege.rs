//! Least privilege, proven on the test cluster (issue 22 item 2): deploy/rbac.yaml and
//! deploy/confine.yaml (a ValidatingAdmissionPolicy) as shipped, then a matrix of requests as
//! pvcheck's ServiceAccount with server-side dry run (so admission policies count, which
//! `kubectl auth can-i` does not see): what pvcheck must never do is refused, what a run and a
//! cleanup do is allowed; then a real run (kept for an upgrade: namespace created, patched,
//! pods, ConfigMaps, a claim) and `pvcheck cleanup` under that account leave nothing.
//!
//! Without `PVCHECK_TEST_KUBECONFIG` the test prints one line and passes as skipped, as the
//! other kube tests do.

mod common;

use std::time::{Duration, Instant};

use common::kube::{
    Confinement, ServiceAccount, kube_args, kubeconfig, kubectl, kubectl_out, kubectl_stdin,
    objects_of_run, run_id,
};
use common::{Env, PVCHECK, fixtures, stderr, stdout};

/// Objects the test made as the cluster's admin, deleted when it ends (`kubectl delete ARGS`).
struct Made {
    kc: String,
    deletes: Vec<Vec<String>>,
}

impl Made {
    fn apply(&mut self, yaml: &str, delete: &[&str]) {
        kubectl_stdin(&self.kc, &["apply", "-f", "-"], yaml);
        self.deletes
            .push(delete.iter().map(|s| s.to_string()).collect());
    }
}

impl Drop for Made {
    fn drop(&mut self) {
        for d in self.deletes.iter().rev() {
            let _ = kubectl()
                .args([
                    "--kubeconfig",
                    &self.kc,
                    "delete",
                    "--ignore-not-found",
                    "--wait=false",
                ])
                .args(d)
                .output();
        }
    }
}

/// `kubectl ARGS` as user `who` (impersonated by the admin kubeconfig), with `input` on stdin:
/// (succeeded, what it printed).
fn as_user(kc: &str, who: &str, args: &[&str], input: Option<&str>) -> (bool, String) {
    use std::io::Write;
    let mut c = kubectl()
        .args(["--kubeconfig", kc, "--as", who])
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl (set PVCHECK_TEST_KUBECTL)");
    let mut stdin = c.stdin.take().unwrap();
    if let Some(i) = input {
        stdin.write_all(i.as_bytes()).unwrap();
    }
    drop(stdin);
    let out = c.wait_with_output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
        .trim()
        .to_string(),
    )
}

fn namespace_yaml(name: &str, run: &str, enforce: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n  labels:\n    pvcheck.io/run-id: {run}\n    pod-security.kubernetes.io/enforce: {enforce}\n"
    )
}

fn pv_yaml(name: &str, run: Option<&str>) -> String {
    let labels = run
        .map(|r| format!("  labels: {{ pvcheck.io/run-id: {r} }}\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: PersistentVolume\nmetadata:\n  name: {name}\n{labels}spec:\n  capacity: {{ storage: 1Mi }}\n  accessModes: [ReadWriteOnce]\n  persistentVolumeReclaimPolicy: Retain\n  storageClassName: pvcheck-test-none\n  hostPath: {{ path: /nonexistent/{name} }}\n"
    )
}

/// A pod that Pod Security "restricted" admits.
fn pod_yaml(namespace: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{ name: lp-probe, namespace: {namespace} }}\nspec:\n  securityContext: {{ runAsNonRoot: true, runAsUser: 65532, seccompProfile: {{ type: RuntimeDefault }} }}\n  containers:\n    - name: c\n      image: localhost/pvcheck-testenv/busybox:1\n      securityContext: {{ allowPrivilegeEscalation: false, capabilities: {{ drop: [ALL] }} }}\n"
    )
}

#[test]
fn the_confined_service_account_may_do_what_a_run_and_a_cleanup_do_and_nothing_else() {
    let Some(kc) = kubeconfig() else { return };
    let env = Env::new();
    let pid = std::process::id();
    let sa = ServiceAccount::from_deploy(&kc, &env, "lp", &[]);
    let _policy = Confinement::apply(&kc);
    let who = format!("system:serviceaccount:{}:pvcheck", sa.namespace);
    let own = format!("pvcheck-lp-{pid}");
    let run = format!("lp-{pid}");
    let foreign = format!("lp-foreign-{pid}");
    let mut made = Made {
        kc: kc.clone(),
        deletes: Vec::new(),
    };
    made.apply(
        &format!("apiVersion: v1\nkind: Namespace\nmetadata: {{ name: {foreign} }}\n"),
        &["namespace", foreign.as_str()],
    );
    made.apply(
        &namespace_yaml(&own, &run, "restricted"),
        &["namespace", own.as_str()],
    );
    made.apply(
        &format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{ name: cm, namespace: {own}, labels: {{ pvcheck.io/run-id: {run} }} }}\ndata: {{ a: b }}\n---\napiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {{ name: data, namespace: {own}, labels: {{ pvcheck.io/run-id: {run} }} }}\nspec:\n  storageClassName: csi-hostpath-sc\n  accessModes: [ReadWriteOnce]\n  resources: {{ requests: {{ storage: 16Mi }} }}\n"),
        &["-n", own.as_str(), "configmap/cm", "pvc/data"],
    );
    made.apply(&pv_yaml(&foreign, None), &["pv", foreign.as_str()]);
    made.apply(&pv_yaml(&own, Some(&run)), &["pv", own.as_str()]);

    let dry = "--dry-run=server";
    let vap_ns = "pvcheck may create only namespaces";
    let vap_pv = "only PersistentVolumes labelled pvcheck.io/run-id";
    let vap_scope = "only in the namespaces of its runs";
    let rbac = "forbidden";
    let kube_system_pod = pod_yaml("kube-system");
    let sa_ns_pod = pod_yaml(&sa.namespace);
    let own_pod = pod_yaml(&own);
    let unrestricted = namespace_yaml(&format!("pvcheck-lp-open-{pid}"), &run, "privileged");
    let new_ns = namespace_yaml(&format!("pvcheck-lp-new-{pid}"), &run, "restricted");
    let own_pv = pv_yaml(&format!("pvcheck-lp-new-{pid}"), Some(&run));
    let unlabelled_pv = pv_yaml(&format!("lp-new-{pid}"), None);
    let snapshot = format!(
        "apiVersion: snapshot.storage.k8s.io/v1\nkind: VolumeSnapshot\nmetadata: {{ name: s, namespace: {own} }}\nspec:\n  volumeSnapshotClassName: csi-hostpath-snapclass\n  source: {{ persistentVolumeClaimName: data }}\n"
    );
    let cm = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{ name: cm2, namespace: {own} }}\ndata: {{ a: b }}\n"
    );
    // (what, kubectl arguments, stdin, None = allowed / Some(what the refusal says)).
    type Row<'a> = (&'a str, Vec<&'a str>, Option<&'a str>, Option<&'a str>);
    let rows: Vec<Row> = vec![
        // Refused.
        (
            "delete a namespace not pvcheck's",
            vec!["delete", "namespace", foreign.as_str(), dry],
            None,
            Some(vap_ns),
        ),
        (
            "patch namespace kube-system",
            vec![
                "patch",
                "namespace",
                "kube-system",
                "-p",
                r#"{"metadata":{"annotations":{"x":"y"}}}"#,
                dry,
            ],
            None,
            Some(vap_ns),
        ),
        (
            "create a pod in kube-system",
            vec!["create", "-f", "-", dry],
            Some(kube_system_pod.as_str()),
            Some(vap_scope),
        ),
        (
            "create a pod in its own (the nightly's) namespace",
            vec!["create", "-f", "-", dry],
            Some(sa_ns_pod.as_str()),
            Some(vap_scope),
        ),
        (
            "get secrets in kube-system",
            vec!["get", "secrets", "-n", "kube-system"],
            None,
            Some(rbac),
        ),
        (
            "list secrets in every namespace",
            vec!["get", "secrets", "-A"],
            None,
            Some(rbac),
        ),
        (
            "delete a PV not pvcheck's",
            vec!["delete", "pv", foreign.as_str(), dry],
            None,
            Some(vap_pv),
        ),
        (
            "create an unlabelled PV",
            vec!["create", "-f", "-", dry],
            Some(unlabelled_pv.as_str()),
            Some(vap_pv),
        ),
        (
            "create a namespace without Pod Security restricted",
            vec!["create", "-f", "-", dry],
            Some(unrestricted.as_str()),
            Some(vap_ns),
        ),
        (
            "lift restricted from a run's namespace",
            vec![
                "label",
                "namespace",
                own.as_str(),
                "--overwrite",
                "pod-security.kubernetes.io/enforce=privileged",
                dry,
            ],
            None,
            Some(vap_ns),
        ),
        (
            "create a ClusterRoleBinding",
            vec![
                "create",
                "clusterrolebinding",
                "lp-x",
                "--clusterrole=cluster-admin",
                "--user=x",
                dry,
            ],
            None,
            Some(rbac),
        ),
        (
            "exec into a pod",
            vec!["auth", "can-i", "create", "pods/exec", "-n", own.as_str()],
            None,
            Some("no"),
        ),
        // Allowed: what a run and a cleanup do.
        (
            "create a run's namespace",
            vec!["create", "-f", "-", dry],
            Some(new_ns.as_str()),
            None,
        ),
        (
            "annotate a run's namespace (kept for an upgrade, resumed)",
            vec![
                "annotate",
                "namespace",
                own.as_str(),
                "pvcheck.io/awaiting=after-upgrade",
                dry,
            ],
            None,
            None,
        ),
        (
            "create a pod in a run's namespace",
            vec!["create", "-f", "-", dry],
            Some(own_pod.as_str()),
            None,
        ),
        (
            "create a ConfigMap in a run's namespace",
            vec!["create", "-f", "-", dry],
            Some(cm.as_str()),
            None,
        ),
        (
            "delete a run's ConfigMap",
            vec!["delete", "-n", own.as_str(), "configmap", "cm", dry],
            None,
            None,
        ),
        (
            "expand a run's claim",
            vec![
                "patch",
                "-n",
                own.as_str(),
                "pvc",
                "data",
                "-p",
                r#"{"spec":{"resources":{"requests":{"storage":"32Mi"}}}}"#,
                dry,
            ],
            None,
            None,
        ),
        (
            "snapshot a run's claim",
            vec!["create", "-f", "-", dry],
            Some(snapshot.as_str()),
            None,
        ),
        (
            "delete a run's claim",
            vec!["delete", "-n", own.as_str(), "pvc", "data", dry],
            None,
            None,
        ),
        (
            "create a labelled PV (pv_template)",
            vec!["create", "-f", "-", dry],
            Some(own_pv.as_str()),
            None,
        ),
        (
            "delete a run's PV",
            vec!["delete", "pv", own.as_str(), dry],
            None,
            None,
        ),
        (
            "delete a run's namespace",
            vec!["delete", "namespace", own.as_str(), dry],
            None,
            None,
        ),
        (
            "read VolumeAttachments",
            vec!["get", "volumeattachments"],
            None,
            None,
        ),
        (
            "read pod logs in a run's namespace",
            vec!["auth", "can-i", "get", "pods/log", "-n", own.as_str()],
            None,
            None,
        ),
    ];
    // The policy takes effect when the API server has loaded it: wait for its first refusal.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (ok, text) = as_user(&kc, &who, &rows[0].1, None);
        if !ok && text.contains(vap_ns) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "deploy/confine.yaml never refused {}: {text}",
            rows[0].0
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let mut wrong = Vec::new();
    eprintln!("as {who}, server-side dry run:");
    for (what, args, input, refusal) in &rows {
        let (ok, text) = as_user(&kc, &who, args, *input);
        // `auth can-i` answers "no" with exit 1.
        let refused = !ok || text == "no";
        eprintln!(
            "  {:<8} {what}{}",
            if refused { "refused" } else { "allowed" },
            if refused {
                format!(": {}", text.lines().last().unwrap_or(""))
            } else {
                String::new()
            }
        );
        match refusal {
            Some(why) if !(refused && text.contains(why)) => {
                wrong.push(format!("{what} should be refused ({why}): {text}"))
            }
            None if refused => wrong.push(format!("{what} should be allowed: {text}")),
            _ => {}
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    // A real run under the account, kept for an upgrade (namespace created and annotated, a
    // holder pod, agent pods, the ledger's ConfigMap, a claim), then `pvcheck cleanup` under it.
    let classes = fixtures().join("kube/hostpath.yaml").display().to_string();
    let mut args = kube_args(&sa.kubeconfig());
    args.extend(["--classes", classes.as_str(), "--phase", "before-upgrade"].map(String::from));
    let out = env.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        stdout(&out),
        stderr(&out)
    );
    let id = run_id(&env.result());
    assert!(
        !objects_of_run(&kc, &id).is_empty(),
        "the before-upgrade run keeps its volume"
    );
    let out = std::process::Command::new(PVCHECK)
        .args(["cleanup", "--platform", "kubernetes", "--kubeconfig"])
        .arg(sa.kubeconfig())
        .args(["--run-id", &id])
        .arg("--state-dir")
        .arg(env.state.path())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "cleanup as the ServiceAccount: stdout: {}\nstderr: {}",
        stdout(&out),
        stderr(&out)
    );
    let left = objects_of_run(&kc, &id);
    assert!(left.is_empty(), "left of run {id}: {left:?}");
    let namespaces = kubectl_out(
        &kc,
        &[
            "get",
            "namespace",
            &format!("pvcheck-{id}"),
            "--ignore-not-found",
            "-o",
            "name",
        ],
    );
    assert_eq!(namespaces.trim(), "", "the run's namespace is gone");
}
