//! The result of one pass (loss, gradients, and optionally the forward states) as a file.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use safetensors::SafeTensors;

use super::tensor::{self, Dims, Raw, floats, optional, required};
use crate::error::{Error, Result};
use crate::model::{BpttResult, Shape};

/// The tensor names a result file may hold.
const RESULTS: [&str; 10] =
    ["loss", "grad_w_hx", "grad_w_hh", "grad_w_qh", "grad_b_h", "grad_b_q", "grad_h0", "grad_h_norm", "h", "o"];

/// A result file read back: the gradients (as f64), the shape they imply, and the metadata.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadedGrads {
    pub shape: Shape,
    /// `h` and `o` are empty when the file has no states.
    pub grads: BpttResult,
    pub metadata: BTreeMap<String, String>,
}

/// Writes `g` as F32 tensors with the model's result names (`grad_b_h`/`grad_b_q` when the
/// problem has biases; `h [T,B,h]` and `o [T,B,q]` with `save_states`), and `metadata` (e.g.
/// the adapter and the command line) in the header. Atomic: an existing `path` is replaced
/// whole or, on any error, left as it was.
pub fn save_grads(
    path: &Path,
    g: &BpttResult,
    shape: &Shape,
    save_states: bool,
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    let Shape { steps: t, batch: b, input: d, hidden: h, output: q } = *shape;
    let mut tensors: Vec<(&'static str, Vec<usize>, &[f64])> = vec![
        ("loss", vec![], std::slice::from_ref(&g.loss)),
        ("grad_w_hx", vec![h, d], &g.grad_w_hx),
        ("grad_w_hh", vec![h, h], &g.grad_w_hh),
        ("grad_w_qh", vec![q, h], &g.grad_w_qh),
        ("grad_h0", vec![b, h], &g.grad_h0),
        ("grad_h_norm", vec![t], &g.grad_h_norm),
    ];
    if let Some(v) = &g.grad_b_h {
        tensors.push(("grad_b_h", vec![h], v));
    }
    if let Some(v) = &g.grad_b_q {
        tensors.push(("grad_b_q", vec![q], v));
    }
    if save_states {
        if g.h.is_empty() || g.o.is_empty() {
            return Err(Error::Invalid(format!(
                "{}: cannot save the states h and o: this result does not keep them",
                path.display()
            )));
        }
        tensors.push(("h", vec![t, b, h], &g.h));
        tensors.push(("o", vec![t, b, q], &g.o));
    }
    let raw = tensors
        .iter()
        .map(|(name, dims, v)| {
            let n: usize = dims.iter().product();
            if v.len() != n {
                // A result that does not match its shape is a bug in the caller, caught here
                // rather than written as a file that would not load.
                return Err(Error::tensor(
                    name,
                    format!("expected {n} values for shape {dims:?} ({shape}), got {}", v.len()),
                ));
            }
            Ok(tensor::f32_tensor(name, dims, v))
        })
        .collect::<Result<Vec<Raw>>>()?;
    let bytes = tensor::serialize(&raw, metadata)?;
    super::write_atomic(path, &bytes)
}

/// Reads a result file (F32 or F64) back as f64, inferring and cross-checking the shape.
/// Values are not required to be finite: an overflowed gradient is a result, not bad input.
pub fn load_grads(path: &Path) -> Result<LoadedGrads> {
    let bytes = super::read_bytes(path, None)?;
    let (st, metadata) = super::parse(path, &bytes)?;
    from_tensors(&st, metadata).map_err(|e| super::in_file(e, path))
}

fn from_tensors(st: &SafeTensors, metadata: HashMap<String, String>) -> Result<LoadedGrads> {
    tensor::reject_unknown(st, &RESULTS)?;
    let mut dims = Dims::default();
    let mut read = |name: &'static str, spec: &[&'static str], needed: bool| -> Result<_> {
        let view = if needed {
            required(st, name, &format!("[{}]", spec.join(", ")))?
        } else {
            match optional(st, name) {
                Some(v) => v,
                None => return Ok(None),
            }
        };
        let values = floats(name, &view)?;
        dims.check(name, view.shape(), spec)?;
        Ok(Some(values))
    };
    let loss = read("loss", &[], true)?.unwrap_or_default();
    let grad_w_hx = read("grad_w_hx", &["h", "d"], true)?.unwrap_or_default();
    let grad_w_hh = read("grad_w_hh", &["h", "h"], true)?.unwrap_or_default();
    let grad_w_qh = read("grad_w_qh", &["q", "h"], true)?.unwrap_or_default();
    let grad_h0 = read("grad_h0", &["B", "h"], true)?.unwrap_or_default();
    let grad_h_norm = read("grad_h_norm", &["T"], true)?.unwrap_or_default();
    let grad_b_h = read("grad_b_h", &["h"], false)?;
    let grad_b_q = read("grad_b_q", &["q"], false)?;
    let h = read("h", &["T", "B", "h"], false)?;
    let o = read("o", &["T", "B", "q"], false)?;
    for (a, b, what) in
        [("grad_b_h", "grad_b_q", grad_b_h.is_some() != grad_b_q.is_some()), ("h", "o", h.is_some() != o.is_some())]
    {
        if what {
            return Err(Error::Invalid(format!("`{a}` and `{b}` come as a pair: the file has one without the other")));
        }
    }
    let size = |sym: &str| dims.get(sym).unwrap_or(0);
    let shape = Shape::new(size("T"), size("B"), size("d"), size("h"), size("q"))?;
    Ok(LoadedGrads {
        shape,
        grads: BpttResult {
            // A rank-0 tensor holds exactly one value.
            loss: loss.first().copied().unwrap_or(f64::NAN),
            grad_w_hx,
            grad_w_hh,
            grad_w_qh,
            grad_b_h,
            grad_b_q,
            grad_h0,
            grad_h_norm,
            h: h.unwrap_or_default(),
            o: o.unwrap_or_default(),
        },
        metadata: metadata.into_iter().collect(),
    })
}
