//! Verify (spec §7): replay an entity's archived events in memory with the reference mirror's rules ([`replay`]),
//! compare the result with what the destination holds ([`Destination::read`](crate::destination::Destination::read)),
//! and report equal or differs with a field diff ([`diff`]); `repair` re-drives the newest applied event, forced and
//! recorded as a repair, to put its state back.
//!
//! A full pass ([`Engine::verify_all`]) walks every entity's head page by page (resumable from a page's cursor) and
//! first compares by content hash: the event that should hold each `latest_wins` entity is found from stored
//! metadata alone (the guard's rules need no payload), and the destination's state is hashed the way the event's
//! content was (SHA-256 of its kind and payload). Only an entity whose hashes differ has its payloads read (from the
//! payload store, SHA-256 checked) and replayed for the field diff. `in_order` totals depend on every delta's
//! amount, so those entities are always replayed.

pub mod checkpoint;
mod diff;
mod flagged;
pub mod replay;

pub use diff::{diff, summary, FieldDiff};
pub use flagged::VerifiedEntity;

use super::Engine;
use crate::destination::guard::{MirrorRecord, LOCAL_EDIT};
use crate::destination::{DestinationRecord, ReadError};
use crate::model::{content_hash, EntityHead, EntityKey, EventId, EventRecord, Message, RedriveReason};
use crate::settings::Policy;
use crate::store::{EventQuery, OutgoingMessage, StoreError};
use checkpoint::{Checkpoint, InOrderFold};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

/// Why verification could not go on.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The event store failed.
    #[error("reading events and heads: {0}")]
    Store(#[from] StoreError),
    /// The destination could not be read (or can't read at all: then nothing can be verified).
    #[error("reading the destination: {0}")]
    Destination(#[from] ReadError),
}

/// What verification found for one entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Finding {
    /// The destination holds what the replay gives.
    Equal,
    /// It does not (`diff` says where).
    Differs,
    /// It could not be told (`reason` says why): an event in flight, a local edit, an unusable payload.
    Skipped,
}

/// One entity's verification.
#[derive(Debug, Clone, Serialize)]
pub struct EntityReport {
    /// The entity.
    pub entity_key: String,
    /// What was found.
    pub finding: Finding,
    /// Why it differs or was skipped, in a few words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Where the replay (expected) and the destination (actual) differ.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub diff: Vec<FieldDiff>,
    /// The applied event whose state the destination should hold (what a repair re-drives).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub newest_event: Option<EventId>,
    /// With `repair`: the event re-driven (forced) to put the state back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repaired: Option<EventId>,
    /// With `repair`: why the difference was not repaired.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_repaired: Option<String>,
    /// Applied events replayed (0 when the content hashes matched).
    pub events_replayed: usize,
    /// Payloads read from the payload store.
    pub payloads_read: usize,
    /// An `in_order` replay's state, for the next verification to go on from, with the record of the newest event
    /// it folded (where it is named once archived).
    #[serde(skip)]
    checkpoint: Option<(Checkpoint, EventRecord)>,
}

impl EntityReport {
    fn new(entity: &EntityKey, finding: Finding) -> Self {
        Self {
            entity_key: entity.to_string(),
            finding,
            reason: None,
            diff: Vec::new(),
            newest_event: None,
            repaired: None,
            not_repaired: None,
            events_replayed: 0,
            payloads_read: 0,
            checkpoint: None,
        }
    }

    fn skipped(entity: &EntityKey, reason: impl Into<String>) -> Self {
        Self { reason: Some(reason.into()), ..Self::new(entity, Finding::Skipped) }
    }
}

/// How to verify.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Re-drive the newest applied event (forced, recorded as a repair) of every entity that differs.
    pub repair: bool,
    /// The X-Ray trace header repair messages carry.
    pub trace_header: Option<String>,
}

