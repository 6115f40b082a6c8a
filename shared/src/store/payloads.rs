//! The payload port: content-addressed, compressed, checked on read.

use super::StoreError;
use crate::model::PayloadRef;
use async_trait::async_trait;
use chrono::{DateTime, Utc};

/// Archived payloads and raw bodies.
#[async_trait]
pub trait PayloadStore: Send + Sync {
    /// Archives `bytes` (compressed) under a key derived from their SHA-256; storing the same bytes again
    /// writes nothing new. `received_at` may partition the key space.
    async fn put(&self, bytes: &[u8], received_at: DateTime<Utc>) -> Result<PayloadRef, StoreError>;

    /// Reads the bytes back and checks their SHA-256: [`StoreError::Corrupt`] when it differs,
    /// [`StoreError::NotFound`] when absent.
    async fn get(&self, payload: &PayloadRef) -> Result<Vec<u8>, StoreError>;
}
