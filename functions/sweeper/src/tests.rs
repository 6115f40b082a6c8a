//! The sweep over a real embedded backend in a temporary home, on a manual clock, with an event left holding its
//! entity by a failed destination write.

use super::{handle, sweep};
use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use std::sync::Arc;
use synctrail::destination::{ApplyOutcome, Change, Destination, DestinationError};
use synctrail::model::{EventId, Status};
use synctrail::{Clock, Disposition, Engine, Incoming, Invocation, ManualClock, Settings};
use synctrail_lambda::InvocationContext;

const EVENT_ID: &str = "gh-delivery-72d3162e";

/// A destination that is down.
struct Down;

#[async_trait::async_trait]
impl Destination for Down {
    async fn apply(&self, _: &Change<'_>) -> Result<ApplyOutcome, DestinationError> {
        Err(DestinationError::retryable("destination is down"))
    }
}

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-05-01T12:00:00Z").expect("a time").with_timezone(&Utc)
}

/// A fresh embedded backend (removed with the returned directory) whose destination is down, on a manual clock.
async fn engine() -> (tempfile::TempDir, Arc<ManualClock>, Engine) {
    let home = tempfile::tempdir().expect("temporary home");
    let clock = Arc::new(ManualClock::new(t0()));
    let config = synctrail::config::Config::embedded(home.path());
    let ports = synctrail::compose::compose(&config, clock.clone(), None).await.expect("open the backend").ports;
    let ports = synctrail::Ports { destination: Arc::new(Down), ..ports };
    (home, clock, Engine::new(ports, Settings::default()))
}

/// Processes one envelope whose write fails: the event stays `errored`, holding its entity until its retry is due.
async fn leave_an_errored_holder(engine: &Engine) -> EventId {
    errored_holder_of(engine, EVENT_ID, "1347").await
}

/// Like [`leave_an_errored_holder`], for event `event_id` of issue `external_id`.
async fn errored_holder_of(engine: &Engine, event_id: &str, external_id: &str) -> EventId {
    let body = json!({
        "source": "github", "entity_type": "issue", "external_id": external_id,
        "updated_at": "2026-05-01T12:00:00Z", "event_id": event_id, "kind": "upsert", "payload": {"title": "x"},
    });
    let message =
        Incoming { message_id: event_id.into(), body: body.to_string(), receive_count: 1, trace_header: None };
    let outcome = engine.process(&message, &Invocation::default()).await.expect("process");
    assert!(matches!(outcome.disposition, Disposition::Retry { .. }), "{outcome:?}");
    assert_eq!(outcome.status, Some(Status::Errored));
    EventId::parse(event_id).expect("an id")
}

fn context(now: DateTime<Utc>) -> InvocationContext {
    InvocationContext {
        request_id: "req-sweep-1".into(),
        deadline: now + Duration::minutes(1),
        function: Some("synctrail-sweeper:3".into()),
        trace_id: Some("Root=1-6a01d2c0-0123456789abcdef01234567".into()),
    }
}

#[tokio::test]
async fn a_live_lease_is_left_alone() {
    let (_home, clock, engine) = engine().await;
    leave_an_errored_holder(&engine).await;

    let report = sweep(&engine, &context(clock.now()), 100).await.expect("sweep");

    assert_eq!(report.examined, 0);
    assert!(report.redriven.is_empty());
}

#[tokio::test]
async fn an_expired_lease_is_redriven_in_the_invocations_name() {
    let (_home, clock, engine) = engine().await;
    let event_id = leave_an_errored_holder(&engine).await;
    let settings = engine.settings();
    clock.advance(settings.backoff_max + settings.lease + settings.clock_margin + Duration::seconds(1));
    let context = context(clock.now());

    let report = sweep(&engine, &context, 100).await.expect("sweep");

    assert_eq!(report.examined, 1);
    assert_eq!(report.redriven, vec![event_id.clone()]);
    let messages = engine.ports().queue.receive(10, Duration::seconds(30)).await.expect("receive");
    assert_eq!(messages.len(), 1, "one re-drive message");
    assert!(messages[0].body.contains(EVENT_ID), "{}", messages[0].body);
    assert_eq!(messages[0].trace_header, context.trace_id);
    let json = serde_json::to_value(&report).expect("a serializable report");
    assert_eq!(json["redriven"], json!([EVENT_ID]));
}

#[tokio::test]
async fn the_limit_bounds_the_heads_examined_oldest_lease_first() {
    let (_home, clock, engine) = engine().await;
    let first = errored_holder_of(&engine, "e-first", "1").await;
    clock.advance(Duration::minutes(10)); // past the first's retry delay, however jittered
    errored_holder_of(&engine, "e-second", "2").await;
    clock.advance(Duration::hours(1));

    let report = sweep(&engine, &context(clock.now()), 1).await.expect("sweep");

    assert_eq!((report.examined, report.redriven), (1, vec![first]));
}

#[tokio::test]
async fn a_scheduled_event_of_any_shape_triggers_a_sweep() {
    let shapes = [
        json!({
            "version": "0", "id": "e-1", "detail-type": "Scheduled Event", "source": "aws.events",
            "account": "123456789012", "time": "2026-05-01T13:00:00Z", "region": "us-east-1",
            "resources": ["arn:aws:events:us-east-1:123456789012:rule/synctrail-sweeper"], "detail": {},
        }),
        json!({}),
        json!(null),
        json!({"unrelated": ["object", 1, true]}),
        json!("a string"),
    ];
    for trigger in shapes {
        // A fresh backend each time, with an expired lease to re-drive.
        let (_home, clock, engine) = engine().await;
        let event_id = leave_an_errored_holder(&engine).await;
        clock.advance(Duration::hours(1));
        let event = lambda_runtime::LambdaEvent::new(trigger.clone(), lambda_runtime::Context::default());

        let report = handle(&engine, event, 100, "synctrail").await.expect("sweep");

        assert_eq!((report.examined, report.redriven), (1, vec![event_id]), "triggered by {trigger}");
    }
}

#[test]
fn a_failed_sweep_reports_a_stable_error_type() {
    use synctrail::store::StoreError;
    let error = super::SweepError(synctrail::EngineError::Store(StoreError::Unavailable("table unreachable".into())));
    let diagnostic = lambda_runtime::Diagnostic::from(error);
    assert_eq!(diagnostic.error_type, "StoreUnavailable");
    assert!(diagnostic.error_message.contains("table unreachable"), "{}", diagnostic.error_message);
}
