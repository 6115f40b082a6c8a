//! The `synctrail` command as a user runs it (parsed arguments, dispatched on a temporary embedded home): listings
//! that say when they are cut, and the everyday commands' defaults.

use crate::support::hooked_queue::{HookedQueue, QueueHooks};
use crate::support::{at, temp_home};
use clap::Parser;
use serde_json::{json, Value};
use std::path::Path;
use synctrail::store::{OutgoingMessage, Queue, QueueMessage, StoreError};
use synctrail_cli::args::Cli;

/// Runs `synctrail --home HOME ARGS…`; returns the exit code and what it printed on standard output.
async fn synctrail(home: &Path, args: &[&str]) -> (u8, String) {
    let home = home.to_str().expect("a UTF-8 home");
    let cli = Cli::try_parse_from(["synctrail", "--home", home].iter().chain(args)).expect("valid arguments");
    let mut out = Vec::new();
    let code = synctrail_cli::commands::dispatch(&cli, &mut out).await.expect("the command runs");
    (code, String::from_utf8(out).expect("UTF-8 output"))
}

/// Writes `envelopes` as an NDJSON file in `home` and sends it, then runs the queue dry.
async fn send_and_run(home: &Path, envelopes: &[Value]) {
    let file = home.join("envelopes.ndjson");
    let lines: Vec<String> = envelopes.iter().map(Value::to_string).collect();
    std::fs::write(&file, lines.join("\n")).expect("write the envelopes");
    let file = file.to_str().expect("UTF-8 path");
    assert_eq!(synctrail(home, &["send", file]).await.0, 0);
    assert_eq!(synctrail(home, &["run", "--workers", "1", "--max-duration", "60"]).await.0, 0);
}

fn issue(number: u32) -> Value {
    json!({"source": "github", "entity_type": "issue", "external_id": format!("o/r#{number}"),
           "updated_at": at(i64::from(number)), "payload": {"n": number}})
}

#[tokio::test]
async fn a_listing_cut_by_its_limit_says_how_many_exist_and_its_json_stays_one_document() {
    let home = temp_home();
    send_and_run(home.path(), &(1..=5).map(issue).collect::<Vec<_>>()).await;

    let (_, text) = synctrail(home.path(), &["list", "--limit", "2", "--json"]).await;
    let page: Value = serde_json::from_str(&text).expect("one JSON document");
    assert_eq!(page["events"].as_array().map(Vec::len), Some(2));
    assert_eq!((page["total"].as_u64(), page["truncated"].as_bool()), (Some(5), Some(true)));

    let (_, text) = synctrail(home.path(), &["list", "--limit", "5", "--json"]).await;
    let page: Value = serde_json::from_str(&text).expect("one JSON document");
    assert_eq!((page["total"].as_u64(), page["truncated"].as_bool()), (Some(5), Some(false)), "exactly the limit");

    let (_, text) = synctrail(home.path(), &["records", "--limit", "3", "--json"]).await;
    let page: Value = serde_json::from_str(&text).expect("one JSON document");
    assert_eq!(page["records"].as_array().map(Vec::len), Some(3));
    assert_eq!((page["total"].as_u64(), page["truncated"].as_bool()), (Some(5), Some(true)));

    let (_, text) = synctrail(home.path(), &["records", "--limit", "0", "--json"]).await;
    let page: Value = serde_json::from_str(&text).expect("one JSON document");
    assert_eq!((page["records"].as_array().map(Vec::len), page["truncated"].as_bool()), (Some(5), Some(false)));
}

#[tokio::test]
async fn show_json_spells_out_every_field_the_store_leaves_out_when_empty() {
    let home = temp_home();
    send_and_run(home.path(), &[issue(1)]).await;
    let (_, text) = synctrail(home.path(), &["list", "--json"]).await;
    let page: Value = serde_json::from_str(&text).expect("JSON");
    let id = page["events"][0]["event_id"].as_str().expect("an event id").to_owned();

    let (code, text) = synctrail(home.path(), &["--json", "show", &id]).await;
    assert_eq!(code, 0);
    let record: Value = serde_json::from_str(&text).expect("one JSON document");
    assert_eq!(record["status"], "completed");
    let spelled = [
        ("redelivered", json!(0)),
        ("tie", json!(false)),
        ("out_of_order", json!(false)),
        ("parked", json!(false)),
        ("error", Value::Null),
        ("canceled_by", Value::Null),
        ("written", Value::Null),
        ("replay_kept", Value::Null),
        ("history_folded", json!(0)),
    ];
    for (field, empty) in spelled {
        assert_eq!(record.get(field), Some(&empty), "{field} in {record}");
    }
    let left_out = fields_left_out_when_empty();
    for field in ["client_event_id", "tie", "history_apart"] {
        assert!(left_out.iter().any(|f| f == field), "{field} read from the source: {left_out:?}");
    }
    let missing: Vec<&String> = left_out.iter().filter(|field| record.get(field.as_str()).is_none()).collect();
    assert!(missing.is_empty(), "left out of show --json: {missing:?} in {record}");
}

