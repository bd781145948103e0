//! What a training run reports: the curve, the held-out metrics, the baseline and the
//! throughput (the JSON of `bptt train --json`; fields in docs/training.md).

use super::config::{Task, TrainConfig};
use super::setup::{Setup, task_name};
use crate::format::significant;
use crate::model::Choice;
use crate::variant::memory::MemoryFigures;
use crate::variant::truncation::Truncation;

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct CurvePoint {
    /// Iterations done.
    pub iter: usize,
    /// The task's metric, averaged over the iterations since the previous point.
    pub train: f64,
    /// ‖g‖ before clipping, averaged over the same iterations.
    pub grad_norm: f64,
}

/// An iteration whose training loss jumped above `SPIKE_FACTOR` times the running loss.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Spike {
    pub iter: usize,
    /// The task's metric at that iteration.
    pub train: f64,
    /// The running metric just before it (an exponential average of the iterations before).
    pub running: f64,
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
    /// ‖g‖ over every parameter gradient before clipping, averaged over the training
    /// iterations since the previous evaluation.
    pub grad_norm: f64,
    /// The fraction of those iterations whose ‖g‖ was over the clipping threshold (None
    /// without `clip`).
    pub clipped_fraction: Option<f64>,
    /// The reach of the last step's gradient on the first held-out batch: the per-step factor
    /// of ‖∂L_T/∂h_t‖ going back in time (fitted as the gradient check's), below 1 vanishing.
    pub reach_factor: Option<f64>,
    /// ‖∂L_T/∂h_1‖ / ‖∂L_T/∂h_T‖ on the same batch: how much of the last step's gradient
    /// reaches the first step.
    pub reach_ratio: Option<f64>,
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
    /// K, or "random:P" (the cuts' seed is `truncate_seed`).
    pub truncate: Option<serde_json::Value>,
    pub truncate_seed: Option<u64>,
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
    /// One sentence: whether the run learned, from the last held-out metric against the
    /// baseline (`verdict`).
    pub verdict: String,
    /// Iterations whose training loss jumped above 100× the running loss.
    pub spikes: Vec<Spike>,
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

/// "learned: held-out 0.0065, 26× below the baseline 0.1667", "learned a little: …, 31%
/// below …", or "did not learn: held-out 0.1650 is within 5% of the baseline 0.1667" (or
/// above it).
pub fn verdict(metric: &str, held_out: f64, baseline: f64) -> String {
    let (h, b) = (significant(held_out, 4), significant(baseline, 4));
    let r = held_out / baseline;
    if !r.is_finite() {
        format!("no verdict: held-out {metric} {h}, baseline {b}")
    } else if r >= 1.05 {
        format!("did not learn: held-out {metric} {h} is above the baseline {b}")
    } else if r >= 0.95 {
        format!("did not learn: held-out {metric} {h} is within 5% of the baseline {b}")
    } else if r > 0.5 {
        format!("learned a little: held-out {metric} {h}, {:.0}% below the baseline {b}", 100.0 * (1.0 - r))
    } else {
        let times = 1.0 / r;
        let times = if times < 10.0 { format!("{times:.1}") } else { format!("{times:.0}") };
        format!("learned: held-out {metric} {h}, {times}× below the baseline {b}")
    }
}

#[allow(clippy::too_many_arguments)]
pub fn build(
    a: &TrainConfig,
    s: &Setup,
    device: String,
    curve: Vec<CurvePoint>,
    eval: Vec<EvalPoint>,
    spikes: Vec<Spike>,
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
    let metric = if s.task == Task::Adding { "mse" } else { "xent" };
    TrainReport {
        task: task_name(s.task),
        metric,
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
        truncate: s.step.truncate.map(|t| match t {
            Truncation::Regular(k) => serde_json::json!(k),
            Truncation::Random { p, .. } => serde_json::json!(format!("random:{p}")),
        }),
        truncate_seed: match s.step.truncate {
            Some(Truncation::Random { seed, .. }) => Some(seed),
            _ => None,
        },
        iters: s.iters,
        seed: s.seed,
        baseline: s.baseline,
        curve,
        eval,
        final_train,
        verdict: verdict(metric, final_eval.loss, s.baseline),
        final_eval,
        spikes,
        seconds,
        eval_seconds,
        sequences_per_s: (s.iters * sh.batch) as f64 / (seconds - eval_seconds).max(1e-9),
        notes: s.notes.clone(),
        memory: None,
        sample: None,
    }
}
