//! Connecting to the API server: the kubeconfig, one tokio runtime, one client per scope.
//!
//! The platform boundary is synchronous (checks are plain threads under libtest-mimic), so the
//! platform owns one multi-threaded tokio runtime and every operation is one `block_on` of an
//! async function. Trial threads are not runtime threads, so `block_on` from several of them
//! at once is allowed and they share the runtime's two workers.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};

use super::KubeOptions;
use super::counting::{ApiCounters, CountLayer};
use crate::platform::select::SelectError;

/// How long to wait for the API server to answer at all before calling it unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection to one cluster.
pub struct Connection {
    pub rt: tokio::runtime::Runtime,
    pub config: kube::Config,
    /// Every request, counted by scope.
    pub counters: Arc<ApiCounters>,
    /// The client of the run's own calls (namespace, preflight, cleanup): scope `run`.
    pub client: Client,
    /// `v1.34.2` (for the fingerprint).
    pub server_version: String,
    /// Where the configuration came from (for messages).
    pub source: String,
}

impl Connection {
    /// A client whose requests count under `scope`.
    pub fn client_for(&self, scope: &str) -> Result<Client, kube::Error> {
        let _g = self.rt.enter();
        Ok(kube::client::ClientBuilder::try_from(self.config.clone())?
            .with_layer(&CountLayer(self.counters.scope(scope)))
            .build())
    }

    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }
}

/// The kubeconfig file to use: `--kubeconfig`, `$KUBECONFIG`, `~/.kube/config`; `None` inside a
/// pod (in-cluster configuration). A usage error when there is none.
fn kubeconfig_source(opts: &KubeOptions) -> Result<Option<PathBuf>, SelectError> {
    if let Some(p) = &opts.kubeconfig {
        if !p.is_file() {
            return Err(SelectError::Usage(format!(
                "--kubeconfig {}: no such file",
                p.display()
            )));
        }
        return Ok(Some(p.clone()));
    }
    if let Some(v) = std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty()) {
        let first = std::env::split_paths(&v).find(|p| p.is_file());
        return match first {
            Some(p) => Ok(Some(p)),
            None => Err(SelectError::Usage(format!(
                "KUBECONFIG={}: no such file",
                v.to_string_lossy()
            ))),
        };
    }
    if let Some(home) = std::env::var_os("HOME") {
        let p = PathBuf::from(home).join(".kube").join("config");
        if p.is_file() {
            return Ok(Some(p));
        }
    }
    if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
        return Ok(None);
    }
    Err(SelectError::Usage(
        "--platform kubernetes: no kubeconfig (give --kubeconfig FILE or set KUBECONFIG; ~/.kube/config does not exist, and this is not a pod)".into(),
    ))
}

/// Reads the configuration and checks that the API server answers. No kubeconfig or a broken
/// one is a usage error (exit 2); a server that does not answer is infrastructure (exit 5).
///
/// `run_id` goes into the User-Agent (`pvcheck/<version> (run <id>)`), so the API server's
/// audit log and per-client metrics tell this run's requests from everyone else's (the
/// end-to-end tests count them there and compare with pvcheck's own count).
pub fn connect(opts: &KubeOptions, run_id: Option<&str>) -> Result<Connection, SelectError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("pvcheck-kube")
        .enable_all()
        .build()
        .map_err(|e| SelectError::Infrastructure(format!("cannot start the async runtime: {e}")))?;
    let path = kubeconfig_source(opts)?;
    let source = path
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "in-cluster service account".into());
    let config = rt.block_on(async {
        let options = KubeConfigOptions {
            context: opts.context.clone(),
            ..Default::default()
        };
        match &path {
            Some(p) => {
                let kc = Kubeconfig::read_from(p)
                    .map_err(|e| SelectError::Usage(format!("kubeconfig {}: {e}", p.display())))?;
                kube::Config::from_custom_kubeconfig(kc, &options)
                    .await
                    .map_err(|e| SelectError::Usage(format!("kubeconfig {}: {e}", p.display())))
            }
            None => kube::Config::incluster()
                .map_err(|e| SelectError::Usage(format!("in-cluster configuration: {e}"))),
        }
    })?;
    let mut config = config;
    config.connect_timeout = Some(CONNECT_TIMEOUT);
    let agent = match run_id {
        Some(id) => format!("pvcheck/{} (run {id})", env!("CARGO_PKG_VERSION")),
        None => format!("pvcheck/{}", env!("CARGO_PKG_VERSION")),
    };
    if let Ok(v) = http::HeaderValue::from_str(&agent) {
        config.headers.push((http::header::USER_AGENT, v));
    }
    let counters = Arc::new(ApiCounters::default());
    let mut conn = Connection {
        client: {
            let _g = rt.enter();
            kube::client::ClientBuilder::try_from(config.clone())
                .map_err(|e| SelectError::Usage(format!("kubeconfig {source}: {e}")))?
                .with_layer(&CountLayer(counters.scope("run")))
                .build()
        },
        rt,
        config,
        counters,
        server_version: String::new(),
        source,
    };
    let url = conn.config.cluster_url.to_string();
    let version = conn.block_on(async {
        tokio::time::timeout(CONNECT_TIMEOUT * 2, conn.client.apiserver_version()).await
    });
    conn.server_version = match version {
        Ok(Ok(v)) => v.git_version,
        Ok(Err(e)) => {
            return Err(SelectError::Infrastructure(format!(
                "the API server {url} (from {}) cannot be reached: {}",
                conn.source,
                one_line(&e.to_string())
            )));
        }
        Err(_) => {
            return Err(SelectError::Infrastructure(format!(
                "the API server {url} (from {}) did not answer within {}s",
                conn.source,
                (CONNECT_TIMEOUT * 2).as_secs()
            )));
        }
    };
    Ok(conn)
}

/// A message on one line.
pub fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}
