//! The f64 CPU reference against JAX: every fixture in tests/fixtures/ (written by
//! scripts/make_fixtures.py with `jax.lax.scan` + `jax.value_and_grad` in float64, an
//! implementation independent of this crate) must agree to 1e-9 relative, tensor by tensor;
//! the GPU (f32, both schedules) to 1e-4.

mod common;

use std::path::{Path, PathBuf};

use bptt::cpu::reference;
use bptt::gpu::{GpuBptt, Schedule};
use bptt::io::{load_grads, load_problem};
use bptt::model::rel_err;

const TOLERANCE: f64 = 1e-9;

/// The input files `<case>.safetensors` (each with a `<case>.expected.safetensors` beside it).
fn cases() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.ends_with(".safetensors") && !name.ends_with(".expected.safetensors")
        })
        .collect();
    v.sort();
    v
}

fn expected_path(case: &Path) -> PathBuf {
    let stem = case.file_stem().unwrap().to_string_lossy();
    case.with_file_name(format!("{stem}.expected.safetensors"))
}

#[test]
fn the_reference_matches_jax_on_every_fixture() {
    let cases = cases();
    // identity/tanh × mse/xent, B>1, h0, biases, exploding, relu: the script writes eight.
    assert!(cases.len() >= 8, "expected the 8 fixtures, found {cases:?}");
    let mut failures = Vec::new();
    for case in &cases {
        let name = case.file_stem().unwrap().to_string_lossy().into_owned();
        let p = load_problem(case, None, None).unwrap();
        let want = load_grads(&expected_path(case)).unwrap();
        assert_eq!(want.shape, p.shape, "{name}: expected results' shape");
        assert_eq!(
            want.grads.grad_b_h.is_some(),
            p.has_bias(),
            "{name}: bias gradients present iff the problem has biases"
        );
        let got = reference::bptt(&p);

        let mut pairs: Vec<(&str, &[f64], &[f64])> = got
            .tensors()
            .into_iter()
            .zip(want.grads.tensors())
            .map(|((n, g), (m, w))| {
                assert_eq!(n, m, "{name}: tensors in the same order");
                (n, g, w)
            })
            .collect();
        pairs.push(("h", &got.h, &want.grads.h));
        pairs.push(("o", &got.o, &want.grads.o));

        let mut worst = (0.0f64, "");
        for (tensor, g, w) in pairs {
            assert_eq!(g.len(), w.len(), "{name}: {tensor} length");
            let e = rel_err(g, w);
            // Written so that a NaN fails too.
            if e.is_nan() || e > TOLERANCE {
                failures.push(format!("{name}: {tensor} rel err {e:.3e} > {TOLERANCE:e}"));
            }
            if e > worst.0 {
                worst = (e, tensor);
            }
        }
        println!("{name:24} {}  max rel err {:.2e} ({})  loss {:.6}", p.shape, worst.0, worst.1, got.loss);
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn fixtures_carry_their_loss_and_activation_in_metadata() {
    // `bptt --load tests/fixtures/<case>.safetensors` must need no flags: the file says how
    // it is scored, and the expected results were computed for exactly that.
    for case in cases() {
        let name = case.file_stem().unwrap().to_string_lossy().into_owned();
        let p = load_problem(&case, None, None).unwrap();
        let meta = load_grads(&expected_path(&case)).unwrap().metadata;
        assert_eq!(meta["loss"], p.loss_fn().name(), "{name}");
        assert_eq!(meta["activation"], p.activation.name(), "{name}");
        assert!(name.contains(p.activation.name()), "{name}: named for its activation");
        assert!(name.contains(p.loss_fn().name()), "{name}: named for its loss");
    }
}

#[test]
fn the_gpu_matches_jax_on_every_fixture() {
    let ctx = common::gpu();
    let mut worst_all: f64 = 0.0;
    for case in cases() {
        let name = case.file_stem().unwrap().to_string_lossy().into_owned();
        let p = load_problem(&case, None, None).unwrap();
        let want = load_grads(&expected_path(&case)).unwrap().grads;
        for schedule in [Schedule::Fused, Schedule::Stepwise] {
            let mut gpu = GpuBptt::new(&ctx, p.shape, schedule).unwrap();
            let (got, _) = gpu.run(&ctx, &p, true).unwrap();
            let worst = common::assert_close(&format!("{name} {schedule:?}"), &got, &want, 1e-4);
            assert!(rel_err(&got.h, &want.h) <= 1e-4 && rel_err(&got.o, &want.o) <= 1e-4, "{name}: states");
            println!("{name:24} {schedule:?}: max rel err vs JAX {worst:.2e}");
            worst_all = worst_all.max(worst);
        }
    }
    println!("largest GPU error against JAX: {worst_all:.2e}");
}
