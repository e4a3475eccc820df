//! `--push-metrics URL` against an in-process fake Pushgateway: a real small local run (one
//! speed workload of a `dir` class in memory) pushes its class's group with PUT in the text
//! format; `compare` pushes the judged run; a refused connection and an HTTP 500 are one
//! warning line each and leave the exit code as the verdict made it; a bad URL exits 2 before
//! anything runs.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

/// The tests measure speed: they must not run at the same time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// One request the fake Pushgateway received.
#[derive(Debug, Clone)]
struct Received {
    method: String,
    path: String,
    content_type: String,
    body: String,
}

/// A Pushgateway stand-in on 127.0.0.1: records each request and answers `status`.
struct FakeGateway {
    url: String,
    got: Arc<Mutex<Vec<Received>>>,
}

impl FakeGateway {
    fn start(status: u16) -> FakeGateway {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = got.clone();
        std::thread::spawn(move || {
            for conn in l.incoming().flatten() {
                if let Some(r) = read_request(&conn) {
                    g.lock().unwrap().push(r);
                }
                let reason = if status == 200 {
                    "OK"
                } else {
                    "Internal Server Error"
                };
                let body = if status == 200 {
                    ""
                } else {
                    "pushed metrics are invalid or inconsistent\n"
                };
                let _ = (&conn).write_all(
                    format!(
                        "HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                );
            }
        });
        FakeGateway { url, got }
    }

    fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }
}

fn read_request(conn: &TcpStream) -> Option<Received> {
    let mut r = BufReader::new(conn);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_string(), parts.next()?.to_string());
    let (mut len, mut content_type) = (0usize, String::new());
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        match k.to_ascii_lowercase().as_str() {
            "content-length" => len = v.trim().parse().ok()?,
            "content-type" => content_type = v.trim().to_string(),
            _ => {}
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    Some(Received {
        method,
        path,
        content_type,
        body: String::from_utf8(body).ok()?,
    })
}

/// A URL nothing listens on: a port bound and released.
fn refused_url() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    drop(l);
    url
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The lines of stderr that speak of the push.
fn push_lines(o: &Output) -> Vec<String> {
    String::from_utf8_lossy(&o.stderr)
        .lines()
        .filter(|l| l.contains("push-metrics"))
        .map(str::to_string)
        .collect()
}

/// A `dir` class named `push-dir` on memory, and the places a run keeps its files.
struct Setup {
    _d: tempfile::TempDir,
    _shm: tempfile::TempDir,
    classes: PathBuf,
    results: PathBuf,
    state: PathBuf,
}

fn setup() -> Setup {
    let d = tempfile::tempdir().unwrap();
    let shm = tempfile::Builder::new()
        .prefix("pvcheck-test-push-")
        .tempdir_in(if Path::new("/dev/shm").is_dir() {
            "/dev/shm"
        } else {
            "/tmp"
        })
        .unwrap();
    let classes = d.path().join("classes.yaml");
    std::fs::write(
        &classes,
        format!(
            "classes:\n  - name: push-dir\n    local:\n      dir: {}\n    thresholds: {{ max_cv: 10000%, max_cpu_wait: 100%, min_qd: 1% }}\n",
            shm.path().display()
        ),
    )
    .unwrap();
    Setup {
        results: d.path().join("results"),
        state: d.path().join("state"),
        classes,
        _d: d,
        _shm: shm,
    }
}

/// `pvcheck run` of one speed workload of `push-dir`, two repetitions, and `args`.
fn run(s: &Setup, args: &[&str]) -> Output {
    Command::new(common::PVCHECK)
        .args(["run", "--classes", s.classes.to_str().unwrap()])
        .args(["--results", s.results.to_str().unwrap()])
        .args(["--state-dir", s.state.to_str().unwrap()])
        .args(["--repeat", "2", "--test-threads", "1"])
        .args(["--exact", "push-dir::speed::randread-4k-qd1"])
        .args(args)
        .env_remove("PVCHECK_STATE_DIR")
        .output()
        .unwrap()
}

/// The run files written so far.
fn run_files(s: &Setup) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(s.results.join("runs"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.retain(|p| p.extension().is_some_and(|x| x == "json"));
    v.sort();
    v
}

/// The text exposition format, read strictly: every sample's family declared by `# TYPE`
/// before it, every sample `name{labels} value` or `name value` with a number. Returns
/// (family names, samples as (name, labels, value)).
#[allow(clippy::type_complexity)]
fn parse_exposition(body: &str) -> (Vec<String>, Vec<(String, String, f64)>) {
    let (mut families, mut samples) = (Vec::new(), Vec::new());
    for l in body.lines() {
        if let Some(rest) = l.strip_prefix("# TYPE ") {
            let mut p = rest.split(' ');
            let name = p.next().unwrap().to_string();
            assert_eq!(p.next(), Some("gauge"), "{l}");
            families.push(name);
            continue;
        }
        if l.starts_with("# HELP ") || l.is_empty() {
            continue;
        }
        assert!(!l.starts_with('#'), "unexpected comment: {l}");
        let (series, value) = l.rsplit_once(' ').unwrap_or_else(|| panic!("{l}"));
        let value: f64 = match value {
            "NaN" => f64::NAN,
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("not a number: {l}")),
        };
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => {
                let labels = rest.strip_suffix('}').unwrap_or_else(|| panic!("{l}"));
                for pair in labels.split("\",").filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once('=').unwrap_or_else(|| panic!("{l}"));
                    assert!(
                        k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                        "{l}"
                    );
                    assert!(v.starts_with('"'), "{l}");
                }
                (n.to_string(), labels.to_string())
            }
            None => (series.to_string(), String::new()),
        };
        assert!(
            families.contains(&name),
            "sample before its # TYPE: {l}\n{body}"
        );
        samples.push((name, labels, value));
    }
    (families, samples)
}

