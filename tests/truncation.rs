//! Truncated BPTT (regular, randomized, segments) against the full reference and against a
//! direct computation written here: every loss term s is backpropagated on its own, and its
//! contribution to ∂L/∂h_t kept iff `keep(s, t)` (math indices: h_0 the initial state, loss
//! terms s = 1..T). That shares no code with the lane recursion under test.

// Index loops are the point here: each line reads like the equation it checks.
#![allow(clippy::needless_range_loop)]

use bptt::cpu::reference::{self, forward, loss_and_grad_o};
use bptt::cpu::segments::bptt_segments;
use bptt::cpu::truncated::{bptt_carry_scaled, bptt_truncated};
use bptt::model::{norm, rel_err};
use bptt::variant::segments::{segment_carry_scales, segment_lengths};
use bptt::variant::truncation::{Truncation, random_carry_scales};
use bptt::{Activation, BpttResult, Error, LossAt, LossFn, Problem, ProblemSpec, Shape, random_problem};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn problem(steps: usize, activation: Activation, loss: LossFn, loss_at: LossAt) -> Problem {
    let shape = Shape::new(steps, 3, 2, 5, 4).expect("shape");
    let spec = ProblemSpec {
        activation,
        loss,
        loss_at,
        bias: true,
        random_h0: true,
        seed: 21,
        // Above 1, so far-back terms are not negligible and a wrong cut shows.
        spectral_radius: Some(1.2),
        ..ProblemSpec::new(shape)
    };
    random_problem(&spec).expect("problem")
}

/// Every combination the tests sweep.
fn cases(steps: usize) -> Vec<(String, Problem)> {
    let mut v = Vec::new();
    for activation in [Activation::Identity, Activation::Tanh] {
        for loss in [LossFn::Mse, LossFn::Xent] {
            for loss_at in [LossAt::All, LossAt::Last] {
                let name = format!("{}/{}/{loss_at:?}", activation.name(), loss.name());
                v.push((name, problem(steps, activation, loss, loss_at)));
            }
        }
    }
    v
}

fn phi_prime(act: Activation, h: f64) -> f64 {
    match act {
        Activation::Identity => 1.0,
        Activation::Tanh => 1.0 - h * h,
        Activation::Relu => f64::from(h > 0.0),
    }
}

