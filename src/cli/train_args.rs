//! `bptt train`'s arguments (clap), and how they become the library's `TrainConfig`.
//! Combinations clap cannot check are checked by the library when the run starts.

use std::path::PathBuf;

use bptt::{Activation, InitRecurrent, OptimKind, Partition, Task, TrainConfig, TrainDevice, Truncation};
use clap::Parser;

use bptt::error::quote;

use super::args::{
    GpuArgs, TruncateArg, parse_count, parse_memory, parse_nonneg, parse_number, parse_plot_path, parse_positive,
    parse_truncate,
};
use super::choice::choice;
use super::env::Env;

/// Train a simple RNN with BPTT on a generated task (adding, copy) or a text file, on the GPU
/// or the fast CPU path, and report the training curve and the held-out metrics.
///
/// Model: a_t = x_t·w_hxᵀ + h_{t-1}·w_hhᵀ + b_h, h_t = φ(a_t), o_t = h_t·w_qhᵀ + b_q. The held-out
/// set is fixed (the same for every --seed). Exit codes: 0 success; 1 a run-time failure
/// (no adapter, a diverged run, a file that could not be written); 2 bad arguments or input,
/// including outputs that cannot be written or would replace an input, and runs over the
/// memory available or the GPU's limits (checked before training; BPTT_MAX_MEMORY=BYTES, e.g.
/// 8G, sets the figure).
///
/// Environment: WGPU_BACKEND, WGPU_ADAPTER_NAME, BPTT_PLOT_FONT (a .ttf/.otf file for --plot),
/// BPTT_MAX_MEMORY; an invalid value is an error (exit 2), never ignored.
#[derive(Parser, Debug, Clone)]
// Negative numbers are values, as in the gradient check: `--seed -1` is refused by the flag's
// own rule, not as an unknown argument.
#[command(
    name = "bptt train",
    allow_negative_numbers = true,
    version,
    about,
    long_about,
    after_help = "Examples:\n  bptt train --task adding --steps 50 --activation relu --init-recurrent identity --compute cpu\n  \
                  bptt train --task copy --steps 30 --iters 2000 --clip 1\n  \
                  bptt train --task text --text book.txt --sample 200 --prompt 'The '"
)]
pub struct TrainArgs {
    /// The task.
    #[arg(long, value_parser = choice::<Task>(), default_value = "adding")]
    pub task: Task,
    /// The text file of --task text (UTF-8).
    #[arg(long, value_name = "FILE")]
    pub text: Option<PathBuf>,
    /// Sequence length T (for copy, T + 20: the delay is steps − 20) [default: 50 adding, 30
    /// copy, 64 text].
    #[arg(long, value_name = "T", value_parser = clap::value_parser!(u32).range(1..))]
    pub steps: Option<u32>,
    /// Hidden size h.
    #[arg(long, default_value_t = 128, value_name = "H", value_parser = clap::value_parser!(u32).range(1..))]
    pub hidden: u32,
    /// Minibatch size B.
    #[arg(long, default_value_t = 32, value_name = "B", value_parser = clap::value_parser!(u32).range(1..))]
    pub batch: u32,
    /// Training iterations (minibatches).
    #[arg(long, default_value_t = 1000, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub iters: u32,
    /// φ [default: tanh].
    #[arg(long, value_parser = choice::<Activation>())]
    pub activation: Option<Activation>,
    /// How w_hh starts: normal N(0, s²/h), identity s·I (the IRNN), orthogonal s·Q.
    #[arg(long, value_parser = choice::<InitRecurrent>(), default_value = "normal")]
    pub init_recurrent: InitRecurrent,
    /// s of --init-recurrent.
    #[arg(long, default_value_t = 1.0, value_name = "S", value_parser = parse_nonneg, allow_hyphen_values = true)]
    pub init_scale: f64,
    /// The optimiser.
    #[arg(long, value_parser = choice::<OptimKind>(), default_value = "adam")]
    pub optim: OptimKind,
    /// Learning rate η [default: 1e-3 adam, 1e-2 sgd].
    #[arg(long, value_name = "η", value_parser = parse_positive, allow_hyphen_values = true)]
    pub lr: Option<f64>,
    /// SGD's momentum μ (0 is plain SGD).
    #[arg(long, default_value_t = 0.9, value_name = "μ", value_parser = parse_momentum, allow_hyphen_values = true)]
    pub momentum: f64,
    /// Clip the parameter gradients together to global norm θ before each update.
    #[arg(long, value_name = "θ", value_parser = parse_positive, allow_hyphen_values = true)]
    pub clip: Option<f64>,
    /// Truncated BPTT: K stops the backward recursion K steps back from each loss term (loss
    /// term s reaches h_t only if s − t < K); random:P cuts the carried gradient at each step
    /// with probability P and scales it by 1/(1−P) otherwise, with fresh cuts every iteration
    /// (Tallec & Ollivier 2017). Every task, on both paths.
    #[arg(long, value_name = "K|random:P", value_parser = parse_truncate, allow_hyphen_values = true)]
    pub truncate: Option<TruncateArg>,
    /// Seed of the random cuts of --truncate random:P (drawn on the stream of --seed).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub truncate_seed: u64,
    /// Where to train [auto: the GPU when there is a hardware one, else the fast CPU path,
    /// with a note].
    #[arg(long, value_parser = choice::<TrainDevice>(), default_value = "auto")]
    pub compute: TrainDevice,
    /// Seed of the initial weights and the training minibatches.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Read the training loss back (and check it) every N iterations.
    #[arg(long, default_value_t = 10, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub log_every: u32,
    /// Evaluate the held-out set every N iterations (and after the last).
    #[arg(long, default_value_t = 100, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub eval_every: u32,
    /// Held-out sequences (rounded up to whole minibatches of B).
    #[arg(long, default_value_t = 512, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub eval_size: u32,
    /// --task text: random or sequential partitioning of the file into minibatches.
    #[arg(long, value_parser = choice::<Partition>())]
    pub partition: Option<Partition>,
    /// --task text: after training, print N characters sampled from the model.
    #[arg(long, value_name = "N")]
    pub sample: Option<u32>,
    /// --task text: the text the sample starts from [default: the file's first character].
    #[arg(long, value_name = "STR", requires = "sample")]
    pub prompt: Option<String>,
    /// Start from the weights in this file (written by --save-model) instead of a random init.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["init_recurrent", "init_scale"])]
    pub init_from: Option<PathBuf>,
    /// Each iteration's BPTT exact within BYTES (e.g. 64M) for everything that grows with T:
    /// only some states are kept (binomial checkpointing) and the others recomputed.
    #[arg(long, value_name = "BYTES", value_parser = parse_memory, allow_hyphen_values = true)]
    pub memory: Option<u64>,
    /// Checkpointing with C states stored at once (h0's included), each the start of a window of
    /// at most T/C steps that the path picks; with --memory both must agree.
    #[arg(long, value_name = "C", allow_hyphen_values = true, value_parser = parse_count)]
    pub checkpoints: Option<usize>,
    /// Write the trained weights (F32 safetensors: w_hx w_hh w_qh b_h b_q), atomically, only
    /// after a run that did not diverge.
    #[arg(long, value_name = "FILE")]
    pub save_model: Option<PathBuf>,
    /// Draw the training and held-out loss against the iteration, with the baseline (.svg or .png).
    #[arg(long, value_name = "FILE", value_parser = parse_plot_path)]
    pub plot: Option<PathBuf>,
    /// Print one JSON object (the curve, the final metrics, the throughput) instead of the summary.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub gpu: GpuArgs,
}

