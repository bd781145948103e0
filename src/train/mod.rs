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
use report::{CurvePoint, EvalPoint};
use setup::{Setup, TaskData};
use tasks::{Batch, rng};
pub use weights::{InitRecurrent, Weights};

use crate::error::{Error, Result};
use crate::gpu::GpuContext;
use crate::model::{Activation, LossAt, LossFn, Shape, Targets};
use crate::progress::{Progress, Quiet};

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
    /// K < T: truncated BPTT.
    pub truncate: Option<usize>,
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

/// One place training runs: the CPU path or the GPU.
pub trait Engine {
    /// One iteration: forward, backward, clipping, update. The loss is kept for `take_losses`.
    fn step(&mut self, batch: &Batch, h0: H0) -> Result<()>;
    /// L of every iteration since the last call, in order.
    fn take_losses(&mut self) -> Result<Vec<f64>>;
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

/// The engine `device` asks for.
pub fn engine(a: &TrainConfig, s: &Setup) -> Result<Box<dyn Engine>> {
    Ok(match a.device {
        TrainDevice::Cpu => Box::new(cpu::CpuEngine::new(s.step, s.weights.clone())?),
        TrainDevice::Gpu => {
            let ctx = GpuContext::new(&a.adapter)?;
            // Every buffer against the adapter's limits before any exists (as the check does).
            // Untruncated, a shape whose states do not bind is checkpointed instead (the engine
            // plans it).
            let (shape, lanes) = (s.step.shape, s.step.truncate.map(|k| k as u32));
            if lanes.is_some() {
                let hint = " (or a smaller `truncate` K: the GPU keeps K lanes of ∂L/∂a, or `device` cpu)";
                crate::gpu::check_fits(&ctx, shape, crate::gpu::Schedule::Fused, lanes, hint)?;
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
    let setup = Setup::from_config(a)?;
    let mut engine = engine(a, &setup)?;
    let mut r = setup.batch_rng();
    let mut curve = Vec::new();
    let mut evals = Vec::new();
    let start = Instant::now();
    let mut eval_time = 0.0;
    for i in 0..setup.iters {
        let (batch, carried) = setup.batch(i, &mut r)?;
        engine.step(&batch, if carried { H0::Carried } else { H0::Zero })?;
        let done = i + 1;
        if done % setup.log_every == 0 || done == setup.iters {
            let losses = engine.take_losses()?;
            let first = done - losses.len();
            if let Some(k) = losses.iter().position(|l| !l.is_finite()) {
                return Err(diverged(first + k + 1, losses[k]));
            }
            let mean = losses.iter().sum::<f64>() / losses.len() as f64;
            curve.push(CurvePoint { iter: done, train: metric(setup.task, mean) });
            progress.iteration(done, setup.iters, metric(setup.task, mean));
        }
        if done % setup.eval_every == 0 || done == setup.iters {
            let t = Instant::now();
            let e = evaluate(engine.as_mut(), &setup, done)?;
            eval_time += t.elapsed().as_secs_f64();
            if !e.loss.is_finite() {
                // Between two log points: the training losses since the last one say where it
                // began; if they are all finite, it was the held-out loss alone.
                let losses = engine.take_losses()?;
                let first = done - losses.len();
                return Err(match losses.iter().position(|l| !l.is_finite()) {
                    Some(k) => diverged(first + k + 1, losses[k]),
                    None => Error::Failed(format!(
                        "training diverged: the held-out loss is {} after iteration {done}, where every training \
                         loss was finite; try `clip` θ (e.g. `clip` 1) or a lower `lr`",
                        e.loss
                    )),
                });
            }
            evals.push(e);
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let w = engine.weights()?;
    if !w.all_finite() {
        return Err(Error::Failed("the trained weights are not all finite; try `clip` θ or a lower `lr`".into()));
    }
    let mut report = report::build(a, &setup, engine.device(), curve, evals, seconds, eval_time);
    report.memory = engine.memory();
    Ok((report, w, setup))
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
    })
}
