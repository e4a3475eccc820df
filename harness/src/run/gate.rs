//! The end of `pvcheck run`: `--baseline NAME` compares the new run with it, and the report
//! flags (`--junit`, `--markdown`, `--html`, `--prometheus`) write their files;
//! `--push-metrics` pushes the figures to a Pushgateway.
//!
//! The exit code: the run's own (a failed check, 1) first; then the gate's (3 regressed,
//! 4 figures not judged unless `--allow-inconclusive`, 7 the comparison refused: unlike
//! setups); 2 when a report could not be written. A push that fails is a warning line and
//! changes no exit code. The reports say the gate's verdict first, a
//! refusal included.

use std::path::Path;

use super::RunOptions;
use crate::compare::{self, RunDoc};
use crate::exit_code;
use crate::report::compare_table;
use crate::report::outputs::{self, ReportInput};

/// The exit code, and whether everything `--push-metrics` asked for was pushed (true without
/// the flag).
pub fn after_run(opts: &RunOptions, result_file: Option<&Path>, run_code: u8) -> (u8, bool) {
    let (code, pushed) = judge_and_report(opts, result_file, run_code);
    if let Some(n) = opts.keep_runs {
        match crate::report::results::prune_runs(&opts.results, n as usize, result_file) {
            Ok(removed) if !removed.is_empty() => eprintln!(
                "pvcheck: --keep-runs {n}: removed {} older result file(s) from {}",
                removed.len(),
                opts.results.join("runs").display()
            ),
            Ok(_) => {}
            Err(e) => eprintln!("pvcheck: --keep-runs {n}: {e} (nothing else changed)"),
        }
    }
    (code, pushed)
}

/// `--create-baseline` on the first night: the run becomes the baseline when it passed.
fn create_baseline(name: &str, opts: &RunOptions, file: &Path, run_code: u8) -> u8 {
    if run_code != exit_code::OK {
        eprintln!(
            "pvcheck: --create-baseline: no baseline {name} yet, and this run is not saved as it: its checks did not all pass (exit {run_code})"
        );
        return run_code;
    }
    match crate::baseline::save(&[file.to_path_buf()], name, &opts.results, false, false) {
        Ok((path, _)) => {
            println!(
                "gate: NO BASELINE YET: this run is now baseline {name} ({}); the gate starts with the next run",
                path.display()
            );
            exit_code::OK
        }
        Err(e) => {
            eprintln!("pvcheck: --create-baseline: not saved as baseline {name}: {e}");
            exit_code::INCONCLUSIVE
        }
    }
}

fn judge_and_report(opts: &RunOptions, result_file: Option<&Path>, run_code: u8) -> (u8, bool) {
    if opts.baseline.is_none() && opts.reports.is_empty() && opts.create_baseline.is_none() {
        return (run_code, true);
    }
    let Some(file) = result_file else {
        eprintln!("pvcheck: no result file was written: no comparison and no reports");
        return (
            run_code.max(exit_code::CHECK_FAILED),
            opts.reports.push.is_none(),
        );
    };
    let run = match RunDoc::read(file) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pvcheck: {e}");
            return (
                run_code.max(exit_code::CHECK_FAILED),
                opts.reports.push.is_none(),
            );
        }
    };
    let mut gate_code = match &opts.create_baseline {
        Some(name) => create_baseline(name, opts, file, run_code),
        None => exit_code::OK,
    };
    let mut refused = None;
    let report = match opts.baseline.clone() {
        None => None,
        Some(base) => {
            // Only with a baseline: it reads up to 60 run files of the results' history.
            let noise = compare::history::noise_of(&opts.results);
            match compare::compare_with_noise(base, run.clone(), opts.allow_mismatch, &noise) {
                Ok(r) => {
                    println!("{}", compare_table::render(&r));
                    gate_code = r.exit_code(opts.allow_inconclusive);
                    Some(r)
                }
                Err(e) => {
                    eprintln!("pvcheck: --baseline: GATE REFUSED: {e}");
                    gate_code = e.exit_code();
                    refused = Some(e.to_string());
                    None
                }
            }
        }
    };
    let input = ReportInput {
        run: report.as_ref().map_or(&run, |r| &r.new),
        comparison: report.as_ref(),
        refused: refused.as_deref(),
        allow_inconclusive: opts.allow_inconclusive,
        results: &opts.results,
    };
    for p in outputs::write_all(&opts.reports, &input) {
        eprintln!("pvcheck: {p}");
        gate_code = gate_code.max(exit_code::USAGE);
    }
    // A failed push is a warning line only: the exit code is the storage's verdict.
    let pushed = outputs::push(&opts.reports, &input);
    let code = if run_code != exit_code::OK {
        run_code
    } else {
        gate_code
    };
    (code, pushed)
}
