//! `bptt train` as a library: the tasks' generators have their documented statistics, a
//! training iteration on the GPU equals the CPU path's, an IRNN learns the adding problem, and
//! a run is reproducible from its seed.

mod common;

use bptt::model::{Targets, rel_err};
use bptt::train::cpu::CpuEngine;
use bptt::train::gpu::GpuEngine;
use bptt::train::setup::Setup;
use bptt::train::tasks::{self, COPY_INPUT, COPY_OUTPUT, adding_batch, copy_batch, rng};
use bptt::train::text::Corpus;
use bptt::train::weights::Weights;
use bptt::train::{Engine, H0};
use bptt::variant::truncation::draw_carry_scales;
use bptt::{Activation, InitRecurrent, OptimKind, Partition, Task, TrainConfig, TrainDevice, Truncation};

#[test]
fn adding_batches_have_two_markers_one_per_half_and_the_sum_as_target() {
    let (steps, batch) = (11, 2000);
    let b = adding_batch(&mut rng(3, 0), steps, batch);
    let Targets::Mse(y) = &b.targets else { panic!("adding is scored with mse") };
    let half = steps / 2;
    let (mut first_positions, mut second_positions, mut baseline, mut values) = (0.0, 0.0, 0.0, Vec::new());
    for s in 0..batch {
        let at = |t: usize, k: usize| b.x[(t * batch + s) * 2 + k];
        let marked: Vec<usize> = (0..steps).filter(|&t| at(t, 1) != 0.0).collect();
        assert_eq!(marked.len(), 2, "sequence {s}: exactly two markers");
        assert!(marked[0] < half && marked[1] >= half, "sequence {s}: markers at {marked:?}, halves split at {half}");
        assert!(marked.iter().all(|&t| at(t, 1) == 1.0));
        first_positions += marked[0] as f64;
        second_positions += marked[1] as f64;
        let target = y[(steps - 1) * batch + s];
        assert_eq!(target, at(marked[0], 0) + at(marked[1], 0), "sequence {s}: the target is the marked sum");
        // Only the last step carries a target.
        assert!((0..steps - 1).all(|t| y[t * batch + s] == 0.0));
        baseline += (target - 1.0) * (target - 1.0);
        values.extend((0..steps).map(|t| at(t, 0)));
    }
    assert!(values.iter().all(|v| (0.0..1.0).contains(v)));
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    assert!((mean - 0.5).abs() < 0.01, "values ~ U(0,1): mean {mean}");
    // Uniform positions: the first in 0..5 (mean 2), the second in 5..11 (mean 7.5).
    assert!((first_positions / batch as f64 - 2.0).abs() < 0.1, "first marker mean {}", first_positions / batch as f64);
    assert!((second_positions / batch as f64 - 7.5).abs() < 0.1);
    // Predicting 1 always scores Var(U₁ + U₂) = 1/6.
    let mse = baseline / batch as f64;
    assert!((mse - tasks::ADDING_BASELINE).abs() < 0.01, "baseline mse {mse}, expected 1/6");
}

