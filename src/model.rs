//! The model of docs/model.md as types: shapes, parameters, a sequence, and the result of one
//! forward + backward pass. Everything is validated when it is built, so the CPU and GPU paths
//! can trust their inputs. Values are kept in f64 (the reference's precision); the GPU path
//! converts to f32 when it uploads.

use crate::error::{Error, Result};

/// T steps, batch B, input d, hidden h, output q.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Shape {
    pub steps: usize,
    pub batch: usize,
    pub input: usize,
    pub hidden: usize,
    pub output: usize,
}

impl Shape {
    pub fn new(steps: usize, batch: usize, input: usize, hidden: usize, output: usize) -> Result<Self> {
        let s = Shape { steps, batch, input, hidden, output };
        for (name, v) in [("steps", steps), ("batch", batch), ("input", input), ("hidden", hidden), ("output", output)]
        {
            if v == 0 {
                return Err(Error::Invalid(format!("{name} must be at least 1")));
            }
        }
        // Every buffer length must fit in u32 for the GPU's indices, and in memory here: the
        // sequences, w_hh, w_hx [h,d] and w_qh [q,h] (the others are no larger than these).
        // The products are checked: a plain `*` wraps in release builds (2^40 · 2^40 = 0),
        // which would let an absurd shape through.
        let elements = |dims: &[usize]| dims.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        let largest = [
            elements(&[s.steps, s.batch, s.hidden]),
            elements(&[s.steps, s.batch, s.input]),
            elements(&[s.steps, s.batch, s.output]),
            elements(&[s.hidden, s.hidden]),
            elements(&[s.hidden, s.input]),
            elements(&[s.output, s.hidden]),
        ];
        if largest.iter().any(|n| n.is_none_or(|n| n > u32::MAX as usize / 4)) {
            return Err(Error::Invalid(format!("shape {s} is too large (a tensor would exceed 2^30 elements)")));
        }
        Ok(s)
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "T={} B={} d={} h={} q={}", self.steps, self.batch, self.input, self.hidden, self.output)
    }
}

/// An option with a fixed set of named values (φ, ℓ, which steps are scored, ...): the names
/// files, reports and the command line use, each with a line saying what it means. `name`
/// and `from_name` are inverses over `ALL`.
pub trait Choice: Sized + Copy + PartialEq + 'static {
    /// Every value, in the order a listing shows them.
    const ALL: &'static [Self];
    /// The value's name, e.g. "tanh".
    fn name(self) -> &'static str;
    /// One line on what the value means.
    fn about(self) -> &'static str;
    /// The value called `name`, if any.
    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|v| v.name() == name)
    }
}

/// Implements `Choice` for a fieldless enum: each variant with its name and its line.
#[macro_export]
macro_rules! choice {
    ($t:ty { $($variant:ident => $name:literal: $about:literal),+ $(,)? }) => {
        impl $crate::model::Choice for $t {
            const ALL: &'static [Self] = &[$(<$t>::$variant),+];
            fn name(self) -> &'static str {
                match self { $(<$t>::$variant => $name),+ }
            }
            fn about(self) -> &'static str {
                match self { $(<$t>::$variant => $about),+ }
            }
        }
    };
}

/// φ in h_t = φ(a_t).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// φ(a) = a: the textbook case, where ∂L/∂h_t is a sum of matrix powers of w_hhᵀ.
    #[default]
    Identity,
    /// φ(a) = tanh(a), φ'(a) = 1 − tanh²(a).
    Tanh,
    /// φ(a) = max(a, 0), φ'(a) = `[a > 0]` (0 at a = 0): the IRNN's (Le et al. 2015).
    Relu,
}

/// tanh in f32 as a rational function (the approximation Eigen and XLA use: odd degree 13 over
/// even degree 6, the input clamped to ±7.905, where tanh rounds to ±1): within a few ulp of
/// tanh (3e-7 relative), branch-free so loops over it vectorise, and about 15× faster than a
/// call to libm's tanhf per element, which at h = 128, T = 200, B = 32 cost ~12 ms per forward
/// pass, more than the recurrence's matrix products. NaN stays NaN.
#[inline]
pub fn tanh_f32(x: f32) -> f32 {
    let x = x.clamp(-7.905_311, 7.905_311);
    let x2 = x * x;
    let mut p = -2.760_768_5e-16f32;
    for c in [2.000_188e-13, -8.604_672e-11, 5.122_297e-8, 1.485_722_4e-5, 6.372_619_3e-4, 4.893_524_6e-3] {
        p = p * x2 + c;
    }
    let q = ((1.198_258_4e-6f32 * x2 + 1.185_347e-4) * x2 + 2.268_434_7e-3) * x2 + 4.893_525e-3;
    x * p / q
}