/// The fields of `EventRecord` that its stored JSON leaves out when empty (`skip_serializing_if`), read from the
/// struct's source, so that a field added later is checked too.
fn fields_left_out_when_empty() -> Vec<String> {
    let source = include_str!("../../shared/src/model/record.rs");
    let body = source.split("pub struct EventRecord {").nth(1).and_then(|rest| rest.split("\n}\n").next());
    let mut fields = Vec::new();
    let mut skipped = false;
    for line in body.expect("the EventRecord struct in record.rs").lines().map(str::trim) {
        if line.starts_with("//") {
            continue;
        }
        match line.strip_prefix("pub ").and_then(|field| field.split_once(':')) {
            Some((name, _)) => {
                if skipped {
                    fields.push(name.trim().to_owned());
                }
                skipped = false;
            }
            None => skipped |= line.contains("skip_serializing_if"),
        }
    }
    fields
}

#[test]
fn the_note_on_standard_error_names_what_is_shown_and_how_to_see_all() {
    use synctrail_cli::output::Page;
    let cut = Page { rows: vec![1, 2], total: 7, truncated: true };
    assert_eq!(cut.note().as_deref(), Some("showing 2 of 7; --limit 0 for all"));
    assert_eq!(Page { rows: vec![1], total: 1, truncated: false }.note(), None);
}

#[tokio::test]
async fn everyday_commands_apply_no_dependency_rule_unless_one_is_configured() {
    // The demo's rule (an inventory level waits for its product) belongs to the demo only.
    let home = temp_home();
    let level = json!({"source": "shopify", "entity_type": "inventory_level", "external_id": "808950810@655441491",
                       "updated_at": at(1), "payload": {"product_id": "632910392", "available": 7}});
    send_and_run(home.path(), &[level]).await;
    let (_, text) = synctrail(home.path(), &["list", "--json"]).await;
    let page: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(page["events"][0]["status"], "completed", "applied at once, not waiting for a product: {page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_delivers_to_an_http_destination_named_by_its_flags() {
    use crate::support::receiver::Receiver;
    use std::sync::Arc;
    // The receiver stores into a mirror of its own (another home): the team's side.
    let theirs = temp_home();
    let store =
        synctrail::store::sqlite::Embedded::open(theirs.path(), Arc::new(synctrail::SystemClock), Default::default())
            .expect("the receiver's store");
    let receiver = Receiver::start(store.mirror.clone(), Arc::new(synctrail::SystemClock), None);
    let home = temp_home();
    let file = home.path().join("in.ndjson");
    std::fs::write(&file, issue(7).to_string()).expect("write");
    let url = receiver.url.clone();
    let http = ["--destination", "http", "--destination-url", url.as_str()];
    assert_eq!(synctrail(home.path(), &["send", file.to_str().expect("UTF-8")]).await.0, 0);
    let run: Vec<&str> = ["run", "--workers", "1", "--max-duration", "60"].into_iter().chain(http).collect();
    assert_eq!(synctrail(home.path(), &run).await.0, 0);

    let (_, text) = synctrail(home.path(), &["list", "--json"]).await;
    let page: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(page["events"][0]["status"], "completed", "{page}");
    let seen = receiver.seen();
    assert_eq!(seen.len(), 1, "one POST");
    assert_eq!(seen[0].body["entity"]["key"], "default/github/issue/o/r#7", "{}", seen[0].body);
    let entity = synctrail::model::EntityKey::parse("default/github/issue/o/r#7").expect("key");
    assert_eq!(store.mirror.get(&entity).await.expect("read").map(|r| r.state), Some(json!({"n": 7})));
    let records: Vec<&str> = ["records"].into_iter().chain(http).collect();
    let home_str = home.path().to_str().expect("UTF-8");
    let cli = Cli::try_parse_from(["synctrail", "--home", home_str].iter().chain(records.iter())).expect("args");
    let refused = synctrail_cli::commands::dispatch(&cli, &mut Vec::new()).await.expect_err("no mirror here");
    assert!(refused.to_string().contains("reference mirror"), "{refused}");
}

#[test]
fn every_variable_the_code_reads_is_documented_in_the_configuration_guide() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let guide = std::fs::read_to_string(root.join("docs/configuration.md")).expect("docs/configuration.md");
    let mut sources = Vec::new();
    let mut dirs = vec![root.join("shared/src"), root.join("functions"), root.join("cli/src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("a source directory").flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                sources.push(path);
            }
        }
    }
    let mut undocumented = std::collections::BTreeSet::new();
    for path in &sources {
        let whole = std::fs::read_to_string(path).expect("a source file");
        // Test modules (at the end of a file, by convention) may name variables only to test them.
        let text = whole.split("#[cfg(test)]").next().unwrap_or_default();
        for (at, _) in text.match_indices("\"SYNCTRAIL_") {
            let name: String = text[at + 1..]
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            if !guide.contains(&name) {
                undocumented.insert(format!("{name} ({})", path.strip_prefix(&root).unwrap_or(path).display()));
            }
        }
    }
    assert!(sources.len() > 50, "the scan found too few files: {}", sources.len());
    assert!(undocumented.is_empty(), "read by the code, missing from docs/configuration.md: {undocumented:?}");
}

