//! The gradient check's arguments (clap), and how they become the library's configs: the
//! problem (`problem_spec`, or a file) and the `CheckConfig`.

use std::path::PathBuf;

use bptt::error::quote;
use bptt::gpu::{AdapterRequest, BackendChoice, Origin};
use bptt::graph::GraphOf;
use bptt::{Activation, CheckConfig, Engines, LossAt, LossFn, ProblemSpec, Schedule, Shape, Truncation};
use clap::Parser;

use super::choice::choice;
use super::env::Env;

/// Backpropagation through time for a simple RNN on the GPU (wgpu + WGSL), checked against an
/// f64 CPU reference.
///
/// Model: a_t = x_t·w_hxᵀ + h_{t-1}·w_hhᵀ (+ b_h), h_t = φ(a_t), o_t = h_t·w_qhᵀ (+ b_q),
/// L = 1/(T·B) Σ_t Σ_b ℓ(o_tb, y_tb). A seeded random problem is built from the shape flags
/// (or read with --load), its loss and gradients are computed on the chosen paths, and a report
/// shows the gradients' sizes, the per-step norms ‖∂L/∂h_t‖, the GPU's agreement with the
/// reference, and the times.
///
/// Exit codes: 0 success (PASS, or "not checked" when only one path ran); 1 a failed check (a
/// tensor over the tolerance or a non-finite result) or a run-time failure; 2 bad arguments or
/// input, including output paths that cannot be written and shapes over the memory available
/// (checked before computing; BPTT_MAX_MEMORY=BYTES, e.g. 8G, sets the figure).
///
/// Environment: WGPU_BACKEND (backend names, comma-separated, read with --backend auto),
/// WGPU_ADAPTER_NAME, BPTT_RECURRENT_LAYOUT (ROWSxCHUNKS, with a trailing r for row walks), BPTT_PLOT_FONT (a .ttf/.otf file
/// for --plot), BPTT_MAX_MEMORY; an invalid value is an error (exit 2), never ignored.
#[derive(Parser, Debug, Clone)]
// allow_negative_numbers, and allow_hyphen_values on the float flags (for "-1e-3", "-inf",
// "-1,2", which clap does not take for numbers): `--clip -1` is a value to refuse with the
// flag's own rule, not an unknown argument.
#[command(
    name = "bptt",
    allow_negative_numbers = true,
    version,
    about,
    long_about,
    after_help = "Examples:\n  bptt --hidden 64 --steps 16 --batch 2\n  bptt --compute cpu-ref --hidden 32 --steps 64 --spectral-radius 1.2 --json\n  bptt --list-adapters\n\nTraining (a subcommand with its own flags): bptt train --help"
)]
pub struct Args {
    /// Hidden size h.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..), value_name = "H", conflicts_with = "load")]
    pub hidden: u32,
    /// Time steps T.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..), value_name = "T", conflicts_with = "load")]
    pub steps: u32,
    /// Batch size B.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..), value_name = "B", conflicts_with = "load")]
    pub batch: u32,
    /// Input size d.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..), value_name = "D", conflicts_with = "load")]
    pub input: u32,
    /// Output size q (the number of classes with --loss xent).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..), value_name = "Q", conflicts_with = "load")]
    pub output: u32,
    /// φ in h_t = φ(a_t) [default: identity].
    #[arg(long, value_parser = choice::<Activation>())]
    pub activation: Option<Activation>,
    /// ℓ: mse = ½‖o − y‖², xent = −log softmax(o) at the label [default: mse].
    #[arg(long, value_parser = choice::<LossFn>())]
    pub loss: Option<LossFn>,
    /// Which steps carry a loss term: all (the textbook's L) or only the last (sequence-to-one)
    /// [default: all].
    #[arg(long, value_parser = choice::<LossAt>())]
    pub loss_at: Option<LossAt>,
    /// Add the biases b_h and b_q.
    #[arg(long, conflicts_with = "load")]
    pub bias: bool,
    /// Seed of the random problem (ChaCha8; the same problem on every machine).
    #[arg(long, default_value_t = 0, conflicts_with = "load")]
    pub seed: u64,
    /// Rescale w_hh to this spectral radius: below 1 gradients shrink going back in time, above 1
    /// they grow.
    #[arg(long, value_name = "R", value_parser = parse_nonneg, allow_hyphen_values = true, conflicts_with = "load")]
    pub spectral_radius: Option<f64>,
    /// Draw h0 ~ N(0,1) instead of zeros.
    #[arg(long, conflicts_with = "load")]
    pub random_h0: bool,
    /// Which implementations run.
    #[arg(long, value_parser = choice::<Engines>(), default_value = "both")]
    pub compute: Engines,
    /// How the GPU work is split into dispatches: fused (time-parallel work as single matrix
    /// products, only the recurrences per step) or stepwise (the textbook, one equation per
    /// dispatch per step).
    #[arg(long, value_parser = choice::<Schedule>(), default_value = "fused")]
    pub schedule: Schedule,
    /// Largest relative error ‖gpu − ref‖/‖ref‖ a tensor may have to PASS.
    #[arg(long, default_value_t = 1e-4, value_parser = parse_positive, allow_hyphen_values = true)]
    pub tolerance: f64,
    /// Timed runs after a warm-up; the median is reported [default: enough to fill about 2 s,
    /// between 1 and 20].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub repeat: Option<u32>,
    #[command(flatten)]
    pub gpu: GpuArgs,
    /// Print every adapter wgpu can see, then exit.
    #[arg(long)]
    pub list_adapters: bool,
    /// Truncated BPTT: K stops the backward recursion K steps back from each loss term (loss
    /// term s reaches h_t only if s − t < K); random:P cuts the carried gradient at each step
    /// with probability P and scales it by 1/(1−P) otherwise (Tallec & Ollivier 2017: unbiased).
    #[arg(long, value_name = "K|random:P", value_parser = parse_truncate, allow_hyphen_values = true)]
    pub truncate: Option<TruncateArg>,
    /// Seed of the random cuts of --truncate random:P.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub truncate_seed: u64,
    /// Split the sequence into N consecutive segments: h is carried across the boundaries, the
    /// gradient is cut there ("detach"), and the GPU holds one segment at a time.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..), conflicts_with = "truncate")]
    pub segments: Option<u32>,
    /// Clip the parameter gradients together to global norm θ: g ← min(1, θ/‖g‖)·g. Not with
    /// --segments (refused): the GPU clips within one run, and with segments the whole
    /// gradient exists only after the last segment's run.
    #[arg(long, value_name = "θ", value_parser = parse_positive, allow_hyphen_values = true, conflicts_with = "segments")]
    pub clip: Option<f64>,
    /// Exact BPTT within BYTES (e.g. 64M, 2G) for everything that grows with T, on each path:
    /// only some states are kept (binomial checkpointing) and the others recomputed from them,
    /// with the fewest forward steps possible. A budget that holds every state changes nothing.
    #[arg(long, value_name = "BYTES", value_parser = parse_memory, allow_hyphen_values = true)]
    pub memory: Option<u64>,
    /// Checkpointing with C states stored at once (h0's included), each the start of a window of
    /// at most T/C steps that the path picks; with --memory both must agree.
    #[arg(long, value_name = "C", allow_hyphen_values = true, value_parser = parse_count)]
    pub checkpoints: Option<usize>,
    /// Draw ‖∂L/∂h_t‖ (solid) and the reach profile ‖∂L_T/∂h_t‖ (dashed) against t on a log axis
    /// (.svg or .png).
    #[arg(long, value_name = "FILE", value_parser = parse_plot_path)]
    pub plot: Option<PathBuf>,
    /// Draw the unrolled computation graph (x_t, h_t, o_t, ℓ_t, L and the parameters), each h_t
    /// and each edge h_{t−1} → h_t coloured by ‖∂L/∂h_t‖ on a log scale (.svg, .png, or .dot
    /// for Graphviz). Above 8 steps, the first and last 3 are drawn with an ellipsis between.
    #[arg(long, value_name = "FILE", value_parser = parse_graph_path, conflicts_with = "sweep_radius")]
    pub graph: Option<PathBuf>,
    /// Which gradient --graph colours the h chain by: grad-h-norm (‖∂L/∂h_t‖, the whole loss's;
    /// the default with a loss at every step) or reach (‖∂L_T/∂h_t‖, the last step's loss
    /// alone: what vanishes or explodes; the default with --loss-at last).
    #[arg(long, value_parser = choice::<GraphOf>(), requires = "graph")]
    pub graph_of: Option<GraphOf>,
    /// Run the same problem with w_hh rescaled to each spectral radius, and overlay the
    /// profiles in one table (and one plot with --plot).
    #[arg(long, value_name = "R,R,...", value_delimiter = ',', value_parser = parse_nonneg, allow_hyphen_values = true, conflicts_with_all = ["load", "spectral_radius", "save"])]
    pub sweep_radius: Option<Vec<f64>>,
    /// Measure this machine's f32 FMA peak (a probe of about 50 ms, after the timed runs) and
    /// show the fast CPU path's GFLOP/s as a fraction of it.
    #[arg(long)]
    pub cpu_peak: bool,
    /// Print one JSON object instead of the report.
    #[arg(long)]
    pub json: bool,
    /// Print ‖∂L/∂h_t‖ for every step.
    #[arg(long, short)]
    pub verbose: bool,
    /// Take the problem from a safetensors file (w_hx, w_hh, w_qh, x, optional h0, b_h, b_q, and
    /// y or labels) instead of random numbers; its metadata may set loss and activation.
    #[arg(long, value_name = "FILE")]
    pub load: Option<PathBuf>,
    /// Write the loss and gradients (F32 safetensors) of the GPU run, or of the path --compute
    /// chose; after the report, unless the run failed (docs/report.md). Written atomically.
    #[arg(long, value_name = "FILE")]
    pub save: Option<PathBuf>,
    /// Write the run's problem (w_hx, w_hh, w_qh, x, h0, y or labels, and the biases; F64) with
    /// its loss, activation and loss_at in the metadata, in the format --load reads: to take
    /// it to NumPy or PyTorch and back. After the report, like --save.
    #[arg(long, value_name = "FILE", conflicts_with = "sweep_radius")]
    pub save_problem: Option<PathBuf>,
    /// With --save, also write the states h (T×B×h) and o (T×B×q).
    #[arg(long, requires = "save")]
    pub save_states: bool,
}

