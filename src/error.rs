//! One error type for the whole crate. Every user mistake becomes a one-line message and an
//! exit code (2 for bad arguments or input, 1 for a run-time failure); nothing panics.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    /// A shape or value the model does not allow (zero sizes, mismatched lengths, NaN, ...).
    #[error("invalid input: {0}")]
    Invalid(String),
    /// A problem with one named tensor (from a file or from the API).
    #[error("tensor `{tensor}`: {reason}")]
    Tensor { tensor: String, reason: String },
    /// No GPU adapter could be found or opened.
    #[error("{0}")]
    NoAdapter(String),
    /// A buffer would exceed what the adapter can bind or allocate.
    #[error("{0}")]
    Limit(String),
    /// Anything the GPU driver reported while running.
    #[error("GPU error: {0}")]
    Gpu(String),
    /// Reading or writing a file.
    #[error("{path}: {reason}")]
    Io { path: String, reason: String },
    /// A run that failed on its own terms (a training run whose loss stopped being finite).
    #[error("{0}")]
    Failed(String),
}

impl Error {
    /// The process exit code this error maps to: 2 for bad input, 1 for run-time failures.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Invalid(_) | Error::Tensor { .. } => 2,
            Error::NoAdapter(_) | Error::Limit(_) | Error::Gpu(_) | Error::Io { .. } | Error::Failed(_) => 1,
        }
    }

    pub(crate) fn tensor(tensor: &str, reason: impl Into<String>) -> Self {
        Error::Tensor { tensor: quote(tensor), reason: reason.into() }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// Longest echo of a name or value that came from a file, in characters.
const ECHO_CHARS: usize = 80;

/// A name or value read from a file, made safe to echo in a one-line message: control
/// characters (newlines, terminal escape codes) escaped as `\n`, `\u{1b}`, and cut to 80
/// characters with `…` (a 50 MB metadata value must not become a 50 MB error line).
pub fn quote(s: &str) -> String {
    let mut out = String::new();
    for (n, c) in s.chars().enumerate() {
        if n == ECHO_CHARS {
            out.push('…');
            break;
        }
        if c.is_control() { out.extend(c.escape_default()) } else { out.push(c) }
    }
    out
}

/// A whole message made one line: every control character escaped. The last guard before
/// stderr, for text that reached a message without `quote` (a path with a newline in it).
pub fn one_line(s: &str) -> String {
    s.chars().flat_map(|c| if c.is_control() { c.escape_default().collect() } else { vec![c] }).collect()
}
