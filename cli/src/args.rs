//! The command line: clap definitions only.

use crate::duration::{parse_duration, parse_probability, parse_seconds};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use synctrail::model::Status;

const EXIT_CODES: &str = "Exit codes: 0 success; 1 a check did not pass (status: not completed, demo: not converged); \
2 usage error or unknown event id; 3 an operation failed (storage, files).";

/// synctrail: sync records with external systems without losing, reordering or double-applying events.
#[derive(Debug, Parser)]
#[command(name = "synctrail", version, after_help = EXIT_CODES)]
pub struct Cli {
    /// The embedded backend's home directory (database, queue, payloads, mirror).
    #[arg(long, global = true, env = "SYNCTRAIL_HOME", default_value = "./.synctrail")]
    pub home: PathBuf,
    /// Print JSON (stable snake_case fields) instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Send envelopes (one JSON object per line) to the embedded queue, as they are.
    Send(SendArgs),
    /// Process the queue with the local runtime until it is quiescent.
    Run(RunArgs),
    /// Print one event's status; exit 0 only when it is completed.
    Status(EventArgs),
    /// Print everything recorded about one event, with its history.
    Show(EventArgs),
    /// List events.
    List(ListArgs),
    /// List the mirror's records (the reference destination).
    Records(RecordsArgs),
    /// Counts per status, queue depth, dead letters, events in flight.
    Stats,
    /// Re-drive events whose entity lease expired, once.
    Sweep(SweepArgs),
    /// Run a realistic workload with injected faults end to end and check that it converges.
    Demo(DemoArgs),
    /// Measure throughput, latency and CPU per event on a happy-path workload.
    Bench(BenchArgs),
}

/// `synctrail send`.
#[derive(Debug, Args)]
pub struct SendArgs {
    /// The file to read, or - for standard input.
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
    /// Each invocation's deadline, in seconds from its start.
    #[arg(long, value_name = "SECS", default_value_t = 2.0, value_parser = parse_seconds)]
    pub function_timeout: f64,
    /// How long a received message stays invisible, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 3.0, value_parser = parse_seconds)]
    pub visibility_timeout: f64,
    /// Keep polling after the queue is quiescent, until --max-duration.
    #[arg(long)]
    pub follow: bool,
    /// Stop after this many seconds, drained or not.
    #[arg(long, value_name = "SECS", default_value_t = 600.0, value_parser = parse_seconds)]
    pub max_duration: f64,
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

/// `synctrail sweep`.
#[derive(Debug, Args)]
pub struct SweepArgs {
    /// At most this many expired leases are looked at.
    #[arg(long, default_value_t = crate::config::SWEEP_LIMIT)]
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
}

/// `synctrail bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Events to process.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub events: u64,
    /// Entities the events are spread over.
    #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub entities: u64,
    /// Concurrent invocations.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub workers: u16,
    /// Seed of the workload.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
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
    fn global_flags_work_after_the_subcommand() {
        let cli = Cli::try_parse_from(["synctrail", "list", "--status", "dropped", "--since", "2h", "--json"]);
        let cli = cli.map_err(|e| e.to_string());
        assert!(matches!(
            &cli,
            Ok(Cli { json: true, command: Command::List(ListArgs { status: Some(Status::Dropped), .. }), .. })
        ));
    }
}
