//! `pvcheck run`: classes × checks as libtest-mimic trials, on one platform, with a result file.
//!
//! [`execute`] loads nothing itself: it gets the classes and options from the command line
//! layer and goes plan → trials → result. Plan: the trials ([`plan`]) on a listing platform,
//! refusing a filter that selects nothing. Trials: the run registry, the platform of the run
//! (`crate::platform::select`, the one place a platform is built), the signal handling, the
//! trials. Result: remove what is left, write the result file, print the per-class tables.
//! It returns the exit code (see `crate::exit_code`).

mod document;
pub mod gate;
pub mod list;
pub mod preflight;
pub mod schedule;
pub mod stdout_relay;
mod teardown;
pub mod verdict;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use libtest_mimic::{Arguments, Completion, Failed, Trial};

use crate::checks::{self, Check, CheckCtx, TrialData, Verdict};
use crate::config::ClassSpec;
use crate::exit_code;
use crate::phase::Phase;
use crate::platform::select::{Choice, PlatformKind, Purpose, SelectCtx};
use crate::platform::{self, AgentBinary, Platform};
use crate::profile::Profile;
use crate::registry::Registry;
use crate::report::errors::SeenErrors;
use crate::report::progress::Progress;
use crate::report::results::{
    self, FailureCategory, FailureRecord, KeptVolume, ResultSink, Status, TrialResult,
};
use crate::report::summary::Summary;
use crate::report::{table, terse};
use crate::signals;
use schedule::{Group, Schedule};

/// Everything `pvcheck run` was told.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub classes: Vec<ClassSpec>,
    /// Where the class files came from (for the result file).
    pub class_files: Vec<String>,
    pub profile: Profile,
    /// Results root: the file goes to `<results>/runs/`.
    pub results: PathBuf,
    pub state_dir: PathBuf,
    pub agent: AgentBinary,
    pub keep_on_failure: bool,
    pub seed: Option<u64>,
    /// Which platform runs the trials (`--platform`), chosen by `platform::select`.
    pub platform: Choice,
    /// libtest's arguments (--exact, --skip, --list, --format, --test-threads, …). Its `filter`
    /// is unused: the name filters are [`RunOptions::filters`] (several, as `cargo test` takes).
    pub test_args: Arguments,
    /// The name filters: a trial runs when its name contains any of them (equals one, with
    /// `--exact`); none selects every trial.
    pub filters: Vec<String>,
    /// `--verbose`: the per-check tables of every class, not only of those with a failure.
    pub verbose: bool,
    /// `--strict`: a trial that passed with warnings fails.
    pub strict: bool,
    /// `--speed-size`: the speed matrix's data set instead of the profile's.
    pub speed_size: Option<u64>,
    /// The command line as given (for the result file).
    pub command_line: Vec<String>,
    /// Repetitions of each speed workload (`--repeat`; issue 12).
    pub repeat: u32,
    /// `--baseline NAME`: compared with at the end (read before anything is created).
    pub baseline: Option<crate::compare::RunDoc>,
    /// `--junit`, `--markdown`, `--html`, `--prometheus`.
    pub reports: crate::report::outputs::ReportPaths,
    /// `--allow-mismatch`: compare with the baseline even when the setups differ.
    pub allow_mismatch: bool,
    /// `--allow-inconclusive`: figures not judged do not make the exit code 4.
    pub allow_inconclusive: bool,
    /// `--max-repeat`: with a baseline, repetitions of a still-inconclusive workload, in all.
    pub max_repeat: u32,
    /// `--parallel-classes`: how many classes run checks at once (`None`: every class, up to 8).
    pub parallel_classes: Option<usize>,
    /// `--baseline NAME --create-baseline` when NAME does not exist yet: the run becomes it.
    pub create_baseline: Option<String>,
    /// `--keep-runs N`: the newest N result files stay in results/runs.
    pub keep_runs: Option<u32>,
    /// `--phase` (and `--resume`): a whole run, or one side of an upgrade done elsewhere.
    pub phase: Phase,
}

/// One planned trial.
#[derive(Clone)]
pub struct Planned {
    pub class: Arc<ClassSpec>,
    pub check: Check,
    pub group: Group,
    /// Why the trial is ignored, known before running (class unusable, capability off).
    pub ignore: Option<String>,
    /// A speed trial's place in its backend's one-at-a-time order (set once the run's
    /// selection is known).
    pub speed_turn: Option<usize>,
    /// The first speed trial of its class that will run: it provisions the class's speed
    /// volumes while the checks still run (nothing measures then), not in its turn.
    pub prepare_speed: bool,
    /// The storage backend the class's volumes live on (the class's `backend`, or the
    /// platform's default for it).
    pub backend: String,
}

