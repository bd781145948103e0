//! A checkpointed run on the GPU (docs/design.md "Checkpointing"): the object's buffers hold
//! one window (a unit of the plan), the slots, the current and the held state, and the carried
//! ∂L/∂a; the plan's actions become copies between them and, per window, a submission of the
//! schedule's dispatches for that window (`schedule::parts`) with its inputs uploaded just
//! before. The per-row losses and the per-step norms cover the whole sequence, so L is summed
//! over all rows at the end as in a whole run. The stepwise schedule's gradients are then the
//! whole run's bit for bit (the same kernels, in the same order); the fused schedule sums its
//! weight-gradient products window by window.

use std::time::Instant;

use super::buffers::BufferSizes;
pub use super::schedule::Config;
use super::schedule::{Dispatch, Window, Work, parts};
use super::{GpuBptt, GpuContext, MAX_DISPATCHES_PER_PASS, RunOptions, RunTimes, Schedule, f32s};
use crate::checkpoint::{Action, Costs, Plan};
use crate::error::{Error, Result};
use crate::model::{BpttResult, Problem, Shape, Targets};

/// The GPU memory that grows with T of a whole-run object for `shape` (what `GpuBptt::new`
/// allocates beyond the weights, their gradients and the like), and the costs of checkpointed
/// objects for the same (`checkpoint::choose`; what `new_checkpointed` allocates for a plan),
/// with the largest window whose buffers this adapter binds and the most slots its buffers
/// hold. All are sums of the buffer sizes the objects are built with.
pub fn memory_costs(limits: &wgpu::Limits, shape: Shape, schedule: Schedule, lanes: Option<u32>) -> (u64, Costs) {
    let k = lanes.unwrap_or(1);
    let bytes = |sizes: &BufferSizes, window: Shape| object_bytes(limits, sizes, window, schedule, lanes);
    let whole = |t: usize| {
        let s = Shape { steps: t, ..shape };
        bytes(&BufferSizes::new(s, schedule, k), s)
    };
    // Every size is affine in T: what does not grow with it is the value at T = 0.
    let constant = 2 * whole(1) - whole(2);
    let full = whole(shape.steps) - constant;
    let windowed = |l: usize, c: usize| {
        let window = Shape { steps: l, ..shape };
        bytes(&BufferSizes::windowed(window, shape.steps, c, schedule, k), window) - constant
    };
    let base = windowed(1, 1);
    let state = windowed(1, 2) - base;
    let per_step = windowed(2, 1) - base;
    let fits = |l: usize| {
        let window = Shape { steps: l, ..shape };
        BufferSizes::windowed(window, shape.steps, 1, schedule, k).check(limits, "").is_ok()
    };
    // The largest window that binds (none may: then even one step does not fit).
    let (mut lo, mut hi) = (0usize, shape.steps);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if fits(mid) { lo = mid } else { hi = mid - 1 }
    }
    let costs = Costs {
        state,
        per_step,
        fixed: base - state - per_step,
        max_unit: lo,
        max_slots: (limits.max_buffer_size / state.max(1)) as usize,
        unit_overhead: WINDOW_OVERHEAD_STEPS,
    };
    (full, costs)
}

/// What an object holds: its buffers, the parameter arena (one slot per dispatch of its
/// largest schedule) and the readback buffers.
fn object_bytes(
    limits: &wgpu::Limits,
    sizes: &BufferSizes,
    shape: Shape,
    schedule: Schedule,
    lanes: Option<u32>,
) -> u64 {
    let slot = (limits.min_uniform_buffer_offset_alignment as u64).max(super::kernels::PARAMS_SIZE);
    let dispatches = super::schedule::build(schedule, shape, &super::largest_config(lanes)).len() as u64;
    sizes.total() + slot * dispatches + super::readback_bytes(sizes, shape)
}

/// A window's cost beyond its steps' dispatches (a submission, the copies between states, the
/// uploads), in forward steps, for `checkpoint::choose`.
const WINDOW_OVERHEAD_STEPS: f64 = 16.0;

/// Submissions queued before the host waits for them: bounds the staging memory of the
/// uploads in flight.
const SUBMISSIONS_IN_FLIGHT: usize = 64;

