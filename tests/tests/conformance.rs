//! The conformance suite every backend passes: the ports' contracts, checked through trait objects only.
//!
//! [`suite`] holds one `pub async fn` per rule, taking [`Ports`]. The `#[tokio::test]`s below run them on the
//! embedded backend (a fresh temporary home with a [`ManualClock`] each) and, in [`aws`], on the AWS backend
//! (DynamoDB, S3 and SQS on the moto server that `scripts/with-moto.sh` starts; fresh, uniquely named resources
//! each). Time passes through [`Ports::pass`]: the manual clock moves, and where the queue runs on the server's
//! wall clock (SQS) the check really waits, so queue checks use second-scale timeouts. The destination checks
//! run on every built-in destination: the embedded [`Mirror`], the [`DynamoMirror`](synctrail::store::aws::DynamoMirror)
//! and, in [`http`], the HTTP destination delivering to a loopback receiver that stores through the embedded
//! mirror's rules; each behind the dependency rule [`DEPENDENCY_RULE`] (through [`Probed`]: the destination under
//! test, and its mirror to look inside).

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};
use std::sync::Arc;
use synctrail::destination::delta_fields::DeltaFields;
use synctrail::destination::dependencies::{DependencyRule, RequireDependencies};
use synctrail::destination::guard::MirrorRecord;
use synctrail::destination::{
    ApplyOutcome, Change, Destination, DestinationError, DestinationRecord, MirrorView, ReadError,
};
use synctrail::model::{
    content_hash, ByteRange, ContentHash, Direction, EntityHead, EntityKey, EventId, EventRecord, HistoryEntry,
    Inflight, Kind, OrderKey, PayloadRef, Slot, Status,
};
use synctrail::store::aws::DynamoMirror;
use synctrail::store::sqlite::{Embedded, EmbeddedOptions, Mirror};
use synctrail::store::{EventStore, PayloadStore, Queue, StoreError};
use synctrail::{Clock, ManualClock, Policy};

/// What the destination checks need beyond [`Destination`]: a way to edit locally and to look inside.
#[async_trait]
pub trait DestinationProbe: Destination {
    /// Edits `entity` directly in the destination, as a person would.
    async fn record_local_edit(&self, entity: &EntityKey, state: Value, modified_at: DateTime<Utc>);
    /// The entity's current state (`None` when never written).
    async fn state(&self, entity: &EntityKey) -> Option<Value>;
    /// How many effects `event` had.
    async fn effects_of(&self, event: &EventId) -> usize;
}

/// The methods both reference mirrors offer beyond [`Destination`] (same names and types on each).
#[async_trait]
pub trait MirrorLike: Destination {
    /// `record_local_edit`.
    async fn local_edit(&self, entity: &EntityKey, state: Value, at: DateTime<Utc>) -> Result<(), StoreError>;
    /// `get`.
    async fn row(&self, entity: &EntityKey) -> Result<Option<MirrorRecord>, StoreError>;
    /// `list`.
    async fn rows(&self, prefix: Option<&str>, limit: usize) -> Result<Vec<MirrorRecord>, StoreError>;
    /// `effects`.
    async fn all_effects(&self) -> Result<Vec<(EventId, String)>, StoreError>;
    /// `count`.
    async fn row_count(&self) -> Result<u64, StoreError>;
}

/// Implements [`MirrorLike`] by calling the mirror's own methods.
macro_rules! mirror_like {
    ($($mirror:ty),*) => {$(
        #[async_trait]
        impl MirrorLike for $mirror {
            async fn local_edit(&self, entity: &EntityKey, state: Value, at: DateTime<Utc>) -> Result<(), StoreError> {
                self.record_local_edit(entity, state, at).await
            }

            async fn row(&self, entity: &EntityKey) -> Result<Option<MirrorRecord>, StoreError> {
                self.get(entity).await
            }

            async fn rows(&self, prefix: Option<&str>, limit: usize) -> Result<Vec<MirrorRecord>, StoreError> {
                self.list(prefix, limit).await
            }

            async fn all_effects(&self) -> Result<Vec<(EventId, String)>, StoreError> {
                self.effects().await
            }

            async fn row_count(&self) -> Result<u64, StoreError> {
                self.count().await
            }
        }
    )*};
}

mirror_like!(Mirror, DynamoMirror);

#[async_trait]
impl<M: MirrorLike> DestinationProbe for M {
    async fn record_local_edit(&self, entity: &EntityKey, state: Value, modified_at: DateTime<Utc>) {
        self.local_edit(entity, state, modified_at).await.expect("local edit");
    }

    async fn state(&self, entity: &EntityKey) -> Option<Value> {
        self.row(entity).await.expect("mirror read").map(|r| r.state)
    }

    async fn effects_of(&self, event: &EventId) -> usize {
        self.all_effects().await.expect("effects").iter().filter(|(id, _)| id == event).count()
    }
}

/// The dependency rule every destination of the suite applies: an `inventory_level` needs its `product_id`'s
/// product first.
pub const DEPENDENCY_RULE: &str = "inventory_level.product_id=product";

/// `mirror` behind [`DEPENDENCY_RULE`].
pub fn with_dependency_rule(mirror: Arc<dyn MirrorView>) -> Arc<dyn Destination> {
    let rule = DependencyRule::parse(DEPENDENCY_RULE).expect("a valid rule");
    Arc::new(RequireDependencies::new(mirror.clone(), mirror, vec![rule]))
}

/// A destination under test (`apply`) and the mirror its changes end up in (to edit locally and look inside).
pub struct Probed {
    /// What the checks apply changes through.
    pub apply: Arc<dyn Destination>,
    /// Where they land.
    pub mirror: Arc<dyn MirrorView>,
}

impl Probed {
    /// `mirror` behind the dependency rule, as the destination under test.
    pub fn mirror(mirror: Arc<dyn MirrorView>) -> Arc<Self> {
        Arc::new(Self { apply: with_dependency_rule(mirror.clone()), mirror })
    }
}

#[async_trait]
impl Destination for Probed {
    async fn apply(&self, change: &Change<'_>) -> Result<ApplyOutcome, DestinationError> {
        self.apply.apply(change).await
    }

    async fn read(&self, entity: &EntityKey) -> Result<Option<DestinationRecord>, ReadError> {
        self.apply.read(entity).await
    }
}

#[async_trait]
impl DestinationProbe for Probed {
    async fn record_local_edit(&self, entity: &EntityKey, state: Value, modified_at: DateTime<Utc>) {
        self.mirror.record_local_edit(entity, state, modified_at).await.expect("local edit");
    }

    async fn state(&self, entity: &EntityKey) -> Option<Value> {
        self.mirror.get(entity).await.expect("mirror read").map(|r| r.state)
    }

    async fn effects_of(&self, event: &EventId) -> usize {
        self.mirror.effects().await.expect("effects").iter().filter(|(id, _)| id == event).count()
    }
}

/// Raw access to stored payload objects, to corrupt them on purpose.
#[async_trait]
pub trait PayloadTamper: Send + Sync {
    /// The stored (compressed) object under `key`.
    async fn read_raw(&self, key: &str) -> Vec<u8>;
    /// Replaces the stored object under `key`.
    async fn write_raw(&self, key: &str, bytes: Vec<u8>);
}

/// What a backend's queue can promise beyond the port's common ground.
#[derive(Debug, Clone, Copy)]
pub struct QueueTraits {
    /// Visibility and delays run on the server's wall clock (SQS): time passes only by really waiting.
    pub server_clock: bool,
    /// Messages come back strictly oldest first (SQS standard queues: best effort only).
    pub ordered: bool,
    /// `depth().oldest_sent_at` is reported (SQS: a CloudWatch metric only).
    pub reports_oldest: bool,
    /// Concurrent conditional writes to one item are isolated (DynamoDB, SQLite). moto 5.2.1 serves requests on
    /// parallel threads without isolating them: two conditional puts of one version can both succeed (seen here
    /// under load); there the writers of the contention check take turns instead.
    pub isolated_writes: bool,
    /// Trace headers survive a batch send. AWS keeps `AWSTraceHeader` on `SendMessageBatch`; moto 5.2.1 drops the
    /// `MessageSystemAttributes` of batch entries (it keeps them on `SendMessage`), so the test server can't show it.
    pub batch_trace_headers: bool,
}

/// One backend's adapters, behind the ports.
pub struct Ports {
    /// Event records and heads.
    pub store: Arc<dyn EventStore>,
    /// The queue (built with `max_receives` = [`MAX_RECEIVES`]).
    pub queue: Arc<dyn Queue>,
    /// Payloads.
    pub payloads: Arc<dyn PayloadStore>,
    /// The destination, where the backend has one.
    pub destination: Option<Arc<dyn DestinationProbe>>,
    /// The clock every adapter that takes one reads.
    pub clock: Arc<ManualClock>,
    /// What the queue promises.
    pub queue_traits: QueueTraits,
    /// The event store reads a batch's events and heads ahead in one go (DynamoDB: `BatchGetItem`); without it
    /// (the embedded store: a local read costs nothing) `read_ahead` answers `None` and each is read when wanted.
    pub store_reads_ahead: bool,
    /// Raw access to payload objects.
    pub tamper: Arc<dyn PayloadTamper>,
}

impl Ports {
    /// Lets `by` pass: the manual clock moves; with a server-clock queue the check also really waits (plus a
    /// small margin, so a deadline `by` after the last call is surely over).
    pub async fn pass(&self, by: Duration) {
        self.clock.advance(by);
        if self.queue_traits.server_clock {
            let wait = by.to_std().unwrap_or_default() + std::time::Duration::from_millis(150);
            tokio::time::sleep(wait).await;
        }
    }

    /// Now, on the clock the queue runs on.
    pub fn now(&self) -> DateTime<Utc> {
        if self.queue_traits.server_clock {
            Utc::now()
        } else {
            self.clock.now()
        }
    }

    /// The destination; only called by the destination checks.
    pub fn destination(&self) -> &dyn DestinationProbe {
        self.destination.as_deref().expect("this backend has no destination adapter")
    }
}

/// The `max_receives` the suite expects the queue to be built with.
pub const MAX_RECEIVES: u32 = 3;

/// Builders of model values for the checks.
pub mod build {
    use super::*;

    /// 2026-05-01T12:00:00Z: where the suite's clock starts.
    pub fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-05-01T12:00:00Z").expect("valid time").with_timezone(&Utc)
    }

    /// `t0 + seconds`.
    pub fn at(seconds: i64) -> DateTime<Utc> {
        t0() + Duration::seconds(seconds)
    }

    /// `default/shop/<entity_type>/<id>`.
    pub fn entity_of(entity_type: &str, id: &str) -> EntityKey {
        EntityKey::new("default", "shop", entity_type, id).expect("valid entity key")
    }

    /// `default/shop/product/<id>`.
    pub fn entity(id: &str) -> EntityKey {
        entity_of("product", id)
    }

    /// An event id.
    pub fn id(text: &str) -> EventId {
        EventId::parse(text).expect("valid event id")
    }

    /// The order key of an event updated `seconds` after t0.
    pub fn order(seconds: i64) -> OrderKey {
        OrderKey::at(at(seconds), 0).expect("representable time")
    }

    /// A `received` event record (version 0: not stored yet).
    pub fn record(
        event_id: &str,
        entity: Option<&EntityKey>,
        order: Option<OrderKey>,
        received_at: DateTime<Utc>,
    ) -> EventRecord {
        EventRecord {
            event_id: id(event_id),
            client_event_id: true,
            entity: entity.cloned(),
            order,
            kind: Some(Kind::Upsert),
            direction: None,
            content_hash: Some(ContentHash::of(event_id.as_bytes())),
            payload: PayloadRef {
                key: format!("payloads/00/{event_id}.zst"),
                sha256: "00".repeat(32),
                size: 2,
                range: None,
            },
            delivery_id: None,
            conflicts_with: None,
            caused_by: None,
            status: Status::Received,
            dropped_for: None,
            duplicate_of: None,
            canceled_by: None,
            waiting_for: None,
            waiting_since: None,
            attempt: 0,
            attempt_base: 0,
            error: None,
            tie: false,
            out_of_order: false,
            forced: false,
            parked: false,
            redelivered: 0,
            external_at: order.and_then(|o| o.updated_at()),
            received_at,
            read_started_at: None,
            write_started_at: None,
            write_outcome_unknown: false,
            completed_at: None,
            written: None,
            updated_at: received_at,
            lease_until: None,
            last_message_id: None,
            expires_at: received_at + Duration::days(400),
            history_folded: 0,
            history_apart: None,
            replay_kept: None,
            history: Vec::new(),
            version: 0,
        }
    }

    /// The record as stored by `Write::event` (version bumped).
    pub fn stored(mut record: EventRecord) -> EventRecord {
        record.version += 1;
        record
    }

    /// A head with `event_id` in flight until `lease_until` (version 0: not stored yet).
    pub fn head_in_flight(entity: &EntityKey, event_id: &str, lease_until: DateTime<Utc>, fence: u64) -> EntityHead {
        let mut head = EntityHead::empty(entity.clone(), t0());
        head.inflight = Some(Inflight {
            slot: Slot { event_id: id(event_id), order: order(0), content_hash: ContentHash::of(b"x") },
            lease_until,
            fence,
            errored: false,
            promoted: false,
            attempt: 1,
            earliest_lease_until: None,
        });
        head.fence = fence;
        head
    }

    /// A `latest_wins` snapshot change.
    pub fn snapshot<'a>(
        event_id: &'a EventId,
        entity: &'a EntityKey,
        seconds: i64,
        payload: &'a Value,
        fence: u64,
    ) -> Change<'a> {
        Change {
            event_id,
            entity,
            order: order(seconds),
            updated_at: Some(at(seconds)),
            content_hash: content_hash(Kind::Upsert, payload),
            kind: Kind::Upsert,
            direction: Direction::Inbound,
            payload,
            fence,
            policy: Policy::LatestWins,
            forced: false,
            attempt: 1,
            previous_attempt_unknown: false,
            deadline: None,
            trace_id: None,
        }
    }

    /// The delta fields both mirrors are built with: `inventory_adjustment` adds `delta` into `quantity` and
    /// `reserved_delta` into `reserved`; every other `in_order` type has the default (`delta` into `quantity`).
    pub fn delta_fields() -> DeltaFields {
        DeltaFields::parse("inventory_adjustment.delta=quantity,inventory_adjustment.reserved_delta=reserved")
            .expect("valid delta fields")
    }

    /// An `in_order` delta change.
    pub fn delta<'a>(event_id: &'a EventId, entity: &'a EntityKey, seconds: i64, payload: &'a Value) -> Change<'a> {
        Change { policy: Policy::InOrder, ..snapshot(event_id, entity, seconds, payload, 1) }
    }
}

/// The checks, one per rule of the ports' contracts.
pub mod suite {
    use super::build::*;
    use super::*;
    use synctrail::store::{EventQuery, Expect, OutgoingMessage, Write};

    fn is_conflict<T>(result: &Result<T, StoreError>) -> bool {
        matches!(result, Err(StoreError::Conflict(_)))
    }

    // ---- EventStore ----

    /// A committed event and head read back as written, with their new versions.
    pub async fn a_stored_event_reads_back_unchanged(p: &Ports) {
        let e = entity("a");
        let record = record("ev-1", Some(&e), Some(order(1)), p.clock.now());
        let head = head_in_flight(&e, "ev-1", at(30), 1);
        p.store.commit(vec![Write::event(record.clone()), Write::head(head.clone())]).await.expect("commit");
        assert_eq!(p.store.get_event(&id("ev-1")).await.expect("get"), Some(stored(record)));
        let mut expected_head = head;
        expected_head.version = 1;
        assert_eq!(p.store.get_head(&e).await.expect("get head"), Some(expected_head));
        assert_eq!(p.store.get_event(&id("ev-none")).await.expect("get"), None);
        assert_eq!(p.store.get_head(&entity("none")).await.expect("get head"), None);
    }

    /// Inserting an event that exists fails with `Conflict` and leaves the stored one alone.
    pub async fn inserting_an_existing_event_is_a_conflict(p: &Ports) {
        let first = record("ev-1", Some(&entity("a")), Some(order(1)), p.clock.now());
        p.store.commit(vec![Write::event(first.clone())]).await.expect("first insert");
        let mut second = first.clone();
        second.status = Status::Rejected;
        assert!(is_conflict(&p.store.commit(vec![Write::event(second)]).await));
        assert_eq!(p.store.get_event(&id("ev-1")).await.expect("get"), Some(stored(first)));
    }

    /// Inserting a head that exists fails with `Conflict`.
    pub async fn inserting_an_existing_head_is_a_conflict(p: &Ports) {
        let e = entity("a");
        let head = EntityHead::empty(e.clone(), p.clock.now());
        p.store.commit(vec![Write::head(head.clone())]).await.expect("first insert");
        assert!(is_conflict(&p.store.commit(vec![Write::head(head)]).await));
    }

