//! The RNN as one layer of a larger model (docs/model.md, "The layer mode"): the engines'
//! layer mode behind one object. A `Layer` runs on the f64 reference, the fast f32 CPU path or
//! the GPU; on the GPU it keeps its context and one `GpuBptt` per shape it has seen (its
//! buffers and bind groups), so a training loop pays for them once.
//!
//! ```
//! use bptt::Activation;
//! use bptt::layer::{Layer, LayerDevice, LayerShape, LayerWeights, Upstream};
//! # fn main() -> bptt::Result<()> {
//! let s = LayerShape::new(3, 2, 1, 2)?; // T = 3, B = 2, d = 1, h = 2
//! let w = LayerWeights { w_hx: &[1.0f64, -1.0][..], w_hh: &[0.5, 0.0, 0.0, 0.5][..], b_h: None };
//! let x = [1.0, 2.0, 0.0, 0.0, 0.0, 0.0];
//! let mut layer = Layer::new(LayerDevice::Reference)?;
//! let h = layer.forward(s, Activation::Identity, &w, &x, None)?;
//! assert_eq!(&h[..4], &[1.0, -1.0, 2.0, -2.0]); // h_1 = x_1·w_hxᵀ
//! // L = Σ h_T: ∂L/∂h_t is 1 at t = T, 0 before.
//! let mut grad_h = vec![0.0; 12];
//! grad_h[8..].fill(1.0);
//! let g = layer.backward(s, Activation::Identity, &w, &x, None, &Upstream { h: &h, grad_h: &grad_h, grad_h_last: None })?;
//! assert_eq!(g.grad_x[..2], [0.0, 0.0]); // x_1 reaches h_T through w_hh twice: 0.5²·(1 − 1)
//! # Ok(())
//! # }
//! ```

pub mod types;

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

pub use types::{LayerGrads, LayerShape, LayerWeights, Upstream};

use crate::cpu;
use crate::error::Result;
use crate::gpu::{AdapterRequest, GpuBptt, GpuContext, Schedule};
use crate::model::Activation;

/// Where a `Layer` runs.
#[derive(Clone, Debug)]
pub enum LayerDevice {
    /// A wgpu adapter, with the dispatch schedule to use.
    Gpu { adapter: AdapterRequest, schedule: Schedule },
    /// The fast f32 CPU path.
    Cpu,
    /// The f64 CPU reference.
    Reference,
}

/// The GPU objects a layer keeps, one per shape, at most this many (least recently used
/// dropped first): a training loop sees one or two shapes (a short last batch, evaluation).
const GPU_OBJECTS: usize = 4;

enum Engine {
    Gpu { ctx: Arc<GpuContext>, schedule: Schedule, objects: Vec<GpuBptt> },
    Cpu,
    Reference,
}

/// The layer mode of one engine, kept between calls.
pub struct Layer {
    engine: Engine,
    last_ms: f64,
}

/// f32 or f64: what a layer takes and returns. The fast path and the GPU compute in f32 and
/// the reference in f64; values are converted (f64 → f32 rounds) only where the types differ.
pub trait Real: Copy + Send + Sync + 'static {
    fn as_f32(v: &[Self]) -> Cow<'_, [f32]>;
    fn as_f64(v: &[Self]) -> Cow<'_, [f64]>;
    fn from_f32(v: Vec<f32>) -> Vec<Self>;
    fn from_f64(v: Vec<f64>) -> Vec<Self>;
}

impl Real for f32 {
    fn as_f32(v: &[f32]) -> Cow<'_, [f32]> {
        Cow::Borrowed(v)
    }
    fn as_f64(v: &[f32]) -> Cow<'_, [f64]> {
        Cow::Owned(v.iter().map(|&x| x as f64).collect())
    }
    fn from_f32(v: Vec<f32>) -> Vec<f32> {
        v
    }
    fn from_f64(v: Vec<f64>) -> Vec<f32> {
        v.into_iter().map(|x| x as f32).collect()
    }
}

