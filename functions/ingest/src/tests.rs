//! The Lambda front end over a real embedded backend in a temporary home: hand-built Function URL events (plain and
//! base64 bodies), what is queued or recorded, the responses and the metric line.

use crate::function_url::{respond, response};
use crate::{metrics, Handled, Ingest};
use aws_lambda_events::event::lambda_function_urls::LambdaFunctionUrlRequest;
use base64::Engine as _;
use serde_json::{json, Value};
use std::sync::Arc;
use synctrail::ingress::{Ingress, IngressConfig, Provider, Secret, SignatureScheme};
use synctrail::model::{EventId, Status};
use synctrail::{Clock, Engine, ManualClock, Settings, SystemClock};
use synctrail_lambda::InvocationContext;

const SECRET: &[u8] = b"function-url-test-secret";
const ISSUE_OPENED: &[u8] = include_bytes!("../../../events/webhooks/github/issues/opened.json");
const PRODUCT_DELETED: &[u8] = include_bytes!("../../../events/webhooks/shopify/products/delete.json");

/// A handler for `github` over a fresh embedded backend (removed with the returned directory).
async fn ingest() -> (tempfile::TempDir, Ingest) {
    ingest_on(Arc::new(SystemClock)).await
}

/// A handler for `github` and `shopify` over a fresh embedded backend composed with `clock`.
async fn ingest_on(clock: Arc<dyn Clock>) -> (tempfile::TempDir, Ingest) {
    let home = tempfile::tempdir().expect("temporary home");
    let config = synctrail::config::Config::embedded(home.path());
    let ports = synctrail::compose::compose(&config, clock, None).await.expect("open the backend").ports;
    let secret = || Secret::new(SECRET).expect("a secret");
    let sources = IngressConfig::default().with_source("github", secret(), Provider::GitHub).with_source(
        "shopify",
        secret(),
        Provider::Shopify,
    );
    (home, Ingest::new(Ingress::new(sources), Arc::new(Engine::new(ports, Settings::default()))))
}

fn signature(body: &[u8]) -> String {
    SignatureScheme::github().sign(&Secret::new(SECRET).expect("a secret"), body)
}

/// A Function URL request (payload format 2.0) as Lambda delivers it; `base64` sends the body encoded.
fn request(method: &str, path: &str, headers: Value, body: &[u8], base64: bool) -> LambdaFunctionUrlRequest {
    let text = if base64 {
        base64::engine::general_purpose::STANDARD.encode(body)
    } else {
        String::from_utf8(body.to_vec()).expect("a text body")
    };
    serde_json::from_value(json!({
        "version": "2.0",
        "rawPath": path,
        "rawQueryString": "",
        "headers": headers,
        "requestContext": {
            "accountId": "anonymous", "apiId": "abc", "domainName": "abc.lambda-url.eu-west-1.on.aws",
            "domainPrefix": "abc", "requestId": "req-1", "time": "01/May/2026:12:00:00 +0000",
            "timeEpoch": 1_777_636_800_000_i64,
            "http": {
                "method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "192.0.2.1",
                "userAgent": "GitHub-Hookshot/044aadd",
            },
        },
        "body": text,
        "isBase64Encoded": base64,
    }))
    .expect("a Function URL request")
}

/// GitHub's headers as a Function URL passes them (lower case).
fn github_headers(body: &[u8]) -> Value {
    json!({
        "content-type": "application/json",
        "x-github-event": "issues",
        "x-github-delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
        "x-hub-signature-256": signature(body),
    })
}

/// Shopify's headers for a `products/delete` delivery triggered at `triggered_at` (lower case).
fn shopify_delete_headers(body: &[u8], triggered_at: &str) -> Value {
    json!({
        "content-type": "application/json",
        "x-shopify-topic": "products/delete",
        "x-shopify-hmac-sha256": SignatureScheme::shopify().sign(&Secret::new(SECRET).expect("a secret"), body),
        "x-shopify-shop-domain": "johns-apparel.myshopify.com",
        "x-shopify-event-id": "98880550-7158-44d4-b7cd-2c97c8a091b5",
        "x-shopify-triggered-at": triggered_at,
    })
}

fn context() -> InvocationContext {
    InvocationContext {
        request_id: "req-1".into(),
        deadline: chrono::Utc::now() + chrono::Duration::seconds(10),
        function: Some("synctrail-ingest:$LATEST".into()),
        trace_id: Some("Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1".into()),
    }
}

async fn queued(ingest: &Ingest) -> Vec<synctrail::store::QueueMessage> {
    let queue = &ingest.engine.ports().queue;
    queue.receive(10, chrono::Duration::seconds(30)).await.expect("receive")
}

