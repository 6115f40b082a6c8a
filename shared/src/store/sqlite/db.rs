//! The connection pool the embedded adapters of one database file share, and the one way to run SQL on it: inline on
//! the calling task ([`Db::run`]), writes grouped into shared commits ([`Db::write`]).
//!
//! Every connection runs in WAL mode with `synchronous=NORMAL`: a committed transaction survives a killed
//! process (`kill -9` at any point loses nothing committed). Surviving power loss too needs `synchronous=FULL`.
//! Writes use `BEGIN IMMEDIATE` and a 10 s busy timeout, so several processes may share one database file.
//! Within one process writers queue on an async semaphore instead: SQLite admits one writer at a time anyway, and
//! its busy handler waits by sleeping (1, 2, 5, 10 … ms), which would cost far more than the write itself.
//!
//! The write-ahead log stays within a budget (see [`WalBounds`]). SQLite starts the WAL over only when a writer
//! begins after a checkpoint copied every frame back; under steady writes a passive checkpoint never catches up
//! with the last commit (a reader's snapshot or the next commit is always ahead of it), so the WAL used to grow for
//! the whole run (1.4 GB per 20,000 events), every new block zeroed by the kernel. Now commits report the WAL's
//! length (a WAL hook); each quarter of the budget wakes the checkpointer thread, which copies frames back off the
//! write path (a passive checkpoint). At the full budget the writer, keeping the writer slot, has the checkpointer
//! run a `RESTART` checkpoint and awaits it: only the frames since the last passive checkpoint are left to copy,
//! readers are waited for on the checkpointer's thread (never on the runtime's), and this process's writers queue
//! meanwhile (their next group commit is the larger for it). The next transaction starts the WAL over, and
//! `journal_size_limit` trims a file that outgrew the budget.

use super::error::SqlContext;
use super::group_commit::{self, Job};
use super::wal_writes;
use crate::store::StoreError;
use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags, Transaction};
use std::cell::Cell;
use std::os::raw::c_int;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;

/// How long a statement waits for another connection's lock before failing with `Unavailable`.
const BUSY_TIMEOUT: Duration = Duration::from_millis(10_000);

/// Prepared statements each connection keeps parsed. The embedded backend's hot path alone uses about twenty
/// (events, heads, queue, mirror); rusqlite's default of 16 evicted some on every pass, so they were parsed again.
const STATEMENT_CACHE: usize = 64;

/// The page size of a new database, in bytes. Most of an event's writes change one small row or index entry at a
/// random place (its record, its head, the mirror row, the event id's and entity's index entries), and a commit
/// writes each page it changed whole to the WAL, then the checkpoint writes it once more: pages of 2 KiB instead
/// of SQLite's 4 KiB write a third fewer bytes per event for the same CPU (`make bench`: 55 → 37 KiB). A
/// happy-path record (≈ 1.6 KB of JSON) still fits in one page; a longer history spills into overflow pages.
const PAGE_SIZE: i64 = 2048;

/// The WAL budget of a database unless its opener says otherwise. The checkpointer copies only a page's newest
/// frame, so the longer the WAL grows between checkpoints, the more rewrites of one page (a head, an index's hot end)
/// it copies once: 56 MiB instead of 32 writes 5 % fewer bytes per event (`synctrail bench`: 36.6 → 34.7 KiB, the CPU
/// unchanged). The log peaks just past the budget (one group commit more): 56.8 MiB in that run, under 64 MB.
pub(crate) const DEFAULT_WAL_BUDGET: u64 = 56 << 20;

/// How long a `RESTART` checkpoint waits for readers (and other processes' writers) before giving up until the WAL
/// has grown by another quarter of its budget.
const RESTART_WAIT: Duration = Duration::from_millis(500);

thread_local! {
    /// The WAL's length in frames after the last commit on this thread (set by [`note_wal_frames`]).
    static WAL_FRAMES: Cell<c_int> = const { Cell::new(0) };
}

/// The WAL hook: SQLite calls it on the committing thread, right after a commit, with the WAL's length.
fn note_wal_frames(_: &rusqlite::hooks::Wal, frames: c_int) -> rusqlite::Result<()> {
    WAL_FRAMES.set(frames);
    Ok(())
}

