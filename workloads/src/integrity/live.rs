//! `live-stream`: the durability stream that keeps going through a driver's upgrade or crash,
//! and watches the mount meanwhile.
//!
//! A writer appends records to `<dir>/pvcheck-durability.log` (the durability log's format, so
//! `verify --acks` checks it), fsyncs each batch and prints `{"record":N}` only after the fsync
//! covering N returned. Where the durability stream stops at the first error, this one records
//! the error (`{"event":"error",…}` with the errno's name), waits a second, reopens the log and
//! tries the same batch again, until it is killed or `--duration` ends. A prober looks at the
//! mount every `--probe-every`: stat of the directory and the log, a read-back of a random
//! acknowledged record (which must be exactly that record), and `/proc/self/mountinfo` for the
//! mount turning read-only or changing device. A watchdog reports an operation still running
//! after 30 s (`stall`) and after 120 s (`hang`); a finished operation that took over a second
//! is reported as `slow` with its duration.
//!
//! stdout: the acks header, `{"record":N}` lines, and `{"event":…}` lines (times in Unix
//! milliseconds). The harness keeps the header and the record lines as the acks stream for
//! `verify --acks`, and reads the events.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::RngExt;
use serde_json::{Value, json};

use super::block;
use super::durability::{ACKS_FORMAT, ACKS_VERSION, AcksHeader, LOG_NAME, record_id};
use super::error::Error;
use super::io::{self, AlignedBuf};

/// An operation running longer than this is a stall.
pub const STALL: Duration = Duration::from_secs(30);
/// An operation running longer than this is a hang.
pub const HANG: Duration = Duration::from_secs(120);
/// A finished operation longer than this is reported (`slow`).
pub const SLOW: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct LiveParams {
    pub dir: PathBuf,
    /// Create `dir` first (one level).
    pub mkdir: bool,
    pub seed: u64,
    pub volume_id: u64,
    pub block_size: u64,
    pub batch: u64,
    /// Pause between batches.
    pub interval: Duration,
    pub probe_every: Duration,
    pub duration: Duration,
}

/// Unix time in milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Lines to stdout, whole, from any thread.
#[derive(Clone)]
struct Out(Arc<Mutex<Box<dyn Write + Send>>>);

impl Out {
    fn line(&self, text: &str) {
        let mut o = self.0.lock().unwrap_or_else(|e| e.into_inner());
        // A closed stdout (the harness is gone) ends nothing here: the kill will.
        let _ = o.write_all(text.as_bytes());
        let _ = o.flush();
    }
    fn event(&self, v: Value) {
        self.line(&format!("{}\n", json!({ "event": v })));
    }
}

/// What a thread is doing: the start of its running operation (Unix ms, 0 idle) and its name.
struct Busy {
    since: AtomicU64,
    what: Mutex<&'static str>,
    /// The stall/hang already reported for the running operation (0 none, 1 stall, 2 hang).
    reported: AtomicU64,
}

impl Busy {
    fn new() -> Self {
        Busy {
            since: AtomicU64::new(0),
            what: Mutex::new(""),
            reported: AtomicU64::new(0),
        }
    }
    fn begin(&self, what: &'static str) {
        *self.what.lock().unwrap_or_else(|e| e.into_inner()) = what;
        self.reported.store(0, Ordering::SeqCst);
        self.since.store(now_ms(), Ordering::SeqCst);
    }
    /// Ends the operation; reports it when it was slow.
    fn end(&self, out: &Out) {
        let since = self.since.swap(0, Ordering::SeqCst);
        let ms = now_ms().saturating_sub(since);
        if since > 0 && ms > SLOW.as_millis() as u64 {
            let what = *self.what.lock().unwrap_or_else(|e| e.into_inner());
            out.event(json!({"kind": "slow", "op": what, "at_ms": since, "ms": ms}));
        }
    }
}

fn error_event(out: &Out, op: &str, e: &std::io::Error, record: Option<u64>) {
    out.event(json!({
        "kind": "error",
        "op": op,
        "errno": io::errno_name(e),
        "message": e.to_string(),
        "at_ms": now_ms(),
        "record": record,
    }));
}

