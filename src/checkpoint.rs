//! Binomial checkpointing: exact BPTT in memory that does not grow with T (docs/design.md,
//! "Checkpointing").
//!
//! The sequence is cut into n *units* of L steps each (the last one may be shorter): single
//! steps on the f64 reference and the stepwise GPU schedule, windows of steps on the paths
//! whose products run over many rows at once (the fast CPU path, the fused GPU schedule). x_j
//! is the state after unit j (x_0 = h0, x_n = h_T). A run holds at most `slots` of these states
//! at once (x_0's slot included), plus two working states: the *current* one, which advances,
//! and the *held* one, which the last reversal left behind. Reversing unit j needs x_{j−1}
//! current and x_j held (φ′ comes from h_t, ∂L/∂w_hh needs h_{t−1}); afterwards x_{j−1} is the
//! held state, so the next reversal needs only x_{j−2}. A unit of several steps recomputes its
//! inner states from x_{j−1} when it is reversed (L − 1 steps), except the last unit, whose
//! states the first sweep leaves in place.
//!
//! [`Plan::actions`] emits the schedule as a stream of [`Action`]s, as Revolve's driver does
//! (Griewank & Walther, ACM TOMS 26(1), Algorithm 799). Its unit advances are the minimum
//! p(n, c) of the dynamic program
//!
//!   p(1, c) = 0,   p(n, 1) = n(n − 1)/2,   p(n, c) = min over 1 ≤ i < n of [ i + p(i, c) + p(n − i, c − 1) ]
//!
//! (advance i units from x_0 and store x_i; reverse the right part with one slot fewer; then the
//! left part, x_i now held), whose value is Griewank's binomial closed form
//! p(n, c) = r·n − C(c + r, c + 1), r the least integer with C(c + r, c) ≥ n ([`advances`]).
//! The first sweep is part of the count: it advances to x_{n−1} along the schedule and then
//! evaluates the last unit once (the *tail*). So a run evaluates
//!
//!   F = L·p(n, c) + ℓ_n + (n − 1)(L − 1)
//!
//! forward steps ([`Plan::forward_steps`]): T for plain BPTT (c ≥ n, L = 1), p(T, c) + 1 for
//! single steps; at T = 1000 and c = 50, 1949. The states are used last in, first out, so slot
//! k is only ever written when slots 0..k hold the states of the frames below it: a stack.
//!
//! Nothing here touches data: the engines carry out the actions (`cpu::checkpointed`,
//! `cpu::fast`, `gpu`), and [`choose`] picks c and L for a memory budget.

use crate::error::{Error, Result};

/// One instruction of a checkpointed run, in the order the engine carries them out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Evaluate units from+1..=to starting at the current state x_from; x_to becomes current.
    /// `sweep`: this is the first sweep, which also scores the outputs (the loss).
    Advance { from: usize, to: usize, sweep: bool },
    /// Copy the current state (x_state) into `slot`.
    Store { slot: usize, state: usize },
    /// Make the state in `slot` (x_state) current.
    Restore { slot: usize, state: usize },
    /// The end of the first sweep: evaluate the last unit from the current x_{n−1}, scoring its
    /// outputs, into the held state x_n. Its inner states stay where the engine computed them,
    /// for the reversal that follows at once.
    Tail,
    /// Reverse unit `unit` (x_{unit−1} current, x_unit held): its backward steps, last to first.
    /// Afterwards x_{unit−1} is held and nothing is current.
    Reverse { unit: usize },
}

/// A checkpointed run's shape: T steps in n units of L steps (the last ℓ_n ≤ L), c slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Plan {
    pub steps: usize,
    /// L: the steps of every unit but the last.
    pub unit_steps: usize,
    /// n = ⌈T / L⌉.
    pub units: usize,
    /// c ≥ 1: the states stored at once, x_0's included.
    pub slots: usize,
}

impl Plan {
    /// T steps in units of `unit_steps` (clamped to 1..=T), with `slots` slots (at least 1;
    /// more than n − 1 slots are never used).
    pub fn new(steps: usize, unit_steps: usize, slots: usize) -> Result<Self> {
        if steps == 0 {
            return Err(Error::Invalid("a checkpointed run needs at least one step".into()));
        }
        if slots == 0 {
            return Err(Error::Invalid("`checkpoints` must be at least 1 (the slot of h0)".into()));
        }
        let unit_steps = unit_steps.clamp(1, steps);
        let units = steps.div_ceil(unit_steps);
        Ok(Plan { steps, unit_steps, units, slots })
    }

