//! Intake: parsing, rejection and idempotency (spec §1, §3), before the ordering protocol.

use super::archive::ReadAhead;
use super::attempt::KnownHead;
use super::records::invalid_input;
use super::{attempt, Engine, EngineError, Incoming, Invocation, Outcome, Prepared};
use crate::model::{
    canonical_json, EntityHead, EntityKey, Envelope, ErrorInfo, ErrorKind, EventId, EventRecord, Message, PayloadRef,
    RedriveReason, Status,
};
use crate::store::{StoreError, Write};

/// Processes `message`, with what was done ahead for it as part of a batch (see [`Prepared`]).
pub(super) async fn process(
    engine: &Engine,
    message: &Incoming,
    prepared: Prepared,
    invocation: &Invocation,
) -> Result<Outcome, EngineError> {
    let archived = prepared.archived;
    let parsed = prepared.parsed.unwrap_or_else(|| Message::parse(&message.body, engine.settings.max_payload_bytes));
    match parsed {
        Err(error) => {
            let body = Raw { bytes: message.body.as_bytes(), received_as: &message.message_id, archived };
            reject_raw(engine, body, invocation, invalid_input(&error), None).await
        }
        Ok(Message::Envelope(envelope)) => {
            arrive(engine, *envelope, message, (archived, prepared.read), invocation).await
        }
        Ok(Message::Redrive { event_id, entity, reason, force }) => {
            let read = read_redriven(engine, &event_id, entity.as_ref(), prepared.read).await?;
            redrive(engine, &event_id, (reason, force), read, message, invocation).await
        }
    }
}

/// Archives the raw body and records the message as `rejected`, under an id derived from the body (for an
/// idempotency conflict: from its content, spec §3), so a redelivery of the same message lands on the same record.
pub(super) async fn reject(
    engine: &Engine,
    message: &Incoming,
    invocation: &Invocation,
    error: ErrorInfo,
    conflicting: Option<&Envelope>,
) -> Result<Outcome, EngineError> {
    let body = Raw { bytes: message.body.as_bytes(), received_as: &message.message_id, archived: None };
    reject_raw(engine, body, invocation, error, conflicting).await
}

/// Raw bytes to reject, and what they arrived as (a queue message id, or a webhook delivery).
pub(super) struct Raw<'a> {
    /// The body as it arrived.
    pub bytes: &'a [u8],
    /// Kept as the record's `last_message_id`.
    pub received_as: &'a str,
    /// These bytes, archived ahead with their batch; `None`: archived here.
    pub archived: Option<PayloadRef>,
}

/// [`reject`] for any raw bytes: the same id derivation, archive and record.
pub(super) async fn reject_raw(
    engine: &Engine,
    body: Raw<'_>,
    invocation: &Invocation,
    error: ErrorInfo,
    conflicting: Option<&Envelope>,
) -> Result<Outcome, EngineError> {
    let event_id = match conflicting {
        Some(e) => EventId::derived(&e.entity, &e.order, &e.content_hash),
        None => EventId::for_rejected(body.bytes),
    };
    if let Some(existing) = engine.ports.store.get_event(&event_id).await? {
        return redelivered(engine, existing).await;
    }
    let raw = match body.archived {
        Some(archived) => archived,
        None => engine.ports.payloads.put(body.bytes, engine.now()).await?,
    };
    let mut record = engine.rejected_record(event_id.clone(), raw, error, body.received_as, invocation);
    if let Some(envelope) = conflicting {
        record.conflicts_with = Some(envelope.event_id.clone());
        record.entity = Some(envelope.entity.clone());
        record.order = Some(envelope.order);
        record.kind = Some(envelope.kind);
        record.content_hash = Some(envelope.content_hash);
        record.external_at = envelope.updated_at;
        record.delivery_id = envelope.delivery_id.clone();
    }
    // The reason may quote a field's value: it stays in the record (`synctrail show`), never in the logs.
    let error = record.error.as_ref();
    tracing::warn!(
        event_id = %event_id,
        kind = ?error.map(|e| e.kind),
        field = error.and_then(|e| e.field.as_deref()),
        body_bytes = record.payload.size,
        body_sha256 = %record.payload.sha256,
        "message rejected"
    );
    let outcome = Outcome::ack(&event_id, Status::Rejected).about(&record).transitioned();
    match engine.ports.store.commit(vec![Write::event(record)]).await {
        Ok(()) => Ok(outcome),
        Err(StoreError::Conflict(_)) => match engine.ports.store.get_event(&event_id).await? {
            Some(existing) => redelivered(engine, existing).await,
            None => Err(EngineError::Incomplete(event_id, "rejected record vanished after a conflict")),
        },
        Err(e) => Err(e.into()),
    }
}

