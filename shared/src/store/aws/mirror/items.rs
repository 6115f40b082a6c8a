//! How mirror rows and effects become DynamoDB items, and back. A row's state is its `body` (JSON) with the
//! `total#<field>` number attributes of `in_order` totals laid over it.

use crate::destination::guard::MirrorRecord;
use crate::model::OrderKey;
use crate::store::aws::ITEM_SIZE_LIMIT;
use crate::store::StoreError;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::collections::HashMap;
use std::str::FromStr;

/// One DynamoDB item.
pub(super) type Item = HashMap<String, AttributeValue>;

pub(super) const PK: &str = "pk";
pub(super) const SK: &str = "sk";
pub(super) const ITEM_TYPE: &str = "type";
pub(super) const VERSION: &str = "version";
pub(super) const COMMIT_ID: &str = "commit_id";
pub(super) const ENTITY_KEY: &str = "entity_key";
pub(super) const BODY: &str = "body";
pub(super) const ORDER_NANOS: &str = "order_nanos";
pub(super) const ORDER_VERSION: &str = "order_version";
pub(super) const CONTENT_HASH: &str = "content_hash";
pub(super) const EVENT_ID: &str = "event_id";
pub(super) const FENCE: &str = "fence";
pub(super) const DELETED: &str = "deleted";
pub(super) const MODIFIED_AT: &str = "modified_at";
pub(super) const APPLIED_AT: &str = "applied_at";
pub(super) const RECORDED_AT: &str = "recorded_at";
/// Prefix of the number attributes `in_order` totals live in (`total#quantity`), outside `body`, so that DynamoDB
/// adds to them natively (`ADD`).
pub(super) const TOTAL_PREFIX: &str = "total#";

/// `type` and sort key of mirror rows.
pub(super) const MIRROR: &str = "MIRROR";
/// `type` and sort key of effects.
pub(super) const EFFECT: &str = "EFFECT";
/// The `type` attribute of mirror rows.
pub(super) const MIRROR_TYPE: &str = "mirror";
/// The `type` attribute of effects.
pub(super) const EFFECT_TYPE: &str = "effect";

/// 128 random bits as hex: the id stamped on the items one `apply` call writes.
pub(super) fn new_commit_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

pub(super) fn mirror_pk(entity_key: &str) -> String {
    format!("{MIRROR}#{entity_key}")
}

pub(super) fn effect_pk(event_id: &str) -> String {
    format!("{EFFECT}#{event_id}")
}

/// The key of an item.
pub(super) fn key(pk: String, sk: &str) -> Item {
    HashMap::from([(PK.to_owned(), AttributeValue::S(pk)), (SK.to_owned(), AttributeValue::S(sk.to_owned()))])
}

pub(super) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub(super) fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// A time as UTC nanoseconds since the epoch.
pub(super) fn nanos(at: DateTime<Utc>) -> Result<i64, StoreError> {
    at.timestamp_nanos_opt()
        .ok_or_else(|| StoreError::Backend(format!("time {at} is outside 1677..2262 and cannot be stored").into()))
}

/// The attribute holding the total of state field `field`.
pub(super) fn total_attribute(field: &str) -> String {
    format!("{TOTAL_PREFIX}{field}")
}

/// The state fields whose totals a stored row holds as number attributes.
pub(super) fn total_fields(item: &Item) -> impl Iterator<Item = &str> {
    item.keys().filter_map(|name| name.strip_prefix(TOTAL_PREFIX))
}

/// The item of a mirror row at `version`, stamped with `commit_id`: the whole state in `body`, no total
/// attributes (a put of it replaces the row, totals included).
pub(super) fn mirror_item(record: &MirrorRecord, version: u64, commit_id: &str) -> Result<Item, StoreError> {
    let body = serde_json::to_string(&record.state)
        .map_err(|e| StoreError::Backend(format!("encoding the state of {} as JSON: {e}", record.entity_key).into()))?;
    let mut item = key(mirror_pk(&record.entity_key), MIRROR);
    item.insert(ITEM_TYPE.into(), s(MIRROR_TYPE));
    item.insert(VERSION.into(), n(version));
    item.insert(COMMIT_ID.into(), s(commit_id));
    item.insert(ENTITY_KEY.into(), s(record.entity_key.clone()));
    item.insert(BODY.into(), s(body));
    if let Some(order) = record.order {
        item.insert(ORDER_NANOS.into(), n(order.nanos));
        item.insert(ORDER_VERSION.into(), n(order.version));
    }
    if let Some(hash) = &record.content_hash {
        item.insert(CONTENT_HASH.into(), s(hash.clone()));
    }
    if let Some(event_id) = &record.event_id {
        item.insert(EVENT_ID.into(), s(event_id.clone()));
    }
    item.insert(FENCE.into(), n(record.fence));
    item.insert(DELETED.into(), AttributeValue::Bool(record.deleted));
    if let Some(modified_at) = record.modified_at {
        item.insert(MODIFIED_AT.into(), n(nanos(modified_at)?));
    }
    item.insert(APPLIED_AT.into(), n(nanos(record.applied_at)?));
    Ok(item)
}

