//! The GPU path: adapter, buffers, pipelines, and the dispatch schedule.
//!
//! `GpuBptt` is built once for a shape (buffers, pipelines, bind groups, the uniform arena) and
//! reused: each `run` uploads the problem's values, records the schedule into compute passes,
//! submits once, and reads back only the results.

pub mod adapter;
pub mod buffers;
pub mod checkpointed;
pub mod floor;
pub mod kernels;
pub mod layer;
pub mod matmul;
pub mod resident;
pub mod schedule;

use std::collections::HashMap;
use std::time::Instant;

pub use adapter::{AdapterRequest, AdapterSummary, BackendChoice, GpuContext, Origin, list_adapters};
use buffers::BufferSizes;
pub use checkpointed::memory_costs;
use kernels::{PARAMS_SIZE, Pipelines};
pub use schedule::Schedule;
use schedule::{Binding, Config, Dispatch, Phase, Stage, Work};

use crate::error::{Error, Result};
use crate::model::{Activation, BpttResult, LossAt, LossFn, Problem, Shape, Targets};

/// Where the phase times came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TimingSource {
    /// GPU timestamp queries around each compute pass.
    Timestamp,
    /// The host clock around submit-and-wait of each pass.
    Host,
}

/// Times of one run, in milliseconds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunTimes {
    pub upload: f64,
    pub forward: f64,
    pub backward: f64,
    pub readback: f64,
    pub total: f64,
    /// Per stage, in schedule order, where the adapter writes timestamps inside passes.
    pub stages: Vec<(Stage, f64)>,
    /// Compute dispatches recorded.
    pub dispatches: usize,
}

/// The result buffers, in the order they are packed into the readback buffer.
const RESULTS: [&str; 8] =
    ["clip_norms", "loss", "grad_w_hx", "grad_w_hh", "grad_w_qh", "grad_b_h", "grad_b_q", "grad_h_norm"];
/// Timestamp slots: enough for a stamp before every stage and at the end of each pass.
const QUERIES: u32 = 16;
/// The most dispatches recorded in one compute pass. Software adapters crash on passes of
/// tens of thousands of dispatches (lavapipe segfaults near 60000), which long sequences reach
/// at one dispatch per step; splitting a phase into passes of this size costs a pass boundary
/// every few thousand steps.
pub const MAX_DISPATCHES_PER_PASS: usize = 4096;

pub struct GpuBptt {
    shape: Shape,
    schedule_kind: Schedule,
    sizes: BufferSizes,
    buffers: HashMap<&'static str, wgpu::Buffer>,
    /// One slot per dispatch, each `slot` bytes apart, holding that dispatch's parameters.
    params: wgpu::Buffer,
    slot: u64,
    bind_groups: HashMap<Binding, wgpu::BindGroup>,
    pipelines: std::sync::Arc<Pipelines>,
    /// Mappable copy of the results (and timestamps).
    readback: wgpu::Buffer,
    /// Mappable copy of h_1..h_T and o_1..o_T, made on the first run that keeps states.
    states_readback: Option<wgpu::Buffer>,
    timestamps: Option<(wgpu::QuerySet, wgpu::Buffer)>,
    /// Timestamps between stages inside a pass (else one pair per pass).
    stage_stamps: bool,
    config: Option<Config>,
    schedule: Vec<Dispatch>,
    /// K lanes for truncated BPTT (fused only), fixed when the object is built.
    lanes: Option<u32>,
    /// For a checkpointed run: the plan (the object's shape is one window of it) and the whole
    /// sequence's shape (`run_plan`).
    plan: Option<(crate::checkpoint::Plan, Shape)>,
    /// ‖g‖ over the parameter gradients before the last run's clipping, if it clipped.
    clip_norm: Option<f64>,
    /// Built for the layer mode (`layer`): runs only through `layer_forward` and `layer_backward`.
    layer: bool,
}

/// What a run does beyond the plain forward + backward.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Read h_1..h_T and o_1..o_T back too.
    pub keep_states: bool,
    /// c_t for t = 0..T−1 multiplying the carried gradient (randomised truncation, segments).
    pub carry: Option<Vec<f64>>,
    /// Clip the parameter gradients to this global norm.
    pub clip: Option<f64>,
}

