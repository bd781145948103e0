//! One tiny problem worked out by hand: T=2, B=1, d=1, h=2, q=1, identity, mse, no biases,
//! h0 = 0. The numbers are chosen so every intermediate value is a short binary fraction,
//! which makes the reference's result exact up to a few ulps.

use bptt::cpu::reference;
use bptt::{Activation, Params, Problem, Targets};

use crate::common::shape;

#[track_caller]
fn assert_values(name: &str, got: &[f64], expected: &[f64]) {
    assert_eq!(got.len(), expected.len(), "{name}: length");
    for (i, (g, e)) in got.iter().zip(expected).enumerate() {
        assert!((g - e).abs() <= 1e-12, "{name}[{i}]: got {g}, expected {e}");
    }
}

#[test]
fn two_step_identity_mse_by_hand() {
    // w_hx = [1, 2]ᵀ  ([h,d] = [2,1])
    // w_hh = [[0.5,  1.0],
    //         [0.0, -0.5]]   (off-diagonal, so a transpose mix-up would show)
    // w_qh = [1, -1]   ([q,h] = [1,2])
    // x = [1, 2] (x_1 = 1, x_2 = 2), y = [0, 1], h0 = [0, 0].
    let p = Problem::new(
        shape(2, 1, 1, 2, 1),
        Activation::Identity,
        Params { w_hx: vec![1.0, 2.0], w_hh: vec![0.5, 1.0, 0.0, -0.5], w_qh: vec![1.0, -1.0], b_h: None, b_q: None },
        vec![1.0, 2.0],
        None,
        Targets::Mse(vec![0.0, 1.0]),
    )
    .expect("valid problem");

    // Forward:
    //   a_1 = w_hx·x_1 + w_hh·h0 = [1, 2]·1 + 0        = [1, 2]      h_1 = [1, 2]
    //   o_1 = w_qh·h_1 = 1·1 − 1·2                     = −1
    //   w_hh·h_1 = [0.5·1 + 1·2, 0·1 − 0.5·2]          = [2.5, −1]
    //   a_2 = w_hx·x_2 + w_hh·h_1 = [2, 4] + [2.5, −1]  = [4.5, 3]    h_2 = [4.5, 3]
    //   o_2 = 4.5 − 3                                  = 1.5
    // Loss, 1/(T·B) = 1/2:
    //   L = ½·(½(−1 − 0)² + ½(1.5 − 1)²) = ½·(0.5 + 0.125) = 0.3125
    // ∂L/∂o_t = (o_t − y_t)/2:  g_1 = −0.5,  g_2 = 0.25
    // Backward (row vectors):
    //   ∂L/∂h_2 = g_2·w_qh = [0.25, −0.25] = ∂L/∂a_2
    //   ∂L/∂a_2·w_hh = [0.25·0.5 − 0.25·0, 0.25·1 − 0.25·(−0.5)] = [0.125, 0.375]
    //   ∂L/∂h_1 = [0.125, 0.375] + g_1·w_qh = [0.125, 0.375] + [−0.5, 0.5] = [−0.375, 0.875]
    //   ∂L/∂h0 = ∂L/∂a_1·w_hh = [−0.375·0.5 + 0.875·0, −0.375·1 + 0.875·(−0.5)]
    //          = [−0.1875, −0.8125]
    //   ∂L/∂w_qh = g_1·h_1 + g_2·h_2 = [−0.5, −1] + [1.125, 0.75] = [0.625, −0.25]
    //   ∂L/∂w_hx = ∂L/∂a_1ᵀ·x_1 + ∂L/∂a_2ᵀ·x_2 = [−0.375, 0.875] + [0.5, −0.5] = [0.125, 0.375]
    //   ∂L/∂w_hh = ∂L/∂a_1ᵀ·h0 + ∂L/∂a_2ᵀ·h_1 = 0 + [0.25; −0.25]·[1, 2]
    //            = [[0.25, 0.5], [−0.25, −0.5]]
    //   grad_h_norm = [‖∂L/∂h_1‖, ‖∂L/∂h_2‖] = [√(0.140625 + 0.765625), √(0.0625 + 0.0625)]
    //               = [√0.90625, √0.125]
    let g = reference::bptt(&p);
    assert!((g.loss - 0.3125).abs() <= 1e-12, "loss {}", g.loss);
    assert!((reference::loss(&p) - 0.3125).abs() <= 1e-12);
    assert_values("h", &g.h, &[1.0, 2.0, 4.5, 3.0]);
    assert_values("o", &g.o, &[-1.0, 1.5]);
    assert_values("grad_w_hx", &g.grad_w_hx, &[0.125, 0.375]);
    assert_values("grad_w_hh", &g.grad_w_hh, &[0.25, 0.5, -0.25, -0.5]);
    assert_values("grad_w_qh", &g.grad_w_qh, &[0.625, -0.25]);
    assert_values("grad_h0", &g.grad_h0, &[-0.1875, -0.8125]);
    assert_values("grad_h_norm", &g.grad_h_norm, &[0.90625f64.sqrt(), 0.125f64.sqrt()]);
    assert!(g.grad_b_h.is_none() && g.grad_b_q.is_none());
}
