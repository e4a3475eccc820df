//! Two SHA-256 computations interleaved on SHA-NI. A single SHA-256 stream is bound by the
//! latency of `sha256rnds2` (each round pair waits for the previous one), so the CPU's SHA unit
//! sits idle most cycles; feeding it two independent blocks at once fills those cycles. Writing
//! hashes every block, so this is what lets `write` approach twice the single-stream speed.
//! Results are checked against the `sha2` crate by the tests below; CPUs without SHA-NI (or
//! non-x86 targets) use `sha2` for each message instead.

use sha2::{Digest, Sha256};

/// SHA-256 of `h ++ p` and of `h2 ++ p2`, where `h.len() == h2.len() < 64` and `p.len() == p2.len()`.
pub fn digest_pair(h: &[u8], p: &[u8], h2: &[u8], p2: &[u8]) -> ([u8; 32], [u8; 32]) {
    assert!(h.len() == h2.len() && p.len() == p2.len() && h.len() < 64);
    #[cfg(target_arch = "x86_64")]
    {
        if shani::available() && h.len() + p.len() >= 64 {
            // SAFETY: the CPU supports the features the function is compiled for.
            return unsafe { shani::digest_pair(h, p, h2, p2) };
        }
    }
    let one = |h: &[u8], p: &[u8]| -> [u8; 32] {
        let mut s = Sha256::new();
        s.update(h);
        s.update(p);
        s.finalize().into()
    };
    (one(h, p), one(h2, p2))
}

