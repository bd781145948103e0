//! The gradient check as a library call: run the chosen paths on a problem (the GPU, the fast
//! CPU path, the f64 reference), compare the GPU with the reference, check every result for
//! non-finite values, compute the reach profile, time everything, and return the report
//! (docs/report.md). Nothing is printed or written: the caller renders the report and writes
//! files (`io`, `plot`, `graph`).
//!
//! Before anything is built, the host memory the shape needs is estimated against what is
//! available (`memory`) and the GPU buffers against the adapter's limits, so an impossible
//! shape is refused at once with the figure.

mod assemble;
mod compute;
mod report;

use std::collections::BTreeMap;

pub use assemble::non_finite_problems;
use assemble::{GpuPathFacts, Pieces};
use compute::PathResult;
pub use report::{CheckReport, ClipReport, Cuts, SweepRow, Timings};

use crate::cpu;
use crate::error::{Error, Result};
use crate::gpu::{AdapterRequest, GpuContext, Schedule};
use crate::memory::{self, Paths};
use crate::model::{Problem, Shape};
use crate::problem::{ProblemSpec, random_problem};
use crate::progress::{Progress, Quiet};
use crate::variant::GradientOptions;
use crate::variant::segments::segment_carry_scales;
use crate::variant::truncation::{Truncation, random_carry_scales};

/// Which implementations a check runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub enum Engines {
    /// The GPU, checked against the f64 reference; the fast CPU path is timed too.
    #[default]
    #[serde(rename = "both")]
    Check,
    /// The GPU only, no check.
    #[serde(rename = "gpu")]
    Gpu,
    /// The fast f32 CPU path.
    #[serde(rename = "cpu")]
    FastCpu,
    /// The f64 CPU reference (the oracle).
    #[serde(rename = "cpu-ref")]
    Reference,
}

crate::choice!(Engines {
    Check => "both": "GPU, checked against the f64 reference; the fast CPU path is timed too",
    Gpu => "gpu": "GPU only, no check",
    FastCpu => "cpu": "the fast f32 CPU path",
    Reference => "cpu-ref": "the f64 CPU reference (the oracle)",
});

impl Engines {
    pub fn gpu(self) -> bool {
        matches!(self, Engines::Check | Engines::Gpu)
    }
    pub fn fast_cpu(self) -> bool {
        matches!(self, Engines::Check | Engines::FastCpu)
    }
    pub fn reference(self) -> bool {
        matches!(self, Engines::Check | Engines::Reference)
    }
}

/// How to check: everything but the problem. `Default` is the command without flags: every
/// path, the fused schedule, tolerance 1e-4, plain BPTT.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckConfig {
    pub compute: Engines,
    /// How the GPU work is split into dispatches.
    pub schedule: Schedule,
    /// Largest relative error ‖gpu − ref‖/‖ref‖ a tensor may have to pass.
    pub tolerance: f64,
    /// Timed runs after a warm-up (the median is reported); None: enough to fill about 2 s,
    /// between 1 and 20.
    pub repeat: Option<u32>,
    /// The adapter, when a GPU path runs.
    pub adapter: AdapterRequest,
    /// Truncated BPTT: K steps back from each loss term, or randomised cuts.
    pub truncate: Option<Truncation>,
    /// Split the sequence into N segments, the gradient cut at their boundaries.
    pub segments: Option<usize>,
    /// Clip the parameter gradients together to this global norm.
    pub clip: Option<f64>,
    /// Read the states h and o back from the GPU too (into the report's `result`).
    pub keep_states: bool,
    /// The host memory the run may plan for; None: what the system has available.
    pub max_memory: Option<u64>,
    /// Measure this machine's f32 FMA peak (a probe of about 50 ms after the timed runs) and
    /// report the fast CPU path's GFLOP/s as a fraction of it.
    pub cpu_peak: bool,
}

impl Default for CheckConfig {
    fn default() -> Self {
        CheckConfig {
            compute: Engines::Check,
            schedule: Schedule::Fused,
            tolerance: 1e-4,
            repeat: None,
            adapter: AdapterRequest::default(),
            truncate: None,
            segments: None,
            clip: None,
            keep_states: false,
            max_memory: None,
            cpu_peak: false,
        }
    }
}

/// A GPU context and the milliseconds its creation took (part of the reported setup time).
type Gpu = (GpuContext, f64);

/// Checks `problem` as `config` says. The problem is copied once (the reach profile scores a
/// copy at the last step only); `check_with` takes it by value and needs no copy.
pub fn check(problem: &Problem, config: &CheckConfig) -> Result<CheckReport> {
    check_with(problem.clone(), config, &Quiet)
}

/// `check`, owning the problem, telling `progress` what it is doing.
pub fn check_with(mut problem: Problem, config: &CheckConfig, progress: &dyn Progress) -> Result<CheckReport> {
    check_config(config)?;
    check_memory(config, problem.shape)?;
    let gpu = gpu_context(config, problem.shape)?;
    let mut report = run_problem(config, &mut problem, gpu.as_ref(), progress)?;
    report.problem = Some(problem);
    Ok(report)
}

