//! The operator's drills on both backends: the field drill (a client resending one event while the destination
//! is down, then a sweep), reprocess of a stale event with and without `--force`, a bulk re-drive of failed
//! events, and dead letters listed then moved back at once. The
//! embedded backend runs in a temporary home; the AWS one on the moto server of `scripts/with-moto.sh` (fresh
//! resources per test, DynamoDB serialized as in `aws_pipeline`). Both run on the system clock: SQS keeps time on
//! the server.

use crate::support::backends::{drain, open_backend, whole_record};
use crate::support::Env;
use chrono::Duration;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use synctrail::destination::{ApplyOutcome, Change, Destination, DestinationError, MirrorView};
use synctrail::engine::{Discarded, Engine, Invocation, ReprocessOptions};
use synctrail::model::{EventId, EventRecord, Status};
use synctrail::store::{EventQuery, EventStore};
use synctrail::Settings;
use synctrail_cli::backend::AnyBackend;
use synctrail_processor::Processor;

/// The destination of the drills: the backend's mirror, which can be switched off, and which notes the event's
/// recorded status at the moment of each write.
struct Switch {
    inner: Arc<dyn Destination>,
    store: Arc<dyn EventStore>,
    down: AtomicBool,
    seen_at_write: Mutex<Vec<Status>>,
}

#[async_trait::async_trait]
impl Destination for Switch {
    async fn apply(&self, change: &Change<'_>) -> Result<ApplyOutcome, DestinationError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(DestinationError::retryable("the destination is down (drill)"));
        }
        let status = self.store.get_event(change.event_id).await.ok().flatten().map(|r| r.status);
        self.seen_at_write.lock().unwrap().extend(status);
        self.inner.apply(change).await
    }
}

/// A backend, the switchable destination, the engine and the processor over them.
struct Rig {
    _home: Option<tempfile::TempDir>,
    backend: AnyBackend,
    switch: Arc<Switch>,
    engine: Arc<Engine>,
    processor: Processor,
}

impl Rig {
    async fn new(aws: Option<&str>, settings: Settings) -> Self {
        let (home, backend) = open_backend(aws).await;
        let switch = Arc::new(Switch {
            inner: Arc::clone(&backend.ports.destination),
            store: Arc::clone(&backend.ports.store),
            down: AtomicBool::new(false),
            seen_at_write: Mutex::default(),
        });
        let ports = synctrail::engine::Ports { destination: switch.clone(), ..backend.ports.clone() };
        let engine = Arc::new(Engine::new(ports, settings));
        let processor = Processor::new(Arc::clone(&engine), Duration::seconds(1));
        Self { _home: home, backend, switch, engine, processor }
    }

    async fn send(&self, body: String) {
        let message = synctrail::store::OutgoingMessage::new(body);
        self.engine.ports().queue.send(vec![message]).await.expect("send");
    }

    /// Plays the event source until nothing is visible (at most `rounds` batches).
    async fn drain(&self, rounds: usize) {
        drain(&self.engine, &self.processor, rounds).await;
    }

    async fn record(&self, id: &EventId) -> EventRecord {
        whole_record(&self.engine, id).await
    }

    fn mirror(&self) -> &Arc<dyn MirrorView> {
        self.backend.mirror.as_ref().expect("the mirror is the destination")
    }

    async fn effects_of(&self, id: &EventId) -> usize {
        self.mirror().effects().await.expect("effects").iter().filter(|(e, _)| e == id).count()
    }
}

fn operator() -> Invocation {
    Invocation { function: Some("synctrail-reprocess:1".into()), ..Invocation::default() }
}

/// The history notes of `record` that say dead letters were discarded.
fn discard_notes(record: &EventRecord) -> Vec<&str> {
    record.history.iter().filter_map(|h| h.note.as_deref()).filter(|n| n.contains("discarded")).collect()
}

fn one_attempt() -> Settings {
    let mut settings = synctrail_cli::config::base_settings();
    settings.max_attempts = 1;
    settings
}

