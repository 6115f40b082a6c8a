//! Old history entries kept apart from the record (spec §9 "Old history entries kept apart"). DynamoDB bills a write
//! unit per started KB of the item written, and every transition rewrites the record whole, so a record whose
//! history took its item past 1 KB (an event retried again and again, as in an outage) paid two units for each later
//! write. When an event's third or later failure would leave its record less than [`ROOM_FOR_A_RETRY`] under
//! [`RECORD_ITEM_BUDGET`], its entries but the newest [`ENTRIES_KEPT`] move into one item of their own under the
//! record's partition (a part: `sk` = `HISTORY#<its first entry's place>-<hash>`, one write unit, written once),
//! which names the part before it; the record keeps the newer entries and names the newest part (`history_apart`).
//! An event retried again and again then writes one part every several retries instead of two units at each write.
//! Only repeated failures move entries: a part costs about two units (its write, and its keys stored for the
//! record's retention), so it pays only where many writes of the record follow, and a record that passes 1 KB
//! otherwise (a settle after a retry or two) pays 2 units for the few writes it has left.
//!
//! A part is named by its place and a hash of what it holds (its entries and the part before it): a part written by
//! a write that then lost its compare-and-set is an item nobody names (it expires with the record), and the same
//! part written again is the same item. Parts go before the record's write. The engine may go on from its own copy
//! of a record after writing it, a copy that did not see entries move, so the store
//! remembers the last move of each event it wrote lately ([`MovedLately`]) and makes it again on such a copy
//! without writing the part again.

use super::body;
use super::items::{event_item, event_pk, string, Item, BODY, ITEM_TYPE, PK, SK, TTL};
use crate::model::{EventId, EventRecord, HistoryApart, HistoryEntry, Status};
use crate::store::aws::meter::size::item_size;
use crate::store::StoreError;
use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// The size a record's item is kept under: one write unit.
pub(super) const RECORD_ITEM_BUDGET: u64 = super::items::ONE_WRITE_UNIT;
/// What a failure that moves entries leaves free under the budget: the next retry's claim, an entry from an
/// invocation of its own (≈ 55 bytes with Lambda's ids; its end, from the same invocation, ≈ 10 more, moves
/// entries itself if it fails again).
const ROOM_FOR_A_RETRY: u64 = 72;
/// An event's failures before its entries move: one or two retries are the common case and pay a unit at most for a
/// settle past 1 KB, less than a part; an event failing a third time is likely to fail many more.
const FAILURES_BEFORE_PARTS: u32 = 3;
/// The newest entries a record always keeps.
const ENTRIES_KEPT: usize = 2;
/// The largest body a part is given (with its keys the item stays under one write unit); the oldest entries that
/// fit go first.
const PART_BODY_BUDGET: usize = 900;
/// The sort key prefix of history parts.
pub(super) const PART_SK_PREFIX: &str = "HISTORY#";

/// One part of a record's history kept apart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Part {
    /// The place of its first entry in the whole history.
    first: u32,
    /// The part holding the entries before `first`; none for the first part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    previous: Option<String>,
    entries: Vec<HistoryEntry>,
}

/// A record's entries moved into a part: from what the record kept apart before, the entries moved, and what it
/// keeps apart after.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Move {
    event_id: EventId,
    before: Option<HistoryApart>,
    entries: Vec<HistoryEntry>,
    after: HistoryApart,
}

impl Move {
    /// Makes the move on `record` if it still holds what the move took from it: the same entries kept apart
    /// before, and the moved entries first in its history.
    fn make(&self, record: &mut EventRecord) -> bool {
        let holds = record.history_apart == self.before
            && record.history.len() > self.entries.len()
            && record.history[..self.entries.len()] == self.entries[..];
        if holds {
            record.history.drain(..self.entries.len());
            record.history_apart = Some(self.after.clone());
        }
        holds
    }
}

/// A history part to write before its record: its item, and the move it makes.
#[derive(Debug, Clone)]
pub(super) struct PartWrite {
    pub(super) item: Item,
    pub(super) moved: Move,
}

