//! How one entity compares between the snapshot (the other system) and the destination, and the corrective event
//! a difference calls for. Pure: no store, no network.

use crate::destination::DestinationRecord;
use crate::engine::verify::{diff, FieldDiff};
use crate::model::{content_hash, Direction, Envelope, EventId, Kind, OrderKey};
use crate::settings::Policy;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// How an entity compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiffKind {
    /// Both hold the same state (or both hold none).
    Same,
    /// The snapshot has it; the destination does not (never written, or deleted before the snapshot's row).
    Missing,
    /// The destination has it; the snapshot does not (or says it is deleted): a delete is due.
    Extra,
    /// They differ, but the destination's record is newer than the snapshot's: the snapshot is out of date there and
    /// nothing is sent (the ordering rules would drop it anyway).
    Stale,
    /// They differ, and the snapshot's row is not older than what the destination holds.
    Different,
}

/// Why a difference of an `in_order` entity type gets no correction.
pub const IN_ORDER_NOT_CORRECTABLE: &str = "not corrected: the entity type is in_order, whose events are deltas; a \
     snapshot row is a total, not a delta (and a delete carries none), so the destination would refuse it; fix it \
     with a delta event";

/// What to do about one entity.
#[derive(Debug, Clone, PartialEq)]
pub struct Classified {
    /// How it compares.
    pub kind: DiffKind,
    /// The corrective change to send (for missing, extra and different, unless the entity type is `in_order`).
    pub correction: Option<Envelope>,
    /// Where the two states differ.
    pub diff: Vec<FieldDiff>,
    /// Why a missing, extra or different entity gets no correction ([`IN_ORDER_NOT_CORRECTABLE`]).
    pub not_correctable: Option<&'static str>,
}

/// The corrective event id of `entity_key` in run `run_id`: the same on every attempt of the run, so a resumed run
/// that sends it again records no second event.
pub fn correction_id(run_id: &str, entity_key: &str) -> Option<EventId> {
    let digest = hex::encode(Sha256::digest(entity_key.as_bytes()));
    EventId::parse(&format!("reconcile:{run_id}:{}", &digest[..16])).ok()
}

/// Compares the snapshot's row of an entity (`snapshot`, already a corrective envelope with its id and cause) with
/// what the destination holds (`held`); `delete` is the corrective delete of the entity at the snapshot's time, sent
/// when the snapshot does not have it (see [`delete_at`]). Under `policy` = `in_order` a difference is classified the
/// same but gets no correction: the destination applies that type's events as deltas, and refuses a snapshot row
/// (a total) or a delete (no delta) for good.
pub fn classify(
    snapshot: Option<Envelope>,
    held: Option<&DestinationRecord>,
    delete: Option<Envelope>,
    policy: Policy,
) -> Classified {
    let mut classified = compare(snapshot, held, delete);
    if policy == Policy::InOrder && classified.correction.take().is_some() {
        classified.not_correctable = Some(IN_ORDER_NOT_CORRECTABLE);
    }
    classified
}

/// [`classify`] before the policy is looked at.
fn compare(snapshot: Option<Envelope>, held: Option<&DestinationRecord>, delete: Option<Envelope>) -> Classified {
    let live = held.filter(|h| !h.deleted);
    let newer_than = |order: OrderKey| held.and_then(|h| h.order).is_some_and(|held| held > order);
    let state = |record: Option<&DestinationRecord>| record.map_or(Value::Null, |r| r.state.clone());
    let outcome = |kind, correction, diff| Classified { kind, correction, diff, not_correctable: None };
    match snapshot {
        Some(row) if row.kind == Kind::Delete => match live {
            None => outcome(DiffKind::Same, None, Vec::new()),
            Some(_) if newer_than(row.order) => outcome(DiffKind::Stale, None, diff(&Value::Null, &state(live))),
            Some(_) => {
                let diffs = diff(&Value::Null, &state(live));
                outcome(DiffKind::Extra, Some(row), diffs)
            }
        },
        Some(row) => match live {
            None if newer_than(row.order) => outcome(DiffKind::Stale, None, diff(&row.payload, &Value::Null)),
            None => {
                let diffs = diff(&row.payload, &Value::Null);
                outcome(DiffKind::Missing, Some(row), diffs)
            }
            Some(held) if held.state == row.payload => outcome(DiffKind::Same, None, Vec::new()),
            Some(held) => {
                let diffs = diff(&row.payload, &held.state);
                if newer_than(row.order) {
                    outcome(DiffKind::Stale, None, diffs)
                } else {
                    outcome(DiffKind::Different, Some(row), diffs)
                }
            }
        },
        None => match live {
            None => outcome(DiffKind::Same, None, Vec::new()),
            Some(held) => {
                let diffs = diff(&Value::Null, &held.state);
                match delete {
                    Some(correction) if newer_than(correction.order) => outcome(DiffKind::Stale, None, diffs),
                    correction => outcome(DiffKind::Extra, correction, diffs),
                }
            }
        },
    }
}

