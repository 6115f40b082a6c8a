//! The benchmark's yardstick: a plain SQLite loop that writes the rows a pipeline run left behind (each event's
//! record, its entity's head, the mirror row and the effect row) into a fresh database with the same schema and
//! pragmas, committing once per `commit_every` events. `synctrail bench` divides its throughput by this loop's,
//! measured on the same disk in the same invocation; `synctrail bench growth` runs it after each round, on the
//! round's rows, into one database that keeps the earlier rounds' (`read_received_since`, `write_more`).
//!
//! The loop knows nothing of queues, leases or ordering: it is the cost of storing the outcome, the floor a
//! framework on the same database pays more than.

use super::codec::nanos;
use super::db::wal_path;
use super::error::SqlContext;
use super::{schema, DB_FILE};
use crate::store::StoreError;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection};
use std::collections::HashMap;
use std::path::Path;

/// An `events` row: every column, as the pipeline stored it.
struct EventRow {
    event_id: String,
    status: String,
    source: Option<String>,
    entity_key: Option<String>,
    order_nanos: Option<i64>,
    order_version: Option<i64>,
    received_at: i64,
    updated_at: i64,
    version: i64,
    body: String,
}

/// A `heads` row: every column but the key.
struct HeadRow {
    lease_until: Option<i64>,
    version: i64,
    body: String,
    needs_verification: bool,
}

/// A `mirror` row: every column.
struct MirrorRow {
    body: String,
    order_nanos: Option<i64>,
    order_version: Option<i64>,
    content_hash: Option<String>,
    event_id: Option<String>,
    fence: i64,
    deleted: i64,
    modified_at: Option<i64>,
    applied_at: i64,
}

/// The rows of one finished run, read from its database, ready to be written again.
pub struct BaselineRows {
    events: Vec<EventRow>,
    /// Head row by entity key.
    heads: HashMap<String, HeadRow>,
    mirror: HashMap<String, MirrorRow>,
    /// Effect row (entity key, applied_at) by event id.
    effects: HashMap<String, (String, i64)>,
}

/// What [`BaselineRows::write`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BaselineRun {
    /// Events written (each with its head, mirror and effect rows when the run had them).
    pub events: usize,
    /// Commits made.
    pub commits: usize,
    /// The largest size the write-ahead log reached, looked at after every commit, in bytes.
    pub wal_peak_bytes: u64,
}

impl BaselineRows {
    /// Reads every event, head, mirror and effect row of the embedded database in `home`, events in the order they
    /// were received.
    pub fn read(home: &Path) -> Result<Self, StoreError> {
        Self::read_received_since(home, None)
    }

    /// [`BaselineRows::read`] for the events received at or after `since` only (every head, mirror and effect row
    /// still: an event's rows are looked up by its key).
    pub fn read_received_since(home: &Path, since: Option<DateTime<Utc>>) -> Result<Self, StoreError> {
        let conn = Connection::open(home.join(DB_FILE)).ctx("opening the run's database")?;
        let what = "reading the run's rows";
        let since = since.map(nanos).transpose()?.unwrap_or(i64::MIN);
        let mut stmt = conn
            .prepare(
                "SELECT event_id, status, source, entity_key, order_nanos, order_version, received_at, updated_at,
                     version, body
                 FROM events WHERE received_at >= ?1 ORDER BY received_at, event_id",
            )
            .ctx(what)?;
        let events = stmt
            .query_map([since], |row| {
                Ok(EventRow {
                    event_id: row.get(0)?,
                    status: row.get(1)?,
                    source: row.get(2)?,
                    entity_key: row.get(3)?,
                    order_nanos: row.get(4)?,
                    order_version: row.get(5)?,
                    received_at: row.get(6)?,
                    updated_at: row.get(7)?,
                    version: row.get(8)?,
                    body: row.get(9)?,
                })
            })
            .ctx(what)?
            .collect::<Result<Vec<_>, _>>()
            .ctx(what)?;
        let mut stmt =
            conn.prepare("SELECT entity_key, lease_until, version, body, needs_verification FROM heads").ctx(what)?;
        let heads = stmt
            .query_map([], |row| {
                let head = HeadRow {
                    lease_until: row.get(1)?,
                    version: row.get(2)?,
                    body: row.get(3)?,
                    needs_verification: row.get(4)?,
                };
                Ok((row.get(0)?, head))
            })
            .ctx(what)?
            .collect::<Result<HashMap<_, _>, _>>()
            .ctx(what)?;
        let mut stmt = conn
            .prepare(
                "SELECT entity_key, body, order_nanos, order_version, content_hash, event_id, fence, deleted,
                     modified_at, applied_at
                 FROM mirror",
            )
            .ctx(what)?;
        let mirror = stmt
            .query_map([], |row| {
                let row_of = MirrorRow {
                    body: row.get(1)?,
                    order_nanos: row.get(2)?,
                    order_version: row.get(3)?,
                    content_hash: row.get(4)?,
                    event_id: row.get(5)?,
                    fence: row.get(6)?,
                    deleted: row.get(7)?,
                    modified_at: row.get(8)?,
                    applied_at: row.get(9)?,
                };
                Ok((row.get(0)?, row_of))
            })
            .ctx(what)?
            .collect::<Result<HashMap<_, _>, _>>()
            .ctx(what)?;
        let mut stmt = conn.prepare("SELECT event_id, entity_key, applied_at FROM mirror_effects").ctx(what)?;
        let effects = stmt
            .query_map([], |row| Ok((row.get(0)?, (row.get(1)?, row.get(2)?))))
            .ctx(what)?
            .collect::<Result<HashMap<_, _>, _>>()
            .ctx(what)?;
        Ok(Self { events, heads, mirror, effects })
    }

