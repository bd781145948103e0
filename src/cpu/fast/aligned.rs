//! f32 storage that starts on a cache line, on a 2 MiB boundary in huge pages from 2 MiB on
//! (`huge_pages`), and the padded row stride of the recurrences' weight matrices.
//!
//! The kernels load 64 bytes at a time (AVX-512); a row that starts 16 bytes into a line (where a
//! large Vec from the allocator usually starts) makes every load straddle two lines, which
//! measured about 30% slower per step at h = 1024 than aligned rows.
//!
//! The stride is also kept off multiples of 1 KiB: the tile kernel reads a column strip of 64
//! rows, and at a 4 KiB stride (h = 1024) all 64 rows of a column land in the same L1 set
//! (8 ways), so the strip could not stay in L1 while every batch tile reuses it.

use std::ops::{Deref, DerefMut};
use std::sync::Mutex;

/// f32s per 64-byte cache line.
const LINE: usize = 16;

/// f32s per 2 MiB, the size of a huge page on x86-64 and aarch64 Linux.
const HUGE: usize = 1 << 19;

/// The row stride, in f32s, that keeps every row of a `cols`-wide aligned matrix aligned, and
/// moves successive rows to different L1 sets (one line further when it is a multiple of 1 KiB).
pub fn padded(cols: usize) -> usize {
    let ld = cols.next_multiple_of(LINE);
    if ld.is_multiple_of(256) { ld + LINE } else { ld }
}

/// `len` zeroed f32s whose first element starts on a 64-byte boundary.
pub struct AlignedVec {
    buf: Vec<f32>,
    start: usize,
    len: usize,
}

/// Buffers of dropped `AlignedVec`s, for `scratch` to hand out again, at most this many bytes.
/// A fresh buffer costs a page fault and the kernel's zeroing per 4 KiB on first touch: at
/// (h, T, B) = (1024, 256, 32) the fast path's scratch is 76 MiB, about 20k faults per call.
const POOL_MAX_BYTES: usize = 256 << 20;

/// How much longer than asked a pooled buffer may be, in f32s, below twice the request.
const SMALL_SLACK: usize = 1 << 16;

/// Buffers shorter than this (in f32s, 64 KiB) are not pooled, nor more than this many.
const POOL_MIN_LEN: usize = 1 << 14;
const POOL_MAX_BUFFERS: usize = 32;

static POOL: Mutex<Pool> = Mutex::new(Pool { bufs: Vec::new(), max_bytes: POOL_MAX_BYTES });

struct Pool {
    bufs: Vec<Vec<f32>>,
    max_bytes: usize,
}

impl Pool {
    /// The smallest buffer at least `need` long, if any, and not much longer: a small request
    /// (a product's packed panels) must not take a large buffer (a whole run's states), which it
    /// would hold for nothing and then, returned over the limit, free.
    fn take(&mut self, need: usize) -> Option<Vec<f32>> {
        let fits = |len: usize| len >= need && len <= (2 * need).max(need + SMALL_SLACK);
        let best = (0..self.bufs.len()).filter(|&i| fits(self.bufs[i].len())).min_by_key(|&i| self.bufs[i].len());
        best.map(|i| self.bufs.swap_remove(i))
    }

    /// Keeps `buf` if it is large (a small one costs the allocator little, and many of them
    /// would make every `take` and `put` a long scan: checkpointed runs make a product's panels
    /// hundreds of times per call), making room within `max_bytes` and `POOL_MAX_BUFFERS` by
    /// freeing smaller buffers: a large one is what costs page faults to make again (a run
    /// storing every state must not lose its buffers to the windows of the checkpointed runs
    /// between its calls). Else it is freed.
    fn put(&mut self, buf: Vec<f32>) {
        if buf.len() < POOL_MIN_LEN {
            return;
        }
        // Smallest first; free the fewest of those shorter than `buf` that make room, if any do.
        self.bufs.sort_unstable_by_key(|b| std::cmp::Reverse(b.len()));
        let mut held: usize = self.bufs.iter().map(|b| b.len() * 4).sum();
        let mut keep = self.bufs.len();
        while keep >= POOL_MAX_BUFFERS || held + buf.len() * 4 > self.max_bytes {
            if keep == 0 || self.bufs[keep - 1].len() >= buf.len() {
                return;
            }
            keep -= 1;
            held -= self.bufs[keep].len() * 4;
        }
        self.bufs.truncate(keep);
        self.bufs.push(buf);
    }
}

