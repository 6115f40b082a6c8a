//! Group commit: concurrent write transactions of one process share one SQLite commit.
//!
//! SQLite admits one writer at a time, and a commit's cost is mostly writing pages to the WAL. So each writer
//! queues its work as a job; whoever gets the writer slot runs every queued job in one `BEGIN IMMEDIATE`
//! transaction, each inside its own savepoint (a failing job is rolled back alone), commits once, and only then
//! reports each job's result. To every caller this is its own transaction: serialized, all-or-nothing, durable
//! when it returns.

use super::error::SqlContext;
use crate::store::StoreError;
use rusqlite::{Connection, Transaction, TransactionBehavior};

/// Reports a job's result once the group's commit is known.
pub(crate) type Finish = Box<dyn FnOnce(Result<(), &StoreError>) + Send>;
/// A queued write: runs inside the group's transaction, says whether it succeeded, and how to report.
pub(crate) type Job = Box<dyn FnOnce(&Transaction<'_>) -> (bool, Finish) + Send>;

/// The most jobs one commit carries.
pub(crate) const MAX_GROUP: usize = 64;

/// Wraps `f` as a job whose result arrives on the returned channel after the commit.
pub(crate) fn job<T, F>(f: F) -> (Job, tokio::sync::oneshot::Receiver<Result<T, StoreError>>)
where
    F: FnOnce(&Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    T: Send + 'static,
{
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move |tx| {
        let result = f(tx);
        let ok = result.is_ok();
        let finish: Finish = Box::new(move |commit| {
            let outcome = match (result, commit) {
                (Err(e), _) => Err(e),
                (Ok(_), Err(e)) => Err(e.clone()),
                (Ok(value), Ok(())) => Ok(value),
            };
            // The caller may have stopped waiting (a dropped future): nothing to report to.
            let _ = sender.send(outcome);
        });
        (ok, finish)
    });
    (job, receiver)
}

/// Runs `jobs` in one transaction on `conn`, each in a savepoint, then reports every result.
pub(crate) fn run(conn: &mut Connection, jobs: Vec<Job>) {
    let mut finishes = Vec::with_capacity(jobs.len());
    let committed = (|| {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).ctx("starting a write transaction")?;
        for job in jobs {
            tx.execute_batch("SAVEPOINT job").ctx("starting a savepoint")?;
            let (ok, finish) = job(&tx);
            finishes.push(finish);
            if !ok {
                tx.execute_batch("ROLLBACK TO job").ctx("rolling a failed write back")?;
            }
            tx.execute_batch("RELEASE job").ctx("releasing a savepoint")?;
        }
        tx.commit().ctx("committing")
    })();
    for finish in finishes {
        finish(committed.as_ref().map(|_| ()));
    }
}
