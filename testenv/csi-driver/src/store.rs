//! The driver's state in memory, and with `--shared-statedir` on disk as the one truth that
//! several processes share (a controller and a node plugin per node over one directory, as a
//! shared-storage driver is deployed): there every [`StateStore::lock`] takes the state file's
//! lock (`<statedir>/lock.state`, flock) and reads the state afresh, and the lock is held until
//! the guard is dropped, so a read-change-save of one process never interleaves with another's.

use std::fs::File;
use std::ops::{Deref, DerefMut};

use nix::fcntl::{Flock, FlockArg};

use crate::log;
use crate::state::{Layout, State};

pub struct StateStore {
    mem: tokio::sync::Mutex<State>,
    /// `Some` with `--shared-statedir`: where the state is read from at every lock.
    shared: Option<Layout>,
}

/// The locked state (and, shared, the state file's lock).
pub struct StateGuard<'a> {
    state: tokio::sync::MutexGuard<'a, State>,
    _file_lock: Option<Flock<File>>,
}

impl Deref for StateGuard<'_> {
    type Target = State;
    fn deref(&self) -> &State {
        &self.state
    }
}

impl DerefMut for StateGuard<'_> {
    fn deref_mut(&mut self) -> &mut State {
        &mut self.state
    }
}

/// The state file lock of `layout` (blocking: other processes hold it for one call at most).
pub fn file_lock(layout: &Layout) -> std::io::Result<Flock<File>> {
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(layout.root.join("lock.state"))?;
    Flock::lock(f, FlockArg::LockExclusive).map_err(|(_, e)| std::io::Error::from(e))
}

impl StateStore {
    pub fn new(state: State, shared: Option<Layout>) -> StateStore {
        StateStore {
            mem: tokio::sync::Mutex::new(state),
            shared,
        }
    }

    pub async fn lock(&self) -> StateGuard<'_> {
        let mut state = self.mem.lock().await;
        let Some(layout) = &self.shared else {
            return StateGuard {
                state,
                _file_lock: None,
            };
        };
        let file_lock = match tokio::task::block_in_place(|| file_lock(layout)) {
            Ok(l) => Some(l),
            Err(e) => {
                log!("locking the shared state file: {e} (going on without the lock)");
                None
            }
        };
        match layout.load() {
            Ok(s) => *state = s,
            Err(e) => log!("reading the shared state: {e} (going on with the last state read)"),
        }
        StateGuard {
            state,
            _file_lock: file_lock,
        }
    }

    /// Before any call is served (startup work).
    pub fn try_lock(&self) -> Option<tokio::sync::MutexGuard<'_, State>> {
        self.mem.try_lock().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{STATE_FILE, Snapshot, VolumeKind};

    /// Two processes over one shared statedir: what one saves under its lock, the other's next
    /// lock reads (a node plugin sees the controller's ControllerPublishVolume).
    #[tokio::test(flavor = "multi_thread")]
    async fn a_shared_store_reads_what_another_process_saved() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout {
            root: dir.path().to_path_buf(),
            state_name: STATE_FILE.into(),
        };
        layout.save(&State::default()).unwrap();
        let a = StateStore::new(State::default(), Some(layout.clone()));
        let b = StateStore::new(State::default(), Some(layout.clone()));
        {
            let mut s = a.lock().await;
            s.snapshots.insert(
                "s1".into(),
                Snapshot {
                    id: "s1".into(),
                    name: "n".into(),
                    source_volume_id: "v".into(),
                    size_bytes: 1,
                    kind: VolumeKind::Dir,
                    created_seconds: 0,
                    created_nanos: 0,
                },
            );
            layout.save(&s).unwrap();
        }
        assert!(b.lock().await.snapshots.contains_key("s1"));
        // Not shared: the memory is the truth.
        let c = StateStore::new(State::default(), None);
        assert!(c.lock().await.snapshots.is_empty());
    }
}
