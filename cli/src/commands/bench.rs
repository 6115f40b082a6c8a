//! `synctrail bench`: a happy-path workload sent first, then processed with no faults; throughput end to end,
//! latency received → completed, CPU time and bytes written per event, and the write-ahead logs' peak size. On
//! the embedded backend it then measures its yardstick in the same invocation: a plain SQLite loop writing the
//! rows the run left into a fresh database on the same disk, committing once per 10 events
//! ([`synctrail::store::sqlite::baseline`]), and divides the pipeline's throughput by the loop's. With
//! `--backend aws`: the cost benchmark ([`super::bench_cost`]). `bench growth`: [`super::bench_growth`].

use super::run::run_with_progress;
use super::send::send_lines;
use super::stats::status_counts;
use super::Context;
use crate::args::{BackendKind, BenchArgs};
use crate::backend::BackendExt;
use crate::cpu::process_cpu_time;
use crate::disk::{bytes_written, PeakSize};
use crate::error::CliError;
use crate::output::{write_json, Table};
use crate::requests::{figures, since, write_figures, RequestFigures};
use crate::runtime::RunOptions;
use crate::workload::{generate, WorkloadConfig};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::time::Instant;
use synctrail::compose::ComposedBackend;
use synctrail::model::{EventRecord, Status};
use synctrail::store::sqlite::baseline::{BaselineRows, BaselineRun};
use synctrail::store::sqlite::wal_files;
use synctrail::store::{EventQuery, StoreError};

/// Events of the throughput benchmark when `--events` is not given.
pub const DEFAULT_EVENTS: u64 = 20_000;
/// Entities of the throughput benchmark when `--entities` is not given.
pub const DEFAULT_ENTITIES: u64 = 2_000;

/// The throughput the framework aims at with 4 workers on a 2-core machine (issue 12; issue 2 aimed at 5,000).
pub const TARGET_EVENTS_PER_SECOND: f64 = 20_000.0;

/// Events per commit of the baseline loop.
pub const BASELINE_COMMIT_EVERY: usize = 10;

/// What the baseline loop measured.
#[derive(Debug, Clone, Serialize)]
pub struct BaselineReport {
    /// Events whose rows it wrote.
    pub events: usize,
    /// Events per commit.
    pub commit_every: usize,
    /// Its wall time, s.
    pub seconds: f64,
    /// Events per second.
    pub events_per_second: f64,
    /// CPU time per event, µs.
    pub cpu_per_event_us: Option<f64>,
    /// Bytes written to storage per event.
    pub bytes_written_per_event: Option<f64>,
    /// The largest size its write-ahead log reached, bytes.
    pub wal_peak_bytes: u64,
}

/// What `bench` measured.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// `embedded` or `aws`.
    pub backend: BackendKind,
    /// Where the backend is.
    pub location: String,
    /// Events processed.
    pub events: usize,
    /// Entities they were spread over.
    pub entities: usize,
    /// Concurrent invocations.
    pub workers: usize,
    /// Lines sent per second to the queue (before the timed run).
    pub send_per_second: f64,
    /// From the first receive to the last completion (the records' `received_at` and `completed_at`).
    pub processing_seconds: f64,
    /// The run's wall time, until the runtime saw the queue quiescent (polls every 100 ms).
    pub run_wall_seconds: f64,
    /// Events per second, first receive to last completion.
    pub events_per_second: f64,
    /// Events per second over the run's wall time.
    pub events_per_second_wall: f64,
    /// `events_per_second` / the target of 20,000 (issue 12).
    pub ratio_to_target: f64,
    /// Median latency received → completed, ms.
    pub latency_p50_ms: f64,
    /// 99th percentile latency received → completed, ms.
    pub latency_p99_ms: f64,
    /// Largest latency received → completed, ms.
    pub latency_max_ms: f64,
    /// User + system CPU time of the process during the run, s.
    pub cpu_seconds: Option<f64>,
    /// CPU time per event, µs.
    pub cpu_per_event_us: Option<f64>,
    /// CPU time / wall time: how many cores the run kept busy.
    pub cores_busy: Option<f64>,
    /// CPU time per event / wall time per event: the CPU cost of one event relative to the rate achieved.
    pub cpu_to_wall_per_event: Option<f64>,
    /// Bytes this process had written to storage during the run (WAL, checkpoints, payloads), per event.
    pub bytes_written_per_event: Option<f64>,
    /// Embedded only: the largest size a write-ahead log of the home reached during the run, bytes.
    pub wal_peak_bytes: Option<u64>,
    /// Embedded only: the plain SQLite loop writing the same rows on the same disk, measured after the run.
    pub baseline: Option<BaselineReport>,
    /// `events_per_second` / the baseline loop's events per second.
    pub ratio_to_baseline: Option<f64>,
    /// `/proc/loadavg`'s 1-minute load when the run started (other work on the machine).
    pub load_average: Option<f64>,
    /// Events per final status.
    pub statuses: BTreeMap<&'static str, u64>,
    /// AWS only: the requests this process made during the run, by service and operation, and per event.
    pub requests: Option<RequestFigures>,
}

