//! Ordering between trials that libtest-mimic's thread pool does not know about.
//!
//! Trials are listed in three groups: per-class checks (class by class), then speed trials,
//! then cleanup trials; the pool takes them in that order. Gates make the order strict:
//! - at most `--parallel-classes` classes have checks running at once: a class's first check
//!   waits until one of the running classes has finished all of its checks;
//! - a speed trial starts only once every other (non-cleanup) trial has finished, and only one
//!   speed trial per storage backend runs at a time, in list order (each takes a turn of its
//!   backend when declared): speed is never measured while anything else runs on its backend,
//!   and a class's matrix runs in the order issue 3 fixes (a lock alone let whichever waiting
//!   thread won it go next). Classes of different backends measure at the same time;
//! - a cleanup trial starts only once every non-cleanup trial has finished;
//! - the last speed trial of a class releases the class's shared speed volume.
//!
//! Counts cover only trials that will run (filters and --skip applied), so a filtered run never
//! waits for a trial that is not coming. No deadlock: the pool takes trials in list order, so when
//! a thread waits at a gate, every trial it waits for has already been taken by another thread
//! (a running class's remaining checks come before the waiting trial in the list).

use std::collections::{HashMap, HashSet};
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
    /// Per storage backend: turns handed out to speed trials that will do work, and the turn
    /// that may run now.
    turns_given: HashMap<String, usize>,
    turn_now: HashMap<String, usize>,
    /// Checks that will do work, per class, still to finish; and the classes whose checks have
    /// started and not all finished (`--parallel-classes` bounds how many).
    checks_by_class: HashMap<String, usize>,
    active: HashSet<String>,
    /// Speed volumes being provisioned ahead of their turn ([`Schedule::while_checks_run`]):
    /// no speed trial starts until they are done.
    preparing: usize,
}

#[derive(Debug, Default)]
pub struct Schedule {
    counts: Mutex<Counts>,
    changed: Condvar,
    /// How many classes may run checks at once (0: no bound).
    parallel_classes: usize,
}

/// Held while a trial runs; finishing (even by panic) updates the counts.
pub struct Running<'a> {
    schedule: &'a Schedule,
    group: Group,
    class: String,
    /// The storage backend a speed trial measures.
    backend: String,
    /// A trial that does work (not one that only records an ignore).
    gated: bool,
    /// The speed turn this trial holds; the next one of its backend may start once it is
    /// dropped.
    turn: Option<usize>,
    /// Set for the last speed trial of its class.
    pub last_speed_of_class: bool,
}

impl Schedule {
    /// A schedule letting at most `parallel_classes` classes run checks at once (0: no bound).
    pub fn with_parallel_classes(parallel_classes: usize) -> Schedule {
        Schedule {
            parallel_classes,
            ..Schedule::default()
        }
    }

    /// Declares one trial that will run, in list order; a speed trial measures `backend`.
    /// `gate` false: it only records an ignore. Returns a speed trial's turn among its
    /// backend's (`None` for other trials and ignored ones).
    pub fn expect(&self, group: Group, class: &str, backend: &str, gate: bool) -> Option<usize> {
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        match group {
            Group::Check => {
                c.checks += 1;
                if gate {
                    *c.checks_by_class.entry(class.to_string()).or_default() += 1;
                }
            }
            Group::Speed => {
                c.speed += 1;
                *c.speed_by_class.entry(class.to_string()).or_default() += 1;
                if gate {
                    let given = c.turns_given.entry(backend.to_string()).or_default();
                    *given += 1;
                    return Some(*given - 1);
                }
            }
            Group::Cleanup => {}
        }
        None
    }

