//! The gradient check and the sweep: the report (its JSON, for the Python object's fields),
//! the result it describes, and its figures as SVG text for notebooks.

use bptt::check::{CheckConfig, CheckReport, Engines};
use bptt::gpu::Schedule;
use bptt::model::Choice;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::problem::{PyProblem, result_dict, truncation};
use crate::{adapter_request, choice, error};

/// A finished check's report.
#[pyclass(frozen, name = "CheckReport", module = "bptt")]
pub struct PyCheckReport {
    report: CheckReport,
    /// The problem's bias flag, for the result's tensors.
    bias: bool,
}

/// Draws a figure into a temporary .svg file with `write` and returns its text.
pub fn svg_text(write: impl FnOnce(&std::path::Path) -> bptt::Result<()>) -> PyResult<String> {
    let dir =
        tempfile::tempdir().map_err(|e| pyo3::exceptions::PyOSError::new_err(format!("a temporary directory: {e}")))?;
    let path = dir.path().join("figure.svg");
    write(&path).map_err(error)?;
    std::fs::read_to_string(&path).map_err(|e| pyo3::exceptions::PyOSError::new_err(format!("{}: {e}", path.display())))
}

#[pymethods]
impl PyCheckReport {
    /// The report as the JSON of `bptt --json` (docs/report.md).
    fn json(&self) -> PyResult<String> {
        serde_json::to_string(&self.report).map_err(|e| PyValueError::new_err(format!("the report as JSON: {e}")))
    }

    /// The result the report describes (the GPU's when it ran), as a dict of arrays; None for
    /// a sweep.
    fn result<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        self.report.result.as_ref().map(|g| result_dict(py, g, self.report.shape, self.bias)).transpose()
    }

    /// The unrolled computation graph, each h_t coloured by ‖∂L/∂h_t‖, as SVG.
    fn graph_svg(&self, py: Python<'_>) -> PyResult<String> {
        py.detach(|| svg_text(|p| bptt::graph::write_graph(p, &self.report)))
    }

    /// ‖∂L/∂h_t‖ and the reach profile against t (every radius of a sweep), as SVG.
    fn plot_svg(&self, py: Python<'_>) -> PyResult<String> {
        py.detach(|| svg_text(|p| bptt::plot::write_check_plot(p, &self.report)))
    }
}

#[allow(clippy::too_many_arguments)]
fn config(
    compute: &str,
    schedule: &str,
    tolerance: f64,
    repeat: Option<u32>,
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
    cpu_peak: bool,
) -> PyResult<CheckConfig> {
    // Python's name for the f64 reference is "reference" (the command's is cpu-ref).
    let compute = if compute == "reference" { "cpu-ref" } else { compute };
    let compute: Engines = Engines::from_name(compute).ok_or_else(|| {
        PyValueError::new_err(format!(
            "`compute` must be one of both, gpu, cpu, reference, not '{}'",
            bptt::error::quote(compute)
        ))
    })?;
    let schedule: Schedule = choice("schedule", schedule)?;
    Ok(CheckConfig {
        compute,
        schedule,
        tolerance,
        repeat,
        adapter: if compute.gpu() { adapter_request(adapter, backend, software)? } else { Default::default() },
        truncate: truncation(truncate, truncate_random, truncate_seed)?,
        segments,
        clip,
        keep_states,
        max_memory,
        memory,
        checkpoints,
        cpu_peak,
    })
}

/// The gradient check of `problem` (`bptt::check_with`).
#[pyfunction]
#[pyo3(signature = (problem, compute, schedule, tolerance, repeat, adapter, backend, software, truncate, truncate_random, truncate_seed, segments, clip, keep_states, max_memory, memory, checkpoints, cpu_peak))]
#[allow(clippy::too_many_arguments)]
pub fn check(
    py: Python<'_>,
    problem: &PyProblem,
    compute: &str,
    schedule: &str,
    tolerance: f64,
    repeat: Option<u32>,
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
    cpu_peak: bool,
) -> PyResult<PyCheckReport> {
    let c = config(
        compute,
        schedule,
        tolerance,
        repeat,
        adapter,
        backend,
        software,
        truncate,
        truncate_random,
        truncate_seed,
        segments,
        clip,
        keep_states,
        max_memory,
        memory,
        checkpoints,
        cpu_peak,
    )?;
    let p = problem.p.clone();
    let bias = p.has_bias();
    let report = py.detach(|| bptt::check_with(p, &c, &bptt::Quiet)).map_err(error)?;
    Ok(PyCheckReport { report, bias })
}

/// The random problem at each spectral radius (`bptt::sweep`).
#[pyfunction]
#[pyo3(signature = (dims, activation, loss, loss_at, bias, seed, random_h0, radii, compute, schedule, tolerance, repeat, adapter, backend, software, max_memory, memory, checkpoints))]
#[allow(clippy::too_many_arguments)]
pub fn sweep(
    py: Python<'_>,
    dims: (usize, usize, usize, usize, usize),
    activation: &str,
    loss: &str,
    loss_at: &str,
    bias: bool,
    seed: u64,
    random_h0: bool,
    radii: Vec<f64>,
    compute: &str,
    schedule: &str,
    tolerance: f64,
    repeat: Option<u32>,
    adapter: Option<String>,
    backend: Option<String>,
    software: bool,
    max_memory: Option<u64>,
    memory: Option<u64>,
    checkpoints: Option<usize>,
) -> PyResult<PyCheckReport> {
    let c = config(
        compute,
        schedule,
        tolerance,
        repeat,
        adapter,
        backend,
        software,
        None,
        None,
        0,
        None,
        None,
        false,
        max_memory,
        memory,
        checkpoints,
        false,
    )?;
    let (t, b, d, h, q) = dims;
    let mut spec = bptt::ProblemSpec::new(bptt::Shape::new(t, b, d, h, q).map_err(error)?);
    spec.activation = choice("activation", activation)?;
    spec.loss = choice("loss", loss)?;
    spec.loss_at = choice("loss_at", loss_at)?;
    (spec.bias, spec.seed, spec.random_h0) = (bias, seed, random_h0);
    let report = py.detach(|| bptt::sweep(&spec, &radii, &c)).map_err(error)?;
    Ok(PyCheckReport { report, bias })
}
