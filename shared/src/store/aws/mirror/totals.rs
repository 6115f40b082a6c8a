//! An `in_order` [`Addition`] as one conditional `Update` of the mirror row, written in the same transaction as
//! the event's effect.
//!
//! Totals live in `total#<field>` number attributes, outside `body`, and DynamoDB adds to them itself (`ADD`): no
//! writer reads a total, changes it and writes it back. The update takes one of two shapes:
//!
//! - **Add only**: the event is older than the row's latest event and every total it adds to is an attribute
//!   already. `ADD` the amounts and stamp `applied_at`, on the condition that each of those totals exists (a put of
//!   the whole row — a local edit, a snapshot — removes them; the change is then read and decided again) and stays
//!   within 64 bits after the add. The row's `version` is neither checked nor bumped: such adds commute with one
//!   another and with the latest event's write.
//! - **Rewrite**: the latest event, a new row, or a total still inside `body` (written by a put). `SET` the row's
//!   fields and the body without its totals and `ADD` the amounts (a total still in `body` moves out, its value
//!   added), on the condition that `version` is still the one read (or the row still absent) and that the totals
//!   that exist stay within 64 bits (add-only writers may have added to them since the read).

use super::items::{
    fits, item_size, key, mirror_item, mirror_pk, n, nanos, s, total_attribute, total_fields, Item, APPLIED_AT, BODY,
    COMMIT_ID, CONTENT_HASH, DELETED, ENTITY_KEY, EVENT_ID, FENCE, ITEM_TYPE, MIRROR, MIRROR_TYPE, ORDER_NANOS,
    ORDER_VERSION, PK, VERSION,
};
use super::DynamoMirror;
use crate::destination::guard::{destination_error, Addition};
use crate::destination::DestinationError;
use crate::store::aws::error::build_error;
use crate::store::aws::ITEM_SIZE_LIMIT;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update};
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};

/// An update expression under construction: its clauses, condition and placeholders.
#[derive(Default)]
struct Expression {
    set: Vec<String>,
    add: Vec<String>,
    conditions: Vec<String>,
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

impl Expression {
    /// `SET #name = :name` for attribute `attribute`.
    fn set(&mut self, placeholder: &str, attribute: &str, value: AttributeValue) {
        self.names.insert(format!("#{placeholder}"), attribute.to_owned());
        self.values.insert(format!(":{placeholder}"), value);
        self.set.push(format!("#{placeholder} = :{placeholder}"));
    }

    fn text(&self) -> String {
        let mut text = format!("SET {}", self.set.join(", "));
        if !self.add.is_empty() {
            text.push_str(&format!(" ADD {}", self.add.join(", ")));
        }
        text
    }
}

/// The row's part of the transaction that applies `addition` over `row` (the item read, at `stored_version`).
pub(super) fn update(
    mirror: &DynamoMirror,
    addition: &Addition,
    row: Option<&Item>,
    stored_version: Option<u64>,
    commit_id: &str,
    what: &str,
) -> Result<TransactWriteItem, DestinationError> {
    let record = &addition.record;
    let existing: BTreeSet<&str> = row.map(|item| total_fields(item).collect()).unwrap_or_default();
    let add_only =
        row.is_some() && !addition.latest && addition.adds.iter().all(|(field, _)| existing.contains(field.as_str()));
    let mut e = Expression::default();
    e.set("applied", APPLIED_AT, n(nanos(record.applied_at).map_err(destination_error)?));
    e.set("commit", COMMIT_ID, s(commit_id));
    for (i, (field, amount)) in addition.adds.iter().enumerate() {
        let (name, value) = (format!("#t{i}"), format!(":t{i}"));
        e.names.insert(name.clone(), total_attribute(field));
        e.add.push(format!("{name} {value}"));
        if !existing.contains(field.as_str()) {
            // A new attribute starts at the whole new total (what `body` held plus the amount).
            let total = record.state.get(field).and_then(Value::as_i64).unwrap_or(*amount);
            e.values.insert(value, n(total));
            continue;
        }
        e.values.insert(value, n(amount));
        if add_only {
            e.conditions.push(format!("attribute_exists({name})"));
        }
        let bound = format!(":bound{i}");
        match amount.signum() {
            1 => {
                e.conditions.push(format!("{name} <= {bound}"));
                e.values.insert(bound, n(i64::MAX - amount));
            }
            -1 => {
                e.conditions.push(format!("{name} >= {bound}"));
                e.values.insert(bound, n(i64::MIN - amount));
            }
            _ => {}
        }
    }
    if !add_only {
        rewrite(&mut e, addition, &existing, stored_version, commit_id, what)?;
    }
    let update = Update::builder()
        .table_name(&mirror.table)
        .set_key(Some(key(mirror_pk(&record.entity_key), MIRROR)))
        .update_expression(e.text())
        .condition_expression(e.conditions.join(" AND "))
        .set_expression_attribute_names(Some(e.names))
        .set_expression_attribute_values(Some(e.values))
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
        .build()
        .map_err(|e| destination_error(build_error(what, e)))?;
    Ok(TransactWriteItem::builder().update(update).build())
}

/// The rewrite shape's clauses: every field of the row but the totals, conditional on the version read.
fn rewrite(
    e: &mut Expression,
    addition: &Addition,
    existing: &BTreeSet<&str>,
    stored_version: Option<u64>,
    commit_id: &str,
    what: &str,
) -> Result<(), DestinationError> {
    let record = &addition.record;
    let next = stored_version.map_or(1, |v| v.saturating_add(1));
    let whole = mirror_item(record, next, commit_id).map_err(destination_error)?;
    if !fits(&whole) {
        return Err(DestinationError::Permanent(format!(
            "{what}: the row would be a {}-byte DynamoDB item, over the limit of {ITEM_SIZE_LIMIT} bytes",
            item_size(&whole)
        )));
    }
    let mut body = match &record.state {
        Value::Object(fields) => fields.clone(),
        _ => return Err(DestinationError::Permanent(format!("{what}: an in_order state is not an object"))),
    };
    body.retain(|field, _| !existing.contains(field.as_str()) && !addition.adds.iter().any(|(f, _)| f == field));
    let body = serde_json::to_string(&body)
        .map_err(|e| DestinationError::Permanent(format!("{what}: encoding the state as JSON: {e}")))?;
    e.set("type", ITEM_TYPE, s(MIRROR_TYPE));
    e.set("key", ENTITY_KEY, s(record.entity_key.clone()));
    e.set("body", BODY, s(body));
    e.set("version", VERSION, n(next));
    e.set("deleted", DELETED, AttributeValue::Bool(false));
    if addition.latest {
        let copied = [ORDER_NANOS, ORDER_VERSION, CONTENT_HASH, EVENT_ID, FENCE];
        for (i, attribute) in copied.into_iter().enumerate() {
            if let Some(value) = whole.get(attribute) {
                e.set(&format!("row{i}"), attribute, value.clone());
            }
        }
    }
    match stored_version {
        Some(version) => {
            e.conditions.push("#version = :expected".to_owned());
            e.values.insert(":expected".to_owned(), n(version));
        }
        None => {
            e.conditions.push("attribute_not_exists(#pk)".to_owned());
            e.names.insert("#pk".to_owned(), PK.to_owned());
        }
    }
    Ok(())
}