/// The gradients keeping loss term s's contribution to ∂L/∂h_t iff keep(s, t); `keep` must
/// hold on an interval t ∈ [t0, s] (both cuts tested here do).
fn direct(p: &Problem, keep: impl Fn(usize, usize) -> bool) -> BpttResult {
    let sh = p.shape;
    let (nt, nb, d, nh, q) = (sh.steps, sh.batch, sh.input, sh.hidden, sh.output);
    let w = &p.params;
    let fwd = forward(p);
    let (loss, go) = loss_and_grad_o(p, &fwd.o);
    // h_t for math t = 0..T, batch entry b.
    let h = |t: usize, b: usize| -> &[f64] {
        if t == 0 { &p.h0[b * nh..][..nh] } else { &fwd.h[((t - 1) * nb + b) * nh..][..nh] }
    };
    let mut grad_h = vec![0.0; nt * nb * nh]; // [t−1, b, i]
    let mut grad_a = vec![0.0; nt * nb * nh];
    let mut grad_h0 = vec![0.0; nb * nh];
    for s in 1..=nt {
        for b in 0..nb {
            let go_s = &go[((s - 1) * nb + b) * q..][..q];
            let mut ga_next: Vec<f64> = Vec::new();
            for t in (0..=s).rev() {
                // ∂L/∂h_0 = ∂L/∂a_1·w_hh takes what ∂L/∂a_1 kept.
                if !keep(s, t.max(1)) {
                    break;
                }
                let gh: Vec<f64> = (0..nh)
                    .map(|i| {
                        if t == s {
                            (0..q).map(|k| go_s[k] * w.w_qh[k * nh + i]).sum()
                        } else {
                            (0..nh).map(|j| ga_next[j] * w.w_hh[j * nh + i]).sum()
                        }
                    })
                    .collect();
                if t == 0 {
                    grad_h0[b * nh..][..nh].iter_mut().zip(&gh).for_each(|(a, g)| *a += g);
                    break;
                }
                let ga: Vec<f64> = (0..nh).map(|i| gh[i] * phi_prime(p.activation, h(t, b)[i])).collect();
                let at = ((t - 1) * nb + b) * nh;
                for i in 0..nh {
                    grad_h[at + i] += gh[i];
                    grad_a[at + i] += ga[i];
                }
                ga_next = ga;
            }
        }
    }
    let mut g = BpttResult {
        loss,
        grad_w_hx: vec![0.0; nh * d],
        grad_w_hh: vec![0.0; nh * nh],
        grad_w_qh: vec![0.0; q * nh],
        grad_b_h: Some(vec![0.0; nh]),
        grad_b_q: Some(vec![0.0; q]),
        grad_h0,
        grad_h_norm: (0..nt).map(|t| norm(&grad_h[t * nb * nh..][..nb * nh])).collect(),
        h: Vec::new(),
        o: Vec::new(),
    };
    for t in 1..=nt {
        for b in 0..nb {
            let row = (t - 1) * nb + b;
            let ga = &grad_a[row * nh..][..nh];
            let x = &p.x[row * d..][..d];
            let go_t = &go[row * q..][..q];
            for i in 0..nh {
                for j in 0..d {
                    g.grad_w_hx[i * d + j] += ga[i] * x[j];
                }
                for j in 0..nh {
                    g.grad_w_hh[i * nh + j] += ga[i] * h(t - 1, b)[j];
                }
                g.grad_b_h.as_mut().unwrap()[i] += ga[i];
            }
            for k in 0..q {
                for i in 0..nh {
                    g.grad_w_qh[k * nh + i] += go_t[k] * h(t, b)[i];
                }
                g.grad_b_q.as_mut().unwrap()[k] += go_t[k];
            }
        }
    }
    g
}

/// Every result tensor within `tol` (relative, or absolute where the expected one is zero).
#[track_caller]
fn assert_grads_close(what: &str, got: &BpttResult, want: &BpttResult, tol: f64) -> f64 {
    let mut worst: f64 = 0.0;
    for ((name, a), (_, b)) in got.tensors().into_iter().zip(want.tensors()) {
        let e = rel_err(a, b);
        assert!(e <= tol, "{what}: {name} differs by {e:.2e}");
        worst = worst.max(e);
    }
    worst
}

const T: usize = 9;

#[test]
fn regular_truncation_at_t_or_more_is_full_bptt_bit_for_bit() {
    for (name, p) in cases(T) {
        let full = reference::bptt(&p);
        for k in [T, T + 1, T + 5, usize::MAX - 1] {
            let g = bptt_truncated(&p, Truncation::Regular(k)).expect("truncated");
            assert_eq!(g, full, "{name}, K = {k}");
        }
        // K = T − 1 drops the last loss term's path to h_1 (and so to h_0).
        let g = bptt_truncated(&p, Truncation::Regular(T - 1)).expect("truncated");
        assert!(rel_err(&g.grad_h0, &full.grad_h0) > 1e-9, "{name}: K = T − 1 must cut something");
    }
}

#[test]
fn regular_truncation_matches_the_direct_cut() {
    let mut worst: f64 = 0.0;
    for (name, p) in cases(T) {
        let full = reference::bptt(&p);
        for k in [1, 2, 3, T - 1] {
            let g = bptt_truncated(&p, Truncation::Regular(k)).expect("truncated");
            let want = direct(&p, |s, t| s - t < k);
            worst = worst.max(assert_grads_close(&format!("{name}, K = {k}"), &g, &want, 1e-12));
            // A real cut: grad_w_hh differs from the full gradient.
            assert!(rel_err(&g.grad_w_hh, &full.grad_w_hh) > 1e-6, "{name}, K = {k}");
        }
    }
    println!("regular truncation vs direct cut: worst relative error {worst:.1e}");
    let p = problem(T, Activation::Tanh, LossFn::Mse, LossAt::All);
    assert!(matches!(bptt_truncated(&p, Truncation::Regular(0)), Err(Error::Invalid(_))));
}

