//! `synctrail reprocess`: re-drive stored events by id, or in bulk by query, rate-limited, with `--dry-run`.
//!
//! Each event is checked first (recorded, payload intact, envelope rebuildable); a re-drive message is then sent to
//! the ingest queue, and the processor runs it through the ordering rules again (or skips them with `--force`).
//! `--invoke` processes the re-drives here and now with the same engine instead of leaving them on the queue.

use super::{parse_event_id, Context};
use crate::args::ReprocessArgs;
use crate::config::REPROCESS_FUNCTION;
use crate::error::{CliError, EXIT_FAILED, EXIT_OK, EXIT_UNKNOWN};
use crate::output::{write_json, Table};
use crate::progress::bar;
use serde::Serialize;
use std::io::Write;
use synctrail::engine::{Disposition, Engine, Incoming, Invocation, ReprocessOptions, ReprocessReport};
use synctrail::model::{EventId, Status};
use synctrail::store::EventQuery;

/// What `--invoke` made of one re-drive.
#[derive(Debug, Clone, Serialize)]
pub struct Invoked {
    /// The event.
    pub event_id: EventId,
    /// Its status afterwards.
    pub status: Option<Status>,
    /// The engine's error, if it failed; or why it was not run (its entity busy).
    pub error: Option<String>,
}

/// `reprocess --json`: the report, plus what `--invoke` did.
#[derive(Debug, Clone, Serialize)]
pub struct ReprocessOutput {
    /// Checks and sends.
    #[serde(flatten)]
    pub report: ReprocessReport,
    /// With `--invoke`: each re-drive's result.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub invoked: Vec<Invoked>,
}

/// The store query of a bulk re-drive.
fn query(args: &ReprocessArgs, now: chrono::DateTime<chrono::Utc>) -> Result<EventQuery, CliError> {
    let entity = super::list::parse_entity(args.entity.as_deref())?;
    Ok(EventQuery {
        status: args.status,
        source: args.source.clone(),
        entity,
        since: args.since.map(|d| crate::duration::time_ago(now, d, "--since")).transpose()?,
        until: args.until.map(|d| crate::duration::time_ago(now, d, "--until")).transpose()?,
        limit: args.limit,
        ..EventQuery::default()
    })
}

/// Runs `synctrail reprocess`; exits 2 when an event id given is not recorded (and nothing else went wrong), 3
/// when an event could not be re-driven.
pub async fn execute(ctx: &Context, args: &ReprocessArgs, out: &mut dyn Write) -> Result<u8, CliError> {
    let backend = ctx.open_existing().await?;
    let engine = ctx.engine(&backend)?;
    let ids: Vec<EventId> = if args.status.is_some() {
        let mut query = query(args, engine.ports().clock.now())?;
        if let Some(text) = args.entity.as_deref() {
            query.entity = Some(super::entity::resolve_noting(&backend.ports, text, "--entity").await?.entity);
        }
        engine.select_for_reprocess(&query).await.map_err(CliError::store("selecting events to re-drive"))?
    } else {
        args.ids.iter().map(|id| parse_event_id(id)).collect::<Result<_, _>>()?
    };
    // `--invoke` processes the re-drives itself, so nothing goes to the queue.
    let options = ReprocessOptions {
        force: args.force,
        dry_run: args.dry_run || args.invoke,
        rate_per_second: args.rate,
        trace_header: None,
    };
    let progress = bar(Some(ids.len() as u64), "events", ctx.json || ids.len() < 2);
    let mut report = engine.reprocess(&ids, &options, &mut |done| progress.set_position(done as u64)).await;
    progress.finish_and_clear();
    report.dry_run = args.dry_run;
    let invoked =
        if args.invoke && !args.dry_run { invoke(&engine, &report, args.force, args.rate).await } else { Vec::new() };
    let unknown = report.refused.iter().filter(|refusal| refusal.not_recorded).count();
    let code = exit_code(report.refused.len(), unknown, invoked.iter().any(|i| i.error.is_some()));
    let output = ReprocessOutput { report, invoked };
    if ctx.json {
        write_json(out, &output)?;
    } else {
        print(out, &output, args)?;
    }
    Ok(code)
}

/// 3 when an event could not be re-driven for a reason other than not being recorded (or `--invoke` failed), else
/// 2 when an id given is not recorded (as `show` and `status` exit for an unknown id), else 0.
fn exit_code(refused: usize, unknown: usize, invoke_failed: bool) -> u8 {
    if invoke_failed || refused > unknown {
        EXIT_FAILED
    } else if unknown > 0 {
        EXIT_UNKNOWN
    } else {
        EXIT_OK
    }
}

