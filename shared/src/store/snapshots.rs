//! The snapshot port: another system's current records for `reconcile` (an NDJSON file of envelopes, e.g. an
//! export), and next to it the state of each reconcile run, so an interrupted run resumes where it stopped.
//!
//! [`FileSnapshot`] is a local file (the run states beside it: `<file>.reconcile-<run id>.json`); the AWS backend
//! has `S3Snapshot` (an `s3://bucket/key` object, the states beside it in the bucket).

use super::StoreError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::path::{Path, PathBuf};

/// A snapshot's bytes and when it was last written.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The NDJSON text.
    pub bytes: Vec<u8>,
    /// When the file or object was last modified (what a `reconcile` run takes as the snapshot's time by default).
    pub modified_at: Option<DateTime<Utc>>,
}

/// Where a snapshot is, with the run states kept beside it.
#[async_trait]
pub trait SnapshotStore: Send + Sync {
    /// The snapshot's location, as given (`path` or `s3://bucket/key`).
    fn location(&self) -> String;

    /// Reads the snapshot whole.
    async fn read(&self) -> Result<Snapshot, StoreError>;

    /// The stored state of run `run_id` (`None`: no such run yet).
    async fn read_state(&self, run_id: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Stores the state of run `run_id`, replacing the previous one whole.
    async fn write_state(&self, run_id: &str, bytes: &[u8]) -> Result<(), StoreError>;
}

/// The name of a run's state beside the snapshot `name`.
pub fn state_name(name: &str, run_id: &str) -> String {
    format!("{name}.reconcile-{run_id}.json")
}

/// A snapshot in a local file.
#[derive(Debug, Clone)]
pub struct FileSnapshot {
    path: PathBuf,
}

impl FileSnapshot {
    /// The snapshot at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    fn state_path(&self, run_id: &str) -> PathBuf {
        let name = self.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        self.path.with_file_name(state_name(&name, run_id))
    }
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> StoreError {
    let detail = format!("{what} {}: {e}", path.display());
    match e.kind() {
        std::io::ErrorKind::NotFound => StoreError::NotFound(detail.into()),
        _ => StoreError::Backend(detail.into()),
    }
}

#[async_trait]
impl SnapshotStore for FileSnapshot {
    fn location(&self) -> String {
        self.path.display().to_string()
    }

    async fn read(&self) -> Result<Snapshot, StoreError> {
        let bytes = std::fs::read(&self.path).map_err(|e| io_error("reading the snapshot", &self.path, e))?;
        let modified_at = std::fs::metadata(&self.path).and_then(|m| m.modified()).ok().map(DateTime::<Utc>::from);
        Ok(Snapshot { bytes, modified_at })
    }

    async fn read_state(&self, run_id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.state_path(run_id);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error("reading the run state", &path, e)),
        }
    }

    /// Written to a temporary file first, then renamed over the state: a crash leaves the old state or the new.
    async fn write_state(&self, run_id: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let path = self.state_path(run_id);
        let temporary = path.with_extension("json.tmp");
        std::fs::write(&temporary, bytes).map_err(|e| io_error("writing the run state", &temporary, e))?;
        std::fs::rename(&temporary, &path).map_err(|e| io_error("writing the run state", &path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_file_snapshot_keeps_run_states_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("export.ndjson");
        std::fs::write(&file, b"{}\n").unwrap();
        let snapshot = FileSnapshot::new(&file);
        assert_eq!(snapshot.read().await.unwrap().bytes, b"{}\n");
        assert!(snapshot.read().await.unwrap().modified_at.is_some());
        assert_eq!(snapshot.read_state("r1").await.unwrap(), None);
        snapshot.write_state("r1", b"one").await.unwrap();
        snapshot.write_state("r1", b"two").await.unwrap();
        assert_eq!(snapshot.read_state("r1").await.unwrap().as_deref(), Some(&b"two"[..]));
        assert!(dir.path().join("export.ndjson.reconcile-r1.json").exists());
        let missing = FileSnapshot::new(dir.path().join("none.ndjson"));
        assert!(matches!(missing.read().await, Err(StoreError::NotFound(_))));
    }
}
