//! How records and heads become DynamoDB items: keys, index attributes, the JSON body, the size check.

use super::body;
use crate::model::{EntityHead, EventRecord, Status};
use crate::store::aws::meter::size::item_size as exact_size;
use crate::store::StoreError;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use std::collections::HashMap;

/// One DynamoDB item.
pub(super) type Item = HashMap<String, AttributeValue>;

/// Partitions of the `by_lease` index.
pub const LEASE_SHARDS: u32 = 16;

/// Partitions of each status in the `by_status` index.
pub const STATUS_SHARDS: u32 = 16;

/// The largest item this store writes (DynamoDB refuses items over 400 KB).
pub const ITEM_SIZE_LIMIT: usize = 350 * 1024;
/// The most bytes an item may have for each write of it to cost one write unit (one per started KB).
pub(super) const ONE_WRITE_UNIT: u64 = 1024;

pub(super) const PK: &str = "pk";
pub(super) const SK: &str = "sk";
pub(super) const VERSION: &str = "version";
pub(super) const BODY: &str = "body";
pub(super) const COMMIT_ID: &str = "commit_id";
pub(super) const SOURCE: &str = "source";
pub(super) const RECEIVED_AT: &str = "received_at";
pub(super) const ITEM_TYPE: &str = "type";
pub(super) const TTL: &str = "ttl";
pub(super) const GSI1PK: &str = "gsi1pk";
pub(super) const GSI1SK: &str = "gsi1sk";
pub(super) const GSI2PK: &str = "gsi2pk";
pub(super) const GSI2SK: &str = "gsi2sk";
pub(super) const GSI3PK: &str = "gsi3pk";
pub(super) const GSI4PK: &str = "gsi4pk";
pub(super) const LEASE_UNTIL: &str = "lease_until";

/// The sort key of event items.
pub(super) const EVENT_SK: &str = "EVENT";
/// The sort key of head items.
pub(super) const HEAD_SK: &str = "HEAD";

/// 64 random bits as hex: the id stamped on every item one commit writes. A condition failure is taken for the
/// commit's own earlier write only when the stored item's version and body are the commit's too, so 64 bits tell
/// commits apart as surely as 128 did, in 16 fewer bytes of every item (issue 12: a record's item stays under 1 KB).
pub(super) fn new_commit_id() -> String {
    hex::encode(rand::random::<[u8; 8]>())
}

/// `n` as 16 hex digits that sort like the signed number.
pub(super) fn sortable(n: i64) -> String {
    format!("{:016x}", (n as u64) ^ (1 << 63))
}

/// A time as UTC nanoseconds since the epoch.
pub(super) fn nanos(at: DateTime<Utc>) -> Result<i64, StoreError> {
    at.timestamp_nanos_opt()
        .ok_or_else(|| StoreError::Backend(format!("time {at} is outside 1677..2262 and cannot be stored").into()))
}

/// What an event record's partition key starts with; its event id follows.
const EVENT_PREFIX: &str = "EVENT#";

pub(super) fn event_pk(event_id: &str) -> String {
    format!("{EVENT_PREFIX}{event_id}")
}

pub(super) fn head_pk(entity_key: &str) -> String {
    format!("HEAD#{entity_key}")
}

/// The `by_status` partition of an event: its status and a shard from a hash of its id.
pub(super) fn status_pk(status: &str, shard: u32) -> String {
    format!("STATUS#{status}#{shard}")
}

/// The one `by_status` partition a status had before the index was sharded: read, never written.
pub(super) fn legacy_status_pk(status: &str) -> String {
    format!("STATUS#{status}")
}

/// Every `by_status` partition of `status`: its shards, then the legacy one.
pub(super) fn status_partitions(status: &str) -> impl Iterator<Item = String> + '_ {
    (0..STATUS_SHARDS).map(move |shard| status_pk(status, shard)).chain(std::iter::once(legacy_status_pk(status)))
}

pub(super) fn entity_pk(entity_key: &str) -> String {
    format!("ENTITY#{entity_key}")
}

pub(super) fn waiting_pk(dependency: &str) -> String {
    format!("WAITING#{dependency}")
}

