//! Truncated backpropagation through time in f64, beside the plain reference (which stays a
//! line-by-line transcription of the model's equations). Two kinds of truncation, both defined on the
//! backward recursion ∂L/∂h_t = ∂L/∂a_{t+1}·w_hh + ∂L/∂o_t·w_qh (math indices: h_0 is the
//! initial state, loss terms at steps s = 1..T):
//!
//! - `Truncation::Regular(K)`: the contribution of loss term s to ∂L/∂h_t and ∂L/∂a_t
//!   (t = 1..T) is kept iff s − t < K, i.e. the recursion stops K steps back from each loss
//!   term: in the unrolled sum ∂L/∂h_t = Σ_{i=t..T} (w_hhᵀ)^{T−i} w_qhᵀ ∂L/∂o_{T+t−i}, only the
//!   terms with T − i < K. K = 1 keeps only the output path (no recurrent path through time).
//!   ∂L/∂h_0 follows the model's ∂L/∂h_0 = ∂L/∂a_1·w_hh from the truncated ∂L/∂a_1. So every
//!   tensor is complete for K ≥ T, and then equal to `reference::bptt` bit for bit.
//! - `Truncation::Random { p, seed }` (Tallec & Ollivier 2017, "Unbiasing truncated
//!   backpropagation through time"): ∂L/∂h_t = c_t·(∂L/∂a_{t+1}·w_hh) + ∂L/∂o_t·w_qh with
//!   independent c_t ∈ {0, 1/(1−p)}, P(c_t = 0) = p, from `random_carry_scales`. A loss term
//!   s reaches h_t scaled by c_t·c_{t+1}·…·c_{s−1}, whose expectation is 1, so the expected
//!   gradient is the full gradient (every gradient is linear in ∂L/∂a_t, and the c's never
//!   touch the forward pass).
//!
//! Weight gradients are formed from the truncated ∂L/∂a_t exactly as in the reference;
//! ∂L/∂w_qh and ∂L/∂b_q only use ∂L/∂o_t and are never truncated. grad_h_norm holds the norms
//! of the truncated ∂L/∂h_t, grad_h0 the truncated ∂L/∂h_0.

// Index loops transcribe the equations, as in the reference.
#![allow(clippy::needless_range_loop)]

use crate::cpu::reference::{forward, loss_and_grad_o, phi_prime};
use crate::error::{Error, Result};
use crate::model::{BpttResult, Problem, norm};
pub use crate::variant::truncation::{Truncation, random_carry_scales};

/// BPTT with the backward recursion truncated as `trunc` says (see the module doc).
pub fn bptt_truncated(p: &Problem, trunc: Truncation) -> Result<BpttResult> {
    let nt = p.shape.steps;
    match trunc {
        Truncation::Regular(0) => Err(Error::Invalid("truncation length K must be at least 1".into())),
        Truncation::Regular(k) => Ok(backward_lanes(p, k, &vec![1.0; nt])),
        Truncation::Random { p: cut, seed } => {
            let scales = random_carry_scales(nt, cut, seed)?;
            Ok(backward_lanes(p, usize::MAX, &scales))
        }
    }
}

/// BPTT where ∂L/∂h_t = `scales[t]`·(∂L/∂a_{t+1}·w_hh) + ∂L/∂o_t·w_qh, for any given carry
/// multipliers (math index t = 0..T−1, `scales[0]` for ∂L/∂h_0). Randomized truncation is this
/// with `random_carry_scales`; zeros at segment ends give the "detach" of `bptt_segments`;
/// all ones give full BPTT bit for bit.
pub fn bptt_carry_scaled(p: &Problem, scales: &[f64]) -> Result<BpttResult> {
    if scales.len() != p.shape.steps {
        return Err(Error::Invalid(format!(
            "expected {} carry scales (one per step), got {}",
            p.shape.steps,
            scales.len()
        )));
    }
    if let Some(bad) = scales.iter().find(|c| !c.is_finite()) {
        return Err(Error::Invalid(format!("carry scale {bad} is not finite")));
    }
    Ok(backward_lanes(p, usize::MAX, scales))
}

