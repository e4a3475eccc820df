//! The flexVolume reply, read exactly as kubelet reads it (`pkg/volume/flexvolume/driver-call.go`,
//! `DriverCall.Run` and `handleCmdResponse`, v1.30+).
//!
//! kubelet runs the driver with `CombinedOutput`: stdout and stderr go to one pipe, and the whole
//! of it is decoded with Go's `encoding/json` into `DriverStatus`. So:
//! - the combined output must be exactly one JSON value (whitespace around it allowed); anything
//!   on stderr is part of it, so a log line there breaks the reply;
//! - keys match the struct's field names exactly or, failing that, case-insensitively
//!   (`"Status"` works); unknown keys are ignored; a later duplicate overwrites an earlier one;
//! - a value of the wrong type (`"attached": "true"`) makes the decode fail, whatever the status;
//! - `null` leaves a field as it was (`capabilities: null` clears the defaults: kubelet then
//!   dereferences a nil pointer in `init`);
//! - status `Not supported` means "use the default", whatever the exit code;
//! - any status other than `Success` (`Failure`, `OK`, none) fails the call;
//! - a non-zero exit whose reply says `Success` fails the call ("driver bug" in kubelet's log).
//!
//! [`classify`] returns kubelet's verdict plus what kubelet tolerates but a driver author wants
//! to know ([`Notice`]s, reported as warnings).

use std::fmt;
use std::time::Duration;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::Value;

use super::call::{Exit, Output};

/// A flexVolume call, in the order kubelet makes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Call {
    Init,
    GetVolumeName,
    Attach,
    WaitForAttach,
    IsAttached,
    MountDevice,
    Mount,
    Unmount,
    UnmountDevice,
    Detach,
    ExpandVolume,
    ExpandFs,
}

impl Call {
    /// Every call kubelet and the controller manager can make.
    pub const ALL: [Call; 12] = [
        Call::Init,
        Call::GetVolumeName,
        Call::Attach,
        Call::WaitForAttach,
        Call::IsAttached,
        Call::MountDevice,
        Call::Mount,
        Call::Unmount,
        Call::UnmountDevice,
        Call::Detach,
        Call::ExpandVolume,
        Call::ExpandFs,
    ];

    /// The calls with a `flexvolume::<call>` trial: everything a pod's set-up and tear-down
    /// makes (expansion is not checked on flexVolume classes).
    pub const CHECKED: [Call; 10] = [
        Call::Init,
        Call::GetVolumeName,
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
            Call::GetVolumeName => "getvolumename",
            Call::Attach => "attach",
            Call::WaitForAttach => "waitforattach",
            Call::IsAttached => "isattached",
            Call::MountDevice => "mountdevice",
            Call::Mount => "mount",
            Call::Unmount => "unmount",
            Call::UnmountDevice => "unmountdevice",
            Call::Detach => "detach",
            Call::ExpandVolume => "expandvolume",
            Call::ExpandFs => "expandfs",
        }
    }

    /// pvcheck's bounds: waitforattach 10 minutes (kubelet's `waitForAttachTimeout`), every
    /// other call 2 minutes (kubelet sets no limit on them: a hung call hangs the operation).
    pub fn default_timeout(self) -> Duration {
        match self {
            Call::WaitForAttach => Duration::from_secs(600),
            _ => Duration::from_secs(120),
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

/// `DriverCapabilities`, with kubelet's defaults for what `init` leaves out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Capabilities {
    pub attach: bool,
    #[serde(rename = "selinuxRelabel")]
    pub selinux_relabel: bool,
    #[serde(rename = "supportsMetrics")]
    pub supports_metrics: bool,
    #[serde(rename = "fsGroup")]
    pub fs_group: bool,
    #[serde(rename = "requiresFSResize")]
    pub requires_fs_resize: bool,
}

impl Default for Capabilities {
    /// kubelet's `defaultCapabilities()`.
    fn default() -> Self {
        Capabilities {
            attach: true,
            selinux_relabel: true,
            supports_metrics: false,
            fs_group: true,
            requires_fs_resize: true,
        }
    }
}

/// `DriverStatus` as kubelet decodes it: absent fields keep Go's zero value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The raw status string ("" when absent or null).
    pub status_text: String,
    pub message: String,
    pub device: String,
    pub volume_name: String,
    /// false when absent (Go's zero value): a Success without it says "not attached".
    pub attached: bool,
    /// `None` only when the reply says `"capabilities": null`.
    pub capabilities: Option<Capabilities>,
    pub volume_new_size: i64,
}

