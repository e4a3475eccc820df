//! `durability`: append records, fsync each batch, and acknowledge each record on stdout only
//! after the fsync covering it returned. The harness keeps the acknowledgements off the volume
//! and may kill the process at any moment; `verify --acks` then requires every acknowledged record.
//!
//! The acks stream is self-describing: its first line is an [`AcksHeader`] (JSON), every other
//! line is `{"record":N}`. A last line without a newline (cut by a kill) is ignored.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::block::{self, BlockId, DURABILITY_FILE_ID};
use super::error::Error;
use super::io::{self, AlignedBuf};

pub const ACKS_FORMAT: &str = "pvcheck-acks";
pub const ACKS_VERSION: u32 = 1;
/// The log's name under `--dir`.
pub const LOG_NAME: &str = "pvcheck-durability.log";

/// First line of the acks stream: everything verify needs without a ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcksHeader {
    pub format: String,
    pub version: u32,
    pub volume_id: u64,
    pub seed: u64,
    pub block_size: u64,
    /// The log's path relative to `--dir`.
    pub log: String,
}

/// One acknowledgement: record N (at byte N × block_size of the log) is on stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ack {
    pub record: u64,
}

/// When `durability` stops.
#[derive(Debug, Clone, Copy)]
pub enum Stop {
    Records(u64),
    After(Duration),
}

#[derive(Debug, Clone)]
pub struct DurabilityParams {
    pub dir: PathBuf,
    pub seed: u64,
    pub volume_id: u64,
    pub block_size: u64,
    pub batch: u64,
    pub stop: Stop,
}

/// The durability record number `n`.
pub fn record_id(volume_id: u64, seed: u64, block_size: u64, n: u64) -> BlockId {
    BlockId {
        volume_id,
        file_id: DURABILITY_FILE_ID,
        offset: n * block_size,
        generation: 1,
        seed,
    }
}

/// The record size and batch a stream of acknowledged records accepts (durability and the live
/// stream alike).
pub(crate) fn check_stream(block_size: u64, batch: u64) -> Result<(), Error> {
    if !block::valid_block_size(block_size) {
        return Err(Error::usage(
            "--block-size",
            format!("{block_size} bytes is not a multiple of 512 between 512B and 64MiB"),
        ));
    }
    if batch == 0 || batch > 4096 {
        return Err(Error::usage("--batch", "must be between 1 and 4096"));
    }
    Ok(())
}

/// Runs the durability workload, writing acknowledgements to `out`. Returns the records acknowledged.
pub fn run(p: &DurabilityParams, out: &mut impl Write) -> Result<u64, Error> {
    check_stream(p.block_size, p.batch)?;
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
                Error::target(&path, "already exists: durability starts a new log and never appends to an old one (use another --dir)")
            } else {
                Error::io(&path, "create", e)
            }
        })?;
    // The log's directory entry must be durable too, or an acknowledged record could vanish
    // with the whole file after a crash.
    std::fs::File::open(&p.dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(&p.dir, "fsync directory", e))?;
    let header = AcksHeader {
        format: ACKS_FORMAT.into(),
        version: ACKS_VERSION,
        volume_id: p.volume_id,
        seed: p.seed,
        block_size: p.block_size,
        log: LOG_NAME.into(),
    };
    let stdout_err =
        |e: std::io::Error| Error::io(Path::new("<stdout>"), "write acknowledgement", e);
    writeln!(
        out,
        "{}",
        serde_json::to_string(&header).expect("header serialises")
    )
    .map_err(stdout_err)?;
    out.flush().map_err(stdout_err)?;
    let bs = p.block_size as usize;
    let mut buf = AlignedBuf::new(bs * p.batch as usize);
    let start = Instant::now();
    let mut next = 0u64;
    loop {
        let mut n = match p.stop {
            Stop::Records(total) => p.batch.min(total - next),
            Stop::After(d) if start.elapsed() < d => p.batch,
            Stop::After(_) => 0,
        };
        // A timed stream waits to be killed: it must not fill the filesystem first (ENOSPC on
        // a healthy small volume is not a finding). It stays within the free space it sees.
        if n > 0
            && let Stop::After(d) = p.stop
        {
            let room = room_for_records(&p.dir, p.block_size)?;
            n = n.min(room);
            if n == 0 {
                eprintln!(
                    "{STOPPED_AT_FREE_SPACE} after record {next}: the filesystem has too little free space for another batch with a margin of {}; waiting for the kill",
                    crate::units::format_size(free_space_margin(&p.dir))
                );
                while start.elapsed() < d {
                    std::thread::sleep(Duration::from_millis(100).min(d - start.elapsed()));
                }
                break;
            }
        }
        if n == 0 {
            break;
        }
        let bytes = &mut buf[..bs * n as usize];
        block::encode_run(bytes, bs, |k| {
            record_id(p.volume_id, p.seed, p.block_size, next + k as u64)
        });
        io::write_full_at(&f, bytes, next * p.block_size, &path)?;
        f.sync_all().map_err(|e| Error::io(&path, "fsync", e))?;
        let mut lines = String::with_capacity(24 * n as usize);
        for k in 0..n {
            lines.push_str(&format!("{{\"record\":{}}}\n", next + k));
        }
        // One write and flush per batch: whatever the kill interrupts, every line the harness
        // received names a record whose fsync had already returned.
        out.write_all(lines.as_bytes()).map_err(stdout_err)?;
        out.flush().map_err(stdout_err)?;
        next += n;
    }
    Ok(next)
}

