//! The subcommands, one file each, and the dispatch from parsed arguments to them.

pub mod bench;
pub mod demo;
pub mod list;
pub mod records;
pub mod run;
pub mod send;
pub mod show;
pub mod stats;
pub mod status;
pub mod sweep;

use crate::args::{Cli, Command};
use crate::backend::Backend;
use crate::error::{CliError, EXIT_OK};
use std::io::Write;
use std::path::{Path, PathBuf};
use synctrail::store::sqlite::EmbeddedOptions;

/// What every command knows: where the backend lives and how to print.
#[derive(Debug, Clone)]
pub struct Context {
    /// The home directory (`--home`).
    pub home: PathBuf,
    /// Print JSON instead of text (`--json`).
    pub json: bool,
}

impl Context {
    /// Opens the backend under the home directory with the everyday options.
    pub fn open(&self) -> Result<Backend, CliError> {
        open(&self.home, crate::config::embedded_options())
    }
}

/// Opens the backend under `home` with `options`.
pub fn open(home: &Path, options: EmbeddedOptions) -> Result<Backend, CliError> {
    Backend::open(home, options).map_err(|source| CliError::Open { home: home.to_owned(), source })
}

/// Runs the parsed command line on a multi-threaded async runtime; returns the exit code.
pub fn execute(cli: &Cli) -> Result<u8, CliError> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(CliError::Runtime)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let code = runtime.block_on(dispatch(cli, &mut out))?;
    out.flush()?;
    Ok(code)
}

/// Runs one command, writing its result to `out`; returns the exit code.
pub async fn dispatch(cli: &Cli, out: &mut dyn Write) -> Result<u8, CliError> {
    let ctx = Context { home: cli.home.clone(), json: cli.json };
    match &cli.command {
        Command::Send(args) => send::execute(&ctx, args, out).await.map(|()| EXIT_OK),
        Command::Run(args) => run::execute(&ctx, args, out).await.map(|()| EXIT_OK),
        Command::Status(args) => status::execute(&ctx, args, out).await,
        Command::Show(args) => show::execute(&ctx, args, out).await.map(|()| EXIT_OK),
        Command::List(args) => list::execute(&ctx, args, out).await.map(|()| EXIT_OK),
        Command::Records(args) => records::execute(&ctx, args, out).await.map(|()| EXIT_OK),
        Command::Stats => stats::execute(&ctx, out).await.map(|()| EXIT_OK),
        Command::Sweep(args) => sweep::execute(&ctx, args, out).await.map(|()| EXIT_OK),
        Command::Demo(args) => demo::execute(&ctx, args, out).await.map(|()| EXIT_OK),
        Command::Bench(args) => bench::execute(&ctx, args, out).await.map(|()| EXIT_OK),
    }
}

/// Parses an event id given on the command line; a malformed one can't be recorded (exit code 2, like an unknown id).
pub fn parse_event_id(text: &str) -> Result<synctrail::model::EventId, CliError> {
    synctrail::model::EventId::parse(text).map_err(|e| {
        CliError::InvalidArgument(format!("{e}, so no event has it; list known ids with `synctrail list`"))
    })
}

/// Prepares a fresh home at `path` for the demo or the benchmark: removes it when it is a synctrail home (or
/// empty) and creates it again. Anything else is refused, so a mistyped --home never wipes unrelated files.
pub fn fresh_home(path: &Path) -> Result<(), CliError> {
    let prepare = |source| CliError::Prepare { path: path.to_owned(), source };
    if path.exists() {
        let is_home = path.join(synctrail::store::sqlite::DB_FILE).exists();
        let is_empty = std::fs::read_dir(path).map_err(prepare)?.next().is_none();
        if !is_home && !is_empty {
            return Err(CliError::NotAHome(path.to_owned()));
        }
        std::fs::remove_dir_all(path).map_err(prepare)?;
    }
    std::fs::create_dir_all(path).map_err(prepare)
}