#[tokio::test]
async fn reconcile_and_verify_run_as_a_user_runs_them_and_their_exit_codes_say_whether_anything_differs() {
    let home = temp_home();
    send_and_run(home.path(), &(1..=3).map(issue).collect::<Vec<_>>()).await;
    let snapshot = home.path().join("export.ndjson");
    let mut newer = issue(2);
    newer["updated_at"] = json!(at(20));
    newer["payload"] = json!({"n": 22});
    let rows = [issue(1), newer, issue(4)];
    std::fs::write(&snapshot, rows.iter().map(|r| r.to_string() + "\n").collect::<String>()).expect("write");
    let against = snapshot.to_str().expect("UTF-8 path");

    let reconcile = ["reconcile", "--source", "github", "--against", against, "--as-of", &at(30), "--json"];
    let (code, text) = synctrail(home.path(), &reconcile).await;
    let report: Value = serde_json::from_str(&text).expect("one JSON document");
    assert_eq!(code, 1, "a dry run that finds differences exits 1");
    assert_eq!(
        report["counts"],
        json!({"same": 1, "missing": 1, "extra": 1, "stale": 0, "different": 1, "ignored": 0, "invalid": 0})
    );
    let (code, text) =
        synctrail(home.path(), &[&reconcile[..], &["--apply", "--run-id", "cli-1", "--rate", "100/s"]].concat()).await;
    assert_eq!(code, 0, "{text}");
    assert!(home.path().join("export.ndjson.reconcile-cli-1.json").exists(), "the run's state beside the snapshot");
    assert_eq!(synctrail(home.path(), &["run", "--workers", "1", "--max-duration", "60"]).await.0, 0);
    assert_eq!(synctrail(home.path(), &reconcile).await.0, 0, "nothing left to correct");

    let state = home.path().join("pass.json");
    let verify_all = ["verify", "--all", "--run-id", "v-1", "--state", state.to_str().expect("UTF-8"), "--json"];
    let (code, text) = synctrail(home.path(), &verify_all).await;
    let pass: Value = serde_json::from_str(&text).expect("one JSON document");
    assert_eq!(code, 0, "{pass}");
    assert_eq!((pass["totals"]["examined"].as_u64(), pass["totals"]["equal"].as_u64()), (Some(4), Some(4)));
    assert_eq!((pass["totals"]["payloads_read"].as_u64(), pass["finished"].as_bool()), (Some(0), Some(true)));
    let (code, text) = synctrail(home.path(), &["verify", "github/issue/o/r#2"]).await;
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("equal"), "{text}");
}

/// How long (real time) a test waits for a run to return before it fails.
const RUN_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

#[tokio::test]
async fn a_run_whose_sweeps_keep_failing_stops_with_the_sweeps_error_instead_of_polling_until_its_time_is_up() {
    use synctrail_cli::runtime::{LocalRuntime, RunOptions, SWEEP_FAILURES_TO_GIVE_UP};
    let h = crate::support::Harness::with(crate::support::Options { held_store: true, ..Default::default() });
    h.held.fail_sweeps();
    let runtime = LocalRuntime::new(h.ports().clone(), h.options.settings.clone());
    let options = RunOptions {
        max_duration: std::time::Duration::from_secs(300),
        poll_interval: std::time::Duration::from_millis(5),
        ..RunOptions::default()
    };
    let run = tokio::time::timeout(RUN_LIMIT, runtime.run(&options, &|_| {}));
    let error =
        run.await.expect("the run did not give up within 30 s").expect_err("the run gives up with the sweep's error");
    assert!(matches!(error, synctrail::store::StoreError::Unavailable(_)), "{error:?}");
    let said = error.to_string();
    let expected = format!("the sweep failed {SWEEP_FAILURES_TO_GIVE_UP} times in a row");
    assert!(said.contains(&expected) && said.contains("the store is down (drill)"), "{said}");
}

/// `synctrail run` exits once its run returns, and a receive still waiting then — an SQS long poll goes on without
/// its client — takes a message sent meanwhile and hides it for the whole visibility timeout. Asked to (as the
/// command does), a run returns only once what its workers' last receives took is visible again.
#[tokio::test]
async fn a_run_that_hands_back_before_returning_leaves_what_its_last_receives_took_visible() {
    let (h, queue) = run_over_long_polls(false).await;
    let sent = queue.hooks.sent.load(std::sync::atomic::Ordering::SeqCst);
    assert!(sent >= 1, "a worker's receive was still waiting when the run stopped, and took what was sent meanwhile");
    let depth = h.ports().queue.depth().await.expect("depth");
    assert_eq!((depth.visible, depth.in_flight), (sent, 0), "all of it visible again when the run returned");
}

/// `synctrail run` on the embedded queue returns as soon as its run is over: the receives its workers left waiting
/// are told to end ([`synctrail::store::Queue::end_waits`]) instead of being waited for until their wait is over.
/// Here each would wait an hour; the run returns having seen every one of them end.
#[tokio::test]
async fn a_run_that_hands_back_before_returning_ends_the_embedded_queues_waiting_receives() {
    use std::sync::atomic::Ordering;
    let (h, queue) = run_over_long_polls(true).await;
    assert!(queue.hooks.waits.load(Ordering::SeqCst) >= 1, "the workers were waiting in receives when the run stopped");
    assert_eq!(queue.hooks.waiting.load(Ordering::SeqCst), 0, "each had ended when the run returned");
    let depth = h.ports().queue.depth().await.expect("depth");
    assert_eq!((depth.visible, depth.in_flight), (0, 0), "and none took anything");
}

