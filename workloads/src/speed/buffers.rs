//! Memory the engines hand to the kernel: page-aligned buffers (O_DIRECT needs them), and the
//! pool of random, incompressible write data.
//!
//! Writes point straight into the pool (no copy per I/O). Each write takes the next `bs` bytes
//! of its own partition and stamps a counter into every 4 KiB block first, so no two written
//! blocks are alike: dedup and compression cannot flatter the figures.
//!
//! The pool is as small as that allows: what can be in flight at once (like fio's one buffer
//! per I/O slot), at least [`MIN_POOL`]. A pool 4× that size was measured at 0.88 of fio's
//! bandwidth for 1 MiB buffered writes at QD16 on tmpfs (64 MiB of source data falls out of
//! the CPU caches, fio's 16 MiB does not); at 1× it matched fio. A partition is split per I/O
//! slot ([`PoolCursor::split`]) so a region is only restamped after its previous write
//! completed, whatever order completions arrive in.

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::ptr::NonNull;

use rand_core::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

use super::job::JobParams;

pub const ALIGN: usize = 4096;
/// 2 MiB: larger than the blocks storage compresses independently (up to 1 MiB records), small
/// enough to stay in cache like fio's per-I/O buffers, so neither tool pays cold-memory copies.
const MIN_POOL: u64 = 2 << 20;

/// A zeroed, page-aligned heap buffer.
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    layout: Layout,
}

// SAFETY: plain memory; whoever shares it coordinates access (disjoint regions per writer).
unsafe impl Send for AlignedBuf {}
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    pub fn zeroed(len: usize) -> Self {
        let layout = Layout::from_size_align(len.max(1).next_multiple_of(ALIGN), ALIGN)
            .expect("size fits in isize");
        // SAFETY: non-zero size.
        let raw = unsafe { alloc_zeroed(layout) };
        let ptr = NonNull::new(raw).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        Self { ptr, layout }
    }
    pub fn len(&self) -> usize {
        self.layout.size()
    }
    pub fn is_empty(&self) -> bool {
        false
    }
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }
    /// The buffer as a slice. Only for setup, while no I/O uses it.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: we own `len` initialised (zeroed) bytes.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len()) }
    }
    /// Never frees the memory: for a stalled job whose I/Os may still land in it.
    pub fn leak(self) {
        std::mem::forget(self);
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated with this layout in `zeroed`.
        unsafe { dealloc(self.ptr.as_ptr(), self.layout) };
    }
}

/// Pool size for a job: everything that can be in flight, each I/O rounded up to whole pages
/// (so every slot's share holds at least one block), at least [`MIN_POOL`].
pub fn pool_len(job: &JobParams) -> u64 {
    let stride = (job.bs as u128).next_multiple_of(ALIGN as u128);
    let inflight = stride * job.iodepth as u128 * job.jobs as u128;
    inflight
        .max(MIN_POOL as u128)
        .min(u64::MAX as u128)
        .next_multiple_of(ALIGN as u128) as u64
}

/// Random write data shared by all workers of a run.
pub struct DataPool {
    buf: AlignedBuf,
}

impl DataPool {
    pub fn new(len: u64, seed: u64) -> Self {
        let mut buf = AlignedBuf::zeroed(len as usize);
        Xoshiro256PlusPlus::seed_from_u64(seed).fill_bytes(buf.as_mut_slice());
        Self { buf }
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Partition `i` of `n`: page-aligned, disjoint, so workers never stamp each other's data.
    pub fn cursor(&self, i: usize, n: usize, stamp_base: u64) -> PoolCursor {
        let part = (self.len() / n.max(1)) / ALIGN * ALIGN;
        PoolCursor {
            // SAFETY: i < n, so base + part stays inside the buffer.
            base: unsafe { self.buf.as_ptr().add(i * part) },
            len: part,
            pos: 0,
            stamp: stamp_base,
        }
    }

    pub fn leak(self) {
        self.buf.leak();
    }
}

/// A worker's walk through its partition of the pool.
pub struct PoolCursor {
    base: *mut u8,
    len: usize,
    pos: usize,
    stamp: u64,
}

// SAFETY: each cursor owns a disjoint partition of a pool that outlives the workers.
unsafe impl Send for PoolCursor {}

impl PoolCursor {
    /// The partition (for registering it with io_uring).
    pub fn region(&self) -> (*mut u8, usize) {
        (self.base, self.len)
    }

    /// Splits the partition into `n` page-aligned, disjoint cursors, one per I/O slot: a slot
    /// has at most one write in flight, so its cursor never restamps data the kernel may still
    /// be reading. Each share holds at least one page when the pool came from [`pool_len`].
    pub fn split(self, n: usize) -> Vec<PoolCursor> {
        let n = n.max(1);
        let share = (self.len / n) / ALIGN * ALIGN;
        (0..n)
            .map(|i| PoolCursor {
                // SAFETY: i < n, so i * share + share <= len: inside this partition.
                base: unsafe { self.base.add(i * share) },
                len: share,
                pos: 0,
                // Distinct counters per slot: the same stamp never marks two slots' writes.
                stamp: self.stamp.wrapping_add((i as u64) << 40),
            })
            .collect()
    }