/// The stderr line of a timed stream that stopped appending because free space ran low.
pub const STOPPED_AT_FREE_SPACE: &str = "durability: stopped appending at the free-space limit";

/// Space a timed stream leaves free: 1 MiB or 1/64 of the filesystem, whichever is larger
/// (metadata, the journal, and what other writers need).
#[allow(clippy::unnecessary_cast)] // statvfs's c_ulong is u32 on 32-bit targets
fn free_space_margin(dir: &Path) -> u64 {
    let total = nix::sys::statvfs::statvfs(dir)
        .map(|st| st.blocks() as u64 * st.fragment_size() as u64)
        .unwrap_or(0);
    margin_for(total)
}

fn margin_for(filesystem_bytes: u64) -> u64 {
    (1u64 << 20).max(filesystem_bytes / 64)
}

/// How many more records of `block_size` fit in the free space of `dir`'s filesystem, above
/// the margin. A filesystem that reports no block counts (some pseudo and network filesystems)
/// is not limited.
#[allow(clippy::unnecessary_cast)] // statvfs's c_ulong is u32 on 32-bit targets
fn room_for_records(dir: &Path, block_size: u64) -> Result<u64, Error> {
    let st = nix::sys::statvfs::statvfs(dir)
        .map_err(|e| Error::io(dir, "statvfs", std::io::Error::from_raw_os_error(e as i32)))?;
    if st.blocks() == 0 {
        return Ok(u64::MAX);
    }
    let avail = st.blocks_available() as u64 * st.fragment_size() as u64;
    let total = st.blocks() as u64 * st.fragment_size() as u64;
    Ok(avail.saturating_sub(margin_for(total)) / block_size)
}

/// Reads an acks stream: its header and the acknowledged record numbers (sorted, unique).
pub fn parse_acks(path: &Path) -> Result<(AcksHeader, Vec<u64>), Error> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, "read acks", e))?;
    parse_acks_text(&text, path)
}

/// Parses the text of an acks stream; `path` is only used in messages (the fuzz target
/// `acks_stream` calls this directly).
pub fn parse_acks_text(text: &str, path: &Path) -> Result<(AcksHeader, Vec<u64>), Error> {
    let bad = |field: String, why: String| Error::Ledger {
        path: path.display().to_string(),
        field,
        why,
    };
    let mut lines = text.split_inclusive('\n');
    let first = lines
        .next()
        .ok_or_else(|| bad("line 1".into(), "empty: expected the acks header".into()))?;
    let v: serde_json::Value = serde_json::from_str(first.trim_end())
        .map_err(|e| bad("line 1".into(), format!("header is not JSON: {e}")))?;
    if v.get("format").and_then(|x| x.as_str()) != Some(ACKS_FORMAT) {
        return Err(bad(
            "format".into(),
            format!("line 1 is not a {ACKS_FORMAT:?} header"),
        ));
    }
    match v.get("version").and_then(|x| x.as_u64()) {
        Some(n) if n == ACKS_VERSION as u64 => {}
        other => {
            return Err(bad(
                "version".into(),
                format!("{other:?} is not supported (this agent reads version {ACKS_VERSION})"),
            ));
        }
    }
    let header: AcksHeader =
        serde_json::from_value(v).map_err(|e| bad("line 1".into(), e.to_string()))?;
    if !block::valid_block_size(header.block_size) {
        return Err(bad(
            "block_size".into(),
            format!("{} is not a valid block size", header.block_size),
        ));
    }
    if header.log.contains("..") || header.log.starts_with('/') {
        return Err(bad(
            "log".into(),
            format!("{:?} must be a plain path under --dir", header.log),
        ));
    }
    let mut acked = Vec::new();
    for (i, line) in lines.enumerate() {
        if !line.ends_with('\n') {
            break; // cut by a kill mid-line: never acknowledged
        }
        let a: Ack = serde_json::from_str(line.trim_end()).map_err(|e| {
            bad(
                format!("line {}", i + 2),
                format!("not an acknowledgement: {e}"),
            )
        })?;
        acked.push(a.record);
    }
    acked.sort_unstable();
    acked.dedup();
    Ok((header, acked))
}
