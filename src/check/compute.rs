//! The three paths a run can take (GPU, fast CPU, f64 reference), each timed and each also
//! run once scored at the last step only, for the reach profile.

use std::time::Instant;

use super::CheckConfig;
use super::report::{ClipReport, Timings};
use crate::checkpoint::Plan;
use crate::error::Result;
use crate::gpu::{GpuContext, RunTimes, TimingSource};
use crate::model::{BpttResult, LossAt, Problem, Shape};
use crate::progress::Progress;
use crate::variant::{GpuRunner, GradientOptions};

/// Aim for about this much timed work per path when `--repeat` is not given.
const TIME_BUDGET_MS: f64 = 2000.0;
const MAX_REPEAT: u32 = 20;

/// What one path computed: the result, and the reach profile (empty where it was not run).
pub struct PathResult {
    pub grads: BpttResult,
    pub reach: Vec<f64>,
    /// ‖∂L_T/∂h_0‖ of the same run, when it ran.
    pub reach_h0: Option<f64>,
    /// The arithmetic the path ran in ("f32", "f64"), for the overflow diagnosis.
    pub precision: &'static str,
    /// Where the forward pass overflowed, when the states show it (None when they are
    /// finite or were not kept).
    pub forward_overflow: Option<ForwardOverflow>,
    /// A checkpointed run: the forward steps it evaluated, and its time over a full-storage
    /// run's when both were timed.
    pub forward_steps: Option<u64>,
    pub time_ratio: Option<f64>,
}

impl PathResult {
    fn new(grads: BpttResult, reach: Option<BpttResult>, precision: &'static str, shape: Shape) -> Self {
        let forward_overflow = ForwardOverflow::find(&grads, shape);
        let reach_h0 = reach.as_ref().map(|r| crate::model::norm(&r.grad_h0));
        let reach = reach.map(|r| r.grad_h_norm).unwrap_or_default();
        PathResult { grads, reach, reach_h0, precision, forward_overflow, forward_steps: None, time_ratio: None }
    }
}

/// The first steps t (from 1) whose forward states h_t and o_t have a non-finite entry. A
/// state that overflows poisons everything computed from it, so this, not the backward pass,
/// is what to report. o_t = h_t·w_qhᵀ usually overflows a few steps before h_t does.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ForwardOverflow {
    pub h: Option<usize>,
    pub o: Option<usize>,
}

impl ForwardOverflow {
    /// From the states a path returned: None when they are all finite or were not kept.
    pub fn find(g: &BpttResult, shape: Shape) -> Option<Self> {
        let first = |v: &[f64], width: usize| {
            v.chunks(width.max(1)).position(|s| s.iter().any(|x| !x.is_finite())).map(|t| t + 1)
        };
        let found =
            ForwardOverflow { h: first(&g.h, shape.batch * shape.hidden), o: first(&g.o, shape.batch * shape.output) };
        (found.h.is_some() || found.o.is_some()).then_some(found)
    }

    /// e.g. "h_t overflows f32 at t = 1080", "o_t overflows f32 at t = 1073 (h_t at t = 1080)".
    pub fn describe(&self, precision: &str) -> String {
        match (self.h, self.o) {
            (Some(h), Some(o)) if o < h => format!("o_t overflows {precision} at t = {o} (h_t at t = {h})"),
            (Some(h), _) => format!("h_t overflows {precision} at t = {h}"),
            (None, Some(o)) => format!("o_t overflows {precision} at t = {o}"),
            (None, None) => String::new(),
        }
    }
}

fn all_finite(g: &BpttResult) -> bool {
    g.tensors().iter().all(|(_, v)| v.iter().all(|x| x.is_finite()))
}

/// The GPU path's result and everything measured about it.
pub struct GpuPath {
    pub result: PathResult,
    pub clip: Option<ClipReport>,
    pub repeat: u32,
    pub stages: Vec<(&'static str, f64)>,
    pub timing_source: TimingSource,
    pub dispatches: usize,
    pub memory: u64,
    pub floor_ms: f64,
}

/// Runs `f` on `p` scored at the last step only, then restores `p`'s own `loss_at`: the
/// reach profile without a copy of the problem (which would double host memory).
pub fn scored_at_last<R>(p: &mut Problem, f: impl FnOnce(&Problem) -> R) -> R {
    let own = std::mem::replace(&mut p.loss_at, LossAt::Last);
    let r = f(p);
    p.loss_at = own;
    r
}

/// How many timed runs to make after a warm-up that took `warmup_ms`.
fn repeats(c: &CheckConfig, warmup_ms: f64) -> u32 {
    c.repeat.unwrap_or_else(|| ((TIME_BUDGET_MS / warmup_ms.max(1e-3)) as u32).clamp(1, MAX_REPEAT))
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { 0.5 * (v[n / 2 - 1] + v[n / 2]) }
}

/// Times `f` after one warm-up call: returns its last result, the median and every time. The
/// first timed call decides how many more fit in the time budget (the warm-up is no guide: it
/// includes shader compilation and first-touch costs).
fn timed<T>(
    c: &CheckConfig,
    progress: &dyn Progress,
    label: &str,
    mut f: impl FnMut() -> Result<(T, f64)>,
) -> Result<(T, f64, Vec<f64>)> {
    progress.stage(&format!("{label}: warm-up"));
    f()?;
    progress.stage(&format!("{label}: timed run 1"));
    let (mut last, first) = f()?;
    let mut times = vec![first];
    let n = repeats(c, first);
    for k in 1..n {
        progress.stage(&format!("{label}: timed run {}/{n}", k + 1));
        let (r, ms) = f()?;
        times.push(ms);
        last = r;
    }
    Ok((last, median(times.clone()), times))
}

pub fn clock<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let t = Instant::now();
    let r = f();
    (r, t.elapsed().as_secs_f64() * 1e3)
}

