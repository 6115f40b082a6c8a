//! The sweeper: re-drives events whose entity lease ran out (a crashed holder, a lost promotion message) and queued
//! events nothing will promote, finishes settles cut short between the record and the head, resumes
//! waits whose dependency appeared without resuming them, fails waits past the configured limit (spec §4, §6),
//! records what only the dead-letter queue knows about and removes dead letters of events already done, and verifies
//! entities flagged `needs_verification` (spec §5, §7; `verify/flagged.rs`).

use super::read_past::ReadPast;
use super::settle::dependency_appeared_since;
use super::verify::VerifiedEntity;
use super::{Discarded, Engine, EngineError, Invocation};
use crate::model::{EntityHead, EntityKey, ErrorInfo, ErrorKind, EventId, EventRecord, Status};
use crate::store::{EventQuery, StoreError, Write};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::{HashMap, HashSet};

/// What one sweep found and did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SweepReport {
    /// Heads with an expired lease that were looked at.
    pub examined: usize,
    /// Events a re-drive message was sent for: their lease expired, or they were `queued` for longer than a lease
    /// with nothing to promote them (their entity idle, its head not holding them).
    pub redriven: Vec<EventId>,
    /// Events whose settle was cut short between the record and the head (the head still named them in flight
    /// after they were done or `waiting`): their heads were moved on and what waited promoted.
    pub settles_finished: Vec<EventId>,
    /// `waiting` events that were looked at.
    pub waits_examined: usize,
    /// Waiting events re-driven because their dependency completed an event since they began waiting.
    pub waits_resumed: Vec<EventId>,
    /// Waiting events that waited longer than the limit and are now `failed`.
    pub waits_failed: Vec<EventId>,
    /// Events found only in the dead-letter queue (never recorded, or never decided), now recorded `failed`.
    pub dead_letters_recorded: Vec<EventId>,
    /// Dead letters removed because their event is already done, by event (each event's history notes it).
    pub dead_letters_discarded: Vec<Discarded>,
    /// Entities flagged `needs_verification` that were verified, with what was found (recorded on their heads).
    pub verified: Vec<VerifiedEntity>,
    /// The invocation's deadline came near ([`SWEEP_RESERVE`]): the sweep stopped where it was, and what it did not
    /// reach waits for the next one.
    pub out_of_time: bool,
}

/// What a sweep keeps before its invocation's deadline, to return what it did (the sweeper prints its metrics then)
/// instead of being stopped mid-write: after an outage one sweep may find more than its invocation has time for.
pub const SWEEP_RESERVE: chrono::Duration = chrono::Duration::seconds(5);

impl Engine {
    /// Finds up to `limit` heads whose in-flight lease expired and re-drives their event when it is not done (or
    /// moves the head on when it is: a settle cut short); then re-drives up to `limit` `queued` events nothing will
    /// promote; then
    /// looks at up to `limit` waiting events, resuming those whose dependency appeared and failing those that
    /// waited too long; then looks at up to `limit` dead letters, recording those the engine does not know and
    /// removing those whose event is already done; then verifies up to `limit` entities flagged
    /// `needs_verification`.
    /// A sweep whose invocation's deadline comes near stops where it is ([`SweepReport::out_of_time`]).
    pub async fn sweep(&self, limit: usize, invocation: &Invocation) -> Result<SweepReport, EngineError> {
        let mut report = SweepReport::default();
        self.sweep_expired_leases(limit, invocation, &mut report).await?;
        if self.stops_sweep(invocation, &mut report) {
            return Ok(report);
        }
        self.sweep_stranded(limit, invocation, &mut report).await?;
        if self.stops_sweep(invocation, &mut report) {
            return Ok(report);
        }
        self.sweep_waits(limit, invocation, &mut report).await?;
        if self.stops_sweep(invocation, &mut report) {
            return Ok(report);
        }
        let dead_letters = self.record_dead_letters(limit, invocation).await?;
        report.dead_letters_recorded = dead_letters.recorded;
        report.dead_letters_discarded = dead_letters.discarded;
        report.out_of_time |= dead_letters.out_of_time;
        if self.stops_sweep(invocation, &mut report) {
            return Ok(report);
        }
        self.verify_flagged(limit, invocation, &mut report).await?;
        Ok(report)
    }

    /// Whether the sweep must stop now: its invocation's deadline is less than [`SWEEP_RESERVE`] away (noted in
    /// `report`), or a phase stopped for it already.
    pub(super) fn stops_sweep(&self, invocation: &Invocation, report: &mut SweepReport) -> bool {
        report.out_of_time |= self.near_deadline(invocation);
        report.out_of_time
    }

    /// Whether `invocation`'s deadline is less than [`SWEEP_RESERVE`] away (never, without a deadline).
    pub(super) fn near_deadline(&self, invocation: &Invocation) -> bool {
        invocation.deadline.is_some_and(|deadline| self.now() + SWEEP_RESERVE >= deadline)
    }

