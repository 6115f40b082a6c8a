//! `synctrail status ID`: one event's status and pointer; exit 0 only when it is `completed`.

use super::{parse_event_id, Context};
use crate::args::EventArgs;
use crate::error::{CliError, EXIT_CHECK_FAILED, EXIT_OK};
use crate::output::{time, write_json};
use std::io::Write;
use synctrail::model::{EventRecord, Status, StatusReport};
use synctrail::store::EventStore;

/// The exit code for an event in `status`: 0 only for `completed`.
pub fn exit_code(status: Status) -> u8 {
    if status == Status::Completed {
        EXIT_OK
    } else {
        EXIT_CHECK_FAILED
    }
}

/// Reads one event's record with its whole history; an id never recorded is [`CliError::UnknownEvent`].
pub async fn lookup(store: &dyn EventStore, id: &str) -> Result<EventRecord, CliError> {
    let event_id = parse_event_id(id)?;
    store
        .get_event_with_history(&event_id)
        .await
        .map_err(CliError::store(format!("reading event {event_id}")))?
        .ok_or_else(|| CliError::UnknownEvent(event_id.to_string()))
}

/// Runs `synctrail status`; returns the exit code.
pub async fn execute(ctx: &Context, args: &EventArgs, out: &mut dyn Write) -> Result<u8, CliError> {
    let backend = ctx.open_existing().await?;
    let record = lookup(backend.ports.store.as_ref(), &args.id).await?;
    let report = StatusReport::from(&record);
    if ctx.json {
        write_json(out, &report)?;
    } else {
        let mut line = format!("{} {}", report.event_id, report.status);
        if let Some(pointer) = &report.pointer {
            let label = match report.status {
                Status::Dropped => "dropped_for",
                Status::Duplicate => "duplicate_of",
                Status::Canceled => "canceled_by",
                Status::Waiting => "waiting_for",
                _ => "conflicts_with",
            };
            line.push_str(&format!(" ({label} {pointer})"));
        }
        if let Some(error) = report.error.as_ref().filter(|_| report.status != Status::Completed) {
            line.push_str(&format!(" — error: {}", error.message));
        }
        if let Some(at) = report.completed_at {
            line.push_str(&format!(" at {}", time(at)));
        }
        writeln!(out, "{line}")?;
    }
    Ok(exit_code(report.status))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::EXIT_UNKNOWN;

    #[test]
    fn only_completed_exits_zero() {
        assert_eq!(exit_code(Status::Completed), EXIT_OK);
        for status in Status::ALL.into_iter().filter(|s| *s != Status::Completed) {
            assert_eq!(exit_code(status), EXIT_CHECK_FAILED, "{status}");
        }
        assert_eq!(CliError::UnknownEvent("x".into()).exit_code(), EXIT_UNKNOWN);
        assert_eq!(crate::commands::parse_event_id("bad id!").map_err(|e| e.exit_code()).err(), Some(EXIT_UNKNOWN));
    }
}
