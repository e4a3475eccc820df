//! The kernel's explanation of a failed mount: `mount` itself says only "wrong fs type, bad
//! option, bad superblock …", while the kernel log says which option or what is wrong. A
//! [`Mark`] is taken before the mount; [`explain`] adds the kernel lines logged since then about
//! the device to the error. Where `/dev/kmsg` is not readable (no root, restricted), nothing is
//! added.

use std::fs::File;
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::os::unix::fs::OpenOptionsExt;

use crate::platform::PlatformError;

/// The end of the kernel log at one moment.
pub struct Mark {
    kmsg: Option<File>,
}

impl Mark {
    pub fn now() -> Mark {
        let kmsg = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open("/dev/kmsg")
            .ok()
            .and_then(|mut f| f.seek(SeekFrom::End(0)).ok().map(|_| f));
        Mark { kmsg }
    }

    /// The messages logged since the mark (each record's text, without its header).
    pub fn since(&self) -> Vec<String> {
        let Some(f) = &self.kmsg else {
            return Vec::new();
        };
        let mut f = f;
        let mut out = Vec::new();
        let mut buf = vec![0u8; 8192];
        loop {
            match f.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let rec = String::from_utf8_lossy(&buf[..n]);
                    // "pri,seq,usec,flags;text\n continuation lines"
                    if let Some((_, text)) = rec.split_once(';') {
                        let text = text.lines().next().unwrap_or("").trim();
                        if !text.is_empty() {
                            out.push(text.to_string());
                        }
                    }
                }
                // EPIPE: records were overwritten since the mark; the read position moved on.
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => break,
            }
        }
        out
    }
}

/// Adds the kernel's lines about `device` (e.g. `loop3`) since `mark` to a failed command's
/// error: `…; kernel: EXT4-fs (loop3): Unrecognized mount option "bogus" or missing value`.
pub fn explain(e: PlatformError, mark: &Mark, device: &str) -> PlatformError {
    let PlatformError::Command {
        command,
        status,
        stderr,
    } = e
    else {
        return e;
    };
    let lines = relevant(&mark.since(), device);
    if lines.is_empty() {
        return PlatformError::Command {
            command,
            status,
            stderr,
        };
    }
    PlatformError::Command {
        command,
        status,
        stderr: format!("{stderr}; kernel: {}", lines.join("; ")),
    }
}

/// The messages naming the device (`(loop3)`, `loop3:`), at most the last three.
fn relevant(messages: &[String], device: &str) -> Vec<String> {
    let named: Vec<String> = messages
        .iter()
        .filter(|m| !device.is_empty() && m.contains(device))
        .cloned()
        .collect();
    let skip = named.len().saturating_sub(3);
    named.into_iter().skip(skip).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Other devices' lines (another trial mounting at the same time) are not quoted.
    #[test]
    fn only_lines_about_the_device_are_quoted() {
        let msgs = vec![
            "EXT4-fs (loop4): mounted filesystem".to_string(),
            "EXT4-fs (loop3): Unrecognized mount option \"bogus\" or missing value".to_string(),
        ];
        assert_eq!(
            relevant(&msgs, "loop3"),
            ["EXT4-fs (loop3): Unrecognized mount option \"bogus\" or missing value"]
        );
        let e = PlatformError::Command {
            command: "mount".into(),
            status: "exit 32".into(),
            stderr: "wrong fs type".into(),
        };
        let unreadable = Mark { kmsg: None };
        assert_eq!(
            explain(e, &unreadable, "loop3").to_string(),
            "`mount` failed (exit 32): wrong fs type"
        );
    }
}
