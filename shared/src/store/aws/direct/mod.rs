//! [`Direct`]: the DynamoDB requests of the hot path without the SDK's request pipeline.
//!
//! The event store makes four conditional `PutItem`s per happy-path event (the claim's two, the settle's two), the
//! reference mirror a `BatchGetItem` and a `TransactWriteItems`. On Lambda the SDK's orchestrator around each
//! (interceptors, endpoint and auth resolution, per-operation configuration, retry and timeout machinery) cost
//! ≈ 230 µs of CPU per request, against ≈ 90 µs for the request itself built by hand (docs/performance.md, "What a
//! leaner client would save"). [`Direct`] sends the request the SDK would send — `X-Amz-Target: DynamoDB_20120810.<op>`, the
//! same awsJson 1.0 body (`put.rs`, `transact.rs`, `batch_get.rs`) — signed with SigV4 (`sign.rs`: the one request
//! shape written out, checked against the SDK's signer), through the SDK client's own HTTP stack to the endpoint
//! that client resolved: both are learned from the client's first request ([`route`]), so the connection pool is
//! shared and whatever wraps the client's HTTP client (the moto gate, the capacity meter) sees these requests too.
//! Until the client has made a request, every operation answers `None` and the caller uses the SDK.
//!
//! Kept from the SDK: every attempt counted in the [`RequestCounter`] under the operation's name; up to
//! [`MAX_ATTEMPTS`] attempts for throttling and transient failures (timeouts, connection errors, 5xx), with full
//! jitter over an exponential backoff (1 s, doubling, at most 20 s: the SDK's standard retry), the same body each
//! time (a transaction's `ClientRequestToken` with it); 10 s per attempt and 30 s per call (the clients' timeouts);
//! errors by meaning (`error::classify`), the failure kept as the source; credentials from the SDK configuration's
//! provider, cached like the SDK's identity cache does. Left out: clock-skew correction, the retry quota (token
//! bucket) and the user agent's metadata.

mod answer;
mod batch_get;
mod put;
mod route;
mod sign;
mod transact;

pub(crate) use put::PutOutcome;
pub(crate) use transact::TransactOutcome;

use super::counter::RequestCounter;
use super::error::{classify, store_error, Meaning};
use super::{ATTEMPT_TIMEOUT, OPERATION_TIMEOUT};
use crate::store::{Detail, StoreError};
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_smithy_runtime_api::client::http::HttpConnector;
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_types::body::SdkBody;
use route::{Learned, LearningHttpClient, Route};
use serde_json::Value;
use sign::{Signable, Signer};
use std::sync::Arc;
use std::time::Duration;

/// Attempts per call, the first included (the SDK's standard retry mode).
pub(crate) const MAX_ATTEMPTS: u32 = 3;
/// The first retry waits up to this long; each later one twice as long as the one before, at most [`MAX_BACKOFF`].
const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(20);
/// DynamoDB's protocol, awsJson 1.0.
const CONTENT_TYPE: &str = "application/x-amz-json-1.0";

/// Why a direct request failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DirectFailure {
    /// DynamoDB refused the request.
    #[error(
        "DynamoDB answered HTTP {status}{}: {message}{}",
        code.as_deref().map(|c| format!(" {c}")).unwrap_or_default(),
        request_id.as_deref().map(|id| format!(" (request id {id})")).unwrap_or_default()
    )]
    Service {
        /// The HTTP status.
        status: u16,
        /// The error code (`ThrottlingException`, …), when the answer named one.
        code: Option<String>,
        /// The error message.
        message: String,
        /// `x-amzn-RequestId`, what AWS support asks for.
        request_id: Option<String>,
        /// The error's JSON body, for what an operation reads from it (a failed condition's stored item, a
        /// transaction's cancellation reasons).
        details: Value,
    },
    /// A success answer that is not JSON.
    #[error("DynamoDB's answer is not JSON: {0}")]
    Malformed(String),
    /// The request did not get through, or its answer was cut off.
    #[error("sending the request failed: {0}")]
    Transport(#[source] ConnectorError),
    /// No answer within the attempt's time.
    #[error("no answer within {0:?}")]
    TimedOut(Duration),
    /// No credentials provider is configured.
    #[error(
        "no AWS credentials are configured: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (Lambda sets them), or \
         AWS_PROFILE"
    )]
    NoCredentials,
    /// The provider could not load credentials.
    #[error("loading AWS credentials failed: {0}")]
    Credentials(#[source] CredentialsError),
    /// The request could not be built or signed.
    #[error("building the request failed: {0}")]
    Build(String),
}