/// The configuration with the most dispatches and bindings (biases and clipping on): the
/// buffers and the uniform arena are sized for it, so every configuration of the shape fits.
pub(crate) fn largest_config(lanes: Option<u32>) -> Config {
    Config {
        activation: Activation::Tanh,
        loss_fn: LossFn::Xent,
        loss_at: LossAt::All,
        bias: true,
        carry: Vec::new(),
        lanes,
        clip: Some(1.0),
        layer: false,
    }
}

/// Checks every buffer of `shape` (`BufferSizes`) and the uniform arena of its schedule against
/// `ctx`'s limits (`Error::Limit`, naming the buffer and the limit), without allocating anything.
pub fn limits(ctx: &GpuContext, shape: Shape, schedule_kind: Schedule, lanes: Option<u32>) -> Result<()> {
    limits_of(ctx, &BufferSizes::new(shape, schedule_kind, lanes.unwrap_or(1)), shape, schedule_kind, lanes)
}

/// `limits` for given buffer sizes (a checkpointed object's window).
fn limits_of(
    ctx: &GpuContext,
    sizes: &BufferSizes,
    shape: Shape,
    schedule_kind: Schedule,
    lanes: Option<u32>,
) -> Result<()> {
    sizes.check(&ctx.limits, &ctx.adapter.name)?;
    let dispatches = schedule::build(schedule_kind, shape, &largest_config(lanes)).len() as u64;
    let params_bytes = (ctx.limits.min_uniform_buffer_offset_alignment as u64).max(PARAMS_SIZE) * dispatches;
    // Dynamic offsets are u32.
    if params_bytes > ctx.limits.max_buffer_size || params_bytes > u32::MAX as u64 {
        return Err(Error::Limit(format!(
            "the parameter arena of {dispatches} dispatches ({}) exceeds this adapter's buffer size limit: \
             use fewer `steps`",
            crate::format::human_bytes(params_bytes)
        )));
    }
    Ok(())
}

/// Before a procedure builds anything on the GPU: `shape` with `schedule` (and `lanes` of
/// truncation) fits `ctx`'s limits, or the error is the caller's input (`Error::Invalid`,
/// exit 2) naming the buffer and the adapter's limit, followed by `hint` (what else to change).
/// The gradient check and training both call it, each with its own hint.
pub fn check_fits(ctx: &GpuContext, shape: Shape, schedule: Schedule, lanes: Option<u32>, hint: &str) -> Result<()> {
    limits(ctx, shape, schedule, lanes).map_err(|e| match e {
        Error::Limit(m) => Error::Invalid(format!("{m}{hint}")),
        other => other,
    })
}

impl GpuBptt {
    /// Allocates everything for `shape` and `schedule` on `ctx`'s device, after checking every
    /// buffer against the adapter's limits.
    pub fn new(ctx: &GpuContext, shape: Shape, schedule_kind: Schedule) -> Result<Self> {
        Self::build(ctx, shape, schedule_kind, None, false)
    }

    /// Like `new`, for BPTT truncated `k` steps back from each loss term (the fused schedule
    /// with K lanes of ∂L/∂a; see `shaders/truncated_step.wgsl`). K ≥ T is full BPTT: use `new`.
    pub fn new_truncated(ctx: &GpuContext, shape: Shape, k: usize) -> Result<Self> {
        if k == 0 || k > shape.steps {
            return Err(Error::Invalid(format!("truncation K must be in 1..={} (T), got {k}", shape.steps)));
        }
        Self::build(ctx, shape, Schedule::Fused, Some(k as u32), false)
    }

    fn build(ctx: &GpuContext, shape: Shape, schedule_kind: Schedule, lanes: Option<u32>, layer: bool) -> Result<Self> {
        let mut sizes = BufferSizes::new(shape, schedule_kind, lanes.unwrap_or(1));
        if layer {
            sizes.list.extend(layer::extra_buffers(shape, schedule_kind));
        }
        Self::build_with(ctx, sizes, shape, schedule_kind, lanes, layer)
    }

