//! The tables of the embedded backend, created idempotently, versioned with `PRAGMA user_version`.

use super::error::SqlContext;
use crate::store::StoreError;
use rusqlite::{Connection, Transaction, TransactionBehavior};

/// The schema version this code writes; a database with a greater one was made by a newer synctrail.
/// Version 2: `heads.needs_verification` is a column (version 1's partial index read it from the JSON body, parsing
/// the body at every write of every head).
pub(crate) const SCHEMA_VERSION: i64 = 2;

const TABLES: &str = "
CREATE TABLE IF NOT EXISTS events (
    event_id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    source TEXT,
    entity_key TEXT,
    order_nanos INTEGER,
    order_version INTEGER,
    received_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    version INTEGER NOT NULL,
    body TEXT NOT NULL
);
-- Every event but those `processing`: each of those is the event in flight of its entity's head, found through
-- `heads_leased` (spec §9), so a happy-path event enters this index once, when it settles, instead of entering it at
-- its claim and moving at its settle. (`events_status`, which held every event, is replaced.)
CREATE INDEX IF NOT EXISTS events_status_unheld ON events (status, received_at) WHERE status <> 'processing';
DROP INDEX IF EXISTS events_status;
CREATE INDEX IF NOT EXISTS events_source ON events (source, received_at);
CREATE INDEX IF NOT EXISTS events_entity ON events (entity_key, order_nanos, order_version);
CREATE INDEX IF NOT EXISTS events_received ON events (received_at);
-- Only parked events (`in_order`, queued outside the head): an unpark reads what is parked, not the entity's history.
CREATE INDEX IF NOT EXISTS events_parked ON events (entity_key, order_nanos, order_version, received_at, event_id)
    WHERE status = 'queued' AND json_extract(body, '$.parked') = 1;

CREATE TABLE IF NOT EXISTS heads (
    entity_key TEXT PRIMARY KEY,
    lease_until INTEGER,
    version INTEGER NOT NULL,
    body TEXT NOT NULL,
    needs_verification INTEGER NOT NULL DEFAULT 0
);
-- Only heads with an event in flight: releasing or claiming a head touches the index's newest entries, not a page
-- among thousands of idle heads' entries (the full index `heads_lease` it replaces did).
DROP INDEX IF EXISTS heads_lease;
CREATE INDEX IF NOT EXISTS heads_leased ON heads (lease_until) WHERE lease_until IS NOT NULL;
DROP INDEX IF EXISTS heads_to_verify;
CREATE INDEX IF NOT EXISTS heads_flagged ON heads (entity_key) WHERE needs_verification = 1;

CREATE TABLE IF NOT EXISTS queue (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT NOT NULL UNIQUE,
    body TEXT NOT NULL,
    trace_header TEXT,
    sent_at INTEGER NOT NULL,
    visible_at INTEGER NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    first_received_at INTEGER,
    receipt_handle TEXT,
    dead INTEGER NOT NULL DEFAULT 0,
    dead_at INTEGER
);
CREATE INDEX IF NOT EXISTS queue_ready ON queue (dead, visible_at, seq);

CREATE TABLE IF NOT EXISTS mirror (
    entity_key TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    order_nanos INTEGER,
    order_version INTEGER,
    content_hash TEXT,
    event_id TEXT,
    fence INTEGER NOT NULL DEFAULT 0,
    deleted INTEGER NOT NULL DEFAULT 0,
    modified_at INTEGER,
    applied_at INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS mirror_effects (
    event_id TEXT PRIMARY KEY,
    entity_key TEXT NOT NULL,
    applied_at INTEGER NOT NULL
);
";

/// Creates the tables that are missing and stamps the schema version; refuses a newer database.
pub(crate) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).ctx("starting the schema transaction")?;
    let found: i64 = tx.query_row("PRAGMA user_version", [], |row| row.get(0)).ctx("reading the schema version")?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::Backend(
            format!(
                "synctrail.db has schema version {found}, newer than this synctrail understands ({SCHEMA_VERSION}); \
             upgrade synctrail"
            )
            .into(),
        ));
    }
    add_verification_column(&tx)?;
    tx.execute_batch(TABLES).ctx("creating the tables")?;
    if found < SCHEMA_VERSION {
        tx.pragma_update(None, "user_version", SCHEMA_VERSION).ctx("stamping the schema version")?;
    }
    tx.commit().ctx("committing the schema")
}

