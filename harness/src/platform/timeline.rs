//! Where a trial's time goes: the platform's waits (a claim bound, a pod scheduled, a volume
//! attached, a container started, an agent run, a pod deleted, a volume detached, a claim
//! deleted), each with when it began and how long it took.
//!
//! A trial runs on a thread of its own and the platform's calls run on the trial's thread (the
//! Kubernetes platform's `block_on` polls its futures there), so the recorder is per thread, as
//! a tracing span is: [`during`] installs one around a trial and returns what was recorded;
//! [`record`] adds to it from anywhere below. A wait recorded outside a trial (the end of the
//! run) goes nowhere. The result file keeps each trial's spans (`trials[].timeline`), the JSON
//! events their sums per wait, and the run's summary line the shares of the trials' summed time.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::Instant;

/// One kind of platform wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Wait {
    /// A claim created until Bound (a WaitForFirstConsumer claim: within its first pod's start).
    ClaimBound,
    /// A pod created until the scheduler gave it a node.
    PodScheduled,
    /// The pod's volume until it was attached to the pod's node (a VolumeAttachment's
    /// `attached`), from when the pod was scheduled.
    VolumeAttached,
    /// From the volume attached (or the pod scheduled) until the node's kubelet listed it in its
    /// status's `volumesInUse`: the kubelet mounts an attached volume only once it has
    /// reported it in use, and it writes its status every `nodeStatusUpdateFrequency` (10 s
    /// by default). Only when that came after the attach.
    InUseReported,
    /// From the pod scheduled (or its volume attached, or reported in use) until its container
    /// ran: the kubelet's stage and publish, the sandbox and the container.
    ContainerStarted,
    /// An agent pod running until the API server showed it terminated (the agent's own time
    /// and the kubelet's report of its end).
    AgentRan,
    /// Reading an agent's output (its pod's log).
    LogRead,
    /// A pod deleted until it was gone.
    PodDeleted,
    /// From a volume's pods gone until the node's kubelet no longer listed it in
    /// `volumesInUse`: the attach/detach controller detaches only then (the same status
    /// period). Only when seen during the wait for the detach.
    InUseCleared,
    /// A volume's attachment until it was gone (after [`Wait::InUseCleared`] when that was
    /// seen).
    VolumeDetached,
    /// A claim deleted until it (and its PV, when deleted with it) was gone.
    ClaimDeleted,
}

impl Wait {
    pub const ALL: [Wait; 11] = [
        Wait::ClaimBound,
        Wait::PodScheduled,
        Wait::VolumeAttached,
        Wait::InUseReported,
        Wait::ContainerStarted,
        Wait::AgentRan,
        Wait::LogRead,
        Wait::PodDeleted,
        Wait::InUseCleared,
        Wait::VolumeDetached,
        Wait::ClaimDeleted,
    ];

    /// How the summary line names it.
    pub fn label(self) -> &'static str {
        match self {
            Wait::ClaimBound => "claim bound",
            Wait::PodScheduled => "pod scheduled",
            Wait::VolumeAttached => "attach",
            Wait::InUseReported => "kubelet in-use report",
            Wait::ContainerStarted => "container start",
            Wait::AgentRan => "agents",
            Wait::LogRead => "log read",
            Wait::PodDeleted => "pod delete",
            Wait::InUseCleared => "kubelet in-use clear",
            Wait::VolumeDetached => "detach",
            Wait::ClaimDeleted => "claim delete",
        }
    }
}

/// One wait of a trial: what waited (the pod or claim), when it began (seconds since the
/// trial's start) and how long it took.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Span {
    pub wait: Wait,
    pub subject: String,
    pub at_s: f64,
    pub seconds: f64,
}

struct Recorder {
    start: Instant,
    spans: Vec<Span>,
}

thread_local! {
    static CURRENT: RefCell<Option<Recorder>> = const { RefCell::new(None) };
}

/// Runs `f` with a recorder on this thread; returns its result and the spans recorded, in the
/// order they ended. A recorder already installed (a nested call) is restored afterwards.
pub fn during<T>(f: impl FnOnce() -> T) -> (T, Vec<Span>) {
    let outer = CURRENT.with(|c| {
        c.borrow_mut().replace(Recorder {
            start: Instant::now(),
            spans: Vec::new(),
        })
    });
    // Taken back even when `f` panics (the trial catches panics and records its result).
    struct Restore(Option<Option<Recorder>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            if let Some(outer) = self.0.take() {
                CURRENT.with(|c| *c.borrow_mut() = outer);
            }
        }
    }
    let mut restore = Restore(Some(outer));
    let out = f();
    let mine = CURRENT.with(|c| c.borrow_mut().take());
    if let Some(outer) = restore.0.take() {
        CURRENT.with(|c| *c.borrow_mut() = outer);
    }
    (out, mine.map(|r| r.spans).unwrap_or_default())
}

