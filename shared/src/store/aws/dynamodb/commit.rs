//! `commit`: one conditional `PutItem`, or one `TransactWriteItems` for several writes; `commit_each`: one
//! conditional `PutItem` per write, in order (a transaction bills every item twice). `PutItem`s go direct once the
//! store's client has made a request (`store::aws::direct`).

use super::errors::{judge_cancellation, judge_condition_failure};
use super::history::{record_items, MovedLately, PartWrite};
use super::items::{head_item, number, string, Item, PK, VERSION};
use super::DynamoStore;
use crate::store::aws::direct::PutOutcome;
use crate::store::aws::error::{build_error, from_sdk};
use crate::store::{Expect, PartialCommit, StoreError, Write};
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem};
use std::collections::HashMap;

/// DynamoDB's limit of items in one transaction.
const MAX_TRANSACTION_ITEMS: usize = 100;

/// One write, ready to send.
pub(super) struct Prepared {
    /// `event <id>` or `head of <entity>`, for messages.
    pub(super) what: String,
    /// The whole new item.
    pub(super) item: Item,
    /// The condition on the stored item.
    pub(super) expect: Expect,
    /// The history part the record moves out, written before it (`history.rs`).
    pub(super) part: Option<PartWrite>,
}

impl Prepared {
    fn of(write: &Write, commit_id: &str, lately: &MovedLately) -> Result<Self, StoreError> {
        Ok(match write {
            Write::Event { record, expect } => {
                let (item, part) = record_items(record, commit_id, lately)?;
                Self { what: format!("event {}", record.event_id), item, expect: *expect, part }
            }
            Write::Head { head, expect } => Self {
                what: format!("head of {}", head.entity),
                item: head_item(head, commit_id)?,
                expect: *expect,
                part: None,
            },
        })
    }

    /// The condition expression and its values.
    fn condition(&self) -> (&'static str, Option<HashMap<String, AttributeValue>>) {
        match self.expect {
            Expect::Absent => ("attribute_not_exists(pk)", None),
            Expect::Version(v) => (
                "version = :expected",
                Some(HashMap::from([(":expected".to_owned(), AttributeValue::N(v.to_string()))])),
            ),
        }
    }

    fn pk(&self) -> Option<&str> {
        string(&self.item, PK)
    }
}

/// Applies every write or none, stamping each item with `commit_id`.
pub(super) async fn commit(store: &DynamoStore, commit_id: &str, writes: Vec<Write>) -> Result<(), StoreError> {
    if writes.is_empty() {
        return Ok(());
    }
    if writes.len() > MAX_TRANSACTION_ITEMS {
        return Err(StoreError::Backend(
            format!(
                "one commit of {} writes is over DynamoDB's limit of {MAX_TRANSACTION_ITEMS} items per transaction",
                writes.len()
            )
            .into(),
        ));
    }
    let prepared = collapse(prepare(store, commit_id, &writes)?)?;
    for write in &prepared {
        put_part(store, write).await?;
    }
    match prepared.as_slice() {
        [one] => put_one(store, one, commit_id).await,
        _ => transact(store, &prepared, commit_id).await,
    }
}

/// Applies the writes one conditional `PutItem` after another, stopping at the first that fails.
pub(super) async fn commit_each(store: &DynamoStore, commit_id: &str, writes: Vec<Write>) -> Result<(), PartialCommit> {
    let stopped = |error| PartialCommit { applied: 0, error };
    let prepared = collapse(prepare(store, commit_id, &writes).map_err(stopped)?).map_err(stopped)?;
    for (applied, write) in prepared.iter().enumerate() {
        put_part(store, write).await.map_err(|error| PartialCommit { applied, error })?;
        put_one(store, write, commit_id).await.map_err(|error| PartialCommit { applied, error })?;
    }
    Ok(())
}

fn prepare(store: &DynamoStore, commit_id: &str, writes: &[Write]) -> Result<Vec<Prepared>, StoreError> {
    writes.iter().map(|w| Prepared::of(w, commit_id, &store.moved_lately)).collect()
}

/// Folds several writes of one item into one, as if applied in order: a later write must expect the version the
/// earlier one wrote (else the whole commit is a conflict, decided here), and the item keeps the first
/// expectation, the last body and the last body's history part. A DynamoDB transaction can touch an item only once.
fn collapse(writes: Vec<Prepared>) -> Result<Vec<Prepared>, StoreError> {
    let mut out: Vec<Prepared> = Vec::with_capacity(writes.len());
    for write in writes {
        let Some(earlier) = out.iter_mut().find(|p| p.pk() == write.pk()) else {
            out.push(write);
            continue;
        };
        let written = number(&earlier.item, VERSION);
        if write.expect != Expect::Version(written.unwrap_or(0)) || written.is_none() {
            let expected = match write.expect {
                Expect::Absent => "it absent".to_owned(),
                Expect::Version(v) => format!("version {v}"),
            };
            return Err(StoreError::Conflict(
                format!(
                    "{}: expected {expected}, found version {} (written earlier in the same commit)",
                    write.what,
                    written.unwrap_or(0)
                )
                .into(),
            ));
        }
        earlier.item = write.item;
        earlier.part = write.part;
    }
    Ok(out)
}

