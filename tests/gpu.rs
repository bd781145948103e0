//! The GPU path against the f64 CPU reference, on whatever adapter wgpu finds (lavapipe in CI).
//! Shapes stay small: lavapipe is several times slower than a CPU loop.

mod common;

use bptt::cpu::reference;
use bptt::gpu::{GpuBptt, Schedule};
use bptt::model::{Activation, LossAt, LossFn, Shape, rel_err};
use bptt::problem::{ProblemSpec, random_problem};
use bptt::{Error, Problem};

/// Both schedules pass every test.
const SCHEDULES: [Schedule; 2] = [Schedule::Fused, Schedule::Stepwise];

fn spec(t: usize, b: usize, d: usize, h: usize, q: usize) -> ProblemSpec {
    ProblemSpec::new(Shape::new(t, b, d, h, q).unwrap())
}

/// GPU (with every written buffer poisoned with NaN first) against the reference, states too,
/// for both schedules and both recurrent_step layouts.
fn check(ctxs: &[bptt::gpu::GpuContext], p: &Problem) -> f64 {
    let r = reference::bptt(p);
    let mut worst: f64 = 0.0;
    let mut runs = vec![(&ctxs[0], Schedule::Stepwise)];
    runs.extend(ctxs.iter().map(|c| (c, Schedule::Fused)));
    for (ctx, schedule) in runs {
        let mut gpu = GpuBptt::new(ctx, p.shape, schedule).unwrap();
        gpu.poison(ctx);
        let (g, _) = gpu.run(ctx, p, true).unwrap();
        let what = format!(
            "{schedule:?} {:?} {} {:?} {:?} {:?} bias={}",
            ctx.recurrent_layout(),
            p.shape,
            p.activation,
            p.loss_fn(),
            p.loss_at,
            p.has_bias()
        );
        worst = worst.max(common::assert_close(&what, &g, &r, 1e-4));
        // The forward states, read back too, must match as well.
        assert!(rel_err(&g.h, &r.h) <= 1e-4, "{what}: h differs");
        assert!(rel_err(&g.o, &r.o) <= 1e-4, "{what}: o differs");
    }
    worst
}

#[test]
fn gpu_matches_reference_on_a_grid() {
    let ctx = common::gpu_with_each_layout();
    let mut worst: f64 = 0.0;
    let mut cases = 0;
    // Hidden sizes that are not multiples of the workgroup size; T = 1 and T > 1; B = 1 and
    // B > 1; d ≠ q; both activations and losses; biases on and off; loss at every step or last.
    for (n, &h) in [1usize, 3, 33, 257].iter().enumerate() {
        for (m, (act, loss)) in [
            (Activation::Identity, LossFn::Mse),
            (Activation::Tanh, LossFn::Mse),
            (Activation::Identity, LossFn::Xent),
            (Activation::Tanh, LossFn::Xent),
        ]
        .into_iter()
        .enumerate()
        {
            let t = if (n + m) % 2 == 0 { 1 } else { 6 };
            let b = if m % 2 == 0 { 1 } else { 3 };
            let mut s = spec(t, b, 5, h, 7);
            s.activation = act;
            s.loss = loss;
            s.bias = (n + m) % 3 != 0;
            s.random_h0 = m >= 2;
            s.loss_at = if n == 2 && m == 1 { LossAt::Last } else { LossAt::All };
            s.seed = (10 * n + m) as u64;
            worst = worst.max(check(&ctx, &random_problem(&s).unwrap()));
            cases += 1;
        }
    }
    println!("{cases} cases, largest relative error {worst:.3e}");
}

/// relu (the IRNN's φ) on both schedules and both layouts: h not a multiple of the workgroup
/// size, B > 1, biases, both losses, loss at every step and at the last.
#[test]
fn relu_matches_reference() {
    let ctx = common::gpu_with_each_layout();
    for (n, (loss, loss_at)) in [(LossFn::Mse, LossAt::Last), (LossFn::Xent, LossAt::All)].into_iter().enumerate() {
        let mut s = spec(6, 3, 5, 33, 4);
        s.activation = Activation::Relu;
        s.loss = loss;
        s.loss_at = loss_at;
        s.bias = true;
        s.random_h0 = n == 1;
        s.seed = 77 + n as u64;
        let p = random_problem(&s).unwrap();
        // Some states are clipped to zero and some are not, so both branches of φ' run.
        let h = reference::bptt(&p).h;
        assert!(h.contains(&0.0) && h.iter().any(|&v| v > 0.0));
        check(&ctx, &p);
    }
}

