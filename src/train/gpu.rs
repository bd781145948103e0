//! Training on the GPU: the weights live in a `GpuBptt`'s buffers, the optimiser's state in
//! buffers beside them, and one submission per iteration holds the minibatch's forward and
//! backward passes (clipping included, as a stage of the schedule), the update of each tensor
//! (`shaders/sgd_update.wgsl`, `shaders/adam_update.wgsl`) and copies of the loss (4 bytes)
//! and of the parameter gradients' norms before clipping (20 bytes) into a history buffer.
//! Nothing is read back per iteration: the history every `--log-every` iterations (or every
//! `HISTORY` iterations, when that is sooner: the buffer's size does not grow with
//! `log_every`), the outputs at evaluations, the weights at the end. The clipping stage always
//! runs, so that the norms are there: without `--clip` its threshold is f32::MAX, which scales
//! nothing. Randomised truncation's cuts change every iteration: they are written into the
//! schedule's parameters before its submission.

use super::optim::{Optim, OptimKind, UpdateParams};
use super::tasks::Batch;
use super::weights::Weights;
use super::{Engine, H0, IterStats, StepConfig};
use crate::error::Result;
use crate::gpu::checkpointed::{Config, Inputs};
use crate::gpu::resident::PassConfig;
use crate::gpu::{GpuBptt, GpuContext, Schedule, read_buffer};
use crate::variant::memory::{MemoryFigures, PathMemory, plan_path};
use crate::variant::truncation::Truncation;

/// The optimisers' kernels (name, WGSL source), loaded here and validated in tests/shaders.rs.
pub const UPDATE_KERNELS: [(&str, &str); 2] = [
    ("sgd_update", include_str!("../../shaders/sgd_update.wgsl")),
    ("adam_update", include_str!("../../shaders/adam_update.wgsl")),
];

const WORKGROUP: u32 = 64;
/// The most losses the history buffer holds; a longer log window reads it back when full.
pub const HISTORY: usize = 1024;
const TENSORS: [&str; 5] = ["w_hx", "w_hh", "w_qh", "b_h", "b_q"];
/// The per-tensor gradient norms the clipping stage writes (`clip_norms`, one f32 each).
const NORMS: usize = 5;

/// One parameter tensor's update: its uniform, bind group and size.
struct Update {
    uniform: wgpu::Buffer,
    bind_group: wgpu::BindGroup,
    len: usize,
}

pub struct GpuEngine {
    ctx: GpuContext,
    bptt: GpuBptt,
    /// Each iteration checkpointed by this plan (under `memory`, or because the adapter cannot
    /// bind every state), with the forward steps of the last iteration.
    memory: Option<(PathMemory, u64)>,
    optim: Optim,
    pipeline: wgpu::ComputePipeline,
    updates: Vec<Update>,
    step: u64,
    /// The loss of each iteration since the last read, then the 5 gradient norms of each (at
    /// 4·`history_len` bytes), and its mappable copy.
    history: wgpu::Buffer,
    history_readback: wgpu::Buffer,
    history_len: usize,
    pending: usize,
    /// Losses and norms read back from full history buffers, not yet taken.
    read: Vec<IterStats>,
    /// h_T of the last training batch (sequential partitioning), kept apart from h's slot 0,
    /// which evaluations overwrite.
    carried: wgpu::Buffer,
    /// Outputs o [T,B,q] and the loss, read back at evaluations.
    eval_readback: wgpu::Buffer,
    cfg: StepConfig,
}

