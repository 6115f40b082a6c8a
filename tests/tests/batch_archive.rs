//! One archive write per batch (issue 12): the processor archives the bodies of a batch's new events and
//! rejected messages in one payload write — on S3 one object, each body its own zstd frame, read back by byte
//! range and checked — and loses nothing when that write fails. AWS checks (`aws_…`) run on the moto server of
//! `scripts/with-moto.sh`; the port's batch contract is in `conformance.rs`.

use crate::aws::ports_over_an_embedded_mirror;
use crate::conformance::aws::{fixture, AwsFixture};
use crate::support::{self, Env};
use async_trait::async_trait;
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use synctrail::engine::ReprocessOptions;
use synctrail::model::{canonical_json, EventId, EventRecord, PayloadRef, Status};
use synctrail::store::aws::sdk::s3::primitives::ByteStream;
use synctrail::store::{EventStore, PayloadStore, Queue, StoreError};
use synctrail::{Engine, Settings};
use synctrail_processor::{BatchResult, InvocationContext, Processor, RecordResult};

/// An invocation with minutes left.
fn context() -> InvocationContext {
    InvocationContext {
        request_id: "req-batch".to_owned(),
        deadline: Utc::now() + Duration::minutes(5),
        function: Some("synctrail-processor:1".to_owned()),
        trace_id: None,
    }
}

/// `bodies` as one SQS batch (no receipt handles: nothing to delete or delay). A message id is made of the body, as
/// SQS keeps one id for one message: the same body again is a redelivery of the same message, another body (a
/// re-drive) another message.
fn batch_of(bodies: &[String]) -> SqsEvent {
    let message = |(n, body): (usize, &String)| {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        body.hash(&mut hasher);
        let mut message = SqsMessage::default();
        message.message_id = Some(format!("m-{n}-{:016x}", hasher.finish()));
        message.body = Some(body.clone());
        message
    };
    let mut event = SqsEvent::default();
    event.records = bodies.iter().enumerate().map(message).collect();
    event
}

/// `count` products, each with its own payload.
fn products(count: usize) -> Vec<Env> {
    (0..count).map(|n| Env::product(&format!("p{n}")).at(0).payload(json!({"title": format!("product {n}")}))).collect()
}

