//! Reconcile (spec §7): compare another system's current records (a snapshot: NDJSON envelopes, e.g. an export) with
//! what the destination holds, entity by entity, and — with `apply` — send a corrective envelope for each difference
//! through the same pipeline.
//!
//! - The destination is read with [`Destination::read`](crate::destination::Destination::read); a destination that
//!   can't read is refused with its reason. The entities looked at are the snapshot's, plus every entity of the
//!   source (and type) synctrail knows (its heads), so one the snapshot lacks shows up as `extra`.
//! - Corrections are ordinary envelopes on the ingest queue: the snapshot's row (its source, its `updated_at` as the
//!   order key, so the ordering rules still guard: a snapshot row older than what the destination holds never
//!   overwrites it), or a delete at the snapshot's time for an extra entity; `caused_by` = `reconcile:<run id>`, and
//!   an event id derived from run and entity ([`correction_id`]), so sending one again records no second event.
//! - An entity type whose policy is `in_order` gets no corrections: its events are deltas, and a snapshot row is a
//!   total (a delete carries no delta), which the destination refuses for good. Its differences are reported, with
//!   why nothing was sent ([`IN_ORDER_NOT_CORRECTABLE`]), and counted as `not_correctable`, not as sent.
//! - A snapshot line that is not UTF-8, or not a valid envelope, is reported and not compared; the entity it names
//!   (when that can be read) is left alone: not corrected from a garbled row, and not taken for `extra` and deleted.
//! - Entities are handled in key order, read ten at a time. With a rate, their corrections are sent in batches of at
//!   most `max(1, floor(rate))` (up to 10), paced by [`time_to_send`](crate::engine::pacing) between batches. With
//!   `apply`, the run's state (how far it got, the counts so far) is stored beside the snapshot
//!   ([`SnapshotStore::write_state`]) after the sends of every ten entities with corrections (and every
//!   [`CHECKPOINT_EVERY`] entities): a run interrupted halfway is resumed by its id and starts after the last
//!   checkpoint; what it sends again past it carries the same ids.

mod classify;

pub use classify::{classify, correction_id, delete_at, Classified, DiffKind, IN_ORDER_NOT_CORRECTABLE};

use super::verify::FieldDiff;
use super::Engine;
use crate::destination::{DestinationRecord, ReadError};
use crate::model::{EntityKey, Envelope, EventId, Message, DEFAULT_TENANT};
use crate::store::{OutgoingMessage, SnapshotStore, StoreError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use tokio::time::Instant;

/// Entities handled between two checkpoints of a run's state when nothing is sent.
pub const CHECKPOINT_EVERY: usize = 1000;
/// Entities read side by side, and corrections sent per message batch (SQS takes at most 10; a rate under 10 per
/// second sends fewer: [`send_batch`]).
const BATCH: usize = 10;
/// Heads read per page when listing the source's entities.
const HEAD_PAGE: usize = 500;

/// How to reconcile.
#[derive(Debug, Clone, Default)]
pub struct ReconcileOptions {
    /// The snapshot's source: its rows of other sources are ignored, and synctrail's entities of this source are
    /// compared.
    pub source: String,
    /// Only this entity type.
    pub entity_type: Option<String>,
    /// Send the corrections (default: a dry run, which sends and stores nothing).
    pub apply: bool,
    /// At most this many corrections per second.
    pub rate_per_second: Option<f64>,
    /// The run's id: an existing run with this id is resumed; `None`: a new run.
    pub run_id: Option<String>,
    /// The snapshot's time, the order key of corrective deletes; `None`: when the snapshot was last modified.
    pub as_of: Option<DateTime<Utc>>,
    /// The X-Ray trace header corrections carry.
    pub trace_header: Option<String>,
}

/// Counts per kind of difference (plus the rows not compared).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiffCounts {
    /// Equal on both sides.
    pub same: u64,
    /// In the snapshot, not at the destination.
    pub missing: u64,
    /// At the destination, not in the snapshot.
    pub extra: u64,
    /// Different, the destination newer.
    pub stale: u64,
    /// Different.
    pub different: u64,
    /// Snapshot rows of another source or type.
    pub ignored: u64,
    /// Snapshot lines that are not valid envelopes.
    pub invalid: u64,
    /// Of the missing, extra and different: those of `in_order` entity types, reported and sent no correction
    /// ([`IN_ORDER_NOT_CORRECTABLE`]). Left out of the JSON when there are none.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub not_correctable: u64,
}

