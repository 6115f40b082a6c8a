//! The command line: clap definitions only.

use crate::duration::{parse_duration, parse_interval, parse_probability, parse_rate, parse_seconds, parse_time};
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Serialize;
use std::path::PathBuf;
use synctrail::model::Status;

const EXIT_CODES: &str = "Exit codes: 0 success; 1 a check did not pass (status: not completed, demo: not converged, \
verify and reconcile: something differs, run: stopped by --max-duration before the queue drained); 2 usage error, \
unknown event id or entity, or no synctrail home at --home; 3 an operation failed (storage, files).";

/// synctrail: sync records with external systems without losing, reordering or double-applying events.
#[derive(Debug, Parser)]
#[command(name = "synctrail", version, after_help = EXIT_CODES)]
pub struct Cli {
    /// The backend the command works on: the embedded one under --home, or DynamoDB + S3 + SQS.
    #[arg(long, global = true, env = "SYNCTRAIL_BACKEND", value_enum, default_value_t = BackendKind::Embedded)]
    pub backend: BackendKind,
    /// The embedded backend's home directory (database, queue, payloads, mirror).
    #[arg(long, global = true, env = "SYNCTRAIL_HOME", default_value = "./.synctrail")]
    pub home: PathBuf,
    /// Where the AWS backend lives (with --backend aws).
    #[command(flatten)]
    pub aws: AwsArgs,
    /// Where changes are applied.
    #[command(flatten)]
    pub destination: DestinationArgs,
    /// Print JSON (stable snake_case fields) instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The kinds of backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendKind {
    /// A SQLite file of records, heads, queue and mirror, and one of payloads, under --home.
    Embedded,
    /// A DynamoDB table, an S3 bucket and an SQS queue with its dead-letter queue.
    Aws,
}

impl BackendKind {
    /// The name used on the command line and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Embedded => "embedded",
            Self::Aws => "aws",
        }
    }
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The AWS backend's resources (`synctrail setup --backend aws` creates them and prints these settings).
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "AWS backend (with --backend aws)")]
pub struct AwsArgs {
    /// The DynamoDB table of events, entity heads and the mirror.
    #[arg(long, global = true, env = "SYNCTRAIL_TABLE", value_name = "NAME")]
    pub table: Option<String>,
    /// The S3 bucket of payloads.
    #[arg(long, global = true, env = "SYNCTRAIL_BUCKET", value_name = "NAME")]
    pub bucket: Option<String>,
    /// The ingest queue: its URL (or name).
    #[arg(long, global = true, env = "SYNCTRAIL_QUEUE_URL", value_name = "URL")]
    pub queue: Option<String>,
    /// The dead-letter queue: its URL (or name).
    #[arg(long, global = true, env = "SYNCTRAIL_DLQ_URL", value_name = "URL")]
    pub dlq: Option<String>,
    /// One endpoint for DynamoDB, S3 and SQS (moto, LocalStack); unset: AWS itself.
    #[arg(long, global = true, env = "AWS_ENDPOINT_URL", value_name = "URL")]
    pub endpoint_url: Option<String>,
    /// Let one DynamoDB request at a time leave this process. Needed on moto, whose canceled transactions undo
    /// concurrent writes to the same table; never on AWS.
    #[arg(long, global = true, env = "SYNCTRAIL_SERIALIZE_DYNAMODB")]
    pub serialize_dynamodb: bool,
}

