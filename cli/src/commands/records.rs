//! `synctrail records`: the mirror, the reference destination's state per entity.

use super::Context;
use crate::args::RecordsArgs;
use crate::backend::BackendExt;
use crate::error::CliError;
use crate::output::{opt, shorten, time, Page, Table};
use std::io::Write;

/// Runs `synctrail records`. When more records match than `--limit` shows, standard error says so and the JSON
/// document carries `total` and `truncated`.
pub async fn execute(ctx: &Context, args: &RecordsArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let backend = ctx.open_existing().await?;
    let mirror = backend.mirror_view("records")?;
    let prefix = args.entity.as_deref();
    // One row more than shown tells whether more exist.
    let peek = if args.limit == 0 { 0 } else { args.limit.saturating_add(1) };
    let records = mirror.list(prefix, peek).await.map_err(CliError::store("listing the mirror"))?;
    let count = async { mirror.list(prefix, 0).await.map(|all| all.len() as u64) };
    let page = Page::cut(records, args.limit, count).await.map_err(CliError::store("counting the mirror"))?;
    if let Some(note) = page.note() {
        eprintln!("{note}");
    }
    if ctx.json {
        return page.write_json(out, "records");
    }
    if page.rows.is_empty() {
        writeln!(out, "no mirror records match")?;
        return Ok(());
    }
    let mut table = Table::new(&["entity", "event_id", "order", "fence", "applied_at", "state"]).align_right(3);
    for r in &page.rows {
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
    Ok(())
}
