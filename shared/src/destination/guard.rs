//! The reference mirror's pure rules (spec §4 step 5), shared by every backend's mirror: given the stored row and
//! a [`Change`], write it, or refuse it as already applied or superseded.
//!
//! `latest_wins` writes are refused when the row holds a newer local edit, a newer order key or a newer fencing
//! token, and are already applied when the row holds the same order key and content; `in_order` deltas are always
//! added (`{"delta": n}` → `{"quantity": sum}`). Whether the event had an effect before is the backend's to look
//! up (each keeps one effect per event) before it asks [`decide`]. Backends keep only their storage code.

use crate::destination::{ApplyOutcome, Change, DestinationError};
use crate::model::{Kind, OrderKey};
use crate::settings::Policy;
use crate::store::StoreError;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Value};

/// The field an `in_order` event's payload carries: the integer to add.
pub const DELTA_FIELD: &str = "delta";
/// The field of the state that `in_order` deltas add up in.
pub const QUANTITY_FIELD: &str = "quantity";
/// The `event_id` a local edit leaves in the row.
pub const LOCAL_EDIT: &str = "local-edit";

/// One entity's state in the mirror.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MirrorRecord {
    /// The entity (`EntityKey`'s display form).
    pub entity_key: String,
    /// The state (`null` once deleted).
    pub state: Value,
    /// The order key of the event that wrote it (kept across local edits).
    pub order: Option<OrderKey>,
    /// That event's content hash (cleared by a local edit).
    pub content_hash: Option<String>,
    /// That event's id, or `local-edit`.
    pub event_id: Option<String>,
    /// The fencing token of the last write.
    pub fence: u64,
    /// Whether the entity was deleted.
    pub deleted: bool,
    /// When it was last edited locally (unset once an event wins over the edit).
    pub modified_at: Option<DateTime<Utc>>,
    /// When it was last written.
    pub applied_at: DateTime<Utc>,
}

/// A [`Change`] owned (to cross threads or retry rounds), its delta already read.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingChange {
    /// The event's id.
    pub event_id: String,
    /// The entity (`EntityKey`'s display form).
    pub entity_key: String,
    /// The event's order key.
    pub order: OrderKey,
    /// The event's `updated_at`.
    pub updated_at: Option<DateTime<Utc>>,
    /// The content hash, as hex.
    pub content_hash: String,
    /// Whether the change deletes the entity.
    pub deleted: bool,
    /// The resource's state (or the delta).
    pub payload: Value,
    /// The claim's fencing token.
    pub fence: u64,
    /// Whether the guard is skipped (`reprocess --force`).
    pub forced: bool,
    /// `Some` for `in_order` changes: what to add.
    pub delta: Option<i64>,
}

