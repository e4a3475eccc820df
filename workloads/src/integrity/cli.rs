//! Subcommands of the integrity engine: write, rewrite, verify, durability, live-stream, selftest.
//! A thin layer: parse flags, call the library, print JSON on stdout, map to exit codes.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use super::durability::{self, DurabilityParams, Stop};
use super::ledger::Ledger;
use super::target::Target;
use super::verify::{self, VerifyParams};
use super::write::{self, RewriteParams, WriteParams};
use crate::exit::Outcome;
use crate::units::{Dur, Size};

pub use super::error::Error;

/// `--dir D` or `--device DEV`: exactly one.
#[derive(Debug, Clone, Args)]
#[group(required = true, multiple = false)]
pub struct TargetArgs {
    /// Directory on the volume under test; the dataset lives in <DIR>/pvcheck-data/.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Raw block device (or image file); the dataset occupies bytes 0..size.
    #[arg(long)]
    pub device: Option<PathBuf>,
}

impl TargetArgs {
    fn target(&self) -> Target {
        match (&self.dir, &self.device) {
            (Some(d), _) => Target::Dir(d.clone()),
            (None, Some(d)) => Target::Device(d.clone()),
            (None, None) => unreachable!("clap requires one of --dir/--device"),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a seeded dataset (generation 1) and print its ledger (JSON) on stdout.
    Write {
        #[command(flatten)]
        target: TargetArgs,
        /// Dataset size, with a unit (e.g. 1GiB); a multiple of the block size.
        #[arg(long)]
        size: Size,
        /// Seed of the dataset (any u64; values below 2^53 survive JSON tools such as jq).
        #[arg(long)]
        seed: u64,
        /// Volume id given by the harness (any u64), stamped in every block.
        #[arg(long)]
        volume_id: u64,
        /// Block size, with a unit: a multiple of 512B.
        #[arg(long, default_value = "4KiB")]
        block_size: Size,
        /// Writer threads.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
        threads: u16,
        /// Create --dir first (one level: its parent must exist), for a part of a volume that
        /// another writer shares (the harness's `rwx` check gives each pod its own).
        #[arg(long, requires = "dir")]
        mkdir: bool,
    },
    /// Overwrite a seeded fraction of the blocks with the next generation; print the extended ledger.
    Rewrite {
        #[command(flatten)]
        target: TargetArgs,
        /// Ledger printed by write or a previous rewrite.
        #[arg(long)]
        ledger: PathBuf,
        /// Fraction of blocks to rewrite, in (0, 1].
        #[arg(long, default_value_t = 0.1, value_parser = parse_fraction)]
        fraction: f64,
        /// Seed of the new generation (derived from the dataset seed by default).
        #[arg(long)]
        seed: Option<u64>,
        /// Refuse a ledger of another volume.
        #[arg(long)]
        volume_id: Option<u64>,
        /// Writer threads.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
        threads: u16,
    },
    /// Check every block against the ledger and/or every acknowledged durability record; print a report (JSON).
    /// Exit 0 clean, 1 damage found, 2 usage or I/O error.
    Verify {
        #[command(flatten)]
        target: TargetArgs,
        /// Ledger printed by write or rewrite (optional with --acks: the acks stream describes itself).
        #[arg(long, required_unless_present = "acks")]
        ledger: Option<PathBuf>,
        /// Acknowledgements printed by durability.
        #[arg(long)]
        acks: Option<PathBuf>,
        /// Refuse a ledger or acks of another volume.
        #[arg(long)]
        volume_id: Option<u64>,
        /// Reader threads.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
        threads: u16,
        /// Also recompute every block's sha256 (the default compares against regenerated content,
        /// which already catches any changed byte).
        #[arg(long)]
        full_hash: bool,
        /// Read through the page cache (after posix_fadvise DONTNEED) even where O_DIRECT works,
        /// to check what applications reading normally would see.
        #[arg(long)]
        buffered: bool,
    },
    /// Append fsynced records under --dir and print one acknowledgement line per record after its fsync.
    Durability {
        /// Directory on the volume under test; the log is <DIR>/pvcheck-durability.log.
        #[arg(long)]
        dir: PathBuf,
        /// Seed of the records (any u64; values below 2^53 survive JSON tools such as jq).
        #[arg(long)]
        seed: u64,
        /// Volume id given by the harness (any u64), stamped in every record.
        #[arg(long)]
        volume_id: u64,
        /// Stop after this many records.
        #[arg(
            long,
            required_unless_present = "duration",
            conflicts_with = "duration"
        )]
        records: Option<u64>,
        /// Stop after this long (with a unit, e.g. 30s).
        #[arg(long)]
        duration: Option<Dur>,
        /// Records per fsync.
        #[arg(long, default_value_t = 16)]
        batch: u64,
        /// Record size, with a unit: a multiple of 512B.
        #[arg(long, default_value = "4KiB")]
        block_size: Size,
    },
    /// The durability stream through a driver's upgrade or crash: errors are reported and retried,
    /// not fatal; the mount is probed meanwhile. stdout: the acks header, `{"record":N}` lines
    /// and `{"event":…}` lines. Runs until killed or --duration ends.
    LiveStream {
        /// Directory on the volume under test; the log is <DIR>/pvcheck-durability.log.
        #[arg(long)]
        dir: PathBuf,
        /// Create --dir first (one level).
        #[arg(long)]
        mkdir: bool,
        /// Seed of the records.
        #[arg(long)]
        seed: u64,
        /// Volume id given by the harness, stamped in every record.
        #[arg(long)]
        volume_id: u64,
        /// Stop after this long (with a unit); the harness normally kills it first.
        #[arg(long)]
        duration: Dur,
        /// Records per fsync.
        #[arg(long, default_value_t = 8)]
        batch: u64,
        /// Record size, with a unit: a multiple of 512B.
        #[arg(long, default_value = "4KiB")]
        block_size: Size,
        /// Pause between batches, with a unit.
        #[arg(long, default_value = "100ms")]
        interval: Dur,
        /// How often the mount is probed, with a unit.
        #[arg(long, default_value = "1s")]
        probe_every: Dur,
    },
    /// Write a sacrificial dataset under --dir, inject one damage of each kind, and pass only if
    /// verify reports exactly those. Exit 0 passed, 1 failed, 2 usage or I/O error.
    Selftest {
        /// Directory on the volume under test; the sacrificial dataset goes in a subdirectory.
        #[arg(long)]
        dir: PathBuf,
        /// Size of the sacrificial dataset.
        #[arg(long, default_value = "1MiB")]
        size: Size,
        /// Writer and reader threads.
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=256))]
        threads: u16,
    },
}

