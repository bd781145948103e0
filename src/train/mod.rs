//! `bptt train`: BPTT that learns (README, "Training"). A task (`tasks`, `text`) gives
//! minibatches, an engine (`cpu` or `gpu`) runs forward, backward, clipping and the
//! optimiser's update (`optim`) on them, and the loop here logs the loss, evaluates the
//! held-out set, checks that every loss is finite, and fills in the report (`report`).

pub mod args;
pub mod command;
pub mod cpu;
pub mod gpu;
pub mod optim;
pub mod plot;
pub mod report;
pub mod sample;
pub mod setup;
pub mod tasks;
pub mod text;
pub mod weights;

use std::time::Instant;

use args::{Task, TrainArgs, TrainCompute};
use report::{CurvePoint, EvalPoint, TrainReport};
use setup::{Setup, TaskData};
use tasks::Batch;
use weights::Weights;

use crate::error::{Error, Result};
use crate::gpu::GpuContext;
use crate::model::{Activation, LossAt, LossFn, Shape, Targets};

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
}

/// The engine `--compute` asks for.
pub fn engine(a: &TrainArgs, s: &Setup) -> Result<Box<dyn Engine>> {
    Ok(match a.compute {
        TrainCompute::Cpu => Box::new(cpu::CpuEngine::new(s.step, s.weights.clone())),
        TrainCompute::Gpu => {
            let req = a.gpu.request();
            let ctx = GpuContext::new(&req)?;
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

/// Runs the whole training: the iterations, the held-out evaluations, the final summary.
/// `progress` gets (iteration, latest training metric) after every logged window.
pub fn train(a: &TrainArgs, mut progress: impl FnMut(usize, f64)) -> Result<(TrainReport, Weights, Setup)> {
    let setup = Setup::from_args(a)?;
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
            progress(done, metric(setup.task, mean));
        }
        if done % setup.eval_every == 0 || done == setup.iters {
            let t = Instant::now();
            let e = evaluate(engine.as_mut(), &setup, done)?;
            eval_time += t.elapsed().as_secs_f64();
            if !e.loss.is_finite() {
                return Err(diverged(done, e.loss));
            }
            evals.push(e);
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let w = engine.weights()?;
    if !w.all_finite() {
        return Err(Error::Failed("the trained weights are not all finite; try --clip θ or a lower --lr".into()));
    }
    let report = report::build(a, &setup, engine.device(), curve, evals, seconds, eval_time);
    Ok((report, w, setup))
}

fn diverged(iter: usize, loss: f64) -> Error {
    Error::Failed(format!(
        "training diverged: the loss is {loss} at iteration {iter}; try --clip θ (e.g. --clip 1) or a lower --lr"
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
