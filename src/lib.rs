//! bptt: backpropagation through time for a simple RNN, on any GPU through wgpu, checked
//! against an f64 CPU reference.
//!
//! The model (DEVELOPERS.md): a_t = x_t·w_hxᵀ + h_{t-1}·w_hhᵀ (+ b_h), h_t = φ(a_t),
//! o_t = h_t·w_qhᵀ (+ b_q), L = 1/(T·B) Σ_t Σ_b ℓ(o_tb, y_tb).

pub mod clip;
pub mod cpu;
pub mod diagnostics;
pub mod error;
pub mod linalg;
pub mod model;
pub mod plot;
pub mod problem;

pub use error::{Error, Result};
pub use model::{Activation, Grads, LossAt, LossFn, Params, Problem, Shape, Targets};
pub use problem::{ProblemSpec, random_problem};
pub mod cli;
pub mod flops;
pub mod gpu;
pub mod report;
pub mod run;
