//! What the command does, as a library function: check the outputs, build (or load) the
//! problem, run the chosen paths, check the GPU against the reference and every result for
//! non-finite values, time everything, and fill in the report. Files are written afterwards
//! (`Outcome::write_files`), once the report is out: a failed write never costs the report.

mod assemble;
mod compute;
mod progress;

use std::collections::BTreeMap;
use std::path::Path;

pub use assemble::non_finite_problems;
use assemble::{GpuPathFacts, Pieces};
use compute::PathResult;
use progress::Progress;

use crate::cli::{Args, Compute};
use crate::error::{Error, Result, one_line};
use crate::gpu::buffers::BufferSizes;
use crate::gpu::{GpuContext, Schedule};
use crate::memory::{self, Paths};
use crate::model::{Grads, Problem, Shape};
use crate::plot::{Series, plot_profiles, report_series, report_title};
use crate::problem::{ProblemSpec, random_problem};
use crate::report::{Report, SweepRow, Timings};
use crate::variant::Variant;

/// A finished run: the report, and what is still to be written (`write_files`).
pub struct Outcome {
    pub report: Report,
    /// The result `--save` writes (None for a sweep).
    pub result: Option<Grads>,
    /// The plot's title and series, drawn by `write_files` when `--plot` is given.
    plot: (String, Vec<Series>),
}

/// A GPU context and the milliseconds its creation took (part of the reported setup time).
type Gpu = (GpuContext, f64);

/// Runs everything the arguments ask for and returns the outcome, whose report's `pass`
/// decides the exit code. Output paths are checked first (exit 2), before any work. Errors are
/// user errors (exit 2) or run-time failures (exit 1).
pub fn run(args: &Args) -> Result<Outcome> {
    check_outputs(args)?;
    if let Some(radii) = &args.sweep_radius {
        return sweep(args, radii);
    }
    let (mut p, gpu) = prepare(args)?;
    let (report, result) = run_problem(args, &mut p, gpu.as_ref())?;
    let plot = (report_title(&report, None), report_series(&report, 0, ""));
    Ok(Outcome { report, result: Some(result), plot })
}

/// Checks every output path before anything is computed: each must be absent or a regular
/// file in a writable folder (`io::check_output_path`), `--save` must not be the `--load`
/// file, and no two outputs may be one file.
pub fn check_outputs(args: &Args) -> Result<()> {
    let outputs: Vec<(&str, &Path)> =
        [("--save", args.save.as_deref()), ("--plot", args.plot.as_deref()), ("--graph", args.graph.as_deref())]
            .into_iter()
            .filter_map(|(flag, p)| Some((flag, p?)))
            .collect();
    for (flag, path) in &outputs {
        crate::io::check_output_path(path).map_err(|e| match e {
            Error::Invalid(m) => Error::Invalid(format!("{flag} {m}")),
            other => other,
        })?;
    }
    // The plot always draws text; the graph does only as a PNG (SVG names its fonts).
    let png_graph = args.graph.as_deref().filter(|g| g.extension().is_some_and(|e| e.eq_ignore_ascii_case("png")));
    if let Some(drawn) = args.plot.as_deref().or(png_graph) {
        crate::plot::check_font(drawn)?;
    }
    let same = |a: &Path, b: &Path| a == b || crate::io::same_file(a, b);
    if let (Some(load), Some(save)) = (&args.load, &args.save)
        && same(load, save)
    {
        return Err(Error::Invalid(format!(
            "--save {} would overwrite the problem --load reads: give another file",
            one_line(&save.display().to_string())
        )));
    }
    for (i, (flag_a, a)) in outputs.iter().enumerate() {
        if let Some((flag_b, _)) = outputs[i + 1..].iter().find(|(_, b)| same(a, b)) {
            return Err(Error::Invalid(format!(
                "{flag_a} and {flag_b} name the same file {}: give two files",
                one_line(&a.display().to_string())
            )));
        }
    }
    Ok(())
}

