//! The fast f32 path in layer mode (docs/model.md, "The layer mode"): the same recurrences and
//! GEMMs as `fast::bptt`, without the output side. The forward pass returns h_1..h_T; the
//! backward pass starts ∂L/∂a from the upstream gradients instead of ∂L/∂o·w_qh, and adds
//! ∂L/∂x = ∂L/∂A·w_hx as one more GEMM over all T·B rows. Inputs are f32 slices read in place
//! (no conversion); tested against `cpu::reference_layer` in tests/layer.rs.

use std::sync::OnceLock;

use super::aligned::{AlignedVec, padded};
use super::gemm::{View, gemm};
use super::recur::{Carry, Recurrence};
use super::simd::Isa;
use super::{add_column_sums, add_to_rows, transpose_padded};
use crate::layer::types::{LayerGrads, LayerShape, LayerWeights, Upstream};
use crate::model::Activation;

/// h_t = φ(x_t·w_hxᵀ + h_{t-1}·w_hhᵀ (+ b_h)) for t = 1..T: returns h_1..h_T `[T,B,h]`.
pub fn forward(s: LayerShape, act: Activation, w: &LayerWeights<f32>, x: &[f32], h0: &[f32]) -> Vec<f32> {
    // On one of rayon's workers, as `fast::bptt`.
    rayon::scope(|_| {
        let (nt, nb, d, nh) = (s.steps, s.batch, s.input, s.hidden);
        let (rows, bh) = (nt * nb, nb * nh);
        let recurrence = Recurrence::new(Isa::detect(), nb, nh);
        let w_hh = padded_copy(w.w_hh, nh, nh);
        // hs = [h0; a_1..a_T], where a_t = x_t·w_hxᵀ + b_h until step t turns it into h_t.
        let mut hs = AlignedVec::scratch((nt + 1) * bh);
        hs[..bh].copy_from_slice(h0);
        gemm(View::new(x, rows, d), View::new(w.w_hx, nh, d).t(), &mut hs[bh..], false);
        if let Some(b_h) = w.b_h {
            add_to_rows(&mut hs[bh..], b_h);
        }
        let w_hh_t = OnceLock::new();
        recurrence.forward(act, &w_hh, || &w_hh_t.get_or_init(|| transpose_padded(&w_hh, nh))[..], &mut hs);
        hs[bh..].to_vec()
    })
}

/// The backward pass from the forward's states and the upstream gradients (see `Upstream`).
pub fn backward(
    s: LayerShape,
    act: Activation,
    w: &LayerWeights<f32>,
    x: &[f32],
    h0: &[f32],
    up: &Upstream<f32>,
) -> LayerGrads<f32> {
    rayon::scope(|_| {
        let (nt, nb, d, nh) = (s.steps, s.batch, s.input, s.hidden);
        let (rows, bh) = (nt * nb, nb * nh);
        let recurrence = Recurrence::new(Isa::detect(), nb, nh);
        let w_hh = padded_copy(w.w_hh, nh, nh);
        let w_hh_t = OnceLock::new();

        // grad_a starts as the upstream g_t (g_T + the extra gradient into h_T) and becomes
        // ∂L/∂a step by step, last to first.
        let mut grad_a = AlignedVec::scratch(rows * nh);
        grad_a.copy_from_slice(up.grad_h);
        if let Some(last) = up.grad_h_last {
            grad_a[(nt - 1) * bh..].iter_mut().zip(last).for_each(|(g, l)| *g += l);
        }
        let mut grad_h0 = vec![0.0f32; bh];
        let transposed = || &w_hh_t.get_or_init(|| transpose_padded(&w_hh, nh))[..];
        recurrence.backward(act, &w_hh, transposed, up.h, &mut grad_a, &mut grad_h0, &Carry::Full, None, 0);

        // ∂L/∂w_hh = Σ_t ∂L/∂a_tᵀ·h_{t-1}: the first step against h0, the others against
        // h_1..h_{T-1} (the states come without h0 in front, so two GEMMs instead of one).
        let mut grad_w_hh = vec![0.0f32; nh * nh];
        gemm(View::new(&grad_a[..bh], nb, nh).t(), View::new(h0, nb, nh), &mut grad_w_hh, false);
        if nt > 1 {
            let later = View::new(&grad_a[bh..], rows - nb, nh).t();
            gemm(later, View::new(&up.h[..rows * nh - bh], rows - nb, nh), &mut grad_w_hh, true);
        }
        let grad_a_view = View::new(&grad_a, rows, nh);
        // ∂L/∂w_hx = ∂L/∂Aᵀ·X
        let mut grad_w_hx = vec![0.0f32; nh * d];
        gemm(grad_a_view.t(), View::new(x, rows, d), &mut grad_w_hx, false);
        // ∂L/∂X = ∂L/∂A·w_hx
        let mut grad_x = vec![0.0f32; rows * d];
        gemm(grad_a_view, View::new(w.w_hx, nh, d), &mut grad_x, false);
        let grad_b_h = w.b_h.map(|_| {
            let mut sums = vec![0.0f64; nh];
            add_column_sums(&mut sums, &grad_a, nh);
            sums.into_iter().map(|g| g as f32).collect()
        });
        LayerGrads { grad_x, grad_h0, grad_w_hx, grad_w_hh, grad_b_h }
    })
}

/// w [rows, cols] (row-major) at the padded row stride the recurrences read.
fn padded_copy(w: &[f32], rows: usize, cols: usize) -> AlignedVec {
    let ld = padded(cols);
    let mut out = AlignedVec::scratch(rows * ld);
    for (o, w) in out.chunks_mut(ld).zip(w.chunks(cols)) {
        o[..cols].copy_from_slice(w);
    }
    out
}
