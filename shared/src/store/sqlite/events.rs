//! [`SqliteStore`]: event records and entity heads, with all-or-nothing conditional commits.
//!
//! Each row keeps the record or head whole as JSON plus the indexed columns queries need. `count_by_status`
//! lists only statuses that have events; `expired_leases` with limit 0 returns them all.

use super::codec::{from_json, int, nanos, to_json, uint, Cached};
use super::db::Db;
use super::error::SqlContext;
use crate::model::{EntityHead, EntityKey, EventId, EventRecord, Status};
use crate::store::{EventQuery, EventStore, Expect, HeadPage, StoreError, Write};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::types::Value as SqlValue;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, ToSql};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The embedded [`EventStore`]: tables `events` and `heads` in `synctrail.db`.
pub struct SqliteStore {
    db: Arc<Db>,
}

impl SqliteStore {
    pub(crate) fn new(db: Arc<Db>) -> Self {
        Self { db }
    }
}

/// "found version N" or "found none", for conflict messages.
fn found_version(conn: &Connection, table: &str, key_column: &str, key: &str) -> Result<String, StoreError> {
    let sql = format!("SELECT version FROM {table} WHERE {key_column} = ?1");
    let version: Option<i64> = conn.one(&sql, [key], |row| row.get(0)).optional().ctx("reading a version")?;
    Ok(version.map_or_else(|| "found none".to_owned(), |v| format!("found version {v}")))
}

/// An event row with every column computed and its body encoded: what [`put_event`] writes. Encoding happens
/// before a write joins the group commit, so JSON work runs beside other writers instead of inside the writer slot.
struct EventRow {
    id: String,
    status: &'static str,
    source: Option<String>,
    entity_key: Option<String>,
    order_nanos: Option<i64>,
    order_version: Option<i64>,
    received_at: i64,
    updated_at: i64,
    version: i64,
    body: String,
    expect: Expect,
}

impl EventRow {
    fn of(record: &EventRecord, expect: Expect) -> Result<Self, StoreError> {
        Ok(Self {
            id: record.event_id.to_string(),
            status: record.status.as_str(),
            source: record.entity.as_ref().map(|e| e.source.clone()),
            entity_key: record.entity.as_ref().map(ToString::to_string),
            order_nanos: record.order.map(|o| o.nanos),
            order_version: record.order.map(|o| o.version),
            received_at: nanos(record.received_at)?,
            updated_at: nanos(record.updated_at)?,
            version: int(record.version, "event version")?,
            body: to_json(record, "event record")?,
            expect,
        })
    }
}

/// A head row ready to write (see [`EventRow`]).
struct HeadRow {
    key: String,
    lease_until: Option<i64>,
    version: i64,
    body: String,
    needs_verification: bool,
    expect: Expect,
}

impl HeadRow {
    fn of(head: &EntityHead, expect: Expect) -> Result<Self, StoreError> {
        Ok(Self {
            key: head.entity.to_string(),
            lease_until: head.inflight.as_ref().map(|i| nanos(i.lease_until)).transpose()?,
            version: int(head.version, "head version")?,
            body: to_json(head, "entity head")?,
            needs_verification: head.needs_verification,
            expect,
        })
    }
}

/// One write of a commit, encoded.
enum Row {
    Event(EventRow),
    Head(HeadRow),
}

impl Row {
    fn of(write: &Write) -> Result<Self, StoreError> {
        match write {
            Write::Event { record, expect } => EventRow::of(record, *expect).map(Row::Event),
            Write::Head { head, expect } => HeadRow::of(head, *expect).map(Row::Head),
        }
    }

    fn put(&self, conn: &Connection) -> Result<(), StoreError> {
        match self {
            Row::Event(row) => put_event(conn, row),
            Row::Head(row) => put_head(conn, row),
        }
    }
}

