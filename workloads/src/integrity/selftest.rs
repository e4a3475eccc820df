//! `selftest`: proves the checker is not blind on this very volume. It writes a sacrificial
//! dataset in its own subdirectory, injects one damage of every kind, and passes only when
//! verify reports exactly those kinds at exactly those offsets and nothing else. It never
//! touches anything outside the subdirectory it created, and removes that subdirectory.

use std::collections::BTreeSet;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

use rand_core::Rng;

use super::block::{self, BlockId, SECTOR};
use super::durability::{self, DurabilityParams, Stop};
use super::error::Error;
use super::io;
use super::layout::DATA_DIR;
use super::ledger::Ledger;
use super::prng;
use super::report::{AcksSelftest, DamageKind, Injection, SelftestReport};
use super::schedule::Schedule;
use super::target::{self, Target};
use super::verify::{self, VerifyParams};
use super::write::{self, RewriteParams, WriteParams};

pub const SELFTEST_VOLUME_ID: u64 = 0x5E1F_7E57;
const BS: u64 = 4096;

/// Removes the selftest's own subdirectory however the selftest ends.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn selftest(dir: &Path, size: u64, threads: usize) -> Result<SelftestReport, Error> {
    if size < (512 << 10) || !size.is_multiple_of(BS) {
        return Err(Error::usage(
            "--size",
            "selftest needs at least 512KiB, in whole 4KiB blocks",
        ));
    }
    Target::Dir(dir.to_path_buf()).check_exists()?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    // Below 2^53 like every seed in a report, so jq and JavaScript read it back exactly.
    let seed =
        prng::fold_key(&[nanos as u64, std::process::id() as u64]) & crate::units::JSON_SAFE_MAX;
    let sub = dir.join(format!(
        "pvcheck-selftest-{}-{:x}",
        std::process::id(),
        seed & 0xFFFF_FFFF
    ));
    std::fs::create_dir(&sub).map_err(|e| Error::io(&sub, "create directory", e))?;
    let _scratch = Scratch(sub.clone());
    let t = Target::Dir(sub.clone());
    let ledger_path = Path::new("<selftest ledger>");
    let l1 = write::write(&WriteParams {
        target: t.clone(),
        size,
        seed,
        volume_id: SELFTEST_VOLUME_ID,
        block_size: BS,
        threads,
    })?;
    let ledger = write::rewrite(
        &RewriteParams {
            target: t.clone(),
            fraction: 0.5,
            seed: None,
            threads,
        },
        &l1,
        ledger_path,
    )?;
    let vp = VerifyParams {
        target: t.clone(),
        ledger: Some((ledger.clone(), ledger_path.to_path_buf())),
        acks: None,
        volume_id: None,
        threads,
        full_hash: false,
        buffered: false,
    };
    let clean_before = verify::verify(&vp)?.clean;
    let mut injected = inject(&sub, &ledger, seed)?;
    let report = verify::verify(&vp)?;
    let reported: BTreeSet<(DamageKind, String, u64)> = report
        .damage
        .iter()
        .map(|d| (d.kind, d.file.clone(), d.offset))
        .collect();
    for i in &mut injected {
        i.reported = reported.contains(&(i.kind, i.file.clone(), i.offset));
    }
    let wanted: BTreeSet<(DamageKind, String, u64)> = injected
        .iter()
        .map(|i| (i.kind, i.file.clone(), i.offset))
        .collect();
    let unexpected: Vec<_> = report
        .damage
        .iter()
        .filter(|d| !wanted.contains(&(d.kind, d.file.clone(), d.offset)))
        .cloned()
        .collect();
    let acks = acks_check(&sub, seed, threads)?;
    let passed = clean_before
        && injected.iter().all(|i| i.reported)
        && unexpected.is_empty()
        && report.damage_total == injected.len() as u64
        && acks.passed;
    Ok(SelftestReport {
        acks,
        format: "pvcheck-selftest-report".into(),
        version: 1,
        passed,
        injected,
        unexpected,
        clean_before_injection: clean_before,
        verify: report,
    })
}

