//! The f64 reference BPTT: a plain transcription of the equations of docs/model.md, written to be
//! checked by eye, not to be fast. Every other path (GPU, fast CPU) is tested against it.
//!
//! Layout: row-major, x `[T,B,d]`, h `[T,B,h]`, o `[T,B,q]`, w_hx `[h,d]`, w_hh `[h,h]`, w_qh `[q,h]`.
//! Time index t runs 0..T here; the math's h_t is `h[t]` here with h_0 the initial state `h0`.

// Index loops are the point here: each line reads like the equation it transcribes.
#![allow(clippy::needless_range_loop)]

use crate::model::{Activation, BpttResult, LossAt, Problem, Targets};

/// Forward states kept for the backward pass.
pub struct Forward {
    /// a `[T,B,h]`: pre-activations
    pub a: Vec<f64>,
    /// h `[T,B,h]`: hidden states h_1..h_T
    pub h: Vec<f64>,
    /// o `[T,B,q]`: outputs o_1..o_T
    pub o: Vec<f64>,
}

/// a_t = x_t·w_hxᵀ + h_{t-1}·w_hhᵀ (+ b_h),  h_t = φ(a_t),  o_t = h_t·w_qhᵀ (+ b_q), step by step.
pub fn forward(p: &Problem) -> Forward {
    let s = p.shape;
    let (nt, nb, nh, q) = (s.steps, s.batch, s.hidden, s.output);
    let (bh, bq) = (nb * nh, nb * q);
    let mut a = vec![0.0; nt * bh];
    let mut h = vec![0.0; nt * bh];
    let mut o = vec![0.0; nt * bq];
    for t in 0..nt {
        // h_{t-1}: the initial state at t = 0, else the previous step's.
        let (before, from_t) = h.split_at_mut(t * bh);
        let h_prev = if t == 0 { &p.h0[..] } else { &before[(t - 1) * bh..] };
        let h_t = &mut from_t[..bh];
        step(p, t, h_prev, &mut a[t * bh..][..bh], h_t);
        output(p, h_t, &mut o[t * bq..][..bq]);
    }
    Forward { a, h, o }
}

/// One step for every batch entry: a_t = x_t·w_hxᵀ + h_{t-1}·w_hhᵀ (+ b_h) and h_t = φ(a_t),
/// with h_prev, a_t and h_t `[B,h]` (t = 0..T−1 here).
pub fn step(p: &Problem, t: usize, h_prev: &[f64], a_t: &mut [f64], h_t: &mut [f64]) {
    let s = p.shape;
    let (nb, d, nh) = (s.batch, s.input, s.hidden);
    let w = &p.params;
    for b in 0..nb {
        let x_tb = &p.x[(t * nb + b) * d..][..d];
        let h_prev = &h_prev[b * nh..][..nh];
        for i in 0..nh {
            // a_t[i] = Σ_j x_t[j] w_hx[i,j] + Σ_j h_{t-1}[j] w_hh[i,j] + b_h[i]
            let mut acc = w.b_h.as_ref().map_or(0.0, |b_h| b_h[i]);
            for j in 0..d {
                acc += x_tb[j] * w.w_hx[i * d + j];
            }
            for j in 0..nh {
                acc += h_prev[j] * w.w_hh[i * nh + j];
            }
            a_t[b * nh + i] = acc;
            // h_t = φ(a_t)
            h_t[b * nh + i] = phi(p.activation, acc);
        }
    }
}

/// o_t = h_t·w_qhᵀ + b_q for every batch entry, h_t `[B,h]`, o_t `[B,q]`.
pub fn output(p: &Problem, h_t: &[f64], o_t: &mut [f64]) {
    let s = p.shape;
    let (nb, nh, q) = (s.batch, s.hidden, s.output);
    let w = &p.params;
    for b in 0..nb {
        for k in 0..q {
            // o_t[k] = Σ_i h_t[i] w_qh[k,i] + b_q[k]
            let mut acc = w.b_q.as_ref().map_or(0.0, |b_q| b_q[k]);
            for i in 0..nh {
                acc += h_t[b * nh + i] * w.w_qh[k * nh + i];
            }
            o_t[b * q + k] = acc;
        }
    }
}

