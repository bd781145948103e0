//! `bptt train` from the command line: one-line errors with exit 2 for bad combinations, a
//! diverging run stops with exit 1 and writes no model, a saved model loads back, and the JSON
//! report carries the curve.

mod common;

use common::bptt;

fn one_error_line(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| !l.contains("XDG_RUNTIME_DIR")).collect()
}

#[test]
fn bad_combinations_exit_2_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.txt");
    std::fs::write(&empty, "").unwrap();
    let empty = empty.to_str().unwrap();
    for args in [
        &["train", "--task", "adding", "--text", "x.txt"][..],
        &["train", "--lr", "0"],
        &["train", "--lr", "nan"],
        &["train", "--clip", "-1"],
        &["train", "--lr", "-0.5"],
        &["train", "--clip", "--json"],
        &["train", "--momentum", "1"],
        &["train", "--task", "copy", "--sample", "10"],
        &["train", "--task", "text"],
        &["train", "--task", "text", "--text", empty],
        &["train", "--task", "text", "--text", "/no/such/file.txt"],
        // Not a regular file: read without a bound, /dev/zero ran the machine out of memory.
        &["train", "--task", "text", "--text", "/dev/zero"],
        &["train", "--task", "text", "--text", "/tmp"],
        &["train", "--task", "copy", "--steps", "20"],
        &["train", "--steps", "1"],
        &["train", "--prompt", "ab"],
        &["train", "--truncate", "random:1"],
        &["train", "--truncate", "0"],
        &["train", "--init-from", "m.safetensors", "--init-recurrent", "identity"],
        &["train", "--plot", "curve.pdf"],
        &["train", "--save-model", "/no/such/folder/m.safetensors"],
        &["train", "--iters", "0"],
        &["train", "--no-such-flag"],
    ] {
        let (code, stdout, stderr) = bptt(args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{args:?}");
        let lines = one_error_line(&stderr);
        assert_eq!(lines.len(), 1, "{args:?}: {stderr}");
        assert!(lines[0].starts_with("error:"), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}");
    }
    // A negative value reaches its flag's own check instead of clap's "unexpected argument".
    let (_, _, stderr) = bptt(&["train", "--lr", "-0.5"]);
    assert!(stderr.contains("must be a finite number > 0, got -0.5"), "{stderr}");
}

#[test]
fn the_flag_only_form_is_still_the_gradient_check() {
    let (code, stdout, stderr) =
        bptt(&["--compute", "cpu-ref", "--hidden", "4", "--steps", "3", "--input", "2", "--output", "2"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("loss"), "{stdout}");
    let (code, stdout, _) = bptt(&["--help"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("bptt train --help"));
    let (code, stdout, _) = bptt(&["train", "--help"]);
    assert_eq!(code, 0);
    for flag in ["--task", "--init-recurrent", "--optim", "--truncate", "--save-model", "--init-from", "--log-every"] {
        assert!(stdout.contains(flag), "train --help documents {flag}");
    }
}

#[test]
fn a_diverging_run_exits_1_naming_the_iteration_and_writes_no_model() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model.safetensors");
    let (code, stdout, stderr) = bptt(&[
        "train",
        "--compute",
        "cpu",
        "--steps",
        "6",
        "--hidden",
        "8",
        "--iters",
        "50",
        "--optim",
        "sgd",
        "--lr",
        "1e30",
        "--save-model",
        model.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stdout.is_empty());
    let lines = one_error_line(&stderr);
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].contains("diverged") && lines[0].contains("iteration") && lines[0].contains("--clip"), "{stderr}");
    assert!(!model.exists(), "no model file after a diverged run");
}

