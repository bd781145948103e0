//! What a run computes beyond plain BPTT: truncation (K steps, or randomised), segments, and
//! clipping; the same variant on the f64 reference (for the check) and on the GPU (`gpu`).
//! The device-independent parts live here too: the segment split and driver (`segments`) and
//! the truncation kinds with their random cuts (`truncation`); the f64 computations that use
//! them are in `cpu::segments` and `cpu::truncated`.

pub mod gpu;
pub mod segments;
pub mod truncation;

use crate::cli::{Args, TruncateArg};
use crate::clip::clip_grads;
use crate::cpu::segments::bptt_segments;
use crate::cpu::truncated::bptt_truncated;
use crate::error::Result;
use crate::model::{Grads, Problem};
pub use gpu::GpuRunner;
use segments::segment_lengths;
use truncation::{Truncation, random_carry_scales};

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Variant {
    /// Said in the report when an option asked for has no effect (K > T).
    pub note: Option<String>,
    pub truncate: Option<Truncation>,
    pub segments: Option<usize>,
    pub clip: Option<f64>,
}

impl Variant {
    pub fn from_args(args: &Args, p: &Problem) -> Result<Self> {
        let steps = p.shape.steps;
        let truncate = match args.truncate {
            // K ≥ T keeps every term: plain BPTT, on any path.
            Some(TruncateArg::Steps(k)) if k >= steps => None,
            Some(TruncateArg::Steps(k)) => Some(Truncation::Regular(k)),
            Some(TruncateArg::Random(prob)) => Some(Truncation::Random { p: prob, seed: args.truncate_seed }),
            None => None,
        };
        let note = match args.truncate {
            Some(TruncateArg::Steps(k)) if k >= steps => {
                Some(format!("--truncate {k} reaches back over all T = {steps} steps: every term is kept, full BPTT"))
            }
            _ => None,
        };
        let segments = args.segments.map(|n| n as usize);
        if let Some(n) = segments {
            segment_lengths(steps, n)?;
        }
        Ok(Variant { note, truncate, segments, clip: args.clip })
    }

    pub fn is_plain(&self) -> bool {
        self.truncate.is_none() && self.segments.is_none() && self.clip.is_none()
    }

    /// e.g. "truncated 8 steps back", for the report.
    pub fn describe(&self) -> Vec<String> {
        let mut v: Vec<String> = self.note.iter().cloned().collect();
        match self.truncate {
            Some(Truncation::Regular(k)) => {
                v.push(format!("truncated {k} step{} back from each loss term", if k == 1 { "" } else { "s" }))
            }
            Some(Truncation::Random { p, seed }) => {
                v.push(format!("randomised truncation p = {p} (seed {seed}), reweighted by 1/(1−p)"))
            }
            None => {}
        }
        if let Some(n) = self.segments {
            v.push(format!("{n} segments, gradient cut at their boundaries"));
        }
        if let Some(theta) = self.clip {
            v.push(format!("gradients clipped to global norm {theta}"));
        }
        v
    }

    /// c_t multipliers of the carried gradient, for randomised truncation.
    pub(crate) fn carry(&self, steps: usize) -> Result<Option<Vec<f64>>> {
        match self.truncate {
            Some(Truncation::Random { p, seed }) => Ok(Some(random_carry_scales(steps, p, seed)?)),
            _ => Ok(None),
        }
    }

    /// The variant on the f64 reference, and ‖g‖ before clipping when it clips.
    pub fn reference(&self, p: &Problem) -> Result<(Grads, Option<f64>)> {
        let mut g = match (self.truncate, self.segments) {
            (Some(t), _) => bptt_truncated(p, t)?,
            (None, Some(n)) => bptt_segments(p, n)?,
            (None, None) => crate::cpu::reference::bptt(p),
        };
        let before = match self.clip {
            Some(theta) => Some(clip_grads(&mut g, theta)?.0),
            None => None,
        };
        Ok((g, before))
    }
}