/// The partition of an entity's parked events in the sparse `by_waiting_for` index.
pub(super) fn parked_pk(entity_key: &str) -> String {
    format!("PARKED#{entity_key}")
}

/// The partition of heads flagged `needs_verification` in the sparse `by_waiting_for` index, sharded like leases.
pub(super) fn verify_pk(shard: u32) -> String {
    format!("VERIFY#{shard}")
}

pub(super) fn lease_pk(shard: u32) -> String {
    format!("LEASE#{shard}")
}

/// A stable hash of `text` into `0..shards`.
fn shard_of(text: &str, shards: u32) -> u32 {
    let digest = Sha256::digest(text.as_bytes());
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]) % shards
}

/// The lease shard of an entity: a stable hash of its key.
pub(super) fn lease_shard(entity_key: &str) -> u32 {
    shard_of(entity_key, LEASE_SHARDS)
}

/// The key of an item.
pub(super) fn key(pk: String, sk: &str) -> Item {
    HashMap::from([(PK.to_owned(), AttributeValue::S(pk)), (SK.to_owned(), AttributeValue::S(sk.to_owned()))])
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// The item of an event record, stamped with `commit_id`.
pub(super) fn event_item(record: &EventRecord, commit_id: &str) -> Result<Item, StoreError> {
    let id = record.event_id.as_str();
    let what = format!("event {id}");
    let received = nanos(record.received_at)?;
    let mut item = key(event_pk(id), EVENT_SK);
    item.insert(ITEM_TYPE.into(), s("event"));
    item.insert(VERSION.into(), n(record.version));
    item.insert(BODY.into(), body::encode_record(record, &what)?);
    item.insert(COMMIT_ID.into(), s(commit_id));
    item.insert(TTL.into(), n(record.expires_at.timestamp()));
    item.insert(RECEIVED_AT.into(), n(received));
    // A `processing` or `errored` event is its entity's head's in-flight event, found through the head in
    // `by_lease` (`listing.rs`): out of `by_status`, a happy-path event is written there once, when it settles, and
    // a retry writes it there not at all.
    if !held_by_its_head(record.status) {
        let partition = status_pk(record.status.as_str(), shard_of(id, STATUS_SHARDS));
        item.insert(GSI1PK.into(), s(partition));
        item.insert(GSI1SK.into(), s(sortable(received)));
    }
    if let Some(entity) = &record.entity {
        let entity_key = entity.to_string();
        // An event without an order key sorts before every event with one (like NULL in the embedded store).
        let order =
            record.order.map_or_else(|| "!".to_owned(), |o| format!("{}#{}", sortable(o.nanos), sortable(o.version)));
        item.insert(SOURCE.into(), s(entity.source.clone()));
        item.insert(GSI2SK.into(), s(format!("{order}#{}", sortable(received))));
        item.insert(GSI2PK.into(), s(entity_pk(&entity_key)));
    }
    // A sparse index: only waiting events are in it, under the key they wait for, and parked events, under their
    // entity (both sorted by the `by_entity` key).
    if let (Status::Waiting, Some(dependency)) = (record.status, &record.waiting_for) {
        item.insert(GSI4PK.into(), s(waiting_pk(dependency)));
    } else if let (Status::Queued, true, Some(entity)) = (record.status, record.parked, &record.entity) {
        item.insert(GSI4PK.into(), s(parked_pk(&entity.to_string())));
    }
    check_size(&item, &what)?;
    Ok(item)
}

/// Whether an event in `status` is always its entity's head's in-flight event (spec §9 "`processing` and `errored`
/// found through the heads"): such events are listed through the heads in `by_lease`, not `by_status`.
pub(super) fn held_by_its_head(status: Status) -> bool {
    matches!(status, Status::Processing | Status::Errored)
}

/// The item of an entity head, stamped with `commit_id`; in the lease index while an event is in flight, and in the
/// sparse `by_waiting_for` index (under `VERIFY#<shard>`, by entity key) while it is flagged `needs_verification`.
/// That entry's keys stay the same while the flag does: a head rewritten by every event of a busy entity doesn't
/// move it (a sort key that changed with each write cost two index write units per head write).
pub(super) fn head_item(head: &EntityHead, commit_id: &str) -> Result<Item, StoreError> {
    let entity_key = head.entity.to_string();
    let what = format!("head of {entity_key}");
    let mut item = key(head_pk(&entity_key), HEAD_SK);
    item.insert(ITEM_TYPE.into(), s("head"));
    item.insert(VERSION.into(), n(head.version));
    item.insert(BODY.into(), body::encode(head, &what)?);
    item.insert(COMMIT_ID.into(), s(commit_id));
    if let Some(inflight) = &head.inflight {
        item.insert(GSI3PK.into(), s(lease_pk(lease_shard(&entity_key))));
        // The hold's earliest lease end, not the lease's: a retry's later lease leaves the entry where it is.
        item.insert(LEASE_UNTIL.into(), n(nanos(inflight.lease_floor())?));
    }
    if head.needs_verification {
        item.insert(GSI4PK.into(), s(verify_pk(lease_shard(&entity_key))));
        item.insert(GSI2SK.into(), s(entity_key.clone()));
    }
    check_size(&item, &what)?;
    Ok(item)
}

/// Whether `head`, written as it is (its version one more), is an item of at most [`ONE_WRITE_UNIT`] bytes: the
/// engine parks `in_order` events rather than grow a backlog past it (spec §9 "A backlog no larger than its head's
/// budget"). A head that can't be encoded does not fit.
pub(super) fn head_fits(head: &EntityHead) -> bool {
    let written = EntityHead { version: head.version + 1, ..head.clone() };
    head_item(&written, &new_commit_id()).is_ok_and(|item| exact_size(&item) <= ONE_WRITE_UNIT)
}

/// An upper bound of an item's size as DynamoDB counts it (names plus values).
pub(super) fn item_size(item: &Item) -> usize {
    item.iter()
        .map(|(name, value)| {
            name.len()
                + match value {
                    AttributeValue::S(text) | AttributeValue::N(text) => text.len(),
                    AttributeValue::B(bytes) => bytes.as_ref().len(),
                    _ => 64,
                }
        })
        .sum()
}

fn check_size(item: &Item, what: &str) -> Result<(), StoreError> {
    let size = item_size(item);
    if size > ITEM_SIZE_LIMIT {
        return Err(StoreError::Backend(
            format!(
                "{what} would be a {size}-byte DynamoDB item, over this store's limit of {ITEM_SIZE_LIMIT} bytes \
             (DynamoDB refuses items over 400 KB); shorten its error messages or history"
            )
            .into(),
        ));
    }
    Ok(())
}

/// A string attribute.
pub(super) fn string<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    match item.get(name) {
        Some(AttributeValue::S(text)) => Some(text),
        _ => None,
    }
}

