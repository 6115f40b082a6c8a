//! [`DynamoGate`]: one DynamoDB request at a time, for moto (never needed on AWS).

use aws_sdk_dynamodb as dynamodb;
use aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use std::sync::Arc;

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
