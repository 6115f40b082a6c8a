//! The backend and the engine a function runs on, built once per cold start from the environment.
//!
//! - `SYNCTRAIL_TABLE` set: the AWS backend — `SYNCTRAIL_TABLE`, `SYNCTRAIL_BUCKET`, `SYNCTRAIL_QUEUE_URL`,
//!   `SYNCTRAIL_DLQ_URL` (and `AWS_ENDPOINT_URL`, `AWS_REGION` when set); the destination is its DynamoDB mirror.
//! - otherwise: the embedded backend under `SYNCTRAIL_HOME` (default [`DEFAULT_HOME`]), which is what
//!   `cargo lambda watch` uses locally.
//!
//! Engine settings come from `Settings::from_env` (`SYNCTRAIL_IN_ORDER_TYPES`, `SYNCTRAIL_MAX_ATTEMPTS`, …). A
//! function that only reads records (the status function) takes [`event_store_from_env`]: on AWS it makes no
//! request at start-up and needs nothing but read access to the table.

use std::path::Path;
use std::sync::Arc;
use synctrail::destination::delta_fields::DeltaFields;
use synctrail::destination::dependencies::{DependencyRule, InvalidRule, RequireDependencies};
use synctrail::destination::{Destination, MirrorView};
use synctrail::engine::{Engine, Ports};
use synctrail::store::aws::{AwsBackend, AwsConfig, Clients, DynamoStore};
use synctrail::store::sqlite::{Embedded, EmbeddedOptions};
use synctrail::store::{EventStore, StoreError};
use synctrail::{Clock, InvalidSetting, Settings, SystemClock};

/// Where the embedded backend lives when no `SYNCTRAIL_HOME` is given (Lambda's only writable directory).
pub const DEFAULT_HOME: &str = "/tmp/synctrail";

/// The function's environment does not describe a usable backend or engine.
#[derive(Debug, thiserror::Error)]
pub enum WiringError {
    /// An engine setting can't be used.
    #[error("{0}; fix the function's environment variables")]
    Settings(#[from] InvalidSetting),
    /// The AWS backend is chosen but not fully described.
    #[error("{0}; set it in the function's environment")]
    AwsConfig(#[source] StoreError),
    /// The AWS resources could not be reached.
    #[error(
        "connecting to table {table}, bucket {bucket}, queue {queue}: {source}; check the names, the function's IAM \
         permissions and that the resources exist"
    )]
    AwsConnect {
        /// The DynamoDB table.
        table: String,
        /// The S3 bucket.
        bucket: String,
        /// The ingest queue.
        queue: String,
        /// What the SDK said.
        #[source]
        source: StoreError,
    },
    /// `SYNCTRAIL_DEPENDENCIES` can't be parsed.
    #[error("{0}; fix SYNCTRAIL_DEPENDENCIES in the function's environment")]
    Dependencies(#[source] InvalidRule),
    /// The embedded backend could not be opened.
    #[error("opening the embedded backend under {home}: {source}; set SYNCTRAIL_HOME to a writable directory")]
    Embedded {
        /// Its home directory.
        home: String,
        /// What the store said.
        #[source]
        source: StoreError,
    },
}

/// The engine's ports over the backend the environment names, on `clock`.
pub async fn ports_from_env(clock: Arc<dyn Clock>) -> Result<Ports, WiringError> {
    if aws_selected() {
        return aws_ports(clock).await;
    }
    let home = home_from_env();
    let ports = embedded_ports(Path::new(&home), clock)?;
    tracing::info!(home = %home, "embedded backend");
    Ok(ports)
}

/// Only the event store of the backend the environment names: on AWS the DynamoDB table alone, with no request
/// made until the first read (no queue look-up, so no SQS permission needed).
pub async fn event_store_from_env() -> Result<Arc<dyn EventStore>, WiringError> {
    if aws_selected() {
        let config = AwsConfig::from_env().map_err(WiringError::AwsConfig)?;
        let clients = Clients::connect(config.endpoint_url.as_deref(), config.region.as_deref()).await;
        tracing::info!(table = %config.table, "AWS event store");
        return Ok(Arc::new(DynamoStore::new(clients.dynamodb, &config.table)));
    }
    let home = home_from_env();
    let ports = embedded_ports(Path::new(&home), Arc::new(SystemClock))?;
    tracing::info!(home = %home, "embedded event store");
    Ok(ports.store)
}

/// The engine over the backend the environment names, with the settings it names.
pub async fn engine_from_env(clock: Arc<dyn Clock>) -> Result<Engine, WiringError> {
    let settings = Settings::from_env()?;
    Ok(Engine::new(ports_from_env(clock).await?, settings))
}

/// The engine's ports over the embedded backend under `home` (created when missing); the mirror is the destination.
pub fn embedded_ports(home: &Path, clock: Arc<dyn Clock>) -> Result<Ports, WiringError> {
    let options = EmbeddedOptions { delta_fields: DeltaFields::from_env()?, ..EmbeddedOptions::default() };
    let embedded = Embedded::open(home, Arc::clone(&clock), options)
        .map_err(|source| WiringError::Embedded { home: home.display().to_string(), source })?;
    let destination = with_dependencies(embedded.mirror)?;
    Ok(Ports { store: embedded.store, payloads: embedded.payloads, queue: embedded.queue, destination, clock })
}

/// The mirror as the destination, answering "missing dependency" by the rules in `SYNCTRAIL_DEPENDENCIES`
/// (`TYPE.FIELD=NEEDED_TYPE`, comma-separated; none when unset).
fn with_dependencies<M: MirrorView + 'static>(mirror: Arc<M>) -> Result<Arc<dyn Destination>, WiringError> {
    let rules = DependencyRule::from_env().map_err(WiringError::Dependencies)?;
    if rules.is_empty() {
        return Ok(mirror);
    }
    let view: Arc<dyn MirrorView> = mirror.clone();
    Ok(Arc::new(RequireDependencies::new(mirror, view, rules)))
}

