//! `pvcheck`'s exit codes. They are part of the public interface (docs/harness.md, README).
//!
//! | code | meaning                                                                       |
//! |------|-------------------------------------------------------------------------------|
//! | 0    | every selected check passed (ignored checks do not count as failures)         |
//! | 1    | at least one check failed                                                      |
//! | 2    | usage or configuration error: bad flag, bad class file, filter matching nothing, no kubeconfig, a StorageClass that does not exist (nothing was created) |
//! | 5    | infrastructure: the API server cannot be reached, a volume could not be provisioned in time |
//! | 130  | interrupted by SIGINT or SIGTERM; everything pvcheck created was removed       |

/// Every selected check passed.
pub const OK: u8 = 0;
/// At least one check failed.
pub const CHECK_FAILED: u8 = 1;
/// Usage or configuration error: nothing was provisioned.
pub const USAGE: u8 = 2;
/// The infrastructure failed the run (API server unreachable, RBAC refusing a call pvcheck needs
/// before any trial): not a verdict about the storage.
pub const INFRASTRUCTURE: u8 = 5;
/// Interrupted (128 + SIGINT, as shells report it); the run cleaned up before exiting.
pub const INTERRUPTED: u8 = 130;
