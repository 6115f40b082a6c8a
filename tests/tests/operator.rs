//! The operator's side (spec §6, §7 and issue 4) on the embedded backend with a manual clock: dependencies and
//! their waits, disabled sources, reprocess and its refusals, the sweeper after crashes, dead letters moved back,
//! and the reprocess Lambda's handler. `operator_backends` runs the field drill and the re-drives on both backends.

use crate::support::{Env, Harness, Options, Step};
use chrono::Duration;
use serde_json::json;
use std::sync::Arc;
use synctrail::destination::dependencies::{DependencyRule, RequireDependencies};
use synctrail::destination::{ApplyOutcome, Change, Destination, DestinationError, MirrorView};
use synctrail::engine::{Engine, Incoming, Invocation, ReprocessOptions, ReprocessReport};
use synctrail::model::{EntityKey, ErrorKind, EventId, EventRecord, Message, RedriveReason, Status};
use synctrail::store::{EventQuery, Write};

const RULE: &str = "inventory_level.product_id=product";

fn level(id: &str, product: &str, seconds: i64, available: i64) -> Env {
    Env::new("shopify", "inventory_level", id)
        .at(seconds)
        .payload(json!({ "product_id": product, "available": available }))
}

fn new_product(id: &str) -> Env {
    Env::new("shopify", "product", id).kind("create").payload(json!({ "title": format!("Product {id}") }))
}

fn product_key(id: &str) -> EntityKey {
    EntityKey::new("default", "shopify", "product", id).expect("valid key")
}

/// A harness whose mirror requires an inventory level's product to exist first.
fn with_dependencies(mut options: Options) -> Harness {
    let holder: Arc<std::sync::OnceLock<Arc<dyn MirrorView>>> = Arc::default();
    let mirror_slot = Arc::clone(&holder);
    options.destination = Some(Box::new(move |inner: Arc<dyn Destination>| -> Arc<dyn Destination> {
        Arc::new(Lazy { inner, mirror: mirror_slot })
    }));
    let h = Harness::with(options);
    let mirror: Arc<dyn MirrorView> = h.backend.embedded.mirror.clone();
    assert!(holder.set(mirror).is_ok());
    h
}

/// [`RequireDependencies`] over a mirror known only once the harness exists.
struct Lazy {
    inner: Arc<dyn Destination>,
    mirror: Arc<std::sync::OnceLock<Arc<dyn MirrorView>>>,
}

#[async_trait::async_trait]
impl Destination for Lazy {
    async fn apply(&self, change: &Change<'_>) -> Result<ApplyOutcome, DestinationError> {
        let mirror = Arc::clone(self.mirror.get().expect("mirror set"));
        let rules = vec![DependencyRule::parse(RULE).expect("rule")];
        RequireDependencies::new(Arc::clone(&self.inner), mirror, rules).apply(change).await
    }
}

fn operator() -> Invocation {
    Invocation { function: Some("reprocess:test".into()), ..Invocation::default() }
}

async fn reprocess(engine: &Engine, ids: &[EventId], options: ReprocessOptions) -> ReprocessReport {
    engine.reprocess(ids, &options, &mut |_| {}).await
}

/// Processes every visible message with `engine` directly (another engine over the same backend), as the
/// processor would, deleting what is done; at most 100 messages.
async fn drain_with(engine: &Engine, h: &Harness) {
    for _ in 0..100 {
        let Some(message) = h.receive(1).await.pop() else { return };
        let incoming = Incoming {
            message_id: message.message_id.clone(),
            body: message.body.clone(),
            receive_count: message.receive_count,
            trace_header: None,
        };
        engine.process(&incoming, &operator()).await.expect("process");
        h.ports().queue.delete(&[message.receipt_handle]).await.expect("delete");
    }
    panic!("the queue did not drain in 100 messages");
}

// ---- §6 dependencies ----

#[tokio::test]
async fn an_event_whose_dependency_is_missing_waits_and_completes_once_the_dependency_does() {
    let h = with_dependencies(Options::default());
    let stock = level("L1", "P1", 10, 5);
    h.send_env(&stock).await;
    h.drain().await;
    let waiting = h.record_of(&stock).await;
    assert_eq!(waiting.status, Status::Waiting);
    assert_eq!(waiting.waiting_for.as_deref(), Some("default/shopify/product/P1"));
    assert_eq!(h.mirror_state(&stock.entity()).await, None, "nothing applied while waiting");
    assert!(h.head(&product_key("P1")).await.has_waiters, "the dependency's head knows someone waits");

    h.send_env(&new_product("P1")).await;
    h.drain().await;
    let done = h.record_of(&stock).await;
    assert_eq!(done.status, Status::Completed);
    assert_eq!(
        crate::support::timeline(&done),
        [Status::Received, Status::Processing, Status::Waiting, Status::Processing, Status::Completed]
    );
    assert_eq!(h.mirror_state(&stock.entity()).await, Some(stock.payload_value()));
    assert!(!h.head(&product_key("P1")).await.has_waiters, "the flag is cleared once the waiters are resumed");
}

