//! [`DynamoStore`]: event records and entity heads in one DynamoDB table.
//!
//! # Table design
//!
//! One table, key `pk` (S, partition) + `sk` (S, sort), on-demand billing, TTL on `ttl`.
//!
//! | item  | `pk`                | `sk`    |
//! |-------|---------------------|---------|
//! | event | `EVENT#<event_id>`  | `EVENT` |
//! | head  | `HEAD#<entity key>` | `HEAD`  |
//! | history part | `EVENT#<event_id>` | `HISTORY#<first entry>-<hash>` |
//!
//! Both carry `type` (`event`/`head`), `version` N (the compare-and-set version), `body` B (the whole
//! [`EventRecord`] or [`EntityHead`] as zstd-compressed JSON: what reads return; a `body` S of plain JSON, as
//! written before, still reads) and `commit_id` S (the commit that wrote it).
//! Events add `ttl` N (epoch seconds of `expires_at`), `received_at` N (ns), `source` S and the keys of the
//! status and entity indexes (no `status` attribute since issue 12: see [`INDEX_ATTRIBUTES`]); heads add the lease index keys while an event is in flight.
//!
//! Global secondary indexes (eventually consistent — listings and sweeps only, never decisions). Their entries
//! hold the keys plus [`INDEX_ATTRIBUTES`] (what listings filter on; `by_lease` keys only), so an entry costs one
//! write unit however large the record; a listing reads the whole items from the table with `BatchGetItem`
//! (strongly consistent) in the index's order. The table design and its per-event write budget, measured, are in
//! `docs/aws-table.md`.
//!
//! - `by_status`: `gsi1pk` = `STATUS#<status>#<0..15>` (a hash of the event id), sort `gsi1sk` =
//!   `<received_at>` (`<received_at>#<event_id>` on items written before 2026-12-07); every event but the `processing` and `errored` ones (each is its entity's
//!   head's in-flight event and found through `by_lease`). Serves `list_events` by status (newest first: every
//!   shard, merged), and `count_by_status` and `count_events` by status (`Select=COUNT` per partition). The
//!   unsharded `STATUS#<status>` partitions of tables written before are read too, never written.
//! - `by_entity`: `gsi2pk` = `ENTITY#<entity key>`, sort `gsi2sk` =
//!   `<order nanos>#<order version>#<received_at>` (`…#<event_id>` on items written before 2026-12-07: a GSI's sort
//!   keys need not be unique, and the event id, already in `pk`, made every record item 86 bytes larger); events
//!   that name an entity. Serves
//!   `list_events` of one entity in order-key order (a status is filtered on the records read: the entries do not
//!   carry it, so they are written once per event), and `count_events` of one entity without a status.
//! - `by_lease`: `gsi3pk` = `LEASE#<0..15>`, sort `lease_until` N (ns) holding the hold's earliest lease end
//!   (`Inflight::lease_floor`: a retry's later lease leaves the entry alone); only heads with an event in flight
//!   (sparse). Serves `expired_leases` (entries before the moment are candidates, kept if their head's lease
//!   ended; the sweeper re-reads the event consistently before acting) and `count_inflight`.
//! - `by_waiting_for`: `gsi4pk`, sort `gsi2sk`; sparse. `waiting` events under `WAITING#<dependency>` and parked
//!   `in_order` events under `PARKED#<entity key>` (both in order-key order), and heads flagged
//!   `needs_verification` under `VERIFY#<0..15>` (sharded like leases, sort: the entity key, which stays the same
//!   while the flag does, so rewriting the head leaves the entry alone). Serves `list_events` and `count_events`
//!   by dependency, `parked_events` and `heads_to_verify`.
//!
//! `list_heads` scans the table (heads only, page by page, the cursor being the scan's last evaluated key): for
//! `verify --all` and `reconcile`, which walk every entity anyway.
//!
//! Numbers inside string sort keys are fixed-width hex of the value with its sign bit flipped, so they sort like
//! the numbers. The lease index is sharded over [`LEASE_SHARDS`] partitions by a hash of the entity key, so a
//! burst of claims never lands on one hot partition; readers query every shard and merge. The status index is
//! sharded the same way over [`STATUS_SHARDS`] partitions per status by a hash of the event id, so no index
//! partition takes every completion (one partition takes about 1,000 writes/s).
//!
//! Every read that feeds a decision (`get_event`, `get_head`) is `ConsistentRead` on the table. `commit` is one
//! conditional `PutItem` for one write and `TransactWriteItems` for several, `commit_each` one conditional `PutItem`
//! per write (half the units of a transaction); each item carries the `commit_id`
//! of the call that wrote it, so a condition failure caused by the SDK retrying our own committed write is
//! recognised and reported as success (see `commit.rs`). Items over [`ITEM_SIZE_LIMIT`] are refused before
//! they are sent (DynamoDB's hard limit is 400 KB; records keep at most 64 history entries). A record's item is
//! kept under 1 KB (one write unit) by moving its oldest history entries into history parts (`history.rs`): items
//! of type `history` in the record's partition, in no index, read back only by `get_event_with_history`.
//!
//! `list_events` without a status or entity scans the table (filters, then sorts in memory): a development
//! convenience, not for large tables.
//!
//! [`EventRecord`]: crate::model::EventRecord
//! [`EntityHead`]: crate::model::EntityHead

mod body;
mod commit;
mod errors;
mod history;
mod items;
mod listing;
mod queries;

pub use items::{ITEM_SIZE_LIMIT, LEASE_SHARDS, STATUS_SHARDS};

