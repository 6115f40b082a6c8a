//! [`SqliteQueue`]: an SQS-like queue with visibility timeouts, receive counts and a dead-letter queue.

use super::codec::{after, nanos, random_id, time, time_ordered_id, uint, Cached};
use super::db::{wal_path, Db};
use super::error::SqlContext;
use super::wal_watch::{Armed, WalWatch};
use crate::clock::Clock;
use crate::store::{OutgoingMessage, Queue, QueueDepth, QueueMessage, StoreError, RECEIVE_RECHECK};
use async_trait::async_trait;
use chrono::Duration;
use rusqlite::{params, Row};
use std::collections::HashSet;
use std::sync::{Arc, OnceLock};
use tokio::sync::Notify;
use tokio::time::Instant;

/// The embedded [`Queue`]: table `queue` in `synctrail.db`; dead letters are rows with `dead = 1`.
pub struct SqliteQueue {
    db: Arc<Db>,
    clock: Arc<dyn Clock>,
    max_receives: u32,
    /// Wakes the receives waiting in this process when a message may have become visible (see
    /// [`Queue::receive_waiting`]).
    arrivals: Arc<Notify>,
    /// Ends the receives waiting in this process ([`Queue::end_waits`]).
    waits_ended: Notify,
    /// The watch on the database's log that wakes them when another process commits, readied by the first wait and
    /// armed while a receive waits; `None` where there is none (see [`WalWatch`]).
    others: OnceLock<Option<WalWatch>>,
}

const COLUMNS: &str = "seq, message_id, body, trace_header, sent_at, receive_count, first_received_at, receipt_handle";

/// One stored message.
struct Stored {
    seq: i64,
    message_id: String,
    body: String,
    trace_header: Option<String>,
    sent_at: i64,
    receive_count: u32,
    first_received_at: Option<i64>,
    receipt_handle: Option<String>,
}

impl Stored {
    fn from_row(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            seq: row.get(0)?,
            message_id: row.get(1)?,
            body: row.get(2)?,
            trace_header: row.get(3)?,
            sent_at: row.get(4)?,
            receive_count: u32::try_from(row.get::<_, i64>(5)?).unwrap_or(u32::MAX),
            first_received_at: row.get(6)?,
            receipt_handle: row.get(7)?,
        })
    }

    fn into_message(self) -> QueueMessage {
        QueueMessage {
            message_id: self.message_id,
            receipt_handle: self.receipt_handle.unwrap_or_default(),
            body: self.body,
            receive_count: self.receive_count,
            sent_at: time(self.sent_at),
            first_received_at: time(self.first_received_at.unwrap_or(self.sent_at)),
            trace_header: self.trace_header,
        }
    }
}

/// The message id a receipt handle (`message_id:random`) belongs to.
fn message_of(handle: &str) -> &str {
    handle.split_once(':').map_or(handle, |(id, _)| id)
}

impl SqliteQueue {
    pub(crate) fn new(db: Arc<Db>, clock: Arc<dyn Clock>, max_receives: u32) -> Self {
        Self {
            db,
            clock,
            max_receives,
            arrivals: Arc::new(Notify::new()),
            waits_ended: Notify::new(),
            others: OnceLock::new(),
        }
    }

    /// Tells the receives waiting in this process that a message may be visible now.
    fn announce(&self) {
        self.arrivals.notify_waiters();
    }

    /// The watch on the database's log, readied by the first receive that waits; `None` where there is none.
    fn watch(&self) -> Option<&WalWatch> {
        self.others.get_or_init(|| WalWatch::start(&wal_path(self.db.path()), Arc::downgrade(&self.arrivals))).as_ref()
    }

