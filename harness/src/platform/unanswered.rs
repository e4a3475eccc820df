//! Drivers that stopped answering. A class whose driver missed a call deadline (today: a CSI
//! call with no answer within `call_timeout`) is noted here, once; the run then fails the class's
//! remaining trials at once as `timeout` instead of letting each wait its own deadline in turn (a
//! hung `NodePublishVolume` took a run ten minutes), unless the class asks to retry
//! (`local.csi.retry_after_timeout: true`).
//!
//! One pvcheck process runs one run, so the notes are the process's.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::SystemTime;

/// The first deadline a class's driver missed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missed {
    /// When (RFC 3339, UTC, milliseconds).
    pub at: String,
    /// The call and its deadline, one line (`CSI NodePublishVolume: no answer within 3.0s …`).
    pub what: String,
}

static MISSED: LazyLock<Mutex<HashMap<String, Missed>>> = LazyLock::new(Default::default);

/// Notes that `class`'s driver missed a deadline (`what`: the error's first line). The first
/// note stays.
pub fn note(class: &str, what: &str) {
    let mut m = MISSED.lock().unwrap_or_else(|e| e.into_inner());
    m.entry(class.to_string()).or_insert_with(|| Missed {
        at: crate::report::results::rfc3339_utc_millis(SystemTime::now()),
        what: what.lines().next().unwrap_or("").trim().to_string(),
    });
}

/// The deadline `class`'s driver missed, if it did.
pub fn missed(class: &str) -> Option<Missed> {
    MISSED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(class)
        .cloned()
}

/// The failure of a trial not run because its class's driver stopped answering.
pub fn message(m: &Missed) -> String {
    format!(
        "the driver stopped answering at {} ({}); not retried: the class's remaining trials fail at once (set local.csi.retry_after_timeout: true to call it again in each trial)",
        m.at, m.what
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_missed_deadline_of_a_class_is_kept() {
        assert_eq!(missed("unanswered-test-class"), None);
        note(
            "unanswered-test-class",
            "CSI NodePublishVolume: no answer within 3.0s (call_timeout)\n  request: …",
        );
        note("unanswered-test-class", "CSI NodeUnpublishVolume: later");
        let m = missed("unanswered-test-class").unwrap();
        assert_eq!(
            m.what,
            "CSI NodePublishVolume: no answer within 3.0s (call_timeout)"
        );
        assert!(message(&m).contains("the driver stopped answering at 20"));
        assert!(message(&m).contains("not retried"));
        assert_eq!(missed("another-class"), None);
    }
}
