//! `synctrail verify ENTITY | --all`: replay entities' archived events with the reference mirror's rules and compare
//! the result with the destination; `--repair` re-drives the newest applied event of each entity that differs.
//!
//! `--all` walks every head page by page, comparing content hashes first (no payload read for an entity that
//! matches); its progress (the cursor and the counts so far) is written to a state file after every page, so a pass
//! stopped halfway (`--pages`, Ctrl-C, a crash) resumes with `--run-id`.

use super::Context;
use crate::args::VerifyArgs;
use crate::error::{CliError, EXIT_CHECK_FAILED, EXIT_OK};
use crate::output::{write_json, Table};
use crate::progress::bar;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use synctrail::engine::reconcile::{new_run_id, valid_run_id};
use synctrail::engine::verify::{EntityReport, Finding, VerifyAllOptions, VerifyOptions, VerifyReport, VerifyTotals};

/// A pass's progress, kept in its state file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct PassState {
    run_id: String,
    /// Where the pass goes on (`None` with `finished`: done).
    next: Option<String>,
    finished: bool,
    totals: VerifyTotals,
}

/// `verify --all --json`: the pass's counts, the entities that were not equal (this invocation's), and the run.
#[derive(Debug, Clone, Serialize)]
pub struct PassOutput {
    /// The pass's id (resume with `--run-id`).
    pub run_id: String,
    /// Whether every entity was looked at.
    pub finished: bool,
    /// Counts over the whole pass (earlier invocations of a resumed pass included).
    pub totals: VerifyTotals,
    /// Entities that differ or were skipped, from this invocation.
    pub entities: Vec<EntityReport>,
    /// The file keeping the pass's progress.
    pub state: PathBuf,
}

/// Runs `synctrail verify`: exits 1 when an entity differs and no repair was sent for it.
pub async fn execute(ctx: &Context, args: &VerifyArgs, out: &mut dyn Write) -> Result<u8, CliError> {
    let backend = ctx.open().await?;
    let engine = ctx.engine(&backend)?;
    let options = VerifyOptions { repair: args.repair, trace_header: None };
    let Some(entity) = super::list::parse_entity(args.entity.as_deref())? else {
        return verify_all(ctx, &engine, args, options, out).await;
    };
    let report = engine.verify(&entity, &options).await?;
    if ctx.json {
        write_json(out, &report)?;
    } else {
        print_entity(out, &report)?;
    }
    Ok(exit_code(std::slice::from_ref(&report)))
}

async fn verify_all(
    ctx: &Context,
    engine: &synctrail::Engine,
    args: &VerifyArgs,
    verify: VerifyOptions,
    out: &mut dyn Write,
) -> Result<u8, CliError> {
    let run_id = args.run_id.clone().unwrap_or_else(|| new_run_id(chrono::Utc::now()));
    if !valid_run_id(&run_id) {
        return Err(CliError::InvalidArgument(format!(
            "--run-id {run_id:?}: use 1 to 64 letters, digits, '.', '_' or '-'"
        )));
    }
    let path = args.state.clone().unwrap_or_else(|| PathBuf::from(format!("synctrail-verify-{run_id}.json")));
    let mut state = read_state(&path)?.unwrap_or(PassState { run_id: run_id.clone(), ..PassState::default() });
    if state.run_id != run_id {
        return Err(CliError::InvalidArgument(format!(
            "{} keeps pass {}, not {run_id}; pass --state for another file",
            path.display(),
            state.run_id
        )));
    }
    let mut entities = Vec::new();
    if !state.finished {
        let options = VerifyAllOptions {
            source: args.source.clone(),
            since: args.since.map(|d| chrono::Utc::now() - d),
            page_size: args.page_size,
            max_pages: args.pages.unwrap_or(0),
            verify,
        };
        let progress = bar(None, "entities", ctx.json);
        progress.set_position(state.totals.examined);
        let after = state.next.clone();
        let mut saved: Result<(), CliError> = Ok(());
        let mut on_page = |page: &VerifyReport| {
            state.totals.merge(&page.totals);
            state.next = page.next.clone();
            state.finished = page.next.is_none();
            progress.set_position(state.totals.examined);
            progress.set_message(format!("differ {} · skipped {}", state.totals.differs, state.totals.skipped));
            if saved.is_ok() {
                saved = write_state(&path, &state);
            }
        };
        let report = engine.verify_all(&options, after, &mut on_page).await?;
        progress.finish_and_clear();
        saved?;
        entities = report.entities;
    }
    let output = PassOutput { run_id, finished: state.finished, totals: state.totals.clone(), entities, state: path };
    if ctx.json {
        write_json(out, &output)?;
    } else {
        print_pass(out, &output)?;
    }
    Ok(exit_code(&output.entities))
}

