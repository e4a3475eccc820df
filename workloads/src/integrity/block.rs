//! The on-volume block format: a 96-byte header followed by a pseudo-random payload.
//!
//! ```text
//! offset  size  field
//!      0     8  magic "PVCHKBLK"
//!      8     2  format version (1), little-endian like every field
//!     10     2  reserved, zero
//!     12     4  block size in bytes
//!     16     8  volume id
//!     24     8  file id (dataset file index; DURABILITY_FILE_ID for the durability log)
//!     32     8  byte offset of the block inside its file or device region
//!     40     8  generation (1 = first write, +1 per rewrite)
//!     48     8  seed of the dataset
//!     56    32  sha256 over bytes 0..56 followed by the payload
//!     88     8  header check: a 64-bit mix of bytes 0..88
//!     96     …  payload: Xoshiro256++ keyed by (seed, volume, file, offset, generation)
//! ```
//! The sha256 makes a block self-verifying (so damage can be classified: a valid block of
//! another offset is *misdirected*, not *corrupt*). The header check exists for speed: verify's
//! fast path regenerates the expected fields and payload and compares them word by word, which
//! covers every byte except the 32 sha256 bytes; the header check covers those, so any change to
//! any byte of a block fails the fast path without hashing the payload (hashing would cap verify
//! at sha256's speed). Only a block that fails the fast path is hashed and classified.

use sha2::{Digest, Sha256};

use super::prng;

pub const MAGIC: [u8; 8] = *b"PVCHKBLK";
pub const FORMAT_VERSION: u16 = 1;
pub const HEADER_LEN: usize = 96;
/// Torn writes are detected at this granularity (the smallest sector a device may write atomically).
pub const SECTOR: usize = 512;
/// The file id stamped on durability records, so a record found in the dataset (or the
/// reverse) is recognised as misdirected.
pub const DURABILITY_FILE_ID: u64 = u64::MAX;

const SHA_AT: usize = 56;
const CHECK_AT: usize = 88;

/// Where a block belongs and which version of it this is: everything that determines its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlockId {
    pub volume_id: u64,
    pub file_id: u64,
    pub offset: u64,
    pub generation: u64,
    pub seed: u64,
}

/// The fields of a header read back from the volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub version: u16,
    pub block_size: u32,
    pub id: BlockId,
}

/// Checks that a block size is usable: a multiple of 512, at least 512, at most 64 MiB.
pub fn valid_block_size(bs: u64) -> bool {
    bs >= SECTOR as u64 && bs.is_multiple_of(SECTOR as u64) && bs <= (64 << 20)
}

