//! `synctrail stats`: counts per status, queue depth, dead letters, events in flight, stalled leases, oldest message
//! age, and the processor's metrics computed from the event records (ties, out-of-order, redelivered, rejected,
//! retries, latency percentiles); on AWS also the requests this command made, by service and operation.
//! `--watch [SECS]` redraws the live figures every SECS seconds until Ctrl-C (or `--watch-count` refreshes).

use super::Context;
use crate::args::{BackendKind, StatsArgs};
use crate::backend::AnyBackend;
use crate::backend::BackendExt;
use crate::error::CliError;
use crate::output::{write_json, Table};
use crate::requests::{figures, write_figures, RequestFigures};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use synctrail::model::{EventRecord, Status};
use synctrail::store::{EventQuery, EventStore};

/// On AWS the record-based figures come from at most this many events, the newest received first.
pub const AWS_SAMPLE: usize = 10_000;

/// Clears a terminal and moves the cursor home, so a watch redraws in place.
const CLEAR_SCREEN: &str = "\x1b[H\x1b[2J";

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
    /// When the figures were gathered.
    pub at: DateTime<Utc>,
    /// Events per status (every status listed, zeros included).
    pub statuses: BTreeMap<String, u64>,
    /// Events recorded.
    pub total: u64,
    /// Events recorded in a non-terminal status.
    pub not_terminal: u64,
    /// Entities with an event in flight (holding a lease).
    pub inflight: u64,
    /// Entities whose hold has expired: the heads the sweeper would act on ([`stalled_leases`]; not those whose
    /// event's record still holds them, such as a failure's retry not due yet).
    pub stalled_leases: u64,
    /// The ingest queue.
    pub queue: QueueFigures,
    /// The processor's metrics computed from the event records (not with `--watch`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<EventFigures>,
    /// AWS only: the requests this `stats` process made to gather the figures (a per-process count, not the
    /// pipeline's), by service and operation.
    pub requests: Option<RequestFigures>,
}

/// What the event records say about processing: the figures the processor's EMF metrics carry.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct EventFigures {
    /// How many event records these figures come from.
    pub sampled: u64,
    /// Set when only the newest events were read (AWS), saying how many.
    pub sample_note: Option<String>,
    /// Completed events flagged as ties (same order key as an earlier event, other content).
    pub ties: u64,
    /// Completed `in_order` events applied although older than the last applied one.
    pub out_of_order: u64,
    /// Messages that repeated an event already done.
    pub redelivered: u64,
    /// Rejected inputs.
    pub rejected: u64,
    /// Attempts beyond each event's first.
    pub retries: u64,
    /// Milliseconds from the first receipt to completion, per completed event.
    pub latency_since_received_at: Option<Percentiles>,
    /// Milliseconds from the external system's `updated_at` to completion, per completed event.
    pub latency_since_updated_at: Option<Percentiles>,
}

/// Percentiles of a set of durations, in milliseconds (nearest rank).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Percentiles {
    /// How many values.
    pub count: u64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

