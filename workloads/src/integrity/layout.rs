//! The dataset layout: which files exist and how large they are, derived only from
//! (seed, size, block size) by a named algorithm, so the ledger stores parameters, not a file list.
//!
//! `pvcheck-layout-v1`: a quarter of the size (at most 64 MiB) goes to small files of 4–64 KiB
//! (multiples of the block size, lengths drawn from the seed), the rest is split evenly among
//! up to four large files (one per 64 MiB, at least one). Small files exercise metadata paths
//! (allocation, directory entries); large files exercise extents and throughput.

use super::ledger::{LayoutParams, Ledger};
use super::prng;

pub const ALGORITHM: &str = "pvcheck-layout-v1";
/// The directory under `--dir` that holds the dataset; nothing outside it is read as data.
pub const DATA_DIR: &str = "pvcheck-data";
const TAG_LAYOUT: u64 = 0x4C41_594F_5554; // "LAYOUT"
const LARGE_MAX: u64 = 4;
const LARGE_UNIT: u64 = 64 << 20;
const SMALL_BUDGET_CAP: u64 = 64 << 20;

/// One file of the dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSpec {
    pub id: u64,
    /// Path relative to `--dir`, e.g. `pvcheck-data/small-00012`.
    pub rel_path: String,
    pub size: u64,
}

/// The full file list of a dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub files: Vec<FileSpec>,
}

/// The parameters `write` records for a new dataset.
pub fn params_for(seed: u64, size: u64, block_size: u64) -> LayoutParams {
    let small_min = 4096u64.div_ceil(block_size) * block_size;
    let small_max = (65536 / block_size) * block_size;
    let small_budget = if small_min <= small_max {
        ((size / 4).min(SMALL_BUDGET_CAP) / block_size) * block_size
    } else {
        0
    };
    let mut p = LayoutParams {
        algorithm: ALGORITHM.to_string(),
        small_budget,
        small_min,
        small_max,
        large_max: LARGE_MAX,
        file_count: 0,
    };
    p.file_count = generate(seed, size, block_size, &p)
        .map(|l| l.files.len() as u64)
        .unwrap_or(0);
    p
}

/// Runs the layout algorithm. Errors say which parameter is inconsistent.
pub fn generate(seed: u64, size: u64, bs: u64, p: &LayoutParams) -> Result<Layout, String> {
    if p.algorithm != ALGORITHM {
        return Err(format!(
            "algorithm {:?} is unknown (this agent knows {ALGORITHM:?})",
            p.algorithm
        ));
    }
    if p.small_budget > size || !p.small_budget.is_multiple_of(bs) {
        return Err(format!(
            "small_budget {} is not a multiple of the block size within size",
            p.small_budget
        ));
    }
    if p.small_budget > 0
        && (p.small_min == 0
            || !p.small_min.is_multiple_of(bs)
            || !p.small_max.is_multiple_of(bs)
            || p.small_min > p.small_max)
    {
        return Err(format!(
            "small_min {} / small_max {} are not block multiples with min <= max",
            p.small_min, p.small_max
        ));
    }
    if p.large_max == 0 || p.large_max > 1 << 20 {
        return Err(format!("large_max {} is out of range", p.large_max));
    }
    let mut rng = prng::seeded(seed, TAG_LAYOUT);
    let mut small = Vec::new();
    let mut allocated = 0u64;
    while p.small_budget > 0 && p.small_budget - allocated >= p.small_min {
        let hi = p.small_max.min(p.small_budget - allocated) / bs;
        let lo = p.small_min / bs;
        let n = lo + prng::below(&mut rng, hi - lo + 1);
        small.push(n * bs);
        allocated += n * bs;
    }
    let rest_blocks = (size - allocated) / bs;
    let large_count = if rest_blocks == 0 {
        0
    } else {
        ((size - allocated) / LARGE_UNIT)
            .clamp(1, p.large_max)
            .min(rest_blocks)
    };
    let mut files = Vec::with_capacity(small.len() + large_count as usize);
    for i in 0..large_count {
        let blocks = rest_blocks / large_count + u64::from(i < rest_blocks % large_count);
        files.push(FileSpec {
            id: i,
            rel_path: format!("{DATA_DIR}/large-{i:03}"),
            size: blocks * bs,
        });
    }
    for (i, s) in small.into_iter().enumerate() {
        files.push(FileSpec {
            id: large_count + i as u64,
            rel_path: format!("{DATA_DIR}/small-{i:05}"),
            size: s,
        });
    }
    if p.file_count != 0 && p.file_count != files.len() as u64 {
        return Err(format!(
            "file_count {} but the algorithm yields {} files",
            p.file_count,
            files.len()
        ));
    }
    Ok(Layout { files })
}

