//! The dead-letter queue, looked at in passes: by an operator (list, or move back after marking each event for
//! retry, spec §7 bulk re-drive) and by the sweeper (record what only the dead-letter queue knows).
//!
//! A pass receives up to `max` dead letters in rounds, hiding them while it looks (a message seen again is looked
//! at once). Every pass removes the dead letters whose event is already done ([`discard`]) with a note in the
//! event's history; the others are listed, moved back or recorded, and whatever the pass did not move or remove is
//! made visible again when it ends, so looking at the dead-letter queue never keeps a re-drive from taking it.

mod discard;
mod record;
mod redrive;

pub use discard::Discarded;
pub use record::DeadLettersSwept;
pub use redrive::{DeadLetter, DeadLetterReport};

use super::routing::by_queue;
use super::{Engine, EngineError, Invocation};
use crate::model::{Envelope, EnvelopeError, EventId, EventRecord, Message, RedriveReason, Status};
use crate::store::{OutgoingMessage, QueueMessage};
use chrono::Duration;
use std::collections::{BTreeMap, HashMap, HashSet};

/// Dead letters are hidden this long while a pass looks at them (it releases them when it ends; this bounds how
/// long a pass that died keeps them hidden).
const PASS_VISIBILITY: Duration = Duration::seconds(60);
/// Messages received per round.
const ROUND: usize = 10;

/// What a dead letter carries.
enum Carried {
    /// A client's envelope.
    Envelope(Box<Envelope>),
    /// The engine's or an operator's re-drive of a stored event.
    Redrive(RedriveReason),
    /// A body that is no valid message, and why (stored as `rejected` under an id derived from the body).
    NoEnvelope(EnvelopeError),
}

/// One dead letter as a pass sees it.
struct Letter {
    message: QueueMessage,
    carried: Carried,
    /// The event it carries (for a body that is no valid message: the id a rejection is stored under).
    event_id: EventId,
    /// The event's record when looked at.
    record: Option<EventRecord>,
}

impl Letter {
    fn status(&self) -> Option<Status> {
        self.record.as_ref().map(|r| r.status)
    }

    /// Whether it carries another change than its event's record holds (other content, or another entity, under
    /// the same client `event_id`): intake records such a message as a conflict, and it says nothing about the
    /// event, which must be neither discarded for, restarted nor failed by it (spec §3).
    fn carries_another_change(&self) -> bool {
        match (&self.carried, &self.record) {
            (Carried::Envelope(envelope), Some(record)) => {
                record.content_hash != Some(envelope.content_hash) || record.entity.as_ref() != Some(&envelope.entity)
            }
            _ => false,
        }
    }
}

/// What a pass does with the dead letters it does not discard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    /// Lists them; they stay.
    List,
    /// Marks their events for retry and moves them back to the queue.
    Redrive,
    /// Records what only they know (the sweeper); they stay.
    Record,
}

/// What one pass found and did.
#[derive(Default)]
struct Pass {
    /// Message ids looked at.
    seen: HashSet<String>,
    /// Message id → receipt handle of its latest receive, for each dead letter this pass still hides.
    held: HashMap<String, String>,
    /// Dead letters of events already done, by event: the status seen and their message ids.
    redundant: BTreeMap<EventId, (Status, Vec<String>)>,
    /// Each dead letter listed or moved (not for [`Purpose::Record`]).
    letters: Vec<DeadLetter>,
    /// Dead letters moved back (listing: that would be).
    moved: usize,
    /// Events recorded or failed now ([`Purpose::Record`]).
    recorded: Vec<EventId>,
    /// Dead letters removed, by event.
    discarded: Vec<Discarded>,
    /// The invocation's deadline came near (`SWEEP_RESERVE`) and the pass stopped.
    out_of_time: bool,
}

impl Engine {
    /// One pass over up to `max` dead letters for `purpose`. Whatever happens, the dead letters it still hides
    /// are made visible again before it returns.
    async fn dead_letter_pass(
        &self,
        max: usize,
        purpose: Purpose,
        invocation: &Invocation,
    ) -> Result<Pass, EngineError> {
        let mut pass = Pass::default();
        let mut result = self.pass_rounds(max, purpose, invocation, &mut pass).await;
        if result.is_ok() {
            result = self.discard_redundant(&mut pass, invocation).await;
        }
        let handles: Vec<String> = pass.held.values().cloned().collect();
        let released = self.ports.queue.release_dead_letters(&handles).await;
        result?;
        released?;
        Ok(pass)
    }

