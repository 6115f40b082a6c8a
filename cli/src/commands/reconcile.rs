//! `synctrail reconcile --source S [--entity-type T] --against SNAPSHOT [--apply] [--rate N/s] [--run-id ID]`:
//! compare another system's records with the destination (missing, extra, stale, different, same) and, with
//! `--apply`, send corrective events to the ingest queue (`caused_by: reconcile:<run id>`), rate-limited and
//! resumable by run id (the run's state is kept beside the snapshot). A dry run (the default) sends and stores
//! nothing.

use super::Context;
use crate::args::ReconcileArgs;
use crate::error::{CliError, EXIT_CHECK_FAILED, EXIT_OK};
use crate::output::{shorten, write_json, Table};
use crate::progress::bar;
use std::io::Write;
use synctrail::compose::compose_snapshot;
use synctrail::engine::reconcile::{DiffKind, ReconcileOptions, ReconcileReport};

/// Runs `synctrail reconcile`: a dry run that finds differences exits 1.
pub async fn execute(ctx: &Context, args: &ReconcileArgs, out: &mut dyn Write) -> Result<u8, CliError> {
    let backend = ctx.open().await?;
    let engine = ctx.engine(&backend)?;
    let snapshot = compose_snapshot(&args.against, &backend).await?;
    let options = ReconcileOptions {
        source: args.source.clone(),
        entity_type: args.entity_type.clone(),
        apply: args.apply,
        rate_per_second: args.rate,
        run_id: args.run_id.clone(),
        as_of: args.as_of,
        trace_header: None,
    };
    let progress = bar(Some(0), "entities", ctx.json);
    let report = engine
        .reconcile(snapshot.as_ref(), &options, &mut |done, total| {
            progress.set_length(total);
            progress.set_position(done);
        })
        .await?;
    progress.finish_and_clear();
    if ctx.json {
        write_json(out, &report)?;
    } else {
        print(out, &report)?;
    }
    Ok(if report.dry_run && report.counts.differences() > 0 { EXIT_CHECK_FAILED } else { EXIT_OK })
}

fn print(out: &mut dyn Write, report: &ReconcileReport) -> Result<(), CliError> {
    let c = &report.counts;
    let scope = report.entity_type.as_ref().map_or_else(|| report.source.clone(), |t| format!("{}/{t}", report.source));
    writeln!(out, "reconcile {} (run {}) against {} as of {}", scope, report.run_id, report.snapshot, report.as_of)?;
    writeln!(
        out,
        "same {} · missing {} · extra {} · different {} · stale {} · ignored {} · invalid {}",
        c.same, c.missing, c.extra, c.different, c.stale, c.ignored, c.invalid
    )?;
    if !report.entities.is_empty() {
        let mut table = Table::new(&["ENTITY", "KIND", "FIELDS", "CORRECTION"]);
        for entity in &report.entities {
            let kind = match entity.kind {
                DiffKind::Same => "same",
                DiffKind::Missing => "missing",
                DiffKind::Extra => "extra",
                DiffKind::Stale => "stale (destination newer)",
                DiffKind::Different => "different",
            };
            let fields = synctrail::engine::verify::summary(&entity.diff);
            let correction = entity.event_id.as_ref().map_or_else(|| "-".to_owned(), ToString::to_string);
            table.row(vec![entity.entity_key.clone(), kind.to_owned(), shorten(&fields, 40), correction]);
        }
        table.write(out)?;
    }
    for invalid in &report.invalid {
        writeln!(out, "line {}: not compared: {}", invalid.line, invalid.error)?;
    }
    match (report.dry_run, report.sent) {
        (true, 0) => writeln!(out, "dry run: nothing to correct")?,
        (true, n) => writeln!(out, "dry run: {n} corrective event(s) would be sent; run again with --apply")?,
        (false, n) => writeln!(
            out,
            "sent {n} corrective event(s) (caused_by reconcile:{}); process them with `synctrail run`",
            report.run_id
        )?,
    }
    if let Some(after) = &report.resumed_after {
        writeln!(out, "resumed run {} after {after}", report.run_id)?;
    }
    Ok(())
}
