//! The event record of spec §8: everything known about one event, and its history.

use super::echo::ExternalWrite;
use super::envelope::{Direction, Kind};
use super::ids::{ContentHash, EntityKey, EventId, OrderKey};
use super::status::{IllegalTransition, Status};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// How many history entries a record keeps; past that the oldest entries after the first few are folded into
/// `history_folded`, so a record never grows without bound.
pub const HISTORY_LIMIT: usize = 64;
const HISTORY_KEEP_FIRST: usize = 8;

/// Where an archived payload (or a rejected message's raw body) lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayloadRef {
    /// The object key in the payload store.
    pub key: String,
    /// SHA-256 of the uncompressed bytes, hex.
    pub sha256: String,
    /// Uncompressed size in bytes.
    pub size: u64,
    /// Where the payload's own compressed frame lies inside the object, when the object holds a batch of payloads
    /// (one S3 object per SQS batch); `None`: the object is this payload alone (records written before batches).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<ByteRange>,
}

/// A byte range inside a stored object: `length` bytes from `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ByteRange {
    /// The first byte's offset.
    pub offset: u64,
    /// How many bytes (at least 1 for a stored frame).
    pub length: u64,
}

impl ByteRange {
    /// The last byte's offset (inclusive, as in an HTTP `Range` header); `None` for an empty range.
    pub fn last(&self) -> Option<u64> {
        self.length.checked_sub(1).and_then(|n| self.offset.checked_add(n))
    }
}

/// What kind of error an attempt met.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The message is not a valid envelope.
    InvalidInput,
    /// The same client `event_id` came with different content.
    IdempotencyConflict,
    /// The destination failed; a retry may succeed.
    Retryable,
    /// The destination asked to slow down (a 429, a rate limit); the attempt does not count toward `failed`.
    Throttled,
    /// The destination refused the change for good.
    Permanent,
    /// The handler panicked.
    Panic,
    /// Retries ran out.
    AttemptsExhausted,
    /// A missing dependency did not appear within the configured wait.
    DependencyTimeout,
    /// The queue dead-lettered the message before the engine finished with it (e.g. throttled deliveries count
    /// towards `maxReceiveCount`).
    DeadLettered,
}

/// An error recorded on an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorInfo {
    /// Its kind.
    pub kind: ErrorKind,
    /// What happened and what to do.
    pub message: String,
    /// Whether a retry may succeed.
    pub retryable: bool,
    /// The cause chain, outermost first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub causes: Vec<String>,
    /// The field at fault, for invalid input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// One line of an event's timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// The status entered.
    pub status: Status,
    /// When.
    #[serde(with = "super::rfc3339")]
    pub at: DateTime<Utc>,
    /// The attempt number at that moment.
    pub attempt: u32,
    /// The function that made the change, with its version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    /// The invocation's request id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The X-Ray trace id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// Why, in a few words (`canceled by …`, `forced`, `client resubmission`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The oldest entries of a record's history, kept by the store in parts of their own: each part written once and
/// naming the part before it, so that the record names only the newest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryApart {
    /// How many entries, from the first, are kept apart.
    pub entries: u32,
    /// The store's name for the part holding the newest of them.
    pub newest_part: String,
}

