//! [`PayloadDir`]: payloads compressed with zstd and named by their SHA-256, in the payload directory's own
//! SQLite file (`home/payloads/payloads.db`) — one row per object, like keys in a bucket. A file per payload
//! cost an inode allocation, a directory entry and a rename per event; a row costs one insert, and the
//! payload store keeps its own writer, apart from the metadata database. A batch ([`PayloadStore::put_batch`]) is
//! one object, as on S3: one row whose zstd frames the references name by byte range.

use super::codec::Cached;
use super::db::Db;
use super::error::SqlContext;
use crate::model::{ByteRange, PayloadRef};
use crate::store::payloads::{compress_payload, Compression, FramedBatch};
use crate::store::{PayloadStore, StoreError};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::Arc;

/// The payload database's file name inside `home/payloads/`.
pub const PAYLOAD_DB_FILE: &str = "payloads.db";
/// Connections of the payload database's pool.
const POOL_SIZE: usize = 4;

/// The embedded [`PayloadStore`]: objects keyed `payloads/<first 2 hex>/<sha256 hex>.zst` (one payload) or
/// `payloads/<first 2 hex>/batch-<sha256 hex of the object>.zst` (a batch, read by byte range).
pub struct PayloadDir {
    db: Arc<Db>,
}

impl PayloadDir {
    /// A payload store under `home/payloads/` (the directory and its database are created if missing).
    pub(crate) fn open(home: &Path) -> Result<Self, StoreError> {
        let dir = home.join("payloads");
        std::fs::create_dir_all(&dir)
            .map_err(|e| StoreError::Backend(format!("creating {}: {e}", dir.display()).into()))?;
        Ok(Self { db: Db::open(&dir.join(PAYLOAD_DB_FILE), POOL_SIZE, migrate)? })
    }

    /// The stored (compressed) bytes of an object, as an object store would hand them out.
    pub async fn read_object(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let key = key.to_owned();
        self.db
            .run(move |conn| {
                conn.one("SELECT data FROM payloads WHERE key = ?1", [&key], |row| row.get(0))
                    .optional()
                    .ctx("reading a payload object")
            })
            .await
    }

    /// Replaces the stored (compressed) bytes of an object: for drills and tests that corrupt payloads.
    pub async fn write_object(&self, key: &str, data: Vec<u8>) -> Result<(), StoreError> {
        let key = key.to_owned();
        self.db
            .write(move |tx| {
                tx.exec("UPDATE payloads SET data = ?2 WHERE key = ?1", params![key, data])
                    .ctx("overwriting a payload object")
                    .map(drop)
            })
            .await
    }
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).ctx("starting the payload schema")?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS payloads (
             key TEXT PRIMARY KEY,
             sha256 TEXT NOT NULL,
             size INTEGER NOT NULL,
             data BLOB NOT NULL
         ) WITHOUT ROWID;",
    )
    .ctx("creating the payload table")?;
    tx.commit().ctx("committing the payload schema")
}

fn key_of(sha: &str) -> String {
    format!("payloads/{}/{sha}.zst", &sha[..2])
}

/// One payload ready to store: its row and its reference.
struct Row {
    reference: PayloadRef,
    size: i64,
    compressed: Vec<u8>,
}

fn row_of(bytes: &[u8]) -> Result<Row, StoreError> {
    let sha = hex::encode(Sha256::digest(bytes));
    let key = key_of(&sha);
    let compressed = compress_payload(bytes, Compression::Fast, &key)?;
    let size =
        i64::try_from(bytes.len()).map_err(|_| StoreError::Backend(format!("payload {key} is too large").into()))?;
    Ok(Row { reference: PayloadRef { key, sha256: sha, size: bytes.len() as u64, range: None }, size, compressed })
}

/// A batch's object as one row (its `sha256` and `size` are the stored object's), and each body's reference: its
/// SHA-256, size and frame in the object.
fn batch_row_of(bodies: &[&[u8]]) -> Result<(Row, Vec<PayloadRef>), StoreError> {
    let batch = FramedBatch::new(bodies, Compression::Fast)?;
    let sha = batch.sha256();
    let key = format!("payloads/{}/batch-{sha}.zst", &sha[..2]);
    let size = i64::try_from(batch.object.len())
        .map_err(|_| StoreError::Backend(format!("batch object {key} is too large").into()))?;
    let references = batch.references(&key);
    let reference = PayloadRef { key, sha256: sha, size: batch.object.len() as u64, range: None };
    Ok((Row { reference, size, compressed: batch.object }, references))
}

