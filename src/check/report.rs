//! The report of one gradient check: what `check` returns, and what `bptt --json` prints
//! (every field is described in docs/report.md).

use std::collections::BTreeMap;

use serde::Serialize;

use super::Engines;
use crate::gpu::{AdapterSummary, TimingSource};
use crate::model::{Activation, BpttResult, LossAt, LossFn, Shape};
use crate::variant::memory::MemoryFigures;

/// Median times in milliseconds; `None` for what did not run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Timings {
    pub gpu_setup: Option<f64>,
    pub gpu_upload: Option<f64>,
    pub gpu_forward: Option<f64>,
    pub gpu_backward: Option<f64>,
    pub gpu_readback: Option<f64>,
    pub gpu_total: Option<f64>,
    pub gpu_total_min: Option<f64>,
    pub gpu_total_max: Option<f64>,
    pub cpu_total: Option<f64>,
    pub cpu_ref_total: Option<f64>,
}

/// Gradient clipping: θ and the global norm before and after.
#[derive(Clone, Debug, Serialize)]
pub struct ClipReport {
    pub theta: f64,
    pub norm_before: f64,
    pub norm_after: f64,
}

/// One radius of `--sweep-radius`.
#[derive(Clone, Debug, Serialize)]
pub struct SweepRow {
    pub radius: f64,
    pub loss: f64,
    pub grad_h_norm_first: f64,
    pub grad_h_norm_last: f64,
    pub reach_first: f64,
    pub reach_factor: Option<f64>,
    /// As `Report::pass`: null when nothing was compared and nothing failed.
    pub pass: Option<bool>,
    pub grad_h_norm: Vec<f64>,
    pub reach: Vec<f64>,
}

/// How a checkpointed run held its states (docs/report.md, "memory"): the path the result comes
/// from (or the first path that checkpointed), with every path that ran in `paths`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MemoryReport {
    #[serde(flatten)]
    pub figures: MemoryFigures,
    /// "gpu", "cpu" or "cpu-ref".
    pub path: &'static str,
    /// Why it checkpointed without being asked, if so.
    pub automatic: Option<String>,
    /// Time over the same path's full-storage run, when both ran (null otherwise).
    pub time_ratio: Option<f64>,
    pub paths: Vec<PathMemoryReport>,
}

/// One path's states: stored (`checkpoints` null) or checkpointed.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PathMemoryReport {
    pub path: &'static str,
    pub full_bytes: u64,
    pub peak_bytes: u64,
    pub checkpoints: Option<usize>,
    pub chunk_steps: Option<usize>,
    pub forward_steps: u64,
    pub forward_steps_optimal: u64,
    pub time_ratio: Option<f64>,
}