/// The destination changes are applied to (`SYNCTRAIL_DESTINATION*` variables; docs/destination-protocol.md).
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Destination")]
pub struct DestinationArgs {
    /// `mirror` (the reference mirror in the backend, the default) or `http` (POST each change to --destination-url).
    #[arg(long, global = true, env = "SYNCTRAIL_DESTINATION", value_name = "KIND")]
    pub destination: Option<String>,
    /// The receiver's URL, with --destination http (signing secret, timeouts and concurrency: the
    /// SYNCTRAIL_DESTINATION_* variables).
    #[arg(long, global = true, env = "SYNCTRAIL_DESTINATION_URL", value_name = "URL")]
    pub destination_url: Option<String>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the backend's resources: the embedded home, or (--backend aws) the table, bucket and queues.
    Setup(SetupArgs),
    /// Send envelopes (one JSON object per line) to the ingest queue, as they are.
    Send(SendArgs),
    /// Process the queue with the local runtime (it plays Lambda's SQS event source) until it is quiescent.
    Run(RunArgs),
    /// Print one event's status; exit 0 only when it is completed.
    Status(EventArgs),
    /// Print everything recorded about one event, with its history.
    Show(EventArgs),
    /// List events.
    List(ListArgs),
    /// List the mirror's records (the reference destination).
    Records(RecordsArgs),
    /// Counts per status, queue depth, dead letters, events in flight, stalled leases, ties, retries, latency
    /// (and AWS requests made); --watch refreshes the live figures.
    Stats(StatsArgs),
    /// One sweeper pass: re-drive events whose entity lease expired, resume or fail dependency waits.
    Sweep(SweepArgs),
    /// Re-drive stored events by id, or in bulk by query, through the ordering rules again (or --force).
    Reprocess(ReprocessArgs),
    /// Compare another system's records (an NDJSON snapshot) with the destination; --apply sends corrections.
    Reconcile(ReconcileArgs),
    /// Replay an entity's events (or every entity's) and compare with the destination; --repair re-drives.
    Verify(VerifyArgs),
    /// Look at the dead-letter queue, and move its messages back after marking their events for retry.
    DeadLetters(DeadLetterArgs),
    /// Serve the webhook ingress over HTTP (POST /webhooks/{source}), as the ingest Lambda does, over the backend.
    Serve(ServeArgs),
    /// Run a realistic workload with injected faults end to end and check that it converges.
    Demo(DemoArgs),
    /// Measure throughput, latency and CPU per event (and AWS requests per event) on a happy-path workload.
    Bench(BenchArgs),
}

/// `synctrail setup`.
#[derive(Debug, Args)]
pub struct SetupArgs {
    /// With --backend aws: name the resources <PREFIX>-events, <PREFIX>-payloads, <PREFIX>-ingest and
    /// <PREFIX>-ingest-dlq (lower-case letters, digits and hyphens).
    #[arg(long, value_name = "NAME", default_value = crate::config::DEFAULT_PREFIX)]
    pub prefix: String,
    /// With --backend aws: receives after which SQS moves a message to the dead-letter queue.
    #[arg(long, value_name = "N", default_value_t = crate::config::MAX_RECEIVES,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_receives: u32,
}

/// `synctrail serve`: webhook sources and secrets come from `SYNCTRAIL_WEBHOOK_SECRET_<SOURCE>` (docs/webhooks.md).
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The port to listen on (0: a free one, printed at start).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// The address to listen on; the default lets only this machine in.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: std::net::IpAddr,
    /// Seconds a client may take to send its headers, and then its body (a slower one is cut off).
    #[arg(long, default_value_t = 10.0, value_parser = parse_seconds)]
    pub read_timeout: f64,
    /// Stop after this many seconds (default: serve until interrupted).
    #[arg(long, value_parser = parse_seconds)]
    pub max_duration: Option<f64>,
}

/// `synctrail send`.
#[derive(Debug, Args)]
pub struct SendArgs {
    /// The file to read (one envelope per line, or one SQS event whose records' bodies are sent), or - for standard
    /// input.
    pub file: String,
}

