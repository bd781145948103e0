//! The instruction set the kernels run on (`Isa`), and the recurrences' inner loops for small
//! batches, where a step streams w_hh: the forward's dot form `matvec_acc`, `out[r] += w_r · v`
//! for a block of rows of w_hh, and the backward's row form `rows_axpy`, `out += Σ_r g[r]·w_r`
//! over the same rows, so neither pass needs a transposed copy. (From a batch of 4 on, a step is
//! the register tile's job: `kernel`.)
//!
//! The build uses default x86-64 flags (SSE2 only), so the wide kernels are compiled for
//! AVX-512F or AVX2+FMA with `#[target_feature]` and chosen at run time; other targets get a
//! portable loop the compiler vectorises.
//! Several rows are done together so each load of `v` feeds several FMAs: the rows of w stream
//! from L2, `v` stays in L1, and the loads of `v` would otherwise compete with those of w.

use std::cell::Cell;

/// The instruction set the fast path's kernels run on: the widest the CPU has (`detect`),
/// unless a caller asks for a narrower one (`fast::bptt_with_isa`, which the tests use to run
/// every code path the machine can).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// AVX-512F: 16 f32 lanes.
    Avx512,
    /// AVX2 with FMA: 8 lanes.
    Avx2Fma,
    /// No vector intrinsics: loops the compiler vectorises for the build's target.
    Portable,
}

thread_local! {
    /// The instruction set chosen for the calling thread's fast-path call, if any.
    static CHOSEN: Cell<Option<Isa>> = const { Cell::new(None) };
}

impl Isa {
    /// Every instruction set this CPU can run, widest first (`Portable` always).
    pub fn available() -> Vec<Isa> {
        let widest = Isa::detect();
        [Isa::Avx512, Isa::Avx2Fma, Isa::Portable]
            .into_iter()
            .filter(|&isa| isa == Isa::Portable || (isa == Isa::Avx2Fma && widest == Isa::Avx512) || isa == widest)
            .collect()
    }

    /// The instruction set for this thread's work: the one `run_with` set, else `detect`.
    pub fn current() -> Isa {
        CHOSEN.with(Cell::get).unwrap_or_else(Isa::detect)
    }

    /// Runs `f` with `current` returning `self` on this thread (the driver's thread of a call;
    /// the kernels pass the choice on to the threads they start).
    pub fn run_with<R>(self, f: impl FnOnce() -> R) -> R {
        struct Restore(Option<Isa>);
        impl Drop for Restore {
            fn drop(&mut self) {
                CHOSEN.with(|c| c.set(self.0));
            }
        }
        let _restore = Restore(CHOSEN.with(|c| c.replace(Some(self))));
        f()
    }

    /// Its name in reports: `avx512`, `avx2` or `portable`.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Avx512 => "avx512",
            Isa::Avx2Fma => "avx2",
            Isa::Portable => "portable",
        }
    }

    /// The widest instruction set this CPU has.
    pub fn detect() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Isa::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                return Isa::Avx2Fma;
            }
        }
        Isa::Portable
    }
}

/// `outs[b][r] += Σ_j w[r·ld + j] · vs[b·n + j]` (j < n) for every batch entry b and row r of
/// the block w [rows, ld], where outs[b] has the block's `rows` elements, vs is [B, n] and the
/// row stride ld ≥ n (see `aligned::padded`).
///
/// Rows go in groups, and all batch entries are done for one group before the next, so the
/// group's rows are read from L2 once per step and reused from L1: four rows (16 KiB at n =
/// 1024) for a batch, and for one sequence sixteen on AVX-512 (eight on AVX2, with half the
/// registers), whose streams the caches feed faster than four (docs/performance.md, "B = 1, a
/// fourth look"). Each row's dot product is its own sum whatever the group, so the group size
/// changes no bits.
/// `reverse` walks the groups last to first. The recurrences alternate it from step to step, so
/// a step starts on the rows the previous one touched last, which are still in L2: a matrix
/// about the size of L2 read in the same order every step would miss on every line (LRU).
pub fn matvec_acc(isa: Isa, w: &[f32], ld: usize, vs: &[f32], outs: &mut [&mut [f32]], reverse: bool) {
    let Some(rows) = outs.first().map(|o| o.len()) else {
        return;
    };
    let n = vs.len() / outs.len();
    assert!(
        n <= ld && w.len() == rows * ld && vs.len() == outs.len() * n && outs.iter().all(|o| o.len() == rows),
        "matvec_acc: w must be [rows, ld ≥ n], vs [B, n] and every out [rows]"
    );
    match isa {
        // SAFETY: `Isa::detect` chose these variants only where the CPU has the features; the
        // shapes were checked above.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { x86::matvec_groups_avx512(w, ld, n, vs, outs, reverse) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2Fma => unsafe { x86::matvec_groups_avx2(w, ld, n, vs, outs, reverse) },
        _ => matvec_groups::<4>(w, ld, n, vs, outs, reverse, dot4_portable),
    }
}

