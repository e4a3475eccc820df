//! Waiting for an object, watch-based: one watch per wait (`watch_object`, which lists, watches,
//! and lists again after a 410 Gone), a decision per event, and the class's timeout. No sleep
//! and get: the requests a wait makes do not grow with how long it lasts.

use std::fmt::Debug;
use std::time::Duration;

use futures::StreamExt;
use kube::Api;
use kube::runtime::watcher;
use serde::de::DeserializeOwned;

/// Why a wait ended without its object reaching the state.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    /// The decision function said it will never get there (an image that cannot be pulled, an
    /// evicted pod), with the reason.
    #[error("{0}")]
    Failed(String),
    #[error("{what}: not within {limit}")]
    Timeout { what: String, limit: String },
    /// The API server refused the watch (RBAC) or kept failing.
    #[error("{what}: {reason}")]
    Api { what: String, reason: String },
}

/// What a decision function says about the object as it is now.
pub enum Decision<T> {
    Wait,
    Done(T),
    Fail(String),
}

/// Watches `name` until `decide` says Done or Fail, or `limit` passes. `decide` gets `None`
/// while the object does not exist.
pub async fn until<K, T>(
    api: Api<K>,
    name: &str,
    what: &str,
    limit: Duration,
    mut decide: impl FnMut(Option<&K>) -> Decision<T>,
) -> Result<T, WaitError>
where
    K: kube::Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let watch = async {
        let mut stream = std::pin::pin!(watcher::watch_object(api, name));
        let mut errors = 0u32;
        while let Some(item) = stream.next().await {
            match item {
                Ok(obj) => {
                    errors = 0;
                    match decide(obj.as_ref()) {
                        Decision::Wait => {}
                        Decision::Done(t) => return Ok(t),
                        Decision::Fail(r) => return Err(WaitError::Failed(r)),
                    }
                }
                Err(e) => {
                    if let Err(reason) = after_error(&mut errors, &e).await {
                        return Err(WaitError::Api {
                            what: what.to_string(),
                            reason,
                        });
                    }
                }
            }
        }
        Err(WaitError::Api {
            what: what.to_string(),
            reason: "the watch ended".into(),
        })
    };
    match tokio::time::timeout(limit, watch).await {
        Ok(r) => r,
        Err(_) => Err(WaitError::Timeout {
            what: what.to_string(),
            limit: pvcheck_workloads::units::format_duration(limit),
        }),
    }
}

/// A watch's error `e`, the `errors`-th in a row: why to give up (one that retrying cannot
/// fix, or the fifth), else a short pause before the watcher starts over (list, then watch) on
/// its next poll, so a failing server is not hammered.
pub(super) async fn after_error(errors: &mut u32, e: &watcher::Error) -> Result<(), String> {
    *errors += 1;
    if let Some(reason) = fatal(e) {
        return Err(reason);
    }
    if *errors >= 5 {
        return Err(format!(
            "the watch failed {errors} times: {}",
            super::client::one_line(&e.to_string())
        ));
    }
    tokio::time::sleep(Duration::from_millis(250 * u64::from(*errors))).await;
    Ok(())
}

/// A watch error that retrying cannot fix: RBAC forbids it, or the resource does not exist.
fn fatal(e: &watcher::Error) -> Option<String> {
    let api = match e {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s)) => s,
        watcher::Error::WatchError(s) if s.code == 403 || s.code == 404 => s,
        _ => return None,
    };
    (api.code == 403 || api.code == 404 || api.code == 401)
        .then(|| format!("{} ({} {})", api.message, api.code, api.reason))
}
