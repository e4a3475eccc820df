//! What can go wrong when pvcheck calls a flexVolume driver as kubelet would.

use std::fmt;
use std::path::PathBuf;

use super::call::{Exit, RunError};
use super::protocol::{Breach, Call};

/// A reply that breaks the protocol, with everything needed to reproduce it by hand.
/// Arguments and output have the volume's secrets masked.
#[derive(Debug, Clone)]
pub struct ProtocolViolation {
    pub call: Call,
    pub driver: PathBuf,
    pub args: Vec<String>,
    pub breach: Breach,
    pub exit: Option<Exit>,
    pub stdout: String,
    pub stderr: String,
}

/// A shell-quoted command line, to paste into a terminal.
pub fn command_line(driver: &std::path::Path, args: &[String]) -> String {
    let mut s = shell_quote(&driver.to_string_lossy());
    for a in args {
        s.push(' ');
        s.push_str(&shell_quote(a));
    }
    s
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-=:,+@".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

fn excerpt(s: &str) -> String {
    const MAX: usize = 2000;
    let t = s.trim_end();
    if t.len() <= MAX {
        return t.to_string();
    }
    let mut end = MAX;
    while !t.is_char_boundary(end) {
        end -= 1;
    }
    format!("{} … ({} bytes)", &t[..end], t.len())
}

impl fmt::Display for ProtocolViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "flexVolume protocol violation in {}: {}",
            self.call, self.breach
        )?;
        let mut argv = vec![self.call.name().to_string()];
        argv.extend(self.args.iter().cloned());
        write!(f, "\n  command: {}", command_line(&self.driver, &argv))?;
        if let Some(e) = self.exit {
            write!(f, "\n  ended: {e}")?;
        }
        write!(f, "\n  stdout: {}", excerpt(&self.stdout))?;
        write!(f, "\n  stderr: {}", excerpt(&self.stderr))
    }
}

impl std::error::Error for ProtocolViolation {}

#[derive(Debug, thiserror::Error)]
pub enum FlexError {
    /// The driver could not be run, or did not answer in time.
    #[error("flexVolume {call}: {source}\n  command: {command}")]
    Run {
        call: Call,
        command: String,
        source: RunError,
    },
    #[error("{0}")]
    Protocol(Box<ProtocolViolation>),
    /// A well-formed reply kubelet fails the call on: status Failure, or any status other than
    /// Success and Not supported (or a Not supported kubelet has no default for).
    #[error(
        "flexVolume {call} answered {status}: {message}\n  command: {command}\n  ended: {exit}"
    )]
    Failed {
        call: Call,
        /// The status as written, quoted (`"Failure"`), or `no status`.
        status: String,
        message: String,
        exit: Exit,
        command: String,
    },
    /// The driver said Success but the kernel disagrees (nothing mounted, wrong device, …).
    #[error("flexVolume {call}: {what}")]
    Kernel { call: Call, what: String },
    #[error("flexVolume {call}: {what}: {source}")]
    Io {
        call: Call,
        what: String,
        source: std::io::Error,
    },
}

impl FlexError {
    /// The call at fault.
    pub fn call(&self) -> Call {
        match self {
            FlexError::Run { call, .. }
            | FlexError::Failed { call, .. }
            | FlexError::Kernel { call, .. }
            | FlexError::Io { call, .. } => *call,
            FlexError::Protocol(v) => v.call,
        }
    }

    /// The first line: what went wrong, without the reproduction details.
    pub fn summary(&self) -> String {
        self.to_string()
            .lines()
            .next()
            .unwrap_or_default()
            .to_string()
    }
}
