//! Faults on the real test cluster (testenv, issue 7) that a fake API server only imitates
//! (issue 9): a pod evicted through the Eviction API in the middle of a check, RBAC that forbids
//! a call (and deploy/'s least-privilege RBAC being enough), `pvcheck cleanup` after a run was
//! SIGKILLed, and `--keep-on-failure`. Every test ends by listing the run's objects with
//! kubectl (not pvcheck's own listing) and requires none to be left.
//!
//! Without `PVCHECK_TEST_KUBECONFIG` every test prints one line and passes as skipped, as the
//! other kube tests do.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::kube::{
    ServiceAccount, evict, kube_args, kubeconfig, kubectl, kubectl_out, kubectl_stdin,
    objects_of_run, run_id, wait_for_pod,
};
use common::{Env, fixtures, stderr, stdout, trial};

/// A class file in `env`'s scratch directory: the test cluster's hostpath StorageClass under a
/// name of this test process, so the test finds its own pods by the class label even when other
/// test binaries run against the same cluster.
fn class_file(env: &Env, name: &str, size: &str) -> String {
    let file = env.scratch.path().join("classes.yaml");
    std::fs::write(
        &file,
        format!(
            "classes:\n  - name: {name}\n    kube:\n      storage_class: csi-hostpath-sc\n      size: {size}\n    timeouts: {{ provision: 2m, attach: 2m, pod_start: 3m }}\n"
        ),
    )
    .unwrap();
    file.display().to_string()
}

fn args_of(kc: &str, more: &[&str]) -> Vec<String> {
    let mut a = kube_args(kc);
    a.extend(more.iter().map(|s| s.to_string()));
    a
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn assert_nothing_left(kc: &str, run: &str) {
    let left = objects_of_run(kc, run);
    assert!(left.is_empty(), "left of run {run}: {left:?}");
}

/// Evicts the first pod of `role` (`agent` or `holder`) of `check` while an agent runs in it,
/// and returns the evicted pod's name with the run's output. `integrity::other-node` writes in
/// an agent pod of its own, `integrity::recreate` in its holder, as the holder's first work
/// (`pod --hold -- write …`). The thorough profile's 4 GiB write keeps that pod running for
/// seconds (5.4 s on an idle test cluster, 2026-12-08): the standard profile's 1 GiB took 1.3 s,
/// and the eviction, which follows the pod's `Running` by up to a second and a half (the
/// kubelet's report, the test's polling), often came after the agent had ended.
fn evict_mid_check(kc: &str, env: &Env, role: &str, check: &str) -> (String, std::process::Output) {
    let class = format!("evict-{role}-{}", std::process::id());
    let file = class_file(env, &class, "6Gi");
    let exact = format!("{class}::{check}");
    let args = args_of(
        kc,
        &[
            "--classes",
            &file,
            "--profile",
            "thorough",
            "--exact",
            &exact,
        ],
    );
    let child = env.spawn(&strs(&args));
    let running = wait_for_pod(
        kc,
        &format!("pvcheck.io/role={role},pvcheck.io/class={class}"),
        "Running",
        Duration::from_secs(120),
    );
    let Some((ns, victim)) = running else {
        let out = child.wait_with_output().unwrap();
        panic!(
            "no {role} pod of class {class} ran within 120 s\nstdout: {}\nstderr: {}",
            stdout(&out),
            stderr(&out)
        );
    };
    evict(kc, &ns, &victim);
    (victim, child.wait_with_output().unwrap())
}

/// What an evicted pod must do to a run: fail its trial (exit 1, a failed check, as
/// harness/src/exit_code.rs and the README document) with one line naming the eviction and the
/// pod, and leave nothing of the run. An agent pod evicted through the Eviction API is deleted
/// gracefully: its supervisor (PID 1) gets SIGTERM and the agent runs on for the grace period.
/// Without reading the pod's `DisruptionTarget` condition the trial said "ended without its
/// final line: Error (exit 143)" or that the log could not be read; and an agent that finished
/// within the grace period passed as if nothing happened (CI, 2026-12-06: the supervisor now
/// notes the SIGTERM in its end line, and the harness fails the run naming the eviction).
fn assert_failed_naming_the_eviction(
    kc: &str,
    env: &Env,
    check: &str,
    victim: &str,
    out: &std::process::Output,
) {
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout: {}\nstderr: {}",
        stdout(out),
        stderr(out)
    );
    let r = env.result();
    let t = r["trials"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| {
            t["name"]
                .as_str()
                .unwrap_or("")
                .ends_with(&format!("::{check}"))
        })
        .expect("the trial is in the result");
    assert_eq!(t["status"], "failed", "{t}");
    let message = t["failure"]["message"].as_str().unwrap();
    assert!(
        !message.trim().contains('\n') && message.contains("evict") && message.contains(victim),
        "the failure must be one line naming the eviction and pod {victim}: {message}"
    );
    assert_nothing_left(kc, &run_id(&r));
}

