//! Monitoring (issue 5) on the embedded backend: the processor's CloudWatch EMF lines over a messy workload checked
//! against the store, `synctrail stats` (one-shot and `--watch`) showing the same figures, and the X-Ray trace
//! header on every message the pipeline sends.

use crate::support::{deliver_racing, Delivery, Env, Harness, Step};
use chrono::Duration;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use synctrail::destination::{ApplyOutcome, Change, Destination, DestinationError};
use synctrail::model::{EntityKey, Message, RedriveReason, Status};
use synctrail::store::EventQuery;
use synctrail_cli::args::{AwsArgs, BackendKind, Cli, Command, StatsArgs};
use synctrail_cli::commands::stats::EventFigures;

const SOURCES: [&str; 4] = ["github", "shopify", "erp", "unknown"];

/// Three phases of messages of three sources: stale, tied, duplicate, redelivered, out-of-order, retried,
/// canceled, failed and malformed events among plain ones. Returns every delivery.
async fn messy_run(h: &Harness) -> Vec<Delivery> {
    let retried = Env::product("11").at(10).titled("retried");
    let superseded = Env::product("12").at(10).titled("superseded");
    h.script.on(&retried.entity(), Step::Retryable("destination busy"));
    h.script.on(&superseded.entity(), Step::Retryable("destination busy"));
    let refused = Env::product("13").at(10).titled("refused");
    h.script.on(&refused.entity(), Step::Permanent("no such shop"));
    let newest = Env::issue("1").at(20).titled("v2");

    let mut deliveries = Vec::new();
    for env in [
        &newest,
        &Env::issue("2").at(30).titled("a"),
        &Env::product("10").at(5).titled("x").id("p-a"),
        &Env::adjustment("sku-1").at(20).delta(1),
        &retried,
        &superseded,
        &refused,
    ] {
        h.send_env(env).await;
    }
    h.send("not json").await;
    h.send(r#"{"source":"github"}"#).await;
    deliveries.extend(h.drain().await);

    for env in [
        &Env::issue("1").at(10).titled("v1"),
        &Env::issue("2").at(30).titled("b"),
        &Env::product("10").at(5).titled("x").id("p-b"),
        &newest,
        &Env::adjustment("sku-1").at(10).delta(2),
        &Env::product("12").at(20).titled("newer"),
    ] {
        h.send_env(env).await;
    }
    deliveries.extend(h.drain().await);

    h.advance(Duration::hours(1));
    deliveries.extend(h.drain().await);
    deliveries
}

/// Every EMF line of the deliveries, parsed, each checked against the EMF specification.
fn emf_lines(deliveries: &[Delivery]) -> Vec<Value> {
    let lines: Vec<Value> = deliveries
        .iter()
        .flat_map(|d| d.batch().metrics.iter())
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("an EMF line is not JSON ({e}): {line}")))
        .collect();
    lines.iter().for_each(assert_emf_shape);
    lines
}

/// `_aws.Timestamp`, one `CloudWatchMetrics` directive with a namespace, the `[function, source]` dimension set
/// and named metrics with units, and a top-level member for every metric (a number or 1 to 100 numbers) and
/// every dimension (a string).
fn assert_emf_shape(line: &Value) {
    let directive = &line["_aws"];
    assert!(directive["Timestamp"].as_i64().is_some_and(|t| t > 0), "Timestamp: {line}");
    let directives = directive["CloudWatchMetrics"].as_array().expect("CloudWatchMetrics is an array");
    assert_eq!(directives.len(), 1, "{line}");
    let d = &directives[0];
    assert!(d["Namespace"].as_str().is_some_and(|n| !n.is_empty()), "Namespace: {line}");
    assert_eq!(d["Dimensions"], json!([["function", "source"], ["function"]]), "{line}");
    assert_eq!(line["function"], json!("synctrail-processor"), "the version is not a dimension: {line}");
    assert!(SOURCES.contains(&line["source"].as_str().unwrap_or("")), "source: {line}");
    let metrics = d["Metrics"].as_array().expect("Metrics is an array");
    assert!(!metrics.is_empty(), "{line}");
    for metric in metrics {
        let name = metric["Name"].as_str().unwrap_or_else(|| panic!("a metric without a Name: {line}"));
        assert!(matches!(metric["Unit"].as_str(), Some("Count" | "Milliseconds")), "{metric}");
        let member = &line[name];
        let values = member.as_array().cloned().unwrap_or_else(|| vec![member.clone()]);
        assert!((1..=100).contains(&values.len()), "{name}: {member}");
        assert!(values.iter().all(|v| v.as_f64().is_some_and(|v| v >= 0.0)), "{name}: {member}");
    }
}

