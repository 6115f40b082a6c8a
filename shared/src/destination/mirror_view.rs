//! [`MirrorView`]: the reference destination's operator methods (local edits, reads, effects), whatever the backend
//! keeps the mirror in. Tools that inspect or prepare the mirror (the CLI, the demo's convergence check, tests)
//! work through it, so they run unchanged on the embedded `Mirror` and on the DynamoDB `DynamoMirror`.

use crate::destination::guard::MirrorRecord;
use crate::destination::Destination;
use crate::model::{EntityKey, EventId};
use crate::store::StoreError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;

/// The reference destination, with what an operator (or a test) does to it besides applying changes.
#[async_trait]
pub trait MirrorView: Destination {
    /// Records a local edit of `entity` (someone changed the destination directly): an event whose `updated_at`
    /// is older than `modified_at` will then be refused.
    async fn record_local_edit(
        &self,
        entity: &EntityKey,
        state: Value,
        modified_at: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// The state of one entity.
    async fn get(&self, entity: &EntityKey) -> Result<Option<MirrorRecord>, StoreError>;

    /// Entities whose key starts with `entity_prefix`, by key, at most `limit` (0 = all).
    async fn list(&self, entity_prefix: Option<&str>, limit: usize) -> Result<Vec<MirrorRecord>, StoreError>;

    /// Every destination effect, oldest first: (event, entity key). At most one per event when the pipeline works.
    async fn effects(&self) -> Result<Vec<(EventId, String)>, StoreError>;

    /// How many entities the mirror holds (deleted ones and local edits included).
    async fn count(&self) -> Result<u64, StoreError>;
}