/// Destination down; the same client event sent 10 times fails each time; the destination back; sent once more
/// it completes; sent 5 more times nothing happens. One event record, one destination record, every attempt in
/// the history, and `completed` only after the destination write. The 10 failed sends left their messages in
/// the dead-letter queue: a sweep removes them (the DLQ alarm clears) and notes it once in the event's history.
async fn the_field_drill(aws: Option<&str>) {
    let rig = Rig::new(aws, one_attempt()).await;
    let env = Env::product("drill-1").at(10).id("order-77:v1").titled("paid");
    rig.switch.down.store(true, Ordering::SeqCst);
    for attempt in 1..=10 {
        rig.send(env.body()).await;
        rig.drain(5).await;
        let record = rig.record(&env.event_id()).await;
        assert_eq!(record.status, Status::Failed, "send {attempt}");
        assert_eq!(record.attempt, attempt, "send {attempt}");
    }
    rig.switch.down.store(false, Ordering::SeqCst);
    rig.send(env.body()).await;
    rig.drain(5).await;
    assert_eq!(rig.record(&env.event_id()).await.status, Status::Completed);
    for _ in 0..5 {
        rig.send(env.body()).await;
        rig.drain(5).await;
    }
    let record = rig.record(&env.event_id()).await;
    assert_eq!(record.status, Status::Completed);
    assert_eq!(record.redelivered, 5);
    let processing = record.history.iter().filter(|h| h.status == Status::Processing).count();
    assert_eq!(processing, 11, "every attempt is in the history");
    assert_eq!(record.history.iter().filter(|h| h.status == Status::Failed).count(), 10);
    let query = EventQuery { entity: Some(env.entity()), ..EventQuery::default() };
    assert_eq!(rig.engine.ports().store.list_events(&query).await.expect("list").len(), 1, "one event record");
    assert_eq!(rig.effects_of(&env.event_id()).await, 1, "one destination effect");
    let row = rig.mirror().get(&env.entity()).await.expect("mirror").expect("one destination record");
    assert_eq!(row.state, env.payload_value());
    assert_eq!(*rig.switch.seen_at_write.lock().unwrap(), [Status::Processing], "not completed before the write");

    let queue = &rig.engine.ports().queue;
    assert_eq!(queue.depth().await.expect("depth").dead_letters, 10, "one dead letter per failed send");
    let sweeper = Invocation { function: Some("synctrail-sweeper:1".into()), ..Invocation::default() };
    let report = rig.engine.sweep(100, &sweeper).await.expect("sweep");
    let discarded = Discarded { event_id: env.event_id(), status: Status::Completed, messages: 10 };
    assert_eq!(report.dead_letters_discarded, [discarded]);
    assert_eq!(queue.depth().await.expect("depth").dead_letters, 0, "no stale dead letter stays");
    let record = rig.record(&env.event_id()).await;
    assert_eq!(record.status, Status::Completed, "a note leaves the status as it is");
    assert_eq!(discard_notes(&record), ["10 dead letters discarded: event already completed"]);
    let listing = rig.engine.redrive_dead_letters(100, true, &operator()).await.expect("list");
    assert!(listing.letters.is_empty() && listing.discarded.is_empty(), "`dead-letters` agrees with `stats`");
}

/// 11 events fail while the destination is down (11 dead letters, more than one round); the destination back,
/// the client resends the first and it completes. Listing the dead-letter queue discards the first's stale copy
/// (noted in its history) and lists the other 10; a re-drive right after moves every one listed, and they
/// complete.
async fn list_then_redrive(aws: Option<&str>) {
    let rig = Rig::new(aws, one_attempt()).await;
    let envs: Vec<Env> = (0..11).map(|n| Env::issue(&format!("dl{n}")).at(10).titled("fails first")).collect();
    rig.switch.down.store(true, Ordering::SeqCst);
    for env in &envs {
        rig.send(env.body()).await;
    }
    rig.drain(20).await;
    let queue = &rig.engine.ports().queue;
    assert_eq!(queue.depth().await.expect("depth").dead_letters, 11);
    rig.switch.down.store(false, Ordering::SeqCst);
    rig.send(envs[0].body()).await;
    rig.drain(5).await;
    assert_eq!(rig.record(&envs[0].event_id()).await.status, Status::Completed);

    let listing = rig.engine.redrive_dead_letters(100, true, &operator()).await.expect("list");
    assert_eq!(listing.letters.len(), 11);
    let discarded = Discarded { event_id: envs[0].event_id(), status: Status::Completed, messages: 1 };
    assert_eq!(listing.discarded, [discarded]);
    assert_eq!(listing.moved, 10, "the others would move");
    assert_eq!(
        discard_notes(&rig.record(&envs[0].event_id()).await),
        ["dead letter discarded: event already completed"]
    );
    assert_eq!(queue.depth().await.expect("depth").dead_letters, 10);
    for env in &envs[1..] {
        assert_eq!(rig.record(&env.event_id()).await.status, Status::Failed, "a listing marks nothing");
    }

    let redrive = rig.engine.redrive_dead_letters(100, false, &operator()).await.expect("re-drive");
    assert_eq!(redrive.moved, listing.moved, "a re-drive right after a listing moves every one listed");
    assert!(redrive.discarded.is_empty());
    assert_eq!(queue.depth().await.expect("depth").dead_letters, 0);
    rig.drain(20).await;
    for env in &envs {
        assert_eq!(rig.record(&env.event_id()).await.status, Status::Completed);
        assert_eq!(rig.effects_of(&env.event_id()).await, 1);
    }
}