    fn build_with(
        ctx: &GpuContext,
        sizes: BufferSizes,
        shape: Shape,
        schedule_kind: Schedule,
        lanes: Option<u32>,
        layer: bool,
    ) -> Result<Self> {
        // The layer mode's schedules have no more dispatches than the full model's.
        limits_of(ctx, &sizes, shape, schedule_kind, lanes)?;
        let largest_config = if layer { layer::largest_config() } else { largest_config(lanes) };
        let largest = schedule::build(schedule_kind, shape, &largest_config);
        let device = &ctx.device;
        let slot = (ctx.limits.min_uniform_buffer_offset_alignment as u64).max(PARAMS_SIZE);
        let params_bytes = slot * largest.len() as u64;
        let mut buffers = HashMap::new();
        for (name, _, bytes) in &sizes.list {
            let buf = device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(name),
                size: *bytes,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            });
            buffers.insert(*name, buf);
        }
        let params = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("params"),
            size: params_bytes,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let pipelines = ctx.pipelines();
        let mut bind_groups = HashMap::new();
        for binding in largest.iter().map(|d| d.binding) {
            if bind_groups.contains_key(&binding) {
                continue;
            }
            let mut entries = vec![wgpu::BindGroupEntry {
                binding: 0,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: &params,
                    offset: 0,
                    size: wgpu::BufferSize::new(PARAMS_SIZE),
                }),
            }];
            for (n, name) in binding.buffers_for(pipelines.recurrent.walk_rows).iter().enumerate() {
                entries
                    .push(wgpu::BindGroupEntry { binding: n as u32 + 1, resource: buffers[name].as_entire_binding() });
            }
            let bg = device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(binding.kernel().name()),
                layout: pipelines.layout(binding.kernel()),
                entries: &entries,
            });
            bind_groups.insert(binding, bg);
        }
        let readback = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: readback_bytes(&sizes, shape) - 8 * QUERIES as u64 + if layer { sizes.get("grad_x") } else { 0 },
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let timestamps = ctx.has_timestamps().then(|| {
            let set = device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("pass timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count: QUERIES,
            });
            let resolve = device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("timestamp resolve"),
                size: 8 * QUERIES as u64,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            });
            (set, resolve)
        });
        ctx.check_errors()?;
        Ok(GpuBptt {
            shape,
            schedule_kind,
            stage_stamps: ctx.features.contains(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES),
            sizes,
            buffers,
            params,
            slot,
            bind_groups,
            pipelines,
            readback,
            states_readback: None,
            timestamps,
            config: None,
            schedule: Vec::new(),
            lanes,
            plan: None,
            clip_norm: None,
            layer,
        })
    }

    pub fn shape(&self) -> Shape {
        self.shape
    }

    pub fn schedule(&self) -> Schedule {
        self.schedule_kind
    }

    /// Bytes of GPU memory this object holds.
    pub fn memory_bytes(&self) -> u64 {
        let states = self.states_readback.as_ref().map_or(0, |b| b.size());
        self.sizes.total() + self.params.size() + self.readback.size() + states
    }

    /// Dispatches in the current schedule (after the first run).
    pub fn dispatch_count(&self) -> usize {
        self.schedule.len()
    }

    pub fn timing_source(&self) -> TimingSource {
        if self.timestamps.is_some() { TimingSource::Timestamp } else { TimingSource::Host }
    }

    /// Fills every buffer a run must write with NaN, so an element no kernel writes shows up
    /// as NaN in the results (used by the tests).
    pub fn poison(&self, ctx: &GpuContext) {
        for name in ["h", "o", "grad_o", "loss_rows", "loss", "grad_a", "grad_h", "grad_h_norm"] {
            let n = (self.sizes.get(name) / 4) as usize;
            ctx.queue.write_buffer(&self.buffers[name], 0, bytemuck::cast_slice(&vec![f32::NAN; n]));
        }
    }

    /// Rebuilds the schedule and rewrites the parameter arena when the configuration changed.
    fn configure(&mut self, ctx: &GpuContext, config: Config) {
        if self.config.as_ref() == Some(&config) {
            return;
        }
        self.schedule = schedule::build(self.schedule_kind, self.shape, &config);
        let mut arena = vec![0u8; self.slot as usize * self.schedule.len()];
        for (i, d) in self.schedule.iter().enumerate() {
            let at = i * self.slot as usize;
            arena[at..at + PARAMS_SIZE as usize].copy_from_slice(bytemuck::cast_slice(&d.params));
        }
        ctx.queue.write_buffer(&self.params, 0, &arena);
        self.config = Some(config);
    }

    fn upload(&self, ctx: &GpuContext, p: &Problem) {
        self.upload_weights(ctx, p);
        let write =
            |name: &str, v: &[f64]| ctx.queue.write_buffer(&self.buffers[name], 0, bytemuck::cast_slice(&f32s(v)));
        write("x", &p.x);
        // h's slot 0 is h0.
        write("h", &p.h0);
        match &p.targets {
            Targets::Mse(y) => write("y", y),
            Targets::Xent(labels) => ctx.queue.write_buffer(&self.buffers["labels"], 0, bytemuck::cast_slice(labels)),
        }
    }

    /// The parameters, in f32 (zeros for biases that are off).
    fn upload_weights(&self, ctx: &GpuContext, p: &Problem) {
        let write =
            |name: &str, v: &[f64]| ctx.queue.write_buffer(&self.buffers[name], 0, bytemuck::cast_slice(&f32s(v)));
        let s = self.shape;
        write("w_hx", &p.params.w_hx);
        write("w_hh", &p.params.w_hh);
        write("w_qh", &p.params.w_qh);
        write("b_h", p.params.b_h.as_deref().unwrap_or(&vec![0.0; s.hidden]));
        write("b_q", p.params.b_q.as_deref().unwrap_or(&vec![0.0; s.output]));
    }

    /// Records every dispatch of `phase`, in compute passes of at most
    /// `MAX_DISPATCHES_PER_PASS`. Timestamps go to query slots from `first_query` on: one
    /// before each stage and one at the end where the adapter allows stamps inside passes, else
    /// one at the first pass's start and one at the last pass's end. Returns the stages stamped
    /// and the next free slot.
    fn record_pass(
        &self,
        ctx: &GpuContext,
        encoder: &mut wgpu::CommandEncoder,
        phase: Phase,
        first_query: u32,
    ) -> (Vec<Stage>, u32) {
        let set = self.timestamps.as_ref().map(|(set, _)| set);
        let items: Vec<(usize, &Dispatch)> =
            self.schedule.iter().enumerate().filter(|(_, d)| d.stage.phase() == phase).collect();
        let passes = items.len().div_ceil(MAX_DISPATCHES_PER_PASS).max(1);
        let label = if phase == Phase::Forward { "forward" } else { "backward" };
        let begin = |encoder: &mut wgpu::CommandEncoder, n: usize| {
            // Only the first pass's start and the last one's end are stamped (wgpu refuses a
            // pass stamp with neither).
            let ends = n == 0 || n + 1 == passes;
            let pass_stamps = set.filter(|_| !self.stage_stamps && ends).map(|set| wgpu::ComputePassTimestampWrites {
                query_set: set,
                beginning_of_pass_write_index: (n == 0).then_some(first_query),
                end_of_pass_write_index: (n + 1 == passes).then_some(first_query + 1),
            });
            encoder
                .begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some(label), timestamp_writes: pass_stamps })
                .forget_lifetime()
        };
        let max_dim = ctx.limits.max_compute_workgroups_per_dimension;
        let mut stages: Vec<Stage> = Vec::new();
        let mut query = first_query;
        let mut pass = begin(encoder, 0);
        for (k, (i, d)) in items.iter().enumerate() {
            if k > 0 && k % MAX_DISPATCHES_PER_PASS == 0 {
                // End this pass before the next one begins on the same encoder.
                drop(pass);
                pass = begin(encoder, k / MAX_DISPATCHES_PER_PASS);
            }
            if stages.last() != Some(&d.stage) {
                stages.push(d.stage);
                if let (Some(set), true) = (set, self.stage_stamps) {
                    pass.write_timestamp(set, query);
                    query += 1;
                }
            }
            let kernel = d.binding.kernel();
            let groups = match d.work {
                Work::Invocations(n) => n.div_ceil(kernel.workgroup_size()),
                Work::Rows(n) => n.div_ceil(self.pipelines.recurrent.rows),
                Work::Workgroups(n) => n,
            };
            let (gx, gy) = spread(groups, max_dim);
            pass.set_pipeline(self.pipelines.pipeline(kernel));
            pass.set_bind_group(0, &self.bind_groups[&d.binding], &[(*i as u64 * self.slot) as u32]);
            pass.dispatch_workgroups(gx, gy, 1);
        }
        match (set, self.stage_stamps) {
            (Some(set), true) => {
                pass.write_timestamp(set, query);
                (stages, query + 1)
            }
            (Some(_), false) => (stages, first_query + 2),
            (None, _) => (stages, first_query),
        }
    }

    /// Forward + backward on the GPU. With `keep_states`, h_1..h_T and o_1..o_T are read back too.
    pub fn run(&mut self, ctx: &GpuContext, p: &Problem, keep_states: bool) -> Result<(BpttResult, RunTimes)> {
        self.run_with(ctx, p, &RunOptions { keep_states, ..Default::default() })
    }

    /// ‖g‖ over the parameter gradients before the last run clipped them (None if it did not).
    pub fn clip_norm(&self) -> Option<f64> {
        self.clip_norm
    }

    /// Forward + backward on the GPU with the extras of `opts`: upload, one submission of both
    /// passes (or one per pass when timed by the host clock), then one readback.
    pub fn run_with(&mut self, ctx: &GpuContext, p: &Problem, opts: &RunOptions) -> Result<(BpttResult, RunTimes)> {
        let config = self.config_for(p, opts)?;
        let start = Instant::now();
        self.configure(ctx, config);
        self.upload(ctx, p);
        ctx.queue.submit([]);
        ctx.wait()?;
        let uploaded = Instant::now();
        let stamps = self.compute(ctx)?;
        let computed = Instant::now();
        let grads = self.read_results(ctx, p, opts)?;
        let done = Instant::now();
        let (forward, backward, stages) = self.pass_times(ctx, &grads.1, &stamps);
        let times = RunTimes {
            upload: (uploaded - start).as_secs_f64() * 1e3,
            forward,
            backward,
            readback: (done - computed).as_secs_f64() * 1e3,
            total: (done - start).as_secs_f64() * 1e3,
            stages,
            dispatches: self.schedule.len(),
        };
        Ok((grads.0, times))
    }

    /// The schedule's configuration for `p` and `opts`, after checking that they fit this
    /// object.
    fn config_for(&self, p: &Problem, opts: &RunOptions) -> Result<Config> {
        self.config_against(p, opts, self.shape)
    }

    /// The configuration for `p`, which must have the shape `expect`.
    fn config_against(&self, p: &Problem, opts: &RunOptions, expect: Shape) -> Result<Config> {
        if let Some(c) = opts.carry.as_ref().filter(|c| c.len() != p.shape.steps) {
            return Err(Error::Invalid(format!("{} carry scales for {} steps", c.len(), p.shape.steps)));
        }
        if let Some(theta) = opts.clip.filter(|t| !(t.is_finite() && *t > 0.0)) {
            return Err(Error::Invalid(format!(
                "the clipping threshold must be a finite number > 0, got {}",
                crate::format::number(theta)
            )));
        }
        if p.shape != expect {
            return Err(Error::Invalid(format!("this GPU object was built for {expect}, not {}", p.shape)));
        }
        if self.layer {
            return Err(Error::Invalid("this GPU object was built for the layer mode: use `layer_forward`".into()));
        }
        Ok(Config {
            activation: p.activation,
            loss_fn: p.loss_fn(),
            loss_at: p.loss_at,
            bias: p.has_bias(),
            carry: opts.carry.as_ref().map(|c| c.iter().map(|&x| x as f32).collect()).unwrap_or_default(),
            lanes: self.lanes,
            clip: opts.clip.map(|x| x as f32),
            layer: false,
        })
    }

    /// Records and submits the forward and backward passes and waits for them; returns where
    /// their timestamps are (or the host clock's times).
    fn compute(&self, ctx: &GpuContext) -> Result<PassStamps> {
        let new_encoder = || ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("bptt") });
        let mut encoder = new_encoder();
        // The gradients are sums over steps: start them at zero. ∂L/∂a_{T+1} = 0 too.
        for name in ["grad_w_hx", "grad_w_hh", "grad_w_qh", "grad_b_h", "grad_b_q", "clip_norms"] {
            encoder.clear_buffer(&self.buffers[name], 0, None);
        }
        let s = self.shape;
        let a_slot_bytes = grad_h0_bytes(s) * self.lanes.unwrap_or(1) as u64;
        encoder.clear_buffer(&self.buffers["grad_a"], (s.steps as u64 + 1) * a_slot_bytes, Some(a_slot_bytes));
        let mut stamps = PassStamps { stamped: Vec::new(), host_ms: [f64::NAN; 2] };
        if let Some((set, resolve)) = &self.timestamps {
            // One submission; the GPU's own clock times each pass (or stage).
            let (fwd, next) = self.record_pass(ctx, &mut encoder, Phase::Forward, 0);
            let (bwd, end) = self.record_pass(ctx, &mut encoder, Phase::Backward, next);
            stamps.stamped.push((fwd, 0));
            stamps.stamped.push((bwd, next));
            encoder.resolve_query_set(set, 0..end, resolve, 0);
            encoder.copy_buffer_to_buffer(resolve, 0, &self.readback, 0, 8 * end as u64);
            ctx.queue.submit([encoder.finish()]);
            ctx.wait()?;
        } else {
            // No timestamps: submit each pass on its own and time it with the host clock.
            for (n, phase) in [Phase::Forward, Phase::Backward].into_iter().enumerate() {
                let t = Instant::now();
                self.record_pass(ctx, &mut encoder, phase, 0);
                ctx.queue.submit([std::mem::replace(&mut encoder, new_encoder()).finish()]);
                ctx.wait()?;
                stamps.host_ms[n] = t.elapsed().as_secs_f64() * 1e3;
            }
        }
        Ok(stamps)
    }

    /// Makes the mappable buffer for h and o the first time states are asked for.
    fn states_buffer(&mut self, ctx: &GpuContext) -> Result<&wgpu::Buffer> {
        let state_bytes = self.shape.steps as u64 * grad_h0_bytes(self.shape) + self.sizes.get("o");
        if self.states_readback.is_none() {
            if state_bytes > ctx.limits.max_buffer_size {
                return Err(Error::Limit(format!(
                    "reading back the states h and o needs {}; this adapter allocates at most {} per buffer",
                    crate::format::human_bytes(state_bytes),
                    crate::format::human_bytes(ctx.limits.max_buffer_size)
                )));
            }
            self.states_readback = Some(ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("states readback"),
                size: state_bytes,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }));
        }
        Ok(self.states_readback.as_ref().expect("made above"))
    }

    /// Copies the results (and, with `keep_states`, h and o) into the mappable buffers, reads
    /// them back, and returns them with the readback buffer's bytes (whose head holds the
    /// timestamps).
    fn read_results(&mut self, ctx: &GpuContext, p: &Problem, opts: &RunOptions) -> Result<(BpttResult, Vec<u8>)> {
        let s = self.shape;
        let slot_bytes = grad_h0_bytes(s);
        if opts.keep_states {
            self.states_buffer(ctx)?;
        }
        // Pack the results into the readback buffer after the timestamps.
        let mut encoder =
            ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("bptt readback") });
        let mut at = 8 * QUERIES as u64;
        let mut places = Vec::new();
        let mut copy = |src: &str, offset: u64, bytes: u64| {
            encoder.copy_buffer_to_buffer(&self.buffers[src], offset, &self.readback, at, bytes);
            places.push((at, bytes));
            at += bytes;
        };
        for name in RESULTS {
            copy(name, 0, self.sizes.get(name));
        }
        copy("grad_h", 0, grad_h0_bytes(s)); // slot 0 of grad_h is ∂L/∂h0
        let states = self.states_readback.as_ref().filter(|_| opts.keep_states);
        if let Some(dst) = states {
            let h_bytes = s.steps as u64 * slot_bytes;
            encoder.copy_buffer_to_buffer(&self.buffers["h"], slot_bytes, dst, 0, h_bytes); // h_1..h_T
            encoder.copy_buffer_to_buffer(&self.buffers["o"], 0, dst, h_bytes, self.sizes.get("o"));
        }
        ctx.queue.submit([encoder.finish()]);
        let data = read_buffer(ctx, &self.readback, at)?;
        let (h_states, o_states) = match states {
            Some(buf) => {
                let bytes = read_buffer(ctx, buf, buf.size())?;
                let all: Vec<f64> = bytemuck::cast_slice::<u8, f32>(&bytes).iter().map(|&x| x as f64).collect();
                let h_len = s.steps * s.batch * s.hidden;
                (all[..h_len].to_vec(), all[h_len..].to_vec())
            }
            None => (Vec::new(), Vec::new()),
        };
        let floats = |i: usize| -> Vec<f64> {
            let (off, len) = places[i];
            bytemuck::cast_slice::<u8, f32>(&data[off as usize..(off + len) as usize])
                .iter()
                .map(|&x| x as f64)
                .collect()
        };
        let bias = p.has_bias();
        // clip_norms holds ‖∂L/∂w_k‖ per parameter gradient (zeros for biases that are off).
        self.clip_norm = opts.clip.map(|_| crate::model::norm(&floats(0)));
        let grads = BpttResult {
            loss: floats(1)[0],
            grad_w_hx: floats(2),
            grad_w_hh: floats(3),
            grad_w_qh: floats(4),
            grad_b_h: bias.then(|| floats(5)),
            grad_b_q: bias.then(|| floats(6)),
            grad_h_norm: floats(7),
            grad_h0: floats(8),
            h: h_states,
            o: o_states,
        };
        Ok((grads, data))
    }

    /// The forward and backward passes' times in ms, and each stage's where the adapter stamps
    /// inside passes: from the timestamps at the head of `data`, else the host clock's.
    fn pass_times(&self, ctx: &GpuContext, data: &[u8], stamps: &PassStamps) -> (f64, f64, Vec<(Stage, f64)>) {
        if self.timestamps.is_none() {
            return (stamps.host_ms[0], stamps.host_ms[1], Vec::new());
        }
        let ticks: &[u64] = bytemuck::cast_slice(&data[..8 * QUERIES as usize]);
        let ns = ctx.queue.get_timestamp_period() as f64;
        let span = |a: u32, b: u32| ticks[b as usize].saturating_sub(ticks[a as usize]) as f64 * ns / 1e6;
        let mut stages = Vec::new();
        let mut phase_ms = [0.0; 2];
        for (n, (names, first)) in stamps.stamped.iter().enumerate() {
            if self.stage_stamps {
                for (k, stage) in names.iter().enumerate() {
                    stages.push((*stage, span(first + k as u32, first + k as u32 + 1)));
                }
                phase_ms[n] = span(*first, first + names.len() as u32);
            } else {
                phase_ms[n] = span(*first, first + 1);
            }
        }
        (phase_ms[0], phase_ms[1], stages)
    }
}

