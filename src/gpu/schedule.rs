//! The dispatch schedules: which kernel runs with which bindings and parameters, in order.
//! A schedule is a plain list built once per configuration and replayed on every run, so
//! recording a run is a loop with no decisions in it.
//!
//! Buffer layout shared by both schedules (slots of [B, h] blocks): `h` slot t is h_t (slot 0 is
//! h0), `grad_h` slot t is ∂L/∂h_t (slot 0 is ∂L/∂h0), `grad_a` slot t is ∂L/∂a_t (slot T+1
//! stays zero), and row block t−1 of x, o, grad_o (and of xproj, gq) belongs to step t.

use super::kernels::{Kernel, ParamBlock, params};
use crate::model::{Activation, LossAt, LossFn, Shape};

/// How the work is split into dispatches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    /// The textbook, one equation per dispatch: per step a forward and an output dispatch,
    /// and per step backward a recurrence dispatch plus one accumulation per weight gradient.
    Stepwise,
    /// Only the recurrences stay sequential (one dispatch per step each way); the input and
    /// output projections, ∂L/∂o·w_qh and the weight gradients are single matrix products
    /// over all T·B rows.
    #[default]
    Fused,
}

impl Schedule {
    pub fn name(self) -> &'static str {
        crate::model::Choice::name(self)
    }
}

crate::choice!(Schedule {
    Stepwise => "stepwise": "the textbook, one equation per dispatch: per step a forward and an output dispatch, and per step backward a recurrence dispatch plus one accumulation per weight gradient",
    Fused => "fused": "only the recurrences stay sequential (one dispatch per step each way); the input and output projections, ∂L/∂o·w_qh and the weight gradients are single matrix products over all T·B rows",
});

/// Which compute pass a dispatch belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Forward,
    Backward,
}

/// A named part of a pass, timed on its own where the adapter can write timestamps inside
/// passes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Fused: x·w_hxᵀ + b_h for all rows, and the copy w_hhᵀ.
    InputProjection,
    /// The per-step forward dispatches.
    ForwardSteps,
    /// Fused: o = h·w_qhᵀ + b_q for all rows; both: the loss and ∂L/∂o.
    OutputAndLoss,
    /// Fused: ∂L/∂o·w_qh for all rows.
    OutputGradient,
    /// The per-step backward dispatches (stepwise: with the weight-gradient accumulations).
    BackwardSteps,
    /// Fused: the weight and bias gradients as single products over all rows.
    WeightGradients,
    /// Layer mode, fused: ∂L/∂x = ∂L/∂A·w_hx over all rows.
    InputGradient,
    /// Gradient clipping to a global norm.
    Clip,
    /// ∂L/∂h0 (stepwise) and the norms ‖∂L/∂h_t‖.
    Norms,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::InputProjection => "input_projection",
            Stage::ForwardSteps => "forward_steps",
            Stage::OutputAndLoss => "output_and_loss",
            Stage::OutputGradient => "output_gradient",
            Stage::BackwardSteps => "backward_steps",
            Stage::WeightGradients => "weight_gradients",
            Stage::InputGradient => "input_gradient",
            Stage::Clip => "clip",
            Stage::Norms => "norms",
        }
    }

    pub fn phase(self) -> Phase {
        match self {
            Stage::InputProjection | Stage::ForwardSteps | Stage::OutputAndLoss => Phase::Forward,
            _ => Phase::Backward,
        }
    }
}

