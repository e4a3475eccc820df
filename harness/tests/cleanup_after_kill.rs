//! What a killed run leaves, and `pvcheck cleanup` (issue 15, findings 5 and 12; issue 14's
//! "one pass must always be enough").
//!
//! - Finding 5: after `kill -KILL` of `pvcheck run`, its agent and commands kept running under
//!   PID 1 with mounts and loop devices held. They must die with the harness, and the next
//!   `pvcheck run` says in one line that a dead run left things behind and how to remove them.
//! - Finding 12: `pvcheck cleanup` printed `removed loop  (backing …)` without the device, did not
//!   say it deleted evidence, could not pick one run, and printed `3 thing(s)`.

mod common;

use std::process::{Command, Output};
use std::time::Duration;

use common::{Env, PVCHECK, fixtures, require_root, stderr, stdout};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

fn cleanup(env: &Env, args: &[&str]) -> Output {
    Command::new(PVCHECK)
        .arg("cleanup")
        .arg("--state-dir")
        .arg(env.state.path())
        .args(args)
        .env_remove("PVCHECK_STATE_DIR")
        .output()
        .unwrap()
}

/// Starts a run of `class_file` (filter `filter`), waits until its upgrade command reports, and
/// kills it with SIGKILL. Returns the run id.
fn kill_mid_upgrade(env: &Env, class_file: &str, filter: &str) -> String {
    let _ = std::fs::remove_file(env.scratch.path().join("record"));
    let classes = fixtures().join(class_file);
    let mut run = env.spawn(&["--classes", classes.to_str().unwrap(), filter]);
    assert!(
        env.wait_for_record(Duration::from_secs(90)),
        "the run never reached the upgrade"
    );
    run.kill().unwrap();
    run.wait().unwrap();
    // PR_SET_PDEATHSIG is delivered when the parent is gone; give the kernel a moment.
    std::thread::sleep(Duration::from_millis(500));
    newest_run_id(env)
}