    /// Data for the next write of `bs` bytes, stamped so it differs from every earlier write.
    #[inline]
    pub fn next(&mut self, bs: usize) -> *const u8 {
        if self.pos + bs > self.len {
            self.pos = 0;
        }
        // SAFETY: pos + bs <= len, inside this cursor's partition.
        let p = unsafe { self.base.add(self.pos) };
        self.pos += bs;
        self.stamp = self.stamp.wrapping_add(1);
        let mark = self.stamp.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        // One stamp per 4 KiB (dedup works on 4 KiB or larger blocks): cheap even for 1 MiB
        // writes, where a stamp per sector measurably slowed the copy out of cold pool memory.
        let mut off = 0;
        while off + 8 <= bs {
            // SAFETY: off + 8 <= bs, inside the region; unaligned write is allowed.
            unsafe { (p.add(off) as *mut u64).write_unaligned(mark ^ off as u64) };
            off += 4096;
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_writes_from_the_pool_never_repeat_a_4k_block() {
        let pool = DataPool::new(1 << 20, 7);
        let mut c = pool.cursor(0, 1, 0);
        let mut seen = std::collections::HashSet::new();
        // Several laps around the partition: the stamp keeps sectors distinct.
        for _ in 0..(3 * (1 << 20) / 4096) {
            let p = c.next(4096);
            // SAFETY: the cursor handed out 4096 readable bytes.
            let s = unsafe { std::slice::from_raw_parts(p, 4096) };
            assert!(seen.insert(s.to_vec()), "a 4 KiB block repeated");
        }
    }

    #[test]
    fn pool_data_does_not_compress() {
        let pool = DataPool::new(1 << 20, 1);
        let mut c = pool.cursor(0, 1, 0);
        // SAFETY: 64 KiB readable from the cursor.
        let s = unsafe { std::slice::from_raw_parts(c.next(65536), 65536) };
        let mut counts = [0u32; 256];
        for b in s {
            counts[*b as usize] += 1;
        }
        // Random bytes: every value appears about 256 times; a compressible pattern would not.
        assert!(
            counts.iter().all(|&n| (150..400).contains(&n)),
            "{counts:?}"
        );
    }

    /// A write job of the matrix with another block size and depth.
    fn params(bs: u64, iodepth: u32) -> JobParams {
        let base =
            crate::speed::matrix::workload(crate::speed::matrix::Profile::Quick, "write-1m-qd16");
        JobParams {
            bs,
            iodepth,
            ..base.expect("a matrix workload").job
        }
    }

    #[test]
    fn slot_cursors_are_disjoint_inside_the_partition_and_hold_a_block_each() {
        // 1 MiB at QD16 in one job: the pool is exactly the in-flight data, a block per slot.
        let job = params(1 << 20, 16);
        let pool = DataPool::new(pool_len(&job), 3);
        assert_eq!(pool.len(), 16 << 20);
        let parent = pool.cursor(0, 1, 0);
        let (pb, pl) = parent.region();
        let slots = parent.split(16);
        let mut last_end = pb as usize;
        for mut c in slots {
            let (b, l) = c.region();
            assert_eq!(b as usize % ALIGN, 0);
            assert!(b as usize >= last_end && l >= 1 << 20);
            last_end = b as usize + l;
            // Two writes from one slot reuse its block, restamped: never the same bytes.
            // SAFETY: the cursor hands out 1 MiB readable bytes each time; copied at once.
            let a = unsafe { std::slice::from_raw_parts(c.next(1 << 20), 4096) }.to_vec();
            let b2 = unsafe { std::slice::from_raw_parts(c.next(1 << 20), 4096) }.to_vec();
            assert_ne!(a, b2);
        }
        assert!(last_end <= pb as usize + pl);
    }

    #[test]
    fn every_slot_gets_a_whole_block_when_bs_is_not_page_sized() {
        // 2.5 KiB at QD 1000: shares are rounded to pages, so each still fits one block.
        let job = params(2560, 1000);
        let pool = DataPool::new(pool_len(&job), 1);
        for c in pool.cursor(0, 1, 0).split(1000) {
            assert!(c.region().1 >= 2560);
        }
    }

    #[test]
    fn partitions_are_aligned_and_disjoint() {
        let pool = DataPool::new(16 << 20, 1);
        let (a, la) = pool.cursor(0, 3, 0).region();
        let (b, _) = pool.cursor(1, 3, 0).region();
        assert_eq!(a as usize % ALIGN, 0);
        assert_eq!(b as usize % ALIGN, 0);
        assert!(a as usize + la <= b as usize);
    }
}
