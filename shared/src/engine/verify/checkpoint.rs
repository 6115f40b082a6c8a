//! The replay of an `in_order` entity kept from one verification to the next (spec §9 "A verification goes on from
//! the last one's replay"): the folded state with, for each field, where in the replay's order it was last set, so
//! that the events applied since — newer ones and late deltas alike — fold onto it without reading the payloads of
//! those folded before.
//!
//! The fold is the replay's algebra for deltas ([`replay`](super::replay) uses it from nothing): the totals are
//! sums, so late amounts add wherever they fall; a field holds the value of the delta that set it last in the
//! replay's order (order key, then when applied), so a late delta sets only the fields no later delta set; the
//! newest event is the row's event. A [`Checkpoint`] also names the events it folded (their count, a digest of their
//! ids, and the late ones among them): an entity whose applied events since are not exactly "those past the newest
//! folded, and the late ones not folded" (an event reprocessed, expired, or ending otherwise) is replayed in full.

use super::replay::ReplayError;
use crate::destination::guard::{Delta, MirrorRecord};
use crate::model::{EventRecord, OrderKey};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};

/// Where an applied event falls in an `in_order` replay: its order key, then when it was applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Position {
    /// The event's order key.
    pub order: OrderKey,
    /// When it was applied.
    pub completed_at: Option<DateTime<Utc>>,
}

impl Position {
    /// `record`'s position; `None` without an order key (such an event can't be replayed).
    pub fn of(record: &EventRecord) -> Option<Self> {
        record.order.map(|order| Self { order, completed_at: record.completed_at })
    }
}

/// The newest event folded: the row's event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Newest {
    event_id: String,
    position: Position,
    content_hash: String,
}

/// The state an `in_order` replay has reached.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InOrderFold {
    /// The totals and the fields.
    state: Map<String, Value>,
    /// For each field (not the totals), the position of the delta that set it last.
    set_at: BTreeMap<String, Position>,
    /// The newest event folded.
    newest: Option<Newest>,
}

impl InOrderFold {
    /// Folds in the delta of the event `event_id` (content hash `content_hash`) at `position`, in any order: its
    /// amounts add into the totals (an overflow is refused, as the mirror refuses it), and it sets each of its
    /// fields that no delta after it set.
    pub fn add(
        &mut self,
        event_id: &str,
        content_hash: &str,
        position: Position,
        delta: &Delta,
    ) -> Result<(), ReplayError> {
        let mut state = self.state.clone();
        for (total, amount) in &delta.adds {
            let old = state.get(total).and_then(Value::as_i64).unwrap_or(0);
            let sum = old.checked_add(*amount).ok_or_else(|| ReplayError::Refused {
                event_id: event_id.to_owned(),
                reason: format!("{total} {old} + {amount} overflows a 64-bit integer"),
            })?;
            state.insert(total.clone(), Value::from(sum));
        }
        for (field, value) in &delta.fields {
            if self.set_at.get(field).is_none_or(|set| *set <= position) {
                state.insert(field.clone(), value.clone());
                self.set_at.insert(field.clone(), position);
            }
        }
        self.state = state;
        if self.newest.as_ref().is_none_or(|newest| newest.position <= position) {
            let (event_id, content_hash) = (event_id.to_owned(), content_hash.to_owned());
            self.newest = Some(Newest { event_id, position, content_hash });
        }
        Ok(())
    }

    /// The row a destination following the mirror's rules holds after these events; `None` when none was folded.
    /// `now` stamps `applied_at` (not compared).
    pub fn row(&self, entity_key: &str, now: DateTime<Utc>) -> Option<MirrorRecord> {
        let newest = self.newest.as_ref()?;
        Some(MirrorRecord {
            entity_key: entity_key.to_owned(),
            state: Value::Object(self.state.clone()),
            order: Some(newest.position.order),
            content_hash: Some(newest.content_hash.clone()),
            event_id: Some(newest.event_id.clone()),
            fence: 0,
            deleted: false,
            modified_at: None,
            applied_at: now,
        })
    }
}