impl Reply {
    pub fn status(&self) -> Option<Status> {
        match self.status_text.as_str() {
            "Success" => Some(Status::Success),
            "Not supported" => Some(Status::NotSupported),
            "Failure" => Some(Status::Failure),
            _ => None,
        }
    }
}

/// Why kubelet could not read a reply at all, or refused one that says Success.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Breach {
    #[error("{}", not_json(.error, .stderr))]
    NotJson {
        /// What the JSON decoder said.
        error: String,
        /// What the driver wrote on stderr, when it did: kubelet parses it with stdout.
        stderr: Option<String>,
    },
    #[error("the reply is JSON {found}, not an object")]
    NotAnObject { found: &'static str },
    #[error("\"{field}\" is {found}, not {expected} (kubelet's JSON decoding fails)")]
    FieldType {
        field: String,
        expected: &'static str,
        found: &'static str,
    },
    #[error(
        "driver bug: the reply says Success but the driver ended with {exit}; kubelet fails the call"
    )]
    DriverBug { exit: Exit },
    #[error(
        "\"capabilities\" is null: kubelet dereferences the missing capabilities and cannot load the driver"
    )]
    NullCapabilities,
    #[error("wrote {bytes} bytes of output (a reply is a few hundred bytes; pvcheck keeps {kept})")]
    Oversized { bytes: u64, kept: usize },
}

fn not_json(error: &str, stderr: &Option<String>) -> String {
    match stderr {
        Some(text) => format!(
            "wrote {} on stderr, and kubelet reads stdout and stderr together (CombinedOutput): the combined output is not JSON: {error}",
            quote_short(text)
        ),
        None => format!("the output is not JSON: {error}"),
    }
}

fn quote_short(text: &str) -> String {
    const MAX: usize = 120;
    let t = text.trim();
    if t.len() <= MAX {
        return format!("{t:?}");
    }
    let mut end = MAX;
    while !t.is_char_boundary(end) {
        end -= 1;
    }
    format!("{:?}… ({} bytes)", &t[..end], t.len())
}

/// kubelet's verdict on one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Success(Reply),
    /// "use the default": kubelet remembers it and stops calling this command.
    NotSupported(Reply),
    /// A well-formed reply whose status is neither Success nor Not supported.
    Failed(Reply),
    /// Not a reply kubelet can use.
    Breach(Breach),
}

/// Something kubelet tolerates that the driver's author should hear about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// Groups repeats of the same smell (`exit`, `stderr`, `unknown-field`, `case`, `slow`, …).
    pub kind: &'static str,
    pub text: String,
}

/// A classified reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified {
    pub verdict: Verdict,
    pub notices: Vec<Notice>,
}

/// Classifies one call's output as kubelet would. `timeout` is the call's limit (for the slow-call
/// notice).
pub fn classify(call: Call, out: &Output, timeout: Duration) -> Classified {
    let mut notices = Vec::new();
    let verdict = verdict(call, out, &mut notices);
    if timeout > Duration::ZERO && out.elapsed * 2 > timeout {
        notices.push(Notice {
            kind: "slow",
            text: format!(
                "took {:.1}s, more than half of its {:?} limit",
                out.elapsed.as_secs_f64(),
                timeout
            ),
        });
    }
    if out.left_process {
        notices.push(Notice {
            kind: "left-process",
            text: "exited, but a process it started kept its output open; kubelet waits until that closes".into(),
        });
    }
    Classified { verdict, notices }
}

