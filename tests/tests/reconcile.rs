//! Reconcile (spec §7) on both backends — the snapshot a local file on the embedded backend, an `s3://` object on
//! AWS (moto): each kind of difference is found (missing, extra, stale, different, same), `--apply` corrects them
//! through the pipeline (`caused_by: reconcile:<run id>`), a stale snapshot row never rolls back newer data, and a
//! run interrupted halfway resumes by its id without sending anything twice; a destination that can't read is
//! refused, and the HTTP destination is read over `GET`. An `in_order` type's differences are reported and not
//! corrected, a snapshot line that is not UTF-8 is reported and its entity left alone, and a rate under ten per
//! second sends corrections in batches of at most the rate.

use crate::support::backends::BackendRig;
use crate::support::hooked_queue::{HookedQueue, QueueHooks};
use crate::support::{time, Env, Harness, Via};
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use synctrail::compose::compose_snapshot;
use synctrail::destination::{ApplyOutcome, Change, Destination, DestinationError, DestinationRecord, ReadError};
use synctrail::engine::reconcile::{
    DiffKind, ReconcileError, ReconcileOptions, ReconcileReport, IN_ORDER_NOT_CORRECTABLE,
};
use synctrail::engine::{Engine, Incoming, Invocation};
use synctrail::model::{EntityKey, Status};
use synctrail::store::{EventQuery, FileSnapshot, OutgoingMessage, Queue, SnapshotStore, StoreError};

fn product(id: &str, seconds: i64, title: &str) -> Env {
    Env::product(id).at(seconds).titled(title)
}

/// The snapshot of `rows` (plus `extra` raw lines): a file on the embedded backend, an object in the backend's
/// bucket on AWS.
async fn snapshot(rig: &BackendRig, name: &str, rows: &[Env], extra: &[&str]) -> Arc<dyn SnapshotStore> {
    let mut text: String = rows.iter().map(|r| r.body() + "\n").collect();
    text.extend(extra.iter().map(|line| format!("{line}\n")));
    snapshot_of_bytes(rig, name, text.into_bytes()).await
}

/// The snapshot of `bytes` as they are, where [`snapshot`] puts it.
async fn snapshot_of_bytes(rig: &BackendRig, name: &str, bytes: Vec<u8>) -> Arc<dyn SnapshotStore> {
    let location = match (rig.home(), rig.backend.aws()) {
        (Some(home), _) => {
            let path = home.join(format!("{name}.ndjson"));
            std::fs::write(&path, &bytes).expect("write the snapshot");
            path.display().to_string()
        }
        (None, Some(parts)) => {
            let clients = synctrail::store::aws::Clients::for_config(&parts.config, None, None).await;
            let key = format!("reconcile/{name}.ndjson");
            let body = synctrail::store::aws::sdk::s3::primitives::ByteStream::from(bytes);
            clients.s3.put_object().bucket(&parts.config.bucket).key(&key).body(body).send().await.expect("put");
            format!("s3://{}/{key}", parts.config.bucket)
        }
        (None, None) => unreachable!("a backend is embedded or AWS"),
    };
    compose_snapshot(&location, &rig.backend).await.expect("the snapshot")
}

fn options(apply: bool, run_id: Option<&str>) -> ReconcileOptions {
    ReconcileOptions {
        source: "shopify".into(),
        apply,
        run_id: run_id.map(str::to_owned),
        as_of: Some(time(40)),
        ..ReconcileOptions::default()
    }
}

async fn reconcile(engine: &Engine, snapshot: &dyn SnapshotStore, options: &ReconcileOptions) -> ReconcileReport {
    engine.reconcile(snapshot, options, &mut |_, _| {}).await.expect("reconcile")
}

fn kind_of(report: &ReconcileReport, entity: &EntityKey) -> Option<DiffKind> {
    report.entities.iter().find(|e| e.entity_key == entity.to_string()).map(|e| e.kind)
}