/// `synctrail run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Concurrent invocations.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub workers: u16,
    /// Messages per invocation (1 to 10, like SQS).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u8).range(1..=10))]
    pub batch_size: u8,
    /// Probability that one destination write fails with a retryable error (drill).
    #[arg(long, default_value_t = 0.0, value_parser = parse_probability)]
    pub fail_rate: f64,
    /// Probability that one invocation dies mid-batch (drill).
    #[arg(long, default_value_t = 0.0, value_parser = parse_probability)]
    pub crash_rate: f64,
    /// The destination answers every write with a retryable error for this many seconds (drill).
    #[arg(long, value_name = "SECS", value_parser = parse_seconds)]
    pub destination_down: Option<f64>,
    /// Each invocation's deadline, in seconds from its start (at least 1, Lambda's minimum).
    #[arg(long, value_name = "SECS", default_value_t = 2.0, value_parser = parse_seconds)]
    pub function_timeout: f64,
    /// How long a received message stays invisible, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 3.0, value_parser = parse_seconds)]
    pub visibility_timeout: f64,
    /// Keep polling after the queue is quiescent, until interrupted (Ctrl-C, SIGTERM) or --max-duration.
    #[arg(long)]
    pub follow: bool,
    /// Stop after this many seconds, drained or not (default: 600; with --follow, none). A run that stops so
    /// before the queue drained exits 1 (not with --follow, nor when interrupted by Ctrl-C or SIGTERM).
    #[arg(long, value_name = "SECS", value_parser = parse_seconds)]
    pub max_duration: Option<f64>,
    /// Seed of the drills' dice.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// `synctrail status` and `synctrail show`.
#[derive(Debug, Args)]
pub struct EventArgs {
    /// The event id (the client's event_id, or the derived d-… / r-… id).
    pub id: String,
}

/// `synctrail list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only events in this status.
    #[arg(long)]
    pub status: Option<Status>,
    /// Only events from this source.
    #[arg(long)]
    pub source: Option<String>,
    /// Only events of this entity (tenant/source/entity_type/external_id, or source/entity_type/external_id).
    #[arg(long, value_name = "KEY")]
    pub entity: Option<String>,
    /// Only events received within this long (e.g. 10m, 2h, 3d).
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub since: Option<chrono::Duration>,
    /// At most this many events (0 = all).
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
}

/// `synctrail records`.
#[derive(Debug, Args)]
pub struct RecordsArgs {
    /// Only entities whose key starts with this (a whole key or a prefix such as default/github/issue/).
    #[arg(long, value_name = "KEY-OR-PREFIX")]
    pub entity: Option<String>,
    /// At most this many records (0 = all).
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
}

/// `synctrail stats`.
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Refresh every SECS seconds (default 2, at least 0.1) until Ctrl-C: queue depth, in flight, dead letters, oldest message
    /// age, stalled leases and counts per status, redrawn in place on a terminal (one JSON line each with --json).
    #[arg(long, value_name = "SECS", num_args = 0..=1, default_missing_value = "2", value_parser = parse_interval)]
    pub watch: Option<f64>,
    /// With --watch: stop after this many refreshes.
    #[arg(long, value_name = "N", requires = "watch", value_parser = clap::value_parser!(u64).range(1..))]
    pub watch_count: Option<u64>,
}

/// `synctrail sweep`.
#[derive(Debug, Args)]
pub struct SweepArgs {
    /// At most this many expired leases are acted on (as many of each other kind: queued events, waits, dead
    /// letters, flagged entities); holds and queued events it passes over are read past, up to 16 times as many.
    #[arg(long, default_value_t = crate::config::SWEEP_LIMIT)]
    pub limit: usize,
}

/// `synctrail reprocess`: event ids, or `--status` and filters (one or the other is required).
#[derive(Debug, Args)]
#[command(
    group = clap::ArgGroup::new("events").args(["ids", "status"]).required(true),
    override_usage = "synctrail reprocess [OPTIONS] <EVENT_ID>...\n       \
                      synctrail reprocess [OPTIONS] --status <STATUS> [--source <SOURCE>] [--entity <KEY>] \
                      [--since <DUR>] [--until <DUR>] [--limit <N>]",
    after_help = "Either name the events (synctrail reprocess EVENT_ID...) or select them in bulk \
                  (synctrail reprocess --status failed [--source S] [--entity KEY] [--since 2h] [--limit N])."
)]
pub struct ReprocessArgs {
    /// Event ids to re-drive (or, instead, select them in bulk with --status and the other filters).
    #[arg(value_name = "EVENT_ID")]
    pub ids: Vec<String>,
    /// Bulk, instead of ids: re-drive events in this status (failed, errored, disabled, waiting, …).
    #[arg(long)]
    pub status: Option<Status>,
    /// Bulk: only events from this source.
    #[arg(long, requires = "status")]
    pub source: Option<String>,
    /// Bulk: only events of this entity (tenant/source/entity_type/external_id, or source/entity_type/external_id).
    #[arg(long, value_name = "KEY", requires = "status")]
    pub entity: Option<String>,
    /// Bulk: only events received within this long (e.g. 10m, 2h, 3d).
    #[arg(long, value_name = "DUR", value_parser = parse_duration, requires = "status")]
    pub since: Option<chrono::Duration>,
    /// Bulk: only events received longer ago than this.
    #[arg(long, value_name = "DUR", value_parser = parse_duration, requires = "status")]
    pub until: Option<chrono::Duration>,
    /// Bulk: at most this many events (0 = all).
    #[arg(long, default_value_t = 0, requires = "status")]
    pub limit: usize,
    /// Skip the ordering rules: apply even if stale (recorded as forced in the history).
    #[arg(long)]
    pub force: bool,
    /// Check and list what would be sent; send nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// At most this many re-drives per second, so a bulk re-drive can't flood the destination.
    #[arg(long, value_name = "N", value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// Process the re-drives at once in this process (embedded backend) instead of leaving them on the queue.
    #[arg(long)]
    pub invoke: bool,
}

