//! The `bptt` command (docs/report.md, docs/training.md). Everything it does beyond the
//! library — arguments, environment, terminal, text, files, exit codes — is in `cli`.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
