//! Training on the fast f32 CPU path (`cpu::fast`): each iteration is one forward + backward
//! there, clipping with `clip::clip_grads`, and the optimiser's f32 update (`optim`).
//!
//! Truncation of either kind runs on the fast path itself, for every task: `truncate` K as K
//! lanes of ∂L/∂a per step (about K products in all when only the last step is scored), and
//! randomised truncation with the iteration's cuts as per-step carry scales.

use super::tasks::Batch;
use super::weights::Weights;
use super::{Engine, H0, IterStats, StepConfig};
use crate::clip::{clip_grads, global_grad_norm};
use crate::cpu::fast;
use crate::error::{Error, Result};
use crate::model::{BpttResult, LossAt, Problem, Shape, Targets};
use crate::variant::memory::{MemoryFigures, PathMemory, plan_path};
use crate::variant::truncation::Truncation;

pub struct CpuEngine {
    cfg: StepConfig,
    /// Each iteration checkpointed by this plan, under a memory budget.
    plan: Option<PathMemory>,
    /// Forward steps of the last checkpointed iteration.
    forward_steps: Option<u64>,
    pub w: Weights,
    opt: super::optim::CpuOptim,
    /// h_T of the last training batch, [B,h], for sequential partitioning.
    carried: Vec<f64>,
    losses: Vec<IterStats>,
}

impl CpuEngine {
    pub fn new(cfg: StepConfig, w: Weights) -> Result<Self> {
        let opt = super::optim::CpuOptim::new(cfg.optim, &w);
        let carried = vec![0.0; cfg.shape.batch * cfg.shape.hidden];
        let s = cfg.shape;
        let plan = if cfg.memory.is_set() {
            let (costs, full) = (fast::costs(s, cfg.truncate), fast::full_bytes(s, cfg.truncate));
            Some(plan_path("cpu", s.steps, &cfg.memory, &costs, full, None)?)
        } else {
            None
        };
        Ok(CpuEngine { cfg, plan, forward_steps: None, w, opt, carried, losses: Vec::new() })
    }

    fn problem(&self, shape: Shape, x: Vec<f64>, h0: Vec<f64>, targets: Targets, loss_at: LossAt) -> Result<Problem> {
        Ok(Problem::new(shape, self.cfg.activation, self.w.params(), x, Some(h0), targets)?.with_loss_at(loss_at))
    }

    /// Loss and gradients of one batch: full BPTT, truncated K steps back, or with the
    /// iteration's random cuts (`carry`); checkpointed under a memory budget (then the result's
    /// `h` is h_T alone, the state the next minibatch may carry on from).
    pub fn grads(&mut self, batch: &Batch, h0: Vec<f64>, carry: Option<&[f64]>) -> Result<BpttResult> {
        let p = self.problem(self.cfg.shape, batch.x.clone(), h0, batch.targets.clone(), self.cfg.loss_at)?;
        if let Some(plan) = self.plan.as_ref().and_then(|m| m.plan) {
            let (mut g, stats) = match (self.cfg.truncate, carry) {
                (_, Some(c)) => fast::bptt_checkpointed_scaled(&p, &plan, c)?,
                (Some(Truncation::Regular(k)), None) => {
                    fast::bptt_checkpointed_with(&p, &plan, Some(Truncation::Regular(k)))?
                }
                (Some(Truncation::Random { .. }), None) => {
                    return Err(Error::Invalid("randomised truncation needs the iteration's cuts".into()));
                }
                (None, None) => fast::bptt_checkpointed(&p, &plan)?,
            };
            self.forward_steps = Some(stats.forward_steps);
            g.h = stats.last_state;
            return Ok(g);
        }
        match (self.cfg.truncate, carry) {
            (_, Some(c)) => fast::bptt_carry_scaled(&p, c),
            (Some(Truncation::Regular(k)), None) => fast::bptt_truncated(&p, Truncation::Regular(k)),
            (Some(Truncation::Random { .. }), None) => {
                Err(Error::Invalid("randomised truncation needs the iteration's cuts".into()))
            }
            (None, None) => Ok(fast::bptt(&p)),
        }
    }
}

impl Engine for CpuEngine {
    fn step(&mut self, batch: &Batch, h0: H0, carry: Option<&[f64]>) -> Result<()> {
        let s = self.cfg.shape;
        if !self.w.all_finite() {
            // An earlier update overflowed: this loss is not finite either, and the training
            // loop stops at the first one it reads, naming its iteration.
            self.losses.push(IterStats { loss: f64::NAN, grad_norm: f64::NAN });
            return Ok(());
        }
        let h0 = match h0 {
            H0::Zero => vec![0.0; s.batch * s.hidden],
            H0::Carried => std::mem::take(&mut self.carried),
        };
        let mut g = self.grads(batch, h0, carry)?;
        self.carried = g.h[g.h.len() - s.batch * s.hidden..].to_vec();
        let grad_norm = match self.cfg.clip {
            Some(theta) => clip_grads(&mut g, theta)?.0,
            None => global_grad_norm(&g),
        };
        self.losses.push(IterStats { loss: g.loss, grad_norm });
        let (gb_h, gb_q) = (g.grad_b_h.as_deref().unwrap_or(&[]), g.grad_b_q.as_deref().unwrap_or(&[]));
        self.opt.update(&mut self.w, [&g.grad_w_hx, &g.grad_w_hh, &g.grad_w_qh, gb_h, gb_q]);
        Ok(())
    }

    fn take_stats(&mut self) -> Result<Vec<IterStats>> {
        Ok(std::mem::take(&mut self.losses))
    }

    fn evaluate(&mut self, batch: &Batch) -> Result<(f64, Vec<f64>)> {
        let s = self.cfg.shape;
        if !self.w.all_finite() {
            return Ok((f64::NAN, Vec::new()));
        }
        let p =
            self.problem(s, batch.x.clone(), vec![0.0; s.batch * s.hidden], batch.targets.clone(), self.cfg.loss_at)?;
        // Under a budget, the forward pass alone, a window at a time.
        if let Some(plan) = self.plan.as_ref().and_then(|m| m.plan) {
            return Ok(fast::forward_loss(&p, plan.unit_steps));
        }
        let g = fast::bptt(&p);
        Ok((g.loss, g.o))
    }

    fn weights(&mut self) -> Result<Weights> {
        Ok(self.w.clone())
    }

    fn device(&self) -> String {
        "cpu (fast f32 path)".into()
    }

    fn memory(&self) -> Option<MemoryFigures> {
        let m = self.plan.as_ref()?;
        m.figures(self.cfg.memory.budget, self.forward_steps.or(m.plan.map(|p| p.forward_steps()))?)
    }
}
