//! The one rule for the files both commands write (docs/report.md, "Errors and outputs"): no
//! output is an input or another output, by file identity (hard and symbolic links included);
//! every file goes through the same atomic write, each on its own, so a failed write leaves
//! the old file as it was and costs no other file; a failed write is one plain line; the same
//! run writes the same bytes; and a failed check still draws its graph, overflow labelled.

mod common;

use std::path::{Path, PathBuf};

/// Runs the binary with `env`, and `max_file_bytes` as the largest file it may write
/// (RLIMIT_FSIZE, with SIGXFSZ ignored: a write past it fails with EFBIG, as on a full disk).
fn run(args: &[&str], env: &[(&str, &str)], max_file_bytes: Option<u64>) -> (i32, String, String) {
    let mut cmd = common::bptt_command_clean_env();
    cmd.args(args).envs(env.iter().copied());
    if let Some(limit) = max_file_bytes {
        use std::os::unix::process::CommandExt;
        // SAFETY: only async-signal-safe calls (setrlimit, signal) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                let lim = libc::rlimit { rlim_cur: limit, rlim_max: limit };
                if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                Ok(())
            });
        }
    }
    common::output(&mut cmd)
}

fn bptt(args: &[&str]) -> (i32, String, String) {
    run(args, &[], None)
}

/// stderr's lines, without the noise a software adapter may print.
fn error_lines(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| !l.contains("XDG_RUNTIME_DIR")).collect()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A short training run on the CPU.
const TRAIN: [&str; 11] =
    ["train", "--compute", "cpu", "--steps", "6", "--hidden", "8", "--iters", "20", "--eval-size", "32"];

/// A small text for `--task text`.
fn corpus(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, "abcabcabcabd ".repeat(40)).unwrap();
    path
}

/// A model file written by `bptt train --save-model`.
fn model(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let (code, _, stderr) = bptt(&[&TRAIN[..], &["--save-model", s(&path)]].concat());
    assert_eq!(code, 0, "{stderr}");
    path
}

/// A problem file for `--load`.
fn problem(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let spec = bptt::ProblemSpec::new(bptt::Shape::new(3, 1, 2, 4, 2).unwrap());
    bptt::io::save_problem(&path, &bptt::random_problem(&spec).unwrap()).unwrap();
    path
}

/// Asserts a refusal before anything ran: exit 2, one line naming `needle`, nothing on stdout.
fn assert_refused(args: &[&str], env: &[(&str, &str)], needle: &str) {
    let (code, stdout, stderr) = run(args, env, None);
    assert_eq!(code, 2, "{args:?}: {stdout}{stderr}");
    assert!(stdout.is_empty(), "{args:?}: nothing ran: {stdout}");
    let lines = error_lines(&stderr);
    assert_eq!(lines.len(), 1, "{args:?}: {stderr}");
    assert!(lines[0].contains(needle), "{args:?}: {needle:?} in {stderr}");
}

