//! The fast f32 CPU path against the f64 reference: every result tensor and the forward states,
//! relative error ≤ 1e-4 each, over a grid of shapes and every model option, on every
//! instruction set the machine has (`fast::Isa::available`: AVX-512, AVX2 + FMA and the portable
//! loops on an AVX-512 machine, so both SIMD code paths are tested there).

use bptt::cpu::fast::Isa;
use bptt::cpu::{fast, reference};
use bptt::model::rel_err;
use bptt::{Activation, BpttResult, LossAt, LossFn, ProblemSpec, Shape, random_problem};

const TOL: f64 = 1e-4;

fn check(spec: &ProblemSpec) {
    let p = random_problem(spec).unwrap();
    let want = reference::bptt(&p);
    for isa in Isa::available() {
        compare(&fast::bptt_with_isa(&p, isa), &want, &format!("{spec:?} on {isa:?}"));
    }
}

fn compare(got: &BpttResult, want: &BpttResult, case: &str) {
    let spec = case;
    let names: Vec<_> = got.tensors().iter().map(|(n, _)| *n).collect();
    let want_names: Vec<_> = want.tensors().iter().map(|(n, _)| *n).collect();
    assert_eq!(names, want_names, "{spec}: different result tensors");
    let mut pairs = got.tensors();
    pairs.push(("h", &got.h));
    pairs.push(("o", &got.o));
    let mut want_pairs = want.tensors();
    want_pairs.push(("h", &want.h));
    want_pairs.push(("o", &want.o));
    for ((name, a), (_, b)) in pairs.into_iter().zip(want_pairs) {
        let e = rel_err(a, b);
        assert!(e <= TOL, "{spec}: {name} rel_err {e:.3e} > {TOL:e}");
    }
}