/// Each count metric summed over every line.
fn sums(lines: &[Value]) -> BTreeMap<String, u64> {
    let mut sums = BTreeMap::new();
    for line in lines {
        for (name, value) in line.as_object().into_iter().flatten() {
            if let Some(n) = value.as_u64() {
                *sums.entry(name.clone()).or_default() += n;
            }
        }
    }
    sums
}

/// How many values a series metric has over every line.
fn values(lines: &[Value], name: &str) -> usize {
    lines.iter().filter_map(|l| l[name].as_array()).map(Vec::len).sum()
}

#[tokio::test]
async fn emf_counts_over_a_messy_run_add_up_to_what_the_store_recorded() {
    let h = Harness::new();
    let deliveries = messy_run(&h).await;
    let lines = emf_lines(&deliveries);
    let sums = sums(&lines);
    let counts = h.counts().await;
    let records = h.ports().store.list_events(&EventQuery::default()).await.expect("list_events");

    // The workload is as messy as intended, and every event ended.
    for status in [Status::Completed, Status::Dropped, Status::Duplicate, Status::Canceled, Status::Failed] {
        assert!(counts.get(&status).is_some_and(|n| *n > 0), "no {status} event: {counts:?}");
    }
    assert_eq!(counts.get(&Status::Rejected), Some(&2));
    assert!(counts.keys().all(|s| s.is_terminal()), "{counts:?}");

    // Summed per status, the metrics are the store's statuses.
    for status in Status::ALL.into_iter().filter(|s| s.is_terminal()) {
        let stored = counts.get(&status).copied().unwrap_or(0);
        assert_eq!(sums.get(status.as_str()).copied().unwrap_or(0), stored, "{status}: {sums:?}");
    }
    let handled: usize = deliveries.iter().map(|d| d.messages.len()).sum();
    assert_eq!(sums["records"], handled as u64);

    // Retries are the records returned to the queue; each errored attempt was either claimed again (an attempt
    // beyond the first) or superseded while it waited (canceled).
    let returned: usize = deliveries.iter().map(|d| d.failures().len()).sum();
    assert_eq!(sums["retries"], returned as u64);
    let attempts_beyond_first: u64 = records.iter().map(|r| u64::from(r.attempt.saturating_sub(1))).sum();
    let canceled_while_errored = records
        .iter()
        .filter(|r| r.status == Status::Canceled && r.history.iter().any(|e| e.status == Status::Errored))
        .count() as u64;
    assert_eq!(sums["errored"], attempts_beyond_first + canceled_while_errored);
    assert_eq!((attempts_beyond_first, canceled_while_errored), (1, 1));

    // Ties, out-of-order events and redeliveries as recorded.
    let completed = |flag: fn(&synctrail::model::EventRecord) -> bool| {
        records.iter().filter(|r| r.status == Status::Completed && flag(r)).count() as u64
    };
    assert_eq!(sums["ties"], completed(|r| r.tie));
    assert_eq!(sums["out_of_order"], completed(|r| r.out_of_order));
    assert_eq!((sums["ties"], sums["out_of_order"]), (1, 1));
    assert_eq!(sums["redelivered"], records.iter().map(|r| u64::from(r.redelivered)).sum::<u64>());
    assert_eq!(sums["engine_errors"], 0);

    // One latency per completed event; one handler duration per record.
    let done = counts[&Status::Completed] as usize;
    assert_eq!(values(&lines, "latency_since_received_at"), done);
    assert_eq!(values(&lines, "latency_since_updated_at"), done);
    assert_eq!(values(&lines, "handler_duration"), handled);

    // A batch mixing sources has one line per source.
    let first = &deliveries[0].batch().metrics;
    let sources: Vec<String> =
        first.iter().map(|l| serde_json::from_str::<Value>(l).expect("JSON")["source"].to_string()).collect();
    assert_eq!(sources, [r#""erp""#, r#""github""#, r#""shopify""#, r#""unknown""#]);
}

/// `synctrail stats`, with `--watch SECS --watch-count N` when `watch` is given.
fn stats(watch: Option<(f64, u64)>) -> Command {
    let (watch, watch_count) = watch.map_or((None, None), |(every, count)| (Some(every), Some(count)));
    Command::Stats(StatsArgs { watch, watch_count })
}

/// Runs a `synctrail` command on `h`'s home; returns what it printed.
async fn synctrail(h: &Harness, command: Command, json: bool) -> String {
    let cli = Cli {
        backend: BackendKind::Embedded,
        home: h.home.path().to_owned(),
        aws: AwsArgs::default(),
        destination: Default::default(),
        json,
        command,
    };
    let mut out = Vec::new();
    synctrail_cli::commands::dispatch(&cli, &mut out).await.expect("the command runs");
    String::from_utf8(out).expect("UTF-8 output")
}

#[tokio::test]
async fn stats_shows_the_figures_the_metrics_carry() {
    let h = Harness::new();
    let sums = sums(&emf_lines(&messy_run(&h).await));
    let report: Value = serde_json::from_str(&synctrail(&h, stats(None), true).await).expect("JSON");
    let events = EventFigures::of(&h.ports().store.list_events(&EventQuery::default()).await.expect("list_events"));
    assert_eq!(report["events"]["sample_note"], Value::Null, "the embedded backend reads every event");
    for (name, value) in [
        ("ties", events.ties),
        ("out_of_order", events.out_of_order),
        ("redelivered", events.redelivered),
        ("rejected", events.rejected),
        ("retries", events.retries),
    ] {
        assert_eq!(report["events"][name], json!(value), "{name}: {report}");
    }
    assert_eq!(report["events"]["ties"], json!(sums["ties"]));
    assert_eq!(report["events"]["out_of_order"], json!(sums["out_of_order"]));
    assert_eq!(report["events"]["rejected"], json!(sums["rejected"]));
    assert_eq!(report["events"]["redelivered"], json!(sums["redelivered"]));
    assert_eq!(report["events"]["latency_since_received_at"]["count"], json!(sums["completed"]));
    assert_eq!(report["events"]["latency_since_updated_at"]["count"], json!(sums["completed"]));

    let text = synctrail(&h, stats(None), false).await;
    for expected in ["stalled leases", "ties (completed)", "retries (attempts beyond the first)", "since updated_at"] {
        assert!(text.contains(expected), "{expected:?} missing from:\n{text}");
    }
}

#[tokio::test]
async fn stats_watch_prints_one_json_line_per_refresh_and_stops_at_the_count() {
    let h = Harness::new();
    let retrying = Env::product("30").at(10).titled("v1");
    h.script.on(&retrying.entity(), Step::Retryable("destination busy"));
    h.send_env(&retrying).await;
    h.send_env(&Env::issue("30").at(10).titled("t")).await;
    h.drain().await;
    let stalled_now = h.ports().store.expired_leases(chrono::Utc::now(), 0).await.expect("expired leases").len();

    let out = synctrail(&h, stats(Some((0.0, 2))), true).await;
    let refreshes: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).expect("one JSON object a line")).collect();
    assert_eq!(refreshes.len(), 2, "{out}");
    for report in &refreshes {
        assert_eq!(report["statuses"]["completed"], json!(1));
        assert_eq!(report["statuses"]["errored"], json!(1));
        assert_eq!(report["inflight"], json!(1), "the errored event holds its entity");
        assert_eq!(report["stalled_leases"], json!(stalled_now), "leases expired by the command's clock");
        let queued = report["queue"]["visible"].as_u64().zip(report["queue"]["delayed"].as_u64()).map(|(v, d)| v + d);
        assert_eq!(queued, Some(1), "the retry's message is still queued: {report}");
        assert!(report.get("events").is_none(), "a watch reads no event records");
    }

    let text = synctrail(&h, stats(Some((0.0, 2))), false).await;
    assert_eq!(text.matches("Ctrl-C to stop").count(), 2, "{text}");
    assert!(!text.contains('\x1b'), "no redraw codes when the output is not a terminal");
}