#[test]
fn train_refuses_an_output_that_is_an_input_or_another_output() {
    // Before: `--plot` naming the `--text` file replaced the corpus with an SVG, `--plot` =
    // `--init-from` replaced the model, and `--save-model` = `--plot` wrote both and reported
    // both; nothing compared bptt train's paths.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let text = corpus(d, "corpus.svg");
    let m = model(d, "m.svg");
    let (text_bytes, model_bytes) = (std::fs::read(&text).unwrap(), std::fs::read(&m).unwrap());
    // The same files through a hard link, a symbolic link and another spelling of the folder.
    std::fs::hard_link(&text, d.join("hard.svg")).unwrap();
    std::os::unix::fs::symlink(&m, d.join("link.svg")).unwrap();
    std::fs::create_dir(d.join("sub")).unwrap();
    let at = |name: &str| d.join(name).to_string_lossy().into_owned();
    let (hard, link, p, p_again) = (at("hard.svg"), at("link.svg"), at("p.svg"), at("sub/../p.svg"));
    let (text_s, m_s) = (s(&text), s(&m));
    let text_task = ["--task", "text", "--text"];
    let cases: Vec<(Vec<&str>, &str)> = vec![
        ([&text_task[..], &[text_s, "--plot", text_s]].concat(), "--plot"),
        ([&text_task[..], &[text_s, "--save-model", text_s]].concat(), "--save-model"),
        ([&text_task[..], &[text_s, "--save-model", &hard]].concat(), "the text --text reads"),
        ([&text_task[..], &[&hard, "--plot", text_s]].concat(), "the text --text reads"),
        (vec!["--init-from", m_s, "--plot", m_s], "would overwrite the model --init-from reads"),
        (vec!["--init-from", &link, "--plot", m_s], "the model --init-from reads"),
        (vec!["--save-model", &p, "--plot", &p], "name the same file"),
        (vec!["--save-model", &p_again, "--plot", &p], "name the same file"),
    ];
    for (args, needle) in cases {
        assert_refused(&[&TRAIN[..], &args].concat(), &[], needle);
        assert_eq!(std::fs::read(&text).unwrap(), text_bytes, "{args:?}: the corpus is untouched");
        assert_eq!(std::fs::read(&m).unwrap(), model_bytes, "{args:?}: the model is untouched");
        assert!(!d.join("p.svg").exists(), "{args:?}");
    }
    // Continuing into the file the run started from is allowed (the write is atomic).
    let (code, stdout, stderr) = bptt(&[&TRAIN[..], &["--init-from", s(&m), "--save-model", s(&m)]].concat());
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("model saved to"), "{stdout}");
    assert_ne!(std::fs::read(&m).unwrap(), model_bytes, "trained on");
    bptt::io::load_model(&m).unwrap();
}

#[test]
fn the_check_refuses_a_figure_over_its_input() {
    // Before: only `--save` was compared with `--load`: `--plot` or `--graph` naming the
    // problem file overwrote it.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (p_svg, p_dot) = (problem(d, "p.svg"), problem(d, "p.dot"));
    let bytes = std::fs::read(&p_svg).unwrap();
    std::fs::hard_link(&p_svg, d.join("hard.png")).unwrap();
    let cpu = ["--compute", "cpu-ref"];
    for (args, needle) in [
        (vec!["--load", s(&p_svg), "--plot", s(&p_svg)], "--plot"),
        (vec!["--load", s(&p_dot), "--graph", s(&p_dot)], "--graph"),
        (vec!["--load", s(&p_svg), "--graph", s(&d.join("hard.png"))], "would overwrite the problem --load reads"),
        (vec!["--load", s(&p_svg), "--save", s(&d.join("hard.png"))], "would overwrite the problem --load reads"),
    ] {
        assert_refused(&[&cpu[..], &args].concat(), &[], needle);
        assert_eq!(std::fs::read(&p_svg).unwrap(), bytes, "{args:?}");
    }
    bptt::io::load_problem(&p_dot, None, None).unwrap();
    // The font the figures are drawn with is an input too, in both commands.
    let font = ["/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "/usr/share/fonts/dejavu/DejaVuSans.ttf"]
        .iter()
        .find(|f| Path::new(f).exists())
        .expect("the plot tests need DejaVu Sans (apt-get install fonts-dejavu-core)");
    let font_svg = d.join("font.svg");
    std::fs::copy(font, &font_svg).unwrap();
    let env = [("BPTT_PLOT_FONT", s(&font_svg))];
    let tiny = ["--compute", "cpu-ref", "--hidden", "4", "--steps", "3"];
    assert_refused(&[&tiny[..], &["--plot", s(&font_svg)]].concat(), &env, "the font BPTT_PLOT_FONT reads");
    assert_refused(&[&TRAIN[..], &["--plot", s(&font_svg)]].concat(), &env, "the font BPTT_PLOT_FONT reads");
    assert_eq!(std::fs::read(&font_svg).unwrap(), std::fs::read(font).unwrap());
}

/// Whether `dir` holds a temporary file of an atomic write.
fn temporaries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".bptt-"))
        .collect()
}

