//! `--junit FILE`: a testsuite per class, a testcase per trial (CI systems show these). A
//! failed trial is a failure with its message; an ignored one is skipped with its reason; a
//! speed trial with a regressed metric is a failure whose text gives the numbers (old → new,
//! change, interval, threshold, adjusted p); the other verdicts go to the testcase's output.

use std::time::Duration;

use quick_junit::{NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestSuite};

use super::compare_table::{change, interval, old_new};
use super::outputs::{GateState, ReportInput};
use crate::compare::{Comparison, Verdict};

fn line(c: &Comparison) -> String {
    let limit = if c.metric.higher_is_better() {
        -c.threshold
    } else {
        c.threshold
    } * 100.0;
    let mut s = format!(
        "{} {}: {} ({}, interval {}, threshold {limit:+.0}%, margin {:+.1}%)",
        c.metric.label(),
        c.verdict.as_str(),
        old_new(c),
        change(c),
        interval(c),
        c.margin_pct(),
    );
    if c.verdict != Verdict::Pass {
        s.push_str(&format!(": {}", c.reason));
    }
    s
}

/// The gate's own testsuite, first: one testcase whose status is the gate's verdict, so a CI
/// dashboard is never greener than the gate (a refusal or a regression is a failure; figures
/// not judged are one too unless `--allow-inconclusive`).
fn gate_suite(input: &ReportInput, state: GateState) -> TestSuite {
    let mut suite = TestSuite::new("pvcheck-gate");
    let (message, description) = match (input.refused, input.comparison) {
        (Some(why), _) => (
            "REFUSED: the comparison with the baseline was refused: no speed verdict".to_string(),
            why.to_string(),
        ),
        (None, Some(r)) => (
            r.summary(),
            r.comparisons
                .iter()
                .filter(|c| c.verdict != Verdict::Pass && c.verdict != Verdict::Improved)
                .map(|c| format!("{} {}", c.workload, line(c)))
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        (None, None) => (String::new(), String::new()),
    };
    let status = if state.is_failure() {
        let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
        s.set_type(match state {
            GateState::Refused => "refused",
            GateState::Failed => "check",
            GateState::Regressed => "regression",
            _ => "not-judged",
        });
        s.set_message(message.clone());
        s.set_description(description);
        s
    } else {
        TestCaseStatus::success()
    };
    let mut case = TestCase::new("gate", status);
    case.set_classname("pvcheck-gate");
    if !state.is_failure() {
        case.set_system_out(message);
    }
    suite.add_test_case(case);
    suite
}

pub fn render(input: &ReportInput) -> String {
    let run = input.run;
    let mut report = Report::new("pvcheck");
    if let Some(state) = input.gate() {
        report.add_test_suite(gate_suite(input, state));
    }
    for class in run.classes() {
        let mut suite = TestSuite::new(class.clone());
        suite.add_property(Property::new("run_id", run.run_ids.join(",")));
        suite.add_property(Property::new("profile", run.profile.clone()));
        if let Some(cmp) = input.comparison {
            suite.add_property(Property::new("baseline", cmp.base.label.clone()));
        }
        for t in run.trials.iter().filter(|t| t.class == class) {
            let verdicts: Vec<&Comparison> = input
                .comparison
                .map(|c| {
                    c.comparisons
                        .iter()
                        .filter(|x| x.class == class && Some(x.workload.as_str()) == t.workload())
                        .collect()
                })
                .unwrap_or_default();
            let regressed: Vec<&&Comparison> = verdicts
                .iter()
                .filter(|c| c.verdict == Verdict::Regressed)
                .collect();
            let status = match t.status.as_str() {
                "failed" => {
                    let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                    let msg = t.failure_message.clone().unwrap_or_default();
                    s.set_message(msg.lines().next().unwrap_or("").to_string());
                    s.set_type(if t.is_integrity_failure() {
                        "integrity"
                    } else if t.is_upgrade_failure() {
                        "upgrade"
                    } else {
                        "check"
                    });
                    s.set_description(msg);
                    s
                }
                "ignored" => {
                    let mut s = TestCaseStatus::skipped();
                    s.set_message(t.ignored_reason.clone().unwrap_or_default());
                    s
                }
                "interrupted" => {
                    let mut s = TestCaseStatus::non_success(NonSuccessKind::Error);
                    s.set_message("interrupted");
                    s
                }
                _ if !regressed.is_empty() => {
                    let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                    s.set_type("regression");
                    s.set_message(format!(
                        "{} regressed against {}",
                        regressed
                            .iter()
                            .map(|c| c.metric.label())
                            .collect::<Vec<_>>()
                            .join(", "),
                        input
                            .comparison
                            .map(|c| c.base.label.as_str())
                            .unwrap_or("")
                    ));
                    s.set_description(
                        regressed
                            .iter()
                            .map(|c| line(c))
                            .collect::<Vec<_>>()
                            .join("\n"),
                    );
                    s
                }
                _ => TestCaseStatus::success(),
            };
            let mut case = TestCase::new(t.check.clone(), status);
            case.set_classname(class.clone());
            case.set_time(Duration::from_secs_f64(t.duration_s.max(0.0)));
            if !verdicts.is_empty() {
                case.set_system_out(
                    verdicts
                        .iter()
                        .map(|c| line(c))
                        .collect::<Vec<_>>()
                        .join("\n"),
                );
            }
            suite.add_test_case(case);
        }
        report.add_test_suite(suite);
    }
    report
        .to_string()
        .unwrap_or_else(|e| format!("<!-- cannot serialize the JUnit report: {e} -->\n"))
}
