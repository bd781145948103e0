//! bptt: backpropagation through time for a simple RNN, on any GPU through wgpu, checked
//! against an f64 CPU reference.
//!
//! The model (README, "The model"): a_t = x_t·w_hxᵀ + h_{t-1}·w_hhᵀ (+ b_h), h_t = φ(a_t),
//! o_t = h_t·w_qhᵀ (+ b_q), L = 1/(T·B) Σ_t Σ_b ℓ(o_tb, y_tb).
//!
//! Load a problem, run it on the GPU, check it, save the result:
//!
//! ```
//! use std::path::Path;
//! # fn main() -> bptt::Result<()> {
//! let problem = bptt::io::load_problem(Path::new("tests/fixtures/tanh_xent_bias_h0.safetensors"), None, None)?;
//! let grads = bptt::compute(&problem, &bptt::Device::gpu())?;
//! let reference = bptt::compute(&problem, &bptt::Device::CpuRef)?;
//! assert!(bptt::model::rel_err(&grads.grad_w_hh, &reference.grad_w_hh) < 1e-4);
//! let out = std::env::temp_dir().join("bptt-doc-example.safetensors");
//! bptt::io::save_grads(&out, &grads, &problem.shape, false, &Default::default())?;
//! # std::fs::remove_file(out).ok();
//! # Ok(())
//! # }
//! ```
//!
//! `examples/from_rust.rs` is the same with a random problem, as a program of its own (README,
//! "From Rust"). The modules: `model` (the types), `problem` (seeded random problems), `io`
//! (safetensors), `cpu` (the f64 reference and the fast f32 path), `gpu` (wgpu and the WGSL
//! kernels), `variant` (truncation, segments, clipping on every path), `diagnostics` (the reach
//! profile), `report`, `plot` and `graph` (the command's outputs).

mod api;
pub mod cli;
pub mod clip;
pub mod cpu;
pub mod diagnostics;
pub mod error;
pub mod flops;
pub mod gpu;
pub mod graph;
pub mod io;
pub mod linalg;
pub mod memory;
pub mod model;
pub mod plot;
pub mod problem;
pub mod report;
pub mod run;
pub mod train;
pub mod variant;

pub use api::{Device, compute};
pub use error::{Error, Result};
pub use model::{Activation, Grads, LossAt, LossFn, Params, Problem, Shape, Targets};
pub use problem::{ProblemSpec, random_problem};
