//! The reprocess Lambda's handler: re-drive stored events by id or by query (spec §7), or move the dead-letter
//! queue back after marking its events for retry. Invoked directly (console, CLI, Step Functions) with:
//!
//! ```json
//! {"event_ids": ["evt-1", "d-…"], "force": false, "dry_run": false, "rate": 50}
//! {"query": {"status": "failed", "source": "shopify", "since": "2026-12-01T00:00:00Z", "limit": 1000}}
//! {"dead_letters": {}}
//! {"dead_letters": {"limit": 1000}, "dry_run": true}
//! ```
//!
//! (`dead_letters.limit` defaults to [`DEFAULT_DEAD_LETTER_LIMIT`]) and answers with the report as JSON. A refused
//! request fails the invocation with a stable `errorType` ([`ReprocessLambdaError::code`]).

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;
use synctrail::engine::{Engine, EngineError, Invocation, ReprocessOptions};
use synctrail::model::{EntityKey, EventId, Status};
use synctrail::store::{EventQuery, StoreError};

/// What the function is asked to do.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReprocessRequest {
    /// Events to re-drive by id.
    #[serde(default)]
    pub event_ids: Vec<String>,
    /// Events to re-drive by query.
    pub query: Option<QueryInput>,
    /// Move dead letters back instead.
    pub dead_letters: Option<DeadLetterInput>,
    /// Skip the ordering rules (recorded as forced).
    #[serde(default)]
    pub force: bool,
    /// Check and list only.
    #[serde(default)]
    pub dry_run: bool,
    /// At most this many re-drives per second.
    pub rate: Option<f64>,
}

/// A bulk selection.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryInput {
    /// The status to re-drive (`failed`, `errored`, `disabled`, `waiting`, …).
    pub status: Status,
    /// Only this source.
    pub source: Option<String>,
    /// Only this entity (`tenant/source/entity_type/external_id`).
    pub entity: Option<String>,
    /// Only events received at or after this time (RFC 3339).
    pub since: Option<DateTime<Utc>>,
    /// Only events received before this time (RFC 3339).
    pub until: Option<DateTime<Utc>>,
    /// At most this many (0 = all).
    #[serde(default)]
    pub limit: usize,
}

/// A dead-letter re-drive.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterInput {
    /// At most this many messages (default [`DEFAULT_DEAD_LETTER_LIMIT`]).
    #[serde(default = "default_dead_letter_limit")]
    pub limit: usize,
}

/// How many dead letters one request looks at when it does not say.
pub const DEFAULT_DEAD_LETTER_LIMIT: usize = 1000;

fn default_dead_letter_limit() -> usize {
    DEFAULT_DEAD_LETTER_LIMIT
}

/// Why a request could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum ReprocessLambdaError {
    /// The input is not a valid request.
    #[error("invalid reprocess request: {0}; send {{\"event_ids\": [...]}}, {{\"query\": {{\"status\": ...}}}} or {{\"dead_letters\": {{}}}}")]
    Invalid(String),
    /// The store could not be read.
    #[error("selecting events: {0}")]
    Store(#[from] StoreError),
    /// The engine failed.
    #[error("re-driving dead letters: {0}")]
    Engine(#[from] EngineError),
    /// The report could not be encoded.
    #[error("encoding the report: {0}")]
    Json(#[from] serde_json::Error),
}

impl ReprocessLambdaError {
    /// The stable `errorType` Lambda reports: `InvalidRequest`, `ReportEncoding`, or the store's or engine's code
    /// (`StoreUnavailable`, `StoreThrottled`, `EntityContended`, …).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "InvalidRequest",
            Self::Store(e) => e.code(),
            Self::Engine(e) => e.code(),
            Self::Json(_) => "ReportEncoding",
        }
    }
}

impl From<ReprocessLambdaError> for lambda_runtime::Diagnostic {
    fn from(error: ReprocessLambdaError) -> Self {
        Self { error_type: error.code().to_owned(), error_message: error.to_string() }
    }
}

/// Carries out one request with `engine` and returns its report.
pub async fn handle(engine: &Engine, request: Value, invocation: &Invocation) -> Result<Value, ReprocessLambdaError> {
    let request: ReprocessRequest =
        serde_json::from_value(request).map_err(|e| ReprocessLambdaError::Invalid(e.to_string()))?;
    let chosen = [!request.event_ids.is_empty(), request.query.is_some(), request.dead_letters.is_some()];
    if chosen.iter().filter(|c| **c).count() != 1 {
        return Err(ReprocessLambdaError::Invalid("give exactly one of event_ids, query and dead_letters".into()));
    }
    if let Some(dead) = &request.dead_letters {
        if request.force || request.rate.is_some() {
            return Err(ReprocessLambdaError::Invalid(
                "force and rate apply to event_ids and query; dead_letters takes limit and dry_run".into(),
            ));
        }
        let report = engine.redrive_dead_letters(dead.limit, request.dry_run, invocation).await?;
        return Ok(serde_json::to_value(report)?);
    }
    let ids = match &request.query {
        Some(query) => engine.select_for_reprocess(&store_query(query)?).await?,
        None => request
            .event_ids
            .iter()
            .map(|id| EventId::parse(id).map_err(|e| ReprocessLambdaError::Invalid(e.to_string())))
            .collect::<Result<_, _>>()?,
    };
    if request.rate.is_some_and(|r| !synctrail::engine::pacing::is_valid_rate(r)) {
        let least = synctrail::engine::pacing::MIN_RATE_PER_SECOND;
        return Err(ReprocessLambdaError::Invalid(format!("rate must be a number per second of at least {least}")));
    }
    let options = ReprocessOptions {
        force: request.force,
        dry_run: request.dry_run,
        rate_per_second: request.rate,
        trace_header: invocation.trace_id.clone(),
    };
    let report = engine.reprocess(&ids, &options, &mut |_| {}).await;
    tracing::info!(
        sent = report.sent.len(),
        refused = report.refused.len(),
        dry_run = report.dry_run,
        "reprocess done"
    );
    Ok(serde_json::to_value(report)?)
}

fn store_query(query: &QueryInput) -> Result<EventQuery, ReprocessLambdaError> {
    let entity = query
        .entity
        .as_deref()
        .map(EntityKey::parse)
        .transpose()
        .map_err(|e| ReprocessLambdaError::Invalid(format!("query.entity: {e}")))?;
    Ok(EventQuery {
        status: Some(query.status),
        source: query.source.clone(),
        entity,
        since: query.since,
        until: query.until,
        limit: query.limit,
        ..EventQuery::default()
    })
}
