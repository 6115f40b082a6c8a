//! [`HttpDestination`]: one pooled client per cold start, each change one request, at most
//! `concurrency` requests in flight, none waited on past the invocation's deadline.

use super::config::{HttpConfigError, HttpDestinationConfig};
use super::outcome::outcome;
use super::read::{read_outcome, read_uri};
use super::signature::{sign, Secret, SIGNATURE_HEADER};
use super::wire::WireChange;
use crate::clock::Clock;
use crate::destination::{ApplyOutcome, Change, Destination, DestinationError, DestinationRecord, ReadError};
use crate::model::EntityKey;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use http::header::{CONTENT_TYPE, USER_AGENT};
use http::{HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// The header carrying the event id.
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";
/// The header carrying the invocation's X-Ray trace header.
pub const TRACE_HEADER: &str = "x-amzn-trace-id";
/// Time kept free before the invocation's deadline, so the engine can still record the answer.
pub const DEADLINE_RESERVE: Duration = Duration::from_millis(250);
/// The largest answer body read; a longer one fails the attempt (retryable).
pub const MAX_ANSWER_BYTES: usize = 1024 * 1024;
/// How long an idle pooled connection is kept.
const POOL_IDLE: Duration = Duration::from_secs(30);

/// Delivers changes as HTTP `POST`s (see the module docs and `docs/destination-protocol.md`).
pub struct HttpDestination {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    url: Uri,
    timeout: Duration,
    secret: Option<Secret>,
    slots: Semaphore,
    clock: Arc<dyn Clock>,
    user_agent: HeaderValue,
}

impl std::fmt::Debug for HttpDestination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpDestination")
            .field("url", &self.url)
            .field("timeout", &self.timeout)
            .field("signed", &self.secret.is_some())
            .finish_non_exhaustive()
    }
}

impl HttpDestination {
    /// The destination `config` describes; `clock` stamps signatures and measures the time left before a change's
    /// deadline. Fails only for an `https://` URL when the platform's TLS roots can't be loaded.
    pub fn new(config: HttpDestinationConfig, clock: Arc<dyn Clock>) -> Result<Self, HttpConfigError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = if config.url.scheme_str() == Some("https") {
            hyper_rustls::HttpsConnectorBuilder::new()
                .with_provider_and_native_roots(provider)
                .map_err(|source| HttpConfigError::TlsRoots { source })?
        } else {
            let tls = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| HttpConfigError::TlsRoots { source: std::io::Error::other(e) })?
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
            hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls)
        };
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(config.connect_timeout));
        http.set_nodelay(true);
        let connector = tls.https_or_http().enable_http1().wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE)
            .pool_max_idle_per_host(config.concurrency)
            .pool_timer(TokioTimer::new())
            .build(connector);
        Ok(Self {
            client,
            url: config.url,
            timeout: config.timeout,
            secret: config.secret,
            slots: Semaphore::new(config.concurrency),
            clock,
            user_agent: HeaderValue::from_static(concat!("synctrail/", env!("CARGO_PKG_VERSION"))),
        })
    }

    /// How long this call may wait: the overall timeout, cut to the time left before the deadline (less
    /// [`DEADLINE_RESERVE`]); an error when no time is left (nothing is sent then).
    fn time_limit(&self, deadline: Option<DateTime<Utc>>) -> Result<Duration, DestinationError> {
        let Some(deadline) = deadline else {
            return Ok(self.timeout);
        };
        let left = (deadline - self.clock.now()).to_std().unwrap_or(Duration::ZERO).saturating_sub(DEADLINE_RESERVE);
        if left.is_zero() {
            return Err(DestinationError::retryable(
                "not sent: the invocation's deadline is too close to wait for an answer",
            ));
        }
        Ok(left.min(self.timeout))
    }

    /// The signed request for `change` with `body`.
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
            let signature = sign(secret, self.clock.now().timestamp(), &body);
            let value = HeaderValue::from_str(&signature).map_err(|e| DestinationError::Permanent(e.to_string()))?;
            request = request.header(SIGNATURE_HEADER, value);
        }
        request.body(Full::new(Bytes::from(body))).map_err(|e| DestinationError::Permanent(e.to_string()))
    }

    /// Sends `request` and reads the whole answer.
    async fn exchange(&self, request: Request<Full<Bytes>>) -> Result<Answer, DestinationError> {
        let response = self.client.request(request).await.map_err(|e| {
            let what = if e.is_connect() { "could not connect to the receiver" } else { "the request failed" };
            DestinationError::retryable(format!("{what}: {}", chain(&e)))
        })?;
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, MAX_ANSWER_BYTES).collect().await.map_err(|e| {
            DestinationError::retryable(format!(
                "HTTP {}: the answer's body could not be read (the change may be stored): {e}",
                parts.status.as_u16()
            ))
        })?;
        Ok(Answer { status: parts.status, headers: parts.headers, body: body.to_bytes() })
    }
}

