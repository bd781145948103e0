//! The reach profile ‖∂L_T/∂h_t‖, its fitted growth factor, the sentence describing it, and
//! gradient clipping by the global norm.

// Index loops are the point here: each line reads like the equation it checks.
#![allow(clippy::needless_range_loop)]

use bptt::clip::{clip_grads, global_grad_norm};
use bptt::cpu::reference;
use bptt::diagnostics::{ReachCut, describe_profile, fit_growth_factor, reach_profile};
use bptt::{Activation, BpttResult, Error, LossAt, LossFn, Problem, ProblemSpec, Shape, random_problem};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

fn problem(steps: usize, hidden: usize, activation: Activation, loss: LossFn, seed: u64) -> Problem {
    let shape = Shape::new(steps, 2, 3, hidden, 4).expect("shape");
    let spec = ProblemSpec { activation, loss, seed, bias: true, random_h0: true, ..ProblemSpec::new(shape) };
    random_problem(&spec).expect("problem")
}

/// A random orthogonal Q [n,n] (Gram–Schmidt on a Gaussian matrix, twice for accuracy).
fn orthogonal(n: usize, seed: u64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut cols: Vec<Vec<f64>> = (0..n).map(|_| (0..n).map(|_| StandardNormal.sample(&mut rng)).collect()).collect();
    for j in 0..n {
        for _ in 0..2 {
            for k in 0..j {
                let dot: f64 = (0..n).map(|i| cols[j][i] * cols[k][i]).sum();
                for i in 0..n {
                    cols[j][i] -= dot * cols[k][i];
                }
            }
        }
        let norm = cols[j].iter().map(|x| x * x).sum::<f64>().sqrt();
        cols[j].iter_mut().for_each(|x| *x /= norm);
    }
    // Row-major Q with the vectors as columns.
    let mut q = vec![0.0; n * n];
    for (j, col) in cols.iter().enumerate() {
        for i in 0..n {
            q[i * n + j] = col[i];
        }
    }
    q
}

/// A normal matrix Q·D·Qᵀ whose eigenvalues come in pairs r_k·e^{±iθ_k}: D is block diagonal
/// with 2×2 blocks r_k·rotation(θ_k). `radii` has n/2 entries; the spectral radius is their max.
fn normal_matrix(radii: &[f64], seed: u64) -> Vec<f64> {
    let n = 2 * radii.len();
    let q = orthogonal(n, seed);
    let mut d = vec![0.0; n * n];
    for (k, &r) in radii.iter().enumerate() {
        let theta = 0.3 + 0.7 * k as f64;
        let (c, s) = (theta.cos(), theta.sin());
        let i = 2 * k;
        d[i * n + i] = r * c;
        d[i * n + i + 1] = -r * s;
        d[(i + 1) * n + i] = r * s;
        d[(i + 1) * n + i + 1] = r * c;
    }
    // Q·D·Qᵀ
    let mut qd = vec![0.0; n * n];
    for i in 0..n {
        for k in 0..n {
            for j in 0..n {
                qd[i * n + j] += q[i * n + k] * d[k * n + j];
            }
        }
    }
    let mut w = vec![0.0; n * n];
    for i in 0..n {
        for k in 0..n {
            for j in 0..n {
                w[i * n + j] += qd[i * n + k] * q[j * n + k];
            }
        }
    }
    w
}

const T: usize = 64;
const H: usize = 16;

/// The fitted factor of the reach profile for identity activation and w_hh = `w_hh`; also the
/// factor fitted to the whole profile, transient included (the skip disabled by hand).
fn fitted(w_hh: Vec<f64>, seed: u64) -> (f64, f64) {
    let mut p = problem(T, H, Activation::Identity, LossFn::Mse, seed);
    p.params.w_hh = w_hh;
    let profile = reach_profile(&p);
    let factor = fit_growth_factor(&profile).expect("a fit");
    // Padding with T/3 entries that the ⌊len/4⌋ skip drops makes it fit all T original ones.
    let mut padded = profile.clone();
    padded.extend(std::iter::repeat_n(f64::NAN, T / 3));
    let whole = fit_growth_factor(&padded).expect("a fit");
    (factor, whole)
}