impl DirectFailure {
    /// What the failure means to the caller (and whether another attempt may help: throttled or unavailable).
    fn meaning(&self) -> Meaning {
        match self {
            Self::Service { status, code, .. } => classify(code.as_deref(), Some(*status)),
            Self::Transport(e) if e.is_user() => Meaning::Backend,
            Self::Transport(_) | Self::TimedOut(_) | Self::Credentials(_) | Self::Malformed(_) => Meaning::Unavailable,
            Self::NoCredentials | Self::Build(_) => Meaning::Backend,
        }
    }

    /// The [`StoreError`] of this failure met while doing `what`, by meaning, the failure kept as its source.
    pub(crate) fn into_store_error(self, what: &str) -> StoreError {
        let meaning = self.meaning();
        store_error(meaning, Detail::caused_by(format!("{what}: {self}"), self))
    }
}

/// DynamoDB requests on the route a client's first request took (see the module docs).
#[derive(Debug, Clone)]
pub(crate) struct Direct {
    learned: Learned,
    region: Option<String>,
    signer: Arc<Signer>,
    requests: RequestCounter,
}

impl Direct {
    /// `client` with its HTTP client wrapped so that its first request teaches the returned `Direct` the route;
    /// signing with `credentials` (the SDK configuration's provider), counting attempts into `requests`.
    pub(crate) fn install(
        client: &aws_sdk_dynamodb::Client,
        credentials: Option<SharedCredentialsProvider>,
        requests: RequestCounter,
    ) -> (aws_sdk_dynamodb::Client, Self) {
        let config = client.config();
        let learned = Learned::default();
        let direct = Self {
            learned: Arc::clone(&learned),
            region: config.region().map(|r| r.as_ref().to_owned()),
            signer: Arc::new(Signer::new(credentials, "dynamodb")),
            requests,
        };
        let Some(inner) = config.http_client() else {
            // No HTTP client to learn from: nothing is learned, every request goes through the SDK.
            return (client.clone(), direct);
        };
        let learning = LearningHttpClient { inner, learned };
        (aws_sdk_dynamodb::Client::from_conf(config.to_builder().http_client(learning).build()), direct)
    }

    /// Whether requests go direct: the client has made its first request.
    pub(crate) fn is_ready(&self) -> bool {
        self.learned.get().is_some() && self.region.is_some()
    }

    /// `operation` (`PutItem`, …) with `body`, retried as the module docs say: the answer's JSON, or why it failed;
    /// `None` while the route is not known yet.
    async fn call(&self, operation: &'static str, body: &[u8]) -> Option<Result<Value, DirectFailure>> {
        let (route, region) = (self.learned.get()?, self.region.as_deref()?);
        let target = format!("DynamoDB_20120810.{operation}");
        let started = tokio::time::Instant::now();
        let mut attempt = 1;
        loop {
            self.requests.add("DynamoDB", operation);
            let sent = tokio::time::timeout(ATTEMPT_TIMEOUT, self.attempt(route, region, &target, body)).await;
            let failure = match sent.unwrap_or(Err(DirectFailure::TimedOut(ATTEMPT_TIMEOUT))) {
                Ok(answer) => return Some(Ok(answer)),
                Err(failure) => failure,
            };
            let pause = backoff(attempt);
            let retryable = matches!(failure.meaning(), Meaning::Throttled | Meaning::Unavailable);
            if !retryable || attempt >= MAX_ATTEMPTS || started.elapsed() + pause + ATTEMPT_TIMEOUT > OPERATION_TIMEOUT
            {
                return Some(Err(failure));
            }
            tracing::debug!(operation, attempt, error = %failure, ?pause, "DynamoDB request failed; retrying");
            tokio::time::sleep(pause).await;
            attempt += 1;
        }
    }