/// Runs two workers over an empty queue whose receives are [`LongPolls`], as `synctrail run` does (handing back
/// before it returns), until the run returns.
async fn run_over_long_polls(as_embedded: bool) -> (crate::support::Harness, std::sync::Arc<HookedQueue<LongPolls>>) {
    let (h, queue, runtime, options) = over_long_polls(as_embedded, false);
    let run = tokio::time::timeout(RUN_LIMIT, runtime.run(&options, &|_| {}));
    let stats = run
        .await
        .expect("the run did not return within 30 s: its workers' waiting receives did not end")
        .expect("the run");
    assert!(stats.drained && stats.invocations == 0, "the queue was empty, and quiescent at once: {stats:?}");
    (h, queue)
}

/// A run of two workers over the harness's empty queue, whose receives are [`LongPolls`] (and whose depth fails with
/// `depth_fails`), handing back before it returns; the harness must outlive the run.
fn over_long_polls(
    as_embedded: bool,
    depth_fails: bool,
) -> (
    crate::support::Harness,
    std::sync::Arc<HookedQueue<LongPolls>>,
    synctrail_cli::runtime::LocalRuntime,
    synctrail_cli::runtime::RunOptions,
) {
    let h = crate::support::Harness::new();
    let hooks = LongPolls { as_embedded, depth_fails, sent: 0.into(), waits: 0.into(), waiting: 0.into() };
    let queue = std::sync::Arc::new(HookedQueue { inner: h.ports().queue.clone(), hooks });
    let ports = synctrail::engine::Ports { queue: queue.clone(), ..h.ports().clone() };
    let runtime = synctrail_cli::runtime::LocalRuntime::new(ports, h.options.settings.clone());
    let options = synctrail_cli::runtime::RunOptions {
        workers: 2,
        poll_interval: std::time::Duration::from_millis(10),
        hand_back_before_returning: true,
        ..synctrail_cli::runtime::RunOptions::default()
    };
    (h, queue, runtime, options)
}

/// Ctrl-C or SIGTERM stops `synctrail run` as its `--max-duration` would (`RunOptions::stop_requested`, which the
/// command's signal handlers set): the invocations under way finish, nothing is left half done, and a later run
/// picks up every event the stopped one did not reach.
#[tokio::test]
async fn a_run_asked_to_stop_finishes_its_invocations_under_way_and_a_later_run_does_the_rest() {
    use std::sync::atomic::AtomicBool;
    use synctrail::model::Status;
    use synctrail_cli::runtime::{LocalRuntime, RunOptions};
    use synctrail_cli::workload::{generate, WorkloadConfig};
    static ASKED_TO_STOP: AtomicBool = AtomicBool::new(true);
    let h = crate::support::Harness::new();
    let workload = generate(&WorkloadConfig::happy_path(1_000, 200, 3));
    let sent = synctrail_cli::commands::send::send_lines(h.ports().queue.as_ref(), workload.lines(), |_| {})
        .await
        .expect("send")
        .sent;
    let runtime = LocalRuntime::new(h.ports().clone(), h.options.settings.clone());
    let stopping = RunOptions { stop_requested: Some(&ASKED_TO_STOP), ..RunOptions::default() };
    let stopped = tokio::time::timeout(RUN_LIMIT, runtime.run(&stopping, &|_| {}))
        .await
        .expect("the run asked to stop did not stop within 30 s")
        .expect("the stopped run");
    assert!(stopped.interrupted && !stopped.drained, "{stopped:?}");
    assert!(stopped.records < sent, "it stopped at its first look, {} of {sent} messages in", stopped.records);
    let counts = h.ports().store.count_by_status().await.expect("counts");
    assert_eq!(counts.get(&Status::Processing), None, "no invocation was left half done: {counts:?}");
    let rest = tokio::time::timeout(RUN_LIMIT, runtime.run(&RunOptions::default(), &|_| {}))
        .await
        .expect("the run after it did not drain the queue within 30 s")
        .expect("the run after it");
    assert!(rest.drained && !rest.interrupted, "{rest:?}");
    let counts = h.ports().store.count_by_status().await.expect("counts");
    let events = u64::try_from(workload.summary.events).expect("a count");
    assert_eq!(counts.values().sum::<u64>(), events, "every event recorded, none lost: {counts:?}");
    assert_eq!(counts.get(&Status::Processing), None, "{counts:?}");
}

/// Receives that wait as an SQS long poll does. Either each waits its whole wait, then finds a message that arrived
/// meanwhile (it sends one, then receives), or (`as_embedded`) it is the embedded queue's own waiting receive,
/// waiting an hour whatever it is asked, unless told to end. With `depth_fails`, measuring the queue fails.
struct LongPolls {
    as_embedded: bool,
    depth_fails: bool,
    /// Messages sent at the end of a wait.
    sent: std::sync::atomic::AtomicU64,
    /// Waiting receives started, and how many of them have not returned.
    waits: std::sync::atomic::AtomicU64,
    waiting: std::sync::atomic::AtomicI64,
}

#[async_trait::async_trait]
impl QueueHooks for LongPolls {
    async fn receive_waiting(
        &self,
        inner: &dyn synctrail::store::Queue,
        max: usize,
        visibility: chrono::Duration,
        wait: std::time::Duration,
    ) -> Result<Vec<QueueMessage>, StoreError> {
        use std::sync::atomic::Ordering::SeqCst;
        if self.as_embedded {
            self.waits.fetch_add(1, SeqCst);
            self.waiting.fetch_add(1, SeqCst);
            let received = inner.receive_waiting(max, visibility, std::time::Duration::from_secs(3600)).await;
            self.waiting.fetch_sub(1, SeqCst);
            return received;
        }
        tokio::time::sleep(wait).await;
        inner.send(vec![OutgoingMessage::new("sent while a long poll waited")]).await?;
        self.sent.fetch_add(1, SeqCst);
        inner.receive(max, visibility).await
    }

