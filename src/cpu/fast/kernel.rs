//! The register tile every large product of the fast path runs in (the recurrences' per-step
//! products, the projections and the weight gradients; see `recur` and `gemm`), and the packing
//! of its right-hand operand into panels.
//!
//! A tile is `C[i, j] (+)= Σ_{l<kc} A(i, l)·P[l, j]` for up to MR rows i of A and the NR columns
//! j of one panel P of a packed matrix: MR × NR accumulators stay in registers while, for each l,
//! NR/lanes vector loads of P's row l and MR broadcasts of A(i, l) feed MR·NR/lanes FMAs, with no
//! horizontal sums. AVX-512: 4 × 64 (16 zmm accumulators, 4 loads and 4 broadcasts per 16 FMAs);
//! AVX2 + FMA: 4 × 24 (12 ymm, 3 loads and 4 broadcasts per 12 FMAs); other targets: a plain loop.
//!
//! Panels are contiguous (P's row l at `l·NR`), so a tile walks its panel front to back, which
//! the hardware prefetchers follow, and a block of kc rows of one panel (32 KiB at kc = 128 on
//! AVX-512) stays in L1 while every row tile of A reuses it.
//!
//! The accumulators start from zero and add A(i, l)·P[l, j] for l in order with FMAs; the sum is
//! added to C once at the end (C's lines are prefetched at the start, so that add does not
//! wait). Callers block K the same way on every instruction set (`KC`), so every output is the
//! same sequence of operations on AVX-512 and AVX2, whatever the thread count: results are the
//! same bits run to run and from one SIMD path to the other (tests/cpu_fast.rs).

use std::ops::Range;

use super::aligned::AlignedVec;
use super::simd::Isa;

/// Rows of A per tile.
pub const MR: usize = 4;

/// Columns per panel (the tile's width) on `isa`.
pub fn panel_width(isa: Isa) -> usize {
    match isa {
        Isa::Avx512 => 64,
        Isa::Avx2Fma => 24,
        Isa::Portable => 16,
    }
}

/// A read-only strided matrix: element (i, j) at `data[i·rs + j·cs]`.
#[derive(Clone, Copy)]
pub struct Strided<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

impl Strided<'_> {
    /// Whether every element of rows `rows` and columns `cols` lies inside `data`.
    fn covers(&self, rows: &Range<usize>, cols: &Range<usize>) -> bool {
        rows.is_empty() || cols.is_empty() || (rows.end - 1) * self.rs + (cols.end - 1) * self.cs < self.data.len()
    }
}

/// A matrix B[k, n] packed as panels of `width` columns: panel p holds B[0..k, p·width..] row
/// after row, zero past column n, each panel starting on a cache line.
pub struct Panels {
    data: AlignedVec,
    k: usize,
    n: usize,
    width: usize,
}

impl Panels {
    /// Empty panels, to be filled by `pack`.
    pub fn new() -> Self {
        Panels { data: AlignedVec::zeros(0), k: 0, n: 0, width: 1 }
    }

    /// Packs B[rows, cols] (rows become the panels' k rows) for `isa`'s tile, reusing the buffer.
    pub fn pack(&mut self, isa: Isa, b: Strided, rows: Range<usize>, cols: Range<usize>) {
        assert!(b.covers(&rows, &cols), "pack: the block is outside the matrix");
        let (k, n, width) = (rows.len(), cols.len(), panel_width(isa));
        let stride = (k * width).next_multiple_of(16);
        let need = n.div_ceil(width) * stride;
        if self.data.len() < need {
            self.data = AlignedVec::scratch(need);
        }
        (self.k, self.n, self.width) = (k, n, width);
        match width {
            64 => self.fill::<64>(b, rows, cols, stride),
            24 => self.fill::<24>(b, rows, cols, stride),
            _ => self.fill::<16>(b, rows, cols, stride),
        }
    }

