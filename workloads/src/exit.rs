//! The agent's exit codes. They are part of its public interface (see the README).

use std::process::ExitCode;

/// The run did what was asked and found nothing wrong.
pub const OK: u8 = 0;
/// The run completed and found damage (verify, selftest) or a failed job (bench `stalled`).
pub const FINDING: u8 = 1;
/// Usage error, bad input (ledger, flags, target) or an I/O error that stopped the run.
pub const USAGE_OR_IO: u8 = 2;

/// What a subcommand reports back to [`crate::cli::main`] when it did not fail outright.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Exit [`OK`].
    Ok,
    /// Exit [`FINDING`].
    Finding,
}

impl From<Outcome> for ExitCode {
    fn from(o: Outcome) -> Self {
        match o {
            Outcome::Ok => ExitCode::from(OK),
            Outcome::Finding => ExitCode::from(FINDING),
        }
    }
}
