//! Outbound writes and their echoes: what a connector wrote to an external system ([`ExternalWrite`], recorded on
//! the outbound event) and the guard an entity's head keeps to recognise that write when the system's webhook
//! sends it back ([`EchoGuard`]; spec §10).

use super::canonical::canonical_json;
use super::ids::{ContentHash, EventId, OrderKey};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What an outbound write left in the external system, as the system reported it in its answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalWrite {
    /// The external id the system gave a resource this write created (`octo/hello#1347`, a comment's id); `None`
    /// when the resource existed. Its webhooks name the resource by this id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// The resource's `updated_at` after the write: its webhook for this write carries the same.
    pub updated_at: DateTime<Utc>,
    /// The written fields as the resource now holds them.
    pub fingerprint: Fingerprint,
}

/// Some fields of a resource, named by JSON pointers (RFC 6901), and the SHA-256 of their values: what an echo
/// must show. Only the fields a write set are compared, so a webhook that carries the resource in another shape
/// than the API's answer (more or fewer fields) still matches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// The fields, e.g. `/title`, `/body`, `/milestone/number`.
    pub fields: Vec<String>,
    /// SHA-256 of the canonical JSON of the array of their values (`null` for an absent one).
    pub hash: ContentHash,
}

impl Fingerprint {
    /// The fingerprint of `fields` of `resource`.
    pub fn of(resource: &Value, fields: Vec<String>) -> Self {
        let hash = Self::hash(resource, &fields);
        Self { fields, hash }
    }

    /// Whether `payload` holds the same values in the same fields.
    pub fn matches(&self, payload: &Value) -> bool {
        Self::hash(payload, &self.fields) == self.hash
    }

    fn hash(resource: &Value, fields: &[String]) -> ContentHash {
        let values: Vec<Value> =
            fields.iter().map(|field| resource.pointer(field).cloned().unwrap_or(Value::Null)).collect();
        ContentHash::of(canonical_json(&Value::Array(values)).as_bytes())
    }
}

/// On an entity's head: the last write an outbound event made to the external resource, in the external
/// system's own order (its `updated_at`). An inbound event of the entity with this order key that shows the
/// fingerprint is the write's echo (`duplicate` of the outbound event); one with an older key is stale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EchoGuard {
    /// The outbound event that wrote.
    pub event_id: EventId,
    /// The resource's order key after the write: its `updated_at`, version 0.
    pub order: OrderKey,
    /// The written fields as the resource holds them.
    pub fingerprint: Fingerprint,
}

impl EchoGuard {
    /// The guard of `write` made by `event_id`; `None` when its time can't be an order key (beyond 2262).
    pub fn of(event_id: &EventId, write: &ExternalWrite) -> Option<Self> {
        Some(Self {
            event_id: event_id.clone(),
            order: OrderKey::at(write.updated_at, 0)?,
            fingerprint: write.fingerprint.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_fingerprint_compares_only_its_fields_whatever_else_the_resource_carries() {
        let answer = json!({"title": "Fix", "body": "text", "closed_by": {"login": "octocat"}, "number": 7});
        let fingerprint = Fingerprint::of(&answer, vec!["/title".into(), "/body".into()]);
        assert!(fingerprint.matches(&json!({"body": "text", "title": "Fix", "reactions": {"total_count": 0}})));
        assert!(!fingerprint.matches(&json!({"title": "Fix", "body": "other text"})));
        assert!(!fingerprint.matches(&json!({"title": "Fix"})), "an absent field is null, not a match");
    }

    #[test]
    fn a_guard_orders_at_the_written_updated_at() {
        let at = DateTime::parse_from_rfc3339("2026-05-01T12:00:07Z").unwrap().with_timezone(&Utc);
        let write = ExternalWrite {
            created: None,
            updated_at: at,
            fingerprint: Fingerprint::of(&json!({"title": "x"}), vec!["/title".into()]),
        };
        let guard = EchoGuard::of(&EventId::parse("out-1").unwrap(), &write).unwrap();
        assert_eq!(guard.order, OrderKey::at(at, 0).unwrap());
        assert_eq!(guard.event_id.as_str(), "out-1");
    }
}
