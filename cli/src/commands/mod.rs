//! The subcommands, one file each, and the dispatch from parsed arguments to them.

pub mod bench;
pub mod bench_cost;
pub mod bench_destination;
pub mod bench_growth;
pub mod bench_verify;
pub mod bench_webhooks;
pub mod dead_letters;
pub mod demo;
pub mod demo_webhooks;
pub mod entity;
pub mod list;
pub mod reconcile;
pub mod records;
pub mod reprocess;
pub mod run;
pub mod send;
pub mod serve;
pub mod setup;
pub mod show;
pub mod stats;
pub mod status;
pub mod sweep;
pub mod verify;

use crate::args::{AwsArgs, BackendKind, Cli, Command, DestinationArgs};
use crate::backend::AnyBackend;
use crate::config::{base_settings, DRILL_MAX_RECEIVES};
use crate::error::{CliError, EXIT_OK};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use synctrail::compose::{compose, compose_metered};
use synctrail::config::{env_var, BackendConfig, Config, ConfigError, EmbeddedConfig};
use synctrail::destination::dependencies::DependencyRule;
use synctrail::destination::Destination;
use synctrail::engine::Engine;
use synctrail::secrets::{referenced_variable, resolve_from_secrets_manager};
use synctrail::store::aws::setup::{create_all, Created, SetupConfig};
use synctrail::store::aws::CapacityMeter;
use synctrail::store::aws::Clients;
use synctrail::{Settings, SystemClock};

/// What every command knows: which backend, where it lives, how to print, and the destination.
#[derive(Clone)]
pub struct Context {
    /// The kind of backend (`--backend`).
    pub backend: BackendKind,
    /// The embedded backend's home directory (`--home`).
    pub home: PathBuf,
    /// The AWS backend's resources (`--table`, `--bucket`, `--queue`, `--dlq`, `--endpoint-url`).
    pub aws: AwsArgs,
    /// The destination (`--destination`, `--destination-url`).
    pub destination_args: DestinationArgs,
    /// Print JSON instead of text (`--json`).
    pub json: bool,
    /// A team's own destination (see [`crate::run_with_destination`]) instead of the configured one.
    pub destination: Option<Arc<dyn Destination>>,
    /// The variables whose secrets were named by reference (`…_ARN`) and read from Secrets Manager
    /// ([`Context::with_secrets_read`]), with those secrets.
    pub secrets: Arc<BTreeMap<String, String>>,
}

impl Context {
    /// The context of a parsed command line, with the configured destination.
    pub fn of(cli: &Cli) -> Self {
        Self {
            backend: cli.backend,
            home: cli.home.clone(),
            aws: cli.aws.clone(),
            destination_args: cli.destination.clone(),
            json: cli.json,
            destination: None,
            secrets: Arc::default(),
        }
    }

    /// This context with the secrets `vars` name by reference (`SYNCTRAIL_DESTINATION_SECRET_ARN`, a connector's
    /// `…_TOKEN_ARN`) read from Secrets Manager at `--endpoint-url`, as a function reads them at a cold start; no
    /// request is made when none is named. Setting a secret and its reference both is an error.
    pub async fn with_secrets_read(mut self, vars: Vec<(String, String)>) -> Result<Self, CliError> {
        let named: Vec<String> = vars
            .iter()
            .filter(|(_, value)| !value.trim().is_empty())
            .filter_map(|(name, _)| referenced_variable(name).map(str::to_owned))
            .collect();
        if named.is_empty() {
            return Ok(self);
        }
        let resolved = resolve_from_secrets_manager(vars, self.aws.endpoint_url.as_deref(), None).await?;
        self.secrets = Arc::new(resolved.into_iter().filter(|(name, _)| named.contains(name)).collect());
        Ok(self)
    }

