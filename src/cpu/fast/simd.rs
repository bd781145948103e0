//! The recurrences' inner loops, one step's product on a block of output columns:
//! - `matvec_acc`, the dot form: `out[r] += w_r · v` for a block of rows of a row-major matrix
//!   (w_hh forward, w_hhᵀ backward), used for small batches, where a step streams the matrix;
//! - `outer_acc`, the tile form: `out[c] += Σ_j v[j]·wt[j, c]` (w_hhᵀ forward, w_hh backward),
//!   a GEMM micro-kernel for batches of 4 or more, where a step is compute-bound.
//!
//! The build uses default x86-64 flags (SSE2 only), so the wide kernels are compiled for
//! AVX-512F or AVX2+FMA with `#[target_feature]` and chosen at run time, the way `matrixmultiply`
//! chooses its GEMM kernel; other targets get a portable loop the compiler vectorises.
//! Four rows are done together so each load of `v` feeds four FMAs: the rows of w stream from
//! L2, `v` stays in L1, and the loads of `v` would otherwise compete with those of w.

/// The instruction set the kernels run on, detected once per call of `fast::bptt`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    Avx512,
    Avx2Fma,
    Portable,
}

impl Isa {
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
/// Rows go in groups of four, and all batch entries are done for one group before the next, so
/// the group's rows (16 KiB at n = 1024) are read from L2 once per step and reused from L1.
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
        _ => matvec_groups(w, ld, n, vs, outs, reverse, dot4_portable),
    }
}

/// The loop over groups of four rows, with the kernel for four dot products; inlined into each
/// instruction set's wrapper, so the kernel is inlined too.
#[inline(always)]
fn matvec_groups(
    w: &[f32],
    ld: usize,
    n: usize,
    vs: &[f32],
    outs: &mut [&mut [f32]],
    reverse: bool,
    dot4: impl Fn([&[f32]; 4], &[f32]) -> [f32; 4],
) {
    let rows = outs[0].len();
    let groups = rows.div_ceil(4);
    for g in 0..groups {
        let g = if reverse { groups - 1 - g } else { g };
        let group = g * 4..(g * 4 + 4).min(rows);
        // A short last group repeats its last row; the extra results are dropped.
        let row = |r: usize| &w[(group.start + r.min(group.len() - 1)) * ld..][..n];
        let w4 = [row(0), row(1), row(2), row(3)];
        for (v, out) in vs.chunks_exact(n).zip(outs.iter_mut()) {
            let d = dot4(w4, v);
            for (o, d) in out[group.clone()].iter_mut().zip(d) {
                *o += d;
            }
        }
    }
}

/// `outs[b][c] += Σ_j vs[b·n + j] · wt[j·ld + c0 + c]` (j < n, c < outs[b].len()) for every
/// batch entry b, where vs is [B, n] and wt [n, ld] row-major: C += V·Wt on a block of columns
/// starting at c0.
///
/// On AVX-512 a register tile of 4 batch entries × 64 columns (16 accumulators) takes each
/// step of j as 4 vector loads of wt and 4 broadcasts of v for 16 FMAs, with no horizontal sums.
/// j runs in blocks of 64 rows of wt (16 KiB per 64 columns, with the padded stride spread over
/// all L1 sets; see `aligned::padded`), reused from L1 by every batch tile.
pub fn outer_acc(isa: Isa, wt: &[f32], ld: usize, c0: usize, vs: &[f32], outs: &mut [&mut [f32]]) {
    let Some(cols) = outs.first().map(|o| o.len()) else {
        return;
    };
    let n = vs.len() / outs.len();
    assert!(
        c0 + cols <= ld
            && (n == 0 || wt.len() >= (n - 1) * ld + c0 + cols)
            && vs.len() == outs.len() * n
            && outs.iter().all(|o| o.len() == cols),
        "outer_acc: wt must be [n, ld ≥ c0 + cols], vs [B, n] and every out [cols]"
    );
    match isa {
        // SAFETY: `Isa::detect` chose AVX-512 only where the CPU has it; the bounds the kernel
        // relies on are the ones asserted above.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { x86::outer_acc_avx512(wt, ld, c0, vs, n, outs) },
        _ => outer_acc_portable(wt, ld, c0, vs, n, outs),
    }
}

