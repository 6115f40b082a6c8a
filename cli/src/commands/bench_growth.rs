//! `synctrail bench growth`: the happy path in rounds. Each round sends one newer event for every entity and runs
//! them to the end before the next round is sent, so the events of round r meet r − 1 events of their entity's
//! history in a store that holds (r − 1) × entities records. Per round, what one event cost: on the embedded
//! backend the CPU, the bytes written and events/s; with `--backend aws` write and read units (indexes included),
//! requests and what was stored, the framework and the destination apart. Issue 12 asks that an event's cost stay
//! flat as histories and the store grow; this is where that is measured.

use super::bench::{
    count, first_receive_to_last_completion, load_average, measure_baseline, BaselineReport, BASELINE_COMMIT_EVERY,
};
use super::bench_cost::{retention, run_options, usage_cells, Metering, PartyCost, USAGE_COLUMNS};
use super::run::run_with_progress;
use super::send::send_lines;
use super::Context;
use crate::args::{BackendKind, BenchGrowthArgs};
use crate::backend::{AnyBackend, BackendExt};
use crate::cpu::process_cpu_time;
use crate::disk::{bytes_written, PeakSize};
use crate::error::CliError;
use crate::output::{write_json, Table};
use crate::prices::US_EAST_1_2025;
use crate::requests::RequestFigures;
use crate::runtime::{RunOptions, RunStats};
use crate::workload::{generate, WorkloadConfig};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::Instant;
use synctrail::compose::ComposedBackend;
use synctrail::store::aws::Party;
use synctrail::store::sqlite::baseline::BaselineRows;
use synctrail::store::sqlite::wal_files;
use synctrail::store::EventQuery;

/// Entities when `--entities` is not given, on the embedded backend.
pub const DEFAULT_ENTITIES: u64 = 20_000;
/// Entities when `--entities` is not given, with `--backend aws` (moto is slow).
pub const DEFAULT_AWS_ENTITIES: u64 = 100;

/// What one round measured.
#[derive(Debug, Clone, Serialize)]
pub struct RoundFigures {
    /// 1 for the first.
    pub round: u64,
    /// Events each entity had before the round (its history's length).
    pub history_per_entity: u64,
    /// Event records in the store before the round.
    pub records_before: u64,
    /// Events of the round (one per entity).
    pub events: u64,
    /// Processor invocations.
    pub invocations: u64,
    /// Records returned for retry.
    pub retried: u64,
    /// Final statuses reached by the round's records.
    pub statuses: BTreeMap<&'static str, u64>,
    /// The embedded backend's figures.
    pub embedded: Option<EmbeddedRound>,
    /// The AWS figures.
    pub aws: Option<AwsRound>,
}

/// One round on the embedded backend.
#[derive(Debug, Clone, Serialize)]
pub struct EmbeddedRound {
    /// Events per second, the round's first receive to its last completion.
    pub events_per_second: f64,
    /// User + system CPU time of the process per event, µs.
    pub cpu_per_event_us: Option<f64>,
    /// Bytes the process wrote to storage per event (WAL, checkpoints, payloads).
    pub bytes_written_per_event: Option<f64>,
    /// The largest size a write-ahead log reached during the round, bytes.
    pub wal_peak_bytes: u64,
    /// The home's files after the round (write-ahead logs included), bytes.
    pub store_bytes_after: u64,
    /// The plain SQLite loop writing the round's rows into its own database, which holds the earlier rounds' rows
    /// (so it grows as the pipeline's does), measured right after the round.
    pub baseline: BaselineReport,
    /// `events_per_second` / the baseline loop's events per second.
    pub ratio_to_baseline: f64,
}

/// One round on AWS, per event.
#[derive(Debug, Clone, Serialize)]
pub struct AwsRound {
    /// The framework's usage (storage: what the round added).
    pub framework: PartyCost,
    /// The destination's (the reference mirror's).
    pub destination: PartyCost,
    /// Requests by operation.
    pub requests: RequestFigures,
}

/// The report.
#[derive(Debug, Clone, Serialize)]
pub struct GrowthReport {
    /// `embedded` or `aws`.
    pub backend: BackendKind,
    /// Where the backend is.
    pub location: String,
    /// Entities (events per round).
    pub entities: u64,
    /// Concurrent invocations.
    pub workers: u16,
    /// `/proc/loadavg`'s 1-minute load when the first round started.
    pub load_average: Option<f64>,
    /// The rounds, in order.
    pub rounds: Vec<RoundFigures>,
}