impl Layout {
    pub fn from_ledger(l: &Ledger) -> Result<Layout, String> {
        generate(l.seed, l.size, l.block_size, &l.layout)
    }
}

/// A unit of work for one thread: a byte range of one file (or of the device region).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    /// Index into the target's file list.
    pub file: usize,
    pub offset: u64,
    pub len: u64,
}

/// Largest chunk a thread reads or writes in one call: large enough for sequential throughput,
/// small enough that two threads share a single large file evenly.
pub const CHUNK_MAX: u64 = 4 << 20;

/// The chunks of a list of files, computed on demand: a multi-terabyte device would otherwise
/// need a list of millions of chunks in memory before the first byte moves.
#[derive(Debug, Clone)]
pub struct Chunks {
    step: u64,
    sizes: Vec<u64>,
    /// Index of each file's first chunk; one extra entry holds the total.
    first: Vec<usize>,
}

impl Chunks {
    pub fn len(&self) -> usize {
        *self.first.last().unwrap_or(&0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Chunk `i` (< len()).
    pub fn get(&self, i: usize) -> Chunk {
        // the last file whose first chunk is <= i (files without chunks share their start)
        let file = self.first.partition_point(|&f| f <= i) - 1;
        let offset = (i - self.first[file]) as u64 * self.step;
        Chunk {
            file,
            offset,
            len: self.step.min(self.sizes[file] - offset),
        }
    }
}

/// Splits files of the given sizes into chunks of at most [`CHUNK_MAX`] (whole blocks).
pub fn chunks(sizes: &[u64], bs: u64) -> Chunks {
    let step = (CHUNK_MAX / bs).max(1) * bs;
    let mut first = Vec::with_capacity(sizes.len() + 1);
    let mut n = 0usize;
    for &size in sizes {
        first.push(n);
        n += size.div_ceil(step) as usize;
    }
    first.push(n);
    Chunks {
        step,
        sizes: sizes.to_vec(),
        first,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_sums_to_size_with_small_and_large_files() {
        for (size, bs) in [
            (1u64 << 20, 4096u64),
            (10 << 20, 4096),
            (300 << 20, 4096),
            (1 << 20, 512),
            (2 << 20, 128 << 10),
        ] {
            let p = params_for(9, size, bs);
            let l = generate(9, size, bs, &p).unwrap();
            assert_eq!(
                l.files.iter().map(|f| f.size).sum::<u64>(),
                size,
                "{size} {bs}"
            );
            assert!(l.files.iter().all(|f| f.size % bs == 0 && f.size > 0));
            if bs <= 4096 {
                assert!(
                    l.files
                        .iter()
                        .any(|f| f.rel_path.contains("small") && f.size <= 65536)
                );
            }
            assert!(
                l.files
                    .iter()
                    .filter(|f| f.rel_path.contains("large"))
                    .count()
                    <= 4
            );
        }
    }

    #[test]
    fn chunks_cover_every_byte_once_including_empty_files() {
        let sizes = [0u64, 4096, 9 << 20, 0, 0, 8192, CHUNK_MAX, 0];
        let c = chunks(&sizes, 4096);
        let mut covered = vec![0u64; sizes.len()];
        for i in 0..c.len() {
            let k = c.get(i);
            assert_eq!(k.offset, covered[k.file], "chunk {i}: {k:?}");
            assert!(k.len > 0 && k.len <= CHUNK_MAX);
            covered[k.file] += k.len;
        }
        assert_eq!(covered, sizes);
        assert!(chunks(&[], 4096).is_empty());
        assert_eq!(chunks(&[1 << 50], 4096).len(), 1 << 28); // a 1 PiB device costs no memory
    }

    #[test]
    fn layout_depends_on_seed_and_is_reproducible() {
        let p = params_for(1, 8 << 20, 4096);
        assert_eq!(
            generate(1, 8 << 20, 4096, &p),
            generate(1, 8 << 20, 4096, &p)
        );
        let q = params_for(2, 8 << 20, 4096);
        assert_ne!(
            generate(1, 8 << 20, 4096, &p).unwrap(),
            generate(2, 8 << 20, 4096, &q).unwrap()
        );
    }
}