fn is_zero(count: &u64) -> bool {
    *count == 0
}

impl DiffCounts {
    /// Missing, extra and different: what corrections are for (`not_correctable` among them).
    pub fn differences(&self) -> u64 {
        self.missing + self.extra + self.different
    }

    fn count(&mut self, kind: DiffKind) {
        match kind {
            DiffKind::Same => self.same += 1,
            DiffKind::Missing => self.missing += 1,
            DiffKind::Extra => self.extra += 1,
            DiffKind::Stale => self.stale += 1,
            DiffKind::Different => self.different += 1,
        }
    }
}

/// One entity that is not the same on both sides.
#[derive(Debug, Clone, Serialize)]
pub struct EntityDiff {
    /// The entity.
    pub entity_key: String,
    /// How it compares.
    pub kind: DiffKind,
    /// The snapshot's state (`null`: it has none).
    pub snapshot: Value,
    /// The destination's state (`null`: it has none).
    pub destination: Value,
    /// Where they differ.
    pub diff: Vec<FieldDiff>,
    /// The corrective event (sent, or with a dry run: that would be sent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<EventId>,
    /// Why a missing, extra or different entity gets no correction ([`IN_ORDER_NOT_CORRECTABLE`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_corrected: Option<String>,
}

/// A snapshot line that is not a valid envelope.
#[derive(Debug, Clone, Serialize)]
pub struct InvalidLine {
    /// Its line number, from 1.
    pub line: usize,
    /// What is wrong with it.
    pub error: String,
    /// The entity it names, when that can be read: left alone by the run (not compared, corrected or deleted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entity: Option<String>,
}

/// What a reconcile run found and did.
#[derive(Debug, Clone, Serialize)]
pub struct ReconcileReport {
    /// The run.
    pub run_id: String,
    /// Nothing was sent or stored.
    pub dry_run: bool,
    /// The snapshot's location.
    pub snapshot: String,
    /// The source compared.
    pub source: String,
    /// The entity type compared, when one was chosen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entity_type: Option<String>,
    /// The snapshot's time (the order key of corrective deletes).
    pub as_of: DateTime<Utc>,
    /// Counts over the whole run (a resumed run's earlier part included).
    pub counts: DiffCounts,
    /// Corrections sent by the whole run (with a dry run: that would be sent); never those of `in_order` types
    /// (`counts.not_correctable`).
    pub sent: u64,
    /// Of those, the ones this invocation sent (a resumed run's earlier parts sent the rest).
    pub sent_now: u64,
    /// The run had gone through every entity before this invocation, which therefore looked at nothing and sent
    /// nothing.
    pub already_finished: bool,
    /// The entities that are not the same, from this invocation (a resumed run lists only what it looked at).
    pub entities: Vec<EntityDiff>,
    /// The lines that are not valid envelopes.
    pub invalid: Vec<InvalidLine>,
    /// Where a resumed run started: the entities up to this key were done before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resumed_after: Option<String>,
    /// The run went through every entity.
    pub finished: bool,
}

/// Why a reconcile run could not be done; with `apply`, what was checkpointed stays done: resume by the run id.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The snapshot could not be read (the store's error names it).
    #[error("{source}; check where the snapshot is")]
    Snapshot {
        /// Where it is.
        location: String,
        /// What the store said.
        source: StoreError,
    },
    /// The run id is not usable.
    #[error("run id {0:?} is invalid: use 1 to 64 letters, digits, '.', '_' or '-'")]
    RunId(String),
    /// The run id names a run over another snapshot, source or entity type.
    #[error("run {run_id} was started over {what}")]
    OtherRun {
        /// The run.
        run_id: String,
        /// What differs.
        what: String,
    },
    /// The destination can't read its records back: there is nothing to compare with.
    #[error("reconcile needs to read the destination, and it can't: {0}")]
    Unreadable(String),
    /// Reading the destination failed.
    #[error("reading the destination failed at {entity}: {reason}; resume with --run-id {run_id}")]
    Destination {
        /// The entity.
        entity: String,
        /// What the destination said.
        reason: String,
        /// The run to resume.
        run_id: String,
    },
    /// The event store or the run state failed.
    #[error("{what}: {source}; resume with --run-id {run_id}")]
    Store {
        /// What was being done.
        what: &'static str,
        /// What the store said.
        source: StoreError,
        /// The run to resume.
        run_id: String,
    },
    /// Sending corrections failed.
    #[error("sending corrections failed: {source}; resume with --run-id {run_id}")]
    Send {
        /// What the queue said.
        source: StoreError,
        /// The run to resume.
        run_id: String,
    },
}

