//! The f64 reference in layer mode: the RNN as one layer of a larger model, which computes no
//! output and no loss itself. The forward pass returns the states h_1..h_T; the backward pass
//! takes the upstream gradients ∂ℓ/∂h_t the rest of the model sends into each state and
//! returns ∂L/∂x_t, ∂L/∂h_0 and the parameter gradients (docs/model.md, "The layer mode").
//! Like `reference`, a plain transcription of the equations, to be checked by eye; the fast
//! CPU path's and the GPU's layer modes are tested against it.
//!
//! Layout: row-major, x `[T,B,d]`, h `[T,B,h]`, w_hx `[h,d]`, w_hh `[h,h]`; t runs 0..T here,
//! the math's h_t being `h[t]` with h_0 the initial state `h0`.

// Index loops are the point here: each line reads like the equation it transcribes.
#![allow(clippy::needless_range_loop)]

use super::reference::{phi, phi_prime, times_w_hh};
use crate::layer::types::{LayerGrads, LayerShape, LayerWeights, Upstream};
use crate::model::Activation;

/// a_t = x_t·w_hxᵀ + h_{t-1}·w_hhᵀ (+ b_h),  h_t = φ(a_t); returns h_1..h_T `[T,B,h]`.
pub fn forward(s: LayerShape, act: Activation, w: &LayerWeights<f64>, x: &[f64], h0: &[f64]) -> Vec<f64> {
    let (nt, nb, d, nh) = (s.steps, s.batch, s.input, s.hidden);
    let mut h = vec![0.0; nt * nb * nh];
    for t in 0..nt {
        for b in 0..nb {
            let x_t = &x[(t * nb + b) * d..][..d];
            let h_prev: Vec<f64> =
                if t == 0 { h0[b * nh..][..nh].to_vec() } else { h[((t - 1) * nb + b) * nh..][..nh].to_vec() };
            for i in 0..nh {
                // a_t[i] = Σ_j x_t[j] w_hx[i,j] + Σ_j h_{t-1}[j] w_hh[i,j] + b_h[i]
                let mut acc = w.b_h.map_or(0.0, |b_h| b_h[i]);
                for j in 0..d {
                    acc += x_t[j] * w.w_hx[i * d + j];
                }
                for j in 0..nh {
                    acc += h_prev[j] * w.w_hh[i * nh + j];
                }
                // h_t = φ(a_t)
                h[(t * nb + b) * nh + i] = phi(act, acc);
            }
        }
    }
    h
}

/// Backward in reverse time order, from the forward's states `up.h` and the upstream
/// gradients g_t = `up.grad_h` (plus `up.grad_h_last` at t = T):
///   ∂L/∂h_t = g_t + ∂L/∂a_{t+1}·w_hh,  ∂L/∂a_t = ∂L/∂h_t ⊙ φ'(a_t),
///   ∂L/∂x_t = ∂L/∂a_t·w_hx,  ∂L/∂w_hx = Σ_t ∂L/∂a_tᵀ·x_t,  ∂L/∂w_hh = Σ_t ∂L/∂a_tᵀ·h_{t-1},
///   ∂L/∂b_h = Σ_t ∂L/∂a_t,  ∂L/∂h_0 = ∂L/∂a_1·w_hh.
pub fn backward(
    s: LayerShape,
    act: Activation,
    w: &LayerWeights<f64>,
    x: &[f64],
    h0: &[f64],
    up: &Upstream<f64>,
) -> LayerGrads<f64> {
    let (nt, nb, d, nh) = (s.steps, s.batch, s.input, s.hidden);
    let mut grad_x = vec![0.0; nt * nb * d];
    let mut grad_w_hx = vec![0.0; nh * d];
    let mut grad_w_hh = vec![0.0; nh * nh];
    let mut grad_b_h = vec![0.0; nh];
    // ∂L/∂a_{t+1} [B,h]; zero beyond the last step.
    let mut grad_a_next = vec![0.0; nb * nh];
    let mut grad_a = vec![0.0; nb * nh];

    for t in (0..nt).rev() {
        for b in 0..nb {
            let row = (t * nb + b) * nh;
            for i in 0..nh {
                // ∂L/∂h_t[i] = g_t[i] + Σ_j ∂L/∂a_{t+1}[j] w_hh[j,i]
                let mut acc = up.grad_h[row + i];
                if t + 1 == nt {
                    acc += up.grad_h_last.map_or(0.0, |g| g[b * nh + i]);
                }
                for j in 0..nh {
                    acc += grad_a_next[b * nh + j] * w.w_hh[j * nh + i];
                }
                // ∂L/∂a_t = ∂L/∂h_t ⊙ φ'(a_t)
                grad_a[b * nh + i] = acc * phi_prime(act, up.h[row + i]);
            }
        }
        for b in 0..nb {
            let x_t = &x[(t * nb + b) * d..][..d];
            let h_prev = if t == 0 { &h0[b * nh..][..nh] } else { &up.h[((t - 1) * nb + b) * nh..][..nh] };
            let grad_x_t = &mut grad_x[(t * nb + b) * d..][..d];
            for i in 0..nh {
                let g = grad_a[b * nh + i];
                for j in 0..d {
                    // ∂L/∂w_hx += ∂L/∂a_tᵀ·x_t
                    grad_w_hx[i * d + j] += g * x_t[j];
                    // ∂L/∂x_t[j] = Σ_i ∂L/∂a_t[i] w_hx[i,j]
                    grad_x_t[j] += g * w.w_hx[i * d + j];
                }
                // ∂L/∂w_hh += ∂L/∂a_tᵀ·h_{t-1}
                for j in 0..nh {
                    grad_w_hh[i * nh + j] += g * h_prev[j];
                }
                // ∂L/∂b_h += ∂L/∂a_t
                grad_b_h[i] += g;
            }
        }
        std::mem::swap(&mut grad_a_next, &mut grad_a);
    }

    // ∂L/∂h0 = ∂L/∂a_1·w_hh (grad_a_next now holds ∂L/∂a_1).
    let grad_h0 = times_w_hh(&grad_a_next, w.w_hh, nh);
    LayerGrads { grad_x, grad_h0, grad_w_hx, grad_w_hh, grad_b_h: w.b_h.map(|_| grad_b_h) }
}