impl GpuBptt {
    /// An object for checkpointed runs of `shape` by `plan`: buffers for one window of
    /// `plan.unit_steps` steps, and `lanes` for truncation (fused only).
    pub fn new_checkpointed(
        ctx: &GpuContext,
        shape: Shape,
        plan: Plan,
        schedule: Schedule,
        lanes: Option<u32>,
    ) -> Result<Self> {
        if plan.steps != shape.steps {
            return Err(Error::Invalid(format!("a plan of {} steps for {} steps", plan.steps, shape.steps)));
        }
        if lanes.is_some() && schedule == Schedule::Stepwise {
            return Err(Error::Invalid("`truncate` K runs on the fused schedule (`schedule` fused)".into()));
        }
        let window = Shape { steps: plan.unit_steps, ..shape };
        let k = lanes.unwrap_or(1);
        let sizes = BufferSizes::windowed(window, shape.steps, plan.slots_used(), schedule, k);
        let mut o = Self::build_with(ctx, sizes, window, schedule, lanes, false)?;
        o.plan = Some((plan, shape));
        Ok(o)
    }

    /// The shape of the sequences it runs: its own, or a checkpointed object's whole sequence
    /// (its buffers hold one window of it).
    pub fn sequence_shape(&self) -> Shape {
        self.plan.map_or(self.shape, |(_, s)| s)
    }

    /// The plan this object runs, if it is a checkpointed one.
    pub fn plan(&self) -> Option<Plan> {
        self.plan.map(|(p, _)| p)
    }

    /// Forward + backward of `p` carried out by the object's plan. Returns the result (no
    /// states), the times (the host clock around the whole run: forward and backward
    /// interleave, so they are not timed apart) and the forward steps evaluated.
    pub fn run_plan(
        &mut self,
        ctx: &GpuContext,
        p: &Problem,
        opts: &RunOptions,
    ) -> Result<(BpttResult, RunTimes, u64)> {
        let (plan, total) = self.plan.ok_or_else(|| Error::Invalid("run_plan needs a checkpointed object".into()))?;
        if p.shape != total {
            return Err(Error::Invalid(format!("this GPU object was built for {total}, not {}", p.shape)));
        }
        if opts.keep_states {
            return Err(Error::Invalid("a checkpointed run keeps no states".into()));
        }
        let config = self.config_against(p, opts, total)?;
        let start = Instant::now();
        self.upload_weights(ctx, p);
        ctx.queue.write_buffer(&self.buffers["current"], 0, bytemuck::cast_slice(&f32s(&p.h0)));
        let inputs = Inputs { shape: p.shape, x: &p.x, targets: &p.targets };
        let mut run = PlanRun { o: self, ctx, p: inputs, config, plan, encoder: None, submitted: 0, dispatches: 0 };
        let evaluated = run.carry_out()?;
        let dispatches = run.dispatches;
        let (result, _) = self.read_results(ctx, p, opts)?;
        let total_ms = start.elapsed().as_secs_f64() * 1e3;
        let times = RunTimes {
            upload: f64::NAN,
            forward: f64::NAN,
            backward: f64::NAN,
            readback: f64::NAN,
            total: total_ms,
            stages: Vec::new(),
            dispatches,
        };
        Ok((result, times, evaluated))
    }
}

/// What a checkpointed run reads from the host, window by window: the sequence's inputs and
/// targets (h0 and the weights are in the object's buffers already).
#[derive(Clone, Copy)]
pub struct Inputs<'a> {
    pub shape: Shape,
    pub x: &'a [f64],
    pub targets: &'a Targets,
}

impl GpuBptt {
    /// Training's checkpointed pass: `run_plan` with the weights already in the object's
    /// buffers (and left there), h0 already in its `current` buffer, and nothing read back:
    /// the gradients, clipped by `config`, and L are left in their buffers, h_T in `last`.
    /// Returns the forward steps evaluated.
    pub fn run_plan_resident(&mut self, ctx: &GpuContext, inputs: Inputs, config: Config) -> Result<u64> {
        let (plan, total) = self.plan.ok_or_else(|| Error::Invalid("run_plan needs a checkpointed object".into()))?;
        if inputs.shape != total {
            return Err(Error::Invalid(format!("this GPU object was built for {total}, not {}", inputs.shape)));
        }
        let mut run = PlanRun { o: self, ctx, p: inputs, config, plan, encoder: None, submitted: 0, dispatches: 0 };
        run.carry_out()
    }

