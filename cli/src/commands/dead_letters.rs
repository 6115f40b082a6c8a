//! `synctrail dead-letters`: list the dead-letter queue, or (`--redrive`) move it back after marking each message's
//! event for retry. Either way, dead letters of events already done are discarded (noted in each event's history).

use super::Context;
use crate::args::DeadLetterArgs;
use crate::config::REPROCESS_FUNCTION;
use crate::error::CliError;
use crate::output::{opt, write_json, Table};
use serde::Serialize;
use std::io::Write;
use synctrail::engine::{DeadLetterReport, Invocation};

/// `dead-letters --json`: the pass's report, and whether it stopped at `--limit`.
#[derive(Debug, Serialize)]
struct Output<'a> {
    #[serde(flatten)]
    report: &'a DeadLetterReport,
    /// The pass stopped at `--limit` dead letters: more may be in the dead-letter queue.
    more_may_remain: bool,
}

/// How many dead letters a pass looks at for `--limit`: 0 means all of them (a pass ends anyway once a round brings
/// no dead letter it has not seen).
fn pass_limit(limit: usize) -> usize {
    if limit == 0 {
        usize::MAX
    } else {
        limit
    }
}

/// Whether a pass with `--limit limit` stopped at its limit, so more dead letters may remain: it looked at exactly
/// that many (every dead letter a listing or a re-drive looks at is in its report). The pass can't tell whether any
/// was left.
fn more_may_remain(report: &DeadLetterReport, limit: usize) -> bool {
    limit > 0 && report.letters.len() >= limit
}

/// Runs `synctrail dead-letters`.
pub async fn execute(ctx: &Context, args: &DeadLetterArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let backend = ctx.open_existing().await?;
    let engine = ctx.engine(&backend)?;
    let invocation = Invocation { function: Some(REPROCESS_FUNCTION.to_owned()), ..Invocation::default() };
    let report = engine
        .redrive_dead_letters(pass_limit(args.limit), !args.redrive, &invocation)
        .await
        .map_err(CliError::engine("re-driving dead letters"))?;
    let more = more_may_remain(&report, args.limit);
    if ctx.json {
        return write_json(out, &Output { report: &report, more_may_remain: more });
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
    match (more, report.dry_run) {
        (false, _) => {}
        (true, true) => {
            writeln!(out, "showing the first {}; more may remain; --limit 0 for all", report.letters.len())?
        }
        (true, false) => writeln!(
            out,
            "looked at the first {}; more may remain: run it again, or with --limit 0 for all",
            report.letters.len()
        )?,
    }
    Ok(())
}
