//! What a training run is asked to do, as plain data: `TrainConfig`, with the defaults of
//! `bptt train` (docs/training.md). Every combination is checked when the run starts
//! (`setup`), with errors that name the field.

use std::path::PathBuf;

use super::optim::OptimKind;
use super::weights::InitRecurrent;
use crate::gpu::AdapterRequest;
use crate::model::Activation;
use crate::variant::truncation::Truncation;

/// What to learn.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// The adding problem: the sum of two marked values, MSE at the last step (baseline 1/6).
    #[default]
    Adding,
    /// The copy task: recall 10 symbols after a delay (cross-entropy every step).
    Copy,
    /// A character-level language model of a text file (cross-entropy every step).
    Text,
}

crate::choice!(Task {
    Adding => "adding": "the adding problem: the sum of two marked values, MSE at the last step (baseline 1/6)",
    Copy => "copy": "the copy task: recall 10 symbols after T = steps − 20 steps (cross-entropy every step)",
    Text => "text": "a character-level language model of `text` FILE (cross-entropy every step)",
});

/// Where the training runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TrainDevice {
    /// The GPU when there is a hardware one; the fast CPU path when the only adapters are
    /// software ones (or there is none), with a note saying so. An adapter asked for by name,
    /// backend or `software` counts as asking for the GPU.
    #[default]
    Auto,
    /// The GPU: weights and optimiser state stay resident, the update is a WGSL kernel.
    Gpu,
    /// The fast f32 CPU path.
    Cpu,
}

crate::choice!(TrainDevice {
    Auto => "auto": "the GPU when there is a hardware one, else the fast CPU path (a software adapter such as lavapipe trains far slower than the CPU path)",
    Gpu => "gpu": "the GPU: weights and optimiser state stay resident, the update is a WGSL kernel",
    Cpu => "cpu": "the fast f32 CPU path",
});

/// How the text task cuts minibatches out of the file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Partition {
    /// Each sequence starts at a random offset; h starts at zero.
    #[default]
    Random,
    /// B contiguous streams read T characters at a time; h is carried across minibatches with
    /// the gradient cut at the boundary.
    Sequential,
}

crate::choice!(Partition {
    Random => "random": "each sequence starts at a random offset; h starts at zero",
    Sequential => "sequential": "B contiguous streams read T characters at a time; h is carried across minibatches with the gradient cut at the boundary",
});

/// A training run. `Default` is `bptt train` without flags: the adding problem, h = 128,
/// B = 32, 1000 Adam iterations on the GPU (or the fast CPU path without a hardware GPU).
#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    pub task: Task,
    /// The text file of `Task::Text` (UTF-8).
    pub text: Option<PathBuf>,
    /// Sequence length T (for copy, T + 20: the delay is steps − 20); None: 50 adding, 30
    /// copy, 64 text.
    pub steps: Option<usize>,
    /// Hidden size h.
    pub hidden: usize,
    /// Minibatch size B.
    pub batch: usize,
    /// Training iterations (minibatches).
    pub iters: usize,
    /// φ; None: tanh, or the activation saved with `init_from`.
    pub activation: Option<Activation>,
    /// How w_hh starts: normal N(0, s²/h), identity s·I (the IRNN), orthogonal s·Q.
    pub init_recurrent: InitRecurrent,
    /// s of `init_recurrent`.
    pub init_scale: f64,
    pub optim: OptimKind,
    /// Learning rate η; None: 1e-3 for Adam, 1e-2 for SGD.
    pub lr: Option<f64>,
    /// SGD's momentum μ (0 is plain SGD).
    pub momentum: f64,
    /// Clip the parameter gradients together to global norm θ before each update.
    pub clip: Option<f64>,
    /// Truncated BPTT: `Regular(K)`, loss term s reaches h_t only if s − t < K; `Random { p,
    /// seed }`, the carried gradient cut with probability p at each step and scaled by
    /// 1/(1 − p) otherwise, with fresh cuts every iteration from ChaCha8 seeded with `seed`
    /// on the stream of the run's `seed` (docs/training.md).
    pub truncate: Option<Truncation>,
    pub device: TrainDevice,
    /// The adapter, when `device` is the GPU.
    pub adapter: AdapterRequest,
    /// Seed of the initial weights and the training minibatches.
    pub seed: u64,
    /// Read the training loss back (and check it) every N iterations.
    pub log_every: usize,
    /// Evaluate the held-out set every N iterations (and after the last).
    pub eval_every: usize,
    /// Held-out sequences (rounded up to whole minibatches of B).
    pub eval_size: usize,
    /// The text task's partitioning; None: random.
    pub partition: Option<Partition>,
    /// The text task: after training, sample this many characters from the model.
    pub sample: Option<usize>,
    /// The text the sample starts from; None: the file's first character.
    pub prompt: Option<String>,
    /// Start from the weights in this model file instead of a random initialisation.
    pub init_from: Option<PathBuf>,
    /// The host memory the run may plan for; None: what the system has available.
    pub max_memory: Option<u64>,
    /// Each iteration's BPTT exact within this many bytes for everything that grows with T
    /// (checkpointing; docs/gradients.md, "Long sequences in bounded memory").
    pub memory: Option<u64>,
    /// Checkpoint with this many states held at once (h0's included).
    pub checkpoints: Option<usize>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            task: Task::Adding,
            text: None,
            steps: None,
            hidden: 128,
            batch: 32,
            iters: 1000,
            activation: None,
            init_recurrent: InitRecurrent::Normal,
            init_scale: 1.0,
            optim: OptimKind::Adam,
            lr: None,
            momentum: 0.9,
            clip: None,
            truncate: None,
            device: TrainDevice::Auto,
            adapter: AdapterRequest::default(),
            seed: 0,
            log_every: 10,
            eval_every: 100,
            eval_size: 512,
            partition: None,
            sample: None,
            prompt: None,
            init_from: None,
            max_memory: None,
            memory: None,
            checkpoints: None,
        }
    }
}
