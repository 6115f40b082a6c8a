//! The replay: an entity's applied events folded in memory with the reference mirror's own rules
//! ([`crate::destination::guard`]), giving the row a destination following them must hold.
//!
//! Only `completed` events had an effect. `latest_wins` events are folded in the order they were applied
//! (`completed_at`): the guard let none older than the last through, so this is order-key order, and an event an
//! operator re-drove with `--force` counts where it was applied. `in_order` deltas are folded as if applied in
//! order-key order (the order they should have been applied in, spec §5) by [`InOrderFold`], whatever the order they
//! come in: their totals do not depend on it, and each field holds what the newest delta setting it set.

use super::checkpoint::{InOrderFold, Position};
use crate::destination::delta_fields::DeltaFields;
use crate::destination::guard::{decide, Addition, Decision, MirrorRecord, PendingChange};
use crate::destination::{Change, DestinationError};
use crate::model::{EntityKey, EventRecord, Status};
use crate::settings::Policy;
use chrono::{DateTime, Utc};
use serde_json::Value;

/// Why an entity's events can't be replayed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// A completed event's record lacks what its change is rebuilt from.
    #[error("event {0} has no order key, kind or content hash, so it can't be replayed")]
    Incomplete(String),
    /// The mirror's rules refuse an event that was applied (a delta without its amount, an overflow).
    #[error("event {event_id} can't be replayed with the mirror's rules: {reason}")]
    Refused {
        /// The event.
        event_id: String,
        /// What the rules said.
        reason: String,
    },
}

/// The events of `events` (one entity's, any order) that had an effect, in the order the replay folds them.
pub fn applied(events: &[EventRecord], policy: Policy) -> Vec<&EventRecord> {
    let mut applied: Vec<&EventRecord> = events.iter().filter(|e| e.status == Status::Completed).collect();
    match policy {
        Policy::LatestWins => applied.sort_by_key(|e| (e.completed_at, e.order)),
        Policy::InOrder => applied.sort_by_key(|e| (e.order, e.completed_at)),
    }
    applied
}

/// The row the rules leave after `steps` (each applied event with its payload, in replay order); `None` when no
/// event wrote anything. `now` stamps `applied_at` (not compared).
pub fn replay<'a>(
    entity: &EntityKey,
    steps: impl IntoIterator<Item = (&'a EventRecord, &'a Value)>,
    policy: Policy,
    delta_fields: &DeltaFields,
    now: DateTime<Utc>,
) -> Result<Option<MirrorRecord>, ReplayError> {
    if policy == Policy::InOrder {
        let mut fold = InOrderFold::default();
        fold_in_order(&mut fold, entity, steps, delta_fields)?;
        return Ok(fold.row(&entity.to_string(), now));
    }
    let mut row: Option<MirrorRecord> = None;
    for (record, payload) in steps {
        let pending = pending(entity, record, payload, policy, delta_fields)?;
        match decide(row.as_ref(), &pending, now).map_err(|e| refused(record, e))? {
            Decision::Write(written) | Decision::Add(Addition { record: written, .. }) => row = Some(written),
            Decision::Skip(_) => {}
        }
    }
    Ok(row)
}

/// Folds `steps` (applied `in_order` events of `entity` with their payloads, in any order) into `fold`.
pub fn fold_in_order<'a>(
    fold: &mut InOrderFold,
    entity: &EntityKey,
    steps: impl IntoIterator<Item = (&'a EventRecord, &'a Value)>,
    delta_fields: &DeltaFields,
) -> Result<(), ReplayError> {
    for (record, payload) in steps {
        let pending = pending(entity, record, payload, Policy::InOrder, delta_fields)?;
        let (Some(position), Some(delta)) = (Position::of(record), pending.delta.as_ref()) else {
            return Err(ReplayError::Incomplete(record.event_id.to_string()));
        };
        fold.add(&pending.event_id, &pending.content_hash, position, delta)?;
    }
    Ok(())
}

/// The change `record` (with `payload`) made, as the mirror's rules see it.
fn pending(
    entity: &EntityKey,
    record: &EventRecord,
    payload: &Value,
    policy: Policy,
    delta_fields: &DeltaFields,
) -> Result<PendingChange, ReplayError> {
    let (Some(order), Some(kind), Some(content_hash)) = (record.order, record.kind, record.content_hash) else {
        return Err(ReplayError::Incomplete(record.event_id.to_string()));
    };
    let change = Change {
        event_id: &record.event_id,
        entity,
        order,
        updated_at: record.external_at,
        content_hash,
        kind,
        direction: record.direction.unwrap_or_default(),
        payload,
        fence: 0,
        policy,
        forced: record.forced,
        attempt: 1,
        previous_attempt_unknown: false,
        deadline: None,
        trace_id: None,
    };
    PendingChange::of(&change, delta_fields).map_err(|e| refused(record, e))
}