/// Version 1 → 2: a `heads` table without the `needs_verification` column gets it, set from the body.
fn add_verification_column(tx: &Transaction) -> Result<(), StoreError> {
    let what = "adding heads.needs_verification";
    let (table, column): (bool, bool) = tx
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'heads'),
                    EXISTS (SELECT 1 FROM pragma_table_info('heads') WHERE name = 'needs_verification')",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .ctx(what)?;
    if table && !column {
        tx.execute_batch(
            "ALTER TABLE heads ADD COLUMN needs_verification INTEGER NOT NULL DEFAULT 0;
             UPDATE heads SET needs_verification = 1 WHERE json_extract(body, '$.needs_verification') = 1;",
        )
        .ctx(what)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first column of every row `sql` returns.
    fn texts(conn: &Connection, sql: &str) -> Vec<String> {
        conn.prepare(sql).and_then(|mut s| s.query_map([], |r| r.get(0))?.collect()).expect(sql)
    }

    #[test]
    fn a_version_1_database_gets_the_verification_column_with_its_flagged_heads() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut conn = Connection::open(dir.path().join("synctrail.db")).expect("open");
        conn.execute_batch(
            "CREATE TABLE heads (entity_key TEXT PRIMARY KEY, lease_until INTEGER, version INTEGER NOT NULL,
                 body TEXT NOT NULL);
             CREATE INDEX heads_to_verify ON heads (entity_key) WHERE json_extract(body, '$.needs_verification') = 1;
             INSERT INTO heads VALUES ('github:issue:1', NULL, 3, '{\"needs_verification\":true}');
             INSERT INTO heads VALUES ('github:issue:2', NULL, 1, '{\"needs_verification\":false}');
             INSERT INTO heads VALUES ('github:issue:3', NULL, 1, '{}');
             PRAGMA user_version = 1;",
        )
        .expect("a version 1 database");

        migrate(&mut conn).expect("migrate");
        migrate(&mut conn).expect("migrating twice changes nothing");

        let flagged = texts(&conn, "SELECT entity_key FROM heads WHERE needs_verification = 1 ORDER BY entity_key");
        assert_eq!(flagged, ["github:issue:1"]);
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).expect("version");
        assert_eq!(version, SCHEMA_VERSION);
        let indexes =
            texts(&conn, "SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'heads' ORDER BY name");
        assert!(indexes.contains(&"heads_flagged".to_owned()), "{indexes:?}");
        assert!(!indexes.contains(&"heads_to_verify".to_owned()), "the body-parsing index is gone: {indexes:?}");
    }

    #[test]
    fn a_database_whose_status_index_held_processing_events_gets_the_partial_one_in_its_place() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut conn = Connection::open(dir.path().join("synctrail.db")).expect("open");
        conn.execute_batch(
            "CREATE TABLE events (event_id TEXT PRIMARY KEY, status TEXT NOT NULL, source TEXT, entity_key TEXT,
                 order_nanos INTEGER, order_version INTEGER, received_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,
                 version INTEGER NOT NULL, body TEXT NOT NULL);
             CREATE INDEX events_status ON events (status, received_at);
             INSERT INTO events VALUES ('ev-1', 'completed', 's', NULL, NULL, NULL, 1, 1, 1, '{}');
             INSERT INTO events VALUES ('ev-2', 'processing', 's', NULL, NULL, NULL, 2, 2, 1, '{}');",
        )
        .expect("a database with the full status index");

        migrate(&mut conn).expect("migrate");

        let indexes =
            texts(&conn, "SELECT name FROM sqlite_schema WHERE type = 'index' AND name LIKE 'events_status%'");
        assert_eq!(indexes, ["events_status_unheld"]);
        let plan: String = conn
            .query_row(
                "EXPLAIN QUERY PLAN SELECT event_id FROM events WHERE status = ?1 AND status <> 'processing'",
                ["completed"],
                |r| r.get(3),
            )
            .expect("plan");
        assert!(plan.contains("events_status_unheld"), "{plan}");
        let completed: String = conn
            .query_row("SELECT event_id FROM events WHERE status = 'completed' AND status <> 'processing'", [], |r| {
                r.get(0)
            })
            .expect("the completed event, through the new index");
        assert_eq!(completed, "ev-1");
    }
}
