//! The capacity meter (`synctrail::store::aws::meter`) against moto: the write and read units it bills for known
//! items, indexes included, match DynamoDB's published rules. `synctrail bench --backend aws` reports with it.

use crate::conformance::aws::endpoint;
use std::collections::HashMap;
use synctrail::store::aws::meter::size::Item;
use synctrail::store::aws::sdk::dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, Put, ScalarAttributeType, TransactWriteItem,
};
use synctrail::store::aws::sdk::dynamodb::Client;
use synctrail::store::aws::{CapacityMeter, Clients, Party};

fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

fn key(name: &str, kind: KeyType) -> KeySchemaElement {
    KeySchemaElement::builder().attribute_name(name).key_type(kind).build().expect("key")
}

fn index(name: &str, projection: ProjectionType) -> GlobalSecondaryIndex {
    GlobalSecondaryIndex::builder()
        .index_name(name)
        .key_schema(key("g", KeyType::Hash))
        .projection(Projection::builder().projection_type(projection).build())
        .build()
        .expect("index")
}

/// A table keyed `pk`/`sk` with two indexes on `g`: `whole` (projection ALL) and `keys` (KEYS_ONLY).
async fn table(client: &Client) -> String {
    let name = format!("meter-{}", hex::encode(rand::random::<[u8; 5]>()));
    let attribute = |n: &str| {
        AttributeDefinition::builder().attribute_name(n).attribute_type(ScalarAttributeType::S).build().expect("attr")
    };
    client
        .create_table()
        .table_name(&name)
        .billing_mode(BillingMode::PayPerRequest)
        .set_attribute_definitions(Some(vec![attribute("pk"), attribute("sk"), attribute("g")]))
        .key_schema(key("pk", KeyType::Hash))
        .key_schema(key("sk", KeyType::Range))
        .global_secondary_indexes(index("whole", ProjectionType::All))
        .global_secondary_indexes(index("keys", ProjectionType::KeysOnly))
        .send()
        .await
        .expect("create the table");
    name
}

/// `pk`=p1 (2+2 bytes), `sk`=s (2+1), `g`=G1 (1+2), `body` = `body_len` × "x" (4 + body_len).
fn item(body_len: usize) -> Item {
    HashMap::from([
        ("pk".to_owned(), s("p1")),
        ("sk".to_owned(), s("s")),
        ("g".to_owned(), s("G1")),
        ("body".to_owned(), s(&"x".repeat(body_len))),
    ])
}

struct Metered {
    meter: CapacityMeter,
    client: Client,
    table: String,
}

async fn metered() -> Metered {
    let endpoint = endpoint();
    let clients = Clients::connect(Some(&endpoint), Some("us-east-1")).await;
    let table = table(&clients.dynamodb).await;
    let meter = CapacityMeter::connect(Some(&endpoint), Some("us-east-1"), None).await;
    let client = meter.wrap(&clients.dynamodb);
    Metered { meter, client, table }
}

