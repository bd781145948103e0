//! This machine's f32 FMA peak, measured: what the fast path's GFLOP/s are a fraction of
//! (the report's `cpu` line with `cpu_peak`; docs/performance.md).
//!
//! Every thread of the pool runs chains of FMAs on registers at once (12 independent
//! accumulators, more than an FMA's latency times the units that issue them on any current
//! core), in the widest vectors the fast path uses; the peak is the sum of each thread's best
//! rate over several short trials, so an interruption on a busy machine drops out. About 50 ms
//! in all. `scripts/cpu_floor.c` measures the same in C.

use std::time::{Duration, Instant};

use super::simd::Isa;

/// A measured FMA peak.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FmaPeak {
    /// f32 GFLOP/s, all threads together (an FMA is 2 FLOP).
    pub gflops: f64,
    /// Threads measured at once: the pool the fast path runs on.
    pub threads: usize,
    /// The instruction set of the probe: the fast path's.
    pub isa: Isa,
}

/// Iterations per trial: 12·16·2·ITERS = 24.6 MFLOP with AVX-512, a tenth of a millisecond.
const ITERS: usize = 1 << 16;

/// Time each thread spends in trials.
const BUDGET: Duration = Duration::from_millis(50);

/// Measures the peak on `isa` (one of `Isa::available()`) with every thread of the current
/// rayon pool.
pub fn fma_peak(isa: Isa) -> FmaPeak {
    assert!(Isa::available().contains(&isa), "this CPU cannot run {isa:?}");
    let rates = rayon::broadcast(|_| {
        let start = Instant::now();
        let mut best = 0.0f64;
        // One untimed trial, so the core is at its vector clock before the timed ones.
        trial(isa);
        while start.elapsed() < BUDGET {
            let t0 = Instant::now();
            let flop = trial(isa);
            best = best.max(flop / t0.elapsed().as_secs_f64());
        }
        best
    });
    FmaPeak { gflops: rates.iter().sum::<f64>() / 1e9, threads: rates.len(), isa }
}

/// One trial's FMAs, returning the FLOP done.
fn trial(isa: Isa) -> f64 {
    match isa {
        // SAFETY: `fma_peak` checked that the CPU has `isa`.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { x86::chains512(ITERS) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2Fma => unsafe { x86::chains256(ITERS) },
        _ => portable(ITERS),
    }
}

/// Twelve chains of 8 lanes `a ← a·x + y`, which the compiler keeps in vector registers.
fn portable(iters: usize) -> f64 {
    let (x, y) = (std::hint::black_box(0.999f32), std::hint::black_box(0.001f32));
    let mut acc = [[0.0f32; 8]; 12];
    for (k, a) in acc.iter_mut().enumerate() {
        a.fill(k as f32);
    }
    for _ in 0..iters {
        for a in acc.iter_mut() {
            for v in a.iter_mut() {
                *v = *v * x + y;
            }
        }
    }
    std::hint::black_box(acc);
    (2 * 8 * 12 * iters) as f64
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU must have AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn chains512(iters: usize) -> f64 {
        let (x, y) = (_mm512_set1_ps(std::hint::black_box(0.999)), _mm512_set1_ps(std::hint::black_box(0.001)));
        let mut acc: [__m512; 12] = std::array::from_fn(|k| _mm512_set1_ps(k as f32));
        for _ in 0..iters {
            for a in acc.iter_mut() {
                *a = _mm512_fmadd_ps(*a, x, y);
            }
        }
        std::hint::black_box(acc);
        (2 * 16 * 12 * iters) as f64
    }

    /// # Safety
    /// The CPU must have AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn chains256(iters: usize) -> f64 {
        let (x, y) = (_mm256_set1_ps(std::hint::black_box(0.999)), _mm256_set1_ps(std::hint::black_box(0.001)));
        let mut acc: [__m256; 12] = std::array::from_fn(|k| _mm256_set1_ps(k as f32));
        for _ in 0..iters {
            for a in acc.iter_mut() {
                *a = _mm256_fmadd_ps(*a, x, y);
            }
        }
        std::hint::black_box(acc);
        (2 * 8 * 12 * iters) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The probe gives a positive, finite rate for every instruction set, from every thread of
    /// the pool. (Only that: the figures belong in docs/performance.md, and a loaded machine
    /// moves them.)
    #[test]
    fn the_probe_measures_every_thread() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        for isa in Isa::available() {
            let p = pool.install(|| fma_peak(isa));
            assert!(p.gflops.is_finite() && p.gflops > 0.0 && p.threads == 2 && p.isa == isa, "{p:?}");
        }
    }
}
