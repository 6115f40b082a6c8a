//! Verify by replay (spec §7) on both backends: divergences planted in the mirror behind synctrail's back — a row
//! edited, a row deleted, an effect lost — are found by `verify` (one entity, and the full pass by hash, which reads
//! no payload for entities that match) and put back by `verify --repair`; the sweeper verifies heads flagged
//! `needs_verification`, records the result on the head and clears the flag, and verifies one entity again only once
//! its interval has passed; a destination that can't read is refused with its reason; the HTTP destination is read
//! over `GET`.

use crate::support::backends::BackendRig;
use crate::support::{Env, Harness, Via};
use serde_json::json;
use std::sync::Arc;
use synctrail::destination::{ApplyOutcome, Change, Destination, DestinationError, ReadError};
use synctrail::engine::verify::{Finding, VerifyAllOptions, VerifyError, VerifyOptions, VerifyReport};
use synctrail::engine::{Engine, Invocation};
use synctrail::model::{Status, Verdict};

fn product(id: &str, seconds: i64, title: &str) -> Env {
    Env::product(id).at(seconds).id(&format!("{id}-at-{seconds}")).titled(title)
}

async fn pass(engine: &Engine, repair: bool) -> VerifyReport {
    let options =
        VerifyAllOptions { verify: VerifyOptions { repair, trace_header: None }, ..VerifyAllOptions::default() };
    engine.verify_all(&options, None, &mut |_| {}).await.expect("verify --all")
}

