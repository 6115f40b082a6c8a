//! Opening the backend a command works on: the embedded one under a home directory, or the AWS one (DynamoDB, S3,
//! SQS). Commands see [`AnyBackend`]: the engine's ports, the mirror, and what only one kind of backend has.

use crate::args::{AwsArgs, BackendKind};
use aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use synctrail::destination::dependencies::{DependencyRule, RequireDependencies};
use synctrail::destination::MirrorView;
use synctrail::engine::Ports;
use synctrail::store::aws::sdk::dynamodb;
use synctrail::store::aws::{AwsBackend, AwsConfig, Clients, DynamoMirror, RequestCounter, SqsQueue};
use synctrail::store::sqlite::{Embedded, EmbeddedOptions};
use synctrail::store::StoreError;
use synctrail::{Clock, SystemClock};

/// The embedded backend under a home directory, with the engine's ports over it. The test harnesses open this
/// one directly; commands use [`AnyBackend`] (see [`Backend::into_any`]).
pub struct Backend {
    /// The home directory.
    pub home: PathBuf,
    /// The embedded adapters (the mirror, the queue's extra operations).
    pub embedded: Embedded,
    /// The engine's ports: the store, payloads, queue, the mirror as destination, the clock.
    pub ports: Ports,
}

impl Backend {
    /// Opens (creating when missing) the embedded backend under `home`, on the system clock.
    pub fn open(home: &Path, options: EmbeddedOptions) -> Result<Self, StoreError> {
        Self::open_with_clock(home, options, Arc::new(SystemClock))
    }

    /// Opens the embedded backend under `home` on `clock`.
    pub fn open_with_clock(home: &Path, options: EmbeddedOptions, clock: Arc<dyn Clock>) -> Result<Self, StoreError> {
        let embedded = Embedded::open(home, Arc::clone(&clock), options)?;
        let ports = Ports {
            store: embedded.store.clone(),
            payloads: embedded.payloads.clone(),
            queue: embedded.queue.clone(),
            destination: embedded.mirror.clone(),
            clock,
        };
        Ok(Self { home: home.to_owned(), embedded, ports })
    }

    /// The same backend behind the backend-neutral type.
    pub fn into_any(self) -> AnyBackend {
        let mirror: Arc<dyn MirrorView> = self.embedded.mirror.clone();
        AnyBackend {
            ports: self.ports,
            mirror,
            extras: Extras::Embedded(EmbeddedExtras { home: self.home, embedded: self.embedded }),
        }
    }
}

/// A backend of either kind: what every command needs, and the extras of its kind.
pub struct AnyBackend {
    /// The engine's ports: the store, payloads, queue, the mirror as destination, the clock.
    pub ports: Ports,
    /// The reference destination (the same object as `ports.destination`), with its operator methods.
    pub mirror: Arc<dyn MirrorView>,
    /// What only this kind of backend has.
    pub extras: Extras,
}

impl AnyBackend {
    /// Makes the destination answer "missing dependency" by `rules` (spec §6) before the mirror is written.
    pub fn with_dependencies(mut self, rules: Vec<DependencyRule>) -> Self {
        if !rules.is_empty() {
            let inner = Arc::clone(&self.ports.destination);
            self.ports.destination = Arc::new(RequireDependencies::new(inner, Arc::clone(&self.mirror), rules));
        }
        self
    }
}

/// What only one kind of backend has.
pub enum Extras {
    /// The embedded backend.
    Embedded(EmbeddedExtras),
    /// The AWS backend.
    Aws(AwsExtras),
}

/// The embedded backend's extras.
pub struct EmbeddedExtras {
    /// The home directory.
    pub home: PathBuf,
    /// The adapters, with their extra operations (dead-letter listing and redrive on `embedded.queue`).
    pub embedded: Embedded,
}

/// The AWS backend's extras.
pub struct AwsExtras {
    /// Where the resources are (the queue URLs as given, possibly names).
    pub config: AwsConfig,
    /// The ingest queue's URL, resolved.
    pub queue_url: String,
    /// The dead-letter queue's URL, resolved.
    pub dlq_url: String,
    /// Request attempts of the framework's own clients in this process: event store, payloads, queue.
    pub requests: RequestCounter,
    /// Request attempts of the destination (the DynamoDB mirror) in this process, counted apart.
    pub destination_requests: RequestCounter,
    /// Whether DynamoDB requests leave this process one at a time (`--serialize-dynamodb`).
    pub serialized: bool,
}

