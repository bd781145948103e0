//! Problems and results as safetensors files, with the contract's tensor names.
//!
//! Inputs: `w_hx [h,d]`, `w_hh [h,h]`, `w_qh [q,h]`, `x [T,B,d]`, optional `h0 [B,h]`, optional
//! `b_h [h]` + `b_q [q]` (a pair), and `y [T,B,q]` (mse) or `labels [T,B]` (xent). Floats may be
//! F32 or F64 (kept as f64), labels I32 or I64. The header's `__metadata__` may say `loss`
//! (`mse`|`xent`), `activation` (`identity`|`tanh`) and `loss_at` (`all`|`last`).
//!
//! Results: `loss []`, `grad_w_hx`, `grad_w_hh`, `grad_w_qh`, `grad_b_h`, `grad_b_q`,
//! `grad_h0`, `grad_h_norm [T]`, and with states `h [T,B,h]`, `o [T,B,q]`, written as F32.
//!
//! Reading is strict: every problem with a file (unknown tensor, wrong rank, size or dtype,
//! bad value, malformed bytes) is an error naming the tensor, exit code 2. Writing is atomic:
//! a temporary file in the destination's folder, fsynced, then renamed over the destination.

mod grads;
mod model_file;
mod problem;
mod tensor;

pub use grads::{LoadedGrads, load_grads, save_grads};
pub use model_file::{ModelFile, load_model, save_model};
pub use problem::{load_problem, save_problem};

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use safetensors::SafeTensors;

use crate::error::{Error, Result};

/// Reads a whole file. A file that is missing or unreadable is the user's mistake (exit 2).
fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).map_err(|e| Error::Invalid(format!("cannot read {}: {e}", path.display())))
}

/// Parses safetensors bytes, returning the tensors and the header's `__metadata__`.
fn parse<'a>(path: &Path, bytes: &'a [u8]) -> Result<(SafeTensors<'a>, HashMap<String, String>)> {
    let malformed = |e: safetensors::SafeTensorError| {
        Error::Invalid(format!("{}: not a valid safetensors file (truncated or malformed): {e}", path.display()))
    };
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(malformed)?;
    let metadata = header.metadata().clone().unwrap_or_default();
    let tensors = SafeTensors::deserialize(bytes).map_err(malformed)?;
    Ok((tensors, metadata))
}

/// Adds the file's path to an error about its contents, so a message read on its own says
/// which file is wrong.
fn in_file(e: Error, path: &Path) -> Error {
    match e {
        Error::Tensor { tensor, reason } => {
            Error::Tensor { tensor, reason: format!("{reason} (in {})", path.display()) }
        }
        Error::Invalid(msg) => Error::Invalid(format!("{}: {msg}", path.display())),
        other => other,
    }
}

/// Writes `bytes` to `path` atomically: a reader (or a crash) sees either the old file or the
/// whole new one, never a partial write. The temporary file `.NAME.tmp-PID-N` sits in the same
/// folder because a rename is only atomic within one file system. On any failure the temporary
/// file is removed and an existing destination is left as it was.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    // Distinguishes saves from several threads of one process.
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let io_err = |reason: String| Error::Io { path: path.display().to_string(), reason };
    let name = path.file_name().ok_or_else(|| io_err("cannot write: the path does not name a file".into()))?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed)));
    let tmp = dir.join(tmp_name);

    // create_new: never truncate someone else's file; only what we created is ours to remove.
    let mut f =
        OpenOptions::new().write(true).create_new(true).open(&tmp).map_err(|e| io_err(format!("cannot write: {e}")))?;
    let written = (|| {
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(io_err(format!("cannot write: {e}")));
    }
    // Make the rename itself durable. Best effort: not every platform lets a folder be opened.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
