//! The `synctrail` command's answers when something is wrong or unfinished, as a new user meets them: a mistyped
//! `--home` or entity, a resumed run with other flags, a pass or a run stopped early. Each says what it found and
//! what to do, and exits with the code `--help` documents.

use crate::support::{at, temp_home};
use clap::Parser;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Arc;
use synctrail::store::Queue;
use synctrail_cli::args::Cli;
use synctrail_cli::commands::{run_command, Context};
use synctrail_cli::CliError;

/// Runs `synctrail --home HOME ARGS…`; returns the exit code and what it printed on standard output, or the error
/// the command ended with (the binary prints it on standard error and exits with its `exit_code`).
async fn synctrail(home: &Path, args: &[&str]) -> Result<(u8, String), CliError> {
    let home = home.to_str().expect("a UTF-8 home");
    let cli = Cli::try_parse_from(["synctrail", "--home", home].iter().chain(args)).expect("valid arguments");
    let mut out = Vec::new();
    let code = synctrail_cli::commands::dispatch(&cli, &mut out).await?;
    Ok((code, String::from_utf8(out).expect("UTF-8 output")))
}

/// [`synctrail`] for a command that is expected to work.
async fn ok(home: &Path, args: &[&str]) -> (u8, String) {
    synctrail(home, args).await.unwrap_or_else(|e| panic!("synctrail {args:?}: {e}"))
}

/// [`synctrail`] for a command that is expected to fail.
async fn error(home: &Path, args: &[&str]) -> CliError {
    match synctrail(home, args).await {
        Ok((code, text)) => panic!("synctrail {args:?} worked (exit {code}):\n{text}"),
        Err(e) => e,
    }
}

/// Writes `envelopes` as an NDJSON file in `home` (beside it when it does not exist yet) and sends it.
async fn send(home: &Path, envelopes: &[Value]) {
    let dir = if home.is_dir() { home } else { home.parent().expect("a parent directory") };
    let file = dir.join("envelopes.ndjson");
    let lines: Vec<String> = envelopes.iter().map(Value::to_string).collect();
    std::fs::write(&file, lines.join("\n")).expect("write the envelopes");
    assert_eq!(ok(home, &["send", file.to_str().expect("UTF-8 path")]).await.0, 0);
}

/// Sends `envelopes`, then runs the queue dry.
async fn send_and_run(home: &Path, envelopes: &[Value]) {
    send(home, envelopes).await;
    assert_eq!(ok(home, &["run", "--workers", "1", "--max-duration", "60"]).await.0, 0);
}

/// A GitHub issue whose external id has a `/`, as GitHub's do (`o/r#1`).
fn issue(number: u32) -> Value {
    json!({"source": "github", "entity_type": "issue", "external_id": format!("o/r#{number}"),
           "updated_at": at(i64::from(number)), "payload": {"n": number}})
}

fn product(id: &str, seconds: i64) -> Value {
    json!({"source": "shopify", "entity_type": "product", "external_id": id, "updated_at": at(seconds),
           "payload": {"title": format!("product {id}")}})
}

/// A home directory path that does not exist (inside a temporary directory).
fn missing_home(dir: &tempfile::TempDir) -> std::path::PathBuf {
    dir.path().join("no-such-home")
}

#[tokio::test]
async fn verify_of_an_entity_with_nothing_recorded_says_so_and_exits_2() {
    let home = temp_home();
    send_and_run(home.path(), &[issue(1)]).await;

    let typo = error(home.path(), &["verify", "github/issue/12345"]).await;
    assert_eq!(typo.exit_code(), 2, "{typo}");
    let said = typo.to_string();
    assert!(said.starts_with("nothing is recorded for entity default/github/issue/12345 "), "{said}");
    assert!(!said.contains("equal"), "{said}");

    // Four parts or more: both readings were looked up, and the message names both.
    let typo = error(home.path(), &["verify", "gihtub/issue/o/r#1"]).await;
    assert_eq!(typo.exit_code(), 2, "{typo}");
    let said = typo.to_string();
    assert!(
        said.contains("entity gihtub/issue/o/r#1 ") && said.contains("nor for default/gihtub/issue/o/r#1"),
        "{said}"
    );

    let (code, text) = ok(home.path(), &["verify", "default/github/issue/o/r#1"]).await;
    assert_eq!((code, text.starts_with("default/github/issue/o/r#1: equal")), (0, true), "{text}");
}

