//! The integrity engine's errors. Each renders as one line naming the path, field or flag, and
//! for system calls the errno, because the harness shows it to a user on another machine.

use std::io;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A system call failed on `path`.
    #[error("{path}: {op}: {errno}{detail}")]
    Io {
        path: String,
        op: String,
        errno: String,
        detail: String,
    },
    /// The ledger (or the acks header) is malformed or belongs elsewhere.
    #[error("{path}: field `{field}`: {why}")]
    Ledger {
        path: String,
        field: String,
        why: String,
    },
    /// A flag value is unusable.
    #[error("{flag}: {why}")]
    Usage { flag: String, why: String },
    /// The target is not what the ledger describes (wrong kind, too small, already holds data).
    #[error("{path}: {why}")]
    Target { path: String, why: String },
}

impl Error {
    /// Wraps an I/O error with the path and operation, naming the errno symbolically
    /// (`ENOSPC: No space left on device`) so the line is greppable.
    pub fn io(path: &Path, op: &str, e: io::Error) -> Error {
        let (errno, detail) = match e.raw_os_error() {
            Some(code) => {
                let name = format!("{:?}", nix::errno::Errno::from_raw(code));
                let msg = io::Error::from_raw_os_error(code).to_string();
                let msg = msg.split(" (os error").next().unwrap_or("").to_string();
                (name, format!(": {msg}"))
            }
            None => (format!("{:?}", e.kind()), format!(": {e}")),
        };
        Error::Io {
            path: path.display().to_string(),
            op: op.to_string(),
            errno,
            detail,
        }
    }

    pub fn usage(flag: &str, why: impl Into<String>) -> Error {
        Error::Usage {
            flag: flag.to_string(),
            why: why.into(),
        }
    }

    pub fn target(path: &Path, why: impl Into<String>) -> Error {
        Error::Target {
            path: path.display().to_string(),
            why: why.into(),
        }
    }
}
