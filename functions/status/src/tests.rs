//! The handler over a real embedded backend in a temporary home, with events recorded by the engine.

use super::respond;
use aws_lambda_events::event::lambda_function_urls::{LambdaFunctionUrlRequest, LambdaFunctionUrlResponse};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use synctrail::model::{EntityHead, EntityKey, EventId, EventRecord, Status, StatusReport};
use synctrail::store::{EventQuery, EventStore, StoreError, Write};
use synctrail::{Engine, Incoming, Invocation, Settings, SystemClock};

const EVENT_ID: &str = "gh-delivery-72d3162e";

/// A fresh embedded backend (removed with the returned directory) and the engine over it.
async fn engine() -> (tempfile::TempDir, Engine) {
    let home = tempfile::tempdir().expect("temporary home");
    let config = synctrail::config::Config::embedded(home.path());
    let ports =
        synctrail::compose::compose(&config, Arc::new(SystemClock), None).await.expect("open the backend").ports;
    (home, Engine::new(ports, Settings::default()))
}

/// Processes one envelope message carrying `EVENT_ID`; the mirror applies it.
async fn record_completed_event(engine: &Engine) {
    let body = json!({
        "source": "github", "entity_type": "issue", "external_id": "1347",
        "updated_at": "2026-05-01T12:00:00Z", "event_id": EVENT_ID, "kind": "upsert",
        "payload": {"title": "Found a bug", "state": "open"},
    });
    let message = Incoming { message_id: "m-1".into(), body: body.to_string(), receive_count: 1, trace_header: None };
    let outcome = engine.process(&message, &Invocation::default()).await.expect("process");
    assert_eq!(outcome.status, Some(Status::Completed));
}

/// A Function URL request (payload format 2.0) as Lambda delivers it.
fn request(method: &str, path: &str) -> LambdaFunctionUrlRequest {
    serde_json::from_value(json!({
        "version": "2.0",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"host": "abc.lambda-url.eu-west-1.on.aws", "accept": "application/json"},
        "requestContext": {
            "accountId": "123456789012", "apiId": "abc", "domainName": "abc.lambda-url.eu-west-1.on.aws",
            "domainPrefix": "abc", "requestId": "req-1", "time": "01/May/2026:12:00:00 +0000",
            "timeEpoch": 1_777_636_800_000_i64,
            "http": {
                "method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "192.0.2.1", "userAgent": "curl/8",
            },
        },
        "isBase64Encoded": false,
    }))
    .expect("a Function URL request")
}

fn header<'a>(response: &'a LambdaFunctionUrlResponse, name: &str) -> Option<&'a str> {
    response.headers.get(name).and_then(|v| v.to_str().ok())
}

fn body(response: &LambdaFunctionUrlResponse) -> Value {
    assert_eq!(header(response, "content-type"), Some("application/json"));
    serde_json::from_str(response.body.as_deref().expect("a body")).expect("a JSON body")
}

#[tokio::test]
async fn a_known_completed_event_answers_200_with_its_status_report() {
    let (_home, engine) = engine().await;
    record_completed_event(&engine).await;
    let store = engine.ports().store.as_ref();

    let response = respond(store, &request("GET", &format!("/events/{EVENT_ID}"))).await;

    assert_eq!(response.status_code, 200);
    let body = body(&response);
    assert_eq!(body["event_id"], EVENT_ID);
    assert_eq!(body["status"], "completed");
    assert_eq!(body["terminal"], true);
    assert_eq!(body["attempt"], 1);
    assert!(body["completed_at"].is_string(), "{body}");
    let stored = store.get_event(&EventId::parse(EVENT_ID).expect("id")).await.expect("get").expect("recorded");
    let report: StatusReport = serde_json::from_value(body).expect("a status report");
    assert_eq!(report, StatusReport::from(&stored));
}