/// Proves `verify --acks` is not blind either: 16 acknowledged durability records verify clean,
/// and with the last one cut off the log, exactly that record is reported missing.
fn acks_check(sub: &Path, seed: u64, threads: usize) -> Result<AcksSelftest, Error> {
    const RECORDS: u64 = 16;
    let mut acks = Vec::new();
    durability::run(
        &DurabilityParams {
            dir: sub.to_path_buf(),
            seed,
            volume_id: SELFTEST_VOLUME_ID,
            block_size: BS,
            batch: 4,
            stop: Stop::Records(RECORDS),
        },
        &mut acks,
    )?;
    let acks_path = sub.join("selftest-acks.txt");
    std::fs::write(&acks_path, &acks).map_err(|e| Error::io(&acks_path, "write", e))?;
    let vp = VerifyParams {
        target: Target::Dir(sub.to_path_buf()),
        ledger: None,
        acks: Some(acks_path),
        volume_id: None,
        threads,
        full_hash: false,
        buffered: false,
    };
    let before = verify::verify(&vp)?;
    let clean_before_injection =
        before.clean && before.acks.as_ref().is_some_and(|a| a.present == RECORDS);
    let log = sub.join(durability::LOG_NAME);
    let cut = (RECORDS - 1) * BS;
    let f = OpenOptions::new()
        .write(true)
        .open(&log)
        .map_err(|e| Error::io(&log, "open", e))?;
    f.set_len(cut).map_err(|e| Error::io(&log, "truncate", e))?;
    f.sync_all().map_err(|e| Error::io(&log, "fsync", e))?;
    let after = verify::verify(&vp)?;
    let reported = after.damage_total == 1
        && after.damage.first().is_some_and(|d| {
            d.kind == DamageKind::Missing && d.file == durability::LOG_NAME && d.offset == cut
        })
        && after
            .acks
            .as_ref()
            .is_some_and(|a| a.required == RECORDS && a.missing == 1);
    Ok(AcksSelftest {
        passed: clean_before_injection && reported,
        clean_before_injection,
        injected: Injection {
            kind: DamageKind::Missing,
            file: durability::LOG_NAME.into(),
            offset: cut,
            how: format!("cut the last of {RECORDS} acknowledged records off the durability log"),
            reported,
        },
        verify: after,
    })
}

