//! A small fake API server over real HTTP on loopback, for the faults a real cluster does not
//! produce on demand: a 410 Gone on a watch, a verb RBAC forbids, the server going away. Tests
//! only; a check proven only here is not done while the real cluster can run it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

/// The answer to one request: HTTP status and JSON body (`None`: close the connection unanswered).
pub type Handler = dyn Fn(&str, &str) -> Option<(u16, String)> + Send + Sync;

pub struct FakeApi {
    pub url: String,
    /// Every request seen, as `METHOD path?query`.
    pub seen: Arc<Mutex<Vec<String>>>,
}

impl FakeApi {
    pub fn start(handler: Arc<Handler>) -> FakeApi {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let handler = handler.clone();
                let s = s.clone();
                std::thread::spawn(move || {
                    let mut r = BufReader::new(conn.try_clone().unwrap());
                    // One request per connection (`Connection: close`).
                    {
                        let mut line = String::new();
                        if r.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let mut parts = line.split_whitespace();
                        let (method, path) = (
                            parts.next().unwrap_or("").to_string(),
                            parts.next().unwrap_or("").to_string(),
                        );
                        let mut len = 0usize;
                        loop {
                            let mut h = String::new();
                            if r.read_line(&mut h).unwrap_or(0) == 0 {
                                return;
                            }
                            if h == "\r\n" {
                                break;
                            }
                            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:")
                            {
                                len = v.trim().parse().unwrap_or(0);
                            }
                        }
                        let mut body = vec![0; len];
                        let _ = r.read_exact(&mut body);
                        s.lock().unwrap().push(format!("{method} {path}"));
                        let Some((code, body)) = handler(&method, &path) else {
                            return; // the server "went away" for this request
                        };
                        let resp = format!(
                            "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        );
                        let _ = conn.write_all(resp.as_bytes());
                    }
                });
            }
        });
        FakeApi { url, seen }
    }

    /// A client of this server.
    pub fn client(&self) -> kube::Client {
        let config = kube::Config::new(self.url.parse().unwrap());
        kube::Client::try_from(config).unwrap()
    }
}

/// A handler refusing every request: 403 Forbidden with `message` (RBAC saying no).
pub fn forbidding(message: &'static str) -> Arc<Handler> {
    Arc::new(move |_m: &str, _p: &str| Some((403, status(403, "Forbidden", message))))
}

/// Runs `f` on a runtime of its own (a client of the fake server is made inside it).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

pub fn status(code: u16, reason: &str, message: &str) -> String {
    serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": reason, "message": message}).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::kube::wait::{self, Decision};
    use k8s_openapi::api::core::v1::PersistentVolumeClaim;
    use std::time::Duration;

    fn pvc(rv: &str, phase: &str) -> serde_json::Value {
        serde_json::json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "c", "namespace": "ns", "resourceVersion": rv},
            "spec": {"volumeName": "pv-1"}, "status": {"phase": phase}})
    }

    fn list(items: Vec<serde_json::Value>, rv: &str) -> String {
        serde_json::json!({"apiVersion": "v1", "kind": "PersistentVolumeClaimList", "metadata": {"resourceVersion": rv}, "items": items}).to_string()
    }

    fn wait_bound(api: &FakeApi, limit: Duration) -> Result<String, wait::WaitError> {
        block_on(async {
            let client = api.client();
            let pvcs: kube::Api<PersistentVolumeClaim> = kube::Api::namespaced(client, "ns");
            wait::until(
                pvcs,
                "c",
                "PVC ns/c to bind",
                limit,
                |c: Option<&PersistentVolumeClaim>| match c
                    .and_then(|c| c.status.as_ref())
                    .and_then(|s| s.phase.as_deref())
                {
                    Some("Bound") => Decision::Done("bound".to_string()),
                    _ => Decision::Wait,
                },
            )
            .await
        })
    }

    /// A watch answered with 410 Gone (its resourceVersion expired) must re-list, not fail and
    /// not wait out the timeout: the second list shows the claim Bound.
    #[test]
    fn a_410_gone_on_a_watch_relists_and_sees_the_new_state() {
        let lists = Arc::new(Mutex::new(0));
        let l = lists.clone();
        let api = FakeApi::start(Arc::new(move |_m: &str, p: &str| {
            if p.contains("watch=true") {
                let gone = serde_json::json!({"type": "ERROR", "object": serde_json::from_str::<serde_json::Value>(&status(410, "Expired", "too old resource version")).unwrap()});
                return Some((200, format!("{gone}\n")));
            }
            let mut n = l.lock().unwrap();
            *n += 1;
            let phase = if *n == 1 { "Pending" } else { "Bound" };
            Some((200, list(vec![pvc(&n.to_string(), phase)], &n.to_string())))
        }));
        let r = wait_bound(&api, Duration::from_secs(20));
        assert_eq!(r.unwrap(), "bound");
        assert!(*lists.lock().unwrap() >= 2);
    }

    /// RBAC forbidding the watch is a one-line failure at once, not a wait until the timeout.
    #[test]
    fn a_forbidden_watch_fails_at_once_naming_the_refusal() {
        let api = FakeApi::start(forbidding(
            "persistentvolumeclaims is forbidden: User \"ci\" cannot list resource",
        ));
        let start = std::time::Instant::now();
        let e = wait_bound(&api, Duration::from_secs(30)).unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(10));
        let msg = e.to_string();
        assert!(
            msg.contains("forbidden") && msg.contains("PVC ns/c"),
            "{msg}"
        );
    }

    /// The API server going away mid-wait ends the wait with a failure naming it, well before
    /// the timeout, instead of hanging.
    #[test]
    fn the_api_server_going_away_mid_wait_is_a_failure_not_a_hang() {
        let calls = Arc::new(Mutex::new(0));
        let c = calls.clone();
        let api = FakeApi::start(Arc::new(move |_m: &str, _p: &str| {
            let mut n = c.lock().unwrap();
            *n += 1;
            if *n == 1 {
                Some((200, list(vec![pvc("1", "Pending")], "1")))
            } else {
                None
            }
        }));
        let start = std::time::Instant::now();
        let e = wait_bound(&api, Duration::from_secs(60)).unwrap_err();
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{:?}",
            start.elapsed()
        );
        assert!(matches!(e, wait::WaitError::Api { .. }), "{e}");
    }
}
