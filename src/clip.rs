//! Gradient clipping by the global norm (d2l.ai §9.5): all parameter gradients are rescaled
//! together by min(1, θ/‖g‖), ‖g‖ the norm over every parameter gradient at once, so the
//! update keeps its direction and its length is at most θ.

use crate::error::{Error, Result};
use crate::model::{BpttResult, norm};

/// The parameter gradients clipping acts on: grad_w_hx, grad_w_hh, grad_w_qh, and grad_b_h,
/// grad_b_q when biases are on. Not grad_h0 (h0 is an input, not a parameter) and not
/// grad_h_norm (a diagnostic, not a gradient).
fn parameter_grads(g: &mut BpttResult) -> Vec<&mut Vec<f64>> {
    let mut v = vec![&mut g.grad_w_hx, &mut g.grad_w_hh, &mut g.grad_w_qh];
    v.extend(g.grad_b_h.as_mut());
    v.extend(g.grad_b_q.as_mut());
    v
}

/// ‖g‖: the global norm over all parameter gradients, as the norm of their norms (each one
/// scaled, so gradients of 1e188 give 1e188 and not an infinite norm that skips clipping).
pub fn global_grad_norm(g: &BpttResult) -> f64 {
    let mut norms = vec![norm(&g.grad_w_hx), norm(&g.grad_w_hh), norm(&g.grad_w_qh)];
    norms.extend(g.grad_b_h.as_deref().map(norm));
    norms.extend(g.grad_b_q.as_deref().map(norm));
    norm(&norms)
}

/// Rescales every parameter gradient by min(1, θ/‖g‖); returns (‖g‖ before, ‖g‖ after), the
/// latter recomputed from the clipped gradients. θ must be finite and ≥ 0. A non-finite ‖g‖
/// (an overflowed gradient) cannot be rescaled meaningfully (Inf·0 = NaN), so the gradients
/// are then left as they are and both norms report it.
pub fn clip_grads(g: &mut BpttResult, theta: f64) -> Result<(f64, f64)> {
    if !(theta.is_finite() && theta >= 0.0) {
        return Err(Error::Invalid(format!(
            "clipping threshold θ must be a finite number ≥ 0, got {}",
            crate::format::number(theta)
        )));
    }
    let before = global_grad_norm(g);
    if !before.is_finite() || before <= theta {
        return Ok((before, before));
    }
    let scale = theta / before;
    for v in parameter_grads(g) {
        v.iter_mut().for_each(|x| *x *= scale);
    }
    Ok((before, global_grad_norm(g)))
}
