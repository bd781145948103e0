//! Central finite differences of L (`reference::loss`, a forward pass only) against the
//! gradients of `reference::bptt`, on every entry of every parameter and of h0, and against
//! grad_h_norm.

use bptt::cpu::reference;
use bptt::model::{norm, rel_err};
use bptt::{Activation, BpttResult, LossAt, LossFn, Problem, Shape, Targets, random_problem};

use crate::common::{grad_o, shape, spec};

/// Step of the five-point central difference
///   L'(w) ≈ (8·(L(w+ε) − L(w−ε)) − (L(w+2ε) − L(w−2ε))) / 12ε,
/// whose truncation error is ε⁴·L⁽⁵⁾/30 ≈ 3e-14·L⁽⁵⁾ and rounding error ≈ ε_mach·|L|/ε ≈ 2e-13·|L|.
/// The plain two-point stencil is not enough here: its best trade-off (ε ≈ 1e-5) still leaves
/// ~1e-11·|L| of rounding, and some cases have a genuinely vanishing gradient (tanh, h = 1,
/// only the last step scored: ‖∂L/∂h0‖ ≈ 3e-7 with L ≈ 0.6), where that is a 1e-5 relative
/// error. The five-point stencil keeps every case below ~2e-7.
const EPS: f64 = 1e-3;
/// relu's L is only piecewise smooth: a perturbation of 2ε may carry a pre-activation across
/// its kink at 0 (at ε = 1e-3 one case in a few does), so relu cases step 100× less; with no
/// tanh there is no vanishing gradient among them for the larger rounding error to swamp.
const RELU_EPS: f64 = 1e-5;
const TOL: f64 = 1e-6;

/// The tensors L is differentiated with respect to.
#[derive(Clone, Copy, Debug)]
enum Wrt {
    WHx,
    WHh,
    WQh,
    BH,
    BQ,
    H0,
}

fn tensor_mut(p: &mut Problem, wrt: Wrt) -> &mut Vec<f64> {
    let w = &mut p.params;
    match wrt {
        Wrt::WHx => &mut w.w_hx,
        Wrt::WHh => &mut w.w_hh,
        Wrt::WQh => &mut w.w_qh,
        Wrt::BH => w.b_h.as_mut().expect("b_h"),
        Wrt::BQ => w.b_q.as_mut().expect("b_q"),
        Wrt::H0 => &mut p.h0,
    }
}

/// ∂L/∂(tensor) by five-point central differences, one entry at a time.
fn fd_grad(p: &Problem, wrt: Wrt) -> Vec<f64> {
    let mut q = p.clone();
    let n = tensor_mut(&mut q, wrt).len();
    let eps = if p.activation == Activation::Relu { RELU_EPS } else { EPS };
    (0..n)
        .map(|i| {
            let orig = tensor_mut(&mut q, wrt)[i];
            let mut loss_at = |steps: f64| {
                tensor_mut(&mut q, wrt)[i] = orig + steps * eps;
                let l = reference::loss(&q);
                tensor_mut(&mut q, wrt)[i] = orig;
                l
            };
            // Differences first: exact when L does not move, and no cancellation of 8·L terms.
            (8.0 * (loss_at(1.0) - loss_at(-1.0)) - (loss_at(2.0) - loss_at(-2.0))) / (12.0 * eps)
        })
        .collect()
}

/// Checks every gradient of `p` against finite differences; returns the worst relative errors
/// of the parameter/h0 gradients and of grad_h_norm.
fn check(p: &Problem, case: &str) -> (f64, f64) {
    let g = reference::bptt(p);
    let l = reference::loss(p);
    assert!((g.loss - l).abs() <= 1e-14 * l.abs(), "{case}: bptt's loss {} differs from loss() {l}", g.loss);
    let mut wrts =
        vec![(Wrt::WHx, &g.grad_w_hx), (Wrt::WHh, &g.grad_w_hh), (Wrt::WQh, &g.grad_w_qh), (Wrt::H0, &g.grad_h0)];
    if p.has_bias() {
        wrts.push((Wrt::BH, g.grad_b_h.as_ref().expect("grad_b_h with biases")));
        wrts.push((Wrt::BQ, g.grad_b_q.as_ref().expect("grad_b_q with biases")));
    } else {
        assert!(g.grad_b_h.is_none() && g.grad_b_q.is_none(), "{case}: bias grads without biases");
    }
    let h0_is_zero = p.h0.iter().all(|&v| v == 0.0);
    let mut worst = 0.0f64;
    for (wrt, analytic) in wrts {
        let fd = fd_grad(p, wrt);
        if matches!(wrt, Wrt::WHh) && p.shape.steps == 1 && h0_is_zero {
            // With one step from h0 = 0, w_hh multiplies only zeros: L does not depend on it,
            // and both gradients must be exactly zero (rel_err would fall back to absolute).
            assert!(analytic.iter().chain(&fd).all(|&v| v == 0.0), "{case}: grad_w_hh must be 0 for T=1 and h0=0");
            continue;
        }
        if p.activation == Activation::Relu && norm(analytic) == 0.0 {
            // Every unit the gradient would pass through is clipped at zero (small h): then L
            // is flat in this tensor, and the finite differences must say so too.
            assert!(norm(&fd) <= 1e-9, "{case}: {wrt:?} gradient is zero but finite differences give {fd:?}");
            continue;
        }
        assert!(norm(analytic) > 0.0, "{case}: {wrt:?} gradient is all zero");
        let err = rel_err(&fd, analytic);
        assert!(
            err <= TOL,
            "{case}: {wrt:?} differs from finite differences by {err:e}\n \
             fd:       {fd:?}\n analytic: {analytic:?}"
        );
        worst = worst.max(err);
    }
    (worst, check_grad_h_norm(p, &g, case))
}