    /// The forward pass alone, window by window from h0 in the `current` buffer, for a model's
    /// held-out loss: L (from the loss buffer) and the outputs o `[T,B,q]`, gathered window by
    /// window into a buffer made on first use (T·B·q values).
    pub fn forward_resident(&mut self, ctx: &GpuContext, inputs: Inputs, config: Config) -> Result<(f64, Vec<f64>)> {
        let (plan, total) = self.plan.ok_or_else(|| Error::Invalid("a checkpointed object is needed".into()))?;
        let s = inputs.shape;
        if s != total {
            return Err(Error::Invalid(format!("this GPU object was built for {total}, not {}", s)));
        }
        let o_bytes = (s.steps * s.batch * s.output * 4) as u64;
        if !self.buffers.contains_key("o_all") {
            for (name, usage) in [
                ("o_all", wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC),
                ("o_all_read", wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::MAP_READ),
            ] {
                let buf = ctx.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some(name),
                    size: o_bytes + 4,
                    usage,
                    mapped_at_creation: false,
                });
                self.buffers.insert(name, buf);
            }
        }
        let mut run = PlanRun { o: self, ctx, p: inputs, config, plan, encoder: None, submitted: 0, dispatches: 0 };
        run.forward_only()?;
        let data = super::read_buffer(ctx, &self.buffers["o_all_read"], o_bytes + 4)?;
        let all: Vec<f64> = bytemuck::cast_slice::<u8, f32>(&data).iter().map(|&v| v as f64).collect();
        let (o, loss) = all.split_at(all.len() - 1);
        Ok((loss[0], o.to_vec()))
    }
}

/// One checkpointed run in progress. Commands are recorded in the order they must run: the
/// copies an action needs before a window's dispatches, the dispatches (`submit`), and the
/// copies after them, which go out with the next submission.
struct PlanRun<'a> {
    o: &'a mut GpuBptt,
    ctx: &'a GpuContext,
    p: Inputs<'a>,
    config: Config,
    plan: Plan,
    /// Commands recorded since the last submission (copies between the states).
    encoder: Option<wgpu::CommandEncoder>,
    submitted: usize,
    dispatches: usize,
}

