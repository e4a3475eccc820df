//! The ledger: everything `verify` needs to recompute the expected content and generation of
//! every block, in a size that does not grow with the dataset (only with the number of rewrites).
//!
//! `write` prints it on stdout; the harness keeps it off the volume. Unknown fields are refused
//! (a misspelt field silently ignored would verify against the wrong expectation).

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::error::Error;

pub const LEDGER_FORMAT: &str = "pvcheck-integrity-ledger";
pub const LEDGER_VERSION: u32 = 1;

/// What was written and how to recompute it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ledger {
    /// Always [`LEDGER_FORMAT`].
    pub format: String,
    /// Ledger and block format version; this agent reads [`LEDGER_VERSION`] only.
    pub version: u32,
    /// Volume id given to `write` and stamped in every block.
    pub volume_id: u64,
    /// Dataset seed, stamped in every block; generation 1's seed.
    pub seed: u64,
    /// Dataset size in bytes.
    pub size: u64,
    /// Block size in bytes (a multiple of 512).
    pub block_size: u64,
    /// Where the dataset lives.
    pub target: TargetKind,
    /// Parameters from which the file list is recomputed (for `target: dir`).
    pub layout: LayoutParams,
    /// Generation 1 is the initial write (fraction 1.0); each rewrite appends one entry.
    pub generations: Vec<Generation>,
}

/// Files in a directory or a region of a raw block device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    /// Files under `<dir>/pvcheck-data/`.
    Dir,
    /// Bytes `0..size` of the device.
    Device,
}

/// The inputs of the deterministic layout algorithm (see `layout.rs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayoutParams {
    /// Algorithm name; a future layout gets a new name rather than silently changing this one.
    pub algorithm: String,
    /// Bytes given to small files.
    pub small_budget: u64,
    /// Smallest and largest small file.
    pub small_min: u64,
    pub small_max: u64,
    /// Upper bound on the number of large files sharing the rest.
    pub large_max: u64,
    /// Number of files the algorithm produced (a cross-check against a changed algorithm).
    pub file_count: u64,
}

/// One generation: which blocks it rewrote is recomputed from its seed and fraction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Generation {
    pub generation: u64,
    pub seed: u64,
    /// Fraction of blocks this generation wrote (1.0 for generation 1).
    pub fraction: f64,
}

