//! The `synctrail` command's entry point: the reference binary's, and the one a team calls to get the whole CLI
//! (`run`, `reprocess --invoke`, `status`, …) over its own destination — what it tests locally is what its Lambda
//! runs.

use crate::args::{Cli, Command};
use crate::commands::{run_command, Context};
use crate::error::CliError;
use clap::Parser;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
use synctrail::destination::Destination;
use tracing_subscriber::EnvFilter;

/// Runs the `synctrail` command line with the configured destination (`main` of the reference binary).
pub fn main() -> ExitCode {
    run(None)
}

/// Runs the `synctrail` command line over `destination`, a team's own. A team's whole `src/bin/synctrail.rs`:
///
/// ```no_run
/// # struct MyDestination;
/// # #[async_trait::async_trait]
/// # impl synctrail::Destination for MyDestination {
/// #     async fn apply(&self, _: &synctrail::Change<'_>) -> Result<synctrail::ApplyOutcome, synctrail::DestinationError> {
/// #         Ok(synctrail::ApplyOutcome::Applied)
/// #     }
/// # }
/// fn main() -> std::process::ExitCode {
///     synctrail_cli::run_with_destination(MyDestination)
/// }
/// ```
pub fn run_with_destination<D: Destination + 'static>(destination: D) -> ExitCode {
    run(Some(Arc::new(destination)))
}

fn run(destination: Option<Arc<dyn Destination>>) -> ExitCode {
    let cli = Cli::parse();
    init_tracing(&cli.command);
    let ctx = Context { destination, ..Context::of(&cli) };
    match execute(&ctx, &cli.command) {
        Ok(code) => ExitCode::from(code),
        Err(CliError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Runs `command` on a current-thread async runtime, writing to standard output; returns the exit code.
///
/// One thread: the local runtime's workers and lanes mostly wait for the embedded database's group commit (one
/// writer at a time), and on a thread pool they spent their CPU waking and switching threads — `synctrail bench`
/// does 2–19 % more events per second with 15–27 % less CPU per event on one thread (docs/performance.md, "One thread").
fn execute(ctx: &Context, command: &Command) -> Result<u8, CliError> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(CliError::Runtime)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let code = runtime.block_on(run_command(ctx, command, &mut out))?;
    out.flush()?;
    Ok(code)
}

/// Human-readable logs on standard error, level from `RUST_LOG` (default `warn`). The demo sends malformed
/// messages on purpose, so by default it does not log each rejection; `serve` logs one line per request.
fn init_tracing(command: &Command) {
    let default = match command {
        Command::Demo(_) => "warn,synctrail::engine::intake=error",
        Command::Serve(_) => "warn,synctrail_ingest=info",
        _ => "warn",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}
