//! The demo's end-to-end workload on the AWS backend: DynamoDB, S3 and SQS on the moto server of
//! `scripts/with-moto.sh`, driven by the CLI's `LocalRuntime` (it plays Lambda's SQS event source and calls the
//! processor's handler), checked with the demo's convergence checker.
//!
//! Each test creates its own resources (`setup::create_all`, random prefix) on the shared server. DynamoDB
//! requests go through the CLI's `DynamoGate` (`--serialize-dynamodb`): moto does not isolate concurrent
//! transactions. SQS visibility has one-second granularity, so timeouts are whole seconds and short.
//!
//! Run: `scripts/with-moto.sh cargo test -p synctrail-tests --test main -- aws_pipeline --nocapture`.

use chrono::Duration;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;
use synctrail::compose::{AwsParts, Composed, ComposedBackend};
use synctrail::destination::drill::DrillPlan;
use synctrail::model::Status;
use synctrail::store::aws::sdk::dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use synctrail::store::aws::setup::{create_all, SetupConfig};
use synctrail::store::aws::DynamoGate;
use synctrail::store::aws::{AwsBackend, Clients, DynamoMirror};
use synctrail::store::EventQuery;
use synctrail::Settings;
use synctrail::SystemClock;
use synctrail_cli::backend::AnyBackend;
use synctrail_cli::check::{check, Convergence};
use synctrail_cli::commands::send::send_lines;
use synctrail_cli::requests::{figures, since, write_figures, Counts, RequestFigures};
use synctrail_cli::runtime::{LocalRuntime, RunOptions, RunStats};
use synctrail_cli::workload::{generate, Workload, WorkloadConfig};

/// The variable naming the test endpoint.
const ENDPOINT_VAR: &str = "SYNCTRAIL_TEST_AWS_ENDPOINT";

/// Receives before SQS dead-letters a message (the demo's figure: a busy entity's returns cost receives too).
const MAX_RECEIVES: u32 = 10;

/// The endpoint of the test AWS API server; fails the test (never skips it) when there is none.
fn endpoint() -> String {
    match std::env::var(ENDPOINT_VAR) {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "{ENDPOINT_VAR} is not set: the AWS pipeline tests need a moto server. Run them through `make test` or \
             `scripts/with-moto.sh cargo test -p synctrail-tests --test main -- aws_pipeline`"
        ),
    }
}

/// The table [`backend`] keeps the mirror in: `<prefix>-mirror` beside `<prefix>-events`.
pub(crate) fn mirror_table(config: &synctrail::store::aws::AwsConfig) -> String {
    format!("{}-mirror", config.table.strip_suffix("-events").unwrap_or(&config.table))
}

/// Fresh resources named `stp-<name>-<random>-…` and the backend on them, DynamoDB serialized. The mirror (the
/// destination) gets a table of its own, `<prefix>-mirror`: moto copies a whole table for every transaction
/// item, so two smaller tables make the run markedly faster (about 45 s instead of 70 here).
pub(crate) async fn backend(name: &str) -> AnyBackend {
    let endpoint = endpoint();
    let suffix: [u8; 4] = rand::random();
    let prefix = format!("stp-{name}-{}", suffix.iter().map(|b| format!("{b:02x}")).collect::<String>());
    let clients = Clients::connect(Some(&endpoint), Some("us-east-1")).await;
    let setup = SetupConfig { max_receive_count: MAX_RECEIVES, ..SetupConfig::named(&prefix) };
    let created = create_all(&clients, &setup).await.expect("create the AWS resources");
    let mut config = created.config(Some(endpoint), Some("us-east-1".into()));
    let mirror_table = mirror_table(&config);
    create_mirror_table(&clients, &mirror_table).await;
    config.serialize_dynamodb = true;
    let gate = DynamoGate::default();
    let framework = Clients::for_config(&config, Some(&gate), None).await;
    let destination = Clients::for_config(&config, Some(&gate), None).await;
    let aws = AwsBackend::with_clients(&framework, &config).await.expect("connect to the AWS resources");
    let mirror = Arc::new(DynamoMirror::new(&destination, &mirror_table, Arc::new(SystemClock), Default::default()));
    let ports = synctrail::engine::Ports {
        store: aws.store.clone(),
        payloads: aws.payloads.clone(),
        queue: aws.queue.clone(),
        destination: mirror.clone(),
        clock: Arc::new(SystemClock),
    };
    let parts = AwsParts { config, backend: aws, destination_requests: destination.requests.clone() };
    Composed { ports, mirror: Some(mirror), backend: ComposedBackend::Aws(parts) }
}

