//! A class this machine cannot run is not a failure and not silence: its trials are ignored, each
//! with the reason, in the terminal and in the result file.

mod common;

use common::{Env, is_root, stderr, stdout, trial};

/// Where mkfs.xfs is missing (Debian without xfsprogs), the xfs class is ignored, saying so.
#[test]
fn xfs_class_is_ignored_with_the_reason_when_mkfs_xfs_is_missing() {
    let env = Env::new();
    // A PATH with the shell only: no mkfs.xfs (and no losetup).
    let bin = env.scratch.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink("/bin/sh", bin.join("sh")).unwrap();
    let out = env
        .run_cmd(&["--exact", "xfs-loop::provision"])
        .env("PATH", &bin)
        .output()
        .unwrap();
    // The one selected trial was ignored: nothing was tested (exit 6, issue 23), not a pass.
    assert_eq!(
        out.status.code(),
        Some(6),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    let reason = if is_root() {
        "mkfs.xfs is not installed"
    } else {
        "need root"
    };
    assert!(
        stdout(&out).contains(&format!("ignored ({reason}")),
        "{}",
        stdout(&out)
    );
    let r = env.result();
    let t = trial(&r, "xfs-loop::provision");
    assert_eq!(t["status"], "ignored");
    assert!(
        t["ignored_reason"].as_str().unwrap().contains(reason),
        "{t}"
    );
}

/// Without root, loop classes are ignored with that reason; the directory class still runs.
#[test]
fn loop_classes_are_ignored_without_root() {
    let env = Env::new();
    if is_root() {
        // Run the binary as nobody; it must be able to reach its own binary and the temp dirs.
        for d in [env.state.path(), env.results.path(), env.scratch.path()] {
            std::process::Command::new("chmod")
                .arg("777")
                .arg(d)
                .status()
                .unwrap();
        }
        let exe = std::path::Path::new(common::PVCHECK);
        let reachable = exe.ancestors().all(|a| {
            std::fs::metadata(a).is_ok_and(|m| {
                std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o001 != 0
            })
        });
        assert!(
            reachable,
            "{} is not reachable for other users; cannot test as non-root",
            exe.display()
        );
    }
    let mut cmd = env.run_cmd(&["--exact", "ext4-loop::provision"]);
    if is_root() {
        let mut c = std::process::Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(cmd.get_program())
            .args(cmd.get_args());
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        cmd = c;
    }
    let out = cmd.output().unwrap();
    // The one selected trial was ignored: nothing was tested (exit 6, issue 23), not a pass.
    assert_eq!(
        out.status.code(),
        Some(6),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("ignored (loop classes need root"),
        "{}",
        stdout(&out)
    );
}
