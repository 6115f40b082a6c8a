//! One test per rule of `docs/semantics.md` §2–§5, played end to end: envelopes are sent to the embedded
//! queue, delivered to the processor Lambda's handler as real `SqsEvent`s, and the partial batch response is
//! honoured as Lambda would. Each test checks statuses, pointers, the entity's head, the mirror and its effects.

use crate::support::*;
use chrono::Duration;
use serde_json::json;
use std::sync::Arc;
use synctrail::destination::Destination;
use synctrail::engine::{Disposition, Invocation};
use synctrail::model::{EntityHead, ErrorKind, EventRecord, Message, OrderKey, RedriveReason, Status};
use synctrail::store::Write;

fn ids(records: &[&Env]) -> Vec<synctrail::model::EventId> {
    records.iter().map(|e| e.event_id()).collect()
}

// ---- §4 rule 1: against the applied event ----

async fn stale_event_is_dropped_for_the_applied_one(via: Via) {
    let h = Harness::over(via);
    let newer = Env::issue("1").at(20).titled("newer");
    let older = Env::issue("1").at(10).titled("older");

    let d = h.apply_in_turn(&[&newer, &older]).await;

    assert_eq!(d[0].only().status, Some(Status::Completed));
    assert_eq!((d[1].only().status, &d[1].only().disposition), (Some(Status::Dropped), &Disposition::Ack));
    assert!(d[1].failures().is_empty(), "a dropped event's message is acknowledged");
    let stale = h.record_of(&older).await;
    assert_eq!(stale.status, Status::Dropped);
    assert_eq!(stale.dropped_for.as_deref(), Some(newer.event_id().as_str()));
    assert_eq!(stale.attempt, 0, "never claimed the entity");
    assert_eq!(timeline(&stale), [Status::Received, Status::Dropped]);
    let head = h.head(&newer.entity()).await;
    assert_eq!(head.applied.map(|a| a.event_id), Some(newer.event_id()));
    assert!(head.inflight.is_none() && head.next.is_none());
    assert_eq!(h.mirror_state(&newer.entity()).await, Some(json!({"title": "newer"})));
    assert_eq!(h.effects().await, ids(&[&newer]));
    let depth = h.depth().await;
    assert_eq!(depth.visible + depth.in_flight + depth.delayed, 0, "both messages deleted");
}

async fn same_change_with_another_id_is_a_duplicate_of_the_applied_one(via: Via) {
    let h = Harness::over(via);
    let price = json!({"id": 9, "price": "10.00"});
    let original = Env::product("9").at(5).payload(price.clone()).id("shopify-evt-1");
    let again = Env::product("9").at(5).payload(price.clone()).id("shopify-evt-2");

    let d = h.apply_in_turn(&[&original, &again]).await;

    assert_eq!(d[1].only().status, Some(Status::Duplicate));
    assert!(d[1].failures().is_empty());
    let dup = h.record_of(&again).await;
    assert_eq!(dup.status, Status::Duplicate);
    assert_eq!(dup.duplicate_of, Some(original.event_id()));
    assert_eq!((dup.attempt, dup.tie), (0, false));
    assert_eq!(h.status_of(&original).await, Status::Completed);
    assert_eq!(h.mirror_state(&original.entity()).await, Some(price));
    assert_eq!(h.effects().await, ids(&[&original]), "the duplicate had no effect");
}

// ---- §4 rule 2: against a live in-flight event, then against `next` ----

async fn newer_event_waits_as_next_behind_the_inflight_one_and_its_message_is_acknowledged(via: Via) {
    let h = Harness::over(via);
    let first = Env::issue("2").at(10).titled("v1");
    let second = Env::issue("2").at(20).titled("v2");
    let entity = first.entity();
    let gate = h.script.hold_next();
    let (d1, ()) = deliver_racing(&h, &first, async {
        gate.entered().await;
        h.send_env(&second).await;
        let d2 = h.deliver(1).await;
        assert_eq!((d2.only().status, &d2.only().disposition), (Some(Status::Queued), &Disposition::Ack));
        assert!(d2.failures().is_empty(), "the queued event's message is acknowledged");
        let queued = h.record_of(&second).await;
        assert_eq!((queued.status, queued.attempt), (Status::Queued, 0));
        let head = h.head(&entity).await;
        assert_eq!(head.inflight.as_ref().map(|i| &i.slot.event_id), Some(&first.event_id()));
        assert_eq!(head.next.as_ref().map(|n| &n.event_id), Some(&second.event_id()));
        assert_eq!(h.status_of(&first).await, Status::Processing);
        let depth = h.depth().await;
        assert_eq!((depth.visible, depth.in_flight), (0, 1), "only the in-flight event's message is left");
        assert!(h.effects().await.is_empty());
        gate.release();
    })
    .await;

    assert_eq!(d1.only().status, Some(Status::Completed));
    h.drain().await;
    let done = h.record_of(&second).await;
    assert_eq!(done.status, Status::Completed);
    assert_eq!(timeline(&done), [Status::Received, Status::Queued, Status::Processing, Status::Completed]);
    assert_eq!(h.mirror_state(&entity).await, Some(json!({"title": "v2"})));
    assert_eq!(h.effects().await, ids(&[&first, &second]));
    let head = h.head(&entity).await;
    assert_eq!(head.applied.map(|a| a.event_id), Some(second.event_id()));
    assert!(head.inflight.is_none() && head.next.is_none());
}

async fn newer_event_cancels_the_queued_next(via: Via) {
    let h = Harness::over(via);
    let first = Env::issue("3").at(10).titled("v1");
    let second = Env::issue("3").at(20).titled("v2");
    let third = Env::issue("3").at(30).titled("v3");
    let entity = first.entity();
    let gate = h.script.hold_next();
    let (d1, ()) = deliver_racing(&h, &first, async {
        gate.entered().await;
        h.send_env(&second).await;
        assert_eq!(h.deliver(1).await.only().status, Some(Status::Queued));
        h.send_env(&third).await;
        let d3 = h.deliver(1).await;
        assert_eq!(d3.only().status, Some(Status::Queued));
        assert!(d3.failures().is_empty());
        let canceled = h.record_of(&second).await;
        assert_eq!(canceled.status, Status::Canceled);
        assert_eq!(canceled.canceled_by, Some(third.event_id()));
        assert_eq!(timeline(&canceled), [Status::Received, Status::Queued, Status::Canceled]);
        let head = h.head(&entity).await;
        assert_eq!(head.next.as_ref().map(|n| &n.event_id), Some(&third.event_id()));
        assert_eq!(head.inflight.as_ref().map(|i| &i.slot.event_id), Some(&first.event_id()));
        gate.release();
    })
    .await;

    assert_eq!(d1.only().status, Some(Status::Completed));
    h.drain().await;
    assert_eq!(h.status_of(&third).await, Status::Completed);
    assert_eq!(h.status_of(&second).await, Status::Canceled, "a canceled event stays canceled");
    assert_eq!(h.mirror_state(&entity).await, Some(json!({"title": "v3"})));
    assert_eq!(h.effects().await, ids(&[&first, &third]), "the canceled event never reached the destination");
}

async fn event_between_the_inflight_and_the_next_one_is_dropped_for_the_next(via: Via) {
    let h = Harness::over(via);
    let first = Env::issue("4").at(10).titled("v1");
    let next = Env::issue("4").at(30).titled("v3");
    let between = Env::issue("4").at(20).titled("v2");
    let gate = h.script.hold_next();
    let (_, ()) = deliver_racing(&h, &first, async {
        gate.entered().await;
        h.send_env(&next).await;
        assert_eq!(h.deliver(1).await.only().status, Some(Status::Queued));
        h.send_env(&between).await;
        assert_eq!(h.deliver(1).await.only().status, Some(Status::Dropped));
        gate.release();
    })
    .await;
    h.drain().await;

    let stale = h.record_of(&between).await;
    assert_eq!((stale.status, stale.dropped_for.as_deref()), (Status::Dropped, Some(next.event_id().as_str())));
    assert_eq!(h.status_of(&next).await, Status::Completed);
    assert_eq!(h.mirror_state(&first.entity()).await, Some(json!({"title": "v3"})));
    assert_eq!(h.effects().await, ids(&[&first, &next]));
}

async fn event_older_than_the_inflight_one_is_dropped_for_it(via: Via) {
    let h = Harness::over(via);
    let inflight = Env::issue("5").at(20).titled("v2");
    let older = Env::issue("5").at(10).titled("v1");
    let gate = h.script.hold_next();
    let (d1, ()) = deliver_racing(&h, &inflight, async {
        gate.entered().await;
        h.send_env(&older).await;
        let d = h.deliver(1).await;
        assert_eq!((d.only().status, &d.only().disposition), (Some(Status::Dropped), &Disposition::Ack));
        let head = h.head(&inflight.entity()).await;
        assert!(head.next.is_none(), "a stale event never becomes next");
        gate.release();
    })
    .await;

    assert_eq!(d1.only().status, Some(Status::Completed));
    let stale = h.record_of(&older).await;
    assert_eq!(stale.status, Status::Dropped);
    assert_eq!(stale.dropped_for.as_deref(), Some(inflight.event_id().as_str()));
    assert_eq!(h.mirror_state(&inflight.entity()).await, Some(json!({"title": "v2"})));
    assert_eq!(h.effects().await, ids(&[&inflight]));
}

async fn same_change_as_the_inflight_one_is_its_duplicate(via: Via) {
    let h = Harness::over(via);
    let inflight = Env::issue("6").at(20).titled("v2").id("gh-delivery-1");
    let copy = Env::issue("6").at(20).titled("v2").id("gh-delivery-2");
    let gate = h.script.hold_next();
    let (_, ()) = deliver_racing(&h, &inflight, async {
        gate.entered().await;
        h.send_env(&copy).await;
        assert_eq!(h.deliver(1).await.only().status, Some(Status::Duplicate));
        gate.release();
    })
    .await;

    let dup = h.record_of(&copy).await;
    assert_eq!((dup.status, dup.duplicate_of), (Status::Duplicate, Some(inflight.event_id())));
    assert_eq!(h.status_of(&inflight).await, Status::Completed);
    assert_eq!(h.effects().await, ids(&[&inflight]));
}

// ---- §4 rule 3: taking over an errored or expired in-flight event ----

async fn newer_event_takes_over_an_errored_inflight_one_and_cancels_it(via: Via) {
    let h = Harness::over(via);
    let failing = Env::issue("7").at(10).titled("v1");
    let newer = Env::issue("7").at(20).titled("v2");
    let entity = failing.entity();
    h.script.next(Step::Retryable("503 from the destination"));
    h.send_env(&failing).await;

    let d1 = h.deliver(1).await;
    assert_eq!(d1.only().status, Some(Status::Errored));
    assert_eq!(d1.failures(), [d1.messages[0].message_id.clone()]);
    // The backoff ends inside the claim's lease: the failure wrote the record alone (spec §9 "A failure inside its
    // claim's lease writes the record alone"), so the head, as the claim wrote it, does not say `errored`; the
    // record of the attempt it names does.
    let head = h.head(&entity).await;
    let inflight = head.inflight.as_ref().expect("the errored event holds its entity");
    assert_eq!((&inflight.slot.event_id, inflight.errored), (&failing.event_id(), false));
    assert_eq!(head.version, 1, "the head was written once, by the claim");
    assert_eq!(h.record_of(&failing).await.attempt, inflight.attempt);

    h.send_env(&newer).await;
    let d2 = h.deliver(1).await;
    assert_eq!(d2.only().status, Some(Status::Completed), "the errored event does not block the entity");
    let canceled = h.record_of(&failing).await;
    assert_eq!((canceled.status, canceled.canceled_by.clone()), (Status::Canceled, Some(newer.event_id())));
    assert_eq!(canceled.lease_until, None);
    assert_eq!(timeline(&canceled), [Status::Received, Status::Processing, Status::Errored, Status::Canceled]);
    assert_eq!(canceled.error, None, "canceled points at the newer event; the error stays in the history");
    assert_eq!(canceled.history[2].note.as_deref(), Some("503 from the destination"));

    // The errored event's retry comes back: acknowledged, no effect.
    h.advance(Duration::minutes(10));
    let d3 = h.deliver(1).await;
    assert_eq!(d3.messages[0].message_id, d1.messages[0].message_id);
    assert!(d3.only().redelivered);
    assert_eq!((d3.only().status, &d3.only().disposition), (Some(Status::Canceled), &Disposition::Ack));
    assert_eq!(h.mirror_state(&entity).await, Some(json!({"title": "v2"})));
    assert_eq!(h.effects().await, ids(&[&newer]));
    let head = h.head(&entity).await;
    assert_eq!(head.applied.map(|a| a.event_id), Some(newer.event_id()));
    assert!(head.inflight.is_none());
}

async fn newer_event_takes_over_after_the_lease_expires(via: Via) {
    let h = Harness::over(via);
    let crashed = Env::issue("8").at(10).titled("v1");
    let early = Env::issue("8").at(20).titled("v2");
    let late = Env::issue("8").at(30).titled("v3");
    let entity = crashed.entity();
    h.script.next(Step::Crash { write: false });
    h.send_env(&crashed).await;
    assert!(h.deliver(1).await.crashed());
    let lease_until = h.record_of(&crashed).await.lease_until.expect("a crashed attempt leaves its lease");

    // Up to the lease's end (plus the clock margin) the crashed holder still counts as live: newer events wait.
    h.advance(lease_until - h.now() + h.options.settings.clock_margin);
    h.send_env(&early).await;
    assert_eq!(h.deliver(1).await.only().status, Some(Status::Queued));
    assert_eq!(h.status_of(&crashed).await, Status::Processing);

    // Past it, a newer event takes over and cancels both the crashed holder and the queued next.
    h.advance(Duration::milliseconds(1));
    h.send_env(&late).await;
    assert_eq!(h.deliver(1).await.only().status, Some(Status::Completed));
    let old = h.record_of(&crashed).await;
    assert_eq!((old.status, old.canceled_by.clone()), (Status::Canceled, Some(late.event_id())));
    assert_eq!(timeline(&old), [Status::Received, Status::Processing, Status::Canceled]);
    let queued = h.record_of(&early).await;
    assert_eq!((queued.status, queued.canceled_by), (Status::Canceled, Some(late.event_id())));

    // The crashed invocation's message returns after its visibility timeout: no effect.
    h.advance(h.options.visibility_timeout);
    let d = h.deliver(1).await;
    assert!(d.only().redelivered);
    assert_eq!(h.mirror_state(&entity).await, Some(json!({"title": "v3"})));
    assert_eq!(h.effects().await, ids(&[&late]));
    let head = h.head(&entity).await;
    assert!(head.inflight.is_none() && head.next.is_none());
}

// ---- §4 rule 6: completion and promotion ----

async fn completed_event_promotes_next_and_sends_a_message_naming_it(via: Via) {
    let h = Harness::over(via);
    let first = Env::product("10").at(10).titled("v1");
    let second = Env::product("10").at(20).titled("v2");
    let entity = first.entity();
    let gate = h.script.hold_next();
    let (d1, ()) = deliver_racing(&h, &first, async {
        gate.entered().await;
        h.send_env(&second).await;
        assert_eq!(h.deliver(1).await.only().status, Some(Status::Queued));
        gate.release();
    })
    .await;
    assert_eq!(d1.only().status, Some(Status::Completed));

    // One compare-and-set: applied = first, inflight = the promoted next, next = none.
    let head = h.head(&entity).await;
    assert_eq!(head.applied.as_ref().map(|a| &a.event_id), Some(&first.event_id()));
    let promoted = head.inflight.as_ref().expect("next was promoted");
    assert_eq!(promoted.slot.event_id, second.event_id());
    assert_eq!(promoted.lease_until, h.now() + h.options.settings.lease);
    assert!(head.next.is_none());
    assert_eq!(h.status_of(&second).await, Status::Queued, "promoted, not yet claimed");

    let messages = h.receive(10).await;
    assert_eq!(messages.len(), 1, "exactly one message names the promoted event");
    match Message::parse(&messages[0].body, usize::MAX) {
        Ok(Message::Redrive { event_id, entity: named, reason, force }) => {
            assert_eq!((event_id, reason, force), (second.event_id(), RedriveReason::Promotion, false));
            assert_eq!(named.as_ref(), Some(&entity), "it names its entity: the record and head are read together");
        }
        other => panic!("expected a promotion re-drive, got {other:?}"),
    }
    assert_eq!(messages[0].trace_header.as_deref(), Some(d1.trace_id.as_str()), "the trace continues");

    let d2 = h.invoke(&messages).await;
    assert_eq!(d2.only().status, Some(Status::Completed));
    let done = h.record_of(&second).await;
    assert_eq!((done.status, done.attempt), (Status::Completed, 1));
    assert_eq!(h.mirror_state(&entity).await, Some(json!({"title": "v2"})));
    assert_eq!(h.effects().await, ids(&[&first, &second]));
    assert!(h.head(&entity).await.inflight.is_none());
}

// ---- Ties ----