impl GpuEngine {
    pub fn new(ctx: GpuContext, cfg: StepConfig, w: &Weights, log_every: usize) -> Result<Self> {
        let s = cfg.shape;
        let lanes = match cfg.truncate {
            Some(Truncation::Regular(k)) if k < s.steps => Some(k as u32),
            _ => None,
        };
        let memory = {
            let (full, costs) = crate::gpu::memory_costs(&ctx.limits, s, Schedule::Fused, lanes);
            // Untruncated, a shape whose states do not bind is checkpointed unasked.
            let forced = match lanes {
                None => crate::gpu::limits(&ctx, s, Schedule::Fused, None)
                    .err()
                    .map(|e| format!("checkpointed automatically: storing every state does not fit ({e})")),
                Some(_) => None,
            };
            let m = plan_path("gpu", s.steps, &cfg.memory, &costs, full, forced)?;
            m.plan.is_some().then_some((m, 0))
        };
        let mut bptt = match (&memory, lanes) {
            (Some((m, _)), k) => GpuBptt::new_checkpointed(&ctx, s, m.plan.expect("planned"), Schedule::Fused, k)?,
            (None, Some(k)) => GpuBptt::new_truncated(&ctx, s, k as usize)?,
            _ => GpuBptt::new(&ctx, s, Schedule::Fused)?,
        };
        bptt.prepare(
            &ctx,
            PassConfig {
                activation: cfg.activation,
                loss_fn: cfg.loss_fn,
                loss_at: cfg.loss_at,
                bias: true,
                clip: Some(cfg.clip.map_or(f32::MAX, |c| c as f32)),
            },
        );
        for (name, v) in w.tensors() {
            bptt.write_f32(&ctx, name, v)?;
        }
        let device = &ctx.device;
        let (kernel, source) = UPDATE_KERNELS[match cfg.optim.kind {
            OptimKind::Sgd => 0,
            OptimKind::Adam => 1,
        }];
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(kernel),
            source: wgpu::ShaderSource::Wgsl(crate::gpu::kernels::with_prelude(source).into()),
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(kernel),
            layout: None,
            module: &module,
            entry_point: Some("main"),
            compilation_options: Default::default(),
            cache: None,
        });
        let storage = |label: &str, bytes: u64, usage: wgpu::BufferUsages| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: bytes.max(4),
                usage,
                mapped_at_creation: false,
            })
        };
        let state_usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST;
        let mut updates = Vec::new();
        for (name, v) in w.tensors() {
            let bytes = (v.len() * 4) as u64;
            // Moments start at zero (wgpu zero-initialises new buffers).
            let m = storage("optimiser m", bytes, state_usage);
            let second = storage("optimiser v", bytes, state_usage);
            let uniform = storage(
                "update params",
                std::mem::size_of::<UpdateParams>() as u64,
                wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            );
            let mut entries = vec![
                wgpu::BindGroupEntry { binding: 0, resource: uniform.as_entire_binding() },
                wgpu::BindGroupEntry { binding: 1, resource: bptt.buffer(name)?.as_entire_binding() },
                wgpu::BindGroupEntry {
                    binding: 2,
                    resource: bptt.buffer(&format!("grad_{name}"))?.as_entire_binding(),
                },
                wgpu::BindGroupEntry { binding: 3, resource: m.as_entire_binding() },
            ];
            if cfg.optim.kind == OptimKind::Adam {
                entries.push(wgpu::BindGroupEntry { binding: 4, resource: second.as_entire_binding() });
            }
            let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(name),
                layout: &pipeline.get_bind_group_layout(0),
                entries: &entries,
            });
            updates.push(Update { uniform, bind_group, len: v.len() });
        }
        let copy_usage = wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST;
        let read_usage = wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST;
        let history_len = log_every.clamp(1, HISTORY);
        let history_bytes = 4 * ((1 + NORMS) * history_len) as u64;
        let history = storage("loss and norm history", history_bytes, copy_usage);
        let history_readback = storage("loss and norm history readback", history_bytes, read_usage);
        let carried = storage("carried h", bptt.state_slot_bytes(), copy_usage);
        // A checkpointed object gathers its outputs itself (`forward_resident`).
        let o_bytes = if memory.is_some() { 0 } else { (s.steps * s.batch * s.output * 4) as u64 };
        let eval_readback = storage("eval readback", o_bytes + 4, read_usage);
        ctx.check_errors()?;
        Ok(GpuEngine {
            memory,
            optim: cfg.optim,
            pipeline,
            updates,
            step: 0,
            history,
            history_readback,
            history_len,
            pending: 0,
            read: Vec::new(),
            carried,
            eval_readback,
            cfg,
            bptt,
            ctx,
        })
    }

    pub fn adapter_name(&self) -> &str {
        &self.ctx.adapter.name
    }

    /// Reads the pending losses and norms back into `read`, emptying the history buffer.
    fn read_history(&mut self) -> Result<()> {
        if self.pending == 0 {
            return Ok(());
        }
        let mut enc = self.encoder();
        let bytes = self.history.size();
        enc.copy_buffer_to_buffer(&self.history, 0, &self.history_readback, 0, bytes);
        self.ctx.queue.submit([enc.finish()]);
        let data = read_buffer(&self.ctx, &self.history_readback, bytes)?;
        let all: &[f32] = bytemuck::cast_slice(&data);
        let (losses, norms) = all.split_at(self.history_len);
        for k in 0..self.pending {
            let n: Vec<f64> = norms[k * NORMS..][..NORMS].iter().map(|&v| v as f64).collect();
            self.read.push(IterStats { loss: losses[k] as f64, grad_norm: crate::model::norm(&n) });
        }
        self.pending = 0;
        Ok(())
    }

    fn encoder(&self) -> wgpu::CommandEncoder {
        self.ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("train") })
    }

    /// What the checkpointed passes compute.
    fn pass_config(&self, carry: Option<&[f64]>) -> Config {
        Config {
            activation: self.cfg.activation,
            loss_fn: self.cfg.loss_fn,
            loss_at: self.cfg.loss_at,
            bias: true,
            carry: carry.map(|c| c.iter().map(|&x| x as f32).collect()).unwrap_or_default(),
            lanes: match self.cfg.truncate {
                Some(Truncation::Regular(k)) if k < self.cfg.shape.steps => Some(k as u32),
                _ => None,
            },
            clip: self.cfg.clip.map(|c| c as f32),
            layer: false,
        }
    }

    /// One checkpointed iteration's BPTT (its h0 from `h0`), leaving the gradients and L in
    /// their buffers and h_T in `carried`.
    fn checkpointed_pass(&mut self, batch: &Batch, h0: H0, carry: Option<&[f64]>) -> Result<()> {
        let slot = self.bptt.state_slot_bytes();
        let mut enc = self.encoder();
        let current = self.bptt.buffer("current")?;
        match h0 {
            H0::Zero => enc.clear_buffer(current, 0, Some(slot)),
            H0::Carried => enc.copy_buffer_to_buffer(&self.carried, 0, current, 0, slot),
        }
        self.ctx.queue.submit([enc.finish()]);
        let inputs = Inputs { shape: self.cfg.shape, x: &batch.x, targets: &batch.targets };
        let config = self.pass_config(carry);
        let steps = self.bptt.run_plan_resident(&self.ctx, inputs, config)?;
        if let Some((_, last)) = &mut self.memory {
            *last = steps;
        }
        let mut enc = self.encoder();
        enc.copy_buffer_to_buffer(self.bptt.buffer("last")?, 0, &self.carried, 0, slot);
        self.ctx.queue.submit([enc.finish()]);
        Ok(())
    }
}