/// A table for the mirror alone: key `pk` + `sk`, no indexes (mirror items carry no index attributes).
async fn create_mirror_table(clients: &Clients, table: &str) {
    let attribute =
        |name: &str| AttributeDefinition::builder().attribute_name(name).attribute_type(ScalarAttributeType::S).build();
    let key = |name: &str, kind| KeySchemaElement::builder().attribute_name(name).key_type(kind).build();
    clients
        .dynamodb
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attribute("pk").expect("attribute pk"))
        .attribute_definitions(attribute("sk").expect("attribute sk"))
        .key_schema(key("pk", KeyType::Hash).expect("key pk"))
        .key_schema(key("sk", KeyType::Range).expect("key sk"))
        .send()
        .await
        .expect("create the mirror table");
}

/// The demo's settings with a short lease (longer than the function timeout): a crashed claim blocks its entity
/// for seconds, not half a minute.
fn settings() -> Settings {
    let mut settings = synctrail_cli::config::base_settings();
    settings.lease = Duration::seconds(6);
    settings
}

/// The runtime's options for these tests: two workers, quiescence after a second (moto's counts are exact),
/// depth polled twice a second.
fn options(function_timeout: i64, visibility_timeout: i64) -> RunOptions {
    RunOptions {
        workers: 2,
        function_timeout: Duration::seconds(function_timeout),
        visibility_timeout: Duration::seconds(visibility_timeout),
        poll_interval: std::time::Duration::from_millis(500),
        quiet_for: std::time::Duration::from_secs(1),
        max_duration: std::time::Duration::from_secs(150),
        ..RunOptions::default()
    }
}

/// Sends the workload's lines and makes its local edits (before anything is processed, as in the demo).
async fn prepare(backend: &AnyBackend, workload: &Workload) {
    send_lines(backend.ports.queue.as_ref(), workload.lines(), |_| {}).await.expect("send the workload");
    for edit in &workload.local_edits {
        backend
            .mirror
            .as_ref()
            .expect("the mirror")
            .record_local_edit(&edit.entity, edit.state.clone(), edit.modified_at)
            .await
            .expect("local edit");
    }
}

/// Runs the pipeline until the queue is quiescent; returns what the run did and the requests it made (the
/// framework's, the destination's).
async fn run(backend: &AnyBackend, options: &RunOptions) -> (RunStats, Counts, Counts) {
    let aws = backend.aws().expect("the AWS backend");
    let before = (aws.backend.requests.snapshot(), aws.destination_requests.snapshot());
    let runtime = LocalRuntime::new(backend.ports.clone(), settings());
    let stats = runtime.run(options, &|_| {}).await.expect("run the pipeline");
    let framework = since(&before.0, &aws.backend.requests.snapshot());
    let destination = since(&before.1, &aws.destination_requests.snapshot());
    (stats, framework, destination)
}

fn assert_converged(name: &str, c: &Convergence) {
    println!(
        "{name}: {}/{} entities match, {}/{} events recorded ({} terminal), {}/{} rejections, {} effects, {} events \
         with several",
        c.entities_matching,
        c.entities,
        c.events_recorded,
        c.events_sent,
        c.events_terminal,
        c.rejections_ok,
        c.rejections_expected,
        c.effects,
        c.events_with_several_effects
    );
    assert!(c.passed(), "{name} did not converge:\n  {}", c.failures.join("\n  "));
    assert_eq!(c.entities_matching, c.entities);
    assert_eq!((c.events_recorded, c.events_terminal), (c.events_sent, c.events_sent));
    assert_eq!(c.rejections_ok, c.rejections_expected);
    assert_eq!(c.events_with_several_effects, 0);
}

fn print_figures(name: &str, f: &RequestFigures) {
    let mut text = Vec::new();
    write_figures(&mut text, f).expect("format the figures");
    println!("{name}:\n{}", String::from_utf8_lossy(&text));
}

