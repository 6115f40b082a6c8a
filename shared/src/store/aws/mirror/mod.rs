//! [`DynamoMirror`]: the reference destination on DynamoDB, with the semantics of the embedded
//! `Mirror` (`store::sqlite`): the latest state per entity, local edits, one effect per applied
//! event, and every write guarded by the shared rules of [`crate::destination::guard`].
//!
//! # Items (in the event store's table, beside its events and heads)
//!
//! - A row per entity: `pk` = `MIRROR#<entity key>`, `sk` = `MIRROR`; `type` = `mirror`, `version` N (the
//!   compare-and-set version), `commit_id`, `entity_key`, `body` (the state as JSON), `order_nanos` N and
//!   `order_version` N, `content_hash`, `event_id`, `fence` N, `deleted` BOOL, `modified_at` N, `applied_at` N,
//!   and for `in_order` entities one `total#<field>` N per total (`total#quantity`): the state is `body` with the
//!   totals laid over it. Totals are numbers DynamoDB adds to itself (`ADD`); a put of the whole row (a snapshot, a
//!   local edit) writes every field into `body` and so removes them.
//! - An effect per applied event: `pk` = `EFFECT#<event id>`, `sk` = `EFFECT`; `type` = `effect`, `event_id`,
//!   `entity_key`, `applied_at` N, `recorded_at` N (the writer's wall clock), `commit_id`.
//!
//! Times are UTC nanoseconds. Neither carries index attributes, so the event store's indexes never see them.
//!
//! # Applying a change
//!
//! One `BatchGetItem` (`ConsistentRead`) reads the row and the effect. An existing effect means the event was
//! applied before: `AlreadyApplied` (or `Applied` when it carries this call's commit id: an earlier attempt of
//! this very call committed). Otherwise the shared guard decides; a write is one `TransactWriteItems` of the row
//! and the effect (conditional on its absence), both stamped with the call's commit id. The row is put whole,
//! conditional on the `version` read (or on its absence); an `in_order` delta instead updates it in place, its
//! amounts `ADD`ed to the totals, conditional on the totals staying within 64 bits and, unless the event is older
//! than the row's latest and only adds, on the `version` read (`totals.rs` has both shapes). Since the effect
//! shares the transaction, an event still has at most one effect, and its amounts are added at most once. A
//! condition failure re-reads and decides again, at most
//! [`MAX_ROUNDS`] times; when the effect's condition failed, the returned old item tells at once whether it is
//! ours (a retry of a transaction that had committed) or another writer's. Both requests skip the SDK's pipeline
//! once the mirror's client has made a request (`store::aws::direct`). So an applied change costs one
//! `BatchGetItem` (2 strongly consistent reads) and one `TransactWriteItems` (2 transactional writes); a refused
//! or repeated one only the read.
//!
//! Throttling is [`DestinationError::Throttled`](crate::destination::DestinationError), timeouts and
//! unavailability are [`DestinationError::Retryable`](crate::destination::DestinationError);
//! a corrupt item or a row over [`ITEM_SIZE_LIMIT`](super::ITEM_SIZE_LIMIT) is permanent.
//!
//! `list`, `effects` and `count` scan the table: for development and tests, not for large tables. Effects are
//! ordered by `applied_at`, then by the writer's wall clock (`recorded_at`): no global order exists across writers.

mod apply;
mod items;
mod totals;

pub use apply::MAX_ROUNDS;

use self::items::{
    decode_effect, decode_mirror, fits, item_size, key, mirror_item, mirror_pk, n, new_commit_id, s, version, Item,
    EFFECT_TYPE, ITEM_TYPE, MIRROR, MIRROR_TYPE, PK,
};
use super::direct::Direct;
use super::Clients;
use crate::clock::Clock;
use crate::destination::delta_fields::DeltaFields;
use crate::destination::guard::{local_edit, MirrorRecord, PendingChange};
use crate::destination::{ApplyOutcome, Change, Destination, DestinationError, DestinationRecord, ReadError};
use crate::model::{EntityKey, EventId};
use crate::store::aws::error::from_sdk;
use crate::store::aws::ITEM_SIZE_LIMIT;
use crate::store::StoreError;
use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, Select};
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

/// The DynamoDB [`Destination`]: mirror rows and effects in one table.
#[derive(Clone)]
pub struct DynamoMirror {
    client: aws_sdk_dynamodb::Client,
    /// An apply's read and write, once `client` has made a request.
    direct: Direct,
    table: String,
    clock: Arc<dyn Clock>,
    delta_fields: DeltaFields,
}

impl std::fmt::Debug for DynamoMirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamoMirror").field("table", &self.table).finish_non_exhaustive()
    }
}

