//! BPTT over consecutive segments with the gradient cut at the boundaries, on the f64
//! reference: the forward pass runs unchanged through the whole sequence, carrying h across
//! boundaries, but no gradient flows from one segment back into the one before it. The split
//! and the driver are device-independent (`variant::segments`); each segment runs through the
//! plain reference, which needs no change.

use crate::cpu::reference;
use crate::error::Result;
use crate::model::{BpttResult, Problem};
use crate::variant::segments::run_in_segments;

/// BPTT over `n` segments, the gradient cut at their boundaries (see the module doc), with the
/// f64 reference running each segment. grad_h0 is ∂L/∂h_0 within the first segment;
/// `grad_h_norm[t]` the norm of the cut ∂L/∂h_t.
pub fn bptt_segments(p: &Problem, n: usize) -> Result<BpttResult> {
    run_in_segments(p, n, |segment| Ok(reference::bptt(segment)))
}
