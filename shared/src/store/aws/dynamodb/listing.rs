//! Listings and counts of events: by dependency, entity or status through the indexes, otherwise a scan.
//! `count_events` counts with `Select=COUNT` (no record read) wherever the index entries carry every filter of the
//! listing, and otherwise counts what `list_events` lists.
//!
//! Two choices shape this file (`docs/aws-table.md`): event items carry no `status` attribute, so a status change
//! never rewrites an event's `by_entity` entry and listings filter statuses on the records they read; and
//! `processing` and `errored` events are not in `by_status` at all — each is the in-flight event of its entity's
//! head (spec §9: a record becomes `processing` only once its head names it, and an `errored` one keeps it until the
//! record moves on), so they are found through the heads in the sparse `by_lease` index.

use super::items::{
    entity_pk, event_pk, held_by_its_head, key, lease_pk, nanos, parked_pk, sortable, status_partitions, string,
    waiting_pk, Item, EVENT_SK, GSI1PK, GSI1SK, GSI2PK, GSI3PK, GSI4PK, ITEM_TYPE, RECEIVED_AT, SOURCE,
};
use super::queries::{count, count_scan, decode_all, hydrate, items, n, pages, query, s, scan, sharded_heads, Expr};
use super::{DynamoStore, BY_ENTITY, BY_LEASE, BY_STATUS, BY_WAITING_FOR};
use crate::model::{EntityKey, EventRecord, Status};
use crate::store::aws::error::from_sdk;
use crate::store::{EventQuery, StoreError};
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use futures_util::future::try_join_all;
use futures_util::{StreamExt, TryStreamExt};
use std::collections::BTreeMap;

/// Count queries in flight at once while counting by status (one per partition of every status).
const COUNT_CONCURRENCY: usize = 16;

/// The filters of `query` other than the one the index serves, the status aside (items don't carry it; see
/// [`super::INDEX_ATTRIBUTES`]).
fn filters(query: &EventQuery, with_window: bool) -> Result<Expr, StoreError> {
    let mut filter = Expr::filter();
    if let Some(source) = &query.source {
        filter.add(SOURCE, "=", s(source.clone()));
    }
    if with_window {
        if let Some(since) = query.since {
            filter.add(RECEIVED_AT, ">=", n(nanos(since)?));
        }
        if let Some(until) = query.until {
            filter.add(RECEIVED_AT, "<", n(nanos(until)?));
        }
    }
    Ok(filter)
}

/// Whether `record` passes `query`'s status, source and time window (what a filter expression would check).
fn selects(query: &EventQuery, record: &EventRecord) -> bool {
    query.status.is_none_or(|status| record.status == status)
        && query.source.as_ref().is_none_or(|source| record.entity.as_ref().is_some_and(|e| &e.source == source))
        && query.since.is_none_or(|since| record.received_at >= since)
        && query.until.is_none_or(|until| record.received_at < until)
}

/// Whether `query`'s time window holds no instant (`since` at or after `until`): it selects nothing, and asking
/// DynamoDB anyway would send a key condition `BETWEEN low AND high` with `low` above `high`, which it refuses
/// (`ValidationException`).
fn window_is_empty(query: &EventQuery) -> bool {
    matches!((query.since, query.until), (Some(since), Some(until)) if since >= until)
}

pub(super) async fn list_events(store: &DynamoStore, query: &EventQuery) -> Result<Vec<EventRecord>, StoreError> {
    let what = "listing events";
    if window_is_empty(query) {
        return Ok(Vec::new());
    }
    if let Some(dependency) = &query.waiting_for {
        let mut key = Expr::key();
        key.add(GSI4PK, "=", s(waiting_pk(dependency)));
        let q = self::query(store, BY_WAITING_FOR, key, filters(query, true)?).scan_index_forward(true);
        return decode_all(&hydrate(store, items(q, query.limit, what).await?, what).await?, what);
    }
    if let Some(entity) = &query.entity {
        let mut key = Expr::key();
        key.add(GSI2PK, "=", s(entity_pk(&entity.to_string())));
        let q = self::query(store, BY_ENTITY, key, filters(query, true)?).scan_index_forward(true);
        return records_where(store, q, query.limit, what, |r| selects(query, r)).await;
    }
    match query.status {
        Some(status) if held_by_its_head(status) => held_by_heads(store, query).await,
        Some(status) => by_status(store, query, status).await,
        None => scan_events(store, query).await,
    }
}