#[tokio::test]
async fn a_short_key_whose_external_id_has_a_slash_reads_as_the_entity_that_has_something_recorded() {
    let home = temp_home();
    send_and_run(home.path(), &[issue(1)]).await;
    // The library reads `github/issue/o/r#1` as tenant github's entity of source issue, type o: nothing there. The
    // short form's reading (the default tenant's issue `o/r#1`) is the one recorded, and it is taken.
    let (code, text) = ok(home.path(), &["verify", "github/issue/o/r#1"]).await;
    assert_eq!(code, 0, "{text}");
    assert!(text.starts_with("default/github/issue/o/r#1: equal"), "{text}");
    let (_, text) = ok(home.path(), &["list", "--entity", "github/issue/o/r#1", "--json"]).await;
    let page: Value = serde_json::from_str(&text).expect("one JSON document");
    assert_eq!(page["events"][0]["entity"], "default/github/issue/o/r#1", "{page}");

    // Once the long form's reading has something recorded too, the four-part key means what the library reads.
    let other = json!({"tenant": "github", "source": "issue", "entity_type": "o", "external_id": "r#1",
                       "updated_at": at(5), "payload": {"other": true}});
    send_and_run(home.path(), &[other]).await;
    let (code, text) = ok(home.path(), &["verify", "github/issue/o/r#1"]).await;
    assert_eq!(code, 0, "{text}");
    assert!(text.starts_with("github/issue/o/r#1: equal"), "tenant github's entity: {text}");
    let (code, text) = ok(home.path(), &["verify", "default/github/issue/o/r#1"]).await;
    assert!(code == 0 && text.starts_with("default/github/issue/o/r#1: equal"), "{text}");
}

#[tokio::test]
async fn commands_that_only_read_refuse_a_home_that_does_not_exist_and_create_none() {
    let dir = temp_home();
    let home = missing_home(&dir);
    let snapshot = dir.path().join("export.ndjson");
    std::fs::write(&snapshot, product("p1", 1).to_string()).expect("write");
    let snapshot = snapshot.to_str().expect("UTF-8");
    let commands: [&[&str]; 13] = [
        &["status", "ev-1"],
        &["show", "ev-1"],
        &["list"],
        &["records"],
        &["stats"],
        &["verify", "github/issue/1"],
        &["verify", "--all"],
        &["reconcile", "--source", "shopify", "--against", snapshot],
        &["reconcile", "--source", "shopify", "--against", snapshot, "--apply"],
        &["dead-letters"],
        &["sweep"],
        &["reprocess", "ev-1"],
        &["reprocess", "--status", "failed"],
    ];
    let expected = format!(
        "no synctrail home at {}: check --home / SYNCTRAIL_HOME (`synctrail send` or `synctrail demo` creates one)",
        home.display()
    );
    for args in commands {
        let refused = error(&home, args).await;
        assert!(matches!(refused, CliError::NoHome { .. }), "{args:?}: {refused:?}");
        assert_eq!((refused.to_string(), refused.exit_code()), (expected.clone(), 2), "{args:?}");
        assert!(!home.exists(), "{args:?} created the home");
    }

    // Commands that write create it.
    send(&home, &[product("p1", 1)]).await;
    assert!(home.join("synctrail.db").is_file());
    let (code, text) = ok(&home, &["list", "--json"]).await;
    let page: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!((code, page["total"].as_u64()), (0, Some(0)), "sent, not processed yet: {page}");
    let other_dir = temp_home();
    let other = missing_home(&other_dir);
    let (code, _) = ok(&other, &["setup"]).await;
    assert!(code == 0 && other.join("synctrail.db").is_file());

    // A directory that holds homes but is none (the demo makes its own in <home>/demo) names them.
    let refused = error(other_dir.path(), &["list"]).await;
    let said = refused.to_string();
    let hint = format!("(homes inside it: {}; pass one as --home)", other.display());
    assert!(said.starts_with(&format!("no synctrail home at {} {hint}", other_dir.path().display())), "{said}");
    assert_eq!(refused.exit_code(), 2);
}

