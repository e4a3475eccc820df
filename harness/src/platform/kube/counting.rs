//! Counting the API requests pvcheck makes, per check: a tower layer under each volume's client.
//!
//! Every volume gets its own client whose requests are counted under the volume's name
//! (`<class>-<check>`), so the count per check is exact (watch reconnects and log streams
//! included) and is printed at the end of a run. Waiting is done with watches, so a count must
//! not grow with how long a wait lasts: a benchmark prints these figures to show it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

/// Requests of one scope (a check's volume, or the run's own calls), by verb.
#[derive(Debug, Default)]
pub struct ApiCounter {
    total: AtomicU64,
    by_verb: Mutex<BTreeMap<&'static str, u64>>,
}

impl ApiCounter {
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// `{"total": N, "get": …, "watch": …}`.
    pub fn summary(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        m.insert("total".into(), self.total().into());
        for (k, v) in self
            .by_verb
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            m.insert((*k).into(), (*v).into());
        }
        serde_json::Value::Object(m)
    }

    fn count<B>(&self, req: &http::Request<B>) {
        self.total.fetch_add(1, Ordering::Relaxed);
        let verb = verb_of(req.method(), req.uri());
        *self
            .by_verb
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(verb)
            .or_default() += 1;
    }
}

/// The Kubernetes verb of a request (`watch` and `list` told apart by the query).
fn verb_of(method: &http::Method, uri: &http::Uri) -> &'static str {
    let q = uri.query().unwrap_or("");
    let path = uri.path();
    match *method {
        http::Method::GET if q.split('&').any(|p| p == "watch=true" || p == "watch=1") => "watch",
        http::Method::GET if path.ends_with("/log") => "log",
        http::Method::GET => "get",
        http::Method::POST => "create",
        http::Method::PUT => "update",
        http::Method::PATCH => "patch",
        http::Method::DELETE => "delete",
        _ => "other",
    }
}

/// Every counter of a run, by scope name.
#[derive(Debug, Default)]
pub struct ApiCounters {
    scopes: Mutex<BTreeMap<String, Arc<ApiCounter>>>,
}

impl ApiCounters {
    /// The counter of `scope`, created on first use.
    pub fn scope(&self, scope: &str) -> Arc<ApiCounter> {
        self.scopes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(scope.to_string())
            .or_default()
            .clone()
    }

    /// `{scope: {"total": N, verb: N…}}`, and the sum of all totals.
    pub fn report(&self) -> (serde_json::Value, u64) {
        let scopes = self.scopes.lock().unwrap_or_else(|e| e.into_inner());
        let mut m = serde_json::Map::new();
        let mut sum = 0;
        for (k, c) in scopes.iter() {
            sum += c.total();
            m.insert(k.clone(), c.summary());
        }
        (serde_json::Value::Object(m), sum)
    }
}

/// The tower layer: counts every request the client below sends.
#[derive(Clone)]
pub struct CountLayer(pub Arc<ApiCounter>);

impl<S> tower::Layer<S> for CountLayer {
    type Service = Counted<S>;
    fn layer(&self, inner: S) -> Counted<S> {
        Counted {
            inner,
            counter: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Counted<S> {
    inner: S,
    counter: Arc<ApiCounter>,
}

impl<S, B> tower::Service<http::Request<B>> for Counted<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        self.counter.count(&req);
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watches_lists_and_logs_are_told_apart() {
        let u = |s: &str| s.parse::<http::Uri>().unwrap();
        assert_eq!(
            verb_of(
                &http::Method::GET,
                &u("/api/v1/namespaces/a/pods?watch=true&fieldSelector=x")
            ),
            "watch"
        );
        assert_eq!(
            verb_of(&http::Method::GET, &u("/api/v1/namespaces/a/pods")),
            "get"
        );
        assert_eq!(
            verb_of(&http::Method::GET, &u("/api/v1/namespaces/a/pods/p/log")),
            "log"
        );
        assert_eq!(
            verb_of(&http::Method::DELETE, &u("/api/v1/namespaces/a/pods/p")),
            "delete"
        );
    }
}