/// The item of `record` under the budget where its history allows, and the part to write before it (none when it
/// is under the budget already, when a move this store made lately brings it under, or when its history is too
/// short to move).
pub(super) fn record_items(
    record: &EventRecord,
    commit_id: &str,
    lately: &MovedLately,
) -> Result<(Item, Option<PartWrite>), StoreError> {
    // A part costs a write unit and, stored for the record's retention with its own keys, about another: it pays
    // where the record will be rewritten many times more, which is what an event failing again and again leads to
    // (each retry a claim and an end). At such a failure the entries move before the record passes 1 KB, leaving
    // room for the retry's claim and end; elsewhere a record pays 2 units for the writes it has left over 1 KB.
    let moves = record.status == Status::Errored && record.attempt >= FAILURES_BEFORE_PARTS;
    let room_left = RECORD_ITEM_BUDGET - ROOM_FOR_A_RETRY;
    let enough = if moves { room_left } else { RECORD_ITEM_BUDGET };
    let item = event_item(record, commit_id)?;
    if item_size(&item) <= enough {
        return Ok((item, None));
    }
    let mut kept = record.clone();
    let item = if lately.make_again(&mut kept) { event_item(&kept, commit_id)? } else { item };
    if !moves || item_size(&item) <= enough {
        return Ok((item, None));
    }
    let Some(part) = next_part(&kept)? else { return Ok((item, None)) };
    part.moved.make(&mut kept);
    let moved = event_item(&kept, commit_id)?;
    // A record large for other reasons (long error messages) would move an entry or two at every failure: a part
    // is written only where it leaves the room.
    if item_size(&moved) > room_left {
        return Ok((item, None));
    }
    Ok((moved, Some(part)))
}

/// The part of `record`'s history to move next: its oldest entries but the newest [`ENTRIES_KEPT`], as many as
/// fit in [`PART_BODY_BUDGET`]; none when there are none to move.
fn next_part(record: &EventRecord) -> Result<Option<PartWrite>, StoreError> {
    let id = record.event_id.as_str();
    let what = format!("a history part of event {id}");
    let movable = record.history.len().saturating_sub(ENTRIES_KEPT);
    let before = record.history_apart.clone();
    let first = before.as_ref().map_or(0, |a| a.entries);
    let mut part = Part { first, previous: before.as_ref().map(|a| a.newest_part.clone()), entries: Vec::new() };
    let mut body = None;
    for entry in &record.history[..movable] {
        part.entries.push(entry.clone());
        let encoded = body::encode(&part, &what)?;
        if body_len(&encoded) > PART_BODY_BUDGET && body.is_some() {
            part.entries.pop();
            break;
        }
        body = Some(encoded);
    }
    let Some(body) = body else { return Ok(None) };
    let json = serde_json::to_vec(&part).map_err(|e| StoreError::Backend(format!("encoding {what}: {e}").into()))?;
    let name = format!("{:06}-{}", part.first, hex::encode(&Sha256::digest(&json)[..8]));
    let item = Item::from([
        (PK.to_owned(), AttributeValue::S(event_pk(id))),
        (SK.to_owned(), AttributeValue::S(format!("{PART_SK_PREFIX}{name}"))),
        (ITEM_TYPE.to_owned(), AttributeValue::S("history".to_owned())),
        (BODY.to_owned(), body),
        (TTL.to_owned(), AttributeValue::N(record.expires_at.timestamp().to_string())),
    ]);
    let moved = part.entries.len() as u32;
    let after = HistoryApart { entries: first + moved, newest_part: name };
    let moved = Move { event_id: record.event_id.clone(), before, entries: part.entries, after };
    Ok(Some(PartWrite { item, moved }))
}

fn body_len(body: &AttributeValue) -> usize {
    match body {
        AttributeValue::B(bytes) => bytes.as_ref().len(),
        AttributeValue::S(text) => text.len(),
        _ => 0,
    }
}

