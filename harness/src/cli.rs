//! The command line: `pvcheck run`, `pvcheck cleanup`, `pvcheck agent …` (the agent built in).
//!
//! Thin: parses flags into [`crate::run::RunOptions`] and hands over. Bad input gets one line on
//! stderr and exit 2 (see [`crate::exit_code`]).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use libtest_mimic::{Arguments, ColorSetting, FormatSetting};

use crate::config;
use crate::exit_code;
use crate::platform::select::{Choice, KubeOptions, Purpose, SelectCtx};
use crate::platform::{self, AgentBinary, PlatformKind, RunFilter};
use crate::profile::Profile;
use crate::registry::{self, Registry};
use crate::run::{self, RunOptions};

/// pvcheck: does a storage class keep every acknowledged byte, is it as fast as yesterday,
/// and does its driver behave as Kubernetes expects.
#[derive(Debug, Parser)]
#[command(name = "pvcheck", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once; boxing would only add noise
pub enum Command {
    /// Run the checks of every class as tests (`<class>::<check>`), write a result file.
    Run(RunArgs),
    /// Remove what crashed or killed runs left behind (and only that).
    Cleanup(CleanupArgs),
    /// List the cluster's StorageClasses, CSIDrivers and VolumeSnapshotClasses; print a starter class file.
    Classes(ClassesArgs),
    /// The agent's container image.
    #[command(subcommand)]
    Image(ImageCommand),
    /// The agent, built in (`pvcheck agent --help`).
    Agent,
    /// Is NEW worse than BASE? Verdicts per class, workload and metric (exit 3: regressed).
    Compare(crate::cli_gate::CompareArgs),
    /// Save and list baselines (results/baselines/NAME.json).
    #[command(subcommand)]
    Baseline(crate::cli_gate::BaselineCommand),
    /// Change points in the nightly runs of a results directory, per class, workload and
    /// figure (exit 3: the newest segment regressed; 4: too few runs to judge).
    History(crate::cli_history::HistoryArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub platform: PlatformArgs,
    /// Class file (YAML); repeatable. Default: the built-in storageclasses/local.yaml.
    #[arg(long = "classes", value_name = "FILE")]
    pub classes: Vec<PathBuf>,
    /// How much work each check does.
    #[arg(long, value_enum, default_value = "quick")]
    pub profile: Profile,
    /// Results root: the run is written to DIR/runs/<UTC timestamp>-<run id>.json.
    #[arg(long, value_name = "DIR", default_value = "results")]
    pub results: PathBuf,
    /// A pvcheck-agent binary to run instead of the built-in agent (`pvcheck agent`).
    #[arg(long, value_name = "PATH")]
    pub agent: Option<PathBuf>,
    /// Keep a failed check's volume (mounted) and its ledgers, and print where they are.
    #[arg(long)]
    pub keep_on_failure: bool,
    /// Where runs record what they create (default /var/lib/pvcheck for root).
    #[arg(long, value_name = "DIR", env = "PVCHECK_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Base seed of the run (default random; printed in the result file) to reproduce a run's
    /// data. At most 2^53-1, so JSON tools (jq, JavaScript) read it back exactly.
    #[arg(long, allow_negative_numbers = true, value_name = "N", value_parser = clap::value_parser!(u64).range(0..=pvcheck_workloads::units::JSON_SAFE_MAX))]
    pub seed: Option<u64>,
    /// Fail trials that passed only with warnings (an offline expansion, flattering speed
    /// figures, a driver reply kubelet tolerates): exit 4 when nothing else failed or regressed.
    #[arg(long)]
    pub strict: bool,
    /// With --baseline: exit 0 even when figures were not judged (inconclusive or unreliable
    /// after --max-repeat repetitions); without it they exit 4.
    #[arg(long)]
    pub allow_inconclusive: bool,
    /// With --baseline: a speed workload whose figures are still inconclusive after --repeat
    /// repetitions runs again, one repetition at a time, up to this many in all.
    #[arg(long, value_name = "N", default_value_t = 15, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_repeat: u32,
    /// How many classes run their checks at the same time (default: every class, up to 8).
    /// Speed trials are not bounded by it: one at a time per storage backend (a class's
    /// `backend`).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=64))]
    pub parallel_classes: Option<u32>,
    /// Data set of the speed matrix instead of the profile's (quick 128MiB, standard 4GiB),
    /// with a unit: larger to get past caches, smaller to fit a small class.
    #[arg(long, value_name = "SIZE")]
    pub speed_size: Option<pvcheck_workloads::units::Size>,
    /// Repetitions of each speed workload, each a new agent process (default: 1 under quick,
    /// 5 under standard and thorough; the gate needs 5 on each side).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub repeat: Option<u32>,
    /// Compare the run with this baseline at the end (a name in results/baselines, or a file).
    #[arg(long, value_name = "NAME")]
    pub baseline: Option<String>,
    /// With --baseline NAME: when results/baselines/NAME.json does not exist yet, this run
    /// becomes it (when every check passed and most speed figures are reliable) and the gate
    /// starts with the next run: a nightly's first night.
    #[arg(long, requires = "baseline")]
    pub create_baseline: bool,
    /// After the run, keep only the newest N result files in results/runs (older ones pvcheck
    /// wrote are removed; baselines are kept). `pvcheck history` needs 11.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub keep_runs: Option<u32>,
    /// With --baseline: compare even when the setups differ.
    #[arg(long)]
    pub allow_mismatch: bool,
    /// An upgrade done by another pipeline, in two runs (Kubernetes): `before-upgrade` writes
    /// each class's data and keeps the volume (and its pod) with the ledger; `after-upgrade
    /// --resume RUN_ID` verifies it, rewrites, verifies again and removes everything. Only
    /// integrity::upgrade runs; the class's own upgrade command does not.
    #[arg(long, value_enum, value_name = "before-upgrade|after-upgrade")]
    pub phase: Option<crate::phase::PhaseFlag>,
    /// With --phase after-upgrade: the run id the before-upgrade run printed.
    #[arg(long, value_name = "RUN_ID")]
    pub resume: Option<String>,
    #[command(flatten)]
    pub reports: crate::cli_gate::ReportArgs,

    // libtest's flags, with cargo test's meaning.
    /// List the trials instead of running them.
    #[arg(long)]
    pub list: bool,
    /// Match FILTER (and --skip) exactly instead of as a substring.
    #[arg(long)]
    pub exact: bool,
    /// Skip trials whose names contain FILTER (repeatable).
    #[arg(long, value_name = "FILTER")]
    pub skip: Vec<String>,
    /// Run only trials flagged ignored (pvcheck flags none: a check a class cannot do runs and reports "ignored" with the reason).
    #[arg(long)]
    pub ignored: bool,
    /// Run ignored and not ignored trials.
    #[arg(long)]
    pub include_ignored: bool,
    /// Output format of the trial lines.
    #[arg(long, value_name = "pretty|terse|json", value_parser = ["pretty", "terse", "json"])]
    pub format: Option<String>,
    /// Alias for --format terse.
    #[arg(short, long, conflicts_with = "format")]
    pub quiet: bool,
    /// At the end, the per-check tables of every class (by default a class that passed is one
    /// line with its warnings; a class with a failure always gets its tables in full).
    #[arg(short, long)]
    pub verbose: bool,
    /// Trials run in parallel (default: twice the CPUs; speed trials always run alone).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub test_threads: Option<u16>,
    /// Colour: auto, always, never.
    #[arg(long, value_name = "auto|always|never", value_parser = ["auto", "always", "never"])]
    pub color: Option<String>,
    /// Run only trials whose names contain any of these (e.g. `ext4-loop::`, `::speed::`), as
    /// `cargo test` takes several.
    #[arg(value_name = "FILTER")]
    pub filters: Vec<String>,
}

/// `--platform` and the Kubernetes platform's flags (run and cleanup).
#[derive(Debug, Args, Clone)]
pub struct PlatformArgs {
    /// Where volumes come from: this machine, or a cluster's StorageClasses (alias `kube`).
    #[arg(long, value_enum, default_value = "local")]
    pub platform: PlatformKind,
    #[command(flatten)]
    pub kube: KubeArgs,
}

/// How to reach the cluster (the Kubernetes platform, `pvcheck classes`).
#[derive(Debug, Args, Clone)]
pub struct KubeArgs {
    /// The kubeconfig (default: $KUBECONFIG, then ~/.kube/config, then the pod's service account).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// A context of the kubeconfig other than its current one.
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
    /// The image agent pods run (default docker.io/pvcheck/agent:<version>; see `pvcheck image export`).
    #[arg(long, value_name = "REF")]
    pub agent_image: Option<String>,
    /// An image pull secret of the run's namespace for the agent pods (repeatable).
    #[arg(long = "image-pull-secret", value_name = "NAME")]
    pub image_pull_secrets: Vec<String>,
}

impl KubeArgs {
    fn options(&self) -> KubeOptions {
        KubeOptions {
            kubeconfig: self.kubeconfig.clone(),
            context: self.context.clone(),
            agent_image: self.agent_image.clone(),
            image_pull_secrets: self.image_pull_secrets.clone(),
            older_than: None,
            resume: None,
        }
    }
}

impl PlatformArgs {
    fn choice(&self) -> Choice {
        Choice {
            kind: self.platform,
            kube: self.kube.options(),
        }
    }
}

#[derive(Debug, Args)]
pub struct ClassesArgs {
    #[command(flatten)]
    pub kube: KubeArgs,
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Write the agent's OCI image archive, or with --runner pvcheck's own (import with `ctr images import` or `skopeo copy oci-archive:…`).
    Export(ImageExportArgs),
}

#[derive(Debug, Args)]
pub struct ImageExportArgs {
    /// The archive to write.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// A statically linked pvcheck-agent (default: the static one built with this pvcheck:
    /// beside it, in its target directory's <triple>/ directory, or this pvcheck when static).
    #[arg(long, value_name = "PATH")]
    pub agent: Option<PathBuf>,
    /// The image's name (default docker.io/pvcheck/agent:<version>, with --runner
    /// docker.io/pvcheck/pvcheck:<version>).
    #[arg(long, value_name = "REF")]
    pub tag: Option<String>,
    /// The runner's image instead of the agent's: this pvcheck (static) at /pvcheck, the agent
    /// built in; what deploy/'s CronJob runs.
    #[arg(long)]
    pub runner: bool,
}

#[derive(Debug, Args)]
pub struct CleanupArgs {
    #[command(flatten)]
    pub platform: PlatformArgs,
    /// The state directory the runs used (default /var/lib/pvcheck for root).
    #[arg(long, value_name = "DIR", env = "PVCHECK_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Only list what would be removed.
    #[arg(long)]
    pub dry_run: bool,
    /// Clean only these runs (ids as printed by `pvcheck cleanup --dry-run` or a kept volume's
    /// message); default: every run whose pvcheck process is gone.
    #[arg(value_name = "RUN_ID")]
    pub run_ids: Vec<String>,
    /// Kubernetes: only this run's objects (default: runs whose pvcheck process on this host is gone).
    #[arg(long, value_name = "ID")]
    pub run_id: Option<String>,
    /// Kubernetes: runs older than this (e.g. 24h), wherever they were started.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_flag)]
    pub older_than: Option<std::time::Duration>,
}

fn parse_duration_flag(s: &str) -> Result<std::time::Duration, String> {
    pvcheck_workloads::units::parse_duration(s).map_err(|e| e.to_string())
}

impl RunArgs {
    fn test_args(&self) -> Arguments {
        Arguments {
            list: self.list,
            exact: self.exact,
            skip: self.skip.clone(),
            ignored: self.ignored,
            include_ignored: self.include_ignored,
            quiet: self.quiet,
            test_threads: self.test_threads.map(usize::from),
            filter: None, // the name filters are RunOptions::filters (libtest takes one)
            format: self.format.as_deref().map(|f| match f {
                "terse" => FormatSetting::Terse,
                "json" => FormatSetting::Json,
                _ => FormatSetting::Pretty,
            }),
            color: self.color.as_deref().map(|c| match c {
                "always" => ColorSetting::Always,
                "never" => ColorSetting::Never,
                _ => ColorSetting::Auto,
            }),
            ..Arguments::default()
        }
    }
}

/// Runs the parsed command line; returns the exit code.
pub fn main(cli: Cli) -> u8 {
    match cli.command {
        Command::Run(a) => run_cmd(a),
        Command::Cleanup(a) => cleanup_cmd(a),
        Command::Classes(a) => platform::select::classes_main(&a.kube.options()),
        Command::Image(ImageCommand::Export(a)) => {
            crate::image::export_main(a.out, a.agent, a.tag, a.runner)
        }
        Command::Compare(a) => crate::cli_gate::compare_cmd(a),
        Command::Baseline(c) => crate::cli_gate::baseline_cmd(c),
        Command::History(a) => crate::cli_history::history_cmd(a),
        Command::Agent => {
            // main.rs forwards `pvcheck agent …` before parsing; reaching this means no arguments.
            eprintln!("pvcheck: `pvcheck agent` needs a subcommand; see `pvcheck agent --help`");
            exit_code::USAGE
        }
    }
}

fn agent_binary(path: Option<PathBuf>) -> Result<AgentBinary, String> {
    match path {
        Some(p) if crate::sys::which(&p.to_string_lossy()).is_some() => {
            Ok(AgentBinary::external(p))
        }
        Some(p) => Err(format!("--agent {}: not an executable file", p.display())),
        None => AgentBinary::current()
            .map_err(|e| format!("cannot find the pvcheck binary itself: {e}")),
    }
}

fn run_cmd(a: RunArgs) -> u8 {
    if let Err(e) = a.platform.platform.built_in() {
        eprintln!("pvcheck: {e}");
        return exit_code::USAGE;
    }
    // Checked before anything runs: a nightly must not find out at dawn that it could not report.
    let reports = match a.reports.paths() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pvcheck: {e}");
            return exit_code::USAGE;
        }
    };
    let (classes, files) = if a.classes.is_empty() {
        (
            config::load_default(),
            vec![config::DEFAULT_CLASSES_NAME.to_string()],
        )
    } else {
        (
            config::load_files(&a.classes),
            a.classes.iter().map(|p| p.display().to_string()).collect(),
        )
    };
    let classes = match classes {
        Ok(c) => c,
        Err(e) => {
            eprintln!("pvcheck: {e}");
            return exit_code::USAGE;
        }
    };
    let agent = match agent_binary(a.agent.clone()) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("pvcheck: {e}");
            return exit_code::USAGE;
        }
    };
    let speed_size = match a.speed_size.map(|s| s.bytes()) {
        Some(n) if n < (1 << 20) || n % (1 << 20) != 0 => {
            eprintln!(
                "pvcheck: --speed-size {}: give a multiple of 1MiB, at least 1MiB (the 1 MiB jobs need whole blocks)",
                pvcheck_workloads::units::format_size(n)
            );
            return exit_code::USAGE;
        }
        other => other,
    };
    let phase =
        match crate::phase::Phase::from_flags(a.phase, a.resume.as_deref(), a.platform.platform) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("pvcheck: {e}");
                return exit_code::USAGE;
            }
        };
    // A baseline that cannot be read is a usage error before anything is created.
    // --create-baseline: a missing baseline of that name is the first night, not an error.
    let mut create_baseline = None;
    if a.create_baseline
        && let Some(b) = &a.baseline
    {
        if !crate::baseline::valid_name(b) {
            eprintln!(
                "pvcheck: --create-baseline: --baseline {b:?} must be a baseline name (letters, digits, '.', '_', '-'), not a file"
            );
            return exit_code::USAGE;
        }
        if !a
            .results
            .join("baselines")
            .join(format!("{b}.json"))
            .is_file()
        {
            create_baseline = Some(b.clone());
        }
    }
    let baseline = match &a.baseline {
        None => None,
        Some(_) if create_baseline.is_some() => None,
        Some(b) => match crate::compare::rundoc::resolve(b, &a.results) {
            Ok(d) => Some(d),
            Err(e) => {
                eprintln!("pvcheck: --baseline: {e}");
                return exit_code::USAGE;
            }
        },
    };
    let mut choice = a.platform.choice();
    choice.kube.resume = phase.resumes().map(str::to_string);
    let opts = RunOptions {
        phase,
        test_args: a.test_args(),
        filters: a.filters.clone(),
        verbose: a.verbose,
        strict: a.strict,
        speed_size,
        command_line: std::env::args().collect(),
        classes,
        class_files: files,
        profile: a.profile,
        results: a.results,
        state_dir: a.state_dir.unwrap_or_else(registry::default_state_dir),
        agent,
        keep_on_failure: a.keep_on_failure,
        seed: a.seed,
        platform: choice,
        repeat: a.repeat.unwrap_or(a.profile.default_repeat()),
        baseline,
        reports,
        create_baseline,
        keep_runs: a.keep_runs,
        allow_mismatch: a.allow_mismatch,
        allow_inconclusive: a.allow_inconclusive,
        max_repeat: a.max_repeat,
        parallel_classes: a.parallel_classes.map(|n| n as usize),
    };
    run::execute(opts)
}