/// An `in_order` replay kept for the next verification of its entity, with the events it folded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The replay's state.
    pub fold: InOrderFold,
    /// The newest position folded: an event past it was applied since.
    through: Position,
    /// How many events were folded.
    folded: usize,
    /// SHA-256 of their ids, sorted, one per line (hex).
    digest: String,
    /// The events folded that were applied out of order (`out_of_order`): any other such event was applied since.
    late: BTreeSet<String>,
}

impl Checkpoint {
    /// The checkpoint of `fold`, the replay of `applied` (one entity's applied events), and the newest of them (the
    /// last of those at the newest position), whose record names the checkpoint; `None` when there were none or one
    /// has no order key.
    pub fn after<'a>(fold: InOrderFold, applied: &[&'a EventRecord]) -> Option<(Self, &'a EventRecord)> {
        let positions = applied.iter().map(|e| Position::of(e)).collect::<Option<Vec<_>>>()?;
        let (newest, through) = applied.iter().copied().zip(positions).max_by_key(|(_, position)| *position)?;
        let late = applied.iter().filter(|e| e.out_of_order).map(|e| e.event_id.to_string()).collect();
        Some((Self { fold, through, folded: applied.len(), digest: digest(applied), late }, newest))
    }

    /// The events of `applied` (one entity's applied events now) applied since this checkpoint, when the others are
    /// exactly the events it folded; `None` when they are not (the entity is replayed in full).
    pub fn since<'a>(&self, applied: &[&'a EventRecord]) -> Option<Vec<&'a EventRecord>> {
        let mut new = Vec::new();
        let mut folded = Vec::with_capacity(self.folded);
        for &record in applied {
            let past = Position::of(record)? > self.through;
            if past || (record.out_of_order && !self.late.contains(record.event_id.as_str())) {
                new.push(record);
            } else {
                folded.push(record);
            }
        }
        (folded.len() == self.folded && digest(&folded) == self.digest).then_some(new)
    }

    /// The stored form.
    pub fn to_bytes(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }

    /// Reads the stored form.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// SHA-256 of the events' ids, sorted, one per line.
fn digest(events: &[&EventRecord]) -> String {
    let mut ids: Vec<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
    ids.sort_unstable();
    let mut hash = Sha256::new();
    for id in ids {
        hash.update(id.as_bytes());
        hash.update(b"\n");
    }
    hex::encode(hash.finalize())
}

#[cfg(test)]
mod tests {
    use super::super::replay::tests::{at, event};
    use super::*;
    use crate::destination::guard::{add_delta, PendingChange};
    use crate::model::Kind;
    use serde_json::json;

    /// A small deterministic generator (no dependency): the same cases on every run.
    struct Cases(u64);