/// A scan's filter: `type = <item_type>`, plus `begins_with(pk, <prefix>)` when given.
struct Filter {
    text: String,
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

impl Filter {
    fn of_type(item_type: &str, pk_prefix: Option<String>) -> Self {
        let mut text = "#t = :t".to_owned();
        let mut names = HashMap::from([("#t".to_owned(), ITEM_TYPE.to_owned())]);
        let mut values = HashMap::from([(":t".to_owned(), s(item_type))]);
        if let Some(prefix) = pk_prefix {
            text.push_str(" AND begins_with(#pk, :pk)");
            names.insert("#pk".to_owned(), PK.to_owned());
            values.insert(":pk".to_owned(), s(prefix));
        }
        Self { text, names, values }
    }
}

impl DynamoMirror {
    /// The mirror in `table` (the event store's table; see [`super::setup::create_all`]), stamping `applied_at`
    /// from `clock` and adding `in_order` deltas as `delta_fields` say; reading and writing with `clients.dynamodb`
    /// (as wrapped by the caller: gate, meter), an apply's `BatchGetItem` and `TransactWriteItems` sent by a
    /// [`Direct`] on the same HTTP stack once the client has made a request (signed with the clients' credentials,
    /// counted in their `requests`).
    pub fn new(clients: &Clients, table: &str, clock: Arc<dyn Clock>, delta_fields: DeltaFields) -> Self {
        let (client, direct) =
            Direct::install(&clients.dynamodb, clients.credentials.clone(), clients.requests.clone());
        Self { client, direct, table: table.to_owned(), clock, delta_fields }
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Whether `item` of the shared table is the mirror's (a row or an effect), not the event store's.
    pub fn owns(item: &std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>) -> bool {
        let prefix = |p: &str| format!("{p}#");
        match item.get(items::PK) {
            Some(aws_sdk_dynamodb::types::AttributeValue::S(pk)) => {
                pk.starts_with(&prefix(items::MIRROR)) || pk.starts_with(&prefix(items::EFFECT))
            }
            _ => false,
        }
    }

    /// [`Destination::apply`] with a caller-chosen commit id instead of a fresh random one. Applying the same
    /// change again with the same id reports `Applied` when the stored effect is the one that id wrote: this is
    /// what an SDK retry of a committed-but-timed-out transaction looks like, and how tests simulate one.
    pub async fn apply_as(&self, commit_id: &str, change: &Change<'_>) -> Result<ApplyOutcome, DestinationError> {
        apply::apply(self, &PendingChange::of(change, &self.delta_fields)?, commit_id).await
    }

    /// Records a local edit of `entity` (someone changed the destination directly): an event whose `updated_at`
    /// is older than `modified_at` will then be refused. Reads the row (`ConsistentRead`) and puts it back whole
    /// with the edited state (keeping its order key and fence, clearing its content hash and any `in_order`
    /// totals: the edited state holds the values), conditional on the version read; a lost race reads again, at
    /// most [`MAX_ROUNDS`] times. A concurrent `apply` that read the row before re-decides.
    pub async fn record_local_edit(
        &self,
        entity: &EntityKey,
        state: Value,
        modified_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let entity_key = entity.to_string();
        let what = format!("recording a local edit of {entity_key}");
        for _ in 0..MAX_ROUNDS {
            let stored = self.read_row(&entity_key).await?;
            let (row, stored_version) = match &stored {
                Some(item) => (Some(decode_mirror(item)?), Some(version(item, &what)?)),
                None => (None, None),
            };
            let record = local_edit(row.as_ref(), &entity_key, state.clone(), modified_at, self.clock.now());
            let item = mirror_item(&record, stored_version.map_or(1, |v| v.saturating_add(1)), &new_commit_id())?;
            if !fits(&item) {
                return Err(StoreError::Backend(
                    format!(
                        "{what}: a {}-byte item is over this mirror's limit of {ITEM_SIZE_LIMIT} bytes",
                        item_size(&item)
                    )
                    .into(),
                ));
            }
            let put = self.client.put_item().table_name(&self.table).set_item(Some(item));
            let put = match stored_version {
                Some(v) => {
                    put.condition_expression("version = :expected").expression_attribute_values(":expected", n(v))
                }
                None => put.condition_expression("attribute_not_exists(pk)"),
            };
            match put.send().await.map_err(|e| from_sdk(&what, e)) {
                Ok(_) => return Ok(()),
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Conflict(format!("{what}: the row kept changing ({MAX_ROUNDS} rounds); try again").into()))
    }

    /// The raw item of one mirror row (a strongly consistent read).
    async fn read_row(&self, entity_key: &str) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(mirror_pk(entity_key), MIRROR)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| from_sdk(&format!("reading the mirror row of {entity_key}"), e))?;
        Ok(out.item)
    }

