//! `C = A·B (+ C)` on row-major f32 buffers: every large product of the fast path outside the
//! recurrences (the input projection, the outputs, ∂L/∂o·w_qh, the three weight gradients). A
//! transposed operand is the same buffer read with swapped strides, so no transposed copy is
//! made.
//!
//! On x86-64 with AVX-512 or AVX2 + FMA (`Isa::current`) the product runs in the fast path's
//! own register tile (`kernel`), blocked the usual way: B in blocks of KC rows packed into
//! panels (one panel's block stays in L1 while every 4-row tile of A's block uses it), A's block
//! copied to a compact buffer that stays in L2; C split over the threads by rows or by columns,
//! whichever makes less packing, so no sum is split and every output is the same sequence of
//! FMAs whatever the thread count (see `kernel`). Elsewhere it runs in `matrixmultiply`.
//! docs/performance.md, "The products", compares it with `matrixmultiply` and the `gemm` crate
//! (`examples/products.rs`).

use std::ops::Range;

use super::kernel::{KC, MR, Panels, Strided, panel_width, tile};
use super::simd::Isa;

/// A read-only [rows, cols] view of a row-major buffer, possibly transposed.
#[derive(Clone, Copy)]
pub struct View<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a> View<'a> {
    /// `data` as a row-major [rows, cols] matrix.
    pub fn new(data: &'a [f32], rows: usize, cols: usize) -> Self {
        assert_eq!(data.len(), rows * cols, "gemm view: wrong length");
        View { data, rows, cols, row_stride: cols, col_stride: 1 }
    }

    /// Whether every element (i, j) lies inside `data`: what makes the sgemm call sound.
    fn in_bounds(&self) -> bool {
        self.rows == 0
            || self.cols == 0
            || (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride < self.data.len()
    }

    /// The transpose: [cols, rows].
    pub fn t(self) -> Self {
        View { rows: self.cols, cols: self.rows, row_stride: self.col_stride, col_stride: self.row_stride, ..self }
    }

    fn strided(&self) -> Strided<'a> {
        Strided { data: self.data, rs: self.row_stride, cs: self.col_stride }
    }
}

/// c [a.rows, b.cols] (row-major) = a·b, or c += a·b with `accumulate`, on the threads of the
/// current rayon pool.
pub fn gemm(a: View, b: View, c: &mut [f32], accumulate: bool) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(b.rows, k, "gemm: inner dimensions differ");
    assert_eq!(c.len(), m * n, "gemm: c must be [a.rows, b.cols]");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c.fill(0.0);
        }
        return;
    }
    assert!(a.in_bounds() && b.in_bounds());
    match Isa::current() {
        Isa::Portable => sgemm(a, b, c, accumulate),
        isa => blocked(isa, a, b, c, accumulate),
    }
}

/// A right-hand operand packed once for the many products that use it (a weight, used by every
/// window of a checkpointed run): the panels `block` would pack for it on each call, so a
/// product with it is the same FMAs without the copy. Empty (and the product a plain `gemm`)
/// where `block` would not pack it whole: without a vector instruction set, or past
/// `B_WHOLE_MAX`.
pub struct Packed {
    isa: Isa,
    panels: Option<Panels>,
}

impl Packed {
    /// `b` packed for the current instruction set.
    pub fn new(b: View) -> Self {
        let isa = Isa::current();
        let whole = isa != Isa::Portable && b.rows * b.cols <= B_WHOLE_MAX && b.rows > 0 && b.cols > 0;
        let panels = whole.then(|| {
            assert!(b.in_bounds());
            let mut p = Panels::new();
            p.pack(isa, b.strided(), 0..b.rows, 0..b.cols);
            p
        });
        Packed { isa, panels }
    }
}