/// `synctrail reconcile`.
#[derive(Debug, Args)]
pub struct ReconcileArgs {
    /// The snapshot's source (e.g. shopify): its rows of other sources are ignored, and every entity of this source
    /// synctrail knows is compared.
    #[arg(long)]
    pub source: String,
    /// Only this entity type.
    #[arg(long, value_name = "TYPE")]
    pub entity_type: Option<String>,
    /// The other system's current records: an NDJSON file of envelopes (e.g. an export), or s3://bucket/key with
    /// --backend aws.
    #[arg(long, value_name = "SNAPSHOT")]
    pub against: String,
    /// Send the corrective events to the ingest queue (default: a dry run that sends and stores nothing).
    #[arg(long)]
    pub apply: bool,
    /// At most this many corrective events per second (`50` or `50/s`).
    #[arg(long, value_name = "N/s", value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// Resume the run with this id (an interrupted --apply prints it), or name a new one.
    #[arg(long, value_name = "ID")]
    pub run_id: Option<String>,
    /// The snapshot's time, RFC 3339 (the order key of corrective deletes); default: when the snapshot was last
    /// modified.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub as_of: Option<chrono::DateTime<chrono::Utc>>,
}

/// `synctrail verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The entity (tenant/source/entity_type/external_id, or source/entity_type/external_id).
    #[arg(value_name = "ENTITY", required_unless_present = "all", conflicts_with = "all")]
    pub entity: Option<String>,
    /// Every entity, comparing content hashes first and reading payloads only where they differ.
    #[arg(long)]
    pub all: bool,
    /// With --all: only entities of this source.
    #[arg(long, requires = "all")]
    pub source: Option<String>,
    /// With --all: only entities that changed within this long (e.g. 10m, 2h, 3d).
    #[arg(long, value_name = "DUR", value_parser = parse_duration, requires = "all")]
    pub since: Option<chrono::Duration>,
    /// Re-drive the newest applied event of each entity that differs (forced, recorded as a repair).
    #[arg(long)]
    pub repair: bool,
    /// With --all: resume the pass with this id (its progress is kept in --state), or name a new one.
    #[arg(long, value_name = "ID", requires = "all")]
    pub run_id: Option<String>,
    /// With --all: the file that keeps the pass's progress while it is unfinished, removed once it finishes
    /// (default: verify-<run id>.json in the embedded home; with --backend aws, synctrail-verify-<run id>.json here).
    #[arg(long, value_name = "FILE", requires = "all")]
    pub state: Option<PathBuf>,
    /// With --all: stop after this many pages of heads (resume with --run-id).
    #[arg(long, value_name = "N", requires = "all")]
    pub pages: Option<usize>,
    /// With --all: heads read per page.
    #[arg(long, value_name = "N", default_value_t = synctrail::engine::verify::PAGE_SIZE, requires = "all")]
    pub page_size: usize,
}

