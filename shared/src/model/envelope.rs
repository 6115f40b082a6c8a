//! Parsing and validating one SQS message body into an [`Envelope`] (spec §1), with errors that name the
//! field, the value and what was expected.

use super::canonical::{canonical_json, content_hash_of_canonical};
use super::ids::{check_name, ContentHash, EntityKey, EventId, InvalidId, OrderKey, DEFAULT_TENANT};
use super::unique_keys::{self, UniqueKeysError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;

/// What a change does to its resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Create or replace the resource's state (the default).
    #[default]
    Upsert,
    /// The resource was deleted.
    Delete,
    /// The resource was created; may come without `updated_at`.
    Create,
}

/// Which way the change flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// External system → us (the default).
    #[default]
    Inbound,
    /// Us → external system.
    Outbound,
}

/// A validated event envelope.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// The client's `event_id`, or the derived one.
    pub event_id: EventId,
    /// Whether `event_id` came from the client (then a different content under it is a conflict).
    pub client_event_id: bool,
    /// `tenant/source/entity_type/external_id`.
    pub entity: EntityKey,
    /// (`updated_at`, `version`).
    pub order: OrderKey,
    /// `updated_at` in UTC, when given.
    pub updated_at: Option<DateTime<Utc>>,
    /// `upsert`, `delete` or `create`.
    pub kind: Kind,
    /// `inbound` or `outbound`.
    pub direction: Direction,
    /// The resource's state.
    pub payload: Value,
    /// SHA-256 of the canonical JSON of (`kind`, `payload`).
    pub content_hash: ContentHash,
    /// The provider's delivery id, for tracing.
    pub delivery_id: Option<String>,
    /// The run or event that caused this one (reconciliation, dependencies).
    pub caused_by: Option<String>,
}

/// What arrives on the ingest queue: an envelope, or the engine's own request to re-drive a stored event.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A new or resent change.
    Envelope(Box<Envelope>),
    /// Re-drive a stored event (a promoted `next`, a reprocess).
    Redrive {
        /// The stored event.
        event_id: EventId,
        /// The event's entity, when the sender knew it, so that the event's record and its entity's head are read
        /// together (one request on DynamoDB) and the re-drive runs in its entity's lane. Only a hint: the record's
        /// own entity decides, and a head of another entity is not used.
        entity: Option<EntityKey>,
        /// Why it is re-driven.
        reason: RedriveReason,
        /// Skip the ordering rules and apply even if stale (recorded as forced).
        force: bool,
    },
}

/// Why a stored event is re-driven.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RedriveReason {
    /// It was `next` and its entity became free, or the sweeper found it stranded: continue it if not done.
    Promotion,
    /// An operator asked to run it again: a terminal event starts over at `received`.
    Reprocess,
    /// Verification found the destination differing from the replay of the entity's events (spec §7): the newest
    /// event starts over like a reprocess, forced, and its history says it was a repair.
    Repair,
}

/// Why a message body is not a valid envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// The body is not JSON.
    #[error("the message body is not JSON ({0}); send one JSON object per message")]
    NotJson(String),
    /// The body is JSON but not an object.
    #[error(
        "the message body is {0}, expected a JSON object with source, entity_type, external_id, updated_at and payload"
    )]
    NotObject(&'static str),
    /// A required field is absent.
    #[error("field `{0}` is missing")]
    Missing(&'static str),
    /// A field has the wrong JSON type.
    #[error("field `{field}` is {found}, expected {expected}")]
    WrongType {
        /// The field.
        field: &'static str,
        /// The JSON type found.
        found: &'static str,
        /// What was expected.
        expected: &'static str,
    },
    /// A field's value breaks its rule.
    #[error("field `{field}` = {value:?} is invalid: expected {expected}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// The value, cut to 80 characters.
        value: String,
        /// What was expected.
        expected: String,
    },
    /// An object in the body names a key twice (at the top or anywhere inside `payload`): which value counts would
    /// depend on the parser, and so would the entity, the order and the content hash.
    #[error("field `{path}` appears twice in one object, so its value is ambiguous; send each key once")]
    DuplicateKey {
        /// The repeated key's path from the top of the body, e.g. `external_id` or `payload.items[2].sku`.
        path: String,
    },
    /// The payload is larger than the configured limit.
    #[error("field `payload` is {size} bytes, over the limit of {limit} bytes; split the resource or raise max_payload_bytes")]
    PayloadTooLarge {
        /// The payload's size as JSON text.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
}

impl EnvelopeError {
    /// The field the error is about, when there is one.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::Missing(f) => Some(f),
            Self::WrongType { field, .. } | Self::Invalid { field, .. } => Some(field),
            Self::DuplicateKey { path } => Some(path),
            Self::PayloadTooLarge { .. } => Some("payload"),
            Self::NotJson(_) | Self::NotObject(_) => None,
        }
    }
}

