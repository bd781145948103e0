//! What the command does, as a library function: build (or load) the problem, run the chosen
//! paths, check the GPU against the reference, time everything, and fill in the report.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::cli::{Args, Compute};
use crate::diagnostics::{describe_reach, fit_growth_factor};
use crate::error::{Error, Result};
use crate::gpu::{AdapterRequest, GpuContext, RunTimes, Schedule};
use crate::model::{Grads, LossAt, Problem, Shape, rel_err};
use crate::plot::{plot_profiles, report_series, report_title};
use crate::problem::{ProblemSpec, random_problem};
use crate::report::{ClipReport, Report, SweepRow, Timings, Written};
use crate::variant::{GpuRunner, Variant};
use crate::{cpu, flops};

/// Aim for about this much timed work per path when `--repeat` is not given.
const TIME_BUDGET_MS: f64 = 2000.0;
const MAX_REPEAT: u32 = 20;

/// The problem the arguments describe: from `--load`, or random from the shape flags.
pub fn problem_from_args(args: &Args) -> Result<Problem> {
    if let Some(path) = &args.load {
        let p = crate::io::load_problem(path, args.activation, args.loss)?;
        return Ok(match args.loss_at {
            Some(loss_at) => p.with_loss_at(loss_at),
            None => p,
        });
    }
    let shape = Shape::new(
        args.steps as usize,
        args.batch as usize,
        args.input as usize,
        args.hidden as usize,
        args.output as usize,
    )?;
    let mut spec = ProblemSpec::new(shape);
    spec.activation = args.activation.unwrap_or_default();
    spec.loss = args.loss.unwrap_or_default();
    spec.loss_at = args.loss_at.unwrap_or_default();
    spec.bias = args.bias;
    spec.seed = args.seed;
    spec.spectral_radius = args.spectral_radius;
    spec.random_h0 = args.random_h0;
    random_problem(&spec)
}

/// How many timed runs to make after a warm-up that took `warmup_ms`.
fn repeats(args: &Args, warmup_ms: f64) -> u32 {
    args.repeat.unwrap_or_else(|| ((TIME_BUDGET_MS / warmup_ms.max(1e-3)) as u32).clamp(1, MAX_REPEAT))
}