impl Planned {
    pub fn name(&self) -> String {
        format!("{}::{}", self.class.name(), self.check.name())
    }
}

/// Every (class × check), in run order: checks, then speed, then cleanup. A split phase
/// (`--phase`) runs only `integrity::upgrade`, whether or not the class defines an upgrade of
/// its own: the upgrade is done elsewhere.
pub fn plan(classes: &[ClassSpec], platform: &dyn Platform, phase: &Phase) -> Vec<Planned> {
    let classes: Vec<Arc<ClassSpec>> = classes.iter().cloned().map(Arc::new).collect();
    let mut out = Vec::new();
    if phase.is_split() {
        for class in &classes {
            out.push(Planned {
                class: class.clone(),
                check: Check::Upgrade,
                group: Group::Check,
                ignore: platform.usable(class).err(),
                speed_turn: None,
                prepare_speed: false,
                backend: backend_of(class, platform),
            });
        }
        return out;
    }
    for group in [Group::Check, Group::Speed, Group::Cleanup] {
        for class in &classes {
            let unusable = platform.usable(class).err();
            for check in Check::all_for(class) {
                let g = match check {
                    Check::Speed(_) => Group::Speed,
                    Check::Cleanup => Group::Cleanup,
                    _ => Group::Check,
                };
                if g != group {
                    continue;
                }
                let ignore = unusable
                    .clone()
                    .or_else(|| check.unsupported(class, platform));
                out.push(Planned {
                    class: class.clone(),
                    check,
                    group,
                    ignore,
                    speed_turn: None,
                    prepare_speed: false,
                    backend: backend_of(class, platform),
                });
            }
        }
    }
    out
}

/// `--parallel-classes`, or every class up to 8.
fn parallel_classes(opts: &RunOptions) -> usize {
    opts.parallel_classes
        .unwrap_or_else(|| opts.classes.len().clamp(1, 8))
}

fn backend_of(class: &ClassSpec, platform: &dyn Platform) -> String {
    class
        .backend()
        .map(str::to_string)
        .unwrap_or_else(|| platform.default_backend(class))
}

/// What every trial shares.
struct RunCtx {
    platform: Arc<dyn Platform>,
    run_id: String,
    seed: u64,
    profile: Profile,
    keep_on_failure: bool,
    registry: Arc<Registry>,
    schedule: Schedule,
    sink: ResultSink,
    speed: Arc<checks::speed::SpeedVolumes>,
    kept: Arc<Mutex<Vec<KeptVolume>>>,
    progress: Progress,
    agent_clock: Arc<checks::AgentClock>,
    strict: bool,
    speed_size: Option<u64>,
    /// Errors already printed by a trial: a repeat prints a reference, not the whole text.
    seen_errors: SeenErrors,
    phase: Phase,
}

fn new_run_id() -> String {
    let mut b = [0u8; 4];
    rand::fill(&mut b);
    crate::sys::hex(&b)
}

fn trial(p: Planned, ctx: Option<Arc<RunCtx>>) -> Trial {
    let name = p.name();
    Trial::ignorable_test(name.clone(), move || {
        let Some(ctx) = ctx else {
            return Err(Failed::from("not run (list only)"));
        };
        run_trial(&ctx, &p, &name)
    })
}

/// Where trial `name` keeps its files, under the run's registry.
fn trial_dir(ctx: &RunCtx, name: &str) -> PathBuf {
    ctx.registry
        .dir()
        .join("trials")
        .join(name.replace("::", "-"))
}

/// The context a check of trial `p` runs with.
fn check_ctx(ctx: &RunCtx, p: &Planned, work_dir: PathBuf) -> CheckCtx {
    CheckCtx {
        platform: ctx.platform.clone(),
        class: p.class.clone(),
        run_id: ctx.run_id.clone(),
        run_seed: ctx.seed,
        profile: ctx.profile,
        keep_on_failure: ctx.keep_on_failure,
        work_dir,
        data: Mutex::new(TrialData::default()),
        check: p.check.clone(),
        kept: ctx.kept.clone(),
        speed: ctx.speed.clone(),
        agent_clock: ctx.agent_clock.clone(),
        speed_size: ctx.speed_size,
        phase: ctx.phase.clone(),
    }
}