/// `--plot`'s value (also `bptt train --plot`): the format comes from the extension.
pub fn parse_plot_path(s: &str) -> Result<PathBuf, String> {
    let p = PathBuf::from(s);
    match p.extension().and_then(|e| e.to_str()).map(str::to_lowercase).as_deref() {
        Some("svg") | Some("png") => Ok(p),
        _ => Err(format!("the plot is written as .svg or .png, not '{s}'")),
    }
}

fn parse_graph_path(s: &str) -> Result<PathBuf, String> {
    let p = PathBuf::from(s);
    bptt::graph::GraphFormat::of(&p).map(|_| p)
}

/// Which GPU adapter to use: the flags the gradient check and `bptt train` share.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct GpuArgs {
    /// Graphics API (also read from WGPU_BACKEND when auto).
    #[arg(long, value_parser = choice::<BackendChoice>(), default_value = "auto")]
    pub backend: BackendChoice,
    /// Use the adapter whose name contains this text (also read from WGPU_ADAPTER_NAME).
    #[arg(long, value_name = "SUBSTRING")]
    pub adapter: Option<String>,
    /// Use a software (CPU-type) adapter only, such as Mesa's lavapipe.
    #[arg(long)]
    pub software: bool,
}

impl GpuArgs {
    /// The adapter request: the flags, and wgpu's environment variables where no flag is given
    /// (`WGPU_BACKEND` with `--backend auto`, `WGPU_ADAPTER_NAME` without `--adapter`).
    pub fn request(&self, env: &Env) -> AdapterRequest {
        let backend_list = match self.backend {
            BackendChoice::Auto => env.wgpu_backend.clone().map(|v| (v, Origin::Env("WGPU_BACKEND".into()))),
            _ => None,
        };
        let name = match (&self.adapter, &env.wgpu_adapter_name) {
            (Some(n), _) => Some((n.clone(), Origin::Field)),
            (None, Some(n)) => Some((n.clone(), Origin::Env("WGPU_ADAPTER_NAME".into()))),
            (None, None) => None,
        };
        AdapterRequest {
            backend: self.backend,
            backend_list,
            name,
            software: self.software,
            recurrent_layout: env.recurrent_layout,
            max_binding: None,
        }
    }
}

