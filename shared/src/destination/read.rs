//! Reading a destination back ([`Destination::read`](super::Destination::read)): what it holds for one entity, so
//! that `reconcile` can compare it with another system and `verify` with the replay of the entity's events.
//!
//! A destination that can't read answers [`ReadError::Unsupported`] (the trait's default), and both commands refuse
//! with its reason; applying changes never needs a read.

use crate::destination::guard::MirrorRecord;
use crate::model::OrderKey;
use serde::Serialize;
use serde_json::Value;

/// One entity as the destination holds it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DestinationRecord {
    /// The state (`null` once deleted).
    pub state: Value,
    /// Whether the entity was deleted (a delete that was applied; an entity never written is no record at all).
    pub deleted: bool,
    /// The order key of the event that wrote it, when the destination keeps it.
    pub order: Option<OrderKey>,
    /// The event that wrote it (`local-edit` after a local edit at the reference mirror), when kept.
    pub event_id: Option<String>,
}

impl From<MirrorRecord> for DestinationRecord {
    fn from(row: MirrorRecord) -> Self {
        Self { state: row.state, deleted: row.deleted, order: row.order, event_id: row.event_id }
    }
}

/// Why a destination could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// This destination can't read its records back; the text says which and why.
    #[error("{0}")]
    Unsupported(String),
    /// The read failed (down, timed out, throttled, refused); a later try may succeed.
    #[error("reading the destination failed: {0}")]
    Failed(String),
}

impl ReadError {
    /// The answer of a destination that does not implement reads.
    pub fn unsupported() -> Self {
        Self::Unsupported(
            "this destination can't read its records back (it does not implement Destination::read), so there is \
             nothing to compare with; implement `read` for it, or compare with the reference mirror"
                .to_owned(),
        )
    }
}
