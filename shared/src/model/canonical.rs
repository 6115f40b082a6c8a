//! Canonical JSON — object keys sorted, no white space — and the content hash built on it (spec §1, §2): what
//! payloads are archived as, and what tells a repeat of a change from a new one. Both are stored, and derived
//! event ids are made from the hash, so their bytes never change.

use super::envelope::Kind;
use super::ids::ContentHash;
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::{fmt, str};

/// JSON with object keys sorted and no white space, whatever map order serde_json was built with.
pub fn canonical_json(value: &Value) -> String {
    Canonical(value).to_string()
}

/// SHA-256 of the canonical JSON of (`kind`, `payload`).
pub fn content_hash(kind: Kind, payload: &Value) -> ContentHash {
    content_hash_of_canonical(kind, &canonical_json(payload))
}

/// [`content_hash`] of a payload whose canonical JSON is already at hand: the canonical JSON of
/// `{"kind": kind, "payload": payload}` is those two members in that order ("kind" sorts first), so it is hashed
/// in pieces instead of being written out again.
pub(crate) fn content_hash_of_canonical(kind: Kind, canonical_payload: &str) -> ContentHash {
    let mut hasher = Sha256::new();
    hasher.update(b"{\"kind\":\"");
    hasher.update(kind.to_string().as_bytes());
    hasher.update(b"\",\"payload\":");
    hasher.update(canonical_payload.as_bytes());
    hasher.update(b"}");
    ContentHash(hasher.finalize().into())
}

/// Displays a value as canonical JSON, written by serde_json's compact serializer (its escaping and number
/// formatting) with each object's members in key order.
struct Canonical<'a>(&'a Value);

impl fmt::Display for Canonical<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Into bytes first, then to the formatter at once: serde_json writes a value in dozens of small pieces, and
        // each piece passed on alone cost a UTF-8 check and a formatter call (most of this function's time).
        let mut bytes = Vec::with_capacity(256);
        serde_json::to_writer(&mut bytes, &Sorted(self.0)).map_err(|_| fmt::Error)?;
        f.write_str(str::from_utf8(&bytes).map_err(|_| fmt::Error)?)
    }
}

/// A value serialized with each object's members in key order.
struct Sorted<'a>(&'a Value);

impl Serialize for Sorted<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Object(map) => {
                let mut out = serializer.serialize_map(Some(map.len()))?;
                if map.keys().is_sorted() {
                    for (key, value) in map {
                        out.serialize_entry(key, &Sorted(value))?;
                    }
                } else {
                    let mut members: Vec<(&String, &Value)> = map.iter().collect();
                    members.sort_unstable_by(|a, b| a.0.cmp(b.0));
                    for (key, value) in members {
                        out.serialize_entry(key, &Sorted(value))?;
                    }
                }
                out.end()
            }
            Value::Array(items) => {
                let mut out = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    out.serialize_element(&Sorted(item))?;
                }
                out.end()
            }
            scalar => scalar.serialize(serializer),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The stored format, written out by hand: keys sorted bytewise at every depth, compact, serde_json's
    /// escapes (control characters, quote, backslash) and numbers, everything else as is.
    const CANONICAL: &str = r#"{"A":1,"a":[3,2.5,-1,"x\n\"\\\u0001é",null,true,{"a":[],"b":{}}],"z":"😀","é":false}"#;

    fn payload() -> Value {
        json!({"é": false, "z": "😀", "a": [3, 2.5, -1, "x\n\"\\\u{1}é", null, true, {"b": {}, "a": []}], "A": 1})
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_depth_and_leaves_no_white_space() {
        assert_eq!(canonical_json(&payload()), CANONICAL);
        assert_eq!(canonical_json(&json!(null)), "null");
        assert_eq!(canonical_json(&json!("a\tb")), r#""a\tb""#);
    }

    #[test]
    fn the_content_hash_is_the_sha256_of_the_canonical_kind_and_payload() {
        let text = canonical_json(&payload());
        for (kind, word) in [(Kind::Upsert, "upsert"), (Kind::Delete, "delete"), (Kind::Create, "create")] {
            let whole = format!(r#"{{"kind":"{word}","payload":{text}}}"#);
            assert_eq!(content_hash(kind, &payload()), ContentHash::of(whole.as_bytes()), "{word}");
            assert_eq!(content_hash_of_canonical(kind, &text), ContentHash::of(whole.as_bytes()), "{word}");
        }
        // Pinned: stored hashes and the ids derived from them must not change with the code.
        assert_eq!(
            content_hash(Kind::Upsert, &json!({"title": "x", "n": 1})).to_hex(),
            "fe4f4ca6872b03963e9c32424089c3af9687d1d583402bf77cfe074af4d623ba"
        );
    }
}