#[tokio::test]
async fn a_signed_delivery_in_a_plain_body_is_queued_once_and_answered_202_with_its_event_id() {
    let (_home, ingest) = ingest().await;
    let event = request("POST", "/webhooks/github", github_headers(ISSUE_OPENED), ISSUE_OPENED, false);

    let answer = respond(&ingest, &event, &context()).await;

    assert_eq!((answer.status, answer.handled), (202, Handled::Queued));
    assert_eq!(answer.body, json!({"status": "queued", "event_id": "github:72d3162e-cc78-11e3-81ab-4c9367dc0958"}));
    let messages = queued(&ingest).await;
    assert_eq!(messages.len(), 1, "one queue message");
    let envelope: Value = serde_json::from_str(&messages[0].body).expect("an envelope");
    assert_eq!(envelope["event_id"], "github:72d3162e-cc78-11e3-81ab-4c9367dc0958");
    assert_eq!(messages[0].trace_header, context().trace_id, "the invocation's trace travels with the message");
}

#[tokio::test]
async fn a_base64_body_is_decoded_before_its_signature_is_checked() {
    let (_home, ingest) = ingest().await;
    let event = request("POST", "/webhooks/github", github_headers(ISSUE_OPENED), ISSUE_OPENED, true);

    let answer = respond(&ingest, &event, &context()).await;

    assert_eq!((answer.status, answer.handled), (202, Handled::Queued));
    assert_eq!(queued(&ingest).await.len(), 1);
}

#[tokio::test]
async fn a_body_that_claims_base64_and_is_not_is_a_bad_request_and_nothing_is_queued() {
    let (_home, ingest) = ingest().await;
    let mut event = request("POST", "/webhooks/github", github_headers(ISSUE_OPENED), ISSUE_OPENED, false);
    event.is_base64_encoded = true;

    let answer = respond(&ingest, &event, &context()).await;

    assert_eq!((answer.status, answer.handled), (400, Handled::BadRequest));
    assert!(queued(&ingest).await.is_empty());
}

#[tokio::test]
async fn a_forged_delivery_is_401_with_no_detail_and_nothing_is_queued_or_recorded() {
    let (_home, ingest) = ingest().await;
    let forged = ISSUE_OPENED.to_ascii_uppercase();
    let event = request("POST", "/webhooks/github", github_headers(ISSUE_OPENED), &forged, true);

    let answer = respond(&ingest, &event, &context()).await;

    assert_eq!((answer.status, answer.body.clone()), (401, json!({"error": "unauthorized"})));
    assert_eq!(answer.reason, Some("mismatch"), "the reason is for the log and metrics only");
    assert!(queued(&ingest).await.is_empty());
    let store = &ingest.engine.ports().store;
    assert!(store.get_event(&EventId::for_rejected(&forged)).await.expect("get").is_none());
}

#[tokio::test]
async fn an_unmappable_signed_body_is_recorded_rejected_and_answered_202_with_the_reason() {
    let (_home, ingest) = ingest().await;
    let body = br#"{"action": "opened", "issue": {"number": 1}}"#;
    let event = request("POST", "/webhooks/github", github_headers(body), body, false);

    let answer = respond(&ingest, &event, &context()).await;

    assert_eq!((answer.status, answer.handled), (202, Handled::Rejected));
    let event_id = EventId::for_rejected(body);
    assert_eq!(answer.body["event_id"], event_id.as_str());
    assert!(answer.body["reason"].as_str().is_some_and(|r| r.starts_with("webhook from github: field")), "{answer:?}");
    let record = ingest.engine.ports().store.get_event(&event_id).await.expect("get").expect("recorded");
    assert_eq!(record.status, Status::Rejected);
    assert_eq!(record.last_message_id.as_deref(), Some("webhook:github"));
    assert_eq!(record.history[0].request_id.as_deref(), Some("req-1"), "the invocation is in the history");
    let archived = ingest.engine.ports().payloads.get(&record.payload).await.expect("the raw body is archived");
    assert_eq!(archived, body);
    assert!(queued(&ingest).await.is_empty(), "nothing queued");
}

