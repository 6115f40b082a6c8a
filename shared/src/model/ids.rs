//! Identifiers: event ids, entity keys, order keys and content hashes (spec §1, §3).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

/// An id or name that breaks the spec's charset or length rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {value:?} is invalid: expected {expected}")]
pub struct InvalidId {
    /// Which kind of id.
    pub what: &'static str,
    /// The offending value (cut to 80 characters).
    pub value: String,
    /// What was expected instead.
    pub expected: &'static str,
}

fn invalid(what: &'static str, value: &str, expected: &'static str) -> InvalidId {
    InvalidId { what, value: value.chars().take(80).collect(), expected }
}

/// An event's id: the client's idempotency key, or one derived from the event's content (spec §3).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EventId(String);

impl EventId {
    /// Checks `value` against `[A-Za-z0-9._:-]{1,128}`.
    pub fn parse(value: &str) -> Result<Self, InvalidId> {
        let ok = !value.is_empty()
            && value.len() <= 128
            && value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
        if ok {
            Ok(Self(value.to_owned()))
        } else {
            Err(invalid("event_id", value, "1 to 128 characters of A-Z a-z 0-9 . _ : -"))
        }
    }

    /// The id of an event that carries none: a hash of its entity key, order key and content hash.
    pub fn derived(entity: &EntityKey, order: &OrderKey, content: &ContentHash) -> Self {
        let mut h = Sha256::new();
        h.update(entity.to_string().as_bytes());
        h.update([0]);
        h.update(order.nanos.to_be_bytes());
        h.update(order.version.to_be_bytes());
        h.update(content.0);
        Self(format!("d-{}", &hex::encode(h.finalize())[..40]))
    }

    /// The id under which a rejected message is stored: a hash of its raw body (and, for an idempotency
    /// conflict, of the id it conflicts with), so a redelivery lands on the same record.
    pub fn for_rejected(raw_body: &[u8]) -> Self {
        Self(format!("r-{}", &hex::encode(Sha256::digest(raw_body))[..40]))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for EventId {
    type Error = InvalidId;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<EventId> for String {
    fn from(id: EventId) -> Self {
        id.0
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The tenant used when an envelope names none.
pub const DEFAULT_TENANT: &str = "default";

/// `tenant/source/entity_type/external_id`: the unit of ordering.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EntityKey {
    /// Tenant id (`default` when the envelope names none).
    pub tenant: String,
    /// The integration: `github`, `shopify`, …
    pub source: String,
    /// The kind of resource: `issue`, `inventory_level`, …
    pub entity_type: String,
    /// The resource's id in the external system.
    pub external_id: String,
}

impl EntityKey {
    /// Builds a key, checking each part (spec §1).
    pub fn new(tenant: &str, source: &str, entity_type: &str, external_id: &str) -> Result<Self, InvalidId> {
        check_name("tenant", tenant)?;
        check_name("source", source)?;
        check_name("entity_type", entity_type)?;
        if external_id.is_empty() || external_id.len() > 256 {
            return Err(invalid("external_id", external_id, "a non-empty string of at most 256 bytes"));
        }
        Ok(Self {
            tenant: tenant.to_owned(),
            source: source.to_owned(),
            entity_type: entity_type.to_owned(),
            external_id: external_id.to_owned(),
        })
    }

    /// Parses `tenant/source/entity_type/external_id`, or `source/entity_type/external_id` for the default tenant.
    pub fn parse(text: &str) -> Result<Self, InvalidId> {
        let parts: Vec<&str> = text.splitn(4, '/').collect();
        match parts.as_slice() {
            [tenant, source, entity_type, external_id] => Self::new(tenant, source, entity_type, external_id),
            [source, entity_type, external_id] => Self::new(DEFAULT_TENANT, source, entity_type, external_id),
            _ => Err(invalid("entity key", text, "tenant/source/entity_type/external_id")),
        }
    }
}

/// Checks a source, entity type or tenant name against `[a-z0-9_-]{1,64}`.
pub(crate) fn check_name(what: &'static str, value: &str) -> Result<(), InvalidId> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(invalid(what, value, "1 to 64 characters of a-z 0-9 _ -"))
    }
}

impl fmt::Display for EntityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Piece by piece rather than `write!`: every stored event and head is keyed by this text, and the format
        // machinery cost ten times as much (a width or fill on `f` was not applied either way).
        for (i, part) in [&self.tenant, &self.source, &self.entity_type, &self.external_id].into_iter().enumerate() {
            if i > 0 {
                f.write_str("/")?;
            }
            f.write_str(part)?;
        }
        Ok(())
    }
}

/// (`updated_at` as UTC nanoseconds, `version`): how events of one entity are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct OrderKey {
    /// `updated_at` in nanoseconds since the Unix epoch, UTC; `i64::MIN` for a `create` without timestamp.
    pub nanos: i64,
    /// The tie-breaker (0 when absent).
    pub version: i64,
}