/// 1 when an entity differs and no repair was sent for it.
fn exit_code(reports: &[EntityReport]) -> u8 {
    let unrepaired = reports.iter().any(|r| r.finding == Finding::Differs && r.repaired.is_none());
    if unrepaired {
        EXIT_CHECK_FAILED
    } else {
        EXIT_OK
    }
}

fn read_state(path: &Path) -> Result<Option<PassState>, CliError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            CliError::InvalidArgument(format!(
                "{} is not a verify pass's state ({e}); pass another --state",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CliError::Read { path: path.display().to_string(), source }),
    }
}

/// Writes the state to a temporary file, then renames it over the old one.
fn write_state(path: &Path, state: &PassState) -> Result<(), CliError> {
    let temporary = path.with_extension("json.tmp");
    std::fs::write(&temporary, serde_json::to_vec_pretty(state)?)
        .and_then(|()| std::fs::rename(&temporary, path))
        .map_err(|source| CliError::Prepare { path: path.to_owned(), source })
}

fn print_entity(out: &mut dyn Write, report: &EntityReport) -> Result<(), CliError> {
    let finding = match report.finding {
        Finding::Equal => "equal",
        Finding::Differs => "differs",
        Finding::Skipped => "skipped",
    };
    writeln!(
        out,
        "{}: {finding} ({} applied event(s) replayed, {} payload(s) read)",
        report.entity_key, report.events_replayed, report.payloads_read
    )?;
    if let Some(reason) = &report.reason {
        writeln!(out, "  {reason}")?;
    }
    if !report.diff.is_empty() {
        let mut table = Table::new(&["FIELD", "EXPECTED (replay)", "ACTUAL (destination)"]);
        let show = |v: &Option<serde_json::Value>| v.as_ref().map_or_else(|| "(none)".to_owned(), |v| v.to_string());
        for d in &report.diff {
            let path = if d.path.is_empty() { "(whole)".to_owned() } else { d.path.clone() };
            table.row(vec![path, show(&d.expected), show(&d.actual)]);
        }
        table.write(out)?;
    }
    if let Some(event) = &report.repaired {
        writeln!(
            out,
            "  repair: re-drove {event} (forced); process the queue with `synctrail run`, then verify again"
        )?;
    }
    if let Some(why) = &report.not_repaired {
        writeln!(out, "  not repaired: {why}")?;
    }
    Ok(())
}

fn print_pass(out: &mut dyn Write, output: &PassOutput) -> Result<(), CliError> {
    let t = &output.totals;
    writeln!(
        out,
        "verified {} entities: {} equal, {} differ, {} skipped, {} repair(s) sent; {} payload(s) read",
        t.examined, t.equal, t.differs, t.skipped, t.repaired, t.payloads_read
    )?;
    for report in &output.entities {
        print_entity(out, report)?;
    }
    if !output.finished {
        writeln!(
            out,
            "the pass stopped before the end; resume it with `synctrail verify --all --run-id {} --state {}`",
            output.run_id,
            output.state.display()
        )?;
    }
    Ok(())
}