/// Writes the history part `write` moves out, if any: a plain `PutItem` (a part is named by what it holds, so
/// writing one again writes the same item), then remembered, so that a copy of the record that did not see the
/// move makes it without writing the part again.
async fn put_part(store: &DynamoStore, write: &Prepared) -> Result<(), StoreError> {
    let Some(part) = &write.part else { return Ok(()) };
    store
        .client
        .put_item()
        .table_name(&store.table)
        .set_item(Some(part.item.clone()))
        .send()
        .await
        .map_err(|e| from_sdk(&format!("writing a history part of {}", write.what), e))?;
    store.moved_lately.remember(&part.moved);
    Ok(())
}

/// One conditional `PutItem`: direct once the store's client has made a request (`direct`), through the SDK
/// before that.
async fn put_one(store: &DynamoStore, write: &Prepared, commit_id: &str) -> Result<(), StoreError> {
    let (condition, values) = write.condition();
    if let Some(put) = store.direct.put_item(&store.table, &write.item, condition, values.as_ref()).await {
        return match put {
            Ok(PutOutcome::Written) => Ok(()),
            Ok(PutOutcome::ConditionFailed(old)) => judge_condition_failure(write, old.as_ref(), commit_id),
            Err(failure) => Err(failure.into_store_error(&format!("writing {}", write.what))),
        };
    }
    let sent = store
        .client
        .put_item()
        .table_name(&store.table)
        .set_item(Some(write.item.clone()))
        .condition_expression(condition)
        .set_expression_attribute_values(values)
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
        .send()
        .await;
    match sent {
        Ok(_) => Ok(()),
        Err(e) => match e.as_service_error() {
            Some(PutItemError::ConditionalCheckFailedException(failed)) => {
                judge_condition_failure(write, failed.item(), commit_id)
            }
            _ => Err(from_sdk(&format!("writing {}", write.what), e)),
        },
    }
}

async fn transact(store: &DynamoStore, writes: &[Prepared], commit_id: &str) -> Result<(), StoreError> {
    let mut items = Vec::with_capacity(writes.len());
    for write in writes {
        let (condition, values) = write.condition();
        let put = Put::builder()
            .table_name(&store.table)
            .set_item(Some(write.item.clone()))
            .condition_expression(condition)
            .set_expression_attribute_values(values)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(|e| build_error(&format!("writing {}", write.what), e))?;
        items.push(TransactWriteItem::builder().put(put).build());
    }
    // The SDK fills `ClientRequestToken` once per call, so its own retries are idempotent for 10 minutes.
    let sent = store.client.transact_write_items().set_transact_items(Some(items)).send().await;
    match sent {
        Ok(_) => Ok(()),
        Err(e) => match e.as_service_error() {
            Some(TransactWriteItemsError::TransactionCanceledException(canceled)) => {
                judge_cancellation(writes, canceled.cancellation_reasons(), commit_id)
            }
            _ => Err(from_sdk(&format!("committing {} writes", writes.len()), e)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(pk: &str, expect: Expect, version: u64, body: &str) -> Prepared {
        let item = Item::from([
            (PK.to_owned(), AttributeValue::S(pk.to_owned())),
            (VERSION.to_owned(), AttributeValue::N(version.to_string())),
            ("body".to_owned(), AttributeValue::S(body.to_owned())),
        ]);
        Prepared { what: pk.to_owned(), item, expect, part: None }
    }

    #[test]
    fn writes_of_one_item_fold_into_one_or_conflict() {
        let folded = collapse(vec![
            write("a", Expect::Version(1), 2, "x"),
            write("b", Expect::Absent, 1, "y"),
            write("a", Expect::Version(2), 3, "z"),
        ])
        .expect("consistent");
        assert_eq!(folded.len(), 2);
        assert_eq!((folded[0].expect, string(&folded[0].item, "body")), (Expect::Version(1), Some("z")));
        let stale = collapse(vec![write("a", Expect::Version(1), 2, "x"), write("a", Expect::Version(5), 6, "z")]);
        assert!(matches!(stale, Err(StoreError::Conflict(m)) if m.contains("expected version 5, found version 2")));
        let reinsert = collapse(vec![write("a", Expect::Absent, 1, "x"), write("a", Expect::Absent, 1, "x")]);
        assert!(matches!(reinsert, Err(StoreError::Conflict(_))));
    }
}
