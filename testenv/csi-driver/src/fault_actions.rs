//! The data damage of the `lose-tail-at-unstage` and `bitflip-on-start` faults.

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

pub const TAIL: u64 = 64 * 1024;

fn regular_files(dir: &Path, out: &mut Vec<(PathBuf, fs::Metadata)>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        match e.file_type() {
            Ok(ft) if ft.is_dir() => regular_files(&e.path(), out),
            Ok(ft) if ft.is_file() => {
                if let Ok(m) = e.metadata() {
                    out.push((e.path(), m));
                }
            }
            _ => {}
        }
    }
}

/// The most recently modified non-empty regular file under `dir`.
pub fn newest_file(dir: &Path) -> Option<PathBuf> {
    let mut files = Vec::new();
    regular_files(dir, &mut files);
    files
        .into_iter()
        .filter(|(_, m)| m.len() > 0)
        .max_by_key(|(_, m)| m.modified().unwrap_or(SystemTime::UNIX_EPOCH))
        .map(|(p, _)| p)
}

/// The largest regular file under `dir` (ties: the first in path order).
pub fn largest_file(dir: &Path) -> Option<PathBuf> {
    let mut files = Vec::new();
    regular_files(dir, &mut files);
    files.sort_by(|a, b| a.0.cmp(&b.0));
    let mut best: Option<(PathBuf, u64)> = None;
    for (p, m) in files {
        if m.len() > 0 && best.as_ref().is_none_or(|(_, l)| m.len() > *l) {
            best = Some((p, m.len()));
        }
    }
    best.map(|(p, _)| p)
}

/// Zero the last 64 KiB (or all, if shorter) of `file`; returns the zeroed range.
pub fn zero_tail(file: &Path) -> io::Result<(u64, u64)> {
    let f = OpenOptions::new().write(true).open(file)?;
    let len = f.metadata()?.len();
    let start = len.saturating_sub(TAIL);
    f.write_all_at(&vec![0u8; (len - start) as usize], start)?;
    f.sync_all()?;
    Ok((start, len))
}

/// Zero the last 64 KiB-aligned chunk of `image` that holds a non-zero byte (an image has no
/// "last written" file, so its highest written data stands in). None if all zeros.
pub fn zero_last_written_chunk(image: &Path) -> io::Result<Option<(u64, u64)>> {
    let mut f = OpenOptions::new().read(true).write(true).open(image)?;
    let len = f.metadata()?.len();
    let mut buf = vec![0u8; TAIL as usize];
    let mut end = len;
    while end > 0 {
        let start = (end - 1) / TAIL * TAIL;
        f.seek(SeekFrom::Start(start))?;
        let n = (end - start) as usize;
        f.read_exact(&mut buf[..n])?;
        if buf[..n].iter().any(|&b| b != 0) {
            f.write_all_at(&vec![0u8; n], start)?;
            f.sync_all()?;
            return Ok(Some((start, end)));
        }
        end = start;
    }
    Ok(None)
}

/// Flip the lowest bit of the byte at `at` (the middle when `None`) of `path` (a file or a
/// block device); returns the offset. An offset past the end is an error: nothing is flipped.
pub fn flip_bit_at(path: &Path, at: Option<u64>) -> io::Result<u64> {
    let f = OpenOptions::new().read(true).write(true).open(path)?;
    let len = if crate::loopdev::is_block_device(path) {
        crate::loopdev::device_size(path).map_err(|e| io::Error::other(e.to_string()))?
    } else {
        f.metadata()?.len()
    };
    if len == 0 {
        return Err(io::Error::other("empty"));
    }
    let offset = at.unwrap_or(len / 2);
    if offset >= len {
        return Err(io::Error::other(format!(
            "offset {offset} is past the end ({len} bytes)"
        )));
    }
    let mut byte = [0u8; 1];
    f.read_exact_at(&mut byte, offset)?;
    byte[0] ^= 1;
    f.write_all_at(&byte, offset)?;
    f.sync_all()?;
    Ok(offset)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;

    #[test]
    fn zero_last_written_chunk_finds_the_highest_data() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("img");
        let f = File::create(&p).unwrap();
        f.set_len(10 * TAIL).unwrap();
        f.write_all_at(&[7u8; 100], 3 * TAIL + 5).unwrap();
        f.write_all_at(&[9u8; 100], TAIL).unwrap();
        assert_eq!(
            zero_last_written_chunk(&p).unwrap(),
            Some((3 * TAIL, 4 * TAIL))
        );
        assert_eq!(zero_last_written_chunk(&p).unwrap(), Some((TAIL, 2 * TAIL)));
        assert_eq!(zero_last_written_chunk(&p).unwrap(), None);
    }

    #[test]
    fn flip_and_tail_touch_exactly_what_they_say() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        fs::write(&p, vec![0xAAu8; 200_000]).unwrap();
        assert_eq!(flip_bit_at(&p, None).unwrap(), 100_000);
        assert_eq!(flip_bit_at(&p, Some(4096)).unwrap(), 4096);
        assert!(flip_bit_at(&p, Some(200_000)).is_err());
        assert_eq!(fs::read(&p).unwrap()[4096], 0xAB);
        let data = fs::read(&p).unwrap();
        assert_eq!(data[100_000], 0xAB);
        assert_eq!(zero_tail(&p).unwrap(), (200_000 - TAIL, 200_000));
        let data = fs::read(&p).unwrap();
        assert!(data[(200_000 - TAIL) as usize..].iter().all(|&b| b == 0));
        assert_eq!(data[(200_000 - TAIL - 1) as usize], 0xAA);
    }
}