    /// How long until the next message of the queue (dead letters aside) is visible, by the queue's clock: zero
    /// when one is visible now, `None` when the queue is empty. One index lookup, no write.
    async fn next_visible_in(&self) -> Result<Option<std::time::Duration>, StoreError> {
        let clock = Arc::clone(&self.clock);
        self.db
            .run(move |conn| {
                let what = "finding the next visible message";
                let next: Option<i64> =
                    conn.one("SELECT MIN(visible_at) FROM queue WHERE dead = 0", [], |row| row.get(0)).ctx(what)?;
                let now = nanos(clock.now())?;
                Ok(next.map(|at| std::time::Duration::from_nanos(u64::try_from(at.saturating_sub(now)).unwrap_or(0))))
            })
            .await
    }

    /// Updates the live message holding `handle` as its current receipt; a stale handle → `NotFound`.
    async fn update_by_handle(&self, handle: &str, sql: &'static str, by: Duration) -> Result<(), StoreError> {
        let handle = handle.to_owned();
        let clock = Arc::clone(&self.clock);
        self.db
            .write(move |tx| {
                let at = after(nanos(clock.now())?, by);
                let changed = tx.exec(sql, params![message_of(&handle), handle, at]).ctx("updating a message")?;
                if changed == 0 {
                    return Err(StoreError::NotFound(
                        format!(
                            "receipt handle {handle}: the message was deleted, dead-lettered or received again since"
                        )
                        .into(),
                    ));
                }
                Ok(())
            })
            .await
    }

    /// Runs `sql` (`?1` message id, `?2` receipt handle) once per dead letter's receipt handle, in one
    /// transaction; a handle that matches no dead letter changes nothing.
    async fn by_dead_letter_handles(
        &self,
        receipt_handles: &[String],
        sql: &'static str,
        what: &'static str,
    ) -> Result<(), StoreError> {
        if receipt_handles.is_empty() {
            return Ok(());
        }
        let handles = receipt_handles.to_vec();
        self.db
            .write(move |tx| {
                let mut stmt = tx.prepare_cached(sql).ctx(what)?;
                for handle in &handles {
                    stmt.execute(params![message_of(handle), handle]).ctx(what)?;
                }
                Ok(())
            })
            .await
    }

    /// Lists the dead-letter queue, oldest dead letter first (0 = no limit).
    pub async fn dead_letter_messages(&self, limit: usize) -> Result<Vec<QueueMessage>, StoreError> {
        let limit = if limit == 0 { -1 } else { i64::try_from(limit).unwrap_or(i64::MAX) };
        self.db
            .run(move |conn| {
                let what = "listing dead letters";
                let sql = format!("SELECT {COLUMNS} FROM queue WHERE dead = 1 ORDER BY dead_at, seq LIMIT ?1");
                let mut stmt = conn.prepare_cached(&sql).ctx(what)?;
                let rows = stmt.query_map([limit], Stored::from_row).ctx(what)?;
                rows.map(|row| row.map(Stored::into_message)).collect::<Result<Vec<_>, _>>().ctx(what)
            })
            .await
    }

    /// Moves up to `limit` dead letters (0 = all) back to the queue, visible now with a fresh receive count, like
    /// SQS's `StartMessageMoveTask`; returns how many moved.
    pub async fn redrive_dead_letters(&self, limit: usize) -> Result<u64, StoreError> {
        let limit = if limit == 0 { -1 } else { i64::try_from(limit).unwrap_or(i64::MAX) };
        let clock = Arc::clone(&self.clock);
        let moved = self
            .db
            .write(move |tx| {
                let now = nanos(clock.now())?;
                let moved = tx
                    .exec(
                        "UPDATE queue SET dead = 0, dead_at = NULL, receive_count = 0, receipt_handle = NULL,
                             visible_at = ?1
                         WHERE seq IN (SELECT seq FROM queue WHERE dead = 1 ORDER BY dead_at, seq LIMIT ?2)",
                        params![now, limit],
                    )
                    .ctx("redriving dead letters")?;
                Ok(moved as u64)
            })
            .await?;
        self.announce();
        Ok(moved)
    }

    /// Deletes every message not in the dead-letter queue (like SQS `PurgeQueue` on the source queue); returns
    /// how many.
    pub async fn purge(&self) -> Result<u64, StoreError> {
        self.db.write(|tx| Ok(tx.exec("DELETE FROM queue WHERE dead = 0", []).ctx("purging the queue")? as u64)).await
    }
}

