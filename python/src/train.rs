//! Training (`bptt::train`): the report (its JSON), the trained weights as arrays, the model
//! file, and the curve as SVG.

use std::path::PathBuf;

use bptt::train::{InitRecurrent, OptimKind, Partition, Task, TrainConfig, TrainDevice, Trained};
use numpy::PyArrayDyn;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::arrays::array;
use crate::check::svg_text;
use crate::{adapter_request, choice, error};

/// A finished training run.
#[pyclass(frozen, name = "Trained", module = "bptt")]
pub struct PyTrained {
    trained: Trained,
}

#[pymethods]
impl PyTrained {
    /// The report as the JSON of `bptt train --json` (docs/training.md).
    fn json(&self) -> PyResult<String> {
        serde_json::to_string(&self.trained.report)
            .map_err(|e| PyValueError::new_err(format!("the report as JSON: {e}")))
    }

    /// The trained weights: w_hx `[h, d]`, w_hh `[h, h]`, w_qh `[q, h]`, b_h `[h]`, b_q `[q]`
    /// (float32, as trained).
    fn weights<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let r = &self.trained.report;
        let (d, h, q) = (r.input, r.hidden, r.output);
        let w = &self.trained.weights;
        let out = PyDict::new(py);
        let put = |name: &str, v: &[f32], dims: &[usize]| -> PyResult<()> {
            let a: Bound<'py, PyArrayDyn<f32>> = array(py, v.to_vec(), dims)?;
            out.set_item(name, a)
        };
        put("w_hx", &w.w_hx, &[h, d])?;
        put("w_hh", &w.w_hh, &[h, h])?;
        put("w_qh", &w.w_qh, &[q, h])?;
        put("b_h", &w.b_h, &[h])?;
        put("b_q", &w.b_q, &[q])?;
        Ok(out)
    }

    /// The model file's metadata (the task, φ, the text's alphabet, ...).
    fn metadata(&self) -> std::collections::BTreeMap<String, String> {
        self.trained.metadata.clone()
    }

    /// Writes the weights as a model file (`bptt train --save-model`), for `init_from`.
    fn save_model(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        let r = &self.trained.report;
        py.detach(|| {
            bptt::io::save_model(&path, self.trained.tensors(), (r.input, r.hidden, r.output), &self.trained.metadata)
        })
        .map_err(error)
    }

    /// The training and held-out curves with the baseline, as SVG.
    fn plot_svg(&self, py: Python<'_>) -> PyResult<String> {
        py.detach(|| svg_text(|p| bptt::plot::write_train_plot(p, &self.trained.report)))
    }
}

/// `bptt train` as a call: every keyword is a field of `TrainConfig` (docs/training.md).
#[pyfunction]
#[pyo3(signature = (task, text, steps, hidden, batch, iters, activation, init_recurrent, init_scale, optim, lr, momentum, clip, truncate, truncate_random, truncate_seed, device, adapter, backend, software, seed, log_every, eval_every, eval_size, partition, sample, prompt, init_from, max_memory, memory, checkpoints))]
#[allow(clippy::too_many_arguments)]
pub fn train(
    py: Python<'_>,
    task: &str,
    text: Option<PathBuf>,
    steps: Option<usize>,
    hidden: usize,
    batch: usize,
    iters: usize,
    activation: Option<&str>,
    init_recurrent: &str,
    init_scale: f64,
    optim: &str,
    lr: Option<f64>,
    momentum: f64,
    clip: Option<f64>,
    truncate: Option<usize>,
    truncate_random: Option<f64>,
    truncate_seed: u64,
    device: &str,
    adapter: Option<String>,
    backend: Option<String>,
    software: bool,
    seed: u64,
    log_every: usize,
    eval_every: usize,
    eval_size: usize,
    partition: Option<&str>,
    sample: Option<usize>,
    prompt: Option<String>,
    init_from: Option<PathBuf>,
    max_memory: Option<u64>,
    memory: Option<u64>,
    checkpoints: Option<usize>,
) -> PyResult<PyTrained> {
    let device: TrainDevice = choice("device", device)?;
    let config = TrainConfig {
        task: choice::<Task>("task", task)?,
        text,
        steps,
        hidden,
        batch,
        iters,
        activation: activation.map(|a| choice("activation", a)).transpose()?,
        init_recurrent: choice::<InitRecurrent>("init_recurrent", init_recurrent)?,
        init_scale,
        optim: choice::<OptimKind>("optim", optim)?,
        lr,
        momentum,
        clip,
        truncate: crate::problem::truncation(truncate, truncate_random, truncate_seed)?,
        device,
        adapter: if device == TrainDevice::Gpu {
            adapter_request(adapter, backend, software)?
        } else {
            Default::default()
        },
        seed,
        log_every,
        eval_every,
        eval_size,
        partition: partition.map(|p| choice::<Partition>("partition", p)).transpose()?,
        sample,
        prompt,
        init_from,
        max_memory,
        memory,
        checkpoints,
    };
    let trained = py.detach(|| bptt::train(&config)).map_err(error)?;
    Ok(PyTrained { trained })
}
