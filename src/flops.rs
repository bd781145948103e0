//! The napkin math behind GFLOP/s and GB/s in the report (docs/design.md, "FLOP and byte model").
//!
//! FLOPs (multiply and add count 2), per time step and batch entry:
//!   forward:  a_t: 2(hd + h²), o_t: 2qh                       → 2(hd + h² + qh)
//!   backward: ∂L/∂h_t: 2(h² + qh); weight-gradient terms ∂L/∂a_tᵀ·x_t, ∂L/∂a_tᵀ·h_{t-1},
//!             ∂L/∂o_tᵀ·h_t: 2(hd + h² + qh)                  → 2(hd + 2h² + 2qh)
//! so one forward + backward is 2·T·B·(2hd + 3h² + 3qh) FLOPs (loss and φ are lower order).
//!
//! Bytes: the weights dominate at small batch. The fused schedule reads w_hh once per step each
//! way (the recurrences), and everything else about once: 4·(2·T·h² + 3(hd + h² + qh)) bytes
//! for the weights and their gradients, plus the activations (x, xproj, h, o, y, ∂L/∂o, gq,
//! ∂L/∂a, ∂L/∂h, each written once and read once or twice): 4·T·B·(2d + 8h + 4q).
//! The stepwise schedule reads w_hx, w_hh, w_qh once per step
//! forward and w_hh, w_qh once per step backward, and reads and writes every weight gradient
//! once per step: 4·T·(hd + h² + qh)·3 + 4·T·(h² + qh) bytes, plus the activations (x, h, o, y
//! and their gradients, a few times T·B·(d + h + q) floats), which matter only for large B.

use crate::model::Shape;

pub fn flops(s: Shape) -> f64 {
    let (t, b, d, h, q) = (s.steps as f64, s.batch as f64, s.input as f64, s.hidden as f64, s.output as f64);
    2.0 * t * b * (2.0 * h * d + 3.0 * h * h + 3.0 * q * h)
}

/// Bytes the fused schedule moves (see the module comment).
pub fn bytes_fused(s: Shape) -> f64 {
    let (t, b, d, h, q) = (s.steps as f64, s.batch as f64, s.input as f64, s.hidden as f64, s.output as f64);
    4.0 * (2.0 * t * h * h + 3.0 * (h * d + h * h + q * h)) + 4.0 * t * b * (2.0 * d + 8.0 * h + 4.0 * q)
}

/// Bytes the stepwise schedule moves (see the module comment).
pub fn bytes_stepwise(s: Shape) -> f64 {
    let (t, b, d, h, q) = (s.steps as f64, s.batch as f64, s.input as f64, s.hidden as f64, s.output as f64);
    let weights = h * d + h * h + q * h;
    4.0 * t * (3.0 * weights + h * h + q * h) + 4.0 * 4.0 * t * b * (d + h + q)
}
