//! From a `TrainConfig` to a checked training run: every bad value or combination is refused
//! here with one line naming the field (exit 2 on the command line) before anything runs.

use std::collections::BTreeMap;

use super::StepConfig;
use super::config::{Partition, Task, TrainConfig, TrainDevice};
use super::optim::{Optim, OptimKind};
use super::tasks::{self, ADDING_INPUT, ADDING_OUTPUT, Batch, COPY_INPUT, COPY_OUTPUT, rng};
use super::text::Corpus;
use super::weights::{Weights, f32s};
use crate::error::{Error, Result, one_line, quote};
use crate::format::{f32_parameter, number};
use crate::io::ModelFile;
use crate::memory::{self, TrainSizes};
use crate::model::{Activation, Choice, LossAt, LossFn, Shape};
use crate::variant::memory::MemoryOptions;
use crate::variant::truncation::Truncation;

/// The held-out set's seed: fixed, so runs with different --seed are scored on the same set.
pub const HELD_OUT_SEED: u64 = 0x4845_4c44; // "HELD"
/// The training minibatches' stream of --seed (the weights use others, see `weights`).
const BATCH_STREAM: u64 = 7;

/// The task's data.
pub enum TaskData {
    Adding,
    Copy,
    Text { corpus: Corpus, partition: Partition },
}

pub struct Setup {
    pub task: Task,
    pub data: TaskData,
    pub step: StepConfig,
    pub weights: Weights,
    pub iters: usize,
    pub log_every: usize,
    pub eval_every: usize,
    pub held_out: Vec<Batch>,
    pub seed: u64,
    /// The memoryless baseline of the task's metric (docs/training.md).
    pub baseline: f64,
    /// Said in the report: settings that have no effect, and where the weights came from.
    pub notes: Vec<String>,
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::Invalid(msg.into())
}

impl Setup {
    pub fn from_config(a: &TrainConfig) -> Result<Self> {
        check_numbers(a)?;
        let task = a.task;
        if task != Task::Text {
            for (given, field) in [
                (a.text.is_some(), "text"),
                (a.partition.is_some(), "partition"),
                (a.sample.is_some(), "sample"),
                (a.prompt.is_some(), "prompt"),
            ] {
                if given {
                    return Err(invalid(format!("`{field}` is for `task` text, not `task` {}", task_name(task))));
                }
            }
        }
        if a.prompt.is_some() && a.sample.is_none() {
            return Err(invalid("`prompt` needs `sample` N (the characters to sample after it)"));
        }
        let steps = a.steps.unwrap_or(match task {
            Task::Adding => 50,
            Task::Copy => 30,
            Task::Text => 64,
        });
        let (data, d, q, loss_fn, loss_at, baseline) = match task {
            Task::Adding => {
                if steps < 2 {
                    return Err(invalid("`task` adding needs `steps` ≥ 2 (one marker in each half)"));
                }
                (TaskData::Adding, ADDING_INPUT, ADDING_OUTPUT, LossFn::Mse, LossAt::Last, tasks::ADDING_BASELINE)
            }
            Task::Copy => {
                if steps <= 2 * tasks::COPY_RECALL {
                    return Err(invalid(format!(
                        "`task` copy needs `steps` ≥ 21 (10 symbols, a delay T = steps − 20 ≥ 1, 10 recalled); got {steps}"
                    )));
                }
                (TaskData::Copy, COPY_INPUT, COPY_OUTPUT, LossFn::Xent, LossAt::All, tasks::copy_baseline(steps))
            }
            Task::Text => {
                let Some(path) = &a.text else {
                    return Err(invalid("`task` text needs `text` FILE"));
                };
                // Before the file is read: what reading it will take (a larger file than the
                // reader accepts is refused by `Corpus::load`).
                if let Ok(m) = std::fs::metadata(path) {
                    memory::check_host(
                        memory::text_host_bytes(m.len()),
                        a.max_memory,
                        &format!("reading `text` {}", shown(path)),
                        "give a shorter text",
                    )?;
                }
                let corpus = Corpus::load(path, steps)?;
                if let Some(prompt) = &a.prompt {
                    if prompt.is_empty() {
                        return Err(invalid("`prompt` is empty; give at least one character"));
                    }
                    corpus.encode(prompt)?;
                }
                let v = corpus.vocab_size();
                let baseline = corpus.unigram_entropy();
                let partition = a.partition.unwrap_or_default();
                if partition == Partition::Sequential {
                    corpus.sequential_batch(0, steps, a.batch)?;
                }
                (TaskData::Text { corpus, partition }, v, v, LossFn::Xent, LossAt::All, baseline)
            }
        };
        let shape = Shape::new(steps, a.batch, d, a.hidden, q)?;
        let mut notes = Vec::new();
        let truncate = match a.truncate {
            Some(Truncation::Regular(0)) => return Err(invalid("`truncate` K must be at least 1")),
            Some(Truncation::Regular(k)) if k >= steps => {
                notes.push(format!("`truncate` {k} reaches back over all T = {steps} steps: full BPTT"));
                None
            }
            Some(Truncation::Random { p, .. }) if !(0.0..1.0).contains(&p) => {
                return Err(invalid(format!("`truncate` random:P needs P in [0, 1), got {p}")));
            }
            Some(Truncation::Random { p: 0.0, .. }) => {
                notes.push("`truncate` random:0 never cuts: full BPTT".to_string());
                None
            }
            t => t,
        };
        let eval_batches = a.eval_size.div_ceil(a.batch);
        let log_every = a.log_every.min(a.iters);
        check_memory(a, shape, loss_fn, &data, eval_batches, log_every)?;
        let model = match &a.init_from {
            Some(path) => Some(crate::io::load_model_within(path, a.max_memory)?),
            None => None,
        };
        if let (Some(m), Some(path), TaskData::Text { corpus, .. }) = (&model, &a.init_from, &data) {
            let here: String = corpus.vocab.iter().collect();
            if m.metadata.get("vocab") != Some(&here) {
                return Err(invalid(format!(
                    "`init_from` {}: the model was not trained on this text's vocabulary ({} characters here)",
                    shown(path),
                    corpus.vocab_size()
                )));
            }
        }
        let (weights, activation) = initial_weights(a, model, d, q)?;
        let lr = a.lr.unwrap_or(match a.optim {
            OptimKind::Adam => 1e-3,
            OptimKind::Sgd => 1e-2,
        });
        let step = StepConfig {
            shape,
            activation,
            loss_fn,
            loss_at,
            clip: a.clip,
            truncate,
            optim: Optim { kind: a.optim, lr, momentum: a.momentum },
            memory: MemoryOptions { budget: a.memory, checkpoints: a.checkpoints },
        };
        step.memory.check()?;
        let held_out = held_out_batches(&data, shape, a.eval_size);
        Ok(Setup {
            task,
            data,
            step,
            weights,
            iters: a.iters,
            log_every,
            eval_every: a.eval_every,
            held_out,
            seed: a.seed,
            baseline,
            notes,
        })
    }

