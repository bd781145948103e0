//! The programs in `examples/` (docs/library.md) run and print what they say: `cargo test`
//! builds them, and each is run here from the build folder.

use std::process::Command;

/// Runs the built example `name`, asserting success; its stdout.
fn run(name: &str) -> String {
    // This test runs from target/<profile>/deps/; cargo test puts the examples in
    // target/<profile>/examples/.
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|d| d.parent()).unwrap().join("examples");
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(path.exists(), "{} is not built (cargo test builds examples/)", path.display());
    let out = Command::new(&path).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{name}: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    stdout
}

/// A number printed after `label` in `text`.
fn number_after(text: &str, label: &str) -> f64 {
    let at = text.find(label).unwrap_or_else(|| panic!("no '{label}' in {text}")) + label.len();
    let word: String =
        text[at..].trim_start().chars().take_while(|c| !c.is_whitespace() && !matches!(c, ',' | ';' | ')')).collect();
    word.parse().unwrap_or_else(|_| panic!("'{word}' after '{label}' is no number"))
}

#[test]
fn the_check_example_passes_and_saves_the_gradients() {
    let out = run("check");
    assert!(out.contains("check Some(true)"), "{out}");
    assert!(number_after(&out, "largest relative error") < 1e-4, "{out}");
    let saved = std::env::temp_dir().join("bptt-grads.safetensors");
    let loaded = bptt::io::load_grads(&saved).unwrap();
    assert_eq!(loaded.shape, bptt::Shape::new(32, 4, 8, 64, 8).unwrap());
    assert_eq!(loaded.grads.grad_w_hh.len(), 64 * 64);
    assert!(number_after(&out, "loss") > 0.0 && (loaded.grads.loss - number_after(&out, "loss")).abs() < 1e-5, "{out}");
}

#[test]
fn the_train_example_learns_the_adding_problem() {
    let out = run("train");
    let mse = number_after(&out, "held-out mse");
    let baseline = number_after(&out, "baseline");
    assert!((baseline - 1.0 / 6.0).abs() < 0.02, "{out}");
    assert!(mse < 0.05, "the IRNN learns: {out}");
}

#[test]
fn the_graph_example_writes_the_graph() {
    let out = run("graph");
    assert!(out.contains("graph of 6 steps written to"), "{out}");
    let svg = std::fs::read_to_string(std::env::temp_dir().join("bptt-graph.svg")).unwrap();
    assert!(svg.starts_with("<svg") || svg.starts_with("<?xml"), "{}", &svg[..svg.len().min(80)]);
    assert!(svg.contains("h_6") || svg.contains("h₆"), "the last hidden state is drawn");
}
