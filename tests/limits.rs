//! `bptt train` keeps the rules the gradient check keeps (docs/report.md, "Errors and
//! outputs"): memory estimated before anything is allocated and `BPTT_MAX_MEMORY` obeyed, GPU
//! limits checked before the engine is built, every number written by the report's rule and
//! f32 parameters that vanish or overflow refused, every echoed value cut by one rule,
//! negative numbers taken as values; and its own messages say the right thing (the iteration a
//! run diverged at, where the weights came from, "1 iteration").

mod common;

use std::process::Command;

/// Runs the binary with `env` (the variables these tests are about removed otherwise), and
/// `cpu_seconds` as the CPU time it may use (RLIMIT_CPU: past it, the process is killed).
fn run(args: &[&str], env: &[(&str, &str)], cpu_seconds: Option<u64>) -> (i32, String, String) {
    let mut cmd = common::bptt_command_clean_env();
    cmd.args(args).envs(env.iter().copied());
    if let Some(limit) = cpu_seconds {
        use std::os::unix::process::CommandExt;
        // SAFETY: only setrlimit, async-signal-safe, between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                let lim = libc::rlimit { rlim_cur: limit, rlim_max: limit };
                if libc::setrlimit(libc::RLIMIT_CPU, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    common::output(&mut cmd)
}

fn bptt(args: &[&str]) -> (i32, String, String) {
    run(args, &[], None)
}

/// stderr's one line (asserted to be exactly one), without the noise a software adapter may print.
fn one_error_line(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.contains("XDG_RUNTIME_DIR")).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].starts_with("error:"), "{stderr}");
    lines[0].to_string()
}

/// A refusal before anything ran: exit 2, one line, nothing on stdout; returns the line.
fn refused(args: &[&str], env: &[(&str, &str)]) -> String {
    let (code, stdout, stderr) = run(args, env, None);
    assert_eq!(code, 2, "{args:?} {env:?}: {stdout}{stderr}");
    assert!(stdout.is_empty(), "{args:?}: {stdout}");
    one_error_line(&stderr)
}

/// A short training run on the CPU.
const TRAIN: [&str; 11] =
    ["train", "--compute", "cpu", "--steps", "6", "--hidden", "8", "--iters", "20", "--eval-size", "32"];

/// No run of more than 20 digits anywhere: a number written by the report's rule.
fn no_long_numbers(text: &str) {
    let mut run = 0;
    for c in text.chars() {
        run = if c.is_ascii_digit() { run + 1 } else { 0 };
        assert!(run <= 20, "a number of more than 20 digits in: {text}");
    }
}

