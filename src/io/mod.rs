//! Problems and results as safetensors files, with the model's tensor names (docs/model.md).
//!
//! Inputs: `w_hx [h,d]`, `w_hh [h,h]`, `w_qh [q,h]`, `x [T,B,d]`, optional `h0 [B,h]`, optional
//! `b_h [h]` + `b_q [q]` (a pair), and `y [T,B,q]` (mse) or `labels [T,B]` (xent). Floats may be
//! F32 or F64 (kept as f64), labels I32 or I64. The header's `__metadata__` may say `loss`
//! (`mse`|`xent`), `activation` (`identity`|`tanh`) and `loss_at` (`all`|`last`).
//!
//! Results: `loss []`, `grad_w_hx`, `grad_w_hh`, `grad_w_qh`, `grad_b_h`, `grad_b_q`,
//! `grad_h0`, `grad_h_norm [T]`, and with states `h [T,B,h]`, `o [T,B,q]`, written as F32.
//!
//! Reading is strict: only regular files, a header of at most 100 MB without repeated keys, and
//! every problem with a file (unknown tensor, wrong rank, size or dtype, bad value, malformed
//! bytes) is an error naming the tensor, exit code 2. Writing is atomic (`write_atomic`).

mod atomic;
mod grads;
mod header;
mod model_file;
mod paths;
mod problem;
mod tensor;

pub use atomic::{write_atomic, write_atomic_with};
pub use grads::{LoadedGrads, load_grads, save_grads};
pub use model_file::{ModelFile, load_model, load_model_within, save_model};
pub use paths::{Input, check_output_path, check_outputs, one_file, open_regular, read_regular, same_file};
pub use problem::{Overrides, load_problem, load_problem_with, load_problem_within, save_problem, save_problem_with};

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use safetensors::SafeTensors;

use crate::error::{Error, Result, one_line, quote};

/// The largest safetensors header accepted (the JSON before the tensors' bytes).
pub const MAX_HEADER_BYTES: u64 = 100_000_000;

/// Reads a safetensors file: a regular file only, its header length checked (at most
/// `MAX_HEADER_BYTES`, within the file) before anything else is read, and the whole file
/// checked against the memory available (`max_memory`, or the system's). Problems are the
/// user's (exit 2).
fn read_bytes(path: &Path, max_memory: Option<u64>) -> Result<Vec<u8>> {
    let shown = || one_line(&path.display().to_string());
    let (mut f, len) = open_regular(path)?;
    let mut prefix = [0u8; 8];
    if len < 8 || f.read_exact(&mut prefix).is_err() {
        return Err(Error::Invalid(format!(
            "{}: not a valid safetensors file: {len} bytes, shorter than the 8-byte header length",
            shown()
        )));
    }
    let header = u64::from_le_bytes(prefix);
    if header > MAX_HEADER_BYTES {
        return Err(Error::Invalid(format!(
            "{}: not a valid safetensors file: its header claims {header} bytes, more than the {MAX_HEADER_BYTES} accepted",
            shown()
        )));
    }
    if header > len - 8 {
        return Err(Error::Invalid(format!(
            "{}: not a valid safetensors file (truncated): its header claims {header} bytes, the file has {}",
            shown(),
            len - 8
        )));
    }
    crate::memory::check_host(len, max_memory, &format!("reading {}", shown()), "")?;
    let mut bytes = Vec::with_capacity(len as usize);
    bytes.extend_from_slice(&prefix);
    f.take(len - 8).read_to_end(&mut bytes).map_err(|e| Error::Invalid(format!("cannot read {}: {e}", shown())))?;
    Ok(bytes)
}

/// Parses safetensors bytes, returning the tensors and the header's `__metadata__`. A header
/// with a key twice (which JSON parsers resolve silently, last one wins) is refused.
fn parse<'a>(path: &Path, bytes: &'a [u8]) -> Result<(SafeTensors<'a>, HashMap<String, String>)> {
    let malformed = |e: String| {
        Error::Invalid(format!(
            "{}: not a valid safetensors file (truncated or malformed): {}",
            one_line(&path.display().to_string()),
            quote(&e)
        ))
    };
    let n = bytes.get(..8).map_or(0, |p| u64::from_le_bytes(p.try_into().expect("8 bytes")) as usize);
    if let Some(json) = bytes.get(8..8 + n) {
        header::reject_duplicate_keys(json).map_err(malformed)?;
    }
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| malformed(e.to_string()))?;
    let metadata = header.metadata().clone().unwrap_or_default();
    let tensors = SafeTensors::deserialize(bytes).map_err(|e| malformed(e.to_string()))?;
    Ok((tensors, metadata))
}

/// Adds the file's path to an error about its contents, so a message read on its own says
/// which file is wrong.
fn in_file(e: Error, path: &Path) -> Error {
    let shown = one_line(&path.display().to_string());
    match e {
        Error::Tensor { tensor, reason } => Error::Tensor { tensor, reason: format!("{reason} (in {shown})") },
        Error::Invalid(msg) => Error::Invalid(format!("{shown}: {msg}")),
        other => other,
    }
}
