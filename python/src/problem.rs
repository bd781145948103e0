//! Problems (made from arrays, drawn at random, read from files), results, and one forward +
//! backward pass (`compute`) on the device asked for, with truncation, segments or clipping.

use std::collections::BTreeMap;
use std::path::PathBuf;

use bptt::cpu::{checkpointed, fast};
use bptt::gpu::Schedule;
use bptt::memory::{Paths, check_host, host_bytes};
use bptt::model::{Activation, BpttResult, LossAt, LossFn, Params, Problem, Shape, Targets};
use bptt::variant::memory::{MemoryOptions, plan_path};
use bptt::variant::truncation::Truncation;
use bptt::variant::{GpuRunner, GradientOptions};
use numpy::{PyArrayDyn, PyReadonlyArrayDyn};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::arrays::{array, slice};
use crate::{adapter_request, choice, error, gpu_context};

/// A validated problem: the model's shape, φ, ℓ and which steps are scored, the weights, the
/// inputs and the targets, in f64.
#[pyclass(frozen, name = "Problem", module = "bptt")]
pub struct PyProblem {
    pub p: Problem,
}

fn f64s<'py>(py: Python<'py>, v: &[f64], dims: &[usize]) -> PyResult<Bound<'py, PyArrayDyn<f64>>> {
    array(py, v.to_vec(), dims)
}

#[pymethods]
impl PyProblem {
    #[getter]
    fn steps(&self) -> usize {
        self.p.shape.steps
    }
    #[getter]
    fn batch(&self) -> usize {
        self.p.shape.batch
    }
    #[getter]
    fn input(&self) -> usize {
        self.p.shape.input
    }
    #[getter]
    fn hidden(&self) -> usize {
        self.p.shape.hidden
    }
    #[getter]
    fn output(&self) -> usize {
        self.p.shape.output
    }
    #[getter]
    fn activation(&self) -> &'static str {
        self.p.activation.name()
    }
    #[getter]
    fn loss(&self) -> &'static str {
        self.p.loss_fn().name()
    }
    #[getter]
    fn loss_at(&self) -> &'static str {
        self.p.loss_at.name()
    }
    #[getter]
    fn bias(&self) -> bool {
        self.p.has_bias()
    }
    /// The seed of a random problem (None for one made from arrays or read from a file).
    #[getter]
    fn seed(&self) -> Option<u64> {
        self.p.drawn.map(|d| d.seed)
    }
    /// w_hx `[h, d]` (a copy, as are all the tensors).
    #[getter]
    fn w_hx<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArrayDyn<f64>>> {
        f64s(py, &self.p.params.w_hx, &[self.p.shape.hidden, self.p.shape.input])
    }
    #[getter]
    fn w_hh<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArrayDyn<f64>>> {
        f64s(py, &self.p.params.w_hh, &[self.p.shape.hidden, self.p.shape.hidden])
    }
    #[getter]
    fn w_qh<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArrayDyn<f64>>> {
        f64s(py, &self.p.params.w_qh, &[self.p.shape.output, self.p.shape.hidden])
    }
    #[getter]
    fn b_h<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyArrayDyn<f64>>>> {
        self.p.params.b_h.as_ref().map(|b| f64s(py, b, &[self.p.shape.hidden])).transpose()
    }
    #[getter]
    fn b_q<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyArrayDyn<f64>>>> {
        self.p.params.b_q.as_ref().map(|b| f64s(py, b, &[self.p.shape.output])).transpose()
    }
    #[getter]
    fn x<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArrayDyn<f64>>> {
        let s = self.p.shape;
        f64s(py, &self.p.x, &[s.steps, s.batch, s.input])
    }
    #[getter]
    fn h0<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArrayDyn<f64>>> {
        f64s(py, &self.p.h0, &[self.p.shape.batch, self.p.shape.hidden])
    }
    /// y `[T, B, q]` for mse (None for xent).
    #[getter]
    fn y<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyArrayDyn<f64>>>> {
        let s = self.p.shape;
        match &self.p.targets {
            Targets::Mse(y) => Ok(Some(f64s(py, y, &[s.steps, s.batch, s.output])?)),
            Targets::Xent(_) => Ok(None),
        }
    }
    /// labels `[T, B]` for xent (None for mse).
    #[getter]
    fn labels<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyArrayDyn<i64>>>> {
        let s = self.p.shape;
        match &self.p.targets {
            Targets::Xent(l) => Ok(Some(array(py, l.iter().map(|&v| v as i64).collect(), &[s.steps, s.batch])?)),
            Targets::Mse(_) => Ok(None),
        }
    }

    /// The same problem with another φ or scored steps.
    #[pyo3(signature = (activation=None, loss_at=None))]
    fn with_options(&self, activation: Option<&str>, loss_at: Option<&str>) -> PyResult<PyProblem> {
        let mut p = self.p.clone();
        if let Some(a) = activation {
            p.activation = choice("activation", a)?;
        }
        if let Some(l) = loss_at {
            p.loss_at = choice("loss_at", l)?;
        }
        Ok(PyProblem { p })
    }

    /// The unrolled computation graph of this problem, each h_t coloured by ‖∂L/∂h_t‖ from
    /// `grad_h_norm` [T] and h_0 by ‖`grad_h0`‖ (a result's), as SVG.
    #[pyo3(signature = (grad_h_norm, grad_h0=None))]
    fn graph_svg(&self, py: Python<'_>, grad_h_norm: Vec<f64>, grad_h0: Option<Vec<f64>>) -> PyResult<String> {
        let p = &self.p;
        if grad_h_norm.len() != p.shape.steps {
            return Err(PyValueError::new_err(format!(
                "`grad_h_norm` has {} values for T = {} steps",
                grad_h_norm.len(),
                p.shape.steps
            )));
        }
        // With the loss at the last step only, ‖∂L/∂h_t‖ is the reach ‖∂L_T/∂h_t‖: the graph
        // names it so, as the check's does.
        let spec = bptt::graph::GraphSpec {
            steps: p.shape.steps,
            loss_at: p.loss_at,
            bias: p.has_bias(),
            activation: p.activation,
            loss_fn: p.loss_fn(),
            quantity: bptt::graph::GraphOf::default_for(p.loss_at),
            values: grad_h_norm,
            h0_value: grad_h0.map(|g| bptt::model::norm(&g)),
            variant: Vec::new(),
            carry: None,
            cut_reason: None,
        };
        py.detach(|| crate::check::svg_text(|path| bptt::graph::write_spec(path, &spec)))
    }

    /// ‖∂L/∂h_t‖ from `grad_h_norm` [T] against t, as SVG.
    fn plot_svg(&self, py: Python<'_>, grad_h_norm: Vec<f64>) -> PyResult<String> {
        let p = &self.p;
        let title = format!("{}, {}, loss at {}", p.shape, p.activation.name(), p.loss_at.name());
        let series = [bptt::plot::Series::new("‖∂L/∂h_t‖", grad_h_norm)];
        py.detach(|| crate::check::svg_text(|path| bptt::plot::plot_profiles(path, &title, &series)))
    }

    fn __repr__(&self) -> String {
        let p = &self.p;
        let seed = p.drawn.map_or(String::new(), |d| format!(", seed={}", d.seed));
        format!(
            "bptt.Problem({}, activation={}, loss={}, loss_at={}, bias={}{seed})",
            p.shape,
            p.activation.name(),
            p.loss_fn().name(),
            p.loss_at.name(),
            p.has_bias()
        )
    }
}

