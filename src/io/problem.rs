//! A problem's inputs as a safetensors file.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use safetensors::SafeTensors;

use super::tensor::{self, Dims, floats, ints, optional, required};
use crate::error::{Error, Result, quote};
use crate::model::{Activation, LossAt, LossFn, Params, Problem, Shape, Targets};

/// The tensor names a problem file may hold (docs/report.md, "Files").
const INPUTS: [&str; 9] = ["w_hx", "w_hh", "w_qh", "b_h", "b_q", "x", "h0", "y", "labels"];

/// Settings given on the command line, which apply instead of the file's `__metadata__` and
/// must not contradict it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Overrides {
    pub activation: Option<Activation>,
    pub loss: Option<LossFn>,
    pub loss_at: Option<LossAt>,
}

/// Reads a problem. `activation` and `loss` (from the command line) apply where given; else
/// the file's `__metadata__` says; else identity, and the loss that the targets present imply.
/// A given value that contradicts the metadata, or a loss that contradicts the targets, is an
/// error. All sizes are inferred from the tensors and cross-checked.
pub fn load_problem(path: &Path, activation: Option<Activation>, loss: Option<LossFn>) -> Result<Problem> {
    load_problem_with(path, &Overrides { activation, loss, loss_at: None })
}

/// `load_problem` with every setting the metadata may hold (`loss_at` too) given or not.
pub fn load_problem_with(path: &Path, given: &Overrides) -> Result<Problem> {
    load_problem_within(path, given, None)
}

/// `load_problem_with`, the file's size checked against `max_memory` (None: the memory
/// available) before it is read.
pub fn load_problem_within(path: &Path, given: &Overrides, max_memory: Option<u64>) -> Result<Problem> {
    let bytes = super::read_bytes(path, max_memory)?;
    let (st, metadata) = super::parse(path, &bytes)?;
    from_tensors(&st, &metadata, given).map_err(|e| super::in_file(e, path))
}

/// Writes a problem's inputs as F64 (labels I64), with `loss`, `activation` and `loss_at` in
/// the metadata, so that `load_problem` gives back exactly the same `Problem`.
pub fn save_problem(path: &Path, p: &Problem) -> Result<()> {
    save_problem_with(path, p, &BTreeMap::new())
}

/// `save_problem` with more metadata (e.g. the seed and the command line); `loss`,
/// `activation` and `loss_at` are always the problem's own.
pub fn save_problem_with(path: &Path, p: &Problem, extra: &BTreeMap<String, String>) -> Result<()> {
    let Shape { steps: t, batch: b, input: d, hidden: h, output: q } = p.shape;
    let w = &p.params;
    let mut tensors = vec![
        tensor::f64_tensor("w_hx", &[h, d], &w.w_hx),
        tensor::f64_tensor("w_hh", &[h, h], &w.w_hh),
        tensor::f64_tensor("w_qh", &[q, h], &w.w_qh),
        tensor::f64_tensor("x", &[t, b, d], &p.x),
        tensor::f64_tensor("h0", &[b, h], &p.h0),
    ];
    if let (Some(b_h), Some(b_q)) = (&w.b_h, &w.b_q) {
        tensors.push(tensor::f64_tensor("b_h", &[h], b_h));
        tensors.push(tensor::f64_tensor("b_q", &[q], b_q));
    }
    tensors.push(match &p.targets {
        Targets::Mse(y) => tensor::f64_tensor("y", &[t, b, q], y),
        Targets::Xent(labels) => {
            let labels: Vec<i64> = labels.iter().map(|&l| l as i64).collect();
            tensor::i64_tensor("labels", &[t, b], &labels)
        }
    });
    let mut metadata = extra.clone();
    metadata.extend([
        ("loss".to_string(), p.loss_fn().name().to_string()),
        ("activation".to_string(), p.activation.name().to_string()),
        ("loss_at".to_string(), loss_at_name(p.loss_at).to_string()),
    ]);
    let bytes = tensor::serialize(&tensors, &metadata)?;
    super::write_atomic(path, &bytes)
}

fn loss_at_name(l: LossAt) -> &'static str {
    match l {
        LossAt::All => "all",
        LossAt::Last => "last",
    }
}

