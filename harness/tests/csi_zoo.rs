//! The CSI fault zoo (harness/tests/fixtures/csi-zoo): the hostpath driver behind a proxy
//! that injects one fault. Each fault must be caught by the right trial, with the right kind
//! and, for data faults, the file and offset the zoo says it damaged. Skipped with one line
//! without the hostpath driver or root.

mod csi_support;

use csi_support::{Run, Scratch, class, hostpath, run, zoo_argv};
use serde_json::Value;

/// Runs the trials `filter` of class `z` (the zoo with `fault`, upgraded to `upgrade_fault`).
fn zoo_run(
    test: &str,
    fault: &str,
    upgrade_fault: Option<&str>,
    filter: &[&str],
) -> Option<(Scratch, Run, String)> {
    let hp = hostpath(test)?;
    let s = Scratch::new(test);
    let mut extra = String::new();
    if let Some(u) = upgrade_fault {
        let argv: Vec<String> = zoo_argv(&hp, u).iter().map(|a| format!("{a:?}")).collect();
        extra = format!(
            "    upgrade:\n      csi: {{ command: [{}] }}\n",
            argv.join(", ")
        );
    }
    let mut c = class("z", &zoo_argv(&hp, fault), "mount", "");
    // A hanging call must fail fast.
    c = c.replace(
        "call_timeout: 20s",
        if fault == "hang" {
            "call_timeout: 3s"
        } else {
            "call_timeout: 20s"
        },
    );
    let yaml = format!("classes:\n{c}{extra}");
    let log = s.root.join("zoo.log");
    let mut args = vec!["--test-threads", "1"];
    args.extend_from_slice(filter);
    let r = run(&s, &yaml, &args, &[("PVCHECK_CSI_ZOO_LOG", &log)]);
    let zlog = std::fs::read_to_string(&log).unwrap_or_default();
    Some((s, r, zlog))
}

/// `<fault> file=F offset=O kind=K` from the zoo's log.
fn injected(zlog: &str, fault: &str) -> (String, u64, String) {
    let line = zlog
        .lines()
        .find(|l| l.starts_with(fault) && l.contains("offset="))
        .unwrap_or_else(|| panic!("the zoo injected no {fault}: {zlog}"));
    let field = |k: &str| {
        line.split(' ')
            .find_map(|w| w.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("{k} in {line}"))
            .to_string()
    };
    (
        field("file"),
        field("offset").parse().unwrap(),
        field("kind"),
    )
}

/// The damage list of a failed integrity trial: (kind, file, offset).
fn damage(t: &Value) -> Vec<(String, String, u64)> {
    t["failure"]["details"]["damage"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|d| {
            (
                d["kind"].as_str().unwrap_or_default().to_string(),
                d["file"].as_str().unwrap_or_default().to_string(),
                d["offset"].as_u64().unwrap_or(u64::MAX),
            )
        })
        .collect()
}

fn assert_failed_with(r: &Run, trial: &str, want: &[&str]) {
    let t = r.trial(trial);
    assert_eq!(t["status"], "failed", "{trial}: {t:#}");
    let m = r.message(trial);
    for w in want {
        assert!(m.contains(w), "{trial}: {w:?} not in:\n{m}");
    }
}

#[test]
fn zoo_publish_without_mount_fails_node_publish_and_the_data_trials() {
    let Some((s, r, _)) = zoo_run(
        "nomount",
        "publish-without-mount",
        None,
        &["z::csi::node_publish_volume", "--exact"],
    ) else {
        return;
    };
    assert_failed_with(
        &r,
        "z::csi::node_publish_volume",
        &["class z (", "is not a mount point"],
    );
    s.assert_nothing_left();
    drop(s);
    let Some((s, r, _)) = zoo_run(
        "nomount2",
        "publish-without-mount",
        None,
        &["z::integrity::recreate", "--exact"],
    ) else {
        return;
    };
    assert_failed_with(&r, "z::integrity::recreate", &["is not a mount point"]);
    s.assert_nothing_left();
}

