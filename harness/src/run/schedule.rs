//! Ordering between trials that libtest-mimic's thread pool does not know about.
//!
//! Trials are listed in three groups: per-class checks, then speed trials, then cleanup trials;
//! the pool takes them in that order. Gates make the order strict:
//! - a speed trial starts only once every other (non-cleanup) trial has finished, and only one
//!   speed trial runs at a time, in list order (each takes a turn when declared): speed is never
//!   measured while anything else runs, and a class's matrix runs in the order issue 3 fixes
//!   (a lock alone let whichever waiting thread won it go next);
//! - a cleanup trial starts only once every non-cleanup trial has finished;
//! - the last speed trial of a class releases the class's shared speed volume.
//!
//! Counts cover only trials that will run (filters and --skip applied), so a filtered run never
//! waits for a trial that is not coming. No deadlock: the pool takes trials in list order, so when
//! a thread waits at a gate, every trial it waits for has already been taken by another thread.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex};

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
    /// Turns handed out to speed trials that will do work, and the turn that may run now.
    turns_given: usize,
    turn_now: usize,
}

#[derive(Debug, Default)]
pub struct Schedule {
    counts: Mutex<Counts>,
    changed: Condvar,
}

/// Held while a trial runs; finishing (even by panic) updates the counts.
pub struct Running<'a> {
    schedule: &'a Schedule,
    group: Group,
    class: String,
    /// The speed turn this trial holds; the next one may start once it is dropped.
    turn: Option<usize>,
    /// Set for the last speed trial of its class.
    pub last_speed_of_class: bool,
}

impl Schedule {
    /// Declares one trial that will run, in list order. `gate` false: it only records an
    /// ignore. Returns a speed trial's turn (`None` for other trials and ignored ones).
    pub fn expect(&self, group: Group, class: &str, gate: bool) -> Option<usize> {
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        match group {
            Group::Check => c.checks += 1,
            Group::Speed => {
                c.speed += 1;
                *c.speed_by_class.entry(class.to_string()).or_default() += 1;
                if gate {
                    c.turns_given += 1;
                    return Some(c.turns_given - 1);
                }
            }
            Group::Cleanup => {}
        }
        None
    }

    /// Waits for the trial's gate and marks it running. `gate` false: a trial that only records
    /// an ignore (no work) passes without waiting. `turn`: what [`Schedule::expect`] gave.
    pub fn enter(&self, group: Group, class: &str, gate: bool, turn: Option<usize>) -> Running<'_> {
        if gate {
            let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
            match group {
                Group::Check => {}
                Group::Speed => {
                    // The pool takes trials in list order, so every earlier turn is already
                    // held by a running or waiting thread: waiting for ours cannot deadlock.
                    while c.checks > 0 || turn.is_some_and(|t| t != c.turn_now) {
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
            turn: if gate { turn } else { None },
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
                if self.turn.is_some() {
                    c.turn_now += 1;
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
            assert_eq!(s.expect(Group::Check, "a", true), None);
        }
        let turns: Vec<Option<usize>> = (0..3).map(|_| s.expect(Group::Speed, "a", true)).collect();
        assert_eq!(turns, [Some(0), Some(1), Some(2)]);
        let active = Arc::new(AtomicUsize::new(0));
        let checks_done = Arc::new(AtomicUsize::new(0));
        let mut hs = Vec::new();
        for i in 0..6 {
            let (s, active, checks_done) = (s.clone(), active.clone(), checks_done.clone());
            let turn = if i < 3 { None } else { turns[i - 3] };
            hs.push(std::thread::spawn(move || {
                let group = if i < 3 { Group::Check } else { Group::Speed };
                let r = s.enter(group, "a", true, turn);
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

    /// The matrix order is part of what a speed result means (what the cache holds, what was
    /// written before): a run of 4 threads once ran a class's workloads shuffled.
    #[test]
    fn speed_trials_run_in_list_order_whoever_reaches_the_gate_first() {
        let s = Arc::new(Schedule::default());
        let turns: Vec<Option<usize>> = (0..5).map(|_| s.expect(Group::Speed, "a", true)).collect();
        let order = Arc::new(Mutex::new(Vec::new()));
        // Threads arrive in reverse order; the first turn arrives last.
        let hs: Vec<_> = (0..5)
            .rev()
            .map(|i| {
                let (s, order, turn) = (s.clone(), order.clone(), turns[i]);
                let h = std::thread::spawn(move || {
                    let r = s.enter(Group::Speed, "a", true, turn);
                    order.lock().unwrap().push(i);
                    drop(r);
                });
                std::thread::sleep(Duration::from_millis(5));
                h
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(*order.lock().unwrap(), [0, 1, 2, 3, 4]);
    }

    #[test]
    fn an_ignored_speed_trial_takes_no_turn_and_does_not_wait() {
        let s = Schedule::default();
        assert_eq!(s.expect(Group::Speed, "a", true), Some(0));
        assert_eq!(s.expect(Group::Speed, "b", false), None);
        // Turn 0 has not run yet: the ignored trial must still pass straight through.
        drop(s.enter(Group::Speed, "b", false, None));
        drop(s.enter(Group::Speed, "a", true, Some(0)));
    }

    #[test]
    fn last_speed_trial_of_a_class_is_marked() {
        let s = Schedule::default();
        let t0 = s.expect(Group::Speed, "a", true);
        let t1 = s.expect(Group::Speed, "a", true);
        let r = s.enter(Group::Speed, "a", true, t0);
        assert!(!r.last_speed_of_class);
        drop(r);
        let r = s.enter(Group::Speed, "a", true, t1);
        assert!(r.last_speed_of_class);
    }
}
