//! `integrity::other-node` on a two-node test cluster (`testenv/up --nodes 2`, as
//! `scripts/test-all` starts it): a flexVolume volume (the sample drivers are reachable from
//! both nodes) written on one node is verified on the other, after the detach, and so is a
//! volume of the test CSI driver (its node plugin runs on every node, one zone); a
//! block damaged while the volume moves fails the verify on the other node with its kind and
//! offset. Without a cluster, or with one node, each test prints one line and passes as skipped.

mod common;

use std::path::{Path, PathBuf};

use common::kube::{kubeconfig, node_names, objects_of_run, run_id, run_kube, testenv_var};
use common::{Env, assert_exit, fixtures, trial};

/// The two-node cluster's kubeconfig and its nodes, or `None` (skipped, with one line).
fn two_nodes() -> Option<(String, Vec<String>)> {
    let kc = kubeconfig()?;
    let nodes = node_names(&kc);
    if nodes.len() < 2 {
        eprintln!(
            "skipped: the test cluster has {} node(s); start it with `testenv/up --nodes 2`",
            nodes.len()
        );
        return None;
    }
    Some((kc, nodes))
}

/// A class file (in `dir`) of flexVolume class `name` whose PVs come from a template for
/// `driver`, with the volumes under `data`, and the hostpath class of the test cluster.
fn classes(dir: &Path, name: &str, driver: &str, data: &Path) -> PathBuf {
    std::fs::write(
        dir.join("pv.yaml"),
        format!(
            "apiVersion: v1\nkind: PersistentVolume\nmetadata: {{ name: template }}\nspec:\n  capacity: {{ storage: 256Mi }}\n  accessModes: [ReadWriteOnce]\n  flexVolume:\n    driver: {driver}\n    fsType: ext4\n    options: {{ dir: \"{}\", size: 256MiB }}\n",
            data.display()
        ),
    )
    .unwrap();
    let file = dir.join("classes.yaml");
    std::fs::write(
        &file,
        format!(
            "classes:\n  - name: {name}\n    kube:\n      pv_template: pv.yaml\n      size: 200Mi\n    timeouts: {{ provision: 1m, attach: 2m, pod_start: 2m }}\n  - name: hostpath\n    kube:\n      storage_class: csi-hostpath-sc\n      size: 256Mi\n    timeouts: {{ provision: 2m, attach: 2m, pod_start: 3m }}\n"
        ),
    )
    .unwrap();
    file
}

fn run(env: &Env, kc: &str, classes: &Path) -> std::process::Output {
    run_kube(env, kc, classes, &["integrity::other-node"])
}

/// Written on one node, verified on the other (both named in the result, both nodes of the
/// cluster, not the same); so is the test CSI driver's volume (one zone for every node).
#[test]
fn a_flexvolume_and_a_csi_volume_move_to_the_other_node() {
    let Some((kc, nodes)) = two_nodes() else {
        return;
    };
    let Some(data) = testenv_var("FLEXVOLUME_DATA_DIR") else {
        return;
    };
    let env = Env::new();
    let data = PathBuf::from(data).join(format!(
        "other-node-{}",
        env.scratch.path().file_name().unwrap().to_string_lossy()
    ));
    let file = classes(env.scratch.path(), "flex-loop", "pvcheck/loop", &data);
    let out = run(&env, &kc, &file);
    assert_exit(&out, 0);
    let r = env.result();
    let t = trial(&r, "flex-loop::integrity::other-node");
    assert_eq!(t["status"], "passed", "{t}");
    let (write, verify) = (
        t["metrics"]["nodes"]["write"].as_str().unwrap_or_default(),
        t["metrics"]["nodes"]["verify"].as_str().unwrap_or_default(),
    );
    eprintln!("written on {write}, verified on {verify}");
    assert!(
        nodes.iter().any(|n| n == write) && nodes.iter().any(|n| n == verify),
        "{write} / {verify} are not nodes of the cluster ({nodes:?})"
    );
    assert_ne!(write, verify, "{t}");
    assert!(
        t["metrics"]["verify_on_the_other_node"]["clean"] == true,
        "{t}"
    );
    // The test CSI driver's node plugin runs on every node and its volumes live in one host
    // directory (topology.pvcheck.io/zone): its volume moves too.
    let h = trial(&r, "hostpath::integrity::other-node");
    assert_eq!(h["status"], "passed", "{h}");
    assert_ne!(
        h["metrics"]["nodes"]["write"], h["metrics"]["nodes"]["verify"],
        "{h}"
    );
    let _ = std::fs::remove_dir_all(&data);
    assert!(
        objects_of_run(&kc, &run_id(&r)).is_empty(),
        "{:?}",
        objects_of_run(&kc, &run_id(&r))
    );
}