fn pool() -> std::sync::MutexGuard<'static, Pool> {
    POOL.lock().unwrap_or_else(|e| e.into_inner())
}

impl AlignedVec {
    pub fn zeros(len: usize) -> Self {
        // The allocator hands out memory this large untouched (zeroed by the kernel on first
        // touch), so `huge_pages`' hint comes before any of its pages exists.
        let v = Self::on_line(vec![0.0f32; room(len)], len);
        huge_pages(&v);
        v
    }

    /// `len` f32s starting on a line, with unspecified contents (for buffers that are written
    /// in full before they are read): the smallest pooled buffer that fits (one a previous call
    /// dropped), else a new zeroed one.
    pub fn scratch(len: usize) -> Self {
        let pooled = pool().take(room(len));
        match pooled {
            Some(buf) => Self::on_line(buf, len),
            None => Self::zeros(len),
        }
    }

    /// `len` f32s of `buf` (at least `room(len)` long) from its first element on a line, or on a
    /// 2 MiB boundary from 2 MiB on (see `huge_pages`).
    fn on_line(buf: Vec<f32>, len: usize) -> Self {
        let boundary = boundary(len);
        // A Vec<f32> is 4-byte aligned, so some start in 0..boundary is on the boundary.
        let misalign = (buf.as_ptr() as usize % (4 * boundary)) / 4;
        let start = (boundary - misalign) % boundary;
        AlignedVec { buf, start, len }
    }
}

/// Where `len` f32s start, in f32s: on a 2 MiB boundary from 2 MiB on, else on a line.
fn boundary(len: usize) -> usize {
    if len >= HUGE { HUGE } else { LINE }
}

/// How long a buffer must be to hold `len` f32s from the boundary `on_line` starts them on.
fn room(len: usize) -> usize {
    len + boundary(len) - 1
}