impl Activation {
    pub fn name(self) -> &'static str {
        Choice::name(self)
    }

    /// The code the WGSL kernels know φ by (`ACT_IDENTITY`, `ACT_TANH`, `ACT_RELU` in
    /// `shaders/prelude.wgsl`); the only place the enum meets the numbers.
    pub fn code(self) -> u32 {
        match self {
            Activation::Identity => 0,
            Activation::Tanh => 1,
            Activation::Relu => 2,
        }
    }
}

choice!(Activation {
    Identity => "identity": "φ(a) = a: the textbook case, where ∂L/∂h_t is a sum of matrix powers of w_hhᵀ",
    Tanh => "tanh": "φ(a) = tanh(a), φ′(a) = 1 − tanh²(a)",
    Relu => "relu": "φ(a) = max(a, 0), φ′(a) = [a > 0] (0 at a = 0): the IRNN's (Le et al. 2015)",
});

/// ℓ(o, y): per-step, per-batch-entry loss.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LossFn {
    /// ℓ = ½‖o − y‖² against targets y of shape T×B×q.
    #[default]
    Mse,
    /// ℓ = −log softmax(o) at the label, against labels of shape T×B, each in 0..q.
    Xent,
}

impl LossFn {
    pub fn name(self) -> &'static str {
        Choice::name(self)
    }
}

choice!(LossFn {
    Mse => "mse": "ℓ = ½‖o − y‖² against targets y of shape T×B×q",
    Xent => "xent": "ℓ = −log softmax(o) at the label, against labels of shape T×B, each in 0..q",
});

/// Which steps carry a loss term.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LossAt {
    /// L = 1/(T·B) Σ_t Σ_b ℓ(o_tb, y_tb): the textbook's loss, one term per step.
    #[default]
    All,
    /// L = 1/B Σ_b ℓ(o_Tb, y_Tb): sequence-to-one, only the last step is scored.
    Last,
}

impl LossAt {
    pub fn name(self) -> &'static str {
        Choice::name(self)
    }
}

choice!(LossAt {
    All => "all": "L = 1/(T·B) Σ_t Σ_b ℓ(o_tb, y_tb): the textbook's loss, one term per step",
    Last => "last": "L = 1/B Σ_b ℓ(o_Tb, y_Tb): sequence-to-one, only the last step is scored",
});

/// Weights (row-major) and optional biases.
#[derive(Clone, Debug, PartialEq)]
pub struct Params {
    /// [h, d]
    pub w_hx: Vec<f64>,
    /// [h, h]
    pub w_hh: Vec<f64>,
    /// [q, h]
    pub w_qh: Vec<f64>,
    /// `[h]`, when biases are on
    pub b_h: Option<Vec<f64>>,
    /// `[q]`, when biases are on
    pub b_q: Option<Vec<f64>>,
}

/// What the outputs are scored against.
#[derive(Clone, Debug, PartialEq)]
pub enum Targets {
    /// y [T, B, q] for mse.
    Mse(Vec<f64>),
    /// labels [T, B] in [0, q) for xent.
    Xent(Vec<u32>),
}

impl Targets {
    pub fn loss_fn(&self) -> LossFn {
        match self {
            Targets::Mse(_) => LossFn::Mse,
            Targets::Xent(_) => LossFn::Xent,
        }
    }
}

/// Everything one BPTT pass needs, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct Problem {
    pub shape: Shape,
    pub activation: Activation,
    pub loss_at: LossAt,
    pub params: Params,
    /// x [T, B, d]
    pub x: Vec<f64>,
    /// h0 [B, h]
    pub h0: Vec<f64>,
    pub targets: Targets,
    /// How a seeded random problem was drawn (`problem::random_problem`); None for a problem
    /// from a file or built by hand.
    pub drawn: Option<Drawn>,
}

/// The seed of a random problem, and whether h0 was drawn too (else it is zeros).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Drawn {
    pub seed: u64,
    pub random_h0: bool,
}

impl Problem {
    /// Builds a problem, checking every length against `shape`, labels against q, and that all
    /// values are finite. `h0 = None` means zeros.
    pub fn new(
        shape: Shape,
        activation: Activation,
        params: Params,
        x: Vec<f64>,
        h0: Option<Vec<f64>>,
        targets: Targets,
    ) -> Result<Self> {
        let Shape { steps: t, batch: b, input: d, hidden: h, output: q } = shape;
        let h0 = h0.unwrap_or_else(|| vec![0.0; b * h]);
        check_tensor("w_hx", &params.w_hx, &[h, d])?;
        check_tensor("w_hh", &params.w_hh, &[h, h])?;
        check_tensor("w_qh", &params.w_qh, &[q, h])?;
        if params.b_h.is_some() != params.b_q.is_some() {
            return Err(Error::Invalid("biases come as a pair: give both b_h and b_q, or neither".into()));
        }
        if let Some(b_h) = &params.b_h {
            check_tensor("b_h", b_h, &[h])?;
        }
        if let Some(b_q) = &params.b_q {
            check_tensor("b_q", b_q, &[q])?;
        }
        check_tensor("x", &x, &[t, b, d])?;
        check_tensor("h0", &h0, &[b, h])?;
        match &targets {
            Targets::Mse(y) => check_tensor("y", y, &[t, b, q])?,
            Targets::Xent(labels) => {
                if labels.len() != t * b {
                    return Err(Error::tensor(
                        "labels",
                        format!("expected {} values for shape [{t}, {b}], got {}", t * b, labels.len()),
                    ));
                }
                if let Some((i, &l)) = labels.iter().enumerate().find(|&(_, &l)| l as usize >= q) {
                    return Err(Error::tensor("labels", format!("label {l} at index {i} is out of range [0, {q})")));
                }
            }
        }
        Ok(Problem { shape, activation, loss_at: LossAt::All, params, x, h0, targets, drawn: None })
    }

