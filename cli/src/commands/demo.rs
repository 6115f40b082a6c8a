//! `synctrail demo`: a realistic workload with injected faults, end to end on a fresh backend (a wiped home, or new
//! AWS resources), then the convergence check and the timeline of one dropped event.

use super::demo_webhooks::{self, WebhookReport};
use super::run::{dead_letters, run_with_progress, write_stats};
use super::send::send_lines;
use super::show::write_record;
use super::stats::{status_counts, write_status_table};
use super::Context;
use crate::args::BackendKind;
use crate::args::DemoArgs;
use crate::backend::AnyBackend;
use crate::backend::BackendExt;
use crate::check::{check, Convergence};
use crate::error::CliError;
use crate::output::write_json;
use crate::runtime::{RunOptions, RunStats};
use crate::workload::{generate, Summary, Workload, WorkloadConfig};
use serde::Serialize;
use std::io::Write;
use std::path::Path;
use std::time::Instant;
use synctrail::destination::drill::DrillPlan;
use synctrail::model::{EventRecord, Status};
use synctrail::store::EventQuery;

/// Probability that one destination write fails with a retryable error.
const FAIL_RATE: f64 = 0.02;
/// Probability that one invocation dies mid-batch.
const CRASH_RATE: f64 = 0.01;
/// The destination is down for this long after the run starts.
const DOWN_FOR_SECS: i64 = 2;
/// Mismatches listed when the check fails.
const SHOWN_FAILURES: usize = 20;

/// Everything `demo --json` prints.
#[derive(Debug, Serialize)]
struct DemoReport<'a> {
    backend: BackendKind,
    /// The embedded home (`None` on AWS).
    home: Option<&'a Path>,
    /// Where the backend is.
    location: String,
    /// The global options that select it, for follow-up commands.
    selector: String,
    workload: &'a Summary,
    run: &'a RunStats,
    statuses: std::collections::BTreeMap<&'static str, u64>,
    convergence: &'a Convergence,
    /// The webhook leg: signed deliveries through `serve`'s handler, and a forged one.
    webhooks: &'a WebhookReport,
}

/// The runtime options of the demo: `workers`, with injected faults.
pub fn run_options(workers: usize, seed: u64) -> RunOptions {
    RunOptions {
        workers,
        drill: DrillPlan {
            fail_rate: FAIL_RATE,
            permanent_rate: 0.0,
            down_until: Some(chrono::Utc::now() + chrono::Duration::seconds(DOWN_FOR_SECS)),
        },
        crash_rate: CRASH_RATE,
        seed,
        ..RunOptions::default()
    }
}