async fn tie_is_applied_in_arrival_order_and_flagged(via: Via) {
    let h = Harness::over(via);
    // One after the other.
    let a = Env::issue("11").at(30).titled("first");
    let b = Env::issue("11").at(30).titled("second");
    let d = h.apply_in_turn(&[&a, &b]).await;
    assert_eq!(d[1].only().status, Some(Status::Completed));
    let (ra, rb) = (h.record_of(&a).await, h.record_of(&b).await);
    assert_eq!((ra.tie, rb.tie), (false, true), "the later one is flagged");
    assert_eq!(h.mirror_state(&a.entity()).await, Some(json!({"title": "second"})));

    // The later one arrives while the earlier is in flight: it waits and is applied after it.
    let c = Env::issue("12").at(30).titled("first");
    let e = Env::issue("12").at(30).titled("second");
    let gate = h.script.hold_next();
    let (_, ()) = deliver_racing(&h, &c, async {
        gate.entered().await;
        h.send_env(&e).await;
        assert_eq!(h.deliver(1).await.only().status, Some(Status::Queued));
        assert!(h.record_of(&e).await.tie);
        gate.release();
    })
    .await;
    h.drain().await;
    let (rc, re) = (h.record_of(&c).await, h.record_of(&e).await);
    assert_eq!((rc.status, rc.tie), (Status::Completed, false));
    assert_eq!((re.status, re.tie), (Status::Completed, true));
    assert_eq!(h.mirror_state(&c.entity()).await, Some(json!({"title": "second"})));
    assert_eq!(h.effects().await, ids(&[&a, &b, &c, &e]));
}

async fn tie_is_never_dropped_as_duplicate(via: Via) {
    let h = Harness::over(via);
    let a = Env::product("13").at(30).payload(json!({"stock": 1}));
    let b = Env::product("13").at(30).payload(json!({"stock": 2}));
    let d = h.apply_in_turn(&[&a, &b]).await;

    let rb = h.record_of(&b).await;
    assert_eq!(d[1].only().status, Some(Status::Completed));
    assert_eq!(
        (rb.status, rb.duplicate_of.clone(), rb.dropped_for.clone(), rb.tie),
        (Status::Completed, None, None, true)
    );
    assert_eq!(h.effects_of(&b.event_id()).await, 1, "the destination applied the tie too");
    assert_eq!(h.mirror_state(&a.entity()).await, Some(json!({"stock": 2})));

    // Whereas the same content at the same key is a duplicate, even under another id.
    let b_again = Env::product("13").at(30).payload(json!({"stock": 2})).id("shopify-evt-13-b");
    h.send_env(&b_again).await;
    assert_eq!(h.deliver(1).await.only().status, Some(Status::Duplicate));
    assert_eq!(h.record_of(&b_again).await.duplicate_of, Some(b.event_id()));
    assert_eq!(h.effects().await, ids(&[&a, &b]));
}

// ---- `create` without `updated_at` ----

async fn create_without_updated_at_is_ordered_before_any_timestamped_event(via: Via) {
    let h = Harness::over(via);
    // Shopify sends `update` before `create`: the create is stale at once.
    let update = Env::product("14").at(10).titled("updated");
    let create = Env::product("14").kind("create").titled("created");
    assert!(!create.body().contains("updated_at"));
    h.apply_in_turn(&[&update, &create]).await;
    let stale = h.record_of(&create).await;
    assert_eq!(stale.order, Some(OrderKey::BEFORE_ANY));
    assert_eq!((stale.status, stale.dropped_for.as_deref()), (Status::Dropped, Some(update.event_id().as_str())));
    assert_eq!(h.mirror_state(&update.entity()).await, Some(json!({"title": "updated"})));

    // In the usual order the create is processed at once and the update follows.
    let create2 = Env::product("15").kind("create").titled("created");
    let update2 = Env::product("15").at(-3600).titled("updated an hour before t0");
    let d = h.apply_in_turn(&[&create2, &update2]).await;
    assert_eq!(d[0].only().status, Some(Status::Completed));
    assert_eq!(d[1].only().status, Some(Status::Completed));
    assert_eq!(h.mirror_state(&update2.entity()).await, Some(json!({"title": "updated an hour before t0"})));
    assert_eq!(h.effects().await, ids(&[&update, &create2, &update2]));
}

// ---- §4 rule 5: the destination's guard ----

async fn destination_holding_a_newer_local_edit_drops_the_event_for_that_record(via: Via) {
    let h = Harness::over(via);
    let old = Env::product("16").at(10).titled("from shopify");
    let entity = old.entity();
    h.mirror().record_local_edit(&entity, json!({"title": "edited by hand"}), time(20)).await.expect("local edit");

    let d = h.apply_in_turn(&[&old]).await;
    assert_eq!((d[0].only().status, &d[0].only().disposition), (Some(Status::Dropped), &Disposition::Ack));
    let dropped = h.record_of(&old).await;
    let holder = dropped.dropped_for.clone().expect("dropped_for names the record");
    assert!(holder.contains(&entity.to_string()) && holder.contains("local-edit"), "dropped_for = {holder}");
    assert_eq!(timeline(&dropped), [Status::Received, Status::Processing, Status::Dropped]);
    assert_eq!(h.mirror_state(&entity).await, Some(json!({"title": "edited by hand"})));
    assert!(h.effects().await.is_empty());
    let head = h.head(&entity).await;
    assert!(head.inflight.is_none() && head.applied.is_none(), "the head is released, nothing applied");

    // A change newer than the edit wins over it.
    let newer = Env::product("16").at(30).titled("newer from shopify");
    h.apply_in_turn(&[&newer]).await;
    assert_eq!(h.status_of(&newer).await, Status::Completed);
    let row = h.mirror_row(&entity).await.expect("row");
    assert_eq!((row.state, row.modified_at), (json!({"title": "newer from shopify"}), None));
    assert_eq!(h.effects().await, ids(&[&newer]));
}

async fn create_without_updated_at_is_dropped_for_a_local_edit(via: Via) {
    let h = Harness::over(via);
    let create = Env::product("17").kind("create").titled("created upstream");
    let entity = create.entity();
    h.mirror().record_local_edit(&entity, json!({"title": "edited by hand"}), time(20)).await.expect("local edit");

    h.apply_in_turn(&[&create]).await;

    // A create is ordered before any timestamped change (§1), so the edit is newer (§4 rule 5).
    let record = h.record_of(&create).await;
    assert_eq!(record.status, Status::Dropped, "history: {:?}", timeline(&record));
    assert!(record.dropped_for.as_deref().is_some_and(|d| d.contains("local-edit")));
    assert_eq!(h.mirror_state(&entity).await, Some(json!({"title": "edited by hand"})));
    assert!(h.effects().await.is_empty());
}

// ---- §4 rule 7: errors ----

async fn retryable_error_marks_errored_and_returns_the_message_with_backoff(via: Via) {
    let h = Harness::over(via);
    let event = Env::issue("18").at(10).titled("v1");
    let entity = event.entity();
    for _ in 0..3 {
        h.script.next(Step::Retryable("502 bad gateway"));
    }
    let message_id = h.send_env(&event).await;
    let base = h.options.settings.backoff_base;
    let mut previous = Duration::zero();
    let mut first_lease_end = None;
    for attempt in 1..=3u32 {
        let d = h.deliver(1).await;
        assert_eq!(d.messages[0].receive_count, attempt);
        assert_eq!(d.only().status, Some(Status::Errored));
        assert_eq!(d.failures(), std::slice::from_ref(&message_id), "the message goes back to the queue");
        let after = d.retry_after(0);
        let full = base * 2i32.pow(attempt - 1);
        assert!(after >= full / 2 && after <= full, "attempt {attempt}: backoff {after} not in [{}, {full}]", full / 2);
        assert!(after >= previous, "attempt {attempt}: backoff {after} shrank from {previous}");
        previous = after;

        let record = h.record_of(&event).await;
        assert_eq!((record.status, record.attempt), (Status::Errored, attempt));
        let error = record.error.clone().expect("error recorded");
        assert_eq!((error.kind, error.retryable), (ErrorKind::Retryable, true));
        assert!(error.message.contains("502 bad gateway"), "{}", error.message);
        // Each backoff ends inside the lease of the claim before it: the failure leaves the head as that claim wrote
        // it (spec §9 "A failure inside its claim's lease writes the record alone"), and so does each retry, which
        // claims inside the hold with its record alone ("A retry inside its hold writes the record alone"): the
        // head is the first claim's, its attempt and version too, and the hold lasts as long as the record's lease.
        let head = h.head(&entity).await;
        let inflight = head.inflight.expect("still holds the entity");
        assert_eq!((inflight.errored, inflight.attempt, head.version), (false, 1, 1), "attempt {attempt}");
        let hold_until = inflight.hold_until(Some(&record));
        assert!(hold_until >= h.now() + after, "attempt {attempt}: the hold ends before the retry");
        assert_eq!(record.lease_until.is_some(), attempt > 1, "attempt {attempt}: only a retry's record keeps a lease");
        // The hold's earliest lease end stays the first claim's through every retry (its lease index entry stays).
        let first = *first_lease_end.get_or_insert(inflight.lease_floor());
        assert!(first <= h.now() + h.options.function_timeout + h.options.settings.clock_margin);
        assert_eq!(inflight.lease_floor(), first, "attempt {attempt}");

        // The queue honours the delay: invisible until it is over, visible right then.
        h.advance(after - Duration::milliseconds(1));
        assert!(h.receive(1).await.is_empty(), "attempt {attempt}: came back before its backoff");
        h.advance(Duration::milliseconds(1));
    }
    let d = h.deliver(1).await;
    assert_eq!(d.only().status, Some(Status::Completed));
    assert!(d.failures().is_empty());
    let record = h.record_of(&event).await;
    assert_eq!(record.attempt, 4);
    use Status::*;
    assert_eq!(
        timeline(&record),
        [Received, Processing, Errored, Processing, Errored, Processing, Errored, Processing, Completed]
    );
    assert_eq!(h.effects().await, ids(&[&event]));
    assert_eq!(h.mirror_state(&entity).await, Some(json!({"title": "v1"})));
}

async fn a_backoff_that_outlasts_its_claims_lease_puts_a_lease_past_the_retry_on_the_record_not_the_head(via: Via) {
    // A first backoff of 20–40 s against a claim's lease of the invocation's 10 s.
    let settings = synctrail::settings::Settings { backoff_base: Duration::seconds(40), ..settings() };
    let h = Harness::with(Options { via, settings, ..Options::default() });
    let failing = Env::issue("18b").at(10).titled("v1");
    let newer = Env::issue("18b").at(20).titled("v2");
    let retried = Env::issue("18e").at(10).titled("v1");
    h.script.next(Step::Retryable("502 bad gateway"));
    h.script.next(Step::Retryable("502 bad gateway"));
    h.send_env(&failing).await;
    h.send_env(&retried).await;
    let d = h.deliver(2).await;
    let (first_due, last_due) = (d.retry_after(0).min(d.retry_after(1)), d.retry_after(0).max(d.retry_after(1)));
    for index in 0..2 {
        assert_eq!(d.outcome(index).status, Some(Status::Errored));
        let backoff = d.retry_after(index);
        assert!(backoff > h.options.function_timeout + h.options.settings.clock_margin, "backoff {backoff}");
        // The failure wrote the record alone: the head is the claim's, and the record holds the entity past the
        // retry's due time (spec §9 "A failure writes the record alone").
        let event_id = d.outcome(index).event_id.clone().expect("an event");
        let record = h.record(&event_id).await;
        let head = h.head(record.entity.as_ref().expect("an entity")).await;
        let inflight = head.inflight.as_ref().expect("the errored event holds its entity");
        assert_eq!((inflight.errored, head.version), (false, 1), "the head was written by the claim alone");
        let hold_until = h.now() + backoff + h.options.settings.lease;
        assert_eq!((record.lease_until, inflight.hold_until(Some(&record))), (Some(hold_until), hold_until));
    }

    // No sweep re-drives either early: the hold lasts past its retry's due time.
    h.advance(first_due - Duration::seconds(1));
    assert!(h.sweep().await.is_empty(), "re-driven before its retry was due");
    // A newer event takes the entity over from it (§4 rule 3).
    h.send_env(&newer).await;
    assert_eq!(h.deliver(1).await.only().status, Some(Status::Completed));
    assert_eq!(h.record_of(&failing).await.status, Status::Canceled);
    assert_eq!(h.mirror_state(&failing.entity()).await, Some(json!({"title": "v2"})));
    // The other one's retry claims inside its hold (its record alone) and completes: its head written twice in all.
    h.advance(last_due - first_due + Duration::seconds(1));
    let retry = h.deliver(2).await;
    let statuses: Vec<_> = (0..retry.messages.len()).map(|i| retry.outcome(i).status).collect();
    assert!(statuses.contains(&Some(Status::Completed)), "the retry completes: {statuses:?}");
    assert_eq!(h.head(&retried.entity()).await.version, 2, "the claim, then the settle");
    use Status::*;
    assert_eq!(timeline(&h.record_of(&retried).await), [Received, Processing, Errored, Processing, Completed]);
}

async fn a_sweep_passes_over_holds_their_records_keep_and_re_drives_an_expired_hold_behind_them(via: Via) {
    // Backoffs of 20–40 s against a claim's lease of the invocation's 10 s: the failed events' heads keep their
    // claims' leases, which end first, while their records hold the entities past the retries' due times.
    let settings = synctrail::settings::Settings { backoff_base: Duration::seconds(40), ..settings() };
    let h = Harness::with(Options { via, settings, ..Options::default() });
    let failing = [Env::issue("18f").at(10).titled("v1"), Env::issue("18g").at(10).titled("v1")];
    let crashed = Env::issue("18h").at(10).titled("v1");
    for env in &failing {
        h.script.on(&env.entity(), Step::Retryable("502 bad gateway"));
        h.send_env(env).await;
    }
    let d = h.deliver(2).await;
    assert!((0..2).all(|i| d.outcome(i).status == Some(Status::Errored)));
    let first_due = h.now() + d.retry_after(0).min(d.retry_after(1));
    h.advance(Duration::seconds(1));
    h.script.on(&crashed.entity(), Step::Crash { write: false });
    h.send_env(&crashed).await;
    assert!(h.deliver(1).await.crashed());

    // Past the crashed claim's lease, before either retry is due: the two held heads' leases ended first.
    h.advance(h.options.function_timeout + h.options.settings.clock_margin + Duration::seconds(1));
    assert!(h.now() < first_due, "a retry came due");
    let report = h.sweep_at_most(1).await;
    assert_eq!(report.redriven, ids(&[&crashed]), "the expired hold behind the held ones is re-driven");
    assert_eq!(report.examined, 3, "both held heads passed over, then the expired one");
    h.drain().await;
    assert_eq!(h.status_of(&crashed).await, Status::Completed);
    for env in &failing {
        assert_eq!(h.status_of(env).await, Status::Errored, "not re-driven before its retry is due");
    }
    assert!(h.sweep().await.is_empty(), "nothing left to sweep");
}

async fn a_forced_reprocess_behind_a_crashed_holder_waits_a_lease_per_look_not_a_second(via: Via) {
    let h = Harness::over(via);
    let old = Env::issue("19f").at(10).titled("v1");
    let crashed = Env::issue("19f").at(20).titled("v2");
    let entity = old.entity();
    h.apply_in_turn(&[&old]).await;
    h.script.on(&entity, Step::Crash { write: false });
    h.send_env(&crashed).await;
    assert!(h.deliver(1).await.crashed());
    h.advance(h.options.function_timeout + h.options.settings.clock_margin + Duration::seconds(1));

    // The crashed claim's lease is over; its own message and the sweeper come back for it later. The forced
    // reprocess may not take the entity from it (one event in flight), and each look spends one of its receives.
    h.send(Message::redrive_body(&old.event_id(), Some(&entity), RedriveReason::Reprocess, true)).await;
    let forced = h.deliver(1).await;
    let wait = forced.retry_after(0);
    assert!(wait >= h.options.settings.lease, "waits a lease, not a second: {wait:?}");

    assert_eq!(h.sweep().await, ids(&[&crashed]), "the sweeper re-drives the crashed holder");
    for _ in 0..3 {
        h.advance(h.options.visibility_timeout);
        h.drain().await;
    }
    let record = h.record_of(&old).await;
    assert_eq!((record.status, record.forced), (Status::Completed, true));
    assert_eq!(h.status_of(&crashed).await, Status::Completed);
    assert_eq!(
        h.mirror_state(&entity).await,
        Some(json!({"title": "v1"})),
        "the forced event applied after the holder"
    );
    assert!(h.dead_letters().await.is_empty(), "the forced message did not run out of receives");
}

async fn a_retry_inside_its_hold_is_not_taken_over_while_the_heads_or_its_records_lease_runs(via: Via) {
    // A first backoff of 4–8 s, inside the claim's lease of the invocation's 10 s: the retry's own deadline then
    // ends seconds after the claim's lease does.
    let settings = synctrail::settings::Settings { backoff_base: Duration::seconds(8), ..settings() };
    let h = Harness::with(Options { via, settings, ..Options::default() });
    let failing = Env::issue("18c").at(10).titled("v1");
    let newer = Env::issue("18c").at(20).titled("v2");
    let newest = Env::issue("18c").at(30).titled("v3");
    let entity = failing.entity();
    let gate = Arc::new(Gate::default());
    h.script.on(&entity, Step::Retryable("503 from the destination"));
    h.script.on(&entity, Step::Hold(gate.clone(), Box::new(Step::Pass)));
    h.send_env(&failing).await;
    let d = h.deliver(1).await;
    assert_eq!(d.only().status, Some(Status::Errored));
    let claimed = h.head(&entity).await;
    h.advance(d.retry_after(0));

    let retry = h.receive(1).await;
    let (d2, ()) = tokio::join!(h.invoke(&retry), async {
        gate.entered().await;
        // The retry wrote its record alone: the head is the first claim's, and its lease ends first.
        assert_eq!(h.head(&entity).await, claimed, "the retry's claim left the head as the first claim wrote it");
        let record = h.record_of(&failing).await;
        assert_eq!((record.status, record.attempt), (Status::Processing, 2));
        let head_lease = claimed.inflight.as_ref().expect("held").lease_until;
        let record_lease = record.lease_until.expect("the retry's lease");
        assert!(record_lease > head_lease, "{record_lease} is not after the claim's {head_lease}");

        // Inside the head's lease a newer event reads the holder's record, finds the retry running (not `errored`)
        // and queues behind it.
        h.send_env(&newer).await;
        assert_eq!(h.deliver(1).await.only().status, Some(Status::Queued));
        // Past the head's lease, inside the record's: the newest event supersedes the queued one and queues too
        // instead of taking over, a copy of the retrying event waits, and a sweep leaves it alone.
        h.advance(head_lease + h.options.settings.clock_margin - h.now() + Duration::milliseconds(500));
        assert!(h.now() <= record_lease + h.options.settings.clock_margin, "the retry's lease still runs");
        h.send_env(&newest).await;
        assert_eq!(h.deliver(1).await.only().status, Some(Status::Queued));
        h.send_env(&failing).await;
        let copy = h.deliver(1).await;
        assert_eq!(copy.only().status, Some(Status::Processing), "the copy waits for the running retry");
        assert_eq!(copy.failures().len(), 1, "the copy is handed back");
        assert!(h.sweep().await.is_empty(), "a running retry was re-driven");
        gate.release();
    });
    assert_eq!(d2.only().status, Some(Status::Completed));
    assert_eq!(h.deliver(1).await.only().status, Some(Status::Completed), "the newest event, promoted");
    assert_eq!(h.record_of(&newer).await.status, Status::Canceled);
    assert_eq!(h.effects().await, ids(&[&failing, &newest]));
    assert_eq!(h.mirror_state(&entity).await, Some(json!({"title": "v3"})));
    use Status::*;
    assert_eq!(timeline(&h.record_of(&failing).await), [Received, Processing, Errored, Processing, Completed]);
}

