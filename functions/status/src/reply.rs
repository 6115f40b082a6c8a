//! Building Function URL responses: JSON bodies, the error shapes, the headers every answer carries.

use aws_lambda_events::event::lambda_function_urls::LambdaFunctionUrlResponse;
use aws_lambda_events::http::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use aws_lambda_events::http::HeaderValue;
use serde::Serialize;
use serde_json::json;
use synctrail::model::EventId;
use synctrail::store::StoreError;

/// Seconds a client should wait before retrying after a retryable store error.
const RETRY_AFTER_SECONDS: &str = "1";

/// A JSON response with `status` (not cached: a status changes).
pub(crate) fn json(status: u16, body: &impl Serialize) -> LambdaFunctionUrlResponse {
    let mut response = LambdaFunctionUrlResponse::default();
    match serde_json::to_string(body) {
        Ok(text) => {
            response.status_code = i64::from(status);
            response.body = Some(text);
        }
        Err(e) => {
            tracing::error!(error = %e, "the response body could not be encoded");
            response.status_code = 500;
            response.body = Some(r#"{"error":"the response could not be encoded"}"#.to_owned());
        }
    }
    response.headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response.headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// 400: the id is not a valid event id.
pub(crate) fn invalid_id(reason: &str) -> LambdaFunctionUrlResponse {
    json(400, &json!({ "error": reason }))
}

/// 404: no event has this id.
pub(crate) fn unknown_event(event_id: &EventId) -> LambdaFunctionUrlResponse {
    json(404, &json!({ "error": format!("no event {event_id} is recorded"), "event_id": event_id }))
}

/// 404: the path names nothing this function serves.
pub(crate) fn no_route(path: &str) -> LambdaFunctionUrlResponse {
    json(404, &json!({ "error": format!("nothing at {path}; ask GET /events/{{event_id}}") }))
}

/// 405: only GET is served, said in `Allow`.
pub(crate) fn method_not_allowed(method: &str, allowed: &'static str) -> LambdaFunctionUrlResponse {
    let mut response = json(405, &json!({ "error": format!("method {method} is not allowed; use {allowed}") }));
    response.headers.insert(ALLOW, HeaderValue::from_static(allowed));
    response
}

/// 503 with `Retry-After` when the store may answer later, 500 otherwise. The body names the error by its stable code
/// only: the store's own text (an SDK's message may name the account, a role or the table) goes to the log.
pub(crate) fn store_failed(event_id: &EventId, error: &StoreError) -> LambdaFunctionUrlResponse {
    let retryable = error.is_retryable();
    let body = json!({
        "error": format!("reading event {event_id} failed ({}); the function's log has the detail", error.code()),
        "code": error.code(),
        "event_id": event_id,
        "retryable": retryable,
    });
    if !retryable {
        tracing::error!(event_id = %event_id, error = %error, "reading the event failed");
        return json(500, &body);
    }
    tracing::warn!(event_id = %event_id, error = %error, "reading the event failed; the client may retry");
    let mut response = json(503, &body);
    response.headers.insert(RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECONDS));
    response
}
