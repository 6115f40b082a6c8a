//! Group commit: concurrent write transactions of one process share one SQLite commit.
//!
//! SQLite admits one writer at a time, and a commit's cost is mostly writing pages to the WAL. So each writer
//! queues its work as a job; whoever gets the writer slot runs every queued job in one `BEGIN IMMEDIATE`
//! transaction, commits once, and only then reports each job's result. To every caller this is its own
//! transaction: serialized, all-or-nothing, durable when it returns.
//!
//! A job that fails must leave no trace while the others commit. Savepoints do that, but each one makes SQLite copy
//! every page the job touches into a sub-journal first. Almost every job succeeds, so the group runs optimistically
//! without them. A job that fails having changed no row (a compare-and-set that found another version, a delete
//! whose receipt handle went stale: the usual failures) left the transaction as it found it, and the group goes on
//! without it. Only when a failed job had changed rows (or its error ended the transaction) is the whole transaction
//! rolled back (nothing of it was committed) and the group run again, each job in its own savepoint, and the results
//! of that second run are the ones reported.

use super::codec::Cached;
use super::error::SqlContext;
use crate::store::StoreError;
use rusqlite::{Connection, Transaction, TransactionBehavior};

/// A queued write: may run more than once (a run whose transaction was rolled back counts for nothing); keeps the
/// result of its last run and reports it once the group's commit is known.
pub(crate) trait Job: Send {
    /// Runs the write inside the group's transaction and says whether it succeeded.
    fn run(&mut self, tx: &Transaction<'_>) -> bool;
    /// Reports the last run's result, or the commit's failure.
    fn finish(self: Box<Self>, commit: Result<(), &StoreError>);
}

/// The most jobs one commit carries.
pub(crate) const MAX_GROUP: usize = 64;

/// A write `f` and where its result goes.
struct Queued<T, F> {
    f: F,
    result: Option<Result<T, StoreError>>,
    sender: tokio::sync::oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> Job for Queued<T, F>
where
    F: FnMut(&Transaction<'_>) -> Result<T, StoreError> + Send,
    T: Send,
{
    fn run(&mut self, tx: &Transaction<'_>) -> bool {
        let result = (self.f)(tx);
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn finish(self: Box<Self>, commit: Result<(), &StoreError>) {
        let outcome = match (self.result, commit) {
            (None, Err(e)) | (Some(Ok(_)), Err(e)) => Err(e.clone()),
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(value)), Ok(())) => Ok(value),
            (None, Ok(())) => Err(StoreError::Backend("a grouped write was committed without running".into())),
        };
        // The caller may have stopped waiting (a dropped future): nothing to report to.
        let _ = self.sender.send(outcome);
    }
}

/// Wraps `f` as a job whose result arrives on the returned channel after the commit.
pub(crate) fn job<T, F>(f: F) -> (Box<dyn Job>, tokio::sync::oneshot::Receiver<Result<T, StoreError>>)
where
    F: FnMut(&Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    T: Send + 'static,
{
    let (sender, receiver) = tokio::sync::oneshot::channel();
    (Box::new(Queued { f, result: None, sender }), receiver)
}

/// Runs `jobs` in one transaction on `conn` (see the module docs), then reports every result.
pub(crate) fn run(conn: &mut Connection, mut jobs: Vec<Box<dyn Job>>) {
    let committed = match optimistic(conn, &mut jobs) {
        Ok(true) => Ok(()),
        Ok(false) => each_in_a_savepoint(conn, &mut jobs),
        Err(e) => Err(e),
    };
    for job in jobs {
        job.finish(committed.as_ref().map(|_| ()));
    }
}

/// Runs every job without savepoints and commits (`true`) if each succeeded or failed without a trace; rolls back at
/// the first failure that left one (`false`).
fn optimistic(conn: &mut Connection, jobs: &mut [Box<dyn Job>]) -> Result<bool, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).ctx("starting a write transaction")?;
    for job in jobs.iter_mut() {
        // SQLite counts the rows of each statement that completed; a statement that failed was undone and adds none.
        let changed_before = tx.total_changes();
        if !job.run(&tx) && (tx.total_changes() != changed_before || tx.is_autocommit()) {
            // Rolled back, unless the error already ended the transaction.
            tx.finish().ctx("rolling a failed group back")?;
            return Ok(false);
        }
    }
    tx.commit().ctx("committing")?;
    Ok(true)
}

/// Runs every job in its own savepoint (a failed one is rolled back alone) and commits.
fn each_in_a_savepoint(conn: &mut Connection, jobs: &mut [Box<dyn Job>]) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).ctx("starting a write transaction")?;
    for job in jobs.iter_mut() {
        tx.exec("SAVEPOINT job", []).ctx("starting a savepoint")?;
        if !job.run(&tx) {
            tx.exec("ROLLBACK TO job", []).ctx("rolling a failed write back")?;
        }
        tx.exec("RELEASE job", []).ctx("releasing a savepoint")?;
    }
    tx.commit().ctx("committing")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> Connection {
        let conn = Connection::open_in_memory().expect("in-memory database");
        conn.execute_batch("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL)").expect("table");
        conn
    }

    fn insert(k: i64, v: &'static str) -> impl FnMut(&Transaction<'_>) -> Result<(), StoreError> + Send + 'static {
        move |tx| tx.exec("INSERT INTO t (k, v) VALUES (?1, ?2)", rusqlite::params![k, v]).ctx("insert").map(drop)
    }

    fn rows(conn: &Connection) -> Vec<(i64, String)> {
        let mut stmt = conn.prepare("SELECT k, v FROM t ORDER BY k").expect("select");
        let rows = stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?))).expect("rows");
        rows.collect::<Result<_, _>>().expect("rows")
    }

    #[test]
    fn a_job_failing_in_the_middle_of_a_group_is_rolled_back_alone_and_the_others_commit() {
        let mut conn = open();
        let (first, first_result) = job(insert(1, "first"));
        // Writes a row, then fails: its row must not survive.
        let (failing, failing_result) = job(|tx: &Transaction<'_>| -> Result<(), StoreError> {
            tx.exec("INSERT INTO t (k, v) VALUES (2, 'half-done')", []).ctx("insert")?;
            Err(StoreError::Conflict("expected version 3, found version 4".into()))
        });
        let (last, last_result) = job(insert(3, "last"));
        run(&mut conn, vec![first, failing, last]);

        assert_eq!(rows(&conn), [(1, "first".to_owned()), (3, "last".to_owned())]);
        assert!(first_result.blocking_recv().expect("reported").is_ok());
        assert!(matches!(failing_result.blocking_recv().expect("reported"), Err(StoreError::Conflict(_))));
        assert!(last_result.blocking_recv().expect("reported").is_ok());
    }

    #[test]
    fn the_optimistic_run_is_rolled_back_whole_before_the_group_runs_again() {
        let mut conn = open();
        // Counts its runs and succeeds only once the table holds no row of its own: a job whose first run's
        // writes leaked into the second would fail there.
        let mut runs = 0;
        let (counting, counting_result) = job(move |tx: &Transaction<'_>| -> Result<u32, StoreError> {
            runs += 1;
            let mine: i64 = tx.one("SELECT COUNT(*) FROM t WHERE k = 10", [], |row| row.get(0)).ctx("count")?;
            if mine > 0 {
                return Err(StoreError::Backend("an earlier run's row survived".into()));
            }
            tx.exec("INSERT INTO t (k, v) VALUES (10, 'counted')", []).ctx("insert")?;
            Ok(runs)
        });
        // Changes a row, then fails: the optimistic run can't go on past it.
        let (failing, failing_result) = job(|tx: &Transaction<'_>| -> Result<(), StoreError> {
            tx.exec("INSERT INTO t (k, v) VALUES (11, 'half-done')", []).ctx("insert")?;
            Err(StoreError::NotFound("receipt handle".into()))
        });
        run(&mut conn, vec![counting, failing]);

        assert_eq!(rows(&conn), [(10, "counted".to_owned())]);
        let runs = counting_result.blocking_recv().expect("reported").expect("the first job commits");
        assert_eq!(runs, 2, "the group ran twice: optimistically, then each job in a savepoint");
        assert!(matches!(failing_result.blocking_recv().expect("reported"), Err(StoreError::NotFound(_))));
    }

    /// A job that counts its runs and inserts row `k`.
    fn counted(k: i64) -> impl FnMut(&Transaction<'_>) -> Result<u32, StoreError> + Send + 'static {
        let mut runs = 0;
        move |tx| {
            runs += 1;
            tx.exec("INSERT INTO t (k, v) VALUES (?1, 'counted')", [k]).ctx("insert")?;
            Ok(runs)
        }
    }

    #[test]
    fn a_job_failing_without_changing_a_row_is_left_out_and_the_group_commits_in_one_run() {
        let mut conn = open();
        conn.execute_batch("INSERT INTO t (k, v) VALUES (5, 'version 4')").expect("a row");
        let (before, before_result) = job(counted(1));
        // A compare-and-set that finds another version: its update changes nothing, then it fails.
        let (stale, stale_result) = job(|tx: &Transaction<'_>| -> Result<(), StoreError> {
            let changed = tx.exec("UPDATE t SET v = 'version 4' WHERE k = 5 AND v = 'version 3'", []).ctx("update")?;
            assert_eq!(changed, 0);
            Err(StoreError::Conflict("expected version 3, found version 4".into()))
        });
        // A statement that failed (a duplicate key) was undone by SQLite and changed nothing either.
        let (duplicate, duplicate_result) = job(|tx: &Transaction<'_>| -> Result<(), StoreError> {
            tx.exec("INSERT INTO t (k, v) VALUES (5, 'again')", []).ctx("insert").map(drop)
        });
        let (after, after_result) = job(counted(2));
        run(&mut conn, vec![before, stale, duplicate, after]);

        let expected = [(1, "counted"), (2, "counted"), (5, "version 4")].map(|(k, v)| (k, v.to_owned()));
        assert_eq!(rows(&conn), expected);
        assert_eq!(before_result.blocking_recv().expect("reported").expect("committed"), 1, "ran once");
        assert_eq!(after_result.blocking_recv().expect("reported").expect("committed"), 1, "ran once");
        assert!(matches!(stale_result.blocking_recv().expect("reported"), Err(StoreError::Conflict(_))));
        assert!(duplicate_result.blocking_recv().expect("reported").is_err());
    }

    #[test]
    fn a_job_whose_error_ended_the_transaction_makes_the_group_run_again_in_savepoints() {
        let mut conn = open();
        let (before, before_result) = job(counted(1));
        // Ends the transaction the way an I/O error can; the later jobs must not run outside of it.
        let mut ended = false;
        let (ending, ending_result) = job(move |tx: &Transaction<'_>| -> Result<(), StoreError> {
            if !ended {
                ended = true;
                tx.exec("ROLLBACK", []).ctx("rollback")?;
            }
            Err(StoreError::Unavailable("disk I/O error".into()))
        });
        let (after, after_result) = job(counted(2));
        run(&mut conn, vec![before, ending, after]);

        assert_eq!(rows(&conn), [(1, "counted".to_owned()), (2, "counted".to_owned())]);
        assert_eq!(before_result.blocking_recv().expect("reported").expect("committed"), 2, "ran again");
        assert_eq!(after_result.blocking_recv().expect("reported").expect("committed"), 1, "ran in the savepoints");
        assert!(matches!(ending_result.blocking_recv().expect("reported"), Err(StoreError::Unavailable(_))));
    }

    #[test]
    fn a_group_that_succeeds_runs_each_job_once_and_commits_all() {
        let mut conn = open();
        let mut runs = 0;
        let (counting, counting_result) = job(move |tx: &Transaction<'_>| -> Result<u32, StoreError> {
            runs += 1;
            tx.exec("INSERT INTO t (k, v) VALUES (1, 'one')", []).ctx("insert")?;
            Ok(runs)
        });
        let (other, other_result) = job(insert(2, "two"));
        run(&mut conn, vec![counting, other]);

        assert_eq!(rows(&conn).len(), 2);
        assert_eq!(counting_result.blocking_recv().expect("reported").expect("committed"), 1);
        assert!(other_result.blocking_recv().expect("reported").is_ok());
    }
}