impl AnyBackend {
    /// Opens (creating when missing) the embedded backend under `home`, on the system clock.
    pub fn open_embedded(home: &Path, options: EmbeddedOptions) -> Result<Self, StoreError> {
        Backend::open(home, options).map(Backend::into_any)
    }

    /// Connects to the AWS resources `config` names (they must exist: `synctrail setup --backend aws` creates
    /// them). The mirror gets clients of its own, so its requests are counted apart from the framework's; with
    /// `serialize`, every DynamoDB request of both waits for the previous one to finish (see [`DynamoGate`]).
    pub async fn connect_aws(config: &AwsConfig, serialize: bool) -> Result<Self, StoreError> {
        let gate = serialize.then(DynamoGate::default);
        let framework = clients(config, gate.as_ref()).await;
        let destination = clients(config, gate.as_ref()).await;
        let backend = AwsBackend::with_clients(&framework, config).await?;
        let mirror = Arc::new(DynamoMirror::new(
            destination.dynamodb.clone(),
            &config.table,
            Arc::new(SystemClock),
            config.delta_fields.clone(),
        ));
        Ok(Self::from_aws(backend, mirror, destination.requests, config, serialize))
    }

    /// The AWS adapters of `backend`, with `mirror` as the destination (its requests counted by
    /// `destination_requests`) instead of `backend.mirror`.
    pub fn from_aws(
        backend: AwsBackend,
        mirror: Arc<DynamoMirror>,
        destination_requests: RequestCounter,
        config: &AwsConfig,
        serialized: bool,
    ) -> Self {
        let queue: &SqsQueue = &backend.queue;
        let (queue_url, dlq_url) = (queue.queue_url().to_owned(), queue.dlq_url().to_owned());
        let ports = Ports {
            store: backend.store.clone(),
            payloads: backend.payloads.clone(),
            queue: backend.queue.clone(),
            destination: mirror.clone(),
            clock: Arc::new(SystemClock),
        };
        Self {
            ports,
            mirror,
            extras: Extras::Aws(AwsExtras {
                config: config.clone(),
                queue_url,
                dlq_url,
                requests: backend.requests.clone(),
                destination_requests,
                serialized,
            }),
        }
    }

    /// Which kind of backend this is.
    pub fn kind(&self) -> BackendKind {
        match self.extras {
            Extras::Embedded(_) => BackendKind::Embedded,
            Extras::Aws(_) => BackendKind::Aws,
        }
    }

    /// The embedded backend's extras, when it is one.
    pub fn embedded(&self) -> Option<&EmbeddedExtras> {
        match &self.extras {
            Extras::Embedded(extras) => Some(extras),
            Extras::Aws(_) => None,
        }
    }

    /// The AWS backend's extras, when it is one.
    pub fn aws(&self) -> Option<&AwsExtras> {
        match &self.extras {
            Extras::Aws(extras) => Some(extras),
            Extras::Embedded(_) => None,
        }
    }

    /// Where the backend is, for messages: `the embedded backend in ./.synctrail`, or
    /// `the AWS backend at <endpoint> (table …, bucket …, queue …)`.
    pub fn describe(&self) -> String {
        match &self.extras {
            Extras::Embedded(e) => format!("the embedded backend in {}", e.home.display()),
            Extras::Aws(a) => {
                let endpoint = a.config.endpoint_url.as_deref().map_or_else(String::new, |url| format!(" at {url}"));
                format!(
                    "the AWS backend{endpoint} (table {}, bucket {}, queue {})",
                    a.config.table, a.config.bucket, a.queue_url
                )
            }
        }
    }

    /// The global options that select this backend, for follow-up commands (`synctrail <these> show ID`).
    pub fn selector(&self) -> String {
        match &self.extras {
            Extras::Embedded(e) => format!("--home {}", e.home.display()),
            Extras::Aws(a) => {
                let mut flags = format!(
                    "--backend aws --table {} --bucket {} --queue {} --dlq {}",
                    a.config.table, a.config.bucket, a.queue_url, a.dlq_url
                );
                if let Some(url) = &a.config.endpoint_url {
                    flags.push_str(&format!(" --endpoint-url {url}"));
                }
                if a.serialized {
                    flags.push_str(" --serialize-dynamodb");
                }
                flags
            }
        }
    }
}

