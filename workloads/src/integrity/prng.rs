//! The named, reproducible generators behind every block's payload and every seeded choice.
//!
//! Payloads come from Xoshiro256++ (crate `rand_xoshiro`), keyed by SplitMix64 from
//! (seed, volume id, file id, offset, generation). Both algorithms are fixed by their papers,
//! so a dataset written by one agent version can be verified by another; `StdRng` is avoided
//! because its algorithm may change between `rand` releases. A known-answer test pins the output.

use rand_core::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

/// One step of SplitMix64 (Steele, Lea, Flood 2014): advances `state` and returns a mixed word.
#[inline]
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    mix64(*state)
}

/// SplitMix64's finaliser: a bijection on u64 with full avalanche.
#[inline]
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Folds a list of words into one key; each step is a bijection of the running value, so
/// changing any single input changes the key.
#[inline]
pub fn fold_key(words: &[u64]) -> u64 {
    let mut h = 0x6A09_E667_F3BC_C908u64;
    for &w in words {
        h = mix64(h ^ w).wrapping_add(0x9E37_79B9_7F4A_7C15);
    }
    h
}

/// The payload generator of one block.
pub fn block_rng(
    seed: u64,
    volume_id: u64,
    file_id: u64,
    offset: u64,
    generation: u64,
) -> Xoshiro256PlusPlus {
    let words = block_state(seed, volume_id, file_id, offset, generation);
    let mut s = [0u8; 32];
    for (chunk, w) in s.chunks_exact_mut(8).zip(words) {
        chunk.copy_from_slice(&w.to_le_bytes());
    }
    Xoshiro256PlusPlus::from_seed(s)
}

/// A general-purpose seeded generator (layout, selftest choices), derived from `seed` and a
/// domain tag so different uses of one seed never share a stream.
pub fn seeded(seed: u64, tag: u64) -> Xoshiro256PlusPlus {
    let mut state = fold_key(&[seed, tag]);
    let mut s = [0u8; 32];
    for chunk in s.chunks_exact_mut(8) {
        chunk.copy_from_slice(&splitmix64(&mut state).to_le_bytes());
    }
    Xoshiro256PlusPlus::from_seed(s)
}

/// Fills `dst` (length a multiple of 8) with the generator's words, little-endian.
#[inline]
pub fn fill_words(rng: &mut Xoshiro256PlusPlus, dst: &mut [u8]) {
    for chunk in dst.chunks_exact_mut(8) {
        chunk.copy_from_slice(&rng.next_u64().to_le_bytes());
    }
}

/// True when `src` (length a multiple of 8) is exactly what `rng` generates next.
/// Compares word by word without materialising the expected bytes: this is verify's hot loop.
#[inline]
pub fn matches_words(rng: &mut Xoshiro256PlusPlus, src: &[u8]) -> bool {
    let mut diff = 0u64;
    // Accumulate differences over short runs so the loop stays branch-light, but stop early
    // on a mismatch so damaged blocks do not cost a full pass.
    for run in src.chunks(256) {
        for chunk in run.chunks_exact(8) {
            let w = u64::from_le_bytes(chunk.try_into().unwrap());
            diff |= w ^ rng.next_u64();
        }
        if diff != 0 {
            return false;
        }
    }
    true
}

/// The key of one block's generator: the 32 seed bytes `block_rng` gives Xoshiro256++.
#[inline]
fn block_state(seed: u64, volume_id: u64, file_id: u64, offset: u64, generation: u64) -> [u64; 4] {
    let mut state = fold_key(&[seed, volume_id, file_id, offset, generation]);
    // SplitMix64's output is zero only for a zero state, and four consecutive states differ by
    // an odd constant, so at most one word is zero: never the all-zero state Xoshiro refuses.
    std::array::from_fn(|_| splitmix64(&mut state))
}

/// The vector instructions the four-lane generator uses on this CPU.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Simd {
    Avx512,
    Avx2,
    None,
}

