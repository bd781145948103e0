//! The environment and the arguments around the computation: every
//! adapter filter named when it leaves nothing, invalid environment variables refused in one
//! line, forward-state overflow told apart from the backward pass, the fast CPU path's absence
//! said, and negative values reaching their own checks. The GPU cases need an adapter.

mod common;

use bptt::cpu::reference;
use bptt::{ProblemSpec, Shape, random_problem};

/// Runs the binary with `env` set and the variables these tests are about removed otherwise.
fn bptt(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    common::output(common::bptt_command_clean_env().args(args).envs(env.iter().copied()))
}

/// stderr's one line (asserted to be exactly one), without the noise a software adapter may print.
fn one_error_line(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.contains("XDG_RUNTIME_DIR")).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].starts_with("error:"), "{stderr}");
    lines[0].to_string()
}

/// The first adapter's name as --list-adapters prints it (the GPU tests need one).
fn an_adapter_name() -> String {
    let (code, stdout, stderr) = bptt(&["--list-adapters"], &[]);
    assert_eq!(
        code, 0,
        "these tests need a wgpu adapter: on headless Linux `apt-get install mesa-vulkan-drivers`: {stderr}"
    );
    let first = stdout.lines().next().expect("an adapter line");
    // "NAME (backend, type, driver ...)": the name ends where the backend's group starts.
    let cut = ["vulkan", "metal", "dx12", "gl"].iter().filter_map(|b| first.find(&format!(" ({b}, "))).min();
    first[..cut.unwrap_or_else(|| panic!("no backend in: {first}"))].to_string()
}

const TINY_GPU: &[&str] = &["--hidden", "4", "--steps", "3", "--compute", "gpu", "--repeat", "1"];

#[test]
fn an_unknown_wgpu_backend_is_refused_naming_the_variable() {
    // Before: "no GPU adapter matches (backend auto); adapters found: none ... install a GPU
    // driver", exit 1, and --list-adapters likewise.
    for value in ["garbage", "vulkan,bogus", ""] {
        for args in [TINY_GPU, &["--list-adapters"]] {
            let (code, stdout, stderr) = bptt(args, &[("WGPU_BACKEND", value)]);
            assert_eq!(code, 2, "{value:?} {args:?}: {stderr}");
            assert!(stdout.is_empty());
            let line = one_error_line(&stderr);
            assert!(line.contains(&format!("WGPU_BACKEND={value}")), "{line}");
            assert!(line.contains("is not a backend"), "{line}");
            assert!(!line.contains("install"), "{line}");
        }
    }
}

#[cfg(not(target_vendor = "apple"))]
#[test]
fn a_backend_without_adapters_names_the_filter_and_what_the_others_offer() {
    // Metal exists only on Apple systems: elsewhere it offers no adapter. Before: "adapters
    // found: none ... install a GPU driver", though other backends had one.
    let name = an_adapter_name();
    for (args, env, filter, fix) in [
        (TINY_GPU.to_vec(), vec![("WGPU_BACKEND", "metal")], "WGPU_BACKEND=metal", "unset it"),
        ([TINY_GPU, &["--backend", "metal"]].concat(), vec![], "--backend metal", "leave it out"),
        (vec!["--list-adapters"], vec![("WGPU_BACKEND", "metal")], "WGPU_BACKEND=metal", "unset it"),
    ] {
        let (code, _, stderr) = bptt(&args, &env);
        assert_eq!(code, 1, "{args:?}: {stderr}");
        let line = one_error_line(&stderr);
        assert!(line.contains(&format!("no GPU adapter through {filter}")), "{line}");
        assert!(line.contains(&name), "{line}");
        assert!(line.contains(fix), "{line}");
        assert!(!line.contains("install"), "{line}");
    }
}

#[test]
fn an_adapter_name_that_matches_nothing_lists_what_exists() {
    // Before: the adapters were listed, followed by "To get one, install a GPU driver".
    let name = an_adapter_name();
    let flag = [TINY_GPU, &["--adapter", "no-such-adapter"]].concat();
    let cases = [
        (flag.clone(), vec![], "--adapter no-such-adapter"),
        (TINY_GPU.to_vec(), vec![("WGPU_ADAPTER_NAME", "no-such-adapter")], "WGPU_ADAPTER_NAME=no-such-adapter"),
        ([&flag[..], &["--software"]].concat(), vec![], "--software"),
    ];
    for (args, env, filter) in cases {
        let (code, _, stderr) = bptt(&args, &env);
        assert_eq!(code, 1, "{args:?}: {stderr}");
        let line = one_error_line(&stderr);
        assert!(line.contains("no GPU adapter matches"), "{line}");
        assert!(line.contains(filter), "{line}");
        assert!(line.contains(&format!("adapters found: {name}")), "{line}");
        assert!(!line.contains("install"), "{line}");
    }
}