/// Draws the random problem `spec` describes and checks it: the memory the shape needs and the
/// GPU's limits are checked before the problem is drawn.
pub fn check_random(spec: &ProblemSpec, config: &CheckConfig, progress: &dyn Progress) -> Result<CheckReport> {
    check_config(config)?;
    check_memory(config, spec.shape)?;
    let gpu = gpu_context(config, spec.shape)?;
    let mut problem = random_problem(spec)?;
    let mut report = run_problem(config, &mut problem, gpu.as_ref(), progress)?;
    report.problem = Some(problem);
    Ok(report)
}

/// The same random problem with w_hh rescaled to each spectral radius in `radii`: one report
/// whose `sweep` has a row per radius (the rest of the report is the first radius's).
pub fn sweep(spec: &ProblemSpec, radii: &[f64], config: &CheckConfig) -> Result<CheckReport> {
    sweep_with(spec, radii, config, &Quiet)
}

/// `sweep`, telling `progress` what it is doing.
pub fn sweep_with(
    spec: &ProblemSpec,
    radii: &[f64],
    config: &CheckConfig,
    progress: &dyn Progress,
) -> Result<CheckReport> {
    check_config(config)?;
    if radii.is_empty() {
        return Err(Error::Invalid("`sweep_radius` needs at least one radius".into()));
    }
    if let Some(r) = radii.iter().find(|r| !(r.is_finite() && **r >= 0.0)) {
        return Err(Error::Invalid(format!(
            "`sweep_radius` must be finite numbers ≥ 0, got {}",
            crate::format::number(*r)
        )));
    }
    check_memory(config, spec.shape)?;
    let gpu = gpu_context(config, spec.shape)?;
    // One timed run per radius unless asked: a sweep is about the profiles.
    let config = CheckConfig { repeat: Some(config.repeat.unwrap_or(1)), ..config.clone() };
    let mut rows = Vec::new();
    let mut first: Option<CheckReport> = None;
    let mut problems = Vec::new();
    for &r in radii {
        let mut p = random_problem(&ProblemSpec { spectral_radius: Some(r), ..spec.clone() })?;
        let mut report = run_problem(&config, &mut p, gpu.as_ref(), progress)?;
        drop(p);
        problems.extend(report.problems.iter().map(|l| format!("ρ={}: {l}", crate::format::number(r))));
        rows.push(SweepRow {
            radius: r,
            loss: report.loss,
            grad_h_norm_first: report.grad_h_norm.first().copied().unwrap_or(f64::NAN),
            grad_h_norm_last: report.grad_h_norm.last().copied().unwrap_or(f64::NAN),
            reach_first: report.reach.first().copied().unwrap_or(f64::NAN),
            reach_factor: report.reach_factor,
            pass: report.pass,
            grad_h_norm: report.grad_h_norm.clone(),
            reach: report.reach.clone(),
        });
        report.result = None;
        first.get_or_insert(report);
    }
    let mut report = first.expect("at least one radius");
    report.pass = if rows.iter().any(|r| r.pass == Some(false)) { Some(false) } else { report.checked.then_some(true) };
    report.problems = problems;
    report.sweep = rows;
    Ok(report)
}

/// The numbers of a config, each against its own rule.
fn check_config(c: &CheckConfig) -> Result<()> {
    if !(c.tolerance.is_finite() && c.tolerance > 0.0) {
        return Err(Error::Invalid(format!(
            "`tolerance` must be a finite number > 0, got {}",
            crate::format::number(c.tolerance)
        )));
    }
    if c.repeat == Some(0) {
        return Err(Error::Invalid("`repeat` must be at least 1".into()));
    }
    if c.segments == Some(0) {
        return Err(Error::Invalid("`segments` must be at least 1".into()));
    }
    // The GPU clips with an f32 θ.
    if let Some(clip) = c.clip {
        crate::format::f32_parameter("clip", clip)?;
    }
    if c.cpu_peak && !c.compute.fast_cpu() {
        return Err(Error::Invalid(format!(
            "`cpu_peak` compares the fast CPU path with the machine's peak, and `compute` {} does not run it (use cpu or both)",
            crate::model::Choice::name(c.compute)
        )));
    }
    Ok(())
}

/// Which paths run, for the memory estimate and the messages.
fn check_memory(c: &CheckConfig, shape: Shape) -> Result<()> {
    let paths = Paths {
        gpu: c.compute.gpu(),
        fast_cpu: c.compute.fast_cpu(),
        reference: c.compute.reference(),
        gpu_states: c.keep_states,
    };
    memory::check_host(
        memory::host_bytes(shape, paths),
        c.max_memory,
        &format!("this run ({shape}, `compute` {})", crate::model::Choice::name(c.compute)),
        "lower `steps` or `batch`, or run fewer paths (`compute` gpu needs the least host memory)",
    )
}