/// `record` with the entries it keeps apart put back in front of its own, from `items` (its partition's history
/// parts, in any order, unnamed ones among them); `Corrupt` when a part it names is not there.
pub(super) fn joined(mut record: EventRecord, items: &[Item]) -> Result<EventRecord, StoreError> {
    let Some(apart) = record.history_apart.take() else { return Ok(record) };
    let id = record.event_id.clone();
    let parts: HashMap<&str, &Item> =
        items.iter().filter_map(|item| Some((string(item, SK)?.strip_prefix(PART_SK_PREFIX)?, item))).collect();
    let mut chain: Vec<Part> = Vec::new();
    let mut next = Some(apart.newest_part.clone());
    let mut end = apart.entries;
    while let Some(name) = next {
        let Some(item) = parts.get(name.as_str()) else {
            return Err(StoreError::Corrupt(
                format!(
                    "event {id}: history part {name} is missing, so its {end} oldest entries can't be read (a record \
                     past its expiry at {} may have lost its parts first)",
                    record.expires_at
                )
                .into(),
            ));
        };
        let part: Part = body::decode(item.get(BODY), None, &format!("history part {name} of event {id}"))?;
        let part_end = part.first as usize + part.entries.len();
        if part_end != end as usize || part.entries.is_empty() {
            return Err(StoreError::Corrupt(
                format!("event {id}: history part {name} ends at entry {part_end}, not {end}").into(),
            ));
        }
        end = part.first;
        next = part.previous.clone();
        chain.push(part);
    }
    if end != 0 {
        return Err(StoreError::Corrupt(
            format!("event {id}: its history parts start at entry {end}, not at the first").into(),
        ));
    }
    let mut history: Vec<HistoryEntry> = chain.into_iter().rev().flat_map(|part| part.entries).collect();
    history.append(&mut record.history);
    record.history = history;
    Ok(record)
}

/// The last move of each event whose part this store wrote lately (at most [`EVENTS_REMEMBERED`]).
#[derive(Debug, Default)]
pub(super) struct MovedLately {
    moves: Mutex<(HashMap<EventId, Move>, VecDeque<EventId>)>,
}

/// How many events' moves [`MovedLately`] remembers.
const EVENTS_REMEMBERED: usize = 1024;

impl MovedLately {
    /// Makes the move remembered for `record`'s event on it, if it still holds what that move took.
    fn make_again(&self, record: &mut EventRecord) -> bool {
        let Ok(moves) = self.moves.lock() else { return false };
        moves.0.get(&record.event_id).is_some_and(|moved| moved.make(record))
    }

