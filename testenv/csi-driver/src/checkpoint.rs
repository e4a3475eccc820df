//! `--lose-acked-writes-on-restart`: the release that acknowledges writes and drops them when
//! its node plugin restarts, as a driver with a volatile write-back cache does (the fsync is
//! answered from the cache; a restart loses the cache).
//!
//! NodePublishVolume of a mount-access volume records a checkpoint (a copy of the files under
//! the staging path) unless the volume has one already; the checkpoint goes when the volume's
//! last publication does. A driver process that starts with the flag rewrites, in place, every
//! file of every published volume to its checkpoint: files are rewritten and cut to their
//! checkpointed length, files made since are cut to zero bytes. Names, open descriptors and
//! mounts stay as they are, so the workload goes on writing into a volume that silently lost
//! everything it was told was durable since the publication.

use std::collections::BTreeSet;
use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::copy;
use crate::state::Layout;

/// The flag's name, for log lines (`FAULT <name>: …`, as the `--fault` faults log).
pub const NAME: &str = "lose-acked-writes-on-restart";

/// Record the checkpoint of `volume_id` from `staging` unless there is one. Returns the number
/// of files copied, or None when a checkpoint already existed.
pub fn record(layout: &Layout, volume_id: &str, staging: &Path) -> io::Result<Option<usize>> {
    let dir = layout.checkpoint_dir(volume_id);
    if dir.exists() {
        return Ok(None);
    }
    let tmp = dir.with_extension("tmp");
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp)?;
    copy::tree(staging, &tmp)?;
    fs::rename(&tmp, &dir)?;
    Ok(Some(files(&dir).len()))
}

/// Forget the checkpoint (the volume is published nowhere any more).
pub fn discard(layout: &Layout, volume_id: &str) -> io::Result<()> {
    match fs::remove_dir_all(layout.checkpoint_dir(volume_id)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Whether `volume_id` has a checkpoint.
pub fn exists(layout: &Layout, volume_id: &str) -> bool {
    layout.checkpoint_dir(volume_id).is_dir()
}

/// What a restore did to one file.
#[derive(Debug, PartialEq, Eq)]
pub struct Rewound {
    /// Relative to the volume's root.
    pub file: PathBuf,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

/// Rewrite the files under `staging` to the checkpoint of `volume_id`, in place and synced.
/// Returns the files that differed.
pub fn restore(layout: &Layout, volume_id: &str, staging: &Path) -> io::Result<Vec<Rewound>> {
    let dir = layout.checkpoint_dir(volume_id);
    let saved = files(&dir);
    let mut out = Vec::new();
    for rel in &saved {
        let want = fs::read(dir.join(rel))?;
        let path = staging.join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        let before = f.metadata()?.len();
        if before == want.len() as u64 && fs::read(&path)? == want {
            continue;
        }
        f.write_all_at(&want, 0)?;
        f.set_len(want.len() as u64)?;
        f.sync_all()?;
        out.push(Rewound {
            file: rel.clone(),
            bytes_before: before,
            bytes_after: want.len() as u64,
        });
    }
    for rel in files(staging).difference(&saved) {
        let path = staging.join(rel);
        let f = OpenOptions::new().write(true).open(&path)?;
        let before = f.metadata()?.len();
        if before == 0 {
            continue;
        }
        f.set_len(0)?;
        f.sync_all()?;
        out.push(Rewound {
            file: rel.clone(),
            bytes_before: before,
            bytes_after: 0,
        });
    }
    Ok(out)
}

/// Regular files under `root`, relative to it (symlinks not followed).
fn files(root: &Path) -> BTreeSet<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<PathBuf>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            match e.file_type() {
                Ok(ft) if ft.is_dir() => walk(root, &e.path(), out),
                Ok(ft) if ft.is_file() => {
                    if let Ok(rel) = e.path().strip_prefix(root) {
                        out.insert(rel.to_path_buf());
                    }
                }
                _ => {}
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(root, root, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restore_rewinds_changed_files_and_empties_new_ones_in_place() {
        let d = tempfile::tempdir().unwrap();
        let layout = Layout {
            root: d.path().to_path_buf(),
            state_name: crate::state::STATE_FILE.into(),
        };
        let staging = d.path().join("data");
        fs::create_dir_all(staging.join("sub")).unwrap();
        fs::write(staging.join("a"), b"acknowledged before").unwrap();
        fs::write(staging.join("sub/b"), b"kept").unwrap();
        fs::create_dir_all(layout.volume_dir("v")).unwrap();
        assert_eq!(record(&layout, "v", &staging).unwrap(), Some(2));
        assert_eq!(
            record(&layout, "v", &staging).unwrap(),
            None,
            "kept once made"
        );

        fs::write(staging.join("a"), b"acknowledged before, and after").unwrap();
        fs::write(staging.join("new"), b"made after").unwrap();
        let open = OpenOptions::new()
            .write(true)
            .open(staging.join("new"))
            .unwrap();
        let rewound = restore(&layout, "v", &staging).unwrap();
        assert_eq!(
            rewound,
            vec![
                Rewound {
                    file: "a".into(),
                    bytes_before: 30,
                    bytes_after: 19
                },
                Rewound {
                    file: "new".into(),
                    bytes_before: 10,
                    bytes_after: 0
                },
            ]
        );
        assert_eq!(fs::read(staging.join("a")).unwrap(), b"acknowledged before");
        assert_eq!(fs::read(staging.join("sub/b")).unwrap(), b"kept");
        assert_eq!(open.metadata().unwrap().len(), 0, "same file, cut in place");
        assert!(restore(&layout, "v", &staging).unwrap().is_empty());
        discard(&layout, "v").unwrap();
        assert!(!exists(&layout, "v"));
        discard(&layout, "v").unwrap();
    }
}
