//! Issue 20, item 2 on the local platform's flexVolume kind: `integrity::live-upgrade` swaps
//! the driver executable under the plugin directory (as kubelet sees a DaemonSet install a new
//! release) while the agent streams fsync-acknowledged records into the mounted volume, then
//! the recreated pod makes the NEW driver tear down and set up the volume the old one mounted.
//! `disruption::node-plugin-kill` SIGKILLs what the driver left running for the volume (a FUSE
//! daemon) and is ignored, with that reason, where it left nothing.
//!
//! The sample loop driver (v1 → v2 and back) passes with every record verified; a release that
//! no longer recognises the old release's mounts fails `upgrade` naming the volume; a release
//! whose init zeroes a block under the mounted filesystem fails `data` naming the record. With
//! `pvcheck-test-csi` (its FUSE passthrough daemon): a FUSE flexVolume driver's daemon survives
//! the swap (pass), and its SIGKILL kills the mount (ENOTCONN, `upgrade`). Root is required, as
//! for every flexVolume test; nothing is left mounted, attached or running.

mod csi_support;
mod flexvolume_support;

use std::path::{Path, PathBuf};

use csi_support::{Run, assert_all_verified, run_in};
use flexvolume_support::Scratch;

/// A flexVolume class `name` over `driver` (with `options`), upgraded to `upgrade`.
fn class(name: &str, driver: &Path, options: &str, upgrade: &Path, rollback: bool) -> String {
    format!(
        "  - name: {name}\n    local:\n      flexvolume:\n        driver: {}\n        fs_type: ext4\n        options: {{ {options} }}\n    upgrade:\n      driver: {}\n      rollback: {rollback}\n",
        driver.display(),
        upgrade.display()
    )
}

/// `pvcheck run` on `classes`, one trial at a time; nothing may be left mounted, attached or
/// running afterwards.
fn run(s: &Scratch, classes: &str, filter: &[&str]) -> Run {
    let mut args = vec!["--test-threads", "1", "--verbose"];
    args.extend_from_slice(filter);
    let r = run_in(&s.root, &format!("classes:\n{classes}"), &args, &[]);
    assert!(
        r.result.is_some(),
        "no result file; stdout: {}\nstderr: {}",
        r.stdout,
        r.stderr
    );
    s.assert_nothing_left();
    assert_eq!(
        processes_naming(&s.root),
        Vec::<String>::new(),
        "processes left running"
    );
    r
}

/// Live processes whose command line names a path under `root`.
fn processes_naming(root: &Path) -> Vec<String> {
    let root = root.display().to_string();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if e.file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
            .is_none()
        {
            continue;
        }
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains(&root) {
            out.push(format!("{}: {cmd}", e.file_name().to_string_lossy()));
        }
    }
    out
}