/// The fixture driver `pvcheck~flip` (installed for this test, removed after it).
struct FlipDriver(PathBuf);

impl FlipDriver {
    fn install(plugin_dir: &Path) -> Self {
        let dir = plugin_dir.join("pvcheck~flip");
        std::fs::create_dir_all(&dir).unwrap();
        let to = dir.join("flip");
        std::fs::copy(fixtures().join("kube/flip-on-move"), &to).unwrap();
        FlipDriver(dir)
    }
}

impl Drop for FlipDriver {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A block damaged while the volume moved (the fixture driver flips a byte at its first mount
/// on the second node) fails the verify on the other node: category data, `corrupt` at that file and offset,
/// and the message names both nodes.
#[test]
fn a_block_damaged_on_the_way_to_the_other_node_fails_its_verify_with_kind_and_offset() {
    let Some((kc, _)) = two_nodes() else { return };
    let Some(data) = testenv_var("FLEXVOLUME_DATA_DIR") else {
        return;
    };
    let Some(plugins) = testenv_var("FLEXVOLUME_DIR") else {
        return;
    };
    let _driver = FlipDriver::install(Path::new(&plugins));
    let env = Env::new();
    let data = PathBuf::from(data).join(format!(
        "other-node-flip-{}",
        env.scratch.path().file_name().unwrap().to_string_lossy()
    ));
    let file = classes(env.scratch.path(), "flex-flip", "pvcheck/flip", &data);
    let out = run_kube(
        &env,
        &kc,
        &file,
        &["--exact", "flex-flip::integrity::other-node"],
    );
    assert_exit(&out, 1);
    let record = std::fs::read_dir(&data)
        .unwrap()
        .filter_map(Result::ok)
        .find(|e| e.file_name().to_string_lossy().ends_with(".flipped"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .expect("the driver recorded what it flipped on the other node");
    let (flipped, byte) = record.trim().split_once(' ').unwrap();
    let r = env.result();
    let t = trial(&r, "flex-flip::integrity::other-node");
    assert_eq!(t["status"], "failed", "{t}");
    assert_eq!(t["failure"]["category"], "data", "{t}");
    let damage = t["failure"]["details"]["damage"].as_array().unwrap();
    assert_eq!(damage.len(), 1, "{damage:?}");
    assert_eq!(damage[0]["kind"], "corrupt");
    assert_eq!(damage[0]["file"], flipped);
    assert_eq!(
        damage[0]["offset"],
        byte.parse::<u64>().unwrap() / 4096 * 4096
    );
    let (write, verify) = (
        t["metrics"]["nodes"]["write"].as_str().unwrap(),
        t["metrics"]["nodes"]["verify"].as_str().unwrap(),
    );
    let message = t["failure"]["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!(
            "written on node {write}, read on node {verify}: verify on the other node: 1 damaged block"
        )),
        "{message}"
    );
    let _ = std::fs::remove_dir_all(&data);
    assert!(objects_of_run(&kc, &run_id(&r)).is_empty());
}
