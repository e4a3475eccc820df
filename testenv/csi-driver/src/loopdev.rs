//! Loop devices by ioctl (what losetup does), so the driver needs no util-linux.
//!
//! Devices are attached without autoclear: a node plugin that restarts must find them still
//! attached (the mounts that use them stay), and detaching is NodeUnstageVolume's job.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;

const LOOP_MAJOR: u64 = 7;
const LO_NAME_SIZE: usize = 64;

#[repr(C)]
#[derive(Clone, Copy)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; LO_NAME_SIZE],
    lo_crypt_name: [u8; LO_NAME_SIZE],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

fn zeroed_info() -> LoopInfo64 {
    LoopInfo64 {
        lo_device: 0,
        lo_inode: 0,
        lo_rdevice: 0,
        lo_offset: 0,
        lo_sizelimit: 0,
        lo_number: 0,
        lo_encrypt_type: 0,
        lo_encrypt_key_size: 0,
        lo_flags: 0,
        lo_file_name: [0; LO_NAME_SIZE],
        lo_crypt_name: [0; LO_NAME_SIZE],
        lo_encrypt_key: [0; 32],
        lo_init: [0; 2],
    }
}

// <linux/loop.h> numbers (plain values, not _IOx-encoded).
nix::ioctl_none_bad!(loop_ctl_get_free, 0x4C82);
nix::ioctl_none_bad!(loop_clr_fd, 0x4C01);
nix::ioctl_read_bad!(loop_get_status64, 0x4C05, LoopInfo64);
nix::ioctl_none_bad!(loop_set_capacity, 0x4C07);
nix::ioctl_write_ptr_bad!(loop_configure, 0x4C0A, LoopConfig);
// BLKGETSIZE64 = _IOR(0x12, 114, size_t)
nix::ioctl_read!(blk_get_size64, 0x12, 114, u64);

/// A loop-device operation failed.
#[derive(Debug, thiserror::Error)]
#[error("{what} {path}: {errno}")]
pub struct LoopError {
    pub what: &'static str,
    pub path: PathBuf,
    pub errno: Errno,
}

fn err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(Errno) -> LoopError + 'a {
    move |errno| LoopError {
        what,
        path: path.to_path_buf(),
        errno,
    }
}

fn io_errno(e: std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

/// `/dev/loopN`, made with mknod if the container's /dev lacks it.
fn device_node(n: u32) -> Result<PathBuf, LoopError> {
    let path = PathBuf::from(format!("/dev/loop{n}"));
    if !path.exists() {
        let dev = nix::sys::stat::makedev(LOOP_MAJOR, u64::from(n));
        nix::sys::stat::mknod(
            &path,
            nix::sys::stat::SFlag::S_IFBLK,
            nix::sys::stat::Mode::from_bits_truncate(0o660),
            dev,
        )
        .or_else(|e| if e == Errno::EEXIST { Ok(()) } else { Err(e) })
        .map_err(err("mknod", &path))?;
    }
    Ok(path)
}

/// Attach a free loop device over `image` and return its path. Retries when another process
/// takes the free device between our GET_FREE and CONFIGURE.
pub fn attach(image: &Path) -> Result<PathBuf, LoopError> {
    let control_path = Path::new("/dev/loop-control");
    let image_file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(image)
        .map_err(|e| err("open", image)(io_errno(e)))?;
    let mut last = Errno::EBUSY;
    for _ in 0..20 {
        let control = OpenOptions::new()
            .read(true)
            .write(true)
            .open(control_path)
            .map_err(|e| err("open", control_path)(io_errno(e)))?;
        // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a device number.
        let n = unsafe { loop_ctl_get_free(control.as_raw_fd()) }
            .map_err(err("LOOP_CTL_GET_FREE", control_path))?;
        let dev_path = device_node(n as u32)?;
        let dev = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&dev_path)
            .map_err(|e| err("open", &dev_path)(io_errno(e)))?;
        let mut info = zeroed_info();
        let name = image.as_os_str().as_encoded_bytes();
        let len = name.len().min(LO_NAME_SIZE - 1);
        info.lo_file_name[..len].copy_from_slice(&name[..len]);
        let config = LoopConfig {
            fd: image_file.as_raw_fd() as u32,
            block_size: 0,
            info,
            reserved: [0; 8],
        };
        // SAFETY: config is a valid, fully initialised struct loop_config.
        match unsafe { loop_configure(dev.as_raw_fd(), &config) } {
            Ok(_) => return Ok(dev_path),
            Err(Errno::EBUSY) => last = Errno::EBUSY,
            Err(e) => return Err(err("LOOP_CONFIGURE", &dev_path)(e)),
        }
    }
    Err(err("LOOP_CONFIGURE", image)(last))
}

/// Whether `device` is attached to exactly the file `image` (same device and inode).
pub fn is_attached_to(device: &Path, image: &Path) -> bool {
    let (Ok(dev), Ok(meta)) = (File::open(device), std::fs::metadata(image)) else {
        return false;
    };
    let mut info = zeroed_info();
    // SAFETY: info is a valid out-buffer of the size the ioctl writes.
    match unsafe { loop_get_status64(dev.as_raw_fd(), &mut info) } {
        Ok(_) => info.lo_device == meta.dev() && info.lo_inode == meta.ino(),
        Err(_) => false,
    }
}

/// Detach `device` (the kernel finishes it once the last user closes it). Already detached → Ok.
pub fn detach(device: &Path) -> Result<(), LoopError> {
    let dev = match File::open(device) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(err("open", device)(io_errno(e))),
    };
    // SAFETY: LOOP_CLR_FD takes no argument.
    match unsafe { loop_clr_fd(dev.as_raw_fd()) } {
        Ok(_) | Err(Errno::ENXIO) => Ok(()),
        Err(e) => Err(err("LOOP_CLR_FD", device)(e)),
    }
}

/// Re-read the backing file's size after it grew.
pub fn refresh_capacity(device: &Path) -> Result<(), LoopError> {
    let dev = File::open(device).map_err(|e| err("open", device)(io_errno(e)))?;
    // SAFETY: LOOP_SET_CAPACITY takes no argument.
    unsafe { loop_set_capacity(dev.as_raw_fd()) }.map_err(err("LOOP_SET_CAPACITY", device))?;
    Ok(())
}

/// Size in bytes of a block device.
pub fn device_size(device: &Path) -> Result<u64, LoopError> {
    let dev = File::open(device).map_err(|e| err("open", device)(io_errno(e)))?;
    let mut size = 0u64;
    // SAFETY: size is a valid u64 out-parameter.
    unsafe { blk_get_size64(dev.as_raw_fd(), &mut size) }.map_err(err("BLKGETSIZE64", device))?;
    Ok(size)
}

/// Whether `path` is a block device node.
pub fn is_block_device(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_block_device())
}