/// Runs `synctrail demo`.
pub async fn execute(ctx: &Context, args: &DemoArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let text = !ctx.json;
    let backend = ctx.open_fresh("demo", args.prefix.as_deref(), Some(crate::config::demo_dependency()?)).await?;
    if text {
        writeln!(out, "synctrail demo — {}", fresh_description(&backend))?;
    }
    let config = WorkloadConfig {
        hot_deltas: args.hot_deltas,
        ..WorkloadConfig::realistic(count(args.events), count(args.entities), args.seed)
    };
    let mut workload = generate(&config);
    if text {
        write_summary(out, &workload, args.seed)?;
        if args.hot_deltas {
            writeln!(
                out,
                "  --hot-deltas: hot inventory items get more events than the engine's in_order backlog holds"
            )?;
        }
    }
    prepare(&backend, &workload, ctx.json, out).await?;
    let leg = demo_webhooks::deliver(&backend, ctx.settings()?, &mut workload).await?;
    if text {
        writeln!(
            out,
            "delivered {} signed GitHub and Shopify webhooks and a forged one over HTTP to the ingest handler on 127.0.0.1",
            demo_webhooks::SIGNED_COUNT
        )?;
    }

    if text {
        writeln!(
            out,
            "running {} workers with faults: fail-rate {FAIL_RATE}, crash-rate {CRASH_RATE}, destination down for the first {DOWN_FOR_SECS} s",
            args.workers
        )?;
    }
    let started = Instant::now();
    let options = run_options(usize::from(args.workers), args.seed);
    let stats = run_with_progress(&backend, ctx.settings()?, &options, ctx.json).await?;
    let elapsed = started.elapsed();
    let counts = status_counts(backend.ports.store.as_ref()).await?;
    let convergence = check(&backend, &workload).await?;
    let webhooks = leg.check(&backend).await?;

    if ctx.json {
        let statuses = counts.iter().map(|(s, n)| (s.as_str(), *n)).collect();
        let report = DemoReport {
            backend: backend.kind(),
            home: backend.embedded().map(|(home, _)| home.as_path()),
            location: backend.describe(),
            selector: backend.selector(),
            workload: &workload.summary,
            run: &stats,
            statuses,
            convergence: &convergence,
            webhooks: &webhooks,
        };
        write_json(out, &report)?;
    } else {
        write_stats(out, &stats, elapsed, dead_letters(&backend).await?)?;
        writeln!(out, "\nevents per status:")?;
        write_status_table(out, &counts)?;
        writeln!(out)?;
        write_verdict(out, &convergence, &webhooks)?;
        if let Some(record) = dropped_example(&backend).await? {
            writeln!(
                out,
                "\nwhat happened to a dropped event (`synctrail {} show {}`):\n",
                backend.selector(),
                record.event_id
            )?;
            write_record(out, &record)?;
        }
        if let Some(record) = waited_example(&backend, &workload).await? {
            writeln!(
                out,
                "\nan event that waited for its product to exist (`synctrail {} show {}`):\n",
                backend.selector(),
                record.event_id
            )?;
            write_record(out, &record)?;
        }
    }
    if convergence.passed() && webhooks.passed() {
        Ok(())
    } else {
        let failures = convergence.failures.len() + webhooks.failures.len();
        Err(CliError::NotConverged { failures, selector: backend.selector() })
    }
}

/// "using a fresh home … (wiped first)", or the fresh AWS resources and how to select them later.
pub fn fresh_description(backend: &AnyBackend) -> String {
    match (backend.embedded(), backend.aws()) {
        (Some((home, _)), _) => format!("using a fresh home {} (wiped first)", home.display()),
        (None, Some(a)) => format!(
            "using fresh AWS resources (kept afterwards): {}\n  select them later with: {}",
            backend.describe(),
            crate::backend::env_lines(&a.config).join("; ")
        ),
        (None, None) => backend.describe(),
    }
}