/// Runs `synctrail bench growth`.
pub async fn execute(ctx: &Context, args: &BenchGrowthArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let aws = ctx.backend == BackendKind::Aws;
    let entities = args.entities.unwrap_or(if aws { DEFAULT_AWS_ENTITIES } else { DEFAULT_ENTITIES });
    let workload = generate(&WorkloadConfig::rounds(count(entities), count(args.rounds), args.run.seed));
    let rounds = rounds_of(workload.lines(), count(args.rounds))?;
    let (backend, metering) = if aws {
        let (backend, metering) = Metering::open(ctx, "bench-growth", args.prefix.as_deref()).await?;
        (backend, Some(metering))
    } else {
        (ctx.open_fresh("bench-growth", args.prefix.as_deref(), None).await?, None)
    };
    if !ctx.json {
        writeln!(
            out,
            "bench growth — {}\n{entities} entities, {} rounds of one newer event each, {} workers, no faults",
            super::demo::fresh_description(&backend),
            args.rounds,
            args.run.workers
        )?;
    }
    let mut report = GrowthReport {
        backend: backend.kind(),
        location: backend.describe(),
        entities,
        workers: args.run.workers,
        load_average: load_average(),
        rounds: Vec::new(),
    };
    let baseline_dir = ctx.home.join("bench-growth-baseline");
    if !aws {
        super::fresh_home(&baseline_dir)?;
    }
    let mut records_before = 0;
    for (index, lines) in rounds.into_iter().enumerate() {
        let round = index as u64 + 1;
        if !ctx.json {
            writeln!(out, "round {round} of {}: {} events…", args.rounds, lines.len())?;
        }
        let events = lines.len() as u64;
        let sent_at = chrono::Utc::now();
        send_lines(backend.ports.queue.as_ref(), lines, |_| {})
            .await
            .map_err(CliError::store("sending a round to the queue"))?;
        let (stats, embedded, aws) = match &metering {
            Some(metering) => {
                let (stats, aws) = aws_round(ctx, args, &backend, metering, events).await?;
                (stats, None, Some(aws))
            }
            None => {
                let (stats, embedded) = embedded_round(ctx, args, &backend, &baseline_dir, sent_at, events).await?;
                (stats, Some(embedded), None)
            }
        };
        report.rounds.push(RoundFigures {
            round,
            history_per_entity: index as u64,
            records_before,
            events,
            invocations: stats.invocations,
            retried: stats.retried,
            statuses: stats.statuses.iter().map(|(s, n)| (s.as_str(), *n)).collect(),
            embedded,
            aws,
        });
        records_before += events;
    }
    if ctx.json {
        return write_json(out, &report);
    }
    write_report(out, &report)?;
    Ok(())
}

/// `lines` split into `rounds`: round r holds the r-th line of every entity, in the order the lines came.
fn rounds_of(lines: impl Iterator<Item = String>, rounds: usize) -> Result<Vec<Vec<String>>, CliError> {
    let mut seen: BTreeMap<[String; 4], usize> = BTreeMap::new();
    let mut out = vec![Vec::new(); rounds.max(1)];
    for line in lines {
        let body: Value = serde_json::from_str(&line)
            .map_err(|e| CliError::InvalidArgument(format!("the growth workload made a line that is not JSON: {e}")))?;
        let part = |name: &str| body.get(name).and_then(Value::as_str).unwrap_or_default().to_owned();
        let nth = seen.entry(["tenant", "source", "entity_type", "external_id"].map(part)).or_default();
        let Some(round) = out.get_mut(*nth) else {
            return Err(CliError::InvalidArgument(format!(
                "the growth workload gave an entity more than {rounds} events"
            )));
        };
        round.push(line);
        *nth += 1;
    }
    Ok(out)
}

