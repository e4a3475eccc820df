//! `verify`: reads every block and proves it is exactly what the ledger says, naming the damage
//! where it is not. Never writes to the target.

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::block::{self, BlockId};
use super::classify::{self, Context};
use super::durability::{self, AcksHeader};
use super::error::Error;
use super::io::{self, AlignedBuf};
use super::layout::{self, DATA_DIR};
use super::ledger::{Ledger, TargetKind};
use super::parallel;
use super::report::{
    AckSummary, Counts, DAMAGE_LISTED_MAX, Damage, DamageKind, REPORT_FORMAT, REPORT_VERSION,
    ReadMode, VerifyReport,
};
use super::schedule::Schedule;
use super::target::{self, DataFile, Target};

/// Buffered verify reads and checks this much at a time (see the chunk loop).
const VERIFY_SLICE: usize = 256 << 10;

/// A read mode and, for buffered reads, why.
type Mode = (ReadMode, Option<String>);

#[derive(Debug, Clone)]
pub struct VerifyParams {
    pub target: Target,
    /// The ledger and where it was read from (for messages).
    pub ledger: Option<(Ledger, PathBuf)>,
    pub acks: Option<PathBuf>,
    /// When given, the ledger and acks must belong to this volume.
    pub volume_id: Option<u64>,
    pub threads: usize,
    pub full_hash: bool,
    /// Force buffered reads.
    pub buffered: bool,
}

/// The read mode for a target whose first readable file is `probe`.
fn choose_mode(probe: &Path, bs: u64, buffered: bool) -> Mode {
    if buffered {
        (ReadMode::Buffered, Some("--buffered was given".into()))
    } else {
        io::probe_read_mode(probe, bs as usize)
    }
}

/// Damage found so far: exact counts of everything, the first entries by (file id, offset).
#[derive(Default)]
struct Findings {
    counts: Counts,
    listed: Vec<(u64, Damage)>,
}

impl Findings {
    fn push(&mut self, file_id: u64, d: Damage) {
        *self.counts.get_mut(d.kind) += 1;
        self.listed.push((file_id, d));
        if self.listed.len() > 4 * DAMAGE_LISTED_MAX {
            self.trim();
        }
    }

    fn trim(&mut self) {
        self.listed.sort_by_key(|a| (a.0, a.1.offset));
        self.listed.truncate(DAMAGE_LISTED_MAX);
    }

    fn merge(&mut self, other: Findings) {
        self.counts.add(&other.counts);
        self.listed.extend(other.listed);
        self.trim();
    }
}

struct Worker {
    buf: AlignedBuf,
    open: Option<(u64, File)>,
    found: Findings,
    blocks: u64,
    bytes: u64,
}

