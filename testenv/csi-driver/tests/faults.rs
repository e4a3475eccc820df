//! Every injected fault does what the README says (pvcheck's CSI fault zoo relies on it), and
//! says so on stderr.

mod common;

use std::time::Duration;

use common::*;
use pvcheck_test_csi::csi;
use tonic::Code;

#[tokio::test]
async fn publish_without_mount_creates_the_target_but_mounts_nothing() {
    let Some(Rig {
        sb,
        mut driver,
        mut c,
    }) = Rig::start("publish-without-mount", &["--fault=publish-without-mount"]).await
    else {
        return;
    };
    let (vol, s, t) = c.create_published(&sb, "v", 1 << 20, mount_cap()).await;
    assert!(t.is_dir());
    assert!(
        !pvcheck_test_csi::mounts::is_mount_point(&t),
        "nothing is mounted at the target"
    );
    std::fs::write(t.join("f"), b"lost").unwrap();
    assert!(
        !s.join("f").exists(),
        "what is written there never reaches the volume"
    );
    assert!(
        driver.log().contains("FAULT publish-without-mount"),
        "{}",
        driver.log()
    );
    // Unpublish still succeeds (the loss must be found by reading the data back), and takes
    // the stray directory with it.
    c.unpublish_unstage(&vol.volume_id, &s, &t).await;
    assert!(!t.exists());
    c.stage_publish(&vol.volume_id, &s, &t, mount_cap()).await;
    assert!(!t.join("f").exists(), "the write is lost");
    c.unpublish_unstage(&vol.volume_id, &s, &t).await;
    assert_clean(&sb);
    assert_eq!(driver.stop(), 0);
}

#[tokio::test]
async fn lose_tail_at_unstage_zeroes_the_last_64k_of_the_newest_file() {
    if !root_or_skip("lose-tail-at-unstage") {
        return;
    }
    let sb = Sandbox::new();
    let mut driver = DriverProcess::start_env(
        &sb,
        &[],
        &[("PVCHECK_TEST_CSI_FAULTS", "lose-tail-at-unstage")],
    );
    let mut c = driver.client().await;
    let (vol, s, t) = c.create_published(&sb, "v", 4 << 20, mount_cap()).await;
    write_at(&t.join("old"), 0, &pattern(100_000, 1));
    std::thread::sleep(Duration::from_millis(20));
    let data = pattern(256 * 1024, 2);
    write_at(&t.join("new"), 0, &data);
    c.unpublish_unstage(&vol.volume_id, &s, &t).await;
    c.stage_publish(&vol.volume_id, &s, &t, mount_cap()).await;
    let back = std::fs::read(t.join("new")).unwrap();
    let cut = 256 * 1024 - 64 * 1024;
    assert_eq!(
        back.len(),
        data.len(),
        "size kept: the loss shows as zeros at an offset"
    );
    assert_eq!(&back[..cut], &data[..cut]);
    assert!(back[cut..].iter().all(|&b| b == 0));
    assert_eq!(
        std::fs::read(t.join("old")).unwrap(),
        pattern(100_000, 1),
        "older files are untouched"
    );
    let log = driver.log();
    assert!(
        log.contains(&format!(
            "FAULT lose-tail-at-unstage: volume {}",
            vol.volume_id
        )) && log.contains(&format!("zeroed bytes {cut}..{}", 256 * 1024)),
        "{log}"
    );
    c.unpublish_unstage(&vol.volume_id, &s, &t).await;
    assert_clean(&sb);
    assert_eq!(driver.stop(), 0);
}

