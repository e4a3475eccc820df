//! Where each I/O goes: sequential (wrapping) or uniformly random block offsets in a region.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// SplitMix64: tiny and fast; good enough to pick offsets and the read/write mix.
#[derive(Debug, Clone)]
pub struct SplitMix(u64);

impl SplitMix {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in 0..n without a division (Lemire's multiply-shift).
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }
}

/// Offsets for one worker.
pub enum Offsets {
    Sequential {
        start: u64,
        blocks: u64,
        bs: u64,
        next: u64,
    },
    /// Several threads walking one region in order (thread engine, sequential jobs).
    SharedSequential {
        start: u64,
        blocks: u64,
        bs: u64,
        next: Arc<AtomicU64>,
    },
    Random {
        start: u64,
        blocks: u64,
        bs: u64,
        rng: SplitMix,
    },
}

impl Offsets {
    #[inline]
    pub fn next_offset(&mut self) -> u64 {
        match self {
            Offsets::Sequential {
                start,
                blocks,
                bs,
                next,
            } => {
                let b = *next;
                *next = if b + 1 >= *blocks { 0 } else { b + 1 };
                *start + b * *bs
            }
            Offsets::SharedSequential {
                start,
                blocks,
                bs,
                next,
            } => *start + (next.fetch_add(1, Ordering::Relaxed) % *blocks) * *bs,
            Offsets::Random {
                start,
                blocks,
                bs,
                rng,
            } => *start + rng.below(*blocks) * *bs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequential_wraps_inside_the_region() {
        let mut o = Offsets::Sequential {
            start: 1000,
            blocks: 3,
            bs: 10,
            next: 0,
        };
        let v: Vec<u64> = (0..5).map(|_| o.next_offset()).collect();
        assert_eq!(v, [1000, 1010, 1020, 1000, 1010]);
    }

    #[test]
    fn random_offsets_stay_aligned_inside_the_region_and_cover_it() {
        let mut o = Offsets::Random {
            start: 4096,
            blocks: 16,
            bs: 4096,
            rng: SplitMix::new(3),
        };
        let mut hit = [false; 16];
        for _ in 0..1000 {
            let off = o.next_offset();
            assert_eq!(off % 4096, 0);
            assert!((4096..4096 + 16 * 4096).contains(&off));
            hit[((off - 4096) / 4096) as usize] = true;
        }
        assert!(hit.iter().all(|h| *h));
    }
}
