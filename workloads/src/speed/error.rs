//! Why a bench run did not produce a result. Each message is one line for the user.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A flag's value is refused (unit missing, zero, misaligned, contradicting another flag).
    #[error("{flag}: {msg}")]
    BadFlag { flag: &'static str, msg: String },
    #[error("unknown workload {0:?}: `pvcheck-agent bench --list-workloads` lists the names")]
    UnknownWorkload(String),
    #[error("give the target with --dir DIR or --device DEV")]
    NoTarget,
    #[error("give --workload NAME or --rw KIND")]
    NoJob,
    #[error("{path}: target is read-only ({source})")]
    ReadOnly {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {what}: {source}")]
    Target {
        path: PathBuf,
        what: &'static str,
        source: std::io::Error,
    },
    #[error("{path}: {msg}")]
    TargetInvalid { path: PathBuf, msg: String },
    #[error("io_uring is not available here ({0}); use --engine threads or auto")]
    UringUnavailable(String),
    #[error("{path}: I/O error at offset {offset} ({op}): {source}")]
    Io {
        path: PathBuf,
        offset: u64,
        op: &'static str,
        source: std::io::Error,
    },
    #[error("{path}: short {op} at offset {offset}: {done} of {len} bytes")]
    ShortIo {
        path: PathBuf,
        offset: u64,
        op: &'static str,
        done: u64,
        len: u64,
    },
    #[error("interrupted by {0}; job stopped{1}")]
    Interrupted(&'static str, &'static str),
    #[error("cannot start a worker thread: {0}")]
    Spawn(std::io::Error),
    #[error("cannot install signal handlers: {0}")]
    Signals(nix::Error),
    #[error("cannot write the result: {0}")]
    Output(std::io::Error),
}