#[test]
fn copy_batches_show_ten_symbols_then_ask_for_them_after_the_delimiter() {
    let (steps, batch) = (25, 500);
    let b = copy_batch(&mut rng(4, 0), steps, batch);
    let Targets::Xent(labels) = &b.targets else { panic!("copy is scored with cross-entropy") };
    let mut counts = [0usize; 9];
    for s in 0..batch {
        let symbol = |t: usize| -> usize {
            let row = &b.x[(t * batch + s) * COPY_INPUT..][..COPY_INPUT];
            assert_eq!(row.iter().sum::<f64>(), 1.0, "one-hot input");
            row.iter().position(|&v| v == 1.0).unwrap()
        };
        for k in 0..10 {
            let shown = symbol(k);
            assert!((1..=8).contains(&shown));
            assert_eq!(labels[(steps - 10 + k) * batch + s] as usize, shown, "recalled in order");
            counts[shown] += 1;
        }
        for t in 10..steps {
            assert_eq!(symbol(t), if t == steps - 11 { 9 } else { 0 }, "blanks and the delimiter at {t}");
        }
        assert!((0..steps - 10).all(|t| labels[t * batch + s] == 0), "blank targets before the recall");
    }
    // Uniform over the alphabet: 5000 draws, 625 expected each.
    assert!(counts[1..].iter().all(|&c| (525..725).contains(&c)), "{counts:?}");
    assert!((tasks::copy_baseline(30) - 10.0 * 8f64.ln() / 30.0).abs() < 1e-15);
    // A perfect model scores 1, a blank-only one 0.
    let mut o = vec![0.0; steps * batch * COPY_OUTPUT];
    (0..steps * batch).for_each(|row| o[row * COPY_OUTPUT] = 1.0);
    assert_eq!(tasks::copy_accuracy(&o, labels, steps, batch), 0.0);
    for (row, &l) in labels.iter().enumerate() {
        o[row * COPY_OUTPUT..][..COPY_OUTPUT].fill(0.0);
        o[row * COPY_OUTPUT + l as usize] = 1.0;
    }
    assert_eq!(tasks::copy_accuracy(&o, labels, steps, batch), 1.0);
}

#[test]
fn text_batches_predict_the_next_character_and_sequential_ones_continue() {
    let text = "the quick brown fox jumps over the lazy dog. ".repeat(20);
    let c = Corpus::from_text(&text, 8).unwrap();
    assert_eq!(
        c.vocab.iter().collect::<String>(),
        " .abcdefghijklmnopqrstuvwxyz".chars().filter(|ch| text.contains(*ch)).collect::<String>()
    );
    assert_eq!(c.train.len() + c.held_out.len(), text.chars().count());
    assert_eq!(c.held_out.len(), text.chars().count() / 10);
    let decode = |x: &[f64], labels: &[u32], batch: usize, b: usize, steps: usize| -> (String, String) {
        let v = c.vocab_size();
        let input = (0..steps).map(|t| c.vocab[x[(t * batch + b) * v..][..v].iter().position(|&e| e == 1.0).unwrap()]);
        let next = (0..steps).map(|t| c.vocab[labels[t * batch + b] as usize]);
        (input.collect(), next.collect())
    };
    let b = c.random_batch(&mut rng(1, 0), 8, 4);
    let Targets::Xent(labels) = &b.targets else { panic!() };
    for s in 0..4 {
        let (input, next) = decode(&b.x, labels, 4, s, 8);
        assert!(text.contains(&format!("{input}{}", next.chars().last().unwrap())), "{input:?} is a slice of the text");
        assert_eq!(input[1..], next[..7], "labels are the inputs shifted by one");
    }
    // Sequential: stream b of batch i + 1 starts where it ended in batch i; h is carried.
    let (b0, restart0) = c.sequential_batch(0, 8, 3).unwrap();
    let (b1, restart1) = c.sequential_batch(1, 8, 3).unwrap();
    assert!(restart0 && !restart1);
    let (Targets::Xent(l0), Targets::Xent(l1)) = (&b0.targets, &b1.targets) else { panic!() };
    for s in 0..3 {
        let (_, next0) = decode(&b0.x, l0, 3, s, 8);
        let (input1, _) = decode(&b1.x, l1, 3, s, 8);
        assert_eq!(next0.chars().last(), input1.chars().next(), "stream {s} continues");
    }
    // The memoryless baseline is the unigram entropy, below ln V.
    assert!(c.unigram_entropy() > 0.0 && c.unigram_entropy() < (c.vocab_size() as f64).ln());
}

#[test]
fn text_files_that_are_empty_binary_or_short_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes, says) in [
        ("empty.txt", &b""[..], "empty"),
        ("binary.bin", &b"ab\0cd"[..], "binary"),
        ("latin1.txt", &b"caf\xe9 au lait"[..], "UTF-8"),
        ("short.txt", &b"abc"[..], "too short"),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let e = Corpus::load(&path, 8).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains(says), "{name}: {e}");
    }
    let e = Corpus::load(&dir.path().join("missing.txt"), 8).unwrap_err();
    assert!(e.to_string().contains("cannot read"), "{e}");
}