async fn planted_divergences_are_found_and_repaired(aws: Option<&str>) {
    let rig = BackendRig::new(aws).await;
    let (edited, deleted, lost, intact) =
        (product("p-edit", 10, "a"), product("p-del", 10, "b"), product("p-lost", 10, "c"), product("p-ok", 10, "d"));
    let newer = product("p-lost", 20, "c2");
    rig.apply(&[edited.clone(), deleted.clone(), lost.clone(), intact.clone()]).await;
    let before_loss = rig.take_row(&lost.entity()).await;
    rig.apply(std::slice::from_ref(&newer)).await;
    assert!(pass(&rig.engine, false).await.entities.is_empty(), "everything matches before the planting");

    rig.edit_row(&edited.entity(), json!({"title": "changed behind our back"})).await;
    rig.delete_row(&deleted.entity()).await;
    rig.put_row(before_loss).await;
    rig.delete_effect(&newer.event_id()).await;

    let options = VerifyOptions::default();
    let report = rig.engine.verify(&edited.entity(), &options).await.expect("verify");
    assert_eq!(report.finding, Finding::Differs);
    assert_eq!(report.diff.len(), 1);
    assert_eq!((report.diff[0].path.as_str(), report.diff[0].expected.clone()), ("title", Some(json!("a"))));
    let report = rig.engine.verify(&deleted.entity(), &options).await.expect("verify");
    assert_eq!((report.finding, report.reason.as_deref()), (Finding::Differs, Some("missing at the destination")));
    let report = rig.engine.verify(&lost.entity(), &options).await.expect("verify");
    assert_eq!(report.finding, Finding::Differs);
    assert_eq!(report.diff[0].expected, Some(json!("c2")), "the replay holds the lost effect");
    assert_eq!(report.newest_event, Some(newer.event_id()));
    assert_eq!(rig.engine.verify(&intact.entity(), &options).await.expect("verify").finding, Finding::Equal);

    let found = pass(&rig.engine, false).await;
    assert_eq!((found.totals.examined, found.totals.equal, found.totals.differs), (4, 1, 3));
    assert_eq!(found.totals.payloads_read, 4, "only the three that differ are replayed (p-lost has two events)");

    let repaired = pass(&rig.engine, true).await;
    assert_eq!(repaired.totals.repaired, 3);
    rig.drain().await;
    let after = pass(&rig.engine, false).await;
    assert_eq!((after.totals.equal, after.totals.differs, after.totals.payloads_read), (4, 0, 0));
    assert_eq!(rig.state(&edited.entity()).await, Some(edited.payload_value()));
    assert_eq!(rig.state(&deleted.entity()).await, Some(deleted.payload_value()));
    assert_eq!(rig.state(&lost.entity()).await, Some(newer.payload_value()));
    let record = rig.record(&newer.event_id()).await;
    assert_eq!((record.status, record.forced), (Status::Completed, true));
    assert!(
        record.history.iter().any(|h| h.note.as_deref().is_some_and(|n| n.starts_with("repair"))),
        "recorded as a repair"
    );
    let effects = rig.mirror().effects().await.expect("effects");
    assert_eq!(effects.iter().filter(|(id, _)| *id == edited.event_id()).count(), 1, "one effect per event");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planted_divergences_are_found_by_verify_and_put_back_by_verify_repair_on_the_embedded_backend() {
    planted_divergences_are_found_and_repaired(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_planted_divergences_are_found_by_verify_and_put_back_by_verify_repair() {
    planted_divergences_are_found_and_repaired(Some("verify")).await;
}

async fn the_sweeper_verifies_flagged_heads(aws: Option<&str>) {
    let rig = BackendRig::new(aws).await;
    let sweep = || async { rig.engine.sweep(100, &Invocation::default()).await.expect("sweep") };
    let late = Env::adjustment("sku-1").at(10).id("adj-10").delta(-2);
    rig.apply(&[Env::adjustment("sku-1").at(20).id("adj-20").delta(5)]).await;
    rig.apply(std::slice::from_ref(&late)).await;
    let entity = late.entity();
    assert!(rig.record(&late.event_id()).await.out_of_order);
    let head = rig.engine.ports().store.get_head(&entity).await.expect("head").expect("stored");
    assert!(head.needs_verification, "an out-of-order delta flags its entity");

    let report = sweep().await;
    assert_eq!(report.verified.len(), 1);
    assert_eq!(report.verified[0].verdict, Verdict::Equal);
    let head = rig.engine.ports().store.get_head(&entity).await.expect("head").expect("stored");
    assert!(!head.needs_verification, "the flag is cleared");
    assert_eq!(head.verified.map(|v| v.verdict), Some(Verdict::Equal), "the result is on the head");
    assert!(rig.engine.ports().store.heads_to_verify(10).await.expect("to verify").is_empty());
    assert!(sweep().await.verified.is_empty(), "verified once");

    // The destination's total changed behind synctrail's back; the next out-of-order delta flags the entity again.
    rig.edit_row(&entity, json!({"quantity": 100})).await;
    rig.apply(&[Env::adjustment("sku-1").at(5).id("adj-5").delta(1)]).await;
    // Verified less than the interval ago (15 minutes by default): the flag stays for a later sweep.
    assert!(sweep().await.verified.is_empty(), "a replay reads the whole history: not again so soon");
    let head = rig.engine.ports().store.get_head(&entity).await.expect("head").expect("stored");
    assert!(head.needs_verification, "the flag stays");
    // Once the interval has passed (here: a sweeper whose interval is over), it is verified again.
    let settings = synctrail::Settings { verify_interval: chrono::Duration::zero(), ..crate::support::settings() };
    let later = Engine::new(rig.engine.ports().clone(), settings);
    let report = later.sweep(100, &Invocation::default()).await.expect("sweep");
    assert_eq!(report.verified.len(), 1);
    assert_eq!(report.verified[0].verdict, Verdict::Differs);
    let detail = report.verified[0].detail.clone().unwrap_or_default();
    assert!(detail.contains("fields differ: quantity"), "reported, not repaired: {detail}");
    let head = rig.engine.ports().store.get_head(&entity).await.expect("head").expect("stored");
    assert_eq!(head.verified.map(|v| v.verdict), Some(Verdict::Differs));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweeper_verifies_heads_flagged_needs_verification_records_the_result_and_clears_the_flag() {
    the_sweeper_verifies_flagged_heads(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_the_sweeper_verifies_heads_flagged_needs_verification_records_the_result_and_clears_the_flag() {
    the_sweeper_verifies_flagged_heads(Some("sweepverify")).await;
}

/// Flags `sku`'s entity: a delta at 20, then one at 10, applied out of order.
async fn flag(rig: &BackendRig, sku: &str) {
    rig.apply(&[Env::adjustment(sku).at(20).id(&format!("{sku}-20")).delta(5)]).await;
    rig.apply(&[Env::adjustment(sku).at(10).id(&format!("{sku}-10")).delta(-2)]).await;
}

async fn an_entity_verified_lately_does_not_hide_a_flagged_one_behind_it(aws: Option<&str>) {
    let rig = BackendRig::new(aws).await;
    let sweep_one = || async { rig.engine.sweep(1, &Invocation::default()).await.expect("sweep") };
    flag(&rig, "sku-a").await;
    let first = Env::adjustment("sku-a").at(10).entity();
    assert_eq!(sweep_one().await.verified.len(), 1);
    // Flagged again at once, and verified less than the interval ago; another entity is flagged after it.
    rig.apply(&[Env::adjustment("sku-a").at(5).id("sku-a-5").delta(1)]).await;
    flag(&rig, "sku-b").await;
    let second = Env::adjustment("sku-b").at(10).entity();

    let report = sweep_one().await;
    let verified: Vec<&str> = report.verified.iter().map(|v| v.entity_key.as_str()).collect();
    assert_eq!(verified, [second.to_string().as_str()], "passed over the one verified lately");
    let head = rig.engine.ports().store.get_head(&first).await.expect("head").expect("stored");
    assert!(head.needs_verification, "its flag stays for a later sweep");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entity_verified_less_than_the_interval_ago_is_passed_over_and_does_not_hide_one_behind_it() {
    an_entity_verified_lately_does_not_hide_a_flagged_one_behind_it(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_an_entity_verified_less_than_the_interval_ago_is_passed_over_and_does_not_hide_one_behind_it() {
    an_entity_verified_lately_does_not_hide_a_flagged_one_behind_it(Some("verifylately")).await;
}

/// A delta of `sku` at `seconds` adding `delta`, with `fields` beside it.
fn adjustment(sku: &str, seconds: i64, delta: i64, fields: serde_json::Value) -> Env {
    let mut payload = fields;
    payload["delta"] = json!(delta);
    Env::adjustment(sku).at(seconds).id(&format!("{sku}-{seconds}")).payload(payload)
}

async fn a_verification_goes_on_from_the_last_ones_replay(aws: Option<&str>) {
    let rig = BackendRig::new(aws).await;
    // A sweeper whose interval is over at once: each sweep verifies what is flagged.
    let settings = synctrail::Settings { verify_interval: chrono::Duration::zero(), ..crate::support::settings() };
    let sweeper = Engine::new(rig.engine.ports().clone(), settings);
    let entity = Env::adjustment("sku-1").at(1).entity();
    // Verified by the sweeper (going on from its last replay) and by hand (replaying every event) alike.
    let verify_both = || async {
        let report = sweeper.sweep(100, &Invocation::default()).await.expect("sweep");
        assert_eq!(report.verified.len(), 1, "the flagged entity is verified");
        let swept = report.verified[0].clone();
        let by_hand = rig.engine.verify(&entity, &VerifyOptions::default()).await.expect("verify");
        let verdict = match by_hand.finding {
            Finding::Equal => Verdict::Equal,
            _ => Verdict::Differs,
        };
        assert_eq!(swept.verdict, verdict, "the sweeper finds what a full replay finds: {swept:?} / {by_hand:?}");
        let (detail, reason) = (swept.detail.clone().unwrap_or_default(), by_hand.reason.clone().unwrap_or_default());
        assert!(detail.starts_with(&reason), "the same difference: {detail} / {reason}");
        (swept, by_hand)
    };

    rig.apply(&[adjustment("sku-1", 20, 5, json!({"bin": "A"}))]).await;
    rig.apply(&[adjustment("sku-1", 10, -2, json!({}))]).await;
    let (swept, by_hand) = verify_both().await;
    assert_eq!((swept.verdict, swept.payloads_read, by_hand.payloads_read), (Verdict::Equal, 2, 2));
    let newest = rig.record(&adjustment("sku-1", 20, 0, json!({})).event_id()).await;
    assert!(newest.replay_kept.is_some(), "the replay is kept, named on the newest event it folded");

    // A newer delta, then a late one setting a field no later delta set and one a later delta set.
    rig.apply(&[adjustment("sku-1", 30, 1, json!({"bin": "B"}))]).await;
    rig.apply(&[adjustment("sku-1", 15, 3, json!({"bin": "C", "note": "y"}))]).await;
    let (swept, by_hand) = verify_both().await;
    assert_eq!((swept.payloads_read, by_hand.payloads_read), (2, 4), "only the two applied since are read");
    assert_eq!(swept.verdict, Verdict::Differs, "the late note is where an in-order replay puts it");
    let expected: Vec<_> = by_hand.diff.iter().map(|d| (d.path.as_str(), d.expected.clone())).collect();
    assert_eq!(expected, [("note", Some(json!("y")))], "bin stays B, set later; quantity 7 matches");

    // A late delta older than the note it carries: the note set at 15 stays.
    rig.apply(&[adjustment("sku-1", 12, 1, json!({"note": "z"}))]).await;
    let (swept, by_hand) = verify_both().await;
    assert_eq!((swept.payloads_read, by_hand.payloads_read), (1, 5));
    let expected: Vec<_> = by_hand.diff.iter().map(|d| (d.path.as_str(), d.expected.clone())).collect();
    assert_eq!(expected, [("note", Some(json!("y")))]);

    // A kept replay that can't be read: every event is replayed again, with the same finding.
    let store = &rig.engine.ports().store;
    let mut newest = rig.record(&adjustment("sku-1", 30, 0, json!({})).event_id()).await;
    newest.replay_kept.as_mut().expect("kept on the newest event folded").sha256 = "0".repeat(64);
    store.commit(vec![synctrail::store::Write::event(newest)]).await.expect("plant");
    let mut head = store.get_head(&entity).await.expect("head").expect("stored");
    head.needs_verification = true;
    store.commit(vec![synctrail::store::Write::head(head)]).await.expect("flag");
    let (swept, _) = verify_both().await;
    assert_eq!(swept.payloads_read, 5, "replayed in full");
    // The full replay is kept in its turn: the next late delta is the one payload read.
    rig.apply(&[adjustment("sku-1", 8, 1, json!({}))]).await;
    let (swept, _) = verify_both().await;
    assert_eq!(swept.payloads_read, 1, "the replay kept after the full one is used");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verification_goes_on_from_the_last_ones_replay_reading_only_the_payloads_applied_since() {
    a_verification_goes_on_from_the_last_ones_replay(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_a_verification_goes_on_from_the_last_ones_replay_reading_only_the_payloads_applied_since() {
    a_verification_goes_on_from_the_last_ones_replay(Some("verifyresume")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweeper_repairs_a_difference_when_configured_to() {
    let settings = synctrail::Settings { verify_repair: true, ..crate::support::settings() };
    let rig = BackendRig::with_settings(None, settings).await;
    let first = product("p-1", 10, "first");
    rig.apply(std::slice::from_ref(&first)).await;
    rig.edit_row(&first.entity(), json!({"title": "edited"})).await;
    // Flag the entity as an out-of-order delta would (verification is what the sweeper does with the flag).
    let store = &rig.engine.ports().store;
    let mut head = store.get_head(&first.entity()).await.expect("head").expect("stored");
    head.needs_verification = true;
    store.commit(vec![synctrail::store::Write::head(head)]).await.expect("flag");
    let report = rig.engine.sweep(100, &Invocation::default()).await.expect("sweep");
    assert_eq!(report.verified[0].verdict, Verdict::Repaired);
    rig.drain().await;
    assert_eq!(rig.state(&first.entity()).await, Some(first.payload_value()));
}

/// The reference mirror, something done before each of its reads.
struct BeforeReads {
    inner: Arc<dyn Destination>,
    before: BeforeRead,
}

/// What [`BeforeReads`] does before a read.
enum BeforeRead {
    /// Waits at the gate: what a verification meets when an event is applied between its listing of the events and
    /// its read of the destination.
    Gate(Arc<crate::support::Gate>),
    /// Moves the clock on: a slow read.
    Advance(Arc<synctrail::clock::ManualClock>, chrono::Duration),
}

#[async_trait::async_trait]
impl Destination for BeforeReads {
    async fn apply(&self, change: &Change<'_>) -> Result<ApplyOutcome, DestinationError> {
        self.inner.apply(change).await
    }

    async fn read(
        &self,
        entity: &synctrail::model::EntityKey,
    ) -> Result<Option<synctrail::destination::DestinationRecord>, ReadError> {
        match &self.before {
            BeforeRead::Gate(gate) => gate.hold().await,
            BeforeRead::Advance(clock, by) => clock.advance(*by),
        }
        self.inner.read(entity).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweepers_verification_stops_between_two_entities_when_its_deadline_nears() {
    let rig = BackendRig::new(None).await;
    let products = [product("p-slow-1", 10, "first"), product("p-slow-2", 10, "second")];
    rig.apply(&products).await;
    let store = &rig.engine.ports().store;
    for env in &products {
        let mut head = store.get_head(&env.entity()).await.expect("head").expect("stored");
        head.needs_verification = true;
        store.commit(vec![synctrail::store::Write::head(head)]).await.expect("flag");
    }
    let clock = Arc::new(synctrail::clock::ManualClock::new(chrono::Utc::now()));
    let by = chrono::Duration::seconds(26);
    let before = BeforeRead::Advance(clock.clone(), by);
    let destination = Arc::new(BeforeReads { inner: rig.backend.ports.destination.clone(), before });
    let ports = synctrail::engine::Ports { destination, clock: clock.clone(), ..rig.backend.ports.clone() };
    let sweeper = Engine::new(ports, crate::support::settings());

    // 30 s left: one verification's read takes 26 of them, leaving less than the sweep's 5 s reserve.
    let now = synctrail::clock::Clock::now(clock.as_ref());
    let invocation = Invocation { deadline: Some(now + chrono::Duration::seconds(30)), ..Invocation::default() };
    let report = sweeper.sweep(100, &invocation).await.expect("sweep");
    assert_eq!(report.verified.len(), 1, "{report:?}");
    assert!(report.out_of_time, "says it stopped for its deadline: {report:?}");
    let mut still_flagged = 0;
    for env in &products {
        still_flagged +=
            usize::from(store.get_head(&env.entity()).await.expect("head").expect("stored").needs_verification);
    }
    assert_eq!(still_flagged, 1, "the other is left to the next sweep");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_applied_while_verify_reads_is_not_taken_for_a_difference_and_nothing_is_repaired() {
    let rig = BackendRig::new(None).await;
    let (first, second) = (product("p-race", 10, "first"), product("p-race", 20, "second"));
    rig.apply(std::slice::from_ref(&first)).await;
    let gate = Arc::new(crate::support::Gate::default());
    let destination =
        Arc::new(BeforeReads { inner: rig.backend.ports.destination.clone(), before: BeforeRead::Gate(gate.clone()) });
    let verifier =
        Engine::new(synctrail::engine::Ports { destination, ..rig.backend.ports.clone() }, crate::support::settings());
    let options = VerifyOptions { repair: true, trace_header: None };

    let entity = first.entity();
    let (report, ()) = tokio::join!(verifier.verify(&entity, &options), async {
        // Verify has listed the events (only `first`) and is about to read the destination: `second` lands.
        gate.entered().await;
        rig.apply(std::slice::from_ref(&second)).await;
        gate.release();
    });

    let report = report.expect("verify");
    assert_eq!(report.finding, Finding::Skipped, "{report:?}");
    assert!(report.reason.as_deref().is_some_and(|r| r.contains("moved on")), "{report:?}");
    assert_eq!(report.repaired, None, "no forced re-drive of the older event");
    rig.drain().await;
    assert_eq!(rig.state(&second.entity()).await, Some(second.payload_value()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repair_that_arrives_after_a_newer_event_was_applied_is_not_run_and_says_why() {
    let rig = BackendRig::new(None).await;
    let (first, second) = (product("p-late", 10, "first"), product("p-late", 20, "second"));
    rig.apply(std::slice::from_ref(&first)).await;
    rig.edit_row(&first.entity(), json!({"title": "edited"})).await;
    let report = rig.engine.verify(&first.entity(), &VerifyOptions { repair: true, trace_header: None }).await;
    assert_eq!(report.expect("verify").repaired, Some(first.event_id()), "the repair is on the queue");

    // Before the repair is processed, a newer event arrives and is applied first.
    rig.engine
        .process(
            &synctrail::Incoming {
                message_id: "m-second".into(),
                body: second.body(),
                receive_count: 1,
                trace_header: None,
            },
            &Invocation::default(),
        )
        .await
        .expect("the newer event");
    rig.drain().await;

    assert_eq!(rig.state(&second.entity()).await, Some(second.payload_value()), "the newer state stays");
    let record = rig.record(&first.event_id()).await;
    assert_eq!(record.status, Status::Completed);
    let last = record.history.last().and_then(|e| e.note.clone()).unwrap_or_default();
    assert!(last.contains("repair not run") && last.contains(second.event_id().as_str()), "{last}");
}

/// A destination of a team's own that applies and does not read.
struct WriteOnly(Arc<dyn Destination>);

#[async_trait::async_trait]
impl Destination for WriteOnly {
    async fn apply(&self, change: &Change<'_>) -> Result<ApplyOutcome, DestinationError> {
        self.0.apply(change).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_refuses_a_destination_that_cannot_read_with_its_reason() {
    let rig = BackendRig::new(None).await;
    let first = product("p-1", 10, "first");
    rig.apply(std::slice::from_ref(&first)).await;
    let ports = synctrail::engine::Ports {
        destination: Arc::new(WriteOnly(rig.backend.ports.destination.clone())),
        ..rig.backend.ports.clone()
    };
    let engine = Engine::new(ports, crate::support::settings());
    match engine.verify(&first.entity(), &VerifyOptions::default()).await {
        Err(VerifyError::Destination(ReadError::Unsupported(why))) => assert!(why.contains("can't read"), "{why}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_reads_the_http_destination_back_over_get() {
    let h = Harness::over(Via::Http);
    let first = product("p-1", 10, "first");
    h.send_env(&first).await;
    h.deliver(10).await;
    let report = h.engine.verify(&first.entity(), &VerifyOptions::default()).await.expect("verify over HTTP");
    assert_eq!(report.finding, Finding::Equal);
    h.mirror().record_local_edit(&first.entity(), json!({"title": "local"}), h.now()).await.expect("edit");
    let report = h.engine.verify(&first.entity(), &VerifyOptions::default()).await.expect("verify over HTTP");
    assert_eq!(report.finding, Finding::Skipped, "a local edit is not a divergence of the replay");
    let reads = h
        .receiver
        .as_ref()
        .expect("receiver")
        .seen()
        .into_iter()
        .filter(|s| s.request_line.starts_with("GET "))
        .count();
    assert_eq!(reads, 2);
}