#[test]
fn regular_truncation_at_one_is_the_gradient_without_recurrent_path() {
    // No recurrent path: ∂L/∂h_t = ∂L/∂o_t·w_qh, ∂L/∂a_t = ∂L/∂h_t ⊙ φ'(a_t), and
    // ∂L/∂h_0 = ∂L/∂a_1·w_hh from that ∂L/∂a_1 (the model's formula).
    for (name, p) in cases(T) {
        let sh = p.shape;
        let (nb, d, nh, q) = (sh.batch, sh.input, sh.hidden, sh.output);
        let w = &p.params;
        let fwd = forward(&p);
        let (_, go) = loss_and_grad_o(&p, &fwd.o);
        let mut grad_w_hx = vec![0.0; nh * d];
        let mut grad_w_hh = vec![0.0; nh * nh];
        let mut grad_h_norm = vec![0.0; T];
        let mut grad_a_1 = vec![0.0; nb * nh];
        for t in 0..T {
            let mut sq = 0.0;
            for b in 0..nb {
                let row = t * nb + b;
                for i in 0..nh {
                    let gh: f64 = (0..q).map(|k| go[row * q + k] * w.w_qh[k * nh + i]).sum();
                    sq += gh * gh;
                    let ga = gh * phi_prime(p.activation, fwd.h[row * nh + i]);
                    if t == 0 {
                        grad_a_1[b * nh + i] = ga;
                    }
                    for j in 0..d {
                        grad_w_hx[i * d + j] += ga * p.x[row * d + j];
                    }
                    for j in 0..nh {
                        let h_prev = if t == 0 { p.h0[b * nh + j] } else { fwd.h[(row - nb) * nh + j] };
                        grad_w_hh[i * nh + j] += ga * h_prev;
                    }
                }
            }
            grad_h_norm[t] = sq.sqrt();
        }
        let g = bptt_truncated(&p, Truncation::Regular(1)).expect("truncated");
        assert!(rel_err(&g.grad_w_hx, &grad_w_hx) < 1e-13, "{name}");
        assert!(rel_err(&g.grad_w_hh, &grad_w_hh) < 1e-13, "{name}");
        assert!(rel_err(&g.grad_h_norm, &grad_h_norm) < 1e-13, "{name}");
        let grad_h0: Vec<f64> = (0..nb * nh)
            .map(|bi| {
                let (b, i) = (bi / nh, bi % nh);
                (0..nh).map(|j| grad_a_1[b * nh + j] * w.w_hh[j * nh + i]).sum()
            })
            .collect();
        assert!(rel_err(&g.grad_h0, &grad_h0) < 1e-13, "{name}");
        // The output path is never truncated.
        assert_eq!(g.grad_w_qh, reference::bptt(&p).grad_w_qh, "{name}");
    }
}

#[test]
fn random_carry_scales_follow_the_documented_draws() {
    let (p, seed) = (0.3, 42);
    let scales = random_carry_scales(2000, p, seed).expect("scales");
    let kept = 1.0 / (1.0 - p);
    assert!(scales.iter().all(|&c| c == 0.0 || c == kept));
    // The i-th draw u of ChaCha8(seed) decides c_{T−1−i}: cut iff u < p.
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for t in (0..2000).rev() {
        let u: f64 = rng.random();
        assert_eq!(scales[t], if u < p { 0.0 } else { kept }, "t = {t}");
    }
    // So shorter sequences share the cuts counted from the end.
    assert_eq!(random_carry_scales(5, p, seed).unwrap()[..], scales[1995..]);
    // About a fraction p are cuts: binomial(2000, 0.3) has σ ≈ 20.5; allow 4σ.
    let cuts = scales.iter().filter(|&&c| c == 0.0).count();
    assert!((cuts as f64 - 600.0).abs() < 82.0, "{cuts} cuts of 2000");
    assert_ne!(random_carry_scales(64, p, 43).unwrap(), scales[1936..]);
    assert_eq!(random_carry_scales(7, 0.0, 1).unwrap(), vec![1.0; 7]);
    for bad in [-0.1, 1.0, f64::NAN] {
        assert!(matches!(random_carry_scales(4, bad, 0), Err(Error::Invalid(_))));
    }
}

