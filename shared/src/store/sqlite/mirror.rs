//! [`Mirror`]: the reference destination, the latest state per entity in `synctrail.db`, with local edits and
//! one effect row per applied event (so tests can count effects). `in_order` deltas add up in the state's total
//! fields, as its [`DeltaFields`] say.
//!
//! Applying changes, with the fencing guard, is in `guard.rs`.

use super::codec::{from_json, nanos, time, to_json, uint, Cached};
use super::db::Db;
use super::error::SqlContext;
use crate::clock::Clock;
use crate::destination::delta_fields::DeltaFields;
use crate::destination::guard::{MirrorRecord, LOCAL_EDIT};
use crate::model::{EntityKey, EventId, OrderKey};
use crate::store::StoreError;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension, Row};
use serde_json::Value;
use std::sync::Arc;

/// The embedded [`Destination`](crate::destination::Destination): tables `mirror` and `mirror_effects`.
pub struct Mirror {
    pub(super) db: Arc<Db>,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) delta_fields: DeltaFields,
}

/// The columns [`MirrorRecord::from_row`] reads, in order (a macro, so that queries can be whole literals).
macro_rules! columns {
    () => {
        "entity_key, body, order_nanos, order_version, content_hash, event_id, fence, deleted, modified_at, applied_at"
    };
}

impl MirrorRecord {
    fn from_row(row: &Row<'_>) -> rusqlite::Result<(Self, String)> {
        Self::from_row_at(row, 0)
    }

    /// [`MirrorRecord::from_row`] for a row whose [`columns!`] start at column `at`.
    fn from_row_at(row: &Row<'_>, at: usize) -> rusqlite::Result<(Self, String)> {
        let order_nanos: Option<i64> = row.get(at + 2)?;
        let order_version: Option<i64> = row.get(at + 3)?;
        let record = Self {
            entity_key: row.get(at)?,
            state: Value::Null,
            order: order_nanos.map(|nanos| OrderKey { nanos, version: order_version.unwrap_or(0) }),
            content_hash: row.get(at + 4)?,
            event_id: row.get(at + 5)?,
            fence: u64::try_from(row.get::<_, i64>(at + 6)?).unwrap_or(0),
            deleted: row.get::<_, i64>(at + 7)? != 0,
            modified_at: row.get::<_, Option<i64>>(at + 8)?.map(time),
            applied_at: time(row.get(at + 9)?),
        };
        Ok((record, row.get(at + 1)?))
    }

    /// Decodes the JSON body read with the row.
    fn with_body((mut record, body): (Self, String)) -> Result<Self, StoreError> {
        record.state = from_json(&body, format_args!("mirror row {}", record.entity_key))?;
        Ok(record)
    }
}

/// Reads one mirror row inside a transaction or on a plain connection.
pub(super) fn read_row(conn: &Connection, entity_key: &str) -> Result<Option<MirrorRecord>, StoreError> {
    let sql = concat!("SELECT ", columns!(), " FROM mirror WHERE entity_key = ?1");
    let row = conn.one(sql, [entity_key], MirrorRecord::from_row).optional().ctx("reading a mirror row")?;
    row.map(MirrorRecord::with_body).transpose()
}

/// Whether event `event_id` has an effect row, and the mirror row of `entity_key`, in one statement (what an apply
/// reads before it decides).
pub(super) fn read_effect_and_row(
    conn: &Connection,
    event_id: &str,
    entity_key: &str,
) -> Result<(bool, Option<MirrorRecord>), StoreError> {
    let sql = concat!(
        "SELECT EXISTS (SELECT 1 FROM mirror_effects WHERE event_id = ?1), ",
        columns!(),
        " FROM (SELECT 1) LEFT JOIN mirror ON entity_key = ?2"
    );
    let (seen, row) = conn
        .one(sql, [event_id, entity_key], |row| {
            let seen: bool = row.get(0)?;
            // No mirror row: the joined columns are all NULL.
            let found = row.get::<_, Option<String>>(1)?.is_some();
            Ok((seen, if found { Some(MirrorRecord::from_row_at(row, 1)?) } else { None }))
        })
        .ctx("looking up a mirror effect and row")?;
    Ok((seen, row.map(MirrorRecord::with_body).transpose()?))
}

impl Mirror {
    pub(crate) fn new(db: Arc<Db>, clock: Arc<dyn Clock>, delta_fields: DeltaFields) -> Self {
        Self { db, clock, delta_fields }
    }

