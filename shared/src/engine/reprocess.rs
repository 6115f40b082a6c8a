//! Reprocess (spec §7): check stored events, then send re-drive messages for them to the ingest queue, one event or
//! thousands, rate-limited. The processor rebuilds each envelope from the archive and passes it through the ordering
//! protocol again (or skips it with `force`, recorded as forced); no second event record is ever created.

use super::routing::by_queue;
use super::Engine;
use crate::model::{EntityKey, Envelope, EventId, EventRecord, Message, RedriveReason, Status};
use crate::store::{EventQuery, OutgoingMessage, StoreError};
use serde::Serialize;
use std::collections::BTreeSet;

/// SQS takes at most this many messages per send.
const SEND_BATCH: usize = 10;

/// Why an event can't be re-driven; nothing was sent for it.
#[derive(Debug, thiserror::Error)]
pub enum ReprocessError {
    /// No such record.
    #[error("event {0} is not recorded (never stored, or expired by its TTL); check the id")]
    NotFound(EventId),
    /// A rejected message has no valid envelope.
    #[error(
        "event {0} was rejected as invalid input and has no envelope to re-drive; fix the input and send it again"
    )]
    Rejected(EventId),
    /// The archived payload is missing, corrupt or archived to cold storage.
    #[error("event {event_id}: its archived payload can't be used: {source}")]
    Payload {
        /// The event.
        event_id: EventId,
        /// What the payload store said.
        source: StoreError,
    },
    /// The record lacks what the envelope is rebuilt from.
    #[error("event {0}: its record has no {1}, so its envelope can't be rebuilt")]
    Incomplete(EventId, &'static str),
    /// Reading the record failed.
    #[error("reading event {0}: {1}")]
    Store(EventId, StoreError),
    /// Sending the re-drive message failed.
    #[error("sending the re-drive of event {0}: {1}; run the reprocess again for it")]
    Send(EventId, StoreError),
}

/// How to re-drive.
#[derive(Debug, Clone, Default)]
pub struct ReprocessOptions {
    /// Skip the ordering rules (recorded as forced in the history).
    pub force: bool,
    /// Check and list only; send nothing.
    pub dry_run: bool,
    /// At most this many messages per second (`None`: as fast as the queue takes them).
    pub rate_per_second: Option<f64>,
    /// The X-Ray trace header the messages carry.
    pub trace_header: Option<String>,
}

/// One event checked for a re-drive.
#[derive(Debug, Clone, Serialize)]
pub struct Checked {
    /// The event.
    pub event_id: EventId,
    /// Its status before the re-drive.
    pub status: Status,
    /// Its entity.
    pub entity_key: String,
    /// The queue its re-drive goes to, when not the one queue: the queue of the processor recorded on the event
    /// (`Settings::redrive_queues`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
}

impl Checked {
    /// The body of this event's reprocess re-drive, naming its entity (`force`: past the ordering rules).
    pub fn redrive_body(&self, force: bool) -> String {
        let entity = EntityKey::parse(&self.entity_key).ok();
        Message::redrive_body(&self.event_id, entity.as_ref(), RedriveReason::Reprocess, force)
    }
}

/// An event that was not re-driven, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Refusal {
    /// The event.
    pub event_id: EventId,
    /// Why, and what to do.
    pub reason: String,
    /// The event is not recorded (a wrong id, or expired): nothing to re-drive, as opposed to a re-drive that failed.
    pub not_recorded: bool,
}

/// What a reprocess did (or, with `dry_run`, would do).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReprocessReport {
    /// Nothing was sent.
    pub dry_run: bool,
    /// Ordering was skipped.
    pub force: bool,
    /// Events asked for.
    pub selected: usize,
    /// Events whose re-drive was sent (with `dry_run`: would be sent), in sending order.
    pub sent: Vec<Checked>,
    /// Events not re-driven.
    pub refused: Vec<Refusal>,
}

impl Engine {
    /// Checks that `event_id` can be re-driven: recorded, not rejected, its payload present with the recorded
    /// SHA-256, and its envelope rebuildable from record and payload.
    pub async fn check_reprocess(&self, event_id: &EventId) -> Result<(EventRecord, Envelope), ReprocessError> {
        let record = self
            .ports
            .store
            .get_event(event_id)
            .await
            .map_err(|e| ReprocessError::Store(event_id.clone(), e))?
            .ok_or_else(|| ReprocessError::NotFound(event_id.clone()))?;
        if record.status == Status::Rejected || record.entity.is_none() {
            return Err(ReprocessError::Rejected(event_id.clone()));
        }
        let payload_error = |source| ReprocessError::Payload { event_id: event_id.clone(), source };
        let bytes = self.ports.payloads.get(&record.payload).await.map_err(payload_error)?;
        let payload = serde_json::from_slice(&bytes)
            .map_err(|e| payload_error(StoreError::Corrupt(format!("the archived payload is not JSON: {e}").into())))?;
        let envelope = Envelope::rebuild(&record, payload)
            .ok_or_else(|| ReprocessError::Incomplete(event_id.clone(), "entity, order key, kind or content hash"))?;
        Ok((record, envelope))
    }