#[tokio::test]
async fn lose_tail_at_unstage_on_a_block_volume_zeroes_its_last_written_chunk() {
    let Some(Rig {
        sb,
        mut driver,
        mut c,
    }) = Rig::start(
        "lose-tail-at-unstage block",
        &["--fault=lose-tail-at-unstage"],
    )
    .await
    else {
        return;
    };
    let (vol, s, t) = c.create_published(&sb, "b", 4 << 20, block_cap()).await;
    let data = pattern(1 << 20, 3);
    write_at(&t, 0, &data);
    c.unpublish_unstage(&vol.volume_id, &s, &t).await;
    c.stage_publish(&vol.volume_id, &s, &t, block_cap()).await;
    let back = read_at(&t, 0, 1 << 20);
    let cut = (1 << 20) - 64 * 1024;
    assert_eq!(&back[..cut], &data[..cut]);
    assert!(back[cut..].iter().all(|&b| b == 0));
    c.unpublish_unstage(&vol.volume_id, &s, &t).await;
    assert_clean(&sb);
    assert_eq!(driver.stop(), 0);
}

#[tokio::test]
async fn bitflip_on_start_flips_one_bit_in_the_middle_of_the_largest_file() {
    if !root_or_skip("bitflip-on-start") {
        return;
    }
    let sb = Sandbox::new();
    let mut v1 = DriverProcess::start(&sb, &[]);
    let mut c = v1.client().await;
    let vol = c.create("v", 4 << 20, mount_cap()).await;
    let blk = c.create("b", 4 << 20, block_cap()).await;
    let (s, t, bs, bt) = (sb.path("s"), sb.path("t"), sb.path("bs"), sb.path("bt"));
    c.stage_publish(&vol.volume_id, &s, &t, mount_cap()).await;
    c.stage_publish(&blk.volume_id, &bs, &bt, block_cap()).await;
    let big = pattern(1 << 20, 4);
    write_at(&t.join("big"), 0, &big);
    write_at(&t.join("small"), 0, &pattern(1000, 5));
    let dev = pattern(4 << 20, 6);
    write_at(&bt, 0, &dev);
    drop(c);
    assert_eq!(v1.stop(), 0);

    let mut v2 = DriverProcess::start(&sb, &["--fault=bitflip-on-start", "--version-tag=v2"]);
    let back = std::fs::read(t.join("big")).unwrap();
    let diffs: Vec<usize> = (0..big.len()).filter(|&i| back[i] != big[i]).collect();
    assert_eq!(diffs, vec![1 << 19], "one byte differs, in the middle");
    assert_eq!((back[1 << 19] ^ big[1 << 19]).count_ones(), 1, "by one bit");
    let back = read_at(&bt, 0, 4 << 20);
    let diffs: Vec<usize> = (0..dev.len()).filter(|&i| back[i] != dev[i]).collect();
    assert_eq!(
        diffs,
        vec![2 << 20],
        "the block device's middle byte, seen through the published device"
    );
    assert!(
        v2.log().contains(&format!("offset {}", 1 << 19)),
        "{}",
        v2.log()
    );
    let mut c = v2.client().await;
    c.unpublish_unstage(&vol.volume_id, &s, &t).await;
    c.unpublish_unstage(&blk.volume_id, &bs, &bt).await;
    assert_clean(&sb);
    assert_eq!(v2.stop(), 0);
}

#[tokio::test]
async fn ok_for_unknown_answers_ok_where_the_spec_wants_not_found() {
    let Some(Rig {
        sb,
        mut driver,
        mut c,
    }) = Rig::start("ok-for-unknown", &["--fault=ok-for-unknown"]).await
    else {
        return;
    };
    let t = sb.path("t");
    c.unpublish_unstage("ghost", &t, &t).await;
    c.node
        .node_get_volume_stats(stats_req("ghost", std::path::Path::new("/")))
        .await
        .unwrap();
    assert!(
        driver
            .log()
            .contains("FAULT ok-for-unknown: NodeUnpublishVolume of unknown volume ghost"),
        "{}",
        driver.log()
    );
    assert_eq!(driver.stop(), 0);
}