/// `gemm(a, b, c, accumulate)` with `b` read from `packed` (made from this same `b`): the same
/// bits, as C's rows are split over the threads and each row's sums are those of `block`.
pub fn gemm_packed(a: View, b: View, packed: &Packed, c: &mut [f32], accumulate: bool) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    let panels = match &packed.panels {
        Some(p) if packed.isa == Isa::current() && m > 0 && p.shape() == (k, n) => p,
        _ => return gemm(a, b, c, accumulate),
    };
    assert_eq!(b.rows, k, "gemm: inner dimensions differ");
    assert_eq!(c.len(), m * n, "gemm: c must be [a.rows, b.cols]");
    assert!(a.in_bounds());
    let threads = if m * n * k < PAR_MIN_WORK { 1 } else { rayon::current_num_threads().max(1) };
    let per = m.div_ceil(threads).next_multiple_of(MR);
    let parts: Vec<Range<usize>> = (0..m).step_by(per).map(|s| s..(s + per).min(m)).collect();
    let c = SharedOut(c.as_mut_ptr(), c.len());
    let isa = packed.isa;
    // SAFETY: the parts are disjoint row blocks of C, so no element is written by two threads.
    let run = |rows: &Range<usize>| unsafe { block(isa, a, b, Some(panels), &c, n, rows.clone(), 0..n, accumulate) };
    if parts.len() == 1 {
        run(&parts[0]);
    } else {
        rayon::scope(|s| {
            for part in &parts[1..] {
                s.spawn(move |_| run(part));
            }
            run(&parts[0]);
        });
    }
}

/// `matrixmultiply`'s sgemm (its own kernels, threaded over the machine's physical cores).
fn sgemm(a: View, b: View, c: &mut [f32], accumulate: bool) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    let beta = if accumulate { 1.0 } else { 0.0 };
    // SAFETY: every element of a and b lies inside their slices (checked by `gemm`), and c is
    // a distinct, exclusively borrowed [m, n] buffer.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.data.as_ptr(),
            a.row_stride as isize,
            a.col_stride as isize,
            b.data.as_ptr(),
            b.row_stride as isize,
            b.col_stride as isize,
            beta,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

/// Rows of A that go through the tiles before the next panel (32 KiB of A at KC = 128).
const MC: usize = 64;

/// The most elements of B packed at once (1 MiB: half of L2).
const B_WHOLE_MAX: usize = 1 << 18;

/// Below this many multiply-adds a product runs on the calling thread alone.
const PAR_MIN_WORK: usize = 1 << 20;

/// The product on the team: C split into one part per thread, each computed in full by one.
fn blocked(isa: Isa, a: View, b: View, c: &mut [f32], accumulate: bool) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    let threads = if m * n * k < PAR_MIN_WORK { 1 } else { rayon::current_num_threads().max(1) };
    // Packing each thread does: all of B and its rows of A when the rows are split, all of A
    // and its columns of B when the columns are.
    let by_rows = k * n + m * k / threads <= k * n / threads + m * k;
    let (len, grain) = if by_rows { (m, MR) } else { (n, panel_width(isa)) };
    let per = len.div_ceil(threads).next_multiple_of(grain);
    let parts: Vec<Range<usize>> = (0..len).step_by(per).map(|s| s..(s + per).min(len)).collect();
    let c = SharedOut(c.as_mut_ptr(), c.len());
    let run = |part: &Range<usize>| {
        let (rows, cols) = if by_rows { (part.clone(), 0..n) } else { (0..m, part.clone()) };
        // SAFETY: the parts are disjoint blocks of C, so no element is written by two threads.
        unsafe { block(isa, a, b, None, &c, n, rows, cols, accumulate) }
    };
    if parts.len() == 1 {
        run(&parts[0]);
    } else {
        rayon::scope(|s| {
            for part in &parts[1..] {
                s.spawn(move |_| run(part));
            }
            run(&parts[0]);
        });
    }
}

/// C's buffer, shared by the threads of one product, each writing its own block.
struct SharedOut(*mut f32, usize);

// SAFETY: `block`'s callers give each thread a disjoint block of C.
unsafe impl Sync for SharedOut {}