    /// A variable as the command line gives it: a flag's value (clap already fell back to the variable), else the
    /// environment. The CLI is never "on Lambda".
    fn var(&self, name: &str) -> Option<String> {
        let flag =
            |value: &Option<String>| value.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned);
        match name {
            "SYNCTRAIL_BACKEND" => Some(self.backend.as_str().to_owned()),
            "SYNCTRAIL_HOME" => Some(self.home.display().to_string()),
            "SYNCTRAIL_TABLE" => flag(&self.aws.table),
            "SYNCTRAIL_BUCKET" => flag(&self.aws.bucket),
            "SYNCTRAIL_QUEUE_URL" => flag(&self.aws.queue),
            "SYNCTRAIL_DLQ_URL" => flag(&self.aws.dlq),
            "AWS_ENDPOINT_URL" => flag(&self.aws.endpoint_url),
            "SYNCTRAIL_SERIALIZE_DYNAMODB" => Some(self.aws.serialize_dynamodb.to_string()),
            "SYNCTRAIL_DESTINATION" => flag(&self.destination_args.destination),
            "SYNCTRAIL_DESTINATION_URL" => flag(&self.destination_args.destination_url),
            "AWS_LAMBDA_FUNCTION_NAME" => None,
            other => self.secrets.get(other).cloned().or_else(|| env_var(other)),
        }
    }

    /// The configuration the command line gives: flags over the environment, the engine settings starting from
    /// [`base_settings`]. A missing AWS resource is named by its flag.
    pub fn config(&self) -> Result<Config, CliError> {
        Config::from_vars_with(&|name| self.var(name), base_settings()).map_err(|e| match e {
            ConfigError::Missing { name, .. } => CliError::MissingAwsSetting(flag_of(name)),
            other => CliError::Config(other),
        })
    }

    /// An engine over `backend` with the configured settings (and the mirror's delta fields, which verification
    /// replays with). `backend` is open already, so the backend's own flags are not read: a fresh one (a benchmark's)
    /// needs none.
    pub fn engine(&self, backend: &AnyBackend) -> Result<Engine, CliError> {
        let config = self.config_but_backend()?;
        Ok(Engine::new(backend.ports.clone(), config.settings).with_delta_fields(config.delta_fields))
    }

    /// Opens the configured backend, creating the embedded home when it does not exist: for commands that write
    /// (`send`, `run`, `setup`, `serve`).
    pub async fn open(&self) -> Result<AnyBackend, CliError> {
        self.open_home(HomeMustExist::No).await
    }

    /// Opens the configured backend for a command that looks at what is there (`status`, `list`, `verify`,
    /// `reprocess`, …): an embedded home that does not exist is refused ([`CliError::NoHome`]) instead of being
    /// created empty, so a mistyped `--home` is not taken for an empty store.
    pub async fn open_existing(&self) -> Result<AnyBackend, CliError> {
        self.open_home(HomeMustExist::Yes).await
    }

    async fn open_home(&self, must_exist: HomeMustExist) -> Result<AnyBackend, CliError> {
        let config = self.config()?;
        if let BackendConfig::Embedded(embedded) = &config.backend {
            check_home(&embedded.home, must_exist)?;
        }
        Ok(compose(&config, Arc::new(SystemClock), self.destination.clone()).await?)
    }

    /// A fresh backend for the demo or the benchmark (`purpose`), with `max_receives` 10 and the configured dependency
    /// rules plus `extra_rule`:
    /// the home's `<purpose>` directory wiped first, or new AWS resources named `<prefix>-…` (default
    /// `synctrail-<purpose>-<random>`; they are kept afterwards, for follow-up commands).
    pub async fn open_fresh(
        &self,
        purpose: &str,
        prefix: Option<&str>,
        extra_rule: Option<DependencyRule>,
    ) -> Result<AnyBackend, CliError> {
        let config = self.fresh_config(purpose, prefix, extra_rule).await?;
        Ok(compose(&config, Arc::new(SystemClock), self.destination.clone()).await?)
    }

    /// [`Context::open_fresh`] on new AWS resources, every DynamoDB client metered by `meter` (the cost benchmark).
    pub async fn open_fresh_metered(
        &self,
        purpose: &str,
        prefix: Option<&str>,
        meter: &CapacityMeter,
    ) -> Result<AnyBackend, CliError> {
        let config = self.fresh_config(purpose, prefix, None).await?;
        Ok(compose_metered(&config, Arc::new(SystemClock), self.destination.clone(), meter).await?)
    }

    /// The configuration apart from the backend, which a fresh backend replaces: read as if embedded, so unset AWS
    /// flags don't matter.
    pub fn config_but_backend(&self) -> Result<Config, CliError> {
        let vars = |name: &str| if name == "SYNCTRAIL_BACKEND" { Some("embedded".to_owned()) } else { self.var(name) };
        Config::from_vars_with(&vars, base_settings()).map_err(CliError::Config)
    }

    /// The configured engine settings ([`base_settings`] under the flags and the environment): what the demo and
    /// the benchmarks run a fresh backend with, so that they measure the configuration a deployment would have.
    pub fn settings(&self) -> Result<Settings, CliError> {
        Ok(self.config_but_backend()?.settings)
    }

    async fn fresh_config(
        &self,
        purpose: &str,
        prefix: Option<&str>,
        extra_rule: Option<DependencyRule>,
    ) -> Result<Config, CliError> {
        let mut config = self.config_but_backend()?;
        config.backend = match self.backend {
            BackendKind::Embedded => {
                check_home(&self.home, HomeMustExist::No)?;
                let home = self.home.join(purpose);
                fresh_home(&home)?;
                BackendConfig::Embedded(EmbeddedConfig { home, max_receives: DRILL_MAX_RECEIVES })
            }
            BackendKind::Aws => {
                let prefix = prefix.map_or_else(|| format!("synctrail-{purpose}-{}", random_suffix()), str::to_owned);
                let created = create_aws(&self.aws, &prefix, DRILL_MAX_RECEIVES).await?;
                let mut aws = created.config(self.aws.endpoint_url.clone(), None);
                aws.serialize_dynamodb = self.aws.serialize_dynamodb;
                BackendConfig::Aws(aws)
            }
        };
        config.dependencies.extend(extra_rule.filter(|rule| !config.dependencies.contains(rule)));
        Ok(config)
    }
}

