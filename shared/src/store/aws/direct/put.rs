//! `PutItem`: one conditional write, the stored item returned when its condition fails.

use super::{Direct, DirectFailure};
use crate::store::aws::wire::{item_from_wire, Item, WireItem};
use aws_sdk_dynamodb::types::AttributeValue;
use serde::Serialize;
use std::collections::HashMap;

/// What a conditional `PutItem` did.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum PutOutcome {
    /// The item is written.
    Written,
    /// The condition did not hold; the stored item as DynamoDB returned it (`ReturnValuesOnConditionCheckFailure:
    /// ALL_OLD`), none when there was none.
    ConditionFailed(Option<Item>),
}

impl Direct {
    /// `item` written to `table` if `condition` (with `values`) holds; `None` while the route is not known yet.
    pub(crate) async fn put_item(
        &self,
        table: &str,
        item: &Item,
        condition: &str,
        values: Option<&HashMap<String, AttributeValue>>,
    ) -> Option<Result<PutOutcome, DirectFailure>> {
        if !self.is_ready() {
            return None;
        }
        let body = match request_body(table, item, condition, values) {
            Ok(body) => body,
            Err(failure) => return Some(Err(failure)),
        };
        Some(match self.call("PutItem", &body).await? {
            Ok(_) => Ok(PutOutcome::Written),
            Err(DirectFailure::Service { code: Some(code), details, .. })
                if code == "ConditionalCheckFailedException" =>
            {
                Ok(PutOutcome::ConditionFailed(details.get("Item").and_then(item_from_wire)))
            }
            Err(failure) => Err(failure),
        })
    }
}

/// The awsJson 1.0 body of the `PutItem` the SDK would send.
fn request_body(
    table: &str,
    item: &Item,
    condition: &str,
    values: Option<&HashMap<String, AttributeValue>>,
) -> Result<Vec<u8>, DirectFailure> {
    #[derive(Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct PutItem<'a> {
        table_name: &'a str,
        item: WireItem<'a>,
        condition_expression: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        expression_attribute_values: Option<WireItem<'a>>,
        return_values_on_condition_check_failure: &'static str,
    }
    let body = PutItem {
        table_name: table,
        item: WireItem(item),
        condition_expression: condition,
        expression_attribute_values: values.map(WireItem),
        return_values_on_condition_check_failure: "ALL_OLD",
    };
    serde_json::to_vec(&body).map_err(|e| DirectFailure::Build(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn the_body_is_the_sdks_put_item_request() {
        let item = Item::from([("pk".to_owned(), AttributeValue::S("EVENT#e1".into()))]);
        let values = HashMap::from([(":expected".to_owned(), AttributeValue::N("3".into()))]);
        let body = request_body("events", &item, "version = :expected", Some(&values)).expect("body");
        let body: Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(
            body,
            json!({
                "TableName": "events",
                "Item": {"pk": {"S": "EVENT#e1"}},
                "ConditionExpression": "version = :expected",
                "ExpressionAttributeValues": {":expected": {"N": "3"}},
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD"
            })
        );
    }
}
