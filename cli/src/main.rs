//! The `synctrail` binary: parses the command line, sets up logging and dispatches.

use clap::Parser;
use std::io::IsTerminal;
use std::process::ExitCode;
use synctrail_cli::args::{Cli, Command};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(&cli.command);
    match synctrail_cli::commands::execute(&cli) {
        Ok(code) => ExitCode::from(code),
        Err(synctrail_cli::CliError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Human-readable logs on standard error, level from `RUST_LOG` (default `warn`). The demo sends malformed
/// messages on purpose, so by default it does not log each rejection.
fn init_tracing(command: &Command) {
    let default = match command {
        Command::Demo(_) => "warn,synctrail::engine::intake=error",
        _ => "warn",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}