#[test]
fn a_saved_model_loads_back_and_training_continues_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("irnn.safetensors");
    let model = model.to_str().unwrap();
    let base = ["train", "--compute", "cpu", "--steps", "8", "--hidden", "16", "--eval-size", "64", "--json"];
    let run = |extra: &[&str]| {
        let args: Vec<&str> = base.iter().chain(extra).copied().collect();
        let (code, stdout, stderr) = bptt(&args);
        assert_eq!(code, 0, "{args:?}: {stderr}");
        serde_json::from_str::<serde_json::Value>(&stdout).unwrap()
    };
    let first = run(&["--iters", "200", "--activation", "relu", "--init-recurrent", "identity", "--save-model", model]);
    let m = bptt::io::load_model(std::path::Path::new(model)).unwrap();
    assert_eq!((m.input, m.hidden, m.output), (2, 16, 1));
    assert_eq!(m.metadata["activation"], "relu");
    // The JSON report: the curve, the metrics and the throughput.
    assert_eq!(first["curve"].as_array().unwrap().len(), 20);
    assert!(first["sequences_per_s"].as_f64().unwrap() > 0.0);
    let trained = first["final_eval"]["loss"].as_f64().unwrap();
    // A run from the file, with a tiny step, starts where the first ended (its activation from the metadata).
    let resumed = run(&["--iters", "1", "--lr", "1e-9", "--init-from", model]);
    assert_eq!(resumed["activation"], "relu");
    let again = resumed["final_eval"]["loss"].as_f64().unwrap();
    assert!((again - trained).abs() <= 1e-4 * trained, "resumed held-out {again} vs saved {trained}");
    // A model of another size is refused.
    let (code, _, stderr) = bptt(&["train", "--hidden", "17", "--init-from", model]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("h=16"), "{stderr}");
    // In text, the files are confirmed after the summary, the model last.
    let (code, stdout, stderr) =
        bptt(&["train", "--compute", "cpu", "--steps", "8", "--hidden", "4", "--iters", "5", "--save-model", model]);
    assert_eq!(code, 0, "{stderr}");
    let last = stdout.lines().last().unwrap();
    assert_eq!(last, format!("files        model saved to {model}"));
    assert!(stdout.find("result ").unwrap() < stdout.find("files ").unwrap(), "{stdout}");
}

