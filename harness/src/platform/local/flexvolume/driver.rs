//! A driver executable and how pvcheck calls it: per-call timeouts, an output cap, masked
//! arguments in every message, and a transcript of the calls made.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use super::call::{self, DEFAULT_OUTPUT_CAP, Invocation, RunError, SpawnHook};
use super::error::{FlexError, ProtocolViolation, command_line};
use super::options::Masker;
use super::protocol::{self, Call, Reply, Status};

/// How long each call may take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeouts {
    pub per_call: BTreeMap<Call, Duration>,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            per_call: Call::ALL
                .iter()
                .map(|c| (*c, c.default_timeout()))
                .collect(),
        }
    }
}

impl Timeouts {
    /// Every call bounded by `d` (tests and impatient users), waitforattach included.
    pub fn all(d: Duration) -> Self {
        Timeouts {
            per_call: Call::ALL.iter().map(|c| (*c, d)).collect(),
        }
    }

    pub fn of(&self, call: Call) -> Duration {
        self.per_call
            .get(&call)
            .copied()
            .unwrap_or_else(|| call.default_timeout())
    }
}

/// One call as made, for reports (arguments masked).
#[derive(Debug, Clone)]
pub struct CallRecord {
    pub call: Call,
    pub args: Vec<String>,
    pub outcome: String,
    pub elapsed: Duration,
}

pub struct Driver {
    pub path: PathBuf,
    pub timeouts: Timeouts,
    pub output_cap: usize,
    transcript: Mutex<Vec<CallRecord>>,
    hook: Option<std::sync::Arc<dyn SpawnHook>>,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("path", &self.path)
            .field("timeouts", &self.timeouts)
            .finish()
    }
}

impl Driver {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Driver {
            path: path.into(),
            timeouts: Timeouts::default(),
            output_cap: DEFAULT_OUTPUT_CAP,
            transcript: Mutex::new(Vec::new()),
            hook: None,
        }
    }

    /// Every call's spawn goes through `hook` (the run registry records the process).
    pub fn with_spawn_hook(mut self, hook: std::sync::Arc<dyn SpawnHook>) -> Self {
        self.hook = Some(hook);
        self
    }

    pub fn with_timeouts(mut self, t: Timeouts) -> Self {
        self.timeouts = t;
        self
    }

    /// Fails early, with one line, when the driver cannot be run at all.
    pub fn check(&self) -> Result<(), RunError> {
        call::check_executable(&self.path)
    }

    pub fn transcript(&self) -> Vec<CallRecord> {
        self.transcript
            .lock()
            .map(|t| t.clone())
            .unwrap_or_default()
    }

    /// Runs one call and checks its reply against the protocol. A protocol-conformant reply is
    /// returned whatever its status; callers decide what Failure and Not supported mean.
    pub fn call(&self, call: Call, args: &[String], masker: &Masker) -> Result<Reply, FlexError> {
        let mut argv = Vec::with_capacity(args.len() + 1);
        argv.push(call.name().to_string());
        argv.extend_from_slice(args);
        let masked: Vec<String> = argv.iter().map(|a| masker.mask(a)).collect();
        let inv = Invocation {
            program: &self.path,
            args: &argv,
            timeout: self.timeouts.of(call),
            output_cap: self.output_cap,
            hook: self.hook.as_deref(),
        };
        let result = call::run(&inv);
        let (outcome, elapsed, res) = match result {
            Err(source) => {
                let elapsed = match &source {
                    RunError::TimedOut { output, .. } => output.elapsed,
                    _ => Duration::ZERO,
                };
                let err = FlexError::Run {
                    call,
                    command: command_line(&self.path, &masked),
                    source,
                };
                (err.summary(), elapsed, Err(err))
            }
            Ok(out) => match protocol::parse(call, &out) {
                Ok(reply) => (reply.status.to_string(), out.elapsed, Ok(reply)),
                Err(breach) => {
                    let v = ProtocolViolation {
                        call,
                        driver: self.path.clone(),
                        args: masked[1..].to_vec(),
                        breach,
                        exit: Some(out.exit),
                        stdout: masker.mask(&out.stdout.text()),
                        stderr: masker.mask(&out.stderr.text()),
                    };
                    let err = FlexError::Protocol(Box::new(v));
                    (err.summary(), out.elapsed, Err(err))
                }
            },
        };
        if let Ok(mut t) = self.transcript.lock() {
            t.push(CallRecord {
                call,
                args: masked[1..].to_vec(),
                outcome,
                elapsed,
            });
        }
        res
    }

    /// A call that must succeed: Failure and Not supported become errors.
    pub fn call_ok(
        &self,
        call: Call,
        args: &[String],
        masker: &Masker,
    ) -> Result<Reply, FlexError> {
        let reply = self.call(call, args, masker)?;
        self.require_success(call, args, masker, reply)
    }

    pub fn require_success(
        &self,
        call: Call,
        args: &[String],
        masker: &Masker,
        reply: Reply,
    ) -> Result<Reply, FlexError> {
        if reply.status == Status::Success {
            return Ok(reply);
        }
        let mut argv = vec![call.name().to_string()];
        argv.extend(args.iter().map(|a| masker.mask(a)));
        Err(FlexError::Failed {
            call,
            status: if reply.status == Status::Failure {
                "Failure"
            } else {
                "Not supported"
            },
            message: masker.mask(reply.message.as_deref().unwrap_or("(no message)")),
            command: command_line(&self.path, &argv),
        })
    }
}

/// What identifies a driver version in a run's fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DriverIdentity {
    pub path: String,
    pub sha256: String,
    /// First line of `driver --version` when it exits 0 within a few seconds.
    pub version: Option<String>,
}

pub fn identity(path: &Path) -> std::io::Result<DriverIdentity> {
    use sha2::{Digest, Sha256};
    let bytes = std::fs::read(path)?;
    let digest = Sha256::digest(&bytes);
    let sha256 = digest.iter().map(|b| format!("{b:02x}")).collect();
    let args = ["--version".to_string()];
    let inv = Invocation {
        program: path,
        args: &args,
        timeout: Duration::from_secs(5),
        output_cap: 4096,
        hook: None,
    };
    let version = match call::run(&inv) {
        Ok(out) if out.exit == call::Exit::Code(0) => {
            let text = String::from_utf8_lossy(&out.stdout.bytes).into_owned();
            let line = text.lines().next().unwrap_or("").trim().to_string();
            // A driver without --version answers with a JSON "Not supported"; that is no version.
            (!line.is_empty() && !line.starts_with('{')).then_some(line)
        }
        _ => None,
    };
    Ok(DriverIdentity {
        path: path.display().to_string(),
        sha256,
        version,
    })
}
