//! The wire format: the JSON body of a delivery, and the JSON a receiver may answer with.

use crate::destination::Change;
use crate::model::{Direction, Kind, OrderKey};
use crate::settings::Policy;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::borrow::Cow;

/// The body of one delivery (`POST`, `Content-Type: application/json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireChange<'a> {
    /// The event's id; also the `Idempotency-Key` header.
    pub event_id: Cow<'a, str>,
    /// The entity.
    pub entity: WireEntity<'a>,
    /// `upsert`, `delete` or `create`.
    pub kind: Kind,
    /// `inbound` (from an external system) or `outbound` (ours, to write into one); absent means inbound.
    #[serde(default)]
    pub direction: Direction,
    /// `latest_wins` (the payload is the state) or `in_order` (the payload is a delta).
    pub policy: Policy,
    /// The order key: write only when it is newer than the stored one.
    pub order: WireOrder,
    /// SHA-256 (hex) of the event's kind and payload: the same order key and hash is the same change.
    pub content_hash: Cow<'a, str>,
    /// The resource's state (or, for `in_order` types, the delta).
    pub payload: Cow<'a, Value>,
    /// The claim's fencing token: grows with every claim of the entity; refuse a write with a smaller one.
    pub fence: u64,
    /// Ordering was skipped on purpose (`reprocess --force`): write even if older.
    pub forced: bool,
    /// This attempt's number for the event (1 for the first).
    pub attempt: u32,
    /// An earlier attempt may have been stored: look up `event_id` before writing again.
    pub previous_attempt_unknown: bool,
}

/// The entity of a delivery: its key and the key's parts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireEntity<'a> {
    /// `tenant/source/entity_type/external_id`.
    pub key: Cow<'a, str>,
    /// The tenant.
    pub tenant: Cow<'a, str>,
    /// The integration (`github`, `shopify`, …).
    pub source: Cow<'a, str>,
    /// The kind of resource.
    pub entity_type: Cow<'a, str>,
    /// The resource's id in the external system.
    pub external_id: Cow<'a, str>,
}

/// An order key on the wire: compare `(updated_at, version)`; `updated_at` is fixed-width RFC 3339 in UTC with
/// nanoseconds (`2026-05-01T12:00:00.000000000Z`), so its text sorts like the time, and `null` (a `create` without
/// a timestamp) sorts before every time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireOrder {
    /// When the resource was updated in the external system.
    #[serde(with = "fixed_width")]
    pub updated_at: Option<DateTime<Utc>>,
    /// The tie-breaker (0 when absent).
    pub version: i64,
}

impl<'a> WireChange<'a> {
    /// The body of `change`, borrowing what it can.
    pub fn of(change: &Change<'a>) -> Self {
        let entity = change.entity;
        Self {
            event_id: Cow::Borrowed(change.event_id.as_str()),
            entity: WireEntity {
                key: Cow::Owned(entity.to_string()),
                tenant: Cow::Borrowed(&entity.tenant),
                source: Cow::Borrowed(&entity.source),
                entity_type: Cow::Borrowed(&entity.entity_type),
                external_id: Cow::Borrowed(&entity.external_id),
            },
            kind: change.kind,
            direction: change.direction,
            policy: change.policy,
            order: WireOrder::of(change.order),
            content_hash: Cow::Owned(change.content_hash.to_hex()),
            payload: Cow::Borrowed(change.payload),
            fence: change.fence,
            forced: change.forced,
            attempt: change.attempt,
            previous_attempt_unknown: change.previous_attempt_unknown,
        }
    }
}

impl WireOrder {
    /// The wire form of `order`.
    pub fn of(order: OrderKey) -> Self {
        Self { updated_at: order.updated_at(), version: order.version }
    }