/// Asks Linux to back `v`'s whole 2 MiB stretches with huge pages (where transparent huge pages
/// are enabled for `madvise`, the common default), before they are first touched.
///
/// A huge page is contiguous in physical memory, so 2 MiB of it falls on every set of a 2 MiB
/// L2 cache alike, and a block of w_hh as large as the cache can stay in it from step to step;
/// 4 KiB pages land wherever the kernel finds them, a few sets get more lines than they have
/// ways, and those lines are read again from L3 every step (docs/performance.md, "Huge pages").
/// Nothing changes where the hint is refused.
fn huge_pages(v: &[f32]) {
    #[cfg(target_os = "linux")]
    {
        let bytes = v.len() / HUGE * HUGE * 4;
        if bytes > 0 && (v.as_ptr() as usize).is_multiple_of(HUGE * 4) {
            // SAFETY: the range lies within `v`'s allocation and starts on a page; the hint
            // changes how pages are backed, never their contents.
            unsafe { libc::madvise(v.as_ptr() as *mut libc::c_void, bytes, libc::MADV_HUGEPAGE) };
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = v;
}

impl Drop for AlignedVec {
    /// Keeps the buffer for `scratch` while the pool is under its byte limit.
    fn drop(&mut self) {
        if self.buf.capacity() > 0 {
            pool().put(std::mem::take(&mut self.buf));
        }
    }
}

impl Deref for AlignedVec {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.buf[self.start..self.start + self.len]
    }
}

impl DerefMut for AlignedVec {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.buf[self.start..self.start + self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_on_a_line_and_has_the_length_asked_for() {
        for len in [0, 1, 15, 16, 17, 1000] {
            let v = AlignedVec::zeros(len);
            assert_eq!(v.len(), len);
            assert_eq!(v.as_ptr() as usize % 64, 0, "len {len}");
            assert!(v.iter().all(|&x| x == 0.0));
        }
        assert_eq!((padded(1), padded(16), padded(17), padded(250)), (16, 16, 32, 256 + 16));
        assert_eq!((padded(1000), padded(1024), padded(1025)), (1008, 1040, 1040));
    }

    /// The pool hands out the smallest buffer that fits, and keeps no more than its limit.
    #[test]
    fn pool_takes_the_smallest_fit_and_keeps_its_limit() {
        let k = POOL_MIN_LEN;
        let mut pool = Pool { bufs: Vec::new(), max_bytes: 4 * 100 * k };
        pool.put(vec![1.0; 60 * k]);
        pool.put(vec![2.0; 30 * k]);
        pool.put(vec![3.0; 20 * k]); // 110·k f32s: over the limit, freed
        pool.put(vec![4.0; k - 1]); // small: never pooled
        assert_eq!(pool.bufs.len(), 2);
        // A larger buffer makes room by freeing smaller ones, only if that is enough.
        pool.put(vec![5.0; 101 * k]); // over the limit alone: freed, nothing else
        assert_eq!(pool.bufs.len(), 2);
        pool.put(vec![6.0; 40 * k]); // frees the 30·k one
        assert_eq!(pool.take(25 * k), Some(vec![6.0; 40 * k]));
        pool.put(vec![7.0; 65 * k]); // frees the 60·k one
        assert_eq!(pool.bufs, vec![vec![7.0; 65 * k]]);
        pool.take(65 * k);
        pool.put(vec![1.0; 60 * k]);
        pool.put(vec![2.0; 30 * k]);
        assert_eq!(pool.take(25 * k), Some(vec![2.0; 30 * k]));
        assert_eq!(pool.take(61 * k), None);
        assert_eq!(pool.take(40 * k), Some(vec![1.0; 60 * k]));
        assert!(pool.bufs.is_empty());
        // A small request does not take a buffer far larger than it.
        let mut pool = Pool { bufs: Vec::new(), max_bytes: 16 * SMALL_SLACK };
        pool.put(vec![0.0; 3 * SMALL_SLACK]);
        assert_eq!(pool.take(100), None);
        assert_eq!(pool.take(2 * SMALL_SLACK).map(|b| b.len()), Some(3 * SMALL_SLACK));
    }

    /// A buffer of 2 MiB or more starts on a 2 MiB boundary, fresh or from the pool, so its
    /// 2 MiB stretches can be huge pages; a smaller one on a line.
    #[test]
    fn large_buffers_start_on_a_huge_page_boundary() {
        for len in [HUGE, HUGE + 1, 3 * HUGE + 17] {
            let v = AlignedVec::zeros(len);
            assert_eq!((v.len(), v.as_ptr() as usize % (4 * HUGE)), (len, 0), "len {len}");
            assert!(v.iter().all(|&x| x == 0.0));
            drop(v);
            let mut v = AlignedVec::scratch(len);
            assert_eq!((v.len(), v.as_ptr() as usize % (4 * HUGE)), (len, 0), "len {len}, pooled");
            v.fill(1.0);
        }
        let v = AlignedVec::zeros(HUGE - 1);
        assert_eq!(v.as_ptr() as usize % 64, 0);
    }

    /// `scratch` gives the length asked for, on a line, whatever buffer it comes from.
    #[test]
    fn scratch_is_aligned_and_as_long_as_asked() {
        for len in [1, 1000, 5000, 999] {
            let mut v = AlignedVec::scratch(len);
            assert_eq!((v.len(), v.as_ptr() as usize % 64), (len, 0));
            v.fill(1.0);
        }
    }
}