/// What provisioning a class's speed volumes ahead of its turn did.
struct Prepared {
    seconds: f64,
    warnings: Vec<String>,
    /// Why it failed (the trial provisions again in its turn and fails there, as it would have).
    error: Option<String>,
}

/// The class's speed volumes provisioned while the checks still run (`None` once they have
/// all finished: then the speed trials may be measuring, and it waits for its turn), with the
/// waits it made.
fn prepare_speed(
    ctx: &RunCtx,
    p: &Planned,
    name: &str,
) -> Option<(Prepared, Vec<platform::timeline::Span>)> {
    let work_dir = trial_dir(ctx, &format!("{name}::prepare"));
    std::fs::create_dir_all(&work_dir).ok()?;
    let pctx = check_ctx(ctx, p, work_dir);
    let start = Instant::now();
    let (result, spans) = ctx
        .schedule
        .while_checks_run(|| platform::timeline::during(|| ctx.speed.prepare(&pctx)))?;
    let warnings =
        std::mem::take(&mut pctx.data.lock().unwrap_or_else(|e| e.into_inner()).warnings);
    Some((
        Prepared {
            seconds: start.elapsed().as_secs_f64(),
            warnings,
            error: result.err().map(|f| f.message),
        },
        spans,
    ))
}

fn run_trial(ctx: &RunCtx, p: &Planned, name: &str) -> Result<Completion, Failed> {
    let prepared = (p.prepare_speed && !signals::interrupted())
        .then(|| prepare_speed(ctx, p, name))
        .flatten();
    let running = ctx.schedule.enter(
        p.group,
        p.class.name(),
        &p.backend,
        p.ignore.is_none(),
        p.speed_turn,
    );
    let start = Instant::now();
    let started = results::rfc3339_utc_millis(SystemTime::now());
    let record = |status: Status,
                  data: TrialData,
                  reason: Option<String>,
                  failure: Option<FailureRecord>| {
        if let Some(v) = &data.volume {
            ctx.sink.volume(name, v.clone());
        }
        ctx.sink.push(TrialResult {
            name: name.to_string(),
            class: p.class.name().to_string(),
            check: p.check.name(),
            status,
            started: started.clone(),
            duration_s: start.elapsed().as_secs_f64(),
            metrics: serde_json::Value::Object(data.metrics),
            warnings: data.warnings,
            ignored_reason: reason,
            failure,
            timeline: data.timeline,
        });
    };
    if let Some(reason) = &p.ignore {
        record(
            Status::Ignored,
            TrialData::default(),
            Some(reason.clone()),
            None,
        );
        return Ok(Completion::ignored_with(reason));
    }
    if signals::interrupted() {
        wait_for_exit();
    }
    let work_dir = trial_dir(ctx, name);
    if let Err(e) = std::fs::create_dir_all(&work_dir) {
        return Err(Failed::from(format!("{}: {e}", work_dir.display())));
    }
    ctx.progress.start(name);
    let cctx = check_ctx(ctx, p, work_dir);
    if let Some((prepared, spans)) = prepared {
        // What provisioning the speed volumes noticed is this trial's, said with its figures.
        let mut d = cctx.data.lock().unwrap_or_else(|e| e.into_inner());
        d.warnings.extend(prepared.warnings);
        d.metrics.insert(
            "speed_volumes_prepared".into(),
            serde_json::json!({
                "seconds": prepared.seconds,
                "error": prepared.error,
                "waits": spans,
            }),
        );
    }
    // A driver that already missed a deadline in this run is not waited for again: the trial
    // fails at once (the cleanup trial still runs: it only looks for leftovers).
    let stopped_answering = (!matches!(p.check, Check::Cleanup)
        && !p.class.retries_after_timeout())
    .then(|| platform::unanswered::missed(p.class.name()))
    .flatten();
    let (outcome, timeline) = platform::timeline::during(|| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            if let Some(m) = &stopped_answering {
                return Err(checks::Failure::timeout(platform::unanswered::message(m))
                    .with_details(serde_json::json!({
                        "driver_stopped_answering_at": m.at,
                        "missed": m.what,
                        "retried": false,
                    })));
            }
            let mut r = match &p.check {
                Check::Provision => checks::provision::check(&cctx),
                Check::Recreate => checks::integrity::recreate_check(&cctx),
                Check::OtherNode => checks::other_node::check(&cctx),
                Check::Durability => checks::integrity::durability_check(&cctx),
                Check::Selftest => checks::integrity::selftest_check(&cctx),
                Check::Upgrade => match &ctx.phase {
                    Phase::Whole => checks::integrity::upgrade_check(&cctx),
                    Phase::BeforeUpgrade => checks::upgrade_phase::before(&cctx),
                    Phase::AfterUpgrade { .. } => checks::upgrade_phase::after(&cctx),
                },
                Check::LiveUpgrade => checks::live::live_upgrade_check(&cctx),
                Check::PluginKill => checks::live::plugin_kill_check(&cctx),
                Check::KubeletRestart => checks::live::kubelet_restart_check(&cctx),
                Check::PodDeletedWhileKubeletDown => {
                    checks::live::pod_deleted_while_kubelet_down_check(&cctx)
                }
                Check::Expand => checks::expand::check(&cctx),
                Check::Snapshot => checks::snapshot::check(&cctx),
                Check::Clone => checks::clone::check(&cctx),
                Check::Rwx => checks::rwx::check(&cctx),
                Check::Flexvolume(call) => checks::flexvolume::check(&cctx, call),
                Check::Csi(call) => checks::csi::check(&cctx, call),
                Check::Speed(w) => checks::speed::check(&cctx, w),
                Check::Cleanup => checks::cleanup::check(&cctx),
            };
            if running.last_speed_of_class
                && let Err(e) = ctx.speed.release(p.class.name())
            {
                r = r.and(Err(e.context("removing the speed volume")));
            }
            r
        }))
        .unwrap_or_else(|panic| {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(checks::Failure::new(format!("the check panicked: {msg}")))
        })
    });
    // --strict: what passed only with warnings fails, with a category of its own (`strict`) so
    // the verdict says it failed because of a warning and the exit code can tell it from a
    // failure.
    let warnings = cctx
        .data
        .lock()
        .map(|d| d.warnings.clone())
        .unwrap_or_default();
    let outcome = match outcome {
        Ok(Verdict::Passed) if ctx.strict && !warnings.is_empty() => {
            Err(checks::Failure::new(format!(
                "failed because of {}, which --strict does not accept: {}",
                if warnings.len() == 1 {
                    "a warning".to_string()
                } else {
                    format!("{} warnings", warnings.len())
                },
                warnings.join("; ")
            ))
            .category(FailureCategory::Strict)
            .with_details(serde_json::json!({ "strict": true, "warnings": warnings })))
        }
        other => other,
    };
    if signals::interrupted() {
        // Whatever this trial saw was caused by the interruption: report nothing.
        wait_for_exit();
    }
    let mut data = std::mem::take(&mut *cctx.data.lock().unwrap_or_else(|e| e.into_inner()));
    data.timeline = timeline;
    ctx.progress.finish(name);
    let result = match outcome {
        Ok(Verdict::Passed) => {
            record(Status::Passed, data, None, None);
            Ok(Completion::Completed)
        }
        Ok(Verdict::Ignored(reason)) => {
            record(Status::Ignored, data, Some(reason.clone()), None);
            Ok(Completion::ignored_with(reason))
        }
        Err(f) => {
            record(
                Status::Failed,
                data,
                None,
                Some(FailureRecord {
                    category: f.category,
                    message: f.message.clone(),
                    details: f.details.clone(),
                }),
            );
            // The category first; an error another trial already printed in full is referred
            // to, not repeated (a bad mount option fails every trial of the class alike).
            let first_line = f.message.lines().next().unwrap_or("");
            let shown = match ctx.seen_errors.repeat_of(name, first_line, &ctx.run_id) {
                Some(first) => format!(
                    "[{}] {first_line}\n(the same error as {first}: its whole message is there)",
                    f.category.as_str()
                ),
                None => format!("[{}] {}", f.category.as_str(), f.message),
            };
            Err(Failed::from(shown))
        }
    };
    drop(running);
    result
}