/// Whether the environment names the AWS backend (`SYNCTRAIL_TABLE` set).
fn aws_selected() -> bool {
    std::env::var_os("SYNCTRAIL_TABLE").is_some_and(|t| !t.is_empty())
}

/// The embedded backend's home: `SYNCTRAIL_HOME`, or [`DEFAULT_HOME`].
fn home_from_env() -> String {
    std::env::var("SYNCTRAIL_HOME").ok().filter(|h| !h.is_empty()).unwrap_or_else(|| DEFAULT_HOME.to_owned())
}

async fn aws_ports(clock: Arc<dyn Clock>) -> Result<Ports, WiringError> {
    let config = AwsConfig::from_env().map_err(WiringError::AwsConfig)?;
    let backend = AwsBackend::connect(&config).await.map_err(|source| WiringError::AwsConnect {
        table: config.table.clone(),
        bucket: config.bucket.clone(),
        queue: config.queue.clone(),
        source,
    })?;
    tracing::info!(table = %config.table, bucket = %config.bucket, queue = %config.queue, "AWS backend");
    let destination = with_dependencies(backend.mirror)?;
    Ok(Ports { store: backend.store, payloads: backend.payloads, queue: backend.queue, destination, clock })
}

#[cfg(test)]
mod tests {
    use super::*;
    use synctrail::SystemClock;

    #[test]
    fn embedded_ports_open_a_fresh_home() {
        let home = tempfile::tempdir().expect("temporary home");
        let ports = embedded_ports(&home.path().join("synctrail"), Arc::new(SystemClock));
        assert!(ports.is_ok(), "{:?}", ports.err());
    }

    #[test]
    fn an_unusable_home_is_named_in_the_error() {
        let file = tempfile::NamedTempFile::new().expect("temporary file");
        let home = file.path().join("home");
        let error = embedded_ports(&home, Arc::new(SystemClock)).err().expect("a file can't hold a home");
        assert!(matches!(error, WiringError::Embedded { .. }), "{error:?}");
        assert!(error.to_string().contains(&home.display().to_string()), "{error}");
        assert!(error.to_string().contains("SYNCTRAIL_HOME"), "{error}");
    }
}