/// Records that `subject` waited for `wait` from `from` until `to` (nothing outside a trial).
pub fn record(wait: Wait, subject: &str, from: Instant, to: Instant) {
    CURRENT.with(|c| {
        if let Some(r) = c.borrow_mut().as_mut() {
            r.spans.push(Span {
                wait,
                subject: subject.to_string(),
                at_s: from.saturating_duration_since(r.start).as_secs_f64(),
                seconds: to.saturating_duration_since(from).as_secs_f64(),
            });
        }
    });
}

/// Records a wait that began at `from` and ends now.
pub fn since(wait: Wait, subject: &str, from: Instant) {
    record(wait, subject, from, Instant::now());
}

/// Seconds per wait, summed over `spans` (waits with none left out).
pub fn sums<'a>(spans: impl IntoIterator<Item = &'a Span>) -> BTreeMap<Wait, f64> {
    let mut m = BTreeMap::new();
    for s in spans {
        *m.entry(s.wait).or_insert(0.0) += s.seconds;
    }
    m
}

/// The summary line's body: each wait's share of `total_s` (the trials' summed time), largest
/// first, then what no wait covers ("the rest": the harness's own work, agents run without a
/// pod of their own, waits a platform does not record). `None` when nothing was recorded.
pub fn shares(sums: &BTreeMap<Wait, f64>, total_s: f64) -> Option<String> {
    if sums.is_empty() || total_s <= 0.0 {
        return None;
    }
    let mut v: Vec<(Wait, f64)> = sums.iter().map(|(w, s)| (*w, *s)).collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1));
    let covered: f64 = v.iter().map(|(_, s)| s).sum();
    let mut parts: Vec<String> = v
        .iter()
        .map(|(w, s)| format!("{} {:.0}%", w.label(), 100.0 * s / total_s))
        .collect();
    if covered <= total_s {
        parts.push(format!(
            "the rest {:.0}%",
            100.0 * (total_s - covered) / total_s
        ));
    } else {
        // Checks that run several pods at once (live-upgrade's agents, rwx) wait in parallel.
        parts.push(format!(
            "waits overlapping: {:.0}% in all",
            100.0 * covered / total_s
        ));
    }
    Some(parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn spans_go_to_the_trial_that_recorded_them_and_nowhere_outside_one() {
        let t0 = Instant::now();
        record(Wait::PodDeleted, "outside", t0, t0 + Duration::from_secs(1));
        let ((), spans) = during(|| {
            let s = Instant::now();
            record(
                Wait::PodScheduled,
                "agent-1",
                s,
                s + Duration::from_millis(250),
            );
            let ((), inner) = during(|| since(Wait::AgentRan, "agent-2", Instant::now()));
            assert_eq!(inner.len(), 1, "the nested trial's own");
            record(Wait::ClaimBound, "pvc", s, s + Duration::from_secs(2));
        });
        let got: Vec<_> = spans.iter().map(|s| (s.wait, s.subject.as_str())).collect();
        assert_eq!(
            got,
            [(Wait::PodScheduled, "agent-1"), (Wait::ClaimBound, "pvc")]
        );
        assert!((spans[0].seconds - 0.25).abs() < 1e-9);
        // Another thread has no recorder of this one's.
        let ((), other) = during(|| {
            std::thread::spawn(|| since(Wait::AgentRan, "elsewhere", Instant::now()))
                .join()
                .unwrap();
        });
        assert!(other.is_empty());
    }

    #[test]
    fn a_panicking_trial_leaves_no_recorder_behind() {
        let r = std::panic::catch_unwind(|| during(|| panic!("check panicked")));
        assert!(r.is_err());
        let t0 = Instant::now();
        record(Wait::PodDeleted, "after", t0, t0);
        let ((), spans) = during(|| {});
        assert!(spans.is_empty());
        assert!(CURRENT.with(|c| c.borrow().is_none()));
    }

    #[test]
    fn the_summary_names_the_largest_share_first_and_the_rest() {
        let spans = [
            Span {
                wait: Wait::AgentRan,
                subject: "a".into(),
                at_s: 0.0,
                seconds: 3.0,
            },
            Span {
                wait: Wait::ContainerStarted,
                subject: "a".into(),
                at_s: 0.0,
                seconds: 3.5,
            },
            Span {
                wait: Wait::AgentRan,
                subject: "b".into(),
                at_s: 5.0,
                seconds: 1.0,
            },
        ];
        let s = sums(&spans);
        assert_eq!(s[&Wait::AgentRan], 4.0);
        assert_eq!(
            shares(&s, 10.0).unwrap(),
            "agents 40%, container start 35%, the rest 25%"
        );
        assert_eq!(shares(&BTreeMap::new(), 10.0), None);
        assert_eq!(
            shares(&s, 5.0).unwrap(),
            "agents 80%, container start 70%, waits overlapping: 150% in all"
        );
    }
}
