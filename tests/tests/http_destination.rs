//! The HTTP destination's own cases (issue 10 §2), against a real HTTP/1.1 receiver on 127.0.0.1: what a request
//! carries, and every answer that only HTTP has — a 500 after the receiver stored the change, 429 with
//! `Retry-After`, a receiver that hangs past the timeout or the invocation's deadline, a reset or refused
//! connection, 409, 424, 400, a bad signature — and the limit of requests in flight. End to end through the
//! processor where the engine's part matters (statuses, pointers, retries), directly on the destination otherwise.

use crate::support::receiver::{Fault, Receiver, TOLERANCE_SECONDS};
use crate::support::*;
use chrono::Duration;
use serde_json::{json, Value};
use std::sync::Arc;
use synctrail::destination::http::signature::{verify, SIGNATURE_HEADER};
use synctrail::destination::http::{HttpDestination, HttpDestinationConfig, Secret};
use synctrail::destination::{ApplyOutcome, Change, Destination, DestinationError, ReadError};
use synctrail::model::{content_hash, Direction, EntityKey, ErrorKind, EventId, Kind, OrderKey, Status};
use synctrail::Policy;

fn receiver(h: &Harness) -> &Receiver {
    h.receiver.as_ref().expect("the harness delivers over HTTP")
}

/// Another destination delivering to the harness's receiver, configured by `tweak`.
fn destination(h: &Harness, tweak: impl FnOnce(HttpDestinationConfig) -> HttpDestinationConfig) -> HttpDestination {
    let config = tweak(receiver(h).config().with_secret(Secret::new(HTTP_SECRET)));
    HttpDestination::new(config, h.clock.clone()).expect("an http destination")
}

/// The parts of a change the direct cases apply.
struct Owned {
    event_id: EventId,
    entity: EntityKey,
    payload: Value,
}

impl Owned {
    fn new(event: &str, external_id: &str, payload: Value) -> Self {
        let entity = EntityKey::new("default", "shop", "product", external_id).expect("valid key");
        Self { event_id: EventId::parse(event).expect("valid id"), entity, payload }
    }

    fn change(&self, seconds: i64) -> Change<'_> {
        Change {
            event_id: &self.event_id,
            entity: &self.entity,
            order: OrderKey::at(time(seconds), 0).expect("valid order"),
            updated_at: Some(time(seconds)),
            content_hash: content_hash(Kind::Upsert, &self.payload),
            kind: Kind::Upsert,
            direction: Direction::Inbound,
            payload: &self.payload,
            fence: 1,
            policy: Policy::LatestWins,
            forced: false,
            attempt: 1,
            previous_attempt_unknown: false,
            deadline: None,
            trace_id: None,
        }
    }
}

#[tokio::test]
async fn a_delivery_is_a_signed_post_with_the_protocols_headers_and_body() {
    let h = Harness::over(Via::Http);
    let event = Env::product("7").at(10).version(2).titled("v1").id("shopify-1");
    h.send_env(&event).await;
    let d = h.deliver(1).await;
    assert_eq!(d.only().status, Some(Status::Completed));

    let seen = receiver(&h).seen();
    assert_eq!(seen.len(), 1);
    let request = &seen[0];
    assert_eq!(request.request_line, "POST /changes HTTP/1.1");
    let header = |name: &str| request.headers.get(name).cloned().unwrap_or_default();
    assert_eq!(header("idempotency-key"), "shopify-1");
    assert_eq!(header("content-type"), "application/json");
    assert_eq!(header("user-agent"), format!("synctrail/{}", env!("CARGO_PKG_VERSION")));
    assert_eq!(header("x-amzn-trace-id"), d.trace_id);
    let signature = header(SIGNATURE_HEADER);
    assert!(signature.starts_with(&format!("t={},v1=", h.now().timestamp())), "{signature}");
    let tolerance = Duration::seconds(TOLERANCE_SECONDS);
    assert_eq!(verify(&Secret::new(HTTP_SECRET), &signature, &request.raw, h.now(), tolerance), Ok(()));
    assert_eq!(
        request.body,
        json!({
            "event_id": "shopify-1",
            "entity": {"key": "default/shopify/product/7", "tenant": "default", "source": "shopify",
                       "entity_type": "product", "external_id": "7"},
            "kind": "upsert",
            "direction": "inbound",
            "policy": "latest_wins",
            "order": {"updated_at": "2026-05-01T12:00:10.000000000Z", "version": 2},
            "content_hash": h.record_of(&event).await.content_hash.expect("hash").to_hex(),
            "payload": {"title": "v1"},
            "fence": 1,
            "forced": false,
            "attempt": 1,
            "previous_attempt_unknown": false,
        })
    );
}