    impl Cases {
        fn next(&mut self, below: u64) -> u64 {
            self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 33) % below
        }
    }

    /// `n` completed deltas, each adding to `quantity` and setting some of the fields `a`, `b`, `c`.
    fn deltas(cases: &mut Cases, n: usize) -> Vec<(EventRecord, Delta)> {
        (0..n)
            .map(|i| {
                let (updated, applied) = (cases.next(50) as i64, 100 + i as i64);
                let mut fields = Map::new();
                for name in ["a", "b", "c"] {
                    if cases.next(3) == 0 {
                        fields.insert(name.to_owned(), json!(format!("{name}{i}")));
                    }
                }
                let delta = Delta { adds: vec![("quantity".to_owned(), cases.next(21) as i64 - 10)], fields };
                let payload = json!({"i": i});
                (event(&format!("e{i}"), updated, applied, Kind::Upsert, &payload), delta)
            })
            .collect()
    }

    /// The mirror's own rules (`add_delta`), the events applied one by one in order-key order.
    fn in_order_by_the_mirror(events: &[(EventRecord, Delta)]) -> Option<MirrorRecord> {
        let mut sorted: Vec<&(EventRecord, Delta)> = events.iter().collect();
        sorted.sort_by_key(|(e, _)| Position::of(e));
        let mut row = None;
        for (record, delta) in sorted {
            let change = PendingChange {
                event_id: record.event_id.to_string(),
                entity_key: "t/s/e/1".to_owned(),
                order: record.order.unwrap_or(OrderKey::BEFORE_ANY),
                updated_at: record.external_at,
                content_hash: String::new(),
                deleted: false,
                payload: Value::Null,
                fence: 0,
                forced: false,
                delta: Some(delta.clone()),
            };
            row = Some(add_delta(row.as_ref(), &change, delta, at(0)).unwrap().record);
        }
        row
    }

    fn fold(fold: &mut InOrderFold, events: &[&(EventRecord, Delta)]) {
        for (record, delta) in events {
            fold.add(record.event_id.as_str(), "", Position::of(record).unwrap(), delta).unwrap();
        }
    }

    #[test]
    fn a_fold_in_any_order_resumed_anywhere_holds_what_the_mirror_holds_applying_them_in_order_key_order() {
        let mut cases = Cases(7);
        for _ in 0..300 {
            let n = 1 + cases.next(12) as usize;
            let events = deltas(&mut cases, n);
            let mut arrival: Vec<&(EventRecord, Delta)> = events.iter().collect();
            for i in (1..arrival.len()).rev() {
                arrival.swap(i, cases.next(i as u64 + 1) as usize);
            }
            let split = cases.next(n as u64 + 1) as usize;
            let mut first = InOrderFold::default();
            fold(&mut first, &arrival[..split]);
            let kept: InOrderFold = serde_json::from_slice(&serde_json::to_vec(&first).unwrap()).unwrap();
            let mut resumed = kept;
            fold(&mut resumed, &arrival[split..]);
            let expected = in_order_by_the_mirror(&events).unwrap();
            let row = resumed.row("t/s/e/1", at(0)).unwrap();
            assert_eq!((&row.state, &row.event_id), (&expected.state, &expected.event_id), "{events:?}");
        }
    }

    #[test]
    fn a_checkpoint_names_the_events_applied_since_and_only_for_the_events_it_folded() {
        let payload = json!({"delta": 1});
        let record = |id: &str, updated, applied| event(id, updated, applied, Kind::Upsert, &payload);
        let (a, b) = (record("a", 20, 100), record("b", 10, 101));
        let mut b = b;
        b.out_of_order = true;
        assert!(Checkpoint::after(InOrderFold::default(), &[]).is_none(), "no checkpoint of no events");
        let (checkpoint, newest) = Checkpoint::after(InOrderFold::default(), &[&b, &a]).unwrap();
        assert_eq!(newest.event_id.as_str(), "a", "the newest by order key, though applied first");
        let stored = Checkpoint::from_bytes(&checkpoint.to_bytes().unwrap()).unwrap();
        assert_eq!(stored, checkpoint);
        let ids = |events: Option<Vec<&EventRecord>>| {
            events.map(|e| e.iter().map(|r| r.event_id.to_string()).collect::<Vec<_>>())
        };
        assert_eq!(ids(stored.since(&[&b, &a])), Some(vec![]), "nothing since");
        let newer = record("c", 30, 102);
        let mut late = record("d", 15, 103);
        late.out_of_order = true;
        assert_eq!(ids(stored.since(&[&b, &late, &a, &newer])), Some(vec!["d".to_owned(), "c".to_owned()]));
        // `a` applied again later (reprocessed), past the newest folded position: it would count twice.
        let again = record("a", 20, 104);
        assert_eq!(ids(stored.since(&[&b, &again])), None, "a folded event moved");
        assert_eq!(ids(stored.since(&[&a])), None, "a folded event is no longer applied");
        let unflagged = record("e", 15, 105);
        assert_eq!(ids(stored.since(&[&b, &unflagged, &a])), None, "an event not known to be new or folded");
    }
}
