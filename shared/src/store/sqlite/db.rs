//! The connection pool all embedded adapters share, and the one way to run SQL: on a blocking thread.
//!
//! Every connection runs in WAL mode with `synchronous=NORMAL`: a committed transaction survives a killed
//! process (`kill -9` at any point loses nothing committed). Surviving power loss too needs `synchronous=FULL`.
//! Writes use `BEGIN IMMEDIATE` and a 10 s busy timeout, so several processes may share one database file.
//! Within one process writers queue on an async semaphore instead: SQLite admits one writer at a time anyway, and
//! its busy handler waits by sleeping (1, 2, 5, 10 … ms), which would cost far more than the write itself.

use super::error::SqlContext;
use super::group_commit::{self, Job};
use crate::store::StoreError;
use rusqlite::{Connection, Transaction};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;

/// How long a statement waits for another connection's lock before failing with `Unavailable`.
const BUSY_TIMEOUT: Duration = Duration::from_millis(10_000);

/// Up to `pool_size` connections to one SQLite file, opened lazily and reused.
pub(crate) struct Db {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
    writer: Arc<Semaphore>,
    pending: Mutex<Vec<Job>>,
}

impl Db {
    /// Opens the pool on `path` (created if missing), brings the schema up to date with `migrate`, and starts
    /// the background checkpointer.
    pub(crate) fn open(
        path: &Path,
        pool_size: usize,
        migrate: fn(&mut Connection) -> Result<(), StoreError>,
    ) -> Result<Arc<Self>, StoreError> {
        let db = Self {
            path: path.to_owned(),
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(pool_size.max(1))),
            writer: Arc::new(Semaphore::new(1)),
            pending: Mutex::new(Vec::new()),
        };
        let mut conn = db.connect()?;
        migrate(&mut conn)?;
        db.check_in(conn);
        let db = Arc::new(db);
        start_checkpointer(&db)?;
        Ok(db)
    }

    fn connect(&self) -> Result<Connection, StoreError> {
        let what = format!("opening {}", self.path.display());
        let conn = Connection::open(&self.path).ctx(&what)?;
        conn.busy_timeout(BUSY_TIMEOUT).ctx(&what)?;
        let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0)).ctx(&what)?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(path = %self.path.display(), mode, "SQLite refused WAL mode; concurrent access will be slower");
        }
        conn.pragma_update(None, "synchronous", "NORMAL").ctx(&what)?;
        conn.pragma_update(None, "foreign_keys", "ON").ctx(&what)?;
        // Commits never checkpoint (the checkpointer thread does, off the write path).
        conn.pragma_update(None, "wal_autocheckpoint", 0).ctx(&what)?;
        conn.pragma_update(None, "cache_size", -16_384).ctx(&what)?;
        // Reads through a memory map instead of a pread per page.
        conn.pragma_update(None, "mmap_size", 1i64 << 30).ctx(&what)?;
        Ok(conn)
    }

    fn check_out(&self) -> Result<Connection, StoreError> {
        let idle = self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).pop();
        match idle {
            Some(conn) => Ok(conn),
            None => self.connect(),
        }
    }

    fn check_in(&self, conn: Connection) {
        // A connection left inside a transaction (a failed rollback) is not reused.
        if conn.is_autocommit() {
            self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(conn);
        }
    }

    /// Runs `f` with a pooled connection, inline on the calling task: a statement takes tens of microseconds,
    /// less than handing it to a blocking thread and back would. In-process writers queue asynchronously
    /// (see [`Db::write`]), so the only blocking wait left is another process's write lock (the busy timeout).
    pub(crate) async fn run<T, F>(self: &Arc<Self>, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| StoreError::Backend(format!("the SQLite pool is closed: {e}").into()))?;
        let mut conn = self.check_out()?;
        let result = f(&mut conn);
        self.check_in(conn);
        result
    }

    /// Runs `f` as one all-or-nothing write: committed when `f` succeeds, rolled back otherwise, durable when this
    /// returns. Concurrent writes of this process share commits (see [`group_commit`]).
    pub(crate) async fn write<T, F>(self: &Arc<Self>, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let (job, mut result) = group_commit::job(f);
        self.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(job);
        let _writer = self
            .writer
            .acquire()
            .await
            .map_err(|e| StoreError::Backend(format!("the SQLite writer queue is closed: {e}").into()))?;
        // Run what is queued, ours included unless an earlier holder of the slot already ran it.
        loop {
            match result.try_recv() {
                Ok(outcome) => return outcome,
                Err(tokio::sync::oneshot::error::TryRecvError::Closed) => {
                    return Err(StoreError::Backend("a grouped write was dropped before it ran".to_owned().into()))
                }
                Err(tokio::sync::oneshot::error::TryRecvError::Empty) => {}
            }
            let _permit = self
                .permits
                .acquire()
                .await
                .map_err(|e| StoreError::Backend(format!("the SQLite pool is closed: {e}").into()))?;
            // From here to the end of the group nothing awaits: a caller that stops waiting can't strand the
            // jobs it took.
            let jobs: Vec<Job> = {
                let mut pending = self.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                let take = pending.len().min(group_commit::MAX_GROUP);
                pending.drain(..take).collect()
            };
            if jobs.is_empty() {
                return Err(StoreError::Backend("a grouped write was lost before it ran".to_owned().into()));
            }
            let mut conn = self.check_out()?;
            group_commit::run(&mut conn, jobs);
            self.check_in(conn);
        }
    }
}

/// How often the checkpointer copies the write-ahead log back into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// Checkpoints the WAL on its own thread and connection, so no commit pays for it; the thread ends soon after
/// the pool is dropped.
fn start_checkpointer(db: &Arc<Db>) -> Result<(), StoreError> {
    let conn = db.connect()?;
    let pool = Arc::downgrade(db);
    std::thread::Builder::new()
        .name("synctrail-checkpoint".to_owned())
        .spawn(move || loop {
            std::thread::sleep(CHECKPOINT_EVERY);
            if pool.upgrade().is_none() {
                break;
            }
            if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                tracing::debug!(error = %e, "checkpoint skipped");
            }
        })
        .map(drop)
        .map_err(|e| StoreError::Backend(format!("starting the checkpoint thread: {e}").into()))
}
