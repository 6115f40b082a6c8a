//! The ingest function's CloudWatch Embedded Metric Format line: one per request, printed to standard output.
//! `webhooks` counts requests by what they came to (`handled`: [`crate::Handled::label`]) and source (a configured
//! one, else `unknown`: whatever a stranger puts in the path never becomes a dimension); `handler_duration` is the
//! handler's time in milliseconds. An alarm on `handled = unauthenticated` watches forged deliveries.

use crate::Answer;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

/// Requests handled.
pub const WEBHOOKS: &str = "webhooks";
/// Milliseconds the handler took.
pub const HANDLER_DURATION: &str = "handler_duration";
/// The source dimension of a request that named no configured source.
pub const UNKNOWN_SOURCE: &str = "unknown";

/// The EMF line of one request answered by `function` at `at` in `namespace`, after `duration`.
pub fn emf_line(
    answer: &Answer,
    function: &str,
    namespace: &str,
    at: DateTime<Utc>,
    duration: std::time::Duration,
) -> Value {
    json!({
        "function": function,
        "source": answer.source.as_deref().unwrap_or(UNKNOWN_SOURCE),
        "handled": answer.handled.label(),
        WEBHOOKS: 1,
        HANDLER_DURATION: duration.as_secs_f64() * 1000.0,
        "_aws": {
            "Timestamp": at.timestamp_millis(),
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [["function", "handled"], ["function", "source", "handled"]],
                "Metrics": [
                    { "Name": WEBHOOKS, "Unit": "Count" },
                    { "Name": HANDLER_DURATION, "Unit": "Milliseconds" },
                ],
            }],
        },
    })
}
