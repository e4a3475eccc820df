//! Bad input for `--platform kubernetes` that needs no cluster: no kubeconfig is a usage error
//! (exit 2, one line, nothing created); an API server that does not answer is infrastructure
//! (exit 5, one line naming the server).

mod common;

use common::{Env, fixtures, stderr};

fn hostpath() -> String {
    fixtures().join("kube/hostpath.yaml").display().to_string()
}

fn one_line(s: &str) -> bool {
    s.trim().lines().count() == 1
}

#[test]
fn no_kubeconfig_is_exit_2_in_one_line() {
    let env = Env::new();
    let home = tempfile::tempdir().unwrap();
    let mut c = env.run_cmd(&["--platform", "kubernetes", "--classes", &hostpath()]);
    c.env_remove("KUBECONFIG")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("HOME", home.path());
    let out = c.output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(one_line(&err) && err.contains("no kubeconfig"), "{err}");
    assert!(env.leftovers().is_empty(), "{:?}", env.leftovers());
}

#[test]
fn a_kubeconfig_flag_naming_no_file_is_exit_2_naming_the_flag() {
    let env = Env::new();
    let out = env.run(&[
        "--platform",
        "kube",
        "--kubeconfig",
        "/nonexistent/kubeconfig",
        "--classes",
        &hostpath(),
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        one_line(&err) && err.contains("--kubeconfig /nonexistent/kubeconfig"),
        "{err}"
    );
}

/// Port 1 on loopback refuses connections: the API server "went away".
#[test]
fn an_unreachable_api_server_is_exit_5_naming_the_server() {
    let env = Env::new();
    let kc = env.scratch.path().join("kubeconfig");
    std::fs::write(
        &kc,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:1\n    insecure-skip-tls-verify: true\nusers:\n- name: u\n  user:\n    token: t\ncontexts:\n- name: x\n  context: {cluster: c, user: u}\ncurrent-context: x\n",
    )
    .unwrap();
    let out = env.run(&[
        "--platform",
        "kubernetes",
        "--kubeconfig",
        kc.to_str().unwrap(),
        "--classes",
        &hostpath(),
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert!(one_line(&err) && err.contains("127.0.0.1:1"), "{err}");
    assert!(env.leftovers().is_empty(), "{:?}", env.leftovers());
}

/// A listing needs no cluster: it plans from the class files alone.
#[test]
fn listing_kubernetes_trials_contacts_nothing() {
    let env = Env::new();
    let out = env.run(&[
        "--platform",
        "kubernetes",
        "--kubeconfig",
        "/nonexistent",
        "--classes",
        &hostpath(),
        "--list",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        text.contains("hostpath::integrity::recreate: test"),
        "{text}"
    );
}

/// A class for the cluster is ignored on the local platform, with the reason.
#[test]
fn a_kube_class_is_ignored_on_the_local_platform_with_the_reason() {
    let env = Env::new();
    let out = env.run(&["--classes", &hostpath(), "--exact", "hostpath::provision"]);
    // Nothing was tested: exit 6 (issue 23), not a pass.
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    let r = env.result();
    let t = common::trial(&r, "hostpath::provision");
    assert_eq!(t["status"], "ignored");
    assert!(
        t["ignored_reason"]
            .as_str()
            .unwrap()
            .contains("no `local:` section")
    );
}
