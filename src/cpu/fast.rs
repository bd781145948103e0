//! The fast f32 CPU BPTT: the same results as `reference` (checked against it in
//! tests/cpu_fast.rs), organised around GEMMs so that only the two recurrences run step by step.
//!
//! - Forward: the input side x_t·w_hxᵀ (+ b_h) of every step is one [T·B, d]×[d, h] GEMM written
//!   straight into the state buffer; then each step adds h_{t-1}·w_hhᵀ and applies φ in place.
//! - Output side, all steps at once: o = H·w_qhᵀ (+ b_q), L and ∂L/∂o, and the output's share
//!   of ∂L/∂h_t, ∂L/∂o·w_qh, are GEMMs over [T·B] rows.
//! - Backward: each step adds ∂L/∂a_{t+1}·w_hh, then multiplies by φ'. Below B = 4 both passes
//!   read w_hh's rows as they lie (the forward's dot products, the backward's row form); the
//!   tile kernel and regular truncation's lanes read a transposed copy, made when first asked.
//! - Weight gradients are single GEMMs over time: ∂L/∂w_hh = ∂L/∂Aᵀ·H_prev,
//!   ∂L/∂w_hx = ∂L/∂Aᵀ·X, ∂L/∂w_qh = ∂L/∂Oᵀ·H; bias gradients are column sums.
//!
//! What makes the recurrences fast (at B = 1 each step streams w_hh, 4 MiB at h = 1024, from
//! L2 and L3; at B = 32 each step is a 67 MFLOP GEMM): one team of threads per pass, each
//! thread owning a block of output columns and so the same part of w_hh every step, meeting
//! at a shared step counter (`team`, `recur`); 64-byte-aligned padded rows (`aligned`); at small
//! batches rows walked in alternating order so each step starts where the last one ended, read
//! four at a time forward (`simd::matvec_acc`) and in the row form backward (`simd::rows_axpy`);
//! from B = 4 the register tile of `kernel` over each
//! thread's block of w_hh packed into panels once per call; kernels chosen at run time (`simd`:
//! AVX-512, AVX2 + FMA, or portable loops; `bptt_with_isa` picks a narrower one); values below
//! f32's normal range flushed to zero (`flush_tiny`). Large scratch buffers are pooled between
//! calls (`aligned`). Every GEMM runs in the same tile (`gemm`); docs/performance.md has the
//! measurements behind these choices.
//!
//! `layer` is the same machinery in layer mode (no output side; upstream gradients in).
//!
//! Conversions from and to the f64 of `Problem` and `BpttResult` are part of the call (and timed).
//!
//! Layout: the states live in one buffer hs [(T+1),B,h] = h0, h_1..h_T, so H_prev and H are two
//! overlapping `[T·B, h]` views of it, and ∂L/∂a `[T,B,h]` is built in place over ∂L/∂o·w_qh.

mod aligned;
mod convert;
pub mod gemm;
mod kernel;
pub mod layer;
mod loss;
mod peak;
mod recur;
mod simd;
mod team;

use aligned::{AlignedVec, padded};
use convert::{convert_into, to_f32, to_f32_padded, to_f64};
use gemm::{Packed, View, gemm, gemm_packed};
use std::sync::OnceLock;

use rayon::prelude::*;
use recur::{Carry, LaneState, Recurrence};

use crate::checkpoint::{Action, Costs, Plan, Slots};
use crate::cpu::checkpointed::Recomputed;
use crate::error::{Error, Result};
use crate::model::{BpttResult, LossAt, Problem, Shape};
use crate::variant::truncation::{Truncation, random_carry_scales};

pub use peak::{FmaPeak, fma_peak};
pub use simd::Isa;

/// Forward, loss and backward in f32, returned in f64 like the reference's, on the widest
/// instruction set the CPU has.
pub fn bptt(p: &Problem) -> BpttResult {
    bptt_with_isa(p, Isa::detect())
}

/// `bptt` with its kernels on `isa`, one of `Isa::available()` (the tests run every one the
/// machine has: AVX-512, AVX2 + FMA, portable).
///
/// # Panics
/// If the CPU lacks `isa`.
pub fn bptt_with_isa(p: &Problem, isa: Isa) -> BpttResult {
    assert!(Isa::available().contains(&isa), "this CPU cannot run {isa:?}");
    whole(p, &Carry::Full, isa)
}