#[test]
fn initialisations_have_their_documented_form() {
    use bptt::train::weights::InitRecurrent;
    let h = 40;
    let eye = Weights::init(2, h, 1, InitRecurrent::Identity, 0.5, 0);
    assert!((0..h * h).all(|k| eye.w_hh[k] == if k / h == k % h { 0.5 } else { 0.0 }));
    let q = Weights::init(2, h, 1, InitRecurrent::Orthogonal, 1.0, 0);
    // QQᵀ = I.
    for i in 0..h {
        for j in 0..h {
            let dot: f64 = (0..h).map(|k| q.w_hh[i * h + k] as f64 * q.w_hh[j * h + k] as f64).sum();
            assert!((dot - if i == j { 1.0 } else { 0.0 }).abs() < 1e-5, "({i},{j}): {dot}");
        }
    }
    let n = Weights::init(2, h, 1, InitRecurrent::Normal, 1.0, 0);
    let var = n.w_hh.iter().map(|&w| (w as f64).powi(2)).sum::<f64>() / (h * h) as f64;
    assert!((var * h as f64 - 1.0).abs() < 0.1, "N(0, 1/h): h·var = {}", var * h as f64);
    assert!(n.b_h.iter().chain(&n.b_q).all(|&b| b == 0.0));
}

/// A few iterations on the GPU and on the CPU path from the same weights and minibatches: the
/// weights (and the losses) agree to f32 rounding.
fn gpu_equals_cpu(config: &TrainConfig, iters: usize) {
    let s = Setup::from_config(config).unwrap();
    let mut cpu = CpuEngine::new(s.step, s.weights.clone()).unwrap();
    let mut gpu = GpuEngine::new(common::gpu(), s.step, &s.weights, iters).unwrap();
    let mut r = s.batch_rng();
    let mut cuts = match s.step.truncate {
        Some(Truncation::Random { p, seed }) => Some((p, rng(seed, s.seed))),
        _ => None,
    };
    for i in 0..iters {
        let (batch, carried) = s.batch(i, &mut r).unwrap();
        let h0 = if carried { H0::Carried } else { H0::Zero };
        let carry = cuts.as_mut().map(|(p, g)| draw_carry_scales(g, s.step.shape.steps, *p));
        if let Some(c) = &carry {
            assert!(c.contains(&0.0) && c.iter().any(|&x| x > 1.0), "{config:?}: cuts {c:?} cut nothing or all");
        }
        cpu.step(&batch, h0, carry.as_deref()).unwrap();
        gpu.step(&batch, h0, carry.as_deref()).unwrap();
    }
    let (sc, sg) = (cpu.take_stats().unwrap(), gpu.take_stats().unwrap());
    assert_eq!(sc.len(), iters);
    let (lc, lg): (Vec<f64>, Vec<f64>) = (sc.iter().map(|s| s.loss).collect(), sg.iter().map(|s| s.loss).collect());
    assert!(rel_err(&lg, &lc) < 1e-5, "{config:?}: losses {lg:?} vs {lc:?}");
    // ‖g‖ before clipping, from the GPU's clipping stage and from the CPU's gradients.
    let (nc, ng): (Vec<f64>, Vec<f64>) =
        (sc.iter().map(|s| s.grad_norm).collect(), sg.iter().map(|s| s.grad_norm).collect());
    assert!(nc.iter().all(|&n| n > 0.0 && n.is_finite()), "{config:?}: norms {nc:?}");
    assert!(rel_err(&ng, &nc) < 1e-4, "{config:?}: gradient norms {ng:?} vs {nc:?}");
    let (wc, wg) = (cpu.weights().unwrap(), gpu.weights().unwrap());
    let moved = wc.w_hh.iter().zip(&s.weights.w_hh).any(|(a, b)| a != b);
    assert!(moved, "{config:?}: the update changed nothing");
    for ((name, c), (_, g)) in wc.tensors().into_iter().zip(wg.tensors()) {
        let f64s = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<f64>>();
        let e = rel_err(&f64s(g), &f64s(c));
        assert!(e < 1e-5, "{config:?}: {name} differs by {e:.3e}");
    }
    // The held-out evaluation agrees too.
    let (ec, oc) = cpu.evaluate(&s.held_out[0]).unwrap();
    let (eg, og) = gpu.evaluate(&s.held_out[0]).unwrap();
    assert!((ec - eg).abs() <= 1e-5 * ec.abs(), "{config:?}: held-out {eg} vs {ec}");
    assert!(rel_err(&og, &oc) < 1e-5);
}