/// The problem the arguments describe: from `--load`, or random from the shape flags.
pub fn problem_from_args(args: &Args) -> Result<Problem> {
    if let Some(path) = &args.load {
        let given = crate::io::Overrides { activation: args.activation, loss: args.loss, loss_at: args.loss_at };
        return crate::io::load_problem_with(path, &given);
    }
    let mut spec = ProblemSpec::new(shape_from_args(args)?);
    spec.activation = args.activation.unwrap_or_default();
    spec.loss = args.loss.unwrap_or_default();
    spec.loss_at = args.loss_at.unwrap_or_default();
    spec.bias = args.bias;
    spec.seed = args.seed;
    spec.spectral_radius = args.spectral_radius;
    spec.random_h0 = args.random_h0;
    random_problem(&spec)
}

fn shape_from_args(args: &Args) -> Result<Shape> {
    Shape::new(
        args.steps as usize,
        args.batch as usize,
        args.input as usize,
        args.hidden as usize,
        args.output as usize,
    )
}

/// The problem and the GPU context, with the memory the shape needs checked before the problem
/// is built (a random one) or before any path runs (a loaded one): host memory against what
/// is available, GPU buffers against the adapter's limits.
fn prepare(args: &Args) -> Result<(Problem, Option<Gpu>)> {
    if args.load.is_some() {
        let p = problem_from_args(args)?;
        check_host_memory(args, p.shape)?;
        let gpu = gpu_context(args, p.shape)?;
        return Ok((p, gpu));
    }
    let shape = shape_from_args(args)?;
    check_host_memory(args, shape)?;
    let gpu = gpu_context(args, shape)?;
    Ok((problem_from_args(args)?, gpu))
}

fn runs_gpu(args: &Args) -> bool {
    matches!(args.compute, Compute::Both | Compute::Gpu)
}

fn compute_name(c: Compute) -> &'static str {
    match c {
        Compute::Both => "both",
        Compute::Gpu => "gpu",
        Compute::Cpu => "cpu",
        Compute::CpuRef => "cpu-ref",
    }
}

fn check_host_memory(args: &Args, shape: Shape) -> Result<()> {
    let plain = args.truncate.is_none() && args.segments.is_none() && args.clip.is_none();
    let paths = Paths {
        gpu: runs_gpu(args),
        fast_cpu: matches!(args.compute, Compute::Both | Compute::Cpu) && plain,
        reference: matches!(args.compute, Compute::Both | Compute::CpuRef),
        gpu_states: args.save_states,
    };
    memory::check_host(
        memory::host_bytes(shape, paths),
        &format!("this run ({shape}, --compute {})", compute_name(args.compute)),
        "lower --steps or --batch, or run fewer paths (--compute gpu needs the least host memory)",
    )
}

/// The adapter (when a GPU path runs), with the buffers for `shape` checked against its limits
/// before anything is built: a shape that cannot fit is refused at once (exit 2).
fn gpu_context(args: &Args, shape: Shape) -> Result<Option<Gpu>> {
    if !runs_gpu(args) {
        return Ok(None);
    }
    let req = args.gpu.request();
    let (ctx, ms) = compute::clock(|| GpuContext::new(&req));
    let ctx = ctx?;
    // The GPU holds one segment at a time: the longest one decides.
    let steps = args.segments.map_or(shape.steps, |n| shape.steps.div_ceil((n as usize).clamp(1, shape.steps)));
    let lanes = match args.truncate {
        Some(crate::cli::TruncateArg::Steps(k)) if k < shape.steps => k as u32,
        _ => 1,
    };
    let schedule = if lanes > 1 { Schedule::Fused } else { args.schedule };
    BufferSizes::new(Shape { steps, ..shape }, schedule, lanes).check(&ctx.limits, &ctx.adapter.name).map_err(|e| {
        Error::Invalid(format!(
            "{e}{}",
            if args.segments.is_none() {
                " (or --segments N: the GPU then holds one segment of T/N steps at a time)"
            } else {
                " (or more --segments)"
            }
        ))
    })?;
    Ok(Some((ctx, ms)))
}