/// Which entities a full pass looks at, and how.
#[derive(Debug, Clone, Default)]
pub struct VerifyAllOptions {
    /// Only entities of this source.
    pub source: Option<String>,
    /// Only entities whose head changed at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Heads read per page (0: 500).
    pub page_size: usize,
    /// Stop after this many pages (0: go to the end); the report's `next` resumes the pass.
    pub max_pages: usize,
    /// Repair, trace.
    pub verify: VerifyOptions,
}

/// Counts of a pass.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct VerifyTotals {
    /// Entities looked at.
    pub examined: u64,
    /// Equal.
    pub equal: u64,
    /// Different.
    pub differs: u64,
    /// Skipped.
    pub skipped: u64,
    /// Repairs sent.
    pub repaired: u64,
    /// Payloads read.
    pub payloads_read: u64,
}

impl VerifyTotals {
    /// Counts `report` in.
    pub fn add(&mut self, report: &EntityReport) {
        self.examined += 1;
        match report.finding {
            Finding::Equal => self.equal += 1,
            Finding::Differs => self.differs += 1,
            Finding::Skipped => self.skipped += 1,
        }
        self.repaired += u64::from(report.repaired.is_some());
        self.payloads_read += report.payloads_read as u64;
    }

    /// Adds `other`'s counts (a page's) in.
    pub fn merge(&mut self, other: &VerifyTotals) {
        self.examined += other.examined;
        self.equal += other.equal;
        self.differs += other.differs;
        self.skipped += other.skipped;
        self.repaired += other.repaired;
        self.payloads_read += other.payloads_read;
    }
}

/// What one page (or a whole pass) of a full verification found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    /// The counts.
    #[serde(flatten)]
    pub totals: VerifyTotals,
    /// Every entity that was not equal.
    pub entities: Vec<EntityReport>,
    /// Where the pass goes on (`None`: it is finished).
    pub next: Option<String>,
}

/// Heads read per page by default.
pub const PAGE_SIZE: usize = 500;
/// Entities of a page verified side by side.
const CONCURRENCY: usize = 16;

impl Engine {
    /// Verifies one entity: replays its events (reading their payloads) and compares the result with the
    /// destination; with `options.repair`, re-drives the newest applied event of an entity that differs.
    pub async fn verify(&self, entity: &EntityKey, options: &VerifyOptions) -> Result<EntityReport, VerifyError> {
        self.verify_entity(entity, None, options, Replay::Full).await
    }

    /// Verifies every entity (or those `options` select), one page of heads at a time from `after` (a report's
    /// `next`; `None`: the start), comparing content hashes first; `on_page` gets each page's report, with the
    /// cursor to resume from, once the page is done.
    pub async fn verify_all(
        &self,
        options: &VerifyAllOptions,
        after: Option<String>,
        on_page: &mut (dyn FnMut(&VerifyReport) + Send),
    ) -> Result<VerifyReport, VerifyError> {
        let page_size = if options.page_size == 0 { PAGE_SIZE } else { options.page_size };
        let mut total = VerifyReport { next: after, ..VerifyReport::default() };
        let mut pages = 0;
        loop {
            let page = self.ports.store.list_heads(total.next.as_deref(), page_size).await?;
            let heads: Vec<EntityHead> = page.heads.into_iter().filter(|h| selected(h, options)).collect();
            let mut report = VerifyReport { next: page.next, ..VerifyReport::default() };
            for chunk in heads.chunks(CONCURRENCY) {
                let checks = chunk
                    .iter()
                    .map(|head| self.verify_entity(&head.entity, Some(head), &options.verify, Replay::Hashes));
                for entity in futures_util::future::join_all(checks).await {
                    let entity = entity?;
                    report.totals.add(&entity);
                    if entity.finding != Finding::Equal {
                        report.entities.push(entity);
                    }
                }
            }
            on_page(&report);
            total.totals.merge(&report.totals);
            total.entities.extend(report.entities);
            total.next = report.next;
            pages += 1;
            if total.next.is_none() || (options.max_pages > 0 && pages >= options.max_pages) {
                return Ok(total);
            }
        }
    }