    /// One signed request and its answer.
    async fn attempt(&self, route: &Route, region: &str, target: &str, body: &[u8]) -> Result<Value, DirectFailure> {
        let uri = format!("{}/", route.origin);
        let host = route.origin.split_once("://").map_or(route.origin.as_str(), |(_, authority)| authority);
        let signable = Signable { host, target, content_type: CONTENT_TYPE, region };
        let signed = self.signer.headers(&signable, body, chrono::Utc::now()).await?;
        let mut request = aws_smithy_runtime_api::http::Request::new(SdkBody::from(body.to_vec()));
        let invalid = |e: aws_smithy_runtime_api::http::HttpError| DirectFailure::Build(e.to_string());
        request.set_method("POST").map_err(invalid)?;
        request.set_uri(uri.as_str()).map_err(invalid)?;
        let headers = request.headers_mut();
        for (name, value) in [("content-type", CONTENT_TYPE), ("host", host), ("x-amz-target", target)] {
            headers.try_insert(name, value.to_owned()).map_err(invalid)?;
        }
        for (name, value) in signed {
            headers.try_insert(name, value).map_err(invalid)?;
        }
        let response = route.connector.call(request).await.map_err(DirectFailure::Transport)?;
        answer::read(response).await
    }
}

/// The wait before attempt `attempt + 1`: uniformly random up to `INITIAL_BACKOFF × 2^(attempt − 1)`, at most
/// [`MAX_BACKOFF`].
fn backoff(attempt: u32) -> Duration {
    let ceiling = INITIAL_BACKOFF.saturating_mul(1 << attempt.saturating_sub(1).min(16)).min(MAX_BACKOFF);
    ceiling.mul_f64(rand::random::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_jittered_under_a_doubling_ceiling_of_at_most_twenty_seconds() {
        assert_eq!((INITIAL_BACKOFF, MAX_BACKOFF), (Duration::from_secs(1), Duration::from_secs(20)));
        // (attempt, its ceiling, the previous attempt's ceiling): 1 s, then twice the one before, at most 20 s.
        let ceilings: [(u32, f64, f64); 9] = [
            (1, 1.0, 0.0),
            (2, 2.0, 1.0),
            (3, 4.0, 2.0),
            (4, 8.0, 4.0),
            (5, 16.0, 8.0),
            (6, 20.0, 16.0),
            (7, 20.0, 20.0),
            (30, 20.0, 20.0),
            (u32::MAX, 20.0, 20.0),
        ];
        for (attempt, ceiling, previous) in ceilings {
            let samples: Vec<f64> = (0..1_000).map(|_| backoff(attempt).as_secs_f64()).collect();
            let (low, high) = samples.iter().fold((f64::MAX, 0.0_f64), |(low, high), &s| (low.min(s), high.max(s)));
            // Uniform under the ceiling: a thousand draws all in one half of it, or all under 16 s of 20, would be
            // a chance of at most 0.8^1000.
            assert!(high <= ceiling, "attempt {attempt}: {high} s over the ceiling of {ceiling} s");
            assert!(low < ceiling / 2.0 && ceiling / 2.0 < high, "attempt {attempt}: jittered, {low} s to {high} s");
            let doubled = previous.min(16.0);
            assert!(
                high > doubled,
                "attempt {attempt}: at most {high} s, its ceiling is not {ceiling} s (from {previous} s)"
            );
        }
    }

    #[test]
    fn throttling_and_transient_failures_are_classified_retryable_and_the_rest_are_not() {
        let service = |status, code: &str| DirectFailure::Service {
            status,
            code: Some(code.into()),
            message: "m".into(),
            request_id: Some("R1".into()),
            details: Value::Null,
        };
        assert_eq!(service(400, "ThrottlingException").meaning(), Meaning::Throttled);
        assert_eq!(service(400, "ProvisionedThroughputExceededException").meaning(), Meaning::Throttled);
        assert_eq!(service(500, "InternalServerError").meaning(), Meaning::Unavailable);
        assert_eq!(service(400, "ValidationException").meaning(), Meaning::Backend);
        assert_eq!(DirectFailure::TimedOut(ATTEMPT_TIMEOUT).meaning(), Meaning::Unavailable);
        assert_eq!(DirectFailure::Transport(ConnectorError::io("reset".into())).meaning(), Meaning::Unavailable);
        assert_eq!(DirectFailure::NoCredentials.meaning(), Meaning::Backend);
        match service(400, "ThrottlingException").into_store_error("writing event e1") {
            StoreError::Throttled(detail) => {
                assert!(detail.message().contains("writing event e1: DynamoDB answered HTTP 400 ThrottlingException"));
                assert!(detail.message().ends_with("(request id R1)"), "{}", detail.message());
                assert!(std::error::Error::source(&detail).is_some_and(|s| s.is::<DirectFailure>()));
            }
            other => panic!("expected Throttled, got {other:?}"),
        }
    }
}