/// After SIGINT/SIGTERM the signal thread removes everything and exits the process with 130;
/// trial threads stop here so libtest prints nothing more (no failures that are not failures).
fn wait_for_exit() -> ! {
    loop {
        std::thread::park();
    }
}

/// Runs `pvcheck run`; returns the exit code: plan the trials ([`plan_run`]), run them on the
/// chosen platform ([`run_trials`]), then write and print the result ([`conclude`]).
pub fn execute(opts: RunOptions) -> u8 {
    let planned = match plan_run(&opts) {
        Ok(PlanOutcome::Run(p)) => p,
        Ok(PlanOutcome::Listed) => return exit_code::OK,
        Err(code) => return code,
    };
    let run = match run_trials(&opts, planned) {
        Ok(r) => r,
        Err(code) => return code,
    };
    conclude(&opts, run)
}

/// The plan of a run: its id, libtest's arguments, and the selected trials.
pub struct RunPlan {
    run_id: String,
    started: SystemTime,
    args: Arguments,
    planned: Vec<Planned>,
    selected: Vec<usize>,
}

enum PlanOutcome {
    /// `--list`: printed, nothing else to do.
    Listed,
    Run(RunPlan),
}

/// Plans every (class × check) on a listing platform (it creates and contacts nothing), refuses a
/// filter that selects nothing, and prints the list for `--list`.
fn plan_run(opts: &RunOptions) -> Result<PlanOutcome, u8> {
    let started = SystemTime::now();
    let run_id = new_run_id();
    let mut args = opts.test_args.clone();
    // Checks mostly wait (mkfs, sync, mounts, driver calls, fsync), so twice as many trials as
    // CPUs keep the machine busy (measured: the quick default suite with flexVolume classes
    // took 114 s with 2 threads and 96 s with 4 on 2 cores). Speed trials run alone regardless.
    // On Kubernetes a trial waits for the API server and the nodes, not for this machine:
    // eight trials per class that may run at once, so a class's checks all start together and
    // the run takes its longest check, not a queue of them (one quick hostpath class on the
    // 2-node test cluster: 118.5 s with four, 97.3 s with twelve). At most 32: each trial keeps
    // a pod or two scheduled, and 64 filled the test cluster's CPU requests with holder pods
    // whose agent pods then could not be scheduled (ten classes stood still).
    if args.test_threads.is_none() {
        let cpus: usize = std::thread::available_parallelism()
            .map(Into::into)
            .unwrap_or(1);
        let local = (2 * cpus).max(2);
        args.test_threads = Some(match opts.platform.kind {
            PlatformKind::Kubernetes => (8 * parallel_classes(opts)).clamp(local, 32),
            PlatformKind::Local => local,
        });
    }

    if let Phase::AfterUpgrade { resumes } = &opts.phase
        && let Some(line) = crate::phase::already_resumed(&opts.results, resumes)
    {
        eprintln!("pvcheck: {line}");
        return Err(exit_code::USAGE);
    }
    // Planning needs a platform; usable() does not touch the registry, so a listing creates nothing.
    let list_registry = match Registry::open(&opts.state_dir.join("runs").join(&run_id)) {
        Ok(r) => Arc::new(r),
        Err(e) => {
            eprintln!("pvcheck: {e}");
            return Err(exit_code::USAGE);
        }
    };
    let list_platform = select_platform(opts, list_registry, Purpose::List)?;
    let planned = plan(&opts.classes, list_platform.as_ref(), &opts.phase);
    // libtest takes one filter; the name filters are applied here (any of them), and libtest
    // applies --skip, --exact's meaning for --skip, and --ignored.
    args.filter = None;
    let probe: Vec<Trial> = planned.iter().map(|p| trial(p.clone(), None)).collect();
    let selected: Vec<usize> = (0..planned.len())
        .filter(|&i| {
            name_selected(&opts.filters, args.exact, &planned[i].name())
                && !args.is_filtered_out(&probe[i])
                && !args.is_ignored(&probe[i])
        })
        .collect();
    let filtered = !opts.filters.is_empty() || !args.skip.is_empty();
    if selected.is_empty() && filtered {
        let classes: Vec<&str> = opts.classes.iter().map(ClassSpec::name).collect();
        let (what, verb) = match opts.filters.as_slice() {
            [] => ("the filter \"\"".to_string(), "matches"),
            [one] => (format!("the filter {one:?}"), "matches"),
            many => (format!("the filters {many:?}"), "match"),
        };
        eprintln!(
            "pvcheck: {what}{} {verb} no trial (classes: {}; see `pvcheck run --list`)",
            if args.skip.is_empty() {
                String::new()
            } else {
                format!(" with --skip {:?}", args.skip)
            },
            classes.join(", ")
        );
        return Err(exit_code::USAGE);
    }
    if let Phase::AfterUpgrade { resumes } = &opts.phase
        && filtered
    {
        eprintln!(
            "pvcheck: --phase after-upgrade resumes every class run {resumes} kept and then removes its namespace: a filter or --skip would leave volumes behind unchecked (run it without one)"
        );
        return Err(exit_code::USAGE);
    }
    // The built-in classes are the local platform's: on another platform every trial of them
    // would be ignored, which the user should hear before the list or the run.
    if opts.platform.kind != platform::PlatformKind::Local
        && opts
            .class_files
            .iter()
            .all(|f| f == crate::config::DEFAULT_CLASSES_NAME)
    {
        eprintln!(
            "pvcheck: no class file given for --platform {}: the built-in classes ({}) are for the local platform, so every trial would be ignored; give --classes FILE (`pvcheck classes` prints a starter file for the cluster)",
            opts.platform.kind.name(),
            crate::config::DEFAULT_CLASSES_NAME
        );
    }
    if args.list {
        let entries: Vec<list::Entry> = planned
            .iter()
            .zip(&probe)
            .filter(|(p, t)| {
                name_selected(&opts.filters, args.exact, &p.name())
                    && !args.is_filtered_out(t)
                    && !args.ignored // pvcheck flags no trial ignored in advance
            })
            .map(|(p, _)| list::Entry {
                name: p.name(),
                ignored: p.ignore.clone(),
            })
            .collect();
        list::write(&mut std::io::stdout().lock(), &entries, args.format);
        return Ok(PlanOutcome::Listed);
    }
    drop(probe);
    if let Some(notice) = crate::cleanup::dead_run_notice(&opts.state_dir, &run_id) {
        eprintln!("pvcheck: {notice}");
    }
    if let Err(line) = preflight::check(
        &opts.classes,
        &planned,
        &selected,
        opts.profile,
        opts.speed_size,
        &opts.results,
    ) {
        eprintln!("pvcheck: {line}");
        return Err(exit_code::USAGE);
    }
    Ok(PlanOutcome::Run(RunPlan {
        run_id,
        started,
        args,
        planned,
        selected,
    }))
}

