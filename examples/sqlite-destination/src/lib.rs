//! An example of a team's own destination: synctrail in front of the team's store — here one SQLite table of
//! records — with the destination contract (`synctrail::destination`) kept by the store itself:
//!
//! - every row keeps the order key (`updated_at` + `version`) of the event that wrote it, and a write is one
//!   conditional upsert, `... ON CONFLICT DO UPDATE ... WHERE stored order < new order`: a stale event can't
//!   overwrite newer data even if two writers race;
//! - every applied event id is kept (the idempotency key), in the same transaction as the row, so a retry of an
//!   event that was written — the engine says so with `previous_attempt_unknown` — has no second effect.
//!
//! It also reads a record back ([`Destination::read`]), so `synctrail reconcile` and `synctrail verify` can compare it.
//!
//! `src/bin/processor.rs` runs it as the processor Lambda and `src/bin/synctrail.rs` as the whole `synctrail` CLI:
//! each `main` is a few lines.

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use synctrail::destination::{ApplyOutcome, Change, Destination, DestinationError, DestinationRecord, ReadError};
use synctrail::model::{EntityKey, Kind, OrderKey};
use synctrail::Policy;

/// The variable naming the database file.
pub const DB_PATH_VAR: &str = "EXAMPLE_DB_PATH";

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS records (
        entity_key    TEXT PRIMARY KEY,
        state         TEXT,
        deleted       INTEGER NOT NULL,
        order_nanos   INTEGER NOT NULL,
        order_version INTEGER NOT NULL,
        content_hash  TEXT NOT NULL,
        event_id      TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS applied_events (
        event_id   TEXT PRIMARY KEY,
        entity_key TEXT NOT NULL
    );";

/// The conditional upsert: a row is replaced only by a newer order key, or by other content at the same order key
/// (a tie: two real changes the source could not order, applied in arrival order), or when ordering was skipped on
/// purpose (`reprocess --force`).
const UPSERT: &str = "
    INSERT INTO records (entity_key, state, deleted, order_nanos, order_version, content_hash, event_id)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
    ON CONFLICT (entity_key) DO UPDATE SET
        state = excluded.state, deleted = excluded.deleted, order_nanos = excluded.order_nanos,
        order_version = excluded.order_version, content_hash = excluded.content_hash, event_id = excluded.event_id
    WHERE ?8
       OR (records.order_nanos, records.order_version) < (excluded.order_nanos, excluded.order_version)
       OR ((records.order_nanos, records.order_version) = (excluded.order_nanos, excluded.order_version)
           AND records.content_hash <> excluded.content_hash)";

/// The destination could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// [`DB_PATH_VAR`] is unset.
    #[error("{DB_PATH_VAR} is not set; set it to the SQLite file that holds the records")]
    NoPath,
    /// The database could not be opened or prepared.
    #[error("opening {path}: {source}; check that its directory exists and is writable")]
    Sqlite {
        /// The file.
        path: PathBuf,
        /// What SQLite said.
        source: rusqlite::Error,
    },
}

/// One stored record.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The entity (`tenant/source/entity_type/external_id`).
    pub entity_key: String,
    /// Its state (`None` once deleted).
    pub state: Option<serde_json::Value>,
    /// The event that wrote it.
    pub event_id: String,
}

/// The team's store: a table of records, one per entity.
pub struct SqliteDestination {
    conn: Mutex<Connection>,
}

impl SqliteDestination {
    /// Opens (creating) the store at `path`.
    pub fn open(path: &Path) -> Result<Self, OpenError> {
        let sqlite = |source| OpenError::Sqlite { path: path.to_owned(), source };
        let conn = Connection::open(path).map_err(sqlite)?;
        conn.execute_batch(SCHEMA).map_err(sqlite)?;
        Ok(Self { conn: Mutex::new(conn) })
    }

    /// Opens the store [`DB_PATH_VAR`] names.
    pub fn from_env() -> Result<Self, OpenError> {
        let path = std::env::var_os(DB_PATH_VAR).filter(|p| !p.is_empty()).ok_or(OpenError::NoPath)?;
        Self::open(Path::new(&path))
    }