#[test]
fn the_text_task_trains_reports_perplexity_and_samples() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("t.txt");
    std::fs::write(&text, "abcabcabcabd ".repeat(60)).unwrap();
    let (code, stdout, stderr) = bptt(&[
        "train",
        "--task",
        "text",
        "--text",
        text.to_str().unwrap(),
        "--compute",
        "cpu",
        "--steps",
        "12",
        "--hidden",
        "24",
        "--batch",
        "8",
        "--iters",
        "150",
        "--lr",
        "0.01",
        "--partition",
        "sequential",
        "--sample",
        "20",
        "--prompt",
        "ab",
        "--eval-size",
        "16",
        "--json",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let r: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let perplexity = r["final_eval"]["perplexity"].as_f64().unwrap();
    // Five symbols (a b c d space); the text is almost periodic, so a model does far better
    // than the unigram baseline.
    let baseline = r["baseline"].as_f64().unwrap().exp();
    assert!(perplexity < 0.6 * baseline, "perplexity {perplexity}, unigram baseline {baseline}");
    let sample = r["sample"].as_str().unwrap();
    assert!(sample.starts_with("ab") && sample.chars().count() == 22, "{sample:?}");
}

#[test]
fn plot_draws_the_curve_with_the_baseline() {
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("curve.svg");
    let (code, _, stderr) = bptt(&[
        "train",
        "--compute",
        "cpu",
        "--steps",
        "6",
        "--hidden",
        "8",
        "--iters",
        "40",
        "--eval-every",
        "20",
        "--eval-size",
        "32",
        "--clip",
        "0.5",
        "--plot",
        svg.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let text = std::fs::read_to_string(&svg).unwrap();
    for label in [
        "training",
        "held-out",
        "memoryless baseline 0.1667",
        "iteration",
        "mse (log scale)",
        "‖g‖ before clipping",
        "clip θ = 0.5",
    ] {
        assert!(text.contains(label), "the plot names {label}");
    }
    // Three lines (training, held-out, ‖g‖) and two dashed ones (baseline, θ), the held-out points.
    assert!(text.matches("<polyline").count() >= 5, "lines drawn");
    // The log axis: the MSE here lies between 0.1 and 0.4, and its ticks are geometric (equal
    // ratios between neighbours), in plain digits.
    let mut ticks: Vec<f64> =
        text.lines().map(str::trim).filter_map(|l| l.parse::<f64>().ok()).filter(|v| (0.1..0.5).contains(v)).collect();
    ticks.dedup();
    assert!(ticks.len() >= 3, "log-axis ticks: {ticks:?}");
    let ratios: Vec<f64> = ticks.windows(2).map(|w| w[1] / w[0]).collect();
    assert!(ratios.windows(2).all(|r| (r[0] / r[1] - 1.0).abs() < 0.1), "not a log axis: {ticks:?}");
}

/// The readings of BPTT in the summary and the JSON: a table of evaluations (‖g‖ before
/// clipping, the fraction clipped, the reach per step), the verdict last; `verdict` at the
/// top level and the readings in every `eval` entry.
#[test]
fn the_summary_and_the_json_carry_the_gradient_readings_and_the_verdict() {
    let args = [
        "train",
        "--compute",
        "cpu",
        "--steps",
        "10",
        "--hidden",
        "16",
        "--iters",
        "60",
        "--eval-every",
        "30",
        "--eval-size",
        "32",
        "--clip",
        "0.5",
        "--truncate",
        "random:0.2",
    ];
    let (code, stdout, stderr) = bptt(&args);
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("task"), "{stdout}");
    assert!(lines.iter().any(|l| l.starts_with("evaluations") && l.contains("‖g‖") && l.contains("clipped")));
    assert!(lines.iter().any(|l| l.trim_start().starts_with("30 ")), "{stdout}");
    assert!(lines.iter().any(|l| l.contains("truncated random:0.2 (cuts seed 0)")), "{stdout}");
    assert!(lines.last().unwrap().starts_with("verdict      "), "{stdout}");
    let (code, json, stderr) = bptt(&[&args[..], &["--json"]].concat());
    assert_eq!(code, 0, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(v["verdict"].as_str().unwrap().contains("held-out mse"), "{json}");
    assert_eq!(v["truncate"], "random:0.2");
    assert_eq!(v["truncate_seed"], 0);
    assert!(v["spikes"].is_array());
    let evals = v["eval"].as_array().unwrap();
    assert_eq!(evals.len(), 2);
    for e in evals {
        assert!(e["grad_norm"].as_f64().unwrap() > 0.0, "{e}");
        let f = e["clipped_fraction"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&f), "{e}");
        assert!(e["reach_factor"].as_f64().unwrap() > 0.0, "{e}");
        assert!(e["reach_ratio"].as_f64().is_some(), "{e}");
    }
    assert!(v["curve"][0]["grad_norm"].as_f64().unwrap() > 0.0);
}

/// `--compute auto` (the default) trains on the GPU when a hardware adapter exists, else on
/// the fast CPU path with a note saying why and how to force the GPU.
#[test]
fn the_default_device_skips_a_software_adapter() {
    let (code, stdout, stderr) =
        bptt(&["train", "--steps", "6", "--hidden", "8", "--iters", "10", "--eval-size", "32", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let device = v["device"].as_str().unwrap();
    let notes: Vec<&str> = v["notes"].as_array().unwrap().iter().map(|n| n.as_str().unwrap()).collect();
    let hardware = bptt::gpu::list_adapters(&Default::default())
        .map(|l| l.iter().any(|a| !a.device_type.starts_with("CPU")))
        .unwrap_or(false);
    if hardware {
        assert!(device.starts_with("gpu"), "{device}");
        assert!(notes.is_empty(), "{notes:?}");
    } else {
        assert!(device.starts_with("cpu"), "{device}");
        assert!(notes.iter().any(|n| n.contains("training on the") && n.contains("CPU")), "{notes:?}");
        assert!(notes.iter().any(|n| n.contains("--compute gpu") || n.contains("no GPU adapter")), "{notes:?}");
    }
    // Asking for an adapter asks for the GPU: a software one is then used (or, with none, the
    // run fails saying so).
    let software = bptt::gpu::list_adapters(&Default::default())
        .map(|l| l.iter().any(|a| a.device_type.starts_with("CPU")))
        .unwrap_or(false);
    let (code, stdout, stderr) =
        bptt(&["train", "--steps", "6", "--hidden", "8", "--iters", "2", "--eval-size", "8", "--software", "--json"]);
    if software {
        assert_eq!(code, 0, "{stderr}");
        let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert!(v["device"].as_str().unwrap().starts_with("gpu"), "{stdout}");
    } else {
        assert_eq!(code, 1, "{stderr}");
    }
}
