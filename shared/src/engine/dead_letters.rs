//! Moving dead letters back to the queue after marking their events for retry (spec §7 bulk re-drive).
//!
//! Each dead letter is looked at: a `failed` event goes back to `received` (so the returning message continues it,
//! whatever its message id); an event never recorded (dead-lettered before the engine saw it, e.g. by throttled
//! deliveries) is recorded when the message arrives; anything else continues or is acknowledged as usual. Then the
//! message is sent back and removed from the dead-letter queue. A crash in between leaves at worst a copy in both
//! queues, which idempotency absorbs.

use super::intake::{reject, restarted};
use super::records::invalid_input;
use super::{Engine, EngineError, Incoming, Invocation};
use crate::model::{canonical_json, ErrorInfo, ErrorKind, EventId, EventRecord, Message, Status};
use crate::store::{QueueMessage, StoreError, Write};
use chrono::Duration;
use serde::Serialize;

/// Dead letters are hidden this long while being looked at.
const LOOK_VISIBILITY: Duration = Duration::seconds(60);
/// Dead letters are hidden this briefly while the sweeper records them (they stay where they are).
const RECORD_VISIBILITY: Duration = Duration::seconds(5);
/// Messages received per round.
const ROUND: usize = 10;

/// One dead letter and what was done about its event.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    /// The message's id in the dead-letter queue.
    pub message_id: String,
    /// The event it carries (for a body that is no envelope: the id a rejection would be stored under).
    pub event_id: EventId,
    /// The event's status when looked at (`None`: not recorded).
    pub status: Option<Status>,
    /// What happens to it.
    pub action: &'static str,
}

/// What a dead-letter re-drive found and did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DeadLetterReport {
    /// Nothing was changed or moved.
    pub dry_run: bool,
    /// Messages moved back to the queue (with `dry_run`: that would be).
    pub moved: usize,
    /// Each dead letter looked at.
    pub letters: Vec<DeadLetter>,
}

impl Engine {
    /// Looks at up to `max` dead letters, marks their events for retry and moves them back to the queue. With
    /// `dry_run` only lists them (they stay hidden in the dead-letter queue for a minute).
    pub async fn redrive_dead_letters(
        &self,
        max: usize,
        dry_run: bool,
        invocation: &Invocation,
    ) -> Result<DeadLetterReport, EngineError> {
        let mut report = DeadLetterReport { dry_run, ..DeadLetterReport::default() };
        while report.letters.len() < max {
            let want = (max - report.letters.len()).min(ROUND);
            let batch = self.ports.queue.receive_dead_letters(want, LOOK_VISIBILITY).await?;
            if batch.is_empty() {
                break;
            }
            for message in &batch {
                let event_id = match Message::parse(&message.body, self.settings.max_payload_bytes) {
                    Ok(Message::Envelope(envelope)) => envelope.event_id,
                    Ok(Message::Redrive { event_id, .. }) => event_id,
                    Err(_) => EventId::for_rejected(message.body.as_bytes()),
                };
                let letter = self.mark_for_retry(&message.message_id, event_id, dry_run, invocation).await?;
                report.letters.push(letter);
            }
            if !dry_run {
                self.ports.queue.return_dead_letters(&batch).await?;
                report.moved += batch.len();
            }
        }
        if dry_run {
            report.moved = report.letters.len();
        }
        Ok(report)
    }