/// `platform::select` with this run's options; one line and the exit code when it fails.
fn select_platform(
    opts: &RunOptions,
    registry: Arc<Registry>,
    purpose: Purpose,
) -> Result<Arc<dyn Platform>, u8> {
    platform::select(
        &opts.platform,
        SelectCtx {
            registry,
            state_dir: opts.state_dir.clone(),
            agent: opts.agent.clone(),
            classes: &opts.classes,
            purpose,
        },
    )
    .map_err(|e| {
        eprintln!("pvcheck: {e}");
        e.exit_code()
    })
}

/// The run's speed volumes; with `--baseline`, workloads still inconclusive against it get more
/// repetitions, up to `--max-repeat` (issue 19).
fn speed_volumes(opts: &RunOptions) -> checks::speed::SpeedVolumes {
    let volumes = checks::speed::SpeedVolumes::new(opts.repeat);
    match &opts.baseline {
        Some(baseline) if opts.max_repeat > opts.repeat => {
            volumes.repeating_until_decided(checks::speed::RepeatUntilDecided {
                baseline: baseline.clone(),
                noise: crate::compare::noise_for(
                    &crate::compare::history::noise_of(&opts.results),
                    baseline,
                ),
                max_repeat: opts.max_repeat,
            })
        }
        _ => volumes,
    }
}

