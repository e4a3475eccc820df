//! `pvcheck-agent pod`: what the agent image runs on Kubernetes. Its framed log is the only way
//! results leave a pod, so stdout, stderr and the end must stay apart, and `--kill-after` must
//! be a real SIGKILL of the agent whose acknowledged records stay in the log.

use std::process::Command;

const AGENT: &str = env!("CARGO_BIN_EXE_pvcheck-agent");

fn run(args: &[&str]) -> String {
    let out = Command::new(AGENT).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn end(log: &str) -> serde_json::Value {
    let x = log
        .lines()
        .find_map(|l| l.strip_prefix("x "))
        .expect("no x line");
    serde_json::from_str(x).unwrap()
}

/// Runs `pvcheck-agent ARGS`, sends it SIGTERM after `ms`, requires the supervisor to exit 0
/// (it notes the signal, it does not die of it), and returns its log.
fn sigterm_after(args: &[&str], ms: u64) -> String {
    let child = Command::new(AGENT)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(ms));
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "the supervisor died of SIGTERM");
    String::from_utf8(out.stdout).unwrap()
}

/// The agent's durability stream into `dir` for `duration`: a run that acknowledges records
/// until it is stopped.
fn durability<'a>(dir: &'a str, duration: &'a str) -> [&'a str; 9] {
    [
        "durability",
        "--dir",
        dir,
        "--seed",
        "1",
        "--volume-id",
        "1",
        "--duration",
        duration,
    ]
}

#[test]
fn stdout_stderr_and_the_exit_code_stay_apart_in_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    // A usage error: one line on stderr, exit 2, nothing on stdout.
    let log = run(&["pod", "--statfs", d, "--", "verify", "--dir", d]);
    assert!(log.lines().any(|l| l.starts_with("e ")), "{log}");
    assert!(!log.lines().any(|l| l.starts_with("o ")), "{log}");
    let x = end(&log);
    assert_eq!(x["code"], 2, "{log}");
    assert!(x["statfs"]["total_bytes"].as_u64().unwrap() > 0);
}

/// The durability check's crash: SIGKILL at the moment asked, the acknowledgements printed
/// before it in the log, a cut last line left without its newline.
#[test]
fn kill_after_is_a_sigkill_of_the_agent_and_keeps_its_acknowledgements() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let mut args = vec!["pod", "--kill-after", "700ms", "--"];
    args.extend(durability(d, "30s"));
    let log = run(&args);
    let x = end(&log);
    assert_eq!(x["signal"], 9, "{log}");
    assert!(x["code"].is_null());
    let killed = x["killed_after_s"].as_f64().unwrap();
    assert!((0.7..2.0).contains(&killed), "{killed}");
    let acks = log
        .lines()
        .filter(|l| l.starts_with("o {\"record\""))
        .count();
    assert!(acks > 0, "no acknowledged record before the kill: {log}");
}

