//! What a long run says while it works: a trait the procedures (`check`, `train`) call, with
//! no terminal code behind it. The command line shows a spinner and a progress bar through it;
//! a library user can log, or ignore it (`Quiet`).

/// Receives a run's progress. Both methods do nothing unless overridden; they take `&self`, so
/// an implementation keeps its own state behind a `Cell`/`RefCell` or a thread-safe handle.
pub trait Progress {
    /// What the run is doing now, e.g. "GPU: timed run 2/5".
    fn stage(&self, _what: &str) {}
    /// Training: `done` of `total` iterations, with the latest training metric.
    fn iteration(&self, _done: usize, _total: usize, _metric: f64) {}
}

/// Says nothing.
pub struct Quiet;

impl Progress for Quiet {}