/// Runs `synctrail bench` (or `bench verify`).
pub async fn execute(ctx: &Context, args: &BenchArgs, out: &mut dyn Write) -> Result<(), CliError> {
    match &args.what {
        Some(crate::args::BenchWhat::Verify(verify)) => return super::bench_verify::execute(ctx, verify, out).await,
        Some(crate::args::BenchWhat::Destination(destination)) => {
            return super::bench_destination::execute(ctx, destination, out).await
        }
        Some(crate::args::BenchWhat::Webhooks(webhooks)) => {
            return super::bench_webhooks::execute(ctx, webhooks, out).await
        }
        Some(crate::args::BenchWhat::Growth(growth)) => return super::bench_growth::execute(ctx, growth, out).await,
        None => {}
    }
    if ctx.backend == BackendKind::Aws {
        return super::bench_cost::execute(ctx, args, out).await;
    }
    if !args.scenarios.is_empty() {
        return Err(CliError::InvalidArgument(
            "--scenario picks the AWS cost benchmark's scenarios: add --backend aws (and --endpoint-url for moto)"
                .into(),
        ));
    }
    let workers = usize::from(args.run.workers);
    let (events, entities) = (args.events.unwrap_or(DEFAULT_EVENTS), args.entities.unwrap_or(DEFAULT_ENTITIES));
    let config = WorkloadConfig::happy_path(count(events), count(entities), args.run.seed);
    let workload = generate(&config);
    let backend = ctx.open_fresh("bench", args.prefix.as_deref(), None).await?;
    if !ctx.json {
        writeln!(
            out,
            "bench — {}\n{} events over {} entities, {workers} workers, no faults",
            super::demo::fresh_description(&backend),
            workload.summary.events,
            workload.summary.entities
        )?;
    }
    let send_started = Instant::now();
    let bar = crate::progress::bar(Some(workload.deliveries.len() as u64), "lines sent", ctx.json);
    let sent = send_lines(backend.ports.queue.as_ref(), workload.lines(), |n| bar.set_position(n))
        .await
        .map_err(CliError::store("sending the workload to the queue"))?;
    bar.finish_and_clear();
    let send_seconds = send_started.elapsed().as_secs_f64();

    let counters = backend.aws().map(|a| (a.backend.requests.clone(), a.destination_requests.clone()));
    let before = counters.as_ref().map(|(f, d)| (f.snapshot(), d.snapshot()));
    let home = match &backend.backend {
        ComposedBackend::Embedded { home, .. } => Some(home.clone()),
        ComposedBackend::Aws(_) => None,
    };
    let wal_watch = home.as_deref().map(|home| PeakSize::watch(wal_files(home).to_vec())).transpose()?;
    let load_average = load_average();
    let written_before = bytes_written();
    let cpu_before = process_cpu_time();
    let started = Instant::now();
    let lanes = ctx.config_but_backend()?.record_concurrency;
    let options = RunOptions { workers, lanes, seed: args.run.seed, ..RunOptions::default() };
    let stats = run_with_progress(&backend, ctx.settings()?, &options, ctx.json).await?;
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_before.zip(process_cpu_time()).map(|(before, after)| (after - before).as_secs_f64());
    let written = written_before.zip(bytes_written()).map(|(before, after)| after.saturating_sub(before));
    let wal_peak_bytes = wal_watch.map(PeakSize::stop);
    let after = counters.as_ref().map(|(f, d)| (f.snapshot(), d.snapshot()));
    if !stats.drained {
        return Err(CliError::NotDrained { seconds: wall, selector: backend.selector() });
    }

    let records =
        backend.ports.store.list_events(&EventQuery::default()).await.map_err(CliError::store("listing events"))?;
    let counts = status_counts(backend.ports.store.as_ref()).await?;
    let mut report = measure(&records, wall, cpu, sent.sent as f64 / send_seconds.max(1e-9), &config, workers, counts);
    report.backend = backend.kind();
    report.location = backend.describe();
    report.bytes_written_per_event = written.map(|w| w as f64 / records.len().max(1) as f64);
    report.wal_peak_bytes = wal_peak_bytes;
    report.load_average = load_average;
    if let Some(home) = &home {
        let baseline = baseline(home, &ctx.home.join("bench-baseline"))?;
        report.ratio_to_baseline = Some(report.events_per_second / baseline.events_per_second.max(1e-9));
        report.baseline = Some(baseline);
    }
    report.requests = before.zip(after).map(|((f0, d0), (f1, d1))| {
        let scope = "made by this process during the run: the handler's, and the local event source's SQS polling";
        figures(scope, &since(&f0, &f1), &since(&d0, &d1), Some(records.len() as u64))
    });
    if ctx.json {
        return write_json(out, &report);
    }
    write_report(out, &report)?;
    Ok(())
}

