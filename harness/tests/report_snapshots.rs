//! The report files, pinned: JUnit and Markdown as insta snapshots of a fixed synthetic
//! comparison (one regressed class, one clean), and the HTML checked for being one
//! self-contained file (no URL, no script) that holds the charts.

use std::path::Path;

use pvcheck::compare::synthetic::{Spec, run};
use pvcheck::compare::{self, RunDoc};
use pvcheck::report::outputs::ReportInput;

fn report() -> compare::Report {
    let base = Spec {
        noise: 0.01,
        seed: 1,
        histograms: true,
        ..Spec::new("base0001", 2, 3, 8)
    };
    let mut new = run(&Spec {
        noise: 0.01,
        seed: 2,
        histograms: true,
        ..Spec::new("new00002", 2, 3, 8)
    });
    // class-0 gets 15 % slower; class-1 stays the same. 8 repetitions: with 5, a family of 18
    // comparisons cannot reach p < 0.05 after Holm (the smallest exact p is 1/252).
    for t in new["trials"].as_array_mut().unwrap() {
        if t["class"] == "class-0" && t["check"].as_str().unwrap().starts_with("speed::") {
            for r in t["metrics"]["repetitions"].as_array_mut().unwrap() {
                let b = &mut r["bench"];
                b["iops"] = (b["iops"].as_f64().unwrap() * 0.85).into();
                b["bw_bytes"] = (b["bw_bytes"].as_f64().unwrap() * 0.85).into();
            }
        }
    }
    let b = RunDoc::from_value(Path::new("results/baselines/nightly.json"), run(&base)).unwrap();
    let n = RunDoc::from_value(
        Path::new("results/runs/20261128T000000Z-new00002.json"),
        new,
    )
    .unwrap();
    compare::compare(b, n, false).unwrap()
}

#[test]
fn junit_report_snapshot() {
    let r = report();
    let input = ReportInput {
        run: &r.new,
        comparison: Some(&r),
        refused: None,
        allow_inconclusive: false,
        results: Path::new("/nonexistent"),
    };
    insta::assert_snapshot!(pvcheck::report::junit::render(&input));
}

#[test]
fn markdown_report_snapshot() {
    let r = report();
    let input = ReportInput {
        run: &r.new,
        comparison: Some(&r),
        refused: None,
        allow_inconclusive: false,
        results: Path::new("/nonexistent"),
    };
    insta::assert_snapshot!(pvcheck::report::markdown::render(&input));
}

#[test]
fn markdown_of_a_run_without_baseline_snapshot() {
    let r = report();
    let input = ReportInput {
        run: &r.new,
        comparison: None,
        refused: None,
        allow_inconclusive: false,
        results: Path::new("/nonexistent"),
    };
    insta::assert_snapshot!(pvcheck::report::markdown::render(&input));
}

/// Issue 19: a refused comparison is a failure in every report, never a green run.
#[test]
fn a_refused_comparison_is_red_in_junit_markdown_html_and_prometheus() {
    let r = report();
    let input = ReportInput {
        run: &r.new,
        comparison: None,
        refused: Some(
            "refusing to compare unlike setups (1 difference(s)):\n  c: volume.fs: ext4 → xfs",
        ),
        allow_inconclusive: false,
        results: Path::new("/nonexistent"),
    };
    let junit = pvcheck::report::junit::render(&input);
    assert!(
        junit.contains("pvcheck-gate") && junit.contains("type=\"refused\""),
        "{junit}"
    );
    let md = pvcheck::report::markdown::render(&input);
    assert!(md.starts_with("## ❌ pvcheck gate: REFUSED"), "{md}");
    assert!(!md.contains('✅'), "{md}");
    let html = pvcheck::report::html::render(&input);
    assert!(html.contains("gate gate-red\">Gate: REFUSED"), "{html}");
    let prom = pvcheck::report::prometheus::render(&input);
    assert!(
        prom.contains("pvcheck_gate_outcome{outcome=\"refused\"} 1"),
        "{prom}"
    );
}

/// Figures not judged fail the JUnit gate case unless --allow-inconclusive accepts them.
#[test]
fn figures_not_judged_fail_the_junit_gate_unless_allowed() {
    let mut r = report();
    for c in &mut r.comparisons {
        c.verdict = pvcheck::compare::Verdict::Pass;
    }
    r.comparisons[0].verdict = pvcheck::compare::Verdict::Inconclusive;
    for allow in [false, true] {
        let input = ReportInput {
            run: &r.new,
            comparison: Some(&r),
            refused: None,
            allow_inconclusive: allow,
            results: Path::new("/nonexistent"),
        };
        let junit = pvcheck::report::junit::render(&input);
        assert_eq!(junit.contains("type=\"not-judged\""), !allow, "{junit}");
        let md = pvcheck::report::markdown::render(&input);
        assert!(md.contains("NOT JUDGED"), "{md}");
        assert_eq!(md.starts_with("## ❌"), !allow, "{md}");
    }
}

/// One file that renders anywhere, offline: no external reference of any kind, no script,
/// and the charts inline: per class IOPS, bandwidth, percentile curves per workload, trend.
#[test]
fn html_is_self_contained_and_holds_the_charts() {
    let r = report();
    let d = tempfile::tempdir().unwrap();
    // Three runs in results/runs for the trend.
    std::fs::create_dir_all(d.path().join("runs")).unwrap();
    for (i, speed) in [1.0, 0.97, 1.02].iter().enumerate() {
        let doc = run(&Spec {
            speed: *speed,
            seed: i as u64,
            start: format!("2026-11-2{}T03:00:00Z", i + 1),
            ..Spec::new(&format!("trend{i}"), 2, 3, 5)
        });
        std::fs::write(
            d.path()
                .join(format!("runs/2026112{}T030000Z-trend{i}.json", i + 1)),
            doc.to_string(),
        )
        .unwrap();
    }
    let input = ReportInput {
        run: &r.new,
        comparison: Some(&r),
        refused: None,
        allow_inconclusive: false,
        results: d.path(),
    };
    let html = pvcheck::report::html::render(&input);
    for bad in ["http://", "https://", "<script", "src=", "@import", "url("] {
        assert!(
            !html.contains(bad),
            "the HTML references something outside itself: {bad}"
        );
    }
    let svgs = html.matches("<svg").count();
    // Per class: IOPS (randread-4k-qd64, randwrite-4k-qd64, randread-4k-qd1) = 1 rates chart,
    // 3 percentile charts, 1 trend = 5; two classes.
    assert_eq!(svgs, 10, "{svgs} charts");
    assert!(html.contains("class-0: IOPS, median and 95% interval"));
    assert!(html.contains("class-1: trend over 3 runs"));
    assert!(html.contains("v-regressed"));
    assert!(
        html.contains("<polyline") || html.contains("<path"),
        "no curves drawn"
    );
    std::fs::write("/tmp/pvcheck-report-test.html", &html).ok();
}