impl Command {
    pub fn run(self) -> Result<Outcome, Error> {
        match self {
            Command::Write {
                target,
                size,
                seed,
                volume_id,
                block_size,
                threads,
                mkdir,
            } => {
                if mkdir && let Some(dir) = &target.dir {
                    // One level only: a mistyped mount point further up is still refused.
                    match std::fs::create_dir(dir) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                        Err(e) => return Err(Error::io(dir, "create directory", e)),
                    }
                }
                let l = write::write(&WriteParams {
                    target: target.target(),
                    size: size.bytes(),
                    seed,
                    volume_id,
                    block_size: block_size.bytes(),
                    threads: threads as usize,
                })?;
                print(&l.to_json())?;
                Ok(Outcome::Ok)
            }
            Command::Rewrite {
                target,
                ledger,
                fraction,
                seed,
                volume_id,
                threads,
            } => {
                let l = load_ledger(&ledger, volume_id)?;
                let out = write::rewrite(
                    &RewriteParams {
                        target: target.target(),
                        fraction,
                        seed,
                        threads: threads as usize,
                    },
                    &l,
                    &ledger,
                )?;
                print(&out.to_json())?;
                Ok(Outcome::Ok)
            }
            Command::Verify {
                target,
                ledger,
                acks,
                volume_id,
                threads,
                full_hash,
                buffered,
            } => {
                let ledger = match ledger {
                    Some(p) => Some((load_ledger(&p, volume_id)?, p)),
                    None => None,
                };
                let r = verify::verify(&VerifyParams {
                    target: target.target(),
                    ledger,
                    acks,
                    volume_id,
                    threads: threads as usize,
                    full_hash,
                    buffered,
                })?;
                print(&serde_json::to_string_pretty(&r).expect("report serialises"))?;
                if !r.clean {
                    // For a human at a terminal: the JSON on stdout has the details.
                    eprintln!("pvcheck-agent: verify: {}", damage_summary(&r));
                }
                Ok(if r.clean {
                    Outcome::Ok
                } else {
                    Outcome::Finding
                })
            }
            Command::Durability {
                dir,
                seed,
                volume_id,
                records,
                duration,
                batch,
                block_size,
            } => {
                let stop = match (records, duration) {
                    (Some(n), _) => Stop::Records(n),
                    (None, Some(d)) => Stop::After(d.0),
                    (None, None) => unreachable!("clap requires --records or --duration"),
                };
                let p = DurabilityParams {
                    dir,
                    seed,
                    volume_id,
                    block_size: block_size.bytes(),
                    batch,
                    stop,
                };
                durability::run(&p, &mut std::io::stdout().lock())?;
                Ok(Outcome::Ok)
            }
            Command::LiveStream {
                dir,
                mkdir,
                seed,
                volume_id,
                duration,
                batch,
                block_size,
                interval,
                probe_every,
            } => {
                let p = super::live::LiveParams {
                    dir,
                    mkdir,
                    seed,
                    volume_id,
                    block_size: block_size.bytes(),
                    batch,
                    interval: interval.0,
                    probe_every: probe_every.0,
                    duration: duration.0,
                };
                super::live::run(&p, Box::new(std::io::stdout()))?;
                Ok(Outcome::Ok)
            }
            Command::Selftest { dir, size, threads } => {
                let r = super::selftest::selftest(&dir, size.bytes(), threads as usize)?;
                print(&serde_json::to_string_pretty(&r).expect("report serialises"))?;
                Ok(if r.passed {
                    Outcome::Ok
                } else {
                    Outcome::Finding
                })
            }
        }
    }
}