pub fn clip_report(theta: Option<f64>, before: Option<f64>, g: &BpttResult) -> Option<ClipReport> {
    Some(ClipReport { theta: theta?, norm_before: before?, norm_after: crate::clip::global_grad_norm(g) })
}

/// The GPU: timed runs of the problem, one run scored at the last step only (the reach
/// profile), then the dispatch floor. `setup_ms` is the context's creation, already done.
#[allow(clippy::too_many_arguments)]
pub fn gpu(
    c: &CheckConfig,
    ctx: &GpuContext,
    setup_ms: f64,
    variant: &GradientOptions,
    plan: Option<Plan>,
    p: &mut Problem,
    progress: &dyn Progress,
    timings: &mut Timings,
) -> Result<GpuPath> {
    let (runner, build_ms) = clock(|| GpuRunner::with_plan(ctx, c.schedule, variant.clone(), p, plan));
    let mut runner = runner?;
    let mut runs: Vec<RunTimes> = Vec::new();
    let (grads, _, _) = timed(c, progress, "GPU", || {
        let (g, t) = runner.run(p, c.keep_states)?;
        let total = t.total;
        runs.push(t);
        Ok((g, total))
    })?;
    let clip = clip_report(variant.clip, runner.clip_norm, &grads);
    let timed_runs = &runs[1..];
    let med = |f: fn(&RunTimes) -> f64| Some(median(timed_runs.iter().map(f).collect()));
    timings.gpu_setup = Some(setup_ms + build_ms);
    timings.gpu_upload = med(|r| r.upload);
    timings.gpu_forward = med(|r| r.forward);
    timings.gpu_backward = med(|r| r.backward);
    timings.gpu_readback = med(|r| r.readback);
    timings.gpu_total = med(|r| r.total);
    timings.gpu_total_min = timed_runs.iter().map(|r| r.total).reduce(f64::min);
    timings.gpu_total_max = timed_runs.iter().map(|r| r.total).reduce(f64::max);
    // Stage medians, in schedule order (every run stamps the same stages).
    let stages = timed_runs[0]
        .stages
        .iter()
        .enumerate()
        .map(|(k, (stage, _))| (stage.name(), median(timed_runs.iter().map(|r| r.stages[k].1).collect())))
        .collect();
    // A non-finite result without its states (no --save-states): run once more reading them
    // back, to tell a forward overflow (h_t) from one in the backward pass. Only on failure,
    // and only if the states fit in memory; without them the report names the tensors alone.
    let mut forward = ForwardOverflow::find(&grads, p.shape);
    if forward.is_none() && grads.h.is_empty() && !all_finite(&grads) {
        let rows = (p.shape.steps * p.shape.batch) as u64;
        let states_bytes = rows.saturating_mul(12 * (p.shape.hidden + p.shape.output) as u64);
        if crate::memory::check_host(states_bytes, c.max_memory, "", "").is_ok() {
            progress.stage("GPU: reading the states back to find where the result overflowed");
            forward = runner.run(p, true).ok().and_then(|(g, _)| ForwardOverflow::find(&g, p.shape));
        }
    }
    progress.stage("GPU: reach profile (loss at the last step only)");
    let reach = scored_at_last(p, |last| runner.run(last, false))?.0;
    let forward_steps = runner.forward_steps;
    let (dispatches, memory) = (runner.dispatch_count(), runner.peak_memory);
    let timing_source = runner.timing_source();
    drop(runner);
    // Checkpointed: the same run storing every state, where the adapter holds it, for the ratio.
    let time_ratio = match plan {
        Some(_) if whole_fits_gpu(c, ctx, variant, p.shape) => {
            let mut whole = GpuRunner::new(ctx, c.schedule, variant.clone(), p)?;
            let (_, whole_ms, _) = timed(c, progress, "GPU storing every state", || {
                let (_, t) = whole.run(p, false)?;
                Ok(((), t.total))
            })?;
            timings.gpu_total.map(|ms| ms / whole_ms)
        }
        _ => None,
    };
    progress.stage("GPU: dispatch-latency floor");
    let floor_ms = crate::gpu::floor::dispatch_floor_ms(ctx, 2 * p.shape.steps as u32, 5)?;
    Ok(GpuPath {
        result: PathResult {
            grads,
            reach_h0: Some(crate::model::norm(&reach.grad_h0)),
            reach: reach.grad_h_norm,
            precision: "f32",
            forward_overflow: forward,
            forward_steps,
            time_ratio,
        },
        clip,
        repeat: timed_runs.len() as u32,
        stages,
        timing_source,
        dispatches,
        memory,
        floor_ms,
    })
}

