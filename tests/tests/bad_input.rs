//! Bad input never blocks good input: every malformed message ends `rejected` with a reason naming the field,
//! its raw body archived byte for byte, and the valid records of the same batch complete. And the handler's
//! partial batch response (aws-pitfalls.md) never names an empty item, never comes back empty when everything
//! must be retried, and survives a panicking destination.

use crate::support::*;
use async_trait::async_trait;
use aws_lambda_events::event::sqs::SqsEvent;
use chrono::Duration;
use serde_json::json;
use std::collections::BTreeSet;
use std::sync::Arc;
use synctrail::destination::{ApplyOutcome, Change, Destination, DestinationError};
use synctrail::engine::Disposition;
use synctrail::model::{ErrorKind, EventId, Status};
use synctrail_processor::RecordResult;

/// A valid envelope of a distinct entity per `n`.
fn valid(n: u32) -> Env {
    Env::issue(&format!("9{n:03}")).at(i64::from(n)).titled(&format!("valid {n}"))
}

/// Checks that `body` was rejected: its reason names `field` (or contains `needle` when no field applies), the raw
/// body is archived, and its history is `received → rejected`.
async fn assert_rejected(h: &Harness, body: &str, field: Option<&str>, needle: &str) {
    let id = EventId::for_rejected(body.as_bytes());
    let record = h.try_record(&id).await.unwrap_or_else(|| panic!("no rejected record for {body:.120}"));
    assert_eq!(record.status, Status::Rejected, "{body:.120}");
    let error = record.error.clone().expect("a rejected record carries its reason");
    assert_eq!((error.kind, error.retryable), (ErrorKind::InvalidInput, false), "{body:.120}");
    assert_eq!(error.field.as_deref(), field, "{body:.120}: {}", error.message);
    if let Some(field) = field {
        assert!(error.message.contains(&format!("`{field}`")), "the reason names `{field}`: {}", error.message);
    }
    assert!(error.message.contains(needle), "the reason says {needle:?}: {}", error.message);
    assert_eq!(h.archived(&record).await, body.as_bytes(), "the raw body is archived byte for byte");
    assert_eq!(record.payload.size, body.len() as u64);
    assert_eq!(timeline(&record), [Status::Received, Status::Rejected]);
    assert_eq!(record.attempt, 0, "never claimed an entity");
}

/// Sends `valid(0)`, the bad bodies, then `valid(1)`, delivers them in one batch and checks the valid ones
/// completed and nothing was returned for retry; returns the delivery.
async fn batch_around(h: &Harness, bad: &[String]) -> Delivery {
    let (first, last) = (valid(0), valid(1));
    let effects_before = h.effects().await.len();
    h.send_env(&first).await;
    for body in bad {
        h.send(body.clone()).await;
    }
    h.send_env(&last).await;
    // Lambda's SQS event source batches up to 10,000 messages of a standard queue: one batch holds them all.
    let messages = h.receive(bad.len() + 2).await;
    let d = h.invoke(&messages).await;
    assert_eq!(d.messages.len(), bad.len() + 2);
    assert!(d.failures().is_empty(), "nothing is retried: {:?}", d.failures());
    for (i, message) in d.messages.iter().enumerate() {
        let outcome = d.outcome(i);
        assert_eq!(outcome.disposition, Disposition::Ack, "{}", message.body);
    }
    for env in [&first, &last] {
        assert_eq!(h.status_of(env).await, Status::Completed);
        assert_eq!(h.mirror_state(&env.entity()).await, Some(env.payload_value()));
    }
    let effects = h.effects().await;
    assert_eq!(effects[effects_before..], [first.event_id(), last.event_id()], "only the valid records had an effect");
    let depth = h.depth().await;
    assert_eq!(depth.visible + depth.in_flight + depth.delayed + depth.dead_letters, 0, "every message deleted");
    d
}

#[tokio::test]
async fn a_body_that_is_not_json_is_rejected_and_archived() {
    let h = Harness::new();
    let bodies = ["{\"source\": \"github\", \"payload\": ".to_owned(), "".to_owned(), "null garbage".to_owned()];
    let d = batch_around(&h, &bodies).await;
    for (i, body) in bodies.iter().enumerate() {
        assert_eq!(d.outcome(i + 1).status, Some(Status::Rejected));
        assert_rejected(&h, body, None, "not JSON").await;
    }
    // The same broken message again lands on the same record.
    h.send(bodies[0].clone()).await;
    let again = h.deliver(1).await;
    assert!(again.only().redelivered);
    assert_eq!(h.record(&EventId::for_rejected(bodies[0].as_bytes())).await.redelivered, 1);
    assert_eq!(h.counts().await.get(&Status::Rejected), Some(&3));
}