/// A valid envelope: new events are archived and recorded; known ones continue where they are (spec §3).
/// `ahead`: the canonical payload, archived ahead with its batch (`None`: archived here if the event is new), and
/// the event's record and head, read ahead with its batch (`None`: read here).
async fn arrive(
    engine: &Engine,
    mut envelope: Envelope,
    message: &Incoming,
    ahead: (Option<PayloadRef>, Option<Box<ReadAhead>>),
    invocation: &Invocation,
) -> Result<Outcome, EngineError> {
    let (archived, read) = ahead;
    let (existing, head) = match read {
        Some(read) => *read,
        None => engine.ports.store.get_event_and_head(&envelope.event_id, &envelope.entity).await?,
    };
    let from = existing.as_ref().map(|e| e.status);
    let known = KnownHead::Read(Box::new(head));
    let same_entity = existing.as_ref().is_some_and(|e| e.entity.as_ref() == Some(&envelope.entity));
    if let Some(done) = existing.as_ref().filter(|e| e.status.is_terminal() && same_entity) {
        finish_cut_short_settle(engine, done, &known, invocation).await?;
    }
    let outcome = match existing {
        Some(existing) if existing.content_hash != Some(envelope.content_hash) || !same_entity => {
            reject_conflict(engine, &envelope, message, invocation).await
        }
        Some(existing)
            if existing.status == Status::Failed && existing.last_message_id.as_ref() != Some(&message.message_id) =>
        {
            as_recorded(&mut envelope, &existing);
            let record = restart(engine, existing, message, invocation, "client resubmission")?;
            attempt::drive(engine, &envelope, Box::new(record), known, message, invocation, false).await
        }
        Some(existing) if existing.status.is_terminal() => redelivered(engine, existing).await,
        Some(existing) => {
            as_recorded(&mut envelope, &existing);
            attempt::drive(engine, &envelope, Box::new(existing), known, message, invocation, false).await
        }
        None => {
            let payload = match archived {
                Some(archived) => archived,
                None => engine.ports.payloads.put(canonical_json(&envelope.payload).as_bytes(), engine.now()).await?,
            };
            let record = engine.new_record(&envelope, payload, message, invocation);
            attempt::drive(engine, &envelope, Box::new(record), known, message, invocation, false).await
        }
    }?;
    // A conflicting message is recorded under its own id: `from` is not its status.
    let same_event = outcome.event_id.as_ref() == Some(&envelope.event_id);
    Ok(if same_event { outcome.arrived_from(from) } else { outcome })
}

/// A known event goes on as it was first recorded (spec §3): a resend under its id with another `updated_at`,
/// `version` or direction (a client that stamps `updated_at` when it sends) keeps the event's place in its entity's
/// order, which its record, its head and the destination already hold.
pub(super) fn as_recorded(envelope: &mut Envelope, record: &EventRecord) {
    if let Some(order) = record.order {
        envelope.order = order;
        envelope.updated_at = record.external_at;
    }
    if let Some(direction) = record.direction {
        envelope.direction = direction;
    }
}