    /// Remembers `moved`, its part being written, forgetting the event remembered first past [`EVENTS_REMEMBERED`].
    pub(super) fn remember(&self, moved: &Move) {
        let Ok(mut moves) = self.moves.lock() else { return };
        let (by_event, order) = &mut *moves;
        if by_event.insert(moved.event_id.clone(), moved.clone()).is_none() {
            order.push_back(moved.event_id.clone());
            if order.len() > EVENTS_REMEMBERED {
                if let Some(oldest) = order.pop_front() {
                    by_event.remove(&oldest);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::items::decode;
    use super::*;
    use crate::model::Status;
    use chrono::{DateTime, Utc};

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_796_284_920_000 + ms).expect("time")
    }

    fn record() -> EventRecord {
        serde_json::from_value(serde_json::json!({
            "event_id": "d-b403278f1fe258f4f2bd79bdca932b18a255295f",
            "entity": {"tenant": "default", "source": "github", "entity_type": "issue", "external_id": "octo-org/widgets#1342"},
            "order": {"nanos": 1796284920000000000_i64, "version": 0}, "kind": "upsert", "direction": "inbound",
            "content_hash": "6c4b072b13e3f4fc01ac42be523876f0ef3c1056e9b701ef3c7084b04a88ac40",
            "payload": {"key": "payloads/2026/12/03/batch-08bdab974502ac8b244587e218c4e67bf38467d2290ded5b2cbe069b26093ef8.zst",
                        "sha256": "08bdab974502ac8b244587e218c4e67bf38467d2290ded5b2cbe069b26093ef8", "size": 82,
                        "range": {"offset": 0, "length": 91}},
            "status": "received", "attempt": 0,
            "received_at": "2026-12-03T08:27:01.905883881Z", "updated_at": "2026-12-03T08:27:01.905883881Z",
            "expires_at": "2027-01-03T08:27:01.905883881Z", "history": [], "version": 0
        }))
        .expect("record")
    }

    /// One Lambda invocation's entries (a request id and a trace id of its own, as real ones are: random).
    fn invocation(record: &mut EventRecord, statuses: &[Status], n: i64) {
        let request_id = uuid_like();
        let trace_id = format!(
            "Root=1-692fe1a5-{};Parent={};Sampled=1",
            hex::encode(rand::random::<[u8; 12]>()),
            hex::encode(rand::random::<[u8; 8]>())
        );
        for (i, status) in statuses.iter().enumerate() {
            record.push_history(HistoryEntry {
                status: *status,
                at: at(n * 1_000 + i as i64),
                attempt: record.attempt,
                function: Some("synctrail-processor:$LATEST".to_owned()),
                request_id: Some(request_id.clone()),
                trace_id: Some(trace_id.clone()),
                note: None,
            });
        }
        record.status = *statuses.last().expect("a status");
    }

    fn uuid_like() -> String {
        let h = hex::encode(rand::random::<[u8; 16]>());
        format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
    }

    /// A record written `retries` times over (each retry a failed attempt and a new one) by a store that remembers
    /// its moves in `lately`: the record as stored last, and the parts written.
    fn written_with(retries: i64, lately: &MovedLately) -> (EventRecord, Vec<Item>) {
        let mut whole = record();
        invocation(&mut whole, &[Status::Received, Status::Processing], 0);
        let mut stored = whole.clone();
        let mut parts = Vec::new();
        for n in 1..=retries {
            invocation(&mut whole, &[Status::Errored, Status::Processing], n);
            whole.attempt += 1;
            // The failure, then the retry's claim, each appended to the record as the store kept it.
            for entry in whole.history[whole.history.len() - 2..].iter().cloned() {
                (stored.status, stored.attempt) = (entry.status, entry.attempt);
                stored.history.push(entry);
                let (item, part) = record_items(&stored, "c", lately).expect("items");
                let size = item_size(&item);
                assert!(size <= RECORD_ITEM_BUDGET, "retry {n}, {}: the record's item is {size} bytes", stored.status);
                if let Some(part) = part {
                    assert!(item_size(&part.item) <= RECORD_ITEM_BUDGET, "a part of {} bytes", item_size(&part.item));
                    assert_eq!(stored.status, Status::Errored, "only a failure moves entries");
                    lately.remember(&part.moved);
                    parts.push(part.item);
                }
                stored = decode(&item, "record").expect("decodes");
            }
        }
        let joined = joined(stored.clone(), &parts).expect("joins");
        assert_eq!(joined.history, whole.history, "the whole history reads back, in order");
        assert_eq!(joined.history_apart, None);
        (stored, parts)
    }

    fn written(retries: i64) -> (EventRecord, Vec<Item>) {
        written_with(retries, &MovedLately::default())
    }

    #[test]
    fn a_record_whose_history_passes_one_kb_keeps_it_in_parts_and_stays_under_one_kb() {
        let (stored, parts) = written(20);
        let apart = stored.history_apart.as_ref().expect("entries kept apart");
        assert_eq!(apart.entries as usize + stored.history.len(), 2 + 20 * 2);
        assert!(
            !parts.is_empty() && parts.len() <= 20 / 4,
            "{} parts for 20 retries: most writes move nothing",
            parts.len()
        );
    }

    #[test]
    fn a_short_history_stays_in_the_record() {
        let mut short = record();
        invocation(&mut short, &[Status::Received, Status::Processing, Status::Completed], 0);
        let (item, part) = record_items(&short, "c", &MovedLately::default()).expect("items");
        assert!(part.is_none());
        let stored: EventRecord = decode(&item, "record").expect("decodes");
        assert_eq!(stored, short);
    }

    /// The engine goes on from its own copy of a record it wrote.
    #[test]
    fn a_copy_that_did_not_see_its_entries_move_makes_the_same_move_without_writing_the_part_again() {
        let lately = MovedLately::default();
        let (mut copy, _) = written_with(5, &lately);
        copy.history_apart = None;
        let mut fresh = None;
        for n in 6..40 {
            invocation(&mut copy, &[Status::Processing, Status::Errored], n);
            let (_, part) = record_items(&copy, "c", &lately).expect("items");
            if let Some(part) = part {
                fresh = Some(part);
                break;
            }
        }
        let failure = fresh.expect("the history moves out at last");
        lately.remember(&failure.moved);
        let apart = Some(failure.moved.after.clone());
        invocation(&mut copy, &[Status::Errored], 50);
        let (item, again) = record_items(&copy, "c", &lately).expect("items");
        assert!(again.is_none(), "the copy wrote the part again");
        let written: EventRecord = decode(&item, "record").expect("decodes");
        assert_eq!(written.history_apart, apart);
        assert_eq!(written.history.last().map(|h| h.at), copy.history.last().map(|h| h.at));
        let (_, forgotten) = record_items(&copy, "c", &MovedLately::default()).expect("items");
        assert!(forgotten.is_some(), "a store that forgot the move moves the entries again");
    }

    #[test]
    fn parts_nobody_names_are_passed_over_and_a_missing_part_is_corrupt() {
        let (stored, mut parts) = written(14);
        // A write that lost its compare-and-set left a part of its own.
        let mut loser = stored.clone();
        for n in 20..30 {
            invocation(&mut loser, &[Status::Processing, Status::Errored], n);
        }
        let (_, orphan) = record_items(&loser, "c", &MovedLately::default()).expect("items");
        let whole = joined(stored.clone(), &parts).expect("joins");
        parts.push(orphan.expect("the loser moved entries").item);
        assert_eq!(joined(stored.clone(), &parts).expect("joins with the orphan"), whole);
        let named = stored.history_apart.as_ref().map(|a| a.newest_part.clone()).expect("apart");
        parts.retain(|p| string(p, SK) != Some(format!("{PART_SK_PREFIX}{named}").as_str()));
        let missing = joined(stored, &parts);
        assert!(matches!(missing, Err(StoreError::Corrupt(ref m)) if m.contains("is missing")), "{missing:?}");
    }

    #[test]
    fn a_record_large_for_other_reasons_moves_nothing_that_would_not_save_a_unit() {
        let mut large = record();
        large.error = Some(crate::model::ErrorInfo {
            kind: crate::model::ErrorKind::Retryable,
            message: hex::encode((0..700).map(|_| rand::random::<u8>()).collect::<Vec<u8>>()),
            retryable: true,
            causes: Vec::new(),
            field: None,
        });
        large.attempt = FAILURES_BEFORE_PARTS + 1;
        invocation(&mut large, &[Status::Received, Status::Processing], 0);
        invocation(&mut large, &[Status::Errored, Status::Processing], 1);
        invocation(&mut large, &[Status::Errored], 2);
        let (item, part) = record_items(&large, "c", &MovedLately::default()).expect("items");
        assert!(item_size(&item) > RECORD_ITEM_BUDGET, "the error alone passes 1 KB");
        assert!(part.is_none(), "a part that leaves no room is not written");
    }

    #[test]
    fn an_events_first_failures_move_nothing() {
        let (stored, _) = written(25);
        let mut early = stored.clone();
        early.attempt = FAILURES_BEFORE_PARTS - 1;
        for n in 30..40 {
            invocation(&mut early, &[Status::Processing, Status::Errored], n);
        }
        assert!(item_size(&event_item(&early, "c").expect("item")) > RECORD_ITEM_BUDGET);
        assert!(record_items(&early, "c", &MovedLately::default()).expect("items").1.is_none());
        early.attempt = FAILURES_BEFORE_PARTS;
        assert!(record_items(&early, "c", &MovedLately::default()).expect("items").1.is_some());
    }

    #[test]
    fn a_record_past_one_kb_moves_entries_only_at_a_failure() {
        let (stored, _) = written(25);
        let mut settled = stored.clone();
        for n in 50..60 {
            invocation(&mut settled, &[Status::Processing, Status::Errored], n);
        }
        invocation(&mut settled, &[Status::Completed], 60);
        let (item, part) = record_items(&settled, "c", &MovedLately::default()).expect("items");
        assert!(item_size(&item) > RECORD_ITEM_BUDGET && part.is_none(), "a settle pays for its last write");
        settled.status = Status::Errored;
        assert!(record_items(&settled, "c", &MovedLately::default()).expect("items").1.is_some());
    }

    #[test]
    fn a_part_expires_with_its_record() {
        let (stored, parts) = written(12);
        let ttl = AttributeValue::N(stored.expires_at.timestamp().to_string());
        assert!(!parts.is_empty());
        assert!(parts.iter().all(|p| p.get(TTL) == Some(&ttl) && string(p, ITEM_TYPE) == Some("history")));
    }
}