/// A kernel together with the buffers bound to it at 1.., in the kernel's order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Binding {
    /// forward_step: x, w_hx, w_hh, b_h, h
    Forward,
    /// output_step: h, w_qh, b_q, o
    Output,
    /// loss_grad_o: o, y, labels, grad_o, loss_rows
    Loss,
    /// reduce_sum: loss_rows, loss
    LossSum,
    /// backward_step: w_hh, w_qh, grad_o, h, grad_a, grad_h
    Backward,
    /// accumulate_outer: grad_o, h, grad_w_qh
    OuterWQh,
    /// accumulate_outer: grad_a, h, grad_w_hh
    OuterWHh,
    /// accumulate_outer: grad_a, x, grad_w_hx
    OuterWHx,
    /// accumulate_colsum: grad_a, grad_b_h
    ColsumBH,
    /// accumulate_colsum: grad_o, grad_b_q
    ColsumBQ,
    /// row_norms: grad_h, grad_h_norm
    Norms,
    /// transpose: w_hh, w_hh_t
    TransposeWHh,
    /// matmul: x, w_hx, xproj, b_h
    InputProjection,
    /// matmul: h, w_qh, o, b_q
    OutputProjection,
    /// matmul: grad_o, w_qh, gq, (bias unused)
    OutputGradient,
    /// matmul: grad_a, h, grad_w_hh, (bias unused)
    GradWHh,
    /// matmul: grad_a, x, grad_w_hx, (bias unused)
    GradWHx,
    /// matmul: grad_o, h, grad_w_qh, (bias unused)
    GradWQh,
    /// backward_step in layer mode: w_hh, w_qh (unused), gq (the upstream ∂L/∂h_t), h, grad_a, grad_h
    LayerBackward,
    /// matmul: grad_a, w_hx, grad_x, (bias unused): ∂L/∂x in layer mode
    GradX,
    /// recurrent_step forward: w_hh_t, xproj, h, grad_h (unused), xproj (unused)
    RecurrentForward,
    /// recurrent_step backward: w_hh, gq, grad_a, grad_h, h
    RecurrentBackward,
    /// truncated_step: w_hh, gq, grad_a (lanes), grad_h, h
    TruncatedBackward,
    /// row_norms of one parameter gradient into clip_norms
    ClipNormWHx,
    ClipNormWHh,
    ClipNormWQh,
    ClipNormBH,
    ClipNormBQ,
    /// clip_scale: clip_norms, one parameter gradient
    ClipScaleWHx,
    ClipScaleWHh,
    ClipScaleWQh,
    ClipScaleBH,
    ClipScaleBQ,
}

impl Binding {
    pub fn kernel(self) -> Kernel {
        use Binding::*;
        match self {
            Forward => Kernel::ForwardStep,
            Output => Kernel::OutputStep,
            Loss => Kernel::LossGradO,
            LossSum => Kernel::ReduceSum,
            Backward | LayerBackward => Kernel::BackwardStep,
            OuterWQh | OuterWHh | OuterWHx => Kernel::AccumulateOuter,
            ColsumBH | ColsumBQ => Kernel::AccumulateColsum,
            Norms => Kernel::RowNorms,
            TransposeWHh => Kernel::Transpose,
            InputProjection | OutputProjection | OutputGradient | GradWHh | GradWHx | GradWQh | GradX => Kernel::Matmul,
            RecurrentForward | RecurrentBackward => Kernel::RecurrentStep,
            TruncatedBackward => Kernel::TruncatedStep,
            ClipNormWHx | ClipNormWHh | ClipNormWQh | ClipNormBH | ClipNormBQ => Kernel::RowNorms,
            ClipScaleWHx | ClipScaleWHh | ClipScaleWQh | ClipScaleBH | ClipScaleBQ => Kernel::ClipScale,
        }
    }