/// The verdict line (the last but one on stderr) says the push failed: a nightly that could
/// not report is visible in its own verdict, while the exit code stays the storage's.
fn assert_verdict_line_says_not_pushed(o: &Output) {
    let err = String::from_utf8_lossy(&o.stderr);
    let lines: Vec<&str> = err.lines().collect();
    let verdict = lines[lines.len().saturating_sub(2)];
    assert!(
        verdict.starts_with("pvcheck: PASSED: ")
            && verdict.contains("the Pushgateway did NOT get the metrics")
            && verdict.contains("exit 0"),
        "{err}"
    );
}

#[test]
fn a_run_puts_its_class_group_in_the_text_format_with_verdict_timestamp_iops_and_latency() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let s = setup();
    let gw = FakeGateway::start(200);
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let o = run(&s, &["--push-metrics", &format!("{}/", gw.url)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(push_lines(&o).is_empty(), "{}", text(&o));
    assert!(!text(&o).contains("Pushgateway did NOT"), "{}", text(&o));
    let got = gw.received();
    assert_eq!(got.len(), 1, "one class, one group: {got:?}");
    let r = &got[0];
    assert_eq!(r.method, "PUT");
    assert_eq!(r.path, "/metrics/job/pvcheck/class/push-dir");
    assert_eq!(r.content_type, "text/plain; version=0.0.4");
    let (families, samples) = parse_exposition(&r.body);
    for f in [
        "pvcheck_run_info",
        "pvcheck_run_timestamp_seconds",
        "pvcheck_class_verdict",
        "pvcheck_trial_status",
        "pvcheck_speed_iops",
        "pvcheck_speed_latency_seconds",
        "pvcheck_speed_repetitions",
    ] {
        assert!(families.iter().any(|x| x == f), "no {f} in\n{}", r.body);
    }
    assert!(
        !r.body.contains("class=\""),
        "the grouping key carries the class: {}",
        r.body
    );
    let value = |name: &str, labels: &str| {
        samples
            .iter()
            .find(|(n, l, _)| n == name && l == labels)
            .map(|x| x.2)
            .unwrap_or_else(|| panic!("no {name}{{{labels}}} in\n{}", r.body))
    };
    assert_eq!(value("pvcheck_class_verdict", ""), 0.0);
    let ts = value("pvcheck_run_timestamp_seconds", "");
    assert!(ts >= before.floor() - 1.0 && ts < before + 600.0, "{ts}");
    assert!(value("pvcheck_speed_iops", "workload=\"randread-4k-qd1\"") > 0.0);
    for q in ["0.5", "0.99"] {
        let lat = value(
            "pvcheck_speed_latency_seconds",
            &format!("workload=\"randread-4k-qd1\",quantile=\"{q}\""),
        );
        assert!(lat > 0.0 && lat < 10.0, "p{q} {lat} s");
    }
    assert_eq!(
        value(
            "pvcheck_trial_status",
            "check=\"speed::randread-4k-qd1\",status=\"passed\""
        ),
        1.0
    );

    // `compare` pushes the judged run, with the gate's families; against a gateway that
    // answers 500 it warns once and exits as it does without a push.
    // A second night (not pushed) to compare the first with: a run compared with itself is
    // refused before any report.
    let o = run(&s, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let f = run_files(&s);
    assert_eq!(f.len(), 2);
    let (a, b) = (f[0].to_str().unwrap(), f[1].to_str().unwrap());
    let results = s.results.to_str().unwrap();
    let compare = |extra: &[&str]| {
        Command::new(common::PVCHECK)
            .args(["compare", a, b, "--results", results])
            .args(extra)
            .output()
            .unwrap()
    };
    let plain = compare(&[]);
    let gw2 = FakeGateway::start(200);
    let pushed = compare(&["--push-metrics", &gw2.url]);
    assert_eq!(
        pushed.status.code(),
        plain.status.code(),
        "{}",
        text(&pushed)
    );
    let got = gw2.received();
    assert_eq!(got.len(), 1, "{got:?}");
    let (families, _) = parse_exposition(&got[0].body);
    for f in [
        "pvcheck_class_verdict",
        "pvcheck_gate_outcome",
        "pvcheck_gate_verdict",
    ] {
        assert!(
            families.iter().any(|x| x == f),
            "no {f} in\n{}",
            got[0].body
        );
    }
    let failing = FakeGateway::start(500);
    let o = compare(&["--push-metrics", &failing.url]);
    assert_eq!(o.status.code(), plain.status.code(), "{}", text(&o));
    let lines = push_lines(&o);
    assert_eq!(lines.len(), 1, "{}", text(&o));
    assert!(lines[0].contains("500"), "{}", lines[0]);
}

#[test]
fn a_refused_connection_is_one_warning_line_and_the_run_exits_as_its_verdict() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let s = setup();
    let url = refused_url();
    let o = run(&s, &["--push-metrics", &url]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let lines = push_lines(&o);
    assert_eq!(lines.len(), 1, "{}", text(&o));
    let l = &lines[0];
    assert!(
        l.contains(&format!("{url}/metrics/job/pvcheck/class/push-dir"))
            && l.contains("NOT pushed")
            && l.to_lowercase().contains("refused"),
        "{l}"
    );
    assert_eq!(run_files(&s).len(), 1, "the run itself was kept");
    assert_verdict_line_says_not_pushed(&o);
}

#[test]
fn an_http_500_is_one_warning_line_naming_the_status_and_the_run_exits_as_its_verdict() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let s = setup();
    let gw = FakeGateway::start(500);
    let o = run(&s, &["--push-metrics", &gw.url]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let lines = push_lines(&o);
    assert_eq!(lines.len(), 1, "{}", text(&o));
    assert!(
        lines[0].contains(&gw.url)
            && lines[0].contains("HTTP 500")
            && lines[0].contains("inconsistent"),
        "{}",
        lines[0]
    );
    assert_eq!(gw.received().len(), 1, "the PUT was made");
    assert_verdict_line_says_not_pushed(&o);
}

/// A Pushgateway that accepts the connection and never answers: the push gives up after 30 s
/// with one line, and `compare` exits as it does without a push (no hang).
#[test]
fn a_gateway_that_never_answers_is_given_up_after_30_s_with_one_line() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let s = setup();
    for _ in 0..2 {
        let o = run(&s, &[]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    }
    let f = run_files(&s);
    let (a, b) = (f[0].to_str().unwrap(), f[1].to_str().unwrap());
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    // Accepted by the kernel's backlog, never read or answered.
    let compare = |extra: &[&str]| {
        Command::new(common::PVCHECK)
            .args(["compare", a, b, "--results", s.results.to_str().unwrap()])
            .args(extra)
            .output()
            .unwrap()
    };
    let plain = compare(&[]);
    let started = std::time::Instant::now();
    let o = compare(&["--push-metrics", &url]);
    let took = started.elapsed();
    assert_eq!(o.status.code(), plain.status.code(), "{}", text(&o));
    assert!(
        took >= std::time::Duration::from_secs(29) && took < std::time::Duration::from_secs(60),
        "{took:?}"
    );
    let lines = push_lines(&o);
    assert_eq!(lines.len(), 1, "{}", text(&o));
    assert!(
        lines[0].contains(&url) && lines[0].contains("no answer within 30 s"),
        "{}",
        lines[0]
    );
    drop(silent);
}

#[test]
fn a_bad_push_url_exits_2_with_one_line_before_anything_runs() {
    let s = setup();
    for bad in ["pushgateway:9091", "ftp://pg:9091", "http://pg:9091/?job=x"] {
        let o = run(&s, &["--push-metrics", bad]);
        assert_eq!(o.status.code(), Some(2), "{bad}: {}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(err.lines().count(), 1, "{bad}: {err}");
        assert!(err.starts_with("pvcheck: --push-metrics: "), "{err}");
        assert!(run_files(&s).is_empty(), "{bad}: nothing ran");
        let o = Command::new(common::PVCHECK)
            .args(["compare", "a.json", "b.json", "--push-metrics", bad])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{bad}: {}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(err.lines().count(), 1, "{bad}: {err}");
        assert!(err.starts_with("pvcheck: --push-metrics: "), "{err}");
    }
    assert!(!s.state.join("runs").exists() || run_files(&s).is_empty());
}