/// The record each processed message of `batch` landed on, in order.
async fn records_of(store: &dyn EventStore, batch: &BatchResult) -> Vec<EventRecord> {
    let mut records = Vec::new();
    for result in &batch.records {
        let RecordResult::Processed(outcome) = result else { panic!("every record is processed: {result:?}") };
        let id = outcome.event_id.as_ref().expect("an event id");
        records.push(store.get_event(id).await.expect("read").expect("recorded"));
    }
    records
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_a_batch_of_ten_messages_costs_one_payload_put_with_a_rejected_body_in_the_same_object() {
    let f = fixture().await;
    let (_home, ports) = ports_over_an_embedded_mirror(&f);
    let processor = Processor::new(Arc::new(Engine::new(ports, Settings::default())), Duration::seconds(1));
    let envelopes = products(9);
    let rejected = r#"{"source":"shopify","entity_type":"product"}"#.to_owned();
    let bodies: Vec<String> = envelopes.iter().map(Env::body).chain([rejected.clone()]).collect();

    f.clients.requests.reset();
    let batch = processor.process_batch(batch_of(&bodies), &context()).await;

    assert_eq!(f.clients.requests.get("S3", "PutObject"), 1, "{:?}", f.clients.requests.snapshot());
    let records = records_of(f.backend.store.as_ref(), &batch).await;
    let statuses: Vec<Status> = records.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [vec![Status::Completed; 9], vec![Status::Rejected]].concat());
    let key = &records[0].payload.key;
    assert!(key.contains("/batch-"), "{key}");
    let mut end = 0;
    for (record, env) in records.iter().zip(&envelopes) {
        let range = record.payload.range.expect("a byte range in the batch object");
        assert_eq!((&record.payload.key, range.offset), (key, end), "frames follow each other in arrival order");
        end = range.offset + range.length;
        let archived = f.backend.payloads.get(&record.payload).await.expect("ranged read");
        assert_eq!(archived, canonical_json(&env.payload_value()).into_bytes());
    }
    let raw = &records[9].payload;
    assert_eq!(&raw.key, key, "the rejected body is archived in the same object");
    assert_eq!(f.backend.payloads.get(raw).await.expect("the raw body reads back"), rejected.as_bytes());
    let mut shown = Vec::new();
    synctrail_cli::commands::show::write_record(&mut shown, &records[9]).expect("show");
    let shown = String::from_utf8(shown).expect("UTF-8");
    assert!(shown.contains(&format!("{key} bytes {}+{}", end, raw.range.map_or(0, |r| r.length))), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_a_batch_reads_its_events_and_heads_in_one_request_and_archives_nothing_when_delivered_again() {
    let f = fixture().await;
    let (_home, ports) = ports_over_an_embedded_mirror(&f);
    let processor = Processor::new(Arc::new(Engine::new(ports, Settings::default())), Duration::seconds(1));
    let bodies: Vec<String> = products(10).iter().map(Env::body).collect();
    let reads = || f.clients.requests.get("DynamoDB", "BatchGetItem");

    f.clients.requests.reset();
    let first = processor.process_batch(batch_of(&bodies), &context()).await;
    assert_eq!(reads(), 1, "ten records and heads read in one request: {:?}", f.clients.requests.snapshot());
    assert_eq!(f.clients.requests.get("S3", "PutObject"), 1);
    let statuses: Vec<Status> = records_of(f.backend.store.as_ref(), &first).await.iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![Status::Completed; 10]);

    f.clients.requests.reset();
    let again = processor.process_batch(batch_of(&bodies), &context()).await;
    assert_eq!(reads(), 1, "{:?}", f.clients.requests.snapshot());
    assert_eq!(f.clients.requests.get("S3", "PutObject"), 0, "every event known with its content: nothing to archive");
    let records = records_of(f.backend.store.as_ref(), &again).await;
    assert!(records.iter().all(|r| r.status == Status::Completed && r.redelivered == 1), "{records:?}");
}

/// An engine and processor over `f`'s AWS backend (the mirror embedded), after one batch of three new products.
async fn three_products_processed(f: &AwsFixture) -> (tempfile::TempDir, Arc<Engine>, Processor, Vec<Env>) {
    let (home, ports) = ports_over_an_embedded_mirror(f);
    let engine = Arc::new(Engine::new(ports, Settings::default()));
    let processor = Processor::new(Arc::clone(&engine), Duration::seconds(1));
    let envelopes = products(3);
    let bodies: Vec<String> = envelopes.iter().map(Env::body).collect();
    processor.process_batch(batch_of(&bodies), &context()).await;
    (home, engine, processor, envelopes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_reprocess_of_an_event_archived_in_a_batch_reads_its_byte_range_and_resends_the_same_payload() {
    let f = fixture().await;
    let (_home, engine, processor, envelopes) = three_products_processed(&f).await;
    let middle = envelopes[1].event_id();

    f.clients.requests.reset();
    let (record, envelope) = engine.check_reprocess(&middle).await.expect("the event can be reprocessed");
    assert_eq!(f.clients.requests.get("S3", "GetObject"), 1);
    assert!(record.payload.range.is_some_and(|r| r.offset > 0), "{:?}", record.payload);
    assert_eq!(envelope.payload, envelopes[1].payload_value(), "the same payload, from its own frame");

    let report = engine.reprocess(std::slice::from_ref(&middle), &ReprocessOptions::default(), &mut |_| {}).await;
    assert_eq!(report.sent.len(), 1, "{report:?}");
    let redrive = f.backend.queue.receive(10, Duration::seconds(30)).await.expect("receive");
    let redrive: Vec<String> = redrive.into_iter().map(|m| m.body).collect();
    let again = processor.process_batch(batch_of(&redrive), &context()).await;
    assert!(matches!(&again.records[..], [RecordResult::Processed(o)] if o.status == Some(Status::Completed)));
    let done = f.backend.store.get_event(&middle).await.expect("read").expect("recorded");
    assert_eq!((done.status, done.attempt, &done.payload), (Status::Completed, 2, &record.payload));
}

/// Re-drives name their event's entity, so a batch of them reads every record and head in one request, as a batch
/// of envelopes does (they used to read each record, then each head: two `GetItem`s a re-drive).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_a_batch_of_redrives_reads_their_events_and_heads_in_one_request() {
    let f = fixture().await;
    let (_home, engine, processor, envelopes) = three_products_processed(&f).await;
    let ids: Vec<EventId> = envelopes.iter().map(Env::event_id).collect();
    let report = engine.reprocess(&ids, &ReprocessOptions::default(), &mut |_| {}).await;
    assert_eq!(report.sent.len(), 3, "{report:?}");
    let redrives = f.backend.queue.receive(10, Duration::seconds(30)).await.expect("receive");
    let redrives: Vec<String> = redrives.into_iter().map(|m| m.body).collect();
    assert_eq!(redrives.len(), 3);

    f.clients.requests.reset();
    let again = processor.process_batch(batch_of(&redrives), &context()).await;

    let requests = f.clients.requests.snapshot();
    assert_eq!(f.clients.requests.get("DynamoDB", "BatchGetItem"), 1, "{requests:?}");
    assert_eq!(f.clients.requests.get("DynamoDB", "GetItem"), 0, "nothing read twice: {requests:?}");
    let records = records_of(f.backend.store.as_ref(), &again).await;
    assert!(records.iter().all(|r| (r.status, r.attempt) == (Status::Completed, 2)), "{records:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_a_corrupted_byte_in_one_events_range_makes_that_event_alone_corrupt() {
    let f = fixture().await;
    let (_home, engine, _, envelopes) = three_products_processed(&f).await;
    let ids: Vec<EventId> = envelopes.iter().map(Env::event_id).collect();
    let record = f.backend.store.get_event(&ids[1]).await.expect("read").expect("recorded");
    let (key, range) = (&record.payload.key, record.payload.range.expect("a byte range"));
    let s3 = &f.clients.s3;
    let object = s3.get_object().bucket(&f.created.bucket).key(key).send().await.expect("get object");
    let mut object = object.body.collect().await.expect("object body").into_bytes().to_vec();
    object[(range.offset + range.length / 2) as usize] ^= 0x5a;
    let put = s3.put_object().bucket(&f.created.bucket).key(key).body(ByteStream::from(object));
    put.send().await.expect("overwrite the batch object");

    let report = engine.reprocess(&ids, &ReprocessOptions::default(), &mut |_| {}).await;

    let sent: Vec<&EventId> = report.sent.iter().map(|c| &c.event_id).collect();
    assert_eq!(sent, [&ids[0], &ids[2]], "{report:?}");
    let refused = match &report.refused[..] {
        [refused] => refused,
        other => panic!("exactly the corrupted event is refused: {other:?}"),
    };
    assert_eq!(refused.event_id, ids[1]);
    assert!(refused.reason.contains(key.as_str()), "names the object: {}", refused.reason);
    assert!(refused.reason.contains("SHA-256") || refused.reason.contains("zstd"), "{}", refused.reason);
}

/// The embedded payload store, but every batch write fails (S3 refusing the batch object): one-by-one writes pass,
/// counted.
struct BatchesFail {
    inner: Arc<dyn PayloadStore>,
    puts: AtomicU64,
}

#[async_trait]
impl PayloadStore for BatchesFail {
    async fn put(&self, bytes: &[u8], received_at: DateTime<Utc>) -> Result<PayloadRef, StoreError> {
        self.puts.fetch_add(1, Ordering::SeqCst);
        self.inner.put(bytes, received_at).await
    }

    async fn put_batch(&self, _: &[&[u8]], _: DateTime<Utc>) -> Result<Vec<PayloadRef>, StoreError> {
        Err(StoreError::Unavailable("the batch object could not be written (test)".into()))
    }

    async fn get(&self, payload: &PayloadRef) -> Result<Vec<u8>, StoreError> {
        self.inner.get(payload).await
    }
}

#[tokio::test]
async fn a_failed_batch_archive_falls_back_to_one_write_per_new_event_and_loses_nothing() {
    let home = support::temp_home();
    let config = synctrail::config::Config::embedded(home.path());
    let clock = Arc::new(synctrail::ManualClock::new(Utc::now()));
    let mut ports = synctrail::compose::compose(&config, clock, None).await.expect("embedded backend").ports;
    let payloads = Arc::new(BatchesFail { inner: Arc::clone(&ports.payloads), puts: AtomicU64::new(0) });
    ports.payloads = payloads.clone();
    let store = Arc::clone(&ports.store);
    let processor = Processor::new(Arc::new(Engine::new(ports, Settings::default())), Duration::seconds(1));
    let envelopes = products(3);
    let rejected = "not an envelope".to_owned();
    let bodies: Vec<String> = envelopes.iter().map(Env::body).chain([rejected.clone()]).collect();

    let batch = processor.process_batch(batch_of(&bodies), &context()).await;

    assert!(batch.response.batch_item_failures.is_empty(), "{:?}", batch.records);
    assert_eq!(payloads.puts.load(Ordering::SeqCst), 4, "one write per new event and per rejected body");
    let records = records_of(store.as_ref(), &batch).await;
    let statuses: Vec<Status> = records.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [Status::Completed, Status::Completed, Status::Completed, Status::Rejected]);
    for (record, env) in records.iter().zip(&envelopes) {
        assert_eq!(
            payloads.get(&record.payload).await.expect("archived"),
            canonical_json(&env.payload_value()).into_bytes()
        );
    }
    assert_eq!(payloads.get(&records[3].payload).await.expect("archived"), rejected.as_bytes());
}

/// The embedded payload store, whose reads fail as unavailable while `failing` is set (a busy database, S3 down).
struct ReadsFail {
    inner: Arc<dyn PayloadStore>,
    failing: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl PayloadStore for ReadsFail {
    async fn put(&self, bytes: &[u8], received_at: DateTime<Utc>) -> Result<PayloadRef, StoreError> {
        self.inner.put(bytes, received_at).await
    }

    async fn put_batch(&self, bodies: &[&[u8]], received_at: DateTime<Utc>) -> Result<Vec<PayloadRef>, StoreError> {
        self.inner.put_batch(bodies, received_at).await
    }

    async fn get(&self, payload: &PayloadRef) -> Result<Vec<u8>, StoreError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("the payload store is busy (test)".into()));
        }
        self.inner.get(payload).await
    }
}