async fn last_allowed_attempt_fails_the_event_and_dead_letters_its_message_and_releases_the_head(via: Via) {
    let h = Harness::with(Options { via, max_receives: 3, ..Options::default() });
    let doomed = Env::issue("19").at(10).titled("v1");
    let newer = Env::issue("19").at(20).titled("v2");
    let entity = doomed.entity();
    let gate = std::sync::Arc::new(Gate::default());
    h.script.on(&entity, Step::Retryable("timeout"));
    h.script.on(&entity, Step::Retryable("timeout"));
    h.script.on(&entity, Step::Hold(gate.clone(), Box::new(Step::Retryable("timeout"))));
    let message_id = h.send_env(&doomed).await;
    for _ in 0..2 {
        let d = h.deliver(1).await;
        assert_eq!(d.only().status, Some(Status::Errored));
        h.advance(d.retry_after(0));
    }
    let last = h.receive(1).await;
    assert_eq!(last[0].receive_count, 3, "the last receive the queue allows");

    let (d3, ()) = tokio::join!(h.invoke(&last), async {
        gate.entered().await;
        h.send_env(&newer).await;
        assert_eq!(h.deliver(1).await.only().status, Some(Status::Queued));
        gate.release();
    });

    assert_eq!((d3.only().status, &d3.only().disposition), (Some(Status::Failed), &Disposition::DeadLetter));
    assert!(d3.failures().is_empty(), "a dead-lettered record is not returned for retry");
    let failed = h.record_of(&doomed).await;
    assert_eq!((failed.status, failed.attempt), (Status::Failed, 3));
    let error = failed.error.expect("error");
    assert_eq!((error.kind, error.retryable), (ErrorKind::AttemptsExhausted, false));
    assert!(error.causes.iter().any(|c| c.contains("timeout")), "{error:?}");
    let dead = h.dead_letters().await;
    assert_eq!(dead.iter().map(|m| m.message_id.clone()).collect::<Vec<_>>(), [message_id]);

    // The head was released to the waiting event.
    let head = h.head(&entity).await;
    assert_eq!(head.inflight.as_ref().map(|i| &i.slot.event_id), Some(&newer.event_id()));
    h.drain().await;
    assert_eq!(h.status_of(&newer).await, Status::Completed);
    assert_eq!(h.mirror_state(&entity).await, Some(json!({"title": "v2"})));
    assert_eq!(h.effects().await, ids(&[&newer]));
}

async fn permanent_error_fails_at_once_and_releases_the_head(via: Via) {
    let h = Harness::over(via);
    let refused = Env::issue("20").at(10).titled("v1");
    let newer = Env::issue("20").at(20).titled("v2");
    let entity = refused.entity();
    let gate = std::sync::Arc::new(Gate::default());
    h.script.on(&entity, Step::Hold(gate.clone(), Box::new(Step::Permanent("422 validation failed"))));
    let (d1, ()) = deliver_racing(&h, &refused, async {
        gate.entered().await;
        h.send_env(&newer).await;
        assert_eq!(h.deliver(1).await.only().status, Some(Status::Queued));
        gate.release();
    })
    .await;

    assert_eq!((d1.only().status, &d1.only().disposition), (Some(Status::Failed), &Disposition::Ack));
    assert!(d1.failures().is_empty(), "no retry of a permanent error");
    let failed = h.record_of(&refused).await;
    assert_eq!((failed.status, failed.attempt), (Status::Failed, 1));
    let error = failed.error.expect("error");
    assert_eq!((error.kind, error.retryable), (ErrorKind::Permanent, false));
    assert!(error.message.contains("422 validation failed"));
    assert_eq!(h.head(&entity).await.inflight.map(|i| i.slot.event_id), Some(newer.event_id()));
    h.drain().await;
    assert_eq!(h.status_of(&newer).await, Status::Completed);
    assert_eq!(h.effects().await, ids(&[&newer]));
    let head = h.head(&entity).await;
    assert_eq!(head.applied.map(|a| a.event_id), Some(newer.event_id()));
    assert!(head.inflight.is_none());
}

async fn a_delay_the_destination_asks_for_replaces_the_backoff_up_to_backoff_max(via: Via) {
    let h = Harness::over(via);
    let event = Env::issue("24").at(10).titled("v1");
    h.script.next(Step::RetryAfter("503, retry after 7 s", std::time::Duration::from_secs(7)));
    h.script.next(Step::RetryAfter("503, retry after a day", std::time::Duration::from_secs(86_400)));
    h.send_env(&event).await;

    let d = h.deliver(1).await;
    assert_eq!((d.only().status, d.retry_after(0)), (Some(Status::Errored), Duration::seconds(7)));
    h.advance(Duration::seconds(7));
    let d = h.deliver(1).await;
    assert_eq!(d.retry_after(0), h.options.settings.backoff_max, "capped at backoff_max");
    let error = h.record_of(&event).await.error.expect("error recorded");
    assert_eq!((error.kind, error.retryable), (ErrorKind::Retryable, true));
    h.advance(h.options.settings.backoff_max);
    assert_eq!(h.deliver(1).await.only().status, Some(Status::Completed));
}

async fn a_throttled_attempt_waits_as_asked_and_does_not_use_up_the_events_attempts(via: Via) {
    let mut settings = settings();
    settings.max_attempts = 2;
    let h = Harness::with(Options { via, settings, max_receives: 10, ..Options::default() });
    let event = Env::issue("25").at(10).titled("v1");
    for _ in 0..3 {
        h.script.next(Step::Throttled("429 Too Many Requests", Some(std::time::Duration::from_secs(30))));
    }
    h.script.next(Step::Retryable("503 once"));
    h.send_env(&event).await;

    for attempt in 1..=3u32 {
        let d = h.deliver(1).await;
        assert_eq!(d.only().status, Some(Status::Errored), "attempt {attempt}");
        assert_eq!(d.retry_after(0), Duration::seconds(30), "attempt {attempt}: the delay asked for");
        let record = h.record_of(&event).await;
        assert_eq!((record.attempt, record.attempts_this_drive()), (attempt, 0), "throttled attempts do not count");
        let error = record.error.expect("error recorded");
        assert_eq!((error.kind, error.retryable), (ErrorKind::Throttled, true));
        let note = record.history.last().and_then(|e| e.note.clone()).unwrap_or_default();
        assert!(note.starts_with("throttled") && note.contains("429"), "{note}");
        h.advance(Duration::seconds(30));
    }
    // Two attempts allowed: the first that counts errs, the second applies (three throttles did not use them up).
    let d = h.deliver(1).await;
    assert_eq!(d.only().status, Some(Status::Errored));
    assert_eq!(h.record_of(&event).await.error.map(|e| e.kind), Some(ErrorKind::Retryable));
    h.advance(d.retry_after(0));
    assert_eq!(h.deliver(1).await.only().status, Some(Status::Completed));
    let record = h.record_of(&event).await;
    assert_eq!((record.attempt, record.attempts_this_drive()), (5, 2));
    assert_eq!(h.effects().await, ids(&[&event]));
}

async fn a_throttled_attempt_waits_as_long_as_asked_even_beyond_backoff_max(via: Via) {
    let h = Harness::over(via);
    let event = Env::issue("27").at(10).titled("after the rate limit's reset");
    let hour = std::time::Duration::from_secs(3600);
    h.script.next(Step::Throttled("403 rate limit used up until the reset", Some(hour)));
    h.send_env(&event).await;

    let d = h.deliver(1).await;

    assert!(h.options.settings.backoff_max < Duration::hours(1));
    assert_eq!(d.retry_after(0), Duration::hours(1), "until the limit lifts, not backoff_max");
    h.advance(Duration::hours(1));
    assert_eq!(h.deliver(1).await.only().status, Some(Status::Completed), "one receive spent waiting, not twelve");
}

async fn a_forever_throttled_event_is_still_bounded_by_the_queues_receive_count(via: Via) {
    let h = Harness::with(Options { via, max_receives: 3, ..Options::default() });
    let event = Env::issue("26").at(10).titled("v1");
    for _ in 0..3 {
        h.script.next(Step::Throttled("429 Too Many Requests", None));
    }
    let message_id = h.send_env(&event).await;
    for _ in 0..2 {
        let d = h.deliver(1).await;
        assert_eq!(d.only().status, Some(Status::Errored));
        h.advance(d.retry_after(0));
    }
    let d = h.deliver(1).await;
    assert_eq!((d.only().status, &d.only().disposition), (Some(Status::Failed), &Disposition::DeadLetter));
    let error = h.record_of(&event).await.error.expect("error");
    assert_eq!(error.kind, ErrorKind::AttemptsExhausted);
    assert!(error.causes.iter().any(|c| c.contains("429")), "{error:?}");
    assert_eq!(h.dead_letters().await.iter().map(|m| m.message_id.clone()).collect::<Vec<_>>(), [message_id]);
}

// ---- Crashes and redeliveries ----

async fn crashed_invocation_leaves_a_lease_and_the_redelivery_reclaims_with_attempt_plus_one(via: Via) {
    let h = Harness::over(via);
    let before_write = Env::issue("21").at(10).titled("died before writing");
    let after_write = Env::issue("22").at(10).titled("died after writing");
    h.script.on(&before_write.entity(), Step::Crash { write: false });
    h.script.on(&after_write.entity(), Step::Crash { write: true });

    for (env, effects_after_crash) in [(&before_write, 0), (&after_write, 1)] {
        h.send_env(env).await;
        let d = h.deliver(1).await;
        assert!(d.crashed(), "no response from a killed invocation");
        let record = h.record_of(env).await;
        assert_eq!((record.status, record.attempt), (Status::Processing, 1));
        let lease = record.lease_until.expect("the lease is left behind");
        assert!(lease > h.now() && lease <= h.now() + h.options.function_timeout + h.options.settings.clock_margin);
        let head = h.head(&env.entity()).await;
        let inflight = head.inflight.expect("inflight");
        assert_eq!((inflight.slot.event_id, inflight.fence), (env.event_id(), 1));
        assert_eq!(h.effects_of(&env.event_id()).await, effects_after_crash);
        assert!(h.receive(1).await.is_empty(), "hidden until the visibility timeout");

        h.advance(h.options.visibility_timeout);
        let again = h.deliver(1).await;
        assert_eq!(again.messages[0].receive_count, 2);
        assert_eq!(again.only().status, Some(Status::Completed));
        let record = h.record_of(env).await;
        assert_eq!((record.status, record.attempt), (Status::Completed, 2));
        assert_eq!(timeline(&record), [Status::Received, Status::Processing, Status::Processing, Status::Completed]);
        assert_eq!(record.history[2].attempt, 2);
        assert_eq!(h.head(&env.entity()).await.fence, 2);
        assert_eq!(h.effects_of(&env.event_id()).await, 1, "exactly one effect, crash or not");
        assert_eq!(h.mirror_state(&env.entity()).await, Some(env.payload_value()));
    }
}

async fn concurrent_duplicate_delivery_of_an_inflight_event_is_returned_for_later(via: Via) {
    let h = Harness::over(via);
    let event = Env::issue("23").at(10).titled("v1");
    let gate = h.script.hold_next();
    let message_id = h.send_env(&event).await;
    let first = h.receive(1).await;
    // SQS hands the same message out again while the first copy is being processed.
    h.ports().queue.change_visibility(&first[0].receipt_handle, Duration::zero()).await.expect("visible again");
    let second = h.receive(1).await;
    assert_eq!(second[0].message_id, message_id);
    assert_ne!(second[0].receipt_handle, first[0].receipt_handle);

    let (d1, retry_after) = tokio::join!(h.invoke(&first), async {
        gate.entered().await;
        let before = h.record_of(&event).await;
        let head_before = h.head(&event.entity()).await;
        let d2 = h.invoke(&second).await;
        assert_eq!(d2.failures(), std::slice::from_ref(&message_id), "the duplicate is returned for later");
        let after = d2.retry_after(0);
        let lease = before.lease_until.expect("lease");
        assert_eq!(after, lease + h.options.settings.clock_margin - h.now());
        let during = h.record_of(&event).await;
        assert_eq!((during.status, during.attempt, during.lease_until), (Status::Processing, 1, Some(lease)));
        assert_eq!(h.head(&event.entity()).await, head_before, "the live attempt's lease is untouched");
        gate.release();
        after
    });

    assert_eq!(d1.only().status, Some(Status::Completed));
    assert_eq!(h.effects().await, ids(&[&event]));
    // The first copy's delete used a stale receipt handle; the message comes back once more and is acknowledged.
    h.advance(retry_after);
    let d3 = h.deliver(1).await;
    assert_eq!(d3.messages[0].message_id, message_id);
    assert!(d3.only().redelivered);
    assert!(d3.failures().is_empty());
    let depth = h.depth().await;
    assert_eq!(depth.visible + depth.in_flight + depth.delayed, 0);
    let record = h.record_of(&event).await;
    assert_eq!((record.status, record.attempt, record.redelivered), (Status::Completed, 1, 1));
    assert_eq!(h.effects().await, ids(&[&event]));
}

// ---- §3 idempotency ----

async fn destination_is_told_the_attempt_and_whether_an_earlier_attempts_outcome_is_unknown(via: Via) {
    let h = Harness::over(via);
    let retried = Env::issue("40").at(10).titled("503 once");
    let crashed = Env::issue("41").at(10).titled("crashed after the write");
    let refused = Env::issue("42").at(10).titled("refused, then resubmitted");
    h.script.on(&retried.entity(), Step::Retryable("503 after storing it, maybe"));
    h.script.on(&crashed.entity(), Step::Crash { write: true });
    h.script.on(&refused.entity(), Step::Permanent("422 invalid"));

    for env in [&retried, &crashed] {
        h.send_env(env).await;
        h.deliver(1).await;
        h.advance(h.options.visibility_timeout + h.options.settings.backoff_max);
        assert_eq!(h.deliver(1).await.only().status, Some(Status::Completed));
    }
    h.apply_in_turn(&[&refused]).await;
    h.apply_in_turn(&[&refused]).await;
    assert_eq!(h.status_of(&refused).await, Status::Completed);

    let seen = |env: &Env| -> Vec<(u32, bool)> {
        h.script
            .seen()
            .iter()
            .filter(|c| c.event_id == env.event_id())
            .map(|c| (c.attempt, c.previous_attempt_unknown))
            .collect()
    };
    assert_eq!(seen(&retried), [(1, false), (2, true)], "a retryable error does not prove nothing was written");
    assert_eq!(seen(&crashed), [(1, false), (2, true)], "a crash after the call leaves its outcome unknown");
    assert_eq!(seen(&refused), [(1, false), (2, false)], "a permanent refusal says nothing was written");
    assert!(!h.record_of(&retried).await.write_outcome_unknown, "known again once applied");
    assert_eq!(h.effects().await.len(), 3, "one effect per event");
}

async fn destination_is_told_the_invocations_deadline_and_trace(via: Via) {
    let h = Harness::over(via);
    let event = Env::issue("43").at(10).titled("v1");
    h.send_env(&event).await;
    let started = h.now();
    let d = h.deliver(1).await;
    assert_eq!(d.only().status, Some(Status::Completed));
    let seen = h.script.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].deadline, Some(started + h.options.function_timeout));
    assert_eq!(seen[0].trace_id.as_deref(), Some(d.trace_id.as_str()));
}

async fn redelivered_completed_event_is_acknowledged_without_effect(via: Via) {
    let h = Harness::over(via);
    let event = Env::issue("24").at(10).titled("v1");
    h.apply_in_turn(&[&event]).await;
    let before = h.record_of(&event).await;

    let d = h.apply_in_turn(&[&event]).await.remove(0);

    let outcome = d.only();
    assert!(outcome.redelivered);
    assert_eq!((outcome.status, &outcome.disposition), (Some(Status::Completed), &Disposition::Ack));
    assert!(d.failures().is_empty());
    let after = h.record_of(&event).await;
    assert_eq!((after.status, after.redelivered, after.attempt), (Status::Completed, 1, 1));
    assert_eq!(after.history, before.history, "no new history: nothing happened to the event");
    assert_eq!(h.effects().await, ids(&[&event]));
}