fn parse_momentum(s: &str) -> Result<f64, String> {
    let r = parse_number(s)?;
    if (0.0..1.0).contains(&r) { Ok(r) } else { Err(format!("must be in [0, 1), got {}", quote(s))) }
}

impl TrainArgs {
    /// The library's config for these flags and this environment.
    pub fn config(&self, env: &Env) -> TrainConfig {
        TrainConfig {
            task: self.task,
            text: self.text.clone(),
            steps: self.steps.map(|s| s as usize),
            hidden: self.hidden as usize,
            batch: self.batch as usize,
            iters: self.iters as usize,
            activation: self.activation,
            init_recurrent: self.init_recurrent,
            init_scale: self.init_scale,
            optim: self.optim,
            lr: self.lr,
            momentum: self.momentum,
            clip: self.clip,
            truncate: self.truncate.map(|t| match t {
                TruncateArg::Steps(k) => Truncation::Regular(k),
                TruncateArg::Random(p) => Truncation::Random { p, seed: self.truncate_seed },
            }),
            device: self.compute,
            adapter: self.gpu.request(env),
            seed: self.seed,
            log_every: self.log_every as usize,
            eval_every: self.eval_every as usize,
            eval_size: self.eval_size as usize,
            partition: self.partition,
            sample: self.sample.map(|n| n as usize),
            prompt: self.prompt.clone(),
            init_from: self.init_from.clone(),
            max_memory: env.max_memory,
            memory: self.memory,
            checkpoints: self.checkpoints,
        }
    }
}