impl Real for f64 {
    fn as_f32(v: &[f64]) -> Cow<'_, [f32]> {
        Cow::Owned(v.iter().map(|&x| x as f32).collect())
    }
    fn as_f64(v: &[f64]) -> Cow<'_, [f64]> {
        Cow::Borrowed(v)
    }
    fn from_f32(v: Vec<f32>) -> Vec<f64> {
        v.into_iter().map(|x| x as f64).collect()
    }
    fn from_f64(v: Vec<f64>) -> Vec<f64> {
        v
    }
}

/// A call's tensors in one precision.
struct Converted<'a, R: Clone + 'static> {
    w_hx: Cow<'a, [R]>,
    w_hh: Cow<'a, [R]>,
    b_h: Option<Cow<'a, [R]>>,
    x: Cow<'a, [R]>,
    h0: Cow<'a, [R]>,
}

impl<'a, R: Clone + Default + 'static> Converted<'a, R> {
    fn new<F: Real>(
        s: LayerShape,
        w: &LayerWeights<'a, F>,
        x: &'a [F],
        h0: Option<&'a [F]>,
        conv: impl Fn(&'a [F]) -> Cow<'a, [R]>,
    ) -> Self {
        Converted {
            w_hx: conv(w.w_hx),
            w_hh: conv(w.w_hh),
            b_h: w.b_h.map(&conv),
            x: conv(x),
            h0: h0.map_or_else(|| Cow::Owned(vec![R::default(); s.batch * s.hidden]), conv),
        }
    }

    fn weights(&self) -> LayerWeights<'_, R> {
        LayerWeights { w_hx: &self.w_hx, w_hh: &self.w_hh, b_h: self.b_h.as_deref() }
    }
}

fn convert_grads<R, F>(g: LayerGrads<R>, from: impl Fn(Vec<R>) -> Vec<F>) -> LayerGrads<F> {
    LayerGrads {
        grad_x: from(g.grad_x),
        grad_h0: from(g.grad_h0),
        grad_w_hx: from(g.grad_w_hx),
        grad_w_hh: from(g.grad_w_hh),
        grad_b_h: g.grad_b_h.map(&from),
    }
}

impl Layer {
    /// A layer on `device`; on the GPU this opens a context (hundreds of ms): share one with
    /// `on_context` to build several layers.
    pub fn new(device: LayerDevice) -> Result<Self> {
        let engine = match device {
            LayerDevice::Gpu { adapter, schedule } => {
                Engine::Gpu { ctx: Arc::new(GpuContext::new(&adapter)?), schedule, objects: Vec::new() }
            }
            LayerDevice::Cpu => Engine::Cpu,
            LayerDevice::Reference => Engine::Reference,
        };
        Ok(Layer { engine, last_ms: 0.0 })
    }

    /// A GPU layer on an open context.
    pub fn on_context(ctx: Arc<GpuContext>, schedule: Schedule) -> Self {
        Layer { engine: Engine::Gpu { ctx, schedule, objects: Vec::new() }, last_ms: 0.0 }
    }

    /// The GPU context, for a GPU layer.
    pub fn context(&self) -> Option<&Arc<GpuContext>> {
        match &self.engine {
            Engine::Gpu { ctx, .. } => Some(ctx),
            _ => None,
        }
    }

    /// Milliseconds the engine took in the last call, conversions of types included (the
    /// rest of a caller's time is its own overhead).
    pub fn last_ms(&self) -> f64 {
        self.last_ms
    }