/// `synctrail dead-letters`.
#[derive(Debug, Args)]
pub struct DeadLetterArgs {
    /// Move the dead letters back to the queue after marking their events for retry (default: only list them,
    /// leaving them visible). Either way, dead letters of events already done are discarded, noted in the event's
    /// history.
    #[arg(long)]
    pub redrive: bool,
    /// At most this many messages are looked at (0 = all); a pass that stops at it says more may remain.
    #[arg(long, default_value_t = 1000)]
    pub limit: usize,
}

/// `synctrail demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Distinct events to generate (duplicates, resubmissions and malformed lines come on top).
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub events: u64,
    /// Entities the events are spread over.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub entities: u64,
    /// Concurrent invocations.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub workers: u16,
    /// Seed of the workload and the drills.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Let inventory (in_order) entities be among the hot entities too: a hot one gets more events waiting than
    /// the engine's in_order backlog holds.
    #[arg(long)]
    pub hot_deltas: bool,
    /// With --backend aws: create the fresh resources as <PREFIX>-… (default: synctrail-demo-<random>).
    #[arg(long, value_name = "NAME")]
    pub prefix: Option<String>,
}

/// `synctrail bench`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    /// What to measure instead of the happy-path pipeline.
    #[command(subcommand)]
    pub what: Option<BenchWhat>,
    /// Events to process (default: 20,000; with --backend aws, the cost benchmark: 200 per scenario).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub events: Option<u64>,
    /// Entities the events are spread over (default: 2,000; with --backend aws: one per event).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub entities: Option<u64>,
    /// How the workload runs.
    #[command(flatten)]
    pub run: BenchRunArgs,
    /// With --backend aws: create the fresh resources as <PREFIX>-… (default: synctrail-bench-<random>).
    #[arg(long, value_name = "NAME")]
    pub prefix: Option<String>,
    /// With --backend aws: price this scenario only (repeat the flag for several; default: all four).
    #[arg(long = "scenario", value_enum, value_name = "SCENARIO")]
    pub scenarios: Vec<crate::commands::bench_cost::Scenario>,
}

