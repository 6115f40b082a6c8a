//! The example of a team's own destination (`examples/sqlite-destination`): the whole pipeline in front of it,
//! through the same processor the Lambda runs and through the CLI that `run_with_destination` gives.

use crate::support::{at, temp_home, Env, Harness, Options, Step};
use clap::Parser;
use serde_json::json;
use std::sync::Arc;
use synctrail::model::Status;
use synctrail_cli::args::Cli;
use synctrail_cli::commands::{run_command, Context};
use synctrail_example_sqlite_destination::SqliteDestination;

fn harness_over(store: &Arc<SqliteDestination>) -> Harness {
    Harness::with(Options { scripted_over: Some(store.clone()), ..Options::default() })
}

#[tokio::test]
async fn the_pipeline_in_front_of_a_teams_store_applies_the_newest_state_once() {
    let dir = temp_home();
    let store = Arc::new(SqliteDestination::open(&dir.path().join("records.db")).expect("open the store"));
    let h = harness_over(&store);
    let newer = Env::issue("1").at(20).titled("newer");
    let older = Env::issue("1").at(10).titled("older");
    let again = Env::issue("1").at(20).titled("newer").id("client-resend");
    let crashed = Env::issue("2").at(10).titled("written, then the invocation died");
    h.script.on(&crashed.entity(), Step::Crash { write: true });

    h.apply_in_turn(&[&newer, &older, &again]).await;
    h.send_env(&crashed).await;
    h.deliver(1).await;
    h.advance(h.options.visibility_timeout);
    h.drain().await;

    assert_eq!(h.status_of(&newer).await, Status::Completed);
    assert_eq!(h.status_of(&older).await, Status::Dropped);
    assert_eq!(h.status_of(&again).await, Status::Duplicate);
    assert_eq!(h.status_of(&crashed).await, Status::Completed);
    let seen = h.script.seen();
    let retry = seen.iter().rfind(|c| c.event_id == crashed.event_id()).expect("the retry");
    assert!(retry.previous_attempt_unknown, "the retry after the crash is told to look first");
    let rows = store.rows().expect("rows");
    let states: Vec<_> = rows.iter().map(|r| (r.entity_key.as_str(), r.state.clone())).collect();
    assert_eq!(
        states,
        [
            ("default/github/issue/octo-org/widgets#1", Some(json!({"title": "newer"}))),
            ("default/github/issue/octo-org/widgets#2", Some(json!({"title": "written, then the invocation died"}))),
        ]
    );
    assert_eq!(store.applied_count().expect("count"), 2, "one write per applied event, the crashed one included");
}

#[tokio::test]
async fn the_cli_runs_over_a_teams_destination() {
    let dir = temp_home();
    let store = Arc::new(SqliteDestination::open(&dir.path().join("records.db")).expect("open the store"));
    let envelopes = dir.path().join("in.ndjson");
    let body = json!({"source": "erp", "entity_type": "order", "external_id": "SO-1", "updated_at": at(5),
                      "event_id": "erp-1", "payload": {"total": 12}});
    std::fs::write(&envelopes, body.to_string()).expect("write");
    let home = dir.path().join("home");
    let run = |args: &[&str]| {
        let mut all = vec!["synctrail", "--home", home.to_str().expect("UTF-8")];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).expect("valid arguments")
    };
    for cli in
        [run(&["send", envelopes.to_str().expect("UTF-8")]), run(&["run", "--workers", "1"]), run(&["status", "erp-1"])]
    {
        let ctx = Context { destination: Some(store.clone()), ..Context::of(&cli) };
        let code = run_command(&ctx, &cli.command, &mut Vec::new()).await.expect("the command runs");
        assert_eq!(code, 0, "{:?}", cli.command);
    }
    assert_eq!(store.rows().expect("rows")[0].state, Some(json!({"total": 12})));
    let records = run(&["records"]);
    let ctx = Context { destination: Some(store.clone()), ..Context::of(&records) };
    let refused = run_command(&ctx, &records.command, &mut Vec::new()).await.expect_err("no mirror to read");
    assert!(refused.to_string().contains("reference mirror"), "{refused}");
}
