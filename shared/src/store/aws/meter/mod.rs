//! [`CapacityMeter`]: what DynamoDB would bill for the requests a client makes, computed from real item sizes.
//!
//! An HTTP client in front of the SDK's own (like [`super::DynamoGate`]): it reads each DynamoDB request's JSON,
//! and for every write reads the items it touches before and after it (strongly consistent, with a client of its
//! own that is neither metered nor counted), one write at a time. From those it bills, as DynamoDB does
//! ([`bill::bill_write`]): the larger of the item before and after, one write unit per started KB, doubled in a
//! transaction; a refused conditional write the stored item; plus one write per global secondary index the item
//! is in before or after, sized by that index's projection (read from `DescribeTable`, never assumed). Reads are
//! billed from the items returned: one read unit per started 4 KB, half when eventually consistent, double in a
//! transaction.
//!
//! For benchmarks and tests (`synctrail bench --backend aws`): it serialises writes and doubles the requests
//! behind them, so it is never part of a deployment. Known approximations: `Query`/`Scan` are billed by the items
//! they return, scaled by `ScannedCount / Count` when a filter dropped some (a `Select=COUNT` query, which returns
//! none, as one unit per page); `BatchWriteItem`'s unprocessed items are billed as written; a canceled
//! transaction bills every item it named as refused.

pub mod bill;
pub mod size;

use super::wire::item_from_wire;
use bill::{bill_read, bill_write, Outcome, TableSchema, WriteBill};
use size::{item_size, Item};

use super::DynamoGate;
use aws_sdk_dynamodb as dynamodb;
use aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use http_body_util::BodyExt;
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// Who made a request: the framework's own clients, or the destination's (the reference mirror's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Party {
    /// The event store, payloads and queue.
    Framework,
    /// The destination.
    Destination,
}

/// Capacity consumed, as DynamoDB would bill it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Consumed {
    /// Write request units in tables.
    pub table_wru: u64,
    /// Write request units per global secondary index.
    pub index_wru: BTreeMap<String, u64>,
    /// Read request units.
    pub rru: f64,
    /// Requests the meter could not bill (a before/after read failed); 0 in a sound run.
    pub unmetered: u64,
}

impl Consumed {
    /// Write units in tables and indexes.
    pub fn wru(&self) -> u64 {
        self.table_wru + self.index_wru.values().sum::<u64>()
    }

    fn add_write(&mut self, bill: &WriteBill) {
        self.table_wru += bill.table;
        for (index, units) in &bill.indexes {
            *self.index_wru.entry(index.clone()).or_insert(0) += units;
        }
    }
}

/// What a table holds, as storage is billed (100 bytes of overhead per item and per index entry).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stored {
    /// Items.
    pub items: u64,
    /// Their bytes in the table.
    pub table_bytes: u64,
    /// Their entries' bytes in the indexes.
    pub index_bytes: u64,
}

/// Meters DynamoDB capacity for the clients it wraps; clones share one tally (see the module docs).
#[derive(Debug, Clone)]
pub struct CapacityMeter {
    shared: Arc<Shared>,
    party: Party,
}

#[derive(Debug)]
struct Shared {
    reader: dynamodb::Client,
    s3: aws_sdk_s3::Client,
    schemas: tokio::sync::Mutex<HashMap<String, Arc<TableSchema>>>,
    writes: tokio::sync::Mutex<()>,
    consumed: Mutex<BTreeMap<Party, Consumed>>,
}