#[test]
fn one_sgd_iteration_on_the_gpu_equals_the_cpu_path() {
    gpu_equals_cpu(
        &TrainConfig {
            steps: Some(12),
            hidden: 33,
            batch: 3,
            optim: OptimKind::Sgd,
            lr: Some(0.05),
            eval_size: 3,
            ..TrainConfig::default()
        },
        1,
    );
}

#[test]
fn one_adam_iteration_on_the_gpu_equals_the_cpu_path() {
    gpu_equals_cpu(
        &TrainConfig {
            steps: Some(12),
            hidden: 33,
            batch: 3,
            activation: Some(Activation::Relu),
            eval_size: 3,
            ..TrainConfig::default()
        },
        1,
    );
}

/// A sequence longer than one compute pass holds (4096 dispatches): the iteration is recorded
/// in several passes, as a timed gradient run is (a single pass of ~65000 dispatches crashed
/// lavapipe), and still equals the CPU path.
#[test]
fn a_sequence_longer_than_one_pass_trains_alike() {
    gpu_equals_cpu(&TrainConfig { steps: Some(5000), hidden: 2, batch: 1, eval_size: 1, ..TrainConfig::default() }, 1);
}

/// Several iterations carry the optimisers' state (momentum, Adam's moments and bias
/// correction), with clipping and, on the copy task, cross-entropy at every step.
#[test]
fn several_iterations_with_clipping_agree_on_both_tasks() {
    gpu_equals_cpu(
        &TrainConfig {
            task: Task::Copy,
            steps: Some(22),
            hidden: 20,
            batch: 2,
            clip: Some(0.5),
            eval_size: 2,
            ..TrainConfig::default()
        },
        4,
    );
    gpu_equals_cpu(
        &TrainConfig {
            steps: Some(9),
            hidden: 16,
            batch: 4,
            optim: OptimKind::Sgd,
            momentum: 0.9,
            clip: Some(0.1),
            eval_size: 4,
            ..TrainConfig::default()
        },
        4,
    );
}

/// The text task with sequential partitioning: h_T of one minibatch is the next one's h0, on
/// the GPU (a copy between buffers) as on the CPU path.
#[test]
fn sequential_text_training_carries_h_alike_on_both_paths() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.txt");
    std::fs::write(&path, "to be or not to be, that is the question. ".repeat(8)).unwrap();
    let text = path.to_str().unwrap();
    gpu_equals_cpu(
        &TrainConfig {
            task: Task::Text,
            text: Some(text.into()),
            partition: Some(Partition::Sequential),
            steps: Some(7),
            hidden: 12,
            batch: 3,
            eval_size: 3,
            ..TrainConfig::default()
        },
        4,
    );
}

/// --truncate K on every task: the fast CPU path's lanes (with a loss at the last step, and
/// at every step) equal the GPU's.
#[test]
fn truncated_training_agrees_between_the_cpu_and_the_gpu_on_every_task() {
    for (task, steps) in [(Task::Adding, 10), (Task::Copy, 23)] {
        gpu_equals_cpu(
            &TrainConfig {
                task,
                steps: Some(steps),
                hidden: 12,
                batch: 2,
                truncate: Some(Truncation::Regular(3)),
                eval_size: 2,
                ..TrainConfig::default()
            },
            3,
        );
    }
}

