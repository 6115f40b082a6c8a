//! [`PayloadDir`]: payloads as zstd files named by their SHA-256, under `home/payloads/`.

use super::codec::random_id;
use crate::model::PayloadRef;
use crate::store::{PayloadStore, StoreError};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use std::fs;
use std::io::{self, Write as _};
use std::path::{Component, Path, PathBuf};

/// The zstd level payloads are compressed with.
const LEVEL: i32 = 3;

/// The embedded [`PayloadStore`]: `home/payloads/<first 2 hex>/<sha256 hex>.zst`, written atomically.
pub struct PayloadDir {
    home: PathBuf,
}

fn io_error(what: &str, path: &Path, e: io::Error) -> StoreError {
    StoreError::Backend(format!("{what} {}: {e}", path.display()))
}

impl PayloadDir {
    /// A payload store under `home/payloads/` (the directory is created if missing).
    pub(crate) fn open(home: &Path) -> Result<Self, StoreError> {
        let dir = home.join("payloads");
        fs::create_dir_all(&dir).map_err(|e| io_error("creating", &dir, e))?;
        Ok(Self { home: home.to_owned() })
    }

    /// Where a payload key lives on disk; keys that leave `payloads/` are refused.
    fn path_of(&self, key: &str) -> Result<PathBuf, StoreError> {
        let relative = Path::new(key);
        let inside =
            relative.starts_with("payloads") && relative.components().all(|c| matches!(c, Component::Normal(_)));
        if !inside {
            return Err(StoreError::Backend(format!("payload key {key:?} is not under payloads/")));
        }
        Ok(self.home.join(relative))
    }
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| io_error("creating", dir, e))?;
    let temp = dir.join(format!(".tmp-{}", random_id()));
    let written = (|| {
        let mut file = fs::OpenOptions::new().write(true).create_new(true).open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temp, path)
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&temp);
        return Err(io_error("writing", path, e));
    }
    Ok(())
}

fn put_blocking(home: &Path, bytes: &[u8]) -> Result<PayloadRef, StoreError> {
    let sha = hex::encode(Sha256::digest(bytes));
    let key = format!("payloads/{}/{sha}.zst", &sha[..2]);
    let path = home.join(&key);
    // Content-addressed: an existing file already holds these very bytes.
    if !path.exists() {
        let compressed = zstd::encode_all(bytes, LEVEL)
            .map_err(|e| StoreError::Backend(format!("compressing payload {key}: {e}")))?;
        write_atomically(&path, &compressed)?;
    }
    Ok(PayloadRef { key, sha256: sha, size: bytes.len() as u64 })
}

fn get_blocking(path: &Path, payload: &PayloadRef) -> Result<Vec<u8>, StoreError> {
    let key = &payload.key;
    let compressed = fs::read(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => StoreError::NotFound(format!("payload {key}")),
        _ => io_error("reading", path, e),
    })?;
    let bytes = zstd::decode_all(compressed.as_slice())
        .map_err(|e| StoreError::Corrupt(format!("payload {key}: not valid zstd: {e}")))?;
    let sha = hex::encode(Sha256::digest(&bytes));
    if !sha.eq_ignore_ascii_case(&payload.sha256) {
        return Err(StoreError::Corrupt(format!("payload {key}: SHA-256 is {sha}, expected {}", payload.sha256)));
    }
    Ok(bytes)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| StoreError::Backend(format!("a payload task failed: {e}")))?
}

#[async_trait]
impl PayloadStore for PayloadDir {
    async fn put(&self, bytes: &[u8], _received_at: DateTime<Utc>) -> Result<PayloadRef, StoreError> {
        let home = self.home.clone();
        let bytes = bytes.to_vec();
        blocking(move || put_blocking(&home, &bytes)).await
    }

    async fn get(&self, payload: &PayloadRef) -> Result<Vec<u8>, StoreError> {
        let path = self.path_of(&payload.key)?;
        let payload = payload.clone();
        blocking(move || get_blocking(&path, &payload)).await
    }
}
