//! The agent on real block-layer targets (root required; CI runs as root): a loop-mounted ext4
//! filesystem read with O_DIRECT, and a raw loop device with `--device`. Every mount and loop
//! device is torn down by a Drop guard, even when an assertion fails.

mod integrity_support;

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;

use integrity_support::*;
use pvcheck_workloads::integrity::layout::Layout;
use pvcheck_workloads::integrity::report::{DamageKind, ReadMode};

#[test]
fn ext4_loop_mount_verifies_with_o_direct_and_sees_damage_written_behind_the_cache() {
    let root = tempfile::Builder::new()
        .prefix("pvcheck-integrity-ext4-")
        .tempdir()
        .unwrap();
    let m = Mount::ext4(root.path(), "48M");
    let (ledger, lp) = {
        let r = agent(&[
            "write",
            "--dir",
            m.point.to_str().unwrap(),
            "--size",
            "8MiB",
            "--seed",
            "11",
            "--volume-id",
            "5",
            "--threads",
            "2",
        ]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let l: pvcheck_workloads::integrity::ledger::Ledger =
            serde_json::from_str(&r.stdout).unwrap();
        let p = root.path().join("ledger.json");
        std::fs::write(&p, &r.stdout).unwrap();
        (l, p)
    };
    let (code, r, _) = verify("--dir", &m.point, &lp, &["--threads", "2"]);
    assert_eq!(code, 0, "{:#?}", r.damage);
    assert_eq!(
        r.read_mode,
        ReadMode::Direct,
        "ext4 allows O_DIRECT: {:?}",
        r.read_mode_reason
    );
    assert!(r.read_mode_reason.is_none());
    assert_eq!(r.bytes_checked, 8 << 20);
    // ext4's lost+found sits beside pvcheck-data and is not reported as extra
    assert!(m.point.join("lost+found").exists());
    // damage one block through the filesystem
    let layout = Layout::from_ledger(&ledger).unwrap();
    let f0 = &layout.files[0];
    let f = OpenOptions::new()
        .write(true)
        .open(m.point.join(&f0.rel_path))
        .unwrap();
    f.write_all_at(&[0u8; 4096], 16 * 4096).unwrap();
    f.sync_all().unwrap();
    drop(f);
    let (code, r, _) = verify("--dir", &m.point, &lp, &[]);
    assert_eq!(code, 1);
    assert_eq!(
        (r.damage_total, r.damage[0].kind, r.damage[0].offset),
        (1, DamageKind::Zeroed, 16 * 4096)
    );
    // selftest on the same filesystem, with O_DIRECT reads, leaves nothing behind
    let st = agent(&["selftest", "--dir", m.point.to_str().unwrap()]);
    assert_eq!(st.code, 0, "{}\n{}", st.stderr, st.stdout);
    let st: pvcheck_workloads::integrity::report::SelftestReport =
        serde_json::from_str(&st.stdout).unwrap();
    assert!(st.passed);
    assert_eq!(st.verify.read_mode, ReadMode::Direct);
    let mut left: Vec<_> = std::fs::read_dir(&m.point)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    left.sort();
    assert_eq!(left, ["lost+found", "pvcheck-data"]);
    // a read-only filesystem: write is refused with the errno, verify still works (it never writes)
    sh("mount", &["-o", "remount,ro", m.point.to_str().unwrap()]);
    let sub = m.point.join("lost+found");
    let w = agent(&[
        "write",
        "--dir",
        sub.to_str().unwrap(),
        "--size",
        "1MiB",
        "--seed",
        "1",
        "--volume-id",
        "5",
    ]);
    assert_eq!(w.code, 2);
    assert!(
        w.stderr.contains("EROFS") && w.stderr.contains("lost+found"),
        "{}",
        w.stderr
    );
    assert_eq!(w.stderr.trim_end().lines().count(), 1);
    let (code, _, _) = verify("--dir", &m.point, &lp, &[]);
    assert_eq!(code, 1);
}

#[test]
fn a_dataset_larger_than_the_free_space_is_refused_with_enospc_before_writing() {
    let root = tempfile::Builder::new()
        .prefix("pvcheck-integrity-enospc-")
        .tempdir()
        .unwrap();
    let m = Mount::ext4(root.path(), "16M");
    let r = agent(&[
        "write",
        "--dir",
        m.point.to_str().unwrap(),
        "--size",
        "64MiB",
        "--seed",
        "1",
        "--volume-id",
        "5",
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("ENOSPC"), "{}", r.stderr);
    assert!(
        r.stderr.contains(m.point.to_str().unwrap()),
        "names the path: {}",
        r.stderr
    );
    assert_eq!(r.stderr.trim_end().lines().count(), 1, "{}", r.stderr);
    assert!(r.stdout.is_empty(), "no ledger for a failed write");
    // refused before the first byte: the volume is not left full of a partial dataset
    assert!(r.stderr.contains("needs"), "{}", r.stderr);
    assert!(!m.point.join("pvcheck-data").exists());
}

#[test]
fn raw_loop_device_round_trips_and_reports_damage_at_device_offsets() {
    let root = tempfile::Builder::new()
        .prefix("pvcheck-integrity-dev-")
        .tempdir()
        .unwrap();
    let ld = LoopDev::new(root.path(), "8M");
    let dev = ld.dev.to_str().unwrap();
    let r = agent(&[
        "write",
        "--device",
        dev,
        "--size",
        "4MiB",
        "--seed",
        "3",
        "--volume-id",
        "9",
        "--threads",
        "2",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let l1 = root.path().join("l1.json");
    std::fs::write(&l1, &r.stdout).unwrap();
    let r = agent(&[
        "rewrite",
        "--device",
        dev,
        "--ledger",
        l1.to_str().unwrap(),
        "--fraction",
        "0.25",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let l2 = root.path().join("l2.json");
    std::fs::write(&l2, &r.stdout).unwrap();
    let (code, rep, _) = verify("--device", &ld.dev, &l2, &["--threads", "2"]);
    assert_eq!(code, 0, "{:#?}", rep.damage);
    assert_eq!(
        rep.read_mode,
        ReadMode::Direct,
        "{:?}",
        rep.read_mode_reason
    );
    assert_eq!(rep.bytes_checked, 4 << 20);
    // the generation-1 ledger sees rewritten blocks as newer than it knows: damage, not clean
    let (code, _, _) = verify("--device", &ld.dev, &l1, &[]);
    assert_eq!(code, 1);
    // damage through the device node
    let f = OpenOptions::new().write(true).open(&ld.dev).unwrap();
    f.write_all_at(&[0u8; 4096], 100 * 4096).unwrap();
    f.sync_all().unwrap();
    drop(f);
    let (code, rep, _) = verify("--device", &ld.dev, &l2, &[]);
    assert_eq!(code, 1);
    assert_eq!(rep.damage_total, 1);
    let d = &rep.damage[0];
    assert_eq!(
        (d.kind, d.file.as_str(), d.offset),
        (DamageKind::Zeroed, dev, 100 * 4096)
    );
    // a dataset larger than the device is refused up front
    let r = agent(&[
        "write",
        "--device",
        dev,
        "--size",
        "16MiB",
        "--seed",
        "3",
        "--volume-id",
        "9",
    ]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains(dev) && r.stderr.contains("smaller than the dataset"),
        "{}",
        r.stderr
    );
    // a device ledger used with --dir
    let r = agent(&[
        "verify",
        "--dir",
        root.path().to_str().unwrap(),
        "--ledger",
        l2.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("--device"), "{}", r.stderr);
}

#[test]
fn durability_hitting_enospc_exits_2_and_every_record_it_acknowledged_verifies() {
    let root = tempfile::Builder::new()
        .prefix("pvcheck-integrity-dur-")
        .tempdir()
        .unwrap();
    let m = Mount::ext4(root.path(), "16M");
    let r = agent(&[
        "durability",
        "--dir",
        m.point.to_str().unwrap(),
        "--seed",
        "2",
        "--volume-id",
        "5",
        "--records",
        "100000",
        "--batch",
        "64",
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("ENOSPC") && r.stderr.contains("pvcheck-durability.log"),
        "{}",
        r.stderr
    );
    assert_eq!(r.stderr.trim_end().lines().count(), 1, "{}", r.stderr);
    let acked = r.stdout.lines().count() - 1;
    assert!(acked > 1000, "the 16M filesystem held only {acked} records");
    let acks = root.path().join("acks.txt");
    std::fs::write(&acks, &r.stdout).unwrap();
    let v = agent(&[
        "verify",
        "--dir",
        m.point.to_str().unwrap(),
        "--acks",
        acks.to_str().unwrap(),
    ]);
    assert_eq!(v.code, 0, "{}{}", v.stderr, v.stdout);
    let rep: pvcheck_workloads::integrity::report::VerifyReport =
        serde_json::from_str(&v.stdout).unwrap();
    assert_eq!(rep.acks.unwrap().present, acked as u64);
    assert_eq!(rep.read_mode, ReadMode::Direct);
}
