//! Writing a file so that a reader, a crash or an interrupt sees either the old file or the
//! whole new one (docs/report.md, "Errors and outputs"): the bytes go to a temporary file in
//! the destination's folder, are fsynced, and the temporary file is renamed over the
//! destination. A rename is atomic only within one file system, hence the same folder. Every
//! file bptt writes goes through here: results, models, problems and the figures.
//!
//! The temporary name is short (`.bptt-PID-N.tmp`), so any destination name the file system
//! accepts works. While it exists it is registered here, and SIGINT or SIGTERM removes it
//! before the process dies of the signal (on Unix).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::paths::check_output_path;
use crate::error::{Error, Result};

/// Temporary files being written now, removed by the signal thread.
static IN_PROGRESS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Writes `bytes` to `path` atomically. An existing destination must be a regular file (not a
/// symbolic link, a device or a FIFO: those are refused, exit 2) and keeps its permissions. On
/// any failure the temporary file is removed and the destination is left as it was.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |f| f.write_all(bytes))
}

/// Like `write_atomic`, with the contents streamed by `write` into the temporary file.
pub fn write_atomic_with(path: &Path, write: impl FnOnce(&mut File) -> std::io::Result<()>) -> Result<()> {
    // Distinguishes saves from several threads of one process.
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    check_output_path(path)?;
    let io_err = |reason: String| Error::Io { path: path.display().to_string(), reason };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    // The old file's permissions, to give the new one (checked regular above, if present).
    let permissions = fs::metadata(path).ok().map(|m| m.permissions());
    let tmp = dir.join(format!(".bptt-{}-{}.tmp", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed)));
    remove_on_signal();
    // Registered before it exists: a signal between creating and registering cannot leak it.
    IN_PROGRESS.lock().unwrap_or_else(|e| e.into_inner()).push(tmp.clone());
    // create_new: never truncate someone else's file; only what we created is ours to remove.
    let written = OpenOptions::new().write(true).create_new(true).open(&tmp).and_then(|mut f| {
        write(&mut f)?;
        if let Some(p) = permissions {
            f.set_permissions(p)?;
        }
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)
    });
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    IN_PROGRESS.lock().unwrap_or_else(|e| e.into_inner()).retain(|p| p != &tmp);
    written.map_err(|e| io_err(format!("cannot write: {e}")))?;
    // Make the rename itself durable. Best effort: not every platform lets a folder be opened.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Starts, once per process, a thread that on SIGINT or SIGTERM removes the temporary files
/// being written and then dies of the signal as it would have (exit status 130 or 143 in a
/// shell). A thread rather than a handler: removing files and taking a lock are not allowed
/// inside a signal handler.
#[cfg(unix)]
fn remove_on_signal() {
    use signal_hook::consts::{SIGINT, SIGTERM};
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| {
        let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) else {
            return;
        };
        std::thread::spawn(move || {
            if let Some(sig) = signals.forever().next() {
                for tmp in IN_PROGRESS.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
                    let _ = fs::remove_file(tmp);
                }
                let _ = signal_hook::low_level::emulate_default_handler(sig);
                std::process::exit(128 + sig);
            }
        });
    });
}

#[cfg(not(unix))]
fn remove_on_signal() {}