#[test]
fn a_figure_that_cannot_be_written_keeps_the_old_file_and_costs_no_other() {
    // Before: `--plot` and `--graph` were written in place (on a full disk the old file was
    // destroyed and a truncated one left), the error was a Rust debug chain
    // (ImageError(IoError(Custom { … }))), and in bptt train a failed plot stopped the model
    // from being saved.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (plot, graph, m, save) = (d.join("plot.png"), d.join("graph.png"), d.join("m.st"), d.join("g.st"));
    for f in [&plot, &graph] {
        std::fs::write(f, b"the old figure").unwrap();
    }
    // 16 KiB: enough for the model and the result, not for a 900×560 PNG.
    let limit = Some(16 << 10);
    let (code, stdout, stderr) = run(&[&TRAIN[..], &["--plot", s(&plot), "--save-model", s(&m)]].concat(), &[], limit);
    assert_eq!(code, 1, "{stdout}{stderr}");
    let lines = error_lines(&stderr);
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].starts_with(&format!("error: {}: cannot write: ", plot.display())), "{stderr}");
    assert!(lines[0].contains("File too large"), "the OS's reason: {stderr}");
    assert!(!lines[0].contains('{') && !lines[0].contains("Error("), "a plain line, no debug chain: {stderr}");
    assert_eq!(std::fs::read(&plot).unwrap(), b"the old figure");
    assert!(stdout.ends_with(&format!("files        model saved to {}\n", m.display())), "{stdout}");
    bptt::io::load_model(&m).unwrap();
    assert!(temporaries(d).is_empty(), "{:?}", temporaries(d));

    // The check: the result is written, each figure that fails is one line, old files kept.
    let args = ["--compute", "cpu-ref", "--hidden", "4", "--steps", "3", "--save", s(&save)];
    let figures = ["--plot", s(&plot), "--graph", s(&graph)];
    let (code, stdout, stderr) = run(&[&args[..], &figures[..]].concat(), &[], limit);
    assert_eq!(code, 1, "{stdout}{stderr}");
    let lines = error_lines(&stderr);
    assert_eq!(lines.len(), 2, "one line per file not written: {stderr}");
    for (line, f) in lines.iter().zip([&plot, &graph]) {
        assert!(line.starts_with(&format!("error: {}: cannot write: File too large", f.display())), "{stderr}");
        assert_eq!(std::fs::read(f).unwrap(), b"the old figure");
    }
    assert!(stdout.ends_with(&format!("files      saved grads to {}\n", save.display())), "{stdout}");
    bptt::io::load_grads(&save).unwrap();
    assert!(temporaries(d).is_empty(), "{:?}", temporaries(d));
}

#[test]
fn every_file_bptt_writes_is_the_same_bytes_for_the_same_run() {
    // Before: the same seed gave the same weights but a different model file, the metadata's
    // keys in a random order (a hash map's) each run; a result file's too.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let text = corpus(d, "t.txt");
    let train_files = [d.join("m.st"), d.join("curve.svg"), d.join("curve.png")];
    let train = [
        &TRAIN[..],
        &["--task", "text", "--text", s(&text), "--save-model", s(&train_files[0]), "--plot", s(&train_files[1])],
    ]
    .concat();
    let check_files =
        [d.join("g.st"), d.join("p.svg"), d.join("p.png"), d.join("c.svg"), d.join("c.png"), d.join("c.dot")];
    let check = |plot: &Path, graph: &Path| {
        let args =
            ["--compute", "cpu-ref", "--hidden", "4", "--steps", "3", "--save", s(&check_files[0]), "--plot", s(plot)];
        let (code, _, stderr) = bptt(&[&args[..], &["--graph", s(graph)]].concat());
        assert_eq!(code, 0, "{stderr}");
    };
    let mut runs: Vec<Vec<Vec<u8>>> = Vec::new();
    for _ in 0..3 {
        let (code, _, stderr) = bptt(&train);
        assert_eq!(code, 0, "{stderr}");
        let png = [&train[..train.len() - 1], &[s(&train_files[2])]].concat();
        let (code, _, stderr) = bptt(&png);
        assert_eq!(code, 0, "{stderr}");
        check(&check_files[1], &check_files[3]);
        check(&check_files[2], &check_files[4]);
        check(&check_files[1], &check_files[5]);
        runs.push(train_files.iter().chain(&check_files).map(|f| std::fs::read(f).unwrap()).collect());
    }
    for (k, f) in train_files.iter().chain(&check_files).enumerate() {
        assert!(runs[0][k].len() > 100, "{}", f.display());
        for r in &runs[1..] {
            assert!(r[k] == runs[0][k], "{} differs between two runs of the same command", f.display());
        }
    }
    // The model's metadata reads back whole.
    let m = bptt::io::load_model(&train_files[0]).unwrap();
    assert_eq!(m.metadata.keys().collect::<Vec<_>>(), ["activation", "task", "vocab"]);
}

