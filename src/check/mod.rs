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
pub use report::{CheckReport, ClipReport, Cuts, MemoryReport, PathMemoryReport, SweepRow, Timings};

use crate::checkpoint::Plan;
use crate::cpu;
use crate::error::{Error, Result};
use crate::gpu::{AdapterRequest, GpuContext, Schedule};
use crate::memory::{self, Paths};
use crate::model::{Problem, Shape};
use crate::problem::{ProblemSpec, random_problem};
use crate::progress::{Progress, Quiet};
use crate::variant::GradientOptions;
use crate::variant::memory::{MemoryOptions, PathMemory, plan_path};
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
    /// Exact BPTT within this many bytes for everything that grows with T, per path:
    /// checkpointing when the states do not fit (docs/gradients.md, "Long sequences in bounded
    /// memory"). None: every state is stored, unless a GPU cannot bind them.
    pub memory: Option<u64>,
    /// Checkpoint with this many states held at once (h0's included).
    pub checkpoints: Option<usize>,
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
            memory: None,
            checkpoints: None,
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
    let (gpu, plans) = prepare(config, problem.shape)?;
    let mut report = run_problem(config, &mut problem, gpu.as_ref(), &plans, progress)?;
    report.problem = Some(problem);
    Ok(report)
}

/// Before anything is built: how each path holds its states, the host memory that needs,
/// and the adapter with the GPU's buffers checked against its limits.
fn prepare(config: &CheckConfig, shape: Shape) -> Result<(Option<Gpu>, Plans)> {
    let mut plans = cpu_plans(config, shape)?;
    check_memory(config, shape, &plans)?;
    let gpu = gpu_context(config, shape)?;
    plans.gpu = gpu.as_ref().map(|g| g.2.clone());
    Ok((gpu.map(|(ctx, ms, _)| (ctx, ms)), plans))
}