#[cfg(target_arch = "x86_64")]
mod shani {
    use std::arch::x86_64::*;

    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];
    const H0: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];

    pub fn available() -> bool {
        use std::sync::OnceLock;
        static HAVE: OnceLock<bool> = OnceLock::new();
        *HAVE.get_or_init(|| {
            is_x86_feature_detected!("sha")
                && is_x86_feature_detected!("sse4.1")
                && is_x86_feature_detected!("ssse3")
        })
    }

    /// One lane's working state in the layout sha256rnds2 wants.
    #[derive(Clone, Copy)]
    struct Lane {
        abef: __m128i,
        cdgh: __m128i,
    }

    #[target_feature(enable = "sha,sse4.1,ssse3")]
    fn lane_from(state: &[u32; 8]) -> Lane {
        // SAFETY: reading 2 × 16 bytes from an 8 × u32 array.
        let (dcba, hgfe) = unsafe {
            let p: *const __m128i = state.as_ptr().cast();
            (_mm_loadu_si128(p), _mm_loadu_si128(p.add(1)))
        };
        let cdab = _mm_shuffle_epi32(dcba, 0xB1);
        let efgh = _mm_shuffle_epi32(hgfe, 0x1B);
        Lane {
            abef: _mm_alignr_epi8(cdab, efgh, 8),
            cdgh: _mm_blend_epi16(efgh, cdab, 0xF0),
        }
    }

    #[target_feature(enable = "sha,sse4.1,ssse3")]
    fn lane_digest(l: Lane) -> [u8; 32] {
        let feba = _mm_shuffle_epi32(l.abef, 0x1B);
        let dchg = _mm_shuffle_epi32(l.cdgh, 0xB1);
        let dcba = _mm_blend_epi16(feba, dchg, 0xF0);
        let hgef = _mm_alignr_epi8(dchg, feba, 8);
        let mut st = [0u32; 8];
        // SAFETY: writing 2 × 16 bytes into an 8 × u32 array.
        unsafe {
            let p: *mut __m128i = st.as_mut_ptr().cast();
            _mm_storeu_si128(p, dcba);
            _mm_storeu_si128(p.add(1), hgef);
        }
        let mut out = [0u8; 32];
        for (o, w) in out.chunks_exact_mut(4).zip(st) {
            o.copy_from_slice(&w.to_be_bytes());
        }
        out
    }

    #[target_feature(enable = "sha,sse4.1,ssse3")]
    fn load(block: &[u8]) -> [__m128i; 4] {
        let mask = _mm_set_epi64x(0x0C0D_0E0F_0809_0A0B, 0x0405_0607_0001_0203);
        let p: *const __m128i = block.as_ptr().cast();
        // SAFETY: callers pass at least 64 bytes.
        std::array::from_fn(|i| _mm_shuffle_epi8(unsafe { _mm_loadu_si128(p.add(i)) }, mask))
    }

    /// Compresses one 64-byte block into each lane, the two lanes' instructions interleaved.
    ///
    /// Written out round by round (a macro per group of four rounds) so the sixteen message
    /// words stay in registers: as a loop over `w[r % 4]` the compiler kept them in a stack
    /// array, and every message-schedule step waited for a store to be forwarded to a load.
    #[target_feature(enable = "sha,sse4.1,ssse3")]
    fn compress2(a: &mut Lane, b: &mut Lane, ba: &[u8], bb: &[u8]) {
        let (sa, sb) = (*a, *b);
        let [mut a0, mut a1, mut a2, mut a3] = load(ba);
        let [mut b0, mut b1, mut b2, mut b3] = load(bb);
        // Four rounds on both lanes with message words `$wa` / `$wb` (rounds 4r..4r+4).
        macro_rules! rounds {
            ($r:expr, $wa:expr, $wb:expr) => {{
                // SAFETY: K has 64 entries and $r < 16.
                let k = unsafe { _mm_loadu_si128(K.as_ptr().add(4 * $r).cast()) };
                let ta = _mm_add_epi32($wa, k);
                let tb = _mm_add_epi32($wb, k);
                a.cdgh = _mm_sha256rnds2_epu32(a.cdgh, a.abef, ta);
                b.cdgh = _mm_sha256rnds2_epu32(b.cdgh, b.abef, tb);
                a.abef = _mm_sha256rnds2_epu32(a.abef, a.cdgh, _mm_shuffle_epi32(ta, 0x0E));
                b.abef = _mm_sha256rnds2_epu32(b.abef, b.cdgh, _mm_shuffle_epi32(tb, 0x0E));
            }};
        }
        // The message word of rounds 4r..4r+4 (r >= 4) from the four before it, replacing
        // `$w0`, the oldest: W[r] = msg2(msg1(W[r-4], W[r-3]) + W[r-1..r-2 shifted], W[r-1]).
        macro_rules! schedule {
            ($w0:ident, $w1:ident, $w2:ident, $w3:ident) => {
                $w0 = _mm_sha256msg2_epu32(
                    _mm_add_epi32(_mm_sha256msg1_epu32($w0, $w1), _mm_alignr_epi8($w3, $w2, 4)),
                    $w3,
                );
            };
        }
        rounds!(0, a0, b0);
        rounds!(1, a1, b1);
        rounds!(2, a2, b2);
        rounds!(3, a3, b3);
        macro_rules! four {
            ($r:expr) => {
                schedule!(a0, a1, a2, a3);
                schedule!(b0, b1, b2, b3);
                rounds!($r, a0, b0);
                schedule!(a1, a2, a3, a0);
                schedule!(b1, b2, b3, b0);
                rounds!($r + 1, a1, b1);
                schedule!(a2, a3, a0, a1);
                schedule!(b2, b3, b0, b1);
                rounds!($r + 2, a2, b2);
                schedule!(a3, a0, a1, a2);
                schedule!(b3, b0, b1, b2);
                rounds!($r + 3, a3, b3);
            };
        }
        four!(4);
        four!(8);
        four!(12);
        a.abef = _mm_add_epi32(a.abef, sa.abef);
        a.cdgh = _mm_add_epi32(a.cdgh, sa.cdgh);
        b.abef = _mm_add_epi32(b.abef, sb.abef);
        b.cdgh = _mm_add_epi32(b.cdgh, sb.cdgh);
    }

    /// Message layout: `h` (< 64 bytes) then `p`, with h.len() + p.len() >= 64; same lengths in both lanes.
    #[target_feature(enable = "sha,sse4.1,ssse3")]
    pub fn digest_pair(h: &[u8], p: &[u8], h2: &[u8], p2: &[u8]) -> ([u8; 32], [u8; 32]) {
        let mut a = lane_from(&H0);
        let mut b = lane_from(&H0);
        let total = (h.len() + p.len()) as u64;
        // First block: the header part and the start of the payload.
        let head = 64 - h.len();
        let mut fa = [0u8; 64];
        let mut fb = [0u8; 64];
        fa[..h.len()].copy_from_slice(h);
        fa[h.len()..].copy_from_slice(&p[..head]);
        fb[..h.len()].copy_from_slice(h2);
        fb[h.len()..].copy_from_slice(&p2[..head]);
        compress2(&mut a, &mut b, &fa, &fb);
        // Whole blocks straight from the payload.
        let rest = &p[head..];
        let rest2 = &p2[head..];
        let whole = rest.len() / 64 * 64;
        for (x, y) in rest[..whole]
            .chunks_exact(64)
            .zip(rest2[..whole].chunks_exact(64))
        {
            compress2(&mut a, &mut b, x, y);
        }
        // Tail and padding: 0x80, zeros, bit length (big-endian) in the last 8 bytes.
        let tail = rest.len() - whole;
        let blocks = if tail + 9 <= 64 { 1 } else { 2 };
        let mut ta = [0u8; 128];
        let mut tb = [0u8; 128];
        ta[..tail].copy_from_slice(&rest[whole..]);
        tb[..tail].copy_from_slice(&rest2[whole..]);
        ta[tail] = 0x80;
        tb[tail] = 0x80;
        let end = blocks * 64;
        ta[end - 8..end].copy_from_slice(&(total * 8).to_be_bytes());
        tb[end - 8..end].copy_from_slice(&(total * 8).to_be_bytes());
        for k in 0..blocks {
            compress2(
                &mut a,
                &mut b,
                &ta[k * 64..k * 64 + 64],
                &tb[k * 64..k * 64 + 64],
            );
        }
        (lane_digest(a), lane_digest(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(h: &[u8], p: &[u8]) -> [u8; 32] {
        let mut s = Sha256::new();
        s.update(h);
        s.update(p);
        s.finalize().into()
    }

    /// Every tail length (and so both padding cases) and several header lengths, against sha2.
    #[test]
    fn pair_digest_equals_sha2_for_every_tail_length() {
        let data: Vec<u8> = (0..5000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 7) as u8)
            .collect();
        let data2: Vec<u8> = data.iter().map(|b| b ^ 0x5A).collect();
        for hl in [0usize, 1, 55, 56, 63] {
            for pl in (64 - hl)..(64 - hl + 130) {
                let (h, p) = (&data[..hl], &data[100..100 + pl]);
                let (h2, p2) = (&data2[..hl], &data2[200..200 + pl]);
                let (x, y) = digest_pair(h, p, h2, p2);
                assert_eq!(x, reference(h, p), "hl {hl} pl {pl}");
                assert_eq!(y, reference(h2, p2), "hl {hl} pl {pl}");
            }
        }
        let (x, _) = digest_pair(
            &data[..56],
            &data[56..4096 - 40],
            &data[..56],
            &data[56..4096 - 40],
        );
        assert_eq!(x, reference(&data[..56], &data[56..4096 - 40]));
    }

    #[test]
    fn shani_is_used_on_this_machine_when_the_cpu_has_it() {
        #[cfg(target_arch = "x86_64")]
        if std::fs::read_to_string("/proc/cpuinfo")
            .map(|c| c.contains(" sha_ni"))
            .unwrap_or(false)
        {
            assert!(shani::available());
        }
    }
}
