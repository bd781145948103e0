//! CPU paths. `reference` is the oracle: f64, a line-by-line transcription of the contract.
//! Faster CPU code lives beside it under its own name and is tested against it.

pub mod fast;
pub mod reference;

pub use reference::bptt as reference_bptt;
pub mod segments;
pub mod truncated;
