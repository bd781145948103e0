//! Truncation, on every path: which kind (`Truncation`), and the random cuts of randomised
//! truncation (`random_carry_scales`), drawn once on the host so that the GPU and the f64
//! reference (`cpu::truncated`) apply the very same ones.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};

/// How the backward recursion is truncated.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Truncation {
    /// Keep loss term s's contribution to ∂L/∂h_t iff s − t < K (K ≥ 1).
    Regular(usize),
    /// Cut the carried gradient at each step with probability p ∈ [0, 1), rescaling the kept
    /// ones by 1/(1−p); the cuts come from `random_carry_scales(T, p, seed)`.
    Random { p: f64, seed: u64 },
}

/// The carry multipliers c_0..c_{T−1} of randomized truncation: `scales[t]` multiplies
/// ∂L/∂a_{t+1}·w_hh when forming ∂L/∂h_t (math index t, so `scales[0]` is for ∂L/∂h_0). It is
/// 0 with probability p and 1/(1−p) otherwise. (There is no c_T: nothing is carried into h_T.)
///
/// The draws, for the GPU to reproduce: a `ChaCha8Rng::seed_from_u64(seed)` (rand_chacha 0.9,
/// default stream) gives one `f64` u = `rng.random::<f64>()` (in [0, 1)) per step, in the order
/// the backward pass meets the steps: the i-th draw (i = 0, 1, …, T−1) decides c_{T−1−i}, and
/// the carry is cut iff u < p. So sequences of different lengths share their cuts counted from
/// the end, and p = 0 gives all ones (exactly full BPTT).
pub fn random_carry_scales(steps: usize, p: f64, seed: u64) -> Result<Vec<f64>> {
    if !(0.0..1.0).contains(&p) {
        return Err(Error::Invalid(format!(
            "random truncation needs a cut probability p in [0, 1), got {}",
            crate::format::number(p)
        )));
    }
    Ok(draw_carry_scales(&mut ChaCha8Rng::seed_from_u64(seed), steps, p))
}

/// The draws of `random_carry_scales` from any generator: one `f64` per step, c_{T−1} first,
/// cut iff u < p, kept ones 1/(1−p). Training draws fresh cuts this way at every iteration.
pub fn draw_carry_scales(rng: &mut impl Rng, steps: usize, p: f64) -> Vec<f64> {
    let kept = 1.0 / (1.0 - p);
    let mut scales = vec![0.0; steps];
    for t in (0..steps).rev() {
        let u: f64 = rng.random();
        scales[t] = if u < p { 0.0 } else { kept };
    }
    scales
}