impl Metered {
    /// (table WRU, `whole` WRU, `keys` WRU, RRU) billed since the last call.
    fn take(&self) -> (u64, u64, u64, f64) {
        let consumed = self.meter.consumed().remove(&Party::Framework).unwrap_or_default();
        self.meter.reset();
        assert_eq!(consumed.unmetered, 0, "every request was metered");
        let index = |name: &str| consumed.index_wru.get(name).copied().unwrap_or(0);
        (consumed.table_wru, index("whole"), index("keys"), consumed.rru)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_meter_a_put_bills_its_size_in_the_table_and_each_index_by_its_projection() {
    let m = metered().await;
    // 4 + 3 + 3 + (4 + 1500) = 1514 bytes: 2 units; the KEYS_ONLY entry (pk, sk, g) is 10 bytes: 1 unit.
    m.client.put_item().table_name(&m.table).set_item(Some(item(1500))).send().await.expect("put");
    assert_eq!(m.take(), (2, 2, 1, 0.0));
    // Replaced by a 3,000-byte body: the larger of before (1514) and after (3014) is billed: 3 units; the ALL
    // entry changed (3 units), the KEYS_ONLY entry did not (nothing).
    m.client.put_item().table_name(&m.table).set_item(Some(item(3000))).send().await.expect("replace");
    assert_eq!(m.take(), (3, 3, 0, 0.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_meter_an_index_key_change_is_two_index_writes_and_leaving_an_index_one() {
    let m = metered().await;
    m.client.put_item().table_name(&m.table).set_item(Some(item(100))).send().await.expect("put");
    m.take();
    let key = HashMap::from([("pk".to_owned(), s("p1")), ("sk".to_owned(), s("s"))]);
    m.client
        .update_item()
        .table_name(&m.table)
        .set_key(Some(key.clone()))
        .update_expression("SET g = :g")
        .expression_attribute_values(":g", s("G2"))
        .send()
        .await
        .expect("move in the index");
    // The item (114 bytes) in 1 unit; each index deletes the old entry and puts the new one.
    assert_eq!(m.take(), (1, 2, 2, 0.0));
    m.client
        .update_item()
        .table_name(&m.table)
        .set_key(Some(key))
        .update_expression("REMOVE g")
        .send()
        .await
        .expect("leave");
    assert_eq!(m.take(), (1, 1, 1, 0.0), "out of both indexes: one delete each");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_meter_transactions_double_the_table_units_and_refused_writes_still_cost() {
    let m = metered().await;
    let put = Put::builder().table_name(&m.table).set_item(Some(item(1500))).build().expect("put");
    m.client
        .transact_write_items()
        .transact_items(TransactWriteItem::builder().put(put).build())
        .send()
        .await
        .expect("tx");
    assert_eq!(m.take(), (4, 2, 1, 0.0), "table units doubled, index units not");
    let refused = m
        .client
        .put_item()
        .table_name(&m.table)
        .set_item(Some(item(10)))
        .condition_expression("attribute_not_exists(pk)")
        .send()
        .await;
    assert!(refused.is_err(), "the condition fails");
    assert_eq!(m.take(), (2, 0, 0, 0.0), "the stored 1514-byte item is billed, no index is written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_meter_reads_bill_per_started_4_kb_and_storage_counts_overheads() {
    let m = metered().await;
    m.client.put_item().table_name(&m.table).set_item(Some(item(5000))).send().await.expect("put");
    m.take();
    let key = HashMap::from([("pk".to_owned(), s("p1")), ("sk".to_owned(), s("s"))]);
    let get =
        |consistent| m.client.get_item().table_name(&m.table).set_key(Some(key.clone())).consistent_read(consistent);
    get(true).send().await.expect("consistent read");
    assert_eq!(m.take().3, 2.0, "5014 bytes read strongly consistently: 2 units");
    get(false).send().await.expect("eventual read");
    assert_eq!(m.take().3, 1.0, "eventually consistent: half");
    let stored = m.meter.stored(&m.table, |_| Party::Framework).await.expect("scan");
    let stored = stored.get(&Party::Framework).cloned().unwrap_or_default();
    assert_eq!((stored.items, stored.table_bytes), (1, 5014 + 100));
    assert_eq!(stored.index_bytes, (5014 + 100) + (10 + 100), "the ALL entry and the KEYS_ONLY one");
}

/// `synctrail --backend aws --json bench <args>` against the test server, in a home of its own and with no resource
/// flags (every benchmark makes fresh resources): its JSON report.
pub(crate) async fn aws_bench(args: &[&str]) -> serde_json::Value {
    use clap::Parser;
    let home = crate::support::temp_home();
    let endpoint = endpoint();
    let global =
        ["synctrail", "--home", home.path().to_str().expect("UTF-8"), "--backend", "aws", "--endpoint-url", &endpoint];
    let all = global.iter().chain(&["--json", "bench"]).chain(args);
    let cli = synctrail_cli::args::Cli::try_parse_from(all).expect("valid arguments");
    let mut out = Vec::new();
    let code = synctrail_cli::commands::dispatch(&cli, &mut out).await.expect("the benchmark runs");
    assert_eq!(code, 0);
    serde_json::from_slice(&out).expect("one JSON report")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_the_cost_benchmark_prices_every_scenario_with_framework_and_destination_apart() {
    let report = aws_bench(&["--events", "12", "--entities", "4"]).await;
    let scenarios = report["scenarios"].as_array().expect("scenarios");
    let names: Vec<&str> = scenarios.iter().filter_map(|s| s["scenario"].as_str()).collect();
    assert_eq!(names, ["happy_path", "delivered_twice", "ten_percent_failing", "hot_entity"]);
    for s in scenarios {
        let (framework, destination) = (&s["framework"], &s["destination"]);
        assert_eq!((framework["unmetered"].as_u64(), destination["unmetered"].as_u64()), (Some(0), Some(0)), "{s}");
        let wru = |p: &serde_json::Value| p["wru"].as_f64().unwrap_or(0.0);
        assert!(wru(framework) >= 1.0 && wru(destination) >= 1.0, "both parties write: {s}");
        // One archive object per batch: at most one S3 PUT per invocation (none for a batch of re-drives only).
        let puts = framework["s3_puts"].as_f64().unwrap_or(0.0) * s["events"].as_f64().unwrap_or(0.0);
        let invocations = s["invocations"].as_f64().unwrap_or(0.0);
        assert!(puts > 0.0 && puts.round() <= invocations, "{puts} PUTs in {invocations} invocations: {s}");
        assert_eq!(destination["s3_puts"].as_f64(), Some(0.0));
        let dollars = &framework["dollars_per_million"];
        let parts = ["dynamodb_writes", "dynamodb_reads", "s3_requests", "sqs", "dynamodb_storage", "s3_storage"];
        let sum: f64 = parts.iter().map(|p| dollars[p].as_f64().unwrap_or(0.0)).sum();
        assert!((sum - dollars["total"].as_f64().unwrap_or(0.0)).abs() < 1e-9 && sum > 0.0, "{dollars}");
    }
    assert_eq!(scenarios[1]["deliveries"].as_u64(), Some(24), "every event sent twice");
}

/// `--scenario` prices the scenarios it names, in report order, and no other: a configuration change is priced in the
/// scenario it concerns without running all four.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_the_cost_benchmark_prices_only_the_scenarios_it_is_asked_for() {
    let report =
        aws_bench(&["--scenario", "hot-entity", "--scenario", "happy-path", "--events", "6", "--entities", "3"]).await;
    let scenarios = report["scenarios"].as_array().expect("scenarios");
    let names: Vec<&str> = scenarios.iter().filter_map(|s| s["scenario"].as_str()).collect();
    assert_eq!(names, ["happy_path", "hot_entity"], "{report}");
    assert!(scenarios.iter().all(|s| s["framework"]["wru"].as_f64() > Some(0.0)), "each one priced: {report}");
}

/// Issue 12: an event costs the same whatever its entity's history. Three rounds of one newer event per entity,
/// each metered on its own: the framework's write units per event are the same in every round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_the_growth_benchmark_finds_the_same_write_units_per_event_whatever_the_history() {
    let report = aws_bench(&["growth", "--entities", "3", "--rounds", "3"]).await;
    let rounds = report["rounds"].as_array().expect("rounds");
    assert_eq!(rounds.len(), 3, "{report}");
    let units = |round: &serde_json::Value| {
        let framework = &round["aws"]["framework"];
        assert_eq!(framework["unmetered"].as_u64(), Some(0), "{round}");
        let per_event = |field: &str| framework[field].as_f64().unwrap_or(f64::NAN);
        ((per_event("wru_table") * 3.0).round(), (per_event("wru") * 3.0).round())
    };
    for round in rounds {
        assert_eq!(round["statuses"], serde_json::json!({"completed": 3}), "{round}");
        assert_eq!(units(round), units(&rounds[0]), "round {} against round 1: {report}", round["round"]);
    }
    assert_eq!(units(&rounds[0]), (12.0, 24.0), "4 table and 4 index units per happy-path event: {report}");
}

/// Fresh AWS resources whose event store's DynamoDB client is behind a meter.
async fn metered_backend() -> (CapacityMeter, synctrail::store::aws::AwsBackend) {
    let f = crate::conformance::aws::fixture().await;
    let meter = CapacityMeter::connect(Some(&endpoint()), Some("us-east-1"), None).await;
    let mut clients = f.clients.clone();
    clients.dynamodb = meter.wrap(&f.clients.dynamodb);
    let config = f.created.config(Some(endpoint()), Some("us-east-1".into()));
    let backend = synctrail::store::aws::AwsBackend::with_clients(&clients, &config).await.expect("connect");
    (meter, backend)
}

/// An unpark moves at most a backlog's worth of an entity's parked events: listing them reads those records whole,
/// not every parked record the index's page lists (thirty here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_meter_listing_nine_of_thirty_parked_events_reads_nine_records() {
    use crate::conformance::build;
    use synctrail::model::Status;
    use synctrail::store::{EventStore, Write};
    let (meter, backend) = metered_backend().await;
    let entity = build::entity("a");
    for i in 0..30 {
        let mut record = build::record(&format!("ev-{i:02}"), Some(&entity), Some(build::order(i)), build::t0());
        (record.status, record.parked) = (Status::Queued, true);
        backend.store.commit(vec![Write::event(record)]).await.expect("park");
    }
    meter.reset();
    let listed = backend.store.parked_events(&entity, 9).await.expect("list");
    let ids: Vec<String> = listed.iter().map(|r| r.event_id.to_string()).collect();
    assert_eq!(ids, (0..9).map(|i| format!("ev-{i:02}")).collect::<Vec<_>>(), "the oldest nine");
    let consumed = meter.consumed().remove(&Party::Framework).unwrap_or_default();
    assert_eq!(consumed.unmetered, 0, "every request was metered");
    assert!(consumed.rru <= 10.0, "nine records of 1 unit each and a page of index keys, not thirty: {consumed:?}");
}

/// A retry costs the same write units whatever the length of its event's history: the record's oldest entries move
/// into parts of their own, so each write of the record stays one unit (spec §9 "Old history entries kept apart").
/// Before, the record passed 1 KB at about its third retry with Lambda's request and trace ids, and each later
/// write cost two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_meter_a_retry_costs_the_same_write_units_whatever_its_events_history() {
    use crate::conformance::build;
    use crate::conformance::suite::{insert_retried_event, write_retries};
    use synctrail::store::EventStore;
    let (meter, backend) = metered_backend().await;
    let store = backend.store.as_ref();
    let mut whole = insert_retried_event(store).await;
    // Ten retries: ten claims (1 unit each), seven failures alone (1 each) and three with the head in one transaction
    // (2 for each item): 29 units, and a history part (1 unit) every few retries once the history is long.
    let mut units_per_ten = Vec::new();
    for tens in [1..=10, 11..=20, 21..=30] {
        meter.reset();
        write_retries(store, tens, &mut whole).await;
        let consumed = meter.consumed().remove(&Party::Framework).unwrap_or_default();
        assert_eq!(consumed.unmetered, 0, "every request was metered");
        units_per_ten.push(consumed.table_wru);
    }
    // The first ten, their history short, write no part: 29 units. The last ten, 41 entries behind them, cost the same
    // but for at most one part (had each write of the record passed 1 KB, they would cost about twice as much).
    let (first, last) = (units_per_ten[0], units_per_ten[2]);
    assert_eq!(first, 29, "table units per ten retries: {units_per_ten:?}");
    assert!(last.abs_diff(first) <= 1, "table units per ten retries: {units_per_ten:?}");
    let read = store.get_event_with_history(&build::id("ev-retried")).await.expect("get").expect("stored");
    assert_eq!(read.history, whole, "the thirty retries' history reads back whole, in order");
}
