//! The fast f32 CPU BPTT: the same results as `reference` (checked against it in
//! tests/cpu_fast.rs), organised around GEMMs so that only the two recurrences run step by step.
//!
//! - Forward: the input side x_t·w_hxᵀ (+ b_h) of every step is one [T·B, d]×[d, h] GEMM written
//!   straight into the state buffer; then each step adds h_{t-1}·w_hhᵀ and applies φ in place.
//! - Output side, all steps at once: o = H·w_qhᵀ (+ b_q), L and ∂L/∂o, and the output's share
//!   of ∂L/∂h_t, ∂L/∂o·w_qh, are GEMMs over [T·B] rows.
//! - Backward: each step adds ∂L/∂a_{t+1}·w_hh, then multiplies by φ'. A transposed copy of
//!   w_hh is made once, so each pass reads the orientation its kernel wants.
//! - Weight gradients are single GEMMs over time: ∂L/∂w_hh = ∂L/∂Aᵀ·H_prev,
//!   ∂L/∂w_hx = ∂L/∂Aᵀ·X, ∂L/∂w_qh = ∂L/∂Oᵀ·H; bias gradients are column sums.
//!
//! What makes the recurrences fast (at B = 1 each step streams w_hh, 4 MiB at h = 1024, from
//! L2 and L3; at B = 32 each step is a 67 MFLOP GEMM): one team of threads per pass, each
//! thread owning a block of output columns and so the same part of w_hh every step, meeting
//! at a shared step counter (`team`, `recur`); 64-byte-aligned padded rows (`aligned`); at small
//! batches rows walked in alternating order so each step starts where the last one ended, read
//! four at a time (`simd::matvec_acc`); from B = 4 the register tile of `kernel` over each
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
pub mod gemm;
mod kernel;
pub mod layer;
mod loss;
mod peak;
mod recur;
mod simd;
mod team;

use aligned::{AlignedVec, padded};
use gemm::{View, gemm};
use rayon::prelude::*;
use recur::{Carry, Recurrence};

use crate::error::{Error, Result};
use crate::model::{BpttResult, LossAt, Problem};
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
    on_worker(p, &Carry::Full, isa)
}

// Truncation: an option of the backward recurrence only (`recur::Carry`); the forward pass,
// the output side and the weight gradients are those of full BPTT, formed from the truncated
// ∂L/∂a_t. The same results as `cpu::truncated` (tests/cpu_fast.rs).

/// BPTT truncated as `trunc` says, with the same meaning as `cpu::truncated::bptt_truncated`:
/// K lanes of ∂L/∂a per step for `Regular(K)` (about K products in all with a loss at the
/// last step only), the random cuts of `random_carry_scales` for `Random`.
pub fn bptt_truncated(p: &Problem, trunc: Truncation) -> Result<BpttResult> {
    match trunc {
        Truncation::Regular(0) => Err(Error::Invalid("truncation length K must be at least 1".into())),
        Truncation::Regular(k) => {
            Ok(on_worker(p, &Carry::Lanes { k, last_only: p.loss_at == LossAt::Last }, Isa::detect()))
        }
        Truncation::Random { p: cut, seed } => bptt_carry_scaled(p, &random_carry_scales(p.shape.steps, cut, seed)?),
    }
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
    Ok(on_worker(p, &Carry::Scaled(scales.to_vec()), Isa::detect()))
}

/// Runs on one of rayon's workers, so the conversions' parallel loops are jobs on its local
/// queue rather than injected from outside the pool, with the kernels on `isa`. The thread
/// count of the recurrences' team is this pool's (`rayon::current_num_threads`).
fn on_worker(p: &Problem, carry: &Carry, isa: Isa) -> BpttResult {
    rayon::scope(|_| isa.run_with(|| bptt_on_worker(p, carry)))
}

