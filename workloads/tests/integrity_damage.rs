//! The real `pvcheck-agent` binary on temporary directories: one test per damage kind, each
//! asserting the kind, the file and the offset verify reports, plus selftest, durability/acks
//! and the bad-input contract (one line on stderr, exit 2).

mod integrity_support;

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::{Command, Stdio};

use integrity_support::*;
use pvcheck_workloads::integrity::block::{self, BlockId};
use pvcheck_workloads::integrity::layout::Layout;
use pvcheck_workloads::integrity::ledger::Ledger;
use pvcheck_workloads::integrity::report::{DamageKind, SelftestReport, VerifyReport};
use pvcheck_workloads::integrity::schedule::Schedule;

/// A 2 MiB dataset with a second generation over half of its blocks.
struct Fixture {
    s: Scratch,
    ledger: Ledger,
    ledger_path: std::path::PathBuf,
    layout: Layout,
}

fn fixture() -> Fixture {
    let s = scratch();
    let (l1, p1) = write_dir(&s.dir, "2MiB", 5, 2);
    let r = agent(&[
        "rewrite",
        "--dir",
        s.dir.to_str().unwrap(),
        "--ledger",
        p1.to_str().unwrap(),
        "--fraction",
        "0.5",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let (ledger, ledger_path) = save_ledger(&s.dir, &r.stdout, "ledger2.json");
    assert_eq!(ledger.generations.len(), 2);
    assert_eq!(ledger.volume_id, l1.volume_id);
    let layout = Layout::from_ledger(&ledger).unwrap();
    Fixture {
        s,
        ledger,
        ledger_path,
        layout,
    }
}

impl Fixture {
    fn large(&self) -> (std::path::PathBuf, String, u64) {
        let f = &self.layout.files[0];
        assert!(f.rel_path.contains("large"));
        (self.s.dir.join(&f.rel_path), f.rel_path.clone(), f.id)
    }
    fn id(&self, file_id: u64, offset: u64, generation: u64) -> BlockId {
        BlockId {
            volume_id: self.ledger.volume_id,
            file_id,
            offset,
            generation,
            seed: self.ledger.seed,
        }
    }
    fn expected_gen(&self, file_id: u64, offset: u64) -> u64 {
        Schedule::new(&self.ledger.generations).expected(file_id, offset)
    }
    fn put(&self, path: &Path, offset: u64, bytes: &[u8]) {
        let f = OpenOptions::new().write(true).open(path).unwrap();
        f.write_all_at(bytes, offset).unwrap();
        f.sync_all().unwrap();
    }
    fn verify(&self, extra: &[&str]) -> (i32, VerifyReport) {
        let (code, r, _) = verify("--dir", &self.s.dir, &self.ledger_path, extra);
        (code, r)
    }
    /// Offsets in the large file whose expected generation is `g`, from block 4 on.
    fn offsets_with_gen(&self, g: u64) -> Vec<u64> {
        let (_, _, fid) = self.large();
        (4..self.layout.files[0].size / 4096)
            .map(|b| b * 4096)
            .filter(|&o| self.expected_gen(fid, o) == g)
            .collect()
    }
}

/// Exactly one damage of `kind` at (file, offset), and nothing else.
fn assert_only(r: &VerifyReport, kind: DamageKind, file: &str, offset: u64) {
    assert!(!r.clean);
    assert_eq!(r.damage_total, 1, "{:#?}", r.damage);
    assert_eq!(r.counts.total(), 1);
    assert_eq!(r.counts.get(kind), 1, "{:#?}", r.damage);
    let d = &r.damage[0];
    assert_eq!(
        (d.kind, d.file.as_str(), d.offset),
        (kind, file, offset),
        "{d:#?}"
    );
}

#[test]
fn fresh_dataset_verifies_clean_and_reports_what_it_read() {
    let f = fixture();
    let (code, r) = f.verify(&["--threads", "2"]);
    assert_eq!(code, 0, "{:#?}", r.damage);
    assert!(r.clean);
    assert_eq!(r.bytes_checked, 2 << 20);
    assert_eq!(r.blocks_checked, 512);
    assert_eq!(r.files_checked, f.layout.files.len() as u64);
    assert_eq!((r.seed, r.volume_id, r.generation), (5, 77, 2));
    // /tmp is a disk filesystem here: O_DIRECT must have been used, with no excuse given.
    assert_eq!(
        r.read_mode,
        pvcheck_workloads::integrity::report::ReadMode::Direct,
        "{:?}",
        r.read_mode_reason
    );
    let (code, r) = f.verify(&["--full-hash"]);
    assert_eq!((code, r.full_hash), (0, true));
    // every count is present in the JSON, zeros included
    let v: serde_json::Value = serde_json::to_value(&r).unwrap();
    for k in [
        "corrupt",
        "zeroed",
        "stale",
        "misdirected",
        "torn",
        "foreign",
        "missing",
        "truncated",
        "extra",
    ] {
        assert_eq!(v["counts"][k], 0, "{k}");
    }
}

#[test]
fn flipped_bit_is_corrupt() {
    let f = fixture();
    let (path, rel, _) = f.large();
    let mut b = std::fs::read(&path).unwrap();
    b[3 * 4096 + 1000] ^= 0x10;
    f.put(&path, 3 * 4096, &b[3 * 4096..4 * 4096]);
    let (code, r) = f.verify(&[]);
    assert_eq!(code, 1);
    assert_only(&r, DamageKind::Corrupt, &rel, 3 * 4096);
}

#[test]
fn zeroed_block_is_zeroed() {
    let f = fixture();
    let (path, rel, _) = f.large();
    f.put(&path, 8192, &[0u8; 4096]);
    assert_only(&f.verify(&[]).1, DamageKind::Zeroed, &rel, 8192);
}

#[test]
fn older_generation_is_stale_with_both_generations_named() {
    let f = fixture();
    let (path, rel, fid) = f.large();
    let off = f.offsets_with_gen(2)[0];
    let mut b = vec![0u8; 4096];
    block::encode(&f.id(fid, off, 1), &mut b);
    f.put(&path, off, &b);
    let r = f.verify(&[]).1;
    assert_only(&r, DamageKind::Stale, &rel, off);
    assert_eq!(
        (
            r.damage[0].expected_generation,
            r.damage[0].found_generation
        ),
        (Some(2), Some(1))
    );
}

#[test]
fn block_of_another_offset_is_misdirected_with_its_origin() {
    let f = fixture();
    let (path, rel, _) = f.large();
    let all = std::fs::read(&path).unwrap();
    f.put(&path, 10 * 4096, &all[4096..8192]);
    let r = f.verify(&[]).1;
    assert_only(&r, DamageKind::Misdirected, &rel, 10 * 4096);
    let found = r.damage[0].found.as_ref().unwrap();
    assert_eq!(
        (found.offset, found.file.as_deref(), found.volume_id),
        (4096, Some(rel.as_str()), 77)
    );
}

#[test]
fn block_of_another_file_or_volume_is_misdirected() {
    let f = fixture();
    let (path, rel, _) = f.large();
    // from another file of the same dataset
    let small = &f.layout.files[1];
    let other = std::fs::read(f.s.dir.join(&small.rel_path)).unwrap();
    f.put(&path, 12 * 4096, &other[..4096]);
    // from another volume
    let mut b = vec![0u8; 4096];
    block::encode(
        &BlockId {
            volume_id: 78,
            file_id: 0,
            offset: 13 * 4096,
            generation: 1,
            seed: 5,
        },
        &mut b,
    );
    f.put(&path, 13 * 4096, &b);
    let r = f.verify(&[]).1;
    assert_eq!(r.counts.misdirected, 2, "{:#?}", r.damage);
    assert_eq!(r.damage_total, 2);
    let d0 = &r.damage[0];
    assert_eq!((d0.file.as_str(), d0.offset), (rel.as_str(), 12 * 4096));
    assert_eq!(
        d0.found.as_ref().unwrap().file.as_deref(),
        Some(small.rel_path.as_str())
    );
    let d1 = &r.damage[1];
    assert_eq!(
        (d1.offset, d1.found.as_ref().unwrap().volume_id),
        (13 * 4096, 78)
    );
}

#[test]
fn mixed_generation_sectors_are_torn() {
    let f = fixture();
    let (path, rel, fid) = f.large();
    let off = f.offsets_with_gen(2)[1];
    let (mut g1, mut g2) = (vec![0u8; 4096], vec![0u8; 4096]);
    block::encode(&f.id(fid, off, 1), &mut g1);
    block::encode(&f.id(fid, off, 2), &mut g2);
    // new header sector, old tail: what a write torn after its first sector leaves
    g2[512..].copy_from_slice(&g1[512..]);
    f.put(&path, off, &g2);
    let r = f.verify(&[]).1;
    assert_only(&r, DamageKind::Torn, &rel, off);
    assert_eq!(
        r.damage[0].sector_generations.as_deref(),
        Some(&[2, 1, 1, 1, 1, 1, 1, 1][..])
    );
}

#[test]
fn unparseable_block_is_foreign() {
    let f = fixture();
    let (path, rel, _) = f.large();
    let junk: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    f.put(&path, 15 * 4096, &junk);
    assert_only(&f.verify(&[]).1, DamageKind::Foreign, &rel, 15 * 4096);
}

#[test]
fn short_file_is_truncated_at_the_first_incomplete_block() {
    let f = fixture();
    let (path, rel, _) = f.large();
    let len = f.layout.files[0].size;
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - 4096 - 100)
        .unwrap();
    let r = f.verify(&[]).1;
    assert_only(&r, DamageKind::Truncated, &rel, len - 8192);
}

#[test]
fn deleted_file_is_missing() {
    let f = fixture();
    let small = &f.layout.files[2];
    std::fs::remove_file(f.s.dir.join(&small.rel_path)).unwrap();
    assert_only(&f.verify(&[]).1, DamageKind::Missing, &small.rel_path, 0);
}

#[test]
fn unknown_file_and_appended_bytes_are_extra() {
    let f = fixture();
    std::fs::write(f.s.dir.join("pvcheck-data/intruder"), b"hello").unwrap();
    let r = f.verify(&[]).1;
    assert_only(&r, DamageKind::Extra, "pvcheck-data/intruder", 0);
    // files outside pvcheck-data (lost+found, the user's own) are not the dataset's business
    std::fs::remove_file(f.s.dir.join("pvcheck-data/intruder")).unwrap();
    std::fs::write(f.s.dir.join("unrelated"), b"x").unwrap();
    let small = &f.layout.files[3];
    let p = f.s.dir.join(&small.rel_path);
    f.put(&p, small.size, &[7u8; 10]);
    assert_only(
        &f.verify(&[]).1,
        DamageKind::Extra,
        &small.rel_path,
        small.size,
    );
}

#[test]
fn damage_list_is_capped_at_100_but_every_block_is_counted() {
    let f = fixture();
    let (path, _, _) = f.large();
    let n = f.layout.files[0].size;
    f.put(&path, 0, &vec![0u8; n as usize]);
    let (code, r) = f.verify(&["--threads", "2"]);
    assert_eq!(code, 1);
    assert_eq!(r.counts.zeroed, n / 4096);
    assert_eq!(r.damage_total, n / 4096);
    assert_eq!(r.damage.len(), 100);
    // the first 100, in offset order, whatever the thread interleaving
    assert!(
        r.damage
            .iter()
            .enumerate()
            .all(|(i, d)| d.offset == i as u64 * 4096)
    );
}

#[test]
fn verify_never_writes_to_the_data_under_test() {
    let f = fixture();
    let (path, _, _) = f.large();
    f.put(&path, 4096, &[0u8; 4096]);
    let snapshot = |d: &Path| -> Vec<(String, Vec<u8>, std::time::SystemTime)> {
        let mut v: Vec<_> = std::fs::read_dir(d.join("pvcheck-data"))
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let md = e.metadata().unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read(e.path()).unwrap(),
                    md.modified().unwrap(),
                )
            })
            .collect();
        v.sort();
        v
    };
    let before = snapshot(&f.s.dir);
    f.verify(&["--threads", "2"]);
    f.verify(&["--full-hash"]);
    assert!(before == snapshot(&f.s.dir), "verify changed the dataset");
}