#[async_trait]
impl Queue for SqliteQueue {
    async fn send_to(&self, queue: &str, _: Vec<OutgoingMessage>) -> Result<Vec<String>, StoreError> {
        Err(StoreError::Backend(
            format!(
                "the embedded backend has one queue, so nothing can be sent to {queue}; routing re-drives to other \
                 processors' queues (SYNCTRAIL_REDRIVE_QUEUES) needs the AWS backend"
            )
            .into(),
        ))
    }

    async fn send(&self, messages: Vec<OutgoingMessage>) -> Result<Vec<String>, StoreError> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let clock = Arc::clone(&self.clock);
        let ids = self
            .db
            .write(move |tx| {
                let now = nanos(clock.now())?;
                let mut stmt = tx
                    .prepare_cached(
                        "INSERT INTO queue (message_id, body, trace_header, sent_at, visible_at, receive_count)
                         VALUES (?1, ?2, ?3, ?4, ?5, 0)",
                    )
                    .ctx("sending messages")?;
                let mut ids = Vec::with_capacity(messages.len());
                for message in &messages {
                    let id = time_ordered_id(now);
                    let visible_at = after(now, message.delay);
                    stmt.execute(params![id, message.body, message.trace_header, now, visible_at])
                        .ctx("sending a message")?;
                    ids.push(id);
                }
                Ok(ids)
            })
            .await?;
        self.announce();
        Ok(ids)
    }

    async fn receive(&self, max: usize, visibility: Duration) -> Result<Vec<QueueMessage>, StoreError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let clock = Arc::clone(&self.clock);
        let max_receives = self.max_receives;
        self.db
            .write(move |tx| {
                let what = "receiving messages";
                let now = nanos(clock.now())?;
                let hidden_until = after(now, visibility);
                let sql = format!(
                    "SELECT {COLUMNS} FROM queue WHERE dead = 0 AND visible_at <= ?1 ORDER BY visible_at, seq LIMIT ?2"
                );
                let mut out: Vec<QueueMessage> = Vec::new();
                let mut delivered = HashSet::new();
                loop {
                    let want = i64::try_from(max - out.len()).unwrap_or(i64::MAX);
                    let rows = {
                        let mut stmt = tx.prepare_cached(&sql).ctx(what)?;
                        let rows = stmt.query_map(params![now, want], Stored::from_row).ctx(what)?;
                        rows.collect::<Result<Vec<_>, _>>().ctx(what)?
                    };
                    let mut dead_lettered = false;
                    for mut row in rows {
                        if delivered.contains(&row.seq) {
                            continue; // received in this very call, visible again (zero visibility)
                        }
                        if row.receive_count >= max_receives {
                            // Like an SQS redrive policy: delivered at most max_receives times.
                            tx.exec(
                                "UPDATE queue SET dead = 1, dead_at = ?2, visible_at = ?2 WHERE seq = ?1",
                                params![row.seq, now],
                            )
                            .ctx("dead-lettering a message")?;
                            dead_lettered = true;
                            continue;
                        }
                        row.receive_count += 1;
                        row.first_received_at = Some(row.first_received_at.unwrap_or(now));
                        let handle = format!("{}:{}", row.message_id, random_id());
                        tx.exec(
                            "UPDATE queue SET receive_count = ?2, first_received_at = ?3, receipt_handle = ?4,
                                 visible_at = ?5
                             WHERE seq = ?1",
                            params![row.seq, row.receive_count, row.first_received_at, handle, hidden_until],
                        )
                        .ctx("hiding a received message")?;
                        row.receipt_handle = Some(handle);
                        delivered.insert(row.seq);
                        out.push(row.into_message());
                    }
                    if !dead_lettered || out.len() >= max {
                        return Ok(out);
                    }
                }
            })
            .await
    }

    /// Woken at once by what this process does (a send, a visibility change, dead letters moved back), when the
    /// next message's visibility ends, and (on Linux) when another process commits to the database ([`WalWatch`]);
    /// each wake costs one index lookup, and a receive (a write) runs only when something may be visible. Without
    /// the watch, another process's send is looked for every [`RECEIVE_RECHECK`]. A clock moved by hand is noticed
    /// at the next wake.
    async fn receive_waiting(
        &self,
        max: usize,
        visibility: Duration,
        wait: std::time::Duration,
    ) -> Result<Vec<QueueMessage>, StoreError> {
        let until = Instant::now() + wait;
        // Registered before anything else, so that ending the waits under way ends this one whatever it is doing.
        let ended = self.waits_ended.notified();
        tokio::pin!(ended);
        ended.as_mut().enable();
        // Armed once the first look finds nothing (receives from a busy queue never arm it), before the lookup
        // below, so a commit between that look and the arming is not missed.
        let mut armed: Option<Option<Armed<'_>>> = None;
        let mut look = true;
        loop {
            let announced = self.arrivals.notified();
            tokio::pin!(announced);
            // Registered before looking, so an announcement after the look is not missed.
            announced.as_mut().enable();
            if look {
                let received = self.receive(max, visibility).await?;
                if !received.is_empty() || max == 0 {
                    return Ok(received);
                }
            }
            let now = Instant::now();
            if now >= until {
                return Ok(Vec::new());
            }
            if armed.is_none() {
                armed = Some(self.watch().and_then(WalWatch::arm));
            }
            let live = armed.as_ref().and_then(Option::as_ref).is_some_and(Armed::is_live);
            let recheck = if live { wait } else { RECEIVE_RECHECK };
            let next = self.next_visible_in().await?;
            if next.is_some_and(|in_| in_.is_zero()) {
                look = true;
                continue;
            }
            let nap = next.map_or(recheck, |in_| in_.min(recheck)).min(until - now);
            look = tokio::select! {
                biased;
                () = ended.as_mut() => return Ok(Vec::new()),
                () = announced.as_mut() => true,
                () = tokio::time::sleep(nap) => next.is_some_and(|in_| in_ <= nap),
            };
        }
    }

    fn end_waits(&self) {
        self.waits_ended.notify_waiters();
    }

    async fn delete(&self, receipt_handles: &[String]) -> Result<(), StoreError> {
        if receipt_handles.is_empty() {
            return Ok(());
        }
        let handles = receipt_handles.to_vec();
        self.db
            .write(move |tx| {
                let mut stmt = tx
                    .prepare_cached("DELETE FROM queue WHERE message_id = ?1 AND receipt_handle = ?2 AND dead = 0")
                    .ctx("deleting messages")?;
                for handle in &handles {
                    // A stale handle matches no row: nothing to delete, as in SQS.
                    stmt.execute(params![message_of(handle), handle]).ctx("deleting a message")?;
                }
                Ok(())
            })
            .await
    }

    async fn change_visibility(&self, receipt_handle: &str, timeout: Duration) -> Result<(), StoreError> {
        self.update_by_handle(
            receipt_handle,
            "UPDATE queue SET visible_at = ?3 WHERE message_id = ?1 AND receipt_handle = ?2 AND dead = 0",
            timeout,
        )
        .await?;
        self.announce();
        Ok(())
    }

    async fn dead_letter(&self, receipt_handle: &str, _body: &str, _trace: Option<&str>) -> Result<(), StoreError> {
        self.update_by_handle(
            receipt_handle,
            "UPDATE queue SET dead = 1, dead_at = ?3, visible_at = ?3
             WHERE message_id = ?1 AND receipt_handle = ?2 AND dead = 0",
            Duration::zero(),
        )
        .await
    }

    async fn receive_dead_letters(&self, max: usize, visibility: Duration) -> Result<Vec<QueueMessage>, StoreError> {
        let clock = Arc::clone(&self.clock);
        let limit = i64::try_from(max).unwrap_or(i64::MAX);
        self.db
            .write(move |tx| {
                let what = "receiving dead letters";
                let now = nanos(clock.now())?;
                let hidden_until = after(now, visibility);
                let sql = format!(
                    "SELECT {COLUMNS} FROM queue WHERE dead = 1 AND visible_at <= ?1 ORDER BY dead_at, seq LIMIT ?2"
                );
                let rows: Vec<Stored> = {
                    let mut stmt = tx.prepare_cached(&sql).ctx(what)?;
                    let rows = stmt.query_map(params![now, limit], Stored::from_row).ctx(what)?;
                    rows.collect::<Result<_, _>>().ctx(what)?
                };
                let mut out = Vec::with_capacity(rows.len());
                for mut row in rows {
                    let handle = format!("{}:{}", row.message_id, random_id());
                    tx.exec(
                        "UPDATE queue SET receipt_handle = ?2, visible_at = ?3 WHERE seq = ?1",
                        params![row.seq, handle, hidden_until],
                    )
                    .ctx(what)?;
                    row.receipt_handle = Some(handle);
                    out.push(row.into_message());
                }
                Ok(out)
            })
            .await
    }

    async fn release_dead_letters(&self, receipt_handles: &[String]) -> Result<(), StoreError> {
        self.by_dead_letter_handles(
            receipt_handles,
            // Visible again since it was dead-lettered, so at once.
            "UPDATE queue SET visible_at = dead_at WHERE message_id = ?1 AND receipt_handle = ?2 AND dead = 1",
            "releasing dead letters",
        )
        .await
    }

    async fn delete_dead_letters(&self, receipt_handles: &[String]) -> Result<(), StoreError> {
        self.by_dead_letter_handles(
            receipt_handles,
            "DELETE FROM queue WHERE message_id = ?1 AND receipt_handle = ?2 AND dead = 1",
            "deleting dead letters",
        )
        .await
    }

    async fn return_dead_letters(&self, messages: &[QueueMessage]) -> Result<(), StoreError> {
        let handles: Vec<String> = messages.iter().map(|m| m.receipt_handle.clone()).collect();
        let clock = Arc::clone(&self.clock);
        self.db
            .write(move |tx| {
                let now = nanos(clock.now())?;
                let mut stmt = tx
                    .prepare_cached(
                        "UPDATE queue SET dead = 0, dead_at = NULL, receive_count = 0, first_received_at = NULL,
                             receipt_handle = NULL, visible_at = ?3
                         WHERE message_id = ?1 AND receipt_handle = ?2 AND dead = 1",
                    )
                    .ctx("returning dead letters")?;
                for handle in &handles {
                    stmt.execute(params![message_of(handle), handle, now]).ctx("returning a dead letter")?;
                }
                Ok(())
            })
            .await?;
        self.announce();
        Ok(())
    }

    async fn depth(&self) -> Result<QueueDepth, StoreError> {
        let clock = Arc::clone(&self.clock);
        self.db
            .run(move |conn| {
                let what = "measuring the queue";
                let now = nanos(clock.now())?;
                let (visible, in_flight, delayed, dead_letters, oldest): (i64, i64, i64, i64, Option<i64>) = conn
                    .one(
                        "SELECT COALESCE(SUM(dead = 0 AND visible_at <= ?1), 0),
                                COALESCE(SUM(dead = 0 AND visible_at > ?1 AND receive_count > 0), 0),
                                COALESCE(SUM(dead = 0 AND visible_at > ?1 AND receive_count = 0), 0),
                                COALESCE(SUM(dead = 1), 0),
                                MIN(CASE WHEN dead = 0 THEN sent_at END)
                         FROM queue",
                        [now],
                        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?)),
                    )
                    .ctx(what)?;
                let (visible, in_flight, delayed, dead_letters) =
                    (uint(visible, what)?, uint(in_flight, what)?, uint(delayed, what)?, uint(dead_letters, what)?);
                Ok(QueueDepth { visible, in_flight, delayed, dead_letters, oldest_sent_at: oldest.map(time) })
            })
            .await
    }

    fn max_receives(&self) -> u32 {
        self.max_receives
    }
}
