//! The text report explains itself: readings of the numbers, sensible digits, the files it
//! wrote, and a speed section that says what a software adapter's times mean.

mod common;

use bptt::format::significant;
use common::bptt;

const SMALL: [&str; 8] = ["--hidden", "8", "--steps", "24", "--input", "3", "--output", "2"];

#[test]
fn significant_digits() {
    for (v, digits, want) in [
        (567072.0, 7, "567072.0"),
        (567072.0, 6, "567072"),
        (567072.0, 3, "5.67e5"),
        (398.553, 4, "398.6"),
        (0.754321, 3, "0.754"),
        (2.0, 3, "2.00"),
        (0.0012345, 3, "0.00123"),
        (0.00012345, 3, "1.23e-4"),
        (3.1e-13, 2, "3.1e-13"),
        (-42.0, 2, "-42"),
        (0.0, 3, "0"),
        (f64::INFINITY, 3, "inf"),
        (f64::NAN, 3, "NaN"),
    ] {
        assert_eq!(significant(v, digits), want, "{v} to {digits} digits");
    }
}

#[test]
fn the_readings_follow_the_spectral_radius() {
    for (radius, word, reading) in [("0.5", "vanishing", "ρ < 1"), ("1.5", "exploding", "ρ > 1")] {
        let (code, stdout, stderr) =
            bptt(&[&SMALL[..], &["--compute", "cpu-ref", "--loss-at", "last", "--spectral-radius", radius]].concat());
        assert_eq!(code, 0, "{stderr}");
        assert!(stdout.contains(reading), "{radius}: {stdout}");
        // The reach line and its verdict.
        assert!(stdout.lines().any(|l| l.trim_start().starts_with(word)), "{radius}: {stdout}");
        assert!(stdout.contains("only the last step has a loss term"), "{stdout}");
        assert!(!stdout.contains("tanh each step"), "identity has no φ′ line: {stdout}");
    }
    let (_, stdout, _) = bptt(&[&SMALL[..], &["--compute", "cpu-ref", "--activation", "tanh"]].concat());
    assert!(stdout.contains("φ′(a_t) = 1 − h_t² ≤ 1"), "{stdout}");
    assert!(stdout.contains("the reach line below is the one to watch"), "{stdout}");
}

#[test]
fn random_h0_and_the_files_written_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (save, plot, graph) = (dir.path().join("g.safetensors"), dir.path().join("p.svg"), dir.path().join("c.svg"));
    let files =
        ["--save", save.to_str().unwrap(), "--plot", plot.to_str().unwrap(), "--graph", graph.to_str().unwrap()];
    let (code, stdout, stderr) = bptt(&[&SMALL[..], &["--compute", "cpu-ref", "--random-h0"], &files[..]].concat());
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("seed 0, h0 ~ N(0,1) (--random-h0)"), "{stdout}");
    let tail: Vec<&str> = stdout.lines().rev().take(3).collect();
    assert_eq!(
        tail,
        [
            // Written after the report, the result first, then the figures.
            format!("files      graph written to {}", graph.display()),
            format!("files      plot written to {}", plot.display()),
            format!("files      saved grads to {}", save.display()),
        ]
    );
    for f in [&save, &plot, &graph] {
        assert!(f.exists(), "{}", f.display());
    }

    let (code, stdout, _) =
        bptt(&[&SMALL[..], &["--compute", "cpu-ref", "--json", "--plot", plot.to_str().unwrap()]].concat());
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["random_h0"], false);
    // JSON is printed before the files are written: stdout holds the object alone.
    assert!(std::fs::metadata(&plot).unwrap().len() > 0);
    let (_, stdout, _) = bptt(&[&SMALL[..], &["--compute", "cpu-ref"]].concat());
    assert!(stdout.contains("seed 0, h0 = 0"), "{stdout}");
    assert!(!stdout.contains("written to") && !stdout.contains("saved grads"), "{stdout}");
}

#[test]
fn the_speed_section_says_what_a_software_adapters_time_means() {
    let (code, stdout, stderr) = bptt(&[&SMALL[..], &["--repeat", "1"]].concat());
    assert_eq!(code, 0, "{stderr}");
    let (_, json, _) = bptt(&[&SMALL[..], &["--repeat", "1", "--json"]].concat());
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let software = v["adapter"]["device_type"].as_str().unwrap().starts_with("CPU");
    // Said once, up front under the adapter line (and not again in the speed section).
    let lines: Vec<&str> = stdout.lines().collect();
    let at = lines.iter().position(|l| l.starts_with("adapter")).unwrap();
    let note = lines[at + 1].contains("a software adapter");
    assert_eq!(note, software, "{stdout}");
    if note {
        assert!(lines[at + 1].contains("CPU cores"), "{stdout}");
        assert!(lines[at + 2].contains("say nothing about GPU speed"), "{stdout}");
    }
    assert_eq!(stdout.matches("say nothing about GPU speed").count(), software as usize, "{stdout}");
    // One timed run: no min and max; the GPU lines are told apart by their first word.
    assert!(stdout.contains("GPU: one timed run after a warm-up"), "{stdout}");
    assert!(!stdout.contains("(min "), "{stdout}");
    let labels: Vec<&str> =
        stdout.lines().filter(|l| l.starts_with("  ")).filter_map(|l| l.split_whitespace().next()).collect();
    for label in ["gpu", "total", "rate", "floor"] {
        assert_eq!(labels.iter().filter(|l| **l == label).count(), 1, "{label}: {stdout}");
    }
    // A tiny problem's rate is small, not zero.
    let rate = stdout.lines().find(|l| l.starts_with("  rate")).unwrap();
    assert!(!rate.contains(" 0.00 ") && !rate.contains(" 0 GFLOP"), "{rate}");
    assert!(!stdout.contains(".000000"), "{stdout}");
}
