//! The sweeper's pass: records what only the dead-letter queue knows, so `status(event_id)` can tell.

use super::discard::Discarded;
use super::{Carried, Engine, EngineError, Invocation, Letter, Purpose};
use crate::engine::intake::reject;
use crate::engine::records::invalid_input;
use crate::engine::Incoming;
use crate::model::{canonical_json, ErrorInfo, ErrorKind, EventId, EventRecord, Status};
use crate::store::{StoreError, Write};
use serde::Serialize;

/// What the sweeper's pass over the dead-letter queue did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DeadLettersSwept {
    /// Events found only in the dead-letter queue (never recorded, or never decided), now recorded `failed` (or
    /// `rejected`).
    pub recorded: Vec<EventId>,
    /// Dead letters removed because their event is already done, by event.
    pub discarded: Vec<Discarded>,
    /// The invocation's deadline came near and the pass stopped before it had looked at `max` letters.
    pub out_of_time: bool,
}

impl Engine {
    /// Looks at up to `max` dead letters (the sweeper calls this): removes those whose event is already done
    /// (noted in its history); records a message the engine never recorded (the queue dead-lettered it before a
    /// handler ran, e.g. after throttled deliveries) with its payload archived, `failed` (or `rejected` for a body
    /// that is no envelope); an event still `received` (never decided) becomes `failed`. The other messages stay
    /// in the dead-letter queue, visible.
    pub async fn record_dead_letters(
        &self,
        max: usize,
        invocation: &Invocation,
    ) -> Result<DeadLettersSwept, EngineError> {
        let pass = self.dead_letter_pass(max, Purpose::Record, invocation).await?;
        Ok(DeadLettersSwept { recorded: pass.recorded, discarded: pass.discarded, out_of_time: pass.out_of_time })
    }

    /// Records one dead letter's event if the engine does not know it yet, or fails it if never decided; returns
    /// it if so.
    pub(super) async fn record_dead_letter(
        &self,
        letter: Letter,
        invocation: &Invocation,
    ) -> Result<Option<EventId>, EngineError> {
        if letter.carries_another_change() {
            // Another change under a recorded client id: it stays for an operator, whose move back records it as
            // a conflict; the event it names is not its to fail.
            return Ok(None);
        }
        let message = &letter.message;
        let incoming = Incoming {
            message_id: message.message_id.clone(),
            body: message.body.clone(),
            receive_count: message.receive_count,
            trace_header: message.trace_header.clone(),
        };
        let envelope = match letter.carried {
            Carried::Envelope(envelope) => *envelope,
            Carried::Redrive(_) => return Ok(None),
            Carried::NoEnvelope(_) if letter.record.is_some() => return Ok(None),
            Carried::NoEnvelope(error) => {
                reject(self, &incoming, invocation, invalid_input(&error), None).await?;
                return Ok(Some(letter.event_id));
            }
        };
        let mut record = letter.record;
        for _ in 0..self.settings.max_rounds {
            let received = match record {
                Some(r) if r.status == Status::Received => r,
                Some(_) => return Ok(None),
                None => {
                    let bytes = canonical_json(&envelope.payload);
                    let payload = self.ports.payloads.put(bytes.as_bytes(), self.now()).await?;
                    self.new_record(&envelope, payload, &incoming, invocation)
                }
            };
            match self.ports.store.commit(vec![Write::event(dead_lettered(self, received, invocation)?)]).await {
                Ok(()) => return Ok(Some(envelope.event_id)),
                Err(StoreError::Conflict(_)) => record = self.ports.store.get_event(&envelope.event_id).await?,
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
            "its message reached the dead-letter queue before the event was processed: the queue gave up (throttled \
             or busy deliveries count towards maxReceiveCount), or the processor could not process it for good (its \
             log says why, at the time the message was dead-lettered); move it back with `synctrail dead-letters \
             --redrive` or `synctrail reprocess {}`",
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
