//! The composition root: one [`Config`] in, the engine's ports out — for every function and for the CLI, so
//! what runs locally is what runs on Lambda.
//!
//! The destination is the configured one ([`DestinationConfig`]), or a team's own [`Destination`] handed in
//! ([`compose`]'s `given`). Dependency rules (spec §6) wrap the reference mirror, which can tell whether an entity
//! exists; a team's own destination answers `MissingDependency` itself. With an outbound connector configured
//! (`SYNCTRAIL_OUTBOUND`), [`ByDirection`](crate::destination::ByDirection) sends `outbound` events to it and
//! `inbound` ones to that destination.

use crate::clock::Clock;
#[cfg(any(feature = "sqlite", feature = "aws"))]
use crate::config::DestinationConfig;
use crate::config::{BackendConfig, Config};
use crate::destination::dependencies::RequireDependencies;
use crate::destination::{Destination, MirrorView};
use crate::engine::{Engine, Ports};
use crate::store::{EventStore, FileSnapshot, SnapshotStore, StoreError};
use std::path::PathBuf;
use std::sync::Arc;

#[cfg(feature = "aws")]
use crate::store::aws::{
    AwsBackend, AwsConfig, CapacityMeter, Clients, DynamoGate, DynamoMirror, DynamoStore, Party, RequestCounter,
};
#[cfg(feature = "sqlite")]
use crate::store::sqlite::{Embedded, EmbeddedOptions};

/// The ports over the configured backend, and what operator tools need besides.
pub struct Composed {
    /// The engine's ports: store, payloads, queue, destination, clock.
    pub ports: Ports,
    /// The reference mirror, when it is the destination (with its operator methods: reads, local edits, effects).
    pub mirror: Option<Arc<dyn MirrorView>>,
    /// The backend's own handles.
    pub backend: ComposedBackend,
}

/// The backend's own handles, for what only one kind of backend can do.
pub enum ComposedBackend {
    /// The embedded backend.
    #[cfg(feature = "sqlite")]
    Embedded {
        /// Its directory.
        home: PathBuf,
        /// Its adapters (the queue's extra operations, the mirror).
        embedded: Embedded,
    },
    /// The AWS backend.
    #[cfg(feature = "aws")]
    Aws(AwsParts),
}

/// The AWS backend's handles.
#[cfg(feature = "aws")]
pub struct AwsParts {
    /// Where the resources are (the queue URLs as given, possibly names).
    pub config: AwsConfig,
    /// The adapters; their request counter counts the framework's own requests.
    pub backend: AwsBackend,
    /// Request attempts of the reference mirror, counted apart from the framework's (none for other destinations).
    pub destination_requests: RequestCounter,
}

/// Why the configured backend or destination could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    /// The embedded backend could not be opened.
    #[error("opening the embedded backend in {home}: {source}; set SYNCTRAIL_HOME (--home) to a writable directory")]
    Open {
        /// Its directory.
        home: PathBuf,
        /// What the store said.
        #[source]
        source: StoreError,
    },
    /// The AWS resources could not be reached.
    #[error(
        "connecting to table {table}, bucket {bucket}, queue {queue}: {source}; check the names, the credentials \
         and IAM permissions, and that the resources exist (`synctrail setup --backend aws` creates them)"
    )]
    Connect {
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
    /// This build lacks the configured backend.
    #[error("this build has no {0} backend (cargo feature `{1}` of synctrail); choose another with SYNCTRAIL_BACKEND")]
    NotBuilt(&'static str, &'static str),
    /// The HTTP destination or the outbound connector could not be built.
    #[cfg(feature = "http")]
    #[error(transparent)]
    Http(#[from] crate::destination::http::HttpConfigError),
    /// Dependency rules need the reference mirror to look entities up.
    #[error(
        "SYNCTRAIL_DEPENDENCIES needs the reference mirror as the destination (it looks the needed entity up there); \
         a destination of your own answers MissingDependency itself: unset SYNCTRAIL_DEPENDENCIES"
    )]
    DependenciesNeedTheMirror,
    /// An `s3://` snapshot needs the AWS backend (its endpoint and credentials).
    #[error("snapshot {0}: s3:// snapshots are read with the AWS backend's endpoint and credentials; use --backend aws, or a local file")]
    SnapshotNeedsAws(String),
    /// The snapshot location can't be used.
    #[error("snapshot {location}: {source}")]
    Snapshot {
        /// The location given.
        location: String,
        /// What is wrong with it.
        #[source]
        source: StoreError,
    },
}

