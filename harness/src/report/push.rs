//! `--push-metrics URL`: the figures of [`super::prometheus`] pushed to a Prometheus
//! Pushgateway, for the nightly CronJob, whose pod is gone before any scrape.
//!
//! One group per class: `PUT URL/metrics/job/pvcheck/class/<class>` with
//! [`super::prometheus::render_class`]'s text. A PUT replaces its whole group, so a group per
//! class keeps the figures of a class that did not run tonight (its
//! `pvcheck_run_timestamp_seconds` then ages, and the dashboard turns it red) instead of
//! erasing them; one group for the whole run would make a class vanish from the dashboard on
//! the first night it was left out. A class name that is not `[A-Za-z0-9._-]+` goes in the
//! path base64url-encoded (`class@base64/…`), as the Pushgateway reads it.
//!
//! A failed push (no connection, a status other than 2xx, no answer within [`TIMEOUT`]) is one
//! line, and the pushes stop there; it never changes the exit code, which is the storage's
//! verdict (docs/deploy.md).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};

use super::outputs::ReportInput;

/// The longest a push may take (connection, request and answer, for every class together).
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// A checked `--push-metrics` URL: `http://` or `https://`, a host, no query or fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushTarget {
    /// Without a trailing `/`; `/metrics/job/…` is appended.
    base: String,
}

impl PushTarget {
    pub fn parse(s: &str) -> Result<PushTarget, String> {
        let uri: http::Uri = s
            .parse()
            .map_err(|e| format!("--push-metrics: not a URL: {s:?} ({e})"))?;
        match uri.scheme_str() {
            Some("http" | "https") => {}
            _ => {
                return Err(format!(
                    "--push-metrics: {s:?} is not an http:// or https:// URL (the Pushgateway's, e.g. http://pushgateway.monitoring:9091)"
                ));
            }
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err(format!("--push-metrics: {s:?} names no host"));
        }
        let hostport = uri
            .authority()
            .map(|a| a.as_str().rsplit('@').next().unwrap_or(""))
            .unwrap_or("");
        if !hostport.ends_with(']')
            && let Some((_, port)) = hostport.rsplit_once(':')
            && port.parse::<u16>().is_err()
        {
            return Err(format!(
                "--push-metrics: {s:?} has a port that is not a number from 0 to 65535"
            ));
        }
        if uri.query().is_some() || s.contains('#') {
            return Err(format!(
                "--push-metrics: {s:?} has a query or fragment; give the Pushgateway's base URL"
            ));
        }
        if s.contains("/metrics/job/") {
            return Err(format!(
                "--push-metrics: {s:?} already has /metrics/job/…; give the Pushgateway's base URL (pvcheck adds /metrics/job/pvcheck/class/<class>)"
            ));
        }
        Ok(PushTarget {
            base: s.trim_end_matches('/').to_string(),
        })
    }

    /// The group URL of one class.
    pub fn group_url(&self, class: &str) -> String {
        let plain = !class.is_empty()
            && class
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if plain {
            format!("{}/metrics/job/pvcheck/class/{class}", self.base)
        } else {
            format!(
                "{}/metrics/job/pvcheck/class@base64/{}",
                self.base,
                base64url(class.as_bytes())
            )
        }
    }
}

/// Base64 with the URL-safe alphabet and padding (the Pushgateway accepts both).
fn base64url(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Pushes every class of the run; `Err` is the one line to print.
pub fn push(target: &PushTarget, input: &ReportInput) -> Result<usize, String> {
    let groups: Vec<(String, String)> = super::prometheus::classes(input.run)
        .into_iter()
        .map(|c| {
            (
                target.group_url(&c),
                super::prometheus::render_class(input, &c),
            )
        })
        .collect();
    if groups.is_empty() {
        return Ok(0);
    }
    // A thread of its own: a runtime cannot be started inside another's context, and the
    // caller may be in one.
    std::thread::scope(|s| {
        s.spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("--push-metrics: no async runtime: {e}"))?;
            rt.block_on(async {
                match tokio::time::timeout(TIMEOUT, put_all(&groups)).await {
                    Ok(r) => r,
                    Err(_) => Err(format!(
                        "--push-metrics: metrics NOT pushed to {}: no answer within {} s",
                        groups[0].0,
                        TIMEOUT.as_secs()
                    )),
                }
            })
        })
        .join()
        .unwrap_or_else(|_| Err("--push-metrics: the push thread failed".into()))
    })
}