    /// The ids of the events `query` selects, each entity's in order-key order (oldest first), so a re-drive
    /// reaches the queue in the order the events happened.
    pub async fn select_for_reprocess(&self, query: &EventQuery) -> Result<Vec<EventId>, StoreError> {
        let mut records = self.ports.store.list_events(query).await?;
        // A listing by status may lag the records (DynamoDB's index): an event that has left the status since is not
        // selected for it.
        records.retain(|r| query.status.is_none_or(|status| r.status == status));
        records.sort_by(|a, b| {
            let key = |r: &EventRecord| (r.entity.as_ref().map(ToString::to_string), r.order, r.received_at);
            key(a).cmp(&key(b))
        });
        Ok(records.into_iter().map(|r| r.event_id).collect())
    }

    /// Checks each event and sends a re-drive message for those that pass, in the given order, at most
    /// `options.rate_per_second`; `progress` is told how many were handled so far.
    pub async fn reprocess(
        &self,
        event_ids: &[EventId],
        options: &ReprocessOptions,
        progress: &mut (dyn FnMut(usize) + Send),
    ) -> ReprocessReport {
        let mut seen = BTreeSet::new();
        let unique: Vec<&EventId> = event_ids.iter().filter(|id| seen.insert(*id)).collect();
        let mut report = ReprocessReport {
            dry_run: options.dry_run,
            force: options.force,
            selected: unique.len(),
            ..ReprocessReport::default()
        };
        let batch_size = options.rate_per_second.map_or(SEND_BATCH, |r| (r.floor() as usize).clamp(1, SEND_BATCH));
        let mut done = 0;
        for chunk in unique.chunks(batch_size) {
            let started = std::time::Instant::now();
            let mut batch = Vec::new();
            for id in chunk {
                match self.check_reprocess(id).await {
                    Ok((record, envelope)) => batch.push(Checked {
                        queue: self.settings.redrive_queue_for(&record).map(str::to_owned),
                        event_id: record.event_id,
                        status: record.status,
                        entity_key: envelope.entity.to_string(),
                    }),
                    Err(e) => report.refused.push(Refusal {
                        event_id: (*id).clone(),
                        reason: e.to_string(),
                        not_recorded: matches!(e, ReprocessError::NotFound(_)),
                    }),
                }
            }
            if !options.dry_run {
                batch = self.send_redrives(batch, options, &mut report.refused).await;
            }
            report.sent.extend(batch);
            done += chunk.len();
            progress(done);
            if let Some(rate) = options.rate_per_second.filter(|r| *r > 0.0 && !options.dry_run) {
                let due = super::pacing::time_to_send(chunk.len(), rate);
                if let Some(rest) = due.checked_sub(started.elapsed()) {
                    tokio::time::sleep(rest).await;
                }
            }
        }
        report
    }

    /// Sends the re-drives of `batch`, each to its queue; returns those sent and adds the others to `refused`.
    async fn send_redrives(
        &self,
        batch: Vec<Checked>,
        options: &ReprocessOptions,
        refused: &mut Vec<Refusal>,
    ) -> Vec<Checked> {
        let mut sent = Vec::new();
        for (queue, group) in by_queue(batch, |checked| checked.queue.as_deref()) {
            let messages = group.iter().map(|c| self.reprocess_message(c, options)).collect();
            match self.send_routed(queue.as_deref(), messages).await {
                Ok(_) => sent.extend(group),
                Err(e) => refused.extend(group.into_iter().map(|c| Refusal {
                    reason: ReprocessError::Send(c.event_id.clone(), e.clone()).to_string(),
                    event_id: c.event_id,
                    not_recorded: false,
                })),
            }
        }
        sent
    }

    fn reprocess_message(&self, checked: &Checked, options: &ReprocessOptions) -> OutgoingMessage {
        let mut message = OutgoingMessage::new(checked.redrive_body(options.force));
        message.trace_header = options.trace_header.clone();
        message
    }
}
