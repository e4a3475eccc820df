//! Shared by the CSI tests: where the CSI hostpath driver and the fault zoo are, a scratch
//! directory, and running `pvcheck run` on a class file.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

/// The CSI driver the tests run: `$PVCHECK_TEST_CSI_DRIVER` (or `$PVCHECK_CSI_HOSTPATH`), else
/// pvcheck's own hostpath-style driver `pvcheck-test-csi` (workspace crate `testenv/csi-driver`),
/// which `cargo test --workspace` builds beside this test binary. kubernetes-csi's hostpath
/// driver works too (same flags), but the Go module proxy refuses it, so it is not the default.
/// None (and one line saying so) when it is absent or we are not root: the test passes as
/// skipped.
pub fn hostpath(test: &str) -> Option<PathBuf> {
    let p = std::env::var_os("PVCHECK_TEST_CSI_DRIVER")
        .or_else(|| std::env::var_os("PVCHECK_CSI_HOSTPATH"))
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            // target/<profile>/deps/<test> → target/<profile>/pvcheck-test-csi
            let exe = std::env::current_exe().unwrap_or_default();
            exe.parent()
                .and_then(Path::parent)
                .map(|d| d.join("pvcheck-test-csi"))
                .unwrap_or_default()
        });
    if !p.is_file() {
        println!(
            "{test}: skipped: no CSI driver at {} (set PVCHECK_TEST_CSI_DRIVER, or build the workspace: cargo build -p pvcheck-test-csi)",
            p.display()
        );
        return None;
    }
    if !nix::unistd::geteuid().is_root() {
        println!("{test}: skipped: the CSI driver mounts: run as root (CI does)");
        return None;
    }
    Some(std::fs::canonicalize(p).unwrap())
}

/// `csi-sanity`: `$PVCHECK_CSI_SANITY`, or beside the driver, or `<repo>/testenv/bin/`.
pub fn csi_sanity(hostpath: &Path) -> Option<PathBuf> {
    [
        std::env::var_os("PVCHECK_CSI_SANITY").map(PathBuf::from),
        Some(hostpath.with_file_name("csi-sanity")),
        Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("../testenv/bin/csi-sanity")),
    ]
    .into_iter()
    .flatten()
    .find(|p| p.is_file())
}