    /// The steps of unit j (1-based) as 0-based step indices: unit j covers the math's steps
    /// t = start+1..=end.
    pub fn unit_range(&self, unit: usize) -> std::ops::Range<usize> {
        assert!((1..=self.units).contains(&unit), "unit {unit} of {}", self.units);
        let start = (unit - 1) * self.unit_steps;
        start..(start + self.unit_steps).min(self.steps)
    }

    /// The step count of unit j.
    pub fn unit_len(&self, unit: usize) -> usize {
        self.unit_range(unit).len()
    }

    /// The slots the schedule uses: min(c, n) (a state x_n is never stored).
    pub fn slots_used(&self) -> usize {
        self.slots.min(self.units)
    }

    /// F, the forward step evaluations of the whole run, the first sweep included (see the
    /// module doc): what [`Plan::actions`] does, and the least any schedule of this model can.
    pub fn forward_steps(&self) -> u64 {
        let (n, l) = (self.units as u64, self.unit_steps as u64);
        let last = self.unit_len(self.units) as u64;
        l * advances(n, self.slots as u64) + last + (n - 1) * (l - 1)
    }

    /// The forward steps a sequence of actions evaluates (counted from the actions, not from
    /// the formula): units advanced × their lengths, the tail, and each reversal's inner states.
    pub fn count(&self, actions: impl IntoIterator<Item = Action>) -> u64 {
        actions
            .into_iter()
            .map(|a| match a {
                Action::Advance { from, to, .. } => (from + 1..=to).map(|j| self.unit_len(j) as u64).sum(),
                Action::Tail => self.unit_len(self.units) as u64,
                Action::Reverse { unit } if unit < self.units => self.unit_len(unit) as u64 - 1,
                _ => 0,
            })
            .sum()
    }

    /// The schedule, as a stream (memory O(c), whatever T is).
    pub fn actions(&self) -> Actions {
        Actions {
            slots: self.slots as u64,
            stack: vec![Frame { lo: 0, hi: self.units, slots: self.slots as u64 }],
            queue: std::collections::VecDeque::from([Action::Store { slot: 0, state: 0 }]),
            current: Some(0),
            sweep: true,
        }
    }
}

/// p(n, c): the fewest unit advances that reverse n units with c slots, x_0 stored and x_n held
/// (see the module doc): r·n − C(c + r, c + 1), r the least with C(c + r, c) ≥ n.
pub fn advances(n: u64, c: u64) -> u64 {
    assert!(c >= 1, "at least one slot");
    if n <= 1 {
        return 0;
    }
    if c == 1 {
        return n * (n - 1) / 2;
    }
    let (r, beta) = repetitions(n, c);
    // C(c + r, c + 1) = C(c + r, c) · r / (c + 1), exactly.
    (r as u128 * n as u128 - beta * r as u128 / (c as u128 + 1)) as u64
}

/// r, the least number of times some unit must be advanced (each unit is advanced at most r
/// times), and β(c, r) = C(c + r, c) ≥ n, the longest chain c slots reverse within r.
pub fn repetitions(n: u64, c: u64) -> (u64, u128) {
    let (mut r, mut beta) = (0u64, 1u128);
    while beta < n as u128 {
        r += 1;
        // β(c, r) = β(c, r − 1)·(c + r)/r, exact at every step.
        beta = beta * (c as u128 + r as u128) / r as u128;
    }
    (r, beta)
}

/// Where to put the first checkpoint above x_lo when reversing n units with c ≥ 2 slots: the i
/// minimising i + p(i, c) + p(n − i, c − 1). Each term is convex in i (p's slope, r, grows with
/// n), so the first i where the cost stops falling is a minimum: found by bisection.
fn split(n: u64, c: u64) -> u64 {
    debug_assert!(n >= 2 && c >= 2);
    let cost = |i: u64| i + advances(i, c) + advances(n - i, c - 1);
    let (mut lo, mut hi) = (1, n - 1);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if cost(mid + 1) < cost(mid) { lo = mid + 1 } else { hi = mid }
    }
    lo
}

