//! [`Transport`]: the pooled HTTP/1.1 client every destination that speaks HTTP is built on (the HTTP destination,
//! the GitHub and Shopify connectors): hyper with rustls on ring and the platform's TLS roots, one pool per cold
//! start, at most `concurrency` requests in flight, and each call's time cut to the invocation's deadline.

use super::config::HttpConfigError;
use crate::clock::Clock;
use crate::destination::DestinationError;
use chrono::{DateTime, Utc};
use http::Request;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// Time kept free before the invocation's deadline, so the engine can still record the answer.
pub const DEADLINE_RESERVE: Duration = Duration::from_millis(250);
/// The largest answer body read; a longer one fails the attempt (retryable).
pub const MAX_ANSWER_BYTES: usize = 1024 * 1024;
/// How long an idle pooled connection is kept.
const POOL_IDLE: Duration = Duration::from_secs(30);

/// How a [`Transport`] connects and how long it waits.
#[derive(Debug, Clone, Copy)]
pub struct TransportSettings {
    /// Whether the peer is reached over `https://` (then the platform's TLS roots are loaded).
    pub https: bool,
    /// How long opening the TCP connection may take (the TLS handshake counts against `timeout`).
    pub connect_timeout: Duration,
    /// How long one call may take in all; never past the invocation's deadline.
    pub timeout: Duration,
    /// Requests in flight at most.
    pub concurrency: usize,
}

/// The pooled client, its limits and the clock deadlines are measured on.
pub struct Transport {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
    slots: Semaphore,
    clock: Arc<dyn Clock>,
    peer: &'static str,
}

/// The time one call (one or several requests) may take, counted from its start.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    started: Instant,
    total: Duration,
}

impl Budget {
    /// The whole budget.
    pub fn total(&self) -> Duration {
        self.total
    }

    /// What is left of it now.
    pub fn left(&self) -> Duration {
        self.total.saturating_sub(self.started.elapsed())
    }
}

/// A whole answer.
#[derive(Debug)]
pub struct Answer {
    /// The status code.
    pub status: http::StatusCode,
    /// The headers.
    pub headers: http::HeaderMap,
    /// The body (at most [`MAX_ANSWER_BYTES`]).
    pub body: Bytes,
}

impl Transport {
    /// A transport per `settings`, on `clock`; `peer` names the other side in error messages ("the receiver", "the
    /// GitHub API"), `url_variable` the setting to fix when TLS roots can't be loaded.
    pub fn new(
        settings: TransportSettings,
        clock: Arc<dyn Clock>,
        peer: &'static str,
        url_variable: &'static str,
    ) -> Result<Self, HttpConfigError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls_error = |source| HttpConfigError::TlsRoots { variable: url_variable, source };
        let tls = if settings.https {
            hyper_rustls::HttpsConnectorBuilder::new().with_provider_and_native_roots(provider).map_err(tls_error)?
        } else {
            let tls = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| tls_error(std::io::Error::other(e)))?
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
            hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls)
        };
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(settings.connect_timeout));
        http.set_nodelay(true);
        let connector = tls.https_or_http().enable_http1().wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE)
            .pool_max_idle_per_host(settings.concurrency)
            .pool_timer(TokioTimer::new())
            .build(connector);
        Ok(Self { client, timeout: settings.timeout, slots: Semaphore::new(settings.concurrency), clock, peer })
    }

    /// The clock deadlines and signatures are measured on.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The time a call may take from now: the overall timeout, cut to the time left before `deadline` (less
    /// [`DEADLINE_RESERVE`]); an error when no time is left (nothing is sent then).
    pub fn budget(&self, deadline: Option<DateTime<Utc>>) -> Result<Budget, DestinationError> {
        let started = Instant::now();
        let Some(deadline) = deadline else {
            return Ok(Budget { started, total: self.timeout });
        };
        let left = (deadline - self.clock.now()).to_std().unwrap_or(Duration::ZERO).saturating_sub(DEADLINE_RESERVE);
        if left.is_zero() {
            return Err(DestinationError::retryable(
                "not sent: the invocation's deadline is too close to wait for an answer",
            ));
        }
        Ok(Budget { started, total: left.min(self.timeout) })
    }

    /// Waits for a request slot within what is left of `budget`, then builds the request with `build` — only then,
    /// so a signature's timestamp is taken when the request leaves, not before a wait for a slot — sends it and
    /// reads the whole answer. Failing to connect, a timeout or a cut answer is retryable; an error of `build` is
    /// returned as it is, nothing sent.
    pub async fn send(
        &self,
        build: impl FnOnce() -> Result<Request<Full<Bytes>>, DestinationError>,
        budget: &Budget,
    ) -> Result<Answer, DestinationError> {
        let total = budget.total().as_millis();
        let _slot = match tokio::time::timeout(budget.left(), self.slots.acquire()).await {
            Ok(Ok(slot)) => slot,
            Ok(Err(_)) | Err(_) => {
                return Err(DestinationError::retryable(format!(
                    "not sent: no request slot came free within {total} ms"
                )))
            }
        };
        let request = build()?;
        match tokio::time::timeout(budget.left(), self.exchange(request)).await {
            Ok(answer) => answer,
            Err(_) => Err(DestinationError::retryable(format!(
                "no answer within {total} ms ({} may have stored the change; the retry says so)",
                self.peer
            ))),
        }
    }

    /// Sends `request` and reads the whole answer.
    async fn exchange(&self, request: Request<Full<Bytes>>) -> Result<Answer, DestinationError> {
        let response = self.client.request(request).await.map_err(|e| {
            let what = if e.is_connect() { "could not connect to" } else { "the request failed at" };
            DestinationError::retryable(format!("{what} {}: {}", self.peer, chain(&e)))
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
