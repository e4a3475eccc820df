//! The agent's command line: a thin layer that parses flags and hands them to an engine.
//!
//! Each engine owns its own subcommands (`integrity::cli`, `speed::cli`); this file only
//! puts them side by side and maps results to the documented exit codes (see [`crate::exit`]).

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::exit;

/// pvcheck-agent: writes and verifies seeded datasets, and measures speed, on the volume under test.
#[derive(Debug, Parser)]
#[command(name = "pvcheck-agent", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    #[command(flatten)]
    Integrity(crate::integrity::cli::Command),
    #[command(flatten)]
    Speed(crate::speed::cli::Command),
}

/// Parses `args` (program name first), runs the subcommand, and returns its exit code.
/// Errors are printed as one line on stderr, prefixed with `pvcheck-agent: `.
pub fn main<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() {
                exit::USAGE_OR_IO
            } else {
                exit::OK
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let result = match cli.command {
        Command::Integrity(c) => c.run().map_err(|e| e.to_string()),
        Command::Speed(c) => c.run().map_err(|e| e.to_string()),
    };
    match result {
        Ok(outcome) => outcome.into(),
        Err(msg) => {
            eprintln!("pvcheck-agent: {msg}");
            ExitCode::from(exit::USAGE_OR_IO)
        }
    }
}