/// The loop over groups of G rows, with the kernel for G dot products; inlined into each
/// instruction set's wrapper, so the kernel is inlined too.
#[inline(always)]
fn matvec_groups<const G: usize>(
    w: &[f32],
    ld: usize,
    n: usize,
    vs: &[f32],
    outs: &mut [&mut [f32]],
    reverse: bool,
    dot: impl Fn([&[f32]; G], &[f32]) -> [f32; G],
) {
    let rows = outs[0].len();
    let groups = rows.div_ceil(G);
    for g in 0..groups {
        let g = if reverse { groups - 1 - g } else { g };
        let group = g * G..(g * G + G).min(rows);
        // A short last group repeats its last row; the extra results are dropped.
        let row = |r: usize| &w[(group.start + r.min(group.len() - 1)) * ld..][..n];
        let wg: [&[f32]; G] = std::array::from_fn(row);
        for (v, out) in vs.chunks_exact(n).zip(outs.iter_mut()) {
            let d = dot(wg, v);
            for (o, d) in out[group.clone()].iter_mut().zip(d) {
                *o += d;
            }
        }
    }
}

/// The four dot products `w[i] · v` (every w[i] has v's length) in eight lanes per row, so the
/// compiler can keep each row's sum in one SSE/NEON register pair.
fn dot4_portable(w: [&[f32]; 4], v: &[f32]) -> [f32; 4] {
    const L: usize = 8;
    let n = v.len();
    let mut acc = [[0.0f32; L]; 4];
    let full = n / L * L;
    for j in (0..full).step_by(L) {
        let vj = &v[j..j + L];
        for (acc, w) in acc.iter_mut().zip(&w) {
            let wj = &w[j..j + L];
            for l in 0..L {
                acc[l] += wj[l] * vj[l];
            }
        }
    }
    let mut out = [0.0f32; 4];
    for r in 0..4 {
        let tail: f32 = (full..n).map(|j| w[r][j] * v[j]).sum();
        out[r] = acc[r].iter().sum::<f32>() + tail;
    }
    out
}

/// `outs[b][j] += Σ_r gs[b][r] · w[r·ld + j]` (j < n, every outs[b] n long) for every batch
/// entry b, over the rows r of the block w [rows, ld], where every gs[b] has the block's `rows`
/// elements and ld ≥ n: the block's share of gᵀ·w, the backward step's product read from w_hh's
/// rows as they lie (the same rows the forward's `matvec_acc` reads).
///
/// Each output element adds its rows' terms one at a time, first row to last, or last to first
/// with `reverse` (the recurrences alternate it from step to step, as in `matvec_acc`), one
/// rounding per term: the same bits on every instruction set. The vector kernels take the rows in
/// groups (16 on AVX-512, 8 on AVX2, as many broadcast factors as registers allow) and, within a
/// group, every batch entry for each vector of a row, so a row of w is loaded once per group for
/// all batch entries and each output vector once per group.
pub fn rows_axpy(isa: Isa, w: &[f32], ld: usize, gs: &[&[f32]], outs: &mut [&mut [f32]], reverse: bool) {
    let Some(rows) = gs.first().map(|g| g.len()) else {
        return;
    };
    let n = outs.first().map_or(0, |o| o.len());
    assert!(
        n <= ld
            && (rows == 0 || w.len() >= (rows - 1) * ld + n)
            && gs.len() == outs.len()
            && gs.iter().all(|g| g.len() == rows)
            && outs.iter().all(|o| o.len() == n),
        "rows_axpy: w must be [rows, ld ≥ n], every g [rows] and every out [n]"
    );
    // The vector kernels take up to three batch entries at a time (their factors in registers).
    for (gs, outs) in gs.chunks(3).zip(outs.chunks_mut(3)) {
        match isa {
            // SAFETY: `Isa::detect` chose these variants only where the CPU has the features;
            // the shapes were checked above.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => unsafe { x86::rows_axpy_avx512(w, ld, gs, outs, reverse) },
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma => unsafe { x86::rows_axpy_avx2(w, ld, gs, outs, reverse) },
            _ => rows_axpy_portable(w, ld, gs, outs, reverse),
        }
    }
}

