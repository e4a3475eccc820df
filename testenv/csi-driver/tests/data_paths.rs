//! The data paths of issue 20 that fail (or do not) across a node plugin restart, as real
//! drivers do: `--data-path fuse-inside` (mounts die with the driver: ENOTCONN),
//! `--data-path fuse-outside` (a daemon of its own keeps serving), and
//! `--lose-acked-writes-on-restart` (fsynced data vanishes when the driver restarts).

mod common;

use std::io::Write;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::Path;

use common::*;
use pvcheck_test_csi::csi;

const FUSE: &str = "fuse.pvcheck-passthrough";

fn errno_of<T>(r: std::io::Result<T>) -> Option<i32> {
    r.err().and_then(|e| e.raw_os_error())
}

/// The pid in a fuse-outside daemon's pid file under the statedir.
fn daemon_pid_files(sb: &Sandbox) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for vol in std::fs::read_dir(sb.statedir().join("volumes"))
        .unwrap()
        .flatten()
    {
        for f in std::fs::read_dir(vol.path()).unwrap().flatten() {
            if f.path().extension().is_some_and(|e| e == "pid") {
                out.push(f.path());
            }
        }
    }
    out
}

#[tokio::test]
async fn fuse_inside_mount_fails_with_enotconn_once_the_driver_is_killed() {
    let Some(Rig {
        sb,
        mut driver,
        mut c,
    }) = Rig::start_fuse("fuse-inside SIGKILL", &["--data-path=fuse-inside"]).await
    else {
        return;
    };
    let vol = c.create("v", 8 << 20, mount_cap()).await;
    let blk = c.create("b", 4 << 20, block_cap()).await;
    let (s, t, bs, bt) = (sb.path("s"), sb.path("t"), sb.path("bs"), sb.path("bt"));
    c.stage_publish(&vol.volume_id, &s, &t, mount_cap()).await;
    c.stage_publish(&blk.volume_id, &bs, &bt, block_cap()).await;
    assert_eq!(fs_type_at(&t).as_deref(), Some(FUSE));
    let data = pattern(200_000, 1);
    write_at(&t.join("records"), 0, &data);
    assert_eq!(
        std::fs::read(s.join("records")).unwrap(),
        data,
        "passed through"
    );
    write_at(&bt, 0, &data[..4096]);

    drop(c);
    driver.kill();
    assert!(
        pvcheck_test_csi::mounts::is_mount_point(&t),
        "the dead mount stays in the mount table"
    );
    assert_eq!(errno_of(std::fs::metadata(&t)), Some(libc::ENOTCONN));
    assert_eq!(
        errno_of(std::fs::read(t.join("records"))),
        Some(libc::ENOTCONN)
    );
    assert_eq!(
        errno_of(std::fs::write(t.join("more"), b"x")),
        Some(libc::ENOTCONN)
    );
    assert_eq!(
        std::fs::read(s.join("records")).unwrap(),
        data,
        "the data is on disk"
    );
    assert_eq!(
        read_at(&bt, 0, 4096),
        &data[..4096],
        "a block volume keeps the bind path and survives"
    );

    let mut v2 = DriverProcess::start(&sb, &["--data-path=fuse-inside"]);
    assert!(v2.log().contains("is dead"), "{}", v2.log());
    let mut c = v2.client().await;
    c.unpublish_unstage(&vol.volume_id, &s, &t).await;
    c.unpublish_unstage(&blk.volume_id, &bs, &bt).await;
    assert!(!t.exists());
    assert_clean(&sb);
    assert_eq!(v2.stop(), 0);
}

