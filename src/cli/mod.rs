//! The `bptt` command: parse the arguments and the environment, turn them into the library's
//! configs, call the library, print the report, write the files, choose the exit code. Exit
//! codes: 0 success, 1 a run-time failure or a failed check, 2 bad arguments or input. Every
//! error is one line on stderr; nothing panics, not even a closed stdout.

pub mod args;
mod choice;
mod env;
mod flags;
mod progress;
mod render;
pub mod train_args;

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use args::{Args, Command, one_line_error, parse_command};
use bptt::error::{Error, one_line};
use bptt::io::Input;
use bptt::{CheckReport, Trained};
use env::Env;
use train_args::TrainArgs;

/// The whole command: what `main` returns.
pub fn main() -> ExitCode {
    env_logger::init();
    let training = std::env::args_os().nth(1).is_some_and(|a| a == "train");
    let command = match parse_command(std::env::args_os().collect()) {
        Ok(c) => c,
        Err(e) if e.use_stderr() => {
            let line = one_line_error(&e, if training { "bptt train" } else { "bptt" });
            let _ = writeln!(std::io::stderr(), "{}", one_line(&line));
            return ExitCode::from(2);
        }
        Err(e) => {
            // --help and --version
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
    };
    let env = match Env::read() {
        Ok(env) => env,
        Err(e) => return fail(&e),
    };
    match command {
        Command::Train(a) => train(&a, &env),
        Command::Check(a) if a.list_adapters => list_adapters(&a, &env),
        Command::Check(a) => check(&a, &env),
    }
}

/// One line on stderr, the library's field names written as flags. A closed stderr is not
/// worth a panic: the exit code still says it.
fn say_error(msg: &str) {
    let _ = writeln!(std::io::stderr(), "error: {}", one_line(&flags::as_flags(msg)));
}

/// Writes to stdout. Ok(false) when the reader went away (`bptt ... | head -1`): nothing more
/// is printed, quietly; any other write error is one line (exit 1).
fn print_out(text: &str) -> Result<bool, ExitCode> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => {
            say_error(&format!("cannot write the report to stdout: {e}"));
            Err(ExitCode::from(1))
        }
    }
}

/// The error's one line on stderr, and its exit code.
fn fail(e: &Error) -> ExitCode {
    say_error(&e.to_string());
    ExitCode::from(e.exit_code() as u8)
}

/// A report as pretty JSON with `--json`, else as `text()` gives it.
fn render<T: serde::Serialize>(json: bool, report: &T, text: impl FnOnce() -> String) -> Result<String, ExitCode> {
    if !json {
        return Ok(text());
    }
    serde_json::to_string_pretty(report).map(|j| j + "\n").map_err(|e| {
        say_error(&format!("cannot write the report as JSON: {e}"));
        ExitCode::from(1)
    })
}

/// The one rule for writing a command's files, after its report is out: each output is
/// written on its own, atomically (`io::write_atomic`: a temporary file in the same folder,
/// renamed), in the order given; one that fails is one line on stderr and exit 1, and costs
/// no other file. Each file written is confirmed on a line of stdout (when `show`, in the
/// report's column). Returns the exit code.
fn write_outputs(outputs: Vec<Output>, show: bool, label: &str, mut code: ExitCode) -> ExitCode {
    let mut lines = String::new();
    let mut failed = Vec::new();
    for (confirmation, write) in outputs {
        match write() {
            Ok(()) => lines.push_str(&format!("{label}{confirmation}\n")),
            Err(e) => failed.push(e),
        }
    }
    if show
        && !lines.is_empty()
        && let Err(c) = print_out(&lines)
    {
        code = c;
    }
    for e in &failed {
        code = fail(e);
    }
    code
}

/// An output: the line that confirms it ("plot written to …") and how it is written.
type Output<'a> = (String, Box<dyn FnOnce() -> bptt::Result<()> + 'a>);

fn shown(path: &Path) -> String {
    one_line(&path.display().to_string())
}

/// `--list-adapters`: one line per adapter.
fn list_adapters(args: &Args, env: &Env) -> ExitCode {
    match bptt::gpu::list_adapters(&args.gpu.request(env)) {
        Ok(adapters) => {
            let list: String = adapters.iter().map(|a| format!("{a}\n")).collect();
            print_out(&list).map_or_else(|code| code, |_| ExitCode::SUCCESS)
        }
        Err(e) => fail(&e),
    }
}

