//! Shared by the flexVolume tests: a scratch root that cleans up after itself, the sample
//! drivers written out as pvcheck ships them, and the zoo's faulty drivers built from them.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use pvcheck::platform::local::flexvolume::embedded;
use pvcheck::platform::local::mounts::{loop_backing_file, mounts_under};

pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "flexVolume tests mount filesystems and attach loop devices: run them as root (CI does)"
    );
}

/// A directory for one test, unique per process and test; on drop everything mounted below it is
/// unmounted and every loop device backed by a file below it is detached, even after a failure.
pub struct Scratch {
    pub root: PathBuf,
}

impl Scratch {
    pub fn new(test: &str) -> Self {
        require_root();
        let root = std::env::temp_dir().join(format!("pvcheck-flex-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        embedded::write_samples(&root.join("storageclasses")).unwrap();
        Scratch { root }
    }

    pub fn sample(&self, rel: &str) -> PathBuf {
        self.root.join("storageclasses").join(rel)
    }

    /// Builds the zoo variant `name` (see fixtures/flexvolume-zoo/README.md) as an executable.
    pub fn zoo(&self, name: &str) -> PathBuf {
        let path = self.root.join("zoo").join(name).join("loop");
        embedded::write_executable(&path, zoo_text(name).as_bytes()).unwrap();
        path
    }

    /// The upstream-style driver `name` (`lvm`, `nfs`) as an executable, named `name` (the
    /// plugin directory is `pvcheck~<name>`).
    pub fn upstream(&self, name: &str) -> PathBuf {
        let path = self.root.join("upstream").join(name).join(name);
        embedded::write_executable(&path, upstream_text(name).as_bytes()).unwrap();
        path
    }

    /// A faulty variant of the upstream-style driver `base`, as an executable named `base`.
    pub fn upstream_zoo(&self, base: &str, variant: &str) -> PathBuf {
        let path = self.root.join("upstream-zoo").join(variant).join(base);
        embedded::write_executable(&path, upstream_zoo_text(base, variant).as_bytes()).unwrap();
        path
    }

    /// An ad-hoc driver from a script body.
    pub fn script(&self, name: &str, body: &str) -> PathBuf {
        let path = self.root.join("scripts").join(name);
        embedded::write_executable(&path, format!("#!/bin/bash\n{body}\n").as_bytes()).unwrap();
        path
    }

    /// A driver from a whole script text, as an executable `name` in its own directory `dir`
    /// (two versions of one driver share the name: the plugin directory is `pvcheck~<name>`).
    pub fn script_named(&self, dir: &str, name: &str, text: &str) -> PathBuf {
        let path = self.root.join("scripts").join(dir).join(name);
        embedded::write_executable(&path, text.as_bytes()).unwrap();
        path
    }

    /// Loop devices still backed by an image below the root.
    pub fn attached_loops(&self) -> Vec<PathBuf> {
        loops_backed_under(&self.root)
    }

    pub fn mounts(&self) -> Vec<PathBuf> {
        mounts_under(&self.root)
            .unwrap()
            .into_iter()
            .map(|m| m.mount_point)
            .collect()
    }

    pub fn assert_nothing_left(&self) {
        assert_eq!(
            self.mounts(),
            Vec::<PathBuf>::new(),
            "mounts left under {}",
            self.root.display()
        );
        assert_eq!(
            self.attached_loops(),
            Vec::<PathBuf>::new(),
            "loop devices left"
        );
    }
}

pub fn loops_backed_under(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/sys/block") else {
        return out;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with("loop") {
            continue;
        }
        let dev = PathBuf::from("/dev").join(&name);
        if let Some(b) = loop_backing_file(&dev)
            && b.starts_with(root)
        {
            out.push(dev);
        }
    }
    out
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Deepest first, lazily if busy: a failed test must not leave the machine dirty.
        let mut m = self.mounts();
        m.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
        for p in m {
            if nix::mount::umount2(&p, nix::mount::MntFlags::empty()).is_err() {
                let _ = nix::mount::umount2(&p, nix::mount::MntFlags::MNT_DETACH);
            }
        }
        for dev in self.attached_loops() {
            let _ = std::process::Command::new("losetup")
                .arg("-d")
                .arg(&dev)
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn fixture(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/flexvolume-zoo")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The sample v2 loop driver with zoo-lib.sh and the variant spliced in before `main "$@"`.
pub fn zoo_text(name: &str) -> String {
    let v2 = embedded::sample("flexvolume/loop/v2/loop").unwrap();
    let body = v2
        .trim_end()
        .strip_suffix("main \"$@\"")
        .expect("the sample ends with main \"$@\"");
    format!(
        "{body}\n{}\n{}\n{}\nmain \"$@\"\n",
        fixture("zoo-lib.sh"),
        fixture("zoo-damage.sh"),
        fixture(&format!("{name}.sh"))
    )
}

/// The text of an upstream-style driver (`lvm` or `nfs`, fixtures/flexvolume-upstream).
pub fn upstream_text(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/flexvolume-upstream")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// An upstream-style driver with the zoo variant `variant` (e.g. `lvm-bitflip`) spliced in before
/// its last line, like the zoo's variants of the sample driver.
pub fn upstream_zoo_text(base: &str, variant: &str) -> String {
    let text = upstream_text(base);
    let body = text
        .trim_end()
        .strip_suffix("main \"$@\"")
        .expect("the upstream-style drivers end with main \"$@\"");
    let libs = if base == "lvm" {
        format!(
            "{}\n{}\n",
            fixture("zoo-damage.sh"),
            fixture("lvm-zoo-lib.sh")
        )
    } else {
        String::new()
    };
    format!(
        "{body}\n{libs}{}\nmain \"$@\"\n",
        fixture(&format!("{variant}.sh"))
    )
}
