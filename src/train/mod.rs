//! Training: BPTT that learns (docs/training.md). `train(&TrainConfig)` runs it: a task
//! (`tasks`, `text`) gives minibatches, an engine (`cpu` or `gpu`) runs forward, backward,
//! clipping and the optimiser's update (`optim`) on them, and the loop here logs the loss,
//! evaluates the held-out set, checks that every loss is finite, and fills in the report
//! (`report`).

pub mod config;
pub mod cpu;
pub mod gpu;
pub mod optim;
pub mod report;
pub mod sample;
pub mod setup;
pub mod tasks;
pub mod text;
pub mod weights;

use std::collections::BTreeMap;
use std::time::Instant;

pub use config::{Partition, Task, TrainConfig, TrainDevice};
pub use optim::OptimKind;
pub use report::TrainReport;
use report::{CurvePoint, EvalPoint, Spike};
use setup::{Setup, TaskData};
use tasks::{Batch, rng};
pub use weights::{InitRecurrent, Weights};

use crate::error::{Error, Result};
use crate::gpu::GpuContext;
use crate::model::{Activation, LossAt, LossFn, Shape, Targets};
use crate::progress::{Progress, Quiet};
use crate::variant::truncation::{Truncation, draw_carry_scales};

/// The stream of the seed that the text task's sample draws from.
const SAMPLE_STREAM: u64 = 11;

/// What every iteration of a run shares.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepConfig {
    pub shape: Shape,
    pub activation: Activation,
    pub loss_fn: LossFn,
    pub loss_at: LossAt,
    pub clip: Option<f64>,
    /// Truncated BPTT (K < T, or random cuts with 0 < p < 1).
    pub truncate: Option<Truncation>,
    pub optim: optim::Optim,
    /// Each iteration's BPTT within a memory budget.
    pub memory: crate::variant::memory::MemoryOptions,
}

/// Where a minibatch's h0 comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum H0 {
    Zero,
    /// h_T of the previous training minibatch (sequential partitioning).
    Carried,
}

/// What one iteration measured, read back with its loss.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct IterStats {
    /// L of the minibatch.
    pub loss: f64,
    /// ‖g‖ over every parameter gradient, before clipping.
    pub grad_norm: f64,
}

/// One place training runs: the CPU path or the GPU.
pub trait Engine {
    /// One iteration: forward, backward, clipping, update. `carry`: the iteration's random cuts
    /// (c_t, t = 0..T−1) under randomised truncation. The loss and ‖g‖ are kept for
    /// `take_stats`.
    fn step(&mut self, batch: &Batch, h0: H0, carry: Option<&[f64]>) -> Result<()>;
    /// L and ‖g‖ of every iteration since the last call, in order.
    fn take_stats(&mut self) -> Result<Vec<IterStats>>;
    /// L and the outputs o `[T,B,q]` of a held-out batch (h0 = 0), without an update.
    fn evaluate(&mut self, batch: &Batch) -> Result<(f64, Vec<f64>)>;
    /// The current weights.
    fn weights(&mut self) -> Result<Weights>;
    /// Where it runs, for the report.
    fn device(&self) -> String;
    /// How each iteration held its states, when it checkpointed (the forward steps of the last
    /// iteration with it).
    fn memory(&self) -> Option<crate::variant::memory::MemoryFigures> {
        None
    }
}

/// Where `device` trains, and a note when `TrainDevice::Auto` chose the CPU: the GPU when an
/// adapter that is not a software one exists (or one was asked for by name, backend or
/// `software`), else the fast CPU path.
pub fn resolve_device(a: &TrainConfig) -> (TrainDevice, Option<String>) {
    if a.device != TrainDevice::Auto {
        return (a.device, None);
    }
    let r = &a.adapter;
    if r.name.is_some() || r.software || r.backend_list.is_some() || r.backend != crate::gpu::BackendChoice::Auto {
        return (TrainDevice::Gpu, None);
    }
    match crate::gpu::list_adapters(r) {
        Ok(list) if list.iter().any(|x| !x.device_type.starts_with("CPU")) => (TrainDevice::Gpu, None),
        Ok(list) => {
            let mut names: Vec<&str> = list.iter().map(|x| x.name.as_str()).collect();
            names.dedup();
            let (one, it) = if names.len() == 1 {
                ("the only GPU adapter is a software one", "it")
            } else {
                ("the only GPU adapters are software ones", "one")
            };
            (
                TrainDevice::Cpu,
                Some(format!(
                    "{one} ({}), which trains far slower than the fast CPU path: training on the CPU (`device` gpu to use {it} anyway)",
                    names.join(", ")
                )),
            )
        }
        Err(_) => (TrainDevice::Cpu, Some("no GPU adapter found: training on the fast CPU path".to_string())),
    }
}

