//! Times checkpointed BPTT against the same path storing every state, alternating the runs
//! round after round (docs/performance.md, "Checkpointing"): for each budget fraction of the
//! path's full-storage bytes, the plan the run picks, its forward steps and the median time
//! over the full-storage run's. Timing only: no pass/fail (tests/checkpointed.rs checks the
//! results).
//!
//!     cargo run --release --example time_memory -- [--path cpu|gpu] [--steps T] [--batch B]
//!         [--hidden h] [--input d] [--output q] [--rounds N] [--fractions 0.05,0.01]
//!         [--plans L:c,L:c,...]
//!
//! `--plans` times given plans (units of L steps, c slots) instead of budget fractions.
//!
//! Defaults: the fast CPU path, T=1000 B=1 d=64 h=256 q=64, tanh, mse, seed 0, 15 rounds,
//! budgets of 5% and 1%.

use std::time::Instant;

use bptt::checkpoint::Plan;
use bptt::cpu::fast;
use bptt::gpu::{AdapterRequest, GpuBptt, GpuContext, RunOptions, Schedule};
use bptt::variant::memory::{MemoryOptions, plan_path};
use bptt::{Activation, Problem, ProblemSpec, Shape, random_problem};

/// One configuration's run: the forward steps it evaluated.
type Runner<'a> = Box<dyn FnMut(&Problem) -> u64 + 'a>;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |name: &str| args.iter().position(|a| a == name).map(|i| args[i + 1].clone());
    let num = |name: &str, default: usize| value(name).map_or(default, |v| v.parse().expect("a number"));
    let gpu = value("--path").is_some_and(|p| p == "gpu");
    let shape = Shape::new(
        num("--steps", 1000),
        num("--batch", 1),
        num("--input", 64),
        num("--hidden", 256),
        num("--output", 64),
    )
    .expect("valid shape");
    let fractions: Vec<f64> = value("--fractions")
        .unwrap_or_else(|| "0.05,0.01".into())
        .split(',')
        .map(|f| f.parse().expect("a fraction"))
        .collect();
    let mut spec = ProblemSpec::new(shape);
    spec.activation = Activation::Tanh;
    spec.spectral_radius = Some(0.95);
    let p = random_problem(&spec).expect("valid problem");
    let rounds = num("--rounds", 15);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("{shape}, tanh, mse; {rounds} rounds; load average at start: {}", load.trim());

    let ctx = gpu.then(|| GpuContext::new(&AdapterRequest::default()).expect("a GPU adapter"));
    let (full_bytes, costs) = match &ctx {
        Some(ctx) => bptt::gpu::memory_costs(&ctx.limits, shape, Schedule::Fused, None),
        None => (fast::full_bytes(shape, None), fast::costs(shape, None)),
    };
    let mut plans: Vec<(f64, Plan)> = fractions
        .iter()
        .map(|&f| {
            let budget = (full_bytes as f64 * f) as u64;
            let opts = MemoryOptions { budget: Some(budget), checkpoints: None };
            let m = plan_path("", shape.steps, &opts, &costs, full_bytes, None).expect("a plan");
            (f, m.plan.expect("checkpointed"))
        })
        .collect();
    if let Some(given) = value("--plans") {
        plans = given
            .split(',')
            .map(|lc| {
                let (l, c) = lc.split_once(':').expect("L:c");
                let plan = Plan::new(shape.steps, l.parse().expect("L"), c.parse().expect("c")).expect("a plan");
                (costs.bytes(&plan) as f64 / full_bytes as f64, plan)
            })
            .collect();
    }

    // One runner per configuration: the full-storage run first, then each plan.
    let mut runners: Vec<Runner> = Vec::new();
    match &ctx {
        None => {
            runners.push(Box::new(|p| {
                fast::bptt(p);
                p.shape.steps as u64
            }));
            // The forward pass alone (outputs and loss too), for the phases' shares.
            runners.push(Box::new(|p| {
                fast::forward_loss(p, p.shape.steps);
                p.shape.steps as u64
            }));
            for &(_, plan) in &plans {
                runners.push(Box::new(move |p| fast::bptt_checkpointed(p, &plan).unwrap().1.forward_steps));
            }
        }
        Some(ctx) => {
            let mut whole = GpuBptt::new(ctx, shape, Schedule::Fused).unwrap();
            runners.push(Box::new(move |p| {
                whole.run(ctx, p, false).unwrap();
                p.shape.steps as u64
            }));
            for &(_, plan) in &plans {
                let mut o = GpuBptt::new_checkpointed(ctx, shape, plan, Schedule::Fused, None).unwrap();
                runners.push(Box::new(move |p| o.run_plan(ctx, p, &RunOptions::default()).unwrap().2));
            }
        }
    }
    let mut times = vec![Vec::new(); runners.len()];
    let mut steps = vec![0; runners.len()];
    for round in 0..=rounds {
        for (k, run) in runners.iter_mut().enumerate() {
            let start = Instant::now();
            steps[k] = run(&p);
            if round > 0 {
                // Round 0 is the warm-up.
                times[k].push(start.elapsed().as_secs_f64() * 1e3);
            }
        }
    }
    let median = |v: &Vec<f64>| {
        let mut v = v.clone();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let full_ms = median(&times[0]);
    let path = if gpu { "GPU fused (window by window)" } else { "fast CPU path" };
    println!("{path}: storing every state {} bytes, {full_ms:.2} ms (median), {} forward steps", full_bytes, steps[0]);
    let first_plan = if gpu { 1 } else { 2 };
    if !gpu {
        // What the forward count alone predicts: F forward passes' worth plus one backward.
        let fwd = median(&times[1]);
        let bwd = full_ms - fwd;
        println!(
            "forward pass alone {fwd:.2} ms, so the backward {bwd:.2} ms ({:.2}× the forward); a plan of F forward \
             steps costs at least (F/T·{fwd:.2} + {bwd:.2}) ms",
            bwd / fwd
        );
    }
    println!("| budget | bytes held | c | L | forward steps (optimal) | median ms | ratio |");
    println!("|---|---|---|---|---|---|---|");
    for (k, (f, plan)) in plans.iter().enumerate() {
        let ms = median(&times[k + first_plan]);
        println!(
            "| {:.1}% | {} | {} | {} | {} ({}) | {ms:.2} | {:.3}× |",
            f * 100.0,
            costs.bytes(plan),
            plan.slots_used(),
            plan.unit_steps,
            steps[k + first_plan],
            plan.forward_steps(),
            ms / full_ms
        );
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average at the end: {}", load.trim());
}
