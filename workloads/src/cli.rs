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
    /// Inside a Kubernetes pod: run the agent as a child and frame its stdout and stderr into one log.
    Pod(crate::pod::PodArgs),
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
        Err(e) if !e.use_stderr() => {
            // --help and --version: clap's own output, exit 0.
            let _ = e.print();
            return ExitCode::from(exit::OK);
        }
        Err(e) => {
            eprintln!("pvcheck-agent: {}", usage_error_line(&e));
            return ExitCode::from(exit::USAGE_OR_IO);
        }
    };
    let result = match cli.command {
        Command::Pod(a) => return crate::pod::run(a),
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

/// Bad input gets one line: clap's message (with its hint, such as the possible values)
/// without the "error: " prefix and the usage footer. Shared with the `pvcheck` binary.
pub fn usage_error_line(e: &clap::Error) -> String {
    let rendered = e.render().to_string();
    let message: Vec<&str> = rendered
        .lines()
        .map(str::trim)
        .skip_while(|l| l.is_empty())
        .take_while(|l| !l.is_empty())
        .collect();
    let line = message.join(" ");
    let line = line.strip_prefix("error: ").unwrap_or(&line);
    if line.is_empty() {
        "invalid arguments (see --help)".to_string()
    } else {
        format!("{line} (see --help)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bad flag value is one line, not clap's three (message, blank line, footer).
    #[test]
    fn usage_error_is_one_line() {
        let e = Cli::try_parse_from(["pvcheck-agent", "write", "--size", "45"]).unwrap_err();
        let line = usage_error_line(&e);
        assert!(!line.contains('\n'), "{line}");
        assert!(!line.starts_with("error:"), "{line}");
        assert!(line.contains("no unit"), "{line}");
    }

    /// Issue 15 (finding 13): a user running the agent by hand reads `--help`; a flag without
    /// a line of help is a flag nobody can use correctly.
    #[test]
    fn every_flag_of_every_subcommand_has_help_text() {
        use clap::CommandFactory;
        let cmd = Cli::command();
        let mut missing = Vec::new();
        for sub in cmd.get_subcommands() {
            for arg in sub.get_arguments() {
                if arg.get_id() == "help" || arg.get_id() == "version" {
                    continue;
                }
                if arg
                    .get_help()
                    .is_none_or(|h| h.to_string().trim().is_empty())
                {
                    missing.push(format!("{} --{}", sub.get_name(), arg.get_id()));
                }
            }
        }
        assert!(missing.is_empty(), "flags without help: {missing:?}");
    }

    /// The hint clap prints on its own line (possible values) stays in the one line.
    #[test]
    fn usage_error_keeps_the_possible_values() {
        let e = Cli::try_parse_from(["pvcheck-agent", "bench", "--engine", "fast"]).unwrap_err();
        let line = usage_error_line(&e);
        assert!(!line.contains('\n'), "{line}");
        assert!(line.contains("uring"), "{line}");
    }
}
