//! The GPU's truncated, randomised, segmented and clipped BPTT against the f64 reference's.

mod common;

use bptt::clip::{clip_grads, global_grad_norm};
use bptt::cpu::segments::bptt_segments;
use bptt::cpu::truncated::{bptt_carry_scaled, bptt_truncated};
use bptt::gpu::{GpuBptt, RunOptions, Schedule};
use bptt::model::{Activation, LossAt, LossFn, Shape};
use bptt::problem::{ProblemSpec, random_problem};
use bptt::variant::segments::run_in_segments;
use bptt::variant::truncation::{Truncation, random_carry_scales};
use bptt::{Problem, cpu::reference};

fn problem(act: Activation, loss: LossFn, bias: bool, loss_at: LossAt) -> Problem {
    let mut s = ProblemSpec::new(Shape::new(9, 3, 4, 13, 5).unwrap());
    s.activation = act;
    s.loss = loss;
    s.bias = bias;
    s.loss_at = loss_at;
    s.random_h0 = true;
    s.spectral_radius = Some(1.2);
    s.seed = 5;
    random_problem(&s).unwrap()
}

fn cases() -> Vec<Problem> {
    vec![
        problem(Activation::Identity, LossFn::Mse, false, LossAt::All),
        problem(Activation::Tanh, LossFn::Xent, true, LossAt::All),
        problem(Activation::Tanh, LossFn::Mse, true, LossAt::Last),
    ]
}

#[test]
fn truncation_to_k_steps_matches_the_reference() {
    let ctx = common::gpu();
    for p in cases() {
        for k in [1, 2, 4, 9] {
            let mut gpu = GpuBptt::new_truncated(&ctx, p.shape, k).unwrap();
            gpu.poison(&ctx);
            let (g, _) = gpu.run(&ctx, &p, false).unwrap();
            let want = bptt_truncated(&p, Truncation::Regular(k)).unwrap();
            common::assert_close(&format!("K={k} {:?} {:?}", p.activation, p.loss_at), &g, &want, 1e-4);
        }
    }
    // K > T needs no lanes: it is full BPTT, and the object refuses it.
    let p = &cases()[0];
    assert!(GpuBptt::new_truncated(&ctx, p.shape, p.shape.steps + 1).is_err());
}

#[test]
fn carry_scales_randomised_truncation_match_the_reference() {
    let ctxs = common::gpu_with_each_layout();
    for p in cases() {
        for (ctx, schedule) in
            [(&ctxs[0], Schedule::Fused), (&ctxs[1], Schedule::Fused), (&ctxs[0], Schedule::Stepwise)]
        {
            let mut gpu = GpuBptt::new(ctx, p.shape, schedule).unwrap();
            for seed in [1, 2] {
                let scales = random_carry_scales(p.shape.steps, 0.3, seed).unwrap();
                assert!(scales.contains(&0.0) && scales.iter().any(|&c| c > 1.0), "{scales:?}");
                let opts = RunOptions { carry: Some(scales.clone()), ..Default::default() };
                let (g, _) = gpu.run_with(ctx, &p, &opts).unwrap();
                let want = bptt_truncated(&p, Truncation::Random { p: 0.3, seed }).unwrap();
                common::assert_close(&format!("random seed {seed} {schedule:?}"), &g, &want, 1e-4);
                assert_eq!(want, bptt_carry_scaled(&p, &scales).unwrap());
            }
            // And a plain run afterwards is full BPTT again.
            let (g, _) = gpu.run(ctx, &p, false).unwrap();
            common::assert_close("after carry", &g, &reference::bptt(&p), 1e-4);
        }
    }
}

#[test]
fn segments_on_the_gpu_match_the_reference() {
    let ctx = common::gpu();
    for p in cases() {
        for n in [1, 2, 4] {
            let mut objects: Vec<GpuBptt> = Vec::new();
            let g = run_in_segments(&p, n, |seg| {
                if objects.last().is_none_or(|o| o.shape() != seg.shape) {
                    objects.push(GpuBptt::new(&ctx, seg.shape, Schedule::Fused)?);
                }
                Ok(objects.last_mut().unwrap().run(&ctx, seg, true)?.0)
            })
            .unwrap();
            common::assert_close(&format!("{n} segments {:?}", p.loss_at), &g, &bptt_segments(&p, n).unwrap(), 1e-4);
        }
    }
}

#[test]
fn clipping_on_the_gpu_matches_the_reference() {
    let ctx = common::gpu();
    for p in cases() {
        let full = reference::bptt(&p);
        let norm = global_grad_norm(&full);
        for schedule in [Schedule::Fused, Schedule::Stepwise] {
            let mut gpu = GpuBptt::new(&ctx, p.shape, schedule).unwrap();
            // θ below ‖g‖ clips to θ; above it changes nothing.
            for theta in [0.25 * norm, 4.0 * norm] {
                let (g, _) = gpu.run_with(&ctx, &p, &RunOptions { clip: Some(theta), ..Default::default() }).unwrap();
                let mut want = full.clone();
                let (before, after) = clip_grads(&mut want, theta).unwrap();
                common::assert_close(&format!("clip {theta:.3e} {schedule:?}"), &g, &want, 1e-4);
                let gpu_before = gpu.clip_norm().unwrap();
                assert!((gpu_before - before).abs() <= 1e-4 * before, "{gpu_before} vs {before}");
                let gpu_after = global_grad_norm(&g);
                assert!((gpu_after - after).abs() <= 1e-4 * after, "{gpu_after} vs {after}");
                if theta < norm {
                    assert!((gpu_after - theta).abs() <= 1e-5 * theta);
                }
            }
        }
    }
}