// Truncation: an option of the backward recurrence only (`recur::Carry`); the forward pass,
// the output side and the weight gradients are those of full BPTT, formed from the truncated
// ∂L/∂a_t. The same results as `cpu::truncated` (tests/cpu_fast.rs).

/// BPTT truncated as `trunc` says, with the same meaning as `cpu::truncated::bptt_truncated`:
/// K lanes of ∂L/∂a per step for `Regular(K)` (about K products in all with a loss at the
/// last step only), the random cuts of `random_carry_scales` for `Random`.
pub fn bptt_truncated(p: &Problem, trunc: Truncation) -> Result<BpttResult> {
    Ok(whole(p, &carry_of(p, Some(trunc))?, Isa::detect()))
}

/// BPTT where ∂L/∂h_t = `scales[t]`·(∂L/∂a_{t+1}·w_hh) + ∂L/∂o_t·w_qh (math index t, as
/// `cpu::truncated::bptt_carry_scaled`).
pub fn bptt_carry_scaled(p: &Problem, scales: &[f64]) -> Result<BpttResult> {
    if scales.len() != p.shape.steps || scales.iter().any(|c| !c.is_finite()) {
        return Err(Error::Invalid(format!(
            "expected {} finite carry scales (one per step), got {}",
            p.shape.steps,
            scales.len()
        )));
    }
    Ok(whole(p, &Carry::Scaled(scales.to_vec()), Isa::detect()))
}

/// The backward recurrence's carry for a truncation (None: full BPTT).
fn carry_of(p: &Problem, trunc: Option<Truncation>) -> Result<Carry> {
    Ok(match trunc {
        None => Carry::Full,
        Some(Truncation::Regular(0)) => {
            return Err(Error::Invalid("truncation length K must be at least 1".into()));
        }
        Some(Truncation::Regular(k)) if k >= p.shape.steps => Carry::Full,
        Some(Truncation::Regular(k)) => Carry::Lanes { k, last_only: p.loss_at == LossAt::Last },
        Some(Truncation::Random { p: cut, seed }) => Carry::Scaled(random_carry_scales(p.shape.steps, cut, seed)?),
    })
}

/// The lanes regular truncation keeps across the windows of a run (None for other carries).
fn lane_state(p: &Problem, carry: &Carry) -> Option<LaneState> {
    match *carry {
        Carry::Lanes { k, last_only } => {
            Some(LaneState::new(k, last_only, p.shape.steps, p.shape.batch * p.shape.hidden))
        }
        _ => None,
    }
}

/// Every state stored: one window of all T steps. Runs on one of rayon's workers, so the
/// conversions' parallel loops are jobs on its local queue rather than injected from outside
/// the pool; the thread count of the recurrences' team is this pool's
/// (`rayon::current_num_threads`).
fn whole(p: &Problem, carry: &Carry, isa: Isa) -> BpttResult {
    rayon::scope(|_| {
        isa.run_with(|| {
            let e = Engine::new(p);
            let nt = p.shape.steps;
            let mut w = Window::new(p, nt);
            let mut sums = Sums::new(p);
            let mut loss = 0.0;
            let mut lanes = lane_state(p, carry);
            w.forward(&e, p, 0, nt, &to_f32(&p.h0), nt, Some(&mut loss));
            let grad_h0 = w.backward(&e, p, 0, nt, None, carry, lanes.as_mut(), &mut sums);
            sums.finish(p, loss, grad_h0, to_f64(&w.hs[p.shape.batch * p.shape.hidden..]), to_f64(&w.o))
        })
    })
}

/// The same BPTT carried out by a checkpointing `plan` (docs/design.md "Checkpointing"): each
/// unit is a window of steps whose products run over its rows, the weight gradients summed
/// window by window. Within f32 rounding of `bptt` (the sums are split differently), and the
/// same from run to run. The result has no states.
pub fn bptt_checkpointed(p: &Problem, plan: &Plan) -> Result<(BpttResult, Recomputed)> {
    bptt_checkpointed_with(p, plan, None)
}