#[tokio::test]
async fn a_restarted_driver_unpublishes_a_dead_fuse_inside_mount_leaving_no_mount() {
    let Some(Rig {
        sb,
        mut driver,
        mut c,
    }) = Rig::start_fuse("fuse-inside unpublish", &["--data-path=fuse-inside"]).await
    else {
        return;
    };
    let vol = c.create("v", 8 << 20, mount_cap()).await;
    let (s, t) = (sb.path("s"), sb.path("pods/a/t"));
    std::fs::create_dir_all(t.parent().unwrap()).unwrap();
    c.stage_publish(&vol.volume_id, &s, &t, mount_cap()).await;
    let data = pattern(70_000, 2);
    write_at(&t.join("f"), 0, &data);
    // A workload still holding a file: the dead mount is busy when it is unpublished.
    let held = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(t.join("f"))
        .unwrap();
    drop(c);
    assert_eq!(driver.stop(), 0, "SIGTERM: a clean stop of the plugin…");
    assert_eq!(
        errno_of(std::fs::metadata(t.join("f"))),
        Some(libc::ENOTCONN),
        "…kills its FUSE mounts all the same"
    );
    assert!(
        driver.log().contains("die with it: ENOTCONN"),
        "{}",
        driver.log()
    );
    // (Reads through it may still come from the page cache; writes reach the dead server.)
    assert_eq!(errno_of(held.write_at(b"lost", 0)), Some(libc::ENOTCONN));

    // The next release serves bind mounts: what it unpublishes is what the old one recorded.
    let mut v2 = DriverProcess::start(&sb, &[]);
    let mut c = v2.client().await;
    c.node
        .node_unpublish_volume(unpublish_req(&vol.volume_id, &t))
        .await
        .unwrap();
    assert!(!pvcheck_test_csi::mounts::is_mount_point(&t));
    assert!(!t.exists(), "the target the driver created is gone");
    drop(held);
    c.node
        .node_unstage_volume(unstage_req(&vol.volume_id, &s))
        .await
        .unwrap();
    // Published again (bind now), the data the FUSE mount acknowledged is all there.
    c.stage_publish(&vol.volume_id, &s, &t, mount_cap()).await;
    assert_eq!(std::fs::read(t.join("f")).unwrap(), data);
    c.unpublish_unstage(&vol.volume_id, &s, &t).await;
    assert_clean(&sb);
    assert_eq!(v2.stop(), 0);
}

#[tokio::test]
async fn fuse_outside_mount_outlives_a_killed_driver_and_a_restarted_driver_stops_its_daemon() {
    let Some(Rig {
        sb,
        mut driver,
        mut c,
    }) = Rig::start_fuse("fuse-outside", &["--data-path=fuse-outside"]).await
    else {
        return;
    };
    let (vol, s, t) = c.create_published(&sb, "v", 8 << 20, mount_cap()).await;
    assert_eq!(fs_type_at(&t).as_deref(), Some(FUSE));
    let root = std::fs::canonicalize(sb.dir.path()).unwrap();
    let daemons = fuse_daemons_under(&root);
    assert_eq!(daemons.len(), 1, "one daemon per publication");
    let pid_files = daemon_pid_files(&sb);
    assert_eq!(pid_files.len(), 1);
    let recorded: i32 = std::fs::read_to_string(&pid_files[0])
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(recorded, daemons[0], "the pid file names the daemon");
    let sid = nix::unistd::getsid(Some(nix::unistd::Pid::from_raw(recorded))).unwrap();
    assert_eq!(
        sid.as_raw(),
        recorded,
        "the daemon leads a session of its own"
    );
    let data = pattern(300_000, 3);
    write_at(&t.join("records"), 0, &data);

    drop(c);
    driver.kill();
    assert!(is_live(recorded), "the daemon outlives the driver");
    assert_eq!(std::fs::read(t.join("records")).unwrap(), data);
    let more = pattern(50_000, 4);
    write_at(&t.join("records"), data.len() as u64, &more);
    write_at(&t.join("new"), 0, &more);
    assert_eq!(
        read_at(&s.join("records"), data.len() as u64, more.len()),
        more
    );

    let mut v2 = DriverProcess::start(&sb, &["--data-path=fuse-outside"]);
    assert!(
        v2.log()
            .contains(&format!("fuse-daemon pid {recorded} still serves")),
        "{}",
        v2.log()
    );
    let mut c = v2.client().await;
    c.unpublish_unstage(&vol.volume_id, &s, &t).await;
    assert!(!is_live(recorded), "NodeUnpublishVolume stops the daemon");
    assert!(daemon_pid_files(&sb).is_empty(), "and removes its pid file");
    assert!(!t.exists());
    assert_clean(&sb);
    assert_eq!(v2.stop(), 0);
}

#[tokio::test]
async fn fuse_outside_daemon_started_by_this_driver_is_stopped_and_reaped_at_unpublish() {
    let Some(Rig {
        sb,
        mut driver,
        mut c,
    }) = Rig::start_fuse("fuse-outside unpublish", &["--data-path=fuse-outside"]).await
    else {
        return;
    };
    let vol = c.create("v", 8 << 20, mount_cap()).await;
    let (s, t, ro) = (sb.path("s"), sb.path("t"), sb.path("ro"));
    c.stage_publish(&vol.volume_id, &s, &t, mount_cap()).await;
    write_at(&t.join("f"), 0, b"seen by both");
    c.node
        .node_publish_volume(publish_req(&vol.volume_id, &s, &ro, mount_cap(), true))
        .await
        .unwrap();
    let root = std::fs::canonicalize(sb.dir.path()).unwrap();
    assert_eq!(fuse_daemons_under(&root).len(), 2);
    assert_eq!(std::fs::read(ro.join("f")).unwrap(), b"seen by both");
    assert_eq!(
        errno_of(std::fs::write(ro.join("g"), b"x")),
        Some(libc::EROFS)
    );
    c.node
        .node_unpublish_volume(unpublish_req(&vol.volume_id, &ro))
        .await
        .unwrap();
    assert_eq!(fuse_daemons_under(&root).len(), 1);
    c.unpublish_unstage(&vol.volume_id, &s, &t).await;
    assert_clean(&sb);
    let me = driver.child.id();
    let zombies: Vec<_> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            let (_, rest) = stat.rsplit_once(") ")?;
            let mut f = rest.split(' ');
            let state = f.next()?;
            let ppid: u32 = f.next()?.parse().ok()?;
            (state == "Z" && ppid == me).then(|| e.file_name())
        })
        .collect();
    assert!(zombies.is_empty(), "unreaped daemons: {zombies:?}");
    assert_eq!(driver.stop(), 0);
}

