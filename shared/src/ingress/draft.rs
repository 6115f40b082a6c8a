//! What a mapper makes of an authenticated delivery: the change it describes (a [`Draft`] of an envelope), a
//! delivery that is deliberately not synced ([`Ignored`]), or the reason it can't be mapped ([`MappingError`]).
//! A body is read with the engine's own JSON parser (a key named twice is refused), and a draft becomes an
//! envelope body only after [`Message::parse`] — the processor's own check — accepted that very text.

use crate::model::unique_keys::{self, UniqueKeysError};
use crate::model::{Envelope, EnvelopeError, Kind, Message, REDRIVE_FIELD};
use serde_json::{Map, Value};

/// The `version` of a create: a create and an update of the same second (GitHub's and Shopify's `updated_at` have
/// one-second resolution) share `updated_at`, and the create must order before the update, whichever arrives first.
pub const CREATE_VERSION: i64 = -1;

/// The `version` of a delete: GitHub gives a delete the `updated_at` of the last state it deletes, and the delete
/// must order after that state, so that a late edit does not resurrect the resource.
pub const DELETE_VERSION: i64 = 1;

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
    /// The envelope body for `source`, checked as the processor will check it: [`Message::parse`] of the very
    /// text queued (names, id lengths, the timestamp, the payload limit, the nesting depth the envelope adds). A
    /// create carries `version: -1` ([`CREATE_VERSION`]) and a delete `version: 1` ([`DELETE_VERSION`]): within
    /// one second a create orders before the resource's updates, and a delete after them.
    pub(super) fn finish(self, source: &str, max_payload_bytes: usize) -> Result<MappedEvent, MappingError> {
        let mut map = Map::new();
        map.insert("source".into(), source.into());
        map.insert("entity_type".into(), self.entity_type.into());
        map.insert("external_id".into(), self.external_id.into());
        map.insert("updated_at".into(), self.updated_at.into());
        let (kind, version) = match self.kind {
            Kind::Create => ("create", Some(CREATE_VERSION)),
            Kind::Upsert => ("upsert", None),
            Kind::Delete => ("delete", Some(DELETE_VERSION)),
        };
        if let Some(version) = version {
            map.insert("version".into(), version.into());
        }
        map.insert("kind".into(), kind.into());
        let event_id = self.event_key.map(|key| format!("{source}:{key}"));
        for (field, value) in [("tenant", self.tenant), ("event_id", event_id), ("delivery_id", self.delivery_id)] {
            if let Some(value) = value {
                map.insert(field.into(), value.into());
            }
        }
        map.insert("payload".into(), self.payload);
        let body = Value::Object(map).to_string();
        match Message::parse(&body, max_payload_bytes) {
            Ok(Message::Envelope(envelope)) => Ok(MappedEvent { body, envelope: *envelope }),
            // Not reached: the body's top-level keys are the ones above.
            Ok(Message::Redrive { .. }) => Err(MappingError::Envelope(EnvelopeError::Invalid {
                field: REDRIVE_FIELD,
                value: String::new(),
                expected: "an envelope, not a re-drive".into(),
            })),
            // The text was written by serde_json from a value: the one way it is not JSON to the parser is a
            // nesting depth the envelope pushed past the limit.
            Err(EnvelopeError::NotJson(detail)) => Err(MappingError::TooDeep(detail)),
            Err(error) => Err(MappingError::Envelope(error)),
        }
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
    /// An object in the body names a key twice: which value counts would depend on the parser (the engine's
    /// refuses such a body, spec §1).
    #[error("key {path} appears twice in one object of the body, so its value is ambiguous")]
    DuplicateKey {
        /// The repeated key's path from the top of the body, e.g. `variants[0].sku`.
        path: String,
    },
    /// The body, or the envelope around it (one level deeper than a body that is the payload), is nested deeper
    /// than the engine's parser allows.
    #[error("the body is nested too deeply for its envelope to be parsed ({0})")]
    TooDeep(String),
    /// A header the source always sends is absent.
    #[error("header {0} is missing")]
    MissingHeader(&'static str),
    /// A header's value is not what the source sends.
    #[error("header {header} = {value:?} is invalid: expected {expected}")]
    InvalidHeader {
        /// The header.
        header: &'static str,
        /// Its value, cut to 64 characters.
        value: String,
        /// What it should be.
        expected: &'static str,
    },
    /// A time header the order depends on is further ahead of this receiver's clock than clocks drift: the header
    /// is not signed, and a replayed body with a time far ahead would order after every later change.
    #[error("header {header} = {value} is more than {ahead_seconds} s ahead of this receiver's clock ({now})")]
    AheadOfClock {
        /// The header.
        header: &'static str,
        /// Its value, as a whole-second RFC 3339 time.
        value: String,
        /// The receiver's time, as a whole-second RFC 3339 time.
        now: String,
        /// How far ahead a time may be, in seconds.
        ahead_seconds: i64,
    },
    /// The event type says one resource but the body is another event type's (GitHub's `issue_comment` bodies
    /// carry the issue too): a signed body relabelled through its unsigned event type header.
    #[error("header X-GitHub-Event says {event}, but the body has {field}: it is another event type's body")]
    AnotherEventsBody {
        /// The event type the header names.
        event: String,
        /// The field that gives the body away.
        field: &'static str,
    },
    /// The topic says delete but the body is a resource's state (it has `updated_at`): a signed body relabelled
    /// through its unsigned topic header.
    #[error("topic {topic} is a delete, but the body has updated_at: a delete's body carries only ids")]
    StateUnderDeleteTopic {
        /// The topic.
        topic: String,
    },
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

impl MappingError {
    /// The field (JSON pointer, key path or header) the error is about, when there is one.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::Missing { pointer, .. } => Some(pointer),
            Self::DuplicateKey { path } => Some(path),
            Self::MissingHeader(header) | Self::InvalidHeader { header, .. } | Self::AheadOfClock { header, .. } => {
                Some(header)
            }
            Self::StateUnderDeleteTopic { .. } => Some("/updated_at"),
            Self::AnotherEventsBody { field, .. } => Some(field),
            Self::Envelope(error) => error.field(),
            Self::NotJson(_) | Self::TooDeep(_) => None,
        }
    }
}

/// The body as JSON, read as the engine reads a message: one value, no key named twice in an object.
pub(super) fn parse(body: &[u8]) -> Result<Value, MappingError> {
    let text = std::str::from_utf8(body).map_err(|e| MappingError::NotJson(e.to_string()))?;
    unique_keys::parse(text).map_err(|e| match e {
        UniqueKeysError::DuplicateKey { path } => MappingError::DuplicateKey { path },
        // serde_json reports its nesting limit as a syntax error; say what it is.
        UniqueKeysError::Syntax(e) if e.to_string().starts_with("recursion limit exceeded") => {
            MappingError::TooDeep(e.to_string())
        }
        UniqueKeysError::Syntax(e) => MappingError::NotJson(e.to_string()),
    })
}

/// `value` cut to 64 characters, for an error message.
pub(super) fn cut(value: &str) -> String {
    value.chars().take(64).collect()
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