/// Injects one damage of each kind into the dataset under `sub`; returns what was done where.
fn inject(sub: &Path, ledger: &Ledger, seed: u64) -> Result<Vec<Injection>, Error> {
    let layout =
        super::layout::Layout::from_ledger(ledger).map_err(|why| Error::usage("--size", why))?;
    let files = target::files_in(sub, &layout);
    let large = files
        .iter()
        .find(|f| f.display.contains("large"))
        .expect("layout has a large file");
    let smalls: Vec<_> = files
        .iter()
        .filter(|f| f.display.contains("small"))
        .collect();
    if smalls.len() < 2 {
        return Err(Error::usage(
            "--size",
            "selftest's layout needs two small files; use a larger --size",
        ));
    }
    let schedule = Schedule::new(&ledger.generations);
    let blocks = large.size / BS;
    let id = |off: u64, g: u64| BlockId {
        volume_id: ledger.volume_id,
        file_id: large.id,
        offset: off,
        generation: g,
        seed: ledger.seed,
    };
    let rewritten: Vec<u64> = (8..blocks)
        .map(|b| b * BS)
        .filter(|&o| schedule.expected(large.id, o) == 2)
        .collect();
    if rewritten.len() < 2 || blocks < 16 {
        return Err(Error::usage(
            "--size",
            "selftest's large file is too small; use a larger --size",
        ));
    }
    let mut rng = prng::seeded(seed, 0x5E1F);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&large.path)
        .map_err(|e| Error::io(&large.path, "open", e))?;
    let bs = BS as usize;
    let mut out = Vec::new();
    let mut put = |kind: DamageKind, off: u64, content: &[u8], how: String| -> Result<(), Error> {
        io::write_full_at(&f, content, off, &large.path)?;
        out.push(Injection {
            kind,
            file: large.display.clone(),
            offset: off,
            how,
            reported: false,
        });
        Ok(())
    };
    let mut b = vec![0u8; bs];
    // corrupt: one bit flipped anywhere in the block
    let off = 3 * BS;
    block::encode(&id(off, schedule.expected(large.id, off)), &mut b);
    let bit = prng::below(&mut rng, (bs * 8) as u64) as usize;
    b[bit / 8] ^= 1 << (bit % 8);
    put(DamageKind::Corrupt, off, &b, format!("flipped bit {bit}"))?;
    // zeroed
    put(
        DamageKind::Zeroed,
        5 * BS,
        &vec![0u8; bs],
        "zeroed the block".into(),
    )?;
    // stale: generation 1 put back where generation 2 belongs
    let stale_off = rewritten[0];
    block::encode(&id(stale_off, 1), &mut b);
    put(
        DamageKind::Stale,
        stale_off,
        &b,
        "put back generation 1 over generation 2".into(),
    )?;
    // torn: first half of the sectors from generation 1, the rest from generation 2
    let torn_off = rewritten[1];
    let mut g2 = vec![0u8; bs];
    block::encode(&id(torn_off, 1), &mut b);
    block::encode(&id(torn_off, 2), &mut g2);
    let half = (bs / SECTOR / 2) * SECTOR;
    b[half..].copy_from_slice(&g2[half..]);
    put(
        DamageKind::Torn,
        torn_off,
        &b,
        format!(
            "sectors 0..{} from generation 1, the rest from 2",
            half / SECTOR
        ),
    )?;
    // misdirected: block 1's content copied to block 6
    let mut src = io::AlignedBuf::new(bs);
    io::read_full_at(&f, &mut src, BS, &large.path)?;
    put(
        DamageKind::Misdirected,
        6 * BS,
        &src,
        "copied the block at offset 4096 here".into(),
    )?;
    // foreign: bytes that are not a pvcheck block
    let mut junk = vec![0u8; bs];
    junk.iter_mut().for_each(|x| *x = rng.next_u64() as u8);
    put(
        DamageKind::Foreign,
        7 * BS,
        &junk,
        "overwrote with random bytes".into(),
    )?;
    f.sync_all()
        .map_err(|e| Error::io(&large.path, "fsync", e))?;
    // truncated: the last block of the first small file cut off
    let s0 = smalls[0];
    let cut = s0.size - BS;
    let tf = OpenOptions::new()
        .write(true)
        .open(&s0.path)
        .map_err(|e| Error::io(&s0.path, "open", e))?;
    tf.set_len(cut)
        .map_err(|e| Error::io(&s0.path, "truncate", e))?;
    tf.sync_all().map_err(|e| Error::io(&s0.path, "fsync", e))?;
    out.push(Injection {
        kind: DamageKind::Truncated,
        file: s0.display.clone(),
        offset: cut,
        how: format!("truncated from {} to {cut} bytes", s0.size),
        reported: false,
    });
    // missing: the second small file deleted
    let s1 = smalls[1];
    std::fs::remove_file(&s1.path).map_err(|e| Error::io(&s1.path, "delete", e))?;
    out.push(Injection {
        kind: DamageKind::Missing,
        file: s1.display.clone(),
        offset: 0,
        how: "deleted the file".into(),
        reported: false,
    });
    // extra: a file the dataset does not have
    let rel = format!("{DATA_DIR}/selftest-extra");
    std::fs::write(sub.join(&rel), &junk).map_err(|e| Error::io(&sub.join(&rel), "create", e))?;
    out.push(Injection {
        kind: DamageKind::Extra,
        file: rel,
        offset: 0,
        how: "created a file that is not part of the dataset".into(),
        reported: false,
    });
    io::sync_filesystem(sub)?;
    Ok(out)
}