#[test]
fn a_training_run_over_the_memory_is_refused_with_the_figure_before_anything_is_allocated() {
    // Before: bptt train estimated nothing: `--hidden 30000` or `--eval-size 4000000000`
    // aborted with "memory allocation … failed" (exit 134, a backtrace), and BPTT_MAX_MEMORY
    // of 1 or 1M was ignored (exit 0).
    let base = ["train"];
    for (args, env, lower) in [
        (&["--hidden", "30000", "--compute", "cpu"][..], &[("BPTT_MAX_MEMORY", "16G")][..], "the weights"),
        (&["--eval-size", "4000000000", "--compute", "cpu"], &[], "the held-out set, 4.4 TiB: lower --eval-size"),
        (&["--hidden", "30000", "--compute", "gpu"], &[("BPTT_MAX_MEMORY", "8G")], "lower --hidden"),
        (&["--compute", "cpu"], &[("BPTT_MAX_MEMORY", "1")], "a minibatch with its states"),
        (&["--compute", "cpu"], &[("BPTT_MAX_MEMORY", "1M")], "lower --steps or --batch"),
        (&["--iters", "4000000000", "--log-every", "4000000000"], &[("BPTT_MAX_MEMORY", "16G")], "--log-every"),
    ] {
        let line = refused(&[&base[..], args].concat(), env);
        assert!(line.contains("needs about") && line.contains("of memory, more than the"), "{args:?}: {line}");
        assert!(line.contains("the largest part is ") && line.contains(lower), "what to change: {line}");
        assert_eq!(line.contains("(BPTT_MAX_MEMORY)"), !env.is_empty(), "{line}");
        no_long_numbers(&line);
    }
    // The figure is the estimate's: h = 30000 keeps w_hh (3.6 GB in f32) many times.
    let line =
        refused(&[&base[..], &["--hidden", "30000", "--compute", "cpu"]].concat(), &[("BPTT_MAX_MEMORY", "16G")]);
    assert!(line.contains("GiB of memory, more than the 16.0 GiB available (BPTT_MAX_MEMORY)"), "{line}");
    assert!(line.contains("the weights and the optimiser's state, 46.9 GiB: lower --hidden"), "{line}");
    // The sample and the text count too.
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("t.txt");
    std::fs::write(&text, "abcabcabcabd ".repeat(40)).unwrap();
    let text_task = ["--task", "text", "--text", text.to_str().unwrap()];
    let line = refused(&[&TRAIN[..], &text_task, &["--sample", "4000000000"]].concat(), &[("BPTT_MAX_MEMORY", "1G")]);
    assert!(line.contains("needs about 14.9 GiB") && line.contains("lower --sample"), "4 bytes a character: {line}");
    let line = refused(&[&TRAIN[..], &text_task].concat(), &[("BPTT_MAX_MEMORY", "1K")]);
    assert!(line.contains("reading --text"), "{line}");
    // The gradient check reads its problem file within the figure too.
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tanh_xent_bias_h0.safetensors");
    let line = refused(&["--compute", "cpu-ref", "--load", fixture], &[("BPTT_MAX_MEMORY", "100")]);
    assert!(line.contains("tanh_xent_bias_h0.safetensors needs about") && line.contains("(BPTT_MAX_MEMORY)"), "{line}");
    // Invalid values are refused as before, and a generous one lets the run through.
    let line = refused(&TRAIN, &[("BPTT_MAX_MEMORY", "garbage")]);
    assert!(line.contains("BPTT_MAX_MEMORY=garbage is not a number of bytes"), "{line}");
    let (code, _, stderr) = run(&TRAIN, &[("BPTT_MAX_MEMORY", "64M")], None);
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn gpu_limits_are_checked_before_the_engine_is_built() {
    // Before: a buffer over the adapter's binding limit (here the truncation lanes, or w_hh)
    // failed inside the engine, exit 1, without the check's hint; and a long --log-every
    // history needed a buffer as long (a raw wgpu validation error past the limit).
    // 1002·32·999·256 f32 lanes: 30 GiB, over any adapter's binding limit.
    // On the GPU (the default, `auto`, trains on the CPU when the only adapter is a software one).
    let line = refused(
        &["train", "--compute", "gpu", "--steps", "1000", "--truncate", "999", "--hidden", "256", "--iters", "1"],
        &[],
    );
    assert!(line.contains("truncation lanes") && line.contains("at most"), "{line}");
    assert!(line.contains("(or a smaller --truncate K"), "the hint: {line}");
    // A log window longer than the history buffer (1024 losses) reads it back as it fills: the
    // one point of a 1100-iteration window is the mean of the eleven 100-iteration windows.
    let base = [
        "train",
        "--compute",
        "gpu",
        "--steps",
        "2",
        "--hidden",
        "4",
        "--batch",
        "2",
        "--iters",
        "1100",
        "--eval-size",
        "2",
    ];
    let curve = |log_every: &str| {
        let (code, stdout, stderr) =
            bptt(&[&base[..], &["--log-every", log_every, "--eval-every", "1100", "--json"]].concat());
        assert_eq!(code, 0, "{stderr}");
        let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        v["curve"].as_array().unwrap().iter().map(|p| p["train"].as_f64().unwrap()).collect::<Vec<f64>>()
    };
    let (one, eleven) = (curve("1100"), curve("100"));
    assert_eq!((one.len(), eleven.len()), (1, 11));
    let mean = eleven.iter().sum::<f64>() / 11.0;
    assert!((one[0] - mean).abs() <= 1e-6 * mean, "{one:?} vs the mean {mean} of {eleven:?}");
}

#[test]
fn a_diverged_run_names_the_first_iteration_whose_loss_was_not_finite() {
    // Before: when a held-out evaluation came before the next log point, the error named the
    // evaluation's iteration ("the loss is NaN at iteration 50" for a loss NaN from iteration 3).
    let diverging = ["--optim", "sgd", "--lr", "1e30", "--iters", "200"];
    let line = |extra: &[&str]| {
        let (code, stdout, stderr) = bptt(&[&TRAIN[..7], &diverging[..], extra].concat());
        assert_eq!(code, 1, "{stderr}");
        assert!(stdout.is_empty());
        one_error_line(&stderr)
    };
    let every = line(&["--log-every", "1"]);
    assert!(every.contains("training diverged: the loss is") && every.contains("at iteration"), "{every}");
    let at = |l: &str| l.split("at iteration ").nth(1).unwrap().split(';').next().unwrap().parse::<usize>().unwrap();
    assert!(at(&every) < 10, "{every}");
    let late = line(&["--log-every", "100", "--eval-every", "50"]);
    assert_eq!(at(&late), at(&every), "{late} vs {every}");
}

#[test]
fn every_echoed_value_is_cut_and_escaped_by_one_rule() {
    // Before: --init-from echoed a metadata value in full (a 389-character line, escape codes
    // and all), and a flag's value came back whole in clap's message.
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("m.st");
    let value = format!("{}\u{1b}[31m{}", "x".repeat(300), "y".repeat(89));
    let meta = std::collections::BTreeMap::from([("activation".to_string(), value)]);
    let (d, h, q) = (2, 8, 1);
    let w = [vec![0.0f32; h * d], vec![0.0; h * h], vec![0.0; q * h], vec![0.0; h], vec![0.0; q]];
    bptt::io::save_model(&m, [&w[0], &w[1], &w[2], &w[3], &w[4]], (d, h, q), &meta).unwrap();
    let line = refused(&[&TRAIN[..], &["--init-from", m.to_str().unwrap()]].concat(), &[]);
    assert!(line.contains(&format!("unknown activation '{}…'", "x".repeat(80))), "{line}");
    assert!(!line.contains('\u{1b}') && line.chars().count() < 250, "{line}");
    for args in [&["train", "--task"][..], &["--activation"], &["train", "--lr"], &["--tolerance"]] {
        let long = "z".repeat(5000);
        let line = refused(&[args, &[long.as_str()]].concat(), &[]);
        assert!(line.contains(&format!("{}…", "z".repeat(80))) && line.chars().count() < 400, "{args:?}: {line}");
    }
}

/// Every flag of `bptt ARGS --help` that takes a value other than a path or a text.
fn value_flags(args: &[&str]) -> Vec<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_bptt")).args(args).arg("--help").output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    let mut flags: Vec<String> = help
        .lines()
        .filter_map(|l| {
            let l = l.trim_start();
            let (flag, value) = l.strip_prefix("--")?.split_once(" <")?;
            (!["FILE>", "STR>", "SUBSTRING>"].iter().any(|v| value.starts_with(v))).then(|| format!("--{flag}"))
        })
        .collect();
    flags.dedup();
    flags
}

