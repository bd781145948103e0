//! What may be read and what may be replaced: inputs must be regular files (never a device, a
//! FIFO or a folder, which would read forever or block), outputs must be absent or regular
//! files in a writable folder, no two outputs one file and no output an input
//! (`check_outputs`, by file identity: hard links and symbolic links count). All of it is
//! checked before any work, so a run never computes for minutes and then fails on a path, or
//! overwrites what it reads.

use std::fs::{self, File};
use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result, one_line};

/// What is at `path`, in words, when it is not a regular file.
fn kind(m: &fs::Metadata) -> &'static str {
    let t = m.file_type();
    if t.is_dir() {
        return "a folder";
    }
    if t.is_symlink() {
        return "a symbolic link";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_char_device() || t.is_block_device() {
            return "a device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    "not a regular file"
}

fn refuse(path: &Path, why: String) -> Error {
    Error::Invalid(format!("{}: {why}", one_line(&path.display().to_string())))
}

/// Checks that `path` can be written by replacing it: it names a file, is absent or a regular
/// file (not a symbolic link, device, FIFO or folder), and its folder exists and is writable.
/// Refusals are bad arguments (exit 2). Call it for every output before computing anything.
pub fn check_output_path(path: &Path) -> Result<()> {
    if path.file_name().is_none() || path.as_os_str().to_string_lossy().ends_with('/') {
        return Err(refuse(path, "does not name a file".into()));
    }
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_file() => {}
        Ok(m) => {
            return Err(refuse(path, format!("is {}; bptt only replaces regular files (give another path)", kind(&m))));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(refuse(path, format!("cannot be checked: {e}"))),
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(refuse(path, format!("{} is not a folder", one_line(&dir.display().to_string())))),
        Err(e) => {
            return Err(refuse(
                path,
                format!("the folder {} cannot be used: {e}", one_line(&dir.display().to_string())),
            ));
        }
    }
    if !writable(dir) {
        return Err(refuse(path, format!("the folder {} is not writable", one_line(&dir.display().to_string()))));
    }
    Ok(())
}

/// Whether a file can be created in `dir` by this process (a read-only file system counts).
#[cfg(unix)]
fn writable(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c` is a NUL-terminated path that outlives the call; access only reads it.
    unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) == 0 }
}

#[cfg(not(unix))]
fn writable(dir: &Path) -> bool {
    fs::metadata(dir).is_ok_and(|m| !m.permissions().readonly())
}

/// Opens `path` for reading if it is a regular file (a symbolic link to one is fine), and
/// returns it with its size. A FIFO is refused without opening it (opening one blocks until
/// a writer comes), and so are devices (`/dev/zero` would be read until memory runs out).
pub fn open_regular(path: &Path) -> Result<(File, u64)> {
    let unreadable = |e: std::io::Error| refuse(path, format!("cannot read: {e}"));
    let m = fs::metadata(path).map_err(unreadable)?;
    if !m.is_file() {
        return Err(refuse(path, format!("is {}; expected a regular file", kind(&m))));
    }
    let mut options = fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        // Never block in open(), should the path have become a FIFO since the check above.
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let f = options.open(path).map_err(unreadable)?;
    let m = f.metadata().map_err(unreadable)?;
    if !m.is_file() {
        return Err(refuse(path, format!("is {}; expected a regular file", kind(&m))));
    }
    Ok((f, m.len()))
}

/// Reads a whole regular file of at most `limit` bytes.
pub fn read_regular(path: &Path, limit: u64) -> Result<Vec<u8>> {
    let (f, len) = open_regular(path)?;
    if len > limit {
        return Err(refuse(path, format!("is {}, more than the {} this reader accepts", human(len), human(limit))));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    f.take(limit).read_to_end(&mut bytes).map_err(|e| refuse(path, format!("cannot read: {e}")))?;
    Ok(bytes)
}

fn human(bytes: u64) -> String {
    crate::format::human_bytes(bytes)
}

/// A file a command reads, for `check_outputs`: its field (`load`, `text`, `init_from`, `font`),
/// what it holds in words ("the problem"), and its path.
#[derive(Clone, Copy, Debug)]
pub struct Input<'a> {
    pub field: &'a str,
    pub holds: &'a str,
    pub path: &'a Path,
    /// The output field that may replace this file: continuing into the file a run started
    /// from (`init_from` m, `save_model` m) is safe, as the write is atomic.
    pub replaced_by: Option<&'a str>,
}

/// The one rule for a command's outputs, checked before anything is computed: each output
/// (field, path) can be written (`check_output_path`), no two outputs are one file, and no
/// output is an input (unless that input names it in `replaced_by`). "One file" is by
/// identity, not by spelling: the same file through a hard link, a symbolic link or another
/// path to its folder counts. Refusals are bad arguments (exit 2) naming both fields.
pub fn check_outputs(outputs: &[(&str, &Path)], inputs: &[Input]) -> Result<()> {
    for (field, path) in outputs {
        check_output_path(path).map_err(|e| match e {
            Error::Invalid(m) => Error::Invalid(format!("`{field}` {m}")),
            other => other,
        })?;
    }
    for (i, (field_a, a)) in outputs.iter().enumerate() {
        if let Some((field_b, _)) = outputs[i + 1..].iter().find(|(_, b)| one_file(a, b)) {
            return Err(Error::Invalid(format!(
                "`{field_a}` and `{field_b}` name the same file {}: give two files",
                one_line(&a.display().to_string())
            )));
        }
        if let Some(input) = inputs.iter().find(|i| i.replaced_by != Some(field_a) && one_file(a, i.path)) {
            return Err(Error::Invalid(format!(
                "`{field_a}` {} would overwrite {} `{}` reads: give another file",
                one_line(&a.display().to_string()),
                input.holds,
                input.field
            )));
        }
    }
    Ok(())
}

/// Whether two paths are one file: the same existing file (`same_file`), or, where either does
/// not exist yet, the same name in the same folder (the folders compared by identity).
pub fn one_file(a: &Path, b: &Path) -> bool {
    if a == b || same_file(a, b) {
        return true;
    }
    if a.exists() && b.exists() {
        return false;
    }
    let folder = |p: &Path| match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => Path::new(".").to_path_buf(),
    };
    a.file_name().is_some() && a.file_name() == b.file_name() && same_file(&folder(a), &folder(b))
}

/// Whether `a` and `b` name the same existing file (hard links and other spellings too).
pub fn same_file(a: &Path, b: &Path) -> bool {
    match (fs::metadata(a), fs::metadata(b)) {
        #[cfg(unix)]
        (Ok(x), Ok(y)) => {
            use std::os::unix::fs::MetadataExt;
            x.dev() == y.dev() && x.ino() == y.ino()
        }
        #[cfg(not(unix))]
        (Ok(_), Ok(_)) => fs::canonicalize(a).ok() == fs::canonicalize(b).ok(),
        _ => false,
    }
}
