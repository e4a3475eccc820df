//! Subcommands of the speed engine: `bench`.
//!
//! Sizes and durations are taken as strings and parsed here with [`crate::units`], so that a
//! refused value produces one line naming the flag (clap's own errors span several lines).

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

use super::error::Error;
use super::job::{EngineChoice, JobKind, JobParams, JobSpec, Target};
use super::matrix::{self, Profile};
use super::result::Status;
use super::runner;
use crate::exit::Outcome;
use crate::units::{parse_duration, parse_size};

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one job (a named workload or explicit flags) and print its result (JSON) on stdout.
    ///
    /// Exit 0: result printed, status ok. Exit 1: result printed, status stalled.
    /// Exit 2: bad input, I/O error or interrupted (one line on stderr, no result).
    Bench(BenchArgs),
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Run on files created in this directory (removed afterwards unless --keep).
    #[arg(long, value_name = "DIR", conflicts_with = "device")]
    pub dir: Option<PathBuf>,
    /// Run on this raw block device (its contents are overwritten).
    #[arg(long, value_name = "DEV")]
    pub device: Option<PathBuf>,
    /// Timings and size of the named workloads (default: quick, as `pvcheck run`).
    #[arg(long, value_enum)]
    pub profile: Option<Profile>,
    /// A workload of the standard matrix (see --list-workloads); other flags override it.
    #[arg(long, value_name = "NAME")]
    pub workload: Option<String>,
    /// Print the matrix's workload names, one per line, in the order they are run.
    #[arg(long)]
    pub list_workloads: bool,
    /// Access pattern or special job.
    #[arg(long, value_enum, value_name = "KIND")]
    pub rw: Option<JobKind>,
    /// Block size, with a unit (4KiB, 1MiB).
    #[arg(long, value_name = "SIZE")]
    pub bs: Option<String>,
    /// I/Os in flight per job.
    #[arg(long, value_name = "N")]
    pub iodepth: Option<u32>,
    /// Parallel jobs, each with its own file (or device region).
    #[arg(long, value_name = "N")]
    pub jobs: Option<u32>,
    /// File (or region) size per job, with a unit.
    #[arg(long, value_name = "SIZE")]
    pub size: Option<String>,
    /// Measured time, with a unit (30s, 500ms).
    #[arg(long, value_name = "DUR")]
    pub runtime: Option<String>,
    /// Warm-up excluded from the figures, with a unit (0s for none).
    #[arg(long, value_name = "DUR")]
    pub ramp: Option<String>,
    /// O_DIRECT (default true; where the filesystem refuses it the job runs buffered and says so).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub direct: Option<bool>,
    /// fdatasync after every N writes.
    #[arg(long, value_name = "N")]
    pub fsync_every: Option<u32>,
    /// Percentage of reads for --rw randrw (default 50).
    #[arg(long, value_name = "PCT")]
    pub read_pct: Option<u32>,
    /// io_uring engine: how long to watch the ring for a completion before sleeping in the
    /// kernel (default 50us; 0s sleeps at once; at most 1ms).
    #[arg(long, value_name = "DUR")]
    pub spin_wait: Option<String>,
    /// io_uring, the thread engine, or io_uring where allowed.
    #[arg(long, value_enum, default_value = "auto")]
    pub engine: EngineChoice,
    /// End the job as stalled after this long without a completion.
    #[arg(long, value_name = "DUR", default_value = "60s")]
    pub stall_timeout: String,
    /// IOPS sampling interval for `cv` (default: 100ms for quick, so its 1 s run gives 10
    /// samples; 500ms otherwise).
    #[arg(long, value_name = "DUR")]
    pub sample_interval: Option<String>,
    /// Keep the data files after the run.
    #[arg(long)]
    pub keep: bool,
    /// Use stable job files (`pvcheck-bench.<job>` in --dir) and keep them: the first run
    /// creates and prefills them, later runs of the same size reuse them without writing
    /// them again (the harness runs its whole matrix on one prefill). Remove them by hand,
    /// or with the volume, when done.
    #[arg(long)]
    pub reuse: bool,
    /// Seed for data and offsets (default: random below 2^53; printed in the result).
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
}

fn size_flag(flag: &'static str, v: &str) -> Result<u64, Error> {
    parse_size(v).map_err(|e| Error::BadFlag {
        flag,
        msg: e.to_string(),
    })
}

fn dur_flag(flag: &'static str, v: &str) -> Result<Duration, Error> {
    parse_duration(v).map_err(|e| Error::BadFlag {
        flag,
        msg: e.to_string(),
    })
}

fn random_seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    (t ^ ((std::process::id() as u64) << 32)) & crate::units::JSON_SAFE_MAX
}

