//! The payload port: compressed, checked on read; one payload at a time or a whole batch in one write.

use super::StoreError;
use crate::model::PayloadRef;
use async_trait::async_trait;
use chrono::{DateTime, Utc};

/// What the payload adapters share: one compressor, a batch as one object of frames.
#[cfg(any(feature = "sqlite", feature = "aws"))]
mod framing;
#[cfg(any(feature = "sqlite", feature = "aws"))]
pub(crate) use framing::{compress_payload, Compression, FramedBatch};

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
