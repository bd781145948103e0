//! The two recurrences, each run as one pass over all T steps by a fixed team of threads.
//!
//! Thread k owns one block of columns (of h_t forward, of ∂L/∂a_t backward) for the whole pass,
//! so it reads the same part of w_hh every step, and that part stays in its core's caches
//! (half of w_hh per core with two threads; see docs/performance.md). Between steps the team
//! waits on a shared counter (`team`), a fraction of a microsecond, instead of handing each
//! step's work to a thread pool and back (a few µs per step, twice per step pair).
//!
//! Each step's product: with a batch of 4 or more on AVX-512 or AVX2, the register tile of
//! `kernel` (`panels_product`) over the thread's block of w_hhᵀ (forward) or w_hh (backward),
//! packed into panels on the pass's first call and kept for the next (a `Recurrence` serves one
//! set of weights); otherwise the forward does 4 to 16 rows' dot products at a time
//! (`simd::matvec_acc`) and the backward the row form over the same rows of w_hh
//! (`simd::rows_axpy`, each thread's share of ∂L/∂a_t·w_hh summed at the next step:
//! `backward_rows`), so no transposed copy is made (but for regular truncation's lanes, which
//! keep the dot form over w_hhᵀ).
//!
//! States and gradients are flushed to zero below f32's normal range after each step (see
//! `flush_tiny`), so a vanishing gradient cannot slow every later step down.

use std::ops::Range;
use std::sync::OnceLock;

use rayon::prelude::*;

use super::aligned::padded;
use super::flush_tiny;
use super::kernel::{Panels, Strided, panels_product};
use super::simd::{Isa, matvec_acc, rows_axpy};
use super::team::run_steps;
use crate::model::{Activation, tanh_f32};

/// Below this many multiply-adds per step a second thread costs more than it saves.
const PAR_MIN_WORK: usize = 1 << 16;

/// Fewer columns than this per block and the per-step barrier outweighs the work (many cores).
const MIN_BLOCK_COLS: usize = 64;

/// From this batch size on (with AVX-512 or AVX2) a step is the tile kernel's job: each weight
/// loaded feeds 4 batch entries from registers.
const OUTER_MIN_BATCH: usize = 4;

/// The team's column blocks and the kernel every step of both passes uses.
pub struct Recurrence {
    isa: Isa,
    nb: usize,
    nh: usize,
    blocks: Vec<Range<usize>>,
    /// For the tile kernel: each block's columns of the matrix its pass reads (w_hhᵀ forward,
    /// w_hh backward) as panels, with the address of the matrix they were packed from.
    packed: [OnceLock<(usize, Vec<Panels>)>; 2],
}

impl Recurrence {
    pub fn new(isa: Isa, nb: usize, nh: usize) -> Self {
        let threads = if nb * nh * nh >= PAR_MIN_WORK {
            rayon::current_num_threads().clamp(1, (nh / MIN_BLOCK_COLS).max(1))
        } else {
            1
        };
        // Blocks of a multiple of 16 columns, so every block but the last starts on a cache
        // line and holds whole groups of 16 rows and whole vectors.
        let per = nh.div_ceil(threads).div_ceil(16) * 16;
        let blocks = (0..nh).step_by(per.max(1)).map(|s| s..(s + per).min(nh)).collect();
        Recurrence { isa, nb, nh, blocks, packed: [OnceLock::new(), OnceLock::new()] }
    }

    fn outer(&self) -> bool {
        self.isa != Isa::Portable && self.nb >= OUTER_MIN_BATCH
    }

    /// For the tile kernel, the blocks of `w` (rows at the padded stride; pass 0 forward, 1
    /// backward) as panels: packed in parallel on the first call, the same ones after.
    fn panels(&self, pass: usize, w: &[f32]) -> Option<&[Panels]> {
        if !self.outer() {
            return None;
        }
        let (from, panels) = self.packed[pass].get_or_init(|| {
            let w = Strided { data: w, rs: padded(self.nh), cs: 1 };
            let pack = |cols: &Range<usize>| {
                let mut p = Panels::new();
                p.pack(self.isa, w, 0..self.nh, cols.clone());
                p
            };
            (w.data.as_ptr() as usize, self.blocks.par_iter().map(pack).collect())
        });
        assert_eq!(*from, w.as_ptr() as usize, "a Recurrence serves one set of weights");
        Some(panels)
    }