/// The `export` lines that select the AWS resources of `config` in a shell.
pub fn env_lines(config: &AwsConfig) -> Vec<String> {
    let mut lines = vec![
        "export SYNCTRAIL_BACKEND=aws".to_owned(),
        format!("export SYNCTRAIL_TABLE={}", config.table),
        format!("export SYNCTRAIL_BUCKET={}", config.bucket),
        format!("export SYNCTRAIL_QUEUE_URL={}", config.queue),
        format!("export SYNCTRAIL_DLQ_URL={}", config.dlq),
    ];
    if let Some(url) = &config.endpoint_url {
        lines.push(format!("export AWS_ENDPOINT_URL={url}"));
    }
    lines
}

/// The [`AwsConfig`] the command-line options (or their environment variables) name; a missing one is named in
/// the error, e.g. `--table (or SYNCTRAIL_TABLE)`.
pub fn aws_config(args: &AwsArgs) -> Result<AwsConfig, &'static str> {
    let need = |value: &Option<String>, flag: &'static str| {
        value.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned).ok_or(flag)
    };
    Ok(AwsConfig {
        table: need(&args.table, "--table (or SYNCTRAIL_TABLE)")?,
        bucket: need(&args.bucket, "--bucket (or SYNCTRAIL_BUCKET)")?,
        queue: need(&args.queue, "--queue (or SYNCTRAIL_QUEUE_URL)")?,
        dlq: need(&args.dlq, "--dlq (or SYNCTRAIL_DLQ_URL)")?,
        endpoint_url: args.endpoint_url.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned),
        region: None,
        delta_fields: Default::default(),
    })
}

/// SDK clients for `config`'s endpoint and region with a request counter of their own; DynamoDB behind `gate`
/// when given.
pub async fn clients(config: &AwsConfig, gate: Option<&DynamoGate>) -> Clients {
    let mut clients = Clients::connect(config.endpoint_url.as_deref(), config.region.as_deref()).await;
    if let Some(gate) = gate {
        clients.dynamodb = gate.wrap(&clients.dynamodb);
    }
    clients
}

/// Lets one DynamoDB request at a time through, across every client it wraps: an HTTP client in front of the
/// SDK's own, that waits (asynchronously, in request order) until the previous request has its response.
///
/// moto (the local AWS emulator) serves requests on parallel threads without isolating them: a
/// `TransactWriteItems` copies the table while other requests change it (and fails with HTTP 500), and a canceled
/// one puts back the copy, undoing what other requests committed meanwhile. DynamoDB runs every request atomically;
/// behind this gate, moto does too, while concurrent writers' read-decide-write rounds still interleave between
/// requests. Never needed on AWS.
///
/// A request dropped mid-flight (an invocation that "crashes" in a drill) gives its turn back at once.
#[derive(Debug, Clone, Default)]
pub struct DynamoGate {
    turn: Arc<tokio::sync::Mutex<()>>,
}

impl DynamoGate {
    /// `client` with this gate in front of its HTTP client (its interceptors, the request counter among them,
    /// kept).
    pub fn wrap(&self, client: &dynamodb::Client) -> dynamodb::Client {
        let config = client.config();
        let Some(inner) = config.http_client() else {
            tracing::warn!("the DynamoDB client has no HTTP client to put the gate in front of; not serializing");
            return client.clone();
        };
        let gated = GatedHttpClient { inner, turn: Arc::clone(&self.turn) };
        dynamodb::Client::from_conf(config.to_builder().http_client(gated).build())
    }
}

/// An HTTP client whose connectors wait for the gate's turn.
#[derive(Debug, Clone)]
struct GatedHttpClient {
    inner: SharedHttpClient,
    turn: Arc<tokio::sync::Mutex<()>>,
}

impl HttpClient for GatedHttpClient {
    fn http_connector(&self, settings: &HttpConnectorSettings, components: &RuntimeComponents) -> SharedHttpConnector {
        let inner = self.inner.http_connector(settings, components);
        SharedHttpConnector::new(GatedConnector { inner, turn: Arc::clone(&self.turn) })
    }

    fn connector_metadata(&self) -> Option<ConnectorMetadata> {
        self.inner.connector_metadata()
    }
}

#[derive(Debug)]
struct GatedConnector {
    inner: SharedHttpConnector,
    turn: Arc<tokio::sync::Mutex<()>>,
}

impl HttpConnector for GatedConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let (inner, turn) = (self.inner.clone(), Arc::clone(&self.turn));
        HttpConnectorFuture::new(async move {
            // moto has finished the operation once its response arrives; the body is read after the turn.
            let _turn = turn.lock_owned().await;
            inner.call(request).await
        })
    }
}