    async fn depth(&self, inner: &dyn synctrail::store::Queue) -> Result<synctrail::store::QueueDepth, StoreError> {
        if self.depth_fails {
            return Err(StoreError::Backend("the queue's depth is refused (drill)".into()));
        }
        inner.depth().await
    }
}

/// Sends one event per number in `numbers` to the harness's queue; returns how many messages were sent.
async fn send_issues(h: &crate::support::Harness, numbers: std::ops::RangeInclusive<u32>) -> u64 {
    let lines = numbers.map(|n| issue(n).to_string());
    synctrail_cli::commands::send::send_lines(h.ports().queue.as_ref(), lines, |_| {}).await.expect("send").sent
}

/// A queue whose first `failures` deletes of something fail, retryably (SQLite busy past its timeout, an SQS
/// network error) or not. After each failure the visibility timeout passes on the harness clock: what the delete
/// left comes back.
struct FailingDeletes {
    retryable: bool,
    failures: std::sync::atomic::AtomicU64,
    /// Receipts the failed deletes were given.
    not_deleted: std::sync::atomic::AtomicU64,
    clock: std::sync::Arc<synctrail::ManualClock>,
    visibility: chrono::Duration,
}

#[async_trait::async_trait]
impl QueueHooks for FailingDeletes {
    async fn delete(&self, inner: &dyn synctrail::store::Queue, handles: &[String]) -> Result<(), StoreError> {
        use std::sync::atomic::Ordering::SeqCst;
        let fail = !handles.is_empty() && self.failures.fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1)).is_ok();
        if !fail {
            return inner.delete(handles).await;
        }
        self.not_deleted.fetch_add(handles.len() as u64, SeqCst);
        self.clock.advance(self.visibility);
        if self.retryable {
            Err(StoreError::Unavailable("database is locked (drill)".into()))
        } else {
            Err(StoreError::Backend("the queue refuses deletes (drill)".into()))
        }
    }
}

/// Runs `workers` workers over three sent events and a queue whose first delete fails (`retryable` or not).
async fn run_with_a_failing_delete(
    retryable: bool,
    options: synctrail_cli::runtime::RunOptions,
) -> (
    crate::support::Harness,
    std::sync::Arc<HookedQueue<FailingDeletes>>,
    Result<synctrail_cli::runtime::RunStats, StoreError>,
) {
    use synctrail_cli::runtime::LocalRuntime;
    let h = crate::support::Harness::new();
    assert_eq!(send_issues(&h, 1..=3).await, 3);
    let hooks = FailingDeletes {
        retryable,
        failures: 1.into(),
        not_deleted: 0.into(),
        clock: h.clock.clone(),
        visibility: options.visibility_timeout,
    };
    let queue = std::sync::Arc::new(HookedQueue { inner: h.ports().queue.clone(), hooks });
    let ports = synctrail::engine::Ports { queue: queue.clone(), ..h.ports().clone() };
    let runtime = LocalRuntime::new(ports, h.options.settings.clone());
    let run = tokio::time::timeout(RUN_LIMIT, runtime.run(&options, &|_| {}));
    let ended = run.await.expect("the run did not end within 30 s");
    (h, queue, ended)
}

/// A delete refused for a while (SQLite busy past its timeout, an SQS network error) does not end the worker: it
/// goes on, and what it could not delete comes back after its visibility timeout and is recognised as a repeat.
/// With one worker, a worker that ended would leave the queue undrained.
#[tokio::test]
async fn a_worker_whose_delete_fails_retryably_goes_on_and_what_it_left_comes_back_as_a_repeat() {
    use synctrail::model::Status;
    use synctrail_cli::runtime::RunOptions;
    let options = RunOptions {
        workers: 1,
        poll_interval: std::time::Duration::from_millis(5),
        max_duration: std::time::Duration::from_secs(20),
        ..RunOptions::default()
    };
    let (h, queue, ended) = run_with_a_failing_delete(true, options).await;
    let stats = ended.expect("a retryable delete error does not end the run");
    let not_deleted = queue.hooks.not_deleted.load(std::sync::atomic::Ordering::SeqCst);
    assert!(not_deleted >= 1, "a delete failed");
    assert!(stats.drained, "the worker went on and drained the queue: {stats:?}");
    assert_eq!(stats.redelivered, not_deleted, "each message left came back once, a repeat: {stats:?}");
    let counts = h.ports().store.count_by_status().await.expect("counts");
    assert_eq!(counts.get(&Status::Completed), Some(&3), "{counts:?}");
    let depth = h.ports().queue.depth().await.expect("depth");
    assert_eq!((depth.visible, depth.in_flight, depth.dead_letters), (0, 0, 0), "{depth:?}");
}