async fn each_kind_is_found_and_corrected(aws: Option<&str>) {
    let rig = BackendRig::new(aws).await;
    let (diff, same, stale, extra) = (
        product("p-diff", 10, "a"),
        product("p-same", 10, "s"),
        product("p-stale", 30, "newer"),
        product("p-extra", 10, "x"),
    );
    rig.apply(&[diff.clone(), same.clone(), stale.clone(), extra.clone()]).await;
    let missing = product("p-missing", 20, "m");
    let rows =
        [product("p-diff", 20, "b"), product("p-same", 10, "s"), product("p-stale", 20, "older"), missing.clone()];
    let other_source = Env::issue("7").at(5).titled("not compared").body();
    let snapshot = snapshot(&rig, "export", &rows, &[&other_source, "not json"]).await;

    let dry = reconcile(&rig.engine, snapshot.as_ref(), &options(false, None)).await;
    let c = &dry.counts;
    assert_eq!((c.same, c.missing, c.extra, c.stale, c.different), (1, 1, 1, 1, 1), "{c:?}");
    assert_eq!((c.ignored, c.invalid, dry.sent, dry.dry_run), (1, 1, 3, true));
    assert_eq!(kind_of(&dry, &diff.entity()), Some(DiffKind::Different));
    assert_eq!(kind_of(&dry, &stale.entity()), Some(DiffKind::Stale));
    assert_eq!(kind_of(&dry, &extra.entity()), Some(DiffKind::Extra));
    assert_eq!(kind_of(&dry, &missing.entity()), Some(DiffKind::Missing));
    assert_eq!(rig.engine.ports().queue.depth().await.expect("depth").visible, 0, "a dry run sends nothing");
    assert_eq!(snapshot.read_state(&dry.run_id).await.expect("state"), None, "and stores nothing");

    let applied = reconcile(&rig.engine, snapshot.as_ref(), &options(true, Some("r1"))).await;
    assert_eq!((applied.sent, applied.finished), (3, true));
    rig.drain().await;
    assert_eq!(rig.state(&diff.entity()).await, Some(json!({"title": "b"})));
    assert_eq!(rig.state(&missing.entity()).await, Some(json!({"title": "m"})));
    assert_eq!(rig.state(&extra.entity()).await, None, "deleted");
    assert_eq!(rig.state(&stale.entity()).await, Some(json!({"title": "newer"})), "the stale row was not sent");
    // A correction for each difference (different, missing, extra), none for the same or the stale row.
    let corrections: Vec<_> =
        applied.entities.iter().filter_map(|e| Some((e.entity_key.clone(), e.event_id.clone()?))).collect();
    let mut corrected: Vec<String> = corrections.iter().map(|(key, _)| key.clone()).collect();
    corrected.sort();
    let mut differing = [diff.entity(), extra.entity(), missing.entity()].map(|e| e.to_string()).to_vec();
    differing.sort();
    assert_eq!(corrected, differing, "the entities sent a correction");
    for (key, id) in &corrections {
        let record = rig.record(id).await;
        let expected = (Status::Completed, Some("reconcile:r1"));
        assert_eq!((record.status, record.caused_by.as_deref()), expected, "{key}: {id}");
    }
    let again = reconcile(&rig.engine, snapshot.as_ref(), &options(true, Some("r1"))).await;
    assert!(again.finished && again.entities.is_empty(), "a finished run does nothing more");
    assert_eq!(rig.engine.ports().queue.depth().await.expect("depth").visible, 0);
    let after = reconcile(&rig.engine, snapshot.as_ref(), &options(false, None)).await;
    assert_eq!((after.counts.differences(), after.counts.stale), (0, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_finds_missing_extra_stale_and_different_and_apply_corrects_them_on_the_embedded_backend() {
    each_kind_is_found_and_corrected(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_reconcile_finds_missing_extra_stale_and_different_and_apply_corrects_them_from_an_s3_snapshot() {
    each_kind_is_found_and_corrected(Some("reconcile")).await;
}

async fn a_stale_row_does_not_roll_back(aws: Option<&str>) {
    let rig = BackendRig::new(aws).await;
    rig.apply(&[product("p-1", 10, "old")]).await;
    let snapshot = snapshot(&rig, "stale", &[product("p-1", 20, "snapshot")], &[]).await;
    let report = reconcile(&rig.engine, snapshot.as_ref(), &options(true, Some("r2"))).await;
    assert_eq!(report.counts.different, 1);
    let correction = report.entities[0].event_id.clone().expect("a correction");
    // Newer data reaches the destination after the comparison, before the correction is processed.
    let newest = product("p-1", 30, "newest");
    let message = Incoming { message_id: "m-newest".into(), body: newest.body(), receive_count: 1, trace_header: None };
    rig.engine.process(&message, &Invocation::default()).await.expect("process");
    rig.drain().await;
    assert_eq!(rig.state(&newest.entity()).await, Some(json!({"title": "newest"})), "not rolled back");
    let record = rig.record(&correction).await;
    assert_eq!((record.status, record.dropped_for), (Status::Dropped, Some(newest.event_id().to_string())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_snapshot_row_does_not_roll_back_newer_data_on_the_embedded_backend() {
    a_stale_row_does_not_roll_back(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_a_stale_snapshot_row_does_not_roll_back_newer_data() {
    a_stale_row_does_not_roll_back(Some("stalerow")).await;
}

/// The rig's destination, whose reads fail after the first `reads_left`.
struct FailingReads {
    inner: Arc<dyn Destination>,
    reads_left: AtomicUsize,
}

#[async_trait::async_trait]
impl Destination for FailingReads {
    async fn apply(&self, change: &Change<'_>) -> Result<ApplyOutcome, DestinationError> {
        self.inner.apply(change).await
    }

    async fn read(&self, entity: &EntityKey) -> Result<Option<DestinationRecord>, ReadError> {
        match self.reads_left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)) {
            Ok(_) => self.inner.read(entity).await,
            Err(_) => Err(ReadError::Failed("the connection dropped (drill)".into())),
        }
    }
}

async fn an_interrupted_run_resumes(aws: Option<&str>) {
    let rig = BackendRig::new(aws).await;
    let rows: Vec<Env> = (0..25).map(|i| product(&format!("p-{i:02}"), 10, "snapshot")).collect();
    let snapshot = snapshot(&rig, "big", &rows, &[]).await;
    let failing = FailingReads { inner: rig.backend.ports.destination.clone(), reads_left: AtomicUsize::new(15) };
    let ports = synctrail::engine::Ports { destination: Arc::new(failing), ..rig.backend.ports.clone() };
    let interrupted = Engine::new(ports, crate::support::settings());
    match interrupted.reconcile(snapshot.as_ref(), &options(true, Some("r3")), &mut |_, _| {}).await {
        Err(ReconcileError::Destination { run_id, .. }) => assert_eq!(run_id, "r3"),
        other => panic!("expected the run to stop at the failing read, got {other:?}"),
    }
    let queue = &rig.engine.ports().queue;
    assert_eq!(queue.depth().await.expect("depth").visible, 10, "the first batch went out before the failure");

    let resumed = reconcile(&rig.engine, snapshot.as_ref(), &options(true, Some("r3"))).await;
    assert_eq!(resumed.resumed_after.as_deref(), Some("default/shopify/product/p-09"));
    assert_eq!(resumed.entities.len(), 15, "only what was not done before");
    assert_eq!((resumed.counts.missing, resumed.sent, resumed.finished), (25, 25, true));
    assert_eq!(queue.depth().await.expect("depth").visible, 25, "nothing sent twice");
    rig.drain().await;
    let query = EventQuery { source: Some("shopify".into()), ..EventQuery::default() };
    let records = rig.engine.ports().store.list_events(&query).await.expect("list");
    assert_eq!(records.len(), 25);
    assert!(records.iter().all(|r| r.status == Status::Completed && r.caused_by.as_deref() == Some("reconcile:r3")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconcile_run_interrupted_halfway_resumes_without_double_work_on_the_embedded_backend() {
    an_interrupted_run_resumes(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_a_reconcile_run_interrupted_halfway_resumes_without_double_work() {
    an_interrupted_run_resumes(Some("resume")).await;
}

/// A destination of a team's own that applies and does not read.
struct WriteOnly;

#[async_trait::async_trait]
impl Destination for WriteOnly {
    async fn apply(&self, _: &Change<'_>) -> Result<ApplyOutcome, DestinationError> {
        Ok(ApplyOutcome::Applied)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_refuses_a_destination_that_cannot_read_with_its_reason() {
    let rig = BackendRig::new(None).await;
    let snapshot = snapshot(&rig, "any", &[product("p-1", 10, "a")], &[]).await;
    let ports = synctrail::engine::Ports { destination: Arc::new(WriteOnly), ..rig.backend.ports.clone() };
    let engine = Engine::new(ports, crate::support::settings());
    match engine.reconcile(snapshot.as_ref(), &options(true, Some("r4")), &mut |_, _| {}).await {
        Err(error @ ReconcileError::Unreadable(_)) => assert!(error.to_string().contains("can't read"), "{error}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(rig.engine.ports().queue.depth().await.expect("depth").visible, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_reads_the_http_destination_back_over_get() {
    let h = Harness::over(Via::Http);
    h.send_env(&product("p-1", 10, "a")).await;
    h.deliver(10).await;
    let path = h.home.path().join("export.ndjson");
    std::fs::write(&path, product("p-1", 20, "b").body() + "\n").expect("write");
    let snapshot = FileSnapshot::new(&path);
    let report = h.engine.reconcile(&snapshot, &options(false, None), &mut |_, _| {}).await.expect("reconcile");
    assert_eq!(report.counts.different, 1);
    let gets =
        h.receiver.as_ref().expect("receiver").seen().iter().filter(|s| s.request_line.starts_with("GET ")).count();
    assert_eq!(gets, 1);
}

async fn in_order_differences_are_not_corrected(aws: Option<&str>) {
    let rig = BackendRig::new(aws).await;
    let (adjusted, extra) = (Env::adjustment("sku-diff").at(10).delta(5), Env::adjustment("sku-extra").at(10).delta(3));
    let product = Env::new("erp", "product", "p-1").at(10).titled("a");
    rig.apply(&[adjusted.clone(), extra.clone(), product.clone()]).await;
    let missing = Env::adjustment("sku-missing").at(20).payload(json!({"quantity": 2}));
    let rows = [
        Env::adjustment("sku-diff").at(20).payload(json!({"quantity": 7})),
        missing.clone(),
        Env::new("erp", "product", "p-1").at(20).titled("b"),
    ];
    let snapshot = snapshot(&rig, "stock", &rows, &[]).await;
    let erp = |apply, run_id: Option<&str>| ReconcileOptions { source: "erp".into(), ..options(apply, run_id) };

    let dry = reconcile(&rig.engine, snapshot.as_ref(), &erp(false, None)).await;
    let c = &dry.counts;
    assert_eq!((c.missing, c.extra, c.different, c.not_correctable), (1, 1, 2, 3), "{c:?}");
    assert_eq!((c.differences(), dry.sent), (4, 1), "only the latest_wins product would be sent");

    let applied = reconcile(&rig.engine, snapshot.as_ref(), &erp(true, Some("io1"))).await;
    assert_eq!((applied.sent, applied.sent_now, applied.counts.not_correctable), (1, 1, 3));
    for entity in [adjusted.entity(), extra.entity(), missing.entity()] {
        let listed = applied.entities.iter().find(|e| e.entity_key == entity.to_string()).expect("listed");
        assert_eq!(listed.event_id, None, "{entity}: no correction");
        assert_eq!(listed.not_corrected.as_deref(), Some(IN_ORDER_NOT_CORRECTABLE), "{entity}: and why");
    }
    assert_eq!(rig.engine.ports().queue.depth().await.expect("depth").visible, 1, "the product's correction alone");
    rig.drain().await;
    assert_eq!(rig.state(&product.entity()).await, Some(json!({"title": "b"})));
    assert_eq!(rig.state(&adjusted.entity()).await, Some(json!({"quantity": 5})), "untouched");
    assert_eq!(rig.state(&extra.entity()).await, Some(json!({"quantity": 3})), "not deleted");
    assert_eq!(rig.state(&missing.entity()).await, None);
    let query = EventQuery { source: Some("erp".into()), ..EventQuery::default() };
    let records = rig.engine.ports().store.list_events(&query).await.expect("list");
    assert!(records.iter().all(|r| r.status == Status::Completed), "no correction failed: {records:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_reports_the_differences_of_an_in_order_type_and_sends_them_no_correction_on_the_embedded_backend() {
    in_order_differences_are_not_corrected(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_reconcile_reports_the_differences_of_an_in_order_type_and_sends_them_no_correction() {
    in_order_differences_are_not_corrected(Some("inorder")).await;
}

async fn a_line_not_in_utf8_is_reported(aws: Option<&str>) {
    let rig = BackendRig::new(aws).await;
    let cafe = product("p-cafe", 10, "Café");
    rig.apply(&[product("p-ok", 10, "ok"), cafe.clone()]).await;
    let latin1 = product("p-cafe", 20, "Café").body();
    let at = latin1.find('é').expect("an é");
    let mut bytes = (product("p-ok", 10, "ok").body() + "\r\n").into_bytes();
    bytes.extend(latin1.replace('é', "\u{1}").bytes().map(|b| if b == 1 { 0xE9 } else { b }));
    bytes.extend(b"\r\n");
    bytes.extend((product("p-new", 20, "new").body() + "\r\n").into_bytes());
    let snapshot = snapshot_of_bytes(&rig, "latin1", bytes).await;

    let report = reconcile(&rig.engine, snapshot.as_ref(), &options(true, Some("u1"))).await;
    let [invalid] = report.invalid.as_slice() else { panic!("one invalid line: {:?}", report.invalid) };
    assert_eq!((invalid.line, invalid.entity.clone()), (2, Some(cafe.entity().to_string())));
    let expected = format!("not UTF-8 at byte {} of the line (0xE9); export the snapshot as UTF-8", at + 1);
    assert_eq!(invalid.error, expected);
    let c = &report.counts;
    assert_eq!((c.same, c.missing, c.extra, c.different, c.invalid, report.sent), (1, 1, 0, 0, 1, 1), "{c:?}");
    assert_eq!(kind_of(&report, &cafe.entity()), None, "neither different nor extra: not compared");
    rig.drain().await;
    assert_eq!(rig.state(&cafe.entity()).await, Some(json!({"title": "Café"})), "not overwritten nor deleted");
    assert_eq!(rig.state(&product("p-new", 20, "new").entity()).await, Some(json!({"title": "new"})));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_line_that_is_not_utf8_is_reported_with_where_and_its_entity_left_alone_on_the_embedded_backend() {
    a_line_not_in_utf8_is_reported(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_a_snapshot_line_that_is_not_utf8_is_reported_with_where_and_its_entity_left_alone() {
    a_line_not_in_utf8_is_reported(Some("latin1")).await;
}

/// Notes the size of each batch sent.
#[derive(Default)]
struct NotesSends {
    sizes: Mutex<Vec<usize>>,
}

#[async_trait::async_trait]
impl QueueHooks for NotesSends {
    async fn send(&self, inner: &dyn Queue, messages: Vec<OutgoingMessage>) -> Result<Vec<String>, StoreError> {
        self.sizes.lock().expect("lock").push(messages.len());
        inner.send(messages).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_at_a_rate_under_ten_per_second_sends_corrections_in_batches_of_at_most_the_rate() {
    let rig = BackendRig::new(None).await;
    let rows: Vec<Env> = (0..6).map(|i| product(&format!("p-{i}"), 10, "snapshot")).collect();
    let snapshot = snapshot(&rig, "paced", &rows, &[]).await;
    let queue = Arc::new(HookedQueue { inner: Arc::clone(&rig.engine.ports().queue), hooks: NotesSends::default() });
    let ports = synctrail::engine::Ports { queue: queue.clone(), ..rig.backend.ports.clone() };
    let engine = Engine::new(ports, crate::support::settings());

    let paced = ReconcileOptions { rate_per_second: Some(2.0), ..options(true, Some("rate1")) };
    let report = reconcile(&engine, snapshot.as_ref(), &paced).await;
    assert_eq!((report.sent, report.finished), (6, true));
    assert_eq!(*queue.hooks.sizes.lock().expect("lock"), vec![2, 2, 2], "2 per second: batches of 2, not 6 at once");
    assert!(snapshot.read_state("rate1").await.expect("state").is_some(), "checkpointed");

    queue.hooks.sizes.lock().expect("lock").clear();
    let unpaced = reconcile(&engine, snapshot.as_ref(), &options(true, Some("rate2"))).await;
    assert_eq!(unpaced.sent, 6);
    assert_eq!(*queue.hooks.sizes.lock().expect("lock"), vec![6], "no rate: the entities read together, in one batch");
    assert_eq!(rig.engine.ports().queue.depth().await.expect("depth").visible, 12);
}
