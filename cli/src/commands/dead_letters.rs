//! `synctrail dead-letters`: list the dead-letter queue, or (`--redrive`) move it back after marking each message's
//! event for retry. Either way, dead letters of events already done are discarded (noted in each event's history).

use super::Context;
use crate::args::DeadLetterArgs;
use crate::config::REPROCESS_FUNCTION;
use crate::error::CliError;
use crate::output::{opt, write_json, Table};
use std::io::Write;
use synctrail::engine::Invocation;

/// Runs `synctrail dead-letters`.
pub async fn execute(ctx: &Context, args: &DeadLetterArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let backend = ctx.open_existing().await?;
    let engine = ctx.engine(&backend)?;
    let invocation = Invocation { function: Some(REPROCESS_FUNCTION.to_owned()), ..Invocation::default() };
    let report = engine
        .redrive_dead_letters(args.limit, !args.redrive, &invocation)
        .await
        .map_err(CliError::engine("re-driving dead letters"))?;
    if ctx.json {
        return write_json(out, &report);
    }
    if report.letters.is_empty() {
        writeln!(out, "the dead-letter queue is empty")?;
        return Ok(());
    }
    let mut table = Table::new(&["MESSAGE", "EVENT", "STATUS", "ACTION"]);
    for letter in &report.letters {
        table.row(vec![
            letter.message_id.clone(),
            letter.event_id.to_string(),
            opt(letter.status),
            letter.action.clone(),
        ]);
    }
    table.write(out)?;
    let discarded: usize = report.discarded.iter().map(|d| d.messages).sum();
    if discarded > 0 {
        writeln!(
            out,
            "discarded {discarded} dead letter(s) of {} event(s) already done (noted in each event's history)",
            report.discarded.len()
        )?;
    }
    if report.dry_run {
        writeln!(out, "{} dead letter(s) to move back with `synctrail dead-letters --redrive`", report.moved)?;
    } else {
        writeln!(out, "moved {} message(s) back to the queue; process them with `synctrail run`", report.moved)?;
    }
    Ok(())
}
