//! Names the damage in one block that failed the fast path. Exactly one kind per block, decided
//! in this order: zeroed, a valid pvcheck block (stale or misdirected), torn, corrupt, foreign.

use super::block::{self, BlockId, DURABILITY_FILE_ID, HEADER_LEN, SECTOR};
use super::prng;
use super::report::{Damage, DamageKind, FoundBlock};
use super::schedule::Schedule;

/// What the classifier knows about the dataset.
pub struct Context<'a> {
    pub volume_id: u64,
    pub seed: u64,
    pub schedule: &'a Schedule,
    /// Display name of each file id of this dataset (index = id).
    pub names: &'a [String],
}

impl Context<'_> {
    fn name_of(&self, volume_id: u64, seed: u64, file_id: u64) -> Option<String> {
        if volume_id != self.volume_id || seed != self.seed {
            return None;
        }
        if file_id == DURABILITY_FILE_ID {
            return Some("durability log".into());
        }
        self.names.get(file_id as usize).cloned()
    }
}

/// Classifies `got`, the content of block (`file_id`, `offset`) that should hold `expected`.
/// A corrupt block also says where it differs from what was written: the first differing byte
/// and how many bytes differ (a bit flip is 1 byte; a sector of garbage is ~512).
pub fn classify(ctx: &Context, file: &str, expected: &BlockId, got: &[u8]) -> Damage {
    let mut d = classify_kind(ctx, file, expected, got);
    if d.kind == DamageKind::Corrupt && block::valid_block_size(got.len() as u64) {
        let mut want = vec![0u8; got.len()];
        block::encode(expected, &mut want);
        let mut first = None;
        let mut count = 0u64;
        for (i, (a, b)) in want.iter().zip(got).enumerate() {
            if a != b {
                first.get_or_insert(i as u64);
                count += 1;
            }
        }
        if let Some(f) = first {
            d.detail.push_str(&format!(
                "; first differing byte at +{f} of the block, {count} byte(s) differ"
            ));
        }
        d.first_differing_byte = first;
        d.differing_bytes = Some(count);
    }
    d
}

fn classify_kind(ctx: &Context, file: &str, expected: &BlockId, got: &[u8]) -> Damage {
    let mut d = Damage {
        kind: DamageKind::Foreign,
        file: file.to_string(),
        offset: expected.offset,
        expected_generation: Some(expected.generation),
        found_generation: None,
        found: None,
        sector_generations: None,
        detail: String::new(),
        first_differing_byte: None,
        differing_bytes: None,
    };
    if got.iter().all(|&b| b == 0) {
        d.kind = DamageKind::Zeroed;
        d.detail = "every byte is zero".into();
        return d;
    }
    if let Some(h) = block::parse_valid(got) {
        let f = h.id;
        d.found_generation = Some(f.generation);
        d.found = Some(FoundBlock {
            volume_id: f.volume_id,
            file_id: f.file_id,
            file: ctx.name_of(f.volume_id, f.seed, f.file_id),
            offset: f.offset,
            generation: f.generation,
            seed: f.seed,
        });
        let same_place = f.volume_id == expected.volume_id
            && f.file_id == expected.file_id
            && f.offset == expected.offset
            && f.seed == expected.seed;
        (d.kind, d.detail) = if same_place && f.generation == expected.generation {
            // The sha256 is right and the identity is right, so only the header check differs.
            (
                DamageKind::Corrupt,
                "header check field damaged, rest of the block intact".into(),
            )
        } else if same_place && f.generation < expected.generation {
            (
                DamageKind::Stale,
                format!(
                    "valid block of generation {} (expected {})",
                    f.generation, expected.generation
                ),
            )
        } else if same_place {
            (
                DamageKind::Misdirected,
                format!(
                    "valid block of generation {}, newer than the ledger's {}",
                    f.generation, expected.generation
                ),
            )
        } else {
            (DamageKind::Misdirected, describe_elsewhere(ctx, &f))
        };
        return d;
    }
    if let Some(sectors) = torn_sectors(ctx, expected, got) {
        d.kind = DamageKind::Torn;
        d.found_generation = sectors.iter().max().copied();
        d.detail = format!("sectors of generations {}", summarize(&sectors));
        d.sector_generations = Some(sectors);
        return d;
    }
    if let Some(h) = block::parse_header(got)
        && (h.block_size as usize != got.len() || h.version != block::FORMAT_VERSION)
        && (h.id.volume_id != expected.volume_id || h.id.seed != expected.seed)
    {
        // Two fields differ (so this is not a bit flip in our own block): another pvcheck dataset with another block size or format version: its checksum
        // cannot be checked at this block size, so all that is known is that it is not ours.
        d.kind = DamageKind::Foreign;
        d.found_generation = Some(h.id.generation);
        d.detail = format!(
            "pvcheck block of volume {} with block size {} and format version {} (this dataset: {} bytes, version {})",
            h.id.volume_id,
            h.block_size,
            h.version,
            got.len(),
            block::FORMAT_VERSION
        );
        return d;
    }
    if let Some(h) = block::parse_header(got) {
        d.kind = DamageKind::Corrupt;
        d.found_generation = Some(h.id.generation);
        d.detail = "pvcheck header present, checksum does not match the content".into();
        return d;
    }
    let mut rng = prng::block_rng(
        expected.seed,
        expected.volume_id,
        expected.file_id,
        expected.offset,
        expected.generation,
    );
    if prng::matches_words(&mut rng, &got[HEADER_LEN..]) {
        d.kind = DamageKind::Corrupt;
        d.detail = "header damaged, payload intact".into();
        return d;
    }
    d.detail = format!(
        "not a pvcheck block (first bytes {})",
        hex(&got[..16.min(got.len())])
    );
    d
}

