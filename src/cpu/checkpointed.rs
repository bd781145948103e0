//! The f64 reference under a memory budget: the same steps as `reference` and `truncated`
//! (`reference::step`, `reference::output`, `reference::loss_step`, `truncated::Backward`),
//! carried out in the order a checkpointing plan of single steps says (`checkpoint`,
//! docs/design.md "Checkpointing"), so the results equal the full-storage run's bit for bit
//! while at most c states are held. It is the oracle of the schedule: every other path's
//! checkpointed run is compared with it.
//!
//! Held at once: the c slots, the current and the held state, one step's output and its
//! pre-activations (`[B,h]` each), o_t and ∂L/∂o_t (`[B,q]`), and the backward pass's lanes
//! (`truncated::Backward`).

use crate::checkpoint::{Action, Costs, Plan, Slots};
use crate::cpu::reference::{loss_step, output, step};
use crate::cpu::truncated::{Backward, carry_into};
use crate::error::{Error, Result};
use crate::model::{BpttResult, Problem, Shape};
use crate::variant::truncation::{Truncation, random_carry_scales};

/// What a checkpointed run did, for the report.
#[derive(Clone, Debug, PartialEq)]
pub struct Recomputed {
    /// Forward steps evaluated, the first sweep included (T for plain BPTT).
    pub forward_steps: u64,
    /// Bytes held at the peak for everything that grows with T or c.
    pub peak_bytes: u64,
    /// h_T `[B,h]`, the one state a caller may carry on (the result keeps no states).
    pub last_state: Vec<f64>,
}

/// The bytes a checkpointed reference run holds (see the module doc).
pub fn bytes(p: &Problem, truncate: Option<Truncation>, plan: &Plan) -> u64 {
    costs(p.shape, truncate).bytes(plan)
}

/// What a checkpointed reference run holds, for `checkpoint::choose`: f64 states in the slots,
/// units of one step.
pub fn costs(s: Shape, truncate: Option<Truncation>) -> Costs {
    let (bh, bq) = ((s.batch * s.hidden) as u64, (s.batch * s.output) as u64);
    Costs {
        state: 8 * bh,
        per_step: 0,
        fixed: 8 * 4 * bh + 8 * 2 * bq + Backward::bytes(s, lanes_k(truncate)),
        max_unit: 1,
        max_slots: usize::MAX,
        unit_overhead: 0.0,
    }
}

/// The bytes a full-storage reference run holds for the same: a, h, o, ∂L/∂o for every step and
/// the backward pass's state.
pub fn full_bytes(s: Shape, truncate: Option<Truncation>) -> u64 {
    let rows = (s.steps * s.batch) as u64;
    8 * rows * (2 * s.hidden as u64 + 2 * s.output as u64) + Backward::bytes(s, lanes_k(truncate))
}

fn lanes_k(truncate: Option<Truncation>) -> usize {
    match truncate {
        Some(Truncation::Regular(k)) => k,
        _ => usize::MAX,
    }
}

/// BPTT of `p` (truncated as `truncate` says) carried out by `plan`, whose units must be
/// single steps. The result has no states (h and o are empty: they were never all held).
pub fn bptt(p: &Problem, truncate: Option<Truncation>, plan: &Plan) -> Result<(BpttResult, Recomputed)> {
    let s = p.shape;
    let (nt, nb, nh, q) = (s.steps, s.batch, s.hidden, s.output);
    if plan.steps != nt || plan.unit_steps != 1 {
        return Err(Error::Invalid(format!(
            "the reference runs plans of single steps over all {nt} steps, not {} units of {} over {}",
            plan.units, plan.unit_steps, plan.steps
        )));
    }
    let scales = match truncate {
        Some(Truncation::Random { p: cut, seed }) => random_carry_scales(nt, cut, seed)?,
        Some(Truncation::Regular(0)) => {
            return Err(Error::Invalid("truncation length K must be at least 1".into()));
        }
        _ => vec![1.0; nt],
    };
    let (bh, bq) = (nb * nh, nb * q);
    let mut slots = Slots::default();
    let mut current = p.h0.clone();
    let mut held = vec![0.0; bh];
    let mut next = vec![0.0; bh];
    let mut a_t = vec![0.0; bh];
    let mut o_t = vec![0.0; bq];
    let mut grad_o_t = vec![0.0; bq];
    let mut loss = 0.0;
    let mut unscored = 0.0; // the reversals' loss terms, already counted by the sweep
    let mut evaluated = 0u64;
    let mut last_state = vec![0.0; bh];
    let mut backward = Backward::new(p, lanes_k(truncate));

    for action in plan.actions() {
        match action {
            Action::Advance { from, to, sweep } => {
                // Unit j is the math's step j, code step j − 1.
                for t in from..to {
                    step(p, t, &current, &mut a_t, &mut next);
                    std::mem::swap(&mut current, &mut next);
                    if sweep {
                        output(p, &current, &mut o_t);
                        loss_step(p, t, &o_t, &mut grad_o_t, &mut loss);
                    }
                }
                evaluated += (to - from) as u64;
            }
            Action::Store { slot, .. } => slots.store(slot, &current),
            Action::Restore { slot, .. } => slots.restore(slot, &mut current),
            Action::Tail => {
                let t = nt - 1;
                step(p, t, &current, &mut a_t, &mut held);
                output(p, &held, &mut o_t);
                loss_step(p, t, &o_t, &mut grad_o_t, &mut loss);
                last_state.copy_from_slice(&held);
                evaluated += 1;
            }
            Action::Reverse { unit } => {
                // h_t is held, h_{t−1} current; o_t and ∂L/∂o_t are recomputed from h_t.
                let t = unit - 1;
                output(p, &held, &mut o_t);
                loss_step(p, t, &o_t, &mut grad_o_t, &mut unscored);
                backward.step(p, t, carry_into(&scales, t), &held, &current, &grad_o_t);
                std::mem::swap(&mut current, &mut held);
            }
        }
    }
    let result = backward.finish(p, scales[0], loss, Vec::new(), Vec::new());
    let stats = Recomputed { forward_steps: evaluated, peak_bytes: bytes(p, truncate, plan), last_state };
    Ok((result, stats))
}
