//! The `bptt` command: parse the arguments, call the library, print. Exit codes: 0 success,
//! 1 a run-time failure or a failed check, 2 bad arguments or input.

use std::process::ExitCode;

use clap::Parser;

use bptt::cli::Args;

fn main() -> ExitCode {
    env_logger::init();
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) if e.use_stderr() => {
            // One line: clap's reason (all of it, e.g. the missing argument's name), without
            // the usage block.
            let msg = e.to_string();
            let reason: Vec<&str> = msg
                .lines()
                .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            eprintln!("{} (see bptt --help)", reason.join(" "));
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