/// `bptt_checkpointed`, truncated as `trunc` says (as `bptt_truncated`): the lanes of regular
/// truncation, or the random cuts' scales, carried from window to window.
pub fn bptt_checkpointed_with(p: &Problem, plan: &Plan, trunc: Option<Truncation>) -> Result<(BpttResult, Recomputed)> {
    checkpointed(p, plan, carry_of(p, trunc)?)
}

/// `bptt_checkpointed` with given carry scales (as `bptt_carry_scaled`).
pub fn bptt_checkpointed_scaled(p: &Problem, plan: &Plan, scales: &[f64]) -> Result<(BpttResult, Recomputed)> {
    if scales.len() != p.shape.steps || scales.iter().any(|c| !c.is_finite()) {
        return Err(Error::Invalid(format!("expected {} finite carry scales (one per step)", p.shape.steps)));
    }
    checkpointed(p, plan, Carry::Scaled(scales.to_vec()))
}

fn checkpointed(p: &Problem, plan: &Plan, carry: Carry) -> Result<(BpttResult, Recomputed)> {
    let s = p.shape;
    if plan.steps != s.steps {
        return Err(Error::Invalid(format!("a plan for {} steps does not fit {} steps", plan.steps, s.steps)));
    }
    // Windows of small steps run on one thread: a team's start and its barriers cost more per
    // window than a second core gives back (docs/performance.md, "Checkpointing").
    if plan.units > 1 && s.batch * s.hidden * s.hidden < WINDOW_PAR_MIN_WORK {
        return single_thread().install(|| checkpointed_on_pool(p, plan, carry));
    }
    checkpointed_on_pool(p, plan, carry)
}

/// Per-step multiply-adds (B·h²) below which a checkpointed run's windows stay on one thread.
const WINDOW_PAR_MIN_WORK: usize = 1 << 18;

/// A pool of one thread, made on first use.
fn single_thread() -> &'static rayon::ThreadPool {
    static POOL: std::sync::OnceLock<rayon::ThreadPool> = std::sync::OnceLock::new();
    POOL.get_or_init(|| rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("a thread"))
}

fn checkpointed_on_pool(p: &Problem, plan: &Plan, carry: Carry) -> Result<(BpttResult, Recomputed)> {
    let s = p.shape;
    rayon::scope(|_| {
        Isa::detect().run_with(|| {
            let bh = s.batch * s.hidden;
            let e = Engine::new(p);
            let mut w = Window::new(p, plan.unit_steps);
            let mut sums = Sums::new(p);
            let mut slots = Slots::default();
            let mut current = to_f32(&p.h0);
            let mut held = vec![0.0f32; bh];
            let mut loss = 0.0;
            let mut evaluated = 0u64;
            let mut incoming: Option<Vec<f32>> = None;
            let mut lanes = lane_state(p, &carry);
            let mut grad_h0 = Vec::new();
            let mut last_state = Vec::new();
            for action in plan.actions() {
                match action {
                    Action::Advance { from, to, sweep } => {
                        for unit in from + 1..=to {
                            let r = plan.unit_range(unit);
                            w.forward(&e, p, r.start, r.len(), &current, r.len(), sweep.then_some(&mut loss));
                            current.copy_from_slice(w.state(r.len()));
                            evaluated += r.len() as u64;
                        }
                    }
                    Action::Store { slot, .. } => slots.store(slot, &current),
                    Action::Restore { slot, .. } => slots.restore(slot, &mut current),
                    Action::Tail => {
                        let r = plan.unit_range(plan.units);
                        w.forward(&e, p, r.start, r.len(), &current, r.len(), Some(&mut loss));
                        held.copy_from_slice(w.state(r.len()));
                        last_state = to_f64(&held);
                        evaluated += r.len() as u64;
                    }
                    Action::Reverse { unit } => {
                        let r = plan.unit_range(unit);
                        if unit < plan.units {
                            // The inner states from x_{unit−1}; the last one is the held x_unit.
                            w.forward(&e, p, r.start, r.len(), &current, r.len() - 1, None);
                            w.set_state(r.len(), &held);
                            evaluated += r.len() as u64 - 1;
                        }
                        let out =
                            w.backward(&e, p, r.start, r.len(), incoming.as_deref(), &carry, lanes.as_mut(), &mut sums);
                        if unit == 1 {
                            grad_h0 = out;
                        } else {
                            incoming = Some(out);
                        }
                        std::mem::swap(&mut current, &mut held);
                    }
                }
            }
            let result = sums.finish(p, loss, grad_h0, Vec::new(), Vec::new());
            let peak_bytes = costs(p.shape, None).bytes(plan) + lanes.as_ref().map_or(0, LaneState::bytes);
            Ok((result, Recomputed { forward_steps: evaluated, peak_bytes, last_state }))
        })
    })
}

