//! Reading what the agent printed from its pod's log: the framing of `pvcheck-agent pod`
//! (`o`/`O` stdout, `e` stderr, `x` the end), see `pvcheck_workloads::pod`.

use serde_json::Value;

/// An agent run, reassembled from the log.
#[derive(Debug, Default, Clone)]
pub struct Framed {
    pub stdout: String,
    pub stderr: String,
    /// The `x` line, when the supervisor got to print it.
    pub end: Option<Value>,
}

impl Framed {
    pub fn code(&self) -> Option<i32> {
        self.end.as_ref()?.get("code")?.as_i64().map(|c| c as i32)
    }
    pub fn signal(&self) -> Option<i32> {
        self.end.as_ref()?.get("signal")?.as_i64().map(|c| c as i32)
    }
    /// `(signal, seconds after the agent started)` when the pod was told to stop (deleted or
    /// evicted) while the agent ran: the supervisor's `terminated`.
    pub fn terminated(&self) -> Option<(String, f64)> {
        let t = self.end.as_ref()?.get("terminated")?;
        Some((
            t.get("signal")?.as_str()?.to_string(),
            t.get("after_s").and_then(Value::as_f64).unwrap_or(0.0),
        ))
    }
    /// How long the agent ran, as its supervisor timed it.
    pub fn elapsed(&self) -> Option<std::time::Duration> {
        let s = self.end.as_ref()?.get("elapsed_s")?.as_f64()?;
        Some(std::time::Duration::from_secs_f64(s))
    }
    pub fn statfs(&self) -> Option<&Value> {
        self.end.as_ref()?.get("statfs")
    }
}

/// Incremental parser: feed lines as the log delivers them.
#[derive(Debug, Default)]
pub struct Parser {
    pub out: Framed,
}

impl Parser {
    /// One log line (without its newline). Lines that are not framed (a runtime's own message)
    /// go to stderr, so they are seen and never mistaken for the agent's JSON.
    pub fn line(&mut self, l: &str) {
        let (tag, rest) = match l.split_at_checked(2) {
            Some((t, r)) if t.ends_with(' ') => (t.chars().next(), r),
            _ => (None, l),
        };
        match tag {
            Some('o') => {
                self.out.stdout.push_str(rest);
                self.out.stdout.push('\n');
            }
            Some('O') => self.out.stdout.push_str(rest),
            Some('e') => {
                self.out.stderr.push_str(rest);
                self.out.stderr.push('\n');
            }
            Some('x') => self.out.end = serde_json::from_str(rest).ok(),
            _ => {
                self.out.stderr.push_str(l);
                self.out.stderr.push('\n');
            }
        }
    }
}

/// A whole log at once.
pub fn parse(log: &str) -> Framed {
    let mut p = Parser::default();
    for l in log.lines() {
        p.line(l);
    }
    p.out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A kill cuts the agent's last line: it must stay unterminated so verify --acks ignores it.
    #[test]
    fn a_cut_last_line_stays_without_its_newline() {
        let f = parse("o {\"record\":1}\ne warn\nO {\"reco\nx {\"code\":null,\"signal\":9}\n");
        assert_eq!(f.stdout, "{\"record\":1}\n{\"reco");
        assert_eq!(f.stderr, "warn\n");
        assert_eq!(f.signal(), Some(9));
        assert_eq!(f.code(), None);
    }

    #[test]
    fn unframed_lines_are_never_taken_for_the_agents_output() {
        let f = parse("{\"clean\":true}\nx {\"code\":0}\n");
        assert_eq!(f.stdout, "");
        assert!(f.stderr.contains("clean"));
        assert_eq!(f.code(), Some(0));
    }
}