impl Ledger {
    /// Reads and validates a ledger file. Every refusal names the path and the field.
    pub fn load(path: &Path) -> Result<Ledger, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, "read ledger", e))?;
        Self::parse(&text, path)
    }

    /// Parses and validates ledger text; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Ledger, Error> {
        let bad = |field: &str, why: String| Error::Ledger {
            path: path.display().to_string(),
            field: field.to_string(),
            why,
        };
        // Check format and version before the full parse, so a ledger of a newer version gets
        // "unsupported version" rather than a confusing missing-field message.
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| bad("(document)", format!("not JSON: {e}")))?;
        match v.get("format").and_then(|f| f.as_str()) {
            Some(LEDGER_FORMAT) => {}
            Some(other) => {
                return Err(bad("format", format!("{other:?} is not {LEDGER_FORMAT:?}")));
            }
            None => return Err(bad("format", "missing".into())),
        }
        match v.get("version").and_then(|f| f.as_u64()) {
            Some(n) if n == LEDGER_VERSION as u64 => {}
            Some(n) => {
                return Err(bad(
                    "version",
                    format!(
                        "version {n} is not supported (this agent reads version {LEDGER_VERSION})"
                    ),
                ));
            }
            None => return Err(bad("version", "missing or not an integer".into())),
        }
        let l: Ledger = serde_json::from_value(v).map_err(|e| bad("(document)", e.to_string()))?;
        if !super::block::valid_block_size(l.block_size) {
            return Err(bad(
                "block_size",
                format!("{} is not a multiple of 512 in 512B..64MiB", l.block_size),
            ));
        }
        if l.size == 0 || !l.size.is_multiple_of(l.block_size) {
            return Err(bad(
                "size",
                format!(
                    "{} is not a positive multiple of block_size {}",
                    l.size, l.block_size
                ),
            ));
        }
        if l.generations.is_empty() {
            return Err(bad(
                "generations",
                "empty: generation 1 (the initial write) is required".into(),
            ));
        }
        for (i, g) in l.generations.iter().enumerate() {
            if g.generation != i as u64 + 1 {
                return Err(bad(
                    &format!("generations[{i}].generation"),
                    format!(
                        "{} where {} was expected (generations count up from 1)",
                        g.generation,
                        i + 1
                    ),
                ));
            }
            let first = i == 0;
            if (first && g.fraction != 1.0) || !(g.fraction > 0.0 && g.fraction <= 1.0) {
                return Err(bad(
                    &format!("generations[{i}].fraction"),
                    format!(
                        "{} is out of range (generation 1 must be 1.0, later ones in (0, 1])",
                        g.fraction
                    ),
                ));
            }
        }
        if l.generations[0].seed != l.seed {
            return Err(bad("generations[0].seed", "differs from seed".into()));
        }
        if l.target == TargetKind::Dir {
            super::layout::Layout::from_ledger(&l).map_err(|why| bad("layout", why))?;
        }
        Ok(l)
    }

    /// The generation the latest write left in every block that no rewrite selected.
    pub fn latest_generation(&self) -> u64 {
        self.generations.len() as u64
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("ledger serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger(size: u64) -> Ledger {
        Ledger {
            format: LEDGER_FORMAT.into(),
            version: LEDGER_VERSION,
            volume_id: 1,
            seed: 2,
            size,
            block_size: 4096,
            target: TargetKind::Dir,
            layout: crate::integrity::layout::params_for(2, size, 4096),
            generations: vec![Generation {
                generation: 1,
                seed: 2,
                fraction: 1.0,
            }],
        }
    }

    /// The bound: under 64 KiB for a 10 GiB dataset, and it must not grow with the size.
    #[test]
    fn ledger_size_does_not_grow_with_the_dataset() {
        let small = ledger(1 << 20).to_json().len();
        let mut big = ledger(10 << 30);
        assert!(
            big.to_json().len() < small + 16,
            "{} vs {small}",
            big.to_json().len()
        );
        for g in 2..=100 {
            big.generations.push(Generation {
                generation: g,
                seed: g * 7,
                fraction: 0.1,
            });
        }
        let text = big.to_json();
        assert!(text.len() < 64 << 10, "{}", text.len());
        assert_eq!(Ledger::parse(&text, Path::new("l")).unwrap(), big);
    }

    /// Found by the `ledger` fuzz target in CI: without serde_json's `float_roundtrip`, a
    /// fraction such as 6e-123 came back one ULP off, and which blocks a generation rewrote is
    /// recomputed from that fraction, so verify would have looked for the wrong blocks.
    #[test]
    fn generation_fractions_survive_the_round_trip_to_the_last_bit() {
        let mut l = ledger(1 << 20);
        for (g, fraction) in [
            (2, 6e-123),
            (3, 0.1 + 0.2),
            (4, f64::MIN_POSITIVE),
            (5, 1.0 - f64::EPSILON),
        ] {
            l.generations.push(Generation {
                generation: g,
                seed: 421_120_886_797,
                fraction,
            });
        }
        let again = Ledger::parse(&l.to_json(), Path::new("l")).unwrap();
        for (a, b) in again.generations.iter().zip(&l.generations) {
            assert_eq!(
                a.fraction.to_bits(),
                b.fraction.to_bits(),
                "generation {}",
                b.generation
            );
        }
    }

    #[test]
    fn inconsistent_ledgers_are_refused_naming_the_field() {
        let p = Path::new("l.json");
        let mut l = ledger(1 << 20);
        l.generations.push(Generation {
            generation: 3,
            seed: 1,
            fraction: 0.5,
        });
        let e = Ledger::parse(&l.to_json(), p).unwrap_err().to_string();
        assert!(e.contains("generations[1].generation"), "{e}");
        let mut l = ledger(1 << 20);
        l.size = 1000;
        let e = Ledger::parse(&l.to_json(), p).unwrap_err().to_string();
        assert!(e.contains("`size`"), "{e}");
        let mut l = ledger(1 << 20);
        l.layout.file_count += 1;
        let e = Ledger::parse(&l.to_json(), p).unwrap_err().to_string();
        assert!(e.contains("layout") && e.contains("file_count"), "{e}");
        let text = ledger(1 << 20)
            .to_json()
            .replace("\"size\": 1048576", "\"size\": \"1MiB\"");
        assert!(Ledger::parse(&text, p).is_err());
    }
}