fn print_run(name: &str, stats: &RunStats, seconds: f64) {
    let statuses: BTreeMap<String, u64> = stats.statuses.iter().map(|(s, n)| (s.to_string(), *n)).collect();
    println!(
        "{name}: drained {} in {seconds:.1} s; {} invocations, {} records, {} returned for retry, {} crashes, \
         {} redelivered, {} swept, {} dead-lettered; statuses after records {statuses:?}",
        stats.drained,
        stats.invocations,
        stats.records,
        stats.retried,
        stats.crashes,
        stats.redelivered,
        stats.swept,
        stats.dead_lettered
    );
}

/// The versions of every entity head summed: each write of a head that landed added one.
async fn head_versions(backend: &AnyBackend) -> u64 {
    let (mut sum, mut after) = (0, None);
    for _ in 0..1_000 {
        let page = backend.ports.store.list_heads(after.as_deref(), 100).await.expect("list the heads");
        sum += page.heads.iter().map(|h| h.version).sum::<u64>();
        match page.next {
            Some(next) => after = Some(next),
            None => return sum,
        }
    }
    panic!("more than 1,000 pages of heads");
}

/// In-order snapshots and deltas, no faults: what the framework's own tracking costs per event on AWS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_pipeline_happy_path_converges_within_its_request_budget() {
    let started = Instant::now();
    let backend = backend("happy").await;
    let workload = generate(&WorkloadConfig::happy_path(60, 30, 7));
    prepare(&backend, &workload).await;
    // A generous timeout: no batch runs out of time on moto, so no record is returned unstarted.
    let run_started = Instant::now();
    let (stats, framework, destination) = run(&backend, &options(10, 12)).await;
    print_run("happy path", &stats, run_started.elapsed().as_secs_f64());
    assert!(stats.drained, "the queue did not drain");
    assert_eq!(stats.crashes, 0);

    let events = workload.summary.events as u64;
    let f = figures("happy path, during the run", &framework, &destination, Some(events));
    print_figures("happy path requests", &f);
    let per = f.per_event.clone().expect("per-event figures");
    // Four writes an event (the claim's head and record, the settle's record and head), and two more for each event
    // that met its entity busy in the other worker and was queued behind it (its record, then the head's slot).
    // Every write that lands adds one to its item's version; the rest of the write requests were refused by their
    // condition: races between the two workers, which the protocol loses and decides again (how many depends on
    // timing, and grows when the machine is busy).
    let records = backend.ports.store.list_events(&EventQuery::default()).await.expect("list the events");
    let queued = records.iter().filter(|r| r.history.iter().any(|h| h.status == Status::Queued)).count();
    let landed = records.iter().map(|r| r.version).sum::<u64>() + head_versions(&backend).await;
    let requested = (per.dynamodb_writes * events as f64).round() as u64;
    let refused = requested.saturating_sub(landed);
    println!("happy path: {landed} writes landed, {refused} refused by their condition (lost races)");
    let budget = 4.0 + 2.0 * queued as f64 / events as f64;
    assert!(
        landed as f64 / events as f64 <= budget,
        "{:.2} DynamoDB writes landed per event (at most {budget:.2}: {queued} of {events} events queued)",
        landed as f64 / events as f64
    );
    assert!(refused <= events, "{refused} writes refused for {events} events: more than one lost race per event");
    assert!(per.s3_puts <= 1.0, "{:.2} S3 PUTs per event (at most 1)", per.s3_puts);
    assert!(per.destination_writes <= 1.0, "{:.2} mirror writes per event (at most 1)", per.destination_writes);

    let convergence = check(&backend, &workload).await.expect("run the convergence check");
    assert_converged("happy path", &convergence);
    println!("happy path: {:.1} s in all", started.elapsed().as_secs_f64());
}