/// Runs the baseline loop over the rows the run left in `home`, writing into a fresh database in `dir`.
fn baseline(home: &std::path::Path, dir: &std::path::Path) -> Result<BaselineReport, CliError> {
    let rows = BaselineRows::read(home).map_err(CliError::store("reading the run's rows for the baseline"))?;
    super::fresh_home(dir)?;
    std::fs::remove_dir(dir).map_err(|source| CliError::Prepare { path: dir.to_owned(), source })?;
    measure_baseline(|| rows.write(dir, BASELINE_COMMIT_EVERY))
}

/// Measures one pass of the baseline loop (`write`, committing every [`BASELINE_COMMIT_EVERY`] events): its wall
/// time, CPU and bytes written.
pub(super) fn measure_baseline(
    write: impl FnOnce() -> Result<BaselineRun, StoreError>,
) -> Result<BaselineReport, CliError> {
    let written_before = bytes_written();
    let cpu_before = process_cpu_time();
    let started = Instant::now();
    let run = write().map_err(CliError::store("running the baseline loop"))?;
    let seconds = started.elapsed().as_secs_f64();
    let cpu = cpu_before.zip(process_cpu_time()).map(|(before, after)| (after - before).as_secs_f64());
    let written = written_before.zip(bytes_written()).map(|(before, after)| after.saturating_sub(before));
    let events = run.events.max(1) as f64;
    Ok(BaselineReport {
        events: run.events,
        commit_every: BASELINE_COMMIT_EVERY,
        seconds,
        events_per_second: run.events as f64 / seconds.max(1e-9),
        cpu_per_event_us: cpu.map(|c| c * 1e6 / events),
        bytes_written_per_event: written.map(|w| w as f64 / events),
        wal_peak_bytes: run.wal_peak_bytes,
    })
}

/// The machine's 1-minute load average, where `/proc/loadavg` exists.
pub(super) fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg").ok()?.split_whitespace().next()?.parse().ok()
}

