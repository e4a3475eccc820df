//! A progress line for long trials, on stderr, only when stderr is a terminal.
//!
//! libtest prints whole result lines only when trials run in a thread pool (more than one
//! `--test-threads`, the default); single-threaded it prints "test x ..." before running, which a progress
//! line would overwrite, so the line is shown only in thread-pool mode. When a trial finishes
//! the line is hidden (cleared) just before libtest prints that trial's result, and shown again
//! a moment later by the ticker thread while trials still run.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Default)]
struct State {
    running: Vec<(String, Instant)>,
    hidden_since: Option<Instant>,
}

pub struct Progress {
    bar: Option<ProgressBar>,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
}

impl Progress {
    /// A progress display for `total` trials; nothing is drawn unless stderr is a terminal and `enabled`.
    pub fn new(total: u64, enabled: bool) -> Self {
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let bar = (enabled && std::io::stderr().is_terminal()).then(|| {
            let b = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden());
            b.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{pos}/{len}] {elapsed_precise} {wide_msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            let (b2, st, stop2) = (b.clone(), state.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut shown = false;
                while !stop2.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(250));
                    let mut s = st.lock().unwrap_or_else(|e| e.into_inner());
                    let names: Vec<String> = s
                        .running
                        .iter()
                        .map(|(n, t)| format!("{n} ({}s)", t.elapsed().as_secs()))
                        .collect();
                    b2.set_message(format!("running: {}", names.join(", ")));
                    let settled = s
                        .hidden_since
                        .is_none_or(|t| t.elapsed() > Duration::from_millis(300));
                    // Long trials only: nothing is drawn for a run of quick trials.
                    let long = s
                        .running
                        .iter()
                        .any(|(_, t)| t.elapsed() > Duration::from_secs(2));
                    if !shown && settled && long {
                        s.hidden_since = None;
                        b2.set_draw_target(ProgressDrawTarget::stderr());
                        shown = true;
                    } else if shown && s.hidden_since.is_some() {
                        shown = false;
                    }
                    if shown {
                        b2.tick();
                    }
                }
            });
            b
        });
        Self { bar, state, stop }
    }

    pub fn start(&self, name: &str) {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .running
            .push((name.to_string(), Instant::now()));
    }

    pub fn finish(&self, name: &str) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.running.retain(|(n, _)| n != name);
        if let Some(b) = &self.bar {
            b.inc(1);
            // Clears the line, so libtest's result line starts on a clean line.
            b.set_draw_target(ProgressDrawTarget::hidden());
            s.hidden_since = Some(Instant::now());
        }
    }

    pub fn done(&self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
