//! The destination port: where changes are applied, with the fencing guard of spec §4.5.

use crate::model::{ContentHash, EntityKey, EventId, Kind, OrderKey};
use crate::settings::Policy;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;

/// One change to apply, with what the destination needs to refuse stale or fenced-off writes.
#[derive(Debug, Clone, Copy)]
pub struct Change<'a> {
    /// The event.
    pub event_id: &'a EventId,
    /// The entity.
    pub entity: &'a EntityKey,
    /// The event's order key: a `latest_wins` write is refused when the destination holds a newer one.
    pub order: OrderKey,
    /// `updated_at`: a `latest_wins` write is refused when a local edit is newer.
    pub updated_at: Option<DateTime<Utc>>,
    /// The content hash.
    pub content_hash: ContentHash,
    /// `upsert`, `delete` or `create`.
    pub kind: Kind,
    /// The resource's state (or, for `in_order` types, the delta).
    pub payload: &'a Value,
    /// The claim's fencing token: a write is refused when the destination saw a newer one.
    pub fence: u64,
    /// Snapshot or delta semantics.
    pub policy: Policy,
    /// Whether ordering was skipped on purpose (`reprocess --force`).
    pub forced: bool,
}

/// What the destination did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// Written now.
    Applied,
    /// This very event was written before (a retry after a crash): no second effect.
    AlreadyApplied,
    /// The destination holds something newer; nothing was written. `by` names it (an event id or record ref).
    Superseded {
        /// The newer event or record.
        by: String,
    },
    /// The change needs another entity that does not exist yet (spec §6); nothing was written. The event waits
    /// until an event of `key` completes.
    MissingDependency {
        /// The entity it needs.
        key: EntityKey,
        /// An envelope (JSON text) to send to obtain it, e.g. a fetch-and-create request; `None` when the
        /// dependency will arrive by itself.
        request: Option<String>,
    },
}

/// A destination's failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DestinationError {
    /// A retry may succeed (the destination is down, throttling, timing out).
    #[error("destination failed, will retry: {0}")]
    Retryable(String),
    /// The destination refused the change for good.
    #[error("destination refused the change: {0}")]
    Permanent(String),
}

/// Where changes are applied.
#[async_trait]
pub trait Destination: Send + Sync {
    /// Applies one change, conditionally on its order key and fencing token.
    async fn apply(&self, change: &Change<'_>) -> Result<ApplyOutcome, DestinationError>;
}