pub(super) fn count(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// Works the figures out of the records and the run's wall and CPU time.
fn measure(
    records: &[EventRecord],
    wall: f64,
    cpu: Option<f64>,
    send_per_second: f64,
    config: &WorkloadConfig,
    workers: usize,
    counts: Vec<(Status, u64)>,
) -> BenchReport {
    let processing = first_receive_to_last_completion(records).unwrap_or(wall);
    let mut latencies: Vec<f64> = records
        .iter()
        .filter_map(|r| r.completed_at.map(|c| (c - r.received_at).num_microseconds().unwrap_or(0) as f64 / 1000.0))
        .collect();
    latencies.sort_by(f64::total_cmp);
    let events = records.len();
    let rate = events as f64 / processing.max(1e-9);
    BenchReport {
        backend: BackendKind::Embedded,
        location: String::new(),
        requests: None,
        events,
        entities: config.entities.min(config.events),
        workers,
        send_per_second,
        processing_seconds: processing,
        run_wall_seconds: wall,
        events_per_second: rate,
        events_per_second_wall: events as f64 / wall.max(1e-9),
        ratio_to_target: rate / TARGET_EVENTS_PER_SECOND,
        latency_p50_ms: percentile(&latencies, 0.50),
        latency_p99_ms: percentile(&latencies, 0.99),
        latency_max_ms: latencies.last().copied().unwrap_or(0.0),
        cpu_seconds: cpu,
        cpu_per_event_us: cpu.map(|c| c * 1e6 / events.max(1) as f64),
        cores_busy: cpu.map(|c| c / wall.max(1e-9)),
        cpu_to_wall_per_event: cpu.map(|c| c / processing.max(1e-9)),
        bytes_written_per_event: None,
        wal_peak_bytes: None,
        baseline: None,
        ratio_to_baseline: None,
        load_average: None,
        statuses: counts.into_iter().filter(|(_, n)| *n > 0).map(|(s, n)| (s.as_str(), n)).collect(),
    }
}

/// Seconds from the first of `records` received to the last completed (or last changed); `None` when empty.
pub(super) fn first_receive_to_last_completion(records: &[EventRecord]) -> Option<f64> {
    let first = records.iter().map(|r| r.received_at).min()?;
    let last = records.iter().filter_map(|r| r.completed_at.or(Some(r.updated_at))).max()?;
    Some((last - first).num_microseconds().unwrap_or(0) as f64 / 1e6)
}

/// The `p` quantile of sorted `values` (nearest rank); 0 when empty.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

const MIB: f64 = 1024.0 * 1024.0;

fn write_report(out: &mut dyn Write, r: &BenchReport) -> std::io::Result<()> {
    let opt = |v: Option<f64>, unit: &str| v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.2}{unit}"));
    let mut table = Table::new(&["figure", "value"]).align_right(1);
    let rows = [
        ("events", r.events.to_string()),
        ("send rate (before the run)", format!("{:.0} lines/s", r.send_per_second)),
        ("first receive → last completion", format!("{:.2} s", r.processing_seconds)),
        ("run wall time (to quiescence)", format!("{:.2} s", r.run_wall_seconds)),
        ("throughput end to end", format!("{:.0} events/s", r.events_per_second)),
        ("throughput over wall time", format!("{:.0} events/s", r.events_per_second_wall)),
        ("vs target 20,000 events/s", format!("{:.2}×", r.ratio_to_target)),
        ("latency p50 received → completed", format!("{:.1} ms", r.latency_p50_ms)),
        ("latency p99 received → completed", format!("{:.1} ms", r.latency_p99_ms)),
        ("latency max", format!("{:.1} ms", r.latency_max_ms)),
        ("CPU (user+sys) during the run", opt(r.cpu_seconds, " s")),
        ("CPU per event", opt(r.cpu_per_event_us, " µs")),
        ("cores busy (CPU / wall)", opt(r.cores_busy, "")),
        ("written to storage per event", opt(r.bytes_written_per_event.map(|b| b / 1024.0), " KiB")),
        ("write-ahead log peak", opt(r.wal_peak_bytes.map(|b| b as f64 / MIB), " MiB")),
        ("load average (1 min) at the start", opt(r.load_average, "")),
    ];
    for (name, value) in rows {
        table.row(vec![name.to_owned(), value]);
    }
    if let Some(b) = &r.baseline {
        let baseline_rows = [
            (
                format!("baseline: SQLite loop, 1 commit / {} events", b.commit_every),
                format!("{:.0} events/s", b.events_per_second),
            ),
            ("baseline CPU per event".to_owned(), opt(b.cpu_per_event_us, " µs")),
            ("baseline written per event".to_owned(), opt(b.bytes_written_per_event.map(|b| b / 1024.0), " KiB")),
            ("baseline write-ahead log peak".to_owned(), format!("{:.2} MiB", b.wal_peak_bytes as f64 / MIB)),
            ("throughput ÷ baseline".to_owned(), opt(r.ratio_to_baseline, "×")),
        ];
        for (name, value) in baseline_rows {
            table.row(vec![name, value]);
        }
    }
    table.write(out)?;
    let statuses: Vec<String> = r.statuses.iter().map(|(s, n)| format!("{s} {n}")).collect();
    writeln!(out, "final statuses: {}", statuses.join(", "))?;
    if let Some(requests) = &r.requests {
        writeln!(out)?;
        write_figures(out, requests)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 0.5), 50.0);
        assert_eq!(percentile(&values, 0.99), 99.0);
        assert_eq!(percentile(&values, 1.0), 100.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
        assert_eq!(percentile(&[7.0], 0.99), 7.0);
    }
}
