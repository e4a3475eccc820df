//! Standard output of a run goes through a relay thread (fd 1 is a pipe to it):
//! - a reader that goes away (`pvcheck run | head`) does not kill or panic the run halfway,
//!   which would leave volumes mounted: the relay stops writing and keeps draining;
//! - with `--format json`, libtest's events gain what libtest-mimic does not print: the reason
//!   of an ignored trial (`"message"`, as libtest names it), the category of a failure and a
//!   passed trial's warnings.
//!
//! Installed only where it is needed (JSON, or stdout not a terminal), so colours and the
//! terminal's width stay as they are in an interactive pretty run.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::thread::JoinHandle;

use serde_json::Value;

/// What the relay adds to a JSON `test` event (trial name, event): extra `"key": value` pairs.
pub type AnnotateFn = dyn Fn(&str, &str) -> Vec<(String, Value)> + Send + Sync;
/// [`AnnotateFn`], shared with the relay thread.
pub type Annotate = Arc<AnnotateFn>;

/// The relay of this process, so an interrupted run (which exits from the signal thread) still
/// lets through what libtest printed before it.
static INSTALLED: std::sync::Mutex<Option<Relay>> = std::sync::Mutex::new(None);

/// Installs the relay for the process (see [`Relay::install`]); [`finish`] ends it.
pub fn install(annotate: Option<Annotate>) -> std::io::Result<()> {
    let r = Relay::install(annotate)?;
    *INSTALLED.lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
    Ok(())
}

/// Lets everything written so far through and puts fd 1 back (nothing when none is installed).
pub fn finish() {
    let r = INSTALLED.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(r) = r {
        r.finish();
    }
}

pub struct Relay {
    saved: OwnedFd,
    thread: Option<JoinHandle<()>>,
    marker: String,
}

impl Relay {
    /// Redirects fd 1 into the relay. `annotate` is applied to JSON `test` events (name, event).
    pub fn install(annotate: Option<Annotate>) -> std::io::Result<Relay> {
        std::io::stdout().flush()?;
        // Close-on-exec, so the agents and commands a run starts never hold the relay's ends
        // (fd 1 itself, the pipe's write end after dup2, is inherited as stdout as before).
        let (r, w) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from)?;
        let saved = nix::unistd::dup(std::io::stdout()).map_err(std::io::Error::from)?;
        nix::fcntl::fcntl(
            &saved,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        )
        .map_err(std::io::Error::from)?;
        nix::unistd::dup2_stdout(&w).map_err(std::io::Error::from)?;
        drop(w);
        let marker = format!("\u{1}pvcheck-relay-end-{}\u{1}", std::process::id());
        let out = File::from(saved.try_clone()?);
        let end = marker.clone();
        let thread = std::thread::spawn(move || relay(File::from(r), out, &end, annotate));
        Ok(Relay {
            saved,
            thread: Some(thread),
            marker,
        })
    }

    /// Lets everything written so far through and puts fd 1 back.
    pub fn finish(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let Some(t) = self.thread.take() else { return };
        let mut so = std::io::stdout().lock();
        let _ = so.flush();
        let _ = writeln!(so, "{}", self.marker);
        let _ = so.flush();
        drop(so);
        let _ = t.join();
        let _ = nix::unistd::dup2_stdout(&self.saved);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop();
    }
}

fn relay(from: File, mut to: File, marker: &str, annotate: Option<Annotate>) {
    let mut reader = BufReader::new(from);
    let mut line = Vec::new();
    let mut closed = false;
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        // The marker follows whatever was written last, which may be an unfinished line (the
        // terse format's progress dots when a signal stops the run): the end is the marker at
        // the end of a line, not only a line of its own.
        let body = line.strip_suffix(b"\n").unwrap_or(&line);
        if let Some(before) = body.strip_suffix(marker.as_bytes()) {
            if !closed && !before.is_empty() {
                let _ = to.write_all(before);
                let _ = to.write_all(b"\n");
            }
            return;
        }
        let text = String::from_utf8_lossy(&line);
        if closed {
            continue; // keep draining, so writers never block or fail
        }
        let out = match &annotate {
            Some(a) => annotated(&text, a.as_ref()),
            None => None,
        };
        let written = match out {
            Some(s) => to.write_all(s.as_bytes()),
            None => to.write_all(&line),
        };
        if written.is_err() {
            closed = true;
        }
    }
}

/// A JSON `test` event with the annotations added before its closing brace, keeping the rest
/// of the line byte for byte (libtest's field order).
fn annotated(line: &str, a: &AnnotateFn) -> Option<String> {
    let v: Value = serde_json::from_str(line.trim()).ok()?;
    if v.get("type")?.as_str()? != "test" {
        return None;
    }
    let name = v.get("name")?.as_str()?;
    let event = v.get("event")?.as_str()?;
    let extra = a(name, event);
    if extra.is_empty() {
        return None;
    }
    let body = line.trim_end();
    let body = body.strip_suffix('}')?.trim_end();
    let mut s = body.to_string();
    for (k, v) in extra {
        s.push_str(&format!(", {}: {}", Value::String(k), v));
    }
    s.push_str(" }\n");
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by `scripts/interrupt-storm`: SIGINT in the middle of the terse format's line of
    /// progress dots put the end marker at the end of that line; the relay only knew a marker
    /// on a line of its own, so it printed it and waited for ever, and the run never exited.
    #[test]
    fn the_end_marker_after_an_unfinished_line_ends_the_relay_and_keeps_the_line() {
        let (r, w) = nix::unistd::pipe().unwrap();
        let dir = std::env::temp_dir().join(format!("pvcheck-relay-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out_path = dir.join("out");
        let out = File::create(&out_path).unwrap();
        let marker = "\u{1}pvcheck-relay-end-test\u{1}";
        let mut w = File::from(w);
        w.write_all(format!("running 3 tests\n..i{marker}\nnot relayed\n").as_bytes())
            .unwrap();
        let t = std::thread::spawn(move || relay(File::from(r), out, marker, None));
        // Without the fix the relay would still be reading after the marker: the pipe's write
        // end stays open here, so only the marker can end it.
        t.join().unwrap();
        drop(w);
        let got = std::fs::read_to_string(&out_path).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(got, "running 3 tests\n..i\n");
    }

    #[test]
    fn an_ignored_event_gains_its_reason_and_keeps_its_fields() {
        let a = |name: &str, event: &str| {
            assert_eq!((name, event), ("c::snapshot", "ignored"));
            vec![(
                "message".to_string(),
                Value::from("capability `snapshot` is off"),
            )]
        };
        let out = annotated(
            "{ \"type\": \"test\", \"name\": \"c::snapshot\", \"event\": \"ignored\" }\n",
            &a,
        )
        .unwrap();
        assert_eq!(
            out,
            "{ \"type\": \"test\", \"name\": \"c::snapshot\", \"event\": \"ignored\", \"message\": \"capability `snapshot` is off\" }\n"
        );
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["event"], "ignored");
        let none = |_: &str, _: &str| Vec::new();
        assert_eq!(
            annotated("{ \"type\": \"suite\", \"event\": \"started\" }", &none),
            None
        );
    }
}