/// Reverse units hi, hi−1, …, lo+1 with x_lo in slot `depth` and `slots` slots from there up.
#[derive(Clone, Copy, Debug)]
struct Frame {
    lo: usize,
    hi: usize,
    slots: u64,
}

/// The schedule of a [`Plan`], one action at a time.
pub struct Actions {
    slots: u64,
    /// The frames still to do; frame k's x_lo is in slot k.
    stack: Vec<Frame>,
    queue: std::collections::VecDeque<Action>,
    /// The state that is current, if any.
    current: Option<usize>,
    /// Still in the first sweep (nothing reversed yet).
    sweep: bool,
}

impl Actions {
    fn restore(&mut self, slot: usize, state: usize) {
        if self.current != Some(state) {
            self.queue.push_back(Action::Restore { slot, state });
            self.current = Some(state);
        }
    }

    fn advance(&mut self, to: usize) {
        let from = self.current.expect("advance from the current state");
        if to > from {
            self.queue.push_back(Action::Advance { from, to, sweep: self.sweep });
            self.current = Some(to);
        }
    }

    /// Reverse unit `unit` with x_{unit−1} current; in the first sweep the tail comes first.
    fn reverse(&mut self, unit: usize) {
        if self.sweep {
            self.queue.push_back(Action::Tail);
            self.sweep = false;
        }
        self.queue.push_back(Action::Reverse { unit });
        self.current = None;
    }
}

impl Iterator for Actions {
    type Item = Action;

    fn next(&mut self) -> Option<Action> {
        loop {
            if let Some(a) = self.queue.pop_front() {
                return Some(a);
            }
            let depth = self.stack.len().checked_sub(1)?;
            let Frame { lo, hi, slots } = self.stack[depth];
            if hi - lo == 1 {
                // x_lo and x_hi are all unit hi needs; x_lo's slot is free afterwards.
                self.restore(depth, lo);
                self.reverse(hi);
                self.stack.pop();
            } else if slots == 1 {
                // No slot to spare: advance from x_lo to x_{hi−1} and reverse unit hi.
                self.restore(depth, lo);
                self.advance(hi - 1);
                self.reverse(hi);
                self.stack[depth].hi = hi - 1;
            } else {
                // Store x_m; the units above it are reversed with one slot fewer, then this
                // frame goes on below m (x_m is held by then).
                let m = lo + split((hi - lo) as u64, slots) as usize;
                self.restore(depth, lo);
                self.advance(m);
                debug_assert!(((depth + 1) as u64) < self.slots);
                self.queue.push_back(Action::Store { slot: depth + 1, state: m });
                self.stack[depth].hi = m;
                self.stack.push(Frame { lo: m, hi, slots: slots - 1 });
            }
        }
    }
}

/// The slots of a host-memory run: states stored and restored by slot number, allocated as the
/// stack first reaches each slot.
#[derive(Default)]
pub struct Slots<T> {
    states: Vec<Vec<T>>,
}

impl<T: Copy> Slots<T> {
    /// `Action::Store`: a copy of `state` into `slot`.
    pub fn store(&mut self, slot: usize, state: &[T]) {
        if slot == self.states.len() {
            self.states.push(state.to_vec());
        } else {
            self.states[slot].copy_from_slice(state);
        }
    }

    /// `Action::Restore`: `slot`'s state copied into `state`.
    pub fn restore(&self, slot: usize, state: &mut [T]) {
        state.copy_from_slice(&self.states[slot]);
    }
}

/// What a path's run holds, in bytes, for [`choose`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Costs {
    /// One stored state (a slot).
    pub state: u64,
    /// Per step of a unit: what a window of L steps holds (inner states, projections,
    /// gradients) is `per_step · L`.
    pub per_step: u64,
    /// Held whatever c and L are: the two working states, the carried gradients, and buffers
    /// that stay proportional to T (per-step losses and norms).
    pub fixed: u64,
    /// The largest unit the path runs (single-step paths: 1; a GPU: the largest window its
    /// buffers bind).
    pub max_unit: usize,
    /// The most slots the path can hold (a GPU's largest buffer; usize::MAX: no limit).
    pub max_slots: usize,
    /// The cost of one window's work beyond its steps' arithmetic (dispatches, a submission, a
    /// team start-up), in forward steps: larger units amortise it.
    pub unit_overhead: f64,
}