impl CapacityMeter {
    /// A meter reading the endpoint of `endpoint_url`/`region` (see [`super::sdk_config`]) with clients of its own,
    /// behind `gate` when given; it bills what the clients it wraps do to the [`Party::Framework`] until
    /// [`CapacityMeter::for_party`] says otherwise.
    pub async fn connect(endpoint_url: Option<&str>, region: Option<&str>, gate: Option<&DynamoGate>) -> Self {
        let shared = super::sdk_config(endpoint_url, region).await;
        let mut reader = dynamodb::Client::new(&shared);
        if let Some(gate) = gate {
            reader = gate.wrap(&reader);
        }
        let mut s3 = aws_sdk_s3::config::Builder::from(&shared);
        if endpoint_url.is_some() || shared.endpoint_url().is_some() {
            s3 = s3.force_path_style(true);
        }
        let s3 = aws_sdk_s3::Client::from_conf(s3.build());
        let shared = Shared {
            reader,
            s3,
            schemas: tokio::sync::Mutex::default(),
            writes: tokio::sync::Mutex::default(),
            consumed: Mutex::default(),
        };
        Self { shared: Arc::new(shared), party: Party::Framework }
    }

    /// This meter, billing the clients it wraps to `party`.
    pub fn for_party(&self, party: Party) -> Self {
        Self { shared: Arc::clone(&self.shared), party }
    }

    /// `client` with this meter in front of its HTTP client (its interceptors kept).
    pub fn wrap(&self, client: &dynamodb::Client) -> dynamodb::Client {
        let config = client.config();
        let Some(inner) = config.http_client() else {
            tracing::warn!("the DynamoDB client has no HTTP client to meter; not metering");
            return client.clone();
        };
        let metered = MeteredHttpClient { inner, meter: self.clone() };
        dynamodb::Client::from_conf(config.to_builder().http_client(metered).build())
    }

