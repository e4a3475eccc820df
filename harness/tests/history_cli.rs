//! `pvcheck history` through the real binary, on synthetic nightly results directories: a
//! known step at a known night is named and exits 3; noise alone has no change point and
//! exits 0; too short a history exits 4 (not green) unless --allow-inconclusive; bad input is
//! one line and exit 2.

use std::path::Path;
use std::process::{Command, Output};

use pvcheck::compare::synthetic::{Spec, run};

fn pvcheck(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pvcheck"))
        .args(args)
        .output()
        .expect("run pvcheck")
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// One run per night (2026-10-01, -02, …) of one class × `workloads` workloads, 5
/// repetitions each, at the given relative speeds, 1 % noise between repetitions.
fn nights(results: &Path, speeds: &[f64], workloads: usize) {
    let runs = results.join("runs");
    std::fs::create_dir_all(&runs).unwrap();
    for (i, s) in speeds.iter().enumerate() {
        let day = i + 1;
        let spec = Spec {
            start: format!("2026-10-{day:02}T03:00:00Z"),
            speed: *s,
            noise: 0.01,
            seed: 7 + i as u64,
            ..Spec::new(&format!("night{day:02}"), 1, workloads, 5)
        };
        std::fs::write(
            runs.join(format!("202610{day:02}T030000Z-night{day:02}.json")),
            serde_json::to_vec(&run(&spec)).unwrap(),
        )
        .unwrap();
    }
}

fn dir(d: &tempfile::TempDir) -> &str {
    d.path().to_str().unwrap()
}

#[test]
fn a_step_at_a_known_night_is_named_and_exits_3() {
    let d = tempfile::tempdir().unwrap();
    // 15 nights at full speed, then 7 nights 25 % slower from 2026-10-16 (night16) on.
    let mut speeds = vec![1.0; 15];
    speeds.extend([0.75; 7]);
    nights(d.path(), &speeds, 2);
    let o = pvcheck(&["history", "--results", dir(&d)]);
    let text = out(&o);
    assert_eq!(o.status.code(), Some(3), "{text}{}", err(&o));
    assert!(
        text.contains("change on 2026-10-16 (run night16)"),
        "{text}"
    );
    assert!(
        text.contains("regressed   class-0 randread-4k-qd64 IOPS"),
        "{text}"
    );
    assert!(text.contains(" |-2"), "{text}");
    assert!(
        text.lines()
            .last()
            .unwrap()
            .starts_with("history: REGRESSED"),
        "{text}"
    );
    // Latency rose with it: the p99 series regressed too (higher is worse).
    assert!(
        text.contains("regressed   class-0 randread-4k-qd64 p99"),
        "{text}"
    );
    assert!(err(&o).is_empty(), "{}", err(&o));
    // The same, as JSON.
    let o = pvcheck(&["history", "--results", dir(&d), "--format", "json"]);
    assert_eq!(o.status.code(), Some(3));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let iops = v["series"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["workload"] == "randread-4k-qd64" && s["metric"] == "iops")
        .unwrap();
    assert_eq!(iops["verdict"], "regressed");
    assert_eq!(iops["change_points"][0]["run_id"], "night16");
    assert!(iops["change_points"][0]["p"].as_f64().unwrap() <= 0.01);
    assert_eq!(v["exit_code"], 3);
    // Only another workload: its own series, the same verdict.
    let o = pvcheck(&[
        "history",
        "--results",
        dir(&d),
        "--workload",
        "randwrite-4k-qd64",
    ]);
    assert_eq!(o.status.code(), Some(3));
    assert!(!out(&o).contains("randread-4k-qd64"), "{}", out(&o));
}

#[test]
fn noise_alone_has_no_change_point_and_exits_0() {
    let d = tempfile::tempdir().unwrap();
    nights(d.path(), &[1.0; 20], 3);
    let o = pvcheck(&["history", "--results", dir(&d)]);
    let text = out(&o);
    assert_eq!(o.status.code(), Some(0), "{text}{}", err(&o));
    assert!(!text.contains("change on"), "{text}");
    let series: Vec<&str> = text.lines().filter(|l| l.contains(" class-0 ")).collect();
    assert_eq!(series.len(), 9, "{text}");
    assert!(
        series
            .iter()
            .all(|l| l.starts_with("stable ") && !l.contains("%|")),
        "{text}"
    );
    assert!(
        text.lines().last().unwrap().starts_with(
            "history: OK: 0 regressed, 0 not judged, 0 improved, 9 stable of 9 series (20 runs)"
        ),
        "{text}"
    );
}

#[test]
fn too_short_a_history_exits_4_unless_allowed() {
    let d = tempfile::tempdir().unwrap();
    // A halving after 4 nights: visible, but 8 nights cannot make a significant change point.
    nights(d.path(), &[1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5], 1);
    let o = pvcheck(&["history", "--results", dir(&d)]);
    let text = out(&o);
    assert_eq!(o.status.code(), Some(4), "{text}");
    assert!(text.contains("not judged: 8 runs, 11 needed"), "{text}");
    assert!(
        text.lines()
            .last()
            .unwrap()
            .starts_with("history: NOT JUDGED"),
        "{text}"
    );
    let o = pvcheck(&["history", "--results", dir(&d), "--allow-inconclusive"]);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    assert!(out(&o).contains("3 not judged"), "{}", out(&o));
}

#[test]
fn bad_results_is_one_line_and_exit_2() {
    let d = tempfile::tempdir().unwrap();
    let missing = d.path().join("nope");
    let o = pvcheck(&["history", "--results", missing.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(out(&o).is_empty());
    let e = err(&o);
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(
        e.starts_with("pvcheck: --results: ") && e.contains("no such directory"),
        "{e}"
    );

    nights(d.path(), &[1.0; 3], 1);
    let o = pvcheck(&["history", "--results", dir(&d), "--class", "nosuch"]);
    assert_eq!(o.status.code(), Some(2));
    let e = err(&o);
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(e.contains("--class") && e.contains("have: class-0"), "{e}");
}

#[test]
fn a_broken_file_is_one_warning_and_the_rest_is_judged() {
    let d = tempfile::tempdir().unwrap();
    nights(d.path(), &[1.0; 12], 1);
    std::fs::write(d.path().join("runs/broken.json"), "{\"schema_version\": 1,").unwrap();
    let o = pvcheck(&["history", "--results", dir(&d)]);
    assert_eq!(o.status.code(), Some(0), "{}{}", out(&o), err(&o));
    let e = err(&o);
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(
        e.contains("warning: skipped") && e.contains("broken.json") && e.contains("truncated"),
        "{e}"
    );
    assert!(out(&o).contains("(12 runs)"), "{}", out(&o));
}

/// The HTML report's trend chart marks the change point `history` finds, in the workload's
/// colour with its change, and says nothing of the kind on noise alone.
#[test]
fn the_html_trend_marks_the_change_point_history_finds() {
    let render = |d: &tempfile::TempDir, newest: &str| {
        let doc = pvcheck::compare::RunDoc::read(&d.path().join(newest)).unwrap();
        let input = pvcheck::report::outputs::ReportInput {
            run: &doc,
            comparison: None,
            refused: None,
            allow_inconclusive: false,
            results: d.path(),
        };
        pvcheck::report::html::render(&input)
    };
    let d = tempfile::tempdir().unwrap();
    let mut speeds = vec![1.0; 15];
    speeds.extend([0.75; 7]);
    nights(d.path(), &speeds, 1);
    let html = render(&d, "runs/20261022T030000Z-night22.json");
    assert!(html.contains("class-0: trend over 22 runs"), "{html}");
    assert!(
        html.contains("randread-4k-qd64 -2"),
        "no change point label"
    );

    let quiet = tempfile::tempdir().unwrap();
    nights(quiet.path(), &[1.0; 22], 1);
    let html = render(&quiet, "runs/20261022T030000Z-night22.json");
    assert!(html.contains("class-0: trend over 22 runs"));
    assert!(
        !html.contains("randread-4k-qd64 -"),
        "a change point on noise alone"
    );
}