/// Whether `rows_axpy_portable` rounds once per term like the vector kernels' FMAs: where the
/// build's target has a fused multiply-add instruction. Elsewhere (plain x86-64) `f32::mul_add`
/// would be a library call per term, so the portable loop multiplies and adds.
const PORTABLE_FUSED: bool = cfg!(any(target_arch = "aarch64", target_feature = "fma"));

/// `rows_axpy` row by row, each row's terms added across the outputs (a loop the compiler
/// vectorises); per output element the same terms in the same order as the vector kernels.
fn rows_axpy_portable(w: &[f32], ld: usize, gs: &[&[f32]], outs: &mut [&mut [f32]], reverse: bool) {
    let rows = gs[0].len();
    for (g, out) in gs.iter().zip(outs.iter_mut()) {
        for r in 0..rows {
            let r = if reverse { rows - 1 - r } else { r };
            let (row, f) = (&w[r * ld..][..out.len()], g[r]);
            if PORTABLE_FUSED {
                out.iter_mut().zip(row).for_each(|(o, &w)| *o = w.mul_add(f, *o));
            } else {
                out.iter_mut().zip(row).for_each(|(o, &w)| *o += w * f);
            }
        }
    }
}

/// One group of a `rows_axpy` walk: `len` rows walked from `first`, down when the walk is
/// reversed (the vector kernels add a group's rows in this order, so each output's terms come
/// in one row order whatever the group size).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
#[derive(Clone, Copy)]
struct Group {
    first: usize,
    len: usize,
    reverse: bool,
}

#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
impl Group {
    /// The group's i-th row in walking order.
    fn row(self, i: usize) -> usize {
        if self.reverse { self.first - i } else { self.first + i }
    }

    /// The distance, in f32s, from one row to the next in walking order, at row stride `ld`.
    fn step(self, ld: usize) -> isize {
        if self.reverse { -(ld as isize) } else { ld as isize }
    }
}