/// An entity's parked events through its `PARKED#` partition of `by_waiting_for` (in `by_entity` key order); the
/// index lags the table, so each record is read again and kept only if it is still parked.
pub(super) async fn parked_events(
    store: &DynamoStore,
    entity: &EntityKey,
    limit: usize,
) -> Result<Vec<EventRecord>, StoreError> {
    let mut key = Expr::key();
    key.add(GSI4PK, "=", s(parked_pk(&entity.to_string())));
    let mut q = query(store, BY_WAITING_FOR, key, Expr::filter()).scan_index_forward(true);
    // Pages of as many entries as wanted: each entry is read whole from the table, and a page of up to 1 MB of keys
    // would read every parked record to move the few that fit (almost every entry is still parked, so a page rarely
    // comes back short).
    if limit > 0 {
        q = q.limit(i32::try_from(limit).unwrap_or(i32::MAX));
    }
    records_where(store, q, limit, "listing parked events", |r| r.status == Status::Queued && r.parked).await
}

/// The records `q` finds that `keep` keeps, page after page until `want` are kept (0: all), in the index's order;
/// every entry of a page is read whole from the table.
async fn records_where(
    store: &DynamoStore,
    q: QueryFluentBuilder,
    want: usize,
    what: &str,
    keep: impl Fn(&EventRecord) -> bool,
) -> Result<Vec<EventRecord>, StoreError> {
    let keep = &keep;
    pages(q, want, what, |entries| async move {
        let records: Vec<EventRecord> = decode_all(&hydrate(store, entries, what).await?, what)?;
        Ok(records.into_iter().filter(|r| keep(r)).collect())
    })
    .await
}

/// Events in `status` (not `processing`), newest received first: every shard of the status and its legacy
/// partition, each read up to the limit, merged by sort key. The index lags the table: a record read whole may have
/// left the status since (callers that act on the status check it; a page stays as long as the index's).
async fn by_status(store: &DynamoStore, query: &EventQuery, status: Status) -> Result<Vec<EventRecord>, StoreError> {
    let what = "listing events by status";
    let window = StatusWindow::of(query)?;
    let partitions = status_partitions(status.as_str()).map(|partition| {
        let key = window.key(partition);
        let mut q = self::query(store, BY_STATUS, key, filters(query, false)?).scan_index_forward(false);
        if query.source.is_none() && query.limit > 0 {
            q = q.limit(i32::try_from(query.limit).unwrap_or(i32::MAX));
        }
        Ok::<_, StoreError>(items(q, query.limit, what))
    });
    let mut entries: Vec<Item> = try_join_all(partitions.collect::<Result<Vec<_>, _>>()?).await?.concat();
    entries.sort_by(|a, b| string(b, GSI1SK).cmp(&string(a, GSI1SK)));
    if query.limit > 0 {
        entries.truncate(query.limit);
    }
    decode_all(&hydrate(store, entries, what).await?, what)
}

/// `query`'s time window as bounds of `by_status` sort keys (a non-empty window: see [`window_is_empty`]).
struct StatusWindow {
    low: Option<String>,
    high: Option<String>,
}

impl StatusWindow {
    /// `<received>` keys (`<received>#<id>` on items written before): `since` is a lower bound as is; `until`
    /// (exclusive) bounds with the last nanosecond before it, followed by `~`, which sorts after every event id
    /// character.
    fn of(query: &EventQuery) -> Result<Self, StoreError> {
        let low = query.since.map(nanos).transpose()?.map(sortable);
        let high = query.until.map(nanos).transpose()?.map(|u| format!("{}~", sortable(u.saturating_sub(1))));
        Ok(Self { low, high })
    }

    /// The key condition on one `by_status` partition.
    fn key(&self, partition: String) -> Expr {
        let mut key = Expr::key();
        key.add(GSI1PK, "=", s(partition));
        match (&self.low, &self.high) {
            (Some(low), Some(high)) => key.between(GSI1SK, s(low), s(high)),
            (Some(low), None) => key.add(GSI1SK, ">=", s(low)),
            (None, Some(high)) => key.add(GSI1SK, "<=", s(high)),
            (None, None) => {}
        }
        key
    }
}

/// The in-flight events of the heads in `by_lease` that `query` selects (its status `processing` or `errored`, or
/// either when it names none), newest received first, read whole.
async fn held_by_heads(store: &DynamoStore, query: &EventQuery) -> Result<Vec<EventRecord>, StoreError> {
    let what = "listing the events in flight through their heads";
    let in_flight = |shard| {
        let mut condition = Expr::key();
        condition.add(GSI3PK, "=", s(lease_pk(shard)));
        condition
    };
    let heads = sharded_heads(store, BY_LEASE, 0, what, in_flight, |_| true).await?;
    let inflight: Vec<Item> = heads
        .iter()
        .filter_map(|head| head.inflight.as_ref())
        .map(|inflight| key(event_pk(inflight.slot.event_id.as_str()), EVENT_SK))
        .collect();
    let mut records: Vec<EventRecord> = decode_all::<EventRecord>(&hydrate(store, inflight, what).await?, what)?
        .into_iter()
        .filter(|r| held_by_its_head(r.status) && selects(query, r))
        .collect();
    records.sort_by(|a, b| (b.received_at, &b.event_id).cmp(&(a.received_at, &a.event_id)));
    if query.limit > 0 {
        records.truncate(query.limit);
    }
    Ok(records)
}