fn verdict(call: Call, out: &Output, notices: &mut Vec<Notice>) -> Verdict {
    if out.combined.truncated() {
        return Verdict::Breach(Breach::Oversized {
            bytes: out.combined.total,
            kept: out.combined.bytes.len(),
        });
    }
    let stderr_text = (out.stderr.total > 0).then(|| out.stderr.text());
    let decoded = match decode(&out.combined.bytes) {
        Ok(d) => d,
        Err(DecodeError::Syntax(error)) => {
            return Verdict::Breach(Breach::NotJson {
                error,
                stderr: stderr_text,
            });
        }
        Err(DecodeError::NotAnObject(found)) => {
            return Verdict::Breach(Breach::NotAnObject { found });
        }
        Err(DecodeError::Type {
            field,
            expected,
            found,
        }) => {
            return Verdict::Breach(Breach::FieldType {
                field,
                expected,
                found,
            });
        }
    };
    let reply = decoded.reply;
    let exit_ok = out.exit == Exit::Code(0);
    match reply.status() {
        Some(Status::Success) if !exit_ok => Verdict::Breach(Breach::DriverBug { exit: out.exit }),
        Some(Status::Success) => {
            if call == Call::Init && reply.capabilities.is_none() {
                return Verdict::Breach(Breach::NullCapabilities);
            }
            for k in &decoded.unknown {
                notices.push(Notice {
                    kind: "unknown-field",
                    text: format!(
                        "the Success reply has field {k:?}, which kubelet does not know and ignores"
                    ),
                });
            }
            for (k, field) in &decoded.folded {
                notices.push(Notice {
                    kind: "case",
                    text: format!(
                        "field {k:?} matches kubelet's {field:?} only because Go's JSON decoding ignores case"
                    ),
                });
            }
            if let Some(text) = &stderr_text {
                notices.push(stderr_notice(text));
            }
            Verdict::Success(reply)
        }
        Some(Status::NotSupported) => {
            if exit_ok {
                notices.push(Notice {
                    kind: "exit",
                    text: "answered \"Not supported\" with exit code 0; kubelet reads only the status, but anything other than Success should exit non-zero".into(),
                });
            }
            if let Some(text) = &stderr_text {
                notices.push(stderr_notice(text));
            }
            Verdict::NotSupported(reply)
        }
        _ => Verdict::Failed(reply),
    }
}

fn stderr_notice(text: &str) -> Notice {
    Notice {
        kind: "stderr",
        text: format!(
            "wrote {} on stderr; kubelet parses stdout and stderr as one document, so this worked, but any log line there would break the reply",
            quote_short(text)
        ),
    }
}

/// What decoding a reply gave, with what only Go's leniency accepted.
#[derive(Debug)]
struct Decoded {
    reply: Reply,
    /// Keys kubelet ignores (`capabilities.` prefixed inside capabilities).
    unknown: Vec<String>,
    /// Keys matched only case-insensitively: (key as written, kubelet's name).
    folded: Vec<(String, &'static str)>,
}

#[derive(Debug)]
enum DecodeError {
    Syntax(String),
    NotAnObject(&'static str),
    Type {
        field: String,
        expected: &'static str,
        found: &'static str,
    },
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The object's entries in the order written (a `Value` map would lose duplicates and order,
/// which decide the result in Go: a later key overwrites an earlier one).
struct Entries(Vec<(String, Value)>);

impl<'de> serde::Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Entries;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries, A::Error> {
                let mut v = Vec::new();
                while let Some((k, val)) = map.next_entry::<String, Value>()? {
                    v.push((k, val));
                }
                Ok(Entries(v))
            }
        }
        d.deserialize_map(V)
    }
}