    /// `pack`'s copy, along B's contiguous direction: row by row when its rows are contiguous
    /// (each full panel's part a fixed-size copy), else column by column (a transposed
    /// weight's columns are its rows), reading the source in order.
    fn fill<const W: usize>(&mut self, b: Strided, rows: Range<usize>, cols: Range<usize>, stride: usize) {
        let (k, n, full) = (rows.len(), cols.len(), cols.len() / W);
        if b.cs != 1 {
            for p in 0..n.div_ceil(W) {
                let panel = &mut self.data[p * stride..p * stride + k * W];
                let w = W.min(n - p * W);
                for j in 0..W {
                    if j < w {
                        let src = (cols.start + p * W + j) * b.cs + rows.start * b.rs;
                        panel.chunks_exact_mut(W).enumerate().for_each(|(l, row)| row[j] = b.data[src + l * b.rs]);
                    } else {
                        panel.chunks_exact_mut(W).for_each(|row| row[j] = 0.0);
                    }
                }
            }
            return;
        }
        for (l, r) in rows.enumerate() {
            let src = &b.data[r * b.rs + cols.start..];
            for p in 0..n.div_ceil(W) {
                let dst: &mut [f32; W] = (&mut self.data[p * stride + l * W..][..W]).try_into().unwrap();
                if p < full {
                    // In 8s (every width is a multiple), which compile to vector moves; one W-long
                    // copy becomes a call of memmove.
                    for (d, s) in dst.chunks_exact_mut(8).zip(src[p * W..p * W + W].chunks_exact(8)) {
                        d.copy_from_slice(s);
                    }
                } else {
                    let w = n - p * W;
                    dst[..w].copy_from_slice(&src[p * W..p * W + w]);
                    dst[w..].fill(0.0);
                }
            }
        }
    }

    /// The packed matrix's [k, n].
    pub fn shape(&self) -> (usize, usize) {
        (self.k, self.n)
    }

    pub fn count(&self) -> usize {
        self.n.div_ceil(self.width)
    }

    /// Panel p's rows `ks`, and the number of its columns inside the matrix.
    pub fn panel(&self, p: usize, ks: &Range<usize>) -> (&[f32], usize) {
        let stride = (self.k * self.width).next_multiple_of(16);
        let w = self.width.min(self.n - p * self.width);
        (&self.data[p * stride + ks.start * self.width..p * stride + ks.end * self.width], w)
    }
}

