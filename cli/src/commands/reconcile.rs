//! `synctrail reconcile --source S [--entity-type T] --against SNAPSHOT [--apply] [--rate N/s] [--run-id ID]`:
//! compare another system's records with the destination (missing, extra, stale, different, same) and, with
//! `--apply`, send corrective events to the ingest queue (`caused_by: reconcile:<run id>`), rate-limited and
//! resumable by run id (the run's state is kept beside the snapshot). A dry run (the default) sends and stores
//! nothing. Differences of `in_order` entity types are listed and not corrected (a snapshot row is a total, not a
//! delta).

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
    let backend = ctx.open_existing().await?;
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
        .await;
    progress.finish_and_clear();
    let report = report?;
    if ctx.json {
        write_json(out, &report)?;
    } else {
        print(out, &report)?;
    }
    Ok(if report.dry_run && report.counts.differences() > 0 { EXIT_CHECK_FAILED } else { EXIT_OK })
}

fn print(out: &mut dyn Write, report: &ReconcileReport) -> Result<(), CliError> {
    let resumed = report.resumed_after.is_some() || report.already_finished;
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
            let correction = match (&entity.event_id, &entity.not_corrected) {
                (Some(id), _) => id.to_string(),
                (None, Some(_)) => "none (in_order)".to_owned(),
                (None, None) => "-".to_owned(),
            };
            table.row(vec![entity.entity_key.clone(), kind.to_owned(), shorten(&fields, 40), correction]);
        }
        table.write(out)?;
    }
    for invalid in &report.invalid {
        match &invalid.entity {
            Some(entity) => {
                writeln!(out, "line {}: not compared: {} ({entity} left alone)", invalid.line, invalid.error)?
            }
            None => writeln!(out, "line {}: not compared: {}", invalid.line, invalid.error)?,
        }
    }
    if c.not_correctable > 0 {
        writeln!(
            out,
            "{} difference(s) of in_order entity types not corrected: their events are deltas, and a snapshot row is \
             a total (a delete carries none), which the destination would refuse; fix them with delta events",
            c.not_correctable
        )?;
    }
    let (run, all, now) = (&report.run_id, report.sent, report.sent_now);
    if report.already_finished {
        writeln!(
            out,
            "run {run} had already finished (it sent {all} corrective event(s) in all): nothing was looked at or \
             sent this time; choose another run id (or none) for a new run"
        )?;
        return Ok(());
    }
    match (report.dry_run, resumed) {
        (true, _) if all == 0 => writeln!(out, "dry run: nothing to correct")?,
        (true, _) => writeln!(out, "dry run: {all} corrective event(s) would be sent; run again with --apply")?,
        (false, _) if now == 0 && all == 0 => writeln!(out, "nothing to correct: nothing sent")?,
        (false, false) => writeln!(
            out,
            "sent {now} corrective event(s) (caused_by reconcile:{run}); process them with `synctrail run`"
        )?,
        (false, true) if now == 0 => writeln!(
            out,
            "sent nothing this time ({all} corrective event(s) in all over run {run}); if the earlier ones are not \
             processed yet, process them with `synctrail run`"
        )?,
        (false, true) => writeln!(
            out,
            "sent {now} corrective event(s) this time, {all} in all over run {run} (caused_by reconcile:{run}); \
             process them with `synctrail run`"
        )?,
    }
    if let Some(after) = &report.resumed_after {
        writeln!(out, "resumed run {run} after {after}")?;
    }
    Ok(())
}
