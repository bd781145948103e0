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

use crate::cpu::reference::{forward, loss_and_grad_o, phi_prime, times_w_hh};
use crate::error::{Error, Result};
use crate::model::{BpttResult, Problem, Shape, norm};
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
    let (nt, nb, nh, q) = (s.steps, s.batch, s.hidden, s.output);
    let (bh, bq) = (nb * nh, nb * q);
    let fwd = forward(p);
    let (loss, grad_o) = loss_and_grad_o(p, &fwd.o);
    let mut backward = Backward::new(p, k);
    for t in (0..nt).rev() {
        let h_prev = if t == 0 { &p.h0[..] } else { &fwd.h[(t - 1) * bh..][..bh] };
        backward.step(p, t, carry_into(scales, t), &fwd.h[t * bh..][..bh], h_prev, &grad_o[t * bq..][..bq]);
    }
    backward.finish(p, scales[0], loss, fwd.h, fwd.o)
}

/// The carry multiplier of code step t's ∂L/∂h (the math's h_{t+1}): `scales[t + 1]`; nothing
/// is carried into the last step.
pub fn carry_into(scales: &[f64], t: usize) -> f64 {
    if t + 1 < scales.len() { scales[t + 1] } else { 1.0 }
}

/// The backward pass between its steps: the lanes' ∂L/∂a_{t+1} and the gradient sums so far.
/// Steps go t = T−1 down to 0 (`step`), then `finish` forms ∂L/∂h_0. Run over stored states
/// (`backward_lanes`) or over states recomputed from checkpoints (`cpu::checkpointed`), the
/// operations and their order are the same, so are the results, bit for bit.
pub struct Backward {
    /// M lanes (1 when `unbounded`).
    lanes: usize,
    unbounded: bool,
    /// a_next[m] = A^(m)_{t+1} `[B,h]`; zero beyond the last step, and lane 0 stays zero.
    a_next: Vec<Vec<f64>>,
    a_now: Vec<Vec<f64>>,
    grad_h: Vec<f64>,
    grad_w_hx: Vec<f64>,
    grad_w_hh: Vec<f64>,
    grad_w_qh: Vec<f64>,
    grad_b_h: Vec<f64>,
    grad_b_q: Vec<f64>,
    grad_h_norm: Vec<f64>,
}

impl Backward {
    /// Truncated `k` steps back from each loss term; `usize::MAX`: not at all.
    pub fn new(p: &Problem, k: usize) -> Self {
        let s = p.shape;
        let (nt, nb, d, nh, q) = (s.steps, s.batch, s.input, s.hidden, s.output);
        // Untruncated: a single lane that feeds itself. Regular: lanes 1..=M, each fed by the
        // lane below it, lane 0 (index 0) being zero.
        let unbounded = k == usize::MAX;
        let lanes = if unbounded { 1 } else { k.min(nt) };
        Backward {
            lanes,
            unbounded,
            a_next: vec![vec![0.0; nb * nh]; lanes + 1],
            a_now: vec![vec![0.0; nb * nh]; lanes + 1],
            grad_h: vec![0.0; nb * nh],
            grad_w_hx: vec![0.0; nh * d],
            grad_w_hh: vec![0.0; nh * nh],
            grad_w_qh: vec![0.0; q * nh],
            grad_b_h: vec![0.0; nh],
            grad_b_q: vec![0.0; q],
            grad_h_norm: vec![0.0; nt],
        }
    }

    /// Bytes it holds: the lanes, ∂L/∂h_t and the norms (the weight gradients aside).
    pub fn bytes(s: Shape, k: usize) -> u64 {
        let lanes = if k == usize::MAX { 1 } else { k.min(s.steps) } as u64;
        8 * ((2 * (lanes + 1) + 1) * (s.batch * s.hidden) as u64 + s.steps as u64)
    }

    /// Code step t (the math's step t + 1): h_t and h_prev `[B,h]`, ∂L/∂o_t `[B,q]`, `carry`
    /// multiplying ∂L/∂a_{t+1}·w_hh.
    pub fn step(&mut self, p: &Problem, t: usize, carry: f64, h_t: &[f64], h_prev: &[f64], grad_o_t: &[f64]) {
        let s = p.shape;
        let (nb, d, nh, q) = (s.batch, s.input, s.hidden, s.output);
        let w = &p.params;
        let answer = self.lanes;
        for m in 1..=self.lanes {
            let src = if self.unbounded { m } else { m - 1 };
            let (a_now, src) = (&mut self.a_now[m], &self.a_next[src]);
            for b in 0..nb {
                let grad_o_tb = &grad_o_t[b * q..][..q];
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
                        self.grad_h[b * nh + i] = acc;
                    }
                    a_now[b * nh + i] = acc * phi_prime(p.activation, h_t[b * nh + i]);
                }
            }
        }
        self.grad_h_norm[t] = norm(&self.grad_h);

        let grad_a = &self.a_now[answer];
        for b in 0..nb {
            let h_tb = &h_t[b * nh..][..nh];
            let h_prev = &h_prev[b * nh..][..nh];
            let x_t = &p.x[(t * nb + b) * d..][..d];
            let grad_o_tb = &grad_o_t[b * q..][..q];
            for kk in 0..q {
                for i in 0..nh {
                    self.grad_w_qh[kk * nh + i] += grad_o_tb[kk] * h_tb[i];
                }
                self.grad_b_q[kk] += grad_o_tb[kk];
            }
            for i in 0..nh {
                let g = grad_a[b * nh + i];
                for j in 0..d {
                    self.grad_w_hx[i * d + j] += g * x_t[j];
                }
                for j in 0..nh {
                    self.grad_w_hh[i * nh + j] += g * h_prev[j];
                }
                self.grad_b_h[i] += g;
            }
        }
        std::mem::swap(&mut self.a_next, &mut self.a_now);
    }

    /// The result, with ∂L/∂h_0 = `scale0`·(A_1·w_hh) from the truncated ∂L/∂a_1 (the answer
    /// lane after step 0), the loss and the forward states given.
    pub fn finish(self, p: &Problem, scale0: f64, loss: f64, h: Vec<f64>, o: Vec<f64>) -> BpttResult {
        let mut grad_h0 = times_w_hh(&self.a_next[self.lanes], &p.params.w_hh, p.shape.hidden);
        grad_h0.iter_mut().for_each(|g| *g *= scale0);
        let bias = p.has_bias();
        BpttResult {
            loss,
            grad_w_hx: self.grad_w_hx,
            grad_w_hh: self.grad_w_hh,
            grad_w_qh: self.grad_w_qh,
            grad_b_h: bias.then_some(self.grad_b_h),
            grad_b_q: bias.then_some(self.grad_b_q),
            grad_h0,
            grad_h_norm: self.grad_h_norm,
            h,
            o,
        }
    }
}
