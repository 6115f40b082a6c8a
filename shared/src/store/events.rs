//! The event metadata and entity head port: reads, one all-or-nothing conditional commit, and writes applied one
//! after another where all-or-nothing is not needed.

use super::StoreError;
use crate::model::{EntityHead, EntityKey, EventId, EventRecord, Status};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

/// The condition a write holds on the stored item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// The item must not exist yet.
    Absent,
    /// The item must exist with this version.
    Version(u64),
}

/// One conditional write of a [`EventStore::commit`].
#[derive(Debug, Clone)]
pub enum Write {
    /// Store `record` (its `version` already the new one) if `expect` holds.
    Event {
        /// The record to store.
        record: Box<EventRecord>,
        /// The condition on the stored one.
        expect: Expect,
    },
    /// Store `head` (its `version` already the new one) if `expect` holds.
    Head {
        /// The head to store.
        head: Box<EntityHead>,
        /// The condition on the stored one.
        expect: Expect,
    },
}

impl Write {
    /// Writes `record`, bumping its version and expecting the one it had.
    pub fn event(mut record: EventRecord) -> Self {
        let expect = if record.version == 0 { Expect::Absent } else { Expect::Version(record.version) };
        record.version += 1;
        Write::Event { record: Box::new(record), expect }
    }

    /// Writes `head`, bumping its version and expecting the one it had.
    pub fn head(mut head: EntityHead) -> Self {
        let expect = if head.version == 0 { Expect::Absent } else { Expect::Version(head.version) };
        head.version += 1;
        Write::Head { head: Box::new(head), expect }
    }
}

/// A [`EventStore::commit_each`] that stopped at a write: the `applied` writes before it, from the first, are
/// stored; the one that failed is not when `error` is [`StoreError::Conflict`], and may be otherwise (a timeout);
/// the rest are not.
#[derive(Debug)]
pub struct PartialCommit {
    /// How many writes, from the first, are known stored.
    pub applied: usize,
    /// Why the next one failed.
    pub error: StoreError,
}

/// Which events to list.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    /// Only this status.
    pub status: Option<Status>,
    /// Only this source.
    pub source: Option<String>,
    /// Only this entity (then listed in order-key order).
    pub entity: Option<EntityKey>,
    /// Only events received at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only events received before this time.
    pub until: Option<DateTime<Utc>>,
    /// Only `waiting` events waiting for this dependency (an entity key); implies status `waiting`.
    pub waiting_for: Option<String>,
    /// At most this many (0 = no limit).
    pub limit: usize,
}

/// One page of entity heads, and where the next one starts.
#[derive(Debug, Clone, Default)]
pub struct HeadPage {
    /// The heads of this page.
    pub heads: Vec<EntityHead>,
    /// Where the next page starts, to pass back as `after` (opaque; `None`: this page was the last).
    pub next: Option<String>,
}

/// Event records and entity heads.
#[async_trait]
pub trait EventStore: Send + Sync {
    /// Reads one event record (strongly consistent). Its `history` holds the newer entries only when the store
    /// keeps the oldest apart (`history_apart`): what the engine's decisions need.
    async fn get_event(&self, id: &EventId) -> Result<Option<EventRecord>, StoreError>;

    /// [`EventStore::get_event`] with the whole history: the entries kept apart read back in front of the others,
    /// `history_apart` then `None` (what `synctrail show` prints). The default is for a store that keeps every entry
    /// in the record.
    async fn get_event_with_history(&self, id: &EventId) -> Result<Option<EventRecord>, StoreError> {
        self.get_event(id).await
    }

    /// Reads one entity head (strongly consistent).
    async fn get_head(&self, entity: &EntityKey) -> Result<Option<EntityHead>, StoreError>;

    /// Whether `head`, written as it is, stays within this store's size budget for a head: on DynamoDB an item of
    /// at most 1 KB, one write unit per write. The engine parks `in_order` events rather than grow a backlog past it
    /// (spec §9 "A backlog no larger than its head's budget"). A store without one: always.
    fn head_fits(&self, _head: &EntityHead) -> bool {
        true
    }

    /// Reads an event record and an entity head (both strongly consistent): what an arriving event needs first.
    /// The default reads one after the other; a backend that can read both in one request overrides it.
    async fn get_event_and_head(
        &self,
        id: &EventId,
        entity: &EntityKey,
    ) -> Result<(Option<EventRecord>, Option<EntityHead>), StoreError> {
        Ok((self.get_event(id).await?, self.get_head(entity).await?))
    }