/// The same sums in the same order (over j, for each output), for other instruction sets.
fn outer_acc_portable(wt: &[f32], ld: usize, c0: usize, vs: &[f32], n: usize, outs: &mut [&mut [f32]]) {
    for (v, out) in vs.chunks_exact(n.max(1)).zip(outs.iter_mut()) {
        for (j, &vj) in v.iter().enumerate().take(n) {
            let w = &wt[j * ld + c0..][..out.len()];
            out.iter_mut().zip(w).for_each(|(o, &w)| *o += vj * w);
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

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// Columns per register tile (4 vectors), batch entries per tile, rows of wt per block.
    const NR: usize = 64;
    const MR: usize = 4;
    const KC: usize = 64;

    /// # Safety
    /// The CPU must have AVX-512F; `wt` holds rows j < n of at least c0 + outs[b].len()
    /// elements at stride ld, `vs` is [outs.len(), n].
    #[target_feature(enable = "avx512f")]
    pub unsafe fn outer_acc_avx512(wt: &[f32], ld: usize, c0: usize, vs: &[f32], n: usize, outs: &mut [&mut [f32]]) {
        let (nb, cols) = (outs.len(), outs[0].len());
        for ct in (0..cols).step_by(NR) {
            let width = (cols - ct).min(NR);
            // Lanes of the 4 vectors inside the block: all of them but at its right edge.
            let masks: [__mmask16; 4] = std::array::from_fn(|z| {
                let lanes = width.saturating_sub(16 * z).min(16);
                ((1u32 << lanes) - 1) as __mmask16
            });
            for kb in (0..n).step_by(KC) {
                let kn = (n - kb).min(KC);
                let w = wt[kb * ld + c0 + ct..].as_ptr();
                // The next block of wt (the next rows, else the next columns' first rows),
                // fetched into L2 while the first batch tile works on this one: its first touch
                // would otherwise wait on L3 for every row (a 4 KiB stride the hardware
                // prefetcher does not follow across 64 rows).
                let next = if kb + KC < n { (kb + KC) * ld + c0 + ct } else { c0 + ct + NR };
                let pf = wt.as_ptr().wrapping_add(next);
                for bt in (0..nb).step_by(MR) {
                    let v = |b: usize| vs[(bt + b) * n + kb..].as_ptr();
                    let (outs, mr) = (&mut outs[bt..], (nb - bt).min(MR));
                    let pf = if bt == 0 { pf } else { std::ptr::null() };
                    // SAFETY (all four): kn rows of wt from w and kn elements of each v row are
                    // inside their slices; the masks keep every access to wt and out inside
                    // the block's `width` columns (prefetches are hints and never fault).
                    unsafe {
                        match mr {
                            4 => tile::<4>(w, ld, kn, [v(0), v(1), v(2), v(3)], out_ptrs(outs, ct), masks, pf),
                            3 => tile::<3>(w, ld, kn, [v(0), v(1), v(2)], out_ptrs(outs, ct), masks, pf),
                            2 => tile::<2>(w, ld, kn, [v(0), v(1)], out_ptrs(outs, ct), masks, pf),
                            _ => tile::<1>(w, ld, kn, [v(0)], out_ptrs(outs, ct), masks, pf),
                        }
                    }
                }
            }
        }
    }

    /// Pointers to column `ct` of the first R rows of `outs`.
    fn out_ptrs<const R: usize>(outs: &mut [&mut [f32]], ct: usize) -> [*mut f32; R] {
        std::array::from_fn(|b| outs[b][ct..].as_mut_ptr())
    }

    /// out[b][0..64] += Σ_{j<kn} v[b][j] · w[j·ld + 0..64] for R batch entries, masked lanes
    /// neither read nor written; unless `pf` is null, row j of the block at `pf` is prefetched
    /// into L2 alongside row j of w.
    ///
    /// # Safety
    /// AVX-512F; the unmasked lanes of w (kn rows at stride ld) and of out, and v[b][..kn],
    /// must be valid.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn tile<const R: usize>(
        w: *const f32,
        ld: usize,
        kn: usize,
        v: [*const f32; R],
        out: [*mut f32; R],
        masks: [__mmask16; 4],
        pf: *const f32,
    ) {
        // wrapping_add: a masked-off vector may start past the end of its row.
        let mut acc = [[_mm512_setzero_ps(); 4]; R];
        for b in 0..R {
            for z in 0..4 {
                acc[b][z] = unsafe { _mm512_maskz_loadu_ps(masks[z], out[b].wrapping_add(16 * z)) };
            }
        }
        for j in 0..kn {
            let wj = w.wrapping_add(j * ld);
            let wz: [__m512; 4] =
                std::array::from_fn(|z| unsafe { _mm512_maskz_loadu_ps(masks[z], wj.wrapping_add(16 * z)) });
            if !pf.is_null() {
                for z in 0..4 {
                    _mm_prefetch::<_MM_HINT_T1>(pf.wrapping_add(j * ld + 16 * z) as *const i8);
                }
            }
            for b in 0..R {
                let vb = _mm512_set1_ps(unsafe { *v[b].add(j) });
                for z in 0..4 {
                    acc[b][z] = _mm512_fmadd_ps(wz[z], vb, acc[b][z]);
                }
            }
        }
        for b in 0..R {
            for z in 0..4 {
                unsafe { _mm512_mask_storeu_ps(out[b].wrapping_add(16 * z), masks[z], acc[b][z]) };
            }
        }
    }

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
        super::matvec_groups(w, ld, n, vs, outs, reverse, |w, v| unsafe { dot4_avx512(w, v) });
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
        super::matvec_groups(w, ld, n, vs, outs, reverse, |w, v| unsafe { dot4_avx2(w, v) });
    }

    /// # Safety
    /// The CPU must have AVX-512F; every `w[i]` must be at least `v.len()` long.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub unsafe fn dot4_avx512(w: [&[f32]; 4], v: &[f32]) -> [f32; 4] {
        let n = v.len();
        debug_assert!(w.iter().all(|w| w.len() >= n));
        let (vp, wp) = (v.as_ptr(), w.map(|w| w.as_ptr()));
        let mut acc = [_mm512_setzero_ps(); 4];
        let mut j = 0;
        // SAFETY (all loads): j + 16 ≤ n, or the masked tail touches only lanes j..n.
        while j + 16 <= n {
            let vj = unsafe { _mm512_loadu_ps(vp.add(j)) };
            for r in 0..4 {
                let wj = unsafe { _mm512_loadu_ps(wp[r].add(j)) };
                acc[r] = _mm512_fmadd_ps(wj, vj, acc[r]);
            }
            j += 16;
        }
        if j < n {
            let mask: __mmask16 = (1u32 << (n - j)) as u16 - 1;
            let vj = unsafe { _mm512_maskz_loadu_ps(mask, vp.add(j)) };
            for r in 0..4 {
                let wj = unsafe { _mm512_maskz_loadu_ps(mask, wp[r].add(j)) };
                acc[r] = _mm512_fmadd_ps(wj, vj, acc[r]);
            }
        }
        let mut out = [0.0f32; 4];
        for r in 0..4 {
            out[r] = _mm512_reduce_add_ps(acc[r]);
        }
        out
    }

    /// # Safety
    /// The CPU must have AVX2 and FMA; every `w[i]` must be at least `v.len()` long.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot4_avx2(w: [&[f32]; 4], v: &[f32]) -> [f32; 4] {
        let n = v.len();
        debug_assert!(w.iter().all(|w| w.len() >= n));
        let (vp, wp) = (v.as_ptr(), w.map(|w| w.as_ptr()));
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut j = 0;
        // SAFETY (all loads): j + 8 ≤ n.
        while j + 8 <= n {
            let vj = unsafe { _mm256_loadu_ps(vp.add(j)) };
            for r in 0..4 {
                let wj = unsafe { _mm256_loadu_ps(wp[r].add(j)) };
                acc[r] = _mm256_fmadd_ps(wj, vj, acc[r]);
            }
            j += 8;
        }
        let mut out = [0.0f32; 4];
        for r in 0..4 {
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
                for rows in [1, 3, 4, 5, 9] {
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

    /// The tile kernel on every instruction set, against plain sums: column blocks that start
    /// anywhere and end inside a vector or a tile, more rows than one block of j (64), and
    /// batches that leave every partial batch tile. Exact, as above.
    #[test]
    fn outer_kernel_matches_plain_sums() {
        let mut isas = vec![Isa::Portable, Isa::detect()];
        isas.dedup();
        for isa in isas {
            for n in [1, 5, 64, 70, 130] {
                for (c0, cols) in [(0, 1), (0, 16), (3, 17), (16, 64), (0, 70), (32, 129)] {
                    for batch in [1, 2, 3, 4, 5, 9] {
                        let ld = c0 + cols + 5;
                        // wt's last row ends at the block's edge, so a read past it would fail.
                        let len = (n - 1) * ld + c0 + cols;
                        let wt: Vec<f32> = (0..len).map(|i| (i * 7 % 13) as f32 - 6.0).collect();
                        let vs: Vec<f32> = (0..batch * n).map(|j| (j * 5 % 11) as f32 * 0.5 - 2.0).collect();
                        let mut out: Vec<Vec<f32>> = (0..batch).map(|b| vec![b as f32; cols]).collect();
                        let mut outs: Vec<&mut [f32]> = out.iter_mut().map(|o| &mut o[..]).collect();
                        outer_acc(isa, &wt, ld, c0, &vs, &mut outs);
                        for (b, v) in vs.chunks(n).enumerate() {
                            for c in 0..cols {
                                let dot: f32 = (0..n).map(|j| v[j] * wt[j * ld + c0 + c]).sum();
                                assert_eq!(out[b][c], b as f32 + dot, "{isa:?} n={n} c0={c0} cols={cols} b={b} c={c}");
                            }
                        }
                    }
                }
            }
        }
    }
}
