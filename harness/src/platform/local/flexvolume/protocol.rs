//! The flexVolume reply: what a driver must print for each call, and the check that it did.
//!
//! The rules are those of kubelet's driver-call code: stdout (kubelet reads stdout and stderr
//! together) holds exactly one JSON object with a `status` of `Success`, `Failure` or
//! `Not supported`; a successful call carries the field its caller needs; the exit code agrees
//! with the status (kubelet logs "driver bug" when a failed exit prints Success).

use std::fmt;
use std::time::Duration;

use serde_json::Value;

use super::call::{Exit, Output};

/// A flexVolume call, in the order kubelet makes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Call {
    Init,
    Attach,
    WaitForAttach,
    IsAttached,
    MountDevice,
    Mount,
    Unmount,
    UnmountDevice,
    Detach,
}

impl Call {
    pub const ALL: [Call; 9] = [
        Call::Init,
        Call::Attach,
        Call::WaitForAttach,
        Call::IsAttached,
        Call::MountDevice,
        Call::Mount,
        Call::Unmount,
        Call::UnmountDevice,
        Call::Detach,
    ];

    /// The word on the driver's command line.
    pub fn name(self) -> &'static str {
        match self {
            Call::Init => "init",
            Call::Attach => "attach",
            Call::WaitForAttach => "waitforattach",
            Call::IsAttached => "isattached",
            Call::MountDevice => "mountdevice",
            Call::Mount => "mount",
            Call::Unmount => "unmount",
            Call::UnmountDevice => "unmountdevice",
            Call::Detach => "detach",
        }
    }

    /// kubelet's own limits: waitforattach may take 10 minutes, every other call 2.
    pub fn default_timeout(self) -> Duration {
        match self {
            Call::WaitForAttach => Duration::from_secs(600),
            _ => Duration::from_secs(120),
        }
    }

    /// The field a Success reply must carry.
    fn required_field(self) -> Option<&'static str> {
        match self {
            Call::Init => Some("capabilities"),
            Call::Attach | Call::WaitForAttach => Some("device"),
            Call::IsAttached => Some("attached"),
            _ => None,
        }
    }
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Success,
    Failure,
    NotSupported,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Success => "Success",
            Status::Failure => "Failure",
            Status::NotSupported => "Not supported",
        })
    }
}

/// What `init` says the driver can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Absent means true, as in kubelet.
    pub attach: bool,
}

/// A reply that follows the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: Status,
    pub message: Option<String>,
    pub device: Option<String>,
    pub attached: Option<bool>,
    pub capabilities: Option<Capabilities>,
}

/// How a reply breaks the protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Breach {
    #[error("printed nothing on stdout (a reply is one JSON object)")]
    Empty,
    #[error("stdout is not JSON: {0}")]
    NotJson(String),
    #[error("stdout holds more than one JSON value (a reply is exactly one JSON object)")]
    MoreThanOneValue,
    #[error("stdout is JSON but not an object")]
    NotAnObject,
    #[error("the reply has no \"status\"")]
    NoStatus,
    #[error("\"status\" is {0}, not \"Success\", \"Failure\" or \"Not supported\"")]
    BadStatus(String),
    #[error("a Success reply to {call} lacks \"{field}\"")]
    MissingField { call: Call, field: &'static str },
    #[error("\"{field}\" must be {expected}")]
    FieldType {
        field: &'static str,
        expected: &'static str,
    },
    #[error(
        "the exit status ({exit}) disagrees with status \"{status}\" (Success exits 0, Failure and Not supported do not)"
    )]
    ExitDisagrees { status: Status, exit: Exit },
    #[error(
        "wrote {0} bytes on stderr: kubelet reads stdout and stderr together, so it could not parse this reply"
    )]
    Stderr(u64),
    #[error("wrote {bytes} bytes on {stream} (a reply is a few hundred bytes; kept {kept})")]
    Oversized {
        stream: &'static str,
        bytes: u64,
        kept: usize,
    },
    #[error("left a process behind that kept its output open after it exited")]
    LeftProcess,
}

/// Checks one call's output against the protocol.
pub fn parse(call: Call, out: &Output) -> Result<Reply, Breach> {
    if out.stdout.truncated() {
        return Err(Breach::Oversized {
            stream: "stdout",
            bytes: out.stdout.total,
            kept: out.stdout.bytes.len(),
        });
    }
    let mut values = serde_json::Deserializer::from_slice(&out.stdout.bytes).into_iter::<Value>();
    let value = match values.next() {
        None => return Err(Breach::Empty),
        Some(Err(e)) => return Err(Breach::NotJson(e.to_string())),
        Some(Ok(v)) => v,
    };
    if values.next().is_some() {
        return Err(Breach::MoreThanOneValue);
    }
    let Value::Object(obj) = value else {
        return Err(Breach::NotAnObject);
    };
    let status = match obj.get("status") {
        None => return Err(Breach::NoStatus),
        Some(Value::String(s)) if s == "Success" => Status::Success,
        Some(Value::String(s)) if s == "Failure" => Status::Failure,
        Some(Value::String(s)) if s == "Not supported" => Status::NotSupported,
        Some(other) => return Err(Breach::BadStatus(other.to_string())),
    };
    let exit_ok = match (status, out.exit) {
        (Status::Success, Exit::Code(0)) => true,
        (Status::Success, _) => false,
        (_, Exit::Code(c)) => c != 0,
        (_, Exit::Signal(_)) => true,
    };
    if !exit_ok {
        return Err(Breach::ExitDisagrees {
            status,
            exit: out.exit,
        });
    }
    if out.stderr.total > 0 {
        return Err(Breach::Stderr(out.stderr.total));
    }
    if out.left_process {
        return Err(Breach::LeftProcess);
    }
    let message = match obj.get("message") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            return Err(Breach::FieldType {
                field: "message",
                expected: "a string",
            });
        }
    };
    let device = match obj.get("device") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            return Err(Breach::FieldType {
                field: "device",
                expected: "a string",
            });
        }
    };
    let attached = match obj.get("attached") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => {
            return Err(Breach::FieldType {
                field: "attached",
                expected: "true or false",
            });
        }
    };
    let capabilities = match obj.get("capabilities") {
        None | Some(Value::Null) => None,
        Some(Value::Object(c)) => Some(Capabilities {
            attach: match c.get("attach") {
                None => true,
                Some(Value::Bool(b)) => *b,
                Some(_) => {
                    return Err(Breach::FieldType {
                        field: "capabilities.attach",
                        expected: "true or false",
                    });
                }
            },
        }),
        Some(_) => {
            return Err(Breach::FieldType {
                field: "capabilities",
                expected: "an object",
            });
        }
    };
    let reply = Reply {
        status,
        message,
        device,
        attached,
        capabilities,
    };
    if status == Status::Success
        && let Some(field) = call.required_field()
    {
        let present = match field {
            "capabilities" => reply.capabilities.is_some(),
            "device" => reply.device.as_deref().is_some_and(|d| !d.is_empty()),
            _ => reply.attached.is_some(),
        };
        if !present {
            return Err(Breach::MissingField { call, field });
        }
    }
    Ok(reply)
}