/// Whether a command needs the embedded home to exist already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HomeMustExist {
    /// It only reads (or acts on what is recorded): a missing home is an error.
    Yes,
    /// It writes: a missing home is created.
    No,
}

/// What SQLite writes at the start of every database file.
const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";

/// Checks that `home` can be an embedded home: not a file, its database (if any) an SQLite file, and — when
/// `must_exist` — holding a database already. Said in words a user can act on, before SQLite's own errors
/// ("File exists", "file is not a database") could be.
pub fn check_home(home: &Path, must_exist: HomeMustExist) -> Result<(), CliError> {
    let prepare = |source| CliError::Prepare { path: home.to_owned(), source };
    match std::fs::metadata(home) {
        Ok(meta) if !meta.is_dir() => return Err(CliError::HomeIsAFile(home.to_owned())),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return match must_exist {
                HomeMustExist::Yes => Err(CliError::NoHome { path: home.to_owned(), inside: Vec::new() }),
                HomeMustExist::No => Ok(()),
            };
        }
        Err(e) => return Err(prepare(e)),
    }
    let db = home.join(synctrail::store::sqlite::DB_FILE);
    let mut header = Vec::with_capacity(SQLITE_HEADER.len());
    match std::fs::File::open(&db) {
        Ok(file) => {
            use std::io::Read;
            file.take(SQLITE_HEADER.len() as u64).read_to_end(&mut header).map_err(prepare)?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return match must_exist {
                HomeMustExist::Yes => Err(CliError::NoHome { path: home.to_owned(), inside: homes_inside(home) }),
                HomeMustExist::No => Ok(()),
            };
        }
        Err(e) => return Err(prepare(e)),
    }
    // An empty file is a database SQLite has not written to yet.
    if !header.is_empty() && header != SQLITE_HEADER {
        return Err(CliError::NotADatabase(db));
    }
    Ok(())
}

/// The homes in the subdirectories of `dir` (where the demo and the benchmarks make theirs), sorted.
fn homes_inside(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut homes: Vec<PathBuf> = entries
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.join(synctrail::store::sqlite::DB_FILE).is_file())
        .collect();
    homes.sort();
    homes
}

/// The flag that sets a variable, for messages.
fn flag_of(variable: &str) -> &'static str {
    match variable {
        "SYNCTRAIL_TABLE" => "--table (or SYNCTRAIL_TABLE)",
        "SYNCTRAIL_BUCKET" => "--bucket (or SYNCTRAIL_BUCKET)",
        "SYNCTRAIL_QUEUE_URL" => "--queue (or SYNCTRAIL_QUEUE_URL)",
        "SYNCTRAIL_DLQ_URL" => "--dlq (or SYNCTRAIL_DLQ_URL)",
        _ => "a setting that is not set",
    }
}

