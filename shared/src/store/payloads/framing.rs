//! What the payload adapters share: payloads compressed with a context per thread, and a batch of bodies as one
//! object of frames.

use crate::model::{ByteRange, PayloadRef};
use crate::store::StoreError;
use sha2::{Digest, Sha256};
use std::cell::RefCell;

/// How hard a payload store compresses: each level writes standard zstd frames, which any level reads back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compression {
    /// zstd level 3, for storage billed by the byte for the whole retention (S3). The benchmark's bodies (152
    /// bytes of JSON on average) take 133 bytes a frame, against 162 with `Fast`.
    #[cfg(feature = "aws")]
    Small,
    /// zstd level -1, for a local disk: the fast strategy without Huffman-coded literals, whose tables zstd builds
    /// again for every frame of a few hundred bytes; 4 % fewer instructions per event of the embedded pipeline than
    /// `Small` (`make bench-instructions`; docs/performance.md).
    #[cfg(feature = "sqlite")]
    Fast,
}

impl Compression {
    fn level(self) -> i32 {
        match self {
            #[cfg(feature = "aws")]
            Self::Small => 3,
            #[cfg(feature = "sqlite")]
            Self::Fast => -1,
        }
    }
}

thread_local! {
    /// One compression context per thread, reused, with the level it is set to: making one costs more than
    /// compressing a payload.
    static COMPRESSOR: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> = const { RefCell::new(None) };
}

/// `bytes` as one zstd frame, with this thread's compression context (`what` names them in the error).
pub(crate) fn compress_payload(bytes: &[u8], compression: Compression, what: &str) -> Result<Vec<u8>, StoreError> {
    let level = compression.level();
    COMPRESSOR
        .with(|slot| {
            let mut slot = slot.borrow_mut();
            let (set, compressor) = match slot.as_mut() {
                Some(context) => context,
                None => slot.insert((level, zstd::bulk::Compressor::new(level)?)),
            };
            if *set != level {
                compressor.set_compression_level(level)?;
                *set = level;
            }
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
    pub(crate) fn new(bodies: &[&[u8]], compression: Compression) -> Result<Self, StoreError> {
        let mut object = Vec::new();
        let mut frames = Vec::with_capacity(bodies.len());
        for bytes in bodies {
            let frame = compress_payload(bytes, compression, "of a batch")?;
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

#[cfg(test)]
#[cfg(all(feature = "aws", feature = "sqlite"))]
mod tests {
    use super::*;

    fn decompress(frame: &[u8]) -> Vec<u8> {
        zstd::stream::decode_all(frame).expect("a zstd frame")
    }

    #[test]
    fn either_compression_writes_frames_that_read_back_and_a_thread_switches_between_them() {
        let body = br#"{"id":1,"title":"Widget","variants":[{"sku":"W-1","price":"9.99"},{"sku":"W-2","price":"9.99"}],"tags":"a,b,c,a,b,c,a,b,c"}"#;
        let fast = compress_payload(body, Compression::Fast, "fast").expect("fast");
        let small = compress_payload(body, Compression::Small, "small").expect("small");
        let fast_again = compress_payload(body, Compression::Fast, "fast again").expect("fast again");
        assert_eq!(decompress(&fast), body);
        assert_eq!(decompress(&small), body);
        assert_eq!(fast_again, fast, "the context set back to the fast level compresses as it did");
        assert_eq!(small, zstd::bulk::compress(body, 3).expect("level 3"), "`Small` is zstd level 3");
        assert_eq!(fast, zstd::bulk::compress(body, -1).expect("level -1"), "`Fast` is zstd level -1");
    }
}