    /// Acts on up to `limit` heads whose lease expired (`limit` 0: all of them). A head whose hold its event's record
    /// keeps past the head's lease (a retry inside the hold, a failure's later retry) is passed over and the listing
    /// read on ([`ReadPast`]): such heads keep the leases their claims wrote, sort before holds that expired later,
    /// and must not hide them (spec §9 "A sweep reads past what it passes over").
    async fn sweep_expired_leases(
        &self,
        limit: usize,
        invocation: &Invocation,
        report: &mut SweepReport,
    ) -> Result<(), EngineError> {
        let before = self.now() - self.settings.clock_margin;
        let mut examined = HashSet::new();
        let mut read = ReadPast::new(limit);
        loop {
            let heads = self.ports.store.expired_leases(before, read.listed).await?;
            let listed = heads.len();
            for head in heads {
                if read.done() || self.stops_sweep(invocation, report) {
                    break;
                }
                if examined.insert(head.entity.clone()) {
                    read.count(self.sweep_expired_head(head, before, invocation, report).await?);
                }
            }
            if report.out_of_time || !read.again(listed) {
                break;
            }
        }
        report.examined = examined.len();
        Ok(())
    }

    /// Re-drives the event of an expired head, finishes its settle cut short, or leaves it (its message comes back);
    /// `false` when the head's hold is not over (its record's lease runs) and it was passed over.
    async fn sweep_expired_head(
        &self,
        head: EntityHead,
        before: DateTime<Utc>,
        invocation: &Invocation,
        report: &mut SweepReport,
    ) -> Result<bool, EngineError> {
        let Some(inflight) = head.inflight.as_ref() else { return Ok(true) };
        let event_id = inflight.slot.event_id.clone();
        let record = self.ports.store.get_event(&event_id).await?;
        // A hold its record keeps past the head's lease is not over: a retry runs inside it, or a failure's
        // retry is due later (spec §9 "A failure writes the record alone").
        if record.as_ref().is_some_and(|r| inflight.hold_until(Some(r)) >= before) {
            return Ok(false);
        }
        match record {
            // A settle cut short between the record and the head: finish it.
            Some(record) if record.status.releases_entity() => {
                if self.finish_settle(&record, Some(head), invocation).await? {
                    report.settles_finished.push(event_id);
                }
            }
            Some(record) => {
                self.send_redrive_of(&record, Some(&head.entity), invocation).await;
                report.redriven.push(event_id);
            }
            // A claim cut short before its record write (the claim writes the head first): the event's message
            // was not acknowledged and comes back, or is dead-lettered and recorded by the dead-letter sweep.
            None => {
                tracing::info!(event_id = %event_id, entity = %head.entity, "expired claim of an event not recorded yet; its message comes back")
            }
        }
        Ok(true)
    }

    /// Re-drives up to `limit` `queued` events nothing will promote: queued for longer than a lease, and their
    /// entity's head has no event in flight and does not hold them as `next` or in its backlog. An `in_order` event
    /// parked outside a full backlog is found again by a listing when the backlog empties (`settle.rs`, `unpark`); on
    /// DynamoDB that listing reads an eventually consistent index and may miss an event parked just before. The
    /// listing runs newest first and its held events are passed over, so it is read on ([`ReadPast`]: a busy
    /// entity's long backlog must not hide an older stranded event); each entity's head is read once.
    async fn sweep_stranded(
        &self,
        limit: usize,
        invocation: &Invocation,
        report: &mut SweepReport,
    ) -> Result<(), EngineError> {
        let queued_before = self.now() - self.settings.lease - self.settings.clock_margin;
        let mut heads: HashMap<EntityKey, Option<EntityHead>> = HashMap::new();
        let stranded = async |record: &EventRecord| -> Result<bool, EngineError> {
            let Some(entity) = record.entity.as_ref().filter(|_| record.updated_at < queued_before) else {
                return Ok(false);
            };
            let head = match heads.get(entity) {
                Some(head) => head,
                None => {
                    let head = self.ports.store.get_head(entity).await?;
                    heads.entry(entity.clone()).or_insert(head)
                }
            };
            let holds = |h: &EntityHead| {
                h.inflight.is_some()
                    || h.next.as_ref().is_some_and(|n| n.event_id == record.event_id)
                    || h.backlog.iter().any(|s| s.event_id == record.event_id)
            };
            if head.as_ref().is_some_and(holds) {
                return Ok(false);
            }
            tracing::warn!(event_id = %record.event_id, entity = %entity, "queued with nothing to promote it; re-driving");
            self.send_redrive_of(record, Some(entity), invocation).await;
            Ok(true)
        };
        // Received before then too (the listing's time is the arrival).
        let listing = (Status::Queued, queued_before);
        self.each_received_before(listing, limit, invocation, report, |r| &mut r.redriven, stranded).await?;
        Ok(())
    }