#[test]
fn random_truncation_uses_the_published_scales() {
    for (name, p) in cases(T) {
        // p = 0 never cuts: full BPTT exactly.
        let g = bptt_truncated(&p, Truncation::Random { p: 0.0, seed: 3 }).unwrap();
        assert_eq!(g, reference::bptt(&p), "{name}");
        let g = bptt_truncated(&p, Truncation::Random { p: 0.4, seed: 3 }).unwrap();
        let scales = random_carry_scales(T, 0.4, 3).unwrap();
        assert_eq!(g, bptt_carry_scaled(&p, &scales).unwrap(), "{name}");
    }
}

#[test]
fn random_truncation_is_unbiased_exactly() {
    // Every one of the 2^T cut patterns, weighted by its probability: the expectation of the
    // randomized gradient, which must be the full gradient to rounding.
    let (steps, p_cut) = (7, 0.35);
    for (name, p) in cases(steps) {
        let full = reference::bptt(&p);
        let mut mean = vec![0.0; full.grad_w_hh.len()];
        let mut mean_hx = vec![0.0; full.grad_w_hx.len()];
        let mut mean_h0 = vec![0.0; full.grad_h0.len()];
        for pattern in 0..1u32 << steps {
            let scales: Vec<f64> =
                (0..steps).map(|t| if pattern >> t & 1 == 1 { 0.0 } else { 1.0 / (1.0 - p_cut) }).collect();
            let cuts = pattern.count_ones() as i32;
            let prob = p_cut.powi(cuts) * (1.0 - p_cut).powi(steps as i32 - cuts);
            let g = bptt_carry_scaled(&p, &scales).unwrap();
            mean.iter_mut().zip(&g.grad_w_hh).for_each(|(m, v)| *m += prob * v);
            mean_hx.iter_mut().zip(&g.grad_w_hx).for_each(|(m, v)| *m += prob * v);
            mean_h0.iter_mut().zip(&g.grad_h0).for_each(|(m, v)| *m += prob * v);
        }
        assert!(rel_err(&mean, &full.grad_w_hh) < 1e-12, "{name}: grad_w_hh");
        assert!(rel_err(&mean_hx, &full.grad_w_hx) < 1e-12, "{name}: grad_w_hx");
        assert!(rel_err(&mean_h0, &full.grad_h0) < 1e-12, "{name}: grad_h0");
    }
}

#[test]
fn random_truncation_mean_over_seeds_approaches_full() {
    // Seeds 0..4000 (fixed, so deterministic). With N samples, ‖mean − full‖² has expectation
    // Σ Var/N; the bound is 3× its square root, from the samples' own variance. Without the
    // 1/(1−p) rescaling (a biased estimator) the mean must miss by several times the bound.
    let p = problem(8, Activation::Tanh, LossFn::Mse, LossAt::All);
    let full = reference::bptt(&p).grad_w_hh;
    let (n, p_cut) = (4000, 0.3);
    let mut sum = vec![0.0; full.len()];
    let mut sum_sq = vec![0.0; full.len()];
    let mut sum_unscaled = vec![0.0; full.len()];
    for seed in 0..n {
        let scales = random_carry_scales(8, p_cut, seed).unwrap();
        let g = bptt_carry_scaled(&p, &scales).unwrap().grad_w_hh;
        for i in 0..full.len() {
            sum[i] += g[i];
            sum_sq[i] += g[i] * g[i];
        }
        let plain: Vec<f64> = scales.iter().map(|&c| if c == 0.0 { 0.0 } else { 1.0 }).collect();
        let g = bptt_carry_scaled(&p, &plain).unwrap().grad_w_hh;
        sum_unscaled.iter_mut().zip(&g).for_each(|(s, v)| *s += v);
    }
    let nf = n as f64;
    let mean: Vec<f64> = sum.iter().map(|s| s / nf).collect();
    let var_sum: f64 = (0..full.len()).map(|i| sum_sq[i] / nf - mean[i] * mean[i]).sum();
    let bound = 3.0 * (var_sum / nf).sqrt();
    let miss = norm(&mean.iter().zip(&full).map(|(a, b)| a - b).collect::<Vec<_>>());
    let unscaled: Vec<f64> = sum_unscaled.iter().map(|s| s / nf).collect();
    let miss_unscaled = norm(&unscaled.iter().zip(&full).map(|(a, b)| a - b).collect::<Vec<_>>());
    println!(
        "‖full‖ {:.3e}: ‖mean − full‖ {miss:.3e} (bound {bound:.3e}); one sample's std {:.3e}; \
         unscaled cuts miss by {miss_unscaled:.3e}",
        norm(&full),
        var_sum.sqrt()
    );
    assert!(miss < bound, "{miss} ≥ {bound}");
    assert!(miss_unscaled > 3.0 * bound, "the test must tell a biased estimator apart");
    assert!(var_sum.sqrt() > 10.0 * bound, "single samples are far from the mean");
}

