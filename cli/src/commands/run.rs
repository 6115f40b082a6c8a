//! `synctrail run`: the local runtime over the backend's queue (the embedded one, or SQS: it plays Lambda's event
//! source) until it is quiescent, with a progress display.

use super::Context;
use crate::args::BackendKind;
use crate::args::RunArgs;
use crate::backend::AnyBackend;
use crate::backend::BackendExt;
use crate::duration::{seconds, std_seconds, time_after};
use crate::error::{CliError, EXIT_CHECK_FAILED, EXIT_OK};
use crate::output::{write_json, Table};
use crate::progress::RunProgress;
use crate::runtime::{LocalRuntime, RunOptions, RunStats};
use std::io::Write;
use synctrail::destination::drill::DrillPlan;
use synctrail::Settings;

/// The runtime options `args` ask for; refuses a `--function-timeout` under 1 s, and a `--visibility-timeout`
/// shorter than `--function-timeout` ([`check_timeouts`]).
pub fn options(args: &RunArgs, lanes: usize) -> Result<RunOptions, CliError> {
    check_timeouts(args)?;
    let down_until =
        args.destination_down.map(|secs| time_after(chrono::Utc::now(), secs, "--destination-down")).transpose()?;
    Ok(RunOptions {
        workers: usize::from(args.workers),
        batch_size: usize::from(args.batch_size),
        function_timeout: seconds(args.function_timeout),
        visibility_timeout: seconds(args.visibility_timeout),
        follow: args.follow,
        max_duration: max_duration(args),
        drill: DrillPlan { fail_rate: args.fail_rate, permanent_rate: 0.0, down_until },
        crash_rate: args.crash_rate,
        seed: args.seed,
        lanes,
        // The process exits once the run returns: what its last receives take must be visible again by then.
        hand_back_before_returning: true,
        ..RunOptions::default()
    })
}

/// The shortest `--function-timeout`, in seconds: Lambda's minimum. The runtime starts no record within its safety
/// margin (200 ms) of the deadline, so a timeout at or under it would start none: every message would be received
/// until it is dead-lettered.
pub const MIN_FUNCTION_TIMEOUT: f64 = 1.0;

/// Refuses a function timeout under Lambda's minimum ([`MIN_FUNCTION_TIMEOUT`]), and a visibility timeout shorter
/// than the function timeout, as Lambda refuses such an event source: a message would reappear while its invocation
/// still runs, and each copy would wait for its lease and cost a receive toward the dead-letter queue.
fn check_timeouts(args: &RunArgs) -> Result<(), CliError> {
    if args.function_timeout < MIN_FUNCTION_TIMEOUT {
        return Err(CliError::InvalidArgument(format!(
            "--function-timeout {} s is under {MIN_FUNCTION_TIMEOUT} s: pass at least 1 s, Lambda's minimum (each \
             invocation keeps its last 200 ms as a safety margin and starts no record within it, so a shorter \
             timeout would start none and every message would end in the dead-letter queue)",
            args.function_timeout
        )));
    }
    if args.visibility_timeout >= args.function_timeout {
        return Ok(());
    }
    Err(CliError::InvalidArgument(format!(
        "--visibility-timeout {} s is shorter than --function-timeout {} s: a message would reappear while its \
         invocation still runs; AWS requires the visibility timeout to be at least the function timeout (and \
         recommends 6 times it), so pass --visibility-timeout {} or more",
        args.visibility_timeout, args.function_timeout, args.function_timeout
    )))
}

/// How long a run may last when `--max-duration` is not given: a run that ends once drained.
const DEFAULT_MAX_DURATION: std::time::Duration = std::time::Duration::from_secs(600);

/// `--max-duration`, else the default, else — following — until interrupted.
fn max_duration(args: &RunArgs) -> std::time::Duration {
    match (args.max_duration, args.follow) {
        (Some(secs), _) => std_seconds(secs),
        (None, false) => DEFAULT_MAX_DURATION,
        (None, true) => std::time::Duration::MAX,
    }
}

