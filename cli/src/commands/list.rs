//! `synctrail list`: a table of events, filtered by status, source, entity and age.

use super::Context;
use crate::args::ListArgs;
use crate::error::CliError;
use crate::output::{opt, time, Page, Table};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::io::Write;
use synctrail::model::{EntityKey, EventId, EventRecord, Status};
use synctrail::store::EventQuery;

/// One line of `list`, as `list --json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct EventSummary {
    /// The event.
    pub event_id: EventId,
    /// Its status.
    pub status: Status,
    /// Its entity (absent for messages too broken to name one).
    pub entity: Option<String>,
    /// When the record last changed.
    pub updated_at: DateTime<Utc>,
    /// When it was received.
    pub received_at: DateTime<Utc>,
    /// Attempts so far.
    pub attempt: u32,
    /// The event or record its status points at.
    pub pointer: Option<String>,
}

impl From<&EventRecord> for EventSummary {
    fn from(r: &EventRecord) -> Self {
        Self {
            event_id: r.event_id.clone(),
            status: r.status,
            entity: r.entity.as_ref().map(ToString::to_string),
            updated_at: r.updated_at,
            received_at: r.received_at,
            attempt: r.attempt,
            pointer: r.pointer(),
        }
    }
}

/// The entity an `--entity KEY` flag names, if given, as the library reads it (see [`super::entity`] for the
/// short form of an external id with `/`, which the commands resolve against what is recorded).
pub fn parse_entity(flag: Option<&str>) -> Result<Option<EntityKey>, CliError> {
    flag.map(|text| super::entity::readings(text, "--entity").map(|r| r.parsed)).transpose()
}

/// The store query `args` ask for, relative to `now`.
pub fn query(args: &ListArgs, now: DateTime<Utc>) -> Result<EventQuery, CliError> {
    let entity = parse_entity(args.entity.as_deref())?;
    Ok(EventQuery {
        status: args.status,
        source: args.source.clone(),
        entity,
        since: args.since.map(|d| crate::duration::time_ago(now, d, "--since")).transpose()?,
        until: None,
        waiting_for: None,
        limit: args.limit,
    })
}

/// Runs `synctrail list`. When more events match than `--limit` shows, standard error says so and the JSON
/// document carries `total` and `truncated`.
pub async fn execute(ctx: &Context, args: &ListArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let mut query = query(args, Utc::now())?;
    let backend = ctx.open_existing().await?;
    if let Some(text) = args.entity.as_deref() {
        query.entity = Some(super::entity::resolve_noting(&backend.ports, text, "--entity").await?.entity);
    }
    let store = &backend.ports.store;
    // One row more than shown tells whether more exist.
    let peek = EventQuery { limit: if args.limit == 0 { 0 } else { args.limit.saturating_add(1) }, ..query.clone() };
    let records = store.list_events(&peek).await.map_err(CliError::store("listing events"))?;
    let summaries: Vec<EventSummary> = records.iter().map(EventSummary::from).collect();
    let page = Page::cut(summaries, args.limit, store.count_events(&query))
        .await
        .map_err(CliError::store("counting events"))?;
    if let Some(note) = page.note() {
        eprintln!("{note}");
    }
    if ctx.json {
        return page.write_json(out, "events");
    }
    if page.rows.is_empty() {
        writeln!(out, "no events match")?;
        return Ok(());
    }
    let mut table = Table::new(&["event_id", "status", "entity", "updated_at", "attempt", "pointer"]).align_right(4);
    for s in &page.rows {
        table.row(vec![
            s.event_id.to_string(),
            s.status.to_string(),
            opt(s.entity.as_ref()),
            time(s.updated_at),
            s.attempt.to_string(),
            opt(s.pointer.as_ref()),
        ]);
    }
    table.write(out)?;
    Ok(())
}