fn refused(record: &EventRecord, e: DestinationError) -> ReplayError {
    ReplayError::Refused { event_id: record.event_id.to_string(), reason: e.to_string() }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::model::{content_hash, EventId, Kind, OrderKey, PayloadRef};
    use serde_json::json;

    pub(in crate::engine::verify) fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + seconds, 0).unwrap_or_default()
    }

    /// A completed event of one entity, updated at `seconds`, applied at `completed`.
    pub(in crate::engine::verify) fn event(
        id: &str,
        seconds: i64,
        completed: i64,
        kind: Kind,
        payload: &Value,
    ) -> EventRecord {
        let entity = EntityKey::new("t", "s", "e", "1").unwrap();
        EventRecord {
            event_id: EventId::parse(id).unwrap(),
            client_event_id: true,
            entity: Some(entity),
            order: OrderKey::at(at(seconds), 0),
            kind: Some(kind),
            direction: None,
            content_hash: Some(content_hash(kind, payload)),
            payload: PayloadRef { key: String::new(), sha256: String::new(), size: 0, range: None },
            delivery_id: None,
            conflicts_with: None,
            caused_by: None,
            status: Status::Completed,
            dropped_for: None,
            duplicate_of: None,
            canceled_by: None,
            waiting_for: None,
            waiting_since: None,
            attempt: 1,
            attempt_base: 0,
            error: None,
            tie: false,
            out_of_order: false,
            forced: false,
            parked: false,
            redelivered: 0,
            external_at: Some(at(seconds)),
            received_at: at(completed),
            read_started_at: None,
            write_started_at: None,
            write_outcome_unknown: false,
            written: None,
            completed_at: Some(at(completed)),
            updated_at: at(completed),
            lease_until: None,
            last_message_id: None,
            expires_at: at(1_000_000),
            history_folded: 0,
            history_apart: None,
            replay_kept: None,
            history: Vec::new(),
            version: 1,
        }
    }

    fn run(events: &[EventRecord], payloads: &[Value], policy: Policy) -> Option<MirrorRecord> {
        let entity = EntityKey::new("t", "s", "e", "1").unwrap();
        let by_id = |r: &EventRecord| &payloads[events.iter().position(|e| e.event_id == r.event_id).unwrap()];
        let steps = applied(events, policy).into_iter().map(|r| (r, by_id(r)));
        replay(&entity, steps, policy, &DeltaFields::default(), at(0)).unwrap()
    }

    #[test]
    fn the_newest_snapshot_wins_and_a_forced_older_one_counts_where_it_was_applied() {
        let payloads = [json!({"n": 1}), json!({"n": 2}), json!({"n": 0})];
        let mut events = vec![
            event("a", 10, 100, Kind::Upsert, &payloads[0]),
            event("b", 20, 101, Kind::Upsert, &payloads[1]),
            event("c", 5, 99, Kind::Upsert, &payloads[2]),
        ];
        events[2].status = Status::Dropped;
        assert_eq!(run(&events, &payloads, Policy::LatestWins).unwrap().state, json!({"n": 2}));
        events[2].status = Status::Completed;
        events[2].forced = true;
        events[2].completed_at = Some(at(102));
        assert_eq!(run(&events, &payloads, Policy::LatestWins).unwrap().state, json!({"n": 0}), "forced, last");
        let deleted = [json!(null)];
        let row = run(&[event("d", 1, 1, Kind::Delete, &deleted[0])], &deleted, Policy::LatestWins).unwrap();
        assert!(row.deleted);
    }

    #[test]
    fn deltas_add_up_in_order_key_order_whatever_order_they_were_applied_in() {
        let payloads = [json!({"delta": 5, "bin": "A"}), json!({"delta": -2, "note": "late"})];
        let events =
            vec![event("x", 20, 100, Kind::Upsert, &payloads[0]), event("y", 10, 101, Kind::Upsert, &payloads[1])];
        let row = run(&events, &payloads, Policy::InOrder).unwrap();
        assert_eq!(row.state, json!({"quantity": 3, "bin": "A", "note": "late"}));
        assert_eq!(row.event_id.as_deref(), Some("x"));
    }
}
