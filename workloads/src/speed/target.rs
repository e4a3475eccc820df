//! Opening the target: per-job files in a directory (created by us, removed unless `--keep`)
//! or regions of a raw block device; O_DIRECT where the filesystem accepts it; prefill.
//!
//! With `--reuse` the files have stable names (`pvcheck-bench.<job>`) and are kept, each with
//! a marker beside it (`pvcheck-bench.<job>.prefill`) that is created before the file and
//! says `ready <bytes>` only once a prefill of that many bytes reached stable storage. A run
//! reuses a file whose marker is ready for its size, prefills it again otherwise, and refuses
//! a file of that name without a marker: it may be somebody else's.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::buffers::PoolCursor;
use super::error::Error;
use super::job::{JobSpec, Target};

/// The file or device region one job works on.
pub struct JobFile {
    pub file: File,
    pub path: PathBuf,
    /// First byte of the job's region.
    pub start: u64,
    /// Bytes in the region: a whole number of blocks.
    pub len: u64,
    /// `--reuse`: the marker to set once the prefill is on stable storage; `None` when the
    /// file was already prefilled (or reuse is off).
    pub marker: Option<PathBuf>,
    /// An earlier `--reuse` run left this file prefilled for this size.
    pub reused: bool,
}

const MARKER_READY: &str = "ready";

fn marker_path(file: &Path) -> PathBuf {
    let mut s = file.as_os_str().to_owned();
    s.push(".prefill");
    PathBuf::from(s)
}

/// True when the marker says a prefill of exactly `len` bytes completed.
fn marker_ready(marker: &Path, len: u64) -> bool {
    std::fs::read_to_string(marker).is_ok_and(|s| s.trim() == format!("{MARKER_READY} {len}"))
}

/// Records that `f`'s prefill is on stable storage (after the prefill's fdatasync).
pub fn mark_prefilled(f: &JobFile) -> Result<(), Error> {
    let Some(marker) = &f.marker else {
        return Ok(());
    };
    let write = || -> io::Result<()> {
        let m = OpenOptions::new().write(true).truncate(true).open(marker)?;
        m.write_all_at(format!("{MARKER_READY} {}\n", f.len).as_bytes(), 0)?;
        m.sync_data()
    };
    write().map_err(|source| Error::Target {
        path: marker.clone(),
        what: "cannot record the prefill",
        source,
    })
}

/// Everything opened for a run. Dropping it removes the files we created (unless `keep`).
pub struct Prepared {
    pub files: Vec<JobFile>,
    /// O_DIRECT actually in use.
    pub direct: bool,
    pub warnings: Vec<String>,
    created: Vec<PathBuf>,
    keep: bool,
}

impl Prepared {
    /// Files this run created (removed on drop unless `--keep`).
    pub fn created(&self) -> &[PathBuf] {
        &self.created
    }
    /// True when `--keep` asked to leave the files in place.
    pub fn keeps(&self) -> bool {
        self.keep
    }
}

impl Drop for Prepared {
    fn drop(&mut self) {
        if !self.keep {
            for p in &self.created {
                let _ = std::fs::remove_file(p);
            }
        }
    }
}

fn is_read_only(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EROFS) | Some(libc::EACCES) | Some(libc::EPERM)
    )
}

/// Refuses a job whose files do not fit in the free space up front (as `write` does), rather
/// than filling the volume and failing halfway with ENOSPC. Files `--reuse` will reuse need no
/// new space. Filesystems that report no block counts are not checked.
fn check_free_space(spec: &JobSpec, dir: &Path, region: u64) -> Result<(), Error> {
    let Ok(st) = nix::sys::statvfs::statvfs(dir) else {
        return Ok(());
    };
    if st.blocks() == 0 {
        return Ok(());
    }
    let avail = st.blocks_available() * st.fragment_size();
    let needed: u64 = (0..spec.job.jobs)
        .map(|i| {
            let path = dir.join(format!("pvcheck-bench.{i}"));
            if spec.reuse && marker_ready(&marker_path(&path), region) {
                0
            } else if spec.reuse {
                // Prefilled again in place: only what it does not already occupy.
                let have = std::fs::metadata(&path)
                    .map_or(0, |m| std::os::unix::fs::MetadataExt::blocks(&m) * 512);
                region.saturating_sub(have)
            } else {
                region
            }
        })
        .sum();
    if needed > avail {
        return Err(Error::TargetInvalid {
            path: dir.to_path_buf(),
            msg: format!(
                "not enough free space: the job needs {} ({} job(s) × {}), the filesystem has {} available (ENOSPC); use a smaller --size",
                crate::units::format_size(needed),
                spec.job.jobs,
                crate::units::format_size(region),
                crate::units::format_size(avail)
            ),
        });
    }
    Ok(())
}

