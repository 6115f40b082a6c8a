//! `synctrail bench --backend aws`: what tracking costs per event on AWS, measured. Four scenarios — the happy
//! path, every event delivered twice, 10 % of applies failing (retried), one hot `in_order` entity — each on
//! fresh resources, every DynamoDB client metered by a [`CapacityMeter`] (write and read units from real item
//! sizes, indexes included), S3 and SQS requests counted, storage measured at the end and priced over the
//! retention settings; the framework and the destination (the reference mirror) apart.

use super::run::run_with_progress;
use super::send::send_lines;
use super::Context;
use crate::args::BenchArgs;
use crate::backend::{AnyBackend, BackendExt};
use crate::error::CliError;
use crate::output::{write_json, Table};
use crate::prices::{Prices, Retention, US_EAST_1_2025};
use crate::requests::{figures, since, sum, Counts, RequestFigures};
use crate::runtime::RunOptions;
use crate::workload::{generate, EntityKind, WorkloadConfig};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use synctrail::compose::ComposedBackend;
use synctrail::destination::drill::DrillPlan;
use synctrail::store::aws::meter::{Consumed, Stored};
use synctrail::store::aws::setup::SetupConfig;
use synctrail::store::aws::{CapacityMeter, DynamoMirror, Party, RequestCounter};
use synctrail::store::StoreError;

/// Events per scenario when `--events` is not given: enough for stable figures, small enough for moto.
pub const DEFAULT_EVENTS: u64 = 200;

/// Each invocation's deadline, as the template's default `ProcessorTimeoutSeconds`: the deployment being priced.
/// (The local runtime's 2 s default hands many records back unstarted against moto, which a deployment would not.)
const PROCESSOR_TIMEOUT_SECONDS: i64 = 30;
/// The queue's visibility timeout, as the template's default `QueueVisibilityTimeoutSeconds` (6 × the timeout).
const QUEUE_VISIBILITY_TIMEOUT_SECONDS: i64 = 180;

/// One workload the benchmark prices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Scenario {
    /// Every event once, in order, nothing failing.
    HappyPath,
    /// Every event delivered twice (the same message body again, later).
    DeliveredTwice,
    /// 10 % of applies fail with a retryable error (so about 10 % of events are retried once).
    TenPercentFailing,
    /// Every event on one `in_order` entity.
    HotEntity,
}

impl Scenario {
    /// All four, in report order.
    pub const ALL: [Scenario; 4] =
        [Scenario::HappyPath, Scenario::DeliveredTwice, Scenario::TenPercentFailing, Scenario::HotEntity];

    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::HappyPath => "happy path",
            Scenario::DeliveredTwice => "every event delivered twice",
            Scenario::TenPercentFailing => "10 % failing once",
            Scenario::HotEntity => "one hot in_order entity",
        }
    }

    fn workload(self, events: usize, entities: usize, seed: u64) -> WorkloadConfig {
        let happy = WorkloadConfig::happy_path(events, entities, seed);
        match self {
            Scenario::HappyPath | Scenario::TenPercentFailing => happy,
            Scenario::DeliveredTwice => WorkloadConfig { duplicate_rate: 1.0, ..happy },
            Scenario::HotEntity => WorkloadConfig { entities: 1, only: Some(EntityKind::InventoryAdjustment), ..happy },
        }
    }

    fn drill(self) -> DrillPlan {
        match self {
            Scenario::TenPercentFailing => DrillPlan { fail_rate: 0.1, ..DrillPlan::default() },
            _ => DrillPlan::default(),
        }
    }
}

