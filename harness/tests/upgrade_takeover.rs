//! Issue 20, item 1: after each upgrade step the driver installed now takes over the volume made
//! before it: the pod is recreated, so the new driver unpublishes, unstages, stages and
//! publishes the pre-upgrade volume, and (CSI) expands it, snapshots it and deletes the snapshot
//! taken before the upgrade. A release that forgets the old volumes fails `integrity::upgrade`
//! with category `upgrade`, naming the call, the version and the volume, with or without a
//! rollback. Local platform: `pvcheck-test-csi` (skipped with one line without it or root) and
//! the sample flexVolume drivers. Nothing is left mounted, attached or running.

mod csi_support;
mod flexvolume_support;

use serde_json::Value;

use csi_support::{Run, Scratch, class, hostpath, hostpath_argv, run, run_in};

/// A class over the test driver tagged `v1`, upgraded to the same driver with `upgrade_args`
/// appended (`--version-tag=v2`, …); snapshots and expansion on, so the pre-upgrade objects are
/// touched too.
fn csi_class(name: &str, hp: &std::path::Path, upgrade_args: &[&str], rollback: bool) -> String {
    let mut argv = hostpath_argv(hp, "{endpoint}");
    argv.push("--version-tag=v1".into());
    let mut up = hostpath_argv(hp, "{endpoint}");
    up.extend(upgrade_args.iter().map(|a| a.to_string()));
    let up: Vec<String> = up.iter().map(|a| format!("{a:?}")).collect();
    class(
        name,
        &argv,
        "mount",
        &format!(
            "    capabilities: {{ snapshot: true, expansion: true }}\n    upgrade:\n      csi: {{ command: [{}] }}\n      rollback: {rollback}\n",
            up.join(", ")
        ),
    )
}