/// A worker error that no retry will help (here a delete the queue refuses) ends the run at once with that error —
/// a following run too, which would otherwise poll forever while nothing takes what arrives.
#[tokio::test]
async fn a_worker_error_that_is_not_retryable_ends_even_a_following_run_with_that_error() {
    use synctrail_cli::runtime::RunOptions;
    let options = RunOptions {
        workers: 2,
        follow: true,
        poll_interval: std::time::Duration::from_millis(5),
        max_duration: std::time::Duration::MAX,
        ..RunOptions::default()
    };
    let (_h, queue, ended) = run_with_a_failing_delete(false, options).await;
    let error = ended.expect_err("the run ends with the worker's error");
    assert!(matches!(error, StoreError::Backend(_)), "{error:?}");
    assert!(error.to_string().contains("the queue refuses deletes (drill)"), "{error}");
    assert!(queue.hooks.not_deleted.load(std::sync::atomic::Ordering::SeqCst) >= 1);
}

/// A run that ends on an error (here the queue's depth refused) stops its workers as a run that ends normally does:
/// their waiting receives are ended and handed back before it returns, none left running.
#[tokio::test]
async fn a_run_ended_by_an_error_stops_its_workers_and_ends_their_waiting_receives_first() {
    use std::sync::atomic::Ordering;
    let (_h, queue, runtime, options) = over_long_polls(true, true);
    let run = tokio::time::timeout(RUN_LIMIT, runtime.run(&options, &|_| {}));
    let error = run.await.expect("the run did not return within 30 s").expect_err("the depth's error");
    assert!(error.to_string().contains("the queue's depth is refused (drill)"), "{error}");
    assert!(queue.hooks.waits.load(Ordering::SeqCst) >= 1, "the workers were waiting in receives when the run ended");
    assert_eq!(queue.hooks.waiting.load(Ordering::SeqCst), 0, "each had ended when the run returned");
}

/// Counts the dead letters the sweeps' passes receive: one pass, one letter, when the dead-letter queue holds one.
struct CountsLetters {
    received: std::sync::atomic::AtomicU64,
}

#[async_trait::async_trait]
impl QueueHooks for CountsLetters {
    async fn receive_dead_letters(
        &self,
        inner: &dyn synctrail::store::Queue,
        max: usize,
        visibility: chrono::Duration,
    ) -> Result<Vec<QueueMessage>, StoreError> {
        let letters = inner.receive_dead_letters(max, visibility).await?;
        self.received.fetch_add(letters.len() as u64, std::sync::atomic::Ordering::SeqCst);
        Ok(letters)
    }
}

/// How many polls the sweep-counting runs last (each is stopped by its progress callback, not by time).
const IDLE_POLLS: u64 = 30;

/// Runs a following run over an empty queue whose dead-letter queue holds one letter (a failed event's, which
/// stays), stopped after [`IDLE_POLLS`] polls; returns how many sweeps passed over the letter.
async fn sweeps_over_idle_polls(sweep_interval: std::time::Duration) -> u64 {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use synctrail_cli::runtime::{LocalRuntime, RunOptions};
    let h = crate::support::Harness::new();
    assert_eq!(send_issues(&h, 1..=1).await, 1);
    let received = h.ports().queue.receive(1, chrono::Duration::seconds(60)).await.expect("receive");
    let letter = received.first().expect("the message");
    h.ports().queue.dead_letter(&letter.receipt_handle, &letter.body, None).await.expect("dead-letter it");
    let queue = std::sync::Arc::new(HookedQueue {
        inner: h.ports().queue.clone(),
        hooks: CountsLetters { received: 0.into() },
    });
    let ports = synctrail::engine::Ports { queue: queue.clone(), ..h.ports().clone() };
    let runtime = LocalRuntime::new(ports, h.options.settings.clone());
    let stop: &'static AtomicBool = Box::leak(Box::new(AtomicBool::new(false)));
    let options = RunOptions {
        workers: 1,
        follow: true,
        sweep_interval,
        poll_interval: std::time::Duration::from_millis(2),
        max_duration: std::time::Duration::from_secs(60),
        stop_requested: Some(stop),
        ..RunOptions::default()
    };
    let polls = AtomicU64::new(0);
    let progress = |_: &synctrail_cli::runtime::RunStats| {
        if polls.fetch_add(1, Ordering::SeqCst) + 1 >= IDLE_POLLS {
            stop.store(true, Ordering::SeqCst);
        }
    };
    let run = tokio::time::timeout(RUN_LIMIT, runtime.run(&options, &progress));
    let stats = run.await.expect("the run did not stop within 30 s").expect("the run");
    assert!(stats.drained && stats.interrupted, "drained, then stopped after its polls: {stats:?}");
    assert!(polls.load(Ordering::SeqCst) >= IDLE_POLLS);
    let depth = h.ports().queue.depth().await.expect("depth");
    assert_eq!(depth.dead_letters, 1, "the failed event's letter stays: {depth:?}");
    queue.hooks.received.load(Ordering::SeqCst)
}

/// `synctrail run --follow`, once its queue drained, sweeps on its own interval ([`FOLLOW_SWEEP_INTERVAL`]) rather
/// than at every poll: each sweep hides and releases the dead letters it passes over — writes while nothing happens,
/// waking other processes' receives and keeping those letters from an operator's `synctrail dead-letters` pass.
///
/// [`FOLLOW_SWEEP_INTERVAL`]: synctrail_cli::runtime::FOLLOW_SWEEP_INTERVAL
#[tokio::test]
async fn a_following_run_once_drained_sweeps_on_its_own_interval_not_at_every_poll() {
    let hourly = sweeps_over_idle_polls(std::time::Duration::from_secs(3600)).await;
    assert_eq!(hourly, 1, "the sweep that found the queue drained, and none in the {IDLE_POLLS} polls after it");
    let every_poll = sweeps_over_idle_polls(std::time::Duration::ZERO).await;
    assert!(every_poll > 1 && every_poll <= IDLE_POLLS, "an interval of zero sweeps at every idle poll: {every_poll}");
    assert_eq!(synctrail_cli::runtime::FOLLOW_SWEEP_INTERVAL, std::time::Duration::from_secs(10));
}

