//! One error type for the whole crate. Every user mistake becomes a one-line message and an
//! exit code (2 for bad arguments or input, 1 for a run-time failure); nothing panics.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    /// A shape or value the contract does not allow (zero sizes, mismatched lengths, NaN, ...).
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
        Error::Tensor { tensor: tensor.to_string(), reason: reason.into() }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
