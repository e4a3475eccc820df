//! A blocking CSI client over a unix socket: every call has a deadline, every request and
//! error it shows has its secrets masked, and every exchange goes into a transcript.
//!
//! pvcheck's checks are threads, not tasks: each client owns a small current-thread tokio
//! runtime and blocks on one call at a time. The connection is made lazily (as the sidecars'
//! `connection.Connect` does) and re-made after a driver restart on the same socket.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

use super::call::Call;
use super::error::CsiError;
use super::proto;

/// Replaces secret values wherever they might be shown.
#[derive(Debug, Clone, Default)]
pub struct Masker {
    values: Vec<String>,
}

/// What a masked secret looks like.
pub const MASK: &str = "***";

impl Masker {
    pub fn new(values: Vec<String>) -> Self {
        let mut values: Vec<String> = values.into_iter().filter(|v| !v.is_empty()).collect();
        // Longest first, so a secret that contains another is masked whole.
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        values.dedup();
        Masker { values }
    }
    pub fn mask(&self, s: &str) -> String {
        let mut out = s.to_string();
        for v in &self.values {
            out = out.replace(v.as_str(), MASK);
        }
        out
    }
}

/// A request whose `secrets` can be blanked before it is shown.
pub trait Shown: std::fmt::Debug + Clone {
    fn blank_secrets(&mut self) {}
    /// The request as pvcheck shows it: secrets replaced by `***`.
    fn shown(&self, masker: &Masker) -> String {
        let mut c = self.clone();
        c.blank_secrets();
        masker.mask(&format!("{c:?}"))
    }
}

macro_rules! shown_with_secrets {
    ($($t:ident),*) => {$(
        impl Shown for proto::$t {
            fn blank_secrets(&mut self) {
                for v in self.secrets.values_mut() {
                    *v = MASK.to_string();
                }
            }
        }
    )*};
}
macro_rules! shown_plain {
    ($($t:ident),*) => {$( impl Shown for proto::$t {} )*};
}
shown_with_secrets!(
    CreateVolumeRequest,
    DeleteVolumeRequest,
    ControllerPublishVolumeRequest,
    ControllerUnpublishVolumeRequest,
    NodeStageVolumeRequest,
    NodePublishVolumeRequest,
    ControllerExpandVolumeRequest,
    NodeExpandVolumeRequest,
    CreateSnapshotRequest,
    DeleteSnapshotRequest
);
shown_plain!(
    ProbeRequest,
    GetPluginInfoRequest,
    GetPluginCapabilitiesRequest,
    ControllerGetCapabilitiesRequest,
    NodeGetCapabilitiesRequest,
    NodeGetInfoRequest,
    NodeUnstageVolumeRequest,
    NodeUnpublishVolumeRequest,
    NodeGetVolumeStatsRequest
);

/// One call and how it ended, for failure details.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Exchange {
    pub call: &'static str,
    pub request: String,
    /// `OK`, `<code>: <message>` or `timeout`.
    pub outcome: String,
    pub millis: u64,
}

/// A client of one driver socket.
pub struct CsiClient {
    rt: tokio::runtime::Runtime,
    socket: PathBuf,
    channel: Mutex<Channel>,
    timeout: Duration,
    masker: Masker,
    transcript: Mutex<Vec<Exchange>>,
    /// Exchanges noted since the client was made (the transcript keeps the last ones only).
    noted: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for CsiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CsiClient")
            .field("socket", &self.socket)
            .finish()
    }
}

/// How many exchanges a transcript keeps (the last ones).
const TRANSCRIPT: usize = 64;

fn channel(rt: &tokio::runtime::Runtime, socket: &Path) -> Result<Channel, String> {
    let _guard = rt.enter();
    let path = socket.to_path_buf();
    // The authority is never used: the connector dials the socket.
    let endpoint = Endpoint::try_from("http://csi.sock").map_err(|e| e.to_string())?;
    Ok(
        endpoint.connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        })),
    )
}