#[tokio::test]
async fn an_unknown_event_answers_404_naming_the_id() {
    let (_home, engine) = engine().await;
    record_completed_event(&engine).await;

    let response = respond(engine.ports().store.as_ref(), &request("GET", "/events/never-sent")).await;

    assert_eq!(response.status_code, 404);
    let body = body(&response);
    assert_eq!(body["event_id"], "never-sent");
    assert!(body["error"].as_str().is_some_and(|e| e.contains("never-sent")), "{body}");
}

#[tokio::test]
async fn an_invalid_id_answers_400_with_the_reason() {
    let (_home, engine) = engine().await;

    let response = respond(engine.ports().store.as_ref(), &request("GET", "/events/bad%20id!")).await;

    assert_eq!(response.status_code, 400);
    let error = body(&response)["error"].as_str().expect("an error").to_owned();
    assert!(error.contains("\"bad id!\""), "{error}");
    assert!(error.contains("A-Z a-z 0-9"), "{error}");
}

#[tokio::test]
async fn a_post_answers_405_allowing_only_get() {
    let (_home, engine) = engine().await;
    record_completed_event(&engine).await;

    let response = respond(engine.ports().store.as_ref(), &request("POST", &format!("/events/{EVENT_ID}"))).await;

    assert_eq!(response.status_code, 405);
    assert_eq!(header(&response, "allow"), Some("GET"));
    assert!(body(&response)["error"].as_str().is_some_and(|e| e.contains("POST")));
}

#[tokio::test]
async fn other_paths_answer_404() {
    let (_home, engine) = engine().await;

    for path in ["/", "/events", &format!("/events/{EVENT_ID}/history")] {
        let response = respond(engine.ports().store.as_ref(), &request("GET", path)).await;
        assert_eq!(response.status_code, 404, "{path}");
        assert!(body(&response)["error"].is_string(), "{path}");
    }
}

/// A store that fails every call.
struct Failing {
    retryable: bool,
}

impl Failing {
    fn error(&self) -> StoreError {
        if self.retryable {
            StoreError::Throttled("slow down".into())
        } else {
            StoreError::Corrupt("undecodable item".into())
        }
    }
}

#[async_trait::async_trait]
impl EventStore for Failing {
    async fn get_event(&self, _: &EventId) -> Result<Option<EventRecord>, StoreError> {
        Err(self.error())
    }
    async fn get_head(&self, _: &EntityKey) -> Result<Option<EntityHead>, StoreError> {
        Err(self.error())
    }
    async fn commit(&self, _: Vec<Write>) -> Result<(), StoreError> {
        Err(self.error())
    }
    async fn list_events(&self, _: &EventQuery) -> Result<Vec<EventRecord>, StoreError> {
        Err(self.error())
    }
    async fn count_by_status(&self) -> Result<BTreeMap<Status, u64>, StoreError> {
        Err(self.error())
    }
    async fn expired_leases(&self, _: DateTime<Utc>, _: usize) -> Result<Vec<EntityHead>, StoreError> {
        Err(self.error())
    }
    async fn count_inflight(&self) -> Result<u64, StoreError> {
        Err(self.error())
    }
}

#[tokio::test]
async fn a_retryable_store_error_answers_503_with_a_retry_hint() {
    let response = respond(&Failing { retryable: true }, &request("GET", "/events/e-1")).await;

    assert_eq!(response.status_code, 503);
    assert_eq!(header(&response, "retry-after"), Some("1"));
    let body = body(&response);
    assert_eq!((body["retryable"].as_bool(), body["code"].as_str()), (Some(true), Some("StoreThrottled")));
    let said = body["error"].as_str().unwrap_or_default();
    assert!(
        said.contains("StoreThrottled") && !said.contains("slow down"),
        "the store's own text stays in the log: {body}"
    );
}

#[tokio::test]
async fn a_permanent_store_error_answers_500_without_a_retry_hint() {
    let response = respond(&Failing { retryable: false }, &request("GET", "/events/e-1")).await;

    assert_eq!(response.status_code, 500);
    assert_eq!(header(&response, "retry-after"), None);
    assert_eq!(body(&response)["retryable"], false);
}
