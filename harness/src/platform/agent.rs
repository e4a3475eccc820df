//! How a check asks for an agent run, and what comes back.

use std::path::PathBuf;
use std::time::Duration;

/// One agent invocation: `pvcheck-agent <args…> [<flag> <input>…]`.
#[derive(Debug, Clone)]
pub struct AgentCall {
    /// Subcommand and flags, e.g. `["verify", "--dir", "/mnt/x"]`.
    pub args: Vec<String>,
    /// Harness-side files the agent reads, as (flag, path): the platform makes each visible to the
    /// agent and appends `flag <path as the agent sees it>`.
    pub inputs: Vec<(String, PathBuf)>,
    /// Killed after this long.
    pub timeout: Duration,
    /// For [`crate::platform::Pod::spawn_agent`]: the moment (after the agent started) the
    /// check will SIGKILL it. A platform that cannot send a SIGKILL from outside at a precise
    /// moment (Kubernetes: deleting a pod sends SIGTERM first) has the agent's supervisor in the
    /// pod send it at this moment; the local platform kills from outside and ignores it.
    pub kill_after: Option<Duration>,
}

impl AgentCall {
    pub fn new<I, S>(args: I, timeout: Duration) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            args: args.into_iter().map(Into::into).collect(),
            inputs: Vec::new(),
            timeout,
            kill_after: None,
        }
    }
    pub fn kill_after(mut self, after: Duration) -> Self {
        self.kill_after = Some(after);
        self
    }
    pub fn input(mut self, flag: &str, path: impl Into<PathBuf>) -> Self {
        self.inputs.push((flag.to_string(), path.into()));
        self
    }
}

/// How an agent run ended.
#[derive(Debug, Clone)]
pub struct AgentOutput {
    /// The command line, as a user would type it to reproduce the run by hand.
    pub command: String,
    pub stdout: String,
    pub stderr: String,
    /// Exit code, if it exited.
    pub code: Option<i32>,
    /// Signal, if it was killed.
    pub signal: Option<i32>,
    pub elapsed: Duration,
}

impl AgentOutput {
    /// `exit 0`, `exit 1`, `killed by signal 9`.
    pub fn status(&self) -> String {
        match (self.code, self.signal) {
            (Some(c), _) => format!("exit {c}"),
            (None, Some(s)) => format!("killed by signal {s}"),
            (None, None) => "unknown status".into(),
        }
    }
    /// The last non-empty line of stderr (the agent's one-line error).
    pub fn stderr_line(&self) -> &str {
        self.stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
    }
}