pub fn verify(p: &VerifyParams) -> Result<VerifyReport, Error> {
    let start = Instant::now();
    if p.ledger.is_none() && p.acks.is_none() {
        return Err(Error::usage(
            "--ledger",
            "verify needs --ledger, --acks, or both",
        ));
    }
    p.target.check_exists()?;
    let acks = match &p.acks {
        Some(path) => Some((durability::parse_acks(path)?, path.clone())),
        None => None,
    };
    check_identity(p, acks.as_ref())?;
    let mut found = Findings::default();
    let (mut blocks, mut bytes, mut files_checked) = (0u64, 0u64, 0u64);
    let mut read_mode: Option<Mode> = None;

    if let Some((ledger, ledger_path)) = &p.ledger {
        let files = target::resolve(&p.target, ledger, ledger_path)?;
        let bs = ledger.block_size;
        let readable = match &p.target {
            Target::Dir(dir) => size_check(dir, &files, bs, &mut found)?,
            Target::Device(dev) => {
                super::write::check_device_size(dev, ledger.size)?;
                vec![ledger.size]
            }
        };
        files_checked = files.len() as u64;
        let probe = files
            .iter()
            .zip(&readable)
            .find(|(_, r)| **r > 0)
            .map(|(f, _)| f.path.clone());
        let mode = match &probe {
            Some(path) => choose_mode(path, bs, p.buffered),
            None => (
                ReadMode::Buffered,
                Some("no dataset file could be read".into()),
            ),
        };
        // Where the kernel copies (buffered reads; O_DIRECT on tmpfs, served from memory),
        // read in slices the check finds in the L2 cache. Elsewhere O_DIRECT reads a chunk at
        // once: the device's request size.
        let sliced =
            mode.0 == ReadMode::Buffered || probe.as_deref().is_some_and(io::direct_reads_copy);
        let schedule = Schedule::new(&ledger.generations);
        let names: Vec<String> = files.iter().map(|f| f.display.clone()).collect();
        let ctx = Context {
            volume_id: ledger.volume_id,
            seed: ledger.seed,
            schedule: &schedule,
            names: &names,
        };
        let chunks = layout::chunks(&readable, bs);
        let workers = parallel::for_each(
            p.threads,
            chunks.len(),
            || Worker {
                buf: AlignedBuf::new(layout::CHUNK_MAX.max(bs) as usize),
                open: None,
                found: Findings::default(),
                blocks: 0,
                bytes: 0,
            },
            |w, i| {
                let c = chunks.get(i);
                let file = &files[c.file];
                if w.open.as_ref().map(|(id, _)| *id) != Some(file.id) {
                    let f = io::open_read(&file.path, mode.0)
                        .map_err(|e| Error::io(&file.path, "open for reading", e))?;
                    w.open = Some((file.id, f));
                }
                let f = &w.open.as_ref().unwrap().1;
                if mode.0 == ReadMode::Buffered {
                    io::drop_cache(f, c.offset, c.len);
                }
                // Copied reads go in slices that stay in the L2 cache, each checked right
                // after the kernel copied it (a 4 MiB chunk read at once is checked from L3 or
                // memory); O_DIRECT from a device reads the chunk at once.
                let len = c.len as usize;
                let slice = if sliced {
                    (VERIFY_SLICE / bs as usize).max(1) * bs as usize
                } else {
                    len
                };
                let mut n = 0usize;
                while n < len {
                    let end = (n + slice).min(len);
                    let got =
                        io::read_full_at(f, &mut w.buf[n..end], c.offset + n as u64, &file.path)?;
                    // `n` is a multiple of the block size: check the whole blocks read.
                    let blocks = &w.buf[n..n + got - got % bs as usize];
                    let first = n / bs as usize;
                    let found = &mut w.found;
                    block::check_run(
                        blocks,
                        bs as usize,
                        p.full_hash,
                        |k| {
                            let offset = c.offset + (first + k) as u64 * bs;
                            BlockId {
                                volume_id: ledger.volume_id,
                                file_id: file.id,
                                offset,
                                generation: schedule.expected(file.id, offset),
                                seed: ledger.seed,
                            }
                        },
                        |k, expected| {
                            let b = &blocks[k * bs as usize..(k + 1) * bs as usize];
                            found.push(
                                file.id,
                                classify::classify(&ctx, &file.display, &expected, b),
                            );
                        },
                    );
                    n += got;
                    if got < end - (n - got) {
                        break;
                    }
                }
                let whole = n - n % bs as usize;
                w.blocks += (whole as u64) / bs;
                w.bytes += whole as u64;
                if (whole as u64) < c.len {
                    // The file shrank after the size check: say so rather than skip the rest.
                    w.found.push(
                        file.id,
                        file_damage(
                            DamageKind::Truncated,
                            file,
                            c.offset + whole as u64,
                            Some(ledger.latest_generation()),
                            format!(
                                "file ended at {} bytes while being read",
                                c.offset + n as u64
                            ),
                        ),
                    );
                }
                Ok(())
            },
        )?;
        for w in workers {
            found.merge(w.found);
            blocks += w.blocks;
            bytes += w.bytes;
        }
        read_mode = Some(mode);
    }

    let mut ack_summary = None;
    if let Some(((header, acked), _)) = &acks {
        let Target::Dir(dir) = &p.target else {
            return Err(Error::usage(
                "--acks",
                "durability logs live in a directory: use --dir",
            ));
        };
        let (summary, b, mode) = check_acks(
            dir,
            header,
            acked,
            p.full_hash,
            p.buffered,
            read_mode.is_none(),
            &mut found,
        )?;
        blocks += b;
        bytes += b * header.block_size;
        if read_mode.is_none() {
            read_mode = mode;
        }
        ack_summary = Some(summary);
    }

    found.trim();
    let (mode, reason) = read_mode.unwrap_or((ReadMode::Buffered, Some("nothing was read".into())));
    let (seed, volume_id, target, generation) = match (&p.ledger, &acks) {
        (Some((l, _)), _) => (l.seed, l.volume_id, l.target, l.latest_generation()),
        (None, Some(((h, _), _))) => (h.seed, h.volume_id, TargetKind::Dir, 0),
        (None, None) => unreachable!("checked above"),
    };
    let damage_total = found.counts.total();
    Ok(VerifyReport {
        format: REPORT_FORMAT.into(),
        version: REPORT_VERSION,
        clean: damage_total == 0,
        seed,
        volume_id,
        target,
        counts: found.counts,
        damage_total,
        damage: found.listed.into_iter().map(|(_, d)| d).collect(),
        files_checked,
        blocks_checked: blocks,
        bytes_checked: bytes,
        elapsed_seconds: start.elapsed().as_secs_f64(),
        read_mode: mode,
        read_mode_reason: reason,
        threads: p.threads as u64,
        full_hash: p.full_hash,
        generation,
        acks: ack_summary,
    })
}