    /// Verifies `entity` (whose head is `head` when already read), replaying as `how` says.
    async fn verify_entity(
        &self,
        entity: &EntityKey,
        head: Option<&EntityHead>,
        options: &VerifyOptions,
        how: Replay,
    ) -> Result<EntityReport, VerifyError> {
        let given_head = head.is_some();
        let read_head;
        let head = match head {
            Some(head) => Some(head),
            None => {
                read_head = self.ports.store.get_head(entity).await?;
                read_head.as_ref()
            }
        };
        if let Some(busy) = head.and_then(busy) {
            return Ok(EntityReport::skipped(entity, busy));
        }
        let query = EventQuery { entity: Some(entity.clone()), ..EventQuery::default() };
        let events = self.ports.store.list_events(&query).await?;
        let policy = self.settings.policy_for(&entity.entity_type);
        // Only what was applied where the destination reads: an outbound change a connector wrote to the external
        // system is not there (its echo ended `duplicate`), and a repair must not write it there again.
        let destination = &self.ports.destination;
        let here: Vec<EventRecord> =
            events.into_iter().filter(|e| e.direction.is_none_or(|d| destination.reads_back(d))).collect();
        let applied = replay::applied(&here, policy);
        let actual = self.ports.destination.read(entity).await?;
        if actual.as_ref().is_some_and(|a| a.event_id.as_deref() == Some(LOCAL_EDIT)) {
            return Ok(EntityReport::skipped(
                entity,
                "edited locally at the destination: a local edit wins over older events, so their replay can't \
                 say what it should hold",
            ));
        }
        if matches!(how, Replay::Hashes) && policy == Policy::LatestWins {
            let nulls = vec![Value::Null; applied.len()];
            let by_metadata =
                replay::replay(entity, applied.iter().copied().zip(&nulls), policy, &self.delta_fields, self.now());
            if let Ok(expected) = by_metadata {
                if same_by_hash(expected.as_ref(), &applied, actual.as_ref()) {
                    return Ok(EntityReport::new(entity, Finding::Equal));
                }
            }
        }
        let mut report = EntityReport::new(entity, Finding::Equal);
        let replayed = match how {
            Replay::GoingOn if policy == Policy::InOrder => self.replay_in_order(entity, &applied, &mut report).await,
            _ => self.replay_all(entity, &applied, policy, &mut report).await,
        };
        let expected = match replayed {
            Ok(expected) => expected,
            Err(reason) => return Ok(EntityReport { finding: Finding::Skipped, reason: Some(reason), ..report }),
        };
        report.newest_event =
            expected.as_ref().and_then(|row| row.event_id.as_deref()).and_then(|id| EventId::parse(id).ok());
        let (diff, reason) = compare(expected.as_ref(), actual.as_ref());
        if diff.is_empty() {
            return Ok(report);
        }
        // The head, the events and the destination were read one after another: an event claimed meanwhile may have
        // written the destination after the listing. Read the head again: moved on, the difference is not one.
        if let Some(moved) = moved_on(head, self.ports.store.get_head(entity).await?.as_ref()) {
            // A head from a page listed a while ago (or from a lagging index): verify again from a fresh read once.
            if given_head {
                return Box::pin(self.verify_entity(entity, None, options, how)).await;
            }
            return Ok(EntityReport::skipped(entity, moved));
        }
        report.finding = Finding::Differs;
        report.diff = diff;
        report.reason = Some(reason);
        if options.repair {
            self.repair(&mut report, policy, &applied, options).await;
        }
        Ok(report)
    }

    /// The row the replay of `applied` (one entity's applied events, in replay order) gives, reading every payload;
    /// the reason when it can't be told.
    async fn replay_all(
        &self,
        entity: &EntityKey,
        applied: &[&EventRecord],
        policy: Policy,
        report: &mut EntityReport,
    ) -> Result<Option<MirrorRecord>, String> {
        let payloads = self.payloads_of(applied, report).await?;
        report.events_replayed = applied.len();
        let steps = applied.iter().copied().zip(&payloads);
        replay::replay(entity, steps, policy, &self.delta_fields, self.now()).map_err(|e| e.to_string())
    }