/// An agent pod evicted (Eviction API, as `kubectl drain` does) while it writes is a failed
/// trial naming the eviction and the pod, exit 1, nothing of the run left.
#[test]
fn an_agent_pod_evicted_mid_check_fails_the_trial_naming_the_eviction_and_leaves_nothing() {
    let Some(kc) = kubeconfig() else { return };
    let env = Env::new();
    let check = "integrity::other-node";
    let (victim, out) = evict_mid_check(&kc, &env, "agent", check);
    assert_failed_naming_the_eviction(&kc, &env, check, &victim, &out);
}

/// The holder pod keeps the volume attached and mounted between agent runs, and runs the write
/// or verify that follows its start itself: evicted while that agent runs, the agent may well
/// finish within the grace period, but the check no longer tests what it says (the volume may
/// have been unmounted under it), so the trial fails naming the holder's eviction.
#[test]
fn a_holder_pod_evicted_mid_check_fails_the_trial_naming_the_eviction_and_leaves_nothing() {
    let Some(kc) = kubeconfig() else { return };
    let env = Env::new();
    let check = "integrity::recreate";
    let (victim, out) = evict_mid_check(&kc, &env, "holder", check);
    assert_failed_naming_the_eviction(&kc, &env, check, &victim, &out);
}

/// The run's namespaces the cluster has now (any run of this test's class file).
fn run_namespaces(kc: &str) -> BTreeSet<String> {
    kubectl_out(
        kc,
        &["get", "namespaces", "-l", "pvcheck.io/run-id", "-o", "name"],
    )
    .lines()
    .map(str::to_string)
    .collect()
}

/// RBAC without `list` on StorageClasses: the preflight, before anything is created, cannot
/// read them: exit 5 (infrastructure: the API server refused what the run needs before its
/// first trial, as the README's Kubernetes exit codes say), one line naming the object, the
/// verb and "forbidden", and no namespace created.
#[test]
fn rbac_forbidding_the_storageclass_list_is_exit_5_in_one_line_before_anything_is_created() {
    let Some(kc) = kubeconfig() else { return };
    let env = Env::new();
    let sa = ServiceAccount::from_deploy(
        &kc,
        &env,
        "nosc",
        &[(
            "resources: [storageclasses, csidrivers, csinodes, volumeattachments]",
            "resources: [csidrivers, csinodes, volumeattachments]",
        )],
    );
    let before = run_namespaces(&kc);
    let args = args_of(
        &sa.kubeconfig(),
        &[
            "--classes",
            &fixtures().join("kube/hostpath.yaml").display().to_string(),
            "--exact",
            "hostpath::provision",
        ],
    );
    let out = env.run(&strs(&args));
    let err = stderr(&out);
    assert_eq!(
        out.status.code(),
        Some(5),
        "stdout: {}\n{err}",
        stdout(&out)
    );
    assert!(
        err.trim().lines().count() == 1
            && err.contains("StorageClasses")
            && err.contains("list")
            && err.contains("forbidden"),
        "{err}"
    );
    assert_eq!(
        run_namespaces(&kc),
        before,
        "a run namespace was created: {err}"
    );
}

/// RBAC without `create` on PersistentVolumeClaims: the run starts (the namespace is allowed),
/// the trial's claim is refused. The storage was never tested, so that is the infrastructure's
/// failure, not the storage's: the trial fails with category `infrastructure` and one line
/// naming the claim, the verb and "forbidden"; the run exits 5; nothing is left.
#[test]
fn rbac_forbidding_pvc_create_fails_the_trial_as_infrastructure_naming_claim_and_verb() {
    let Some(kc) = kubeconfig() else { return };
    let env = Env::new();
    let sa = ServiceAccount::from_deploy(
        &kc,
        &env,
        "nopvc",
        &[(
            "    resources: [persistentvolumeclaims]\n    verbs: [get, list, watch, create, delete, patch]\n",
            "    resources: [persistentvolumeclaims]\n    verbs: [get, list, watch, delete, patch]\n",
        )],
    );
    let args = args_of(
        &sa.kubeconfig(),
        &[
            "--classes",
            &fixtures().join("kube/hostpath.yaml").display().to_string(),
            "--exact",
            "hostpath::provision",
        ],
    );
    let out = env.run(&strs(&args));
    assert_eq!(
        out.status.code(),
        Some(5),
        "stdout: {}\nstderr: {}",
        stdout(&out),
        stderr(&out)
    );
    let r = env.result();
    let t = trial(&r, "hostpath::provision");
    assert_eq!(t["status"], "failed", "{t}");
    assert_eq!(t["failure"]["category"], "infrastructure", "{t}");
    let message = t["failure"]["message"].as_str().unwrap();
    assert!(
        !message.trim().contains('\n')
            && message.contains("creating PVC pvcheck-")
            && message.contains("cannot create")
            && message.contains("forbidden"),
        "{message}"
    );
    assert_nothing_left(&kc, &run_id(&r));
}