fn run_ids(env: &Env) -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_dir(env.state.path().join("runs"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

fn newest_run_id(env: &Env) -> String {
    let runs = env.state.path().join("runs");
    std::fs::read_dir(&runs)
        .unwrap()
        .flatten()
        .max_by_key(|e| e.metadata().unwrap().modified().unwrap())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .expect("the killed run left no run directory")
}

/// A tiny class file in the scratch directory, for a cheap run that prints the notice.
fn dir_class(env: &Env) -> String {
    let f = env.scratch.path().join("dir.yaml");
    std::fs::write(
        &f,
        format!(
            "classes:\n  - name: scratch\n    local:\n      dir: {}\n",
            env.scratch.path().join("vols").display()
        ),
    )
    .unwrap();
    f.display().to_string()
}

#[test]
fn finding_5_a_killed_run_leaves_no_agent_running_and_the_next_run_says_so() {
    require_root();
    let env = Env::new();
    let f = env.scratch.path().join("loop.yaml");
    std::fs::write(
        &f,
        "classes:\n  - name: agentloop\n    local:\n      loop: { fs: ext4, size: 256MiB }\n",
    )
    .unwrap();
    // Killed while the durability agent streams acknowledgements: it is told to run for minutes
    // (the harness kills it at a random moment), so only dying with pvcheck ends it in time.
    let mut run = env.spawn(&[
        "--classes",
        f.to_str().unwrap(),
        "agentloop::integrity::durability",
    ]);
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let agent = loop {
        assert!(std::time::Instant::now() < deadline, "no agent ever ran");
        if let Some(p) = env
            .leftovers()
            .into_iter()
            .find(|l| l.starts_with("process ") && l.contains(" durability "))
        {
            break p;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    run.kill().unwrap();
    run.wait().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let id = newest_run_id(&env);
    let left = env.leftovers();
    assert!(
        !left.iter().any(|l| l.starts_with("process ")),
        "the agent ({agent}) kept running after pvcheck was killed: {left:?}"
    );
    assert!(
        left.iter().any(|l| l.starts_with("mount ")),
        "the test proves nothing: the killed run left no mount: {left:?}"
    );

    // The next run names the dead run and the remedy, in one line.
    let out = env.run(&[
        "--classes",
        &dir_class(&env),
        "scratch::provision",
        "--exact",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    let notice: Vec<&str> = err.lines().filter(|l| l.contains("died")).collect();
    assert_eq!(notice.len(), 1, "{err}");
    assert!(
        notice[0].contains(&format!("an earlier run ({id}) died and left"))
            && notice[0].contains("1 mount")
            && notice[0].contains("1 loop device")
            && notice[0].contains("`pvcheck cleanup` removes"),
        "{}",
        notice[0]
    );

    let out = cleanup(&env, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(env.leftovers().is_empty(), "{:?}", env.leftovers());
}

/// Issue 14: a default run SIGKILLed mid-way, then `pvcheck cleanup`, printed
/// `still present: SharedDir { path: "/dev/shm/pvcheck" }` and needed a second pass. Here the
/// run has a tmpfs-like dir class under a shared parent and a loop class at once.
#[test]
fn one_cleanup_after_a_kill_removes_everything_and_prints_sentences() {
    require_root();
    let env = Env::new();
    // Two classes whose upgrades hang: a directory volume under a shared parent (as tmpfs under
    // /dev/shm/pvcheck) and a loop volume. Killed once both hang.
    let f = env.scratch.path().join("two.yaml");
    let hang = r#"'echo started >> "$FIXTURE_RECORD"; sleep 120'"#;
    std::fs::write(
        &f,
        format!(
            "classes:\n  - name: hangdir\n    local:\n      dir: {}\n    upgrade:\n      command: {hang}\n    timeouts: {{ upgrade: 5m }}\n  - name: hangloop\n    local:\n      loop: {{ fs: ext4, size: 256MiB }}\n    upgrade:\n      command: {hang}\n    timeouts: {{ upgrade: 5m }}\n",
            env.scratch.path().join("shared").display()
        ),
    )
    .unwrap();
    let mut run = env.spawn(&["--classes", f.to_str().unwrap(), "integrity::upgrade"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while env.record().lines().count() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the upgrades never both started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    run.kill().unwrap();
    run.wait().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let id = newest_run_id(&env);
    assert!(
        env.scratch.path().join("shared").is_dir(),
        "the test proves nothing: no shared parent directory"
    );

    let dry = cleanup(&env, &["--dry-run"]);
    assert_eq!(dry.status.code(), Some(0), "{}", stderr(&dry));
    let dry_out = stdout(&dry);
    assert!(
        dry_out.contains("Would remove loop device /dev/loop"),
        "the loop device's name is missing: {dry_out}"
    );
    assert!(!env.leftovers().is_empty(), "--dry-run removed something");

    let out = cleanup(&env, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out) + &stderr(&out);
    assert!(
        text.contains("Removed loop device /dev/loop") && text.contains(" backed by "),
        "the detached loop device is not named: {text}"
    );
    assert!(
        text.contains(&format!("Removed the directory of run {id}")),
        "{text}"
    );
    for line in text.lines() {
        assert!(
            !line.contains(" { ") && !line.contains("Some(") && !line.contains("thing(s)"),
            "not a sentence: {line}"
        );
        assert!(line.ends_with('.'), "not a sentence: {line}");
    }
    let summary = text.lines().last().unwrap();
    assert!(
        summary.starts_with("Removed ")
            && summary.contains(" things and the directory of 1 run from "),
        "{summary}"
    );
    assert!(env.leftovers().is_empty(), "{:?}", env.leftovers());
    assert!(
        !env.scratch.path().join("shared").exists(),
        "the emptied shared parent directory was left"
    );
    let again = cleanup(&env, &[]);
    assert!(
        stdout(&again).starts_with("Nothing to remove"),
        "one pass was not enough: {}",
        stdout(&again)
    );
}

/// PR_SET_PDEATHSIG reaches pvcheck's own children only (agents, commands, driver calls). A
/// grandchild (here the `sleep` an upgrade command started, as `sh -c 'a; sleep 120'` does)
/// outlives the kill; `pvcheck cleanup` finds it by its process group and the run label in its
/// environment, and kills it.
#[test]
fn a_command_s_child_that_outlives_the_kill_is_removed_by_cleanup() {
    require_root();
    let env = Env::new();
    kill_mid_upgrade(
        &env,
        "upgrade/hang-with-child.yaml",
        "hangchild::integrity::upgrade",
    );
    let left = env.leftovers();
    assert!(
        left.iter()
            .any(|l| l.starts_with("process ") && l.contains("sleep")),
        "the test proves nothing: no orphaned sleep: {left:?}"
    );
    let out = cleanup(&env, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("`sleep 120` (outlived process"),
        "{}",
        stdout(&out)
    );
    assert!(env.leftovers().is_empty(), "{:?}", env.leftovers());
}

#[test]
fn finding_12_cleanup_run_id_removes_one_kept_run_and_not_another() {
    require_root();
    let env = Env::new();
    let classes = fixtures().join("upgrade/flip-byte.yaml");
    let mut ids = Vec::new();
    for _ in 0..2 {
        let out = env.run(&[
            "--classes",
            classes.to_str().unwrap(),
            "flip-byte::integrity::upgrade",
            "--keep-on-failure",
        ]);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        let before: Vec<String> = ids.clone();
        let now = run_ids(&env);
        ids.extend(now.into_iter().filter(|i| !before.contains(i)));
    }
    assert_eq!(ids.len(), 2, "two kept runs expected: {ids:?}");

    // The next run names the kept runs as kept on purpose (in id order), with the command.
    let out = env.run(&[
        "--classes",
        &dir_class(&env),
        "scratch::provision",
        "--exact",
    ]);
    let err = stderr(&out);
    let mut sorted = ids.clone();
    sorted.sort();
    assert!(
        err.contains(&format!(
            "runs kept a failed volume on purpose ({}, {}; `pvcheck cleanup {} {}` removes them)",
            sorted[0], sorted[1], sorted[0], sorted[1]
        )) && !err.contains("died"),
        "{err}"
    );

    // Bad, unknown and duplicate-free input is refused before anything is touched.
    for bad in ["../etc", "nosuchrun"] {
        let out = cleanup(&env, &[&ids[0], bad]);
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", stdout(&out));
        assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
        assert_eq!(run_ids(&env).len(), 2, "a refused cleanup removed a run");
    }

    let out = cleanup(&env, &[&ids[0]]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(&format!("Removed the directory of run {}", ids[0]))
            && text.contains("with its evidence of kept volume")
            && text.contains("ledger"),
        "deleting evidence was not said: {text}"
    );
    assert_eq!(run_ids(&env), vec![ids[1].clone()], "{text}");
    let still: Vec<String> = env
        .leftovers()
        .into_iter()
        .filter(|l| l.starts_with("mount "))
        .collect();
    assert_eq!(
        still.len(),
        1,
        "the other kept volume should stay mounted: {still:?}"
    );

    let out = cleanup(&env, &[&ids[1]]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(env.leftovers().is_empty(), "{:?}", env.leftovers());
}

#[test]
fn cleanup_refuses_the_id_of_a_run_that_is_still_running() {
    require_root();
    let env = Env::new();
    let classes = fixtures().join("upgrade/hang.yaml");
    let live = env.spawn(&[
        "--classes",
        classes.to_str().unwrap(),
        "hang::integrity::upgrade",
    ]);
    assert!(env.wait_for_record(Duration::from_secs(90)));
    let id = newest_run_id(&env);
    let out = cleanup(&env, &[&id]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(
        stderr(&out).contains(&format!("run {id} is still running (pid {})", live.id())),
        "{}",
        stderr(&out)
    );
    kill(Pid::from_raw(live.id() as i32), Signal::SIGINT).unwrap();
    let out = live.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
    assert!(env.leftovers().is_empty(), "{:?}", env.leftovers());
}
