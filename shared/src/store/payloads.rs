//! The payload port: compressed, checked on read; one payload at a time or a whole batch in one write.

use super::StoreError;
use crate::model::{ByteRange, PayloadRef};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use std::cell::RefCell;

/// The zstd level payloads are compressed with.
const LEVEL: i32 = 3;

thread_local! {
    /// One compression context per thread, reused: making one costs more than compressing a payload.
    static COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> = const { RefCell::new(None) };
}

/// `bytes` as one zstd frame, with this thread's compression context (`what` names them in the error).
pub(crate) fn compress_payload(bytes: &[u8], what: &str) -> Result<Vec<u8>, StoreError> {
    COMPRESSOR
        .with(|slot| {
            let mut slot = slot.borrow_mut();
            let compressor = match slot.as_mut() {
                Some(compressor) => compressor,
                None => slot.insert(zstd::bulk::Compressor::new(LEVEL)?),
            };
            compressor.compress(bytes)
        })
        .map_err(|e| StoreError::Backend(format!("compressing payload {what}: {e}").into()))
}

/// Archived payloads and raw bodies.
#[async_trait]
pub trait PayloadStore: Send + Sync {
    /// Archives `bytes` (compressed) under a key derived from their SHA-256; storing the same bytes again
    /// writes nothing new. `received_at` may partition the key space.
    async fn put(&self, bytes: &[u8], received_at: DateTime<Utc>) -> Result<PayloadRef, StoreError>;

    /// Archives every body of `bodies` in as few writes as the backend allows, returning one reference per body,
    /// in order; each reads back on its own with [`PayloadStore::get`]. The S3 store writes one object holding
    /// each body as its own compressed frame (the reference names the frame's byte range); this default writes
    /// one [`PayloadStore::put`] per body. An empty batch writes nothing. On an error nothing can be relied on:
    /// archive the bodies again (one by one or as a batch).
    async fn put_batch(&self, bodies: &[&[u8]], received_at: DateTime<Utc>) -> Result<Vec<PayloadRef>, StoreError> {
        let mut stored = Vec::with_capacity(bodies.len());
        for bytes in bodies {
            stored.push(self.put(bytes, received_at).await?);
        }
        Ok(stored)
    }

    /// Reads the bytes back (only the reference's byte range, when it has one) and checks their SHA-256:
    /// [`StoreError::Corrupt`] when it differs, [`StoreError::NotFound`] when absent.
    async fn get(&self, payload: &PayloadRef) -> Result<Vec<u8>, StoreError>;
}

/// A batch of bodies as one stored object: each body compressed as its own frame, the frames back to back — what a
/// store's `put_batch` writes when it writes one object per batch.
pub(crate) struct FramedBatch {
    /// The object's bytes.
    pub(crate) object: Vec<u8>,
    /// Per body, in order: its SHA-256 (hex), its uncompressed size and its frame's range in the object.
    frames: Vec<(String, u64, ByteRange)>,
}

impl FramedBatch {
    /// Frames `bodies`, each compressed by `compress`.
    pub(crate) fn new(
        bodies: &[&[u8]],
        compress: impl Fn(&[u8]) -> Result<Vec<u8>, StoreError>,
    ) -> Result<Self, StoreError> {
        let mut object = Vec::new();
        let mut frames = Vec::with_capacity(bodies.len());
        for bytes in bodies {
            let frame = compress(bytes)?;
            let range = ByteRange { offset: object.len() as u64, length: frame.len() as u64 };
            object.extend_from_slice(&frame);
            frames.push((hex::encode(Sha256::digest(bytes)), bytes.len() as u64, range));
        }
        Ok(Self { object, frames })
    }

    /// The SHA-256 (hex) of the whole object: batch objects are named by it.
    pub(crate) fn sha256(&self) -> String {
        hex::encode(Sha256::digest(&self.object))
    }

    /// Each body's reference once the object is stored under `key`, in order.
    pub(crate) fn references(&self, key: &str) -> Vec<PayloadRef> {
        self.frames
            .iter()
            .map(|(sha256, size, range)| PayloadRef {
                key: key.to_owned(),
                sha256: sha256.clone(),
                size: *size,
                range: Some(*range),
            })
            .collect()
    }
}