/// The forward pass alone, in windows of `window` steps: L and the outputs o `[T,B,q]`, with
/// no state kept beyond a window (what evaluating a model on a long sequence needs).
pub fn forward_loss(p: &Problem, window: usize) -> (f64, Vec<f64>) {
    rayon::scope(|_| {
        Isa::detect().run_with(|| {
            let s = p.shape;
            let window = window.clamp(1, s.steps);
            let e = Engine::new(p);
            let mut w = Window::new(p, window);
            let (mut loss, mut o) = (0.0, Vec::with_capacity(s.steps * s.batch * s.output));
            let mut current = to_f32(&p.h0);
            for t0 in (0..s.steps).step_by(window) {
                let len = window.min(s.steps - t0);
                w.forward(&e, p, t0, len, &current, len, Some(&mut loss));
                current.copy_from_slice(w.state(len));
                o.extend(w.o[..len * w.bq].iter().map(|&v| v as f64));
            }
            (loss, o)
        })
    })
}

/// What a checkpointed run of the fast path holds (`checkpoint::choose`): f32 states in the
/// slots; per step of a window its states, inputs, outputs, ∂L/∂o and ∂L/∂a; the current, held
/// and carried states and the norms besides; under regular truncation (K < T) its lanes,
/// 2·(K + 1) rows `[B,h]` of f32 (`LaneState`).
pub fn costs(s: Shape, truncate: Option<Truncation>) -> Costs {
    let (b, d, h, q) = (s.batch as u64, s.input as u64, s.hidden as u64, s.output as u64);
    Costs {
        state: 4 * b * h,
        per_step: 4 * b * (2 * h + d + 2 * q),
        fixed: 4 * 4 * b * h + 8 * s.steps as u64 + lanes_bytes(s, truncate),
        max_unit: s.steps,
        max_slots: usize::MAX,
        unit_overhead: UNIT_OVERHEAD_STEPS,
    }
}

/// What the full-storage run holds for the same (one window of T steps), plus the states it
/// returns in f64.
pub fn full_bytes(s: Shape, truncate: Option<Truncation>) -> u64 {
    let c = costs(s, truncate);
    c.fixed + c.per_step * s.steps as u64 + 8 * (s.steps * s.batch * (s.hidden + s.output)) as u64
}

/// The lanes regular truncation keeps (`lane_state`): none for other carries, nor when K ≥ T
/// (full BPTT).
fn lanes_bytes(s: Shape, truncate: Option<Truncation>) -> u64 {
    match truncate {
        Some(Truncation::Regular(k)) if k >= 1 && k < s.steps => 4 * 2 * (k as u64 + 1) * (s.batch * s.hidden) as u64,
        _ => 0,
    }
}

/// A window's cost beyond its steps (starting the recurrences' team, the products' set-up), in
/// forward steps of the recurrence, for `checkpoint::choose`.
const UNIT_OVERHEAD_STEPS: f64 = 8.0;

/// The weights in f32, converted once per call, and packed once for the products of every
/// window: w_hxᵀ (the input projection), w_qhᵀ (the outputs) and w_qh (∂L/∂o·w_qh).
struct Engine {
    w_hx: Vec<f32>,
    w_hh: AlignedVec,
    /// w_hhᵀ, made the first time a pass reads it (`Recurrence::reads_transpose`).
    w_hh_t: OnceLock<AlignedVec>,
    hidden: usize,
    w_qh: Vec<f32>,
    packed_w_hx_t: Packed,
    packed_w_qh_t: Packed,
    packed_w_qh: Packed,
    b_h: Option<Vec<f32>>,
    b_q: Option<Vec<f32>>,
    recurrence: Recurrence,
}

