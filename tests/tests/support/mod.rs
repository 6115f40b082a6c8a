//! The test harness: a fresh embedded backend in a temporary home on a [`ManualClock`], the processor Lambda's
//! handler over it, a scriptable destination, envelope builders, and an event source played deterministically
//! (receive a batch → `sqs_event` → `Processor::process_batch` → delete what succeeded, keep what failed, skip
//! what was dead-lettered).

#![allow(dead_code)]

pub mod backends;
pub mod github_api;
pub mod hooked_queue;
pub mod receiver;
pub mod shopify_api;
pub mod standin;

use aws_lambda_events::event::sqs::SqsEvent;
use chrono::{DateTime, Duration, Utc};
use receiver::Receiver;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use synctrail::destination::http::Secret;
use synctrail::destination::{
    ApplyOutcome, ByDirection, Change, Destination, DestinationError, DestinationRecord, ReadError,
};
use synctrail::engine::{Disposition, Engine, Invocation, Outcome, Ports, SweepReport};
use synctrail::model::{
    Direction, EntityHead, EntityKey, EventId, EventRecord, ExternalWrite, Fingerprint, Kind, Message, Status,
};
use synctrail::store::sqlite::{EmbeddedOptions, Mirror, MirrorRecord};
use synctrail::store::{
    EventQuery, EventStore, Expect, HeadPage, OutgoingMessage, PartialCommit, QueueDepth, QueueMessage, StoreError,
    Write,
};
use synctrail::{Clock, ManualClock, Policy, Settings};
use synctrail_processor::{sqs_event, BatchResult, InvocationContext, Processor, RecordResult};
use tokio::sync::Notify;

/// A fresh temporary home: on `/dev/shm` when there is one (a memory file system, so payload `fsync`s cost nothing
/// and the simulation runs many more seeds a minute), else in the system's temporary directory.
pub fn temp_home() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    let in_memory = shm.is_dir().then(|| tempfile::Builder::new().prefix("synctrail-test-").tempdir_in(shm).ok());
    in_memory.flatten().unwrap_or_else(|| tempfile::tempdir().expect("temporary home"))
}

/// The entity type whose events are deltas (`in_order`).
pub const INVENTORY: &str = "inventory_adjustment";

/// The function name every history entry of the harness carries.
pub const FUNCTION: &str = "synctrail-processor:42";

/// 2026-05-01T12:00:00Z: where every harness clock starts, and the `updated_at` of [`at`]`(0)`.
pub fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-05-01T12:00:00Z").expect("valid time").with_timezone(&Utc)
}

/// `t0 + seconds` as a time.
pub fn time(seconds: i64) -> DateTime<Utc> {
    t0() + Duration::seconds(seconds)
}