/// Creates (or finds) the AWS resources `<prefix>-…` at the endpoint of `args`, the queue with `max_receives`.
pub async fn create_aws(args: &AwsArgs, prefix: &str, max_receives: u32) -> Result<Created, CliError> {
    check_prefix(prefix)?;
    let clients = Clients::connect(args.endpoint_url.as_deref(), None).await;
    let setup = SetupConfig { max_receive_count: max_receives, ..SetupConfig::named(prefix) };
    create_all(&clients, &setup).await.map_err(|source| CliError::Setup { prefix: prefix.to_owned(), source })
}

/// The longest resource-name prefix: `<prefix>-payloads` must fit S3's 63 characters.
pub const MAX_PREFIX_LEN: usize = 40;

/// A prefix every service accepts in its resource names: lower-case letters, digits and inner hyphens (S3's
/// rules are the strictest), at most [`MAX_PREFIX_LEN`] characters.
pub fn check_prefix(prefix: &str) -> Result<(), CliError> {
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    let ok = !prefix.is_empty()
        && prefix.len() <= MAX_PREFIX_LEN
        && prefix.chars().all(allowed)
        && !prefix.starts_with('-')
        && !prefix.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(CliError::InvalidArgument(format!(
            "--prefix {prefix:?}: use 1 to {MAX_PREFIX_LEN} lower-case letters, digits and inner hyphens, e.g. synctrail-dev"
        )))
    }
}

/// Six random hex digits, to name fresh resources.
pub fn random_suffix() -> String {
    let bytes: [u8; 3] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs one command, writing its result to `out`; returns the exit code.
pub async fn dispatch(cli: &Cli, out: &mut dyn Write) -> Result<u8, CliError> {
    run_command(&Context::of(cli), &cli.command, out).await
}

/// Runs `command` in `ctx`, writing its result to `out`; returns the exit code.
pub async fn run_command(ctx: &Context, command: &Command, out: &mut dyn Write) -> Result<u8, CliError> {
    let ctx = &ctx.clone().with_secrets_read(configuration_vars()).await?;
    match command {
        Command::Setup(args) => setup::execute(ctx, args, out).await.map(|()| EXIT_OK),
        Command::Send(args) => send::execute(ctx, args, out).await.map(|()| EXIT_OK),
        Command::Run(args) => run::execute(ctx, args, out).await,
        Command::Status(args) => status::execute(ctx, args, out).await,
        Command::Show(args) => show::execute(ctx, args, out).await.map(|()| EXIT_OK),
        Command::List(args) => list::execute(ctx, args, out).await.map(|()| EXIT_OK),
        Command::Records(args) => records::execute(ctx, args, out).await.map(|()| EXIT_OK),
        Command::Stats(args) => stats::execute(ctx, args, out).await.map(|()| EXIT_OK),
        Command::Sweep(args) => sweep::execute(ctx, args, out).await.map(|()| EXIT_OK),
        Command::Reprocess(args) => reprocess::execute(ctx, args, out).await,
        Command::Reconcile(args) => reconcile::execute(ctx, args, out).await,
        Command::Verify(args) => verify::execute(ctx, args, out).await,
        Command::DeadLetters(args) => dead_letters::execute(ctx, args, out).await.map(|()| EXIT_OK),
        Command::Serve(args) => serve::execute(ctx, args, out).await.map(|()| EXIT_OK),
        Command::Demo(args) => demo::execute(ctx, args, out).await.map(|()| EXIT_OK),
        Command::Bench(args) => bench::execute(ctx, args, out).await.map(|()| EXIT_OK),
    }
}

/// The environment's `SYNCTRAIL_*` variables that configure the engine and its destination: not the webhook ones,
/// which `serve` reads (references included) itself.
fn configuration_vars() -> Vec<(String, String)> {
    std::env::vars().filter(|(name, _)| synctrail::config::configures_the_engine(name)).collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_follow_the_strictest_naming_rules() {
        for good in ["synctrail-dev", "a", "st-0a1b2c", &"x".repeat(MAX_PREFIX_LEN)] {
            assert!(check_prefix(good).is_ok(), "{good}");
        }
        for bad in ["", "-dev", "dev-", "Dev", "dev_1", "dev.1", &"x".repeat(MAX_PREFIX_LEN + 1)] {
            assert!(matches!(check_prefix(bad), Err(CliError::InvalidArgument(_))), "{bad}");
        }
        assert_eq!(random_suffix().len(), 6);
    }
}
