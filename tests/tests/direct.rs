//! The DynamoDB requests sent without the SDK's pipeline (`store::aws::direct`): on moto, that the event store's
//! single-item writes go direct once the store has made a request and write what the SDK would; against a stand-in
//! DynamoDB on loopback, that each request is signed (SigV4, checked here by an independent implementation) over
//! exactly what it sends, that throttling and server errors are retried as the SDK's standard retry does, and
//! nothing else is, and that the mirror's read and transaction go direct and read a canceled transaction's reasons.

use crate::conformance::aws::fixture;
use crate::conformance::build;
use crate::support::standin::{Handler, Request, Response, Server};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::sync::{Arc, Mutex};
use synctrail::destination::{ApplyOutcome, Destination};
use synctrail::model::Status;
use synctrail::store::aws::{Clients, DynamoMirror, DynamoStore};
use synctrail::store::{EventStore, Expect, StoreError, Write};
use synctrail::SystemClock;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_single_item_writes_go_direct_once_the_store_has_made_a_request_and_read_back_as_written() {
    let f = fixture().await;
    let store = DynamoStore::new(&f.clients, &f.created.table);
    assert!(!store.writes_direct(), "a fresh store has not learned the SDK's route yet");
    let e = build::entity("direct");
    let first = build::record("ev-sdk", Some(&e), Some(build::order(1)), build::t0());
    store.commit(vec![Write::event(first.clone())]).await.expect("the first write, through the SDK");
    assert!(store.writes_direct(), "the SDK's first request taught the store its route");

    let puts = f.clients.requests.get("DynamoDB", "PutItem");
    let second = build::record("ev-direct", Some(&e), Some(build::order(2)), build::t0());
    store.commit(vec![Write::event(second.clone())]).await.expect("a direct insert");
    let mut completed = build::stored(second.clone());
    completed.status = Status::Completed;
    completed.completed_at = Some(build::t0());
    store.commit_each(vec![Write::event(completed.clone())]).await.expect("a direct update");
    assert_eq!(f.clients.requests.get("DynamoDB", "PutItem"), puts + 2, "direct attempts are counted as PutItem");
    assert_eq!(store.get_event(&build::id("ev-direct")).await.expect("read"), Some(build::stored(completed.clone())));
    assert_eq!(store.get_event(&build::id("ev-sdk")).await.expect("read"), Some(build::stored(first)));

    // Conditions hold as through the SDK: an insert over an existing item, and a stale version, are conflicts
    // naming what was found (the stored item comes back with the failure).
    match store.commit(vec![Write::event(second)]).await {
        Err(StoreError::Conflict(m)) => {
            assert!(m.contains("event ev-direct: expected it absent, found version 2"), "{m}")
        }
        got => panic!("expected a conflict, got {got:?}"),
    }
    let stale = Write::Event { record: Box::new(completed), expect: Expect::Version(1) };
    match store.commit(vec![stale]).await {
        Err(StoreError::Conflict(m)) => assert!(m.contains("expected version 1, found version 2"), "{m}"),
        got => panic!("expected a conflict, got {got:?}"),
    }
}

/// A stand-in DynamoDB on loopback: `GetItem` finds nothing; `PutItem`s are recorded and answered from `answers`
/// in turn (the last one again once they run out).
struct StandIn {
    server: Server,
    puts: Arc<Mutex<Vec<Request>>>,
}

impl StandIn {
    fn start(answers: Vec<Response>) -> Self {
        let puts = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&puts);
        let handler: Handler = Arc::new(move |request: Request| {
            let target = request.headers.get("x-amz-target").cloned().unwrap_or_default();
            if target != "DynamoDB_20120810.PutItem" {
                return Response::json(200, &json!({}));
            }
            let mut puts = seen.lock().expect("puts");
            puts.push(request);
            answers.get(puts.len() - 1).or(answers.last()).cloned().unwrap_or_else(|| Response::json(200, &json!({})))
        });
        Self { server: Server::start(handler), puts }
    }

    fn puts(&self) -> Vec<Request> {
        self.puts.lock().expect("puts").clone()
    }

    /// A store on the stand-in that has made its first request (a `GetItem`), so its puts go direct.
    async fn store(&self) -> (Clients, DynamoStore) {
        let clients = Clients::connect(Some(&self.server.url), Some("us-east-1")).await;
        let store = DynamoStore::new(&clients, "events");
        store.get_event(&build::id("anything")).await.expect("the stand-in's GetItem");
        assert!(store.writes_direct());
        (clients, store)
    }
}