    /// The state of one entity (a strongly consistent read).
    pub async fn get(&self, entity: &EntityKey) -> Result<Option<MirrorRecord>, StoreError> {
        self.read_row(&entity.to_string()).await?.as_ref().map(decode_mirror).transpose()
    }

    /// Entities whose key starts with `entity_prefix`, by key, at most `limit` (0 = all). Scans the table.
    pub async fn list(&self, entity_prefix: Option<&str>, limit: usize) -> Result<Vec<MirrorRecord>, StoreError> {
        let filter = Filter::of_type(MIRROR_TYPE, Some(mirror_pk(entity_prefix.unwrap_or(""))));
        let items = self.scan(filter, "listing the mirror").await?;
        let mut records = items.iter().map(decode_mirror).collect::<Result<Vec<_>, _>>()?;
        records.sort_by(|a, b| a.entity_key.cmp(&b.entity_key));
        if limit > 0 {
            records.truncate(limit);
        }
        Ok(records)
    }

    /// Every destination effect, oldest first: (event, entity key). Scans the table.
    pub async fn effects(&self) -> Result<Vec<(EventId, String)>, StoreError> {
        let what = "listing mirror effects";
        let items = self.scan(Filter::of_type(EFFECT_TYPE, None), what).await?;
        let mut effects = items.iter().map(decode_effect).collect::<Result<Vec<_>, _>>()?;
        effects.sort();
        effects
            .into_iter()
            .map(|(_, _, id, entity_key)| {
                let id = EventId::parse(&id).map_err(|e| StoreError::Corrupt(format!("{what}: {e}").into()))?;
                Ok((id, entity_key))
            })
            .collect()
    }

    /// How many entities the mirror holds (deleted ones and local edits included). Scans the table.
    pub async fn count(&self) -> Result<u64, StoreError> {
        let what = "counting the mirror";
        let filter = Filter::of_type(MIRROR_TYPE, None);
        let scan = self
            .client
            .scan()
            .table_name(&self.table)
            .select(Select::Count)
            .filter_expression(filter.text)
            .set_expression_attribute_names(Some(filter.names))
            .set_expression_attribute_values(Some(filter.values));
        let (mut total, mut start) = (0u64, None);
        loop {
            let page = scan.clone().set_exclusive_start_key(start).send().await.map_err(|e| from_sdk(what, e))?;
            total += u64::try_from(page.count).unwrap_or(0);
            start = page.last_evaluated_key;
            if start.is_none() {
                return Ok(total);
            }
        }
    }

    /// Every item `filter` matches, page after page.
    async fn scan(&self, filter: Filter, what: &str) -> Result<Vec<Item>, StoreError> {
        let scan = self
            .client
            .scan()
            .table_name(&self.table)
            .filter_expression(filter.text)
            .set_expression_attribute_names(Some(filter.names))
            .set_expression_attribute_values(Some(filter.values));
        let (mut items, mut start) = (Vec::new(), None);
        loop {
            let page = scan.clone().set_exclusive_start_key(start).send().await.map_err(|e| from_sdk(what, e))?;
            items.extend(page.items.unwrap_or_default());
            start = page.last_evaluated_key;
            if start.is_none() {
                return Ok(items);
            }
        }
    }
}

#[async_trait]
impl Destination for DynamoMirror {
    async fn apply(&self, change: &Change<'_>) -> Result<ApplyOutcome, DestinationError> {
        apply::apply(self, &PendingChange::of(change, &self.delta_fields)?, &new_commit_id()).await
    }

    async fn read(&self, entity: &EntityKey) -> Result<Option<DestinationRecord>, ReadError> {
        let row = self.get(entity).await.map_err(|e| ReadError::Failed(e.to_string()))?;
        Ok(row.map(DestinationRecord::from))
    }
}

#[async_trait]
impl crate::destination::MirrorView for DynamoMirror {
    async fn record_local_edit(
        &self,
        entity: &EntityKey,
        state: Value,
        modified_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        DynamoMirror::record_local_edit(self, entity, state, modified_at).await
    }

    async fn get(&self, entity: &EntityKey) -> Result<Option<MirrorRecord>, StoreError> {
        DynamoMirror::get(self, entity).await
    }

    async fn list(&self, entity_prefix: Option<&str>, limit: usize) -> Result<Vec<MirrorRecord>, StoreError> {
        DynamoMirror::list(self, entity_prefix, limit).await
    }

    async fn effects(&self) -> Result<Vec<(EventId, String)>, StoreError> {
        DynamoMirror::effects(self).await
    }

    async fn count(&self) -> Result<u64, StoreError> {
        DynamoMirror::count(self).await
    }
}