/// The `reconcile` snapshot at `location`: `s3://bucket/key` (on the AWS backend of `composed`, with its endpoint and
/// credentials), or a local file.
pub async fn compose_snapshot(location: &str, composed: &Composed) -> Result<Arc<dyn SnapshotStore>, ComposeError> {
    if !location.starts_with("s3://") {
        return Ok(Arc::new(FileSnapshot::new(location)));
    }
    match &composed.backend {
        #[cfg(feature = "aws")]
        ComposedBackend::Aws(parts) => {
            let clients = Clients::for_config(&parts.config, None, None).await;
            let snapshot = crate::store::aws::S3Snapshot::new(clients.s3, location)
                .map_err(|source| ComposeError::Snapshot { location: location.to_owned(), source })?;
            Ok(Arc::new(snapshot))
        }
        #[cfg(feature = "sqlite")]
        ComposedBackend::Embedded { .. } => Err(ComposeError::SnapshotNeedsAws(location.to_owned())),
        #[cfg(not(any(feature = "sqlite", feature = "aws")))]
        backend => match *backend {},
    }
}

/// Builds the ports `config` describes, on `clock`; `given` replaces the configured destination.
pub async fn compose(
    config: &Config,
    clock: Arc<dyn Clock>,
    given: Option<Arc<dyn Destination>>,
) -> Result<Composed, ComposeError> {
    if (given.is_some() || !config.destination.is_mirror()) && !config.dependencies.is_empty() {
        return Err(ComposeError::DependenciesNeedTheMirror);
    }
    let composed = match &config.backend {
        BackendConfig::Embedded(embedded) => compose_embedded(embedded, config, clock, given)?,
        BackendConfig::Aws(aws) => compose_aws(aws, config, clock, given, None).await?,
    };
    composed.with_dependencies(config).with_outbound(config)
}

/// [`compose`] on the AWS backend with every DynamoDB client metered by `meter` (the framework's and the
/// reference mirror's apart, see [`Party`]): for cost benchmarks, never for a deployment.
#[cfg(feature = "aws")]
pub async fn compose_metered(
    config: &Config,
    clock: Arc<dyn Clock>,
    given: Option<Arc<dyn Destination>>,
    meter: &CapacityMeter,
) -> Result<Composed, ComposeError> {
    if (given.is_some() || !config.destination.is_mirror()) && !config.dependencies.is_empty() {
        return Err(ComposeError::DependenciesNeedTheMirror);
    }
    let composed = match &config.backend {
        BackendConfig::Aws(aws) => compose_aws(aws, config, clock, given, Some(meter)).await?,
        BackendConfig::Embedded(_) => return Err(ComposeError::NotBuilt("metered embedded", "aws")),
    };
    composed.with_dependencies(config).with_outbound(config)
}

/// An engine over the ports `config` describes, with its settings.
pub async fn compose_engine(
    config: &Config,
    clock: Arc<dyn Clock>,
    given: Option<Arc<dyn Destination>>,
) -> Result<(Engine, Composed), ComposeError> {
    let composed = compose(config, clock, given).await?;
    let engine =
        Engine::new(composed.ports.clone(), config.settings.clone()).with_delta_fields(config.delta_fields.clone());
    Ok((engine, composed))
}

