//! The agent on hostile volumes (issue 14, item 4): a volume that runs out of space in the
//! middle of a write, turns read-only in the middle of a run, is frozen for longer than any
//! stall timeout, or holds files with the agent's names that it did not create. The agent never
//! crashes (no panic, no signal), answers with one line and exit 2 where it cannot go on, keeps
//! every acknowledged record readable, never writes outside its own names, and never touches a
//! file it did not create.
//!
//! (`bench` on a frozen volume is `speed_stall.rs`; `bench --reuse` next to a foreign file of its
//! name is `speed_reuse.rs`.)

mod integrity_support;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use integrity_support::{AGENT, LoopDev, Mount, agent, scratch, sh};

/// Every path under `root` with its size and mtime (the lost+found of mkfs excluded).
fn tree(root: &Path) -> BTreeMap<PathBuf, (u64, i64)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p == root.join("lost+found") {
                continue;
            }
            let md = e.metadata().unwrap();
            out.insert(
                p.clone(),
                (md.len(), md.mtime_nsec() + md.mtime() * 1_000_000_000),
            );
            if md.is_dir() {
                stack.push(p);
            }
        }
    }
    out
}

/// The agent's answer to something it cannot do: exit 2, one line on stderr naming the reason.
fn assert_one_line_exit_2(code: i32, stderr: &str, says: &[&str]) {
    assert_eq!(code, 2, "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line: {stderr}");
    assert!(
        says.iter().any(|s| lines[0].contains(s)),
        "the line names none of {says:?}: {}",
        lines[0]
    );
}

/// Only the agent's own names appear at the top of the volume.
fn assert_only_own_names(root: &Path, own: &[&str]) {
    for e in std::fs::read_dir(root).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        assert!(
            name == "lost+found" || own.iter().any(|o| name.starts_with(o)),
            "the agent wrote outside its names: {name}"
        );
    }
}