impl OrderKey {
    /// The order key of a `create` that carries no timestamp: before any event with one.
    pub const BEFORE_ANY: OrderKey = OrderKey { nanos: i64::MIN, version: 0 };

    /// The order key of an event updated at `at` with tie-breaker `version`.
    pub fn at(at: DateTime<Utc>, version: i64) -> Option<Self> {
        at.timestamp_nanos_opt().map(|nanos| Self { nanos, version })
    }

    /// `updated_at` as a time, unless this is [`OrderKey::BEFORE_ANY`].
    pub fn updated_at(&self) -> Option<DateTime<Utc>> {
        (self.nanos != i64::MIN).then(|| DateTime::from_timestamp_nanos(self.nanos))
    }
}

impl fmt::Display for OrderKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.updated_at() {
            Some(at) => write!(f, "{}#{}", at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true), self.version),
            None => write!(f, "create#{}", self.version),
        }
    }
}

/// SHA-256 of the canonical JSON of (`kind`, `payload`); stored as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentHash(pub [u8; 32]);

impl ContentHash {
    /// Hashes `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// The hash as 64 hex digits.
    pub fn to_hex(&self) -> String {
        self.hex_digits().iter().copied().map(char::from).collect()
    }

    /// Reads 64 hex digits (either case).
    pub fn from_hex(text: &str) -> Result<Self, InvalidId> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out).map_err(|_| invalid("content hash", text, "64 hex digits"))?;
        Ok(Self(out))
    }

    /// The hash as 64 lowercase hex digits, without allocating: records and heads write it at every change.
    fn hex_digits(&self) -> [u8; 64] {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut text = [0u8; 64];
        for (pair, byte) in text.chunks_exact_mut(2).zip(self.0) {
            pair[0] = DIGITS[usize::from(byte >> 4)];
            pair[1] = DIGITS[usize::from(byte & 0x0f)];
        }
        text
    }
}

impl Serialize for ContentHash {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let text = self.hex_digits();
        serializer.serialize_str(std::str::from_utf8(&text).map_err(serde::ser::Error::custom)?)
    }
}

impl<'de> Deserialize<'de> for ContentHash {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct HexVisitor;
        impl serde::de::Visitor<'_> for HexVisitor {
            type Value = ContentHash;
            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a content hash: 64 hex digits")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<ContentHash, E> {
                ContentHash::from_hex(text).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(HexVisitor)
    }
}

impl TryFrom<String> for ContentHash {
    type Error = InvalidId;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::from_hex(&value)
    }
}

impl From<ContentHash> for String {
    fn from(hash: ContentHash) -> Self {
        hash.to_hex()
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentHash({})", &self.to_hex()[..12])
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entity_key_reads_as_its_four_parts_joined_by_slashes() {
        // Stored keys and derived event ids are made from this text: it must not change.
        let key = EntityKey::new("default", "shopify", "inventory_level", "gid://shopify/1#2").expect("a key");
        assert_eq!(key.to_string(), "default/shopify/inventory_level/gid://shopify/1#2");
        assert_eq!(format!("<{key}>"), "<default/shopify/inventory_level/gid://shopify/1#2>");
    }

    #[test]
    fn a_content_hash_is_stored_as_64_lowercase_hex_digits_and_read_in_either_case() {
        let hash = ContentHash::of(b"abc");
        let expected = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(hash.to_hex(), expected);
        assert_eq!(serde_json::to_string(&hash).ok(), Some(format!("\"{expected}\"")));
        let upper = format!("\"{}\"", expected.to_uppercase());
        assert_eq!(serde_json::from_str::<ContentHash>(&upper).ok(), Some(hash));
        let short = serde_json::from_str::<ContentHash>("\"ba78\"").map(|_| ()).unwrap_err().to_string();
        assert!(short.contains("expected 64 hex digits"), "{short}");
    }
}
