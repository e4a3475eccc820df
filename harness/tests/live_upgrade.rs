//! Issue 20, items 2 and 3 on the local platform: `integrity::live-upgrade` replaces the CSI
//! node plugin while the agent streams fsync-acknowledged records into the published volume,
//! and `disruption::node-plugin-kill` SIGKILLs it and starts it again. The healthy test driver
//! passes both; an upgrade that loses acknowledged records fails `data` naming the record; a
//! mount that breaks under the writer fails `upgrade` naming the errno and the window, and
//! passes when the class declares `upgrade.drain: true`. Local platform: `pvcheck-test-csi`
//! (skipped with one line without it or root). Nothing is left mounted or running.

mod csi_support;

use csi_support::{Scratch, assert_all_verified, class, hostpath, hostpath_argv, run};

/// A class over the test driver tagged `v1` with `driver_args` appended, upgraded with
/// `upgrade` (YAML lines under `upgrade:`).
fn live_class(name: &str, hp: &std::path::Path, driver_args: &[&str], upgrade: &str) -> String {
    let mut argv = hostpath_argv(hp, "{endpoint}");
    argv.push("--version-tag=v1".into());
    argv.extend(driver_args.iter().map(|a| a.to_string()));
    class(name, &argv, "mount", &format!("    upgrade:\n{upgrade}"))
}

/// `upgrade.csi`: the same driver tagged `v2` (with `driver_args`).
fn csi_upgrade(hp: &std::path::Path, driver_args: &[&str], extra: &str) -> String {
    let mut up = hostpath_argv(hp, "{endpoint}");
    up.push("--version-tag=v2".into());
    up.extend(driver_args.iter().map(|a| a.to_string()));
    let up: Vec<String> = up.iter().map(|a| format!("{a:?}")).collect();
    format!("      csi: {{ command: [{}] }}\n{extra}", up.join(", "))
}

