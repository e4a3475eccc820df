//! Copies of volume data for snapshots, restores and clones: directory trees (files, dirs,
//! symlinks, permission bits) and sparse files (all-zero 1 MiB chunks become holes).

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

const CHUNK: usize = 1 << 20;

/// Copy `from` to `to` (created or truncated), leaving holes where `from` reads as zeros.
pub fn sparse_file(from: &Path, to: &Path) -> io::Result<u64> {
    let mut src = File::open(from)?;
    let len = src.metadata()?.len();
    let mut dst = File::create(to)?;
    let mut buf = vec![0u8; CHUNK];
    let mut pos = 0u64;
    loop {
        let n = read_full(&mut src, &mut buf)?;
        if n == 0 {
            break;
        }
        if buf[..n].iter().all(|&b| b == 0) {
            dst.seek(SeekFrom::Current(n as i64))?;
        } else {
            dst.write_all(&buf[..n])?;
        }
        pos += n as u64;
    }
    dst.set_len(pos.max(len))?;
    dst.sync_all()?;
    fs::set_permissions(to, fs::metadata(from)?.permissions())?;
    Ok(pos)
}

fn read_full(f: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match f.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Copy the tree under `from` into the existing directory `to`. Device nodes, sockets and
/// fifos are skipped (a hostpath volume holds user data).
pub fn tree(from: &Path, to: &Path) -> io::Result<()> {
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let src = entry.path();
        let dst = to.join(entry.file_name());
        let ft = entry.file_type()?;
        if ft.is_dir() {
            fs::create_dir(&dst)?;
            tree(&src, &dst)?;
            fs::set_permissions(&dst, fs::metadata(&src)?.permissions())?;
        } else if ft.is_file() {
            sparse_file(&src, &dst)?;
        } else if ft.is_symlink() {
            symlink(fs::read_link(&src)?, &dst)?;
        }
    }
    let mode = fs::metadata(from)?.permissions().mode();
    fs::set_permissions(to, fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// Bytes used by the regular files of a tree (a snapshot's size).
pub fn tree_size(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(ft) if ft.is_dir() => tree_size(&e.path()),
            Ok(ft) if ft.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_copy_keeps_content_links_and_holes() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        fs::create_dir(a.path().join("sub")).unwrap();
        fs::write(a.path().join("sub/f"), b"hello").unwrap();
        let big = File::create(a.path().join("sparse")).unwrap();
        big.set_len(3 * CHUNK as u64 + 7).unwrap();
        symlink("sub/f", a.path().join("link")).unwrap();
        tree(a.path(), b.path()).unwrap();
        assert_eq!(fs::read(b.path().join("sub/f")).unwrap(), b"hello");
        assert_eq!(
            fs::read_link(b.path().join("link")).unwrap(),
            Path::new("sub/f")
        );
        assert_eq!(
            fs::metadata(b.path().join("sparse")).unwrap().len(),
            3 * CHUNK as u64 + 7
        );
        assert_eq!(tree_size(b.path()), 3 * CHUNK as u64 + 7 + 5);
    }
}
