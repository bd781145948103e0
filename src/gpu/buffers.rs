//! The storage buffers of one shape, sized and checked against the adapter's limits before any
//! is created, so an oversized problem fails with a message that names the buffer.

use super::schedule::Schedule;
use crate::error::{Error, Result};
use crate::format::human_bytes;
use crate::model::Shape;

/// Buffers no kernel binds (`windowed`): only the allocation limit applies to them.
const UNBOUND: [&str; 5] = ["slots", "current", "held", "last", "carry"];

/// Every storage buffer the GPU path allocates, in f32 (or u32) elements.
pub struct BufferSizes {
    pub list: Vec<(&'static str, String, u64)>,
}

impl BufferSizes {
    /// (name, description with dims, size in bytes) for a shape and schedule.
    pub fn new(s: Shape, schedule: Schedule, lanes: u32) -> Self {
        let k = lanes as u64;
        let (t, b, d, h, q) = (s.steps as u64, s.batch as u64, s.input as u64, s.hidden as u64, s.output as u64);
        let f = |n: u64| 4 * n.max(1);
        let mut list = vec![
            ("w_hx", "weights w_hx[h,d]".to_string(), f(h * d)),
            ("w_hh", "weights w_hh[h,h]".to_string(), f(h * h)),
            ("w_qh", "weights w_qh[q,h]".to_string(), f(q * h)),
            ("b_h", "bias b_h[h]".to_string(), f(h)),
            ("b_q", "bias b_q[q]".to_string(), f(q)),
            ("x", "inputs x[T,B,d]".to_string(), f(t * b * d)),
            ("h", "hidden states h[T+1,B,h]".to_string(), f((t + 1) * b * h)),
            ("o", "outputs o[T,B,q]".to_string(), f(t * b * q)),
            ("y", "targets y[T,B,q]".to_string(), f(t * b * q)),
            ("labels", "labels[T,B]".to_string(), f(t * b)),
            ("grad_o", "output gradients ∂L/∂o[T,B,q]".to_string(), f(t * b * q)),
            ("loss_rows", "per-row losses [T·B]".to_string(), f(t * b)),
            ("loss", "loss".to_string(), f(1)),
            (
                "grad_a",
                if k == 1 {
                    "pre-activation gradients ∂L/∂a[T+2,B,h]".to_string()
                } else {
                    format!("truncation lanes of ∂L/∂a[T+2,B,K={k},h]")
                },
                f((t + 2) * b * k * h),
            ),
            ("grad_h", "hidden-state gradients ∂L/∂h[T+1,B,h]".to_string(), f((t + 1) * b * h)),
            ("grad_w_hx", "gradient grad_w_hx[h,d]".to_string(), f(h * d)),
            ("grad_w_hh", "gradient grad_w_hh[h,h]".to_string(), f(h * h)),
            ("grad_w_qh", "gradient grad_w_qh[q,h]".to_string(), f(q * h)),
            ("grad_b_h", "gradient grad_b_h[h]".to_string(), f(h)),
            ("grad_b_q", "gradient grad_b_q[q]".to_string(), f(q)),
            ("grad_h_norm", "norms grad_h_norm[T]".to_string(), f(t)),
            ("clip_norms", "clipping norms [5]".to_string(), f(8)),
        ];
        if schedule == Schedule::Fused {
            list.extend([
                ("xproj", "input projections x·w_hxᵀ[T,B,h]".to_string(), f(t * b * h)),
                ("gq", "output-gradient projections ∂L/∂o·w_qh[T,B,h]".to_string(), f(t * b * h)),
                ("w_hh_t", "transposed weights w_hhᵀ[h,h]".to_string(), f(h * h)),
            ]);
        }
        BufferSizes { list }
    }

    /// The buffers of one window of `window` steps of a checkpointed run over `total` steps
    /// with `slots` slots: the window's buffers, except the per-row losses and the per-step
    /// norms, which cover the whole sequence; and the states the run moves between windows
    /// (the slots, the current and the held state, and the carried ∂L/∂a, all of K lanes),
    /// which no kernel binds.
    pub fn windowed(window: Shape, total: usize, slots: usize, schedule: Schedule, lanes: u32) -> Self {
        let mut sizes = Self::new(window, schedule, lanes);
        let (t, b, h, k) = (total as u64, window.batch as u64, window.hidden as u64, lanes as u64);
        for (name, desc, bytes) in sizes.list.iter_mut() {
            match *name {
                "loss_rows" => (*desc, *bytes) = ("per-row losses [T·B]".to_string(), 4 * t * b),
                "grad_h_norm" => (*desc, *bytes) = ("norms grad_h_norm[T]".to_string(), 4 * t),
                _ => {}
            }
        }
        sizes.list.extend([
            ("slots", format!("checkpoint slots [c={slots},B,h]"), 4 * slots.max(1) as u64 * b * h),
            ("current", "the current state [B,h]".to_string(), 4 * b * h),
            ("held", "the held state [B,h]".to_string(), 4 * b * h),
            ("last", "the last state h_T [B,h]".to_string(), 4 * b * h),
            ("carry", "the carried ∂L/∂a [B,K,h]".to_string(), 4 * b * k * h),
        ]);
        sizes
    }

    pub fn get(&self, name: &str) -> u64 {
        self.list.iter().find(|e| e.0 == name).map(|e| e.2).expect("known buffer")
    }

    /// Fails, naming the first buffer that does not fit, if any exceeds what the adapter binds
    /// or allocates.
    pub fn check(&self, limits: &wgpu::Limits, adapter: &str) -> Result<()> {
        for (name, desc, bytes) in &self.list {
            // The checkpointed run's states are only copied, never bound.
            let bind = if UNBOUND.contains(name) { u64::MAX } else { limits.max_storage_buffer_binding_size };
            let alloc = limits.max_buffer_size;
            if *bytes > bind.min(alloc) {
                let (what, limit) = if bind <= alloc { ("binds", bind) } else { ("allocates", alloc) };
                return Err(Error::Limit(format!(
                    "{desc} needs {}; this adapter ({adapter}) {what} at most {} per buffer: use a smaller shape",
                    human_bytes(*bytes),
                    human_bytes(limit)
                )));
            }
        }
        Ok(())
    }

    pub fn total(&self) -> u64 {
        self.list.iter().map(|e| e.2).sum()
    }
}