fn from_tensors(st: &SafeTensors, metadata: &HashMap<String, String>, given: &Overrides) -> Result<Problem> {
    tensor::reject_unknown(st, &INPUTS)?;
    let activation = resolve(
        "activation",
        given.activation,
        metadata,
        &[Activation::Identity, Activation::Tanh, Activation::Relu],
        Activation::name,
    )?
    .map_or(Activation::default(), |(a, _)| a);
    let loss = resolve("loss", given.loss, metadata, &[LossFn::Mse, LossFn::Xent], LossFn::name)?;
    let loss_at = resolve("loss_at", given.loss_at, metadata, &[LossAt::All, LossAt::Last], loss_at_name)?
        .map_or(LossAt::default(), |(l, _)| l);

    // Every size is learned from the first tensor that has it, in this order: h and d from
    // w_hx, q from w_qh, T and B from x; later tensors must agree.
    let mut dims = Dims::default();
    let w_hx = float(st, &mut dims, "w_hx", &["h", "d"])?;
    let w_hh = float(st, &mut dims, "w_hh", &["h", "h"])?;
    let w_qh = float(st, &mut dims, "w_qh", &["q", "h"])?;
    let x = float(st, &mut dims, "x", &["T", "B", "d"])?;
    let h0 = optional_float(st, &mut dims, "h0", &["B", "h"])?;
    let b_h = optional_float(st, &mut dims, "b_h", &["h"])?;
    let b_q = optional_float(st, &mut dims, "b_q", &["q"])?;
    match (&b_h, &b_q) {
        (Some(_), None) => return Err(missing_pair("b_q", "b_h")),
        (None, Some(_)) => return Err(missing_pair("b_h", "b_q")),
        _ => {}
    }
    let y = optional_float(st, &mut dims, "y", &["T", "B", "q"])?;
    let labels_view = optional(st, "labels");

    // Which targets the file holds decides the loss; a loss given or in the metadata must agree.
    let present = match (&y, &labels_view) {
        (Some(_), Some(_)) => {
            return Err(Error::Invalid(
                "the file has both `y` (mse targets) and `labels` (xent targets); \
                 keep one"
                    .into(),
            ));
        }
        (None, None) => {
            return Err(Error::Invalid(
                "missing targets: the file needs `y` [T, B, q] (mse) or `labels` [T, B] (xent)".into(),
            ));
        }
        (Some(_), None) => LossFn::Mse,
        (None, Some(_)) => LossFn::Xent,
    };
    if let Some((chosen, source)) = loss
        && chosen != present
    {
        let (has, lacks) = match present {
            LossFn::Mse => ("`y` (mse targets)", "`labels`"),
            LossFn::Xent => ("`labels` (xent targets)", "`y`"),
        };
        return Err(Error::Invalid(format!(
            "{} contradicts the file's tensors: it has {has}, not {lacks}",
            source.describe("loss", chosen.name())
        )));
    }

    // Every size is set by now (w_hx, w_qh and x are required); 0 cannot happen but would
    // be rejected by Shape::new rather than panic.
    let size = |sym: &str| dims.get(sym).unwrap_or(0);
    let (t, b, d, h, q) = (size("T"), size("B"), size("d"), size("h"), size("q"));
    let targets = match (y, labels_view) {
        (Some(y), _) => Targets::Mse(y),
        (None, Some(v)) => {
            let raw = ints("labels", &v)?;
            dims.check("labels", v.shape(), &["T", "B"])?;
            Targets::Xent(labels_in_range(&raw, b, q)?)
        }
        (None, None) => return Err(Error::Invalid("missing targets".into())),
    };

    let shape = Shape::new(t, b, d, h, q)?;
    let params = Params { w_hx, w_hh, w_qh, b_h, b_q };
    // Problem::new checks every value is finite, naming the tensor.
    Ok(Problem::new(shape, activation, params, x, h0, targets)?.with_loss_at(loss_at))
}

/// Reads the required float tensor `name`, checking its dtype and its shape against `spec`.
fn float(st: &SafeTensors, dims: &mut Dims, name: &'static str, spec: &[&'static str]) -> Result<Vec<f64>> {
    let view = required(st, name, &format!("[{}]", spec.join(", ")))?;
    let values = floats(name, &view)?;
    dims.check(name, view.shape(), spec)?;
    Ok(values)
}

/// Reads the float tensor `name` if the file has it.
fn optional_float(
    st: &SafeTensors,
    dims: &mut Dims,
    name: &'static str,
    spec: &[&'static str],
) -> Result<Option<Vec<f64>>> {
    match optional(st, name) {
        None => Ok(None),
        Some(view) => {
            let values = floats(name, &view)?;
            dims.check(name, view.shape(), spec)?;
            Ok(Some(values))
        }
    }
}

/// Where a setting came from, for error messages.
#[derive(Clone, Copy)]
enum Source {
    Argument,
    Metadata,
}

impl Source {
    fn describe(self, key: &str, value: &str) -> String {
        match self {
            Source::Argument => format!("`{key}` {value}"),
            Source::Metadata => format!("the file's metadata {key}={value}"),
        }
    }
}

/// The setting `key`: the argument if given, else the file's metadata, else None. An argument
/// that contradicts the metadata, or metadata that names no known value, is an error.
fn resolve<V: Copy + PartialEq>(
    key: &str,
    arg: Option<V>,
    metadata: &HashMap<String, String>,
    values: &[V],
    name: fn(V) -> &'static str,
) -> Result<Option<(V, Source)>> {
    let from_file = match metadata.get(key) {
        None => None,
        Some(s) => Some(values.iter().copied().find(|&v| name(v) == s).ok_or_else(|| {
            let known: Vec<&str> = values.iter().map(|&v| name(v)).collect();
            Error::Invalid(format!("the file's metadata {key}={} is not one of: {}", quote(s), known.join(" ")))
        })?),
    };
    match (arg, from_file) {
        (Some(a), Some(f)) if a != f => {
            Err(Error::Invalid(format!("`{key}` {} contradicts the file's metadata {key}={}", name(a), name(f))))
        }
        (Some(a), _) => Ok(Some((a, Source::Argument))),
        (None, Some(f)) => Ok(Some((f, Source::Metadata))),
        (None, None) => Ok(None),
    }
}

fn missing_pair(missing: &str, present: &str) -> Error {
    Error::tensor(missing, format!("missing: the file has {present}, and biases come as a pair (b_h [h] and b_q [q])"))
}

/// Labels [T·B] as u32, each in [0, q).
fn labels_in_range(raw: &[i64], b: usize, q: usize) -> Result<Vec<u32>> {
    raw.iter()
        .enumerate()
        .map(|(i, &l)| {
            let at = format!("[{}, {}]", i / b, i % b);
            if l < 0 {
                Err(Error::tensor("labels", format!("label {l} at {at} is negative; labels must be in [0, {q})")))
            } else if l as u64 >= q as u64 {
                Err(Error::tensor("labels", format!("label {l} at {at} is out of range [0, {q}) (q from `w_qh`)")))
            } else {
                Ok(l as u32)
            }
        })
        .collect()
}