#[tokio::test]
async fn not_idempotent_makes_a_second_volume_and_fails_a_second_publish() {
    let Some(Rig {
        sb,
        mut driver,
        mut c,
    }) = Rig::start("not-idempotent", &["--fault=not-idempotent"]).await
    else {
        return;
    };
    let a = c.create("same", 1 << 20, mount_cap()).await;
    let b = c.create("same", 1 << 20, mount_cap()).await;
    assert_ne!(a.volume_id, b.volume_id);
    let (s, t) = (sb.path("s"), sb.path("t"));
    c.stage_publish(&a.volume_id, &s, &t, mount_cap()).await;
    let again = c
        .node
        .node_publish_volume(publish_req(&a.volume_id, &s, &t, mount_cap(), false))
        .await;
    assert_eq!(code(again), Code::Internal);
    c.unpublish_unstage(&a.volume_id, &s, &t).await;
    assert_clean(&sb);
    assert_eq!(driver.stop(), 0);
}

/// How many mounts are at `path` (stacked, one over the other).
fn mounts_at(path: &std::path::Path) -> usize {
    let path = std::fs::canonicalize(path).unwrap();
    mounts_under(&path)
        .into_iter()
        .filter(|m| *m == path)
        .count()
}

#[tokio::test]
async fn stack_mounts_mounts_a_repeated_stage_and_publish_again_on_top_and_tears_all_down() {
    let Some(Rig {
        sb,
        mut driver,
        mut c,
    }) = Rig::start("stack-mounts", &["--fault=stack-mounts"]).await
    else {
        return;
    };
    let (vol, s, t) = c.create_published(&sb, "v", 1 << 20, mount_cap()).await;
    assert_eq!((mounts_at(&s), mounts_at(&t)), (1, 1));
    // What a restarted kubelet does for a running pod: both calls again, answered OK.
    c.stage_publish(&vol.volume_id, &s, &t, mount_cap()).await;
    assert_eq!((mounts_at(&s), mounts_at(&t)), (2, 2));
    let log = driver.log();
    assert!(
        log.contains("FAULT stack-mounts: second NodePublishVolume of"),
        "{log}"
    );
    c.unpublish_unstage(&vol.volume_id, &s, &t).await;
    assert_clean(&sb);
    assert_eq!(driver.stop(), 0);
}

#[tokio::test]
async fn hang_blocks_every_node_call_after_the_first_publish_but_not_identity_or_stop() {
    let Some(Rig {
        sb,
        mut driver,
        mut c,
    }) = Rig::start("hang", &["--fault=hang"]).await
    else {
        return;
    };
    let (vol, s, t) = c.create_published(&sb, "v", 1 << 20, mount_cap()).await;
    let hung = tokio::time::timeout(
        Duration::from_secs(2),
        c.node
            .node_unpublish_volume(unpublish_req(&vol.volume_id, &t)),
    )
    .await;
    assert!(hung.is_err(), "NodeUnpublishVolume returned: {hung:?}");
    let mut c2 = driver.client().await;
    assert_eq!(
        c2.identity
            .probe(csi::ProbeRequest {})
            .await
            .unwrap()
            .into_inner()
            .ready,
        Some(true)
    );
    assert!(
        driver
            .log()
            .contains("FAULT hang: NodeUnpublishVolume will never return"),
        "{}",
        driver.log()
    );
    assert_eq!(
        driver.stop(),
        0,
        "a hung call does not keep the driver from stopping"
    );
    // The mounts stay (a stop never unmounts); a driver without the fault undoes them.
    let restarted = DriverProcess::start(&sb, &[]);
    let mut c = restarted.client().await;
    c.unpublish_unstage(&vol.volume_id, &s, &t).await;
    assert_clean(&sb);
}

#[test]
fn an_unknown_fault_name_is_refused_with_exit_2() {
    let sb = Sandbox::new();
    let out = std::process::Command::new(BIN)
        .arg(format!("--endpoint=unix://{}", sb.socket().display()))
        .arg(format!("--statedir={}", sb.statedir().display()))
        .env("PVCHECK_TEST_CSI_FAULTS", "flip-everything")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("PVCHECK_TEST_CSI_FAULTS") && err.contains("flip-everything"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "one line: {err}");
}