/// Whether a run storing every state fits the adapter's limits (for the time ratio).
fn whole_fits_gpu(c: &CheckConfig, ctx: &GpuContext, variant: &GradientOptions, s: Shape) -> bool {
    let lanes = match variant.truncate {
        Some(crate::variant::truncation::Truncation::Regular(k)) if k < s.steps => Some(k as u32),
        _ => None,
    };
    let schedule = if lanes.is_some() { crate::gpu::Schedule::Fused } else { c.schedule };
    crate::gpu::limits(ctx, s, schedule, lanes).is_ok()
}

/// The fast f32 CPU path, timed (checkpointed by `plan` when given); its reach profile only
/// when no GPU ran; ‖g‖ before clipping.
#[allow(clippy::too_many_arguments)]
pub fn fast_cpu(
    c: &CheckConfig,
    variant: &GradientOptions,
    plan: Option<Plan>,
    p: &mut Problem,
    with_reach: bool,
    progress: &dyn Progress,
    timings: &mut Timings,
) -> Result<(PathResult, u32, Option<f64>)> {
    let ((grads, before, forward_steps), med, times) = timed(c, progress, "fast CPU path", || {
        let (r, ms) = clock(|| variant.fast_planned(p, plan.as_ref()));
        Ok((r?, ms))
    })?;
    timings.cpu_total = Some(med);
    let reach =
        if with_reach { Some(scored_at_last(p, |last| variant.fast_planned(last, plan.as_ref()))?.0) } else { None };
    // Checkpointed: the same run storing every state, where memory allows, for the ratio.
    let full = crate::cpu::fast::full_bytes(p.shape, variant.truncate);
    let time_ratio = if plan.is_some() && crate::memory::check_host(full, c.max_memory, "", "").is_ok() {
        let (_, whole_ms, _) = timed(c, progress, "fast CPU path storing every state", || {
            let (r, ms) = clock(|| variant.fast(p));
            Ok((r?, ms))
        })?;
        Some(med / whole_ms)
    } else {
        None
    };
    let mut result = PathResult::new(grads, reach, "f32", p.shape);
    (result.forward_steps, result.time_ratio) = (forward_steps, time_ratio);
    Ok((result, times.len() as u32, before))
}

/// The f64 reference (the oracle), one run, and its reach profile; ‖g‖ before clipping.
pub fn reference(
    variant: &GradientOptions,
    plan: Option<Plan>,
    p: &mut Problem,
    progress: &dyn Progress,
    timings: &mut Timings,
) -> Result<(PathResult, Option<f64>)> {
    progress.stage("f64 CPU reference");
    let (r, ms) = clock(|| variant.reference_planned(p, plan.as_ref()));
    let (grads, clip_before, forward_steps) = r?;
    timings.cpu_ref_total = Some(ms);
    progress.stage("f64 CPU reference: reach profile");
    let reach = scored_at_last(p, |last| variant.reference_planned(last, plan.as_ref()))?.0;
    let mut result = PathResult::new(grads, Some(reach), "f64", p.shape);
    result.forward_steps = forward_steps;
    Ok((result, clip_before))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn states(h: Vec<f64>, o: Vec<f64>) -> BpttResult {
        BpttResult { h, o, ..Default::default() }
    }

    #[test]
    fn the_first_non_finite_state_is_found_and_named() {
        // T = 4, B = 1, h = 2, q = 1.
        let shape = Shape::new(4, 1, 1, 2, 1).unwrap();
        let inf = f64::INFINITY;
        let finite = states(vec![1.0; 8], vec![1.0; 4]);
        assert_eq!(ForwardOverflow::find(&finite, shape), None);
        // Not kept: nothing to say.
        assert_eq!(ForwardOverflow::find(&BpttResult::default(), shape), None);
        let h_first = states(vec![1.0, 1.0, 1.0, 1.0, 1.0, f64::NAN, inf, inf], vec![1.0, 1.0, 1.0, inf]);
        let found = ForwardOverflow::find(&h_first, shape).unwrap();
        assert_eq!(found, ForwardOverflow { h: Some(3), o: Some(4) });
        assert_eq!(found.describe("f32"), "h_t overflows f32 at t = 3");
        let o_first = states(vec![1.0, 1.0, 1.0, 1.0, 1.0, 1.0, inf, 1.0], vec![1.0, inf, inf, inf]);
        let found = ForwardOverflow::find(&o_first, shape).unwrap();
        assert_eq!(found.describe("f64"), "o_t overflows f64 at t = 2 (h_t at t = 4)");
        let only_o = states(vec![1.0; 8], vec![1.0, 1.0, -inf, 1.0]);
        assert_eq!(ForwardOverflow::find(&only_o, shape).unwrap().describe("f32"), "o_t overflows f32 at t = 3");
    }
}