impl PendingChange {
    /// Owns `change`; an `in_order` change without an integer `delta` is refused for good.
    pub fn of(change: &Change<'_>) -> Result<Self, DestinationError> {
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

/// What to do with a change.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Write nothing; report this.
    Skip(ApplyOutcome),
    /// Store this row (and the event's effect).
    Write(MirrorRecord),
}

/// Decides what `change` does to `row` (the entity's stored row, if any), the event not having had an effect
/// yet. Only an overflowing delta is an error.
pub fn decide(
    row: Option<&MirrorRecord>,
    change: &PendingChange,
    now: DateTime<Utc>,
) -> Result<Decision, DestinationError> {
    if let Some(delta) = change.delta {
        return add_delta(row, change, delta, now).map(Decision::Write);
    }
    if let Some(outcome) = row.filter(|_| !change.forced).and_then(|r| refusal(r, change)) {
        return Ok(Decision::Skip(outcome));
    }
    Ok(Decision::Write(snapshot(change, now)))
}

/// Why a `latest_wins` change must not be written over `row`, if it must not (the guard proper).
pub fn refusal(row: &MirrorRecord, change: &PendingChange) -> Option<ApplyOutcome> {
    let holder = || row.event_id.clone().unwrap_or_else(|| format!("mirror:{}", row.entity_key));
    // A local edit wins over older events; a `create` without `updated_at` is older than any edit (spec §1).
    if let Some(modified_at) = row.modified_at {
        if change.updated_at.is_none_or(|updated_at| modified_at > updated_at) {
            return Some(ApplyOutcome::Superseded { by: format!("mirror:{}@{LOCAL_EDIT}", row.entity_key) });
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

/// The row an `in_order` delta leaves: quantities add up, the order key and fence keep the greatest seen.
pub fn add_delta(
    row: Option<&MirrorRecord>,
    change: &PendingChange,
    delta: i64,
    now: DateTime<Utc>,
) -> Result<MirrorRecord, DestinationError> {
    let old = row.and_then(|r| r.state.get(QUANTITY_FIELD)).and_then(Value::as_i64).unwrap_or(0);
    let quantity = old.checked_add(delta).ok_or_else(|| {
        DestinationError::Permanent(format!("quantity {old} + delta {delta} overflows for {}", change.entity_key))
    })?;
    Ok(MirrorRecord {
        entity_key: change.entity_key.clone(),
        state: json!({ QUANTITY_FIELD: quantity }),
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
pub fn snapshot(change: &PendingChange, now: DateTime<Utc>) -> MirrorRecord {
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

/// A storage failure as a destination failure: corrupt data is permanent, throttling is throttled (it does not use up
/// the event's attempts), anything else may pass.
pub fn destination_error(e: StoreError) -> DestinationError {
    match e {
        StoreError::Corrupt(_) => DestinationError::Permanent(e.to_string()),
        StoreError::Throttled(_) => DestinationError::throttled(e.to_string(), None),
        other => DestinationError::retryable(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ContentHash, EntityKey, EventId};

    fn t(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + seconds, 0).unwrap_or_default()
    }

    fn order(seconds: i64) -> OrderKey {
        OrderKey { nanos: seconds, version: 0 }
    }

    fn pending(event: &str, seconds: i64, fence: u64, payload: Value, policy: Policy) -> PendingChange {
        let (id, entity) = (EventId::parse(event).expect("id"), EntityKey::new("t", "s", "e", "1").expect("key"));
        let change = Change {
            event_id: &id,
            entity: &entity,
            order: order(seconds),
            updated_at: Some(t(seconds)),
            content_hash: ContentHash::of(payload.to_string().as_bytes()),
            kind: Kind::Upsert,
            payload: &payload,
            fence,
            policy,
            forced: false,
            attempt: 1,
            previous_attempt_unknown: false,
            deadline: None,
            trace_id: None,
        };
        PendingChange::of(&change).expect("valid change")
    }

    fn written(decision: Result<Decision, DestinationError>) -> MirrorRecord {
        match decision {
            Ok(Decision::Write(row)) => row,
            other => panic!("expected a write, got {other:?}"),
        }
    }

    #[test]
    fn a_snapshot_is_refused_by_newer_order_local_edit_and_fence() {
        let first = pending("ev-1", 10, 5, json!({"n": 1}), Policy::LatestWins);
        let row = written(decide(None, &first, t(0)));
        assert_eq!((row.event_id.as_deref(), row.fence, row.order), (Some("ev-1"), 5, Some(order(10))));
        let older = pending("ev-0", 5, 6, json!({"n": 0}), Policy::LatestWins);
        assert_eq!(
            decide(Some(&row), &older, t(0)),
            Ok(Decision::Skip(ApplyOutcome::Superseded { by: "ev-1".into() }))
        );
        let fenced = pending("ev-2", 20, 4, json!({"n": 2}), Policy::LatestWins);
        assert_eq!(
            decide(Some(&row), &fenced, t(0)),
            Ok(Decision::Skip(ApplyOutcome::Superseded { by: "ev-1".into() }))
        );
        let same = PendingChange { event_id: "ev-again".into(), ..first.clone() };
        assert_eq!(decide(Some(&row), &same, t(0)), Ok(Decision::Skip(ApplyOutcome::AlreadyApplied)));
        let tie = pending("ev-tie", 10, 5, json!({"n": 9}), Policy::LatestWins);
        assert_eq!(written(decide(Some(&row), &tie, t(0))).state, json!({"n": 9}));

        let edited = MirrorRecord { modified_at: Some(t(30)), ..row };
        match decide(Some(&edited), &pending("ev-3", 25, 9, json!({}), Policy::LatestWins), t(0)) {
            Ok(Decision::Skip(ApplyOutcome::Superseded { by })) => assert!(by.ends_with("@local-edit"), "{by}"),
            other => panic!("expected Superseded, got {other:?}"),
        }
        let forced = PendingChange { forced: true, ..older };
        assert_eq!(written(decide(Some(&edited), &forced, t(0))).modified_at, None);
    }

    #[test]
    fn deltas_add_up_keep_the_greatest_order_and_fence_and_refuse_overflow() {
        let a = pending("ev-a", 20, 3, json!({"delta": 7}), Policy::InOrder);
        let row = written(decide(None, &a, t(0)));
        let b = pending("ev-b", 10, 1, json!({"delta": -2}), Policy::InOrder);
        let row = written(decide(Some(&row), &b, t(1)));
        assert_eq!((row.state, row.order, row.fence), (json!({"quantity": 5}), Some(order(20)), 3));
        let full = MirrorRecord { state: json!({"quantity": i64::MAX}), ..written(decide(None, &a, t(0))) };
        assert!(matches!(decide(Some(&full), &b, t(0)), Ok(Decision::Write(_))));
        let up = pending("ev-up", 1, 1, json!({"delta": 1}), Policy::InOrder);
        assert!(matches!(decide(Some(&full), &up, t(0)), Err(DestinationError::Permanent(_))));
    }

    #[test]
    fn a_delta_needs_an_integer() {
        let (id, entity) = (EventId::parse("ev-x").expect("id"), EntityKey::new("t", "s", "e", "1").expect("key"));
        for payload in [json!({"delta": "1"}), json!({"delta": 1.5}), json!(null), json!({"quantity": 1})] {
            let change = Change {
                event_id: &id,
                entity: &entity,
                order: order(1),
                updated_at: None,
                content_hash: ContentHash::of(b"x"),
                kind: Kind::Upsert,
                payload: &payload,
                fence: 1,
                policy: Policy::InOrder,
                forced: false,
                attempt: 1,
                previous_attempt_unknown: false,
                deadline: None,
                trace_id: None,
            };
            assert!(matches!(PendingChange::of(&change), Err(DestinationError::Permanent(_))), "{payload}");
        }
    }
}