use super::direct::Direct;
use super::Clients;
use crate::model::{EntityHead, EntityKey, EventId, EventRecord, Status};
use crate::store::{EventQuery, EventStore, HeadPage, PartialCommit, StoreError, Write};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The index of events by status and received time.
pub const BY_STATUS: &str = "by_status";
/// The index of events by entity, in order-key order.
pub const BY_ENTITY: &str = "by_entity";
/// The sharded index of heads by lease end.
pub const BY_LEASE: &str = "by_lease";
/// The sparse index of `waiting` events by the dependency they wait for, in order-key order.
pub const BY_WAITING_FOR: &str = "by_waiting_for";
/// The attributes the event indexes project besides the keys (`INCLUDE`): what listings filter on. Listings read
/// the whole records from the table afterwards (`BatchGetItem`), so an index entry stays a few dozen bytes (one
/// write unit) however large the record. `by_lease` projects keys only.
///
/// `status` stays in the list for tables made before event items stopped carrying it (a deployed GSI's projection
/// can't change: CloudFormation refuses the update): items written now have no `status` attribute (the body and
/// `by_status`'s key have it), so their entries in `by_entity` and `by_waiting_for` stay as they are when the
/// status changes — no index write.
pub const INDEX_ATTRIBUTES: [&str; 3] = ["status", "source", "received_at"];

/// The DynamoDB [`EventStore`].
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
    /// The conditional `PutItem`s of `commit_each` and single-write commits, once `client` has made a request.
    direct: Direct,
    /// The history moves made lately (`history.rs`).
    moved_lately: Arc<history::MovedLately>,
}

impl DynamoStore {
    /// The store on `table` (which must exist with the indexes above; see [`super::setup::create_all`]), reading
    /// with `clients.dynamodb` (as wrapped by the caller: gate, meter) and writing single items with a
    /// [`Direct`] on the same HTTP stack, signed with the clients' credentials and counted in their
    /// `requests`.
    pub fn new(clients: &Clients, table: &str) -> Self {
        let (client, direct) =
            Direct::install(&clients.dynamodb, clients.credentials.clone(), clients.requests.clone());
        Self { client, table: table.to_owned(), direct, moved_lately: Arc::default() }
    }

    /// Whether single-item writes skip the SDK's pipeline (after the store's first request; see `direct`).
    pub fn writes_direct(&self) -> bool {
        self.direct.is_ready()
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// [`EventStore::commit`] with a caller-chosen commit id instead of a fresh random one. Committing the same
    /// writes again with the same id succeeds when the stored items are the ones that id wrote: this is what an
    /// SDK retry of a committed-but-timed-out request looks like, and how tests simulate one.
    pub async fn commit_as(&self, commit_id: &str, writes: Vec<Write>) -> Result<(), StoreError> {
        commit::commit(self, commit_id, writes).await
    }
}

#[async_trait]
impl EventStore for DynamoStore {
    async fn get_event(&self, id: &EventId) -> Result<Option<EventRecord>, StoreError> {
        queries::get_event(self, id).await
    }

    async fn get_event_with_history(&self, id: &EventId) -> Result<Option<EventRecord>, StoreError> {
        queries::get_event_with_history(self, id).await
    }

    async fn get_head(&self, entity: &EntityKey) -> Result<Option<EntityHead>, StoreError> {
        queries::get_head(self, entity).await
    }

    fn head_fits(&self, head: &EntityHead) -> bool {
        items::head_fits(head)
    }

    async fn get_event_and_head(
        &self,
        id: &EventId,
        entity: &EntityKey,
    ) -> Result<(Option<EventRecord>, Option<EntityHead>), StoreError> {
        queries::get_event_and_head(self, id, entity).await
    }

    async fn read_ahead(
        &self,
        wanted: &[(EventId, EntityKey)],
    ) -> Result<Option<Vec<(Option<EventRecord>, Option<EntityHead>)>>, StoreError> {
        queries::get_events_and_heads(self, wanted).await.map(Some)
    }

    async fn commit(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        commit::commit(self, &items::new_commit_id(), writes).await
    }

    async fn commit_each(&self, writes: Vec<Write>) -> Result<(), PartialCommit> {
        commit::commit_each(self, &items::new_commit_id(), writes).await
    }

    async fn list_events(&self, query: &EventQuery) -> Result<Vec<EventRecord>, StoreError> {
        listing::list_events(self, query).await
    }

    async fn parked_events(&self, entity: &EntityKey, limit: usize) -> Result<Vec<EventRecord>, StoreError> {
        listing::parked_events(self, entity, limit).await
    }

    async fn count_events(&self, query: &EventQuery) -> Result<u64, StoreError> {
        listing::count_events(self, query).await
    }

    async fn count_by_status(&self) -> Result<BTreeMap<Status, u64>, StoreError> {
        listing::count_by_status(self).await
    }

    async fn expired_leases(&self, before: DateTime<Utc>, limit: usize) -> Result<Vec<EntityHead>, StoreError> {
        queries::expired_leases(self, before, limit).await
    }

    async fn count_inflight(&self) -> Result<u64, StoreError> {
        queries::count_inflight(self).await
    }

    async fn list_heads(&self, after: Option<&str>, limit: usize) -> Result<HeadPage, StoreError> {
        queries::list_heads(self, after, limit).await
    }

    async fn heads_to_verify(&self, limit: usize) -> Result<Vec<EntityHead>, StoreError> {
        queries::heads_to_verify(self, limit).await
    }
}