fn from_invalid(field: &'static str, e: InvalidId) -> EnvelopeError {
    EnvelopeError::Invalid { field, value: e.value, expected: e.expected.to_owned() }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

struct Fields<'a>(&'a Map<String, Value>);

impl<'a> Fields<'a> {
    fn opt_str(&self, field: &'static str) -> Result<Option<&'a str>, EnvelopeError> {
        match self.0.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(EnvelopeError::WrongType { field, found: json_type(other), expected: "a string" }),
        }
    }

    fn str(&self, field: &'static str) -> Result<&'a str, EnvelopeError> {
        self.opt_str(field)?.ok_or(EnvelopeError::Missing(field))
    }
}

/// The body of the engine's own re-drive messages:
/// `{"synctrail_redrive": {"event_id": "…", "entity": {"tenant": "…", "source": "…", "entity_type": "…",
/// "external_id": "…"}, "reason": "promotion", "force": false}}` (`entity` may be absent: messages sent before it
/// was added).
pub const REDRIVE_FIELD: &str = "synctrail_redrive";

impl Message {
    /// Parses one SQS message body; payloads over `max_payload_bytes` and objects naming a key twice are refused.
    pub fn parse(body: &str, max_payload_bytes: usize) -> Result<Self, EnvelopeError> {
        let value = unique_keys::parse(body).map_err(|e| match e {
            UniqueKeysError::Syntax(e) => EnvelopeError::NotJson(e.to_string()),
            UniqueKeysError::DuplicateKey { path } => EnvelopeError::DuplicateKey { path },
        })?;
        let Value::Object(map) = value else {
            return Err(EnvelopeError::NotObject(json_type(&value)));
        };
        if let Some(redrive) = map.get(REDRIVE_FIELD) {
            return parse_redrive(redrive);
        }
        Envelope::from_object(map, max_payload_bytes).map(|e| Self::Envelope(Box::new(e)))
    }

    /// The body of a re-drive message for `event_id`, naming its entity when the sender knows it.
    pub fn redrive_body(event_id: &EventId, entity: Option<&EntityKey>, reason: RedriveReason, force: bool) -> String {
        let mut redrive = serde_json::json!({ "event_id": event_id, "reason": reason, "force": force });
        if let (Some(entity), Value::Object(map)) = (entity, &mut redrive) {
            map.insert("entity".to_owned(), serde_json::json!(entity));
        }
        serde_json::json!({ REDRIVE_FIELD: redrive }).to_string()
    }
}

fn parse_redrive(value: &Value) -> Result<Message, EnvelopeError> {
    let Value::Object(map) = value else {
        return Err(EnvelopeError::WrongType { field: REDRIVE_FIELD, found: json_type(value), expected: "an object" });
    };
    let fields = Fields(map);
    let event_id = EventId::parse(fields.str("event_id")?).map_err(|e| from_invalid("event_id", e))?;
    let reason = match fields.opt_str("reason")? {
        None | Some("promotion") => RedriveReason::Promotion,
        Some("reprocess") => RedriveReason::Reprocess,
        Some("repair") => RedriveReason::Repair,
        Some(other) => return Err(invalid_value("reason", other, "promotion, reprocess or repair")),
    };
    let force = match map.get("force") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(EnvelopeError::WrongType { field: "force", found: json_type(other), expected: "a boolean" })
        }
    };
    let entity = match map.get("entity") {
        None | Some(Value::Null) => None,
        Some(entity) => Some(parse_redrive_entity(entity)?),
    };
    Ok(Message::Redrive { event_id, entity, reason, force })
}