/// `--truncate`'s value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TruncateArg {
    Steps(usize),
    Random(f64),
}

pub fn parse_truncate(s: &str) -> Result<TruncateArg, String> {
    if let Some(p) = s.strip_prefix("random:") {
        let p: f64 = p.parse().map_err(|_| format!("'{}' is not a probability", quote(p)))?;
        return if (0.0..1.0).contains(&p) {
            Ok(TruncateArg::Random(p))
        } else {
            Err(format!("P must be in [0, 1), got {}", bptt::format::number(p)))
        };
    }
    match s.parse::<usize>() {
        Ok(k) if k >= 1 => Ok(TruncateArg::Steps(k)),
        _ => Err(format!("expected a number of steps K ≥ 1 or random:P, got '{}'", quote(s))),
    }
}

/// A float flag's value; flags take hyphen values, so `--clip --json` lands here: say so.
pub fn parse_number(s: &str) -> Result<f64, String> {
    if s.starts_with("--") {
        return Err(format!("a number is needed, not the flag '{}'", quote(s)));
    }
    s.parse().map_err(|_| format!("'{}' is not a number", quote(s)))
}

/// A number of bytes, plain or with a K, M, G or T suffix (`--memory`; 0 is refused by the
/// library with its reason).
pub fn parse_memory(s: &str) -> Result<u64, String> {
    if s.starts_with("--") {
        return Err(format!("a number of bytes is needed, not the flag '{s}'"));
    }
    bptt::memory::parse_bytes(s).ok_or_else(|| format!("'{s}' is not a number of bytes (e.g. 64M, 2G, 500000)"))
}

