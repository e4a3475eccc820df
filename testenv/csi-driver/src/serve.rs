//! Serving: the CSI socket (and kubelet's registration socket), and a clean stop on SIGTERM or
//! SIGINT that stops serving and removes the sockets it made (not a successor's at the same
//! path) — but unmounts nothing, as a real node
//! plugin restart leaves its mounts in place.

use std::fs;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UnixListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::Server;

use crate::controller::ControllerService;
use crate::csi::controller_server::ControllerServer;
use crate::csi::identity_server::IdentityServer;
use crate::csi::node_server::NodeServer;
use crate::driver::Driver;
use crate::identity::IdentityService;
use crate::log;
use crate::node::NodeService;
use crate::pluginregistration::registration_server::RegistrationServer;
use crate::registration::{self, RegistrationService};

/// Serving failed or could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}: exists and is not a socket; refusing to replace it")]
    NotASocket(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("serving {path}: {source}")]
    Serve {
        path: PathBuf,
        source: tonic::transport::Error,
    },
    #[error("installing signal handlers: {0}")]
    Signals(std::io::Error),
}

impl ServeError {
    /// Bad input (exit 2) rather than a failure while serving (exit 1).
    pub fn is_usage(&self) -> bool {
        matches!(self, ServeError::NotASocket(_))
    }
}

/// Remove a stale socket at `path` (only a socket), make its directory, and listen.
pub fn listen(path: &Path) -> Result<UnixListener, ServeError> {
    let io = |source| ServeError::Io {
        path: path.to_path_buf(),
        source,
    };
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => fs::remove_file(path).map_err(io)?,
        Ok(_) => return Err(ServeError::NotASocket(path.to_path_buf())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(io)?;
    }
    UnixListener::bind(path).map_err(io)
}

/// A socket this process bound: its path and the file it made there (device, inode).
struct Bound {
    path: PathBuf,
    file: Option<(u64, u64)>,
}

impl Bound {
    fn of(path: &Path) -> Bound {
        Bound {
            path: path.to_path_buf(),
            file: identity(path),
        }
    }

    /// Removes the socket if it is still the one this process made: a successor started
    /// meanwhile (a rollout, a pod deleted with grace period 0) may have made its own at the
    /// same path, and removing that one would cut the kubelet off the new plugin.
    fn remove_if_ours(&self) {
        if self.file.is_some() && identity(&self.path) == self.file {
            let _ = fs::remove_file(&self.path);
        }
    }
}

fn identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    fs::symlink_metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Serve until SIGTERM/SIGINT. Sockets are removed on every way out, those still ours.
pub async fn run(driver: Arc<Driver>) -> Result<(), ServeError> {
    let config = driver.config.clone();
    let mut sockets = Vec::new();
    let result = serve(driver, &config, &mut sockets).await;
    for s in &sockets {
        s.remove_if_ours();
    }
    result
}