/// deploy/'s least privilege is enough, and what it forbids is refused: a ServiceAccount bound
/// only to deploy/rbac.yaml's ClusterRole and confined by deploy/confine.yaml's admission
/// policy runs the hostpath class's checks that use every kind of call pvcheck makes (pods and
/// their logs, ConfigMaps, PVC patch for expansion, VolumeSnapshots and snapshot classes, PVC
/// data sources, the driver's rollout, VolumeAttachments and nodes for moves), and they pass
/// with nothing left; then a run SIGKILLed mid-check is removed by `pvcheck cleanup` under the
/// same account. A verb missing from deploy/, or a policy refusing one of pvcheck's own calls,
/// fails here.
#[test]
fn deploy_rbac_and_confinement_suffice_for_a_hostpath_run_and_its_cleanup() {
    let Some(kc) = kubeconfig() else { return };
    let env = Env::new();
    let mut sa = ServiceAccount::from_deploy(&kc, &env, "deploy", &[]);
    sa.confine();
    let args = args_of(
        &sa.kubeconfig(),
        &[
            "--classes",
            &fixtures().join("kube/hostpath.yaml").display().to_string(),
            "--skip",
            "speed::",
            "--skip",
            "integrity::selftest",
            "--skip",
            "integrity::recreate",
            // Replacing the driver is refused by the confinement (kube_live.rs runs them).
            "--skip",
            "integrity::live-upgrade",
            "--skip",
            "disruption::",
        ],
    );
    let start = Instant::now();
    let out = env.run(&strs(&args));
    eprintln!(
        "run with deploy/'s RBAC and confinement: {:.0}s",
        start.elapsed().as_secs_f64()
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        stdout(&out),
        stderr(&out)
    );
    let r = env.result();
    for name in [
        "provision",
        "integrity::other-node",
        "integrity::durability",
        "integrity::upgrade",
        "expand",
        "snapshot",
        "clone",
        "cleanup",
    ] {
        let t = trial(&r, &format!("hostpath::{name}"));
        assert!(
            t["status"] == "passed"
                || (name == "integrity::other-node" && t["status"] == "ignored"),
            "{name}: {t}"
        );
    }
    assert_nothing_left(&kc, &run_id(&r));

    // A run of the account killed mid-check, removed by a cleanup under the same account.
    let class = format!("confined-kill-{}", std::process::id());
    let file = class_file(&env, &class, "256Mi");
    let exact = format!("{class}::integrity::recreate");
    let args = args_of(&sa.kubeconfig(), &["--classes", &file, "--exact", &exact]);
    let mut child = env.spawn(&strs(&args));
    let inputs = wait_for(
        &kc,
        "configmaps",
        &format!("pvcheck.io/role=inputs,pvcheck.io/class={class}"),
        Duration::from_secs(120),
    );
    child.kill().unwrap(); // SIGKILL
    let killed = child.wait_with_output().unwrap();
    let Some((ns, _)) = inputs else {
        panic!(
            "no agent input ConfigMap appeared within 120 s: {}",
            stderr(&killed)
        );
    };
    let run = ns.strip_prefix("pvcheck-").unwrap().to_string();
    assert!(!run_objects(&kc, &run).is_empty());
    let removed = cleanup(&env, &sa.kubeconfig(), &["--run-id", &run]);
    assert_eq!(
        removed.status.code(),
        Some(0),
        "cleanup under the confined account: {}{}",
        stdout(&removed),
        stderr(&removed)
    );
    assert_nothing_left(&kc, &run);
}

/// Objects a confined account's matrix needs that only an administrator may make: a
/// namespace labelled as a run of pvcheck's (no owner annotation, so no `pvcheck cleanup` of a
/// test beside this one takes it for a dead run), a PV labelled as pvcheck's and one that is
/// not. Deleted when the test ends.
struct MatrixObjects {
    kc: String,
    run_ns: String,
    other_ns: String,
    own_pv: String,
    foreign_pv: String,
}

impl MatrixObjects {
    fn create(kc: &str) -> Self {
        let pid = std::process::id();
        let o = MatrixObjects {
            kc: kc.to_string(),
            run_ns: format!("pvcheck-confine{pid}"),
            other_ns: format!("confine-other-{pid}"),
            own_pv: format!("pvcheck-confine-own-{pid}"),
            foreign_pv: format!("confine-foreign-{pid}"),
        };
        let pv = |name: &str, labels: &str| {
            format!(
                "apiVersion: v1\nkind: PersistentVolume\nmetadata: {{ name: {name}{labels} }}\nspec:\n  capacity: {{ storage: 1Mi }}\n  accessModes: [ReadWriteOnce]\n  persistentVolumeReclaimPolicy: Retain\n  hostPath: {{ path: /nonexistent/{name} }}\n"
            )
        };
        kubectl_stdin(
            kc,
            &["apply", "-f", "-"],
            &format!(
                "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {}\n  labels: {{ pvcheck.io/run-id: confine{pid}, pod-security.kubernetes.io/enforce: restricted }}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {{ name: {} }}\n---\n{}---\n{}",
                o.run_ns,
                o.other_ns,
                pv(
                    &o.own_pv,
                    &format!(", labels: {{ pvcheck.io/run-id: confine{pid} }}")
                ),
                pv(&o.foreign_pv, "")
            ),
        );
        o
    }
}

