//! The textbook's point, numerically: with φ = identity, ∂L/∂h_1 contains the term
//! (w_hhᵀ)^{T−1} w_qhᵀ ∂L/∂o_T, which grows like ρ(w_hh)^{T−1} when ρ > 1 (exploding
//! gradients) and dies out when ρ < 1, leaving ∂L/∂h_1 dominated by the few nearby steps.

use bptt::cpu::reference;
use bptt::{Activation, LossFn, ProblemSpec, random_problem};

use crate::common::{shape, spec};

const STEPS: usize = 32;

/// grad_h_norm[0] / grad_h_norm[T−1], i.e. ‖∂L/∂h_1‖ / ‖∂L/∂h_T‖, for w_hh scaled to radius r.
fn first_over_last(radius: f64) -> f64 {
    let s = shape(STEPS, 1, 4, 16, 4);
    let spec =
        ProblemSpec { spectral_radius: Some(radius), ..spec(s, Activation::Identity, LossFn::Mse, false, false, 7) };
    let g = reference::bptt(&random_problem(&spec).expect("valid random problem"));
    let ratio = g.grad_h_norm[0] / g.grad_h_norm[STEPS - 1];
    println!("ρ(w_hh) = {radius}: ‖∂L/∂h_1‖ / ‖∂L/∂h_T‖ = {ratio:.3e}");
    ratio
}

#[test]
fn gradient_explodes_back_in_time_when_radius_exceeds_one() {
    // 1.5^31 ≈ 2.9e5; the bar 1e3 leaves room for how much of w_qhᵀ ∂L/∂o_T lies along the
    // dominant eigenvectors.
    let ratio = first_over_last(1.5);
    assert!(ratio > 1e3, "ratio {ratio:e} should exceed 1e3 for ρ = 1.5");
}

#[test]
fn gradient_stays_bounded_when_radius_is_below_one() {
    // Terms decay like 0.5^k, so ∂L/∂h_1 is a short sum of O(1)·∂L/∂o terms, like ∂L/∂h_T.
    let ratio = first_over_last(0.5);
    assert!((0.1..=10.0).contains(&ratio), "ratio {ratio:e} should be within a factor 10 of 1 for ρ = 0.5");
}
