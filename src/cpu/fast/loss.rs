//! L and ∂L/∂o over all steps at once, in f32 with the loss summed in f64 (it is a sum of
//! T·B·q terms that would otherwise lose digits). Same formulas and weights as the reference.

use super::flush_tiny;
use crate::cpu::reference::loss_weight;
use crate::model::{Problem, Targets};

/// (L, ∂L/∂o [T,B,q]) for outputs `o` [T,B,q].
pub fn loss_and_grad_o(p: &Problem, o: &[f32]) -> (f64, Vec<f32>) {
    let s = p.shape;
    let (nt, nb, q) = (s.steps, s.batch, s.output);
    let mut loss = 0.0f64;
    let mut grad_o = vec![0.0f32; nt * nb * q];
    for t in 0..nt {
        let scale = loss_weight(p, t);
        if scale == 0.0 {
            continue;
        }
        for b in 0..nb {
            let row = (t * nb + b) * q;
            let o_tb = &o[row..][..q];
            let g = &mut grad_o[row..][..q];
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
            loss += scale * l;
        }
    }
    (loss, grad_o)
}