/// `X-Shopify-Triggered-At` is not signed: a replayed delete body timed far ahead would order after every later
/// change. The handler judges it by the engine's clock, the one the composition root injected.
#[tokio::test]
async fn a_shopify_delete_timed_ahead_of_the_engines_clock_is_recorded_rejected_and_not_queued() {
    let now = chrono::DateTime::parse_from_rfc3339("2023-03-29T18:00:00Z").expect("a time").with_timezone(&chrono::Utc);
    let (_home, ingest) = ingest_on(Arc::new(ManualClock::new(now))).await;
    let ahead = request(
        "POST",
        "/webhooks/shopify",
        shopify_delete_headers(PRODUCT_DELETED, "2023-03-29T18:05:01Z"),
        PRODUCT_DELETED,
        false,
    );

    let answer = respond(&ingest, &ahead, &context()).await;

    assert_eq!((answer.status, answer.handled), (202, Handled::Rejected), "{answer:?}");
    let reason = answer.body["reason"].as_str().expect("a reason");
    assert_eq!(
        reason,
        "webhook from shopify: header X-Shopify-Triggered-At = 2023-03-29T18:05:01Z is more than 300 s ahead of \
         this receiver's clock (2023-03-29T18:00:00Z)"
    );
    let record = ingest.engine.ports().store.get_event(&EventId::for_rejected(PRODUCT_DELETED)).await.expect("get");
    let record = record.expect("recorded");
    assert_eq!(record.status, Status::Rejected);
    assert_eq!(record.error.and_then(|e| e.field).as_deref(), Some("X-Shopify-Triggered-At"));
    let archived = ingest.engine.ports().payloads.get(&record.payload).await.expect("the raw body is archived");
    assert_eq!(archived, PRODUCT_DELETED);
    assert!(queued(&ingest).await.is_empty(), "nothing queued");

    // Within five minutes of that clock (its own delivery, 27 s ahead): queued, at the whole second.
    let headers = shopify_delete_headers(PRODUCT_DELETED, "2023-03-29T18:00:27.877041743Z");
    let within = request("POST", "/webhooks/shopify", headers, PRODUCT_DELETED, false);
    assert_eq!(respond(&ingest, &within, &context()).await.handled, Handled::Queued);
    let messages = queued(&ingest).await;
    let envelope: Value = serde_json::from_str(&messages[0].body).expect("an envelope");
    assert_eq!(
        (envelope["updated_at"].clone(), envelope["version"].clone()),
        (json!("2023-03-29T18:00:27Z"), json!(1))
    );
}

/// The engine refuses a message naming a key twice; so does the ingress, before telling the sender an event id.
#[tokio::test]
async fn a_signed_body_naming_a_key_twice_is_recorded_rejected_and_not_queued() {
    let (_home, ingest) = ingest().await;
    let text = std::str::from_utf8(ISSUE_OPENED).expect("UTF-8");
    let body = format!("{{\"action\": \"deleted\",{}", text.trim_start().strip_prefix('{').expect("an object"));
    let event = request("POST", "/webhooks/github", github_headers(body.as_bytes()), body.as_bytes(), false);

    let answer = respond(&ingest, &event, &context()).await;

    assert_eq!((answer.status, answer.handled), (202, Handled::Rejected), "{answer:?}");
    assert_eq!(
        answer.body["reason"],
        "webhook from github: key action appears twice in one object of the body, so its value is ambiguous"
    );
    assert!(queued(&ingest).await.is_empty(), "nothing queued");
}

#[tokio::test]
async fn responses_are_json_never_cached_and_a_405_allows_post() {
    let (_home, ingest) = ingest().await;
    for (method, path, status) in
        [("GET", "/webhooks/github", 405), ("POST", "/webhooks/gitlab", 404), ("POST", "/events/e-1", 404)]
    {
        let event = request(method, path, json!({}), b"", false);
        let response = response(&respond(&ingest, &event, &context()).await);
        assert_eq!(response.status_code, status, "{method} {path}");
        assert_eq!(response.headers.get("content-type").and_then(|v| v.to_str().ok()), Some("application/json"));
        assert_eq!(response.headers.get("cache-control").and_then(|v| v.to_str().ok()), Some("no-store"));
        let allow = response.headers.get("allow").and_then(|v| v.to_str().ok());
        assert_eq!(allow, (status == 405).then_some("POST"), "{method} {path}");
    }
}

#[tokio::test]
async fn the_metric_line_counts_a_request_by_what_it_came_to_and_names_only_configured_sources() {
    let (_home, ingest) = ingest().await;
    let unknown = respond(&ingest, &request("POST", "/webhooks/made-up", json!({}), b"{}", false), &context()).await;
    let forged = request("POST", "/webhooks/github", json!({"x-hub-signature-256": "sha256=00"}), b"{}", false);
    let forged = respond(&ingest, &forged, &context()).await;
    let at = chrono::DateTime::UNIX_EPOCH;

    let line = metrics::emf_line(&unknown, "synctrail-ingest", "synctrail", at, std::time::Duration::from_millis(2));
    assert_eq!((line["source"].clone(), line["handled"].clone()), (json!("unknown"), json!("unknown_source")));
    assert_eq!(line[metrics::WEBHOOKS], json!(1));
    assert_eq!(line[metrics::HANDLER_DURATION], json!(2.0));
    let declared = &line["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(declared["Dimensions"], json!([["function", "handled"], ["function", "source", "handled"]]));
    for metric in declared["Metrics"].as_array().expect("metrics") {
        assert!(line[metric["Name"].as_str().expect("a name")].is_number(), "{metric} has a member");
    }
    let line = metrics::emf_line(&forged, "synctrail-ingest", "synctrail", at, std::time::Duration::ZERO);
    assert_eq!((line["source"].clone(), line["handled"].clone()), (json!("github"), json!("unauthenticated")));
}