/// --truncate random:P: fresh cuts every iteration, the same ones on both paths (the GPU's
/// written into its schedule before each submission), on the adding, copy and text tasks.
#[test]
fn randomised_truncation_trains_alike_on_both_paths_on_every_task() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.txt");
    std::fs::write(&path, "to be or not to be, that is the question. ".repeat(8)).unwrap();
    for (task, steps, text) in [(Task::Adding, 12, None), (Task::Copy, 24, None), (Task::Text, 12, Some(path.clone()))]
    {
        gpu_equals_cpu(
            &TrainConfig {
                task,
                text,
                steps: Some(steps),
                hidden: 10,
                batch: 2,
                clip: Some(1.0),
                truncate: Some(Truncation::Random { p: 0.3, seed: 5 }),
                eval_size: 2,
                ..TrainConfig::default()
            },
            4,
        );
    }
}

/// The training curve is a function of the seed: the same seed gives the same numbers, another
/// seed others.
#[test]
fn the_same_seed_gives_the_same_curve() {
    let run = |seed: &str| {
        let a = TrainConfig {
            device: TrainDevice::Cpu,
            steps: Some(8),
            hidden: 16,
            iters: 20,
            log_every: 5,
            eval_every: 10,
            eval_size: 64,
            seed: seed.parse().unwrap(),
            ..TrainConfig::default()
        };
        bptt::train(&a).unwrap().report
    };
    let (a, b, c) = (run("1"), run("1"), run("2"));
    assert_eq!(a.curve, b.curve);
    assert_eq!(a.eval, b.eval);
    assert_eq!(a.curve.len(), 4);
    assert_ne!(a.curve, c.curve);
    // The held-out set does not depend on the seed: the same untrained... different weights
    // still score the same set, so the baselines match.
    assert_eq!(a.baseline, c.baseline);
}

/// The IRNN (relu, identity init; Le et al. 2015) learns the adding problem at small T: the
/// held-out MSE falls far below the baseline 1/6.
#[test]
fn an_irnn_learns_the_adding_problem() {
    let a = TrainConfig {
        device: TrainDevice::Cpu,
        steps: Some(10),
        hidden: 32,
        batch: 32,
        iters: 600,
        lr: Some(0.003),
        activation: Some(Activation::Relu),
        init_recurrent: InitRecurrent::Identity,
        clip: Some(1.0),
        eval_every: 600,
        eval_size: 256,
        ..TrainConfig::default()
    };
    let report = bptt::train(&a).unwrap().report;
    let mse = report.final_eval.loss;
    assert!(mse < 0.05, "held-out MSE {mse} after 600 iterations (baseline 1/6)");
}

/// On the GPU too, a seed fixes the curve: the sums run in a fixed order, so two runs on the
/// same adapter give the same bits.
#[test]
fn the_same_seed_gives_the_same_curve_on_the_gpu() {
    drop(common::gpu()); // fails saying how to get an adapter when there is none
    let a = TrainConfig {
        device: TrainDevice::Gpu,
        steps: Some(6),
        hidden: 16,
        iters: 12,
        log_every: 3,
        eval_every: 6,
        eval_size: 32,
        activation: Some(Activation::Relu),
        init_recurrent: InitRecurrent::Identity,
        ..TrainConfig::default()
    };
    let (one, two) = (bptt::train(&a).unwrap(), bptt::train(&a).unwrap());
    let (r1, w1, r2, w2) = (one.report, one.weights, two.report, two.weights);
    assert_eq!(r1.curve.len(), 4);
    assert_eq!(r1.curve, r2.curve);
    assert_eq!(r1.eval, r2.eval);
    assert_eq!(w1, w2);
}

