//! Opening the target: per-job files in a directory (created by us, removed unless `--keep`)
//! or regions of a raw block device; O_DIRECT where the filesystem accepts it; prefill.

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
        keep: spec.keep,
    };
    let region = j.size / j.bs * j.bs;
    for i in 0..j.jobs {
        let path = dir.join(format!("pvcheck-bench.{}.{i}", std::process::id()));
        // Create without O_DIRECT first: tmpfs creates the file and only then refuses
        // O_DIRECT, and O_EXCL guarantees we only ever remove a file we created.
        let created = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|source| {
                if is_read_only(&source) {
                    Error::ReadOnly {
                        path: dir.to_path_buf(),
                        source,
                    }
                } else {
                    Error::Target {
                        path: path.clone(),
                        what: "cannot create the job file",
                        source,
                    }
                }
            })?;
        prep.created.push(path.clone());
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
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(flags)
        .open(dev)
        .map_err(|source| {
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