    /// Buffer names bound at 1.. on a device whose recurrent_step walks rows or not: row walks
    /// read W in the other orientation (forward w_hh, backward w_hhᵀ).
    pub fn buffers_for(self, walk_rows: bool) -> &'static [&'static str] {
        match (self, walk_rows) {
            (Binding::RecurrentForward, true) => &["w_hh", "xproj", "h", "grad_h", "xproj"],
            (Binding::RecurrentBackward, true) => &["w_hh_t", "gq", "grad_a", "grad_h", "h"],
            _ => self.buffers(),
        }
    }

    /// Buffer names (see `BufferSizes`) bound at 1.., in the kernel's order.
    pub fn buffers(self) -> &'static [&'static str] {
        use Binding::*;
        match self {
            Forward => &["x", "w_hx", "w_hh", "b_h", "h"],
            Output => &["h", "w_qh", "b_q", "o"],
            Loss => &["o", "y", "labels", "grad_o", "loss_rows"],
            LossSum => &["loss_rows", "loss"],
            Backward => &["w_hh", "w_qh", "grad_o", "h", "grad_a", "grad_h"],
            LayerBackward => &["w_hh", "w_qh", "gq", "h", "grad_a", "grad_h"],
            GradX => &["grad_a", "w_hx", "grad_x", "b_h"],
            OuterWQh => &["grad_o", "h", "grad_w_qh"],
            OuterWHh => &["grad_a", "h", "grad_w_hh"],
            OuterWHx => &["grad_a", "x", "grad_w_hx"],
            ColsumBH => &["grad_a", "grad_b_h"],
            ColsumBQ => &["grad_o", "grad_b_q"],
            Norms => &["grad_h", "grad_h_norm"],
            TransposeWHh => &["w_hh", "w_hh_t"],
            InputProjection => &["x", "w_hx", "xproj", "b_h"],
            OutputProjection => &["h", "w_qh", "o", "b_q"],
            OutputGradient => &["grad_o", "w_qh", "gq", "b_h"],
            GradWHh => &["grad_a", "h", "grad_w_hh", "b_h"],
            GradWHx => &["grad_a", "x", "grad_w_hx", "b_h"],
            GradWQh => &["grad_o", "h", "grad_w_qh", "b_h"],
            RecurrentForward => &["w_hh_t", "xproj", "h", "grad_h", "xproj"],
            RecurrentBackward => &["w_hh", "gq", "grad_a", "grad_h", "h"],
            TruncatedBackward => &["w_hh", "gq", "grad_a", "grad_h", "h"],
            ClipNormWHx => &["grad_w_hx", "clip_norms"],
            ClipNormWHh => &["grad_w_hh", "clip_norms"],
            ClipNormWQh => &["grad_w_qh", "clip_norms"],
            ClipNormBH => &["grad_b_h", "clip_norms"],
            ClipNormBQ => &["grad_b_q", "clip_norms"],
            ClipScaleWHx => &["clip_norms", "grad_w_hx"],
            ClipScaleWHh => &["clip_norms", "grad_w_hh"],
            ClipScaleWQh => &["clip_norms", "grad_w_qh"],
            ClipScaleBH => &["clip_norms", "grad_b_h"],
            ClipScaleBQ => &["clip_norms", "grad_b_q"],
        }
    }
}

/// How many workgroups a dispatch needs.
#[derive(Clone, Copy, Debug)]
pub enum Work {
    /// One invocation per item.
    Invocations(u32),
    /// One workgroup per item.
    Workgroups(u32),
    /// recurrent_step: this many items, `RecurrentLayout::rows` per workgroup.
    Rows(u32),
}

/// One dispatch: a kernel with its bindings, its parameter block, and its size.
#[derive(Clone, Debug)]
pub struct Dispatch {
    pub stage: Stage,
    pub binding: Binding,
    pub params: ParamBlock,
    pub work: Work,
}

/// What, beyond the shape, changes a schedule or its parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub activation: Activation,
    pub loss_fn: LossFn,
    pub loss_at: LossAt,
    pub bias: bool,
    /// c_t for t = 0..T−1 multiplying the carried gradient ∂L/∂a_{t+1}·w_hh (empty: all 1).
    pub carry: Vec<f32>,
    /// K for BPTT truncated K steps back from each loss term (fused only; the object's lanes).
    pub lanes: Option<u32>,
    /// θ for clipping the parameter gradients to global norm θ.
    pub clip: Option<f32>,
    /// Layer mode (docs/model.md, "The layer mode"): no output, loss or norms; the upstream
    /// ∂L/∂h_t is uploaded into `gq` (the slot of the output's share of ∂L/∂h_t), and ∂L/∂x_t
    /// is computed into `grad_x`. Forward and backward run as separate calls.
    pub layer: bool,
}

