//! The AWS backend: event records and heads in one DynamoDB table ([`DynamoStore`]), payloads in S3
//! ([`S3Payloads`]), the ingest queue and its dead-letter queue in SQS ([`SqsQueue`]), and the reference
//! destination ([`DynamoMirror`]) in the same table.
//!
//! [`AwsBackend::connect`] builds the first three from an [`AwsConfig`] (`crate::compose` adds the mirror, with its
//! own clients); [`setup::create_all`] creates the resources
//! for development endpoints and tests. Every client counts its request attempts into one [`RequestCounter`].
//!
//! Time: DynamoDB and S3 keep what they are given; SQS visibility and delays run on the *server's* wall clock,
//! never on the engine's [`crate::Clock`]. The HTTPS client is hyper 1 with rustls on `ring` (no aws-lc build).

mod counter;
mod direct;
mod dynamodb;
mod error;
mod gate;
pub mod meter;
mod mirror;
mod pause;
mod s3;
mod sdk_batch_get;
pub mod setup;
mod snapshot;
mod sqs;
mod wire;

pub use crate::config::AwsConfig;
pub use crate::destination::guard::MirrorRecord;
pub use counter::RequestCounter;
pub use dynamodb::{DynamoStore, ITEM_SIZE_LIMIT, LEASE_SHARDS, STATUS_SHARDS};
pub use gate::DynamoGate;
pub use meter::{CapacityMeter, Party};
pub use mirror::{DynamoMirror, MAX_ROUNDS};
pub use s3::{apply_lifecycle, S3Payloads};
pub use snapshot::S3Snapshot;
pub use sqs::SqsQueue;

/// The SDK crates the adapters are built on, re-exported so callers (and tests) use the same versions.
pub mod sdk {
    pub use aws_sdk_dynamodb as dynamodb;
    pub use aws_sdk_s3 as s3;
    pub use aws_sdk_secretsmanager as secretsmanager;
    pub use aws_sdk_sqs as sqs;
}

use crate::store::StoreError;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use std::sync::Arc;
use std::time::Duration;

/// One attempt may take this long before the SDK gives up on it (and retries).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// A whole call, retries included, may take this long.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(30);

/// The three SDK clients, sharing one HTTPS client and one [`RequestCounter`].
#[derive(Debug, Clone)]
pub struct Clients {
    /// DynamoDB.
    pub dynamodb: aws_sdk_dynamodb::Client,
    /// S3 (path-style addressing when an endpoint URL is given).
    pub s3: aws_sdk_s3::Client,
    /// SQS.
    pub sqs: aws_sdk_sqs::Client,
    /// Request attempts of all three.
    pub requests: RequestCounter,
    /// The SDK configuration's credentials provider, for the requests the event store signs itself
    /// (`direct`).
    credentials: Option<aws_credential_types::provider::SharedCredentialsProvider>,
}

impl Clients {
    /// Clients for `config`'s endpoint and region, with a request counter of their own; DynamoDB behind `gate` when
    /// given (see [`DynamoGate`]), and metered by `meter` when given (see [`CapacityMeter`]).
    pub async fn for_config(config: &AwsConfig, gate: Option<&DynamoGate>, meter: Option<&CapacityMeter>) -> Self {
        let mut clients = Self::connect(config.endpoint_url.as_deref(), config.region.as_deref()).await;
        if let Some(gate) = gate {
            clients.dynamodb = gate.wrap(&clients.dynamodb);
        }
        if let Some(meter) = meter {
            clients.dynamodb = meter.wrap(&clients.dynamodb);
        }
        clients
    }

    /// Clients on [`sdk_config`]`(endpoint_url, region)`, with a request counter of their own.
    pub async fn connect(endpoint_url: Option<&str>, region: Option<&str>) -> Self {
        let shared = sdk_config(endpoint_url, region).await;
        let requests = RequestCounter::new();
        let dynamodb = aws_sdk_dynamodb::config::Builder::from(&shared).interceptor(requests.clone()).build();
        let mut s3 = aws_sdk_s3::config::Builder::from(&shared).interceptor(requests.clone());
        if endpoint_url.is_some() || shared.endpoint_url().is_some() {
            s3 = s3.force_path_style(true);
        }
        let sqs = aws_sdk_sqs::config::Builder::from(&shared).interceptor(requests.clone()).build();
        Self {
            dynamodb: aws_sdk_dynamodb::Client::from_conf(dynamodb),
            s3: aws_sdk_s3::Client::from_conf(s3.build()),
            sqs: aws_sdk_sqs::Client::from_conf(sqs),
            requests,
            credentials: shared.credentials_provider(),
        }
    }
}

/// The SDK configuration every client here is built from: credentials, region and `AWS_ENDPOINT_URL*` from the
/// environment (`aws_config::defaults(BehaviorVersion::latest())`), `endpoint_url` and `region` overriding them
/// (`us-east-1` with an endpoint and no region), the hyper 1 + rustls (ring) HTTPS client, and the timeouts.
pub async fn sdk_config(endpoint_url: Option<&str>, region: Option<&str>) -> aws_config::SdkConfig {
    let http =
        aws_smithy_http_client::Builder::new().tls_provider(tls::Provider::Rustls(CryptoMode::Ring)).build_https();
    let timeouts = TimeoutConfig::builder()
        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
        .operation_timeout(OPERATION_TIMEOUT)
        .build();
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(http).timeout_config(timeouts);
    if let Some(url) = endpoint_url {
        loader = loader.endpoint_url(url);
    }
    match (region, endpoint_url) {
        (Some(region), _) => loader = loader.region(Region::new(region.to_owned())),
        (None, Some(_)) if std::env::var_os("AWS_REGION").is_none() => {
            loader = loader.region(Region::from_static("us-east-1"));
        }
        _ => {}
    }
    loader.load().await
}

/// The AWS adapters.
#[derive(Clone)]
pub struct AwsBackend {
    /// Event records and entity heads (DynamoDB).
    pub store: Arc<DynamoStore>,
    /// Payloads (S3).
    pub payloads: Arc<S3Payloads>,
    /// The ingest queue and its dead-letter queue (SQS).
    pub queue: Arc<SqsQueue>,
    /// Request attempts of all three.
    pub requests: RequestCounter,
}

impl AwsBackend {
    /// Connects to the resources `config` names (they must exist; see [`setup::create_all`]). Reads the queue's
    /// redrive policy (`GetQueueAttributes`) to learn `max_receives`.
    pub async fn connect(config: &AwsConfig) -> Result<Self, StoreError> {
        let clients = Clients::connect(config.endpoint_url.as_deref(), config.region.as_deref()).await;
        Self::with_clients(&clients, config).await
    }

    /// Like [`AwsBackend::connect`], reusing `clients` (and their request counter).
    pub async fn with_clients(clients: &Clients, config: &AwsConfig) -> Result<Self, StoreError> {
        let (sqs, queue, dlq) = (clients.sqs.clone(), &config.queue, &config.dlq);
        let queue = match config.max_receives {
            // Known from the configuration: a cold start makes no request.
            Some(max_receives) => SqsQueue::known(sqs, queue, dlq, max_receives).await?,
            None => SqsQueue::open(sqs, queue, dlq).await?,
        };
        Ok(Self {
            store: Arc::new(DynamoStore::new(clients, &config.table)),
            payloads: Arc::new(S3Payloads::new(clients.s3.clone(), &config.bucket)),
            queue: Arc::new(queue),
            requests: clients.requests.clone(),
        })
    }
}