impl Drop for MatrixObjects {
    fn drop(&mut self) {
        let gone = ["--ignore-not-found", "--wait=false"];
        for (kind, a, b) in [
            ("pv", &self.own_pv, &self.foreign_pv),
            ("namespace", &self.run_ns, &self.other_ns),
        ] {
            let args = [&["delete", kind, a, b][..], &gone].concat();
            common::kube::kubectl_try(&self.kc, &args, None);
        }
    }
}

/// A pod Pod Security "restricted" admits, in `ns`.
fn restricted_pod(ns: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{ name: confine-probe, namespace: {ns} }}\nspec:\n  securityContext: {{ runAsNonRoot: true, runAsUser: 65534, seccompProfile: {{ type: RuntimeDefault }} }}\n  containers:\n  - name: c\n    image: {}\n    securityContext: {{ allowPrivilegeEscalation: false, capabilities: {{ drop: [ALL] }} }}\n",
        common::kube::image()
    )
}

/// Issue 22: deploy/'s least privilege, proven against the API server with the policy in
/// force. As the account itself (its token, not `auth can-i`, which sees RBAC only), each
/// write a server-side dry run (so admission policies are evaluated, nothing is changed), each
/// read a real one: what a run and a cleanup do is allowed, everything else named in the issue
/// is refused, by RBAC or by deploy/confine.yaml. The matrix is printed (docs/deploy.md).
#[test]
fn the_confined_account_may_do_what_a_run_does_and_nothing_that_is_not_pvchecks() {
    let Some(kc) = kubeconfig() else { return };
    let env = Env::new();
    let mut sa = ServiceAccount::from_deploy(&kc, &env, "matrix", &[]);
    sa.confine();
    let o = MatrixObjects::create(&kc);
    let own_ns = sa.namespace.clone();
    let dry = "--dry-run=server";
    let pid = std::process::id();
    let new_run_ns = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: pvcheck-newrun{pid}\n  labels: {{ pvcheck.io/run-id: newrun{pid}, pod-security.kubernetes.io/enforce: restricted }}\n"
    );
    let unrestricted_ns = new_run_ns.replace("restricted", "privileged");
    let unlabelled_ns =
        format!("apiVersion: v1\nkind: Namespace\nmetadata: {{ name: pvcheck-bare{pid} }}\n");
    let labelled_pv = format!(
        "apiVersion: v1\nkind: PersistentVolume\nmetadata: {{ name: pvcheck-new{pid}, labels: {{ pvcheck.io/run-id: newrun{pid} }} }}\nspec:\n  capacity: {{ storage: 1Mi }}\n  accessModes: [ReadWriteOnce]\n  hostPath: {{ path: /nonexistent }}\n"
    );
    let unlabelled_pv = labelled_pv.replace(
        &format!(", labels: {{ pvcheck.io/run-id: newrun{pid} }}"),
        "",
    );
    let claim = |ns: &str| {
        format!(
            "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {{ name: confine-probe, namespace: {ns} }}\nspec:\n  storageClassName: csi-hostpath-sc\n  accessModes: [ReadWriteOnce]\n  resources: {{ requests: {{ storage: 16Mi }} }}\n"
        )
    };
    let configmap = |ns: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{ name: confine-probe, namespace: {ns} }}\n"
        )
    };
    let annotate = r#"{"metadata":{"annotations":{"pvcheck.io/awaiting":"after-upgrade"}}}"#;
    let relabel = r#"{"metadata":{"labels":{"pod-security.kubernetes.io/enforce":"privileged"}}}"#;
    let ks = "kube-system";
    // Each row: (what, kubectl arguments, stdin). A write is a server-side dry run.
    let create = |m: String| (vec!["create", "-f", "-", dry], Some(m));
    fn call<'a>(a: &[&'a str]) -> (Vec<&'a str>, Option<String>) {
        let mut a = a.to_vec();
        if matches!(a[0], "delete" | "patch") {
            a.push("--dry-run=server");
        }
        (a, None)
    }
    let (run_ns, other_ns) = (o.run_ns.as_str(), o.other_ns.as_str());
    let allowed = [
        (
            "create a run namespace (pvcheck-*, labelled, restricted)",
            create(new_run_ns),
        ),
        (
            "create a pod in a run namespace",
            create(restricted_pod(run_ns)),
        ),
        (
            "create a ConfigMap in a run namespace",
            create(configmap(run_ns)),
        ),
        ("create a claim in a run namespace", create(claim(run_ns))),
        (
            "annotate a run namespace (--phase)",
            call(&["patch", "namespace", run_ns, "-p", annotate]),
        ),
        (
            "delete a run namespace",
            call(&["delete", "namespace", run_ns]),
        ),
        (
            "create a PV labelled pvcheck.io/run-id",
            create(labelled_pv),
        ),
        (
            "delete a PV labelled pvcheck.io/run-id",
            call(&["delete", "pv", &o.own_pv]),
        ),
        (
            "list nodes, StorageClasses, CSIDrivers, VolumeAttachments",
            call(&[
                "get",
                "nodes,storageclasses,csidrivers,volumeattachments",
                "-o",
                "name",
            ]),
        ),
        (
            "list pods in every namespace",
            call(&["get", "pods", "-A", "-o", "name"]),
        ),
    ];
    let refused = [
        (
            "delete namespace kube-system",
            call(&["delete", "namespace", ks]),
        ),
        (
            "delete a namespace that is not pvcheck's",
            call(&["delete", "namespace", other_ns]),
        ),
        (
            "delete the account's own namespace",
            call(&["delete", "namespace", &own_ns]),
        ),
        (
            "patch namespace kube-system",
            call(&["patch", "namespace", ks, "-p", annotate]),
        ),
        (
            "lift restricted from a run namespace",
            call(&["patch", "namespace", run_ns, "-p", relabel]),
        ),
        (
            "create a namespace without restricted",
            create(unrestricted_ns),
        ),
        (
            "create a namespace without the run label",
            create(unlabelled_ns),
        ),
        ("create a pod in kube-system", create(restricted_pod(ks))),
        (
            "create a pod in the account's own namespace",
            create(restricted_pod(&own_ns)),
        ),
        ("create a ConfigMap in kube-system", create(configmap(ks))),
        (
            "create a claim in the default namespace",
            create(claim("default")),
        ),
        (
            "delete a PV that is not pvcheck's",
            call(&["delete", "pv", &o.foreign_pv]),
        ),
        ("create a PV without pvcheck's label", create(unlabelled_pv)),
        (
            "get secrets in kube-system",
            call(&["get", "secrets", "-n", ks]),
        ),
        (
            "list secrets in every namespace",
            call(&["get", "secrets", "-A"]),
        ),
        (
            "create a ClusterRoleBinding",
            call(&[
                "create",
                "clusterrolebinding",
                "confine-probe",
                "--clusterrole=cluster-admin",
                "--user=x",
                dry,
            ]),
        ),
        (
            "delete a VolumeAttachment",
            call(&["auth", "can-i", "delete", "volumeattachments"]),
        ),
        (
            "exec into a pod (pods/exec)",
            call(&[
                "auth",
                "can-i",
                "create",
                "pods",
                "--subresource=exec",
                "-n",
                run_ns,
            ]),
        ),
    ];
    let rows = allowed
        .into_iter()
        .map(|r| (true, r))
        .chain(refused.into_iter().map(|r| (false, r)));
    let mut table = String::new();
    let mut wrong = Vec::new();
    for (allowed, (what, (args, input))) in rows {
        let out = common::kube::kubectl_try(&sa.kubeconfig(), &args, input.as_deref());
        let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
        // `auth can-i` answers "no" with exit 1; everything else fails with a message.
        let was_allowed = out.status.success();
        let by = if was_allowed {
            "allowed".to_string()
        } else if err.contains("pvcheck may") {
            "refused by confine.yaml".to_string()
        } else if err.contains(" cannot ") || args[0] == "auth" {
            "refused by RBAC".to_string()
        } else if err.contains("may not be deleted") {
            "refused (an immortal namespace)".to_string()
        } else {
            format!("failed: {err}")
        };
        table.push_str(&format!("| {what} | {by} |\n"));
        let right = if allowed {
            was_allowed
        } else {
            !was_allowed && by.starts_with("refused")
        };
        if !right {
            wrong.push(format!(
                "{what}: expected {}, got {by} ({err})",
                if allowed { "allowed" } else { "refused" }
            ));
        }
    }
    eprintln!(
        "the confined account ({}):\n| request | answer |\n|---|---|\n{table}",
        sa.user()
    );
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // Nothing of the dry runs was made.
    let made = kubectl_out(&kc, &["get", "namespace", "-o", "name"]);
    assert!(
        !made.contains(&format!("newrun{pid}")) && !made.contains(&format!("bare{pid}")),
        "{made}"
    );
}