/// The gradient check: the outputs checked, the problem built or loaded, the check run; the
/// report first, then the files (a file that cannot be written never costs the report), then
/// the exit code the run earned.
fn check(args: &Args, env: &Env) -> ExitCode {
    let report = match run_check(args, env) {
        Ok(r) => r,
        Err(e) => return fail(&e),
    };
    let text = match render(args.json, &report, || render::check_text(&report, args.verbose)) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let mut code = if report.failed() { ExitCode::from(1) } else { ExitCode::SUCCESS };
    let stdout_open = print_out(&text).unwrap_or_else(|c| {
        code = c;
        false
    });
    if report.failed() {
        let mut line = format!("the check failed: {}", report.problems.join("; "));
        if let Some(path) = &args.save {
            line.push_str(&format!("; --save {} skipped (an existing file is left as it was)", shown(path)));
        }
        say_error(&line);
    }
    write_outputs(check_writes(args, &report), stdout_open && !args.json, "files      ", code)
}

fn run_check(args: &Args, env: &Env) -> bptt::Result<CheckReport> {
    check_files(args, env)?;
    let config = args.config(env);
    let long = |flops: f64| flops >= 1e8 || args.repeat.is_some_and(|r| r > 5);
    let mut report = if let Some(radii) = &args.sweep_radius {
        let spinner = progress::Spinner::new(long(bptt::flops::flops(args.shape()?)), args.json);
        bptt::sweep_with(&args.problem_spec()?, radii, &config, &spinner)?
    } else if let Some(path) = &args.load {
        let given = bptt::io::Overrides { activation: args.activation, loss: args.loss, loss_at: args.loss_at };
        let problem = bptt::io::load_problem_within(path, &given, env.max_memory)?;
        let spinner = progress::Spinner::new(long(bptt::flops::flops(problem.shape)), args.json);
        bptt::check_with(problem, &config, &spinner)?
    } else {
        let spinner = progress::Spinner::new(long(bptt::flops::flops(args.shape()?)), args.json);
        bptt::check_random(&args.problem_spec()?, &config, &spinner)?
    };
    // The report's sentences name the library's fields: here they are flags.
    report.sentences_mut().for_each(|s| *s = flags::as_flags(s));
    Ok(report)
}

/// The files a command reads that an output must not replace (`io::check_outputs`): the font
/// of the figures, and `more`.
fn inputs<'a>(env: &'a Env, more: &[(&'a str, &'a str, Option<&'a Path>, Option<&'a str>)]) -> Vec<Input<'a>> {
    let font = ("font", "the font", env.plot_font.as_deref(), None);
    more.iter()
        .chain([&font])
        .filter_map(|&(field, holds, path, replaced_by)| Some(Input { field, holds, path: path?, replaced_by }))
        .collect()
}

/// Before anything is computed: the outputs by the one rule (`io::check_outputs`: each can be
/// written, no two are one file, none is the `--load` file or the font), and the font of a
/// figure with text.
fn check_files(args: &Args, env: &Env) -> bptt::Result<()> {
    let outputs: Vec<(&str, &Path)> = [
        ("save", args.save.as_deref()),
        ("plot", args.plot.as_deref()),
        ("graph", args.graph.as_deref()),
        ("save_problem", args.save_problem.as_deref()),
    ]
    .into_iter()
    .filter_map(|(field, p)| Some((field, p?)))
    .collect();
    bptt::io::check_outputs(&outputs, &inputs(env, &[("load", "the problem", args.load.as_deref(), None)]))?;
    // The plot always draws text; the graph does only as a PNG (SVG names its fonts).
    let png_graph = args.graph.as_deref().filter(|g| g.extension().is_some_and(|e| e.eq_ignore_ascii_case("png")));
    if let Some(drawn) = args.plot.as_deref().or(png_graph) {
        env.check_font(drawn)?;
    }
    Ok(())
}

