//! The bad-input battery (issue 14, item 5): distinct bad inputs across `pvcheck run`,
//! `pvcheck cleanup`, the class file and the agent's subcommands. Each must be answered with
//! one line on stderr (at most [`MAX_LINES`] where a hint follows), the documented exit code
//! (pvcheck: 2 for usage and configuration; the agent: 2 for usage or I/O), no panic, and
//! nothing created: the state directory, the results directory and the agent's target
//! directory stay empty.
//!
//! All cases run, and every case that breaks a promise is reported at once (not only the first).
//! To add a case, add a line to [`cases`]; names must stay distinct.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Env, PVCHECK};

/// A hint may follow the one line (e.g. "see `pvcheck run --list`" on its own line).
const MAX_LINES: usize = 2;
/// Refusing bad input is instant; anything slower is a hang (a YAML bomb being expanded).
const LIMIT: Duration = Duration::from_secs(20);

struct Case {
    name: &'static str,
    /// Arguments after `pvcheck`; `{S}` is the scratch directory, `{STATE}` and `{RESULTS}` the
    /// state and results directories, `{DIR}` an empty directory for the agent.
    args: Vec<String>,
    /// Files to create in the scratch directory first: (name, contents).
    files: Vec<(&'static str, Vec<u8>)>,
    exit: i32,
    /// A word or phrase the line must contain (what is wrong, and where).
    says: &'static str,
}

fn run(args: &[&str]) -> Vec<String> {
    let mut v = vec![
        "run".to_string(),
        "--state-dir".into(),
        "{STATE}".into(),
        "--results".into(),
        "{RESULTS}".into(),
    ];
    v.extend(args.iter().map(|s| s.to_string()));
    v
}

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

/// A class file case: `pvcheck run --classes {S}/c.yaml` with `yaml` in it.
fn class(name: &'static str, yaml: &str, says: &'static str) -> Case {
    Case {
        name,
        args: run(&["--classes", "{S}/c.yaml"]),
        files: vec![("c.yaml", yaml.as_bytes().to_vec())],
        exit: 2,
        says,
    }
}

fn case(name: &'static str, args: Vec<String>, exit: i32, says: &'static str) -> Case {
    Case {
        name,
        args,
        files: Vec::new(),
        exit,
        says,
    }
}

const AGENT_LEDGER_GARBAGE: &[u8] = b"{\"format\": \"pvcheck-integrity-ledger\", \"version\": 999}";

fn cases() -> Vec<Case> {
    let ok_class = "classes:\n  - name: a\n    local: { dir: /tmp/pvcheck-battery-never }\n";
    // A billion-laughs document: nine levels of ten aliases each.
    let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..10 {
        let p = format!("*a{}", i - 1);
        bomb.push_str(&format!(
            "a{i}: &a{i} [{}]\n",
            std::iter::repeat_n(p.as_str(), 10)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    bomb.push_str("classes: *a9\n");
    let deep = format!("classes: {}{}\n", "[".repeat(20_000), "]".repeat(20_000));
    let mut v = vec![
        // ---- pvcheck itself
        case("no subcommand", args(&[]), 2, "subcommand"),
        case("unknown subcommand", args(&["frobnicate"]), 2, "frobnicate"),
        case(
            "agent without a subcommand",
            args(&["agent"]),
            2,
            "subcommand",
        ),
        // ---- pvcheck run: flags
        case("unknown flag", run(&["--frobnicate"]), 2, "--frobnicate"),
        case("unknown profile", run(&["--profile", "fast"]), 2, "fast"),
        case(
            "zero test threads",
            run(&["--test-threads", "0"]),
            2,
            "--test-threads",
        ),
        case(
            "test threads not a number",
            run(&["--test-threads", "many"]),
            2,
            "many",
        ),
        case("unknown format", run(&["--format", "xml"]), 2, "xml"),
        case(
            "unknown colour",
            run(&["--color", "sometimes"]),
            2,
            "sometimes",
        ),
        case("negative seed", run(&["--seed", "-1"]), 2, "--seed"),
        case(
            "seed above u64",
            run(&["--seed", "18446744073709551616"]),
            2,
            "--seed",
        ),
        case(
            "--quiet with --format",
            run(&["--quiet", "--format", "json"]),
            2,
            "--format",
        ),
        case(
            "missing class file",
            run(&["--classes", "{S}/missing.yaml"]),
            2,
            "missing.yaml",
        ),
        case(
            "class file is a directory",
            run(&["--classes", "{S}"]),
            2,
            "cannot read",
        ),
        case(
            "agent path missing",
            run(&["--agent", "{S}/no-agent"]),
            2,
            "--agent",
        ),
        Case {
            name: "agent path not executable",
            args: run(&["--agent", "{S}/agent.txt"]),
            files: vec![("agent.txt", b"not a program".to_vec())],
            exit: 2,
            says: "not an executable",
        },
        case(
            "filter matching nothing",
            run(&["nosuchclass::"]),
            2,
            "matches no trial",
        ),
        case(
            "--exact without the check",
            run(&["--exact", "tmpfs"]),
            2,
            "matches no trial",
        ),
        case(
            "--skip of everything",
            run(&["--skip", "::"]),
            2,
            "matches no trial",
        ),
        Case {
            name: "state dir is a file",
            args: vec![
                "run".into(),
                "--state-dir".into(),
                "{S}/state-file".into(),
                "--results".into(),
                "{RESULTS}".into(),
                "--classes".into(),
                "{S}/c.yaml".into(),
            ],
            files: vec![("state-file", b"x".to_vec()), ("c.yaml", ok_class.into())],
            exit: 2,
            says: "state-file",
        },
        // (issue 15 finding 1, branch ux: `--results FILE` is checked before anything is
        // created and refused with exit 2. Add the case here when that lands:
        // case("results dir is a file", run(&["--results", "{S}/afile"]), 2, "afile").)
        // ---- pvcheck cleanup
        case(
            "cleanup: run id with a path",
            args(&["cleanup", "--state-dir", "{STATE}", "../etc"]),
            2,
            "not a run id",
        ),
        case(
            "cleanup: empty run id",
            args(&["cleanup", "--state-dir", "{STATE}", ""]),
            2,
            "not a run id",
        ),
        case(
            "cleanup: unknown run id",
            args(&["cleanup", "--state-dir", "{STATE}", "deadbeef"]),
            2,
            "no run deadbeef",
        ),
        case(
            "cleanup: unknown flag",
            args(&["cleanup", "--force"]),
            2,
            "--force",
        ),
        Case {
            name: "cleanup: state dir is a file",
            args: args(&["cleanup", "--state-dir", "{S}/state-file"]),
            files: vec![("state-file", b"x".to_vec())],
            exit: 2,
            says: "state-file",
        },
        // ---- the class file
        class("empty class file", "", "empty"),
        class(
            "class file of comments only",
            "# nothing\n# here\n",
            "empty",
        ),
        class("not YAML", "classes: [a, b\n  - : :\n", "c.yaml"),
        class("no classes", "classes: []\n", "no classes"),
        class(
            "unknown top-level field",
            "clases:\n  - name: a\n",
            "clases",
        ),
        class(
            "upgrade.drain without an upgrade",
            "classes:\n  - name: a\n    local: { dir: /tmp/x }\n    upgrade: { drain: true }\n",
            "upgrade.drain",
        ),
        class(
            "upgrade.drain not a bool",
            "classes:\n  - name: a\n    local: { dir: /tmp/x }\n    upgrade: { command: \"true\", drain: sometimes }\n",
            "drain",
        ),
        class(
            "unknown class field",
            "classes:\n  - name: a\n    local: { dir: /tmp/x }\n    capabilites: {}\n",
            "capabilites",
        ),
        class(
            "bad class name",
            "classes:\n  - name: My Class\n    local: { dir: /tmp/x }\n",
            "name",
        ),
        class(
            "duplicate class names",
            "classes:\n  - name: a\n    local: { dir: /tmp/x }\n  - name: a\n    local: { dir: /tmp/y }\n",
            "a",
        ),
        class(
            "size without a unit",
            "classes:\n  - name: a\n    local:\n      loop: { fs: ext4, size: 512 }\n",
            "512",
        ),
        class(
            "size with an unknown unit",
            "classes:\n  - name: a\n    local:\n      loop: { fs: ext4, size: 5XB }\n",
            "5XB",
        ),
        class(
            "negative size",
            "classes:\n  - name: a\n    local:\n      loop: { fs: ext4, size: -1GiB }\n",
            "-1GiB",
        ),
        class(
            "unknown filesystem",
            "classes:\n  - name: a\n    local:\n      loop: { fs: ntfs, size: 1GiB }\n",
            "ntfs",
        ),
        class(
            "two kinds in one class",
            "classes:\n  - name: a\n    local:\n      dir: /tmp/x\n      loop: { fs: ext4, size: 1GiB }\n",
            "c.yaml",
        ),
        // (The line names file and line; saying "a class has exactly one of dir, loop,
        // flexvolume" is issue 15 finding 14, branch ux.)
        class(
            "no kind at all",
            "classes:\n  - name: a\n    local: {}\n",
            "c.yaml:3",
        ),
        class(
            "timeout without a unit",
            "classes:\n  - name: a\n    local: { dir: /tmp/x }\n    timeouts: { provision: 30 }\n",
            "30",
        ),
        class(
            "a string where a list is expected",
            "classes:\n  - name: a\n    local:\n      loop: { fs: ext4, size: 1GiB, mount_options: noatime }\n",
            "mount_options",
        ),
        class(
            "flexvolume driver that does not exist",
            "classes:\n  - name: a\n    local:\n      flexvolume: { driver: ./no-such-driver }\n",
            "no-such-driver",
        ),
        class("YAML alias bomb", &bomb, "c.yaml"),
        class("20000 nested lists", &deep, "c.yaml"),
        Case {
            name: "class file not UTF-8",
            args: run(&["--classes", "{S}/c.yaml"]),
            files: vec![("c.yaml", b"classes:\n  - name: \xff\xfe\n".to_vec())],
            exit: 2,
            says: "c.yaml",
        },
        Case {
            name: "same class in two files",
            args: run(&["--classes", "{S}/c.yaml", "--classes", "{S}/d.yaml"]),
            files: vec![("c.yaml", ok_class.into()), ("d.yaml", ok_class.into())],
            exit: 2,
            says: "d.yaml",
        },
        // (issue 15 finding 4, branch ux: `provision: 0s` and a missing upgrade.command script
        // are refused before the run. Add those cases here when that lands.)
        // ---- the agent (exit 2: usage or I/O error)
        case(
            "agent: unknown subcommand",
            args(&["agent", "frob"]),
            2,
            "frob",
        ),
        case(
            "agent write: no target",
            args(&[
                "agent",
                "write",
                "--size",
                "1MiB",
                "--seed",
                "1",
                "--volume-id",
                "1",
            ]),
            2,
            "--dir",
        ),
        case(
            "agent write: size without a unit",
            args(&[
                "agent",
                "write",
                "--dir",
                "{DIR}",
                "--size",
                "1000",
                "--seed",
                "1",
                "--volume-id",
                "1",
            ]),
            2,
            "1000",
        ),
        case(
            "agent write: block size not a multiple of 512",
            args(&[
                "agent",
                "write",
                "--dir",
                "{DIR}",
                "--size",
                "1MiB",
                "--block-size",
                "1000B",
                "--seed",
                "1",
                "--volume-id",
                "1",
            ]),
            2,
            "--block-size",
        ),
        case(
            "agent write: directory does not exist",
            args(&[
                "agent",
                "write",
                "--dir",
                "{S}/nodir",
                "--size",
                "1MiB",
                "--seed",
                "1",
                "--volume-id",
                "1",
            ]),
            2,
            "nodir",
        ),
        case(
            "agent write: more than the free space",
            args(&[
                "agent",
                "write",
                "--dir",
                "{DIR}",
                "--size",
                "64TiB",
                "--seed",
                "1",
                "--volume-id",
                "1",
            ]),
            2,
            "free space",
        ),
        case(
            "agent write: seed not a number",
            args(&[
                "agent",
                "write",
                "--dir",
                "{DIR}",
                "--size",
                "1MiB",
                "--seed",
                "x",
                "--volume-id",
                "1",
            ]),
            2,
            "--seed",
        ),
        case(
            "agent verify: missing ledger",
            args(&[
                "agent",
                "verify",
                "--dir",
                "{DIR}",
                "--ledger",
                "{S}/no-ledger.json",
            ]),
            2,
            "no-ledger.json",
        ),
        Case {
            name: "agent verify: ledger of an unknown version",
            args: args(&[
                "agent",
                "verify",
                "--dir",
                "{DIR}",
                "--ledger",
                "{S}/l.json",
            ]),
            files: vec![("l.json", AGENT_LEDGER_GARBAGE.to_vec())],
            exit: 2,
            says: "version",
        },
        Case {
            name: "agent verify: acks that are not JSON",
            args: args(&[
                "agent",
                "verify",
                "--dir",
                "{DIR}",
                "--acks",
                "{S}/acks.txt",
            ]),
            files: vec![("acks.txt", b"hello\n".to_vec())],
            exit: 2,
            says: "acks.txt",
        },
        case(
            "agent verify: neither ledger nor acks",
            args(&["agent", "verify", "--dir", "{DIR}"]),
            2,
            "--ledger",
        ),
        Case {
            name: "agent rewrite: fraction out of range",
            args: args(&[
                "agent",
                "rewrite",
                "--dir",
                "{DIR}",
                "--ledger",
                "{S}/l.json",
                "--fraction",
                "2",
            ]),
            files: vec![("l.json", AGENT_LEDGER_GARBAGE.to_vec())],
            exit: 2,
            says: "fraction",
        },
        case(
            "agent durability: duration without a unit",
            args(&[
                "agent",
                "durability",
                "--dir",
                "{DIR}",
                "--seed",
                "1",
                "--volume-id",
                "1",
                "--duration",
                "30",
            ]),
            2,
            "30",
        ),
        case(
            "agent durability: zero batch",
            args(&[
                "agent",
                "durability",
                "--dir",
                "{DIR}",
                "--seed",
                "1",
                "--volume-id",
                "1",
                "--batch",
                "0",
                "--records",
                "1",
            ]),
            2,
            "batch",
        ),
        case(
            "agent selftest: no directory",
            args(&["agent", "selftest"]),
            2,
            "--dir",
        ),
        case(
            "agent bench: unknown workload",
            args(&["agent", "bench", "--dir", "{DIR}", "--workload", "nosuch"]),
            2,
            "nosuch",
        ),
        case(
            "agent bench: runtime without a unit",
            args(&[
                "agent",
                "bench",
                "--dir",
                "{DIR}",
                "--workload",
                "randread-4k-qd1",
                "--runtime",
                "10",
            ]),
            2,
            "10",
        ),
        case(
            "history: --results that does not exist",
            args(&["history", "--results", "{S}/no-such-results"]),
            2,
            "--results",
        ),
        case(
            "history: --results without a runs directory",
            args(&["history", "--results", "{RESULTS}"]),
            2,
            "no runs directory",
        ),
        case(
            "history: --last below two runs",
            args(&["history", "--results", "{RESULTS}", "--last", "1"]),
            2,
            "--last",
        ),
        case(
            "history: unknown --format",
            args(&["history", "--results", "{RESULTS}", "--format", "xml"]),
            2,
            "--format",
        ),
        // (`pvcheck compare` and `pvcheck baseline` come with branch gate: add their bad inputs
        // here — a result file that is not one, a baseline of another class, unknown flags.)
    ];
    // A pvcheck built without the Kubernetes platform (`--no-default-features`) refuses it.
    if !cfg!(feature = "kubernetes") {
        let says = "built without Kubernetes support";
        v.extend([
            case(
                "no kubernetes feature: run --platform kubernetes",
                run(&["--platform", "kubernetes"]),
                2,
                says,
            ),
            case(
                "no kubernetes feature: cleanup --platform kube",
                args(&["cleanup", "--state-dir", "{STATE}", "--platform", "kube"]),
                2,
                says,
            ),
            case(
                "no kubernetes feature: classes",
                args(&["classes"]),
                2,
                says,
            ),
        ]);
    }
    v
}

fn fill(a: &str, scratch: &Path, env: &Env, dir: &Path) -> String {
    a.replace("{STATE}", &env.state.path().display().to_string())
        .replace("{RESULTS}", &env.results.path().display().to_string())
        .replace("{DIR}", &dir.display().to_string())
        .replace("{S}", &scratch.display().to_string())
}

fn entries(p: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(p)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

/// Runs one case; returns what it broke (empty when it kept every promise).
fn check(c: &Case) -> Vec<String> {
    let env = Env::new();
    let scratch = env.scratch.path();
    let dir = scratch.join("agent-dir");
    std::fs::create_dir(&dir).unwrap();
    for (name, body) in &c.files {
        std::fs::write(scratch.join(name), body).unwrap();
    }
    let before = entries(scratch);
    let argv: Vec<String> = c
        .args
        .iter()
        .map(|a| fill(a, scratch, &env, &dir))
        .collect();
    let start = Instant::now();
    let mut child = Command::new(PVCHECK)
        .args(&argv)
        .env_remove("PVCHECK_STATE_DIR")
        .env("RUST_BACKTRACE", "0")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut broke = Vec::new();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if start.elapsed() > LIMIT {
            let _ = child.kill();
            broke.push(format!("still running after {LIMIT:?} (a hang)"));
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    if out.status.code() != Some(c.exit) {
        broke.push(format!("exit {:?}, expected {}", out.status.code(), c.exit));
    }
    if stderr.contains("panicked") || out.status.code() == Some(101) {
        broke.push("panicked".into());
    }
    if lines.is_empty() || lines.len() > MAX_LINES {
        broke.push(format!(
            "{} lines on stderr, expected 1 (a hint at most)",
            lines.len()
        ));
    }
    if !lines.first().is_some_and(|l| l.contains(c.says)) {
        broke.push(format!("the line does not say {:?}", c.says));
    }
    if !entries(env.state.path()).is_empty() {
        broke.push(format!(
            "created in the state dir: {:?}",
            entries(env.state.path())
        ));
    }
    if !entries(env.results.path()).is_empty() {
        broke.push(format!(
            "created in the results dir: {:?}",
            entries(env.results.path())
        ));
    }
    if !entries(&dir).is_empty() {
        broke.push(format!("the agent created: {:?}", entries(&dir)));
    }
    let after = entries(scratch);
    if after != before {
        broke.push(format!("created in the scratch dir: {after:?}"));
    }
    if !env.leftovers().is_empty() {
        broke.push(format!("left: {:?}", env.leftovers()));
    }
    if !broke.is_empty() {
        broke.push(format!(
            "argv: {argv:?}\n      stderr: {}",
            stderr.trim_end()
        ));
    }
    broke
}

#[test]
fn every_bad_input_gets_one_line_the_documented_exit_code_and_creates_nothing() {
    let cases = cases();
    let mut names: Vec<&str> = cases.iter().map(|c| c.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), cases.len(), "two cases share a name");
    assert!(
        cases.len() >= 40,
        "the battery shrank to {} cases",
        cases.len()
    );
    let mut failures = Vec::new();
    for c in &cases {
        let broke = check(c);
        if !broke.is_empty() {
            failures.push(format!("{}:\n    {}", c.name, broke.join("\n    ")));
        }
    }
    println!(
        "bad-input battery: {} cases, {} broke a promise",
        cases.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} bad inputs broke a promise:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