/// Each round sends one newer event per entity after the last round is done: every one completes (an older event
/// sent after a newer one would end `dropped`), and each round is measured on its own.
#[tokio::test]
async fn the_growth_bench_runs_rounds_of_one_newer_event_per_entity_and_measures_each_round() {
    let home = temp_home();
    let args = ["--json", "bench", "growth", "--entities", "6", "--rounds", "3", "--workers", "2"];
    let (code, text) = synctrail(home.path(), &args).await;
    assert_eq!(code, 0, "{text}");
    let report: Value = serde_json::from_str(&text).expect("one JSON document");
    let rounds = report["rounds"].as_array().expect("rounds");
    assert_eq!(rounds.len(), 3, "{report}");
    for (i, round) in (0u64..).zip(rounds) {
        assert_eq!(round["round"].as_u64(), Some(i + 1));
        assert_eq!((round["history_per_entity"].as_u64(), round["records_before"].as_u64()), (Some(i), Some(6 * i)));
        assert_eq!(round["events"].as_u64(), Some(6));
        assert_eq!(round["statuses"], json!({"completed": 6}), "every event of the round is newer: {round}");
        let embedded = &round["embedded"];
        assert!(embedded["events_per_second"].as_f64() > Some(0.0), "{round}");
        assert!(embedded["cpu_per_event_us"].as_f64() > Some(0.0), "{round}");
        assert!(embedded["wal_peak_bytes"].as_u64() > Some(0), "{round}");
        assert_eq!(embedded["baseline"]["events"].as_u64(), Some(6), "the loop writes the round's rows: {round}");
        assert!(round["aws"].is_null());
    }
    let size = |r: &Value| r["embedded"]["store_bytes_after"].as_u64().unwrap_or(0);
    assert!(size(&rounds[0]) > 0 && size(&rounds[2]) >= size(&rounds[0]), "{report}");
    let baseline = rusqlite::Connection::open(home.path().join("bench-growth-baseline").join("synctrail.db"))
        .expect("the loop's own database");
    let count = |table: &str| -> i64 {
        baseline.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |row| row.get(0)).expect("count")
    };
    assert_eq!((count("events"), count("heads")), (18, 6), "every round's rows, on top of the earlier rounds'");
}

#[tokio::test]
async fn a_cost_scenario_asked_of_the_embedded_bench_is_refused_naming_the_backend_it_needs() {
    let home = temp_home();
    let cli = Cli::try_parse_from([
        "synctrail",
        "--home",
        home.path().to_str().expect("UTF-8"),
        "bench",
        "--scenario",
        "hot-entity",
    ])
    .expect("valid arguments");
    let error = synctrail_cli::commands::dispatch(&cli, &mut Vec::new()).await.expect_err("refused");
    assert!(error.to_string().contains("add --backend aws"), "{error}");
}

#[tokio::test]
async fn the_embedded_bench_measures_bytes_the_wal_and_its_baseline_loop_in_the_same_run() {
    let home = temp_home();
    let (code, text) = synctrail(home.path(), &["--json", "bench", "--events", "60", "--entities", "6"]).await;
    assert_eq!(code, 0);
    let report: Value = serde_json::from_str(&text).expect("one JSON document");
    assert_eq!(report["events"].as_u64(), Some(60));
    let baseline = &report["baseline"];
    assert_eq!(baseline["events"].as_u64(), Some(60), "the loop writes the rows of the same events");
    assert_eq!(baseline["commit_every"].as_u64(), Some(10));
    assert!(baseline["wal_peak_bytes"].as_u64() > Some(0), "{baseline}");
    assert!(report["wal_peak_bytes"].as_u64() > Some(0), "the run's WAL was watched: {report}");
    let (rate, base) = (report["events_per_second"].as_f64(), baseline["events_per_second"].as_f64());
    let ratio = report["ratio_to_baseline"].as_f64().expect("a ratio");
    let expected = rate.expect("a rate") / base.expect("a baseline rate");
    assert!((ratio - expected).abs() <= 1e-9 * expected.abs(), "{ratio} is the quotient of the two measured rates");
    let baseline_db = home.path().join("bench-baseline").join("synctrail.db");
    assert!(baseline_db.exists(), "the loop wrote a database of its own on the same disk");
}