/// A re-drive's `entity`: an object of the four parts of an [`EntityKey`], each checked as an envelope's is.
fn parse_redrive_entity(value: &Value) -> Result<EntityKey, EnvelopeError> {
    const EXPECTED: &str = "an object with tenant, source, entity_type and external_id";
    let Value::Object(map) = value else {
        return Err(EnvelopeError::WrongType { field: "entity", found: json_type(value), expected: EXPECTED });
    };
    let field = |part: &str| match part {
        "tenant" => "entity.tenant",
        "source" => "entity.source",
        "entity_type" => "entity.entity_type",
        "external_id" => "entity.external_id",
        _ => "entity",
    };
    let part = |name: &str| match map.get(name) {
        Some(Value::String(part)) => Ok(part.as_str()),
        None => Err(EnvelopeError::Missing(field(name))),
        Some(other) => {
            Err(EnvelopeError::WrongType { field: field(name), found: json_type(other), expected: "a string" })
        }
    };
    EntityKey::new(part("tenant")?, part("source")?, part("entity_type")?, part("external_id")?)
        .map_err(|e| from_invalid(field(e.what), e))
}

impl Envelope {
    pub(crate) fn from_object(mut map: Map<String, Value>, max_payload_bytes: usize) -> Result<Self, EnvelopeError> {
        let f = Fields(&map);
        let source = f.str("source")?;
        let entity_type = f.str("entity_type")?;
        let external_id = f.str("external_id")?;
        let tenant = f.opt_str("tenant")?.unwrap_or(DEFAULT_TENANT);
        check_name("source", source).map_err(|e| from_invalid("source", e))?;
        check_name("entity_type", entity_type).map_err(|e| from_invalid("entity_type", e))?;
        check_name("tenant", tenant).map_err(|e| from_invalid("tenant", e))?;
        let entity =
            EntityKey::new(tenant, source, entity_type, external_id).map_err(|e| from_invalid("external_id", e))?;

        let kind = match f.opt_str("kind")? {
            None | Some("upsert") => Kind::Upsert,
            Some("delete") => Kind::Delete,
            Some("create") => Kind::Create,
            Some(other) => return Err(invalid_value("kind", other, "one of upsert, delete, create")),
        };
        let direction = match f.opt_str("direction")? {
            None | Some("inbound") => Direction::Inbound,
            Some("outbound") => Direction::Outbound,
            Some(other) => return Err(invalid_value("direction", other, "inbound or outbound")),
        };
        let version = match map.get("version") {
            None | Some(Value::Null) => 0,
            Some(Value::Number(n)) => {
                n.as_i64().ok_or_else(|| invalid_value("version", &n.to_string(), "an integer"))?
            }
            Some(other) => {
                return Err(EnvelopeError::WrongType {
                    field: "version",
                    found: json_type(other),
                    expected: "an integer",
                })
            }
        };
        let updated_at = match f.opt_str("updated_at")? {
            Some(text) => Some(parse_timestamp(text)?),
            None if kind == Kind::Create => None,
            None => return Err(EnvelopeError::Missing("updated_at")),
        };
        let order = match updated_at {
            Some(at) => OrderKey::at(at, version)
                .ok_or_else(|| invalid_value("updated_at", &at.to_rfc3339(), "a time between 1678 and 2261"))?,
            None => OrderKey { version, ..OrderKey::BEFORE_ANY },
        };

        let payload_text = canonical_json(map.get("payload").ok_or(EnvelopeError::Missing("payload"))?);
        if payload_text.len() > max_payload_bytes {
            return Err(EnvelopeError::PayloadTooLarge { size: payload_text.len(), limit: max_payload_bytes });
        }
        let content_hash = content_hash_of_canonical(kind, &payload_text);

        let delivery_id = bounded_text(&f, "delivery_id")?;
        let caused_by = bounded_text(&f, "caused_by")?;
        let (event_id, client_event_id) = match f.opt_str("event_id")? {
            Some(id) => (EventId::parse(id).map_err(|e| from_invalid("event_id", e))?, true),
            None => (EventId::derived(&entity, &order, &content_hash), false),
        };
        // Moved out, not cloned: the body's tree is dropped with this call anyway.
        let payload = map.remove("payload").ok_or(EnvelopeError::Missing("payload"))?;
        Ok(Self {
            event_id,
            client_event_id,
            entity,
            order,
            updated_at,
            kind,
            direction,
            payload,
            content_hash,
            delivery_id,
            caused_by,
        })
    }

