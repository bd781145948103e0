//! Checkpointed runs against full-storage runs (docs/design.md "Checkpointing"): the f64
//! reference bit for bit, under every variant (plain, truncated K, randomised, the loss at the
//! last step only, biases, each φ, batches), for a range of slot counts; its forward count is
//! the plan's.

use bptt::checkpoint::Plan;
use bptt::cpu::{checkpointed, reference, truncated};
use bptt::model::{Activation, BpttResult, LossAt, LossFn, Shape};
use bptt::{ProblemSpec, Truncation, random_problem};

fn problem(t: usize, b: usize, act: Activation, loss: LossFn, at: LossAt, bias: bool, seed: u64) -> bptt::Problem {
    let mut spec = ProblemSpec::new(Shape::new(t, b, 3, 5, 4).unwrap());
    (spec.activation, spec.loss, spec.loss_at, spec.bias, spec.seed) = (act, loss, at, bias, seed);
    spec.spectral_radius = Some(0.95);
    spec.random_h0 = true;
    random_problem(&spec).unwrap()
}

/// Every tensor equal, bit for bit (the states aside: a checkpointed run keeps none).
fn assert_identical(what: &str, got: &BpttResult, want: &BpttResult) {
    for ((name, a), (_, b)) in got.tensors().into_iter().zip(want.tensors()) {
        let same = a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
        assert!(same, "{what}: {name} differs from the full-storage run");
    }
    assert_eq!(got.tensors().len(), want.tensors().len(), "{what}");
}

#[test]
fn the_checkpointed_reference_is_the_full_storage_reference_bit_for_bit() {
    let mut cases = 0;
    for (n, &act) in [Activation::Identity, Activation::Tanh, Activation::Relu].iter().enumerate() {
        for (loss, at, bias, b) in [
            (LossFn::Mse, LossAt::All, false, 1),
            (LossFn::Xent, LossAt::All, true, 3),
            (LossFn::Mse, LossAt::Last, true, 2),
            (LossFn::Xent, LossAt::Last, false, 1),
        ] {
            let t = 23 + n;
            let p = problem(t, b, act, loss, at, bias, n as u64 * 7 + b as u64);
            for trunc in [None, Some(Truncation::Regular(4)), Some(Truncation::Random { p: 0.3, seed: 5 })] {
                let want = match trunc {
                    None => reference::bptt(&p),
                    Some(k) => truncated::bptt_truncated(&p, k).unwrap(),
                };
                for c in [1, 2, 3, 5, 8, t] {
                    let plan = Plan::new(t, 1, c).unwrap();
                    let (got, stats) = checkpointed::bptt(&p, trunc, &plan).unwrap();
                    let what = format!("{act:?} {loss:?} {at:?} bias {bias} B={b} {trunc:?} c={c}");
                    assert_identical(&what, &got, &want);
                    assert_eq!(stats.forward_steps, plan.forward_steps(), "{what}");
                    cases += 1;
                }
            }
        }
    }
    assert_eq!(cases, 3 * 4 * 3 * 6);
}

#[test]
fn the_checkpointed_reference_holds_less_than_full_storage_and_refuses_other_plans() {
    let p = problem(200, 2, Activation::Tanh, LossFn::Mse, LossAt::All, true, 1);
    let plan = Plan::new(200, 1, 10).unwrap();
    let (_, stats) = checkpointed::bptt(&p, None, &plan).unwrap();
    assert!(stats.peak_bytes * 10 < checkpointed::full_bytes(p.shape, None), "{stats:?}");
    assert!(stats.forward_steps > 200 && stats.forward_steps < 200 * 3, "{stats:?}");
    assert!(checkpointed::bptt(&p, None, &Plan::new(200, 4, 10).unwrap()).is_err());
    assert!(checkpointed::bptt(&p, None, &Plan::new(100, 1, 10).unwrap()).is_err());
}

/// Every tensor within `tol` (relative) of `want`.
fn assert_within(what: &str, got: &BpttResult, want: &BpttResult, tol: f64) {
    for ((name, a), (_, b)) in got.tensors().into_iter().zip(want.tensors()) {
        let e = bptt::model::rel_err(a, b);
        assert!(e <= tol, "{what}: {name} relative error {e:.2e} > {tol:e}");
    }
}