    /// An update expecting a version the item no longer has fails with `Conflict`.
    pub async fn an_update_of_a_stale_version_is_a_conflict(p: &Ports) {
        let original = record("ev-1", Some(&entity("a")), Some(order(1)), p.clock.now());
        p.store.commit(vec![Write::event(original)]).await.expect("insert");
        let v1 = p.store.get_event(&id("ev-1")).await.expect("get").expect("stored");
        let mut processing = v1.clone();
        processing.status = Status::Processing;
        p.store.commit(vec![Write::event(processing)]).await.expect("update v1 → v2");
        let mut stale = v1;
        stale.status = Status::Dropped;
        assert!(is_conflict(&p.store.commit(vec![Write::event(stale)]).await));
        let now = p.store.get_event(&id("ev-1")).await.expect("get").expect("stored");
        assert_eq!((now.status, now.version), (Status::Processing, 2));
        // Updating an item that was never stored is a conflict too.
        let ghost = Write::Event {
            record: Box::new(record("ev-ghost", None, None, p.clock.now())),
            expect: Expect::Version(1),
        };
        assert!(is_conflict(&p.store.commit(vec![ghost]).await));
        assert_eq!(p.store.get_event(&id("ev-ghost")).await.expect("get"), None);
    }

    /// An update may give an event the entity and order it lacked (and later ones change only its status): it is
    /// listed under that entity, and by status, with each update.
    pub async fn an_update_that_gives_an_event_its_entity_lists_it_under_that_entity(p: &Ports) {
        let e = entity("a");
        p.store.commit(vec![Write::event(record("ev-1", None, None, p.clock.now()))]).await.expect("insert");
        let by_entity = EventQuery { entity: Some(e.clone()), ..EventQuery::default() };
        assert!(p.store.list_events(&by_entity).await.expect("list").is_empty());
        let mut placed = p.store.get_event(&id("ev-1")).await.expect("get").expect("stored");
        (placed.entity, placed.order, placed.status) = (Some(e.clone()), Some(order(1)), Status::Processing);
        p.store.commit(vec![Write::event(placed)]).await.expect("update v1 → v2");
        let listed = p.store.list_events(&by_entity).await.expect("list");
        assert_eq!(listed.iter().map(|r| (r.event_id.as_str(), r.version)).collect::<Vec<_>>(), [("ev-1", 2)]);
        let mut completed = listed[0].clone();
        completed.status = Status::Completed;
        p.store.commit(vec![Write::event(completed)]).await.expect("update v2 → v3");
        let listed = p.store.list_events(&by_entity).await.expect("list");
        assert_eq!(listed.iter().map(|r| (r.status, r.version)).collect::<Vec<_>>(), [(Status::Completed, 3)]);
        let completed = EventQuery { status: Some(Status::Completed), ..EventQuery::default() };
        assert_eq!(p.store.list_events(&completed).await.expect("list").len(), 1);
        let processing = EventQuery { status: Some(Status::Processing), ..EventQuery::default() };
        assert!(p.store.list_events(&processing).await.expect("list").is_empty());
    }

    /// When one expectation fails, none of the commit's writes happen.
    pub async fn a_failed_expectation_rolls_back_the_whole_commit(p: &Ports) {
        let e = entity("a");
        p.store.commit(vec![Write::head(EntityHead::empty(e.clone(), p.clock.now()))]).await.expect("head v1");
        let head = p.store.get_head(&e).await.expect("get").expect("stored");
        let mut claimed = head.clone();
        claimed.fence = 7;
        let new_event = record("ev-new", Some(&e), Some(order(1)), p.clock.now());
        let stale_head = Write::Head { head: Box::new(head.clone()), expect: Expect::Version(5) };
        let result = p.store.commit(vec![Write::event(new_event), Write::head(claimed), stale_head]).await;
        assert!(is_conflict(&result), "{result:?}");
        assert_eq!(p.store.get_event(&id("ev-new")).await.expect("get"), None, "the insert was rolled back");
        assert_eq!(p.store.get_head(&e).await.expect("get"), Some(head), "the head update was rolled back");
    }

    /// `commit_each` applies its writes in order and stops at the first whose condition fails: the writes it
    /// reports applied are stored, that one and those after it are not (a backend that commits all or none
    /// reports none applied).
    pub async fn writes_committed_each_in_turn_stop_at_the_first_that_fails(p: &Ports) {
        let (a, b) = (entity("a"), entity("b"));
        let first = record("ev-1", Some(&a), Some(order(1)), at(1));
        let both = vec![Write::event(first), Write::head(EntityHead::empty(a.clone(), at(1)))];
        p.store.commit_each(both).await.expect("every condition holds");
        let mut done = p.store.get_event(&id("ev-1")).await.expect("get").expect("stored");
        assert_eq!(p.store.get_head(&a).await.expect("get").map(|h| h.version), Some(1));
        done.status = Status::Completed;
        let stale_head =
            Write::Head { head: Box::new(EntityHead::empty(a.clone(), at(2))), expect: Expect::Version(5) };
        let after = Write::head(EntityHead::empty(b.clone(), at(2)));
        let stopped = p.store.commit_each(vec![Write::event(done), stale_head, after]).await.expect_err("a stale head");
        assert!(matches!(stopped.error, StoreError::Conflict(_)), "{stopped:?}");
        assert!(stopped.applied <= 1, "{stopped:?}");
        let stored = p.store.get_event(&id("ev-1")).await.expect("get").expect("stored");
        assert_eq!(stored.status == Status::Completed, stopped.applied == 1, "stored exactly when reported applied");
        assert_eq!(stored.version, 1 + stopped.applied as u64);
        assert_eq!(p.store.get_head(&a).await.expect("get").map(|h| h.version), Some(1), "the failing write");
        assert_eq!(p.store.get_head(&b).await.expect("get"), None, "nothing after it");
    }

    /// One invocation's history entries, with a request id and trace id of its own (random, as Lambda's are).
    fn invocation_entries(record: &EventRecord, statuses: &[Status], seconds: i64) -> Vec<HistoryEntry> {
        let request_id = hex::encode(rand::random::<[u8; 16]>());
        let trace_id = format!("Root=1-6a000000-{}", hex::encode(rand::random::<[u8; 12]>()));
        let entry = |status: &Status| HistoryEntry {
            status: *status,
            at: at(seconds),
            attempt: record.attempt,
            function: Some("synctrail-processor:$LATEST".to_owned()),
            request_id: Some(request_id.clone()),
            trace_id: Some(trace_id.clone()),
            note: None,
        };
        statuses.iter().map(entry).collect()
    }

    /// Records `ev-retried` (its entity's head too) with its first entry; returns the history written so far.
    pub async fn insert_retried_event(store: &dyn EventStore) -> Vec<HistoryEntry> {
        let e = entity("retried");
        let mut record = record("ev-retried", Some(&e), Some(order(1)), at(1));
        record.history = invocation_entries(&record, &[Status::Received], 1);
        let whole = record.history.clone();
        store.commit(vec![Write::event(record)]).await.expect("insert");
        store.commit(vec![Write::head(EntityHead::empty(e, at(1)))]).await.expect("head");
        whole
    }

    /// Writes `retries` of `ev-retried` as the engine writes them (each delivery reads the record, writes its
    /// claim, then its failure from its own copy: alone, each in turn, or with the head in one commit), each from
    /// an invocation of its own, appending the entries written to `whole`.
    pub async fn write_retries(
        store: &dyn EventStore,
        retries: std::ops::RangeInclusive<u32>,
        whole: &mut Vec<HistoryEntry>,
    ) {
        for retry in retries {
            let mut read = store.get_event(&id("ev-retried")).await.expect("get").expect("stored");
            read.attempt = retry;
            let entries = invocation_entries(&read, &[Status::Processing, Status::Errored], 10 * i64::from(retry));
            let (claim, failure) = (entries[0].clone(), entries[1].clone());
            read.status = Status::Processing;
            read.history.push(claim.clone());
            store.commit(vec![Write::event(read.clone())]).await.expect("the claim");
            read.version += 1;
            read.status = Status::Errored;
            read.history.push(failure.clone());
            match retry % 3 {
                0 => store.commit(vec![Write::event(read)]).await.expect("the failure"),
                1 => store.commit_each(vec![Write::event(read)]).await.expect("the failure, each in turn"),
                _ => {
                    let head = store.get_head(&entity("retried")).await.expect("get head").expect("head");
                    store.commit(vec![Write::event(read), Write::head(head)]).await.expect("with its head");
                }
            }
            whole.extend([claim, failure]);
        }
    }

    /// An event retried thirty times ([`write_retries`]): the whole history reads back in order with
    /// `get_event_with_history`, and `get_event` holds its newest entries, the others counted as kept apart. A
    /// write from a stale copy with entries of its own changes nothing.
    pub async fn a_long_history_reads_back_whole_and_the_record_keeps_its_newest_entries(p: &Ports) {
        let mut whole = insert_retried_event(p.store.as_ref()).await;
        write_retries(p.store.as_ref(), 1..=30, &mut whole).await;
        let mut stale = p.store.get_event(&id("ev-retried")).await.expect("get").expect("stored");
        p.store.commit(vec![Write::event(stale.clone())]).await.expect("one more write");
        stale.history.extend(invocation_entries(&stale, &[Status::Processing, Status::Failed], 999));
        let lost = p.store.commit(vec![Write::event(stale)]).await;
        assert!(is_conflict(&lost), "{lost:?}");

        let read_whole = p.store.get_event_with_history(&id("ev-retried")).await.expect("get").expect("stored");
        assert_eq!(read_whole.history, whole, "the whole history, in order");
        assert_eq!(read_whole.history_apart, None);
        let newest = p.store.get_event(&id("ev-retried")).await.expect("get").expect("stored");
        let apart = newest.history_apart.as_ref().map_or(0, |a| a.entries as usize);
        assert_eq!(apart + newest.history.len(), whole.len(), "every entry is either apart or in the record");
        assert_eq!(newest.history[..], whole[apart..], "the record holds the newest entries");
        assert_eq!((newest.attempt, newest.version), (30, 62));
        assert_eq!(p.store.get_event_with_history(&id("ev-none")).await.expect("get"), None);
    }

