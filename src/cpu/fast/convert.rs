//! The conversions between the API's f64 and the fast path's f32: the weights and inputs in,
//! the gradients and states out. They are passes over memory (w_hh's 8 MiB of f64 in, ∂L/∂w_hh's
//! 8 MiB out at h = 1024), split over rayon's threads, and with AVX (any machine the AVX2 or
//! AVX-512 kernels run on) converted four values per instruction, where the build's default
//! x86-64 target converts two: 20–40% faster on those 8 MiB. Not eight: the 512-bit forms wrote
//! the 64 MiB of fresh memory of the states at (1024, 256, 32) 5% slower than 256-bit ones,
//! whose page faults are most of that time.
//!
//! Both directions round as `as` does (f64 → f32 to nearest, ties to even; f32 → f64 is exact),
//! so every instruction set gives the same bits.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::aligned::{AlignedVec, padded};
use super::simd::Isa;

/// Element-wise conversions are split over rayon's threads in chunks this long: the big ones
/// (w_hh in, ∂L/∂w_hh out) are memory-bound, and the second core helps.
const CHUNK: usize = 1 << 15;

/// v in f32, in a new Vec.
pub fn to_f32(v: &[f64]) -> Vec<f32> {
    let mut out = Vec::with_capacity(v.len());
    narrow_into(Isa::current(), v, &mut out.spare_capacity_mut()[..v.len()]);
    // SAFETY: `narrow_into` wrote all v.len() elements.
    unsafe { out.set_len(v.len()) };
    out
}

/// v in f64, in a new Vec.
pub fn to_f64(v: &[f32]) -> Vec<f64> {
    let mut out = Vec::with_capacity(v.len());
    let isa = Isa::current();
    in_chunks(v, &mut out.spare_capacity_mut()[..v.len()], |s, d| widen(isa, s, d));
    // SAFETY: `widen` wrote every element.
    unsafe { out.set_len(v.len()) };
    out
}

/// dst = src in f32.
pub fn convert_into(dst: &mut [f32], src: &[f64]) {
    // SAFETY: f32 and MaybeUninit<f32> have the same layout, and only f32 values are written.
    let dst = unsafe { &mut *(dst as *mut [f32] as *mut [MaybeUninit<f32>]) };
    narrow_into(Isa::current(), src, dst);
}

/// w [rows, cols] (row-major f64) as f32 rows at the padded stride, starting on a cache line.
pub fn to_f32_padded(w: &[f64], rows: usize, cols: usize) -> AlignedVec {
    let ld = padded(cols);
    let isa = Isa::current();
    let mut out = AlignedVec::scratch(rows * ld);
    let per = (CHUNK / ld.max(1)).max(1);
    out.par_chunks_mut(per * ld).zip(w.par_chunks(per * cols)).for_each(|(o, w)| {
        for (o, w) in o.chunks_mut(ld).zip(w.chunks(cols)) {
            // SAFETY: as in `convert_into`.
            let o = unsafe { &mut *(&mut o[..cols] as *mut [f32] as *mut [MaybeUninit<f32>]) };
            narrow(isa, w, o);
        }
    });
    out
}

fn narrow_into(isa: Isa, src: &[f64], dst: &mut [MaybeUninit<f32>]) {
    in_chunks(src, dst, |s, d| narrow(isa, s, d));
}

/// `convert(src chunk, dst chunk)` over chunks of `CHUNK` elements, split over rayon's threads.
fn in_chunks<S: Sync, D: Send>(
    src: &[S],
    dst: &mut [MaybeUninit<D>],
    convert: impl Fn(&[S], &mut [MaybeUninit<D>]) + Sync,
) {
    dst.par_chunks_mut(CHUNK).zip(src.par_chunks(CHUNK)).for_each(|(d, s)| convert(s, d));
}

/// dst[i] = src[i] as f32, every element written.
fn narrow(isa: Isa, src: &[f64], dst: &mut [MaybeUninit<f32>]) {
    // SAFETY: `Isa::detect` chose these only where the CPU has AVX2 (and so AVX); `by_vectors`
    // checked the lengths.
    by_vectors(
        src,
        dst,
        |x| x as f32,
        |s, d| match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 | Isa::Avx2Fma => unsafe { x86::narrow_avx(s, d) },
            _ => 0,
        },
    );
}

/// dst[i] = src[i] as f64, every element written.
fn widen(isa: Isa, src: &[f32], dst: &mut [MaybeUninit<f64>]) {
    // SAFETY: as in `narrow`.
    by_vectors(
        src,
        dst,
        |x| x as f64,
        |s, d| match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 | Isa::Avx2Fma => unsafe { x86::widen_avx(s, d) },
            _ => 0,
        },
    );
}

