//! A FUSE passthrough filesystem (crate `fuser`, mounted by mount(2) on /dev/fuse: no libfuse,
//! no fusermount): every request is done on a source directory, so a FUSE data path serves the
//! volume's own files. Each inode the kernel knows is an `O_PATH` descriptor of the backing
//! file, so renames of open or looked-up files need no path bookkeeping; file handles are plain
//! descriptors, and `fsync`/`fdatasync` reach the backing file.
//!
//! Entries and attributes are never cached by the kernel (zero TTL) and page-cache contents are
//! dropped at every open, so what the mount shows is what the backing directory holds, also when
//! something else changes it underneath (a second publication, `--lose-acked-writes-on-restart`).

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{DirEntryExt, FileExt, FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, OpenFlags,
    RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry,
    ReplyOpen, ReplyStatfs, ReplyWrite, Request, SessionACL, TimeOrNow, WriteFlags,
};
use nix::fcntl::{AT_FDCWD, AtFlags, OFlag, openat};
use nix::sys::stat::{FchmodatFlags, FileStat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, UnlinkatFlags};

/// The mount's filesystem type is `fuse.<SUBTYPE>` in /proc/self/mountinfo.
pub const SUBTYPE: &str = "pvcheck-passthrough";
/// The mount's source in /proc/self/mountinfo.
pub const FS_NAME: &str = "pvcheck-test-csi";
/// Request threads per mount (an fsync does not hold up the probes of a live-upgrade check).
const THREADS: usize = 4;
/// Largest read answered at once (the kernel asks for at most max_read/max_pages anyway).
const MAX_READ: usize = 1 << 20;
const TTL: Duration = Duration::ZERO;

/// An inode the kernel holds a lookup count on.
struct Inode {
    fd: Arc<OwnedFd>,
    key: (u64, u64),
    lookups: u64,
}

/// One directory listing, taken at opendir.
struct Listing(Vec<(u64, FileType, OsString)>);

#[derive(Default)]
struct Tables {
    inodes: HashMap<u64, Inode>,
    by_key: HashMap<(u64, u64), u64>,
    next_ino: u64,
    files: HashMap<u64, Arc<File>>,
    dirs: HashMap<u64, Arc<Listing>>,
    next_fh: u64,
}

pub struct Passthrough {
    tables: Mutex<Tables>,
    root_owner: bool,
}

fn errno(e: nix::errno::Errno) -> Errno {
    Errno::from_i32(e as i32)
}

fn io_errno(e: io::Error) -> Errno {
    Errno::from_i32(e.raw_os_error().unwrap_or(libc::EIO))
}

