//! What `verify` and `selftest` print on stdout (JSON). The harness deserialises these types.

use serde::{Deserialize, Serialize};

pub const REPORT_FORMAT: &str = "pvcheck-integrity-report";
pub const REPORT_VERSION: u32 = 1;
/// How many damaged blocks the report lists; `damage_total` counts all of them.
pub const DAMAGE_LISTED_MAX: usize = 100;

/// The kind of one damaged block (or, for the last three, one damaged file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DamageKind {
    /// Our header (magic and version) is there but the block fails its checksum or payload.
    Corrupt,
    /// Every byte is zero.
    Zeroed,
    /// A valid block of this offset, but of an older generation than expected.
    Stale,
    /// A valid block of another offset, file, volume or dataset (or of a newer generation than the ledger knows).
    Misdirected,
    /// Sectors of different generations of this block inside one block.
    Torn,
    /// Not a pvcheck block at all, or one of another dataset with another block size or version.
    Foreign,
    /// A dataset file (or an acknowledged durability record) is absent.
    Missing,
    /// A file is shorter than the layout says; `offset` is the first missing byte's block.
    Truncated,
    /// A file that is not part of the dataset, or bytes past a file's expected end.
    Extra,
}

impl DamageKind {
    pub const ALL: [DamageKind; 9] = [
        DamageKind::Corrupt,
        DamageKind::Zeroed,
        DamageKind::Stale,
        DamageKind::Misdirected,
        DamageKind::Torn,
        DamageKind::Foreign,
        DamageKind::Missing,
        DamageKind::Truncated,
        DamageKind::Extra,
    ];
}

/// Count per kind; every kind is always present, zeros included.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Counts {
    pub corrupt: u64,
    pub zeroed: u64,
    pub stale: u64,
    pub misdirected: u64,
    pub torn: u64,
    pub foreign: u64,
    pub missing: u64,
    pub truncated: u64,
    pub extra: u64,
}

impl Counts {
    pub fn get_mut(&mut self, k: DamageKind) -> &mut u64 {
        match k {
            DamageKind::Corrupt => &mut self.corrupt,
            DamageKind::Zeroed => &mut self.zeroed,
            DamageKind::Stale => &mut self.stale,
            DamageKind::Misdirected => &mut self.misdirected,
            DamageKind::Torn => &mut self.torn,
            DamageKind::Foreign => &mut self.foreign,
            DamageKind::Missing => &mut self.missing,
            DamageKind::Truncated => &mut self.truncated,
            DamageKind::Extra => &mut self.extra,
        }
    }

    pub fn get(&self, k: DamageKind) -> u64 {
        let mut c = self.clone();
        *c.get_mut(k)
    }

    pub fn add(&mut self, other: &Counts) {
        for k in DamageKind::ALL {
            *self.get_mut(k) += other.get(k);
        }
    }

    pub fn total(&self) -> u64 {
        DamageKind::ALL.iter().map(|k| self.get(*k)).sum()
    }
}

/// What a damaged block turned out to hold when it is a valid pvcheck block (stale, misdirected).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FoundBlock {
    pub volume_id: u64,
    pub file_id: u64,
    /// The found block's file relative to `--dir` when it belongs to this dataset
    /// (or `durability log`), else absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    pub offset: u64,
    pub generation: u64,
    pub seed: u64,
}

/// One damaged block or file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Damage {
    pub kind: DamageKind,
    /// Path relative to `--dir`, or the device path.
    pub file: String,
    /// Byte offset of the block in the file or device region.
    pub offset: u64,
    /// The generation this block must hold (absent for extra files).
    pub expected_generation: Option<u64>,
    /// The generation found: the header's for corrupt/stale/misdirected, the newest sector's for torn.
    pub found_generation: Option<u64>,
    /// The found block's identity when it is a valid pvcheck block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub found: Option<FoundBlock>,
    /// For torn blocks: the generation each 512-byte sector matched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sector_generations: Option<Vec<u64>>,
    /// One human line on what was seen (e.g. "file is 12288 bytes, 16384 expected").
    pub detail: String,
    /// Corrupt blocks: the first byte (offset within the block) that differs from what was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_differing_byte: Option<u64>,
    /// Corrupt blocks: how many bytes of the block differ from what was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub differing_bytes: Option<u64>,
}

/// How the blocks were read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadMode {
    /// O_DIRECT: from the device, bypassing the page cache.
    Direct,
    /// Buffered reads after posix_fadvise(DONTNEED); see `read_mode_reason`.
    Buffered,
}

/// The result of checking `verify --acks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AckSummary {
    /// Path of the durability log relative to `--dir`.
    pub log: String,
    /// Acknowledged records (each must be intact).
    pub required: u64,
    /// Acknowledged records found intact.
    pub present: u64,
    /// Acknowledged records damaged or absent (they are listed in `damage`).
    pub missing: u64,
    /// Records past the last acknowledgement found in the log (in flight at a kill; not checked).
    pub unacknowledged_present: u64,
}

/// `verify`'s report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyReport {
    pub format: String,
    pub version: u32,
    /// True when nothing was damaged (and every acknowledged record was present).
    pub clean: bool,
    pub seed: u64,
    pub volume_id: u64,
    /// `dir` or `device`.
    pub target: super::ledger::TargetKind,
    pub counts: Counts,
    /// All damaged blocks and files (the `damage` list holds the first 100 by file and offset).
    pub damage_total: u64,
    pub damage: Vec<Damage>,
    pub files_checked: u64,
    pub blocks_checked: u64,
    pub bytes_checked: u64,
    pub elapsed_seconds: f64,
    pub read_mode: ReadMode,
    /// Why reads were buffered (e.g. "O_DIRECT refused: EINVAL"), absent for direct.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_mode_reason: Option<String>,
    pub threads: u64,
    /// True when every block's sha256 was recomputed (`--full-hash`).
    pub full_hash: bool,
    /// Latest generation the ledger expects (0 when verifying acks only).
    pub generation: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acks: Option<AckSummary>,
}

/// One damage `selftest` injected, and whether verify reported it exactly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Injection {
    pub kind: DamageKind,
    pub file: String,
    pub offset: u64,
    pub how: String,
    pub reported: bool,
}

/// `selftest`'s report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelftestReport {
    pub format: String,
    pub version: u32,
    /// True when verify reported exactly the injected damage and nothing else.
    pub passed: bool,
    pub injected: Vec<Injection>,
    /// Damage verify reported that was not injected (a false alarm).
    pub unexpected: Vec<Damage>,
    /// A clean pass over the freshly written dataset came back clean.
    pub clean_before_injection: bool,
    /// The verify report after injection.
    pub verify: VerifyReport,
    /// The same proof for `verify --acks`.
    pub acks: AcksSelftest,
}

/// `selftest`'s check of the durability log and acknowledgements.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcksSelftest {
    pub passed: bool,
    /// Every acknowledged record verified intact before the injection.
    pub clean_before_injection: bool,
    pub injected: Injection,
    /// `verify --acks` after the injection.
    pub verify: VerifyReport,
}