fn cleanup_cmd(a: CleanupArgs) -> u8 {
    if let Err(e) = a.platform.platform.built_in() {
        eprintln!("pvcheck: cleanup: {e}");
        return exit_code::USAGE;
    }
    let state_dir = a.state_dir.unwrap_or_else(registry::default_state_dir);
    if a.platform.platform == PlatformKind::Local {
        if a.run_id.is_some() || a.older_than.is_some() {
            eprintln!(
                "pvcheck: cleanup: --run-id and --older-than are for --platform kubernetes (on the local platform name runs as arguments: pvcheck cleanup RUN_ID…)"
            );
            return exit_code::USAGE;
        }
        return crate::cleanup::command(&state_dir, &a.run_ids, a.dry_run);
    }
    if a.run_ids.len() > 1 || (a.run_id.is_some() && !a.run_ids.is_empty()) {
        eprintln!(
            "pvcheck: cleanup: --platform kubernetes cleans one run at a time (--run-id ID, or one RUN_ID argument)"
        );
        return exit_code::USAGE;
    }
    let run_id = a.run_id.clone().or_else(|| a.run_ids.first().cloned());
    let agent = match AgentBinary::current() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("pvcheck: {e}");
            return exit_code::USAGE;
        }
    };
    // The platform of no run: it only reads and removes other runs' registries.
    let reg = match Registry::open(&state_dir.join("runs").join("cleanup")) {
        Ok(r) => std::sync::Arc::new(r),
        Err(e) => {
            eprintln!("pvcheck: {e}");
            return exit_code::USAGE;
        }
    };
    let mut choice = a.platform.choice();
    choice.kube.older_than = a.older_than;
    let platform = match platform::select(
        &choice,
        SelectCtx {
            registry: reg,
            state_dir: state_dir.clone(),
            agent,
            classes: &[],
            purpose: Purpose::Cleanup,
        },
    ) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("pvcheck: {e}");
            return e.exit_code();
        }
    };
    let filter = match &run_id {
        Some(r) => RunFilter::Run {
            run_id: r.clone(),
            class: None,
        },
        None => RunFilter::Dead,
    };
    let result = if a.dry_run {
        platform.leftovers(&filter)
    } else {
        platform.remove_leftovers(&filter)
    };
    match result {
        Ok(list) => {
            let verb = if a.dry_run { "would remove" } else { "removed" };
            for l in &list {
                println!(
                    "{verb} {} {} (run {}{})",
                    l.kind,
                    l.what,
                    l.run_id,
                    l.class
                        .as_ref()
                        .map(|c| format!(", class {c}"))
                        .unwrap_or_default()
                );
            }
            let from = match a.platform.platform {
                PlatformKind::Local => format!("dead runs in {}", state_dir.display()),
                PlatformKind::Kubernetes => match &run_id {
                    Some(r) => {
                        format!("run {r} in the cluster (objects labelled pvcheck.io/run-id={r})")
                    }
                    None => {
                        "abandoned runs in the cluster (objects labelled pvcheck.io/run-id)".into()
                    }
                },
            };
            println!(
                "{verb} {} from {from}",
                crate::registry::count(list.len(), "thing")
            );
            exit_code::OK
        }
        Err(e) => {
            eprintln!("pvcheck: cleanup: {e}");
            match a.platform.platform {
                PlatformKind::Local => exit_code::CHECK_FAILED,
                PlatformKind::Kubernetes => exit_code::INFRASTRUCTURE,
            }
        }
    }
}
