//! The operator's pass: list the dead letters, or move them back to the queue after marking their events for
//! retry (spec §7 bulk re-drive).
//!
//! Each dead letter is looked at: a `failed` event goes back to `received` (so the returning message continues it,
//! whatever its message id); an event never recorded (dead-lettered before the engine saw it, e.g. by throttled
//! deliveries) is recorded when the message arrives; anything else continues or is acknowledged as usual. Then the
//! message is sent back and removed from the dead-letter queue. A crash in between leaves at worst a copy in both
//! queues, which idempotency absorbs.

use super::{Carried, Engine, EngineError, Invocation, Letter, Purpose};
use crate::engine::intake::restarted;
use crate::model::{EventId, RedriveReason, Status};
use crate::store::{StoreError, Write};
use serde::Serialize;

use super::discard::Discarded;

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
    pub action: String,
}

impl DeadLetter {
    fn new(letter: &Letter, action: String) -> Self {
        Self {
            message_id: letter.message.message_id.clone(),
            event_id: letter.event_id.clone(),
            status: letter.status(),
            action,
        }
    }

    /// A dead letter removed because its event is already `status`.
    pub(super) fn discarded(letter: &Letter, status: Status) -> Self {
        Self::new(letter, format!("event already {status}: discarded"))
    }

    /// A dead letter that stays (`listed`: nothing marked, nothing moved) or moves back: what happens when it
    /// arrives.
    pub(super) fn staying(letter: &Letter, listed: bool) -> Self {
        let action = match letter.status() {
            None => "not recorded yet: recorded and processed when it arrives",
            Some(Status::Failed) if listed => "failed: a re-drive marks it for retry and moves it back to be processed",
            Some(Status::Failed) => "failed: marked for retry, processed again when it arrives",
            Some(s) if s.is_terminal() => match letter.carried {
                Carried::Envelope(_) => "other content under this event id: rejected as a conflict when it arrives",
                Carried::Redrive(RedriveReason::Reprocess | RedriveReason::Repair) => {
                    "reprocess not carried out yet: runs when it arrives"
                }
                _ => "already done: acknowledged with no effect when it arrives",
            },
            Some(_) => "in progress: continues when it arrives",
        };
        Self::new(letter, action.to_owned())
    }
}

/// What a dead-letter re-drive found and did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DeadLetterReport {
    /// Only listed: no event was marked, no message moved (dead letters of events already done were discarded).
    pub dry_run: bool,
    /// Messages moved back to the queue (with `dry_run`: that would be).
    pub moved: usize,
    /// Each dead letter looked at, discarded ones included.
    pub letters: Vec<DeadLetter>,
    /// Dead letters removed because their event is already done, by event (each event's history notes it).
    pub discarded: Vec<Discarded>,
}

impl Engine {
    /// Looks at up to `max` dead letters: removes those whose event is already done (noted in its history), marks
    /// the events of the others for retry and moves them back to the queue. With `dry_run` only lists those; they
    /// stay in the dead-letter queue, visible, so a re-drive right after takes every one listed.
    pub async fn redrive_dead_letters(
        &self,
        max: usize,
        dry_run: bool,
        invocation: &Invocation,
    ) -> Result<DeadLetterReport, EngineError> {
        let purpose = if dry_run { Purpose::List } else { Purpose::Redrive };
        let pass = self.dead_letter_pass(max, purpose, invocation).await?;
        Ok(DeadLetterReport { dry_run, moved: pass.moved, letters: pass.letters, discarded: pass.discarded })
    }

    /// A `failed` event goes back to `received`, so the dead letter moved back continues it.
    pub(super) async fn mark_for_retry(
        &self,
        letter: &Letter,
        invocation: &Invocation,
    ) -> Result<DeadLetter, EngineError> {
        let dead_letter = DeadLetter::staying(letter, false);
        if letter.carries_another_change() {
            // Moved back, it is recorded as a conflict; the event it names is not its to restart.
            return Ok(dead_letter);
        }
        let mut record = letter.record.clone();
        for _ in 0..self.settings.max_rounds {
            let Some(failed) = record.filter(|r| r.status == Status::Failed) else { return Ok(dead_letter) };
            let failed = restarted(self, failed, invocation, "moved back from the dead-letter queue")?;
            match self.ports.store.commit(vec![Write::event(failed)]).await {
                Ok(()) => return Ok(dead_letter),
                Err(StoreError::Conflict(_)) => record = self.ports.store.get_event(&letter.event_id).await?,
                Err(e) => return Err(e.into()),
            }
        }
        Err(EngineError::Contended(letter.event_id.to_string(), self.settings.max_rounds))
    }
}