fn error(status: u16, code: &str) -> Response {
    let body = json!({"__type": format!("com.amazonaws.dynamodb.v20120810#{code}"), "message": "stand-in"});
    Response::json(status, &body).with("x-amzn-RequestId", "STANDIN0REQUEST0ID")
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// The SigV4 signature of `request` as received, computed from the AWS documentation's steps, for the scope and
/// signed headers its `Authorization` header names.
fn expected_signature(request: &Request, secret: &str) -> (String, String) {
    let authorization = request.headers.get("authorization").expect("an Authorization header");
    let field = |name: &str| {
        authorization.split([' ', ',']).find_map(|part| part.strip_prefix(name)).expect("a field").to_owned()
    };
    let (credential, signed_headers, signature) = (field("Credential="), field("SignedHeaders="), field("Signature="));
    let scope = credential.split_once('/').expect("key id / scope").1.to_owned();
    let mut canonical = format!("{}\n{}\n\n", request.method, request.path);
    for name in signed_headers.split(';') {
        canonical.push_str(&format!("{name}:{}\n", request.headers.get(name).expect("a signed header").trim()));
    }
    canonical.push_str(&format!("\n{signed_headers}\n{}", hex::encode(Sha256::digest(&request.raw))));
    let amz_date = request.headers.get("x-amz-date").expect("x-amz-date");
    let to_sign =
        format!("AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}", hex::encode(Sha256::digest(canonical.as_bytes())));
    let mut key = format!("AWS4{secret}").into_bytes();
    for part in scope.split('/') {
        key = hmac(&key, part);
    }
    (signature, hex::encode(hmac(&key, &to_sign)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_a_direct_put_is_signed_with_sigv4_over_exactly_the_bytes_and_headers_it_sends() {
    let standin = StandIn::start(Vec::new());
    let (clients, store) = standin.store().await;
    let record = build::record("ev-signed", None, None, build::t0());
    store.commit(vec![Write::event(record)]).await.expect("written");
    let puts = standin.puts();
    assert_eq!(puts.len(), 1);
    let put = &puts[0];
    let (sent, expected) = expected_signature(put, &std::env::var("AWS_SECRET_ACCESS_KEY").expect("moto's secret"));
    assert_eq!(sent, expected, "the signature covers the body and headers as sent");
    let authorization = &put.headers["authorization"];
    assert!(authorization.contains("/us-east-1/dynamodb/aws4_request"), "{authorization}");
    assert!(authorization.contains("SignedHeaders=content-type;host;x-amz-date;x-amz-target"), "{authorization}");
    assert_eq!(put.headers["content-type"], "application/x-amz-json-1.0");
    assert_eq!(put.body["TableName"], "events");
    assert_eq!(put.body["ConditionExpression"], "attribute_not_exists(pk)");
    assert_eq!(put.body["ReturnValuesOnConditionCheckFailure"], "ALL_OLD");
    assert_eq!(put.body["Item"]["pk"], json!({"S": "EVENT#ev-signed"}));
    assert!(put.body["Item"]["body"]["B"].is_string(), "the record's compressed body travels as base64");
    assert_eq!(clients.requests.get("DynamoDB", "PutItem"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_a_direct_put_retries_a_server_error_and_succeeds() {
    let standin = StandIn::start(vec![error(500, "InternalServerError"), Response::json(200, &json!({}))]);
    let (clients, store) = standin.store().await;
    store.commit(vec![Write::event(build::record("ev-1", None, None, build::t0()))]).await.expect("the retry wrote");
    assert_eq!(standin.puts().len(), 2);
    assert_eq!(clients.requests.get("DynamoDB", "PutItem"), 2, "both attempts counted");
    let (first, second) = (&standin.puts()[0], &standin.puts()[1]);
    assert_eq!(first.raw, second.raw, "the retry sends the same request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_a_direct_put_throttled_on_every_attempt_is_throttled_after_three() {
    let standin = StandIn::start(vec![error(400, "ThrottlingException")]);
    let (_clients, store) = standin.store().await;
    match store.commit(vec![Write::event(build::record("ev-1", None, None, build::t0()))]).await {
        Err(StoreError::Throttled(detail)) => {
            assert!(detail.contains("writing event ev-1: DynamoDB answered HTTP 400 ThrottlingException"), "{detail}");
        }
        got => panic!("expected Throttled, got {got:?}"),
    }
    assert_eq!(standin.puts().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_a_direct_put_refused_as_invalid_is_a_backend_error_and_not_retried() {
    let standin = StandIn::start(vec![error(400, "ValidationException")]);
    let (_clients, store) = standin.store().await;
    match store.commit(vec![Write::event(build::record("ev-1", None, None, build::t0()))]).await {
        Err(StoreError::Backend(detail)) => {
            assert!(detail.contains("ValidationException: stand-in (request id STANDIN0REQUEST0ID)"), "{detail}")
        }
        got => panic!("expected a backend error, got {got:?}"),
    }
    assert_eq!(standin.puts().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_a_failed_condition_is_a_conflict_naming_the_stored_version() {
    let stored = json!({"pk": {"S": "EVENT#ev-1"}, "version": {"N": "7"}, "commit_id": {"S": "someone-else"}});
    let mut refused = error(400, "ConditionalCheckFailedException");
    let mut body: Value = serde_json::from_str(&refused.body).expect("JSON");
    body["Item"] = stored;
    refused.body = body.to_string();
    let standin = StandIn::start(vec![refused]);
    let (_clients, store) = standin.store().await;
    match store.commit(vec![Write::event(build::record("ev-1", None, None, build::t0()))]).await {
        Err(StoreError::Conflict(detail)) => {
            assert!(detail.contains("event ev-1: expected it absent, found version 7"), "{detail}")
        }
        got => panic!("expected a conflict, got {got:?}"),
    }
    assert_eq!(standin.puts().len(), 1, "a failed condition is an answer, not a failure to retry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_a_retry_of_a_put_that_landed_finds_its_own_item_and_succeeds() {
    // The first attempt is stored but its answer is lost (a 500); the retry's condition then fails on the stored item,
    // which carries this commit's id: the write is reported done, not a conflict.
    let stored: Arc<Mutex<Option<Value>>> = Arc::default();
    let attempts = Arc::new(Mutex::new(0));
    let (keep, count) = (Arc::clone(&stored), Arc::clone(&attempts));
    let handler: Handler = Arc::new(move |request: Request| {
        if request.headers.get("x-amz-target").map(String::as_str) != Some("DynamoDB_20120810.PutItem") {
            return Response::json(200, &json!({}));
        }
        *count.lock().expect("attempts") += 1;
        let mut stored = keep.lock().expect("stored");
        match stored.as_ref() {
            None => {
                *stored = Some(request.body["Item"].clone());
                error(500, "InternalServerError")
            }
            Some(item) => {
                let mut refused = error(400, "ConditionalCheckFailedException");
                refused.body =
                    json!({"__type": "ConditionalCheckFailedException", "message": "m", "Item": item}).to_string();
                refused
            }
        }
    });
    let server = Server::start(handler);
    let clients = Clients::connect(Some(&server.url), Some("us-east-1")).await;
    let store = DynamoStore::new(&clients, "events");
    store.get_event(&build::id("anything")).await.expect("the stand-in's GetItem");
    let record = build::record("ev-landed", None, None, build::t0());
    store.commit_as("commit-landed", vec![Write::event(record.clone())]).await.expect("our own earlier success");
    assert_eq!(*attempts.lock().expect("attempts"), 2);
    // Another commit finding the same item stored is a conflict.
    assert!(matches!(store.commit(vec![Write::event(record)]).await, Err(StoreError::Conflict(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_the_mirror_reads_and_writes_direct_after_its_first_request_and_reads_a_canceled_transaction() {
    // The stand-in finds nothing stored; it commits the first transaction and cancels the second on the effect's
    // condition, returning the effect the request carried (so the mirror recognises its own commit id).
    let seen: Arc<Mutex<Vec<Request>>> = Arc::default();
    let log = Arc::clone(&seen);
    let handler: Handler = Arc::new(move |request: Request| {
        let target = request.headers.get("x-amz-target").cloned().unwrap_or_default();
        let mut log = log.lock().expect("requests");
        log.push(request.clone());
        let transactions = log.iter().filter(|r| r.headers.get("x-amz-target") == Some(&target)).count();
        match target.as_str() {
            "DynamoDB_20120810.BatchGetItem" => Response::json(200, &json!({"Responses": {"events": []}})),
            "DynamoDB_20120810.TransactWriteItems" if transactions > 1 => {
                let effect = request.body["TransactItems"][1]["Put"]["Item"].clone();
                let reasons = json!([{"Code": "None"}, {"Code": "ConditionalCheckFailed", "Item": effect}]);
                let body = json!({"__type": "TransactionCanceledException", "message": "canceled", "CancellationReasons": reasons});
                Response::json(400, &body)
            }
            _ => Response::json(200, &json!({})),
        }
    });
    let server = Server::start(handler);
    let clients = Clients::connect(Some(&server.url), Some("us-east-1")).await;
    let mirror = DynamoMirror::new(&clients, "events", Arc::new(SystemClock), Default::default());
    let e = build::entity("direct");
    let (first, second) = (build::id("ev-1"), build::id("ev-2"));
    let (v1, v2) = (json!({"n": 1}), json!({"n": 2}));
    assert_eq!(mirror.apply(&build::snapshot(&first, &e, 10, &v1, 1)).await, Ok(ApplyOutcome::Applied));
    assert_eq!(mirror.apply(&build::snapshot(&second, &e, 20, &v2, 2)).await, Ok(ApplyOutcome::Applied));

    let seen = seen.lock().expect("requests");
    let kinds: Vec<(String, bool)> = seen
        .iter()
        .map(|r| (r.headers["x-amz-target"].clone(), r.headers.contains_key("amz-sdk-invocation-id")))
        .collect();
    let op = |name: &str, sdk: bool| (format!("DynamoDB_20120810.{name}"), sdk);
    assert_eq!(
        kinds,
        vec![
            op("BatchGetItem", true),
            op("TransactWriteItems", false),
            op("BatchGetItem", false),
            op("TransactWriteItems", false)
        ],
        "the SDK's first request, every later one direct"
    );
    let transaction = &seen[1].body;
    assert_eq!(transaction["TransactItems"][1]["Put"]["ConditionExpression"], "attribute_not_exists(pk)");
    assert_eq!(transaction["TransactItems"][1]["Put"]["ReturnValuesOnConditionCheckFailure"], "ALL_OLD");
    let token = transaction["ClientRequestToken"].as_str().expect("a ClientRequestToken");
    assert_eq!(token.len(), 32, "{token}");
    assert_ne!(seen[3].body["ClientRequestToken"], transaction["ClientRequestToken"], "one token per call");
    assert_eq!(seen[2].body["RequestItems"]["events"]["ConsistentRead"], true);
    assert_eq!(clients.requests.get("DynamoDB", "TransactWriteItems"), 2);
    assert_eq!(clients.requests.get("DynamoDB", "BatchGetItem"), 2);
}