    /// What each party consumed so far.
    pub fn consumed(&self) -> BTreeMap<Party, Consumed> {
        self.shared.consumed.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Forgets what was consumed so far.
    pub fn reset(&self) {
        self.shared.consumed.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// What `table` holds, per party as `owner` tells from an item.
    pub async fn stored(
        &self,
        table: &str,
        owner: impl Fn(&Item) -> Party,
    ) -> Result<BTreeMap<Party, Stored>, dynamodb::Error> {
        let schema = self.schema(table).await?;
        let mut out: BTreeMap<Party, Stored> = BTreeMap::new();
        let mut start = None;
        loop {
            let page = self.shared.reader.scan().table_name(table).set_exclusive_start_key(start).send().await?;
            for item in page.items() {
                let (table_bytes, index_bytes) = schema.stored_bytes(item);
                let stored = out.entry(owner(item)).or_default();
                stored.items += 1;
                stored.table_bytes += table_bytes;
                stored.index_bytes += index_bytes;
            }
            start = page.last_evaluated_key;
            if start.is_none() {
                return Ok(out);
            }
        }
    }

    /// Objects in `bucket` and their bytes.
    pub async fn bucket_bytes(&self, bucket: &str) -> Result<(u64, u64), aws_sdk_s3::Error> {
        let (mut objects, mut bytes) = (0u64, 0u64);
        let mut token = None;
        loop {
            let page = self.shared.s3.list_objects_v2().bucket(bucket).set_continuation_token(token).send().await?;
            for object in page.contents() {
                objects += 1;
                bytes += u64::try_from(object.size().unwrap_or(0)).unwrap_or(0);
            }
            token = page.next_continuation_token;
            if token.is_none() {
                return Ok((objects, bytes));
            }
        }
    }

    async fn schema(&self, table: &str) -> Result<Arc<TableSchema>, dynamodb::Error> {
        let mut schemas = self.shared.schemas.lock().await;
        if let Some(schema) = schemas.get(table) {
            return Ok(Arc::clone(schema));
        }
        let described = self.shared.reader.describe_table().table_name(table).send().await?;
        let schema = Arc::new(described.table.as_ref().map(TableSchema::of).unwrap_or_default());
        schemas.insert(table.to_owned(), Arc::clone(&schema));
        Ok(schema)
    }

    async fn read_item(&self, table: &str, key: &Item) -> Result<Option<Item>, dynamodb::Error> {
        let out = self
            .shared
            .reader
            .get_item()
            .table_name(table)
            .set_key(Some(key.clone()))
            .consistent_read(true)
            .send()
            .await?;
        Ok(out.item)
    }

    fn add(&self, f: impl FnOnce(&mut Consumed)) {
        let mut consumed = self.shared.consumed.lock().unwrap_or_else(|p| p.into_inner());
        f(consumed.entry(self.party).or_default());
    }

    /// Sends a write through `inner`, billing it from the items before and after it.
    async fn write(
        &self,
        operation: &str,
        body: &Value,
        inner: SharedHttpConnector,
        request: HttpRequest,
    ) -> Result<HttpResponse, ConnectorError> {
        let _turn = self.shared.writes.lock().await;
        let transactional = operation == "TransactWriteItems";
        let mut planned = Vec::new();
        let mut metered = true;
        for action in writes_of(operation, body) {
            match self.schema(&action.table).await {
                Ok(schema) => {
                    let key = action
                        .key
                        .clone()
                        .unwrap_or_else(|| schema.key_of(action.item.as_ref().unwrap_or(&Item::new())));
                    match self.read_item(&action.table, &key).await {
                        Ok(before) => planned.push((action, schema, key, before)),
                        Err(_) => metered = false,
                    }
                }
                Err(_) => metered = false,
            }
        }
        let response = inner.call(request).await?;
        let outcome = if response.status().is_success() { Outcome::Written } else { Outcome::Refused };
        if !metered {
            self.add(|c| c.unmetered += 1);
            return Ok(response);
        }
        for (action, schema, key, before) in planned {
            let after = match (outcome, action.kind) {
                (Outcome::Refused, _) | (_, Kind::Check) => before.clone(),
                (Outcome::Written, Kind::Put) => action.item.clone(),
                (Outcome::Written, Kind::Delete) => None,
                (Outcome::Written, Kind::Update) => match self.read_item(&action.table, &key).await {
                    Ok(after) => after,
                    Err(_) => {
                        self.add(|c| c.unmetered += 1);
                        continue;
                    }
                },
            };
            let bill = bill_write(&schema, before.as_ref(), after.as_ref(), transactional, outcome);
            self.add(|c| c.add_write(&bill));
        }
        Ok(response)
    }

    /// Bills a read from its request and the response's items.
    fn read(&self, operation: &str, request: &Value, response: &Value) {
        let consistent = request.get("ConsistentRead").and_then(Value::as_bool).unwrap_or(false);
        let items = |value: Option<&Value>| -> Vec<Item> {
            value.and_then(Value::as_array).map(|a| a.iter().filter_map(item_from_wire).collect()).unwrap_or_default()
        };
        let units = match operation {
            "GetItem" => {
                let size = response.get("Item").and_then(item_from_wire).map_or(0, |i| item_size(&i));
                bill_read(size, consistent, false)
            }
            "TransactGetItems" => response
                .get("Responses")
                .and_then(Value::as_array)
                .map(|all| {
                    all.iter()
                        .map(|r| {
                            bill_read(r.get("Item").and_then(item_from_wire).map_or(0, |i| item_size(&i)), true, true)
                        })
                        .sum()
                })
                .unwrap_or(0.0),
            "BatchGetItem" => {
                let mut units = 0.0;
                for (table, asked) in request.get("RequestItems").and_then(Value::as_object).into_iter().flatten() {
                    let consistent = asked.get("ConsistentRead").and_then(Value::as_bool).unwrap_or(false);
                    let keys = asked.get("Keys").and_then(Value::as_array).map_or(0, Vec::len);
                    let found = items(response.get("Responses").and_then(|r| r.get(table)));
                    units += found.iter().map(|i| bill_read(item_size(i), consistent, false)).sum::<f64>();
                    units += keys.saturating_sub(found.len()) as f64 * bill_read(0, consistent, false);
                }
                units
            }
            "Query" | "Scan" => {
                let found = items(response.get("Items"));
                let count = response.get("Count").and_then(Value::as_u64).unwrap_or(0);
                let scanned = response.get("ScannedCount").and_then(Value::as_u64).unwrap_or(count);
                let bytes: u64 = found.iter().map(item_size).sum();
                let bytes = (bytes * scanned).checked_div(count).unwrap_or(0);
                bill_read(bytes, consistent, false)
            }
            _ => 0.0,
        };
        self.add(|c| c.rru += units);
    }
}

/// What a write does to one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Put,
    Update,
    Delete,
    Check,
}

/// One item a write request touches.
#[derive(Debug, Clone)]
struct Action {
    table: String,
    kind: Kind,
    /// The key, when the request names it.
    key: Option<Item>,
    /// The whole new item of a put.
    item: Option<Item>,
}

/// The items a write request touches.
fn writes_of(operation: &str, body: &Value) -> Vec<Action> {
    let table = |v: &Value| v.get("TableName").and_then(Value::as_str).unwrap_or_default().to_owned();
    let action = |kind: Kind, v: &Value, table: String| Action {
        table,
        kind,
        key: v.get("Key").and_then(item_from_wire),
        item: if kind == Kind::Put { v.get("Item").and_then(item_from_wire) } else { None },
    };
    match operation {
        "PutItem" => vec![action(Kind::Put, body, table(body))],
        "UpdateItem" => vec![action(Kind::Update, body, table(body))],
        "DeleteItem" => vec![action(Kind::Delete, body, table(body))],
        "TransactWriteItems" => body
            .get("TransactItems")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|entry| {
                let entry = entry.as_object()?;
                let (verb, v) = entry.iter().next()?;
                let kind = match verb.as_str() {
                    "Put" => Kind::Put,
                    "Update" => Kind::Update,
                    "Delete" => Kind::Delete,
                    _ => Kind::Check,
                };
                Some(action(kind, v, table(v)))
            })
            .collect(),
        "BatchWriteItem" => body
            .get("RequestItems")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .flat_map(|(name, requests)| {
                requests.as_array().into_iter().flatten().filter_map(move |r| {
                    if let Some(put) = r.get("PutRequest") {
                        Some(action(Kind::Put, put, name.clone()))
                    } else {
                        r.get("DeleteRequest").map(|d| action(Kind::Delete, d, name.clone()))
                    }
                })
            })
            .collect(),
        _ => Vec::new(),
    }
}

