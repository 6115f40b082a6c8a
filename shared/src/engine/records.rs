//! Building event records and history entries.

use super::{Engine, EngineError, Incoming, Invocation};
use crate::model::{
    Envelope, EnvelopeError, ErrorInfo, ErrorKind, EventId, EventRecord, HistoryEntry, PayloadRef, Status,
};
use crate::store::{StoreError, Write};
use chrono::{DateTime, Utc};

impl Engine {
    /// A history entry for `status`, stamped with the invocation.
    pub(crate) fn entry(
        &self,
        status: Status,
        attempt: u32,
        invocation: &Invocation,
        note: Option<String>,
    ) -> HistoryEntry {
        HistoryEntry {
            status,
            at: self.now(),
            attempt,
            function: invocation.function.clone(),
            request_id: invocation.request_id.clone(),
            trace_id: invocation.trace_id.clone(),
            note,
        }
    }

    /// Appends `note` to the event's history, its status unchanged (an event no longer recorded: nothing to do).
    pub(crate) async fn note_in_history(
        &self,
        event_id: &EventId,
        note: &str,
        invocation: &Invocation,
    ) -> Result<(), EngineError> {
        for _ in 0..self.settings.max_rounds {
            let Some(mut record) = self.ports.store.get_event(event_id).await? else { return Ok(()) };
            let entry = self.entry(record.status, record.attempt, invocation, Some(note.to_owned()));
            record.updated_at = entry.at;
            record.push_history(entry);
            match self.ports.store.commit(vec![Write::event(record)]).await {
                Ok(()) => return Ok(()),
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(EngineError::Contended(event_id.to_string(), self.settings.max_rounds))
    }

    /// The record of a valid envelope that just arrived: `received`, not stored yet.
    pub(crate) fn new_record(
        &self,
        envelope: &Envelope,
        payload: PayloadRef,
        message: &Incoming,
        invocation: &Invocation,
    ) -> EventRecord {
        let now = self.now();
        let mut record = blank_record(envelope.event_id.clone(), payload, now, self.settings.metadata_retention);
        record.client_event_id = envelope.client_event_id;
        record.entity = Some(envelope.entity.clone());
        record.order = Some(envelope.order);
        record.kind = Some(envelope.kind);
        record.direction = Some(envelope.direction);
        record.content_hash = Some(envelope.content_hash);
        record.delivery_id = envelope.delivery_id.clone();
        record.caused_by = envelope.caused_by.clone();
        record.external_at = envelope.updated_at;
        record.last_message_id = Some(message.message_id.clone());
        record.push_history(self.entry(Status::Received, 0, invocation, None));
        record
    }

    /// The record of a message (or webhook body) that is not a valid envelope: `rejected` with the reason;
    /// `received_as` is its queue message id, or what else it arrived as.
    pub(crate) fn rejected_record(
        &self,
        event_id: EventId,
        raw_body: PayloadRef,
        error: ErrorInfo,
        received_as: &str,
        invocation: &Invocation,
    ) -> EventRecord {
        let now = self.now();
        let mut record = blank_record(event_id, raw_body, now, self.settings.metadata_retention);
        record.last_message_id = Some(received_as.to_owned());
        let note = Some(error.message.clone());
        record.error = Some(error);
        record.push_history(self.entry(Status::Received, 0, invocation, None));
        record.status = Status::Rejected;
        record.push_history(self.entry(Status::Rejected, 0, invocation, note));
        record
    }
}

/// The recorded error of a message that is not a valid envelope.
pub(crate) fn invalid_input(error: &EnvelopeError) -> ErrorInfo {
    ErrorInfo {
        kind: ErrorKind::InvalidInput,
        message: error.to_string(),
        retryable: false,
        causes: Vec::new(),
        field: error.field().map(str::to_owned),
    }
}

fn blank_record(
    event_id: EventId,
    payload: PayloadRef,
    now: DateTime<Utc>,
    retention: chrono::Duration,
) -> EventRecord {
    EventRecord {
        event_id,
        client_event_id: false,
        entity: None,
        order: None,
        kind: None,
        direction: None,
        content_hash: None,
        payload,
        delivery_id: None,
        conflicts_with: None,
        caused_by: None,
        status: Status::Received,
        dropped_for: None,
        duplicate_of: None,
        canceled_by: None,
        waiting_for: None,
        waiting_since: None,
        attempt: 0,
        attempt_base: 0,
        error: None,
        tie: false,
        out_of_order: false,
        forced: false,
        parked: false,
        redelivered: 0,
        external_at: None,
        received_at: now,
        read_started_at: None,
        write_started_at: None,
        write_outcome_unknown: false,
        completed_at: None,
        written: None,
        updated_at: now,
        lease_until: None,
        last_message_id: None,
        expires_at: now + retention,
        history_folded: 0,
        history_apart: None,
        replay_kept: None,
        history: Vec::new(),
        version: 0,
    }
}