/// Draws the random problem `spec` describes and checks it: the memory the shape needs and the
/// GPU's limits are checked before the problem is drawn.
pub fn check_random(spec: &ProblemSpec, config: &CheckConfig, progress: &dyn Progress) -> Result<CheckReport> {
    check_config(config)?;
    let (gpu, plans) = prepare(config, spec.shape)?;
    let mut problem = random_problem(spec)?;
    let mut report = run_problem(config, &mut problem, gpu.as_ref(), &plans, progress)?;
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
    let (gpu, plans) = prepare(config, spec.shape)?;
    // One timed run per radius unless asked: a sweep is about the profiles.
    let config = CheckConfig { repeat: Some(config.repeat.unwrap_or(1)), ..config.clone() };
    let mut rows = Vec::new();
    let mut first: Option<CheckReport> = None;
    let mut problems = Vec::new();
    for &r in radii {
        let mut p = random_problem(&ProblemSpec { spectral_radius: Some(r), ..spec.clone() })?;
        let mut report = run_problem(&config, &mut p, gpu.as_ref(), &plans, progress)?;
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
    let memory = c.memory_options();
    memory.check()?;
    if memory.is_set() && c.segments.is_some() {
        return Err(crate::variant::segments_and_memory());
    }
    if memory.is_set() && c.keep_states {
        return Err(Error::Invalid(
            "`keep_states` needs every state at once: it cannot be combined with `memory` or `checkpoints`".into(),
        ));
    }
    Ok(())
}

impl CheckConfig {
    fn memory_options(&self) -> MemoryOptions {
        MemoryOptions { budget: self.memory, checkpoints: self.checkpoints }
    }
}

/// How each path that runs holds its states (`variant::memory`); the GPU's is set when its
/// adapter is known.
#[derive(Clone, Debug, Default)]
struct Plans {
    gpu: Option<PathMemory>,
    fast: Option<PathMemory>,
    reference: Option<PathMemory>,
}

impl Plans {
    fn plan(m: &Option<PathMemory>) -> Option<Plan> {
        m.as_ref().and_then(|m| m.plan)
    }

    fn of(&self, path: &str) -> Option<&PathMemory> {
        match path {
            "gpu" => self.gpu.as_ref(),
            "cpu" => self.fast.as_ref(),
            _ => self.reference.as_ref(),
        }
    }
}

/// The CPU paths' plans: the fast path's windows (also for the expected reach profile of
/// randomised truncation, which the fast path computes) and the reference's single steps.
fn cpu_plans(c: &CheckConfig, shape: Shape) -> Result<Plans> {
    let memory = c.memory_options();
    let mut plans = Plans::default();
    if c.compute.fast_cpu() || matches!(c.truncate, Some(Truncation::Random { .. })) {
        let costs = crate::cpu::fast::costs(shape, c.truncate);
        let full = crate::cpu::fast::full_bytes(shape, c.truncate);
        plans.fast = Some(plan_path("cpu", shape.steps, &memory, &costs, full, None)?);
    }
    if c.compute.reference() {
        let truncate = c.truncate.filter(|t| !matches!(t, Truncation::Regular(k) if *k >= shape.steps));
        let costs = crate::cpu::checkpointed::costs(shape, truncate);
        let full = crate::cpu::checkpointed::full_bytes(shape, truncate);
        plans.reference = Some(plan_path("cpu-ref", shape.steps, &memory, &costs, full, None)?);
    }
    Ok(plans)
}

/// The host memory of the paths that run, against what is available: a path that stores
/// every state by its per-row estimate (`memory::host_bytes`), a checkpointed one by its plan.
fn check_memory(c: &CheckConfig, shape: Shape, plans: &Plans) -> Result<()> {
    let planned = |m: &Option<PathMemory>| m.as_ref().and_then(|m| m.plan.map(|_| m.peak_bytes));
    let (fast_planned, ref_planned) = (planned(&plans.fast), planned(&plans.reference));
    let paths = Paths {
        gpu: c.compute.gpu(),
        fast_cpu: c.compute.fast_cpu() && fast_planned.is_none(),
        reference: c.compute.reference() && ref_planned.is_none(),
        gpu_states: c.keep_states,
    };
    let bytes = memory::host_bytes(shape, paths) + fast_planned.unwrap_or(0) + ref_planned.unwrap_or(0);
    memory::check_host(
        bytes,
        c.max_memory,
        &format!("this run ({shape}, `compute` {})", crate::model::Choice::name(c.compute)),
        "lower `steps` or `batch`, run fewer paths (`compute` gpu needs the least host memory), or bound the \
         states with `memory` BYTES (exact BPTT with checkpoints)",
    )
}

/// The adapter (when a GPU path runs), with the buffers for `shape` checked against its limits
/// before anything is built, and how the GPU holds the states: every one, or checkpointed (as
/// asked, or because the adapter cannot bind them all). A shape that cannot fit is refused at
/// once.
fn gpu_context(c: &CheckConfig, shape: Shape) -> Result<Option<(GpuContext, f64, PathMemory)>> {
    if !c.compute.gpu() {
        return Ok(None);
    }
    let (ctx, ms) = compute::clock(|| GpuContext::new(&c.adapter));
    let ctx = ctx?;
    let lanes = match c.truncate {
        Some(Truncation::Regular(k)) if k < shape.steps => Some(k as u32),
        _ => None,
    };
    let schedule = if lanes.is_some() { Schedule::Fused } else { c.schedule };
    if let Some(n) = c.segments {
        // The GPU holds one segment at a time: the longest one decides.
        let steps = shape.steps.div_ceil(n.clamp(1, shape.steps));
        let hint = " (or `memory` BYTES instead of `segments`: exact BPTT in bounded memory; or more `segments`)";
        crate::gpu::check_fits(&ctx, Shape { steps, ..shape }, schedule, lanes, hint)?;
        let (full, _) = crate::gpu::memory_costs(&ctx.limits, Shape { steps, ..shape }, schedule, lanes);
        let whole = PathMemory { path: "gpu", plan: None, full_bytes: full, peak_bytes: full, automatic: None };
        return Ok(Some((ctx, ms, whole)));
    }
    let (full, costs) = crate::gpu::memory_costs(&ctx.limits, shape, schedule, lanes);
    let too_big = crate::gpu::limits(&ctx, shape, schedule, lanes).err();
    if let Some(e) = &too_big
        && costs.max_unit == 0
    {
        // Not even one step's buffers bind: neither checkpointing nor segments can help.
        return Err(Error::Invalid(format!("{e}; even one step's buffers exceed it: lower `batch` or `hidden`")));
    }
    let forced = too_big.map(|e| {
        format!(
            "checkpointed automatically: storing every state does not fit this adapter ({e}); give `memory` to \
             set the budget"
        )
    });
    let memory = plan_path("gpu", shape.steps, &c.memory_options(), &costs, full, forced)?;
    Ok(Some((ctx, ms, memory)))
}

/// Runs the paths `c` asks for on `p`; returns the report with the result it describes (the
/// GPU's when it ran, else the CPU path's). `p` is borrowed mutably only to score it at the
/// last step for the reach profile, and is given back as it was.
fn run_problem(
    c: &CheckConfig,
    p: &mut Problem,
    gpu: Option<&Gpu>,
    plans: &Plans,
    progress: &dyn Progress,
) -> Result<CheckReport> {
    let options = GradientOptions::new(c.truncate, c.segments, c.clip, p.shape.steps)?;
    let mut timings = Timings::default();
    let gpu_path = match gpu {
        Some((ctx, setup_ms)) => {
            let plan = Plans::plan(&plans.gpu);
            Some(compute::gpu(c, ctx, *setup_ms, &options, plan, p, progress, &mut timings)?)
        }
        None => None,
    };
    let fast_plan = Plans::plan(&plans.fast);
    let fast = if c.compute.fast_cpu() {
        Some(compute::fast_cpu(c, &options, fast_plan, p, gpu_path.is_none(), progress, &mut timings)?)
    } else {
        None
    };
    let reference = if c.compute.reference() {
        Some(compute::reference(&options, Plans::plan(&plans.reference), p, progress, &mut timings)?)
    } else {
        None
    };

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
        Some(Truncation::Random { .. }) => Some(match fast_plan {
            Some(plan) => compute::scored_at_last(p, |last| cpu::fast::bptt_checkpointed(last, &plan))?.0.grad_h_norm,
            None => compute::scored_at_last(p, cpu::fast::bptt).grad_h_norm,
        }),
        _ => None,
    };
    let memory = memory_report(
        c,
        p.shape.steps,
        plans,
        &[
            ("gpu", gpu_path.as_ref().map(|g| &g.result)),
            ("cpu", fast.as_ref().map(|f| &f.0)),
            ("cpu-ref", reference.as_ref().map(|r| &r.0)),
        ],
    );
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
    report.memory = memory.map(|mut m| {
        // The result's path on top, when it checkpointed.
        let own = m.paths.iter().find(|e| e.path == from).map(|e| (e.forward_steps, e.time_ratio));
        if let (Some((steps, ratio)), Some(pm)) = (own, plans.of(from))
            && let Some(figures) = pm.figures(c.memory, steps)
        {
            (m.figures, m.path, m.time_ratio, m.automatic) = (figures, from, ratio, pm.automatic.clone());
        }
        m
    });
    report.cuts = cuts(&options, p.shape.steps)?;
    report.result = Some(result.grads);
    Ok(report)
}

