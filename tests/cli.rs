//! The binary: exit codes, one-line errors, the report and its JSON.

mod common;

use std::process::Command;

use common::bptt;

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
    for want in ["T=5 B=1 d=3 h=8 q=2", "spectral radius", "loss", "‖∂L/∂h_t‖", "cpu-ref", "not checked"] {
        assert!(stdout.contains(want), "missing {want:?} in\n{stdout}");
    }
    let (code, stdout, _) =
        bptt(&["--compute", "cpu-ref", "--hidden", "8", "--steps", "5", "--input", "3", "--output", "2", "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("--json prints one JSON object");
    assert_eq!(v["shape"]["hidden"], 8);
    assert_eq!(v["grad_h_norm"].as_array().unwrap().len(), 5);
    assert!(v["loss"].as_f64().unwrap() > 0.0);
    // One path ran: nothing was compared.
    assert!(v["pass"].is_null());
}

/// The fast path's `cpu` line and JSON: its rate always, and with `--cpu-peak` the measured peak
/// and the fraction, consistent with each other; `--cpu-peak` without the fast path is refused.
#[test]
fn the_cpu_line_gives_the_rate_and_with_cpu_peak_the_fraction_of_the_peak() {
    let small = ["--compute", "cpu", "--hidden", "32", "--steps", "8", "--batch", "4", "--repeat", "2"];
    let (code, stdout, stderr) = bptt(&[&small[..], &["--cpu-peak"]].concat());
    assert_eq!(code, 0, "{stderr}");
    let line = stdout.lines().find(|l| l.trim_start().starts_with("cpu ")).expect("a cpu line");
    for want in ["fast f32 path", "GFLOP/s on", "threads", "of this machine's measured FMA peak"] {
        assert!(line.contains(want), "missing {want:?} in {line:?}");
    }
    let json = |extra: &[&str]| -> serde_json::Value {
        let (code, stdout, stderr) = bptt(&[&small[..], &["--json"], extra].concat());
        assert_eq!(code, 0, "{stderr}");
        serde_json::from_str(&stdout).unwrap()
    };
    let v = json(&["--cpu-peak"]);
    let (rate, peak, fraction) = (
        v["cpu_gflops"].as_f64().unwrap(),
        v["cpu_peak_gflops"].as_f64().unwrap(),
        v["cpu_peak_fraction"].as_f64().unwrap(),
    );
    let flops = v["flops"].as_f64().unwrap();
    let ms = v["timings_ms"]["cpu_total"].as_f64().unwrap();
    assert!((rate - flops / (ms * 1e6)).abs() <= 1e-9 * rate, "{rate} vs {flops} FLOP in {ms} ms");
    assert!(peak > 0.0 && (fraction - rate / peak).abs() <= 1e-12, "{rate} {peak} {fraction}");
    assert!(["avx512", "avx2", "portable"].contains(&v["cpu_isa"].as_str().unwrap()), "{}", v["cpu_isa"]);
    assert!(v["cpu_threads"].as_u64().unwrap() >= 1);
    let v = json(&[]);
    assert!(v["cpu_gflops"].as_f64().unwrap() > 0.0);
    assert!(v["cpu_peak_gflops"].is_null() && v["cpu_peak_fraction"].is_null());
    let (code, _, stderr) = bptt(&["--compute", "cpu-ref", "--hidden", "8", "--steps", "2", "--cpu-peak"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--cpu-peak") && stderr.contains("--compute cpu-ref"), "{stderr}");
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
    // An unwritable destination (a missing folder) is refused before computing, and writes nothing.
    let nowhere = dir.path().join("no/such/dir/out.safetensors");
    let (code, _, stderr) =
        bptt(&["--load", &fixture("identity_mse"), "--save", nowhere.to_str().unwrap(), "--compute", "cpu-ref"]);
    assert_eq!(code, 2, "{stderr}");
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
    let factors: Vec<f64> = rows.iter().map(|r| r["reach_factor"].as_f64().unwrap()).collect();
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
    assert_eq!(v["grad_h_norm"], v["reach"]);
    assert!(v["rel_err"]["reach"].as_f64().unwrap() < 1e-4);
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
        // The fast CPU path runs every variant too: timed under `both`, and alone it gives the
        // reference's gradients, reach profile and sentence.
        assert!(v["timings_ms"]["cpu_total"].as_f64().is_some(), "{extra:?}");
        assert!(v["notes"].as_array().unwrap().is_empty(), "{extra:?}");
        let run = |compute: &str| {
            let (code, out, err) = bptt(&[&args[..], &["--compute", compute]].concat());
            assert_eq!(code, 0, "{extra:?} {compute}: {err}");
            serde_json::from_str::<serde_json::Value>(&out).unwrap()
        };
        let (fast, reference) = (run("cpu"), run("cpu-ref"));
        let close = |a: &serde_json::Value, b: &serde_json::Value| {
            let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
            (a - b).abs() <= 1e-4 * b.abs().max(1e-30)
        };
        for name in ["grad_w_hh", "grad_w_hx", "grad_w_qh", "grad_h0", "grad_b_h"] {
            assert!(close(&fast["grad_norms"][name], &reference["grad_norms"][name]), "{extra:?} {name}");
        }
        for (a, b) in fast["reach"].as_array().unwrap().iter().zip(reference["reach"].as_array().unwrap()) {
            assert!(close(a, b) || a == b, "{extra:?}: reach {a} vs {b}");
        }
        assert_eq!(fast["variant"], reference["variant"]);
    }
    // Combinations that make no sense are refused in one line.
    for bad in [
        &["--truncate", "2", "--segments", "2"][..],
        &["--truncate", "0"],
        &["--segments", "20"],
        &["--truncate", "random:1"],
    ] {
        let args = [&["--hidden", "8", "--steps", "9"][..], bad].concat();
        let (code, _, stderr) = bptt(&args);
        assert_eq!(code, 2, "{bad:?}: {stderr}");
        assert_eq!(stderr.lines().filter(|l| !l.contains("XDG_RUNTIME_DIR")).count(), 1, "{bad:?}: {stderr}");
    }
}

// ---------------------------------------------------------------------------------------------
// Hardening: no wrong PASS, no lost work, no panics.

fn bptt_env(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    common::output(common::bptt_command().args(args).envs(env.iter().copied()))
}

/// stderr's lines, without the noise a software adapter may print.
fn error_lines(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| !l.contains("XDG_RUNTIME_DIR")).collect()
}

#[test]
fn a_non_finite_result_fails_on_every_cpu_path_and_keeps_the_saved_file() {
    // Spectral radius 3 over 512 steps: the states overflow f32 and f64 alike.
    let dir = tempfile::tempdir().unwrap();
    let keep = dir.path().join("keep.st");
    std::fs::write(&keep, b"previous result").unwrap();
    let keep_s = keep.to_str().unwrap();
    for compute in ["cpu-ref", "cpu"] {
        let args =
            ["--hidden", "16", "--steps", "512", "--spectral-radius", "3", "--compute", compute, "--save", keep_s];
        let (code, stdout, stderr) = bptt(&args);
        assert_eq!(code, 1, "{compute}: {stdout}{stderr}");
        assert!(stdout.contains("result     FAIL"), "{compute}: {stdout}");
        let lines = error_lines(&stderr);
        assert_eq!(lines.len(), 1, "{compute}: {stderr}");
        assert!(lines[0].contains("non-finite values in loss"), "{compute}: {stderr}");
        assert!(lines[0].contains("--save") && lines[0].contains("skipped"), "{compute}: {stderr}");
        assert_eq!(std::fs::read(&keep).unwrap(), b"previous result", "{compute}");
        let (code, stdout, _) = bptt(&[&args[..8], &["--json"]].concat());
        assert_eq!(code, 1);
        let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(v["pass"], false, "{compute}");
        assert_eq!(v["checked"], false, "{compute}");
    }
}

#[test]
fn nothing_compared_is_not_checked_rather_than_pass() {
    let small = ["--hidden", "8", "--steps", "5", "--input", "3", "--output", "2", "--repeat", "1"];
    for compute in ["cpu-ref", "cpu", "gpu"] {
        let (code, stdout, stderr) = bptt(&[&small[..], &["--compute", compute]].concat());
        assert_eq!(code, 0, "{compute}: {stderr}");
        assert!(stdout.contains("result     not checked"), "{compute}: {stdout}");
        assert!(!stdout.contains("PASS"), "{compute}: {stdout}");
        let (_, stdout, _) = bptt(&[&small[..], &["--compute", compute, "--json"]].concat());
        let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(v["checked"], false, "{compute}");
        assert!(v["pass"].is_null(), "{compute}: {}", v["pass"]);
    }
    let (code, stdout, _) = bptt(&[&small[..], &["--json"]].concat());
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!((v["checked"].clone(), v["pass"].clone()), (true.into(), true.into()));
    // A sweep on the fast CPU path alone: every row unchecked.
    let (code, stdout, _) = bptt(&[&small[..], &["--compute", "cpu", "--sweep-radius", "0.5,0.9"]].concat());
    assert_eq!(code, 0);
    let rows: Vec<&str> = stdout.lines().filter(|l| l.trim_start().starts_with("0.")).collect();
    assert_eq!(rows.len(), 2, "{stdout}");
    assert!(rows.iter().all(|r| r.ends_with("not checked")), "{stdout}");
}

#[test]
fn tiny_norms_do_not_underflow_to_zero() {
    // ∂L/∂h_1 = (w_hhᵀ)⁷ w_qhᵀ ∂L/∂o_8 with ρ(w_hh) = 1e-30: about 1e-210, whose square
    // underflows f64; a plain sum of squares says 0.
    let (code, stdout, stderr) = bptt(&[
        "--hidden",
        "8",
        "--steps",
        "8",
        "--input",
        "2",
        "--output",
        "2",
        "--spectral-radius",
        "1e-30",
        "--loss-at",
        "last",
        "--compute",
        "cpu-ref",
        "--json",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let first = v["grad_h_norm"][0].as_f64().unwrap();
    assert!(first > 0.0 && first < 1e-150, "‖∂L/∂h_1‖ = {first:e}");
    // Each step back multiplies by about 1e-30.
    let second = v["grad_h_norm"][1].as_f64().unwrap();
    let ratio = first / second;
    assert!(ratio > 1e-33 && ratio < 1e-27, "{first:e} / {second:e}");
}

#[test]
fn a_failed_check_says_which_tensors_on_stderr_and_that_the_save_was_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.st");
    let (code, stdout, stderr) = bptt(&[
        "--hidden",
        "16",
        "--steps",
        "4",
        "--repeat",
        "1",
        "--tolerance",
        "1e-30",
        "--save",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{stdout}");
    let lines = error_lines(&stderr);
    assert_eq!(lines.len(), 1, "{stderr}");
    for want in ["grad_w_hh", "tolerance", "--save", "skipped"] {
        assert!(lines[0].contains(want), "{want}: {stderr}");
    }
    assert!(!out.exists());
}

#[test]
fn output_paths_are_checked_before_computing() {
    let dir = tempfile::tempdir().unwrap();
    let keep = dir.path().join("k.st");
    std::fs::write(&keep, b"previous result").unwrap();
    let keep_s = keep.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--save", keep_s, "--plot", "/nonexistent/p.svg"], "/nonexistent"),
        (vec!["--save", "/nonexistent/out.st"], "/nonexistent"),
        (vec!["--save", keep_s, "--plot", keep_s.trim_end_matches(".st")], ".svg or .png"),
    ];
    for (args, needle) in cases {
        // A shape that takes minutes on the reference: the refusal must come first.
        let (code, stdout, stderr) =
            bptt(&[&["--hidden", "2048", "--steps", "4096", "--compute", "cpu-ref"][..], &args].concat());
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{args:?}");
        let lines = error_lines(&stderr);
        assert_eq!(lines.len(), 1, "{args:?}: {stderr}");
        assert!(lines[0].contains(needle), "{args:?}: {stderr}");
        assert_eq!(std::fs::read(&keep).unwrap(), b"previous result", "{args:?}");
    }
    // A good run prints the report and then names the files it wrote.
    let plot = dir.path().join("p.svg");
    let (code, stdout, stderr) = bptt(&[
        "--hidden",
        "4",
        "--steps",
        "3",
        "--compute",
        "cpu-ref",
        "--save",
        keep_s,
        "--plot",
        plot.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let result_at = stdout.find("result ").unwrap();
    assert!(stdout[result_at..].contains("saved grads to"), "{stdout}");
    assert!(bptt::io::load_grads(&keep).is_ok() && plot.exists());
}

#[test]
fn save_refuses_what_is_not_a_regular_file_and_the_loaded_problem() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("target.st");
    std::fs::write(&target, b"the link's target").unwrap();
    let link = dir.path().join("link.st");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let fifo = dir.path().join("fifo.st");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let problem = dir.path().join("problem.st");
    std::fs::copy(fixture("identity_mse"), &problem).unwrap();
    let small = ["--hidden", "4", "--steps", "3", "--compute", "cpu-ref"];
    for (args, needle) in [
        (vec!["--save", link.to_str().unwrap()], "symbolic link"),
        (vec!["--save", fifo.to_str().unwrap()], "FIFO"),
        (vec!["--save", "/dev/null"], "device"),
        (vec!["--save", dir.path().to_str().unwrap()], "folder"),
    ] {
        let (code, _, stderr) = bptt(&[&small[..], &args].concat());
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert_eq!(error_lines(&stderr).len(), 1, "{stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    assert_eq!(std::fs::read(&target).unwrap(), b"the link's target");
    let before = std::fs::read(&problem).unwrap();
    let p = problem.to_str().unwrap();
    let (code, _, stderr) = bptt(&["--load", p, "--save", p, "--compute", "cpu-ref"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("would overwrite the problem --load reads"), "{stderr}");
    assert_eq!(std::fs::read(&problem).unwrap(), before);
}

#[test]
fn inputs_must_be_regular_files() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("problem.fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    for (path, needle) in [("/dev/zero", "device"), (fifo.to_str().unwrap(), "FIFO"), ("/tmp", "folder")] {
        // Before: /dev/zero read until memory ran out and a FIFO blocked forever.
        let mut child = Command::new(env!("CARGO_BIN_EXE_bptt"))
            .args(["--load", path, "--compute", "cpu-ref"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let start = std::time::Instant::now();
        while child.try_wait().unwrap().is_none() {
            if start.elapsed() > std::time::Duration::from_secs(60) {
                child.kill().unwrap();
                panic!("--load {path} did not return");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{path}: {stderr}");
        assert!(stderr.contains(needle), "{path}: {stderr}");
    }
    // A font from a device is refused at once (exit 2, before computing), not read forever
    // (tests/env_errors.rs tests the other bad fonts).
    let plot = dir.path().join("p.svg");
    let (code, _, stderr) = bptt_env(
        &["--hidden", "4", "--steps", "3", "--compute", "cpu-ref", "--plot", plot.to_str().unwrap()],
        &[("BPTT_PLOT_FONT", "/dev/zero")],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("BPTT_PLOT_FONT=/dev/zero") && stderr.contains("expected a regular file"), "{stderr}");
    assert!(!plot.exists());
}

#[test]
fn shapes_beyond_memory_are_refused_at_once() {
    // Before: an allocation failure in Problem::clone after building the problem.
    let start = std::time::Instant::now();
    let (code, stdout, stderr) =
        bptt_env(&["--steps", "10000000", "--hidden", "1", "--compute", "cpu-ref"], &[("BPTT_MAX_MEMORY", "1G")]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stdout.is_empty());
    let lines = error_lines(&stderr);
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].contains("needs about") && lines[0].contains("GiB") && lines[0].contains("1.0 GiB"), "{stderr}");
    assert!(start.elapsed().as_secs() < 10, "took {:?}", start.elapsed());
    // A buffer past the adapter's binding limit (x: 4 GiB − 256 B of f32, more than lavapipe
    // or any common GPU binds) even for one step is refused before the problem is built, with
    // what to lower (neither checkpointing nor segments can help a single step). Before: 44 s
    // and 10 GB of random numbers first.
    let (code, _, stderr) = bptt_env(
        &["--steps", "1", "--batch", "16777215", "--input", "64", "--hidden", "1", "--output", "1", "--compute", "gpu"],
        &[("BPTT_MAX_MEMORY", "1T")],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("inputs x[T,B,d]") && stderr.contains("lower --batch"), "{stderr}");
    assert!(!stderr.contains("invalid input: invalid input"), "{stderr}");
    let (code, _, stderr) = bptt_env(&["--compute", "cpu-ref"], &[("BPTT_MAX_MEMORY", "lots")]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("BPTT_MAX_MEMORY=lots"), "{stderr}");
}

#[test]
fn a_closed_stdout_is_quiet_and_a_full_one_is_one_line() {
    use std::process::Stdio;
    // --verbose at T = 4000: more than a pipe holds (64 KiB), so the write meets the closed end.
    let args = ["--hidden", "4", "--steps", "4000", "--spectral-radius", "0.5", "--compute", "cpu-ref", "--verbose"];
    // The reader goes away before the report is written (`bptt ... | head -0`).
    let mut child = Command::new(env!("CARGO_BIN_EXE_bptt"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(error_lines(&stderr).is_empty(), "{stderr}");
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_bptt")).args(args).stdout(full).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let lines = error_lines(&stderr);
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].contains("cannot write the report"), "{stderr}");
}

#[test]
fn loss_at_contradicting_the_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("last.st");
    let mut spec = bptt::ProblemSpec::new(bptt::Shape::new(3, 1, 2, 4, 2).unwrap());
    spec.loss_at = bptt::LossAt::Last;
    bptt::io::save_problem(&path, &bptt::random_problem(&spec).unwrap()).unwrap();
    let p = path.to_str().unwrap();
    let (code, _, stderr) = bptt(&["--load", p, "--loss-at", "all", "--compute", "cpu-ref"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--loss-at all contradicts the file's metadata loss_at=last"), "{stderr}");
    let (code, stdout, stderr) = bptt(&["--load", p, "--loss-at", "last", "--compute", "cpu-ref", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["loss_at"], "last");
}

/// The reach line's sentence is computed from the profile printed above it: its ratio is
/// ‖∂L_T/∂h_1‖/‖∂L_T/∂h_T‖ as printed, to two digits. Under --truncate K it says the profile is
/// exactly 0 for t ≤ T − K, under random:P where this draw's cuts stopped it.
#[test]
fn the_reach_sentence_agrees_with_the_printed_profile() {
    let base = ["--compute", "cpu", "--hidden", "64", "--steps", "64", "--spectral-radius", "0.9"];
    let (code, stdout, stderr) = bptt(&base);
    assert_eq!(code, 0, "{stderr}");
    let reach = stdout.lines().find(|l| l.starts_with("reach")).unwrap();
    let num = |key: &str| -> f64 {
        let at = reach.find(key).unwrap() + key.len();
        reach[at..].split(|c: char| c == ',' || c.is_whitespace()).next().unwrap().parse().unwrap()
    };
    let (first, last) = (num("t=1: "), num("t=T: "));
    let sentence = stdout.lines().skip_while(|l| !l.starts_with("reach")).nth(1).unwrap();
    let ratio = format!("{:.1e}", first / last);
    assert!(sentence.contains(&format!("at t = 1 it is {ratio} of its size at t = T (63 steps back)")), "{sentence}");
    let per_step = format!("×{:.2}", (first / last).powf(1.0 / 63.0));
    assert!(sentence.contains(&format!("shrinks {per_step} per step")), "{sentence} {per_step}");

    let (code, stdout, stderr) = bptt(&[&base[..], &["--truncate", "8"]].concat());
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("reach      ‖∂L_T/∂h_t‖ (the last step's loss alone) t=1: 0, t=T:"), "{stdout}");
    assert!(stdout.contains("truncated K = 8 steps back: ‖∂L_T/∂h_t‖ is exactly 0 for t ≤ 56 (T − K)"), "{stdout}");

    let (code, stdout, stderr) = bptt(&[&base[..], &["--truncate", "random:0.1", "--json"]].concat());
    assert_eq!(code, 0, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let profile: Vec<f64> = v["reach"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
    let stop = profile.iter().rposition(|&x| x == 0.0).unwrap() + 2;
    let s = v["reach_summary"].as_str().unwrap();
    assert!(s.contains(&format!("this run's cuts stop the last step's gradient at t = {stop}")), "{s}");
    assert!(s.contains("its expectation is the untruncated gradient"), "{s}");
    // The factor is the expectation's: the untruncated profile's, near ρ = 0.9.
    let f = v["reach_factor"].as_f64().unwrap();
    assert!((0.8..0.95).contains(&f), "{f}");
}

/// A check on a software adapter says so up front, under the adapter line.
#[test]
fn a_software_adapter_is_named_as_such_up_front() {
    let (code, stdout, stderr) = bptt(&["--hidden", "8", "--steps", "4", "--repeat", "1", "--software"]);
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    let at = lines.iter().position(|l| l.starts_with("adapter")).unwrap();
    assert!(lines[at + 1].contains("a software adapter: the GPU code runs on this machine's CPU cores"), "{stdout}");
    assert!(at < lines.iter().position(|l| l.starts_with("loss")).unwrap());
}

/// --save-problem writes the run's problem in the format --load reads: loading it gives the
/// same loss and gradients, with its loss, activation and loss_at from the metadata.
#[test]
fn a_saved_problem_loads_back_as_the_same_problem() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.safetensors");
    let f = file.to_str().unwrap();
    let random = [
        "--compute",
        "cpu-ref",
        "--hidden",
        "9",
        "--steps",
        "5",
        "--input",
        "3",
        "--output",
        "4",
        "--loss",
        "xent",
        "--activation",
        "tanh",
        "--loss-at",
        "last",
        "--bias",
        "--random-h0",
        "--seed",
        "11",
        "--json",
    ];
    let (code, one, stderr) = bptt(&[&random[..], &["--save-problem", f]].concat());
    assert_eq!(code, 0, "{stderr}");
    let (code, two, stderr) = bptt(&["--compute", "cpu-ref", "--load", f, "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let (a, b): (serde_json::Value, serde_json::Value) =
        (serde_json::from_str(&one).unwrap(), serde_json::from_str(&two).unwrap());
    for key in ["loss", "grad_norms", "grad_h_norm", "reach", "shape", "activation", "loss_fn", "loss_at", "bias"] {
        assert_eq!(a[key], b[key], "{key}");
    }
    let p = bptt::io::load_problem(&file, None, None).unwrap();
    assert_eq!(p.h0.len(), 9);
    assert!(p.h0.iter().any(|&x| x != 0.0), "the random h0 is saved");
    // The text report confirms the file; --save-problem onto the --load file is refused.
    let (code, text, _) = bptt(&[&random[..random.len() - 1], &["--save-problem", f]].concat());
    assert_eq!(code, 0);
    assert!(text.lines().any(|l| l.starts_with("files      problem saved to ")), "{text}");
    let (code, _, stderr) = bptt(&["--compute", "cpu-ref", "--load", f, "--save-problem", f]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--save-problem") && stderr.contains("--load"), "{stderr}");
}