    /// The forward pass: h_1..h_T `[T,B,h]` from x `[T,B,d]` and h0 `[B,h]` (zeros if None).
    pub fn forward<F: Real>(
        &mut self,
        s: LayerShape,
        act: Activation,
        w: &LayerWeights<F>,
        x: &[F],
        h0: Option<&[F]>,
    ) -> Result<Vec<F>> {
        types::check_lengths(s, w, x, h0, None)?;
        let start = Instant::now();
        let h = match &mut self.engine {
            Engine::Reference => {
                let c = Converted::new(s, w, x, h0, F::as_f64);
                F::from_f64(cpu::reference_layer::forward(s, act, &c.weights(), &c.x, &c.h0))
            }
            Engine::Cpu => {
                let c = Converted::new(s, w, x, h0, F::as_f32);
                F::from_f32(cpu::fast::layer::forward(s, act, &c.weights(), &c.x, &c.h0))
            }
            Engine::Gpu { ctx, schedule, objects } => {
                let c = Converted::new(s, w, x, h0, F::as_f32);
                let object = object_for(ctx, *schedule, objects, s)?;
                F::from_f32(object.layer_forward(ctx, act, &c.weights(), &c.x, &c.h0)?)
            }
        };
        self.last_ms = start.elapsed().as_secs_f64() * 1e3;
        Ok(h)
    }

    /// The backward pass, from the inputs of a forward pass, its states and the upstream
    /// gradients (`Upstream`).
    pub fn backward<F: Real>(
        &mut self,
        s: LayerShape,
        act: Activation,
        w: &LayerWeights<F>,
        x: &[F],
        h0: Option<&[F]>,
        up: &Upstream<F>,
    ) -> Result<LayerGrads<F>> {
        types::check_lengths(s, w, x, h0, Some(up))?;
        let start = Instant::now();
        let grads = match &mut self.engine {
            Engine::Reference => {
                let c = Converted::new(s, w, x, h0, F::as_f64);
                let (h, g, last) = (F::as_f64(up.h), F::as_f64(up.grad_h), up.grad_h_last.map(F::as_f64));
                let up = Upstream { h: &h, grad_h: &g, grad_h_last: last.as_deref() };
                let grads = cpu::reference_layer::backward(s, act, &c.weights(), &c.x, &c.h0, &up);
                convert_grads(grads, F::from_f64)
            }
            Engine::Cpu => {
                let c = Converted::new(s, w, x, h0, F::as_f32);
                let (h, g, last) = (F::as_f32(up.h), F::as_f32(up.grad_h), up.grad_h_last.map(F::as_f32));
                let up = Upstream { h: &h, grad_h: &g, grad_h_last: last.as_deref() };
                convert_grads(cpu::fast::layer::backward(s, act, &c.weights(), &c.x, &c.h0, &up), F::from_f32)
            }
            Engine::Gpu { ctx, schedule, objects } => {
                let c = Converted::new(s, w, x, h0, F::as_f32);
                let (h, g, last) = (F::as_f32(up.h), F::as_f32(up.grad_h), up.grad_h_last.map(F::as_f32));
                let up = Upstream { h: &h, grad_h: &g, grad_h_last: last.as_deref() };
                let object = object_for(ctx, *schedule, objects, s)?;
                convert_grads(object.layer_backward(ctx, act, &c.weights(), &c.x, &c.h0, &up)?, F::from_f32)
            }
        };
        self.last_ms = start.elapsed().as_secs_f64() * 1e3;
        Ok(grads)
    }
}

/// The GPU object for `s`, built on first use; the most recently used is kept last.
fn object_for<'a>(
    ctx: &GpuContext,
    schedule: Schedule,
    objects: &'a mut Vec<GpuBptt>,
    s: LayerShape,
) -> Result<&'a mut GpuBptt> {
    match objects.iter().position(|o| o.layer_shape() == Some(s)) {
        Some(at) => {
            let o = objects.remove(at);
            objects.push(o);
        }
        None => {
            let o = GpuBptt::new_layer(ctx, s, schedule)?;
            if objects.len() == GPU_OBJECTS {
                objects.remove(0);
            }
            objects.push(o);
        }
    }
    Ok(objects.last_mut().expect("just pushed"))
}
