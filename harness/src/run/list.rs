//! `pvcheck run --list`: the selected trials as `cargo test -- --list` prints them, then a count
//! line. A closed pipe (`pvcheck run --list | head -2`) ends the listing quietly, as in other
//! command-line tools, instead of a broken-pipe panic.

use std::io::Write;

use libtest_mimic::FormatSetting;

/// Writes the listing to `out`; a write error (EPIPE from a closed pipe) stops it, quietly.
pub fn write(out: &mut dyn Write, names: &[String], format: Option<FormatSetting>) {
    let _ = (|| -> std::io::Result<()> {
        for n in names {
            writeln!(out, "{n}: test")?;
        }
        // cargo test's count line; terse (as libtest's) lists names only.
        if !matches!(format, Some(FormatSetting::Terse)) {
            writeln!(out)?;
            writeln!(
                out,
                "{} test{}, 0 benchmarks",
                names.len(),
                if names.len() == 1 { "" } else { "s" }
            )?;
        }
        out.flush()
    })();
}

#[cfg(test)]
mod tests {
    use super::*;

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
        write(&mut Closed, &["a::b".into()], None);
        let mut v = Vec::new();
        write(&mut v, &["a::b".into(), "a::c".into()], None);
        assert_eq!(
            String::from_utf8(v).unwrap(),
            "a::b: test\na::c: test\n\n2 tests, 0 benchmarks\n"
        );
    }
}