#[test]
fn the_checkpointed_fast_path_matches_its_full_storage_run_and_repeats_itself() {
    use bptt::cpu::fast;
    for (n, &act) in [Activation::Identity, Activation::Tanh, Activation::Relu].iter().enumerate() {
        for (loss, at, bias, b) in [
            (LossFn::Mse, LossAt::All, false, 1),
            (LossFn::Xent, LossAt::All, true, 5),
            (LossFn::Mse, LossAt::Last, true, 2),
            (LossFn::Xent, LossAt::Last, false, 8),
        ] {
            let t = 37 + n;
            let p = problem(t, b, act, loss, at, bias, 100 + n as u64 * 7 + b as u64);
            let full = fast::bptt(&p);
            let oracle = reference::bptt(&p);
            for (l, c) in [(1, 1), (1, 4), (3, 2), (5, 3), (7, 1), (8, 5), (t, 1), (t + 3, 2)] {
                let plan = Plan::new(t, l, c).unwrap();
                let (got, stats) = fast::bptt_checkpointed(&p, &plan).unwrap();
                let what = format!("{act:?} {loss:?} {at:?} bias {bias} B={b} L={l} c={c}");
                assert_within(&what, &got, &full, 1e-6);
                assert_within(&what, &got, &oracle, 1e-4);
                assert_eq!(stats.forward_steps, plan.forward_steps(), "{what}");
                let (again, _) = fast::bptt_checkpointed(&p, &plan).unwrap();
                assert_identical(&format!("{what}, run twice"), &again, &got);
            }
        }
    }
}

/// The fast path's memory estimate counts regular truncation's lanes (2·(K + 1) rows [B,h] of
/// f32), as its checkpointed run reports them, and none where K ≥ T (full BPTT).
#[test]
fn the_fast_paths_estimate_counts_the_lanes_of_regular_truncation() {
    use bptt::cpu::fast;
    let (t, b, k) = (40, 3, 6);
    let p = problem(t, b, Activation::Tanh, LossFn::Mse, LossAt::All, false, 9);
    let plan = Plan::new(t, 4, 3).unwrap();
    let regular = Some(Truncation::Regular(k));
    let (_, stats) = fast::bptt_checkpointed_with(&p, &plan, regular).unwrap();
    let with = fast::costs(p.shape, regular).bytes(&plan);
    let without = fast::costs(p.shape, None).bytes(&plan);
    assert_eq!(stats.peak_bytes, with);
    assert_eq!(with - without, 4 * 2 * (k as u64 + 1) * (b * p.shape.hidden) as u64);
    assert_eq!(fast::full_bytes(p.shape, regular) - fast::full_bytes(p.shape, None), with - without);
    let (_, full_bptt) = fast::bptt_checkpointed_with(&p, &plan, Some(Truncation::Regular(t))).unwrap();
    assert_eq!(
        (full_bptt.peak_bytes, fast::costs(p.shape, Some(Truncation::Regular(t))).bytes(&plan)),
        (without, without)
    );
    let random = Some(Truncation::Random { p: 0.2, seed: 1 });
    assert_eq!(fast::costs(p.shape, random).bytes(&plan), without);
}

#[path = "common/mod.rs"]
mod common;

#[test]
fn checkpointed_gpu_runs_match_whole_runs_stepwise_bit_for_bit_and_fused_closely() {
    use bptt::Schedule;
    use bptt::gpu::{GpuBptt, RunOptions};
    let ctx = common::gpu();
    for (n, &act) in [Activation::Identity, Activation::Tanh, Activation::Relu].iter().enumerate() {
        for (loss, at, bias, b) in [(LossFn::Xent, LossAt::All, true, 3), (LossFn::Mse, LossAt::Last, false, 1)] {
            let t = 19 + n;
            let p = problem(t, b, act, loss, at, bias, 300 + n as u64 * 7 + b as u64);
            let oracle = reference::bptt(&p);
            for schedule in [Schedule::Stepwise, Schedule::Fused] {
                let whole = GpuBptt::new(&ctx, p.shape, schedule).unwrap().run(&ctx, &p, false).unwrap().0;
                for (l, c) in [(1, 1), (1, 4), (3, 2), (4, 3), (7, 1), (t, 1)] {
                    let plan = Plan::new(t, l, c).unwrap();
                    let mut o = GpuBptt::new_checkpointed(&ctx, p.shape, plan, schedule, None).unwrap();
                    let opts = RunOptions::default();
                    let (got, _, steps) = o.run_plan(&ctx, &p, &opts).unwrap();
                    let what = format!("{schedule:?} {act:?} {loss:?} {at:?} bias {bias} B={b} L={l} c={c}");
                    assert_eq!(steps, plan.forward_steps(), "{what}");
                    if schedule == Schedule::Stepwise {
                        assert_identical(&what, &got, &whole);
                    } else {
                        assert_within(&what, &got, &whole, 1e-6);
                    }
                    assert_within(&what, &got, &oracle, 1e-4);
                    let (again, _, _) = o.run_plan(&ctx, &p, &opts).unwrap();
                    assert_identical(&format!("{what}, run twice"), &again, &got);
                }
            }
        }
    }
}

