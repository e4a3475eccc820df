//! The sample drivers, shipped inside the pvcheck binary like the default class file, so the
//! default run works from any directory (and after `cargo install`).

use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A sample driver: its path relative to `storageclasses/` and its text.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub path: &'static str,
    pub text: &'static str,
}

pub const SAMPLES: &[Sample] = &[
    Sample {
        path: "flexvolume/loop/v1/loop",
        text: include_str!("../../../../../storageclasses/flexvolume/loop/v1/loop"),
    },
    Sample {
        path: "flexvolume/loop/v2/loop",
        text: include_str!("../../../../../storageclasses/flexvolume/loop/v2/loop"),
    },
    Sample {
        path: "flexvolume/bind/bind",
        text: include_str!("../../../../../storageclasses/flexvolume/bind/bind"),
    },
];

/// The text of the sample at `path` (relative to `storageclasses/`).
pub fn sample(path: &str) -> Option<&'static str> {
    SAMPLES.iter().find(|s| s.path == path).map(|s| s.text)
}

/// Writes every sample under `base` (as `base/flexvolume/...`), executable, and returns `base`.
/// `base` is the run's own directory: pvcheck created it and removes it.
pub fn write_samples(base: &Path) -> io::Result<PathBuf> {
    for s in SAMPLES {
        write_executable(&base.join(s.path), s.text.as_bytes())?;
    }
    Ok(base.to_path_buf())
}

/// Writes an executable (mode 0755) atomically: a temporary file in the same directory, then a
/// rename over the target, which is how a DaemonSet replaces a driver under a running kubelet
/// (a call in flight keeps the old inode; the next call runs the new file).
pub fn write_executable(target: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = target.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.set_permissions(std::fs::Permissions::from_mode(0o755))?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, target).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// Installs the driver at `source` into `<plugin_dir>/<vendor>~<name>/<name>`, replacing what is
/// there, and returns the installed path. The same path is kept across versions, as on a node.
pub fn install(source: &Path, plugin_dir: &Path, vendor: &str) -> io::Result<PathBuf> {
    let name = source
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "driver path has no file name")
        })?;
    let target = plugin_dir.join(format!("{vendor}~{name}")).join(&name);
    let bytes = std::fs::read(source)?;
    write_executable(&target, &bytes)?;
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_bash_drivers_with_a_version() {
        for s in SAMPLES {
            assert!(s.text.starts_with("#!/bin/bash\n"), "{}", s.path);
            assert!(s.text.contains("VERSION=\"pvcheck-"), "{}", s.path);
        }
        assert!(
            sample("flexvolume/loop/v2/loop")
                .unwrap()
                .contains("noatime")
        );
    }

    #[test]
    fn written_samples_are_executable() {
        let d = tempfile::tempdir().unwrap();
        write_samples(d.path()).unwrap();
        let m = std::fs::metadata(d.path().join("flexvolume/bind/bind")).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o755);
    }
}
