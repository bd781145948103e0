//! Exact BPTT within a memory budget (docs/gradients.md "Long sequences in bounded memory"):
//! for each path, whether it stores every state or checkpoints them, and with which plan
//! (`checkpoint::choose` on the path's own costs). A budget that holds the whole run changes
//! nothing; a shape whose states a GPU cannot bind is checkpointed without being asked.

use serde::Serialize;

use crate::checkpoint::{Costs, Plan, choose};
use crate::error::{Error, Result};

/// What the caller asks for: a bound on the bytes that grow with T, and/or the slot count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryOptions {
    /// Bytes the run may hold for everything that grows with T (`memory`).
    pub budget: Option<u64>,
    /// c, the states held at once, h0's included (`checkpoints`).
    pub checkpoints: Option<usize>,
}

impl MemoryOptions {
    pub fn is_set(&self) -> bool {
        self.budget.is_some() || self.checkpoints.is_some()
    }

    /// The options alone: a budget > 0, at least one slot.
    pub fn check(&self) -> Result<()> {
        if self.budget == Some(0) {
            return Err(Error::Invalid("`memory` must be more than 0 bytes".into()));
        }
        if self.checkpoints == Some(0) {
            return Err(Error::Invalid("`checkpoints` must be at least 1 (the slot of h0)".into()));
        }
        Ok(())
    }
}

/// How one path holds its states.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PathMemory {
    /// "gpu", "cpu" or "cpu-ref".
    pub path: &'static str,
    /// The plan when it checkpoints; None: it stores every state.
    pub plan: Option<Plan>,
    /// What storing every state holds, in bytes.
    pub full_bytes: u64,
    /// What the run holds at its peak: the plan's bytes, or `full_bytes`.
    pub peak_bytes: u64,
    /// Why it checkpoints without being asked (the GPU's limits), if so.
    pub automatic: Option<String>,
}

/// The path's plan under `opts`: none when nothing is asked and nothing forces it, or when a
/// budget alone holds the whole run; else `choose`'s. `forced`: the reason the path cannot
/// store every state (then it checkpoints even unasked).
pub fn plan_path(
    path: &'static str,
    steps: usize,
    opts: &MemoryOptions,
    costs: &Costs,
    full_bytes: u64,
    forced: Option<String>,
) -> Result<PathMemory> {
    opts.check()?;
    let whole = PathMemory { path, plan: None, full_bytes, peak_bytes: full_bytes, automatic: None };
    let budget_holds_all = opts.checkpoints.is_none() && opts.budget.is_some_and(|b| b >= full_bytes);
    if forced.is_none() && (!opts.is_set() || budget_holds_all) {
        return Ok(whole);
    }
    let plan = choose(steps, opts.budget, opts.checkpoints, costs)?;
    let automatic = if opts.is_set() { None } else { forced };
    Ok(PathMemory { path, plan: Some(plan), full_bytes, peak_bytes: costs.bytes(&plan), automatic })
}

/// What a checkpointed run held and did: the `memory` fields of the check's and training's
/// reports (docs/report.md, "JSON output").
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MemoryFigures {
    /// The budget asked for (null without one: `checkpoints` alone, or checkpointed unasked).
    pub budget_bytes: Option<u64>,
    /// What storing every state holds, for everything that grows with T.
    pub full_bytes: u64,
    /// What the run held at its peak for the same.
    pub peak_bytes: u64,
    /// c, the states held at once (h0's included).
    pub checkpoints: usize,
    /// L, the steps of a unit (one on the reference, a window on the other paths).
    pub chunk_steps: usize,
    /// Forward step evaluations, the first sweep included: T for plain BPTT.
    pub forward_steps: u64,
    /// The fewest any schedule with these checkpoints and units can do.
    pub forward_steps_optimal: u64,
}

impl PathMemory {
    /// Its figures when it checkpointed, with the forward steps its run evaluated.
    pub fn figures(&self, budget: Option<u64>, forward_steps: u64) -> Option<MemoryFigures> {
        let plan = self.plan?;
        Some(MemoryFigures {
            budget_bytes: budget,
            full_bytes: self.full_bytes,
            peak_bytes: self.peak_bytes,
            checkpoints: plan.slots_used(),
            chunk_steps: plan.unit_steps,
            forward_steps,
            forward_steps_optimal: plan.forward_steps(),
        })
    }
}