/// How a benchmark's happy-path workload runs: `synctrail bench` and `bench growth`.
#[derive(Debug, Args)]
pub struct BenchRunArgs {
    /// Concurrent invocations.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub workers: u16,
    /// Seed of the workload.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

/// What `synctrail bench` measures besides the pipeline.
#[derive(Debug, Subcommand)]
pub enum BenchWhat {
    /// `verify --all` over entities that all match: entities per second, payloads read (none expected).
    Verify(BenchVerifyArgs),
    /// The configured destination alone, without the engine: changes applied directly, CPU of this process per apply
    /// (with --destination http the receiver's work is another process's).
    Destination(BenchDestinationArgs),
    /// The webhook ingest handler alone: signed deliveries through it, CPU and queue sends per webhook.
    Webhooks(BenchWebhookArgs),
    /// The happy path in rounds, one newer event per entity each: what an event costs as its entity's history and
    /// the store grow (CPU and bytes embedded; write and read units with --backend aws).
    Growth(BenchGrowthArgs),
}

/// `synctrail bench growth`.
#[derive(Debug, Args)]
pub struct BenchGrowthArgs {
    /// Entities; each round sends one newer event for every one of them (default: 20,000; with --backend aws: 100).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub entities: Option<u64>,
    /// Rounds: the events of round r meet r − 1 events of their entity's history.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=1_000))]
    pub rounds: u64,
    /// How the workload runs.
    #[command(flatten)]
    pub run: BenchRunArgs,
    /// With --backend aws: create the fresh resources as <PREFIX>-… (default: synctrail-bench-growth-<random>).
    #[arg(long, value_name = "NAME")]
    pub prefix: Option<String>,
}

/// `synctrail bench destination`.
#[derive(Debug, Args)]
pub struct BenchDestinationArgs {
    /// Changes to apply (each a new event).
    #[arg(long, default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub applies: u64,
    /// Entities they are spread over.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub entities: u64,
    /// Calls in flight at once (as one invocation's lanes make them).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub in_flight: u16,
    /// With --backend aws: create the fresh resources as <PREFIX>-… (default: synctrail-bench-<random>).
    #[arg(long, value_name = "NAME")]
    pub prefix: Option<String>,
}

/// `synctrail bench webhooks`.
#[derive(Debug, Args)]
pub struct BenchWebhookArgs {
    /// Signed deliveries to handle.
    #[arg(long, default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub webhooks: u64,
    /// With --backend aws: create the fresh resources as <PREFIX>-… (default: synctrail-bench-<random>).
    #[arg(long, value_name = "NAME")]
    pub prefix: Option<String>,
}

/// `synctrail bench verify`.
#[derive(Debug, Args)]
pub struct BenchVerifyArgs {
    /// Entities to load through the pipeline (one snapshot event each), then verify.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub entities: u64,
    /// Concurrent invocations while loading.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub workers: u16,
    /// Heads read per page of the pass.
    #[arg(long, default_value_t = synctrail::engine::verify::PAGE_SIZE)]
    pub page_size: usize,
    /// With --backend aws: create the fresh resources as <PREFIX>-… (default: synctrail-bench-verify-<random>).
    #[arg(long, value_name = "NAME")]
    pub prefix: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn the_backend_and_its_resources_are_global_options() {
        let args = [
            "synctrail",
            "stats",
            "--backend",
            "aws",
            "--table",
            "t",
            "--bucket",
            "b",
            "--queue",
            "q",
            "--dlq",
            "d",
            "--endpoint-url",
            "http://127.0.0.1:5000",
        ];
        let cli = Cli::try_parse_from(args).map_err(|e| e.to_string());
        assert!(matches!(&cli, Ok(Cli { backend: BackendKind::Aws, command: Command::Stats(_), .. })), "{cli:?}");
        let aws = cli.map(|c| c.aws).unwrap_or_default();
        assert_eq!(
            (aws.table.as_deref(), aws.bucket.as_deref(), aws.queue.as_deref(), aws.dlq.as_deref()),
            (Some("t"), Some("b"), Some("q"), Some("d"))
        );
        assert_eq!(aws.endpoint_url.as_deref(), Some("http://127.0.0.1:5000"));
        let setup =
            Cli::try_parse_from(["synctrail", "--backend", "aws", "setup", "--prefix", "dev", "--max-receives", "10"]);
        assert!(
            matches!(&setup, Ok(Cli { command: Command::Setup(SetupArgs { max_receives: 10, .. }), .. })),
            "{setup:?}"
        );
        assert!(Cli::try_parse_from(["synctrail", "--backend", "gcp", "stats"]).is_err());
    }

    #[test]
    fn stats_watch_defaults_to_two_seconds_and_takes_a_refresh_count() {
        let watch = |args: &[&str]| match Cli::try_parse_from(args).map(|c| c.command) {
            Ok(Command::Stats(StatsArgs { watch, watch_count })) => Ok((watch, watch_count)),
            other => Err(format!("{other:?}")),
        };
        assert_eq!(watch(&["synctrail", "stats"]), Ok((None, None)));
        assert_eq!(watch(&["synctrail", "stats", "--watch", "--watch-count", "2"]), Ok((Some(2.0), Some(2))));
        assert_eq!(watch(&["synctrail", "stats", "--watch", "0.5", "--json"]), Ok((Some(0.5), None)));
        assert!(watch(&["synctrail", "stats", "--watch-count", "2"]).is_err(), "a count needs --watch");
        assert!(watch(&["synctrail", "stats", "--watch", "--watch-count", "0"]).is_err());
        assert!(watch(&["synctrail", "stats", "--watch", "0"]).is_err(), "no redrawing without pause");
        assert_eq!(watch(&["synctrail", "stats", "--watch", "0.1"]), Ok((Some(0.1), None)));
    }

    #[test]
    fn global_flags_work_after_the_subcommand() {
        let cli = Cli::try_parse_from(["synctrail", "list", "--status", "dropped", "--since", "2h", "--json"]);
        let cli = cli.map_err(|e| e.to_string());
        assert!(matches!(
            &cli,
            Ok(Cli { json: true, command: Command::List(ListArgs { status: Some(Status::Dropped), .. }), .. })
        ));
    }
}