/// C[rows, cols] (+)= A[rows, ..]·B[.., cols], where C has row stride ldc; with `packed`, B
/// whole (cols = all of B's) as panels already packed.
///
/// # Safety
/// No other thread may touch C[rows, cols] meanwhile.
#[allow(clippy::too_many_arguments)]
unsafe fn block(
    isa: Isa,
    a: View,
    b: View,
    packed: Option<&Panels>,
    c: &SharedOut,
    ldc: usize,
    rows: Range<usize>,
    cols: Range<usize>,
    accumulate: bool,
) {
    assert!(rows.end <= a.rows && cols.end <= b.cols && (rows.end - 1) * ldc + cols.end <= c.1);
    let k = a.cols;
    let mut own = Panels::new();
    let mut a_copy = Vec::new();
    // When B[.., cols] fits in L2 it is packed once and A's rows go through all of K a block of
    // rows at a time, so A (which can be large and strided) is read a few pages at a time;
    // else B is packed a block of KC rows at a time, used by all of A's rows.
    let whole_k = packed.is_some() || k * cols.len() <= B_WHOLE_MAX;
    if whole_k && packed.is_none() {
        own.pack(isa, b.strided(), 0..k, cols.clone());
    }
    let outer = if whole_k { MC } else { rows.len() };
    let width = panel_width(isa);
    for i0 in rows.clone().step_by(outer) {
        let is = i0..(i0 + outer).min(rows.end);
        for (kb, k0) in (0..k).step_by(KC).enumerate() {
            let ks = k0..(k0 + KC).min(k);
            if !whole_k {
                own.pack(isa, b.strided(), ks.clone(), cols.clone());
            }
            let panels = packed.unwrap_or(&own);
            let panel_ks = if whole_k { ks.clone() } else { 0..ks.len() };
            let (a_rs, a_cs) = copy_a(&a, &is, &ks, &mut a_copy);
            for i1 in is.clone().step_by(MC) {
                let sub = i1..(i1 + MC).min(is.end);
                for p in 0..panels.count() {
                    let (panel, w) = panels.panel(p, &panel_ks);
                    for t0 in sub.clone().step_by(MR) {
                        let mr = MR.min(sub.end - t0);
                        let (mut ap, mut cp) = ([std::ptr::null(); MR], [std::ptr::null_mut(); MR]);
                        for r in 0..mr {
                            ap[r] = a_copy[(t0 + r - i0) * a_rs..].as_ptr();
                            cp[r] = c.0.wrapping_add((t0 + r) * ldc + cols.start + p * width);
                        }
                        // SAFETY: A's rows hold ks.len() elements at stride a_cs from ap[r] (in
                        // the copy), C's rows w elements from cp[r] (inside C, asserted above,
                        // and inside this thread's block), and C is a buffer distinct from the
                        // copy and the panels.
                        unsafe { tile(isa, ks.len(), &ap[..mr], a_cs, panel, w, &cp[..mr], accumulate || kb > 0, &[]) };
                    }
                }
            }
        }
    }
}

