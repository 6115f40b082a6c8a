//! `synctrail bench verify`: load entities through the pipeline (one snapshot event each, so every one matches),
//! then time `verify --all` over them: entities per second, payloads read (none: the content hashes match), CPU,
//! and the machine's load while it ran.

use super::bench::load_average;
use super::run::run_with_progress;
use super::send::send_lines;
use super::Context;
use crate::args::{BackendKind, BenchVerifyArgs};
use crate::backend::BackendExt;
use crate::cpu::process_cpu_time;
use crate::error::CliError;
use crate::output::{write_json, Table};
use crate::runtime::RunOptions;
use serde::Serialize;
use std::io::Write;
use std::time::Instant;
use synctrail::engine::verify::{VerifyAllOptions, VerifyTotals};

/// The rate `verify --all` aims at over entities that all match, on the embedded backend.
pub const TARGET_ENTITIES_PER_SECOND: f64 = 20_000.0;

/// What `bench verify` measured.
#[derive(Debug, Clone, Serialize)]
pub struct BenchVerifyReport {
    /// `embedded` or `aws`.
    pub backend: BackendKind,
    /// Where the backend is.
    pub location: String,
    /// Entities loaded.
    pub entities: u64,
    /// What the pass found.
    pub totals: VerifyTotals,
    /// The pass's wall time, s.
    pub seconds: f64,
    /// Entities verified per second.
    pub entities_per_second: f64,
    /// `entities_per_second` / the target of 20,000.
    pub ratio_to_target: f64,
    /// User + system CPU time of the process during the pass, s.
    pub cpu_seconds: Option<f64>,
    /// The 1-minute load average before and after the pass (`/proc/loadavg`), and the cores the machine has.
    pub load_before: Option<f64>,
    /// See `load_before`.
    pub load_after: Option<f64>,
    /// Cores available to this process.
    pub cores: usize,
}

/// Runs `synctrail bench verify`.
pub async fn execute(ctx: &Context, args: &BenchVerifyArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let backend = ctx.open_fresh("bench-verify", args.prefix.as_deref(), None).await?;
    if !ctx.json {
        writeln!(
            out,
            "bench verify — {}\nloading {} entities…",
            super::demo::fresh_description(&backend),
            args.entities
        )?;
    }
    let lines = (0..args.entities).map(|i| {
        serde_json::json!({
            "source": "bench", "entity_type": "product", "external_id": format!("p{i}"),
            "event_id": format!("bench-{i}"), "updated_at": "2026-05-01T12:00:00Z",
            "payload": {"sku": format!("p{i}"), "title": format!("Product {i}"), "price": i, "tags": ["a", "b"]},
        })
        .to_string()
    });
    let bar = crate::progress::bar(Some(args.entities), "lines sent", ctx.json);
    send_lines(backend.ports.queue.as_ref(), lines, |n| bar.set_position(n))
        .await
        .map_err(CliError::store("sending the entities to the queue"))?;
    bar.finish_and_clear();
    let options = RunOptions { workers: usize::from(args.workers), ..RunOptions::default() };
    let stats = run_with_progress(&backend, ctx.settings()?, &options, ctx.json).await?;
    if !stats.drained {
        return Err(CliError::NotDrained { seconds: 0.0, selector: backend.selector() });
    }

    let engine = ctx.engine(&backend)?;
    let options = VerifyAllOptions { page_size: args.page_size, ..VerifyAllOptions::default() };
    let load_before = load_average();
    let cpu_before = process_cpu_time();
    let started = Instant::now();
    let report = engine.verify_all(&options, None, &mut |_| {}).await?;
    let seconds = started.elapsed().as_secs_f64();
    let cpu = cpu_before.zip(process_cpu_time()).map(|(before, after)| (after - before).as_secs_f64());
    let rate = report.totals.examined as f64 / seconds.max(1e-9);
    let result = BenchVerifyReport {
        backend: backend.kind(),
        location: backend.describe(),
        entities: args.entities,
        totals: report.totals,
        seconds,
        entities_per_second: rate,
        ratio_to_target: rate / TARGET_ENTITIES_PER_SECOND,
        cpu_seconds: cpu,
        load_before,
        load_after: load_average(),
        cores: std::thread::available_parallelism().map_or(1, usize::from),
    };
    if ctx.json {
        return write_json(out, &result);
    }
    let opt = |v: Option<f64>| v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.2}"));
    let t = &result.totals;
    let mut table = Table::new(&["figure", "value"]).align_right(1);
    for (name, value) in [
        ("entities verified", t.examined.to_string()),
        ("equal / differ / skipped", format!("{} / {} / {}", t.equal, t.differs, t.skipped)),
        ("payloads read", t.payloads_read.to_string()),
        ("pass wall time", format!("{:.2} s", result.seconds)),
        ("rate", format!("{:.0} entities/s", result.entities_per_second)),
        ("vs target 20,000 entities/s", format!("{:.2}×", result.ratio_to_target)),
        ("CPU (user+sys) during the pass", format!("{} s", opt(result.cpu_seconds))),
        ("load average before / after", format!("{} / {}", opt(result.load_before), opt(result.load_after))),
        ("cores", result.cores.to_string()),
    ] {
        table.row(vec![name.to_owned(), value]);
    }
    table.write(out)?;
    Ok(())
}
