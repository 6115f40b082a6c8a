//! The answers: status, a small JSON body, the headers some of them carry, and what happened (for the log line
//! and the metrics). Refusals say nothing about why: the reason is in [`Answer::reason`], for logs and metrics.

use serde_json::{json, Value};
use synctrail::ingress::{AuthFailure, Ignored};
use synctrail::model::EventId;

/// Seconds a sender should wait before retrying a 503.
pub const RETRY_AFTER_SECONDS: u32 = 1;

/// What a request came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    /// Mapped and queued (202).
    Queued,
    /// Mapped, but the queue failed or did not answer in time (503).
    QueueFailed,
    /// Authenticated but unmappable: recorded `rejected`, raw body archived (202).
    Rejected,
    /// Authenticated but unmappable, and recording it failed (503).
    RecordFailed,
    /// Authenticated, not synced (200).
    Ignored,
    /// The signature is missing, malformed or wrong (401).
    Unauthenticated,
    /// No such source (404).
    UnknownSource,
    /// Not a webhook route (404).
    NoRoute,
    /// A webhook route with another method than POST (405).
    MethodNotAllowed,
    /// The body is over the limit (413).
    TooLarge,
    /// The body could not be read: broken off, or not valid base64 (400).
    BadRequest,
    /// The body did not arrive in time (408).
    TimedOut,
}

impl Handled {
    /// The metric label: `queued`, `queue_failed`, `rejected`, `record_failed`, `ignored`, `unauthenticated`,
    /// `unknown_source`, `no_route`, `method_not_allowed`, `too_large`, `bad_request` or `timed_out`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::QueueFailed => "queue_failed",
            Self::Rejected => "rejected",
            Self::RecordFailed => "record_failed",
            Self::Ignored => "ignored",
            Self::Unauthenticated => "unauthenticated",
            Self::UnknownSource => "unknown_source",
            Self::NoRoute => "no_route",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::TooLarge => "too_large",
            Self::BadRequest => "bad_request",
            Self::TimedOut => "timed_out",
        }
    }
}

/// One answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The JSON body.
    pub body: Value,
    /// `Allow` (405).
    pub allow: Option<&'static str>,
    /// `Retry-After` in seconds (503).
    pub retry_after: Option<u32>,
    /// What happened.
    pub handled: Handled,
    /// Why, for logs and metrics only: the signature failure or why a delivery is ignored.
    pub reason: Option<&'static str>,
    /// The configured source the route named (never an unknown name: metrics stay bounded).
    pub source: Option<String>,
    /// The event queued or recorded.
    pub event_id: Option<EventId>,
}

impl Answer {
    fn new(status: u16, handled: Handled, body: Value) -> Self {
        Self { status, body, allow: None, retry_after: None, handled, reason: None, source: None, event_id: None }
    }

    /// This answer, about a configured source.
    pub(crate) fn about_source(mut self, source: &str) -> Self {
        self.source = Some(source.to_owned());
        self
    }

    /// 202: the envelope is on the queue.
    pub(crate) fn queued(event_id: &EventId) -> Self {
        let mut answer = Self::new(202, Handled::Queued, json!({ "status": "queued", "event_id": event_id }));
        answer.event_id = Some(event_id.clone());
        answer
    }

    /// 202: recorded `rejected` with `reason` (the sender is authenticated: it may know why).
    pub(crate) fn rejected(event_id: &EventId, reason: &str) -> Self {
        let body = json!({ "status": "rejected", "event_id": event_id, "reason": reason });
        let mut answer = Self::new(202, Handled::Rejected, body);
        answer.event_id = Some(event_id.clone());
        answer
    }

    /// 200: authenticated, nothing to sync.
    pub(crate) fn ignored(ignored: &Ignored) -> Self {
        let mut answer = Self::new(200, Handled::Ignored, json!({ "status": "ignored" }));
        answer.reason = Some(ignored.label());
        answer
    }

    /// 401, no detail.
    pub(crate) fn unauthorized(failure: AuthFailure) -> Self {
        let mut answer = Self::new(401, Handled::Unauthenticated, json!({ "error": "unauthorized" }));
        answer.reason = Some(failure.label());
        answer
    }

    /// 404, no detail: the same for an unknown source as for any other path.
    pub(crate) fn not_found(handled: Handled) -> Self {
        Self::new(404, handled, json!({ "error": "not found" }))
    }

    /// 405 with `Allow: POST`.
    pub(crate) fn method_not_allowed() -> Self {
        let mut answer = Self::new(405, Handled::MethodNotAllowed, json!({ "error": "method not allowed; use POST" }));
        answer.allow = Some(crate::WEBHOOK_METHOD);
        answer
    }

    /// 413: over `limit` bytes.
    pub fn too_large(limit: usize) -> Self {
        Self::new(413, Handled::TooLarge, json!({ "error": format!("the body is over the limit of {limit} bytes") }))
    }

    /// 400: the body could not be read.
    pub fn bad_request() -> Self {
        Self::new(400, Handled::BadRequest, json!({ "error": "the body could not be read" }))
    }

    /// 408: the body did not arrive in time.
    pub fn timed_out() -> Self {
        Self::new(408, Handled::TimedOut, json!({ "error": "the request did not arrive in time" }))
    }

    /// 503 with `Retry-After`: nothing was stored; the sender should deliver again.
    pub(crate) fn unavailable(handled: Handled) -> Self {
        let mut answer =
            Self::new(503, handled, json!({ "error": "the delivery could not be stored; deliver it again" }));
        answer.retry_after = Some(RETRY_AFTER_SECONDS);
        answer
    }

    /// The body as JSON text.
    pub fn body_text(&self) -> String {
        self.body.to_string()
    }

    /// One log line: what happened, never the body or a secret (an unknown source's name is not logged either:
    /// anyone can send it).
    pub fn log(&self, body_bytes: usize) {
        let (status, handled, reason) = (self.status, self.handled.label(), self.reason.unwrap_or(""));
        let (source, event_id) = (self.source.as_deref().unwrap_or(""), self.event_id.as_ref().map(EventId::as_str));
        if self.status >= 500 {
            tracing::warn!(status, handled, reason, source, event_id, body_bytes, "webhook not stored");
        } else {
            tracing::info!(status, handled, reason, source, event_id, body_bytes, "webhook");
        }
    }
}
