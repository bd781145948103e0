//! The gradient check within a memory budget (docs/gradients.md, "Long sequences in bounded
//! memory"): every path checkpointed under `memory`, the report's memory section, shapes the
//! adapter cannot bind checkpointed without being asked, a long sequence, and every bad
//! combination refused with one line before anything is computed.

mod common;

use bptt::gpu::AdapterRequest;
use bptt::model::{Activation, LossAt, LossFn, Shape, rel_err};
use bptt::{CheckConfig, Engines, ProblemSpec, check_random};
use common::bptt;

fn spec(t: usize, b: usize, h: usize) -> ProblemSpec {
    let mut spec = ProblemSpec::new(Shape::new(t, b, 4, h, 3).unwrap());
    (spec.activation, spec.loss, spec.bias, spec.random_h0) = (Activation::Tanh, LossFn::Xent, true, true);
    spec.spectral_radius = Some(0.9);
    spec
}

fn quiet() -> &'static bptt::Quiet {
    &bptt::Quiet
}

#[test]
fn every_path_checkpoints_within_the_budget_and_the_report_says_how() {
    let s = spec(120, 2, 24);
    let full = check_random(&s, &CheckConfig { repeat: Some(1), ..Default::default() }, quiet()).unwrap();
    let budget = 12_000;
    let config = CheckConfig { repeat: Some(1), memory: Some(budget), ..Default::default() };
    let r = check_random(&s, &config, quiet()).unwrap();
    assert_eq!(r.pass, Some(true), "{:?}", r.problems);
    let m = r.memory.as_ref().expect("a memory section");
    assert_eq!((m.path, m.figures.budget_bytes), ("gpu", Some(budget)));
    let f = &m.figures;
    assert!(f.peak_bytes <= budget && f.full_bytes > 4 * budget, "{m:?}");
    assert!(f.forward_steps > 120 && f.forward_steps == f.forward_steps_optimal, "{m:?}");
    assert!(f.checkpoints >= 1 && f.chunk_steps >= 1, "{m:?}");
    // Every path that ran is listed, each within the budget and checkpointed.
    let paths: Vec<&str> = m.paths.iter().map(|p| p.path).collect();
    assert_eq!(paths, ["gpu", "cpu", "cpu-ref"]);
    for p in &m.paths {
        assert!(p.peak_bytes <= budget && p.checkpoints.is_some(), "{p:?}");
        assert_eq!(p.forward_steps, p.forward_steps_optimal, "{p:?}");
    }
    // The reference is single steps.
    assert_eq!(m.paths[2].chunk_steps, Some(1));
    // The same gradients as storing everything (the fused schedule sums differently: f32).
    let (a, b) = (r.result.as_ref().unwrap(), full.result.as_ref().unwrap());
    for ((name, x), (_, y)) in a.tensors().into_iter().zip(b.tensors()) {
        assert!(rel_err(x, y) < 1e-6, "{name}: {:e}", rel_err(x, y));
    }
    assert!(full.memory.is_none(), "storing everything has no memory section");
    // The JSON carries the section with the fields documented.
    let json = serde_json::to_value(&r).unwrap();
    for key in [
        "budget_bytes",
        "full_bytes",
        "peak_bytes",
        "checkpoints",
        "chunk_steps",
        "forward_steps",
        "forward_steps_optimal",
    ] {
        assert!(json["memory"][key].is_number(), "memory.{key}: {}", json["memory"]);
    }
    // A budget that holds everything changes nothing.
    let roomy = CheckConfig { memory: Some(1 << 40), ..config };
    assert!(check_random(&s, &roomy, quiet()).unwrap().memory.is_none());
}

#[test]
fn checkpoints_alone_set_the_slots_and_loss_at_last_is_checked_too() {
    let mut s = spec(90, 1, 16);
    s.loss_at = LossAt::Last;
    let config =
        CheckConfig { compute: Engines::Reference, checkpoints: Some(4), repeat: Some(1), ..Default::default() };
    let r = check_random(&s, &config, quiet()).unwrap();
    let m = r.memory.unwrap();
    let f = &m.figures;
    assert_eq!((m.path, f.checkpoints, f.chunk_steps, f.budget_bytes), ("cpu-ref", 4, 1, None));
    assert_eq!(f.forward_steps, bptt::checkpoint::Plan::new(90, 1, 4).unwrap().forward_steps());
    // The reference checkpointed is the reference, bit for bit.
    let full = check_random(&s, &CheckConfig { compute: Engines::Reference, ..Default::default() }, quiet()).unwrap();
    assert_eq!(r.loss.to_bits(), full.loss.to_bits());
    assert_eq!(r.grad_h_norm, full.grad_h_norm);
    assert_eq!(r.reach, full.reach);
}