    /// out_b[cols] += v_b · w_hh[cols]ᵀ for every batch entry b (vs [B,h]): the product of one
    /// step, on block k. `w` is the matrix whose rows are contiguous for the dot kernel (w_hh
    /// forward, w_hhᵀ backward); the tile kernel reads block k of `panels` instead.
    fn product(
        &self,
        w: &[f32],
        panels: Option<&[Panels]>,
        k: usize,
        vs: &[f32],
        outs: &mut [&mut [f32]],
        reverse: bool,
    ) {
        let ld = padded(self.nh);
        let cols = &self.blocks[k];
        match panels {
            Some(panels) => panels_product(self.isa, &panels[k], vs, outs, reverse),
            None => matvec_acc(self.isa, &w[cols.start * ld..cols.end * ld], ld, vs, outs, reverse),
        }
    }

    /// Whether a pass reads w_hhᵀ: the tile kernel's forward packs its panels from it, and the
    /// dot form reads its rows in regular truncation's lanes (`Carry::Lanes`), which the row form
    /// does not serve. Otherwise neither pass needs the transposed copy.
    pub fn reads_transpose(&self, lanes: bool) -> bool {
        self.outer() || lanes
    }

    /// Forward over all steps: h_t = φ(a_t + h_{t-1}·w_hhᵀ), in place in hs [(T+1),B,h], which
    /// holds h0 and then a_t = x_t·w_hxᵀ + b_h for t = 1..T on entry, and h_t on return. w_hh
    /// has rows at the padded stride `padded(h)`; `w_hh_t` gives its transpose, at the same
    /// stride, and is called only when `reads_transpose`.
    pub fn forward<'w>(&self, act: Activation, w_hh: &[f32], w_hh_t: impl FnOnce() -> &'w [f32], hs: &mut [f32]) {
        let (nb, nh) = (self.nb, self.nh);
        let bh = nb * nh;
        assert_eq!(hs.len() % bh, 0, "forward: hs must be [(T+1), B, h]");
        let nt = hs.len() / bh - 1;
        let panels = if self.outer() { self.panels(0, w_hh_t()) } else { None };
        let hs = Shared::new(hs);
        run_steps(self.blocks.len(), nt, |t, k| {
            let cols = &self.blocks[k];
            // SAFETY: a unit of step t reads all of row t (h_{t-1}, finished with step t − 1)
            // and writes only its block's columns of row t + 1, which no other unit touches
            // until step t is finished.
            let h_prev = unsafe { hs.read(t * bh, bh) };
            let mut outs = unsafe { hs.columns((t + 1) * bh, nb, nh, cols) };
            self.product(w_hh, panels, k, h_prev, &mut outs, t % 2 == 1);
            for out in outs.iter_mut() {
                match act {
                    Activation::Identity => out.iter_mut().for_each(|a| *a = flush_tiny(*a)),
                    Activation::Tanh => out.iter_mut().for_each(|a| *a = flush_tiny(tanh_f32(*a))),
                    // `if a < 0` rather than `max`, which would turn NaN into 0 and hide an overflow.
                    Activation::Relu => out.iter_mut().for_each(|a| *a = if *a < 0.0 { 0.0 } else { flush_tiny(*a) }),
                }
            }
            0.0
        });
    }

    /// Backward over all steps, last to first: ∂L/∂h_t = g_t + ∂L/∂a_{t+1}·w_hh, then
    /// g_t ← ∂L/∂h_t ⊙ φ'(h_t), in place in grad_a [T,B,h], which holds g_t = ∂L/∂o_t·w_qh on
    /// entry (∂L/∂a_{T+1} = 0). Then ∂L/∂h0 = ∂L/∂a_1·w_hh into `grad_h0` [B,h]. `h_all`
    /// [T,B,h] holds h_1..h_T. Returns ‖∂L/∂h_t‖ over the batch for every t. `carry` truncates
    /// the carried term ∂L/∂a_{t+1}·w_hh (see `Carry`; `Carry::Full` is plain BPTT).
    #[allow(clippy::too_many_arguments)]
    /// Backward over all steps of a window of the sequence (a whole run is one window), last to
    /// first: ∂L/∂h_t = g_t + c·∂L/∂a_{t+1}·w_hh as `carry` says, then g_t ← ∂L/∂h_t ⊙ φ'(h_t),
    /// in place in grad_a [T,B,h], which holds g_t = ∂L/∂o_t·w_qh on entry. `h_all` [T,B,h]
    /// holds h_1..h_T. Returns ‖∂L/∂h_t‖ over the batch for every t.
    ///
    /// The window's steps are the sequence's t0.. (grad_a and
    /// h_all hold the window's rows; a scaled `carry` holds the window's scales). With `lanes`
    /// (regular truncation) the lanes of the step after the window are read from, and the
    /// window's first step's left in, the state the windows share (`LaneState`, indexed by the
    /// sequence's step); without, what later steps carry into the window's last step must
    /// already be in its g (grad_a's last row). `grad_h0` gets the window's first step's
    /// c·(∂L/∂a·w_hh): ∂L/∂h0 for the first window.
    ///
    /// Below a batch of 4 (or without vector units) and without lanes, the step's product is the
    /// row form over w_hh itself (`backward_rows`); `w_hh_t` is called only when
    /// `reads_transpose`.
    #[allow(clippy::too_many_arguments)]
    pub fn backward<'w>(
        &self,
        act: Activation,
        w_hh: &[f32],
        w_hh_t: impl FnOnce() -> &'w [f32],
        h_all: &[f32],
        grad_a: &mut [f32],
        grad_h0: &mut [f32],
        carry: &Carry,
        lanes: Option<&mut LaneState>,
        t0: usize,
    ) -> Vec<f64> {
        let (nb, nh) = (self.nb, self.nh);
        let bh = nb * nh;
        assert!(grad_a.len().is_multiple_of(bh) && h_all.len() == grad_a.len() && grad_h0.len() == bh);
        let nt = grad_a.len() / bh;
        if let Carry::Scaled(c) = carry {
            assert_eq!(c.len(), nt, "backward: one carry scale per step");
        }
        if !self.reads_transpose(lanes.is_some()) {
            return self.backward_rows(act, w_hh, h_all, grad_a, grad_h0, carry, t0);
        }
        let w_hh_t: &[f32] = if self.outer() { &[] } else { w_hh_t() };
        let lanes = lanes.map(|state| Lanes::of(state, t0));
        let panels = self.panels(1, w_hh);
        // Scratch rows [B,h] for a scaled carry: each unit keeps its columns of g_t there.
        let mut scratch = if matches!(carry, Carry::Scaled(_)) { vec![0.0f32; bh] } else { Vec::new() };
        let (grad_a, grad_h0, scratch) = (Shared::new(grad_a), Shared::new(grad_h0), Shared::new(&mut scratch));
        // Step s of the pass is t = T − 1 − s; step T computes ∂L/∂h0. Each unit returns
        // Σ ∂L/∂h² over its columns, added up in block order below, so the norms do not depend
        // on which thread did which block.
        let partial_sq = run_steps(self.blocks.len(), nt + 1, |s, k| {
            let cols = &self.blocks[k];
            if s == nt {
                // ∂L/∂h0 = c_0·(∂L/∂a_1·w_hh): a step with nothing from the output and no φ'.
                // SAFETY: row 0 of grad_a is finished (step T − 1); grad_h0's columns are
                // this unit's alone.
                let grad_a_1 = unsafe { grad_a.read(0, bh) };
                let mut outs = unsafe { grad_h0.columns(0, nb, nh, cols) };
                outs.iter_mut().for_each(|o| o.fill(0.0));
                let c0 = match carry {
                    Carry::Scaled(c) => c[0] as f32,
                    _ => 1.0,
                };
                if c0 != 0.0 {
                    self.product(w_hh_t, panels, k, grad_a_1, &mut outs, false);
                }
                let scale = |g: &mut f32| *g = flush_tiny(*g * c0);
                outs.iter_mut().for_each(|o| o.iter_mut().for_each(scale));
                return 0.0;
            }
            let t = nt - 1 - s;
            if let Some(lanes) = &lanes {
                // SAFETY: as below; the lanes of step t + 1 are finished, and each unit
                // writes only its columns of step t's lanes (the other half of the buffer).
                return unsafe { self.lanes_step(act, (w_hh_t, panels, k), h_all, &grad_a, lanes, t, cols) };
            }
            // SAFETY: as in `forward`, with rows t + 1 (read, finished with the last step) and
            // t (this block's columns written).
            let mut outs = unsafe { grad_a.columns(t * bh, nb, nh, cols) };
            if t + 1 < nt {
                let grad_a_next = unsafe { grad_a.read((t + 1) * bh, bh) };
                match carry {
                    Carry::Scaled(c) if c[t + 1] == 0.0 => {}
                    Carry::Scaled(c) if c[t + 1] != 1.0 => {
                        // g_t + c·(∂L/∂a_{t+1}·w_hh): the product alone, scaled, then g_t.
                        // SAFETY: the scratch's columns `cols` are this unit's alone.
                        let mut kept = unsafe { scratch.columns(0, nb, nh, cols) };
                        for (g, out) in kept.iter_mut().zip(outs.iter_mut()) {
                            g.copy_from_slice(out);
                            out.fill(0.0);
                        }
                        self.product(w_hh_t, panels, k, grad_a_next, &mut outs, t % 2 == 1);
                        let c = c[t + 1] as f32;
                        for (g, out) in kept.iter().zip(outs.iter_mut()) {
                            out.iter_mut().zip(g.iter()).for_each(|(o, g)| *o = *o * c + g);
                        }
                    }
                    _ => self.product(w_hh_t, panels, k, grad_a_next, &mut outs, t % 2 == 1),
                }
            }
            let mut sq = 0.0f64;
            for (b, out) in outs.iter_mut().enumerate() {
                sq += sum_sq(out);
                apply_phi_prime(act, out, &h_all[t * bh + b * nh..][cols.clone()]);
            }
            sq
        });
        let blocks = self.blocks.len();
        (0..nt).map(|t| partial_sq[(nt - 1 - t) * blocks..][..blocks].iter().sum::<f64>().sqrt()).collect()
    }

    /// `backward` in the row form (the window's steps are the sequence's t0..). Block k's unit
    /// of step t first finishes g_t on its columns, adding c_{t+1}·(∂L/∂a_{t+1}·w_hh) as the sum
    /// of every block's share from the step before (in block order), then ⊙ φ'; then computes
    /// its own share of the next product, Σ over its rows i of g_t[i]·w_hh[i, :] (`rows_axpy`:
    /// the same rows of w_hh its forward unit reads), into its slot of `partials`, [2 parities]
    /// [blocks][B, h]: step t writes parity t % 2, which step t + 1 read before the barrier
    /// between them. A share whose carry scale is zero is not computed (nor read). The last unit
    /// of the pass sums the shares of step 0 into ∂L/∂h0. The sums depend on the number of
    /// blocks, so their bits on the team's thread count (with the blocks' order and the rows'
    /// order fixed, they are the same from run to run).
    #[allow(clippy::too_many_arguments)]
    fn backward_rows(
        &self,
        act: Activation,
        w_hh: &[f32],
        h_all: &[f32],
        grad_a: &mut [f32],
        grad_h0: &mut [f32],
        carry: &Carry,
        t0: usize,
    ) -> Vec<f64> {
        let (nb, nh) = (self.nb, self.nh);
        let (bh, ld, blocks) = (nb * nh, padded(nh), self.blocks.len());
        let nt = grad_a.len() / bh;
        let scale = |t: usize| match carry {
            Carry::Scaled(c) => c[t] as f32,
            _ => 1.0,
        };
        let (mut partials, mut sums) = (vec![0.0f32; 2 * blocks * bh], vec![0.0f32; nh]);
        let (grad_a, grad_h0, partials) = (Shared::new(grad_a), Shared::new(grad_h0), Shared::new(&mut partials));
        // The sum of the shares on each unit's columns (one batch entry at a time).
        let sums = Shared::new(&mut sums);
        let slot = |t: usize, k: usize| ((t % 2) * blocks + k) * bh;
        // out = out + c·Σ_k shares of step t on `cols` (the shares added in block order first),
        // batch entry by batch entry.
        // SAFETY (callers): step t's shares are finished (it is the step before), no unit writes
        // their parity during this step, and the columns `cols` of `sums` are the caller's alone.
        let add_shares = |t: usize, c: f32, cols: &Range<usize>, outs: &mut [&mut [f32]]| {
            let sum = unsafe { sums.slice_mut(cols.start, cols.len()) };
            for (b, out) in outs.iter_mut().enumerate() {
                let share = |k: usize| unsafe { &partials.read(slot(t, k), bh)[b * nh..][cols.clone()] };
                sum.copy_from_slice(share(0));
                for k in 1..blocks {
                    sum.iter_mut().zip(share(k)).for_each(|(s, x)| *s += x);
                }
                if c == 1.0 {
                    out.iter_mut().zip(sum.iter()).for_each(|(o, s)| *o += s);
                } else {
                    out.iter_mut().zip(sum.iter()).for_each(|(o, s)| *o += s * c);
                }
            }
        };
        let partial_sq = run_steps(blocks, nt + 1, |s, k| {
            let cols = &self.blocks[k];
            if s == nt {
                // ∂L/∂h0 = c_0·(∂L/∂a_1·w_hh).
                // SAFETY: grad_h0's columns are this unit's alone; step 0's shares are done.
                let mut outs = unsafe { grad_h0.columns(0, nb, nh, cols) };
                outs.iter_mut().for_each(|o| o.fill(0.0));
                let c0 = scale(0);
                if c0 != 0.0 {
                    add_shares(0, 1.0, cols, &mut outs);
                }
                let scale = |g: &mut f32| *g = flush_tiny(*g * c0);
                outs.iter_mut().for_each(|o| o.iter_mut().for_each(scale));
                return 0.0;
            }
            let t = nt - 1 - s;
            // SAFETY: row t of grad_a: this block's columns are this unit's alone.
            let mut outs = unsafe { grad_a.columns(t * bh, nb, nh, cols) };
            if t + 1 < nt && scale(t + 1) != 0.0 {
                add_shares(t + 1, scale(t + 1), cols, &mut outs);
            }
            let mut sq = 0.0f64;
            for (b, out) in outs.iter_mut().enumerate() {
                sq += sum_sq(out);
                apply_phi_prime(act, out, &h_all[t * bh + b * nh..][cols.clone()]);
            }
            if scale(t) != 0.0 {
                // SAFETY: this block's slot of parity t % 2 is its own; step t + 1 read that
                // parity before the barrier.
                let mut share = unsafe { partials.columns(slot(t, k), nb, nh, &(0..nh)) };
                share.iter_mut().for_each(|s| s.fill(0.0));
                let gs: Vec<&[f32]> = outs.iter().map(|o| &**o).collect();
                // The walk alternates with the sequence's step, so a window of a checkpointed
                // run adds the rows in the order the whole run does; in a whole run it goes
                // against the forward's at the same step, so the pass's first step starts on
                // the rows the forward's last one ended on.
                let reverse = (t0 + t).is_multiple_of(2);
                rows_axpy(self.isa, &w_hh[cols.start * ld..cols.end * ld], ld, &gs, &mut share, reverse);
            }
            sq
        });
        (0..nt).map(|t| partial_sq[(nt - 1 - t) * blocks..][..blocks].iter().sum::<f64>().sqrt()).collect()
    }

    /// One step of regular truncation (`Carry::Lanes`) on block `block` (columns `cols`), its
    /// product with `w` or the block's panels as in `product`: lane m of step t
    /// is g_t + lane m − 1 of step t + 1 times w_hh, then ⊙ φ' (lane 0 is zero); lane K, the
    /// answer, goes to grad_a's row t. Lanes known to be zero are skipped, and lanes that
    /// every loss term already reaches are one (see `Lanes`). Returns Σ ∂L/∂h² of the answer.
    ///
    /// # Safety
    /// The lanes of step t + 1 and row t + 1 of grad_a are finished; no other unit touches the
    /// columns `cols` of step t's lanes or of grad_a's row t.
    #[allow(clippy::too_many_arguments)]
    unsafe fn lanes_step(
        &self,
        act: Activation,
        (w, panels, block): (&[f32], Option<&[Panels]>, usize),
        h_all: &[f32],
        grad_a: &Shared,
        lanes: &Lanes,
        t: usize,
        cols: &Range<usize>,
    ) -> f64 {
        let (nb, nh) = (self.nb, self.nh);
        let bh = nb * nh;
        let (lo, top) = lanes.computed(t);
        let mut sq = 0.0f64;
        for m in lo..=top {
            let mut outs = unsafe { lanes.buf.columns(lanes.slot(t, m), nb, nh, cols) };
            // g_t, still in grad_a's row t (overwritten only after the last lane).
            let g = unsafe { grad_a.columns(t * bh, nb, nh, cols) };
            for (out, g) in outs.iter_mut().zip(&g) {
                out.copy_from_slice(g);
            }
            if let Some(src) = lanes.stored(t + 1, m - 1) {
                let v = unsafe { lanes.buf.read(lanes.slot(t + 1, src), bh) };
                self.product(w, panels, block, v, &mut outs, t % 2 == 1);
            }
            for (b, out) in outs.iter_mut().enumerate() {
                if m == top {
                    sq += sum_sq(out);
                }
                apply_phi_prime(act, out, &h_all[t * bh + b * nh..][cols.clone()]);
            }
        }
        let mut answer = unsafe { grad_a.columns(t * bh, nb, nh, cols) };
        if lo > top {
            answer.iter_mut().for_each(|a| a.fill(0.0));
        } else {
            let lane = unsafe { lanes.buf.columns(lanes.slot(t, top), nb, nh, cols) };
            for (a, l) in answer.iter_mut().zip(&lane) {
                a.copy_from_slice(l);
            }
        }
        sq
    }
}

