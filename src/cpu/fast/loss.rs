//! L and ∂L/∂o over a window of steps (all of them in a full run), in f32 with the loss summed in f64 (it is a sum of
//! T·B·q terms that would otherwise lose digits). Same formulas and weights as the reference.

use std::ops::Range;

use super::flush_tiny;
use crate::cpu::reference::loss_weight;
use crate::model::{Problem, Targets};

/// ∂L/∂o `[len,B,q]` for the outputs `o` `[len,B,q]` of the steps `steps` (0-based, len of
/// them), their loss terms added to `loss` in step order.
pub fn loss_and_grad_o(p: &Problem, steps: Range<usize>, o: &[f32], grad_o: &mut [f32], loss: &mut f64) {
    let s = p.shape;
    let (nb, q) = (s.batch, s.output);
    for (k, t) in steps.enumerate() {
        let scale = loss_weight(p, t);
        let rows = k * nb * q..(k + 1) * nb * q;
        if scale == 0.0 {
            grad_o[rows].fill(0.0);
            continue;
        }
        for b in 0..nb {
            let row = (t * nb + b) * q; // in the problem's y
            let local = (k * nb + b) * q; // in this window's o and ∂L/∂o
            let o_tb = &o[local..][..q];
            let g = &mut grad_o[local..][..q];
            let l = match &p.targets {
                // ℓ = ½‖o − y‖², ∂ℓ/∂o = o − y
                Targets::Mse(y) => {
                    let mut l = 0.0f64;
                    for ((g, &o), &y) in g.iter_mut().zip(o_tb).zip(&y[row..][..q]) {
                        let diff = o - y as f32;
                        l += 0.5 * (diff as f64) * (diff as f64);
                        *g = flush_tiny(scale as f32 * diff);
                    }
                    l
                }
                // ℓ = −log softmax(o)[label], ∂ℓ/∂o = softmax(o) − onehot(label); the max is
                // subtracted before exp so large logits do not overflow.
                Targets::Xent(labels) => {
                    let label = labels[t * nb + b] as usize;
                    let m = o_tb.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                    let sum_exp: f32 = o_tb.iter().map(|&v| (v - m).exp()).sum();
                    let log_z = m + sum_exp.ln();
                    for (k, (g, &o)) in g.iter_mut().zip(o_tb).enumerate() {
                        let onehot = if k == label { 1.0 } else { 0.0 };
                        *g = flush_tiny(scale as f32 * ((o - log_z).exp() - onehot));
                    }
                    (log_z - o_tb[label]) as f64
                }
            };
            *loss += scale * l;
        }
    }
}