/// A problem from arrays (C-contiguous f64; labels u32), already shaped by the caller.
#[pyfunction]
#[pyo3(signature = (dims, activation, loss_at, w_hx, w_hh, w_qh, x, y=None, labels=None, h0=None, b_h=None, b_q=None))]
#[allow(clippy::too_many_arguments)]
pub fn make_problem(
    dims: (usize, usize, usize, usize, usize),
    activation: &str,
    loss_at: &str,
    w_hx: PyReadonlyArrayDyn<'_, f64>,
    w_hh: PyReadonlyArrayDyn<'_, f64>,
    w_qh: PyReadonlyArrayDyn<'_, f64>,
    x: PyReadonlyArrayDyn<'_, f64>,
    y: Option<PyReadonlyArrayDyn<'_, f64>>,
    labels: Option<PyReadonlyArrayDyn<'_, u32>>,
    h0: Option<PyReadonlyArrayDyn<'_, f64>>,
    b_h: Option<PyReadonlyArrayDyn<'_, f64>>,
    b_q: Option<PyReadonlyArrayDyn<'_, f64>>,
) -> PyResult<PyProblem> {
    let (t, b, d, h, q) = dims;
    let shape = Shape::new(t, b, d, h, q).map_err(error)?;
    let activation: Activation = choice("activation", activation)?;
    let loss_at: LossAt = choice("loss_at", loss_at)?;
    let vec = |name: &str, a: &PyReadonlyArrayDyn<'_, f64>| slice(name, a).map(<[f64]>::to_vec);
    let opt = |name: &str, a: &Option<PyReadonlyArrayDyn<'_, f64>>| a.as_ref().map(|a| vec(name, a)).transpose();
    let params = Params {
        w_hx: vec("w_hx", &w_hx)?,
        w_hh: vec("w_hh", &w_hh)?,
        w_qh: vec("w_qh", &w_qh)?,
        b_h: opt("b_h", &b_h)?,
        b_q: opt("b_q", &b_q)?,
    };
    let targets = match (&y, &labels) {
        (Some(y), None) => Targets::Mse(vec("y", y)?),
        (None, Some(l)) => Targets::Xent(slice("labels", l)?.to_vec()),
        _ => return Err(PyValueError::new_err("give the targets as exactly one of `y` (mse) or `labels` (xent)")),
    };
    let p = Problem::new(shape, activation, params, vec("x", &x)?, opt("h0", &h0)?, targets).map_err(error)?;
    Ok(PyProblem { p: p.with_loss_at(loss_at) })
}