    /// [`Engine::replay_all`] for an `in_order` entity, going on from the last verification's replay (named on the
    /// record of the newest event it folded) when it folded exactly the events of `applied` applied before it: only
    /// the payloads of those applied since are read. The replay is kept on `report` for the next verification.
    async fn replay_in_order(
        &self,
        entity: &EntityKey,
        applied: &[&EventRecord],
        report: &mut EntityReport,
    ) -> Result<Option<MirrorRecord>, String> {
        let resume = self.kept_replay(entity, applied).await;
        let resumed = resume.and_then(|c| c.since(applied).map(|since| (c.fold, since)));
        let (mut fold, to_fold) = resumed.unwrap_or_else(|| (InOrderFold::default(), applied.to_vec()));
        let payloads = self.payloads_of(&to_fold, report).await?;
        report.events_replayed = to_fold.len();
        let steps = to_fold.iter().copied().zip(&payloads);
        replay::fold_in_order(&mut fold, entity, steps, &self.delta_fields).map_err(|e| e.to_string())?;
        let row = fold.row(&entity.to_string(), self.now());
        report.checkpoint = Checkpoint::after(fold, applied).map(|(checkpoint, newest)| (checkpoint, newest.clone()));
        Ok(row)
    }

    /// The replay the last verification of `entity` kept: named on the record of the newest event it folded, the
    /// newest of `applied` naming one. `None` (a full replay follows) when there is none or it can't be read.
    async fn kept_replay(&self, entity: &EntityKey, applied: &[&EventRecord]) -> Option<Checkpoint> {
        let named = applied.iter().filter(|e| e.replay_kept.is_some()).max_by_key(|e| checkpoint::Position::of(e))?;
        let stored = named.replay_kept.as_ref()?;
        let bytes = match self.ports.payloads.get(stored).await {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::warn!(entity = %entity, error = %e, "the last verification's replay can't be read: replaying every event");
                return None;
            }
        };
        Checkpoint::from_bytes(&bytes)
            .inspect_err(|e| tracing::warn!(entity = %entity, error = %e, "the last verification's replay is not readable: replaying every event"))
            .ok()
    }

    /// The payloads of `records`, counted on `report`; the reason when one can't be used.
    async fn payloads_of(&self, records: &[&EventRecord], report: &mut EntityReport) -> Result<Vec<Value>, String> {
        let mut payloads = Vec::with_capacity(records.len());
        for record in records {
            report.payloads_read += 1;
            payloads.push(self.payload_of(record).await?);
        }
        Ok(payloads)
    }

    /// A stored event's payload, read back and checked against its SHA-256; the reason when it can't be used.
    async fn payload_of(&self, record: &EventRecord) -> Result<Value, String> {
        let bytes = self
            .ports
            .payloads
            .get(&record.payload)
            .await
            .map_err(|e| format!("the payload of {} can't be used: {e}", record.event_id))?;
        serde_json::from_slice(&bytes).map_err(|e| format!("the payload of {} is not JSON: {e}", record.event_id))
    }

    /// Sends the repair of `report`'s entity: the newest applied event re-driven, forced; or says why not.
    async fn repair(
        &self,
        report: &mut EntityReport,
        policy: Policy,
        applied: &[&EventRecord],
        options: &VerifyOptions,
    ) {
        if policy == Policy::InOrder {
            report.not_repaired = Some(
                "in_order totals can't be put back by re-driving a delta (each is applied once), nor by reconcile \
                 (a snapshot row is a total, not a delta): send a delta event that makes up the difference, or \
                 correct the destination"
                    .to_owned(),
            );
            return;
        }
        let Some(newest) = report.newest_event.as_ref().and_then(|id| applied.iter().find(|e| &e.event_id == id))
        else {
            report.not_repaired = Some(
                "no applied event holds what the destination should have; reconcile against a snapshot".to_owned(),
            );
            return;
        };
        let body = Message::redrive_body(&newest.event_id, newest.entity.as_ref(), RedriveReason::Repair, true);
        let mut message = OutgoingMessage::new(body);
        message.trace_header = options.trace_header.clone();
        match self.send_routed(self.settings.redrive_queue_for(newest), vec![message]).await {
            Ok(_) => report.repaired = Some(newest.event_id.clone()),
            Err(e) => {
                report.not_repaired =
                    Some(format!("sending the repair of {} failed: {e}; verify again", newest.event_id))
            }
        }
    }
}