/// φ(a)
pub fn phi(act: Activation, a: f64) -> f64 {
    match act {
        Activation::Identity => a,
        Activation::Tanh => a.tanh(),
        // Not `a.max(0.0)`, which turns NaN into 0 and would hide an overflow from the checks.
        Activation::Relu => {
            if a < 0.0 {
                0.0
            } else {
                a
            }
        }
    }
}

/// φ'(a), written in terms of h = φ(a) where that is the usual form (tanh' = 1 − h²;
/// relu' = `[a > 0]` = `[h > 0]`).
pub fn phi_prime(act: Activation, h: f64) -> f64 {
    match act {
        Activation::Identity => 1.0,
        Activation::Tanh => 1.0 - h * h,
        Activation::Relu => {
            if h > 0.0 {
                1.0
            } else {
                0.0
            }
        }
    }
}

/// The weight 1/(T·B) (or 1/B with `LossAt::Last`) of step t's loss term; 0 for unscored steps.
pub fn loss_weight(p: &Problem, t: usize) -> f64 {
    let s = p.shape;
    match p.loss_at {
        LossAt::All => 1.0 / (s.steps * s.batch) as f64,
        LossAt::Last if t + 1 == s.steps => 1.0 / s.batch as f64,
        LossAt::Last => 0.0,
    }
}

/// L and ∂L/∂o `[T,B,q]`, step by step (`loss_step`).
pub fn loss_and_grad_o(p: &Problem, o: &[f64]) -> (f64, Vec<f64>) {
    let s = p.shape;
    let bq = s.batch * s.output;
    let mut loss = 0.0;
    let mut grad_o = vec![0.0; s.steps * bq];
    for t in 0..s.steps {
        loss_step(p, t, &o[t * bq..][..bq], &mut grad_o[t * bq..][..bq], &mut loss);
    }
    (loss, grad_o)
}

/// Step t's loss terms added to `loss`, and ∂L/∂o_t `[B,q]` (zero where the step is not scored).
///   mse:  ℓ = ½‖o − y‖²,             ∂ℓ/∂o = o − y
///   xent: ℓ = −log `softmax(o)[label]`, ∂ℓ/∂o = softmax(o) − onehot(label)
pub fn loss_step(p: &Problem, t: usize, o_t: &[f64], grad_o_t: &mut [f64], loss: &mut f64) {
    let s = p.shape;
    let (nb, q) = (s.batch, s.output);
    let scale = loss_weight(p, t);
    if scale == 0.0 {
        grad_o_t.fill(0.0);
        return;
    }
    for b in 0..nb {
        let o_tb = &o_t[b * q..][..q];
        let g = &mut grad_o_t[b * q..][..q];
        match &p.targets {
            Targets::Mse(y) => {
                let y_tb = &y[(t * nb + b) * q..][..q];
                for k in 0..q {
                    let diff = o_tb[k] - y_tb[k];
                    *loss += scale * 0.5 * diff * diff;
                    g[k] = scale * diff;
                }
            }
            Targets::Xent(labels) => {
                let label = labels[t * nb + b] as usize;
                // log-sum-exp with the max subtracted, so large logits do not overflow.
                let m = o_tb.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let sum_exp: f64 = o_tb.iter().map(|&v| (v - m).exp()).sum();
                let log_z = m + sum_exp.ln();
                *loss += scale * (log_z - o_tb[label]);
                for k in 0..q {
                    let softmax = (o_tb[k] - log_z).exp();
                    g[k] = scale * (softmax - if k == label { 1.0 } else { 0.0 });
                }
            }
        }
    }
}