/// `t0 + seconds` as the RFC 3339 text of an `updated_at`.
pub fn at(seconds: i64) -> String {
    time(seconds).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// The engine settings of the tests: defaults, with `inventory_adjustment` ordered `in_order`.
pub fn settings() -> Settings {
    Settings::default().with_policy(INVENTORY, Policy::InOrder)
}

/// A path under the workspace's `events/` directory.
pub fn fixture_path(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("events").join(name)
}

/// An `events/*.json` fixture as the `SqsEvent` Lambda would deliver.
pub fn fixture(name: &str) -> SqsEvent {
    let path = fixture_path(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not an SqsEvent: {e}", path.display()))
}

/// The message bodies of a fixture, in order.
pub fn fixture_bodies(name: &str) -> Vec<String> {
    fixture(name).records.into_iter().map(|r| r.body.expect("fixture record has a body")).collect()
}

/// The id an envelope body is recorded under: its `event_id`, or the derived one; `None` for an invalid body.
pub fn event_id_of(body: &str) -> Option<EventId> {
    match Message::parse(body, usize::MAX) {
        Ok(Message::Envelope(envelope)) => Some(envelope.event_id),
        _ => None,
    }
}

/// The entity an envelope body names; `None` for an invalid body.
pub fn entity_of(body: &str) -> Option<EntityKey> {
    match Message::parse(body, usize::MAX) {
        Ok(Message::Envelope(envelope)) => Some(envelope.entity),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The backend
// ---------------------------------------------------------------------------------------------------------------

/// A test's embedded backend: its adapters, and the engine's ports over them with the mirror as the destination.
pub struct Backend {
    /// The adapters (the queue's extra operations, the concrete mirror).
    pub embedded: synctrail::store::sqlite::Embedded,
    /// The engine's ports.
    pub ports: Ports,
}

impl Backend {
    /// Opens (creating) the embedded backend under `home` on `clock`.
    pub fn open_with_clock(
        home: &std::path::Path,
        options: EmbeddedOptions,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StoreError> {
        let embedded = synctrail::store::sqlite::Embedded::open(home, Arc::clone(&clock), options)?;
        let ports = Ports {
            store: embedded.store.clone(),
            payloads: embedded.payloads.clone(),
            queue: embedded.queue.clone(),
            destination: embedded.mirror.clone(),
            clock,
        };
        Ok(Self { embedded, ports })
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Envelopes
// ---------------------------------------------------------------------------------------------------------------

/// Builds an envelope (spec §1) as the JSON text of an SQS message body.
#[derive(Debug, Clone)]
pub struct Env {
    fields: Map<String, Value>,
}

impl Env {
    /// An envelope of `source/entity_type/external_id` with an empty payload and no `updated_at` yet.
    pub fn new(source: &str, entity_type: &str, external_id: &str) -> Self {
        let mut fields = Map::new();
        fields.insert("source".into(), json!(source));
        fields.insert("entity_type".into(), json!(entity_type));
        fields.insert("external_id".into(), json!(external_id));
        fields.insert("payload".into(), json!({}));
        Self { fields }
    }

    /// A GitHub issue.
    pub fn issue(number: &str) -> Self {
        Self::new("github", "issue", &format!("octo-org/widgets#{number}"))
    }

    /// A Shopify product.
    pub fn product(id: &str) -> Self {
        Self::new("shopify", "product", id)
    }

    /// A stock adjustment (`in_order`).
    pub fn adjustment(sku: &str) -> Self {
        Self::new("erp", INVENTORY, sku)
    }

    /// `updated_at = t0 + seconds`.
    pub fn at(self, seconds: i64) -> Self {
        self.set("updated_at", json!(at(seconds)))
    }

    /// `version`.
    pub fn version(self, version: i64) -> Self {
        self.set("version", json!(version))
    }

    /// `direction: outbound`: our own change, to write into the external system.
    pub fn outbound(self) -> Self {
        self.set("direction", json!("outbound"))
    }

    /// The `tenant`.
    pub fn tenant(self, tenant: &str) -> Self {
        self.set("tenant", json!(tenant))
    }

    /// A client `event_id`.
    pub fn id(self, event_id: &str) -> Self {
        self.set("event_id", json!(event_id))
    }

    /// `kind`.
    pub fn kind(self, kind: &str) -> Self {
        self.set("kind", json!(kind))
    }

    /// The payload.
    pub fn payload(self, payload: Value) -> Self {
        self.set("payload", payload)
    }

    /// A `{"title": …}` payload.
    pub fn titled(self, title: &str) -> Self {
        self.payload(json!({ "title": title }))
    }

    /// A `{"delta": n}` payload.
    pub fn delta(self, delta: i64) -> Self {
        self.payload(json!({ "delta": delta }))
    }

    /// Sets any field to any JSON value.
    pub fn set(mut self, field: &str, value: Value) -> Self {
        self.fields.insert(field.to_owned(), value);
        self
    }

    /// Removes a field.
    pub fn without(mut self, field: &str) -> Self {
        self.fields.remove(field);
        self
    }

    /// The message body.
    pub fn body(&self) -> String {
        Value::Object(self.fields.clone()).to_string()
    }

    /// The id the event is recorded under (its `event_id` or the derived one).
    pub fn event_id(&self) -> EventId {
        event_id_of(&self.body()).expect("a valid envelope")
    }

    /// Its entity key.
    pub fn entity(&self) -> EntityKey {
        entity_of(&self.body()).expect("a valid envelope")
    }

    /// The payload as given.
    pub fn payload_value(&self) -> Value {
        self.fields.get("payload").cloned().unwrap_or(Value::Null)
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The scripted destination
// ---------------------------------------------------------------------------------------------------------------

/// How long a test waits at a [`Gate`] (real time) before it fails.
pub const GATE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// A one-shot rendezvous between a test and a held destination write.
#[derive(Default)]
pub struct Gate {
    entered: Notify,
    released: Notify,
}

impl Gate {
    /// Waits until the held write has started (a real-time bound: the harness's clock is a [`ManualClock`], tokio's
    /// is never paused, so the bound only ends a test whose held write never comes).
    pub async fn entered(&self) {
        tokio::time::timeout(GATE_WAIT, self.entered.notified())
            .await
            .expect("the held write did not start within 10 s");
    }

    /// Lets the held write go on.
    pub fn release(&self) {
        self.released.notify_one();
    }

    /// The held side: says it has started, then waits to be released.
    pub async fn hold(&self) {
        self.entered.notify_one();
        self.released.notified().await;
    }
}

/// What the next destination write does.
pub enum Step {
    /// Writes to the mirror.
    Pass,
    /// Fails with a retryable error, writing nothing.
    Retryable(&'static str),
    /// Fails with a retryable error that asks for a delay (`Retry-After`), writing nothing.
    RetryAfter(&'static str, std::time::Duration),
    /// Answers "throttled", with the delay asked for if any, writing nothing.
    Throttled(&'static str, Option<std::time::Duration>),
    /// Fails with a permanent error, writing nothing.
    Permanent(&'static str),
    /// Panics.
    Panic(&'static str),
    /// Waits at the gate, then does the inner step.
    Hold(Arc<Gate>, Box<Step>),
    /// Kills the invocation: writes first when `write`, then never returns, and the harness drops the invocation
    /// without a response (as Lambda does with a timed-out or killed function).
    Crash {
        /// Whether the write lands before the crash.
        write: bool,
    },
    /// Moves the clock forward (the write "takes" that long), then writes.
    Slow(Duration),
}

tokio::task_local! {
    /// The crash signal of the invocation the current task is running.
    static CRASH: Arc<Notify>;
}

/// The mirror behind a script of steps: per entity first, then for any entity; [`Step::Pass`] when none is left.
pub struct Scripted {
    inner: Arc<dyn Destination>,
    clock: Arc<ManualClock>,
    any: Mutex<VecDeque<Step>>,
    per_entity: Mutex<HashMap<String, VecDeque<Step>>>,
    calls: AtomicU64,
    seen: Mutex<Vec<SeenChange>>,
}

/// What a destination call was told about its attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenChange {
    /// The event.
    pub event_id: EventId,
    /// [`Change::attempt`].
    pub attempt: u32,
    /// [`Change::previous_attempt_unknown`].
    pub previous_attempt_unknown: bool,
    /// [`Change::deadline`].
    pub deadline: Option<DateTime<Utc>>,
    /// [`Change::trace_id`].
    pub trace_id: Option<String>,
}

impl Scripted {
    fn new(inner: Arc<dyn Destination>, clock: Arc<ManualClock>) -> Self {
        Self {
            inner,
            clock,
            any: Mutex::new(VecDeque::new()),
            per_entity: Mutex::new(HashMap::new()),
            calls: AtomicU64::new(0),
            seen: Mutex::new(Vec::new()),
        }
    }

    /// The next write of any entity does `step`.
    pub fn next(&self, step: Step) {
        self.any.lock().unwrap().push_back(step);
    }

    /// The next write of `entity` does `step`.
    pub fn on(&self, entity: &EntityKey, step: Step) {
        self.per_entity.lock().unwrap().entry(entity.to_string()).or_default().push_back(step);
    }

    /// The next write of any entity waits at a gate until released, then writes.
    pub fn hold_next(&self) -> Arc<Gate> {
        let gate = Arc::new(Gate::default());
        self.next(Step::Hold(Arc::clone(&gate), Box::new(Step::Pass)));
        gate
    }

    /// How many writes were attempted.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    /// Every call's attempt facts, in call order.
    pub fn seen(&self) -> Vec<SeenChange> {
        self.seen.lock().unwrap().clone()
    }

    fn take(&self, entity: &EntityKey) -> Step {
        let own = self.per_entity.lock().unwrap().get_mut(&entity.to_string()).and_then(VecDeque::pop_front);
        own.or_else(|| self.any.lock().unwrap().pop_front()).unwrap_or(Step::Pass)
    }

    fn run<'a>(
        &'a self,
        step: Step,
        change: &'a Change<'_>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<ApplyOutcome, DestinationError>> + Send + 'a>> {
        Box::pin(async move {
            match step {
                Step::Pass => self.inner.apply(change).await,
                Step::Retryable(text) => Err(DestinationError::retryable(text)),
                Step::RetryAfter(text, after) => {
                    Err(DestinationError::Retryable { message: text.to_owned(), retry_after: Some(after) })
                }
                Step::Throttled(text, after) => Err(DestinationError::throttled(text, after)),
                Step::Permanent(text) => Err(DestinationError::Permanent(text.to_owned())),
                Step::Panic(text) => panic!("{text}"),
                Step::Hold(gate, then) => {
                    gate.hold().await;
                    self.run(*then, change).await
                }
                Step::Crash { write } => {
                    if write {
                        let _ = self.inner.apply(change).await;
                    }
                    let signalled = CRASH.try_with(|signal| signal.notify_one()).is_ok();
                    assert!(signalled, "a scripted crash outside Harness::invoke");
                    std::future::pending::<Result<ApplyOutcome, DestinationError>>().await
                }
                Step::Slow(by) => {
                    self.clock.advance(by);
                    self.inner.apply(change).await
                }
            }
        })
    }
}

#[async_trait::async_trait]
impl Destination for Scripted {
    async fn apply(&self, change: &Change<'_>) -> Result<ApplyOutcome, DestinationError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.seen.lock().unwrap().push(SeenChange {
            event_id: change.event_id.clone(),
            attempt: change.attempt,
            previous_attempt_unknown: change.previous_attempt_unknown,
            deadline: change.deadline,
            trace_id: change.trace_id.map(str::to_owned),
        });
        let step = self.take(change.entity);
        self.run(step, change).await
    }

    async fn read(&self, entity: &EntityKey) -> Result<Option<DestinationRecord>, ReadError> {
        self.inner.read(entity).await
    }
}

// ---------------------------------------------------------------------------------------------------------------
// A stand-in connector for the engine's rules
// ---------------------------------------------------------------------------------------------------------------

/// An outbound connector reduced to what the engine sees (spec §10): every outbound change is "written", the
/// external system stamping it with the next `updated_at` queued by the test (`t0 + seconds`) and holding the
/// payload's `title`; a create is given the external id queued with its stamp.
#[derive(Default)]
pub struct EchoingConnector {
    stamps: Mutex<VecDeque<(i64, Option<String>)>>,
    written: Mutex<Vec<EventId>>,
    gate: Mutex<Option<Arc<Gate>>>,
}

impl EchoingConnector {
    /// The next write waits at a gate until released, then writes.
    pub fn hold_next(&self) -> Arc<Gate> {
        let gate = Arc::new(Gate::default());
        *self.gate.lock().unwrap() = Some(Arc::clone(&gate));
        gate
    }

    /// The next write is stamped `t0 + seconds` (and, for a create, named `created`).
    pub fn stamp(&self, seconds: i64, created: Option<&str>) {
        self.stamps.lock().unwrap().push_back((seconds, created.map(str::to_owned)));
    }

    /// The outbound events written, in order.
    pub fn written(&self) -> Vec<EventId> {
        self.written.lock().unwrap().clone()
    }

    /// What the external system holds after a write of `title` stamped `t0 + seconds`.
    pub fn write_of(title: &str, seconds: i64, created: Option<String>) -> ExternalWrite {
        ExternalWrite {
            created,
            updated_at: time(seconds),
            fingerprint: Fingerprint::of(&json!({ "title": title }), vec!["/title".to_owned()]),
        }
    }
}

#[async_trait::async_trait]
impl Destination for EchoingConnector {
    async fn apply(&self, change: &Change<'_>) -> Result<ApplyOutcome, DestinationError> {
        assert_eq!(change.direction, Direction::Outbound, "only outbound changes reach the connector");
        let held = self.gate.lock().unwrap().take();
        if let Some(gate) = held {
            gate.hold().await;
        }
        let (seconds, created) = self.stamps.lock().unwrap().pop_front().expect("a stamp queued for the write");
        assert_eq!(created.is_some(), change.kind == Kind::Create, "a create, and only a create, is named anew");
        self.written.lock().unwrap().push(change.event_id.clone());
        let title = change.payload["title"].as_str().unwrap_or_default();
        Ok(ApplyOutcome::Written(Self::write_of(title, seconds, created)))
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The store that can hold a commit
// ---------------------------------------------------------------------------------------------------------------

/// The event store with a way to hold the next commit that records an event for the first time, or the next read
/// of a head, so a test can line up a race between two deliveries exactly.
pub struct HeldStore {
    inner: Arc<dyn EventStore>,
    gates: Mutex<VecDeque<(EventId, Arc<Gate>)>>,
    head_read: Mutex<Option<Arc<Gate>>>,
    sweeps_fail: AtomicBool,
    cut_next_settle: AtomicBool,
    cut_next_claim: AtomicBool,
    cut_next_queue: AtomicBool,
    claim_records: Mutex<VecDeque<(EventId, Arc<Gate>)>>,
    reads: Mutex<Reads>,
    backlog_budget: Mutex<Option<usize>>,
    heads_past_budget: AtomicU64,
}

/// The reads of records and heads a [`HeldStore`] was asked for, by their shape.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Reads {
    /// `get_event_and_head`: a record and its entity's head together (one request on DynamoDB).
    pub together: u64,
    /// `get_event` alone.
    pub records: u64,
    /// `get_head` alone.
    pub heads: u64,
}

impl HeldStore {
    /// Gives the store a budget for heads, as DynamoDB's 1 KB is one: a head fits while its backlog holds at most
    /// `events` events.
    pub fn budget_heads_to(&self, events: usize) {
        *self.backlog_budget.lock().unwrap() = Some(events);
    }

    /// Heads written past the budget of [`HeldStore::budget_heads_to`].
    pub fn heads_past_budget(&self) -> u64 {
        self.heads_past_budget.load(Ordering::SeqCst)
    }

    /// Counts the heads of `writes` past the budget.
    fn check_budget(&self, writes: &[Write]) {
        let past = writes.iter().filter(|w| matches!(w, Write::Head { head, .. } if !self.head_fits(head))).count();
        self.heads_past_budget.fetch_add(past as u64, Ordering::SeqCst);
    }

    /// The reads made since the last call.
    pub fn take_reads(&self) -> Reads {
        std::mem::take(&mut *self.reads.lock().unwrap())
    }

    /// Waits at the gate of [`HeldStore::hold_next_head_read`], if one is set.
    async fn pass_head_gate(&self) {
        let held = self.head_read.lock().unwrap().take();
        if let Some(gate) = held {
            gate.hold().await;
        }
    }

    /// From now on, listing expired leases (the first read of every sweep) fails as unavailable.
    pub fn fail_sweeps(&self) {
        self.sweeps_fail.store(true, Ordering::SeqCst);
    }

    /// The next settle's `commit_each` (the record, then the head) applies all but its last write and answers as if
    /// the connection dropped: what a Lambda dying between a settle's two writes leaves behind.
    pub fn cut_next_settle(&self) {
        self.cut_next_settle.store(true, Ordering::SeqCst);
    }

    /// The next claim's `commit_each` (the head, then the record) applies the head and answers as if the connection
    /// dropped: what a Lambda dying between a claim's two writes leaves behind.
    pub fn cut_next_claim(&self) {
        self.cut_next_claim.store(true, Ordering::SeqCst);
    }

    /// The next `commit_each` that queues an event behind its entity's holder (the record `queued`, then the head)
    /// applies the record and answers as if the connection dropped.
    pub fn cut_next_queue(&self) {
        self.cut_next_queue.store(true, Ordering::SeqCst);
    }

    /// The next claim of `event` writes its head, then waits at the returned gate before its record write.
    pub fn hold_claim_record_of(&self, event: &EventId) -> Arc<Gate> {
        let gate = Arc::new(Gate::default());
        self.claim_records.lock().unwrap().push_back((event.clone(), Arc::clone(&gate)));
        gate
    }

    /// The next head read (`get_head`, or `get_event_and_head` once it has read the record) waits at the returned
    /// gate, then goes on.
    pub fn hold_next_head_read(&self) -> Arc<Gate> {
        let gate = Arc::new(Gate::default());
        *self.head_read.lock().unwrap() = Some(Arc::clone(&gate));
        gate
    }

    /// The next commit (or claim's `commit_each`) that inserts the record of `event` waits at the returned gate, then
    /// goes on.
    pub fn hold_first_write_of(&self, event: &EventId) -> Arc<Gate> {
        let gate = Arc::new(Gate::default());
        self.gates.lock().unwrap().push_back((event.clone(), Arc::clone(&gate)));
        gate
    }

    fn gate_for(&self, writes: &[Write]) -> Option<Arc<Gate>> {
        let mut gates = self.gates.lock().unwrap();
        let inserts = |id: &EventId| {
            writes
                .iter()
                .any(|w| matches!(w, Write::Event { record, expect: Expect::Absent } if &record.event_id == id))
        };
        let at = gates.iter().position(|(id, _)| inserts(id))?;
        gates.remove(at).map(|(_, gate)| gate)
    }
}

#[async_trait::async_trait]
impl EventStore for HeldStore {
    async fn get_event(&self, id: &EventId) -> Result<Option<EventRecord>, StoreError> {
        self.reads.lock().unwrap().records += 1;
        self.inner.get_event(id).await
    }

    async fn get_event_with_history(&self, id: &EventId) -> Result<Option<EventRecord>, StoreError> {
        self.reads.lock().unwrap().records += 1;
        self.inner.get_event_with_history(id).await
    }

    async fn get_head(&self, entity: &EntityKey) -> Result<Option<EntityHead>, StoreError> {
        self.reads.lock().unwrap().heads += 1;
        self.pass_head_gate().await;
        self.inner.get_head(entity).await
    }

    fn head_fits(&self, head: &EntityHead) -> bool {
        let budget = *self.backlog_budget.lock().unwrap();
        budget.is_none_or(|events| head.backlog.len() <= events) && self.inner.head_fits(head)
    }

    /// The record, then the head, as the port's default does, so a held head read falls between the two.
    async fn get_event_and_head(
        &self,
        id: &EventId,
        entity: &EntityKey,
    ) -> Result<(Option<EventRecord>, Option<EntityHead>), StoreError> {
        self.reads.lock().unwrap().together += 1;
        let record = self.inner.get_event(id).await?;
        self.pass_head_gate().await;
        Ok((record, self.inner.get_head(entity).await?))
    }

    async fn commit(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        self.check_budget(&writes);
        if let Some(gate) = self.gate_for(&writes) {
            gate.hold().await;
        }
        self.inner.commit(writes).await
    }

    async fn commit_each(&self, mut writes: Vec<Write>) -> Result<(), PartialCommit> {
        self.check_budget(&writes);
        if let Some(gate) = self.gate_for(&writes) {
            gate.hold().await;
        }
        if let [Write::Head { .. }, Write::Event { record, .. }] = writes.as_slice() {
            let held = {
                let mut gates = self.claim_records.lock().unwrap();
                let at = gates.iter().position(|(id, _)| id == &record.event_id);
                at.and_then(|at| gates.remove(at)).map(|(_, gate)| gate)
            };
            if let Some(gate) = held {
                let record = writes.pop().expect("the claim's record write");
                self.inner.commit_each(writes).await?;
                gate.hold().await;
                return self.inner.commit(vec![record]).await.map_err(|error| PartialCommit { applied: 1, error });
            }
        }
        // A claim is its entity's head, then the record; queuing is the `queued` record, then the head; a settle
        // ends with the record (its end), then the head.
        let cut = match writes.as_slice() {
            [Write::Head { .. }, Write::Event { .. }] => self.cut_next_claim.swap(false, Ordering::SeqCst),
            [Write::Event { record, .. }, Write::Head { .. }] if record.status == Status::Queued => {
                self.cut_next_queue.swap(false, Ordering::SeqCst)
            }
            [_, _, ..] => self.cut_next_settle.swap(false, Ordering::SeqCst),
            _ => false,
        };
        if !cut {
            return self.inner.commit_each(writes).await;
        }
        writes.pop();
        let applied = writes.len();
        self.inner.commit_each(writes).await?;
        Err(PartialCommit { applied, error: StoreError::Unavailable("the connection dropped (drill)".into()) })
    }

    async fn list_events(&self, query: &EventQuery) -> Result<Vec<EventRecord>, StoreError> {
        self.inner.list_events(query).await
    }

    async fn parked_events(&self, entity: &EntityKey, limit: usize) -> Result<Vec<EventRecord>, StoreError> {
        self.inner.parked_events(entity, limit).await
    }

    async fn count_by_status(&self) -> Result<BTreeMap<Status, u64>, StoreError> {
        self.inner.count_by_status().await
    }

    async fn expired_leases(&self, before: DateTime<Utc>, limit: usize) -> Result<Vec<EntityHead>, StoreError> {
        if self.sweeps_fail.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("the store is down (drill)".into()));
        }
        self.inner.expired_leases(before, limit).await
    }

    async fn count_inflight(&self) -> Result<u64, StoreError> {
        self.inner.count_inflight().await
    }

    async fn list_heads(&self, after: Option<&str>, limit: usize) -> Result<HeadPage, StoreError> {
        self.inner.list_heads(after, limit).await
    }

    async fn heads_to_verify(&self, limit: usize) -> Result<Vec<EntityHead>, StoreError> {
        self.inner.heads_to_verify(limit).await
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The harness
// ---------------------------------------------------------------------------------------------------------------

/// Which destination the harness's engine writes through; the tests read the same embedded mirror either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Via {
    /// The embedded mirror itself.
    #[default]
    Mirror,
    /// The HTTP destination (signed requests), delivering to a loopback [`Receiver`] that verifies the signature
    /// and stores into the embedded mirror.
    Http,
}

/// The secret the harness signs HTTP deliveries with.
pub const HTTP_SECRET: &[u8] = b"harness-secret-0123456789abcdef";

/// Wraps the harness's destination in another.
pub type WrapDestination = Box<dyn FnOnce(Arc<dyn Destination>) -> Arc<dyn Destination>>;

/// Builds, on the harness clock, the connector `outbound` events go to.
pub type BuildOutbound = Box<dyn FnOnce(Arc<ManualClock>) -> Arc<dyn Destination>>;

/// How a harness is built.
pub struct Options {
    /// The engine's settings.
    pub settings: Settings,
    /// Receives before the queue dead-letters a message.
    pub max_receives: u32,
    /// How long each invocation may run: its deadline is this far from its start.
    pub function_timeout: Duration,
    /// How long a received message stays hidden.
    pub visibility_timeout: Duration,
    /// Records are not started this close to the deadline.
    pub safety_margin: Duration,
    /// Wraps the scripted destination (for example in one that panics).
    pub destination: Option<WrapDestination>,
    /// The destination the script drives (default: the embedded mirror), e.g. a team's own store.
    pub scripted_over: Option<Arc<dyn Destination>>,
    /// Puts a [`HeldStore`] in front of the event store (see [`Harness::held`]).
    pub held_store: bool,
    /// The destination under the script.
    pub via: Via,
    /// Where `outbound` events go (a connector); `None`: to the scripted destination like every other event.
    pub outbound: Option<BuildOutbound>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            settings: settings(),
            max_receives: 5,
            function_timeout: Duration::seconds(10),
            visibility_timeout: Duration::seconds(60),
            safety_margin: Duration::seconds(1),
            destination: None,
            scripted_over: None,
            held_store: false,
            via: Via::Mirror,
            outbound: None,
        }
    }
}

/// One invocation of the handler over a received batch.
pub struct Delivery {
    /// The messages handed to the handler.
    pub messages: Vec<QueueMessage>,
    /// The handler's result; `None` when the invocation crashed (no response at all).
    pub batch: Option<BatchResult>,
    /// The invocation's request id.
    pub request_id: String,
    /// The invocation's trace id.
    pub trace_id: String,
}

impl Delivery {
    /// Whether the invocation died without a response.
    pub fn crashed(&self) -> bool {
        self.batch.is_none()
    }

    /// The batch result (panics when the invocation crashed).
    pub fn batch(&self) -> &BatchResult {
        self.batch.as_ref().expect("the invocation returned a response")
    }

    /// The message ids listed in the partial batch response.
    pub fn failures(&self) -> Vec<String> {
        self.batch().response.batch_item_failures.iter().map(|f| f.item_identifier.clone()).collect()
    }

    /// The engine's outcome for record `index`.
    pub fn outcome(&self, index: usize) -> &Outcome {
        match &self.batch().records[index] {
            RecordResult::Processed(outcome) => outcome,
            other => panic!("record {index} was not processed: {other:?}"),
        }
    }

    /// The only record's outcome.
    pub fn only(&self) -> &Outcome {
        assert_eq!(self.messages.len(), 1, "expected a batch of one");
        self.outcome(0)
    }

    /// The delay a `Retry` disposition asked for.
    pub fn retry_after(&self, index: usize) -> Duration {
        match self.outcome(index).disposition {
            Disposition::Retry { after } => after,
            ref other => panic!("record {index} is not retried: {other:?}"),
        }
    }
}

/// A fresh embedded backend on a manual clock, the engine and the processor over it.
pub struct Harness {
    /// The temporary home (removed on drop).
    pub home: tempfile::TempDir,
    /// The clock every adapter and the engine read.
    pub clock: Arc<ManualClock>,
    /// The embedded backend.
    pub backend: Backend,
    /// The scripted destination in front of the mirror (or of the HTTP destination).
    pub script: Arc<Scripted>,
    /// The loopback receiver, when the harness delivers over HTTP.
    pub receiver: Option<Receiver>,
    /// The event store that can hold a commit or a read (in use with [`Options::held_store`]).
    pub held: Arc<HeldStore>,
    /// The engine.
    pub engine: Arc<Engine>,
    /// The handler.
    pub processor: Processor,
    /// How the harness was built (its destination hook taken).
    pub options: Options,
    invocations: AtomicU64,
}

impl Harness {
    /// A harness with default options.
    pub fn new() -> Self {
        Self::with(Options::default())
    }

    /// A harness with default options, writing through `via`.
    pub fn over(via: Via) -> Self {
        Self::with(Options { via, ..Options::default() })
    }

    /// A harness with `options` (inside a Tokio runtime).
    pub fn with(mut options: Options) -> Self {
        let home = temp_home();
        let clock = Arc::new(ManualClock::new(t0()));
        let embedded = EmbeddedOptions { max_receives: options.max_receives, ..EmbeddedOptions::default() };
        let backend = Backend::open_with_clock(home.path(), embedded, clock.clone()).expect("open the backend");
        let (inner, receiver): (Arc<dyn Destination>, _) = match (options.scripted_over.take(), options.via) {
            (Some(given), _) => (given, None),
            (None, Via::Mirror) => (backend.ports.destination.clone(), None),
            (None, Via::Http) => {
                let receiver = Receiver::start(backend.ports.destination.clone(), clock.clone(), Some(HTTP_SECRET));
                let config = receiver.config().with_secret(Secret::new(HTTP_SECRET));
                (Arc::new(receiver.destination(config, clock.clone())), Some(receiver))
            }
        };
        let script = Arc::new(Scripted::new(inner, clock.clone()));
        let mut destination: Arc<dyn Destination> = match options.destination.take() {
            Some(wrap) => wrap(script.clone()),
            None => script.clone(),
        };
        if let Some(build) = options.outbound.take() {
            destination = Arc::new(ByDirection::new(destination, build(clock.clone())));
        }
        let held = Arc::new(HeldStore {
            inner: backend.ports.store.clone(),
            gates: Mutex::new(VecDeque::new()),
            head_read: Mutex::new(None),
            sweeps_fail: AtomicBool::new(false),
            cut_next_settle: AtomicBool::new(false),
            cut_next_claim: AtomicBool::new(false),
            cut_next_queue: AtomicBool::new(false),
            claim_records: Mutex::new(VecDeque::new()),
            reads: Mutex::new(Reads::default()),
            backlog_budget: Mutex::new(None),
            heads_past_budget: AtomicU64::new(0),
        });
        let store: Arc<dyn EventStore> = if options.held_store { held.clone() } else { backend.ports.store.clone() };
        let ports = Ports { destination, store, ..backend.ports.clone() };
        let engine = Arc::new(Engine::new(ports, options.settings.clone()).with_seed(7));
        let processor = Processor::new(Arc::clone(&engine), options.safety_margin);
        Self {
            home,
            clock,
            backend,
            script,
            receiver,
            held,
            engine,
            processor,
            options,
            invocations: AtomicU64::new(0),
        }
    }

    /// The engine's ports.
    pub fn ports(&self) -> &Ports {
        self.engine.ports()
    }

    /// The mirror destination.
    pub fn mirror(&self) -> &Mirror {
        &self.backend.embedded.mirror
    }

    /// Now, on the harness clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    // ---- the queue ----

    /// Sends one body to the ingest queue; returns the message id.
    pub async fn send(&self, body: impl Into<String>) -> String {
        let ids = self.ports().queue.send(vec![OutgoingMessage::new(body)]).await.expect("send");
        ids.into_iter().next().expect("one id")
    }

    /// Sends an envelope; returns the message id.
    pub async fn send_env(&self, env: &Env) -> String {
        self.send(env.body()).await
    }

    /// Receives up to `max` visible messages, hidden for the visibility timeout.
    pub async fn receive(&self, max: usize) -> Vec<QueueMessage> {
        self.ports().queue.receive(max, self.options.visibility_timeout).await.expect("receive")
    }

    /// The queue's depth figures.
    pub async fn depth(&self) -> QueueDepth {
        self.ports().queue.depth().await.expect("depth")
    }

    /// The dead-letter queue's messages.
    pub async fn dead_letters(&self) -> Vec<QueueMessage> {
        self.backend.embedded.queue.dead_letter_messages(0).await.expect("dead letters")
    }

    // ---- the event source ----

    /// The context of the next invocation: deadline `function_timeout` from now.
    pub fn next_context(&self) -> InvocationContext {
        let n = self.invocations.fetch_add(1, Ordering::SeqCst) + 1;
        InvocationContext {
            request_id: format!("req-{n:04}"),
            deadline: self.now() + self.options.function_timeout,
            function: Some(FUNCTION.to_owned()),
            trace_id: Some(format!("Root=1-{:08x}-{:024x}", t0().timestamp() as u32, n)),
        }
    }

    /// Runs the handler on an `SqsEvent` in `context`; `None` when the invocation crashed.
    pub async fn handle(&self, event: SqsEvent, context: &InvocationContext) -> Option<BatchResult> {
        let signal = Arc::new(Notify::new());
        let run = CRASH.scope(Arc::clone(&signal), self.processor.process_batch(event, context));
        tokio::select! {
            biased;
            batch = run => Some(batch),
            () = signal.notified() => None,
        }
    }

    /// One invocation over received messages, then what Lambda does with the partial batch response: delete
    /// every message not listed (except those the handler dead-lettered); a crashed invocation deletes nothing.
    pub async fn invoke(&self, messages: &[QueueMessage]) -> Delivery {
        let context = self.next_context();
        let event = sqs_event(messages);
        let batch = self.handle(event, &context).await;
        // A crashed invocation, or one that failed as a whole, deletes nothing.
        if let Some(response) = batch.as_ref().and_then(|b| b.lambda_response().ok()) {
            let batch = batch.as_ref().expect("a batch behind the response");
            let failed: Vec<&str> = response.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect();
            let mut delete = Vec::new();
            for (message, result) in messages.iter().zip(&batch.records) {
                let dead = matches!(result, RecordResult::Processed(o) if o.disposition == Disposition::DeadLetter);
                if !dead && !failed.contains(&message.message_id.as_str()) {
                    delete.push(message.receipt_handle.clone());
                }
            }
            self.ports().queue.delete(&delete).await.expect("delete");
        }
        Delivery {
            messages: messages.to_vec(),
            batch,
            request_id: context.request_id,
            trace_id: context.trace_id.unwrap_or_default(),
        }
    }

    /// Receives up to `max` messages and invokes the handler on them (an empty batch is an error).
    pub async fn deliver(&self, max: usize) -> Delivery {
        let messages = self.receive(max).await;
        assert!(!messages.is_empty(), "nothing to deliver: {:?}", self.depth().await);
        self.invoke(&messages).await
    }

    /// Delivers batches of up to ten until no message is visible (at most `100` rounds).
    pub async fn drain(&self) -> Vec<Delivery> {
        let mut deliveries = Vec::new();
        for _ in 0..100 {
            let messages = self.receive(10).await;
            if messages.is_empty() {
                return deliveries;
            }
            deliveries.push(self.invoke(&messages).await);
        }
        panic!("the queue did not drain in 100 batches")
    }

    /// Sends envelopes one by one, delivering each before sending the next; returns the deliveries.
    pub async fn apply_in_turn(&self, envs: &[&Env]) -> Vec<Delivery> {
        let mut out = Vec::new();
        for env in envs {
            self.send_env(env).await;
            out.push(self.deliver(1).await);
        }
        out
    }

    /// A sweep by the sweeper function; the events it re-drove.
    pub async fn sweep(&self) -> Vec<EventId> {
        self.sweep_at_most(100).await.redriven
    }

    /// One sweep that acts on at most `limit` of each kind of thing it finds; what it found and did.
    pub async fn sweep_at_most(&self, limit: usize) -> SweepReport {
        let invocation = Invocation { function: Some("synctrail-sweeper:42".into()), ..Invocation::default() };
        self.engine.sweep(limit, &invocation).await.expect("sweep")
    }

    // ---- reading ----

    /// The event's record (panics when absent).
    pub async fn record(&self, id: &EventId) -> EventRecord {
        self.try_record(id).await.unwrap_or_else(|| panic!("event {id} is not recorded"))
    }

    /// The event's record with its whole history, if any.
    pub async fn try_record(&self, id: &EventId) -> Option<EventRecord> {
        self.ports().store.get_event_with_history(id).await.expect("get_event")
    }

    /// The envelope's record.
    pub async fn record_of(&self, env: &Env) -> EventRecord {
        self.record(&env.event_id()).await
    }

    /// The status of the envelope's event.
    pub async fn status_of(&self, env: &Env) -> Status {
        self.record_of(env).await.status
    }

    /// The entity's head (panics when absent).
    pub async fn head(&self, entity: &EntityKey) -> EntityHead {
        self.ports().store.get_head(entity).await.expect("get_head").unwrap_or_else(|| panic!("no head for {entity}"))
    }

    /// The entity's row in the mirror.
    pub async fn mirror_row(&self, entity: &EntityKey) -> Option<MirrorRecord> {
        self.mirror().get(entity).await.expect("mirror get")
    }

    /// The entity's state in the mirror (`None` when never written).
    pub async fn mirror_state(&self, entity: &EntityKey) -> Option<Value> {
        self.mirror_row(entity).await.map(|r| r.state)
    }

    /// Every destination effect, in order: the event ids.
    pub async fn effects(&self) -> Vec<EventId> {
        self.mirror().effects().await.expect("effects").into_iter().map(|(id, _)| id).collect()
    }

    /// How many effects `id` had.
    pub async fn effects_of(&self, id: &EventId) -> usize {
        self.effects().await.iter().filter(|e| *e == id).count()
    }

    /// The events of one entity, in order-key order.
    pub async fn events_of(&self, entity: &EntityKey) -> Vec<EventRecord> {
        let query = EventQuery { entity: Some(entity.clone()), ..EventQuery::default() };
        self.ports().store.list_events(&query).await.expect("list_events")
    }

    /// How many events are in each status.
    pub async fn counts(&self) -> BTreeMap<Status, u64> {
        self.ports().store.count_by_status().await.expect("count_by_status")
    }

    /// The archived bytes of a record's payload (the raw body for a rejected message).
    pub async fn archived(&self, record: &EventRecord) -> Vec<u8> {
        self.ports().payloads.get(&record.payload).await.expect("payload get")
    }
}

/// The statuses of a record's history, oldest first.
pub fn timeline(record: &EventRecord) -> Vec<Status> {
    record.history.iter().map(|h| h.status).collect()
}

/// Whether a record's history may go from `from` to `to`: a transition in the table, or a note on a finished
/// event (its status unchanged, e.g. a dead letter discarded).
pub fn is_history_step(from: Status, to: Status) -> bool {
    from.can_become(to) || (from == to && from.is_terminal())
}

/// Checks the history of a record: it starts `received`, every step is legal, and it ends in the current status.
pub fn assert_history_is_legal(record: &EventRecord) {
    let statuses = timeline(record);
    assert_eq!(statuses.first(), Some(&Status::Received), "{}: history starts {statuses:?}", record.event_id);
    assert_eq!(statuses.last(), Some(&record.status), "{}: history ends {statuses:?}", record.event_id);
    for pair in statuses.windows(2) {
        assert!(
            is_history_step(pair[0], pair[1]),
            "{}: illegal {} → {} in {statuses:?}",
            record.event_id,
            pair[0],
            pair[1]
        );
    }
}

/// Sends `env` and delivers it alone while `meanwhile` runs beside the invocation: how a race test opens, its
/// `meanwhile` waiting at a gate the invocation reaches, acting, then releasing the gate.
pub async fn deliver_racing<T>(
    h: &Harness,
    env: &Env,
    meanwhile: impl std::future::Future<Output = T>,
) -> (Delivery, T) {
    h.send_env(env).await;
    let batch = h.receive(1).await;
    tokio::join!(h.invoke(&batch), meanwhile)
}