/// Processes each checked event's re-drive now, as the processor would on receiving its message, at most `rate`
/// per second. One whose entity is busy (another event in flight) is not run: the processor would hand its message
/// back to the queue for later, and here there is none — it says so, and the command exits 3.
async fn invoke(engine: &Engine, report: &ReprocessReport, force: bool, rate: Option<f64>) -> Vec<Invoked> {
    let invocation = Invocation { function: Some(REPROCESS_FUNCTION.to_owned()), ..Invocation::default() };
    let mut invoked = Vec::with_capacity(report.sent.len());
    let pause = rate.map(|rate| synctrail::engine::pacing::time_to_send(1, rate));
    for (n, checked) in report.sent.iter().enumerate() {
        if let Some(pause) = pause.filter(|_| n > 0) {
            tokio::time::sleep(pause).await;
        }
        let message = Incoming {
            message_id: format!("invoke-{}", super::random_suffix()),
            body: checked.redrive_body(force),
            receive_count: 1,
            trace_header: None,
        };
        let before = stored(engine, &checked.event_id).await;
        let (status, error) = match engine.process(&message, &invocation).await {
            Ok(outcome) => {
                // As stored: a re-drive its entity's holder turned away wrote nothing (an attempt that failed did).
                let after = stored(engine, &checked.event_id).await;
                let status = after.map(|(status, _)| status);
                match outcome.disposition {
                    Disposition::Retry { after: wait } if after == before => {
                        let busy = format!(
                            "not run: its entity is busy (another event in flight, free in {} s); run the reprocess \
                             again then, or without --invoke to leave it to the queue",
                            wait.num_seconds().max(1)
                        );
                        (status, Some(busy))
                    }
                    _ => (status.or(outcome.status), None),
                }
            }
            Err(e) => (None, Some(e.to_string())),
        };
        invoked.push(Invoked { event_id: checked.event_id.clone(), status, error });
    }
    invoked
}

/// An event's status and version as stored (`None`: not recorded, or not readable now).
async fn stored(engine: &Engine, event_id: &EventId) -> Option<(Status, u64)> {
    engine.ports().store.get_event(event_id).await.ok().flatten().map(|r| (r.status, r.version))
}

fn print(out: &mut dyn Write, output: &ReprocessOutput, args: &ReprocessArgs) -> Result<(), CliError> {
    let report = &output.report;
    let verb = match (args.dry_run, args.invoke) {
        (true, _) => "would re-drive",
        (false, true) => "re-drove (processed here)",
        (false, false) => "re-drove",
    };
    let forced = if report.force { " with --force (ordering skipped)" } else { "" };
    writeln!(out, "{verb} {} of {} event(s){forced}", report.sent.len(), report.selected)?;
    if !report.sent.is_empty() {
        let mut table = Table::new(&["EVENT", "STATUS BEFORE", "ENTITY", "NOW"]);
        for checked in &report.sent {
            let now =
                output.invoked.iter().find(|i| i.event_id == checked.event_id).map(|i| match (&i.status, &i.error) {
                    (_, Some(e)) => format!("error: {e}"),
                    (Some(s), None) => s.to_string(),
                    (None, None) => "-".to_owned(),
                });
            table.row(vec![
                checked.event_id.to_string(),
                checked.status.to_string(),
                checked.entity_key.clone(),
                now.unwrap_or_else(|| "-".to_owned()),
            ]);
        }
        table.write(out)?;
    }
    for refusal in &report.refused {
        writeln!(out, "not re-driven: {}", refusal.reason)?;
    }
    if !args.dry_run && !args.invoke && !report.sent.is_empty() {
        writeln!(out, "the re-drive messages are on the queue; process them with `synctrail run`, then check `synctrail status ID`")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_id_exits_2_and_any_other_refusal_3() {
        assert_eq!(exit_code(0, 0, false), EXIT_OK);
        assert_eq!(exit_code(1, 1, false), EXIT_UNKNOWN, "only ids not recorded");
        assert_eq!(exit_code(2, 1, false), EXIT_FAILED, "an operation failed too");
        assert_eq!(exit_code(1, 1, true), EXIT_FAILED);
        assert_eq!(exit_code(0, 0, true), EXIT_FAILED);
    }
}