    /// Receives rounds of dead letters until `max` were seen or a round brings none not seen yet.
    async fn pass_rounds(
        &self,
        max: usize,
        purpose: Purpose,
        invocation: &Invocation,
        pass: &mut Pass,
    ) -> Result<(), EngineError> {
        while pass.seen.len() < max {
            if self.near_deadline(invocation) {
                pass.out_of_time = true;
                break;
            }
            let want = (max - pass.seen.len()).min(ROUND);
            let batch = self.ports.queue.receive_dead_letters(want, PASS_VISIBILITY).await?;
            let mut fresh = Vec::with_capacity(batch.len());
            for message in batch {
                pass.held.insert(message.message_id.clone(), message.receipt_handle.clone());
                if pass.seen.insert(message.message_id.clone()) {
                    fresh.push(message);
                }
            }
            if fresh.is_empty() {
                break;
            }
            let mut moving = Vec::new();
            for message in fresh {
                // Stops between two letters near the deadline; those not looked at are released with the rest.
                if self.near_deadline(invocation) {
                    pass.out_of_time = true;
                    break;
                }
                let letter = self.look_at(message).await?;
                if let Some(status) = discard::redundant(&letter, self.settings.clock_margin) {
                    if purpose != Purpose::Record {
                        pass.letters.push(DeadLetter::discarded(&letter, status));
                    }
                    let (_, message_ids) = pass.redundant.entry(letter.event_id).or_insert((status, Vec::new()));
                    message_ids.push(letter.message.message_id);
                    continue;
                }
                match purpose {
                    Purpose::List => {
                        pass.letters.push(DeadLetter::staying(&letter, true));
                        pass.moved += 1;
                    }
                    Purpose::Redrive => {
                        pass.letters.push(self.mark_for_retry(&letter, invocation).await?);
                        let queue = letter.record.as_ref().and_then(|r| self.settings.redrive_queue_for(r));
                        moving.push((queue.map(str::to_owned), letter.message));
                    }
                    Purpose::Record => pass.recorded.extend(self.record_dead_letter(letter, invocation).await?),
                }
            }
            if !moving.is_empty() {
                self.move_back(&moving).await?;
                for (_, message) in &moving {
                    pass.held.remove(&message.message_id);
                }
                pass.moved += moving.len();
            }
        }
        Ok(())
    }

    /// Moves dead letters back: each to the queue of the processor recorded on its event (`SYNCTRAIL_REDRIVE_QUEUES`),
    /// the others to the queue of this dead-letter queue.
    async fn move_back(&self, moving: &[(Option<String>, QueueMessage)]) -> Result<(), EngineError> {
        for (queue, group) in by_queue(moving, |(queue, _)| queue.as_deref()) {
            let Some(queue) = queue else {
                let home: Vec<QueueMessage> = group.into_iter().map(|(_, m)| m.clone()).collect();
                self.ports.queue.return_dead_letters(&home).await?;
                continue;
            };
            let resend = group
                .iter()
                .map(|(_, m)| OutgoingMessage {
                    trace_header: m.trace_header.clone(),
                    ..OutgoingMessage::new(m.body.clone())
                })
                .collect();
            self.send_routed(Some(&queue), resend).await?;
            let handles: Vec<String> = group.iter().map(|(_, m)| m.receipt_handle.clone()).collect();
            self.ports.queue.delete_dead_letters(&handles).await?;
        }
        Ok(())
    }

    /// Reads what a dead letter carries and its event's record.
    async fn look_at(&self, message: QueueMessage) -> Result<Letter, EngineError> {
        let (carried, event_id) = match Message::parse(&message.body, self.settings.max_payload_bytes) {
            Ok(Message::Envelope(envelope)) => {
                let event_id = envelope.event_id.clone();
                (Carried::Envelope(envelope), event_id)
            }
            Ok(Message::Redrive { event_id, reason, .. }) => (Carried::Redrive(reason), event_id),
            Err(error) => (Carried::NoEnvelope(error), EventId::for_rejected(message.body.as_bytes())),
        };
        // Whether an operator's request was already run is in the history, the oldest entries included.
        let record = match carried {
            Carried::Redrive(RedriveReason::Reprocess | RedriveReason::Repair) => {
                self.ports.store.get_event_with_history(&event_id).await?
            }
            _ => self.ports.store.get_event(&event_id).await?,
        };
        Ok(Letter { message, carried, event_id, record })
    }
}
