//! The command line of the regression gate (issue 12): `pvcheck compare`, `pvcheck baseline
//! save|list`, and the flags `pvcheck run` shares with them. Thin: parsing and printing; the
//! work is in [`crate::compare`], [`crate::baseline`] and [`crate::report`].

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::baseline;
use crate::compare::{self, rundoc};
use crate::exit_code;
use crate::report::compare_table;
use crate::report::outputs::{self, ReportInput, ReportPaths};
use crate::report::push::PushTarget;

/// Report files; on `run` and on `compare`.
#[derive(Debug, Args, Clone, Default)]
pub struct ReportArgs {
    /// Write a JUnit XML report (a testcase per trial; regressions are failures).
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Write a Markdown report (pull-request comment, CI job summary).
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
    /// Write a self-contained HTML report with charts.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Write the figures in Prometheus text format (node-exporter textfile collector).
    #[arg(long, value_name = "FILE")]
    pub prometheus: Option<PathBuf>,
    /// Push the same figures to a Prometheus Pushgateway (base URL, http:// or https://), one
    /// group per class: PUT URL/metrics/job/pvcheck/class/CLASS. A failed push is one line on
    /// stderr and leaves the exit code as the verdict made it.
    #[arg(long, value_name = "URL")]
    pub push_metrics: Option<String>,
}

impl ReportArgs {
    /// The report destinations; `Err` (one line) for a `--push-metrics` that is not a URL.
    pub fn paths(&self) -> Result<ReportPaths, String> {
        Ok(ReportPaths {
            junit: self.junit.clone(),
            markdown: self.markdown.clone(),
            html: self.html.clone(),
            prometheus: self.prometheus.clone(),
            push: self
                .push_metrics
                .as_deref()
                .map(PushTarget::parse)
                .transpose()?,
        })
    }
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The baseline: a run file, a baseline file, or a baseline name (results/baselines/NAME.json).
    pub base: String,
    /// The run to judge: a run file (or a baseline).
    pub new: String,
    /// Compare even when the setups differ (the differences are printed above the verdicts).
    #[arg(long)]
    pub allow_mismatch: bool,
    /// Exit 0 even when figures were not judged (inconclusive or unreliable); without it they
    /// exit 4. The summary line always says how many were not judged.
    #[arg(long)]
    pub allow_inconclusive: bool,
    /// Results root, where baseline names and the trend's runs are looked up.
    #[arg(long, value_name = "DIR", default_value = "results")]
    pub results: PathBuf,
    #[command(flatten)]
    pub reports: ReportArgs,
}

#[derive(Debug, Subcommand)]
pub enum BaselineCommand {
    /// Make results/baselines/NAME.json from one or several clean runs of one setup.
    Save(SaveArgs),
    /// List the baselines with their setup.
    List(ListArgs),
}

#[derive(Debug, Args)]
pub struct SaveArgs {
    /// Run files (results/runs/*.json); their speed repetitions are pooled.
    #[arg(required = true, value_name = "RUN.json")]
    pub runs: Vec<PathBuf>,
    /// The baseline's name: letters, digits, '.', '_', '-'.
    #[arg(long)]
    pub name: String,
    /// Replace an existing baseline of that name, and keep a baseline most of whose workloads
    /// have unreliable repetitions (refused without it).
    #[arg(long)]
    pub force: bool,
    /// Pool runs even when their setups differ.
    #[arg(long)]
    pub allow_mismatch: bool,
    /// Results root: the baseline goes to DIR/baselines/NAME.json.
    #[arg(long, value_name = "DIR", default_value = "results")]
    pub results: PathBuf,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[arg(long, value_name = "DIR", default_value = "results")]
    pub results: PathBuf,
}

/// `pvcheck compare BASE NEW`.
pub fn compare_cmd(a: CompareArgs) -> u8 {
    let paths = match a.reports.paths() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("pvcheck: {e}");
            return exit_code::USAGE;
        }
    };
    let read = |arg: &str| rundoc::resolve(arg, &a.results);
    let (base, new) = match (read(&a.base), read(&a.new)) {
        (Ok(b), Ok(n)) => (b, n),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("pvcheck: {e}");
            return exit_code::USAGE;
        }
    };
    let noise = crate::compare::history::noise_of(&a.results);
    let report = match compare::compare_with_noise(base, new, a.allow_mismatch, &noise) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pvcheck: {e}");
            return e.exit_code();
        }
    };
    println!("{}", compare_table::render(&report));
    let input = ReportInput {
        run: &report.new,
        comparison: Some(&report),
        refused: None,
        allow_inconclusive: a.allow_inconclusive,
        results: &a.results,
    };
    let problems = outputs::write_all(&paths, &input);
    for p in &problems {
        eprintln!("pvcheck: {p}");
    }
    outputs::push(&paths, &input);
    if !problems.is_empty() {
        return exit_code::USAGE;
    }
    report.exit_code(a.allow_inconclusive)
}

/// `pvcheck baseline …`.
pub fn baseline_cmd(c: BaselineCommand) -> u8 {
    match c {
        BaselineCommand::Save(a) => {
            match baseline::save(&a.runs, &a.name, &a.results, a.force, a.allow_mismatch) {
                Ok((path, doc)) => {
                    let reps: usize = doc["trials"]
                        .as_array()
                        .map(|ts| {
                            ts.iter()
                                .filter_map(|t| t["metrics"]["repetitions"].as_array())
                                .map(Vec::len)
                                .max()
                                .unwrap_or(0)
                        })
                        .unwrap_or(0);
                    println!(
                        "baseline {} saved to {} ({} run(s), up to {reps} repetitions per workload)",
                        a.name,
                        path.display(),
                        a.runs.len()
                    );
                    if let Ok(d) = compare::RunDoc::from_value(&path, doc) {
                        let (flagged, total) = baseline::unreliable(&d);
                        if !flagged.is_empty() {
                            println!(
                                "warning: {} of {total} workload(s) have repetitions the gate will call unreliable (their figures will be 'not judged' against this baseline):",
                                flagged.len()
                            );
                            for f in flagged {
                                println!("  {f}");
                            }
                        }
                    }
                    exit_code::OK
                }
                Err(e) => {
                    eprintln!("pvcheck: {e}");
                    exit_code::USAGE
                }
            }
        }
        BaselineCommand::List(a) => {
            let all = baseline::list(&a.results);
            if all.is_empty() {
                println!(
                    "no baselines in {} (make one: pvcheck baseline save RUN.json --name NAME)",
                    a.results.join("baselines").display()
                );
                return exit_code::OK;
            }
            let mut t = comfy_table::Table::new();
            t.load_style(comfy_table::presets::ASCII_FULL_CONDENSED);
            t.set_header(vec![
                "name",
                "created",
                "runs",
                "profile",
                "platform",
                "kernel",
                "agent",
                "classes (kind, fs, options) ×repetitions",
            ]);
            for b in all {
                match b.error {
                    Some(e) => {
                        t.add_row(vec![b.name, format!("unreadable: {e}")]);
                    }
                    None => {
                        t.add_row(vec![
                            b.name,
                            b.created,
                            b.runs.to_string(),
                            b.profile,
                            b.platform,
                            b.kernel,
                            b.agent,
                            b.classes.join("\n"),
                        ]);
                    }
                }
            }
            println!("{t}");
            exit_code::OK
        }
    }
}