#[tokio::test]
async fn a_re_drive_whose_payload_cannot_be_read_for_now_is_retried_not_dead_lettered() {
    let home = support::temp_home();
    let config = synctrail::config::Config::embedded(home.path());
    let clock = Arc::new(synctrail::ManualClock::new(Utc::now()));
    let mut ports = synctrail::compose::compose(&config, clock, None).await.expect("embedded backend").ports;
    let payloads =
        Arc::new(ReadsFail { inner: Arc::clone(&ports.payloads), failing: std::sync::atomic::AtomicBool::new(false) });
    ports.payloads = payloads.clone();
    let queue = Arc::clone(&ports.queue);
    let engine = Arc::new(Engine::new(ports, Settings::default()));
    let processor = Processor::new(Arc::clone(&engine), Duration::seconds(1));
    let env = &products(1)[0];
    processor.process_batch(batch_of(&[env.body()]), &context()).await;
    let report = engine.reprocess(&[env.event_id()], &ReprocessOptions::default(), &mut |_| {}).await;
    assert_eq!(report.sent.len(), 1, "{report:?}");

    payloads.failing.store(true, Ordering::SeqCst);
    let messages = queue.receive(10, Duration::seconds(30)).await.expect("receive");
    let batch = processor.process_batch(synctrail_processor::sqs_event(&messages), &context()).await;

    assert!(
        matches!(batch.records.as_slice(), [RecordResult::Failed(why)] if why.contains("busy")),
        "{:?}",
        batch.records
    );
    assert_eq!(batch.response.batch_item_failures.len(), 1, "handed back to the queue for a retry");
    assert_eq!(queue.depth().await.expect("depth").dead_letters, 0, "not dead-lettered");
}