    /// The order key it stands for (`None` for a time outside the representable range).
    pub fn order_key(&self) -> Option<OrderKey> {
        match self.updated_at {
            Some(at) => OrderKey::at(at, self.version),
            None => Some(OrderKey { version: self.version, ..OrderKey::BEFORE_ANY }),
        }
    }
}

/// `updated_at` as fixed-width text.
mod fixed_width {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(at: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match at {
            Some(at) => s.serialize_str(&at.to_rfc3339_opts(SecondsFormat::Nanos, true)),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        Option::<DateTime<Utc>>::deserialize(d)
    }
}

/// What a receiver may answer in a JSON body (every field optional; unknown fields ignored).
#[derive(Debug, Default, Deserialize)]
pub(super) struct Answer {
    /// `"already_applied"` in a 2xx answer: this event was stored before.
    pub result: Option<String>,
    /// In a 409: the newer event or record the receiver holds.
    pub superseded_by: Option<String>,
    /// In a 424: the entity key the change needs first.
    pub needs: Option<String>,
    /// In a 424: an envelope to send to obtain it.
    pub request: Option<Value>,
}

impl Answer {
    /// The answer in `body`, or an empty one when it is not a JSON object.
    pub fn of(body: &[u8]) -> Self {
        serde_json::from_slice(body).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{content_hash, EntityKey, EventId};
    use serde_json::json;

    #[test]
    fn a_change_goes_on_the_wire_with_every_field_the_protocol_names() {
        let (id, entity) = (EventId::parse("ev-1").unwrap(), EntityKey::new("acme", "shop", "product", "9").unwrap());
        let at = DateTime::parse_from_rfc3339("2026-05-01T12:00:00.5Z").unwrap().with_timezone(&Utc);
        let payload = json!({"price": "10.00"});
        let change = Change {
            event_id: &id,
            entity: &entity,
            order: OrderKey::at(at, 3).unwrap(),
            updated_at: Some(at),
            content_hash: content_hash(Kind::Upsert, &payload),
            kind: Kind::Upsert,
            direction: Direction::Inbound,
            payload: &payload,
            fence: 7,
            policy: Policy::LatestWins,
            forced: false,
            attempt: 2,
            previous_attempt_unknown: true,
            deadline: None,
            trace_id: None,
        };
        let body = serde_json::to_value(WireChange::of(&change)).unwrap();
        assert_eq!(
            body,
            json!({
                "event_id": "ev-1",
                "entity": {"key": "acme/shop/product/9", "tenant": "acme", "source": "shop",
                           "entity_type": "product", "external_id": "9"},
                "kind": "upsert",
                "direction": "inbound",
                "policy": "latest_wins",
                "order": {"updated_at": "2026-05-01T12:00:00.500000000Z", "version": 3},
                "content_hash": change.content_hash.to_hex(),
                "payload": {"price": "10.00"},
                "fence": 7,
                "forced": false,
                "attempt": 2,
                "previous_attempt_unknown": true,
            })
        );
        let back: WireChange<'_> = serde_json::from_value(body).unwrap();
        assert_eq!(back, WireChange::of(&change));
        assert_eq!(back.order.order_key(), Some(change.order));
    }

    #[test]
    fn a_create_without_a_timestamp_has_a_null_updated_at() {
        let order = WireOrder::of(OrderKey::BEFORE_ANY);
        assert_eq!(serde_json::to_value(order).unwrap(), json!({"updated_at": null, "version": 0}));
        assert_eq!(order.order_key(), Some(OrderKey::BEFORE_ANY));
    }

    #[test]
    fn the_fixed_width_text_sorts_like_the_time() {
        let text = |s: &str| {
            let at = DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
            serde_json::to_value(WireOrder { updated_at: Some(at), version: 0 }).unwrap()["updated_at"].clone()
        };
        let (whole, fraction) = (text("2026-05-01T12:00:01Z"), text("2026-05-01T12:00:00.9Z"));
        assert!(whole.as_str() > fraction.as_str(), "{whole} vs {fraction}");
    }
}
