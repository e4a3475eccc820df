//! What can go wrong below the checks: creating, attaching, mounting, running the agent, removing.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    /// A command the platform runs (mkfs, losetup, mount, an upgrade command, a driver) failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
    },
    /// A driver did not answer a call within its deadline (or stopped answering earlier in the
    /// run): category `timeout`.
    #[error("{0}")]
    DriverTimeout(String),
    /// A command or the agent did not finish in time.
    #[error("`{command}` did not finish within {}", pvcheck_workloads::units::format_duration(*limit))]
    Timeout { command: String, limit: Duration },
    /// Plain I/O on the harness side.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The class or volume cannot do this (e.g. expand a dir volume).
    #[error("{0}")]
    Unsupported(String),
    /// The volume does not offer what was requested.
    #[error("{0}")]
    Capacity(String),
    /// A run was interrupted (SIGINT/SIGTERM): nothing new may be created.
    #[error("interrupted")]
    Interrupted,
    /// The driver broke its protocol (a malformed reply, or a success the kernel contradicts).
    #[error("{0}")]
    Protocol(String),
    /// The run registry could not record or remove something.
    #[error("run registry: {0}")]
    Registry(String),
    /// The environment, not the storage under test, kept the harness from its work: a volume
    /// not provisioned within `timeouts.provision`, an agent image that cannot be pulled
    /// (category `infrastructure`, exit 5 when nothing else failed).
    #[error("{0}")]
    Infrastructure(String),
    /// Anything else, described.
    #[error("{0}")]
    Other(String),
}

impl PlatformError {
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        PlatformError::Io {
            what: what.into(),
            source,
        }
    }
}
