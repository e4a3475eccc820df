//! The end of a run: what the trials left is removed, the result document written, the exit
//! code decided; after SIGINT/SIGTERM the same, from the signal thread, and the process exits.

use std::path::PathBuf;
use std::time::SystemTime;

use super::{RunCtx, RunOptions, document, stdout_relay, verdict};
use crate::exit_code;
use crate::platform::RunFilter;
use crate::report::results::{self, Status, TrialResult};
use crate::report::summary::Summary;

/// Ends the run: the trials a signal cut short are listed (`interrupted`), the speed volumes
/// released, the platform told, everything the run created and did not keep removed, the result
/// file written. Returns where it was written (or why not), the problems (one line each) and the
/// exit code.
pub(super) fn finish(
    ctx: &RunCtx,
    opts: &RunOptions,
    env: &serde_json::Value,
    selection: &serde_json::Value,
    started: SystemTime,
    interrupted: bool,
) -> (Result<PathBuf, String>, Vec<String>, u8) {
    if interrupted {
        // The trials the signal cut short: listed, so a partial result says what was
        // running, not only what finished.
        for (name, elapsed) in ctx.progress.running() {
            let (class, check) = name.split_once("::").unwrap_or((&name, ""));
            ctx.sink.push(TrialResult {
                name: name.clone(),
                class: class.to_string(),
                check: check.to_string(),
                status: Status::Interrupted,
                started: results::rfc3339_utc_millis(
                    SystemTime::now()
                        .checked_sub(elapsed)
                        .unwrap_or_else(SystemTime::now),
                ),
                duration_s: elapsed.as_secs_f64(),
                metrics: serde_json::Value::Object(Default::default()),
                warnings: Vec::new(),
                ignored_reason: None,
                failure: None,
                timeline: Vec::new(),
            });
        }
    }
    ctx.progress.done();
    ctx.speed.release_all();
    // What a before-upgrade run keeps is marked as waiting for its resume (or, after
    // a signal, given up) before the rest goes.
    let mut problems = Vec::new();
    if let Err(e) = ctx.platform.end_of_run(interrupted) {
        problems.push(format!("ending the run on the platform: {e}"));
    }
    problems.extend(remove_everything(ctx, interrupted));
    let ending = verdict::Ending {
        leftovers: !problems.is_empty(),
        no_result: false,
        not_pushed: false,
    };
    let code = if interrupted {
        exit_code::INTERRUPTED
    } else {
        verdict::exit_code(&ctx.sink.trials(), ending)
    };
    let doc = document::result_doc(
        ctx,
        opts,
        env.clone(),
        started,
        interrupted,
        code,
        selection.clone(),
    );
    let path = doc.write(&opts.results, started).map_err(|e| {
        format!(
            "cannot write the result file under {}: {e}",
            opts.results.display()
        )
    });
    (path, problems, code)
}

/// The signal thread's work after SIGINT/SIGTERM: close the registry, [`finish`], print the
/// last two lines every run prints, exit 130.
pub(super) fn on_signal(
    sig: i32,
    ctx: &RunCtx,
    finish: &(dyn Fn(bool) -> (Result<PathBuf, String>, Vec<String>, u8) + Send + Sync),
) -> ! {
    eprintln!(
        "\npvcheck: {} received: stopping the trials and removing what this run created",
        if sig == libc::SIGTERM {
            "SIGTERM"
        } else {
            "SIGINT"
        }
    );
    ctx.registry.close(std::time::Duration::from_secs(30));
    let (path, problems, _) = finish(true);
    stdout_relay::finish();
    for p in &problems {
        eprintln!("pvcheck: {p}");
    }
    // The last two lines, as for every run: the verdict, then where the (partial)
    // result is.
    let ending = verdict::Ending {
        leftovers: !problems.is_empty(),
        no_result: path.is_err(),
        not_pushed: false,
    };
    eprintln!(
        "{}",
        verdict::line(
            &Summary::of(&ctx.sink.trials()),
            exit_code::INTERRUPTED,
            ending
        )
    );
    eprintln!(
        "{}",
        verdict::result_line(path.as_deref().map_err(String::as_str))
    );
    std::process::exit(i32::from(exit_code::INTERRUPTED))
}

/// Removes what the run left (not kept volumes); returns problems, one line each.
///
/// On interruption the trial threads are still winding down (killing their agents, destroying
/// their volumes) while this runs, so removal is retried until nothing is left.
fn remove_everything(ctx: &RunCtx, interrupted: bool) -> Vec<String> {
    let filter = RunFilter::Run {
        run_id: ctx.run_id.clone(),
        class: None,
    };
    let mut last_problem = None;
    for attempt in 0..20 {
        if attempt > 0 {
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
        match ctx.platform.remove_leftovers(&filter) {
            Ok(removed) => {
                // The shared parent directory is expected; anything else was a check's leak
                // (the class's `cleanup` trial reports it as a failure).
                let leaked: Vec<String> = removed
                    .iter()
                    .filter(|l| l.kind != "shared-dir")
                    .map(|l| format!("{} {}", l.kind, l.what))
                    .collect();
                if !leaked.is_empty() && !interrupted {
                    eprintln!(
                        "pvcheck: removed {} the checks left behind: {}",
                        crate::registry::count(leaked.len(), "thing"),
                        leaked.join("; ")
                    );
                }
            }
            Err(e) => {
                last_problem = Some(format!(
                    "could not remove everything this run created: {e}; run `pvcheck cleanup`"
                ));
                continue;
            }
        }
        if !ctx
            .kept
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
        {
            return Vec::new(); // the run directory holds the kept volume's ledgers
        }
        match ctx.registry.remove_run_dir() {
            Ok(()) => return Vec::new(),
            Err(e) => last_problem = Some(format!("could not remove the run directory: {e}")),
        }
    }
    last_problem.into_iter().collect()
}
