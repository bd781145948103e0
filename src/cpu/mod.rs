//! CPU paths. `reference` is the oracle: f64, a line-by-line transcription of the model's equations (docs/model.md).
//! Faster CPU code lives beside it under its own name and is tested against it:
//! `fast` (f32, matrix products over all steps, threaded recurrences). `reference_layer` is the
//! reference's layer mode (no output, no loss: upstream gradients in, ∂L/∂x_t out). `truncated` and
//! `segments` are the reference's truncated-BPTT variants, `checkpointed` the reference under a
//! memory budget (their device-independent parts, the
//! segment split and the random cuts, are in `variant`).

pub mod checkpointed;
pub mod fast;
pub mod reference;
pub mod reference_layer;
pub mod segments;
pub mod truncated;

pub use reference::bptt as reference_bptt;