#[test]
fn a_shape_the_adapter_cannot_bind_is_checkpointed_without_being_asked() {
    // An adapter that binds 16 KiB per buffer: h alone needs (T+1)·B·h·4 = 33 KiB.
    let s = spec(256, 2, 16);
    let adapter = AdapterRequest { max_binding: Some(16 << 10), ..Default::default() };
    let config = CheckConfig { repeat: Some(1), adapter, ..Default::default() };
    let r = check_random(&s, &config, quiet()).unwrap();
    assert_eq!(r.pass, Some(true), "{:?}", r.problems);
    let m = r.memory.expect("checkpointed");
    assert_eq!(m.path, "gpu");
    let why = m.automatic.clone().expect("says why");
    assert!(why.contains("checkpointed automatically") && why.contains("binds at most"), "{why}");
    assert!(m.figures.chunk_steps < 256, "{m:?}");
    // The CPU paths store everything: nothing forced them.
    assert!(m.paths.iter().filter(|p| p.path != "gpu").all(|p| p.checkpoints.is_none()), "{m:?}");
}

#[test]
fn a_long_sequence_runs_in_bounded_memory_on_every_path() {
    // T = 20000: full storage would hold 20000 states on each path.
    let mut s = spec(20_000, 1, 8);
    s.spectral_radius = Some(0.95);
    // The per-step losses and norms (T values each) count too.
    let budget = 320 << 10;
    let config = CheckConfig { repeat: Some(1), memory: Some(budget), ..Default::default() };
    let r = check_random(&s, &config, quiet()).unwrap();
    assert_eq!(r.pass, Some(true), "{:?}", r.problems);
    let m = r.memory.unwrap();
    for p in &m.paths {
        assert!(p.peak_bytes <= budget && p.full_bytes > 4 * budget, "{p:?} of {m:?}");
        assert!(p.forward_steps > 20_000 && p.forward_steps < 3 * 20_000, "{p:?}");
    }
    assert_eq!(r.grad_h_norm.len(), 20_000);
}

#[test]
fn bad_budgets_are_refused_with_one_line_before_computing() {
    let shape = ["--hidden", "32", "--steps", "200", "--spectral-radius", "0.9", "--compute", "cpu"];
    for (extra, want) in [
        (&["--memory", "0"][..], "--memory must be more than 0 bytes"),
        (&["--checkpoints", "0"], "--checkpoints must be at least 1"),
        (&["--memory", "1K"], "it needs at least"),
        (&["--memory", "8K", "--checkpoints", "100"], "too small for 100 checkpoints"),
        (&["--memory", "64K", "--segments", "4"], "cannot be combined"),
        (&["--memory", "lots"], "not a number of bytes"),
        (&["--checkpoints", "-3"], "not a whole number"),
        (
            &["--memory", "64K", "--save-states", "--save", "/tmp/bptt-memory-test-never-written.safetensors"],
            "every state",
        ),
    ] {
        let args: Vec<&str> = shape.iter().chain(extra).copied().collect();
        let (code, stdout, stderr) = bptt(&args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{args:?}: nothing computed, nothing printed");
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.contains("XDG_RUNTIME_DIR")).collect();
        assert_eq!(lines.len(), 1, "{args:?}: {stderr}");
        assert!(lines[0].contains(want), "{args:?}: {stderr}");
    }
    assert!(!std::path::Path::new("/tmp/bptt-memory-test-never-written.safetensors").exists());
}

#[test]
fn the_command_prints_the_memory_section() {
    let (code, stdout, stderr) =
        bptt(&["--hidden", "16", "--steps", "300", "--spectral-radius", "0.9", "--repeat", "1", "--memory", "16K"]);
    assert_eq!(code, 0, "{stderr}");
    for want in ["memory     exact BPTT with checkpoints (gpu)", "forward steps", "states held at once", "cpu-ref"] {
        assert!(stdout.contains(want), "missing {want:?} in\n{stdout}");
    }
    assert!(stdout.contains("result     PASS"), "{stdout}");
}