    /// How many events were read.
    pub fn events(&self) -> usize {
        self.events.len()
    }

    /// Writes the rows into a fresh database in `dir` (created; an existing database there is an error), event by
    /// event — the event row, its entity's head, the mirror row and the effect row — committing every
    /// `commit_every` events (and once at the end).
    pub fn write(&self, dir: &Path, commit_every: usize) -> Result<BaselineRun, StoreError> {
        let path = dir.join(DB_FILE);
        if path.exists() {
            return Err(StoreError::Backend(
                format!("{} exists; the baseline writes into a fresh database", path.display()).into(),
            ));
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Backend(format!("creating {}: {e}", dir.display()).into()))?;
        self.write_more(dir, commit_every)
    }

    /// [`BaselineRows::write`] into the database in `dir` as it is (made by an earlier write, or fresh), heads and
    /// mirror rows already there updated: the loop over a store that already holds earlier rounds.
    pub fn write_more(&self, dir: &Path, commit_every: usize) -> Result<BaselineRun, StoreError> {
        let path = dir.join(DB_FILE);
        let mut conn = plain_connection(&path)?;
        schema::migrate(&mut conn)?;
        let wal = wal_path(&path);
        let mut run = BaselineRun { events: 0, commits: 0, wal_peak_bytes: 0 };
        for chunk in self.events.chunks(commit_every.max(1)) {
            let tx = conn.transaction().ctx("starting a baseline transaction")?;
            for event in chunk {
                self.write_event(&tx, event)?;
            }
            tx.commit().ctx("committing baseline rows")?;
            run.events += chunk.len();
            run.commits += 1;
            run.wal_peak_bytes = run.wal_peak_bytes.max(std::fs::metadata(&wal).map_or(0, |m| m.len()));
        }
        Ok(run)
    }

    fn write_event(&self, conn: &Connection, e: &EventRow) -> Result<(), StoreError> {
        let what = "writing a baseline row";
        conn.prepare_cached(
            "INSERT INTO events (event_id, status, source, entity_key, order_nanos, order_version, received_at,
                 updated_at, version, body)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )
        .ctx(what)?
        .execute(params![
            e.event_id,
            e.status,
            e.source,
            e.entity_key,
            e.order_nanos,
            e.order_version,
            e.received_at,
            e.updated_at,
            e.version,
            e.body
        ])
        .ctx(what)?;
        let Some(key) = &e.entity_key else { return Ok(()) };
        if let Some(head) = self.heads.get(key) {
            conn.prepare_cached(
                "INSERT INTO heads (entity_key, lease_until, version, body, needs_verification)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (entity_key) DO UPDATE SET lease_until = excluded.lease_until,
                     version = excluded.version, body = excluded.body,
                     needs_verification = excluded.needs_verification",
            )
            .ctx(what)?
            .execute(params![key, head.lease_until, head.version, head.body, head.needs_verification])
            .ctx(what)?;
        }
        let Some((_, applied_at)) = self.effects.get(&e.event_id) else { return Ok(()) };
        if let Some(m) = self.mirror.get(key) {
            conn.prepare_cached(
                "INSERT INTO mirror (entity_key, body, order_nanos, order_version, content_hash, event_id, fence,
                     deleted, modified_at, applied_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                 ON CONFLICT (entity_key) DO UPDATE SET body = excluded.body, order_nanos = excluded.order_nanos,
                     order_version = excluded.order_version, content_hash = excluded.content_hash,
                     event_id = excluded.event_id, fence = excluded.fence, deleted = excluded.deleted,
                     modified_at = excluded.modified_at, applied_at = excluded.applied_at",
            )
            .ctx(what)?
            .execute(params![
                key,
                m.body,
                m.order_nanos,
                m.order_version,
                m.content_hash,
                m.event_id,
                m.fence,
                m.deleted,
                m.modified_at,
                m.applied_at
            ])
            .ctx(what)?;
        }
        conn.prepare_cached("INSERT INTO mirror_effects (event_id, entity_key, applied_at) VALUES (?1, ?2, ?3)")
            .ctx(what)?
            .execute(params![e.event_id, key, applied_at])
            .ctx(what)?;
        Ok(())
    }
}

