//! `GpuBptt` as a building block for training (docs/training.md): the parameters stay in the
//! object's buffers between passes, new minibatches are written over the inputs, and the
//! forward + backward passes are recorded into the caller's command encoder, so one
//! submission can hold a whole iteration (the pass and the optimiser's update) and nothing is
//! read back unless asked for.

use super::schedule::{Config, Phase};
use super::{GpuBptt, GpuContext};
use crate::error::{Error, Result};
use crate::model::{Activation, LossAt, LossFn, Targets};

/// What the passes compute, fixed for a training run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PassConfig {
    pub activation: Activation,
    pub loss_fn: LossFn,
    pub loss_at: LossAt,
    pub bias: bool,
    /// Clip the parameter gradients to this global norm, on the GPU.
    pub clip: Option<f32>,
}

impl GpuBptt {
    /// A storage buffer by its name in `buffers::BufferSizes` (`w_hh`, `grad_w_hh`, `loss`, `h`, …).
    pub fn buffer(&self, name: &str) -> Result<&wgpu::Buffer> {
        self.buffers.get(name).ok_or_else(|| Error::Invalid(format!("the GPU object has no buffer `{name}`")))
    }

    /// Builds the schedule for `c` (a no-op when it is already built for it).
    pub fn prepare(&mut self, ctx: &GpuContext, c: PassConfig) {
        let config = Config {
            activation: c.activation,
            loss_fn: c.loss_fn,
            loss_at: c.loss_at,
            bias: c.bias,
            carry: Vec::new(),
            lanes: self.lanes,
            clip: c.clip,
            // A layer-mode object keeps its own schedule (and only its bindings exist).
            layer: self.layer,
        };
        self.configure(ctx, config);
    }

    /// Sets the carry multipliers c_t (t = 0..T−1) of randomised truncation for the next
    /// passes, keeping the rest of the configuration (after `prepare`).
    pub fn set_carry(&mut self, ctx: &GpuContext, carry: &[f64]) -> Result<()> {
        let Some(mut config) = self.config.clone() else {
            return Err(Error::Invalid("set_carry before prepare".into()));
        };
        if carry.len() != self.shape.steps {
            return Err(Error::Invalid(format!("{} carry scales for {} steps", carry.len(), self.shape.steps)));
        }
        config.carry = carry.iter().map(|&c| c as f32).collect();
        self.configure(ctx, config);
        Ok(())
    }

    /// Writes one tensor (e.g. `w_hh`) of f32 values; the length must match the buffer's.
    pub fn write_f32(&self, ctx: &GpuContext, name: &str, v: &[f32]) -> Result<()> {
        let buf = self.buffer(name)?;
        if (v.len() * 4) as u64 != self.sizes.get(name) {
            return Err(Error::Invalid(format!(
                "{} values for the GPU buffer `{name}` of {} bytes",
                v.len(),
                buf.size()
            )));
        }
        ctx.queue.write_buffer(buf, 0, bytemuck::cast_slice(v));
        Ok(())
    }

    /// Writes a minibatch: x `[T,B,d]` and its targets (y `[T,B,q]` or labels `[T,B]`).
    pub fn write_batch(&self, ctx: &GpuContext, x: &[f32], targets: &Targets) -> Result<()> {
        self.write_f32(ctx, "x", x)?;
        match targets {
            Targets::Mse(y) => self.write_f32(ctx, "y", &y.iter().map(|&v| v as f32).collect::<Vec<f32>>()),
            Targets::Xent(labels) => {
                let n = self.shape.steps * self.shape.batch;
                if labels.len() != n {
                    return Err(Error::Invalid(format!("{} labels for {n} rows", labels.len())));
                }
                ctx.queue.write_buffer(self.buffer("labels")?, 0, bytemuck::cast_slice(labels));
                Ok(())
            }
        }
    }

    /// Records the forward and backward passes (after `prepare`) into `encoder`, starting the
    /// gradient sums at zero. h's slot 0 (h0) is whatever the buffer holds: the caller writes or
    /// copies it. Training times whole iterations, so no timestamp is read.
    pub fn record_passes(&self, ctx: &GpuContext, encoder: &mut wgpu::CommandEncoder) -> Result<()> {
        if self.config.is_none() {
            return Err(Error::Invalid("record_passes before prepare".into()));
        }
        for name in ["grad_w_hx", "grad_w_hh", "grad_w_qh", "grad_b_h", "grad_b_q", "clip_norms"] {
            encoder.clear_buffer(&self.buffers[name], 0, None);
        }
        let s = self.shape;
        let a_slot_bytes = (s.batch * s.hidden * 4) as u64 * self.lanes.unwrap_or(1) as u64;
        encoder.clear_buffer(&self.buffers["grad_a"], (s.steps as u64 + 1) * a_slot_bytes, Some(a_slot_bytes));
        // The same recording as a timed run (passes of bounded length, so long sequences do
        // not crash a driver); whatever timestamps it writes are never resolved here.
        for phase in [Phase::Forward, Phase::Backward] {
            self.record_pass(ctx, encoder, phase, 0);
        }
        Ok(())
    }

    /// Bytes of one time slot of h `[B,h]`.
    pub fn state_slot_bytes(&self) -> u64 {
        (self.shape.batch * self.shape.hidden * 4) as u64
    }
}
