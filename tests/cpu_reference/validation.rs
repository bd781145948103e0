//! Bad shapes and values are rejected with an input error (exit code 2) whose message names
//! what is wrong.

use bptt::{Activation, Error, LossFn, Params, Problem, ProblemSpec, Shape, Targets, random_problem};

use crate::common::shape;

#[track_caller]
fn assert_rejected<T: std::fmt::Debug>(result: Result<T, Error>, needle: &str) {
    let err = result.expect_err(&format!("expected an error mentioning {needle}"));
    assert_eq!(err.exit_code(), 2, "{err}");
    let msg = err.to_string();
    assert!(msg.contains(needle), "message {msg:?} should mention {needle:?}");
}

/// A valid T=3, B=2, d=2, h=3, q=2 problem's pieces, to break one at a time.
struct Pieces {
    shape: Shape,
    params: Params,
    x: Vec<f64>,
    h0: Option<Vec<f64>>,
    targets: Targets,
}

fn pieces() -> Pieces {
    Pieces {
        shape: shape(3, 2, 2, 3, 2),
        params: Params {
            w_hx: vec![0.1; 6],
            w_hh: vec![0.2; 9],
            w_qh: vec![0.3; 6],
            b_h: Some(vec![0.0; 3]),
            b_q: Some(vec![0.0; 2]),
        },
        x: vec![1.0; 12],
        h0: Some(vec![0.5; 6]),
        targets: Targets::Mse(vec![0.0; 12]),
    }
}

fn build(p: Pieces) -> bptt::Result<Problem> {
    Problem::new(p.shape, Activation::Tanh, p.params, p.x, p.h0, p.targets)
}

#[test]
fn the_unbroken_pieces_are_accepted() {
    // Guards the tests below: each fails because of the one thing it breaks.
    build(pieces()).expect("valid problem");
    build(Pieces { targets: Targets::Xent(vec![0, 1, 1, 0, 1, 0]), ..pieces() }).expect("valid xent problem");
}

#[test]
fn zero_sizes_are_rejected() {
    let names = ["steps", "batch", "input", "hidden", "output"];
    for (zero, name) in names.iter().enumerate() {
        let mut dims = [2usize; 5];
        dims[zero] = 0;
        assert_rejected(Shape::new(dims[0], dims[1], dims[2], dims[3], dims[4]), name);
    }
}

#[test]
fn oversized_shapes_are_rejected_even_when_the_product_wraps() {
    assert_rejected(Shape::new(1 << 16, 1 << 16, 1, 1, 1), "too large");
    assert_rejected(Shape::new(1, 1, 1, 1 << 16, 1), "too large");
    // 2^40 · 2^40 · 1 wraps to 0 in usize arithmetic: the check must not be fooled by it.
    assert_rejected(Shape::new(1 << 40, 1 << 40, 1, 1, 1), "too large");
    assert_rejected(Shape::new(1, 1, 1, 1 << 32, 1), "too large");
    // Sequences and w_hh fit, but w_hx [h,d] or w_qh [q,h] would hold 2^43 values.
    assert_rejected(Shape::new(1, 1, 1 << 29, 1 << 14, 1), "too large");
    assert_rejected(Shape::new(1, 1, 1, 1 << 14, 1 << 29), "too large");
    // The largest shapes that fit are accepted.
    let limit = u32::MAX as usize / 4;
    Shape::new(limit, 1, 1, 1, 1).expect("T·B·d at the limit");
    Shape::new(1, 1, 1 << 15, (1 << 15) - 1, 1).expect("h·d and h² below the limit");
}

#[test]
fn wrong_lengths_are_rejected() {
    let mut p = pieces();
    p.params.w_hx.pop();
    assert_rejected(build(p), "tensor `w_hx`");
    let mut p = pieces();
    p.params.w_hh.push(0.0);
    assert_rejected(build(p), "tensor `w_hh`");
    let mut p = pieces();
    p.params.w_qh = vec![0.3; 9]; // [h,h] instead of [q,h]
    assert_rejected(build(p), "tensor `w_qh`");
    let mut p = pieces();
    p.params.b_h = Some(vec![0.0; 2]);
    assert_rejected(build(p), "tensor `b_h`");
    let mut p = pieces();
    p.params.b_q = Some(vec![0.0; 3]);
    assert_rejected(build(p), "tensor `b_q`");
    let mut p = pieces();
    p.x.pop();
    assert_rejected(build(p), "tensor `x`");
    let mut p = pieces();
    p.h0 = Some(vec![0.0; 3]);
    assert_rejected(build(p), "tensor `h0`");
    let mut p = pieces();
    p.targets = Targets::Mse(vec![0.0; 6]); // [T,B] instead of [T,B,q]
    assert_rejected(build(p), "tensor `y`");
    let mut p = pieces();
    p.targets = Targets::Xent(vec![0; 12]); // [T,B,q] instead of [T,B]
    assert_rejected(build(p), "tensor `labels`");
}

#[test]
fn labels_out_of_range_are_rejected() {
    let mut p = pieces();
    p.targets = Targets::Xent(vec![0, 1, 1, 2, 1, 0]); // q = 2, so 2 is out of range
    assert_rejected(build(p), "tensor `labels`");
    let mut p = pieces();
    p.targets = Targets::Xent(vec![0, 1, 1, u32::MAX, 1, 0]);
    assert_rejected(build(p), "out of range");
}

#[test]
fn non_finite_values_are_rejected() {
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let mut p = pieces();
        p.x[5] = bad;
        assert_rejected(build(p), "tensor `x`");
        let mut p = pieces();
        p.params.w_hh[4] = bad;
        assert_rejected(build(p), "tensor `w_hh`");
        let mut p = pieces();
        p.params.w_hx[0] = bad;
        assert_rejected(build(p), "tensor `w_hx`");
        let mut p = pieces();
        p.params.w_qh[5] = bad;
        assert_rejected(build(p), "tensor `w_qh`");
        let mut p = pieces();
        p.params.b_h.as_mut().unwrap()[1] = bad;
        assert_rejected(build(p), "tensor `b_h`");
        let mut p = pieces();
        p.params.b_q.as_mut().unwrap()[0] = bad;
        assert_rejected(build(p), "tensor `b_q`");
        let mut p = pieces();
        p.h0.as_mut().unwrap()[2] = bad;
        assert_rejected(build(p), "tensor `h0`");
        let mut p = pieces();
        p.targets = Targets::Mse(vec![0.0, 0.0, 0.0, bad, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
        assert_rejected(build(p), "tensor `y`");
    }
}

#[test]
fn a_single_bias_is_rejected() {
    let mut p = pieces();
    p.params.b_q = None;
    assert_rejected(build(p), "b_q");
    let mut p = pieces();
    p.params.b_h = None;
    assert_rejected(build(p), "b_h");
}

#[test]
fn bad_spectral_radius_is_rejected() {
    for r in [f64::NAN, f64::INFINITY, -0.5] {
        let spec =
            ProblemSpec { spectral_radius: Some(r), loss: LossFn::Mse, ..ProblemSpec::new(shape(2, 1, 2, 3, 2)) };
        assert_rejected(random_problem(&spec), "spectral radius");
    }
}