/// A run whose trials have finished (not interrupted).
struct FinishedRun {
    ctx: Arc<RunCtx>,
    started: SystemTime,
    finish: Finish,
    pretty: bool,
    args: Arguments,
}

/// Removes what is left, writes the result file; `true` when interrupted.
type Finish = Arc<dyn Fn(bool) -> (Result<PathBuf, String>, Vec<String>, u8) + Send + Sync>;

/// Sets up the registry, the platform of the run and the signal handling, and runs the trials.
/// A signal ends the process from the signal thread (exit 130) after removing everything.
fn run_trials(opts: &RunOptions, run: RunPlan) -> Result<FinishedRun, u8> {
    let RunPlan {
        run_id,
        started,
        args,
        mut planned,
        selected,
    } = run;
    if let Err(e) = signals::block() {
        eprintln!("pvcheck: cannot set up signal handling: {e}");
        return Err(exit_code::USAGE);
    }
    let registry = match Registry::create(&opts.state_dir, &run_id) {
        Ok(r) => Arc::new(r),
        Err(e) => {
            eprintln!("pvcheck: cannot create the run registry: {e} (use --state-dir DIR)");
            return Err(exit_code::USAGE);
        }
    };
    let platform = match select_platform(opts, registry.clone(), Purpose::Run) {
        Ok(p) => p,
        Err(code) => {
            // Nothing was created: the registry's directory goes too.
            let _ = registry.remove_run_dir();
            return Err(code);
        }
    };
    let threads = args.test_threads.unwrap_or(1);
    let pretty = matches!(
        args.format,
        None | Some(libtest_mimic::FormatSetting::Pretty)
    ) && !args.quiet;
    let ctx = Arc::new(RunCtx {
        platform: platform.clone(),
        run_id: run_id.clone(),
        // Below 2^53, so jq and JavaScript read the seed exactly (`--seed` is checked likewise).
        seed: opts
            .seed
            .unwrap_or_else(|| rand::random::<u64>() & pvcheck_workloads::units::JSON_SAFE_MAX),
        profile: opts.profile,
        keep_on_failure: opts.keep_on_failure,
        registry: registry.clone(),
        schedule: Schedule::with_parallel_classes(parallel_classes(opts)),
        sink: ResultSink::default(),
        speed: Arc::new(speed_volumes(opts)),
        kept: Arc::new(Mutex::new(Vec::new())),
        agent_clock: Arc::new(checks::AgentClock::default()),
        progress: Progress::new(selected.len() as u64, threads > 1 && pretty),
        strict: opts.strict,
        speed_size: opts.speed_size,
        seen_errors: SeenErrors::default(),
        phase: opts.phase.clone(),
    });
    ctx.sink
        .set_order(selected.iter().map(|&i| planned[i].name()).collect());
    let selection = document::selection(&args, &opts.filters, planned.len(), selected.len());
    for &i in &selected {
        let p = &mut planned[i];
        p.speed_turn = ctx
            .schedule
            .expect(p.group, p.class.name(), &p.backend, p.ignore.is_none());
        if p.ignore.is_none()
            && let Check::Speed(w) = &p.check
        {
            p.prepare_speed = ctx.speed.plan(p.class.name(), w);
        }
    }
    let env = document::environment(opts, platform.as_ref());
    let finish: Finish = {
        let (ctx, opts, env, selection) =
            (ctx.clone(), opts.clone(), env.clone(), selection.clone());
        Arc::new(move |interrupted: bool| {
            teardown::finish(&ctx, &opts, &env, &selection, started, interrupted)
        })
    };
    {
        let finish = finish.clone();
        let ctx = ctx.clone();
        let spawned =
            signals::spawn_waiter(move |sig| teardown::on_signal(sig, &ctx, finish.as_ref()));
        if let Err(e) = spawned {
            eprintln!("pvcheck: cannot start the signal thread: {e}");
            return Err(exit_code::USAGE);
        }
    }

    // The name filters were applied when planning (libtest takes one): only what they select
    // reaches libtest.
    let trials: Vec<Trial> = planned
        .into_iter()
        .filter(|p| name_selected(&opts.filters, args.exact, &p.name()))
        .map(|p| trial(p, Some(ctx.clone())))
        .collect();
    start_relay(&args, &ctx);
    let _conclusion = libtest_mimic::run(&args, trials);
    if signals::interrupted() {
        // The signal thread is cleaning up and will exit with 130.
        loop {
            std::thread::park();
        }
    }
    Ok(FinishedRun {
        ctx,
        started,
        finish,
        pretty,
        args,
    })
}