/// One party's usage per event, and its dollars per million events.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PartyCost {
    /// DynamoDB write request units in the table.
    pub wru_table: f64,
    /// DynamoDB write request units per global secondary index.
    pub wru_indexes: BTreeMap<String, f64>,
    /// All write request units.
    pub wru: f64,
    /// DynamoDB read request units.
    pub rru: f64,
    /// S3 `PutObject` requests.
    pub s3_puts: f64,
    /// S3 `GetObject` requests.
    pub s3_gets: f64,
    /// SQS requests (sends, receives, deletes, visibility changes; the local runtime's depth polls left out).
    pub sqs_requests: f64,
    /// Bytes kept in DynamoDB (items and index entries, 100 bytes of overhead each).
    pub dynamodb_bytes: f64,
    /// Payload objects kept in S3.
    pub s3_objects: f64,
    /// Their bytes.
    pub s3_bytes: f64,
    /// Dollars per million events at list prices.
    pub dollars_per_million: Dollars,
    /// Requests the meter could not bill (0 in a sound run).
    pub unmetered: u64,
}

/// Dollars per million events.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Dollars {
    /// DynamoDB write units.
    pub dynamodb_writes: f64,
    /// DynamoDB read units.
    pub dynamodb_reads: f64,
    /// S3 requests.
    pub s3_requests: f64,
    /// SQS requests.
    pub sqs: f64,
    /// DynamoDB storage over the records' retention.
    pub dynamodb_storage: f64,
    /// S3 storage over the payloads' retention.
    pub s3_storage: f64,
    /// Everything above.
    pub total: f64,
}

/// What one scenario cost.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioCost {
    /// Which.
    pub scenario: Scenario,
    /// Distinct events (what the per-event figures divide by).
    pub events: u64,
    /// Lines sent to the queue.
    pub deliveries: u64,
    /// Processor invocations (batches handed to the processor; each archives its bodies in at most one S3 PUT).
    pub invocations: u64,
    /// Records returned for retry.
    pub retried: u64,
    /// Final statuses.
    pub statuses: BTreeMap<&'static str, u64>,
    /// The framework's usage.
    pub framework: PartyCost,
    /// The destination's (the reference mirror's) usage.
    pub destination: PartyCost,
    /// Requests by operation.
    pub requests: RequestFigures,
}

/// The report.
#[derive(Debug, Clone, Serialize)]
pub struct CostReport {
    /// The prices assumed.
    pub prices: Prices,
    /// The retention settings storage is priced over.
    pub retention: Retention,
    /// Entities per scenario (the hot one has one).
    pub entities: u64,
    /// Concurrent invocations.
    pub workers: u16,
    /// The scenarios.
    pub scenarios: Vec<ScenarioCost>,
}

/// Runs the AWS cost benchmark.
pub async fn execute(ctx: &Context, args: &BenchArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let events = args.events.unwrap_or(DEFAULT_EVENTS);
    // One event per entity unless told otherwise: no two workers contend for an entity, so the happy path, the
    // duplicates and the retries are priced apart from contention (the hot scenario prices that).
    let entities = args.entities.unwrap_or(events);
    let retention = retention(ctx)?;
    let mut report =
        CostReport { prices: US_EAST_1_2025, retention, entities, workers: args.run.workers, scenarios: Vec::new() };
    let chosen = |s: &Scenario| args.scenarios.is_empty() || args.scenarios.contains(s);
    for scenario in Scenario::ALL.into_iter().filter(chosen) {
        if !ctx.json {
            writeln!(out, "running: {} ({events} events)…", scenario.name())?;
        }
        report.scenarios.push(run(ctx, args, scenario, events, entities, &report).await?);
    }
    if ctx.json {
        return write_json(out, &report);
    }
    write_report(out, &report)?;
    Ok(())
}