    async fn mark_for_retry(
        &self,
        message_id: &str,
        event_id: EventId,
        dry_run: bool,
        invocation: &Invocation,
    ) -> Result<DeadLetter, EngineError> {
        for _ in 0..self.settings.max_rounds {
            let record = self.ports.store.get_event(&event_id).await?;
            let status = record.as_ref().map(|r| r.status);
            let action = match status {
                None => "not recorded yet: recorded and processed when it arrives",
                Some(Status::Failed) => "failed: marked for retry, processed again when it arrives",
                Some(s) if s.is_terminal() => "already done: acknowledged with no effect when it arrives",
                Some(_) => "in progress: continues when it arrives",
            };
            let letter = DeadLetter { message_id: message_id.to_owned(), event_id: event_id.clone(), status, action };
            let Some(record) = record.filter(|r| r.status == Status::Failed && !dry_run) else {
                return Ok(letter);
            };
            let record = restarted(self, record, invocation, "moved back from the dead-letter queue")?;
            match self.ports.store.commit(vec![Write::event(record)]).await {
                Ok(()) => return Ok(letter),
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(EngineError::Contended(event_id.to_string(), self.settings.max_rounds))
    }
}

impl Engine {
    /// Records what the dead-letter queue holds, so `status(event_id)` can tell (the sweeper calls this): a message
    /// the engine never recorded (the queue dead-lettered it before a handler ran, e.g. after throttled
    /// deliveries) gets its payload archived and a record, `failed` (or `rejected` for a body that is no envelope);
    /// an event still `received` (never decided) becomes `failed`. The messages stay in the dead-letter queue.
    /// Returns the events recorded or failed now.
    pub async fn record_dead_letters(&self, max: usize, invocation: &Invocation) -> Result<Vec<EventId>, EngineError> {
        let mut recorded = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        while seen.len() < max {
            let batch = self.ports.queue.receive_dead_letters((max - seen.len()).min(ROUND), RECORD_VISIBILITY).await?;
            let fresh: Vec<&QueueMessage> = batch.iter().filter(|m| seen.insert(m.message_id.clone())).collect();
            if fresh.is_empty() {
                break;
            }
            for message in fresh {
                if let Some(event_id) = self.record_dead_letter(message, invocation).await? {
                    recorded.push(event_id);
                }
            }
        }
        Ok(recorded)
    }

    async fn record_dead_letter(
        &self,
        message: &QueueMessage,
        invocation: &Invocation,
    ) -> Result<Option<EventId>, EngineError> {
        let incoming = Incoming {
            message_id: message.message_id.clone(),
            body: message.body.clone(),
            receive_count: message.receive_count,
            trace_header: message.trace_header.clone(),
        };
        let envelope = match Message::parse(&message.body, self.settings.max_payload_bytes) {
            Ok(Message::Envelope(envelope)) => *envelope,
            Ok(Message::Redrive { .. }) => return Ok(None),
            Err(error) => {
                let id = EventId::for_rejected(message.body.as_bytes());
                if self.ports.store.get_event(&id).await?.is_some() {
                    return Ok(None);
                }
                reject(self, &incoming, invocation, invalid_input(&error), None).await?;
                return Ok(Some(id));
            }
        };
        for _ in 0..self.settings.max_rounds {
            let record = match self.ports.store.get_event(&envelope.event_id).await? {
                Some(r) if r.status == Status::Received => r,
                Some(_) => return Ok(None),
                None => {
                    let bytes = canonical_json(&envelope.payload);
                    let payload = self.ports.payloads.put(bytes.as_bytes(), self.now()).await?;
                    self.new_record(&envelope, payload, &incoming, invocation)
                }
            };
            match self.ports.store.commit(vec![Write::event(dead_lettered(self, record, invocation)?)]).await {
                Ok(()) => return Ok(Some(envelope.event_id)),
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(EngineError::Contended(envelope.event_id.to_string(), self.settings.max_rounds))
    }
}

/// A `received` event whose message is in the dead-letter queue: `failed`, saying so and what to do.
fn dead_lettered(
    engine: &Engine,
    mut record: EventRecord,
    invocation: &Invocation,
) -> Result<EventRecord, EngineError> {
    let error = ErrorInfo {
        kind: ErrorKind::DeadLettered,
        message: format!(
            "the queue dead-lettered its message before it was processed (throttled or busy deliveries count towards \
             maxReceiveCount); move it back with `synctrail dead-letters --redrive` or `synctrail reprocess {}`",
            record.event_id
        ),
        retryable: false,
        causes: Vec::new(),
        field: None,
    };
    let note = Some("found in the dead-letter queue".to_owned());
    record.error = Some(error);
    record.transition(engine.entry(Status::Failed, record.attempt, invocation, note))?;
    Ok(record)
}
