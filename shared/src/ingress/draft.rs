//! What a mapper makes of an authenticated delivery: the change it describes (a [`Draft`] of an envelope), a
//! delivery that is deliberately not synced ([`Ignored`]), or the reason it can't be mapped ([`MappingError`]).
//! A draft becomes an envelope body only after the spec's own parser accepted it.

use crate::model::{Envelope, EnvelopeError, Kind};
use serde_json::{Map, Value};

/// What one authenticated delivery maps to.
#[derive(Debug)]
pub(super) enum Mapping {
    /// A change of one entity.
    Change(Draft),
    /// Nothing to sync.
    Ignore(Ignored),
}

/// The fields of one envelope (spec §1) before validation.
#[derive(Debug)]
pub(super) struct Draft {
    /// `issue`, `product`, …
    pub entity_type: String,
    /// The resource's id in the source.
    pub external_id: String,
    /// The resource's `updated_at`, as the source wrote it.
    pub updated_at: String,
    /// `create`, `upsert` or `delete`.
    pub kind: Kind,
    /// The tenant, when the source names one.
    pub tenant: Option<String>,
    /// The provider's key for the event, the same on every redelivery; the event id is `<source>:<key>`.
    pub event_key: Option<String>,
    /// The provider's delivery id, for tracing.
    pub delivery_id: Option<String>,
    /// The resource's state.
    pub payload: Value,
}

/// A mapped delivery: the envelope body to queue, and the envelope it parses to.
#[derive(Debug, Clone, PartialEq)]
pub struct MappedEvent {
    /// The envelope as the JSON text of one queue message body.
    pub body: String,
    /// The same envelope, validated: its event id, entity key and order key.
    pub envelope: Envelope,
}

impl Draft {
    /// The envelope body for `source`, checked by the spec's parser (names, id lengths, the timestamp, the
    /// payload limit). A delete carries `version: 1`: when the source gives a delete the same `updated_at` as
    /// the last state (GitHub does, to the second), the delete still orders after it.
    pub(super) fn finish(self, source: &str, max_payload_bytes: usize) -> Result<MappedEvent, MappingError> {
        let mut map = Map::new();
        map.insert("source".into(), source.into());
        map.insert("entity_type".into(), self.entity_type.into());
        map.insert("external_id".into(), self.external_id.into());
        map.insert("updated_at".into(), self.updated_at.into());
        if self.kind == Kind::Delete {
            map.insert("version".into(), 1.into());
        }
        let kind = match self.kind {
            Kind::Create => "create",
            Kind::Upsert => "upsert",
            Kind::Delete => "delete",
        };
        map.insert("kind".into(), kind.into());
        let event_id = self.event_key.map(|key| format!("{source}:{key}"));
        for (field, value) in [("tenant", self.tenant), ("event_id", event_id), ("delivery_id", self.delivery_id)] {
            if let Some(value) = value {
                map.insert(field.into(), value.into());
            }
        }
        map.insert("payload".into(), self.payload);
        let body = Value::Object(map.clone()).to_string();
        let envelope = Envelope::from_object(map, max_payload_bytes).map_err(MappingError::Envelope)?;
        Ok(MappedEvent { body, envelope })
    }
}

/// An authenticated delivery that is not synced; answered 200 and not queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ignored {
    /// GitHub's `ping`, sent when a webhook is created.
    Ping,
    /// An event type or topic this source does not sync (e.g. GitHub `push`, Shopify `orders/create`).
    NotSynced {
        /// The event type or topic.
        event: String,
    },
}

impl Ignored {
    /// A short label for metrics: `ping` or `not_synced`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Ping => "ping",
            Self::NotSynced { .. } => "not_synced",
        }
    }
}

/// Why an authenticated delivery can't become an envelope; the caller records it `rejected` with this reason and
/// archives the raw body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    /// The body is not JSON (a GitHub webhook set to `application/x-www-form-urlencoded`, for one).
    #[error("the body is not JSON ({0}); configure the webhook to send application/json")]
    NotJson(String),
    /// A header the source always sends is absent.
    #[error("header {0} is missing")]
    MissingHeader(&'static str),
    /// A field the mapping needs is absent or of the wrong type.
    #[error("field {pointer} is missing or not {expected}")]
    Missing {
        /// Where in the body, as a JSON pointer.
        pointer: String,
        /// What it should be.
        expected: &'static str,
    },
    /// The mapped envelope breaks the envelope's rules (spec §1).
    #[error("the mapped envelope is invalid: {0}")]
    Envelope(EnvelopeError),
}

/// The body as JSON.
pub(super) fn parse(body: &[u8]) -> Result<Value, MappingError> {
    serde_json::from_slice(body).map_err(|e| MappingError::NotJson(e.to_string()))
}

/// The string at `pointer`; `null` counts as absent.
pub(super) fn text<'a>(body: &'a Value, pointer: &str) -> Result<&'a str, MappingError> {
    optional_text(body, pointer)
        .ok_or_else(|| MappingError::Missing { pointer: pointer.to_owned(), expected: "a string" })
}

/// The string at `pointer`, if there is one.
pub(super) fn optional_text<'a>(body: &'a Value, pointer: &str) -> Option<&'a str> {
    body.pointer(pointer).and_then(Value::as_str)
}

/// An id at `pointer`: a string, or an integer written out in full (Shopify's ids pass 2^53).
pub(super) fn id(body: &Value, pointer: &str) -> Result<String, MappingError> {
    match body.pointer(pointer) {
        Some(Value::String(text)) => Ok(text.clone()),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Ok(n.to_string()),
        _ => Err(MappingError::Missing { pointer: pointer.to_owned(), expected: "a string or an integer" }),
    }
}

/// The object at `pointer`.
pub(super) fn object<'a>(body: &'a Value, pointer: &str) -> Result<&'a Value, MappingError> {
    body.pointer(pointer)
        .filter(|v| v.is_object())
        .ok_or_else(|| MappingError::Missing { pointer: pointer.to_owned(), expected: "an object" })
}
