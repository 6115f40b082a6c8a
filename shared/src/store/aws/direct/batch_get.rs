//! `BatchGetItem` of keys in one table.

use super::{Direct, DirectFailure};
use crate::store::aws::wire::{item_from_wire, Item, WireItem};
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use serde_json::Value;

/// What one `BatchGetItem` returned.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct BatchGot {
    /// The items found (in no particular order).
    pub(crate) items: Vec<Item>,
    /// The keys DynamoDB left unprocessed, to ask for again.
    pub(crate) unprocessed: Vec<Item>,
}

impl Direct {
    /// The items of `keys` in `table`, read strongly consistently when `consistent`; `None` while the route is
    /// not known yet.
    pub(crate) async fn batch_get_item(
        &self,
        table: &str,
        keys: &[Item],
        consistent: bool,
    ) -> Option<Result<BatchGot, DirectFailure>> {
        if !self.is_ready() {
            return None;
        }
        let body = match serde_json::to_vec(&Request { table, keys, consistent }) {
            Ok(body) => body,
            Err(e) => return Some(Err(DirectFailure::Build(e.to_string()))),
        };
        Some(self.call("BatchGetItem", &body).await?.and_then(|answer| read(&answer, table)))
    }
}

/// `{"RequestItems": {table: {"Keys": [...], "ConsistentRead": …}}}`.
struct Request<'a> {
    table: &'a str,
    keys: &'a [Item],
    consistent: bool,
}

impl Serialize for Request<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct KeysAndAttributes<'a> {
            keys: Vec<WireItem<'a>>,
            consistent_read: bool,
        }
        let wanted =
            KeysAndAttributes { keys: self.keys.iter().map(WireItem).collect(), consistent_read: self.consistent };
        let mut tables = serde_json::Map::new();
        tables.insert(self.table.to_owned(), serde_json::to_value(&wanted).map_err(serde::ser::Error::custom)?);
        let mut map = serializer.serialize_map(Some(1))?;
        map.serialize_entry("RequestItems", &tables)?;
        map.end()
    }
}

/// The items and unprocessed keys of `table` in an answer; a malformed item is a malformed answer.
fn read(answer: &Value, table: &str) -> Result<BatchGot, DirectFailure> {
    let items = |list: Option<&Value>| -> Result<Vec<Item>, DirectFailure> {
        list.and_then(Value::as_array)
            .map(|all| all.iter().map(|v| item_from_wire(v).ok_or_else(|| malformed(v))).collect())
            .unwrap_or(Ok(Vec::new()))
    };
    Ok(BatchGot {
        items: items(answer.get("Responses").and_then(|r| r.get(table)))?,
        unprocessed: items(answer.get("UnprocessedKeys").and_then(|u| u.get(table)).and_then(|k| k.get("Keys")))?,
    })
}

fn malformed(value: &Value) -> DirectFailure {
    DirectFailure::Malformed(format!(
        "an item DynamoDB returned does not read: {}",
        value.to_string().chars().take(200).collect::<String>()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::types::AttributeValue;
    use serde_json::json;

    #[test]
    fn the_request_and_the_answer_are_the_sdks() {
        let key = Item::from([("pk".to_owned(), AttributeValue::S("MIRROR#a".into()))]);
        let body = serde_json::to_value(Request { table: "t", keys: std::slice::from_ref(&key), consistent: true });
        assert_eq!(
            body.expect("JSON"),
            json!({"RequestItems": {"t": {"Keys": [{"pk": {"S": "MIRROR#a"}}], "ConsistentRead": true}}})
        );
        let answer = json!({
            "Responses": {"t": [{"pk": {"S": "MIRROR#a"}, "version": {"N": "2"}}]},
            "UnprocessedKeys": {"t": {"Keys": [{"pk": {"S": "EFFECT#e"}}], "ConsistentRead": true}}
        });
        let got = read(&answer, "t").expect("read");
        assert_eq!(got.items.len(), 1);
        assert_eq!(got.unprocessed, vec![Item::from([("pk".to_owned(), AttributeValue::S("EFFECT#e".into()))])]);
        assert_eq!(read(&json!({"Responses": {}}), "t").expect("read"), BatchGot::default());
        assert!(matches!(
            read(&json!({"Responses": {"t": [{"pk": {"Q": 1}}]}}), "t"),
            Err(DirectFailure::Malformed(_))
        ));
    }
}