/// The check's files, in the order they are written: the result (`--save`, only if the run
/// did not fail), then the plot and the graph (written for a failed run too: they show where
/// it overflowed).
fn check_writes<'a>(args: &'a Args, report: &'a CheckReport) -> Vec<Output<'a>> {
    let mut outputs: Vec<Output> = Vec::new();
    if let (Some(path), Some(result), false) = (&args.save, &report.result, report.failed()) {
        outputs.push((
            format!("saved grads to {}", shown(path)),
            Box::new(move || {
                let mut meta = std::collections::BTreeMap::new();
                meta.insert("command_line".to_string(), command_line());
                meta.insert("result_from".to_string(), report.result_from.to_string());
                if let Some(a) = &report.adapter {
                    meta.insert("adapter".to_string(), a.to_string());
                }
                bptt::io::save_grads(path, result, &report.shape, args.save_states, &meta)
            }),
        ));
    }
    if let Some(path) = &args.plot {
        outputs.push((
            format!("plot written to {}", shown(path)),
            Box::new(move || bptt::plot::write_check_plot(path, report)),
        ));
    }
    if let Some(path) = &args.graph {
        let of = args.graph_of.unwrap_or(bptt::graph::GraphOf::default_for(report.loss_at));
        outputs.push((
            format!("graph written to {}", shown(path)),
            Box::new(move || bptt::graph::write_graph_of(path, report, of)),
        ));
    }
    if let (Some(path), Some(problem)) = (&args.save_problem, &report.problem) {
        outputs.push((
            format!("problem saved to {}", shown(path)),
            Box::new(move || {
                let mut meta = std::collections::BTreeMap::new();
                meta.insert("command_line".to_string(), command_line());
                if let Some(seed) = report.seed {
                    meta.insert("seed".to_string(), seed.to_string());
                }
                bptt::io::save_problem_with(path, problem, &meta)
            }),
        ));
    }
    outputs
}

/// The command line as typed, for a file's metadata.
fn command_line() -> String {
    std::env::args_os().map(|a| a.to_string_lossy().into_owned()).collect::<Vec<_>>().join(" ")
}

/// `bptt train`: the summary (or JSON) on stdout, then the files; one line on stderr for an
/// error.
fn train(args: &TrainArgs, env: &Env) -> ExitCode {
    let trained = match run_train(args, env) {
        Ok(t) => t,
        Err(e) => return fail(&e),
    };
    let text = match render(args.json, &trained.report, || render::train_text(&trained.report)) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let (stdout_open, code) = match print_out(&text) {
        Ok(open) => (open, ExitCode::SUCCESS),
        Err(c) => (false, c),
    };
    write_outputs(train_writes(args, &trained), stdout_open && !args.json, "files        ", code)
}

fn run_train(args: &TrainArgs, env: &Env) -> bptt::Result<Trained> {
    // An output that would replace an input, or a missing font, would otherwise only show
    // after the training.
    let outputs: Vec<(&str, &Path)> = [("save_model", args.save_model.as_deref()), ("plot", args.plot.as_deref())]
        .into_iter()
        .filter_map(|(field, p)| Some((field, p?)))
        .collect();
    let read = [
        ("text", "the text", args.text.as_deref(), None),
        ("init_from", "the model", args.init_from.as_deref(), Some("save_model")),
    ];
    bptt::io::check_outputs(&outputs, &inputs(env, &read))?;
    if let Some(path) = &args.plot {
        env.check_font(path)?;
    }
    let bar = progress::Bar::new(args.iters as usize, args.json);
    let mut trained = bptt::train_with(&args.config(env), &bar)?;
    drop(bar);
    trained.report.notes.iter_mut().for_each(|s| *s = flags::as_flags(s));
    Ok(trained)
}

/// Training's files, in the order they are written: the model first (a plot that cannot be
/// written never costs it), then the plot.
fn train_writes<'a>(args: &'a TrainArgs, trained: &'a Trained) -> Vec<Output<'a>> {
    let mut outputs: Vec<Output> = Vec::new();
    if let Some(path) = &args.save_model {
        outputs.push((
            format!("model saved to {}", shown(path)),
            Box::new(move || {
                let r = &trained.report;
                bptt::io::save_model(path, trained.tensors(), (r.input, r.hidden, r.output), &trained.metadata)
            }),
        ));
    }
    if let Some(path) = &args.plot {
        outputs.push((
            format!("plot written to {}", shown(path)),
            Box::new(move || bptt::plot::write_train_plot(path, &trained.report)),
        ));
    }
    outputs
}
