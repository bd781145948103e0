//! Times the fast f32 CPU path against the f64 reference on one seeded problem, and reports the
//! relative error of every result tensor. Timing only: no pass/fail.
//!
//!     cargo run --release --example time_cpu -- [--runs N] [--ref-runs N] [--steps T]
//!         [--batch B] [--input d] [--hidden h] [--output q] [--tanh] [--xent] [--bias]
//!         [--seed S] [--fast-only] [--save-problem FILE] [--isa avx512|avx2|portable]
//!
//! `--save-problem FILE` writes the problem's inputs (w_hx w_hh w_qh x y h0) and the fast path's
//! results (loss grad_w_hx grad_w_hh grad_w_qh grad_h0) as f32 safetensors, for
//! scripts/jax_cpu_baseline.py to time the same problem and compare its gradients.
//!
//! `--isa` runs the fast path on a narrower instruction set than the CPU's widest
//! (`fast::bptt_with_isa`).
//!
//! Defaults: T=256 B=1 d=64 h=1024 q=64, identity, mse, seed 0, 21 fast runs, 3 reference runs.

use std::time::Instant;

use bptt::cpu::{fast, reference};
use bptt::model::rel_err;
use bptt::{Activation, BpttResult, LossFn, Problem, ProblemSpec, Shape, Targets, random_problem};
use safetensors::{Dtype, tensor::TensorView};

fn median_ms(mut f: impl FnMut(), runs: usize) -> f64 {
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |name: &str, default: usize| -> usize {
        args.iter().position(|a| a == name).map_or(default, |i| args[i + 1].parse().expect("a number"))
    };
    let flag = |name: &str| args.iter().any(|a| a == name);
    let shape = Shape::new(
        num("--steps", 256),
        num("--batch", 1),
        num("--input", 64),
        num("--hidden", 1024),
        num("--output", 64),
    )
    .expect("valid shape");
    let mut spec = ProblemSpec::new(shape);
    spec.seed = num("--seed", 0) as u64;
    spec.bias = flag("--bias");
    if flag("--tanh") {
        spec.activation = Activation::Tanh;
    }
    if flag("--xent") {
        spec.loss = LossFn::Xent;
    }
    let p = random_problem(&spec).expect("valid problem");
    let runs = num("--runs", 21);

    let isa = match args.iter().position(|a| a == "--isa").map(|i| args[i + 1].as_str()) {
        None => fast::Isa::detect(),
        Some(name) => {
            *fast::Isa::available().iter().find(|i| i.name() == name).expect("an instruction set this CPU has")
        }
    };
    // One untimed call each, so page faults and thread-pool start-up are not in the numbers.
    let got = fast::bptt_with_isa(&p, isa);
    let fast_ms = median_ms(
        || {
            std::hint::black_box(fast::bptt_with_isa(&p, isa));
        },
        runs,
    );
    println!(
        "{shape} {} {}: fast f32 ({}) median {fast_ms:8.2} ms over {runs} runs",
        spec.activation.name(),
        spec.loss.name(),
        isa.name()
    );
    if let Some(i) = args.iter().position(|a| a == "--save-problem") {
        save_problem(&args[i + 1], &p, &got);
    }
    if flag("--fast-only") {
        return;
    }
    let ref_runs = num("--ref-runs", 3);
    let want = reference::bptt(&p);
    let ref_ms = median_ms(
        || {
            std::hint::black_box(reference::bptt(&p));
        },
        ref_runs,
    );
    println!("{shape}: reference f64 median {ref_ms:8.2} ms over {ref_runs} runs");
    println!("speed-up {:.1}×", ref_ms / fast_ms);
    for ((name, a), (_, b)) in got.tensors().into_iter().zip(want.tensors()) {
        println!("  rel_err {name:12} {:.2e}", rel_err(a, b));
    }
    println!("  rel_err {:12} {:.2e}", "h", rel_err(&got.h, &want.h));
    println!("  rel_err {:12} {:.2e}", "o", rel_err(&got.o, &want.o));
}

/// Inputs and the fast path's results as f32 safetensors (mse problems only: JAX's side has y).
fn save_problem(path: &str, p: &Problem, g: &BpttResult) {
    let Targets::Mse(y) = &p.targets else {
        panic!("--save-problem needs an mse problem");
    };
    let s = p.shape;
    let (nt, nb, d, nh, q) = (s.steps, s.batch, s.input, s.hidden, s.output);
    let w = &p.params;
    let tensors: Vec<(&str, &[f64], Vec<usize>)> = vec![
        ("w_hx", &w.w_hx, vec![nh, d]),
        ("w_hh", &w.w_hh, vec![nh, nh]),
        ("w_qh", &w.w_qh, vec![q, nh]),
        ("x", &p.x, vec![nt, nb, d]),
        ("y", y, vec![nt, nb, q]),
        ("h0", &p.h0, vec![nb, nh]),
        ("loss", std::slice::from_ref(&g.loss), vec![]),
        ("grad_w_hx", &g.grad_w_hx, vec![nh, d]),
        ("grad_w_hh", &g.grad_w_hh, vec![nh, nh]),
        ("grad_w_qh", &g.grad_w_qh, vec![q, nh]),
        ("grad_h0", &g.grad_h0, vec![nb, nh]),
    ];
    let bytes: Vec<Vec<u8>> =
        tensors.iter().map(|(_, v, _)| v.iter().flat_map(|&x| (x as f32).to_le_bytes()).collect()).collect();
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, _, shape), b)| (*name, TensorView::new(Dtype::F32, shape.clone(), b).unwrap()));
    safetensors::serialize_to_file(views, None, std::path::Path::new(path)).unwrap();
    println!("saved the problem and the fast path's results to {path}");
}