/// A run's state, stored beside the snapshot.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RunState {
    run_id: String,
    snapshot: String,
    snapshot_sha256: String,
    source: String,
    entity_type: Option<String>,
    as_of: DateTime<Utc>,
    /// Every entity up to this key (in key order) is done.
    done_through: Option<String>,
    counts: DiffCounts,
    sent: u64,
    finished: bool,
    started_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

/// A new run's id: the time and six random hex digits (`20260501T120000Z-1a2b3c`).
pub fn new_run_id(now: DateTime<Utc>) -> String {
    let bytes: [u8; 3] = rand::random();
    format!("{}-{}", now.format("%Y%m%dT%H%M%SZ"), hex::encode(bytes))
}

/// Whether `run_id` can name a run (it is part of event ids and object names).
pub fn valid_run_id(run_id: &str) -> bool {
    (1..=64).contains(&run_id.len()) && run_id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// The snapshot's rows, parsed.
struct Rows {
    by_key: BTreeMap<String, Envelope>,
    invalid: Vec<InvalidLine>,
    /// The entities named by invalid lines: left alone.
    held_out: BTreeSet<String>,
    ignored: u64,
}

impl Rows {
    /// Notes an invalid line, and holds out the entity it names.
    fn hold_out(&mut self, line: InvalidLine) {
        self.held_out.extend(line.entity.clone());
        self.invalid.push(line);
    }
}

/// Corrections per message batch at `rate` per second: `floor(rate)`, from 1 to [`BATCH`], so a slow rate sends one
/// at a time rather than ten at once and then a long pause.
fn send_batch(rate: Option<f64>) -> usize {
    rate.map_or(BATCH, |r| (r.floor() as usize).clamp(1, BATCH))
}

impl Engine {
    /// Reconciles the destination against `snapshot` as `options` say; `progress` is told how many of how many
    /// entities are done.
    pub async fn reconcile(
        &self,
        snapshot: &dyn SnapshotStore,
        options: &ReconcileOptions,
        progress: &mut (dyn FnMut(u64, u64) + Send),
    ) -> Result<ReconcileReport, ReconcileError> {
        let location = snapshot.location();
        let read =
            snapshot.read().await.map_err(|source| ReconcileError::Snapshot { location: location.clone(), source })?;
        let run_id = options.run_id.clone().unwrap_or_else(|| new_run_id(self.now()));
        if !valid_run_id(&run_id) {
            return Err(ReconcileError::RunId(run_id));
        }
        let store_error = |what, run_id: &str| {
            let run_id = run_id.to_owned();
            move |source| ReconcileError::Store { what, source, run_id }
        };
        let sha = hex::encode(Sha256::digest(&read.bytes));
        let stored = match options.apply {
            true => snapshot.read_state(&run_id).await.map_err(store_error("reading the run state", &run_id))?,
            false => None,
        };
        let now = self.now();
        let mut state = match stored {
            Some(bytes) => {
                let state: RunState = serde_json::from_slice(&bytes).map_err(|e| ReconcileError::Store {
                    what: "reading the run state",
                    source: StoreError::Corrupt(format!("the state of run {run_id} is not valid: {e}").into()),
                    run_id: run_id.clone(),
                })?;
                check_same_run(&state, &sha, options)?;
                state
            }
            None => RunState {
                run_id: run_id.clone(),
                snapshot: location.clone(),
                snapshot_sha256: sha,
                source: options.source.clone(),
                entity_type: options.entity_type.clone(),
                as_of: options.as_of.or(read.modified_at).unwrap_or(now),
                done_through: None,
                counts: DiffCounts::default(),
                sent: 0,
                finished: false,
                started_at: now,
                updated_at: now,
            },
        };
        let caused_by = format!("reconcile:{run_id}");
        let rows = self.snapshot_rows(&read.bytes, options, &run_id, &caused_by);
        let mut report = ReconcileReport {
            run_id: run_id.clone(),
            dry_run: !options.apply,
            snapshot: location,
            source: options.source.clone(),
            entity_type: options.entity_type.clone(),
            as_of: state.as_of,
            counts: state.counts.clone(),
            sent: state.sent,
            sent_now: 0,
            already_finished: state.finished,
            entities: Vec::new(),
            invalid: rows.invalid.clone(),
            resumed_after: state.done_through.clone(),
            finished: state.finished,
        };
        if state.finished {
            return Ok(report);
        }
        if state.done_through.is_none() {
            state.counts.ignored = rows.ignored;
            state.counts.invalid = rows.invalid.len() as u64;
        }
        let keys =
            self.keys_to_compare(rows, options).await.map_err(store_error("listing the source's entities", &run_id))?;
        let total = keys.len() as u64;
        let todo: Vec<(EntityKey, Option<Envelope>)> = keys
            .into_iter()
            .filter(|(key, _)| state.done_through.as_ref().is_none_or(|done| key > done))
            .map(|(_, entry)| entry)
            .collect();
        let mut done = total - todo.len() as u64;
        progress(done, total);
        let mut since_checkpoint = 0;
        let rate = options.rate_per_second.filter(|r| *r > 0.0 && options.apply);
        let batch_size = send_batch(rate);
        // When the next batch of corrections may go (with a rate, after the one before).
        let mut next_send: Option<Instant> = None;
        for chunk in todo.chunks(BATCH) {
            let reads = chunk.iter().map(|(entity, _)| self.ports.destination.read(entity));
            let held = futures_util::future::join_all(reads).await;
            let mut corrections = Vec::new();
            for ((entity, row), held) in chunk.iter().zip(held) {
                let held = held.map_err(|e| match e {
                    ReadError::Unsupported(why) => ReconcileError::Unreadable(why),
                    ReadError::Failed(reason) => {
                        ReconcileError::Destination { entity: entity.to_string(), reason, run_id: run_id.clone() }
                    }
                })?;
                let entity_key = entity.to_string();
                let delete = match row {
                    Some(_) => None,
                    None => correction_id(&run_id, &entity_key)
                        .and_then(|id| delete_at(entity, state.as_of, id, &caused_by)),
                };
                let policy = self.settings.policy_for(&entity.entity_type);
                let classified = classify(row.clone(), held.as_ref(), delete, policy);
                state.counts.count(classified.kind);
                if classified.kind == DiffKind::Same {
                    continue;
                }
                if classified.not_correctable.is_some() {
                    state.counts.not_correctable += 1;
                }
                let event_id = classified.correction.as_ref().map(|c| c.event_id.clone());
                report.entities.push(EntityDiff {
                    entity_key,
                    kind: classified.kind,
                    snapshot: row.as_ref().map_or(Value::Null, |r| r.payload.clone()),
                    destination: held_state(held.as_ref()),
                    diff: classified.diff,
                    event_id,
                    not_corrected: classified.not_correctable.map(str::to_owned),
                });
                corrections.extend(classified.correction);
            }
            if options.apply {
                for batch in corrections.chunks(batch_size) {
                    if let Some(due) = next_send {
                        tokio::time::sleep_until(due).await;
                    }
                    let started = Instant::now();
                    let messages = batch.iter().map(|c| self.correction_message(c, options)).collect();
                    self.ports
                        .queue
                        .send(messages)
                        .await
                        .map_err(|source| ReconcileError::Send { source, run_id: run_id.clone() })?;
                    state.sent += batch.len() as u64;
                    next_send = rate.map(|rate| started + crate::engine::pacing::time_to_send(batch.len(), rate));
                }
            } else {
                state.sent += corrections.len() as u64;
            }
            done += chunk.len() as u64;
            since_checkpoint += chunk.len();
            state.done_through = chunk.last().map(|(entity, _)| entity.to_string());
            if options.apply && (!corrections.is_empty() || since_checkpoint >= CHECKPOINT_EVERY) {
                self.save(snapshot, &mut state).await.map_err(store_error("storing the run state", &run_id))?;
                since_checkpoint = 0;
            }
            progress(done, total);
        }
        state.finished = true;
        if options.apply {
            self.save(snapshot, &mut state).await.map_err(store_error("storing the run state", &run_id))?;
        }
        report.counts = state.counts;
        report.sent_now = state.sent - report.sent;
        report.sent = state.sent;
        report.finished = true;
        Ok(report)
    }

    /// Parses the snapshot's lines (split at `\n` or `\r\n`, each UTF-8): valid envelopes of the source (and type)
    /// become corrective envelopes of this run, one per entity (the newest when a key repeats). An entity an invalid
    /// line names is held out (not compared), whatever its other lines say.
    fn snapshot_rows(&self, bytes: &[u8], options: &ReconcileOptions, run_id: &str, caused_by: &str) -> Rows {
        let mut rows = Rows { by_key: BTreeMap::new(), invalid: Vec::new(), held_out: BTreeSet::new(), ignored: 0 };
        let wanted = |entity: &EntityKey| {
            entity.source == options.source && options.entity_type.as_ref().is_none_or(|t| *t == entity.entity_type)
        };
        for (index, raw) in bytes.split_inclusive(|b| *b == b'\n').enumerate() {
            let raw = match raw.strip_suffix(b"\n") {
                Some(line) => line.strip_suffix(b"\r").unwrap_or(line),
                None => raw,
            };
            let invalid = |error: String, text: &str| InvalidLine {
                line: index + 1,
                error,
                entity: named_entity(text).filter(|entity| wanted(entity)).map(|entity| entity.to_string()),
            };
            let line = match std::str::from_utf8(raw) {
                Ok(line) => line,
                Err(e) => {
                    rows.hold_out(invalid(not_utf8(raw, &e), &String::from_utf8_lossy(raw)));
                    continue;
                }
            };
            if line.trim().is_empty() {
                continue;
            }
            let mut envelope = match Message::parse(line, self.settings.max_payload_bytes) {
                Ok(Message::Envelope(envelope)) => *envelope,
                Ok(Message::Redrive { .. }) => {
                    rows.hold_out(invalid("a re-drive request, not an envelope".to_owned(), ""));
                    continue;
                }
                Err(e) => {
                    rows.hold_out(invalid(e.to_string(), line));
                    continue;
                }
            };
            if !wanted(&envelope.entity) {
                rows.ignored += 1;
                continue;
            }
            let key = envelope.entity.to_string();
            let Some(id) = correction_id(run_id, &key) else {
                rows.hold_out(invalid(format!("no event id can be made for {key} in run {run_id}"), line));
                continue;
            };
            envelope.event_id = id;
            envelope.client_event_id = true;
            envelope.caused_by = Some(caused_by.to_owned());
            envelope.delivery_id = None;
            match rows.by_key.get(&key) {
                Some(kept) if kept.order > envelope.order => {}
                _ => {
                    rows.by_key.insert(key, envelope);
                }
            }
        }
        rows.by_key.retain(|key, _| !rows.held_out.contains(key));
        rows
    }

    /// The snapshot's entities and every entity of the source (and type) synctrail knows, by key.
    async fn keys_to_compare(
        &self,
        rows: Rows,
        options: &ReconcileOptions,
    ) -> Result<BTreeMap<String, (EntityKey, Option<Envelope>)>, StoreError> {
        let mut keys: BTreeMap<String, (EntityKey, Option<Envelope>)> =
            rows.by_key.into_iter().map(|(key, row)| (key, (row.entity.clone(), Some(row)))).collect();
        let held_out = rows.held_out;
        let mut after = None;
        loop {
            let page = self.ports.store.list_heads(after.as_deref(), HEAD_PAGE).await?;
            for head in page.heads {
                let entity = head.entity;
                let wanted = entity.source == options.source
                    && options.entity_type.as_ref().is_none_or(|t| *t == entity.entity_type);
                let key = entity.to_string();
                if wanted && !held_out.contains(&key) {
                    keys.entry(key).or_insert((entity, None));
                }
            }
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(keys),
            }
        }
    }

    /// The queue message of a correction.
    fn correction_message(&self, correction: &Envelope, options: &ReconcileOptions) -> OutgoingMessage {
        let mut message = OutgoingMessage::new(correction.to_json().to_string());
        message.trace_header = options.trace_header.clone();
        message
    }

    /// Stores `state`, stamped now.
    async fn save(&self, snapshot: &dyn SnapshotStore, state: &mut RunState) -> Result<(), StoreError> {
        state.updated_at = self.now();
        let bytes = serde_json::to_vec_pretty(state)
            .map_err(|e| StoreError::Backend(format!("encoding the run state: {e}").into()))?;
        snapshot.write_state(&state.run_id, &bytes).await
    }
}