/// One tile: `c[i][j] (+)= Σ_l a[i][l·a_cs]·panel[l·width + j]` for i < a.len() ≤ MR, j < w,
/// l < kc; `load_c` false starts from zero. `panel` holds kc rows of the panel width.
///
/// # Safety
/// `a[i]` must be valid for kc elements at stride `a_cs`, and `c[i]` for w elements; no c row
/// may overlap an a row or the panel.
#[allow(clippy::too_many_arguments)]
pub unsafe fn tile(
    isa: Isa,
    kc: usize,
    a: &[*const f32],
    a_cs: usize,
    panel: &[f32],
    w: usize,
    c: &[*mut f32],
    load_c: bool,
    prefetch: &[f32],
) {
    let width = panel_width(isa);
    debug_assert!(a.len() == c.len() && a.len() <= MR && w <= width && panel.len() >= kc * width);
    if a.is_empty() || w == 0 {
        return;
    }
    if w < width {
        // A partial panel: the whole width into a local tile, then its first w columns out.
        let mut buf = [0.0f32; MR * 64];
        let mut rows = [std::ptr::null_mut(); MR];
        if load_c {
            for (i, &ci) in c.iter().enumerate() {
                // SAFETY: the caller's c rows hold w elements.
                buf[i * width..i * width + w].copy_from_slice(unsafe { std::slice::from_raw_parts(ci, w) });
            }
        }
        for (i, r) in rows.iter_mut().enumerate().take(c.len()) {
            *r = buf[i * width..].as_mut_ptr();
        }
        // SAFETY: each local row holds `width` elements.
        unsafe { tile(isa, kc, a, a_cs, panel, width, &rows[..c.len()], load_c, prefetch) };
        for (i, &ci) in c.iter().enumerate() {
            // SAFETY: as above.
            unsafe { std::slice::from_raw_parts_mut(ci, w) }.copy_from_slice(&buf[i * width..i * width + w]);
        }
        return;
    }
    let p = panel.as_ptr();
    let pf = (prefetch.as_ptr(), prefetch.len().div_ceil(16).min(kc));
    match isa {
        // SAFETY: Isa::Avx512 and Isa::Avx2Fma are only chosen where the CPU has them
        // (`Isa::detect`, `Isa::available`); the pointers are the caller's.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe {
            match a.len() {
                4 => x86::tile512::<4>(kc, a.try_into().unwrap(), a_cs, p, c.try_into().unwrap(), load_c, pf),
                3 => x86::tile512::<3>(kc, a.try_into().unwrap(), a_cs, p, c.try_into().unwrap(), load_c, pf),
                2 => x86::tile512::<2>(kc, a.try_into().unwrap(), a_cs, p, c.try_into().unwrap(), load_c, pf),
                _ => x86::tile512::<1>(kc, a.try_into().unwrap(), a_cs, p, c.try_into().unwrap(), load_c, pf),
            }
        },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2Fma => unsafe {
            match a.len() {
                4 => x86::tile256::<4>(kc, a.try_into().unwrap(), a_cs, p, c.try_into().unwrap(), load_c, pf),
                3 => x86::tile256::<3>(kc, a.try_into().unwrap(), a_cs, p, c.try_into().unwrap(), load_c, pf),
                2 => x86::tile256::<2>(kc, a.try_into().unwrap(), a_cs, p, c.try_into().unwrap(), load_c, pf),
                _ => x86::tile256::<1>(kc, a.try_into().unwrap(), a_cs, p, c.try_into().unwrap(), load_c, pf),
            }
        },
        // SAFETY: the caller's pointers.
        _ => unsafe { tile_portable(kc, a, a_cs, panel, width, c, load_c) },
    }
}

/// The same sums in the same order (without fused multiply-adds), for other instruction sets.
///
/// # Safety
/// As `tile`, with w = width.
unsafe fn tile_portable(
    kc: usize,
    a: &[*const f32],
    a_cs: usize,
    panel: &[f32],
    width: usize,
    c: &[*mut f32],
    load_c: bool,
) {
    let mut acc = [0.0f32; 64];
    for (&ai, &ci) in a.iter().zip(c) {
        let acc = &mut acc[..width];
        acc.fill(0.0);
        for (l, row) in panel[..kc * width].chunks_exact(width).enumerate() {
            // SAFETY: the caller's a row holds kc elements at stride a_cs.
            let x = unsafe { *ai.add(l * a_cs) };
            acc.iter_mut().zip(row).for_each(|(s, &p)| *s += x * p);
        }
        // SAFETY: the caller's c row holds width elements.
        let out = unsafe { std::slice::from_raw_parts_mut(ci, width) };
        out.iter_mut().zip(acc.iter()).for_each(|(o, &s)| *o = if load_c { *o + s } else { s });
    }
}

/// Rows of kc per panel block in the recurrences' products: one block of one panel (32 KiB on
/// AVX-512) stays in L1 while every batch tile uses it.
pub const KC: usize = 128;

