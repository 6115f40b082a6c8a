//! One attempt: decide against the entity's head (spec §4, §5), record the decision in one compare-and-set
//! commit, and when the event claims its entity, apply it and settle the result.

use super::decide::{decide, Candidate, Decision, DecisionContext};
use super::intake::{as_recorded, redelivered, reject_conflict};
use super::settle::{fits_flagged, promote_next, settle, End};
use super::{Engine, EngineError, Incoming, Invocation, Outcome};
use crate::destination::{ApplyOutcome, Change, DestinationError};
use crate::model::{EntityHead, Envelope, ErrorInfo, ErrorKind, EventId, EventRecord, Inflight, Slot, Status};
use crate::settings::Policy;
use crate::store::{PartialCommit, StoreError, Write};
use futures_util::FutureExt;
use std::panic::AssertUnwindSafe;

/// What recording a decision led to.
enum Recorded {
    /// The message is done with (or must come back later).
    Done(Box<Outcome>),
    /// The event holds its entity now: apply it (`canceled`: how many superseded events the claim canceled;
    /// `previous_unknown`: an earlier attempt's outcome at the destination is unknown).
    Claimed { head: Box<EntityHead>, record: Box<EventRecord>, canceled: u32, previous_unknown: bool },
}

/// The entity's head, as far as the caller knows it.
pub(super) enum KnownHead {
    /// Not read yet: the first round reads it.
    Unread,
    /// Read with the event's record, or as the claim wrote it (`None`: the entity has no head yet); the first round
    /// decides on it (a head changed since makes the commit a conflict, and the next round reads again).
    Read(Box<Option<EntityHead>>),
}