/// The demo's messy workload — reordering, duplicates, client resubmissions, idempotency conflicts, ties,
/// malformed and oversized lines, local edits — with the destination down at first, random retryable failures
/// and crashed invocations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_pipeline_messy_workload_with_faults_converges() {
    let started = Instant::now();
    let backend = backend("messy").await;
    // The demo's rates, with more of the rare cases so that 150 events hold several of each.
    let config = WorkloadConfig {
        malformed_rate: 0.02,
        tie_rate: 0.15,
        delete_rate: 0.15,
        ..WorkloadConfig::realistic(150, 30, 42)
    };
    let workload = generate(&config);
    let s = &workload.summary;
    println!(
        "messy workload: {} events over {} entities, {} lines: {} duplicates, {} resubmissions, {} conflicts, \
         {} malformed, {} ties, {} creates, {} deletes, {} local edits",
        s.events,
        s.entities,
        s.lines,
        s.duplicates,
        s.resubmissions,
        s.conflicts,
        s.malformed,
        s.ties,
        s.creates,
        s.deletes,
        s.local_edits
    );
    assert!(s.duplicates > 0 && s.ties > 0 && s.malformed > 0 && s.conflicts > 0 && s.local_edits > 0, "{s:?}");
    prepare(&backend, &workload).await;
    // Batches of 5 within 5 s; a crashed batch is back after 6 s, when its claim's lease has about run out.
    let options = RunOptions {
        batch_size: 5,
        drill: DrillPlan {
            fail_rate: 0.03,
            permanent_rate: 0.0,
            down_until: Some(chrono::Utc::now() + Duration::seconds(2)),
        },
        crash_rate: 0.15,
        seed: 42,
        ..options(5, 6)
    };
    let run_started = Instant::now();
    let (stats, framework, destination) = run(&backend, &options).await;
    print_run("messy workload", &stats, run_started.elapsed().as_secs_f64());
    assert!(stats.drained, "the queue did not drain");
    assert!(stats.retried > 0 && stats.crashes > 0, "the injected faults caused no retry or no crash");

    let f = figures("messy workload, during the run", &framework, &destination, Some(s.events as u64));
    print_figures("messy workload requests", &f);

    let convergence = check(&backend, &workload).await.expect("run the convergence check");
    assert_converged("messy workload", &convergence);
    let depth = backend.ports.queue.depth().await.expect("queue depth");
    println!("messy workload: {} dead letters", depth.dead_letters);
    assert_eq!((depth.visible, depth.in_flight, depth.delayed), (0, 0, 0), "{depth:?}");
    println!("messy workload: {:.1} s in all", started.elapsed().as_secs_f64());
}

/// SQS goes on with a long poll whose client went away, so a run that stops while its workers wait could leave
/// receives behind that take a message sent right after it and hide it for the whole visibility timeout. The
/// workers hand back what such a receive takes: the next consumer gets the message within a second or so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_a_message_sent_right_after_a_run_stops_is_not_hidden_by_the_runs_last_receives() {
    let backend = backend("stop").await;
    let options = RunOptions { workers: 4, ..options(30, 60) };
    let (stats, _, _) = run(&backend, &options).await;
    assert!(stats.drained && stats.invocations == 0, "{stats:?}");
    let queue = backend.ports.queue.clone();
    queue.send(vec![synctrail::store::OutgoingMessage::new("sent after the run")]).await.expect("send");
    let started = Instant::now();
    let received = loop {
        let received = queue.receive(10, Duration::seconds(60)).await.expect("receive");
        if !received.is_empty() || started.elapsed() > std::time::Duration::from_secs(8) {
            break received;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let bodies: Vec<&str> = received.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, ["sent after the run"], "hidden for {:?} and counting", started.elapsed());
}

/// Each benchmark makes fresh resources of its own: none needs `--table` or the other resource flags.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_every_benchmark_makes_its_own_resources_and_needs_no_resource_flags() {
    use crate::aws_meter::aws_bench;
    let webhooks = aws_bench(&["webhooks", "--webhooks", "4", "--serialize-dynamodb"]).await;
    assert_eq!(webhooks["webhooks"], 4, "{webhooks}");
    assert_eq!(webhooks["sends_per_webhook"].as_f64(), Some(1.0), "{webhooks}");

    let verify = aws_bench(&["verify", "--entities", "3", "--serialize-dynamodb"]).await;
    assert_eq!((verify["backend"].as_str(), verify["entities"].as_u64()), (Some("aws"), Some(3)), "{verify}");
    let totals = &verify["totals"];
    assert_eq!((totals["examined"].as_u64(), totals["equal"].as_u64()), (Some(3), Some(3)), "{verify}");

    let destination = aws_bench(&["destination", "--applies", "4", "--entities", "2", "--serialize-dynamodb"]).await;
    assert_eq!((destination["destination"].as_str(), destination["applies"].as_u64()), (Some("mirror"), Some(4)));
    assert_eq!(destination["outcomes"].as_object().map(|o| o.values().filter_map(|n| n.as_u64()).sum()), Some(4));
}
