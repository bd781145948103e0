//! Forward + backward timings with criterion: the fast f32 CPU path, the f64 reference, and the
//! GPU (both schedules) on the adapter wgpu picks.
//!
//! Shapes (h, T, B) with d = q = 64, identity, mse:
//! - CPU fast path: (256,64,1), (1024,256,1), (1024,256,32), (2048,512,1).
//! - f64 reference: the same, except (1024,256,32) — about a minute per iteration here, ten
//!   iterations at least — unless BPTT_BENCH_FULL=1.
//! - GPU: (256,64,1), (1024,256,1), and (256,64,32) for the schedule comparison; all four
//!   shapes with BPTT_BENCH_FULL=1 (for real GPUs: on lavapipe B=32 at h=1024 is ~50 GFLOP).
//!
//! `cargo bench` takes about 5 minutes on 2 cores with lavapipe (docs/performance.md), nearly
//! 4 of them the reference at (2048,512,1). Each benchmark takes ten samples of one iteration
//! (flat sampling): these are long, steady computations.

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};

use bptt::gpu::{AdapterRequest, GpuBptt, GpuContext, Schedule};
use bptt::{Problem, ProblemSpec, Shape, random_problem};

const SHAPES: [(usize, usize, usize); 4] = [(256, 64, 1), (1024, 256, 1), (1024, 256, 32), (2048, 512, 1)];

fn full() -> bool {
    std::env::var("BPTT_BENCH_FULL").is_ok_and(|v| v == "1")
}

fn problem(h: usize, t: usize, b: usize) -> Problem {
    random_problem(&ProblemSpec::new(Shape::new(t, b, 64, h, 64).unwrap())).unwrap()
}

fn id(h: usize, t: usize, b: usize) -> String {
    format!("h{h}_T{t}_B{b}")
}

fn configure<'a>(c: &'a mut Criterion, name: &str) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group(name);
    g.sample_size(10).sampling_mode(SamplingMode::Flat).warm_up_time(Duration::from_millis(1));
    g.measurement_time(Duration::from_millis(1));
    g
}

fn cpu(c: &mut Criterion) {
    let mut g = configure(c, "cpu_fast");
    for (h, t, b) in SHAPES {
        let p = problem(h, t, b);
        g.throughput(Throughput::Elements(bptt::flops::flops(p.shape) as u64));
        g.bench_with_input(BenchmarkId::from_parameter(id(h, t, b)), &p, |bench, p| {
            bench.iter(|| bptt::cpu::fast::bptt(p))
        });
    }
    g.finish();
    let mut g = configure(c, "cpu_ref");
    for (h, t, b) in SHAPES {
        if b > 1 && !full() {
            continue;
        }
        let p = problem(h, t, b);
        g.throughput(Throughput::Elements(bptt::flops::flops(p.shape) as u64));
        g.bench_with_input(BenchmarkId::from_parameter(id(h, t, b)), &p, |bench, p| {
            bench.iter(|| bptt::cpu::reference::bptt(p))
        });
    }
    g.finish();
}

fn gpu(c: &mut Criterion) {
    let ctx =
        GpuContext::new(&AdapterRequest::default()).unwrap_or_else(|e| panic!("the GPU benches need an adapter: {e}"));
    let shapes: Vec<(usize, usize, usize)> =
        if full() { SHAPES.to_vec() } else { vec![(256, 64, 1), (1024, 256, 1), (256, 64, 32)] };
    for schedule in [Schedule::Fused, Schedule::Stepwise] {
        let mut g = configure(c, &format!("gpu_{}", schedule.name()));
        for &(h, t, b) in &shapes {
            let p = problem(h, t, b);
            let mut gpu = GpuBptt::new(&ctx, p.shape, schedule).unwrap();
            g.throughput(Throughput::Elements(bptt::flops::flops(p.shape) as u64));
            g.bench_function(BenchmarkId::from_parameter(id(h, t, b)), |bench| {
                bench.iter(|| gpu.run(&ctx, &p, false).unwrap())
            });
        }
        g.finish();
    }
}

criterion_group!(benches, cpu, gpu);
criterion_main!(benches);
