//! DynamoDB's JSON wire format of attribute values (`{"S": "…"}`, `{"N": "…"}`, `{"B": "<base64>"}`, …), both
//! ways: what the capacity meter reads out of requests, and what the direct `PutItem` writes and reads back.

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine;
use serde_json::{Map, Value};
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

/// An SDK value in the wire format; `None` for a kind this SDK version does not know (`Unknown`).
pub fn to_wire(value: &AttributeValue) -> Option<Value> {
    let blob = |b: &Blob| Value::String(base64::engine::general_purpose::STANDARD.encode(b.as_ref()));
    let texts = |t: &[String]| Value::Array(t.iter().cloned().map(Value::String).collect());
    let (kind, inner) = match value {
        AttributeValue::S(text) => ("S", Value::String(text.clone())),
        AttributeValue::N(number) => ("N", Value::String(number.clone())),
        AttributeValue::B(bytes) => ("B", blob(bytes)),
        AttributeValue::Bool(flag) => ("BOOL", Value::Bool(*flag)),
        AttributeValue::Null(_) => ("NULL", Value::Bool(true)),
        AttributeValue::Ss(all) => ("SS", texts(all)),
        AttributeValue::Ns(all) => ("NS", texts(all)),
        AttributeValue::Bs(all) => ("BS", Value::Array(all.iter().map(blob).collect())),
        AttributeValue::L(all) => ("L", Value::Array(all.iter().map(to_wire).collect::<Option<_>>()?)),
        AttributeValue::M(map) => ("M", item_to_wire(map)?),
        _ => return None,
    };
    Some(Value::Object(Map::from_iter([(kind.to_owned(), inner)])))
}

/// An item in the wire format; `None` when one of its values is of an unknown kind.
pub fn item_to_wire(item: &Item) -> Option<Value> {
    item.iter()
        .map(|(name, value)| Some((name.clone(), to_wire(value)?)))
        .collect::<Option<Map<_, _>>>()
        .map(Value::Object)
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
        let wire = item_to_wire(&item).expect("known kinds");
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