impl Engine {
    fn new(p: &Problem) -> Self {
        let s = p.shape;
        let w = &p.params;
        let (d, nh, q) = (s.input, s.hidden, s.output);
        // The small weights are converted and packed while w_hh's conversion, a pass over
        // memory, runs: the thread that finishes first joins the other's work.
        let isa = simd::Isa::current();
        let (w_hh, (w_hx, w_qh, [packed_w_hx_t, packed_w_qh_t, packed_w_qh])) = rayon::join(
            || to_f32_padded(&w.w_hh, nh, nh),
            || {
                isa.run_with(|| {
                    let (w_hx, w_qh) = (to_f32(&w.w_hx), to_f32(&w.w_qh));
                    let packed = [
                        Packed::new(View::new(&w_hx, nh, d).t()),
                        Packed::new(View::new(&w_qh, q, nh).t()),
                        Packed::new(View::new(&w_qh, q, nh)),
                    ];
                    (w_hx, w_qh, packed)
                })
            },
        );
        Engine {
            packed_w_hx_t,
            packed_w_qh_t,
            packed_w_qh,
            w_hx,
            w_hh,
            w_hh_t: OnceLock::new(),
            hidden: nh,
            w_qh,
            b_h: w.b_h.as_deref().map(to_f32),
            b_q: w.b_q.as_deref().map(to_f32),
            recurrence: Recurrence::new(simd::Isa::current(), s.batch, s.hidden),
        }
    }

    fn w_hh_t(&self) -> &[f32] {
        self.w_hh_t.get_or_init(|| transpose_padded(&self.w_hh, self.hidden))
    }
}

/// The buffers of a window of up to `cap` steps.
///
/// Layout: the states live in one buffer hs [(L+1),B,h] = h_start, h_1..h_L, so H_prev and H
/// are two overlapping `[L·B, h]` views of it, and ∂L/∂a `[L,B,h]` is built in place over
/// ∂L/∂o·w_qh.
struct Window {
    /// B, and B·h, B·d, B·q: one step's rows.
    nb: usize,
    bh: usize,
    bd: usize,
    bq: usize,
    /// (t0, len) of the window whose outputs and ∂L/∂o are in `o` and `grad_o`.
    scored: Option<(usize, usize)>,
    hs: AlignedVec,
    x: Vec<f32>,
    o: Vec<f32>,
    grad_o: Vec<f32>,
    grad_a: AlignedVec,
}

impl Window {
    fn new(p: &Problem, cap: usize) -> Self {
        let s = p.shape;
        let (bh, bd, bq) = (s.batch * s.hidden, s.batch * s.input, s.batch * s.output);
        Window {
            nb: s.batch,
            bh,
            bd,
            bq,
            scored: None,
            hs: AlignedVec::scratch((cap + 1) * bh),
            x: vec![0.0; cap * bd],
            o: vec![0.0; cap * bq],
            grad_o: vec![0.0; cap * bq],
            grad_a: AlignedVec::scratch(cap * bh),
        }
    }

    /// h after the window's step k (k = 0: its start).
    fn state(&self, k: usize) -> &[f32] {
        &self.hs[k * self.bh..][..self.bh]
    }

    fn set_state(&mut self, k: usize, h: &[f32]) {
        self.hs[k * self.bh..][..self.bh].copy_from_slice(h);
        self.scored = None;
    }

    /// The window of `len` steps from step t0 (0-based): h_start = `start`, then the first
    /// `steps` of its steps forward: the input side x_t·w_hxᵀ (+ b_h) of every step as one
    /// GEMM written straight into the state buffer, then each step adds h_{t-1}·w_hhᵀ and
    /// applies φ in place. With `loss`, the outputs o = H·w_qhᵀ (+ b_q) and the loss terms
    /// too (adds them to `loss`).
    #[allow(clippy::too_many_arguments)]
    fn forward(
        &mut self,
        e: &Engine,
        p: &Problem,
        t0: usize,
        len: usize,
        start: &[f32],
        steps: usize,
        loss: Option<&mut f64>,
    ) {
        let (bh, bd) = (self.bh, self.bd);
        let (d, nh) = (p.shape.input, p.shape.hidden);
        self.scored = None;
        self.hs[..bh].copy_from_slice(start);
        convert_into(&mut self.x[..len * bd], &p.x[t0 * bd..][..len * bd]);
        if steps > 0 {
            let hs = &mut self.hs[..(steps + 1) * bh];
            let x = View::new(&self.x[..steps * bd], steps * self.nb, d);
            gemm_packed(x, View::new(&e.w_hx, nh, d).t(), &e.packed_w_hx_t, &mut hs[bh..], false);
            if let Some(b_h) = &e.b_h {
                add_to_rows(&mut hs[bh..], b_h);
            }
            e.recurrence.forward(p.activation, &e.w_hh, || e.w_hh_t(), hs);
        }
        if let Some(loss) = loss {
            self.outputs(e, p, t0, len, loss);
        }
    }