/// A seeded random problem (`bptt::random_problem`).
#[pyfunction]
#[pyo3(signature = (dims, activation, loss, loss_at, bias, seed, spectral_radius, random_h0))]
#[allow(clippy::too_many_arguments)]
pub fn random_problem(
    py: Python<'_>,
    dims: (usize, usize, usize, usize, usize),
    activation: &str,
    loss: &str,
    loss_at: &str,
    bias: bool,
    seed: u64,
    spectral_radius: Option<f64>,
    random_h0: bool,
) -> PyResult<PyProblem> {
    let (t, b, d, h, q) = dims;
    let mut spec = bptt::ProblemSpec::new(Shape::new(t, b, d, h, q).map_err(error)?);
    spec.activation = choice("activation", activation)?;
    spec.loss = choice::<LossFn>("loss", loss)?;
    spec.loss_at = choice("loss_at", loss_at)?;
    (spec.bias, spec.seed, spec.spectral_radius, spec.random_h0) = (bias, seed, spectral_radius, random_h0);
    let p = py.detach(|| bptt::random_problem(&spec)).map_err(error)?;
    Ok(PyProblem { p })
}

#[pyfunction]
#[pyo3(signature = (path, activation=None, loss=None, loss_at=None))]
pub fn load_problem(
    py: Python<'_>,
    path: PathBuf,
    activation: Option<&str>,
    loss: Option<&str>,
    loss_at: Option<&str>,
) -> PyResult<PyProblem> {
    let given = bptt::io::Overrides {
        activation: activation.map(|a| choice("activation", a)).transpose()?,
        loss: loss.map(|l| choice("loss", l)).transpose()?,
        loss_at: loss_at.map(|l| choice("loss_at", l)).transpose()?,
    };
    let p = py.detach(|| bptt::io::load_problem_with(&path, &given)).map_err(error)?;
    Ok(PyProblem { p })
}

#[pyfunction]
pub fn save_problem(py: Python<'_>, path: PathBuf, problem: &PyProblem) -> PyResult<()> {
    py.detach(|| bptt::io::save_problem(&path, &problem.p)).map_err(error)
}

/// "problem" or "result": which kind of file `path` holds, from its tensors' names (a result
/// file has `grad_w_hh`), for `bptt.load`.
#[pyfunction]
pub fn file_kind(path: PathBuf) -> PyResult<&'static str> {
    let (mut f, len) = bptt::io::open_regular(&path).map_err(error)?;
    let mut prefix = [0u8; 8];
    let shown = path.display().to_string();
    let bad = || PyValueError::new_err(format!("{}: not a valid safetensors file", bptt::error::one_line(&shown)));
    std::io::Read::read_exact(&mut f, &mut prefix).map_err(|_| bad())?;
    let n = u64::from_le_bytes(prefix);
    if n > bptt::io::MAX_HEADER_BYTES || n > len.saturating_sub(8) {
        return Err(bad());
    }
    let mut header = vec![0u8; n as usize];
    std::io::Read::read_exact(&mut f, &mut header).map_err(|_| bad())?;
    let json: serde_json::Value = serde_json::from_slice(&header).map_err(|_| bad())?;
    Ok(if json.get("grad_w_hh").is_some() { "result" } else { "problem" })
}

