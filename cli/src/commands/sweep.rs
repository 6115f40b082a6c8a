//! `synctrail sweep`: one sweeper pass, re-driving events whose entity lease expired, resuming or failing waits,
//! and recording or discarding dead letters.

use super::Context;
use crate::args::SweepArgs;
use crate::config::SWEEPER_FUNCTION;
use crate::error::CliError;
use crate::output::write_json;
use std::io::Write;
use synctrail::engine::{Invocation, SweepReport};

/// Runs one sweep over the home's backend.
pub async fn sweep(ctx: &Context, limit: usize) -> Result<SweepReport, CliError> {
    let backend = ctx.open_existing().await?;
    let engine = ctx.engine(&backend)?;
    let invocation = Invocation { function: Some(SWEEPER_FUNCTION.to_owned()), ..Invocation::default() };
    engine.sweep(limit, &invocation).await.map_err(CliError::engine("sweeping expired leases"))
}

/// Runs `synctrail sweep`.
pub async fn execute(ctx: &Context, args: &SweepArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let report = sweep(ctx, args.limit).await?;
    if ctx.json {
        return write_json(out, &report);
    }
    writeln!(
        out,
        "examined {} expired lease(s); re-drove {} event(s) (their lease expired, or queued with nothing to promote them)",
        report.examined,
        report.redriven.len()
    )?;
    for id in &report.redriven {
        writeln!(out, "  {id}")?;
    }
    if !report.settles_finished.is_empty() {
        writeln!(
            out,
            "finished {} settle(s) cut short (the head moved on, what waited promoted)",
            report.settles_finished.len()
        )?;
        for id in &report.settles_finished {
            writeln!(out, "  {id}")?;
        }
    }
    writeln!(
        out,
        "examined {} waiting event(s); resumed {} whose dependency appeared; failed {} that waited too long",
        report.waits_examined,
        report.waits_resumed.len(),
        report.waits_failed.len()
    )?;
    for id in report.waits_resumed.iter().chain(&report.waits_failed) {
        writeln!(out, "  {id}")?;
    }
    let discarded: usize = report.dead_letters_discarded.iter().map(|d| d.messages).sum();
    writeln!(
        out,
        "recorded {} event(s) found only in the dead-letter queue; discarded {discarded} dead letter(s) of events \
         already done",
        report.dead_letters_recorded.len()
    )?;
    for id in report.dead_letters_recorded.iter().chain(report.dead_letters_discarded.iter().map(|d| &d.event_id)) {
        writeln!(out, "  {id}")?;
    }
    if !report.redriven.is_empty() || !report.settles_finished.is_empty() || !report.waits_resumed.is_empty() {
        writeln!(out, "the re-drive messages are on the queue; process them with `synctrail run`")?;
    }
    Ok(())
}