/// The stretch of the sequence a list of dispatches covers: steps t0+1..=t0+len of a sequence
/// of `total` steps. The buffers hold the window's steps (x, o, h, ∂L/∂a, … indexed from its
/// start) except the per-row losses and the per-step norms, which hold the whole sequence's.
/// A whole run is one window (`Window::whole`); a checkpointed run works window by window
/// (`GpuBptt::run_plan`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub t0: u32,
    pub len: u32,
    pub total: u32,
}

impl Window {
    pub fn whole(steps: u32) -> Self {
        Window { t0: 0, len: steps, total: steps }
    }

    fn is_whole(&self) -> bool {
        self.t0 == 0 && self.len == self.total
    }

    /// It holds the first step (so ∂L/∂h0 is formed here).
    pub fn is_first(&self) -> bool {
        self.t0 == 0
    }

    /// It holds the last step (nothing is carried into it from later steps).
    pub fn is_last(&self) -> bool {
        self.t0 + self.len == self.total
    }
}

/// Everything the schedules need, as u32: the window's steps and the sequence's.
struct Dims {
    nt: u32,
    b: u32,
    d: u32,
    h: u32,
    q: u32,
    act: u32,
}

fn dims(s: Shape, c: &Config) -> Dims {
    let act = c.activation.code();
    Dims { nt: s.steps as u32, b: s.batch as u32, d: s.input as u32, h: s.hidden as u32, q: s.output as u32, act }
}

/// c_t's bits for a parameter block (1 where no scales are given); t is the sequence's step.
fn carry(c: &Config, t: u32) -> u32 {
    c.carry.get(t as usize).copied().unwrap_or(1.0).to_bits()
}

struct Builder(Vec<Dispatch>);

impl Builder {
    fn push(&mut self, stage: Stage, binding: Binding, fields: &[u32], work: Work) {
        self.0.push(Dispatch { stage, binding, params: params(fields), work });
    }

    /// loss_grad_o: ℓ and ∂L/∂o for the window's rows, ℓ into the sequence's per-row losses.
    fn loss(&mut self, z: &Dims, c: &Config, w: Window) {
        let rows = w.len * z.b;
        let (weight, first_scored_row) = match c.loss_at {
            LossAt::All => (1.0 / (w.total * z.b) as f32, 0),
            LossAt::Last if w.is_last() => (1.0 / z.b as f32, (w.len - 1) * z.b),
            LossAt::Last => (1.0 / z.b as f32, rows),
        };
        let loss_fn = match c.loss_fn {
            LossFn::Mse => 0,
            LossFn::Xent => 1,
        };
        let fields = [rows, z.b, z.q, loss_fn, weight.to_bits(), first_scored_row, w.t0 * z.b];
        self.push(Stage::OutputAndLoss, Binding::Loss, &fields, Work::Workgroups(rows));
    }

    /// reduce_sum: L over the whole sequence's rows.
    fn loss_sum(&mut self, z: &Dims, w: Window) {
        self.push(Stage::OutputAndLoss, Binding::LossSum, &[w.total * z.b, 0, 0], Work::Workgroups(1));
    }

    /// matmul: C[M,N] = A·B (+ bias) (+ C with `accumulate`), with A and B given as (offset,
    /// row stride, col stride).
    #[allow(clippy::too_many_arguments)]
    fn matmul(
        &mut self,
        stage: Stage,
        binding: Binding,
        mnk: [u32; 3],
        a: [u32; 3],
        b: [u32; 3],
        add_bias: bool,
        accumulate: bool,
    ) {
        let [m, n, k] = mnk;
        let fields = [m, n, k, a[0], a[1], a[2], b[0], b[1], b[2], 0, accumulate as u32, add_bias as u32];
        self.push(stage, binding, &fields, Work::Workgroups(n.div_ceil(64) * m.div_ceil(64)));
    }