/// The backward pass with "cumulative age lanes": lane m (1 ≤ m ≤ M) holds ∂L/∂a_t keeping
/// only loss terms s with s − t < m, lane 0 is zero. Going back one step ages every
/// contribution by one, so lane m at step t is built from lane m − 1 at step t + 1:
///   G^(m)_t = c_t·(A^(m−1)_{t+1}·w_hh) + ∂L/∂o_t·w_qh,   A^(m)_t = G^(m)_t ⊙ φ'(a_t).
/// Lane K is the answer. (Lane m is the sum of the "age" lanes 0..m−1, each holding the
/// contribution of the loss term exactly k steps later; carrying the sums instead of the ages
/// is just as exact, and each lane is computed with the reference's very operations, so with
/// K ≥ T — no term ever dropped — the result is the reference's bit for bit.)
///
/// Lanes above T are all equal (no contribution is older than T − 1 steps), so at most
/// M = min(K, T) are carried; `k = usize::MAX` means no regular truncation, which needs one
/// lane that feeds itself. Cost: O(M·B·h²) per step.
fn backward_lanes(p: &Problem, k: usize, scales: &[f64]) -> BpttResult {
    let s = p.shape;
    let (nt, nb, d, nh, q) = (s.steps, s.batch, s.input, s.hidden, s.output);
    let w = &p.params;
    let fwd = forward(p);
    let (loss, grad_o) = loss_and_grad_o(p, &fwd.o);

    // Untruncated: a single lane that feeds itself. Regular: lanes 1..=M, each fed by the
    // lane below it, lane 0 (index 0) being zero.
    let unbounded = k == usize::MAX;
    let lanes = if unbounded { 1 } else { k.min(nt) };
    let source = |m: usize| if unbounded { m } else { m - 1 };
    let answer = lanes;

    let mut grad_w_hx = vec![0.0; nh * d];
    let mut grad_w_hh = vec![0.0; nh * nh];
    let mut grad_w_qh = vec![0.0; q * nh];
    let mut grad_b_h = vec![0.0; nh];
    let mut grad_b_q = vec![0.0; q];
    let mut grad_h_norm = vec![0.0; nt];
    // a_next[m] = A^(m)_{t+1} [B,h]; zero beyond the last step, and lane 0 stays zero.
    let mut a_next = vec![vec![0.0; nb * nh]; lanes + 1];
    let mut a_now = vec![vec![0.0; nb * nh]; lanes + 1];
    let mut grad_h = vec![0.0; nb * nh];

    // The code's step t holds the math's h_{t+1}, whose carry multiplier is scales[t + 1];
    // nothing is carried into the last step.
    for t in (0..nt).rev() {
        let carry = if t + 1 < nt { scales[t + 1] } else { 1.0 };
        for m in 1..=lanes {
            let src = &a_next[source(m)];
            for b in 0..nb {
                let grad_o_tb = &grad_o[(t * nb + b) * q..][..q];
                for i in 0..nh {
                    // Same operations, in the same order, as the reference's ∂L/∂h_t (times
                    // the carry multiplier, which is 1.0 outside randomized truncation).
                    let mut rec = 0.0;
                    for j in 0..nh {
                        rec += src[b * nh + j] * w.w_hh[j * nh + i];
                    }
                    let mut acc = carry * rec;
                    for kk in 0..q {
                        acc += grad_o_tb[kk] * w.w_qh[kk * nh + i];
                    }
                    if m == answer {
                        grad_h[b * nh + i] = acc;
                    }
                    let h_ti = fwd.h[(t * nb + b) * nh + i];
                    a_now[m][b * nh + i] = acc * phi_prime(p.activation, h_ti);
                }
            }
        }
        grad_h_norm[t] = norm(&grad_h);

        let grad_a = &a_now[answer];
        for b in 0..nb {
            let row = t * nb + b;
            let h_t = &fwd.h[row * nh..][..nh];
            let h_prev = if t == 0 { &p.h0[b * nh..][..nh] } else { &fwd.h[((t - 1) * nb + b) * nh..][..nh] };
            let x_t = &p.x[row * d..][..d];
            let grad_o_tb = &grad_o[row * q..][..q];
            for kk in 0..q {
                for i in 0..nh {
                    grad_w_qh[kk * nh + i] += grad_o_tb[kk] * h_t[i];
                }
                grad_b_q[kk] += grad_o_tb[kk];
            }
            for i in 0..nh {
                let g = grad_a[b * nh + i];
                for j in 0..d {
                    grad_w_hx[i * d + j] += g * x_t[j];
                }
                for j in 0..nh {
                    grad_w_hh[i * nh + j] += g * h_prev[j];
                }
                grad_b_h[i] += g;
            }
        }
        std::mem::swap(&mut a_next, &mut a_now);
    }

    // ∂L/∂h_0 = c_0·(A_1·w_hh) from the truncated ∂L/∂a_1 (the answer lane at step 1).
    let a_1 = &a_next[answer];
    let mut grad_h0 = vec![0.0; nb * nh];
    for b in 0..nb {
        for i in 0..nh {
            let mut rec = 0.0;
            for j in 0..nh {
                rec += a_1[b * nh + j] * w.w_hh[j * nh + i];
            }
            grad_h0[b * nh + i] = scales[0] * rec;
        }
    }

    let bias = p.has_bias();
    BpttResult {
        loss,
        grad_w_hx,
        grad_w_hh,
        grad_w_qh,
        grad_b_h: bias.then_some(grad_b_h),
        grad_b_q: bias.then_some(grad_b_q),
        grad_h0,
        grad_h_norm,
        h: fwd.h,
        o: fwd.o,
    }
}