/// The same client `event_id` with other content, or for another entity: the new message is `rejected`, the
/// original untouched (§3).
pub(super) async fn reject_conflict(
    engine: &Engine,
    envelope: &Envelope,
    message: &Incoming,
    invocation: &Invocation,
) -> Result<Outcome, EngineError> {
    let error = ErrorInfo {
        kind: ErrorKind::IdempotencyConflict,
        message: format!(
            "event_id {} was already used for different content or another entity; send a new event_id for a new \
             change",
            envelope.event_id
        ),
        retryable: false,
        causes: Vec::new(),
        field: Some("event_id".to_owned()),
    };
    reject(engine, message, invocation, error, Some(envelope)).await
}

/// A re-driven event's record and, when the message names its entity, that entity's head: read ahead with the
/// batch, or here in one request (the record alone for a message naming no entity). A head is used only if the
/// record names its entity: the message's entity is a hint.
async fn read_redriven(
    engine: &Engine,
    event_id: &EventId,
    entity: Option<&EntityKey>,
    ahead: Option<Box<ReadAhead>>,
) -> Result<(Option<Box<EventRecord>>, KnownHead), EngineError> {
    let (record, head) = match (ahead.map(|read| *read), entity) {
        (Some((record, head)), _) => (record, Some(head)),
        (None, Some(entity)) => {
            let (record, head) = engine.ports.store.get_event_and_head(event_id, entity).await?;
            (record, Some(head))
        }
        (None, None) => (engine.ports.store.get_event(event_id).await?, None),
    };
    let of_its_entity = record.as_ref().is_some_and(|r| r.entity.is_some() && r.entity.as_ref() == entity);
    let known = match head {
        Some(head) if of_its_entity => KnownHead::Read(Box::new(head)),
        _ => KnownHead::Unread,
    };
    Ok((record.map(Box::new), known))
}

/// The engine's own re-drive of a stored event (`read`: its record and what is known of its head): its payload is
/// read back and checked.
async fn redrive(
    engine: &Engine,
    event_id: &EventId,
    (reason, force): (RedriveReason, bool),
    (record, known): (Option<Box<EventRecord>>, KnownHead),
    message: &Incoming,
    invocation: &Invocation,
) -> Result<Outcome, EngineError> {
    let Some(record) = record else {
        let error = ErrorInfo {
            kind: ErrorKind::InvalidInput,
            message: format!("re-drive names event {event_id}, which is not recorded (expired or never stored)"),
            retryable: false,
            causes: Vec::new(),
            field: Some("event_id".to_owned()),
        };
        return reject(engine, message, invocation, error, None).await;
    };
    let status = record.status;
    // A re-drive that asks for a run again restarts a done event once: delivered again (SQS keeps the message id,
    // e.g. after its batch ran past the timeout), the message that restarted it finds it done and is acknowledged.
    let restarts = status != Status::Rejected && record.last_message_id.as_ref() != Some(&message.message_id);
    let record = match reason {
        _ if !status.is_terminal() => record,
        RedriveReason::Reprocess if restarts => {
            let note = if force { "reprocess --force" } else { "reprocess" };
            Box::new(restart(engine, *record, message, invocation, note)?)
        }
        RedriveReason::Repair if restarts => {
            if let Some(newer) = applied_since(engine, &record, &known).await? {
                // Forced, the repair would write this event's older state over the newer one.
                let note = format!("repair not run: {newer} was applied since verify sent it");
                engine.note_in_history(event_id, &note, invocation).await?;
                return Ok(Outcome::ack(event_id, status).about(&record).arrived_from(Some(status)));
            }
            Box::new(restart(engine, *record, message, invocation, "repair: verify found the destination differing")?)
        }
        _ => {
            finish_cut_short_settle(engine, &record, &known, invocation).await?;
            let outcome = Outcome { redelivered: true, ..Outcome::ack(event_id, status) }.about(&record);
            return Ok(outcome.arrived_from(Some(status)));
        }
    };
    let bytes = engine.ports.payloads.get(&record.payload).await.map_err(|source| match source {
        // The payload itself can't be used: retrying changes nothing.
        StoreError::NotFound(_) | StoreError::Corrupt(_) | StoreError::Archived(_) => {
            EngineError::Payload { event_id: event_id.clone(), source }
        }
        // The store failed reading it (busy, throttled, down): the message is retried.
        other => EngineError::Store(other),
    })?;
    let payload = serde_json::from_slice(&bytes).map_err(|e| EngineError::Payload {
        event_id: event_id.clone(),
        source: StoreError::Corrupt(format!("archived payload is not JSON: {e}").into()),
    })?;
    let envelope = Envelope::rebuild(&record, payload)
        .ok_or_else(|| EngineError::Incomplete(event_id.clone(), "no entity, order key, kind or content hash"))?;
    let outcome = attempt::drive(engine, &envelope, record, known, message, invocation, force).await?;
    Ok(outcome.arrived_from(Some(status)))
}