    /// Every stored record, by entity key.
    pub fn rows(&self) -> Result<Vec<Row>, rusqlite::Error> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let mut stmt = conn.prepare("SELECT entity_key, state, event_id FROM records ORDER BY entity_key")?;
        let rows = stmt.query_map([], |row| {
            let state: Option<String> = row.get(1)?;
            Ok(Row {
                entity_key: row.get(0)?,
                state: state.and_then(|s| serde_json::from_str(&s).ok()),
                event_id: row.get(2)?,
            })
        })?;
        rows.collect()
    }

    /// How many events were applied (one row of `applied_events` each).
    pub fn applied_count(&self) -> Result<u64, rusqlite::Error> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        conn.query_row("SELECT COUNT(*) FROM applied_events", [], |row| row.get(0))
    }

    fn record(&self, entity: &EntityKey) -> Result<Option<DestinationRecord>, rusqlite::Error> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let sql = "SELECT state, deleted, order_nanos, order_version, event_id FROM records WHERE entity_key = ?1";
        conn.query_row(sql, [entity.to_string()], |row| {
            let state: Option<String> = row.get(0)?;
            Ok(DestinationRecord {
                state: state.and_then(|s| serde_json::from_str(&s).ok()).unwrap_or(serde_json::Value::Null),
                deleted: row.get(1)?,
                order: Some(OrderKey { nanos: row.get(2)?, version: row.get(3)? }),
                event_id: Some(row.get(4)?),
            })
        })
        .optional()
    }

    fn write(&self, change: &Change<'_>) -> Result<ApplyOutcome, rusqlite::Error> {
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let tx = conn.transaction()?;
        let event_id = change.event_id.as_str();
        // The idempotency key: an event written before (a retry after a crash or a timeout) has no second effect.
        // Looking is cheap here, so it is done on every attempt, not only when `previous_attempt_unknown` says so.
        // A forced change (an operator's repair) is written again even so: it puts back a state that was lost.
        let seen: Option<i64> =
            tx.query_row("SELECT 1 FROM applied_events WHERE event_id = ?1", [event_id], |r| r.get(0)).optional()?;
        if seen.is_some() && !change.forced {
            return Ok(ApplyOutcome::AlreadyApplied);
        }
        let entity_key = change.entity.to_string();
        let deleted = change.kind == Kind::Delete;
        let state = (!deleted).then(|| change.payload.to_string());
        let hash = change.content_hash.to_hex();
        let order = change.order;
        let written = tx.execute(
            UPSERT,
            params![entity_key, state, deleted, order.nanos, order.version, hash, event_id, change.forced],
        )?;
        let outcome = if written == 1 {
            let effect = "INSERT OR IGNORE INTO applied_events (event_id, entity_key) VALUES (?1, ?2)";
            tx.execute(effect, [event_id, &entity_key])?;
            ApplyOutcome::Applied
        } else {
            // Refused by the condition: the stored row is newer, or the very same change.
            let (holder, stored_hash): (String, String) =
                tx.query_row("SELECT event_id, content_hash FROM records WHERE entity_key = ?1", [&entity_key], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?;
            if stored_hash == hash {
                ApplyOutcome::AlreadyApplied
            } else {
                ApplyOutcome::Superseded { by: holder }
            }
        };
        tx.commit()?;
        Ok(outcome)
    }
}