    /// Eight writers compare-and-set the same head version at once: exactly one wins.
    pub async fn concurrent_commits_on_one_head_let_exactly_one_win(p: &Ports) {
        let e = entity("contended");
        p.store.commit(vec![Write::head(EntityHead::empty(e.clone(), p.clock.now()))]).await.expect("head v1");
        let head = p.store.get_head(&e).await.expect("get").expect("stored");
        let mut tasks = tokio::task::JoinSet::new();
        for writer in 1..=8u64 {
            let store = Arc::clone(&p.store);
            let mut mine = head.clone();
            mine.fence = writer;
            let write = async move { (writer, store.commit(vec![Write::head(mine)]).await) };
            if p.queue_traits.isolated_writes {
                tasks.spawn(write);
            } else {
                let done = write.await;
                tasks.spawn(async move { done });
            }
        }
        let mut winners = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            let (writer, result) = joined.expect("task");
            match result {
                Ok(()) => winners.push(writer),
                Err(StoreError::Conflict(_)) => {}
                Err(other) => panic!("writer {writer}: unexpected {other:?}"),
            }
        }
        assert_eq!(winners.len(), 1, "winners: {winners:?}");
        let stored = p.store.get_head(&e).await.expect("get").expect("stored");
        assert_eq!((stored.version, stored.fence), (2, winners[0]));
    }

    /// One entity's events list in order-key order, whatever order they arrived in.
    pub async fn events_of_one_entity_list_in_order_key_order(p: &Ports) {
        let e = entity("a");
        let writes = [("ev-c", 30, 1), ("ev-a", 10, 2), ("ev-b", 20, 3)]
            .into_iter()
            .map(|(name, o, r)| Write::event(record(name, Some(&e), Some(order(o)), at(r))))
            .chain([Write::event(record("ev-other", Some(&entity("b")), Some(order(5)), at(4)))])
            .collect();
        p.store.commit(writes).await.expect("commit");
        let listed = p.store.list_events(&EventQuery { entity: Some(e), ..Default::default() }).await.expect("list");
        let ids: Vec<&str> = listed.iter().map(|r| r.event_id.as_str()).collect();
        assert_eq!(ids, ["ev-a", "ev-b", "ev-c"]);
    }

    /// An entity's parked events list in order-key order, without its other events (queued in the head, done) or
    /// another entity's, up to the limit; an event leaving `queued` leaves the listing.
    pub async fn parked_events_of_one_entity_list_in_order_key_order(p: &Ports) {
        let (e, other) = (entity("a"), entity("b"));
        let parked = |name: &str, e: &EntityKey, o: i64, r: i64| {
            let mut r = record(name, Some(e), Some(order(o)), at(r));
            r.status = Status::Queued;
            r.parked = true;
            r
        };
        let mut in_the_backlog = record("ev-backlog", Some(&e), Some(order(5)), at(5));
        in_the_backlog.status = Status::Queued;
        let mut done = parked("ev-done", &e, 25, 6);
        done.status = Status::Completed;
        let writes = vec![
            Write::event(parked("ev-c", &e, 30, 1)),
            Write::event(parked("ev-a", &e, 10, 2)),
            Write::event(parked("ev-b", &e, 20, 3)),
            Write::event(parked("ev-other", &other, 15, 4)),
            Write::event(in_the_backlog),
            Write::event(done),
        ];
        p.store.commit(writes).await.expect("commit");
        let ids = |records: Vec<EventRecord>| records.into_iter().map(|r| r.event_id.to_string()).collect::<Vec<_>>();
        assert_eq!(ids(p.store.parked_events(&e, 0).await.expect("list")), ["ev-a", "ev-b", "ev-c"]);
        assert_eq!(ids(p.store.parked_events(&e, 2).await.expect("list")), ["ev-a", "ev-b"]);
        assert_eq!(ids(p.store.parked_events(&other, 0).await.expect("list")), ["ev-other"]);
        let mut claimed = stored(parked("ev-a", &e, 10, 2));
        let entry = HistoryEntry {
            status: Status::Processing,
            at: at(7),
            attempt: 1,
            function: None,
            request_id: None,
            trace_id: None,
            note: None,
        };
        claimed.transition(entry).expect("a queued event may be claimed");
        assert!(!claimed.parked, "leaving queued clears the flag");
        p.store.commit(vec![Write::event(claimed)]).await.expect("claim");
        assert_eq!(ids(p.store.parked_events(&e, 0).await.expect("list")), ["ev-b", "ev-c"]);
    }

    /// Without an entity, events list newest received first, filtered by status, source and time window.
    pub async fn events_list_newest_first_with_filters(p: &Ports) {
        let github = EntityKey::new("default", "github", "issue", "1").expect("key");
        let mut failed = record("ev-3", Some(&entity("a")), Some(order(3)), at(3));
        failed.status = Status::Failed;
        let writes = vec![
            Write::event(record("ev-1", Some(&entity("a")), Some(order(1)), at(1))),
            Write::event(record("ev-2", Some(&github), Some(order(2)), at(2))),
            Write::event(failed),
            Write::event(record("ev-4", None, None, at(4))),
        ];
        p.store.commit(writes).await.expect("commit");
        let ids = |records: Vec<EventRecord>| records.into_iter().map(|r| r.event_id.to_string()).collect::<Vec<_>>();
        let all = p.store.list_events(&EventQuery::default()).await.expect("list");
        assert_eq!(ids(all), ["ev-4", "ev-3", "ev-2", "ev-1"]);
        let limited = p.store.list_events(&EventQuery { limit: 2, ..Default::default() }).await.expect("list");
        assert_eq!(ids(limited), ["ev-4", "ev-3"]);
        let by_status = EventQuery { status: Some(Status::Failed), ..Default::default() };
        assert_eq!(ids(p.store.list_events(&by_status).await.expect("list")), ["ev-3"]);
        let by_source = EventQuery { source: Some("github".into()), ..Default::default() };
        assert_eq!(ids(p.store.list_events(&by_source).await.expect("list")), ["ev-2"]);
        let window = EventQuery { since: Some(at(2)), until: Some(at(4)), ..Default::default() };
        assert_eq!(ids(p.store.list_events(&window).await.expect("list")), ["ev-3", "ev-2"]);
        let count = |query: EventQuery| async move { p.store.count_events(&query).await.expect("count") };
        assert_eq!(count(EventQuery { limit: 2, ..Default::default() }).await, 4, "counted past the limit");
        assert_eq!(count(by_status).await, 1);
        assert_eq!(count(by_source).await, 1);
        assert_eq!(count(window).await, 2);
    }

    /// However a query selects events (a status, a status and a window or source, an entity, an entity and a
    /// window or status, a dependency, `processing`, none of these), counting them finds what listing them without
    /// a limit lists.
    pub async fn events_are_counted_as_they_are_listed(p: &Ports) {
        let (a, b) = (entity("a"), entity("b"));
        let github = EntityKey::new("default", "github", "issue", "1").expect("key");
        let with = |name: &str, e: Option<&EntityKey>, seconds: i64, status: Status| {
            let mut r = record(name, e, e.map(|_| order(seconds)), at(seconds));
            r.status = status;
            r
        };
        let mut waiting = with("ev-wait", Some(&b), 7, Status::Waiting);
        waiting.waiting_for = Some(a.to_string());
        waiting.waiting_since = Some(at(7));
        let writes = vec![
            Write::event(with("ev-1", Some(&a), 1, Status::Completed)),
            Write::event(with("ev-2", Some(&a), 2, Status::Failed)),
            Write::event(with("ev-3", Some(&a), 3, Status::Completed)),
            Write::event(with("ev-4", Some(&b), 4, Status::Completed)),
            Write::event(with("ev-5", Some(&github), 5, Status::Completed)),
            Write::event(with("ev-6", None, 6, Status::Completed)),
            Write::event(waiting),
            Write::event(with("ev-run", Some(&github), 8, Status::Processing)),
            Write::head(head_in_flight(&github, "ev-run", at(60), 1)),
        ];
        p.store.commit(writes).await.expect("commit");
        let completed = EventQuery { status: Some(Status::Completed), ..EventQuery::default() };
        let of_a = EventQuery { entity: Some(a.clone()), ..EventQuery::default() };
        let queries = [
            (completed.clone(), 5),
            (EventQuery { since: Some(at(3)), until: Some(at(6)), ..completed.clone() }, 3),
            (EventQuery { since: Some(at(4)), ..completed.clone() }, 3),
            (EventQuery { until: Some(at(4)), ..completed.clone() }, 2),
            (EventQuery { source: Some("github".into()), ..completed.clone() }, 1),
            (EventQuery { limit: 2, ..completed.clone() }, 5),
            (of_a.clone(), 3),
            (EventQuery { since: Some(at(2)), ..of_a.clone() }, 2),
            (EventQuery { status: Some(Status::Completed), ..of_a.clone() }, 2),
            (EventQuery { waiting_for: Some(a.to_string()), ..EventQuery::default() }, 1),
            (EventQuery { waiting_for: Some(b.to_string()), ..EventQuery::default() }, 0),
            (EventQuery { status: Some(Status::Processing), ..EventQuery::default() }, 1),
            (EventQuery::default(), 8),
            (EventQuery { source: Some("shop".into()), since: Some(at(2)), ..EventQuery::default() }, 4),
        ];
        for (query, expected) in queries {
            let listed = p.store.list_events(&EventQuery { limit: 0, ..query.clone() }).await.expect("list").len();
            let counted = p.store.count_events(&query).await.expect("count");
            assert_eq!((listed as u64, counted), (expected, expected), "listed, counted: {query:?}");
        }
    }

    /// A time window that ends where or before it starts selects nothing, whatever else the query names: listed
    /// empty and counted 0, not refused.
    pub async fn an_empty_time_window_lists_and_counts_nothing(p: &Ports) {
        let e = entity("a");
        let mut failed = record("ev-2", Some(&e), Some(order(2)), at(2));
        failed.status = Status::Failed;
        let writes = vec![
            Write::event(record("ev-1", Some(&e), Some(order(1)), at(1))),
            Write::event(failed),
            Write::event(record("ev-3", Some(&e), Some(order(3)), at(3))),
        ];
        p.store.commit(writes).await.expect("commit");
        let shapes = [
            EventQuery { status: Some(Status::Failed), ..EventQuery::default() },
            EventQuery { status: Some(Status::Received), source: Some("shop".into()), ..EventQuery::default() },
            EventQuery { status: Some(Status::Processing), ..EventQuery::default() },
            EventQuery { entity: Some(e.clone()), ..EventQuery::default() },
            EventQuery { entity: Some(e.clone()), status: Some(Status::Received), ..EventQuery::default() },
            EventQuery { waiting_for: Some(e.to_string()), ..EventQuery::default() },
            EventQuery::default(),
        ];
        for (since, until) in [(at(3), at(1)), (at(2), at(2))] {
            for shape in &shapes {
                let query = EventQuery { since: Some(since), until: Some(until), ..shape.clone() };
                let listed = p.store.list_events(&query).await;
                assert!(listed.as_ref().is_ok_and(Vec::is_empty), "{query:?}: {listed:?}");
                let counted = p.store.count_events(&query).await;
                assert!(matches!(counted, Ok(0)), "{query:?}: {counted:?}");
            }
        }
        // The window one nanosecond wide at ev-2 holds it.
        let narrow = EventQuery {
            status: Some(Status::Failed),
            since: Some(at(2)),
            until: Some(at(2) + Duration::nanoseconds(1)),
            ..EventQuery::default()
        };
        let listed: Vec<String> =
            p.store.list_events(&narrow).await.expect("list").into_iter().map(|r| r.event_id.to_string()).collect();
        assert_eq!(listed, ["ev-2"]);
        assert_eq!(p.store.count_events(&narrow).await.expect("count"), 1);
    }

    /// Events are counted per status.
    pub async fn events_are_counted_by_status(p: &Ports) {
        let mut writes = Vec::new();
        for (i, status) in
            [Status::Received, Status::Completed, Status::Completed, Status::Failed].into_iter().enumerate()
        {
            let mut r = record(&format!("ev-{i}"), Some(&entity("a")), Some(order(i as i64)), at(i as i64));
            r.status = status;
            writes.push(Write::event(r));
        }
        p.store.commit(writes).await.expect("commit");
        let counts = p.store.count_by_status().await.expect("count");
        assert_eq!(counts.get(&Status::Completed), Some(&2));
        assert_eq!(counts.get(&Status::Received), Some(&1));
        assert_eq!(counts.get(&Status::Failed), Some(&1));
        assert_eq!(counts.values().sum::<u64>(), 4);
    }

    /// An event and an entity's head read together are what each read alone returns, either of them absent.
    pub async fn an_event_and_its_head_read_together_as_alone(p: &Ports) {
        let (a, b) = (entity("a"), entity("b"));
        assert_eq!(p.store.get_event_and_head(&id("ev-1"), &a).await.expect("read"), (None, None));
        let head = head_in_flight(&a, "ev-1", at(60), 1);
        let mut running = record("ev-1", Some(&a), Some(order(1)), at(1));
        running.status = Status::Processing;
        p.store.commit(vec![Write::head(head), Write::event(running)]).await.expect("claim");
        let (record, head) = p.store.get_event_and_head(&id("ev-1"), &a).await.expect("read");
        assert_eq!(record, p.store.get_event(&id("ev-1")).await.expect("get"));
        assert_eq!(head, p.store.get_head(&a).await.expect("get"));
        assert_eq!((record.map(|r| r.status), head.map(|h| h.version)), (Some(Status::Processing), Some(1)));
        let (record, head) = p.store.get_event_and_head(&id("ev-2"), &a).await.expect("read");
        assert_eq!((record, head.is_some()), (None, true));
        let (record, head) = p.store.get_event_and_head(&id("ev-1"), &b).await.expect("read");
        assert_eq!((record.is_some(), head), (true, None));
    }

    /// An `errored` event, whose head names it in flight until its record moves on, is listed and counted as
    /// `errored` (by status and under its entity) through its retry's claim, until that claim's record write.
    pub async fn an_errored_event_is_listed_and_counted_until_its_retry_claims_it(p: &Ports) {
        let b = entity("b");
        let mut failing = record("ev-err", Some(&b), Some(order(1)), at(2));
        failing.status = Status::Errored;
        let mut errored_head = head_in_flight(&b, "ev-err", at(10), 1);
        if let Some(inflight) = errored_head.inflight.as_mut() {
            inflight.errored = true;
            inflight.move_lease(at(60));
        }
        p.store.commit(vec![Write::event(failing), Write::head(errored_head)]).await.expect("the attempt's end");
        let ids = |records: Vec<EventRecord>| records.into_iter().map(|r| r.event_id.to_string()).collect::<Vec<_>>();
        let errored = EventQuery { status: Some(Status::Errored), ..EventQuery::default() };
        let of_b = EventQuery { entity: Some(b.clone()), ..errored.clone() };
        let listed = || async {
            (
                ids(p.store.list_events(&errored).await.expect("list")),
                ids(p.store.list_events(&of_b).await.expect("list")),
            )
        };
        assert_eq!(listed().await, (vec!["ev-err".to_owned()], vec!["ev-err".to_owned()]));
        assert_eq!(p.store.count_by_status().await.expect("count").get(&Status::Errored), Some(&1));

        // The retry's claim: the head first (the record still says `errored`), then the record.
        let mut head = p.store.get_head(&b).await.expect("get").expect("stored");
        if let Some(inflight) = head.inflight.as_mut() {
            inflight.errored = false;
            inflight.attempt = 2;
        }
        p.store.commit(vec![Write::head(head)]).await.expect("the claim's head");
        assert_eq!(listed().await.0, ["ev-err"]);
        let mut retried = p.store.get_event(&id("ev-err")).await.expect("get").expect("stored");
        retried.status = Status::Processing;
        p.store.commit(vec![Write::event(retried)]).await.expect("the claim's record");
        assert_eq!(listed().await, (Vec::new(), Vec::new()));
        let counts = p.store.count_by_status().await.expect("count");
        assert_eq!((counts.get(&Status::Errored), counts.get(&Status::Processing)), (None, Some(&1)));
    }

    /// What a store reads ahead for a batch is what each event's own read returns, in order, an entity named twice
    /// and absent items included; a store that does not read ahead (`Ports::store_reads_ahead`) answers `None`.
    pub async fn a_batch_read_ahead_is_each_events_own_read(p: &Ports) {
        let (a, b) = (entity("a"), entity("b"));
        let mut running = record("ev-1", Some(&a), Some(order(1)), at(1));
        running.status = Status::Processing;
        p.store
            .commit(vec![Write::head(head_in_flight(&a, "ev-1", at(60), 1)), Write::event(running)])
            .await
            .expect("claim");
        let wanted = vec![(id("ev-1"), a.clone()), (id("ev-2"), a.clone()), (id("ev-3"), b.clone()), (id("ev-1"), a)];
        let read = match (p.store.read_ahead(&wanted).await.expect("read ahead"), p.store_reads_ahead) {
            (Some(read), true) => read,
            (None, false) => return, // It reads each event on its own, when wanted: nothing ahead to compare.
            (read, reads_ahead) => {
                let expected = if reads_ahead { "the batch's reads" } else { "None (it reads each on its own)" };
                panic!("read ahead: expected {expected}, got {read:?}")
            }
        };
        assert_eq!(read.len(), wanted.len(), "one answer per wanted event, in order");
        let mut own = Vec::new();
        for (event, entity) in &wanted {
            own.push(p.store.get_event_and_head(event, entity).await.expect("read"));
        }
        assert_eq!(read, own);
        assert!(read[0].0.is_some() && read[1].0.is_none() && read[2] == (None, None));
    }

    /// A `processing` event, committed with the head that names it in flight, is listed and counted as
    /// `processing` (by status and under its entity) until a later commit moves both on; an `errored` event
    /// holding its head is not.
    pub async fn a_processing_event_is_listed_and_counted_until_it_settles(p: &Ports) {
        let (a, b) = (entity("a"), entity("b"));
        let mut running = record("ev-run", Some(&a), Some(order(1)), at(1));
        running.status = Status::Processing;
        let mut failing = record("ev-err", Some(&b), Some(order(1)), at(2));
        failing.status = Status::Errored;
        let mut errored_head = head_in_flight(&b, "ev-err", at(60), 1);
        errored_head.inflight.as_mut().expect("in flight").errored = true;
        p.store
            .commit(vec![
                Write::head(head_in_flight(&a, "ev-run", at(60), 1)),
                Write::event(running),
                Write::head(errored_head),
                Write::event(failing),
            ])
            .await
            .expect("claim");
        let ids = |records: Vec<EventRecord>| records.into_iter().map(|r| r.event_id.to_string()).collect::<Vec<_>>();
        let processing = EventQuery { status: Some(Status::Processing), ..EventQuery::default() };
        assert_eq!(ids(p.store.list_events(&processing).await.expect("list")), ["ev-run"]);
        let of_a = EventQuery { entity: Some(a.clone()), ..processing.clone() };
        assert_eq!(ids(p.store.list_events(&of_a).await.expect("list")), ["ev-run"]);
        let other_source = EventQuery { source: Some("elsewhere".into()), ..processing.clone() };
        assert!(p.store.list_events(&other_source).await.expect("list").is_empty());
        let counts = p.store.count_by_status().await.expect("count");
        assert_eq!((counts.get(&Status::Processing), counts.get(&Status::Errored)), (Some(&1), Some(&1)));

        let mut head = p.store.get_head(&a).await.expect("get").expect("stored");
        head.inflight = None;
        let mut done = p.store.get_event(&id("ev-run")).await.expect("get").expect("stored");
        done.status = Status::Completed;
        p.store.commit(vec![Write::head(head), Write::event(done)]).await.expect("settle");
        assert!(p.store.list_events(&processing).await.expect("list").is_empty());
        assert!(p.store.list_events(&of_a).await.expect("list").is_empty());
        let completed = EventQuery { status: Some(Status::Completed), entity: Some(a), ..EventQuery::default() };
        assert_eq!(ids(p.store.list_events(&completed).await.expect("list")), ["ev-run"]);
        let counts = p.store.count_by_status().await.expect("count");
        assert_eq!((counts.get(&Status::Processing), counts.get(&Status::Completed)), (None, Some(&1)));
    }

    /// Heads whose lease ended are found oldest first; every head with an event in flight is counted.
    pub async fn expired_leases_are_found_oldest_first(p: &Ports) {
        let writes = vec![
            Write::head(head_in_flight(&entity("late"), "ev-1", at(20), 1)),
            Write::head(head_in_flight(&entity("early"), "ev-2", at(10), 1)),
            Write::head(head_in_flight(&entity("live"), "ev-3", at(100), 1)),
            Write::head(EntityHead::empty(entity("idle"), p.clock.now())),
        ];
        p.store.commit(writes).await.expect("commit");
        let keys = |heads: Vec<EntityHead>| heads.into_iter().map(|h| h.entity.external_id).collect::<Vec<_>>();
        assert_eq!(keys(p.store.expired_leases(at(50), 10).await.expect("leases")), ["early", "late"]);
        assert_eq!(keys(p.store.expired_leases(at(50), 1).await.expect("leases")), ["early"]);
        assert!(p.store.expired_leases(at(10), 10).await.expect("leases").is_empty(), "strictly before");
        assert_eq!(p.store.count_inflight().await.expect("count"), 3);

        // Releasing a head takes it out of both.
        let mut released = p.store.get_head(&entity("early")).await.expect("get").expect("stored");
        released.inflight = None;
        p.store.commit(vec![Write::head(released)]).await.expect("release");
        assert_eq!(keys(p.store.expired_leases(at(50), 10).await.expect("leases")), ["late"]);
        assert_eq!(p.store.count_inflight().await.expect("count"), 2);
    }

    /// A hold whose lease moved later (a retry's) is not expired until that lease ends, however early the hold
    /// began: a store may index heads by their hold's earliest lease end, and still lists only the expired ones,
    /// the limit counting expired heads only.
    pub async fn a_lease_moved_later_is_not_expired_before_it_ends(p: &Ports) {
        let retried = |n: usize| {
            let mut head = head_in_flight(&entity(&format!("retried-{n:02}")), &format!("ev-r{n}"), at(5), 1);
            if let Some(inflight) = head.inflight.as_mut() {
                inflight.errored = true;
                inflight.move_lease(at(100));
            }
            head
        };
        let mut writes: Vec<Write> = (0..32).map(|n| Write::head(retried(n))).collect();
        writes.push(Write::head(head_in_flight(&entity("late"), "ev-1", at(30), 1)));
        writes.push(Write::head(head_in_flight(&entity("early"), "ev-2", at(20), 1)));
        p.store.commit(writes).await.expect("commit");
        let keys = |heads: Vec<EntityHead>| heads.into_iter().map(|h| h.entity.external_id).collect::<Vec<_>>();

        assert_eq!(keys(p.store.expired_leases(at(50), 10).await.expect("leases")), ["early", "late"]);
        assert_eq!(keys(p.store.expired_leases(at(50), 1).await.expect("leases")), ["early"]);
        let all = p.store.expired_leases(at(101), 0).await.expect("leases");
        assert_eq!(all.len(), 34, "every lease ended by then");
        assert_eq!(keys(all)[..2], ["early", "late"], "oldest lease first");
        assert_eq!(p.store.count_inflight().await.expect("count"), 34);
    }

    /// Every head is listed, page by page, each once; the pages' cursors lead to the end.
    pub async fn heads_are_listed_page_by_page(p: &Ports) {
        let names = ["a", "b", "c", "d", "e"];
        let writes = names.iter().map(|n| Write::head(EntityHead::empty(entity(n), p.clock.now()))).collect();
        p.store.commit(writes).await.expect("commit");
        let (mut seen, mut after, mut pages) = (Vec::new(), None, 0);
        loop {
            let page = p.store.list_heads(after.as_deref(), 2).await.expect("list heads");
            assert!(page.heads.len() <= 2, "at most about the limit per page");
            seen.extend(page.heads.into_iter().map(|h| h.entity.external_id));
            pages += 1;
            assert!(pages <= 10, "the cursors lead to the end");
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        seen.sort();
        assert_eq!(seen, names);
    }

    /// Heads flagged `needs_verification` are found; clearing the flag takes a head out.
    pub async fn heads_to_verify_are_those_flagged(p: &Ports) {
        let flagged =
            |name: &str| EntityHead { needs_verification: true, ..EntityHead::empty(entity(name), p.clock.now()) };
        let writes = vec![
            Write::head(flagged("x")),
            Write::head(flagged("y")),
            Write::head(EntityHead::empty(entity("z"), p.clock.now())),
        ];
        p.store.commit(writes).await.expect("commit");
        let keys = |heads: Vec<EntityHead>| {
            let mut keys: Vec<String> = heads.into_iter().map(|h| h.entity.external_id).collect();
            keys.sort();
            keys
        };
        assert_eq!(keys(p.store.heads_to_verify(10).await.expect("to verify")), ["x", "y"]);
        assert_eq!(p.store.heads_to_verify(1).await.expect("to verify").len(), 1);
        let mut cleared = p.store.get_head(&entity("x")).await.expect("get").expect("stored");
        cleared.needs_verification = false;
        p.store.commit(vec![Write::head(cleared)]).await.expect("clear");
        assert_eq!(keys(p.store.heads_to_verify(10).await.expect("to verify")), ["y"]);
    }

    // ---- Queue ----

    /// A received message stays hidden for its visibility timeout, then comes back with the next receive count.
    pub async fn a_received_message_is_hidden_until_its_visibility_ends(p: &Ports) {
        let mut message = OutgoingMessage::new("hello");
        message.trace_header = Some("Root=1-abc".into());
        let before = p.now();
        let ids = p.queue.send(vec![message]).await.expect("send");
        p.pass(Duration::seconds(1)).await;
        let first = p.queue.receive(10, Duration::seconds(2)).await.expect("receive");
        assert_eq!(first.len(), 1);
        let m = &first[0];
        assert_eq!((m.message_id.as_str(), m.body.as_str(), m.receive_count), (ids[0].as_str(), "hello", 1));
        assert_eq!(m.trace_header.as_deref(), Some("Root=1-abc"));
        if p.queue_traits.server_clock {
            // Server time, millisecond precision: within a margin of ours.
            let slack = Duration::seconds(2);
            assert!(m.sent_at >= before - slack && m.sent_at <= p.now() + slack, "{} vs {before}", m.sent_at);
            assert!(m.first_received_at >= m.sent_at, "{m:?}");
        } else {
            assert_eq!((m.sent_at, m.first_received_at), (before, p.now()));
        }

        p.pass(Duration::seconds(1)).await;
        assert!(p.queue.receive(10, Duration::seconds(2)).await.expect("receive").is_empty());
        p.pass(Duration::seconds(1)).await;
        let again = p.queue.receive(10, Duration::seconds(30)).await.expect("receive");
        assert_eq!(again.len(), 1);
        assert_eq!((again[0].message_id.as_str(), again[0].receive_count), (ids[0].as_str(), 2));
        assert_ne!(again[0].receipt_handle, m.receipt_handle, "each receive has its own handle");
        assert_eq!(again[0].first_received_at, m.first_received_at);
    }

    /// Receive returns at most `max` messages, oldest first (where the queue orders at all).
    pub async fn receive_returns_at_most_max_messages_oldest_first(p: &Ports) {
        for i in 0..5 {
            p.queue.send(vec![OutgoingMessage::new(format!("m{i}"))]).await.expect("send");
            p.pass(Duration::milliseconds(1)).await;
        }
        let bodies = |got: &[synctrail::store::QueueMessage]| {
            let mut bodies: Vec<String> = got.iter().map(|m| m.body.clone()).collect();
            if !p.queue_traits.ordered {
                bodies.sort();
            }
            bodies
        };
        let got = p.queue.receive(3, Duration::seconds(30)).await.expect("receive");
        assert_eq!(got.len(), 3);
        let rest = p.queue.receive(10, Duration::seconds(30)).await.expect("receive");
        assert_eq!(rest.len(), 2);
        if p.queue_traits.ordered {
            assert_eq!(bodies(&got), ["m0", "m1", "m2"]);
            assert_eq!(bodies(&rest), ["m3", "m4"]);
        } else {
            assert_eq!(bodies(&[got, rest].concat()), ["m0", "m1", "m2", "m3", "m4"]);
        }
        assert!(p.queue.receive(0, Duration::seconds(30)).await.expect("receive").is_empty());
    }

    /// A deleted message is never delivered again.
    pub async fn a_deleted_message_is_gone(p: &Ports) {
        p.queue.send(vec![OutgoingMessage::new("x")]).await.expect("send");
        let got = p.queue.receive(1, Duration::seconds(1)).await.expect("receive");
        p.queue.delete(&[got[0].receipt_handle.clone()]).await.expect("delete");
        p.pass(Duration::seconds(1)).await;
        assert!(p.queue.receive(10, Duration::seconds(5)).await.expect("receive").is_empty());
        let depth = p.queue.depth().await.expect("depth");
        assert_eq!((depth.visible, depth.in_flight, depth.delayed, depth.dead_letters), (0, 0, 0, 0));
        assert_eq!(depth.oldest_sent_at, None);
    }

    /// A receive that waits returns a message sent while it waits, before its wait is over.
    pub async fn a_waiting_receive_returns_a_message_sent_while_it_waits(p: &Ports) {
        let wait = std::time::Duration::from_secs(10);
        let started = std::time::Instant::now();
        let (got, sent) = tokio::join!(p.queue.receive_waiting(10, Duration::seconds(30), wait), async {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            p.queue.send(vec![OutgoingMessage::new("late")]).await.expect("send")
        });
        let got = got.expect("receive");
        assert_eq!(got.iter().map(|m| m.message_id.as_str()).collect::<Vec<_>>(), [sent[0].as_str()]);
        assert!(started.elapsed() < wait, "returned only when its wait was over: {:?}", started.elapsed());
    }

    /// A receive that waits with nothing to receive returns empty once its wait is over, not before.
    pub async fn a_waiting_receive_with_nothing_to_receive_returns_empty_when_its_wait_is_over(p: &Ports) {
        let wait = std::time::Duration::from_secs(1);
        let started = std::time::Instant::now();
        let got = p.queue.receive_waiting(10, Duration::seconds(30), wait).await.expect("receive");
        assert!(got.is_empty(), "{got:?}");
        let waited = started.elapsed();
        assert!(waited + std::time::Duration::from_millis(100) >= wait, "returned after {waited:?} of {wait:?}");
    }

    /// A message whose visibility ends while a receive waits is delivered to it, before its wait is over.
    pub async fn a_waiting_receive_gets_a_message_whose_visibility_ends_meanwhile(p: &Ports) {
        p.queue.send(vec![OutgoingMessage::new("again")]).await.expect("send");
        let first = p.queue.receive(1, Duration::seconds(1)).await.expect("receive");
        assert_eq!(first.len(), 1);
        let wait = std::time::Duration::from_secs(10);
        let started = std::time::Instant::now();
        let (got, ()) =
            tokio::join!(p.queue.receive_waiting(10, Duration::seconds(30), wait), p.pass(Duration::seconds(1)));
        let got = got.expect("receive");
        assert_eq!(
            got.iter().map(|m| (m.message_id.as_str(), m.receive_count)).collect::<Vec<_>>(),
            [(first[0].message_id.as_str(), 2)]
        );
        assert!(started.elapsed() < wait, "returned only when its wait was over: {:?}", started.elapsed());
    }

    /// Ending the waits ([`Queue::end_waits`]) takes and hides nothing, and ends only the waits under way: a message
    /// sent before is received as before, and a receive that starts afterwards waits for one sent later.
    pub async fn ending_the_waits_takes_nothing_and_a_later_receive_waits_as_before(p: &Ports) {
        let ids = |got: &[synctrail::store::QueueMessage]| got.iter().map(|m| m.message_id.clone()).collect::<Vec<_>>();
        let before = p.queue.send(vec![OutgoingMessage::new("before")]).await.expect("send");
        p.queue.end_waits();
        let got = p.queue.receive(10, Duration::seconds(30)).await.expect("receive");
        assert_eq!(ids(&got), before);
        let wait = std::time::Duration::from_secs(10);
        let (got, after) = tokio::join!(p.queue.receive_waiting(10, Duration::seconds(30), wait), async {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            p.queue.send(vec![OutgoingMessage::new("after")]).await.expect("send")
        });
        assert_eq!(ids(&got.expect("receive")), after, "the receive waited for the message sent while it waited");
    }

    /// Sending to a queue the backend does not have is an error, and nothing reaches the queue.
    pub async fn sending_to_a_queue_the_backend_lacks_is_refused(p: &Ports) {
        let missing = "http://127.0.0.1:1/000000000000/no-such-queue";
        let sent = p.queue.send_to(missing, vec![OutgoingMessage::new("lost?")]).await;
        assert!(sent.is_err(), "{sent:?}");
        assert!(p.queue.receive(10, Duration::seconds(30)).await.expect("receive").is_empty());
    }

    /// A handle from an earlier receive deletes nothing and cannot change visibility.
    pub async fn a_stale_receipt_handle_deletes_nothing(p: &Ports) {
        p.queue.send(vec![OutgoingMessage::new("x")]).await.expect("send");
        let old = p.queue.receive(1, Duration::seconds(1)).await.expect("receive").remove(0);
        p.pass(Duration::seconds(1)).await;
        let new = p.queue.receive(1, Duration::seconds(30)).await.expect("receive").remove(0);
        p.queue
            .delete(&[old.receipt_handle.clone(), "no-such:handle".into()])
            .await
            .expect("stale delete is not an error");
        assert_eq!(p.queue.depth().await.expect("depth").in_flight, 1, "still there");
        assert!(matches!(
            p.queue.change_visibility(&old.receipt_handle, Duration::zero()).await,
            Err(StoreError::NotFound(_))
        ));
        assert!(matches!(
            p.queue.dead_letter(&old.receipt_handle, &old.body, None).await,
            Err(StoreError::NotFound(_))
        ));
        p.queue.delete(&[new.receipt_handle]).await.expect("delete");
        assert_eq!(p.queue.depth().await.expect("depth").in_flight, 0);
    }

    /// Changing the visibility to zero makes a received message visible at once; a longer one hides it longer.
    pub async fn changing_visibility_moves_the_next_delivery(p: &Ports) {
        p.queue.send(vec![OutgoingMessage::new("x")]).await.expect("send");
        let got = p.queue.receive(1, Duration::seconds(300)).await.expect("receive").remove(0);
        p.queue.change_visibility(&got.receipt_handle, Duration::zero()).await.expect("change");
        let again = p.queue.receive(1, Duration::seconds(300)).await.expect("receive").remove(0);
        assert_eq!(again.receive_count, 2);
        p.queue.change_visibility(&again.receipt_handle, Duration::seconds(2)).await.expect("change");
        p.pass(Duration::seconds(1)).await;
        assert!(p.queue.receive(1, Duration::seconds(30)).await.expect("receive").is_empty());
        p.pass(Duration::seconds(1)).await;
        assert_eq!(p.queue.receive(1, Duration::seconds(30)).await.expect("receive").len(), 1);
    }

    /// A message received `max_receives` times goes to the dead-letter queue instead of a further delivery.
    pub async fn a_message_received_max_receives_times_moves_to_the_dead_letter_queue(p: &Ports) {
        assert_eq!(p.queue.max_receives(), MAX_RECEIVES);
        p.queue.send(vec![OutgoingMessage::new("poison")]).await.expect("send");
        for n in 1..=MAX_RECEIVES {
            let got = p.queue.receive(1, Duration::seconds(1)).await.expect("receive");
            assert_eq!(got.len(), 1, "delivery {n}");
            assert_eq!(got[0].receive_count, n);
            p.pass(Duration::seconds(1)).await;
        }
        assert!(p.queue.receive(1, Duration::seconds(1)).await.expect("receive").is_empty());
        let depth = p.queue.depth().await.expect("depth");
        assert_eq!((depth.visible, depth.in_flight, depth.dead_letters), (0, 0, 1));
        p.pass(Duration::seconds(1)).await;
        assert!(p.queue.receive(1, Duration::seconds(1)).await.expect("receive").is_empty(), "never again");
    }

    /// A message moved to the dead-letter queue on purpose is never delivered again.
    pub async fn a_dead_lettered_message_is_not_delivered_again(p: &Ports) {
        p.queue.send(vec![OutgoingMessage::new("bad"), OutgoingMessage::new("good")]).await.expect("send");
        let got = p.queue.receive(1, Duration::seconds(1)).await.expect("receive").remove(0);
        if p.queue_traits.ordered {
            assert_eq!(got.body, "bad");
        }
        let other = if got.body == "bad" { "good" } else { "bad" };
        p.queue.dead_letter(&got.receipt_handle, &got.body, None).await.expect("dead letter");
        p.pass(Duration::seconds(1)).await;
        let rest = p.queue.receive(10, Duration::seconds(1)).await.expect("receive");
        assert_eq!(rest.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(), [other]);
        assert_eq!(p.queue.depth().await.expect("depth").dead_letters, 1);
    }

    /// Dead letters can be received (hidden meanwhile) and returned to the queue, where they are delivered again
    /// with a fresh receive count and their trace header; a returned dead letter is gone from the dead-letter queue.
    pub async fn dead_letters_are_received_and_returned_to_the_queue(p: &Ports) {
        let traced = OutgoingMessage {
            trace_header: Some("Root=1-5759e988-bd862e3fe1be46a994272793".into()),
            ..OutgoingMessage::new("traced")
        };
        p.queue.send(vec![traced, OutgoingMessage::new("plain")]).await.expect("send");
        for message in p.queue.receive(10, Duration::seconds(1)).await.expect("receive") {
            p.queue
                .dead_letter(&message.receipt_handle, &message.body, message.trace_header.as_deref())
                .await
                .expect("dead letter");
        }
        let dead = p.queue.receive_dead_letters(10, Duration::seconds(2)).await.expect("receive dead letters");
        let mut bodies: Vec<&str> = dead.iter().map(|m| m.body.as_str()).collect();
        bodies.sort_unstable();
        assert_eq!(bodies, ["plain", "traced"]);
        assert!(p.queue.receive_dead_letters(10, Duration::seconds(2)).await.expect("again").is_empty(), "hidden");
        assert!(p.queue.receive(10, Duration::seconds(1)).await.expect("receive").is_empty(), "not in the queue yet");

        p.queue.return_dead_letters(&dead).await.expect("return");
        let back = p.queue.receive(10, Duration::seconds(1)).await.expect("receive");
        assert_eq!(back.len(), 2);
        assert!(back.iter().all(|m| m.receive_count == 1), "a fresh receive count");
        let traced = back.iter().find(|m| m.body == "traced").expect("traced is back");
        if p.queue_traits.batch_trace_headers {
            assert_eq!(traced.trace_header.as_deref(), Some("Root=1-5759e988-bd862e3fe1be46a994272793"));
        }
        assert_eq!(p.queue.depth().await.expect("depth").dead_letters, 0);
        p.pass(Duration::seconds(3)).await;
        assert!(p.queue.receive_dead_letters(10, Duration::seconds(1)).await.expect("receive").is_empty());
    }

    /// Sends `bodies` and moves each to the dead-letter queue; returns the dead letters received (hidden for a
    /// minute), in the order of `bodies`.
    async fn dead_letters_of(p: &Ports, bodies: &[&str]) -> Vec<synctrail::store::QueueMessage> {
        p.queue.send(bodies.iter().map(|b| OutgoingMessage::new(*b)).collect()).await.expect("send");
        for message in p.queue.receive(10, Duration::seconds(1)).await.expect("receive") {
            p.queue.dead_letter(&message.receipt_handle, &message.body, None).await.expect("dead letter");
        }
        let mut dead = p.queue.receive_dead_letters(10, Duration::seconds(60)).await.expect("receive dead letters");
        assert_eq!(dead.len(), bodies.len());
        dead.sort_by_key(|m| bodies.iter().position(|b| *b == m.body));
        dead
    }

    /// Released dead letters are visible in the dead-letter queue again at once, under the same ids; a handle whose
    /// message is gone is not an error.
    pub async fn a_released_dead_letter_is_visible_again_at_once(p: &Ports) {
        let dead = dead_letters_of(p, &["one", "two"]).await;
        assert!(p.queue.receive_dead_letters(10, Duration::seconds(60)).await.expect("again").is_empty(), "hidden");

        let mut handles: Vec<String> = dead.iter().map(|m| m.receipt_handle.clone()).collect();
        handles.push("no-such:handle".into());
        p.queue.release_dead_letters(&handles).await.expect("release");
        let again = p.queue.receive_dead_letters(10, Duration::seconds(60)).await.expect("receive dead letters");
        let mut ids: Vec<&str> = again.iter().map(|m| m.message_id.as_str()).collect();
        ids.sort_unstable();
        let mut expected: Vec<&str> = dead.iter().map(|m| m.message_id.as_str()).collect();
        expected.sort_unstable();
        assert_eq!(ids, expected, "the same dead letters, visible again");
        assert_eq!(p.queue.depth().await.expect("depth").dead_letters, 2, "still dead letters");
        assert!(p.queue.receive(10, Duration::seconds(1)).await.expect("receive").is_empty(), "not in the queue");
    }

    /// Deleted dead letters are gone from the dead-letter queue for good; the others stay; a handle whose message is
    /// gone is not an error.
    pub async fn a_deleted_dead_letter_is_gone_for_good(p: &Ports) {
        let dead = dead_letters_of(p, &["stale", "live"]).await;
        let handles = [dead[0].receipt_handle.clone(), "no-such:handle".into()];
        p.queue.delete_dead_letters(&handles).await.expect("delete");
        assert_eq!(p.queue.depth().await.expect("depth").dead_letters, 1);
        p.queue.release_dead_letters(&[dead[1].receipt_handle.clone()]).await.expect("release");
        let rest = p.queue.receive_dead_letters(10, Duration::seconds(60)).await.expect("receive dead letters");
        assert_eq!(rest.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(), ["live"]);
        p.queue.delete_dead_letters(&[dead[0].receipt_handle.clone()]).await.expect("deleting again is no error");
        p.queue.delete_dead_letters(&[rest[0].receipt_handle.clone()]).await.expect("delete");
        let depth = p.queue.depth().await.expect("depth");
        assert_eq!((depth.visible, depth.in_flight, depth.dead_letters), (0, 0, 0));
    }

    /// `waiting` events are listed by the dependency they wait for, and only while they wait.
    pub async fn waiting_events_are_listed_by_their_dependency(p: &Ports) {
        use synctrail::store::{EventQuery, Write};
        let e = build::entity("level");
        let mut waiting = build::record("ev-w1", Some(&e), Some(build::order(1)), build::t0());
        waiting.status = Status::Waiting;
        waiting.waiting_for = Some("default/shopify/product/P1".into());
        waiting.waiting_since = Some(build::t0());
        let mut other = build::record("ev-w2", Some(&e), Some(build::order(2)), build::t0());
        other.status = Status::Waiting;
        other.waiting_for = Some("default/shopify/product/P2".into());
        let plain = build::record("ev-w3", Some(&e), Some(build::order(3)), build::t0());
        p.store
            .commit(vec![Write::event(waiting.clone()), Write::event(other), Write::event(plain)])
            .await
            .expect("commit");
        let query = EventQuery { waiting_for: Some("default/shopify/product/P1".into()), ..EventQuery::default() };
        let found = p.store.list_events(&query).await.expect("list");
        assert_eq!(found.iter().map(|r| r.event_id.as_str()).collect::<Vec<_>>(), ["ev-w1"]);

        let mut resumed = found.into_iter().next().expect("one");
        resumed.status = Status::Processing;
        p.store.commit(vec![Write::event(resumed)]).await.expect("resume");
        assert!(p.store.list_events(&query).await.expect("list").is_empty(), "no longer waiting");
    }

    /// Depth counts visible, in-flight, delayed and dead messages, and the oldest live one.
    pub async fn depth_counts_every_state(p: &Ports) {
        let t = p.now();
        let delayed = OutgoingMessage { delay: Duration::seconds(3), ..OutgoingMessage::new("later") };
        p.queue.send(vec![OutgoingMessage::new("a"), OutgoingMessage::new("b"), delayed]).await.expect("send");
        p.pass(Duration::milliseconds(1)).await;
        p.queue.send(vec![OutgoingMessage::new("c"), OutgoingMessage::new("d")]).await.expect("send");
        let got = p.queue.receive(2, Duration::seconds(3)).await.expect("receive");
        p.queue.dead_letter(&got[0].receipt_handle, &got[0].body, None).await.expect("dead letter");
        let depth = p.queue.depth().await.expect("depth");
        assert_eq!((depth.visible, depth.in_flight, depth.delayed, depth.dead_letters), (2, 1, 1, 1));
        if p.queue_traits.reports_oldest {
            assert_eq!(depth.oldest_sent_at, Some(t));
        } else {
            assert_eq!(depth.oldest_sent_at, None);
        }
        p.pass(Duration::seconds(3)).await;
        let depth = p.queue.depth().await.expect("depth");
        assert_eq!((depth.visible, depth.in_flight, depth.delayed), (4, 0, 0));
    }

    /// A delayed message stays hidden until its delay is over.
    pub async fn a_delayed_message_waits_for_its_delay(p: &Ports) {
        let delayed = OutgoingMessage { delay: Duration::seconds(1), ..OutgoingMessage::new("later") };
        p.queue.send(vec![delayed]).await.expect("send");
        assert!(p.queue.receive(1, Duration::seconds(10)).await.expect("receive").is_empty());
        p.pass(Duration::seconds(1)).await;
        let got = p.queue.receive(1, Duration::seconds(10)).await.expect("receive");
        assert_eq!((got.len(), got[0].receive_count), (1, 1));
    }

    // ---- PayloadStore ----

    /// A payload reads back byte for byte; its reference names its SHA-256 and size.
    pub async fn a_payload_reads_back_byte_for_byte(p: &Ports) {
        let bytes: Vec<u8> = (0..10_000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
        let stored = p.payloads.put(&bytes, p.clock.now()).await.expect("put");
        assert_eq!(stored.size, bytes.len() as u64);
        assert_eq!(stored.sha256, ContentHash::of(&bytes).to_hex());
        assert_eq!(p.payloads.get(&stored).await.expect("get"), bytes);
        let empty = p.payloads.put(b"", p.clock.now()).await.expect("put empty");
        assert_eq!(p.payloads.get(&empty).await.expect("get empty"), b"");
    }

    /// Storing the same bytes twice gives the same reference.
    pub async fn storing_the_same_payload_twice_gives_the_same_reference(p: &Ports) {
        let first = p.payloads.put(b"{\"a\":1}", p.clock.now()).await.expect("put");
        let second = p.payloads.put(b"{\"a\":1}", p.clock.now()).await.expect("put again");
        assert_eq!(first, second);
        let other = p.payloads.put(b"{\"a\":2}", p.clock.now()).await.expect("put other");
        assert_ne!(first.key, other.key);
    }

    /// Bytes that do not match the reference's SHA-256 are reported as corrupt.
    pub async fn a_corrupt_payload_is_reported_as_corrupt(p: &Ports) {
        let stored = p.payloads.put(b"{\"a\":1}", p.clock.now()).await.expect("put");
        let wrong = PayloadRef { sha256: "ab".repeat(32), ..stored };
        match p.payloads.get(&wrong).await {
            Err(StoreError::Corrupt(message)) => assert!(message.contains("SHA-256"), "{message}"),
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    /// A payload that was never stored is not found.
    pub async fn a_missing_payload_is_not_found(p: &Ports) {
        let stored = p.payloads.put(b"x", p.clock.now()).await.expect("put");
        let sha = "cd".repeat(32);
        let missing = PayloadRef { key: stored.key.replace(&stored.sha256, &sha), sha256: sha, size: 1, range: None };
        assert!(matches!(p.payloads.get(&missing).await, Err(StoreError::NotFound(_))), "{missing:?}");
    }

    /// A stored object replaced by another payload's, or by garbage, is reported as corrupt, naming its key.
    pub async fn a_tampered_payload_file_is_reported_as_corrupt(p: &Ports) {
        let payload = p.payloads.put(b"{\"price\": 10}", p.clock.now()).await.expect("put");
        let sha = &payload.sha256;
        let original = p.tamper.read_raw(&payload.key).await;

        // Valid zstd, other bytes: the checksum catches it.
        let other = p.payloads.put(b"{\"price\": 99}", p.clock.now()).await.expect("put");
        p.tamper.write_raw(&payload.key, p.tamper.read_raw(&other.key).await).await;
        match p.payloads.get(&payload).await {
            Err(StoreError::Corrupt(message)) => {
                assert!(message.contains(&format!("SHA-256 is {}, expected {sha}", other.sha256)), "{message}");
                assert!(message.contains(&payload.key), "names the key: {message}");
            }
            got => panic!("expected Corrupt, got {got:?}"),
        }
        // Garbage: not zstd at all.
        p.tamper.write_raw(&payload.key, b"garbage".to_vec()).await;
        assert!(matches!(p.payloads.get(&payload).await, Err(StoreError::Corrupt(_))));
        // Restored: reads again.
        p.tamper.write_raw(&payload.key, original).await;
        assert_eq!(p.payloads.get(&payload).await.expect("get"), b"{\"price\": 10}");
        // Keys outside payloads/ are refused.
        let escape = PayloadRef { key: "../synctrail.db".into(), ..payload };
        assert!(p.payloads.get(&escape).await.is_err());
    }

    /// A batch stored in one call reads back body by body, each reference with its own SHA-256 and size; an empty
    /// batch stores nothing.
    pub async fn a_batch_of_payloads_reads_back_body_by_body(p: &Ports) {
        let large: Vec<u8> = (0..10_000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
        let bodies: [&[u8]; 4] = [b"{\"a\":1}", b"", &large, b"not an envelope"];
        let stored = p.payloads.put_batch(&bodies, p.clock.now()).await.expect("put batch");
        assert_eq!(stored.len(), bodies.len());
        for (reference, body) in stored.iter().zip(bodies) {
            assert_eq!(reference.size, body.len() as u64);
            assert_eq!(reference.sha256, ContentHash::of(body).to_hex());
            assert_eq!(p.payloads.get(reference).await.expect("get"), body, "{reference:?}");
        }
        assert_eq!(p.payloads.put_batch(&[], p.clock.now()).await.expect("empty batch"), Vec::<PayloadRef>::new());
    }

    /// Storing the same batch twice gives the same references (a retried batch write adds nothing).
    pub async fn storing_the_same_batch_twice_gives_the_same_references(p: &Ports) {
        let bodies: [&[u8]; 2] = [b"{\"a\":1}", b"{\"a\":2}"];
        let first = p.payloads.put_batch(&bodies, p.clock.now()).await.expect("put batch");
        let again = p.payloads.put_batch(&bodies, p.clock.now()).await.expect("put batch again");
        assert_eq!(first, again);
    }

    /// A byte changed inside one body's stored bytes makes that body corrupt, naming its key; the batch's other
    /// bodies still read back. A range the object does not hold is corrupt too.
    pub async fn a_corrupted_byte_in_one_batched_body_is_corrupt_for_that_body_only(p: &Ports) {
        let bodies: [&[u8]; 3] = [
            b"{\"name\": \"first\", \"price\": 10}",
            b"{\"name\": \"second\", \"price\": 20}",
            b"{\"name\": \"third\", \"price\": 30}",
        ];
        let stored = p.payloads.put_batch(&bodies, p.clock.now()).await.expect("put batch");
        let target = &stored[1];
        let mut object = p.tamper.read_raw(&target.key).await;
        let frame = target.range.map_or(0..object.len(), |r| r.offset as usize..(r.offset + r.length) as usize);
        object[frame.start + frame.len() / 2] ^= 0x5a;
        p.tamper.write_raw(&target.key, object.clone()).await;
        match p.payloads.get(target).await {
            Err(StoreError::Corrupt(message)) => assert!(message.contains(&target.key), "names the key: {message}"),
            got => panic!("expected Corrupt, got {got:?}"),
        }
        assert_eq!(p.payloads.get(&stored[0]).await.expect("first body"), bodies[0]);
        assert_eq!(p.payloads.get(&stored[2]).await.expect("third body"), bodies[2]);
        let beyond = ByteRange { offset: object.len() as u64 + 10, length: 10 };
        let outside = PayloadRef { range: Some(beyond), ..stored[0].clone() };
        assert!(matches!(p.payloads.get(&outside).await, Err(StoreError::Corrupt(_))), "{outside:?}");
    }

    // ---- Destination ----

    /// Snapshots overwrite each other in order-key order.
    pub async fn the_mirror_applies_a_newer_snapshot(p: &Ports) {
        let e = entity("a");
        let (one, two) = (id("ev-1"), id("ev-2"));
        let (v1, v2) = (json!({"name": "one"}), json!({"name": "two"}));
        assert_eq!(p.destination().apply(&snapshot(&one, &e, 1, &v1, 1)).await, Ok(ApplyOutcome::Applied));
        assert_eq!(p.destination().apply(&snapshot(&two, &e, 2, &v2, 2)).await, Ok(ApplyOutcome::Applied));
        assert_eq!(p.destination().state(&e).await, Some(v2));
    }

    /// A write older than what the destination holds is superseded by it and writes nothing.
    pub async fn the_mirror_refuses_an_older_write(p: &Ports) {
        let e = entity("a");
        let (new, old) = (id("ev-new"), id("ev-old"));
        let (v_new, v_old) = (json!({"n": 2}), json!({"n": 1}));
        assert_eq!(p.destination().apply(&snapshot(&new, &e, 20, &v_new, 1)).await, Ok(ApplyOutcome::Applied));
        assert_eq!(
            p.destination().apply(&snapshot(&old, &e, 10, &v_old, 2)).await,
            Ok(ApplyOutcome::Superseded { by: "ev-new".into() })
        );
        assert_eq!(p.destination().state(&e).await, Some(v_new));
        assert_eq!(p.destination().effects_of(&old).await, 0);
    }

    /// A write whose `updated_at` is older than a local edit is refused; a newer one wins over the edit.
    pub async fn the_mirror_refuses_a_write_older_than_a_local_edit(p: &Ports) {
        let e = entity("a");
        let edited = json!({"name": "edited by hand"});
        p.destination().record_local_edit(&e, edited.clone(), at(50)).await;
        let (old, new) = (id("ev-old"), id("ev-new"));
        let (v_old, v_new) = (json!({"name": "old"}), json!({"name": "new"}));
        match p.destination().apply(&snapshot(&old, &e, 40, &v_old, 1)).await {
            Ok(ApplyOutcome::Superseded { by }) => assert!(by.contains("local-edit"), "{by}"),
            other => panic!("expected Superseded, got {other:?}"),
        }
        assert_eq!(p.destination().state(&e).await, Some(edited));
        assert_eq!(p.destination().apply(&snapshot(&new, &e, 60, &v_new, 1)).await, Ok(ApplyOutcome::Applied));
        assert_eq!(p.destination().state(&e).await, Some(v_new));
    }

    /// A writer holding an older fencing token than the last write is refused, even with a newer order key.
    pub async fn the_mirror_refuses_a_fenced_off_writer(p: &Ports) {
        let e = entity("a");
        let (current, zombie) = (id("ev-current"), id("ev-zombie"));
        let (v_current, v_zombie) = (json!({"by": "current"}), json!({"by": "zombie"}));
        assert_eq!(p.destination().apply(&snapshot(&current, &e, 10, &v_current, 5)).await, Ok(ApplyOutcome::Applied));
        assert_eq!(
            p.destination().apply(&snapshot(&zombie, &e, 20, &v_zombie, 4)).await,
            Ok(ApplyOutcome::Superseded { by: "ev-current".into() })
        );
        assert_eq!(p.destination().state(&e).await, Some(v_current));
    }

    /// Applying the same event again has no second effect, for snapshots and for deltas.
    pub async fn the_mirror_applies_each_event_at_most_once(p: &Ports) {
        let e = entity("a");
        let once = id("ev-once");
        let v = json!({"n": 1});
        assert_eq!(p.destination().apply(&snapshot(&once, &e, 1, &v, 1)).await, Ok(ApplyOutcome::Applied));
        assert_eq!(p.destination().apply(&snapshot(&once, &e, 1, &v, 2)).await, Ok(ApplyOutcome::AlreadyApplied));
        assert_eq!(p.destination().effects_of(&once).await, 1);

        let stock = entity_of("inventory_level", "s1");
        let add = id("ev-add");
        let plus_five = json!({"delta": 5});
        assert_eq!(p.destination().apply(&delta(&add, &stock, 1, &plus_five)).await, Ok(ApplyOutcome::Applied));
        for _ in 0..2 {
            let again = p.destination().apply(&delta(&add, &stock, 1, &plus_five)).await;
            assert_eq!(again, Ok(ApplyOutcome::AlreadyApplied));
        }
        assert_eq!(p.destination().state(&stock).await, Some(json!({"quantity": 5})));
        assert_eq!(p.destination().effects_of(&add).await, 1);
    }

    /// The same snapshot under another event id (equal order key and content) is already applied.
    pub async fn an_equal_snapshot_is_already_applied(p: &Ports) {
        let e = entity("a");
        let (first, resent) = (id("ev-first"), id("ev-resent"));
        let v = json!({"n": 1});
        assert_eq!(p.destination().apply(&snapshot(&first, &e, 1, &v, 1)).await, Ok(ApplyOutcome::Applied));
        assert_eq!(p.destination().apply(&snapshot(&resent, &e, 1, &v, 2)).await, Ok(ApplyOutcome::AlreadyApplied));
        assert_eq!(p.destination().effects_of(&resent).await, 0);
    }

    /// A tie (equal order key, other content) is applied: both are real changes.
    pub async fn a_tie_with_other_content_is_applied(p: &Ports) {
        let e = entity("a");
        let (first, tie) = (id("ev-first"), id("ev-tie"));
        let (v1, v2) = (json!({"n": 1}), json!({"n": 2}));
        assert_eq!(p.destination().apply(&snapshot(&first, &e, 1, &v1, 1)).await, Ok(ApplyOutcome::Applied));
        assert_eq!(p.destination().apply(&snapshot(&tie, &e, 1, &v2, 2)).await, Ok(ApplyOutcome::Applied));
        assert_eq!(p.destination().state(&e).await, Some(v2));
    }

    /// A forced write skips the order and local-edit checks, not the fence.
    pub async fn a_forced_write_skips_the_ordering_guard_but_not_the_fence(p: &Ports) {
        let e = entity("a");
        let (new, old) = (id("ev-new"), id("ev-old"));
        let (v_new, v_old) = (json!({"n": 2}), json!({"n": 1}));
        p.destination().apply(&snapshot(&new, &e, 20, &v_new, 5)).await.expect("apply");
        p.destination().record_local_edit(&e, json!({"n": 3}), at(30)).await;
        // An attempt claimed before the stored write (a smaller fencing token), delayed: nothing written.
        let stale = Change { forced: true, ..snapshot(&old, &e, 10, &v_old, 4) };
        assert!(matches!(p.destination().apply(&stale).await, Ok(ApplyOutcome::Superseded { .. })));
        assert_eq!(p.destination().state(&e).await, Some(json!({"n": 3})));
        // The operator's re-drive claims the entity again: a newer token, written though older and over a local edit.
        let forced = Change { forced: true, ..snapshot(&old, &e, 10, &v_old, 6) };
        assert_eq!(p.destination().apply(&forced).await, Ok(ApplyOutcome::Applied));
        assert_eq!(p.destination().state(&e).await, Some(v_old));
    }

    /// What the destination holds reads back: state, order key, event; a delete as deleted; nothing as `None`.
    pub async fn a_destination_reads_back_what_it_holds(p: &Ports) {
        let e = entity("a");
        let (first, gone) = (id("ev-1"), id("ev-2"));
        let v = json!({"n": 1});
        assert_eq!(p.destination().read(&e).await, Ok(None));
        p.destination().apply(&snapshot(&first, &e, 10, &v, 1)).await.expect("apply");
        let held = p.destination().read(&e).await.expect("read").expect("held");
        assert_eq!((held.state, held.deleted, held.order), (v, false, Some(order(10))));
        assert_eq!(held.event_id.as_deref(), Some("ev-1"));
        let delete = Change { kind: Kind::Delete, ..snapshot(&gone, &e, 20, &Value::Null, 2) };
        p.destination().apply(&delete).await.expect("delete");
        let held = p.destination().read(&e).await.expect("read").expect("held");
        assert_eq!((held.state, held.deleted, held.order), (Value::Null, true, Some(order(20))));
    }

    /// A forced snapshot is written again even though this very event had its effect (an operator's repair: the
    /// state it put there was changed or lost since), keeping one effect; a forced delta is still added only once.
    pub async fn a_forced_snapshot_is_written_again_over_its_own_effect(p: &Ports) {
        let e = entity("a");
        let event = id("ev-1");
        let v = json!({"n": 1});
        p.destination().apply(&snapshot(&event, &e, 10, &v, 1)).await.expect("apply");
        p.destination().record_local_edit(&e, json!({"n": 99}), at(5)).await;
        let repair = Change { forced: true, ..snapshot(&event, &e, 10, &v, 2) };
        assert_eq!(p.destination().apply(&repair).await, Ok(ApplyOutcome::Applied));
        assert_eq!(p.destination().state(&e).await, Some(v));
        assert_eq!(p.destination().effects_of(&event).await, 1);
        let stock = entity_of("inventory_level", "s1");
        let (added, amount) = (id("ev-d"), json!({"delta": 4}));
        p.destination().apply(&delta(&added, &stock, 1, &amount)).await.expect("apply");
        let again = Change { forced: true, ..delta(&added, &stock, 1, &amount) };
        assert_eq!(p.destination().apply(&again).await, Ok(ApplyOutcome::AlreadyApplied));
        assert_eq!(p.destination().state(&stock).await, Some(json!({"quantity": 4})));
    }

    /// Deltas all count, whatever order they arrive in, and each only once.
    pub async fn in_order_deltas_add_up_out_of_order(p: &Ports) {
        let stock = entity_of("inventory_level", "s1");
        let ids: Vec<EventId> = (1..=4).map(|i| id(&format!("ev-{i}"))).collect();
        let payloads = [json!({"delta": 10}), json!({"delta": -3}), json!({"delta": 5}), json!({"delta": 1})];
        for i in [2usize, 0, 3, 1] {
            let change = delta(&ids[i], &stock, i as i64 + 1, &payloads[i]);
            assert_eq!(p.destination().apply(&change).await, Ok(ApplyOutcome::Applied), "event {i}");
        }
        assert_eq!(p.destination().state(&stock).await, Some(json!({"quantity": 13})));
        let replay = delta(&ids[0], &stock, 1, &payloads[0]);
        assert_eq!(p.destination().apply(&replay).await, Ok(ApplyOutcome::AlreadyApplied));
        assert_eq!(p.destination().state(&stock).await, Some(json!({"quantity": 13})));
    }

    /// A delta without an integer `delta` is refused for good.
    pub async fn a_delta_without_an_integer_delta_is_refused_for_good(p: &Ports) {
        let stock = entity_of("inventory_level", "s1");
        let bad = id("ev-bad");
        for payload in [json!({"quantity": 3}), json!({"delta": "3"}), json!({"delta": 1.5}), json!(null)] {
            let outcome = p.destination().apply(&delta(&bad, &stock, 1, &payload)).await;
            assert!(matches!(outcome, Err(DestinationError::Permanent(_))), "{payload}: {outcome:?}");
        }
        assert_eq!(p.destination().state(&stock).await, None);
    }

    /// A delta keeps its payload's other fields in the state; the latest event by order key sets them, an older
    /// one (arriving late) only adds its amount; each event has one effect.
    pub async fn a_delta_keeps_its_other_fields_and_the_latest_by_order_key_wins(p: &Ports) {
        let stock = entity_of("inventory_level", "s1");
        let (one, two, three) = (id("ev-1"), id("ev-2"), id("ev-3"));
        let newer = json!({"delta": 5, "location": "A", "reason": "restock"});
        let older = json!({"delta": -2, "location": "B", "note": "late"});
        let latest = json!({"delta": 1, "reason": "sale"});
        assert_eq!(p.destination().apply(&delta(&two, &stock, 20, &newer)).await, Ok(ApplyOutcome::Applied));
        assert_eq!(
            p.destination().state(&stock).await,
            Some(json!({"quantity": 5, "location": "A", "reason": "restock"}))
        );
        assert_eq!(p.destination().apply(&delta(&one, &stock, 10, &older)).await, Ok(ApplyOutcome::Applied));
        let kept = json!({"quantity": 3, "location": "A", "reason": "restock"});
        assert_eq!(p.destination().state(&stock).await, Some(kept.clone()), "the older event only adds");
        assert_eq!(p.destination().apply(&delta(&one, &stock, 10, &older)).await, Ok(ApplyOutcome::AlreadyApplied));
        assert_eq!(p.destination().state(&stock).await, Some(kept));
        assert_eq!(p.destination().apply(&delta(&three, &stock, 30, &latest)).await, Ok(ApplyOutcome::Applied));
        assert_eq!(
            p.destination().state(&stock).await,
            Some(json!({"quantity": 4, "location": "A", "reason": "sale"}))
        );
        for event in [&one, &two, &three] {
            assert_eq!(p.destination().effects_of(event).await, 1, "{event}");
        }
    }

    /// The configured delta fields of a type add into their totals (a payload field named like a total is not
    /// copied over the sum); a payload without an integer in one of them is refused and changes nothing.
    pub async fn configured_delta_fields_add_into_their_totals(p: &Ports) {
        let stock = entity_of("inventory_adjustment", "s1");
        let (a, b, c, d) = (id("ev-a"), id("ev-b"), id("ev-c"), id("ev-d"));
        let first = json!({"delta": 10, "reserved_delta": 2, "quantity": 999, "bin": "7"});
        assert_eq!(p.destination().apply(&delta(&a, &stock, 10, &first)).await, Ok(ApplyOutcome::Applied));
        assert_eq!(p.destination().state(&stock).await, Some(json!({"quantity": 10, "reserved": 2, "bin": "7"})));
        let release = json!({"reserved_delta": -1});
        assert_eq!(p.destination().apply(&delta(&b, &stock, 5, &release)).await, Ok(ApplyOutcome::Applied));
        let after = json!({"quantity": 10, "reserved": 1, "bin": "7"});
        assert_eq!(p.destination().state(&stock).await, Some(after.clone()));
        let text = json!({"delta": "3"});
        let refused = p.destination().apply(&delta(&c, &stock, 20, &text)).await;
        assert!(matches!(refused, Err(DestinationError::Permanent(_))), "{refused:?}");
        assert_eq!(p.destination().state(&stock).await, Some(after));
        assert_eq!(p.destination().effects_of(&c).await, 0);
        let sale = json!({"delta": -4, "bin": "8"});
        assert_eq!(p.destination().apply(&delta(&d, &stock, 20, &sale)).await, Ok(ApplyOutcome::Applied));
        assert_eq!(p.destination().apply(&delta(&a, &stock, 10, &first)).await, Ok(ApplyOutcome::AlreadyApplied));
        assert_eq!(p.destination().state(&stock).await, Some(json!({"quantity": 6, "reserved": 1, "bin": "8"})));
        let unconfigured = entity_of("inventory_level", "s1");
        let refused = p.destination().apply(&delta(&id("ev-e"), &unconfigured, 1, &release)).await;
        assert!(matches!(refused, Err(DestinationError::Permanent(ref m)) if m.contains("`delta`")), "{refused:?}");
    }

    /// A delta that would take a total past 64 bits is refused for good, whether it is the latest event or an
    /// older one, and changes nothing; the totals stay usable.
    pub async fn an_overflowing_delta_is_refused_for_good_and_changes_nothing(p: &Ports) {
        for (name, start, over, back) in [("up", i64::MAX - 1, 2, -1), ("down", i64::MIN + 1, -2, 1)] {
            let stock = entity_of("inventory_level", name);
            let near = json!({ "delta": start });
            let first = id(&format!("ev-{name}-first"));
            assert_eq!(p.destination().apply(&delta(&first, &stock, 20, &near)).await, Ok(ApplyOutcome::Applied));
            let too_far = json!({ "delta": over });
            for (event, seconds) in [(format!("ev-{name}-older"), 10), (format!("ev-{name}-newer"), 30)] {
                let event = id(&event);
                let outcome = p.destination().apply(&delta(&event, &stock, seconds, &too_far)).await;
                assert!(
                    matches!(outcome, Err(DestinationError::Permanent(ref m)) if m.contains("overflow")),
                    "{outcome:?}"
                );
                assert_eq!(p.destination().effects_of(&event).await, 0);
            }
            assert_eq!(p.destination().state(&stock).await, Some(json!({ "quantity": start })), "{name}");
            let fine = json!({ "delta": back });
            assert_eq!(
                p.destination().apply(&delta(&id(&format!("ev-{name}-back")), &stock, 40, &fine)).await,
                Ok(ApplyOutcome::Applied)
            );
            assert_eq!(p.destination().state(&stock).await, Some(json!({ "quantity": start + back })), "{name}");
        }
    }

    /// A local edit sets the totals: later deltas, newer or older, add to the edited values.
    pub async fn deltas_after_a_local_edit_add_to_the_edited_totals(p: &Ports) {
        let stock = entity_of("inventory_level", "s1");
        let counted = json!({"delta": 5, "location": "A"});
        assert_eq!(p.destination().apply(&delta(&id("ev-1"), &stock, 10, &counted)).await, Ok(ApplyOutcome::Applied));
        p.destination().record_local_edit(&stock, json!({"quantity": 100, "location": "B"}), at(15)).await;
        assert_eq!(p.destination().state(&stock).await, Some(json!({"quantity": 100, "location": "B"})));
        let plus = json!({"delta": 1});
        assert_eq!(p.destination().apply(&delta(&id("ev-2"), &stock, 20, &plus)).await, Ok(ApplyOutcome::Applied));
        assert_eq!(p.destination().state(&stock).await, Some(json!({"quantity": 101, "location": "B"})));
        let minus = json!({"delta": -1});
        assert_eq!(p.destination().apply(&delta(&id("ev-3"), &stock, 12, &minus)).await, Ok(ApplyOutcome::Applied));
        assert_eq!(p.destination().state(&stock).await, Some(json!({"quantity": 100, "location": "B"})));
        p.destination().record_local_edit(&stock, json!({"quantity": 7}), at(25)).await;
        let late = json!({"delta": 2, "location": "C"});
        assert_eq!(p.destination().apply(&delta(&id("ev-4"), &stock, 11, &late)).await, Ok(ApplyOutcome::Applied));
        assert_eq!(p.destination().state(&stock).await, Some(json!({"quantity": 9})), "an older event only adds");
    }

    /// A change whose dependency does not exist yet is refused as a missing dependency and writes nothing; once
    /// the dependency is applied, the change is.
    pub async fn a_change_whose_dependency_is_missing_is_refused_until_it_exists(p: &Ports) {
        let (level, product) = (entity_of("inventory_level", "l1"), entity("p1"));
        let (ev_level, ev_product) = (id("ev-level"), id("ev-product"));
        let (v_level, v_product) = (json!({"product_id": "p1", "available": 3}), json!({"title": "P1"}));
        let needs = ApplyOutcome::MissingDependency { key: product.clone(), request: None };
        assert_eq!(p.destination().apply(&snapshot(&ev_level, &level, 1, &v_level, 1)).await, Ok(needs));
        assert_eq!(p.destination().state(&level).await, None);
        assert_eq!(p.destination().effects_of(&ev_level).await, 0);
        let applied = p.destination().apply(&snapshot(&ev_product, &product, 1, &v_product, 1)).await;
        assert_eq!(applied, Ok(ApplyOutcome::Applied));
        let retried = Change { attempt: 2, ..snapshot(&ev_level, &level, 1, &v_level, 2) };
        assert_eq!(p.destination().apply(&retried).await, Ok(ApplyOutcome::Applied));
        assert_eq!(p.destination().state(&level).await, Some(v_level));
    }

    /// Two writers of two events of one entity, each event delivered twice, all at once (rounds of it): the newer
    /// event wins, every call succeeds, and each event has at most one effect (the newer exactly one).
    pub async fn concurrent_writers_of_one_entity_let_the_newer_win(p: &Ports) {
        let destination = p.destination.clone().expect("this backend has no destination adapter");
        for round in 0..4 {
            let e = entity(&format!("race-{round}"));
            let (old, new) = (id(&format!("ev-old-{round}")), id(&format!("ev-new-{round}")));
            let (v_old, v_new) = (json!({"by": "old", "round": round}), json!({"by": "new", "round": round}));
            let barrier = Arc::new(tokio::sync::Barrier::new(4));
            let mut tasks = tokio::task::JoinSet::new();
            for (event, seconds, payload, fence) in
                [(&old, 10, &v_old, 1), (&new, 20, &v_new, 2), (&old, 10, &v_old, 1), (&new, 20, &v_new, 2)]
            {
                let (destination, barrier, e) = (Arc::clone(&destination), Arc::clone(&barrier), e.clone());
                let (event, payload) = (event.clone(), payload.clone());
                tasks.spawn(async move {
                    barrier.wait().await;
                    let outcome = destination.apply(&snapshot(&event, &e, seconds, &payload, fence)).await;
                    (event, outcome)
                });
            }
            let (mut old_applied, mut new_applied) = (0, 0);
            while let Some(joined) = tasks.join_next().await {
                let (event, outcome) = joined.expect("task");
                match outcome {
                    Ok(ApplyOutcome::Applied) if event == new => new_applied += 1,
                    Ok(ApplyOutcome::Applied) => old_applied += 1,
                    Ok(ApplyOutcome::AlreadyApplied) => {}
                    Ok(ApplyOutcome::Superseded { by }) if event == old => assert_eq!(by, new.to_string()),
                    other => panic!("round {round}, {event}: unexpected {other:?}"),
                }
            }
            assert_eq!(
                (new_applied, old_applied <= 1),
                (1, true),
                "round {round}: applied {new_applied}/{old_applied}"
            );
            assert_eq!(destination.state(&e).await, Some(v_new), "round {round}: the newer event wins");
            assert_eq!(destination.effects_of(&new).await, 1, "round {round}");
            assert_eq!(destination.effects_of(&old).await, old_applied, "round {round}");
        }
    }
}

/// Checks of the mirrors' own methods (beyond the port), on either backend.
pub mod mirror_checks {
    use super::build::*;
    use super::*;

    /// Rows list by key with a prefix and a limit, deletes keep a `null` state, local edits are rows too, effects
    /// list in order, and a record prints as JSON.
    pub async fn the_mirror_lists_records_and_marks_deletes(mirror: &dyn MirrorLike) {
        let (a, b, stock) = (entity("a"), entity("b"), entity_of("inventory_level", "s1"));
        let (ev_a, ev_b, ev_del) = (id("ev-a"), id("ev-b"), id("ev-del"));
        let v = json!({"name": "x"});
        mirror.apply(&snapshot(&ev_a, &a, 1, &v, 1)).await.expect("apply");
        mirror.apply(&snapshot(&ev_b, &b, 1, &v, 1)).await.expect("apply");
        let null = Value::Null;
        let delete = Change {
            kind: Kind::Delete,
            content_hash: content_hash(Kind::Delete, &null),
            ..snapshot(&ev_del, &b, 2, &null, 2)
        };
        assert_eq!(mirror.apply(&delete).await, Ok(ApplyOutcome::Applied));
        mirror.local_edit(&stock, json!({"quantity": 1}), at(5)).await.expect("edit");

        let b_now = mirror.row(&b).await.expect("get").expect("row");
        assert!(b_now.deleted);
        assert_eq!((b_now.state, b_now.event_id.as_deref(), b_now.fence), (Value::Null, Some("ev-del"), 2));
        assert_eq!(b_now.order, Some(order(2)));
        assert_eq!(b_now.applied_at, t0());
        assert_eq!(mirror.row(&entity("never")).await.expect("get"), None);

        let products = mirror.rows(Some("default/shop/product/"), 0).await.expect("list");
        assert_eq!(
            products.iter().map(|r| r.entity_key.as_str()).collect::<Vec<_>>(),
            ["default/shop/product/a", "default/shop/product/b"]
        );
        let first_two = mirror.rows(None, 2).await.expect("list");
        assert_eq!(
            first_two.iter().map(|r| r.entity_key.as_str()).collect::<Vec<_>>(),
            ["default/shop/inventory_level/s1", "default/shop/product/a"]
        );
        assert_eq!(mirror.row_count().await.expect("count"), 3);
        let edit = mirror.row(&stock).await.expect("get").expect("row");
        assert_eq!((edit.event_id.as_deref(), edit.modified_at), (Some("local-edit"), Some(at(5))));
        assert_eq!((edit.order, edit.content_hash.as_deref(), edit.fence), (None, None, 0));
        let effects = mirror.all_effects().await.expect("effects");
        assert_eq!(effects.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(), ["ev-a", "ev-b", "ev-del"]);
        assert_eq!(effects[2].1, "default/shop/product/b");
        // The record prints as JSON for the CLI.
        let printed = serde_json::to_value(&edit).expect("json");
        assert_eq!(printed["entity_key"], "default/shop/inventory_level/s1");
        assert_eq!(printed["state"], json!({"quantity": 1}));
    }

    /// A local edit keeps the row's order key and fence, clears its content hash, and un-deletes it.
    pub async fn a_local_edit_keeps_the_order_key_and_fence(mirror: &dyn MirrorLike) {
        let e = entity("a");
        let (ev, null) = (id("ev-del"), Value::Null);
        let delete = Change {
            kind: Kind::Delete,
            content_hash: content_hash(Kind::Delete, &null),
            ..snapshot(&ev, &e, 10, &null, 4)
        };
        assert_eq!(mirror.apply(&delete).await, Ok(ApplyOutcome::Applied));
        mirror.local_edit(&e, json!({"n": 1}), at(20)).await.expect("edit");
        let row = mirror.row(&e).await.expect("get").expect("row");
        assert_eq!((row.order, row.fence, row.content_hash, row.deleted), (Some(order(10)), 4, None, false));
        assert_eq!((row.state, row.event_id.as_deref()), (json!({"n": 1}), Some("local-edit")));
        // The same snapshot again is no longer "already applied" by content: the edit is newer, so it is refused.
        let outcome = mirror.apply(&snapshot(&id("ev-again"), &e, 10, &null, 4)).await;
        assert!(matches!(outcome, Ok(ApplyOutcome::Superseded { .. })), "{outcome:?}");
    }
}

/// The checks every destination passes: the reference mirror on each backend, and the HTTP destination in front of it.
macro_rules! for_every_destination_check {
    ($runner:ident) => {
        $runner!(
            the_mirror_applies_a_newer_snapshot,
            the_mirror_refuses_an_older_write,
            the_mirror_refuses_a_write_older_than_a_local_edit,
            the_mirror_refuses_a_fenced_off_writer,
            the_mirror_applies_each_event_at_most_once,
            an_equal_snapshot_is_already_applied,
            a_tie_with_other_content_is_applied,
            a_forced_write_skips_the_ordering_guard_but_not_the_fence,
            a_destination_reads_back_what_it_holds,
            a_forced_snapshot_is_written_again_over_its_own_effect,
            in_order_deltas_add_up_out_of_order,
            a_delta_without_an_integer_delta_is_refused_for_good,
            a_change_whose_dependency_is_missing_is_refused_until_it_exists,
            concurrent_writers_of_one_entity_let_the_newer_win,
        );
    };
}

/// Every suite check, named once: `for_every_check!(runner)` invokes `runner!` with all of them (the stores', the
/// queues', the payload stores', the mirror's own, and [`for_every_destination_check`]'s), so each backend runs the
/// same checks (`on_embedded` below, `on_aws` in `mod aws`).
macro_rules! for_every_check {
    ($runner:ident) => {
        $runner!(
            a_stored_event_reads_back_unchanged,
            inserting_an_existing_event_is_a_conflict,
            inserting_an_existing_head_is_a_conflict,
            an_update_of_a_stale_version_is_a_conflict,
            an_update_that_gives_an_event_its_entity_lists_it_under_that_entity,
            a_failed_expectation_rolls_back_the_whole_commit,
            writes_committed_each_in_turn_stop_at_the_first_that_fails,
            a_long_history_reads_back_whole_and_the_record_keeps_its_newest_entries,
            concurrent_commits_on_one_head_let_exactly_one_win,
            events_of_one_entity_list_in_order_key_order,
            parked_events_of_one_entity_list_in_order_key_order,
            events_list_newest_first_with_filters,
            events_are_counted_by_status,
            events_are_counted_as_they_are_listed,
            an_empty_time_window_lists_and_counts_nothing,
            a_processing_event_is_listed_and_counted_until_it_settles,
            an_errored_event_is_listed_and_counted_until_its_retry_claims_it,
            a_batch_read_ahead_is_each_events_own_read,
            an_event_and_its_head_read_together_as_alone,
            expired_leases_are_found_oldest_first,
            a_lease_moved_later_is_not_expired_before_it_ends,
            heads_are_listed_page_by_page,
            heads_to_verify_are_those_flagged,
            a_received_message_is_hidden_until_its_visibility_ends,
            receive_returns_at_most_max_messages_oldest_first,
            a_deleted_message_is_gone,
            a_stale_receipt_handle_deletes_nothing,
            sending_to_a_queue_the_backend_lacks_is_refused,
            a_waiting_receive_returns_a_message_sent_while_it_waits,
            a_waiting_receive_with_nothing_to_receive_returns_empty_when_its_wait_is_over,
            a_waiting_receive_gets_a_message_whose_visibility_ends_meanwhile,
            ending_the_waits_takes_nothing_and_a_later_receive_waits_as_before,
            changing_visibility_moves_the_next_delivery,
            a_message_received_max_receives_times_moves_to_the_dead_letter_queue,
            a_dead_lettered_message_is_not_delivered_again,
            dead_letters_are_received_and_returned_to_the_queue,
            a_released_dead_letter_is_visible_again_at_once,
            a_deleted_dead_letter_is_gone_for_good,
            waiting_events_are_listed_by_their_dependency,
            depth_counts_every_state,
            a_delayed_message_waits_for_its_delay,
            a_payload_reads_back_byte_for_byte,
            storing_the_same_payload_twice_gives_the_same_reference,
            a_corrupt_payload_is_reported_as_corrupt,
            a_missing_payload_is_not_found,
            a_tampered_payload_file_is_reported_as_corrupt,
            a_batch_of_payloads_reads_back_body_by_body,
            storing_the_same_batch_twice_gives_the_same_references,
            a_corrupted_byte_in_one_batched_body_is_corrupt_for_that_body_only,
            a_delta_keeps_its_other_fields_and_the_latest_by_order_key_wins,
            configured_delta_fields_add_into_their_totals,
            an_overflowing_delta_is_refused_for_good_and_changes_nothing,
            deltas_after_a_local_edit_add_to_the_edited_totals,
        );
        for_every_destination_check!($runner);
    };
}

// ---- The HTTP destination ----

/// The destination checks over the HTTP destination: signed requests to a loopback receiver that verifies them and
/// stores through the embedded mirror behind the dependency rule, answering as the protocol says.
pub mod http {
    use super::*;
    use crate::support::receiver::Receiver;
    use synctrail::destination::http::Secret;

    const SECRET: &[u8] = b"conformance-secret-0123456789";

    /// One `#[tokio::test]` per destination check, over HTTP to a fresh receiver on a fresh embedded backend.
    macro_rules! on_http {
        ($($check:ident),* $(,)?) => {$(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let fixture = Fixture::new();
                let mirror: Arc<dyn MirrorView> = fixture.embedded.mirror.clone();
                let receiver = Receiver::start(with_dependency_rule(mirror.clone()), fixture.clock.clone(), Some(SECRET));
                let config = receiver.config().with_secret(Secret::new(SECRET));
                let http = Arc::new(receiver.destination(config, fixture.clock.clone()));
                let ports = Ports { destination: Some(Arc::new(Probed { apply: http, mirror })), ..fixture.ports() };
                suite::$check(&ports).await;
                assert!(!receiver.seen().is_empty(), "the changes went over HTTP");
            }
        )*};
    }

    for_every_destination_check!(on_http);
}

// ---- The embedded backend ----

use synctrail::store::OutgoingMessage;
use tempfile::TempDir;

/// A fresh embedded backend in a temporary home, with a manual clock at t0.
struct Fixture {
    home: TempDir,
    clock: Arc<ManualClock>,
    embedded: Embedded,
}

fn options() -> EmbeddedOptions {
    EmbeddedOptions { max_receives: MAX_RECEIVES, delta_fields: build::delta_fields(), ..EmbeddedOptions::default() }
}

impl Fixture {
    fn new() -> Self {
        let home = tempfile::tempdir().expect("temp dir");
        let clock = Arc::new(ManualClock::new(build::t0()));
        let embedded = Embedded::open(home.path(), clock.clone(), options()).expect("open");
        Self { home, clock, embedded }
    }

    fn ports(&self) -> Ports {
        Ports {
            store: self.embedded.store.clone(),
            queue: self.embedded.queue.clone(),
            payloads: self.embedded.payloads.clone(),
            destination: Some(Probed::mirror(self.embedded.mirror.clone())),
            clock: self.clock.clone(),
            queue_traits: QueueTraits {
                server_clock: false,
                ordered: true,
                reports_oldest: true,
                isolated_writes: true,
                batch_trace_headers: true,
            },
            store_reads_ahead: false,
            tamper: Arc::new(ObjectTamper { payloads: Arc::clone(&self.embedded.payloads) }),
        }
    }
}

/// Payload objects in the embedded payload store, read and overwritten behind its back.
struct ObjectTamper {
    payloads: Arc<synctrail::store::sqlite::PayloadDir>,
}

#[async_trait]
impl PayloadTamper for ObjectTamper {
    async fn read_raw(&self, key: &str) -> Vec<u8> {
        self.payloads.read_object(key).await.expect("read payload object").expect("payload object exists")
    }

    async fn write_raw(&self, key: &str, bytes: Vec<u8>) {
        self.payloads.write_object(key, bytes).await.expect("overwrite payload object")
    }
}

/// One `#[tokio::test]` per suite check, run on a fresh embedded backend.
macro_rules! on_embedded {
    ($($check:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $check() {
            let fixture = Fixture::new();
            suite::$check(&fixture.ports()).await;
        }
    )*};
}

for_every_check!(on_embedded);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_worth_of_pools_share_one_file() {
    use synctrail::store::Write;
    let fixture = Fixture::new();
    let other = Embedded::open(fixture.home.path(), fixture.clock.clone(), options()).expect("second open");
    let e = build::entity("shared");

    // What one pool commits, the other reads, and compare-and-set holds across both.
    let record = build::record("ev-1", Some(&e), Some(build::order(1)), build::t0());
    fixture.embedded.store.commit(vec![Write::event(record.clone())]).await.expect("commit via first");
    assert_eq!(other.store.get_event(&build::id("ev-1")).await.expect("get"), Some(build::stored(record.clone())));
    assert!(matches!(other.store.commit(vec![Write::event(record)]).await, Err(StoreError::Conflict(_))));

    // Messages sent by one process are received by the other, once.
    fixture.embedded.queue.send(vec![OutgoingMessage::new("from send")]).await.expect("send");
    let got = other.queue.receive(10, Duration::seconds(30)).await.expect("receive");
    assert_eq!(got.len(), 1);
    assert!(fixture.embedded.queue.receive(10, Duration::seconds(30)).await.expect("receive").is_empty());
    fixture.embedded.queue.delete(&[got[0].receipt_handle.clone()]).await.expect("delete via the other pool");
    assert_eq!(other.queue.depth().await.expect("depth").in_flight, 0);

    // Concurrent writers from both pools: every commit lands.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..40 {
        let store = if i % 2 == 0 { fixture.embedded.store.clone() } else { other.store.clone() };
        tasks.spawn(async move {
            let r = build::record(&format!("ev-c{i}"), None, None, build::at(i));
            store.commit(vec![Write::event(r)]).await
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.expect("task").expect("commit");
    }
    let counts = other.store.count_by_status().await.expect("count");
    assert_eq!(counts.get(&Status::Received), Some(&41));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_receive_gets_what_another_process_sends_to_the_same_file() {
    let fixture = Fixture::new();
    let other = Embedded::open(fixture.home.path(), fixture.clock.clone(), options()).expect("second open");
    let wait = std::time::Duration::from_secs(10);
    let started = std::time::Instant::now();
    // The other pool's queue shares nothing with this one but the file: its send can't wake this wait directly.
    let (got, sent) = tokio::join!(fixture.embedded.queue.receive_waiting(10, Duration::seconds(30), wait), async {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        other.queue.send(vec![OutgoingMessage::new("from the other process")]).await.expect("send")
    });
    let got = got.expect("receive");
    assert_eq!(got.iter().map(|m| m.message_id.as_str()).collect::<Vec<_>>(), [sent[0].as_str()]);
    assert!(started.elapsed() < wait, "returned only when its wait was over: {:?}", started.elapsed());
}

/// Told to end its wait ([`Queue::end_waits`]), a receive that waits returns at once with nothing, and a message
/// sent afterwards is visible to the next receive (what a stopping event source relies on to return promptly).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_receive_told_to_end_its_wait_returns_at_once_having_taken_nothing() {
    use std::future::Future;
    let fixture = Fixture::new();
    let queue = &fixture.embedded.queue;
    let wait = std::time::Duration::from_secs(3600);
    let mut waiting = std::pin::pin!(queue.receive_waiting(10, Duration::seconds(30), wait));
    let first = std::future::poll_fn(|cx| std::task::Poll::Ready(waiting.as_mut().poll(cx))).await;
    assert!(first.is_pending(), "nothing to receive: it waits");
    queue.end_waits();
    let ended = tokio::time::timeout(std::time::Duration::from_secs(60), waiting).await;
    let got = ended.expect("ended long before its hour").expect("receive");
    assert!(got.is_empty(), "{got:?}");
    let sent = queue.send(vec![OutgoingMessage::new("after the end")]).await.expect("send");
    let next = queue.receive(10, Duration::seconds(30)).await.expect("receive");
    assert_eq!(next.iter().map(|m| m.message_id.as_str()).collect::<Vec<_>>(), [sent[0].as_str()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopening_a_home_keeps_everything() {
    use synctrail::store::Write;
    let fixture = Fixture::new();
    let e = build::entity("kept");
    let record = build::record("ev-1", Some(&e), Some(build::order(1)), build::t0());
    fixture.embedded.store.commit(vec![Write::event(record.clone())]).await.expect("commit");
    fixture.embedded.queue.send(vec![OutgoingMessage::new("kept")]).await.expect("send");
    let payload = fixture.embedded.payloads.put(b"kept", build::t0()).await.expect("put");
    let home = fixture.home.path().to_owned();
    let clock = fixture.clock.clone();
    drop(fixture.embedded);

    let reopened = Embedded::open(&home, clock, options()).expect("reopen");
    assert_eq!(reopened.store.get_event(&build::id("ev-1")).await.expect("get"), Some(build::stored(record)));
    assert_eq!(reopened.queue.depth().await.expect("depth").visible, 1);
    assert_eq!(reopened.payloads.get(&payload).await.expect("get"), b"kept");
    assert!(home.join("synctrail.db").is_file());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payload_objects_are_named_by_their_sha256() {
    let fixture = Fixture::new();
    let payload = fixture.embedded.payloads.put(b"{\"price\": 10}", build::t0()).await.expect("put");
    let sha = &payload.sha256;
    assert_eq!(payload.key, format!("payloads/{}/{sha}.zst", &sha[..2]));
    let stored = fixture.embedded.payloads.read_object(&payload.key).await.expect("read").expect("stored");
    assert_eq!(zstd_decoded(&stored), b"{\"price\": 10}");
}

fn zstd_decoded(bytes: &[u8]) -> Vec<u8> {
    zstd::decode_all(bytes).expect("valid zstd")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_can_be_listed_redriven_and_survive_a_purge() {
    let fixture = Fixture::new();
    let queue = &fixture.embedded.queue;
    queue.send(vec![OutgoingMessage::new("poison"), OutgoingMessage::new("fine")]).await.expect("send");
    let got = queue.receive(1, Duration::seconds(10)).await.expect("receive").remove(0);
    queue.dead_letter(&got.receipt_handle, &got.body, None).await.expect("dead letter");

    let dead = queue.dead_letter_messages(0).await.expect("list");
    assert_eq!(dead.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(), ["poison"]);
    assert_eq!(dead[0].message_id, got.message_id);

    assert_eq!(queue.purge().await.expect("purge"), 1, "only the live message");
    assert_eq!(queue.depth().await.expect("depth").dead_letters, 1);

    assert_eq!(queue.redrive_dead_letters(0).await.expect("redrive"), 1);
    assert!(queue.dead_letter_messages(0).await.expect("list").is_empty());
    let again = queue.receive(10, Duration::seconds(10)).await.expect("receive");
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].body.as_str(), again[0].receive_count), ("poison", 1), "a fresh receive count");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mirror_lists_records_and_marks_deletes() {
    let fixture = Fixture::new();
    mirror_checks::the_mirror_lists_records_and_marks_deletes(fixture.embedded.mirror.as_ref()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_edit_keeps_the_order_key_and_fence() {
    let fixture = Fixture::new();
    mirror_checks::a_local_edit_keeps_the_order_key_and_fence(fixture.embedded.mirror.as_ref()).await;
}

// ---- The AWS backend ----

/// The same checks on DynamoDB, S3 and SQS (the moto server of `scripts/with-moto.sh`).
pub mod aws {
    use super::*;
    use synctrail::store::aws::sdk::s3::primitives::ByteStream;
    use synctrail::store::aws::setup::{create_all, Created, SetupConfig};
    use synctrail::store::aws::{AwsBackend, Clients, DynamoGate, DynamoMirror, SqsQueue};

    /// The variable naming the test endpoint.
    pub const ENDPOINT_VAR: &str = "SYNCTRAIL_TEST_AWS_ENDPOINT";

    /// The endpoint of the test AWS API server; fails the test (never skips it) when there is none.
    pub fn endpoint() -> String {
        match std::env::var(ENDPOINT_VAR) {
            Ok(url) if !url.is_empty() => url,
            _ => panic!(
                "{ENDPOINT_VAR} is not set: the AWS tests need a moto server. Run them through `make test` or \
                 `scripts/with-moto.sh cargo test -p synctrail-tests --test main -- conformance aws`"
            ),
        }
    }

    /// Fresh, uniquely named AWS resources and the adapters on them.
    pub struct AwsFixture {
        /// The SDK clients (their request counter counts the set-up too; reset it before measuring).
        pub clients: Clients,
        /// What was created.
        pub created: Created,
        /// The adapters.
        pub backend: AwsBackend,
        /// The reference mirror in the same table, one request at a time.
        pub mirror: Arc<DynamoMirror>,
        /// The clock records are built with, and the mirror's (the other AWS adapters read none).
        pub clock: Arc<ManualClock>,
    }

    /// Creates a table, bucket, queue and DLQ named `st-<random>-…` (`max_receives` = [`MAX_RECEIVES`]) and
    /// connects the adapters; the queue polls without waiting, the mirror reads the manual clock.
    pub async fn fixture() -> AwsFixture {
        let endpoint = endpoint();
        let clients = Clients::connect(Some(&endpoint), Some("us-east-1")).await;
        let prefix = format!("st-{}", hex_suffix());
        let config = SetupConfig { max_receive_count: MAX_RECEIVES, ..SetupConfig::named(&prefix) };
        let created = create_all(&clients, &config).await.expect("create the AWS resources");
        let aws_config = created.config(Some(endpoint), Some("us-east-1".into()));
        let mut backend = AwsBackend::with_clients(&clients, &aws_config).await.expect("connect");
        let queue = SqsQueue::open(clients.sqs.clone(), &created.queue_url, &created.dlq_url)
            .await
            .expect("open the queue")
            .with_receive_wait(std::time::Duration::ZERO);
        backend.queue = Arc::new(queue);
        let clock = Arc::new(ManualClock::new(build::t0()));
        // One DynamoDB request at a time through the mirror's client (SDK or direct): see `DynamoGate`.
        let mut atomic = clients.clone();
        atomic.dynamodb = DynamoGate::default().wrap(&clients.dynamodb);
        let mirror = Arc::new(DynamoMirror::new(&atomic, &created.table, clock.clone(), build::delta_fields()));
        AwsFixture { clients, created, backend, mirror, clock }
    }

    fn hex_suffix() -> String {
        let bytes: [u8; 5] = rand::random();
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Objects in the payload bucket.
    struct S3Tamper {
        client: synctrail::store::aws::sdk::s3::Client,
        bucket: String,
    }

    #[async_trait]
    impl PayloadTamper for S3Tamper {
        async fn read_raw(&self, key: &str) -> Vec<u8> {
            let out = self.client.get_object().bucket(&self.bucket).key(key).send().await.expect("get object");
            out.body.collect().await.expect("object body").into_bytes().to_vec()
        }

        async fn write_raw(&self, key: &str, bytes: Vec<u8>) {
            let put = self.client.put_object().bucket(&self.bucket).key(key).body(ByteStream::from(bytes));
            put.send().await.expect("overwrite object");
        }
    }

    impl AwsFixture {
        /// The adapters behind the ports.
        pub fn ports(&self) -> Ports {
            Ports {
                store: self.backend.store.clone(),
                queue: self.backend.queue.clone(),
                payloads: self.backend.payloads.clone(),
                destination: Some(Probed::mirror(self.mirror.clone())),
                clock: self.clock.clone(),
                queue_traits: QueueTraits {
                    server_clock: true,
                    ordered: false,
                    reports_oldest: false,
                    isolated_writes: false,
                    batch_trace_headers: false,
                },
                store_reads_ahead: true,
                tamper: Arc::new(S3Tamper { client: self.clients.s3.clone(), bucket: self.created.bucket.clone() }),
            }
        }
    }

    /// One `#[tokio::test]` per suite check, run on fresh AWS resources.
    macro_rules! on_aws {
        ($($check:ident),* $(,)?) => {$(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let fixture = fixture().await;
                suite::$check(&fixture.ports()).await;
            }
        )*};
    }

    for_every_check!(on_aws);

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_mirror_lists_records_and_marks_deletes() {
        let fixture = fixture().await;
        mirror_checks::the_mirror_lists_records_and_marks_deletes(fixture.mirror.as_ref()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_local_edit_keeps_the_order_key_and_fence() {
        let fixture = fixture().await;
        mirror_checks::a_local_edit_keeps_the_order_key_and_fence(fixture.mirror.as_ref()).await;
    }

    /// The SDK retrying a mirror transaction that had committed sees its own effect: `Applied`, one effect; another
    /// call of the same event sees someone else's: `AlreadyApplied`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_retried_mirror_write_that_committed_counts_once() {
        let fixture = fixture().await;
        let mirror = &fixture.mirror;
        let (e, ev, v) = (build::entity("a"), build::id("ev-1"), json!({"n": 1}));
        let change = build::snapshot(&ev, &e, 1, &v, 1);
        assert_eq!(mirror.apply_as("commit-1", &change).await, Ok(ApplyOutcome::Applied));
        assert_eq!(mirror.apply_as("commit-1", &change).await, Ok(ApplyOutcome::Applied), "our own retry");
        assert_eq!(mirror.apply_as("commit-2", &change).await, Ok(ApplyOutcome::AlreadyApplied));
        assert_eq!(mirror.effects_of(&ev).await, 1);
        assert_eq!(mirror.state(&e).await, Some(v));
    }

    /// The same for deltas, on both shapes of the write (the latest event's rewrite, an older event's add only):
    /// the SDK retrying a committed transaction adds nothing more, and each event has one effect.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_retried_delta_that_committed_adds_once() {
        let fixture = fixture().await;
        let mirror = &fixture.mirror;
        let stock = build::entity_of("inventory_level", "s1");
        let (newer, older) = (build::id("ev-newer"), build::id("ev-older"));
        let (plus, minus) = (json!({"delta": 10, "bin": "7"}), json!({"delta": -3, "bin": "old"}));
        for (event, seconds, payload) in [(&newer, 20, &plus), (&older, 10, &minus)] {
            let change = build::delta(event, &stock, seconds, payload);
            assert_eq!(mirror.apply_as(&format!("c-{event}"), &change).await, Ok(ApplyOutcome::Applied));
            assert_eq!(
                mirror.apply_as(&format!("c-{event}"), &change).await,
                Ok(ApplyOutcome::Applied),
                "our own retry"
            );
            assert_eq!(mirror.apply_as("someone-else", &change).await, Ok(ApplyOutcome::AlreadyApplied));
            assert_eq!(mirror.effects_of(event).await, 1);
        }
        assert_eq!(mirror.state(&stock).await, Some(json!({"quantity": 7, "bin": "7"})));
    }

    /// A delta costs one `BatchGetItem` and one `TransactWriteItems`, newer or older; its total is a number
    /// attribute that DynamoDB adds to (`total#quantity`), outside the JSON body.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_delta_costs_one_read_and_one_transaction_and_adds_to_a_number_attribute() {
        use synctrail::store::aws::sdk::dynamodb::types::AttributeValue;
        let fixture = fixture().await;
        let (mirror, requests) = (&fixture.mirror, &fixture.clients.requests);
        let stock = build::entity_of("inventory_level", "s1");
        for (event, seconds, amount) in [("ev-1", 20, 5), ("ev-2", 10, 2), ("ev-3", 30, -1)] {
            let payload = json!({ "delta": amount, "by": event });
            requests.reset();
            let event_id = build::id(event);
            let change = build::delta(&event_id, &stock, seconds, &payload);
            assert_eq!(mirror.apply(&change).await, Ok(ApplyOutcome::Applied));
            assert_eq!(
                (requests.get("DynamoDB", "BatchGetItem"), requests.get("DynamoDB", "TransactWriteItems")),
                (1, 1),
                "{event}: {:?}",
                requests.snapshot()
            );
            assert_eq!(requests.total(), 2, "{event}");
        }
        let item = fixture
            .clients
            .dynamodb
            .get_item()
            .table_name(&fixture.created.table)
            .key("pk", AttributeValue::S(format!("MIRROR#{stock}")))
            .key("sk", AttributeValue::S("MIRROR".into()))
            .consistent_read(true)
            .send()
            .await
            .expect("get the row")
            .item
            .expect("the row");
        assert_eq!(item.get("total#quantity"), Some(&AttributeValue::N("6".into())));
        assert_eq!(item.get("body"), Some(&AttributeValue::S(r#"{"by":"ev-3"}"#.into())));
    }

    /// DynamoDB requests per change: applied = one `BatchGetItem` + one `TransactWriteItems`; refused or
    /// repeated = the `BatchGetItem` only. Mirror items stay out of the event store's listings.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_mirror_change_costs_one_read_and_at_most_one_transaction() {
        use synctrail::store::EventQuery;
        let fixture = fixture().await;
        let (mirror, requests) = (&fixture.mirror, &fixture.clients.requests);
        let e = build::entity("a");
        let (new, old) = (build::id("ev-new"), build::id("ev-old"));
        let (v_new, v_old) = (json!({"n": 2}), json!({"n": 1}));
        requests.reset();
        assert_eq!(mirror.apply(&build::snapshot(&new, &e, 20, &v_new, 1)).await, Ok(ApplyOutcome::Applied));
        assert_eq!(
            (requests.get("DynamoDB", "BatchGetItem"), requests.get("DynamoDB", "TransactWriteItems")),
            (1, 1),
            "{:?}",
            requests.snapshot()
        );
        assert_eq!(requests.total(), 2);
        requests.reset();
        let refused = mirror.apply(&build::snapshot(&old, &e, 10, &v_old, 1)).await;
        assert_eq!(refused, Ok(ApplyOutcome::Superseded { by: "ev-new".into() }));
        let repeated = mirror.apply(&build::snapshot(&new, &e, 20, &v_new, 1)).await;
        assert_eq!(repeated, Ok(ApplyOutcome::AlreadyApplied));
        assert_eq!((requests.get("DynamoDB", "BatchGetItem"), requests.total()), (2, 2), "{:?}", requests.snapshot());
        let listed = fixture.backend.store.list_events(&EventQuery::default()).await.expect("list events");
        assert!(listed.is_empty(), "{listed:?}");
        assert!(fixture.backend.store.count_by_status().await.expect("count").is_empty());
    }

    /// An event retried thirty times stays one write unit per write: its record's item under 1 KB, its oldest
    /// history entries in a few items of their own, each under 1 KB (spec §9 "Old history entries kept apart").
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_record_retried_thirty_times_stays_under_one_kb_with_its_oldest_entries_in_a_few_parts() {
        use synctrail::store::aws::meter::size::{item_size, write_units};
        use synctrail::store::aws::sdk::dynamodb::types::AttributeValue;
        let fixture = fixture().await;
        suite::a_long_history_reads_back_whole_and_the_record_keeps_its_newest_entries(&fixture.ports()).await;
        let items = fixture
            .clients
            .dynamodb
            .query()
            .table_name(&fixture.created.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", AttributeValue::S("EVENT#ev-retried".into()))
            .consistent_read(true)
            .send()
            .await
            .expect("query the event's partition")
            .items
            .unwrap_or_default();
        let sk = |item: &std::collections::HashMap<String, AttributeValue>| match item.get("sk") {
            Some(AttributeValue::S(sk)) => sk.clone(),
            other => panic!("no sort key: {other:?}"),
        };
        let (records, parts): (Vec<_>, Vec<_>) = items.iter().partition(|item| sk(item) == "EVENT");
        assert_eq!(records.len(), 1);
        assert_eq!(write_units(item_size(records[0])), 1, "the record's item is {} bytes", item_size(records[0]));
        assert!(parts.iter().all(|part| sk(part).starts_with("HISTORY#") && write_units(item_size(part)) == 1));
        // 61 entries from 31 invocations; a part moves every few retries (and the write that lost moved one more).
        assert!((2..=9).contains(&parts.len()), "{} history parts", parts.len());
    }

    /// A corrupt mirror row is a permanent refusal, not a retry.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_corrupt_mirror_row_is_refused_for_good() {
        use synctrail::store::aws::sdk::dynamodb::types::AttributeValue;
        let fixture = fixture().await;
        let e = build::entity("a");
        let item = [
            ("pk", AttributeValue::S(format!("MIRROR#{e}"))),
            ("sk", AttributeValue::S("MIRROR".into())),
            ("type", AttributeValue::S("mirror".into())),
            ("version", AttributeValue::N("1".into())),
            ("entity_key", AttributeValue::S(e.to_string())),
            ("body", AttributeValue::S("{not json".into())),
            ("applied_at", AttributeValue::N("0".into())),
        ];
        let put = fixture.clients.dynamodb.put_item().table_name(&fixture.created.table);
        let put = item.into_iter().fold(put, |put, (name, value)| put.item(name, value));
        put.send().await.expect("put a corrupt row");
        let (ev, v) = (build::id("ev-1"), json!({"n": 1}));
        let outcome = fixture.mirror.apply(&build::snapshot(&ev, &e, 1, &v, 1)).await;
        assert!(matches!(outcome, Err(DestinationError::Permanent(_))), "{outcome:?}");
        assert!(matches!(fixture.mirror.get(&e).await, Err(StoreError::Corrupt(_))));
    }
}
