//! What a training run reports: the curve, the held-out metrics, the baseline and the
//! throughput (the JSON of `bptt train --json`; fields in docs/training.md).

use super::config::{Task, TrainConfig};
use super::setup::{Setup, task_name};
use crate::model::Choice;
use crate::variant::memory::MemoryFigures;

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct CurvePoint {
    /// Iterations done.
    pub iter: usize,
    /// The task's metric, averaged over the iterations since the previous point.
    pub train: f64,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct EvalPoint {
    pub iter: usize,
    /// The task's metric on the held-out set.
    pub loss: f64,
    /// Copy: the fraction of recalled symbols right.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<f64>,
    /// Text: exp(cross-entropy per character).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub perplexity: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct TrainReport {
    pub task: &'static str,
    /// What the loss column means: mse, or cross-entropy in nats per step.
    pub metric: &'static str,
    pub device: String,
    pub steps: usize,
    pub batch: usize,
    pub hidden: usize,
    pub input: usize,
    pub output: usize,
    pub activation: &'static str,
    pub init_recurrent: String,
    /// s of `init_recurrent`; None (null) when the weights came from a file.
    pub init_scale: Option<f64>,
    /// The model file the weights came from (`init_from`), if any.
    pub init_from: Option<String>,
    pub optimizer: String,
    pub lr: f64,
    pub clip: Option<f64>,
    pub truncate: Option<usize>,
    pub iters: usize,
    pub seed: u64,
    /// The memoryless baseline of the metric.
    pub baseline: f64,
    pub curve: Vec<CurvePoint>,
    pub eval: Vec<EvalPoint>,
    /// The last curve point's training metric.
    pub final_train: f64,
    /// The last held-out evaluation.
    pub final_eval: EvalPoint,
    /// Wall time of the training loop, evaluations included.
    pub seconds: f64,
    pub eval_seconds: f64,
    /// Training sequences per second, evaluation time excluded.
    pub sequences_per_s: f64,
    pub notes: Vec<String>,
    /// Checkpointing under `memory` / `checkpoints` (null when every state was stored); its
    /// forward steps are one iteration's.
    pub memory: Option<MemoryFigures>,
    /// --task text --sample: the generated text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample: Option<String>,
}

pub fn build(
    a: &TrainConfig,
    s: &Setup,
    device: String,
    curve: Vec<CurvePoint>,
    eval: Vec<EvalPoint>,
    seconds: f64,
    eval_seconds: f64,
) -> TrainReport {
    let sh = s.step.shape;
    let final_train = curve.last().map_or(f64::NAN, |c| c.train);
    let final_eval = eval.last().cloned().expect("the last iteration is always evaluated");
    let init_recurrent = match a.init_from {
        Some(_) => "from file".to_string(),
        None => a.init_recurrent.name().to_string(),
    };
    TrainReport {
        task: task_name(s.task),
        metric: if s.task == Task::Adding { "mse" } else { "xent" },
        device,
        steps: sh.steps,
        batch: sh.batch,
        hidden: sh.hidden,
        input: sh.input,
        output: sh.output,
        activation: s.step.activation.name(),
        init_recurrent,
        init_scale: a.init_from.is_none().then_some(a.init_scale),
        init_from: a.init_from.as_ref().map(|p| p.display().to_string()),
        optimizer: format!("{:?}", s.step.optim.kind).to_lowercase(),
        lr: s.step.optim.lr,
        clip: s.step.clip,
        truncate: s.step.truncate,
        iters: s.iters,
        seed: s.seed,
        baseline: s.baseline,
        curve,
        eval,
        final_train,
        final_eval,
        seconds,
        eval_seconds,
        sequences_per_s: (s.iters * sh.batch) as f64 / (seconds - eval_seconds).max(1e-9),
        notes: s.notes.clone(),
        memory: None,
        sample: None,
    }
}