fn count(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// Sends every line, then makes the local edits (before anything is processed, as an operator would have).
async fn prepare(backend: &AnyBackend, workload: &Workload, quiet: bool, out: &mut dyn Write) -> Result<(), CliError> {
    let started = Instant::now();
    let bar = crate::progress::bar(Some(workload.deliveries.len() as u64), "lines sent", quiet);
    let report = send_lines(backend.ports.queue.as_ref(), workload.lines(), |n| bar.set_position(n))
        .await
        .map_err(CliError::store("sending the workload to the queue"))?;
    bar.finish_and_clear();
    for edit in &workload.local_edits {
        backend
            .mirror_view("demo")?
            .record_local_edit(&edit.entity, edit.state.clone(), edit.modified_at)
            .await
            .map_err(CliError::store(format!("recording a local edit of {}", edit.entity)))?;
    }
    if !quiet {
        let newest = workload.local_edits.iter().filter(|e| e.newest).count();
        writeln!(
            out,
            "sent {} lines in {:.1} s; made {} local edits on the mirror ({newest} newer than every event of their entity)",
            report.sent,
            started.elapsed().as_secs_f64(),
            workload.local_edits.len(),
        )?;
    }
    Ok(())
}

fn write_summary(out: &mut dyn Write, w: &Workload, seed: u64) -> std::io::Result<()> {
    let s = &w.summary;
    writeln!(
        out,
        "workload (seed {seed}): {} events over {} entities ({} github/issue, {} shopify/product, {} shopify/inventory_adjustment)",
        s.events, s.entities, s.github_issues, s.shopify_products, s.inventory_items
    )?;
    writeln!(
        out,
        "  {} lines: reordered within ~50, {} exact duplicates, {} client resubmissions, {} idempotency conflicts, {} malformed",
        s.lines, s.duplicates, s.resubmissions, s.conflicts, s.malformed
    )?;
    writeln!(
        out,
        "  {} ties (same updated_at, other content), {} creates without updated_at, {} deletes",
        s.ties, s.creates, s.deletes
    )?;
    writeln!(
        out,
        "  {} shopify/inventory_level entities sent before their product exists (they wait for it)",
        s.dependency_waits
    )
}

fn write_verdict(out: &mut dyn Write, c: &Convergence, w: &WebhookReport) -> std::io::Result<()> {
    let mark = |ok: bool| if ok { "ok  " } else { "FAIL" };
    writeln!(
        out,
        "{} converged: {}/{} entities match their expected state",
        mark(c.entities_matching == c.entities),
        c.entities_matching,
        c.entities
    )?;
    writeln!(
        out,
        "{} nothing lost or stuck: {}/{} distinct events sent are recorded, {} in a terminal status",
        mark(c.events_recorded == c.events_sent && c.events_terminal == c.events_sent),
        c.events_recorded,
        c.events_sent,
        c.events_terminal
    )?;
    writeln!(
        out,
        "{} bad input: {}/{} malformed or conflicting messages ended rejected",
        mark(c.rejections_ok == c.rejections_expected),
        c.rejections_ok,
        c.rejections_expected
    )?;
    writeln!(
        out,
        "{} exactly once: {} destination effects, {} events with more than one",
        mark(c.events_with_several_effects == 0),
        c.effects,
        c.events_with_several_effects
    )?;
    writeln!(
        out,
        "{} webhooks: {}/{} signed deliveries accepted (202) and completed; a forged one answered {}, {}",
        mark(w.accepted == w.signed && w.completed == w.signed && w.forged_status == 401 && !w.forged_stored),
        w.completed,
        w.signed,
        w.forged_status,
        if w.forged_stored { "but something of it was stored" } else { "nothing of it stored" }
    )?;
    if c.passed() && w.passed() {
        writeln!(out, "verdict: converged — all checks passed")?;
    } else {
        let failures: Vec<&String> = c.failures.iter().chain(&w.failures).collect();
        writeln!(out, "verdict: NOT converged — {} check(s) failed; the first {SHOWN_FAILURES}:", failures.len())?;
        for failure in failures.into_iter().take(SHOWN_FAILURES) {
            writeln!(out, "  - {failure}")?;
        }
    }
    Ok(())
}

/// An inventory level event whose history shows a wait for its product: one that then completed if any.
async fn waited_example(backend: &AnyBackend, workload: &Workload) -> Result<Option<EventRecord>, CliError> {
    let mut waited = Vec::new();
    for spec in workload.entities.iter().filter(|s| s.key.entity_type == crate::workload::INVENTORY_LEVEL) {
        let query = EventQuery { entity: Some(spec.key.clone()), ..EventQuery::default() };
        let events = backend.ports.store.list_events(&query).await.map_err(CliError::store("listing events"))?;
        waited.extend(events.into_iter().filter(|r| r.history.iter().any(|h| h.status == Status::Waiting)));
    }
    let completed = waited.iter().position(|r| r.status == Status::Completed);
    Ok(completed.map(|at| waited.swap_remove(at)).or_else(|| waited.into_iter().next()))
}

/// A dropped event to show: one dropped for a local edit when there is one, else any.
async fn dropped_example(backend: &AnyBackend) -> Result<Option<EventRecord>, CliError> {
    let query = EventQuery { status: Some(Status::Dropped), ..EventQuery::default() };
    let dropped = backend.ports.store.list_events(&query).await.map_err(CliError::store("listing dropped events"))?;
    let for_edit = dropped.iter().find(|r| r.dropped_for.as_deref().is_some_and(|f| f.contains("local-edit")));
    Ok(for_edit.or(dropped.first()).cloned())
}