/// The engine `device` asks for (`Auto` resolved first, see `resolve_device`).
pub fn engine(device: TrainDevice, a: &TrainConfig, s: &Setup) -> Result<Box<dyn Engine>> {
    Ok(match device {
        TrainDevice::Cpu => Box::new(cpu::CpuEngine::new(s.step, s.weights.clone())?),
        TrainDevice::Gpu | TrainDevice::Auto => {
            let ctx = GpuContext::new(&a.adapter)?;
            // Every buffer against the adapter's limits before any exists (as the check does).
            // Untruncated, a shape whose states do not bind is checkpointed instead (the engine
            // plans it).
            let lanes = match s.step.truncate {
                Some(Truncation::Regular(k)) => Some(k as u32),
                _ => None,
            };
            if lanes.is_some() {
                let hint = " (or a smaller `truncate` K: the GPU keeps K lanes of ∂L/∂a, or `device` cpu)";
                crate::gpu::check_fits(&ctx, s.step.shape, crate::gpu::Schedule::Fused, lanes, hint)?;
            }
            Box::new(gpu::GpuEngine::new(ctx, s.step, &s.weights, s.log_every)?)
        }
    })
}

/// The task's metric from the loss L the passes compute: the adding problem's MSE is 2L
/// (L carries the ½ of ½(o − y)²); cross-entropy tasks report L itself, nats per step.
pub fn metric(task: Task, loss: f64) -> f64 {
    match task {
        Task::Adding => 2.0 * loss,
        Task::Copy | Task::Text => loss,
    }
}

/// A finished training run: its report (the JSON of `bptt train --json`), the trained
/// weights, and the metadata a model file of them carries (`io::save_model`).
#[derive(Clone, Debug)]
pub struct Trained {
    pub report: TrainReport,
    pub weights: Weights,
    pub metadata: BTreeMap<String, String>,
}

impl Trained {
    /// The weights in the order a model file holds them: w_hx, w_hh, w_qh, b_h, b_q.
    pub fn tensors(&self) -> [&[f32]; 5] {
        let w = &self.weights;
        [&w.w_hx, &w.w_hh, &w.w_qh, &w.b_h, &w.b_q]
    }
}

/// Trains as `config` says and returns the report and the weights. Every value is checked
/// first; a run whose loss stops being finite fails (`Error::Failed`), naming the iteration.
pub fn train(config: &TrainConfig) -> Result<Trained> {
    train_with(config, &Quiet)
}

/// `train`, telling `progress` the iteration and training metric after every logged window.
pub fn train_with(config: &TrainConfig, progress: &dyn Progress) -> Result<Trained> {
    let (mut report, weights, setup) = run(config, progress)?;
    if let (Some(n), TaskData::Text { corpus, .. }) = (config.sample, &setup.data) {
        let prompt = match &config.prompt {
            Some(p) => corpus.encode(p)?,
            None => vec![corpus.train[0]],
        };
        let text =
            sample::sample(&weights, setup.step.activation, corpus, &prompt, n, &mut rng(config.seed, SAMPLE_STREAM));
        report.sample = Some(format!("{}{text}", config.prompt.clone().unwrap_or_default()));
    }
    Ok(Trained { report, weights, metadata: setup.model_metadata() })
}