/// How the backward recursion carries ∂L/∂a_{t+1}·w_hh into ∂L/∂h_t (docs/gradients.md,
/// "Seeing vanishing and exploding gradients": the remedies). The f64 truncated reference
/// (`cpu::truncated`) defines each; tests/cpu_fast.rs checks this path against it.
#[derive(Clone, Debug, PartialEq)]
pub enum Carry {
    /// Full BPTT.
    Full,
    /// ∂L/∂h_t = c_t·(∂L/∂a_{t+1}·w_hh) + g_t: `scales[t]` is c_t for the code's step t − 1
    /// (math index t, so `scales[0]` multiplies ∂L/∂h0). Randomised truncation's cuts.
    Scaled(Vec<f64>),
    /// Regular truncation: loss term s reaches ∂L/∂h_t only if s − t < k, computed with k
    /// "lanes" of ∂L/∂a per step. `last_only`: only the last step has a loss term, so lanes
    /// that hold nothing yet are skipped (about k products in all instead of k per step).
    Lanes { k: usize, last_only: bool },
}

/// The lanes of regular truncation: lane m (1 ≤ m ≤ K) of step t is ∂L/∂a_t keeping only the
/// loss terms s with s − t < m, kept for two steps at a time (the one being computed and the
/// one it reads) in a buffer of 2·(K + 1) rows [B,h], by the parity of the sequence's step: so
/// windows of a checkpointed run, reversed one after the other, pass the lanes of their first
/// step to the window before them in place.
///
/// Two facts keep the work down: lane m of step t is zero when no loss term lies within m
/// steps (m ≤ d_t, the distance to the next scored step: 0 with a loss at every step, T − 1 − t
/// with the last step only), and lanes m ≥ T − t hold every loss term after t, so they are all
/// lane T − t. Only lanes d_t + 1 ..= min(K, T − t) are computed.
pub struct LaneState {
    k: usize,
    last_only: bool,
    /// T of the whole sequence.
    nt: usize,
    bh: usize,
    buf: Vec<f32>,
}

