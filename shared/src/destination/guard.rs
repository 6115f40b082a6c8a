//! The reference mirror's pure rules (spec §4 step 5), shared by every backend's mirror: given the stored row and
//! a [`Change`], write it, or refuse it as already applied or superseded.
//!
//! `latest_wins` writes are refused when the row holds a newer local edit, a newer order key or a newer fencing
//! token, and are already applied when the row holds the same order key and content. `in_order` deltas are always
//! applied: each configured delta field of the payload ([`DeltaFields`]; by default `delta`) is added into its
//! total field of the state (by default `quantity`), and the payload's other fields are kept in the state, the
//! latest by order key winning: an event at or after the row's order key sets them (and becomes the row's event),
//! an older one (`out_of_order`) only adds its amounts. Whether the event had an effect before is the backend's to
//! look up (each keeps one effect per event) before it asks [`decide`], except for a change that [`rewrites`]: a
//! forced snapshot is written even over its own earlier effect. Backends keep only their storage code.

use crate::destination::delta_fields::DeltaFields;
use crate::destination::{ApplyOutcome, Change, DestinationError};
use crate::model::{Kind, OrderKey};
use crate::settings::Policy;
use crate::store::StoreError;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};

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
    /// `Some` for `in_order` changes: what to add, and the other fields.
    pub delta: Option<Delta>,
}

/// What an `in_order` change does to the state.
#[derive(Debug, Clone, PartialEq)]
pub struct Delta {
    /// (total field, amount) for each configured delta field the payload carries, in configuration order.
    pub adds: Vec<(String, i64)>,
    /// The payload's other fields (neither delta nor total fields), set when the event is the latest.
    pub fields: Map<String, Value>,
}