/// The effect item of `event_id` on `entity_key`, stamped with `commit_id`. `recorded_at` is the writer's wall
/// clock, which orders effects that share `applied_at`.
pub(super) fn effect_item(
    event_id: &str,
    entity_key: &str,
    applied_at: DateTime<Utc>,
    commit_id: &str,
) -> Result<Item, StoreError> {
    let mut item = key(effect_pk(event_id), EFFECT);
    item.insert(ITEM_TYPE.into(), s(EFFECT_TYPE));
    item.insert(EVENT_ID.into(), s(event_id));
    item.insert(ENTITY_KEY.into(), s(entity_key));
    item.insert(APPLIED_AT.into(), n(nanos(applied_at)?));
    item.insert(RECORDED_AT.into(), n(nanos(Utc::now())?));
    item.insert(COMMIT_ID.into(), s(commit_id));
    Ok(item)
}

/// An upper bound of an item's size as DynamoDB counts it (names plus values).
pub(super) fn item_size(item: &Item) -> usize {
    item.iter()
        .map(|(name, value)| {
            name.len()
                + match value {
                    AttributeValue::S(text) | AttributeValue::N(text) => text.len(),
                    _ => 64,
                }
        })
        .sum()
}

/// Whether an item fits this backend's item limit ([`ITEM_SIZE_LIMIT`]).
pub(super) fn fits(item: &Item) -> bool {
    item_size(item) <= ITEM_SIZE_LIMIT
}

fn corrupt(what: &str, name: &str, problem: &str) -> StoreError {
    StoreError::Corrupt(format!("{what}: attribute `{name}` {problem}").into())
}

/// A string attribute; present with another type is corrupt.
pub(super) fn opt_string<'a>(item: &'a Item, name: &str, what: &str) -> Result<Option<&'a str>, StoreError> {
    match item.get(name) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(AttributeValue::S(text)) => Ok(Some(text)),
        Some(_) => Err(corrupt(what, name, "is not a string")),
    }
}

/// A number attribute; present with another type, or out of `T`'s range, is corrupt.
pub(super) fn opt_number<T: FromStr>(item: &Item, name: &str, what: &str) -> Result<Option<T>, StoreError> {
    match item.get(name) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(AttributeValue::N(text)) => {
            text.parse().map(Some).map_err(|_| corrupt(what, name, &format!("holds {text}, out of range")))
        }
        Some(_) => Err(corrupt(what, name, "is not a number")),
    }
}

fn required<T>(value: Option<T>, name: &str, what: &str) -> Result<T, StoreError> {
    value.ok_or_else(|| corrupt(what, name, "is missing"))
}

/// The compare-and-set version of a stored row: every writer sets one, so a row without it is corrupt.
pub(super) fn version(item: &Item, what: &str) -> Result<u64, StoreError> {
    required(opt_number(item, VERSION, what)?, VERSION, what)
}

/// The mirror row an item holds.
pub(super) fn decode_mirror(item: &Item) -> Result<MirrorRecord, StoreError> {
    let pk = opt_string(item, PK, "mirror item")?.unwrap_or_default();
    let what = format!("mirror item {pk}");
    let what = what.as_str();
    let entity_key = required(opt_string(item, ENTITY_KEY, what)?, ENTITY_KEY, what)?.to_owned();
    let body = required(opt_string(item, BODY, what)?, BODY, what)?;
    let mut state = serde_json::from_str(body).map_err(|e| corrupt(what, BODY, &format!("does not decode: {e}")))?;
    for field in total_fields(item) {
        let name = total_attribute(field);
        let total: i64 = required(opt_number(item, &name, what)?, &name, what)?;
        match &mut state {
            Value::Object(fields) => {
                fields.insert(field.to_owned(), Value::from(total));
            }
            _ => return Err(corrupt(what, BODY, "is not an object, yet the row holds totals")),
        }
    }
    let order = match opt_number::<i64>(item, ORDER_NANOS, what)? {
        Some(nanos) => Some(OrderKey { nanos, version: opt_number(item, ORDER_VERSION, what)?.unwrap_or(0) }),
        None => None,
    };
    let deleted = match item.get(DELETED) {
        None => false,
        Some(AttributeValue::Bool(deleted)) => *deleted,
        Some(_) => return Err(corrupt(what, DELETED, "is not a boolean")),
    };
    Ok(MirrorRecord {
        entity_key,
        state,
        order,
        content_hash: opt_string(item, CONTENT_HASH, what)?.map(str::to_owned),
        event_id: opt_string(item, EVENT_ID, what)?.map(str::to_owned),
        fence: opt_number(item, FENCE, what)?.unwrap_or(0),
        deleted,
        modified_at: opt_number(item, MODIFIED_AT, what)?.map(DateTime::from_timestamp_nanos),
        applied_at: DateTime::from_timestamp_nanos(required(opt_number(item, APPLIED_AT, what)?, APPLIED_AT, what)?),
    })
}

