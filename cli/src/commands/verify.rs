//! `synctrail verify ENTITY | --all`: replay entities' archived events with the reference mirror's rules and compare
//! the result with the destination; `--repair` re-drives the newest applied event of each entity that differs.
//!
//! `--all` walks every head page by page, comparing content hashes first (no payload read for an entity that
//! matches); its progress (the cursor and the counts so far) is written to a state file after every page (in the
//! embedded home, or the current directory on AWS, unless `--state`), so a pass stopped halfway (`--pages`, Ctrl-C,
//! a crash) resumes with `--run-id`; the file is removed once the pass finishes.

use super::{entity, Context};
use crate::args::VerifyArgs;
use crate::error::{CliError, EXIT_CHECK_FAILED, EXIT_OK};
use crate::output::{write_json, Table};
use crate::progress::bar;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use synctrail::compose::ComposedBackend;
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
    /// The file keeping the pass's progress while it is unfinished (`None`: finished, the file removed).
    pub state: Option<PathBuf>,
    /// The command that resumes the pass, while it is unfinished.
    pub resume: Option<String>,
}

/// The command that resumes pass `run_id` (`state`: the `--state` given), when it is `unfinished`.
fn resume_command(run_id: &str, state: Option<&Path>, unfinished: bool) -> Option<String> {
    let state = state.map(|path| format!(" --state {}", path.display())).unwrap_or_default();
    unfinished.then(|| format!("synctrail verify --all --run-id {run_id}{state}"))
}

/// Removes a finished pass's progress file (and a temporary one a crash may have left).
fn remove_state(path: &Path) -> Result<(), CliError> {
    for file in [path.to_owned(), path.with_extension("json.tmp")] {
        match std::fs::remove_file(&file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(CliError::Prepare { path: file, source }),
        }
    }
    Ok(())
}

/// Runs `synctrail verify`: exits 1 when an entity differs and no repair was sent for it, 2 when nothing is
/// recorded for the entity named (a typo is not a clean pass).
pub async fn execute(ctx: &Context, args: &VerifyArgs, out: &mut dyn Write) -> Result<u8, CliError> {
    let backend = ctx.open_existing().await?;
    let engine = ctx.engine(&backend)?;
    let options = VerifyOptions { repair: args.repair, trace_header: None };
    let Some(text) = args.entity.as_deref() else {
        let state_dir = match &backend.backend {
            ComposedBackend::Embedded { home, .. } => Some(home.clone()),
            ComposedBackend::Aws(_) => None,
        };
        return verify_all(ctx, &engine, args, options, state_dir.as_deref(), out).await;
    };
    let entity = entity::resolve_noting(&backend.ports, text, "ENTITY").await?.require_recorded()?;
    let report = engine.verify(&entity, &options).await?;
    if ctx.json {
        write_json(out, &report)?;
    } else {
        print_entity(out, &report)?;
    }
    Ok(exit_code(std::slice::from_ref(&report)))
}

/// Where a pass's progress is kept when `--state` is not given: in the embedded home (`state_dir`), else in the
/// current directory; only while the pass is unfinished.
pub fn default_state_path(state_dir: Option<&Path>, run_id: &str) -> PathBuf {
    match state_dir {
        Some(home) => home.join(format!("verify-{run_id}.json")),
        None => PathBuf::from(format!("synctrail-verify-{run_id}.json")),
    }
}

async fn verify_all(
    ctx: &Context,
    engine: &synctrail::Engine,
    args: &VerifyArgs,
    verify: VerifyOptions,
    state_dir: Option<&Path>,
    out: &mut dyn Write,
) -> Result<u8, CliError> {
    let run_id = args.run_id.clone().unwrap_or_else(|| new_run_id(chrono::Utc::now()));
    if !valid_run_id(&run_id) {
        return Err(CliError::InvalidArgument(format!(
            "--run-id {run_id:?}: use 1 to 64 letters, digits, '.', '_' or '-'"
        )));
    }
    let path = args.state.clone().unwrap_or_else(|| default_state_path(state_dir, &run_id));
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
        if !ctx.json {
            eprintln!("pass {run_id}: its progress is kept in {} until it finishes", path.display());
        }
        let options = VerifyAllOptions {
            source: args.source.clone(),
            since: args.since.map(|d| crate::duration::time_ago(chrono::Utc::now(), d, "--since")).transpose()?,
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
    // A finished pass has nothing to resume: its progress file goes.
    let kept = if state.finished {
        remove_state(&path)?;
        None
    } else {
        Some(path)
    };
    let output = PassOutput {
        resume: resume_command(&run_id, args.state.as_deref(), kept.is_some()),
        run_id,
        finished: state.finished,
        totals: state.totals.clone(),
        entities,
        state: kept,
    };
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
    if let (Some(resume), Some(state)) = (&output.resume, &output.state) {
        writeln!(
            out,
            "the pass stopped before the end; its progress is kept in {}: resume it with `{resume}` (and the same \
             --source, --since and --repair)",
            state.display()
        )?;
    }
    Ok(())
}
