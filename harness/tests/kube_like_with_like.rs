//! Like with like on Kubernetes (issue 19 item 6): the fingerprint describes the setup and never
//! names one run. Two runs of one class on the test cluster compare without refusal and without
//! a false alarm (volume, PV, node names and timings differ on every run); the same class after
//! its StorageClass changed one parameter is refused as unlike, the parameter named.
//!
//! Kept cheap: quick profile, one speed workload, one repetition per run.
//!
//! Without `PVCHECK_TEST_KUBECONFIG` the test prints one line and passes as skipped, as the
//! other kube tests do.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::kube::{kube_args, kubeconfig, kubectl, kubectl_stdin, objects_of_run};
use common::{Env, PVCHECK, stderr, stdout};

/// The speed workload the runs measure (the quick profile's shortest random one).
const WORKLOAD: &str = "speed::randread-4k-qd1";

/// A StorageClass of the test cluster's driver, made by the test and deleted when it ends.
struct StorageClass {
    kc: String,
    name: String,
}

impl StorageClass {
    fn new(kc: &str) -> Self {
        StorageClass {
            kc: kc.to_string(),
            name: format!("pvcheck-lwl-{}", std::process::id()),
        }
    }

    /// (Re)creates it with parameter `pvcheck.io/tier` (parameters cannot be changed in place).
    /// The test cluster's driver serves every node (one zone), so no allowedTopologies.
    fn make(&self, tier: &str) {
        self.delete();
        kubectl_stdin(
            &self.kc,
            &["apply", "-f", "-"],
            &format!(
                "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {{ name: {} }}\nprovisioner: hostpath.csi.pvcheck.io\nparameters: {{ pvcheck.io/tier: {tier} }}\nreclaimPolicy: Delete\nvolumeBindingMode: WaitForFirstConsumer\nallowVolumeExpansion: true\n",
                self.name,
            ),
        );
    }

    fn delete(&self) {
        let _ = kubectl()
            .args(["--kubeconfig", &self.kc])
            .args(["delete", "storageclass", &self.name, "--ignore-not-found"])
            .output();
    }
}

impl Drop for StorageClass {
    fn drop(&mut self) {
        self.delete();
    }
}

/// One run of `WORKLOAD` of class `lwl` on StorageClass `sc`: its result file. Requires exit 0
/// and nothing of the run left on the cluster.
fn run(env: &Env, kc: &str, sc: &str) -> PathBuf {
    let classes = env.scratch.path().join("classes.yaml");
    std::fs::write(
        &classes,
        format!(
            "classes:\n  - name: lwl\n    kube:\n      storage_class: {sc}\n      size: 256Mi\n    timeouts: {{ provision: 2m, attach: 2m, pod_start: 3m }}\n"
        ),
    )
    .unwrap();
    let runs = env.results.path().join("runs");
    let before = files(&runs);
    let filter = format!("lwl::{WORKLOAD}");
    let mut args = kube_args(kc);
    args.extend(
        [
            "--classes",
            classes.to_str().unwrap(),
            "--profile",
            "quick",
            "--repeat",
            "1",
            filter.as_str(),
            "--exact",
        ]
        .map(String::from),
    );
    let out = env.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        stdout(&out),
        stderr(&out)
    );
    let file = files(&runs)
        .into_iter()
        .find(|f| !before.contains(f))
        .expect("a new result file");
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let t = r["trials"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == format!("lwl::{WORKLOAD}"))
        .unwrap_or_else(|| panic!("no lwl::{WORKLOAD} trial: {r}"));
    assert_eq!(t["status"], "passed", "{t}");
    let left = objects_of_run(kc, r["run_id"].as_str().unwrap());
    assert!(left.is_empty(), "left: {left:?}");
    file
}

fn files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

fn compare(env: &Env, a: &Path, b: &Path) -> Output {
    Command::new(PVCHECK)
        .args(["compare", "--results"])
        .arg(env.results.path())
        .arg(a)
        .arg(b)
        .output()
        .unwrap()
}

#[test]
fn two_kubernetes_runs_of_one_class_compare_and_a_changed_storageclass_parameter_is_refused_by_name()
 {
    let Some(kc) = kubeconfig() else { return };
    let env = Env::new();
    let sc = StorageClass::new(&kc);
    sc.make("gold");
    let a = run(&env, &kc, &sc.name);
    let b = run(&env, &kc, &sc.name);
    // The result records the setup, not this run's names.
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&a).unwrap()).unwrap();
    let vol = &doc["environment"]["classes"]["lwl"]["volume"];
    assert_eq!(
        vol["setup"]["storage"]["storage_class"]["parameters"]["pvcheck.io/tier"], "gold",
        "{vol}"
    );
    assert_eq!(
        vol["setup"]["storage"]["driver"]["name"], "hostpath.csi.pvcheck.io",
        "{vol}"
    );
    assert!(
        vol["setup"]["storage"]["driver"]["images"]
            .as_array()
            .is_some_and(|i| i
                .iter()
                .any(|i| i.as_str().unwrap().contains("pvcheck-test-csi"))),
        "the driver's image is not recorded: {vol}"
    );

    let same = compare(&env, &a, &b);
    let text = format!("{}{}", stdout(&same), stderr(&same));
    assert!(
        !text.contains("unlike setups"),
        "two runs of one class refused as unlike:\n{text}"
    );
    // Not refused (2 today, 7 once the gate has its own code) and no false alarm (3).
    assert!(
        !matches!(same.status.code(), Some(2 | 3 | 7)),
        "exit {:?}:\n{text}",
        same.status.code()
    );

    sc.make("silver");
    let c = run(&env, &kc, &sc.name);
    let unlike = compare(&env, &a, &c);
    let text = format!("{}{}", stdout(&unlike), stderr(&unlike));
    assert!(
        matches!(unlike.status.code(), Some(2 | 7)),
        "exit {:?}:\n{text}",
        unlike.status.code()
    );
    assert!(text.contains("refusing to compare unlike setups"), "{text}");
    assert!(
        text.contains("storage_class.parameters.pvcheck.io/tier: gold → silver"),
        "the parameter is not named:\n{text}"
    );
}