/// Refuses to resume `state` over another snapshot, source or type.
fn check_same_run(state: &RunState, sha: &str, options: &ReconcileOptions) -> Result<(), ReconcileError> {
    let scope = |source: &str, entity_type: &Option<String>| match entity_type {
        Some(t) => format!("source {source}, entity type {t}"),
        None => format!("source {source}, every entity type"),
    };
    let what = if state.snapshot_sha256 != sha {
        let sha = state.snapshot_sha256.get(..12).unwrap_or(&state.snapshot_sha256);
        Some(format!(
            "other snapshot content (SHA-256 {sha}…); a run resumes over the same content only: choose another run id \
             for this one"
        ))
    } else if state.source != options.source || state.entity_type != options.entity_type {
        Some(format!(
            "{}, and this one asks for {}: ask for the same to resume it, or choose another run id",
            scope(&state.source, &state.entity_type),
            scope(&options.source, &options.entity_type)
        ))
    } else {
        None
    };
    match what {
        Some(what) => Err(ReconcileError::OtherRun { run_id: state.run_id.clone(), what }),
        None => Ok(()),
    }
}

/// Why a snapshot line is not UTF-8: where (from 1, in the line) and the byte found there.
fn not_utf8(line: &[u8], error: &std::str::Utf8Error) -> String {
    let at = error.valid_up_to();
    let byte = line.get(at).map_or_else(String::new, |b| format!(" (0x{b:02X})"));
    format!("not UTF-8 at byte {} of the line{byte}; export the snapshot as UTF-8", at + 1)
}

