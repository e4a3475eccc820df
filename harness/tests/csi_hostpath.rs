//! `pvcheck run` on the real CSI hostpath driver (kubernetes-csi/csi-driver-host-path), started
//! by pvcheck itself: every check passes (or is ignored with a stated reason) in filesystem and
//! block mode, and bad input gets one line. Skipped with one line without the driver or root.

mod csi_support;

use std::os::unix::process::CommandExt;
use std::path::Path;

use csi_support::{Scratch, class, hostpath, hostpath_argv, run};

fn statuses(r: &csi_support::Run) -> Vec<(String, String, String)> {
    r.trials()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap_or_default().to_string(),
                t["status"].as_str().unwrap_or_default().to_string(),
                t["failure"]["message"]
                    .as_str()
                    .or(t["ignored_reason"].as_str())
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

/// The promise of issue 11: a healthy driver passes every check pvcheck can run on it, data
/// and protocol alike, and the upgrade restarts the node plugin under a published volume.
#[test]
fn hostpath_in_filesystem_mode_passes_every_check() {
    let Some(hp) = hostpath("hostpath_in_filesystem_mode_passes_every_check") else {
        return;
    };
    let s = Scratch::new("fs");
    let argv = hostpath_argv(&hp, "{endpoint}");
    let cmd: Vec<String> = argv.iter().map(|a| format!("{a:?}")).collect();
    // hostpath's mount volumes are directories on the node's filesystem: they have no size of
    // their own to grow, so `expand` (which checks the size seen from inside) is off; the
    // csi::controller_expand_volume and csi::node_expand_volume checks still make the calls.
    let yaml = format!(
        "classes:\n{}    capabilities: {{ snapshot: true, clone: true }}\n    upgrade:\n      csi: {{ command: [{}] }}\n      rollback: true\n",
        class("hostpath", &argv, "mount", ""),
        cmd.join(", ")
    );
    let r = run(&s, &yaml, &["--skip", "speed::", "hostpath::"], &[]);
    let st = statuses(&r);
    let failed: Vec<_> = st.iter().filter(|(_, s, _)| s == "failed").collect();
    assert!(
        failed.is_empty(),
        "failed trials: {failed:#?}\nstderr: {}",
        r.stderr
    );
    r.assert_exit(0);
    for must in [
        "hostpath::integrity::recreate",
        "hostpath::integrity::durability",
        "hostpath::integrity::upgrade",
        "hostpath::snapshot",
        "hostpath::clone",
        "hostpath::csi::create_volume",
        "hostpath::csi::node_publish_volume",
        "hostpath::csi::node_unpublish_volume",
        "hostpath::csi::create_snapshot",
        "hostpath::cleanup",
    ] {
        assert_eq!(r.trial(must)["status"], "passed", "{must}: {st:#?}");
    }
    // Ignored only with a reason.
    for (name, status, why) in &st {
        if status == "ignored" {
            assert!(!why.is_empty(), "{name} ignored without a reason");
        }
    }
    // The class parameters in the result name the driver command, never a secret value.
    let driver_name = hp.file_name().unwrap().to_string_lossy().to_string();
    assert!(
        r.result
            .as_ref()
            .unwrap()
            .to_string()
            .contains(&driver_name)
    );
    s.assert_nothing_left();
}

/// Block mode: the protocol checks publish a raw block device (a loop device the driver
/// makes), and every data check that needs no filesystem runs the agent with `--device` on
/// it; the three that need one (durability's log file, the self-test's directory, metadata
/// rates) are ignored with that reason, never silently.
#[test]
fn hostpath_in_block_mode_passes_every_check_on_the_raw_device() {
    let Some(hp) = hostpath("hostpath_in_block_mode_passes_every_check_on_the_raw_device") else {
        return;
    };
    let s = Scratch::new("block");
    let argv = hostpath_argv(&hp, "{endpoint}");
    let cmd: Vec<String> = argv.iter().map(|a| format!("{a:?}")).collect();
    let yaml = format!(
        "classes:\n{}    capabilities: {{ block: true, snapshot: true, clone: true, expansion: true }}\n    upgrade:\n      csi: {{ command: [{}] }}\n",
        class("hpblock", &argv, "block", ""),
        cmd.join(", ")
    );
    let r = run(
        &s,
        &yaml,
        &["hpblock::", "--skip", "speed::", "--skip", "csi::"],
        &[],
    );
    let st = statuses(&r);
    let failed: Vec<_> = st.iter().filter(|(_, s, _)| s == "failed").collect();
    assert!(
        failed.is_empty(),
        "failed trials: {failed:#?}\nstderr: {}",
        r.stderr
    );
    for must in [
        "hpblock::provision",
        "hpblock::integrity::recreate",
        "hpblock::integrity::upgrade",
        "hpblock::expand",
        "hpblock::snapshot",
        "hpblock::clone",
        "hpblock::cleanup",
    ] {
        assert_eq!(r.trial(must)["status"], "passed", "{must}: {st:#?}");
    }
    for ignored in [
        "hpblock::integrity::durability",
        "hpblock::integrity::selftest",
    ] {
        let t = r.trial(ignored);
        assert_eq!(t["status"], "ignored", "{ignored}: {t:#}");
        let why = t["ignored_reason"].as_str().unwrap_or_default();
        assert!(why.contains("raw block volume"), "{ignored}: {why}");
    }
    // The data went through the device: the recreate trial's verify read a device, not files.
    let recreate = r.trial("hpblock::integrity::recreate").to_string();
    assert!(!recreate.contains("pvcheck-data/"), "{recreate}");
    s.assert_nothing_left();
}

/// The protocol checks in block mode, and one speed workload on the raw device.
#[test]
fn hostpath_in_block_mode_passes_the_protocol_checks_and_measures_the_device() {
    let Some(hp) =
        hostpath("hostpath_in_block_mode_passes_the_protocol_checks_and_measures_the_device")
    else {
        return;
    };
    let s = Scratch::new("blockproto");
    let yaml = format!(
        "classes:\n{}    capabilities: {{ block: true }}\n",
        class("hpblock", &hostpath_argv(&hp, "{endpoint}"), "block", "")
    );
    let r = run(
        &s,
        &yaml,
        &[
            "hpblock::",
            "--skip",
            "integrity::",
            "--skip",
            "qd64",
            "--skip",
            "randwrite",
            "--skip",
            "read-1m",
            "--skip",
            "write-1m",
            "--skip",
            "randrw",
            "--skip",
            "fsync",
        ],
        &[],
    );
    let st = statuses(&r);
    let failed: Vec<_> = st.iter().filter(|(_, s, _)| s == "failed").collect();
    assert!(failed.is_empty(), "failed trials: {failed:#?}");
    assert_eq!(
        r.trial("hpblock::csi::node_publish_volume")["status"],
        "passed"
    );
    assert_eq!(
        r.trial("hpblock::speed::randread-4k-qd1")["status"],
        "passed",
        "{st:#?}"
    );
    let metadata = r.trial("hpblock::speed::metadata");
    assert_eq!(metadata["status"], "ignored", "{metadata:#}");
    s.assert_nothing_left();
}

/// A driver pvcheck does not own (`endpoint:`: systemd or a DaemonSet runs it) is upgraded by
/// the class's `upgrade.command`, which restarts it on the same socket. The socket is gone for
/// a moment: pvcheck waits for Probe ready (start_timeout) instead of failing the unstage that
/// follows with "cannot reach the driver", then verifies the data.
#[test]
fn an_upgrade_command_that_restarts_an_external_driver_is_waited_for() {
    let test = "an_upgrade_command_that_restarts_an_external_driver_is_waited_for";
    let Some(hp) = hostpath(test) else {
        return;
    };
    let s = Scratch::new("extupgrade");
    let sock = s.root.join("csi.sock");
    let pidfile = s.root.join("driver.pid");
    let log = s.root.join("driver.log");
    let args = format!(
        "--endpoint=unix://{} --nodeid=n1 --statedir={}/driver --drivername=hostpath.csi.k8s.io",
        sock.display(),
        s.root.display()
    );
    // In a process group of its own, as a service manager starts a driver (sharing the test's
    // group, a SIGTERM reached pvcheck during the upgrade in the full suite; see the note in
    // docs/csi.md).
    let mut v1 = std::process::Command::new("/bin/sh")
        .process_group(0)
        .arg("-c")
        .arg(format!(
            "exec {} {args} --version-tag=v1 >>{} 2>&1",
            hp.display(),
            log.display()
        ))
        .spawn()
        .unwrap();
    std::fs::write(&pidfile, v1.id().to_string()).unwrap();
    let t0 = std::time::Instant::now();
    while !sock.exists() && t0.elapsed() < std::time::Duration::from_secs(20) {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // The upgrade: stop the driver, leave the socket missing for a second, start v2 in a
    // session of its own (as a service manager would: pvcheck ends what its commands leave
    // running in their own process group), and return once v2 is in its own session, not once
    // it listens: pvcheck must wait for Probe ready. Returning at once raced: pvcheck ended the
    // command's process group before the forked child had called setsid(), so v2 died unborn
    // on a loaded machine (seen in a full scripts/test-all beside a fuzz run).
    let restart = s.root.join("restart.sh");
    std::fs::write(
        &restart,
        format!(
            "#!/bin/sh\nkill $(cat {pid}); sleep 1; rm -f {sock}\nsleep 1\nsetsid {hp} {args} --version-tag=v2 >>{log} 2>&1 &\necho $! >{pid}\nme=$(cut -d' ' -f6 /proc/$$/stat)\nwhile [ \"$(cut -d' ' -f6 /proc/$!/stat 2>/dev/null)\" = \"$me\" ]; do sleep 0.02; done\n",
            pid = pidfile.display(),
            sock = sock.display(),
            hp = hp.display(),
            log = log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &restart,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let yaml = format!(
        "classes:\n  - name: ext\n    local:\n      csi:\n        endpoint: unix://{}\n        access_type: mount\n        fs_type: ext4\n    upgrade:\n      command: {}\n",
        sock.display(),
        restart.display()
    );
    let r = run(&s, &yaml, &["ext::integrity::upgrade", "--exact"], &[]);
    let pid = std::fs::read_to_string(&pidfile).unwrap_or_default();
    let _ = std::process::Command::new("kill").arg(pid.trim()).status();
    // v1 was stopped by the upgrade (or is stopped here if the upgrade never ran): reap it.
    let _ = v1.kill();
    let _ = v1.wait();
    let driver_log = std::fs::read_to_string(&log).unwrap_or_default();
    let t = r.trial("ext::integrity::upgrade");
    assert_eq!(
        t["status"], "passed",
        "{t:#}\nstderr: {}\ndriver log: {driver_log}",
        r.stderr
    );
    assert!(
        driver_log.contains("(version 0.1.0+v2,"),
        "the upgrade did not restart the driver: {driver_log}"
    );
    std::thread::sleep(std::time::Duration::from_millis(500));
    s.assert_nothing_left();
}

fn one_line_exit_2(r: &csi_support::Run, want: &[&str]) {
    r.assert_exit(2);
    let lines: Vec<&str> = r.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line expected: {}", r.stderr);
    for w in want {
        assert!(lines[0].contains(w), "{w:?} not in {:?}", lines[0]);
    }
}

/// Bad input: configuration errors are one line naming the file, line and field, exit 2, and
/// nothing is created.
#[test]
fn bad_csi_classes_get_one_line_and_exit_2() {
    if !nix::unistd::geteuid().is_root() {
        println!("bad_csi_classes_get_one_line_and_exit_2: skipped: needs root");
        return;
    }
    let s = Scratch::new("badcfg");
    let head = "classes:\n  - name: bad\n    local:\n      csi:\n";
    let missing = s.root.join("no-such.sock");
    let r = run(
        &s,
        &format!("{head}        endpoint: unix://{}\n", missing.display()),
        &[],
        &[],
    );
    one_line_exit_2(
        &r,
        &[
            "classes.yaml:5",
            "classes[0].local.csi.endpoint",
            "no-such.sock",
            "No such file",
        ],
    );
    let file = s.root.join("plain-file");
    std::fs::write(&file, "x").unwrap();
    let r = run(
        &s,
        &format!("{head}        endpoint: unix://{}\n", file.display()),
        &[],
        &[],
    );
    one_line_exit_2(&r, &["classes.yaml:5", "is not a unix socket"]);
    let r = run(
        &s,
        &format!(
            "{head}        endpoint: unix://{}\n        command: [/bin/true, \"{{endpoint}}\"]\n",
            file.display()
        ),
        &[],
        &[],
    );
    one_line_exit_2(&r, &["classes.yaml:5", "either `endpoint`", "not both"]);
    let r = run(
        &s,
        &format!("{head}        command: [/bin/true]\n"),
        &[],
        &[],
    );
    one_line_exit_2(&r, &["classes.yaml:5", "local.csi.command", "{endpoint}"]);
    let r = run(
        &s,
        &format!("{head}        command: [./nope, \"{{endpoint}}\"]\n"),
        &[],
        &[],
    );
    one_line_exit_2(&r, &["classes.yaml:5", "nope"]);
    let r = run(
        &s,
        &format!(
            "{head}        command: [/bin/true, \"{{endpoint}}\"]\n        acces_type: block\n"
        ),
        &[],
        &[],
    );
    one_line_exit_2(&r, &["classes.yaml:6", "acces_type"]);
    assert!(
        !s.root.join("results").exists(),
        "a configuration error created results"
    );
    s.assert_nothing_left();
}

/// A command that exits at once, and a "driver" that answers garbage or nothing: a failed
/// trial with one first line naming the class, its file and line, and the cause; nothing left.
#[test]
fn broken_drivers_fail_their_trials_with_one_line_and_leave_nothing() {
    if !nix::unistd::geteuid().is_root() {
        println!(
            "broken_drivers_fail_their_trials_with_one_line_and_leave_nothing: skipped: needs root"
        );
        return;
    }
    let s = Scratch::new("broken");
    let script = s.root.join("exits.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\necho 'flag provided but not defined: -x' >&2\nexit 3\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let yaml = format!(
        "classes:\n  - name: quits\n    local:\n      csi:\n        command: [{}, \"--endpoint={{endpoint}}\"]\n",
        script.display()
    );
    let r = run(&s, &yaml, &["quits::provision", "--exact"], &[]);
    r.assert_exit(1);
    let m = r.message("quits::provision");
    let first = m.lines().next().unwrap_or_default();
    assert!(first.contains("class quits ("), "{first}");
    assert!(first.contains("classes.yaml:2)"), "{first}");
    assert!(first.contains("exited at once (exit 3)"), "{first}");
    assert!(first.contains("flag provided but not defined"), "{first}");

    // A socket that accepts and writes garbage, and one that accepts and never answers.
    for (name, reply) in [
        ("garbage", Some(b"HTTP/1.0 200 OK\r\n\r\nhello".as_slice())),
        ("silent", None),
    ] {
        let dir = s.root.join("keep");
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join(format!("{name}.sock"));
        let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let reply = reply.map(<[u8]>::to_vec);
        std::thread::spawn(move || {
            use std::io::Write;
            let mut held = Vec::new();
            for c in listener.incoming().flatten() {
                let mut c = c;
                if let Some(r) = &reply {
                    let _ = c.write_all(r);
                } else {
                    held.push(c);
                }
            }
        });
        let yaml = format!(
            "classes:\n  - name: {name}\n    local:\n      csi:\n        endpoint: unix://{}\n        call_timeout: 2s\n",
            sock.display()
        );
        let r = run(&s, &yaml, &[&format!("{name}::csi::probe"), "--exact"], &[]);
        r.assert_exit(1);
        let first = r.message(&format!("{name}::csi::probe"));
        let first = first.lines().next().unwrap_or_default().to_string();
        assert!(first.starts_with(&format!("class {name} (")), "{first}");
        if name == "silent" {
            assert!(first.contains("Probe: no answer within 2.0s"), "{first}");
        } else {
            assert!(first.contains("Probe"), "{first}");
        }
    }
    s.assert_nothing_left();
    let _ = Path::new("/");
}
