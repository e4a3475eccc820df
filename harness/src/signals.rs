//! SIGINT and SIGTERM: stop the trials, clean up, exit 130.
//!
//! The signals are blocked in every thread (the mask is set before any thread starts and
//! inherited) and received by one thread with `sigwait`, so no work happens in a signal handler.
//! That thread sets [`interrupted`] (agents and commands poll it and are killed), closes the run
//! registry, removes everything recorded, and exits with 130. Child processes get a clean mask:
//! std's `Command` resets it before exec.

use std::sync::atomic::{AtomicBool, Ordering};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// True once SIGINT or SIGTERM arrived.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Blocks SIGINT and SIGTERM in the calling thread (and every thread it starts later).
pub fn block() -> nix::Result<()> {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set.thread_block()
}

/// Starts the thread that waits for SIGINT/SIGTERM and then runs `on_signal` (which should clean
/// up and exit the process).
pub fn spawn_waiter<F>(on_signal: F) -> std::io::Result<()>
where
    F: FnOnce(i32) + Send + 'static,
{
    std::thread::Builder::new()
        .name("pvcheck-signals".into())
        .spawn(move || {
            use nix::sys::signal::{SigSet, Signal};
            let mut set = SigSet::empty();
            set.add(Signal::SIGINT);
            set.add(Signal::SIGTERM);
            if let Ok(sig) = set.wait() {
                INTERRUPTED.store(true, Ordering::SeqCst);
                on_signal(sig as i32);
            }
        })?;
    Ok(())
}