async fn failed_event_resent_by_the_client_is_driven_again(via: Via) {
    let h = Harness::over(via);
    let event = Env::issue("25").at(10).titled("v1");
    for _ in 0..3 {
        h.script.next(Step::Permanent("destination is down"));
    }
    // Three submissions while the destination refuses, the fourth succeeds.
    for submission in 1..=4u32 {
        let d = h.apply_in_turn(&[&event]).await.remove(0);
        let expected = if submission < 4 { Status::Failed } else { Status::Completed };
        assert_eq!(d.only().status, Some(expected), "submission {submission}");
        assert!(!d.only().redelivered);
        let record = h.record_of(&event).await;
        assert_eq!((record.status, record.attempt, record.attempt_base), (expected, submission, submission - 1));
    }
    let record = h.record_of(&event).await;
    use Status::*;
    assert_eq!(
        timeline(&record),
        [
            Received, Processing, Failed, Received, Processing, Failed, Received, Processing, Failed, Received,
            Processing, Completed
        ]
    );
    assert_eq!(record.history[3].note.as_deref(), Some("client resubmission"));
    assert_eq!(h.effects().await, ids(&[&event]));
    assert_eq!(h.mirror_state(&event.entity()).await, Some(json!({"title": "v1"})));
}

/// The field drill's shape: retryable errors until the attempts run out, then the client resends and it succeeds.
/// `completed` carries no error (spec §2: `error` belongs to `errored`, `failed`, `rejected`); the history keeps
/// every earlier error as a note.
async fn completed_event_carries_no_error_of_an_earlier_attempt_and_its_history_keeps_them(via: Via) {
    let h = Harness::with(Options { max_receives: 3, via, ..Options::default() });
    let event = Env::product("drill-4").at(10).id("order-4:v1").titled("paid");
    for _ in 0..3 {
        h.script.next(Step::Retryable("502 bad gateway"));
    }
    h.send_env(&event).await;
    for _ in 0..2 {
        let d = h.deliver(1).await;
        assert_eq!(d.only().status, Some(Status::Errored));
        let errored = h.record_of(&event).await;
        assert_eq!(errored.error.map(|e| e.kind), Some(ErrorKind::Retryable), "errored keeps its error");
        h.advance(d.retry_after(0));
    }
    assert_eq!(h.deliver(1).await.only().status, Some(Status::Failed));
    let failed = h.record_of(&event).await;
    assert_eq!(failed.error.map(|e| e.kind), Some(ErrorKind::AttemptsExhausted), "failed keeps its error");

    let resent = h.apply_in_turn(&[&event]).await.remove(0);

    assert_eq!(resent.only().status, Some(Status::Completed));
    let done = h.record_of(&event).await;
    assert_eq!((done.status, done.attempt), (Status::Completed, 4));
    assert_eq!(done.error, None, "a completed event has no current error");
    let report = synctrail::model::StatusReport::from(&done);
    assert_eq!((report.status, report.error), (Status::Completed, None), "status --json shows none either");
    use Status::*;
    assert_eq!(
        timeline(&done),
        [Received, Processing, Errored, Processing, Errored, Processing, Failed, Received, Processing, Completed]
    );
    let notes: Vec<&str> = done.history.iter().filter_map(|e| e.note.as_deref()).collect();
    assert_eq!(notes.iter().filter(|n| n.contains("502 bad gateway")).count(), 2, "{notes:?}");
    assert!(notes.iter().any(|n| n.contains("gave up after 3 attempts")), "{notes:?}");
    assert!(notes.contains(&"client resubmission"), "{notes:?}");
    assert_eq!(h.effects().await, ids(&[&event]));
}

async fn a_resend_under_a_client_event_id_with_another_updated_at_continues_as_first_recorded(via: Via) {
    let h = Harness::over(via);
    let original = Env::product("28").at(10).payload(json!({"price": "5.00"})).id("client-retry-1");
    // The client stamps `updated_at` when it sends: its resend of the same change carries a later one.
    let resent = Env::product("28").at(30).payload(json!({"price": "5.00"})).id("client-retry-1");
    let newer = Env::product("28").at(20).payload(json!({"price": "7.00"}));
    h.script.next(Step::Retryable("503 from the destination"));
    assert_eq!(h.apply_in_turn(&[&original]).await[0].only().status, Some(Status::Errored));
    h.advance(h.options.visibility_timeout);
    let retry = h.receive(10).await;
    assert_eq!(retry.len(), 1, "the errored attempt's message is due again");

    assert_eq!(h.apply_in_turn(&[&resent]).await[0].only().status, Some(Status::Completed));
    let record = h.record_of(&original).await;
    assert_eq!(record.external_at, Some(time(10)), "ordered where first recorded");
    let row = h.mirror_row(&original.entity()).await.expect("applied");
    assert_eq!((row.order, row.event_id), (record.order, Some(original.event_id().to_string())));

    // A change made after the original and before the resend's stamp is newer than the event: applied.
    assert_eq!(h.apply_in_turn(&[&newer]).await[0].only().status, Some(Status::Completed));
    assert!(h.invoke(&retry).await.failures().is_empty(), "the first message's retry finds the event done");
    assert_eq!(h.mirror_state(&original.entity()).await, Some(json!({"price": "7.00"})));
    assert_eq!(h.effects().await, ids(&[&original, &newer]));
}

async fn a_client_event_id_used_again_for_another_entity_is_rejected_as_a_conflict(via: Via) {
    let h = Harness::over(via);
    let original = Env::product("29").at(10).payload(json!({"price": "5.00"})).id("client-evt-5");
    let elsewhere = Env::product("30").at(10).payload(json!({"price": "5.00"})).id("client-evt-5");
    h.apply_in_turn(&[&original]).await;

    let d = h.apply_in_turn(&[&elsewhere]).await.remove(0);
    assert_eq!((d.only().status, &d.only().disposition), (Some(Status::Rejected), &Disposition::Ack));
    let rejected = h.record(d.only().event_id.as_ref().expect("stored under its own id")).await;
    assert_eq!(rejected.conflicts_with, Some(original.event_id()));
    let error = rejected.error.clone().expect("error");
    assert_eq!((error.kind, error.field.as_deref()), (ErrorKind::IdempotencyConflict, Some("event_id")));
    assert_eq!(h.archived(&rejected).await, elsewhere.body().into_bytes(), "the raw body is archived");
    assert_eq!(h.mirror_row(&elsewhere.entity()).await, None, "nothing written to the other entity");
    assert_eq!(h.effects().await, ids(&[&original]));
}

async fn same_client_event_id_with_other_content_is_rejected_with_conflicts_with(via: Via) {
    let h = Harness::over(via);
    let original = Env::product("26").at(10).payload(json!({"price": "5.00"})).id("shopify-evt-77");
    let conflicting = Env::product("26").at(10).payload(json!({"price": "6.00"})).id("shopify-evt-77");
    h.apply_in_turn(&[&original]).await;
    let before = h.record_of(&original).await;

    let d = h.apply_in_turn(&[&conflicting]).await.remove(0);

    let stored_as = conflicting.clone().without("event_id").event_id();
    assert_eq!(d.only().event_id, Some(stored_as.clone()));
    assert_eq!((d.only().status, &d.only().disposition), (Some(Status::Rejected), &Disposition::Ack));
    let rejected = h.record(&stored_as).await;
    assert_eq!(rejected.status, Status::Rejected);
    assert_eq!(rejected.conflicts_with, Some(original.event_id()));
    let error = rejected.error.clone().expect("error");
    assert_eq!((error.kind, error.field.as_deref()), (ErrorKind::IdempotencyConflict, Some("event_id")));
    assert!(error.message.contains("shopify-evt-77"), "{}", error.message);
    assert_eq!(h.archived(&rejected).await, conflicting.body().into_bytes(), "the raw body is archived");
    assert_eq!(timeline(&rejected), [Status::Received, Status::Rejected]);
    assert_eq!(h.record_of(&original).await, before, "the original is untouched");
    assert_eq!(h.mirror_state(&original.entity()).await, Some(json!({"price": "5.00"})));
    assert_eq!(h.effects().await, ids(&[&original]));

    // The same conflicting message again lands on the same rejected record.
    let again = h.apply_in_turn(&[&conflicting]).await.remove(0);
    assert!(again.only().redelivered);
    assert_eq!(h.record(&stored_as).await.redelivered, 1);
    assert_eq!(h.counts().await.get(&Status::Rejected), Some(&1));
}

async fn conflicting_message_racing_the_original_is_rejected_not_acknowledged_as_a_redelivery(via: Via) {
    let h = Harness::with(Options { via, held_store: true, ..Options::default() });
    let original = Env::product("30").at(10).payload(json!({"price": "1.00"})).id("shopify-evt-30");
    let racer = Env::product("30").at(10).payload(json!({"price": "9.99"})).id("shopify-evt-30");
    // The racer has looked the id up (not recorded yet) and is about to record itself when the original overtakes it.
    let gate = h.held.hold_first_write_of(&racer.event_id());
    let (raced, ()) = deliver_racing(&h, &racer, async {
        gate.entered().await;
        h.send_env(&original).await;
        assert_eq!(h.deliver(1).await.only().status, Some(Status::Completed));
        gate.release();
    })
    .await;

    let stored_as = racer.clone().without("event_id").event_id();
    let rejected = h.try_record(&stored_as).await;
    assert!(
        rejected.as_ref().is_some_and(|r| r.status == Status::Rejected && r.conflicts_with == Some(racer.event_id())),
        "the same client event_id with other content must be rejected (§3); the racing message was acknowledged as \
         {:?} and left {:?}",
        raced.only(),
        rejected.map(|r| r.status)
    );
    assert_eq!(h.record_of(&original).await.redelivered, 0, "the racer is not a redelivery of the original");
    assert_eq!(h.mirror_state(&original.entity()).await, Some(json!({"price": "1.00"})));
}

async fn conflicting_message_racing_an_errored_original_never_applies_its_own_content(via: Via) {
    let h = Harness::with(Options { via, held_store: true, ..Options::default() });
    let original = Env::product("31").at(10).payload(json!({"price": "1.00"})).id("shopify-evt-31");
    let racer = Env::product("31").at(10).payload(json!({"price": "9.99"})).id("shopify-evt-31");
    let entity = original.entity();
    let gate = h.held.hold_first_write_of(&racer.event_id());
    h.script.next(Step::Retryable("503 service unavailable"));
    let (_, ()) = deliver_racing(&h, &racer, async {
        gate.entered().await;
        h.send_env(&original).await;
        assert_eq!(h.deliver(1).await.only().status, Some(Status::Errored));
        gate.release();
    })
    .await;
    h.advance(Duration::minutes(10));
    h.drain().await;

    let record = h.record_of(&original).await;
    assert_eq!(record.status, Status::Completed);
    assert_eq!(
        h.mirror_state(&entity).await,
        Some(json!({"price": "1.00"})),
        "shopify-evt-31 is recorded with the content hash of price 1.00, yet the destination holds the racer's price"
    );
    let row = h.mirror_row(&entity).await.expect("row");
    assert_eq!(
        row.content_hash,
        record.content_hash.map(|c| c.to_hex()),
        "the destination's content matches the record"
    );
}

async fn conflicting_message_racing_a_queued_original_is_rejected_not_acknowledged_as_queued(via: Via) {
    let h = Harness::with(Options { via, held_store: true, ..Options::default() });
    let inflight = Env::product("34").at(5).titled("in flight");
    let original = Env::product("34").at(10).payload(json!({"price": "1.00"})).id("shopify-evt-34");
    let racer = Env::product("34").at(10).payload(json!({"price": "9.99"})).id("shopify-evt-34");
    let entity = original.entity();
    let hold = h.script.hold_next();
    let (_, raced) = deliver_racing(&h, &inflight, async {
        hold.entered().await;
        // The racer has looked its id up (unknown) and is about to read the head when the original overtakes it
        // and becomes `next`.
        let read = h.held.hold_next_head_read();
        let (raced, ()) = deliver_racing(&h, &racer, async {
            read.entered().await;
            h.send_env(&original).await;
            assert_eq!(h.deliver(1).await.only().status, Some(Status::Queued));
            read.release();
        })
        .await;
        hold.release();
        raced
    })
    .await;
    h.drain().await;

    let stored_as = racer.clone().without("event_id").event_id();
    let rejected = h.try_record(&stored_as).await;
    assert!(
        rejected.as_ref().is_some_and(|r| r.status == Status::Rejected && r.conflicts_with == Some(racer.event_id())),
        "the same client event_id with other content must be rejected (§3); the racing message was acknowledged as \
         {:?} and left {:?}",
        raced.only(),
        rejected.map(|r| r.status)
    );
    assert_eq!(h.status_of(&original).await, Status::Completed);
    assert_eq!(h.mirror_state(&entity).await, Some(json!({"price": "1.00"})));
}

// ---- §5 in_order ----

async fn in_order_events_are_all_applied_one_at_a_time(via: Via) {
    let h = Harness::over(via);
    let d1 = Env::adjustment("sku-1").at(10).delta(5).id("adj-1");
    let d2 = Env::adjustment("sku-1").at(20).delta(-2).id("adj-2");
    let d3 = Env::adjustment("sku-1").at(30).delta(10).id("adj-3");
    let entity = d1.entity();
    let gate = h.script.hold_next();
    let (first, ()) = deliver_racing(&h, &d1, async {
        gate.entered().await;
        // They arrive newest first while the first one holds the entity.
        for env in [&d3, &d2] {
            h.send_env(env).await;
            let d = h.deliver(1).await;
            assert_eq!((d.only().status, &d.only().disposition), (Some(Status::Queued), &Disposition::Ack));
        }
        let head = h.head(&entity).await;
        assert_eq!(head.inflight.as_ref().map(|i| &i.slot.event_id), Some(&d1.event_id()));
        let backlog: Vec<_> = head.backlog.iter().map(|s| s.event_id.clone()).collect();
        assert_eq!(backlog, ids(&[&d2, &d3]), "the backlog is in order-key order");
        let processing = h.events_of(&entity).await.into_iter().filter(|r| r.status == Status::Processing).count();
        assert_eq!(processing, 1, "one at a time");
        gate.release();
    })
    .await;

    assert_eq!(first.only().status, Some(Status::Completed));
    h.drain().await;
    for env in [&d1, &d2, &d3] {
        let record = h.record_of(env).await;
        assert_eq!((record.status, record.out_of_order), (Status::Completed, false), "{}", record.event_id);
    }
    assert_eq!(h.effects().await, ids(&[&d1, &d2, &d3]), "applied in order-key order");
    assert_eq!(h.mirror_state(&entity).await, Some(json!({"quantity": 13})));
    let head = h.head(&entity).await;
    assert_eq!(head.applied.map(|a| a.event_id), Some(d3.event_id()));
    assert!(head.inflight.is_none() && head.backlog.is_empty() && !head.needs_verification);
}

async fn in_order_event_older_than_applied_is_flagged_out_of_order_and_applied(via: Via) {
    let h = Harness::over(via);
    let newer = Env::adjustment("sku-2").at(20).delta(3).id("adj-20");
    let older = Env::adjustment("sku-2").at(10).delta(4).id("adj-10");
    let entity = newer.entity();

    let d = h.apply_in_turn(&[&newer, &older]).await;

    assert_eq!(d[1].only().status, Some(Status::Completed), "nothing is dropped");
    let late = h.record_of(&older).await;
    assert_eq!((late.status, late.out_of_order), (Status::Completed, true));
    assert!(!h.record_of(&newer).await.out_of_order);
    let head = h.head(&entity).await;
    assert!(head.needs_verification, "the entity is scheduled for verification");
    assert_eq!(head.applied.map(|a| a.event_id), Some(newer.event_id()), "applied stays the newest");
    assert_eq!(h.mirror_state(&entity).await, Some(json!({"quantity": 7})));
    assert_eq!(h.effects().await, ids(&[&newer, &older]));
}

async fn in_order_event_older_than_applied_is_flagged_even_when_it_waited_in_the_backlog(via: Via) {
    let h = Harness::over(via);
    let applied = Env::adjustment("sku-3").at(20).delta(1).id("adj-a");
    let inflight = Env::adjustment("sku-3").at(30).delta(10).id("adj-c");
    let older = Env::adjustment("sku-3").at(10).delta(100).id("adj-b");
    let entity = applied.entity();
    h.apply_in_turn(&[&applied]).await;
    let gate = h.script.hold_next();
    let (_, ()) = deliver_racing(&h, &inflight, async {
        gate.entered().await;
        // Arrives older than the last applied event (adj-a), while adj-c holds the entity.
        h.send_env(&older).await;
        assert_eq!(h.deliver(1).await.only().status, Some(Status::Queued));
        gate.release();
    })
    .await;
    h.drain().await;

    assert_eq!(h.mirror_state(&entity).await, Some(json!({"quantity": 111})));
    let late = h.record_of(&older).await;
    assert_eq!(late.status, Status::Completed);
    assert!(late.out_of_order, "adj-b arrived older than the applied adj-a and was applied after adj-c");
    assert!(h.head(&entity).await.needs_verification, "the entity must be scheduled for verification");
}