/// A handler that needs product P2 for every inventory level and asks for it with a `create` envelope; it
/// remembers P2 once P2's change passed through it.
struct AsksForProduct {
    inner: Arc<dyn Destination>,
    created: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl Destination for AsksForProduct {
    async fn apply(&self, change: &Change<'_>) -> Result<ApplyOutcome, DestinationError> {
        use std::sync::atomic::Ordering;
        if change.entity.entity_type == "inventory_level" && !self.created.load(Ordering::SeqCst) {
            let request = Some(new_product("P2").body());
            return Ok(ApplyOutcome::MissingDependency { key: product_key("P2"), request });
        }
        let outcome = self.inner.apply(change).await;
        if *change.entity == product_key("P2") && outcome.is_ok() {
            self.created.store(true, Ordering::SeqCst);
        }
        outcome
    }
}

#[tokio::test]
async fn a_handler_that_asks_for_its_dependency_gets_it_created_and_then_applies() {
    let h = Harness::with(Options {
        destination: Some(Box::new(|inner: Arc<dyn Destination>| -> Arc<dyn Destination> {
            Arc::new(AsksForProduct { inner, created: Default::default() })
        })),
        ..Options::default()
    });
    let stock = level("L2", "P2", 10, 7);
    h.send_env(&stock).await;
    h.drain().await;
    let record = h.record_of(&stock).await;
    assert_eq!(record.status, Status::Completed, "{:?}", crate::support::timeline(&record));
    assert!(crate::support::timeline(&record).contains(&Status::Waiting));
    let request = h.record_of(&new_product("P2")).await;
    assert_eq!(request.status, Status::Completed);
    assert_eq!(request.caused_by.as_deref(), Some(stock.event_id().as_str()), "the request names the waiting event");
}

#[tokio::test]
async fn a_wait_longer_than_the_limit_ends_failed_and_says_what_to_do() {
    let mut settings = crate::support::settings();
    settings.max_wait = Duration::minutes(10);
    let h = with_dependencies(Options { settings, ..Options::default() });
    let stock = level("L3", "P3", 10, 1);
    h.send_env(&stock).await;
    h.drain().await;
    h.advance(Duration::minutes(5));
    let early = h.engine.sweep(100, &operator()).await.expect("sweep");
    assert!(early.waits_failed.is_empty() && early.waits_examined == 1);
    h.advance(Duration::minutes(6));
    let report = h.engine.sweep(100, &operator()).await.expect("sweep");
    assert_eq!(report.waits_failed, vec![stock.event_id()]);
    let failed = h.record_of(&stock).await;
    assert_eq!(failed.status, Status::Failed);
    let error = failed.error.expect("error recorded");
    assert_eq!(error.kind, ErrorKind::DependencyTimeout);
    assert!(error.message.contains("default/shopify/product/P3") && error.message.contains("reprocess"));
}

#[tokio::test]
async fn a_wait_past_the_limit_ends_failed_behind_more_newer_waits_than_a_sweep_acts_on() {
    let mut settings = crate::support::settings();
    settings.max_wait = Duration::minutes(10);
    let h = with_dependencies(Options { settings, ..Options::default() });
    let oldest = level("L5", "P5", 10, 1);
    h.send_env(&oldest).await;
    h.drain().await;
    h.advance(Duration::minutes(8));
    let newer: Vec<_> = (0..3).map(|n| level(&format!("L6{n}"), &format!("P6{n}"), 10, 1)).collect();
    for env in &newer {
        h.send_env(env).await;
    }
    h.drain().await;
    h.advance(Duration::minutes(3));

    let report = h.engine.sweep(1, &operator()).await.expect("sweep");
    assert_eq!(report.waits_failed, vec![oldest.event_id()], "the overdue wait is found behind the newer ones");
    assert_eq!(h.status_of(&oldest).await, Status::Failed);
    for env in &newer {
        assert_eq!(h.status_of(env).await, Status::Waiting, "not overdue yet");
    }
}

#[tokio::test]
async fn a_wait_whose_resume_message_was_lost_is_resumed_by_the_sweeper() {
    let h = with_dependencies(Options::default());
    let stock = level("L4", "P4", 10, 3);
    h.send_env(&stock).await;
    h.drain().await;
    h.send_env(&new_product("P4")).await;
    h.deliver(1).await;
    // The resume message is lost.
    let lost = h.receive(10).await;
    assert_eq!(lost.len(), 1);
    h.ports().queue.delete(&[lost[0].receipt_handle.clone()]).await.expect("delete");
    assert_eq!(h.status_of(&stock).await, Status::Waiting);

    let report = h.engine.sweep(100, &operator()).await.expect("sweep");
    assert_eq!(report.waits_resumed, vec![stock.event_id()]);
    h.drain().await;
    assert_eq!(h.status_of(&stock).await, Status::Completed);
}

/// Sends to another queue land on the one queue, each noted with the URL it was sent to.
#[derive(Default)]
struct NotesSendsTo {
    sent_to: std::sync::Mutex<Vec<(String, String)>>,
}

#[async_trait::async_trait]
impl crate::support::hooked_queue::QueueHooks for NotesSendsTo {
    async fn send_to(
        &self,
        inner: &dyn synctrail::store::Queue,
        queue: &str,
        messages: Vec<synctrail::store::OutgoingMessage>,
    ) -> Result<Vec<String>, synctrail::store::StoreError> {
        let noted = messages.iter().map(|m| (queue.to_owned(), m.body.clone()));
        self.sent_to.lock().expect("lock").extend(noted);
        inner.send(messages).await
    }
}

#[tokio::test]
async fn the_sweepers_re_drive_goes_to_the_queue_of_the_processor_that_recorded_the_event() {
    let h = Harness::with(Options { max_receives: 1, ..Options::default() });
    let event = Env::issue("77").at(10).titled("v1");
    h.script.next(Step::Crash { write: false });
    h.send_env(&event).await;
    assert!(h.deliver(1).await.crashed());
    h.advance(h.options.visibility_timeout);
    assert!(h.receive(1).await.is_empty(), "dead-lettered instead of received again");

    // The sweeper of a deployment with two processors: this one's queue is named for its function.
    let erp_queue = "https://sqs.us-east-1.amazonaws.com/123456789012/synctrail-erp";
    let function = crate::support::FUNCTION.split_once(':').map_or(crate::support::FUNCTION, |(name, _)| name);
    let mut settings = h.options.settings.clone();
    settings.redrive_queues.insert(function.to_owned(), erp_queue.to_owned());
    let hooks = Arc::new(crate::support::hooked_queue::HookedQueue {
        inner: Arc::clone(&h.ports().queue),
        hooks: NotesSendsTo::default(),
    });
    let ports = synctrail::Ports { queue: hooks.clone(), ..h.ports().clone() };
    let sweeper = Engine::new(ports, settings);
    let report = sweeper.sweep(100, &operator()).await.expect("sweep");

    assert_eq!(report.redriven, vec![event.event_id()]);
    let sent = hooks.hooks.sent_to.lock().expect("lock").clone();
    assert!(
        matches!(sent.as_slice(), [(queue, body)] if queue == erp_queue && body.contains(event.event_id().as_str())),
        "{sent:?}"
    );
    h.drain().await;
    assert_eq!(h.status_of(&event).await, Status::Completed);
}

// ---- disabled sources ----

#[tokio::test]
async fn events_of_a_disabled_source_end_disabled_and_are_redriven_in_order_once_enabled() {
    let mut settings = crate::support::settings();
    settings.disabled_sources.insert("shopify".into());
    let h = Harness::with(Options { settings, ..Options::default() });
    let newer = Env::product("D1").at(20).titled("second");
    let older = Env::product("D1").at(10).titled("first");
    let github = Env::issue("5").at(10).titled("unaffected");
    for env in [&newer, &older, &github] {
        h.send_env(env).await;
    }
    h.drain().await;
    assert_eq!(h.status_of(&newer).await, Status::Disabled);
    assert_eq!(h.status_of(&older).await, Status::Disabled);
    assert_eq!(h.status_of(&github).await, Status::Completed);
    assert_eq!(h.mirror_state(&newer.entity()).await, None, "kept, not applied");

    // Re-enabled: an engine without the setting, and a re-drive of everything disabled.
    let enabled = Engine::new(h.ports().clone(), crate::support::settings());
    let query = EventQuery { status: Some(Status::Disabled), ..EventQuery::default() };
    let ids = enabled.select_for_reprocess(&query).await.expect("select");
    assert_eq!(ids, vec![older.event_id(), newer.event_id()], "oldest first");
    let report = reprocess(&enabled, &ids, ReprocessOptions::default()).await;
    assert_eq!(report.sent.len(), 2);
    drain_with(&enabled, &h).await;
    assert_eq!(h.status_of(&older).await, Status::Completed);
    assert_eq!(h.status_of(&newer).await, Status::Completed);
    assert_eq!(h.mirror_state(&newer.entity()).await, Some(newer.payload_value()));
    let timeline = crate::support::timeline(&h.record_of(&newer).await);
    assert_eq!(timeline, [Status::Received, Status::Disabled, Status::Received, Status::Processing, Status::Completed]);
}

// ---- §7 reprocess ----

#[tokio::test]
async fn reprocessing_an_event_whose_payload_is_corrupt_names_it_and_sends_nothing() {
    let h = Harness::new();
    let env = Env::issue("9").at(10).titled("soon corrupt");
    h.send_env(&env).await;
    h.drain().await;
    let record = h.record_of(&env).await;
    h.backend.embedded.payloads.write_object(&record.payload.key, b"not zstd at all".to_vec()).await.expect("tamper");

    let report = reprocess(&h.engine, &[env.event_id()], ReprocessOptions::default()).await;
    assert!(report.sent.is_empty());
    assert_eq!(report.refused.len(), 1);
    let reason = &report.refused[0].reason;
    assert!(reason.contains(env.event_id().as_str()) && reason.contains("corrupt"), "{reason}");
    assert_eq!(h.depth().await.visible, 0, "nothing was sent");
}

#[tokio::test]
async fn reprocessing_an_unknown_or_rejected_event_is_refused_with_the_reason() {
    let h = Harness::new();
    h.send("{ not json").await;
    h.drain().await;
    let rejected = EventId::for_rejected(b"{ not json");
    let unknown = EventId::parse("never-sent").expect("id");
    let report = reprocess(&h.engine, &[unknown.clone(), rejected.clone()], ReprocessOptions::default()).await;
    assert!(report.sent.is_empty());
    let reasons: Vec<&str> = report.refused.iter().map(|r| r.reason.as_str()).collect();
    assert!(reasons[0].contains("never-sent") && reasons[0].contains("not recorded"), "{reasons:?}");
    assert!(reasons[1].contains(rejected.as_str()) && reasons[1].contains("rejected"), "{reasons:?}");
    let not_recorded: Vec<bool> = report.refused.iter().map(|r| r.not_recorded).collect();
    assert_eq!(not_recorded, [true, false], "only the unknown id is not recorded");
}

#[tokio::test]
async fn a_dry_run_checks_and_lists_but_sends_nothing() {
    let h = Harness::new();
    let env = Env::issue("10").at(10).titled("done");
    h.send_env(&env).await;
    h.drain().await;
    let options = ReprocessOptions { dry_run: true, ..ReprocessOptions::default() };
    let report = reprocess(&h.engine, &[env.event_id(), env.event_id()], options).await;
    assert_eq!((report.selected, report.sent.len(), report.dry_run), (1, 1, true), "duplicates count once");
    assert_eq!(report.sent[0].status, Status::Completed);
    assert_eq!(h.depth().await.visible, 0);
    assert_eq!(h.status_of(&env).await, Status::Completed);
}

#[tokio::test]
async fn a_reprocessed_event_keeps_one_record_and_appends_to_its_history() {
    let h = Harness::new();
    let env = Env::issue("11").at(10).titled("once");
    h.send_env(&env).await;
    h.drain().await;
    reprocess(&h.engine, &[env.event_id()], ReprocessOptions::default()).await;
    h.drain().await;
    let record = h.record_of(&env).await;
    // Already applied, it is run again and the destination knows it: completed, no second effect.
    assert_eq!(record.status, Status::Completed);
    assert_eq!(h.effects_of(&env.event_id()).await, 1);
    assert_eq!(h.events_of(&env.entity()).await.len(), 1, "no second event record");
    let notes: Vec<Option<&str>> = record.history.iter().map(|e| e.note.as_deref()).collect();
    assert!(notes.contains(&Some("reprocess")), "{notes:?}");
    let last = record.history.last().expect("history");
    assert_eq!(last.status, Status::Completed);
    assert_eq!(last.note.as_deref(), Some("the destination had applied it already: nothing written"), "{notes:?}");
}

#[tokio::test]
async fn a_reprocess_message_delivered_again_does_not_run_its_event_again() {
    let h = Harness::new();
    let env = Env::issue("12").at(10).titled("once, then reprocessed once");
    h.send_env(&env).await;
    h.drain().await;
    let calls = h.script.calls();
    reprocess(&h.engine, &[env.event_id()], ReprocessOptions::default()).await;
    let redrive = h.receive(10).await;
    assert_eq!(redrive.len(), 1, "one re-drive message");

    h.invoke(&redrive).await;
    assert_eq!(h.script.calls(), calls + 1, "the reprocess ran the event again");
    let again = h.invoke(&redrive).await; // the same message again: its batch ran past the timeout, say
    assert_eq!(h.script.calls(), calls + 1, "not a second time");
    assert!(again.only().redelivered, "acknowledged as a repeat");

    let record = h.record_of(&env).await;
    assert_eq!(record.status, Status::Completed);
    let restarts = record.history.iter().filter(|e| e.note.as_deref() == Some("reprocess")).count();
    assert_eq!(restarts, 1, "{:?}", crate::support::timeline(&record));
    assert_eq!(h.effects_of(&env.event_id()).await, 1);
}

// ---- the sweeper ----

#[tokio::test]
async fn after_crashes_leave_leases_behind_one_sweep_and_a_run_drain_everything() {
    let h = Harness::new();
    let envs: Vec<Env> = (0..6).map(|n| Env::issue(&format!("c{n}")).at(10).titled("crashes once")).collect();
    for env in &envs {
        h.script.on(&env.entity(), Step::Crash { write: n_even(env) });
        h.send_env(env).await;
    }
    for _ in &envs {
        assert!(h.deliver(1).await.crashed());
    }
    assert_eq!(h.ports().store.count_inflight().await.expect("count"), 6, "six leases left behind");
    h.advance(h.options.function_timeout + Duration::seconds(5));
    let report = h.engine.sweep(100, &operator()).await.expect("sweep");
    assert_eq!(report.redriven.len(), 6);
    h.drain().await;
    h.advance(h.options.visibility_timeout);
    h.drain().await;
    for env in &envs {
        assert_eq!(h.status_of(env).await, Status::Completed);
        assert_eq!(h.effects_of(&env.event_id()).await, 1, "exactly one effect, crash or not");
    }
    assert_eq!(h.ports().store.count_inflight().await.expect("count"), 0);
    assert_eq!(h.depth().await.visible + h.depth().await.in_flight, 0);
}

#[tokio::test]
async fn a_sweep_whose_invocation_is_about_to_end_stops_and_says_so_and_the_next_one_does_the_work() {
    let h = Harness::new();
    let env = Env::issue("c-late").at(10).titled("crashes once");
    h.script.on(&env.entity(), Step::Crash { write: false });
    h.send_env(&env).await;
    assert!(h.deliver(1).await.crashed());
    h.advance(h.options.function_timeout + Duration::seconds(5));

    let ending = Invocation { deadline: Some(h.now() + Duration::seconds(4)), ..operator() };
    let report = h.engine.sweep(100, &ending).await.expect("sweep");
    assert!(report.out_of_time, "{report:?}");
    assert!(report.redriven.is_empty() && report.examined == 0, "nothing started so near the end: {report:?}");

    let fresh = Invocation { deadline: Some(h.now() + Duration::seconds(60)), ..operator() };
    let report = h.engine.sweep(100, &fresh).await.expect("sweep");
    assert_eq!((report.out_of_time, report.redriven), (false, vec![env.event_id()]));
}

#[tokio::test]
async fn a_dead_letter_pass_whose_invocation_is_about_to_end_looks_at_no_letter_and_says_so() {
    let h = Harness::new();
    let env = Env::issue("dl-late").at(10).titled("never processed");
    dead_letter_copy(&h, env.body()).await;

    let ending = Invocation { deadline: Some(h.now() + Duration::seconds(4)), ..operator() };
    let swept = h.engine.record_dead_letters(100, &ending).await.expect("sweep the dead letters");
    assert!(swept.out_of_time && swept.recorded.is_empty(), "{swept:?}");
    assert!(h.try_record(&env.event_id()).await.is_none(), "nothing recorded so near the end");
    assert_eq!(h.dead_letters().await.len(), 1, "the letter stays, visible");

    let fresh = Invocation { deadline: Some(h.now() + Duration::seconds(60)), ..operator() };
    let swept = h.engine.record_dead_letters(100, &fresh).await.expect("sweep the dead letters");
    assert_eq!((swept.out_of_time, swept.recorded), (false, vec![env.event_id()]));
}

/// Half the crashes happen after the write landed.
fn n_even(env: &Env) -> bool {
    env.entity().external_id.ends_with(['0', '2', '4'])
}

// ---- dead letters ----

#[tokio::test]
async fn dead_letters_move_back_after_their_events_are_marked_for_retry() {
    let mut settings = crate::support::settings();
    settings.max_attempts = 1;
    let h = Harness::with(Options { settings, ..Options::default() });
    let env = Env::issue("12").at(10).titled("fails once");
    h.script.on(&env.entity(), Step::Retryable("destination down"));
    h.send_env(&env).await;
    h.drain().await;
    assert_eq!(h.status_of(&env).await, Status::Failed);
    assert_eq!(h.dead_letters().await.len(), 1);

    let look = h.engine.redrive_dead_letters(100, true, &operator()).await.expect("look");
    assert_eq!(look.letters.len(), 1);
    assert_eq!((look.letters[0].status, look.letters[0].event_id.clone()), (Some(Status::Failed), env.event_id()));
    assert_eq!(h.status_of(&env).await, Status::Failed, "a dry run changes nothing");
    assert_eq!(h.dead_letters().await.len(), 1);

    let moved = h.engine.redrive_dead_letters(100, false, &operator()).await.expect("move");
    assert_eq!(moved.moved, 1);
    assert_eq!(h.status_of(&env).await, Status::Received, "marked for retry");
    assert!(h.dead_letters().await.is_empty());
    h.drain().await;
    assert_eq!(h.status_of(&env).await, Status::Completed);
    assert_eq!(h.effects_of(&env.event_id()).await, 1);
}

/// Puts a message with `body` in the dead-letter queue, as the queue does after too many receives.
async fn dead_letter_copy(h: &Harness, body: String) {
    h.send(body).await;
    let message = h.receive(1).await.pop().expect("the message");
    h.ports().queue.dead_letter(&message.receipt_handle, &message.body, None).await.expect("dead letter");
}

/// The history notes of `record` that say dead letters were discarded.
fn discard_notes(record: &EventRecord) -> Vec<&str> {
    record.history.iter().filter_map(|h| h.note.as_deref()).filter(|n| n.contains("discarded")).collect()
}

#[tokio::test]
async fn a_dead_letter_for_another_entity_under_a_used_client_id_is_neither_discarded_nor_acted_on_for_the_event() {
    let h = Harness::new();
    let original = Env::product("dl-a").at(10).payload(json!({"price": "5.00"})).id("client-evt-9");
    let elsewhere = Env::product("dl-b").at(10).payload(json!({"price": "5.00"})).id("client-evt-9");
    h.send_env(&original).await;
    h.drain().await;
    assert_eq!(h.status_of(&original).await, Status::Completed);
    dead_letter_copy(&h, elsewhere.body()).await;

    let swept = h.engine.record_dead_letters(100, &operator()).await.expect("sweep the dead letters");
    assert!(swept.discarded.is_empty() && swept.recorded.is_empty(), "{swept:?}");
    assert_eq!(h.dead_letters().await.len(), 1, "another entity's change stays, not discarded as a redelivery");
    assert!(discard_notes(&h.record_of(&original).await).is_empty());

    // The event failed meanwhile: moving the letter back does not restart it; the letter is recorded as a conflict.
    let mut record = h.record_of(&original).await;
    record.status = Status::Failed;
    h.ports().store.commit(vec![Write::event(record)]).await.expect("set the status");
    let moved = h.engine.redrive_dead_letters(100, false, &operator()).await.expect("move back");
    assert_eq!(moved.moved, 1);
    assert_eq!(h.status_of(&original).await, Status::Failed, "not restarted by another change's letter");
    let d = h.deliver(1).await;
    assert_eq!(d.only().status, Some(Status::Rejected), "recorded as the conflict it is");
    assert_eq!(h.record(d.only().event_id.as_ref().expect("its id")).await.conflicts_with, Some(original.event_id()));
}

#[tokio::test]
async fn a_dead_letter_is_discarded_only_when_its_event_is_done_and_not_failed() {
    use Status::*;
    let h = Harness::new();
    let statuses =
        [Completed, Dropped, Duplicate, Canceled, Disabled, Rejected, Failed, Received, Queued, Errored, Waiting];
    let done = [Completed, Dropped, Duplicate, Canceled, Disabled, Rejected];
    let mut envs = Vec::new();
    for (n, status) in statuses.into_iter().enumerate() {
        let env = Env::issue(&format!("s{n}")).at(10).titled("applied once");
        h.send_env(&env).await;
        h.drain().await;
        dead_letter_copy(&h, env.body()).await;
        // The rule looks at the status alone: set it as if the event had ended there.
        let mut record = h.record_of(&env).await;
        record.status = status;
        h.ports().store.commit(vec![Write::event(record)]).await.expect("set the status");
        envs.push((env, status));
    }

    let listing = h.engine.redrive_dead_letters(100, true, &operator()).await.expect("list");

    let mut discarded: Vec<(EventId, Status, usize)> =
        listing.discarded.iter().map(|d| (d.event_id.clone(), d.status, d.messages)).collect();
    discarded.sort();
    let mut expected: Vec<(EventId, Status, usize)> =
        envs.iter().filter(|(_, s)| done.contains(s)).map(|(e, s)| (e.event_id(), *s, 1)).collect();
    expected.sort();
    assert_eq!(discarded, expected);
    assert_eq!((listing.letters.len(), listing.moved), (statuses.len(), statuses.len() - done.len()));
    assert_eq!(h.dead_letters().await.len(), statuses.len() - done.len(), "the others stay");
    for (env, status) in &envs {
        let record = h.record_of(env).await;
        assert_eq!(record.status, *status, "a note changes no status");
        let expected =
            if done.contains(status) { vec![format!("dead letter discarded: event already {status}")] } else { vec![] };
        assert_eq!(discard_notes(&record), expected, "{status}");
    }
}

#[tokio::test]
async fn a_dead_letter_with_other_content_under_a_completed_events_id_stays() {
    let h = Harness::new();
    let env = Env::issue("cf").at(10).id("client-7").titled("first");
    h.send_env(&env).await;
    h.drain().await;
    dead_letter_copy(&h, Env::issue("cf").at(20).id("client-7").titled("other content").body()).await;

    let listing = h.engine.redrive_dead_letters(100, true, &operator()).await.expect("list");

    assert!(listing.discarded.is_empty(), "an idempotency conflict is no stale copy");
    assert!(listing.letters[0].action.contains("conflict"), "{}", listing.letters[0].action);
    assert_eq!(h.dead_letters().await.len(), 1);
}

#[tokio::test]
async fn a_dead_lettered_reprocess_request_stays_until_its_event_started_over_after_it_was_sent() {
    let h = Harness::new();
    let env = Env::issue("rq").at(10).titled("done");
    h.send_env(&env).await;
    h.drain().await;
    h.advance(Duration::minutes(1));
    dead_letter_copy(&h, Message::redrive_body(&env.event_id(), None, RedriveReason::Reprocess, false)).await;
    dead_letter_copy(&h, Message::redrive_body(&env.event_id(), None, RedriveReason::Promotion, false)).await;

    let first = h.engine.redrive_dead_letters(100, true, &operator()).await.expect("list");
    let discarded: Vec<(EventId, usize)> = first.discarded.iter().map(|d| (d.event_id.clone(), d.messages)).collect();
    assert_eq!(discarded, [(env.event_id(), 1)], "the promotion of a completed event is stale");
    let kept: Vec<&str> =
        first.letters.iter().map(|l| l.action.as_str()).filter(|a| !a.contains("discarded")).collect();
    assert_eq!(kept, ["reprocess not carried out yet: runs when it arrives"]);

    h.advance(Duration::minutes(1));
    reprocess(&h.engine, &[env.event_id()], ReprocessOptions::default()).await;
    h.drain().await;
    assert_eq!(h.status_of(&env).await, Status::Completed);
    let second = h.engine.redrive_dead_letters(100, true, &operator()).await.expect("list");
    assert_eq!(second.discarded.len(), 1, "the event started over after the request: it is stale now");
    assert!(h.dead_letters().await.is_empty());
    let notes = ["dead letter discarded: event already completed"; 2];
    assert_eq!(discard_notes(&h.record_of(&env).await), notes, "one note per pass");
}

#[tokio::test]
async fn a_sweep_records_a_dead_letter_the_engine_never_saw_and_discards_one_of_a_completed_event() {
    let h = Harness::new();
    let done = Env::issue("sw1").at(10).titled("done");
    h.send_env(&done).await;
    h.drain().await;
    dead_letter_copy(&h, done.body()).await;
    let unseen = Env::issue("sw2").at(10).titled("throttled away");
    dead_letter_copy(&h, unseen.body()).await;

    let report = h.engine.sweep(100, &operator()).await.expect("sweep");

    assert_eq!(report.dead_letters_recorded, [unseen.event_id()]);
    let discarded: Vec<(EventId, usize)> =
        report.dead_letters_discarded.iter().map(|d| (d.event_id.clone(), d.messages)).collect();
    assert_eq!(discarded, [(done.event_id(), 1)]);
    assert_eq!(h.status_of(&unseen).await, Status::Failed);
    let left = h.engine.redrive_dead_letters(100, true, &operator()).await.expect("list right after");
    assert_eq!(left.letters.len(), 1, "the sweep leaves the dead letter it kept visible");
    assert_eq!(left.letters[0].event_id, unseen.event_id());
}

// ---- the reprocess Lambda ----

#[tokio::test]
async fn the_reprocess_function_redrives_by_id_and_by_query_and_refuses_bad_requests() {
    let mut settings = crate::support::settings();
    settings.max_attempts = 1;
    let h = Harness::with(Options { settings, ..Options::default() });
    let env = Env::issue("13").at(10).titled("fails, then is re-driven");
    h.script.on(&env.entity(), Step::Permanent("rejected by the API"));
    h.send_env(&env).await;
    h.drain().await;
    assert_eq!(h.status_of(&env).await, Status::Failed);

    let by_query = json!({ "query": { "status": "failed" }, "dry_run": true });
    let report = synctrail_reprocess::handle(&h.engine, by_query, &operator()).await.expect("dry run");
    assert_eq!(report["sent"][0]["event_id"], json!(env.event_id().as_str()));
    assert_eq!(h.depth().await.visible, 0);

    let by_id = json!({ "event_ids": [env.event_id().as_str()] });
    let report = synctrail_reprocess::handle(&h.engine, by_id, &operator()).await.expect("re-drive");
    assert_eq!(report["sent"].as_array().map(Vec::len), Some(1));
    h.drain().await;
    assert_eq!(h.status_of(&env).await, Status::Completed);

    let bad_requests = [
        json!({}),
        json!({ "event_ids": ["a"], "query": { "status": "failed" } }),
        json!({ "ids": [] }),
        json!({ "dead_letters": {}, "force": true }),
        json!({ "dead_letters": {}, "rate": 5 }),
    ];
    for bad in bad_requests {
        let error = synctrail_reprocess::handle(&h.engine, bad.clone(), &operator()).await.expect_err("refused");
        assert!(error.to_string().contains("invalid reprocess request"), "{bad}: {error}");
        assert_eq!(lambda_runtime::Diagnostic::from(error).error_type, "InvalidRequest", "a stable errorType");
    }
}

/// Every reprocess request written in the docs (README, infra/README.md, the template's alarm texts, the function's
/// own doc comment), found by scanning for `{"event_ids"`, `{"query"` and `{"dead_letters"`; placeholders such as
/// `[...]` and `{...}` are filled with an example.
fn documented_reprocess_requests() -> Vec<(String, String)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let files =
        ["README.md", "infra/README.md", "infra/template.yaml", "functions/reprocess/src/lib.rs", "docs/semantics.md"];
    let mut found = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(root.join(file)).unwrap_or_else(|e| panic!("reading {file}: {e}"));
        for start in ["{\"event_ids\"", "{\"query\"", "{\"dead_letters\""].iter().flat_map(|k| text.match_indices(k)) {
            let rest = &text[start.0..];
            let mut depth = 0;
            let end = rest
                .char_indices()
                .find(|&(_, c)| {
                    depth += match c {
                        '{' => 1,
                        '}' => -1,
                        _ => 0,
                    };
                    depth == 0
                })
                .map(|(i, _)| i + 1)
                .unwrap_or_else(|| panic!("{file}: unbalanced request at {}", start.0));
            found.push((file.to_owned(), rest[..end].to_owned()));
        }
    }
    found
}

#[tokio::test]
async fn every_reprocess_request_shown_in_the_docs_is_accepted() {
    let h = Harness::new();
    let requests = documented_reprocess_requests();
    assert!(requests.len() >= 8, "the scan found too few requests: {requests:?}");
    for (file, shown) in requests {
        let filled =
            shown.replace("[...]", "[\"evt-1\"]").replace("{...}", "{\"status\": \"failed\"}").replace("d-…", "d-1");
        let request: serde_json::Value =
            serde_json::from_str(&filled).unwrap_or_else(|e| panic!("{file}: `{shown}` is not JSON: {e}"));
        let answer = synctrail_reprocess::handle(&h.engine, request, &operator()).await;
        assert!(answer.is_ok(), "{file}: `{shown}` is refused: {answer:?}");
    }
}
