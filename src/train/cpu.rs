//! Training on the fast f32 CPU path (`cpu::fast`): each iteration is one forward + backward
//! there, clipping with `clip::clip_grads`, and the optimiser's f32 update (`optim`).
//!
//! `--truncate K` runs here when only the last step is scored (the adding task): then BPTT
//! truncated K steps back from that one loss term is exactly full BPTT over the last K steps
//! started from h_{T−K}, which a forward pass over the first T − K steps provides. With a loss
//! at every step, truncation needs K lanes of ∂L/∂a per step: the GPU path has them
//! (`--compute gpu`); here it is refused up front (`setup`).

use super::tasks::Batch;
use super::weights::Weights;
use super::{Engine, H0, StepConfig};
use crate::clip::clip_grads;
use crate::cpu::fast;
use crate::error::{Error, Result};
use crate::model::{BpttResult, LossAt, Problem, Shape, Targets};
use crate::variant::memory::{MemoryFigures, PathMemory, plan_path};

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
    losses: Vec<f64>,
}

impl CpuEngine {
    pub fn new(cfg: StepConfig, w: Weights) -> Result<Self> {
        let opt = super::optim::CpuOptim::new(cfg.optim, &w);
        let carried = vec![0.0; cfg.shape.batch * cfg.shape.hidden];
        let s = cfg.shape;
        let plan = if cfg.memory.is_set() {
            Some(plan_path("cpu", s.steps, &cfg.memory, &fast::costs(s), fast::full_bytes(s), None)?)
        } else {
            None
        };
        Ok(CpuEngine { cfg, plan, forward_steps: None, w, opt, carried, losses: Vec::new() })
    }

    fn problem(&self, shape: Shape, x: Vec<f64>, h0: Vec<f64>, targets: Targets, loss_at: LossAt) -> Result<Problem> {
        Ok(Problem::new(shape, self.cfg.activation, self.w.params(), x, Some(h0), targets)?.with_loss_at(loss_at))
    }

    /// Loss and gradients of one batch: full BPTT, or truncated K steps back from the last step.
    pub fn grads(&mut self, batch: &Batch, h0: Vec<f64>) -> Result<BpttResult> {
        let s = self.cfg.shape;
        if let Some(plan) = self.plan.as_ref().and_then(|m| m.plan) {
            let p = self.problem(s, batch.x.clone(), h0, batch.targets.clone(), self.cfg.loss_at)?;
            let (mut g, stats) = fast::bptt_checkpointed(&p, &plan)?;
            self.forward_steps = Some(stats.forward_steps);
            // The result keeps no states; h_T is what the next minibatch may carry on from.
            g.h = stats.last_state;
            return Ok(g);
        }
        let k = match self.cfg.truncate {
            Some(k) if k < s.steps => k,
            _ => {
                return Ok(fast::bptt(&self.problem(
                    s,
                    batch.x.clone(),
                    h0,
                    batch.targets.clone(),
                    self.cfg.loss_at,
                )?));
            }
        };
        if self.cfg.loss_at != LossAt::Last {
            return Err(Error::Invalid("`truncate` on `compute` cpu needs a loss at the last step only".into()));
        }
        // The first T − K steps, forward only (their loss is unscored here): h_{T−K}.
        let (nb, d, q) = (s.batch, s.input, s.output);
        let head = s.steps - k;
        let head_shape = Shape::new(head, nb, d, s.hidden, q)?;
        let zeros = match &batch.targets {
            Targets::Mse(_) => Targets::Mse(vec![0.0; head * nb * q]),
            Targets::Xent(_) => Targets::Xent(vec![0; head * nb]),
        };
        let prefix =
            fast::bptt(&self.problem(head_shape, batch.x[..head * nb * d].to_vec(), h0, zeros, LossAt::Last)?);
        let h_split = prefix.h[(head - 1) * nb * s.hidden..].to_vec();
        let tail_targets = match &batch.targets {
            Targets::Mse(y) => Targets::Mse(y[head * nb * q..].to_vec()),
            Targets::Xent(l) => Targets::Xent(l[head * nb..].to_vec()),
        };
        let tail_shape = Shape::new(k, nb, d, s.hidden, q)?;
        let mut g = fast::bptt(&self.problem(
            tail_shape,
            batch.x[head * nb * d..].to_vec(),
            h_split,
            tail_targets,
            LossAt::Last,
        )?);
        // The states of all T steps, for the carried h and the outputs.
        g.h = [prefix.h, g.h].concat();
        g.o = [prefix.o, g.o].concat();
        Ok(g)
    }
}

impl Engine for CpuEngine {
    fn step(&mut self, batch: &Batch, h0: H0) -> Result<()> {
        let s = self.cfg.shape;
        if !self.w.all_finite() {
            // An earlier update overflowed: this loss is not finite either, and the training
            // loop stops at the first one it reads, naming its iteration.
            self.losses.push(f64::NAN);
            return Ok(());
        }
        let h0 = match h0 {
            H0::Zero => vec![0.0; s.batch * s.hidden],
            H0::Carried => std::mem::take(&mut self.carried),
        };
        let mut g = self.grads(batch, h0)?;
        self.carried = g.h[g.h.len() - s.batch * s.hidden..].to_vec();
        if let Some(theta) = self.cfg.clip {
            clip_grads(&mut g, theta)?;
        }
        self.losses.push(g.loss);
        let (gb_h, gb_q) = (g.grad_b_h.as_deref().unwrap_or(&[]), g.grad_b_q.as_deref().unwrap_or(&[]));
        self.opt.update(&mut self.w, [&g.grad_w_hx, &g.grad_w_hh, &g.grad_w_qh, gb_h, gb_q]);
        Ok(())
    }

    fn take_losses(&mut self) -> Result<Vec<f64>> {
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