#[tokio::test]
async fn a_500_after_the_receiver_stored_the_change_is_retried_with_the_same_key_and_previous_attempt_unknown() {
    let h = Harness::over(Via::Http);
    let event = Env::issue("1").at(10).titled("v1");
    receiver(&h).fault(Fault::StoreThen(500));
    h.send_env(&event).await;

    let d = h.deliver(1).await;
    assert_eq!(d.only().status, Some(Status::Errored));
    let error = h.record_of(&event).await.error.expect("error recorded");
    assert_eq!(error.kind, ErrorKind::Retryable);
    assert!(error.message.starts_with("HTTP 500 Internal Server Error"), "{}", error.message);
    assert_eq!(h.effects_of(&event.event_id()).await, 1, "the receiver stored it before failing");

    h.advance(d.retry_after(0));
    assert_eq!(h.deliver(1).await.only().status, Some(Status::Completed));
    let seen = receiver(&h).seen();
    let keys: Vec<_> = seen.iter().map(|s| s.headers["idempotency-key"].clone()).collect();
    assert_eq!(keys, [event.event_id().to_string(), event.event_id().to_string()]);
    let flags: Vec<_> =
        seen.iter().map(|s| (s.body["attempt"].clone(), s.body["previous_attempt_unknown"].clone())).collect();
    assert_eq!(flags, [(json!(1), json!(false)), (json!(2), json!(true))]);
    assert_eq!(h.effects_of(&event.event_id()).await, 1, "the retry had no second effect");
    assert_eq!(h.mirror_state(&event.entity()).await, Some(json!({"title": "v1"})));
}

#[tokio::test]
async fn a_429_with_retry_after_is_retried_after_that_delay_without_using_up_attempts() {
    let mut settings = settings();
    settings.max_attempts = 1;
    let h = Harness::with(Options { settings, via: Via::Http, ..Options::default() });
    let event = Env::issue("2").at(10).titled("v1");
    let retry_after = |value: &str| Fault::Answer {
        status: 429,
        headers: vec![("retry-after", value.to_owned())],
        body: "slow down".into(),
    };
    receiver(&h).fault(retry_after("7"));
    // The date is 27 s from now: the second attempt comes 7 s later, so it is 20 s away then.
    receiver(&h).fault(retry_after(&(h.now() + Duration::seconds(27)).to_rfc2822().replace("+0000", "GMT")));
    h.send_env(&event).await;

    let d = h.deliver(1).await;
    assert_eq!(d.only().status, Some(Status::Errored));
    assert_eq!(d.retry_after(0), Duration::seconds(7), "Retry-After in seconds");
    let error = h.record_of(&event).await.error.expect("error recorded");
    assert_eq!(error.kind, ErrorKind::Throttled);
    assert_eq!(error.message, "HTTP 429 Too Many Requests: slow down");
    h.advance(Duration::seconds(7));
    let d = h.deliver(1).await;
    assert_eq!(d.retry_after(0), Duration::seconds(20), "Retry-After as an HTTP date");
    h.advance(Duration::seconds(20));
    assert_eq!(h.deliver(1).await.only().status, Some(Status::Completed), "one attempt allowed, two throttled");
    assert_eq!(h.effects().await, [event.event_id()]);
}

#[tokio::test]
async fn a_receiver_that_hangs_past_the_timeout_is_a_retryable_error() {
    let h = Harness::over(Via::Http);
    let http = destination(&h, |c| HttpDestinationConfig { timeout: std::time::Duration::from_millis(200), ..c });
    receiver(&h).fault(Fault::Hang);
    let change = Owned::new("ev-hang", "1", json!({"n": 1}));
    match http.apply(&change.change(1)).await {
        Err(DestinationError::Retryable { message, retry_after: None }) => {
            assert!(message.starts_with("no answer within 200 ms"), "{message}")
        }
        other => panic!("expected a retryable timeout, got {other:?}"),
    }
    // The pool still works: the next request gets a fresh connection and is applied.
    assert_eq!(http.apply(&change.change(1)).await, Ok(ApplyOutcome::Applied));
}