#[test]
fn a_failed_check_still_draws_the_graph_with_the_overflow_labelled() {
    // Before: the graph of a failed check was written with "NaN" for the norms that overflowed.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (svg, dot, plot, save) = (d.join("g.svg"), d.join("g.dot"), d.join("p.svg"), d.join("r.st"));
    let base = ["--hidden", "16", "--steps", "512", "--spectral-radius", "3", "--compute", "cpu-ref"];
    for graph in [&svg, &dot] {
        let files = ["--graph", s(graph), "--plot", s(&plot), "--save", s(&save)];
        let (code, stdout, stderr) = bptt(&[&base[..], &files[..]].concat());
        assert_eq!(code, 1, "{stderr}");
        // The graph and the plot are written (they show where it overflowed), the result not.
        assert!(stdout.contains("graph written to") && stdout.contains("plot written to"), "{stdout}");
        assert!(error_lines(&stderr)[0].contains("--save") && !save.exists(), "{stderr}");
    }
    let svg = std::fs::read_to_string(&svg).unwrap();
    assert!(svg.contains(">overflow</text>"), "the norms that overflowed are labelled so");
    assert!(!svg.contains(">NaN<") && !svg.contains(">inf<"), "no NaN label");
    assert!(svg.contains("has no finite ‖∂L/∂h"), "the legend says what the label means");
    let dot = std::fs::read_to_string(&dot).unwrap();
    assert!(dot.contains("overflow") && !dot.contains("NaN"), "{dot}");
}

#[test]
fn the_library_writes_the_same_bytes_for_the_same_arguments() {
    // Before: the metadata's keys came out in a hash map's order, a different one for each map.
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.st"), dir.path().join("b.st"));
    let meta: std::collections::BTreeMap<String, String> =
        (0..8).map(|k| (format!("key{}", 7 - k), format!("value {k}"))).collect();
    let w = [vec![0.5f32; 2 * 3], vec![0.25; 3 * 3], vec![1.0; 3], vec![0.0; 3], vec![0.0; 1]];
    for path in [&a, &b] {
        bptt::io::save_model(path, [&w[0], &w[1], &w[2], &w[3], &w[4]], (2, 3, 1), &meta).unwrap();
    }
    let bytes = std::fs::read(&a).unwrap();
    assert!(bytes == std::fs::read(&b).unwrap(), "two saves of the same model differ");
    // The header holds the metadata first, its keys sorted, and reads back whole.
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&bytes[8..8 + n]).unwrap();
    let keys: Vec<usize> = (0..8).map(|k| header.find(&format!("\"key{k}\"")).unwrap()).collect();
    assert!(header.starts_with("{\"__metadata__\":{") && keys.windows(2).all(|p| p[0] < p[1]), "{header}");
    assert_eq!(n % 8, 0);
    assert_eq!(bptt::io::load_model(&a).unwrap().metadata, meta);
    // Problems too.
    let p = bptt::random_problem(&bptt::ProblemSpec::new(bptt::Shape::new(3, 2, 2, 4, 2).unwrap())).unwrap();
    for path in [&a, &b] {
        bptt::io::save_problem(path, &p).unwrap();
    }
    assert!(std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(), "two saves of the same problem differ");
    let back = bptt::io::load_problem(&a, None, None).unwrap();
    assert_eq!((back.x, back.params), (p.x, p.params));
}