    /// Clipping: each parameter gradient's norm into `clip_norms`, then every one scaled by
    /// min(1, θ/‖g‖) with ‖g‖ the global norm over all of them.
    fn clip(&mut self, z: &Dims, c: &Config) {
        let Some(theta) = c.clip else { return };
        let grads = [
            (Binding::ClipNormWHx, Binding::ClipScaleWHx, z.h * z.d),
            (Binding::ClipNormWHh, Binding::ClipScaleWHh, z.h * z.h),
            (Binding::ClipNormWQh, Binding::ClipScaleWQh, z.q * z.h),
            (Binding::ClipNormBH, Binding::ClipScaleBH, z.h),
            (Binding::ClipNormBQ, Binding::ClipScaleBQ, z.q),
        ];
        let count = if c.bias { 5 } else { 3 };
        for (slot, &(norm, _, n)) in grads[..count].iter().enumerate() {
            // row_norms with one row of n values, written to clip_norms[slot].
            self.push(Stage::Clip, norm, &[1, n, 0, slot as u32], Work::Workgroups(1));
        }
        for &(_, scale, n) in &grads[..count] {
            self.push(Stage::Clip, scale, &[n, count as u32, theta.to_bits()], Work::Invocations(n));
        }
    }

    /// grad_h_norm[t] = ‖∂L/∂h_t‖ for the window's steps (grad_h's slot 0 is ∂L/∂h0).
    fn norms(&mut self, z: &Dims, w: Window) {
        self.push(Stage::Norms, Binding::Norms, &[w.len, z.b * z.h, 1, w.t0], Work::Workgroups(w.len));
    }
}

/// The schedule's dispatches for a whole run of a shape and configuration.
pub fn build(schedule: Schedule, s: Shape, c: &Config) -> Vec<Dispatch> {
    match schedule {
        Schedule::Stepwise => stepwise(s, c),
        Schedule::Fused => fused(s, c),
    }
}

/// The textbook schedule: per step a forward dispatch and an output dispatch; the loss and
/// ∂L/∂o for all steps; then per step, in reverse, a backward dispatch and the accumulation of
/// every weight gradient's term for that step; finally ∂L/∂h0 and the per-step norms. In the
/// layer mode no outputs, loss or norms: the backward adds the upstream ∂L/∂h_t, and each step
/// forms its ∂L/∂x_t.
pub fn stepwise(s: Shape, c: &Config) -> Vec<Dispatch> {
    let z = dims(s, c);
    let w = Window::whole(z.nt);
    let mut v = Builder(Vec::new());
    stepwise_forward(&mut v, &z, c, w, z.nt, !c.layer);
    if !c.layer {
        v.loss_sum(&z, w);
    }
    stepwise_backward(&mut v, &z, c, w, false);
    v.clip(&z, c);
    if !c.layer {
        v.norms(&z, w);
    }
    v.0
}

/// Forward over the window's first `steps` steps (h's slot 0 holds its start); with `score`
/// (all its steps) the outputs, ℓ and ∂L/∂o too.
fn stepwise_forward(v: &mut Builder, z: &Dims, c: &Config, w: Window, steps: u32, score: bool) {
    let Dims { b, d, h, q, act, .. } = *z;
    use Work::*;
    for t in 1..=steps {
        v.push(Stage::ForwardSteps, Binding::Forward, &[t, b, d, h, act], Invocations(b * h));
        if score {
            v.push(Stage::ForwardSteps, Binding::Output, &[t, b, h, q], Invocations(b * q));
        }
    }
    if score {
        v.loss(z, c, w);
    }
}