    /// o = H·w_qhᵀ + b_q for the window's `len` steps, their loss terms added to `loss`, and
    /// ∂L/∂o.
    fn outputs(&mut self, e: &Engine, p: &Problem, t0: usize, len: usize, loss: &mut f64) {
        let (bh, bq) = (self.bh, self.bq);
        let (nh, q) = (p.shape.hidden, p.shape.output);
        let o = &mut self.o[..len * bq];
        let h = View::new(&self.hs[bh..][..len * bh], len * self.nb, nh);
        gemm_packed(h, View::new(&e.w_qh, q, nh).t(), &e.packed_w_qh_t, o, false);
        if let Some(b_q) = &e.b_q {
            add_to_rows(o, b_q);
        }
        loss::loss_and_grad_o(p, t0..t0 + len, o, &mut self.grad_o[..len * bq], loss);
        self.scored = Some((t0, len));
    }

    /// The backward pass over the window of `len` steps from t0, whose states are in place:
    /// ∂L/∂o and the output's share of ∂L/∂h_t, ∂L/∂o·w_qh, as GEMMs over its rows; `incoming`
    /// = c·(∂L/∂a_{t0+len+1}·w_hh) from the window after it (none for the last, nor under
    /// regular truncation, whose `lanes` carry it) added to its last step; the recurrence, last
    /// step to first, with the window's share of `carry`; the weight gradients' terms as GEMMs
    /// over its rows, added to `sums`. Returns c_{t0}·(∂L/∂a_{t0+1}·w_hh): ∂L/∂h0 for the first
    /// window, what the window before it takes in otherwise.
    #[allow(clippy::too_many_arguments)]
    fn backward(
        &mut self,
        e: &Engine,
        p: &Problem,
        t0: usize,
        len: usize,
        incoming: Option<&[f32]>,
        carry: &Carry,
        lanes: Option<&mut LaneState>,
        sums: &mut Sums,
    ) -> Vec<f32> {
        let (bh, bd, bq) = (self.bh, self.bd, self.bq);
        let s = p.shape;
        let (nb, d, nh, q) = (s.batch, s.input, s.hidden, s.output);
        let rows = len * nb;
        if self.scored != Some((t0, len)) {
            let mut unscored = 0.0; // counted when the first sweep scored this window
            self.outputs(e, p, t0, len, &mut unscored);
        }
        let grad_o = &self.grad_o[..len * bq];
        let grad_a = &mut self.grad_a[..len * bh];
        gemm_packed(View::new(grad_o, rows, q), View::new(&e.w_qh, q, nh), &e.packed_w_qh, grad_a, false);
        if let (Some(c), None) = (incoming, &lanes) {
            grad_a[(len - 1) * bh..].iter_mut().zip(c).for_each(|(g, c)| *g += c);
        }
        let carry = match carry {
            Carry::Scaled(c) => Carry::Scaled(c[t0..t0 + len].to_vec()),
            other => other.clone(),
        };
        let h_all = &self.hs[bh..][..len * bh];
        let mut out = vec![0.0f32; bh];
        let norms =
            e.recurrence.backward(p.activation, &e.w_hh, || e.w_hh_t(), h_all, grad_a, &mut out, &carry, lanes, t0);
        sums.grad_h_norm[t0..t0 + len].copy_from_slice(&norms);

        let grad_a = View::new(grad_a, rows, nh);
        let h_prev = View::new(&self.hs[..rows * nh], rows, nh);
        let acc = sums.started;
        gemm(grad_a.t(), h_prev, &mut sums.grad_w_hh, acc);
        gemm(grad_a.t(), View::new(&self.x[..len * bd], rows, d), &mut sums.grad_w_hx, acc);
        gemm(View::new(grad_o, rows, q).t(), View::new(h_all, rows, nh), &mut sums.grad_w_qh, acc);
        if p.has_bias() {
            add_column_sums(&mut sums.grad_b_h, &self.grad_a[..len * bh], nh);
            add_column_sums(&mut sums.grad_b_q, grad_o, q);
        }
        sums.started = true;
        out
    }
}

