//! Dead letters of events already done: moved back they would change nothing, so a pass removes them from the
//! dead-letter queue (which the DLQ alarm watches) and notes it in the event's history, once per event and pass.

use super::{Carried, Engine, EngineError, Invocation, Letter, Pass};
use crate::model::{EventId, EventRecord, RedriveReason, Status};
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

/// The dead letters of one event removed in one pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Discarded {
    /// The event.
    pub event_id: EventId,
    /// Its status, which made them redundant.
    pub status: Status,
    /// How many messages were removed.
    pub messages: usize,
}

/// The status that makes `letter` redundant, if it is: its event is done (terminal, and not `failed`, which a
/// re-drive retries) and the message, moved back, would be acknowledged with no effect (spec §3). Not redundant:
/// other content, or another entity, under a recorded client event id (it would be recorded as a conflict), and an operator's
/// reprocess request the event has not started over for since it was sent (it would run it again).
pub(super) fn redundant(letter: &Letter, clock_margin: Duration) -> Option<Status> {
    let record = letter.record.as_ref()?;
    let status = record.status;
    if !status.is_terminal() || status == Status::Failed {
        return None;
    }
    let redundant = match &letter.carried {
        Carried::Envelope(_) => !letter.carries_another_change(),
        Carried::Redrive(RedriveReason::Promotion) | Carried::NoEnvelope(_) => true,
        Carried::Redrive(RedriveReason::Reprocess | RedriveReason::Repair) => {
            status == Status::Rejected || started_over_since(record, letter.message.sent_at - clock_margin)
        }
    };
    redundant.then_some(status)
}

/// The event went back to `received` (a reprocess ran) at or after `since`: an entry `received` after the first
/// (read whole, `history_apart` is `None`; were it not, the first entry held would not be the first).
fn started_over_since(record: &EventRecord, since: DateTime<Utc>) -> bool {
    let first = usize::from(record.history_apart.is_none());
    record.history.iter().skip(first).any(|entry| entry.status == Status::Received && entry.at >= since)
}

/// The history note for `messages` dead letters discarded because the event was `status`.
pub(super) fn note(status: Status, messages: usize) -> String {
    match messages {
        1 => format!("dead letter discarded: event already {status}"),
        n => format!("{n} dead letters discarded: event already {status}"),
    }
}

impl Engine {
    /// Notes each event whose dead letters the pass found redundant, then removes those dead letters.
    pub(super) async fn discard_redundant(&self, pass: &mut Pass, invocation: &Invocation) -> Result<(), EngineError> {
        let mut message_ids = Vec::new();
        for (event_id, (status, ids)) in std::mem::take(&mut pass.redundant) {
            self.note_in_history(&event_id, &note(status, ids.len()), invocation).await?;
            pass.discarded.push(Discarded { event_id, status, messages: ids.len() });
            message_ids.extend(ids);
        }
        let handles: Vec<String> = message_ids.iter().filter_map(|id| pass.held.get(id).cloned()).collect();
        self.ports.queue.delete_dead_letters(&handles).await?;
        for id in &message_ids {
            pass.held.remove(id);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{HistoryApart, HistoryEntry};

    fn entry(status: Status, seconds: i64) -> HistoryEntry {
        let at = DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap_or_default();
        HistoryEntry { status, at, attempt: 0, function: None, request_id: None, trace_id: None, note: None }
    }

    fn record(history: Vec<HistoryEntry>) -> EventRecord {
        let mut record: EventRecord = serde_json::from_value(serde_json::json!({
            "event_id": "ev-1", "payload": {"key": "k", "sha256": "00", "size": 1}, "status": "completed",
            "attempt": 1, "received_at": "2027-01-15T08:00:00Z", "updated_at": "2027-01-15T08:00:00Z",
            "expires_at": "2027-02-15T08:00:00Z", "history": [], "version": 3
        }))
        .expect("record");
        record.history = history;
        record
    }

    #[test]
    fn the_first_received_entry_is_the_arrival_and_a_later_one_a_start_over() {
        let since = entry(Status::Received, 10).at;
        let arrived = record(vec![entry(Status::Received, 20), entry(Status::Completed, 21)]);
        assert!(!started_over_since(&arrived, since), "arriving is not starting over");
        let reprocessed = record(vec![
            entry(Status::Received, 0),
            entry(Status::Completed, 1),
            entry(Status::Received, 20),
            entry(Status::Completed, 21),
        ]);
        assert!(started_over_since(&reprocessed, since));
        assert!(!started_over_since(&reprocessed, entry(Status::Received, 30).at), "not since then");
    }

    #[test]
    fn with_its_oldest_entries_kept_apart_the_first_entry_held_may_be_a_start_over() {
        let mut newest = record(vec![entry(Status::Received, 20), entry(Status::Completed, 21)]);
        newest.history_apart = Some(HistoryApart { entries: 6, newest_part: "000000-00".into() });
        assert!(started_over_since(&newest, entry(Status::Received, 10).at));
    }
}