async fn serve(
    driver: Arc<Driver>,
    config: &crate::config::Config,
    sockets: &mut Vec<Bound>,
) -> Result<(), ServeError> {
    let mut term = signal(SignalKind::terminate()).map_err(ServeError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(ServeError::Signals)?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };

    let csi_listener = listen(&config.socket)?;
    sockets.push(Bound::of(&config.socket));
    let csi_server = Server::builder()
        .add_service(IdentityServer::new(IdentityService(driver.clone())))
        .add_service(ControllerServer::new(ControllerService(driver.clone())))
        .add_service(NodeServer::new(NodeService(driver.clone())))
        .serve_with_incoming_shutdown(
            UnixListenerStream::new(csi_listener),
            stopped(stop_rx.clone()),
        );
    let mut tasks = vec![(config.socket.clone(), tokio::spawn(csi_server))];

    if let Some(reg) = &config.registration {
        let path = registration::socket_path(&reg.registration_dir, &config.driver_name);
        let listener = listen(&path)?;
        sockets.push(Bound::of(&path));
        let service = RegistrationService {
            driver_name: config.driver_name.clone(),
            endpoint: reg.kubelet_registration_path.display().to_string(),
        };
        let server = Server::builder()
            .add_service(RegistrationServer::new(service))
            .serve_with_incoming_shutdown(
                UnixListenerStream::new(listener),
                stopped(stop_rx.clone()),
            );
        log!(
            "registration socket {} (endpoint for kubelet: {})",
            path.display(),
            reg.kubelet_registration_path.display()
        );
        tasks.push((path, tokio::spawn(server)));
    }
    log!(
        "serving {} on {} as node {} (version {}, data path {}{}{})",
        config.driver_name,
        config.socket.display(),
        config.node_id,
        config.vendor_version,
        config.data_path,
        if config.lose_acked_writes_on_restart {
            ", lose-acked-writes-on-restart"
        } else {
            ""
        },
        if config.faults.iter().next().is_some() {
            format!(
                ", faults: {}",
                config
                    .faults
                    .iter()
                    .map(|f| f.name())
                    .collect::<Vec<_>>()
                    .join(",")
            )
        } else {
            String::new()
        }
    );

    // Stop on a signal, or when a server ends by itself (an error).
    let first_end = async {
        let mut handles: Vec<_> = tasks.iter_mut().map(|(_, h)| h).collect();
        let (res, idx, _) = futures_select_all(&mut handles).await;
        (res, idx)
    };
    tokio::select! {
        _ = term.recv() => log!("SIGTERM: stopping (mounts stay{})", stop_note(config)),
        _ = int.recv() => log!("SIGINT: stopping (mounts stay{})", stop_note(config)),
        (res, idx) = first_end => {
            let path = tasks[idx].0.clone();
            let _ = stop_tx.send(true);
            return match res {
                Ok(Ok(())) => Ok(()),
                Ok(Err(source)) => Err(ServeError::Serve { path, source }),
                Err(join) => Err(ServeError::Io { path, source: std::io::Error::other(join.to_string()) }),
            };
        }
    }
    let _ = stop_tx.send(true);
    // The servers end once their connections close; a client that keeps its connection open
    // (every CSI client between calls) or a call that never returns (the `hang` fault) must
    // not keep the process alive: half a second for all of them (it was 2 s per server, which
    // made every driver swap of the local tests wait for pvcheck's SIGKILL).
    let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
    for (_, handle) in tasks {
        let _ = tokio::time::timeout_at(deadline, handle).await;
    }
    Ok(())
}

/// What becomes of this process's mounts when it stops.
fn stop_note(config: &crate::config::Config) -> &'static str {
    match config.data_path {
        crate::config::DataPath::FuseInside => {
            "; the FUSE mounts this process serves die with it: ENOTCONN"
        }
        crate::config::DataPath::FuseOutside => "; fuse-daemon processes keep serving theirs",
        crate::config::DataPath::Bind => "",
    }
}

/// The first of several join handles to finish, with its index.
async fn futures_select_all<T>(
    handles: &mut [&mut tokio::task::JoinHandle<T>],
) -> (Result<T, tokio::task::JoinError>, usize, ()) {
    std::future::poll_fn(|cx| {
        for (i, h) in handles.iter_mut().enumerate() {
            if let std::task::Poll::Ready(r) = std::pin::Pin::new(&mut **h).poll(cx) {
                return std::task::Poll::Ready((r, i, ()));
            }
        }
        std::task::Poll::Pending
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CI stop 30: the old plugin, exiting after its successor had bound the same path,
    /// removed the successor's socket; the kubelet then lost the driver on that node. A socket
    /// is removed on the way out only while it is still the file this process bound.
    #[test]
    fn an_exiting_plugin_leaves_its_successor_s_socket_at_the_same_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("csi.sock");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _guard = rt.enter();
        let old = listen(&path).unwrap();
        let old_bound = Bound::of(&path);
        // The successor removes the stale socket and binds its own at the same path.
        let new = listen(&path).unwrap();
        old_bound.remove_if_ours();
        assert!(
            fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_socket()),
            "the successor's socket was removed"
        );
        // The successor's own removal does remove it.
        Bound::of(&path).remove_if_ours();
        assert!(fs::symlink_metadata(&path).is_err());
        drop((old, new));
    }
}