const WRITES: [&str; 5] = ["PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem"];
const READS: [&str; 5] = ["GetItem", "BatchGetItem", "TransactGetItems", "Query", "Scan"];

#[derive(Debug, Clone)]
struct MeteredHttpClient {
    inner: SharedHttpClient,
    meter: CapacityMeter,
}

impl HttpClient for MeteredHttpClient {
    fn http_connector(&self, settings: &HttpConnectorSettings, components: &RuntimeComponents) -> SharedHttpConnector {
        let inner = self.inner.http_connector(settings, components);
        SharedHttpConnector::new(MeteredConnector { inner, meter: self.meter.clone() })
    }

    fn connector_metadata(&self) -> Option<ConnectorMetadata> {
        self.inner.connector_metadata()
    }
}

#[derive(Debug)]
struct MeteredConnector {
    inner: SharedHttpConnector,
    meter: CapacityMeter,
}

impl HttpConnector for MeteredConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let (inner, meter) = (self.inner.clone(), self.meter.clone());
        HttpConnectorFuture::new(async move {
            let operation = request
                .headers()
                .get("x-amz-target")
                .and_then(|target| target.rsplit('.').next())
                .unwrap_or_default()
                .to_owned();
            let body: Option<Value> = request.body().bytes().and_then(|b| serde_json::from_slice(b).ok());
            match body {
                Some(body) if WRITES.contains(&operation.as_str()) => {
                    meter.write(&operation, &body, inner, request).await
                }
                Some(body) if READS.contains(&operation.as_str()) => {
                    let mut response = inner.call(request).await?;
                    let bytes = response.take_body().collect().await.map_err(ConnectorError::io)?.to_bytes();
                    if response.status().is_success() {
                        let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                        meter.read(&operation, &body, &answer);
                    }
                    *response.body_mut() = SdkBody::from(bytes);
                    Ok(response)
                }
                _ => inner.call(request).await,
            }
        })
    }
}
