//! Checks only the AWS backend needs: DynamoDB condition failures and retried writes, S3 checksums and
//! lifecycle, SQS trace headers and dead letters, request accounting. Run on the moto server of
//! `scripts/with-moto.sh`; the ports' common contract is in `conformance.rs` (module `conformance::aws`).

use crate::conformance::aws::{fixture, AwsFixture};
use crate::conformance::build;
use chrono::Duration;
use std::sync::Arc;
use synctrail::model::{EntityHead, ErrorInfo, ErrorKind, Status};
use synctrail::store::aws::sdk::s3::operation::get_bucket_lifecycle_configuration as lifecycle;
use synctrail::store::aws::sdk::s3::primitives::ByteStream;
use synctrail::store::aws::sdk::s3::types::{StorageClass, TransitionStorageClass};
use synctrail::store::aws::{apply_lifecycle, S3Payloads};
use synctrail::store::{EventStore, Expect, OutgoingMessage, PayloadStore, Queue, StoreError, Write};
use synctrail::{Engine, Incoming, Invocation, Settings, SystemClock};

async fn raw_object(f: &AwsFixture, key: &str) -> Vec<u8> {
    let out = f.clients.s3.get_object().bucket(&f.created.bucket).key(key).send().await.expect("get object");
    out.body.collect().await.expect("object body").into_bytes().to_vec()
}

/// The AWS store, payloads and queue of `f` with an embedded mirror (in the returned directory) as the destination:
/// the framework's own requests, counted without the mirror's.
pub(crate) fn ports_over_an_embedded_mirror(f: &AwsFixture) -> (tempfile::TempDir, synctrail::Ports) {
    let home = tempfile::tempdir().expect("temp dir");
    let embedded = synctrail::store::sqlite::Embedded::open(home.path(), Arc::new(SystemClock), Default::default())
        .expect("embedded mirror as the destination");
    let ports = synctrail::Ports {
        store: f.backend.store.clone(),
        payloads: f.backend.payloads.clone(),
        queue: f.backend.queue.clone(),
        destination: embedded.mirror.clone(),
        clock: Arc::new(SystemClock),
    };
    (home, ports)
}

