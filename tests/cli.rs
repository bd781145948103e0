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