/// `outs[b][j] += Σ_l vs[b·k + l]·B[l, j]` for every batch entry b, where B [k, outs[b].len()]
/// is packed in `panels` and vs is [B, k]: one step of a recurrence on one block of columns.
/// `reverse` walks the panels and their row blocks last to first (the recurrences alternate
/// it, so a step starts on the part of B the last one touched last, still in L2).
///
/// The tiles work on copies, in the calling thread's scratch: vs's rows, and the sums, at row
/// strides a line past a multiple of 64 bytes (at h = 1024 the rows of vs and of the outputs
/// are 4 KiB apart, and a tile's four would share L1 sets). The sums are added to `outs` at the
/// end, so each out gets out + Σ over all of k, the sum in the walk's block order. (Measured
/// against tiles on vs and the outs in place: 2–3% faster per step at h = 1024, B = 32 and at
/// h = 128, B = 32.)
pub fn panels_product(isa: Isa, panels: &Panels, vs: &[f32], outs: &mut [&mut [f32]], reverse: bool) {
    let (k, n, nb) = (panels.k, panels.n, outs.len());
    assert!(
        vs.len() == nb * k && outs.iter().all(|o| o.len() == n),
        "panels_product: vs must be [B, k] and every out [n]"
    );
    let (count, kbs, width) = (panels.count(), k.div_ceil(KC), panels.width);
    let (lda, ldc) = (k.next_multiple_of(16) + 16, (count * width).next_multiple_of(16) + 16);
    SCRATCH.with_borrow_mut(|(a, c)| {
        if a.len() < nb * lda {
            *a = AlignedVec::zeros(nb * lda);
        }
        if c.len() < nb * ldc {
            *c = AlignedVec::zeros(nb * ldc);
        }
        for (row, v) in a.chunks_exact_mut(lda).zip(vs.chunks_exact(k)) {
            row[..k].copy_from_slice(v);
        }
        let order = |i: usize, n: usize| if reverse { n - 1 - i } else { i };
        for p in (0..count).map(|i| order(i, count)) {
            let col = p * width;
            for (i, kb) in (0..kbs).map(|i| order(i, kbs)).enumerate() {
                let first = i == 0;
                let ks = kb * KC..(kb * KC + KC).min(k);
                let (panel, _) = panels.panel(p, &ks);
                // The next block of rows in the walk (in this panel, else the next panel's
                // first), fetched into L2 a slice per tile while the tiles use this one from L1:
                // the part of the panels that does not fit in L2 comes from L3 each step, and
                // the prefetchers alone leave the first tile of each block waiting for it.
                let next = if i + 1 < kbs {
                    let kb = order(i + 1, kbs);
                    panels.panel(p, &(kb * KC..(kb * KC + KC).min(k))).0
                } else if let Some(p) = (0..count).map(|j| order(j, count)).skip_while(|&j| j != p).nth(1) {
                    let kb = order(0, kbs);
                    panels.panel(p, &(kb * KC..(kb * KC + KC).min(k))).0
                } else {
                    &[]
                };
                let chunk = next.len().div_ceil(nb.div_ceil(MR)).next_multiple_of(16);
                for b0 in (0..nb).step_by(MR) {
                    let pf = next.get(b0 / MR * chunk..).map_or(&[][..], |r| &r[..chunk.min(r.len())]);
                    let m = MR.min(nb - b0);
                    let (mut ap, mut cp) = ([std::ptr::null(); MR], [std::ptr::null_mut(); MR]);
                    for i in 0..m {
                        ap[i] = a[(b0 + i) * lda + ks.start..].as_ptr();
                        cp[i] = c[(b0 + i) * ldc + col..].as_mut_ptr();
                    }
                    // SAFETY: each a row has ks.len() elements from ap[i] (row b of the copy
                    // from column ks.start), each c row `width` from cp[i] (ldc ≥ count·width),
                    // and the copies are distinct from each other and the panels.
                    unsafe { tile(isa, ks.len(), &ap[..m], 1, panel, width, &cp[..m], !first, pf) };
                }
            }
        }
        for (out, sums) in outs.iter_mut().zip(c.chunks_exact(ldc)) {
            out.iter_mut().zip(sums).for_each(|(o, s)| *o += s);
        }
    });
}