/// Opens (and for a directory, creates) the job files. No data is written yet.
pub fn open(spec: &JobSpec) -> Result<Prepared, Error> {
    match &spec.target {
        Target::Dir(d) => open_dir(spec, d),
        Target::Device(d) => open_device(spec, d),
    }
}

fn open_dir(spec: &JobSpec, dir: &Path) -> Result<Prepared, Error> {
    let md = std::fs::metadata(dir).map_err(|source| Error::Target {
        path: dir.to_path_buf(),
        what: "cannot use directory",
        source,
    })?;
    if !md.is_dir() {
        return Err(Error::TargetInvalid {
            path: dir.to_path_buf(),
            msg: "is not a directory (use --device for a block device)".into(),
        });
    }
    let j = &spec.job;
    let mut prep = Prepared {
        files: Vec::new(),
        direct: j.direct,
        warnings: Vec::new(),
        created: Vec::new(),
        keep: spec.keep || spec.reuse,
    };
    let region = j.size / j.bs * j.bs;
    check_free_space(spec, dir, region)?;
    let cannot_create = |path: &Path, source: io::Error| {
        if is_read_only(&source) {
            Error::ReadOnly {
                path: dir.to_path_buf(),
                source,
            }
        } else {
            Error::Target {
                path: path.to_path_buf(),
                what: "cannot create the job file",
                source,
            }
        }
    };
    for i in 0..j.jobs {
        let (created, path, marker, reused) = if spec.reuse {
            let path = dir.join(format!("pvcheck-bench.{i}"));
            let marker = marker_path(&path);
            let exists = path.symlink_metadata().is_ok();
            if exists && !marker.exists() {
                return Err(Error::TargetInvalid {
                    path,
                    msg: "exists without the marker --reuse leaves beside its files: not \
                          ours to overwrite (remove it, or use another --dir)"
                        .into(),
                });
            }
            // A ready marker whose file was removed proves nothing: prefill a new one.
            let reused = exists && marker_ready(&marker, region);
            if !reused {
                // Before the file: a file of ours never exists without a marker, and one that
                // is prefilled again must not pass for whole if the prefill is interrupted.
                std::fs::write(&marker, "filling\n").map_err(|e| cannot_create(&marker, e))?;
            }
            // O_EXCL when it is new: we only ever write a file we created or marked.
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(!exists)
                .open(&path)
                .map_err(|e| cannot_create(&path, e))?;
            if !reused {
                file.set_len(region).map_err(|e| cannot_create(&path, e))?;
            }
            (file, path, (!reused).then_some(marker), reused)
        } else {
            let path = dir.join(format!("pvcheck-bench.{}.{i}", std::process::id()));
            // Create without O_DIRECT first: tmpfs creates the file and only then refuses
            // O_DIRECT, and O_EXCL guarantees we only ever remove a file we created.
            let created = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(|e| cannot_create(&path, e))?;
            prep.created.push(path.clone());
            (created, path, None, false)
        };
        let file = if prep.direct {
            match OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_DIRECT)
                .open(&path)
            {
                Ok(f) => f,
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    prep.direct = false;
                    prep.warnings.push(format!(
                        "{}: the filesystem refuses O_DIRECT (e.g. ramfs, or tmpfs before Linux 6.6); ran buffered I/O",
                        dir.display()
                    ));
                    created
                }
                Err(source) => {
                    return Err(Error::Target {
                        path,
                        what: "cannot open with O_DIRECT",
                        source,
                    });
                }
            }
        } else {
            created
        };
        prep.files.push(JobFile {
            file,
            path,
            start: 0,
            len: region,
            marker,
            reused,
        });
    }
    // Reopen every file buffered if one of them refused O_DIRECT: jobs must agree.
    if !prep.direct {
        for f in &mut prep.files {
            f.file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&f.path)
                .map_err(|source| Error::Target {
                    path: f.path.clone(),
                    what: "cannot reopen",
                    source,
                })?;
        }
    }
    Ok(prep)
}

nix::ioctl_read!(blk_getsize64, 0x12, 114, u64);
nix::ioctl_read_bad!(blk_sszget, 0x1268, libc::c_int);
nix::ioctl_read_bad!(blk_roget, 0x125e, libc::c_int);