impl CsiClient {
    /// A client of `socket` (nothing is dialled until the first call).
    pub fn new(socket: &Path, timeout: Duration, masker: Masker) -> Result<Self, CsiError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| CsiError::Driver(format!("cannot start the gRPC runtime: {e}")))?;
        let channel = channel(&rt, socket).map_err(|cause| CsiError::Unreachable {
            call: Call::Probe,
            socket: socket.display().to_string(),
            cause,
        })?;
        Ok(CsiClient {
            rt,
            socket: socket.to_path_buf(),
            channel: Mutex::new(channel),
            timeout,
            masker,
            transcript: Mutex::new(Vec::new()),
            noted: std::sync::atomic::AtomicU64::new(0),
        })
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub fn masker(&self) -> &Masker {
        &self.masker
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Dials again (after the driver was restarted on the same socket).
    pub fn reconnect(&self) -> Result<(), CsiError> {
        let ch = channel(&self.rt, &self.socket).map_err(|cause| CsiError::Unreachable {
            call: Call::Probe,
            socket: self.socket.display().to_string(),
            cause,
        })?;
        *self.channel.lock().unwrap_or_else(|e| e.into_inner()) = ch;
        Ok(())
    }

    /// Drops the connection (a driver's graceful stop waits for its clients to go): the
    /// channel is replaced by an undialled one and the runtime runs until the old connection's
    /// tasks have closed it.
    pub fn disconnect(&self) {
        if let Ok(ch) = channel(&self.rt, &self.socket) {
            *self.channel.lock().unwrap_or_else(|e| e.into_inner()) = ch;
        }
        self.rt
            .block_on(async { tokio::time::sleep(Duration::from_millis(20)).await });
    }

    /// The last exchanges, oldest first.
    pub fn transcript(&self) -> Vec<Exchange> {
        self.transcript
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// How many exchanges were noted so far; [`CsiClient::exchanges_since`] takes it back.
    pub fn noted(&self) -> u64 {
        let _t = self.transcript.lock().unwrap_or_else(|e| e.into_inner());
        self.noted.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The exchanges after the first `seen` (those the transcript still holds), and the count
    /// to pass next time.
    pub fn exchanges_since(&self, seen: u64) -> (Vec<Exchange>, u64) {
        let t = self.transcript.lock().unwrap_or_else(|e| e.into_inner());
        let total = self.noted.load(std::sync::atomic::Ordering::Relaxed);
        let n = (total.saturating_sub(seen) as usize).min(t.len());
        (t[t.len() - n..].to_vec(), total)
    }

    fn note(&self, call: Call, request: &str, outcome: String, start: Instant) {
        let mut t = self.transcript.lock().unwrap_or_else(|e| e.into_inner());
        self.noted
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if t.len() >= TRANSCRIPT {
            t.remove(0);
        }
        t.push(Exchange {
            call: call.rpc(),
            request: request.to_string(),
            outcome,
            millis: start.elapsed().as_millis() as u64,
        });
    }

    /// Makes one call with the client's deadline: `f` gets the channel and the request.
    pub fn call<Req, Resp, Fut>(
        &self,
        call: Call,
        req: Req,
        f: impl FnOnce(Channel, tonic::Request<Req>) -> Fut,
    ) -> Result<Resp, CsiError>
    where
        Req: Shown,
        Fut: Future<Output = Result<tonic::Response<Resp>, tonic::Status>>,
    {
        self.call_within(call, req, self.timeout, f)
    }

    /// [`CsiClient::call`] with another deadline (the driver-start probe uses a short one).
    pub fn call_within<Req, Resp, Fut>(
        &self,
        call: Call,
        req: Req,
        limit: Duration,
        f: impl FnOnce(Channel, tonic::Request<Req>) -> Fut,
    ) -> Result<Resp, CsiError>
    where
        Req: Shown,
        Fut: Future<Output = Result<tonic::Response<Resp>, tonic::Status>>,
    {
        let shown = req.shown(&self.masker);
        let mut request = tonic::Request::new(req);
        request.set_timeout(limit);
        let ch = self
            .channel
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let start = Instant::now();
        let fut = f(ch, request);
        let out = self
            .rt
            .block_on(async { tokio::time::timeout(limit, fut).await });
        match out {
            Err(_) => {
                self.note(call, &shown, "timeout".into(), start);
                Err(CsiError::Timeout {
                    call,
                    limit,
                    request: shown,
                })
            }
            Ok(Ok(resp)) => {
                self.note(call, &shown, "OK".into(), start);
                Ok(resp.into_inner())
            }
            Ok(Err(status)) => {
                let message = self.masker.mask(status.message());
                let code = format!("{:?}", status.code());
                self.note(call, &shown, format!("{code}: {message}"), start);
                // A deadline the driver's own stack enforced is still a deadline.
                // (tonic's own deadline answers Cancelled "Timeout expired").
                if matches!(
                    status.code(),
                    tonic::Code::DeadlineExceeded | tonic::Code::Cancelled
                ) && start.elapsed() + Duration::from_millis(50) >= limit
                {
                    return Err(CsiError::Timeout {
                        call,
                        limit,
                        request: shown,
                    });
                }
                // A connection that broke under a call (the driver restarted) comes back as
                // Unknown with the transport error as its source: unreachable too, not an answer.
                if matches!(
                    status.code(),
                    tonic::Code::Unavailable | tonic::Code::Unknown
                ) && is_transport(&status)
                {
                    return Err(CsiError::Unreachable {
                        call,
                        socket: self.socket.display().to_string(),
                        cause: transport_cause(&status, &message),
                    });
                }
                Err(CsiError::Status {
                    call,
                    code,
                    message,
                    request: shown,
                })
            }
        }
    }

    /// A reply that breaks the spec, as an error that shows the masked request and reply.
    pub fn violation(
        &self,
        call: Call,
        what: impl Into<String>,
        request: &impl Shown,
        reply: &impl std::fmt::Debug,
    ) -> CsiError {
        CsiError::Protocol {
            call,
            what: what.into(),
            request: request.shown(&self.masker),
            reply: self.masker.mask(&format!("{reply:?}")),
        }
    }
}

/// tonic reports a failed dial or a peer that does not speak HTTP/2 as Unavailable with the
/// transport error as its source.
fn is_transport(status: &tonic::Status) -> bool {
    use std::error::Error;
    status.source().is_some()
        || status.message().contains("transport error")
        || status.message().contains("tcp connect error")
        || status.message().contains("error trying to connect")
}

fn transport_cause(status: &tonic::Status, message: &str) -> String {
    use std::error::Error;
    let mut parts = vec![message.to_string()];
    let mut src = status.source();
    while let Some(s) = src {
        let t = s.to_string();
        if !parts.iter().any(|p| p.contains(&t)) {
            parts.push(t);
        }
        src = s.source();
    }
    parts.join(": ")
}
