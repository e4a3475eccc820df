//! Mounts by syscall (no mount(8)): bind mounts, read-only remounts, filesystem mounts of a
//! loop device, and the mount table read from /proc/self/mountinfo.

use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags, mount, umount2};

/// Bind `source` onto `target`, read-only if asked (a bind mount ignores MS_RDONLY, so that takes
/// a second, remounting call).
pub fn bind(source: &Path, target: &Path, readonly: bool) -> Result<(), Errno> {
    mount(
        Some(source),
        target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )?;
    if readonly {
        let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
        if let Err(e) = mount(None::<&str>, target, None::<&str>, flags, None::<&str>) {
            let _ = umount2(target, MntFlags::empty());
            return Err(e);
        }
    }
    Ok(())
}

/// Mount the filesystem on `device` at `target`. `options` are mount(8)-style flags; the ones
/// that are MsFlags are turned into flags, the rest passed as data.
pub fn mount_fs(
    device: &Path,
    target: &Path,
    fs_type: &str,
    options: &[String],
    readonly: bool,
) -> Result<(), Errno> {
    let mut flags = MsFlags::empty();
    let mut data = Vec::new();
    for opt in options
        .iter()
        .flat_map(|o| o.split(','))
        .filter(|o| !o.is_empty())
    {
        match opt {
            "ro" => flags |= MsFlags::MS_RDONLY,
            "rw" | "defaults" => {}
            "noatime" => flags |= MsFlags::MS_NOATIME,
            "nodiratime" => flags |= MsFlags::MS_NODIRATIME,
            "nosuid" => flags |= MsFlags::MS_NOSUID,
            "nodev" => flags |= MsFlags::MS_NODEV,
            "noexec" => flags |= MsFlags::MS_NOEXEC,
            "sync" => flags |= MsFlags::MS_SYNCHRONOUS,
            other => data.push(other.to_string()),
        }
    }
    if readonly {
        flags |= MsFlags::MS_RDONLY;
    }
    let data = data.join(",");
    mount(
        Some(device),
        target,
        Some(fs_type),
        flags,
        (!data.is_empty()).then_some(data.as_str()),
    )
}

/// Unmount `target` if something is mounted there (every layer of it). Not mounted → Ok.
pub fn unmount_all(target: &Path) -> Result<(), Errno> {
    for _ in 0..16 {
        if !is_mount_point(target) {
            return Ok(());
        }
        match umount2(target, MntFlags::empty()) {
            Ok(()) => {}
            Err(Errno::EINVAL | Errno::ENOENT) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    Err(Errno::EBUSY)
}

/// The mount points of this mount namespace with their filesystem types, in mount order.
pub fn mount_entries() -> Vec<(PathBuf, String)> {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| {
            let point = line.split(' ').nth(4)?;
            let (_, after) = line.split_once(" - ")?;
            let fs_type = after.split(' ').next()?;
            Some((PathBuf::from(unescape(point)), unescape(fs_type)))
        })
        .collect()
}

/// The mount points of this mount namespace.
pub fn mount_points() -> Vec<PathBuf> {
    mount_entries().into_iter().map(|(p, _)| p).collect()
}

/// `path` made absolute and free of symlinks where possible. A dead FUSE mount cannot be
/// resolved itself (ENOTCONN), but its parent can.
fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path)
        .ok()
        .or_else(|| {
            let parent = std::fs::canonicalize(path.parent()?).ok()?;
            Some(parent.join(path.file_name()?))
        })
        .unwrap_or_else(|| path.to_path_buf())
}

/// Whether `path` is a mount point.
pub fn is_mount_point(path: &Path) -> bool {
    let canonical = canonical(path);
    mount_points().iter().any(|m| m == &canonical || m == path)
}

/// The filesystem type of the topmost mount at `path` (`fuse.pvcheck-passthrough`, `ext4`, …).
pub fn fs_type_at(path: &Path) -> Option<String> {
    let canonical = canonical(path);
    mount_entries()
        .into_iter()
        .rev()
        .find(|(m, _)| m == &canonical || m == path)
        .map(|(_, t)| t)
}

/// mountinfo escapes space, tab, newline and backslash as \ooo.
fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let v = (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape("/a\\040b\\134c"), "/a b\\c");
        assert_eq!(unescape("/plain"), "/plain");
        assert_eq!(unescape("/end\\04"), "/end\\04");
    }

    #[test]
    fn root_is_a_mount_point() {
        assert!(is_mount_point(Path::new("/")));
        assert!(fs_type_at(Path::new("/")).is_some_and(|t| !t.is_empty()));
        assert_eq!(fs_type_at(Path::new("/no/such/mount")), None);
    }
}