#[test]
fn growth_factor_is_the_radius_for_a_scaled_orthogonal_w_hh() {
    // w_hh = ρ·Q: every |λ| = ρ and ‖(w_hhᵀ)^k v‖ = ρ^k‖v‖ exactly, so the profile is exactly
    // geometric and the fit returns ρ to rounding.
    for (i, &rho) in [0.5, 0.9, 1.1].iter().enumerate() {
        let w_hh: Vec<f64> = orthogonal(H, 100 + i as u64).iter().map(|x| rho * x).collect();
        let (factor, _) = fitted(w_hh, 3);
        println!("ρ·Q, ρ = {rho}: fitted factor {factor:.15}");
        assert!((factor - rho).abs() <= 1e-10 * rho, "ρ = {rho}: {factor}");
    }
}

#[test]
fn growth_factor_tracks_the_radius_of_a_normal_w_hh_with_spread_eigenvalues() {
    // Eigenvalue moduli ρ and 7 more pairs spread over [0.2ρ, 0.7ρ]. ‖(w_hhᵀ)^k v‖² =
    // Σ_i c_i² r_i^{2k} (Q·D·Qᵀ is normal), so log‖·‖ = k·log ρ + ½·log(c_1² + Σ c_i² (r_i/ρ)^{2k}):
    // the second term is the transient, whose slope is at most |ln 0.7|·(c_i/c_1)²·0.49^k.
    // The fit skips the ⌊T/4⌋ = 16 steps nearest T, where 0.49^16 ≈ 1e-5; with weight ratios
    // (c_i/c_1)² up to ~10 that moves the factor by far less than 1e-4 of ρ, the tolerance.
    // Fitting the whole profile instead errs by ~2e-3 (asserted far worse: the skip matters).
    for (i, &rho) in [0.5, 0.9, 1.1].iter().enumerate() {
        let radii: Vec<f64> =
            (0..H / 2).map(|k| if k == 3 { rho } else { rho * (0.2 + 0.5 * k as f64 / 7.0) }).collect();
        let w_hh = normal_matrix(&radii, 200 + i as u64);
        let radius = bptt::linalg::spectral_radius(&w_hh, H);
        assert!((radius - rho).abs() < 1e-6, "built radius {radius} ≠ {rho}");
        let (factor, whole) = fitted(w_hh, 5);
        let err = (factor - rho).abs() / rho;
        let err_whole = (whole - rho).abs() / rho;
        println!(
            "spread spectrum, ρ = {rho}: fitted {factor:.5} (rel. err {err:.1e}); \
             fitting the transient too: {whole:.5} (rel. err {err_whole:.1e})"
        );
        assert!(err < 1e-4, "ρ = {rho}: fitted {factor}");
        // The skip is what makes it accurate: the transient biases the whole-profile fit.
        assert!(err_whole > 1e-3 && err_whole > 100.0 * err, "ρ = {rho}: {whole} vs {factor}");
    }
}

#[test]
fn reach_profile_is_the_unrolled_last_step_gradient() {
    // φ = identity: ∂L_T/∂h_t = (w_hhᵀ)^{T−t} w_qhᵀ ∂L_T/∂o_T, per batch entry, with
    // ∂L_T/∂o_T = (o_T − y_T)/B for mse. Computed here from the forward's o_T alone.
    let (steps, hidden) = (12, 5);
    let p = problem(steps, hidden, Activation::Identity, LossFn::Mse, 11);
    let (nb, q) = (p.shape.batch, p.shape.output);
    let fwd = reference::forward(&p);
    let bptt::Targets::Mse(y) = &p.targets else { unreachable!() };
    let mut g: Vec<Vec<f64>> = (0..nb)
        .map(|b| {
            let row = ((steps - 1) * nb + b) * q;
            (0..hidden)
                .map(|i| {
                    (0..q).map(|k| (fwd.o[row + k] - y[row + k]) / nb as f64 * p.params.w_qh[k * hidden + i]).sum()
                })
                .collect()
        })
        .collect();
    let mut want = vec![0.0; steps];
    for t in (0..steps).rev() {
        want[t] = g.iter().flatten().map(|x| x * x).sum::<f64>().sqrt();
        // One step back: v ← w_hhᵀ v.
        for v in g.iter_mut() {
            *v = (0..hidden).map(|i| (0..hidden).map(|j| v[j] * p.params.w_hh[j * hidden + i]).sum()).collect();
        }
    }
    let got = reach_profile(&p);
    let err = bptt::model::rel_err(&got, &want);
    println!("reach profile vs unrolled: rel. err {err:.1e}");
    assert!(err < 1e-12, "{err}");
}