fn open_device(spec: &JobSpec, dev: &Path) -> Result<Prepared, Error> {
    let md = std::fs::metadata(dev).map_err(|source| Error::Target {
        path: dev.to_path_buf(),
        what: "cannot use device",
        source,
    })?;
    if !md.file_type().is_block_device() {
        return Err(Error::TargetInvalid {
            path: dev.to_path_buf(),
            msg: "is not a block device (use --dir for a directory)".into(),
        });
    }
    let j = &spec.job;
    let mut flags = libc::O_EXCL; // refuses a mounted or otherwise claimed device
    if j.direct {
        flags |= libc::O_DIRECT;
    }
    // A previous run's io_uring may still hold the device for a moment while the kernel tears
    // its ring down: retry EBUSY briefly before calling the device busy.
    let open = || {
        OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(flags)
            .open(dev)
    };
    let mut tries = 0;
    let file = loop {
        match open() {
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && tries < 40 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            r => break r,
        }
    };
    let file = file.map_err(|source| {
        if is_read_only(&source) {
            Error::ReadOnly {
                path: dev.to_path_buf(),
                source,
            }
        } else if source.raw_os_error() == Some(libc::EBUSY) {
            Error::TargetInvalid {
                path: dev.to_path_buf(),
                msg: "device is in use (mounted or held by another program)".into(),
            }
        } else {
            Error::Target {
                path: dev.to_path_buf(),
                what: "cannot open device",
                source,
            }
        }
    })?;
    let fd = file.as_raw_fd();
    // Linux lets a read-only device be opened for writing and fails each write: ask first.
    let mut ro: libc::c_int = 0;
    // SAFETY: BLKROGET writes one int.
    if unsafe { blk_roget(fd, &mut ro) }.is_ok() && ro != 0 {
        return Err(Error::ReadOnly {
            path: dev.to_path_buf(),
            source: io::Error::from_raw_os_error(libc::EROFS),
        });
    }
    let mut dev_size = 0u64;
    let mut sector: libc::c_int = 0;
    // SAFETY: both ioctls write one integer into the pointed-to variable.
    unsafe { blk_getsize64(fd, &mut dev_size) }.map_err(|e| Error::Target {
        path: dev.to_path_buf(),
        what: "cannot read device size",
        source: e.into(),
    })?;
    unsafe { blk_sszget(fd, &mut sector) }.map_err(|e| Error::Target {
        path: dev.to_path_buf(),
        what: "cannot read sector size",
        source: e.into(),
    })?;
    if j.direct && sector > 0 && !j.bs.is_multiple_of(sector as u64) {
        return Err(Error::BadFlag {
            flag: "--bs",
            msg: format!(
                "{} is not a multiple of the device's {sector}-byte logical sector (O_DIRECT)",
                crate::units::format_size(j.bs)
            ),
        });
    }
    let need = j.size.saturating_mul(j.jobs as u64);
    if need > dev_size {
        return Err(Error::BadFlag {
            flag: "--size",
            msg: format!(
                "{} × {} jobs does not fit on {} ({})",
                crate::units::format_size(j.size),
                j.jobs,
                dev.display(),
                crate::units::format_size(dev_size)
            ),
        });
    }
    let region = j.size / j.bs * j.bs;
    let mut files = Vec::new();
    for i in 0..j.jobs as u64 {
        files.push(JobFile {
            file: file.try_clone().map_err(|source| Error::Target {
                path: dev.to_path_buf(),
                what: "cannot duplicate descriptor",
                source,
            })?,
            path: dev.to_path_buf(),
            start: i * j.size,
            len: region,
            marker: None,
            reused: false,
        });
    }
    Ok(Prepared {
        files,
        direct: j.direct,
        warnings: Vec::new(),
        created: Vec::new(),
        keep: true,
    })
}

/// Writes every byte of each region with pool data, then fdatasyncs: reads then hit real,
/// incompressible blocks. Stops early (returning `Ok(false)`) when `stop` is set.
pub fn prefill(
    files: &[(File, PathBuf, u64, u64)],
    cursor: &mut PoolCursor,
    stop: &AtomicBool,
    progress: &AtomicU64,
) -> Result<bool, Error> {
    const CHUNK: u64 = 1 << 20;
    for (file, path, start, len) in files {
        let mut done = 0u64;
        while done < *len {
            if stop.load(Ordering::Relaxed) {
                return Ok(false);
            }
            let n = CHUNK.min(len - done);
            let p = cursor.next(n as usize);
            // SAFETY: the cursor hands out n readable bytes that nobody else writes now.
            let data = unsafe { std::slice::from_raw_parts(p, n as usize) };
            file.write_all_at(data, start + done)
                .map_err(|source| Error::Io {
                    path: path.clone(),
                    offset: start + done,
                    op: "prefill write",
                    source,
                })?;
            done += n;
            progress.fetch_add(1, Ordering::Relaxed);
        }
        file.sync_data().map_err(|source| Error::Io {
            path: path.clone(),
            offset: 0,
            op: "prefill fdatasync",
            source,
        })?;
    }
    Ok(true)
}