// ---- X-Ray: the trace header on every message the pipeline sends ----

#[tokio::test]
async fn a_promotion_message_carries_the_trace_header_of_the_invocation_that_completed_the_previous_event() {
    let h = Harness::new();
    let first = Env::product("40").at(10).titled("v1");
    let second = Env::product("40").at(20).titled("v2");
    let gate = h.script.hold_next();
    let (completing, ()) = deliver_racing(&h, &first, async {
        gate.entered().await;
        h.send_env(&second).await;
        assert_eq!(h.deliver(1).await.only().status, Some(Status::Queued));
        gate.release();
    })
    .await;
    assert_eq!(completing.only().status, Some(Status::Completed));
    let completed = h.record_of(&first).await;
    let entry = completed.history.last().expect("a history");
    assert_eq!(entry.trace_id.as_deref(), Some(completing.trace_id.as_str()), "the attempt's trace is recorded");

    let messages = h.receive(10).await;
    assert_eq!(messages.len(), 1);
    assert!(matches!(
        Message::parse(&messages[0].body, usize::MAX),
        Ok(Message::Redrive { reason: RedriveReason::Promotion, ref event_id, .. }) if *event_id == second.event_id()
    ));
    assert_eq!(messages[0].trace_header.as_deref(), Some(completing.trace_id.as_str()));
    let promoted = h.invoke(&messages).await;
    assert_eq!(promoted.only().status, Some(Status::Completed));
}

