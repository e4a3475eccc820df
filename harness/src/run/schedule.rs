//! Ordering between trials that libtest-mimic's thread pool does not know about.
//!
//! Trials are listed in three groups: per-class checks, then speed trials, then cleanup trials;
//! the pool takes them in that order. Gates make the order strict:
//! - a speed trial starts only once every other (non-cleanup) trial has finished, and only one
//!   speed trial runs at a time: speed is never measured while anything else runs;
//! - a cleanup trial starts only once every non-cleanup trial has finished;
//! - the last speed trial of a class releases the class's shared speed volume.
//!
//! Counts cover only trials that will run (filters and --skip applied), so a filtered run never
//! waits for a trial that is not coming. No deadlock: the pool takes trials in list order, so when
//! a thread waits at a gate, every trial it waits for has already been taken by another thread.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex, MutexGuard};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    Check,
    Speed,
    Cleanup,
}

#[derive(Debug, Default)]
struct Counts {
    checks: usize,
    speed: usize,
    speed_by_class: HashMap<String, usize>,
}

#[derive(Debug, Default)]
pub struct Schedule {
    counts: Mutex<Counts>,
    changed: Condvar,
    /// Held by the running speed trial.
    speed_lock: Mutex<()>,
}

/// Held while a trial runs; finishing (even by panic) updates the counts.
pub struct Running<'a> {
    schedule: &'a Schedule,
    group: Group,
    class: String,
    _speed: Option<MutexGuard<'a, ()>>,
    /// Set for the last speed trial of its class.
    pub last_speed_of_class: bool,
}

impl Schedule {
    /// Declares one trial that will run.
    pub fn expect(&self, group: Group, class: &str) {
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        match group {
            Group::Check => c.checks += 1,
            Group::Speed => {
                c.speed += 1;
                *c.speed_by_class.entry(class.to_string()).or_default() += 1;
            }
            Group::Cleanup => {}
        }
    }

    /// Waits for the trial's gate and marks it running. `gate` false: a trial that only records
    /// an ignore (no work) passes without waiting.
    pub fn enter(&self, group: Group, class: &str, gate: bool) -> Running<'_> {
        if gate {
            let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
            match group {
                Group::Check => {}
                Group::Speed => {
                    while c.checks > 0 {
                        c = self.changed.wait(c).unwrap_or_else(|e| e.into_inner());
                    }
                }
                Group::Cleanup => {
                    while c.checks > 0 || c.speed > 0 {
                        c = self.changed.wait(c).unwrap_or_else(|e| e.into_inner());
                    }
                }
            }
        }
        let speed = (gate && group == Group::Speed)
            .then(|| self.speed_lock.lock().unwrap_or_else(|e| e.into_inner()));
        let last = group == Group::Speed
            && self
                .counts
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .speed_by_class
                .get(class)
                .copied()
                == Some(1);
        Running {
            schedule: self,
            group,
            class: class.to_string(),
            _speed: speed,
            last_speed_of_class: last,
        }
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let mut c = self
            .schedule
            .counts
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match self.group {
            Group::Check => c.checks = c.checks.saturating_sub(1),
            Group::Speed => {
                c.speed = c.speed.saturating_sub(1);
                if let Some(n) = c.speed_by_class.get_mut(&self.class) {
                    *n = n.saturating_sub(1);
                }
            }
            Group::Cleanup => {}
        }
        self.schedule.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// Speed trials must never overlap each other or any check.
    #[test]
    fn speed_waits_for_checks_and_runs_alone() {
        let s = Arc::new(Schedule::default());
        for _ in 0..3 {
            s.expect(Group::Check, "a");
        }
        for _ in 0..3 {
            s.expect(Group::Speed, "a");
        }
        let active = Arc::new(AtomicUsize::new(0));
        let checks_done = Arc::new(AtomicUsize::new(0));
        let mut hs = Vec::new();
        for i in 0..6 {
            let (s, active, checks_done) = (s.clone(), active.clone(), checks_done.clone());
            hs.push(std::thread::spawn(move || {
                let group = if i < 3 { Group::Check } else { Group::Speed };
                let r = s.enter(group, "a", true);
                if group == Group::Speed {
                    assert_eq!(
                        checks_done.load(Ordering::SeqCst),
                        3,
                        "speed started before the checks finished"
                    );
                    assert_eq!(
                        active.fetch_add(1, Ordering::SeqCst),
                        0,
                        "two speed trials at once"
                    );
                    std::thread::sleep(Duration::from_millis(20));
                    active.fetch_sub(1, Ordering::SeqCst);
                } else {
                    std::thread::sleep(Duration::from_millis(30));
                    checks_done.fetch_add(1, Ordering::SeqCst);
                }
                drop(r);
            }));
            std::thread::sleep(Duration::from_millis(2));
        }
        for h in hs {
            h.join().unwrap();
        }
    }

    #[test]
    fn last_speed_trial_of_a_class_is_marked() {
        let s = Schedule::default();
        s.expect(Group::Speed, "a");
        s.expect(Group::Speed, "a");
        let r = s.enter(Group::Speed, "a", true);
        assert!(!r.last_speed_of_class);
        drop(r);
        let r = s.enter(Group::Speed, "a", true);
        assert!(r.last_speed_of_class);
    }
}