#[tokio::test]
async fn a_home_that_is_a_file_or_holds_no_database_is_named_as_such() {
    let dir = temp_home();
    let file = dir.path().join("notes.txt");
    std::fs::write(&file, "not a home").expect("write");
    for args in [&["list"][..], &["send", "/nonexistent.ndjson"], &["run", "--max-duration", "1"]] {
        let refused = error(&file, args).await;
        let said = refused.to_string();
        assert!(said.starts_with(&format!("{} is a file, not a directory", file.display())), "{args:?}: {said}");
        assert!(!said.contains("os error"), "{said}");
        assert_eq!(refused.exit_code(), 2, "{args:?}");
    }

    let home = dir.path().join("home");
    std::fs::create_dir(&home).expect("mkdir");
    std::fs::write(home.join("synctrail.db"), "these are notes, not a database\n".repeat(20)).expect("write");
    for args in [&["list"][..], &["send", "/nonexistent.ndjson"]] {
        let refused = error(&home, args).await;
        let said = refused.to_string();
        let db = home.join("synctrail.db");
        assert!(said.starts_with(&format!("{} is not a synctrail database", db.display())), "{args:?}: {said}");
        assert!(said.contains("move the file away") && !said.contains("writable directory"), "{said}");
        assert_eq!(refused.exit_code(), 3, "{args:?}");
    }
    let kept = std::fs::read_to_string(home.join("synctrail.db")).expect("read");
    assert!(kept.starts_with("these are notes"), "the file is left as it was");
}

#[tokio::test]
async fn resuming_a_reconcile_run_over_another_entity_type_says_what_it_was_started_over_and_a_finished_one_sends_nothing(
) {
    let home = temp_home();
    send_and_run(home.path(), &[product("p1", 1), product("p2", 1)]).await;
    let snapshot = home.path().join("export.ndjson");
    std::fs::write(&snapshot, [product("p1", 1), product("p3", 2)].map(|r| r.to_string() + "\n").concat())
        .expect("write");
    let against = snapshot.to_str().expect("UTF-8");
    let run = ["reconcile", "--source", "shopify", "--against", against, "--as-of", &at(10), "--apply"];
    let typed = [&run[..], &["--entity-type", "product", "--run-id", "r1"]].concat();
    let (code, text) = ok(home.path(), &typed).await;
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("sent 2 corrective event(s) (caused_by reconcile:r1)"), "p3 missing, p2 extra: {text}");

    let untyped = [&run[..], &["--run-id", "r1"]].concat();
    let refused = error(home.path(), &untyped).await;
    assert_eq!(
        refused.to_string(),
        "run r1 was started over source shopify, entity type product, and this one asks for source shopify, every \
         entity type: ask for the same to resume it, or choose another run id"
    );
    assert_eq!(refused.exit_code(), 2);

    let (code, text) = ok(home.path(), &typed).await;
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("run r1 had already finished (it sent 2 corrective event(s) in all): nothing was looked at or sent this time"),
        "{text}"
    );
    assert!(!text.contains("process them with"), "{text}");
    let (_, text) = ok(home.path(), &[&typed[..], &["--json"]].concat()).await;
    let report: Value = serde_json::from_str(&text).expect("one JSON document");
    assert_eq!((report["already_finished"].as_bool(), report["sent_now"].as_u64()), (Some(true), Some(0)));
    assert_eq!(report["sent"].as_u64(), Some(2), "the whole run's: {report}");
}

#[tokio::test]
async fn a_missing_snapshot_is_named_once() {
    let home = temp_home();
    send_and_run(home.path(), &[product("p1", 1)]).await;
    let against = "/nonexistent/export.ndjson";
    let refused = error(home.path(), &["reconcile", "--source", "shopify", "--against", against]).await;
    let said = refused.to_string();
    assert_eq!(said.matches(against).count(), 1, "{said}");
    assert!(said.contains("No such file or directory") && said.contains("check where the snapshot is"), "{said}");
    assert_eq!(refused.exit_code(), 3);
}