/// Runs the stream until `duration` ends (normally the harness kills it first).
pub fn run(p: &LiveParams, out: Box<dyn Write + Send>) -> Result<(), Error> {
    super::durability::check_stream(p.block_size, p.batch)?;
    if p.mkdir {
        match std::fs::create_dir(&p.dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io(&p.dir, "create directory", e)),
        }
    }
    let md = std::fs::metadata(&p.dir).map_err(|e| Error::io(&p.dir, "stat", e))?;
    if !md.is_dir() {
        return Err(Error::target(&p.dir, "--dir is not a directory"));
    }
    let path = p.dir.join(LOG_NAME);
    let f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                Error::target(
                    &path,
                    "already exists: live-stream starts a new log (use another --dir)",
                )
            } else {
                Error::io(&path, "create", e)
            }
        })?;
    File::open(&p.dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(&p.dir, "fsync directory", e))?;
    let out = Out(Arc::new(Mutex::new(out)));
    let header = AcksHeader {
        format: ACKS_FORMAT.into(),
        version: ACKS_VERSION,
        volume_id: p.volume_id,
        seed: p.seed,
        block_size: p.block_size,
        log: LOG_NAME.into(),
    };
    out.line(&format!(
        "{}\n",
        serde_json::to_string(&header).expect("header serialises")
    ));
    out.event(json!({"kind": "start", "at_ms": now_ms(), "mount": mount_of(&p.dir)}));

    let acked = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let writer_busy = Arc::new(Busy::new());
    let prober_busy = Arc::new(Busy::new());

    let watchdog = {
        let (out, done) = (out.clone(), done.clone());
        let busy = [
            ("writer", writer_busy.clone()),
            ("prober", prober_busy.clone()),
        ];
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(250));
                for (who, b) in &busy {
                    let since = b.since.load(Ordering::SeqCst);
                    if since == 0 {
                        continue;
                    }
                    let ms = now_ms().saturating_sub(since);
                    let level = if ms > HANG.as_millis() as u64 {
                        2
                    } else if ms > STALL.as_millis() as u64 {
                        1
                    } else {
                        0
                    };
                    if level > b.reported.load(Ordering::SeqCst) {
                        b.reported.store(level, Ordering::SeqCst);
                        let what = *b.what.lock().unwrap_or_else(|e| e.into_inner());
                        out.event(json!({
                            "kind": if level == 2 { "hang" } else { "stall" },
                            "thread": who,
                            "op": what,
                            "since_ms": since,
                            "at_ms": now_ms(),
                        }));
                    }
                }
            }
        })
    };

    let prober = {
        let (out, done, acked, busy) = (out.clone(), done.clone(), acked.clone(), prober_busy);
        let p = p.clone();
        std::thread::spawn(move || probe_loop(&p, &out, &done, &acked, &busy))
    };

    write_loop(p, f, &path, &out, &acked, &writer_busy);
    done.store(true, Ordering::SeqCst);
    let _ = prober.join();
    let _ = watchdog.join();
    out.event(json!({"kind": "end", "at_ms": now_ms(), "records": acked.load(Ordering::SeqCst)}));
    Ok(())
}

fn write_loop(p: &LiveParams, mut f: File, path: &Path, out: &Out, acked: &AtomicU64, busy: &Busy) {
    let start = Instant::now();
    let bs = p.block_size as usize;
    let mut buf = AlignedBuf::new(bs * p.batch as usize);
    let mut next = 0u64;
    let mut failing = false;
    let mut full = false;
    while start.elapsed() < p.duration {
        let n = p.batch.min(room_for(&p.dir, p.block_size));
        if n == 0 {
            if !full {
                full = true;
                out.event(json!({"kind": "full", "at_ms": now_ms(), "records": next}));
            }
            std::thread::sleep(p.interval.max(Duration::from_millis(100)));
            continue;
        }
        let bytes = &mut buf[..bs * n as usize];
        block::encode_run(bytes, bs, |k| {
            record_id(p.volume_id, p.seed, p.block_size, next + k as u64)
        });
        busy.begin("write");
        let mut r = f
            .write_all_at_compat(bytes, next * p.block_size)
            .map_err(|e| ("write", e));
        if r.is_ok() {
            busy.end(out);
            busy.begin("fsync");
            r = f.sync_all().map_err(|e| ("fsync", e));
        }
        busy.end(out);
        match r {
            Ok(()) => {
                let mut lines = String::with_capacity(24 * n as usize);
                for k in 0..n {
                    lines.push_str(&format!("{{\"record\":{}}}\n", next + k));
                }
                out.line(&lines);
                next += n;
                acked.store(next, Ordering::SeqCst);
                if failing {
                    failing = false;
                    out.event(json!({"kind": "recovered", "op": "write", "at_ms": now_ms(), "record": next}));
                }
                std::thread::sleep(p.interval);
            }
            Err((op, e)) => {
                failing = true;
                error_event(out, op, &e, Some(next));
                std::thread::sleep(Duration::from_secs(1));
                // The descriptor may be dead with the old mount: open the log again (never
                // create it: a log that vanished is what verify must find).
                busy.begin("open");
                match OpenOptions::new().write(true).open(path) {
                    Ok(g) => f = g,
                    Err(e) => error_event(out, "open", &e, Some(next)),
                }
                busy.end(out);
            }
        }
    }
}