#[test]
fn invalid_recurrent_layouts_are_refused_and_valid_ones_run() {
    // Before: "garbage" was ignored silently (exit 0 with the default layout) and 65536x65536
    // wrapped the u32 product to 0, passed the ≤ 256 check and failed in the driver.
    for value in ["garbage", "65536x65536", "0x8", "32x9", "64x1x"] {
        let (code, stdout, stderr) = bptt(TINY_GPU, &[("BPTT_RECURRENT_LAYOUT", value)]);
        assert_eq!(code, 2, "{value}: {stdout}{stderr}");
        assert!(stdout.is_empty(), "{value}");
        let line = one_error_line(&stderr);
        assert!(line.contains(&format!("BPTT_RECURRENT_LAYOUT={value} is not a layout")), "{line}");
    }
    for value in ["16x16", "8x2r"] {
        let args = ["--hidden", "20", "--steps", "5", "--batch", "3", "--repeat", "1"];
        let (code, stdout, stderr) = bptt(&args, &[("BPTT_RECURRENT_LAYOUT", value)]);
        assert_eq!(code, 0, "{value}: {stderr}");
        assert!(stdout.contains("result     PASS"), "{value}: {stdout}");
    }
}

#[test]
fn a_bad_plot_font_is_an_error_before_computing() {
    // Before: BPTT_PLOT_FONT was skipped silently for the next font on the list.
    let dir = tempfile::tempdir().unwrap();
    let not_a_font = dir.path().join("notes.ttf");
    std::fs::write(&not_a_font, b"these are not glyphs").unwrap();
    let missing = dir.path().join("missing.ttf");
    let plot = dir.path().join("p.svg");
    for (font, why) in [
        (not_a_font.to_str().unwrap(), "not a TrueType or OpenType font"),
        (missing.to_str().unwrap(), "cannot read"),
        ("/dev/zero", "expected a regular file"),
    ] {
        let args = ["--hidden", "4", "--steps", "3", "--compute", "cpu-ref", "--plot", plot.to_str().unwrap()];
        let (code, stdout, stderr) = bptt(&args, &[("BPTT_PLOT_FONT", font)]);
        assert_eq!(code, 2, "{font}: {stderr}");
        // Checked before computing: no report, no plot.
        assert!(stdout.is_empty(), "{font}: {stdout}");
        assert!(!plot.exists(), "{font}");
        let line = one_error_line(&stderr);
        assert!(line.contains(&format!("BPTT_PLOT_FONT={font} is not a usable font")), "{line}");
        assert!(line.contains(why), "{line}");
    }
}

/// The first t (from 1) whose state, computed in f64 by the reference, is past f32's range:
/// where an f32 path's forward pass must overflow (give or take a rounding step).
fn first_past_f32(states: &[f64], width: usize) -> usize {
    states.chunks(width).position(|s| s.iter().any(|x| x.abs() > f32::MAX as f64)).expect("the states pass f32's range")
        + 1
}

/// The t after "NAME overflows f32 at t = " in `line`.
fn step_after(line: &str, name: &str) -> usize {
    let key = format!("{name} overflows f32 at t = ");
    let at = line.find(&key).unwrap_or_else(|| panic!("no '{key}' in: {line}")) + key.len();
    line[at..].split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
}

#[test]
fn a_forward_overflow_is_named_with_its_step_on_each_f32_path() {
    // Spectral radius 8: h_t grows ×8 per step and passes f32's range near t = 42 of 64, while
    // the f64 reference stays finite. Before: "‖∂L/∂h_t‖ first overflows at step 64 (counting
    // down from T)", blaming the backward pass.
    let (h, steps, radius) = (16, 64, 8.0);
    let mut spec = ProblemSpec::new(Shape::new(steps, 1, 64, h, 64).unwrap());
    spec.spectral_radius = Some(radius);
    let f64_states = reference::forward(&random_problem(&spec).unwrap());
    let want_h = first_past_f32(&f64_states.h, h);
    let want_o = first_past_f32(&f64_states.o, 64);
    assert!((30..steps).contains(&want_h), "{want_h}");
    let base = ["--hidden", "16", "--steps", "64", "--spectral-radius", "8", "--repeat", "1"];
    for (extra, label) in [
        // The GPU without --save-states reads the states back once, for the diagnosis.
        (&["--compute", "both"][..], "gpu: "),
        (&["--compute", "gpu", "--schedule", "stepwise"], "gpu: "),
        // Segments keep their states anyway (h is carried across the boundaries).
        (&["--compute", "both", "--segments", "4"], "gpu: "),
        (&["--compute", "cpu"], "fast CPU path: "),
    ] {
        let (code, _, stderr) = bptt(&[&base[..], extra].concat(), &[]);
        assert_eq!(code, 1, "{extra:?}: {stderr}");
        let line = one_error_line(&stderr);
        let path_line = &line[line.find(label).unwrap_or_else(|| panic!("{extra:?}: {line}"))..];
        assert!(path_line.contains("lower --spectral-radius or --steps"), "{line}");
        assert!(!path_line.contains("first overflows"), "{line}");
        // The first state past f32's range is o_t or h_t; the message names the earlier one
        // and, when o_t comes first, h_t too.
        if path_line.contains("o_t overflows") {
            assert!(step_after(path_line, "o_t").abs_diff(want_o) <= 1, "{want_o}: {line}");
            let h_at = path_line.split("(h_t at t = ").nth(1).unwrap().split(')').next().unwrap();
            assert!(h_at.parse::<usize>().unwrap().abs_diff(want_h) <= 1, "{want_h}: {line}");
        } else {
            assert!(step_after(path_line, "h_t").abs_diff(want_h) <= 1, "{want_h}: {line}");
        }
        // The f64 reference is finite here: it is not blamed.
        assert!(!line.contains("reference: non-finite"), "{line}");
    }
}

