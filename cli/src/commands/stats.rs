//! `synctrail stats`: counts per status, queue depth, dead letters, events in flight, oldest message age; on AWS
//! also the requests this command made, by service and operation.

use super::Context;
use crate::args::BackendKind;
use crate::backend::AnyBackend;
use crate::error::CliError;
use crate::output::{write_json, Table};
use crate::requests::{figures, write_figures, RequestFigures};
use chrono::Utc;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;
use synctrail::model::Status;
use synctrail::store::EventStore;

/// The queue's figures, as `stats --json` prints them.
#[derive(Debug, Clone, Serialize)]
pub struct QueueFigures {
    /// Messages ready to receive.
    pub visible: u64,
    /// Messages received and not yet deleted or visible again.
    pub in_flight: u64,
    /// Messages sent with a delay not yet over (retries waiting for their backoff).
    pub delayed: u64,
    /// Messages in the dead-letter queue.
    pub dead_letters: u64,
    /// Age of the oldest message still in the queue, in seconds.
    pub oldest_message_age_seconds: Option<f64>,
}

/// Everything `stats` reports.
#[derive(Debug, Clone, Serialize)]
pub struct StatsReport {
    /// `embedded` or `aws`.
    pub backend: BackendKind,
    /// Where the backend is.
    pub location: String,
    /// Events per status (every status listed, zeros included).
    pub statuses: BTreeMap<String, u64>,
    /// Events recorded.
    pub total: u64,
    /// Events recorded in a non-terminal status.
    pub not_terminal: u64,
    /// Entities with an event in flight (holding a lease).
    pub inflight: u64,
    /// The ingest queue.
    pub queue: QueueFigures,
    /// AWS only: the requests this `stats` process made to gather the figures (a per-process count, not the
    /// pipeline's), by service and operation.
    pub requests: Option<RequestFigures>,
}

/// Counts events per status, every status included, in the spec's order of statuses.
pub async fn status_counts(store: &dyn EventStore) -> Result<Vec<(Status, u64)>, CliError> {
    let counts = store.count_by_status().await.map_err(CliError::store("counting events by status"))?;
    Ok(Status::ALL.iter().map(|s| (*s, counts.get(s).copied().unwrap_or(0))).collect())
}

/// Gathers the figures of `backend`.
pub async fn collect(backend: &AnyBackend) -> Result<StatsReport, CliError> {
    let counts = status_counts(backend.ports.store.as_ref()).await?;
    let depth = backend.ports.queue.depth().await.map_err(CliError::store("measuring the queue"))?;
    let inflight = backend.ports.store.count_inflight().await.map_err(CliError::store("counting events in flight"))?;
    let now = Utc::now();
    let requests = backend.aws().map(|aws| {
        let scope = "made by this synctrail process only, to gather these figures; not the pipeline's";
        figures(scope, &aws.requests.snapshot(), &aws.destination_requests.snapshot(), None)
    });
    Ok(StatsReport {
        backend: backend.kind(),
        location: backend.describe(),
        requests,
        total: counts.iter().map(|(_, n)| n).sum(),
        not_terminal: counts.iter().filter(|(s, _)| !s.is_terminal()).map(|(_, n)| n).sum(),
        statuses: counts.iter().map(|(s, n)| (s.as_str().to_owned(), *n)).collect(),
        inflight,
        queue: QueueFigures {
            visible: depth.visible,
            in_flight: depth.in_flight,
            delayed: depth.delayed,
            dead_letters: depth.dead_letters,
            oldest_message_age_seconds: depth
                .oldest_sent_at
                .map(|at| (now - at).num_milliseconds().max(0) as f64 / 1000.0),
        },
    })
}

/// Writes the per-status table (statuses with no events left out, the total last).
pub fn write_status_table(out: &mut dyn Write, counts: &[(Status, u64)]) -> std::io::Result<()> {
    let mut table = Table::new(&["status", "events", "terminal"]).align_right(1);
    for (status, n) in counts.iter().filter(|(_, n)| *n > 0) {
        table.row(vec![status.to_string(), n.to_string(), if status.is_terminal() { "yes" } else { "no" }.to_owned()]);
    }
    table.row(vec!["total".to_owned(), counts.iter().map(|(_, n)| n).sum::<u64>().to_string(), String::new()]);
    table.write(out)
}

/// Runs `synctrail stats`.
pub async fn execute(ctx: &Context, out: &mut dyn Write) -> Result<(), CliError> {
    let backend = ctx.open().await?;
    let report = collect(&backend).await?;
    if ctx.json {
        return write_json(out, &report);
    }
    writeln!(out, "{}:\n", report.location)?;
    let counts: Vec<(Status, u64)> =
        Status::ALL.iter().map(|s| (*s, report.statuses.get(s.as_str()).copied().unwrap_or(0))).collect();
    write_status_table(out, &counts)?;
    writeln!(out)?;
    let q = &report.queue;
    let mut table = Table::new(&["figure", "value"]).align_right(1);
    let age = q.oldest_message_age_seconds.map_or_else(|| "-".to_owned(), |s| format!("{s:.1} s"));
    for (name, value) in [
        ("queue: visible", q.visible.to_string()),
        ("queue: in flight", q.in_flight.to_string()),
        ("queue: delayed", q.delayed.to_string()),
        ("dead letters", q.dead_letters.to_string()),
        ("oldest message age", age),
        ("entities in flight", report.inflight.to_string()),
    ] {
        table.row(vec![name.to_owned(), value]);
    }
    table.write(out)?;
    if let Some(requests) = &report.requests {
        writeln!(out)?;
        write_figures(out, requests)?;
    }
    Ok(())
}
