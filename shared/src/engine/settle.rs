//! Settling an attempt: one compare-and-set on the head and the record, then the promotion of what waited
//! (spec §4 rules 6 and 7).

use super::{Disposition, Engine, EngineError, Invocation, Outcome};
use crate::model::{EntityHead, ErrorInfo, EventRecord, Inflight, Message, RedriveReason, Slot, Status};
use crate::settings::Policy;
use crate::store::{EventQuery, OutgoingMessage, StoreError, Write};
use chrono::Duration;

/// How an attempt ended.
#[derive(Debug)]
pub(super) enum End {
    /// Applied (or applied before this retry).
    Completed,
    /// The destination holds something newer.
    Dropped(String),
    /// A permanent error.
    Failed(ErrorInfo),
    /// A retryable error with attempts left: retry after the delay.
    Errored(ErrorInfo, Duration),
    /// A retryable error with no attempts left.
    Exhausted(ErrorInfo),
}

/// Writes the end of an attempt, unless the claim was lost meanwhile (then the newer holder decides).
pub(super) async fn settle(
    engine: &Engine,
    mut record: EventRecord,
    fence: u64,
    end: End,
    invocation: &Invocation,
) -> Result<Outcome, EngineError> {
    let store = &engine.ports.store;
    let event_id = record.event_id.clone();
    let write_started_at = record.write_started_at;
    let Some(entity) = record.entity.clone() else {
        return Err(EngineError::Incomplete(event_id, "claimed event has no entity"));
    };
    for round in 0..engine.settings.max_rounds {
        if round > 0 {
            record = store
                .get_event(&event_id)
                .await?
                .ok_or_else(|| EngineError::Incomplete(event_id.clone(), "record vanished while settling"))?;
            record.write_started_at = write_started_at;
        }
        let head = store.get_head(&entity).await?;
        let holds = head
            .as_ref()
            .and_then(|h| h.inflight.as_ref())
            .is_some_and(|i| i.slot.event_id == event_id && i.fence == fence);
        let (Some(mut head), true, Status::Processing) = (head, holds, record.status) else {
            tracing::info!(event_id = %event_id, status = %record.status, "claim lost while applying; the newer holder decides");
            return Ok(Outcome::ack(&event_id, record.status));
        };
        let now = engine.now();
        let attempt = record.attempt;
        record.lease_until = None;
        head.updated_at = now;
        let (disposition, promote) = match &end {
            End::Completed => {
                record.completed_at = Some(now);
                record.transition(engine.entry(Status::Completed, attempt, invocation, None))?;
                record_applied(&mut head, &record, engine.settings.policy_for(&entity.entity_type));
                (Disposition::Ack, true)
            }
            End::Dropped(by) => {
                record.dropped_for = Some(by.clone());
                let note = format!("destination holds newer {by}");
                record.transition(engine.entry(Status::Dropped, attempt, invocation, Some(note)))?;
                (Disposition::Ack, true)
            }
            End::Failed(error) => {
                record.error = Some(error.clone());
                record.transition(engine.entry(Status::Failed, attempt, invocation, Some(error.message.clone())))?;
                (Disposition::Ack, true)
            }
            End::Exhausted(error) => {
                record.error = Some(error.clone());
                record.transition(engine.entry(Status::Failed, attempt, invocation, Some(error.message.clone())))?;
                (Disposition::DeadLetter, true)
            }
            End::Errored(error, delay) => {
                record.error = Some(error.clone());
                record.transition(engine.entry(Status::Errored, attempt, invocation, Some(error.message.clone())))?;
                if let Some(inflight) = head.inflight.as_mut() {
                    inflight.errored = true;
                    inflight.lease_until = now + *delay + engine.settings.lease;
                }
                (Disposition::Retry { after: *delay }, false)
            }
        };
        if promote && head.next.is_none() && head.backlog.is_empty() && head.parked > 0 {
            unpark(engine, &mut head).await?;
        }
        let promoted = if promote { promote_next(&mut head, engine, now) } else { None };
        let status = record.status;
        match store.commit(vec![Write::head(head), Write::event(record.clone())]).await {
            Ok(()) => {}
            Err(StoreError::Conflict(_)) => continue,
            Err(e) => return Err(e.into()),
        }
        if let Some(next) = promoted {
            engine.send_redrive(&next.event_id, invocation).await;
        }
        return Ok(Outcome { event_id: Some(event_id), status: Some(status), redelivered: false, disposition });
    }
    Err(EngineError::Contended(entity.to_string(), engine.settings.max_rounds))
}

/// `applied` after a completion: the event itself for snapshots; the newest so far for deltas.
fn record_applied(head: &mut EntityHead, record: &EventRecord, policy: Policy) {
    let (Some(order), Some(content_hash)) = (record.order, record.content_hash) else {
        return;
    };
    let slot = Slot { event_id: record.event_id.clone(), order, content_hash };
    let newer = head.applied.as_ref().is_none_or(|a| a.order <= order);
    if policy == Policy::LatestWins || newer {
        head.applied = Some(slot);
    }
}

/// `in_order`: moves parked events (recorded `queued`, not in the head) into the empty backlog, oldest order key
/// first, as many as fit.
async fn unpark(engine: &Engine, head: &mut EntityHead) -> Result<(), EngineError> {
    let query = EventQuery { entity: Some(head.entity.clone()), status: Some(Status::Queued), ..EventQuery::default() };
    let inflight = head.inflight.as_ref().map(|i| i.slot.event_id.clone());
    let mut parked: Vec<Slot> = engine
        .ports
        .store
        .list_events(&query)
        .await?
        .into_iter()
        .filter(|r| Some(&r.event_id) != inflight.as_ref())
        .filter_map(|r| Some(Slot { order: r.order?, content_hash: r.content_hash?, event_id: r.event_id }))
        .collect();
    parked.sort_by(|a, b| a.order.cmp(&b.order));
    parked.truncate(engine.settings.max_backlog.max(1));
    // Whatever the count said, what the store holds is the truth: none found means none parked.
    head.parked = if parked.is_empty() { 0 } else { head.parked.saturating_sub(parked.len() as u32) };
    head.backlog = parked;
    Ok(())
}

/// Releases the head and hands it to the waiting event, if any: it holds the entity under a fresh lease and
/// fencing token until its re-drive message claims it.
fn promote_next(head: &mut EntityHead, engine: &Engine, now: chrono::DateTime<chrono::Utc>) -> Option<Slot> {
    let next = head.next.take().or_else(|| (!head.backlog.is_empty()).then(|| head.backlog.remove(0)));
    head.inflight = next.clone().map(|slot| {
        head.fence += 1;
        Inflight { slot, lease_until: now + engine.settings.lease, fence: head.fence, errored: false }
    });
    next
}

impl Engine {
    /// Sends a re-drive message for a promoted or stranded event. A failed send is only logged: the event's
    /// lease runs out and the sweeper sends it again.
    pub(crate) async fn send_redrive(&self, event_id: &crate::model::EventId, invocation: &Invocation) {
        let mut message = OutgoingMessage::new(Message::redrive_body(event_id, RedriveReason::Promotion, false));
        message.trace_header = invocation.trace_id.clone();
        if let Err(e) = self.ports.queue.send(vec![message]).await {
            tracing::warn!(event_id = %event_id, error = %e, "promotion not sent; the sweeper will re-drive it");
        }
    }
}
