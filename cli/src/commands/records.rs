//! `synctrail records`: the mirror, the reference destination's state per entity.

use super::Context;
use crate::args::RecordsArgs;
use crate::error::CliError;
use crate::output::{opt, shorten, time, write_json, Table};
use std::io::Write;

/// Runs `synctrail records`.
pub async fn execute(ctx: &Context, args: &RecordsArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let backend = ctx.open().await?;
    let records =
        backend.mirror.list(args.entity.as_deref(), args.limit).await.map_err(CliError::store("listing the mirror"))?;
    if ctx.json {
        return write_json(out, &records);
    }
    if records.is_empty() {
        writeln!(out, "no mirror records match")?;
        return Ok(());
    }
    let mut table = Table::new(&["entity", "event_id", "order", "fence", "applied_at", "state"]).align_right(3);
    for r in &records {
        let state = if r.deleted { "(deleted)".to_owned() } else { shorten(&r.state.to_string(), 60) };
        let event = match (r.event_id.as_deref(), r.modified_at) {
            (Some(id), Some(at)) => format!("{id} (edited {})", time(at)),
            (id, _) => opt(id),
        };
        table.row(vec![
            r.entity_key.clone(),
            event,
            opt(r.order.as_ref()),
            r.fence.to_string(),
            time(r.applied_at),
            state,
        ]);
    }
    table.write(out)?;
    if args.limit != 0 && records.len() == args.limit {
        writeln!(out, "(first {} shown; pass --limit 0 for all)", args.limit)?;
    }
    Ok(())
}