/// The sample loop driver, v1 → v2 and back while the agent writes: no error, no stall, every
/// acknowledged record verified over the surviving mount and after the recreate by the new
/// driver; each window is the executable swap answered by `init`. The driver leaves no process
/// for the volume, so `node-plugin-kill` has nothing to kill and says so (ignored, not passed).
#[test]
fn the_sample_driver_upgraded_under_a_writer_loses_nothing_and_the_kill_is_ignored_with_the_reason()
{
    let s = Scratch::new("live-sample");
    let v1 = s.sample("flexvolume/loop/v1/loop");
    let v2 = s.sample("flexvolume/loop/v2/loop");
    let r = run(
        &s,
        &class("ok", &v1, "size: 256MiB", &v2, true),
        &["integrity::live-upgrade", "disruption::node-plugin-kill"],
    );
    r.assert_exit(0);
    let t = r.trial("ok::integrity::live-upgrade");
    assert_eq!(t["status"], "passed", "{t:#}");
    let m = r.live("ok::integrity::live-upgrade");
    assert_all_verified(&m);
    assert_eq!(m["errors_by_kind"], serde_json::json!({}), "{m:#}");
    let windows = m["windows"].as_array().unwrap();
    let steps: Vec<&str> = windows
        .iter()
        .map(|w| w["what"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["upgrade", "rollback"], "{m:#}");
    for w in windows {
        assert_eq!(w["report"]["driver_swap"], "flexvolume", "{w:#}");
        assert_eq!(w["report"]["in_place"], true, "{w:#}");
        assert!(w["old_driver_gone_s"].as_f64().is_some(), "{w:#}");
    }
    assert!(
        windows[0]["report"]["from"]
            .as_str()
            .unwrap()
            .starts_with("pvcheck-loop 1.0.0")
            && windows[0]["report"]["to"]
                .as_str()
                .unwrap()
                .starts_with("pvcheck-loop 2.0.0"),
        "{m:#}"
    );
    println!(
        "flexVolume live-upgrade (sample loop v1 → v2 → v1): {:.1} s, {} acknowledged records verified twice",
        t["duration_s"].as_f64().unwrap_or(0.0),
        m["records_acknowledged"]
    );
    let k = r.trial("ok::disruption::node-plugin-kill");
    assert_eq!(k["status"], "ignored", "{k:#}");
    let why = k["ignored_reason"].as_str().unwrap_or_default();
    assert!(
        why.contains("left no process running for volume")
            && why.contains("no driver process to kill"),
        "{why}"
    );
}

/// A new release that keeps a record of its own mounts and refuses to unmount one it has no
/// record of: the streaming survives the swap, but the recreate (the new driver tearing down
/// the volume the old one mounted) fails, as category `upgrade`, naming the volume made before
/// the upgrade and the driver's refusal.
#[test]
fn a_release_that_does_not_recognise_the_old_mounts_fails_live_upgrade_as_upgrade_naming_the_volume()
 {
    let s = Scratch::new("live-forgets");
    let v1 = s.sample("flexvolume/loop/v1/loop");
    let bad = s.zoo("forgets-old-mounts");
    let r = run(
        &s,
        &class("forgets", &v1, "size: 256MiB", &bad, false),
        &["integrity::live-upgrade"],
    );
    let trial = "forgets::integrity::live-upgrade";
    r.assert_exit(1);
    assert_eq!(r.category(trial), "upgrade", "{:#}", r.trial(trial));
    let msg = r.message(trial);
    println!("{trial}: {msg}");
    assert!(
        msg.contains("recreating the pod of volume")
            && msg.contains("after the driver was replaced"),
        "{msg}"
    );
    assert!(msg.contains("unmountdevice"), "{msg}");
    assert!(
        msg.contains("was not mounted by pvcheck-loop 2.0.0 (no record of it)"),
        "{msg}"
    );
}

/// A new release whose `init` zeroes a block of each of its mounted volumes, under the live
/// filesystem: the acknowledged record there is lost, and the check fails `data`, naming the
/// record, its file and offset, and the upgrade window.
#[test]
fn a_release_whose_init_zeroes_a_block_under_the_writer_fails_live_upgrade_as_data_naming_the_record()
 {
    let s = Scratch::new("live-zero");
    let v1 = s.sample("flexvolume/loop/v1/loop");
    let bad = s.zoo("zero-on-init");
    let r = run(
        &s,
        &class("zero", &v1, "size: 256MiB", &bad, false),
        &["integrity::live-upgrade"],
    );
    let trial = "zero::integrity::live-upgrade";
    r.assert_exit(1);
    assert_eq!(r.category(trial), "data", "{:#}", r.trial(trial));
    let msg = r.message(trial);
    println!("{trial}: {msg}");
    assert!(msg.contains("window: the upgrade (step upgrade)"), "{msg}");
    assert!(
        msg.contains(
            "first damaged acknowledged record: 1 (live-1/pvcheck-durability.log offset 4096)"
        ),
        "{msg}"
    );
}

/// `pvcheck-test-csi` (found as every CSI test finds it), whose `fuse-daemon` serves the FUSE
/// flexVolume driver's mounts; None (one line) without it or without /dev/fuse.
fn fuse_daemon(test: &str) -> Option<PathBuf> {
    if !Path::new("/dev/fuse").exists() {
        println!("{test}: skipped: needs /dev/fuse");
        return None;
    }
    csi_support::hostpath(test)
}

/// A flexVolume driver whose mount is served by a FUSE daemon it leaves running (as blobfuse-
/// and s3fs-based drivers do). The executable swap leaves the daemon serving: live-upgrade
/// passes with every record verified, and the report lists the daemon before and after. The
/// SIGKILL of that daemon kills the mount under the writer (kubelet restarts nothing): the check
/// fails `upgrade`, naming ENOTCONN and the killed daemon's window; the recreate mounts again.
#[test]
fn a_fuse_daemon_left_by_the_driver_survives_the_swap_and_its_sigkill_fails_with_enotconn() {
    let test =
        "a_fuse_daemon_left_by_the_driver_survives_the_swap_and_its_sigkill_fails_with_enotconn";
    let Some(daemon) = fuse_daemon(test) else {
        return;
    };
    let s = Scratch::new("live-fuse");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/flexvolume-fuse/fuse");
    let text = std::fs::read_to_string(&fixture).unwrap();
    let v1 = s.script_named("v1", "fuse", &text);
    let v2 = s.script_named(
        "v2",
        "fuse",
        &text.replace("pvcheck-fuse 1.0.0", "pvcheck-fuse 1.0.1"),
    );
    let r = run(
        &s,
        &class(
            "fuse",
            &v1,
            &format!("daemon: {}", daemon.display()),
            &v2,
            true,
        ),
        &["integrity::live-upgrade", "disruption::node-plugin-kill"],
    );
    r.assert_exit(1);
    let up = "fuse::integrity::live-upgrade";
    assert_eq!(r.trial(up)["status"], "passed", "{:#}", r.trial(up));
    let m = r.live(up);
    assert_all_verified(&m);
    let w = &m["windows"][0]["report"];
    assert_eq!(
        w["processes_left_for_the_volume_before"], w["processes_left_for_the_volume_after"],
        "{w:#}"
    );
    let left = w["processes_left_for_the_volume_before"]
        .as_array()
        .unwrap();
    assert_eq!(left.len(), 1, "{w:#}");
    assert!(
        left[0]["cmdline"].as_str().unwrap().contains("fuse-daemon"),
        "{w:#}"
    );

    let kill = "fuse::disruption::node-plugin-kill";
    assert_eq!(r.category(kill), "upgrade", "{:#}", r.trial(kill));
    let msg = r.message(kill);
    println!("{kill}: {msg}\n{}", r.stdout);
    assert!(msg.contains("ENOTCONN"), "{msg}");
    assert!(
        msg.contains("the SIGKILL of what the driver left running for the volume (pid "),
        "{msg}"
    );
    let m = r.live(kill);
    assert_eq!(m["usable_after"], false, "{m:#}");
    // The recreate's new daemon serves every acknowledged record again.
    assert_eq!(
        m["records_verified_after_recreate"], m["records_acknowledged"],
        "{m:#}"
    );
}

/// A flexVolume class upgraded by its `upgrade.command` (no driver swap of pvcheck's): the
/// command runs while the agent writes, each step's window is recorded, and every record is
/// verified in place and after the recreate.
#[test]
fn a_flexvolume_class_upgraded_by_its_command_runs_it_under_the_writer() {
    let s = Scratch::new("live-command");
    let v1 = s.sample("flexvolume/loop/v1/loop");
    let yaml = format!(
        "  - name: cmd\n    local:\n      flexvolume:\n        driver: {}\n        fs_type: ext4\n        options: {{ size: 256MiB }}\n    upgrade:\n      command: 'sleep 0.5'\n",
        v1.display()
    );
    let r = run(&s, &yaml, &["integrity::live-upgrade"]);
    r.assert_exit(0);
    let m = r.live("cmd::integrity::live-upgrade");
    assert_all_verified(&m);
    let steps: Vec<&str> = m["windows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["what"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["upgrade", "upgrade-after-rewrite"], "{m:#}");
    assert!(
        m["windows"][0]["seconds"].as_f64().unwrap_or(0.0) >= 0.5,
        "{m:#}"
    );
}
