//! Recognising the same error in several trials: a bad mount option fails every trial of a
//! class with one message that differs only in the volume it names. The text without the
//! run's names (volume ids, paths under the run directory) is the key; the terminal prints
//! such an error once with a count.

use std::collections::HashMap;
use std::sync::Mutex;

/// `msg` with every name that starts with the run id (volume ids, `…/runs/<run>/…` paths)
/// replaced by `…`.
pub fn normalize(msg: &str, run_id: &str) -> String {
    if run_id.is_empty() {
        return msg.to_string();
    }
    let mut out = String::with_capacity(msg.len());
    let mut rest = msg;
    while let Some(at) = rest.find(run_id) {
        // Back up over the path the name is part of (`/var/lib/pvcheck/runs/<run>`).
        let before = &rest[..at];
        let start = before
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '-' | '_')))
            .map_or(0, |i| {
                i + before[i..].chars().next().map_or(1, char::len_utf8)
            });
        out.push_str(&rest[..start]);
        out.push('…');
        let after = &rest[at + run_id.len()..];
        let end = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '-' | '_')))
            .unwrap_or(after.len());
        rest = &after[end..];
    }
    out.push_str(rest);
    // Loop devices differ per volume too.
    let mut s = String::with_capacity(out.len());
    let mut rest = out.as_str();
    while let Some(at) = rest.find("/dev/loop") {
        s.push_str(&rest[..at + "/dev/loop".len()]);
        let after = &rest[at + "/dev/loop".len()..];
        let digits = after.chars().take_while(char::is_ascii_digit).count();
        if digits > 0 {
            s.push('…');
        }
        rest = &after[digits..];
    }
    s.push_str(rest);
    s
}

/// The errors trials have printed so far: the second trial failing with the same error prints
/// a reference to the first instead of the whole message again.
#[derive(Debug, Default)]
pub struct SeenErrors {
    first: Mutex<HashMap<String, (String, usize)>>,
}

impl SeenErrors {
    /// Records `msg` for `trial`; returns the trial that printed it first when this is a repeat.
    pub fn repeat_of(&self, trial: &str, msg: &str, run_id: &str) -> Option<String> {
        let key = normalize(msg, run_id);
        let mut m = self.first.lock().unwrap_or_else(|e| e.into_inner());
        let e = m.entry(key).or_insert_with(|| (trial.to_string(), 0));
        e.1 += 1;
        (e.0 != trial).then(|| e.0.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_names_and_run_paths_are_taken_out() {
        let a = "provision: `mount -o bogus /dev/loop3 /var/lib/pvcheck/runs/ab12/volumes/ab12-x-provision/mnt` failed (exit 32): bad option; volume ab12-x-provision";
        let b = "provision: `mount -o bogus /dev/loop3 /var/lib/pvcheck/runs/ab12/volumes/ab12-x-recreate/mnt` failed (exit 32): bad option; volume ab12-x-recreate";
        assert_eq!(normalize(a, "ab12"), normalize(b, "ab12"));
        assert_eq!(
            normalize("volume ab12-x-provision: too slow", "ab12"),
            "volume …: too slow"
        );
    }

    #[test]
    fn a_repeat_names_the_first_trial() {
        let s = SeenErrors::default();
        assert_eq!(s.repeat_of("c::a", "boom ab12-1", "ab12"), None);
        assert_eq!(
            s.repeat_of("c::b", "boom ab12-2", "ab12").as_deref(),
            Some("c::a")
        );
        assert_eq!(s.repeat_of("c::c", "other", "ab12"), None);
    }
}