/// A receiver's whole answer.
struct Answer {
    status: http::StatusCode,
    headers: http::HeaderMap,
    body: Bytes,
}

#[async_trait]
impl Destination for HttpDestination {
    async fn apply(&self, change: &Change<'_>) -> Result<ApplyOutcome, DestinationError> {
        let total = self.time_limit(change.deadline)?;
        let body = serde_json::to_vec(&WireChange::of(change))
            .map_err(|e| DestinationError::Permanent(format!("the change can't be encoded as JSON: {e}")))?;
        let started = tokio::time::Instant::now();
        let _slot = match tokio::time::timeout(total, self.slots.acquire()).await {
            Ok(Ok(slot)) => slot,
            Ok(Err(_)) | Err(_) => {
                return Err(DestinationError::retryable(format!(
                    "not sent: no request slot came free within {} ms",
                    total.as_millis()
                )))
            }
        };
        let left = total.saturating_sub(started.elapsed());
        let request = self.request(change, body)?;
        let answer = match tokio::time::timeout(left, self.exchange(request)).await {
            Ok(answer) => answer?,
            Err(_) => {
                return Err(DestinationError::retryable(format!(
                    "no answer within {} ms (the receiver may have stored the change; the retry says so)",
                    total.as_millis()
                )))
            }
        };
        tracing::debug!(event_id = %change.event_id, status = answer.status.as_u16(), "receiver answered");
        outcome(answer.status, &answer.headers, &answer.body, change.entity, self.clock.now())
    }

    /// `GET <url>?entity=<key>`, signed over the entity key, within the request timeout.
    async fn read(&self, entity: &EntityKey) -> Result<Option<DestinationRecord>, ReadError> {
        let key = entity.to_string();
        let mut request = Request::builder()
            .method(Method::GET)
            .uri(read_uri(&self.url, &key)?)
            .header(USER_AGENT, self.user_agent.clone());
        if let Some(secret) = &self.secret {
            let signature = sign(secret, self.clock.now().timestamp(), key.as_bytes());
            let value = HeaderValue::from_str(&signature).map_err(|e| ReadError::Failed(e.to_string()))?;
            request = request.header(SIGNATURE_HEADER, value);
        }
        let request = request.body(Full::new(Bytes::new())).map_err(|e| ReadError::Failed(e.to_string()))?;
        let _slot = self.slots.acquire().await.map_err(|e| ReadError::Failed(e.to_string()))?;
        let answer = match tokio::time::timeout(self.timeout, self.exchange(request)).await {
            Ok(answer) => answer.map_err(|e| ReadError::Failed(e.to_string()))?,
            Err(_) => {
                return Err(ReadError::Failed(format!("no answer within {} ms", self.timeout.as_millis())));
            }
        };
        read_outcome(answer.status, &answer.body)
    }
}

/// An error and its sources, outermost first.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