/// When to wake the checkpointer and when the writer restarts the WAL, in frames (pages).
struct WalBounds {
    /// A quarter of the budget: how far the WAL grows between two passive checkpoints.
    step: c_int,
    /// The budget: the length at which the writer checkpoints with `RESTART`.
    budget: c_int,
    /// The next length that wakes the checkpointer.
    checkpoint_at: c_int,
    /// The next length at which the writer restarts the WAL.
    restart_at: c_int,
    /// The length after the previous commit (a shorter one means the WAL started over).
    last: c_int,
}

impl WalBounds {
    fn new(budget_bytes: u64, page_size: u64) -> Self {
        let budget = c_int::try_from(budget_bytes / page_size.max(512)).unwrap_or(c_int::MAX).max(4);
        let step = budget / 4;
        Self { step, budget, checkpoint_at: step, restart_at: budget, last: 0 }
    }

    fn start_over(&mut self) {
        self.checkpoint_at = self.step;
        self.restart_at = self.budget;
    }
}

/// What a commit's WAL length asks for.
#[derive(Debug, PartialEq, Eq)]
enum WalAction {
    Nothing,
    WakeCheckpointer,
    Restart,
}

impl WalBounds {
    /// A restart at `frames` could not finish (a reader stayed in the WAL): tried again a quarter later.
    fn restart_refused(&mut self, frames: c_int) {
        self.restart_at = frames.saturating_add(self.step);
        self.checkpoint_at = self.restart_at;
    }

    /// Decides on the WAL's length after a commit (0: no commit happened).
    fn after_commit(&mut self, frames: c_int) -> WalAction {
        if frames <= 0 {
            return WalAction::Nothing;
        }
        if frames < self.last {
            self.start_over();
        }
        self.last = frames;
        if frames >= self.restart_at {
            return WalAction::Restart;
        }
        if frames >= self.checkpoint_at {
            self.checkpoint_at = frames.saturating_add(self.step);
            return WalAction::WakeCheckpointer;
        }
        WalAction::Nothing
    }
}

/// Up to `pool_size` connections to one SQLite file, opened lazily and reused.
pub(crate) struct Db {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
    writer: Arc<Semaphore>,
    pending: Mutex<Vec<Box<dyn Job>>>,
    wal_budget: u64,
    wal: Mutex<WalBounds>,
    checkpointer: Sender<Checkpoint>,
    /// Whether a passive checkpoint is asked for and not yet started (wake-ups coalesce).
    passive_asked: Arc<AtomicBool>,
}

impl Db {
    /// Opens the pool on `path` (created if missing) with the default WAL budget; see [`Db::open_bounded`].
    pub(crate) fn open(
        path: &Path,
        pool_size: usize,
        migrate: fn(&mut Connection) -> Result<(), StoreError>,
    ) -> Result<Arc<Self>, StoreError> {
        Self::open_bounded(path, pool_size, migrate, DEFAULT_WAL_BUDGET)
    }