/// A number attribute as u64.
pub(super) fn number(item: &Item, name: &str) -> Option<u64> {
    match item.get(name) {
        Some(AttributeValue::N(text)) => text.parse().ok(),
        _ => None,
    }
}

/// The record or head an item holds (see [`body`] for the formats; a record's id is its key's); a body that does not
/// decode means the item is corrupt.
pub(super) fn decode<T: DeserializeOwned>(item: &Item, what: &str) -> Result<T, StoreError> {
    let key_id = string(item, PK).and_then(|pk| pk.strip_prefix(EVENT_PREFIX));
    body::decode(item.get(BODY), key_id, what)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sortable_numbers_sort_like_the_numbers() {
        let values = [i64::MIN, -5, -1, 0, 1, 42, i64::MAX];
        let encoded: Vec<String> = values.iter().map(|v| sortable(*v)).collect();
        let mut sorted = encoded.clone();
        sorted.sort();
        assert_eq!(encoded, sorted);
        assert!("!" < sortable(i64::MIN).as_str(), "no order key sorts first");
    }

    #[test]
    fn lease_shards_spread_and_stay_in_range() {
        let shards: std::collections::BTreeSet<u32> =
            (0..200).map(|i| lease_shard(&format!("default/shop/product/{i}"))).collect();
        assert!(shards.iter().all(|s| *s < LEASE_SHARDS));
        assert!(shards.len() > LEASE_SHARDS as usize / 2, "{shards:?}");
        assert_eq!(lease_shard("a/b/c/d"), lease_shard("a/b/c/d"));
    }

    #[test]
    fn a_flagged_heads_index_entry_stays_put_while_the_head_is_rewritten() {
        let at = |secs| DateTime::from_timestamp(secs, 0).unwrap_or_default();
        let entity = crate::model::EntityKey::new("t", "s", "e", "1").expect("key");
        let mut head = EntityHead::empty(entity, at(1_000));
        head.needs_verification = true;
        let index_keys = |head: &EntityHead| {
            let item = head_item(head, "c").expect("item");
            (item.get(GSI4PK).cloned(), item.get(GSI2SK).cloned())
        };
        let before = index_keys(&head);
        assert!(before.0.is_some() && before.1.is_some(), "a flagged head is in by_waiting_for: {before:?}");
        head.updated_at = at(2_000);
        head.version += 1;
        head.fence += 1;
        assert_eq!(index_keys(&head), before, "rewriting the head moved its by_waiting_for entry");
        head.needs_verification = false;
        assert_eq!(index_keys(&head), (None, None), "an unflagged head leaves the index");
    }

    /// A head with `waiting` events in its backlog, each with an id of `id_len` random-looking characters (as
    /// delivery GUIDs and hashes are: they don't compress), an event in flight and one applied.
    fn busy_head(id_len: usize, waiting: u64) -> EntityHead {
        use crate::model::{ContentHash, EventId, Inflight, OrderKey, Slot};
        let at = |secs| DateTime::from_timestamp(secs, 0).unwrap_or_default();
        let slot = |n: u64| {
            let id = format!("{}{}", ContentHash::of(&n.to_le_bytes()).to_hex(), ContentHash::of(&[n as u8]).to_hex());
            Slot {
                event_id: EventId::parse(&id[..id_len]).expect("id"),
                order: OrderKey::at(at(1_700_000_000 + n as i64), 0).expect("order"),
                content_hash: ContentHash::of(&n.to_be_bytes()),
            }
        };
        let entity =
            crate::model::EntityKey::new("default", "erp", "inventory_adjustment", "sku-1234567").expect("key");
        let mut head = EntityHead::empty(entity, at(1_700_000_000));
        let lease_until = at(1_700_000_100);
        head.inflight = Some(Inflight {
            slot: slot(0),
            lease_until,
            fence: 7,
            errored: false,
            promoted: false,
            attempt: 1,
            earliest_lease_until: None,
        });
        head.applied = Some(slot(1_000));
        head.backlog = (1..=waiting).map(slot).collect();
        (head.version, head.fence) = (41, 7);
        head
    }

    #[test]
    fn a_head_fits_while_its_item_is_one_write_unit() {
        let written_size = |head: &EntityHead| {
            let written = EntityHead { version: head.version + 1, ..head.clone() };
            exact_size(&head_item(&written, &new_commit_id()).expect("item"))
        };
        for id_len in [12, 36, 42, 64, 128] {
            let sizes: Vec<u64> = (0..=16).map(|waiting| written_size(&busy_head(id_len, waiting))).collect();
            for (waiting, size) in sizes.iter().enumerate() {
                let head = busy_head(id_len, waiting as u64);
                assert_eq!(head_fits(&head), *size <= ONE_WRITE_UNIT, "ids of {id_len}, {waiting} waiting: {sizes:?}");
            }
            assert!(sizes.windows(2).all(|w| w[0] < w[1]), "each event waiting adds bytes: {sizes:?}");
        }
        // Measured: with a GUID's 36 characters ten waiting events fit (997 bytes), with 128 characters four (905).
        assert!(head_fits(&busy_head(36, 8)) && !head_fits(&busy_head(36, 12)));
        assert!(head_fits(&busy_head(128, 4)) && !head_fits(&busy_head(128, 6)));
    }

    #[test]
    fn a_status_has_its_shards_and_its_legacy_partition() {
        let partitions: Vec<String> = status_partitions("completed").collect();
        assert_eq!(partitions.len(), STATUS_SHARDS as usize + 1);
        assert_eq!(partitions.first().map(String::as_str), Some("STATUS#completed#0"));
        assert_eq!(partitions.last().map(String::as_str), Some("STATUS#completed"));
    }
}
