//! `pvcheck compare` and `pvcheck baseline` through the real binary, on synthetic run files:
//! bad input is one line and exit 2, unlike setups are refused with every difference listed,
//! `--allow-mismatch` then judges (exit 3 on a regression), and nothing in results/ is
//! overwritten without --force.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use pvcheck::compare::synthetic::{Spec, run};

fn pvcheck(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pvcheck"))
        .args(args)
        .output()
        .expect("run pvcheck")
}

fn write(dir: &Path, name: &str, v: &serde_json::Value) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, serde_json::to_vec_pretty(v).unwrap()).unwrap();
    p
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn spec(id: &str, speed: f64, seed: u64) -> Spec {
    Spec {
        speed,
        seed,
        noise: 0.01,
        ..Spec::new(id, 1, 3, 6)
    }
}

#[test]
fn bad_input_is_one_line_and_exit_2() {
    let d = tempfile::tempdir().unwrap();
    let good = write(d.path(), "good.json", &run(&spec("aaaa", 1.0, 1)));
    let mut v2 = run(&spec("bbbb", 1.0, 2));
    v2["schema_version"] = 2.into();
    let v2 = write(d.path(), "v2.json", &v2);
    let text = std::fs::read_to_string(&good).unwrap();
    let truncated = d.path().join("truncated.json");
    std::fs::write(&truncated, &text[..text.len() / 2]).unwrap();
    let garbage = d.path().join("garbage.json");
    std::fs::write(&garbage, "this is not json").unwrap();
    let results = d.path().join("results");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![good.display().to_string(), v2.display().to_string()],
            "schema_version 2",
        ),
        (
            vec![good.display().to_string(), truncated.display().to_string()],
            "truncated",
        ),
        (
            vec![garbage.display().to_string(), good.display().to_string()],
            "invalid JSON",
        ),
        (
            vec!["no-such-baseline".into(), good.display().to_string()],
            "no baseline named \"no-such-baseline\"",
        ),
        (
            vec![
                good.display().to_string(),
                d.path().join("missing.json").display().to_string(),
            ],
            "cannot read",
        ),
    ];
    for (args, want) in cases {
        let mut a = vec!["compare".to_string()];
        a.extend(args);
        a.extend(["--results".to_string(), results.display().to_string()]);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let o = pvcheck(&a);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{a:?}: {e}");
        assert_eq!(e.trim_end().lines().count(), 1, "{a:?}: not one line: {e}");
        assert!(e.contains(want), "{a:?}: {e}");
    }
    // A run compared with itself is read fine but refused: one line, exit 7.
    let g = good.display().to_string();
    let o = pvcheck(&[
        "compare",
        &g,
        &g,
        "--results",
        &results.display().to_string(),
    ]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(7), "{e}");
    assert_eq!(e.trim_end().lines().count(), 1, "not one line: {e}");
    assert!(e.contains("compared with itself"), "{e}");
}