    /// The generator of the training minibatches.
    pub fn batch_rng(&self) -> rand_chacha::ChaCha8Rng {
        rng(self.seed, BATCH_STREAM)
    }

    /// Training minibatch `i` and whether h0 is carried from the previous one.
    pub fn batch(&self, i: usize, r: &mut impl rand::Rng) -> Result<(Batch, bool)> {
        let s = self.step.shape;
        Ok(match &self.data {
            TaskData::Adding => (tasks::adding_batch(r, s.steps, s.batch), false),
            TaskData::Copy => (tasks::copy_batch(r, s.steps, s.batch), false),
            TaskData::Text { corpus, partition: Partition::Random } => {
                (corpus.random_batch(r, s.steps, s.batch), false)
            }
            TaskData::Text { corpus, partition: Partition::Sequential } => {
                let (b, restart) = corpus.sequential_batch(i, s.steps, s.batch)?;
                (b, !restart)
            }
        })
    }

    /// The metadata saved with the model.
    pub fn model_metadata(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        m.insert("activation".into(), self.step.activation.name().into());
        m.insert("task".into(), task_name(self.task).into());
        if let TaskData::Text { corpus, .. } = &self.data {
            m.insert("vocab".into(), corpus.vocab.iter().collect());
        }
        m
    }
}

pub fn task_name(t: Task) -> &'static str {
    t.name()
}

fn shown(path: &std::path::Path) -> String {
    one_line(&path.display().to_string())
}

/// Refuses (exit 2, with the figure) a run whose host memory (`memory::train_host_bytes`) is
/// more than the memory available, before the weights, the held-out set or the engine exist.
fn check_memory(
    a: &TrainConfig,
    shape: Shape,
    loss_fn: LossFn,
    data: &TaskData,
    held_out_batches: usize,
    log_every: usize,
) -> Result<()> {
    let sizes = TrainSizes {
        shape,
        labels: loss_fn == LossFn::Xent,
        // `Auto` may choose the GPU: planned for as such.
        gpu: a.device != TrainDevice::Cpu,
        adam: a.optim == OptimKind::Adam,
        held_out_batches: held_out_batches as u64,
        log_every: log_every as u64,
        sample: a.sample.unwrap_or(0) as u64,
        text_chars: match data {
            TaskData::Text { corpus, .. } => (corpus.train.len() + corpus.held_out.len()) as u64,
            _ => 0,
        },
        init_from_bytes: a.init_from.as_deref().and_then(|p| std::fs::metadata(p).ok()).map_or(0, |m| m.len()),
        checkpointed: a.memory,
    };
    // The hint names the largest part and what sizes it.
    let parts = memory::train_host_parts(&sizes);
    let largest = parts.iter().max_by(|x, y| x.bytes.total_cmp(&y.bytes)).expect("seven parts");
    memory::check_host(
        memory::train_host_bytes(&sizes),
        a.max_memory,
        &format!("this run ({shape}, `device` {})", a.device.name()),
        &format!(
            "the largest part is {}, {}: lower {}",
            largest.what,
            crate::format::human_bytes(largest.bytes as u64),
            largest.fields
        ),
    )
}