/// A result as a dict of arrays, by the file names (docs/model.md), states when kept.
pub fn result_dict<'py>(py: Python<'py>, g: &BpttResult, s: Shape, bias: bool) -> PyResult<Bound<'py, PyDict>> {
    let Shape { steps: t, batch: b, input: d, hidden: h, output: q } = s;
    let out = PyDict::new(py);
    out.set_item("loss", g.loss)?;
    out.set_item("grad_w_hx", f64s(py, &g.grad_w_hx, &[h, d])?)?;
    out.set_item("grad_w_hh", f64s(py, &g.grad_w_hh, &[h, h])?)?;
    out.set_item("grad_w_qh", f64s(py, &g.grad_w_qh, &[q, h])?)?;
    if bias {
        out.set_item("grad_b_h", g.grad_b_h.as_ref().map(|v| f64s(py, v, &[h])).transpose()?)?;
        out.set_item("grad_b_q", g.grad_b_q.as_ref().map(|v| f64s(py, v, &[q])).transpose()?)?;
    }
    out.set_item("grad_h0", f64s(py, &g.grad_h0, &[b, h])?)?;
    out.set_item("grad_h_norm", f64s(py, &g.grad_h_norm, &[t])?)?;
    if !g.h.is_empty() {
        out.set_item("h", f64s(py, &g.h, &[t, b, h])?)?;
    }
    if !g.o.is_empty() {
        out.set_item("o", f64s(py, &g.o, &[t, b, q])?)?;
    }
    Ok(out)
}

/// A result file: (the dict of its tensors, its shape, its metadata).
#[pyfunction]
#[allow(clippy::type_complexity)]
pub fn load_grads<'py>(
    py: Python<'py>,
    path: PathBuf,
) -> PyResult<(Bound<'py, PyDict>, (usize, usize, usize, usize, usize), BTreeMap<String, String>)> {
    let loaded = py.detach(|| bptt::io::load_grads(&path)).map_err(error)?;
    let s = loaded.shape;
    let dict = result_dict(py, &loaded.grads, s, loaded.grads.grad_b_h.is_some())?;
    Ok((dict, (s.steps, s.batch, s.input, s.hidden, s.output), loaded.metadata))
}

/// Writes a result: its tensors (a dict as `compute` returns) for the problem's shape.
#[pyfunction]
pub fn save_grads(py: Python<'_>, path: PathBuf, result: &Bound<'_, PyDict>, problem: &PyProblem) -> PyResult<()> {
    let s = problem.p.shape;
    let get = |name: &str| -> PyResult<Option<Vec<f64>>> {
        match result.get_item(name)? {
            Some(v) if !v.is_none() => {
                let a: PyReadonlyArrayDyn<'_, f64> = v.extract()?;
                Ok(Some(slice(name, &a)?.to_vec()))
            }
            _ => Ok(None),
        }
    };
    let need = |name: &str| get(name)?.ok_or_else(|| PyValueError::new_err(format!("the result has no `{name}`")));
    let loss: f64 =
        result.get_item("loss")?.ok_or_else(|| PyValueError::new_err("the result has no `loss`"))?.extract()?;
    let h = get("h")?.unwrap_or_default();
    let o = get("o")?.unwrap_or_default();
    let states = !h.is_empty() && !o.is_empty();
    let g = BpttResult {
        loss,
        grad_w_hx: need("grad_w_hx")?,
        grad_w_hh: need("grad_w_hh")?,
        grad_w_qh: need("grad_w_qh")?,
        grad_b_h: get("grad_b_h")?,
        grad_b_q: get("grad_b_q")?,
        grad_h0: need("grad_h0")?,
        grad_h_norm: need("grad_h_norm")?,
        h,
        o,
    };
    py.detach(|| bptt::io::save_grads(&path, &g, &s, states, &BTreeMap::new())).map_err(error)
}

/// Truncation from the keywords: K steps, or randomised with cut probability P.
pub fn truncation(truncate: Option<usize>, truncate_random: Option<f64>, seed: u64) -> PyResult<Option<Truncation>> {
    match (truncate, truncate_random) {
        (Some(_), Some(_)) => Err(PyValueError::new_err("`truncate` is K steps or 'random:P', not both")),
        (Some(k), None) => Ok(Some(Truncation::Regular(k))),
        (None, Some(p)) => Ok(Some(Truncation::Random { p, seed })),
        (None, None) => Ok(None),
    }
}