#[async_trait]
impl Destination for SqliteDestination {
    async fn apply(&self, change: &Change<'_>) -> Result<ApplyOutcome, DestinationError> {
        if change.policy == Policy::InOrder {
            return Err(DestinationError::Permanent(
                "this example stores snapshots; configure its entity types as latest_wins".to_owned(),
            ));
        }
        self.write(change).map_err(|e| match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
                DestinationError::retryable(format!("the records database is busy: {e}"))
            }
            // A full disk or an I/O error may pass: the event waits for its retry instead of failing for good.
            Some(rusqlite::ErrorCode::DiskFull | rusqlite::ErrorCode::SystemIoFailure) => {
                DestinationError::retryable(format!("the records database could not be written: {e}"))
            }
            _ => DestinationError::Permanent(format!("writing the record failed: {e}")),
        })
    }

    async fn read(&self, entity: &EntityKey) -> Result<Option<DestinationRecord>, ReadError> {
        self.record(entity).map_err(|e| ReadError::Failed(format!("reading the record failed: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use synctrail::model::{ContentHash, EntityKey, EventId, OrderKey};

    fn store() -> (tempfile::TempDir, SqliteDestination) {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = SqliteDestination::open(&dir.path().join("records.db")).expect("open");
        (dir, store)
    }

    async fn apply(store: &SqliteDestination, id: &str, seconds: i64, payload: serde_json::Value) -> ApplyOutcome {
        apply_with(store, id, seconds, payload, false).await
    }

    async fn apply_with(
        store: &SqliteDestination,
        id: &str,
        seconds: i64,
        payload: serde_json::Value,
        forced: bool,
    ) -> ApplyOutcome {
        let (event_id, entity) =
            (EventId::parse(id).expect("id"), EntityKey::new("t", "s", "issue", "1").expect("key"));
        let change = Change {
            event_id: &event_id,
            entity: &entity,
            order: OrderKey { nanos: seconds * 1_000_000_000, version: 0 },
            updated_at: None,
            content_hash: ContentHash::of(payload.to_string().as_bytes()),
            kind: Kind::Upsert,
            direction: synctrail::model::Direction::Inbound,
            payload: &payload,
            fence: 1,
            policy: Policy::LatestWins,
            forced,
            attempt: 1,
            previous_attempt_unknown: false,
            deadline: None,
            trace_id: None,
        };
        store.apply(&change).await.expect("apply")
    }

    #[tokio::test]
    async fn an_older_change_is_refused_by_the_stores_own_condition() {
        let (_dir, store) = store();
        assert_eq!(apply(&store, "e-2", 20, json!({"v": 2})).await, ApplyOutcome::Applied);
        // A paused writer waking up late: the engine would never send it, the store refuses it anyway.
        assert_eq!(apply(&store, "e-1", 10, json!({"v": 1})).await, ApplyOutcome::Superseded { by: "e-2".into() });
        assert_eq!(store.rows().expect("rows")[0].state, Some(json!({"v": 2})));
    }

    #[tokio::test]
    async fn an_event_applied_before_has_no_second_effect() {
        let (_dir, store) = store();
        assert_eq!(apply(&store, "e-1", 10, json!({"v": 1})).await, ApplyOutcome::Applied);
        assert_eq!(apply(&store, "e-1", 10, json!({"v": 1})).await, ApplyOutcome::AlreadyApplied);
        assert_eq!(apply(&store, "e-other-id", 10, json!({"v": 1})).await, ApplyOutcome::AlreadyApplied);
        assert_eq!(store.applied_count().expect("count"), 1);
    }

    #[tokio::test]
    async fn a_forced_repair_writes_an_event_applied_before_again_and_keeps_one_effect() {
        let (_dir, store) = store();
        apply(&store, "e-1", 10, json!({"v": 1})).await;
        apply(&store, "e-2", 20, json!({"v": 2})).await;
        // e-2's state was lost or changed behind our back: the operator re-drives it, forced.
        assert_eq!(apply_with(&store, "e-1", 10, json!({"v": 1}), true).await, ApplyOutcome::Applied);
        assert_eq!(store.rows().expect("rows")[0].state, Some(json!({"v": 1})), "forced: older, written anyway");
        assert_eq!(apply_with(&store, "e-2", 20, json!({"v": 2}), true).await, ApplyOutcome::Applied);
        assert_eq!(store.rows().expect("rows")[0].state, Some(json!({"v": 2})));
        assert_eq!(store.applied_count().expect("count"), 2, "one effect record an event");
    }

    #[tokio::test]
    async fn a_record_reads_back_with_its_order_key_and_event() {
        let (_dir, store) = store();
        apply(&store, "e-1", 10, json!({"v": 1})).await;
        let entity = EntityKey::new("t", "s", "issue", "1").expect("key");
        let record = store.read(&entity).await.expect("read").expect("a record");
        assert_eq!((record.state, record.deleted), (json!({"v": 1}), false));
        assert_eq!(record.order, Some(OrderKey { nanos: 10_000_000_000, version: 0 }));
        assert_eq!(record.event_id.as_deref(), Some("e-1"));
        let other = EntityKey::new("t", "s", "issue", "2").expect("key");
        assert_eq!(store.read(&other).await, Ok(None));
    }

    #[tokio::test]
    async fn a_tie_with_other_content_is_applied_in_arrival_order() {
        let (_dir, store) = store();
        apply(&store, "e-a", 10, json!({"v": "a"})).await;
        assert_eq!(apply(&store, "e-b", 10, json!({"v": "b"})).await, ApplyOutcome::Applied);
        assert_eq!(store.rows().expect("rows")[0].event_id, "e-b");
    }
}