#[tokio::test]
async fn lose_acked_writes_on_restart_rewinds_fsynced_data_to_the_publication_checkpoint() {
    if !root_or_skip("lose-acked-writes-on-restart") {
        return;
    }
    let sb = Sandbox::new();
    let flag = "--lose-acked-writes-on-restart";
    let mut driver = DriverProcess::start(&sb, &[flag]);
    let mut c = driver.client().await;
    let (vol, s, t) = c.create_published(&sb, "v", 8 << 20, mount_cap()).await;
    let before = pattern(100_000, 5);
    write_at(&t.join("records"), 0, &before);
    // Published anew: the checkpoint is the volume as it is now.
    c.node
        .node_unpublish_volume(unpublish_req(&vol.volume_id, &t))
        .await
        .unwrap();
    c.node
        .node_publish_volume(publish_req(&vol.volume_id, &s, &t, mount_cap(), false))
        .await
        .unwrap();
    let acked = pattern(60_000, 6);
    write_at(&t.join("records"), before.len() as u64, &acked);
    write_at(&t.join("since"), 0, &acked);
    let held = std::fs::OpenOptions::new()
        .write(true)
        .open(t.join("records"))
        .unwrap();
    assert_eq!(
        std::fs::metadata(t.join("records")).unwrap().len(),
        160_000,
        "acknowledged"
    );

    drop(c);
    driver.kill();
    let mut v2 = DriverProcess::start(&sb, &[flag]);
    let log = v2.log();
    assert!(
        log.contains("FAULT lose-acked-writes-on-restart: volume")
            && log.contains("160000 bytes -> 100000 bytes"),
        "{log}"
    );
    assert_eq!(
        std::fs::read(t.join("records")).unwrap(),
        before,
        "the fsynced records are gone"
    );
    assert_eq!(std::fs::metadata(t.join("since")).unwrap().len(), 0);
    assert_eq!(
        held.metadata().unwrap().ino(),
        std::fs::metadata(t.join("records")).unwrap().ino(),
        "rewound in place: the workload's file is the same file"
    );
    // The mount stays usable.
    write_at(&t.join("records"), 0, b"still writable");
    drop(held);

    // A restart without the flag loses nothing.
    v2.kill();
    let mut v3 = DriverProcess::start(&sb, &[]);
    assert!(!v3.log().contains("FAULT"), "{}", v3.log());
    assert_eq!(
        &std::fs::read(t.join("records")).unwrap()[..14],
        b"still writable"
    );
    let mut c = v3.client().await;
    c.unpublish_unstage(&vol.volume_id, &s, &t).await;
    assert!(
        !sb.statedir()
            .join("volumes")
            .join(&vol.volume_id)
            .join("checkpoint")
            .exists(),
        "the checkpoint goes with the last publication"
    );
    assert_clean(&sb);
    assert_eq!(v3.stop(), 0);
}

