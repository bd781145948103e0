//! The dispatch schedule: which kernel runs with which bindings and parameters, in order.
//! It is a plain list built once per configuration and replayed on every run, so recording a
//! run is a loop with no decisions in it.

use super::kernels::{Kernel, ParamBlock};
use crate::model::{Activation, LossAt, LossFn, Shape};

/// Which compute pass a dispatch belongs to (each pass is timed on its own).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Forward,
    Backward,
}

/// The bind groups the stepwise schedule uses; each names the buffers bound at 1.. in order.
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
}

impl Binding {
    pub const ALL: [Binding; 11] = [
        Binding::Forward,
        Binding::Output,
        Binding::Loss,
        Binding::LossSum,
        Binding::Backward,
        Binding::OuterWQh,
        Binding::OuterWHh,
        Binding::OuterWHx,
        Binding::ColsumBH,
        Binding::ColsumBQ,
        Binding::Norms,
    ];

    pub fn kernel(self) -> Kernel {
        match self {
            Binding::Forward => Kernel::ForwardStep,
            Binding::Output => Kernel::OutputStep,
            Binding::Loss => Kernel::LossGradO,
            Binding::LossSum => Kernel::ReduceSum,
            Binding::Backward => Kernel::BackwardStep,
            Binding::OuterWQh | Binding::OuterWHh | Binding::OuterWHx => Kernel::AccumulateOuter,
            Binding::ColsumBH | Binding::ColsumBQ => Kernel::AccumulateColsum,
            Binding::Norms => Kernel::RowNorms,
        }
    }

    /// Buffer names (see `BufferSizes`) bound at 1.., in the kernel's order.
    pub fn buffers(self) -> &'static [&'static str] {
        match self {
            Binding::Forward => &["x", "w_hx", "w_hh", "b_h", "h"],
            Binding::Output => &["h", "w_qh", "b_q", "o"],
            Binding::Loss => &["o", "y", "labels", "grad_o", "loss_rows"],
            Binding::LossSum => &["loss_rows", "loss"],
            Binding::Backward => &["w_hh", "w_qh", "grad_o", "h", "grad_a", "grad_h"],
            Binding::OuterWQh => &["grad_o", "h", "grad_w_qh"],
            Binding::OuterWHh => &["grad_a", "h", "grad_w_hh"],
            Binding::OuterWHx => &["grad_a", "x", "grad_w_hx"],
            Binding::ColsumBH => &["grad_a", "grad_b_h"],
            Binding::ColsumBQ => &["grad_o", "grad_b_q"],
            Binding::Norms => &["grad_h", "grad_h_norm"],
        }
    }
}

/// One dispatch: a kernel with its bindings, its parameter block, and how many invocations
/// (or, for the per-row reduction kernels, how many workgroups) it needs.
#[derive(Clone, Debug)]
pub struct Dispatch {
    pub phase: Phase,
    pub binding: Binding,
    pub params: ParamBlock,
    pub work: Work,
}

#[derive(Clone, Copy, Debug)]
pub enum Work {
    /// One invocation per item.
    Invocations(u32),
    /// One workgroup per item.
    Workgroups(u32),
}

/// What, beyond the shape, changes the schedule or its parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    pub activation: Activation,
    pub loss_fn: LossFn,
    pub loss_at: LossAt,
    pub bias: bool,
}

fn act(a: Activation) -> u32 {
    match a {
        Activation::Identity => 0,
        Activation::Tanh => 1,
    }
}

/// The textbook schedule: per step a forward dispatch and an output dispatch; the loss and
/// ∂L/∂o for all steps; then per step, in reverse, a backward dispatch and the accumulation of
/// every weight gradient's term for that step; finally ∂L/∂h0 and the per-step norms.
pub fn stepwise(s: Shape, c: Config) -> Vec<Dispatch> {
    let (nt, b, d, h, q) = (
        s.steps as u32,
        s.batch as u32,
        s.input as u32,
        s.hidden as u32,
        s.output as u32,
    );
    let a = act(c.activation);
    let mut v = Vec::new();
    let mut push = |phase, binding, params, work| {
        v.push(Dispatch {
            phase,
            binding,
            params,
            work,
        })
    };
    use Phase::*;
    use Work::*;
    for t in 1..=nt {
        push(
            Forward,
            Binding::Forward,
            [t, b, d, h, a, 0, 0, 0],
            Invocations(b * h),
        );
        push(
            Forward,
            Binding::Output,
            [t, b, h, q, 0, 0, 0, 0],
            Invocations(b * q),
        );
    }
    let rows = nt * b;
    let (weight, first_scored_row) = match c.loss_at {
        LossAt::All => (1.0 / rows as f32, 0),
        LossAt::Last => (1.0 / b as f32, (nt - 1) * b),
    };
    let loss_fn = match c.loss_fn {
        LossFn::Mse => 0,
        LossFn::Xent => 1,
    };
    push(
        Forward,
        Binding::Loss,
        [
            rows,
            b,
            q,
            loss_fn,
            weight.to_bits(),
            first_scored_row,
            0,
            0,
        ],
        Workgroups(rows),
    );
    push(
        Forward,
        Binding::LossSum,
        [rows, 0, 0, 0, 0, 0, 0, 0],
        Workgroups(1),
    );
    for t in (1..=nt).rev() {
        push(
            Backward,
            Binding::Backward,
            [t, b, h, q, a, 0, 0, 0],
            Invocations(b * h),
        );
        // ∂L/∂w_qh += ∂L/∂o_tᵀ·h_t
        push(
            Backward,
            Binding::OuterWQh,
            [q, h, b, (t - 1) * b * q, t * b * h, 0, 0, 0],
            Invocations(q * h),
        );
        // ∂L/∂w_hh += ∂L/∂a_tᵀ·h_{t-1}
        push(
            Backward,
            Binding::OuterWHh,
            [h, h, b, t * b * h, (t - 1) * b * h, 0, 0, 0],
            Invocations(h * h),
        );
        // ∂L/∂w_hx += ∂L/∂a_tᵀ·x_t
        push(
            Backward,
            Binding::OuterWHx,
            [h, d, b, t * b * h, (t - 1) * b * d, 0, 0, 0],
            Invocations(h * d),
        );
        if c.bias {
            push(
                Backward,
                Binding::ColsumBH,
                [h, b, t * b * h, 0, 0, 0, 0, 0],
                Invocations(h),
            );
            push(
                Backward,
                Binding::ColsumBQ,
                [q, b, (t - 1) * b * q, 0, 0, 0, 0, 0],
                Invocations(q),
            );
        }
    }
    // ∂L/∂h0 = ∂L/∂a_1·w_hh: the backward kernel at t = 0.
    push(
        Backward,
        Binding::Backward,
        [0, b, h, q, a, 0, 0, 0],
        Invocations(b * h),
    );
    // grad_h_norm[t] = ‖∂L/∂h_t‖ for t = 1..T (grad_h's slot 0 is ∂L/∂h0).
    push(
        Backward,
        Binding::Norms,
        [nt, b * h, 1, 0, 0, 0, 0, 0],
        Workgroups(nt),
    );
    v
}