fn median(mut v: Vec<f64>) -> f64 {
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

/// A spinner on stderr for runs long enough to wonder about: only on a terminal, never with
/// `--json`.
struct Progress(Option<indicatif::ProgressBar>);

impl Progress {
    fn new(args: &Args, shape: Shape) -> Self {
        use std::io::IsTerminal;
        // About a second of work or more on a software adapter or the reference.
        let long = flops::flops(shape) >= 1e8 || args.repeat.is_some_and(|r| r > 5);
        let show = long && !args.json && std::io::stdout().is_terminal() && std::io::stderr().is_terminal();
        Progress(show.then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
            bar
        }))
    }

    fn say(&self, msg: String) {
        if let Some(bar) = &self.0 {
            bar.set_message(msg);
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

fn clock<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let t = Instant::now();
    let r = f();
    (r, t.elapsed().as_secs_f64() * 1e3)
}

/// Names a GPU result's non-finite entries, e.g. "grad_w_hh has 12 non-finite entries".
pub fn non_finite_problems(g: &Grads) -> Vec<String> {
    let mut out = Vec::new();
    for (name, v) in g.tensors() {
        let bad = v.iter().filter(|x| !x.is_finite()).count();
        if bad > 0 {
            let mut line = format!("{name} has {bad} non-finite entr{}", if bad == 1 { "y" } else { "ies" });
            if name == "grad_h_norm" {
                // The backward pass runs from t = T down to 1: the first overflow in that
                // order is the largest t whose norm is not finite.
                if let Some(t) = v.iter().rposition(|x| !x.is_finite()) {
                    line.push_str(&format!("; ‖∂L/∂h_t‖ first overflows at step {} (counting down from T)", t + 1));
                }
            }
            out.push(line);
        }
    }
    out
}

/// Runs everything the arguments ask for and returns the report (whose `pass` decides the exit
/// code). Errors are user errors (exit 2) or run-time failures (exit 1).
pub fn run(args: &Args) -> Result<Report> {
    if let Some(radii) = &args.sweep_radius {
        return sweep(args, radii);
    }
    let problem = problem_from_args(args)?;
    let (mut report, result) = run_problem(args, &problem)?;
    if let Some(path) = &args.save {
        // Only a run that passed every check is written; a failed one leaves the file as it was.
        if report.pass {
            let mut meta = BTreeMap::new();
            meta.insert(
                "command_line".to_string(),
                std::env::args_os().map(|a| a.to_string_lossy().into_owned()).collect::<Vec<_>>().join(" "),
            );
            meta.insert("result_from".to_string(), report.result_from.to_string());
            if let Some(a) = &report.adapter {
                meta.insert("adapter".to_string(), a.to_string());
            }
            crate::io::save_grads(path, &result, &problem.shape, args.save_states, &meta)?;
            report.written.push(Written::new("grads", path));
        }
    }
    if let Some(path) = &args.plot {
        plot_profiles(path, &report_title(&report, None), &report_series(&report, 0, ""))?;
        report.written.push(Written::new("plot", path));
    }
    if let Some(path) = &args.graph {
        crate::graph::write_report_graph(path, &report, args)?;
        report.written.push(Written::new("graph", path));
    }
    Ok(report)
}

/// `--sweep-radius`: the same problem at each spectral radius; one table, one plot.
fn sweep(args: &Args, radii: &[f64]) -> Result<Report> {
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
        let p = problem_from_args(&a)?;
        let (report, _) = run_problem(&a, &p)?;
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
    if let Some(path) = &args.plot {
        plot_profiles(path, &report_title(&report, Some(radii)), &series)?;
        report.written.push(Written::new("plot", path));
    }
    report.pass = rows.iter().all(|r| r.pass);
    report.problems = problems;
    report.sweep = rows;
    Ok(report)
}

fn clip_report(theta: Option<f64>, before: Option<f64>, g: &Grads) -> Option<ClipReport> {
    Some(ClipReport { theta: theta?, norm_before: before?, norm_after: crate::clip::global_grad_norm(g) })
}

/// Runs the paths `args` asks for on `p`; returns the report and the result it describes (the
/// GPU's when it ran, else the CPU path's).
pub fn run_problem(args: &Args, p: &Problem) -> Result<(Report, Grads)> {
    let shape = p.shape;
    let variant = Variant::from_args(args, p)?;
    if args.compute == Compute::Cpu && !variant.is_plain() {
        return Err(Error::Invalid(
            "--truncate, --segments and --clip run on the GPU and the f64 reference: use --compute gpu, both or cpu-ref"
                .into(),
        ));
    }
    let mut timings = Timings::default();
    let mut problems = Vec::new();
    let mut rel = BTreeMap::new();
    let mut repeat = 0;
    let mut cpu_repeat = None;
    let (mut adapter, mut timing_source, mut dispatches, mut memory) = (None, None, None, None);
    let mut gpu_stages = Vec::new();
    let mut floor = None;
    let mut clip = None;
    let progress = Progress::new(args, shape);
    let last_only = p.clone().with_loss_at(LossAt::Last);

    // The GPU: timed runs of the problem, then one run scored at the last step only (the reach
    // profile), then the dispatch floor.
    let gpu_result = if matches!(args.compute, Compute::Both | Compute::Gpu) {
        let req = AdapterRequest { backend: args.backend, name: args.adapter.clone(), software: args.software };
        progress.say("GPU: adapter, device, pipelines".into());
        let (built, setup) = clock(|| -> Result<_> {
            let ctx = GpuContext::new(&req)?;
            Ok(ctx)
        });
        let ctx = built?;
        let (runner, setup_obj) = clock(|| GpuRunner::new(&ctx, args.schedule, variant.clone(), p));
        let mut runner = runner?;
        let mut runs: Vec<RunTimes> = Vec::new();
        let (grads, _, _) = timed(args, &progress, "GPU", || {
            let (g, t) = runner.run(p, args.save_states)?;
            let total = t.total;
            runs.push(t);
            Ok((g, total))
        })?;
        clip = clip_report(variant.clip, runner.clip_norm, &grads);
        let timed_runs = &runs[1..];
        repeat = timed_runs.len() as u32;
        let med = |f: fn(&RunTimes) -> f64| Some(median(timed_runs.iter().map(f).collect()));
        timings.gpu_setup = Some(setup + setup_obj);
        timings.gpu_upload = med(|r| r.upload);
        timings.gpu_forward = med(|r| r.forward);
        timings.gpu_backward = med(|r| r.backward);
        timings.gpu_readback = med(|r| r.readback);
        timings.gpu_total = med(|r| r.total);
        timings.gpu_total_min = timed_runs.iter().map(|r| r.total).reduce(f64::min);
        timings.gpu_total_max = timed_runs.iter().map(|r| r.total).reduce(f64::max);
        // Stage medians, in schedule order (every run stamps the same stages).
        gpu_stages = timed_runs[0]
            .stages
            .iter()
            .enumerate()
            .map(|(k, (stage, _))| (stage.name(), median(timed_runs.iter().map(|r| r.stages[k].1).collect())))
            .collect();
        timing_source = Some(runner.timing_source());
        dispatches = Some(runner.dispatch_count());
        progress.say("GPU: reach profile (loss at the last step only)".into());
        let reach = runner.run(&last_only, false)?.0.grad_h_norm;
        memory = Some(runner.peak_memory);
        progress.say("GPU: dispatch-latency floor".into());
        floor = Some(crate::gpu::floor::dispatch_floor_ms(&ctx, 2 * shape.steps as u32, 5)?);
        adapter = Some(ctx.adapter.clone());
        problems.extend(non_finite_problems(&grads));
        Some((grads, reach))
    } else {
        None
    };

    // The fast CPU path computes plain BPTT only: it is timed when the variant is plain.
    let fast_result = if matches!(args.compute, Compute::Both | Compute::Cpu) && variant.is_plain() {
        let (g, med, times) = timed(args, &progress, "fast CPU path", || Ok(clock(|| cpu::fast::bptt(p))))?;
        timings.cpu_total = Some(med);
        cpu_repeat = Some(times.len() as u32);
        let reach = if gpu_result.is_none() { cpu::fast::bptt(&last_only).grad_h_norm } else { Vec::new() };
        Some((g, reach))
    } else {
        None
    };

    let ref_result = if matches!(args.compute, Compute::Both | Compute::CpuRef) {
        progress.say("f64 CPU reference".into());
        let (g, ms) = clock(|| variant.reference(p));
        let (g, before) = g?;
        timings.cpu_ref_total = Some(ms);
        progress.say("f64 CPU reference: reach profile".into());
        let reach = variant.reference(&last_only)?.0.grad_h_norm;
        if gpu_result.is_none() {
            clip = clip_report(variant.clip, before, &g);
        }
        Some((g, reach))
    } else {
        None
    };

    if let (Some((g, g_reach)), Some((r, r_reach))) = (&gpu_result, &ref_result) {
        let pairs = g.tensors().into_iter().zip(r.tensors()).map(|((n, a), (_, b))| (n, a, b));
        for (name, a, b) in pairs.chain([("grad_h_norm_from_last", &g_reach[..], &r_reach[..])]) {
            let e = rel_err(a, b);
            if e.is_nan() || e > args.tolerance {
                problems.push(format!("{name}: relative error {e:.3e} exceeds the tolerance {:e}", args.tolerance));
            }
            rel.insert(name, e);
        }
    }

    let ((result, reach), from) = match (gpu_result, fast_result, ref_result) {
        (Some(g), _, _) => (g, "gpu"),
        (None, Some(g), _) => (g, "cpu"),
        (None, None, Some(g)) => (g, "cpu-ref"),
        _ => unreachable!("every --compute value runs at least one path"),
    };
    let grad_norms = result.tensors().into_iter().filter(|(n, _)| n.starts_with("grad_") && *n != "grad_h_norm");
    let grad_norms = grad_norms.map(|(n, v)| (n, crate::model::norm(v))).collect();
    let fl = flops::flops(shape);
    let gpu_total = timings.gpu_total;
    let ran_gpu = from == "gpu";
    let spectral_radius = crate::linalg::spectral_radius(&p.params.w_hh, shape.hidden);
    let reach_growth_factor = fit_growth_factor(&reach);
    let report = Report {
        adapter,
        shape,
        activation: p.activation,
        loss_fn: p.loss_fn(),
        loss_at: p.loss_at,
        bias: p.has_bias(),
        seed: args.load.is_none().then_some(args.seed),
        random_h0: args.load.is_none() && args.random_h0,
        compute: args.compute,
        variant: variant.describe(),
        spectral_radius,
        largest_singular_value: crate::linalg::largest_singular_value(&p.params.w_hh, shape.hidden),
        loss: result.loss,
        result_from: from,
        grad_norms,
        grad_h_norm: result.grad_h_norm.clone(),
        reach_summary: reach_growth_factor
            .map(|f| format!("{} (spectral radius of w_hh: {spectral_radius:.3})", describe_reach(f, shape.steps))),
        grad_h_norm_from_last: reach,
        reach_growth_factor,
        clip,
        rel_err: rel,
        tolerance: args.tolerance,
        pass: problems.is_empty(),
        problems,
        timings_ms: timings.clone(),
        schedule: ran_gpu.then(|| args.schedule.name()),
        gpu_stages_ms: gpu_stages,
        timing_source,
        repeat,
        cpu_repeat,
        dispatches,
        gpu_memory_bytes: memory,
        flops: fl,
        gpu_gflops: gpu_total.map(|ms| fl / (ms * 1e6)),
        gpu_gbps: gpu_total.map(|ms| {
            let bytes = match args.schedule {
                Schedule::Fused => flops::bytes_fused(shape),
                Schedule::Stepwise => flops::bytes_stepwise(shape),
            };
            bytes / (ms * 1e6)
        }),
        gpu_dispatch_floor_ms: floor,
        // The floor is one pass of empty dispatches: compare it with the passes themselves.
        gpu_total_over_floor: floor
            .zip(timings.gpu_forward.zip(timings.gpu_backward))
            .map(|(f, (fw, bw))| (fw + bw) / f),
        gpu_us_per_step: gpu_total.map(|ms| ms * 1e3 / shape.steps as f64),
        speedup_vs_cpu: match (timings.cpu_total, gpu_total) {
            (Some(c), Some(g)) => Some(c / g),
            _ => None,
        },
        sweep: Vec::new(),
        written: Vec::new(),
    };
    Ok((report, result))
}