impl PendingChange {
    /// Owns `change`, reading an `in_order` change's amounts by `delta_fields`. An `in_order` payload that is not
    /// an object, carries none of its type's delta fields, or one that is not an integer, is refused for good.
    pub fn of(change: &Change<'_>, delta_fields: &DeltaFields) -> Result<Self, DestinationError> {
        let delta = match change.policy {
            Policy::InOrder => Some(read_delta(change, delta_fields)?),
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

/// Reads what an `in_order` change adds (see [`PendingChange::of`]).
fn read_delta(change: &Change<'_>, delta_fields: &DeltaFields) -> Result<Delta, DestinationError> {
    let entity_type = &change.entity.entity_type;
    let configured = delta_fields.of(entity_type);
    let names = || configured.iter().map(|f| format!("`{}`", f.delta)).collect::<Vec<_>>().join(" or ");
    let Value::Object(payload) = change.payload else {
        return Err(DestinationError::Permanent(format!(
            "payload of an in_order {entity_type} event must be an object with an integer {}",
            names()
        )));
    };
    let mut adds = Vec::new();
    for field in configured {
        if let Some(value) = payload.get(&field.delta) {
            let amount = value.as_i64().ok_or_else(|| {
                DestinationError::Permanent(format!(
                    "`{}` of an in_order {entity_type} event must be an integer, not {value}",
                    field.delta
                ))
            })?;
            adds.push((field.total.clone(), amount));
        }
    }
    if adds.is_empty() {
        return Err(DestinationError::Permanent(format!(
            "payload of an in_order {entity_type} event needs an integer {}",
            names()
        )));
    }
    let counted = |key: &str| configured.iter().any(|f| f.delta == key || f.total == key);
    let fields = payload.iter().filter(|(key, _)| !counted(key)).map(|(k, v)| (k.clone(), v.clone())).collect();
    Ok(Delta { adds, fields })
}

/// What to do with a change.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Write nothing; report this.
    Skip(ApplyOutcome),
    /// Store this row (and the event's effect), replacing what is there.
    Write(MirrorRecord),
    /// Add an `in_order` change's amounts (and store the event's effect).
    Add(Addition),
}

/// An `in_order` change applied to a row.
#[derive(Debug, Clone, PartialEq)]
pub struct Addition {
    /// The row afterwards: what a backend that rewrites whole rows stores.
    pub record: MirrorRecord,
    /// (total field, amount) added: what a backend with native atomic adds adds.
    pub adds: Vec<(String, i64)>,
    /// Whether the event is at or after the row's order key: it set its other fields and became the row's event
    /// (order key, content hash, event id, fence). An older one changed only the totals and `applied_at`.
    pub latest: bool,
}

/// Whether `change` is written even if this very event had its effect before: a forced `latest_wins` snapshot (an
/// operator's `reprocess --force`, or `verify --repair` putting back a state the destination lost or that was
/// changed behind synctrail's back). Writing a snapshot again leaves the state it had; a delta is never added twice.
pub fn rewrites(change: &PendingChange) -> bool {
    change.forced && change.delta.is_none()
}

/// Decides what `change` does to `row` (the entity's stored row, if any), the event not having had an effect
/// yet (or [`rewrites`] being true). Only an overflowing delta is an error.
pub fn decide(
    row: Option<&MirrorRecord>,
    change: &PendingChange,
    now: DateTime<Utc>,
) -> Result<Decision, DestinationError> {
    if let Some(delta) = &change.delta {
        return add_delta(row, change, delta, now).map(Decision::Add);
    }
    let refused = match row {
        // Forced: ordering skipped, the fence kept (an attempt delayed past a later claim writes nothing).
        Some(row) if change.forced => fenced_off(row, change),
        Some(row) => refusal(row, change),
        None => None,
    };
    if let Some(outcome) = refused {
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
    fenced_off(row, change)
}

/// A change claimed before the write `row` holds (its fencing token is smaller): superseded by that write.
fn fenced_off(row: &MirrorRecord, change: &PendingChange) -> Option<ApplyOutcome> {
    let holder = || row.event_id.clone().unwrap_or_else(|| format!("mirror:{}", row.entity_key));
    (row.fence > change.fence).then(|| ApplyOutcome::Superseded { by: holder() })
}

/// What an `in_order` delta does to `row`: its amounts add into the totals (an overflow is refused for good); if
/// it is the latest event by order key, its other fields are set and it becomes the row's event.
pub fn add_delta(
    row: Option<&MirrorRecord>,
    change: &PendingChange,
    delta: &Delta,
    now: DateTime<Utc>,
) -> Result<Addition, DestinationError> {
    let latest = row.and_then(|r| r.order).is_none_or(|order| order <= change.order);
    let mut state = match row.map(|r| &r.state) {
        Some(Value::Object(state)) => state.clone(),
        _ => Map::new(),
    };
    for (total, amount) in &delta.adds {
        let old = state.get(total).and_then(Value::as_i64).unwrap_or(0);
        let sum = old.checked_add(*amount).ok_or_else(|| {
            DestinationError::Permanent(format!(
                "{total} {old} + {amount} overflows a 64-bit integer for {}; the event is not applied",
                change.entity_key
            ))
        })?;
        state.insert(total.clone(), Value::from(sum));
    }
    let record = match row {
        Some(row) if !latest => {
            MirrorRecord { state: Value::Object(state), deleted: false, applied_at: now, ..row.clone() }
        }
        _ => {
            state.extend(delta.fields.iter().map(|(k, v)| (k.clone(), v.clone())));
            MirrorRecord {
                entity_key: change.entity_key.clone(),
                state: Value::Object(state),
                order: Some(change.order),
                content_hash: Some(change.content_hash.clone()),
                event_id: Some(change.event_id.clone()),
                fence: row.map_or(change.fence, |r| r.fence.max(change.fence)),
                deleted: false,
                modified_at: row.and_then(|r| r.modified_at),
                applied_at: now,
            }
        }
    };
    Ok(Addition { record, adds: delta.adds.clone(), latest })
}

/// The row a local edit of `entity_key` leaves over `row`: the edited state, the row's order key and fence kept,
/// the content hash cleared (no event wrote this state).
pub fn local_edit(
    row: Option<&MirrorRecord>,
    entity_key: &str,
    state: Value,
    modified_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> MirrorRecord {
    MirrorRecord {
        entity_key: entity_key.to_owned(),
        state,
        order: row.and_then(|r| r.order),
        content_hash: None,
        event_id: Some(LOCAL_EDIT.to_owned()),
        fence: row.map_or(0, |r| r.fence),
        deleted: false,
        modified_at: Some(modified_at),
        applied_at: now,
    }
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
    use serde_json::json;

    fn t(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + seconds, 0).unwrap_or_default()
    }

    fn order(seconds: i64) -> OrderKey {
        OrderKey { nanos: seconds, version: 0 }
    }

    /// The entity type `stock` adds `in` into `quantity` and `held` into `reserved`; others use the default.
    fn configured() -> DeltaFields {
        DeltaFields::parse("stock.in=quantity,stock.held=reserved").expect("valid")
    }

    fn change_of<'a>(id: &'a EventId, entity: &'a EntityKey, seconds: i64, payload: &'a Value) -> Change<'a> {
        Change {
            event_id: id,
            entity,
            order: order(seconds),
            updated_at: Some(t(seconds)),
            content_hash: ContentHash::of(payload.to_string().as_bytes()),
            kind: Kind::Upsert,
            direction: crate::model::Direction::Inbound,
            payload,
            fence: 1,
            policy: Policy::InOrder,
            forced: false,
            attempt: 1,
            previous_attempt_unknown: false,
            deadline: None,
            trace_id: None,
        }
    }

    fn pending_of(
        entity_type: &str,
        event: &str,
        seconds: i64,
        fence: u64,
        payload: Value,
        policy: Policy,
    ) -> PendingChange {
        let (id, entity) =
            (EventId::parse(event).expect("id"), EntityKey::new("t", "s", entity_type, "1").expect("key"));
        let change = Change { fence, policy, ..change_of(&id, &entity, seconds, &payload) };
        PendingChange::of(&change, &configured()).expect("valid change")
    }

    fn pending(event: &str, seconds: i64, fence: u64, payload: Value, policy: Policy) -> PendingChange {
        pending_of("e", event, seconds, fence, payload, policy)
    }

    fn written(decision: Result<Decision, DestinationError>) -> MirrorRecord {
        match decision {
            Ok(Decision::Write(row)) => row,
            other => panic!("expected a write, got {other:?}"),
        }
    }

    fn added(decision: Result<Decision, DestinationError>) -> Addition {
        match decision {
            Ok(Decision::Add(addition)) => addition,
            other => panic!("expected an addition, got {other:?}"),
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
        // Forced skips ordering, not the fence: an attempt claimed before the stored write writes nothing.
        let late = PendingChange { forced: true, fence: 4, ..forced };
        assert_eq!(
            decide(Some(&edited), &late, t(0)),
            Ok(Decision::Skip(ApplyOutcome::Superseded { by: "ev-1".into() }))
        );
    }

    #[test]
    fn deltas_add_up_keep_the_latest_order_and_fence_and_refuse_overflow() {
        let a = pending("ev-a", 20, 3, json!({"delta": 7}), Policy::InOrder);
        let first = added(decide(None, &a, t(0)));
        assert!(first.latest);
        let b = pending("ev-b", 10, 1, json!({"delta": -2}), Policy::InOrder);
        let second = added(decide(Some(&first.record), &b, t(1)));
        assert!(!second.latest, "older than the row");
        assert_eq!(second.adds, [("quantity".to_owned(), -2)]);
        let row = second.record;
        assert_eq!((row.state, row.order, row.fence), (json!({"quantity": 5}), Some(order(20)), 3));
        assert_eq!((row.event_id.as_deref(), row.applied_at), (Some("ev-a"), t(1)), "the latest event stays the row's");
        let full = MirrorRecord { state: json!({"quantity": i64::MAX}), ..first.record.clone() };
        assert!(matches!(decide(Some(&full), &b, t(0)), Ok(Decision::Add(_))));
        let up = pending("ev-up", 1, 1, json!({"delta": 1}), Policy::InOrder);
        match decide(Some(&full), &up, t(0)) {
            Err(DestinationError::Permanent(message)) => assert!(message.contains("overflows"), "{message}"),
            other => panic!("expected a permanent refusal, got {other:?}"),
        }
        let empty = MirrorRecord { state: json!({"quantity": i64::MIN}), ..first.record };
        assert!(matches!(decide(Some(&empty), &b, t(0)), Err(DestinationError::Permanent(_))));
    }

    #[test]
    fn a_delta_keeps_its_other_fields_and_the_latest_by_order_key_wins() {
        let newer = pending("ev-2", 20, 2, json!({"delta": 5, "location": "A", "reason": "restock"}), Policy::InOrder);
        let row = added(decide(None, &newer, t(0))).record;
        assert_eq!(row.state, json!({"quantity": 5, "location": "A", "reason": "restock"}), "other fields kept");
        let older = pending("ev-1", 10, 3, json!({"delta": -2, "location": "B", "note": "late"}), Policy::InOrder);
        let row = added(decide(Some(&row), &older, t(1))).record;
        assert_eq!(row.state, json!({"quantity": 3, "location": "A", "reason": "restock"}), "older only adds");
        let latest = pending("ev-3", 30, 4, json!({"delta": 1, "reason": "sale"}), Policy::InOrder);
        let after = added(decide(Some(&row), &latest, t(2)));
        assert!(after.latest);
        let row = after.record;
        assert_eq!(row.state, json!({"quantity": 4, "location": "A", "reason": "sale"}), "the latest sets its own");
        assert_eq!((row.event_id.as_deref(), row.order, row.fence), (Some("ev-3"), Some(order(30)), 4));
        let tie = pending("ev-tie", 30, 5, json!({"delta": 1, "reason": "tie"}), Policy::InOrder);
        assert_eq!(added(decide(Some(&row), &tie, t(3))).record.state["reason"], "tie", "a tie is the latest too");
        let not_an_object = MirrorRecord { state: json!([1]), ..row };
        assert_eq!(added(decide(Some(&not_an_object), &older, t(4))).record.state, json!({"quantity": -2}));
    }

    #[test]
    fn configured_delta_fields_add_into_their_totals_and_are_not_copied() {
        let both = pending_of(
            "stock",
            "ev-1",
            10,
            1,
            json!({"in": 10, "held": 2, "quantity": 999, "bin": "7"}),
            Policy::InOrder,
        );
        let first = added(decide(None, &both, t(0)));
        assert_eq!(first.adds, [("quantity".to_owned(), 10), ("reserved".to_owned(), 2)]);
        assert_eq!(first.record.state, json!({"quantity": 10, "reserved": 2, "bin": "7"}), "a total is the sum");
        let one = pending_of("stock", "ev-2", 20, 2, json!({"held": -1}), Policy::InOrder);
        let row = added(decide(Some(&first.record), &one, t(1))).record;
        assert_eq!(row.state, json!({"quantity": 10, "reserved": 1, "bin": "7"}));
        let unconfigured = pending_of("other", "ev-3", 5, 1, json!({"delta": 4, "in": 1}), Policy::InOrder);
        assert_eq!(added(decide(None, &unconfigured, t(0))).record.state, json!({"quantity": 4, "in": 1}));
    }

    #[test]
    fn a_delta_needs_an_integer_in_one_of_its_fields() {
        let entity = EntityKey::new("t", "s", "e", "1").expect("key");
        let stock = EntityKey::new("t", "s", "stock", "1").expect("key");
        let id = EventId::parse("ev-x").expect("id");
        let cases = [
            (&entity, json!({"delta": "1"}), "must be an integer"),
            (&entity, json!({"delta": 1.5}), "must be an integer"),
            (&entity, json!({"delta": null}), "must be an integer"),
            (&entity, json!(null), "must be an object"),
            (&entity, json!({"quantity": 1}), "needs an integer `delta`"),
            (&stock, json!({"delta": 1}), "needs an integer `in` or `held`"),
            (&stock, json!({"in": 1, "held": "2"}), "`held` of an in_order stock event"),
        ];
        for (entity, payload, needle) in cases {
            match PendingChange::of(&change_of(&id, entity, 1, &payload), &configured()) {
                Err(DestinationError::Permanent(message)) => assert!(message.contains(needle), "{payload}: {message}"),
                other => panic!("{payload}: expected a permanent refusal, got {other:?}"),
            }
        }
    }

    #[test]
    fn a_local_edit_keeps_the_order_key_and_fence_and_clears_the_content_hash() {
        let row = added(decide(None, &pending("ev-1", 10, 4, json!({"delta": 1}), Policy::InOrder), t(0))).record;
        let edit = local_edit(Some(&row), &row.entity_key, json!({"quantity": 9}), t(5), t(6));
        assert_eq!((edit.order, edit.fence, edit.content_hash.as_deref()), (Some(order(10)), 4, None));
        assert_eq!((edit.event_id.as_deref(), edit.modified_at, edit.applied_at), (Some(LOCAL_EDIT), Some(t(5)), t(6)));
        let fresh = local_edit(None, "t/s/e/2", json!({}), t(5), t(6));
        assert_eq!((fresh.order, fresh.fence, fresh.deleted), (None, 0, false));
    }
}