fn bptt_on_worker(p: &Problem, carry: &Carry) -> BpttResult {
    let s = p.shape;
    let (nt, nb, d, nh, q) = (s.steps, s.batch, s.input, s.hidden, s.output);
    let rows = nt * nb;
    let (bh, w) = (nb * nh, &p.params);
    let act = p.activation;
    let recurrence = Recurrence::new(simd::Isa::current(), nb, nh);

    let w_hx = to_f32(&w.w_hx);
    let w_hh = to_f32_padded(&w.w_hh, nh, nh);
    let w_hh_t = transpose_padded(&w_hh, nh);
    let w_qh = to_f32(&w.w_qh);
    let x = to_f32(&p.x);

    // hs = [h0; a_1..a_T], where a_t = x_t·w_hxᵀ + b_h until step t turns it into h_t.
    let mut hs = AlignedVec::scratch((nt + 1) * bh);
    hs[..bh].copy_from_slice(&to_f32(&p.h0));
    gemm(View::new(&x, rows, d), View::new(&w_hx, nh, d).t(), &mut hs[bh..], false);
    if let Some(b_h) = &w.b_h {
        add_to_rows(&mut hs[bh..], &to_f32(b_h));
    }
    recurrence.forward(act, &w_hh, &w_hh_t, &mut hs);
    let h_prev_all = &hs[..rows * nh];
    let h_all = &hs[bh..];

    // o = H·w_qhᵀ + b_q, then L and ∂L/∂o for every step.
    let mut o = vec![0.0f32; rows * q];
    gemm(View::new(h_all, rows, nh), View::new(&w_qh, q, nh).t(), &mut o, false);
    if let Some(b_q) = &w.b_q {
        add_to_rows(&mut o, &to_f32(b_q));
    }
    let (loss, grad_o) = loss::loss_and_grad_o(p, &o);

    // grad_a starts as ∂L/∂o·w_qh (the output's share of ∂L/∂h_t) and becomes ∂L/∂a step by
    // step, last to first.
    let mut grad_a = AlignedVec::scratch(rows * nh);
    gemm(View::new(&grad_o, rows, q), View::new(&w_qh, q, nh), &mut grad_a, false);
    let mut grad_h0 = vec![0.0f32; bh];
    let grad_h_norm = recurrence.backward(act, &w_hh, &w_hh_t, h_all, &mut grad_a, &mut grad_h0, carry);

    let grad_a_view = View::new(&grad_a, rows, nh);
    let mut grad_w_hh = AlignedVec::scratch(nh * nh);
    gemm(grad_a_view.t(), View::new(h_prev_all, rows, nh), &mut grad_w_hh, false);
    let mut grad_w_hx = vec![0.0f32; nh * d];
    gemm(grad_a_view.t(), View::new(&x, rows, d), &mut grad_w_hx, false);
    let mut grad_w_qh = vec![0.0f32; q * nh];
    gemm(View::new(&grad_o, rows, q).t(), View::new(h_all, rows, nh), &mut grad_w_qh, false);
    let bias = p.has_bias();

    BpttResult {
        loss,
        grad_w_hx: to_f64(&grad_w_hx),
        grad_w_hh: to_f64(&grad_w_hh),
        grad_w_qh: to_f64(&grad_w_qh),
        grad_b_h: bias.then(|| column_sums(&grad_a, nh)),
        grad_b_q: bias.then(|| column_sums(&grad_o, q)),
        grad_h0: to_f64(&grad_h0),
        grad_h_norm,
        h: to_f64(h_all),
        o: to_f64(&o),
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

/// Element-wise conversions are split over rayon's threads in chunks this long: the big ones
/// (w_hh in, grad_w_hh out) are memory-bound and page-fault-bound, and the second core helps.
const CONVERT_CHUNK: usize = 1 << 15;

fn to_f32(v: &[f64]) -> Vec<f32> {
    // collect() writes straight into the new Vec: no zero-fill pass over memory first.
    v.par_iter().with_min_len(CONVERT_CHUNK).map(|&x| x as f32).collect()
}

fn to_f64(v: &[f32]) -> Vec<f64> {
    v.par_iter().with_min_len(CONVERT_CHUNK).map(|&x| x as f64).collect()
}

/// w [rows, cols] (row-major f64) as f32 rows at the padded stride, starting on a cache line.
fn to_f32_padded(w: &[f64], rows: usize, cols: usize) -> AlignedVec {
    let ld = padded(cols);
    let mut out = AlignedVec::scratch(rows * ld);
    out.par_chunks_mut(ld)
        .zip(w.par_chunks(cols))
        .with_min_len(CONVERT_CHUNK / ld.max(1))
        .for_each(|(o, w)| o.iter_mut().zip(w).for_each(|(o, &w)| *o = w as f32));
    out
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

/// Σ over rows of the row-major `m` [*, n], summed in f64 (the bias gradients).
fn column_sums(m: &[f32], n: usize) -> Vec<f64> {
    let mut sums = vec![0.0f64; n];
    for row in m.chunks_exact(n) {
        sums.iter_mut().zip(row).for_each(|(s, &g)| *s += g as f64);
    }
    sums
}