impl LaneState {
    pub fn new(k: usize, last_only: bool, nt: usize, bh: usize) -> Self {
        LaneState { k, last_only, nt, bh, buf: vec![0.0f32; 2 * (k + 1) * bh] }
    }

    /// What the lanes hold, in bytes (`fast::costs` counts the same).
    pub fn bytes(&self) -> u64 {
        4 * self.buf.len() as u64
    }
}

/// A window's view of the lanes: its step t is the sequence's t0 + t.
struct Lanes {
    k: usize,
    last_only: bool,
    nt: usize,
    bh: usize,
    t0: usize,
    buf: Shared,
}

impl Lanes {
    fn of(state: &mut LaneState, t0: usize) -> Self {
        let buf = Shared::new(&mut state.buf);
        Lanes { k: state.k, last_only: state.last_only, nt: state.nt, bh: state.bh, t0, buf }
    }

    /// d_t: lanes m ≤ d_t of step t are zero.
    fn zero_up_to(&self, t: usize) -> usize {
        if self.last_only { self.nt - 1 - (self.t0 + t) } else { 0 }
    }

    /// The lanes computed at step t: lo..=top (none when lo > top).
    fn computed(&self, t: usize) -> (usize, usize) {
        (self.zero_up_to(t) + 1, self.k.min(self.nt - (self.t0 + t)))
    }