async fn an_in_order_event_unparked_beside_the_same_change_under_another_id_ends_duplicate_and_leaves_the_backlog(
    via: Via,
) {
    let mut settings = settings();
    settings.max_backlog = 2;
    let h = Harness::with(Options { via, settings, ..Options::default() });
    let first = Env::adjustment("sku-9").at(10).delta(1).id("adj-9-1");
    let queued = [
        Env::adjustment("sku-9").at(20).delta(2).id("adj-9-2"),
        Env::adjustment("sku-9").at(25).delta(3).id("adj-9-3"),
    ];
    // The same change under two ids, both parked outside the full backlog: neither is in the head to compare with.
    let twins = [
        Env::adjustment("sku-9").at(30).delta(4).id("adj-9-4"),
        Env::adjustment("sku-9").at(30).delta(4).id("adj-9-4-again"),
    ];
    let entity = first.entity();
    let (held_first, held_twin) = (Arc::new(Gate::default()), Arc::new(Gate::default()));
    h.script.on(&entity, Step::Hold(held_first.clone(), Box::new(Step::Pass)));
    h.script.on(&entity, Step::Pass);
    h.script.on(&entity, Step::Pass);
    h.script.on(&entity, Step::Hold(held_twin.clone(), Box::new(Step::Pass)));
    deliver_racing(&h, &first, async {
        held_first.entered().await;
        for event in queued.iter().chain(&twins) {
            h.send_env(event).await;
            assert_eq!(h.deliver(1).await.only().status, Some(Status::Queued));
        }
        assert_eq!(h.head(&entity).await.parked, 2, "both twins parked");
        held_first.release();
    })
    .await;
    // The two queued events run; the last one's settle moves both twins into the emptied backlog and promotes one.
    tokio::join!(h.drain(), async {
        held_twin.entered().await;
        let head = h.head(&entity).await;
        let holder = head.inflight.as_ref().expect("a twin holds the entity").slot.event_id.clone();
        let waiting = twins.iter().find(|t| t.event_id() != holder).expect("the other twin");
        assert_eq!(head.backlog.iter().map(|s| &s.event_id).collect::<Vec<_>>(), [&waiting.event_id()]);
        // The waiting twin's message comes again: the same change holds the entity, so it is a duplicate of it,
        // and it leaves the backlog in the same commit (the head never lists a done event as waiting).
        h.send_env(waiting).await;
        assert_eq!(h.deliver(1).await.only().status, Some(Status::Duplicate));
        let head = h.head(&entity).await;
        assert!(head.backlog.is_empty(), "the duplicate still waits in the backlog: {head:?}");
        held_twin.release();
    });
    h.drain().await;
    let head = h.head(&entity).await;
    assert!(head.inflight.is_none() && head.backlog.is_empty() && head.parked == 0, "{head:?}");
    assert_eq!(h.effects().await.len(), 4, "every change once");
    assert_eq!(h.mirror_state(&entity).await, Some(json!({"quantity": 10})));
}

/// Spec §9 "A backlog no larger than its head's budget": an `in_order` event the backlog's size (8) has room for,
/// but whose slot would take its head past the store's budget for a head (DynamoDB: 1 KB; here two events), is
/// parked; an unpark moves back only what the budget holds once the first is promoted. Every event is applied once,
/// in order, and no head is written past the budget.
async fn in_order_events_past_their_heads_budget_are_parked_and_all_applied_in_order(via: Via) {
    let h = Harness::with(Options { via, held_store: true, ..Options::default() });
    assert_eq!(h.options.settings.max_backlog, 8);
    h.held.budget_heads_to(2);
    let events: Vec<Env> =
        (1..=8).map(|n| Env::adjustment("sku-b").at(n * 10).delta(n).id(&format!("adj-b-{n}"))).collect();
    let all: Vec<&Env> = events.iter().collect();
    let entity = events[0].entity();
    let (first, unparked) = (Arc::new(Gate::default()), Arc::new(Gate::default()));
    h.script.on(&entity, Step::Hold(first.clone(), Box::new(Step::Pass)));
    h.script.on(&entity, Step::Pass);
    h.script.on(&entity, Step::Pass);
    h.script.on(&entity, Step::Hold(unparked.clone(), Box::new(Step::Pass)));
    deliver_racing(&h, &events[0], async {
        first.entered().await;
        for event in &events[1..] {
            h.send_env(event).await;
            assert_eq!(h.deliver(1).await.only().status, Some(Status::Queued));
        }
        let head = h.head(&entity).await;
        assert_eq!(head.backlog.iter().map(|s| s.event_id.clone()).collect::<Vec<_>>(), ids(&all[1..3]));
        assert_eq!(head.parked, 5, "the budget holds two in the backlog, the rest are parked");
        first.release();
    })
    .await;
    // The third event's settle unparks: of the five, the first is promoted and two go into the backlog.
    tokio::join!(h.drain(), async {
        unparked.entered().await;
        let head = h.head(&entity).await;
        assert_eq!(head.inflight.as_ref().map(|i| i.slot.event_id.clone()), Some(events[3].event_id()));
        assert_eq!(head.backlog.iter().map(|s| s.event_id.clone()).collect::<Vec<_>>(), ids(&all[4..6]));
        assert_eq!(head.parked, 2, "{head:?}");
        unparked.release();
    });
    h.drain().await;
    for event in &events {
        assert_eq!(h.status_of(event).await, Status::Completed, "{}", event.event_id());
    }
    assert_eq!(h.effects().await, ids(&all), "each applied once, in order-key order");
    assert_eq!(h.mirror_state(&entity).await, Some(json!({"quantity": 36})));
    let head = h.head(&entity).await;
    assert!(head.inflight.is_none() && head.backlog.is_empty() && head.parked == 0, "{head:?}");
    assert_eq!(h.held.heads_past_budget(), 0, "a head was written past its budget");
}

async fn in_order_event_beyond_a_full_backlog_is_not_stranded_when_its_receives_run_out(via: Via) {
    let mut settings = settings();
    settings.max_backlog = 1;
    let h = Harness::with(Options { via, settings, max_receives: 2, ..Options::default() });
    let d1 = Env::adjustment("sku-4").at(10).delta(1).id("adj-4-1");
    let d2 = Env::adjustment("sku-4").at(20).delta(2).id("adj-4-2");
    let d3 = Env::adjustment("sku-4").at(30).delta(4).id("adj-4-3");
    let entity = d1.entity();
    let gate = h.script.hold_next();
    let (_, ()) = deliver_racing(&h, &d1, async {
        gate.entered().await;
        h.send_env(&d2).await;
        assert_eq!(h.deliver(1).await.only().status, Some(Status::Queued));
        assert_eq!(h.head(&entity).await.backlog.len(), 1, "the backlog is full");
        // d3 does not fit. However the engine keeps it (parked, or returned for later), the entity stays held for
        // longer than the queue allows receives of d3's message.
        h.send_env(&d3).await;
        for _ in 0..=h.options.max_receives {
            let messages = h.receive(1).await;
            if messages.is_empty() {
                break;
            }
            let d = h.invoke(&messages).await;
            if !d.failures().is_empty() {
                h.advance(d.retry_after(0));
            }
        }
        gate.release();
    })
    .await;
    h.drain().await;
    h.advance(Duration::minutes(5));
    h.sweep().await;
    h.drain().await;

    let record = h.record_of(&d3).await;
    assert_eq!(
        record.status,
        Status::Completed,
        "d3 must be applied (or failed with its message in the dead-letter queue, §2); it is {} with history {:?} \
         and nothing left to drive it (head: {:?})",
        record.status,
        timeline(&record),
        h.head(&entity).await
    );
    assert_eq!(h.effects().await, ids(&[&d1, &d2, &d3]), "in order-key order");
    assert_eq!(h.mirror_state(&entity).await, Some(json!({"quantity": 7})));
    let head = h.head(&entity).await;
    assert!(head.inflight.is_none() && head.backlog.is_empty());
}

/// With a backlog of one: delivers `d1` and, while it applies, queues `d2` in the backlog and parks `d3` outside it;
/// then leaves the head as an unpark whose listing (an eventually consistent index on DynamoDB) missed `d3` leaves
/// it, none parked. `d1` and `d2` complete; `d3` stays `queued` with nothing to promote it.
async fn strand_a_parked_event(h: &Harness, d1: &Env, d2: &Env, d3: &Env) {
    let entity = d1.entity();
    let gate = h.script.hold_next();
    let (_, ()) = deliver_racing(h, d1, async {
        gate.entered().await;
        h.send_env(d2).await;
        assert_eq!(h.deliver(1).await.only().status, Some(Status::Queued));
        h.send_env(d3).await;
        assert_eq!(h.deliver(1).await.only().status, Some(Status::Queued), "parked outside the full backlog");
        let mut head = h.head(&entity).await;
        assert_eq!(head.parked, 1);
        head.parked = 0;
        h.ports().store.commit(vec![Write::head(head)]).await.expect("the head as a lagging listing leaves it");
        gate.release();
    })
    .await;
    h.drain().await;
    assert_eq!(h.status_of(d3).await, Status::Queued, "nothing promotes it");
    assert!(h.head(&entity).await.inflight.is_none());
}

async fn in_order_event_parked_where_the_unpark_listing_missed_it_is_redriven_by_the_sweeper(via: Via) {
    let mut settings = settings();
    settings.max_backlog = 1;
    let h = Harness::with(Options { via, settings, ..Options::default() });
    let d1 = Env::adjustment("sku-5").at(10).delta(1).id("adj-5-1");
    let d2 = Env::adjustment("sku-5").at(20).delta(2).id("adj-5-2");
    let d3 = Env::adjustment("sku-5").at(30).delta(4).id("adj-5-3");
    strand_a_parked_event(&h, &d1, &d2, &d3).await;

    assert!(h.sweep().await.is_empty(), "not before it was queued for longer than a lease");
    h.advance(h.options.settings.lease + h.options.settings.clock_margin + Duration::seconds(1));
    assert_eq!(h.sweep().await, ids(&[&d3]));
    h.drain().await;

    assert_eq!(h.status_of(&d3).await, Status::Completed);
    assert_eq!(h.effects().await, ids(&[&d1, &d2, &d3]));
    assert_eq!(h.mirror_state(&d1.entity()).await, Some(json!({"quantity": 7})));
    assert!(h.sweep().await.is_empty(), "nothing left to sweep");
}

async fn a_busy_entitys_queued_events_do_not_hide_an_older_stranded_one_from_the_sweep(via: Via) {
    let mut settings = settings();
    settings.max_backlog = 1;
    let h = Harness::with(Options { via, settings, ..Options::default() });
    let stranded = [7, 8, 9].map(|n| Env::adjustment("sku-7").at(n * 10).delta(n).id(&format!("adj-7-{n}")));
    strand_a_parked_event(&h, &stranded[0], &stranded[1], &stranded[2]).await;
    // Later, a busy entity: its holder's invocation dies, and two events queue behind it (one in the backlog, one
    // parked); the sweep lists them first (newest first), and they are held.
    h.advance(Duration::seconds(1));
    let busy = [1, 2, 4].map(|n| Env::adjustment("sku-8").at(n * 10).delta(n).id(&format!("adj-8-{n}")));
    h.script.on(&busy[0].entity(), Step::Crash { write: false });
    h.send_env(&busy[0]).await;
    assert!(h.deliver(1).await.crashed());
    for env in &busy[1..] {
        h.send_env(env).await;
        assert_eq!(h.deliver(1).await.only().status, Some(Status::Queued));
    }

    h.advance(h.options.settings.lease + h.options.settings.clock_margin + Duration::seconds(1));
    let report = h.sweep_at_most(1).await;
    assert_eq!(report.redriven, ids(&[&busy[0], &stranded[2]]), "the expired claim, then the stranded event");
    h.drain().await;
    h.advance(h.options.visibility_timeout);
    h.drain().await;

    for env in stranded.iter().chain(&busy) {
        assert_eq!(h.status_of(env).await, Status::Completed, "{}", env.event_id());
    }
    assert_eq!(h.mirror_state(&stranded[0].entity()).await, Some(json!({"quantity": 24})));
    assert_eq!(h.mirror_state(&busy[0].entity()).await, Some(json!({"quantity": 7})));
    assert!(h.sweep().await.is_empty(), "nothing left to sweep");
}

async fn message_dead_lettered_before_the_engine_ever_saw_it_is_not_lost(via: Via) {
    let h = Harness::with(Options { via, max_receives: 2, ..Options::default() });
    let poison = Env::issue("32").at(10).titled("kills the function");
    let bystander = Env::issue("33").at(10).titled("batched with it");
    h.script.on(&poison.entity(), Step::Crash { write: false });
    h.script.on(&poison.entity(), Step::Crash { write: false });
    h.send_env(&poison).await;
    h.send_env(&bystander).await;
    // Both receives the queue allows die on the first record: the second is never started.
    for _ in 0..2 {
        let d = h.deliver(10).await;
        assert_eq!((d.messages.len(), d.crashed()), (2, true));
        h.advance(h.options.visibility_timeout);
    }
    assert!(h.receive(10).await.is_empty());
    assert_eq!(h.dead_letters().await.len(), 2, "both messages are in the dead-letter queue");
    // The recovery the system has: the sweeper re-drives the crashed holder.
    h.advance(Duration::minutes(5));
    assert_eq!(h.sweep().await, ids(&[&poison]));
    h.drain().await;
    assert_eq!(h.status_of(&poison).await, Status::Completed);

    // The bystander reached the dead-letter queue without the engine ever running for it (aws-pitfalls.md: "messages
    // reach the DLQ without the handler ever running, and so without any metadata row … make the DLQ path record
    // them"). Spec §2: `failed` = "the message is in the DLQ"; §3: a client may poll status(event_id).
    let record = h.try_record(&bystander.event_id()).await;
    assert!(
        record.as_ref().is_some_and(|r| r.status == Status::Failed || r.status == Status::Completed),
        "{} left {:?}: no record, so status() can't tell the client its event is in the dead-letter queue",
        bystander.event_id(),
        record.map(|r| r.status)
    );
}

// ---- §2 the transition table ----

#[test]
fn every_transition_follows_the_table() {
    use Status::*;
    let table: &[(Status, &[Status])] = &[
        (Received, &[Queued, Processing, Canceled, Dropped, Duplicate, Disabled, Rejected, Failed]),
        (Queued, &[Processing, Canceled, Dropped, Duplicate, Failed]),
        (Processing, &[Processing, Completed, Errored, Failed, Dropped, Canceled, Waiting]),
        (Errored, &[Processing, Queued, Canceled, Dropped, Duplicate, Failed]),
        (Waiting, &[Processing, Queued, Canceled, Dropped, Duplicate, Failed]),
        (Completed, &[Received]),
        (Failed, &[Received]),
        (Dropped, &[Received]),
        (Duplicate, &[Received]),
        (Canceled, &[Received]),
        (Disabled, &[Received]),
        (Rejected, &[]),
    ];
    assert_eq!(table.len(), Status::ALL.len());
    for &(from, allowed) in table {
        for to in Status::ALL {
            let expected = allowed.contains(&to);
            assert_eq!(from.can_become(to), expected, "{from} → {to}");
            assert_eq!(from.check(to).is_ok(), expected, "{from} → {to}");
        }
    }
    for status in Status::ALL {
        // Terminal statuses leave only through a reprocess (back to `received`); `rejected` never leaves.
        if status.is_terminal() {
            let exits: Vec<Status> = Status::ALL.into_iter().filter(|&to| status.can_become(to)).collect();
            let expected: &[Status] = if status == Rejected { &[] } else { &[Received] };
            assert_eq!(exits, expected, "exits of {status}");
        }
        // Nothing enters `received` but a reprocess of a finished event, nor `rejected` but a fresh one.
        assert_eq!(status.can_become(Received), status.is_terminal() && status != Rejected, "{status} → received");
        assert_eq!(status.can_become(Rejected), status == Received, "{status} → rejected");
        // Only an attempt completes an event.
        assert_eq!(status.can_become(Completed), status == Processing, "{status} → completed");
        // Statuses round-trip through their names.
        assert_eq!(status.as_str().parse::<Status>(), Ok(status));
    }
    assert_eq!(
        [Received, Queued, Processing, Errored, Waiting].map(Status::is_terminal),
        [false; 5],
        "the non-terminal statuses"
    );
    // An illegal transition is an error naming both ends, and the record is left as it was.
    let error = Completed.check(Processing).expect_err("illegal");
    assert_eq!((error.from, error.to), (Completed, Processing));
    assert!(error.to_string().contains("completed → processing"));
    let mut record: EventRecord = serde_json::from_value(json!({
        "event_id": "x", "client_event_id": true, "entity": null, "order": null, "kind": null, "direction": null,
        "content_hash": null, "payload": {"key": "payloads/00/x.zst", "sha256": "00", "size": 0},
        "delivery_id": null, "conflicts_with": null, "caused_by": null, "status": "rejected", "dropped_for": null,
        "duplicate_of": null, "canceled_by": null, "waiting_for": null, "attempt": 0, "attempt_base": 0,
        "error": null, "tie": false, "out_of_order": false, "forced": false, "redelivered": 0, "external_at": null,
        "received_at": "2026-05-01T12:00:00Z", "read_started_at": null, "write_started_at": null,
        "completed_at": null, "updated_at": "2026-05-01T12:00:00Z", "lease_until": null, "last_message_id": null,
        "expires_at": "2027-05-01T12:00:00Z", "history_folded": 0, "history": [], "version": 1
    }))
    .expect("a record");
    let before = record.clone();
    let entry = synctrail::model::HistoryEntry {
        status: Received,
        at: time(1),
        attempt: 0,
        function: None,
        request_id: None,
        trace_id: None,
        note: None,
    };
    assert!(record.transition(entry).is_err(), "rejected is final");
    assert_eq!(record, before);
}

// ---- §2 history ----

