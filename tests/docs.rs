//! The docs stand alone: README's "From Rust" program is `examples/from_rust.rs` word for word
//! (which `cargo test` compiles), every flag of `--help` is in README, and nothing points
//! outside the repository.

use std::process::Command;

fn read(path: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).expect(path)
}

#[test]
fn readme_from_rust_is_the_example_verbatim() {
    let readme = read("README.md");
    let example = read("examples/from_rust.rs");
    let block = format!("```rust\n{example}```");
    assert!(readme.contains(&block), "README's \"From Rust\" block must be examples/from_rust.rs verbatim");
    assert!(example.contains("fn main()"));
}

/// Every `--flag` that `bptt ARGS --help` prints.
fn flags_of(args: &[&str]) -> Vec<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_bptt")).args(args).arg("--help").output().expect("run bptt --help");
    let help = String::from_utf8(out.stdout).unwrap();
    let mut flags: Vec<String> = help
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|w| w.starts_with("--") && w.len() > 2 && !["--help", "--version"].contains(w))
        .map(str::to_string)
        .collect();
    flags.sort();
    flags.dedup();
    flags
}

#[test]
fn every_flag_is_in_the_readme() {
    let readme = read("README.md");
    for (args, at_least) in [(&[][..], 25), (&["train"][..], 25)] {
        let flags = flags_of(args);
        assert!(flags.len() > at_least, "bptt {args:?} --help: {flags:?}");
        let missing: Vec<&String> = flags.iter().filter(|f| !readme.contains(f.as_str())).collect();
        assert!(missing.is_empty(), "flags of bptt {args:?} --help missing from README: {missing:?}");
    }
}

#[test]
fn docs_point_inside_the_repository() {
    let mut files = vec!["README.md".to_string()];
    for dir in
        ["src", "src/cpu", "src/cpu/fast", "src/gpu", "src/io", "src/graph", "src/variant", "examples", "benches"]
    {
        let Ok(entries) = std::fs::read_dir(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir)) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".rs") {
                files.push(format!("{dir}/{name}"));
            }
        }
    }
    assert!(files.len() > 30, "{files:?}");
    for f in files {
        let text = read(&f);
        for outside in ["DEVELOPERS.md", "../shared/"] {
            assert!(!text.contains(outside), "{f} refers to {outside}, which is not part of the repository");
        }
    }
}