    /// Where lane m of step t is held: None when it is zero (m = 0, after the sequence's last
    /// step, or below d_t), else the computed lane it equals.
    fn stored(&self, t: usize, m: usize) -> Option<usize> {
        let t = self.t0 + t;
        if t >= self.nt || m == 0 {
            return None;
        }
        let m = m.min(self.nt - t);
        (m > if self.last_only { self.nt - 1 - t } else { 0 }).then_some(m)
    }

    /// The offset of lane m of step t in `buf`.
    fn slot(&self, t: usize, m: usize) -> usize {
        (((self.t0 + t) % 2) * (self.k + 1) + m) * self.bh
    }
}

/// g ← g ⊙ φ'(a) on one row's block, from h = φ(a) (`h` is that row's block of h_t).
fn apply_phi_prime(act: Activation, out: &mut [f32], h: &[f32]) {
    match act {
        Activation::Identity => out.iter_mut().for_each(|g| *g = flush_tiny(*g)),
        Activation::Tanh => out.iter_mut().zip(h).for_each(|(g, h)| *g = flush_tiny(*g * (1.0 - h * h))),
        Activation::Relu => out.iter_mut().zip(h).for_each(|(g, h)| *g = if *h > 0.0 { flush_tiny(*g) } else { 0.0 }),
    }
}