    /// Rebuilds the envelope of a stored event from its metadata and archived payload.
    pub fn rebuild(record: &super::record::EventRecord, payload: Value) -> Option<Self> {
        Some(Self {
            event_id: record.event_id.clone(),
            client_event_id: record.client_event_id,
            entity: record.entity.clone()?,
            order: record.order?,
            updated_at: record.external_at,
            kind: record.kind?,
            direction: record.direction.unwrap_or_default(),
            payload,
            content_hash: record.content_hash?,
            delivery_id: record.delivery_id.clone(),
            caused_by: record.caused_by.clone(),
        })
    }

    /// The envelope as JSON again: what a re-drive sends and what `cargo lambda invoke` fixtures hold.
    pub fn to_json(&self) -> Value {
        let mut map = Map::new();
        map.insert("event_id".into(), Value::String(self.event_id.to_string()));
        if self.entity.tenant != DEFAULT_TENANT {
            map.insert("tenant".into(), Value::String(self.entity.tenant.clone()));
        }
        map.insert("source".into(), Value::String(self.entity.source.clone()));
        map.insert("entity_type".into(), Value::String(self.entity.entity_type.clone()));
        map.insert("external_id".into(), Value::String(self.entity.external_id.clone()));
        if let Some(at) = self.updated_at {
            map.insert("updated_at".into(), Value::String(at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)));
        }
        if self.order.version != 0 {
            map.insert("version".into(), Value::from(self.order.version));
        }
        map.insert("kind".into(), serde_json::to_value(self.kind).unwrap_or(Value::Null));
        map.insert("direction".into(), serde_json::to_value(self.direction).unwrap_or(Value::Null));
        if let Some(d) = &self.delivery_id {
            map.insert("delivery_id".into(), Value::String(d.clone()));
        }
        if let Some(c) = &self.caused_by {
            map.insert("caused_by".into(), Value::String(c.clone()));
        }
        map.insert("payload".into(), self.payload.clone());
        Value::Object(map)
    }
}

fn invalid_value(field: &'static str, value: &str, expected: &str) -> EnvelopeError {
    EnvelopeError::Invalid { field, value: value.chars().take(80).collect(), expected: expected.to_owned() }
}

fn bounded_text(f: &Fields<'_>, field: &'static str) -> Result<Option<String>, EnvelopeError> {
    match f.opt_str(field)? {
        Some(text) if text.len() > 256 => Err(invalid_value(field, text, "at most 256 bytes")),
        other => Ok(other.map(str::to_owned)),
    }
}