#[test]
fn segment_lengths_are_balanced_first_ones_longer() {
    assert_eq!(segment_lengths(10, 3).unwrap(), vec![4, 3, 3]);
    assert_eq!(segment_lengths(10, 4).unwrap(), vec![3, 3, 2, 2]);
    assert_eq!(segment_lengths(5, 5).unwrap(), vec![1; 5]);
    assert_eq!(segment_lengths(7, 1).unwrap(), vec![7]);
    assert!(matches!(segment_lengths(5, 0), Err(Error::Invalid(_))));
    assert!(matches!(segment_lengths(5, 6), Err(Error::Invalid(_))));
    assert_eq!(segment_carry_scales(10, 3).unwrap(), vec![1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0]);
    let p = problem(4, Activation::Identity, LossFn::Mse, LossAt::All);
    assert!(matches!(bptt_segments(&p, 0), Err(Error::Invalid(_))));
    assert!(matches!(bptt_segments(&p, 5), Err(Error::Invalid(_))));
}

#[test]
fn one_segment_is_full_bptt() {
    for (name, p) in cases(T) {
        assert_eq!(bptt_segments(&p, 1).unwrap(), reference::bptt(&p), "{name}");
    }
}

#[test]
fn segments_cut_the_gradient_at_their_boundaries() {
    let mut worst: f64 = 0.0;
    for (name, p) in cases(T) {
        let full = reference::bptt(&p);
        for n in [2, 3, 4, T] {
            let g = bptt_segments(&p, n).unwrap();
            // Segment of math step t ≥ 1 (h_0 belongs to the first).
            let lengths = segment_lengths(T, n).unwrap();
            let segment_of = |t: usize| {
                let mut end = 0;
                lengths
                    .iter()
                    .position(|len| {
                        end += len;
                        t.max(1) <= end
                    })
                    .unwrap()
            };
            let want = direct(&p, |s, t| segment_of(s) == segment_of(t));
            let what = format!("{name}, {n} segments");
            worst = worst.max(assert_grads_close(&what, &g, &want, 1e-12));
            let lanes = bptt_carry_scaled(&p, &segment_carry_scales(T, n).unwrap()).unwrap();
            worst = worst.max(assert_grads_close(&what, &g, &lanes, 1e-12));
            // The forward is the full one; L is the same sum, regrouped by segment.
            assert!(g.h == full.h && g.o == full.o, "{what}: forward states");
            assert!((g.loss - full.loss).abs() <= 1e-14 * full.loss, "{what}: loss");
            assert!(rel_err(&g.grad_w_hh, &full.grad_w_hh) > 1e-6, "{what}: a real cut");
        }
        // One-step segments keep only the output path, like K = 1 (but h_0 still gets the
        // first step's term, as it belongs to the first segment).
        let g = bptt_segments(&p, T).unwrap();
        let k1 = bptt_truncated(&p, Truncation::Regular(1)).unwrap();
        assert!(rel_err(&g.grad_w_hh, &k1.grad_w_hh) < 1e-12, "{name}");
        assert!(rel_err(&g.grad_h_norm, &k1.grad_h_norm) < 1e-12, "{name}");
    }
    println!("segments vs direct cut and vs lanes: worst relative error {worst:.1e}");
}