#[test]
fn selftest_injects_every_kind_and_passes() {
    let s = scratch();
    let r = agent(&["selftest", "--dir", s.dir.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}\n{}", r.stderr, r.stdout);
    let rep: SelftestReport = serde_json::from_str(&r.stdout).unwrap();
    assert!(rep.passed && rep.clean_before_injection);
    let kinds: std::collections::BTreeSet<_> = rep.injected.iter().map(|i| i.kind).collect();
    assert_eq!(kinds.len(), DamageKind::ALL.len(), "one injection per kind");
    assert!(rep.injected.iter().all(|i| i.reported));
    for k in DamageKind::ALL {
        assert_eq!(rep.verify.counts.get(k), 1, "{k:?}");
    }
    assert!(
        rep.acks.passed && rep.acks.injected.reported,
        "{:#?}",
        rep.acks
    );
    assert_eq!(rep.acks.verify.acks.as_ref().unwrap().missing, 1);
    // it cleans up after itself and leaves the directory as it found it
    assert_eq!(std::fs::read_dir(&s.dir).unwrap().count(), 0);
}

#[test]
fn durability_acks_verify_clean_and_a_lost_acknowledged_record_is_reported() {
    let s = scratch();
    let d = s.dir.to_str().unwrap();
    let r = agent(&[
        "durability",
        "--dir",
        d,
        "--seed",
        "3",
        "--volume-id",
        "77",
        "--records",
        "40",
        "--batch",
        "8",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout.lines().count(), 41, "header + one line per record");
    let acks = s.root.path().join("acks.txt");
    std::fs::write(&acks, &r.stdout).unwrap();
    let a = acks.to_str().unwrap();
    // self-describing: no ledger needed
    let v = agent(&["verify", "--dir", d, "--acks", a]);
    assert_eq!(v.code, 0, "{}{}", v.stderr, v.stdout);
    let rep: VerifyReport = serde_json::from_str(&v.stdout).unwrap();
    let acks_sum = rep.acks.unwrap();
    assert_eq!(
        (acks_sum.required, acks_sum.present, acks_sum.missing),
        (40, 40, 0)
    );
    // a last line cut by a kill is not an acknowledgement
    std::fs::write(&acks, format!("{}{{\"record\":4", r.stdout)).unwrap();
    assert_eq!(agent(&["verify", "--dir", d, "--acks", a]).code, 0);
    // lose the last 3 acknowledged records and corrupt one
    let log = s.dir.join("pvcheck-durability.log");
    let f = OpenOptions::new().write(true).open(&log).unwrap();
    f.set_len(37 * 4096).unwrap();
    f.write_all_at(&[0u8; 4096], 5 * 4096).unwrap();
    let v = agent(&["verify", "--dir", d, "--acks", a]);
    assert_eq!(v.code, 1);
    let rep: VerifyReport = serde_json::from_str(&v.stdout).unwrap();
    let sum = rep.acks.unwrap();
    assert_eq!((sum.required, sum.present, sum.missing), (40, 36, 4));
    assert_eq!((rep.counts.missing, rep.counts.zeroed), (3, 1));
    assert_eq!(rep.damage[0].offset, 5 * 4096);
    assert_eq!(rep.damage[0].file, "pvcheck-durability.log");
    // a second durability run never appends to an old log
    let again = agent(&[
        "durability",
        "--dir",
        d,
        "--seed",
        "3",
        "--volume-id",
        "77",
        "--records",
        "1",
    ]);
    assert_eq!(again.code, 2);
}

#[test]
fn durability_killed_mid_run_keeps_every_acknowledged_record() {
    let s = scratch();
    let mut child = Command::new(AGENT)
        .args([
            "durability",
            "--dir",
            s.dir.to_str().unwrap(),
            "--seed",
            "4",
            "--volume-id",
            "77",
            "--duration",
            "20s",
            "--batch",
            "4",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut acks = String::new();
    for _ in 0..60 {
        out.read_line(&mut acks).unwrap();
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    std::io::Read::read_to_string(&mut out, &mut acks).unwrap();
    let path = s.root.path().join("acks.txt");
    std::fs::write(&path, &acks).unwrap();
    let v = agent(&[
        "verify",
        "--dir",
        s.dir.to_str().unwrap(),
        "--acks",
        path.to_str().unwrap(),
    ]);
    assert_eq!(v.code, 0, "{}{}", v.stderr, v.stdout);
    let rep: VerifyReport = serde_json::from_str(&v.stdout).unwrap();
    let sum = rep.acks.unwrap();
    assert!(sum.required >= 59, "{sum:?}");
    assert_eq!(sum.present, sum.required);
}

#[test]
fn ledger_and_acks_together_check_both() {
    let s = scratch();
    let (_, lp) = write_dir(&s.dir, "1MiB", 9, 1);
    let d = s.dir.to_str().unwrap();
    let r = agent(&[
        "durability",
        "--dir",
        d,
        "--seed",
        "9",
        "--volume-id",
        "77",
        "--records",
        "8",
    ]);
    let acks = s.root.path().join("acks.txt");
    std::fs::write(&acks, &r.stdout).unwrap();
    let v = agent(&[
        "verify",
        "--dir",
        d,
        "--ledger",
        lp.to_str().unwrap(),
        "--acks",
        acks.to_str().unwrap(),
    ]);
    assert_eq!(v.code, 0, "{}", v.stderr);
    let rep: VerifyReport = serde_json::from_str(&v.stdout).unwrap();
    assert_eq!(rep.blocks_checked, 256 + 8);
    // acks of another volume are refused, not reported as damage
    let other = r.stdout.replacen("\"volume_id\":77", "\"volume_id\":78", 1);
    std::fs::write(&acks, other).unwrap();
    let v = agent(&[
        "verify",
        "--dir",
        d,
        "--ledger",
        lp.to_str().unwrap(),
        "--acks",
        acks.to_str().unwrap(),
    ]);
    assert_eq!(v.code, 2);
    assert!(v.stderr.contains("volume_id"), "{}", v.stderr);
}

/// Exit 2 with exactly one line on stderr that contains every `needles`.
fn assert_refused(r: &Run, needles: &[&str]) {
    assert_eq!(r.code, 2, "stdout: {}\nstderr: {}", r.stdout, r.stderr);
    assert_eq!(
        r.stderr.trim_end().lines().count(),
        1,
        "one line: {}",
        r.stderr
    );
    for n in needles {
        assert!(r.stderr.contains(n), "{n:?} not in {}", r.stderr);
    }
    assert!(r.stdout.is_empty(), "nothing on stdout: {}", r.stdout);
}

#[test]
fn bad_input_gets_one_line_naming_the_problem_and_exit_2() {
    let s = scratch();
    let d = s.dir.to_str().unwrap();
    let (_, lp) = write_dir(&s.dir, "1MiB", 1, 1);
    let lps = lp.to_str().unwrap();
    let bad = s.root.path().join("bad.json");
    let b = bad.to_str().unwrap();
    // bare size: kubestr#145
    let r = agent(&[
        "write",
        "--dir",
        d,
        "--size",
        "1024",
        "--seed",
        "1",
        "--volume-id",
        "1",
    ]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("no unit"), "{}", r.stderr);
    // size not a multiple of the block size
    let r = agent(&[
        "write",
        "--dir",
        d,
        "--size",
        "6KiB",
        "--seed",
        "1",
        "--volume-id",
        "1",
        "--block-size",
        "4KiB",
    ]);
    assert_refused(&r, &["--size"]);
    // block size not a multiple of 512
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
        "--block-size",
        "1000B",
    ]);
    assert_refused(&r, &["--block-size"]);
    // an existing dataset is never overwritten
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
    assert_refused(&r, &["pvcheck-data", "already exists"]);
    // missing directory
    let r = agent(&[
        "write",
        "--dir",
        "/nonexistent/pvcheck",
        "--size",
        "1MiB",
        "--seed",
        "1",
        "--volume-id",
        "1",
    ]);
    assert_refused(&r, &["/nonexistent/pvcheck", "ENOENT"]);
    // malformed ledger
    std::fs::write(&bad, "{not json").unwrap();
    assert_refused(
        &agent(&["verify", "--dir", d, "--ledger", b]),
        &[b, "not JSON"],
    );
    // other format version
    let text = std::fs::read_to_string(&lp).unwrap();
    std::fs::write(&bad, text.replace("\"version\": 1", "\"version\": 2")).unwrap();
    assert_refused(
        &agent(&["verify", "--dir", d, "--ledger", b]),
        &[b, "version", "2"],
    );
    // unknown field
    std::fs::write(&bad, text.replacen("{", "{\n  \"colour\": 1,", 1)).unwrap();
    assert_refused(
        &agent(&["verify", "--dir", d, "--ledger", b]),
        &[b, "colour"],
    );
    // ledger of another volume
    assert_refused(
        &agent(&["verify", "--dir", d, "--ledger", lps, "--volume-id", "78"]),
        &[lps, "volume_id", "78"],
    );
    assert_refused(
        &agent(&["rewrite", "--dir", d, "--ledger", lps, "--volume-id", "78"]),
        &[lps, "volume_id"],
    );
    // dir ledger used against a device
    assert_refused(
        &agent(&["verify", "--device", lps, "--ledger", lps]),
        &["target", "--dir"],
    );
    // missing ledger file
    assert_refused(
        &agent(&["verify", "--dir", d, "--ledger", "/nonexistent.json"]),
        &["/nonexistent.json", "ENOENT"],
    );
    // fraction out of range
    assert_refused(
        &agent(&["rewrite", "--dir", d, "--ledger", lps, "--fraction", "1.5"]),
        &["--fraction"],
    );
    // duration without a unit
    let r = agent(&[
        "durability",
        "--dir",
        d,
        "--seed",
        "1",
        "--volume-id",
        "1",
        "--duration",
        "30",
    ]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("no unit"), "{}", r.stderr);
}

#[test]
fn buffered_reads_say_why_and_find_the_same_damage() {
    let f = fixture();
    let (path, rel, _) = f.large();
    let (code, r) = f.verify(&["--buffered"]);
    assert_eq!(code, 0);
    assert_eq!(
        r.read_mode,
        pvcheck_workloads::integrity::report::ReadMode::Buffered
    );
    assert!(
        r.read_mode_reason
            .as_deref()
            .unwrap()
            .contains("--buffered")
    );
    f.put(&path, 2 * 4096, &[0u8; 4096]);
    let (_, r) = f.verify(&["--buffered", "--threads", "2"]);
    assert_only(&r, DamageKind::Zeroed, &rel, 2 * 4096);
}

#[test]
fn report_is_the_same_whatever_the_thread_count() {
    let f = fixture();
    let (path, _, fid) = f.large();
    let mut b = vec![0u8; 4096];
    for (i, off) in f.offsets_with_gen(2).into_iter().take(5).enumerate() {
        block::encode(&f.id(fid, off, 1), &mut b);
        f.put(&path, off, &b);
        f.put(&path, (4 + i as u64) * 4096, &[0u8; 4096]);
    }
    let (_, one) = f.verify(&["--threads", "1"]);
    let (_, two) = f.verify(&["--threads", "2"]);
    let (_, four) = f.verify(&["--threads", "4"]);
    assert!(one.damage_total >= 6, "{:#?}", one.damage);
    assert_eq!(one.damage, two.damage);
    assert_eq!(one.damage, four.damage);
    assert_eq!(one.counts, four.counts);
}
