//! `write` and `rewrite`: lay down generation 1 of a dataset, or a seeded fraction of the next.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::block::{self, BlockId};
use super::error::Error;
use super::io::{self, AlignedBuf};
use super::layout::{self, Chunk};
use super::ledger::{Generation, LEDGER_FORMAT, LEDGER_VERSION, Ledger};
use super::parallel;
use super::schedule::{self, Schedule};
use super::target::{self, DataFile, Target};

/// Bytes encoded before each write call (see `write`).
const WRITE_SLICE: usize = 256 << 10;

/// Parameters of `write`.
#[derive(Debug, Clone)]
pub struct WriteParams {
    pub target: Target,
    pub size: u64,
    pub seed: u64,
    pub volume_id: u64,
    pub block_size: u64,
    pub threads: usize,
}

/// Writes generation 1 and returns its ledger. Refuses to overwrite an existing dataset.
pub fn write(p: &WriteParams) -> Result<Ledger, Error> {
    if !block::valid_block_size(p.block_size) {
        return Err(Error::usage(
            "--block-size",
            format!(
                "{} bytes is not a multiple of 512 between 512B and 64MiB",
                p.block_size
            ),
        ));
    }
    if p.size == 0 || !p.size.is_multiple_of(p.block_size) {
        return Err(Error::usage(
            "--size",
            format!(
                "{} bytes is not a positive multiple of the block size ({} bytes)",
                p.size, p.block_size
            ),
        ));
    }
    p.target.check_exists()?;
    let layout_params = layout::params_for(p.seed, p.size, p.block_size);
    let ledger = Ledger {
        format: LEDGER_FORMAT.into(),
        version: LEDGER_VERSION,
        volume_id: p.volume_id,
        seed: p.seed,
        size: p.size,
        block_size: p.block_size,
        target: p.target.kind(),
        layout: layout_params,
        generations: vec![Generation {
            generation: 1,
            seed: p.seed,
            fraction: 1.0,
        }],
    };
    let files = match &p.target {
        Target::Dir(dir) => {
            let data = target::data_dir(dir);
            if data.exists() {
                return Err(Error::target(
                    &data,
                    "already exists: write never overwrites a dataset (remove it or use another --dir)",
                ));
            }
            check_free_space(dir, p.size)?;
            std::fs::create_dir(&data).map_err(|e| Error::io(&data, "create directory", e))?;
            let layout =
                layout::Layout::from_ledger(&ledger).map_err(|why| Error::usage("--size", why))?;
            target::files_in(dir, &layout)
        }
        Target::Device(dev) => {
            check_device_size(dev, p.size)?;
            vec![DataFile {
                id: 0,
                path: dev.clone(),
                display: dev.display().to_string(),
                size: p.size,
            }]
        }
    };
    let sizes: Vec<u64> = files.iter().map(|f| f.size).collect();
    let chunks = layout::chunks(&sizes, p.block_size);
    let create = matches!(p.target, Target::Dir(_));
    let ids = |c: &Chunk, off: u64| BlockId {
        volume_id: p.volume_id,
        file_id: files[c.file].id,
        offset: off,
        generation: 1,
        seed: p.seed,
    };
    parallel::for_each(
        p.threads,
        chunks.len(),
        || Worker::new(layout::CHUNK_MAX.max(p.block_size) as usize),
        |w, i| {
            let c = chunks.get(i);
            let f = open_cached(&mut w.open, &files[c.file], create)?;
            let buf = &mut w.buf[..c.len as usize];
            // Encode and write in slices that stay in the L2 cache, so the copy into the page
            // cache reads hot data.
            let slice = (WRITE_SLICE / p.block_size as usize).max(1) * p.block_size as usize;
            for (n, part) in buf.chunks_mut(slice).enumerate() {
                let base = c.offset + (n * slice) as u64;
                block::encode_run(part, p.block_size as usize, |k| {
                    ids(&c, base + k as u64 * p.block_size)
                });
                io::write_full_at(f, part, base, &files[c.file].path)?;
            }
            Ok(())
        },
    )?;
    sync_target(&p.target, &files)?;
    Ok(ledger)
}

/// Parameters of `rewrite`.
#[derive(Debug, Clone)]
pub struct RewriteParams {
    pub target: Target,
    pub fraction: f64,
    /// Seed of the new generation; derived from the dataset seed when absent.
    pub seed: Option<u64>,
    pub threads: usize,
}

