//! Exact BPTT of a long sequence in bounded memory (docs/performance.md, "Checkpointing"): one
//! path checkpointed within a budget, checked against the f64 reference checkpointed within the
//! same budget, every tensor's relative error printed with what each held and evaluated.
//!
//!     cargo run --release --example long_sequence -- [--path cpu|gpu] [--steps T] [--hidden h]
//!         [--batch B] [--input d] [--output q] [--memory BYTES] [--tolerance E]
//!
//! Defaults: the fast CPU path, T = 10⁶, h = 256, B = 1, d = q = 4, tanh, mse, spectral radius
//! 0.95, seed 0, `--memory 64M`, tolerance 1e-4. Exits 1 when a tensor is over the tolerance
//! or a result is not finite.

use std::time::Instant;

use bptt::cpu::{checkpointed, fast};
use bptt::gpu::{AdapterRequest, GpuBptt, GpuContext, RunOptions, Schedule};
use bptt::model::rel_err;
use bptt::variant::memory::{MemoryOptions, PathMemory, plan_path};
use bptt::{Activation, ProblemSpec, Shape, random_problem};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |name: &str| args.iter().position(|a| a == name).map(|i| args[i + 1].clone());
    let num = |name: &str, default: usize| value(name).map_or(default, |v| v.parse().expect("a number"));
    let gpu = value("--path").is_some_and(|p| p == "gpu");
    let budget = bptt::memory::parse_bytes(&value("--memory").unwrap_or_else(|| "64M".into())).expect("bytes");
    let tolerance: f64 = value("--tolerance").map_or(1e-4, |v| v.parse().expect("a number"));
    let shape = Shape::new(
        num("--steps", 1_000_000),
        num("--batch", 1),
        num("--input", 4),
        num("--hidden", 256),
        num("--output", 4),
    )
    .expect("valid shape");
    let mut spec = ProblemSpec::new(shape);
    spec.activation = Activation::Tanh;
    spec.spectral_radius = Some(0.95);
    let p = random_problem(&spec).expect("valid problem");
    let opts = MemoryOptions { budget: Some(budget), checkpoints: None };
    let human = bptt::format::human_bytes;
    println!("{shape}, tanh, mse, ρ = 0.95, seed 0; budget {} for what grows with T", human(budget));
    let show = |name: &str, m: &PathMemory, steps: u64, ms: f64| {
        let plan = m.plan.expect("checkpointed");
        println!(
            "{name:<10} held {} (storing every state: {}), c = {}, units of {}, forward steps {steps} (optimal {}), {:.1} s",
            human(m.peak_bytes),
            human(m.full_bytes),
            plan.slots_used(),
            plan.unit_steps,
            plan.forward_steps(),
            ms / 1e3
        );
    };

    let start = Instant::now();
    let (got, name) = if gpu {
        let ctx = GpuContext::new(&AdapterRequest::default()).expect("a GPU adapter");
        let (full, costs) = bptt::gpu::memory_costs(&ctx.limits, shape, Schedule::Fused, None);
        let m = plan_path("gpu", shape.steps, &opts, &costs, full, None).expect("a plan within the budget");
        let mut o = GpuBptt::new_checkpointed(&ctx, shape, m.plan.unwrap(), Schedule::Fused, None).unwrap();
        let (g, _, steps) = o.run_plan(&ctx, &p, &RunOptions::default()).expect("the GPU run");
        show("gpu", &m, steps, start.elapsed().as_secs_f64() * 1e3);
        println!("           {} of GPU buffers in all (weights included)", human(o.memory_bytes()));
        (g, "gpu")
    } else {
        let m = plan_path("cpu", shape.steps, &opts, &fast::costs(shape, None), fast::full_bytes(shape, None), None)
            .expect("a plan within the budget");
        let (g, stats) = fast::bptt_checkpointed(&p, &m.plan.unwrap()).unwrap();
        show("cpu", &m, stats.forward_steps, start.elapsed().as_secs_f64() * 1e3);
        (g, "cpu")
    };

    let start = Instant::now();
    let costs = checkpointed::costs(shape, None);
    let m = plan_path("cpu-ref", shape.steps, &opts, &costs, checkpointed::full_bytes(shape, None), None)
        .expect("a plan within the budget");
    let (want, stats) = checkpointed::bptt(&p, None, &m.plan.unwrap()).unwrap();
    show("cpu-ref", &m, stats.forward_steps, start.elapsed().as_secs_f64() * 1e3);

    let mut worst: f64 = 0.0;
    println!("{name} against the f64 reference, ‖{name} − ref‖/‖ref‖ ≤ {tolerance:e}:");
    for ((tensor, a), (_, b)) in got.tensors().into_iter().zip(want.tensors()) {
        let e = rel_err(a, b);
        let finite = a.iter().all(|v| v.is_finite());
        worst = if e.is_nan() || !finite { f64::INFINITY } else { worst.max(e) };
        println!("  {tensor:<12} {e:.3e}  {}", if finite && e <= tolerance { "PASS" } else { "FAIL" });
    }
    println!("result     {}", if worst <= tolerance { "PASS" } else { "FAIL" });
    if worst > tolerance {
        std::process::exit(1);
    }
}