/// The numbers of a config, each checked against its own rule (the command line's parsers
/// apply the same ones, so there they never fire), and those the run keeps in f32 against
/// f32's range (`format::f32_parameter`).
fn check_numbers(a: &TrainConfig) -> Result<()> {
    for (field, v) in [
        ("hidden", a.hidden),
        ("batch", a.batch),
        ("iters", a.iters),
        ("log_every", a.log_every),
        ("eval_every", a.eval_every),
        ("eval_size", a.eval_size),
        ("steps", a.steps.unwrap_or(1)),
    ] {
        if v == 0 {
            return Err(invalid(format!("`{field}` must be at least 1")));
        }
    }
    let finite = |field: &str, v: f64, ok: bool, rule: &str| {
        if !(v.is_finite() && ok) {
            return Err(invalid(format!("`{field}` must be {rule}, got {}", number(v))));
        }
        f32_parameter(field, v)
    };
    finite("init_scale", a.init_scale, a.init_scale >= 0.0, "a finite number ≥ 0")?;
    finite("momentum", a.momentum, (0.0..1.0).contains(&a.momentum), "in [0, 1)")?;
    if let Some(lr) = a.lr {
        finite("lr", lr, lr > 0.0, "a finite number > 0")?;
    }
    if let Some(clip) = a.clip {
        finite("clip", clip, clip > 0.0, "a finite number > 0")?;
    }
    Ok(())
}

/// The starting weights and φ: from the `init_from` model (checked against the task's sizes
/// and `activation`) or the seeded initialisation.
fn initial_weights(a: &TrainConfig, model: Option<ModelFile>, d: usize, q: usize) -> Result<(Weights, Activation)> {
    let h = a.hidden;
    let (Some(m), Some(path)) = (model, &a.init_from) else {
        let act = a.activation.unwrap_or(Activation::Tanh);
        return Ok((Weights::init(d, h, q, a.init_recurrent, a.init_scale, a.seed), act));
    };
    let here = shown(path);
    if (m.input, m.hidden, m.output) != (d, h, q) {
        return Err(invalid(format!(
            "`init_from` {here}: the model has d={} h={} q={}, this run needs d={d} h={h} q={q} (`hidden`, `task`)",
            m.input, m.hidden, m.output
        )));
    }
    let from_file = match m.metadata.get("activation").map(String::as_str) {
        None => None,
        Some("identity") => Some(Activation::Identity),
        Some("tanh") => Some(Activation::Tanh),
        Some("relu") => Some(Activation::Relu),
        Some(other) => {
            return Err(invalid(format!("`init_from` {here}: unknown activation '{}' in its metadata", quote(other))));
        }
    };
    let act = match (a.activation, from_file) {
        (Some(flag), Some(file)) if flag != file => {
            return Err(invalid(format!(
                "`activation` {} contradicts `init_from` {here}, trained with {}",
                flag.name(),
                file.name()
            )));
        }
        (Some(act), _) | (None, Some(act)) => act,
        (None, None) => Activation::Tanh,
    };
    let [w_hx, w_hh, w_qh, b_h, b_q] = &m.tensors;
    Ok((Weights { w_hx: f32s(w_hx), w_hh: f32s(w_hh), w_qh: f32s(w_qh), b_h: f32s(b_h), b_q: f32s(b_q) }, act))
}

/// The held-out set, in minibatches of B (fixed seed; for text, the file's last tenth).
fn held_out_batches(data: &TaskData, s: Shape, size: usize) -> Vec<Batch> {
    let n = size.div_ceil(s.batch);
    let mut r = rng(HELD_OUT_SEED, 0);
    match data {
        TaskData::Adding => (0..n).map(|_| tasks::adding_batch(&mut r, s.steps, s.batch)).collect(),
        TaskData::Copy => (0..n).map(|_| tasks::copy_batch(&mut r, s.steps, s.batch)).collect(),
        TaskData::Text { corpus, .. } => {
            // Consecutive windows of the held-out text, wrapped round to fill whole batches.
            let starts = corpus.held_out_starts(s.steps, n * s.batch);
            (0..n)
                .map(|k| {
                    let batch: Vec<usize> = (0..s.batch).map(|b| starts[(k * s.batch + b) % starts.len()]).collect();
                    corpus.batch_at(&corpus.held_out, &batch, s.steps)
                })
                .collect()
        }
    }
}