#[test]
fn negative_numbers_are_values_in_every_command() {
    // Before: `bptt train --seed -1` said "unexpected argument '-1'".
    for command in [&[][..], &["train"]] {
        let flags = value_flags(command);
        assert!(flags.len() > 15 && flags.contains(&"--seed".to_string()), "{command:?}: {flags:?}");
        for flag in flags {
            let line = refused(&[command, &[flag.as_str(), "-1"]].concat(), &[]);
            assert!(!line.contains("unexpected argument"), "{command:?} {flag} -1: {line}");
            assert!(line.contains(&flag) || line.contains("-1"), "{command:?} {flag} -1: {line}");
        }
    }
}

#[test]
fn numbers_in_messages_follow_the_report_rule_and_f32_parameters_are_refused_out_of_range() {
    // Before: `--sweep-radius 1e308` printed ρ as a 309-digit integer, `--lr 1e-30` as 0.000…1
    // with 30 zeros, and `--lr 1e-50` ran: 0 in f32, a silent no-op.
    let (code, stdout, stderr) =
        bptt(&["--compute", "cpu-ref", "--hidden", "4", "--steps", "3", "--sweep-radius", "0.5,1e308"]);
    assert_eq!(code, 1, "{stderr}");
    for text in [&stdout, &stderr] {
        no_long_numbers(text);
    }
    assert!(stderr.contains("ρ=1e308: "), "{stderr}");
    let (code, stdout, stderr) =
        bptt(&[&TRAIN[..], &["--lr", "1e-30", "--clip", "1e30", "--init-scale", "0.5"]].concat());
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("w_hh init normal ×0.5; adam lr 1e-30, clip 1e30"), "{stdout}");
    no_long_numbers(&stdout);
    for (args, field) in [
        (&[&TRAIN[..], &["--lr", "1e-50"]].concat(), "--lr 1e-50 is 0 in f32"),
        (&[&TRAIN[..], &["--lr", "1e39"]].concat(), "--lr 1e39 overflows f32"),
        (&[&TRAIN[..], &["--clip", "1e-45"]].concat(), "--clip 1e-45 is 0 in f32"),
        (&[&TRAIN[..], &["--init-scale", "1e-50"]].concat(), "--init-scale 1e-50 is 0 in f32"),
        (&[&TRAIN[..], &["--optim", "sgd", "--momentum", "1e-50"]].concat(), "--momentum 1e-50 is 0 in f32"),
        (&vec!["--compute", "cpu-ref", "--hidden", "4", "--steps", "3", "--clip", "1e-50"], "--clip 1e-50 is 0 in f32"),
    ] {
        let line = refused(args, &[]);
        assert!(line.contains(field) && line.contains("f32 is about"), "{args:?}: {line}");
    }
}

