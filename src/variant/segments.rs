//! Segments, on every path: n consecutive segments of the sequence, h carried across their
//! boundaries and the gradient cut there (the usual "detach"). The split, the cut as carry
//! multipliers, and the driver that runs any path segment by segment and adds up the results;
//! `cpu::segments` runs it on the f64 reference, `variant::gpu` on the GPU.
//!
//! L is still the full loss (weights 1/(T·B), or 1/B on the last step with `LossAt::Last`).
//! Each segment runs as a problem of its own (its slice of x and the targets, h0 = the carried
//! state), whose loss weight is 1/(T_seg·B) where the full problem's is 1/(T·B); L is linear in
//! the per-step weights, so its results are scaled by T_seg/T. With `LossAt::Last` only the
//! last segment has a loss term, and the others contribute zeros.

use crate::error::{Error, Result};
use crate::model::{BpttResult, LossAt, Problem, Shape, Targets};

/// The lengths of n consecutive segments of T steps: as equal as possible, the first ones
/// longer (T = 10, n = 3 → [4, 3, 3]). Errors when n == 0 or n > T.
pub fn segment_lengths(steps: usize, n: usize) -> Result<Vec<usize>> {
    if n == 0 || n > steps {
        return Err(Error::Invalid(format!("cannot split {steps} steps into {n} segments: need 1 ≤ segments ≤ steps")));
    }
    let (base, longer) = (steps / n, steps % n);
    Ok((0..n).map(|i| base + usize::from(i < longer)).collect())
}

/// The same cut as carry multipliers for `cpu::truncated::bptt_carry_scaled`: `scales[t]` (math index
/// t = 0..T−1) is 0 where h_t ends a segment (no gradient from a_{t+1} reaches it) and 1
/// elsewhere. h_0 belongs to the first segment, so `scales[0]` is 1.
pub fn segment_carry_scales(steps: usize, n: usize) -> Result<Vec<f64>> {
    let mut scales = vec![1.0; steps];
    let mut end = 0;
    for len in segment_lengths(steps, n)? {
        end += len;
        if end < steps {
            scales[end] = 0.0;
        }
    }
    Ok(scales)
}

/// The segment driver shared by every path: splits `p` into `n` segments, runs each through
/// `run` (which must return the forward states h and o) with h0 = the previous segment's last
/// state, and sums the results with the weights of the full problem. The states of the whole
/// sequence are the segments' states end to end.
pub fn run_in_segments(
    p: &Problem,
    n: usize,
    mut run: impl FnMut(&Problem) -> Result<BpttResult>,
) -> Result<BpttResult> {
    let s = p.shape;
    let lengths = segment_lengths(s.steps, n)?;
    let (nb, d, nh, q) = (s.batch, s.input, s.hidden, s.output);

    let mut total = BpttResult {
        loss: 0.0,
        grad_w_hx: vec![0.0; nh * d],
        grad_w_hh: vec![0.0; nh * nh],
        grad_w_qh: vec![0.0; q * nh],
        grad_b_h: p.has_bias().then(|| vec![0.0; nh]),
        grad_b_q: p.has_bias().then(|| vec![0.0; q]),
        grad_h0: vec![0.0; nb * nh],
        grad_h_norm: Vec::with_capacity(s.steps),
        h: Vec::with_capacity(s.steps * nb * nh),
        o: Vec::with_capacity(s.steps * nb * q),
    };

    let mut start = 0;
    for (i, &len) in lengths.iter().enumerate() {
        let last_segment = i + 1 == lengths.len();
        let h0 = if start == 0 { p.h0.clone() } else { total.h[(start - 1) * nb * nh..][..nb * nh].to_vec() };
        let targets = match &p.targets {
            Targets::Mse(y) => Targets::Mse(y[start * nb * q..][..len * nb * q].to_vec()),
            Targets::Xent(labels) => Targets::Xent(labels[start * nb..][..len * nb].to_vec()),
        };
        // Built field by field, not with Problem::new: the carried state is the forward's own
        // value, and an overflowed (non-finite) one should give non-finite results, as the
        // reference does, not a validation error.
        let segment = Problem {
            shape: Shape::new(len, nb, d, nh, q)?,
            activation: p.activation,
            loss_at: p.loss_at,
            params: p.params.clone(),
            x: p.x[start * nb * d..][..len * nb * d].to_vec(),
            h0,
            targets,
            drawn: None,
        };
        let g = run(&segment)?;
        if g.h.len() != len * nb * nh || g.o.len() != len * nb * q {
            return Err(Error::Invalid("a segment's run must return its forward states".into()));
        }
        total.h.extend_from_slice(&g.h);
        total.o.extend_from_slice(&g.o);
        // 1/(T·B) = (T_seg/T)·1/(T_seg·B). With `LossAt::Last` only the last segment holds the
        // scored step (with the full weight 1/B already); earlier ones run for their states
        // only and contribute no gradient.
        let scale = match p.loss_at {
            LossAt::All => len as f64 / s.steps as f64,
            LossAt::Last if last_segment => 1.0,
            LossAt::Last => 0.0,
        };
        total.loss += scale * g.loss;
        add_scaled(&mut total.grad_w_hx, &g.grad_w_hx, scale);
        add_scaled(&mut total.grad_w_hh, &g.grad_w_hh, scale);
        add_scaled(&mut total.grad_w_qh, &g.grad_w_qh, scale);
        if let (Some(acc), Some(gb)) = (total.grad_b_h.as_mut(), g.grad_b_h.as_ref()) {
            add_scaled(acc, gb, scale);
        }
        if let (Some(acc), Some(gb)) = (total.grad_b_q.as_mut(), g.grad_b_q.as_ref()) {
            add_scaled(acc, gb, scale);
        }
        if start == 0 {
            add_scaled(&mut total.grad_h0, &g.grad_h0, scale);
        }
        total.grad_h_norm.extend(g.grad_h_norm.iter().map(|n| scale * n));
        start += len;
    }
    Ok(total)
}

/// acc += scale·v
fn add_scaled(acc: &mut [f64], v: &[f64], scale: f64) {
    for (a, x) in acc.iter_mut().zip(v) {
        *a += scale * x;
    }
}
