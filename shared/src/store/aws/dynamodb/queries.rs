//! Reads: consistent point reads on the table for decisions, the query and hydration helpers every listing uses, and
//! the head listings (expired leases, heads to verify, every head). Event listings are in `listing.rs`.

use super::history::{self, PART_SK_PREFIX};
use super::items::{
    decode, event_pk, head_pk, key, lease_pk, nanos, string, verify_pk, Item, EVENT_SK, GSI3PK, GSI4PK, HEAD_SK,
    ITEM_TYPE, LEASE_SHARDS, LEASE_UNTIL, PK, SK,
};
use super::{DynamoStore, BY_LEASE, BY_WAITING_FOR};
use crate::model::{EntityHead, EntityKey, EventId, EventRecord};
use crate::store::aws::error::from_sdk;
use crate::store::aws::sdk_batch_get::sdk_batch_get;
use crate::store::{HeadPage, StoreError};
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::operation::scan::builders::ScanFluentBuilder;
use aws_sdk_dynamodb::types::{AttributeValue, Select};
use chrono::{DateTime, Utc};
use futures_util::future::try_join_all;
use std::collections::HashMap;

/// Reads one item strongly consistently.
async fn get(store: &DynamoStore, pk: String, sk: &str, what: &str) -> Result<Option<Item>, StoreError> {
    let out = store
        .client
        .get_item()
        .table_name(&store.table)
        .set_key(Some(key(pk, sk)))
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| from_sdk(&format!("reading {what}"), e))?;
    Ok(out.item)
}

pub(super) async fn get_event(store: &DynamoStore, id: &EventId) -> Result<Option<EventRecord>, StoreError> {
    let what = format!("event {id}");
    get(store, event_pk(id.as_str()), EVENT_SK, &what).await?.map(|item| decode(&item, &what)).transpose()
}

/// The record of `id` with its whole history: the parts it keeps apart read with one strongly consistent `Query`
/// of its partition (`history.rs`).
pub(super) async fn get_event_with_history(
    store: &DynamoStore,
    id: &EventId,
) -> Result<Option<EventRecord>, StoreError> {
    let Some(record) = get_event(store, id).await? else { return Ok(None) };
    if record.history_apart.is_none() {
        return Ok(Some(record));
    }
    let what = format!("reading the history of event {id}");
    let mut key = Expr::key();
    key.add(PK, "=", s(event_pk(id.as_str())));
    key.begins_with(SK, s(PART_SK_PREFIX));
    let query = store
        .client
        .query()
        .table_name(&store.table)
        .set_key_condition_expression(key.text())
        .set_expression_attribute_names(Some(key.names))
        .set_expression_attribute_values(Some(key.values))
        .consistent_read(true);
    let parts = items(query, 0, &what).await?;
    history::joined(record, &parts).map(Some)
}

pub(super) async fn get_head(store: &DynamoStore, entity: &EntityKey) -> Result<Option<EntityHead>, StoreError> {
    let key = entity.to_string();
    let what = format!("head of {key}");
    get(store, head_pk(&key), HEAD_SK, &what).await?.map(|item| decode(&item, &what)).transpose()
}

/// The record of `id` and the head of `entity`, read strongly consistently in one `BatchGetItem`.
pub(super) async fn get_event_and_head(
    store: &DynamoStore,
    id: &EventId,
    entity: &EntityKey,
) -> Result<(Option<EventRecord>, Option<EntityHead>), StoreError> {
    let entity_key = entity.to_string();
    let wanted = vec![key(event_pk(id.as_str()), EVENT_SK), key(head_pk(&entity_key), HEAD_SK)];
    let (mut record, mut head) = (None, None);
    for item in hydrate(store, wanted, &format!("reading event {id} and the head of {entity_key}")).await? {
        match string(&item, SK) {
            Some(EVENT_SK) => record = Some(decode(&item, &format!("event {id}"))?),
            Some(HEAD_SK) => head = Some(decode(&item, &format!("head of {entity_key}"))?),
            _ => {}
        }
    }
    Ok((record, head))
}