/// What BPTT did, read at each evaluation: ‖g‖ before clipping (the mean since the last
/// evaluation: with θ far below it, every iteration is clipped; with θ far above, none), the
/// reach of the last step's gradient, the verdict, and spikes.
#[test]
fn evaluations_carry_the_gradient_readings_and_a_verdict() {
    let base = TrainConfig {
        device: TrainDevice::Cpu,
        steps: Some(12),
        hidden: 16,
        iters: 40,
        log_every: 7,
        eval_every: 20,
        eval_size: 32,
        ..TrainConfig::default()
    };
    let tight = bptt::train(&TrainConfig { clip: Some(1e-6), ..base.clone() }).unwrap().report;
    let loose = bptt::train(&TrainConfig { clip: Some(1e6), ..base.clone() }).unwrap().report;
    let none = bptt::train(&base).unwrap().report;
    assert_eq!(tight.eval.len(), 2);
    for e in &tight.eval {
        assert_eq!(e.clipped_fraction, Some(1.0), "{e:?}");
        assert!(e.grad_norm > 1e-6 && e.grad_norm.is_finite());
        // tanh, w_hh ~ N(0, 1/h): the last step's gradient shrinks going back.
        let f = e.reach_factor.unwrap();
        assert!(f > 0.0 && f < 1.0, "{e:?}");
        let r = e.reach_ratio.unwrap();
        assert!(r > 0.0 && r < 1.0, "{e:?}");
    }
    assert!(loose.eval.iter().all(|e| e.clipped_fraction == Some(0.0)));
    assert!(none.eval.iter().all(|e| e.clipped_fraction.is_none()));
    // Unclipped, the first evaluation's mean ‖g‖ is that of the CPU engine's first iterations.
    let s = Setup::from_config(&base).unwrap();
    let mut cpu = CpuEngine::new(s.step, s.weights.clone()).unwrap();
    let mut r = s.batch_rng();
    for i in 0..20 {
        cpu.step(&s.batch(i, &mut r).unwrap().0, H0::Zero, None).unwrap();
    }
    let mean = cpu.take_stats().unwrap().iter().map(|s| s.grad_norm).sum::<f64>() / 20.0;
    assert!((none.eval[0].grad_norm - mean).abs() <= 1e-12 * mean, "{} vs {mean}", none.eval[0].grad_norm);
    // The curve's points carry the window's mean ‖g‖ too: 7, 7, 6 iterations to the first eval.
    assert_eq!(none.curve.iter().map(|c| c.iter).collect::<Vec<_>>(), [7, 14, 21, 28, 35, 40]);
    assert!(none.curve.iter().all(|c| c.grad_norm > 0.0));
    assert!(none.verdict.starts_with("did not learn: held-out mse"), "{}", none.verdict);
    assert!(none.spikes.is_empty(), "{:?}", none.spikes);
}

/// The verdict's three readings and its factor.
#[test]
fn the_verdict_reads_the_held_out_metric_against_the_baseline() {
    use bptt::train::report::verdict;
    // Numbers by the report's rule: four significant digits.
    assert_eq!(verdict("mse", 0.0065, 1.0 / 6.0), "learned: held-out mse 0.006500, 26× below the baseline 0.1667");
    assert_eq!(verdict("mse", 0.05, 1.0 / 6.0), "learned: held-out mse 0.05000, 3.3× below the baseline 0.1667");
    assert_eq!(verdict("xent", 0.476, 0.693), "learned a little: held-out xent 0.4760, 31% below the baseline 0.6930");
    assert_eq!(
        verdict("mse", 0.165, 1.0 / 6.0),
        "did not learn: held-out mse 0.1650 is within 5% of the baseline 0.1667"
    );
    assert_eq!(verdict("mse", 0.2, 1.0 / 6.0), "did not learn: held-out mse 0.2000 is above the baseline 0.1667");
}

/// An iteration whose loss jumps above 100× the running loss is reported as a spike: an IRNN
/// on the adding problem without clipping at a high learning rate explodes early.
#[test]
fn loss_spikes_are_found() {
    let a = TrainConfig {
        device: TrainDevice::Cpu,
        steps: Some(30),
        hidden: 16,
        iters: 30,
        lr: Some(0.05),
        activation: Some(Activation::Relu),
        init_recurrent: InitRecurrent::Identity,
        init_scale: 1.05,
        eval_every: 30,
        eval_size: 32,
        ..TrainConfig::default()
    };
    match bptt::train(&a) {
        Ok(t) => {
            let r = t.report;
            assert!(!r.spikes.is_empty(), "no spike in {:?}", r.curve);
            for s in &r.spikes {
                assert!(s.train > 100.0 * s.running && s.iter >= 2, "{s:?}");
            }
        }
        Err(e) => panic!("expected a finished run with spikes, got: {e}"),
    }
}
