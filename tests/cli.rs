//! The binary: exit codes, one-line errors, the report and its JSON.

use std::process::Command;

fn bptt(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_bptt"))
        .args(args)
        .output()
        .expect("run bptt");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn bad_arguments_exit_2_with_one_line() {
    for args in [
        &["--hidden", "0"][..],
        &["--steps", "-1"],
        &["--activation", "foo"],
        &["--loss", "l1"],
        &["--spectral-radius", "nan"],
        &["--tolerance", "0"],
        &["--no-such-flag"],
    ] {
        let (code, stdout, stderr) = bptt(args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{args:?}");
        let lines: Vec<&str> = stderr
            .lines()
            .filter(|l| !l.contains("XDG_RUNTIME_DIR"))
            .collect();
        assert_eq!(lines.len(), 1, "{args:?}: {stderr}");
        assert!(lines[0].starts_with("error:"), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}");
    }
}

#[test]
fn cpu_ref_report_and_json() {
    let (code, stdout, stderr) = bptt(&[
        "--compute",
        "cpu-ref",
        "--hidden",
        "8",
        "--steps",
        "5",
        "--input",
        "3",
        "--output",
        "2",
    ]);
    assert_eq!(code, 0, "{stderr}");
    for want in [
        "T=5 B=1 d=3 h=8 q=2",
        "spectral radius",
        "loss",
        "‖∂L/∂h_t‖",
        "cpu-ref",
        "PASS",
    ] {
        assert!(stdout.contains(want), "missing {want:?} in\n{stdout}");
    }
    let (code, stdout, _) = bptt(&[
        "--compute",
        "cpu-ref",
        "--hidden",
        "8",
        "--steps",
        "5",
        "--input",
        "3",
        "--output",
        "2",
        "--json",
    ]);
    assert_eq!(code, 0);
    let v: serde_json::Value =
        serde_json::from_str(&stdout).expect("--json prints one JSON object");
    assert_eq!(v["shape"]["hidden"], 8);
    assert_eq!(v["grad_h_norm"].as_array().unwrap().len(), 5);
    assert!(v["loss"].as_f64().unwrap() > 0.0);
    assert_eq!(v["pass"], true);
}

#[test]
fn gpu_check_passes_and_json_has_the_gpu_fields() {
    let (code, stdout, stderr) = bptt(&[
        "--hidden", "16", "--steps", "4", "--batch", "2", "--repeat", "1", "--json",
    ]);
    assert_eq!(code, 0, "{stderr}\n{stdout}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["pass"], true);
    assert!(v["adapter"]["name"].as_str().is_some_and(|s| !s.is_empty()));
    for t in [
        "loss",
        "grad_w_hx",
        "grad_w_hh",
        "grad_w_qh",
        "grad_h0",
        "grad_h_norm",
    ] {
        assert!(v["rel_err"][t].as_f64().unwrap() < 1e-4, "{t}");
    }
    for t in [
        "gpu_setup",
        "gpu_upload",
        "gpu_forward",
        "gpu_backward",
        "gpu_readback",
        "gpu_total",
        "cpu_total",
        "cpu_ref_total",
    ] {
        assert!(v["timings_ms"][t].as_f64().unwrap() >= 0.0, "{t}");
    }
    assert!(v["dispatches"].as_u64().unwrap() > 0);
}

#[test]
fn a_failed_check_exits_1() {
    // A tolerance far below f32 rounding cannot pass.
    let (code, stdout, _) = bptt(&[
        "--hidden",
        "16",
        "--steps",
        "4",
        "--repeat",
        "1",
        "--tolerance",
        "1e-30",
    ]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("FAIL"));
}

fn fixture(name: &str) -> String {
    format!(
        "{}/tests/fixtures/{name}.safetensors",
        env!("CARGO_MANIFEST_DIR")
    )
}

#[test]
fn load_and_save_reproduce_jax_through_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.safetensors");
    let out_s = out.to_str().unwrap();
    for case in ["tanh_xent_bias_h0", "exploding_identity_mse"] {
        let (code, stdout, stderr) = bptt(&[
            "--load",
            &fixture(case),
            "--save",
            out_s,
            "--save-states",
            "--compute",
            "gpu",
            "--repeat",
            "1",
        ]);
        assert_eq!(code, 0, "{case}: {stderr}{stdout}");
        let got = bptt::io::load_grads(&out).unwrap();
        let want =
            bptt::io::load_grads(std::path::Path::new(&fixture(&format!("{case}.expected"))))
                .unwrap();
        for ((name, g), (_, w)) in got.grads.tensors().into_iter().zip(want.grads.tensors()) {
            let e = bptt::model::rel_err(g, w);
            assert!(e <= 1e-4, "{case}: {name} {e:e}");
        }
        assert!(bptt::model::rel_err(&got.grads.h, &want.grads.h) <= 1e-4);
        assert!(got.metadata["command_line"].contains("--load"));
        assert!(!got.metadata["adapter"].is_empty());
    }
}

#[test]
fn load_errors_are_one_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.safetensors");
    std::fs::write(&garbage, b"not a safetensors file").unwrap();
    let missing = dir.path().join("missing.safetensors");
    let tanh_file = fixture("tanh_mse_batch");
    for (args, needle) in [
        (
            vec!["--load", garbage.to_str().unwrap()],
            "garbage.safetensors",
        ),
        (
            vec!["--load", missing.to_str().unwrap()],
            "missing.safetensors",
        ),
        (
            vec!["--load", &tanh_file, "--activation", "identity"],
            "activation",
        ),
        (vec!["--load", &tanh_file, "--loss", "xent"], "contradicts"),
        (vec!["--load", &tanh_file, "--hidden", "8"], "--hidden"),
    ] {
        let (code, stdout, stderr) = bptt(&args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stdout.is_empty());
        let lines: Vec<&str> = stderr
            .lines()
            .filter(|l| !l.contains("XDG_RUNTIME_DIR"))
            .collect();
        assert_eq!(lines.len(), 1, "{args:?}: {stderr}");
        assert!(lines[0].contains(needle), "{args:?}: {stderr}");
    }
}

#[test]
fn a_failed_check_leaves_an_existing_output_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.safetensors");
    std::fs::write(&out, b"previous result").unwrap();
    let (code, _, _) = bptt(&[
        "--load",
        &fixture("identity_mse"),
        "--save",
        out.to_str().unwrap(),
        "--repeat",
        "1",
        "--tolerance",
        "1e-30",
    ]);
    assert_eq!(code, 1);
    assert_eq!(std::fs::read(&out).unwrap(), b"previous result");
    // An unwritable destination (a missing folder) is a run-time failure, and writes nothing.
    let nowhere = dir.path().join("no/such/dir/out.safetensors");
    let (code, _, stderr) = bptt(&[
        "--load",
        &fixture("identity_mse"),
        "--save",
        nowhere.to_str().unwrap(),
        "--compute",
        "cpu-ref",
    ]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("out.safetensors"), "{stderr}");
    assert!(!dir.path().join("no").exists());
}
