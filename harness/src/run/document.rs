//! The result document of a run (docs/results.md): what was selected, the environment and the
//! platform's fingerprint, the timing, the trials, what was kept, and how a split upgrade run
//! is resumed.

use std::time::SystemTime;

use libtest_mimic::Arguments;

use super::{RunCtx, RunOptions};
use crate::platform::{AgentBinary, Platform};
use crate::report::results::{self, RunResult, Status};
use crate::report::summary::Summary;

/// `selection` in the result file: what was asked for and how much of the plan it selected, so
/// a filtered run never looks like a full run with fewer trials.
pub(super) fn selection(
    args: &Arguments,
    filters: &[String],
    planned: usize,
    selected: usize,
) -> serde_json::Value {
    serde_json::json!({
        // One filter as a string (null for none), several as an array; `filters` always lists them.
        "filter": match filters {
            [] => serde_json::Value::Null,
            [one] => one.clone().into(),
            many => many.to_vec().into(),
        },
        "filters": filters,
        "exact": args.exact,
        "skip": args.skip,
        "ignored": args.ignored,
        "include_ignored": args.include_ignored,
        "planned": planned,
        "selected": selected,
        "complete": planned == selected,
    })
}

fn agent_version(agent: &AgentBinary) -> Option<String> {
    let mut c = std::process::Command::new(&agent.path);
    c.args(&agent.prefix).arg("--version");
    let out = crate::sys::run(&mut c, std::time::Duration::from_secs(10)).ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

pub(super) fn environment(opts: &RunOptions, platform: &dyn Platform) -> serde_json::Value {
    let mut env = platform.fingerprint();
    if let Some(o) = env.as_object_mut() {
        o.insert("pvcheck_version".into(), env!("CARGO_PKG_VERSION").into());
        o.insert("agent".into(), opts.agent.path.display().to_string().into());
        o.insert("agent_version".into(), agent_version(&opts.agent).into());
        o.insert("class_files".into(), opts.class_files.clone().into());
        o.insert("repeat".into(), opts.repeat.into());
    }
    env
}

/// Wall time, and how much of it had at least one agent running: the rest is the harness's own
/// work (provisioning, mkfs, mounts, upgrade commands, bookkeeping).
pub(super) fn timing(ctx: &RunCtx, started: SystemTime) -> serde_json::Value {
    let wall = started.elapsed().map(|d| d.as_secs_f64()).unwrap_or(0.0);
    let busy = ctx.agent_clock.busy_seconds();
    let trials = ctx.sink.trials();
    let summed: f64 = trials.iter().map(|t| t.duration_s).sum();
    let waits = crate::platform::timeline::sums(trials.iter().flat_map(|t| &t.timeline));
    serde_json::json!({
        "wall_s": wall,
        "agent_busy_s": busy,
        "agent_summed_s": ctx.agent_clock.summed_seconds(),
        "harness_only_s": (wall - busy).max(0.0),
        "harness_only_share": if wall > 0.0 { ((wall - busy) / wall).max(0.0) } else { 0.0 },
        "trials_summed_s": summed,
        "waits_s": waits,
    })
}

/// The run's line on where its trials' time went (platform waits as shares of the trials'
/// summed time), when the platform recorded any.
pub(super) fn waits_line(ctx: &RunCtx) -> Option<String> {
    let trials = ctx.sink.trials();
    let summed: f64 = trials.iter().map(|t| t.duration_s).sum();
    let waits = crate::platform::timeline::sums(trials.iter().flat_map(|t| &t.timeline));
    crate::platform::timeline::shares(&waits, summed)
        .map(|s| format!("pvcheck: where the trials' {summed:.1}s went: {s}"))
}

pub(super) fn result_doc(
    ctx: &RunCtx,
    opts: &RunOptions,
    mut env: serde_json::Value,
    started: SystemTime,
    interrupted: bool,
    exit_code: u8,
    selection: serde_json::Value,
) -> RunResult {
    let trials = ctx.sink.trials();
    // Only the classes that ran: at least one trial did work (was not ignored).
    let mut classes = serde_json::Map::new();
    for c in &opts.classes {
        let ran = trials
            .iter()
            .any(|t| t.class == c.name() && t.status != Status::Ignored);
        if !ran {
            continue;
        }
        let (from, volume) = ctx.sink.volume_of(c.name()).unzip();
        classes.insert(
            c.name().to_string(),
            serde_json::json!({ "parameters": c.parameters(), "volume": volume, "volume_from": from,
                "thresholds": c.thresholds.clone().unwrap_or_default().resolve() }),
        );
    }
    if let Some(o) = env.as_object_mut() {
        o.insert("classes".into(), classes.into());
        if let Some(r) = ctx.platform.report() {
            o.insert("platform_report".into(), r);
        }
    }
    let kept = ctx.kept.lock().unwrap_or_else(|e| e.into_inner()).clone();
    RunResult {
        schema_version: results::SCHEMA_VERSION,
        run_id: ctx.run_id.clone(),
        seed: ctx.seed,
        start: results::rfc3339_utc(started),
        end: results::rfc3339_utc(SystemTime::now()),
        interrupted,
        platform: ctx.platform.name().into(),
        profile: ctx.profile.name().into(),
        exit_code,
        command_line: opts.command_line.clone(),
        selection,
        summary: Summary::of(&trials),
        environment: env,
        trials,
        kept: kept.iter().map(|k| k.message.clone()).collect(),
        kept_volumes: kept,
        timing: timing(ctx, started),
        phase: crate::phase::record(&ctx.phase, &ctx.run_id, &resume_context(opts)),
    }
}

/// What the command that resumes a before-upgrade run needs of this run's options.
pub(super) fn resume_context(opts: &RunOptions) -> crate::phase::ResumeContext<'_> {
    let files: &[String] = if opts
        .class_files
        .iter()
        .any(|f| f == crate::config::DEFAULT_CLASSES_NAME)
    {
        &[]
    } else {
        &opts.class_files
    };
    crate::phase::ResumeContext {
        platform_args: opts.platform.resume_args(),
        class_files: files,
        profile: opts.profile.name(),
        results: &opts.results,
    }
}