/// The records of `wanted`'s events and the heads of their entities, read strongly consistently in as few
/// `BatchGetItem`s as there are 100 distinct keys (a batch asks for each key once), in `wanted`'s order.
pub(super) async fn get_events_and_heads(
    store: &DynamoStore,
    wanted: &[(EventId, EntityKey)],
) -> Result<Vec<(Option<EventRecord>, Option<EntityHead>)>, StoreError> {
    let what = format!("reading ahead {} events and their heads", wanted.len());
    let pks: Vec<(String, String)> =
        wanted.iter().map(|(id, entity)| (event_pk(id.as_str()), head_pk(&entity.to_string()))).collect();
    let mut distinct: Vec<(&str, &str)> =
        pks.iter().flat_map(|(event, head)| [(event.as_str(), EVENT_SK), (head.as_str(), HEAD_SK)]).collect();
    distinct.sort_unstable();
    distinct.dedup();
    let entries = distinct.into_iter().map(|(pk, sk)| key(pk.to_owned(), sk)).collect();
    let mut found: HashMap<String, Item> = HashMap::new();
    for item in hydrate(store, entries, &what).await? {
        if let Some(pk) = string(&item, PK) {
            found.insert(pk.to_owned(), item);
        }
    }
    let mut read = Vec::with_capacity(wanted.len());
    for ((id, entity), (event_key, head_key)) in wanted.iter().zip(&pks) {
        let record = found.get(event_key).map(|item| decode(item, &format!("event {id}"))).transpose()?;
        let head = found.get(head_key).map(|item| decode(item, &format!("head of {entity}"))).transpose()?;
        read.push((record, head));
    }
    Ok(read)
}

/// A filter or key-condition expression under construction, with its names and values.
pub(super) struct Expr {
    /// Placeholders are `#<prefix>N` and `:<prefix>N`, so a key condition and a filter never collide.
    prefix: &'static str,
    parts: Vec<String>,
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

impl Expr {
    pub(super) fn key() -> Self {
        Self::with_prefix("k")
    }

    pub(super) fn filter() -> Self {
        Self::with_prefix("f")
    }

    fn with_prefix(prefix: &'static str) -> Self {
        Self { prefix, parts: Vec::new(), names: HashMap::new(), values: HashMap::new() }
    }

    fn name(&mut self, attribute: &str) -> String {
        let name = format!("#{}{}", self.prefix, self.names.len());
        self.names.insert(name.clone(), attribute.to_owned());
        name
    }

    fn value(&mut self, value: AttributeValue) -> String {
        let placeholder = format!(":{}{}", self.prefix, self.values.len());
        self.values.insert(placeholder.clone(), value);
        placeholder
    }

    /// Adds `#name <op> :value`.
    pub(super) fn add(&mut self, attribute: &str, op: &str, value: AttributeValue) {
        let (name, value) = (self.name(attribute), self.value(value));
        self.parts.push(format!("{name} {op} {value}"));
    }

    /// Adds `begins_with(#name, :prefix)`.
    pub(super) fn begins_with(&mut self, attribute: &str, prefix: AttributeValue) {
        let (name, prefix) = (self.name(attribute), self.value(prefix));
        self.parts.push(format!("begins_with({name}, {prefix})"));
    }

    /// Adds `#name BETWEEN :low AND :high`.
    pub(super) fn between(&mut self, attribute: &str, low: AttributeValue, high: AttributeValue) {
        let (name, low, high) = (self.name(attribute), self.value(low), self.value(high));
        self.parts.push(format!("{name} BETWEEN {low} AND {high}"));
    }