/// The zoo proxy (harness/tests/fixtures/csi-zoo), built once per test process.
pub fn zoo() -> PathBuf {
    static ZOO: OnceLock<PathBuf> = OnceLock::new();
    ZOO.get_or_init(|| {
        // Built the way `cargo test --workspace --no-run` builds it (the zoo's own test target
        // makes that build its binary): the whole workspace selected, so the dependencies get
        // the features that build gave them and nothing is compiled again. A `cargo build -p
        // pvcheck-csi-zoo` resolves features for the zoo alone and rebuilt pvcheck and part of
        // its dependency graph inside this test (minutes of CI).
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = Command::new(cargo)
            .args([
                "test",
                "-q",
                "--workspace",
                "--no-run",
                "--test",
                "csi_zoo_usage",
                "--message-format=json",
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "building the CSI zoo failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|v| v["executable"].as_str().map(PathBuf::from))
            .find(|p| p.file_name().is_some_and(|n| n == "csi-zoo"))
            .expect("cargo named no csi-zoo executable")
    })
    .clone()
}

/// A directory for one test; on drop everything mounted below it is unmounted.
pub struct Scratch {
    pub root: PathBuf,
}

impl Scratch {
    pub fn new(test: &str) -> Self {
        let root = std::env::temp_dir().join(format!("pvcheck-csi-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        Scratch { root }
    }

    /// Mounts below the root (there must be none after a run).
    pub fn mounts(&self) -> Vec<String> {
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| Path::new(m).starts_with(&self.root))
            .map(String::from)
            .collect()
    }

    /// Processes whose command line mentions the root (drivers pvcheck started).
    pub fn processes(&self) -> Vec<String> {
        let root = self.root.display().to_string();
        let mut out = Vec::new();
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            if e.file_name().to_string_lossy().parse::<u32>().is_err() {
                continue;
            }
            if let Ok(c) = std::fs::read(e.path().join("cmdline")) {
                let c = String::from_utf8_lossy(&c).replace('\0', " ");
                if c.contains(&root) {
                    out.push(c);
                }
            }
        }
        out
    }

    /// Sockets left below the root.
    pub fn sockets(&self) -> Vec<PathBuf> {
        use std::os::unix::fs::FileTypeExt;
        let mut out = Vec::new();
        let mut stack = vec![self.root.clone()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                match e.file_type() {
                    Ok(t) if t.is_dir() => stack.push(e.path()),
                    Ok(t) if t.is_socket() => out.push(e.path()),
                    _ => {}
                }
            }
        }
        out
    }

    pub fn assert_nothing_left(&self) {
        assert_eq!(self.mounts(), Vec::<String>::new(), "mounts left");
        assert_eq!(self.processes(), Vec::<String>::new(), "processes left");
        let sockets: Vec<PathBuf> = self
            .sockets()
            .into_iter()
            .filter(|s| !s.starts_with(self.root.join("keep")))
            .collect();
        assert_eq!(sockets, Vec::<PathBuf>::new(), "sockets left");
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for m in self.mounts().into_iter().rev() {
            let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// What a run printed and wrote.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub result: Option<Value>,
}

impl Run {
    /// pvcheck exited with `code`; else both its streams are shown.
    #[track_caller]
    pub fn assert_exit(&self, code: i32) {
        assert_eq!(
            self.code,
            Some(code),
            "stdout: {}\nstderr: {}",
            self.stdout,
            self.stderr
        );
    }

    pub fn trial(&self, name: &str) -> &Value {
        self.result
            .as_ref()
            .and_then(|r| r["trials"].as_array())
            .and_then(|t| t.iter().find(|x| x["name"] == name))
            .unwrap_or_else(|| {
                panic!(
                    "no trial {name}; stdout: {}\nstderr: {}",
                    self.stdout, self.stderr
                )
            })
    }
    pub fn trials(&self) -> Vec<Value> {
        self.result
            .as_ref()
            .and_then(|r| r["trials"].as_array())
            .cloned()
            .unwrap_or_default()
    }
    pub fn message(&self, name: &str) -> String {
        self.trial(name)["failure"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
    pub fn category(&self, name: &str) -> String {
        self.trial(name)["failure"]["category"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
    /// The trial's `metrics.live` (the live checks': windows, errors, records).
    pub fn live(&self, name: &str) -> Value {
        let m = self.trial(name)["metrics"]["live"].clone();
        assert!(
            m.is_object(),
            "{name}: no live metrics: {:#}",
            self.trial(name)
        );
        m
    }
}

/// A live check's metrics: every acknowledged record was verified twice, over the surviving
/// mount and after the recreate.
pub fn assert_all_verified(m: &Value) {
    let acked = m["records_acknowledged"].as_u64().unwrap_or(0);
    assert!(acked > 0, "{m:#}");
    assert_eq!(
        m["records_verified_in_place"].as_u64(),
        Some(acked),
        "{m:#}"
    );
    assert_eq!(
        m["records_verified_after_recreate"].as_u64(),
        Some(acked),
        "{m:#}"
    );
}

/// Writes `yaml` as the class file and runs `pvcheck run` on the trials matching `filter`.
pub fn run(s: &Scratch, yaml: &str, filter: &[&str], env: &[(&str, &Path)]) -> Run {
    run_in(&s.root, yaml, filter, env)
}

/// [`run`] in any scratch directory `root` (a flexVolume test's): the class file, the results
/// and the state directory go below it.
pub fn run_in(root: &Path, yaml: &str, filter: &[&str], env: &[(&str, &Path)]) -> Run {
    let classes = root.join("classes.yaml");
    std::fs::write(&classes, yaml).unwrap();
    let results = root.join("results");
    // One result file per run: an earlier run's is not this one's.
    let _ = std::fs::remove_dir_all(&results);
    let mut c = Command::new(env!("CARGO_BIN_EXE_pvcheck"));
    c.args(["run", "--classes"])
        .arg(&classes)
        .arg("--results")
        .arg(&results)
        .arg("--state-dir")
        .arg(root.join("state"))
        .args(filter);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    let result = std::fs::read_dir(results.join("runs")).ok().and_then(|rd| {
        let f: PathBuf = rd
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "json"))?;
        serde_json::from_str(&std::fs::read_to_string(f).ok()?).ok()
    });
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        result,
    }
}

/// A class `NAME` over the hostpath driver started by pvcheck (`prefix` goes before it in the
/// command: the zoo), with `extra` lines appended (capabilities, upgrade, …).
pub fn class(name: &str, command: &[String], access: &str, extra: &str) -> String {
    let cmd: Vec<String> = command.iter().map(|a| format!("{a:?}")).collect();
    let fs = if access == "mount" {
        "\n        fs_type: ext4"
    } else {
        ""
    };
    format!(
        "  - name: {name}\n    local:\n      csi:\n        command: [{}]\n        access_type: {access}{fs}\n        call_timeout: 20s\n{extra}",
        cmd.join(", ")
    )
}

/// The hostpath driver's argv as pvcheck starts it.
pub fn hostpath_argv(hostpath: &Path, endpoint: &str) -> Vec<String> {
    vec![
        hostpath.display().to_string(),
        format!("--endpoint={endpoint}"),
        "--nodeid={node_id}".into(),
        "--statedir={state_dir}/hostpath".into(),
        "--drivername=hostpath.csi.k8s.io".into(),
    ]
}

/// The zoo with `fault` in front of the hostpath driver.
pub fn zoo_argv(hostpath: &Path, fault: &str) -> Vec<String> {
    let mut v = vec![
        zoo().display().to_string(),
        format!("--fault={fault}"),
        "--endpoint={endpoint}".into(),
        "--state-dir={state_dir}/zoo".into(),
        "--".into(),
    ];
    v.extend(hostpath_argv(hostpath, "@UPSTREAM@"));
    v
}
