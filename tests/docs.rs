//! The docs stand alone and stay true: README's and docs/library.md's programs are the files in
//! `examples/` word for word (which `cargo test` builds and `tests/examples.rs` runs), every
//! flag of both `--help`s is documented, every relative link and anchor leads somewhere,
//! README stays a front page, and nothing points outside the repository.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).expect(path)
}

/// The guide's pages, in reading order.
const PAGES: &[&str] =
    &["tutorial", "model", "report", "gradients", "training", "library", "python", "design", "performance"];

/// README and every page of docs/.
fn doc_files() -> Vec<String> {
    let mut files = vec!["README.md".to_string()];
    for e in std::fs::read_dir(root().join("docs")).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".md") {
            files.push(format!("docs/{name}"));
        }
    }
    files.sort();
    files
}

fn block(example: &str) -> String {
    format!("```rust\n{}```", read(&format!("examples/{example}.rs")))
}

#[test]
fn the_programs_in_the_docs_are_the_examples_verbatim() {
    let readme = read("README.md");
    for example in ["check", "train"] {
        assert!(readme.contains(&block(example)), "README must show examples/{example}.rs verbatim");
    }
    let library = read("docs/library.md");
    for example in ["check", "train", "graph"] {
        assert!(library.contains(&block(example)), "docs/library.md must show examples/{example}.rs verbatim");
        assert!(read(&format!("examples/{example}.rs")).contains("fn main()"));
    }
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
fn every_flag_is_documented() {
    let docs: String = doc_files().iter().map(|f| read(f)).collect();
    for (args, at_least) in [(&[][..], 25), (&["train"][..], 25)] {
        let flags = flags_of(args);
        assert!(flags.len() > at_least, "bptt {args:?} --help: {flags:?}");
        let missing: Vec<&String> = flags.iter().filter(|f| !docs.contains(f.as_str())).collect();
        assert!(missing.is_empty(), "flags of bptt {args:?} --help in neither README nor docs/: {missing:?}");
    }
}

#[test]
fn readme_is_a_front_page_and_the_guide_is_complete() {
    let lines = read("README.md").lines().count();
    assert!((150..=250).contains(&lines), "README has {lines} lines");
    for page in PAGES {
        let text = read(&format!("docs/{page}.md"));
        assert!(text.starts_with("# "), "docs/{page}.md opens with its title");
        assert!(read("README.md").contains(&format!("(docs/{page}.md)")), "README links docs/{page}.md");
    }
    // The test command README gives is the one CI runs, and it runs both suites: the Rust
    // tests and the Python package's.
    assert!(read("README.md").contains("\nscripts/test\n"), "README gives scripts/test as the test command");
    assert!(read(".ci/run").lines().any(|l| l.trim() == "scripts/test"), ".ci/run runs scripts/test");
    let script = read("scripts/test");
    assert!(script.lines().any(|l| l.trim() == "cargo test --release"), "scripts/test runs the Rust tests");
    assert!(script.contains("pytest -q python/tests"), "scripts/test runs the Python tests");
}

/// GitHub's anchor of a heading: lowercase, spaces to '-', other punctuation dropped.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_ascii_alphanumeric() || c == '-' || c == '_' => Some(c),
            c if c.is_alphanumeric() => Some(c),
            _ => None,
        })
        .collect()
}

#[test]
fn every_relative_link_and_anchor_leads_somewhere() {
    for file in doc_files() {
        let text = read(&file);
        let dir = Path::new(&file).parent().unwrap_or(Path::new("")).to_path_buf();
        for (at, _) in text.match_indices("](") {
            let rest = &text[at + 2..];
            let Some(end) = rest.find(')') else { continue };
            let target = &rest[..end];
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (path, anchor) = target.split_once('#').unwrap_or((target, ""));
            let linked: PathBuf = if path.is_empty() { PathBuf::from(&file) } else { dir.join(path) };
            let full = root().join(&linked);
            assert!(full.exists(), "{file}: link to {target}: {} does not exist", linked.display());
            if !anchor.is_empty() {
                let headings: Vec<String> = std::fs::read_to_string(&full)
                    .unwrap()
                    .lines()
                    .filter(|l| l.starts_with('#'))
                    .map(|l| slug(l.trim_start_matches('#')))
                    .collect();
                assert!(headings.iter().any(|h| h == anchor), "{file}: no heading #{anchor} in {}", linked.display());
            }
        }
    }
}

#[test]
fn docs_point_inside_the_repository() {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs" || x == "md" || x == "wgsl") {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    for dir in ["src", "examples", "benches", "docs", "shaders"] {
        walk(&root().join(dir), &mut files);
    }
    files.push(root().join("README.md"));
    assert!(files.len() > 60, "{files:?}");
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for outside in ["DEVELOPERS.md", "../shared/"] {
            assert!(
                !text.contains(outside),
                "{} refers to {outside}, which is not part of the repository",
                f.display()
            );
        }
    }
}
