//! pvcheck: provisions a volume per storage class, runs the agent on it, and turns what the
//! agent reports into trials, results and a verdict.
//!
//! - [`config`]: storage-class files (strict YAML).
//! - [`platform`]: the boundary to where volumes come from ([`platform::Platform`],
//!   [`platform::Volume`], [`platform::Pod`]) and the local platform.
//! - [`registry`]: everything a run creates, recorded before it is created, removed at the end.
//! - [`exit_code`]: the documented exit codes.

pub mod baseline;
pub mod checks;
pub mod cleanup;
pub mod cli;
pub mod cli_gate;
pub mod cli_history;
pub mod compare;
pub mod config;
pub mod exit_code;
pub mod image;
pub mod phase;
pub mod platform;
pub mod profile;
pub mod registry;
pub mod report;
pub mod run;
pub mod signals;
pub mod stats;
pub mod sys;
