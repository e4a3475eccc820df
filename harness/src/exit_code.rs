//! `pvcheck`'s exit codes. They are part of the public interface (docs/harness.md, README).
//!
//! | code | meaning                                                                       |
//! |------|-------------------------------------------------------------------------------|
//! | 0    | every selected check passed (ignored checks do not count as failures)         |
//! | 1    | at least one check failed                                                      |
//! | 2    | usage or configuration error: bad flag, bad class file, filter matching nothing; a result file that cannot be read or compared |
//! | 3    | a speed figure regressed against the baseline (`compare`, `run --baseline`)     |
//! | 4    | with `--strict`: a comparison was inconclusive or invalid                       |
//! | 130  | interrupted by SIGINT or SIGTERM; everything pvcheck created was removed       |

/// Every selected check passed.
pub const OK: u8 = 0;
/// At least one check failed.
pub const CHECK_FAILED: u8 = 1;
/// Usage or configuration error: nothing was provisioned.
pub const USAGE: u8 = 2;
/// Interrupted (128 + SIGINT, as shells report it); the run cleaned up before exiting.
pub const INTERRUPTED: u8 = 130;
/// `compare` or `run --baseline`: a speed figure regressed (issue 12).
pub const REGRESSED: u8 = 3;
/// `compare --strict`: some comparison was inconclusive or invalid, none regressed.
pub const INCONCLUSIVE: u8 = 4;