/// Backward over the window's steps, last to first, each step's weight-gradient terms added
/// as it goes (`rescore`: the outputs and ∂L/∂o recomputed first); ∂L/∂h0 in the first window.
/// ∂L/∂a's slot len+1 holds what later steps carry into the last one (zero at the sequence's
/// end). In the layer mode backward_step adds the upstream ∂L/∂h_t from gq (its `upstream`
/// field) instead of ∂L/∂o_t·w_qh, and each step forms ∂L/∂x_t.
fn stepwise_backward(v: &mut Builder, z: &Dims, c: &Config, w: Window, rescore: bool) {
    assert!(c.lanes.is_none(), "truncation to K steps needs the fused schedule");
    let Dims { b, d, h, q, act, .. } = *z;
    let nt = w.len;
    let layer = c.layer;
    use Stage::*;
    use Work::*;
    if rescore && !layer {
        for t in 1..=nt {
            v.push(OutputAndLoss, Binding::Output, &[t, b, h, q], Invocations(b * q));
        }
        v.loss(z, c, w);
    }
    let backward = if layer { Binding::LayerBackward } else { Binding::Backward };
    for t in (1..=nt).rev() {
        let fields = [t, b, h, q, act, carry(c, w.t0 + t), layer as u32];
        v.push(BackwardSteps, backward, &fields, Invocations(b * h));
        if !layer {
            // ∂L/∂w_qh += ∂L/∂o_tᵀ·h_t
            v.push(BackwardSteps, Binding::OuterWQh, &[q, h, b, (t - 1) * b * q, t * b * h], Invocations(q * h));
        }
        // ∂L/∂w_hh += ∂L/∂a_tᵀ·h_{t-1}
        v.push(BackwardSteps, Binding::OuterWHh, &[h, h, b, t * b * h, (t - 1) * b * h], Invocations(h * h));
        // ∂L/∂w_hx += ∂L/∂a_tᵀ·x_t
        v.push(BackwardSteps, Binding::OuterWHx, &[h, d, b, t * b * h, (t - 1) * b * d], Invocations(h * d));
        if c.bias {
            v.push(BackwardSteps, Binding::ColsumBH, &[h, b, t * b * h, h], Invocations(h));
            if !layer {
                v.push(BackwardSteps, Binding::ColsumBQ, &[q, b, (t - 1) * b * q, q], Invocations(q));
            }
        }
        if layer {
            // ∂L/∂x_t = ∂L/∂a_t·w_hx [B, d]: A = grad_a slot t; B = w_hx [h, d]; C at row block t−1.
            let fields = [b, d, h, t * b * h, h, 1, 0, d, 1, (t - 1) * b * d, 0, 0];
            v.push(BackwardSteps, Binding::GradX, &fields, Workgroups(d.div_ceil(64) * b.div_ceil(64)));
        }
    }
    if w.is_first() {
        // ∂L/∂h0 = c_0·∂L/∂a_1·w_hh: the backward kernel at t = 0.
        v.push(BackwardSteps, backward, &[0, b, h, q, act, carry(c, 0), layer as u32], Invocations(b * h));
    }
}

/// The fused schedule: the time-parallel work as single matrix products, the recurrences alone
/// one dispatch per step (T + 5 dispatches forward, T + 6 backward, + 2 with biases). In the
/// layer mode no outputs, loss or norms (gq holds the upstream ∂L/∂h_t, uploaded), and ∂L/∂X
/// as one more product.
pub fn fused(s: Shape, c: &Config) -> Vec<Dispatch> {
    let z = dims(s, c);
    let w = Window::whole(z.nt);
    let mut v = Builder(Vec::new());
    fused_prologue(&mut v, &z);
    fused_forward(&mut v, &z, c, w, z.nt, !c.layer);
    if !c.layer {
        v.loss_sum(&z, w);
    }
    fused_backward(&mut v, &z, c, w, false);
    if c.layer {
        return v.0;
    }
    v.clip(&z, c);
    v.norms(&z, w);
    v.0
}

/// w_hhᵀ for the forward recurrence (whose invocations then read rows of it), made on the GPU
/// from this run's w_hh.
fn fused_prologue(v: &mut Builder, z: &Dims) {
    v.push(Stage::InputProjection, Binding::TransposeWHh, &[z.h, z.h], Work::Invocations(z.h * z.h));
}