/// Runs one round on the embedded backend, measuring the process's CPU and writes, the log's peak and the baseline
/// loop on the round's rows; returns what the run did and the figures.
async fn embedded_round(
    ctx: &Context,
    args: &BenchGrowthArgs,
    backend: &AnyBackend,
    baseline_dir: &Path,
    sent_at: chrono::DateTime<chrono::Utc>,
    events: u64,
) -> Result<(RunStats, EmbeddedRound), CliError> {
    let ComposedBackend::Embedded { home, .. } = &backend.backend else {
        return Err(CliError::InvalidArgument("an embedded round needs the embedded backend".into()));
    };
    let wal_watch = PeakSize::watch(wal_files(home).to_vec())?;
    let (written_before, cpu_before, started) = (bytes_written(), process_cpu_time(), Instant::now());
    let options = RunOptions {
        workers: usize::from(args.run.workers),
        lanes: ctx.config_but_backend()?.record_concurrency,
        seed: args.run.seed,
        ..RunOptions::default()
    };
    let stats = run_with_progress(backend, ctx.settings()?, &options, ctx.json).await?;
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_before.zip(process_cpu_time()).map(|(before, after)| (after - before).as_secs_f64());
    let written = written_before.zip(bytes_written()).map(|(before, after)| after.saturating_sub(before));
    let wal_peak_bytes = wal_watch.stop();
    drained(&stats, wall, backend)?;
    let query = EventQuery { since: Some(sent_at), ..EventQuery::default() };
    let records =
        backend.ports.store.list_events(&query).await.map_err(CliError::store("listing the round's events"))?;
    let seconds = first_receive_to_last_completion(&records).unwrap_or(wall);
    let store_bytes_after = store_bytes(home);
    let rows = BaselineRows::read_received_since(home, Some(sent_at))
        .map_err(CliError::store("reading the round's rows for the baseline"))?;
    let baseline = measure_baseline(|| rows.write_more(baseline_dir, BASELINE_COMMIT_EVERY))?;
    let per = |v: f64| v / events.max(1) as f64;
    let events_per_second = events as f64 / seconds.max(1e-9);
    let embedded = EmbeddedRound {
        events_per_second,
        cpu_per_event_us: cpu.map(|c| per(c * 1e6)),
        bytes_written_per_event: written.map(|w| per(w as f64)),
        wal_peak_bytes,
        store_bytes_after,
        ratio_to_baseline: events_per_second / baseline.events_per_second.max(1e-9),
        baseline,
    };
    Ok((stats, embedded))
}

/// Runs one round on AWS, metered as the cost benchmark meters a scenario; returns what the run did and the
/// figures.
async fn aws_round(
    ctx: &Context,
    args: &BenchGrowthArgs,
    backend: &AnyBackend,
    metering: &Metering,
    events: u64,
) -> Result<(RunStats, AwsRound), CliError> {
    let start = metering.mark().await?;
    let options = run_options(ctx, args.run.workers, args.run.seed)?;
    let stats = run_with_progress(backend, ctx.settings()?, &options, ctx.json).await?;
    drained(&stats, options.max_duration.as_secs_f64(), backend)?;
    let usage = metering.usage_since(&start).await?;
    let retention = retention(ctx)?;
    let n = events as f64;
    let aws = AwsRound {
        framework: usage.cost(Party::Framework, &US_EAST_1_2025, &retention, n),
        destination: usage.cost(Party::Destination, &US_EAST_1_2025, &retention, n),
        requests: usage.requests(Some(events)),
    };
    Ok((stats, aws))
}

fn drained(stats: &RunStats, seconds: f64, backend: &AnyBackend) -> Result<(), CliError> {
    if stats.drained {
        Ok(())
    } else {
        Err(CliError::NotDrained { seconds, selector: backend.selector() })
    }
}

/// The bytes of the files under `dir` (the write-ahead logs included: a log holds what is not checkpointed yet).
fn store_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let mut bytes = 0;
    for entry in entries.flatten() {
        match entry.metadata() {
            Ok(m) if m.is_dir() => bytes += store_bytes(&entry.path()),
            Ok(m) => bytes += m.len(),
            Err(_) => {}
        }
    }
    bytes
}

const KIB: f64 = 1024.0;
const MIB: f64 = 1024.0 * 1024.0;