#[test]
fn training_under_a_budget_follows_the_full_runs_curve_on_both_devices() {
    use bptt::{Activation, InitRecurrent, Task, TrainConfig, TrainDevice, train};
    for (device, task) in
        [(TrainDevice::Cpu, Task::Adding), (TrainDevice::Gpu, Task::Adding), (TrainDevice::Gpu, Task::Copy)]
    {
        let full = TrainConfig {
            task,
            steps: Some(60),
            hidden: 16,
            batch: 4,
            iters: 30,
            log_every: 5,
            eval_every: 15,
            eval_size: 8,
            activation: Some(Activation::Relu),
            init_recurrent: InitRecurrent::Identity,
            clip: Some(1.0),
            device,
            seed: 3,
            ..TrainConfig::default()
        };
        let budget = 20 << 10;
        let a = train(&full).unwrap().report;
        let b = train(&TrainConfig { memory: Some(budget), ..full.clone() }).unwrap().report;
        let m = b.memory.as_ref().expect("checkpointed");
        assert!(m.peak_bytes <= budget && m.full_bytes > 2 * budget, "{m:?}");
        assert!(m.forward_steps > 60 && m.forward_steps == m.forward_steps_optimal, "{m:?}");
        assert!(a.memory.is_none());
        // The same curve and held-out metrics, to f32 rounding.
        for (x, y) in a.curve.iter().zip(&b.curve) {
            assert!((x.train - y.train).abs() <= 1e-5 * x.train.abs().max(1e-3), "{device:?} {task:?}: {x:?} {y:?}");
        }
        for (x, y) in a.eval.iter().zip(&b.eval) {
            assert!((x.loss - y.loss).abs() <= 1e-5 * x.loss.abs(), "{device:?} {task:?}: {x:?} {y:?}");
            assert_eq!(x.accuracy.is_some(), y.accuracy.is_some());
        }
    }
}

#[test]
fn bad_budgets_in_training_are_refused_with_one_line_before_training() {
    let base = ["train", "--task", "adding", "--steps", "200", "--hidden", "16", "--iters", "5", "--compute", "cpu"];
    for (extra, want) in [
        (&["--memory", "0"][..], "--memory must be more than 0 bytes"),
        (&["--checkpoints", "0"], "--checkpoints must be at least 1"),
        (&["--memory", "1K"], "it needs at least"),
        (&["--memory", "40K", "--checkpoints", "100"], "too small for 100 checkpoints"),
        (&["--memory", "lots"], "not a number of bytes"),
    ] {
        let args: Vec<&str> = base.iter().chain(extra).copied().collect();
        let (code, stdout, stderr) = bptt(&args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{args:?}");
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.contains("XDG_RUNTIME_DIR")).collect();
        assert_eq!(lines.len(), 1, "{args:?}: {stderr}");
        assert!(lines[0].contains(want), "{args:?}: {stderr}");
    }
    // A budget: the summary says what was held.
    let args: Vec<&str> = base.iter().chain(&["--memory", "64K"]).copied().collect();
    let (code, stdout, stderr) = bptt(&args);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("memory       exact BPTT with checkpoints"), "{stdout}");
}

#[test]
fn truncated_training_under_a_budget_follows_the_full_runs_curve() {
    use bptt::{Task, TrainConfig, TrainDevice, Truncation, train};
    for device in [TrainDevice::Cpu, TrainDevice::Gpu] {
        for truncate in [Truncation::Regular(7), Truncation::Random { p: 0.1, seed: 4 }] {
            let full = TrainConfig {
                task: Task::Copy,
                steps: Some(40),
                hidden: 16,
                batch: 4,
                iters: 20,
                log_every: 5,
                eval_every: 20,
                eval_size: 8,
                clip: Some(1.0),
                truncate: Some(truncate),
                device,
                seed: 2,
                ..TrainConfig::default()
            };
            let a = train(&full).unwrap().report;
            let b = train(&TrainConfig { memory: Some(24 << 10), ..full.clone() }).unwrap().report;
            assert!(b.memory.is_some(), "{device:?} {truncate:?}");
            for (x, y) in a.curve.iter().zip(&b.curve) {
                assert!((x.train - y.train).abs() <= 1e-5 * x.train.abs(), "{device:?} {truncate:?}: {x:?} {y:?}");
            }
        }
    }
}
