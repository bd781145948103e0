//! The commands the docs show run as written and print what the docs say they print: every
//! command of docs/tutorial.md, README's quick start, and the T = 100 and copy examples of
//! docs/training.md. A change that moves a documented number fails here until the docs are
//! updated; the times are never compared.
//!
//! Reading a documented output: each line shown must appear in the command's output, in
//! order; a line `...` stands for lines left out, and `…` inside a line for any text (a GPU's
//! own rounding, an adapter's name). The fast f32 CPU path's numbers depend on the kernels the
//! CPU runs: the docs were measured with AVX-512, so where the machine has it they must match
//! to the last printed digit, and elsewhere every word must match and every number lie within
//! a factor of 2 of the documented one (a training run amplifies a change of rounding, but not
//! to another order of magnitude). Figures written under docs/ go to a temporary folder; a
//! graph (the f64 reference's, the same on every machine) must equal the committed file byte
//! for byte.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).expect(path)
}

fn avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// A command line split as a shell would: words, with '…' quoting.
fn words(command: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let (mut quoted, mut started) = (false, false);
    for c in command.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                started = true;
            }
            c if c.is_whitespace() && !quoted => {
                if started {
                    out.push(std::mem::take(&mut word));
                    started = false;
                }
            }
            c => {
                word.push(c);
                started = true;
            }
        }
    }
    if started {
        out.push(word);
    }
    out
}

/// Runs a documented `bptt …` command from the repository's root, its outputs under docs/
/// redirected to `out`; returns stdout, and the (written, committed) pairs of files.
fn run(command: &str, out: &Path) -> (String, Vec<(PathBuf, PathBuf)>) {
    let args = words(command);
    assert_eq!(args[0], "bptt", "{command}");
    let mut files = Vec::new();
    let args: Vec<String> = args[1..]
        .iter()
        .map(|a| match a.strip_prefix("docs/") {
            Some(name) => {
                let written = out.join(name);
                files.push((written.clone(), root().join(a)));
                written.to_string_lossy().into_owned()
            }
            None => a.clone(),
        })
        .collect();
    let o = Command::new(env!("CARGO_BIN_EXE_bptt"))
        .args(&args)
        .current_dir(root())
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .output()
        .expect("run bptt");
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{command}: exit {:?}\n{stdout}{}", o.status, String::from_utf8_lossy(&o.stderr));
    (stdout, files)
}

/// A number in a token ("0.0213", "×0.9961", "40.8%", "7.99e3", "(0.1667)"), if it is one.
fn number(token: &str) -> Option<f64> {
    let t = token.trim_matches(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == 'e'));
    t.parse().ok().filter(|_| t.chars().any(|c| c.is_ascii_digit()))
}

/// Whether `actual` is the line `shown` describes (`…` matching any text); `loose`: numbers
/// within a factor of 2, words equal.
fn same(shown: &str, actual: &str, loose: bool) -> bool {
    if shown.contains('…') {
        let pieces: Vec<&str> = shown.split('…').collect();
        let (first, last) = (pieces[0], pieces[pieces.len() - 1]);
        if !actual.starts_with(first.trim_end()) || !actual.ends_with(last.trim_start()) {
            return false;
        }
        let mut rest = &actual[first.trim_end().len()..];
        for p in &pieces[1..pieces.len() - 1] {
            match rest.find(p.trim()) {
                Some(at) => rest = &rest[at + p.trim().len()..],
                None => return false,
            }
        }
        return true;
    }
    if !loose {
        return shown.trim_end() == actual.trim_end();
    }
    let (a, b): (Vec<&str>, Vec<&str>) = (shown.split_whitespace().collect(), actual.split_whitespace().collect());
    a.len() == b.len()
        && a.iter().zip(&b).all(|(x, y)| match (number(x), number(y)) {
            (Some(u), Some(v)) if u == 0.0 || v == 0.0 => u == v,
            (Some(u), Some(v)) => u.signum() == v.signum() && (u / v).abs() <= 2.0 && (v / u).abs() <= 2.0,
            _ => x == y,
        })
}

/// Checks that every shown line appears in `output`, in order.
fn assert_shows(what: &str, shown: &[String], output: &str, loose: bool) {
    let lines: Vec<&str> = output.lines().collect();
    let mut at = 0;
    for s in shown.iter().filter(|s| s.trim() != "..." && !s.trim().is_empty()) {
        match lines[at..].iter().position(|l| same(s, l, loose)) {
            Some(k) => at += k + 1,
            None => panic!("{what}: the docs show\n{s}\nbut the output (from line {}) is\n{output}", at + 1),
        }
    }
}

/// The block of lines indented by four spaces that follows the first line containing
/// `marker` (blank lines before it skipped), without the indentation.
fn block_after(text: &str, marker: &str) -> Vec<String> {
    let mut lines = text.lines().skip_while(|l| !l.contains(marker)).skip(1).skip_while(|l| l.trim().is_empty());
    let mut out = Vec::new();
    for l in lines.by_ref() {
        match l.strip_prefix("    ") {
            Some(rest) => out.push(rest.to_string()),
            None if l.trim().is_empty() => out.push(String::new()),
            None => break,
        }
    }
    while out.last().is_some_and(|l| l.is_empty()) {
        out.pop();
    }
    assert!(!out.is_empty(), "no indented block after {marker:?}");
    out
}

