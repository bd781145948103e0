//! `bptt._lib`: the library's calls for Python. The Python package (python/bptt) checks and
//! converts the arguments (shapes, dtypes, names) and wraps the results; this module runs the
//! library with the GIL released, turns every `bptt::Error` into a Python exception with the
//! library's one-line message (ValueError for bad input, RuntimeError for run-time failures,
//! OSError for files), and prints nothing.

mod arrays;
mod check;
mod layer;
mod problem;
mod train;

use std::sync::{Arc, Mutex};

use bptt::gpu::{AdapterRequest, BackendChoice, GpuContext, Origin};
use bptt::model::Choice;
use pyo3::exceptions::{PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;

/// The library's config fields whose Python keyword has another name.
const RENAMED: &[(&str, &str)] = &[("`backend_list`", "`backend`")];

/// A library error as a Python exception, its message one line with Python's keyword names.
pub fn error(e: bptt::Error) -> PyErr {
    let mut msg = bptt::error::one_line(&e.to_string());
    for (field, keyword) in RENAMED {
        msg = msg.replace(field, keyword);
    }
    match e {
        bptt::Error::Invalid(_) | bptt::Error::Tensor { .. } | bptt::Error::Limit(_) => PyValueError::new_err(msg),
        bptt::Error::Io { .. } => PyOSError::new_err(msg),
        bptt::Error::NoAdapter(_) | bptt::Error::Gpu(_) | bptt::Error::Failed(_) => PyRuntimeError::new_err(msg),
    }
}

/// `value` as the choice named so, or a ValueError naming the keyword and every choice.
pub fn choice<C: Choice>(keyword: &str, value: &str) -> PyResult<C> {
    C::from_name(value).ok_or_else(|| {
        let names: Vec<&str> = C::ALL.iter().map(|c| c.name()).collect();
        PyValueError::new_err(format!(
            "`{keyword}` must be one of {}, not '{}'",
            names.join(", "),
            bptt::error::quote(value)
        ))
    })
}

/// The adapter request of the keywords `adapter` (a part of its name), `backend` (vulkan,
/// metal, dx12, gl, or several comma-separated) and `software`; where a keyword is not given,
/// wgpu's variables `WGPU_ADAPTER_NAME` and `WGPU_BACKEND` are honoured, as by the command.
pub fn adapter_request(adapter: Option<String>, backend: Option<String>, software: bool) -> PyResult<AdapterRequest> {
    let env = |var: &str| std::env::var(var).ok().filter(|v| !v.trim().is_empty());
    let (backend, backend_list) = match backend {
        Some(b) => match BackendChoice::from_name(b.trim()) {
            Some(choice) => (choice, None),
            None => (BackendChoice::Auto, Some((b, Origin::Field))),
        },
        None => (BackendChoice::Auto, env("WGPU_BACKEND").map(|v| (v, Origin::Env("WGPU_BACKEND".into())))),
    };
    let name = match adapter {
        Some(a) => Some((a, Origin::Field)),
        None => env("WGPU_ADAPTER_NAME").map(|v| (v, Origin::Env("WGPU_ADAPTER_NAME".into()))),
    };
    Ok(AdapterRequest { backend, backend_list, name, software, recurrent_layout: None, max_binding: None })
}

/// One GPU context per adapter request for the whole process: opening one takes hundreds of
/// milliseconds, and every layer and call on that adapter shares it.
pub fn gpu_context(req: &AdapterRequest) -> bptt::Result<Arc<GpuContext>> {
    static CONTEXTS: Mutex<Vec<(AdapterRequest, Arc<GpuContext>)>> = Mutex::new(Vec::new());
    let mut contexts = CONTEXTS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, ctx)) = contexts.iter().find(|(r, _)| r == req) {
        return Ok(ctx.clone());
    }
    let ctx = Arc::new(GpuContext::new(req)?);
    contexts.push((req.clone(), ctx.clone()));
    Ok(ctx)
}

/// The adapters wgpu sees, one line each (as `bptt --list-adapters`).
#[pyfunction]
#[pyo3(signature = (adapter=None, backend=None, software=false))]
fn list_adapters(
    py: Python<'_>,
    adapter: Option<String>,
    backend: Option<String>,
    software: bool,
) -> PyResult<Vec<String>> {
    let req = adapter_request(adapter, backend, software)?;
    let list = py.detach(|| bptt::gpu::list_adapters(&req)).map_err(error)?;
    Ok(list.iter().map(|a| a.to_string()).collect())
}

/// The adapter a GPU call with these keywords uses, as one line.
#[pyfunction]
#[pyo3(signature = (adapter=None, backend=None, software=false))]
fn adapter_info(py: Python<'_>, adapter: Option<String>, backend: Option<String>, software: bool) -> PyResult<String> {
    let req = adapter_request(adapter, backend, software)?;
    let ctx = py.detach(|| gpu_context(&req)).map_err(error)?;
    Ok(ctx.adapter.to_string())
}

/// A number of bytes from a string such as "8000000000", "8G" or "512MiB" (None if it is not one).
#[pyfunction]
fn parse_bytes(v: &str) -> Option<u64> {
    bptt::memory::parse_bytes(v)
}

#[pymodule]
fn _lib(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<problem::PyProblem>()?;
    m.add_class::<check::PyCheckReport>()?;
    m.add_class::<train::PyTrained>()?;
    m.add_class::<layer::PyLayer>()?;
    m.add_function(wrap_pyfunction!(problem::make_problem, m)?)?;
    m.add_function(wrap_pyfunction!(problem::random_problem, m)?)?;
    m.add_function(wrap_pyfunction!(problem::load_problem, m)?)?;
    m.add_function(wrap_pyfunction!(problem::save_problem, m)?)?;
    m.add_function(wrap_pyfunction!(problem::load_grads, m)?)?;
    m.add_function(wrap_pyfunction!(problem::save_grads, m)?)?;
    m.add_function(wrap_pyfunction!(problem::file_kind, m)?)?;
    m.add_function(wrap_pyfunction!(problem::compute, m)?)?;
    m.add_function(wrap_pyfunction!(check::check, m)?)?;
    m.add_function(wrap_pyfunction!(check::sweep, m)?)?;
    m.add_function(wrap_pyfunction!(train::train, m)?)?;
    m.add_function(wrap_pyfunction!(list_adapters, m)?)?;
    m.add_function(wrap_pyfunction!(adapter_info, m)?)?;
    m.add_function(wrap_pyfunction!(parse_bytes, m)?)?;
    m.add("VERSION", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
