//! The thing under test: a directory holding the dataset's files, or a raw block device.

use std::path::{Path, PathBuf};

use super::error::Error;
use super::layout::{self, Layout};
use super::ledger::{Ledger, TargetKind};

/// `--dir D` or `--device DEV`, as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Dir(PathBuf),
    Device(PathBuf),
}

impl Target {
    pub fn kind(&self) -> TargetKind {
        match self {
            Target::Dir(_) => TargetKind::Dir,
            Target::Device(_) => TargetKind::Device,
        }
    }

    pub fn path(&self) -> &Path {
        match self {
            Target::Dir(p) | Target::Device(p) => p,
        }
    }

    /// Checks that `--dir` exists and is a directory, or `--device` is a block device (a
    /// regular file is accepted too, so image files can stand in for devices).
    pub fn check_exists(&self) -> Result<(), Error> {
        let p = self.path();
        let md = std::fs::metadata(p).map_err(|e| Error::io(p, "stat", e))?;
        match self {
            Target::Dir(_) if !md.is_dir() => Err(Error::target(p, "--dir is not a directory")),
            Target::Device(_) => {
                use std::os::unix::fs::FileTypeExt;
                let ft = md.file_type();
                if ft.is_block_device() || ft.is_file() {
                    Ok(())
                } else {
                    Err(Error::target(
                        p,
                        "--device is neither a block device nor a regular file",
                    ))
                }
            }
            _ => Ok(()),
        }
    }
}

/// One file of the dataset as it exists on this target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataFile {
    pub id: u64,
    pub path: PathBuf,
    /// What reports call it: the path relative to `--dir`, or the device path.
    pub display: String,
    /// Expected size in bytes.
    pub size: u64,
}

/// The files a ledger describes, resolved against a target.
pub fn resolve(
    target: &Target,
    ledger: &Ledger,
    ledger_path: &Path,
) -> Result<Vec<DataFile>, Error> {
    if target.kind() != ledger.target {
        let (flag, want) = match ledger.target {
            TargetKind::Dir => ("--dir", "dir"),
            TargetKind::Device => ("--device", "device"),
        };
        return Err(Error::Ledger {
            path: ledger_path.display().to_string(),
            field: "target".into(),
            why: format!("the ledger describes a {want} dataset: use {flag}"),
        });
    }
    Ok(match target {
        Target::Dir(dir) => files_in(
            dir,
            &Layout::from_ledger(ledger).map_err(|why| Error::Ledger {
                path: ledger_path.display().to_string(),
                field: "layout".into(),
                why,
            })?,
        ),
        Target::Device(dev) => vec![DataFile {
            id: 0,
            path: dev.clone(),
            display: dev.display().to_string(),
            size: ledger.size,
        }],
    })
}

pub fn files_in(dir: &Path, layout: &Layout) -> Vec<DataFile> {
    layout
        .files
        .iter()
        .map(|f| DataFile {
            id: f.id,
            path: dir.join(&f.rel_path),
            display: f.rel_path.clone(),
            size: f.size,
        })
        .collect()
}

/// `<dir>/pvcheck-data`.
pub fn data_dir(dir: &Path) -> PathBuf {
    dir.join(layout::DATA_DIR)
}
