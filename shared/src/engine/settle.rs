//! Settling an attempt: one compare-and-set on the head and the record, then the promotion of what waited
//! (spec §4 rules 6 and 7).

use super::attempt::KnownHead;
use super::{Disposition, Engine, EngineError, Invocation, Outcome};
use crate::model::{
    EchoGuard, EntityHead, EntityKey, ErrorInfo, ErrorKind, EventId, EventRecord, ExternalWrite, Inflight, Message,
    RedriveReason, Slot, Status,
};
use crate::settings::Policy;
use crate::store::{EventQuery, OutgoingMessage, StoreError, Write};
use chrono::Duration;

/// How an attempt ended.
#[derive(Debug)]
pub(super) enum End {
    /// Applied (or applied before this retry); with what an outbound write left in the external system.
    Completed(Option<ExternalWrite>),
    /// The destination holds something newer.
    Dropped(String),
    /// A permanent error.
    Failed(ErrorInfo),
    /// A retryable (or throttled) error with attempts left: retry after the delay.
    Errored(ErrorInfo, Duration),
    /// A retryable error with no attempts left.
    Exhausted(ErrorInfo),
    /// The handler needs `key` to exist first (spec §6); `request` is an envelope to send to obtain it.
    Waiting {
        /// The missing entity.
        key: EntityKey,
        /// What to send to obtain it.
        request: Option<String>,
    },
}