fn product_key(id: &str) -> EntityKey {
    EntityKey::new("default", "shopify", "product", id).expect("valid key")
}

/// A handler that needs product P9 before any inventory level, and asks for it with a `create` envelope.
struct NeedsProduct {
    inner: Arc<dyn Destination>,
    created: AtomicBool,
}

#[async_trait::async_trait]
impl Destination for NeedsProduct {
    async fn apply(&self, change: &Change<'_>) -> Result<ApplyOutcome, DestinationError> {
        if change.entity.entity_type == "inventory_level" && !self.created.load(Ordering::SeqCst) {
            let request = Env::product("P9").at(1).kind("create").titled("P9").body();
            return Ok(ApplyOutcome::MissingDependency { key: product_key("P9"), request: Some(request) });
        }
        let outcome = self.inner.apply(change).await;
        if *change.entity == product_key("P9") && outcome.is_ok() {
            self.created.store(true, Ordering::SeqCst);
        }
        outcome
    }
}

#[tokio::test]
async fn a_dependency_request_and_the_resumption_of_its_waiter_carry_the_trace_header_of_their_invocations() {
    let h = Harness::with(crate::support::Options {
        destination: Some(Box::new(|inner: Arc<dyn Destination>| -> Arc<dyn Destination> {
            Arc::new(NeedsProduct { inner, created: AtomicBool::new(false) })
        })),
        ..crate::support::Options::default()
    });
    let level = Env::new("shopify", "inventory_level", "L9").at(10).payload(json!({ "available": 3 }));
    h.send_env(&level).await;
    let waiting = h.deliver(1).await;
    assert_eq!(waiting.only().status, Some(Status::Waiting));

    let request = h.receive(10).await;
    assert_eq!(request.len(), 1, "the handler's request for the product");
    assert_eq!(request[0].trace_header.as_deref(), Some(waiting.trace_id.as_str()));
    let creating = h.invoke(&request).await;
    assert_eq!(creating.only().status, Some(Status::Completed));

    let resume = h.receive(10).await;
    assert_eq!(resume.len(), 1, "the waiter's re-drive");
    assert_eq!(resume[0].trace_header.as_deref(), Some(creating.trace_id.as_str()));
    assert_eq!(h.invoke(&resume).await.only().status, Some(Status::Completed));
    assert_eq!(h.status_of(&level).await, Status::Completed);
}