/// Overwrites a seeded `fraction` of the blocks with the next generation; returns the extended ledger.
pub fn rewrite(p: &RewriteParams, ledger: &Ledger, ledger_path: &Path) -> Result<Ledger, Error> {
    if !(p.fraction > 0.0 && p.fraction <= 1.0) {
        return Err(Error::usage(
            "--fraction",
            format!("{} is not in (0, 1]", p.fraction),
        ));
    }
    p.target.check_exists()?;
    let files = target::resolve(&p.target, ledger, ledger_path)?;
    if let Target::Device(dev) = &p.target {
        check_device_size(dev, ledger.size)?;
    }
    for f in &files {
        if !f.path.exists() {
            return Err(Error::target(
                &f.path,
                "dataset file is missing: rewrite only rewrites an intact dataset (run verify)",
            ));
        }
    }
    let g = ledger.latest_generation() + 1;
    let gen_seed = p
        .seed
        .unwrap_or_else(|| schedule::generation_seed(ledger.seed, g));
    let threshold = schedule::threshold(p.fraction);
    let bs = ledger.block_size;
    let sizes: Vec<u64> = files.iter().map(|f| f.size).collect();
    let chunks = layout::chunks(&sizes, bs);
    parallel::for_each(
        p.threads,
        chunks.len(),
        || Worker::new(layout::CHUNK_MAX.max(bs) as usize),
        |w, i| {
            let c = chunks.get(i);
            let file = &files[c.file];
            let f = open_cached(&mut w.open, file, false)?;
            // Coalesce runs of selected blocks into one write each.
            let mut run_start: Option<u64> = None;
            let mut off = c.offset;
            let end = c.offset + c.len;
            while off <= end {
                let sel = off < end && Schedule::selected(gen_seed, threshold, file.id, off);
                if sel {
                    let at = (off - c.offset) as usize;
                    let id = BlockId {
                        volume_id: ledger.volume_id,
                        file_id: file.id,
                        offset: off,
                        generation: g,
                        seed: ledger.seed,
                    };
                    block::encode(&id, &mut w.buf[at..at + bs as usize]);
                    run_start.get_or_insert(off);
                } else if let Some(s) = run_start.take() {
                    let (a, b) = ((s - c.offset) as usize, (off - c.offset) as usize);
                    io::write_full_at(f, &w.buf[a..b], s, &file.path)?;
                }
                off += bs;
            }
            Ok(())
        },
    )?;
    sync_target(&p.target, &files)?;
    let mut out = ledger.clone();
    out.generations.push(Generation {
        generation: g,
        seed: gen_seed,
        fraction: p.fraction,
    });
    Ok(out)
}

/// Refuses a dataset larger than the free space up front, rather than filling the volume and
/// failing halfway. Filesystems that report no block counts (some pseudo and network
/// filesystems) are not checked here; ENOSPC during the write is still reported.
fn check_free_space(dir: &Path, size: u64) -> Result<(), Error> {
    let st = nix::sys::statvfs::statvfs(dir)
        .map_err(|e| Error::io(dir, "statvfs", std::io::Error::from_raw_os_error(e as i32)))?;
    let avail = st.blocks_available() as u64 * st.fragment_size() as u64;
    if st.blocks() > 0 && size > avail {
        return Err(Error::Io {
            path: dir.display().to_string(),
            op: "check free space".into(),
            errno: "ENOSPC".into(),
            detail: format!(
                ": the dataset needs {size} bytes, the filesystem has {avail} available"
            ),
        });
    }
    Ok(())
}

/// Refuses a device (or image file) smaller than the dataset.
pub fn check_device_size(dev: &Path, size: u64) -> Result<(), Error> {
    let f = File::open(dev).map_err(|e| Error::io(dev, "open", e))?;
    let have = io::target_size(&f, dev)?;
    if have < size {
        return Err(Error::target(
            dev,
            format!("device holds {have} bytes, smaller than the dataset ({size} bytes)"),
        ));
    }
    Ok(())
}

fn sync_target(t: &Target, files: &[DataFile]) -> Result<(), Error> {
    match t {
        Target::Dir(dir) => {
            io::sync_filesystem(&target::data_dir(dir))?;
            io::sync_filesystem(dir)
        }
        Target::Device(dev) => {
            let f = OpenOptions::new()
                .write(true)
                .open(dev)
                .map_err(|e| Error::io(dev, "open", e))?;
            f.sync_all().map_err(|e| Error::io(dev, "fsync", e))?;
            let _ = files;
            Ok(())
        }
    }
}

/// A writer thread's buffer and its most recently opened file (consecutive chunks usually
/// belong to the same large file).
struct Worker {
    buf: AlignedBuf,
    open: Option<(u64, File)>,
}

impl Worker {
    fn new(len: usize) -> Worker {
        Worker {
            buf: AlignedBuf::new(len),
            open: None,
        }
    }
}

fn open_cached<'a>(
    slot: &'a mut Option<(u64, File)>,
    file: &DataFile,
    create: bool,
) -> Result<&'a File, Error> {
    if slot.as_ref().map(|(id, _)| *id) != Some(file.id) {
        let f = OpenOptions::new()
            .write(true)
            .create(create)
            .mode(0o644)
            .open(&file.path)
            .map_err(|e| {
                Error::io(
                    &file.path,
                    if create { "create" } else { "open for writing" },
                    e,
                )
            })?;
        *slot = Some((file.id, f));
    }
    Ok(&slot.as_ref().unwrap().1)
}