/// Everything recorded about one event. A field stored only when set (`skip_serializing_if`) is listed in
/// `LEFT_OUT_WHEN_EMPTY`, so that `synctrail --json show` still prints it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    /// The event's id.
    pub event_id: EventId,
    /// Whether the id came from the client.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub client_event_id: bool,
    /// The entity (absent when the message was too broken to name one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity: Option<EntityKey>,
    /// The order key (absent for rejected messages without one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<OrderKey>,
    /// `upsert`, `delete` or `create`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<Kind>,
    /// `inbound` or `outbound`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<Direction>,
    /// SHA-256 of (`kind`, `payload`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_hash: Option<ContentHash>,
    /// The archived payload (the raw body, for a rejected message).
    pub payload: PayloadRef,
    /// The provider's delivery id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_id: Option<String>,
    /// For a rejected resubmission: the event whose id it reused with other content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conflicts_with: Option<EventId>,
    /// The run or event that caused this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caused_by: Option<String>,
    /// The current status.
    pub status: Status,
    /// `dropped`: the newer event (or record) that made it stale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropped_for: Option<String>,
    /// `duplicate`: the original.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate_of: Option<EventId>,
    /// `canceled`: the newer event that superseded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canceled_by: Option<EventId>,
    /// `waiting`: the dependency's key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_for: Option<String>,
    /// `waiting`: since when (a wait longer than the configured limit ends `failed`).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "super::rfc3339::option")]
    pub waiting_since: Option<DateTime<Utc>>,
    /// Attempts so far (claims of the entity).
    pub attempt: u32,
    /// Where the retry budget counts from: `attempt` when the event was last re-driven, moved on by one for every
    /// throttled attempt since (a throttled attempt does not use up the budget).
    #[serde(default, skip_serializing_if = "super::is_zero")]
    pub attempt_base: u32,
    /// The error of the current status (`errored`, `failed`, `rejected`); cleared on entering any other status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
    /// Applied after an event with the same order key and other content.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tie: bool,
    /// `in_order`: applied although older than the last applied event.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub out_of_order: bool,
    /// Last re-driven with `--force` (ordering skipped).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forced: bool,
    /// `in_order`, `queued`: recorded outside its entity's head because the backlog was full (spec §5), to be
    /// found again by [`EventStore::parked_events`](crate::store::EventStore::parked_events); cleared when the event
    /// leaves `queued`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub parked: bool,
    /// How often the same event arrived again after it was done.
    #[serde(default, skip_serializing_if = "super::is_zero")]
    pub redelivered: u32,
    /// `updated_at` from the external system.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "super::rfc3339::option")]
    pub external_at: Option<DateTime<Utc>>,
    /// When the first message arrived.
    #[serde(with = "super::rfc3339")]
    pub received_at: DateTime<Utc>,
    /// When the last attempt claimed the entity.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "super::rfc3339::option")]
    pub read_started_at: Option<DateTime<Utc>>,
    /// When the last attempt started writing to the destination.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "super::rfc3339::option")]
    pub write_started_at: Option<DateTime<Utc>>,
    /// An attempt claimed the entity and the destination's answer is not known to be definite: set at every claim,
    /// cleared by an answer that says what was written (applied, already applied, superseded, missing dependency,
    /// permanent refusal). The next attempt passes it on as `Change::previous_attempt_unknown`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub write_outcome_unknown: bool,
    /// When it was applied.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "super::rfc3339::option")]
    pub completed_at: Option<DateTime<Utc>>,
    /// An outbound event: what its connector wrote to the external system (spec §10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub written: Option<ExternalWrite>,
    /// When the record last changed.
    #[serde(with = "super::rfc3339")]
    pub updated_at: DateTime<Utc>,
    /// `processing`: until when its claim holds; `errored` after a retry claimed inside its hold (spec §9 "A retry
    /// inside its hold writes the record alone"): until when that hold lasts.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "super::rfc3339::option")]
    pub lease_until: Option<DateTime<Utc>>,
    /// The SQS message id of the last message that carried it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_message_id: Option<String>,
    /// When the metadata may be deleted (TTL).
    #[serde(with = "super::rfc3339")]
    pub expires_at: DateTime<Utc>,
    /// History entries folded away to keep the record bounded.
    #[serde(default, skip_serializing_if = "super::is_zero")]
    pub history_folded: u32,
    /// The oldest history entries, when the store keeps them apart from the record (spec §9 "Old history entries
    /// kept apart"); `history` then holds the newer ones. [`crate::store::EventStore::get_event_with_history`]
    /// reads the whole history back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history_apart: Option<HistoryApart>,
    /// Where the sweeper's verification archived its replay of the entity (in the payload store), written on the
    /// record of the newest event it folded, for the next verification to go on from (spec §9 "A verification goes
    /// on from the last one's replay").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_kept: Option<PayloadRef>,
    /// The timeline, oldest first.
    pub history: Vec<HistoryEntry>,
    /// Compare-and-set version (0 = not stored yet).
    pub version: u64,
}

/// The fields stored only when set (spec §9 "Stored JSON leaves out what is empty"), with the JSON each stands for
/// when left out: [`EventRecord::to_json_spelled_out`] puts them back.
const LEFT_OUT_WHEN_EMPTY: [(&str, Empty); 32] = [
    ("client_event_id", Empty::False),
    ("entity", Empty::Null),
    ("order", Empty::Null),
    ("kind", Empty::Null),
    ("direction", Empty::Null),
    ("content_hash", Empty::Null),
    ("delivery_id", Empty::Null),
    ("conflicts_with", Empty::Null),
    ("caused_by", Empty::Null),
    ("dropped_for", Empty::Null),
    ("duplicate_of", Empty::Null),
    ("canceled_by", Empty::Null),
    ("waiting_for", Empty::Null),
    ("waiting_since", Empty::Null),
    ("attempt_base", Empty::Zero),
    ("error", Empty::Null),
    ("tie", Empty::False),
    ("out_of_order", Empty::False),
    ("forced", Empty::False),
    ("parked", Empty::False),
    ("redelivered", Empty::Zero),
    ("external_at", Empty::Null),
    ("read_started_at", Empty::Null),
    ("write_started_at", Empty::Null),
    ("write_outcome_unknown", Empty::False),
    ("completed_at", Empty::Null),
    ("written", Empty::Null),
    ("lease_until", Empty::Null),
    ("last_message_id", Empty::Null),
    ("history_folded", Empty::Zero),
    ("history_apart", Empty::Null),
    ("replay_kept", Empty::Null),
];