/// The healthy driver: the upgrade (v1 → v2, and the rollback) rolls under the writing agent
/// without an error, a stall or a lost record; the SIGKILLed plugin comes back, the volume is
/// usable and staged and published exactly once.
#[test]
fn a_healthy_driver_loses_nothing_when_upgraded_or_killed_under_a_writer() {
    let test = "a_healthy_driver_loses_nothing_when_upgraded_or_killed_under_a_writer";
    let Some(hp) = hostpath(test) else {
        return;
    };
    let s = Scratch::new("live-ok");
    let yaml = format!(
        "classes:\n{}",
        live_class(
            "ok",
            &hp,
            &[],
            &csi_upgrade(&hp, &[], "      rollback: true\n")
        ),
    );
    let r = run(
        &s,
        &yaml,
        &[
            "--verbose",
            "integrity::live-upgrade",
            "disruption::node-plugin-kill",
        ],
        &[],
    );
    r.assert_exit(0);
    for trial in [
        "ok::integrity::live-upgrade",
        "ok::disruption::node-plugin-kill",
    ] {
        assert_eq!(r.trial(trial)["status"], "passed", "{:#}", r.trial(trial));
        let m = r.live(trial);
        assert_all_verified(&m);
        assert_eq!(m["errors_by_kind"], serde_json::json!({}), "{m:#}");
        assert!(m["longest_stall_seconds"].as_f64().unwrap_or(99.0) < 30.0);
    }
    let m = r.live("ok::integrity::live-upgrade");
    let steps: Vec<&str> = m["windows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["what"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(steps, ["upgrade", "rollback"], "{m:#}");
    for w in m["windows"].as_array().unwrap() {
        assert!(w["old_driver_gone_s"].as_f64().is_some(), "{w:#}");
        assert!(
            w["new_driver_answered_s"].as_f64() >= w["began_s"].as_f64(),
            "{w:#}"
        );
    }
    // Staged and published once each after the kill and after the recreate; no orphan.
    let m = r.live("ok::disruption::node-plugin-kill");
    assert_eq!(m["usable_after"], true, "{m:#}");
    let mounts = m["mounts"].as_array().unwrap();
    assert_eq!(mounts.len(), 2, "{m:#}");
    for at in mounts {
        let counts = at["counts"].as_array().unwrap();
        let roles: Vec<&str> = counts.iter().map(|c| c["role"].as_str().unwrap()).collect();
        assert_eq!(roles, ["staging", "published"], "{at:#}");
        assert!(counts.iter().all(|c| c["found"] == 1), "{at:#}");
    }
    // The table says what the window was.
    assert!(r.stdout.contains("live-upgrade:"), "{}", r.stdout);
    s.assert_nothing_left();
}

/// An upgrade that puts the log back to an older, shorter state while the agent writes (as a
/// restarted driver that rewinds a volume's files would): acknowledged records are gone, and
/// the check fails `data`, naming the record's file and offset and the window.
#[test]
fn an_upgrade_that_drops_acknowledged_records_fails_data_naming_the_record() {
    let test = "an_upgrade_that_drops_acknowledged_records_fails_data_naming_the_record";
    let Some(hp) = hostpath(test) else {
        return;
    };
    let s = Scratch::new("live-lost");
    let lose =
        "      command: 'truncate -s 8192 \"$PVCHECK_VOLUME_DIR/live-1/pvcheck-durability.log\"'\n";
    let yaml = format!("classes:\n{}", live_class("lost", &hp, &[], lose));
    let r = run(&s, &yaml, &["integrity::live-upgrade"], &[]);
    let trial = "lost::integrity::live-upgrade";
    r.assert_exit(1);
    assert_eq!(r.category(trial), "data", "{:#}", r.trial(trial));
    let msg = r.message(trial);
    // Record 2 (at 8 KiB) is the first one the truncation took.
    assert!(
        msg.contains("live-1/pvcheck-durability.log")
            || msg.contains("pvcheck-durability.log offset 8192"),
        "{msg}"
    );
    assert!(msg.contains("offset 8192"), "{msg}");
    assert!(msg.contains("window: the upgrade (step upgrade)"), "{msg}");
    s.assert_nothing_left();
}

/// An upgrade that damages the volume and then fails (its command exits 3 after truncating
/// the agent's log, as a half-run migration script might): the failed upgrade does not hide
/// the loss. The records acknowledged before it are verified over the mount that is left, and
/// the check fails `data` naming the first lost record, with the upgrade's own failure after.
#[test]
fn an_upgrade_that_fails_after_dropping_acknowledged_records_still_fails_data() {
    let test = "an_upgrade_that_fails_after_dropping_acknowledged_records_still_fails_data";
    let Some(hp) = hostpath(test) else {
        return;
    };
    let s = Scratch::new("live-lost-failed");
    let lose = "      command: 'truncate -s 8192 \"$PVCHECK_VOLUME_DIR/live-1/pvcheck-durability.log\"; echo migration half done >&2; exit 3'\n";
    let yaml = format!("classes:\n{}", live_class("lostfailed", &hp, &[], lose));
    let r = run(&s, &yaml, &["integrity::live-upgrade"], &[]);
    let trial = "lostfailed::integrity::live-upgrade";
    r.assert_exit(1);
    assert_eq!(r.category(trial), "data", "{:#}", r.trial(trial));
    let msg = r.message(trial);
    assert!(msg.contains("over the surviving mount"), "{msg}");
    assert!(msg.contains("offset 8192"), "{msg}");
    assert!(msg.contains("(the check then stopped: "), "{msg}");
    assert!(msg.contains("upgrade step \"upgrade\""), "{msg}");
    s.assert_nothing_left();
}

/// A mount that vanishes under the writing pod during the upgrade (lazily unmounted, as a
/// restarted node agent that cleans up "orphaned" mounts does, kubernetes#121937): the pod's
/// path now leads to an empty directory. It fails `upgrade`, naming ENOENT and when in the
/// window it came; with `upgrade.drain: true` the stream is stopped and the volume unpublished
/// first, so the same upgrade finds nothing to break and passes with no loss.
#[test]
fn a_mount_that_vanishes_under_the_writer_during_the_upgrade_fails_upgrade_unless_drained() {
    let test =
        "a_mount_that_vanishes_under_the_writer_during_the_upgrade_fails_upgrade_unless_drained";
    let Some(hp) = hostpath(test) else {
        return;
    };
    let s = Scratch::new("live-gone");
    // Only a published volume is hurt: drained, the command finds nothing mounted.
    let gone = "      command: 'umount -l \"$PVCHECK_VOLUME_DIR\" 2>/dev/null && sleep 2; true'\n";
    let yaml = format!(
        "classes:\n{}{}",
        live_class("gone", &hp, &[], gone),
        live_class("drained", &hp, &[], &format!("{gone}      drain: true\n")),
    );
    let r = run(&s, &yaml, &["--verbose", "integrity::live-upgrade"], &[]);
    r.assert_exit(1);
    let trial = "gone::integrity::live-upgrade";
    assert_eq!(r.category(trial), "upgrade", "{:#}", r.trial(trial));
    let msg = r.message(trial);
    assert!(msg.contains("the mount answered ENOENT"), "{msg}");
    assert!(msg.contains("of the upgrade (step upgrade)"), "{msg}");
    let m = r.live(trial);
    assert!(
        m["errors_by_kind"]["ENOENT"]["count"].as_u64() > Some(0),
        "{m:#}"
    );
    // Nothing lost: the records are there once the volume is published again.
    let acked = m["records_acknowledged"].as_u64().unwrap_or(0);
    assert!(acked > 0, "{m:#}");
    assert_eq!(
        m["records_verified_after_recreate"].as_u64(),
        Some(acked),
        "{m:#}"
    );

    let trial = "drained::integrity::live-upgrade";
    assert_eq!(r.trial(trial)["status"], "passed", "{:#}", r.trial(trial));
    let m = r.live(trial);
    assert_eq!(m["drain"], true);
    assert_eq!(m["errors_by_kind"], serde_json::json!({}), "{m:#}");
    assert_all_verified(&m);
    s.assert_nothing_left();
}

/// A node plugin that does not come back after the SIGKILL fails the check (`upgrade`, naming
/// the kill), and leaves nothing behind.
#[test]
fn a_plugin_that_does_not_come_back_after_a_kill_fails_naming_the_kill() {
    let test = "a_plugin_that_does_not_come_back_after_a_kill_fails_naming_the_kill";
    let Some(hp) = hostpath(test) else {
        return;
    };
    let s = Scratch::new("live-dead");
    // A wrapper that starts the driver the first time only.
    let wrapper = s.root.join("once.sh");
    let marker = s.root.join("started-once");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nif [ -e {m} ]; then echo 'refusing to start again' >&2; exit 3; fi\ntouch {m}\nexec \"$@\"\n",
            m = marker.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut argv = vec![wrapper.display().to_string()];
    argv.extend(hostpath_argv(&hp, "{endpoint}"));
    let yaml = format!("classes:\n{}", class("dead", &argv, "mount", ""));
    let r = run(&s, &yaml, &["disruption::node-plugin-kill"], &[]);
    let trial = "dead::disruption::node-plugin-kill";
    r.assert_exit(1);
    assert_eq!(r.category(trial), "upgrade", "{:#}", r.trial(trial));
    let msg = r.message(trial);
    assert!(msg.contains("SIGKILL and restart"), "{msg}");
    assert!(msg.contains("refusing to start again"), "{msg}");
    // The mount outlived the plugin: what was acknowledged is verified over it all the same.
    assert!(
        msg.contains("acknowledged record(s) were verified over the mount(s) that survived the failed replacement: none was lost"),
        "{msg}"
    );
    s.assert_nothing_left();
}

/// Issue 20's FUSE bug (ceph-csi cephfs-fuse, blobfuse, datashim, juicefs before mount pods):
/// the FUSE mount is served by the node plugin's process (`--data-path fuse-inside`), so the
/// upgrade kills every mount under the running pod. It fails `upgrade`, naming ENOTCONN and the
/// window; drained (`upgrade.drain: true`: the pod leaves first), the same driver passes.
#[test]
fn a_fuse_mount_served_inside_the_plugin_dies_with_the_upgrade_enotconn_unless_drained() {
    let test =
        "a_fuse_mount_served_inside_the_plugin_dies_with_the_upgrade_enotconn_unless_drained";
    let Some(hp) = hostpath(test) else {
        return;
    };
    if !std::path::Path::new("/dev/fuse").exists() {
        println!("{test}: skipped: no /dev/fuse");
        return;
    }
    let s = Scratch::new("live-fuse-in");
    let fuse = ["--data-path=fuse-inside"];
    let yaml = format!(
        "classes:\n{}{}",
        live_class("fusein", &hp, &fuse, &csi_upgrade(&hp, &fuse, "")),
        live_class(
            "fusedrained",
            &hp,
            &fuse,
            &csi_upgrade(&hp, &fuse, "      drain: true\n")
        ),
    );
    let r = run(&s, &yaml, &["--verbose", "integrity::live-upgrade"], &[]);
    r.assert_exit(1);
    let trial = "fusein::integrity::live-upgrade";
    assert_eq!(r.category(trial), "upgrade", "{:#}", r.trial(trial));
    let msg = r.message(trial);
    assert!(
        msg.contains("of the upgrade (step upgrade"),
        "the window is named: {msg}"
    );
    assert!(
        msg.contains("the mount answered ENOTCONN: transport endpoint is not connected"),
        "{msg}"
    );
    let m = r.live(trial);
    assert!(
        m["errors_by_kind"]["ENOTCONN"]["count"].as_u64() > Some(0),
        "{m:#}"
    );
    // The data is there once the new driver publishes again: not a data failure.
    let acked = m["records_acknowledged"].as_u64().unwrap_or(0);
    assert!(acked > 0, "{m:#}");
    assert_eq!(
        m["records_verified_after_recreate"].as_u64(),
        Some(acked),
        "{m:#}"
    );

    let trial = "fusedrained::integrity::live-upgrade";
    assert_eq!(r.trial(trial)["status"], "passed", "{:#}", r.trial(trial));
    let m = r.live(trial);
    assert_eq!(m["errors_by_kind"], serde_json::json!({}), "{m:#}");
    assert_all_verified(&m);
    s.assert_nothing_left();
}

/// The drivers that fixed it serve FUSE from a daemon of its own (`--data-path fuse-outside`):
/// the mount outlives the plugin, and the live upgrade and the plugin kill pass.
#[test]
fn a_fuse_mount_served_outside_the_plugin_survives_the_upgrade_and_the_kill() {
    let test = "a_fuse_mount_served_outside_the_plugin_survives_the_upgrade_and_the_kill";
    let Some(hp) = hostpath(test) else {
        return;
    };
    if !std::path::Path::new("/dev/fuse").exists() {
        println!("{test}: skipped: no /dev/fuse");
        return;
    }
    let s = Scratch::new("live-fuse-out");
    let fuse = ["--data-path=fuse-outside"];
    let yaml = format!(
        "classes:\n{}",
        live_class("fuseout", &hp, &fuse, &csi_upgrade(&hp, &fuse, "")),
    );
    let r = run(
        &s,
        &yaml,
        &[
            "--verbose",
            "integrity::live-upgrade",
            "disruption::node-plugin-kill",
        ],
        &[],
    );
    r.assert_exit(0);
    for trial in [
        "fuseout::integrity::live-upgrade",
        "fuseout::disruption::node-plugin-kill",
    ] {
        let m = r.live(trial);
        assert_eq!(m["errors_by_kind"], serde_json::json!({}), "{m:#}");
        assert_all_verified(&m);
    }
    s.assert_nothing_left();
}

/// A release that acknowledges writes and drops them when its plugin restarts
/// (`--lose-acked-writes-on-restart`, a write-back cache in the plugin): the live upgrade fails
/// `data`, naming the lost record's file and offset and the window.
#[test]
fn a_driver_that_drops_acknowledged_writes_on_restart_fails_live_upgrade_as_data() {
    let test = "a_driver_that_drops_acknowledged_writes_on_restart_fails_live_upgrade_as_data";
    let Some(hp) = hostpath(test) else {
        return;
    };
    let s = Scratch::new("live-lose");
    let lose = ["--lose-acked-writes-on-restart"];
    let yaml = format!(
        "classes:\n{}",
        live_class("lose", &hp, &lose, &csi_upgrade(&hp, &lose, "")),
    );
    let r = run(&s, &yaml, &["integrity::live-upgrade"], &[]);
    r.assert_exit(1);
    let trial = "lose::integrity::live-upgrade";
    assert_eq!(r.category(trial), "data", "{:#}", r.trial(trial));
    let msg = r.message(trial);
    // The log was cut to nothing: record 0 at offset 0 is the first one lost.
    assert!(msg.contains("pvcheck-durability.log offset 0"), "{msg}");
    assert!(
        msg.contains(
            "first damaged acknowledged record: 0 (live-1/pvcheck-durability.log offset 0)"
        ),
        "{msg}"
    );
    assert!(msg.contains("window: the upgrade (step upgrade)"), "{msg}");
    s.assert_nothing_left();
}
