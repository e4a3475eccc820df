//! Where each I/O goes: block offsets in a region, sequential (wrapping) or random.
//!
//! Random jobs visit every block once per pass, in a new order each pass, as fio does by
//! default (its random map). Drawing offsets with replacement instead leaves about a third of
//! the blocks untouched per pass and rereads others, which flatters caches on reads and skips
//! part of the volume on writes. No map is kept: the order is a keyed bijection on the block
//! numbers ([`BlockPermutation`]), so a 4 GiB region costs no memory and every worker (and
//! every thread of the thread engine) can share one walk through a common counter.

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

/// A keyed permutation of `0..n`.
///
/// Built from steps that are each a bijection on `k`-bit numbers (`2^k` the smallest power of
/// two >= n): xor and add a key, multiply by an odd constant, xor with a right shift of itself.
/// Values that land at or above `n` are mapped again until they fall inside (cycle walking),
/// which keeps it a permutation of `0..n`; since `2^k < 2n`, that takes under two steps on
/// average.
#[derive(Debug, Clone)]
pub struct BlockPermutation {
    n: u64,
    mask: u64,
    shift: u32,
    keys: [u64; 2],
    muls: [u64; 2],
}

impl BlockPermutation {
    pub fn new(n: u64, key: u64) -> Self {
        let bits = if n <= 1 {
            0
        } else {
            64 - (n - 1).leading_zeros()
        };
        let mask = if bits == 64 {
            u64::MAX
        } else {
            (1u64 << bits) - 1
        };
        let mut k = SplitMix::new(key);
        BlockPermutation {
            n,
            mask,
            shift: bits.div_ceil(2).max(1),
            keys: [k.next_u64(), k.next_u64()],
            muls: [k.next_u64() | 1, k.next_u64() | 1],
        }
    }

    #[inline]
    fn round(&self, mut x: u64) -> u64 {
        let m = self.mask;
        x = (x ^ self.keys[0]) & m;
        x = x.wrapping_mul(self.muls[0]) & m;
        x ^= x >> self.shift;
        x = x.wrapping_add(self.keys[1]) & m;
        x = x.wrapping_mul(self.muls[1]) & m;
        x ^= x >> self.shift;
        x = x.wrapping_mul(self.muls[0]) & m;
        x ^= x >> self.shift;
        x = x.wrapping_add(self.keys[0]) & m;
        x = x.wrapping_mul(self.muls[1]) & m;
        x ^ (x >> self.shift)
    }

    /// The block at position `i` (`i < n`) of the walk.
    #[inline]
    pub fn at(&self, i: u64) -> u64 {
        debug_assert!(i < self.n.max(1));
        if self.n <= 1 {
            return 0;
        }
        let mut x = self.round(i);
        while x >= self.n {
            x = self.round(x);
        }
        x
    }
}

/// Which I/O of the job this is: a worker's own count, or one shared by the threads that
/// walk a region together (thread engine).
#[derive(Debug, Clone)]
pub enum Counter {
    Local(u64),
    Shared(Arc<AtomicU64>),
}

impl Counter {
    pub fn shared() -> Self {
        Counter::Shared(Arc::new(AtomicU64::new(0)))
    }
    #[inline]
    fn take(&mut self) -> u64 {
        match self {
            Counter::Local(c) => {
                let v = *c;
                *c += 1;
                v
            }
            Counter::Shared(a) => a.fetch_add(1, Ordering::Relaxed),
        }
    }
}

#[derive(Debug, Clone)]
enum Order {
    Sequential,
    /// One permutation per pass, keyed by (seed, pass): every sharer derives the same one.
    Random {
        seed: u64,
        pass: u64,
        perm: BlockPermutation,
    },
}

/// Offsets for one worker.
#[derive(Debug, Clone)]
pub struct Offsets {
    start: u64,
    blocks: u64,
    bs: u64,
    counter: Counter,
    order: Order,
}

fn pass_key(seed: u64, pass: u64) -> u64 {
    SplitMix::new(seed ^ pass.wrapping_mul(0xD6E8_FEB8_6659_FD93)).next_u64()
}

impl Offsets {
    /// Blocks `0, 1, …, blocks-1, 0, …` of the region starting at `start`.
    pub fn sequential(start: u64, blocks: u64, bs: u64, counter: Counter) -> Self {
        Offsets {
            start,
            blocks: blocks.max(1),
            bs,
            counter,
            order: Order::Sequential,
        }
    }