/// /proc/self/fd/N: reopens an `O_PATH` descriptor with real access, or names it to calls
/// that take no descriptor.
fn proc_path(fd: &impl AsRawFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

fn time(sec: i64, nsec: i64) -> SystemTime {
    let nsec = nsec.clamp(0, 999_999_999) as u32;
    if sec >= 0 {
        UNIX_EPOCH + Duration::new(sec as u64, nsec)
    } else {
        UNIX_EPOCH - Duration::from_secs(sec.unsigned_abs()) + Duration::from_nanos(nsec.into())
    }
}

fn kind_of(mode: u32) -> FileType {
    match mode & libc::S_IFMT {
        libc::S_IFDIR => FileType::Directory,
        libc::S_IFLNK => FileType::Symlink,
        libc::S_IFIFO => FileType::NamedPipe,
        libc::S_IFSOCK => FileType::Socket,
        libc::S_IFCHR => FileType::CharDevice,
        libc::S_IFBLK => FileType::BlockDevice,
        _ => FileType::RegularFile,
    }
}

fn attr_of(st: &FileStat) -> FileAttr {
    let ctime = time(st.st_ctime, st.st_ctime_nsec);
    FileAttr {
        ino: INodeNo(st.st_ino),
        size: st.st_size as u64,
        blocks: st.st_blocks as u64,
        atime: time(st.st_atime, st.st_atime_nsec),
        mtime: time(st.st_mtime, st.st_mtime_nsec),
        ctime,
        crtime: ctime,
        kind: kind_of(st.st_mode),
        perm: (st.st_mode & 0o7777) as u16,
        nlink: st.st_nlink as u32,
        uid: st.st_uid,
        gid: st.st_gid,
        rdev: st.st_rdev as u32,
        blksize: st.st_blksize as u32,
        flags: 0,
    }
}

fn timespec(t: Option<TimeOrNow>) -> TimeSpec {
    match t {
        None => TimeSpec::UTIME_OMIT,
        Some(TimeOrNow::Now) => TimeSpec::UTIME_NOW,
        Some(TimeOrNow::SpecificTime(t)) => match t.duration_since(UNIX_EPOCH) {
            Ok(d) => TimeSpec::from_duration(d),
            Err(before) => {
                TimeSpec::from_duration(Duration::ZERO) - TimeSpec::from_duration(before.duration())
            }
        },
    }
}

/// Open flags for the backing file: the kernel's, minus what only made sense for the FUSE
/// file (O_DIRECT would impose alignment on our buffers) or was already done.
fn backing_flags(flags: i32) -> OFlag {
    let drop = OFlag::O_CREAT
        | OFlag::O_EXCL
        | OFlag::O_NOCTTY
        | OFlag::O_NOFOLLOW
        | OFlag::O_DIRECT
        | OFlag::O_PATH;
    (OFlag::from_bits_truncate(flags) - drop) | OFlag::O_CLOEXEC
}

impl Passthrough {
    /// A filesystem serving `source` (a directory).
    pub fn new(source: &Path) -> io::Result<Passthrough> {
        let fd = nix::fcntl::open(
            source,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(io::Error::from)?;
        let st = nix::sys::stat::fstat(&fd).map_err(io::Error::from)?;
        let mut tables = Tables {
            next_ino: INodeNo::ROOT.0 + 1,
            next_fh: 1,
            ..Tables::default()
        };
        let key = (st.st_dev, st.st_ino);
        tables.inodes.insert(
            INodeNo::ROOT.0,
            Inode {
                fd: Arc::new(fd),
                key,
                lookups: 1,
            },
        );
        tables.by_key.insert(key, INodeNo::ROOT.0);
        Ok(Passthrough {
            tables: Mutex::new(tables),
            root_owner: nix::unistd::geteuid().is_root(),
        })
    }

    fn tables(&self) -> std::sync::MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn inode(&self, ino: INodeNo) -> Result<Arc<OwnedFd>, Errno> {
        self.tables()
            .inodes
            .get(&ino.0)
            .map(|i| i.fd.clone())
            .ok_or(Errno::ESTALE)
    }

    fn file(&self, fh: FileHandle) -> Result<Arc<File>, Errno> {
        self.tables().files.get(&fh.0).cloned().ok_or(Errno::EBADF)
    }

    /// Look `name` up under `parent` and count one kernel reference to it.
    fn lookup_entry(&self, parent: INodeNo, name: &OsStr) -> Result<FileAttr, Errno> {
        let dir = self.inode(parent)?;
        let fd = openat(
            dir.as_fd(),
            name,
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(errno)?;
        let st = nix::sys::stat::fstat(&fd).map_err(errno)?;
        let key = (st.st_dev, st.st_ino);
        let mut t = self.tables();
        let ino = match t.by_key.get(&key).copied() {
            Some(ino) => {
                // The descriptor we hold keeps the backing inode alive: same key, same file.
                t.inodes.get_mut(&ino).expect("indexed").lookups += 1;
                ino
            }
            None => {
                let ino = t.next_ino;
                t.next_ino += 1;
                t.inodes.insert(
                    ino,
                    Inode {
                        fd: Arc::new(fd),
                        key,
                        lookups: 1,
                    },
                );
                t.by_key.insert(key, ino);
                ino
            }
        };
        let mut attr = attr_of(&st);
        attr.ino = INodeNo(ino);
        Ok(attr)
    }

    /// A new node belongs to the caller (a real filesystem does that; our process is root), its
    /// group the directory's when the directory is set-group-ID; then its mode is set exactly,
    /// whatever our umask took away.
    fn take_ownership(
        &self,
        req: &Request,
        dir: &OwnedFd,
        name: &OsStr,
        mode: Option<u32>,
    ) -> Result<(), Errno> {
        if self.root_owner {
            let parent = nix::sys::stat::fstat(dir).map_err(errno)?;
            let gid = (parent.st_mode & libc::S_ISGID == 0).then(|| Gid::from_raw(req.gid()));
            nix::unistd::fchownat(
                dir.as_fd(),
                name,
                Some(Uid::from_raw(req.uid())),
                gid,
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map_err(errno)?;
        }
        if let Some(mode) = mode {
            let st = nix::sys::stat::fstatat(dir.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW)
                .map_err(errno)?;
            // A directory created in a set-group-ID directory keeps the bit it inherited.
            let keep = if kind_of(st.st_mode) == FileType::Directory {
                st.st_mode & libc::S_ISGID
            } else {
                0
            };
            nix::sys::stat::fchmodat(
                dir.as_fd(),
                name,
                Mode::from_bits_truncate((mode & 0o7777) | keep),
                FchmodatFlags::FollowSymlink,
            )
            .map_err(errno)?;
        }
        Ok(())
    }

    fn stat(&self, ino: INodeNo, fh: Option<FileHandle>) -> Result<FileAttr, Errno> {
        let st = match fh.and_then(|fh| self.tables().files.get(&fh.0).cloned()) {
            Some(f) => nix::sys::stat::fstat(&*f),
            None => nix::sys::stat::fstat(&*self.inode(ino)?),
        }
        .map_err(errno)?;
        let mut attr = attr_of(&st);
        attr.ino = ino;
        Ok(attr)
    }

    fn add_file(&self, f: File) -> FileHandle {
        let mut t = self.tables();
        let fh = t.next_fh;
        t.next_fh += 1;
        t.files.insert(fh, Arc::new(f));
        FileHandle(fh)
    }

    #[allow(clippy::too_many_arguments)]
    fn set_attr(
        &self,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        fh: Option<FileHandle>,
    ) -> Result<FileAttr, Errno> {
        let fd = self.inode(ino)?;
        let path = proc_path(&*fd);
        if let Some(mode) = mode {
            nix::sys::stat::fchmodat(
                AT_FDCWD,
                &path,
                Mode::from_bits_truncate(mode & 0o7777),
                FchmodatFlags::FollowSymlink,
            )
            .map_err(errno)?;
        }
        if uid.is_some() || gid.is_some() {
            nix::unistd::fchownat(
                fd.as_fd(),
                "",
                uid.map(Uid::from_raw),
                gid.map(Gid::from_raw),
                AtFlags::AT_EMPTY_PATH | AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map_err(errno)?;
        }
        if let Some(size) = size {
            match fh.map(|fh| self.file(fh)).transpose()? {
                Some(f) => f.set_len(size).map_err(io_errno)?,
                None => nix::unistd::truncate(&path, size as libc::off_t).map_err(errno)?,
            }
        }
        if atime.is_some() || mtime.is_some() {
            nix::sys::stat::utimensat(
                AT_FDCWD,
                &path,
                &timespec(atime),
                &timespec(mtime),
                UtimensatFlags::FollowSymlink,
            )
            .map_err(errno)?;
        }
        self.stat(ino, fh)
    }

    fn make_node(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: Option<u32>,
        make: impl FnOnce(&OwnedFd) -> nix::Result<()>,
    ) -> Result<FileAttr, Errno> {
        let dir = self.inode(parent)?;
        make(&dir).map_err(errno)?;
        self.take_ownership(req, &dir, name, mode)?;
        self.lookup_entry(parent, name)
    }

    fn create_file(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
    ) -> Result<(FileAttr, FileHandle), Errno> {
        let dir = self.inode(parent)?;
        let mode = mode & !umask & 0o7777;
        let base = backing_flags(flags);
        let fd = match openat(
            dir.as_fd(),
            name,
            base | OFlag::O_CREAT | OFlag::O_EXCL,
            Mode::from_bits_truncate(mode),
        ) {
            Ok(fd) => {
                self.take_ownership(req, &dir, name, Some(mode))?;
                fd
            }
            // Someone else made it in between: open it as it is, unless O_EXCL was asked.
            Err(nix::errno::Errno::EEXIST) if flags & libc::O_EXCL == 0 => {
                openat(dir.as_fd(), name, base, Mode::empty()).map_err(errno)?
            }
            Err(e) => return Err(errno(e)),
        };
        let attr = self.lookup_entry(parent, name)?;
        Ok((attr, self.add_file(File::from(fd))))
    }

    fn list(&self, ino: INodeNo) -> Result<Listing, Errno> {
        let fd = self.inode(ino)?;
        let st = nix::sys::stat::fstat(&*fd).map_err(errno)?;
        let mut out = vec![
            (st.st_ino, FileType::Directory, OsString::from(".")),
            (st.st_ino, FileType::Directory, OsString::from("..")),
        ];
        for entry in std::fs::read_dir(proc_path(&*fd)).map_err(io_errno)? {
            let entry = entry.map_err(io_errno)?;
            let ft = entry.file_type().map_err(io_errno)?;
            let kind = if ft.is_dir() {
                FileType::Directory
            } else if ft.is_symlink() {
                FileType::Symlink
            } else if ft.is_fifo() {
                FileType::NamedPipe
            } else if ft.is_socket() {
                FileType::Socket
            } else if ft.is_char_device() {
                FileType::CharDevice
            } else if ft.is_block_device() {
                FileType::BlockDevice
            } else {
                FileType::RegularFile
            };
            out.push((entry.ino(), kind, entry.file_name()));
        }
        Ok(Listing(out))
    }
}

impl Filesystem for Passthrough {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.lookup_entry(parent, name) {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        if ino == INodeNo::ROOT {
            return;
        }
        let mut t = self.tables();
        let gone = match t.inodes.get_mut(&ino.0) {
            Some(i) => {
                i.lookups = i.lookups.saturating_sub(nlookup);
                (i.lookups == 0).then_some(i.key)
            }
            None => None,
        };
        if let Some(key) = gone {
            t.inodes.remove(&ino.0);
            t.by_key.remove(&key);
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.stat(ino, fh) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        match self.set_attr(ino, mode, uid, gid, size, atime, mtime, fh) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let result = self
            .inode(ino)
            .and_then(|fd| nix::fcntl::readlinkat(fd.as_fd(), "").map_err(errno));
        match result {
            Ok(target) => {
                use std::os::unix::ffi::OsStrExt;
                reply.data(target.as_bytes())
            }
            Err(e) => reply.error(e),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let perm = mode & !umask & 0o7777;
        let result = self.make_node(req, parent, name, Some(perm), |dir| {
            nix::sys::stat::mknodat(
                dir.as_fd(),
                name,
                SFlag::from_bits_truncate(mode & libc::S_IFMT),
                Mode::from_bits_truncate(perm),
                rdev.into(),
            )
        });
        match result {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let perm = mode & !umask & 0o7777;
        let result = self.make_node(req, parent, name, Some(perm), |dir| {
            nix::sys::stat::mkdirat(dir.as_fd(), name, Mode::from_bits_truncate(perm))
        });
        match result {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.inode(parent).and_then(|dir| {
            nix::unistd::unlinkat(dir.as_fd(), name, UnlinkatFlags::NoRemoveDir).map_err(errno)
        }) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.inode(parent).and_then(|dir| {
            nix::unistd::unlinkat(dir.as_fd(), name, UnlinkatFlags::RemoveDir).map_err(errno)
        }) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let result = self.make_node(req, parent, link_name, None, |dir| {
            nix::unistd::symlinkat(target, dir.as_fd(), link_name)
        });
        match result {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let result = self.inode(parent).and_then(|from| {
            let to = self.inode(newparent)?;
            nix::fcntl::renameat2(
                from.as_fd(),
                name,
                to.as_fd(),
                newname,
                nix::fcntl::RenameFlags::from_bits_truncate(flags.bits()),
            )
            .map_err(errno)
        });
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let result = self.inode(ino).and_then(|fd| {
            let dir = self.inode(newparent)?;
            nix::unistd::linkat(
                AT_FDCWD,
                &proc_path(&*fd),
                dir.as_fd(),
                newname,
                AtFlags::AT_SYMLINK_FOLLOW,
            )
            .map_err(errno)?;
            self.lookup_entry(newparent, newname)
        });
        match result {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let result = self.inode(ino).and_then(|fd| {
            nix::fcntl::open(&proc_path(&*fd), backing_flags(flags.0), Mode::empty()).map_err(errno)
        });
        match result {
            Ok(fd) => reply.opened(self.add_file(File::from(fd)), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyData,
    ) {
        let result = self.file(fh).and_then(|f| {
            let mut buf = vec![0u8; (size as usize).min(MAX_READ)];
            let mut filled = 0;
            while filled < buf.len() {
                match f.read_at(&mut buf[filled..], offset + filled as u64) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(io_errno(e)),
                }
            }
            buf.truncate(filled);
            Ok(buf)
        });
        match result {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyWrite,
    ) {
        match self
            .file(fh)
            .and_then(|f| f.write_all_at(data, offset).map_err(io_errno))
        {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _lock_owner: fuser::LockOwner,
        reply: ReplyEmpty,
    ) {
        match self.file(fh) {
            Ok(_) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.tables().files.remove(&fh.0);
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        let result = self.file(fh).and_then(|f| {
            if datasync {
                f.sync_data()
            } else {
                f.sync_all()
            }
            .map_err(io_errno)
        });
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.list(ino) {
            Ok(listing) => {
                let mut t = self.tables();
                let fh = t.next_fh;
                t.next_fh += 1;
                t.dirs.insert(fh, Arc::new(listing));
                drop(t);
                reply.opened(FileHandle(fh), FopenFlags::empty())
            }
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let Some(listing) = self.tables().dirs.get(&fh.0).cloned() else {
            return reply.error(Errno::EBADF);
        };
        for (i, (ino, kind, name)) in listing.0.iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(*ino), i as u64 + 1, *kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.tables().dirs.remove(&fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        let result = self.inode(ino).and_then(|fd| {
            let dir = File::open(proc_path(&*fd)).map_err(io_errno)?;
            if datasync {
                dir.sync_data()
            } else {
                dir.sync_all()
            }
            .map_err(io_errno)
        });
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let result = self
            .inode(INodeNo::ROOT)
            .and_then(|fd| nix::sys::statvfs::fstatvfs(&*fd).map_err(errno));
        match result {
            Ok(st) => reply.statfs(
                st.blocks(),
                st.blocks_free(),
                st.blocks_available(),
                st.files(),
                st.files_free(),
                st.block_size() as u32,
                st.name_max() as u32,
                st.fragment_size() as u32,
            ),
            Err(e) => reply.error(e),
        }
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        // Mounted with default_permissions: the kernel checks the mode bits itself.
        reply.ok();
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        match self.create_file(req, parent, name, mode, umask, flags) {
            Ok((attr, fh)) => reply.created(&TTL, &attr, Generation(0), fh, FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let result = self.file(fh).and_then(|f| {
            nix::fcntl::fallocate(
                &*f,
                nix::fcntl::FallocateFlags::from_bits_truncate(mode),
                offset as libc::off_t,
                length as libc::off_t,
            )
            .map_err(errno)
        });
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }
}

/// Mount a passthrough of `source` at `target` and return the session that will serve it (it
/// serves nothing until it runs). The mount is made here, by mount(2) on a /dev/fuse descriptor
/// (as root: no libfuse, no fusermount), and the session is built on that descriptor: fuser's
/// own mount would unmount the *path* again when its session ends, which after an unmount by
/// NodeUnpublishVolume could hit the next mount at the same target. The descriptor is
/// close-on-exec, so only this process can ever serve the mount.
pub fn mount(
    source: &Path,
    target: &Path,
    readonly: bool,
) -> io::Result<fuser::Session<Passthrough>> {
    let fs = Passthrough::new(source)?;
    let dev = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")?;
    let root_type = std::fs::metadata(source)?.mode() & libc::S_IFMT;
    // allow_other: pods run as other users than the driver; default_permissions: the kernel
    // checks mode bits as for any filesystem.
    let data = format!(
        "fd={},rootmode={root_type:o},user_id={},group_id={},allow_other,default_permissions",
        dev.as_raw_fd(),
        nix::unistd::geteuid(),
        nix::unistd::getegid()
    );
    let mut flags = nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV;
    if readonly {
        flags |= nix::mount::MsFlags::MS_RDONLY;
    }
    nix::mount::mount(
        Some(FS_NAME),
        target,
        Some(format!("fuse.{SUBTYPE}").as_str()),
        flags,
        Some(data.as_str()),
    )?;
    let mut config = fuser::Config::default();
    config.n_threads = Some(THREADS);
    config.acl = SessionACL::All;
    fuser::Session::from_fd(fs, OwnedFd::from(dev), SessionACL::All, config).inspect_err(|_| {
        let _ = nix::mount::umount2(target, nix::mount::MntFlags::MNT_DETACH);
    })
}
