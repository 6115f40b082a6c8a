//! `synctrail dead-letters`: list the dead-letter queue, or (`--redrive`) move it back after marking each message's
//! event for retry.

use super::Context;
use crate::args::DeadLetterArgs;
use crate::config::REPROCESS_FUNCTION;
use crate::error::CliError;
use crate::output::{opt, write_json, Table};
use std::io::Write;
use synctrail::engine::Invocation;

/// Runs `synctrail dead-letters`.
pub async fn execute(ctx: &Context, args: &DeadLetterArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let backend = ctx.open().await?;
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
            letter.action.to_owned(),
        ]);
    }
    table.write(out)?;
    if report.dry_run {
        writeln!(
            out,
            "{} dead letter(s); move them back with `synctrail dead-letters --redrive` (those listed stay hidden \
             in the dead-letter queue for a minute)",
            report.letters.len()
        )?;
    } else {
        writeln!(out, "moved {} message(s) back to the queue; process them with `synctrail run`", report.moved)?;
    }
    Ok(())
}
