//! For φ = identity, ∂L/∂h_t from the reference's backward recursion must equal the unrolled
//! closed form of docs/model.md (1-based t = 1..T):
//!
//!   ∂L/∂h_t = Σ_{i=t..T} (w_hhᵀ)^{T−i} w_qhᵀ ∂L/∂o_{T+t−i}
//!           = Σ_{k=0..T−t} (w_hhᵀ)^k w_qhᵀ ∂L/∂o_{t+k}       (k = T − i).
//!
//! Every piece is rebuilt here: the forward pass, ∂L/∂o, the matrix powers and
//! the sums, then compared with `grad_h_norm`, and, through ∂L/∂a_t = ∂L/∂h_t (identity), with
//! the full vectors `grad_h0`, `grad_w_hh` and `grad_w_hx`.

use bptt::cpu::reference;
use bptt::model::{norm, rel_err};
use bptt::{Activation, LossAt, LossFn, Problem, random_problem};

use crate::common::{grad_o, identity, matmul, matvec, shape, spec, transpose};

const TOL: f64 = 1e-10;

/// Per-step, per-batch-entry vectors: `v[t][b]`.
type Steps = Vec<Vec<Vec<f64>>>;

/// Identity-RNN states, written independently: (h [T+1][B] vectors with h[0] = h0, o [T][B]).
fn forward(p: &Problem) -> (Steps, Steps) {
    let s = p.shape;
    let (nt, nb, d, nh, q) = (s.steps, s.batch, s.input, s.hidden, s.output);
    let w = &p.params;
    let h0: Vec<Vec<f64>> = (0..nb).map(|b| p.h0[b * nh..(b + 1) * nh].to_vec()).collect();
    let mut h = vec![h0];
    let mut o = Vec::new();
    for t in 0..nt {
        let mut h_t = Vec::new();
        let mut o_t = Vec::new();
        for (b, h_prev) in h[t].iter().enumerate() {
            let x_tb = &p.x[(t * nb + b) * d..(t * nb + b + 1) * d];
            let from_x = matvec(&w.w_hx, x_tb, nh, d);
            let from_h = matvec(&w.w_hh, h_prev, nh, nh);
            let a: Vec<f64> =
                (0..nh).map(|i| from_x[i] + from_h[i] + w.b_h.as_ref().map_or(0.0, |b_h| b_h[i])).collect();
            let out = matvec(&w.w_qh, &a, q, nh);
            o_t.push((0..q).map(|k| out[k] + w.b_q.as_ref().map_or(0.0, |b_q| b_q[k])).collect());
            h_t.push(a);
        }
        h.push(h_t);
        o.push(o_t);
    }
    (h, o)
}

fn check(p: &Problem, case: &str) {
    let s = p.shape;
    let (nt, nb, d, nh, q) = (s.steps, s.batch, s.input, s.hidden, s.output);
    let w = &p.params;
    let (h, o) = forward(p);
    let o_flat: Vec<f64> = o.iter().flatten().flatten().copied().collect();
    let g_o = grad_o(p, &o_flat);

    // The rebuilt forward pass and ∂L/∂o agree with the reference's, so the comparison below
    // is about the backward pass alone.
    let fwd = reference::forward(p);
    assert!(rel_err(&fwd.o, &o_flat) < 1e-12, "{case}: forward o differs");
    let (_, ref_g_o) = reference::loss_and_grad_o(p, &fwd.o);
    assert!(rel_err(&ref_g_o, &g_o) < 1e-12, "{case}: ∂L/∂o differs");

    // (w_hhᵀ)^k for k = 0..T−1, by repeated products.
    let w_hh_t = transpose(&w.w_hh, nh, nh);
    let mut powers = vec![identity(nh)];
    for k in 1..nt {
        powers.push(matmul(&powers[k - 1], &w_hh_t, nh, nh, nh));
    }
    let w_qh_t = transpose(&w.w_qh, q, nh);

    // dh[t][b] = ∂L/∂h_{t+1} (0-based t here) = Σ_{k=0..T−1−t} (w_hhᵀ)^k w_qhᵀ ∂L/∂o[t+k].
    let mut dh = vec![vec![vec![0.0; nh]; nb]; nt];
    for (t, dh_t) in dh.iter_mut().enumerate() {
        for (b, dh_tb) in dh_t.iter_mut().enumerate() {
            for (k, power) in powers.iter().enumerate().take(nt - t) {
                let row = ((t + k) * nb + b) * q;
                let g_o_tb = &g_o[row..row + q];
                let term = matvec(power, &matvec(&w_qh_t, g_o_tb, nh, q), nh, nh);
                dh_tb.iter_mut().zip(&term).for_each(|(acc, v)| *acc += v);
            }
        }
    }

    let g = reference::bptt(p);
    assert_eq!(g.grad_h_norm.len(), nt);
    for (t, dh_t) in dh.iter().enumerate() {
        let expected = norm(&dh_t.concat());
        let err = (g.grad_h_norm[t] - expected).abs() / expected;
        assert!(
            err <= TOL,
            "{case}: grad_h_norm[{t}] = {:e}, closed form {expected:e} (rel err {err:e})",
            g.grad_h_norm[t]
        );
    }

    // ∂L/∂h0 = w_hhᵀ ∂L/∂h_1;  ∂L/∂w_hh = Σ_t ∂L/∂h_t ⊗ h_{t−1};  ∂L/∂w_hx = Σ_t ∂L/∂h_t ⊗ x_t.
    let grad_h0: Vec<f64> = (0..nb).flat_map(|b| matvec(&w_hh_t, &dh[0][b], nh, nh)).collect();
    let mut grad_w_hh = vec![0.0; nh * nh];
    let mut grad_w_hx = vec![0.0; nh * d];
    for t in 0..nt {
        for b in 0..nb {
            let x_tb = &p.x[(t * nb + b) * d..(t * nb + b + 1) * d];
            for i in 0..nh {
                for j in 0..nh {
                    grad_w_hh[i * nh + j] += dh[t][b][i] * h[t][b][j];
                }
                for j in 0..d {
                    grad_w_hx[i * d + j] += dh[t][b][i] * x_tb[j];
                }
            }
        }
    }
    for (name, got, expected) in [
        ("grad_h0", &g.grad_h0, &grad_h0),
        ("grad_w_hh", &g.grad_w_hh, &grad_w_hh),
        ("grad_w_hx", &g.grad_w_hx, &grad_w_hx),
    ] {
        let err = rel_err(got, expected);
        assert!(err <= TOL, "{case}: {name} differs from the closed form by {err:e}");
    }
}

#[test]
fn identity_grad_h_matches_unrolled_matrix_powers() {
    let shapes = [shape(12, 2, 3, 5, 3), shape(1, 3, 2, 4, 2), shape(7, 1, 2, 6, 4)];
    let mut cases = 0;
    for (n, s) in shapes.into_iter().enumerate() {
        for loss in [LossFn::Mse, LossFn::Xent] {
            for loss_at in [LossAt::All, LossAt::Last] {
                for bias in [false, true] {
                    // A random h0 in every other case, so h_0 ≠ 0 enters grad_w_hh.
                    let random_h0 = (n + cases) % 2 == 0;
                    let seed = 200 + cases as u64;
                    let p = random_problem(&spec(s, Activation::Identity, loss, bias, random_h0, seed))
                        .expect("valid random problem")
                        .with_loss_at(loss_at);
                    check(
                        &p,
                        &format!("{s} {} {loss_at:?} bias={bias} random_h0={random_h0} seed={seed}", loss.name()),
                    );
                    cases += 1;
                }
            }
        }
    }
}