    pub fn loss_fn(&self) -> LossFn {
        self.targets.loss_fn()
    }

    pub fn has_bias(&self) -> bool {
        self.params.b_h.is_some()
    }

    /// Same problem, scored with `loss_at`.
    pub fn with_loss_at(mut self, loss_at: LossAt) -> Self {
        self.loss_at = loss_at;
        self
    }
}

/// Checks a tensor's length against its expected dims and that every value is finite.
pub(crate) fn check_tensor(name: &str, v: &[f64], dims: &[usize]) -> Result<()> {
    let n: usize = dims.iter().product();
    if v.len() != n {
        return Err(Error::tensor(name, format!("expected {n} values for shape {dims:?}, got {}", v.len())));
    }
    let bad = v.iter().filter(|x| !x.is_finite()).count();
    if bad > 0 {
        return Err(Error::tensor(name, format!("{bad} non-finite value(s) (NaN or Inf)")));
    }
    Ok(())
}

/// The result of one forward + backward pass: the loss, every gradient, the per-step norms
/// ‖∂L/∂h_t‖, and the forward states (kept for inspection and `--save-states`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BpttResult {
    pub loss: f64,
    /// [h, d]
    pub grad_w_hx: Vec<f64>,
    /// [h, h]
    pub grad_w_hh: Vec<f64>,
    /// [q, h]
    pub grad_w_qh: Vec<f64>,
    /// `[h]`, when biases are on
    pub grad_b_h: Option<Vec<f64>>,
    /// `[q]`, when biases are on
    pub grad_b_q: Option<Vec<f64>>,
    /// [B, h]
    pub grad_h0: Vec<f64>,
    /// `[T]`: ‖∂L/∂h_t‖, Frobenius over the batch, t = 1..T
    pub grad_h_norm: Vec<f64>,
    /// [T, B, h]: h_1..h_T (empty when a path does not keep them)
    pub h: Vec<f64>,
    /// [T, B, q]: o_1..o_T (empty when a path does not keep them)
    pub o: Vec<f64>,
}

impl BpttResult {
    /// The result tensors by their file names (docs/model.md), in a fixed order (biases only when present).
    pub fn tensors(&self) -> Vec<(&'static str, &[f64])> {
        let mut v: Vec<(&'static str, &[f64])> = vec![
            ("loss", std::slice::from_ref(&self.loss)),
            ("grad_w_hx", &self.grad_w_hx),
            ("grad_w_hh", &self.grad_w_hh),
            ("grad_w_qh", &self.grad_w_qh),
        ];
        if let Some(g) = &self.grad_b_h {
            v.push(("grad_b_h", g));
        }
        if let Some(g) = &self.grad_b_q {
            v.push(("grad_b_q", g));
        }
        v.push(("grad_h0", &self.grad_h0));
        v.push(("grad_h_norm", &self.grad_h_norm));
        v
    }
}

/// ‖a − b‖ / ‖b‖ (or ‖a − b‖ when b is zero): the relative error used for every check.
/// Both norms are scaled (`norm`), so tensors near f64's range limits compare correctly.
pub fn rel_err(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "rel_err on tensors of different lengths");
    let diff = scaled_norm(a.iter().zip(b).map(|(x, y)| x - y));
    let norm = norm(b);
    if norm == 0.0 { diff } else { diff / norm }
}

/// Euclidean (Frobenius) norm, scaled like LAPACK's dnrm2 (hypot-style): the values are
/// divided by the largest magnitude before squaring, so the sum of squares neither overflows
/// (1e188² = inf) nor underflows (1e-180² = 0) where the norm itself is representable.
pub fn norm(v: &[f64]) -> f64 {
    scaled_norm(v.iter().copied())
}

fn scaled_norm(values: impl Iterator<Item = f64> + Clone) -> f64 {
    let mut largest = 0.0f64;
    for x in values.clone() {
        let a = x.abs();
        if a.is_nan() {
            return f64::NAN;
        }
        largest = largest.max(a);
    }
    if largest == 0.0 || largest.is_infinite() {
        return largest;
    }
    // Dividing (not multiplying by 1/largest, which overflows for subnormal largest).
    largest * values.map(|x| (x / largest) * (x / largest)).sum::<f64>().sqrt()
}
