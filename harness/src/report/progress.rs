//! A progress line for long trials, on stderr, only when stderr is a terminal.
//!
//! libtest prints whole result lines only when trials run in a thread pool (more than one
//! `--test-threads`, the default); single-threaded it prints "test x ..." before running, which a
//! progress line would overwrite, so the line is shown only in thread-pool mode. When a trial
//! finishes the line is cleared (the bar is finished and dropped) just before libtest prints
//! that trial's result; the ticker thread draws a new one a moment later while a trial has been
//! running for more than two seconds.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Default)]
struct State {
    running: Vec<(String, Instant)>,
    done: u64,
    total: u64,
    bar: Option<ProgressBar>,
    cleared_at: Option<Instant>,
}

pub struct Progress {
    enabled: bool,
    started: Instant,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
}

impl Progress {
    /// A progress display for `total` trials; nothing is drawn unless stderr is a terminal and `enabled`.
    pub fn new(total: u64, enabled: bool) -> Self {
        let enabled = enabled && std::io::stderr().is_terminal();
        let state = Arc::new(Mutex::new(State {
            total,
            ..State::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        if enabled {
            let (st, stop2) = (state.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop2.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(200));
                    let mut s = st.lock().unwrap_or_else(|e| e.into_inner());
                    let long = s
                        .running
                        .iter()
                        .any(|(_, t)| t.elapsed() > Duration::from_secs(2));
                    let settled = s
                        .cleared_at
                        .is_none_or(|t| t.elapsed() > Duration::from_millis(300));
                    if s.bar.is_none() && long && settled {
                        let b = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
                        b.set_style(
                            ProgressStyle::with_template("{spinner} {wide_msg}")
                                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                        );
                        s.bar = Some(b);
                    }
                    let names: Vec<String> = s
                        .running
                        .iter()
                        .map(|(n, t)| format!("{n} ({}s)", t.elapsed().as_secs()))
                        .collect();
                    let msg = format!(
                        "[{}/{}] {}s running: {}",
                        s.done,
                        s.total,
                        started.elapsed().as_secs(),
                        names.join(", ")
                    );
                    if let Some(b) = &s.bar {
                        b.set_message(msg);
                        b.tick();
                    }
                }
            });
        }
        Self {
            enabled,
            started,
            state,
            stop,
        }
    }

    pub fn start(&self, name: &str) {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .running
            .push((name.to_string(), Instant::now()));
    }

    /// The trials started and not finished, with their running time so far.
    pub fn running(&self) -> Vec<(String, Duration)> {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .running
            .iter()
            .map(|(n, t)| (n.clone(), t.elapsed()))
            .collect()
    }

    pub fn finish(&self, name: &str) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.running.retain(|(n, _)| n != name);
        s.done += 1;
        if let Some(b) = s.bar.take() {
            // Erase the line so libtest's result line starts on a clean line.
            b.finish_and_clear();
            s.cleared_at = Some(Instant::now());
        }
    }

    pub fn done(&self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(b) = self
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .bar
            .take()
        {
            b.finish_and_clear();
        }
        let _ = (self.enabled, self.started);
    }
}