/// f32 copies of f64 values, for upload.
pub(crate) fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

/// Where one run's pass timings are: per pass (forward, then backward) the stages it stamped
/// and its first query slot; or the host clock's times when the adapter has no timestamps.
struct PassStamps {
    stamped: Vec<(Vec<Stage>, u32)>,
    host_ms: [f64; 2],
}

/// The mappable results buffer (timestamps, then the results) and the timestamps' resolve
/// buffer, in bytes.
fn readback_bytes(sizes: &BufferSizes, shape: Shape) -> u64 {
    let results: u64 = RESULTS.iter().map(|n| sizes.get(n)).sum::<u64>() + grad_h0_bytes(shape);
    2 * 8 * QUERIES as u64 + results
}

fn grad_h0_bytes(s: Shape) -> u64 {
    (s.batch * s.hidden * 4) as u64
}

/// A workgroup count as an (x, y) grid within the per-dimension limit; the kernels linearise
/// (x, y) back and skip the few workgroups past the count.
pub(crate) fn spread(groups: u32, max_dim: u32) -> (u32, u32) {
    if groups <= max_dim { (groups, 1) } else { (max_dim, groups.div_ceil(max_dim)) }
}

/// Maps the first `len` bytes of `buffer`, copies them out, and unmaps.
pub(crate) fn read_buffer(ctx: &GpuContext, buffer: &wgpu::Buffer, len: u64) -> Result<Vec<u8>> {
    let slice = buffer.slice(..len);
    let (tx, rx) = futures_intrusive::channel::shared::oneshot_channel();
    slice.map_async(wgpu::MapMode::Read, move |r| {
        let _ = tx.send(r);
    });
    ctx.wait()?;
    match pollster::block_on(rx.receive()) {
        Some(Ok(())) => {}
        Some(Err(e)) => return Err(Error::Gpu(format!("reading results back: {e}"))),
        None => {
            return Err(Error::Gpu("reading results back: the map request was dropped".into()));
        }
    }
    let data = slice.get_mapped_range().map_err(|e| Error::Gpu(format!("reading results back: {e}")))?.to_vec();
    buffer.unmap();
    Ok(data)
}