impl BenchArgs {
    /// Turns the flags into a validated job: matrix entry (if named), then explicit flags.
    pub fn to_spec(&self) -> Result<JobSpec, Error> {
        let target = match (&self.dir, &self.device) {
            (Some(d), None) => Target::Dir(d.clone()),
            (None, Some(d)) => Target::Device(d.clone()),
            _ => return Err(Error::NoTarget),
        };
        if self.reuse && self.device.is_some() {
            return Err(Error::BadFlag {
                flag: "--reuse",
                msg: "works with --dir only: a device has no files to keep".into(),
            });
        }
        let profile = self.profile.unwrap_or(Profile::Quick);
        let mut job = match (&self.workload, self.rw) {
            (Some(name), _) => {
                matrix::workload(profile, name)
                    .ok_or_else(|| Error::UnknownWorkload(name.clone()))?
                    .job
            }
            (None, Some(rw)) => default_job(rw, profile),
            (None, None) => return Err(Error::NoJob),
        };
        if let Some(rw) = self.rw
            && rw != job.rw
        {
            let d = default_job(rw, profile);
            job.rw = rw;
            job.direct = d.direct;
            job.fsync_every = d.fsync_every;
            job.read_pct = d.read_pct;
        }
        if let Some(v) = &self.bs {
            job.bs = size_flag("--bs", v)?;
        }
        if let Some(v) = self.iodepth {
            job.iodepth = v;
        }
        if let Some(v) = self.jobs {
            job.jobs = v;
        }
        if let Some(v) = &self.size {
            job.size = size_flag("--size", v)?;
        }
        if let Some(v) = &self.runtime {
            job.runtime_s = dur_flag("--runtime", v)?.as_secs_f64();
        }
        if let Some(v) = &self.ramp {
            job.ramp_s = dur_flag("--ramp", v)?.as_secs_f64();
        }
        if let Some(v) = self.direct {
            job.direct = v;
        }
        if let Some(v) = &self.spin_wait {
            let d = dur_flag("--spin-wait", v)?;
            if d > std::time::Duration::from_micros(super::job::MAX_SPIN_WAIT_US.into()) {
                return Err(Error::BadFlag {
                    flag: "--spin-wait",
                    msg: format!(
                        "{v} is more than {}us: the engine would mostly burn its CPU",
                        super::job::MAX_SPIN_WAIT_US
                    ),
                });
            }
            job.spin_wait_us = d.as_micros() as u32;
        }
        if let Some(v) = self.fsync_every {
            if job.rw == JobKind::FsyncLatency && v == 0 {
                return Err(Error::BadFlag {
                    flag: "--fsync-every",
                    msg: "the fsync-latency job syncs after every write; 0 is refused".into(),
                });
            }
            job.fsync_every = v;
        }
        if let Some(v) = self.read_pct {
            job.read_pct = Some(u8::try_from(v).unwrap_or(u8::MAX));
            if v > 100 {
                return Err(Error::BadFlag {
                    flag: "--read-pct",
                    msg: format!("{v} is not a percentage (0..=100)"),
                });
            }
        }
        let spec = JobSpec {
            job,
            target,
            workload: self.workload.clone(),
            profile: self.profile.or(self.workload.as_ref().map(|_| profile)),
            engine: self.engine,
            stall_timeout: dur_flag("--stall-timeout", &self.stall_timeout)?,
            sample_interval: match &self.sample_interval {
                Some(v) => dur_flag("--sample-interval", v)?,
                None => profile.sample_interval(),
            },
            keep: self.keep,
            reuse: self.reuse,
            seed: self.seed.unwrap_or_else(random_seed),
        };
        spec.validate()?;
        Ok(spec)
    }
}

/// Defaults for `--rw KIND` without a workload name.
fn default_job(rw: JobKind, profile: Profile) -> JobParams {
    let named = match rw {
        JobKind::FsyncLatency => matrix::workload(profile, "fsync-latency"),
        JobKind::Metadata => matrix::workload(profile, "metadata"),
        _ => None,
    };
    if let Some(w) = named {
        return w.job;
    }
    JobParams {
        rw,
        bs: 4096,
        iodepth: 1,
        jobs: 1,
        size: profile.size(),
        runtime_s: profile.runtime().as_secs_f64(),
        ramp_s: profile.ramp().as_secs_f64(),
        direct: true,
        read_pct: (rw == JobKind::Randrw).then_some(50),
        fsync_every: 0,
        spin_wait_us: super::job::DEFAULT_SPIN_WAIT_US,
    }
}

impl Command {
    pub fn run(self) -> Result<Outcome, Error> {
        match self {
            Command::Bench(args) => {
                if args.list_workloads {
                    let mut out = std::io::stdout().lock();
                    for n in matrix::NAMES {
                        writeln!(out, "{n}").map_err(Error::Output)?;
                    }
                    return Ok(Outcome::Ok);
                }
                let spec = args.to_spec()?;
                let result = runner::run(&spec)?;
                let json = serde_json::to_string(&result)
                    .map_err(|e| Error::Output(std::io::Error::other(e)))?;
                let mut out = std::io::stdout().lock();
                writeln!(out, "{json}").map_err(Error::Output)?;
                out.flush().map_err(Error::Output)?;
                Ok(match result.status {
                    Status::Ok => Outcome::Ok,
                    Status::Stalled => Outcome::Finding,
                })
            }
        }
    }
}
