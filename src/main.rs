//! The `bptt` command: parse the arguments, call the library, print. Exit codes: 0 success,
//! 1 a run-time failure or a failed check, 2 bad arguments or input. Every error is one line
//! on stderr; nothing panics, not even a closed stdout.

use std::io::Write;
use std::process::ExitCode;

use bptt::cli::{Args, Command, one_line_error, parse_command};
use bptt::error::one_line;

/// One line on stderr. A closed stderr is not worth a panic: the exit code still says it.
fn say_error(msg: &str) {
    let _ = writeln!(std::io::stderr(), "error: {}", one_line(msg));
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

fn main() -> ExitCode {
    env_logger::init();
    let training = std::env::args_os().nth(1).is_some_and(|a| a == "train");
    let args = match parse_command(std::env::args_os().collect()) {
        Ok(Command::Check(a)) => *a,
        Ok(Command::Train(a)) => return train(&a),
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
    if args.list_adapters { list_adapters(&args) } else { check(&args) }
}

/// `--list-adapters`: one line per adapter.
fn list_adapters(args: &Args) -> ExitCode {
    match bptt::gpu::list_adapters(args.gpu.backend) {
        Ok(adapters) => {
            let list: String = adapters.iter().map(|a| format!("{a}\n")).collect();
            print_out(&list).map_or_else(|code| code, |_| ExitCode::SUCCESS)
        }
        Err(e) => fail(&e),
    }
}

/// The gradient check: the report first, then the files (a file that cannot be written never
/// costs the report), then the exit code the run earned.
fn check(args: &Args) -> ExitCode {
    let outcome = match bptt::run::run(args) {
        Ok(o) => o,
        Err(e) => return fail(&e),
    };
    let text = match render(args.json, &outcome.report, || outcome.report.text(args.verbose)) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let mut code = if outcome.failed() { ExitCode::from(1) } else { ExitCode::SUCCESS };
    let stdout_open = print_out(&text).unwrap_or_else(|c| {
        code = c;
        false
    });
    if let Some(line) = outcome.failure_line(args) {
        say_error(&line);
    }
    confirm(outcome.write_files(args), stdout_open && !args.json, "files      ", code)
}

/// After the files were written: a line per file on stdout (when `show`, in the report's
/// column), or the write's error; returns the exit code.
fn confirm(written: bptt::Result<Vec<String>>, show: bool, label: &str, mut code: ExitCode) -> ExitCode {
    match written {
        Ok(written) if show && !written.is_empty() => {
            let lines: String = written.iter().map(|w| format!("{label}{w}\n")).collect();
            if let Err(c) = print_out(&lines) {
                code = c;
            }
        }
        Ok(_) => {}
        Err(e) => code = fail(&e),
    }
    code
}

/// The error's one line on stderr, and its exit code.
fn fail(e: &bptt::Error) -> ExitCode {
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

/// `bptt train`: the summary (or JSON) on stdout, one line on stderr for an error.
fn train(args: &bptt::train::args::TrainArgs) -> ExitCode {
    let trained = match bptt::train::command::run(args) {
        Ok(t) => t,
        Err(e) => return fail(&e),
    };
    let text = match render(args.json, &trained.report, || trained.report.text()) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let (stdout_open, code) = match print_out(&text) {
        Ok(open) => (open, ExitCode::SUCCESS),
        Err(c) => (false, c),
    };
    confirm(trained.write_files(args), stdout_open && !args.json, "files        ", code)
}