impl Percentiles {
    /// The percentiles of `values` (milliseconds); `None` when there are none.
    pub fn of(mut values: Vec<f64>) -> Option<Self> {
        if values.is_empty() {
            return None;
        }
        values.sort_by(f64::total_cmp);
        let rank = |p: f64| values[((p / 100.0 * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1];
        Some(Self {
            count: values.len() as u64,
            p50_ms: rank(50.0),
            p90_ms: rank(90.0),
            p99_ms: rank(99.0),
            max_ms: values[values.len() - 1],
        })
    }
}

impl EventFigures {
    /// The figures of `records` (`sample_note` left unset).
    pub fn of(records: &[EventRecord]) -> Self {
        let mut figures = Self { sampled: records.len() as u64, ..Self::default() };
        let (mut since_received, mut since_updated) = (Vec::new(), Vec::new());
        for record in records {
            figures.redelivered += u64::from(record.redelivered);
            figures.retries += u64::from(record.attempt.saturating_sub(1));
            match record.status {
                Status::Rejected => figures.rejected += 1,
                Status::Completed => {
                    figures.ties += u64::from(record.tie);
                    figures.out_of_order += u64::from(record.out_of_order);
                    if let Some(done) = record.completed_at {
                        since_received.push(millis(done - record.received_at));
                        since_updated.extend(record.external_at.map(|at| millis(done - at)));
                    }
                }
                _ => {}
            }
        }
        figures.latency_since_received_at = Percentiles::of(since_received);
        figures.latency_since_updated_at = Percentiles::of(since_updated);
        figures
    }
}

/// A duration in milliseconds, negative ones (clock skew between systems) as zero, as the EMF metrics count them.
fn millis(duration: chrono::Duration) -> f64 {
    let ms = duration.num_microseconds().map_or(duration.num_milliseconds() as f64, |us| us as f64 / 1000.0);
    ms.max(0.0)
}

/// Counts events per status, every status included, in the spec's order of statuses.
pub async fn status_counts(store: &dyn EventStore) -> Result<Vec<(Status, u64)>, CliError> {
    let counts = store.count_by_status().await.map_err(CliError::store("counting events by status"))?;
    Ok(Status::ALL.iter().map(|s| (*s, counts.get(s).copied().unwrap_or(0))).collect())
}

/// Counts the heads a sweep would act on as of `now` (spec §9 "A sweep reads past what it passes over"): those whose
/// lease ended more than `clock_margin` ago, and whose hold is over — a head whose event's record holds it longer
/// (a retry inside the hold, a failure's later retry: §9 "A failure writes the record alone") is passed over by the
/// sweeper, as here. One read of an event record per expired head.
pub async fn stalled_leases(
    store: &dyn EventStore,
    now: DateTime<Utc>,
    clock_margin: chrono::Duration,
) -> Result<u64, CliError> {
    let before = now - clock_margin;
    let expired = store.expired_leases(before, 0).await.map_err(CliError::store("listing expired leases"))?;
    let mut stalled = 0;
    for head in expired {
        let Some(inflight) = head.inflight.as_ref() else { continue };
        let record = store
            .get_event(&inflight.slot.event_id)
            .await
            .map_err(CliError::store("reading the event of an expired lease"))?;
        if record.as_ref().is_none_or(|r| inflight.hold_until(Some(r)) < before) {
            stalled += 1;
        }
    }
    Ok(stalled)
}

/// Gathers the live figures of `backend` (everything but the record-based [`EventFigures`]); `clock_margin` is the
/// engine's (a lease counts as stalled once the sweeper would act on it: [`stalled_leases`]).
pub async fn collect(backend: &AnyBackend, clock_margin: chrono::Duration) -> Result<StatsReport, CliError> {
    let store = backend.ports.store.as_ref();
    let counts = status_counts(store).await?;
    let depth = backend.ports.queue.depth().await.map_err(CliError::store("measuring the queue"))?;
    let inflight = store.count_inflight().await.map_err(CliError::store("counting events in flight"))?;
    let now = backend.ports.clock.now();
    let stalled = stalled_leases(store, now, clock_margin).await?;
    let requests = backend.aws().map(|aws| {
        let scope = "made by this synctrail process only, to gather these figures; not the pipeline's";
        figures(scope, &aws.backend.requests.snapshot(), &aws.destination_requests.snapshot(), None)
    });
    Ok(StatsReport {
        backend: backend.kind(),
        location: backend.describe(),
        at: now,
        requests,
        total: counts.iter().map(|(_, n)| n).sum(),
        not_terminal: counts.iter().filter(|(s, _)| !s.is_terminal()).map(|(_, n)| n).sum(),
        statuses: counts.iter().map(|(s, n)| (s.as_str().to_owned(), *n)).collect(),
        inflight,
        stalled_leases: stalled,
        queue: QueueFigures {
            visible: depth.visible,
            in_flight: depth.in_flight,
            delayed: depth.delayed,
            dead_letters: depth.dead_letters,
            oldest_message_age_seconds: depth
                .oldest_sent_at
                .map(|at| (now - at).num_milliseconds().max(0) as f64 / 1000.0),
        },
        events: None,
    })
}

/// The record-based figures: every event on the embedded backend; on AWS a sample of at most [`AWS_SAMPLE`]
/// ([`sampled_figures`]; `counts` are the events per status).
pub async fn event_figures(backend: &AnyBackend, counts: &[(Status, u64)]) -> Result<EventFigures, CliError> {
    let store = backend.ports.store.as_ref();
    if backend.kind() == BackendKind::Embedded {
        let records = store.list_events(&EventQuery::default()).await;
        return Ok(EventFigures::of(&records.map_err(CliError::store("listing events for the figures"))?));
    }
    sampled_figures(store, counts, AWS_SAMPLE).await
}

/// How many events of each status a sample of at most `budget` reads: the budget split in proportion to `counts`
/// (largest remainders first), so that the sample is every event when there are no more than `budget`. Statuses
/// given none are left out (a limit of 0 would list them all).
pub fn sample_limits(counts: &[(Status, u64)], budget: usize) -> Vec<(Status, usize)> {
    let total: u128 = counts.iter().map(|(_, n)| u128::from(*n)).sum();
    if total == 0 || budget == 0 {
        return Vec::new();
    }
    let budget = budget as u128;
    let mut shares: Vec<(Status, u128, u128)> = counts
        .iter()
        .map(|(status, n)| (*status, budget * u128::from(*n) / total, budget * u128::from(*n) % total))
        .collect();
    let mut left = budget - shares.iter().map(|(_, share, _)| share).sum::<u128>();
    let mut by_remainder: Vec<usize> = (0..shares.len()).filter(|&i| shares[i].2 > 0).collect();
    by_remainder.sort_by_key(|&i| std::cmp::Reverse(shares[i].2));
    for i in by_remainder {
        if left == 0 {
            break;
        }
        shares[i].1 += 1;
        left -= 1;
    }
    shares
        .into_iter()
        .filter(|(_, share, _)| *share > 0)
        .map(|(status, share, _)| (status, usize::try_from(share).unwrap_or(usize::MAX)))
        .collect()
}

/// The record-based figures from at most `budget` events ([`sample_limits`]): of each status the newest, one query per
/// status (on AWS the status index, newest first, so the table is never scanned). The note says whether that was
/// every event, or — when a status's listing came back full — a sample.
pub async fn sampled_figures(
    store: &dyn EventStore,
    counts: &[(Status, u64)],
    budget: usize,
) -> Result<EventFigures, CliError> {
    let mut records = Vec::new();
    let mut capped = false;
    for (status, limit) in sample_limits(counts, budget) {
        let query = EventQuery { status: Some(status), limit, ..EventQuery::default() };
        let listed = store.list_events(&query).await.map_err(CliError::store("listing events for the figures"))?;
        // Cut short only when the status holds more than its share (a share equal to its count read them all).
        let count = counts.iter().find(|(s, _)| *s == status).map_or(0, |(_, n)| *n);
        capped |= listed.len() >= limit && u64::try_from(limit).unwrap_or(u64::MAX) < count;
        records.extend(listed);
    }
    let mut figures = EventFigures::of(&records);
    let total: u64 = counts.iter().map(|(_, n)| n).sum();
    figures.sample_note = Some(if capped {
        format!(
            "from {} of {total} events: the newest of each status, in proportion to its count (at most {budget} are \
             read on AWS)",
            records.len()
        )
    } else {
        format!("from all {} events (at most {budget} are read on AWS)", records.len())
    });
    Ok(figures)
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

/// Writes a report as text: the status table, the live figures, the event figures and the requests when present.
pub fn write_report(out: &mut dyn Write, report: &StatsReport) -> std::io::Result<()> {
    writeln!(out, "{}:\n", report.location)?;
    let counts: Vec<(Status, u64)> =
        Status::ALL.iter().map(|s| (*s, report.statuses.get(s.as_str()).copied().unwrap_or(0))).collect();
    write_status_table(out, &counts)?;
    writeln!(out)?;
    let q = &report.queue;
    let mut table = Table::new(&["figure", "value"]).align_right(1);
    let age = q.oldest_message_age_seconds.map_or_else(|| "-".to_owned(), crate::output::seconds);
    for (name, value) in [
        ("queue: visible", q.visible.to_string()),
        ("queue: in flight", q.in_flight.to_string()),
        ("queue: delayed", q.delayed.to_string()),
        ("dead letters", q.dead_letters.to_string()),
        ("oldest message age", age),
        ("entities in flight", report.inflight.to_string()),
        ("stalled leases", report.stalled_leases.to_string()),
    ] {
        table.row(vec![name.to_owned(), value]);
    }
    table.write(out)?;
    if let Some(events) = &report.events {
        writeln!(out)?;
        write_event_figures(out, events)?;
    }
    if let Some(requests) = &report.requests {
        writeln!(out)?;
        write_figures(out, requests)?;
    }
    Ok(())
}

/// Writes the record-based figures: counts, then the latency percentiles.
fn write_event_figures(out: &mut dyn Write, events: &EventFigures) -> std::io::Result<()> {
    let mut table = Table::new(&["metric", "value"]).align_right(1);
    for (name, value) in [
        ("ties (completed)", events.ties),
        ("out of order (completed)", events.out_of_order),
        ("redelivered", events.redelivered),
        ("rejected", events.rejected),
        ("retries (attempts beyond the first)", events.retries),
    ] {
        table.row(vec![name.to_owned(), value.to_string()]);
    }
    table.write(out)?;
    writeln!(out)?;
    let mut latency = Table::new(&["latency to completion", "events", "p50", "p90", "p99", "max"]);
    for index in 1..=5 {
        latency = latency.align_right(index);
    }
    for (name, figures) in [
        ("since received_at", &events.latency_since_received_at),
        ("since updated_at", &events.latency_since_updated_at),
    ] {
        let cells = figures.as_ref().map_or_else(
            || vec!["0".to_owned(), "-".to_owned(), "-".to_owned(), "-".to_owned(), "-".to_owned()],
            |p| vec![p.count.to_string(), ms(p.p50_ms), ms(p.p90_ms), ms(p.p99_ms), ms(p.max_ms)],
        );
        latency.row(std::iter::once(name.to_owned()).chain(cells).collect());
    }
    latency.write(out)?;
    if let Some(note) = &events.sample_note {
        writeln!(out, "\n(computed {note})")?;
    }
    Ok(())
}

/// Milliseconds, readable (a latency since an old `updated_at` may be months).
fn ms(value: f64) -> String {
    crate::output::seconds(value / 1000.0)
}

/// Runs `synctrail stats`, or its `--watch` loop.
pub async fn execute(ctx: &Context, args: &StatsArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let backend = ctx.open_existing().await?;
    let clock_margin = ctx.settings()?.clock_margin;
    let Some(every) = args.watch else {
        let mut report = collect(&backend, clock_margin).await?;
        let counts: Vec<(Status, u64)> =
            Status::ALL.iter().map(|s| (*s, report.statuses.get(s.as_str()).copied().unwrap_or(0))).collect();
        report.events = Some(event_figures(&backend, &counts).await?);
        return if ctx.json { write_json(out, &report) } else { Ok(write_report(out, &report)?) };
    };
    let watch = Watch {
        every,
        count: args.watch_count,
        json: ctx.json,
        terminal: std::io::stdout().is_terminal(),
        clock_margin,
    };
    watch.run(&backend, out).await
}

/// The `--watch` loop.
#[derive(Debug, Clone, Copy)]
pub struct Watch {
    /// Seconds between refreshes.
    pub every: f64,
    /// Stop after this many refreshes (`None`: until Ctrl-C).
    pub count: Option<u64>,
    /// One compact JSON object per line and refresh instead of text.
    pub json: bool,
    /// Redraw in place (the output is a terminal).
    pub terminal: bool,
    /// The engine's clock margin ([`collect`]).
    pub clock_margin: chrono::Duration,
}

impl Watch {
    /// Refreshes the live figures of `backend` until the count is reached (or forever).
    pub async fn run(&self, backend: &AnyBackend, out: &mut dyn Write) -> Result<(), CliError> {
        let mut refreshes = 0u64;
        loop {
            let report = collect(backend, self.clock_margin).await?;
            self.draw(out, &report, refreshes)?;
            refreshes += 1;
            if self.count.is_some_and(|count| refreshes >= count) {
                return Ok(());
            }
            tokio::time::sleep(crate::duration::std_seconds(self.every)).await;
        }
    }

    fn draw(&self, out: &mut dyn Write, report: &StatsReport, refreshes: u64) -> Result<(), CliError> {
        if self.json {
            serde_json::to_writer(&mut *out, report).map_err(|e| {
                if e.is_io() {
                    CliError::Output(std::io::Error::from(e))
                } else {
                    CliError::Json(e)
                }
            })?;
            writeln!(out)?;
        } else {
            if self.terminal {
                write!(out, "{CLEAR_SCREEN}")?;
            } else if refreshes > 0 {
                writeln!(out)?;
            }
            let time = report.at.format("%H:%M:%S");
            writeln!(out, "every {} s, at {time} UTC; Ctrl-C to stop", self.every)?;
            write_report(out, report)?;
        }
        out.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use synctrail::model::PayloadRef;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_777_636_800 + seconds, 0).unwrap_or_default()
    }

    fn record(id: &str, status: Status) -> EventRecord {
        let json = serde_json::json!({
            "event_id": id, "client_event_id": true, "entity": null, "order": null, "kind": null,
            "direction": null, "content_hash": null,
            "payload": PayloadRef { key: "k".into(), sha256: "0".repeat(64), size: 2, range: None },
            "delivery_id": null, "conflicts_with": null, "caused_by": null, "status": status,
            "dropped_for": null, "duplicate_of": null, "canceled_by": null, "waiting_for": null,
            "attempt": 1, "attempt_base": 0, "error": null, "tie": false, "out_of_order": false, "forced": false,
            "redelivered": 0, "external_at": null, "received_at": at(0), "read_started_at": null,
            "write_started_at": null, "completed_at": null, "updated_at": at(0), "lease_until": null,
            "last_message_id": null, "expires_at": at(86_400), "history_folded": 0, "history": [], "version": 1,
        });
        serde_json::from_value(json).expect("a valid record")
    }

    fn completed(id: &str, updated: i64, received: i64, done: i64) -> EventRecord {
        let mut r = record(id, Status::Completed);
        (r.external_at, r.received_at, r.completed_at) = (Some(at(updated)), at(received), Some(at(done)));
        r
    }

    #[test]
    fn a_sample_splits_its_budget_over_the_statuses_in_proportion_and_reads_no_more_in_all() {
        use Status::*;
        let counts = [(Completed, 30_000), (Failed, 10), (Received, 0), (Rejected, 2_000), (Errored, 1)];
        let limits = sample_limits(&counts, AWS_SAMPLE);
        assert_eq!(limits.iter().map(|(_, n)| n).sum::<usize>(), AWS_SAMPLE, "{limits:?}");
        assert_eq!(limits.iter().find(|(s, _)| *s == Completed).map(|(_, n)| *n), Some(9_372), "{limits:?}");
        assert!(limits.iter().all(|(s, n)| *n > 0 && *s != Received), "none asked of a status with no events");
        let few = [(Completed, 5), (Rejected, 1)];
        assert_eq!(sample_limits(&few, AWS_SAMPLE).iter().map(|(_, n)| n).sum::<usize>(), AWS_SAMPLE);
        assert!(sample_limits(&few, AWS_SAMPLE).iter().all(|(s, n)| *n >= if *s == Completed { 5 } else { 1 }));
        assert_eq!(sample_limits(&[(Completed, 0)], AWS_SAMPLE), Vec::new());
        assert_eq!(sample_limits(&few, 3).iter().map(|(_, n)| n).sum::<usize>(), 3);
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let p = Percentiles::of((1..=100).map(f64::from).collect()).expect("values");
        assert_eq!((p.count, p.p50_ms, p.p90_ms, p.p99_ms, p.max_ms), (100, 50.0, 90.0, 99.0, 100.0));
        let one = Percentiles::of(vec![7.0]).expect("a value");
        assert_eq!((one.p50_ms, one.p99_ms, one.max_ms), (7.0, 7.0, 7.0));
        assert_eq!(Percentiles::of(Vec::new()), None);
    }

    #[test]
    fn event_figures_count_ties_retries_redeliveries_and_rejections_and_measure_latency() {
        let mut tie = completed("a", 0, 10, 12);
        tie.tie = true;
        tie.attempt = 3;
        tie.redelivered = 2;
        let plain = completed("b", 5, 10, 11);
        let mut queued_tie = record("c", Status::Queued);
        queued_tie.tie = true;
        let rejected = record("d", Status::Rejected);
        let figures = EventFigures::of(&[tie, plain, queued_tie, rejected]);
        assert_eq!(figures.sampled, 4);
        assert_eq!(figures.ties, 1, "only completed ties count, as in the metrics");
        assert_eq!((figures.retries, figures.redelivered, figures.rejected), (2, 2, 1));
        let received = figures.latency_since_received_at.expect("two completed");
        assert_eq!((received.count, received.p50_ms, received.max_ms), (2, 1000.0, 2000.0));
        let updated = figures.latency_since_updated_at.expect("two completed");
        assert_eq!((updated.p50_ms, updated.max_ms), (6000.0, 12_000.0));
    }

    #[test]
    fn the_text_report_shows_live_and_event_figures_and_the_sample_note() {
        let report = StatsReport {
            backend: BackendKind::Aws,
            location: "table t".into(),
            at: at(0),
            statuses: [("completed".to_owned(), 3)].into_iter().collect(),
            total: 3,
            not_terminal: 0,
            inflight: 1,
            stalled_leases: 1,
            queue: QueueFigures {
                visible: 4,
                in_flight: 0,
                delayed: 0,
                dead_letters: 2,
                oldest_message_age_seconds: None,
            },
            events: Some(EventFigures {
                sample_note: Some("from the newest 10000 events".into()),
                ..EventFigures::of(&[completed("a", 0, 1, 2)])
            }),
            requests: None,
        };
        let mut out = Vec::new();
        assert!(write_report(&mut out, &report).is_ok());
        let text = String::from_utf8_lossy(&out);
        for expected in
            ["completed", "stalled leases", "dead letters", "ties (completed)", "since received_at", "1.00 s"]
        {
            assert!(text.contains(expected), "{expected:?} missing from:\n{text}");
        }
        assert!(text.contains("(computed from the newest 10000 events)"), "{text}");
    }

    #[test]
    fn a_months_old_message_and_latency_read_in_days_not_millions_of_seconds() {
        let report = StatsReport {
            backend: BackendKind::Embedded,
            location: "home".into(),
            at: at(0),
            statuses: BTreeMap::new(),
            total: 1,
            not_terminal: 0,
            inflight: 0,
            stalled_leases: 0,
            queue: QueueFigures {
                visible: 1,
                in_flight: 0,
                delayed: 0,
                dead_letters: 0,
                oldest_message_age_seconds: Some(19_037_024.08),
            },
            // Applied 220 days after the external system's updated_at.
            events: Some(EventFigures::of(&[completed("a", 0, 19_037_000, 19_037_024)])),
            requests: None,
        };
        let mut out = Vec::new();
        assert!(write_report(&mut out, &report).is_ok());
        let text = String::from_utf8_lossy(&out);
        let line = |name: &str| text.lines().find(|l| l.starts_with(name)).unwrap_or_default().to_owned();
        assert!(line("oldest message age").ends_with("220 d 8 h"), "{text}");
        assert!(line("since updated_at").contains("220 d 8 h"), "{text}");
        assert!(line("since received_at").contains("24.00 s"), "{text}");
        assert!(!text.contains("19037024"), "{text}");
    }
}
