//! The `bptt` command: parse the arguments, call the library, print. Exit codes: 0 success,
//! 1 a run-time failure or a failed check, 2 bad arguments or input.

use std::process::ExitCode;

use bptt::cli::{Command, one_line_error, parse_command};

fn main() -> ExitCode {
    env_logger::init();
    let training = std::env::args_os().nth(1).is_some_and(|a| a == "train");
    let args = match parse_command(std::env::args_os().collect()) {
        Ok(Command::Check(a)) => *a,
        Ok(Command::Train(a)) => return train(&a),
        Err(e) if e.use_stderr() => {
            eprintln!("{}", one_line_error(&e, if training { "bptt train" } else { "bptt" }));
            return ExitCode::from(2);
        }
        Err(e) => {
            // --help and --version
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
    };
    if args.list_adapters {
        let adapters = bptt::gpu::list_adapters(args.backend);
        if adapters.is_empty() {
            eprintln!("error: no adapters found. To get one, {}", bptt::gpu::adapter::HOW_TO_GET_AN_ADAPTER);
            return ExitCode::from(1);
        }
        for a in adapters {
            println!("{a}");
        }
        return ExitCode::SUCCESS;
    }
    match bptt::run::run(&args) {
        Ok(report) => {
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report).expect("the report serialises"));
            } else {
                print!("{}", report.text(args.verbose));
            }
            if report.pass { ExitCode::SUCCESS } else { ExitCode::from(1) }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

/// `bptt train`: the summary (or JSON) on stdout, one line on stderr for an error.
fn train(args: &bptt::train::args::TrainArgs) -> ExitCode {
    match bptt::train::command::run(args) {
        Ok(report) => {
            if args.json {
                println!("{}", serde_json::to_string_pretty(&report).expect("the report serialises"));
            } else {
                print!("{}", report.text());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}
