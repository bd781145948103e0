//! The instruction set the kernels run on (`Isa`), and the recurrences' inner loop for small
//! batches, `matvec_acc`, the dot form: `out[r] += w_r · v` for a block of rows of a row-major
//! matrix (w_hh forward, w_hhᵀ backward), where a step streams the matrix. (From a batch of 4
//! on, a step is the register tile's job: `kernel`.)
//!
//! The build uses default x86-64 flags (SSE2 only), so the wide kernels are compiled for
//! AVX-512F or AVX2+FMA with `#[target_feature]` and chosen at run time; other targets get a
//! portable loop the compiler vectorises.
//! Four rows are done together so each load of `v` feeds four FMAs: the rows of w stream from
//! L2, `v` stays in L1, and the loads of `v` would otherwise compete with those of w.

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
}