async fn put_all(groups: &[(String, String)]) -> Result<usize, String> {
    use hyper_util::client::legacy::{Client, connect::HttpConnector};
    use hyper_util::rt::TokioExecutor;
    // Plain http needs no certificates (the runner image has none); https takes the system's
    // roots, or SSL_CERT_FILE's.
    if !groups[0].0.starts_with("https:") {
        let client: Client<_, Full<Bytes>> =
            Client::builder(TokioExecutor::new()).build(HttpConnector::new());
        return put_with(&client, groups).await;
    }
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()
        .map_err(|e| {
            format!(
                "--push-metrics: metrics NOT pushed to {}: no TLS root certificates ({e}; set SSL_CERT_FILE to a CA bundle)",
                groups[0].0
            )
        })?
        .https_only()
        .enable_http1()
        .build();
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(https);
    put_with(&client, groups).await
}

async fn put_with<C>(
    client: &hyper_util::client::legacy::Client<C, Full<Bytes>>,
    groups: &[(String, String)],
) -> Result<usize, String>
where
    C: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
{
    for (i, (url, body)) in groups.iter().enumerate() {
        let not_pushed = |why: String| {
            let left = groups.len() - i;
            format!(
                "--push-metrics: metrics NOT pushed to {url}: {why}{}",
                if left > 1 {
                    format!(" ({left} of {} classes not pushed)", groups.len())
                } else {
                    String::new()
                }
            )
        };
        let req = http::Request::put(url.as_str())
            .header(http::header::CONTENT_TYPE, CONTENT_TYPE)
            .body(Full::new(Bytes::from(body.clone())))
            .map_err(|e| not_pushed(e.to_string()))?;
        let resp = client
            .request(req)
            .await
            .map_err(|e| not_pushed(error_chain(&e)))?;
        let status = resp.status();
        if !status.is_success() {
            let text = match resp.into_body().collect().await {
                Ok(b) => String::from_utf8_lossy(&b.to_bytes()).into_owned(),
                Err(_) => String::new(),
            };
            let first = text.lines().next().unwrap_or("").trim();
            let first: String = first.chars().take(200).collect();
            return Err(not_pushed(if first.is_empty() {
                format!("HTTP {status}")
            } else {
                format!("HTTP {status}: {first}")
            }));
        }
    }
    Ok(groups.len())
}

/// An error with its causes on one line ("client error (Connect): tcp connect error:
/// Connection refused (os error 111)").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = c.source();
    }
    s.replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_push_url_must_be_an_http_or_https_base_url() {
        for bad in [
            "",
            "pushgateway:9091",
            "ftp://pg:9091",
            "http://",
            "http://pg:9091/?x=1",
            "http://pg:9091/metrics/job/x",
            "http://pg:notaport",
        ] {
            let e = PushTarget::parse(bad).expect_err(bad);
            assert!(e.starts_with("--push-metrics: "), "{e}");
            assert!(!e.contains('\n'), "{e}");
        }
        let t = PushTarget::parse("https://pg.monitoring:9091/prefix/").unwrap();
        assert_eq!(
            t.group_url("fast-ssd"),
            "https://pg.monitoring:9091/prefix/metrics/job/pvcheck/class/fast-ssd"
        );
    }

    #[test]
    fn a_class_name_unsafe_in_a_path_is_base64url_encoded() {
        let t = PushTarget::parse("http://pg:9091").unwrap();
        assert_eq!(
            t.group_url("a/b"),
            "http://pg:9091/metrics/job/pvcheck/class@base64/YS9i"
        );
        assert_eq!(base64url(b"?>?"), "Pz4_");
        assert_eq!(base64url(b"ab"), "YWI=");
        assert_eq!(base64url(b"a"), "YQ==");
    }

    /// https to something that does not speak TLS: one line naming the group URL, no panic.
    #[test]
    fn an_https_push_to_a_server_without_tls_is_one_line_naming_the_url() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            use std::io::Write as _;
            for c in l.incoming().flatten() {
                let _ = (&c).write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
            }
        });
        let run = crate::compare::synthetic::run(&crate::compare::synthetic::Spec::new(
            "push0001", 1, 1, 2,
        ));
        let run = crate::compare::RunDoc::from_value(std::path::Path::new("r.json"), run).unwrap();
        let input = ReportInput {
            run: &run,
            comparison: None,
            refused: None,
            allow_inconclusive: false,
            results: std::path::Path::new("/nonexistent"),
        };
        let t = PushTarget::parse(&format!("https://{addr}")).unwrap();
        let e = push(&t, &input).unwrap_err();
        assert!(
            e.starts_with(&format!(
                "--push-metrics: metrics NOT pushed to https://{addr}/metrics/job/pvcheck/class/class-0: "
            )) && !e.contains('\n'),
            "{e}"
        );
    }
}
