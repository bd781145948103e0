//! What a run computes beyond plain BPTT: truncation (K steps, or randomised), segments, and
//! clipping (`GradientOptions`); the same options on the f64 reference (for the check) and on
//! the GPU (`gpu`).
//! The device-independent parts live here too: the segment split and driver (`segments`) and
//! the truncation kinds with their random cuts (`truncation`); the f64 computations that use
//! them are in `cpu::segments` and `cpu::truncated`.

pub mod gpu;
pub mod memory;
pub mod segments;
pub mod truncation;

use crate::checkpoint::Plan;
use crate::clip::clip_grads;
use crate::cpu::segments::bptt_segments;
use crate::cpu::truncated::bptt_truncated;
use crate::error::Result;
use crate::model::{BpttResult, Problem};
pub use gpu::GpuRunner;
use segments::segment_lengths;
use truncation::{Truncation, random_carry_scales};

/// The options that change which gradient is computed: truncation, segments (the gradient cut
/// at their boundaries) and clipping. All None is plain BPTT.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GradientOptions {
    /// Said in the report when an option asked for has no effect (K > T).
    pub note: Option<String>,
    pub truncate: Option<Truncation>,
    pub segments: Option<usize>,
    pub clip: Option<f64>,
}

impl GradientOptions {
    /// The options for a problem of `steps` steps, checked: K ≥ T keeps every term (plain BPTT,
    /// on any path, with a note saying so), P must be in [0, 1), N segments at most T, θ > 0.
    pub fn new(truncate: Option<Truncation>, segments: Option<usize>, clip: Option<f64>, steps: usize) -> Result<Self> {
        let invalid = |m: String| Err(crate::error::Error::Invalid(m));
        let (truncate, note) = match truncate {
            Some(Truncation::Regular(0)) => return invalid("`truncate` K must be at least 1".into()),
            Some(Truncation::Regular(k)) if k >= steps => (
                None,
                Some(format!("`truncate` {k} reaches back over all T = {steps} steps: every term is kept, full BPTT")),
            ),
            Some(Truncation::Random { p, .. }) if !(0.0..1.0).contains(&p) => {
                return invalid(format!("`truncate` random:P needs P in [0, 1), got {}", crate::format::number(p)));
            }
            t => (t, None),
        };
        if truncate.is_some() && segments.is_some() {
            return invalid("`truncate` and `segments` cannot be combined: give one".into());
        }
        if clip.is_some() && segments.is_some() {
            return invalid(
                "`clip` and `segments` cannot be combined: the gradient is whole only after the last segment".into(),
            );
        }
        if let Some(theta) = clip
            && !(theta.is_finite() && theta > 0.0)
        {
            return invalid(format!("`clip` must be a finite number > 0, got {}", crate::format::number(theta)));
        }
        if let Some(n) = segments {
            segment_lengths(steps, n)?;
        }
        Ok(GradientOptions { note, truncate, segments, clip })
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
            Some(Truncation::Random { p, seed }) => v.push(format!(
                "randomised truncation p = {} (seed {seed}), reweighted by 1/(1−p)",
                crate::format::number(p)
            )),
            None => {}
        }
        if let Some(n) = self.segments {
            v.push(format!("{n} segments, gradient cut at their boundaries"));
        }
        if let Some(theta) = self.clip {
            v.push(format!("gradients clipped to global norm {}", crate::format::number(theta)));
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

    /// The variant on the fast f32 CPU path (`cpu::fast`: truncation through its backward
    /// recurrence, segments as carry multipliers of 0 at the boundaries), and ‖g‖ before
    /// clipping when it clips.
    pub fn fast(&self, p: &Problem) -> Result<(BpttResult, Option<f64>)> {
        self.fast_planned(p, None).map(|(g, before, _)| (g, before))
    }

    /// `fast`, carried out by a checkpointing plan when one is given (then also the forward
    /// steps it evaluated).
    pub fn fast_planned(&self, p: &Problem, plan: Option<&Plan>) -> Result<(BpttResult, Option<f64>, Option<u64>)> {
        let mut steps = None;
        let mut g = match (self.truncate, self.segments, plan) {
            (_, Some(_), Some(_)) => return Err(segments_and_memory()),
            (t, None, Some(plan)) => {
                let (g, stats) = crate::cpu::fast::bptt_checkpointed_with(p, plan, t)?;
                steps = Some(stats.forward_steps);
                g
            }
            (Some(t), _, None) => crate::cpu::fast::bptt_truncated(p, t)?,
            (None, Some(n), None) => {
                crate::cpu::fast::bptt_carry_scaled(p, &segments::segment_carry_scales(p.shape.steps, n)?)?
            }
            (None, None, None) => crate::cpu::fast::bptt(p),
        };
        let before = match self.clip {
            Some(theta) => Some(clip_grads(&mut g, theta)?.0),
            None => None,
        };
        Ok((g, before, steps))
    }

    /// The variant on the f64 reference, and ‖g‖ before clipping when it clips.
    pub fn reference(&self, p: &Problem) -> Result<(BpttResult, Option<f64>)> {
        self.reference_planned(p, None).map(|(g, before, _)| (g, before))
    }

    /// `reference`, carried out by a checkpointing plan when one is given (then also the
    /// forward steps it evaluated).
    pub fn reference_planned(
        &self,
        p: &Problem,
        plan: Option<&Plan>,
    ) -> Result<(BpttResult, Option<f64>, Option<u64>)> {
        let mut steps = None;
        let mut g = match (self.truncate, self.segments, plan) {
            (_, Some(_), Some(_)) => return Err(segments_and_memory()),
            (t, None, Some(plan)) => {
                let (g, stats) = crate::cpu::checkpointed::bptt(p, t, plan)?;
                steps = Some(stats.forward_steps);
                g
            }
            (Some(t), _, None) => bptt_truncated(p, t)?,
            (None, Some(n), None) => bptt_segments(p, n)?,
            (None, None, None) => crate::cpu::reference::bptt(p),
        };
        let before = match self.clip {
            Some(theta) => Some(clip_grads(&mut g, theta)?.0),
            None => None,
        };
        Ok((g, before, steps))
    }
}

/// `segments` bound the memory by cutting the gradient; checkpointing keeps it whole: one of
/// the two.
pub fn segments_and_memory() -> crate::error::Error {
    crate::error::Error::Invalid(
        "`memory` (or `checkpoints`) and `segments` cannot be combined: segments cut the gradient at their \
         boundaries, checkpointing keeps it exact; give one"
            .into(),
    )
}