    /// Runs `f` now if checks are still to finish (so no speed trial measures yet), holding every
    /// speed trial back until it returns; `None` without running it once the checks are done.
    /// A speed trial provisions its class's volumes so, beside the checks, not in its turn.
    pub fn while_checks_run<T>(&self, f: impl FnOnce() -> T) -> Option<T> {
        {
            let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
            if c.checks == 0 {
                return None;
            }
            c.preparing += 1;
        }
        struct Done<'a>(&'a Schedule);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                let mut c = self.0.counts.lock().unwrap_or_else(|e| e.into_inner());
                c.preparing -= 1;
                self.0.changed.notify_all();
            }
        }
        let _done = Done(self);
        Some(f())
    }

    /// Waits for the trial's gate and marks it running. `gate` false: a trial that only records
    /// an ignore (no work) passes without waiting. `turn`: what [`Schedule::expect`] gave for
    /// the same `backend`.
    pub fn enter(
        &self,
        group: Group,
        class: &str,
        backend: &str,
        gate: bool,
        turn: Option<usize>,
    ) -> Running<'_> {
        if gate {
            let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
            match group {
                Group::Check => {
                    while self.parallel_classes > 0
                        && !c.active.contains(class)
                        && c.active.len() >= self.parallel_classes
                    {
                        c = self.changed.wait(c).unwrap_or_else(|e| e.into_inner());
                    }
                    c.active.insert(class.to_string());
                }
                Group::Speed => {
                    // The pool takes trials in list order, so every earlier turn is already
                    // held by a running or waiting thread: waiting for ours cannot deadlock.
                    while c.checks > 0
                        || c.preparing > 0
                        || turn.is_some_and(|t| {
                            t != c.turn_now.get(backend).copied().unwrap_or_default()
                        })
                    {
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
            backend: backend.to_string(),
            gated: gate,
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
            Group::Check => {
                c.checks = c.checks.saturating_sub(1);
                if self.gated
                    && let Some(n) = c.checks_by_class.get_mut(&self.class)
                {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        c.active.remove(&self.class);
                    }
                }
            }
            Group::Speed => {
                c.speed = c.speed.saturating_sub(1);
                if let Some(n) = c.speed_by_class.get_mut(&self.class) {
                    *n = n.saturating_sub(1);
                }
                if self.turn.is_some() {
                    *c.turn_now.entry(self.backend.clone()).or_default() += 1;
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
            assert_eq!(s.expect(Group::Check, "a", "m", true), None);
        }
        let turns: Vec<Option<usize>> = (0..3)
            .map(|_| s.expect(Group::Speed, "a", "m", true))
            .collect();
        assert_eq!(turns, [Some(0), Some(1), Some(2)]);
        let active = Arc::new(AtomicUsize::new(0));
        let checks_done = Arc::new(AtomicUsize::new(0));
        let mut hs = Vec::new();
        for i in 0..6 {
            let (s, active, checks_done) = (s.clone(), active.clone(), checks_done.clone());
            let turn = if i < 3 { None } else { turns[i - 3] };
            hs.push(std::thread::spawn(move || {
                let group = if i < 3 { Group::Check } else { Group::Speed };
                let r = s.enter(group, "a", "m", true, turn);
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
        let turns: Vec<Option<usize>> = (0..5)
            .map(|_| s.expect(Group::Speed, "a", "m", true))
            .collect();
        let order = Arc::new(Mutex::new(Vec::new()));
        // Threads arrive in reverse order; the first turn arrives last.
        let hs: Vec<_> = (0..5)
            .rev()
            .map(|i| {
                let (s, order, turn) = (s.clone(), order.clone(), turns[i]);
                let h = std::thread::spawn(move || {
                    let r = s.enter(Group::Speed, "a", "m", true, turn);
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
        assert_eq!(s.expect(Group::Speed, "a", "m", true), Some(0));
        assert_eq!(s.expect(Group::Speed, "b", "m", false), None);
        // Turn 0 has not run yet: the ignored trial must still pass straight through.
        drop(s.enter(Group::Speed, "b", "m", false, None));
        drop(s.enter(Group::Speed, "a", "m", true, Some(0)));
    }

    /// Speed trials of different backends measure at the same time, each backend's in its
    /// own list order; two of one backend never overlap.
    #[test]
    fn speed_trials_of_different_backends_overlap_and_one_backend_runs_alone() {
        let s = Arc::new(Schedule::default());
        // List order: a1 (backend x), b1 (y), a2 (x), b2 (y).
        let plan = [("a", "x"), ("b", "y"), ("a", "x"), ("b", "y")];
        let turns: Vec<_> = plan
            .iter()
            .map(|(c, b)| s.expect(Group::Speed, c, b, true))
            .collect();
        assert_eq!(turns, [Some(0), Some(0), Some(1), Some(1)]);
        let running: Arc<Mutex<HashMap<&str, usize>>> = Arc::default();
        let most_at_once = Arc::new(AtomicUsize::new(0));
        let hs: Vec<_> = plan
            .iter()
            .zip(turns)
            .map(|(&(class, backend), turn)| {
                let (s, running, most) = (s.clone(), running.clone(), most_at_once.clone());
                std::thread::spawn(move || {
                    let r = s.enter(Group::Speed, class, backend, true, turn);
                    {
                        let mut m = running.lock().unwrap();
                        let n = m.entry(backend).or_default();
                        *n += 1;
                        assert_eq!(*n, 1, "two speed trials of backend {backend} at once");
                        most.fetch_max(m.values().sum(), Ordering::SeqCst);
                    }
                    std::thread::sleep(Duration::from_millis(40));
                    *running.lock().unwrap().get_mut(backend).unwrap() -= 1;
                    drop(r);
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(
            most_at_once.load(Ordering::SeqCst),
            2,
            "backends x and y measured apart"
        );
    }

    /// `--parallel-classes 2` with three classes of two checks each: never three classes at
    /// once, and the third starts as soon as one class has finished all of its checks.
    #[test]
    fn parallel_classes_bounds_the_classes_whose_checks_run() {
        let s = Arc::new(Schedule::with_parallel_classes(2));
        let plan = ["a", "a", "b", "b", "c", "c"];
        for c in plan {
            s.expect(Group::Check, c, "m", true);
        }
        // An ignored check never holds a class.
        s.expect(Group::Check, "d", "m", false);
        drop(s.enter(Group::Check, "d", "m", false, None));
        let active: Arc<Mutex<HashMap<&str, usize>>> = Arc::default();
        let most = Arc::new(AtomicUsize::new(0));
        let hs: Vec<_> = plan
            .iter()
            .map(|&class| {
                let (s, active, most) = (s.clone(), active.clone(), most.clone());
                let h = std::thread::spawn(move || {
                    let r = s.enter(Group::Check, class, "m", true, None);
                    {
                        let mut m = active.lock().unwrap();
                        *m.entry(class).or_default() += 1;
                        most.fetch_max(m.values().filter(|n| **n > 0).count(), Ordering::SeqCst);
                    }
                    std::thread::sleep(Duration::from_millis(30));
                    *active.lock().unwrap().get_mut(class).unwrap() -= 1;
                    drop(r);
                });
                std::thread::sleep(Duration::from_millis(2));
                h
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn last_speed_trial_of_a_class_is_marked() {
        let s = Schedule::default();
        let t0 = s.expect(Group::Speed, "a", "m", true);
        let t1 = s.expect(Group::Speed, "a", "m", true);
        let r = s.enter(Group::Speed, "a", "m", true, t0);
        assert!(!r.last_speed_of_class);
        drop(r);
        let r = s.enter(Group::Speed, "a", "m", true, t1);
        assert!(r.last_speed_of_class);
    }
}