async fn history_records_function_request_and_trace_for_every_attempt(via: Via) {
    let h = Harness::over(via);
    let event = Env::issue("27").at(10).titled("v1");
    h.script.next(Step::Retryable("throttled"));
    h.send_env(&event).await;
    let first = h.deliver(1).await;
    h.advance(first.retry_after(0));
    let second = h.deliver(1).await;
    assert_eq!(second.only().status, Some(Status::Completed));

    let record = h.record_of(&event).await;
    let expected = [
        (Status::Received, 0, &first),
        (Status::Processing, 1, &first),
        (Status::Errored, 1, &first),
        (Status::Processing, 2, &second),
        (Status::Completed, 2, &second),
    ];
    assert_eq!(record.history.len(), expected.len(), "{:?}", timeline(&record));
    for (entry, (status, attempt, delivery)) in record.history.iter().zip(expected) {
        assert_eq!((entry.status, entry.attempt), (status, attempt));
        assert_eq!(entry.function.as_deref(), Some(FUNCTION), "{status}");
        assert_eq!(entry.request_id.as_deref(), Some(delivery.request_id.as_str()), "{status}");
        assert_eq!(entry.trace_id.as_deref(), Some(delivery.trace_id.as_str()), "{status}");
    }
    assert_ne!(first.request_id, second.request_id);
    assert_eq!(record.history[0].at, t0());
    assert_eq!(record.history[4].at, h.now());
    assert_eq!(record.completed_at, Some(h.now()));
    assert!(record.history[2].note.as_deref().is_some_and(|n| n.contains("throttled")));
    assert_history_is_legal(&record);
}

// ---- The sweeper ----

async fn sweeper_redrives_a_promoted_event_whose_message_was_lost(via: Via) {
    let h = Harness::over(via);
    let first = Env::issue("28").at(10).titled("v1");
    let second = Env::issue("28").at(20).titled("v2");
    let entity = first.entity();
    let gate = h.script.hold_next();
    let (_, ()) = deliver_racing(&h, &first, async {
        gate.entered().await;
        h.send_env(&second).await;
        assert_eq!(h.deliver(1).await.only().status, Some(Status::Queued));
        gate.release();
    })
    .await;

    // The promotion message is lost.
    let lost = h.receive(10).await;
    assert_eq!(lost.len(), 1);
    h.ports().queue.delete(&[lost[0].receipt_handle.clone()]).await.expect("delete");
    assert_eq!(h.status_of(&second).await, Status::Queued);

    assert!(h.sweep().await.is_empty(), "the promoted event's lease is still live");
    h.advance(h.options.settings.lease + h.options.settings.clock_margin + Duration::seconds(1));
    assert_eq!(h.sweep().await, ids(&[&second]));
    h.drain().await;

    assert_eq!(h.status_of(&second).await, Status::Completed);
    assert_eq!(h.mirror_state(&entity).await, Some(json!({"title": "v2"})));
    assert_eq!(h.effects().await, ids(&[&first, &second]));
    assert!(h.sweep().await.is_empty(), "nothing left to sweep");
}

async fn sweeper_redrives_a_crashed_event_whose_message_was_dead_lettered(via: Via) {
    let h = Harness::with(Options { via, max_receives: 1, ..Options::default() });
    let event = Env::issue("29").at(10).titled("v1");
    h.script.next(Step::Crash { write: false });
    h.send_env(&event).await;
    assert!(h.deliver(1).await.crashed());
    h.advance(h.options.visibility_timeout);
    assert!(h.receive(1).await.is_empty(), "the queue dead-letters the message instead of a second receive");
    assert_eq!(h.dead_letters().await.len(), 1);
    assert_eq!(h.status_of(&event).await, Status::Processing);

    assert_eq!(h.sweep().await, ids(&[&event]));
    h.drain().await;

    let record = h.record_of(&event).await;
    assert_eq!((record.status, record.attempt), (Status::Completed, 2));
    assert_eq!(h.effects().await, ids(&[&event]));
}

/// Delivers `first` and, while it applies, queues `second` behind it; `first`'s settle then writes its record and
/// dies before the head's write. The delivery of `first`.
async fn settle_cut_short_with_one_waiting(h: &Harness, first: &Env, second: &Env) -> Delivery {
    let gate = h.script.hold_next();
    let (cut, ()) = deliver_racing(h, first, async {
        gate.entered().await;
        h.send_env(second).await;
        assert_eq!(h.deliver(1).await.only().status, Some(Status::Queued));
        h.held.cut_next_settle();
        gate.release();
    })
    .await;
    cut
}

async fn a_settle_cut_short_before_the_head_write_is_finished_by_the_events_redelivery(via: Via) {
    let h = Harness::with(Options { via, held_store: true, ..Options::default() });
    let first = Env::issue("41").at(10).titled("v1");
    let second = Env::issue("41").at(20).titled("v2");
    let entity = first.entity();
    let cut = settle_cut_short_with_one_waiting(&h, &first, &second).await;

    assert_eq!(cut.failures(), vec![cut.messages[0].message_id.clone()], "the message goes back to the queue");
    assert_eq!(h.status_of(&first).await, Status::Completed);
    let head = h.head(&entity).await;
    assert_eq!(head.inflight.map(|i| i.slot.event_id), Some(first.event_id()), "the head still names it");
    assert_eq!(head.next.map(|n| n.event_id), Some(second.event_id()));

    h.advance(h.options.visibility_timeout);
    let again = h.deliver(1).await;
    assert_eq!(again.only().status, Some(Status::Completed));
    let head = h.head(&entity).await;
    assert_eq!(head.applied.map(|a| a.event_id), Some(first.event_id()), "the redelivery finished the settle");
    assert_eq!(head.inflight.map(|i| i.slot.event_id), Some(second.event_id()), "and promoted what waited");
    h.drain().await;

    assert_eq!(h.status_of(&second).await, Status::Completed);
    assert_eq!(h.effects().await, ids(&[&first, &second]), "one effect each");
    assert_eq!(h.mirror_state(&entity).await, Some(json!({"title": "v2"})));
    assert!(h.head(&entity).await.inflight.is_none());
}

async fn a_settle_cut_short_whose_message_is_gone_is_finished_by_the_sweeper(via: Via) {
    let h = Harness::with(Options { via, held_store: true, ..Options::default() });
    let first = Env::adjustment("SKU-42").at(10).delta(5);
    let second = Env::adjustment("SKU-42").at(20).delta(-2);
    let entity = first.entity();
    settle_cut_short_with_one_waiting(&h, &first, &second).await;
    assert_eq!(h.status_of(&first).await, Status::Completed);
    // Its message is lost for good (deleted, as if dead-lettered and discarded).
    h.advance(h.options.visibility_timeout);
    let lost = h.receive(10).await;
    assert_eq!(lost.len(), 1);
    h.ports().queue.delete(&[lost[0].receipt_handle.clone()]).await.expect("delete");
    assert_eq!(h.head(&entity).await.backlog.len(), 1, "the second event waits behind a finished one");

    let invocation = Invocation { function: Some("synctrail-sweeper:42".into()), ..Invocation::default() };
    let report = h.engine.sweep(100, &invocation).await.expect("sweep");
    assert_eq!((report.settles_finished, report.redriven), (vec![first.event_id()], vec![]));
    let head = h.head(&entity).await;
    assert_eq!(head.applied.map(|a| a.event_id), Some(first.event_id()));
    assert_eq!(head.inflight.map(|i| i.slot.event_id), Some(second.event_id()), "promoted");
    h.drain().await;

    assert_eq!(h.status_of(&second).await, Status::Completed);
    assert_eq!(h.effects().await, ids(&[&first, &second]));
    assert_eq!(h.engine.sweep(100, &invocation).await.expect("sweep").settles_finished, vec![], "nothing left");
}

async fn a_claim_cut_short_after_its_head_write_holds_the_entity_until_its_lease_ends_then_is_claimed_again(via: Via) {
    let h = Harness::with(Options { via, held_store: true, ..Options::default() });
    let event = Env::issue("45").at(10).titled("v1");
    let entity = event.entity();
    h.held.cut_next_claim();
    h.send_env(&event).await;
    let cut = h.deliver(1).await;
    assert_eq!(cut.failures(), vec![cut.messages[0].message_id.clone()], "the message goes back to the queue");
    assert!(h.try_record(&event.event_id()).await.is_none(), "the claim's record write never landed");
    let inflight = h.head(&entity).await.inflight.expect("the head names the event in flight");
    assert_eq!((inflight.slot.event_id, inflight.promoted), (event.event_id(), false), "held by a claim");

    // Another delivery of the event while that claim's lease lasts waits for it, recording the event meanwhile.
    h.send_env(&event).await;
    let early = h.deliver(1).await;
    assert_eq!(early.only().status, Some(Status::Received));
    assert_eq!(early.failures().len(), 1, "handed back until the lease ends");
    assert_eq!(h.script.calls(), 0, "nothing applied under a claim that never wrote its record");

    h.advance(h.options.visibility_timeout);
    h.drain().await;
    let record = h.record_of(&event).await;
    assert_eq!((record.status, record.attempt), (Status::Completed, 1), "claimed again once the lease ended");
    assert_eq!(h.effects().await, ids(&[&event]), "applied once");
    let head = h.head(&entity).await;
    assert_eq!((head.applied.map(|a| a.event_id), head.inflight), (Some(event.event_id()), None));
}

async fn an_event_recorded_received_under_a_claim_cut_short_is_canceled_by_a_newer_event_once_the_lease_ends(via: Via) {
    let h = Harness::with(Options { via, held_store: true, ..Options::default() });
    let event = Env::issue("47").at(10).titled("v1");
    let newer = Env::issue("47").at(20).titled("v2");
    h.held.cut_next_claim();
    h.send_env(&event).await;
    h.deliver(1).await;
    h.send_env(&event).await;
    assert_eq!(h.deliver(1).await.only().status, Some(Status::Received), "a copy records it while the lease lasts");

    // Once the lease ends, the newer event arrives before either copy of the first comes back.
    h.advance(h.options.visibility_timeout);
    let copies = h.receive(10).await;
    assert_eq!(copies.len(), 2, "both copies of the first event are visible again");
    h.send_env(&newer).await;
    assert_eq!(h.deliver(1).await.only().status, Some(Status::Completed));
    let superseded = h.record_of(&event).await;
    assert_eq!((superseded.status, superseded.canceled_by.clone()), (Status::Canceled, Some(newer.event_id())));
    assert_history_is_legal(&superseded);

    let late = h.invoke(&copies).await;
    assert!(late.failures().is_empty(), "the copies of a canceled event are acknowledged");
    assert_eq!(h.status_of(&event).await, Status::Canceled);
    assert_eq!(h.effects().await, ids(&[&newer]), "only the newer event is applied");
}

async fn a_resubmission_of_a_failed_event_whose_claim_wrote_only_its_head_is_not_taken_for_a_settle_cut_short(
    via: Via,
) {
    let h = Harness::with(Options { via, held_store: true, ..Options::default() });
    let event = Env::issue("46").at(10).titled("v1");
    let entity = event.entity();
    h.script.next(Step::Permanent("422 unprocessable"));
    assert_eq!(h.apply_in_turn(&[&event]).await[0].only().status, Some(Status::Failed));

    // The client resends it; its new claim writes the head, and another copy arrives before the claim's record
    // write: the record still says `failed` while the head names the event in flight again.
    let gate = h.held.hold_claim_record_of(&event.event_id());
    let (claimed, ()) = deliver_racing(&h, &event, async {
        gate.entered().await;
        h.send_env(&event).await;
        let copy = h.deliver(1).await;
        assert_eq!(copy.failures().len(), 1, "the copy waits for the claim's lease");
        let inflight = h.head(&entity).await.inflight.expect("the new claim still holds the entity");
        assert_eq!((inflight.slot.event_id, inflight.attempt), (event.event_id(), 2));
        assert_eq!(h.script.calls(), 1, "only the first attempt has reached the destination");
        gate.release();
    })
    .await;
    assert_eq!(claimed.only().status, Some(Status::Completed));
    let record = h.record_of(&event).await;
    assert_eq!((record.status, record.attempt), (Status::Completed, 2));
    let head = h.head(&entity).await;
    assert_eq!((head.applied.map(|a| a.event_id), head.inflight), (Some(event.event_id()), None));

    h.advance(h.options.visibility_timeout);
    h.drain().await;
    assert_eq!(h.record_of(&event).await.status, Status::Completed);
    assert_eq!(h.effects().await, ids(&[&event]), "applied once");
}

/// Delivers `event` alone with its claim stalled between its two writes (the head written, the record held) past the
/// lease, while `meanwhile` is sent and delivered and completes; then the record write goes on.
async fn deliver_with_its_claim_record_stalled_past_the_lease(h: &Harness, event: &Env, meanwhile: &Env) -> Delivery {
    let gate = h.held.hold_claim_record_of(&event.event_id());
    let (stalled, ()) = deliver_racing(h, event, async {
        gate.entered().await;
        h.advance(h.options.function_timeout + Duration::seconds(2));
        h.send_env(meanwhile).await;
        assert_eq!(
            h.deliver(1).await.only().status,
            Some(Status::Completed),
            "{} completes meanwhile",
            meanwhile.event_id()
        );
        gate.release();
    })
    .await;
    stalled
}

async fn an_attempt_whose_claim_record_landed_after_its_lease_ended_still_records_its_end(via: Via) {
    let h = Harness::with(Options { via, held_store: true, ..Options::default() });
    let event = Env::issue("47").at(10).titled("v1");
    let newer = Env::issue("47").at(20).titled("v2");
    let entity = event.entity();
    // A newer event takes the entity over, with no record of the older one to cancel yet.
    let slow = deliver_with_its_claim_record_stalled_past_the_lease(&h, &event, &newer).await;
    // Its end is recorded though the head moved on: `dropped` (the mirror holds newer), or `errored` over HTTP,
    // whose client sends nothing past the invocation's deadline.
    let ended = h.record_of(&event).await.status;
    assert_ne!(ended, Status::Processing, "not left processing with no head naming it");
    assert_eq!(slow.only().status, Some(ended));
    h.advance(h.options.settings.backoff_max + h.options.visibility_timeout);
    h.drain().await;
    let record = h.record_of(&event).await;
    assert_eq!((record.status, record.dropped_for), (Status::Dropped, Some(newer.event_id().to_string())));
    let head = h.head(&entity).await;
    assert_eq!((head.applied.map(|a| a.event_id), head.inflight), (Some(newer.event_id()), None));
    assert_eq!(h.effects().await, ids(&[&newer]));
    assert_eq!(h.mirror_state(&entity).await, Some(json!({"title": "v2"})));
}

/// Delivers `event` with its claim stalled between its two writes past its lease, and meanwhile `newer`, which finds
/// no record of it to cancel and takes the entity over, until `newer` waits at `newer_held`; then the stalled record
/// write goes on, and once the attempt has ended (it fails: the script or, over HTTP, the passed deadline) `newer`
/// goes on. Both deliveries, and `event`'s record and its entity's head as they were when `newer` went on.
async fn fail_a_stalled_attempt_beside_a_takeover(
    h: &Harness,
    event: &Env,
    newer: &Env,
    newer_held: Arc<Gate>,
) -> (Delivery, Delivery, EventRecord, EntityHead) {
    let claim_record = h.held.hold_claim_record_of(&event.event_id());
    let (failed, (taken_over, (record, head))) = deliver_racing(h, event, async {
        claim_record.entered().await;
        h.advance(h.options.function_timeout + Duration::seconds(2));
        h.send_env(newer).await;
        let batch = h.receive(1).await;
        tokio::join!(h.invoke(&batch), async {
            newer_held.entered().await;
            claim_record.release();
            for _ in 0..10_000 {
                if h.try_record(&event.event_id()).await.is_some_and(|r| r.status != Status::Processing) {
                    break;
                }
                tokio::task::yield_now().await;
            }
            let seen = (h.record_of(event).await, h.head(&event.entity()).await);
            newer_held.release();
            seen
        })
    })
    .await;
    (failed, taken_over, record, head)
}

async fn an_attempt_failing_past_its_hold_after_a_takeover_found_no_record_to_cancel_is_canceled_not_left_errored(
    via: Via,
) {
    let h = Harness::with(Options { via, held_store: true, ..Options::default() });
    let event = Env::issue("51").at(10).titled("v1");
    let newer = Env::issue("51").at(20).titled("v2");
    let entity = event.entity();
    if via == Via::Mirror {
        // Over HTTP the attempt fails anyway: its client sends nothing past the invocation's deadline.
        h.script.next(Step::Retryable("503 from the destination"));
    }
    // The newer event waits before its claim's head write; the attempt fails meanwhile.
    let newer_claim = h.held.hold_first_write_of(&newer.event_id());
    let (failed, taken_over, record, head) =
        fail_a_stalled_attempt_beside_a_takeover(&h, &event, &newer, newer_claim).await;
    assert_eq!(record.status, Status::Errored);
    assert_eq!(head.inflight.map(|i| i.slot.event_id), Some(event.event_id()), "an errored event is held");

    assert_eq!(failed.only().status, Some(Status::Errored));
    // The takeover's claim conflicted with the failure's commit, decided again and canceled the failed attempt.
    assert_eq!(taken_over.only().status, Some(Status::Completed));
    let record = h.record_of(&event).await;
    assert_eq!((record.status, record.canceled_by), (Status::Canceled, Some(newer.event_id())));
    let head = h.head(&entity).await;
    assert_eq!((head.applied.map(|a| a.event_id), head.inflight), (Some(newer.event_id()), None));
    assert_eq!(h.effects().await, ids(&[&newer]));
    assert_eq!(h.mirror_state(&entity).await, Some(json!({"title": "v2"})));
}