async fn run(
    ctx: &Context,
    args: &BenchArgs,
    scenario: Scenario,
    events: u64,
    entities: u64,
    report: &CostReport,
) -> Result<ScenarioCost, CliError> {
    let count = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
    let prefix =
        args.prefix.as_ref().map(|p| format!("{p}-{}", Scenario::ALL.iter().position(|s| *s == scenario).unwrap_or(0)));
    let (backend, metering) = Metering::open(ctx, "bench", prefix.as_deref()).await?;
    let start = metering.mark().await?;
    let workload = generate(&scenario.workload(count(events), count(entities), args.run.seed));
    let sent = send_lines(backend.ports.queue.as_ref(), workload.lines(), |_| {})
        .await
        .map_err(CliError::store("sending the workload to the queue"))?;
    let options = RunOptions { drill: scenario.drill(), ..run_options(ctx, args.run.workers, args.run.seed)? };
    let stats = run_with_progress(&backend, ctx.settings()?, &options, ctx.json).await?;
    if !stats.drained {
        return Err(CliError::NotDrained { seconds: options.max_duration.as_secs_f64(), selector: backend.selector() });
    }
    let usage = metering.usage_since(&start).await?;
    let n = workload.summary.events as f64;
    Ok(ScenarioCost {
        scenario,
        events: workload.summary.events as u64,
        deliveries: sent.sent,
        invocations: stats.invocations,
        retried: stats.retried,
        statuses: stats.statuses.iter().map(|(s, n)| (s.as_str(), *n)).collect(),
        framework: usage.cost(Party::Framework, &report.prices, &report.retention, n),
        destination: usage.cost(Party::Destination, &report.prices, &report.retention, n),
        requests: usage.requests(Some(workload.summary.events as u64)),
    })
}

/// The retention settings storage is priced over: the configured metadata retention, the template's payload
/// lifecycle.
pub(super) fn retention(ctx: &Context) -> Result<Retention, CliError> {
    let setup = SetupConfig::named("bench");
    Ok(Retention {
        records_days: ctx.config_but_backend()?.settings.metadata_retention.num_seconds() as f64 / 86_400.0,
        archive_after_days: f64::from(setup.archive_after_days),
        expire_after_days: f64::from(setup.expire_after_days),
    })
}

/// How the benchmarks priced on AWS run the local runtime: `workers` invocations at once, each with the template's
/// default deadline and visibility timeout (the deployment being priced).
pub(super) fn run_options(ctx: &Context, workers: u16, seed: u64) -> Result<RunOptions, CliError> {
    Ok(RunOptions {
        workers: usize::from(workers),
        lanes: ctx.config_but_backend()?.record_concurrency,
        seed,
        function_timeout: chrono::Duration::seconds(PROCESSOR_TIMEOUT_SECONDS),
        visibility_timeout: chrono::Duration::seconds(QUEUE_VISIBILITY_TIMEOUT_SECONDS),
        ..RunOptions::default()
    })
}

/// A fresh AWS backend whose DynamoDB clients a [`CapacityMeter`] meters, and its request counters: what it used
/// between two moments.
pub(super) struct Metering {
    meter: CapacityMeter,
    framework: RequestCounter,
    destination: RequestCounter,
    table: String,
    bucket: String,
}

/// What the counters had counted, and what the table and bucket held, at one moment.
pub(super) struct Mark {
    framework: Counts,
    destination: Counts,
    stored: BTreeMap<Party, Stored>,
    objects: u64,
    bytes: u64,
}

/// What a backend used between two moments: capacity, requests, and what was stored meanwhile.
pub(super) struct Usage {
    consumed: BTreeMap<Party, Consumed>,
    framework: Counts,
    destination: Counts,
    stored: BTreeMap<Party, Stored>,
    objects: u64,
    bytes: u64,
}

impl Metering {
    /// New resources for `purpose` (named `<prefix>-…` when given), metered.
    pub(super) async fn open(
        ctx: &Context,
        purpose: &str,
        prefix: Option<&str>,
    ) -> Result<(AnyBackend, Self), CliError> {
        let meter = CapacityMeter::connect(ctx.aws.endpoint_url.as_deref(), None, None).await;
        let backend = ctx.open_fresh_metered(purpose, prefix, &meter).await?;
        let ComposedBackend::Aws(parts) = &backend.backend else {
            return Err(CliError::InvalidArgument("the cost benchmarks run on --backend aws".into()));
        };
        let metering = Self {
            meter: meter.clone(),
            framework: parts.backend.requests.clone(),
            destination: parts.destination_requests.clone(),
            table: parts.config.table.clone(),
            bucket: parts.config.bucket.clone(),
        };
        Ok((backend, metering))
    }

