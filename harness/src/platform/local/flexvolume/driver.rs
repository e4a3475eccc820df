//! A driver executable and how pvcheck calls it: per-call timeouts, an output cap, masked
//! arguments in every message, kubelet's memory of "Not supported" calls, warnings, and a
//! transcript of the calls made.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::call::{self, DEFAULT_OUTPUT_CAP, Exit, Invocation, RunError, SpawnHook};
use super::error::{FlexError, ProtocolViolation, command_line};
use super::options::Masker;
use super::protocol::{self, Call, Reply, Verdict};

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

/// What kubelet keeps about one loaded driver (a plugin instance, re-created when the executable
/// changes): the commands that answered "Not supported" (kubelet stops calling them), and what
/// pvcheck noticed that kubelet tolerates (warnings, each kind once per call).
#[derive(Debug, Default)]
pub struct PluginState {
    unsupported: Mutex<BTreeSet<Call>>,
    pending: Mutex<Vec<String>>,
    seen: Mutex<BTreeSet<(Call, &'static str)>>,
}

impl PluginState {
    pub fn new() -> Arc<Self> {
        Arc::new(PluginState::default())
    }

    /// Whether `call` answered "Not supported" before (kubelet then answers it itself).
    pub fn is_unsupported(&self, call: Call) -> bool {
        self.unsupported
            .lock()
            .map(|u| u.contains(&call))
            .unwrap_or(false)
    }

    fn mark_unsupported(&self, call: Call) {
        if let Ok(mut u) = self.unsupported.lock() {
            u.insert(call);
        }
    }

    /// A kubelet restart: a new plugin instance knows nothing yet.
    pub fn forget_unsupported(&self) {
        if let Ok(mut u) = self.unsupported.lock() {
            u.clear();
        }
    }

    /// Records a warning, once per (call, kind) for the life of this state.
    pub fn warn(&self, call: Call, kind: &'static str, text: &str) {
        let fresh = self
            .seen
            .lock()
            .map(|mut s| s.insert((call, kind)))
            .unwrap_or(false);
        if fresh && let Ok(mut p) = self.pending.lock() {
            p.push(format!("flexVolume {call}: {text}"));
        }
    }

    /// The warnings recorded since the last call.
    pub fn take_warnings(&self) -> Vec<String> {
        self.pending
            .lock()
            .map(|mut p| std::mem::take(&mut *p))
            .unwrap_or_default()
    }
}

/// A call kubelet accepted: Success, or "Not supported" (use the default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Success(Reply),
    NotSupported,
}

pub struct Driver {
    pub path: PathBuf,
    pub timeouts: Timeouts,
    pub output_cap: usize,
    transcript: Mutex<Vec<CallRecord>>,
    hook: Option<Arc<dyn SpawnHook>>,
    plugin: Arc<PluginState>,
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
            plugin: PluginState::new(),
        }
    }

    /// Every call's spawn goes through `hook` (the run registry records the process).
    pub fn with_spawn_hook(mut self, hook: Arc<dyn SpawnHook>) -> Self {
        self.hook = Some(hook);
        self
    }

    pub fn with_timeouts(mut self, t: Timeouts) -> Self {
        self.timeouts = t;
        self
    }

    /// Shares what kubelet knows about this driver version across operations.
    pub fn with_plugin(mut self, plugin: Arc<PluginState>) -> Self {
        self.plugin = plugin;
        self
    }

    pub fn plugin(&self) -> &Arc<PluginState> {
        &self.plugin
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

    fn record(&self, call: Call, args: &[String], outcome: String, elapsed: Duration) {
        if let Ok(mut t) = self.transcript.lock() {
            t.push(CallRecord {
                call,
                args: args.to_vec(),
                outcome,
                elapsed,
            });
        }
    }

    /// Runs one call and reads its reply as kubelet does: Success and "Not supported" are
    /// answers (the latter remembered, as kubelet remembers it); a Failure, any other status, an
    /// unreadable reply, a "driver bug", a timeout are errors. What kubelet tolerates but is a
    /// smell becomes a warning in the plugin state.
    pub fn call(&self, call: Call, args: &[String], masker: &Masker) -> Result<Answer, FlexError> {
        let mut argv = Vec::with_capacity(args.len() + 1);
        argv.push(call.name().to_string());
        argv.extend_from_slice(args);
        let masked: Vec<String> = argv.iter().map(|a| masker.mask(a)).collect();
        if self.plugin.is_unsupported(call) {
            self.record(
                call,
                &masked[1..],
                "Not supported (remembered: not called)".into(),
                Duration::ZERO,
            );
            return Ok(Answer::NotSupported);
        }
        let timeout = self.timeouts.of(call);
        let inv = Invocation {
            program: &self.path,
            args: &argv,
            timeout,
            output_cap: self.output_cap,
            hook: self.hook.as_deref(),
        };
        let out = match call::run(&inv) {
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
                self.record(call, &masked[1..], err.summary(), elapsed);
                return Err(err);
            }
            Ok(out) => out,
        };
        let classified = protocol::classify(call, &out, timeout);
        for n in &classified.notices {
            self.plugin.warn(call, n.kind, &masker.mask(&n.text));
        }
        let violation = |breach| {
            FlexError::Protocol(Box::new(ProtocolViolation {
                call,
                driver: self.path.clone(),
                args: masked[1..].to_vec(),
                breach,
                exit: Some(out.exit),
                stdout: masker.mask(&out.stdout.text()),
                stderr: masker.mask(&out.stderr.text()),
            }))
        };
        let result = match classified.verdict {
            Verdict::Success(reply) => Ok(Answer::Success(reply)),
            Verdict::NotSupported(_) => {
                self.plugin.mark_unsupported(call);
                Ok(Answer::NotSupported)
            }
            Verdict::Failed(reply) => Err(FlexError::Failed {
                call,
                status: if reply.status_text.is_empty() {
                    "no status".into()
                } else {
                    format!("{:?}", reply.status_text)
                },
                message: masker.mask(if reply.message.is_empty() {
                    "(no message)"
                } else {
                    &reply.message
                }),
                exit: out.exit,
                command: command_line(&self.path, &masked),
            }),
            Verdict::Breach(b) => Err(violation(b)),
        };
        let outcome = match &result {
            Ok(Answer::Success(_)) => "Success".to_string(),
            Ok(Answer::NotSupported) => "Not supported".to_string(),
            Err(e) => e.summary(),
        };
        self.record(call, &masked[1..], outcome, out.elapsed);
        result
    }

    /// A call that must succeed: "Not supported" becomes an error (`init`, which kubelet needs).
    pub fn call_ok(
        &self,
        call: Call,
        args: &[String],
        masker: &Masker,
    ) -> Result<Reply, FlexError> {
        match self.call(call, args, masker)? {
            Answer::Success(r) => Ok(r),
            Answer::NotSupported => {
                let mut argv = vec![call.name().to_string()];
                argv.extend(args.iter().map(|a| masker.mask(a)));
                Err(FlexError::Failed {
                    call,
                    status: "\"Not supported\"".into(),
                    message: "kubelet has no default for this call".into(),
                    exit: Exit::Code(0),
                    command: command_line(&self.path, &argv),
                })
            }
        }
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
    let bytes = std::fs::read(path)?;
    let sha256 = crate::sys::sha256_hex(&bytes);
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
