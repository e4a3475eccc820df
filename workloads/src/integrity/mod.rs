//! The integrity engine: seeded, self-describing blocks, a constant-size ledger, and a verifier
//! that names the kind of damage, the file, the offset and the generation.
//!
//! The format, ledger, report and exit codes are documented in `docs/agent-integrity.md`.

pub mod block;
pub mod classify;
pub mod cli;
pub mod durability;
pub mod error;
pub mod io;
pub mod layout;
pub mod ledger;
pub mod live;
pub mod parallel;
pub mod prng;
pub mod report;
pub mod schedule;
pub mod selftest;
pub mod sha256x2;
pub mod target;
pub mod verify;
pub mod write;

pub use error::Error;