#[test]
fn reach_profile_is_grad_h_norm_with_loss_at_last() {
    for activation in [Activation::Identity, Activation::Tanh] {
        for loss in [LossFn::Mse, LossFn::Xent] {
            let p = problem(20, 6, activation, loss, 13);
            let last = reference::bptt(&p.clone().with_loss_at(LossAt::Last));
            // Exactly equal, whatever loss_at the problem itself has.
            assert_eq!(reach_profile(&p), last.grad_h_norm);
            assert_eq!(reach_profile(&p.clone().with_loss_at(LossAt::Last)), last.grad_h_norm);
            // And not the all-steps loss's norms (the profile really changed the loss).
            let all = reference::bptt(&p).grad_h_norm;
            assert!(bptt::model::rel_err(&all, &last.grad_h_norm) > 1e-3);
        }
    }
}

#[test]
fn growth_factor_fit_skips_what_it_says() {
    // 4·0.8^{T−t} for T = 20: exactly geometric, factor 0.8.
    let geometric: Vec<f64> = (1..=20).map(|t| 4.0 * 0.8f64.powi(20 - t)).collect();
    let f = fit_growth_factor(&geometric).unwrap();
    assert!((f - 0.8).abs() < 1e-12, "{f}");
    // Zeros, NaN and Inf anywhere are skipped; so is anything in the last ⌊20/4⌋ = 5 entries.
    let mut holes = geometric.clone();
    holes[0] = 0.0;
    holes[3] = f64::NAN;
    holes[7] = f64::INFINITY;
    for v in &mut holes[15..] {
        *v *= 1e6;
    }
    let f = fit_growth_factor(&holes).unwrap();
    assert!((f - 0.8).abs() < 1e-12, "{f}");
    // Growing back in time: factor > 1.
    let growing: Vec<f64> = (1..=20).map(|t| 1.25f64.powi(20 - t)).collect();
    assert!((fit_growth_factor(&growing).unwrap() - 1.25).abs() < 1e-12);
    // Too few usable points.
    assert_eq!(fit_growth_factor(&[]), None);
    assert_eq!(fit_growth_factor(&[1.0]), None);
    assert_eq!(fit_growth_factor(&[0.0, f64::NAN, 3.0]), None);
}

/// The reach line's reading comes from the profile it follows: the ratio of its ends and the
/// mean factor per step between them are the printed numbers' own.
#[test]
fn describe_profile_reads_the_printed_profile() {
    // 0.001315 at t = 1 and 17.17 at t = T = 64: 7.7e-5 of its size, ×0.86 per step.
    let mut profile: Vec<f64> = (0..64).map(|t| 17.17 * (0.001315f64 / 17.17).powf((63 - t) as f64 / 63.0)).collect();
    profile[0] = 0.001315;
    assert_eq!(
        describe_profile(&profile, ReachCut::None, Some(0.8612), None),
        "the last step's gradient shrinks ×0.86 per step back in time: at t = 1 it is 7.7e-5 of its size at t = T \
         (63 steps back); fitted long-run factor ×0.86"
    );
    let growing: Vec<f64> = (0..11).map(|t| 1.1f64.powi(10 - t)).collect();
    assert_eq!(
        describe_profile(&growing, ReachCut::None, None, None),
        "the last step's gradient grows ×1.10 per step back in time: at t = 1 it is 2.6 times its size at t = T \
         (10 steps back)"
    );
    // Truncated K = 3 of T = 6: exactly 0 for t ≤ 3, and the reading of t = 4..6.
    let cut = [0.0, 0.0, 0.0, 0.25, 0.5, 1.0];
    assert_eq!(
        describe_profile(&cut, ReachCut::Steps(3), Some(0.5), None),
        "truncated K = 3 steps back: ‖∂L_T/∂h_t‖ is exactly 0 for t ≤ 3 (T − K), where no loss term reaches; within \
         the K steps it reaches, the last step's gradient shrinks ×0.50 per step back in time: at t = 4 it is 0.25 of its size at t = T \
         (2 steps back); fitted long-run factor ×0.50"
    );
    // Random cuts: where this draw stopped, and the expectation.
    let drawn = [0.0, 0.0, 1.25, 2.0, 1.0];
    let s = describe_profile(&drawn, ReachCut::Random(0.2), Some(0.9), Some(0.9));
    assert!(
        s.starts_with(
            "randomised truncation: this run's cuts stop the last step's gradient at t = 3 (exactly 0 for t ≤ 2)"
        ),
        "{s}"
    );
    assert!(s.contains("×1/(1−P) = 1.25") && s.contains("shrinks ×0.90 per step back"), "{s}");
    let uncut = describe_profile(&[0.5, 1.0], ReachCut::Random(0.2), None, Some(0.5));
    assert!(uncut.contains("uncut"), "{uncut}");
    assert!(describe_profile(&[0.0, 1.0], ReachCut::None, None, None).contains("no measurable change"));
}