#[cfg(target_arch = "x86_64")]
fn simd() -> Simd {
    if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vl") {
        Simd::Avx512
    } else if is_x86_feature_detected!("avx2") {
        Simd::Avx2
    } else {
        Simd::None
    }
}

/// The four-lane generator's vector code, stamped once per instruction set: with AVX-512VL
/// enabled the compiler turns each 64-bit rotation (two shifts and an or on AVX2) into one
/// `vprolq`, three of the fourteen operations of a step saved; the code is the same.
#[cfg(target_arch = "x86_64")]
macro_rules! lanes4_simd {
    ($features:literal, $next:ident, $fill:ident, $matches:ident) => {
        /// Four lanes' next four words each, transposed so that `out[l]` holds lane `l`'s words
        /// in order (what goes into block `l`).
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $features)]
        fn $next(v: &mut [std::arch::x86_64::__m256i; 4]) -> [std::arch::x86_64::__m256i; 4] {
            use std::arch::x86_64::*;
            let mut r = [_mm256_setzero_si256(); 4];
            for out in &mut r {
                let [s0, s1, s2, s3] = v;
                let sum = _mm256_add_epi64(*s0, *s3);
                let rot = _mm256_or_si256(_mm256_slli_epi64(sum, 23), _mm256_srli_epi64(sum, 41));
                *out = _mm256_add_epi64(rot, *s0);
                let t = _mm256_slli_epi64(*s1, 17);
                *s2 = _mm256_xor_si256(*s2, *s0);
                *s3 = _mm256_xor_si256(*s3, *s1);
                *s1 = _mm256_xor_si256(*s1, *s2);
                *s0 = _mm256_xor_si256(*s0, *s3);
                *s2 = _mm256_xor_si256(*s2, t);
                *s3 = _mm256_or_si256(_mm256_slli_epi64(*s3, 45), _mm256_srli_epi64(*s3, 19));
            }
            // r[j] holds step j of lanes 0..4; transpose the 4 × 4 words.
            let t0 = _mm256_unpacklo_epi64(r[0], r[1]);
            let t1 = _mm256_unpackhi_epi64(r[0], r[1]);
            let t2 = _mm256_unpacklo_epi64(r[2], r[3]);
            let t3 = _mm256_unpackhi_epi64(r[2], r[3]);
            [
                _mm256_permute2x128_si256(t0, t2, 0x20),
                _mm256_permute2x128_si256(t1, t3, 0x20),
                _mm256_permute2x128_si256(t0, t2, 0x31),
                _mm256_permute2x128_si256(t1, t3, 0x31),
            ]
        }

        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $features)]
        fn $fill(&mut self, dst: [&mut [u8]; 4]) {
            use std::arch::x86_64::*;
            let n = dst[0].len();
            assert!(dst.iter().all(|d| d.len() == n) && n.is_multiple_of(8));
            let whole = n / 32 * 32;
            let mut v = self.load_avx2();
            let mut at = 0;
            while at < whole {
                let w = Self::$next(&mut v);
                for (d, x) in dst.iter().zip(w) {
                    // SAFETY: at + 32 <= whole <= d.len(); unaligned store.
                    unsafe { _mm256_storeu_si256(d.as_ptr().add(at) as *mut __m256i, x) };
                }
                at += 32;
            }
            self.store_avx2(v);
            let [a, b, c, d] = dst;
            self.fill_portable([
                &mut a[whole..],
                &mut b[whole..],
                &mut c[whole..],
                &mut d[whole..],
            ]);
        }

        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $features)]
        fn $matches(&mut self, src: [&[u8]; 4]) -> bool {
            use std::arch::x86_64::*;
            let n = src[0].len();
            assert!(src.iter().all(|s| s.len() == n) && n.is_multiple_of(8));
            let whole = n / 32 * 32;
            let mut v = self.load_avx2();
            let mut diff = _mm256_setzero_si256();
            let mut at = 0;
            while at < whole {
                // Runs of 256 bytes per lane, then one test: a damaged block stops early.
                let end = (at + 256).min(whole);
                while at < end {
                    let w = Self::$next(&mut v);
                    for (s, x) in src.iter().zip(w) {
                        // SAFETY: at + 32 <= whole <= s.len(); unaligned load.
                        let got =
                            unsafe { _mm256_loadu_si256(s.as_ptr().add(at) as *const __m256i) };
                        diff = _mm256_or_si256(diff, _mm256_xor_si256(got, x));
                    }
                    at += 32;
                }
                if _mm256_testz_si256(diff, diff) == 0 {
                    return false;
                }
            }
            self.store_avx2(v);
            self.matches_portable([
                &src[0][whole..],
                &src[1][whole..],
                &src[2][whole..],
                &src[3][whole..],
            ])
        }
    };
}