fn count(f: &AwsFixture, service: &str, operation: &str) -> u64 {
    f.clients.requests.get(service, operation)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_a_condition_failure_is_a_conflict_never_an_error() {
    let f = fixture().await;
    let store = &f.backend.store;
    let e = build::entity("a");
    let record = build::record("ev-1", Some(&e), Some(build::order(1)), build::t0());
    store.commit(vec![Write::event(record.clone())]).await.expect("insert");
    let mut other = record.clone();
    other.status = Status::Rejected;
    match store.commit(vec![Write::event(other)]).await {
        Err(StoreError::Conflict(message)) => {
            assert!(message.contains("event ev-1: expected it absent, found version 1"), "{message}")
        }
        got => panic!("expected Conflict, got {got:?}"),
    }
    let stale = Write::Event { record: Box::new(build::stored(record)), expect: Expect::Version(7) };
    match store.commit(vec![stale]).await {
        Err(StoreError::Conflict(message)) => {
            assert!(message.contains("expected version 7, found version 1"), "{message}")
        }
        got => panic!("expected Conflict, got {got:?}"),
    }
    // In a transaction too, and the message names the write that failed.
    let head = Write::head(EntityHead::empty(e.clone(), build::t0()));
    let again = Write::event(build::record("ev-1", Some(&e), Some(build::order(1)), build::t0()));
    match store.commit(vec![head, again]).await {
        Err(StoreError::Conflict(message)) => assert!(message.contains("event ev-1"), "{message}"),
        got => panic!("expected Conflict, got {got:?}"),
    }
    assert_eq!(store.get_head(&e).await.expect("get"), None, "the transaction wrote nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_a_retried_write_that_committed_is_recognised_as_ours() {
    let f = fixture().await;
    let store = &f.backend.store;
    let e = build::entity("a");
    let record = build::record("ev-1", Some(&e), Some(build::order(1)), build::t0());

    // PutItem: the retry of a committed attempt (same commit id, same item) fails its condition but is ours.
    store.commit_as("commit-1", vec![Write::event(record.clone())]).await.expect("first attempt");
    store.commit_as("commit-1", vec![Write::event(record.clone())]).await.expect("the retry is our own success");
    // Another body under the same expectation is a conflict, even with the same commit id…
    let mut changed = record.clone();
    changed.status = Status::Rejected;
    assert!(matches!(store.commit_as("commit-1", vec![Write::event(changed)]).await, Err(StoreError::Conflict(_))));
    // …and so is the very same write from another commit: two writers never both win.
    assert!(matches!(store.commit(vec![Write::event(record.clone())]).await, Err(StoreError::Conflict(_))));
    assert_eq!(store.get_event(&build::id("ev-1")).await.expect("get"), Some(build::stored(record.clone())));

    // An update (expect version 1) retried after it committed.
    let mut processing = build::stored(record);
    processing.status = Status::Processing;
    store.commit_as("commit-2", vec![Write::event(processing.clone())]).await.expect("update");
    store.commit_as("commit-2", vec![Write::event(processing.clone())]).await.expect("retried update");
    assert_eq!(store.get_event(&build::id("ev-1")).await.expect("get").map(|r| r.version), Some(2));

    // TransactWriteItems: every item's condition fails with our own item → ours.
    let head = EntityHead::empty(e.clone(), build::t0());
    let second = build::record("ev-2", Some(&e), Some(build::order(2)), build::t0());
    let writes = || vec![Write::event(second.clone()), Write::head(head.clone())];
    store.commit_as("commit-3", writes()).await.expect("transaction");
    store.commit_as("commit-3", writes()).await.expect("retried transaction");
    assert!(matches!(store.commit_as("commit-4", writes()).await, Err(StoreError::Conflict(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_an_item_over_the_size_limit_is_refused_before_sending() {
    let f = fixture().await;
    let mut record = build::record("ev-big", None, None, build::t0());
    record.error = Some(ErrorInfo {
        kind: ErrorKind::Retryable,
        // Random text: the body is stored compressed, so only an incompressible message overflows the limit.
        message: (0..600 * 1024).map(|_| char::from(b'a' + rand::random::<u8>() % 26)).collect(),
        retryable: true,
        causes: Vec::new(),
        field: None,
    });
    f.clients.requests.reset();
    match f.backend.store.commit(vec![Write::event(record)]).await {
        Err(StoreError::Backend(message)) => {
            assert!(message.contains("event ev-big") && message.contains("limit"), "{message}")
        }
        got => panic!("expected Backend, got {got:?}"),
    }
    assert_eq!(f.clients.requests.total(), 0, "nothing was sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_a_payload_whose_sha256_does_not_match_is_corrupt_naming_the_key() {
    let f = fixture().await;
    let payloads = &f.backend.payloads;
    let payload = payloads.put(b"{\"price\": 10}", build::at(3600 * 13)).await.expect("put");
    assert_eq!(payload.key, format!("payloads/2026/05/02/{}.zst", payload.sha256), "dated by received_at (UTC)");
    let head = f.clients.s3.head_object().bucket(&f.created.bucket).key(&payload.key).send().await.expect("head");
    assert_eq!(head.metadata().and_then(|m| m.get("sha256")), Some(&payload.sha256));

    let other = payloads.put(b"{\"price\": 99}", build::t0()).await.expect("put other");
    let other = raw_object(&f, &other.key).await;
    let put = f.clients.s3.put_object().bucket(&f.created.bucket).key(&payload.key).body(ByteStream::from(other));
    put.send().await.expect("overwrite");
    match payloads.get(&payload).await {
        Err(StoreError::Corrupt(message)) => {
            assert!(message.contains(&format!("s3://{}/{}", f.created.bucket, payload.key)), "{message}");
            assert!(message.contains("SHA-256"), "{message}");
        }
        got => panic!("expected Corrupt, got {got:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_an_archived_payload_says_it_must_be_restored() {
    let f = fixture().await;
    let payload = f.backend.payloads.put(b"old", build::t0()).await.expect("put");
    // What the lifecycle rule does after 30 days (moto never applies rules): the object is in GLACIER.
    let glacier = f
        .clients
        .s3
        .put_object()
        .bucket(&f.created.bucket)
        .key(&payload.key)
        .storage_class(StorageClass::Glacier)
        .body(ByteStream::from(raw_object(&f, &payload.key).await));
    glacier.send().await.expect("archive");
    match f.backend.payloads.get(&payload).await {
        Err(StoreError::Archived(message)) => assert!(message.contains("restore"), "{message}"),
        got => panic!("expected Archived, got {got:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_the_payload_lifecycle_is_applied() {
    let f = fixture().await;
    let bucket = &f.created.bucket;
    let rules = |out: lifecycle::GetBucketLifecycleConfigurationOutput| {
        let rule = out.rules().first().cloned().expect("one rule");
        let transition = rule.transitions().first().cloned().expect("a transition");
        (
            rule.filter().and_then(|flt| flt.prefix().map(str::to_owned)),
            transition.days(),
            transition.storage_class().cloned(),
            rule.expiration().and_then(|x| x.days()),
        )
    };
    // create_all applied the defaults: GLACIER after 30 days, gone after 400.
    let got = f.clients.s3.get_bucket_lifecycle_configuration().bucket(bucket).send().await.expect("get");
    assert_eq!(rules(got), (Some("payloads/".into()), Some(30), Some(TransitionStorageClass::Glacier), Some(400)));
    apply_lifecycle(&f.clients.s3, bucket, 30, 90).await.expect("apply");
    let got = f.clients.s3.get_bucket_lifecycle_configuration().bucket(bucket).send().await.expect("get");
    assert_eq!(rules(got).3, Some(90));
    let payloads = S3Payloads::new(f.clients.s3.clone(), bucket);
    assert!(matches!(payloads.apply_lifecycle(30, 30).await, Err(StoreError::Backend(_))), "expiry after archiving");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_a_trace_header_round_trips_through_sqs() {
    let f = fixture().await;
    let queue = &f.backend.queue;
    let traced = OutgoingMessage {
        trace_header: Some("Root=1-5759e988-bd862e3fe1be46a994272793".into()),
        ..OutgoingMessage::new("t")
    };
    queue.send(vec![traced.clone()]).await.expect("send");
    let got = queue.receive(10, Duration::seconds(30)).await.expect("receive");
    assert_eq!(got[0].trace_header, traced.trace_header);
    // It survives a move to the dead-letter queue.
    queue.dead_letter(&got[0].receipt_handle, &got[0].body, got[0].trace_header.as_deref()).await.expect("dead letter");
    let dlq = f
        .clients
        .sqs
        .receive_message()
        .queue_url(&f.created.dlq_url)
        .message_system_attribute_names(
            synctrail::store::aws::sdk::sqs::types::MessageSystemAttributeName::AwsTraceHeader,
        )
        .send()
        .await
        .expect("receive from the DLQ");
    let moved = dlq.messages().first().cloned().expect("a dead letter");
    let trace = moved
        .attributes()
        .and_then(|a| a.get(&synctrail::store::aws::sdk::sqs::types::MessageSystemAttributeName::AwsTraceHeader));
    assert_eq!(trace, traced.trace_header.as_ref());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_dead_letter_moves_the_body_to_the_dlq() {
    let f = fixture().await;
    let queue = &f.backend.queue;
    queue.send(vec![OutgoingMessage::new("{\"poison\": true}")]).await.expect("send");
    let got = queue.receive(1, Duration::seconds(30)).await.expect("receive").remove(0);
    queue.dead_letter(&got.receipt_handle, &got.body, None).await.expect("dead letter");
    let depth = queue.depth().await.expect("depth");
    assert_eq!((depth.visible, depth.in_flight, depth.dead_letters), (0, 0, 1));
    let dlq = f.clients.sqs.receive_message().queue_url(&f.created.dlq_url).send().await.expect("receive");
    assert_eq!(dlq.messages().first().and_then(|m| m.body()), Some("{\"poison\": true}"));

    // A message this adapter did not receive (a Lambda event's record): the caller's body is what moves.
    queue.send(vec![OutgoingMessage::new("from lambda")]).await.expect("send");
    let raw = f.clients.sqs.receive_message().queue_url(&f.created.queue_url).send().await.expect("receive");
    let record = raw.messages().first().cloned().expect("a message");
    let handle = record.receipt_handle().expect("handle").to_owned();
    queue.dead_letter(&handle, record.body().unwrap_or_default(), None).await.expect("dead letter");
    assert_eq!(queue.depth().await.expect("depth").dead_letters, 2);

    // A handle SQS no longer takes (its visibility ended): the copy in the DLQ is the move; the failed delete is
    // not an error, which would have the caller retry the message and dead-letter it a second time.
    queue.dead_letter("an-expired-receipt-handle", "expired", None).await.expect("moved though not deleted");
    assert_eq!(queue.depth().await.expect("depth").dead_letters, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_the_request_counter_counts_operations() {
    let f = fixture().await;
    let store = &f.backend.store;
    let e = build::entity("a");
    f.clients.requests.reset();
    let writes = vec![
        Write::event(build::record("ev-1", Some(&e), Some(build::order(1)), build::t0())),
        Write::head(EntityHead::empty(e.clone(), build::t0())),
    ];
    store.commit(writes).await.expect("commit two writes");
    assert_eq!((count(&f, "DynamoDB", "TransactWriteItems"), count(&f, "DynamoDB", "PutItem")), (1, 0));
    store.commit(vec![Write::event(build::record("ev-2", None, None, build::t0()))]).await.expect("commit one");
    assert_eq!(count(&f, "DynamoDB", "PutItem"), 1);
    store.get_event(&build::id("ev-1")).await.expect("get");
    assert_eq!(count(&f, "DynamoDB", "GetItem"), 1);
    store.get_event_and_head(&build::id("ev-1"), &e).await.expect("get both");
    assert_eq!((count(&f, "DynamoDB", "BatchGetItem"), count(&f, "DynamoDB", "GetItem")), (1, 1), "one request");
    store.count_inflight().await.expect("count");
    assert_eq!(count(&f, "DynamoDB", "Query"), u64::from(synctrail::store::aws::LEASE_SHARDS));
    f.backend.queue.send(vec![OutgoingMessage::new("a")]).await.expect("send one");
    f.backend.queue.send(vec![OutgoingMessage::new("b"), OutgoingMessage::new("c")]).await.expect("send two");
    assert_eq!((count(&f, "SQS", "SendMessage"), count(&f, "SQS", "SendMessageBatch")), (1, 1));
    f.backend.payloads.put(b"x", build::t0()).await.expect("put");
    assert_eq!(count(&f, "S3", "PutObject"), 1);
    // Nothing else was sent: every request the calls above made, each counted once.
    let expected: std::collections::BTreeMap<(String, String), u64> = [
        ("DynamoDB", "TransactWriteItems", 1),
        ("DynamoDB", "PutItem", 1),
        ("DynamoDB", "GetItem", 1),
        ("DynamoDB", "BatchGetItem", 1),
        ("DynamoDB", "Query", u64::from(synctrail::store::aws::LEASE_SHARDS)),
        ("SQS", "SendMessage", 1),
        ("SQS", "SendMessageBatch", 1),
        ("S3", "PutObject", 1),
    ]
    .into_iter()
    .map(|(service, operation, n)| ((service.to_owned(), operation.to_owned()), n))
    .collect();
    assert_eq!(f.clients.requests.snapshot(), expected);
    assert_eq!(f.clients.requests.total(), 7 + u64::from(synctrail::store::aws::LEASE_SHARDS));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_one_happy_path_event_costs_few_requests() {
    let f = fixture().await;
    let (_home, ports) = ports_over_an_embedded_mirror(&f);
    let engine = Engine::new(ports, Settings::default());
    let body = serde_json::json!({
        "event_id": "ev-happy", "source": "shop", "entity_type": "product", "external_id": "p1",
        "updated_at": "2026-05-01T12:00:00Z", "payload": {"name": "one"}
    })
    .to_string();
    let incoming = Incoming { message_id: "m-1".into(), body, receive_count: 1, trace_header: None };
    f.clients.requests.reset();
    let outcome = engine.process(&incoming, &Invocation::default()).await.expect("process");
    assert_eq!(outcome.status, Some(Status::Completed), "{outcome:?}");
    let first = f.clients.requests.snapshot();
    f.clients.requests.reset();
    let again = engine.process(&incoming, &Invocation::default()).await.expect("redelivery");
    assert!(again.redelivered, "{again:?}");
    let redelivery = f.clients.requests.snapshot();
    eprintln!("requests for one new event: {first:?}");
    eprintln!("requests for its redelivery: {redelivery:?}");
    let writes = |s: &std::collections::BTreeMap<(String, String), u64>| {
        s.iter()
            .filter(|((svc, op), _)| svc == "DynamoDB" && (op == "PutItem" || op == "TransactWriteItems"))
            .map(|(_, n)| n)
            .sum::<u64>()
    };
    assert!(writes(&first) <= 4, "{first:?}");
    assert!(first.values().sum::<u64>() <= 10, "{first:?}");
    assert!(writes(&redelivery) <= 1, "{redelivery:?}");
}

/// Spec §9 "A backlog no larger than its head's budget": events with 128-character ids queued behind a busy
/// `in_order` entity take only the backlog slots that keep its head's item under 1 KB (one write unit a write), though
/// the backlog's size (8) has room for more; the rest are parked. Each head written stays under 1 KB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_a_busy_in_order_entitys_head_stays_under_one_kb_with_long_event_ids() {
    use crate::support::Env;
    use synctrail::model::{Inflight, Slot};
    use synctrail::store::aws::meter::size::item_size;
    use synctrail::store::aws::sdk::dynamodb::types::AttributeValue;
    let f = fixture().await;
    let (_home, ports) = ports_over_an_embedded_mirror(&f);
    let engine = Engine::new(ports, crate::support::settings());
    // Random-looking, as GUIDs and hashes are: ids that repeat themselves compress to little.
    let hex = |n: u32| synctrail::model::ContentHash::of(&n.to_be_bytes()).to_hex();
    let long_id = |n: u32| format!("{n:02}-{}{}", hex(n), hex(n + 1_000))[..128].to_owned();
    let events: Vec<Env> =
        (1..=10).map(|n| Env::adjustment("sku-long").at(i64::from(n) * 10).delta(1).id(&long_id(n))).collect();
    let entity = events[0].entity();
    // Another event holds the entity under a lease that runs for the whole test.
    let holder = Slot {
        event_id: build::id(&long_id(0)),
        order: build::order(1),
        content_hash: synctrail::model::ContentHash::of(b"holder"),
    };
    let mut head = EntityHead::empty(entity.clone(), chrono::Utc::now());
    head.inflight = Some(Inflight {
        slot: holder,
        lease_until: chrono::Utc::now() + Duration::hours(1),
        fence: 1,
        errored: false,
        promoted: false,
        attempt: 1,
        earliest_lease_until: None,
    });
    f.backend.store.commit(vec![Write::head(head)]).await.expect("a busy entity");
    let head_item_size = || async {
        let key = [("pk", format!("HEAD#{entity}")), ("sk", "HEAD".to_owned())];
        let get = key.into_iter().fold(f.clients.dynamodb.get_item().table_name(&f.created.table), |get, (k, v)| {
            get.key(k, AttributeValue::S(v))
        });
        item_size(&get.consistent_read(true).send().await.expect("get the head").item.expect("the head"))
    };
    for (n, event) in events.iter().enumerate() {
        let incoming =
            Incoming { message_id: format!("m-{n}"), body: event.body(), receive_count: 1, trace_header: None };
        let outcome = engine.process(&incoming, &Invocation::default()).await.expect("process");
        assert_eq!(outcome.status, Some(Status::Queued), "{outcome:?}");
        let size = head_item_size().await;
        assert!(size <= 1024, "after event {n}, the head's item is {size} bytes");
    }
    let head = f.backend.store.get_head(&entity).await.expect("read").expect("the head");
    assert!((1..8).contains(&head.backlog.len()), "{} events in the backlog", head.backlog.len());
    assert_eq!(head.backlog.len() + head.parked as usize, 10, "the others are parked: {head:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_a_reprocess_goes_to_the_queue_of_the_processor_that_handled_the_event() {
    let f = fixture().await;
    let other = f.clients.sqs.create_queue().queue_name(format!("{}-erp", f.created.table)).send().await;
    let other_url = other.expect("a second processor's queue").queue_url.expect("its URL");
    let mut settings = Settings::default();
    settings.redrive_queues.insert("synctrail-erp-processor".into(), other_url.clone());
    let (_home, ports) = ports_over_an_embedded_mirror(&f);
    let engine = Engine::new(ports, settings);
    let handled_by = |id: &str, function: &str| {
        let body = serde_json::json!({"event_id": id, "source": "erp", "entity_type": "order", "external_id": id,
                                      "updated_at": "2026-05-01T12:00:00Z", "payload": {}});
        let incoming =
            Incoming { message_id: format!("m-{id}"), body: body.to_string(), receive_count: 1, trace_header: None };
        let invocation = Invocation { function: Some(function.to_owned()), ..Invocation::default() };
        (incoming, invocation)
    };
    for (id, function) in [("ev-erp", "synctrail-erp-processor:4"), ("ev-main", "synctrail-processor:9")] {
        let (incoming, invocation) = handled_by(id, function);
        let outcome = engine.process(&incoming, &invocation).await.expect("process");
        assert_eq!(outcome.status, Some(Status::Completed));
    }

    let ids = ["ev-erp", "ev-main"].map(|id| synctrail::model::EventId::parse(id).expect("id"));
    let report = engine.reprocess(&ids, &synctrail::engine::ReprocessOptions::default(), &mut |_| {}).await;

    assert_eq!(report.sent.len(), 2, "{report:?}");
    assert_eq!(report.sent[0].queue.as_deref(), Some(other_url.as_str()));
    assert_eq!(report.sent[1].queue, None, "an unlisted processor's event goes to the one queue");
    let received = f.clients.sqs.receive_message().queue_url(&other_url).max_number_of_messages(10).send().await;
    let bodies: Vec<String> =
        received.expect("receive").messages.unwrap_or_default().into_iter().filter_map(|m| m.body).collect();
    assert!(matches!(bodies.as_slice(), [body] if body.contains("ev-erp")), "{bodies:?}");
    let main = f.backend.queue.receive(10, Duration::seconds(30)).await.expect("receive");
    assert!(matches!(main.as_slice(), [m] if m.body.contains("ev-main")), "{main:?}");
}

/// A destination that refuses every change for good.
struct RefusesEverything;

#[async_trait::async_trait]
impl synctrail::Destination for RefusesEverything {
    async fn apply(&self, _: &synctrail::Change<'_>) -> Result<synctrail::ApplyOutcome, synctrail::DestinationError> {
        Err(synctrail::DestinationError::Permanent("refused (test)".into()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_a_dead_letter_moved_back_goes_to_the_queue_of_the_processor_that_handled_its_event() {
    let f = fixture().await;
    let other = f.clients.sqs.create_queue().queue_name(format!("{}-erp-back", f.created.table)).send().await;
    let other_url = other.expect("a second processor's queue").queue_url.expect("its URL");
    let mut settings = Settings::default();
    settings.redrive_queues.insert("synctrail-erp-processor".into(), other_url.clone());
    let (_home, mut ports) = ports_over_an_embedded_mirror(&f);
    ports.destination = Arc::new(RefusesEverything);
    let engine = Engine::new(ports, settings);
    let body = serde_json::json!({"event_id": "ev-dead", "source": "erp", "entity_type": "order", "external_id": "o-1",
                                  "updated_at": "2026-05-01T12:00:00Z", "payload": {}})
    .to_string();
    let incoming = Incoming { message_id: "m-dead".into(), body: body.clone(), receive_count: 1, trace_header: None };
    let invocation = Invocation { function: Some("synctrail-erp-processor:4".into()), ..Invocation::default() };
    let outcome = engine.process(&incoming, &invocation).await.expect("process");
    assert_eq!(outcome.status, Some(Status::Failed));
    // Its message in the dead-letter queue, as the erp processor's queue would leave it there.
    f.clients.sqs.send_message().queue_url(&f.created.dlq_url).message_body(&body).send().await.expect("dead letter");

    let pass = engine.redrive_dead_letters(10, false, &Invocation::default()).await.expect("move back");

    assert_eq!(pass.moved, 1, "{pass:?}");
    let received = f.clients.sqs.receive_message().queue_url(&other_url).max_number_of_messages(10).send().await;
    let bodies: Vec<String> =
        received.expect("receive").messages.unwrap_or_default().into_iter().filter_map(|m| m.body).collect();
    assert!(matches!(bodies.as_slice(), [b] if b.contains("ev-dead")), "on the erp processor's queue: {bodies:?}");
    assert!(f.backend.queue.receive(10, Duration::seconds(30)).await.expect("receive").is_empty(), "not the main one");
    assert_eq!(f.backend.queue.depth().await.expect("depth").dead_letters, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_a_cold_start_that_knows_the_receive_limit_makes_no_request() {
    let f = fixture().await;
    let mut config = f.created.config(Some(crate::conformance::aws::endpoint()), Some("us-east-1".into()));
    config.max_receives = Some(7);
    f.clients.requests.reset();

    let backend = synctrail::store::aws::AwsBackend::with_clients(&f.clients, &config).await.expect("connect");

    assert_eq!(f.clients.requests.total(), 0, "{:?}", f.clients.requests.snapshot());
    assert_eq!(backend.queue.max_receives(), 7);
    config.max_receives = None;
    synctrail::store::aws::AwsBackend::with_clients(&f.clients, &config).await.expect("connect");
    assert!(count(&f, "SQS", "GetQueueAttributes") >= 1, "without it, the redrive policy is read and checked");
}

/// Items written before `by_status` was sharded (partition `STATUS#<status>`, a `status` attribute) are still listed
/// and counted; items written now carry no `status` attribute and sit in one of the status's shards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_events_written_before_the_status_index_was_sharded_are_still_listed_and_counted() {
    use synctrail::store::aws::sdk::dynamodb::types::AttributeValue;
    use synctrail::store::EventQuery;
    let f = fixture().await;
    let store = &f.backend.store;
    let e = build::entity("a");
    for (id, seconds) in [("ev-old", 1), ("ev-new", 2)] {
        let mut record = build::record(id, Some(&e), Some(build::order(seconds)), build::at(seconds));
        record.status = Status::Completed;
        store.commit(vec![Write::event(record)]).await.expect("insert");
    }
    let key = |id: &str| {
        [("pk", AttributeValue::S(format!("EVENT#{id}"))), ("sk", AttributeValue::S("EVENT".into()))]
            .into_iter()
            .fold(f.clients.dynamodb.get_item().table_name(&f.created.table), |get, (k, v)| get.key(k, v))
    };
    let new = key("ev-new").send().await.expect("get").item.expect("stored");
    let partition = new.get("gsi1pk").and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
    assert!(partition.starts_with("STATUS#completed#"), "{partition}");
    assert!(!new.contains_key("status"), "no status attribute: {new:?}");
    let mut old = key("ev-old").send().await.expect("get").item.expect("stored");
    old.insert("gsi1pk".into(), AttributeValue::S("STATUS#completed".into()));
    old.insert("status".into(), AttributeValue::S("completed".into()));
    f.clients.dynamodb.put_item().table_name(&f.created.table).set_item(Some(old)).send().await.expect("as before");

    let completed = EventQuery { status: Some(Status::Completed), ..EventQuery::default() };
    let listed: Vec<String> =
        store.list_events(&completed).await.expect("list").into_iter().map(|r| r.event_id.to_string()).collect();
    assert_eq!(listed, ["ev-new", "ev-old"], "newest first across the shards and the legacy partition");
    let newest = EventQuery { limit: 1, ..completed.clone() };
    assert_eq!(store.list_events(&newest).await.expect("list").len(), 1);
    assert_eq!(store.count_by_status().await.expect("count").get(&Status::Completed), Some(&2));
    assert_eq!(store.count_events(&newest).await.expect("count"), 2, "the legacy partition is counted too");
    let failed = EventQuery { status: Some(Status::Failed), entity: Some(e), ..EventQuery::default() };
    assert!(store.list_events(&failed).await.expect("list").is_empty(), "the old status attribute is not trusted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_a_retry_moving_the_lease_later_leaves_the_heads_lease_index_entry_where_it_is() {
    use synctrail::store::aws::sdk::dynamodb::types::AttributeValue;
    let f = fixture().await;
    let store = &f.backend.store;
    let e = build::entity("a");
    let head = build::head_in_flight(&e, "ev-1", build::at(10), 1);
    store.commit(vec![Write::head(head)]).await.expect("claimed");
    let indexed = || async {
        let get = [("pk", AttributeValue::S(format!("HEAD#{e}"))), ("sk", AttributeValue::S("HEAD".into()))]
            .into_iter()
            .fold(f.clients.dynamodb.get_item().table_name(&f.created.table), |get, (k, v)| get.key(k, v));
        let item = get.send().await.expect("get").item.expect("stored");
        item.get("lease_until").and_then(|v| v.as_n().ok()).cloned().expect("in the lease index")
    };
    let claimed = indexed().await;
    let nanos = |t: chrono::DateTime<chrono::Utc>| t.timestamp_nanos_opt().expect("in range").to_string();
    assert_eq!(claimed, nanos(build::at(10)));

    let mut errored = store.get_head(&e).await.expect("read").expect("stored");
    if let Some(inflight) = errored.inflight.as_mut() {
        inflight.errored = true;
        inflight.move_lease(build::at(100));
    }
    store.commit(vec![Write::head(errored)]).await.expect("the failed attempt's head");

    assert_eq!(indexed().await, claimed, "the entry's sort key did not change: no index write");
    let lease = store.get_head(&e).await.expect("read").and_then(|h| h.inflight).map(|i| i.lease_until);
    assert_eq!(lease, Some(build::at(100)), "the head's lease moved");
    assert!(store.expired_leases(build::at(50), 10).await.expect("leases").is_empty(), "not expired before it ends");
    assert_eq!(store.expired_leases(build::at(101), 10).await.expect("leases").len(), 1);
}

/// What `synctrail list` prints under a page ("showing 50 of N"): counting the events of a status, of a status in a
/// window, of an entity, of a dependency or of the whole table finds what listing them finds, with `Select=COUNT`
/// requests only — one `Query` per partition of the status, no record read (`BatchGetItem`), however many there are.
/// An empty window asks nothing at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_counting_events_reads_no_record() {
    use synctrail::store::EventQuery;
    let f = fixture().await;
    let store = &f.backend.store;
    let (a, b) = (build::entity("a"), build::entity("b"));
    for n in 1..=30 {
        let e = if n % 3 == 0 { &b } else { &a };
        let mut record = build::record(&format!("ev-{n:02}"), Some(e), Some(build::order(n)), build::at(n));
        record.status = if n % 10 == 0 { Status::Failed } else { Status::Completed };
        if n == 30 {
            record.status = Status::Waiting;
            record.waiting_for = Some(a.to_string());
            record.waiting_since = Some(build::at(n));
        }
        store.commit(vec![Write::event(record)]).await.expect("insert");
    }
    let completed = EventQuery { status: Some(Status::Completed), limit: 5, ..EventQuery::default() };
    let partitions = u64::from(synctrail::store::aws::STATUS_SHARDS) + 1;
    let shapes = [
        (completed.clone(), 27, partitions),
        (EventQuery { since: Some(build::at(11)), until: Some(build::at(21)), ..completed.clone() }, 9, partitions),
        (EventQuery { status: Some(Status::Failed), ..EventQuery::default() }, 2, partitions),
        (EventQuery { entity: Some(b.clone()), ..EventQuery::default() }, 10, 1),
        (EventQuery { waiting_for: Some(a.to_string()), ..EventQuery::default() }, 1, 1),
    ];
    for (query, expected, queries) in shapes {
        let listed = store.list_events(&EventQuery { limit: 0, ..query.clone() }).await.expect("list").len();
        f.clients.requests.reset();
        let counted = store.count_events(&query).await.expect("count");
        assert_eq!((listed as u64, counted), (expected, expected), "listed, counted: {query:?}");
        let requests = f.clients.requests.snapshot();
        assert_eq!(count(&f, "DynamoDB", "BatchGetItem"), 0, "{query:?}: {requests:?}");
        assert_eq!(
            (count(&f, "DynamoDB", "Query"), f.clients.requests.total()),
            (queries, queries),
            "{query:?}: {requests:?}"
        );
    }
    f.clients.requests.reset();
    assert_eq!(store.count_events(&EventQuery::default()).await.expect("count"), 30);
    assert_eq!(count(&f, "DynamoDB", "BatchGetItem"), 0, "{:?}", f.clients.requests.snapshot());
}

/// A time window that ends where or before it starts is answered empty without a request: by status, it would be
/// a key condition `BETWEEN low AND high` with `low` above `high`, which DynamoDB refuses (`ValidationException`;
/// moto 5.2.1 answers it, so the conformance check `an_empty_time_window_lists_and_counts_nothing` alone can't
/// tell).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_an_empty_time_window_asks_dynamodb_nothing() {
    use synctrail::store::EventQuery;
    let f = fixture().await;
    let store = &f.backend.store;
    let mut failed = build::record("ev-1", Some(&build::entity("a")), Some(build::order(1)), build::at(15));
    failed.status = Status::Failed;
    store.commit(vec![Write::event(failed)]).await.expect("insert");
    f.clients.requests.reset();
    for (since, until) in [(build::at(20), build::at(10)), (build::at(15), build::at(15))] {
        let by_status = EventQuery {
            status: Some(Status::Failed),
            since: Some(since),
            until: Some(until),
            ..EventQuery::default()
        };
        let of_entity = EventQuery { status: None, entity: Some(build::entity("a")), ..by_status.clone() };
        for query in [by_status, of_entity] {
            assert!(store.list_events(&query).await.expect("list").is_empty(), "{query:?}");
            assert_eq!(store.count_events(&query).await.expect("count"), 0, "{query:?}");
        }
    }
    assert_eq!(f.clients.requests.total(), 0, "{:?}", f.clients.requests.snapshot());
}