fn steps(r: &Run, trial: &str) -> Vec<Value> {
    r.trial(trial)["metrics"]["upgrade_steps"]
        .as_array()
        .unwrap_or_else(|| {
            panic!(
                "{trial}: no upgrade_steps in the metrics: {:#}",
                r.trial(trial)
            )
        })
        .clone()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// The healthy upgrade (v1 → v2, and back with a rollback): passes, and the record shows each
/// step's new driver made the takeover calls on the pre-upgrade volume, and the upgraded one
/// expanded it, snapshotted it and deleted the snapshot taken before the upgrade.
#[test]
fn a_healthy_csi_upgrade_passes_and_the_new_driver_takes_the_old_volume_over() {
    let test = "a_healthy_csi_upgrade_passes_and_the_new_driver_takes_the_old_volume_over";
    let Some(hp) = hostpath(test) else {
        return;
    };
    let s = Scratch::new("takeover-ok");
    let yaml = format!(
        "classes:\n{}{}",
        csi_class("up", &hp, &["--version-tag=v2"], false),
        csi_class("uprb", &hp, &["--version-tag=v2"], true),
    );
    let r = run(&s, &yaml, &["integrity::upgrade"], &[]);
    r.assert_exit(0);
    for (trial, expected) in [
        ("up::integrity::upgrade", &[("upgrade", "+v1", "+v2")][..]),
        (
            "uprb::integrity::upgrade",
            &[("upgrade", "+v1", "+v2"), ("rollback", "+v2", "+v1")][..],
        ),
    ] {
        let t = r.trial(trial);
        assert_eq!(t["status"], "passed", "{t:#}");
        assert_eq!(t["warnings"], Value::Array(vec![]), "{t:#}");
        let st = steps(&r, trial);
        assert_eq!(st.len(), expected.len(), "{st:#?}");
        for (rec, (step, before, after)) in st.iter().zip(expected) {
            assert_eq!(rec["step"], *step, "{rec:#}");
            let v = |k: &str| rec[k].as_str().unwrap_or_default().to_string();
            assert!(v("driver_version_before").ends_with(before), "{rec:#}");
            assert!(v("driver_version_after").ends_with(after), "{rec:#}");
            let tk = &rec["takeover"];
            assert_eq!(tk["ok"], true, "{rec:#}");
            assert!(
                tk["driver_version"]
                    .as_str()
                    .unwrap_or_default()
                    .ends_with(after),
                "{rec:#}"
            );
            // kubelet's tear-down and set-up, in order, all answered by the new driver.
            let calls = strings(&tk["calls"]);
            let order: Vec<&str> = calls
                .iter()
                .filter_map(|c| c.strip_suffix(" OK"))
                .filter(|c| c.starts_with("Node") && c.ends_with("Volume"))
                .collect();
            assert_eq!(
                order,
                [
                    "NodeUnpublishVolume",
                    "NodeUnstageVolume",
                    "NodeStageVolume",
                    "NodePublishVolume"
                ],
                "{calls:?}"
            );
        }
        // After the upgrade, the pre-upgrade objects: nothing skipped.
        let objects = &st[0]["pre_upgrade_objects"];
        let done = strings(&objects["done"]).join("; ");
        for must in [
            "expand from",
            "snapshot",
            "delete the snapshot taken before the upgrade",
        ] {
            assert!(done.contains(must), "{must}: {objects:#}");
        }
        assert_eq!(strings(&objects["skipped"]), Vec::<String>::new());
    }
    s.assert_nothing_left();
}

/// Issue 20: a release that renamed its state file (state.json → volumes.json) without migrating
/// forgets every volume the old release made. pvcheck passed it with `rollback: true` (the new
/// driver never touched the old volume) and without a rollback failed it as `setup`. Now both
/// fail as `upgrade`, naming the version, the NotFound call and the pre-upgrade volume.
#[test]
fn issue20_state_forgetting_release_passed_upgrade_with_rollback() {
    let test = "issue20_state_forgetting_release_passed_upgrade_with_rollback";
    let Some(hp) = hostpath(test) else {
        return;
    };
    let s = Scratch::new("takeover-forget");
    let bad = ["--version-tag=v2", "--state-file=volumes.json"];
    let yaml = format!(
        "classes:\n{}{}",
        csi_class("forgetrb", &hp, &bad, true),
        csi_class("forget", &hp, &bad, false),
    );
    let r = run(&s, &yaml, &["integrity::upgrade"], &[]);
    r.assert_exit(1);
    for trial in ["forgetrb::integrity::upgrade", "forget::integrity::upgrade"] {
        let t = r.trial(trial);
        assert_eq!(t["status"], "failed", "{t:#}");
        assert_eq!(t["failure"]["category"], "upgrade", "{t:#}");
        let msg = r.message(trial);
        let first = msg.lines().next().unwrap_or_default();
        let run_id = r.result.as_ref().unwrap()["run_id"].as_str().unwrap_or("?");
        let class = trial.split("::").next().unwrap_or_default();
        let volume = format!("{run_id}-{class}-upgrade");
        assert!(
            first.starts_with("after upgrade to 0.") && first.contains("+v2 (step upgrade): "),
            "{msg}"
        );
        assert!(
            first.contains(&format!("volume {volume}, created before the upgrade")),
            "{msg}"
        );
        assert!(
            first.contains("NodeUnpublishVolume answered NotFound"),
            "{msg}"
        );
        // The takeover's calls are in the record: the NotFound came from v2.
        let st = steps(&r, trial);
        assert_eq!(st[0]["takeover"]["ok"], false, "{st:#?}");
        assert!(
            st[0]["takeover"]["driver_version"]
                .as_str()
                .unwrap_or_default()
                .ends_with("+v2")
        );
        assert!(
            strings(&st[0]["takeover"]["calls"])
                .iter()
                .any(|c| c.starts_with("NodeUnpublishVolume NotFound")),
            "{st:#?}"
        );
    }
    // The verdict names the category; what the forgetful driver left mounted is removed.
    assert!(r.stdout.contains("upgrade failure"), "{}", r.stdout);
    s.assert_nothing_left();
}

/// flexVolume: the sample driver 1.0.0 → 2.0.0 and back still passes, and after each step the
/// installed driver recreated the pod (unmount, detach, attach, mount): the record names it.
#[test]
fn flexvolume_upgrade_and_rollback_are_taken_over_by_the_installed_driver() {
    let f = flexvolume_support::Scratch::new("takeover-flex");
    let yaml = format!(
        "classes:\n  - name: flex\n    local:\n      flexvolume:\n        driver: {}\n        fs_type: ext4\n        options: {{ size: 256MiB }}\n    upgrade:\n      driver: {}\n      rollback: true\n",
        f.sample("flexvolume/loop/v1/loop").display(),
        f.sample("flexvolume/loop/v2/loop").display(),
    );
    let r = run_in(&f.root, &yaml, &["flex::integrity::upgrade"], &[]);
    r.assert_exit(0);
    let trial = "flex::integrity::upgrade";
    assert_eq!(r.trial(trial)["warnings"], Value::Array(vec![]));
    let st = steps(&r, trial);
    let seen: Vec<(String, String, bool)> = st
        .iter()
        .map(|rec| {
            (
                rec["step"].as_str().unwrap_or_default().to_string(),
                rec["takeover"]["driver_version"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                rec["takeover"]["ok"] == true,
            )
        })
        .collect();
    assert_eq!(seen.len(), 2, "{st:#?}");
    assert_eq!(
        (seen[0].0.as_str(), seen[0].2),
        ("upgrade", true),
        "{st:#?}"
    );
    assert!(
        seen[0].1.starts_with("pvcheck-loop 2.0.0 (sha256:"),
        "{st:#?}"
    );
    assert_eq!(
        (seen[1].0.as_str(), seen[1].2),
        ("rollback", true),
        "{st:#?}"
    );
    assert!(
        seen[1].1.starts_with("pvcheck-loop 1.0.0 (sha256:"),
        "{st:#?}"
    );
    // The driver swap is recorded; capabilities are off, so the pre-upgrade objects are skipped
    // with the reason.
    assert_eq!(st[0]["report"]["driver_swap"], "flexvolume", "{st:#?}");
    let skipped = strings(&st[0]["pre_upgrade_objects"]["skipped"]).join("; ");
    assert!(
        skipped.contains("expand: capability `expansion` is off for this class"),
        "{skipped}"
    );
    f.assert_nothing_left();
}

/// Item 5: an "upgrade" to the very same driver (same vendor_version) passes, with the warning
/// that it proved nothing.
#[test]
fn an_upgrade_that_changes_no_version_passes_with_a_warning() {
    let test = "an_upgrade_that_changes_no_version_passes_with_a_warning";
    let Some(hp) = hostpath(test) else {
        return;
    };
    let s = Scratch::new("takeover-same");
    let yaml = format!(
        "classes:\n{}",
        csi_class("same", &hp, &["--version-tag=v1"], false)
    );
    let r = run(&s, &yaml, &["integrity::upgrade"], &[]);
    r.assert_exit(0);
    let t = r.trial("same::integrity::upgrade");
    assert_eq!(t["status"], "passed", "{t:#}");
    let w = strings(&t["warnings"]).join("\n");
    assert!(
        w.contains("upgrade step \"upgrade\": the driver is 0.")
            && w.contains("+v1 before and after: an upgrade that upgraded nothing proves nothing"),
        "{w}"
    );
    s.assert_nothing_left();
}

/// Item 5: each `upgrade.command` step is recorded with the command, its exit status, how long
/// it took and its last output lines.
#[test]
fn each_upgrade_command_step_is_recorded_with_status_duration_and_output() {
    let dir = tempfile::tempdir().unwrap();
    let vols = dir.path().join("vols");
    std::fs::create_dir_all(&vols).unwrap();
    let yaml = format!(
        "classes:\n  - name: cmd\n    local: {{ dir: {} }}\n    upgrade: {{ command: \"seq 1 9; echo swapped $PVCHECK_UPGRADE_STEP >&2\" }}\n",
        vols.display()
    );
    let r = run_in(
        dir.path(),
        &yaml,
        &["--exact", "cmd::integrity::upgrade"],
        &[],
    );
    r.assert_exit(0);
    let st = steps(&r, "cmd::integrity::upgrade");
    let names: Vec<&str> = st.iter().filter_map(|s| s["step"].as_str()).collect();
    assert_eq!(names, ["upgrade", "upgrade-after-rewrite"], "{st:#?}");
    for rec in &st {
        let rep = &rec["report"];
        assert_eq!(rep["exit_status"], "exit 0", "{rec:#}");
        assert!(
            rep["command"]
                .as_str()
                .unwrap_or_default()
                .starts_with("seq 1 9")
        );
        assert!(rep["seconds"].as_f64().is_some_and(|s| s >= 0.0), "{rec:#}");
        assert_eq!(
            strings(&rep["output_tail"]),
            [
                "6",
                "7",
                "8",
                "9",
                &format!("swapped {}", rec["step"].as_str().unwrap())
            ],
            "{rec:#}"
        );
        // A directory has no driver to name: no version, so no warning either.
        assert_eq!(rec["driver_version_after"], Value::Null, "{rec:#}");
        assert_eq!(rec["takeover"]["ok"], true, "{rec:#}");
    }
}
