//! The connection pool all embedded adapters share, and the one way to run SQL: on a blocking thread.
//!
//! Every connection runs in WAL mode with `synchronous=NORMAL`: a committed transaction survives a killed
//! process (`kill -9` at any point loses nothing committed). Surviving power loss too needs `synchronous=FULL`.
//! Writes use `BEGIN IMMEDIATE` and a 10 s busy timeout, so several processes may share one database file.

use super::error::SqlContext;
use super::schema;
use crate::store::StoreError;
use rusqlite::{Connection, Transaction, TransactionBehavior};
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
}

impl Db {
    /// Opens the pool on `path` (created if missing) and brings the schema up to date.
    pub(crate) fn open(path: &Path, pool_size: usize) -> Result<Arc<Self>, StoreError> {
        let db = Self {
            path: path.to_owned(),
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(pool_size.max(1))),
        };
        let mut conn = db.connect()?;
        schema::migrate(&mut conn)?;
        db.check_in(conn);
        Ok(Arc::new(db))
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

    /// Runs `f` with a pooled connection on a blocking thread, so async workers never wait on SQLite.
    pub(crate) async fn run<T, F>(self: &Arc<Self>, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|e| StoreError::Backend(format!("the SQLite pool is closed: {e}")))?;
        let db = Arc::clone(self);
        let joined = tokio::task::spawn_blocking(move || {
            let mut conn = db.check_out()?;
            let result = f(&mut conn);
            db.check_in(conn);
            drop(permit);
            result
        })
        .await;
        joined.map_err(|e| StoreError::Backend(format!("an SQLite task failed: {e}")))?
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction: committed when `f` succeeds, rolled back otherwise.
    pub(crate) async fn write<T, F>(self: &Arc<Self>, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        self.run(move |conn| {
            let tx =
                conn.transaction_with_behavior(TransactionBehavior::Immediate).ctx("starting a write transaction")?;
            let value = f(&tx)?;
            tx.commit().ctx("committing")?;
            Ok(value)
        })
        .await
    }
}