/// The gradients' sums over the windows so far.
struct Sums {
    /// Whether a window has added to them (else the first GEMMs overwrite).
    started: bool,
    grad_w_hx: Vec<f32>,
    grad_w_hh: AlignedVec,
    grad_w_qh: Vec<f32>,
    grad_b_h: Vec<f64>,
    grad_b_q: Vec<f64>,
    grad_h_norm: Vec<f64>,
}

impl Sums {
    fn new(p: &Problem) -> Self {
        let s = p.shape;
        let (d, nh, q) = (s.input, s.hidden, s.output);
        Sums {
            started: false,
            grad_w_hx: vec![0.0; nh * d],
            grad_w_hh: AlignedVec::scratch(nh * nh),
            grad_w_qh: vec![0.0; q * nh],
            grad_b_h: vec![0.0; nh],
            grad_b_q: vec![0.0; q],
            grad_h_norm: vec![0.0; s.steps],
        }
    }

    fn finish(self, p: &Problem, loss: f64, grad_h0: Vec<f32>, h: Vec<f64>, o: Vec<f64>) -> BpttResult {
        let bias = p.has_bias();
        BpttResult {
            loss,
            grad_w_hx: to_f64(&self.grad_w_hx),
            grad_w_hh: to_f64(&self.grad_w_hh),
            grad_w_qh: to_f64(&self.grad_w_qh),
            grad_b_h: bias.then_some(self.grad_b_h),
            grad_b_q: bias.then_some(self.grad_b_q),
            grad_h0: to_f64(&grad_h0),
            grad_h_norm: self.grad_h_norm,
            h,
            o,
        }
    }
}

/// x, or 0 where |x| is below f32's normal range (1.2e-38). A subnormal operand makes each
/// FMA that touches it take a microcode assist (~100× slower), and they do arise: softmax
/// probabilities of far-off logits, gradients that vanish over many steps. Dropping them
/// changes no sum at f32 precision; every result is still checked against the f64 reference.
#[inline]
fn flush_tiny(x: f32) -> f32 {
    if x.abs() < f32::MIN_POSITIVE { 0.0 } else { x }
}

/// wᵀ for a square w [n,n] (both at the padded row stride), in 32×32 tiles: each tile reads 32
/// source rows and writes 32 destination rows in whole lines through a tile buffer, so a 4 KiB
/// row stride (which maps every row of a column to the same L1 set) costs no partial-line
/// writes. Strips of 32 output rows go to rayon's threads.
fn transpose_padded(w: &[f32], n: usize) -> AlignedVec {
    const TILE: usize = 32;
    let ld = padded(n);
    let mut w_t = AlignedVec::scratch(n * ld);
    w_t.par_chunks_mut(TILE * ld).enumerate().for_each(|(strip, out)| {
        let j0 = strip * TILE;
        let tj = out.len() / ld;
        let mut tile = [[0.0f32; TILE]; TILE];
        for i0 in (0..n).step_by(TILE) {
            let ti = TILE.min(n - i0);
            for i in 0..ti {
                let src = &w[(i0 + i) * ld + j0..][..tj];
                for (j, &x) in src.iter().enumerate() {
                    tile[j][i] = x;
                }
            }
            for (j, row) in tile.iter().enumerate().take(tj) {
                out[j * ld + i0..][..ti].copy_from_slice(&row[..ti]);
            }
        }
    });
    w_t
}

/// Adds `v` to every row of the row-major `m` [*, v.len()].
fn add_to_rows(m: &mut [f32], v: &[f32]) {
    for row in m.chunks_exact_mut(v.len()) {
        row.iter_mut().zip(v).for_each(|(a, b)| *a += b);
    }
}

/// Adds Σ over rows of the row-major `m` [*, n] to `sums`, in f64 (the bias gradients).
fn add_column_sums(sums: &mut [f64], m: &[f32], n: usize) {
    for row in m.chunks_exact(n) {
        sums.iter_mut().zip(row).for_each(|(s, &g)| *s += g as f64);
    }
}