/// A connection as a plain program would open it: WAL with `synchronous=NORMAL` (the durability synctrail's own
/// connections have), SQLite's defaults otherwise (its automatic checkpoint every 1,000 pages included).
fn plain_connection(path: &Path) -> Result<Connection, StoreError> {
    let what = "opening the baseline database";
    let conn = Connection::open(path).ctx(what)?;
    conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get::<_, String>(0)).ctx(what)?;
    conn.pragma_update(None, "synchronous", "NORMAL").ctx(what)?;
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(path: &Path, table: &str) -> i64 {
        let conn = Connection::open(path.join(DB_FILE)).expect("open");
        conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |row| row.get(0)).expect("count")
    }

    #[test]
    fn the_baseline_writes_the_rows_of_the_run_again_one_commit_per_chunk() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (run_home, target) = (dir.path().join("run"), dir.path().join("baseline"));
        std::fs::create_dir_all(&run_home).expect("dir");
        let mut conn = Connection::open(run_home.join(DB_FILE)).expect("open");
        schema::migrate(&mut conn).expect("schema");
        for i in 0..25 {
            conn.execute(
                "INSERT INTO events (event_id, status, source, entity_key, received_at, updated_at, version, body)
                 VALUES (?1, 'completed', 'shop', ?2, ?3, ?3, 3, '{}')",
                params![format!("e-{i}"), format!("shop:sku-{}", i % 4), i],
            )
            .expect("event");
            conn.execute(
                "INSERT INTO mirror_effects (event_id, entity_key, applied_at) VALUES (?1, ?2, ?3)",
                params![format!("e-{i}"), format!("shop:sku-{}", i % 4), i],
            )
            .expect("effect");
        }
        for k in 0..4 {
            let key = format!("shop:sku-{k}");
            conn.execute("INSERT INTO heads (entity_key, version, body) VALUES (?1, 7, '{}')", [&key]).expect("head");
            conn.execute("INSERT INTO mirror (entity_key, body, applied_at) VALUES (?1, '{}', 1)", [&key])
                .expect("mirror");
        }
        drop(conn);

        let rows = BaselineRows::read(&run_home).expect("read");
        assert_eq!(rows.events(), 25);
        let run = rows.write(&target, 10).expect("write");
        assert_eq!((run.events, run.commits), (25, 3));
        assert!(run.wal_peak_bytes > 0);
        for (table, expected) in [("events", 25), ("mirror_effects", 25), ("heads", 4), ("mirror", 4)] {
            assert_eq!(count(&target, table), expected, "{table}");
        }
        assert!(rows.write(&target, 10).is_err(), "an existing database is not written over");

        let since = DateTime::from_timestamp_nanos(20);
        let later = BaselineRows::read_received_since(&run_home, Some(since)).expect("read the later events");
        assert_eq!(later.events(), 5, "events received at 20 ns and after");
        let conn = Connection::open(target.join(DB_FILE)).expect("open");
        conn.execute("DELETE FROM events WHERE received_at >= 20", []).expect("forget them");
        conn.execute("DELETE FROM mirror_effects WHERE applied_at >= 20", []).expect("and their effects");
        drop(conn);
        let run = later.write_more(&target, 10).expect("write into the database as it is");
        assert_eq!((run.events, run.commits), (5, 1));
        for (table, expected) in [("events", 25), ("mirror_effects", 25), ("heads", 4), ("mirror", 4)] {
            assert_eq!(count(&target, table), expected, "{table}: the heads and mirror rows updated, not doubled");
        }
    }
}
