//! The three paths a run can take (GPU, fast CPU, f64 reference), each timed and each also
//! run once scored at the last step only, for the reach profile.

use std::time::Instant;

use super::progress::Progress;
use crate::cli::Args;
use crate::error::Result;
use crate::gpu::{GpuContext, RunTimes, TimingSource};
use crate::model::{Grads, LossAt, Problem};
use crate::report::{ClipReport, Timings};
use crate::variant::{GpuRunner, Variant};
use crate::{cpu, flops};

/// Aim for about this much timed work per path when `--repeat` is not given.
const TIME_BUDGET_MS: f64 = 2000.0;
const MAX_REPEAT: u32 = 20;

/// What one path computed: the result, and the reach profile (empty where it was not run).
pub struct PathResult {
    pub grads: Grads,
    pub reach: Vec<f64>,
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
fn repeats(args: &Args, warmup_ms: f64) -> u32 {
    args.repeat.unwrap_or_else(|| ((TIME_BUDGET_MS / warmup_ms.max(1e-3)) as u32).clamp(1, MAX_REPEAT))
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
    args: &Args,
    progress: &Progress,
    label: &str,
    mut f: impl FnMut() -> Result<(T, f64)>,
) -> Result<(T, f64, Vec<f64>)> {
    progress.say(format!("{label}: warm-up"));
    f()?;
    progress.say(format!("{label}: timed run 1"));
    let (mut last, first) = f()?;
    let mut times = vec![first];
    let n = repeats(args, first);
    for k in 1..n {
        progress.say(format!("{label}: timed run {}/{n}", k + 1));
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

pub fn clip_report(theta: Option<f64>, before: Option<f64>, g: &Grads) -> Option<ClipReport> {
    Some(ClipReport { theta: theta?, norm_before: before?, norm_after: crate::clip::global_grad_norm(g) })
}

/// The GPU: timed runs of the problem, one run scored at the last step only (the reach
/// profile), then the dispatch floor. `setup_ms` is the context's creation, already done.
pub fn gpu(
    args: &Args,
    ctx: &GpuContext,
    setup_ms: f64,
    variant: &Variant,
    p: &mut Problem,
    progress: &Progress,
    timings: &mut Timings,
) -> Result<GpuPath> {
    let (runner, build_ms) = clock(|| GpuRunner::new(ctx, args.schedule, variant.clone(), p));
    let mut runner = runner?;
    let mut runs: Vec<RunTimes> = Vec::new();
    let (grads, _, _) = timed(args, progress, "GPU", || {
        let (g, t) = runner.run(p, args.save_states)?;
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
    progress.say("GPU: reach profile (loss at the last step only)".into());
    let reach = scored_at_last(p, |last| runner.run(last, false))?.0.grad_h_norm;
    progress.say("GPU: dispatch-latency floor".into());
    let floor_ms = crate::gpu::floor::dispatch_floor_ms(ctx, 2 * p.shape.steps as u32, 5)?;
    Ok(GpuPath {
        result: PathResult { grads, reach },
        clip,
        repeat: timed_runs.len() as u32,
        stages,
        timing_source: runner.timing_source(),
        dispatches: runner.dispatch_count(),
        memory: runner.peak_memory,
        floor_ms,
    })
}

/// The fast f32 CPU path (plain BPTT only), timed; its reach profile only when no GPU ran.
pub fn fast_cpu(
    args: &Args,
    p: &mut Problem,
    with_reach: bool,
    progress: &Progress,
    timings: &mut Timings,
) -> Result<(PathResult, u32)> {
    let (grads, med, times) = timed(args, progress, "fast CPU path", || Ok(clock(|| cpu::fast::bptt(p))))?;
    timings.cpu_total = Some(med);
    let reach = if with_reach { scored_at_last(p, cpu::fast::bptt).grad_h_norm } else { Vec::new() };
    Ok((PathResult { grads, reach }, times.len() as u32))
}

/// The f64 reference (the oracle), one run, and its reach profile; ‖g‖ before clipping.
pub fn reference(
    variant: &Variant,
    p: &mut Problem,
    progress: &Progress,
    timings: &mut Timings,
) -> Result<(PathResult, Option<f64>)> {
    progress.say("f64 CPU reference".into());
    let (r, ms) = clock(|| variant.reference(p));
    let (grads, clip_before) = r?;
    timings.cpu_ref_total = Some(ms);
    progress.say("f64 CPU reference: reach profile".into());
    let reach = scored_at_last(p, |last| variant.reference(last))?.0.grad_h_norm;
    Ok((PathResult { grads, reach }, clip_before))
}

/// Whether a shape is long enough on a software adapter or the reference to show a spinner.
pub fn is_long(args: &Args, p: &Problem) -> bool {
    flops::flops(p.shape) >= 1e8 || args.repeat.is_some_and(|r| r > 5)
}