#[test]
fn zoo_lost_writes_at_unstage_fail_recreate_at_the_damaged_block() {
    let Some((s, r, zlog)) = zoo_run(
        "lose",
        "lose-writes-at-unstage",
        None,
        &["z::integrity::recreate", "--exact"],
    ) else {
        return;
    };
    let (file, offset, kind) = injected(&zlog, "lose-writes-at-unstage");
    let t = r.trial("z::integrity::recreate");
    assert_eq!(t["status"], "failed", "{t:#}\n{zlog}");
    let d = damage(t);
    assert!(
        d.iter()
            .any(|(k, f, o)| *k == kind && f.ends_with(&file) && *o == offset),
        "the zoo damaged {file} at {offset} ({kind}); pvcheck found {d:?}"
    );
    s.assert_nothing_left();
}

#[test]
fn zoo_bitflip_on_upgrade_fails_upgrade_with_corrupt_at_the_flipped_block() {
    let Some((s, r, zlog)) = zoo_run(
        "flip",
        "none",
        Some("bitflip-on-upgrade"),
        &["z::integrity::upgrade", "--exact"],
    ) else {
        return;
    };
    let (file, offset, kind) = injected(&zlog, "bitflip-on-upgrade");
    assert_eq!(kind, "corrupt");
    let t = r.trial("z::integrity::upgrade");
    assert_eq!(t["status"], "failed", "{t:#}\n{zlog}");
    let d = damage(t);
    assert!(
        d.iter()
            .any(|(k, f, o)| k == "corrupt" && f.ends_with(&file) && *o == offset),
        "the zoo flipped a bit in {file} at {offset}; pvcheck found {d:?}"
    );
    assert!(
        r.message("z::integrity::upgrade")
            .contains("verify after upgrade")
    );
    s.assert_nothing_left();
}

#[test]
fn zoo_ok_for_notfound_fails_the_calls_that_must_answer_notfound() {
    let Some((s, r, _)) = zoo_run("notfound", "ok-for-notfound", None, &["z::csi::"]) else {
        return;
    };
    for call in [
        "node_unpublish_volume",
        "node_get_volume_stats",
        "node_stage_volume",
    ] {
        assert_failed_with(
            &r,
            &format!("z::csi::{call}"),
            &[
                "answered OK to",
                "unknown volume id",
                "the spec requires NotFound",
            ],
        );
    }
    // Calls without a NotFound case are not blamed.
    assert_eq!(r.trial("z::csi::create_volume")["status"], "passed");
    s.assert_nothing_left();
}

#[test]
fn zoo_create_not_idempotent_fails_create_volume() {
    let Some((s, r, _)) = zoo_run(
        "createtwice",
        "create-not-idempotent",
        None,
        &["z::csi::create_volume", "--exact"],
    ) else {
        return;
    };
    assert_failed_with(
        &r,
        "z::csi::create_volume",
        &["the same CreateVolume again gave volume", "not idempotent"],
    );
    s.assert_nothing_left();
}

#[test]
fn zoo_publish_not_idempotent_fails_node_publish_with_stacked_mounts() {
    let Some((s, r, _)) = zoo_run(
        "publishtwice",
        "publish-not-idempotent",
        None,
        &["z::csi::node_publish_volume", "--exact"],
    ) else {
        return;
    };
    assert_failed_with(&r, "z::csi::node_publish_volume", &["mounts stacked on it"]);
    s.assert_nothing_left();
}

#[test]
fn zoo_hang_fails_node_publish_with_a_timeout_and_leaves_no_process() {
    let Some((s, r, _)) = zoo_run(
        "hang",
        "hang",
        None,
        &["z::csi::node_publish_volume", "--exact"],
    ) else {
        return;
    };
    assert_failed_with(
        &r,
        "z::csi::node_publish_volume",
        &["NodePublishVolume: no answer within 3.0s"],
    );
    s.assert_nothing_left();
}

