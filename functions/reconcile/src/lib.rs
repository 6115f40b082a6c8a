//! The reconcile Lambda's handler (spec §7): compares a snapshot of another system's records (NDJSON envelopes in
//! S3, e.g. a nightly export) with the destination and, with `apply`, sends corrective events to the ingest queue.
//! Run by EventBridge Scheduler with:
//!
//! ```json
//! {"source": "shopify", "entity_type": "product", "snapshot": "s3://bucket/reconcile/products.ndjson",
//!  "apply": true, "rate": 50, "run_id": "<aws.scheduler.scheduled-time>"}
//! ```
//!
//! The run id is made of the scheduled time (characters a run id can't hold become `-`), so a retry of the same
//! scheduled invocation resumes the run instead of starting over; the run's state is kept beside the snapshot. Each
//! run prints one CloudWatch EMF line of its counts ([`emf_line`]): an alarm watches `differences`.

mod metrics;

pub use metrics::emf_line;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;
use synctrail::compose::{compose_snapshot, ComposeError};
use synctrail::engine::reconcile::{ReconcileError, ReconcileOptions};
use synctrail_lambda::{Function, InvocationContext};

/// Entities listed in the answer at most (the counts are whole; the log has the run id to look further).
pub const LISTED: usize = 100;

/// What the function is asked to do.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReconcileRequest {
    /// The snapshot's source.
    pub source: String,
    /// Only this entity type.
    pub entity_type: Option<String>,
    /// The snapshot: `s3://bucket/key`.
    pub snapshot: String,
    /// Send the corrections (default: a dry run).
    #[serde(default)]
    pub apply: bool,
    /// At most this many corrections per second.
    pub rate: Option<f64>,
    /// The run's id (resumed when it exists); the schedule passes its scheduled time.
    pub run_id: Option<String>,
    /// The snapshot's time (RFC 3339); default: when the object was last modified.
    pub as_of: Option<DateTime<Utc>>,
}

/// Why a request could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileLambdaError {
    /// The input is not a valid request.
    #[error("invalid reconcile request: {0}; send {{\"source\": \"…\", \"snapshot\": \"s3://bucket/key\", \"apply\": true}}")]
    Invalid(String),
    /// The snapshot can't be used.
    #[error(transparent)]
    Snapshot(#[from] ComposeError),
    /// The run failed (what was checkpointed stays done; a retry with the same run id resumes).
    #[error(transparent)]
    Run(#[from] ReconcileError),
    /// The report could not be encoded.
    #[error("encoding the report: {0}")]
    Json(#[from] serde_json::Error),
}

impl ReconcileLambdaError {
    /// The stable `errorType` Lambda reports: `InvalidRequest`, `SnapshotUnusable`, `DestinationUnreadable`,
    /// `ReconcileFailed` (a retry resumes) or `ReportEncoding`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Invalid(_) | Self::Run(ReconcileError::RunId(_) | ReconcileError::OtherRun { .. }) => {
                "InvalidRequest"
            }
            Self::Snapshot(_) | Self::Run(ReconcileError::Snapshot { .. }) => "SnapshotUnusable",
            Self::Run(ReconcileError::Unreadable(_)) => "DestinationUnreadable",
            Self::Run(_) => "ReconcileFailed",
            Self::Json(_) => "ReportEncoding",
        }
    }
}

impl From<ReconcileLambdaError> for lambda_runtime::Diagnostic {
    fn from(error: ReconcileLambdaError) -> Self {
        Self { error_type: error.code().to_owned(), error_message: error.to_string() }
    }
}

/// A run id made of `text` (a scheduled time such as `2026-05-01T12:00:00Z`): every character a run id can't hold
/// becomes `-`, cut to 64.
pub fn run_id_of(text: &str) -> String {
    text.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '-' }).take(64).collect()
}

/// Carries out one request with `function`'s engine and backend; prints the run's EMF line (function `name`) and
/// answers with the report, its entity list cut to [`LISTED`].
pub async fn handle(
    function: &Function,
    request: Value,
    context: &InvocationContext,
    name: &str,
) -> Result<Value, ReconcileLambdaError> {
    let request: ReconcileRequest =
        serde_json::from_value(request).map_err(|e| ReconcileLambdaError::Invalid(e.to_string()))?;
    if request.rate.is_some_and(|r| !synctrail::engine::pacing::is_valid_rate(r)) {
        let least = synctrail::engine::pacing::MIN_RATE_PER_SECOND;
        return Err(ReconcileLambdaError::Invalid(format!("rate must be a number per second of at least {least}")));
    }
    let snapshot = compose_snapshot(&request.snapshot, &function.composed).await?;
    let options = ReconcileOptions {
        source: request.source,
        entity_type: request.entity_type,
        apply: request.apply,
        rate_per_second: request.rate,
        run_id: request.run_id.as_deref().map(run_id_of),
        as_of: request.as_of,
        trace_header: context.trace_id.clone(),
    };
    let engine = &function.engine;
    let mut report = engine.reconcile(snapshot.as_ref(), &options, &mut |_, _| {}).await?;
    let c = &report.counts;
    tracing::info!(
        request_id = %context.request_id, run_id = %report.run_id, dry_run = report.dry_run, same = c.same,
        missing = c.missing, extra = c.extra, stale = c.stale, different = c.different,
        not_correctable = c.not_correctable, sent = report.sent,
        "reconcile done"
    );
    println!("{}", emf_line(&report, name, &function.config.metrics_namespace, engine.ports().clock.now()));
    report.entities.truncate(LISTED);
    Ok(serde_json::to_value(report)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scheduled_time_makes_a_run_id() {
        assert_eq!(run_id_of("2026-05-01T12:00:00Z"), "2026-05-01T12-00-00Z");
        assert_eq!(run_id_of(&"x".repeat(100)).len(), 64);
    }

    #[test]
    fn an_unknown_field_is_an_invalid_request() {
        let request = serde_json::json!({"source": "shop", "snapshot": "s3://b/k", "aply": true});
        let error = serde_json::from_value::<ReconcileRequest>(request)
            .map_err(|e| ReconcileLambdaError::Invalid(e.to_string()));
        assert_eq!(error.err().map(|e| e.code()), Some("InvalidRequest"));
    }
}
