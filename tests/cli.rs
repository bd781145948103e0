//! The binary: exit codes, one-line errors, the report and its JSON.

mod common;

use std::process::Command;

fn bptt(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_bptt")).args(args).output().expect("run bptt");
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
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.contains("XDG_RUNTIME_DIR")).collect();
        assert_eq!(lines.len(), 1, "{args:?}: {stderr}");
        assert!(lines[0].starts_with("error:"), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}");
    }
}

#[test]
fn cpu_ref_report_and_json() {
    let (code, stdout, stderr) =
        bptt(&["--compute", "cpu-ref", "--hidden", "8", "--steps", "5", "--input", "3", "--output", "2"]);
    assert_eq!(code, 0, "{stderr}");
    for want in ["T=5 B=1 d=3 h=8 q=2", "spectral radius", "loss", "‖∂L/∂h_t‖", "cpu-ref", "PASS"] {
        assert!(stdout.contains(want), "missing {want:?} in\n{stdout}");
    }
    let (code, stdout, _) =
        bptt(&["--compute", "cpu-ref", "--hidden", "8", "--steps", "5", "--input", "3", "--output", "2", "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("--json prints one JSON object");
    assert_eq!(v["shape"]["hidden"], 8);
    assert_eq!(v["grad_h_norm"].as_array().unwrap().len(), 5);
    assert!(v["loss"].as_f64().unwrap() > 0.0);
    assert_eq!(v["pass"], true);
}

#[test]
fn gpu_check_passes_and_json_has_the_gpu_fields() {
    let (code, stdout, stderr) = bptt(&["--hidden", "16", "--steps", "4", "--batch", "2", "--repeat", "1", "--json"]);
    assert_eq!(code, 0, "{stderr}\n{stdout}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["pass"], true);
    assert!(v["adapter"]["name"].as_str().is_some_and(|s| !s.is_empty()));
    for t in ["loss", "grad_w_hx", "grad_w_hh", "grad_w_qh", "grad_h0", "grad_h_norm"] {
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
    let (code, stdout, _) = bptt(&["--hidden", "16", "--steps", "4", "--repeat", "1", "--tolerance", "1e-30"]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("FAIL"));
}

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}.safetensors", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn load_and_save_reproduce_jax_through_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.safetensors");
    let out_s = out.to_str().unwrap();
    for case in ["tanh_xent_bias_h0", "exploding_identity_mse"] {
        let (code, stdout, stderr) =
            bptt(&["--load", &fixture(case), "--save", out_s, "--save-states", "--compute", "gpu", "--repeat", "1"]);
        assert_eq!(code, 0, "{case}: {stderr}{stdout}");
        let got = bptt::io::load_grads(&out).unwrap();
        let want = bptt::io::load_grads(std::path::Path::new(&fixture(&format!("{case}.expected")))).unwrap();
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
        (vec!["--load", garbage.to_str().unwrap()], "garbage.safetensors"),
        (vec!["--load", missing.to_str().unwrap()], "missing.safetensors"),
        (vec!["--load", &tanh_file, "--activation", "identity"], "activation"),
        (vec!["--load", &tanh_file, "--loss", "xent"], "contradicts"),
        (vec!["--load", &tanh_file, "--hidden", "8"], "--hidden"),
    ] {
        let (code, stdout, stderr) = bptt(&args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stdout.is_empty());
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.contains("XDG_RUNTIME_DIR")).collect();
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
    let (code, _, stderr) =
        bptt(&["--load", &fixture("identity_mse"), "--save", nowhere.to_str().unwrap(), "--compute", "cpu-ref"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("out.safetensors"), "{stderr}");
    assert!(!dir.path().join("no").exists());
}

#[test]
fn sweep_writes_the_table_and_a_plot_of_the_same_numbers() {
    use bptt::plot::series_color;
    let dir = tempfile::tempdir().unwrap();
    let svg_path = dir.path().join("grads.svg");
    let args = ["--hidden", "24", "--steps", "40", "--input", "4", "--output", "4", "--sweep-radius", "0.8,1.0,1.1"];
    let (code, stdout, stderr) = bptt(&[&args[..], &["--plot", svg_path.to_str().unwrap(), "--json"]].concat());
    assert_eq!(code, 0, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let rows = v["sweep"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    // Decay, about flat, growth: the fitted factor of the reach profile tracks the radius.
    let factors: Vec<f64> = rows.iter().map(|r| r["reach_growth_factor"].as_f64().unwrap()).collect();
    for (f, r) in factors.iter().zip([0.8, 1.0, 1.1]) {
        assert!((f - r).abs() < 0.05 * r, "factor {f} for radius {r}");
    }
    // The plot's lines are the table's numbers: for each radius, in its own colour, ‖∂L/∂h_t‖
    // solid with every point at pixel y linear in log10 of its value on one shared scale, and
    // the reach profile dashed (its geometry is checked in tests/plot.rs).
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    let mut pairs = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let values: Vec<f64> = row["grad_h_norm"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
        let lines = common::svg::data_polylines(&svg, series_color(i));
        assert_eq!(lines.len(), 1, "ρ={}", row["radius"]);
        assert_eq!(lines[0].len(), values.len());
        for (&(_, py), v) in lines[0].iter().zip(&values) {
            pairs.push((v.log10(), py));
        }
        assert!(common::svg::dashes(&svg, series_color(i)).len() > 10, "reach ρ={}", row["radius"]);
    }
    let (px_per_decade, worst) = common::svg::line_fit(&pairs);
    assert!(px_per_decade < 0.0 && worst <= 1.0, "{px_per_decade} px/decade, worst {worst} px");
    // And the text report has the table.
    let (code, stdout, _) = bptt(&args);
    assert_eq!(code, 0);
    assert!(stdout.contains("reach factor") && stdout.contains("×1.0"), "{stdout}");
}

#[test]
fn loss_at_last_makes_grad_h_norm_the_reach_profile() {
    let (code, stdout, stderr) = bptt(&[
        "--hidden",
        "16",
        "--steps",
        "12",
        "--loss-at",
        "last",
        "--repeat",
        "1",
        "--json",
        "--activation",
        "tanh",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["grad_h_norm"], v["grad_h_norm_from_last"]);
    assert!(v["rel_err"]["grad_h_norm_from_last"].as_f64().unwrap() < 1e-4);
}

#[test]
fn variants_run_checked_from_the_command_line() {
    for extra in [
        &["--truncate", "3"][..],
        &["--truncate", "random:0.25", "--truncate-seed", "7"],
        &["--segments", "3"],
        &["--clip", "0.5"],
    ] {
        let args =
            [&["--hidden", "20", "--steps", "9", "--batch", "2", "--repeat", "1", "--json", "--bias"][..], extra]
                .concat();
        let (code, stdout, stderr) = bptt(&args);
        assert_eq!(code, 0, "{extra:?}: {stderr}");
        let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(v["pass"], true, "{extra:?}");
        assert_eq!(v["variant"].as_array().unwrap().len(), 1, "{extra:?}");
        assert!(v["rel_err"]["grad_w_hh"].as_f64().unwrap() < 1e-4);
        if extra[0] == "--clip" {
            let c = &v["clip"];
            assert!(c["norm_before"].as_f64().unwrap() > 0.5);
            assert!((c["norm_after"].as_f64().unwrap() - 0.5).abs() < 1e-5);
        }
    }
    // Combinations that make no sense are refused in one line.
    for bad in [
        &["--truncate", "2", "--segments", "2"][..],
        &["--truncate", "0"],
        &["--segments", "20"],
        &["--compute", "cpu", "--clip", "1"],
    ] {
        let args = [&["--hidden", "8", "--steps", "9"][..], bad].concat();
        let (code, _, stderr) = bptt(&args);
        assert_eq!(code, 2, "{bad:?}: {stderr}");
        assert_eq!(stderr.lines().filter(|l| !l.contains("XDG_RUNTIME_DIR")).count(), 1, "{bad:?}: {stderr}");
    }
}