/// The first object of `kind` matching `selector` in any namespace, as (namespace, name),
/// polled with kubectl until `limit`.
fn wait_for(kc: &str, kind: &str, selector: &str, limit: Duration) -> Option<(String, String)> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let out = kubectl_out(
            kc,
            &[
                "get",
                kind,
                "-A",
                "-l",
                selector,
                "-o",
                "jsonpath={range .items[*]}{.metadata.namespace} {.metadata.name}{\"\\n\"}{end}",
            ],
        );
        if let Some((ns, name)) = out.lines().next().and_then(|l| l.split_once(' ')) {
            return Some((ns.to_string(), name.to_string()));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// Objects nobody labelled, in a namespace whose name looks like pvcheck's: a ConfigMap and a
/// bound PVC. Deleted when the test ends.
struct Foreign {
    kc: String,
    namespace: String,
}

impl Foreign {
    fn create(kc: &str) -> Self {
        let namespace = format!("pvcheck-test-foreign-{}", std::process::id());
        kubectl_stdin(
            kc,
            &["apply", "-f", "-"],
            &format!(
                "apiVersion: v1\nkind: Namespace\nmetadata: {{ name: {namespace} }}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{ name: not-pvchecks, namespace: {namespace} }}\ndata: {{ a: b }}\n---\napiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {{ name: not-pvchecks, namespace: {namespace} }}\nspec:\n  storageClassName: csi-hostpath-sc\n  accessModes: [ReadWriteOnce]\n  resources: {{ requests: {{ storage: 16Mi }} }}\n"
            ),
        );
        Foreign {
            kc: kc.to_string(),
            namespace,
        }
    }

    /// Both objects, still there.
    fn assert_untouched(&self) {
        let out = kubectl_out(
            &self.kc,
            &["-n", &self.namespace, "get", "configmap,pvc", "-o", "name"],
        );
        for o in [
            "configmap/not-pvchecks",
            "persistentvolumeclaim/not-pvchecks",
        ] {
            assert!(out.lines().any(|l| l == o), "{o} is gone: {out}");
        }
    }
}

impl Drop for Foreign {
    fn drop(&mut self) {
        let _ = kubectl()
            .args([
                "--kubeconfig",
                &self.kc,
                "delete",
                "namespace",
                &self.namespace,
            ])
            .args(["--ignore-not-found", "--wait=false"])
            .output();
    }
}

/// `pvcheck cleanup --platform kubernetes …` with this env's state directory.
fn cleanup(env: &Env, kc: &str, more: &[&str]) -> std::process::Output {
    std::process::Command::new(common::PVCHECK)
        .args(["cleanup", "--platform", "kubernetes", "--kubeconfig", kc])
        .arg("--state-dir")
        .arg(env.state.path())
        .args(more)
        .output()
        .unwrap()
}

/// The run's objects as kubectl lists them, as (kind, name) in pvcheck cleanup's words.
fn run_objects(kc: &str, run: &str) -> BTreeSet<(String, String)> {
    objects_of_run(kc, run)
        .iter()
        .map(|o| {
            if let Some(pv) = o.strip_prefix("pv ") {
                return ("pv".to_string(), pv.split(' ').next().unwrap().to_string());
            }
            let (kind, name) = o.split_once('/').unwrap();
            let kind = match kind {
                "persistentvolumeclaim" => "pvc",
                "persistentvolume" => "pv",
                k => k,
            };
            (kind.to_string(), name.to_string())
        })
        .collect()
}

/// pvcheck cleanup's lines about `run` (`would remove KIND WHAT (run ID…)`), as (kind, name),
/// namespaced names without their namespace; VolumeAttachments (not labelled, not deleted by
/// cleanup, only listed) are left out.
fn cleanup_lines(text: &str, verb: &str, run: &str) -> BTreeSet<(String, String)> {
    text.lines()
        .filter(|l| l.contains(&format!("(run {run}")))
        .filter_map(|l| l.strip_prefix(verb))
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let kind = f.next()?.to_string();
            let what = f.next()?;
            let name = what.rsplit('/').next()?.to_string();
            (kind != "volumeattachment").then_some((kind, name))
        })
        .collect()
}