#[test]
fn longer_sequences_and_loss_at_last_match() {
    let ctx = common::gpu_with_each_layout();
    for (loss_at, act) in [(LossAt::Last, Activation::Tanh), (LossAt::All, Activation::Identity)] {
        let mut s = spec(24, 2, 4, 40, 3);
        s.loss_at = loss_at;
        s.activation = act;
        s.spectral_radius = Some(0.9);
        check(&ctx, &random_problem(&s).unwrap());
    }
}

#[test]
fn runs_are_bit_identical() {
    for ctx in common::gpu_with_each_layout() {
        bit_identical_on(&ctx);
    }
}

fn bit_identical_on(ctx: &bptt::gpu::GpuContext) {
    let mut s = spec(8, 3, 6, 70, 5);
    s.activation = Activation::Tanh;
    s.bias = true;
    let p = random_problem(&s).unwrap();
    for schedule in SCHEDULES {
        let mut gpu = GpuBptt::new(ctx, p.shape, schedule).unwrap();
        let (first, _) = gpu.run(ctx, &p, false).unwrap();
        let memory = gpu.memory_bytes();
        let (second, _) = gpu.run(ctx, &p, false).unwrap();
        assert_eq!(first, second, "{schedule:?}: a second call on the same object must give the same bits");
        assert_eq!(memory, gpu.memory_bytes());
        let mut other = GpuBptt::new(ctx, p.shape, schedule).unwrap();
        let (third, _) = other.run(ctx, &p, false).unwrap();
        assert_eq!(first, third, "{schedule:?}: a fresh object on the same adapter must give the same bits");
        // And the result is a real one, not a constant.
        assert!(first.grad_w_hh.iter().any(|&v| v != 0.0));
    }
}

#[test]
fn one_object_serves_problems_of_its_shape_with_other_settings() {
    let ctx = common::gpu();
    let s = spec(5, 2, 3, 9, 4);
    let mut gpu = GpuBptt::new(&ctx, s.shape, Schedule::Fused).unwrap();
    for (act, loss, bias) in [(Activation::Tanh, LossFn::Xent, true), (Activation::Identity, LossFn::Mse, false)] {
        let mut s = s.clone();
        (s.activation, s.loss, s.bias) = (act, loss, bias);
        let p = random_problem(&s).unwrap();
        let (g, _) = gpu.run(&ctx, &p, false).unwrap();
        common::assert_close("reconfigured", &g, &reference::bptt(&p), 1e-4);
    }
    let other = random_problem(&spec(6, 2, 3, 9, 4)).unwrap();
    assert!(matches!(gpu.run(&ctx, &other, false), Err(Error::Invalid(_))));
}

#[test]
fn shape_over_the_adapters_limits_is_rejected_before_any_dispatch() {
    let ctx = common::gpu();
    let limit = ctx.limits.max_storage_buffer_binding_size.min(ctx.limits.max_buffer_size);
    // The smallest hidden size whose w_hh [h,h] no longer fits in one binding.
    let h = ((limit / 4) as f64).sqrt() as usize + 1;
    let shape = Shape::new(1, 1, 1, h, 1).unwrap();
    for schedule in SCHEDULES {
        match GpuBptt::new(&ctx, shape, schedule) {
            Err(Error::Limit(msg)) => {
                assert!(msg.contains("w_hh[h,h]"), "{msg}");
                assert!(msg.contains("at most"), "{msg}");
            }
            Err(e) => panic!("wrong error: {e}"),
            Ok(_) => panic!("a {} MiB w_hh was accepted", (4 * h * h) >> 20),
        }
    }
}

#[test]
fn non_finite_results_are_named() {
    let ctx = common::gpu();
    // Spectral radius 40 over 40 steps: ∂L/∂h_t grows ~40× per step back and overflows f32.
    let mut s = spec(40, 1, 2, 8, 2);
    s.spectral_radius = Some(40.0);
    let p = random_problem(&s).unwrap();
    let mut gpu = GpuBptt::new(&ctx, p.shape, Schedule::Fused).unwrap();
    let (g, _) = gpu.run(&ctx, &p, false).unwrap();
    let problems = bptt::check::non_finite_problems(&g);
    assert!(problems.iter().any(|l| l.starts_with("grad_w_hh has ")), "{problems:?}");
    let norm_line = problems.iter().find(|l| l.starts_with("grad_h_norm")).expect("grad_h_norm overflows");
    let first_bad = g.grad_h_norm.iter().rposition(|x| !x.is_finite()).unwrap() + 1;
    assert!(norm_line.contains(&format!("first overflows at step {first_bad} ")), "{norm_line}");
}