/// Runs the paths `args` asks for on `p`; returns the report and the result it describes (the
/// GPU's when it ran, else the CPU path's). `p` is borrowed mutably only to score it at the
/// last step for the reach profile, and is given back as it was.
pub fn run_problem(args: &Args, p: &mut Problem, gpu: Option<&Gpu>) -> Result<(Report, Grads)> {
    let variant = Variant::from_args(args, p)?;
    if args.compute == Compute::Cpu && !variant.is_plain() {
        return Err(Error::Invalid(
            "--truncate, --segments and --clip run on the GPU and the f64 reference: use --compute gpu, both or cpu-ref"
                .into(),
        ));
    }
    let mut timings = Timings::default();
    let progress = Progress::new(compute::is_long(args, p), args.json);

    let gpu_path = match gpu {
        Some((ctx, setup_ms)) => Some(compute::gpu(args, ctx, *setup_ms, &variant, p, &progress, &mut timings)?),
        None => None,
    };
    // The fast CPU path computes plain BPTT only: it is timed when the variant is plain.
    let fast = if matches!(args.compute, Compute::Both | Compute::Cpu) && variant.is_plain() {
        Some(compute::fast_cpu(args, p, gpu_path.is_none(), &progress, &mut timings)?)
    } else {
        None
    };
    let reference = if matches!(args.compute, Compute::Both | Compute::CpuRef) {
        Some(compute::reference(&variant, p, &progress, &mut timings)?)
    } else {
        None
    };
    drop(progress);

    let (rel_err, mut problems) = match (&gpu_path, &reference) {
        (Some(g), Some((r, _))) => assemble::compare(&g.result, r, args.tolerance),
        _ => (BTreeMap::new(), Vec::new()),
    };
    problems.extend(assemble::non_finite_in(
        &[
            ("gpu", gpu_path.as_ref().map(|g| &g.result)),
            ("fast CPU path", fast.as_ref().map(|f| &f.0)),
            ("reference", reference.as_ref().map(|r| &r.0)),
        ],
        args.load.is_some(),
    ));
    let clip = match (&gpu_path, &reference) {
        (Some(g), _) => g.clip.clone(),
        (None, Some((r, before))) => compute::clip_report(variant.clip, *before, &r.grads),
        _ => None,
    };
    let pieces = Pieces {
        adapter: gpu.map(|(ctx, _)| ctx.adapter.clone()),
        gpu: gpu_path.as_ref().map(GpuPathFacts::of),
        cpu_repeat: fast.as_ref().map(|f| f.1),
        clip,
        checked: gpu_path.is_some() && reference.is_some(),
        rel_err,
        problems,
        notes: skipped_paths(args, &variant),
        timings,
    };
    let (result, from): (PathResult, &'static str) = match (gpu_path, fast, reference) {
        (Some(g), _, _) => (g.result, "gpu"),
        (None, Some((f, _)), _) => (f, "cpu"),
        (None, None, Some((r, _))) => (r, "cpu-ref"),
        _ => unreachable!("every --compute value runs at least one path"),
    };
    let report = assemble::report(args, p, &variant, &result, from, pieces);
    Ok((report, result.grads))
}

/// Says when `--compute both` runs less than "both" suggests: the fast CPU path computes plain
/// BPTT only, so under --truncate, --segments or --clip it does not run (and has no time).
fn skipped_paths(args: &Args, variant: &Variant) -> Vec<String> {
    if args.compute != Compute::Both || variant.is_plain() {
        return Vec::new();
    }
    let flags: Vec<&str> = [
        (variant.truncate.is_some(), "--truncate"),
        (variant.segments.is_some(), "--segments"),
        (variant.clip.is_some(), "--clip"),
    ]
    .into_iter()
    .filter_map(|(on, flag)| on.then_some(flag))
    .collect();
    vec![format!(
        "the fast CPU path computes plain BPTT only: it did not run (with {}); the GPU is checked against the f64 reference",
        flags.join(", ")
    )]
}