/// The groups of `group` rows of a `rows_axpy` walk over `rows` rows: first to last, or
/// (reversed) last to first, each walked in the same direction.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
fn row_groups(rows: usize, group: usize, reverse: bool) -> impl Iterator<Item = Group> {
    let groups = rows.div_ceil(group);
    (0..groups).map(move |g| {
        let g = if reverse { groups - 1 - g } else { g };
        let range = g * group..(g * group + group).min(rows);
        Group { first: if reverse { range.end - 1 } else { range.start }, len: range.len(), reverse }
    })
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// `super::matvec_groups` with the AVX-512 kernel inlined.
    ///
    /// # Safety
    /// The CPU must have AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn matvec_groups_avx512(
        w: &[f32],
        ld: usize,
        n: usize,
        vs: &[f32],
        outs: &mut [&mut [f32]],
        reverse: bool,
    ) {
        // SAFETY: the caller's CPU has AVX-512F; matvec_groups passes rows of v's length.
        if outs.len() == 1 {
            super::matvec_groups::<16>(w, ld, n, vs, outs, reverse, |w, v| unsafe { dot_avx512(w, v) });
        } else {
            super::matvec_groups::<4>(w, ld, n, vs, outs, reverse, |w, v| unsafe { dot_avx512(w, v) });
        }
    }

    /// `super::matvec_groups` with the AVX2 kernel inlined.
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn matvec_groups_avx2(
        w: &[f32],
        ld: usize,
        n: usize,
        vs: &[f32],
        outs: &mut [&mut [f32]],
        reverse: bool,
    ) {
        // SAFETY: the caller's CPU has AVX2 and FMA; matvec_groups passes rows of v's length.
        if outs.len() == 1 {
            super::matvec_groups::<8>(w, ld, n, vs, outs, reverse, |w, v| unsafe { dot_avx2(w, v) });
        } else {
            super::matvec_groups::<4>(w, ld, n, vs, outs, reverse, |w, v| unsafe { dot_avx2(w, v) });
        }
    }

    /// `super::rows_axpy` on AVX-512 for 1 to 3 batch entries: groups of 16 rows.
    ///
    /// # Safety
    /// The CPU must have AVX-512F; the shapes are `rows_axpy`'s.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn rows_axpy_avx512(w: &[f32], ld: usize, gs: &[&[f32]], outs: &mut [&mut [f32]], reverse: bool) {
        // SAFETY (all three): the caller's CPU has AVX-512F; shapes as checked by rows_axpy.
        match outs {
            [a] => unsafe { groups_avx512::<1>(w, ld, gs, [a], reverse) },
            [a, b] => unsafe { groups_avx512::<2>(w, ld, gs, [a, b], reverse) },
            [a, b, c] => unsafe { groups_avx512::<3>(w, ld, gs, [a, b, c], reverse) },
            _ => unreachable!("rows_axpy sends 1 to 3 batch entries"),
        }
    }

    /// # Safety
    /// As `rows_axpy_avx512`, with NB = gs.len() = outs.len().
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn groups_avx512<const NB: usize>(
        w: &[f32],
        ld: usize,
        gs: &[&[f32]],
        outs: [&mut &mut [f32]; NB],
        reverse: bool,
    ) {
        const G: usize = 16;
        let n = outs[0].len();
        let op = outs.map(|o| o.as_mut_ptr());
        for group in super::row_groups(gs[0].len(), G, reverse) {
            // The group's rows in walking order: row i at w0 + i·step.
            let (len, step) = (group.len, group.step(ld));
            // f[i][b]: batch entry b's factor of the group's row i.
            let f: [[__m512; NB]; G] =
                std::array::from_fn(|i| std::array::from_fn(|b| _mm512_set1_ps(gs[b][group.row(i.min(len - 1))])));
            // SAFETY (every row pointer, load and store below): the group's rows i < len lie
            // inside the block, lanes below n inside each row and output (rows_axpy's checks).
            let w0 = unsafe { w.as_ptr().add(group.first * ld) };
            let mut j = 0;
            if NB == 1 && len == G {
                // One batch entry and a whole group: four vectors at a time (four chains of
                // FMAs; two measured 8–10% slower), the group unrolled; the same terms in the
                // same order per element.
                while j + 64 <= n {
                    let mut acc: [__m512; 4] =
                        std::array::from_fn(|c| unsafe { _mm512_loadu_ps(op[0].add(j + 16 * c)) });
                    for (i, fi) in f.iter().enumerate() {
                        let row = unsafe { w0.offset(i as isize * step).add(j) };
                        for (c, a) in acc.iter_mut().enumerate() {
                            *a = _mm512_fmadd_ps(unsafe { _mm512_loadu_ps(row.add(16 * c)) }, fi[0], *a);
                        }
                    }
                    for (c, a) in acc.iter().enumerate() {
                        unsafe { _mm512_storeu_ps(op[0].add(j + 16 * c), *a) };
                    }
                    j += 64;
                }
            }
            while j < n {
                let mask: __mmask16 = if n - j >= 16 { u16::MAX } else { (1u32 << (n - j)) as u16 - 1 };
                let mut acc: [__m512; NB] =
                    std::array::from_fn(|b| unsafe { _mm512_maskz_loadu_ps(mask, op[b].add(j)) });
                for (i, fi) in f.iter().enumerate().take(len) {
                    let wv = unsafe { _mm512_maskz_loadu_ps(mask, w0.offset(i as isize * step).add(j)) };
                    for (a, &fb) in acc.iter_mut().zip(fi) {
                        *a = _mm512_fmadd_ps(wv, fb, *a);
                    }
                }
                for b in 0..NB {
                    unsafe { _mm512_mask_storeu_ps(op[b].add(j), mask, acc[b]) };
                }
                j += 16;
            }
        }
    }

    /// `super::rows_axpy` on AVX2 + FMA for 1 to 3 batch entries: groups of 8 rows.
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA; the shapes are `rows_axpy`'s.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn rows_axpy_avx2(w: &[f32], ld: usize, gs: &[&[f32]], outs: &mut [&mut [f32]], reverse: bool) {
        // SAFETY (all three): the caller's CPU has AVX2 and FMA; shapes as checked by rows_axpy.
        match outs {
            [a] => unsafe { groups_avx2::<1>(w, ld, gs, [a], reverse) },
            [a, b] => unsafe { groups_avx2::<2>(w, ld, gs, [a, b], reverse) },
            [a, b, c] => unsafe { groups_avx2::<3>(w, ld, gs, [a, b, c], reverse) },
            _ => unreachable!("rows_axpy sends 1 to 3 batch entries"),
        }
    }

    /// # Safety
    /// As `rows_axpy_avx2`, with NB = gs.len() = outs.len().
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn groups_avx2<const NB: usize>(
        w: &[f32],
        ld: usize,
        gs: &[&[f32]],
        outs: [&mut &mut [f32]; NB],
        reverse: bool,
    ) {
        const G: usize = 8;
        let n = outs[0].len();
        let op = outs.map(|o| o.as_mut_ptr());
        for group in super::row_groups(gs[0].len(), G, reverse) {
            let (len, step) = (group.len, group.step(ld));
            // f[i][b]: batch entry b's factor of the group's row i.
            let f: [[__m256; NB]; G] =
                std::array::from_fn(|i| std::array::from_fn(|b| _mm256_set1_ps(gs[b][group.row(i.min(len - 1))])));
            // SAFETY (every row pointer, load and store below): as in `groups_avx512`.
            let w0 = unsafe { w.as_ptr().add(group.first * ld) };
            let mut j = 0;
            if NB == 1 && len == G {
                // One batch entry and a whole group: four vectors at a time (four chains of
                // FMAs), as on AVX-512; the same terms in the same order per element.
                while j + 32 <= n {
                    let mut acc: [__m256; 4] =
                        std::array::from_fn(|c| unsafe { _mm256_loadu_ps(op[0].add(j + 8 * c)) });
                    for (i, fi) in f.iter().enumerate() {
                        let row = unsafe { w0.offset(i as isize * step).add(j) };
                        for (c, a) in acc.iter_mut().enumerate() {
                            *a = _mm256_fmadd_ps(unsafe { _mm256_loadu_ps(row.add(8 * c)) }, fi[0], *a);
                        }
                    }
                    for (c, a) in acc.iter().enumerate() {
                        unsafe { _mm256_storeu_ps(op[0].add(j + 8 * c), *a) };
                    }
                    j += 32;
                }
            }
            while j + 8 <= n {
                let mut acc: [__m256; NB] = std::array::from_fn(|b| unsafe { _mm256_loadu_ps(op[b].add(j)) });
                for (i, fi) in f.iter().enumerate().take(len) {
                    let wv = unsafe { _mm256_loadu_ps(w0.offset(i as isize * step).add(j)) };
                    for (a, &fb) in acc.iter_mut().zip(fi) {
                        *a = _mm256_fmadd_ps(wv, fb, *a);
                    }
                }
                for b in 0..NB {
                    unsafe { _mm256_storeu_ps(op[b].add(j), acc[b]) };
                }
                j += 8;
            }
            for jj in j..n {
                for b in 0..NB {
                    let o = unsafe { &mut *op[b].add(jj) };
                    for i in 0..len {
                        *o = unsafe { *w0.offset(i as isize * step).add(jj) }.mul_add(gs[b][group.row(i)], *o);
                    }
                }
            }
        }
    }

    /// # Safety
    /// The CPU must have AVX-512F; every `w[i]` must be at least `v.len()` long.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub unsafe fn dot_avx512<const G: usize>(w: [&[f32]; G], v: &[f32]) -> [f32; G] {
        let n = v.len();
        debug_assert!(w.iter().all(|w| w.len() >= n));
        let (vp, wp) = (v.as_ptr(), w.map(|w| w.as_ptr()));
        let mut acc = [_mm512_setzero_ps(); G];
        let mut j = 0;
        // SAFETY (all loads): j + 16 ≤ n, or the masked tail touches only lanes j..n.
        while j + 16 <= n {
            let vj = unsafe { _mm512_loadu_ps(vp.add(j)) };
            for r in 0..G {
                let wj = unsafe { _mm512_loadu_ps(wp[r].add(j)) };
                acc[r] = _mm512_fmadd_ps(wj, vj, acc[r]);
            }
            j += 16;
        }
        if j < n {
            let mask: __mmask16 = (1u32 << (n - j)) as u16 - 1;
            let vj = unsafe { _mm512_maskz_loadu_ps(mask, vp.add(j)) };
            for r in 0..G {
                let wj = unsafe { _mm512_maskz_loadu_ps(mask, wp[r].add(j)) };
                acc[r] = _mm512_fmadd_ps(wj, vj, acc[r]);
            }
        }
        let mut out = [0.0f32; G];
        for r in 0..G {
            out[r] = _mm512_reduce_add_ps(acc[r]);
        }
        out
    }

    /// # Safety
    /// The CPU must have AVX2 and FMA; every `w[i]` must be at least `v.len()` long.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_avx2<const G: usize>(w: [&[f32]; G], v: &[f32]) -> [f32; G] {
        let n = v.len();
        debug_assert!(w.iter().all(|w| w.len() >= n));
        let (vp, wp) = (v.as_ptr(), w.map(|w| w.as_ptr()));
        let mut acc = [_mm256_setzero_ps(); G];
        let mut j = 0;
        // SAFETY (all loads): j + 8 ≤ n.
        while j + 8 <= n {
            let vj = unsafe { _mm256_loadu_ps(vp.add(j)) };
            for r in 0..G {
                let wj = unsafe { _mm256_loadu_ps(wp[r].add(j)) };
                acc[r] = _mm256_fmadd_ps(wj, vj, acc[r]);
            }
            j += 8;
        }
        let mut out = [0.0f32; G];
        for r in 0..G {
            out[r] = hsum256(acc[r]);
            for k in j..n {
                out[r] += w[r][k] * v[k];
            }
        }
        out
    }

    #[target_feature(enable = "avx2,fma")]
    fn hsum256(a: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The row form, on every kernel the CPU has: lengths that exercise the vector body and
    /// every tail, row counts around both group sizes, one to four batch entries, both walking
    /// orders. Small integers and halves: every sum exact in f32 whatever its order.
    #[test]
    fn row_kernels_match_plain_sums() {
        for isa in Isa::available() {
            for n in [1, 7, 8, 15, 16, 17, 31, 32, 33, 70] {
                for rows in [1, 3, 7, 8, 9, 15, 16, 17, 33] {
                    for batch in 1..=4 {
                        let ld = n + 3;
                        let w: Vec<f32> = (0..rows * ld)
                            .map(|i| if i % ld < n { (i * 7 % 13) as f32 - 6.0 } else { f32::NAN })
                            .collect();
                        let g: Vec<Vec<f32>> = (0..batch)
                            .map(|b| (0..rows).map(|r| ((r + 3 * b) * 5 % 11) as f32 * 0.5 - 2.0).collect())
                            .collect();
                        let gs: Vec<&[f32]> = g.iter().map(|g| &g[..]).collect();
                        let mut out = vec![vec![1.0f32; n]; batch];
                        let mut outs: Vec<&mut [f32]> = out.iter_mut().map(|o| &mut o[..]).collect();
                        rows_axpy(isa, &w, ld, &gs, &mut outs, rows % 2 == 1);
                        for b in 0..batch {
                            for j in 0..n {
                                let sum: f32 = (0..rows).map(|r| g[b][r] * w[r * ld + j]).sum();
                                assert_eq!(out[b][j], 1.0 + sum, "{isa:?} n={n} rows={rows} b={b} j={j}");
                            }
                        }
                    }
                }
            }
        }
    }

    /// The row form adds each output's terms in one row order, one rounding per term: on values
    /// whose sums round, every vector kernel gives the bits of a plain loop of `mul_add`s in that
    /// order (the portable loop too where it is fused, else those of multiply-then-add), in both
    /// walking orders and for one to five batch entries (the kernels take three at a time).
    #[test]
    fn row_kernels_add_each_term_in_row_order() {
        let (n, rows, ld) = (70, 37, 80);
        let w: Vec<f32> = (0..rows * ld).map(|i| ((i * 2654435761usize) % 1000) as f32 * 1e-3 - 0.5).collect();
        let g: Vec<Vec<f32>> =
            (0..5).map(|b| (0..rows).map(|r| ((r * 40503 + b * 977) % 997) as f32 * 1e-3 - 0.5).collect()).collect();
        for batch in 1..=5 {
            for reverse in [false, true] {
                let plain = |fused: bool| -> Vec<Vec<f32>> {
                    (0..batch)
                        .map(|b| {
                            (0..n)
                                .map(|j| {
                                    let mut acc = 0.25f32;
                                    for r in 0..rows {
                                        let r = if reverse { rows - 1 - r } else { r };
                                        let (x, f) = (w[r * ld + j], g[b][r]);
                                        acc = if fused { x.mul_add(f, acc) } else { acc + x * f };
                                    }
                                    acc
                                })
                                .collect()
                        })
                        .collect()
                };
                for isa in Isa::available() {
                    let gs: Vec<&[f32]> = g[..batch].iter().map(|g| &g[..]).collect();
                    let mut out = vec![vec![0.25f32; n]; batch];
                    let mut outs: Vec<&mut [f32]> = out.iter_mut().map(|o| &mut o[..]).collect();
                    rows_axpy(isa, &w, ld, &gs, &mut outs, reverse);
                    let fused = isa != Isa::Portable || PORTABLE_FUSED;
                    assert!(out == plain(fused), "{isa:?} batch {batch} reverse {reverse}");
                }
            }
        }
    }

    /// Every kernel the CPU has, on lengths that exercise the vector body and every tail, for
    /// one and two batch entries and both row orders. The values are small integers and halves,
    /// so every sum is exact in f32 whatever the order of summation.
    #[test]
    fn kernels_match_plain_sums() {
        let mut isas = vec![Isa::Portable, Isa::detect()];
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            isas.push(Isa::Avx2Fma);
        }
        isas.dedup();
        for isa in isas {
            for n in [1, 7, 8, 15, 16, 17, 33, 70] {
                for rows in [1, 3, 4, 5, 9, 16, 17, 33] {
                    for batch in [1, 2] {
                        // Rows at a stride of n + 3, whose padding must not be read.
                        let ld = n + 3;
                        let w: Vec<f32> = (0..rows * ld)
                            .map(|i| if i % ld < n { (i * 7 % 13) as f32 - 6.0 } else { f32::NAN })
                            .collect();
                        let vs: Vec<f32> = (0..batch * n).map(|j| (j * 5 % 11) as f32 * 0.5 - 2.0).collect();
                        let mut out = vec![vec![1.0f32; rows]; batch];
                        let mut outs: Vec<&mut [f32]> = out.iter_mut().map(|o| &mut o[..]).collect();
                        matvec_acc(isa, &w, ld, &vs, &mut outs, rows % 2 == 1);
                        for (b, v) in vs.chunks(n).enumerate() {
                            for r in 0..rows {
                                let dot: f32 = (0..n).map(|j| w[r * ld + j] * v[j]).sum();
                                assert_eq!(out[b][r], 1.0 + dot, "{isa:?} n={n} rows={rows} b={b}");
                            }
                        }
                    }
                }
            }
        }
    }
}