/// A kube run SIGKILLed mid-check cleans up nothing itself. `pvcheck cleanup --platform
/// kubernetes` (no run id: the runs whose pvcheck on this host is gone) lists with --dry-run
/// exactly the killed run's objects (compared with kubectl's listing by label) and nothing of
/// the unlabelled ones, then removes exactly those: the run's objects are gone, the unlabelled
/// ConfigMap and PVC in a `pvcheck-`-named namespace are untouched, and a second cleanup finds
/// nothing of the run.
#[test]
fn cleanup_after_sigkill_removes_exactly_the_killed_runs_objects_and_nothing_unlabelled() {
    let Some(kc) = kubeconfig() else { return };
    let env = Env::new();
    let foreign = Foreign::create(&kc);
    let class = format!("kill-{}", std::process::id());
    let file = class_file(&env, &class, "256Mi");
    let exact = format!("{class}::integrity::recreate");
    let args = args_of(&kc, &["--classes", &file, "--exact", &exact]);
    let mut child = env.spawn(&strs(&args));
    // Killed while a verify runs: its agent pod, the ConfigMap of its ledger, the holder pod,
    // the PVC, its PV and the namespace all exist, so every kind cleanup handles is there.
    let inputs = wait_for(
        &kc,
        "configmaps",
        &format!("pvcheck.io/role=inputs,pvcheck.io/class={class}"),
        Duration::from_secs(120),
    );
    let Some((ns, _)) = inputs else {
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        panic!(
            "no agent input ConfigMap appeared within 120 s: {}",
            stderr(&out)
        );
    };
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let run = ns.strip_prefix("pvcheck-").unwrap().to_string();
    let objects = run_objects(&kc, &run);
    for kind in ["namespace", "pod", "configmap", "pvc", "pv"] {
        assert!(
            objects.iter().any(|(k, _)| k == kind),
            "the killed run has no {kind}: {objects:?}"
        );
    }

    let dry = cleanup(&env, &kc, &["--dry-run"]);
    let listed = stdout(&dry);
    assert_eq!(dry.status.code(), Some(0), "{listed}{}", stderr(&dry));
    assert_eq!(
        cleanup_lines(&listed, "would remove ", &run),
        objects,
        "--dry-run's listing of run {run} differs from kubectl's: {listed}"
    );
    assert!(!listed.contains(&foreign.namespace), "{listed}");
    assert_eq!(
        run_objects(&kc, &run),
        objects,
        "--dry-run removed something"
    );

    let removed = cleanup(&env, &kc, &[]);
    let text = stdout(&removed);
    assert_eq!(removed.status.code(), Some(0), "{text}{}", stderr(&removed));
    assert_eq!(cleanup_lines(&text, "removed ", &run), objects, "{text}");
    assert!(!text.contains(&foreign.namespace), "{text}");
    assert_nothing_left(&kc, &run);
    foreign.assert_untouched();
    let again = cleanup(&env, &kc, &["--dry-run", "--run-id", &run]);
    assert!(
        cleanup_lines(&stdout(&again), "would remove ", &run).is_empty(),
        "{}",
        stdout(&again)
    );
}