/// Removes what is left, writes the result file, prints the tables, the timing and the verdict
/// (the last lines: the verdict, then the result path); returns the exit code.
fn conclude(opts: &RunOptions, run: FinishedRun) -> u8 {
    let FinishedRun {
        ctx,
        started,
        finish,
        pretty,
        args,
    } = run;
    let (path, problems, code) = finish(false);
    let all = ctx.sink.trials();
    if pretty {
        println!("{}", table::render_with(&all, &ctx.run_id, opts.verbose));
    } else if matches!(args.format, Some(libtest_mimic::FormatSetting::Terse)) || args.quiet {
        print!("{}", terse::render(&all));
    }
    stdout_relay::finish();
    for k in ctx.kept.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        eprintln!("pvcheck: {}", k.message);
    }
    for p in &problems {
        eprintln!("pvcheck: {p}");
    }
    if ctx.phase == Phase::BeforeUpgrade {
        let kept = all
            .iter()
            .filter(|t| t.status == results::Status::Passed)
            .count();
        if kept > 0 {
            eprintln!(
                "pvcheck: kept {} for the upgrade, each with its pod and its ledger (in the result file and a ConfigMap); after the upgrade run:\n  {}",
                crate::registry::count(kept, "volume"),
                crate::phase::resume_command(&ctx.run_id, &document::resume_context(opts))
            );
        } else {
            eprintln!("pvcheck: no volume was kept for the upgrade: there is nothing to resume");
        }
    }
    if let Some(r) = ctx.platform.report() {
        let lines = platform::format_api_requests(&r);
        if !lines.is_empty() {
            eprintln!(
                "pvcheck: API requests per check ({} in all):",
                r.pointer("/api_requests/total")
                    .unwrap_or(&serde_json::Value::Null)
            );
            for l in lines {
                eprintln!("  {l}");
            }
        }
    }
    let t = document::timing(&ctx, started);
    eprintln!(
        "pvcheck: {:.1}s wall; an agent was running for {:.1}s; the harness alone {:.1}s ({:.0}%)",
        t["wall_s"].as_f64().unwrap_or(0.0),
        t["agent_busy_s"].as_f64().unwrap_or(0.0),
        t["harness_only_s"].as_f64().unwrap_or(0.0),
        t["harness_only_share"].as_f64().unwrap_or(0.0) * 100.0
    );
    if let Some(l) = document::waits_line(&ctx) {
        eprintln!("{l}");
    }
    // The last lines: the verdict, then where the result is. No result file is never a pass.
    let mut ending = verdict::Ending {
        leftovers: !problems.is_empty(),
        no_result: path.is_err(),
        not_pushed: false,
    };
    let code = if path.is_err() {
        verdict::exit_code(&all, ending)
    } else {
        code
    };
    // `--baseline` and the report flags: the comparison table and the report files, and the
    // gate's exit code (3 regressed, 4 inconclusive with --strict) when no check failed.
    let (code, pushed) = gate::after_run(opts, path.as_ref().ok().map(PathBuf::as_path), code);
    ending.not_pushed = !pushed;
    eprintln!("{}", verdict::line(&Summary::of(&all), code, ending));
    eprintln!(
        "{}",
        verdict::result_line(path.as_deref().map_err(String::as_str))
    );
    code
}