    /// The counters and storage now; the capacity meter starts again from zero.
    pub(super) async fn mark(&self) -> Result<Mark, CliError> {
        let (framework, destination) = (self.framework.snapshot(), self.destination.snapshot());
        let (stored, objects, bytes) = self.storage().await?;
        self.meter.reset();
        Ok(Mark { framework, destination, stored, objects, bytes })
    }

    /// What was used since `mark`.
    pub(super) async fn usage_since(&self, mark: &Mark) -> Result<Usage, CliError> {
        let consumed = self.meter.consumed();
        let (framework, destination) = (
            since(&mark.framework, &self.framework.snapshot()),
            since(&mark.destination, &self.destination.snapshot()),
        );
        let (stored, objects, bytes) = self.storage().await?;
        let stored = stored
            .into_iter()
            .map(|(who, now)| {
                let before = mark.stored.get(&who).cloned().unwrap_or_default();
                let grown = Stored {
                    items: now.items.saturating_sub(before.items),
                    table_bytes: now.table_bytes.saturating_sub(before.table_bytes),
                    index_bytes: now.index_bytes.saturating_sub(before.index_bytes),
                };
                (who, grown)
            })
            .collect();
        let (objects, bytes) = (objects.saturating_sub(mark.objects), bytes.saturating_sub(mark.bytes));
        Ok(Usage { consumed, framework, destination, stored, objects, bytes })
    }

    async fn storage(&self) -> Result<(BTreeMap<Party, Stored>, u64, u64), CliError> {
        let unavailable = |what: &str| {
            let what = what.to_owned();
            move |e: String| {
                CliError::store("measuring storage")(StoreError::Unavailable(format!("{what}: {e}").into()))
            }
        };
        let owner = |item: &_| if DynamoMirror::owns(item) { Party::Destination } else { Party::Framework };
        let stored = self
            .meter
            .stored(&self.table, owner)
            .await
            .map_err(|e| unavailable("scanning the table")(e.to_string()))?;
        let (objects, bytes) = self
            .meter
            .bucket_bytes(&self.bucket)
            .await
            .map_err(|e| unavailable("listing the bucket")(e.to_string()))?;
        Ok((stored, objects, bytes))
    }
}

impl Usage {
    /// `who`'s usage per event over `events`, in dollars per million events too.
    pub(super) fn cost(&self, who: Party, prices: &Prices, retention: &Retention, events: f64) -> PartyCost {
        let none = Consumed::default();
        let consumed = self.consumed.get(&who).unwrap_or(&none);
        let stored = self.stored.get(&who).cloned().unwrap_or_default();
        let (counts, objects, bytes) = match who {
            Party::Framework => (&self.framework, self.objects, self.bytes),
            Party::Destination => (&self.destination, 0, 0),
        };
        cost(prices, retention, consumed, counts, &stored, (objects, bytes), events)
    }

    /// The requests by operation, per event when `events` is given.
    pub(super) fn requests(&self, events: Option<u64>) -> RequestFigures {
        let scope =
            "made by this process: sends, the handler's requests, the local event source's receives and deletes";
        figures(scope, &self.framework, &self.destination, events)
    }
}

/// The columns of a party's usage per event that the AWS cost tables show, in [`usage_cells`]' order.
pub(super) const USAGE_COLUMNS: [&str; 5] = ["WRU table", "WRU indexes", "RRU", "S3 PUT", "S3 GET"];

