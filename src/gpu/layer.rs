//! `GpuBptt` in layer mode (docs/model.md, "The layer mode"): the RNN as one layer of a larger
//! model. Built once for a shape with `new_layer`; each `layer_forward` uploads the weights,
//! x and h0, runs the forward pass and reads h_1..h_T back; each `layer_backward` uploads the
//! weights, x, the states and the upstream gradients (into `gq`, where the full model keeps
//! the output's share of ∂L/∂h_t), runs the backward pass with the ∂L/∂x product, and reads the
//! gradients back. The schedules are the full model's with the output, loss and norm stages
//! left out (`schedule::Config::layer`). Tested against `cpu::reference_layer` in
//! tests/layer.rs.

use super::schedule::{Config, Phase};
use super::{GpuBptt, GpuContext, QUERIES, Schedule, grad_h0_bytes, read_buffer};
use crate::error::{Error, Result};
use crate::layer::types::{LayerGrads, LayerShape, LayerWeights, Upstream, check_lengths};
use crate::model::{Activation, LossAt, LossFn, Shape};

/// The buffers the layer mode adds to a shape's: ∂L/∂x, and on the stepwise schedule the
/// upstream gradients (the fused schedule has `gq` already).
pub(super) fn extra_buffers(s: Shape, schedule: Schedule) -> Vec<(&'static str, String, u64)> {
    let rows = (s.steps * s.batch) as u64;
    let mut v = vec![("grad_x", "input gradients ∂L/∂x[T,B,d]".to_string(), 4 * (rows * s.input as u64).max(1))];
    if schedule == Schedule::Stepwise {
        v.push(("gq", "upstream gradients ∂L/∂h[T,B,h]".to_string(), 4 * (rows * s.hidden as u64).max(1)));
    }
    v
}

/// The layer-mode configuration with the most bindings (biases on), for the bind groups.
pub(super) fn largest_config() -> Config {
    layer_config(Activation::Tanh, true)
}

fn layer_config(activation: Activation, bias: bool) -> Config {
    Config {
        activation,
        loss_fn: LossFn::Mse,
        loss_at: LossAt::All,
        bias,
        carry: Vec::new(),
        lanes: None,
        clip: None,
        layer: true,
    }
}

impl GpuBptt {
    /// Allocates everything the layer mode needs for `shape` on `ctx`'s device.
    pub fn new_layer(ctx: &GpuContext, shape: LayerShape, schedule: Schedule) -> Result<Self> {
        Self::build(ctx, shape.model_shape(), schedule, None, true)
    }

    /// The layer shape this object was built for, if it was built for the layer mode.
    pub fn layer_shape(&self) -> Option<LayerShape> {
        let s = self.shape;
        self.layer.then_some(LayerShape { steps: s.steps, batch: s.batch, input: s.input, hidden: s.hidden })
    }

    fn layer_call(&mut self, ctx: &GpuContext, act: Activation, w: &LayerWeights<f32>, x: &[f32]) -> Result<()> {
        let Some(shape) = self.layer_shape() else {
            return Err(Error::Invalid("this GPU object was not built for the layer mode: use `run`".into()));
        };
        check_lengths(shape, w, x, None, None)?;
        self.configure(ctx, layer_config(act, w.b_h.is_some()));
        let q = &ctx.queue;
        q.write_buffer(&self.buffers["w_hx"], 0, bytemuck::cast_slice(w.w_hx));
        q.write_buffer(&self.buffers["w_hh"], 0, bytemuck::cast_slice(w.w_hh));
        // forward_step adds b_h unconditionally: zeros when biases are off.
        let zeros;
        let b_h = match w.b_h {
            Some(b) => b,
            None => {
                zeros = vec![0.0f32; shape.hidden];
                &zeros
            }
        };
        q.write_buffer(&self.buffers["b_h"], 0, bytemuck::cast_slice(b_h));
        q.write_buffer(&self.buffers["x"], 0, bytemuck::cast_slice(x));
        Ok(())
    }

