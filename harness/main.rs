//! The `sockcap` binary: parse arguments, dispatch, print errors, exit with a
//! code that means something (see `sockcap::cli::exit`).

use std::process::ExitCode;

use clap::Parser;
use sockcap::cli::{self, Cli};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { cli::exit::BAD_INPUT } else { cli::exit::PASSED };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match cli::dispatch(cli) {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            sockcap::stderr::line(format_args!("sockcap: {:#}", failure.error));
            ExitCode::from(failure.code)
        }
    }
}
