//! A trained model as a file (`bptt train --save-model`, `--init-from`): the F32 tensors
//! `w_hx [h,d]`, `w_hh [h,h]`, `w_qh [q,h]`, `b_h [h]`, `b_q [q]`, with the activation, the task
//! and (for text) the vocabulary in the header's `__metadata__`.

use std::collections::BTreeMap;
use std::path::Path;

use super::tensor::{Dims, f32_tensor, floats, reject_unknown, required, serialize};
use crate::error::{Error, Result};

const NAMES: [&str; 5] = ["w_hx", "w_hh", "w_qh", "b_h", "b_q"];
const SPECS: [&[&str]; 5] = [&["h", "d"], &["h", "h"], &["q", "h"], &["h"], &["q"]];

/// The five tensors (f32 widened exactly to f64, in `NAMES` order), the sizes (d, h, q) and
/// the metadata.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelFile {
    pub tensors: [Vec<f64>; 5],
    pub input: usize,
    pub hidden: usize,
    pub output: usize,
    pub metadata: BTreeMap<String, String>,
}

/// Writes the tensors (each `[name, values]` in `NAMES` order, sizes from d, h, q) atomically.
pub fn save_model(
    path: &Path,
    tensors: [&[f32]; 5],
    dhq: (usize, usize, usize),
    meta: &BTreeMap<String, String>,
) -> Result<()> {
    let (d, h, q) = dhq;
    let shapes: [Vec<usize>; 5] = [vec![h, d], vec![h, h], vec![q, h], vec![h], vec![q]];
    let mut raw = Vec::new();
    for ((name, v), shape) in NAMES.iter().zip(tensors).zip(&shapes) {
        if v.len() != shape.iter().product::<usize>() {
            return Err(Error::tensor(name, format!("{} values for shape {shape:?}", v.len())));
        }
        let wide: Vec<f64> = v.iter().map(|&x| x as f64).collect();
        raw.push(f32_tensor(name, shape, &wide));
    }
    let bytes = serialize(&raw, meta)?;
    super::write_atomic(path, &bytes)
}

/// Reads a model file; any problem (a missing or unknown tensor, inconsistent sizes, NaN) is an
/// error naming the tensor and the file.
pub fn load_model(path: &Path) -> Result<ModelFile> {
    load_model_within(path, None)
}

/// `load_model`, the file's size checked against `max_memory` (None: the memory available).
pub fn load_model_within(path: &Path, max_memory: Option<u64>) -> Result<ModelFile> {
    let bytes = super::read_bytes(path, max_memory)?;
    let (st, metadata) = super::parse(path, &bytes)?;
    let read = || -> Result<ModelFile> {
        reject_unknown(&st, &NAMES)?;
        let mut dims = Dims::default();
        let mut tensors: [Vec<f64>; 5] = Default::default();
        for ((name, spec), out) in NAMES.iter().zip(SPECS).zip(&mut tensors) {
            let v = required(&st, name, &format!("[{}]", spec.join(", ")))?;
            dims.check(name, v.shape(), spec)?;
            *out = floats(name, &v)?;
            if out.iter().any(|x| !x.is_finite()) {
                return Err(Error::tensor(name, "non-finite value(s) (NaN or Inf)"));
            }
        }
        let size = |s: &str| dims.get(s).expect("set by the tensors");
        Ok(ModelFile {
            tensors,
            input: size("d"),
            hidden: size("h"),
            output: size("q"),
            metadata: metadata.clone().into_iter().collect(),
        })
    };
    read().map_err(|e| super::in_file(e, path))
}