/// The iterations, the held-out evaluations, the final summary.
fn run(a: &TrainConfig, progress: &dyn Progress) -> Result<(TrainReport, Weights, Setup)> {
    let mut setup = Setup::from_config(a)?;
    let (device, note) = resolve_device(a);
    setup.notes.extend(note);
    let mut engine = engine(device, a, &setup)?;
    let mut r = setup.batch_rng();
    // Randomised truncation draws fresh cuts every iteration (docs/training.md).
    let mut cuts = match setup.step.truncate {
        Some(Truncation::Random { p, seed }) => Some((p, rng(seed, setup.seed))),
        _ => None,
    };
    let mut log = Log::new(setup.task, setup.step.clip);
    let mut evals = Vec::new();
    let start = Instant::now();
    let mut eval_time = 0.0;
    for i in 0..setup.iters {
        let (batch, carried) = setup.batch(i, &mut r)?;
        let carry = cuts.as_mut().map(|(p, g)| draw_carry_scales(g, setup.step.shape.steps, *p));
        engine.step(&batch, if carried { H0::Carried } else { H0::Zero }, carry.as_deref())?;
        let done = i + 1;
        let eval_now = done % setup.eval_every == 0 || done == setup.iters;
        if done % setup.log_every == 0 || done == setup.iters || eval_now {
            log.read(engine.as_mut(), done)?;
        }
        if done % setup.log_every == 0 || done == setup.iters {
            let mean = log.close_window(done);
            progress.iteration(done, setup.iters, mean);
        }
        if eval_now {
            let t = Instant::now();
            let mut e = evaluate(engine.as_mut(), &setup, done)?;
            if !e.loss.is_finite() {
                // Every training loss up to here was read and found finite (`Log::read` above):
                // it is the held-out loss alone.
                return Err(Error::Failed(format!(
                    "training diverged: the held-out loss is {} after iteration {done}, where every training \
                     loss was finite; try `clip` θ (e.g. `clip` 1) or a lower `lr`",
                    e.loss
                )));
            }
            log.readings(&mut e);
            let (factor, ratio) = reach_reading(&engine.weights()?, &setup)?;
            (e.reach_factor, e.reach_ratio) = (factor, ratio);
            eval_time += t.elapsed().as_secs_f64();
            evals.push(e);
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let w = engine.weights()?;
    if !w.all_finite() {
        return Err(Error::Failed("the trained weights are not all finite; try `clip` θ or a lower `lr`".into()));
    }
    let mut report = report::build(a, &setup, engine.device(), log.curve, evals, log.spikes, seconds, eval_time);
    report.memory = engine.memory();
    Ok((report, w, setup))
}

/// A spike: an iteration whose training loss is more than this many times the running loss.
pub const SPIKE_FACTOR: f64 = 100.0;
/// The running loss: an exponential average of the iterations before, with this weight on
/// the newest.
const RUNNING_WEIGHT: f64 = 0.1;

/// What the loop keeps of the iterations' losses and gradient norms: the curve (one point per
/// log window), the spikes, and the gradient readings since the last evaluation.
struct Log {
    task: Task,
    clip: Option<f64>,
    curve: Vec<CurvePoint>,
    spikes: Vec<Spike>,
    /// The running (exponentially averaged) loss, None before the first iteration.
    running: Option<f64>,
    /// Σ L and Σ ‖g‖ over the log window, and its iterations.
    window: (f64, f64, usize),
    /// ‖g‖ of each iteration since the last evaluation.
    since_eval: Vec<f64>,
    /// The iteration the next stat read belongs to.
    next_iter: usize,
}

impl Log {
    fn new(task: Task, clip: Option<f64>) -> Self {
        Log {
            task,
            clip,
            curve: Vec::new(),
            spikes: Vec::new(),
            running: None,
            window: (0.0, 0.0, 0),
            since_eval: Vec::new(),
            next_iter: 1,
        }
    }

    /// Reads the engine's stats up to iteration `done`, checking every loss.
    fn read(&mut self, engine: &mut dyn Engine, done: usize) -> Result<()> {
        let stats = engine.take_stats()?;
        let first = done + 1 - stats.len();
        for (k, s) in stats.iter().enumerate() {
            let iter = first + k;
            if !s.loss.is_finite() {
                return Err(diverged(iter, s.loss));
            }
            if let Some(run) = self.running
                && s.loss > SPIKE_FACTOR * run
            {
                let m = |l| metric(self.task, l);
                self.spikes.push(Spike { iter, train: m(s.loss), running: m(run) });
            }
            self.running = Some(self.running.map_or(s.loss, |r| r + RUNNING_WEIGHT * (s.loss - r)));
            self.window.0 += s.loss;
            self.window.1 += s.grad_norm;
            self.window.2 += 1;
            self.since_eval.push(s.grad_norm);
        }
        self.next_iter = done + 1;
        Ok(())
    }

    /// Ends the log window at `done`: a curve point; returns its training metric.
    fn close_window(&mut self, done: usize) -> f64 {
        let (loss, norm, n) = std::mem::take(&mut self.window);
        let n = n.max(1) as f64;
        let train = metric(self.task, loss / n);
        self.curve.push(CurvePoint { iter: done, train, grad_norm: norm / n });
        train
    }

    /// The gradient readings of an evaluation: the mean ‖g‖ before clipping since the last one,
    /// and the fraction of those iterations clipped.
    fn readings(&mut self, e: &mut EvalPoint) {
        let norms = std::mem::take(&mut self.since_eval);
        let n = norms.len().max(1) as f64;
        e.grad_norm = norms.iter().sum::<f64>() / n;
        e.clipped_fraction = self.clip.map(|theta| norms.iter().filter(|&&g| g > theta).count() as f64 / n);
    }
}

/// The reach of the last step's gradient with the current weights, on the first held-out
/// batch: the reach profile ‖∂L_T/∂h_t‖ (the loss of the last step alone, full BPTT on the
/// fast CPU path, checkpointed under a memory budget), its fitted per-step factor going back in
/// time (as the gradient check's `reach_factor`) and ‖∂L_T/∂h_1‖/‖∂L_T/∂h_T‖.
fn reach_reading(w: &Weights, s: &Setup) -> Result<(Option<f64>, Option<f64>)> {
    let shape = s.step.shape;
    let batch = &s.held_out[0];
    let h0 = vec![0.0; shape.batch * shape.hidden];
    let p = crate::model::Problem::new(
        shape,
        s.step.activation,
        w.params(),
        batch.x.clone(),
        Some(h0),
        batch.targets.clone(),
    )?
    .with_loss_at(LossAt::Last);
    let fast = crate::cpu::fast::costs(shape, None);
    let full = crate::cpu::fast::full_bytes(shape, None);
    let plan = crate::variant::memory::plan_path("cpu", shape.steps, &s.step.memory, &fast, full, None)?.plan;
    let profile = match plan {
        Some(plan) => crate::cpu::fast::bptt_checkpointed(&p, &plan)?.0.grad_h_norm,
        None => crate::cpu::fast::bptt(&p).grad_h_norm,
    };
    let (first, last) = (profile[0], profile[shape.steps - 1]);
    let ratio = (first.is_finite() && last.is_finite() && last > 0.0).then(|| first / last);
    Ok((crate::diagnostics::fit_growth_factor(&profile), ratio))
}

fn diverged(iter: usize, loss: f64) -> Error {
    Error::Failed(format!(
        "training diverged: the loss is {loss} at iteration {iter}; try `clip` θ (e.g. `clip` 1) or a lower `lr`"
    ))
}

/// The held-out metrics after iteration `iter`.
fn evaluate(engine: &mut dyn Engine, s: &Setup, iter: usize) -> Result<EvalPoint> {
    let shape = s.step.shape;
    let (mut loss, mut right, mut scored) = (0.0, 0.0, 0usize);
    for batch in &s.held_out {
        let (l, o) = engine.evaluate(batch)?;
        loss += l;
        if let (TaskData::Copy, Targets::Xent(labels)) = (&s.data, &batch.targets) {
            right += tasks::copy_accuracy(&o, labels, shape.steps, shape.batch);
            scored += 1;
        }
    }
    let mean = loss / s.held_out.len() as f64;
    Ok(EvalPoint {
        iter,
        loss: metric(s.task, mean),
        accuracy: (scored > 0).then(|| right / scored as f64),
        perplexity: matches!(s.data, TaskData::Text { .. }).then(|| mean.exp()),
        grad_norm: f64::NAN,
        clipped_fraction: None,
        reach_factor: None,
        reach_ratio: None,
    })
}