#[tokio::test]
async fn a_body_that_is_not_an_object_is_rejected() {
    let h = Harness::new();
    let bodies = ["[1, 2, 3]".to_owned(), "\"just a string\"".to_owned(), "42".to_owned(), "null".to_owned()];
    batch_around(&h, &bodies).await;
    for body in &bodies {
        assert_rejected(&h, body, None, "expected a JSON object").await;
    }
}

#[tokio::test]
async fn a_missing_required_field_is_rejected_naming_it() {
    let h = Harness::new();
    let cases: Vec<(String, &str)> = ["source", "entity_type", "external_id", "updated_at", "payload"]
        .into_iter()
        .map(|field| (Env::issue("100").at(1).titled(field).without(field).body(), field))
        .collect();
    let bodies: Vec<String> = cases.iter().map(|(b, _)| b.clone()).collect();
    batch_around(&h, &bodies).await;
    for (body, field) in &cases {
        assert_rejected(&h, body, Some(field), "is missing").await;
    }
}

#[tokio::test]
async fn a_field_of_the_wrong_type_is_rejected_naming_it() {
    let h = Harness::new();
    let base = || Env::issue("101").at(1).titled("typed");
    let cases = [
        (base().set("updated_at", json!(1777636800)).body(), "updated_at", "a number, expected a string"),
        (base().set("source", json!(7)).body(), "source", "expected a string"),
        (base().set("external_id", json!(["a"])).body(), "external_id", "an array, expected a string"),
        (base().set("version", json!("3")).body(), "version", "expected an integer"),
        (base().set("version", json!(1.5)).body(), "version", "an integer"),
        (base().set("event_id", json!(12345)).body(), "event_id", "expected a string"),
        (base().set("kind", json!(true)).body(), "kind", "a boolean, expected a string"),
        (base().set("kind", json!("patch")).body(), "kind", "one of upsert, delete, create"),
        (base().set("direction", json!("sideways")).body(), "direction", "inbound or outbound"),
    ];
    let bodies: Vec<String> = cases.iter().map(|(b, _, _)| b.clone()).collect();
    batch_around(&h, &bodies).await;
    for (body, field, needle) in &cases {
        assert_rejected(&h, body, Some(field), needle).await;
    }
}

#[tokio::test]
async fn a_bad_timestamp_is_rejected_naming_updated_at() {
    let h = Harness::new();
    let bodies: Vec<String> =
        ["yesterday", "2026-05-01", "2026-05-01T12:00:00", "2026-02-30T00:00:00Z", "2026-13-45T25:61:00Z", ""]
            .into_iter()
            .map(|text| Env::issue("102").titled(text).set("updated_at", json!(text)).body())
            .collect();
    batch_around(&h, &bodies).await;
    for body in &bodies {
        assert_rejected(&h, body, Some("updated_at"), "RFC 3339").await;
    }
}

#[tokio::test]
async fn a_payload_over_256_kib_is_rejected_and_its_raw_body_still_archived() {
    let h = Harness::new();
    let limit = h.options.settings.max_payload_bytes;
    assert_eq!(limit, 256 * 1024);
    let big = Env::product("103").at(1).payload(json!({ "description": "x".repeat(limit) })).body();
    let just_fits = Env::product("104").at(1).payload(json!({ "d": "y".repeat(limit - 8) }));
    assert_eq!(synctrail::model::canonical_json(&just_fits.payload_value()).len(), limit, "exactly at the limit");
    let d = batch_around(&h, std::slice::from_ref(&big)).await;
    assert_eq!(d.outcome(1).status, Some(Status::Rejected));
    assert_rejected(&h, &big, Some("payload"), &format!("over the limit of {limit} bytes")).await;

    h.apply_in_turn(&[&just_fits]).await;
    assert_eq!(h.status_of(&just_fits).await, Status::Completed, "a payload of exactly the limit is accepted");
}

