//! One `bptt train` iteration on the fast CPU path at the speed claim's shape (docs/performance.md): a fresh adding-problem minibatch, forward, backward,
//! clipping to norm 1 and an Adam step, h = 128, T = 200, B = 32, tanh.
//!
//! `cargo bench --bench train` (about half a minute). The comparison with PyTorch is
//! `scripts/bench_train_vs_torch.sh`, which alternates the two in one sitting.

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

use bptt::train::cpu::CpuEngine;
use bptt::train::setup::Setup;
use bptt::train::{Engine, H0};
use bptt::{Activation, OptimKind, TrainConfig, TrainDevice};

fn train_iteration(c: &mut Criterion) {
    let config = TrainConfig {
        device: TrainDevice::Cpu,
        activation: Some(Activation::Tanh),
        hidden: 128,
        steps: Some(200),
        batch: 32,
        optim: OptimKind::Adam,
        clip: Some(1.0),
        eval_size: 32,
        ..TrainConfig::default()
    };
    let setup = Setup::from_config(&config).unwrap();
    let mut engine = CpuEngine::new(setup.step, setup.weights.clone()).unwrap();
    let mut r = setup.batch_rng();
    let mut g = c.benchmark_group("train");
    g.sample_size(50).measurement_time(Duration::from_secs(10)).throughput(Throughput::Elements(32));
    g.bench_function("cpu_adam_h128_T200_B32", |b| {
        b.iter(|| {
            let (batch, _) = setup.batch(0, &mut r).unwrap();
            engine.step(&batch, H0::Zero, None).unwrap();
            // Keep the losses from piling up; the training loop reads them the same way.
            engine.take_stats().unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, train_iteration);
criterion_main!(benches);
