//! Real block devices for the gate's end-to-end tests: a scratch ext4 filesystem on a loop
//! device (mounted with the options a test asks for), and a blkio cgroup (v1) that throttles
//! the writes of the processes put in it to that device — a real, controlled slowdown. Both
//! undo themselves on drop. Root only: callers check [`super::is_root`] first.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn sh(cmd: &str, args: &[&str]) -> String {
    let o = Command::new(cmd).args(args).output().expect(cmd);
    assert!(
        o.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// An ext4 filesystem on a loop device over a sparse image, mounted under a temporary dir.
pub struct ScratchFs {
    _dir: tempfile::TempDir,
    pub device: String,
    pub mount: PathBuf,
}

impl ScratchFs {
    /// `size` as losetup/truncate take it (`1G`); `options` for mount (`sync`, or empty).
    pub fn ext4(size: &str, options: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("pvcheck-test-fs-")
            .tempdir_in("/var/tmp")
            .unwrap();
        let image = dir.path().join("image");
        let mount = dir.path().join("mnt");
        std::fs::create_dir(&mount).unwrap();
        sh("truncate", &["-s", size, image.to_str().unwrap()]);
        let device = sh("losetup", &["-f", "--show", image.to_str().unwrap()]);
        // Without lazy init, or ext4lazyinit writes to the volume while it is measured.
        let fs = ScratchFs {
            _dir: dir,
            device,
            mount,
        };
        sh(
            "mkfs.ext4",
            &[
                "-q",
                "-E",
                "lazy_itable_init=0,lazy_journal_init=0",
                &fs.device,
            ],
        );
        let mut args = vec![fs.device.as_str(), fs.mount.to_str().unwrap()];
        if !options.is_empty() {
            args.extend(["-o", options]);
        }
        sh("mount", &args);
        fs
    }

    /// `MAJ:MIN` of the loop device, as blkio wants it.
    pub fn major_minor(&self) -> String {
        sh("lsblk", &["-dno", "MAJ:MIN", &self.device]).replace(' ', "")
    }

    pub fn dir(&self, name: &str) -> PathBuf {
        let d = self.mount.join(name);
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}

impl Drop for ScratchFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mount).status();
        let _ = Command::new("losetup").args(["-d", &self.device]).status();
    }
}

/// A blkio cgroup (v1) capping write IOPS to one device for the processes started through it.
pub struct WriteThrottle {
    path: PathBuf,
}

impl WriteThrottle {
    /// `None` where cgroup v1's blkio controller is not mounted.
    pub fn new(major_minor: &str, write_iops: u64) -> Option<Self> {
        let root = Path::new("/sys/fs/cgroup/blkio");
        if !root.join("blkio.throttle.write_iops_device").exists() {
            return None;
        }
        let path = root.join(format!("pvcheck-test-{}", std::process::id()));
        std::fs::create_dir_all(&path).unwrap();
        std::fs::write(
            path.join("blkio.throttle.write_iops_device"),
            format!("{major_minor} {write_iops}"),
        )
        .unwrap();
        Some(WriteThrottle { path })
    }

    /// Makes `cmd` start inside the cgroup (its children, the agents, inherit it).
    pub fn apply(&self, cmd: &mut Command) {
        let procs = self.path.join("cgroup.procs");
        // SAFETY: between fork and exec only a write of our own pid to a cgroup file.
        unsafe {
            cmd.pre_exec(move || std::fs::write(&procs, std::process::id().to_string()));
        }
    }
}

impl Drop for WriteThrottle {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.path);
    }
}

/// The median of a speed figure over a trial's repetitions in a result document.
pub fn median_of(result: &serde_json::Value, trial: &str, figure: &str) -> f64 {
    let t = super::trial(result, trial);
    let mut v: Vec<f64> = t["metrics"]["repetitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["bench"][figure].as_f64())
        .collect();
    assert!(!v.is_empty(), "no {figure} in {trial}");
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