    pub(super) fn text(&self) -> Option<String> {
        (!self.parts.is_empty()).then(|| self.parts.join(" AND "))
    }
}

pub(super) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub(super) fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// A query on `index` with `key` as key condition and `filter` as filter.
pub(super) fn query(store: &DynamoStore, index: &str, key: Expr, filter: Expr) -> QueryFluentBuilder {
    let (key_text, filter_text) = (key.text(), filter.text());
    let mut names = key.names;
    names.extend(filter.names);
    let mut values = key.values;
    values.extend(filter.values);
    store
        .client
        .query()
        .table_name(&store.table)
        .index_name(index)
        .set_key_condition_expression(key_text)
        .set_filter_expression(filter_text)
        .set_expression_attribute_names(Some(names))
        .set_expression_attribute_values((!values.is_empty()).then_some(values))
}

/// A scan of the whole table with `filter`.
pub(super) fn scan(store: &DynamoStore, filter: Expr) -> ScanFluentBuilder {
    store
        .client
        .scan()
        .table_name(&store.table)
        .set_filter_expression(filter.text())
        .set_expression_attribute_names(Some(filter.names))
        .set_expression_attribute_values(Some(filter.values))
}

/// Runs `query` page after page until `want` items came back (0: all).
pub(super) async fn items(query: QueryFluentBuilder, want: usize, what: &str) -> Result<Vec<Item>, StoreError> {
    pages(query, want, what, |items| async move { Ok(items) }).await
}

/// Runs `query` page after page, turning each page's items into results with `take`, until `want` results came back
/// (0: all).
pub(super) async fn pages<T, F, Fut>(
    query: QueryFluentBuilder,
    want: usize,
    what: &str,
    mut take: F,
) -> Result<Vec<T>, StoreError>
where
    F: FnMut(Vec<Item>) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<T>, StoreError>>,
{
    let mut out = Vec::new();
    let mut start = None;
    loop {
        let page = query.clone().set_exclusive_start_key(start).send().await.map_err(|e| from_sdk(what, e))?;
        out.extend(take(page.items.unwrap_or_default()).await?);
        start = page.last_evaluated_key;
        if start.is_none() || (want > 0 && out.len() >= want) {
            break;
        }
    }
    if want > 0 {
        out.truncate(want);
    }
    Ok(out)
}

/// Counts what `query` matches, page after page.
pub(super) async fn count(query: QueryFluentBuilder, what: &str) -> Result<u64, StoreError> {
    let query = query.select(Select::Count);
    let mut total = 0u64;
    let mut start = None;
    loop {
        let page = query.clone().set_exclusive_start_key(start).send().await.map_err(|e| from_sdk(what, e))?;
        total += u64::try_from(page.count).unwrap_or(0);
        start = page.last_evaluated_key;
        if start.is_none() {
            return Ok(total);
        }
    }
}

/// Counts what `scan` matches, page after page.
pub(super) async fn count_scan(scan: ScanFluentBuilder, what: &str) -> Result<u64, StoreError> {
    let scan = scan.select(Select::Count);
    let mut total = 0u64;
    let mut start = None;
    loop {
        let page = scan.clone().set_exclusive_start_key(start).send().await.map_err(|e| from_sdk(what, e))?;
        total += u64::try_from(page.count).unwrap_or(0);
        start = page.last_evaluated_key;
        if start.is_none() {
            return Ok(total);
        }
    }
}

/// Keys one `BatchGetItem` may ask for.
const BATCH_GET_KEYS: usize = 100;
/// `BatchGetItem` calls per chunk before keys DynamoDB keeps leaving unprocessed count as unavailable.
const BATCH_GET_ROUNDS: u32 = 10;

/// The whole items of index entries (the indexes project keys and the filtered attributes only; see
/// [`super::INDEX_ATTRIBUTES`]), read strongly consistently, in the entries' order; an item deleted since (by TTL)
/// is left out.
pub(super) async fn hydrate(store: &DynamoStore, entries: Vec<Item>, what: &str) -> Result<Vec<Item>, StoreError> {
    let keys: Vec<Item> = entries.iter().filter_map(|e| Some(key(string(e, PK)?.to_owned(), string(e, SK)?))).collect();
    let mut found: HashMap<String, Item> = HashMap::with_capacity(keys.len());
    for chunk in keys.chunks(BATCH_GET_KEYS) {
        let mut pending = chunk.to_vec();
        for round in 0..BATCH_GET_ROUNDS {
            if pending.is_empty() {
                break;
            }
            if round > 0 {
                crate::store::aws::pause::before_round(round).await;
            }
            let (items, unprocessed) = sdk_batch_get(&store.client, &store.table, pending, what).await?;
            for item in items {
                if let Some(pk) = string(&item, PK) {
                    found.insert(pk.to_owned(), item);
                }
            }
            pending = unprocessed;
        }
        if !pending.is_empty() {
            return Err(StoreError::Unavailable(
                format!(
                    "{what}: DynamoDB left {} keys unprocessed {BATCH_GET_ROUNDS} times; retry later",
                    pending.len()
                )
                .into(),
            ));
        }
    }
    Ok(entries.iter().filter_map(|e| string(e, PK).and_then(|pk| found.remove(pk))).collect())
}

pub(super) fn decode_all<T: serde::de::DeserializeOwned>(items: &[Item], what: &str) -> Result<Vec<T>, StoreError> {
    items.iter().map(|item| decode(item, what)).collect()
}

/// The heads found in every shard of a sharded head index that `keep` keeps (at most `limit` per shard, in index
/// order; 0: all), read whole from the table page by page; the caller orders and truncates them.
pub(super) async fn sharded_heads(
    store: &DynamoStore,
    index: &str,
    limit: usize,
    what: &str,
    condition: impl Fn(u32) -> Expr,
    keep: impl Fn(&EntityHead) -> bool,
) -> Result<Vec<EntityHead>, StoreError> {
    let (condition, keep) = (&condition, &keep);
    let shards = try_join_all((0..LEASE_SHARDS).map(|shard| async move {
        let mut q = query(store, index, condition(shard), Expr::filter()).scan_index_forward(true);
        if limit > 0 {
            q = q.limit(i32::try_from(limit).unwrap_or(i32::MAX));
        }
        pages(q, limit, what, |entries| async move {
            let heads: Vec<EntityHead> = decode_all(&hydrate(store, entries, what).await?, what)?;
            Ok(heads.into_iter().filter(|h| keep(h)).collect())
        })
        .await
    }))
    .await?;
    Ok(shards.concat())
}

/// The lease index sorts a head by its hold's earliest lease end ([`crate::model::Inflight::lease_floor`]), so the
/// entries before `before` are the candidates: those whose current lease (a retry's, later) has not ended are
/// passed over, page after page, until `limit` expired ones are found in each shard.
pub(super) async fn expired_leases(
    store: &DynamoStore,
    before: DateTime<Utc>,
    limit: usize,
) -> Result<Vec<EntityHead>, StoreError> {
    let before_nanos = nanos(before)?;
    let expired = |h: &EntityHead| h.inflight.as_ref().is_some_and(|i| i.lease_until < before);
    let candidates = |shard| {
        let mut condition = Expr::key();
        condition.add(GSI3PK, "=", s(lease_pk(shard)));
        condition.add(LEASE_UNTIL, "<", n(before_nanos));
        condition
    };
    let mut heads = sharded_heads(store, BY_LEASE, limit, "listing expired leases", candidates, expired).await?;
    heads.sort_by_cached_key(|h| (h.inflight.as_ref().map(|i| i.lease_until), h.entity.to_string()));
    if limit > 0 {
        heads.truncate(limit);
    }
    Ok(heads)
}

pub(super) async fn count_inflight(store: &DynamoStore) -> Result<u64, StoreError> {
    let counts = try_join_all((0..LEASE_SHARDS).map(|shard| async move {
        let mut key = Expr::key();
        key.add(GSI3PK, "=", s(lease_pk(shard)));
        count(query(store, BY_LEASE, key, Expr::filter()), "counting heads in flight").await
    }))
    .await?;
    Ok(counts.into_iter().sum())
}

/// Heads flagged `needs_verification`: every `VERIFY#` shard of the sparse `by_waiting_for` index, by entity key (as
/// the embedded store lists them).
pub(super) async fn heads_to_verify(store: &DynamoStore, limit: usize) -> Result<Vec<EntityHead>, StoreError> {
    let flagged = |shard| {
        let mut condition = Expr::key();
        condition.add(GSI4PK, "=", s(verify_pk(shard)));
        condition
    };
    let mut heads = sharded_heads(store, BY_WAITING_FOR, limit, "listing heads to verify", flagged, |_| true).await?;
    heads.sort_by_cached_key(|h| h.entity.to_string());
    if limit > 0 {
        heads.truncate(limit);
    }
    Ok(heads)
}

/// One page of a scan of the heads (unordered); the cursor is the scan's last evaluated key, as JSON.
pub(super) async fn list_heads(store: &DynamoStore, after: Option<&str>, limit: usize) -> Result<HeadPage, StoreError> {
    let what = "listing heads";
    let mut start = match after {
        Some(cursor) => Some(decode_cursor(cursor)?),
        None => None,
    };
    let mut filter = Expr::filter();
    filter.add(ITEM_TYPE, "=", s("head"));
    let mut scan = scan(store, filter);
    if limit > 0 {
        scan = scan.limit(i32::try_from(limit).unwrap_or(i32::MAX));
    }
    loop {
        let page = scan.clone().set_exclusive_start_key(start).send().await.map_err(|e| from_sdk(what, e))?;
        let heads: Vec<EntityHead> = decode_all(&page.items.unwrap_or_default(), what)?;
        start = page.last_evaluated_key;
        if !heads.is_empty() || start.is_none() {
            let next = start.as_ref().map(encode_cursor).transpose()?;
            return Ok(HeadPage { heads, next });
        }
    }
}

fn encode_cursor(key: &Item) -> Result<String, StoreError> {
    let text = |name: &str| match key.get(name) {
        Some(AttributeValue::S(value)) => Ok(value.clone()),
        _ => Err(StoreError::Corrupt(format!("a scan's last evaluated key has no string {name}").into())),
    };
    Ok(serde_json::json!({ PK: text(PK)?, SK: text(SK)? }).to_string())
}

fn decode_cursor(cursor: &str) -> Result<Item, StoreError> {
    let bad = || StoreError::Backend(format!("{cursor:?} is not a cursor of this table's heads; start over").into());
    let value: serde_json::Value = serde_json::from_str(cursor).map_err(|_| bad())?;
    let part = |name: &str| value.get(name).and_then(|v| v.as_str()).map(|v| AttributeValue::S(v.to_owned()));
    Ok(HashMap::from([(PK.to_owned(), part(PK).ok_or_else(bad)?), (SK.to_owned(), part(SK).ok_or_else(bad)?)]))
}
