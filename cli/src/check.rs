//! The demo's convergence check: the destination matches every entity's expectation, every event sent is recorded
//! in a terminal status (nothing lost, nothing stuck, nothing invented), bad input ended `rejected`, and no event
//! had more than one destination effect.

use crate::backend::AnyBackend;
use crate::backend::BackendExt;
use crate::error::CliError;
use crate::output::shorten;
use crate::workload::Workload;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use synctrail::model::{EventId, EventRecord, Status};
use synctrail::store::EventQuery;

/// What the check found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Convergence {
    /// Entities in the workload.
    pub entities: usize,
    /// Entities whose mirror record is acceptable.
    pub entities_matching: usize,
    /// Distinct event ids the lines sent are recorded under.
    pub events_sent: usize,
    /// Of those, recorded.
    pub events_recorded: usize,
    /// Of those, in a terminal status.
    pub events_terminal: usize,
    /// Lines that must end `rejected` (malformed, idempotency conflicts).
    pub rejections_expected: usize,
    /// Of those, `rejected` as they should be.
    pub rejections_ok: usize,
    /// Destination effects recorded.
    pub effects: usize,
    /// Events with more than one effect.
    pub events_with_several_effects: usize,
    /// Every failed check, one line each.
    pub failures: Vec<String>,
}

impl Convergence {
    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Runs every check of `workload` against `backend`, after its run.
pub async fn check(backend: &AnyBackend, workload: &Workload) -> Result<Convergence, CliError> {
    let mut c = Convergence { entities: workload.expectations.len(), ..Convergence::default() };
    check_mirror(backend, workload, &mut c).await?;
    let records = backend
        .ports
        .store
        .list_events(&EventQuery::default())
        .await
        .map_err(CliError::store("listing every event"))?;
    let records: BTreeMap<EventId, EventRecord> = records.into_iter().map(|r| (r.event_id.clone(), r)).collect();
    check_events(workload, &records, &mut c);
    check_effects(backend, &records, &workload.rejections().into_keys().collect(), &mut c).await?;
    Ok(c)
}

async fn check_mirror(backend: &AnyBackend, workload: &Workload, c: &mut Convergence) -> Result<(), CliError> {
    let rows = backend.mirror_view("demo")?.list(None, 0).await.map_err(CliError::store("listing the mirror"))?;
    let mut rows: BTreeMap<String, _> = rows.into_iter().map(|r| (r.entity_key.clone(), r)).collect();
    for (entity, expected) in &workload.expectations {
        let row = rows.remove(&entity.to_string());
        if expected.matches(row.as_ref()) {
            c.entities_matching += 1;
            continue;
        }
        let held = match &row {
            None => "no record".to_owned(),
            Some(r) if r.deleted => format!("(deleted) written by {}", r.event_id.as_deref().unwrap_or("?")),
            Some(r) => {
                format!("{} written by {}", shorten(&r.state.to_string(), 120), r.event_id.as_deref().unwrap_or("?"))
            }
        };
        c.failures.push(format!("entity {entity}: mirror holds {held}; expected {}", expected.describe()));
    }
    for key in rows.keys() {
        c.failures.push(format!("entity {key}: mirror holds a record although no valid event names it"));
    }
    Ok(())
}

fn check_events(workload: &Workload, records: &BTreeMap<EventId, EventRecord>, c: &mut Convergence) {
    let sent = workload.event_ids();
    c.events_sent = sent.len();
    for id in &sent {
        let Some(record) = records.get(id) else {
            c.failures.push(format!("event {id}: sent but not recorded (lost)"));
            continue;
        };
        c.events_recorded += 1;
        if record.status.is_terminal() {
            c.events_terminal += 1;
        } else {
            c.failures.push(format!("event {id}: stuck in non-terminal status {}", record.status));
        }
        if let Some(problem) = missing_pointer(record) {
            c.failures.push(format!("event {id}: {problem}"));
        }
    }
    for id in records.keys().filter(|id| !sent.contains(*id)) {
        c.failures.push(format!("event {id}: recorded but never sent"));
    }
    let rejections = workload.rejections();
    c.rejections_expected = rejections.len();
    for (id, conflicts_with) in &rejections {
        match records.get(id) {
            Some(r) if r.status == Status::Rejected && &r.conflicts_with == conflicts_with => c.rejections_ok += 1,
            Some(r) if r.status == Status::Rejected => c.failures.push(format!(
                "event {id}: rejected with conflicts_with {:?}, expected {:?}",
                r.conflicts_with.as_ref().map(EventId::as_str),
                conflicts_with.as_ref().map(EventId::as_str)
            )),
            Some(r) => c.failures.push(format!("event {id}: {} but must be rejected", r.status)),
            None => {} // reported as lost above
        }
    }
}

/// A terminal status whose pointer (spec §2) is missing.
fn missing_pointer(r: &EventRecord) -> Option<String> {
    let missing = match r.status {
        Status::Dropped => r.dropped_for.is_none().then_some("dropped_for"),
        Status::Duplicate => r.duplicate_of.is_none().then_some("duplicate_of"),
        Status::Canceled => r.canceled_by.is_none().then_some("canceled_by"),
        Status::Completed => r.completed_at.is_none().then_some("completed_at"),
        _ => None,
    };
    missing.map(|field| format!("{} without {field}", r.status))
}

async fn check_effects(
    backend: &AnyBackend,
    records: &BTreeMap<EventId, EventRecord>,
    rejected: &BTreeSet<EventId>,
    c: &mut Convergence,
) -> Result<(), CliError> {
    let effects =
        backend.mirror_view("demo")?.effects().await.map_err(CliError::store("listing destination effects"))?;
    c.effects = effects.len();
    let mut per_event: BTreeMap<&EventId, usize> = BTreeMap::new();
    for (id, _) in &effects {
        *per_event.entry(id).or_default() += 1;
    }
    for (id, n) in per_event {
        if n > 1 {
            c.events_with_several_effects += 1;
            c.failures.push(format!("event {id}: {n} destination effects, expected at most one"));
        }
        if rejected.contains(id) {
            c.failures.push(format!("event {id}: must be rejected but had a destination effect"));
        }
        if !records.contains_key(id) {
            c.failures.push(format!("event {id}: a destination effect for an event that is not recorded"));
        }
    }
    Ok(())
}
