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

/// Adds the kernel's lines about the mount since `mark` to a failed command's error: lines that
/// name one of `about` (the device, `loop3`; the filesystem, `ext4`), e.g.
/// `…; kernel: ext4: Unknown parameter 'bogus'`.
pub fn explain(e: PlatformError, mark: &Mark, about: &[&str]) -> PlatformError {
    let PlatformError::Command {
        command,
        status,
        stderr,
    } = e
    else {
        return e;
    };
    let lines = relevant(&mark.since(), about);
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

/// The messages naming the device (`EXT4-fs (loop3): …`) or the filesystem (`ext4: Unknown
/// parameter 'bogus'`, which names no device), at most the last three; not the routine
/// "detected capacity change" of attaching.
fn relevant(messages: &[String], about: &[&str]) -> Vec<String> {
    let named: Vec<String> = messages
        .iter()
        .filter(|m| !m.contains("detected capacity change"))
        .filter(|m| {
            let lower = m.to_ascii_lowercase();
            about
                .iter()
                .filter(|a| !a.is_empty())
                .any(|a| lower.contains(&a.to_ascii_lowercase()))
        })
        .fold(Vec::new(), |mut v: Vec<String>, m| {
            // Two mounts of the class failing at once log the same line twice.
            if !v.contains(m) {
                v.push(m.clone());
            }
            v
        });
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
            relevant(&msgs, &["loop3"]),
            ["EXT4-fs (loop3): Unrecognized mount option \"bogus\" or missing value"]
        );
        let e = PlatformError::Command {
            command: "mount".into(),
            status: "exit 32".into(),
            stderr: "wrong fs type".into(),
        };
        let unreadable = Mark { kmsg: None };
        assert_eq!(
            explain(e, &unreadable, &["loop3"]).to_string(),
            "`mount` failed (exit 32): wrong fs type"
        );
    }

    /// ext4 names no device for a bad option: the filesystem's name finds it, once.
    #[test]
    fn a_line_naming_only_the_filesystem_is_quoted_once() {
        let msgs = vec![
            "loop3: detected capacity change from 0 to 1".to_string(),
            "ext4: Unknown parameter 'bogus'".to_string(),
            "ext4: Unknown parameter 'bogus'".to_string(),
        ];
        assert_eq!(
            relevant(&msgs, &["loop3", "ext4"]),
            ["ext4: Unknown parameter 'bogus'"]
        );
    }
}
