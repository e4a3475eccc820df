//! SIGINT or SIGTERM in the middle of a run: exit 130, and no mount, loop device, process or run
//! directory is left. A crashed run (SIGKILL) leaves them, and `pvcheck cleanup` removes exactly those.

mod common;

use std::time::Duration;

use common::{Env, PVCHECK, fixtures, require_root, stderr, stdout};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

fn interrupt_with(sig: Signal) -> std::process::Output {
    require_root();
    let env = Env::new();
    let classes = fixtures().join("upgrade/hang.yaml");
    let child = env.spawn(&["--classes", classes.to_str().unwrap(), "hang::"]);
    // The upgrade command says when it runs: then a volume is mounted and a command runs.
    assert!(
        env.wait_for_record(Duration::from_secs(60)),
        "the run never reached the upgrade"
    );
    assert!(
        !env.leftovers().is_empty(),
        "nothing to clean up: the test proves nothing"
    );
    kill(Pid::from_raw(child.id() as i32), sig).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "stdout: {}\nstderr: {}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        env.leftovers().is_empty(),
        "left behind: {:?}",
        env.leftovers()
    );
    let result = env.result();
    assert_eq!(result["interrupted"], true);
    // The trials the signal cut short (the hanging upgrade, and whatever ran beside it) are
    // listed as such, not silently missing, and no trial is listed twice.
    let trials = result["trials"].as_array().unwrap();
    let cut: Vec<&str> = trials
        .iter()
        .filter(|t| t["status"] == "interrupted")
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(cut.contains(&"hang::integrity::upgrade"), "{cut:?}");
    let mut names: Vec<&str> = trials.iter().map(|t| t["name"].as_str().unwrap()).collect();
    let n = names.len();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), n, "a trial listed twice: {names:?}");
    drop(result);
    drop(env);
    out
}

#[test]
fn sigint_mid_run_leaves_no_mount_loop_device_or_process() {
    interrupt_with(Signal::SIGINT);
}

#[test]
fn sigterm_mid_run_leaves_nothing_either() {
    interrupt_with(Signal::SIGTERM);
}

/// Issue 23, item 3: an interrupted run ended with `partial results in …` and no verdict. Its
/// last two lines are the verdict (`INTERRUPTED: …; exit 130: interrupted`) and the result path,
/// as for every run.
#[test]
fn an_interrupted_run_still_ends_with_the_verdict_and_the_result_path() {
    let out = interrupt_with(Signal::SIGINT);
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() >= 2, "{err}");
    let (verdict, last) = (lines[lines.len() - 2], lines[lines.len() - 1]);
    assert!(
        verdict.starts_with("pvcheck: INTERRUPTED: ")
            && verdict.contains("interrupted")
            && verdict.ends_with("; exit 130: interrupted"),
        "{verdict}"
    );
    assert!(
        last.starts_with("pvcheck: results in ") && last.ends_with(".json"),
        "{last}"
    );
}

/// A run killed with SIGKILL cannot clean up; `pvcheck cleanup` removes what it left, and does not
/// touch a run that is still alive.
#[test]
fn cleanup_removes_what_a_crashed_run_left_and_only_that() {
    require_root();
    let env = Env::new();
    let classes = fixtures().join("upgrade/hang.yaml");
    let mut crashed = env.spawn(&[
        "--classes",
        classes.to_str().unwrap(),
        "hang::integrity::upgrade",
    ]);
    assert!(
        env.wait_for_record(Duration::from_secs(60)),
        "the run never reached the upgrade"
    );
    crashed.kill().unwrap();
    crashed.wait().unwrap();
    // The upgrade command (`sh`) dies with pvcheck (PR_SET_PDEATHSIG); the `sleep` it started,
    // the mount and the loop device cannot, and stay for `pvcheck cleanup`.
    std::thread::sleep(Duration::from_millis(500));
    let left = env.leftovers();
    assert!(
        left.iter().any(|l| l.starts_with("mount "))
            && left.iter().any(|l| l.starts_with("loop "))
            && left
                .iter()
                .any(|l| l.starts_with("process ") && l.contains("sleep")),
        "a crash should leave a mount, a loop device and the command's sleep: {left:?}"
    );

    // A live run in the same state dir: cleanup must leave it alone.
    std::fs::remove_file(env.scratch.path().join("record")).unwrap();
    let mut live = env.spawn(&[
        "--classes",
        classes.to_str().unwrap(),
        "hang::integrity::upgrade",
    ]);
    assert!(
        env.wait_for_record(Duration::from_secs(60)),
        "the live run never reached the upgrade"
    );

    let out = std::process::Command::new(PVCHECK)
        .arg("cleanup")
        .arg("--state-dir")
        .arg(env.state.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report = stdout(&out);
    assert!(
        report.contains("Removed mount")
            && report.contains("Removed loop device /dev/loop")
            && report.contains("Removed process"),
        "{report}"
    );

    // Only the live run's things remain, and it is still running.
    assert!(
        live.try_wait().unwrap().is_none(),
        "cleanup killed a live run"
    );
    let remaining = env.leftovers();
    let runs: Vec<&String> = remaining
        .iter()
        .filter(|l| l.starts_with("run dir"))
        .collect();
    assert_eq!(
        runs.len(),
        1,
        "the crashed run's directory should be gone: {remaining:?}"
    );
    assert!(
        remaining.iter().any(|l| l.starts_with("mount ")),
        "the live run's mount was removed: {remaining:?}"
    );

    kill(Pid::from_raw(live.id() as i32), Signal::SIGINT).unwrap();
    let status = live.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert!(env.leftovers().is_empty(), "{:?}", env.leftovers());
}