/// A drained upgrade (`upgrade.drain: true`) cordons the agents' nodes: a run SIGKILLed while
/// they are cordoned leaves them so, labelled with the run. `pvcheck cleanup` lists the cordon
/// with the run's objects (`would remove cordon NODE`), then makes every node it cordoned
/// schedulable again and removes the label: the cluster's cordons are as before the run. The
/// upgrade is a `sleep`: the driver is not restarted.
#[test]
fn a_run_killed_mid_drain_leaves_its_nodes_cordoned_and_cleanup_uncordons_exactly_those() {
    let Some(kc) = kubeconfig() else { return };
    let env = Env::new();
    let class = format!("drainkill-{}", std::process::id());
    let file = env.scratch.path().join("drain.yaml");
    std::fs::write(
        &file,
        format!(
            "classes:\n  - name: {class}\n    kube:\n      storage_class: csi-hostpath-sc\n      size: 256Mi\n    upgrade:\n      drain: true\n      command: \"sleep 20\"\n    timeouts: {{ provision: 2m, attach: 2m, pod_start: 3m, upgrade: 3m }}\n"
        ),
    )
    .unwrap();
    let file = file.display().to_string();
    let exact = format!("{class}::integrity::live-upgrade");
    let args = args_of(&kc, &["--classes", &file, "--exact", &exact]);
    let before = common::kube::cordoned_nodes(&kc);
    let mut child = env.spawn(&strs(&args));
    let cordoned = wait_for(
        &kc,
        "nodes",
        "pvcheck.io/cordoned-by",
        Duration::from_secs(180),
    );
    child.kill().unwrap(); // SIGKILL
    let out = child.wait_with_output().unwrap();
    let Some((_, node)) = cordoned else {
        panic!("no node was cordoned within 180 s: {}", stderr(&out));
    };
    let run = kubectl_out(
        &kc,
        &[
            "get",
            "node",
            &node,
            "-o",
            "jsonpath={.metadata.labels.pvcheck\\.io/cordoned-by}",
        ],
    );
    assert!(!run.is_empty(), "node {node} lost its label");
    assert!(
        common::kube::cordoned_nodes(&kc).contains(&node),
        "node {node} is not cordoned"
    );
    let dry = cleanup(&env, &kc, &["--dry-run", "--run-id", &run]);
    let listed = stdout(&dry);
    assert_eq!(dry.status.code(), Some(0), "{listed}{}", stderr(&dry));
    assert!(
        cleanup_lines(&listed, "would remove ", &run).contains(&("cordon".into(), node.clone())),
        "{listed}"
    );
    let removed = cleanup(&env, &kc, &["--run-id", &run]);
    let text = stdout(&removed);
    assert_eq!(removed.status.code(), Some(0), "{text}{}", stderr(&removed));
    assert!(
        text.contains(&format!("removed cordon {node} (run {run}")),
        "{text}"
    );
    assert_eq!(
        common::kube::cordoned_nodes(&kc),
        before,
        "the nodes cordoned now differ from before the run"
    );
    assert_nothing_left(&kc, &run);
}