async fn an_attempt_failing_after_a_takeover_that_found_no_record_to_cancel_writes_the_cancel_itself(via: Via) {
    let h = Harness::with(Options { via, held_store: true, ..Options::default() });
    let event = Env::issue("52").at(10).titled("v1");
    let newer = Env::issue("52").at(20).titled("v2");
    let entity = event.entity();
    // The newer event takes the entity over and applies first, waiting at the gate; then the older attempt runs and
    // fails (over HTTP its client sends nothing past the invocation's deadline).
    let applying = h.script.hold_next();
    if via == Via::Mirror {
        h.script.next(Step::Retryable("503 from the destination"));
    }
    let (failed, taken_over, record, _) = fail_a_stalled_attempt_beside_a_takeover(&h, &event, &newer, applying).await;
    assert_eq!((record.status, record.canceled_by), (Status::Canceled, Some(newer.event_id())));

    assert_eq!(failed.only().status, Some(Status::Canceled));
    assert!(failed.failures().is_empty(), "its message is acknowledged");
    assert_eq!(taken_over.only().status, Some(Status::Completed));
    let head = h.head(&entity).await;
    assert_eq!((head.applied.map(|a| a.event_id), head.inflight), (Some(newer.event_id()), None));
    assert_eq!(h.effects().await, ids(&[&newer]));
    assert_eq!(h.mirror_state(&entity).await, Some(json!({"title": "v2"})));
}

async fn an_attempt_failing_past_its_hold_after_the_takeover_failed_takes_the_hold_again(via: Via) {
    let h = Harness::with(Options { via, held_store: true, ..Options::default() });
    let event = Env::issue("53").at(10).titled("v1");
    let newer = Env::issue("53").at(20).titled("v2");
    let entity = event.entity();
    // The newer event takes the entity over and fails for good, releasing it; then the older attempt, its claim's
    // record landed, runs and fails (over HTTP its client sends nothing past the invocation's deadline).
    h.script.next(Step::Permanent("422 from the destination"));
    if via == Via::Mirror {
        h.script.next(Step::Retryable("503 from the destination"));
    }
    let claim_record = h.held.hold_claim_record_of(&event.event_id());
    let (failed, taken_over) = deliver_racing(&h, &event, async {
        claim_record.entered().await;
        h.advance(h.options.function_timeout + Duration::seconds(2));
        h.send_env(&newer).await;
        let batch = h.receive(1).await;
        let taken_over = h.invoke(&batch).await;
        claim_record.release();
        taken_over
    })
    .await;
    assert_eq!(taken_over.only().status, Some(Status::Failed));
    assert_eq!(failed.only().status, Some(Status::Errored));
    let record = h.record_of(&event).await;
    assert_eq!(record.status, Status::Errored);
    let head = h.head(&entity).await;
    let hold = head.inflight.expect("the errored event holds its entity again");
    assert_eq!((hold.slot.event_id, hold.attempt, hold.fence), (event.event_id(), record.attempt, head.fence));
    assert!(hold.lease_until > h.now() + failed.retry_after(0), "the hold lasts past the retry's due time");

    // Its retry claims inside that hold and applies.
    h.advance(failed.retry_after(0));
    let retried = h.deliver(1).await;
    assert_eq!(retried.only().status, Some(Status::Completed));
    let head = h.head(&entity).await;
    assert_eq!((head.applied.map(|a| a.event_id), head.inflight), (Some(event.event_id()), None));
    assert_eq!(h.effects().await, ids(&[&event]));
    assert_eq!(h.mirror_state(&entity).await, Some(json!({"title": "v1"})));
}

async fn a_same_change_under_another_id_waits_while_the_claim_it_matches_has_no_record(via: Via) {
    let h = Harness::with(Options { via, held_store: true, ..Options::default() });
    let original = Env::issue("53").at(10).titled("v1").id("gh-53");
    let twin = Env::issue("53").at(10).titled("v1").id("gh-53-second-hook");
    let conflicting = Env::issue("53").at(10).titled("v1 edited").id("gh-53");
    let entity = original.entity();
    // The original's claim writes the head and dies before its record write: the head's slot names gh-53 with the
    // original's content, and no record backs it.
    h.held.cut_next_claim();
    h.send_env(&original).await;
    assert_eq!(h.deliver(1).await.failures().len(), 1);
    assert!(h.try_record(&original.event_id()).await.is_none());

    // The same change under another id is not a duplicate of a slot no record backs: it waits.
    h.send_env(&twin).await;
    let waited = h.deliver(1).await;
    assert_eq!((waited.only().status, waited.failures().len()), (Some(Status::Received), 1), "handed back");
    // Other content under the original's id arrives meanwhile and is recorded under it.
    h.send_env(&conflicting).await;
    assert_eq!(h.deliver(1).await.only().status, Some(Status::Received));

    for _ in 0..4 {
        h.advance(h.options.visibility_timeout);
        h.drain().await;
    }
    // gh-53 is the edited content (recorded first); the original message is refused as conflicting with it; the
    // twin's change is applied after it (a tie: same order key, other content), not lost as its duplicate.
    assert_eq!(h.record_of(&conflicting).await.status, Status::Completed);
    let twin_record = h.record_of(&twin).await;
    assert_eq!((twin_record.status, twin_record.duplicate_of), (Status::Completed, None));
    assert_ne!(h.record_of(&conflicting).await.content_hash, twin_record.content_hash, "gh-53 holds other content");
    assert_eq!(h.counts().await.get(&Status::Rejected), Some(&1), "the original message, conflicting with gh-53");
    assert_eq!(h.effects().await, ids(&[&conflicting, &twin]));
    assert_eq!(h.mirror_state(&entity).await, Some(json!({"title": "v1"})));
}

async fn a_copy_recording_the_event_between_its_claims_two_writes_does_not_hand_the_claiming_delivery_back(via: Via) {
    let h = Harness::with(Options { via, held_store: true, ..Options::default() });
    let event = Env::issue("49").at(10).titled("v1");
    let entity = event.entity();
    let gate = h.held.hold_claim_record_of(&event.event_id());
    let (claimed, ()) = deliver_racing(&h, &event, async {
        // The claim wrote the head; a copy of the message arrives before the claim's record write, finds the entity
        // held and records the event so that it is known.
        gate.entered().await;
        h.send_env(&event).await;
        let copy = h.deliver(1).await;
        assert_eq!(copy.failures().len(), 1, "the copy waits for the claim");
        assert_eq!(h.status_of(&event).await, Status::Received);
        gate.release();
    })
    .await;
    assert_eq!(claimed.only().status, Some(Status::Completed), "the delivery whose head holds the entity goes on");
    assert!(claimed.failures().is_empty(), "its message is not handed back");
    let record = h.record_of(&event).await;
    assert_eq!((record.status, record.attempt), (Status::Completed, 1));
    let head = h.head(&entity).await;
    assert_eq!((head.applied.map(|a| a.event_id), head.inflight), (Some(event.event_id()), None));

    h.advance(h.options.visibility_timeout + Duration::seconds(1));
    h.drain().await;
    assert_eq!(h.record_of(&event).await.status, Status::Completed);
    assert_eq!(h.effects().await, ids(&[&event]), "applied once");
}

async fn a_claim_whose_record_write_finds_the_event_done_by_a_copy_after_its_lease_does_not_write_over_it(via: Via) {
    let h = Harness::with(Options { via, held_store: true, ..Options::default() });
    let event = Env::issue("50").at(10).titled("v1");
    // A copy of the message claims the event again and completes it before the stalled claim's record write.
    deliver_with_its_claim_record_stalled_past_the_lease(&h, &event, &event).await;
    let record = h.record_of(&event).await;
    assert_eq!((record.status, record.attempt), (Status::Completed, 1), "the stalled claim did not write over it");
    h.advance(h.options.settings.backoff_max + h.options.visibility_timeout);
    h.drain().await;
    assert_eq!(h.record_of(&event).await.status, Status::Completed);
    assert_eq!(h.head(&event.entity()).await.inflight, None);
    assert_eq!(h.effects().await, ids(&[&event]), "applied once");
}

/// How the first event's attempt, held at the destination while the clock moved past its invocation's visibility
/// timeout, ended. The mirror does not look at the invocation's deadline: the released write lands and the event
/// completes. The HTTP destination measures each request's time budget against that deadline on the harness's
/// clock (`Transport::budget`), and the deadline has passed by the release, so over HTTP the attempt may instead
/// end `errored` (retried after its backoff, which the test then drains); nothing else is allowed either way.
fn assert_the_held_first_attempt_ended(via: Via, done: &Delivery) {
    let status = done.only().status;
    match via {
        Via::Mirror => assert_eq!(status, Some(Status::Completed), "the mirror applies the held write"),
        Via::Http => assert!(
            matches!(status, Some(Status::Completed | Status::Errored)),
            "over HTTP the held write completes or errors past the deadline, not {status:?}"
        ),
    }
}

async fn an_in_order_event_whose_queuing_was_cut_short_after_its_record_is_queued_again_by_its_redelivery(via: Via) {
    let h = Harness::with(Options { via, held_store: true, ..Options::default() });
    let first = Env::adjustment("SKU-48").at(10).delta(5);
    let second = Env::adjustment("SKU-48").at(20).delta(-2);
    let entity = first.entity();
    let gate = h.script.hold_next();
    let (done, ()) = deliver_racing(&h, &first, async {
        gate.entered().await;
        h.held.cut_next_queue();
        h.send_env(&second).await;
        let cut = h.deliver(1).await;
        assert_eq!(cut.failures().len(), 1, "the message goes back to the queue");
        assert_eq!(h.status_of(&second).await, Status::Queued, "the record was written");
        assert!(h.head(&entity).await.backlog.is_empty(), "the head's write was not");
        // Its message comes back while the first still applies: a `queued` record the head does not hold (and
        // not parked) is queued again, not taken for queued already.
        h.advance(h.options.visibility_timeout);
        assert_eq!(h.deliver(1).await.only().status, Some(Status::Queued));
        let backlog = h.head(&entity).await.backlog.into_iter().map(|s| s.event_id).collect::<Vec<_>>();
        assert_eq!(backlog, vec![second.event_id()]);
        gate.release();
    })
    .await;
    assert_the_held_first_attempt_ended(via, &done);
    h.advance(h.options.settings.backoff_max);
    h.drain().await;
    assert_eq!(h.status_of(&first).await, Status::Completed);
    assert_eq!(h.status_of(&second).await, Status::Completed, "promoted, then applied");
    assert_eq!(h.effects().await, ids(&[&first, &second]));
    assert_eq!(h.mirror_state(&entity).await, Some(json!({"quantity": 3})));
}

async fn an_in_order_event_whose_park_was_cut_short_after_its_record_is_parked_again_by_its_redelivery(via: Via) {
    let mut settings = settings();
    settings.max_backlog = 1;
    let h = Harness::with(Options { via, held_store: true, settings, ..Options::default() });
    let first = Env::adjustment("SKU-49").at(10).delta(5);
    let second = Env::adjustment("SKU-49").at(20).delta(-2);
    let third = Env::adjustment("SKU-49").at(30).delta(1);
    let entity = first.entity();
    let gate = h.script.hold_next();
    let (done, ()) = deliver_racing(&h, &first, async {
        gate.entered().await;
        h.send_env(&second).await;
        assert_eq!(h.deliver(1).await.only().status, Some(Status::Queued), "the backlog of one is full now");
        h.held.cut_next_queue();
        h.send_env(&third).await;
        let cut = h.deliver(1).await;
        assert_eq!(cut.failures().len(), 1, "the message goes back to the queue");
        let record = h.record_of(&third).await;
        assert_eq!((record.status, record.parked, h.head(&entity).await.parked), (Status::Queued, true, 0));
        // Its message comes back while the entity is still busy: parked, but not counted, it is parked again.
        h.advance(h.options.visibility_timeout);
        assert_eq!(h.deliver(1).await.only().status, Some(Status::Queued));
        assert_eq!(h.head(&entity).await.parked, 1, "counted now");
        gate.release();
    })
    .await;
    assert_the_held_first_attempt_ended(via, &done);
    h.advance(h.options.settings.backoff_max);
    h.drain().await;
    for env in [&first, &second, &third] {
        assert_eq!(h.status_of(env).await, Status::Completed);
    }
    assert_eq!(h.effects().await, ids(&[&first, &second, &third]));
    assert_eq!(h.mirror_state(&entity).await, Some(json!({"quantity": 4})));
}

async fn a_delivery_that_read_the_record_before_a_newer_claim_of_it_leaves_that_claim_running(via: Via) {
    let h = Harness::with(Options { via, held_store: true, ..Options::default() });
    let event = Env::issue("43").at(10).titled("v1");
    h.script.next(Step::Permanent("422 unprocessable"));
    h.send_env(&event).await;
    assert_eq!(h.deliver(1).await.only().status, Some(Status::Failed));
    // The client resends it twice. One delivery reads the record (`failed`) and is held before the head; the other
    // claims the event meanwhile and applies it; then the first reads the head, which names the event in flight.
    h.send_env(&event).await;
    h.send_env(&event).await;
    let batch = h.receive(2).await;
    let head_read = h.held.hold_next_head_read();
    let apply = h.script.hold_next();
    let late_done = tokio::sync::Notify::new();
    let (late, claimed, ()) = tokio::join!(
        async {
            let delivery = h.invoke(&batch[1..]).await;
            late_done.notify_one();
            delivery
        },
        async {
            head_read.entered().await;
            h.invoke(&batch[..1]).await
        },
        async {
            apply.entered().await;
            head_read.release();
            tokio::time::timeout(crate::support::GATE_WAIT, late_done.notified())
                .await
                .expect("the delivery that read the record first did not end within 10 s while the claim was held");
            apply.release();
        },
    );

    assert_eq!(late.failures(), vec![batch[1].message_id.clone()], "it comes back later");
    assert_eq!(claimed.only().status, Some(Status::Completed), "the claim settled: nobody finished it early");
    let head = h.head(&event.entity()).await;
    assert_eq!(head.applied.map(|a| a.event_id), Some(event.event_id()));
    assert!(head.inflight.is_none());
    assert_eq!(h.effects_of(&event.event_id()).await, 1);
}

async fn a_reprocess_of_a_completed_event_tells_the_destination_to_look_before_writing(via: Via) {
    let h = Harness::over(via);
    let event = Env::issue("44").at(10).titled("applied, then reprocessed");
    h.apply_in_turn(&[&event]).await;

    h.send(Message::redrive_body(&event.event_id(), None, RedriveReason::Reprocess, false)).await;
    assert_eq!(h.deliver(1).await.only().status, Some(Status::Completed));

    let seen: Vec<(u32, bool)> = h.script.seen().iter().map(|c| (c.attempt, c.previous_attempt_unknown)).collect();
    assert_eq!(seen, [(1, false), (2, true)], "it was written: a destination without event ids must look first");
    assert_eq!(h.effects_of(&event.event_id()).await, 1, "no second effect");
}

async fn a_redrive_naming_another_entity_than_its_events_runs_against_its_own_entitys_head(via: Via) {
    let h = Harness::over(via);
    let event = Env::issue("45").at(10).titled("applied, then reprocessed");
    let other = Env::issue("46").at(20).titled("another entity, changed later");
    h.apply_in_turn(&[&event, &other]).await;
    let other_head = h.head(&other.entity()).await;

    let named = Some(other.entity());
    h.send(Message::redrive_body(&event.event_id(), named.as_ref(), RedriveReason::Reprocess, false)).await;
    assert_eq!(h.deliver(1).await.only().status, Some(Status::Completed), "decided on its own entity's head");

    assert_eq!(h.head(&other.entity()).await, other_head, "the entity the message named is untouched");
    let head = h.head(&event.entity()).await;
    assert_eq!(head.applied.map(|a| a.event_id), Some(event.event_id()));
    assert!(head.inflight.is_none());
    assert_eq!(h.record_of(&event).await.attempt, 2);
}

async fn a_round_after_a_lost_race_reads_the_record_and_the_head_again_together(via: Via) {
    let h = Harness::with(Options { via, held_store: true, ..Options::default() });
    let late = Env::issue("47").at(20).titled("decided on a head that changed before its claim");
    let early = Env::issue("47").at(10).titled("claimed and settled meanwhile");
    let claim = h.held.hold_first_write_of(&late.event_id());
    h.held.take_reads();
    let (raced, ()) = deliver_racing(&h, &late, async {
        claim.entered().await;
        h.send_env(&early).await;
        assert_eq!(h.deliver(1).await.only().status, Some(Status::Completed));
        claim.release();
    })
    .await;

    assert_eq!(raced.only().status, Some(Status::Completed), "newer: claimed in its second round");
    let reads = h.held.take_reads();
    // The late one's arrival and its round after the lost race, the early one's arrival; nothing read alone.
    assert_eq!(reads, Reads { together: 3, records: 0, heads: 0 });
    let title = "decided on a head that changed before its claim";
    assert_eq!(h.mirror_state(&late.entity()).await, Some(json!({ "title": title })));
}

// ---- §10 outbound writes and their echoes ----

/// A harness whose outbound events go to an [`EchoingConnector`]; inbound ones to `via` as in every rule.
fn with_connector(via: Via) -> (Harness, Arc<EchoingConnector>) {
    let connector = Arc::new(EchoingConnector::default());
    let outbound: Arc<dyn Destination> = connector.clone();
    let h = Harness::with(Options { via, outbound: Some(Box::new(move |_| outbound)), ..Options::default() });
    (h, connector)
}