/// One stored effect: (applied_at ns, recorded_at ns, event id, entity key).
pub(super) fn decode_effect(item: &Item) -> Result<(i64, i64, String, String), StoreError> {
    let pk = opt_string(item, PK, "effect item")?.unwrap_or_default();
    let what = format!("effect item {pk}");
    let what = what.as_str();
    Ok((
        required(opt_number(item, APPLIED_AT, what)?, APPLIED_AT, what)?,
        opt_number(item, RECORDED_AT, what)?.unwrap_or(0),
        required(opt_string(item, EVENT_ID, what)?, EVENT_ID, what)?.to_owned(),
        required(opt_string(item, ENTITY_KEY, what)?, ENTITY_KEY, what)?.to_owned(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record() -> MirrorRecord {
        MirrorRecord {
            entity_key: "t/s/product/1".into(),
            state: json!({"name": "x", "tags": [1, 2]}),
            order: Some(OrderKey { nanos: -5, version: 3 }),
            content_hash: Some("ab".repeat(32)),
            event_id: Some("ev-1".into()),
            fence: 7,
            deleted: false,
            modified_at: Some(DateTime::from_timestamp_nanos(1_000)),
            applied_at: DateTime::from_timestamp_nanos(2_000),
        }
    }

    #[test]
    fn a_mirror_row_round_trips() {
        let item = mirror_item(&record(), 4, "c1").expect("encode");
        assert_eq!(decode_mirror(&item).expect("decode"), record());
        assert_eq!(version(&item, "x").expect("version"), 4);
        let mut unversioned = item.clone();
        unversioned.remove(VERSION);
        assert!(matches!(version(&unversioned, "x"), Err(StoreError::Corrupt(_))));
        let bare = MirrorRecord { order: None, content_hash: None, event_id: None, modified_at: None, ..record() };
        assert_eq!(decode_mirror(&mirror_item(&bare, 1, "c1").expect("encode")).expect("decode"), bare);
    }

    #[test]
    fn totals_are_laid_over_the_body() {
        let mut item = mirror_item(&MirrorRecord { state: json!({"bin": "7"}), ..record() }, 1, "c1").expect("encode");
        item.insert(total_attribute("quantity"), n(-12));
        item.insert(total_attribute("reserved"), n(3));
        let state = decode_mirror(&item).expect("decode").state;
        assert_eq!(state, json!({"bin": "7", "quantity": -12, "reserved": 3}));
        let mut fields: Vec<&str> = total_fields(&item).collect();
        fields.sort_unstable();
        assert_eq!(fields, ["quantity", "reserved"]);
        item.insert(total_attribute("quantity"), n("1e40"));
        assert!(matches!(decode_mirror(&item), Err(StoreError::Corrupt(_))), "out of i64 range");
        item.insert(total_attribute("quantity"), n(1));
        item.insert(BODY.into(), s("null"));
        assert!(matches!(decode_mirror(&item), Err(StoreError::Corrupt(_))), "totals need an object");
    }

    #[test]
    fn a_damaged_item_is_corrupt() {
        let mut item = mirror_item(&record(), 1, "c1").expect("encode");
        item.insert(BODY.into(), s("{not json"));
        assert!(matches!(decode_mirror(&item), Err(StoreError::Corrupt(_))));
        let mut item = mirror_item(&record(), 1, "c1").expect("encode");
        item.insert(FENCE.into(), s("7"));
        assert!(matches!(decode_mirror(&item), Err(StoreError::Corrupt(_))));
        item.insert(FENCE.into(), n(7));
        assert!(decode_mirror(&item).is_ok());
        item.remove(APPLIED_AT);
        assert!(matches!(decode_mirror(&item), Err(StoreError::Corrupt(_))));
        let effect = key(effect_pk("ev-1"), EFFECT);
        assert!(matches!(decode_effect(&effect), Err(StoreError::Corrupt(_))));
    }
}
