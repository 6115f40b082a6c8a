//! `TransactWriteItems` of puts and updates, with a `ClientRequestToken` (the SDK fills one per call, so retries of
//! a transaction that committed are idempotent for 10 minutes; so does this).

use super::{Direct, DirectFailure};
use crate::store::aws::wire::{item_from_wire, WireItem};
use aws_sdk_dynamodb::types::{CancellationReason, Put, TransactWriteItem, Update};
use serde::ser::{Error as _, SerializeMap};
use serde::{Serialize, Serializer};
use serde_json::Value;
use std::collections::HashMap;

/// What a `TransactWriteItems` did.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum TransactOutcome {
    /// Every write is applied.
    Committed,
    /// `TransactionCanceledException`: none is; one reason per write, in order (with the stored item where a
    /// condition failed and the write asked for it).
    Canceled(Vec<CancellationReason>),
}

impl Direct {
    /// `items` (puts and updates) applied together or not at all; `None` while the route is not known yet.
    pub(crate) async fn transact_write_items(
        &self,
        items: &[TransactWriteItem],
    ) -> Option<Result<TransactOutcome, DirectFailure>> {
        if !self.is_ready() {
            return None;
        }
        let token = hex::encode(rand::random::<[u8; 16]>());
        let body = match serde_json::to_vec(&Request { items, token: &token }) {
            Ok(body) => body,
            Err(e) => return Some(Err(DirectFailure::Build(e.to_string()))),
        };
        Some(match self.call("TransactWriteItems", &body).await? {
            Ok(_) => Ok(TransactOutcome::Committed),
            Err(DirectFailure::Service { code: Some(code), details, .. }) if code == "TransactionCanceledException" => {
                Ok(TransactOutcome::Canceled(reasons(&details)))
            }
            Err(failure) => Err(failure),
        })
    }
}

/// The cancellation reasons of a `TransactionCanceledException`'s body.
fn reasons(details: &Value) -> Vec<CancellationReason> {
    let text = |reason: &Value, name: &str| reason.get(name).and_then(Value::as_str).map(str::to_owned);
    details
        .get("CancellationReasons")
        .and_then(Value::as_array)
        .map(|all| {
            all.iter()
                .map(|reason| {
                    CancellationReason::builder()
                        .set_code(text(reason, "Code"))
                        .set_message(text(reason, "Message"))
                        .set_item(reason.get("Item").and_then(item_from_wire))
                        .build()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `{"TransactItems": [...], "ClientRequestToken": …}`.
struct Request<'a> {
    items: &'a [TransactWriteItem],
    token: &'a str,
}

impl Serialize for Request<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("TransactItems", &self.items.iter().map(Wire).collect::<Vec<_>>())?;
        map.serialize_entry("ClientRequestToken", self.token)?;
        map.end()
    }
}

/// One write of the transaction in the wire format: `{"Put": {...}}` or `{"Update": {...}}` (the only kinds sent
/// here; a condition check or a delete is a serialisation error).
struct Wire<'a>(&'a TransactWriteItem);

/// The members a put and an update share.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Conditions<'a> {
    table_name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    condition_expression: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expression_attribute_names: Option<&'a HashMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expression_attribute_values: Option<WireItem<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    return_values_on_condition_check_failure: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct PutWire<'a> {
    item: WireItem<'a>,
    #[serde(flatten)]
    conditions: Conditions<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct UpdateWire<'a> {
    key: WireItem<'a>,
    update_expression: &'a str,
    #[serde(flatten)]
    conditions: Conditions<'a>,
}

/// The shared members of a put or an update (the SDK's `Put` and `Update` name their accessors alike).
macro_rules! conditions {
    ($write:expr) => {
        Conditions {
            table_name: $write.table_name(),
            condition_expression: $write.condition_expression(),
            expression_attribute_names: $write.expression_attribute_names(),
            expression_attribute_values: $write.expression_attribute_values().map(WireItem),
            return_values_on_condition_check_failure: $write
                .return_values_on_condition_check_failure()
                .map(|r| r.as_str()),
        }
    };
}

fn put_wire(put: &Put) -> PutWire<'_> {
    PutWire { item: WireItem(put.item()), conditions: conditions!(put) }
}

fn update_wire(update: &Update) -> UpdateWire<'_> {
    UpdateWire {
        key: WireItem(update.key()),
        update_expression: update.update_expression(),
        conditions: conditions!(update),
    }
}

impl Serialize for Wire<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(1))?;
        match (self.0.put(), self.0.update()) {
            (Some(put), _) => map.serialize_entry("Put", &put_wire(put))?,
            (None, Some(update)) => map.serialize_entry("Update", &update_wire(update))?,
            (None, None) => return Err(S::Error::custom("only puts and updates are sent in a direct transaction")),
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
    use serde_json::json;

    #[test]
    fn the_request_is_the_sdks_with_a_client_request_token() {
        let put = Put::builder()
            .table_name("t")
            .item("pk", AttributeValue::S("EFFECT#e".into()))
            .condition_expression("attribute_not_exists(pk)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .expect("put");
        let update = Update::builder()
            .table_name("t")
            .key("pk", AttributeValue::S("MIRROR#a".into()))
            .update_expression("ADD #t :a")
            .condition_expression("version = :v")
            .expression_attribute_names("#t", "total#quantity")
            .expression_attribute_values(":a", AttributeValue::N("3".into()))
            .expression_attribute_values(":v", AttributeValue::N("7".into()))
            .build()
            .expect("update");
        let items =
            [TransactWriteItem::builder().update(update).build(), TransactWriteItem::builder().put(put).build()];
        let body = serde_json::to_value(Request { items: &items, token: "tok" }).expect("JSON");
        assert_eq!(
            body,
            json!({
                "TransactItems": [
                    {"Update": {
                        "Key": {"pk": {"S": "MIRROR#a"}},
                        "UpdateExpression": "ADD #t :a",
                        "TableName": "t",
                        "ConditionExpression": "version = :v",
                        "ExpressionAttributeNames": {"#t": "total#quantity"},
                        "ExpressionAttributeValues": {":a": {"N": "3"}, ":v": {"N": "7"}}
                    }},
                    {"Put": {
                        "Item": {"pk": {"S": "EFFECT#e"}},
                        "TableName": "t",
                        "ConditionExpression": "attribute_not_exists(pk)",
                        "ReturnValuesOnConditionCheckFailure": "ALL_OLD"
                    }}
                ],
                "ClientRequestToken": "tok"
            })
        );
        let delete = TransactWriteItem::builder()
            .delete(
                aws_sdk_dynamodb::types::Delete::builder()
                    .table_name("t")
                    .key("pk", AttributeValue::S("x".into()))
                    .build()
                    .expect("delete"),
            )
            .build();
        assert!(serde_json::to_vec(&Request { items: &[delete], token: "tok" }).is_err());
    }

    #[test]
    fn cancellation_reasons_are_read_in_order_with_their_items() {
        let details = json!({"CancellationReasons": [
            {"Code": "None"},
            {"Code": "ConditionalCheckFailed", "Message": "The conditional request failed", "Item": {"commit_id": {"S": "c1"}}}
        ]});
        let read = reasons(&details);
        assert_eq!(read.len(), 2);
        assert_eq!((read[0].code(), read[0].item()), (Some("None"), None));
        assert_eq!(read[1].code(), Some("ConditionalCheckFailed"));
        assert_eq!(read[1].item().and_then(|i| i.get("commit_id")), Some(&AttributeValue::S("c1".into())));
        assert!(reasons(&json!({})).is_empty());
    }
}