/// The event its entity's head names as applied, when that is not `done` (read now when `known` is unread): a
/// repair of `done` sent before it would put an older state back.
async fn applied_since(engine: &Engine, done: &EventRecord, known: &KnownHead) -> Result<Option<EventId>, EngineError> {
    let read;
    let head = match (known, &done.entity) {
        (KnownHead::Read(head), _) => head.as_ref().as_ref(),
        (KnownHead::Unread, Some(entity)) => {
            read = engine.ports.store.get_head(entity).await?;
            read.as_ref()
        }
        (KnownHead::Unread, None) => None,
    };
    let applied = head.and_then(|h| h.applied.as_ref()).map(|slot| &slot.event_id);
    Ok(applied.filter(|id| **id != done.event_id).cloned())
}

/// A done event whose head may still name it in flight: its settle was cut short before the head's write, and is
/// finished here. A head read already that names another event (or none) leaves nothing to finish; an unread one is
/// read by the finish.
async fn finish_cut_short_settle(
    engine: &Engine,
    done: &EventRecord,
    known: &KnownHead,
    invocation: &Invocation,
) -> Result<(), EngineError> {
    let holder = match known {
        KnownHead::Unread => None,
        KnownHead::Read(head) => {
            let names_it = |h: &&EntityHead| h.inflight.as_ref().is_some_and(|i| i.slot.event_id == done.event_id);
            match head.as_ref().as_ref().filter(names_it) {
                Some(holder) => Some(holder.clone()),
                None => return Ok(()),
            }
        }
    };
    engine.finish_settle(done, holder, invocation).await?;
    Ok(())
}

/// A terminal event driven again by `message`: back to `received`, with a fresh retry budget and no stale pointers.
fn restart(
    engine: &Engine,
    record: EventRecord,
    message: &Incoming,
    invocation: &Invocation,
    note: &str,
) -> Result<EventRecord, EngineError> {
    let mut record = restarted(engine, record, invocation, note)?;
    record.last_message_id = Some(message.message_id.clone());
    Ok(record)
}

/// A terminal event back at `received`, with a fresh retry budget and no stale pointers. A completed event was
/// written: its next attempt is told to look before writing again (`previous_attempt_unknown`), so a destination
/// without a record of event ids (an external API) does not write it twice.
pub(super) fn restarted(
    engine: &Engine,
    mut record: EventRecord,
    invocation: &Invocation,
    note: &str,
) -> Result<EventRecord, EngineError> {
    record.write_outcome_unknown |= record.status == Status::Completed;
    record.transition(engine.entry(Status::Received, record.attempt, invocation, Some(note.to_owned())))?;
    record.attempt_base = record.attempt;
    record.dropped_for = None;
    record.duplicate_of = None;
    record.canceled_by = None;
    record.completed_at = None;
    record.written = None;
    record.waiting_for = None;
    record.waiting_since = None;
    Ok(record)
}

/// The same event again, after it was done: no effect, counted.
pub(super) async fn redelivered(engine: &Engine, mut record: EventRecord) -> Result<Outcome, EngineError> {
    let event_id = record.event_id.clone();
    let status = record.status;
    record.redelivered += 1;
    let outcome = Outcome { redelivered: true, ..Outcome::ack(&event_id, status) }.about(&record);
    match engine.ports.store.commit(vec![Write::event(record)]).await {
        Ok(()) | Err(StoreError::Conflict(_)) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(outcome)
}
