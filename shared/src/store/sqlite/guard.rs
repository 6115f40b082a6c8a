//! The mirror's [`Destination`] implementation: every write is conditional (spec §4 step 5).
//!
//! The rules (refuse a stale, fenced-off or already applied write; add `in_order` deltas) are the shared ones of
//! [`crate::destination::guard`]; this file keeps the SQL. The row is read, decided on and rewritten whole in one
//! transaction (SQLite runs one writer at a time). Each event has at most one effect row (a forced snapshot that
//! [`rewrites`] keeps its first one).

use super::codec::{nanos, to_json, Cached};
use super::error::SqlContext;
use super::mirror::{read_effect_and_row, Mirror};
use crate::destination::guard::{decide, destination_error, rewrites, Addition, Decision, MirrorRecord, PendingChange};
use crate::destination::{ApplyOutcome, Change, Destination, DestinationError, DestinationRecord, ReadError};
use crate::model::EntityKey;
use crate::store::StoreError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{params, Transaction};
use std::sync::Arc;

fn store(tx: &Transaction<'_>, record: &MirrorRecord, event_id: &str) -> Result<(), StoreError> {
    let now = nanos(record.applied_at)?;
    let body = to_json(&record.state, "mirror state")?;
    let fence = i64::try_from(record.fence).unwrap_or(i64::MAX);
    let modified_at = record.modified_at.map(nanos).transpose()?;
    tx.exec(
        "INSERT INTO mirror (entity_key, body, order_nanos, order_version, content_hash, event_id, fence, deleted,
             modified_at, applied_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT (entity_key) DO UPDATE SET body = excluded.body, order_nanos = excluded.order_nanos,
             order_version = excluded.order_version, content_hash = excluded.content_hash,
             event_id = excluded.event_id, fence = excluded.fence, deleted = excluded.deleted,
             modified_at = excluded.modified_at, applied_at = excluded.applied_at",
        params![
            record.entity_key,
            body,
            record.order.map(|o| o.nanos),
            record.order.map(|o| o.version),
            record.content_hash,
            record.event_id,
            fence,
            record.deleted,
            modified_at,
            now
        ],
    )
    .ctx("writing the mirror")?;
    tx.exec(
        "INSERT INTO mirror_effects (event_id, entity_key, applied_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (event_id) DO NOTHING",
        params![event_id, record.entity_key, now],
    )
    .ctx("recording a mirror effect")?;
    Ok(())
}

/// Decides and writes in one transaction.
fn apply_in(
    tx: &Transaction<'_>,
    change: &PendingChange,
    now: DateTime<Utc>,
) -> Result<Result<ApplyOutcome, DestinationError>, StoreError> {
    let (seen, row) = read_effect_and_row(tx, &change.event_id, &change.entity_key)?;
    if seen && !rewrites(change) {
        return Ok(Ok(ApplyOutcome::AlreadyApplied));
    }
    let record = match decide(row.as_ref(), change, now) {
        Ok(Decision::Write(record) | Decision::Add(Addition { record, .. })) => record,
        Ok(Decision::Skip(outcome)) => return Ok(Ok(outcome)),
        Err(refused) => return Ok(Err(refused)),
    };
    store(tx, &record, &change.event_id)?;
    Ok(Ok(ApplyOutcome::Applied))
}

#[async_trait]
impl Destination for Mirror {
    async fn apply(&self, change: &Change<'_>) -> Result<ApplyOutcome, DestinationError> {
        let pending = PendingChange::of(change, &self.delta_fields)?;
        let clock = Arc::clone(&self.clock);
        self.db.write(move |tx| apply_in(tx, &pending, clock.now())).await.map_err(destination_error)?
    }

    async fn read(&self, entity: &EntityKey) -> Result<Option<DestinationRecord>, ReadError> {
        let row = self.get(entity).await.map_err(|e| ReadError::Failed(e.to_string()))?;
        Ok(row.map(DestinationRecord::from))
    }
}