#[test]
fn checkpointed_gpu_runs_truncate_and_clip_as_whole_runs_do() {
    use bptt::Schedule;
    use bptt::gpu::{GpuBptt, RunOptions};
    use bptt::variant::truncation::random_carry_scales;
    let ctx = common::gpu();
    let t = 21;
    let p = problem(t, 2, Activation::Tanh, LossFn::Mse, LossAt::All, true, 77);
    // Regular truncation: K lanes, fused only.
    let k = 4;
    let whole = GpuBptt::new_truncated(&ctx, p.shape, k).unwrap().run(&ctx, &p, false).unwrap().0;
    let oracle = truncated::bptt_truncated(&p, Truncation::Regular(k)).unwrap();
    for (l, c) in [(1, 3), (5, 2), (4, 4)] {
        let plan = Plan::new(t, l, c).unwrap();
        let mut o = GpuBptt::new_checkpointed(&ctx, p.shape, plan, Schedule::Fused, Some(k as u32)).unwrap();
        let (got, _, _) = o.run_plan(&ctx, &p, &RunOptions::default()).unwrap();
        assert_within(&format!("K={k} L={l} c={c}"), &got, &whole, 1e-6);
        assert_within(&format!("K={k} L={l} c={c}"), &got, &oracle, 1e-4);
    }
    assert!(
        GpuBptt::new_checkpointed(&ctx, p.shape, Plan::new(t, 2, 2).unwrap(), Schedule::Stepwise, Some(3)).is_err()
    );
    // Randomised truncation (carry multipliers) and clipping, both schedules.
    let scales = random_carry_scales(t, 0.3, 9).unwrap();
    let opts = RunOptions { keep_states: false, carry: Some(scales.clone()), clip: Some(0.05) };
    let mut oracle = truncated::bptt_carry_scaled(&p, &scales).unwrap();
    bptt::clip::clip_grads(&mut oracle, 0.05).unwrap();
    for schedule in [Schedule::Stepwise, Schedule::Fused] {
        let mut whole_o = GpuBptt::new(&ctx, p.shape, schedule).unwrap();
        let whole = whole_o.run_with(&ctx, &p, &opts).unwrap().0;
        for (l, c) in [(1, 2), (6, 2)] {
            let plan = Plan::new(t, l, c).unwrap();
            let mut o = GpuBptt::new_checkpointed(&ctx, p.shape, plan, schedule, None).unwrap();
            let (got, _, _) = o.run_plan(&ctx, &p, &opts).unwrap();
            let what = format!("{schedule:?} random + clip L={l} c={c}");
            if schedule == Schedule::Stepwise {
                assert_identical(&what, &got, &whole);
            } else {
                assert_within(&what, &got, &whole, 1e-6);
            }
            assert_within(&what, &got, &oracle, 1e-4);
            assert!(o.clip_norm().is_some(), "{what}");
        }
    }
}

#[test]
fn the_checkpointed_fast_path_truncates_as_its_full_storage_run_does() {
    use bptt::cpu::fast;
    for (n, &act) in [Activation::Identity, Activation::Tanh, Activation::Relu].iter().enumerate() {
        for (loss, at, b) in [(LossFn::Xent, LossAt::All, 3), (LossFn::Mse, LossAt::Last, 2)] {
            let t = 29 + n;
            let p = problem(t, b, act, loss, at, true, 500 + n as u64 + b as u64);
            for trunc in [Truncation::Regular(1), Truncation::Regular(5), Truncation::Random { p: 0.25, seed: 3 }] {
                let full = fast::bptt_truncated(&p, trunc).unwrap();
                let oracle = truncated::bptt_truncated(&p, trunc).unwrap();
                for (l, c) in [(1, 2), (3, 2), (4, 5), (7, 1), (t, 1)] {
                    let plan = Plan::new(t, l, c).unwrap();
                    let (got, stats) = fast::bptt_checkpointed_with(&p, &plan, Some(trunc)).unwrap();
                    let what = format!("{act:?} {loss:?} {at:?} B={b} {trunc:?} L={l} c={c}");
                    assert_within(&what, &got, &full, 1e-6);
                    assert_within(&what, &got, &oracle, 1e-4);
                    assert_eq!(stats.forward_steps, plan.forward_steps(), "{what}");
                }
            }
        }
    }
}