fn put_fields(dst: &mut [u8], id: &BlockId, block_size: usize) {
    dst[0..8].copy_from_slice(&MAGIC);
    dst[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    dst[10..12].copy_from_slice(&[0, 0]);
    dst[12..16].copy_from_slice(&(block_size as u32).to_le_bytes());
    dst[16..24].copy_from_slice(&id.volume_id.to_le_bytes());
    dst[24..32].copy_from_slice(&id.file_id.to_le_bytes());
    dst[32..40].copy_from_slice(&id.offset.to_le_bytes());
    dst[40..48].copy_from_slice(&id.generation.to_le_bytes());
    dst[48..56].copy_from_slice(&id.seed.to_le_bytes());
}

fn sha_of(block: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(&block[..SHA_AT]);
    h.update(&block[HEADER_LEN..]);
    h.finalize().into()
}

/// The header check over bytes 0..88. Each word passes through a bijection, so a change in any
/// single word (in particular in the sha256 field) always changes the result.
fn header_check(block: &[u8]) -> u64 {
    let words: [u64; CHECK_AT / 8] =
        std::array::from_fn(|i| u64::from_le_bytes(block[i * 8..i * 8 + 8].try_into().unwrap()));
    prng::fold_key(&words)
}

/// Writes the complete block for `id` into `dst` (its length is the block size).
pub fn encode(id: &BlockId, dst: &mut [u8]) {
    let bs = dst.len();
    debug_assert!(valid_block_size(bs as u64));
    put_fields(dst, id, bs);
    let mut rng = prng::block_rng(id.seed, id.volume_id, id.file_id, id.offset, id.generation);
    prng::fill_words(&mut rng, &mut dst[HEADER_LEN..]);
    let sha = sha_of(dst);
    dst[SHA_AT..CHECK_AT].copy_from_slice(&sha);
    let check = header_check(dst);
    dst[CHECK_AT..HEADER_LEN].copy_from_slice(&check.to_le_bytes());
}

/// The generator key of a block, as [`prng::Lanes4::new`] takes it.
fn key(id: &BlockId) -> [u64; 5] {
    [id.seed, id.volume_id, id.file_id, id.offset, id.generation]
}

/// Splits four consecutive blocks of `bs` bytes.
fn four_mut(quad: &mut [u8], bs: usize) -> [&mut [u8]; 4] {
    let (a, rest) = quad.split_at_mut(bs);
    let (b, rest) = rest.split_at_mut(bs);
    let (c, d) = rest.split_at_mut(bs);
    [a, b, c, d]
}

/// Hashes two blocks whose fields and payload are in place (two SHA-NI streams at once, see
/// `sha256x2`) and writes their sha256 and header check.
fn seal_pair(a: &mut [u8], b: &mut [u8]) {
    let (sa, sb) = super::sha256x2::digest_pair(
        &a[..SHA_AT],
        &a[HEADER_LEN..],
        &b[..SHA_AT],
        &b[HEADER_LEN..],
    );
    for (blk, sha) in [(a, sa), (b, sb)] {
        blk[SHA_AT..CHECK_AT].copy_from_slice(&sha);
        let check = header_check(blk);
        blk[CHECK_AT..HEADER_LEN].copy_from_slice(&check.to_le_bytes());
    }
}

/// Encodes consecutive blocks of `dst` (its length a multiple of `block_size`), block `k` taking
/// the identity `id(k)`: same bytes as [`encode`] for each. Four blocks at a time: their
/// payloads come from one four-lane generator ([`prng::Lanes4`]) and they are hashed two at a
/// time (see `sha256x2`); about twice the speed of one block after another.
pub fn encode_run(dst: &mut [u8], block_size: usize, id: impl Fn(usize) -> BlockId) {
    let bs = block_size;
    let mut quads = dst.chunks_exact_mut(4 * bs);
    let mut done = 0;
    for quad in &mut quads {
        let ids: [BlockId; 4] = std::array::from_fn(|l| id(done + l));
        let [a, b, c, d] = four_mut(quad, bs);
        for (blk, bid) in [&mut *a, &mut *b, &mut *c, &mut *d].into_iter().zip(&ids) {
            put_fields(blk, bid, bs);
        }
        prng::Lanes4::new(ids.map(|i| key(&i))).fill([
            &mut a[HEADER_LEN..],
            &mut b[HEADER_LEN..],
            &mut c[HEADER_LEN..],
            &mut d[HEADER_LEN..],
        ]);
        seal_pair(a, b);
        seal_pair(c, d);
        done += 4;
    }
    let mut rest = quads.into_remainder().chunks_exact_mut(bs);
    loop {
        let Some(a) = rest.next() else { return };
        let Some(b) = rest.next() else {
            encode(&id(done), a);
            return;
        };
        for (k, blk) in [(done, &mut *a), (done + 1, &mut *b)] {
            let bid = id(k);
            put_fields(blk, &bid, bs);
            let mut rng = prng::block_rng(
                bid.seed,
                bid.volume_id,
                bid.file_id,
                bid.offset,
                bid.generation,
            );
            prng::fill_words(&mut rng, &mut blk[HEADER_LEN..]);
        }
        seal_pair(a, b);
        done += 2;
    }
}

/// The fast path's header part: the fields up to the sha256 are those of `id`, and the header
/// check matches the first 88 bytes (so the sha256 field is what was written).
fn header_is(id: &BlockId, got: &[u8]) -> bool {
    let mut expect = [0u8; SHA_AT];
    put_fields(&mut expect, id, got.len());
    if got[..SHA_AT] != expect {
        return false;
    }
    let check = u64::from_le_bytes(got[CHECK_AT..HEADER_LEN].try_into().unwrap());
    header_check(got) == check
}

/// The fast path: true when `got` is exactly the block `encode(id)` would produce, up to the
/// sha256 field, which is checked through the header check (see the module comment).
/// With `full_hash`, the sha256 is recomputed as well.
pub fn is_exactly(id: &BlockId, got: &[u8], full_hash: bool) -> bool {
    if !header_is(id, got) {
        return false;
    }
    let mut rng = prng::block_rng(id.seed, id.volume_id, id.file_id, id.offset, id.generation);
    if !prng::matches_words(&mut rng, &got[HEADER_LEN..]) {
        return false;
    }
    !full_hash || sha_of(got)[..] == got[SHA_AT..CHECK_AT]
}

/// [`is_exactly`] over consecutive blocks of `src` (its length a multiple of `block_size`),
/// block `k` expected to be `id(k)`: calls `bad(k, id(k))` for every block that is not, in
/// order. Eight blocks at a time on the eight-lane generator where the CPU has AVX-512, four
/// at a time on the four-lane one otherwise (and for the rest); a group where anything differs
/// is checked again block by block, so the answer is `is_exactly`'s for every block.
pub fn check_run(
    src: &[u8],
    block_size: usize,
    full_hash: bool,
    id: impl Fn(usize) -> BlockId,
    mut bad: impl FnMut(usize, BlockId),
) {
    let bs = block_size;
    let mut done = 0;
    // Eight blocks per pass where the CPU has AVX-512 (`prng::Lanes8`), then fours.
    let mut octs = src.chunks_exact(8 * bs);
    if prng::Lanes8::available() {
        for oct in &mut octs {
            let ids: [BlockId; 8] = std::array::from_fn(|l| id(done + l));
            let blk = |l: usize| &oct[l * bs..(l + 1) * bs];
            let fast = (0..8).all(|l| header_is(&ids[l], blk(l)))
                && prng::Lanes8::new(ids.map(|i| key(&i)))
                    .matches(std::array::from_fn(|l| &blk(l)[HEADER_LEN..]))
                && (!full_hash || (0..8).all(|l| sha_of(blk(l))[..] == blk(l)[SHA_AT..CHECK_AT]));
            if !fast {
                for (l, bid) in ids.iter().enumerate() {
                    if !is_exactly(bid, blk(l), full_hash) {
                        bad(done + l, *bid);
                    }
                }
            }
            done += 8;
        }
    }
    let rest = &src[done * bs..];
    let mut quads = rest.chunks_exact(4 * bs);
    for quad in &mut quads {
        let ids: [BlockId; 4] = std::array::from_fn(|l| id(done + l));
        let blk = |l: usize| &quad[l * bs..(l + 1) * bs];
        let fast = (0..4).all(|l| header_is(&ids[l], blk(l)))
            && prng::Lanes4::new(ids.map(|i| key(&i)))
                .matches(std::array::from_fn(|l| &blk(l)[HEADER_LEN..]))
            && (!full_hash || (0..4).all(|l| sha_of(blk(l))[..] == blk(l)[SHA_AT..CHECK_AT]));
        if !fast {
            for (l, bid) in ids.iter().enumerate() {
                if !is_exactly(bid, blk(l), full_hash) {
                    bad(done + l, *bid);
                }
            }
        }
        done += 4;
    }
    for b in quads.remainder().chunks_exact(bs) {
        let bid = id(done);
        if !is_exactly(&bid, b, full_hash) {
            bad(done, bid);
        }
        done += 1;
    }
}

/// Parses the header fields if the magic and version are ours (no checksum verified).
pub fn parse_header(b: &[u8]) -> Option<Header> {
    if b.len() < HEADER_LEN || b[0..8] != MAGIC {
        return None;
    }
    let u64_at = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
    Some(Header {
        version: u16::from_le_bytes([b[8], b[9]]),
        block_size: u32::from_le_bytes(b[12..16].try_into().unwrap()),
        id: BlockId {
            volume_id: u64_at(16),
            file_id: u64_at(24),
            offset: u64_at(32),
            generation: u64_at(40),
            seed: u64_at(48),
        },
    })
}

/// Parses the header and proves the block is internally consistent: our magic and version,
/// the block size it claims equals its length, its sha256 and its header check match. Such a block was written
/// by pvcheck exactly like this — possibly somewhere else or at another time.
pub fn parse_valid(b: &[u8]) -> Option<Header> {
    let h = parse_header(b)?;
    if h.version != FORMAT_VERSION || h.block_size as usize != b.len() {
        return None;
    }
    let check = u64::from_le_bytes(b[CHECK_AT..HEADER_LEN].try_into().unwrap());
    (header_check(b) == check && sha_of(b)[..] == b[SHA_AT..CHECK_AT]).then_some(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> BlockId {
        BlockId {
            volume_id: 7,
            file_id: 3,
            offset: 8192,
            generation: 2,
            seed: 42,
        }
    }

    #[test]
    fn encoded_block_passes_fast_path_and_parses_valid() {
        let mut b = vec![0u8; 4096];
        encode(&id(), &mut b);
        assert!(is_exactly(&id(), &b, false));
        assert!(is_exactly(&id(), &b, true));
        assert_eq!(parse_valid(&b).unwrap().id, id());
    }

    #[test]
    fn encode_run_produces_the_same_bytes_as_encode() {
        for (bs, n) in [(512usize, 7usize), (4096, 4), (4096, 5), (8192, 1)] {
            let mut run = vec![0u8; bs * n];
            let idk = |k: usize| BlockId {
                offset: (k * bs) as u64,
                ..id()
            };
            encode_run(&mut run, bs, idk);
            for (k, blk) in run.chunks_exact(bs).enumerate() {
                let mut one = vec![0u8; bs];
                encode(&idk(k), &mut one);
                assert_eq!(blk, &one[..], "bs {bs} block {k}");
            }
        }
    }

    #[test]
    fn block_of_another_generation_does_not_pass() {
        let mut b = vec![0u8; 4096];
        encode(&id(), &mut b);
        let older = BlockId {
            generation: 1,
            ..id()
        };
        assert!(!is_exactly(&older, &b, false));
    }

    #[test]
    fn check_run_reports_exactly_the_blocks_is_exactly_refuses() {
        for (bs, n) in [(512usize, 11usize), (4096, 8), (4096, 6)] {
            let idk = |k: usize| BlockId {
                offset: (k * bs) as u64,
                ..id()
            };
            let mut run = vec![0u8; bs * n];
            encode_run(&mut run, bs, idk);
            for full_hash in [false, true] {
                let mut seen = Vec::new();
                check_run(&run, bs, full_hash, idk, |k, _| seen.push(k));
                assert!(seen.is_empty(), "clean run bs {bs}: {seen:?}");
            }
            // One damaged byte in the payload of a block inside a group of four, one in the
            // sha256 field of another, and a tail block written for another offset.
            let mut bad = run.clone();
            bad[bs + 200] ^= 0x40;
            bad[2 * bs + SHA_AT + 3] ^= 1;
            let last = n - 1;
            encode(&idk(0), &mut bad[last * bs..]);
            let mut seen = Vec::new();
            check_run(&bad, bs, false, idk, |k, got| {
                assert_eq!(got, idk(k));
                seen.push(k);
            });
            let want: Vec<usize> = (0..n)
                .filter(|&k| !is_exactly(&idk(k), &bad[k * bs..(k + 1) * bs], false))
                .collect();
            assert_eq!(seen, want, "bs {bs}");
            assert_eq!(seen, vec![1, 2, last], "bs {bs}");
        }
    }
}