/// A buffer the team shares: every thread reads finished rows whole and writes its own columns
/// of the current row, the barrier separating the two (see the SAFETY notes at each use).
struct Shared {
    ptr: *mut f32,
    len: usize,
}

// SAFETY: `Shared` only hands out slices through the unsafe methods below, whose callers
// guarantee that no element is written while another thread reads or writes it.
unsafe impl Sync for Shared {}

impl Shared {
    fn new(buf: &mut [f32]) -> Self {
        Shared { ptr: buf.as_mut_ptr(), len: buf.len() }
    }

    /// buf[start..start + len].
    /// # Safety
    /// No thread may write these elements while the slice lives.
    unsafe fn read(&self, start: usize, len: usize) -> &[f32] {
        assert!(start + len <= self.len);
        unsafe { std::slice::from_raw_parts(self.ptr.add(start), len) }
    }

    /// buf[start..start + len], to write.
    /// # Safety
    /// No other thread may read or write these elements while the slice lives.
    #[allow(clippy::mut_from_ref)]
    unsafe fn slice_mut(&self, start: usize, len: usize) -> &mut [f32] {
        assert!(start + len <= self.len);
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(start), len) }
    }

    /// The columns `cols` of each of the `nb` rows (of length nh) starting at `start`.
    /// # Safety
    /// No other thread may read or write these elements while the slices live.
    // A &mut from &self is the point: the team shares one buffer, and the caller's guarantee
    // above is what makes each thread's columns exclusive.
    #[allow(clippy::mut_from_ref)]
    unsafe fn columns(&self, start: usize, nb: usize, nh: usize, cols: &Range<usize>) -> Vec<&mut [f32]> {
        assert!(cols.end <= nh && start + nb * nh <= self.len);
        (0..nb)
            .map(|b| unsafe { std::slice::from_raw_parts_mut(self.ptr.add(start + b * nh + cols.start), cols.len()) })
            .collect()
    }
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