fn write_report(out: &mut dyn Write, r: &GrowthReport) -> std::io::Result<()> {
    let load = r.load_average.map_or_else(|| "n/a".to_owned(), |l| format!("{l:.2}"));
    writeln!(
        out,
        "\nper event, by round ({} entities, {} workers; load average {load} at the start)",
        r.entities, r.workers
    )?;
    let statuses = |s: &RoundFigures| s.statuses.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", ");
    let opt = |v: Option<f64>, scale: f64, digits: usize| {
        v.map_or_else(|| "n/a".to_owned(), |v| format!("{:.digits$}", v / scale))
    };
    if r.backend == BackendKind::Embedded {
        let mut table = Table::new(&[
            "round",
            "history",
            "records before",
            "events/s",
            "CPU µs",
            "written KiB",
            "WAL peak MiB",
            "on disk MiB after",
            "baseline events/s",
            "baseline CPU µs",
            "baseline written KiB",
            "÷ baseline",
            "statuses",
        ]);
        for i in 1..12 {
            table = table.align_right(i);
        }
        for s in &r.rounds {
            let Some(e) = &s.embedded else { continue };
            table.row(vec![
                s.round.to_string(),
                s.history_per_entity.to_string(),
                s.records_before.to_string(),
                format!("{:.0}", e.events_per_second),
                opt(e.cpu_per_event_us, 1.0, 1),
                opt(e.bytes_written_per_event, KIB, 1),
                format!("{:.1}", e.wal_peak_bytes as f64 / MIB),
                format!("{:.1}", e.store_bytes_after as f64 / MIB),
                format!("{:.0}", e.baseline.events_per_second),
                opt(e.baseline.cpu_per_event_us, 1.0, 1),
                opt(e.baseline.bytes_written_per_event, KIB, 1),
                format!("{:.2}×", e.ratio_to_baseline),
                statuses(s),
            ]);
        }
        table.write(out)?;
    } else {
        let headers: Vec<&str> = ["round", "history", "made by"]
            .into_iter()
            .chain(USAGE_COLUMNS)
            .chain(["DynamoDB requests", "B stored", "$/M requests"])
            .collect();
        let mut table = Table::new(&headers);
        for i in 3..headers.len() {
            table = table.align_right(i);
        }
        for s in &r.rounds {
            let Some(a) = &s.aws else { continue };
            let per_event = a.requests.per_event.as_ref();
            for (who, c, requests) in [
                ("framework", &a.framework, per_event.map(|p| p.dynamodb_writes + p.dynamodb_reads)),
                ("destination", &a.destination, per_event.map(|p| p.destination_writes + p.destination_reads)),
            ] {
                let mut row = vec![s.round.to_string(), s.history_per_entity.to_string(), who.to_owned()];
                row.extend(usage_cells(c));
                row.extend([
                    opt(requests, 1.0, 2),
                    format!("{:.0}", c.dynamodb_bytes),
                    format!("{:.2}", c.request_dollars()),
                ]);
                table.row(row);
            }
        }
        table.write(out)?;
        for s in &r.rounds {
            writeln!(out, "round {}: {} invocations, {} retried; {}", s.round, s.invocations, s.retried, statuses(s))?;
        }
    }
    if let (Some(first), Some(last)) = (r.rounds.first(), r.rounds.last()) {
        if first.round != last.round {
            writeln!(out, "round {} against round {}: {}", last.round, first.round, spread(first, last))?;
        }
    }
    Ok(())
}

/// How the last round's figures compare with the first's.
fn spread(first: &RoundFigures, last: &RoundFigures) -> String {
    let ratio = |a: Option<f64>, b: Option<f64>| {
        a.zip(b).filter(|(a, _)| *a > 0.0).map_or_else(|| "n/a".to_owned(), |(a, b)| format!("{:.2}×", b / a))
    };
    match (&first.embedded, &last.embedded, &first.aws, &last.aws) {
        (Some(a), Some(b), _, _) => format!(
            "events/s {}, CPU per event {}, written per event {}; the baseline loop's events/s {}, CPU {}, written {}",
            ratio(Some(a.events_per_second), Some(b.events_per_second)),
            ratio(a.cpu_per_event_us, b.cpu_per_event_us),
            ratio(a.bytes_written_per_event, b.bytes_written_per_event),
            ratio(Some(a.baseline.events_per_second), Some(b.baseline.events_per_second)),
            ratio(a.baseline.cpu_per_event_us, b.baseline.cpu_per_event_us),
            ratio(a.baseline.bytes_written_per_event, b.baseline.bytes_written_per_event)
        ),
        (_, _, Some(a), Some(b)) => format!(
            "framework WRU per event {:+.2}, RRU {:+.2}, $ per million events (requests) {:+.2}",
            b.framework.wru - a.framework.wru,
            b.framework.rru - a.framework.rru,
            b.framework.request_dollars() - a.framework.request_dollars()
        ),
        _ => "n/a".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_holds_the_nth_event_of_every_entity_in_the_order_sent() {
        let workload = generate(&WorkloadConfig::rounds(7, 3, 5));
        let rounds = rounds_of(workload.lines(), 3).expect("three rounds");
        assert_eq!(rounds.iter().map(Vec::len).collect::<Vec<_>>(), [7, 7, 7]);
        let order = |line: &String| {
            let body: Value = serde_json::from_str(line).expect("JSON");
            let entity = ["tenant", "source", "entity_type", "external_id"].map(|p| body[p].to_string());
            let at = body["updated_at"].as_str().and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
            (entity, at.expect("every happy-path change has updated_at"), body["version"].as_i64())
        };
        for (earlier, later) in rounds.iter().zip(&rounds[1..]) {
            let mut earlier: Vec<_> = earlier.iter().map(order).collect();
            let mut later: Vec<_> = later.iter().map(order).collect();
            earlier.sort();
            later.sort();
            for (a, b) in earlier.iter().zip(&later) {
                assert_eq!(a.0, b.0, "each round names every entity once");
                assert!((a.1, a.2) < (b.1, b.2), "a later round's event of an entity is newer: {a:?} {b:?}");
            }
        }
    }

    #[test]
    fn more_events_of_an_entity_than_rounds_is_an_error() {
        let workload = generate(&WorkloadConfig::rounds(2, 3, 1));
        assert!(rounds_of(workload.lines(), 2).is_err());
    }
}