/// Forward, loss, and backward in reverse time order.
pub fn bptt(p: &Problem) -> BpttResult {
    let s = p.shape;
    let (nt, nb, d, nh, q) = (s.steps, s.batch, s.input, s.hidden, s.output);
    let w = &p.params;
    let fwd = forward(p);
    let (loss, grad_o) = loss_and_grad_o(p, &fwd.o);

    let mut grad_w_hx = vec![0.0; nh * d];
    let mut grad_w_hh = vec![0.0; nh * nh];
    let mut grad_w_qh = vec![0.0; q * nh];
    let mut grad_b_h = vec![0.0; nh];
    let mut grad_b_q = vec![0.0; q];
    let mut grad_h_norm = vec![0.0; nt];
    // ∂L/∂a_{t+1} [B,h]; zero beyond the last step.
    let mut grad_a_next = vec![0.0; nb * nh];
    let mut grad_h = vec![0.0; nb * nh];
    let mut grad_a = vec![0.0; nb * nh];

    for t in (0..nt).rev() {
        for b in 0..nb {
            let grad_o_tb = &grad_o[(t * nb + b) * q..][..q];
            for i in 0..nh {
                // ∂L/∂h_t[i] = Σ_j ∂L/∂a_{t+1}[j] w_hh[j,i] + Σ_k ∂L/∂o_t[k] w_qh[k,i]
                let mut acc = 0.0;
                for j in 0..nh {
                    acc += grad_a_next[b * nh + j] * w.w_hh[j * nh + i];
                }
                for k in 0..q {
                    acc += grad_o_tb[k] * w.w_qh[k * nh + i];
                }
                grad_h[b * nh + i] = acc;
                // ∂L/∂a_t = ∂L/∂h_t ⊙ φ'(a_t)
                let h_ti = fwd.h[(t * nb + b) * nh + i];
                grad_a[b * nh + i] = acc * phi_prime(p.activation, h_ti);
            }
        }
        // grad_h_norm[t] = ‖∂L/∂h_t‖, Frobenius over the batch.
        grad_h_norm[t] = crate::model::norm(&grad_h);

        for b in 0..nb {
            let row = t * nb + b;
            let h_t = &fwd.h[row * nh..][..nh];
            let h_prev = if t == 0 { &p.h0[b * nh..][..nh] } else { &fwd.h[((t - 1) * nb + b) * nh..][..nh] };
            let x_t = &p.x[row * d..][..d];
            let grad_o_tb = &grad_o[row * q..][..q];
            // ∂L/∂w_qh += ∂L/∂o_tᵀ·h_t,  ∂L/∂b_q += ∂L/∂o_t
            for k in 0..q {
                for i in 0..nh {
                    grad_w_qh[k * nh + i] += grad_o_tb[k] * h_t[i];
                }
                grad_b_q[k] += grad_o_tb[k];
            }
            for i in 0..nh {
                let g = grad_a[b * nh + i];
                // ∂L/∂w_hx += ∂L/∂a_tᵀ·x_t
                for j in 0..d {
                    grad_w_hx[i * d + j] += g * x_t[j];
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
    let grad_h0 = times_w_hh(&grad_a_next, &w.w_hh, nh);

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

/// `rows·w_hh` for rows `[B,h]`: `out[b,i] = Σ_j rows[b,j]·w_hh[j,i]` (∂L/∂h0 = ∂L/∂a_1·w_hh).
pub fn times_w_hh(rows: &[f64], w_hh: &[f64], nh: usize) -> Vec<f64> {
    let mut out = vec![0.0; rows.len()];
    for (row, out) in rows.chunks_exact(nh).zip(out.chunks_exact_mut(nh)) {
        for i in 0..nh {
            let mut acc = 0.0;
            for j in 0..nh {
                acc += row[j] * w_hh[j * nh + i];
            }
            out[i] = acc;
        }
    }
    out
}

/// L alone (a forward pass and the loss), for finite differences.
pub fn loss(p: &Problem) -> f64 {
    loss_and_grad_o(p, &forward(p).o).0
}