#[tokio::test]
async fn a_receiver_that_hangs_is_given_up_before_the_invocations_deadline() {
    let h = Harness::over(Via::Http);
    let http = destination(&h, |c| c);
    receiver(&h).fault(Fault::Hang);
    let change = Owned::new("ev-deadline", "1", json!({"n": 1}));
    let close = Change { deadline: Some(h.now() + Duration::seconds(1)), ..change.change(1) };
    match http.apply(&close).await {
        Err(DestinationError::Retryable { message, .. }) => {
            assert!(message.starts_with("no answer within 750 ms"), "1 s left less the reserve: {message}")
        }
        other => panic!("expected a retryable timeout, got {other:?}"),
    }
    let too_close = Change { deadline: Some(h.now() + Duration::milliseconds(100)), ..change.change(1) };
    match http.apply(&too_close).await {
        Err(DestinationError::Retryable { message, .. }) => assert!(message.starts_with("not sent"), "{message}"),
        other => panic!("expected a retryable refusal to send, got {other:?}"),
    }
    assert_eq!(receiver(&h).seen().len(), 1, "nothing sent when the deadline is too close");
}

#[tokio::test]
async fn a_reset_or_refused_connection_is_a_retryable_error() {
    let h = Harness::over(Via::Http);
    let http = destination(&h, |c| c);
    receiver(&h).fault(Fault::Reset);
    let change = Owned::new("ev-reset", "1", json!({"n": 1}));
    assert!(matches!(http.apply(&change.change(1)).await, Err(DestinationError::Retryable { .. })));
    assert_eq!(h.effects_of(&change.event_id).await, 0);

    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("address");
    let nowhere = HttpDestinationConfig::new(&format!("http://{closed}/changes")).expect("valid url");
    let refused = HttpDestination::new(nowhere, h.clock.clone()).expect("destination");
    match refused.apply(&change.change(1)).await {
        Err(DestinationError::Retryable { message, .. }) => {
            assert!(message.starts_with("could not connect to the receiver"), "{message}")
        }
        other => panic!("expected a retryable connect error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_409_drops_the_event_with_the_receivers_pointer() {
    let h = Harness::over(Via::Http);
    let event = Env::issue("3").at(10).titled("v1");
    receiver(&h).fault(Fault::answer(409, r#"{"superseded_by":"erp-row-77@v9"}"#));
    h.send_env(&event).await;
    assert_eq!(h.deliver(1).await.only().status, Some(Status::Dropped));
    let record = h.record_of(&event).await;
    assert_eq!(record.dropped_for.as_deref(), Some("erp-row-77@v9"));
    assert!(h.effects().await.is_empty());
}

#[tokio::test]
async fn a_424_makes_the_event_wait_for_the_dependency_and_sends_its_request() {
    let h = Harness::over(Via::Http);
    let level = Env::new("shopify", "inventory_level", "l1").at(10).payload(json!({"product_id": "p1"}));
    let fetch = Env::product("p1").at(5).titled("fetched");
    let answer = json!({"needs": "default/shopify/product/p1", "request": serde_json::from_str::<Value>(&fetch.body()).unwrap()});
    receiver(&h).fault(Fault::answer(424, &answer.to_string()));
    h.send_env(&level).await;
    assert_eq!(h.deliver(1).await.only().status, Some(Status::Waiting));
    assert_eq!(h.record_of(&level).await.waiting_for.as_deref(), Some("default/shopify/product/p1"));

    // The request goes to the queue (naming its cause); once it is applied, the waiting event is.
    h.drain().await;
    assert_eq!(h.status_of(&fetch).await, Status::Completed);
    assert_eq!(h.record_of(&fetch).await.caused_by, Some(level.event_id().to_string()));
    assert_eq!(h.status_of(&level).await, Status::Completed);
    assert_eq!(h.effects().await, [fetch.event_id(), level.event_id()]);
}

#[tokio::test]
async fn a_400_fails_the_event_with_the_status_line_and_the_first_kilobyte_of_the_body() {
    let h = Harness::over(Via::Http);
    let event = Env::issue("4").at(10).titled("v1");
    let body = format!("missing field `price` {}", "x".repeat(3000));
    receiver(&h).fault(Fault::answer(400, &body));
    h.send_env(&event).await;
    assert_eq!(h.deliver(1).await.only().status, Some(Status::Failed));
    let error = h.record_of(&event).await.error.expect("error recorded");
    assert_eq!((error.kind, error.retryable), (ErrorKind::Permanent, false));
    assert!(error.message.starts_with("HTTP 400 Bad Request: missing field `price` xxx"), "{}", error.message);
    assert!(error.message.ends_with(&format!("({} bytes, first 1024 kept)", body.len())), "{}", error.message);
    assert!(error.message.len() < 1200, "truncated: {} bytes", error.message.len());
    assert!(h.effects().await.is_empty());
}

#[tokio::test]
async fn a_receiver_rejects_a_forged_or_unsigned_request_and_the_change_fails_for_good() {
    let h = Harness::over(Via::Http);
    let change = Owned::new("ev-forged", "1", json!({"n": 1}));
    let forged = destination(&h, |c| c.with_secret(Secret::new(b"not-the-receivers-secret")));
    let unsigned = destination(&h, |c| HttpDestinationConfig { secret: None, ..c });
    for http in [forged, unsigned] {
        match http.apply(&change.change(1)).await {
            Err(DestinationError::Permanent(message)) => {
                assert!(message.starts_with("HTTP 401 Unauthorized"), "{message}")
            }
            other => panic!("expected a permanent refusal, got {other:?}"),
        }
    }
    // A request signed too long ago (a replay) is refused too.
    let replayed = destination(&h, |c| c);
    let old_clock = Arc::new(synctrail::ManualClock::new(h.now() - Duration::seconds(TOLERANCE_SECONDS + 1)));
    let config = receiver(&h).config().with_secret(Secret::new(HTTP_SECRET));
    let stale = HttpDestination::new(config, old_clock).expect("destination");
    assert!(matches!(stale.apply(&change.change(1)).await, Err(DestinationError::Permanent(_))));
    assert_eq!(h.effects_of(&change.event_id).await, 0);
    assert_eq!(replayed.apply(&change.change(1)).await, Ok(ApplyOutcome::Applied), "the right secret, now");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_flight_never_exceed_the_configured_concurrency() {
    let h = Harness::over(Via::Http);
    let http = Arc::new(destination(&h, |c| HttpDestinationConfig { concurrency: 2, ..c }));
    let changes: Vec<Arc<Owned>> =
        (0..8).map(|i| Arc::new(Owned::new(&format!("ev-{i}"), &format!("{i}"), json!({"n": i})))).collect();
    for _ in &changes {
        receiver(&h).fault(Fault::Slow(std::time::Duration::from_millis(300)));
    }
    let mut tasks = tokio::task::JoinSet::new();
    for change in &changes {
        let (http, change) = (Arc::clone(&http), Arc::clone(change));
        tasks.spawn(async move { http.apply(&change.change(1)).await });
    }
    while let Some(outcome) = tasks.join_next().await {
        assert_eq!(outcome.expect("task"), Ok(ApplyOutcome::Applied));
    }
    assert_eq!(receiver(&h).most_at_once(), 2, "two at a time, in parallel");
    assert_eq!(h.effects().await.len(), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_waiting_for_the_only_slot_is_signed_when_the_slot_comes_free() {
    let h = Harness::over(Via::Http);
    let http = Arc::new(destination(&h, |c| HttpDestinationConfig { concurrency: 1, ..c }));
    let slow = Arc::new(Owned::new("ev-holds-the-slot", "1", json!({"n": 1})));
    let waiting = Arc::new(Owned::new("ev-waits-for-it", "2", json!({"n": 2})));
    receiver(&h).fault(Fault::Slow(std::time::Duration::from_millis(600)));
    let sent_first = h.now();

    let (destination, change) = (Arc::clone(&http), Arc::clone(&slow));
    let first = tokio::spawn(async move { destination.apply(&change.change(1)).await });
    for _ in 0..500 {
        if !receiver(&h).seen().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(receiver(&h).seen().len(), 1, "the slow request holds the only slot");
    let (destination, change) = (Arc::clone(&http), Arc::clone(&waiting));
    let second = tokio::spawn(async move { destination.apply(&change.change(1)).await });
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    h.advance(Duration::seconds(90));
    let freed_no_earlier_than = h.now();

    assert_eq!(first.await.expect("task"), Ok(ApplyOutcome::Applied));
    assert_eq!(second.await.expect("task"), Ok(ApplyOutcome::Applied));
    let signed_at: Vec<i64> = receiver(&h)
        .seen()
        .iter()
        .map(|seen| {
            let header = &seen.headers[SIGNATURE_HEADER];
            let t = header.strip_prefix("t=").and_then(|rest| rest.split(',').next()).expect("t=<seconds>,…");
            t.parse().expect("unix seconds")
        })
        .collect();
    assert_eq!(signed_at.len(), 2);
    assert_eq!(signed_at[0], sent_first.timestamp());
    assert!(
        signed_at[1] >= freed_no_earlier_than.timestamp(),
        "signed when it left ({}), not when it began to wait ({})",
        signed_at[1],
        sent_first.timestamp()
    );
}

/// The example receiver of `docs/destination-protocol.md`, started with `python3` on a free loopback port.
struct ExampleReceiver {
    child: std::process::Child,
    url: String,
    db: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl ExampleReceiver {
    fn start(secret: &str) -> Self {
        use std::io::BufRead;
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("receiver.db");
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/http-receiver/receiver.py");
        let mut child = std::process::Command::new("python3")
            .arg(script)
            .args(["--host", "127.0.0.1", "--port", "0", "--db"])
            .arg(&db)
            .env("SYNCTRAIL_DESTINATION_SECRET", secret)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("python3 runs the example receiver");
        // The first line is read on a thread (a pipe read has no timeout), so the wait for it has a deadline: a
        // receiver that never says where it listens is killed and the test fails.
        let stdout = child.stdout.take().expect("stdout");
        let (said, heard) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let read = std::io::BufReader::new(stdout).read_line(&mut line).map(|_| line);
            let _ = said.send(read);
        });
        let line = match heard.recv_timeout(std::time::Duration::from_secs(30)) {
            Ok(Ok(line)) => line,
            failed => {
                let _ = child.kill();
                let _ = child.wait();
                match failed {
                    Ok(Err(e)) => panic!("reading where the example receiver listens: {e}"),
                    _ => panic!("the example receiver did not say where it listens within 30 s"),
                }
            }
        };
        let url = match line.trim().strip_prefix("listening on ") {
            Some(url) => url.to_owned(),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("expected a listening line from the example receiver, got {line:?}");
            }
        };
        Self { child, url, db, _dir: dir }
    }

    /// Changes an entity's state in the receiver's database directly.
    fn edit(&self, key: &str, state: Value) {
        let db = rusqlite::Connection::open(&self.db).expect("open the receiver's database");
        let changed =
            db.execute("UPDATE entities SET state = ?1 WHERE key = ?2", (state.to_string(), key)).expect("edit");
        assert_eq!(changed, 1, "{key} has a row");
    }

    fn state(&self, key: &str) -> Option<Value> {
        let db = rusqlite::Connection::open(&self.db).expect("open the receiver's database");
        let state: Option<String> = db
            .query_row("SELECT state FROM entities WHERE key = ?1", [key], |row| row.get(0))
            .unwrap_or_else(|e| panic!("no row for {key}: {e}"));
        state.map(|s| serde_json::from_str(&s).expect("JSON state"))
    }
}

impl Drop for ExampleReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_receiver_verifies_signatures_applies_once_and_keeps_the_newest_state() {
    let secret = "example-secret-0123456789abcdef";
    let receiver = ExampleReceiver::start(secret);
    let clock: Arc<dyn synctrail::Clock> = Arc::new(synctrail::SystemClock);
    let config = HttpDestinationConfig::new(&receiver.url).expect("url").with_secret(Secret::new(secret.as_bytes()));
    let http = HttpDestination::new(config, clock.clone()).expect("destination");

    let newer = Owned::new("ev-newer", "9", json!({"title": "newer"}));
    let older = Owned::new("ev-older", "9", json!({"title": "older"}));
    assert_eq!(http.apply(&newer.change(20)).await, Ok(ApplyOutcome::Applied));
    let retry = Change { attempt: 2, previous_attempt_unknown: true, ..newer.change(20) };
    assert_eq!(http.apply(&retry).await, Ok(ApplyOutcome::AlreadyApplied));
    assert_eq!(http.apply(&older.change(10)).await, Ok(ApplyOutcome::Superseded { by: "ev-newer".into() }));
    assert_eq!(receiver.state("default/shop/product/9"), Some(json!({"title": "newer"})));

    // Reading back (GET ?entity=, signed over the key), and a forced snapshot rewritten over its own effect.
    let held = http.read(&newer.entity).await.expect("read").expect("held");
    assert_eq!((held.state, held.deleted), (json!({"title": "newer"}), false));
    assert_eq!((held.order, held.event_id.as_deref()), (Some(newer.change(20).order), Some("ev-newer")));
    let nothing = EntityKey::new("default", "shop", "product", "none/such").expect("key");
    assert_eq!(http.read(&nothing).await, Ok(None));
    receiver.edit("default/shop/product/9", json!({"title": "edited behind its back"}));
    assert_eq!(http.apply(&newer.change(20)).await, Ok(ApplyOutcome::AlreadyApplied));
    assert_eq!(http.apply(&Change { forced: true, ..newer.change(20) }).await, Ok(ApplyOutcome::Applied));
    assert_eq!(receiver.state("default/shop/product/9"), Some(json!({"title": "newer"})));

    let stock = EntityKey::new("default", "erp", "inventory_adjustment", "sku-1").expect("key");
    for (event, delta) in [("ev-d1", 5), ("ev-d2", -2), ("ev-d1", 5)] {
        let owned = Owned {
            event_id: EventId::parse(event).expect("id"),
            entity: stock.clone(),
            payload: json!({"delta": delta}),
        };
        let change = Change { policy: Policy::InOrder, ..owned.change(1) };
        assert!(http.apply(&change).await.is_ok(), "{event}");
    }
    assert_eq!(receiver.state("default/erp/inventory_adjustment/sku-1"), Some(json!({"quantity": 3})));

    let forged =
        HttpDestinationConfig::new(&receiver.url).expect("url").with_secret(Secret::new(b"a-forger-0123456789"));
    let forger = HttpDestination::new(forged, clock).expect("destination");
    match forger.apply(&Owned::new("ev-forged", "9", json!({"title": "forged"})).change(30)).await {
        Err(DestinationError::Permanent(message)) => assert!(message.starts_with("HTTP 401 Unauthorized"), "{message}"),
        other => panic!("expected the forged request refused, got {other:?}"),
    }
    match forger.read(&newer.entity).await {
        Err(ReadError::Failed(message)) => assert!(message.starts_with("HTTP 401 Unauthorized"), "{message}"),
        other => panic!("expected the forged read refused, got {other:?}"),
    }
    assert_eq!(receiver.state("default/shop/product/9"), Some(json!({"title": "newer"})));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_the_destination_secret_named_by_its_arn_is_read_from_secrets_manager_at_init() {
    use synctrail::config::DestinationConfig;
    use synctrail::secrets::SecretsManager;
    let endpoint = crate::conformance::aws::endpoint();
    let manager = SecretsManager::connect(Some(&endpoint), Some("us-east-1")).await;
    let name = format!("synctrail-test/destination-{}", synctrail_cli::commands::random_suffix());
    let created = manager.client().create_secret().name(&name).secret_string("a-long-enough-signing-secret");
    let arn = created.send().await.expect("create the secret").arn.expect("an ARN");
    let vars = |reference: &str| {
        [
            ("SYNCTRAIL_DESTINATION", "http"),
            ("SYNCTRAIL_DESTINATION_URL", "http://127.0.0.1:9/changes"),
            ("SYNCTRAIL_DESTINATION_SECRET_ARN", reference),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .to_vec()
    };

    let config = synctrail_lambda::config_from_vars(vars(&arn), Some(&endpoint), Some("us-east-1")).await;

    match config.map(|c| c.destination) {
        Ok(DestinationConfig::Http(http)) => assert!(http.secret.is_some(), "the requests are signed"),
        other => panic!("expected the HTTP destination with its secret, got {other:?}"),
    }
    let missing = format!("{arn}-gone");
    let error = synctrail_lambda::config_from_vars(vars(&missing), Some(&endpoint), Some("us-east-1")).await;
    let text = error.expect_err("no such secret").to_string();
    assert!(text.contains("SYNCTRAIL_DESTINATION_SECRET") && text.contains(&missing), "{text}");
}
