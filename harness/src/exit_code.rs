//! `pvcheck`'s exit codes. They are part of the public interface (docs/harness.md, README).
//!
//! | code | meaning                                                                       |
//! |------|-------------------------------------------------------------------------------|
//! | 0    | every selected check passed (ignored checks do not count as failures)         |
//! | 1    | at least one check failed (data, setup, protocol or timeout)                   |
//! | 2    | usage or configuration error, found before anything was created               |
//! | 4    | `--strict` only: nothing failed, but some trials passed only with warnings     |
//! | 5    | the harness could not do its work: infrastructure failures only, or the result file could not be written |
//! | 130  | interrupted by SIGINT or SIGTERM; everything pvcheck created was removed       |

/// Every selected check passed.
pub const OK: u8 = 0;
/// At least one check failed.
pub const FAILED: u8 = 1;
/// At least one check failed (the old name of [`FAILED`]).
pub const CHECK_FAILED: u8 = FAILED;
/// Usage or configuration error: nothing was provisioned.
pub const USAGE: u8 = 2;
/// A comparison found a regression (comparison reports).
pub const REGRESSED: u8 = 3;
/// `--strict`: no failure, but warnings, which `--strict` does not accept.
pub const INCONCLUSIVE: u8 = 4;
/// The harness itself could not do its work (agent crashed, registry, result file not written).
pub const INFRASTRUCTURE: u8 = 5;
/// Interrupted (128 + SIGINT, as shells report it); the run cleaned up before exiting.
pub const INTERRUPTED: u8 = 130;

/// One line saying what `code` means, for the verdict at the end of a run.
pub fn meaning(code: u8) -> &'static str {
    match code {
        OK => "every selected check passed",
        FAILED => "at least one check failed",
        USAGE => "usage or configuration error",
        REGRESSED => "a regression was found",
        INCONCLUSIVE => "passed only with warnings, which --strict does not accept",
        INFRASTRUCTURE => "the harness could not do its work",
        INTERRUPTED => "interrupted",
        _ => "unknown",
    }
}
