//! [`HttpDestination`]: one pooled client per cold start, each change one request, at most
//! `concurrency` requests in flight, none waited on past the invocation's deadline.

use super::config::{HttpConfigError, HttpDestinationConfig, URL_VARIABLE};
use super::outcome::outcome;
use super::read::{read_outcome, read_uri};
use super::signature::{sign, Secret, SIGNATURE_HEADER};
use super::transport::{Transport, TransportSettings};
use super::wire::WireChange;
use crate::clock::Clock;
use crate::destination::{ApplyOutcome, Change, Destination, DestinationError, DestinationRecord, ReadError};
use crate::model::EntityKey;
use async_trait::async_trait;
use http::header::{CONTENT_TYPE, USER_AGENT};
use http::{HeaderValue, Method, Request, Uri};
use http_body_util::Full;
use hyper::body::Bytes;
use std::sync::Arc;

pub use super::transport::{DEADLINE_RESERVE, MAX_ANSWER_BYTES};

/// The header carrying the event id.
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";
/// The header carrying the invocation's X-Ray trace header.
pub const TRACE_HEADER: &str = "x-amzn-trace-id";

/// Delivers changes as HTTP `POST`s (see the module docs and `docs/destination-protocol.md`).
pub struct HttpDestination {
    transport: Transport,
    url: Uri,
    secret: Option<Secret>,
    user_agent: HeaderValue,
}

impl std::fmt::Debug for HttpDestination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpDestination")
            .field("url", &super::config::shown_url(&self.url.to_string()))
            .field("signed", &self.secret.is_some())
            .finish_non_exhaustive()
    }
}

impl HttpDestination {
    /// The destination `config` describes; `clock` stamps signatures and measures the time left before a change's
    /// deadline. Fails only for an `https://` URL when the platform's TLS roots can't be loaded.
    pub fn new(config: HttpDestinationConfig, clock: Arc<dyn Clock>) -> Result<Self, HttpConfigError> {
        let settings = TransportSettings {
            https: config.url.scheme_str() == Some("https"),
            connect_timeout: config.connect_timeout,
            timeout: config.timeout,
            concurrency: config.concurrency,
        };
        Ok(Self {
            transport: Transport::new(settings, clock, "the receiver", URL_VARIABLE)?,
            url: config.url,
            secret: config.secret,
            user_agent: HeaderValue::from_static(concat!("synctrail/", env!("CARGO_PKG_VERSION"))),
        })
    }

    /// The signed request for `change` with `body`, signed now: built once a request slot is held, so the
    /// signature's `t` is when the request leaves.
    fn request(&self, change: &Change<'_>, body: Vec<u8>) -> Result<Request<Full<Bytes>>, DestinationError> {
        let key = HeaderValue::from_str(change.event_id.as_str()).map_err(|_| {
            DestinationError::Permanent(format!("event id {} can't be an Idempotency-Key header", change.event_id))
        })?;
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(self.url.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(USER_AGENT, self.user_agent.clone())
            .header(IDEMPOTENCY_KEY_HEADER, key);
        if let Some(trace) = change.trace_id.and_then(|t| HeaderValue::from_str(t).ok()) {
            request = request.header(TRACE_HEADER, trace);
        }
        if let Some(secret) = &self.secret {
            let signature = sign(secret, self.transport.clock().now().timestamp(), &body);
            let value = HeaderValue::from_str(&signature).map_err(|e| DestinationError::Permanent(e.to_string()))?;
            request = request.header(SIGNATURE_HEADER, value);
        }
        request.body(Full::new(Bytes::from(body))).map_err(|e| DestinationError::Permanent(e.to_string()))
    }

    /// The read of `key` at `uri`, signed now over the key (built once a request slot is held, like a change's).
    fn read_request(&self, uri: Uri, key: &str) -> Result<Request<Full<Bytes>>, DestinationError> {
        let mut request = Request::builder().method(Method::GET).uri(uri).header(USER_AGENT, self.user_agent.clone());
        if let Some(secret) = &self.secret {
            let signature = sign(secret, self.transport.clock().now().timestamp(), key.as_bytes());
            let value = HeaderValue::from_str(&signature).map_err(|e| DestinationError::Permanent(e.to_string()))?;
            request = request.header(SIGNATURE_HEADER, value);
        }
        request.body(Full::new(Bytes::new())).map_err(|e| DestinationError::Permanent(e.to_string()))
    }
}

#[async_trait]
impl Destination for HttpDestination {
    async fn apply(&self, change: &Change<'_>) -> Result<ApplyOutcome, DestinationError> {
        let budget = self.transport.budget(change.deadline)?;
        let body = serde_json::to_vec(&WireChange::of(change))
            .map_err(|e| DestinationError::Permanent(format!("the change can't be encoded as JSON: {e}")))?;
        let answer = self.transport.send(|| self.request(change, body), &budget).await?;
        tracing::debug!(event_id = %change.event_id, status = answer.status.as_u16(), "receiver answered");
        outcome(answer.status, &answer.headers, &answer.body, change.entity, self.transport.clock().now())
    }

    /// `GET <url>?entity=<key>`, signed over the entity key, within the request timeout.
    async fn read(&self, entity: &EntityKey) -> Result<Option<DestinationRecord>, ReadError> {
        let key = entity.to_string();
        let uri = read_uri(&self.url, &key)?;
        let budget = self.transport.budget(None).map_err(|e| ReadError::Failed(e.to_string()))?;
        let answer = self
            .transport
            .send(|| self.read_request(uri, &key), &budget)
            .await
            .map_err(|e| ReadError::Failed(e.to_string()))?;
        read_outcome(answer.status, &answer.body)
    }
}
