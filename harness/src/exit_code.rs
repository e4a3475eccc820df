//! `pvcheck`'s exit codes. They are part of the public interface (docs/harness.md, README).
//!
//! | code | meaning                                                                       |
//! |------|-------------------------------------------------------------------------------|
//! | 0    | every selected check passed (ignored checks do not count as failures)         |
//! | 1    | at least one check failed                                                      |
//! | 2    | usage or configuration error: bad flag, bad class file, filter matching nothing |
//! | 130  | interrupted by SIGINT or SIGTERM; everything pvcheck created was removed       |

/// Every selected check passed.
pub const OK: u8 = 0;
/// At least one check failed.
pub const CHECK_FAILED: u8 = 1;
/// Usage or configuration error: nothing was provisioned.
pub const USAGE: u8 = 2;
/// Interrupted (128 + SIGINT, as shells report it); the run cleaned up before exiting.
pub const INTERRUPTED: u8 = 130;