/// grad_h_norm[t] = ‖∂L/∂h_t‖ checked through finite differences too. The hidden state is not
/// an input, but the steps after it are a problem of their own that starts from h0 = h_t, so
///   ∂L/∂h_t = w_qhᵀ ∂L/∂o_t  +  c · ∂L'/∂h0'  (the suffix problem's, by finite differences),
/// with c = (T−t)/T rescaling the suffix's 1/((T−t)·B) loss weight to 1/(T·B) (1-based t;
/// c = 1 with LossAt::Last, where both score only the last step with weight 1/B).
fn check_grad_h_norm(p: &Problem, g: &BpttResult, case: &str) -> f64 {
    let s = p.shape;
    let (nt, nb, d, nh, q) = (s.steps, s.batch, s.input, s.hidden, s.output);
    let g_o = grad_o(p, &g.o);
    let mut worst = 0.0f64;
    for t in 0..nt {
        // Direct term, w_qhᵀ ∂L/∂o_t per batch entry (0-based t here).
        let mut grad_h_t: Vec<f64> = (0..nb)
            .flat_map(|b| {
                let g_o_tb = &g_o[(t * nb + b) * q..][..q];
                (0..nh).map(move |i| (0..q).map(|k| g_o_tb[k] * p.params.w_qh[k * nh + i]).sum())
            })
            .collect();
        let rest = nt - t - 1;
        if rest > 0 {
            let targets = match &p.targets {
                Targets::Mse(y) => Targets::Mse(y[(t + 1) * nb * q..].to_vec()),
                Targets::Xent(labels) => Targets::Xent(labels[(t + 1) * nb..].to_vec()),
            };
            let suffix = Problem::new(
                Shape::new(rest, nb, d, nh, q).expect("suffix shape"),
                p.activation,
                p.params.clone(),
                p.x[(t + 1) * nb * d..].to_vec(),
                Some(g.h[t * nb * nh..][..nb * nh].to_vec()),
                targets,
            )
            .expect("valid suffix problem")
            .with_loss_at(p.loss_at);
            let c = match p.loss_at {
                LossAt::All => rest as f64 / nt as f64,
                LossAt::Last => 1.0,
            };
            let fd = fd_grad(&suffix, Wrt::H0);
            grad_h_t.iter_mut().zip(&fd).for_each(|(acc, v)| *acc += c * v);
        }
        let expected = norm(&grad_h_t);
        // Both exactly 0 only where relu clips every path (rel err would be 0/0).
        let err = if expected == 0.0 { g.grad_h_norm[t] } else { (g.grad_h_norm[t] - expected).abs() / expected };
        assert!(
            err <= TOL,
            "{case}: grad_h_norm[{t}] = {:e}, finite differences {expected:e} (rel err {err:e})",
            g.grad_h_norm[t]
        );
        worst = worst.max(err);
    }
    worst
}

/// Small shapes covering the edge cases: one step, one hidden unit, batch > 1 with d ≠ q.
fn shapes() -> Vec<(&'static str, Shape)> {
    vec![
        ("T=1", shape(1, 2, 3, 4, 2)),
        ("h=1", shape(4, 2, 3, 1, 2)),
        ("B=3,d=2,q=3", shape(5, 3, 2, 4, 3)),
        ("B=1,d=4,q=2", shape(6, 1, 4, 3, 2)),
    ]
}

/// Every shape × bias × random h0 × loss_at for one activation and loss.
fn check_all(activation: Activation, loss: LossFn) {
    let (mut worst, mut worst_h_norm) = (0.0f64, 0.0f64);
    let mut cases = 0;
    for (name, s) in shapes() {
        for bias in [false, true] {
            for random_h0 in [false, true] {
                for loss_at in [LossAt::All, LossAt::Last] {
                    let seed = 100 + cases;
                    let p = random_problem(&spec(s, activation, loss, bias, random_h0, seed))
                        .expect("valid random problem")
                        .with_loss_at(loss_at);
                    let case = format!(
                        "{}/{} {name} bias={bias} random_h0={random_h0} {loss_at:?} seed={seed}",
                        activation.name(),
                        loss.name()
                    );
                    let (err, err_h_norm) = check(&p, &case);
                    worst = worst.max(err);
                    worst_h_norm = worst_h_norm.max(err_h_norm);
                    cases += 1;
                }
            }
        }
    }
    println!(
        "worst finite-difference relative error, {}/{}: gradients {worst:.3e}, \
         grad_h_norm {worst_h_norm:.3e} ({cases} cases)",
        activation.name(),
        loss.name()
    );
}

#[test]
fn identity_mse_matches_finite_differences() {
    check_all(Activation::Identity, LossFn::Mse);
}

#[test]
fn identity_xent_matches_finite_differences() {
    check_all(Activation::Identity, LossFn::Xent);
}

#[test]
fn tanh_mse_matches_finite_differences() {
    check_all(Activation::Tanh, LossFn::Mse);
}

#[test]
fn tanh_xent_matches_finite_differences() {
    check_all(Activation::Tanh, LossFn::Xent);
}

// relu has a kink at 0; with random Gaussian pre-activations none lies within the finite
// difference's step of it, so the derivative is the one-sided one the code uses.
#[test]
fn relu_mse_matches_finite_differences() {
    check_all(Activation::Relu, LossFn::Mse);
}

#[test]
fn relu_xent_matches_finite_differences() {
    check_all(Activation::Relu, LossFn::Xent);
}