/// Runs the local runtime over `backend` with a progress display (hidden when `quiet`).
pub async fn run_with_progress(
    backend: &AnyBackend,
    settings: Settings,
    options: &RunOptions,
    quiet: bool,
) -> Result<RunStats, CliError> {
    let depth = backend.ports.queue.depth().await.map_err(CliError::store("measuring the queue"))?;
    let progress = RunProgress::new(depth.visible + depth.in_flight + depth.delayed, quiet);
    let mut options = options.clone();
    if backend.kind() == BackendKind::Aws {
        options.quiet_for = options.quiet_for.max(crate::config::SQS_QUIET_FOR);
        options.poll_interval = options.poll_interval.max(crate::config::SQS_POLL_INTERVAL);
    }
    let runtime = LocalRuntime::new(backend.ports.clone(), settings);
    let stats = runtime.run(&options, &|stats| progress.update(stats)).await;
    progress.finish();
    stats.map_err(CliError::store("running the local runtime"))
}

/// How many messages the dead-letter queue holds (the queue also dead-letters on its own, past `max_receives`).
pub async fn dead_letters(backend: &AnyBackend) -> Result<u64, CliError> {
    Ok(backend.ports.queue.depth().await.map_err(CliError::store("measuring the queue"))?.dead_letters)
}

/// Writes the run's summary as text; `dead_letters` is what the dead-letter queue holds afterwards.
pub fn write_stats(
    out: &mut dyn Write,
    stats: &RunStats,
    elapsed: std::time::Duration,
    dead_letters: u64,
) -> std::io::Result<()> {
    let verdict = match (stats.interrupted, stats.drained) {
        (true, _) => "stopped on request (Ctrl-C or SIGTERM), its invocations under way finished,",
        (false, true) => "queue drained",
        (false, false) => "stopped before the queue drained (--max-duration)",
    };
    writeln!(out, "{verdict} in {:.1} s", elapsed.as_secs_f64())?;
    let mut table = Table::new(&["figure", "value"]).align_right(1);
    for (name, value) in [
        ("invocations", stats.invocations),
        ("records handled", stats.records),
        ("returned for retry", stats.retried),
        ("dead-lettered", stats.dead_lettered),
        ("crashed invocations", stats.crashes),
        ("redelivered (already done)", stats.redelivered),
        ("re-driven by the sweeper", stats.swept),
        ("dead-letter queue now holds", dead_letters),
    ] {
        table.row(vec![name.to_owned(), value.to_string()]);
    }
    table.write(out)?;
    if !stats.statuses.is_empty() {
        writeln!(out)?;
        let mut table = Table::new(&["status after a record", "records"]).align_right(1);
        for (status, n) in &stats.statuses {
            table.row(vec![status.to_string(), n.to_string()]);
        }
        table.write(out)?;
    }
    Ok(())
}

/// The exit code of a run: 1 ([`EXIT_CHECK_FAILED`]) when `--max-duration` stopped it with work left on the queue,
/// as a script must not take it for done; 0 when it drained, when it was interrupted (Ctrl-C, SIGTERM: asked for),
/// and with `--follow` (it runs until told to stop).
pub fn exit_code(stats: &RunStats, follow: bool) -> u8 {
    if stats.drained || stats.interrupted || follow {
        EXIT_OK
    } else {
        EXIT_CHECK_FAILED
    }
}

