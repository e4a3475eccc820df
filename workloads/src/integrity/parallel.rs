//! A minimal work pool: `threads` workers take chunks in order from a shared counter, so files
//! and regions are spread evenly and each worker reads or writes large sequential ranges.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::error::Error;

/// Runs `work(state, index)` for every index in `0..n` on `threads` workers, each with its own
/// state from `init`. Stops at the first error and returns it; otherwise returns every state.
pub fn for_each<S: Send>(
    threads: usize,
    n: usize,
    init: impl Fn() -> S + Sync,
    work: impl Fn(&mut S, usize) -> Result<(), Error> + Sync,
) -> Result<Vec<S>, Error> {
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let first_err: Mutex<Option<Error>> = Mutex::new(None);
    let states = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads.max(1))
            .map(|_| {
                s.spawn(|| {
                    let mut st = init();
                    while !stop.load(Ordering::Relaxed) {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            break;
                        }
                        if let Err(e) = work(&mut st, i) {
                            stop.store(true, Ordering::Relaxed);
                            first_err.lock().unwrap().get_or_insert(e);
                            break;
                        }
                    }
                    st
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("worker panicked"))
            .collect::<Vec<_>>()
    });
    match first_err.into_inner().unwrap() {
        Some(e) => Err(e),
        None => Ok(states),
    }
}
