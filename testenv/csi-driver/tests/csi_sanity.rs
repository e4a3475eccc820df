//! kubernetes-csi's own conformance suite (`csi-sanity`, from the csi-test/v5 module that
//! `testenv/build csi` builds) passes against this driver: filesystem volumes, with
//! --enable-attach, and block volumes. csi-sanity is found at $PVCHECK_CSI_SANITY or
//! `testenv/bin/csi-sanity`; without it the test prints one line and passes as skipped.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;

fn csi_sanity() -> Option<PathBuf> {
    let path = std::env::var_os("PVCHECK_CSI_SANITY")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../bin/csi-sanity"));
    path.is_file().then_some(path)
}

/// Run csi-sanity against a fresh driver started with `flags`; returns its summary line.
fn run(flags: &[&str], sanity_args: &[&str]) -> String {
    let sanity = csi_sanity().expect("checked by the caller");
    let sb = Sandbox::new();
    let mut driver = DriverProcess::start(&sb, flags);
    let out = Command::new(&sanity)
        .arg(format!("-csi.endpoint=unix://{}", sb.socket().display()))
        .arg(format!("-csi.mountdir={}", sb.path("mnt").display()))
        .arg(format!("-csi.stagingdir={}", sb.path("stage").display()))
        .arg("-ginkgo.no-color")
        .args(sanity_args)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let summary = text
        .lines()
        .rfind(|l| l.contains("Passed") && l.contains("Failed"))
        .unwrap_or("")
        .to_string();
    assert!(
        out.status.success(),
        "csi-sanity {flags:?} {sanity_args:?} failed: {summary}\n{text}\n--- driver log ---\n{}",
        driver.log()
    );
    assert_eq!(driver.stop(), 0);
    assert_clean(&sb);
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(sb.statedir().join("state.json")).unwrap()).unwrap();
    assert_eq!(
        state["volumes"].as_object().unwrap().len(),
        0,
        "csi-sanity deleted every volume it made"
    );
    eprintln!("csi-sanity {flags:?} {sanity_args:?}: {summary}");
    summary
}

#[test]
fn csi_sanity_passes_on_filesystem_attach_and_block_volumes() {
    if !root_or_skip("csi-sanity") {
        return;
    }
    if csi_sanity().is_none() {
        eprintln!(
            "csi-sanity: skipped: not at $PVCHECK_CSI_SANITY or testenv/bin/csi-sanity (testenv/build csi builds it)"
        );
        return;
    }
    for summary in [
        run(&[], &[]),
        run(&["--enable-attach"], &[]),
        run(
            &[],
            &[
                "-csi.testvolumeaccesstype=block",
                "-csi.testvolumesize=67108864",
            ],
        ),
    ] {
        assert!(summary.contains("0 Failed"), "{summary}");
    }
}
