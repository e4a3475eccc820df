//! Exit 5 on a real cluster: what keeps the harness from checking the storage is
//! infrastructure, not a finding. A PVC that is never bound within `timeouts.provision` (a
//! StorageClass whose provisioner does not exist) and an agent image that cannot be pulled fail
//! their trials with category `infrastructure`, the run exits 5 with one verdict line, and
//! nothing of the run is left. Without a cluster each test prints one line and passes.

mod common;

use std::time::{Duration, Instant};

use common::kube::{kube_args, kubeconfig, kubectl, objects_of_run, run_id};
use common::{Env, fixtures, stderr, stdout, trial};

/// A StorageClass no provisioner serves, labelled as this test's and deleted by name when the
/// test ends.
struct NobodyClass {
    kc: String,
    name: String,
}

impl NobodyClass {
    /// `binding`: `Immediate` or `WaitForFirstConsumer`.
    fn create(kc: &str, binding: &str) -> Self {
        let name = format!(
            "pvcheck-test-nobody-{}-{}",
            binding.to_lowercase(),
            std::process::id()
        );
        let manifest = format!(
            "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata:\n  name: {name}\n  labels: {{ pvcheck.io/test: kube-infrastructure }}\nprovisioner: nobody.pvcheck.io\nvolumeBindingMode: {binding}\nreclaimPolicy: Delete\n"
        );
        let mut c = kubectl()
            .args(["--kubeconfig", kc, "apply", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("kubectl (set PVCHECK_TEST_KUBECTL)");
        use std::io::Write;
        c.stdin
            .take()
            .unwrap()
            .write_all(manifest.as_bytes())
            .unwrap();
        assert!(c.wait().unwrap().success(), "creating StorageClass {name}");
        NobodyClass {
            kc: kc.to_string(),
            name,
        }
    }
}

impl Drop for NobodyClass {
    fn drop(&mut self) {
        let _ = kubectl()
            .args([
                "--kubeconfig",
                &self.kc,
                "delete",
                "storageclass",
                &self.name,
                "--ignore-not-found",
            ])
            .output();
    }
}

fn assert_infrastructure(
    out: &std::process::Output,
    env: &Env,
    kc: &str,
    trial_name: &str,
) -> String {
    assert_eq!(
        out.status.code(),
        Some(5),
        "stdout: {}\nstderr: {}",
        stdout(out),
        stderr(out)
    );
    let err = stderr(out);
    let verdict = err.lines().rev().nth(1).unwrap_or_default();
    assert!(
        verdict.starts_with("pvcheck: HARNESS FAILURE") && verdict.contains("exit 5"),
        "{verdict}"
    );
    let r = env.result();
    assert_eq!(r["exit_code"], 5);
    let t = trial(&r, trial_name);
    assert_eq!(t["status"], "failed", "{t}");
    assert_eq!(t["failure"]["category"], "infrastructure", "{t}");
    let left = objects_of_run(kc, &run_id(&r));
    assert!(left.is_empty(), "left: {left:?}");
    t["failure"]["message"].as_str().unwrap().to_string()
}

/// `timeouts.provision` passes with the PVC Pending: exit 5, the message names the claim, the
/// limit and the class's events, within the limit and a little more (not another timeout).
#[test]
fn a_pvc_never_bound_within_timeouts_provision_is_exit_5_infrastructure_and_leaves_nothing() {
    let Some(kc) = kubeconfig() else { return };
    let sc = NobodyClass::create(&kc, "Immediate");
    let env = Env::new();
    let file = env.scratch.path().join("classes.yaml");
    std::fs::write(
        &file,
        format!(
            "classes:\n  - name: nobody\n    kube:\n      storage_class: {}\n      size: 64Mi\n    timeouts: {{ provision: 5s, attach: 1m, pod_start: 1m }}\n",
            sc.name
        ),
    )
    .unwrap();
    let mut args = kube_args(&kc);
    args.extend([
        "--classes".into(),
        file.display().to_string(),
        "--exact".into(),
        "nobody::integrity::recreate".into(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let start = Instant::now();
    let out = env.run(&args);
    let took = start.elapsed();
    let message = assert_infrastructure(&out, &env, &kc, "nobody::integrity::recreate");
    assert!(
        message.starts_with("provision: PVC pvcheck-")
            && message.contains("was not bound")
            && message.contains("not within 5s")
            && message.contains("timeouts.provision"),
        "{message}"
    );
    assert!(took < Duration::from_secs(60), "took {took:?}");
}

/// An agent image that cannot be pulled: the pod fails at once with the pull error (no wait for
/// the timeout), category infrastructure, exit 5, naming the image.
#[test]
fn an_agent_image_that_cannot_be_pulled_is_exit_5_infrastructure_naming_the_image() {
    let Some(kc) = kubeconfig() else { return };
    let env = Env::new();
    let image = "localhost:1/pvcheck-test/no-such-agent:0";
    let args = vec![
        "--platform".to_string(),
        "kubernetes".into(),
        "--kubeconfig".into(),
        kc.clone(),
        "--agent-image".into(),
        image.into(),
        "--classes".into(),
        fixtures().join("kube/hostpath.yaml").display().to_string(),
        "--exact".into(),
        "hostpath::integrity::recreate".into(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = env.run(&args);
    let message = assert_infrastructure(&out, &env, &kc, "hostpath::integrity::recreate");
    assert!(
        message.contains(image)
            && (message.contains("ErrImagePull") || message.contains("ImagePullBackOff")),
        "{message}"
    );
    assert!(message.contains("--agent-image"), "{message}");
}

/// `WaitForFirstConsumer`: the claim is provisioned for the first pod, which waits; when it times
/// out with the claim still unbound, that is the volume not provisioned in time (exit 5), not a
/// pod that did not start.
#[test]
fn a_first_consumer_claim_never_provisioned_is_exit_5_infrastructure_naming_the_claim() {
    let Some(kc) = kubeconfig() else { return };
    let sc = NobodyClass::create(&kc, "WaitForFirstConsumer");
    let env = Env::new();
    let file = env.scratch.path().join("classes.yaml");
    std::fs::write(
        &file,
        format!(
            "classes:\n  - name: nobody-wffc\n    kube:\n      storage_class: {}\n      size: 64Mi\n    timeouts: {{ provision: 5s, attach: 5s, pod_start: 5s }}\n",
            sc.name
        ),
    )
    .unwrap();
    let mut args = kube_args(&kc);
    args.extend([
        "--classes".into(),
        file.display().to_string(),
        "--exact".into(),
        "nobody-wffc::integrity::recreate".into(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = env.run(&args);
    let message = assert_infrastructure(&out, &env, &kc, "nobody-wffc::integrity::recreate");
    assert!(
        message.contains("did not start")
            && message.contains("was never bound")
            && message.contains("timeouts.provision"),
        "{message}"
    );
}
