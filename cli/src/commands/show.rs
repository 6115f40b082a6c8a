//! `synctrail show ID`: everything recorded about one event (spec §8) and its history timeline — how an operator
//! answers "what happened to event X".

use super::status::lookup;
use super::Context;
use crate::args::EventArgs;
use crate::error::CliError;
use crate::output::{opt, opt_time, time, write_json, Table};
use std::io::Write;
use synctrail::model::{EventRecord, ExternalWrite, PayloadRef};

/// Writes the record's metadata, then its history, one line per entry.
pub fn write_record(out: &mut dyn Write, r: &EventRecord) -> std::io::Result<()> {
    let fields: Vec<(&str, String)> = vec![
        ("event_id", format!("{}{}", r.event_id, if r.client_event_id { " (client's)" } else { " (derived)" })),
        ("status", r.status.to_string()),
        ("entity", opt(r.entity.as_ref())),
        ("order", opt(r.order.as_ref())),
        ("kind", opt(r.kind)),
        ("direction", opt(r.direction.map(|d| format!("{d:?}").to_lowercase()))),
        ("content_hash", opt(r.content_hash.as_ref())),
        ("payload", payload_line(&r.payload)),
        ("delivery_id", opt(r.delivery_id.as_ref())),
        ("dropped_for", opt(r.dropped_for.as_ref())),
        ("duplicate_of", opt(r.duplicate_of.as_ref())),
        ("canceled_by", opt(r.canceled_by.as_ref())),
        ("waiting_for", opt(r.waiting_for.as_ref())),
        ("waiting_since", opt_time(r.waiting_since)),
        ("conflicts_with", opt(r.conflicts_with.as_ref())),
        ("caused_by", opt(r.caused_by.as_ref())),
        ("attempt", format!("{} ({} since the last re-drive)", r.attempt, r.attempts_this_drive())),
        ("error", opt(r.error.as_ref().map(error_text))),
        ("flags", flags(r)),
        ("redelivered", r.redelivered.to_string()),
        ("external_at", opt_time(r.external_at)),
        ("received_at", time(r.received_at)),
        ("read_started_at", opt_time(r.read_started_at)),
        ("write_started_at", opt_time(r.write_started_at)),
        ("completed_at", opt_time(r.completed_at)),
        ("written", opt(r.written.as_ref().map(written_line))),
        ("updated_at", time(r.updated_at)),
        ("lease_until", opt_time(r.lease_until)),
        ("last_message_id", opt(r.last_message_id.as_ref())),
        ("expires_at", time(r.expires_at)),
        ("replay_kept", opt(r.replay_kept.as_ref().map(payload_line))),
    ];
    for (name, value) in fields {
        writeln!(out, "{name:<17} {value}")?;
    }
    writeln!(out)?;
    let folded =
        if r.history_folded > 0 { format!(" ({} older entries folded)", r.history_folded) } else { String::new() };
    writeln!(out, "history{folded}:")?;
    let mut table =
        Table::new(&["time", "status", "attempt", "function", "request_id", "trace_id", "note"]).align_right(2);
    for h in &r.history {
        table.row(vec![
            time(h.at),
            h.status.to_string(),
            h.attempt.to_string(),
            opt(h.function.as_ref()),
            opt(h.request_id.as_ref()),
            opt(h.trace_id.as_ref()),
            h.note.clone().unwrap_or_default(),
        ]);
    }
    table.write(out)
}

/// Where the payload is: its key (and byte range inside a batch object), size and SHA-256.
fn payload_line(p: &PayloadRef) -> String {
    let range = p.range.map(|r| format!(" bytes {}+{}", r.offset, r.length)).unwrap_or_default();
    format!("{}{range} ({} bytes, sha256 {})", p.key, p.size, p.sha256)
}

/// What an outbound event's connector wrote (spec §10): the resource it created, if any, its `updated_at` after
/// the write and the fields the echo guard compares.
fn written_line(w: &ExternalWrite) -> String {
    let created = w.created.as_ref().map(|id| format!("created {id}, ")).unwrap_or_default();
    let fields = w.fingerprint.fields.join(" ");
    format!("{created}updated_at {}, fields {fields} (sha256 {})", time(w.updated_at), w.fingerprint.hash)
}

fn error_text(e: &synctrail::model::ErrorInfo) -> String {
    let mut text = format!("{:?}: {}", e.kind, e.message);
    if let Some(field) = &e.field {
        text.push_str(&format!(" [field {field}]"));
    }
    for cause in &e.causes {
        text.push_str(&format!("; caused by: {cause}"));
    }
    text.push_str(if e.retryable { " (retryable)" } else { " (not retryable)" });
    text
}

fn flags(r: &EventRecord) -> String {
    let set: Vec<&str> = [
        (r.tie, "tie"),
        (r.out_of_order, "out_of_order"),
        (r.forced, "forced"),
        (r.parked, "parked"),
        (r.write_outcome_unknown, "write_outcome_unknown"),
    ]
    .into_iter()
    .filter_map(|(on, name)| on.then_some(name))
    .collect();
    if set.is_empty() {
        "-".to_owned()
    } else {
        set.join(", ")
    }
}

/// Runs `synctrail show`.
pub async fn execute(ctx: &Context, args: &EventArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let backend = ctx.open_existing().await?;
    let record = lookup(backend.ports.store.as_ref(), &args.id).await?;
    if ctx.json {
        return write_json(out, &record.to_json_spelled_out()?);
    }
    write_record(out, &record)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_prints_what_a_connector_wrote_and_every_flag_and_time_the_record_holds() {
        let record: EventRecord = serde_json::from_value(serde_json::json!({
            "event_id": "ev-1",
            "status": "completed",
            "history": [],
            "version": 1,
            "attempt": 1,
            "redelivered": 0,
            "payload": {"key": "payloads/ev-1", "size": 10, "sha256": "a".repeat(64)},
            "waiting_since": "2026-12-07T10:00:00Z",
            "parked": true,
            "write_outcome_unknown": true,
            "written": {
                "created": "octo/hello#1347",
                "updated_at": "2026-12-07T10:00:05Z",
                "fingerprint": {"fields": ["/title", "/body"], "hash": "b".repeat(64)}
            },
            "replay_kept": {"key": "payloads/replay-1", "size": 40, "sha256": "c".repeat(64)},
            "received_at": "2026-12-07T10:00:00Z",
            "updated_at": "2026-12-07T10:00:06Z",
            "expires_at": "2028-02-10T10:00:00Z"
        }))
        .expect("a record");
        let mut out = Vec::new();
        write_record(&mut out, &record).expect("written");
        let text = String::from_utf8(out).expect("UTF-8");
        let line = |name: &str| text.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap_or("").to_owned();
        assert!(line("written").contains("created octo/hello#1347, updated_at 2026-12-07"), "{text}");
        assert!(line("written").contains("fields /title /body (sha256 bbbb"), "{text}");
        assert!(line("flags").contains("parked, write_outcome_unknown"), "{text}");
        assert!(line("waiting_since").contains("2026-12-07"), "{text}");
        assert!(line("replay_kept").starts_with("replay_kept       payloads/replay-1 (40 bytes"), "{text}");
    }
}