#[tokio::test]
async fn reprocess_of_an_unknown_id_exits_2_as_show_does() {
    let home = temp_home();
    send_and_run(home.path(), &[product("p1", 1)]).await;
    assert_eq!(error(home.path(), &["show", "nope"]).await.exit_code(), 2);
    let (code, text) = ok(home.path(), &["reprocess", "nope"]).await;
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("not re-driven: event nope is not recorded"), "{text}");
    assert_eq!(ok(home.path(), &["reprocess", "nope", "--json"]).await.0, 2);
}

#[test]
fn reprocess_without_ids_or_status_names_both_forms() {
    let refused = Cli::try_parse_from(["synctrail", "reprocess"]).expect_err("nothing to re-drive");
    let said = refused.to_string();
    assert!(said.contains("<EVENT_ID|--status <STATUS>>"), "{said}");
    assert!(said.contains("synctrail reprocess [OPTIONS] <EVENT_ID>..."), "{said}");
    assert!(said.contains("synctrail reprocess [OPTIONS] --status <STATUS> [--source <SOURCE>]"), "{said}");
    assert_eq!(refused.exit_code(), 2);
    assert!(Cli::try_parse_from(["synctrail", "reprocess", "ev-1", "--status", "failed"]).is_err(), "one or the other");
    assert!(Cli::try_parse_from(["synctrail", "reprocess", "--source", "github"]).is_err(), "a filter needs --status");
    assert!(Cli::try_parse_from(["synctrail", "reprocess", "ev-1", "ev-2"]).is_ok());
    assert!(Cli::try_parse_from(["synctrail", "reprocess", "--status", "failed", "--since", "2h"]).is_ok());
    let help = Cli::try_parse_from(["synctrail", "reprocess", "--help"]).expect_err("help").to_string();
    assert!(help.contains("synctrail reprocess --status failed"), "{help}");
}

#[tokio::test]
async fn a_run_stopped_by_its_max_duration_with_work_left_exits_1_and_says_so() {
    let home = temp_home();
    send(home.path(), &[product("p1", 1), product("p2", 1)]).await;
    let (code, text) = ok(home.path(), &["run", "--workers", "1", "--max-duration", "0"]).await;
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("stopped before the queue drained") && text.contains("work is left on the queue"), "{text}");
    let (code, text) = ok(home.path(), &["run", "--workers", "1", "--max-duration", "0", "--json"]).await;
    assert_eq!(code, 1, "{text}");
    assert_eq!(serde_json::from_str::<Value>(&text).expect("JSON")["drained"], false);
    let (code, _) = ok(home.path(), &["run", "--workers", "1", "--max-duration", "0", "--follow"]).await;
    assert_eq!(code, 0, "a followed run runs until told to stop");
    let (code, text) = ok(home.path(), &["run", "--workers", "1", "--max-duration", "60"]).await;
    assert_eq!(code, 0, "drained: {text}");
    let help = Cli::try_parse_from(["synctrail", "--help"]).expect_err("help").to_string();
    assert!(help.contains("run: stopped by --max-duration before the queue drained"), "{help}");
}

#[tokio::test]
async fn verify_all_keeps_its_progress_in_the_home_only_while_unfinished_and_names_the_file_when_it_stops_early() {
    let home = temp_home();
    send_and_run(home.path(), &[issue(1), issue(2), issue(3)]).await;
    let state = home.path().join("verify-p1.json");
    let first = ["verify", "--all", "--run-id", "p1", "--page-size", "1", "--pages", "1"];
    let (code, text) = ok(home.path(), &first).await;
    assert_eq!(code, 0, "{text}");
    assert!(state.is_file(), "kept in the home while unfinished: {text}");
    assert!(!Path::new("synctrail-verify-p1.json").exists(), "nothing written to the current directory");
    let said =
        format!("its progress is kept in {}: resume it with `synctrail verify --all --run-id p1`", state.display());
    assert!(text.contains(&said), "{text}");

    let (code, text) = ok(home.path(), &["verify", "--all", "--run-id", "p1", "--json"]).await;
    assert_eq!(code, 0, "{text}");
    let pass: Value = serde_json::from_str(&text).expect("one JSON document");
    assert_eq!((pass["finished"].as_bool(), pass["totals"]["examined"].as_u64()), (Some(true), Some(3)), "{pass}");
    assert_eq!((&pass["state"], &pass["resume"]), (&Value::Null, &Value::Null), "{pass}");
    assert!(!state.exists(), "removed once the pass finished");

    let (code, text) = ok(home.path(), &["verify", "--all"]).await;
    assert!(code == 0 && !text.contains("stopped before the end"), "{text}");
    let leftovers: Vec<_> = std::fs::read_dir(home.path())
        .expect("read the home")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("verify-"))
        .map(|e| e.file_name())
        .collect();
    assert!(leftovers.is_empty(), "a pass that finished leaves no file: {leftovers:?}");
}