/// One forward + backward pass of `problem` on `device` ("gpu", "cpu" or "reference"), as the
/// options say: a dict of arrays (see `result_dict`), with `clip_norm` (‖g‖ before clipping)
/// when it clips. Under `memory` (bytes for what grows with T) or `checkpoints`, the path
/// checkpoints its states (`bptt::variant::memory`), and the dict has `forward_steps`.
#[pyfunction]
#[pyo3(signature = (problem, device, schedule, adapter, backend, software, truncate, truncate_random, truncate_seed, segments, clip, keep_states, max_memory, memory, checkpoints))]
#[allow(clippy::too_many_arguments)]
pub fn compute<'py>(
    py: Python<'py>,
    problem: &PyProblem,
    device: &str,
    schedule: &str,
    adapter: Option<String>,
    backend: Option<String>,
    software: bool,
    truncate: Option<usize>,
    truncate_random: Option<f64>,
    truncate_seed: u64,
    segments: Option<usize>,
    clip: Option<f64>,
    keep_states: bool,
    max_memory: Option<u64>,
    memory: Option<u64>,
    checkpoints: Option<usize>,
) -> PyResult<Bound<'py, PyDict>> {
    let p = &problem.p;
    let s = p.shape;
    let schedule: Schedule = choice("schedule", schedule)?;
    let trunc = truncation(truncate, truncate_random, truncate_seed)?;
    let options = GradientOptions::new(trunc, segments, clip, s.steps).map_err(error)?;
    let budget = MemoryOptions { budget: memory, checkpoints };
    budget.check().map_err(error)?;
    if budget.is_set() && segments.is_some() {
        return Err(error(bptt::variant::segments_and_memory()));
    }
    if budget.is_set() && keep_states {
        return Err(PyValueError::new_err(
            "`keep_states` needs every state at once: it cannot be combined with `memory` or `checkpoints`",
        ));
    }
    // The CPU paths' plans (the GPU's needs its adapter's limits).
    let plan = match device {
        "cpu" => {
            let t = options.truncate;
            let (costs, full) = (fast::costs(s, t), fast::full_bytes(s, t));
            plan_path("cpu", s.steps, &budget, &costs, full, None).map_err(error)?.plan
        }
        "reference" => {
            let t = options.truncate;
            let (costs, full) = (checkpointed::costs(s, t), checkpointed::full_bytes(s, t));
            plan_path("cpu-ref", s.steps, &budget, &costs, full, None).map_err(error)?.plan
        }
        "gpu" => None,
        other => {
            return Err(PyValueError::new_err(format!(
                "`device` must be one of gpu, cpu, reference, not '{}'",
                bptt::error::quote(other)
            )));
        }
    };
    let paths = match device {
        "gpu" => Paths { gpu: true, gpu_states: keep_states, ..Default::default() },
        "cpu" => Paths { fast_cpu: plan.is_none(), ..Default::default() },
        _ => Paths { reference: plan.is_none(), ..Default::default() },
    };
    let req = if device == "gpu" { Some(adapter_request(adapter, backend, software)?) } else { None };
    let what = format!("this run ({}, `device` {device})", s);
    let (mut g, clip_norm, forward_steps) = py
        .detach(|| -> bptt::Result<(BpttResult, Option<f64>, Option<u64>)> {
            check_host(host_bytes(s, paths), max_memory, &what, "lower `steps` or `batch`, or give `memory`")?;
            match device {
                "gpu" => {
                    let ctx = gpu_context(req.as_ref().expect("made for the GPU"))?;
                    let lanes = match options.truncate {
                        Some(Truncation::Regular(k)) if k < s.steps => Some(k as u32),
                        _ => None,
                    };
                    let kind = if lanes.is_some() { Schedule::Fused } else { schedule };
                    let (full, costs) = bptt::gpu::memory_costs(&ctx.limits, s, kind, lanes);
                    // A shape whose states the adapter cannot bind is checkpointed unasked.
                    let forced = bptt::gpu::limits(&ctx, s, kind, lanes)
                        .err()
                        .filter(|_| segments.is_none())
                        .map(|e| format!("checkpointed automatically: storing every state does not fit ({e})"));
                    let plan = plan_path("gpu", s.steps, &budget, &costs, full, forced)?.plan;
                    let mut runner = GpuRunner::with_plan(&ctx, schedule, options.clone(), p, plan)?;
                    let (g, _) = runner.run(p, keep_states)?;
                    Ok((g, runner.clip_norm, runner.forward_steps))
                }
                "cpu" => options.fast_planned(p, plan.as_ref()),
                _ => options.reference_planned(p, plan.as_ref()),
            }
        })
        .map_err(error)?;
    if !keep_states {
        (g.h, g.o) = (Vec::new(), Vec::new());
    }
    let out = result_dict(py, &g, p.shape, p.has_bias())?;
    if clip.is_some() {
        out.set_item("clip_norm", clip_norm)?;
    }
    if let Some(steps) = forward_steps {
        out.set_item("forward_steps", steps)?;
    }
    Ok(out)
}