    /// Acts on `listing`'s events (of its status, received before its time), each once, on up to `limit` of them,
    /// reading the newest-first listing on past those `act` passes over ([`ReadPast`]) and stopping near the
    /// deadline; `act` answers whether it acted on an event, which then joins the list of `report` that `acted_on`
    /// names. Returns the events examined.
    async fn each_received_before(
        &self,
        (status, until): (Status, DateTime<Utc>),
        limit: usize,
        invocation: &Invocation,
        report: &mut SweepReport,
        acted_on: fn(&mut SweepReport) -> &mut Vec<EventId>,
        mut act: impl AsyncFnMut(&EventRecord) -> Result<bool, EngineError>,
    ) -> Result<HashSet<EventId>, EngineError> {
        let mut examined = HashSet::new();
        let mut read = ReadPast::new(limit);
        loop {
            let query =
                EventQuery { status: Some(status), until: Some(until), limit: read.listed, ..EventQuery::default() };
            let page = self.ports.store.list_events(&query).await?;
            let listed = page.len();
            for record in page {
                if read.done() || self.stops_sweep(invocation, report) {
                    break;
                }
                if !examined.insert(record.event_id.clone()) {
                    continue;
                }
                let acted = act(&record).await?;
                if acted {
                    acted_on(report).push(record.event_id);
                }
                read.count(acted);
            }
            if report.out_of_time || !read.again(listed) {
                break;
            }
        }
        Ok(examined)
    }

    async fn sweep_waits(
        &self,
        limit: usize,
        invocation: &Invocation,
        report: &mut SweepReport,
    ) -> Result<(), EngineError> {
        let mut examined = self.fail_overdue_waits(limit, invocation, report).await?;
        let query = EventQuery { status: Some(Status::Waiting), limit, ..EventQuery::default() };
        let waiting = self.ports.store.list_events(&query).await?;
        for record in waiting {
            if self.stops_sweep(invocation, report) {
                break;
            }
            examined.insert(record.event_id.clone());
            // An index read may list an event that has left the status since; an overdue one was judged above.
            let Some(since) = record.waiting_since.filter(|_| record.status == Status::Waiting) else { continue };
            if self.now() - since > self.settings.max_wait {
                continue;
            }
            let Some(dependency) = record.waiting_for.as_deref().and_then(|k| EntityKey::parse(k).ok()) else {
                continue;
            };
            let head = self.ports.store.get_head(&dependency).await?;
            if head.is_some_and(|h| dependency_appeared_since(&h, since - self.settings.clock_margin)) {
                self.send_redrive_of(&record, record.entity.as_ref(), invocation).await;
                report.waits_resumed.push(record.event_id);
            }
        }
        report.waits_examined = examined.len();
        Ok(())
    }

    /// Ends the waits past the limit as `failed`. They were received before the limit too, so they are listed among
    /// the waits received then, read on past those that started waiting later ([`ReadPast`]): a listing of the
    /// newest waits never reached them behind more newer waits than a sweep acts on.
    async fn fail_overdue_waits(
        &self,
        limit: usize,
        invocation: &Invocation,
        report: &mut SweepReport,
    ) -> Result<HashSet<EventId>, EngineError> {
        let max_wait = self.settings.max_wait;
        let overdue = async |record: &EventRecord| -> Result<bool, EngineError> {
            let overdue = record.status == Status::Waiting
                && record.waiting_since.is_some_and(|since| self.now() - since > max_wait);
            Ok(overdue && self.fail_wait(record.event_id.clone(), invocation).await?)
        };
        let listing = (Status::Waiting, self.now() - max_wait);
        self.each_received_before(listing, limit, invocation, report, |r| &mut r.waits_failed, overdue).await
    }

    /// Ends a wait past the limit as `failed`; false when the event moved on meanwhile.
    async fn fail_wait(&self, event_id: EventId, invocation: &Invocation) -> Result<bool, EngineError> {
        for _ in 0..self.settings.max_rounds {
            let Some(mut record) = self.ports.store.get_event(&event_id).await? else { return Ok(false) };
            if record.status != Status::Waiting {
                return Ok(false);
            }
            let error = wait_timeout(&record, self.settings.max_wait);
            let note = Some(error.message.clone());
            record.error = Some(error);
            record.transition(self.entry(Status::Failed, record.attempt, invocation, note))?;
            match self.ports.store.commit(vec![Write::event(record)]).await {
                Ok(()) => return Ok(true),
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(EngineError::Contended(event_id.to_string(), self.settings.max_rounds))
    }
}

fn wait_timeout(record: &EventRecord, max_wait: chrono::Duration) -> ErrorInfo {
    let dependency = record.waiting_for.as_deref().unwrap_or("its dependency");
    ErrorInfo {
        kind: ErrorKind::DependencyTimeout,
        message: format!(
            "waited more than {}s for {dependency}; create it, then `synctrail reprocess {}`",
            max_wait.num_seconds(),
            record.event_id
        ),
        retryable: false,
        causes: Vec::new(),
        field: None,
    }
}