fn load_ledger(path: &Path, volume_id: Option<u64>) -> Result<Ledger, Error> {
    let l = Ledger::load(path)?;
    if let Some(v) = volume_id
        && l.volume_id != v
    {
        return Err(Error::Ledger {
            path: path.display().to_string(),
            field: "volume_id".into(),
            why: format!(
                "{} is not the volume under test (--volume-id {v})",
                l.volume_id
            ),
        });
    }
    Ok(l)
}

fn print(s: &str) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{s}")
        .and_then(|_| out.flush())
        .map_err(|e| Error::io(Path::new("<stdout>"), "write", e))
}

/// `3 damaged block(s) [corrupt=2, zeroed=1]; first: corrupt at f offset 8192 (…)`.
fn damage_summary(r: &super::report::VerifyReport) -> String {
    let v = serde_json::to_value(r).unwrap_or_default();
    let total = v
        .get("damage_total")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0);
    let counts: Vec<String> = v
        .get("counts")
        .and_then(serde_json::Value::as_object)
        .map(|c| {
            c.iter()
                .filter(|(_, n)| n.as_u64().unwrap_or(0) > 0)
                .map(|(k, n)| format!("{k}={n}"))
                .collect()
        })
        .unwrap_or_default();
    let mut s = format!("{total} damaged block(s)");
    if !counts.is_empty() {
        s.push_str(&format!(" [{}]", counts.join(", ")));
    }
    if let Some(acks) = v.get("acks").filter(|a| !a.is_null()) {
        s.push_str(&format!(
            "; acknowledged records missing: {}",
            acks.get("missing").unwrap_or(&serde_json::Value::Null)
        ));
    }
    if let Some(d) = v.get("damage").and_then(|d| d.get(0)) {
        let f = |k: &str| {
            d.get(k)
                .map(|x| x.as_str().map_or(x.to_string(), str::to_string))
                .unwrap_or_default()
        };
        s.push_str(&format!(
            "; first: {} at {} offset {} ({})",
            f("kind"),
            f("file"),
            f("offset"),
            f("detail")
        ));
    }
    s.push_str("; details in the JSON report on stdout");
    s
}

/// `--fraction`: checked when the flags are parsed, before any file is read, so a bad value is
/// named as such and not hidden behind a ledger problem.
fn parse_fraction(s: &str) -> Result<f64, String> {
    let f: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number in (0, 1]"))?;
    if f > 0.0 && f <= 1.0 {
        Ok(f)
    } else {
        Err(format!("{s} is not in (0, 1]"))
    }
}