/// `--sweep-radius`: the same problem at each spectral radius; one table, one plot.
fn sweep(args: &Args, radii: &[f64]) -> Result<Outcome> {
    let shape = shape_from_args(args)?;
    check_host_memory(args, shape)?;
    let gpu = gpu_context(args, shape)?;
    let mut rows = Vec::new();
    let mut series = Vec::new();
    let mut first: Option<Report> = None;
    let mut problems = Vec::new();
    for &r in radii {
        let mut a = args.clone();
        a.spectral_radius = Some(r);
        a.sweep_radius = None;
        // One timed run per radius unless asked: a sweep is about the profiles.
        a.repeat = Some(args.repeat.unwrap_or(1));
        let mut p = problem_from_args(&a)?;
        let (report, _) = run_problem(&a, &mut p, gpu.as_ref())?;
        drop(p);
        series.extend(report_series(&report, rows.len(), &format!(" ρ={r}")));
        problems.extend(report.problems.iter().map(|l| format!("ρ={r}: {l}")));
        rows.push(SweepRow {
            radius: r,
            loss: report.loss,
            grad_h_norm_first: report.grad_h_norm.first().copied().unwrap_or(f64::NAN),
            grad_h_norm_last: report.grad_h_norm.last().copied().unwrap_or(f64::NAN),
            reach_first: report.grad_h_norm_from_last.first().copied().unwrap_or(f64::NAN),
            reach_growth_factor: report.reach_growth_factor,
            pass: report.pass,
            grad_h_norm: report.grad_h_norm.clone(),
            grad_h_norm_from_last: report.grad_h_norm_from_last.clone(),
        });
        first.get_or_insert(report);
    }
    let mut report = first.ok_or_else(|| Error::Invalid("--sweep-radius needs at least one radius".into()))?;
    let title = report_title(&report, Some(radii));
    report.pass = if rows.iter().any(|r| r.pass == Some(false)) { Some(false) } else { report.checked.then_some(true) };
    report.problems = problems;
    report.sweep = rows;
    Ok(Outcome { report, result: None, plot: (title, series) })
}

impl Outcome {
    /// Whether the run failed a check or produced a non-finite result (exit 1).
    pub fn failed(&self) -> bool {
        self.report.pass == Some(false)
    }

    /// One line for stderr when the run failed: the failed tensors, and the `--save` skipped.
    pub fn failure_line(&self, args: &Args) -> Option<String> {
        if !self.failed() {
            return None;
        }
        let mut line = format!("the check failed: {}", self.report.problems.join("; "));
        if let Some(path) = &args.save {
            line.push_str(&format!(
                "; --save {} skipped (an existing file is left as it was)",
                one_line(&path.display().to_string())
            ));
        }
        Some(line)
    }

    /// Writes the files the arguments ask for, after the report is out: the plot, the graph,
    /// then the result (`--save`), last and only if the run did not fail. Returns a line per
    /// file written ("plot written to …").
    pub fn write_files(&self, args: &Args) -> Result<Vec<String>> {
        let mut written = Vec::new();
        if let Some(path) = &args.plot {
            plot_profiles(path, &self.plot.0, &self.plot.1).map_err(|e| save_skipped(e, args))?;
            written.push(format!("plot written to {}", one_line(&path.display().to_string())));
        }
        if let Some(path) = &args.graph {
            crate::graph::write_report_graph(path, &self.report, args).map_err(|e| save_skipped(e, args))?;
            written.push(format!("graph written to {}", one_line(&path.display().to_string())));
        }
        if let (Some(path), Some(result), false) = (&args.save, &self.result, self.failed()) {
            let r = &self.report;
            let mut meta = BTreeMap::new();
            meta.insert(
                "command_line".to_string(),
                std::env::args_os().map(|a| a.to_string_lossy().into_owned()).collect::<Vec<_>>().join(" "),
            );
            meta.insert("result_from".to_string(), r.result_from.to_string());
            if let Some(a) = &r.adapter {
                meta.insert("adapter".to_string(), a.to_string());
            }
            crate::io::save_grads(path, result, &r.shape, args.save_states, &meta)?;
            written.push(format!("saved grads to {}", one_line(&path.display().to_string())));
        }
        Ok(written)
    }
}

/// A file written before `--save` failed: the save comes only after everything else
/// succeeded, so the error says that it was skipped.
fn save_skipped(e: Error, args: &Args) -> Error {
    match (e, &args.save) {
        (Error::Io { path, reason }, Some(save)) => Error::Io {
            path,
            reason: format!(
                "{reason}; --save {} skipped (an existing file is left as it was)",
                one_line(&save.display().to_string())
            ),
        },
        (e, _) => e,
    }
}