/// The adapter (when a GPU path runs), with the buffers for `shape` checked against its limits
/// before anything is built: a shape that cannot fit is refused at once.
fn gpu_context(c: &CheckConfig, shape: Shape) -> Result<Option<Gpu>> {
    if !c.compute.gpu() {
        return Ok(None);
    }
    let (ctx, ms) = compute::clock(|| GpuContext::new(&c.adapter));
    let ctx = ctx?;
    // The GPU holds one segment at a time: the longest one decides.
    let steps = c.segments.map_or(shape.steps, |n| shape.steps.div_ceil(n.clamp(1, shape.steps)));
    let lanes = match c.truncate {
        Some(Truncation::Regular(k)) if k < shape.steps => Some(k as u32),
        _ => None,
    };
    let schedule = if lanes.is_some() { Schedule::Fused } else { c.schedule };
    let hint = if c.segments.is_none() {
        " (or `segments` N: the GPU then holds one segment of T/N steps at a time)"
    } else {
        " (or more `segments`)"
    };
    crate::gpu::check_fits(&ctx, Shape { steps, ..shape }, schedule, lanes, hint)?;
    Ok(Some((ctx, ms)))
}

/// Runs the paths `c` asks for on `p`; returns the report with the result it describes (the
/// GPU's when it ran, else the CPU path's). `p` is borrowed mutably only to score it at the
/// last step for the reach profile, and is given back as it was.
fn run_problem(c: &CheckConfig, p: &mut Problem, gpu: Option<&Gpu>, progress: &dyn Progress) -> Result<CheckReport> {
    let options = GradientOptions::new(c.truncate, c.segments, c.clip, p.shape.steps)?;
    let mut timings = Timings::default();
    let gpu_path = match gpu {
        Some((ctx, setup_ms)) => Some(compute::gpu(c, ctx, *setup_ms, &options, p, progress, &mut timings)?),
        None => None,
    };
    let fast = if c.compute.fast_cpu() {
        Some(compute::fast_cpu(c, &options, p, gpu_path.is_none(), progress, &mut timings)?)
    } else {
        None
    };
    let reference =
        if c.compute.reference() { Some(compute::reference(&options, p, progress, &mut timings)?) } else { None };

    let (rel_err, mut problems) = match (&gpu_path, &reference) {
        (Some(g), Some((r, _))) => assemble::compare(&g.result, r, c.tolerance),
        _ => (BTreeMap::new(), Vec::new()),
    };
    problems.extend(assemble::non_finite_in(
        &[
            ("gpu", gpu_path.as_ref().map(|g| &g.result)),
            ("fast CPU path", fast.as_ref().map(|f| &f.0)),
            ("reference", reference.as_ref().map(|r| &r.0)),
        ],
        p.drawn.is_none(),
    ));
    let clip = match (&gpu_path, &fast, &reference) {
        (Some(g), _, _) => g.clip.clone(),
        (None, Some((f, _, before)), _) => compute::clip_report(options.clip, *before, &f.grads),
        (None, None, Some((r, before))) => compute::clip_report(options.clip, *before, &r.grads),
        _ => None,
    };
    // Under randomised truncation the reach profile is one draw of the cuts; its expectation
    // over them is the untruncated profile, which the reach line reads too.
    let expected_reach = match options.truncate {
        Some(Truncation::Random { .. }) => Some(compute::scored_at_last(p, cpu::fast::bptt).grad_h_norm),
        _ => None,
    };
    let pieces = Pieces {
        adapter: gpu.map(|(ctx, _)| ctx.adapter.clone()),
        gpu: gpu_path.as_ref().map(GpuPathFacts::of),
        cpu_repeat: fast.as_ref().map(|f| f.1),
        // After the timed runs, so the probe cannot slow them.
        cpu_peak: (c.cpu_peak && fast.is_some()).then(|| crate::cpu::fast::fma_peak(crate::cpu::fast::Isa::detect())),
        expected_reach,
        clip,
        checked: gpu_path.is_some() && reference.is_some(),
        rel_err,
        problems,
        notes: Vec::new(),
        timings,
    };
    let (result, from): (PathResult, &'static str) = match (gpu_path, fast, reference) {
        (Some(g), _, _) => (g.result, "gpu"),
        (None, Some((f, _, _)), _) => (f, "cpu"),
        (None, None, Some((r, _))) => (r, "cpu-ref"),
        _ => unreachable!("every `compute` value runs at least one path"),
    };
    let mut report = assemble::report(c, p, &options, &result, from, pieces);
    report.cuts = cuts(&options, p.shape.steps)?;
    report.result = Some(result.grads);
    Ok(report)
}

/// The carried-gradient cuts the options make (the very multipliers the run used), for the
/// graph: segment boundaries, or randomised truncation's cuts.
fn cuts(options: &GradientOptions, steps: usize) -> Result<Option<Cuts>> {
    Ok(match (options.segments, options.truncate) {
        (Some(n), _) => Some(Cuts {
            carry: segment_carry_scales(steps, n)?,
            reason: "it crosses a segment boundary (`segments`)".into(),
        }),
        (None, Some(Truncation::Random { p, seed })) => Some(Cuts {
            carry: random_carry_scales(steps, p, seed)?,
            reason: format!(
                "a random cut of `truncate` random:{} (seed {seed}); the others carry it ×1/(1−p)",
                crate::format::number(p)
            ),
        }),
        _ => None,
    })
}