async fn the_echo_of_an_outbound_write_is_a_duplicate_of_the_outbound_event(via: Via) {
    let (h, connector) = with_connector(via);
    let ours = Env::issue("40").at(10).titled("Ours").outbound();
    connector.stamp(12, None);

    let d = h.apply_in_turn(&[&ours]).await;
    assert_eq!(d[0].only().status, Some(Status::Completed));
    let written = h.record_of(&ours).await.written.expect("what the connector wrote is recorded");
    assert_eq!(written, EchoingConnector::write_of("Ours", 12, None));
    // The webhook sends the issue back as the external system holds it: the written title, fields the write did
    // not set, and the system's own updated_at.
    let echo = Env::issue("40").at(12).payload(json!({"title": "Ours", "number": 40, "closed_by": null}));
    let d = h.apply_in_turn(&[&echo]).await;

    assert_eq!((d[0].only().status, &d[0].only().disposition), (Some(Status::Duplicate), &Disposition::Ack));
    let duplicate = h.record_of(&echo).await;
    assert_eq!(duplicate.duplicate_of, Some(ours.event_id()));
    assert_eq!((duplicate.attempt, timeline(&duplicate)), (0, vec![Status::Received, Status::Duplicate]));
    assert_eq!(connector.written(), [ours.event_id()], "one external write");
    assert!(h.effects().await.is_empty(), "nothing applied on our side: the outbound change went out, its echo not in");
    let head = h.head(&ours.entity()).await;
    assert_eq!(head.applied.map(|a| a.event_id), Some(ours.event_id()));
    assert_eq!(head.echo.map(|g| g.event_id), Some(ours.event_id()));
}

async fn a_change_made_on_the_other_side_after_the_write_is_applied_even_in_the_same_second(via: Via) {
    let (h, connector) = with_connector(via);
    let ours = Env::issue("41").at(10).titled("Ours").outbound();
    connector.stamp(12, None);
    let same_second = Env::issue("41").at(12).titled("Theirs, within the same second");
    let later = Env::issue("41").at(20).titled("Theirs, later");

    let d = h.apply_in_turn(&[&ours, &same_second]).await;
    assert_eq!(d[1].only().status, Some(Status::Completed), "other content under the written updated_at is no echo");
    assert!(h.record_of(&same_second).await.tie, "a tie with the write, flagged");
    assert_eq!(h.mirror_state(&ours.entity()).await, Some(json!({"title": "Theirs, within the same second"})));
    let d = h.apply_in_turn(&[&later]).await;
    assert_eq!(d[0].only().status, Some(Status::Completed));
    assert!(!h.record_of(&later).await.tie);
    assert_eq!(h.mirror_state(&ours.entity()).await, Some(json!({"title": "Theirs, later"})));
    assert_eq!(h.effects().await, ids(&[&same_second, &later]));
}

async fn an_inbound_state_older_than_the_outbound_write_is_dropped_for_it(via: Via) {
    let (h, connector) = with_connector(via);
    let ours = Env::issue("42").at(10).titled("Ours").outbound();
    connector.stamp(15, None);
    // Changed on the other side at 12: after our change was made (10), before our write landed (15), which
    // replaced it there.
    let overwritten = Env::issue("42").at(12).titled("Theirs, overwritten by ours");

    let d = h.apply_in_turn(&[&ours, &overwritten]).await;

    assert_eq!(d[1].only().status, Some(Status::Dropped));
    assert_eq!(h.record_of(&overwritten).await.dropped_for.as_deref(), Some(ours.event_id().as_str()));
    assert!(h.effects().await.is_empty());
}

async fn the_echo_of_a_create_is_recognised_under_the_id_the_external_system_gave(via: Via) {
    let (h, connector) = with_connector(via);
    let create = Env::issue("draft-7").kind("create").titled("Filed by us").outbound();
    connector.stamp(30, Some("octo-org/widgets#77"));

    assert_eq!(h.apply_in_turn(&[&create]).await[0].only().status, Some(Status::Completed));
    let written = h.record_of(&create).await.written.expect("written");
    assert_eq!(written.created.as_deref(), Some("octo-org/widgets#77"));
    // A create's webhook carries version -1 (docs/webhooks.md); the deliveries GitHub sends after it for what the
    // create set (`labeled`, `assigned`: edits of the same second) carry 0. Both are echoes of the write.
    let echo =
        Env::issue("77").kind("create").at(30).version(-1).payload(json!({"title": "Filed by us", "number": 77}));
    let labeled = Env::issue("77").at(30).payload(json!({"title": "Filed by us", "number": 77, "labels": ["bug"]}));
    let edited = Env::issue("77").at(31).titled("Edited over there");
    let d = h.apply_in_turn(&[&echo, &labeled, &edited]).await;

    assert_eq!(d[0].only().status, Some(Status::Duplicate));
    assert_eq!(h.record_of(&echo).await.duplicate_of, Some(create.event_id()));
    assert_eq!(d[1].only().status, Some(Status::Duplicate), "the labeled delivery after the create");
    assert_eq!(h.record_of(&labeled).await.duplicate_of, Some(create.event_id()));
    assert_eq!(d[2].only().status, Some(Status::Completed));
    let head = h.head(&echo.entity()).await;
    assert_eq!(head.echo.map(|g| g.event_id), Some(create.event_id()), "the guard is on the created issue's head");
    assert_eq!(head.applied.map(|a| a.event_id), Some(edited.event_id()));
    assert_eq!(h.effects().await, ids(&[&edited]));
}

async fn an_echo_that_arrives_while_the_write_is_in_flight_waits_and_ends_a_duplicate(via: Via) {
    let (h, connector) = with_connector(via);
    let ours = Env::issue("43").at(10).titled("Ours").outbound();
    let echo = Env::issue("43").at(12).payload(json!({"title": "Ours", "number": 43}));
    connector.stamp(12, None);
    let gate = connector.hold_next();
    let (d1, ()) = deliver_racing(&h, &ours, async {
        gate.entered().await;
        h.send_env(&echo).await;
        assert_eq!(h.deliver(1).await.only().status, Some(Status::Queued), "waits behind the write");
        gate.release();
    })
    .await;
    assert_eq!(d1.only().status, Some(Status::Completed));
    h.drain().await;

    let duplicate = h.record_of(&echo).await;
    assert_eq!(duplicate.duplicate_of, Some(ours.event_id()));
    assert_eq!(timeline(&duplicate), [Status::Received, Status::Queued, Status::Duplicate]);
    let head = h.head(&ours.entity()).await;
    assert!(head.inflight.is_none() && head.next.is_none(), "the promoted echo released the entity");
    assert_eq!(head.applied.map(|a| a.event_id), Some(ours.event_id()));
    assert!(h.effects().await.is_empty());
}

async fn a_copy_of_an_inbound_create_running_when_our_create_sets_its_guard_waits_for_it(via: Via) {
    let (h, connector) = with_connector(via);
    let create = Env::issue("draft-8").kind("create").titled("Filed by us").outbound();
    connector.stamp(30, Some("octo-org/widgets#78"));
    // The create's webhook arrives before our write has settled, and its attempt is still running when the write's
    // settle sets the echo guard on the created issue's head.
    let webhook =
        Env::issue("78").kind("create").at(30).version(-1).payload(json!({"title": "Filed by us", "number": 78}));
    let gate = h.script.hold_next();
    let (d, ()) = deliver_racing(&h, &webhook, async {
        gate.entered().await;
        assert_eq!(h.apply_in_turn(&[&create]).await[0].only().status, Some(Status::Completed));
        let guard = h.head(&webhook.entity()).await.echo.map(|g| g.event_id);
        assert_eq!(guard, Some(create.event_id()), "the guard is set on the held head");
        h.send_env(&webhook).await;
        let copy = h.deliver(1).await;
        assert_eq!(copy.only().status, Some(Status::Processing), "the copy waits for the running attempt");
        assert_eq!(copy.failures().len(), 1, "handed back");
        gate.release();
    })
    .await;
    assert_eq!(d.only().status, Some(Status::Completed), "the attempt that ran before the guard finishes");
    h.advance(h.options.visibility_timeout);
    h.drain().await;
    let record = h.record_of(&webhook).await;
    assert_eq!(record.status, Status::Completed);
    assert_history_is_legal(&record);
    let head = h.head(&webhook.entity()).await;
    assert_eq!((head.inflight, head.applied.map(|a| a.event_id)), (None, Some(webhook.event_id())));
}

// ---- The sample events of events/*.json ----

async fn sample_envelopes_are_all_applied(via: Via) {
    let h = Harness::over(via);
    let event = fixture("sqs-envelopes.json");
    let bodies = fixture_bodies("sqs-envelopes.json");
    let batch = h.handle(event, &h.next_context()).await.expect("a response");
    assert!(batch.response.batch_item_failures.is_empty());
    for body in &bodies {
        let record = h.record(&event_id_of(body).expect("valid")).await;
        assert_eq!(record.status, Status::Completed, "{body}");
        assert_history_is_legal(&record);
    }
    let issue = entity_of(&bodies[1]).expect("entity");
    let state = h.mirror_state(&issue).await.expect("issue applied");
    assert_eq!(state["state"], "closed", "the update (12:03:17Z) wins over the create");
    let deleted = h.mirror_row(&entity_of(&bodies[4]).expect("entity")).await.expect("row");
    assert!(deleted.deleted);
    assert_eq!(h.effects().await.len(), bodies.len());
}

async fn sample_out_of_order_events_keep_the_newest(via: Via) {
    let h = Harness::over(via);
    let bodies = fixture_bodies("sqs-out-of-order.json");
    let batch = h.handle(fixture("sqs-out-of-order.json"), &h.next_context()).await.expect("a response");
    assert!(batch.response.batch_item_failures.is_empty());
    let newest = event_id_of(&bodies[0]).expect("valid");
    assert_eq!(h.record(&newest).await.status, Status::Completed);
    for body in &bodies[1..] {
        let record = h.record(&event_id_of(body).expect("valid")).await;
        assert_eq!((record.status, record.dropped_for.as_deref()), (Status::Dropped, Some(newest.as_str())));
    }
    let state = h.mirror_state(&entity_of(&bodies[0]).expect("entity")).await.expect("applied");
    assert_eq!(state["title"], "Third state");
    assert_eq!(h.effects().await, [newest]);
}

async fn sample_inventory_deltas_add_up_and_the_late_one_is_flagged(via: Via) {
    let h = Harness::over(via);
    let bodies = fixture_bodies("sqs-inventory-deltas.json");
    let batch = h.handle(fixture("sqs-inventory-deltas.json"), &h.next_context()).await.expect("a response");
    assert!(batch.response.batch_item_failures.is_empty());
    let entity = entity_of(&bodies[0]).expect("entity");
    for body in &bodies {
        let record = h.record(&event_id_of(body).expect("valid")).await;
        assert_eq!(record.status, Status::Completed);
        assert_eq!(record.out_of_order, record.event_id.as_str() == "erp-adj-0002", "{}", record.event_id);
    }
    // 10 - 3 + 7 - 1, and the other fields of the latest event by order key (12:00:09, "damage"); the late
    // 12:00:02 "return" only added its 7.
    assert_eq!(h.mirror_state(&entity).await, Some(json!({"quantity": 13, "reason": "damage"})));
    assert!(h.head(&entity).await.needs_verification);
}

/// Every rule above runs twice: writing through the embedded mirror, and through the HTTP destination to a
/// loopback receiver that stores into the same mirror (signed requests, real HTTP/1.1).
macro_rules! over_every_destination {
    ($($rule:ident),* $(,)?) => {
        mod mirror {
            use crate::support::Via;
            $(
                #[tokio::test]
                async fn $rule() {
                    super::$rule(Via::Mirror).await
                }
            )*
        }
        mod http {
            use crate::support::Via;
            $(
                #[tokio::test]
                async fn $rule() {
                    super::$rule(Via::Http).await
                }
            )*
        }
    };
}

over_every_destination!(
    stale_event_is_dropped_for_the_applied_one,
    same_change_with_another_id_is_a_duplicate_of_the_applied_one,
    newer_event_waits_as_next_behind_the_inflight_one_and_its_message_is_acknowledged,
    newer_event_cancels_the_queued_next,
    event_between_the_inflight_and_the_next_one_is_dropped_for_the_next,
    event_older_than_the_inflight_one_is_dropped_for_it,
    same_change_as_the_inflight_one_is_its_duplicate,
    newer_event_takes_over_an_errored_inflight_one_and_cancels_it,
    newer_event_takes_over_after_the_lease_expires,
    completed_event_promotes_next_and_sends_a_message_naming_it,
    tie_is_applied_in_arrival_order_and_flagged,
    tie_is_never_dropped_as_duplicate,
    create_without_updated_at_is_ordered_before_any_timestamped_event,
    destination_holding_a_newer_local_edit_drops_the_event_for_that_record,
    create_without_updated_at_is_dropped_for_a_local_edit,
    retryable_error_marks_errored_and_returns_the_message_with_backoff,
    a_backoff_that_outlasts_its_claims_lease_puts_a_lease_past_the_retry_on_the_record_not_the_head,
    a_sweep_passes_over_holds_their_records_keep_and_re_drives_an_expired_hold_behind_them,
    a_retry_inside_its_hold_is_not_taken_over_while_the_heads_or_its_records_lease_runs,
    a_forced_reprocess_behind_a_crashed_holder_waits_a_lease_per_look_not_a_second,
    last_allowed_attempt_fails_the_event_and_dead_letters_its_message_and_releases_the_head,
    permanent_error_fails_at_once_and_releases_the_head,
    a_delay_the_destination_asks_for_replaces_the_backoff_up_to_backoff_max,
    a_throttled_attempt_waits_as_asked_and_does_not_use_up_the_events_attempts,
    a_throttled_attempt_waits_as_long_as_asked_even_beyond_backoff_max,
    a_forever_throttled_event_is_still_bounded_by_the_queues_receive_count,
    crashed_invocation_leaves_a_lease_and_the_redelivery_reclaims_with_attempt_plus_one,
    concurrent_duplicate_delivery_of_an_inflight_event_is_returned_for_later,
    destination_is_told_the_attempt_and_whether_an_earlier_attempts_outcome_is_unknown,
    destination_is_told_the_invocations_deadline_and_trace,
    redelivered_completed_event_is_acknowledged_without_effect,
    failed_event_resent_by_the_client_is_driven_again,
    completed_event_carries_no_error_of_an_earlier_attempt_and_its_history_keeps_them,
    same_client_event_id_with_other_content_is_rejected_with_conflicts_with,
    a_resend_under_a_client_event_id_with_another_updated_at_continues_as_first_recorded,
    a_client_event_id_used_again_for_another_entity_is_rejected_as_a_conflict,
    conflicting_message_racing_the_original_is_rejected_not_acknowledged_as_a_redelivery,
    conflicting_message_racing_an_errored_original_never_applies_its_own_content,
    conflicting_message_racing_a_queued_original_is_rejected_not_acknowledged_as_queued,
    in_order_events_are_all_applied_one_at_a_time,
    in_order_event_older_than_applied_is_flagged_out_of_order_and_applied,
    in_order_event_older_than_applied_is_flagged_even_when_it_waited_in_the_backlog,
    an_in_order_event_unparked_beside_the_same_change_under_another_id_ends_duplicate_and_leaves_the_backlog,
    in_order_events_past_their_heads_budget_are_parked_and_all_applied_in_order,
    in_order_event_beyond_a_full_backlog_is_not_stranded_when_its_receives_run_out,
    in_order_event_parked_where_the_unpark_listing_missed_it_is_redriven_by_the_sweeper,
    a_busy_entitys_queued_events_do_not_hide_an_older_stranded_one_from_the_sweep,
    message_dead_lettered_before_the_engine_ever_saw_it_is_not_lost,
    history_records_function_request_and_trace_for_every_attempt,
    sweeper_redrives_a_promoted_event_whose_message_was_lost,
    sweeper_redrives_a_crashed_event_whose_message_was_dead_lettered,
    a_settle_cut_short_before_the_head_write_is_finished_by_the_events_redelivery,
    a_settle_cut_short_whose_message_is_gone_is_finished_by_the_sweeper,
    a_claim_cut_short_after_its_head_write_holds_the_entity_until_its_lease_ends_then_is_claimed_again,
    an_event_recorded_received_under_a_claim_cut_short_is_canceled_by_a_newer_event_once_the_lease_ends,
    a_resubmission_of_a_failed_event_whose_claim_wrote_only_its_head_is_not_taken_for_a_settle_cut_short,
    an_attempt_whose_claim_record_landed_after_its_lease_ended_still_records_its_end,
    an_attempt_failing_past_its_hold_after_a_takeover_found_no_record_to_cancel_is_canceled_not_left_errored,
    an_attempt_failing_after_a_takeover_that_found_no_record_to_cancel_writes_the_cancel_itself,
    an_attempt_failing_past_its_hold_after_the_takeover_failed_takes_the_hold_again,
    a_same_change_under_another_id_waits_while_the_claim_it_matches_has_no_record,
    a_copy_recording_the_event_between_its_claims_two_writes_does_not_hand_the_claiming_delivery_back,
    a_claim_whose_record_write_finds_the_event_done_by_a_copy_after_its_lease_does_not_write_over_it,
    an_in_order_event_whose_queuing_was_cut_short_after_its_record_is_queued_again_by_its_redelivery,
    an_in_order_event_whose_park_was_cut_short_after_its_record_is_parked_again_by_its_redelivery,
    a_delivery_that_read_the_record_before_a_newer_claim_of_it_leaves_that_claim_running,
    a_reprocess_of_a_completed_event_tells_the_destination_to_look_before_writing,
    a_redrive_naming_another_entity_than_its_events_runs_against_its_own_entitys_head,
    a_round_after_a_lost_race_reads_the_record_and_the_head_again_together,
    the_echo_of_an_outbound_write_is_a_duplicate_of_the_outbound_event,
    a_change_made_on_the_other_side_after_the_write_is_applied_even_in_the_same_second,
    an_inbound_state_older_than_the_outbound_write_is_dropped_for_it,
    the_echo_of_a_create_is_recognised_under_the_id_the_external_system_gave,
    an_echo_that_arrives_while_the_write_is_in_flight_waits_and_ends_a_duplicate,
    a_copy_of_an_inbound_create_running_when_our_create_sets_its_guard_waits_for_it,
    sample_envelopes_are_all_applied,
    sample_out_of_order_events_keep_the_newest,
    sample_inventory_deltas_add_up_and_the_late_one_is_flagged,
);