impl Costs {
    /// The bytes a plan holds at its peak.
    pub fn bytes(&self, plan: &Plan) -> u64 {
        self.fixed + self.state * plan.slots_used() as u64 + self.per_step * plan.unit_steps as u64
    }

    /// The least budget any plan fits: one slot and a unit of one step.
    pub fn least(&self) -> u64 {
        self.fixed + self.state + self.per_step
    }
}

/// The plan for T steps under `budget` bytes (None: no bound) with `slots` if given (then units
/// of at most T/slots steps, so every slot holds a state): among unit lengths 1, 2, 4, … up to
/// the path's largest, the slots that fit, choosing the least
/// predicted time (forward steps, plus the overhead of each window's work: every unit advanced
/// and every unit reversed). Errors, naming the least budget
/// that would fit, when even one slot and a one-step unit do not.
pub fn choose(steps: usize, budget: Option<u64>, slots: Option<usize>, costs: &Costs) -> Result<Plan> {
    if budget == Some(0) {
        return Err(Error::Invalid("`memory` must be more than 0 bytes".into()));
    }
    if slots == Some(0) {
        return Err(Error::Invalid("`checkpoints` must be at least 1 (the slot of h0)".into()));
    }
    let mut best: Option<(f64, Plan)> = None;
    if costs.max_unit == 0 {
        return Err(Error::Limit(
            "even a window of one step does not fit this path's buffers: use a smaller `batch` or `hidden`".into(),
        ));
    }
    let max_unit = costs.max_unit.min(steps);
    let mut unit = 1usize;
    loop {
        let units = steps.div_ceil(unit);
        let c = match (budget, slots) {
            // C checkpoints are C unit boundaries: units no longer than T/C, so all are used.
            (_, Some(c)) => Some(c).filter(|&c| c <= costs.max_slots && units >= c.min(steps)),
            (Some(b), None) => {
                let room = b.checked_sub(costs.fixed + costs.per_step * unit as u64);
                room.map(|r| (r / costs.state.max(1)).min(units as u64) as usize).filter(|&c| c >= 1)
            }
            (None, None) => Some(units),
        }
        .map(|c| c.min(costs.max_slots));
        if let Some(c) = c {
            let plan = Plan::new(steps, unit, c)?;
            let fits = budget.is_none_or(|b| costs.bytes(&plan) <= b);
            if fits {
                // Each unit advanced and each unit reversed is one window's work.
                let windows = advances(units as u64, c as u64) + units as u64;
                let time = plan.forward_steps() as f64 + costs.unit_overhead * windows as f64;
                if best.as_ref().is_none_or(|(t, _)| time < *t) {
                    best = Some((time, plan));
                }
            }
        }
        if unit >= max_unit {
            break;
        }
        unit = (unit * 2).min(max_unit);
    }
    match best {
        Some((_, plan)) => Ok(plan),
        None => {
            let least = match slots {
                Some(c) => costs.fixed + costs.state * c.min(steps) as u64 + costs.per_step,
                None => costs.least(),
            };
            let what = match slots {
                Some(c) => format!("{c} checkpoint{}", if c == 1 { "" } else { "s" }),
                None => "one checkpoint".to_string(),
            };
            Err(Error::Invalid(format!(
                "`memory` {} is too small for {what} of this shape: it needs at least {}",
                crate::format::human_bytes(budget.unwrap_or(0)),
                crate::format::human_bytes(least)
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_closed_form_matches_revolves_published_counts() {
        // numforw(steps, snaps) of Revolve (TOMS 799).
        for (n, c, want) in [
            (1000, 10, 3636),
            (1000, 20, 2747),
            (1000, 50, 1948),
            (1000, 100, 1898),
            (10000, 100, 24747),
            (100000, 100, 294747),
            (100000, 1000, 198998),
        ] {
            assert_eq!(advances(n, c), want, "p({n}, {c})");
        }
    }

    #[test]
    fn units_split_with_the_short_one_last() {
        let p = Plan::new(10, 4, 2).unwrap();
        assert_eq!((p.units, p.unit_range(1), p.unit_range(3)), (3, 0..4, 8..10));
        assert_eq!(Plan::new(5, 9, 1).unwrap().unit_steps, 5);
    }
}