/// A destination that refuses every change for good: its events end `failed`.
struct Refusing;

#[async_trait::async_trait]
impl synctrail::destination::Destination for Refusing {
    async fn apply(
        &self,
        _: &synctrail::destination::Change<'_>,
    ) -> Result<synctrail::destination::ApplyOutcome, synctrail::destination::DestinationError> {
        Err(synctrail::destination::DestinationError::Permanent("refused by the test".into()))
    }
}

#[tokio::test]
async fn listing_dead_letters_says_what_redrive_would_do_not_that_a_failed_event_was_marked() {
    let home = temp_home();
    let envelope = json!({"source": "erp", "entity_type": "order", "external_id": "SO-1", "updated_at": at(5),
                          "event_id": "erp-1", "payload": {"total": 12}});
    send(home.path(), std::slice::from_ref(&envelope)).await;
    let home_str = home.path().to_str().expect("UTF-8");
    let cli = Cli::try_parse_from(["synctrail", "--home", home_str, "run", "--workers", "1", "--max-duration", "60"])
        .expect("valid arguments");
    let ctx = Context { destination: Some(Arc::new(Refusing)), ..Context::of(&cli) };
    assert_eq!(run_command(&ctx, &cli.command, &mut Vec::new()).await.expect("the run"), 0);
    let (code, text) = ok(home.path(), &["status", "erp-1"]).await;
    assert!(code == 1 && text.starts_with("erp-1 failed"), "{text}");

    // The same event again, and its message dead-lettered.
    send(home.path(), &[envelope]).await;
    let embedded = synctrail::store::sqlite::Embedded::open(
        home.path(),
        Arc::new(synctrail::SystemClock),
        synctrail::store::sqlite::EmbeddedOptions::default(),
    )
    .expect("the home");
    let received = embedded.queue.receive(10, chrono::Duration::seconds(30)).await.expect("receive");
    assert_eq!(received.len(), 1);
    embedded.queue.dead_letter(&received[0].receipt_handle, &received[0].body, None).await.expect("dead-letter");
    drop(embedded);

    let (code, text) = ok(home.path(), &["dead-letters"]).await;
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("failed: a re-drive marks it for retry"), "{text}");
    assert!(!text.contains("marked for retry"), "nothing was marked: {text}");
    let (_, text) = ok(home.path(), &["dead-letters", "--json"]).await;
    let report: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(report["dry_run"], true);
    let action = report["letters"][0]["action"].as_str().unwrap_or_default();
    assert!(action.contains("a re-drive marks it for retry"), "{report}");
    let (code, text) = ok(home.path(), &["status", "erp-1"]).await;
    assert!(code == 1 && text.starts_with("erp-1 failed"), "listing left the event as it was: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reprocess_invoke_of_an_event_whose_entity_is_busy_says_it_was_not_run_and_exits_3() {
    let h = crate::support::Harness::new();
    // The command reads the system clock: the harness's holds are made at the same time.
    h.advance(chrono::Utc::now() - crate::support::t0());
    let first = crate::support::Env::product("p-busy").at(1).titled("v1");
    let second = crate::support::Env::product("p-busy").at(2).titled("v2");
    h.send_env(&first).await;
    h.drain().await;
    let gate = h.script.hold_next();
    let home = h.home.path().to_owned();
    let id = first.event_id().to_string();

    let (_, (code, text)) = crate::support::deliver_racing(&h, &second, async {
        // `second` holds the entity while the command re-drives `first` here, forced (ordering skipped, but still
        // one event in flight per entity).
        gate.entered().await;
        let said = ok(&home, &["reprocess", &id, "--invoke", "--force"]).await;
        gate.release();
        said
    })
    .await;

    assert_eq!(code, 3, "{text}");
    assert!(text.contains("not run: its entity is busy"), "{text}");
    assert!(!text.contains(" received"), "the status shown is the stored one:\n{text}");
    assert_eq!(h.status_of(&first).await, synctrail::model::Status::Completed, "nothing changed");
}

