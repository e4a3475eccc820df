//! Issue 15: what a new user meets on the first day. One test per finding, named after it,
//! end to end through the `pvcheck` binary where the finding came from a real command.

mod common;

use common::{Env, assert_exit, fixtures, last_two, require_root, stderr, stdout, trial};
use serde_json::Value;

/// Exit 2, one line on stderr, nothing created, no result file: what every "knowable before
/// the run" refusal must look like. Returns the line.
fn refused_before_the_run(env: &Env, args: &[&str]) -> String {
    let out = env.run(args);
    let err = stderr(&out);
    assert_eq!(
        out.status.code(),
        Some(2),
        "stdout: {}\nstderr: {err}",
        stdout(&out)
    );
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line, got: {err}");
    assert!(
        env.leftovers().is_empty(),
        "created something: {:?}",
        env.leftovers()
    );
    assert!(
        !env.results.path().join("runs").exists(),
        "wrote a result file"
    );
    lines[0].to_string()
}

// 1. A run that lost its result file exited 0.

#[test]
fn finding_1_results_that_is_a_file_is_refused_before_anything_is_created() {
    let env = Env::new();
    let afile = env.scratch.path().join("afile");
    std::fs::write(&afile, "").unwrap();
    let out = std::process::Command::new(common::PVCHECK)
        .args(["run", "tmpfs::provision", "--state-dir"])
        .arg(env.state.path())
        .arg("--results")
        .arg(&afile)
        .output()
        .unwrap();
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(
        err.contains("--results") && err.contains("not a directory"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(env.leftovers().is_empty(), "{:?}", env.leftovers());
}

/// The result file's place turns unusable during the run (an upgrade command puts a file
/// where `runs/` goes): the run must not exit 0, and its last line says there is no result.
#[test]
fn finding_1_a_run_whose_result_file_cannot_be_written_does_not_exit_0() {
    let env = Env::new();
    let f = env.dir_class(
        "up",
        r#"    upgrade: { command: 'touch "$RESULTS_DIR/runs"' }"#,
    );
    let out = env
        .run_cmd(&["--classes", &f, "--exact", "up::integrity::upgrade"])
        .env("RESULTS_DIR", env.results.path())
        .output()
        .unwrap();
    assert_exit(&out, 5);
    let (verdict, last) = last_two(&out);
    assert!(
        verdict.contains("no result file") && verdict.contains("exit 5"),
        "{verdict}"
    );
    assert!(last.starts_with("pvcheck: NO result file"), "{last}");
    assert!(env.leftovers().is_empty(), "{:?}", env.leftovers());
}

// 2. `expand` said ok for what it did not test.

/// Without CAP_SYS_RESOURCE ext4 refuses online growth; the check grows it offline and must
/// say so as a warning in the table, the terse output and the result, and fail under --strict.
#[test]
fn finding_2_offline_expansion_is_a_warning_and_strict_fails_it() {
    require_root();
    let without_cap = |env: &Env, extra: &[&str]| {
        let c = env.run_cmd(&[&["--exact", "ext4-loop::expand"], extra].concat());
        let mut s = std::process::Command::new("setpriv");
        s.args([
            "--bounding-set",
            "-sys_resource",
            "--inh-caps",
            "-sys_resource",
            "--",
        ])
        .arg(c.get_program())
        .args(c.get_args());
        for (k, v) in c.get_envs() {
            match v {
                Some(v) => s.env(k, v),
                None => s.env_remove(k),
            };
        }
        s.output().unwrap()
    };
    let env = Env::new();
    // --verbose: the table of a class that passed (issue 23 keeps it behind the flag).
    let out = without_cap(&env, &["--verbose"]);
    assert_exit(&out, 0);
    let so = stdout(&out);
    assert!(
        so.contains("ok, 1 warning") && so.contains("grown offline"),
        "{so}"
    );
    let r = env.result();
    let t = trial(&r, "ext4-loop::expand");
    assert_eq!(t["status"], "passed");
    let w = t["warnings"].as_array().unwrap();
    assert!(
        w.iter().any(|w| w.as_str().unwrap().contains("offline")),
        "{t}"
    );
    assert_eq!(r["summary"]["with_warnings"], 1);

    let env = Env::new();
    let out = without_cap(&env, &["-q"]);
    assert!(
        stdout(&out).contains("warning (expand): grown offline"),
        "{}",
        stdout(&out)
    );

    let env = Env::new();
    let out = without_cap(&env, &["--strict"]);
    assert_exit(&out, 4);
    let r = env.result();
    let t = trial(&r, "ext4-loop::expand");
    assert_eq!(t["status"], "failed");
    assert_eq!(t["failure"]["details"]["strict"], true);
    assert!(env.leftovers().is_empty(), "{:?}", env.leftovers());
}

// 3. Setup problems were reported as data loss.

#[test]
fn finding_3_a_bad_mount_option_is_a_setup_failure_not_data_loss() {
    require_root();
    let env = Env::new();
    let f = env.write("bad.yaml",
        "classes:\n  - name: my-ext4\n    local: { loop: { fs: ext4, size: 256MiB, mount_options: [bogus] } }\n",
    );
    let out = env.run(&["--classes", &f, "--skip", "speed", "--skip", "durability"]);
    assert_exit(&out, 1);
    let so = stdout(&out);
    assert!(
        !so.contains("integrity FAILED"),
        "a setup problem read as damaged data:\n{so}"
    );
    assert!(
        so.contains("my-ext4: FAILED, not a data problem: setup failure"),
        "{so}"
    );
    assert!(so.contains("FAILED (setup)"), "{so}");
    let r = env.result();
    for name in ["my-ext4::provision", "my-ext4::integrity::recreate"] {
        let t = trial(&r, name);
        assert_eq!(t["failure"]["category"], "setup", "{t}");
    }
    assert_eq!(r["summary"]["failed_by_category"]["setup"], 3);
    assert_eq!(r["summary"]["failed_by_category"]["data"], 0);
    assert!(env.leftovers().is_empty(), "{:?}", env.leftovers());
}

/// The other side: real damage is `data`, and only it says "integrity FAILED".
#[test]
fn finding_3_damaged_data_is_the_data_category_and_says_integrity_failed() {
    require_root();
    let env = Env::new();
    let classes = fixtures().join("upgrade/flip-byte.yaml");
    let out = env.run(&[
        "--classes",
        classes.to_str().unwrap(),
        "--exact",
        "flip-byte::integrity::upgrade",
    ]);
    assert_exit(&out, 1);
    assert!(
        stdout(&out).contains("flip-byte: integrity FAILED (data damaged): integrity::upgrade"),
        "{}",
        stdout(&out)
    );
    let r = env.result();
    assert_eq!(
        trial(&r, "flip-byte::integrity::upgrade")["failure"]["category"],
        "data"
    );
    let (verdict, _) = last_two(&out);
    assert!(
        verdict.contains("FAILED, DATA DAMAGED") && verdict.contains("1 data"),
        "{verdict}"
    );
}

#[test]
fn finding_3_a_failing_upgrade_command_is_a_setup_failure() {
    let env = Env::new();
    let f = env.dir_class("up", r#"    upgrade: { command: 'exit 3' }"#);
    let out = env.run(&["--classes", &f, "--exact", "up::integrity::upgrade"]);
    assert_exit(&out, 1);
    assert!(
        !stdout(&out).contains("integrity FAILED"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        trial(&env.result(), "up::integrity::upgrade")["failure"]["category"],
        "setup"
    );
}

// 4. Problems knowable before the run are found before the run.

#[test]
fn finding_4_a_missing_upgrade_script_is_refused_before_the_run() {
    let env = Env::new();
    let f = env.write("c.yaml",
        "classes:\n  - name: up\n    local: { dir: /tmp }\n    upgrade: { command: ./no-such-upgrade.sh }\n",
    );
    let line = refused_before_the_run(&env, &["--classes", &f, "up::"]);
    assert!(
        line.contains(&format!("{f}:2"))
            && line.contains("upgrade.command")
            && line.contains("does not exist"),
        "{line}"
    );
}

#[test]
fn finding_4_a_non_executable_upgrade_script_is_refused_before_the_run() {
    let env = Env::new();
    let script = fixtures().join("first-day/not-executable.sh");
    let f = env.write(
        "c.yaml",
        &format!(
            "classes:\n  - name: up\n    local: {{ dir: /tmp }}\n    upgrade: {{ command: {} }}\n",
            script.display()
        ),
    );
    let line = refused_before_the_run(&env, &["--classes", &f, "up::"]);
    assert!(
        line.contains("is not executable") && line.contains("chmod +x"),
        "{line}"
    );
}

#[test]
fn finding_4_a_class_smaller_than_the_profile_needs_is_refused_before_the_run() {
    let env = Env::new();
    let line = refused_before_the_run(&env, &["--profile", "standard", "ext4-loop::"]);
    assert!(
        line.contains("class ext4-loop is 512 MiB; profile standard needs")
            && line.contains("for speed: enlarge the class, or use --speed-size"),
        "{line}"
    );
    // Without the speed trials (and provision, which asks for the largest volume), the
    // integrity dataset (1 GiB) is what does not fit.
    let line = refused_before_the_run(
        &env,
        &[
            "--profile",
            "standard",
            "ext4-loop::",
            "--skip",
            "speed",
            "--skip",
            "provision",
        ],
    );
    assert!(line.contains("for integrity"), "{line}");
}

#[test]
fn finding_4_a_zero_timeout_is_refused() {
    let env = Env::new();
    let f = env.write(
        "c.yaml",
        "classes:\n  - name: a\n    local: { dir: /tmp }\n    timeouts: { provision: 0s }\n",
    );
    let line = refused_before_the_run(&env, &["--classes", &f]);
    assert!(
        line.contains(&format!("{f}:2"))
            && line.contains("timeouts.provision")
            && line.contains("positive duration"),
        "{line}"
    );
}

// 6. Speed numbers that flatter.

#[test]
fn finding_6_speed_warnings_are_in_the_table_and_quick_samples_fill_its_run() {
    let env = Env::new();
    let out = env.run(&[
        "--exact",
        "tmpfs::speed::randread-4k-qd1",
        "--speed-size",
        "16MiB",
        "--verbose",
    ]);
    assert_exit(&out, 0);
    let r = env.result();
    let t = trial(&r, "tmpfs::speed::randread-4k-qd1");
    let bench = &t["metrics"]["bench"];
    // --speed-size reached the agent.
    assert_eq!(bench["job"]["size"], 16u64 << 20, "{bench}");
    // The quick profile's 1 s fills its sampling interval: cv is measured.
    assert!(
        bench["iops_samples"].as_array().unwrap().len() >= 5,
        "{}",
        bench["iops_samples"]
    );
    assert!(!bench["cv"].is_null());
    let warnings: Vec<&str> = t["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert!(
        !warnings
            .iter()
            .any(|w| w.contains("fewer than 2 IOPS samples")),
        "{warnings:?}"
    );
    // 16 MiB in tmpfs is served from memory: the agent's warning is the trial's, in the table.
    assert!(
        warnings.iter().any(|w| w.contains("caches may flatter")),
        "{warnings:?}"
    );
    let so = stdout(&out);
    assert!(
        so.contains("ok, 1 warning") && so.contains("caches may flatter"),
        "{so}"
    );
}

/// Loop classes attach with the loop driver's direct I/O where the backing filesystem allows
/// it, and the fingerprint says whether it did.
#[test]
fn finding_6_loop_classes_use_direct_io_and_record_it() {
    require_root();
    let env = Env::new();
    let out = env.run(&["--exact", "ext4-loop::provision"]);
    assert_exit(&out, 0);
    let r = env.result();
    let vol = &r["environment"]["classes"]["ext4-loop"]["volume"];
    let backing_takes_odirect = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags_direct(env.state.path());
    assert_eq!(
        vol["direct_io"],
        Value::from(backing_takes_odirect),
        "{vol}"
    );

    // On a filesystem that refuses direct I/O (ramfs) the loop device is attached buffered,
    // the fingerprint says so, and the speed figures carry the warning.
    let ram = env.scratch.path().join("ramfs");
    std::fs::create_dir(&ram).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "ramfs", "ramfs"])
        .arg(&ram)
        .status()
        .unwrap();
    assert!(mounted.success());
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(ram.clone());
    let env = Env::new();
    let f = env.write("ram.yaml",
        &format!(
            "classes:\n  - name: ram\n    local: {{ loop: {{ fs: ext4, size: 256MiB, image_dir: {} }} }}\n",
            ram.display()
        ),
    );
    let out = env.run(&[
        "--classes",
        &f,
        "--exact",
        "ram::speed::randread-4k-qd1",
        "--speed-size",
        "16MiB",
    ]);
    assert_exit(&out, 0);
    let r = env.result();
    assert_eq!(
        r["environment"]["classes"]["ram"]["volume"]["direct_io"],
        false
    );
    let t = trial(&r, "ram::speed::randread-4k-qd1");
    assert!(
        t["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w.as_str().unwrap().contains("could not use direct I/O")),
        "{t}"
    );
    assert!(env.leftovers().is_empty(), "{:?}", env.leftovers());
}

trait DirectProbe {
    fn custom_flags_direct(&mut self, dir: &std::path::Path) -> bool;
}

impl DirectProbe for std::fs::OpenOptions {
    /// Whether the filesystem holding `dir` accepts O_DIRECT (the loop driver needs it).
    fn custom_flags_direct(&mut self, dir: &std::path::Path) -> bool {
        use std::os::unix::fs::OpenOptionsExt;
        let p = dir.join("odirect-probe");
        std::fs::write(&p, vec![0u8; 4096]).unwrap();
        let ok = self.custom_flags(libc::O_DIRECT).open(&p).is_ok();
        let _ = std::fs::remove_file(&p);
        ok
    }
}

// 7. Seeds and ids did not survive common JSON tools.

#[test]
fn finding_7_seeds_and_volume_ids_survive_a_double_precision_reader() {
    const MAX: u64 = (1 << 53) - 1;
    let env = Env::new();
    // An upgrade that zeroes a data file: the failure details carry the seed and volume id.
    let f = env.dir_class(
        "z",
        r#"    upgrade: { command: '[ "$PVCHECK_UPGRADE_STEP" = upgrade ] || exit 0; f=$(find "$PVCHECK_VOLUME_DIR/pvcheck-data" -type f | sort | head -n 1); dd if=/dev/zero of="$f" bs=4096 count=1 conv=notrunc status=none' }"#,
    );
    let out = env.run(&["--classes", &f, "--exact", "z::integrity::upgrade"]);
    assert_exit(&out, 1);
    let text = std::fs::read_to_string(
        std::fs::read_dir(env.results.path().join("runs"))
            .unwrap()
            .flatten()
            .next()
            .unwrap()
            .path(),
    )
    .unwrap();
    let r: Value = serde_json::from_str(&text).unwrap();
    assert!(r["seed"].as_u64().unwrap() <= MAX, "{}", r["seed"]);
    let d = &trial(&r, "z::integrity::upgrade")["failure"]["details"];
    for k in ["seed", "agent_volume_id"] {
        assert!(d[k].as_u64().is_some_and(|v| v <= MAX), "{k}: {}", d[k]);
    }
    // What jq would read is what was written: every integer named seed or *volume_id is exact
    // as a double.
    fn walk(v: &Value, path: &str) {
        match v {
            Value::Object(o) => o.iter().for_each(|(k, v)| {
                if (k == "seed" || k.ends_with("volume_id")) && v.is_u64() {
                    let n = v.as_u64().unwrap();
                    assert_eq!(
                        n as f64 as u64, n,
                        "{path}.{k} = {n} does not survive a double"
                    );
                }
                walk(v, &format!("{path}.{k}"));
            }),
            Value::Array(a) => a.iter().for_each(|v| walk(v, path)),
            _ => {}
        }
    }
    walk(&r, "");
    // A seed copied back is accepted; one above 2^53 is refused with one line.
    let env = Env::new();
    let out = env.run(&["--seed", "9007199254740992", "--list"]);
    assert_exit(&out, 2);
    // The agent still takes any u64 it is given by hand.
    let dir = env.scratch.path().join("agent");
    std::fs::create_dir(&dir).unwrap();
    let out = std::process::Command::new(common::PVCHECK)
        .args([
            "agent",
            "write",
            "--size",
            "64KiB",
            "--seed",
            "18446744073709551615",
            "--volume-id",
            "18446744073709551615",
            "--dir",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    assert_exit(&out, 0);
}

// 8. What a dashboard needs.

#[test]
fn finding_8_the_result_file_has_what_a_dashboard_needs() {
    let env = Env::new();
    let out = env.run(&["tmpfs::", "--skip", "speed", "--test-threads", "4"]);
    assert_exit(&out, 0);
    let r = env.result();
    assert_eq!(r["exit_code"], 0);
    let argv: Vec<&str> = r["command_line"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(
        argv.contains(&"tmpfs::") && argv.contains(&"--skip"),
        "{argv:?}"
    );
    let sel = &r["selection"];
    assert_eq!(sel["filter"], "tmpfs::");
    assert_eq!(sel["skip"][0], "speed");
    assert_eq!(
        sel["complete"], false,
        "a filtered run must not look complete: {sel}"
    );
    assert!(sel["planned"].as_u64() > sel["selected"].as_u64());
    let s = &r["summary"];
    assert_eq!(s["total"], 15);
    assert_eq!(s["passed"], 5);
    // snapshot, clone, upgrade, live-upgrade, expand and rwx: capability or section off;
    // other-node: one machine; node-plugin-kill: not a csi class; kubelet-restart and
    // pod-deleted-while-kubelet-down: no kubelet
    assert_eq!(s["ignored"], 10);
    assert_eq!(s["failed"], 0);
    assert_eq!(s["failed_by_category"]["data"], 0);
    // Trials in plan order, each with its start time.
    let names: Vec<&str> = r["trials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    let list = env.run(&["tmpfs::", "--skip", "speed", "--list"]);
    // `--list` marks the trials that will be ignored (`NAME: test (ignored: reason)`).
    let listed: Vec<String> = stdout(&list)
        .lines()
        .filter_map(|l| l.split_once(": test").map(|(name, _)| name.to_string()))
        .collect();
    assert_eq!(names, listed);
    for t in r["trials"].as_array().unwrap() {
        assert!(
            t["started"]
                .as_str()
                .is_some_and(|s| s.ends_with('Z') && s.contains('.')),
            "{t}"
        );
        assert!(t["warnings"].is_array());
    }
    // Only the classes that ran; the volume fingerprint of a defined trial; options once each.
    let classes = r["environment"]["classes"].as_object().unwrap();
    assert_eq!(classes.keys().collect::<Vec<_>>(), ["tmpfs"]);
    assert_eq!(classes["tmpfs"]["volume_from"], "tmpfs::provision");
    let opts = classes["tmpfs"]["volume"]["mount_options"]
        .as_str()
        .unwrap();
    let each: Vec<&str> = opts.split(',').collect();
    let mut unique = each.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(each.len(), unique.len(), "duplicate mount options: {opts}");
}

#[test]
fn finding_8_the_result_file_matches_its_json_schema() {
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/results.schema.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    // A passing run, and a failing one (a failure object, categories, details).
    let env = Env::new();
    env.run(&["tmpfs::", "--skip", "speed"]);
    let env2 = Env::new();
    let f = env2.dir_class("up", r#"    upgrade: { command: 'exit 3' }"#);
    env2.run(&["--classes", &f, "up::"]);
    for r in [env.result(), env2.result()] {
        let errors: Vec<String> = validator
            .iter_errors(&r)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{errors:#?}");
    }
    // The schema is not vacuous: a trial without `warnings` or with a made-up category fails.
    let mut bad = env2.result();
    bad["trials"][0].as_object_mut().unwrap().remove("warnings");
    assert!(!validator.is_valid(&bad));
    let mut bad = env2.result();
    let t = bad["trials"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|t| t["status"] == "failed")
        .unwrap();
    t["failure"]["category"] = "oops".into();
    assert!(!validator.is_valid(&bad));
}

#[test]
fn finding_8_ignored_events_in_json_carry_their_reason() {
    let env = Env::new();
    let out = env.run(&["--exact", "tmpfs::snapshot", "--format", "json"]);
    // Only an ignored trial ran: nothing was tested (exit 6, issue 23 item 1).
    assert_exit(&out, 6);
    let ev: Vec<Value> = stdout(&out)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let ignored = ev
        .iter()
        .find(|e| e["event"] == "ignored" && e["name"] == "tmpfs::snapshot")
        .unwrap_or_else(|| panic!("{}", stdout(&out)));
    assert!(
        ignored["message"]
            .as_str()
            .unwrap()
            .contains("capability `snapshot` is off"),
        "{ignored}"
    );
}

// 9. Output that ends with the answer.

#[test]
fn finding_9_the_last_lines_are_the_verdict_then_the_result_path() {
    let env = Env::new();
    let out = env.run(&["tmpfs::", "--skip", "speed"]);
    let (verdict, last) = last_two(&out);
    assert!(
        verdict.starts_with("pvcheck: PASSED: 5 passed, 10 ignored"),
        "{verdict}"
    );
    assert!(
        verdict.contains("exit 0: every selected check passed"),
        "{verdict}"
    );
    assert!(
        last.starts_with("pvcheck: results in ") && last.ends_with(".json"),
        "{last}"
    );
}

#[test]
fn finding_9_terse_keeps_a_one_line_speed_summary_per_class() {
    let env = Env::new();
    let out = env.run(&[
        "tmpfs::speed::",
        "--format",
        "terse",
        "--speed-size",
        "16MiB",
    ]);
    assert_exit(&out, 0);
    let so = stdout(&out);
    let line = so
        .lines()
        .find(|l| l.starts_with("tmpfs speed: "))
        .unwrap_or_else(|| panic!("{so}"));
    assert!(
        line.contains("randread-4k-qd64") && line.contains("IOPS") && line.contains("MiB/s"),
        "{line}"
    );
    assert!(
        line.contains("metadata") && line.contains("ops/s"),
        "{line}"
    );
    assert!(
        line.contains("fsync-latency") && line.contains("fdatasync"),
        "{line}"
    );
}

/// A bad mount option fails every trial of the class alike: the table prints the error once
/// with a count, and quotes the kernel's explanation where the kernel log is readable.
#[test]
fn finding_9_a_repeated_mount_error_is_printed_once_with_a_count_and_the_kernels_reason() {
    require_root();
    let env = Env::new();
    let f = env.write("bad.yaml",
        "classes:\n  - name: my-ext4\n    local: { loop: { fs: ext4, size: 256MiB, mount_options: [bogus] } }\n",
    );
    let out = env.run(&["--classes", &f, "--skip", "speed", "--test-threads", "1"]);
    let so = stdout(&out);
    let errors: Vec<&str> = so
        .lines()
        .filter(|l| l.trim_start().starts_with("error"))
        .collect();
    assert_eq!(errors.len(), 1, "{so}");
    assert!(errors[0].contains("error ×4"), "{}", errors[0]);
    if std::fs::File::open("/dev/kmsg").is_ok() {
        assert!(
            errors[0].contains("kernel: ") && errors[0].contains("bogus"),
            "{}",
            errors[0]
        );
    }
}

// 10. `--list | head -2` panicked.

#[test]
fn finding_10_list_into_a_closed_pipe_ends_quietly_and_ends_with_a_count() {
    let env = Env::new();
    let mut child = env
        .run_cmd(&["--list"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reader goes away at once, as `head` does
    let out = child.wait_with_output().unwrap();
    assert_exit(&out, 0);
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    // A run whose reader goes away (`pvcheck run | head -1`) finishes its work, cleans up and
    // writes its result instead of dying halfway on a broken pipe.
    let env = Env::new();
    let mut child = env
        .run_cmd(&["tmpfs::", "--skip", "speed"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_exit(&out, 0);
    assert_eq!(env.result()["summary"]["passed"], 5);
    assert!(env.leftovers().is_empty(), "{:?}", env.leftovers());
    let out = env.run(&["tmpfs::", "--list"]);
    let so = stdout(&out);
    // The count line ends the listing (with how many will be ignored, issue 23).
    assert!(
        so.lines()
            .last()
            .is_some_and(|l| l.starts_with("24 tests, 0 benchmarks")),
        "{so}"
    );
}

// 11. `--keep-on-failure` named the volume directory, which has no ledgers.

#[test]
fn finding_11_keep_on_failure_names_the_directory_holding_the_ledgers() {
    let env = Env::new();
    let f = env.dir_class(
        "z",
        r#"    upgrade: { command: '[ "$PVCHECK_UPGRADE_STEP" = upgrade ] || exit 0; f=$(find "$PVCHECK_VOLUME_DIR/pvcheck-data" -type f | sort | head -n 1); dd if=/dev/zero of="$f" bs=4096 count=1 conv=notrunc status=none' }"#,
    );
    let out = env.run(&[
        "--classes",
        &f,
        "--exact",
        "z::integrity::upgrade",
        "--keep-on-failure",
    ]);
    assert_exit(&out, 1);
    let r = env.result();
    let k = &r["kept_volumes"][0];
    let ledgers = std::path::PathBuf::from(k["ledgers"].as_str().unwrap());
    assert!(ledgers.join("ledger-1.json").is_file(), "{k}");
    assert!(
        stderr(&out).contains(&format!(
            "ledgers and acks of z::integrity::upgrade in {}",
            ledgers.display()
        )),
        "{}",
        stderr(&out)
    );
    assert_eq!(k["trial"], "z::integrity::upgrade");
    // Remove what was kept, as the message says.
    let c = std::process::Command::new(common::PVCHECK)
        .args(["cleanup", "--state-dir"])
        .arg(env.state.path())
        .output()
        .unwrap();
    assert_exit(&c, 0);
}

// 13. The agent by hand.

#[test]
fn finding_13_agent_bench_checks_free_space_before_writing() {
    let env = Env::new();
    let dir = env.scratch.path().join("bench");
    std::fs::create_dir(&dir).unwrap();
    let out = std::process::Command::new(common::PVCHECK)
        .args([
            "agent",
            "bench",
            "--workload",
            "randread-4k-qd1",
            "--size",
            "1000TiB",
            "--dir",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("not enough free space"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "bench left files"
    );
}

#[test]
fn finding_13_agent_bench_defaults_to_the_harness_profile() {
    let env = Env::new();
    let dir = env.scratch.path().join("bench");
    std::fs::create_dir(&dir).unwrap();
    let out = std::process::Command::new(common::PVCHECK)
        .args([
            "agent",
            "bench",
            "--workload",
            "randread-4k-qd1",
            "--size",
            "8MiB",
            "--dir",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    assert_exit(&out, 0);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["profile"], "quick", "{}", v["profile"]);
    assert_eq!(v["job"]["runtime_s"], 1.0);
}

#[test]
fn finding_13_agent_verify_says_in_one_line_what_it_found_and_where_bytes_differ() {
    let env = Env::new();
    let dir = env.scratch.path().join("data");
    std::fs::create_dir(&dir).unwrap();
    let agent = |args: &[&str]| {
        std::process::Command::new(common::PVCHECK)
            .arg("agent")
            .args(args)
            .output()
            .unwrap()
    };
    let d = dir.to_str().unwrap();
    let w = agent(&[
        "write",
        "--dir",
        d,
        "--size",
        "64KiB",
        "--seed",
        "7",
        "--volume-id",
        "9",
    ]);
    assert_exit(&w, 0);
    let ledger = env.scratch.path().join("ledger.json");
    std::fs::write(&ledger, &w.stdout).unwrap();
    // Flip one payload byte of the first block of the first data file.
    let mut files: Vec<_> = walk_files(&dir.join("pvcheck-data"));
    files.sort();
    let mut bytes = std::fs::read(&files[0]).unwrap();
    bytes[4000] ^= 0xff;
    std::fs::write(&files[0], &bytes).unwrap();
    let v = agent(&["verify", "--dir", d, "--ledger", ledger.to_str().unwrap()]);
    assert_exit(&v, 1);
    let err = stderr(&v);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("1 damaged block(s) [corrupt=1]") && err.contains("first: corrupt"),
        "{err}"
    );
    let report: Value = serde_json::from_slice(&v.stdout).unwrap();
    let dmg = &report["damage"][0];
    assert_eq!(dmg["first_differing_byte"], 4000, "{dmg}");
    assert_eq!(dmg["differing_bytes"], 1, "{dmg}");
    assert!(
        err.contains("first differing byte at +4000 of the block, 1 byte(s) differ"),
        "{err}"
    );
}

fn walk_files(d: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(d).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk_files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

// 14. YAML messages that say what to do.

#[test]
fn finding_14_two_kinds_in_one_class_says_a_class_has_exactly_one() {
    let env = Env::new();
    let f = env.write("two.yaml",
        "classes:\n  - name: a\n    local:\n      dir: /tmp\n      loop: { fs: ext4, size: 1GiB }\n",
    );
    let line = refused_before_the_run(&env, &["--classes", &f]);
    assert!(
        line.contains("a class has exactly one of dir, loop, flexvolume"),
        "{line}"
    );
}

#[test]
fn finding_14_a_string_where_a_list_is_expected_shows_the_list_form() {
    let env = Env::new();
    let f = env.write("str.yaml",
        "classes:\n  - name: a\n    local:\n      loop: { fs: ext4, size: 1GiB, mount_options: noatime }\n",
    );
    let line = refused_before_the_run(&env, &["--classes", &f]);
    assert!(
        line.contains("expected a list") && line.contains("`mount_options: [noatime]`"),
        "{line}"
    );
}

// 15. The README's first screen.

#[test]
fn finding_15_the_readme_first_screen_answers_the_first_day_questions() {
    let readme = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"),
    )
    .unwrap();
    // The first screen: up to the contents.
    let first = readme.split("## Contents").next().unwrap();
    for needed in [
        "cargo install --path harness",
        "/var/lib/pvcheck",
        "/dev/shm/pvcheck",
        "results/runs/",
        "passed",
        "failed",
        "ignored",
        "capabilities",
        "sh -c",
        "PVCHECK_VOLUME_DIR",
    ] {
        assert!(
            first.contains(needed),
            "the README's first screen does not mention {needed:?}"
        );
    }
    // One description of the upgrade command's environment: the same words in the docs.
    let harness_md = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/harness.md"),
    )
    .unwrap();
    let env_line = "`PVCHECK_CLASS`, `PVCHECK_RUN_ID`, `PVCHECK_VOLUME_DIR`, `PVCHECK_VOLUME_ID`, `PVCHECK_UPGRADE_STEP`";
    assert!(
        readme.contains(env_line) && harness_md.contains(env_line),
        "the upgrade environment differs between README and docs"
    );
}

/// Issue 21: speed trials of classes on different storage backends (`backend:`) measure at the
/// same time; classes of one backend (here the local default, this machine) never do.
#[test]
fn speed_trials_overlap_only_across_backends() {
    fn window(r: &Value, name: &str) -> (f64, f64) {
        let t = trial(r, name);
        assert_eq!(t["status"], "passed", "{t}");
        let started = t["started"].as_str().unwrap();
        // HH:MM:SS.mmm of "YYYY-MM-DDTHH:MM:SS.mmmZ" (one run never crosses midnight here).
        let hms: Vec<f64> = started[11..23]
            .split(':')
            .map(|x| x.parse().unwrap())
            .collect();
        let s = hms[0] * 3600.0 + hms[1] * 60.0 + hms[2];
        (s, s + t["duration_s"].as_f64().unwrap())
    }
    for (backends, overlap) in [(["disk-a", "disk-b"], true), (["", ""], false)] {
        let env = Env::new();
        let mut classes = String::from("classes:\n");
        for (name, backend) in ["one", "two"].iter().zip(backends) {
            let dir = env.scratch.path().join(name);
            std::fs::create_dir(&dir).unwrap();
            classes.push_str(&format!(
                "  - name: {name}\n    local: {{ dir: {} }}\n",
                dir.display()
            ));
            if !backend.is_empty() {
                classes.push_str(&format!("    backend: {backend}\n"));
            }
        }
        let f = env.write("two.yaml", &classes);
        let out = env.run(&[
            "--classes",
            &f,
            "speed::randread-4k-qd1",
            "--speed-size",
            "16MiB",
            "--test-threads",
            "4",
        ]);
        assert_exit(&out, 0);
        let r = env.result();
        let (a, b) = (
            window(&r, "one::speed::randread-4k-qd1"),
            window(&r, "two::speed::randread-4k-qd1"),
        );
        // `started` is cut to the millisecond and `duration_s` is not: one trial starting in
        // the millisecond the other ended is no overlap (CI saw 70384.061 against 70384.06105).
        let overlapped = a.0 + 0.002 < b.1 && b.0 + 0.002 < a.1;
        assert_eq!(overlapped, overlap, "backends {backends:?}: {a:?} {b:?}");
        if overlap {
            assert_eq!(
                r["environment"]["classes"]["one"]["parameters"]["backend"],
                "disk-a"
            );
        }
    }
}