#[tokio::test]
async fn an_id_with_forbidden_characters_is_rejected_naming_the_field() {
    let h = Harness::new();
    let base = || Env::product("105").at(1).titled("ids");
    let cases = [
        (base().id("evt 42").body(), "event_id"),
        (base().id("evt/42").body(), "event_id"),
        (base().id("évt-42").body(), "event_id"),
        (base().id("").body(), "event_id"),
        (base().id(&"e".repeat(129)).body(), "event_id"),
        (base().set("source", json!("Shopify")).body(), "source"),
        (base().set("entity_type", json!("product variant")).body(), "entity_type"),
        (base().set("tenant", json!("acme.eu")).body(), "tenant"),
        (base().set("external_id", json!("")).body(), "external_id"),
        (base().set("external_id", json!("x".repeat(257))).body(), "external_id"),
    ];
    let bodies: Vec<String> = cases.iter().map(|(b, _)| b.clone()).collect();
    batch_around(&h, &bodies).await;
    for (body, field) in &cases {
        assert_rejected(&h, body, Some(field), "is invalid").await;
    }
    // The longest allowed id, with every allowed character, is fine.
    let longest = base().id(&format!("Az09._:-{}", "k".repeat(120)));
    h.apply_in_turn(&[&longest]).await;
    assert_eq!(h.status_of(&longest).await, Status::Completed);
}