/// Runs `synctrail run`; returns the exit code ([`exit_code`]).
pub async fn execute(ctx: &Context, args: &RunArgs, out: &mut dyn Write) -> Result<u8, CliError> {
    check_timeouts(args)?;
    let backend = ctx.open().await?;
    let started = std::time::Instant::now();
    let config = ctx.config()?;
    let options = RunOptions {
        stop_requested: Some(crate::interrupt::stop_on_interrupt()),
        ..options(args, config.record_concurrency)?
    };
    let stats = run_with_progress(&backend, config.settings, &options, ctx.json).await?;
    let code = exit_code(&stats, args.follow);
    if ctx.json {
        write_json(out, &stats)?;
        return Ok(code);
    }
    write_stats(out, &stats, started.elapsed(), dead_letters(&backend).await?)?;
    if code != EXIT_OK {
        writeln!(
            out,
            "work is left on the queue: run `synctrail {} run` again (a longer --max-duration), or look with \
             `synctrail {} stats`",
            backend.selector(),
            backend.selector()
        )?;
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{Cli, Command};
    use clap::Parser;

    fn parsed(args: &[&str]) -> RunArgs {
        match Cli::try_parse_from(args).map(|c| c.command) {
            Ok(Command::Run(run)) => run,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_run_stopped_by_its_max_duration_with_work_left_exits_1_unless_following_or_interrupted() {
        let stats = |drained, interrupted| RunStats { drained, interrupted, ..RunStats::default() };
        assert_eq!(exit_code(&stats(true, false), false), EXIT_OK);
        assert_eq!(exit_code(&stats(false, false), false), EXIT_CHECK_FAILED, "--max-duration ran out first");
        assert_eq!(exit_code(&stats(false, true), false), EXIT_OK, "Ctrl-C or SIGTERM: stopped as asked");
        assert_eq!(exit_code(&stats(false, false), true), EXIT_OK, "--follow runs until told to stop");
        assert_eq!(EXIT_CHECK_FAILED, 1);
    }

    #[test]
    fn a_run_ends_after_ten_minutes_unless_told_and_a_followed_one_when_interrupted() {
        let minutes = |d: std::time::Duration| d.as_secs() / 60;
        assert_eq!(minutes(max_duration(&parsed(&["synctrail", "run"]))), 10);
        assert_eq!(max_duration(&parsed(&["synctrail", "run", "--follow"])), std::time::Duration::MAX);
        let told = parsed(&["synctrail", "run", "--follow", "--max-duration", "90"]);
        assert_eq!(max_duration(&told), std::time::Duration::from_secs(90));
        assert_eq!(max_duration(&parsed(&["synctrail", "run", "--max-duration", "1.5"])).as_millis(), 1500);
    }

    #[test]
    fn a_visibility_timeout_shorter_than_the_function_timeout_is_refused_naming_both_flags() {
        let short = parsed(&["synctrail", "run", "--function-timeout", "30", "--visibility-timeout", "20"]);
        let error = options(&short, 1).expect_err("refused");
        assert_eq!(error.exit_code(), crate::error::EXIT_UNKNOWN, "a usage error");
        let said = error.to_string();
        for part in ["--visibility-timeout 20 s", "--function-timeout 30 s", "at least the function timeout", "6 times"]
        {
            assert!(said.contains(part), "{part:?} in {said}");
        }
        let equal = parsed(&["synctrail", "run", "--function-timeout", "30", "--visibility-timeout", "30"]);
        let accepted = options(&equal, 1).expect("as long as the function timeout: accepted");
        assert_eq!(accepted.visibility_timeout, accepted.function_timeout);
        assert!(options(&parsed(&["synctrail", "run"]), 1).is_ok(), "the defaults (2 s, 3 s) are accepted");
    }

    #[test]
    fn a_function_timeout_under_lambdas_minimum_of_one_second_is_refused_as_a_usage_error() {
        for timeout in ["0", "0.2", "0.999"] {
            let short = parsed(&["synctrail", "run", "--function-timeout", timeout, "--visibility-timeout", "1"]);
            let error = options(&short, 1).expect_err("refused");
            assert_eq!(error.exit_code(), crate::error::EXIT_UNKNOWN, "a usage error");
            let said = error.to_string();
            assert!(said.contains(&format!("--function-timeout {timeout} s is under 1 s")), "{said}");
            assert!(said.contains("at least 1 s, Lambda's minimum"), "{said}");
        }
        let one = parsed(&["synctrail", "run", "--function-timeout", "1"]);
        assert_eq!(options(&one, 1).map(|o| o.function_timeout.num_milliseconds()).ok(), Some(1000));
    }
}