#[test]
fn matches_reference_on_the_grid() {
    let mut seed = 0;
    for hidden in [1, 3, 33, 70] {
        for steps in [1, 5] {
            for batch in [1, 3] {
                for activation in [Activation::Identity, Activation::Tanh, Activation::Relu] {
                    for loss in [LossFn::Mse, LossFn::Xent] {
                        for bias in [false, true] {
                            for loss_at in [LossAt::All, LossAt::Last] {
                                // d ≠ q, so a swapped dimension cannot pass.
                                let shape = Shape::new(steps, batch, 5, hidden, 3).unwrap();
                                let mut spec = ProblemSpec::new(shape);
                                spec.activation = activation;
                                spec.loss = loss;
                                spec.bias = bias;
                                spec.loss_at = loss_at;
                                spec.seed = seed;
                                // Half the cases start from a random h0, so ∂L/∂w_hh is
                                // non-zero even at T = 1.
                                spec.random_h0 = seed % 2 == 1;
                                seed += 1;
                                check(&spec);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Big enough that each step is split over threads (run in pools of 2 and 3 threads, so the
/// split happens whatever the machine), with a hidden size that leaves a partial group of four
/// rows and uneven blocks. Batches of 2 (the dot kernel) and 9 (the tile kernel on AVX-512,
/// with a partial batch tile; 258 columns leave partial column tiles in every block).
#[test]
fn matches_reference_when_steps_are_split_over_threads() {
    for (threads, batch) in [(2, 2), (3, 2), (2, 9), (3, 9)] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        for activation in [Activation::Identity, Activation::Tanh, Activation::Relu] {
            let shape = Shape::new(4, batch, 7, 258, 6).unwrap();
            let mut spec = ProblemSpec::new(shape);
            spec.activation = activation;
            spec.loss = LossFn::Xent;
            spec.bias = true;
            spec.random_h0 = true;
            spec.seed = 42;
            pool.install(|| check(&spec));
        }
    }
}

/// Batches from 4 up take the tile kernel (on AVX-512): every size of the last batch tile, with
/// hidden sizes below one vector, inside one column tile and across two, every model option.
#[test]
fn matches_reference_with_batches_of_four_and_more() {
    let mut seed = 500;
    for hidden in [5, 33, 70] {
        for batch in [4, 5, 6, 7] {
            for activation in [Activation::Identity, Activation::Tanh] {
                for loss in [LossFn::Mse, LossFn::Xent] {
                    let mut spec = ProblemSpec::new(Shape::new(5, batch, 5, hidden, 3).unwrap());
                    spec.activation = activation;
                    spec.loss = loss;
                    spec.bias = seed % 2 == 0;
                    spec.random_h0 = true;
                    spec.seed = seed;
                    seed += 1;
                    check(&spec);
                }
            }
        }
    }
}

/// The default benchmark's shape in small: identity, mse, spectral radius near 1, longer T, so
/// f32 rounding over many steps is exercised.
#[test]
fn matches_reference_over_many_steps() {
    let mut spec = ProblemSpec::new(Shape::new(64, 1, 8, 96, 8).unwrap());
    spec.spectral_radius = Some(0.95);
    check(&spec);
}

/// A small spectral radius over many steps, scored at the last step only: ∂L/∂h_t shrinks by
/// about 0.3 per step back, so it passes through f32's subnormal range (which the fast path
/// flushes to zero) well before t = 0. ∂L/∂h0 itself (~1e-60) is below f32's range altogether:
/// there the fast path must give exact zeros; everything else must match as usual.
#[test]
fn matches_reference_when_gradients_vanish() {
    // Batches of 2 (the dot kernel) and 6 (the tile kernel).
    for batch in [2, 6] {
        let mut spec = ProblemSpec::new(Shape::new(120, batch, 4, 16, 5).unwrap());
        spec.spectral_radius = Some(0.3);
        spec.loss_at = LossAt::Last;
        spec.random_h0 = true;
        let p = random_problem(&spec).unwrap();
        let want = reference::bptt(&p);
        assert!(bptt::model::norm(&want.grad_h0) < f32::MIN_POSITIVE as f64);
        let tiny = want.grad_h_norm.iter().filter(|&&n| n < 1e-40).count();
        assert!(tiny > 10, "the case should reach below f32's range ({tiny} steps do)");
        for isa in Isa::available() {
            let got = fast::bptt_with_isa(&p, isa);
            assert!(got.grad_h0.iter().all(|&g| g == 0.0), "B = {batch} on {isa:?}");
            for ((name, a), (_, b)) in got.tensors().into_iter().zip(want.tensors()) {
                if name != "grad_h0" {
                    let e = rel_err(a, b);
                    assert!(e <= TOL, "B = {batch} on {isa:?}: {name} rel_err {e:.3e} > {TOL:e}");
                }
            }
        }
    }
}

/// The fast path reuses its scratch buffers between calls, without clearing them: a call whose
/// states and gradients overflow to ±inf and NaN must leave nothing behind that changes the next
/// call of the same shape (each buffer is written in full before it is read).
#[test]
fn a_call_after_one_that_overflowed_matches_the_reference() {
    let shape = Shape::new(40, 5, 5, 70, 3).unwrap();
    let mut wild = ProblemSpec::new(shape);
    wild.spectral_radius = Some(1e3);
    wild.random_h0 = true;
    let g = fast::bptt(&random_problem(&wild).unwrap());
    assert!(g.h.iter().any(|x| !x.is_finite()), "the first call should overflow");
    assert!(g.grad_w_hh.iter().any(|x| x.is_nan()), "the first call should leave NaN behind");
    let mut spec = ProblemSpec::new(shape);
    spec.seed = 7;
    check(&spec);
}

/// Every tensor of the result as f64 bits, h and o included.
fn bits(r: &BpttResult) -> Vec<u64> {
    let mut all: Vec<&[f64]> = r.tensors().into_iter().map(|(_, v)| v).collect();
    all.extend([&r.h[..], &r.o[..]]);
    all.into_iter().flatten().map(|x| x.to_bits()).collect()
}

/// The x86-64 machines CI and developers use have AVX2 + FMA at least: there the suite must
/// run a vector instruction set besides the portable loops, or the SIMD paths go untested.
#[test]
#[cfg(target_arch = "x86_64")]
fn the_suite_runs_a_simd_path_besides_the_portable_one() {
    let isas = Isa::available();
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        assert!(isas.contains(&Isa::Avx2Fma), "{isas:?}");
    }
    if std::arch::is_x86_feature_detected!("avx512f") {
        assert_eq!(isas, [Isa::Avx512, Isa::Avx2Fma, Isa::Portable]);
    }
    assert_eq!(isas.last(), Some(&Isa::Portable));
}

/// The same problem twice gives the same bits (every sum has a fixed order, whichever thread
/// does it), on every instruction set, with the tile kernel (B = 9) and the dot kernel (B = 2),
/// split over threads.
#[test]
fn results_are_the_same_bits_run_to_run() {
    for batch in [2, 9] {
        let mut spec = ProblemSpec::new(Shape::new(6, batch, 7, 258, 6).unwrap());
        spec.activation = Activation::Tanh;
        spec.loss = LossFn::Xent;
        spec.bias = true;
        spec.random_h0 = true;
        let p = random_problem(&spec).unwrap();
        for isa in Isa::available() {
            for threads in [2, 3] {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                let first = pool.install(|| bits(&fast::bptt_with_isa(&p, isa)));
                for _ in 0..3 {
                    let again = pool.install(|| bits(&fast::bptt_with_isa(&p, isa)));
                    assert!(first == again, "B = {batch} on {isa:?}, {threads} threads: runs differ");
                }
            }
        }
    }
}

/// From a batch of 4, every product runs in the register tile, whose sums are the same
/// sequence of FMAs on AVX-512 and AVX2 (same blocking of k, lanes only across columns): the
/// two paths give the same bits, a check of each against the other far tighter than the
/// reference's tolerance.
#[test]
fn avx512_and_avx2_give_the_same_bits_from_batches_of_four() {
    let isas = Isa::available();
    if !(isas.contains(&Isa::Avx512) && isas.contains(&Isa::Avx2Fma)) {
        eprintln!(
            "not run: this CPU lacks AVX-512 or AVX2 ({isas:?}); each path is still checked against the reference"
        );
        return;
    }
    for (batch, hidden) in [(4, 70), (9, 258), (32, 200)] {
        let mut spec = ProblemSpec::new(Shape::new(7, batch, 5, hidden, 3).unwrap());
        spec.activation = Activation::Tanh;
        spec.bias = true;
        spec.random_h0 = true;
        let p = random_problem(&spec).unwrap();
        let (wide, narrow) = (fast::bptt_with_isa(&p, Isa::Avx512), fast::bptt_with_isa(&p, Isa::Avx2Fma));
        assert!(bits(&wide) == bits(&narrow), "B = {batch}, h = {hidden}: AVX-512 and AVX2 differ");
    }
}

/// The fast path's tanh (a rational approximation) against f64's, over the range where it
/// bends and beyond the clamp, at zero, and for NaN.
#[test]
fn tanh_f32_is_within_a_few_ulp() {
    let mut worst = 0.0f64;
    for i in -200_000..=200_000 {
        let x = i as f32 * 1e-4; // -20 .. 20
        let want = (x as f64).tanh();
        let got = bptt::model::tanh_f32(x) as f64;
        let err = (got - want).abs() / want.abs().max(f64::MIN_POSITIVE);
        worst = worst.max(if want == 0.0 { got.abs() } else { err });
    }
    assert!(worst < 1e-6, "largest relative error {worst:e}");
    assert_eq!(bptt::model::tanh_f32(0.0), 0.0);
    assert_eq!(bptt::model::tanh_f32(f32::INFINITY), 1.0);
    assert!(bptt::model::tanh_f32(f32::NAN).is_nan());
}

/// Truncation on the fast path against the f64 truncated reference (`cpu::truncated`), the
/// oracle for both kinds: regular K (lanes of ∂L/∂a, with the zero and saturated lanes
/// skipped) and randomised cuts (per-step carry scales), for a loss at every step and at the
/// last step only, every activation, both kernels (B = 2 dot products, B = 5 the tile kernel
/// on AVX-512), one and two threads per step (h = 130 in a pool of two splits the columns).
#[test]
fn truncation_matches_the_truncated_reference() {
    use bptt::Truncation;
    use bptt::cpu::truncated;
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    let mut seed = 100;
    for (hidden, steps) in [(7, 9), (130, 12)] {
        for batch in [2, 5] {
            for activation in [Activation::Identity, Activation::Tanh, Activation::Relu] {
                for loss_at in [LossAt::All, LossAt::Last] {
                    let shape = Shape::new(steps, batch, 4, hidden, 3).unwrap();
                    let mut spec = ProblemSpec::new(shape);
                    (spec.activation, spec.loss_at, spec.bias, spec.seed) = (activation, loss_at, true, seed);
                    spec.loss = if seed % 2 == 0 { LossFn::Mse } else { LossFn::Xent };
                    spec.random_h0 = true;
                    spec.spectral_radius = Some(1.1);
                    seed += 1;
                    let p = random_problem(&spec).unwrap();
                    let kinds = [
                        Truncation::Regular(1),
                        Truncation::Regular(3),
                        Truncation::Regular(steps - 1),
                        Truncation::Regular(steps),
                        Truncation::Regular(steps + 5),
                        Truncation::Random { p: 0.3, seed: 1 },
                        Truncation::Random { p: 0.6, seed: 2 },
                        Truncation::Random { p: 0.0, seed: 3 },
                    ];
                    for trunc in kinds {
                        let want = truncated::bptt_truncated(&p, trunc).unwrap();
                        let got = pool.install(|| fast::bptt_truncated(&p, trunc)).unwrap();
                        for ((name, a), (_, b)) in got.tensors().into_iter().zip(want.tensors()) {
                            let e = rel_err(a, b);
                            assert!(e <= TOL, "{spec:?} {trunc:?}: {name} rel_err {e:.3e} > {TOL:e}");
                        }
                        // A truncated ∂L/∂h_t is exactly 0 where no loss term reaches it.
                        for (t, (g, r)) in got.grad_h_norm.iter().zip(&want.grad_h_norm).enumerate() {
                            assert_eq!(*g == 0.0, *r == 0.0, "{spec:?} {trunc:?}: ‖∂L/∂h_{}‖ {g} vs {r}", t + 1);
                        }
                    }
                    // The cuts themselves: any carry scales, zeros and ones included.
                    let scales: Vec<f64> = (0..steps).map(|t| [0.0, 1.0, 2.5, 0.5][t % 4]).collect();
                    let want = truncated::bptt_carry_scaled(&p, &scales).unwrap();
                    let got = fast::bptt_carry_scaled(&p, &scales).unwrap();
                    for ((name, a), (_, b)) in got.tensors().into_iter().zip(want.tensors()) {
                        let e = rel_err(a, b);
                        assert!(e <= TOL, "{spec:?} carry {scales:?}: {name} rel_err {e:.3e} > {TOL:e}");
                    }
                }
            }
        }
    }
    // Wrong inputs are errors, not panics.
    let p = random_problem(&ProblemSpec::new(Shape::new(4, 1, 2, 3, 2).unwrap())).unwrap();
    assert!(fast::bptt_truncated(&p, Truncation::Regular(0)).is_err());
    assert!(fast::bptt_carry_scaled(&p, &[1.0; 3]).is_err());
    assert!(fast::bptt_carry_scaled(&p, &[1.0, f64::NAN, 1.0, 1.0]).is_err());
}