/// `c`'s cells under [`USAGE_COLUMNS`].
pub(super) fn usage_cells(c: &PartyCost) -> [String; 5] {
    [c.wru_table, c.wru - c.wru_table, c.rru, c.s3_puts, c.s3_gets].map(|v| format!("{v:.2}"))
}

impl PartyCost {
    /// Dollars per million events of requests alone (storage left out).
    pub fn request_dollars(&self) -> f64 {
        let d = &self.dollars_per_million;
        d.total - d.dynamodb_storage - d.s3_storage
    }
}

/// One party's figures per event and in dollars per million events.
fn cost(
    prices: &Prices,
    retention: &Retention,
    consumed: &Consumed,
    counts: &Counts,
    stored: &Stored,
    (objects, bytes): (u64, u64),
    events: f64,
) -> PartyCost {
    let per = |v: f64| v / events.max(1.0);
    let sqs = sum(counts, "SQS", |op| op != "GetQueueAttributes") as f64;
    let mut c = PartyCost {
        wru_table: per(consumed.table_wru as f64),
        wru_indexes: consumed.index_wru.iter().map(|(name, units)| (name.clone(), per(*units as f64))).collect(),
        wru: per(consumed.wru() as f64),
        rru: per(consumed.rru),
        s3_puts: per(sum(counts, "S3", |op| op == "PutObject") as f64),
        s3_gets: per(sum(counts, "S3", |op| op == "GetObject") as f64),
        sqs_requests: per(sqs),
        dynamodb_bytes: per((stored.table_bytes + stored.index_bytes) as f64),
        s3_objects: per(objects as f64),
        s3_bytes: per(bytes as f64),
        dollars_per_million: Dollars::default(),
        unmetered: consumed.unmetered,
    };
    let million = 1e6;
    let mut d = Dollars {
        dynamodb_writes: c.wru * prices.dynamodb_per_million_wru,
        dynamodb_reads: c.rru * prices.dynamodb_per_million_rru,
        s3_requests: (c.s3_puts * prices.s3_per_thousand_puts + c.s3_gets * prices.s3_per_thousand_gets) * 1000.0,
        sqs: c.sqs_requests * prices.sqs_per_million_requests,
        dynamodb_storage: prices.dynamodb_storage(c.dynamodb_bytes * million, retention.records_days),
        s3_storage: prices.s3_storage(c.s3_objects * million, c.s3_bytes * million, retention),
        total: 0.0,
    };
    d.total = d.dynamodb_writes + d.dynamodb_reads + d.s3_requests + d.sqs + d.dynamodb_storage + d.s3_storage;
    c.dollars_per_million = d;
    c
}

