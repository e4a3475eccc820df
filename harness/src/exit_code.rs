//! `pvcheck`'s exit codes. They are part of the public interface (docs/harness.md, README).
//!
//! | code | meaning                                                                       |
//! |------|-------------------------------------------------------------------------------|
//! | 0    | every selected check passed (ignored checks do not count as failures)         |
//! | 1    | at least one check failed (data, setup, protocol or timeout)                   |
//! | 2    | usage or configuration error: bad flag, bad class file, filter matching nothing, no kubeconfig, a StorageClass that does not exist (nothing was created) |
//! | 3    | a comparison with a baseline found a regression (and no check failed)         |
//! | 4    | not judged: nothing failed and nothing regressed, but some compared figures were inconclusive or unreliable (`--allow-inconclusive` accepts them), or, with `--strict`, some trials passed only with warnings |
//! | 5    | infrastructure: the API server cannot be reached, a volume could not be provisioned in time, the harness could not do its work, or the result file could not be written |
//! | 6    | nothing tested: every selected trial was ignored (no class can run here, e.g. no class has a section for the chosen platform), so no check passed or failed |
//! | 7    | the comparison was refused: unlike setups (without `--allow-mismatch`), the same run on both sides, or nothing in common |
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
/// Not judged: no failure and no regression, but compared figures that were inconclusive or
/// unreliable (unless `--allow-inconclusive`), or warnings under `--strict`.
pub const INCONCLUSIVE: u8 = 4;
/// The infrastructure failed the run (API server unreachable, RBAC refusing a call pvcheck needs
/// before any trial, or only `infrastructure` failures such as RBAC refusing a call inside a
/// trial, agent crashed, result file not written): not a verdict about the storage.
pub const INFRASTRUCTURE: u8 = 5;
/// Nothing was tested: every selected trial was ignored (for instance no class of the class file
/// has a section for `--platform`), so nothing passed and nothing failed. Not a pass: a nightly
/// whose classes silently stopped applying must not be green. (A filter that selects no trial
/// at all is a usage error, 2.)
pub const NOTHING_TESTED: u8 = 6;
/// The comparison with the baseline was refused (unlike setups, the same run twice, nothing in
/// common): no verdict about speed was given.
pub const REFUSED: u8 = 7;
/// Interrupted (128 + SIGINT, as shells report it); the run cleaned up before exiting.
pub const INTERRUPTED: u8 = 130;

/// One line saying what `code` means, for the verdict at the end of a run.
pub fn meaning(code: u8) -> &'static str {
    match code {
        OK => "every selected check passed",
        FAILED => "at least one check failed",
        USAGE => "usage or configuration error",
        REGRESSED => "a regression was found",
        INCONCLUSIVE => {
            "not judged: figures inconclusive or unreliable (--allow-inconclusive accepts them), or warnings under --strict"
        }
        REFUSED => "the comparison with the baseline was refused",
        INFRASTRUCTURE => "the harness could not do its work",
        NOTHING_TESTED => "nothing was tested: every selected trial was ignored",
        INTERRUPTED => "interrupted",
        _ => "unknown",
    }
}