/// The stdout relay (see [`stdout_relay`]): with `--format json` always (to add ignore reasons,
/// categories and warnings to the events), otherwise only when stdout is not a terminal (a
/// closed pipe must not end the run halfway).
fn start_relay(args: &Arguments, ctx: &Arc<RunCtx>) {
    use std::io::IsTerminal;
    let json = matches!(args.format, Some(libtest_mimic::FormatSetting::Json));
    if !json && std::io::stdout().is_terminal() {
        return;
    }
    let annotate: Option<stdout_relay::Annotate> = json.then(|| {
        let ctx = ctx.clone();
        let a: stdout_relay::Annotate = Arc::new(move |name: &str, event: &str| {
            let Some(t) = ctx.sink.find(name) else {
                return Vec::new();
            };
            let mut extra = Vec::new();
            if event == "ignored"
                && let Some(r) = &t.ignored_reason
            {
                extra.push(("message".to_string(), serde_json::Value::from(r.clone())));
            }
            if let Some(f) = &t.failure {
                extra.push(("category".to_string(), f.category.as_str().into()));
            }
            if !t.warnings.is_empty() {
                extra.push(("warnings".to_string(), t.warnings.clone().into()));
            }
            if !t.timeline.is_empty() {
                // Seconds per platform wait; the spans themselves are in the result file.
                let waits =
                    serde_json::to_value(platform::timeline::sums(&t.timeline)).unwrap_or_default();
                extra.push(("waits_s".to_string(), waits.into()));
            }
            extra
        });
        a
    });
    if let Err(e) = stdout_relay::install(annotate) {
        eprintln!("pvcheck: cannot relay standard output ({e}); printing directly");
    }
}

/// Whether a trial's name passes the name filters (any of them; none selects everything), as
/// `cargo test NAME…` does: substrings, or whole names with `--exact`.
pub fn name_selected(filters: &[String], exact: bool, name: &str) -> bool {
    filters.is_empty()
        || filters.iter().any(|f| {
            if exact {
                name == f
            } else {
                name.contains(f.as_str())
            }
        })
}
