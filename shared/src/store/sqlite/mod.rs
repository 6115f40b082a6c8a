//! The embedded backend: one SQLite file (`home/synctrail.db`) for events, heads, the queue and the mirror
//! destination, plus the compressed payloads in a database of their own (`home/payloads/payloads.db`).
//!
//! The adapters share one connection pool per file; SQL runs inline on the calling task (a statement takes tens of
//! microseconds) and this process's writes share group commits (see `db.rs`). Several processes may open
//! the same home at once (WAL, `BEGIN IMMEDIATE`, a busy timeout). Committed data survives a killed process;
//! surviving power loss needs `synchronous=FULL` (see `db.rs`). Limits of 0 mean "no limit" throughout.

pub mod baseline;
mod codec;
mod db;
mod error;
mod events;
mod group_commit;
mod guard;
mod mirror;
mod payloads;
mod queue;
mod schema;
mod wal_watch;
mod wal_writes;

pub use crate::destination::guard::MirrorRecord;
pub use events::SqliteStore;
pub use mirror::Mirror;
pub use payloads::PayloadDir;
pub use queue::SqliteQueue;

use crate::clock::Clock;
use crate::destination::delta_fields::DeltaFields;
use crate::store::StoreError;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The database file's name inside the home directory.
pub const DB_FILE: &str = "synctrail.db";

/// The write-ahead logs of the embedded home `home` (the metadata database's and the payload database's), which
/// exist while a process has the databases open.
pub fn wal_files(home: &Path) -> [PathBuf; 2] {
    [db::wal_path(&home.join(DB_FILE)), db::wal_path(&home.join("payloads").join(payloads::PAYLOAD_DB_FILE))]
}

/// Tuning of the embedded backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddedOptions {
    /// Receives after which a message moves to the dead-letter queue (SQS `maxReceiveCount`).
    pub max_receives: u32,
    /// The most SQLite connections open at once in this process.
    pub pool_size: usize,
    /// Which payload fields of `in_order` events the mirror adds into which state fields (default: `delta` into
    /// `quantity`; `DeltaFields::from_env` reads `SYNCTRAIL_DELTA_FIELDS`).
    pub delta_fields: DeltaFields,
    /// The most bytes the metadata database's write-ahead log holds before the writer starts it over (it may
    /// overshoot by the commits made while a reader keeps it from restarting).
    pub wal_budget_bytes: u64,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        Self {
            max_receives: 5,
            pool_size: 8,
            delta_fields: DeltaFields::default(),
            wal_budget_bytes: db::DEFAULT_WAL_BUDGET,
        }
    }
}

/// The four embedded adapters, sharing one database file and pool.
pub struct Embedded {
    /// Event records and entity heads.
    pub store: Arc<SqliteStore>,
    /// The ingest queue and its dead-letter queue.
    pub queue: Arc<SqliteQueue>,
    /// Archived payloads.
    pub payloads: Arc<PayloadDir>,
    /// The reference destination.
    pub mirror: Arc<Mirror>,
}

impl Embedded {
    /// Opens (creating when missing) `home`, `home/synctrail.db` and `home/payloads/`. Blocks while it creates
    /// the schema; call it at start-up.
    pub fn open(home: &Path, clock: Arc<dyn Clock>, options: EmbeddedOptions) -> Result<Self, StoreError> {
        std::fs::create_dir_all(home)
            .map_err(|e| StoreError::Backend(format!("creating home directory {}: {e}", home.display()).into()))?;
        let db =
            db::Db::open_bounded(&home.join(DB_FILE), options.pool_size, schema::migrate, options.wal_budget_bytes)?;
        Ok(Self {
            store: Arc::new(SqliteStore::new(Arc::clone(&db))),
            queue: Arc::new(SqliteQueue::new(Arc::clone(&db), Arc::clone(&clock), options.max_receives)),
            payloads: Arc::new(PayloadDir::open(home)?),
            mirror: Arc::new(Mirror::new(db, clock, options.delta_fields)),
        })
    }
}
