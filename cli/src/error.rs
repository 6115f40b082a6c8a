//! The one error type of the command-line layer; every message says what to do next.

use std::path::PathBuf;
use synctrail::store::StoreError;
use synctrail::EngineError;

/// Exit code of a command that worked.
pub const EXIT_OK: u8 = 0;
/// Exit code of a check that did not pass (`status`: not completed; `demo`: not converged; `run`: stopped by
/// `--max-duration` before the queue drained).
pub const EXIT_CHECK_FAILED: u8 = 1;
/// Exit code of a usage error or an unknown event id.
pub const EXIT_UNKNOWN: u8 = 2;
/// Exit code of an operation that failed (storage, files, output).
pub const EXIT_FAILED: u8 = 3;

/// What went wrong in a `synctrail` command.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The AWS backend is selected but one of its settings is missing.
    #[error("--backend aws needs {0}; create the resources with `synctrail --backend aws setup` and export the lines it prints")]
    MissingAwsSetting(&'static str),
    /// A setting (flag or environment variable) can't be used.
    #[error("{0}")]
    Config(#[from] synctrail::config::ConfigError),
    /// The configured backend or destination could not be opened.
    #[error("{0}")]
    Compose(#[from] synctrail::compose::ComposeError),
    /// Creating the AWS resources failed.
    #[error("creating the AWS resources {prefix}-… failed: {source}; check the endpoint (--endpoint-url or AWS_ENDPOINT_URL), the credentials and their permissions, then run the command again (it keeps what exists)")]
    Setup {
        /// The resources' name prefix.
        prefix: String,
        /// What the backend said.
        source: StoreError,
    },
    /// A storage call failed.
    #[error(
        "storage failed while {doing}: {source}; retry, and if it persists check the backend with `synctrail stats`"
    )]
    Store {
        /// What the command was doing.
        doing: String,
        /// What the backend said.
        source: StoreError,
    },
    /// The engine failed.
    #[error("the engine failed while {doing}: {source}")]
    Engine {
        /// What the command was doing.
        doing: String,
        /// What the engine said.
        source: EngineError,
    },
    /// An input file could not be read.
    #[error("can't read {path}: {source}; check that it exists and is readable (or pass - for standard input)")]
    Read {
        /// The file (`-` for standard input).
        path: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A home directory could not be prepared.
    #[error("can't prepare {path}: {source}; check its permissions or pass another --home")]
    Prepare {
        /// The directory.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A command that only reads found no embedded home where `--home` points.
    #[error(
        "no synctrail home at {}{}: check --home / SYNCTRAIL_HOME (`synctrail send` or `synctrail demo` creates one)",
        .path.display(),
        homes_inside(.inside)
    )]
    NoHome {
        /// Where `--home` points.
        path: PathBuf,
        /// Homes found in its subdirectories (the demo's and the benchmarks' are `<home>/demo`, `<home>/bench`, …).
        inside: Vec<PathBuf>,
    },
    /// `--home` names something that is not a directory.
    #[error("{0} is a file, not a directory; point --home (SYNCTRAIL_HOME) at a synctrail home directory")]
    HomeIsAFile(PathBuf),
    /// The home's database file is not a database.
    #[error(
        "{0} is not a synctrail database (not an SQLite file); point --home (SYNCTRAIL_HOME) at another directory, \
         or move the file away"
    )]
    NotADatabase(PathBuf),
    /// An entity given on the command line has nothing recorded.
    #[error(
        "nothing is recorded for entity {entity} (no event, no head, no destination row){also}; check the key \
             (tenant/source/entity_type/external_id, or source/entity_type/external_id for the default tenant), or \
             look for it with `synctrail list --entity KEY` and `synctrail records --entity PREFIX`"
    )]
    NothingRecorded {
        /// The entity key looked up.
        entity: String,
        /// Another reading of the key that was looked up too, as ` (nor for …)`; empty when none.
        also: String,
    },
    /// A directory to wipe does not look like a synctrail home.
    #[error(
        "refusing to wipe {0}: it is not empty and holds no synctrail.db; remove it yourself or pass another --home"
    )]
    NotAHome(PathBuf),
    /// An argument's value is unusable.
    #[error("{0}")]
    InvalidArgument(String),
    /// No event is recorded under the id.
    #[error("no event {0} is recorded; list known ids with `synctrail list`, or process the queue with `synctrail run` first")]
    UnknownEvent(String),
    /// The demo's convergence checks failed.
    #[error("the demo did not converge: {failures} check(s) failed (listed above); inspect events with `synctrail {selector} show ID`")]
    NotConverged {
        /// How many checks failed.
        failures: usize,
        /// The global options that select the demo's backend, for follow-up commands.
        selector: String,
    },
    /// A run stopped before the queue drained.
    #[error("the run stopped after {seconds:.0} s before the queue drained; check `synctrail {selector} stats`, or use a smaller workload")]
    NotDrained {
        /// How long it ran.
        seconds: f64,
        /// The global options that select the backend it ran on.
        selector: String,
    },
    /// A secret named by reference could not be read.
    #[error("{0}")]
    Secret(#[from] synctrail::secrets::SecretError),
    /// The webhook configuration can't be used.
    #[error("{0}")]
    Webhooks(#[from] synctrail_ingest::IngestInitError),
    /// The server could not listen.
    #[error("can't listen on {addr}: {source}; choose another --port (0 picks a free one) or --bind")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A webhook delivery of the demo got no answer.
    #[error("delivering a webhook to the local server failed: {0}")]
    Deliver(#[from] crate::serve::client::ClientError),
    /// Verification could not go on.
    #[error("{0}")]
    Verify(#[from] synctrail::engine::verify::VerifyError),
    /// A reconcile run could not be done.
    #[error("{0}")]
    Reconcile(#[from] synctrail::engine::reconcile::ReconcileError),
    /// The async runtime could not start.
    #[error("can't start the async runtime: {0}; check the process's thread limits")]
    Runtime(std::io::Error),
    /// Writing to standard output failed.
    #[error("writing the output failed: {0}")]
    Output(#[from] std::io::Error),
    /// Encoding JSON output failed.
    #[error("encoding the JSON output failed: {0}; this is a bug, please report it")]
    Json(#[from] serde_json::Error),
}

/// ` (homes inside it: A, B; pass one as --home)`, or nothing.
fn homes_inside(inside: &[PathBuf]) -> String {
    if inside.is_empty() {
        return String::new();
    }
    let list: Vec<String> = inside.iter().map(|p| p.display().to_string()).collect();
    format!(" (homes inside it: {}; pass one as --home)", list.join(", "))
}

impl CliError {
    /// Wraps a storage error with what the command was doing.
    pub fn store(doing: impl Into<String>) -> impl FnOnce(StoreError) -> Self {
        let doing = doing.into();
        move |source| Self::Store { doing, source }
    }

    /// Wraps an engine error with what the command was doing.
    pub fn engine(doing: impl Into<String>) -> impl FnOnce(EngineError) -> Self {
        let doing = doing.into();
        move |source| Self::Engine { doing, source }
    }

    /// The process exit code this error ends the command with.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::UnknownEvent(_)
            | Self::NoHome { .. }
            | Self::HomeIsAFile(_)
            | Self::NothingRecorded { .. }
            | Self::InvalidArgument(_)
            | Self::MissingAwsSetting(_)
            | Self::Config(_)
            | Self::Webhooks(_)
            | Self::Secret(_) => EXIT_UNKNOWN,
            Self::Reconcile(
                synctrail::engine::reconcile::ReconcileError::RunId(_)
                | synctrail::engine::reconcile::ReconcileError::OtherRun { .. },
            ) => EXIT_UNKNOWN,
            Self::NotConverged { .. } => EXIT_CHECK_FAILED,
            _ => EXIT_FAILED,
        }
    }
}