/// The memory section: every path that ran, and the first that checkpointed on top (the
/// caller puts the result's path there when it checkpointed). None when none checkpointed.
fn memory_report(
    c: &CheckConfig,
    steps: usize,
    plans: &Plans,
    results: &[(&'static str, Option<&PathResult>)],
) -> Option<MemoryReport> {
    let paths: Vec<PathMemoryReport> = results
        .iter()
        .filter_map(|(name, r)| {
            let (r, m) = ((*r)?, plans.of(name)?);
            Some(PathMemoryReport {
                path: name,
                full_bytes: m.full_bytes,
                peak_bytes: m.peak_bytes,
                checkpoints: m.plan.map(|p| p.slots_used()),
                chunk_steps: m.plan.map(|p| p.unit_steps),
                forward_steps: r.forward_steps.unwrap_or(steps as u64),
                forward_steps_optimal: m.plan.map_or(steps as u64, |p| p.forward_steps()),
                time_ratio: r.time_ratio,
            })
        })
        .collect();
    let first = paths.iter().find(|e| e.checkpoints.is_some())?;
    let pm = plans.of(first.path)?;
    Some(MemoryReport {
        figures: pm.figures(c.memory, first.forward_steps)?,
        path: first.path,
        automatic: pm.automatic.clone(),
        time_ratio: first.time_ratio,
        paths: paths.clone(),
    })
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