#[test]
fn a_baseline_is_never_overwritten_without_force() {
    let d = tempfile::tempdir().unwrap();
    let results = d.path().join("results");
    let r = results.display().to_string();
    let a = write(d.path(), "a.json", &run(&spec("aaaa", 1.0, 1)));
    let b = write(d.path(), "b.json", &run(&spec("bbbb", 1.0, 2)));
    let o = pvcheck(&[
        "baseline",
        "save",
        a.to_str().unwrap(),
        "--name",
        "nightly",
        "--results",
        &r,
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let file = results.join("baselines/nightly.json");
    let before = std::fs::read(&file).unwrap();
    let o = pvcheck(&[
        "baseline",
        "save",
        b.to_str().unwrap(),
        "--name",
        "nightly",
        "--results",
        &r,
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--force"), "{}", stderr(&o));
    assert_eq!(
        std::fs::read(&file).unwrap(),
        before,
        "overwritten without --force"
    );
    // Pooling two runs: 12 repetitions per workload.
    let o = pvcheck(&[
        "baseline",
        "save",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--name",
        "nightly",
        "--force",
        "--results",
        &r,
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let reps = doc["trials"][1]["metrics"]["repetitions"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(reps, 12);
    let o = pvcheck(&["baseline", "list", "--results", &r]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("nightly") && out.contains("class-0 (loop, ext4) ×12"),
        "{out}"
    );
    // A run that is part of the baseline is refused as the new side.
    let o = pvcheck(&["compare", "nightly", a.to_str().unwrap(), "--results", &r]);
    assert_eq!(o.status.code(), Some(7));
    assert!(
        stderr(&o).contains("compared with itself"),
        "{}",
        stderr(&o)
    );
    // Bad names never escape results/baselines.
    let o = pvcheck(&[
        "baseline",
        "save",
        a.to_str().unwrap(),
        "--name",
        "../x",
        "--results",
        &r,
    ]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn like_setups_without_a_change_pass_and_exit_0() {
    let d = tempfile::tempdir().unwrap();
    let a = write(d.path(), "a.json", &run(&spec("aaaa", 1.0, 1)));
    let b = write(d.path(), "b.json", &run(&spec("bbbb", 1.0, 2)));
    let o = pvcheck(&[
        "compare",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--results",
        d.path().to_str().unwrap(),
    ]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{out}{}", stderr(&o));
    assert!(!out.contains("REGRESSED"), "{out}");
}

/// The same class on a slower mount: refused as unlike, with the mount options named; with
/// --allow-mismatch the differences head the output and the slowdown is a regression (exit 3).
#[test]
fn an_unlike_setup_is_refused_with_its_differences_and_judged_with_allow_mismatch() {
    let d = tempfile::tempdir().unwrap();
    let a = write(d.path(), "a.json", &run(&spec("aaaa", 1.0, 1)));
    let slow = Spec {
        mount_options: vec!["sync".into()],
        ..spec("bbbb", 0.6, 2)
    };
    let b = write(d.path(), "b.json", &run(&slow));
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
    let o = pvcheck(&["compare", a, b, "--results", d.path().to_str().unwrap()]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(7), "{e}");
    assert!(e.contains("refusing to compare unlike setups"), "{e}");
    assert!(
        e.contains("class-0: class.local.loop.mount_options: [] → [\"sync\"]"),
        "{e}"
    );
    assert!(e.contains("class-0: volume.mount_options"), "{e}");
    let o = pvcheck(&[
        "compare",
        a,
        b,
        "--allow-mismatch",
        "--results",
        d.path().to_str().unwrap(),
    ]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(3), "{out}{}", stderr(&o));
    assert!(out.contains("UNLIKE SETUPS"), "{out}");
    assert!(out.contains("REGRESSED"), "{out}");
}

/// Three against three allows no exact bound: a small change is not judged (exit 4, not 0:
/// a gate that cannot tell must not say green), `--allow-inconclusive` accepts it, and a plain
/// halving is a regression all the same.
#[test]
fn three_repetitions_are_not_judged_exit_4_unless_allowed_and_a_halving_regresses() {
    let d = tempfile::tempdir().unwrap();
    let side = |id: &str, speed: f64, seed: u64| {
        run(&Spec {
            speed,
            seed,
            ..Spec::new(id, 1, 2, 3)
        })
    };
    let a = write(d.path(), "a.json", &side("aaaa", 1.0, 1));
    let small = write(d.path(), "b.json", &side("bbbb", 0.99, 9));
    let half = write(d.path(), "c.json", &side("cccc", 0.5, 9));
    let (a, small, half) = (
        a.to_str().unwrap(),
        small.to_str().unwrap(),
        half.to_str().unwrap(),
    );
    let r = d.path().to_str().unwrap();
    let o = pvcheck(&["compare", a, small, "--results", r]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(4), "{out}");
    assert!(
        out.contains("not judged") && out.contains("3 vs 3"),
        "{out}"
    );
    let o = pvcheck(&["compare", a, small, "--allow-inconclusive", "--results", r]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let o = pvcheck(&["compare", a, half, "--results", r]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(3), "{out}");
    assert!(out.contains("every new repetition is worse"), "{out}");
}

/// The whole gate fails on damaged data, whatever the speed.
#[test]
fn an_integrity_failure_fails_the_gate_whatever_the_speed() {
    let d = tempfile::tempdir().unwrap();
    let a = write(d.path(), "a.json", &run(&spec("aaaa", 1.0, 1)));
    let mut bad = run(&spec("bbbb", 1.2, 2));
    bad["trials"][0]["status"] = "failed".into();
    bad["trials"][0]["failure"] =
        serde_json::json!({ "message": "corrupt block at offset 4096", "details": null });
    let b = write(d.path(), "b.json", &bad);
    let o = pvcheck(&[
        "compare",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--results",
        d.path().to_str().unwrap(),
    ]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("INTEGRITY FAILED class-0::integrity::recreate"),
        "{out}"
    );
}