fn put_event(conn: &Connection, row: &EventRow) -> Result<(), StoreError> {
    let id = row.id.as_str();
    // ?1 … ?10: the row's columns; the updates add ?11, the version they expect.
    let mut values: Vec<&dyn ToSql> = vec![
        &id,
        &row.status,
        &row.source,
        &row.entity_key,
        &row.order_nanos,
        &row.order_version,
        &row.received_at,
        &row.updated_at,
        &row.version,
        &row.body,
    ];
    let expected;
    let changed = match row.expect {
        Expect::Absent => conn
            .exec(
                "INSERT INTO events (event_id, status, source, entity_key, order_nanos, order_version, received_at,
                     updated_at, version, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) ON CONFLICT (event_id) DO NOTHING",
                params_from_iter(&values),
            )
            .ctx("inserting an event")?,
        Expect::Version(version) => {
            expected = int(version, "expected version")?;
            values.push(&expected);
            // Usually only the status, the times and the body change: an UPDATE that sets only those leaves the
            // source, entity and received-time indexes untouched (SQLite rewrites an index entry whenever a
            // column of it is set, even to its own value), which halves the pages an event's update writes.
            let changed = conn
                .exec(
                    "UPDATE events SET status = ?2, updated_at = ?8, version = ?9, body = ?10
                     WHERE event_id = ?1 AND version = ?11 AND source IS ?3 AND entity_key IS ?4
                         AND order_nanos IS ?5 AND order_version IS ?6 AND received_at = ?7",
                    params_from_iter(&values),
                )
                .ctx("updating an event")?;
            if changed > 0 {
                changed
            } else {
                conn.exec(
                    "UPDATE events SET status = ?2, source = ?3, entity_key = ?4, order_nanos = ?5,
                         order_version = ?6, received_at = ?7, updated_at = ?8, version = ?9, body = ?10
                     WHERE event_id = ?1 AND version = ?11",
                    params_from_iter(&values),
                )
                .ctx("updating an event")?
            }
        }
    };
    if changed == 0 {
        let found = found_version(conn, "events", "event_id", id)?;
        return Err(StoreError::Conflict(format!("event {id}: expected {}, {found}", describe(row.expect)).into()));
    }
    Ok(())
}

fn put_head(conn: &Connection, row: &HeadRow) -> Result<(), StoreError> {
    let key = &row.key;
    let changed = match row.expect {
        Expect::Absent => conn
            .exec(
                "INSERT INTO heads (entity_key, lease_until, version, body, needs_verification)
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (entity_key) DO NOTHING",
                params![key, row.lease_until, row.version, row.body, row.needs_verification],
            )
            .ctx("inserting a head")?,
        Expect::Version(expected) => conn
            .exec(
                "UPDATE heads SET lease_until = ?2, version = ?3, body = ?4, needs_verification = ?6
                 WHERE entity_key = ?1 AND version = ?5",
                params![
                    key,
                    row.lease_until,
                    row.version,
                    row.body,
                    int(expected, "expected version")?,
                    row.needs_verification
                ],
            )
            .ctx("updating a head")?,
    };
    if changed == 0 {
        let found = found_version(conn, "heads", "entity_key", key)?;
        return Err(StoreError::Conflict(format!("head of {key}: expected {}, {found}", describe(row.expect)).into()));
    }
    Ok(())
}

fn describe(expect: Expect) -> String {
    match expect {
        Expect::Absent => "it absent".to_owned(),
        Expect::Version(v) => format!("version {v}"),
    }
}

fn read_bodies<T: serde::de::DeserializeOwned>(
    conn: &Connection,
    sql: &str,
    args: Vec<SqlValue>,
    what: &str,
) -> Result<Vec<T>, StoreError> {
    let mut stmt = conn.prepare_cached(sql).ctx(what)?;
    let bodies = stmt
        .query_map(params_from_iter(args), |row| row.get::<_, String>(0))
        .ctx(what)?
        .collect::<Result<Vec<_>, _>>()
        .ctx(what)?;
    bodies.iter().map(|body| from_json(body, what)).collect()
}

fn limit_value(limit: usize) -> SqlValue {
    // SQLite reads a negative LIMIT as no limit.
    SqlValue::Integer(if limit == 0 { -1 } else { i64::try_from(limit).unwrap_or(i64::MAX) })
}

/// The record of event `id`, if stored.
fn read_event(conn: &Connection, id: &str) -> Result<Option<EventRecord>, StoreError> {
    let body: Option<String> = conn
        .one("SELECT body FROM events WHERE event_id = ?1", [id], |row| row.get(0))
        .optional()
        .ctx(format_args!("event {id}"))?;
    body.map(|b| from_json(&b, format_args!("event {id}"))).transpose()
}

/// The head of the entity keyed `key`, if stored.
fn read_head(conn: &Connection, key: &str) -> Result<Option<EntityHead>, StoreError> {
    let body: Option<String> = conn
        .one("SELECT body FROM heads WHERE entity_key = ?1", [key], |row| row.get(0))
        .optional()
        .ctx(format_args!("head of {key}"))?;
    body.map(|b| from_json(&b, format_args!("head of {key}"))).transpose()
}