#[test]
fn compute_both_runs_the_fast_cpu_path_under_every_variant() {
    // Before, under --truncate, --segments or --clip the fast CPU path could not run (and the
    // report said so in a note); now it runs every variant, timed, and nothing is left out.
    let base = ["--hidden", "8", "--steps", "16", "--repeat", "1"];
    for extra in [&["--truncate", "4"][..], &["--truncate", "random:0.3"], &["--segments", "2"], &["--clip", "1"]] {
        let args = [&base[..], extra].concat();
        let (code, stdout, stderr) = bptt(&args, &[]);
        assert_eq!(code, 0, "{extra:?}: {stderr}");
        assert!(!stdout.lines().any(|l| l.starts_with("note ")), "{stdout}");
        assert!(stdout.contains("fast f32 path"), "{stdout}");
        let (code, stdout, _) = bptt(&[&args[..], &["--json"]].concat(), &[]);
        assert_eq!(code, 0);
        let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert!(v["notes"].as_array().unwrap().is_empty());
        assert!(v["timings_ms"]["cpu_total"].as_f64().is_some_and(|ms| ms > 0.0), "{extra:?}");
    }
    // Plain BPTT runs it, and there is nothing to note; --truncate K ≥ T is plain BPTT too.
    for extra in [&[][..], &["--truncate", "16"]] {
        let (code, stdout, _) = bptt(&[&base[..], extra, &["--json"]].concat(), &[]);
        assert_eq!(code, 0);
        let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(v["notes"].as_array().unwrap().len(), 0, "{extra:?}");
        assert!(v["timings_ms"]["cpu_total"].as_f64().is_some_and(|ms| ms > 0.0), "{extra:?}");
    }
    // --segments with --clip is refused (documented in --help and docs/report.md).
    let (code, _, stderr) = bptt(&["--segments", "2", "--clip", "1", "--compute", "cpu-ref"], &[]);
    assert_eq!(code, 2);
    let line = one_error_line(&stderr);
    assert!(line.contains("--segments") && line.contains("--clip"), "{line}");
}

#[test]
fn negative_values_reach_their_own_checks() {
    // Before: clap's "unexpected argument '-1' found" for every one of them.
    for (args, says) in [
        (&["--clip", "-1"][..], "must be a finite number > 0, got -1"),
        (&["--tolerance", "-1e-3"], "must be a finite number > 0, got -1e-3"),
        (&["--spectral-radius", "-1"], "must be a finite number ≥ 0, got -1"),
        (&["--spectral-radius", "-0.5"], "must be a finite number ≥ 0, got -0.5"),
        (&["--spectral-radius", "-inf"], "must be a finite number ≥ 0, got -inf"),
        // A flag where the value should be is named as such.
        (&["--clip", "--json"], "a number is needed, not the flag '--json'"),
        (&["--sweep-radius", "-1,0.5"], "must be a finite number ≥ 0, got -1"),
        (&["--sweep-radius", "0.5,-2"], "must be a finite number ≥ 0, got -2"),
        (&["--truncate", "-3"], "expected a number of steps K ≥ 1 or random:P, got '-3'"),
        (&["--hidden", "-4"], "-4 is not in 1.."),
        (&["--seed", "-1"], "invalid value '-1' for '--seed"),
    ] {
        let (code, stdout, stderr) = bptt(&[args, &["--compute", "cpu-ref"]].concat(), &[]);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stdout.is_empty());
        let line = one_error_line(&stderr);
        assert!(line.contains(says), "{args:?}: {line}");
        assert!(!line.contains("unexpected argument"), "{line}");
    }
}