#[tokio::test]
async fn fuse_passthrough_serves_the_calls_an_agent_makes() {
    let Some(Rig {
        sb,
        mut driver,
        mut c,
    }) = Rig::start_fuse("fuse passthrough", &["--data-path=fuse-inside"]).await
    else {
        return;
    };
    let (vol, s, t) = c.create_published(&sb, "v", 8 << 20, mount_cap()).await;

    std::fs::create_dir(t.join("dir")).unwrap();
    assert!(s.join("dir").is_dir());
    let mut f = std::fs::OpenOptions::new()
        .create_new(true)
        .read(true)
        .write(true)
        .open(t.join("dir/a"))
        .unwrap();
    f.write_all(&pattern(10_000, 7)).unwrap();
    f.write_all_at(b"HEAD", 0).unwrap();
    f.sync_data().unwrap();
    f.sync_all().unwrap();
    let mut back = vec![0u8; 4];
    f.read_exact_at(&mut back, 0).unwrap();
    assert_eq!(back, b"HEAD");
    f.set_len(5_000).unwrap();
    assert_eq!(f.metadata().unwrap().len(), 5_000);
    assert_eq!(std::fs::metadata(s.join("dir/a")).unwrap().len(), 5_000);
    drop(f);
    let mut want = pattern(5_000, 7);
    want[..4].copy_from_slice(b"HEAD");
    assert_eq!(std::fs::read(s.join("dir/a")).unwrap(), want);

    // Append, rename over, hard and symbolic links, permissions, times.
    let mut app = std::fs::OpenOptions::new()
        .append(true)
        .open(t.join("dir/a"))
        .unwrap();
    app.write_all(b"TAIL").unwrap();
    app.sync_all().unwrap();
    assert_eq!(std::fs::metadata(t.join("dir/a")).unwrap().len(), 5_004);
    std::fs::write(t.join("b"), b"old").unwrap();
    std::fs::rename(t.join("dir/a"), t.join("b")).unwrap();
    assert_eq!(std::fs::read(t.join("b")).unwrap().len(), 5_004);
    assert!(!s.join("dir/a").exists());
    // The renamed file is still the open file.
    app.write_all(b"MORE").unwrap();
    assert_eq!(std::fs::metadata(t.join("b")).unwrap().len(), 5_008);
    std::fs::hard_link(t.join("b"), t.join("b2")).unwrap();
    assert_eq!(std::fs::metadata(t.join("b")).unwrap().nlink(), 2);
    std::os::unix::fs::symlink("b", t.join("link")).unwrap();
    assert_eq!(std::fs::read_link(t.join("link")).unwrap(), Path::new("b"));
    assert_eq!(std::fs::read(t.join("link")).unwrap().len(), 5_008);
    std::fs::set_permissions(t.join("b"), std::fs::Permissions::from_mode(0o640)).unwrap();
    assert_eq!(
        std::fs::metadata(s.join("b")).unwrap().permissions().mode() & 0o7777,
        0o640
    );
    let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
    std::fs::File::options()
        .write(true)
        .open(t.join("b"))
        .unwrap()
        .set_modified(when)
        .unwrap();
    assert_eq!(
        std::fs::metadata(s.join("b")).unwrap().modified().unwrap(),
        when
    );

    // Listing, removal, statfs.
    let mut names: Vec<_> = std::fs::read_dir(&t)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["b", "b2", "dir", "link"]);
    std::fs::remove_file(t.join("b2")).unwrap();
    std::fs::remove_file(t.join("link")).unwrap();
    std::fs::remove_dir(t.join("dir")).unwrap();
    assert_eq!(
        errno_of(std::fs::remove_dir(t.join("b"))),
        Some(libc::ENOTDIR)
    );
    assert_eq!(
        errno_of(std::fs::metadata(t.join("nothing"))),
        Some(libc::ENOENT)
    );
    let st = nix::sys::statvfs::statvfs(&t).unwrap();
    let backing = nix::sys::statvfs::statvfs(&s).unwrap();
    assert_eq!(st.blocks(), backing.blocks());
    let stats = c
        .node
        .node_get_volume_stats(csi::NodeGetVolumeStatsRequest {
            volume_id: vol.volume_id.clone(),
            volume_path: t.display().to_string(),
            staging_target_path: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(stats.usage[0].total > 0);
    // A file made by another user belongs to that user (the daemon is root).
    let uid = 4321;
    let out = std::process::Command::new("setpriv")
        .args([
            &format!("--reuid={uid}"),
            &format!("--regid={uid}"),
            "--clear-groups",
            "touch",
        ])
        .arg(t.join("theirs"))
        .output();
    match out {
        Ok(o) if o.status.success() => {
            let m = std::fs::metadata(s.join("theirs")).unwrap();
            assert_eq!((m.uid(), m.gid()), (uid, uid));
        }
        other => eprintln!("ownership not checked: setpriv: {other:?}"),
    }
    drop(app);
    c.unpublish_unstage(&vol.volume_id, &s, &t).await;
    assert_clean(&sb);
    assert_eq!(driver.stop(), 0);
}

#[test]
fn an_unknown_data_path_and_bad_daemon_arguments_are_refused_in_one_line() {
    let sb = Sandbox::new();
    let out = std::process::Command::new(BIN)
        .arg(format!("--endpoint=unix://{}", sb.socket().display()))
        .arg(format!("--statedir={}", sb.statedir().display()))
        .arg("--data-path=fuse")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.trim(),
        "pvcheck-test-csi: --data-path \"fuse\": expected bind, fuse-inside or fuse-outside"
    );
    let out = std::process::Command::new(BIN)
        .args(["fuse-daemon", "--source=/nonexistent"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--mountpoint") && err.lines().count() == 1,
        "{err}"
    );
}
