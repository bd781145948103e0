//! The RNN as one layer of a larger model, as plain data: its shape, its weights and inputs
//! (borrowed, so an array from elsewhere is read in place), and the gradients a backward pass
//! returns. Used by every engine's layer mode and by `layer::Layer`.

use crate::error::{Error, Result};
use crate::model::Shape;

/// T steps, batch B, input d, hidden h: the model's shape without an output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LayerShape {
    pub steps: usize,
    pub batch: usize,
    pub input: usize,
    pub hidden: usize,
}

impl LayerShape {
    /// Checks every size against the model's rules (at least 1, every tensor within 2^30
    /// elements).
    pub fn new(steps: usize, batch: usize, input: usize, hidden: usize) -> Result<Self> {
        Shape::new(steps, batch, input, hidden, 1)?;
        Ok(LayerShape { steps, batch, input, hidden })
    }

    /// The model's shape with a one-wide output, for the engines that size their buffers by it
    /// (the output side is never computed in layer mode).
    pub fn model_shape(self) -> Shape {
        Shape { steps: self.steps, batch: self.batch, input: self.input, hidden: self.hidden, output: 1 }
    }

    /// T·B·h: the length of the states h_1..h_T and of the upstream gradients.
    pub fn states_len(self) -> usize {
        self.steps * self.batch * self.hidden
    }
}

impl std::fmt::Display for LayerShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "T={} B={} d={} h={}", self.steps, self.batch, self.input, self.hidden)
    }
}

/// The layer's parameters, row-major: w_hx `[h,d]`, w_hh `[h,h]`, b_h `[h]` when biases are on.
#[derive(Clone, Copy, Debug)]
pub struct LayerWeights<'a, F> {
    pub w_hx: &'a [F],
    pub w_hh: &'a [F],
    pub b_h: Option<&'a [F]>,
}

/// What a backward pass is given besides the weights and inputs: the forward's states
/// h_1..h_T `[T,B,h]` and the upstream gradients ∂ℓ/∂h_t `[T,B,h]` that the rest of the model
/// sends into each h_t directly (not through h_{t+1}), plus optionally one more `[B,h]` into
/// h_T alone (a final state used on its own, as `torch.nn.RNN`'s h_n is).
#[derive(Clone, Copy, Debug)]
pub struct Upstream<'a, F> {
    pub h: &'a [F],
    pub grad_h: &'a [F],
    pub grad_h_last: Option<&'a [F]>,
}

/// The gradients of the layer's backward pass.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LayerGrads<F> {
    /// ∂L/∂x_t = ∂L/∂a_t·w_hx, `[T,B,d]`
    pub grad_x: Vec<F>,
    /// ∂L/∂h_0 = ∂L/∂a_1·w_hh, `[B,h]`
    pub grad_h0: Vec<F>,
    /// `[h,d]`
    pub grad_w_hx: Vec<F>,
    /// `[h,h]`
    pub grad_w_hh: Vec<F>,
    /// `[h]`, when biases are on
    pub grad_b_h: Option<Vec<F>>,
}

/// Checks the length of each tensor of a call against the shape, naming the tensor.
pub(crate) fn check_lengths<F>(
    s: LayerShape,
    w: &LayerWeights<F>,
    x: &[F],
    h0: Option<&[F]>,
    up: Option<&Upstream<F>>,
) -> Result<()> {
    let (t, b, d, h) = (s.steps, s.batch, s.input, s.hidden);
    let mut tensors: Vec<(&str, usize, Vec<usize>)> =
        vec![("w_hx", w.w_hx.len(), vec![h, d]), ("w_hh", w.w_hh.len(), vec![h, h]), ("x", x.len(), vec![t, b, d])];
    if let Some(b_h) = w.b_h {
        tensors.push(("b_h", b_h.len(), vec![h]));
    }
    if let Some(h0) = h0 {
        tensors.push(("h0", h0.len(), vec![b, h]));
    }
    if let Some(up) = up {
        tensors.push(("h", up.h.len(), vec![t, b, h]));
        tensors.push(("grad_h", up.grad_h.len(), vec![t, b, h]));
        if let Some(g) = up.grad_h_last {
            tensors.push(("grad_h_last", g.len(), vec![b, h]));
        }
    }
    for (name, len, dims) in tensors {
        let n: usize = dims.iter().product();
        if len != n {
            return Err(Error::tensor(name, format!("expected {n} values for shape {dims:?}, got {len}")));
        }
    }
    Ok(())
}
