//! What the payload adapters share: payloads compressed with a context per thread, and a batch of bodies as one
//! object of frames.

use crate::model::{ByteRange, PayloadRef};
use crate::store::StoreError;
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

/// A batch of bodies as one stored object: each body compressed as its own frame, the frames back to back — what a
/// store's `put_batch` writes when it writes one object per batch.
pub(crate) struct FramedBatch {
    /// The object's bytes.
    pub(crate) object: Vec<u8>,
    /// Per body, in order: its SHA-256 (hex), its uncompressed size and its frame's range in the object.
    frames: Vec<(String, u64, ByteRange)>,
}

impl FramedBatch {
    /// Frames `bodies`, each compressed on its own ([`compress_payload`]).
    pub(crate) fn new(bodies: &[&[u8]]) -> Result<Self, StoreError> {
        let mut object = Vec::new();
        let mut frames = Vec::with_capacity(bodies.len());
        for bytes in bodies {
            let frame = compress_payload(bytes, "of a batch")?;
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