/// Records of `block_size` that fit in the free space above a margin (1 MiB or 1/64 of the
/// filesystem); unlimited where statvfs tells nothing, and 1 batch's worth when statvfs fails
/// (the write will say why).
#[allow(clippy::unnecessary_cast)] // statvfs's c_ulong is u32 on 32-bit targets
fn room_for(dir: &Path, block_size: u64) -> u64 {
    match nix::sys::statvfs::statvfs(dir) {
        Ok(st) if st.blocks() > 0 => {
            let total = st.blocks() as u64 * st.fragment_size() as u64;
            let avail = st.blocks_available() as u64 * st.fragment_size() as u64;
            avail.saturating_sub((1u64 << 20).max(total / 64)) / block_size
        }
        _ => u64::MAX,
    }
}

trait WriteAt {
    fn write_all_at_compat(&self, buf: &[u8], offset: u64) -> std::io::Result<()>;
}

impl WriteAt for File {
    fn write_all_at_compat(&self, buf: &[u8], offset: u64) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        self.write_all_at(buf, offset)
    }
}

/// The mount holding `dir` in /proc/self/mountinfo: mount id, device, options.
pub fn mount_of(dir: &Path) -> Option<Value> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mut best: Option<(usize, Value)> = None;
    for line in text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        if f.len() < 6 {
            continue;
        }
        let point = unescape(f[4]);
        if !dir.starts_with(&point) {
            continue;
        }
        let len = point.as_os_str().len();
        // The last of equally long ones is the mount on top.
        if best.as_ref().is_none_or(|(l, _)| len >= *l) {
            let fstype = line
                .split(" - ")
                .nth(1)
                .and_then(|r| r.split(' ').next())
                .unwrap_or("");
            best = Some((
                len,
                json!({
                    "id": f[0],
                    "device": f[2],
                    "point": point.display().to_string(),
                    "read_only": f[5].split(',').any(|o| o == "ro"),
                    "fstype": fstype,
                }),
            ));
        }
    }
    best.map(|(_, v)| v)
}

/// mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> PathBuf {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    use std::os::unix::ffi::OsStringExt;
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

fn probe_loop(p: &LiveParams, out: &Out, done: &AtomicBool, acked: &AtomicU64, busy: &Busy) {
    let path = p.dir.join(LOG_NAME);
    let bs = p.block_size as usize;
    let mut buf = AlignedBuf::new(bs);
    let mut first = mount_of(&p.dir);
    let mut failing = false;
    let mut last_probe = Instant::now() - p.probe_every;
    while !done.load(Ordering::SeqCst) {
        if last_probe.elapsed() < p.probe_every {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        last_probe = Instant::now();
        let mut ok = true;
        busy.begin("stat");
        if let Err(e) = std::fs::metadata(&p.dir).and_then(|_| std::fs::metadata(&path)) {
            error_event(out, "stat", &e, None);
            ok = false;
        }
        busy.end(out);
        let n = acked.load(Ordering::SeqCst);
        if ok && n > 0 {
            let record = rand::rng().random_range(0..n);
            busy.begin("read");
            let r = File::open(&path).and_then(|f| {
                io::drop_cache(&f, record * p.block_size, p.block_size);
                use std::os::unix::fs::FileExt;
                f.read_exact_at(&mut buf[..bs], record * p.block_size)
            });
            busy.end(out);
            match r {
                Ok(()) => {
                    let id = record_id(p.volume_id, p.seed, p.block_size, record);
                    if !block::is_exactly(&id, &buf[..bs], false) {
                        let found = block::parse_valid(&buf[..bs]).map(|h| {
                            json!({"volume_id": h.id.volume_id, "file_id": h.id.file_id, "offset": h.id.offset, "generation": h.id.generation})
                        });
                        let zero = buf[..bs].iter().all(|b| *b == 0);
                        out.event(json!({
                            "kind": "mismatch",
                            "record": record,
                            "offset": record * p.block_size,
                            "file": LOG_NAME,
                            "at_ms": now_ms(),
                            "zeroed": zero,
                            "found": found,
                        }));
                    }
                }
                Err(e) => {
                    error_event(out, "read", &e, Some(record));
                    ok = false;
                }
            }
        }
        let now = mount_of(&p.dir);
        if let (Some(a), Some(b)) = (&first, &now) {
            if a["read_only"] != b["read_only"] || a["device"] != b["device"] || a["id"] != b["id"]
            {
                out.event(json!({
                    "kind": "mount",
                    "from": a,
                    "to": b,
                    "at_ms": now_ms(),
                }));
                first = now.clone();
            }
        } else if first.is_none() {
            first = now;
        }
        if ok && failing {
            out.event(json!({"kind": "recovered", "op": "probe", "at_ms": now_ms()}));
        }
        failing = !ok;
    }
}
