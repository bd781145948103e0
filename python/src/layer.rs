//! The layer mode (`bptt::layer::Layer`) for `bptt.torch.RNN`: arrays in, arrays out, f32 or
//! f64, the GIL released while an engine runs. One object per module keeps its GPU objects
//! between calls; the GPU context is shared by every layer on the same adapter.

use std::sync::Mutex;

use bptt::gpu::Schedule;
use bptt::layer::{Layer, LayerDevice, LayerShape, LayerWeights, Real, Upstream};
use bptt::model::Activation;
use numpy::{Element, PyArrayDyn, PyReadonlyArrayDyn};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::arrays::{array, slice};
use crate::{adapter_request, choice, error, gpu_context};

/// One engine's layer mode, kept between calls.
#[pyclass(frozen, name = "Layer", module = "bptt")]
pub struct PyLayer {
    layer: Mutex<Layer>,
    device: String,
}

type Grads<'py, F> = (
    Bound<'py, PyArrayDyn<F>>,
    Bound<'py, PyArrayDyn<F>>,
    Bound<'py, PyArrayDyn<F>>,
    Bound<'py, PyArrayDyn<F>>,
    Option<Bound<'py, PyArrayDyn<F>>>,
);

impl PyLayer {
    fn lock(&self) -> std::sync::MutexGuard<'_, Layer> {
        // A panic cannot leave a Layer half-updated in a way a later call would see: every
        // call writes all it reads.
        self.layer.lock().unwrap_or_else(|p| p.into_inner())
    }

    #[allow(clippy::too_many_arguments)]
    fn forward_in<'py, F: Real + Element>(
        &self,
        py: Python<'py>,
        dims: (usize, usize, usize, usize),
        activation: &str,
        w_hx: PyReadonlyArrayDyn<'py, F>,
        w_hh: PyReadonlyArrayDyn<'py, F>,
        b_h: Option<PyReadonlyArrayDyn<'py, F>>,
        x: PyReadonlyArrayDyn<'py, F>,
        h0: Option<PyReadonlyArrayDyn<'py, F>>,
    ) -> PyResult<Bound<'py, PyArrayDyn<F>>> {
        let (t, b, d, h) = dims;
        let s = LayerShape::new(t, b, d, h).map_err(error)?;
        let act: Activation = choice("nonlinearity", activation)?;
        let w = LayerWeights {
            w_hx: slice("w_hx", &w_hx)?,
            w_hh: slice("w_hh", &w_hh)?,
            b_h: b_h.as_ref().map(|a| slice("b_h", a)).transpose()?,
        };
        let (x, h0) = (slice("x", &x)?, h0.as_ref().map(|a| slice("h0", a)).transpose()?);
        let out = py.detach(|| self.lock().forward(s, act, &w, x, h0)).map_err(error)?;
        array(py, out, &[t, b, h])
    }

    #[allow(clippy::too_many_arguments)]
    fn backward_in<'py, F: Real + Element>(
        &self,
        py: Python<'py>,
        dims: (usize, usize, usize, usize),
        activation: &str,
        w_hx: PyReadonlyArrayDyn<'py, F>,
        w_hh: PyReadonlyArrayDyn<'py, F>,
        b_h: Option<PyReadonlyArrayDyn<'py, F>>,
        x: PyReadonlyArrayDyn<'py, F>,
        h0: Option<PyReadonlyArrayDyn<'py, F>>,
        h: PyReadonlyArrayDyn<'py, F>,
        grad_h: PyReadonlyArrayDyn<'py, F>,
        grad_h_last: Option<PyReadonlyArrayDyn<'py, F>>,
    ) -> PyResult<Grads<'py, F>> {
        let (t, b, d, nh) = dims;
        let s = LayerShape::new(t, b, d, nh).map_err(error)?;
        let act: Activation = choice("nonlinearity", activation)?;
        let w = LayerWeights {
            w_hx: slice("w_hx", &w_hx)?,
            w_hh: slice("w_hh", &w_hh)?,
            b_h: b_h.as_ref().map(|a| slice("b_h", a)).transpose()?,
        };
        let (x, h0) = (slice("x", &x)?, h0.as_ref().map(|a| slice("h0", a)).transpose()?);
        let up = Upstream {
            h: slice("h", &h)?,
            grad_h: slice("grad_h", &grad_h)?,
            grad_h_last: grad_h_last.as_ref().map(|a| slice("grad_h_last", a)).transpose()?,
        };
        let g = py.detach(|| self.lock().backward(s, act, &w, x, h0, &up)).map_err(error)?;
        Ok((
            array(py, g.grad_x, &[t, b, d])?,
            array(py, g.grad_h0, &[b, nh])?,
            array(py, g.grad_w_hx, &[nh, d])?,
            array(py, g.grad_w_hh, &[nh, nh])?,
            g.grad_b_h.map(|v| array(py, v, &[nh])).transpose()?,
        ))
    }
}

