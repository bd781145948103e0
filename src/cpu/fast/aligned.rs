//! f32 storage that starts on a cache line, and the padded row stride of the recurrences'
//! weight matrices. The kernels load 64 bytes at a time (AVX-512); a row that starts 16 bytes
//! into a line (where a large Vec from the allocator usually starts) makes every load straddle
//! two lines, which measured about 30% slower per step at h = 1024 than aligned rows.
//!
//! The stride is also kept off multiples of 1 KiB: the tile kernel reads a column strip of 64
//! rows, and at a 4 KiB stride (h = 1024) all 64 rows of a column land in the same L1 set
//! (8 ways), so the strip could not stay in L1 while every batch tile reuses it.

use std::ops::{Deref, DerefMut};

/// f32s per 64-byte cache line.
const LINE: usize = 16;

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

impl AlignedVec {
    pub fn zeros(len: usize) -> Self {
        let buf = vec![0.0f32; len + LINE - 1];
        // A Vec<f32> is 4-byte aligned, so some start in 0..16 puts element 0 on a line.
        let misalign = (buf.as_ptr() as usize % 64) / 4;
        let start = (LINE - misalign) % LINE;
        AlignedVec { buf, start, len }
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
}