/// Issue 23, item 5: a driver that stops answering NodePublishVolume made every trial of the
/// class wait its own `call_timeout` in turn (ten minutes for a run). The first trial that meets
/// it fails as `timeout`; the class's remaining trials fail at once as `timeout`, saying when
/// the driver stopped answering and that they were not retried; `cleanup` still runs.
#[test]
fn a_hung_driver_fails_the_class_s_remaining_trials_at_once_as_timeout() {
    let Some((s, r, _)) = zoo_run(
        "hung-class",
        "hang",
        None,
        &["z::", "--skip", "speed", "--skip", "csi::"],
    ) else {
        return;
    };
    let trials = r.result.as_ref().expect("a result file")["trials"]
        .as_array()
        .unwrap()
        .clone();
    let ran: Vec<&Value> = trials
        .iter()
        .filter(|t| t["status"] != "ignored" && t["check"] != "cleanup")
        .collect();
    assert!(
        ran.len() >= 4,
        "too few trials to prove anything: {trials:#?}"
    );
    let first = ran[0];
    assert_eq!(first["failure"]["category"], "timeout", "{first:#}");
    assert!(
        first["failure"]["message"]
            .as_str()
            .unwrap()
            .contains("no answer within 3.0s"),
        "{first:#}"
    );
    for t in &ran[1..] {
        assert_eq!(t["status"], "failed", "{t:#}");
        assert_eq!(t["failure"]["category"], "timeout", "{t:#}");
        let m = t["failure"]["message"].as_str().unwrap();
        assert!(
            m.contains("the driver stopped answering at") && m.contains("not retried"),
            "{m}"
        );
        assert!(t["duration_s"].as_f64().unwrap() < 1.0, "{t:#}");
    }
    // One deadline waited for, not one per trial.
    let rest: f64 = ran[1..]
        .iter()
        .map(|t| t["duration_s"].as_f64().unwrap())
        .sum();
    assert!(rest < 3.0, "the other trials took {rest:.1}s in all");
    r.assert_exit(1);
    s.assert_nothing_left();
}

/// Block mode is not blind: the driver restarted by the upgrade with its own
/// `bitflip-on-start` fault flips one bit of the raw device inside the dataset (through the loop
/// device, under the published volume), and `integrity::upgrade` names that block of the
/// device as `corrupt`.
#[test]
fn bitflip_on_upgrade_in_block_mode_fails_upgrade_at_the_flipped_block_of_the_device() {
    let test = "bitflip_on_upgrade_in_block_mode";
    let Some(hp) = hostpath(test) else {
        return;
    };
    let s = Scratch::new("blockflip");
    let flips = s.root.join("driver-faults.log");
    // The upgraded driver is the same binary with the fault on; its stderr (where it says what
    // it flipped) also goes to a file of the test's.
    let upgraded = format!(
        "exec {} --endpoint={{endpoint}} --nodeid={{node_id}} --statedir={{state_dir}}/hostpath --drivername=hostpath.csi.k8s.io --fault=bitflip-on-start --flip-at=12345678 2>>{}",
        hp.display(),
        flips.display()
    );
    let yaml = format!(
        "classes:\n{}    capabilities: {{ block: true }}\n    upgrade:\n      csi: {{ command: [/bin/sh, -c, {upgraded:?}] }}\n",
        class(
            "zb",
            &csi_support::hostpath_argv(&hp, "{endpoint}"),
            "block",
            ""
        ),
    );
    let r = run(&s, &yaml, &["zb::integrity::upgrade", "--exact"], &[]);
    let log = std::fs::read_to_string(&flips).unwrap_or_default();
    // "FAULT bitflip-on-start: volume V file /dev/loopN offset O: flipped bit 0"
    let offset: u64 = log
        .lines()
        .find(|l| l.contains("bitflip-on-start") && l.contains("flipped"))
        .and_then(|l| l.split("offset ").nth(1))
        .and_then(|rest| rest.split(':').next())
        .and_then(|o| o.trim().parse().ok())
        .unwrap_or_else(|| panic!("the driver flipped nothing: {log}\n{}", r.stderr));
    let t = r.trial("zb::integrity::upgrade");
    assert_eq!(t["status"], "failed", "driver log: {log}\ntrial: {t:#}");
    let d = damage(t);
    let block = offset / 4096 * 4096;
    assert!(
        d.iter().any(|(k, _, o)| k == "corrupt" && *o == block),
        "the driver flipped a bit of the device at {offset} (block {block}); pvcheck found {d:?}"
    );
    s.assert_nothing_left();
}