/// What a field left out of stored JSON reads as.
#[derive(Clone, Copy)]
enum Empty {
    Null,
    False,
    Zero,
}

impl EventRecord {
    /// The record as JSON with every field present: those stored only when set are spelled out as `null`, `false`
    /// or `0`. What `synctrail --json show` prints, so that a script finds each field whatever its value.
    pub fn to_json_spelled_out(&self) -> Result<serde_json::Value, serde_json::Error> {
        let mut value = serde_json::to_value(self)?;
        if let Some(fields) = value.as_object_mut() {
            for (name, empty) in LEFT_OUT_WHEN_EMPTY {
                fields.entry(name).or_insert(match empty {
                    Empty::Null => serde_json::Value::Null,
                    Empty::False => serde_json::Value::Bool(false),
                    Empty::Zero => serde_json::Value::from(0),
                });
            }
        }
        Ok(value)
    }

    /// Moves to `entry.status`, checked against the transition table, and appends `entry` to the history. A status
    /// that carries no error ([`Status::carries_error`]) clears `error`; earlier errors stay in the history's notes.
    pub fn transition(&mut self, entry: HistoryEntry) -> Result<(), IllegalTransition> {
        self.status.check(entry.status)?;
        if !entry.status.carries_error() {
            self.error = None;
        }
        if entry.status != Status::Queued {
            self.parked = false;
        }
        self.status = entry.status;
        self.updated_at = entry.at;
        self.push_history(entry);
        Ok(())
    }

    /// Appends to the history, folding the oldest entries (after the first few) beyond [`HISTORY_LIMIT`].
    pub fn push_history(&mut self, entry: HistoryEntry) {
        self.history.push(entry);
        if self.history.len() > HISTORY_LIMIT {
            self.history.remove(HISTORY_KEEP_FIRST);
            self.history_folded += 1;
        }
    }

    /// Attempts that count toward the retry budget: made since the event was last (re-)driven, throttled ones not
    /// counted.
    pub fn attempts_this_drive(&self) -> u32 {
        self.attempt.saturating_sub(self.attempt_base)
    }

    /// The event's pointer to another event or record, whichever its status uses.
    pub fn pointer(&self) -> Option<String> {
        match self.status {
            Status::Dropped => self.dropped_for.clone(),
            Status::Duplicate => self.duplicate_of.as_ref().map(ToString::to_string),
            Status::Canceled => self.canceled_by.as_ref().map(ToString::to_string),
            Status::Waiting => self.waiting_for.clone(),
            Status::Rejected => self.conflicts_with.as_ref().map(ToString::to_string),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    /// A completed record with nothing optional set, as stored now.
    fn stored() -> Value {
        json!({
            "event_id": "ev-1",
            "payload": {"key": "payloads/ev-1.zst", "sha256": "00", "size": 2},
            "status": "completed",
            "attempt": 1,
            "received_at": "2026-12-04T10:00:00Z",
            "updated_at": "2026-12-04T10:00:01Z",
            "expires_at": "2028-01-01T00:00:00Z",
            "history": [{"status": "received", "at": "2026-12-04T10:00:00Z", "attempt": 0}],
            "version": 1
        })
    }

    #[test]
    fn a_record_is_stored_without_its_empty_false_and_zero_fields_and_reads_back_the_same() {
        let record: EventRecord = serde_json::from_value(stored()).expect("a record without them reads");
        assert_eq!(
            (record.entity.as_ref(), record.error.as_ref(), record.tie, record.redelivered),
            (None, None, false, 0)
        );
        assert_eq!(serde_json::to_value(&record).expect("encodes"), stored(), "nothing empty is written");
    }

    #[test]
    fn a_record_written_with_every_field_spelled_out_reads_as_the_same_record() {
        let mut before = stored();
        let spelled = json!({
            "client_event_id": false, "entity": null, "order": null, "kind": null, "direction": null,
            "content_hash": null, "delivery_id": null, "conflicts_with": null, "caused_by": null, "dropped_for": null,
            "duplicate_of": null, "canceled_by": null, "waiting_for": null, "waiting_since": null, "attempt_base": 0,
            "error": null, "tie": false, "out_of_order": false, "forced": false, "parked": false, "redelivered": 0,
            "external_at": null, "read_started_at": null, "write_started_at": null, "write_outcome_unknown": false,
            "completed_at": null, "written": null, "lease_until": null, "last_message_id": null, "history_folded": 0,
            "history_apart": null, "replay_kept": null
        });
        before.as_object_mut().expect("object").extend(spelled.as_object().expect("object").clone());
        let old: EventRecord = serde_json::from_value(before.clone()).expect("the former spelling reads");
        let new: EventRecord = serde_json::from_value(stored()).expect("reads");
        assert_eq!(old, new);
        assert_eq!(new.to_json_spelled_out().expect("encodes"), before, "spelled out, it is the former JSON again");
    }
}