/// The corrective delete of `entity` at the snapshot's time `as_of`, with id `event_id` and cause `caused_by`
/// (`None` for a time outside 1678..2261, which no order key holds).
pub fn delete_at(
    entity: &crate::model::EntityKey,
    as_of: DateTime<Utc>,
    event_id: EventId,
    caused_by: &str,
) -> Option<Envelope> {
    let order = OrderKey::at(as_of, 0)?;
    Some(Envelope {
        event_id,
        client_event_id: true,
        entity: entity.clone(),
        order,
        updated_at: Some(as_of),
        kind: Kind::Delete,
        direction: Direction::Inbound,
        payload: Value::Null,
        content_hash: content_hash(Kind::Delete, &Value::Null),
        delivery_id: None,
        caused_by: Some(caused_by.to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::EntityKey;
    use serde_json::json;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + seconds, 0).unwrap_or_default()
    }

    fn entity() -> EntityKey {
        EntityKey::new("default", "erp", "product", "1").unwrap()
    }

    fn row(seconds: i64, kind: Kind, payload: Value) -> Envelope {
        let id = correction_id("r1", "default/erp/product/1").unwrap();
        Envelope {
            order: OrderKey::at(at(seconds), 0).unwrap(),
            updated_at: Some(at(seconds)),
            kind,
            content_hash: content_hash(kind, &payload),
            payload,
            ..delete_at(&entity(), at(seconds), id, "reconcile:r1").unwrap()
        }
    }

    fn held(seconds: i64, state: Value) -> DestinationRecord {
        let deleted = state.is_null();
        DestinationRecord { state, deleted, order: OrderKey::at(at(seconds), 0), event_id: Some("e".into()) }
    }

    fn classified(snapshot: Option<Envelope>, held: Option<&DestinationRecord>, policy: Policy) -> Classified {
        let delete = delete_at(&entity(), at(50), correction_id("r1", "k").unwrap(), "reconcile:r1");
        classify(snapshot.clone(), held, snapshot.is_none().then_some(delete).flatten(), policy)
    }

    fn kind(snapshot: Option<Envelope>, held: Option<&DestinationRecord>) -> (DiffKind, bool) {
        let classified = classified(snapshot, held, Policy::LatestWins);
        (classified.kind, classified.correction.is_some())
    }

    #[test]
    fn each_case_is_classified_and_only_differences_not_older_than_the_destination_are_corrected() {
        let upsert = |s| row(s, Kind::Upsert, json!({"price": 10}));
        assert_eq!(kind(Some(upsert(10)), Some(&held(10, json!({"price": 10})))), (DiffKind::Same, false));
        assert_eq!(kind(Some(upsert(10)), None), (DiffKind::Missing, true));
        assert_eq!(kind(Some(upsert(10)), Some(&held(5, json!(null)))), (DiffKind::Missing, true));
        assert_eq!(kind(Some(upsert(10)), Some(&held(20, json!(null)))), (DiffKind::Stale, false), "deleted since");
        assert_eq!(kind(Some(upsert(10)), Some(&held(10, json!({"price": 9})))), (DiffKind::Different, true));
        assert_eq!(kind(Some(upsert(10)), Some(&held(20, json!({"price": 9})))), (DiffKind::Stale, false));
        assert_eq!(kind(None, Some(&held(20, json!({"price": 9})))), (DiffKind::Extra, true));
        assert_eq!(kind(None, Some(&held(60, json!({"price": 9})))), (DiffKind::Stale, false), "created after it");
        assert_eq!(kind(None, None), (DiffKind::Same, false));
        let gone = row(30, Kind::Delete, json!(null));
        assert_eq!(kind(Some(gone.clone()), Some(&held(20, json!({"price": 9})))), (DiffKind::Extra, true));
        assert_eq!(kind(Some(gone), None), (DiffKind::Same, false));
        let unordered = DestinationRecord { order: None, ..held(99, json!({"price": 9})) };
        assert_eq!(kind(Some(upsert(10)), Some(&unordered)), (DiffKind::Different, true), "the pipeline guards it");
    }

    #[test]
    fn an_in_order_difference_is_classified_the_same_and_gets_no_correction_but_the_reason() {
        let upsert = |s| row(s, Kind::Upsert, json!({"on_hand": 10}));
        let cases = [
            (Some(upsert(10)), None, DiffKind::Missing),
            (Some(upsert(10)), Some(held(10, json!({"on_hand": 9}))), DiffKind::Different),
            (None, Some(held(20, json!({"on_hand": 9}))), DiffKind::Extra),
        ];
        for (snapshot, held, expected) in cases {
            let latest_wins = classified(snapshot.clone(), held.as_ref(), Policy::LatestWins);
            let in_order = classified(snapshot, held.as_ref(), Policy::InOrder);
            assert_eq!((latest_wins.kind, latest_wins.correction.is_some()), (expected, true));
            assert_eq!(latest_wins.not_correctable, None);
            assert_eq!((in_order.kind, in_order.correction, in_order.diff), (expected, None, latest_wins.diff));
            assert_eq!(in_order.not_correctable, Some(IN_ORDER_NOT_CORRECTABLE), "{expected:?}");
        }
        let same = classified(Some(upsert(10)), Some(&held(10, json!({"on_hand": 10}))), Policy::InOrder);
        assert_eq!((same.kind, same.not_correctable), (DiffKind::Same, None), "nothing to correct, nothing to say");
        let stale = classified(Some(upsert(10)), Some(&held(20, json!({"on_hand": 9}))), Policy::InOrder);
        assert_eq!((stale.kind, stale.not_correctable), (DiffKind::Stale, None), "never sent under either policy");
    }

    #[test]
    fn correction_ids_are_the_same_within_a_run_and_differ_between_runs_and_entities() {
        let a = correction_id("r1", "default/erp/product/1").unwrap();
        assert_eq!(a, correction_id("r1", "default/erp/product/1").unwrap());
        assert_ne!(a, correction_id("r2", "default/erp/product/1").unwrap());
        assert_ne!(a, correction_id("r1", "default/erp/product/2").unwrap());
        assert!(a.as_str().starts_with("reconcile:r1:"));
    }
}