/// Ledger, acks and `--volume-id` must agree: verifying one volume's data against another's
/// expectations would report every block as misdirected, which is a usage error, not damage.
fn check_identity(
    p: &VerifyParams,
    acks: Option<&((AcksHeader, Vec<u64>), PathBuf)>,
) -> Result<(), Error> {
    if let (Some(v), Some((l, lp))) = (p.volume_id, &p.ledger)
        && l.volume_id != v
    {
        return Err(Error::Ledger {
            path: lp.display().to_string(),
            field: "volume_id".into(),
            why: format!(
                "{} is not the volume under test (--volume-id {v})",
                l.volume_id
            ),
        });
    }
    if let Some(((h, _), ap)) = acks {
        let mismatch = |why: String| Error::Ledger {
            path: ap.display().to_string(),
            field: "volume_id".into(),
            why,
        };
        if let Some(v) = p.volume_id
            && h.volume_id != v
        {
            return Err(mismatch(format!(
                "{} is not the volume under test (--volume-id {v})",
                h.volume_id
            )));
        }
        if let Some((l, _)) = &p.ledger
            && h.volume_id != l.volume_id
        {
            return Err(mismatch(format!(
                "{} differs from the ledger's {}",
                h.volume_id, l.volume_id
            )));
        }
    }
    Ok(())
}

fn file_damage(
    kind: DamageKind,
    f: &DataFile,
    offset: u64,
    expected: Option<u64>,
    detail: String,
) -> Damage {
    Damage {
        kind,
        file: f.display.clone(),
        offset,
        expected_generation: expected,
        found_generation: None,
        found: None,
        sector_generations: None,
        detail,
        first_differing_byte: None,
        differing_bytes: None,
    }
}

/// Per-file checks (missing, truncated, longer than expected, unexpected files). Returns how
/// many bytes of each file can be read as whole blocks.
fn size_check(
    dir: &Path,
    files: &[DataFile],
    bs: u64,
    found: &mut Findings,
) -> Result<Vec<u64>, Error> {
    let mut readable = Vec::with_capacity(files.len());
    for f in files {
        match std::fs::metadata(&f.path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                found.push(
                    f.id,
                    file_damage(
                        DamageKind::Missing,
                        f,
                        0,
                        None,
                        format!("file of {} bytes is missing", f.size),
                    ),
                );
                readable.push(0);
            }
            Err(e) => return Err(Error::io(&f.path, "stat", e)),
            Ok(md) => {
                let have = md.len();
                if have < f.size {
                    let at = have - have % bs;
                    found.push(
                        f.id,
                        file_damage(
                            DamageKind::Truncated,
                            f,
                            at,
                            None,
                            format!("file is {have} bytes, {} expected", f.size),
                        ),
                    );
                    readable.push(at);
                } else {
                    if have > f.size {
                        found.push(
                            f.id,
                            file_damage(
                                DamageKind::Extra,
                                f,
                                f.size,
                                None,
                                format!(
                                    "file is {have} bytes, {} expected: {} extra bytes",
                                    f.size,
                                    have - f.size
                                ),
                            ),
                        );
                    }
                    readable.push(f.size);
                }
            }
        }
    }
    let data = target::data_dir(dir);
    let known: HashSet<&str> = files.iter().map(|f| f.display.as_str()).collect();
    match std::fs::read_dir(&data) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(&data, "list directory", e)),
        Ok(entries) => {
            let mut extra = Vec::new();
            for e in entries {
                let e = e.map_err(|e| Error::io(&data, "list directory", e))?;
                let rel = format!("{DATA_DIR}/{}", e.file_name().to_string_lossy());
                if !known.contains(rel.as_str()) {
                    let len = e.metadata().map(|m| m.len()).unwrap_or(0);
                    extra.push((rel, len));
                }
            }
            extra.sort();
            for (rel, len) in extra {
                let f = DataFile {
                    id: u64::MAX,
                    path: data.join(&rel),
                    display: rel,
                    size: 0,
                };
                found.push(
                    u64::MAX,
                    file_damage(
                        DamageKind::Extra,
                        &f,
                        0,
                        None,
                        format!("not part of the dataset ({len} bytes)"),
                    ),
                );
            }
        }
    }
    Ok(readable)
}