    /// Opens the pool on `path` (created if missing), brings the schema up to date with `migrate`, and starts
    /// the checkpointer thread; the WAL is started over whenever it reaches `wal_budget` bytes.
    pub(crate) fn open_bounded(
        path: &Path,
        pool_size: usize,
        migrate: fn(&mut Connection) -> Result<(), StoreError>,
        wal_budget: u64,
    ) -> Result<Arc<Self>, StoreError> {
        let (wake, woken) = channel();
        let mut db = Self {
            path: path.to_owned(),
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(pool_size.max(1))),
            writer: Arc::new(Semaphore::new(1)),
            pending: Mutex::new(Vec::new()),
            wal_budget,
            wal: Mutex::new(WalBounds::new(wal_budget, 4096)),
            checkpointer: wake,
            passive_asked: Arc::new(AtomicBool::new(false)),
        };
        let mut conn = db.connect()?;
        migrate(&mut conn)?;
        let page_size: i64 = conn.query_row("PRAGMA page_size", [], |row| row.get(0)).ctx("reading the page size")?;
        db.wal = Mutex::new(WalBounds::new(wal_budget, u64::try_from(page_size).unwrap_or(4096)));
        db.check_in(conn);
        start_checkpointer(db.connect()?, woken, Arc::clone(&db.passive_asked), path)?;
        Ok(Arc::new(db))
    }

    fn connect(&self) -> Result<Connection, StoreError> {
        let what = format!("opening {}", self.path.display());
        // Through the VFS that writes a commit's WAL frames in one system call (`wal_writes.rs`).
        let vfs = wal_writes::registered().map_err(|e| StoreError::Backend(format!("{what}: {e}").into()))?;
        let conn = Connection::open_with_flags_and_vfs(&self.path, OpenFlags::default(), vfs).ctx(&what)?;
        conn.busy_timeout(BUSY_TIMEOUT).ctx(&what)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        // Plans that don't depend on bound values: otherwise binding the limit of a statement with `LIMIT ?`
        // (receiving from the queue, listing events or leases) expires it, and every run parses it again.
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true).ctx(&what)?;
        // Before WAL mode: a new database takes the page size; an existing one keeps the one it was made with.
        conn.pragma_update(None, "page_size", PAGE_SIZE).ctx(&what)?;
        let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0)).ctx(&what)?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(path = %self.path.display(), mode, "SQLite refused WAL mode; concurrent access will be slower");
        }
        conn.pragma_update(None, "synchronous", "NORMAL").ctx(&what)?;
        conn.pragma_update(None, "foreign_keys", "ON").ctx(&what)?;
        // Commits never checkpoint on their own: see the module docs. (This pragma clears the WAL hook, so it
        // comes first.)
        conn.pragma_update(None, "wal_autocheckpoint", 0).ctx(&what)?;
        conn.wal_hook(Some(note_wal_frames));
        conn.pragma_update(None, "journal_size_limit", i64::try_from(self.wal_budget).unwrap_or(i64::MAX))
            .ctx(&what)?;
        // A small page cache (512 KiB): a connection's cache is dropped whenever another connection committed
        // since its last read, so under steady writes a large one holds little that is read again; but SQLite
        // scans the whole cache at the end of every write transaction in which a B-tree rebalance renumbered a
        // page (it parks the page at the lock-byte page's number for a moment, and the end of the transaction then
        // truncates the cache from far below that number). With 16 MiB that scan was 7 % of the CPU of `synctrail
        // bench`; with 512 KiB events/s rose ≈ 8 % and `bench verify` did not slow down.
        conn.pragma_update(None, "cache_size", -512).ctx(&what)?;
        // No memory map (SQLite's default): a connection whose next read finds that another connection committed
        // drops its page cache and unmaps the whole file, so under steady writes every read paid for an `munmap`
        // (TLB shootdowns on every core) and page faults to map it again; a `pread` per page costs less (`make
        // bench`: ≈ 9 % less CPU per event).
        Ok(conn)
    }

    /// The database file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
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
    /// returns. Concurrent writes of this process share commits (see [`group_commit`]), so `f` may run more than
    /// once: only its last run counts, every earlier one having been rolled back.
    pub(crate) async fn write<T, F>(self: &Arc<Self>, f: F) -> Result<T, StoreError>
    where
        F: FnMut(&Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
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
            let jobs: Vec<Box<dyn Job>> = {
                let mut pending = self.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                let take = pending.len().min(group_commit::MAX_GROUP);
                pending.drain(..take).collect()
            };
            if jobs.is_empty() {
                return Err(StoreError::Backend("a grouped write was lost before it ran".to_owned().into()));
            }
            let mut conn = self.check_out()?;
            WAL_FRAMES.set(0);
            group_commit::run(&mut conn, jobs);
            let frames = WAL_FRAMES.get();
            self.check_in(conn);
            drop(_permit);
            // Still in the writer slot: a restart runs before this process's next write.
            self.keep_wal_bounded(frames).await;
        }
    }

    /// After a commit that left the WAL `frames` long: asks the checkpointer for a passive checkpoint, or for a
    /// restart and awaits it (see the module docs). Called in the writer slot.
    async fn keep_wal_bounded(&self, frames: c_int) {
        let action = self.wal.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).after_commit(frames);
        match action {
            WalAction::Nothing => {}
            WalAction::WakeCheckpointer => {
                if !self.passive_asked.swap(true, Ordering::SeqCst) {
                    // A send fails only once the thread ended (it logged why).
                    drop(self.checkpointer.send(Checkpoint::Passive));
                }
            }
            WalAction::Restart => {
                let (done, outcome) = tokio::sync::oneshot::channel();
                let restarted = match self.checkpointer.send(Checkpoint::Restart(done)) {
                    Ok(()) => {
                        outcome.await.unwrap_or_else(|_| Err(StoreError::Backend("the checkpointer ended".into())))
                    }
                    Err(_) => Err(StoreError::Backend("the checkpointer ended".into())),
                };
                if let Err(e) = restarted {
                    tracing::debug!(path = %self.path.display(), error = %e, "WAL restart put off");
                    self.wal.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).restart_refused(frames);
                }
            }
        }
    }
}