#[tokio::test]
async fn run_refuses_a_function_timeout_under_lambdas_minimum_of_one_second_as_a_usage_error() {
    // At or under the runtime's safety margin (200 ms) no record would ever start: every message would be received
    // until dead-lettered, and the run would still say "queue drained".
    let home = temp_home();
    send(home.path(), &[issue(1)]).await;
    for timeout in ["0.2", "0.999", "0"] {
        let args = ["run", "--function-timeout", timeout, "--visibility-timeout", "1", "--max-duration", "5"];
        let refused = error(home.path(), &args).await;
        assert_eq!(refused.exit_code(), 2, "{refused}");
        let said = refused.to_string();
        for part in [format!("--function-timeout {timeout} s"), "at least 1 s".to_owned(), "Lambda".to_owned()] {
            assert!(said.contains(&part), "{part:?} in {said}");
        }
    }
    let (code, text) = ok(home.path(), &["run", "--function-timeout", "1", "--max-duration", "60"]).await;
    assert_eq!(code, 0, "1 s, Lambda's minimum, is accepted: {text}");
    assert!(ok(home.path(), &["status", &issue_event_id(home.path()).await]).await.1.contains("completed"));
}

/// The event id of the only event recorded in `home`.
async fn issue_event_id(home: &Path) -> String {
    let (_, text) = ok(home, &["list", "--json"]).await;
    let page: Value = serde_json::from_str(&text).expect("JSON");
    page["events"][0]["event_id"].as_str().expect("an event id").to_owned()
}

/// Parses and runs `synctrail --home HOME ARGS…` as the binary does; returns its exit code and what it said (the
/// usage error, the command's error or its output).
async fn exit_of(home: &Path, args: &[&str]) -> (u8, String) {
    let home = home.to_str().expect("a UTF-8 home");
    let cli = match Cli::try_parse_from(["synctrail", "--home", home].iter().chain(args)) {
        Ok(cli) => cli,
        Err(usage) => return (u8::try_from(usage.exit_code()).unwrap_or(u8::MAX), usage.to_string()),
    };
    let mut out = Vec::new();
    match synctrail_cli::commands::dispatch(&cli, &mut out).await {
        Ok(code) => (code, String::from_utf8_lossy(&out).into_owned()),
        Err(e) => (e.exit_code(), e.to_string()),
    }
}

#[tokio::test]
async fn durations_and_seconds_beyond_a_hundred_years_are_usage_errors_not_panics_or_storage_failures() {
    let home = temp_home();
    send(home.path(), &[issue(1)]).await;
    let invocations: [&[&str]; 11] = [
        &["stats", "--watch", "1e20", "--watch-count", "2"],
        &["run", "--max-duration", "1e20"],
        &["run", "--destination-down", "1e13", "--max-duration", "5"],
        &["run", "--function-timeout", "1e20", "--visibility-timeout", "1e20", "--max-duration", "5"],
        &["serve", "--port", "0", "--read-timeout", "1e20", "--max-duration", "0.1"],
        &["serve", "--port", "0", "--max-duration", "1e20"],
        &["list", "--since", "100000000d"],
        &["list", "--since", "20000w"],
        &["reprocess", "--status", "failed", "--since", "100000000d", "--dry-run"],
        &["reprocess", "--status", "failed", "--until", "20000w", "--dry-run"],
        &["verify", "--all", "--since", "100000000d"],
    ];
    for args in invocations {
        let (code, said) = exit_of(home.path(), args).await;
        assert_eq!(code, 2, "synctrail {args:?}: {said}");
        assert!(said.contains("100 years"), "synctrail {args:?} names the bound: {said}");
    }
    let (code, said) = exit_of(home.path(), &["list", "--since", "5200w"]).await;
    assert_eq!(code, 0, "a hundred years back is fine: {said}");
}