/// Four blocks' payload generators stepped together: `s[word][lane]`, a struct of arrays that
/// the compiler keeps in vector registers, so four Xoshiro256++ streams cost about what one
/// does. A single stream is a serial chain of dependent operations; writing and verifying
/// blocks four at a time is what lets the generator keep up with memory.
///
/// Lane `l` produces exactly the words of `block_rng(...)` for its block (pinned by a test
/// against `rand_xoshiro`), so the on-volume format is unchanged.
#[derive(Clone)]
pub struct Lanes4 {
    s: [[u64; 4]; 4],
}

impl Lanes4 {
    /// The generators of four blocks, each given as (seed, volume id, file id, offset, generation).
    pub fn new(keys: [[u64; 5]; 4]) -> Lanes4 {
        let st = keys.map(|k| block_state(k[0], k[1], k[2], k[3], k[4]));
        Lanes4 {
            s: std::array::from_fn(|w| std::array::from_fn(|l| st[l][w])),
        }
    }

    #[inline(always)]
    fn next(&mut self) -> [u64; 4] {
        let [s0, s1, s2, s3] = &mut self.s;
        let mut r = [0u64; 4];
        for l in 0..4 {
            r[l] = s0[l]
                .wrapping_add(s3[l])
                .rotate_left(23)
                .wrapping_add(s0[l]);
            let t = s1[l] << 17;
            s2[l] ^= s0[l];
            s3[l] ^= s1[l];
            s1[l] ^= s2[l];
            s0[l] ^= s3[l];
            s2[l] ^= t;
            s3[l] = s3[l].rotate_left(45);
        }
        r
    }

    /// Fills four equally long buffers (length a multiple of 8), lane `l` into `dst[l]`.
    #[inline]
    pub fn fill(&mut self, dst: [&mut [u8]; 4]) {
        #[cfg(target_arch = "x86_64")]
        match simd() {
            // SAFETY: the CPU supports the instructions (detected by `simd`).
            Simd::Avx512 => return unsafe { self.fill_avx512(dst) },
            Simd::Avx2 => return unsafe { self.fill_avx2(dst) },
            Simd::None => {}
        }
        self.fill_portable(dst)
    }

