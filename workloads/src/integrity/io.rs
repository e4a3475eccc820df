//! Low-level I/O: aligned buffers, O_DIRECT with a reasoned fallback, positional reads and
//! writes that name the failing path and errno.

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use super::error::Error;
use super::report::ReadMode;

/// O_DIRECT needs buffers (and offsets, lengths) aligned to the logical block size; 4096 covers
/// every device in practice.
pub const ALIGN: usize = 4096;

/// A zeroed heap buffer aligned to [`ALIGN`].
pub struct AlignedBuf {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: AlignedBuf owns its allocation exclusively, like a Vec<u8>.
unsafe impl Send for AlignedBuf {}

impl AlignedBuf {
    pub fn new(len: usize) -> AlignedBuf {
        let layout = Layout::from_size_align(len.max(ALIGN), ALIGN).expect("buffer layout");
        // SAFETY: layout has non-zero size.
        let ptr = unsafe { alloc_zeroed(layout) };
        if ptr.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        AlignedBuf { ptr, len }
    }
}

impl std::ops::Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: ptr is valid for len bytes for the lifetime of self.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl std::ops::DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: ptr is valid for len bytes and uniquely borrowed.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        let layout = Layout::from_size_align(self.len.max(ALIGN), ALIGN).expect("buffer layout");
        // SAFETY: allocated in `new` with this layout.
        unsafe { dealloc(self.ptr, layout) }
    }
}

/// Opens for reading in the given mode.
pub fn open_read(path: &Path, mode: ReadMode) -> io::Result<File> {
    let mut o = OpenOptions::new();
    o.read(true);
    if mode == ReadMode::Direct {
        o.custom_flags(libc::O_DIRECT);
    }
    o.open(path)
}

/// Decides the read mode for a target by opening `probe` with O_DIRECT and reading its first
/// block: a filesystem that refuses either (tmpfs on older kernels, some FUSE and network
/// filesystems) gets buffered reads, and the reason is reported.
pub fn probe_read_mode(probe: &Path, bs: usize) -> (ReadMode, Option<String>) {
    let f = match open_read(probe, ReadMode::Direct) {
        Ok(f) => f,
        Err(e) => {
            return (
                ReadMode::Buffered,
                Some(format!(
                    "O_DIRECT open of {} refused: {}",
                    probe.display(),
                    errno_name(&e)
                )),
            );
        }
    };
    // Read exactly one block: every later read has the block size's alignment, so a device
    // whose logical sector is larger than the block size fails here, not halfway through.
    let mut buf = AlignedBuf::new(bs.max(ALIGN));
    match f.read_at(&mut buf[..bs], 0) {
        Ok(_) => (ReadMode::Direct, None),
        Err(e) => (
            ReadMode::Buffered,
            Some(format!(
                "O_DIRECT read of {} refused: {}",
                probe.display(),
                errno_name(&e)
            )),
        ),
    }
}

/// True when the kernel serves reads of `path` by copying from memory even with O_DIRECT:
/// tmpfs, which accepts O_DIRECT since Linux 6.6 and answers it from its page cache. Such
/// reads are best made in slices that stay in the CPU's cache for the check that follows.
pub fn direct_reads_copy(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .map(|s| s.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC)
        .unwrap_or(false)
}

/// `EINVAL`, `ENOSPC`… for messages.
pub fn errno_name(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(c) => format!("{:?}", nix::errno::Errno::from_raw(c)),
        None => e.to_string(),
    }
}

/// Drops cached pages of a range so a buffered read goes to the device (best effort: dirty pages
/// stay, which is why writers sync before verify runs).
pub fn drop_cache(f: &File, offset: u64, len: u64) {
    // SAFETY: plain syscall on a valid fd.
    unsafe {
        libc::posix_fadvise(
            f.as_raw_fd(),
            offset as libc::off_t,
            len as libc::off_t,
            libc::POSIX_FADV_DONTNEED,
        );
    }
}

/// Reads as many bytes as the file has at `offset` into `buf`, up to its length; returns the count.
pub fn read_full_at(f: &File, buf: &mut [u8], offset: u64, path: &Path) -> Result<usize, Error> {
    let mut done = 0;
    while done < buf.len() {
        match f.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(Error::io(
                    path,
                    &format!("read at offset {}", offset + done as u64),
                    e,
                ));
            }
        }
    }
    Ok(done)
}

/// Writes all of `buf` at `offset`.
pub fn write_full_at(f: &File, buf: &[u8], offset: u64, path: &Path) -> Result<(), Error> {
    f.write_all_at(buf, offset)
        .map_err(|e| Error::io(path, &format!("write at offset {offset}"), e))
}

/// Size of a regular file or block device.
pub fn target_size(f: &File, path: &Path) -> Result<u64, Error> {
    use std::io::Seek;
    let mut f = f;
    f.seek(io::SeekFrom::End(0))
        .map_err(|e| Error::io(path, "seek to end", e))
}

/// Flushes every dirty page of the filesystem holding `dir` (one call instead of one fsync per
/// file: thousands of small files would otherwise cost thousands of journal commits).
pub fn sync_filesystem(dir: &Path) -> Result<(), Error> {
    let f = File::open(dir).map_err(|e| Error::io(dir, "open for syncfs", e))?;
    // SAFETY: plain syscall on a valid fd.
    let rc = unsafe { libc::syncfs(f.as_raw_fd()) };
    if rc != 0 {
        return Err(Error::io(dir, "syncfs", io::Error::last_os_error()));
    }
    f.sync_all()
        .map_err(|e| Error::io(dir, "fsync directory", e))
}