thread_local! {
    /// `panels_product`'s copies of vs and of the sums, kept by each thread between steps.
    static SCRATCH: std::cell::RefCell<(AlignedVec, AlignedVec)> =
        std::cell::RefCell::new((AlignedVec::zeros(0), AlignedVec::zeros(0)));
}

// Register tiles read best indexed: acc[i][v] is row i, vector v.
#[allow(clippy::needless_range_loop)]
#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// The AVX-512 tile: M rows × 64 columns in 4M zmm accumulators.
    ///
    /// # Safety
    /// AVX-512F; a[i] valid for kc elements at stride a_cs, p for kc rows of 64, c[i] for 64.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub unsafe fn tile512<const M: usize>(
        kc: usize,
        a: [*const f32; M],
        a_cs: usize,
        p: *const f32,
        c: [*mut f32; M],
        load_c: bool,
        pf: (*const f32, usize),
    ) {
        unsafe {
            let mut acc = [[_mm512_setzero_ps(); 4]; M];
            if load_c {
                for i in 0..M {
                    for v in 0..4 {
                        _mm_prefetch::<_MM_HINT_T0>(c[i].add(16 * v) as *const i8);
                    }
                }
            }
            let (mut a, mut p) = (a, p);
            for l in 0..kc {
                if l < pf.1 {
                    _mm_prefetch::<_MM_HINT_T1>(pf.0.wrapping_add(16 * l) as *const i8);
                }
                let b: [__m512; 4] = std::array::from_fn(|v| _mm512_loadu_ps(p.add(16 * v)));
                for i in 0..M {
                    let x = _mm512_set1_ps(*a[i]);
                    for v in 0..4 {
                        acc[i][v] = _mm512_fmadd_ps(x, b[v], acc[i][v]);
                    }
                    a[i] = a[i].add(a_cs);
                }
                p = p.add(64);
            }
            for i in 0..M {
                for v in 0..4 {
                    let c = c[i].add(16 * v);
                    _mm512_storeu_ps(c, if load_c { _mm512_add_ps(acc[i][v], _mm512_loadu_ps(c)) } else { acc[i][v] });
                }
            }
        }
    }

    /// The AVX2 tile: M rows × 24 columns in 3M ymm accumulators.
    ///
    /// # Safety
    /// AVX2 and FMA; a[i] valid for kc elements at stride a_cs, p for kc rows of 24, c[i] for 24.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn tile256<const M: usize>(
        kc: usize,
        a: [*const f32; M],
        a_cs: usize,
        p: *const f32,
        c: [*mut f32; M],
        load_c: bool,
        pf: (*const f32, usize),
    ) {
        unsafe {
            let mut acc = [[_mm256_setzero_ps(); 3]; M];
            if load_c {
                for i in 0..M {
                    _mm_prefetch::<_MM_HINT_T0>(c[i] as *const i8);
                    _mm_prefetch::<_MM_HINT_T0>(c[i].add(16) as *const i8);
                }
            }
            let (mut a, mut p) = (a, p);
            for l in 0..kc {
                if l < pf.1 {
                    _mm_prefetch::<_MM_HINT_T1>(pf.0.wrapping_add(16 * l) as *const i8);
                }
                let b: [__m256; 3] = std::array::from_fn(|v| _mm256_loadu_ps(p.add(8 * v)));
                for i in 0..M {
                    let x = _mm256_broadcast_ss(&*a[i]);
                    for v in 0..3 {
                        acc[i][v] = _mm256_fmadd_ps(x, b[v], acc[i][v]);
                    }
                    a[i] = a[i].add(a_cs);
                }
                p = p.add(24);
            }
            for i in 0..M {
                for v in 0..3 {
                    let c = c[i].add(8 * v);
                    _mm256_storeu_ps(c, if load_c { _mm256_add_ps(acc[i][v], _mm256_loadu_ps(c)) } else { acc[i][v] });
                }
            }
        }
    }
}