/// Forward over the window's first `steps` steps (h's slot 0 holds its start): their input
/// projections as one product, then the recurrence; with `score` (all its steps) the outputs
/// as one product, ℓ and ∂L/∂o.
fn fused_forward(v: &mut Builder, z: &Dims, c: &Config, w: Window, steps: u32, score: bool) {
    let Dims { b, d, h, act, .. } = *z;
    use Stage::*;
    if steps > 0 {
        // xproj = X·w_hxᵀ + b_h: A = x [rows, d]; B[k, n] = w_hx[n, k].
        v.matmul(InputProjection, Binding::InputProjection, [steps * b, h, d], [0, d, 1], [0, 1, d], c.bias, false);
    }
    // h_t = φ(xproj_t + h_{t-1}·w_hhᵀ); recurrent_step serves (i, 4 batch entries) per item.
    let rec = Work::Rows(b.div_ceil(4) * h);
    for t in 1..=steps {
        v.push(ForwardSteps, Binding::RecurrentForward, &[0, b, h, act, t - 1, t, t - 1, t], rec);
    }
    if score {
        fused_outputs(v, z, c, w);
    }
}

/// o = H·w_qhᵀ + b_q over the window's h_1..h_len, then ℓ and ∂L/∂o.
fn fused_outputs(v: &mut Builder, z: &Dims, c: &Config, w: Window) {
    let Dims { b, h, q, .. } = *z;
    // A = h from slot 1; B[k, n] = w_qh[n, k].
    v.matmul(
        Stage::OutputAndLoss,
        Binding::OutputProjection,
        [w.len * b, q, h],
        [b * h, h, 1],
        [0, 1, h],
        c.bias,
        false,
    );
    v.loss(z, c, w);
}

/// Backward over the window (`rescore`: its outputs and ∂L/∂o recomputed first): ∂L/∂o·w_qh
/// as one product, the recurrence last step to first (∂L/∂a's slot len+1 holds what later
/// steps carry in), ∂L/∂h0 in the first window, then the weight gradients' terms as products
/// over its rows (added to the sums so far, except in a whole run).
fn fused_backward(v: &mut Builder, z: &Dims, c: &Config, w: Window, rescore: bool) {
    let Dims { b, d, h, q, act, .. } = *z;
    let nt = w.len;
    let rows = nt * b;
    let bh = b * h; // one slot
    let acc = !w.is_whole();
    use Stage::*;
    if c.layer {
        // Layer mode: gq holds the upstream ∂L/∂h_t, uploaded. The backward pass runs as a call
        // of its own, after any number of forward passes: it makes w_hhᵀ again from its w_hh.
        v.push(BackwardSteps, Binding::TransposeWHh, &[h, h], Work::Invocations(h * h));
    } else {
        if rescore {
            fused_outputs(v, z, c, w);
        }
        // gq = ∂L/∂O·w_qh: A = grad_o [rows, q]; B = w_qh [q, h].
        v.matmul(OutputGradient, Binding::OutputGradient, [rows, h, q], [0, q, 1], [0, h, 1], false, false);
    }
    let rec = Work::Rows(b.div_ceil(4) * h);
    // Where ∂L/∂a_t lives: one [B, h] block per slot, or with K lanes [B, K, h] per slot of
    // which lane K (the last) is the truncated ∂L/∂a_t.
    let (a_slot, a_off, a_stride) = match c.lanes {
        None => {
            // ∂L/∂h_t = gq_t + c_t·∂L/∂a_{t+1}·w_hh, ∂L/∂a_t = ∂L/∂h_t ⊙ φ'
            for t in (1..=nt).rev() {
                let fields = [1, b, h, act, t + 1, t, t - 1, t, carry(c, w.t0 + t)];
                v.push(BackwardSteps, Binding::RecurrentBackward, &fields, rec);
            }
            if w.is_first() {
                // ∂L/∂h0 = c_0·∂L/∂a_1·w_hh
                v.push(BackwardSteps, Binding::RecurrentBackward, &[2, b, h, act, 1, 0, 0, 0, carry(c, 0)], rec);
            }
            (bh, 0, h)
        }
        Some(k) => {
            for t in (1..=nt).rev() {
                v.push(BackwardSteps, Binding::TruncatedBackward, &[1, b, h, act, k, t], Work::Invocations(b * k * h));
            }
            if w.is_first() {
                v.push(BackwardSteps, Binding::TruncatedBackward, &[2, b, h, act, k, 0], Work::Invocations(b * h));
            }
            (bh * k, (k - 1) * h, k * h)
        }
    };
    // ∂L/∂w_hh = ∂L/∂Aᵀ·H_prev: A[i, k] = ∂L/∂a of row k (from slot 1); B = h from slot 0.
    let a = [a_slot + a_off, 1, a_stride];
    v.matmul(WeightGradients, Binding::GradWHh, [h, h, rows], a, [0, h, 1], false, acc);
    // ∂L/∂w_hx = ∂L/∂Aᵀ·X
    v.matmul(WeightGradients, Binding::GradWHx, [h, d, rows], a, [0, d, 1], false, acc);
    if !c.layer {
        // ∂L/∂w_qh = ∂L/∂Oᵀ·H: A[k', k] = grad_o[k][k']; B = h from slot 1.
        v.matmul(WeightGradients, Binding::GradWQh, [q, h, rows], [0, 1, q], [bh, h, 1], false, acc);
    }
    if c.bias {
        // Column sums over the window's rows, added to the sums so far.
        v.push(WeightGradients, Binding::ColsumBH, &[h, rows, a_slot + a_off, a_stride], Work::Invocations(h));
        if !c.layer {
            v.push(WeightGradients, Binding::ColsumBQ, &[q, rows, 0, q], Work::Invocations(q));
        }
    }
    if c.layer {
        // ∂L/∂X = ∂L/∂A·w_hx: A = ∂L/∂a from slot 1 [rows, h]; B = w_hx [h, d].
        v.matmul(InputGradient, Binding::GradX, [rows, d, h], [a_slot + a_off, a_stride, 1], [0, d, 1], false, false);
    }
}