/// The parameter gradients as one vector (grad_w_hx, grad_w_hh, grad_w_qh, grad_b_h, grad_b_q).
fn flat(g: &BpttResult) -> Vec<f64> {
    g.tensors()
        .into_iter()
        .filter(|(name, _)| !matches!(*name, "loss" | "grad_h0" | "grad_h_norm"))
        .flat_map(|(_, v)| v.to_vec())
        .collect()
}

#[test]
fn clipping_rescales_all_parameter_gradients_to_theta() {
    let g = reference::bptt(&problem(10, 6, Activation::Tanh, LossFn::Xent, 17));
    let before = flat(&g);
    assert_eq!(before.len(), 6 * 3 + 36 + 4 * 6 + 6 + 4, "biases included");
    let norm: f64 = before.iter().map(|x| x * x).sum::<f64>().sqrt();
    assert!((global_grad_norm(&g) - norm).abs() <= 1e-15 * norm);

    let theta = 0.3 * norm;
    let mut clipped = g.clone();
    let (n_before, n_after) = clip_grads(&mut clipped, theta).expect("clip");
    let after = flat(&clipped);
    let after_norm: f64 = after.iter().map(|x| x * x).sum::<f64>().sqrt();
    let cosine = before.iter().zip(&after).map(|(a, b)| a * b).sum::<f64>() / (norm * after_norm);
    println!("‖g‖ {norm:.6e} → {after_norm:.6e} (θ = {theta:.6e}), cosine {cosine:.17}");
    assert!((n_before - norm).abs() <= 1e-15 * norm);
    assert!((n_after - theta).abs() <= 1e-14 * theta, "{n_after} vs θ {theta}");
    assert!((after_norm - theta).abs() <= 1e-14 * theta);
    assert!((cosine - 1.0).abs() <= 1e-14, "{cosine}");
    // Every entry scaled by the same θ/‖g‖, biases included.
    for (a, b) in before.iter().zip(&after) {
        assert!((b - a * theta / norm).abs() <= 1e-15 * a.abs().max(1e-300));
    }
    // Not a parameter: untouched.
    assert_eq!(clipped.grad_h0, g.grad_h0);
    assert_eq!(clipped.grad_h_norm, g.grad_h_norm);
    assert_eq!(clipped.loss, g.loss);
}

#[test]
fn clipping_below_threshold_changes_nothing() {
    let g = reference::bptt(&problem(10, 6, Activation::Identity, LossFn::Mse, 19));
    let norm = global_grad_norm(&g);
    for theta in [norm, 2.0 * norm, 1e9] {
        let mut clipped = g.clone();
        let (b, a) = clip_grads(&mut clipped, theta).expect("clip");
        assert_eq!(clipped, g, "θ = {theta}");
        assert_eq!((b, a), (norm, norm));
    }
    for theta in [-1.0, f64::NAN, f64::INFINITY] {
        let mut clipped = g.clone();
        assert!(matches!(clip_grads(&mut clipped, theta), Err(Error::Invalid(_))));
        assert_eq!(clipped, g);
    }
}