/// Only the event store `config` describes: on AWS the DynamoDB table alone, with no request made until the first
/// read (what a function that only reads records needs).
pub async fn compose_event_store(config: &Config, clock: Arc<dyn Clock>) -> Result<Arc<dyn EventStore>, ComposeError> {
    match &config.backend {
        #[cfg(feature = "aws")]
        BackendConfig::Aws(aws) => {
            let clients = Clients::for_config(aws, None, None).await;
            Ok(Arc::new(DynamoStore::new(&clients, &aws.table)))
        }
        #[cfg(not(feature = "aws"))]
        BackendConfig::Aws(_) => Err(ComposeError::NotBuilt("AWS", "aws")),
        BackendConfig::Embedded(embedded) => Ok(compose_embedded(embedded, config, clock, None)?.ports.store),
    }
}

impl Composed {
    /// The destination wrapped so that it answers "missing dependency" by `config`'s rules, looked up in the mirror.
    fn with_dependencies(mut self, config: &Config) -> Self {
        if let (Some(mirror), false) = (&self.mirror, config.dependencies.is_empty()) {
            let inner = Arc::clone(&self.ports.destination);
            let rules = config.dependencies.clone();
            self.ports.destination = Arc::new(RequireDependencies::new(inner, Arc::clone(mirror), rules));
        }
        self
    }

    /// With an outbound connector configured: `outbound` events to it, `inbound` ones to the destination.
    #[cfg(feature = "http")]
    fn with_outbound(mut self, config: &Config) -> Result<Self, ComposeError> {
        if let Some(outbound) = &config.outbound {
            let connector = crate::destination::connectors::connector(outbound, Arc::clone(&self.ports.clock))?;
            let inbound = Arc::clone(&self.ports.destination);
            self.ports.destination = Arc::new(crate::destination::ByDirection::new(inbound, connector));
        }
        Ok(self)
    }

    /// Without connectors in this build, every event goes to the destination.
    #[cfg(not(feature = "http"))]
    fn with_outbound(self, _: &Config) -> Result<Self, ComposeError> {
        Ok(self)
    }

    /// The embedded backend's handles, when it is one.
    #[cfg(feature = "sqlite")]
    pub fn embedded(&self) -> Option<(&PathBuf, &Embedded)> {
        match &self.backend {
            ComposedBackend::Embedded { home, embedded } => Some((home, embedded)),
            #[cfg(feature = "aws")]
            ComposedBackend::Aws(_) => None,
        }
    }

    /// The AWS backend's handles, when it is one.
    #[cfg(feature = "aws")]
    pub fn aws(&self) -> Option<&AwsParts> {
        match &self.backend {
            ComposedBackend::Aws(parts) => Some(parts),
            #[cfg(feature = "sqlite")]
            ComposedBackend::Embedded { .. } => None,
        }
    }

    /// Where the backend is, for messages: `the embedded backend in ./.synctrail`, or
    /// `the AWS backend at <endpoint> (table …, bucket …, queue …)`.
    pub fn describe(&self) -> String {
        match &self.backend {
            #[cfg(feature = "sqlite")]
            ComposedBackend::Embedded { home, .. } => format!("the embedded backend in {}", home.display()),
            #[cfg(feature = "aws")]
            ComposedBackend::Aws(parts) => {
                let c = &parts.config;
                let endpoint = c.endpoint_url.as_deref().map_or_else(String::new, |url| format!(" at {url}"));
                let queue = parts.backend.queue.queue_url();
                format!("the AWS backend{endpoint} (table {}, bucket {}, queue {queue})", c.table, c.bucket)
            }
            #[cfg(not(any(feature = "sqlite", feature = "aws")))]
            backend => match *backend {},
        }
    }
}