/// The parts of a checkpointed run (`GpuBptt::run_plan`), each a list of dispatches over one
/// window (whose buffers the object is built for).
pub mod parts {
    use super::*;

    /// Once per run, before any window (the fused schedule's w_hhᵀ).
    pub fn prologue(schedule: Schedule, s: Shape, c: &Config) -> Vec<Dispatch> {
        let mut v = Builder(Vec::new());
        if schedule == Schedule::Fused {
            fused_prologue(&mut v, &dims(s, c));
        }
        v.0
    }

    /// The forward over the first `steps` of the window's steps; `score`: all of them, with
    /// their outputs and loss terms (the first sweep).
    pub fn forward(schedule: Schedule, s: Shape, c: &Config, w: Window, steps: u32, score: bool) -> Vec<Dispatch> {
        let z = dims(s, c);
        let mut v = Builder(Vec::new());
        match schedule {
            Schedule::Stepwise => stepwise_forward(&mut v, &z, c, w, steps, score),
            Schedule::Fused => fused_forward(&mut v, &z, c, w, steps, score),
        }
        v.0
    }

    /// The backward over the window, its outputs recomputed unless `scored` (the window the
    /// first sweep ended with), then its norms.
    pub fn backward(schedule: Schedule, s: Shape, c: &Config, w: Window, scored: bool) -> Vec<Dispatch> {
        let z = dims(s, c);
        let mut v = Builder(Vec::new());
        match schedule {
            Schedule::Stepwise => stepwise_backward(&mut v, &z, c, w, !scored),
            Schedule::Fused => fused_backward(&mut v, &z, c, w, !scored),
        }
        v.norms(&z, w);
        v.0
    }

    /// L over every row (after the windows scored them).
    pub fn loss_sum(s: Shape, c: &Config, total: u32) -> Vec<Dispatch> {
        let mut v = Builder(Vec::new());
        v.loss_sum(&dims(s, c), Window::whole(total));
        v.0
    }

    /// After the last window: L over every row, and clipping.
    pub fn finish(s: Shape, c: &Config, total: u32) -> Vec<Dispatch> {
        let z = dims(s, c);
        let mut v = Builder(Vec::new());
        v.loss_sum(&z, Window::whole(total));
        v.clip(&z, c);
        v.0
    }
}