/// Checks every acknowledged record of the durability log. Returns the summary, the blocks
/// read, and the read mode when `probe` asks for one.
fn check_acks(
    dir: &Path,
    h: &AcksHeader,
    acked: &[u64],
    full_hash: bool,
    buffered: bool,
    probe: bool,
    found: &mut Findings,
) -> Result<(AckSummary, u64, Option<Mode>), Error> {
    let path = dir.join(&h.log);
    let bs = h.block_size;
    let log = DataFile {
        id: block::DURABILITY_FILE_ID,
        path: path.clone(),
        display: h.log.clone(),
        size: 0,
    };
    let schedule = Schedule::new(&[]);
    let ctx = Context {
        volume_id: h.volume_id,
        seed: h.seed,
        schedule: &schedule,
        names: &[],
    };
    let mut summary = AckSummary {
        log: h.log.clone(),
        required: acked.len() as u64,
        present: 0,
        missing: 0,
        unacknowledged_present: 0,
    };
    let len = match std::fs::metadata(&path) {
        Ok(md) => md.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(Error::io(&path, "stat", e)),
    };
    let records_in_log = len / bs;
    let mode = if records_in_log > 0 {
        choose_mode(&path, bs, buffered)
    } else {
        (
            ReadMode::Buffered,
            Some("durability log is empty or absent".into()),
        )
    };
    let max_acked = acked.last().copied();
    let mut blocks = 0;
    if records_in_log > 0 {
        let f =
            io::open_read(&path, mode.0).map_err(|e| Error::io(&path, "open for reading", e))?;
        let step = (layout::CHUNK_MAX / bs).max(1);
        let mut buf = AlignedBuf::new((step * bs) as usize);
        let mut ai = 0usize;
        let mut first = 0u64;
        while first < records_in_log {
            let n = step.min(records_in_log - first);
            if mode.0 == ReadMode::Buffered {
                io::drop_cache(&f, first * bs, n * bs);
            }
            let got =
                io::read_full_at(&f, &mut buf[..(n * bs) as usize], first * bs, &path)? as u64 / bs;
            for r in first..first + got {
                let b = &buf[((r - first) * bs) as usize..((r - first + 1) * bs) as usize];
                let expected = durability::record_id(h.volume_id, h.seed, bs, r);
                let is_acked = ai < acked.len() && acked[ai] == r;
                if is_acked {
                    ai += 1;
                    blocks += 1;
                    if block::is_exactly(&expected, b, full_hash) {
                        summary.present += 1;
                    } else {
                        found.push(log.id, classify::classify(&ctx, &log.display, &expected, b));
                    }
                } else if max_acked.is_none_or(|m| r > m)
                    && block::is_exactly(&expected, b, full_hash)
                {
                    summary.unacknowledged_present += 1;
                }
            }
            if got < n {
                break;
            }
            first += n;
        }
        // Acknowledged records past what could be read are missing.
        for &r in &acked[ai..] {
            found.push(
                log.id,
                file_damage(
                    DamageKind::Missing,
                    &log,
                    r * bs,
                    Some(1),
                    format!("acknowledged record {r} is past the end of the log ({len} bytes)"),
                ),
            );
        }
    } else {
        for &r in acked {
            found.push(
                log.id,
                file_damage(
                    DamageKind::Missing,
                    &log,
                    r * bs,
                    Some(1),
                    format!("acknowledged record {r}: the log holds {len} bytes"),
                ),
            );
        }
    }
    summary.missing = summary.required - summary.present;
    Ok((summary, blocks, probe.then_some(mode)))
}
