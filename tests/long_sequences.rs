//! Long sequences on the GPU: one dispatch per step puts tens of thousands of dispatches in a
//! phase, more than software adapters take in one compute pass (lavapipe segfaulted near
//! 60000). The schedules and the dispatch floor split them into passes of
//! `MAX_DISPATCHES_PER_PASS`; these runs go well past the crash on both schedules.

mod common;

use bptt::cpu::reference;
use bptt::gpu::{GpuBptt, MAX_DISPATCHES_PER_PASS, Schedule};
use bptt::model::Shape;
use bptt::problem::{ProblemSpec, random_problem};

/// T long enough that each schedule puts more than 65536 dispatches in one phase (fused: T + 6
/// backward; stepwise: 4T + 2 backward), at h = 1 so each dispatch is tiny.
const STEPS: [(Schedule, usize); 2] = [(Schedule::Fused, 100_000), (Schedule::Stepwise, 100_000)];

#[test]
fn a_hundred_thousand_steps_on_both_schedules_match_the_reference() {
    let ctx = common::gpu();
    for (schedule, steps) in STEPS {
        let mut spec = ProblemSpec::new(Shape::new(steps, 1, 1, 1, 1).unwrap());
        // |w_hh| = 0.5: the states and gradients stay finite over any length.
        spec.spectral_radius = Some(0.5);
        let p = random_problem(&spec).unwrap();
        let mut gpu = GpuBptt::new(&ctx, p.shape, schedule).unwrap();
        let (g, times) = gpu.run(&ctx, &p, false).unwrap();
        assert!(times.dispatches > 2 * MAX_DISPATCHES_PER_PASS, "{schedule:?}: {} dispatches", times.dispatches);
        let r = reference::bptt(&p);
        let worst = common::assert_close(&format!("{schedule:?} T={steps}"), &g, &r, 1e-3);
        eprintln!("{schedule:?} T={steps}: {} dispatches, worst relative error {worst:.2e}", times.dispatches);
    }
}

#[test]
fn the_dispatch_floor_of_two_hundred_thousand_dispatches() {
    let ctx = common::gpu();
    let ms = bptt::gpu::floor::dispatch_floor_ms(&ctx, 200_000, 1).unwrap();
    assert!(ms.is_finite() && ms > 0.0, "{ms}");
}