impl Engine for GpuEngine {
    fn step(&mut self, batch: &Batch, h0: H0, carry: Option<&[f64]>) -> Result<()> {
        if self.pending == self.history_len {
            self.read_history()?;
        }
        self.step += 1;
        if self.memory.is_some() {
            self.checkpointed_pass(batch, h0, carry)?;
        } else if let Some(c) = carry {
            self.bptt.set_carry(&self.ctx, c)?;
        }
        let ctx = &self.ctx;
        for u in &self.updates {
            ctx.queue.write_buffer(&u.uniform, 0, bytemuck::bytes_of(&self.optim.params(self.step, u.len)));
        }
        let mut enc = self.encoder();
        if self.memory.is_none() {
            let x: Vec<f32> = batch.x.iter().map(|&v| v as f32).collect();
            self.bptt.write_batch(ctx, &x, &batch.targets)?;
            let h = self.bptt.buffer("h")?;
            let slot = self.bptt.state_slot_bytes();
            match h0 {
                H0::Zero => enc.clear_buffer(h, 0, Some(slot)),
                H0::Carried => enc.copy_buffer_to_buffer(&self.carried, 0, h, 0, slot),
            }
            self.bptt.record_passes(ctx, &mut enc)?;
            enc.copy_buffer_to_buffer(h, self.cfg.shape.steps as u64 * slot, &self.carried, 0, slot);
        }
        {
            let mut pass =
                enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("update"), timestamp_writes: None });
            pass.set_pipeline(&self.pipeline);
            let max_dim = ctx.limits.max_compute_workgroups_per_dimension;
            for u in &self.updates {
                let (gx, gy) = crate::gpu::spread((u.len as u32).div_ceil(WORKGROUP), max_dim);
                pass.set_bind_group(0, &u.bind_group, &[]);
                pass.dispatch_workgroups(gx, gy, 1);
            }
        }
        enc.copy_buffer_to_buffer(self.bptt.buffer("loss")?, 0, &self.history, 4 * self.pending as u64, 4);
        let norms_at = 4 * (self.history_len + NORMS * self.pending) as u64;
        enc.copy_buffer_to_buffer(self.bptt.buffer("clip_norms")?, 0, &self.history, norms_at, 4 * NORMS as u64);
        ctx.queue.submit([enc.finish()]);
        self.pending += 1;
        Ok(())
    }

    fn take_stats(&mut self) -> Result<Vec<IterStats>> {
        self.read_history()?;
        Ok(std::mem::take(&mut self.read))
    }

    fn evaluate(&mut self, batch: &Batch) -> Result<(f64, Vec<f64>)> {
        if self.memory.is_some() {
            let mut enc = self.encoder();
            enc.clear_buffer(self.bptt.buffer("current")?, 0, Some(self.bptt.state_slot_bytes()));
            self.ctx.queue.submit([enc.finish()]);
            let inputs = Inputs { shape: self.cfg.shape, x: &batch.x, targets: &batch.targets };
            let config = self.pass_config(None);
            return self.bptt.forward_resident(&self.ctx, inputs, config);
        }
        let ctx = &self.ctx;
        let x: Vec<f32> = batch.x.iter().map(|&v| v as f32).collect();
        self.bptt.write_batch(ctx, &x, &batch.targets)?;
        let mut enc = self.encoder();
        enc.clear_buffer(self.bptt.buffer("h")?, 0, Some(self.bptt.state_slot_bytes()));
        self.bptt.record_passes(ctx, &mut enc)?;
        let o_bytes = self.eval_readback.size() - 4;
        enc.copy_buffer_to_buffer(self.bptt.buffer("o")?, 0, &self.eval_readback, 0, o_bytes);
        enc.copy_buffer_to_buffer(self.bptt.buffer("loss")?, 0, &self.eval_readback, o_bytes, 4);
        ctx.queue.submit([enc.finish()]);
        let data = read_buffer(ctx, &self.eval_readback, o_bytes + 4)?;
        let all: Vec<f64> = bytemuck::cast_slice::<u8, f32>(&data).iter().map(|&v| v as f64).collect();
        let (o, loss) = all.split_at(all.len() - 1);
        Ok((loss[0], o.to_vec()))
    }

    fn weights(&mut self) -> Result<Weights> {
        let mut out: Vec<Vec<f32>> = Vec::new();
        for name in TENSORS {
            let buf = self.bptt.buffer(name)?;
            let read = self.ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("weights readback"),
                size: buf.size(),
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            let mut enc = self.encoder();
            enc.copy_buffer_to_buffer(buf, 0, &read, 0, buf.size());
            self.ctx.queue.submit([enc.finish()]);
            out.push(bytemuck::cast_slice::<u8, f32>(&read_buffer(&self.ctx, &read, buf.size())?).to_vec());
        }
        let s = self.cfg.shape;
        let take = |v: &Vec<f32>, n: usize| v[..n].to_vec();
        Ok(Weights {
            w_hx: take(&out[0], s.hidden * s.input),
            w_hh: take(&out[1], s.hidden * s.hidden),
            w_qh: take(&out[2], s.output * s.hidden),
            b_h: take(&out[3], s.hidden),
            b_q: take(&out[4], s.output),
        })
    }

    fn device(&self) -> String {
        format!("gpu ({})", self.ctx.adapter)
    }

    fn memory(&self) -> Option<MemoryFigures> {
        let (m, last) = self.memory.as_ref()?;
        m.figures(self.cfg.memory.budget, *last)
    }
}
