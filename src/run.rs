//! What the command does, as a library function: build (or load) the problem, run the chosen
//! paths, check the GPU against the reference, time everything, and fill in the report.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::cli::{Args, Compute};
use crate::error::Result;
use crate::gpu::{AdapterRequest, GpuBptt, GpuContext, RunTimes};
use crate::model::{Grads, Problem, Shape, rel_err};
use crate::problem::{ProblemSpec, random_problem};
use crate::report::{Report, Timings};
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
    args.repeat
        .unwrap_or_else(|| ((TIME_BUDGET_MS / warmup_ms.max(1e-3)) as u32).clamp(1, MAX_REPEAT))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
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
        let show = long
            && !args.json
            && std::io::stdout().is_terminal()
            && std::io::stderr().is_terminal();
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
            let mut line = format!(
                "{name} has {bad} non-finite entr{}",
                if bad == 1 { "y" } else { "ies" }
            );
            if name == "grad_h_norm" {
                // The backward pass runs from t = T down to 1: the first overflow in that
                // order is the largest t whose norm is not finite.
                if let Some(t) = v.iter().rposition(|x| !x.is_finite()) {
                    line.push_str(&format!(
                        "; ‖∂L/∂h_t‖ first overflows at step {} (counting down from T)",
                        t + 1
                    ));
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
    let problem = problem_from_args(args)?;
    let (report, result) = run_problem(args, &problem)?;
    if let Some(path) = &args.save {
        // Only a run that passed every check is written; a failed one leaves the file as it was.
        if report.pass {
            let mut meta = std::collections::BTreeMap::new();
            meta.insert(
                "command_line".to_string(),
                std::env::args().collect::<Vec<_>>().join(" "),
            );
            meta.insert("result_from".to_string(), report.result_from.to_string());
            if let Some(a) = &report.adapter {
                meta.insert("adapter".to_string(), a.to_string());
            }
            crate::io::save_grads(path, &result, &problem.shape, args.save_states, &meta)?;
        }
    }
    Ok(report)
}

/// Runs the paths `args` asks for on `p`; returns the report and the result it describes (the
/// GPU's when it ran, else the CPU path's).
pub fn run_problem(args: &Args, p: &Problem) -> Result<(Report, Grads)> {
    let shape = p.shape;
    let mut timings = Timings::default();
    let mut problems = Vec::new();
    let mut rel = BTreeMap::new();
    let mut repeat = 1;
    let (mut adapter, mut timing_source, mut dispatches, mut memory) = (None, None, None, None);
    let mut gpu_stages = Vec::new();
    let mut floor = None;
    let progress = Progress::new(args, shape);

    let gpu_result = if matches!(args.compute, Compute::Both | Compute::Gpu) {
        let req = AdapterRequest {
            backend: args.backend,
            name: args.adapter.clone(),
            software: args.software,
        };
        progress.say("GPU: adapter, device, pipelines".into());
        let (built, setup) = clock(|| -> Result<_> {
            let ctx = GpuContext::new(&req)?;
            let gpu = GpuBptt::new(&ctx, shape, args.schedule)?;
            Ok((ctx, gpu))
        });
        let (ctx, mut gpu) = built?;
        let mut runs: Vec<RunTimes> = Vec::new();
        let (grads, _, _) = timed(args, &progress, "GPU", || {
            let (g, t) = gpu.run(&ctx, p, false)?;
            let total = t.total;
            runs.push(t);
            Ok((g, total))
        })?;
        let timed_runs = &runs[1..];
        repeat = timed_runs.len() as u32;
        let med = |f: fn(&RunTimes) -> f64| Some(median(timed_runs.iter().map(f).collect()));
        timings.gpu_setup = Some(setup);
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
            .map(|(k, (stage, _))| {
                (
                    stage.name(),
                    median(timed_runs.iter().map(|r| r.stages[k].1).collect()),
                )
            })
            .collect();
        progress.say("GPU: dispatch-latency floor".into());
        floor = Some(crate::gpu::floor::dispatch_floor_ms(
            &ctx,
            2 * shape.steps as u32,
            5,
        )?);
        adapter = Some(ctx.adapter.clone());
        timing_source = Some(gpu.timing_source());
        dispatches = Some(gpu.dispatch_count());
        memory = Some(gpu.memory_bytes());
        problems.extend(non_finite_problems(&grads));
        let grads = if args.save_states {
            // The timed runs skip reading the states back; one more run keeps them.
            gpu.run(&ctx, p, true)?.0
        } else {
            grads
        };
        Some(grads)
    } else {
        None
    };

    let fast_result = if matches!(args.compute, Compute::Both | Compute::Cpu) {
        let (g, med, times) = timed(args, &progress, "fast CPU path", || {
            Ok(clock(|| cpu::reference::bptt(p)))
        })?;
        timings.cpu_total = Some(med);
        if gpu_result.is_none() {
            repeat = times.len() as u32;
        }
        Some(g)
    } else {
        None
    };

    let ref_result = if matches!(args.compute, Compute::Both | Compute::CpuRef) {
        progress.say("f64 CPU reference".into());
        let (g, ms) = clock(|| cpu::reference::bptt(p));
        timings.cpu_ref_total = Some(ms);
        Some(g)
    } else {
        None
    };

    if let (Some(g), Some(r)) = (&gpu_result, &ref_result) {
        for ((name, a), (_, b)) in g.tensors().into_iter().zip(r.tensors()) {
            let e = rel_err(a, b);
            if e.is_nan() || e > args.tolerance {
                problems.push(format!(
                    "{name}: relative error {e:.3e} exceeds the tolerance {:e}",
                    args.tolerance
                ));
            }
            rel.insert(name, e);
        }
    }

    let (result, from) = match (gpu_result, fast_result, ref_result.clone()) {
        (Some(g), _, _) => (g, "gpu"),
        (None, Some(g), _) => (g, "cpu"),
        (None, None, Some(g)) => (g, "cpu-ref"),
        _ => unreachable!("every --compute value runs at least one path"),
    };
    let ran_gpu = from == "gpu";
    let grad_norms = result
        .tensors()
        .into_iter()
        .filter(|(n, _)| n.starts_with("grad_") && *n != "grad_h_norm");
    let grad_norms = grad_norms
        .map(|(n, v)| (n, crate::model::norm(v)))
        .collect();
    let fl = flops::flops(shape);
    let adapter_schedule = ran_gpu.then(|| args.schedule.name());
    let gpu_total = timings.gpu_total;
    let report = Report {
        adapter,
        shape,
        activation: p.activation,
        loss_fn: p.loss_fn(),
        loss_at: p.loss_at,
        bias: p.has_bias(),
        seed: Some(args.seed),
        compute: args.compute,
        spectral_radius: crate::linalg::spectral_radius(&p.params.w_hh, shape.hidden),
        largest_singular_value: crate::linalg::largest_singular_value(&p.params.w_hh, shape.hidden),
        loss: result.loss,
        result_from: from,
        grad_norms,
        grad_h_norm: result.grad_h_norm.clone(),
        rel_err: rel,
        tolerance: args.tolerance,
        pass: problems.is_empty(),
        problems,
        timings_ms: timings.clone(),
        schedule: adapter_schedule,
        gpu_stages_ms: gpu_stages,
        timing_source,
        repeat,
        dispatches,
        gpu_memory_bytes: memory,
        flops: fl,
        gpu_gflops: gpu_total.map(|ms| fl / (ms * 1e6)),
        gpu_gbps: gpu_total.map(|ms| {
            let bytes = match args.schedule {
                crate::gpu::Schedule::Fused => flops::bytes_fused(shape),
                crate::gpu::Schedule::Stepwise => flops::bytes_stepwise(shape),
            };
            bytes / (ms * 1e6)
        }),
        gpu_dispatch_floor_ms: floor,
        gpu_total_over_floor: floor.zip(gpu_total).map(|(f, t)| t / f),
        gpu_us_per_step: gpu_total.map(|ms| ms * 1e3 / shape.steps as f64),
        speedup_vs_cpu: match (timings.cpu_total, gpu_total) {
            (Some(c), Some(g)) => Some(c / g),
            _ => None,
        },
    };
    Ok((report, result))
}