    /// Reads ahead, for a batch of arriving events, each one's record and its entity's head (strongly consistent),
    /// in `wanted`'s order, or `None` when the backend reads nothing ahead (the default: each event reads its own
    /// with [`EventStore::get_event_and_head`] when it runs). A backend whose every read is a request (DynamoDB)
    /// reads them all in one. What is read ahead may be stale by the time an event runs: every decision commits
    /// under the versions it read, so a change meanwhile is a conflict, and the next round reads again.
    async fn read_ahead(
        &self,
        wanted: &[(EventId, EntityKey)],
    ) -> Result<Option<Vec<(Option<EventRecord>, Option<EntityHead>)>>, StoreError> {
        let _ = wanted;
        Ok(None)
    }

    /// Applies every write, or none: [`StoreError::Conflict`] when any expectation fails.
    async fn commit(&self, writes: Vec<Write>) -> Result<(), StoreError>;

    /// Applies the writes one after another, each under its own condition, stopping at the first that fails:
    /// what the caller needs when each write is safe to keep without the ones after it (a claim writes the head,
    /// then the record; a settle the record, then the head; spec §9). Cheaper than [`EventStore::commit`] where a
    /// backend bills a transaction extra (DynamoDB bills every item of one twice). The default commits them all
    /// or none, which meets this contract (a failure then reports none applied).
    async fn commit_each(&self, writes: Vec<Write>) -> Result<(), PartialCommit> {
        self.commit(writes).await.map_err(|error| PartialCommit { applied: 0, error })
    }

    /// Lists events: for one entity in order-key order, otherwise newest received first.
    ///
    /// A record becomes `processing` only once the head names it in flight (with it, or right after it: spec §4,
    /// step 4), and leaves `processing` before (or with) the head moving on; an `errored` record is its attempt's
    /// end, written while the head still names it, which keeps naming it until the record leaves `errored`: a
    /// backend may find `processing` and `errored` events through the heads in flight (the DynamoDB store does).
    async fn list_events(&self, query: &EventQuery) -> Result<Vec<EventRecord>, StoreError>;

    /// Up to `limit` (0 = all) events of `entity` parked outside its head (`queued` with [`EventRecord::parked`]
    /// set; spec §5), in the order `list_events` lists an entity's events (order key, then received time, then id).
    /// The default lists the entity's `queued` events and keeps the parked ones; a backend with an index of parked
    /// events overrides it, so that finding them costs what is parked, not the entity's whole history.
    async fn parked_events(&self, entity: &EntityKey, limit: usize) -> Result<Vec<EventRecord>, StoreError> {
        let query = EventQuery { entity: Some(entity.clone()), status: Some(Status::Queued), ..EventQuery::default() };
        let mut parked: Vec<EventRecord> = self.list_events(&query).await?.into_iter().filter(|r| r.parked).collect();
        if limit > 0 {
            parked.truncate(limit);
        }
        Ok(parked)
    }

    /// How many events `query` selects, its limit aside. The default lists them all; a backend that can count
    /// without reading the records overrides it.
    async fn count_events(&self, query: &EventQuery) -> Result<u64, StoreError> {
        let all = EventQuery { limit: 0, ..query.clone() };
        Ok(self.list_events(&all).await?.len() as u64)
    }

    /// How many events are in each status.
    async fn count_by_status(&self) -> Result<BTreeMap<Status, u64>, StoreError>;

    /// Heads whose in-flight lease ended before `before`, oldest lease first.
    async fn expired_leases(&self, before: DateTime<Utc>, limit: usize) -> Result<Vec<EntityHead>, StoreError>;

    /// How many heads have an event in flight.
    async fn count_inflight(&self) -> Result<u64, StoreError>;

    /// Every entity's head, one page of at most about `limit` at a time, starting `after` a page's
    /// [`HeadPage::next`] (`None`: from the start): what `verify --all` and `reconcile` walk. The default says this
    /// store can't list heads.
    async fn list_heads(&self, after: Option<&str>, limit: usize) -> Result<HeadPage, StoreError> {
        let _ = (after, limit);
        Err(StoreError::Backend("this event store can't list entity heads (it does not implement list_heads)".into()))
    }

    /// Up to `limit` (0 = all) heads flagged `needs_verification` (an `in_order` event applied out of order, spec
    /// §5): what the sweeper verifies. The default walks [`EventStore::list_heads`]; a backend with an index
    /// overrides it.
    async fn heads_to_verify(&self, limit: usize) -> Result<Vec<EntityHead>, StoreError> {
        let mut found = Vec::new();
        let mut after = None;
        loop {
            let page = self.list_heads(after.as_deref(), 500).await?;
            found.extend(page.heads.into_iter().filter(|h| h.needs_verification));
            let full = limit > 0 && found.len() >= limit;
            if full || page.next.is_none() {
                if limit > 0 {
                    found.truncate(limit);
                }
                return Ok(found);
            }
            after = page.next;
        }
    }
}