/// The tutorial's examples: each ```sh block's command, and the ```text block right after it.
fn fenced_examples(text: &str) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(l) = lines.next() {
        if l == "```sh" {
            let block: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
            let commands: Vec<&&str> = block.iter().filter(|l| l.starts_with("bptt")).collect();
            assert_eq!(commands.len(), 1, "one command per block: {block:?}");
            out.push((commands[0].to_string(), Vec::new()));
        } else if l == "```text" {
            let block: Vec<String> = lines.by_ref().take_while(|l| *l != "```").map(str::to_string).collect();
            out.last_mut().expect("an output block follows its command").1 = block;
        }
    }
    out
}

/// Whether the command's numbers come from the fast CPU path (compared loosely without
/// AVX-512, see the module doc).
fn fast_path(command: &str) -> bool {
    words(command).windows(2).any(|w| w[0] == "--compute" && w[1] == "cpu")
}

#[test]
fn every_tutorial_command_runs_and_prints_what_the_page_shows() {
    let text = read("docs/tutorial.md");
    let examples = fenced_examples(&text);
    assert!(examples.len() >= 10, "{} commands", examples.len());
    let dir = tempfile::tempdir().unwrap();
    let mut pictures = 0;
    for (command, shown) in &examples {
        let (output, files) = run(command, dir.path());
        let fast = fast_path(command) && !avx512();
        assert_shows(command, shown, &output, fast);
        for (written, committed) in files {
            let name = committed.file_name().unwrap().to_string_lossy().into_owned();
            assert!(text.contains(&format!("({name})")), "the tutorial shows {name}");
            let (new, old) = (std::fs::read(&written).unwrap(), std::fs::read(&committed).expect("committed"));
            if command.contains("--graph ") {
                assert!(new == old, "{}: the committed graph is not the one {command} draws", committed.display());
            } else {
                assert!(!new.is_empty() && !old.is_empty());
            }
            pictures += 1;
        }
    }
    assert!(pictures >= 4, "{pictures} pictures");
}

#[test]
fn the_quick_start_prints_what_readme_shows() {
    let readme = read("README.md");
    let command = "bptt train --activation relu --init-recurrent identity --clip 1 --compute cpu";
    assert!(readme.contains(command));
    let shown = block_after(&readme, "The second prints");
    assert!(shown.iter().any(|l| l.starts_with("verdict")), "{shown:?}");
    let (output, _) = run(command, Path::new("."));
    assert_shows("README quick start", &shown, &output, !avx512());
}

#[test]
fn the_training_examples_print_what_docs_training_shows() {
    let page = read("docs/training.md");
    for command in [
        "bptt train --task adding --steps 100 --hidden 64 --iters 1000 --activation relu --init-recurrent identity --clip 1 --compute cpu",
        "bptt train --task copy --steps 30 --hidden 64 --iters 1500 --compute cpu --clip 1 --lr 3e-3 --eval-every 500 --activation relu --init-recurrent identity",
    ] {
        let shown = block_after(&page, command);
        assert!(shown.iter().any(|l| l.starts_with("result")), "{shown:?}");
        let (output, _) = run(command, Path::new("."));
        assert_shows(command, &shown, &output, !avx512());
    }
}

/// The seed-0 run of each row of the copy table lies in that row's documented range (the
/// table itself, five seeds, comes from scripts/train_tables.py).
#[test]
fn seed_zero_of_the_copy_table_lies_in_its_ranges() {
    let page = read("docs/training.md");
    let base =
        "bptt train --task copy --steps 30 --hidden 64 --iters 1500 --compute cpu --clip 1 --lr 3e-3 --eval-every 500";
    let mut rows = 0;
    for line in page.lines().filter(|l| l.starts_with("| `--activation") && l.contains("] |")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let model = cells[1].trim_matches('`');
        let range = |cell: &str| -> (f64, f64) {
            let inside = &cell[cell.find('[').unwrap() + 1..cell.find(']').unwrap()];
            let (lo, hi) = inside.split_once('–').unwrap();
            (number(lo).unwrap(), number(hi).unwrap())
        };
        let (xent, recalled) = (range(cells[2]), range(cells[3]));
        let (output, _) = run(&format!("{base} {model} --seed 0 --json"), Path::new("."));
        let v: serde_json::Value = serde_json::from_str(&output).unwrap();
        let (x, a) = (v["final_eval"]["loss"].as_f64().unwrap(), 100.0 * v["final_eval"]["accuracy"].as_f64().unwrap());
        // The table rounds to 3 digits (and 0.1%); without AVX-512 (see the module doc) the
        // range is widened by its own width on each side.
        let widen = |(lo, hi): (f64, f64), round: f64| {
            let w = if avx512() { 0.0 } else { hi - lo };
            (lo - w - round, hi + w + round)
        };
        let (xent, recalled) = (widen(xent, 5e-4), widen(recalled, 0.05));
        assert!(x >= xent.0 && x <= xent.1, "{model}: {x} outside {xent:?}");
        assert!(a >= recalled.0 && a <= recalled.1, "{model}: {a}% outside {recalled:?}");
        rows += 1;
    }
    assert_eq!(rows, 2);
}