#[test]
fn the_summary_says_where_the_weights_came_from_and_counts_right() {
    // Before: "after 1 iterations", and a run from a model file said "w_hh init from file ×1"
    // with `init_scale: 1.0` in the JSON.
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("m.st");
    let m = m.to_str().unwrap();
    let one = [&TRAIN[..7], &["--iters", "1", "--save-model", m]].concat();
    let (code, stdout, stderr) = bptt(&one);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("result       after 1 iteration: "), "{stdout}");
    let (code, stdout, stderr) = bptt(&[&TRAIN[..], &["--init-from", m]].concat());
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains(&format!("model        tanh RNN, weights from {m}; adam lr 0.001\n")), "{stdout}");
    assert!(stdout.contains("after 20 iterations") && !stdout.contains("init from file"), "{stdout}");
    let (_, json, _) = bptt(&[&TRAIN[..], &["--init-from", m, "--json"]].concat());
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(v["init_scale"].is_null(), "{json}");
    assert_eq!(v["init_from"], m);
    let (_, json, _) = bptt(&[&TRAIN[..], &["--json"]].concat());
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!((v["init_scale"].as_f64(), v["init_from"].is_null()), (Some(1.0), true));
}

#[test]
fn sampling_is_linear_in_its_length() {
    // Before: every sampled character counted the characters so far: 50 000 took 0.34 s,
    // 200 000 2.66 s, so 3 000 000 would take about ten minutes of CPU. Linear, it takes about
    // a second; the limit of 60 CPU seconds (the process is killed past it) is a bound on the
    // work, sixty times what it needs, not a timing.
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("t.txt");
    std::fs::write(&text, "abcabcabcabd ".repeat(40)).unwrap();
    let args = [&TRAIN[..], &["--task", "text", "--text", text.to_str().unwrap(), "--sample", "3000000"]].concat();
    let (code, stdout, stderr) = run(&[&args[..], &["--prompt", "ab", "--json"]].concat(), &[], Some(60));
    assert_eq!(code, 0, "killed past 60 s of CPU (quadratic?): {stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let sample = v["sample"].as_str().unwrap();
    assert_eq!(sample.chars().count(), 3_000_002);
    assert!(sample.starts_with("ab") && sample.chars().all(|c| "abcd ".contains(c)));
}