/// The record of event `id` and the head of the entity keyed `key`, in one statement: one read transaction instead
/// of two, and both as of the same commit.
fn read_event_and_head(
    conn: &Connection,
    id: &str,
    key: &str,
) -> Result<(Option<EventRecord>, Option<EntityHead>), StoreError> {
    let (event, head): (Option<String>, Option<String>) = conn
        .one(
            "SELECT (SELECT body FROM events WHERE event_id = ?1), (SELECT body FROM heads WHERE entity_key = ?2)",
            [id, key],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .ctx(format_args!("event {id} and the head of {key}"))?;
    let event = event.map(|b| from_json(&b, format_args!("event {id}"))).transpose()?;
    let head = head.map(|b| from_json(&b, format_args!("head of {key}"))).transpose()?;
    Ok((event, head))
}

#[async_trait]
impl EventStore for SqliteStore {
    async fn get_event(&self, id: &EventId) -> Result<Option<EventRecord>, StoreError> {
        let id = id.to_string();
        self.db.run(move |conn| read_event(conn, &id)).await
    }

    async fn get_head(&self, entity: &EntityKey) -> Result<Option<EntityHead>, StoreError> {
        let key = entity.to_string();
        self.db.run(move |conn| read_head(conn, &key)).await
    }

    async fn get_event_and_head(
        &self,
        id: &EventId,
        entity: &EntityKey,
    ) -> Result<(Option<EventRecord>, Option<EntityHead>), StoreError> {
        let (id, key) = (id.to_string(), entity.to_string());
        self.db.run(move |conn| read_event_and_head(conn, &id, &key)).await
    }

    async fn commit(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        if writes.is_empty() {
            return Ok(());
        }
        let rows = writes.iter().map(Row::of).collect::<Result<Vec<_>, _>>()?;
        self.db
            .write(move |tx| {
                for row in &rows {
                    row.put(tx)?;
                }
                Ok(())
            })
            .await
    }

    async fn list_events(&self, query: &EventQuery) -> Result<Vec<EventRecord>, StoreError> {
        let (filter, mut args) = filter(query)?;
        let order = if query.entity.is_some() {
            " ORDER BY order_nanos, order_version, received_at, event_id"
        } else {
            " ORDER BY received_at DESC, event_id DESC"
        };
        let sql = format!("SELECT body FROM events WHERE 1 = 1{filter}{order} LIMIT ?");
        args.push(limit_value(query.limit));
        self.db.run(move |conn| read_bodies(conn, &sql, args, "listing events")).await
    }

    /// Through the partial index `events_parked`.
    async fn parked_events(&self, entity: &EntityKey, limit: usize) -> Result<Vec<EventRecord>, StoreError> {
        let args = vec![SqlValue::Text(entity.to_string()), limit_value(limit)];
        self.db
            .run(move |conn| {
                read_bodies(
                    conn,
                    "SELECT body FROM events
                     WHERE entity_key = ? AND status = 'queued' AND json_extract(body, '$.parked') = 1
                     ORDER BY order_nanos, order_version, received_at, event_id LIMIT ?",
                    args,
                    "listing parked events",
                )
            })
            .await
    }

    async fn count_events(&self, query: &EventQuery) -> Result<u64, StoreError> {
        let (filter, args) = filter(query)?;
        let sql = format!("SELECT COUNT(*) FROM events WHERE 1 = 1{filter}");
        self.db
            .run(move |conn| {
                let what = "counting events";
                let count: i64 = conn
                    .prepare_cached(&sql)
                    .ctx(what)?
                    .query_row(rusqlite::params_from_iter(args), |row| row.get(0))
                    .ctx(what)?;
                uint(count, what)
            })
            .await
    }

    async fn count_by_status(&self) -> Result<BTreeMap<Status, u64>, StoreError> {
        self.db
            .run(|conn| {
                let what = "counting events by status";
                let mut stmt = conn
                    .prepare_cached("SELECT status, COUNT(*) FROM events WHERE status <> 'processing' GROUP BY status")
                    .ctx(what)?;
                let mut rows = stmt
                    .query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?)))
                    .ctx(what)?
                    .collect::<Result<Vec<_>, _>>()
                    .ctx(what)?;
                let processing: i64 = conn
                    .one(&format!("SELECT COUNT(*) FROM events WHERE 1 = 1{PROCESSING}"), [], |row| row.get(0))
                    .ctx(what)?;
                if processing > 0 {
                    rows.push((Status::Processing.as_str().to_owned(), processing));
                }
                let mut counts = BTreeMap::new();
                for (status, count) in rows {
                    let status: Status =
                        status.parse().map_err(|e| StoreError::Corrupt(format!("{what}: {e}").into()))?;
                    counts.insert(status, u64::try_from(count).unwrap_or(0));
                }
                Ok(counts)
            })
            .await
    }

    async fn expired_leases(&self, before: DateTime<Utc>, limit: usize) -> Result<Vec<EntityHead>, StoreError> {
        let args = vec![SqlValue::Integer(nanos(before)?), limit_value(limit)];
        self.db
            .run(move |conn| {
                read_bodies(
                    conn,
                    "SELECT body FROM heads WHERE lease_until IS NOT NULL AND lease_until < ?
                     ORDER BY lease_until, entity_key LIMIT ?",
                    args,
                    "listing expired leases",
                )
            })
            .await
    }

    async fn count_inflight(&self) -> Result<u64, StoreError> {
        self.db
            .run(|conn| {
                let count: i64 = conn
                    .one("SELECT COUNT(*) FROM heads WHERE lease_until IS NOT NULL", [], |row| row.get(0))
                    .ctx("counting heads in flight")?;
                Ok(u64::try_from(count).unwrap_or(0))
            })
            .await
    }

    /// By entity key; a page's `next` is its last key.
    async fn list_heads(&self, after: Option<&str>, limit: usize) -> Result<HeadPage, StoreError> {
        let args = vec![SqlValue::Text(after.unwrap_or_default().to_owned()), limit_value(limit)];
        let heads: Vec<EntityHead> = self
            .db
            .run(move |conn| {
                read_bodies(
                    conn,
                    "SELECT body FROM heads WHERE entity_key > ? ORDER BY entity_key LIMIT ?",
                    args,
                    "listing heads",
                )
            })
            .await?;
        let next = (limit > 0 && heads.len() >= limit).then(|| heads.last().map(|h| h.entity.to_string())).flatten();
        Ok(HeadPage { heads, next })
    }

    /// By entity key, through the partial index `heads_flagged`.
    async fn heads_to_verify(&self, limit: usize) -> Result<Vec<EntityHead>, StoreError> {
        let args = vec![limit_value(limit)];
        self.db
            .run(move |conn| {
                read_bodies(
                    conn,
                    "SELECT body FROM heads WHERE needs_verification = 1
                     ORDER BY entity_key LIMIT ?",
                    args,
                    "listing heads to verify",
                )
            })
            .await
    }
}