#[tokio::test]
async fn a_key_named_twice_is_rejected_as_ambiguous_naming_its_path() {
    let h = Harness::new();
    let target = Env::issue("107").at(1).titled("untouched");
    h.apply_in_turn(&[&target]).await;
    let envelope = |external_ids: &str, payload: &str| {
        format!(
            r#"{{"source":"github","entity_type":"issue",{external_ids},"updated_at":"{}","payload":{payload}}}"#,
            at(5)
        )
    };
    let cases = [
        // One parser would change issue 108, another issue 107.
        (
            envelope(
                r#""external_id":"octo-org/widgets#108","external_id":"octo-org/widgets#107""#,
                r#"{"title":"which?"}"#,
            ),
            "external_id",
        ),
        (
            envelope(r#""external_id":"octo-org/widgets#109""#, r#"{"title":"a","state":"open","title":"b"}"#),
            "payload.title",
        ),
        (
            envelope(r#""external_id":"octo-org/widgets#110""#, r#"{"labels":[{"name":"x"},{"name":"y","name":"z"}]}"#),
            "payload.labels[1].name",
        ),
    ];
    let bodies: Vec<String> = cases.iter().map(|(b, _)| b.clone()).collect();
    batch_around(&h, &bodies).await;
    for (body, path) in &cases {
        assert_rejected(&h, body, Some(path), "appears twice").await;
    }
    assert_eq!(h.mirror_state(&target.entity()).await, Some(json!({"title": "untouched"})));
    for id in ["108", "109", "110"] {
        assert_eq!(h.mirror_state(&Env::issue(id).at(1).entity()).await, None, "issue {id} never changed");
    }
}

#[tokio::test]
async fn a_conflicting_resubmission_is_rejected_and_the_batch_around_it_completes() {
    let h = Harness::new();
    let original = Env::product("106").at(1).payload(json!({"price": "1.00"})).id("shopify-evt-106");
    h.apply_in_turn(&[&original]).await;
    let conflicting = Env::product("106").at(1).payload(json!({"price": "2.00"})).id("shopify-evt-106");

    let d = batch_around(&h, &[conflicting.body()]).await;

    let stored_as = conflicting.clone().without("event_id").event_id();
    assert_eq!((d.outcome(1).status, d.outcome(1).event_id.clone()), (Some(Status::Rejected), Some(stored_as.clone())));
    let rejected = h.record(&stored_as).await;
    assert_eq!((rejected.status, rejected.conflicts_with.clone()), (Status::Rejected, Some(original.event_id())));
    let error = rejected.error.clone().expect("error");
    assert_eq!((error.kind, error.field.as_deref()), (ErrorKind::IdempotencyConflict, Some("event_id")));
    assert_eq!(h.archived(&rejected).await, conflicting.body().into_bytes());
    assert_eq!(h.status_of(&original).await, Status::Completed);
    assert_eq!(h.mirror_state(&original.entity()).await, Some(json!({"price": "1.00"})));
}

#[tokio::test]
async fn the_malformed_sample_batch_rejects_each_broken_record_and_completes_the_rest() {
    let h = Harness::new();
    let event = fixture("sqs-malformed.json");
    let bodies = fixture_bodies("sqs-malformed.json");
    let expected: [Option<(Option<&str>, &str)>; 9] = [
        None,
        Some((None, "not JSON")),
        Some((None, "expected a JSON object")),
        Some((Some("source"), "is missing")),
        Some((Some("updated_at"), "a number, expected a string")),
        Some((Some("updated_at"), "RFC 3339")),
        Some((Some("event_id"), "is invalid")),
        Some((Some("external_id"), "appears twice")),
        None,
    ];
    assert_eq!(bodies.len(), expected.len());

    let batch = h.handle(event, &h.next_context()).await.expect("a response");

    assert!(batch.response.batch_item_failures.is_empty(), "{:?}", batch.response);
    for (i, (body, expect)) in bodies.iter().zip(expected).enumerate() {
        let RecordResult::Processed(outcome) = &batch.records[i] else { panic!("record {i}: {:?}", batch.records[i]) };
        assert_eq!(outcome.disposition, Disposition::Ack);
        match expect {
            None => {
                assert_eq!(outcome.status, Some(Status::Completed), "record {i}");
                let id = event_id_of(body).expect("valid");
                assert_eq!(h.effects_of(&id).await, 1);
            }
            Some((field, needle)) => {
                assert_eq!(outcome.status, Some(Status::Rejected), "record {i}");
                assert_rejected(&h, body, field, needle).await;
            }
        }
    }
    assert_eq!(h.effects().await.len(), 2);
}

// ---- The partial batch response ----

fn raw_event(records: serde_json::Value) -> SqsEvent {
    serde_json::from_value(json!({ "Records": records })).expect("an SqsEvent")
}

#[tokio::test]
async fn a_record_to_retry_without_a_message_id_fails_the_whole_invocation() {
    let h = Harness::new();
    let body = valid(2).body();
    let event = raw_event(json!([
        { "messageId": "", "receiptHandle": "rh-1", "body": body, "attributes": {}, "messageAttributes": {} },
        { "receiptHandle": "rh-2", "body": body, "attributes": {}, "messageAttributes": {} },
        { "messageId": "m-3", "receiptHandle": "rh-3", "body": body, "attributes": {}, "messageAttributes": {} },
    ]));
    // The deadline has passed: every record must be retried.
    let mut context = h.next_context();
    context.deadline = h.now();

    let batch = h.handle(event, &context).await.expect("a response");

    assert!(batch.records.iter().all(|r| *r == RecordResult::NotStarted));
    let items: Vec<&str> = batch.response.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect();
    assert_eq!(items, ["m-3"], "an empty item identifier is never sent (it would fail the batch by accident)");
    assert_eq!(batch.unidentified_retries, 2);
    // Lambda would count the two unnamed records as successes and SQS would delete them: fail the invocation.
    let error = batch.lambda_response().expect_err("the whole batch must come back");
    let diagnostic = lambda_runtime::Diagnostic::from(error);
    assert_eq!(diagnostic.error_type, "UnidentifiedRetry");
    assert!(diagnostic.error_message.contains("2 record(s)"), "{}", diagnostic.error_message);
}

#[tokio::test]
async fn a_batch_whose_unnamed_records_all_succeed_is_answered_normally() {
    let h = Harness::new();
    let event = raw_event(json!([
        { "receiptHandle": "rh-1", "body": valid(30).body(), "attributes": {}, "messageAttributes": {} },
    ]));
    let batch = h.handle(event, &h.next_context()).await.expect("a response");
    assert_eq!(batch.unidentified_retries, 0);
    let response = batch.lambda_response().expect("nothing to retry: a normal response");
    assert!(response.batch_item_failures.is_empty());
}

#[tokio::test]
async fn when_every_record_must_be_retried_every_record_is_listed() {
    let h = Harness::new();
    let envs = [valid(3), valid(4), valid(5)];
    let mut sent = BTreeSet::new();
    for env in &envs {
        sent.insert(h.send_env(env).await);
        h.script.next(Step::Retryable("destination down"));
    }

    let d = h.deliver(10).await;

    let listed: BTreeSet<String> = d.failures().into_iter().collect();
    assert_eq!(listed, sent, "a batch where everything failed lists everything, never an empty list");
    for env in &envs {
        assert_eq!(h.status_of(env).await, Status::Errored);
    }
    assert!(h.effects().await.is_empty());

    // The same when the deadline has already passed before the batch starts (nothing is even recorded).
    h.advance(Duration::minutes(10));
    let messages = h.receive(10).await;
    let event = synctrail_processor::sqs_event(&messages);
    let mut context = h.next_context();
    context.deadline = h.now() - Duration::milliseconds(5);
    let batch = h.handle(event, &context).await.expect("a response");
    let listed: BTreeSet<String> =
        batch.response.batch_item_failures.iter().map(|f| f.item_identifier.clone()).collect();
    assert_eq!(listed, sent);
    assert!(batch.records.iter().all(|r| *r == RecordResult::NotStarted));
    // With no time left to make them visible again, they come back after the visibility timeout.
    assert!(h.receive(10).await.is_empty(), "not released past the deadline");
    h.advance(h.options.visibility_timeout);
    assert_eq!(h.receive(10).await.len(), 3);
}

#[tokio::test]
async fn a_record_not_started_because_the_deadline_is_near_is_listed_and_comes_back_at_once() {
    let h = Harness::new();
    let envs = [valid(6), valid(7), valid(8)];
    let mut ids = Vec::new();
    for env in &envs {
        ids.push(h.send_env(env).await);
    }
    // The first write takes the whole function timeout: the others would outlive the invocation.
    h.script.next(Step::Slow(h.options.function_timeout - h.options.safety_margin));

    let d = h.deliver(10).await;

    assert_eq!(d.outcome(0).status, Some(Status::Completed));
    assert_eq!(d.batch().records[1..], [RecordResult::NotStarted, RecordResult::NotStarted]);
    assert_eq!(d.failures(), ids[1..]);
    for env in &envs[1..] {
        assert!(h.try_record(&env.event_id()).await.is_none(), "a record not started leaves no trace");
    }
    // They are made visible again at once (not after the visibility timeout) and complete.
    let again = h.drain().await;
    assert_eq!(again.iter().map(|d| d.messages.len()).sum::<usize>(), 2);
    for env in &envs {
        assert_eq!(h.status_of(env).await, Status::Completed);
    }
    assert_eq!(h.effects().await.len(), 3);
}

/// A destination that panics on one entity and passes the others on.
struct PanicsOn {
    entity: String,
    inner: Arc<dyn Destination>,
}

#[async_trait]
impl Destination for PanicsOn {
    async fn apply(&self, change: &Change<'_>) -> Result<ApplyOutcome, DestinationError> {
        if change.entity.to_string() == self.entity {
            panic!("index out of bounds: the len is 0 but the index is 0");
        }
        self.inner.apply(change).await
    }
}

#[tokio::test]
async fn a_panicking_destination_is_caught_and_the_rest_of_the_batch_completes() {
    let boom = valid(9);
    let entity = boom.entity().to_string();
    let h = Harness::with(Options {
        destination: Some(Box::new(move |inner| Arc::new(PanicsOn { entity, inner }) as Arc<dyn Destination>)),
        ..Options::default()
    });
    let (before, after) = (valid(10), valid(11));
    h.send_env(&before).await;
    let boom_message = h.send_env(&boom).await;
    h.send_env(&after).await;

    let d = h.deliver(10).await;

    assert_eq!(d.failures(), [boom_message], "only the panicking record is retried");
    assert_eq!(d.outcome(0).status, Some(Status::Completed));
    assert_eq!(d.outcome(1).status, Some(Status::Errored));
    assert_eq!(d.outcome(2).status, Some(Status::Completed));
    let record = h.record_of(&boom).await;
    let error = record.error.expect("the panic is recorded");
    assert_eq!((error.kind, error.retryable), (ErrorKind::Panic, true));
    assert!(error.message.contains("index out of bounds"), "{}", error.message);
    assert_eq!(h.effects().await, [before.event_id(), after.event_id()]);
    // The panic left no lock behind: the next attempt claims again.
    h.advance(d.retry_after(1));
    assert_eq!(h.deliver(1).await.only().status, Some(Status::Errored));
    assert_eq!(h.record_of(&boom).await.attempt, 2);
}