#[pymethods]
impl PyLayer {
    /// A layer on `device` ("gpu", "cpu" or "reference"); on the GPU, `schedule` and the
    /// adapter keywords choose how and where.
    #[new]
    #[pyo3(signature = (device, schedule="fused", adapter=None, backend=None, software=false))]
    fn new(
        py: Python<'_>,
        device: &str,
        schedule: &str,
        adapter: Option<String>,
        backend: Option<String>,
        software: bool,
    ) -> PyResult<Self> {
        let layer = match device {
            "gpu" => {
                let schedule: Schedule = choice("schedule", schedule)?;
                let req = adapter_request(adapter, backend, software)?;
                let ctx = py.detach(|| gpu_context(&req)).map_err(error)?;
                Layer::on_context(ctx, schedule)
            }
            "cpu" => Layer::new(LayerDevice::Cpu).map_err(error)?,
            "reference" => Layer::new(LayerDevice::Reference).map_err(error)?,
            other => {
                return Err(PyValueError::new_err(format!(
                    "`device_kind` must be one of gpu, cpu, reference, not '{}'",
                    bptt::error::quote(other)
                )));
            }
        };
        Ok(PyLayer { layer: Mutex::new(layer), device: device.to_string() })
    }

    /// "gpu", "cpu" or "reference".
    #[getter]
    fn device(&self) -> &str {
        &self.device
    }

    /// The adapter, for a GPU layer (one line), else None.
    #[getter]
    fn adapter(&self) -> Option<String> {
        self.lock().context().map(|c| c.adapter.to_string())
    }

    /// Milliseconds the engine took in the last call (the rest of a call is the boundary's).
    #[getter]
    fn last_ms(&self) -> f64 {
        self.lock().last_ms()
    }

    /// h_1..h_T `[T, B, h]` in float32.
    #[pyo3(signature = (dims, activation, w_hx, w_hh, b_h, x, h0))]
    #[allow(clippy::too_many_arguments)]
    fn forward_f32<'py>(
        &self,
        py: Python<'py>,
        dims: (usize, usize, usize, usize),
        activation: &str,
        w_hx: PyReadonlyArrayDyn<'py, f32>,
        w_hh: PyReadonlyArrayDyn<'py, f32>,
        b_h: Option<PyReadonlyArrayDyn<'py, f32>>,
        x: PyReadonlyArrayDyn<'py, f32>,
        h0: Option<PyReadonlyArrayDyn<'py, f32>>,
    ) -> PyResult<Bound<'py, PyArrayDyn<f32>>> {
        self.forward_in(py, dims, activation, w_hx, w_hh, b_h, x, h0)
    }

    /// h_1..h_T `[T, B, h]` in float64 (computed in f64 on the reference, in f32 elsewhere).
    #[pyo3(signature = (dims, activation, w_hx, w_hh, b_h, x, h0))]
    #[allow(clippy::too_many_arguments)]
    fn forward_f64<'py>(
        &self,
        py: Python<'py>,
        dims: (usize, usize, usize, usize),
        activation: &str,
        w_hx: PyReadonlyArrayDyn<'py, f64>,
        w_hh: PyReadonlyArrayDyn<'py, f64>,
        b_h: Option<PyReadonlyArrayDyn<'py, f64>>,
        x: PyReadonlyArrayDyn<'py, f64>,
        h0: Option<PyReadonlyArrayDyn<'py, f64>>,
    ) -> PyResult<Bound<'py, PyArrayDyn<f64>>> {
        self.forward_in(py, dims, activation, w_hx, w_hh, b_h, x, h0)
    }

    /// (∂L/∂x, ∂L/∂h_0, ∂L/∂w_hx, ∂L/∂w_hh, ∂L/∂b_h or None) in float32.
    #[pyo3(signature = (dims, activation, w_hx, w_hh, b_h, x, h0, h, grad_h, grad_h_last))]
    #[allow(clippy::too_many_arguments)]
    fn backward_f32<'py>(
        &self,
        py: Python<'py>,
        dims: (usize, usize, usize, usize),
        activation: &str,
        w_hx: PyReadonlyArrayDyn<'py, f32>,
        w_hh: PyReadonlyArrayDyn<'py, f32>,
        b_h: Option<PyReadonlyArrayDyn<'py, f32>>,
        x: PyReadonlyArrayDyn<'py, f32>,
        h0: Option<PyReadonlyArrayDyn<'py, f32>>,
        h: PyReadonlyArrayDyn<'py, f32>,
        grad_h: PyReadonlyArrayDyn<'py, f32>,
        grad_h_last: Option<PyReadonlyArrayDyn<'py, f32>>,
    ) -> PyResult<Grads<'py, f32>> {
        self.backward_in(py, dims, activation, w_hx, w_hh, b_h, x, h0, h, grad_h, grad_h_last)
    }

    /// As `backward_f32`, in float64.
    #[pyo3(signature = (dims, activation, w_hx, w_hh, b_h, x, h0, h, grad_h, grad_h_last))]
    #[allow(clippy::too_many_arguments)]
    fn backward_f64<'py>(
        &self,
        py: Python<'py>,
        dims: (usize, usize, usize, usize),
        activation: &str,
        w_hx: PyReadonlyArrayDyn<'py, f64>,
        w_hh: PyReadonlyArrayDyn<'py, f64>,
        b_h: Option<PyReadonlyArrayDyn<'py, f64>>,
        x: PyReadonlyArrayDyn<'py, f64>,
        h0: Option<PyReadonlyArrayDyn<'py, f64>>,
        h: PyReadonlyArrayDyn<'py, f64>,
        grad_h: PyReadonlyArrayDyn<'py, f64>,
        grad_h_last: Option<PyReadonlyArrayDyn<'py, f64>>,
    ) -> PyResult<Grads<'py, f64>> {
        self.backward_in(py, dims, activation, w_hx, w_hh, b_h, x, h0, h, grad_h, grad_h_last)
    }
}