/// `processing` events, which `events_status_unheld` leaves out: each is the event in flight of its entity's head
/// (the claim writes the head first, the settle the record first; spec §9), so they are looked up by the event ids
/// of the heads holding one (`heads_leased`), a few against every event. `status <> 'processing'`, added to the
/// other statuses' conditions, is what lets SQLite use the partial index for them.
const PROCESSING: &str = " AND status = 'processing' AND event_id IN \
     (SELECT json_extract(body, '$.inflight.event_id') FROM heads WHERE lease_until IS NOT NULL)";

/// The `AND …` conditions of `query` (its limit aside) and their arguments.
fn filter(query: &EventQuery) -> Result<(String, Vec<SqlValue>), StoreError> {
    let mut sql = String::new();
    let mut args = Vec::new();
    match query.status {
        Some(Status::Processing) => sql.push_str(PROCESSING),
        Some(status) => {
            sql.push_str(" AND status = ? AND status <> 'processing'");
            args.push(SqlValue::Text(status.as_str().to_owned()));
        }
        None => {}
    }
    if let Some(dependency) = &query.waiting_for {
        sql.push_str(" AND status = 'waiting' AND status <> 'processing' AND json_extract(body, '$.waiting_for') = ?");
        args.push(SqlValue::Text(dependency.clone()));
    }
    if let Some(source) = &query.source {
        sql.push_str(" AND source = ?");
        args.push(SqlValue::Text(source.clone()));
    }
    if let Some(entity) = &query.entity {
        sql.push_str(" AND entity_key = ?");
        args.push(SqlValue::Text(entity.to_string()));
    }
    if let Some(since) = query.since {
        sql.push_str(" AND received_at >= ?");
        args.push(SqlValue::Integer(nanos(since)?));
    }
    if let Some(until) = query.until {
        sql.push_str(" AND received_at < ?");
        args.push(SqlValue::Integer(nanos(until)?));
    }
    Ok((sql, args))
}