/// A stale event re-driven ends `dropped` for the newer one; with `--force` it applies and says so.
async fn reprocess_stale_then_forced(aws: Option<&str>) {
    let rig = Rig::new(aws, synctrail_cli::config::base_settings()).await;
    let newer = Env::issue("41").at(20).titled("newer");
    let older = Env::issue("41").at(10).titled("older");
    rig.send(newer.body()).await;
    rig.drain(5).await;
    rig.send(older.body()).await;
    rig.drain(5).await;
    assert_eq!(rig.record(&older.event_id()).await.status, Status::Dropped);

    let report = rig.engine.reprocess(&[older.event_id()], &ReprocessOptions::default(), &mut |_| {}).await;
    assert_eq!(report.sent.len(), 1);
    rig.drain(5).await;
    let dropped = rig.record(&older.event_id()).await;
    assert_eq!(dropped.status, Status::Dropped);
    assert_eq!(dropped.dropped_for.as_deref(), Some(newer.event_id().as_str()));
    assert_eq!(rig.mirror().get(&newer.entity()).await.expect("get").expect("row").state, newer.payload_value());

    let forced = ReprocessOptions { force: true, ..ReprocessOptions::default() };
    rig.engine.reprocess(&[older.event_id()], &forced, &mut |_| {}).await;
    rig.drain(5).await;
    let applied = rig.record(&older.event_id()).await;
    assert_eq!(applied.status, Status::Completed);
    assert!(applied.forced);
    assert!(applied.history.iter().any(|h| h.note.as_deref() == Some("forced: ordering skipped")));
    assert_eq!(rig.mirror().get(&older.entity()).await.expect("get").expect("row").state, older.payload_value());
    let query = EventQuery { entity: Some(older.entity()), ..EventQuery::default() };
    assert_eq!(rig.engine.ports().store.list_events(&query).await.expect("list").len(), 2, "no new records");
}

/// `count` events fail while the destination is down; after the fix, a dry run sends nothing, and a bulk re-drive
/// of everything `failed` ends each `completed` or correctly `dropped`, none applied twice.
async fn bulk_redrive(aws: Option<&str>, count: usize, rounds: usize) {
    let rig = Rig::new(aws, one_attempt()).await;
    let envs: Vec<Env> = (0..count)
        .map(|n| Env::issue(&format!("b{}", n % (count / 2).max(1))).at(10 + n as i64).titled(&format!("v{n}")))
        .collect();
    rig.switch.down.store(true, Ordering::SeqCst);
    let lines: Vec<String> = envs.iter().map(Env::body).collect();
    synctrail_cli::commands::send::send_lines(rig.engine.ports().queue.as_ref(), lines, |_| {}).await.expect("send");
    rig.drain(rounds).await;
    let failed_query = EventQuery { status: Some(Status::Failed), ..EventQuery::default() };
    let failed = rig.engine.select_for_reprocess(&failed_query).await.expect("select");
    assert!(!failed.is_empty());
    rig.switch.down.store(false, Ordering::SeqCst);

    let dry = ReprocessOptions { dry_run: true, ..ReprocessOptions::default() };
    let report = rig.engine.reprocess(&failed, &dry, &mut |_| {}).await;
    assert_eq!(report.sent.len(), failed.len());
    assert_eq!(rig.engine.ports().queue.depth().await.expect("depth").visible, 0, "a dry run sends nothing");

    let report = rig.engine.reprocess(&failed, &ReprocessOptions::default(), &mut |_| {}).await;
    assert_eq!((report.sent.len(), report.refused.len()), (failed.len(), 0));
    rig.drain(rounds).await;
    let effects = rig.mirror().effects().await.expect("effects");
    for env in &envs {
        let record = rig.record(&env.event_id()).await;
        assert!(matches!(record.status, Status::Completed | Status::Dropped | Status::Canceled), "{:?}", record.status);
        assert!(effects.iter().filter(|(e, _)| *e == env.event_id()).count() <= 1, "applied twice");
    }
    let mut newest = std::collections::BTreeMap::new();
    for env in &envs {
        newest.insert(env.entity().to_string(), env);
    }
    for (entity, env) in newest {
        let row = rig.mirror().get(&env.entity()).await.expect("get").expect("row");
        assert_eq!(row.state, env.payload_value(), "{entity} ends with its newest change");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_field_drill_ends_with_one_record_one_effect_every_attempt_and_no_stale_dead_letter_on_the_embedded_backend(
) {
    the_field_drill(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_field_drill_ends_with_one_record_one_effect_every_attempt_and_no_stale_dead_letter_on_aws() {
    the_field_drill(Some("drill")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redrive_right_after_listing_the_dead_letters_moves_every_one_listed_on_the_embedded_backend() {
    list_then_redrive(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redrive_right_after_listing_the_dead_letters_moves_every_one_listed_on_aws() {
    list_then_redrive(Some("dlq")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_event_reprocessed_is_dropped_for_the_newer_and_forced_it_applies_on_the_embedded_backend() {
    reprocess_stale_then_forced(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_event_reprocessed_is_dropped_for_the_newer_and_forced_it_applies_on_aws() {
    reprocess_stale_then_forced(Some("stale")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_redrive_of_a_thousand_failed_events_applies_none_twice_on_the_embedded_backend() {
    bulk_redrive(None, 1000, 400).await;
}

/// Fewer events on moto, which is slow with transactions (see `aws_pipeline`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_redrive_of_failed_events_applies_none_twice_on_aws() {
    bulk_redrive(Some("bulk"), 40, 40).await;
}
