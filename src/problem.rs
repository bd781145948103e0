//! Seeded random problems. The generator is ChaCha8 (`rand_chacha`), seeded from `--seed` with
//! one independent stream per tensor, so a problem is the same on every machine and turning on
//! biases (or a random h0) changes nothing else. Normals come from `rand_distr::StandardNormal`.
//!
//! Weights ~ N(0, 1/fan_in) (fan_in = d for w_hx, h for w_hh and w_qh); biases ~ N(0, 0.1²);
//! x, y and (with `random_h0`) h0 ~ N(0, 1); labels uniform in [0, q).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use crate::error::{Error, Result};
use crate::model::{Activation, Drawn, LossAt, LossFn, Params, Problem, Shape, Targets};

/// Everything that defines a random problem.
#[derive(Clone, Debug, PartialEq)]
pub struct ProblemSpec {
    pub shape: Shape,
    pub activation: Activation,
    pub loss: LossFn,
    pub loss_at: LossAt,
    pub bias: bool,
    pub seed: u64,
    /// Rescale w_hh so that its spectral radius is this value.
    pub spectral_radius: Option<f64>,
    pub random_h0: bool,
}

impl ProblemSpec {
    pub fn new(shape: Shape) -> Self {
        ProblemSpec {
            shape,
            activation: Activation::Identity,
            loss: LossFn::Mse,
            loss_at: LossAt::All,
            bias: false,
            seed: 0,
            spectral_radius: None,
            random_h0: false,
        }
    }
}

/// One stream of the seeded generator per tensor.
#[derive(Clone, Copy)]
enum Stream {
    WHx = 1,
    WHh,
    WQh,
    BH,
    BQ,
    X,
    H0,
    Y,
    Labels,
}

fn rng(seed: u64, stream: Stream) -> ChaCha8Rng {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    r.set_stream(stream as u64);
    r
}

/// n samples of N(0, std²).
fn normal(seed: u64, stream: Stream, n: usize, std: f64) -> Vec<f64> {
    let mut r = rng(seed, stream);
    (0..n).map(|_| std * Distribution::<f64>::sample(&StandardNormal, &mut r)).collect()
}

/// Builds the random problem `spec` describes.
pub fn random_problem(spec: &ProblemSpec) -> Result<Problem> {
    let Shape { steps: t, batch: b, input: d, hidden: h, output: q } = spec.shape;
    let seed = spec.seed;
    let mut w_hh = normal(seed, Stream::WHh, h * h, (1.0 / h as f64).sqrt());
    if let Some(r) = spec.spectral_radius {
        if !(r.is_finite() && r >= 0.0) {
            return Err(Error::Invalid(format!(
                "spectral radius must be a finite number ≥ 0, got {}",
                crate::format::number(r)
            )));
        }
        let rho = crate::linalg::spectral_radius(&w_hh, h);
        let scale = if rho > 0.0 { r / rho } else { 0.0 };
        w_hh.iter_mut().for_each(|w| *w *= scale);
    }
    let params = Params {
        w_hx: normal(seed, Stream::WHx, h * d, (1.0 / d as f64).sqrt()),
        w_hh,
        w_qh: normal(seed, Stream::WQh, q * h, (1.0 / h as f64).sqrt()),
        b_h: spec.bias.then(|| normal(seed, Stream::BH, h, 0.1)),
        b_q: spec.bias.then(|| normal(seed, Stream::BQ, q, 0.1)),
    };
    let x = normal(seed, Stream::X, t * b * d, 1.0);
    let h0 = spec.random_h0.then(|| normal(seed, Stream::H0, b * h, 1.0));
    let targets = match spec.loss {
        LossFn::Mse => Targets::Mse(normal(seed, Stream::Y, t * b * q, 1.0)),
        LossFn::Xent => {
            let mut r = rng(seed, Stream::Labels);
            Targets::Xent((0..t * b).map(|_| r.random_range(0..q as u32)).collect())
        }
    };
    let mut p = Problem::new(spec.shape, spec.activation, params, x, h0, targets)?.with_loss_at(spec.loss_at);
    p.drawn = Some(Drawn { seed: spec.seed, random_h0: spec.random_h0 });
    Ok(p)
}