/// The carried-gradient cuts of a run, for the graph: c_t for t = 0..T−1 (0 where an edge
/// h_t → h_{t+1} carries no gradient back) and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Cuts {
    pub carry: Vec<f64>,
    pub reason: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct CheckReport {
    pub adapter: Option<AdapterSummary>,
    pub shape: Shape,
    pub activation: Activation,
    pub loss_fn: LossFn,
    pub loss_at: LossAt,
    pub bias: bool,
    pub seed: Option<u64>,
    /// h0 ~ N(0,1) (`--random-h0`) instead of zeros; false for a loaded problem.
    pub random_h0: bool,
    pub compute: Engines,
    /// What is computed beyond plain BPTT (truncation, segments, clipping), one line each.
    pub variant: Vec<String>,
    /// Spectral radius of w_hh (growth-rate power-iteration estimate).
    pub spectral_radius: f64,
    /// Largest singular value of w_hh (power iteration on w_hhᵀw_hh).
    pub largest_singular_value: f64,
    /// L, from the GPU when it ran, else from the CPU path that ran.
    pub loss: f64,
    /// Which path `loss`, `grad_norms` and `grad_h_norm` come from.
    pub result_from: &'static str,
    /// ‖·‖ of each gradient tensor.
    pub grad_norms: BTreeMap<&'static str, f64>,
    /// ‖∂L/∂h_t‖ for t = 1..T.
    pub grad_h_norm: Vec<f64>,
    /// The reach profile ‖∂L_T/∂h_t‖ for t = 1..T: the last step's loss alone.
    pub reach: Vec<f64>,
    /// Per-step factor of the reach profile going back in time (log-linear fit).
    pub reach_factor: Option<f64>,
    /// That factor in one sentence, next to the spectral radius.
    pub reach_summary: Option<String>,
    /// Gradient clipping, when asked for.
    pub clip: Option<ClipReport>,
    /// Checkpointing, when any path used it (null when every path stored every state).
    pub memory: Option<MemoryReport>,
    /// ‖gpu − ref‖/‖ref‖ per tensor (when both ran).
    pub rel_err: BTreeMap<&'static str, f64>,
    pub tolerance: f64,
    /// Whether two paths were compared (the GPU against the f64 reference).
    pub checked: bool,
    /// true: compared, every tensor within the tolerance and every result finite; false: a
    /// tensor over the tolerance or a non-finite result on any path (exit 1); null: nothing
    /// was compared (one path ran) and its result is finite.
    pub pass: Option<bool>,
    /// One line per problem found (non-finite results, failed checks).
    pub problems: Vec<String>,
    /// One line per thing the run left out that the arguments might suggest it did (e.g. the
    /// fast CPU path under --truncate, --segments or --clip).
    pub notes: Vec<String>,
    pub timings_ms: Timings,
    /// GPU schedule (`fused` or `stepwise`).
    pub schedule: Option<&'static str>,
    /// Median GPU time of each stage, in schedule order, where the adapter writes timestamps
    /// inside passes.
    pub gpu_stages_ms: Vec<(&'static str, f64)>,
    pub timing_source: Option<TimingSource>,
    /// Timed GPU runs behind each GPU median (after one warm-up run); 0 when no GPU ran.
    pub repeat: u32,
    /// Timed runs of the fast CPU path behind its median (after one warm-up run).
    pub cpu_repeat: Option<u32>,
    /// The instruction set the fast CPU path ran on (`avx512`, `avx2`, `portable`), and its
    /// threads.
    pub cpu_isa: Option<&'static str>,
    pub cpu_threads: Option<usize>,
    /// The fast CPU path's rate: `flops` over `cpu_total`.
    pub cpu_gflops: Option<f64>,
    /// With `cpu_peak`: this machine's measured f32 FMA peak on those threads and instruction
    /// set, and `cpu_gflops` as a fraction of it.
    pub cpu_peak_gflops: Option<f64>,
    pub cpu_peak_fraction: Option<f64>,
    pub dispatches: Option<usize>,
    pub gpu_memory_bytes: Option<u64>,
    pub flops: f64,
    pub gpu_gflops: Option<f64>,
    pub gpu_gbps: Option<f64>,
    pub gpu_us_per_step: Option<f64>,
    /// 2T empty dispatches (in passes of at most 4096): the latency floor of one dispatch per step each way.
    pub gpu_dispatch_floor_ms: Option<f64>,
    /// The GPU's forward + backward passes over that floor (1 would mean the kernels cost
    /// nothing beyond launching them).
    pub gpu_total_over_floor: Option<f64>,
    /// Fast CPU path's time over the GPU's (> 1: the GPU is faster).
    pub speedup_vs_cpu: Option<f64>,
    /// A sweep: one row per radius (the rest of the report is the first radius's).
    pub sweep: Vec<SweepRow>,
    /// The result the report describes (the GPU's when it ran, else the CPU path's); None for
    /// a sweep. Not part of the JSON.
    #[serde(skip)]
    pub result: Option<BpttResult>,
    /// The problem checked (None for a sweep), for `--save-problem`. Not part of the JSON.
    #[serde(skip)]
    pub problem: Option<crate::model::Problem>,
    /// ‖∂L_T/∂h_0‖ of the reach run, for the graph. Not part of the JSON.
    #[serde(skip)]
    pub reach_h0: Option<f64>,
    /// The cuts of `segments` or `truncate` random:P, for the graph. Not part of the JSON.
    #[serde(skip)]
    pub cuts: Option<Cuts>,
}

impl CheckReport {
    /// The largest relative error of any compared tensor (NaN when nothing was compared).
    pub fn worst_rel_err(&self) -> f64 {
        self.rel_err
            .values()
            .copied()
            .reduce(|a, b| if a.is_nan() || b.is_nan() { f64::NAN } else { a.max(b) })
            .unwrap_or(f64::NAN)
    }

    /// Whether the run failed a check or produced a non-finite result.
    pub fn failed(&self) -> bool {
        self.pass == Some(false)
    }

    /// Every sentence of the report (variant, notes, problems, the reach summary), for a
    /// caller that rewrites the field names in them (the command line names its flags).
    pub fn sentences_mut(&mut self) -> impl Iterator<Item = &mut String> {
        let automatic = self.memory.as_mut().and_then(|m| m.automatic.as_mut());
        self.variant
            .iter_mut()
            .chain(&mut self.notes)
            .chain(&mut self.problems)
            .chain(&mut self.reach_summary)
            .chain(automatic)
    }
}