fn describe_elsewhere(ctx: &Context, f: &BlockId) -> String {
    if f.volume_id != ctx.volume_id {
        return format!(
            "valid block of volume {} (file {}, offset {})",
            f.volume_id, f.file_id, f.offset
        );
    }
    if f.seed != ctx.seed {
        return format!(
            "valid block of another dataset (seed {}, file {}, offset {})",
            f.seed, f.file_id, f.offset
        );
    }
    match ctx.name_of(f.volume_id, f.seed, f.file_id) {
        Some(n) => format!(
            "valid block of {n} at offset {} (generation {})",
            f.offset, f.generation
        ),
        None => format!(
            "valid block of unknown file id {} at offset {}",
            f.file_id, f.offset
        ),
    }
}

/// When every 512-byte sector equals the same sector of some generation this block has held,
/// and at least two generations appear, returns the generation of each sector.
fn torn_sectors(ctx: &Context, expected: &BlockId, got: &[u8]) -> Option<Vec<u64>> {
    let history = if expected.file_id == DURABILITY_FILE_ID {
        vec![1]
    } else {
        ctx.schedule.history(expected.file_id, expected.offset)
    };
    if history.len() < 2 {
        return None;
    }
    let versions: Vec<(u64, Vec<u8>)> = history
        .iter()
        .map(|&g| {
            let mut b = vec![0u8; got.len()];
            block::encode(
                &BlockId {
                    generation: g,
                    ..*expected
                },
                &mut b,
            );
            (g, b)
        })
        .collect();
    let mut out = Vec::with_capacity(got.len() / SECTOR);
    for (i, s) in got.chunks(SECTOR).enumerate() {
        let r = i * SECTOR..i * SECTOR + s.len();
        let g = versions.iter().find(|(_, v)| &v[r.clone()] == s)?.0;
        out.push(g);
    }
    let first = out[0];
    out.iter().any(|&g| g != first).then_some(out)
}

/// `1×4, 2×4` style summary of a sector map.
fn summarize(sectors: &[u64]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < sectors.len() {
        let mut j = i;
        while j < sectors.len() && sectors[j] == sectors[i] {
            j += 1;
        }
        parts.push(format!("{}x{}", sectors[i], j - i));
        i = j;
    }
    parts.join(", ")
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