#[test]
fn hold_waits_for_sigterm_and_exits_0() {
    let mut child = Command::new(AGENT)
        .args(["pod", "--hold"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(
        child.try_wait().unwrap().is_none(),
        "--hold exited by itself"
    );
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}

/// A holder that runs its first agent (the verify after a takeover, one pod start instead of
/// two): the agent's output and its `x` line come first and whole, then it holds until SIGTERM
/// and exits 0.
#[test]
fn hold_with_an_agent_runs_it_frames_its_end_then_holds_until_sigterm() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let mut child = Command::new(AGENT)
        .args(["pod", "--hold", "--statfs", d, "--", "selftest", "--dir", d])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut log = String::new();
    let x = loop {
        let l = lines
            .next()
            .expect("the log ended before the x line")
            .unwrap();
        log.push_str(&l);
        log.push('\n');
        if let Some(x) = l.strip_prefix("x ") {
            break serde_json::from_str::<serde_json::Value>(x).unwrap();
        }
    };
    assert_eq!(x["code"], 0, "{log}");
    assert!(x["statfs"]["total_bytes"].as_u64().unwrap() > 0, "{log}");
    assert!(
        log.lines().any(|l| l.starts_with("o ")),
        "no agent output: {log}"
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(
        child.try_wait().unwrap().is_none(),
        "--hold with an agent exited after the agent"
    );
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert!(lines.next().is_none(), "more after the x line");
}

/// A pod deleted or evicted while its agent runs: the supervisor, the container's PID 1, gets
/// SIGTERM, which PID 1 does not die of. It lets the agent finish (or the runtime's SIGKILL end
/// it) and says in its end line that it was told to stop, and when: an agent that finished
/// within the grace period of a `kubectl drain` passed as undisturbed (CI, 2026-12-06).
#[test]
fn a_sigterm_while_the_agent_runs_is_noted_in_the_end_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let mut args = vec!["pod", "--"];
    args.extend(durability(d, "1500ms"));
    let log = sigterm_after(&args, 500);
    let x = end(&log);
    assert_eq!(x["code"], 0, "the agent did not run to its end: {log}");
    assert_eq!(x["terminated"]["signal"], "SIGTERM", "{log}");
    let after = x["terminated"]["after_s"].as_f64().unwrap();
    assert!((0.3..1.5).contains(&after), "{after}");
}

/// An undisturbed run has no `terminated` in its end line.
#[test]
fn an_undisturbed_run_has_no_terminated() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let log = run(&["pod", "--statfs", d, "--", "verify", "--dir", d]);
    assert!(end(&log).get("terminated").is_none(), "{log}");
}

/// `--batch`: a class's speed matrix in one pod. Each agent is framed on its own and ends with
/// its own `x` line (`index`, its own exit code, the capacity), in order, so the harness can
/// hand each workload's output to its own trial; a failing agent does not stop the next.
#[test]
fn a_batch_runs_each_agent_in_turn_with_an_end_line_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let dir2 = tempfile::tempdir().unwrap();
    let d2 = dir2.path().to_str().unwrap();
    let batch = serde_json::json!([
        durability(d, "200ms"),
        ["verify", "--dir", d],
        durability(d2, "100ms")
    ]);
    let log = run(&["pod", "--statfs", d, "--batch", &batch.to_string()]);
    let ends: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| l.strip_prefix("x "))
        .map(|x| serde_json::from_str(x).unwrap())
        .collect();
    assert_eq!(ends.len(), 3, "{log}");
    for (i, x) in ends.iter().enumerate() {
        assert_eq!(x["index"], i, "{log}");
        assert!(x["statfs"]["total_bytes"].as_u64().unwrap() > 0, "{log}");
    }
    assert_eq!(ends[0]["code"], 0, "{log}");
    assert_eq!(
        ends[1]["code"], 2,
        "the usage error is the second agent's: {log}"
    );
    assert_eq!(ends[2]["code"], 0, "{log}");
    // The second agent's stderr lies between the first and second end lines.
    let second: Vec<&str> = log.split("\nx ").nth(1).unwrap().lines().skip(1).collect();
    assert!(second.iter().any(|l| l.starts_with("e ")), "{log}");
}

/// A batch told to stop (the pod deleted) starts no further agent: the one running ends, says
/// `terminated`, and is the last.
#[test]
fn a_batch_told_to_stop_starts_no_further_agent() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let batch = serde_json::json!([
        durability(d, "1s"),
        durability(d, "1s"),
        durability(d, "1s")
    ]);
    let log = sigterm_after(&["pod", "--batch", &batch.to_string()], 400);
    let ends: Vec<&str> = log.lines().filter(|l| l.starts_with("x ")).collect();
    assert_eq!(ends.len(), 1, "{log}");
    assert_eq!(end(&log)["terminated"]["signal"], "SIGTERM", "{log}");
}

#[test]
fn a_batch_that_is_not_json_is_one_line_and_exit_2() {
    let out = Command::new(AGENT)
        .args(["pod", "--batch", "[[\"bench\""])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("--batch"), "{err}");
}
