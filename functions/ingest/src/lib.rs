//! The ingest function: webhooks in, envelopes on the ingest queue (spec §1, docs/webhooks.md). One handler,
//! [`Ingest::handle`], serves the Lambda (a Function URL, [`function_url`]) and `synctrail serve`:
//!
//! | request | answer | kept |
//! |---|---|---|
//! | `POST /webhooks/{source}`, signed and mapped | 202 `{"status": "queued", "event_id"}` once the queue took it | one queue message |
//! | the same, but the queue failed or was too slow | 503 with `Retry-After` (a retry is the same event) | nothing |
//! | signed, not mappable | 202 `{"status": "rejected", "event_id", "reason"}` | recorded `rejected`, raw body archived |
//! | signed, not synced (GitHub `ping`, other event types) | 200 `{"status": "ignored"}` | nothing |
//! | a missing, malformed or wrong signature | 401, no detail | nothing |
//! | an unknown source, any other path | 404, no detail | nothing |
//! | another method on `/webhooks/{source}` | 405 with `Allow: POST` | nothing |
//! | a body over the limit | 413 | nothing |
//!
//! Every answer is one log line (never the body, never a secret) and, on Lambda, one metric line ([`metrics`]).

mod answer;
pub mod function_url;
mod init;
pub mod metrics;
mod route;

pub use answer::{Answer, Handled};
pub use init::{ingress_from_env, ingress_from_vars, IngestInitError};
use route::{route, Route, WEBHOOK_METHOD};

use std::sync::Arc;
use std::time::Duration;
use synctrail::engine::Engine;
use synctrail::ingress::{Headers, Ingress, MappedEvent, MappingError, Verdict};
use synctrail::model::{ErrorInfo, ErrorKind};
use synctrail::store::OutgoingMessage;
use synctrail::Invocation;

/// How long the durable step (the queue send, or recording a rejection) may take before the answer is 503: GitHub
/// waits 10 s for an answer, and the function's timeout is 10 s.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(8);

/// One HTTP request, as both front ends see it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// `POST`, `GET`, … as sent.
    pub method: &'a str,
    /// The URL path, without the query string.
    pub path: &'a str,
    /// The headers.
    pub headers: &'a Headers,
    /// The raw body bytes.
    pub body: &'a [u8],
}

/// The webhook handler: verifies and maps with [`Ingress`], queues through the engine's queue, records
/// unmappable deliveries through the engine.
pub struct Ingest {
    ingress: Ingress,
    engine: Arc<Engine>,
    deadline: Duration,
}

impl Ingest {
    /// A handler for `ingress`'s sources over `engine`'s ports, answering within [`ANSWER_WITHIN`]. The ingress
    /// judges time by the engine's clock (the one the composition root injected).
    pub fn new(ingress: Ingress, engine: Arc<Engine>) -> Self {
        let ingress = ingress.with_clock(Arc::clone(&engine.ports().clock));
        Self { ingress, engine, deadline: ANSWER_WITHIN }
    }

    /// The same handler with another bound on the durable step.
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// The largest body accepted, in bytes.
    pub fn max_body_bytes(&self) -> usize {
        self.ingress.config().max_body_bytes
    }

    /// What the request line alone decides, before any body is read: the configured source a webhook route names,
    /// or the answer (404 for any other path or an unknown source, 405 for another method).
    pub fn screen<'p>(&self, method: &str, path: &'p str) -> Result<&'p str, Box<Answer>> {
        let refused = match route(method, path) {
            Route::Webhook(source) if self.ingress.config().sources.contains_key(source) => return Ok(source),
            Route::Webhook(_) => Answer::not_found(Handled::UnknownSource),
            Route::MethodNotAllowed => Answer::method_not_allowed(),
            Route::NotFound => Answer::not_found(Handled::NoRoute),
        };
        Err(Box::new(refused))
    }

    /// The answer to a body refused before it was read whole, because it is over [`Ingest::max_body_bytes`].
    pub fn too_large(&self, source: &str) -> Answer {
        Answer::too_large(self.max_body_bytes()).about_source(source)
    }

    /// Answers one request, logged in one line.
    pub async fn handle(&self, request: &Request<'_>, invocation: &Invocation) -> Answer {
        let answer = match self.screen(request.method, request.path) {
            Ok(source) => self.delivery(source, request, invocation).await,
            Err(answer) => *answer,
        };
        answer.log(request.body.len());
        answer
    }

    async fn delivery(&self, source: &str, request: &Request<'_>, invocation: &Invocation) -> Answer {
        let answer = match self.ingress.handle(source, request.headers, request.body) {
            Verdict::UnknownSource => Answer::not_found(Handled::UnknownSource),
            Verdict::TooLarge { limit, .. } => Answer::too_large(limit),
            Verdict::Unauthenticated(failure) => Answer::unauthorized(failure),
            Verdict::Ignored(ignored) => Answer::ignored(&ignored),
            Verdict::Mapped(event) => self.queue(*event, invocation).await,
            Verdict::Unmappable(error) => self.reject(source, request.body, &error, invocation).await,
        };
        answer.about_source(source)
    }

    /// Sends the envelope (one queue message): 202 only once the queue has it.
    async fn queue(&self, event: MappedEvent, invocation: &Invocation) -> Answer {
        let event_id = event.envelope.event_id;
        let message = OutgoingMessage { trace_header: invocation.trace_id.clone(), ..OutgoingMessage::new(event.body) };
        match tokio::time::timeout(self.deadline, self.engine.ports().queue.send(vec![message])).await {
            Ok(Ok(_)) => Answer::queued(&event_id),
            Ok(Err(error)) => {
                tracing::warn!(event_id = %event_id, error = %error, "the queue refused the webhook's envelope");
                Answer::unavailable(Handled::QueueFailed)
            }
            Err(_) => {
                tracing::warn!(event_id = %event_id, within_ms = self.deadline.as_millis(), "the queue did not answer in time");
                Answer::unavailable(Handled::QueueFailed)
            }
        }
    }

    /// Records an authenticated delivery that does not map: `rejected` with the reason, the raw body archived.
    async fn reject(&self, source: &str, body: &[u8], error: &MappingError, invocation: &Invocation) -> Answer {
        let reason = format!("webhook from {source}: {error}");
        let info = ErrorInfo {
            kind: ErrorKind::InvalidInput,
            message: reason.clone(),
            retryable: false,
            causes: Vec::new(),
            field: error.field().map(str::to_owned),
        };
        let received_as = format!("webhook:{source}");
        let recorded = self.engine.reject_body(body, info, &received_as, invocation);
        match tokio::time::timeout(self.deadline, recorded).await {
            Ok(Ok(outcome)) => match outcome.event_id {
                Some(event_id) => Answer::rejected(&event_id, &reason),
                None => Answer::unavailable(Handled::RecordFailed),
            },
            Ok(Err(error)) => {
                tracing::warn!(error = %error, "recording an unmappable webhook failed");
                Answer::unavailable(Handled::RecordFailed)
            }
            Err(_) => {
                tracing::warn!(within_ms = self.deadline.as_millis(), "recording an unmappable webhook took too long");
                Answer::unavailable(Handled::RecordFailed)
            }
        }
    }
}

#[cfg(test)]
mod tests;