/// Writes the end of an attempt, unless the claim was lost meanwhile (then the newer holder decides).
/// `known`: the head as the claim wrote it, when the first round may decide on it (a head changed since makes the
/// commit a conflict, and the next round reads again).
pub(super) async fn settle(
    engine: &Engine,
    mut record: EventRecord,
    fence: u64,
    end: End,
    known: KnownHead,
    invocation: &Invocation,
) -> Result<Outcome, EngineError> {
    let store = &engine.ports.store;
    let event_id = record.event_id.clone();
    let write_started_at = record.write_started_at;
    let Some(entity) = record.entity.clone() else {
        return Err(EngineError::Incomplete(event_id, "claimed event has no entity"));
    };
    let mut known = Some(known);
    for round in 0..engine.settings.max_rounds {
        if round > 0 {
            record = store
                .get_event(&event_id)
                .await?
                .ok_or_else(|| EngineError::Incomplete(event_id.clone(), "record vanished while settling"))?;
            record.write_started_at = write_started_at;
        }
        let head = match known.take() {
            Some(KnownHead::Read(head)) => *head,
            Some(KnownHead::Unread) | None => store.get_head(&entity).await?,
        };
        let holds = head
            .as_ref()
            .and_then(|h| h.inflight.as_ref())
            .is_some_and(|i| i.slot.event_id == event_id && i.fence == fence);
        let now = engine.now();
        let write_duration = write_started_at.map(|at| now - at);
        let (Some(mut head), true, Status::Processing) = (head, holds, record.status) else {
            tracing::info!(event_id = %event_id, status = %record.status, "claim lost while applying; the newer holder decides");
            let mut outcome = Outcome::ack(&event_id, record.status).about(&record);
            outcome.facts.write_duration = write_duration;
            return Ok(outcome);
        };
        let attempt = record.attempt;
        record.lease_until = None;
        // A retryable error or a panic does not prove that nothing was written; every other end does.
        record.write_outcome_unknown = matches!(end, End::Errored(..) | End::Exhausted(_));
        head.updated_at = now;
        let resume_waiters = matches!(end, End::Completed(_)) && std::mem::take(&mut head.has_waiters);
        let mut dependency_head = None;
        let mut created_head = None;
        let (disposition, promote) = match &end {
            End::Completed(written) => {
                record.completed_at = Some(now);
                record.written = written.clone();
                record.transition(engine.entry(Status::Completed, attempt, invocation, None))?;
                record_applied(&mut head, &record, engine.settings.policy_for(&entity.entity_type));
                if let Some(write) = written {
                    created_head = guard_echo(engine, &mut head, &event_id, write).await?;
                }
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
            End::Waiting { key, .. } => {
                record.waiting_for = Some(key.to_string());
                record.waiting_since = Some(now);
                let note = format!("waiting for {key}");
                record.transition(engine.entry(Status::Waiting, attempt, invocation, Some(note)))?;
                let mut dependency = store.get_head(key).await?.unwrap_or_else(|| EntityHead::empty(key.clone(), now));
                let flag_needed = !dependency.has_waiters;
                dependency.has_waiters = true;
                dependency_head = Some((dependency, flag_needed));
                (Disposition::Ack, true)
            }
            End::Errored(error, delay) => {
                record.error = Some(error.clone());
                let note = if error.kind == ErrorKind::Throttled {
                    // Throttled attempts do not use up the retry budget: it counts from one attempt later.
                    record.attempt_base = (record.attempt_base + 1).min(record.attempt);
                    format!("throttled, not counted toward failed: {}", error.message)
                } else {
                    error.message.clone()
                };
                record.transition(engine.entry(Status::Errored, attempt, invocation, Some(note)))?;
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
        let mut writes = vec![Write::head(head.clone()), Write::event(record.clone())];
        if let Some((dependency, true)) = &dependency_head {
            writes.push(Write::head(dependency.clone()));
        }
        if let Some(created) = created_head {
            writes.push(Write::head(created));
        }
        match store.commit(writes).await {
            Ok(()) => {}
            Err(StoreError::Conflict(_)) => continue,
            Err(e) => return Err(e.into()),
        }
        if let Some(next) = promoted {
            engine.send_redrive(&next.event_id, invocation).await;
        }
        if resume_waiters {
            engine.resume_waiters(&entity, invocation).await;
        }
        if let (End::Waiting { request, .. }, Some((dependency, _))) = (&end, &dependency_head) {
            engine.after_wait_began(&record, dependency, request.as_deref(), invocation).await;
        }
        let mut outcome = Outcome { disposition, ..Outcome::ack(&event_id, status) }.about(&record).transitioned();
        outcome.facts.write_duration = write_duration;
        return Ok(outcome);
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

/// Spec §10: keeps `write` as the echo guard of the resource it wrote — `head` itself for an update, the head of
/// the created resource's entity (returned, to be written in the same commit) for a create, whose webhooks name
/// the resource by the id the external system gave it.
async fn guard_echo(
    engine: &Engine,
    head: &mut EntityHead,
    event_id: &EventId,
    write: &ExternalWrite,
) -> Result<Option<EntityHead>, EngineError> {
    let Some(guard) = EchoGuard::of(event_id, write) else {
        tracing::warn!(event_id = %event_id, updated_at = %write.updated_at, "written time out of range; no echo guard");
        return Ok(None);
    };
    let entity = &head.entity;
    let created = match write.created.as_deref().filter(|id| *id != entity.external_id) {
        None => {
            head.echo = Some(guard);
            return Ok(None);
        }
        Some(id) => EntityKey::new(&entity.tenant, &entity.source, &entity.entity_type, id),
    };
    let created = match created {
        Ok(key) => key,
        Err(e) => {
            tracing::warn!(event_id = %event_id, error = %e, "the created resource's id is not an external id; no echo guard");
            return Ok(None);
        }
    };
    let now = engine.now();
    let mut created_head =
        engine.ports.store.get_head(&created).await?.unwrap_or_else(|| EntityHead::empty(created.clone(), now));
    created_head.echo = Some(guard);
    created_head.updated_at = now;
    Ok(Some(created_head))
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
    parked.sort_by_key(|s| s.order);
    parked.truncate(engine.settings.max_backlog.max(1));
    // Whatever the count said, what the store holds is the truth: none found means none parked.
    head.parked = if parked.is_empty() { 0 } else { head.parked.saturating_sub(parked.len() as u32) };
    head.backlog = parked;
    Ok(())
}

/// Releases the head and hands it to the waiting event, if any: it holds the entity under a fresh lease and
/// fencing token until its re-drive message claims it.
pub(super) fn promote_next(head: &mut EntityHead, engine: &Engine, now: chrono::DateTime<chrono::Utc>) -> Option<Slot> {
    let next = head.next.take().or_else(|| (!head.backlog.is_empty()).then(|| head.backlog.remove(0)));
    head.inflight = next.clone().map(|slot| {
        head.fence += 1;
        Inflight { slot, lease_until: now + engine.settings.lease, fence: head.fence, errored: false }
    });
    next
}

impl Engine {
    /// Re-drives every event waiting for `dependency`, which just completed an event. A failed listing is only
    /// logged: the sweeper finds waits whose dependency appeared.
    pub(crate) async fn resume_waiters(&self, dependency: &EntityKey, invocation: &Invocation) {
        let query = EventQuery { waiting_for: Some(dependency.to_string()), ..EventQuery::default() };
        match self.ports.store.list_events(&query).await {
            Ok(waiting) => {
                for record in waiting.iter().filter(|r| r.status == Status::Waiting) {
                    tracing::info!(event_id = %record.event_id, dependency = %dependency, "dependency completed; resuming");
                    self.send_redrive(&record.event_id, invocation).await;
                }
            }
            Err(e) => {
                tracing::warn!(dependency = %dependency, error = %e, "waiters not listed; the sweeper resumes them")
            }
        }
    }

    /// Once an event is recorded `waiting`: sends the handler's request for the dependency, and resumes the event
    /// at once if the dependency completed an event while the handler was looking (the completion saw no waiter).
    async fn after_wait_began(
        &self,
        record: &EventRecord,
        dependency: &EntityHead,
        request: Option<&str>,
        invocation: &Invocation,
    ) {
        if let Some(request) = request {
            let mut message = OutgoingMessage::new(with_cause(request, &record.event_id));
            message.trace_header = invocation.trace_id.clone();
            if let Err(e) = self.ports.queue.send(vec![message]).await {
                tracing::warn!(event_id = %record.event_id, error = %e, "dependency request not sent");
            }
        }
        let looked_at = record.write_started_at.unwrap_or(record.updated_at) - self.settings.clock_margin;
        if dependency_appeared_since(dependency, looked_at) {
            self.send_redrive(&record.event_id, invocation).await;
        }
    }

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

/// Whether `dependency` completed an event at or after `since` (what a waiting event needs to try again).
pub(super) fn dependency_appeared_since(dependency: &EntityHead, since: chrono::DateTime<chrono::Utc>) -> bool {
    dependency.applied.is_some() && dependency.updated_at >= since
}

/// The handler's dependency request with `caused_by` naming the waiting event (when it is a JSON object without one).
fn with_cause(request: &str, waiting: &EventId) -> String {
    match serde_json::from_str::<serde_json::Value>(request) {
        Ok(serde_json::Value::Object(mut map)) => {
            map.entry("caused_by").or_insert_with(|| serde_json::Value::String(waiting.to_string()));
            serde_json::Value::Object(map).to_string()
        }
        _ => request.to_owned(),
    }
}