/// `--keep-on-failure` on Kubernetes: a check that finds damage (an upgrade that flips a byte on
/// the node) keeps its PVC and holder pod, prints `kubectl` commands to inspect them and the
/// cleanup command; the kubectl commands work as printed (with the run's KUBECONFIG) and show
/// the PVC and the pod with its events, and the printed `pvcheck cleanup` removes everything.
#[test]
fn keep_on_failure_keeps_pvc_and_pod_prints_working_kubectl_commands_and_cleanup_removes_them() {
    let Some(kc) = kubeconfig() else { return };
    let Ok(data_dir) = std::env::var("CSI_HOSTPATH_DATA_DIR") else {
        eprintln!("skipped: CSI_HOSTPATH_DATA_DIR is not set (testenv's env file gives it)");
        return;
    };
    let env = Env::new();
    let args = args_of(
        &kc,
        &[
            "--classes",
            &fixtures()
                .join("kube/hostpath-flip-byte.yaml")
                .display()
                .to_string(),
            "--exact",
            "hostpath-flip::integrity::upgrade",
            "--keep-on-failure",
        ],
    );
    let mut c = env.run_cmd(&strs(&args));
    c.env("CSI_HOSTPATH_DATA_DIR", data_dir);
    let out = c.output().unwrap();
    let err = stderr(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout: {}\n{err}",
        stdout(&out)
    );
    let r = env.result();
    let run = run_id(&r);
    let t = trial(&r, "hostpath-flip::integrity::upgrade");
    assert_eq!(t["status"], "failed", "{t}");
    assert_eq!(t["failure"]["category"], "data", "{t}");
    let kept = r["kept_volumes"].as_array().expect("kept_volumes");
    assert_eq!(kept.len(), 1, "{kept:?}");

    // The kept volume's line, printed at the end of the run.
    let line = err
        .lines()
        .find(|l| l.starts_with("pvcheck: ") && l.contains("kept PVC"))
        .unwrap_or_else(|| panic!("no kept line: {err}"));
    let commands: Vec<&str> = line.split('`').skip(1).step_by(2).collect();
    let (inspect, rest): (Vec<&str>, Vec<&str>) =
        commands.iter().partition(|c| c.starts_with("kubectl "));
    assert!(inspect.len() >= 2, "{line}");
    // Two removals: the cluster's objects, then the run directory on this host that holds the
    // ledgers the line points to (the local platform's `pvcheck cleanup`).
    assert_eq!(
        rest,
        vec![
            format!("pvcheck cleanup --platform kubernetes --run-id {run}"),
            "pvcheck cleanup".to_string()
        ],
        "{line}"
    );

    // What the run kept: the PVC (bound) and the holder pod, and nothing else of the volume
    // was left running (no agent pod).
    let ns = format!("pvcheck-{run}");
    let pods = kubectl_out(
        &kc,
        &[
            "-n",
            &ns,
            "get",
            "pods",
            "-o",
            "jsonpath={range .items[*]}{.metadata.labels.pvcheck\\.io/role} {.metadata.name}{\"\\n\"}{end}",
        ],
    );
    let holder = pods
        .lines()
        .find_map(|l| l.strip_prefix("holder "))
        .unwrap_or_else(|| panic!("no holder pod kept in {ns}: {pods}"))
        .to_string();
    let pvc = kubectl_out(
        &kc,
        &[
            "-n",
            &ns,
            "get",
            "pvc",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name} {.status.phase}{\"\\n\"}{end}",
        ],
    );
    let (pvc_name, phase) = pvc
        .trim()
        .split_once(' ')
        .unwrap_or_else(|| panic!("{pvc}"));
    assert_eq!(phase, "Bound", "{pvc}");

    // The printed commands, run as printed (kubectl from the test cluster's KUBECONFIG).
    let mut shown = String::new();
    for cmd in &inspect {
        let words: Vec<&str> = cmd.split_whitespace().skip(1).collect();
        let o = kubectl()
            .env("KUBECONFIG", &kc)
            .args(&words)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "`{cmd}` failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        shown.push_str(&String::from_utf8_lossy(&o.stdout));
    }
    // The pod's events (the scheduler's at least): events carry no labels, so a command that
    // selects by label must be one that shows each selected pod's events (describe).
    let scheduled = format!("Successfully assigned {ns}/{holder}");
    for want in [pvc_name, holder.as_str(), scheduled.as_str()] {
        assert!(
            shown.contains(want),
            "the printed commands do not show {want:?}:\n{shown}"
        );
    }

    // The printed cleanup commands, in order, remove all of it: the cluster's objects, then
    // the ledgers on this host.
    let ledgers = env.state.path().join("runs").join(&run);
    assert!(ledgers.is_dir(), "{} is not there", ledgers.display());
    for (i, cmd) in rest.iter().enumerate() {
        let words: Vec<&str> = cmd.split_whitespace().skip(1).collect();
        let o = std::process::Command::new(common::PVCHECK)
            .env("KUBECONFIG", &kc)
            .args(&words)
            .arg("--state-dir")
            .arg(env.state.path())
            .output()
            .unwrap();
        assert_eq!(
            o.status.code(),
            Some(0),
            "`{cmd}`: {}{}",
            stdout(&o),
            stderr(&o)
        );
        if i == 0 {
            assert_nothing_left(&kc, &run);
        }
    }
    assert!(!ledgers.exists(), "{} is left", ledgers.display());
}
