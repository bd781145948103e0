//! A variant on the GPU: the `GpuBptt` objects it needs (one per segment length), the random
//! cuts and clipping passed to each run, and segments run one after the other.

use super::GradientOptions;
use super::segments::{run_in_segments, segment_lengths};
use super::truncation::Truncation;
use crate::checkpoint::Plan;
use crate::error::{Error, Result};
use crate::gpu::{GpuBptt, GpuContext, RunOptions, RunTimes, Schedule};
use crate::model::{BpttResult, Problem};

/// Runs a variant on the GPU, building (and, across segments of another length, rebuilding)
/// the `GpuBptt` it needs, so at most one is alive at a time.
pub struct GpuRunner<'a> {
    ctx: &'a GpuContext,
    schedule: Schedule,
    variant: GradientOptions,
    /// One object per segment length (at most two: the segments differ by at most one step).
    objects: Vec<GpuBptt>,
    dispatches: usize,
    /// The largest GPU memory one object held.
    pub peak_memory: u64,
    /// ‖g‖ before clipping, from the last run that clipped.
    pub clip_norm: Option<f64>,
    /// The checkpointing plan every run follows, if any.
    plan: Option<Plan>,
    /// Forward steps the last checkpointed run evaluated.
    pub forward_steps: Option<u64>,
}

impl<'a> GpuRunner<'a> {
    pub fn new(ctx: &'a GpuContext, schedule: Schedule, variant: GradientOptions, p: &Problem) -> Result<Self> {
        Self::with_plan(ctx, schedule, variant, p, None)
    }

    /// `new`, every run carried out by `plan` (checkpointed) when one is given.
    pub fn with_plan(
        ctx: &'a GpuContext,
        schedule: Schedule,
        variant: GradientOptions,
        p: &Problem,
        plan: Option<Plan>,
    ) -> Result<Self> {
        if let (Some(Truncation::Regular(_)), Schedule::Stepwise) = (variant.truncate, schedule) {
            return Err(Error::Invalid("`truncate` K runs on the fused schedule (`schedule` fused)".into()));
        }
        if plan.is_some() && variant.segments.is_some() {
            return Err(super::segments_and_memory());
        }
        let mut runner = GpuRunner {
            ctx,
            schedule,
            variant,
            objects: Vec::new(),
            dispatches: 0,
            peak_memory: 0,
            clip_norm: None,
            plan,
            forward_steps: None,
        };
        // Build the objects now, so setup is timed apart from the runs.
        let mut lengths = match runner.variant.segments {
            Some(n) => segment_lengths(p.shape.steps, n)?,
            None => vec![p.shape.steps],
        };
        lengths.dedup();
        for steps in lengths {
            runner.object_for(crate::model::Shape { steps, ..p.shape })?;
        }
        Ok(runner)
    }

    fn object_for(&mut self, shape: crate::model::Shape) -> Result<&mut GpuBptt> {
        let at = match self.objects.iter().position(|o| o.sequence_shape() == shape) {
            Some(at) => at,
            None => {
                let o = match (self.variant.truncate, self.plan) {
                    (Some(Truncation::Regular(k)), Some(plan)) => {
                        GpuBptt::new_checkpointed(self.ctx, shape, plan, Schedule::Fused, Some(k as u32))?
                    }
                    (_, Some(plan)) => GpuBptt::new_checkpointed(self.ctx, shape, plan, self.schedule, None)?,
                    (Some(Truncation::Regular(k)), None) => GpuBptt::new_truncated(self.ctx, shape, k)?,
                    _ => GpuBptt::new(self.ctx, shape, self.schedule)?,
                };
                self.objects.push(o);
                self.objects.len() - 1
            }
        };
        Ok(&mut self.objects[at])
    }

    /// Dispatches of the last run (over all its segments).
    pub fn dispatch_count(&self) -> usize {
        self.dispatches
    }

    pub fn timing_source(&self) -> crate::gpu::TimingSource {
        // A checkpointed run is timed whole, by the host clock.
        if self.plan.is_some() { crate::gpu::TimingSource::Host } else { self.objects[0].timing_source() }
    }

    fn update_memory(&mut self) {
        // Every object stays alive between runs, so the peak is their sum.
        let held: u64 = self.objects.iter().map(|o| o.memory_bytes()).sum();
        self.peak_memory = self.peak_memory.max(held);
    }

    /// One forward + backward of the variant; the times of segments add up.
    pub fn run(&mut self, p: &Problem, keep_states: bool) -> Result<(BpttResult, RunTimes)> {
        let carry = self.variant.carry(p.shape.steps)?;
        let clip = self.variant.clip;
        let ctx = self.ctx;
        if self.plan.is_some() {
            let opts = RunOptions { keep_states: false, carry, clip };
            let o = self.object_for(p.shape)?;
            let (g, t, steps) = o.run_plan(ctx, p, &opts)?;
            self.clip_norm = o.clip_norm();
            self.dispatches = t.dispatches;
            self.forward_steps = Some(steps);
            self.update_memory();
            return Ok((g, t));
        }
        let Some(n) = self.variant.segments else {
            let opts = RunOptions { keep_states, carry, clip };
            let o = self.object_for(p.shape)?;
            let r = o.run_with(ctx, p, &opts)?;
            self.clip_norm = o.clip_norm();
            self.dispatches = r.1.dispatches;
            self.update_memory();
            return Ok(r);
        };
        let mut total = RunTimes::default();
        let g = run_in_segments(p, n, |seg| {
            let (g, t) = self.object_for(seg.shape)?.run(ctx, seg, true)?;
            total.upload += t.upload;
            total.forward += t.forward;
            total.backward += t.backward;
            total.readback += t.readback;
            total.total += t.total;
            total.dispatches += t.dispatches;
            // Every segment runs the same stages: add them up in order.
            if total.stages.is_empty() {
                total.stages = t.stages;
            } else {
                for (acc, (_, ms)) in total.stages.iter_mut().zip(t.stages) {
                    acc.1 += ms;
                }
            }
            Ok(g)
        })?;
        self.dispatches = total.dispatches;
        self.update_memory();
        Ok((g, total))
    }
}