/// Go's `encoding/json` field matching: the exact name first, then a case-insensitive one
/// (Unicode simple folding, as `bytes.EqualFold`).
fn match_field(key: &str, names: &[&'static str]) -> Option<(&'static str, bool)> {
    if let Some(n) = names.iter().find(|n| **n == key) {
        return Some((n, false));
    }
    names.iter().find(|n| fold_eq(n, key)).map(|n| (*n, true))
}

fn fold_eq(a: &str, b: &str) -> bool {
    let mut x = a.chars();
    let mut y = b.chars();
    loop {
        match (x.next(), y.next()) {
            (None, None) => return true,
            (Some(c), Some(d)) => {
                if c != d && fold(c) != fold(d) {
                    return false;
                }
            }
            _ => return false,
        }
    }
}

/// A canonical simple case fold of one char (enough for ASCII field names, plus the two
/// non-ASCII chars Go folds onto ASCII letters: KELVIN SIGN → k, LONG S → s).
fn fold(c: char) -> char {
    match c {
        '\u{212A}' => 'k',
        '\u{017F}' => 's',
        _ => {
            let mut l = c.to_lowercase();
            match (l.next(), l.next()) {
                (Some(one), None) => one,
                _ => c,
            }
        }
    }
}

const REPLY_FIELDS: [&str; 7] = [
    "status",
    "message",
    "device",
    "volumeName",
    "attached",
    // Go's field name is `Capabilities` (its tag sets no name), so both spellings are exact.
    "capabilities",
    "volumeNewSize",
];
const CAPABILITY_FIELDS: [&str; 5] = [
    "attach",
    "selinuxRelabel",
    "supportsMetrics",
    "fsGroup",
    "requiresFSResize",
];

/// `json.Unmarshal(output, &status)` with `status.Capabilities` preset to the defaults.
fn decode(bytes: &[u8]) -> Result<Decoded, DecodeError> {
    // Go replaces invalid UTF-8 inside strings with U+FFFD; outside strings it is a syntax error
    // either way.
    let text = String::from_utf8_lossy(bytes);
    // The whole output must be one JSON value (Go checks the syntax of all of it first).
    let value: Value = serde_json::from_str(&text).map_err(|e| DecodeError::Syntax(go_like(&e)))?;
    let mut d = Decoded {
        reply: Reply {
            status_text: String::new(),
            message: String::new(),
            device: String::new(),
            volume_name: String::new(),
            attached: false,
            capabilities: Some(Capabilities::default()),
            volume_new_size: 0,
        },
        unknown: Vec::new(),
        folded: Vec::new(),
    };
    match value {
        // Unmarshalling null into a struct leaves it as it was.
        Value::Null => return Ok(d),
        Value::Object(_) => {}
        other => return Err(DecodeError::NotAnObject(kind_of(&other))),
    }
    let entries: Entries =
        serde_json::from_str(&text).map_err(|e| DecodeError::Syntax(go_like(&e)))?;
    // Go keeps decoding after a type error and reports the first one at the end.
    let mut first_err: Option<DecodeError> = None;
    let mut note_err = |e: DecodeError| {
        if first_err.is_none() {
            first_err = Some(e);
        }
    };
    for (key, val) in entries.0 {
        let Some((field, folded)) = match_field(&key, &REPLY_FIELDS) else {
            d.unknown.push(key);
            continue;
        };
        if folded && key != "Capabilities" {
            d.folded.push((key.clone(), field));
        }
        let r = &mut d.reply;
        let type_err = |expected, v: &Value| DecodeError::Type {
            field: field.to_string(),
            expected,
            found: kind_of(v),
        };
        match field {
            "status" | "message" | "device" | "volumeName" => match val {
                Value::Null => {}
                Value::String(s) => match field {
                    "status" => r.status_text = s,
                    "message" => r.message = s,
                    "device" => r.device = s,
                    _ => r.volume_name = s,
                },
                other => note_err(type_err("a string", &other)),
            },
            "attached" => match val {
                Value::Null => {}
                Value::Bool(b) => r.attached = b,
                other => note_err(type_err("true or false", &other)),
            },
            "volumeNewSize" => match val {
                Value::Null => {}
                Value::Number(n)
                    if n.as_i64().is_some() && !n.to_string().contains(['.', 'e', 'E']) =>
                {
                    r.volume_new_size = n.as_i64().unwrap_or_default();
                }
                other => note_err(type_err("an integer (bytes, int64)", &other)),
            },
            _ => match val {
                Value::Null => r.capabilities = None,
                Value::Object(map) => {
                    // A nil pointer gets a fresh zero value (all false); a set one is decoded into.
                    let mut caps = r.capabilities.unwrap_or(Capabilities {
                        attach: false,
                        selinux_relabel: false,
                        supports_metrics: false,
                        fs_group: false,
                        requires_fs_resize: false,
                    });
                    for (ck, cv) in map {
                        let Some((cfield, cfolded)) = match_field(&ck, &CAPABILITY_FIELDS) else {
                            d.unknown.push(format!("capabilities.{ck}"));
                            continue;
                        };
                        if cfolded {
                            d.folded.push((format!("capabilities.{ck}"), cfield));
                        }
                        match cv {
                            Value::Null => {}
                            Value::Bool(b) => match cfield {
                                "attach" => caps.attach = b,
                                "selinuxRelabel" => caps.selinux_relabel = b,
                                "supportsMetrics" => caps.supports_metrics = b,
                                "fsGroup" => caps.fs_group = b,
                                _ => caps.requires_fs_resize = b,
                            },
                            other => note_err(DecodeError::Type {
                                field: format!("capabilities.{cfield}"),
                                expected: "true or false",
                                found: kind_of(&other),
                            }),
                        }
                    }
                    r.capabilities = Some(caps);
                }
                other => note_err(type_err("an object", &other)),
            },
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(d),
    }
}

/// serde_json's message, in the words Go's decoder uses for the two most common cases.
fn go_like(e: &serde_json::Error) -> String {
    let s = e.to_string();
    if s.starts_with("EOF while parsing a value at line 1 column 0") {
        return "unexpected end of JSON input (the driver printed nothing)".into();
    }
    if s.starts_with("trailing characters") {
        return format!("more than one JSON value, or text after the reply ({s})");
    }
    s
}

#[cfg(test)]
mod tests;