#[cfg(feature = "sqlite")]
fn compose_embedded(
    embedded: &crate::config::EmbeddedConfig,
    config: &Config,
    clock: Arc<dyn Clock>,
    given: Option<Arc<dyn Destination>>,
) -> Result<Composed, ComposeError> {
    let options = EmbeddedOptions {
        max_receives: embedded.max_receives,
        delta_fields: config.delta_fields.clone(),
        ..EmbeddedOptions::default()
    };
    let home = embedded.home.clone();
    let embedded = Embedded::open(&home, Arc::clone(&clock), options)
        .map_err(|source| ComposeError::Open { home: home.clone(), source })?;
    let (destination, mirror): (Arc<dyn Destination>, Option<Arc<dyn MirrorView>>) = match (given, &config.destination)
    {
        (Some(given), _) => (given, None),
        (None, DestinationConfig::Mirror) => (embedded.mirror.clone(), Some(embedded.mirror.clone())),
        #[cfg(feature = "http")]
        (None, DestinationConfig::Http(http)) => (http_destination(http, &clock)?, None),
    };
    let ports = Ports {
        store: embedded.store.clone(),
        payloads: embedded.payloads.clone(),
        queue: embedded.queue.clone(),
        destination,
        clock,
    };
    Ok(Composed { ports, mirror, backend: ComposedBackend::Embedded { home, embedded } })
}

#[cfg(not(feature = "sqlite"))]
fn compose_embedded(
    _: &crate::config::EmbeddedConfig,
    _: &Config,
    _: Arc<dyn Clock>,
    _: Option<Arc<dyn Destination>>,
) -> Result<Composed, ComposeError> {
    Err(ComposeError::NotBuilt("embedded", "sqlite"))
}

#[cfg(feature = "aws")]
async fn compose_aws(
    aws: &AwsConfig,
    whole: &Config,
    clock: Arc<dyn Clock>,
    given: Option<Arc<dyn Destination>>,
    meter: Option<&CapacityMeter>,
) -> Result<Composed, ComposeError> {
    let config = aws;
    let gate = config.serialize_dynamodb.then(DynamoGate::default);
    let framework = Clients::for_config(config, gate.as_ref(), meter).await;
    let backend = AwsBackend::with_clients(&framework, config).await.map_err(|source| ComposeError::Connect {
        table: config.table.clone(),
        bucket: config.bucket.clone(),
        queue: config.queue.clone(),
        source,
    })?;
    let (destination, mirror, destination_requests): (Arc<dyn Destination>, Option<Arc<dyn MirrorView>>, _) =
        match (given, &whole.destination) {
            (Some(given), _) => (given, None, RequestCounter::new()),
            (None, DestinationConfig::Mirror) => {
                // Clients of its own, so the mirror's requests are counted apart from the framework's.
                let meter = meter.map(|m| m.for_party(Party::Destination));
                let clients = Clients::for_config(config, gate.as_ref(), meter.as_ref()).await;
                let deltas = whole.delta_fields.clone();
                let mirror = Arc::new(DynamoMirror::new(&clients, &config.table, Arc::clone(&clock), deltas));
                (mirror.clone(), Some(mirror), clients.requests)
            }
            #[cfg(feature = "http")]
            (None, DestinationConfig::Http(http)) => (http_destination(http, &clock)?, None, RequestCounter::new()),
        };
    let ports = Ports {
        store: backend.store.clone(),
        payloads: backend.payloads.clone(),
        queue: backend.queue.clone(),
        destination,
        clock,
    };
    let parts = AwsParts { config: config.clone(), backend, destination_requests };
    Ok(Composed { ports, mirror, backend: ComposedBackend::Aws(parts) })
}

#[cfg(not(feature = "aws"))]
async fn compose_aws(
    _: &crate::config::AwsConfig,
    _: &Config,
    _: Arc<dyn Clock>,
    _: Option<Arc<dyn Destination>>,
    _: Option<&()>,
) -> Result<Composed, ComposeError> {
    Err(ComposeError::NotBuilt("AWS", "aws"))
}

/// The HTTP destination `config` describes: one pooled client per cold start.
#[cfg(feature = "http")]
fn http_destination(
    config: &crate::destination::http::HttpDestinationConfig,
    clock: &Arc<dyn Clock>,
) -> Result<Arc<dyn Destination>, ComposeError> {
    let destination = crate::destination::http::HttpDestination::new(config.clone(), Arc::clone(clock))?;
    Ok(Arc::new(destination))
}