    /// The forward pass: h_1..h_T `[T,B,h]`; `h0` `[B,h]`.
    pub fn layer_forward(
        &mut self,
        ctx: &GpuContext,
        act: Activation,
        w: &LayerWeights<f32>,
        x: &[f32],
        h0: &[f32],
    ) -> Result<Vec<f32>> {
        self.layer_call(ctx, act, w, x)?;
        let s = self.shape;
        check_h0(s, h0)?;
        ctx.queue.write_buffer(&self.buffers["h"], 0, bytemuck::cast_slice(h0));
        let slot = grad_h0_bytes(s);
        let h_bytes = s.steps as u64 * slot;
        let dst = self.states_buffer(ctx)?.clone();
        let mut encoder =
            ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("layer forward") });
        self.record_pass(ctx, &mut encoder, Phase::Forward, 0);
        encoder.copy_buffer_to_buffer(&self.buffers["h"], slot, &dst, 0, h_bytes); // h_1..h_T
        ctx.queue.submit([encoder.finish()]);
        let bytes = read_buffer(ctx, &dst, h_bytes)?;
        Ok(bytemuck::cast_slice::<u8, f32>(&bytes).to_vec())
    }

    /// The backward pass from the forward's states and the upstream gradients (`Upstream`).
    pub fn layer_backward(
        &mut self,
        ctx: &GpuContext,
        act: Activation,
        w: &LayerWeights<f32>,
        x: &[f32],
        h0: &[f32],
        up: &Upstream<f32>,
    ) -> Result<LayerGrads<f32>> {
        self.layer_call(ctx, act, w, x)?;
        let s = self.shape;
        check_h0(s, h0)?;
        let shape = self.layer_shape().expect("checked by layer_call");
        check_lengths(shape, w, x, Some(h0), Some(up))?;
        let slot = grad_h0_bytes(s);
        let q = &ctx.queue;
        // h's slot 0 is h0, slots 1..T the forward's states.
        q.write_buffer(&self.buffers["h"], 0, bytemuck::cast_slice(h0));
        q.write_buffer(&self.buffers["h"], slot, bytemuck::cast_slice(up.h));
        q.write_buffer(&self.buffers["gq"], 0, bytemuck::cast_slice(up.grad_h));
        if let Some(last) = up.grad_h_last {
            // g_T + the extra gradient into h_T, over the last slot.
            let bh = s.batch * s.hidden;
            let sum: Vec<f32> = up.grad_h[(s.steps - 1) * bh..].iter().zip(last).map(|(g, l)| g + l).collect();
            q.write_buffer(&self.buffers["gq"], (s.steps as u64 - 1) * slot, bytemuck::cast_slice(&sum));
        }
        let mut encoder =
            ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("layer backward") });
        // The stepwise schedule accumulates the weight gradients step by step: start at zero.
        // ∂L/∂a_{T+1} = 0.
        for name in ["grad_w_hx", "grad_w_hh", "grad_b_h"] {
            encoder.clear_buffer(&self.buffers[name], 0, None);
        }
        encoder.clear_buffer(&self.buffers["grad_a"], (s.steps as u64 + 1) * slot, Some(slot));
        self.record_pass(ctx, &mut encoder, Phase::Backward, 0);
        let mut at = 8 * QUERIES as u64;
        let mut places = Vec::new();
        for (name, offset, bytes) in [
            ("grad_w_hx", 0, self.sizes.get("grad_w_hx")),
            ("grad_w_hh", 0, self.sizes.get("grad_w_hh")),
            ("grad_b_h", 0, self.sizes.get("grad_b_h")),
            ("grad_h", 0, slot), // slot 0 of grad_h is ∂L/∂h0
            ("grad_x", 0, self.sizes.get("grad_x")),
        ] {
            encoder.copy_buffer_to_buffer(&self.buffers[name], offset, &self.readback, at, bytes);
            places.push((at as usize, bytes as usize));
            at += bytes;
        }
        q.submit([encoder.finish()]);
        let data = read_buffer(ctx, &self.readback, at)?;
        let floats = |i: usize, len: usize| -> Vec<f32> {
            let (off, _) = places[i];
            bytemuck::cast_slice::<u8, f32>(&data[off..off + 4 * len]).to_vec()
        };
        let (d, h, rows) = (s.input, s.hidden, s.steps * s.batch);
        Ok(LayerGrads {
            grad_w_hx: floats(0, h * d),
            grad_w_hh: floats(1, h * h),
            grad_b_h: w.b_h.map(|_| floats(2, h)),
            grad_h0: floats(3, s.batch * h),
            grad_x: floats(4, rows * d),
        })
    }
}

fn check_h0(s: Shape, h0: &[f32]) -> Result<()> {
    let n = s.batch * s.hidden;
    if h0.len() != n {
        return Err(Error::tensor(
            "h0",
            format!("expected {n} values for shape [{}, {}], got {}", s.batch, s.hidden, h0.len()),
        ));
    }
    Ok(())
}