impl PayloadDir {
    /// Stores `rows` in one transaction. Content-addressed: a row that exists already holds these very bytes.
    async fn insert(&self, rows: Vec<Row>) -> Result<Vec<PayloadRef>, StoreError> {
        self.db
            .write(move |tx| {
                let mut references = Vec::with_capacity(rows.len());
                for row in &rows {
                    let reference = &row.reference;
                    tx.exec(
                        "INSERT INTO payloads (key, sha256, size, data) VALUES (?1, ?2, ?3, ?4) ON CONFLICT (key) DO NOTHING",
                        params![reference.key, reference.sha256, row.size, row.compressed],
                    )
                    .ctx("storing a payload")?;
                    references.push(row.reference.clone());
                }
                Ok(references)
            })
            .await
    }
}

/// The bytes of `range` inside `object`, or [`StoreError::Corrupt`] when the object is shorter.
fn slice(object: &[u8], range: ByteRange, key: &str) -> Result<Vec<u8>, StoreError> {
    let start = usize::try_from(range.offset).ok();
    let end = start.zip(usize::try_from(range.length).ok()).and_then(|(start, length)| start.checked_add(length));
    start
        .zip(end)
        .and_then(|(start, end)| object.get(start..end))
        .map(<[u8]>::to_vec)
        .ok_or_else(|| StoreError::Corrupt(format!("payload {key}: the range lies outside the object").into()))
}

#[async_trait]
impl PayloadStore for PayloadDir {
    async fn put(&self, bytes: &[u8], _received_at: DateTime<Utc>) -> Result<PayloadRef, StoreError> {
        let mut stored = self.insert(vec![row_of(bytes)?]).await?;
        stored.pop().ok_or_else(|| StoreError::Backend("storing a payload returned no reference".into()))
    }

    /// One object for the whole batch, as on S3: the bodies' zstd frames one after another, each reference naming
    /// its frame's byte range. One row per batch instead of one per body: the rows' keys are hashes, so each row
    /// lands on a page of its own in the table, and a batch of ten wrote ten pages.
    async fn put_batch(&self, bodies: &[&[u8]], _received_at: DateTime<Utc>) -> Result<Vec<PayloadRef>, StoreError> {
        if bodies.is_empty() {
            return Ok(Vec::new());
        }
        let (row, references) = batch_row_of(bodies)?;
        self.insert(vec![row]).await?;
        Ok(references)
    }

    async fn get(&self, payload: &PayloadRef) -> Result<Vec<u8>, StoreError> {
        let key = &payload.key;
        let object =
            self.read_object(key).await?.ok_or_else(|| StoreError::NotFound(format!("payload {key}").into()))?;
        let compressed = match payload.range {
            Some(range) => slice(&object, range, key)?,
            None => object,
        };
        let bytes = zstd::decode_all(compressed.as_slice())
            .map_err(|e| StoreError::Corrupt(format!("payload {key}: not valid zstd: {e}").into()))?;
        let sha = hex::encode(Sha256::digest(&bytes));
        if !sha.eq_ignore_ascii_case(&payload.sha256) {
            return Err(StoreError::Corrupt(
                format!("payload {key}: SHA-256 is {sha}, expected {}", payload.sha256).into(),
            ));
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_batch_is_one_stored_object_whose_frames_read_back_body_by_body() {
        let home = tempfile::tempdir().expect("temporary home");
        let payloads = PayloadDir::open(home.path()).expect("payload store");
        let bodies: [&[u8]; 3] = [b"{\"a\":1}", b"", b"{\"c\":[1,2,3]}"];
        let stored = payloads.put_batch(&bodies, Utc::now()).await.expect("put batch");

        let count = |conn: &mut Connection| conn.query_row("SELECT COUNT(*) FROM payloads", [], |row| row.get(0));
        let objects: i64 = payloads.db.run(move |conn| count(conn).ctx("counting objects")).await.expect("count");
        assert_eq!(objects, 1, "one row for the whole batch");
        let key = &stored[0].key;
        assert!(key.starts_with("payloads/") && key.contains("/batch-"), "{key}");
        let mut end = 0;
        for (reference, body) in stored.iter().zip(bodies) {
            let range = reference.range.expect("a byte range in the batch object");
            assert_eq!((&reference.key, range.offset), (key, end), "frames follow each other in order");
            end = range.offset + range.length;
            assert_eq!(payloads.get(reference).await.expect("ranged read"), body, "{reference:?}");
        }
        let object = payloads.read_object(key).await.expect("read").expect("the object exists");
        assert_eq!(object.len() as u64, end, "the object is its frames and nothing else");
    }
}