/// Decides and records the event's fate, retrying lost compare-and-set races, then applies it if it claimed. The
/// record comes boxed, as [`Claim`]'s parts and [`settle`]'s record do: each level of the record's future that takes
/// a record by value holds it twice (the argument and the variable it is moved to).
pub(super) async fn drive(
    engine: &Engine,
    envelope: &Envelope,
    record: Box<EventRecord>,
    known: KnownHead,
    message: &Incoming,
    invocation: &Invocation,
    force: bool,
) -> Result<Outcome, EngineError> {
    let mut record = *record;
    // Our own unless another message recorded the event first with another order key (then it goes on as recorded).
    let mut envelope = std::borrow::Cow::Borrowed(envelope);
    let store = &engine.ports.store;
    let policy = engine.settings.policy_for(&envelope.entity.entity_type);
    if record.status == Status::Received {
        if let Some(reason) = engine.settings.disabled_reason(&envelope.entity) {
            return disable(engine, record, reason, invocation).await;
        }
    }
    let mut known = Some(known);
    for round in 0..engine.settings.max_rounds {
        if round > 0 {
            // Another writer got there first: pause a random while, so writers that collided don't collide again
            // in step (`contention_pause`).
            engine.ports.clock.pause(engine.contention_pause(round)).await;
            // The record and the head read again together (one request where the store can), as on arrival.
            let (stored, head) = store.get_event_and_head(&record.event_id, &envelope.entity).await?;
            known = Some(KnownHead::Read(Box::new(head)));
            // Someone else changed the record (a concurrent delivery, a takeover): continue from what they wrote.
            // Unchanged, our own copy stands (it may carry a restart not yet written).
            if let Some(stored) = stored.filter(|s| s.version != record.version) {
                // Another message recorded this client id first, with other content or for another entity: ours is
                // the conflict.
                if stored.content_hash != Some(envelope.content_hash)
                    || stored.entity.as_ref() != Some(&envelope.entity)
                {
                    return reject_conflict(engine, &envelope, message, invocation).await;
                }
                if stored.status.is_terminal() {
                    return redelivered(engine, stored).await;
                }
                if stored.order != Some(envelope.order) || stored.direction != Some(envelope.direction) {
                    as_recorded(envelope.to_mut(), &stored);
                }
                record = stored;
            }
        }
        let now = engine.now();
        let head = match known.take() {
            Some(KnownHead::Read(head)) => *head,
            Some(KnownHead::Unread) | None => store.get_head(&envelope.entity).await?,
        };
        let head = head.unwrap_or_else(|| EntityHead::empty(envelope.entity.clone(), now));
        // Decided on the head as its holder's record completes it; written as stored.
        let noted = holder_as_recorded(engine, &head, &record, policy).await?;
        let noted = noted.map(|holder| EntityHead { inflight: Some(holder), ..head.clone() });
        let view = noted.as_ref().unwrap_or(&head);
        let candidate = Candidate {
            event_id: record.event_id.clone(),
            order: envelope.order,
            content_hash: envelope.content_hash,
            status: record.status,
            parked: record.parked,
            direction: envelope.direction,
            shows_echo: view.echo.as_ref().is_some_and(|guard| guard.fingerprint.matches(&envelope.payload)),
        };
        let ctx = DecisionContext {
            now,
            clock_margin: engine.settings.clock_margin,
            policy,
            max_backlog: engine.settings.max_backlog,
        };
        let decision =
            if force { forced(view, &candidate, &ctx, engine.settings.lease) } else { decide(view, &candidate, &ctx) };
        let decision = match decision {
            Decision::Duplicate { of } => duplicate_of_recorded(engine, view, of).await?,
            Decision::Enqueue { .. } if policy == Policy::InOrder && !backlog_has_room(engine, &head, &candidate) => {
                Decision::Park
            }
            decision => decision,
        };
        if decision == Decision::AlreadyQueued && record.version == 0 {
            // The head names our id but we never stored it: another message did. Re-read it (and reject ours if
            // its content differs) before acknowledging anything.
            continue;
        }
        match record_decision(engine, decision, head, record.clone(), &candidate, policy, invocation, force).await {
            Ok(Recorded::Done(outcome)) => return Ok(*outcome),
            Ok(Recorded::Claimed { head, record, canceled, previous_unknown }) => {
                let claim = Claim { head, record, previous_unknown, force };
                let mut outcome = apply(engine, &envelope, claim, message, invocation).await?;
                outcome.facts.canceled += canceled;
                return Ok(outcome);
            }
            Err(EngineError::Store(StoreError::Conflict(_))) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(EngineError::Contended(envelope.entity.to_string(), engine.settings.max_rounds))
}

/// Whether `head`'s backlog takes `candidate` within the store's budget for a head: an `in_order` event that would
/// take it past is parked instead, as beyond a full backlog (spec §9 "A backlog no larger than its head's budget").
fn backlog_has_room(engine: &Engine, head: &EntityHead, candidate: &Candidate) -> bool {
    let mut grown = head.clone();
    into_backlog(&mut grown, candidate.slot());
    fits_flagged(engine, grown)
}

/// Puts `slot` into `head`'s `in_order` backlog, in order-key order (after those of the same order key).
fn into_backlog(head: &mut EntityHead, slot: Slot) {
    let at = head.backlog.partition_point(|s| s.order <= slot.order);
    head.backlog.insert(at, slot);
}

/// A duplicate of the event the head names in flight counts once that event's record holds the same change. A claim
/// writes the head first (spec §9 "The claim in two writes, the head first"): one cut short before its record write
/// leaves a slot that no record backs, and another message with the same event id and other content may record
/// that content under it meanwhile (its own claim then writes its slot). Until the holder's record backs its slot,
/// the event waits as for a busy entity (spec §9 "A duplicate of an unrecorded claim waits").
async fn duplicate_of_recorded(engine: &Engine, head: &EntityHead, of: EventId) -> Result<Decision, EngineError> {
    let Some(holder) = head.inflight.as_ref().filter(|i| i.slot.event_id == of) else {
        return Ok(Decision::Duplicate { of });
    };
    let recorded = engine.ports.store.get_event(&of).await?;
    if recorded.is_some_and(|r| r.content_hash == Some(holder.slot.content_hash)) {
        return Ok(Decision::Duplicate { of });
    }
    let now = engine.now();
    Ok(Decision::Busy {
        until: (holder.lease_until + engine.settings.clock_margin).max(now + engine.settings.backoff_base),
    })
}

/// The head's holder as its record completes it, when the record says more than the head (`None`: the head says
/// it all). The head names the hold and the lease its claim took; the record may add that the hold's last attempt
/// failed (`errored`), and a later lease: a retry claimed inside the hold runs under its own, and a failure whose
/// retry is due after the head's lease carries one past it (spec §9 "A failure writes the record alone", "A retry
/// inside its hold writes the record alone"). The holder's record is the arriving event's own (its retry, a copy),
/// or read here when a newer `latest_wins` event decides whether the holder still holds (§4 rules 2 and 3): its
/// head's lease live (it may have failed), or ended on a claimed hold (the record may hold it longer).
/// `in_order` decisions queue behind any holder and don't need it.
async fn holder_as_recorded(
    engine: &Engine,
    head: &EntityHead,
    record: &EventRecord,
    policy: Policy,
) -> Result<Option<Inflight>, EngineError> {
    let Some(inflight) = head.inflight.as_ref() else { return Ok(None) };
    let read;
    let holder = if inflight.slot.event_id == record.event_id {
        record
    } else {
        let live = engine.now() <= inflight.lease_until + engine.settings.clock_margin;
        if policy != Policy::LatestWins || !(live || inflight.claimed()) {
            return Ok(None);
        }
        read = engine.ports.store.get_event(&inflight.slot.event_id).await?;
        match read.as_ref() {
            Some(holder) => holder,
            None => return Ok(None),
        }
    };
    let errored = inflight.holder_errored(holder);
    let lease_until = inflight.hold_until(Some(holder));
    if errored == inflight.errored && lease_until == inflight.lease_until {
        return Ok(None);
    }
    Ok(Some(Inflight { errored, lease_until, ..inflight.clone() }))
}

/// A new (or restarted) event of a disabled source or tenant: kept as `disabled`, not applied, re-drivable.
async fn disable(
    engine: &Engine,
    mut record: EventRecord,
    reason: String,
    invocation: &Invocation,
) -> Result<Outcome, EngineError> {
    let event_id = record.event_id.clone();
    record.transition(engine.entry(Status::Disabled, record.attempt, invocation, Some(reason)))?;
    let outcome = Outcome::ack(&event_id, Status::Disabled).about(&record).transitioned();
    match engine.ports.store.commit(vec![Write::event(record)]).await {
        Ok(()) => Ok(outcome),
        // Another delivery recorded it first: whatever it decided stands.
        Err(StoreError::Conflict(_)) => match engine.ports.store.get_event(&event_id).await? {
            Some(stored) => redelivered(engine, stored).await,
            None => Err(EngineError::Incomplete(event_id, "disabled record vanished after a conflict")),
        },
        Err(e) => Err(e.into()),
    }
}

/// `reprocess --force`: ordering is skipped, but still one event in flight per entity. Behind another event's hold
/// that is over (a crash, an errored holder), it looks again a `lease` later: the holder's own message or the
/// sweeper comes back for it, and looking each second spent the forced message's receives toward the dead-letter
/// queue first.
fn forced(head: &EntityHead, candidate: &Candidate, ctx: &DecisionContext, lease: chrono::Duration) -> Decision {
    match &head.inflight {
        Some(i) if i.slot.event_id != candidate.event_id => {
            let hold_ends = i.lease_until + ctx.clock_margin;
            Decision::Busy { until: if hold_ends > ctx.now { hold_ends } else { ctx.now + lease } }
        }
        _ => decide(head, candidate, ctx),
    }
    .forced()
}

impl Decision {
    fn forced(self) -> Self {
        match self {
            Decision::Busy { until } => Decision::Busy { until },
            Decision::AlreadyQueued
            | Decision::Park
            | Decision::Enqueue { .. }
            | Decision::Duplicate { .. }
            | Decision::Dropped { .. } => Decision::Claim { tie: false, out_of_order: false, cancel: Vec::new() },
            claim @ Decision::Claim { .. } => claim,
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn record_decision(
    engine: &Engine,
    decision: Decision,
    mut head: EntityHead,
    mut record: EventRecord,
    candidate: &Candidate,
    policy: Policy,
    invocation: &Invocation,
    force: bool,
) -> Result<Recorded, EngineError> {
    let now = engine.now();
    let attempt = record.attempt;
    let event_id = record.event_id.clone();
    let before = record.status;
    let mut writes = Vec::new();
    let mut canceled = 0;
    let mut promoted = None;
    // Queuing (or parking) the event behind its entity's holder: the record, then the head (spec §9).
    let (mut queued, mut cancels) = (false, Vec::new());
    match decision {
        Decision::Duplicate { of } => {
            let note = format!("duplicate of {of}");
            record.duplicate_of = Some(of);
            record.transition(engine.entry(Status::Duplicate, attempt, invocation, Some(note)))?;
            promoted = release(engine, &mut head, &event_id, &mut writes);
        }
        Decision::Dropped { newer } => {
            let note = format!("stale: {newer} is newer");
            record.dropped_for = Some(newer.to_string());
            record.transition(engine.entry(Status::Dropped, attempt, invocation, Some(note)))?;
            promoted = release(engine, &mut head, &event_id, &mut writes);
        }
        Decision::AlreadyQueued => {
            return Ok(Recorded::Done(Box::new(Outcome::ack(&event_id, record.status).about(&record))))
        }
        Decision::Park => {
            head.parked += 1;
            head.updated_at = now;
            let note = Some(format!("parked: {} events already wait in the backlog", head.backlog.len()));
            if record.status != Status::Queued {
                record.transition(engine.entry(Status::Queued, attempt, invocation, note))?;
            }
            record.parked = true;
            writes.push(Write::head(head));
            queued = true;
        }
        Decision::Busy { until } => {
            let outcome = Outcome::retry(&event_id, Some(record.status), until - now).about(&record);
            if record.version == 0 {
                // Recorded now, so the event is known even if the queue gives up on its message.
                engine.ports.store.commit(vec![Write::event(record)]).await?;
            }
            return Ok(Recorded::Done(Box::new(outcome)));
        }
        Decision::Enqueue { tie, cancel } => {
            match policy {
                Policy::LatestWins => head.next = Some(candidate.slot()),
                Policy::InOrder => into_backlog(&mut head, candidate.slot()),
            }
            head.updated_at = now;
            record.tie |= tie;
            // In the head now, parked no longer (if a park's head write did not land, spec §9).
            record.parked = false;
            let behind = head.inflight.as_ref().map(|i| format!("behind {}", i.slot.event_id));
            if record.status != Status::Queued {
                record.transition(engine.entry(Status::Queued, attempt, invocation, behind))?;
            }
            cancels = cancel_writes(engine, cancel.iter(), &event_id, None, invocation).await?;
            canceled = cancels.len() as u32;
            writes.push(Write::head(head));
            queued = true;
        }
        Decision::Claim { tie, out_of_order, cancel } => {
            // A delta that waited in the backlog may be older than what was applied meanwhile.
            let out_of_order = out_of_order
                || (policy == Policy::InOrder && head.applied.as_ref().is_some_and(|a| candidate.order < a.order));
            let claim = ClaimedRecord { lease_until: engine.lease_until(invocation), tie, out_of_order, force };
            // The retry of an attempt that failed inside its hold, the head as the hold's claim wrote it: the
            // record alone (spec §9 "A retry inside its hold writes the record alone").
            let in_hold = head.inflight.as_ref().is_some_and(|i| i.may_retry_in_hold(&record));
            let verification_noted = !out_of_order || head.needs_verification;
            if in_hold && cancel.is_empty() && !force && verification_noted {
                return claim_in_hold(engine, head, record, &claim, invocation).await;
            }
            let previous_unknown = claim.write_on(engine, &mut record, invocation)?;
            let before_claim = head.inflight.clone();
            head.fence += 1;
            let (slot, lease_until) = (candidate.slot(), claim.lease_until);
            let (fence, attempt) = (head.fence, record.attempt);
            // The same event claiming again (a retry, a redelivery, its promotion) keeps its hold's earliest lease end.
            let earliest_lease_until =
                head.inflight.as_ref().filter(|i| i.slot.event_id == event_id).map(Inflight::lease_floor);
            let mut inflight =
                Inflight { slot, lease_until, fence, errored: false, promoted: false, attempt, earliest_lease_until };
            inflight.move_lease(lease_until);
            head.inflight = Some(inflight);
            if head.next.as_ref().is_some_and(|n| n.event_id == event_id || cancel.contains(&n.event_id)) {
                head.next = None;
            }
            head.backlog.retain(|s| s.event_id != event_id);
            head.needs_verification |= out_of_order;
            head.updated_at = now;
            let holder = before_claim.as_ref();
            let cancels = cancel_writes(engine, cancel.iter(), &event_id, holder, invocation).await?;
            let canceled = cancels.len() as u32;
            commit_claim(engine, cancels, &head, &mut record).await?;
            head.version += 1;
            record.version += 1;
            return Ok(Recorded::Claimed {
                head: Box::new(head),
                record: Box::new(record),
                canceled,
                previous_unknown,
            });
        }
    }
    let mut outcome = Outcome::ack(&event_id, record.status).about(&record);
    outcome.facts.transitioned = record.status != before;
    outcome.facts.canceled = canceled;
    let promoted = promoted.map(|next| (next, record.entity.clone()));
    if queued {
        // Spec §9 "Queued in two writes, the record first": a record `queued` that its head does not hold yet is
        // what the sweep of stranded events re-drives, and its message, not acknowledged, comes back meanwhile.
        let steps = std::iter::once(Write::event(record)).chain(writes).collect();
        commit_steps(engine, cancels, steps).await.map_err(|partial| EngineError::Store(partial.error))?;
    } else {
        writes.push(Write::event(record));
        engine.ports.store.commit(writes).await?;
    }
    if let Some((next, entity)) = promoted {
        engine.send_redrive(&next.event_id, entity.as_ref(), invocation).await;
    }
    Ok(Recorded::Done(Box::new(outcome)))
}

/// What a claim writes on its event's record.
struct ClaimedRecord {
    /// Until when the claim holds.
    lease_until: chrono::DateTime<chrono::Utc>,
    /// It ties with a recorded event.
    tie: bool,
    /// `in_order`: it is older than the applied event.
    out_of_order: bool,
    /// Ordering skipped (`reprocess --force`).
    force: bool,
}

impl ClaimedRecord {
    /// Moves `record` to `processing` at its next attempt; whether an earlier attempt's outcome at the destination
    /// is unknown.
    fn write_on(
        &self,
        engine: &Engine,
        record: &mut EventRecord,
        invocation: &Invocation,
    ) -> Result<bool, EngineError> {
        record.attempt += 1;
        let previous_unknown = std::mem::replace(&mut record.write_outcome_unknown, true);
        record.tie |= self.tie;
        record.out_of_order |= self.out_of_order;
        record.forced = self.force;
        record.lease_until = Some(self.lease_until);
        record.read_started_at = Some(engine.now());
        let note = self.force.then(|| "forced: ordering skipped".to_owned());
        record.transition(engine.entry(Status::Processing, record.attempt, invocation, note))?;
        Ok(previous_unknown)
    }
}

/// Claims the retry of an attempt that failed inside its hold: the record alone (`processing`, attempt + 1, its
/// own lease), conditional on its version, the head left as the hold's claim wrote it — its fence, its lease, its
/// attempt (spec §9 "A retry inside its hold writes the record alone"). Whoever else decides reads the record with
/// the head: the hold lasts until the later of the two leases. A newer event that took the entity over meanwhile
/// canceled the record, so this write conflicts and the next round sees it.
async fn claim_in_hold(
    engine: &Engine,
    head: EntityHead,
    mut record: EventRecord,
    claim: &ClaimedRecord,
    invocation: &Invocation,
) -> Result<Recorded, EngineError> {
    let previous_unknown = claim.write_on(engine, &mut record, invocation)?;
    engine.ports.store.commit(vec![Write::event(record.clone())]).await?;
    record.version += 1;
    Ok(Recorded::Claimed { head: Box::new(head), record: Box::new(record), canceled: 0, previous_unknown })
}

/// Writes a claim. Canceling nothing, it is two conditional writes, the head first (spec §9 "The claim in two
/// writes, the head first"): the head alone holds the entity, and a claim cut short before its record write leaves
/// a head that later deliveries of the event wait for until its lease ends, then claim again. Canceling superseded
/// events, it is one all-or-nothing commit, so that a cancel is never written for a claim that did not happen.
/// A conflict on the head means another writer moved first: the caller's next round reads what it wrote. A conflict
/// on the record after the head write is another delivery of the event writing it meanwhile (see
/// [`write_claimed_record_again`]).
async fn commit_claim(
    engine: &Engine,
    cancels: Vec<Write>,
    head: &EntityHead,
    record: &mut EventRecord,
) -> Result<(), EngineError> {
    let claim = vec![Write::head(head.clone()), Write::event(record.clone())];
    let partial = match commit_steps(engine, cancels, claim).await {
        Ok(()) => return Ok(()),
        Err(partial) => partial,
    };
    if partial.applied == 0 {
        return Err(EngineError::Store(partial.error));
    }
    if matches!(partial.error, StoreError::Conflict(_)) && write_claimed_record_again(engine, record).await? {
        return Ok(());
    }
    tracing::info!(event_id = %record.event_id, error = %partial.error, "claim cut short after its head write; the lease decides");
    Err(EngineError::Store(partial.error))
}

/// The claim's head is written, but its record write found a newer version: a copy of the message recorded the event
/// on arrival (it found the entity held), or counted itself a redelivery. While the stored record is still what this
/// claim moves on from (the attempt before this one, in flight nowhere), the claim's record is written over it: the
/// head this delivery wrote holds the entity, and handing the message back would only leave the entity held until
/// the lease ends (spec §9 "The claim in two writes, the head first"). `false` when the record moved on otherwise.
async fn write_claimed_record_again(engine: &Engine, record: &mut EventRecord) -> Result<bool, EngineError> {
    let store = &engine.ports.store;
    let Some(stored) = store.get_event(&record.event_id).await? else { return Ok(false) };
    let before_this_attempt = stored.attempt + 1 == record.attempt;
    if !before_this_attempt || stored.status.is_terminal() || stored.status == Status::Processing {
        return Ok(false);
    }
    let mut again = record.clone();
    again.version = stored.version;
    again.redelivered = again.redelivered.max(stored.redelivered);
    match store.commit(vec![Write::event(again.clone())]).await {
        Ok(()) => {
            *record = again;
            Ok(true)
        }
        Err(StoreError::Conflict(_)) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Writes `steps` one conditional write at a time, in their order, so each step's crash point is one the protocol
/// recovers from; with `cancels` (superseded events this step ends), all of them as one all-or-nothing commit
/// instead, so that a cancel is never written for a step that did not happen.
async fn commit_steps(engine: &Engine, cancels: Vec<Write>, steps: Vec<Write>) -> Result<(), PartialCommit> {
    let store = &engine.ports.store;
    if cancels.is_empty() {
        return store.commit_each(steps).await;
    }
    store.commit(cancels.into_iter().chain(steps).collect()).await.map_err(|error| PartialCommit { applied: 0, error })
}

/// An event judged against an echo guard (spec §10) may hold its entity (promoted while the outbound write was in
/// flight) or wait as its `next`, and an `in_order` event moved into the backlog from outside it may be the same
/// change as the one that now holds the entity: ending it releases that place (in the same commit as its record),
/// and promotes what waits as a settle would.
fn release(engine: &Engine, head: &mut EntityHead, event_id: &EventId, writes: &mut Vec<Write>) -> Option<Slot> {
    let holds = head.inflight.as_ref().is_some_and(|i| &i.slot.event_id == event_id);
    if !holds && !head.is_queued(event_id) {
        return None;
    }
    let now = engine.now();
    head.updated_at = now;
    let promoted = if holds {
        head.inflight = None;
        promote_next(head, engine, now)
    } else {
        head.next = head.next.take().filter(|n| &n.event_id != event_id);
        head.backlog.retain(|s| &s.event_id != event_id);
        None
    };
    writes.push(Write::head(head.clone()));
    promoted
}

/// Marks superseded events `canceled` by `by` (only those not already done). `holder`: the hold a takeover ends, as
/// the head names it; a conflict if its event's retry claimed inside it since the decision and runs under a live
/// lease (that retry wrote its record alone, so the head's version does not show it).
async fn cancel_writes(
    engine: &Engine,
    ids: impl Iterator<Item = &EventId>,
    by: &EventId,
    holder: Option<&Inflight>,
    invocation: &Invocation,
) -> Result<Vec<Write>, EngineError> {
    let mut writes = Vec::new();
    for id in ids {
        // A claim cut short before its record write names an event not recorded yet: nothing to cancel (its message
        // comes back and is decided against the head as it is then).
        let Some(mut superseded) = engine.ports.store.get_event(id).await? else { continue };
        if superseded.status.is_terminal() {
            continue;
        }
        let running = holder.filter(|h| superseded.status == Status::Processing && h.retried_in_hold(&superseded));
        if running.is_some_and(|h| engine.now() <= h.hold_until(Some(&superseded)) + engine.settings.clock_margin) {
            let detail = format!("{id} claimed a retry inside its hold since the decision to take its entity over");
            return Err(EngineError::Store(StoreError::Conflict(detail.into())));
        }
        superseded.canceled_by = Some(by.clone());
        superseded.lease_until = None;
        let note = format!("canceled by newer {by}");
        superseded.transition(engine.entry(Status::Canceled, superseded.attempt, invocation, Some(note)))?;
        writes.push(Write::event(superseded));
    }
    Ok(writes)
}

/// An event that holds its entity, ready to apply. Its head and record stay boxed: every level of the record's
/// future that holds them by value grows by their size (≈ 1.5 KB), and each record's future is copied once whole.
struct Claim {
    head: Box<EntityHead>,
    record: Box<EventRecord>,
    /// An earlier attempt's outcome at the destination is unknown.
    previous_unknown: bool,
    /// Ordering skipped (`reprocess --force`).
    force: bool,
}

/// Applies a claimed event at the destination, panics caught, and settles the result.
async fn apply(
    engine: &Engine,
    envelope: &Envelope,
    claim: Claim,
    message: &Incoming,
    invocation: &Invocation,
) -> Result<Outcome, EngineError> {
    let Claim { head, mut record, previous_unknown, force } = claim;
    let Some(fence) = head.inflight.as_ref().map(|i| i.fence) else {
        return Err(EngineError::Incomplete(record.event_id.clone(), "claimed head has nothing in flight"));
    };
    let change = Change {
        event_id: &envelope.event_id,
        entity: &envelope.entity,
        order: envelope.order,
        updated_at: envelope.updated_at,
        content_hash: envelope.content_hash,
        kind: envelope.kind,
        direction: envelope.direction,
        payload: &envelope.payload,
        fence,
        policy: engine.settings.policy_for(&envelope.entity.entity_type),
        forced: force,
        attempt: record.attempt,
        previous_attempt_unknown: previous_unknown,
        deadline: invocation.deadline,
        trace_id: invocation.trace_id.as_deref(),
    };
    record.write_started_at = Some(engine.now());
    let result = AssertUnwindSafe(engine.ports.destination.apply(&change)).catch_unwind().await;
    let end = match result {
        Ok(Ok(ApplyOutcome::Applied)) => End::Completed(None),
        Ok(Ok(ApplyOutcome::AlreadyApplied)) => End::AlreadyApplied,
        Ok(Ok(ApplyOutcome::Written(write))) => End::Completed(Some(write)),
        Ok(Ok(ApplyOutcome::Superseded { by })) => End::Dropped(by),
        Ok(Ok(ApplyOutcome::MissingDependency { key, .. })) if key == envelope.entity => End::Failed(error_info(
            ErrorKind::Permanent,
            format!("the handler said {key} depends on itself; fix the handler's dependency rule"),
            false,
        )),
        Ok(Ok(ApplyOutcome::MissingDependency { key, request })) => End::Waiting { key, request },
        Ok(Err(DestinationError::Permanent(message))) => End::Failed(error_info(ErrorKind::Permanent, message, false)),
        Ok(Err(DestinationError::Retryable { message: text, retry_after })) => {
            engine.retry_or_fail(&record, message, Failure { kind: ErrorKind::Retryable, text, retry_after })
        }
        Ok(Err(DestinationError::Throttled { message: text, retry_after })) => {
            engine.retry_or_fail(&record, message, Failure { kind: ErrorKind::Throttled, text, retry_after })
        }
        Err(panic) => {
            let failure = Failure { kind: ErrorKind::Panic, text: panic_text(panic.as_ref()), retry_after: None };
            engine.retry_or_fail(&record, message, failure)
        }
    };
    // A `latest_wins` head rarely changes while its event applies (only a newer event arriving makes it `next`):
    // the settle decides on the head as claimed, and reads it again only if its commit conflicts. An `in_order`
    // head changes with every event queued behind: one that had events waiting at the claim is read again first;
    // one with none waiting is likely to have none still, and is decided on as claimed, as a `latest_wins` one.
    let busy = !head.backlog.is_empty() || head.parked > 0 || head.next.is_some();
    let known = match change.policy {
        Policy::InOrder if busy => KnownHead::Unread,
        Policy::LatestWins | Policy::InOrder => KnownHead::Read(Box::new(Some(*head))),
    };
    settle(engine, record, fence, end, known, invocation).await
}

/// The longest a throttled change waits as asked: 11 hours. SQS keeps a message hidden at most 12 hours counted from
/// its receive (a longer visibility change is refused, and the message comes back after its visibility timeout);
/// the invocation that asks has held it up to its own timeout (15 minutes at most) and it may have waited in a
/// batch, so an hour is left for that.
const THROTTLED_DELAY_MAX: chrono::Duration = chrono::Duration::hours(11);

/// An attempt that may succeed later: a retryable or throttled answer, or a panic.
struct Failure {
    /// `Retryable`, `Throttled` or `Panic`.
    kind: ErrorKind,
    /// What happened.
    text: String,
    /// The delay the destination asked for.
    retry_after: Option<std::time::Duration>,
}

impl Engine {
    /// A failure that may pass: `errored` with the requested delay (at most `backoff_max`; a throttled one at most
    /// [`THROTTLED_DELAY_MAX`]) or a backoff, or
    /// `failed` once attempts are exhausted (by our own count, which a throttled attempt does not use up, or
    /// because the queue will dead-letter the message after this receive).
    fn retry_or_fail(&self, record: &EventRecord, message: &Incoming, failure: Failure) -> End {
        let throttled = failure.kind == ErrorKind::Throttled;
        let by_count = !throttled && record.attempts_this_drive() >= self.settings.max_attempts;
        let by_queue = message.receive_count >= self.ports.queue.max_receives();
        if by_count || by_queue {
            let mut info = error_info(
                ErrorKind::AttemptsExhausted,
                format!("gave up after {} attempts", record.attempts_this_drive()),
                false,
            );
            info.causes.push(failure.text);
            End::Exhausted(info)
        } else {
            // A rate limit says when it lifts (GitHub's reset can be an hour away): a throttled change waits that
            // long, not `backoff_max`, so its receives are not used up by retries bound to be throttled again.
            let longest = if throttled { THROTTLED_DELAY_MAX } else { self.settings.backoff_max };
            let delay = match failure.retry_after {
                Some(asked) => chrono::Duration::from_std(asked).unwrap_or(longest).min(longest),
                None => self.backoff(record.attempt),
            };
            End::Errored(error_info(failure.kind, failure.text, true), delay)
        }
    }

    /// Until when a claim made now holds: the invocation's deadline (never before now) plus the clock margin, or
    /// the configured lease when the deadline is unknown.
    fn lease_until(&self, invocation: &Invocation) -> chrono::DateTime<chrono::Utc> {
        let now = self.now();
        match invocation.deadline {
            Some(deadline) => deadline.max(now) + self.settings.clock_margin,
            None => now + self.settings.lease,
        }
    }
}

fn error_info(kind: ErrorKind, message: String, retryable: bool) -> ErrorInfo {
    ErrorInfo { kind, message, retryable, causes: Vec::new(), field: None }
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    let detail = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-text panic payload".to_owned());
    format!("the handler panicked: {detail}")
}