/// How [`Engine::verify_entity`] replays.
#[derive(Clone, Copy)]
enum Replay {
    /// Compare content hashes first (`latest_wins`); replay only an entity whose hashes differ.
    Hashes,
    /// Replay every applied event.
    Full,
    /// Replay, an `in_order` entity going on from its last verification's replay, when there is one.
    GoingOn,
}

/// Why an entity can't be verified now: an event holds it or waits behind it.
fn busy(head: &EntityHead) -> Option<String> {
    let waiting = head.next.is_some() || !head.backlog.is_empty() || head.parked > 0;
    match (&head.inflight, waiting) {
        (Some(inflight), _) => {
            Some(format!("busy: {} is in flight; verify again once it settles", inflight.slot.event_id))
        }
        (None, true) => Some("busy: events wait to be applied; verify again once they are".to_owned()),
        (None, false) => None,
    }
}

/// Why a difference found over `before` (the head the verification started from) does not count, when the head
/// read after it shows that the entity moved on: another version, or something now in flight or waiting.
fn moved_on(before: Option<&EntityHead>, after: Option<&EntityHead>) -> Option<String> {
    if let Some(busy) = after.and_then(busy) {
        return Some(busy);
    }
    (before.map(|h| h.version) != after.map(|h| h.version))
        .then(|| "busy: the entity moved on while it was verified; verify again".to_owned())
}

fn selected(head: &EntityHead, options: &VerifyAllOptions) -> bool {
    options.source.as_ref().is_none_or(|s| *s == head.entity.source)
        && options.since.is_none_or(|since| head.updated_at >= since)
}

/// Whether the destination holds what `expected` (a replay over metadata alone) says, by content hash: the
/// destination's state hashed with the winning event's kind equals that event's content hash.
fn same_by_hash(expected: Option<&MirrorRecord>, applied: &[&EventRecord], actual: Option<&DestinationRecord>) -> bool {
    let absent = actual.is_none_or(|a| a.deleted);
    let Some(row) = expected.filter(|row| !row.deleted) else {
        return absent;
    };
    let Some(actual) = actual.filter(|a| !a.deleted) else {
        return false;
    };
    let winner = applied.iter().find(|e| Some(e.event_id.as_str()) == row.event_id.as_deref());
    match winner.and_then(|w| w.kind.zip(w.content_hash)) {
        Some((kind, hash)) => content_hash(kind, &actual.state) == hash,
        None => false,
    }
}

/// Where the destination's `actual` record differs from the `expected` row, and why in a few words.
fn compare(expected: Option<&MirrorRecord>, actual: Option<&DestinationRecord>) -> (Vec<FieldDiff>, String) {
    let expected_state = expected.filter(|r| !r.deleted).map(|r| &r.state);
    let actual_state = actual.filter(|r| !r.deleted).map(|r| &r.state);
    match (expected_state, actual_state) {
        (None, None) => (Vec::new(), String::new()),
        (Some(e), Some(a)) => {
            let diffs = diff(e, a);
            let reason = format!("fields differ: {}", summary(&diffs));
            (diffs, reason)
        }
        (Some(e), None) => {
            let what = if actual.is_some() { "deleted at the destination" } else { "missing at the destination" };
            (vec![FieldDiff { path: String::new(), expected: Some(e.clone()), actual: None }], what.to_owned())
        }
        (None, Some(a)) => {
            let what = if expected.is_some() {
                "present at the destination, but its newest applied event deleted it"
            } else {
                "present at the destination, but no applied event wrote it"
            };
            (vec![FieldDiff { path: String::new(), expected: None, actual: Some(a.clone()) }], what.to_owned())
        }
    }
}
