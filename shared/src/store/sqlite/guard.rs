//! The mirror's [`Destination`] implementation: every write is conditional (spec §4 step 5).
//!
//! `latest_wins` writes are refused when the mirror holds a newer local edit, a newer order key or a newer
//! fencing token; `in_order` deltas are always added. Each event has at most one effect.

use super::codec::{nanos, to_json};
use super::error::SqlContext;
use super::mirror::{read_row, Mirror, MirrorRecord};
use crate::model::{Kind, OrderKey};
use crate::settings::Policy;
use crate::store::{ApplyOutcome, Change, Destination, DestinationError, StoreError};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{params, OptionalExtension, Transaction};
use serde_json::{json, Value};
use std::sync::Arc;

/// What an `in_order` event adds.
const DELTA_FIELD: &str = "delta";

/// A [`Change`] owned, to cross onto the blocking thread.
struct Pending {
    event_id: String,
    entity_key: String,
    order: OrderKey,
    updated_at: Option<DateTime<Utc>>,
    content_hash: String,
    deleted: bool,
    payload: Value,
    fence: u64,
    forced: bool,
    /// `Some` for `in_order` changes.
    delta: Option<i64>,
}

impl Pending {
    fn of(change: &Change<'_>) -> Result<Self, DestinationError> {
        let delta = match change.policy {
            Policy::InOrder => Some(change.payload.get(DELTA_FIELD).and_then(Value::as_i64).ok_or_else(|| {
                DestinationError::Permanent("payload of an in_order event needs an integer `delta`".to_owned())
            })?),
            Policy::LatestWins => None,
        };
        Ok(Self {
            event_id: change.event_id.to_string(),
            entity_key: change.entity.to_string(),
            order: change.order,
            updated_at: change.updated_at,
            content_hash: change.content_hash.to_hex(),
            deleted: change.kind == Kind::Delete,
            payload: change.payload.clone(),
            fence: change.fence,
            forced: change.forced,
            delta,
        })
    }
}

/// Why a `latest_wins` change must not be written over `row`, if it must not (the guard proper).
fn refusal(row: &MirrorRecord, change: &Pending) -> Option<ApplyOutcome> {
    let holder = || row.event_id.clone().unwrap_or_else(|| format!("mirror:{}", row.entity_key));
    if let (Some(modified_at), Some(updated_at)) = (row.modified_at, change.updated_at) {
        if modified_at > updated_at {
            return Some(ApplyOutcome::Superseded { by: format!("mirror:{}@local-edit", row.entity_key) });
        }
    }
    if let Some(order) = row.order {
        if order > change.order {
            return Some(ApplyOutcome::Superseded { by: holder() });
        }
        if order == change.order && row.content_hash.as_deref() == Some(change.content_hash.as_str()) {
            return Some(ApplyOutcome::AlreadyApplied);
        }
    }
    if row.fence > change.fence {
        return Some(ApplyOutcome::Superseded { by: holder() });
    }
    None
}

/// The row an `in_order` delta leaves: quantities add up, the order columns keep the greatest key seen.
fn add_delta(
    row: Option<&MirrorRecord>,
    change: &Pending,
    delta: i64,
    now: DateTime<Utc>,
) -> Result<MirrorRecord, DestinationError> {
    let old = row.and_then(|r| r.state.get("quantity")).and_then(Value::as_i64).unwrap_or(0);
    let quantity = old.checked_add(delta).ok_or_else(|| {
        DestinationError::Permanent(format!("quantity {old} + delta {delta} overflows for {}", change.entity_key))
    })?;
    Ok(MirrorRecord {
        entity_key: change.entity_key.clone(),
        state: json!({ "quantity": quantity }),
        order: Some(row.and_then(|r| r.order).map_or(change.order, |o| o.max(change.order))),
        content_hash: Some(change.content_hash.clone()),
        event_id: Some(change.event_id.clone()),
        fence: row.map_or(change.fence, |r| r.fence.max(change.fence)),
        deleted: false,
        modified_at: row.and_then(|r| r.modified_at),
        applied_at: now,
    })
}

/// The row a `latest_wins` write leaves: the event's state wins over any local edit.
fn snapshot(change: &Pending, now: DateTime<Utc>) -> MirrorRecord {
    MirrorRecord {
        entity_key: change.entity_key.clone(),
        state: if change.deleted { Value::Null } else { change.payload.clone() },
        order: Some(change.order),
        content_hash: Some(change.content_hash.clone()),
        event_id: Some(change.event_id.clone()),
        fence: change.fence,
        deleted: change.deleted,
        modified_at: None,
        applied_at: now,
    }
}

fn store(tx: &Transaction<'_>, record: &MirrorRecord, event_id: &str) -> Result<(), StoreError> {
    let now = nanos(record.applied_at)?;
    let body = to_json(&record.state, "mirror state")?;
    let fence = i64::try_from(record.fence).unwrap_or(i64::MAX);
    let modified_at = record.modified_at.map(nanos).transpose()?;
    tx.execute(
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
    tx.execute(
        "INSERT INTO mirror_effects (event_id, entity_key, applied_at) VALUES (?1, ?2, ?3)",
        params![event_id, record.entity_key, now],
    )
    .ctx("recording a mirror effect")?;
    Ok(())
}

/// Decides and writes in one transaction.
fn apply_in(
    tx: &Transaction<'_>,
    change: &Pending,
    now: DateTime<Utc>,
) -> Result<Result<ApplyOutcome, DestinationError>, StoreError> {
    let seen: Option<i64> = tx
        .query_row("SELECT 1 FROM mirror_effects WHERE event_id = ?1", [&change.event_id], |row| row.get(0))
        .optional()
        .ctx("looking up a mirror effect")?;
    if seen.is_some() {
        return Ok(Ok(ApplyOutcome::AlreadyApplied));
    }
    let row = read_row(tx, &change.entity_key)?;
    let record = match change.delta {
        Some(delta) => match add_delta(row.as_ref(), change, delta, now) {
            Ok(record) => record,
            Err(refused) => return Ok(Err(refused)),
        },
        None => {
            if let Some(outcome) = row.as_ref().filter(|_| !change.forced).and_then(|r| refusal(r, change)) {
                return Ok(Ok(outcome));
            }
            snapshot(change, now)
        }
    };
    store(tx, &record, &change.event_id)?;
    Ok(Ok(ApplyOutcome::Applied))
}

fn to_destination_error(e: StoreError) -> DestinationError {
    match e {
        StoreError::Corrupt(_) => DestinationError::Permanent(e.to_string()),
        other => DestinationError::Retryable(other.to_string()),
    }
}

#[async_trait]
impl Destination for Mirror {
    async fn apply(&self, change: &Change<'_>) -> Result<ApplyOutcome, DestinationError> {
        let pending = Pending::of(change)?;
        let clock = Arc::clone(&self.clock);
        self.db.write(move |tx| apply_in(tx, &pending, clock.now())).await.map_err(to_destination_error)?
    }
}