    /// True when every `src[l]` (length a multiple of 8, all equal) is exactly what lane `l`
    /// generates next. Stops at the end of the 256-byte run where any lane first differs; false
    /// does not say which lane differed (the caller then checks each block alone).
    #[inline]
    pub fn matches(&mut self, src: [&[u8]; 4]) -> bool {
        #[cfg(target_arch = "x86_64")]
        match simd() {
            // SAFETY: the CPU supports the instructions (detected by `simd`).
            Simd::Avx512 => return unsafe { self.matches_avx512(src) },
            Simd::Avx2 => return unsafe { self.matches_avx2(src) },
            Simd::None => {}
        }
        self.matches_portable(src)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn load_avx2(&self) -> [std::arch::x86_64::__m256i; 4] {
        // SAFETY: each `s[w]` is 4 × u64 = 32 bytes; unaligned loads.
        self.s
            .map(|w| unsafe { std::arch::x86_64::_mm256_loadu_si256(w.as_ptr().cast()) })
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn store_avx2(&mut self, v: [std::arch::x86_64::__m256i; 4]) {
        for (w, x) in self.s.iter_mut().zip(v) {
            // SAFETY: each `s[w]` is 32 bytes; unaligned store.
            unsafe { std::arch::x86_64::_mm256_storeu_si256(w.as_mut_ptr().cast(), x) };
        }
    }

    #[cfg(target_arch = "x86_64")]
    lanes4_simd!("avx2", next4_avx2, fill_avx2, matches_avx2);
    #[cfg(target_arch = "x86_64")]
    lanes4_simd!(
        "avx2,avx512f,avx512vl",
        next4_avx512,
        fill_avx512,
        matches_avx512
    );

    #[inline(always)]
    fn fill_portable(&mut self, dst: [&mut [u8]; 4]) {
        let [a, b, c, d] = dst;
        let n = a.len();
        assert!(b.len() == n && c.len() == n && d.len() == n && n.is_multiple_of(8));
        let it = a
            .chunks_exact_mut(8)
            .zip(b.chunks_exact_mut(8))
            .zip(c.chunks_exact_mut(8).zip(d.chunks_exact_mut(8)));
        for ((wa, wb), (wc, wd)) in it {
            let r = self.next();
            wa.copy_from_slice(&r[0].to_le_bytes());
            wb.copy_from_slice(&r[1].to_le_bytes());
            wc.copy_from_slice(&r[2].to_le_bytes());
            wd.copy_from_slice(&r[3].to_le_bytes());
        }
    }

    #[inline(always)]
    fn matches_portable(&mut self, src: [&[u8]; 4]) -> bool {
        let n = src[0].len();
        assert!(src.iter().all(|s| s.len() == n) && n.is_multiple_of(8));
        let word = |s: &[u8], i: usize| u64::from_le_bytes(s[i..i + 8].try_into().unwrap());
        let mut diff = [0u64; 4];
        let mut at = 0;
        // Runs of 256 bytes keep the loop branch-light; a damaged block stops it early.
        while at < n {
            let end = (at + 256).min(n);
            while at < end {
                let r = self.next();
                for l in 0..4 {
                    diff[l] |= word(src[l], at) ^ r[l];
                }
                at += 8;
            }
            if diff.iter().any(|&d| d != 0) {
                return false;
            }
        }
        true
    }
}

/// Eight blocks' payload generators in the eight 64-bit lanes of an AVX-512 register: the
/// same streams as [`Lanes4`] (each lane is its block's `block_rng`), twice the blocks per
/// operation. Verify's check runs on it where the CPU has AVX-512 (`Lanes8::available`).
#[derive(Clone)]
pub struct Lanes8 {
    s: [[u64; 8]; 4],
}

impl Lanes8 {
    /// The generators of eight blocks, each given as (seed, volume id, file id, offset, generation).
    pub fn new(keys: [[u64; 5]; 8]) -> Lanes8 {
        let st = keys.map(|k| block_state(k[0], k[1], k[2], k[3], k[4]));
        Lanes8 {
            s: std::array::from_fn(|w| std::array::from_fn(|l| st[l][w])),
        }
    }

    /// True when this CPU runs the eight-lane code (AVX-512F and VL).
    pub fn available() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            simd() == Simd::Avx512
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    /// One step of every lane, in portable code (the words past the last whole 64 bytes).
    fn next_portable(&mut self) -> [u64; 8] {
        let [s0, s1, s2, s3] = &mut self.s;
        std::array::from_fn(|l| {
            let r = s0[l]
                .wrapping_add(s3[l])
                .rotate_left(23)
                .wrapping_add(s0[l]);
            let t = s1[l] << 17;
            s2[l] ^= s0[l];
            s3[l] ^= s1[l];
            s1[l] ^= s2[l];
            s0[l] ^= s3[l];
            s2[l] ^= t;
            s3[l] = s3[l].rotate_left(45);
            r
        })
    }

    /// True when every `src[l]` (length a multiple of 8, all equal) is exactly what lane `l`
    /// generates next; false does not say which lane differed. Stops at the end of the
    /// 512-byte run where a lane first differs. Panics where `available` is false.
    pub fn matches(&mut self, src: [&[u8]; 8]) -> bool {
        let n = src[0].len();
        assert!(src.iter().all(|s| s.len() == n) && n.is_multiple_of(8));
        #[cfg(target_arch = "x86_64")]
        {
            assert!(Self::available(), "Lanes8 needs AVX-512F and AVX-512VL");
            // SAFETY: the CPU has AVX-512F (checked just above).
            unsafe { self.matches_avx512(src) }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = src;
            panic!("Lanes8 needs AVX-512");
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    fn matches_avx512(&mut self, src: [&[u8]; 8]) -> bool {
        use std::arch::x86_64::*;
        let n = src[0].len();
        let whole = n / 64 * 64;
        // SAFETY: each `s[w]` is 8 × u64 = 64 bytes; unaligned loads.
        let mut v: [__m512i; 4] = self
            .s
            .map(|w| unsafe { _mm512_loadu_si512(w.as_ptr().cast()) });
        let mut diff = _mm512_setzero_si512();
        let mut at = 0;
        while at < whole {
            let end = (at + 512).min(whole);
            while at < end {
                // Eight steps of the eight lanes: r[j] holds step j of lanes 0..8.
                let mut r = [_mm512_setzero_si512(); 8];
                for out in &mut r {
                    let [s0, s1, s2, s3] = &mut v;
                    let sum = _mm512_add_epi64(*s0, *s3);
                    *out = _mm512_add_epi64(_mm512_rol_epi64::<23>(sum), *s0);
                    let t = _mm512_slli_epi64::<17>(*s1);
                    *s2 = _mm512_xor_si512(*s2, *s0);
                    *s3 = _mm512_xor_si512(*s3, *s1);
                    *s1 = _mm512_xor_si512(*s1, *s2);
                    *s0 = _mm512_xor_si512(*s0, *s3);
                    *s2 = _mm512_xor_si512(*s2, t);
                    *s3 = _mm512_rol_epi64::<45>(*s3);
                }
                // Transpose 8 × 8 words: lane l's eight steps, in order, into one register.
                // After the unpacks, 128-bit part q of a[e], a[2+e], a[4+e], a[6+e] holds
                // lane 2q+e's steps (0,1), (2,3), (4,5), (6,7).
                let a: [__m512i; 8] = std::array::from_fn(|k| {
                    let (x, y) = (r[k & !1], r[k | 1]);
                    if k % 2 == 0 {
                        _mm512_unpacklo_epi64(x, y)
                    } else {
                        _mm512_unpackhi_epi64(x, y)
                    }
                });
                for e in 0..2 {
                    let (x, y, z, w) = (a[e], a[2 + e], a[4 + e], a[6 + e]);
                    let xy02 = _mm512_shuffle_i64x2::<0x88>(x, y);
                    let xy13 = _mm512_shuffle_i64x2::<0xDD>(x, y);
                    let zw02 = _mm512_shuffle_i64x2::<0x88>(z, w);
                    let zw13 = _mm512_shuffle_i64x2::<0xDD>(z, w);
                    let lanes = [
                        (e, _mm512_shuffle_i64x2::<0x88>(xy02, zw02)),
                        (2 + e, _mm512_shuffle_i64x2::<0x88>(xy13, zw13)),
                        (4 + e, _mm512_shuffle_i64x2::<0xDD>(xy02, zw02)),
                        (6 + e, _mm512_shuffle_i64x2::<0xDD>(xy13, zw13)),
                    ];
                    for (l, want) in lanes {
                        // SAFETY: at + 64 <= whole <= src[l].len(); unaligned load.
                        let got = unsafe { _mm512_loadu_si512(src[l].as_ptr().add(at).cast()) };
                        diff = _mm512_or_si512(diff, _mm512_xor_si512(got, want));
                    }
                }
                at += 64;
            }
            if _mm512_test_epi64_mask(diff, diff) != 0 {
                return false;
            }
        }
        for (w, x) in self.s.iter_mut().zip(v) {
            // SAFETY: each `s[w]` is 64 bytes; unaligned store.
            unsafe { _mm512_storeu_si512(w.as_mut_ptr().cast(), x) };
        }
        let word = |s: &[u8], i: usize| u64::from_le_bytes(s[i..i + 8].try_into().unwrap());
        while at < n {
            let r = self.next_portable();
            if (0..8).any(|l| word(src[l], at) != r[l]) {
                return false;
            }
            at += 8;
        }
        true
    }
}

/// A uniform integer in `0..n` (n > 0) by Lemire's multiply-shift; bias is below 2^-32 for the
/// small ranges used here and, more importantly, fixed forever.
#[inline]
pub fn below(rng: &mut Xoshiro256PlusPlus, n: u64) -> u64 {
    ((rng.next_u64() as u128 * n as u128) >> 64) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pins the generator: if a dependency update changed Xoshiro256++ or our keying, datasets
    /// written by older agents would all verify as corrupt. This must never change.
    #[test]
    fn payload_generator_known_answer_never_changes() {
        let mut r = block_rng(1, 2, 3, 4096, 1);
        let got: Vec<u64> = (0..3).map(|_| r.next_u64()).collect();
        assert_eq!(got, KNOWN);
    }
    const KNOWN: [u64; 3] = [
        1597783586766877839,
        16118761510966675447,
        2624135274903317050,
    ];

    /// Xoshiro256++ itself, against the reference implementation's output for state [1, 2, 3, 4].
    #[test]
    fn xoshiro256plusplus_matches_reference_vector() {
        let mut seed = [0u8; 32];
        for (i, w) in [1u64, 2, 3, 4].iter().enumerate() {
            seed[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
        }
        let mut r = Xoshiro256PlusPlus::from_seed(seed);
        let got: Vec<u64> = (0..3).map(|_| r.next_u64()).collect();
        assert_eq!(got, [41943041, 58720359, 3588806011781223]);
    }

    #[test]
    fn splitmix_matches_reference_vector() {
        // Reference: SplitMix64 seeded with 1234567 (from the public reference implementation).
        let mut s = 1234567u64;
        assert_eq!(splitmix64(&mut s), 6457827717110365317);
        assert_eq!(splitmix64(&mut s), 3203168211198807973);
    }

    /// The four-lane generator is only a faster way to produce the same bytes: every lane
    /// must equal `block_rng` for its block, or datasets would stop verifying.
    #[test]
    fn four_lane_generator_produces_each_blocks_own_stream() {
        let keys: [[u64; 5]; 4] = [
            [1, 2, 3, 4096, 1],
            [1, 2, 3, 8192, 1],
            [9, 8, 7, 0, 5],
            [u64::MAX, 0, u64::MAX, 1 << 40, 2],
        ];
        for len in [8usize, 24, 40, 416, 4000, 8096] {
            let mut bufs = [
                vec![0u8; len],
                vec![0u8; len],
                vec![0u8; len],
                vec![0u8; len],
            ];
            let [a, b, c, d] = &mut bufs;
            Lanes4::new(keys).fill([a, b, c, d]);
            for (k, buf) in keys.iter().zip(&bufs) {
                let mut want = vec![0u8; len];
                fill_words(&mut block_rng(k[0], k[1], k[2], k[3], k[4]), &mut want);
                assert_eq!(buf, &want, "key {k:?} len {len}");
            }
            let src = [&bufs[0][..], &bufs[1][..], &bufs[2][..], &bufs[3][..]];
            assert!(Lanes4::new(keys).matches(src));
            assert!(Lanes4::new(keys).matches_portable(src));
            let mut again = [
                vec![0u8; len],
                vec![0u8; len],
                vec![0u8; len],
                vec![0u8; len],
            ];
            let [a, b, c, d] = &mut again;
            Lanes4::new(keys).fill_portable([a, b, c, d]);
            assert_eq!(again, bufs, "portable fill, len {len}");
            // Each instruction set this CPU has, whichever `fill` picked.
            #[cfg(target_arch = "x86_64")]
            for variant in [Simd::Avx2, Simd::Avx512] {
                let usable = match variant {
                    Simd::Avx2 => is_x86_feature_detected!("avx2"),
                    _ => simd() == Simd::Avx512,
                };
                if !usable {
                    continue;
                }
                let mut again = [
                    vec![0u8; len],
                    vec![0u8; len],
                    vec![0u8; len],
                    vec![0u8; len],
                ];
                let [a, b, c, d] = &mut again;
                // SAFETY: the CPU has the instructions (checked above).
                let matched = unsafe {
                    if variant == Simd::Avx2 {
                        Lanes4::new(keys).fill_avx2([a, b, c, d]);
                        Lanes4::new(keys).matches_avx2(src)
                    } else {
                        Lanes4::new(keys).fill_avx512([a, b, c, d]);
                        Lanes4::new(keys).matches_avx512(src)
                    }
                };
                assert_eq!(again, bufs, "{variant:?} fill, len {len}");
                assert!(matched, "{variant:?} matches, len {len}");
            }
        }
    }

    /// The eight-lane check accepts exactly each block's own stream and refuses any damaged
    /// lane, whatever the length (whole 64-byte steps and the words after them).
    #[test]
    fn eight_lane_match_accepts_each_blocks_stream_and_nothing_else() {
        if !Lanes8::available() {
            return;
        }
        let keys: [[u64; 5]; 8] =
            std::array::from_fn(|l| [3 + l as u64 % 2, 9, l as u64, 4096 * l as u64, 1 + l as u64]);
        for len in [8usize, 56, 64, 72, 520, 4000, 8096] {
            let bufs: Vec<Vec<u8>> = keys
                .iter()
                .map(|k| {
                    let mut b = vec![0u8; len];
                    fill_words(&mut block_rng(k[0], k[1], k[2], k[3], k[4]), &mut b);
                    b
                })
                .collect();
            let src: [&[u8]; 8] = std::array::from_fn(|l| &bufs[l][..]);
            assert!(Lanes8::new(keys).matches(src), "len {len}");
            for lane in 0..8 {
                for byte in [0, len / 2, len - 1] {
                    let mut damaged = bufs.clone();
                    damaged[lane][byte] ^= 0x10;
                    let src: [&[u8]; 8] = std::array::from_fn(|l| &damaged[l][..]);
                    assert!(
                        !Lanes8::new(keys).matches(src),
                        "lane {lane} byte {byte} len {len}"
                    );
                }
            }
            // Two blocks swapped: each is a valid stream, of the other block.
            let mut swapped = bufs.clone();
            swapped.swap(2, 5);
            let src: [&[u8]; 8] = std::array::from_fn(|l| &swapped[l][..]);
            assert!(!Lanes8::new(keys).matches(src), "swapped, len {len}");
        }
    }

    #[test]
    fn four_lane_match_never_passes_a_damaged_lane() {
        let keys: [[u64; 5]; 4] = std::array::from_fn(|l| [5, 6, 7, 512 * l as u64, 1]);
        let len = 4000;
        let mut bufs = [
            vec![0u8; len],
            vec![0u8; len],
            vec![0u8; len],
            vec![0u8; len],
        ];
        let [a, b, c, d] = &mut bufs;
        Lanes4::new(keys).fill([a, b, c, d]);
        for (lane, byte) in [(0usize, 0usize), (2, 3999), (3, 1000)] {
            let mut damaged = bufs.clone();
            damaged[lane][byte] ^= 1;
            let src = [
                &damaged[0][..],
                &damaged[1][..],
                &damaged[2][..],
                &damaged[3][..],
            ];
            assert!(!Lanes4::new(keys).matches(src), "lane {lane} byte {byte}");
        }
    }
}
