//! What can go wrong when pvcheck calls a CSI driver as kubelet and the sidecars would.
//! Every request shown here has its secrets masked.

use std::time::Duration;

use super::call::Call;

#[derive(Debug, thiserror::Error)]
pub enum CsiError {
    /// Nothing answers on the socket (no socket, connection refused, not HTTP/2).
    #[error("CSI {call}: cannot reach the driver at {socket}: {cause}")]
    Unreachable {
        call: Call,
        socket: String,
        cause: String,
    },
    /// No answer within the call's deadline.
    #[error("CSI {call}: no answer within {:.1}s (call_timeout)\n  request: {request}", limit.as_secs_f64())]
    Timeout {
        call: Call,
        limit: Duration,
        request: String,
    },
    /// The driver answered with an error code where the CO needed success.
    #[error("CSI {call} answered {code}: {message}\n  request: {request}")]
    Status {
        call: Call,
        code: String,
        message: String,
        request: String,
    },
    /// A reply (or an error code) the spec does not allow.
    #[error("CSI protocol violation in {call}: {what}\n  request: {request}\n  reply: {reply}")]
    Protocol {
        call: Call,
        what: String,
        request: String,
        reply: String,
    },
    /// The driver said OK but the kernel disagrees (nothing mounted, mounted twice, left mounted).
    #[error("CSI {call}: {what}")]
    Kernel { call: Call, what: String },
    /// The driver process: would not start, exited, or did not become ready.
    #[error("CSI driver: {0}")]
    Driver(String),
    #[error("CSI {call}: {what}: {source}")]
    Io {
        call: Call,
        what: String,
        source: std::io::Error,
    },
}

impl CsiError {
    /// The call at fault, when one is.
    pub fn call(&self) -> Option<Call> {
        match self {
            CsiError::Unreachable { call, .. }
            | CsiError::Timeout { call, .. }
            | CsiError::Status { call, .. }
            | CsiError::Protocol { call, .. }
            | CsiError::Kernel { call, .. }
            | CsiError::Io { call, .. } => Some(*call),
            CsiError::Driver(_) => None,
        }
    }

    /// The gRPC code, when the driver answered one.
    pub fn code(&self) -> Option<&str> {
        match self {
            CsiError::Status { code, .. } => Some(code),
            _ => None,
        }
    }

    pub fn is_timeout(&self) -> bool {
        matches!(self, CsiError::Timeout { .. })
    }
}