/// A[is, ks] copied to `out`, returning the strides of row and column there: the copy stays in
/// L2 while the panels pass, and its loads from memory are a copy's (whole runs, which the
/// prefetchers follow), not the tiles'. Rows of A are copied whole when they are contiguous;
/// else A's columns, one row of the copy per l, at a stride a line past a multiple of 64 bytes,
/// so a tile's loads down a column of the copy spread over all of L1's sets.
fn copy_a(a: &View, is: &Range<usize>, ks: &Range<usize>, out: &mut Vec<f32>) -> (usize, usize) {
    out.clear();
    if a.col_stride == 1 {
        for i in is.clone() {
            let src = i * a.row_stride + ks.start;
            out.extend_from_slice(&a.data[src..src + ks.len()]);
        }
        (ks.len(), 1)
    } else {
        let ld = is.len().next_multiple_of(16) + 16;
        out.resize(ks.len() * ld, 0.0);
        for (row, l) in out.chunks_exact_mut(ld).zip(ks.clone()) {
            let src = is.start * a.row_stride + l * a.col_stride;
            let row = &mut row[..is.len()];
            if a.row_stride == 1 {
                row.copy_from_slice(&a.data[src..src + row.len()]);
            } else {
                row.iter_mut().enumerate().for_each(|(r, x)| *x = a.data[src + r * a.row_stride]);
            }
        }
        (1, ld)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Small integers and halves, so every sum below is exact in f32 in any order: the products
    /// must equal plain sums exactly, on every instruction set the CPU has.
    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n).map(|i| ((i * 7 + seed * 3) % 13) as f32 * 0.5 - 3.0).collect()
    }

    fn plain(a: View, b: View, c0: &[f32], accumulate: bool) -> Vec<f32> {
        let at = |v: &View, i: usize, j: usize| v.data[i * v.row_stride + j * v.col_stride];
        let mut c = c0.to_vec();
        for i in 0..a.rows {
            for j in 0..b.cols {
                let s: f32 = (0..a.cols).map(|l| at(&a, i, l) * at(&b, l, j)).sum();
                c[i * b.cols + j] = if accumulate { c[i * b.cols + j] + s } else { s };
            }
        }
        c
    }

    /// Every orientation of both operands, shapes that leave partial tiles, panels and blocks of
    /// K (KC = 128) and that split over threads by rows and by columns, with and without
    /// accumulating, in pools of 1 to 3 threads.
    #[test]
    fn products_equal_plain_sums_on_every_instruction_set() {
        let shapes = [(1, 1, 1), (3, 5, 7), (4, 64, 64), (9, 130, 70), (70, 300, 33), (130, 129, 200), (600, 40, 3)];
        for isa in Isa::available() {
            for threads in [1, 2, 3] {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                for &(m, k, n) in &shapes {
                    let (a, b) = (values(m * k, 1), values(k * n, 2));
                    for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                        let av = if ta { View::new(&a, k, m).t() } else { View::new(&a, m, k) };
                        let bv = if tb { View::new(&b, n, k).t() } else { View::new(&b, k, n) };
                        for accumulate in [false, true] {
                            let c0 = values(m * n, 3);
                            let mut c = c0.clone();
                            pool.install(|| isa.run_with(|| gemm(av, bv, &mut c, accumulate)));
                            let want = plain(av, bv, &c0, accumulate);
                            assert!(
                                c == want,
                                "{isa:?} {threads} threads m={m} k={k} n={n} ta={ta} tb={tb} acc={accumulate}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// A right operand packed once gives the same bits as packing it on each call, on every
    /// instruction set, in every orientation, with 1 to 3 threads, where it is packed and where
    /// it is too large to be (then the product is a plain `gemm`).
    #[test]
    fn packed_operands_give_the_same_bits_as_gemm() {
        for isa in Isa::available() {
            for threads in [1, 3] {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                for &(m, k, n) in &[(1, 64, 256), (9, 130, 70), (700, 64, 256), (64, 700, 400)] {
                    let a: Vec<f32> = (0..m * k).map(|i| ((i * 2654435761usize) % 1000) as f32 * 1e-3 - 0.5).collect();
                    let b: Vec<f32> = (0..k * n).map(|i| ((i * 40503usize) % 997) as f32 * 1e-3 - 0.5).collect();
                    for tb in [false, true] {
                        let bv = if tb { View::new(&b, n, k).t() } else { View::new(&b, k, n) };
                        for accumulate in [false, true] {
                            let c0 = values(m * n, 3);
                            let (mut want, mut got) = (c0.clone(), c0.clone());
                            pool.install(|| {
                                isa.run_with(|| {
                                    let packed = Packed::new(bv);
                                    assert_eq!(
                                        packed.panels.is_some(),
                                        isa != Isa::Portable && k * n <= B_WHOLE_MAX,
                                        "{isa:?} k={k} n={n}"
                                    );
                                    gemm(View::new(&a, m, k), bv, &mut want, accumulate);
                                    gemm_packed(View::new(&a, m, k), bv, &packed, &mut got, accumulate);
                                })
                            });
                            assert!(got == want, "{isa:?} {threads} threads m={m} k={k} n={n} tb={tb}");
                        }
                    }
                }
            }
        }
    }

    /// Rows of A past a large product's work threshold, so the product is split: the same bits
    /// from one thread and from three, and (for the two vector instruction sets, which share the
    /// blocking of K) from AVX-512 and AVX2.
    #[test]
    fn products_do_not_depend_on_threads_or_vector_width() {
        let (m, k, n) = (300, 700, 90);
        let a: Vec<f32> = (0..m * k).map(|i| ((i * 2654435761usize) % 1000) as f32 * 1e-3 - 0.5).collect();
        let b: Vec<f32> = (0..k * n).map(|i| ((i * 40503usize) % 997) as f32 * 1e-3 - 0.5).collect();
        let run = |isa: Isa, threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let mut c = vec![0.0f32; m * n];
            pool.install(|| isa.run_with(|| gemm(View::new(&a, k, m).t(), View::new(&b, k, n), &mut c, false)));
            c
        };
        let vector: Vec<Isa> = Isa::available().into_iter().filter(|&i| i != Isa::Portable).collect();
        for &isa in &vector {
            assert!(run(isa, 1) == run(isa, 3), "{isa:?}: 1 and 3 threads differ");
        }
        if let [wide, narrow] = vector[..] {
            assert!(run(wide, 2) == run(narrow, 2), "{wide:?} and {narrow:?} differ");
        }
    }
}