/// The entity an invalid snapshot line names, when its `source`, `entity_type`, `external_id` (and `tenant`) can be
/// read as an envelope's are.
fn named_entity(line: &str) -> Option<EntityKey> {
    let value: Value = serde_json::from_str(line).ok()?;
    let part = |name: &str| value.get(name).and_then(Value::as_str);
    let tenant = match value.get("tenant") {
        None | Some(Value::Null) => DEFAULT_TENANT,
        Some(tenant) => tenant.as_str()?,
    };
    EntityKey::new(tenant, part("source")?, part("entity_type")?, part("external_id")?).ok()
}

fn held_state(held: Option<&DestinationRecord>) -> Value {
    held.filter(|h| !h.deleted).map_or(Value::Null, |h| h.state.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrections_go_in_batches_of_the_rate_rounded_down_from_one_to_ten() {
        let sizes: Vec<usize> = [Some(0.5), Some(1.0), Some(2.9), Some(9.99), Some(50.0), None].map(send_batch).into();
        assert_eq!(sizes, vec![1, 1, 2, 9, 10, 10]);
    }

    #[test]
    fn a_line_not_in_utf8_says_at_which_byte_and_what_to_do() {
        let line = [b"{\"title\": \"Caf".as_slice(), &[0xE9], b"\"}"].concat();
        let error = std::str::from_utf8(&line).expect_err("Latin-1");
        let said = not_utf8(&line, &error);
        assert_eq!(said, "not UTF-8 at byte 15 of the line (0xE9); export the snapshot as UTF-8");
    }

    #[test]
    fn the_entity_of_an_invalid_line_is_read_when_its_key_is_there() {
        let named = named_entity(r#"{"source": "erp", "entity_type": "product", "external_id": "p-1"}"#);
        assert_eq!(named.map(|e| e.to_string()).as_deref(), Some("default/erp/product/p-1"));
        assert_eq!(named_entity(r#"{"source": "erp", "entity_type": "product"}"#), None);
        assert_eq!(named_entity("not json"), None);
    }
}