#[tokio::test]
async fn dead_letters_limit_0_looks_at_them_all_and_a_listing_cut_by_its_limit_says_more_may_remain() {
    let home = temp_home();
    let file = home.path().join("envelopes.ndjson");
    let lines: Vec<String> = (1..=3).map(|n| issue(n).to_string()).collect();
    std::fs::write(&file, lines.join("\n")).expect("write the envelopes");
    assert_eq!(synctrail(home.path(), &["send", file.to_str().expect("UTF-8 path")]).await.0, 0);
    // Their messages dead-lettered before any was processed, as after too many receives.
    let embedded = synctrail::store::sqlite::Embedded::open(
        home.path(),
        std::sync::Arc::new(synctrail::SystemClock),
        synctrail::store::sqlite::EmbeddedOptions::default(),
    )
    .expect("the home");
    let received = embedded.queue.receive(10, chrono::Duration::seconds(30)).await.expect("receive");
    assert_eq!(received.len(), 3);
    for message in &received {
        embedded.queue.dead_letter(&message.receipt_handle, &message.body, None).await.expect("dead-letter");
    }
    drop(embedded);

    let (code, text) = synctrail(home.path(), &["dead-letters", "--limit", "0", "--json"]).await;
    assert_eq!(code, 0);
    let report: Value = serde_json::from_str(&text).expect("one JSON document");
    assert_eq!(report["letters"].as_array().map(Vec::len), Some(3), "--limit 0: all of them; {report}");
    assert_eq!(report["more_may_remain"], false, "{report}");
    let (_, text) = synctrail(home.path(), &["dead-letters", "--limit", "0"]).await;
    assert!(!text.contains("empty") && text.contains("3 dead letter(s) to move back"), "{text}");

    let (_, text) = synctrail(home.path(), &["dead-letters", "--limit", "2", "--json"]).await;
    let report: Value = serde_json::from_str(&text).expect("one JSON document");
    assert_eq!(report["letters"].as_array().map(Vec::len), Some(2));
    assert_eq!(report["more_may_remain"], true, "it stopped at its limit: {report}");
    let (_, text) = synctrail(home.path(), &["dead-letters", "--limit", "2"]).await;
    assert!(text.contains("showing the first 2; more may remain; --limit 0 for all"), "{text}");
    let (_, text) = synctrail(home.path(), &["dead-letters", "--limit", "4"]).await;
    assert!(!text.contains("more may remain"), "fewer than the limit: all were seen\n{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_counts_as_stalled_only_the_leases_a_sweep_would_act_on_not_a_failures_retry_its_record_holds() {
    use crate::support::{Env, Harness, Options, Step};
    use synctrail::model::Status;
    // Backoffs of 20–40 s against a claim's lease of the invocation's 10 s: the failed event's head keeps its
    // claim's lease, which ends first, while its record holds the entity past its retry's due time (spec §9 "A
    // failure writes the record alone"); the sweeper passes such a head over.
    let settings = synctrail::Settings { backoff_base: chrono::Duration::seconds(40), ..crate::support::settings() };
    let h = Harness::with(Options { settings, ..Options::default() });
    // The command reads the system clock: the harness's claims are made 40 s before it, so both heads' leases
    // (10.5 s) ended, and only the crashed claim's hold.
    h.advance(chrono::Utc::now() - crate::support::t0() - chrono::Duration::seconds(40));
    let failing = Env::issue("stalled-1").at(10).titled("v1");
    let crashed = Env::issue("stalled-2").at(10).titled("v1");
    h.script.on(&failing.entity(), Step::Retryable("502 bad gateway"));
    h.script.on(&crashed.entity(), Step::Crash { write: false });
    h.send_env(&failing).await;
    assert_eq!(h.deliver(1).await.only().status, Some(Status::Errored));
    h.send_env(&crashed).await;
    assert!(h.deliver(1).await.crashed());

    let (code, text) = synctrail(h.home.path(), &["stats", "--json"]).await;
    assert_eq!(code, 0);
    let report: Value = serde_json::from_str(&text).expect("one JSON document");
    assert_eq!(report["inflight"], 2, "{report}");
    assert_eq!(report["stalled_leases"], 1, "the crashed claim only: {report}");
    let (_, text) = synctrail(h.home.path(), &["stats", "--watch", "--watch-count", "1", "--json"]).await;
    let watched: Value = serde_json::from_str(text.trim()).expect("one JSON line");
    assert_eq!(watched["stalled_leases"], 1, "{watched}");
}

#[tokio::test]
async fn stats_on_aws_reads_at_most_its_sample_in_all_and_says_so_when_one_status_alone_fills_it() {
    use synctrail_cli::commands::stats::{sampled_figures, status_counts};
    // The sample size is AWS_SAMPLE on AWS; the same reading over the embedded store, with a budget of a few.
    let home = temp_home();
    send_and_run(home.path(), &(1..=5).map(issue).collect::<Vec<_>>()).await;
    let embedded = synctrail::store::sqlite::Embedded::open(
        home.path(),
        std::sync::Arc::new(synctrail::SystemClock),
        synctrail::store::sqlite::EmbeddedOptions::default(),
    )
    .expect("the home");
    let store = embedded.store.as_ref();
    let counts = status_counts(store).await.expect("counts");

    let sampled = sampled_figures(store, &counts, 3).await.expect("figures");
    assert_eq!(sampled.sampled, 3, "{sampled:?}");
    let note = sampled.sample_note.unwrap_or_default();
    assert!(note.starts_with("from 3 of 5 events: the newest of each status"), "one status filled it: {note}");
    assert!(note.ends_with("(at most 3 are read on AWS)"), "{note}");

    let all = sampled_figures(store, &counts, 10).await.expect("figures");
    assert_eq!(all.sampled, 5);
    assert_eq!(all.sample_note.as_deref(), Some("from all 5 events (at most 10 are read on AWS)"));
    // A budget of exactly the events: each status's share is its count, and every event is read.
    let exact = sampled_figures(store, &counts, 5).await.expect("figures");
    assert_eq!(exact.sample_note.as_deref(), Some("from all 5 events (at most 5 are read on AWS)"));
}