    /// Every block once per pass, in an order that `seed` and the pass number decide.
    pub fn random(start: u64, blocks: u64, bs: u64, seed: u64, counter: Counter) -> Self {
        let blocks = blocks.max(1);
        Offsets {
            start,
            blocks,
            bs,
            counter,
            order: Order::Random {
                seed,
                pass: 0,
                perm: BlockPermutation::new(blocks, pass_key(seed, 0)),
            },
        }
    }

    #[inline]
    pub fn next_offset(&mut self) -> u64 {
        let i = self.counter.take();
        let (pass, pos) = (i / self.blocks, i % self.blocks);
        let block = match &mut self.order {
            Order::Sequential => pos,
            Order::Random {
                seed,
                pass: p,
                perm,
            } => {
                if *p != pass {
                    *perm = BlockPermutation::new(self.blocks, pass_key(*seed, pass));
                    *p = pass;
                }
                perm.at(pos)
            }
        };
        self.start + block * self.bs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sequential_wraps_inside_the_region() {
        let mut o = Offsets::sequential(1000, 3, 10, Counter::Local(0));
        let v: Vec<u64> = (0..5).map(|_| o.next_offset()).collect();
        assert_eq!(v, [1000, 1010, 1020, 1000, 1010]);
    }

    proptest! {
        #[test]
        fn a_block_permutation_visits_every_block_exactly_once(n in 1u64..5000, key: u64) {
            let p = BlockPermutation::new(n, key);
            let mut seen = vec![false; n as usize];
            for i in 0..n {
                let b = p.at(i);
                prop_assert!(b < n);
                prop_assert!(!seen[b as usize], "block {} twice", b);
                seen[b as usize] = true;
            }
        }
    }

    #[test]
    fn permutations_of_huge_regions_stay_inside_them() {
        for n in [u64::MAX, (1 << 63) + 1, 1 << 40, (1 << 40) - 3] {
            let p = BlockPermutation::new(n, 9);
            for i in [0, 1, n / 2, n - 1] {
                assert!(p.at(i) < n);
            }
        }
    }

    #[test]
    fn random_offsets_cover_every_block_once_per_pass_in_a_new_order() {
        let blocks = 1000u64;
        let mut o = Offsets::random(4096, blocks, 4096, 3, Counter::Local(0));
        let mut passes = Vec::new();
        for _ in 0..2 {
            let pass: Vec<u64> = (0..blocks).map(|_| o.next_offset()).collect();
            let mut sorted = pass.clone();
            sorted.sort_unstable();
            let want: Vec<u64> = (0..blocks).map(|b| 4096 + b * 4096).collect();
            assert_eq!(sorted, want, "a pass must hit each aligned block once");
            passes.push(pass);
        }
        assert_ne!(passes[0], passes[1], "each pass walks a new order");
    }

    #[test]
    fn random_order_is_not_close_to_sequential() {
        // A weak mixer keeps neighbours together: count the steps to an adjacent block.
        let blocks = 1 << 16;
        for key in 0..8 {
            let p = BlockPermutation::new(blocks, key);
            let adjacent = (0..blocks - 1)
                .filter(|&i| p.at(i).abs_diff(p.at(i + 1)) == 1)
                .count();
            // A uniformly random order has about 2 such steps in 65536.
            assert!(
                adjacent < 12,
                "key {key}: {adjacent} steps to a neighbouring block"
            );
            let first_half_low = (0..blocks / 2).filter(|&i| p.at(i) < blocks / 2).count();
            let share = first_half_low as f64 / (blocks / 2) as f64;
            assert!((0.48..0.52).contains(&share), "key {key}: {share}");
        }
    }

    #[test]
    fn threads_sharing_a_counter_split_one_walk_without_overlap() {
        let counter = Counter::shared();
        let mut workers: Vec<Offsets> = (0..4)
            .map(|_| Offsets::random(0, 4096, 512, 7, counter.clone()))
            .collect();
        let mut seen = std::collections::HashSet::new();
        for i in 0..4096 {
            let off = workers[i % 4].next_offset();
            assert_eq!(off % 512, 0);
            assert!(
                seen.insert(off),
                "offset {off} handed out twice in one pass"
            );
        }
        assert_eq!(seen.len(), 4096);
    }
}