/// Every event, filtered, newest received first: a scan of the whole table (development convenience).
async fn scan_events(store: &DynamoStore, query: &EventQuery) -> Result<Vec<EventRecord>, StoreError> {
    let what = "scanning events";
    let mut filter = filters(query, true)?;
    filter.add(ITEM_TYPE, "=", s("event"));
    let scan = scan(store, filter);
    let mut records: Vec<EventRecord> = Vec::new();
    let mut start = None;
    loop {
        let page = scan.clone().set_exclusive_start_key(start).send().await.map_err(|e| from_sdk(what, e))?;
        records.extend(
            decode_all::<EventRecord>(&page.items.unwrap_or_default(), what)?.into_iter().filter(|r| selects(query, r)),
        );
        start = page.last_evaluated_key;
        if start.is_none() {
            break;
        }
    }
    records.sort_by(|a, b| (b.received_at, &b.event_id).cmp(&(a.received_at, &a.event_id)));
    if query.limit > 0 {
        records.truncate(query.limit);
    }
    Ok(records)
}

/// How many events `list_events` would list for `query`, its limit aside. Counted with `Select=COUNT` requests,
/// reading no record, where the index entries carry every filter the listing applies: by dependency
/// (`by_waiting_for`), by entity without a status (`by_entity`), by a status other than `processing` and `errored`
/// (every partition of it in `by_status`, the window in the key condition), and with neither status nor entity (a
/// counting scan, as the listing scans). The other shapes count the records `list_events` reads: under an entity
/// with a status (the entries do not carry it, so each record is read) and `processing` or `errored` (found
/// through the heads in flight, as many reads as heads hold an event). Like the listings, counts follow the
/// eventually consistent indexes.
pub(super) async fn count_events(store: &DynamoStore, query: &EventQuery) -> Result<u64, StoreError> {
    let what = "counting events";
    if window_is_empty(query) {
        return Ok(0);
    }
    if let Some(dependency) = &query.waiting_for {
        let mut key = Expr::key();
        key.add(GSI4PK, "=", s(waiting_pk(dependency)));
        return count(self::query(store, BY_WAITING_FOR, key, filters(query, true)?), what).await;
    }
    match (&query.entity, query.status) {
        (Some(entity), None) => {
            let mut key = Expr::key();
            key.add(GSI2PK, "=", s(entity_pk(&entity.to_string())));
            count(self::query(store, BY_ENTITY, key, filters(query, true)?), what).await
        }
        (None, Some(status)) if !held_by_its_head(status) => {
            let window = StatusWindow::of(query)?;
            let partitions = status_partitions(status.as_str())
                .map(|partition| Ok(self::query(store, BY_STATUS, window.key(partition), filters(query, false)?)))
                .collect::<Result<Vec<_>, StoreError>>()?;
            let counts = try_join_all(partitions.into_iter().map(|q| count(q, what))).await?;
            Ok(counts.into_iter().sum())
        }
        (None, None) => {
            let mut filter = filters(query, true)?;
            filter.add(ITEM_TYPE, "=", s("event"));
            count_scan(scan(store, filter), what).await
        }
        (_, Some(_)) => {
            let all = EventQuery { limit: 0, ..query.clone() };
            Ok(u64::try_from(list_events(store, &all).await?.len()).unwrap_or(u64::MAX))
        }
    }
}

/// Events per status: a `Select=COUNT` query on every partition of every status but `processing` and `errored`,
/// which count the heads' in-flight events in each (an `errored` entry written before is left out: its event's head
/// names it too).
pub(super) async fn count_by_status(store: &DynamoStore) -> Result<BTreeMap<Status, u64>, StoreError> {
    let what = "counting events by status";
    let mut partitions: Vec<(Status, String)> = Vec::new();
    for status in Status::ALL.into_iter().filter(|status| !held_by_its_head(*status)) {
        partitions.extend(status_partitions(status.as_str()).map(|partition| (status, partition)));
    }
    let counted: Vec<(Status, u64)> = futures_util::stream::iter(partitions)
        .map(|(status, partition)| async move {
            let mut key = Expr::key();
            key.add(GSI1PK, "=", s(partition));
            Ok::<_, StoreError>((status, count(query(store, BY_STATUS, key, Expr::filter()), what).await?))
        })
        .buffer_unordered(COUNT_CONCURRENCY)
        .try_collect()
        .await?;
    let mut counts = BTreeMap::new();
    for (status, n) in counted {
        *counts.entry(status).or_insert(0) += n;
    }
    for record in held_by_heads(store, &EventQuery::default()).await? {
        *counts.entry(record.status).or_insert(0) += 1;
    }
    counts.retain(|_, n| *n > 0);
    Ok(counts)
}