/// Parses an RFC 3339 timestamp of any precision and offset into UTC.
fn parse_timestamp(text: &str) -> Result<DateTime<Utc>, EnvelopeError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| invalid_value("updated_at", text, "an RFC 3339 timestamp such as 2026-05-01T12:00:00.123Z"))
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Upsert => "upsert",
            Kind::Delete => "delete",
            Kind::Create => "create",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: usize = 256 * 1024;

    fn body(payload: &str) -> String {
        format!(
            r#"{{"source":"github","entity_type":"issue","external_id":"1","updated_at":"2026-05-01T12:00:00Z","payload":{payload}}}"#
        )
    }

    fn rejected(body: &str) -> EnvelopeError {
        match Message::parse(body, LIMIT) {
            Err(e) => e,
            Ok(message) => panic!("{body}: expected a rejection, got {message:?}"),
        }
    }

    #[test]
    fn a_repeated_top_level_field_is_ambiguous_and_named() {
        let twice = r#"{"source":"github","entity_type":"issue","external_id":"a","external_id":"b","updated_at":"2026-05-01T12:00:00Z","payload":{}}"#;
        let error = rejected(twice);
        assert_eq!(error, EnvelopeError::DuplicateKey { path: "external_id".into() });
        assert_eq!(error.field(), Some("external_id"));
        assert!(error.to_string().contains("`external_id` appears twice"), "{error}");
        let twice_the_same = r#"{"source":"github","source":"github","entity_type":"issue","external_id":"a","updated_at":"2026-05-01T12:00:00Z","payload":{}}"#;
        assert_eq!(rejected(twice_the_same).field(), Some("source"), "even with equal values");
    }

    #[test]
    fn a_repeated_key_inside_the_payload_is_ambiguous_and_named() {
        assert_eq!(rejected(&body(r#"{"title":"a","title":"b"}"#)).field(), Some("payload.title"));
        let nested = body(r#"{"lines":[{"sku":"x"},{"sku":"y","qty":1,"sku":"z"}]}"#);
        assert_eq!(rejected(&nested).field(), Some("payload.lines[1].sku"));
    }

    #[test]
    fn a_repeated_key_in_a_redrive_message_is_refused_too() {
        let redrive = r#"{"synctrail_redrive":{"event_id":"a","event_id":"b"}}"#;
        assert_eq!(rejected(redrive).field(), Some("synctrail_redrive.event_id"));
    }

    #[test]
    fn a_redrive_names_its_entity_and_one_sent_without_it_still_reads() {
        let id = EventId::parse("ev-1").expect("an id");
        let entity = EntityKey::new("default", "github", "issue", "octo/repo#7").expect("an entity");
        let body = Message::redrive_body(&id, Some(&entity), RedriveReason::Repair, true);
        let parsed = Message::parse(&body, LIMIT).expect("a re-drive");
        let expected =
            Message::Redrive { event_id: id.clone(), entity: Some(entity), reason: RedriveReason::Repair, force: true };
        assert_eq!(parsed, expected);
        let before = r#"{"synctrail_redrive":{"event_id":"ev-1","reason":"promotion","force":false}}"#;
        let expected = Message::Redrive { event_id: id, entity: None, reason: RedriveReason::Promotion, force: false };
        assert_eq!(Message::parse(before, LIMIT).expect("a re-drive without its entity"), expected);
    }

    #[test]
    fn a_redrive_entity_that_is_not_an_entity_key_is_refused_naming_the_part() {
        let with = |entity: &str| format!(r#"{{"synctrail_redrive":{{"event_id":"ev-1","entity":{entity}}}}}"#);
        assert_eq!(rejected(&with(r#""default/github/issue/7""#)).field(), Some("entity"));
        let no_source = with(r#"{"tenant":"default","entity_type":"issue","external_id":"7"}"#);
        assert_eq!(rejected(&no_source), EnvelopeError::Missing("entity.source"));
        let numeric = with(r#"{"tenant":"default","source":"github","entity_type":"issue","external_id":7}"#);
        assert_eq!(rejected(&numeric).field(), Some("entity.external_id"));
        let bad_name = with(r#"{"tenant":"default","source":"Git Hub","entity_type":"issue","external_id":"7"}"#);
        assert!(matches!(rejected(&bad_name), EnvelopeError::Invalid { field: "entity.source", .. }));
    }

    #[test]
    fn equal_keys_in_different_objects_are_a_valid_envelope() {
        let text = body(r#"{"source":"payload's own","title":"t","author":{"title":"a"},"tags":[{"title":1}]}"#);
        match Message::parse(&text, LIMIT) {
            Ok(Message::Envelope(envelope)) => {
                assert_eq!(envelope.entity.source, "github");
                assert_eq!(envelope.payload["source"], "payload's own");
            }
            other => panic!("expected an envelope, got {other:?}"),
        }
    }

    #[test]
    fn broken_json_is_still_not_json() {
        assert!(matches!(rejected(r#"{"source":"github","#), EnvelopeError::NotJson(_)));
        assert!(matches!(rejected("[1,2]"), EnvelopeError::NotObject("an array")));
    }
}
