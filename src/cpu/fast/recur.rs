//! One step of each recurrence, split over row blocks of the weight matrix and run on rayon's
//! threads when the step is big enough to pay for the hand-off (a few µs per step).
//!
//! Each block owns a contiguous range of rows of the (possibly transposed) w_hh and the same
//! columns of every batch row of the output, so blocks never share a written element. With two
//! threads each half of w_hh (2 MiB at h = 1024) stays in its core's L2 from step to step.
//!
//! States and gradients are flushed to zero below f32's normal range after each step (see
//! `flush_tiny`), so a vanishing gradient cannot slow every later step down.

use std::ops::Range;

use super::aligned::padded;
use super::flush_tiny;
use super::simd::{Isa, matvec_acc};
use crate::model::{Activation, tanh_f32};

/// Below this many multiply-adds per step a second thread costs more than it saves (measured:
/// about break-even at h = 256, B = 1; a loss at h = 128).
const PAR_MIN_WORK: usize = 1 << 16;

/// Fewer rows than this per block and the per-step hand-off outweighs the work (many cores).
const MIN_BLOCK_ROWS: usize = 64;

/// What every step of one pass shares: the kernel, the sizes and the row blocks.
pub struct Stepper {
    isa: Isa,
    nb: usize,
    nh: usize,
    blocks: Vec<Range<usize>>,
}

impl Stepper {
    pub fn new(isa: Isa, nb: usize, nh: usize) -> Self {
        let threads = if nb * nh * nh >= PAR_MIN_WORK {
            rayon::current_num_threads().clamp(1, (nh / MIN_BLOCK_ROWS).max(1))
        } else {
            1
        };
        // Blocks of a multiple of 4 rows, so only the last one has a partial group of four.
        let per = nh.div_ceil(threads).div_ceil(4) * 4;
        let blocks = (0..nh).step_by(per.max(1)).map(|s| s..(s + per).min(nh)).collect();
        Stepper { isa, nb, nh, blocks }
    }

    /// `reverse` (alternate it between steps) is the row order, see `matvec_acc`. The weight
    /// matrices come with rows at the padded stride `padded(h)`.
    ///
    /// Forward: a_t ← φ(a_t + h_{t-1}·w_hhᵀ), in place, where `a_t` [B,h] holds
    /// x_t·w_hxᵀ + b_h on entry and h_t on return.
    pub fn forward(&self, reverse: bool, act: Activation, w_hh: &[f32], h_prev: &[f32], a_t: &mut [f32]) {
        let (isa, nh) = (self.isa, self.nh);
        self.run(a_t, |rows, outs| {
            let ld = padded(nh);
            matvec_acc(isa, &w_hh[rows.start * ld..rows.end * ld], ld, h_prev, outs, reverse);
            for out in outs.iter_mut() {
                match act {
                    Activation::Identity => out.iter_mut().for_each(|a| *a = flush_tiny(*a)),
                    Activation::Tanh => out.iter_mut().for_each(|a| *a = flush_tiny(tanh_f32(*a))),
                    Activation::Relu => out.iter_mut().for_each(|a| *a = flush_tiny(a.max(0.0))),
                }
            }
            0.0
        });
    }

    /// Backward: ∂L/∂h_t = g_t + ∂L/∂a_{t+1}·w_hh, then g_t ← ∂L/∂h_t ⊙ φ'(h_t), in place.
    /// `g_t` [B,h] holds ∂L/∂o_t·w_qh on entry; `grad_a_next` is None at the last step (where
    /// ∂L/∂a_{T+1} = 0). `w_hh_t` is w_hhᵀ, so each output element is a contiguous dot product.
    /// Returns ‖∂L/∂h_t‖² over the batch.
    pub fn backward(
        &self,
        reverse: bool,
        act: Activation,
        w_hh_t: &[f32],
        grad_a_next: Option<&[f32]>,
        h_t: &[f32],
        g_t: &mut [f32],
    ) -> f64 {
        let (isa, nh) = (self.isa, self.nh);
        self.run(g_t, |rows, outs| {
            if let Some(next) = grad_a_next {
                let ld = padded(nh);
                matvec_acc(isa, &w_hh_t[rows.start * ld..rows.end * ld], ld, next, outs, reverse);
            }
            let mut sq = 0.0f64;
            for (b, out) in outs.iter_mut().enumerate() {
                sq += sum_sq(out);
                match act {
                    Activation::Identity => out.iter_mut().for_each(|g| *g = flush_tiny(*g)),
                    Activation::Tanh => {
                        let h = &h_t[b * nh + rows.start..b * nh + rows.end];
                        let grad_a = |(g, h): (&mut f32, &f32)| *g = flush_tiny(*g * (1.0 - h * h));
                        out.iter_mut().zip(h).for_each(grad_a);
                    }
                    Activation::Relu => {
                        let h = &h_t[b * nh + rows.start..b * nh + rows.end];
                        let grad_a = |(g, h): (&mut f32, &f32)| *g = if *h > 0.0 { flush_tiny(*g) } else { 0.0 };
                        out.iter_mut().zip(h).for_each(grad_a);
                    }
                }
            }
            sq
        })
    }

    /// Runs `f(rows, outs)` for every block, where outs[b] is `buf[b, rows]`, and sums what it
    /// returns.
    fn run<F>(&self, buf: &mut [f32], f: F) -> f64
    where
        F: Fn(Range<usize>, &mut [&mut [f32]]) -> f64 + Sync,
    {
        assert_eq!(buf.len(), self.nb * self.nh);
        let mut pieces: Vec<Vec<&mut [f32]>> = self.blocks.iter().map(|_| Vec::with_capacity(self.nb)).collect();
        for mut row in buf.chunks_exact_mut(self.nh) {
            for (block, piece) in self.blocks.iter().zip(&mut pieces) {
                let (head, rest) = row.split_at_mut(block.len());
                piece.push(head);
                row = rest;
            }
        }
        join_blocks(&self.blocks, &mut pieces, &f)
    }
}

/// `f` on every block, the first half on this thread and the second as a rayon job (so with two
/// threads each keeps the same block, and its rows of w_hh stay in that core's L2).
fn join_blocks<F>(blocks: &[Range<usize>], pieces: &mut [Vec<&mut [f32]>], f: &F) -> f64
where
    F: Fn(Range<usize>, &mut [&mut [f32]]) -> f64 + Sync,
{
    if let [rows] = blocks {
        return f(rows.clone(), &mut pieces[0]);
    }
    let mid = blocks.len() / 2;
    let (blocks_a, blocks_b) = blocks.split_at(mid);
    let (pieces_a, pieces_b) = pieces.split_at_mut(mid);
    let (a, b) = rayon::join(|| join_blocks(blocks_a, pieces_a, f), || join_blocks(blocks_b, pieces_b, f));
    a + b
}

/// Σ v², in 16 independent lanes so it vectorises (and rounds less than one running sum).
fn sum_sq(v: &[f32]) -> f64 {
    let mut acc = [0.0f32; 16];
    let chunks = v.chunks_exact(16);
    let tail: f32 = chunks.remainder().iter().map(|x| x * x).sum();
    for c in chunks {
        for (a, x) in acc.iter_mut().zip(c) {
            *a += x * x;
        }
    }
    (acc.iter().sum::<f32>() + tail) as f64
}
