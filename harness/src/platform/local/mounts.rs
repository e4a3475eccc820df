//! What the kernel says is mounted (/proc/self/mountinfo), for every local driver kind: the
//! checks kubelet's callers rely on but never make.
//!
//! A driver can print Success without mounting anything; the pod then writes into an empty
//! directory on the node's root filesystem and every check "passes". After each mount call the
//! target must be a mount point (in /proc/self/mountinfo), backed by the attached device when
//! there is one, and mounted once (a repeated call must not stack a second mount).

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

pub use crate::sys::{MountEntry, parse_mountinfo};

/// The live checks' mount counts of one volume: each of `places` (`staging`, `published`)
/// mounted exactly once, and anything else mounted under `root` (the volume's kubelet
/// directory: an earlier pod's target or staging nobody tore down) counted as `orphaned`,
/// expected 0.
pub fn counts_under(
    places: &[(&str, &Path)],
    root: &Path,
) -> io::Result<Vec<crate::platform::MountCount>> {
    let all = mounts()?;
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let count = |p: &Path| all.iter().filter(|m| m.mount_point == p).count();
    let mut out = Vec::new();
    let mut expected = Vec::new();
    for (role, path) in places {
        let c = canon(path);
        out.push(crate::platform::MountCount {
            role: role.to_string(),
            path: path.display().to_string(),
            found: count(&c),
            expected: 1,
        });
        expected.push(c);
    }
    let root = canon(root);
    let mut orphans: Vec<&PathBuf> = all
        .iter()
        .map(|m| &m.mount_point)
        .filter(|m| m.starts_with(&root) && !expected.contains(m))
        .collect();
    orphans.sort();
    orphans.dedup();
    out.extend(orphans.into_iter().map(|o| crate::platform::MountCount {
        role: "orphaned".into(),
        path: o.display().to_string(),
        found: count(o),
        expected: 0,
    }));
    Ok(out)
}

pub fn mounts() -> io::Result<Vec<MountEntry>> {
    Ok(parse_mountinfo(&std::fs::read_to_string(
        "/proc/self/mountinfo",
    )?))
}

/// The mounts stacked on `dir` (resolved), oldest first.
pub fn mounts_at(dir: &Path) -> io::Result<Vec<MountEntry>> {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    Ok(mounts()?
        .into_iter()
        .filter(|m| m.mount_point == dir)
        .collect())
}

/// Mounts at or below `dir`: what a teardown must leave none of.
pub fn mounts_under(dir: &Path) -> io::Result<Vec<MountEntry>> {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    Ok(mounts()?
        .into_iter()
        .filter(|m| m.mount_point.starts_with(&dir))
        .collect())
}

/// (major, minor) of a block device node.
pub fn block_device_number(dev: &Path) -> io::Result<Option<(u32, u32)>> {
    let m = std::fs::metadata(dev)?;
    if !m.file_type().is_block_device() {
        return Ok(None);
    }
    let d = m.rdev();
    let major = ((d >> 8) & 0xfff) | ((d >> 32) & !0xfff);
    let minor = (d & 0xff) | ((d >> 12) & !0xff);
    Ok(Some((major as u32, minor as u32)))
}

/// The file behind a loop device, None when the device is free or not a loop device.
pub fn loop_backing_file(dev: &Path) -> Option<PathBuf> {
    let name = dev.file_name()?.to_str()?;
    if !name.starts_with("loop") {
        return None;
    }
    let s = std::fs::read_to_string(format!("/sys/block/{name}/loop/backing_file")).ok()?;
    Some(PathBuf::from(s.trim_end_matches('\n')))
}

/// How long a loop device may stay attached after its detach answered: `losetup -d` of a
/// device something still holds open (udev's probe after the unmount, on a busy machine) only
/// marks it autoclear, and the kernel detaches it at the last close.
const LOOP_RELEASE: std::time::Duration = std::time::Duration::from_secs(5);

/// Whether loop device `dev` is still attached to `backing` once [`LOOP_RELEASE`] has passed
/// (polled every 100 ms): a deferred detach is not a leak; one still there then is.
pub fn loop_still_backed(dev: &Path, backing: &Path) -> bool {
    let until = std::time::Instant::now() + LOOP_RELEASE;
    loop {
        if loop_backing_file(dev).as_deref() != Some(backing) {
            return false;
        }
        if std::time::Instant::now() >= until {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines_with_escaped_spaces_parse() {
        let text = "36 35 98:0 / /mnt/my\\040dir rw,noatime master:1 - ext4 /dev/loop3 rw,errors=continue\n\
                    37 35 0:30 / /proc rw - proc proc rw\n";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].mount_point, PathBuf::from("/mnt/my dir"));
        assert_eq!((m[0].major, m[0].minor), (98, 0));
        assert_eq!(m[0].fs_type, "ext4");
        assert_eq!(m[0].source, "/dev/loop3");
    }
}