impl PlanRun<'_> {
    fn encoder(&mut self) -> &mut wgpu::CommandEncoder {
        let device = &self.ctx.device;
        self.encoder.get_or_insert_with(|| {
            device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("bptt checkpointed") })
        })
    }

    /// Copies `bytes` from `src` at `src_at` to `dst` at `dst_at` (buffers by name).
    fn copy(&mut self, src: &str, src_at: u64, dst: &str, dst_at: u64, bytes: u64) {
        let (s, d) = (self.o.buffers[src].clone(), self.o.buffers[dst].clone());
        self.encoder().copy_buffer_to_buffer(&s, src_at, &d, dst_at, bytes);
    }

    fn state_bytes(&self) -> u64 {
        (self.p.shape.batch * self.p.shape.hidden * 4) as u64
    }

    /// ∂L/∂a's slot of a window: [B, K, h].
    fn lane_bytes(&self) -> u64 {
        self.state_bytes() * self.o.lanes.unwrap_or(1) as u64
    }

    /// The window of unit j, and the object's shape for it (the last unit may be shorter).
    fn window(&self, unit: usize) -> (Window, Shape) {
        let r = self.plan.unit_range(unit);
        let w = Window { t0: r.start as u32, len: r.len() as u32, total: self.p.shape.steps as u32 };
        (w, Shape { steps: r.len(), ..self.p.shape })
    }

    /// Uploads the inputs (and with `targets` the targets) of the window's steps.
    fn upload(&self, w: Window, targets: bool) {
        let s = self.p.shape;
        let (q, b) = (&self.ctx.queue, s.batch);
        let rows = w.t0 as usize * b..(w.t0 + w.len) as usize * b;
        let slice = |v: &[f64], width: usize| f32s(&v[rows.start * width..rows.end * width]);
        q.write_buffer(&self.o.buffers["x"], 0, bytemuck::cast_slice(&slice(self.p.x, s.input)));
        if targets {
            match &self.p.targets {
                Targets::Mse(y) => q.write_buffer(&self.o.buffers["y"], 0, bytemuck::cast_slice(&slice(y, s.output))),
                Targets::Xent(l) => q.write_buffer(&self.o.buffers["labels"], 0, bytemuck::cast_slice(&l[rows])),
            }
        }
    }

    /// Writes the dispatches' parameters to the arena, records them (in passes of bounded
    /// length) after the commands already recorded, and submits.
    fn submit(&mut self, list: &[Dispatch]) -> Result<()> {
        let slot = self.o.slot as usize;
        if list.len() * slot > self.o.params.size() as usize {
            return Err(Error::Invalid(format!("{} dispatches overflow the parameter arena", list.len())));
        }
        let mut arena = vec![0u8; slot * list.len()];
        for (i, d) in list.iter().enumerate() {
            arena[i * slot..][..super::kernels::PARAMS_SIZE as usize].copy_from_slice(bytemuck::cast_slice(&d.params));
        }
        if !arena.is_empty() {
            self.ctx.queue.write_buffer(&self.o.params, 0, &arena);
        }
        let o = &*self.o;
        let max_dim = self.ctx.limits.max_compute_workgroups_per_dimension;
        let mut encoder = self.encoder.take().unwrap_or_else(|| {
            self.ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("bptt checkpointed") })
        });
        for (n, chunk) in list.chunks(MAX_DISPATCHES_PER_PASS).enumerate() {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("checkpointed window"),
                timestamp_writes: None,
            });
            for (k, d) in chunk.iter().enumerate() {
                let i = n * MAX_DISPATCHES_PER_PASS + k;
                let kernel = d.binding.kernel();
                let groups = match d.work {
                    Work::Invocations(n) => n.div_ceil(kernel.workgroup_size()),
                    Work::Rows(n) => n.div_ceil(o.pipelines.recurrent.rows),
                    Work::Workgroups(n) => n,
                };
                let (gx, gy) = super::spread(groups, max_dim);
                pass.set_pipeline(o.pipelines.pipeline(kernel));
                pass.set_bind_group(0, &o.bind_groups[&d.binding], &[(i * slot) as u32]);
                pass.dispatch_workgroups(gx, gy, 1);
            }
        }
        self.ctx.queue.submit([encoder.finish()]);
        self.dispatches += list.len();
        self.submitted += 1;
        if self.submitted.is_multiple_of(SUBMISSIONS_IN_FLIGHT) {
            self.ctx.wait()?;
        }
        Ok(())
    }

    /// The forward over unit j's first `steps` steps from the current state (its window's
    /// inputs uploaded, and its targets with `score` or `targets`; with `score` its outputs
    /// and loss terms computed).
    fn forward(&mut self, unit: usize, steps: usize, score: bool, targets: bool) -> Vec<Dispatch> {
        let (w, shape) = self.window(unit);
        self.upload(w, score || targets);
        self.copy("current", 0, "h", 0, self.state_bytes());
        parts::forward(self.o.schedule_kind, shape, &self.config, w, steps as u32, score)
    }

    /// The forward pass alone, every window scored, its outputs gathered into `o_all`; then L
    /// after them, and both copied to `o_all_read`.
    fn forward_only(&mut self) -> Result<()> {
        let (plan, sb) = (self.plan, self.state_bytes());
        let window_shape = Shape { steps: plan.unit_steps, ..self.p.shape };
        let b = self.o.buffers["loss_rows"].clone();
        self.encoder().clear_buffer(&b, 0, None);
        let prologue = parts::prologue(self.o.schedule_kind, window_shape, &self.config);
        if !prologue.is_empty() {
            self.submit(&prologue)?;
        }
        let row_bytes = (self.p.shape.batch * self.p.shape.output * 4) as u64;
        for unit in 1..=plan.units {
            let len = plan.unit_len(unit);
            let list = self.forward(unit, len, true, true);
            self.submit(&list)?;
            self.copy("h", len as u64 * sb, "current", 0, sb);
            let at = plan.unit_range(unit).start as u64 * row_bytes;
            self.copy("o", 0, "o_all", at, len as u64 * row_bytes);
        }
        let sum = parts::loss_sum(window_shape, &self.config, self.p.shape.steps as u32);
        self.submit(&sum)?;
        let o_bytes = self.p.shape.steps as u64 * row_bytes;
        self.copy("o_all", 0, "o_all_read", 0, o_bytes);
        self.copy("loss", 0, "o_all_read", o_bytes, 4);
        self.submit(&[])?;
        Ok(())
    }

    /// Carries out the plan; returns the forward steps evaluated.
    fn carry_out(&mut self) -> Result<u64> {
        let (plan, sb) = (self.plan, self.state_bytes());
        let schedule = self.o.schedule_kind;
        let window_shape = Shape { steps: plan.unit_steps, ..self.p.shape };
        // The gradient sums start at zero.
        for name in ["grad_w_hx", "grad_w_hh", "grad_w_qh", "grad_b_h", "grad_b_q", "clip_norms", "loss_rows"] {
            let b = self.o.buffers[name].clone();
            self.encoder().clear_buffer(&b, 0, None);
        }
        let prologue = parts::prologue(schedule, window_shape, &self.config);
        if !prologue.is_empty() {
            self.submit(&prologue)?;
        }
        let mut evaluated = 0u64;
        for action in plan.actions() {
            match action {
                Action::Advance { from, to, sweep } => {
                    for unit in from + 1..=to {
                        let len = plan.unit_len(unit);
                        let list = self.forward(unit, len, sweep, false);
                        self.submit(&list)?;
                        self.copy("h", len as u64 * sb, "current", 0, sb);
                        evaluated += len as u64;
                    }
                }
                Action::Store { slot, .. } => self.copy("current", 0, "slots", slot as u64 * sb, sb),
                Action::Restore { slot, .. } => self.copy("slots", slot as u64 * sb, "current", 0, sb),
                Action::Tail => {
                    let len = plan.unit_len(plan.units);
                    let list = self.forward(plan.units, len, true, true);
                    self.submit(&list)?;
                    self.copy("h", len as u64 * sb, "held", 0, sb);
                    self.copy("h", len as u64 * sb, "last", 0, sb);
                    evaluated += len as u64;
                }
                Action::Reverse { unit } => {
                    let (w, shape) = self.window(unit);
                    let (len, lb) = (w.len as u64, self.lane_bytes());
                    let last = unit == plan.units;
                    let mut list = Vec::new();
                    if last {
                        // The tail left the window's states, outputs and ∂L/∂o in place; nothing
                        // is carried in after the sequence's end.
                        let b = self.o.buffers["grad_a"].clone();
                        self.encoder().clear_buffer(&b, (len + 1) * lb, Some(lb));
                    } else {
                        // The inner states from x_{unit−1} (the forward writes h's slots
                        // 1..len−1 only); the last one is the held x_unit; into the last step
                        // comes ∂L/∂a_{t+1} of the window reversed before. One submission.
                        self.copy("held", 0, "h", len * sb, sb);
                        self.copy("carry", 0, "grad_a", (len + 1) * lb, lb);
                        list = self.forward(unit, w.len as usize - 1, false, true);
                        evaluated += len - 1;
                    }
                    list.extend(parts::backward(schedule, shape, &self.config, w, last));
                    self.submit(&list)?;
                    // ∂L/∂a at the window's first step goes to the window before it, whose
                    // last state x_{unit−1} is held from now on.
                    self.copy("grad_a", lb, "carry", 0, lb);
                    self.copy("current", 0, "held", 0, sb);
                }
            }
        }
        let finish = parts::finish(window_shape, &self.config, self.p.shape.steps as u32);
        self.submit(&finish)?;
        self.ctx.wait()?;
        Ok(evaluated)
    }
}
