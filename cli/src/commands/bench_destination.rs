//! `synctrail bench destination`: the configured destination alone, without the engine — each of
//! `--applies` changes a new event of one of `--entities` entities, order keys rising, applied with `--in-flight`
//! calls at once — so the CPU this process spends per apply can be compared between destinations (with
//! `--destination http` the receiver is another process: its work is not counted here).

use super::Context;
use crate::args::BenchDestinationArgs;
use crate::cpu::process_cpu_time;
use crate::error::CliError;
use crate::output::{write_json, Table};
use futures_util::StreamExt;
use serde::Serialize;
use serde_json::json;
use std::collections::BTreeMap;
use std::io::Write;
use std::time::Instant;
use synctrail::destination::{ApplyOutcome, Change};
use synctrail::model::{ContentHash, Direction, EntityKey, EventId, Kind, OrderKey};
use synctrail::Policy;

/// What `bench destination` measured.
#[derive(Debug, Clone, Serialize)]
pub struct DestinationReport {
    /// `mirror`, `http` or `custom`.
    pub destination: &'static str,
    /// Changes applied.
    pub applies: usize,
    /// Entities they were spread over.
    pub entities: usize,
    /// Calls in flight at once.
    pub in_flight: usize,
    /// Wall time of the applies, s.
    pub wall_seconds: f64,
    /// Applies per second.
    pub applies_per_second: f64,
    /// User + system CPU time of this process per apply, µs.
    pub cpu_per_apply_us: Option<f64>,
    /// How the applies ended.
    pub outcomes: BTreeMap<String, u64>,
}

/// One prepared change.
struct Prepared {
    event_id: EventId,
    entity: EntityKey,
    order: OrderKey,
    hash: ContentHash,
    payload: serde_json::Value,
    fence: u64,
}

/// Runs `synctrail bench destination`.
pub async fn execute(ctx: &Context, args: &BenchDestinationArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let config = ctx.config_but_backend()?;
    let destination = match () {
        () if ctx.destination.is_some() => "custom",
        () if config.destination.is_mirror() => "mirror",
        () => "http",
    };
    let backend = ctx.open_fresh("bench", args.prefix.as_deref(), None).await?;
    let (applies, entities) = (count(args.applies), count(args.entities).max(1));
    let in_flight = usize::from(args.in_flight).max(1);
    let changes = prepare(applies, entities)?;
    let target = &backend.ports.destination;
    let cpu_before = process_cpu_time();
    let started = Instant::now();
    let results: Vec<String> = futures_util::stream::iter(&changes)
        .map(|c| async move {
            let change = Change {
                event_id: &c.event_id,
                entity: &c.entity,
                order: c.order,
                updated_at: None,
                content_hash: c.hash,
                kind: Kind::Upsert,
                direction: Direction::Inbound,
                payload: &c.payload,
                fence: c.fence,
                policy: Policy::LatestWins,
                forced: false,
                attempt: 1,
                previous_attempt_unknown: false,
                deadline: None,
                trace_id: None,
            };
            match target.apply(&change).await {
                Ok(ApplyOutcome::Applied | ApplyOutcome::Written(_)) => "applied".to_owned(),
                Ok(ApplyOutcome::AlreadyApplied) => "already_applied".to_owned(),
                Ok(ApplyOutcome::Superseded { .. }) => "superseded".to_owned(),
                Ok(ApplyOutcome::MissingDependency { .. }) => "missing_dependency".to_owned(),
                Err(e) => format!("error: {e}"),
            }
        })
        .buffer_unordered(in_flight)
        .collect()
        .await;
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_before.zip(process_cpu_time()).map(|(before, after)| (after - before).as_secs_f64());
    let mut outcomes = BTreeMap::new();
    for result in results {
        *outcomes.entry(result).or_default() += 1;
    }
    let report = DestinationReport {
        destination,
        applies,
        entities,
        in_flight,
        wall_seconds: wall,
        applies_per_second: applies as f64 / wall.max(1e-9),
        cpu_per_apply_us: cpu.map(|c| c * 1e6 / applies.max(1) as f64),
        outcomes,
    };
    if ctx.json {
        return write_json(out, &report);
    }
    let mut table = Table::new(&["figure", "value"]).align_right(1);
    table.row(vec!["destination".into(), report.destination.into()]);
    table.row(vec!["applies".into(), report.applies.to_string()]);
    table.row(vec!["in flight".into(), report.in_flight.to_string()]);
    table.row(vec!["applies per second".into(), format!("{:.0}", report.applies_per_second)]);
    let cpu = report.cpu_per_apply_us.map_or_else(|| "n/a".to_owned(), |c| format!("{c:.1} µs"));
    table.row(vec!["CPU per apply (this process)".into(), cpu]);
    for (outcome, n) in &report.outcomes {
        table.row(vec![outcome.clone(), n.to_string()]);
    }
    table.write(out)?;
    Ok(())
}

/// `applies` changes over `entities` entities: change `i` is event `bench-<i>` of entity `i % entities`, its order
/// key and fence rising with `i`, a payload of about 200 bytes.
fn prepare(applies: usize, entities: usize) -> Result<Vec<Prepared>, CliError> {
    let invalid = |e: synctrail::model::InvalidId| CliError::InvalidArgument(e.to_string());
    (0..applies)
        .map(|i| {
            let payload = json!({"title": format!("bench item {i}"), "state": "open", "n": i,
                                 "body": "x".repeat(120)});
            Ok(Prepared {
                event_id: EventId::parse(&format!("bench-{i}")).map_err(invalid)?,
                entity: EntityKey::new("bench", "bench", "item", &(i % entities).to_string()).map_err(invalid)?,
                order: OrderKey { nanos: 1_700_000_000_000_000_000 + i as i64, version: 0 },
                hash: ContentHash::of(payload.to_string().as_bytes()),
                payload,
                fence: i as u64 + 1,
            })
        })
        .collect()
}

fn count(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}