/// Verifies an acks stream (and the durability log it names) on `dir`: every acknowledged
/// record must be there.
fn assert_acks_hold(dir: &Path, acks: &str) {
    let f = dir.parent().unwrap().join(format!(
        "{}-acks.txt",
        dir.file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(&f, acks).unwrap();
    let r = agent(&[
        "verify",
        "--dir",
        dir.to_str().unwrap(),
        "--acks",
        f.to_str().unwrap(),
    ]);
    assert_eq!(
        r.code, 0,
        "an acknowledged record was lost: {}\n{}",
        r.stderr, r.stdout
    );
}

/// ENOSPC in the middle of `write`: the free-space check passes (blocks are plenty) but the
/// filesystem has almost no inodes (`mkfs.ext4 -N 16`), so creating the dataset's small files
/// fails part-way with ENOSPC. One line, exit 2, nothing outside `pvcheck-data/`.
#[test]
fn enospc_in_the_middle_of_write_is_one_line_and_exit_2() {
    let s = scratch();
    let dev = LoopDev::new(s.root.path(), "32MiB");
    sh(
        "mkfs.ext4",
        &["-q", "-F", "-N", "16", dev.dev.to_str().unwrap()],
    );
    let point = s.root.path().join("mnt-few-inodes");
    std::fs::create_dir(&point).unwrap();
    sh(
        "mount",
        &[dev.dev.to_str().unwrap(), point.to_str().unwrap()],
    );
    let m = Mount { point, dev };
    let r = agent(&[
        "write",
        "--dir",
        m.point.to_str().unwrap(),
        "--size",
        "8MiB",
        "--seed",
        "5",
        "--volume-id",
        "5",
    ]);
    assert_ne!(r.code, 0, "the dataset fit: the test proves nothing");
    assert_one_line_exit_2(r.code, &r.stderr, &["ENOSPC", "No space"]);
    assert!(
        std::fs::read_dir(m.point.join("pvcheck-data"))
            .unwrap()
            .count()
            > 0,
        "nothing was written before ENOSPC: not a mid-write failure"
    );
    assert_only_own_names(&m.point, &["pvcheck-data"]);
}

/// ENOSPC in the middle of a durability stream asked for more records than fit (`--records`;
/// a timed stream stays within the free space, see below): the agent stops with one line and
/// exit 2, and every record it acknowledged before is on the volume.
#[test]
fn enospc_in_the_middle_of_durability_keeps_every_acknowledged_record() {
    let s = scratch();
    let m = Mount::ext4(s.root.path(), "16MiB");
    let r = agent(&[
        "durability",
        "--dir",
        m.point.to_str().unwrap(),
        "--seed",
        "6",
        "--volume-id",
        "6",
        "--records",
        "100000",
    ]);
    assert_one_line_exit_2(r.code, &r.stderr, &["ENOSPC", "No space"]);
    assert!(
        r.stdout.lines().count() > 100,
        "too few records before the volume was full: {}",
        r.stdout.lines().count()
    );
    assert_only_own_names(&m.point, &["pvcheck-durability.log"]);
    assert_acks_hold(&m.point, &r.stdout);
}

/// Issue 23, item 6: a timed durability stream (what `integrity::durability` runs, killed at a
/// random moment) on a small fast volume filled it and failed with ENOSPC before the kill, a
/// false alarm on a healthy driver. It stays within the free space it sees and waits for the
/// kill (here: the end of `--duration`); every acknowledged record holds.
#[test]
fn timed_durability_on_a_small_volume_stays_within_free_space_instead_of_enospc() {
    let s = scratch();
    let m = Mount::ext4(s.root.path(), "16MiB");
    let r = agent(&[
        "durability",
        "--dir",
        m.point.to_str().unwrap(),
        "--seed",
        "8",
        "--volume-id",
        "8",
        "--duration",
        "6s",
    ]);
    assert_eq!(r.code, 0, "stderr: {}", r.stderr);
    assert!(
        r.stderr
            .contains("durability: stopped appending at the free-space limit"),
        "the stream never reached the limit: the test proves nothing ({})",
        r.stderr
    );
    let records = r.stdout.lines().count() - 1;
    assert!(records > 1000, "too few records: {records}");
    let st = nix::sys::statvfs::statvfs(&m.point).unwrap();
    assert!(
        st.blocks_available() > 0,
        "the stream filled the filesystem"
    );
    assert_only_own_names(&m.point, &["pvcheck-durability.log"]);
    assert_acks_hold(&m.point, &r.stdout);
}

/// The volume turns read-only in the middle of a durability stream (ext4 `errors=remount-ro`
/// and an error triggered through sysfs, as a failing disk does). The agent stops with one line
/// and exit 2 (EROFS), and every acknowledged record is still readable.
#[test]
fn a_volume_that_turns_read_only_mid_run_stops_the_agent_cleanly() {
    let s = scratch();
    let m = Mount::ext4(s.root.path(), "64MiB");
    sh(
        "mount",
        &["-o", "remount,errors=remount-ro", m.point.to_str().unwrap()],
    );
    let dev = m
        .dev
        .dev
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let trigger = PathBuf::from(format!("/sys/fs/ext4/{dev}/trigger_fs_error"));
    assert!(
        trigger.exists(),
        "{} is missing: this kernel cannot turn ext4 read-only on demand",
        trigger.display()
    );
    let child = Command::new(AGENT)
        .args([
            "durability",
            "--dir",
            m.point.to_str().unwrap(),
            "--seed",
            "7",
            "--volume-id",
            "7",
            "--duration",
            "60s",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    std::fs::write(&trigger, "pvcheck hostile-volume test\n").unwrap();
    let start = Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "the agent did not notice the read-only volume"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The kernel reports the turn as EROFS, or as EIO when an fsync meets the journal's abort
    // before the remount (seen on this CI's kernel): either way one line and exit 2.
    assert_one_line_exit_2(
        out.status.code().expect("killed by a signal"),
        &stderr,
        &[
            "EROFS",
            "Read-only",
            "read-only",
            "EIO",
            "Input/output error",
        ],
    );
    let acks = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        acks.lines().count() > 1,
        "no record was acknowledged before the error"
    );
    assert_acks_hold(&m.point, &acks);
}

/// A volume frozen (fsfreeze) for longer than any stall timeout: `write` blocks in the kernel
/// and neither crashes nor writes anything wrong; once thawed it finishes and the data verifies.
#[test]
fn write_on_a_frozen_volume_waits_and_finishes_correctly_after_the_thaw() {
    let s = scratch();
    let m = Mount::ext4(s.root.path(), "64MiB");
    let point = m.point.to_str().unwrap().to_string();
    sh("fsfreeze", &["-f", &point]);
    // Thawed on every exit path, so a failing assertion never leaves writers blocked.
    struct Thaw(String);
    impl Drop for Thaw {
        fn drop(&mut self) {
            let _ = Command::new("fsfreeze").args(["-u", &self.0]).status();
        }
    }
    let thaw = Thaw(point.clone());
    let mut child = Command::new(AGENT)
        .args([
            "write",
            "--dir",
            &point,
            "--size",
            "4MiB",
            "--seed",
            "8",
            "--volume-id",
            "8",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        child.try_wait().unwrap().is_none(),
        "write ended while the volume was frozen"
    );
    drop(thaw);
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ledger = m.point.parent().unwrap().join("frozen-ledger.json");
    std::fs::write(&ledger, &out.stdout).unwrap();
    let r = agent(&[
        "verify",
        "--dir",
        &point,
        "--ledger",
        ledger.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 0, "{}\n{}", r.stderr, r.stdout);
    assert_only_own_names(&m.point, &["pvcheck-data"]);
}

/// Files with the agent's names that it did not create: every subcommand that would create
/// them refuses with one line and exit 2, and leaves every file as it was (size and mtime).
#[test]
fn files_with_the_agent_s_names_that_it_did_not_create_are_refused_and_left_alone() {
    let s = scratch();
    let dir = s.root.path().join("vol");
    std::fs::create_dir(&dir).unwrap();
    std::fs::create_dir(dir.join("pvcheck-data")).unwrap();
    std::fs::write(dir.join("pvcheck-data/small-00000"), b"someone else's data").unwrap();
    std::fs::write(dir.join("pvcheck-durability.log"), b"someone else's log").unwrap();
    let d = dir.to_str().unwrap();
    let before = tree(&dir);
    std::thread::sleep(Duration::from_millis(20)); // an mtime change would be visible

    let r = agent(&[
        "write",
        "--dir",
        d,
        "--size",
        "1MiB",
        "--seed",
        "1",
        "--volume-id",
        "1",
    ]);
    assert_one_line_exit_2(r.code, &r.stderr, &["already exists"]);
    let r = agent(&[
        "durability",
        "--dir",
        d,
        "--seed",
        "1",
        "--volume-id",
        "1",
        "--records",
        "4",
    ]);
    assert_one_line_exit_2(r.code, &r.stderr, &["already exists"]);
    // rewrite with a ledger of another dataset: refused before anything is written.
    let other = s.root.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let w = agent(&[
        "write",
        "--dir",
        other.to_str().unwrap(),
        "--size",
        "64KiB",
        "--seed",
        "2",
        "--volume-id",
        "2",
    ]);
    assert_eq!(w.code, 0, "{}", w.stderr);
    let ledger = s.root.path().join("other-ledger.json");
    std::fs::write(&ledger, &w.stdout).unwrap();
    let r = agent(&["rewrite", "--dir", d, "--ledger", ledger.to_str().unwrap()]);
    assert_eq!(
        r.code, 2,
        "rewrite over a dataset it did not write: {}",
        r.stderr
    );
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);

    assert_eq!(
        tree(&dir),
        before,
        "a file the agent did not create was changed"
    );
}
