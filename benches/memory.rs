//! Checkpointed BPTT against storing every state, with criterion (docs/performance.md,
//! "Checkpointing"): T = 1000, h = 256, d = q = 64, tanh, under budgets of 5% and 1% of each
//! path's full-storage bytes, on the fast CPU path (B = 1 and B = 32) and on the GPU's fused
//! schedule (B = 1; the adapter wgpu picks). The ratios in the docs come from
//! `examples/time_memory.rs`, which alternates the runs; these are the same configurations one
//! after the other.

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, SamplingMode, criterion_group, criterion_main};

use bptt::checkpoint::Plan;
use bptt::cpu::fast;
use bptt::gpu::{AdapterRequest, GpuBptt, GpuContext, RunOptions, Schedule};
use bptt::variant::memory::{MemoryOptions, plan_path};
use bptt::{Activation, Problem, ProblemSpec, Shape, random_problem};

const FRACTIONS: [f64; 2] = [0.05, 0.01];

fn problem(batch: usize) -> Problem {
    let mut spec = ProblemSpec::new(Shape::new(1000, batch, 64, 256, 64).unwrap());
    spec.activation = Activation::Tanh;
    spec.spectral_radius = Some(0.95);
    random_problem(&spec).unwrap()
}

/// The plan a budget of `fraction` of the full-storage bytes gives.
fn plan(full: u64, costs: &bptt::checkpoint::Costs, fraction: f64) -> Plan {
    let opts = MemoryOptions { budget: Some((full as f64 * fraction) as u64), checkpoints: None };
    plan_path("", 1000, &opts, costs, full, None).unwrap().plan.unwrap()
}

fn group<'a>(c: &'a mut Criterion, name: &str) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group(name);
    g.sample_size(20).sampling_mode(SamplingMode::Flat).warm_up_time(Duration::from_millis(100));
    g.measurement_time(Duration::from_secs(2));
    g
}

fn cpu(c: &mut Criterion) {
    for batch in [1, 32] {
        let p = problem(batch);
        let (full, costs) = (fast::full_bytes(p.shape, None), fast::costs(p.shape, None));
        let mut g = group(c, &format!("memory_cpu_fast_B{batch}"));
        g.bench_function("full", |b| b.iter(|| fast::bptt(&p)));
        for f in FRACTIONS {
            let plan = plan(full, &costs, f);
            let id =
                BenchmarkId::new("budget", format!("{}pct_c{}_L{}", f * 100.0, plan.slots_used(), plan.unit_steps));
            g.bench_function(id, |b| b.iter(|| fast::bptt_checkpointed(&p, &plan).unwrap()));
        }
        g.finish();
    }
}

fn gpu(c: &mut Criterion) {
    let ctx = GpuContext::new(&AdapterRequest::default()).expect("a GPU adapter");
    let p = problem(1);
    let (full, costs) = bptt::gpu::memory_costs(&ctx.limits, p.shape, Schedule::Fused, None);
    let mut g = group(c, "memory_gpu_fused");
    let mut whole = GpuBptt::new(&ctx, p.shape, Schedule::Fused).unwrap();
    g.bench_function("full", |b| b.iter(|| whole.run(&ctx, &p, false).unwrap()));
    for f in FRACTIONS {
        let plan = plan(full, &costs, f);
        let mut o = GpuBptt::new_checkpointed(&ctx, p.shape, plan, Schedule::Fused, None).unwrap();
        let id = BenchmarkId::new("budget", format!("{}pct_c{}_L{}", f * 100.0, plan.slots_used(), plan.unit_steps));
        g.bench_function(id, |b| b.iter(|| o.run_plan(&ctx, &p, &RunOptions::default()).unwrap()));
    }
    g.finish();
}

criterion_group!(benches, cpu, gpu);
criterion_main!(benches);
