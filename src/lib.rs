//! bptt: backpropagation through time for a simple RNN, on any GPU through wgpu, checked
//! against an f64 CPU reference.
//!
//! The model (docs/model.md): a_t = x_t·w_hxᵀ + h_{t-1}·w_hhᵀ (+ b_h), h_t = φ(a_t),
//! o_t = h_t·w_qhᵀ (+ b_q), L = 1/(T·B) Σ_t Σ_b ℓ(o_tb, y_tb).
//!
//! The library in one screen (docs/library.md):
//!
//! - [`check()`] / [`check_with`] / [`check_random`]: the gradient check of one [`Problem`] as
//!   a [`CheckConfig`] says (which paths run, the schedule, the tolerance, truncation,
//!   segments, clipping) → a [`CheckReport`], the JSON report of `bptt --json`, with the result
//!   it describes; [`sweep`] runs one problem at several spectral radii.
//! - [`train()`] / [`train_with`]: a [`TrainConfig`] (the task, the model, the optimiser) → a
//!   [`Trained`]: the report with the curve and the held-out metrics, and the weights.
//! - [`compute`]: one forward + backward pass on a [`Device`] → a [`BpttResult`].
//! - [`random_problem`] draws a seeded problem from a [`ProblemSpec`]; [`io`] reads and writes
//!   problems, results and models as safetensors files.
//! - [`layer::Layer`]: the RNN as one layer of a larger model (no output, no loss): the
//!   forward states, and from upstream gradients ∂L/∂x_t, ∂L/∂h_0 and the parameter gradients.
//! - [`plot`] and [`graph`] draw a finished report: `plot::write_check_plot`,
//!   `plot::write_train_plot`, `graph::write_graph`.
//!
//! ```
//! use std::path::Path;
//! # fn main() -> bptt::Result<()> {
//! let problem = bptt::io::load_problem(Path::new("tests/fixtures/tanh_xent_bias_h0.safetensors"), None, None)?;
//! let config = bptt::CheckConfig { compute: bptt::Engines::Reference, ..Default::default() };
//! let report = bptt::check(&problem, &config)?;
//! assert!(report.loss.is_finite() && report.pass.is_none()); // one path: nothing compared
//! let fast = bptt::compute(&problem, &bptt::Device::Cpu)?;
//! let reference = report.result.as_ref().unwrap();
//! assert!(bptt::model::rel_err(&fast.grad_w_hh, &reference.grad_w_hh) < 1e-4);
//! # Ok(())
//! # }
//! ```
//!
//! Layers, each using only those above it in this list: the model (`error`, `format`,
//! `model`, `linalg`, `flops`, `problem`, `progress`) → the engines (`cpu`, `gpu`, `variant`,
//! `clip`, `diagnostics`, `memory`, `layer`) → files (`io`) → the procedures (`check`, `train`) → the
//! figures (`plot`, `graph`). The command line (`src/main.rs`, `src/cli/`) is not part of the
//! library: it turns its flags and environment into these configs, and renders the reports.

mod api;
pub mod check;
pub mod checkpoint;
pub mod clip;
pub mod cpu;
pub mod diagnostics;
pub mod error;
pub mod flops;
pub mod format;
pub mod gpu;
pub mod graph;
pub mod io;
pub mod layer;
pub mod linalg;
pub mod memory;
pub mod model;
pub mod plot;
pub mod problem;
pub mod progress;
pub mod train;
pub mod variant;

pub use api::{Device, compute};
pub use check::{CheckConfig, CheckReport, Engines, check, check_random, check_with, sweep, sweep_with};
pub use error::{Error, Result};
pub use gpu::{AdapterRequest, Schedule};
pub use model::{Activation, BpttResult, Choice, LossAt, LossFn, Params, Problem, Shape, Targets};
pub use problem::{ProblemSpec, random_problem};
pub use progress::{Progress, Quiet};
pub use train::{
    InitRecurrent, OptimKind, Partition, Task, TrainConfig, TrainDevice, TrainReport, Trained, Weights, train,
    train_with,
};
pub use variant::truncation::Truncation;
