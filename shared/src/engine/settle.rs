//! Settling an attempt: the record's end, then its head moved on, one conditional write each (spec §4 rules 6 and
//! 7, §9 "One write per item in a settle"), then the promotion of what waited; and finishing a settle cut short between the
//! two.

use super::attempt::KnownHead;
use super::{Disposition, Engine, EngineError, Invocation, Outcome};
use crate::model::{
    EchoGuard, EntityHead, EntityKey, ErrorInfo, ErrorKind, EventId, EventRecord, ExternalWrite, Inflight, Message,
    RedriveReason, Slot, Status,
};
use crate::settings::Policy;
use crate::store::{EventQuery, OutgoingMessage, PartialCommit, StoreError, Write};
use chrono::{DateTime, Duration, Utc};

/// How an attempt ended.
#[derive(Debug)]
pub(super) enum End {
    /// Applied; with what an outbound write left in the external system.
    Completed(Option<ExternalWrite>),
    /// The destination had applied this event already (an earlier attempt, a reprocess of a completed event):
    /// completed, nothing written this time.
    AlreadyApplied,
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

/// What moving a head on leaves to do once it is written.
#[derive(Debug)]
struct MovedOn {
    /// The event promoted to hold the entity: send its re-drive.
    promoted: Option<Slot>,
    /// The entity completed an event while others waited for it: resume them.
    resume_waiters: bool,
}

impl MovedOn {
    async fn follow_up(self, engine: &Engine, entity: &EntityKey, invocation: &Invocation) {
        if let Some(next) = self.promoted {
            engine.send_redrive(&next.event_id, Some(entity), invocation).await;
        }
        if self.resume_waiters {
            engine.resume_waiters(entity, invocation).await;
        }
    }
}

/// Writes the end of an attempt, unless the claim was lost meanwhile (then the newer holder decides): the record
/// first, then the head moved on, one conditional write each (spec §9 "One write per item in a settle"). A settle cut short
/// between the two leaves a settled record its head still names; the event's next delivery or the sweeper finishes
/// it ([`Engine::finish_settle`]). An `errored` end writes the record alone (spec §9 "A failure writes the record
/// alone"), unless its hold ended first: then it checks the head (spec §9 "An attempt that outlasted its hold checks
/// the head when it fails").
/// `known`: the head as the claim wrote it, when the first round may decide on it (a head changed since makes the
/// commit a conflict, and the next round reads again).
pub(super) async fn settle(
    engine: &Engine,
    record: Box<EventRecord>,
    fence: u64,
    end: End,
    known: KnownHead,
    invocation: &Invocation,
) -> Result<Outcome, EngineError> {
    let mut record = *record;
    let store = &engine.ports.store;
    let event_id = record.event_id.clone();
    let write_started_at = record.write_started_at;
    let Some(entity) = record.entity.clone() else {
        return Err(EngineError::Incomplete(event_id, "claimed event has no entity"));
    };
    let claimed_attempt = record.attempt;
    let mut known = Some(known);
    for round in 0..engine.settings.max_rounds {
        if round > 0 {
            record = store
                .get_event(&event_id)
                .await?
                .ok_or_else(|| EngineError::Incomplete(event_id.clone(), "record vanished while settling"))?;
            record.write_started_at = write_started_at;
        }
        let now = engine.now();
        let head = match known.take() {
            // A failure writes the record alone, so no write checks the head it decides on: once the hold has
            // ended, a newer event may have taken the entity over, and the head is read again.
            Some(KnownHead::Read(head)) if !(matches!(end, End::Errored(..)) && hold_ended(engine, &head, &record)) => {
                *head
            }
            Some(KnownHead::Read(_) | KnownHead::Unread) | None => store.get_head(&entity).await?,
        };
        let holds = head
            .as_ref()
            .and_then(|h| h.inflight.as_ref())
            .is_some_and(|i| i.slot.event_id == event_id && i.fence == fence);
        let write_duration = write_started_at.map(|at| now - at);
        if record.status != Status::Processing || record.attempt != claimed_attempt {
            tracing::info!(event_id = %event_id, status = %record.status, "claim lost while applying; the newer holder decides");
            let mut outcome = Outcome::ack(&event_id, record.status).about(&record);
            outcome.facts.write_duration = write_duration;
            return Ok(outcome);
        }
        // The record is still this attempt's, but the head may have moved on without it: a claim whose record write
        // landed after its lease ended and someone moved the head on (spec §9 "The claim in two writes, the head
        // first"). The record's end is written all the same, or it would stay `processing` with no head naming it.
        let lost_hold = head.as_ref().filter(|_| !holds).and_then(|h| LostHold::of(h, &record));
        // Nothing holds the entity and nothing newer was applied: a failure takes the hold again for its retry.
        let unheld = head.as_ref().filter(|h| !holds && lost_hold.is_none() && h.is_idle()).cloned();
        let mut head = head.filter(|_| holds);
        if head.is_none() {
            tracing::warn!(event_id = %event_id, "the head moved on while this attempt ran; recording its end without it");
        }
        let attempt = record.attempt;
        // Until when this attempt's hold lasts: the head's lease, or a later one on the record (a retry claimed
        // inside the hold runs under its own: spec §9 "A retry inside its hold writes the record alone").
        let claim = head.as_ref().and_then(|h| h.inflight.as_ref());
        let hold_until = claim.map(|i| i.hold_until(Some(&record)));
        let retried_in_hold = claim.is_some_and(|i| i.retried_in_hold(&record));
        record.lease_until = None;
        // A retryable error or a panic does not prove that nothing was written; every other end does.
        record.write_outcome_unknown = matches!(end, End::Errored(..) | End::Exhausted(_));
        // A head written with the record, all or nothing: unchanged, to check it still holds the entity, or taken
        // again by a failure whose hold ended with nothing holding the entity.
        let mut touched = None;
        // Other entities' heads, written before the record: each is true whether or not the rest follows.
        let mut other_heads = Vec::new();
        let mut dependency_head = None;
        let disposition = match (&end, lost_hold) {
            (End::AlreadyApplied, _) => {
                record.completed_at = Some(now);
                record.written = None;
                let note = Some("the destination had applied it already: nothing written".to_owned());
                record.transition(engine.entry(Status::Completed, attempt, invocation, note))?;
                Disposition::Ack
            }
            (End::Completed(written), _) => {
                record.completed_at = Some(now);
                record.written = written.clone();
                record.transition(engine.entry(Status::Completed, attempt, invocation, None))?;
                if let Some(created) = guard_created(engine, &entity, &event_id, written.as_ref()).await? {
                    other_heads.push(Write::head(created));
                }
                Disposition::Ack
            }
            (End::Dropped(by), _) => {
                record.dropped_for = Some(by.clone());
                let note = format!("destination holds newer {by}");
                record.transition(engine.entry(Status::Dropped, attempt, invocation, Some(note)))?;
                Disposition::Ack
            }
            (End::Failed(error), _) => {
                record.error = Some(error.clone());
                record.transition(engine.entry(Status::Failed, attempt, invocation, Some(error.message.clone())))?;
                Disposition::Ack
            }
            (End::Exhausted(error), _) => {
                record.error = Some(error.clone());
                record.transition(engine.entry(Status::Failed, attempt, invocation, Some(error.message.clone())))?;
                Disposition::DeadLetter
            }
            (End::Waiting { key, .. }, _) => {
                record.waiting_for = Some(key.to_string());
                record.waiting_since = Some(now);
                let note = format!("waiting for {key}");
                record.transition(engine.entry(Status::Waiting, attempt, invocation, Some(note)))?;
                let mut dependency = store.get_head(key).await?.unwrap_or_else(|| EntityHead::empty(key.clone(), now));
                if !dependency.has_waiters {
                    dependency.has_waiters = true;
                    other_heads.push(Write::head(dependency.clone()));
                }
                dependency_head = Some(dependency);
                Disposition::Ack
            }
            (End::Errored(error, _), Some(lost)) => {
                record.error = Some(error.clone());
                let (status, note) = lost.mark(&mut record);
                record.transition(engine.entry(
                    status,
                    attempt,
                    invocation,
                    Some(format!("{note}: {}", error.message)),
                ))?;
                Disposition::Ack
            }
            (End::Errored(error, delay), _) => {
                record.error = Some(error.clone());
                let note = if error.kind == ErrorKind::Throttled {
                    // Throttled attempts do not use up the retry budget: it counts from one attempt later.
                    record.attempt_base = (record.attempt_base + 1).min(record.attempt);
                    format!("throttled, not counted toward failed: {}", error.message)
                } else {
                    error.message.clone()
                };
                record.transition(engine.entry(Status::Errored, attempt, invocation, Some(note)))?;
                // The head stays as the hold's claim wrote it (spec §9 "A failure writes the record alone"): the
                // record says the attempt failed, and carries the hold's lease when the head's ends first — a
                // retry's own lease, or one past the retry's due time when the backoff outlasts the hold.
                let due = now + *delay;
                record.lease_until = hold_until.and_then(|until| {
                    if due <= until {
                        retried_in_hold.then_some(until)
                    } else {
                        Some(due + engine.settings.lease)
                    }
                });
                // An attempt that outlasted its hold (its claim's record write may have landed after a newer event
                // found none to cancel and took the entity over) writes the head too, unchanged, in one commit with
                // the record: whichever of the two lands first, the other conflicts and decides again.
                let hold_over = hold_until.is_some_and(|until| now > until + engine.settings.clock_margin);
                touched = head.take().filter(|_| hold_over).or_else(|| {
                    // The takeover that ended this hold has ended too (failed, say) and released the entity: without
                    // a head naming it, the errored event would be listed nowhere and swept by no one until its retry.
                    unheld.and_then(|idle| take_hold_again(idle, &record, due + engine.settings.lease, now))
                });
                Disposition::Retry { after: *delay }
            }
        };
        let moved = match head.as_mut() {
            Some(head) => Some(move_head(engine, head, &record, now).await?),
            None => None,
        };
        let status = record.status;
        let record_at = other_heads.len();
        let mut writes = other_heads;
        writes.push(Write::event(record.clone()));
        writes.extend(head.map(Write::head));
        let committed = match touched {
            Some(touched) => {
                writes.push(Write::head(touched));
                store.commit(writes).await.map_err(|error| PartialCommit { applied: 0, error })
            }
            None => store.commit_each(writes).await,
        };
        let moved = match committed {
            Ok(()) => moved,
            Err(PartialCommit { applied, error: StoreError::Conflict(_) }) if applied <= record_at => continue,
            Err(PartialCommit { error, applied }) if applied <= record_at => return Err(error.into()),
            Err(PartialCommit { error: StoreError::Conflict(_), .. }) => {
                // The record is stored; the head changed since it was read: move on what it is now.
                record.version += 1;
                move_on(engine, &entity, Ended::Written(&record, fence), KnownHead::Unread).await?
            }
            // The record is stored, the head's write unknown: this delivery comes back and finishes it.
            Err(PartialCommit { error, .. }) => return Err(error.into()),
        };
        if let Some(moved) = moved {
            moved.follow_up(engine, &entity, invocation).await;
        }
        if let (End::Waiting { request, .. }, Some(dependency)) = (&end, &dependency_head) {
            engine.after_wait_began(&record, dependency, request.as_deref(), invocation).await;
        }
        let mut outcome = Outcome { disposition, ..Outcome::ack(&event_id, status) }.about(&record).transitioned();
        outcome.facts.write_duration = write_duration;
        return Ok(outcome);
    }
    Err(EngineError::Contended(entity.to_string(), engine.settings.max_rounds))
}

/// `idle` (a head that holds nothing) naming `record`'s failed attempt in flight again until `lease_until`, under a
/// new fencing token, as the attempt's claim would have left it (spec §9 "An attempt that outlasted its hold checks
/// the head when it fails"); `None` for a record without the order key and content hash a hold names.
fn take_hold_again(
    mut idle: EntityHead,
    record: &EventRecord,
    lease_until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<EntityHead> {
    let slot = Slot { event_id: record.event_id.clone(), order: record.order?, content_hash: record.content_hash? };
    idle.fence += 1;
    idle.inflight = Some(Inflight {
        slot,
        lease_until,
        fence: idle.fence,
        errored: false,
        promoted: false,
        attempt: record.attempt,
        earliest_lease_until: None,
    });
    idle.updated_at = now;
    Some(idle)
}

/// Whether the hold that `head` names (the claim of the attempt `record` ends) is over: its lease, and any lease its
/// record carries, ended. No head, or none in flight: over.
fn hold_ended(engine: &Engine, head: &Option<EntityHead>, record: &EventRecord) -> bool {
    let inflight = head.as_ref().and_then(|h| h.inflight.as_ref());
    inflight.is_none_or(|i| engine.now() > i.hold_until(Some(record)) + engine.settings.clock_margin)
}

/// How an attempt that failed after losing its hold ends instead of `errored`, which only a held event may be (its
/// claim's record write landed after its lease ended, when a newer event had found no record of it to cancel and
/// had taken the entity over: spec §9 "A failure writes the record alone").
#[derive(Debug, Clone)]
enum LostHold {
    /// Another event holds the entity now: the cancel its takeover could not write.
    CanceledBy(EventId),
    /// Nothing holds it, and a newer event was applied meanwhile: what its retry would be decided (§4 rule 1).
    DroppedFor(EventId),
}

impl LostHold {
    /// How `record`'s attempt ends given `head`, which no longer names it; `None`: neither (it stays `errored`, and
    /// takes the hold again when nothing holds the entity: its retry decides).
    fn of(head: &EntityHead, record: &EventRecord) -> Option<Self> {
        match (&head.inflight, &head.applied) {
            (Some(holder), _) if holder.slot.event_id != record.event_id => {
                Some(Self::CanceledBy(holder.slot.event_id.clone()))
            }
            (None, Some(applied)) if record.order.is_some_and(|order| order < applied.order) => {
                Some(Self::DroppedFor(applied.event_id.clone()))
            }
            _ => None,
        }
    }

    /// Notes the event that took the hold's place on `record`; the status it ends in and why.
    fn mark(self, record: &mut EventRecord) -> (Status, String) {
        match self {
            Self::CanceledBy(by) => {
                let note = format!("canceled by {by}, which took the entity over while this attempt ran");
                record.canceled_by = Some(by);
                (Status::Canceled, note)
            }
            Self::DroppedFor(newer) => {
                let note = format!("{newer} was applied while this attempt ran");
                record.dropped_for = Some(newer.to_string());
                (Status::Dropped, note)
            }
        }
    }
}

/// Moves `head`, which names `record`'s event in flight, on after the attempt `record` now ends.
async fn move_head(
    engine: &Engine,
    head: &mut EntityHead,
    record: &EventRecord,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<MovedOn, EngineError> {
    head.updated_at = now;
    let completed = record.status == Status::Completed;
    let resume_waiters = completed && std::mem::take(&mut head.has_waiters);
    if completed {
        let policy = engine.settings.policy_for(&head.entity.entity_type);
        record_applied(head, record, policy);
        let guard = record.written.as_ref().and_then(|w| echo_guard(&head.entity, &record.event_id, w).ok());
        if let Some((guard, None)) = guard {
            head.echo = Some(guard);
        }
    }
    if head.next.is_none() && head.backlog.is_empty() && head.parked > 0 {
        unpark(engine, head, now).await?;
    }
    let promoted = promote_next(head, engine, now);
    Ok(MovedOn { promoted, resume_waiters })
}

/// Whose end the head moves on after.
enum Ended<'a> {
    /// The settle's own record, as it wrote it, of the attempt holding `fence`.
    Written(&'a EventRecord, u64),
    /// The event's record as stored, read after each read of the head (a repair by someone else).
    Stored(&'a EventId),
}

/// The head write of a settle alone: moves on the head of the event's entity if it still names the event in flight
/// (with the attempt's fence, for [`Ended::Written`]), reading it again after each lost race. `None`: it names
/// another event (whoever moved it on did the rest), or the stored record still holds its entity.
async fn move_on(
    engine: &Engine,
    entity: &EntityKey,
    ended: Ended<'_>,
    known: KnownHead,
) -> Result<Option<MovedOn>, EngineError> {
    let (event_id, fence) = match &ended {
        Ended::Written(record, fence) => (&record.event_id, Some(*fence)),
        Ended::Stored(event_id) => (*event_id, None),
    };
    let names_event = |h: &EntityHead| {
        h.inflight.as_ref().is_some_and(|i| &i.slot.event_id == event_id && fence.is_none_or(|f| i.fence == f))
    };
    let mut known = Some(known);
    for _ in 0..engine.settings.max_rounds {
        let head = match known.take() {
            Some(KnownHead::Read(head)) => *head,
            Some(KnownHead::Unread) | None => engine.ports.store.get_head(entity).await?,
        };
        let Some(mut head) = head.filter(names_event) else { return Ok(None) };
        // Read after the head: a record read before it may be an earlier end of the event, and the head a newer
        // claim of it whose attempt is still running.
        let stored;
        let record = match ended {
            Ended::Written(record, _) => record,
            Ended::Stored(_) => {
                stored = engine.ports.store.get_event(event_id).await?;
                match stored.as_ref().filter(|r| r.status.releases_entity() && ended_under(&head, r, engine)) {
                    Some(record) => record,
                    None => return Ok(None),
                }
            }
        };
        let moved = move_head(engine, &mut head, record, engine.now()).await?;
        match engine.ports.store.commit(vec![Write::head(head)]).await {
            Ok(()) => return Ok(Some(moved)),
            Err(StoreError::Conflict(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(EngineError::Contended(entity.to_string(), engine.settings.max_rounds))
}

/// Whether `record`'s end is where the claim `head` names stopped: its attempt is the claim's (or later), or the
/// claim's lease is over. A claim writes the head before the record (spec §9 "The claim in two writes, the head
/// first"), so a head may name a newer claim of an event whose record still shows an earlier end (a resubmitted
/// `failed` event, a `waiting` one resumed): that claim's record write is on its way, or was cut short — and then
/// nothing ran under it, and once its lease is over the head moves on as from the earlier end.
fn ended_under(head: &EntityHead, record: &EventRecord, engine: &Engine) -> bool {
    head.inflight.as_ref().is_none_or(|claim| {
        record.attempt >= claim.attempt || engine.now() > claim.lease_until + engine.settings.clock_margin
    })
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

/// Spec §10: the echo guard `write` leaves, and the entity it guards: `None` for `entity` itself (an update), the
/// created resource's for a create, whose webhooks name the resource by the id the external system gave it.
/// `Err`: why there is none.
fn echo_guard(
    entity: &EntityKey,
    event_id: &EventId,
    write: &ExternalWrite,
) -> Result<(EchoGuard, Option<EntityKey>), String> {
    let Some(guard) = EchoGuard::of(event_id, write) else {
        return Err(format!("written time {} out of range; no echo guard", write.updated_at));
    };
    match write.created.as_deref().filter(|id| *id != entity.external_id) {
        None => Ok((guard, None)),
        Some(id) => match EntityKey::new(&entity.tenant, &entity.source, &entity.entity_type, id) {
            Ok(created) => Ok((guard, Some(created))),
            Err(e) => Err(format!("the created resource's id is not an external id ({e}); no echo guard")),
        },
    }
}

/// The head of the resource a completed create made, carrying its echo guard (written before the record).
async fn guard_created(
    engine: &Engine,
    entity: &EntityKey,
    event_id: &EventId,
    written: Option<&ExternalWrite>,
) -> Result<Option<EntityHead>, EngineError> {
    let Some(write) = written else { return Ok(None) };
    let (guard, created) = match echo_guard(entity, event_id, write) {
        Ok((guard, Some(created))) => (guard, created),
        Ok((_, None)) => return Ok(None),
        Err(why) => {
            tracing::warn!(event_id = %event_id, "{why}");
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
/// first, as many as fit: in the backlog's size, and in the store's budget for the head once the first is promoted
/// (spec §9 "A backlog no larger than its head's budget"; one at least). The store lists only parked events
/// (`parked_events`), never the entity's whole history.
async fn unpark(engine: &Engine, head: &mut EntityHead, now: chrono::DateTime<chrono::Utc>) -> Result<(), EngineError> {
    let fit = engine.settings.max_backlog.max(1);
    let inflight = head.inflight.as_ref().map(|i| i.slot.event_id.clone());
    // One more than fits: the event in flight (promoted from the backlog, its record still `queued`) may be listed,
    // and one found beyond what fits says that some stay parked.
    let mut parked: Vec<Slot> = engine
        .ports
        .store
        .parked_events(&head.entity, fit + 1)
        .await?
        .into_iter()
        .filter(|r| Some(&r.event_id) != inflight.as_ref())
        .filter_map(|r| Some(Slot { order: r.order?, content_hash: r.content_hash?, event_id: r.event_id }))
        .collect();
    parked.sort_by_key(|s| s.order);
    let mut more = parked.len() > fit;
    parked.truncate(fit);
    while parked.len() > 1 && !promoted_head_fits(engine, head, &parked, now) {
        parked.pop();
        more = true;
    }
    // Whatever the count said, what the store holds is the truth: none found means none parked, and one left over
    // means some still are (a park whose head write did not land left the count short: spec §9).
    head.parked = match parked.len() {
        0 => 0,
        moved => head.parked.saturating_sub(moved as u32).max(u32::from(more)),
    };
    head.backlog = parked;
    Ok(())
}

/// Whether `head` with `backlog` fits the store's budget for a head once the backlog's first event is promoted.
fn promoted_head_fits(
    engine: &Engine,
    head: &EntityHead,
    backlog: &[Slot],
    now: chrono::DateTime<chrono::Utc>,
) -> bool {
    let mut promoted = EntityHead { backlog: backlog.to_vec(), ..head.clone() };
    promote_next(&mut promoted, engine, now);
    fits_flagged(engine, promoted)
}

/// Whether `head` fits the store's budget for a head with room left for the verification flag a late delta's claim
/// sets on it, where nothing can be parked instead (spec §9 "A backlog no larger than its head's budget").
pub(super) fn fits_flagged(engine: &Engine, head: EntityHead) -> bool {
    engine.ports.store.head_fits(&EntityHead { needs_verification: true, ..head })
}

/// Releases the head and hands it to the waiting event, if any: it holds the entity under a fresh lease and
/// fencing token until its re-drive message claims it.
pub(super) fn promote_next(head: &mut EntityHead, engine: &Engine, now: chrono::DateTime<chrono::Utc>) -> Option<Slot> {
    let next = head.next.take().or_else(|| (!head.backlog.is_empty()).then(|| head.backlog.remove(0)));
    head.inflight = next.clone().map(|slot| {
        head.fence += 1;
        let lease_until = now + engine.settings.lease;
        Inflight {
            slot,
            lease_until,
            fence: head.fence,
            errored: false,
            promoted: true,
            attempt: 0,
            earliest_lease_until: None,
        }
    });
    next
}

impl Engine {
    /// Finishes a settle cut short between its two writes (spec §4 "Crashes"): `record` let go of its entity (done,
    /// or `waiting`) but `head` — its entity's, as read; `None`: read it — still names it in flight. Moves the head
    /// on as the settle would have and promotes what waits, deciding on the record as read again after the head.
    /// Whether this call moved it (false: the head names another event, or the record still holds its entity).
    pub(crate) async fn finish_settle(
        &self,
        record: &EventRecord,
        head: Option<EntityHead>,
        invocation: &Invocation,
    ) -> Result<bool, EngineError> {
        let Some(entity) = record.entity.as_ref().filter(|_| record.status.releases_entity()) else {
            return Ok(false);
        };
        let known = head.map_or(KnownHead::Unread, |h| KnownHead::Read(Box::new(Some(h))));
        let ended = Ended::Stored(&record.event_id);
        let Some(moved) = move_on(self, entity, ended, known).await? else {
            return Ok(false);
        };
        tracing::info!(event_id = %record.event_id, entity = %entity, "finished a settle cut short: the head moved on");
        moved.follow_up(self, entity, invocation).await;
        Ok(true)
    }

    /// Re-drives every event waiting for `dependency`, which just completed an event. A failed listing is only
    /// logged: the sweeper finds waits whose dependency appeared.
    pub(crate) async fn resume_waiters(&self, dependency: &EntityKey, invocation: &Invocation) {
        let query = EventQuery { waiting_for: Some(dependency.to_string()), ..EventQuery::default() };
        match self.ports.store.list_events(&query).await {
            Ok(waiting) => {
                for record in waiting.iter().filter(|r| r.status == Status::Waiting) {
                    tracing::info!(event_id = %record.event_id, dependency = %dependency, "dependency completed; resuming");
                    self.send_redrive_of(record, record.entity.as_ref(), invocation).await;
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
            self.send_redrive_of(record, record.entity.as_ref(), invocation).await;
        }
    }

    /// Sends a re-drive message for a promoted or stranded event of `entity`. A failed send is only logged: the
    /// event's lease runs out and the sweeper sends it again.
    pub(crate) async fn send_redrive(
        &self,
        event_id: &crate::model::EventId,
        entity: Option<&EntityKey>,
        invocation: &Invocation,
    ) {
        self.send_redrive_to(event_id, entity, None, invocation).await;
    }

    /// Sends the re-drive of a recorded event to the queue of the processor that recorded it
    /// ([`crate::Settings::redrive_queue_for`]; the one queue when none is named).
    pub(crate) async fn send_redrive_of(
        &self,
        record: &EventRecord,
        entity: Option<&EntityKey>,
        invocation: &Invocation,
    ) {
        let queue = self.settings.redrive_queue_for(record);
        self.send_redrive_to(&record.event_id, entity, queue, invocation).await;
    }

    async fn send_redrive_to(
        &self,
        event_id: &crate::model::EventId,
        entity: Option<&EntityKey>,
        queue: Option<&str>,
        invocation: &Invocation,
    ) {
        let body = Message::redrive_body(event_id, entity, RedriveReason::Promotion, false);
        let mut message = OutgoingMessage::new(body);
        message.trace_header = invocation.trace_id.clone();
        if let Err(e) = self.send_routed(queue, vec![message]).await {
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
