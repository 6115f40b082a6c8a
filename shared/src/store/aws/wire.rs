//! DynamoDB's JSON wire format of attribute values (`{"S": "…"}`, `{"N": "…"}`, `{"B": "<base64>"}`, …), both
//! ways: what the capacity meter reads out of requests, and what the direct requests write (`Wire`, `WireItem`)
//! and read back.

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine;
use serde::ser::{Error as _, SerializeMap};
use serde::{Serialize, Serializer};
use serde_json::Value;
use std::collections::HashMap;

/// One DynamoDB item.
pub type Item = HashMap<String, AttributeValue>;

/// An attribute value of the wire format as an SDK value; `None` when malformed.
pub fn from_wire(value: &Value) -> Option<AttributeValue> {
    let (kind, inner) = value.as_object()?.iter().next()?;
    let strings = || inner.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect());
    let blob = |s: &Value| s.as_str().and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok());
    Some(match kind.as_str() {
        "S" => AttributeValue::S(inner.as_str()?.to_owned()),
        "N" => AttributeValue::N(inner.as_str()?.to_owned()),
        "B" => AttributeValue::B(Blob::new(blob(inner)?)),
        "BOOL" => AttributeValue::Bool(inner.as_bool()?),
        "NULL" => AttributeValue::Null(true),
        "SS" => AttributeValue::Ss(strings()?),
        "NS" => AttributeValue::Ns(strings()?),
        "BS" => AttributeValue::Bs(inner.as_array()?.iter().filter_map(blob).map(Blob::new).collect()),
        "L" => AttributeValue::L(inner.as_array()?.iter().map(from_wire).collect::<Option<_>>()?),
        "M" => AttributeValue::M(item_from_wire(inner)?),
        _ => return None,
    })
}

/// An item (or key) of the wire format as SDK values.
pub fn item_from_wire(item: &Value) -> Option<Item> {
    item.as_object()?.iter().map(|(name, value)| Some((name.clone(), from_wire(value)?))).collect()
}

/// An SDK value written in the wire format by `serde` (no intermediate JSON tree); a kind this SDK version does not
/// know (`Unknown`) is a serialisation error.
pub struct Wire<'a>(pub &'a AttributeValue);

/// An item (or a map of expression values) written in the wire format.
pub struct WireItem<'a>(pub &'a Item);

/// Binary values travel as base64.
struct Base64<'a>(&'a Blob);

impl Serialize for Base64<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&base64::engine::general_purpose::STANDARD.encode(self.0.as_ref()))
    }
}

impl Serialize for Wire<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(1))?;
        match self.0 {
            AttributeValue::S(text) => map.serialize_entry("S", text)?,
            AttributeValue::N(number) => map.serialize_entry("N", number)?,
            AttributeValue::B(bytes) => map.serialize_entry("B", &Base64(bytes))?,
            AttributeValue::Bool(flag) => map.serialize_entry("BOOL", flag)?,
            AttributeValue::Null(_) => map.serialize_entry("NULL", &true)?,
            AttributeValue::Ss(all) => map.serialize_entry("SS", all)?,
            AttributeValue::Ns(all) => map.serialize_entry("NS", all)?,
            AttributeValue::Bs(all) => map.serialize_entry("BS", &all.iter().map(Base64).collect::<Vec<_>>())?,
            AttributeValue::L(all) => map.serialize_entry("L", &all.iter().map(Wire).collect::<Vec<_>>())?,
            AttributeValue::M(item) => map.serialize_entry("M", &WireItem(item))?,
            _ => return Err(S::Error::custom("an attribute value of a kind this SDK version does not know")),
        }
        map.end()
    }
}

impl Serialize for WireItem<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(name, value)| (name, Wire(value))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_kind_of_value_reads_back_as_written() {
        let item = Item::from([
            ("s".to_owned(), AttributeValue::S("héllo".into())),
            ("n".to_owned(), AttributeValue::N("-12.5".into())),
            ("b".to_owned(), AttributeValue::B(Blob::new(vec![0, 1, 2, 255]))),
            ("t".to_owned(), AttributeValue::Bool(true)),
            ("z".to_owned(), AttributeValue::Null(true)),
            ("ss".to_owned(), AttributeValue::Ss(vec!["a".into(), "b".into()])),
            ("ns".to_owned(), AttributeValue::Ns(vec!["1".into(), "2".into()])),
            ("bs".to_owned(), AttributeValue::Bs(vec![Blob::new(vec![7])])),
            ("l".to_owned(), AttributeValue::L(vec![AttributeValue::S("x".into()), AttributeValue::Null(true)])),
            ("m".to_owned(), AttributeValue::M(Item::from([("k".to_owned(), AttributeValue::N("3".into()))]))),
        ]);
        let wire = serde_json::to_value(WireItem(&item)).expect("known kinds");
        assert_eq!(wire["b"], json!({"B": "AAEC/w=="}));
        assert_eq!(wire["z"], json!({"NULL": true}));
        assert_eq!(wire["m"], json!({"M": {"k": {"N": "3"}}}));
        assert_eq!(item_from_wire(&wire), Some(item));
    }

    #[test]
    fn malformed_wire_values_are_refused() {
        assert_eq!(from_wire(&json!({"N": 3})), None, "numbers travel as strings");
        assert_eq!(from_wire(&json!({"B": "not base64!"})), None);
        assert_eq!(from_wire(&json!({"X": "?"})), None);
        assert_eq!(item_from_wire(&json!({"a": {"L": [{"S": "ok"}, {"Q": 1}]}})), None);
    }
}