fn write_report(out: &mut dyn Write, r: &CostReport) -> std::io::Result<()> {
    let p = &r.prices;
    writeln!(
        out,
        "\nAWS cost per event, measured ({} workers; {} entities per scenario, the hot one 1)",
        r.workers, r.entities
    )?;
    writeln!(
        out,
        "prices (us-east-1 list, 2025): DynamoDB on-demand ${}/M WRU, ${}/M RRU, ${}/GB-month; S3 ${}/1k PUT, ${}/1k \
         GET, Standard ${}/GB-month, Glacier Flexible Retrieval ${}/GB-month (lifecycle moves objects ≥ {} KiB \
         only); SQS ${}/M requests",
        p.dynamodb_per_million_wru,
        p.dynamodb_per_million_rru,
        p.dynamodb_per_gb_month,
        p.s3_per_thousand_puts,
        p.s3_per_thousand_gets,
        p.s3_standard_per_gb_month,
        p.s3_glacier_per_gb_month,
        p.s3_min_transition_bytes / 1024,
        p.sqs_per_million_requests
    )?;
    writeln!(
        out,
        "storage over the retention settings: records {:.0} days (TTL), payloads archived after {:.0} days, \
         expired after {:.0}\n",
        r.retention.records_days, r.retention.archive_after_days, r.retention.expire_after_days
    )?;
    let headers: Vec<&str> = ["scenario", "made by"]
        .into_iter()
        .chain(USAGE_COLUMNS)
        .chain(["SQS", "$/M requests", "$/M storage", "$/M total"])
        .collect();
    let mut table = Table::new(&headers);
    for i in 2..headers.len() {
        table = table.align_right(i);
    }
    for s in &r.scenarios {
        for (who, c) in [("framework", &s.framework), ("destination", &s.destination)] {
            let d = &c.dollars_per_million;
            let mut row = vec![s.scenario.name().to_owned(), who.to_owned()];
            row.extend(usage_cells(c));
            row.extend([
                format!("{:.2}", c.sqs_requests),
                format!("{:.2}", c.request_dollars()),
                format!("{:.2}", d.dynamodb_storage + d.s3_storage),
                format!("{:.2}", d.total),
            ]);
            table.row(row);
        }
    }
    table.write(out)?;
    let happy = r.scenarios.iter().find(|s| s.scenario == Scenario::HappyPath);
    for s in &r.scenarios {
        let f = &s.framework;
        let indexes: Vec<String> = f.wru_indexes.iter().map(|(n, u)| format!("{n} {u:.2}")).collect();
        writeln!(
            out,
            "{}: framework WRU by index: {}; {:.0} B in DynamoDB, {:.2} objects of {:.0} B in S3 per event; {} \
             deliveries in {} invocations, {} retried{}",
            s.scenario.name(),
            if indexes.is_empty() { "none".to_owned() } else { indexes.join(", ") },
            f.dynamodb_bytes,
            f.s3_objects,
            f.s3_bytes / f.s3_objects.max(1e-9),
            s.deliveries,
            s.invocations,
            s.retried,
            if f.unmetered + s.destination.unmetered > 0 {
                format!("; {} requests not metered", f.unmetered + s.destination.unmetered)
            } else {
                String::new()
            }
        )?;
        let mut extra = |label: &str, count: f64| -> std::io::Result<()> {
            if let (Some(h), true) = (happy, count > 0.0) {
                let more = (f.wru - h.framework.wru) * s.events as f64 / count;
                writeln!(out, "  framework WRU per {label} beyond the happy path: {more:.2}")?;
            }
            Ok(())
        };
        match s.scenario {
            Scenario::DeliveredTwice => extra("duplicate delivery", s.deliveries.saturating_sub(s.events) as f64)?,
            Scenario::TenPercentFailing => extra("retry", s.retried as f64)?,
            _ => {}
        }
    }
    writeln!(out, "\nrequests per event by operation:")?;
    write_operations(out, r)
}

/// One row per (made by, service, operation), one column per scenario.
fn write_operations(out: &mut dyn Write, r: &CostReport) -> std::io::Result<()> {
    let mut rows: BTreeSet<(&str, &str, &str)> = BTreeSet::new();
    for s in &r.scenarios {
        for (who, list) in [("framework", &s.requests.framework), ("destination", &s.requests.destination)] {
            rows.extend(list.iter().map(|c| (who, c.service.as_str(), c.operation.as_str())));
        }
    }
    let mut headers = vec!["made by", "service", "operation"];
    headers.extend(r.scenarios.iter().map(|s| s.scenario.name()));
    let mut table = Table::new(&headers);
    for i in 3..headers.len() {
        table = table.align_right(i);
    }
    for (who, service, operation) in rows {
        let mut row = vec![who.to_owned(), service.to_owned(), operation.to_owned()];
        for s in &r.scenarios {
            let list = if who == "framework" { &s.requests.framework } else { &s.requests.destination };
            let per = list
                .iter()
                .find(|c| c.service == service && c.operation == operation)
                .and_then(|c| c.per_event)
                .unwrap_or(0.0);
            row.push(format!("{per:.2}"));
        }
        table.row(row);
    }
    table.write(out)
}