/// A whole number ≥ 0 (0 is refused by the library with its reason).
pub fn parse_count(s: &str) -> Result<usize, String> {
    if s.starts_with("--") {
        return Err(format!("a number is needed, not the flag '{s}'"));
    }
    s.parse().map_err(|_| format!("'{s}' is not a whole number ≥ 0"))
}

/// A finite number ≥ 0 (a spectral radius, an initial scale).
pub fn parse_nonneg(s: &str) -> Result<f64, String> {
    let r = parse_number(s)?;
    if r.is_finite() && r >= 0.0 { Ok(r) } else { Err(format!("must be a finite number ≥ 0, got {}", quote(s))) }
}

/// A finite number > 0 (a tolerance, a clipping norm, a learning rate).
pub fn parse_positive(s: &str) -> Result<f64, String> {
    let r = parse_number(s)?;
    if r.is_finite() && r > 0.0 { Ok(r) } else { Err(format!("must be a finite number > 0, got {}", quote(s))) }
}

/// What the command line asks for: the gradient check (the flags alone, as always) or
/// training (`bptt train ...`, with `TrainArgs`).
#[derive(Debug, Clone)]
pub enum Command {
    Check(Box<Args>),
    Train(Box<super::train_args::TrainArgs>),
}

/// Parses the whole command line (program name first). `train` as the first argument selects
/// the training subcommand and its own flags; anything else is the gradient check's flags, so
/// the flag-only form keeps working unchanged.
pub fn parse_command(argv: Vec<std::ffi::OsString>) -> Result<Command, clap::Error> {
    if argv.get(1).is_some_and(|a| a == "train") {
        let rest = std::iter::once(std::ffi::OsString::from("bptt train")).chain(argv.into_iter().skip(2));
        return super::train_args::TrainArgs::try_parse_from(rest).map(|a| Command::Train(Box::new(a)));
    }
    Args::try_parse_from(argv).map(|a| Command::Check(Box::new(a)))
}

/// A clap error as one line: its reason (all of it, e.g. the missing argument's name), without
/// the usage block, and where to read more.
pub fn one_line_error(e: &clap::Error, command: &str) -> String {
    let msg = e.to_string();
    let reason: Vec<&str> = msg
        .lines()
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    format!("{} (see {command} --help)", cut_quoted(&reason.join(" ")))
}

/// clap's message with each value it echoes in single quotes cut by the one echo rule
/// (`error::quote`: 80 characters, control characters escaped); a flag's value of a megabyte
/// must not become a megabyte of error line.
fn cut_quoted(msg: &str) -> String {
    let parts: Vec<&str> = msg.split('\'').collect();
    // Odd-numbered parts are inside quotes when the quotes pair up.
    if parts.len().is_multiple_of(2) {
        return msg.to_string();
    }
    parts
        .iter()
        .enumerate()
        .map(|(i, p)| if i % 2 == 1 { quote(p) } else { p.to_string() })
        .collect::<Vec<_>>()
        .join("'")
}

impl Args {
    /// The shape the flags give.
    pub fn shape(&self) -> bptt::Result<Shape> {
        Shape::new(
            self.steps as usize,
            self.batch as usize,
            self.input as usize,
            self.hidden as usize,
            self.output as usize,
        )
    }

    /// The random problem the flags describe (without `--load`).
    pub fn problem_spec(&self) -> bptt::Result<ProblemSpec> {
        let mut spec = ProblemSpec::new(self.shape()?);
        spec.activation = self.activation.unwrap_or_default();
        spec.loss = self.loss.unwrap_or_default();
        spec.loss_at = self.loss_at.unwrap_or_default();
        spec.bias = self.bias;
        spec.seed = self.seed;
        spec.spectral_radius = self.spectral_radius;
        spec.random_h0 = self.random_h0;
        Ok(spec)
    }

    /// The library's config for these flags and this environment.
    pub fn config(&self, env: &Env) -> CheckConfig {
        CheckConfig {
            compute: self.compute,
            schedule: self.schedule,
            tolerance: self.tolerance,
            repeat: self.repeat,
            adapter: self.gpu.request(env),
            truncate: self.truncate.map(|t| match t {
                TruncateArg::Steps(k) => Truncation::Regular(k),
                TruncateArg::Random(p) => Truncation::Random { p, seed: self.truncate_seed },
            }),
            segments: self.segments.map(|n| n as usize),
            clip: self.clip,
            keep_states: self.save_states,
            max_memory: env.max_memory,
            memory: self.memory,
            checkpoints: self.checkpoints,
            cpu_peak: self.cpu_peak,
        }
    }
}
