//! `pvcheck run --list`: the selected trials as `cargo test -- --list` prints them, then a count
//! line. A trial that will be ignored (the class cannot run here, a capability is off) says so
//! with the reason: `c::snapshot: test (ignored: …)` in text, `"ignore": true` and
//! `"ignore_message"` with `--format json` (one object per trial, as libtest's JSON listing,
//! then a `suite` object with the counts). A closed pipe (`pvcheck run --list | head -2`) ends
//! the listing quietly, as in other command-line tools, instead of a broken-pipe panic.

use std::io::Write;

use libtest_mimic::FormatSetting;

/// One listed trial.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    /// Why the trial will be ignored, known before running.
    pub ignored: Option<String>,
}

/// Writes the listing to `out`; a write error (EPIPE from a closed pipe) stops it, quietly.
pub fn write(out: &mut dyn Write, entries: &[Entry], format: Option<FormatSetting>) {
    let ignored = entries.iter().filter(|e| e.ignored.is_some()).count();
    let _ = (|| -> std::io::Result<()> {
        if matches!(format, Some(FormatSetting::Json)) {
            for e in entries {
                let line = serde_json::json!({
                    "type": "test",
                    "event": "discovered",
                    "name": e.name,
                    "ignore": e.ignored.is_some(),
                    "ignore_message": e.ignored.as_deref().unwrap_or(""),
                });
                writeln!(out, "{line}")?;
            }
            let suite = serde_json::json!({
                "type": "suite",
                "event": "discovered",
                "tests": entries.len(),
                "benchmarks": 0,
                "ignored": ignored,
            });
            writeln!(out, "{suite}")?;
            return out.flush();
        }
        for e in entries {
            match &e.ignored {
                None => writeln!(out, "{}: test", e.name)?,
                Some(r) => writeln!(out, "{}: test (ignored: {})", e.name, one_line(r))?,
            }
        }
        // cargo test's count line; terse (as libtest's) lists names only.
        if !matches!(format, Some(FormatSetting::Terse)) {
            writeln!(out)?;
            writeln!(
                out,
                "{} test{}, 0 benchmarks{}",
                entries.len(),
                if entries.len() == 1 { "" } else { "s" },
                if ignored > 0 {
                    format!("; {ignored} will be ignored (the reason is on each line)")
                } else {
                    String::new()
                }
            )?;
        }
        out.flush()
    })();
}

/// A reason on one line (a listing is one line per trial).
fn one_line(r: &str) -> String {
    r.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(name: &str, ignored: Option<&str>) -> Entry {
        Entry {
            name: name.into(),
            ignored: ignored.map(str::to_string),
        }
    }

    /// A reader that went away (EPIPE) must not turn into a panic.
    #[test]
    fn a_closed_pipe_ends_the_listing_quietly() {
        struct Closed;
        impl Write for Closed {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::Error::from_raw_os_error(libc::EPIPE))
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        write(&mut Closed, &[e("a::b", None)], None);
        let mut v = Vec::new();
        write(&mut v, &[e("a::b", None), e("a::c", None)], None);
        assert_eq!(
            String::from_utf8(v).unwrap(),
            "a::b: test\na::c: test\n\n2 tests, 0 benchmarks\n"
        );
    }

    /// `--list` never said which trials would be ignored: each says so, with the reason, in
    /// text and in JSON.
    #[test]
    fn list_marks_trials_that_will_be_ignored_with_the_reason() {
        let entries = [
            e("c::provision", None),
            e(
                "c::snapshot",
                Some("capabilities.snapshot is off\nfor this class"),
            ),
        ];
        let mut v = Vec::new();
        write(&mut v, &entries, None);
        assert_eq!(
            String::from_utf8(v).unwrap(),
            "c::provision: test\nc::snapshot: test (ignored: capabilities.snapshot is off for this class)\n\n2 tests, 0 benchmarks; 1 will be ignored (the reason is on each line)\n"
        );
        let mut v = Vec::new();
        write(&mut v, &entries, Some(FormatSetting::Json));
        let lines: Vec<serde_json::Value> = String::from_utf8(v)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0]["ignore"], false);
        assert_eq!(lines[1]["name"], "c::snapshot");
        assert_eq!(lines[1]["ignore"], true);
        assert_eq!(
            lines[1]["ignore_message"],
            "capabilities.snapshot is off\nfor this class"
        );
        assert_eq!(lines[2]["type"], "suite");
        assert_eq!(lines[2]["ignored"], 1);
    }
}
