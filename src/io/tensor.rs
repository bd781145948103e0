//! Typed access to safetensors tensors: decoding to f64 / i64, checking shapes against named
//! sizes (T, B, d, h, q), and encoding for writing.

use std::collections::BTreeMap;

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

use crate::error::{Error, Result};

/// The named sizes seen so far and which tensor set each, so a mismatch can say where the
/// expected value came from.
#[derive(Default)]
pub(super) struct Dims {
    known: Vec<(&'static str, usize, String)>,
}

impl Dims {
    pub(super) fn get(&self, sym: &str) -> Option<usize> {
        self.known.iter().find(|k| k.0 == sym).map(|k| k.1)
    }

    /// Checks `shape` against `spec` (e.g. `["h", "d"]`): the rank, that no size is zero, and
    /// that each named size agrees with earlier tensors. Unknown sizes are learned from it.
    pub(super) fn check(&mut self, name: &str, shape: &[usize], spec: &[&'static str]) -> Result<()> {
        let spec_str = format!("[{}]", spec.join(", "));
        if shape.len() != spec.len() {
            return Err(Error::tensor(
                name,
                format!("expected rank {} {spec_str}, got rank {} with shape {shape:?}", spec.len(), shape.len()),
            ));
        }
        for (&n, &sym) in shape.iter().zip(spec) {
            if n == 0 {
                return Err(Error::tensor(
                    name,
                    format!("shape {shape:?} for {spec_str} has {sym} = 0; sizes must be ≥ 1"),
                ));
            }
            if let Some((_, want, from)) = self.known.iter().find(|k| k.0 == sym) {
                if *want != n {
                    let expected: Vec<String> =
                        spec.iter().map(|s| self.get(s).map_or("?".into(), |v| v.to_string())).collect();
                    return Err(Error::tensor(
                        name,
                        format!(
                            "expected shape {spec_str} = [{}], got {shape:?} \
                             ({sym} = {want} from `{from}`)",
                            expected.join(", ")
                        ),
                    ));
                }
            } else {
                self.known.push((sym, n, name.to_string()));
            }
        }
        Ok(())
    }
}

/// The tensor's values as f64 (F64 as is, F32 widened exactly).
pub(super) fn floats(name: &str, v: &TensorView) -> Result<Vec<f64>> {
    let data = v.data();
    match v.dtype() {
        Dtype::F64 => {
            Ok(data.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("chunks of 8"))).collect())
        }
        Dtype::F32 => {
            Ok(data.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("chunks of 4")) as f64).collect())
        }
        other => Err(Error::tensor(name, format!("dtype {other} is not supported; expected F32 or F64"))),
    }
}

/// The tensor's values as i64 (I64 as is, I32 widened).
pub(super) fn ints(name: &str, v: &TensorView) -> Result<Vec<i64>> {
    let data = v.data();
    match v.dtype() {
        Dtype::I64 => {
            Ok(data.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().expect("chunks of 8"))).collect())
        }
        Dtype::I32 => {
            Ok(data.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().expect("chunks of 4")) as i64).collect())
        }
        other => Err(Error::tensor(name, format!("dtype {other} is not supported; expected I32 or I64"))),
    }
}

/// Fails naming every tensor in the file that is not in `allowed`: a misspelt name (`w_xh`)
/// must not be silently ignored.
pub(super) fn reject_unknown(st: &SafeTensors, allowed: &[&str]) -> Result<()> {
    let mut unknown: Vec<String> =
        st.names().into_iter().filter(|n| !allowed.contains(n)).map(crate::error::quote).collect();
    if unknown.is_empty() {
        return Ok(());
    }
    unknown.sort_unstable();
    Err(Error::tensor(
        &unknown.join(", "),
        format!(
            "unknown tensor name{}; the names allowed here are: {}",
            if unknown.len() > 1 { "s" } else { "" },
            allowed.join(" ")
        ),
    ))
}

/// A tensor the file must have.
pub(super) fn required<'a>(st: &SafeTensors<'a>, name: &str, what: &str) -> Result<TensorView<'a>> {
    st.tensor(name).map_err(|_| Error::tensor(name, format!("missing: the file needs {name} {what}")))
}

/// A tensor the file may have.
pub(super) fn optional<'a>(st: &SafeTensors<'a>, name: &str) -> Option<TensorView<'a>> {
    st.tensor(name).ok()
}

/// One tensor to write: name, dtype, shape, little-endian bytes.
pub(super) type Raw = (&'static str, Dtype, Vec<usize>, Vec<u8>);

pub(super) fn f64_tensor(name: &'static str, shape: &[usize], v: &[f64]) -> Raw {
    let bytes = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    (name, Dtype::F64, shape.to_vec(), bytes)
}

pub(super) fn f32_tensor(name: &'static str, shape: &[usize], v: &[f64]) -> Raw {
    let bytes = v.iter().flat_map(|&x| (x as f32).to_le_bytes()).collect();
    (name, Dtype::F32, shape.to_vec(), bytes)
}

pub(super) fn i64_tensor(name: &'static str, shape: &[usize], v: &[i64]) -> Raw {
    let bytes = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    (name, Dtype::I64, shape.to_vec(), bytes)
}

/// The safetensors bytes of `tensors` with `metadata` in the header, the same bytes for the
/// same arguments: the tensors come in safetensors' fixed order (by dtype, then name) and the
/// metadata's keys sorted (safetensors writes a hash map's keys in a different order each run).
pub(super) fn serialize(tensors: &[Raw], metadata: &BTreeMap<String, String>) -> Result<Vec<u8>> {
    let encode = |e: String| Error::Invalid(format!("cannot encode tensors: {e}"));
    let views = tensors
        .iter()
        .map(|(name, dtype, shape, bytes)| TensorView::new(*dtype, shape.clone(), bytes).map(|v| (*name, v)))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| encode(e.to_string()))?;
    let bytes = safetensors::serialize(views, None).map_err(|e| encode(e.to_string()))?;
    if metadata.is_empty() {
        return Ok(bytes);
    }
    // The header without metadata is `{"name":{...},...}` padded with spaces to a multiple of
    // 8 bytes; the metadata goes first, as safetensors puts it, and the tensors' data offsets
    // (relative to the end of the header) are unchanged.
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let tensors_json = std::str::from_utf8(&bytes[8..8 + n]).map_err(|e| encode(e.to_string()))?.trim_end();
    let entries =
        tensors_json.strip_prefix('{').and_then(|s| s.strip_suffix('}')).ok_or_else(|| encode("header".into()))?;
    let mut header = format!(
        "{{\"__metadata__\":{}{}{entries}}}",
        serde_json::to_string(metadata).map_err(|e| encode(e.to_string()))?,
        if entries.is_empty() { "" } else { "," }
    )
    .into_bytes();
    header.resize(header.len().next_multiple_of(8), b' ');
    let mut out = Vec::with_capacity(8 + header.len() + bytes.len() - 8 - n);
    out.extend((header.len() as u64).to_le_bytes());
    out.extend(header);
    out.extend(&bytes[8 + n..]);
    Ok(out)
}