/// dst[i] = `one(src[i])` for every i: `vectors` converts whole vectors from the start and says
/// how many elements it did, `one` the rest.
fn by_vectors<S: Copy, D>(
    src: &[S],
    dst: &mut [MaybeUninit<D>],
    one: impl Fn(S) -> D,
    vectors: impl FnOnce(&[S], &mut [MaybeUninit<D>]) -> usize,
) {
    assert_eq!(src.len(), dst.len(), "conversion: equal lengths");
    let done = vectors(src, dst);
    dst[done..].iter_mut().zip(&src[done..]).for_each(|(d, &s)| {
        d.write(one(s));
    });
}

/// The vector loops: each converts whole vectors from the start and returns how many elements
/// it did (the callers do the rest).
#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;
    use std::mem::MaybeUninit;

    /// # Safety
    /// The CPU must have AVX; `dst` at least as long as `src`.
    #[target_feature(enable = "avx")]
    pub unsafe fn narrow_avx(src: &[f64], dst: &mut [MaybeUninit<f32>]) -> usize {
        let n = src.len() / 4 * 4;
        let (s, d) = (src.as_ptr(), dst.as_mut_ptr() as *mut f32);
        for i in (0..n).step_by(4) {
            // SAFETY: i + 4 ≤ n ≤ both lengths.
            unsafe { _mm_storeu_ps(d.add(i), _mm256_cvtpd_ps(_mm256_loadu_pd(s.add(i)))) };
        }
        n
    }

    /// # Safety
    /// The CPU must have AVX; `dst` at least as long as `src`.
    #[target_feature(enable = "avx")]
    pub unsafe fn widen_avx(src: &[f32], dst: &mut [MaybeUninit<f64>]) -> usize {
        let n = src.len() / 4 * 4;
        let (s, d) = (src.as_ptr(), dst.as_mut_ptr() as *mut f64);
        for i in (0..n).step_by(4) {
            // SAFETY: i + 4 ≤ n ≤ both lengths.
            unsafe { _mm256_storeu_pd(d.add(i), _mm256_cvtps_pd(_mm_loadu_ps(s.add(i)))) };
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every instruction set the CPU has gives the bits of `as`, for lengths around the vector
    /// widths and values that round (ties, overflow to infinity, subnormals, NaN).
    #[test]
    fn conversions_round_as_as_does() {
        let special =
            [0.1, -2.5e-39, 1e-46, 3.4028235677973366e38, 1e39, -0.0, f64::NAN, f64::INFINITY, 1.0 + 2f64.powi(-24)];
        for n in [0, 1, 3, 4, 7, 8, 9, 15, 16, 17, 40] {
            let src: Vec<f64> = (0..n).map(|i| special[i % special.len()] * (1.0 + i as f64 * 1e-9)).collect();
            let narrow_ref: Vec<u32> = src.iter().map(|&x| (x as f32).to_bits()).collect();
            let f32s: Vec<f32> = src.iter().map(|&x| x as f32).collect();
            let widen_ref: Vec<u64> = f32s.iter().map(|&x| (x as f64).to_bits()).collect();
            for isa in Isa::available() {
                let mut got = vec![MaybeUninit::new(7.0f32); n];
                narrow(isa, &src, &mut got);
                // SAFETY: `narrow` wrote every element (and they held values before).
                let got: Vec<u32> = got.iter().map(|x| unsafe { x.assume_init() }.to_bits()).collect();
                assert_eq!(got, narrow_ref, "{isa:?} narrow, n = {n}");
                let mut got = vec![MaybeUninit::new(7.0f64); n];
                widen(isa, &f32s, &mut got);
                // SAFETY: as above.
                let got: Vec<u64> = got.iter().map(|x| unsafe { x.assume_init() }.to_bits()).collect();
                assert_eq!(got, widen_ref, "{isa:?} widen, n = {n}");
            }
        }
    }

    /// The parallel forms keep every element in its place, past several chunks.
    #[test]
    fn parallel_forms_keep_the_order() {
        let n = 3 * CHUNK + 5;
        let v: Vec<f64> = (0..n).map(|i| i as f64 * 0.5).collect();
        let f = to_f32(&v);
        assert!(f.iter().enumerate().all(|(i, &x)| x == i as f32 * 0.5));
        let back = to_f64(&f);
        assert_eq!(back, v);
        let mut dst = vec![-1.0f32; n];
        convert_into(&mut dst, &v);
        assert_eq!(dst, f);
        let (rows, cols) = (70, 1000);
        let w: Vec<f64> = (0..rows * cols).map(|i| i as f64).collect();
        let p = to_f32_padded(&w, rows, cols);
        let ld = padded(cols);
        assert!((0..rows).all(|r| (0..cols).all(|c| p[r * ld + c] == (r * cols + c) as f32)));
    }
}