/// The write-ahead log of the database at `path`.
pub(crate) fn wal_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

/// What the checkpointer thread is asked to do.
enum Checkpoint {
    /// Copy what it can back into the database, waiting for no one.
    Passive,
    /// Copy everything back and wait for readers to leave the WAL, so the next write starts it over; report when
    /// done.
    Restart(tokio::sync::oneshot::Sender<Result<(), StoreError>>),
}

/// Checkpoints every frame and waits (up to [`RESTART_WAIT`]) for readers to leave the WAL.
fn restart_wal(conn: &Connection) -> Result<(), StoreError> {
    let busy: i64 = conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |row| row.get(0)).ctx("restarting the WAL")?;
    match busy {
        0 => Ok(()),
        _ => Err(StoreError::Unavailable("a reader or another process's writer held the WAL".to_owned().into())),
    }
}

/// Runs the checkpoints writers ask for on its own thread and connection, so no commit copies pages back and no
/// runtime thread waits for a reader; the thread ends when the pool is dropped.
fn start_checkpointer(
    conn: Connection,
    asked: Receiver<Checkpoint>,
    passive_asked: Arc<AtomicBool>,
    path: &Path,
) -> Result<(), StoreError> {
    let path = path.to_owned();
    conn.busy_timeout(RESTART_WAIT).ctx("setting the checkpointer's busy timeout")?;
    std::thread::Builder::new()
        .name("synctrail-checkpoint".to_owned())
        .spawn(move || {
            while let Ok(checkpoint) = asked.recv() {
                match checkpoint {
                    Checkpoint::Passive => {
                        passive_asked.store(false, Ordering::SeqCst);
                        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                            tracing::debug!(path = %path.display(), error = %e, "checkpoint skipped");
                        }
                    }
                    // The writer may have stopped waiting (a dropped future): nothing to report to.
                    Checkpoint::Restart(done) => drop(done.send(restart_wal(&conn))),
                }
            }
        })
        .map(drop)
        .map_err(|e| StoreError::Backend(format!("starting the checkpoint thread: {e}").into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_quarter_of_the_budget_wakes_the_checkpointer_and_the_full_budget_restarts_the_wal() {
        let mut bounds = WalBounds::new(400 * 4096, 4096);
        let actions: Vec<WalAction> = [50, 99, 100, 150, 210, 399, 400].map(|f| bounds.after_commit(f)).into();
        use WalAction::{Nothing, Restart, WakeCheckpointer};
        assert_eq!(actions, [Nothing, Nothing, WakeCheckpointer, Nothing, WakeCheckpointer, WakeCheckpointer, Restart]);
        // Until it is done, the restart is due at every commit…
        assert_eq!(bounds.after_commit(401), Restart);
        // …but one that readers kept from finishing is tried again a quarter later.
        bounds.restart_refused(401);
        assert_eq!([420, 500, 501].map(|f| bounds.after_commit(f)), [Nothing, Nothing, Restart]);
        // The WAL started over: the marks start over with it.
        assert_eq!([3, 99, 100].map(|f| bounds.after_commit(f)), [Nothing, Nothing, WakeCheckpointer]);
        assert_eq!(bounds.after_commit(0), Nothing, "no commit, nothing to decide");
    }

    #[test]
    fn the_bundled_sqlite_is_built_without_a_shared_page_cache_group_or_memory_statistics() {
        // The workspace's .cargo/config.toml sets these (LIBSQLITE3_FLAGS): without it every page fetch takes a
        // process-wide mutex.
        let conn = Connection::open_in_memory().expect("an in-memory database");
        let used = |option: &str| -> i64 {
            conn.query_row("SELECT sqlite_compileoption_used(?1)", [option], |r| r.get(0)).expect("compile options")
        };
        assert_eq!(used("ENABLE_MEMORY_MANAGEMENT"), 0);
        assert_eq!(used("DEFAULT_MEMSTATUS=0"), 1);
        assert_eq!(used("ENABLE_FTS5"), 1, "the question is answered: the bundled build's own options are reported");
    }

    fn table(conn: &mut Connection) -> Result<(), StoreError> {
        conn.execute_batch("CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY, v BLOB NOT NULL)").ctx("table")
    }

    async fn page_size(db: &Arc<Db>) -> i64 {
        let read = |c: &mut Connection| c.query_row("PRAGMA page_size", [], |r| r.get::<_, i64>(0)).ctx("page size");
        db.run(read).await.expect("read")
    }

    #[tokio::test]
    async fn a_new_database_has_small_pages_and_an_existing_one_keeps_its_own() {
        let dir = tempfile::tempdir().expect("temp dir");
        let fresh = Db::open(&dir.path().join("fresh.db"), 2, table).expect("open");
        assert_eq!(page_size(&fresh).await, PAGE_SIZE);

        // A database made before, with SQLite's default pages, opens, writes and reads as it is.
        let older = dir.path().join("older.db");
        let conn = Connection::open(&older).expect("create");
        conn.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB NOT NULL);")
            .expect("old schema");
        drop(conn);
        let db = Db::open(&older, 2, table).expect("reopen");
        assert_eq!(page_size(&db).await, 4096);
        db.write(|tx| tx.execute("INSERT INTO t (v) VALUES (randomblob(3000))", []).ctx("insert"))
            .await
            .expect("write");
        let count = |c: &mut Connection| c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get::<_, i64>(0)).ctx("count");
        assert_eq!(db.run(count).await.expect("count"), 1);
    }

    #[tokio::test]
    async fn a_cached_statement_with_a_bound_limit_is_parsed_once_whatever_the_limit() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = Db::open(&dir.path().join("limit.db"), 2, table).expect("open");
        db.write(|tx| tx.execute("INSERT INTO t (v) SELECT x'00' FROM (SELECT 1 UNION ALL SELECT 2)", []).ctx("rows"))
            .await
            .expect("insert");
        let reprepared = db
            .run(|conn| {
                let mut stmt =
                    conn.prepare_cached("SELECT k FROM t WHERE k > ?1 ORDER BY k LIMIT ?2").ctx("prepare")?;
                for limit in [1_i64, 10, 2, 10] {
                    let rows: Vec<i64> = stmt
                        .query_map(rusqlite::params![0, limit], |r| r.get(0))
                        .ctx("query")?
                        .collect::<Result<_, _>>()
                        .ctx("rows")?;
                    assert_eq!(rows.len(), usize::try_from(limit.min(2)).expect("small"));
                }
                Ok(stmt.get_status(rusqlite::StatementStatus::RePrepare))
            })
            .await
            .expect("read");
        assert_eq!(reprepared, 0, "the statement was parsed again when its limit changed");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn the_wal_stays_within_its_budget_while_writers_and_readers_keep_it_busy() {
        const BUDGET: u64 = 128 << 10;
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("bounded.db");
        let db = Db::open_bounded(&path, 8, table, BUDGET).expect("open");
        let wal = wal_path(&path);
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let (db, wal) = (Arc::clone(&db), wal.clone());
            tasks.push(tokio::spawn(async move {
                let mut peak = 0;
                for _ in 0..400 {
                    db.write(|tx| tx.execute("INSERT INTO t (v) VALUES (randomblob(3000))", []).ctx("insert"))
                        .await
                        .expect("write");
                    peak = peak.max(std::fs::metadata(&wal).map_or(0, |m| m.len()));
                }
                peak
            }));
        }
        let reader = {
            let db = Arc::clone(&db);
            tokio::spawn(async move {
                for _ in 0..2_000 {
                    let count = |c: &mut Connection| c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get::<_, i64>(0));
                    db.run(move |c| count(c).ctx("count")).await.expect("read");
                    tokio::task::yield_now().await;
                }
            })
        };
        let mut peak = 0;
        for task in tasks {
            peak = peak.max(task.await.expect("writer"));
        }
        reader.await.expect("reader");
        let stored = |c: &mut Connection| c.query_row("SELECT SUM(length(v)) FROM t", [], |r| r.get::<_, i64>(0));
        let stored = db.run(move |c| stored(c).ctx("sum")).await.expect("sum");
        // Every byte stored went through the WAL: without restarts the WAL would be at least this long.
        assert!(stored > 16 * BUDGET as i64, "the test stored {stored} bytes, too few to mean anything");
        assert!(peak <= 4 * BUDGET, "the WAL reached {peak} bytes with a budget of {BUDGET}");
    }
}
