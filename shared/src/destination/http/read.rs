//! Reading back over HTTP: `GET <url>?entity=<entity key>` (signed like a delivery, the entity key standing in for
//! the body), answered `200` with a [`WireRecord`] or `404` when the receiver holds nothing for the entity
//! (docs/destination-protocol.md, "Reading back").

use super::outcome::described;
use super::wire::WireOrder;
use crate::destination::{DestinationRecord, ReadError};
use http::{StatusCode, Uri};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The query parameter naming the entity.
pub const ENTITY_PARAMETER: &str = "entity";

/// A receiver's answer to a read: what it holds for the entity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireRecord {
    /// The state (`null` once deleted).
    #[serde(default)]
    pub state: Value,
    /// Whether the entity was deleted.
    #[serde(default)]
    pub deleted: bool,
    /// The order key of the change that wrote it, when the receiver keeps it (`null` otherwise).
    #[serde(default)]
    pub order: Option<WireOrder>,
    /// The event that wrote it, when the receiver keeps it.
    #[serde(default)]
    pub event_id: Option<String>,
}

impl WireRecord {
    /// The wire form of `record`.
    pub fn of(record: &DestinationRecord) -> Self {
        Self {
            state: record.state.clone(),
            deleted: record.deleted,
            order: record.order.map(WireOrder::of),
            event_id: record.event_id.clone(),
        }
    }
}

/// The URL that reads `entity_key` from the receiver at `url`: `entity=<key>` added to its query.
pub fn read_uri(url: &Uri, entity_key: &str) -> Result<Uri, ReadError> {
    let encoded = percent_encode(entity_key);
    let text = match url.query() {
        Some(query) if !query.is_empty() => format!("{url}&{ENTITY_PARAMETER}={encoded}"),
        _ => format!("{}?{ENTITY_PARAMETER}={encoded}", url.to_string().trim_end_matches('?')),
    };
    text.parse().map_err(|e| ReadError::Failed(format!("building the read URL for {entity_key}: {e}")))
}

/// `text` with every byte but RFC 3986's unreserved characters percent-encoded.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// What a receiver's answer to a read says: `200` a record, `404` nothing; `405`/`501` that it does not answer
/// reads; anything else a failed read.
pub fn read_outcome(status: StatusCode, body: &[u8]) -> Result<Option<DestinationRecord>, ReadError> {
    match status.as_u16() {
        200 => {
            let not_a_record = |e: String| {
                ReadError::Failed(format!(
                    "HTTP 200, but the body is not a record {{\"state\":…,\"deleted\":…,\"order\":…,\"event_id\":…}}: {e}"
                ))
            };
            let record: WireRecord = match serde_json::from_slice(body) {
                Ok(value @ Value::Object(_)) => {
                    serde_json::from_value(value).map_err(|e| not_a_record(e.to_string()))?
                }
                Ok(_) => return Err(not_a_record("not a JSON object".to_owned())),
                Err(e) => return Err(not_a_record(e.to_string())),
            };
            let order = match record.order {
                Some(order) => Some(order.order_key().ok_or_else(|| {
                    ReadError::Failed("HTTP 200, but the record's order.updated_at is out of range".to_owned())
                })?),
                None => None,
            };
            Ok(Some(DestinationRecord {
                state: record.state,
                deleted: record.deleted,
                order,
                event_id: record.event_id,
            }))
        }
        404 => Ok(None),
        405 | 501 => Err(ReadError::Unsupported(format!(
            "the receiver does not answer reads ({}); answer GET ?entity=<key> as docs/destination-protocol.md \
             (\"Reading back\") says",
            described(status, body)
        ))),
        _ => Err(ReadError::Failed(described(status, body))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::OrderKey;
    use serde_json::json;

    #[test]
    fn the_entity_key_is_percent_encoded_into_the_query() {
        let url: Uri = "http://127.0.0.1:9/changes".parse().unwrap();
        assert_eq!(
            read_uri(&url, "default/shop/product/a b&c").unwrap().to_string(),
            "http://127.0.0.1:9/changes?entity=default%2Fshop%2Fproduct%2Fa%20b%26c"
        );
        let with_query: Uri = "http://127.0.0.1:9/changes?tenant=x".parse().unwrap();
        assert!(read_uri(&with_query, "k").unwrap().to_string().ends_with("?tenant=x&entity=k"));
    }

    #[test]
    fn a_read_answer_is_a_record_nothing_or_a_refusal() {
        let body = json!({"state": {"n": 1}, "deleted": false,
                          "order": {"updated_at": "2026-05-01T12:00:00.000000000Z", "version": 2},
                          "event_id": "ev-1"});
        let record = read_outcome(StatusCode::OK, body.to_string().as_bytes()).unwrap().unwrap();
        assert_eq!(record.state, json!({"n": 1}));
        assert_eq!(record.order.map(|o| o.version), Some(2));
        assert_eq!(record.event_id.as_deref(), Some("ev-1"));
        let bare = read_outcome(StatusCode::OK, br#"{"state": null, "deleted": true}"#).unwrap().unwrap();
        assert!(bare.deleted && bare.order.is_none());
        assert_eq!(read_outcome(StatusCode::NOT_FOUND, b"").unwrap(), None);
        assert!(matches!(read_outcome(StatusCode::METHOD_NOT_ALLOWED, b""), Err(ReadError::Unsupported(_))));
        assert!(matches!(read_outcome(StatusCode::SERVICE_UNAVAILABLE, b"down"), Err(ReadError::Failed(_))));
        assert!(matches!(read_outcome(StatusCode::OK, b"[1]"), Err(ReadError::Failed(_))));
        let round = WireRecord::of(&DestinationRecord {
            state: json!(1),
            deleted: false,
            order: Some(OrderKey { nanos: 5, version: 0 }),
            event_id: None,
        });
        assert_eq!(serde_json::to_value(&round).unwrap()["order"]["version"], 0);
    }
}