    /// Records a local edit of `entity` (someone changed the destination directly): an event whose `updated_at`
    /// is older than `modified_at` will then be refused.
    pub async fn record_local_edit(
        &self,
        entity: &EntityKey,
        state: Value,
        modified_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let key = entity.to_string();
        let body = to_json(&state, "local edit")?;
        let modified = nanos(modified_at)?;
        let clock = Arc::clone(&self.clock);
        self.db
            .write(move |tx| {
                let now = nanos(clock.now())?;
                tx.execute(
                    "INSERT INTO mirror (entity_key, body, event_id, fence, deleted, modified_at, applied_at)
                     VALUES (?1, ?2, ?5, 0, 0, ?3, ?4)
                     ON CONFLICT (entity_key) DO UPDATE SET body = excluded.body, content_hash = NULL,
                         event_id = excluded.event_id, deleted = 0, modified_at = excluded.modified_at,
                         applied_at = excluded.applied_at",
                    params![key, body, modified, now, LOCAL_EDIT],
                )
                .ctx("recording a local edit")?;
                Ok(())
            })
            .await
    }

    /// The state of one entity.
    pub async fn get(&self, entity: &EntityKey) -> Result<Option<MirrorRecord>, StoreError> {
        let key = entity.to_string();
        self.db.run(move |conn| read_row(conn, &key)).await
    }

    /// Entities whose key starts with `entity_prefix`, by key, at most `limit` (0 = all).
    pub async fn list(&self, entity_prefix: Option<&str>, limit: usize) -> Result<Vec<MirrorRecord>, StoreError> {
        let prefix = entity_prefix.unwrap_or("").to_owned();
        let limit = if limit == 0 { -1 } else { i64::try_from(limit).unwrap_or(i64::MAX) };
        self.db
            .run(move |conn| {
                let what = "listing the mirror";
                let sql = concat!(
                    "SELECT ",
                    columns!(),
                    " FROM mirror WHERE entity_key >= ?1 AND substr(entity_key, 1, length(?1)) = ?1
                     ORDER BY entity_key LIMIT ?2"
                );
                let mut stmt = conn.prepare_cached(sql).ctx(what)?;
                let rows = stmt
                    .query_map(params![prefix, limit], MirrorRecord::from_row)
                    .ctx(what)?
                    .collect::<Result<Vec<_>, _>>()
                    .ctx(what)?;
                rows.into_iter().map(MirrorRecord::with_body).collect()
            })
            .await
    }

    /// Every destination effect, in the order they happened: (event, entity key).
    pub async fn effects(&self) -> Result<Vec<(EventId, String)>, StoreError> {
        self.db
            .run(|conn| {
                let what = "listing mirror effects";
                let mut stmt =
                    conn.prepare_cached("SELECT event_id, entity_key FROM mirror_effects ORDER BY rowid").ctx(what)?;
                let rows = stmt
                    .query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)))
                    .ctx(what)?
                    .collect::<Result<Vec<_>, _>>()
                    .ctx(what)?;
                rows.into_iter()
                    .map(|(id, key)| {
                        let id = EventId::parse(&id).map_err(|e| StoreError::Corrupt(format!("{what}: {e}").into()))?;
                        Ok((id, key))
                    })
                    .collect()
            })
            .await
    }

    /// How many entities the mirror holds (deleted ones and local edits included).
    pub async fn count(&self) -> Result<u64, StoreError> {
        self.db
            .run(|conn| {
                let n: i64 =
                    conn.query_row("SELECT COUNT(*) FROM mirror", [], |row| row.get(0)).ctx("counting the mirror")?;
                uint(n, "mirror count")
            })
            .await
    }
}

#[async_trait::async_trait]
impl crate::destination::MirrorView for Mirror {
    async fn record_local_edit(
        &self,
        entity: &EntityKey,
        state: Value,
        modified_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        Mirror::record_local_edit(self, entity, state, modified_at).await
    }

    async fn get(&self, entity: &EntityKey) -> Result<Option<MirrorRecord>, StoreError> {
        Mirror::get(self, entity).await
    }

    async fn list(&self, entity_prefix: Option<&str>, limit: usize) -> Result<Vec<MirrorRecord>, StoreError> {
        Mirror::list(self, entity_prefix, limit).await
    }

    async fn effects(&self) -> Result<Vec<(EventId, String)>, StoreError> {
        Mirror::effects(self).await
    }

    async fn count(&self) -> Result<u64, StoreError> {
        Mirror::count(self).await
    }
}
