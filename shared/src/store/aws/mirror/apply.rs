//! Applying one change: read the row and the effect consistently, decide with the shared guard, write both in one
//! conditional transaction (the row put whole, or an `in_order` addition updated in place: `totals.rs`); a lost
//! race reads and decides again.

use super::items::{
    decode_mirror, effect_item, effect_pk, fits, item_size, key, mirror_item, mirror_pk, opt_string, version, Item,
    COMMIT_ID, EFFECT, MIRROR, PK,
};
use super::{totals, DynamoMirror};
use crate::destination::guard::{decide, destination_error, rewrites, Decision, MirrorRecord, PendingChange};
use crate::destination::{ApplyOutcome, DestinationError};
use crate::store::aws::direct::TransactOutcome;
use crate::store::aws::error::{build_error, classify, from_sdk, store_error, Meaning};
use crate::store::aws::pause;
use crate::store::aws::sdk_batch_get::sdk_batch_get;
use crate::store::aws::ITEM_SIZE_LIMIT;
use crate::store::StoreError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, CancellationReason, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
};
use std::collections::HashMap;

/// Read-decide-write rounds before a change that keeps losing races is handed back as retryable.
pub const MAX_ROUNDS: u32 = 8;
/// `BatchGetItem` calls per read before unprocessed keys count as throttling.
const MAX_READ_CALLS: u32 = 4;

/// What one transaction attempt came to.
enum Written {
    /// The row and the effect are stored.
    Committed,
    /// The row changed (or another transaction held it) since it was read: read and decide again.
    Raced,
    /// The event's effect exists: written by this very call (`ours`: an earlier attempt committed) or by another.
    EffectExists {
        /// Whether the stored effect carries this call's commit id.
        ours: bool,
    },
}

/// Whether a stored effect item was written by the call with `commit_id`.
fn is_ours(effect: &Item, commit_id: &str) -> bool {
    matches!(effect.get(COMMIT_ID), Some(AttributeValue::S(id)) if id == commit_id)
}

/// Applies `change` with `commit_id` stamped on what it writes.
pub(super) async fn apply(
    mirror: &DynamoMirror,
    change: &PendingChange,
    commit_id: &str,
) -> Result<ApplyOutcome, DestinationError> {
    for round in 0..MAX_ROUNDS {
        if round > 0 {
            pause::before_round(round).await;
        }
        let (row, effect) = read(mirror, change).await.map_err(destination_error)?;
        let rewrite = rewrites(change) && effect.is_some();
        if let Some(effect) = effect.filter(|_| !rewrite) {
            return Ok(if is_ours(&effect, commit_id) { ApplyOutcome::Applied } else { ApplyOutcome::AlreadyApplied });
        }
        let (record, stored_version) = match &row {
            Some(item) => {
                let what = format!("mirror row of {}", change.entity_key);
                (
                    Some(decode_mirror(item).map_err(destination_error)?),
                    Some(version(item, &what).map_err(destination_error)?),
                )
            }
            None => (None, None),
        };
        let what = format!("writing {} to the mirror row of {}", change.event_id, change.entity_key);
        let (row_write, applied_at) = match decide(record.as_ref(), change, mirror.clock.now())? {
            Decision::Skip(outcome) => return Ok(outcome),
            Decision::Write(record) => (put_row(mirror, &record, stored_version, commit_id, &what)?, record.applied_at),
            Decision::Add(addition) => {
                let update = totals::update(mirror, &addition, row.as_ref(), stored_version, commit_id, &what)?;
                (update, addition.record.applied_at)
            }
        };
        match write(mirror, change, row_write, applied_at, commit_id, rewrite, &what).await? {
            Written::Committed => return Ok(ApplyOutcome::Applied),
            Written::EffectExists { ours: true } => return Ok(ApplyOutcome::Applied),
            Written::EffectExists { ours: false } => return Ok(ApplyOutcome::AlreadyApplied),
            Written::Raced => {
                tracing::debug!(entity = %change.entity_key, event = %change.event_id, round, "mirror write lost a race");
            }
        }
    }
    Err(DestinationError::retryable(format!(
        "writing {} to the mirror lost {MAX_ROUNDS} races in a row for {}; retry later",
        change.event_id, change.entity_key
    )))
}

/// The entity's row and the event's effect, read strongly consistently in one `BatchGetItem` (repeated only for
/// keys DynamoDB left unprocessed).
async fn read(mirror: &DynamoMirror, change: &PendingChange) -> Result<(Option<Item>, Option<Item>), StoreError> {
    let what = format!("reading the mirror row of {} and the effect of {}", change.entity_key, change.event_id);
    let (row_pk, effect_pk) = (mirror_pk(&change.entity_key), effect_pk(&change.event_id));
    let mut wanted = vec![key(row_pk.clone(), MIRROR), key(effect_pk.clone(), EFFECT)];
    let (mut row, mut effect) = (None, None);
    for call in 0..MAX_READ_CALLS {
        if call > 0 {
            pause::before_round(call).await;
        }
        let (items, unprocessed) = match mirror.direct.batch_get_item(&mirror.table, &wanted, true).await {
            Some(got) => got.map(|got| (got.items, got.unprocessed)).map_err(|f| f.into_store_error(&what))?,
            // Before the mirror's client has made a request: through the SDK.
            None => sdk_batch_get(&mirror.client, &mirror.table, wanted, &what).await?,
        };
        for item in items {
            match opt_string(&item, PK, &what)? {
                Some(pk) if pk == row_pk => row = Some(item),
                Some(pk) if pk == effect_pk => effect = Some(item),
                _ => {}
            }
        }
        wanted = unprocessed;
        if wanted.is_empty() {
            return Ok((row, effect));
        }
    }
    Err(StoreError::Throttled(format!("{what}: DynamoDB left keys unprocessed {MAX_READ_CALLS} times").into()))
}

/// A conditional put inside the transaction.
fn put(
    mirror: &DynamoMirror,
    item: Item,
    condition: &str,
    values: Option<HashMap<String, AttributeValue>>,
    what: &str,
) -> Result<TransactWriteItem, StoreError> {
    let put = Put::builder()
        .table_name(&mirror.table)
        .set_item(Some(item))
        .condition_expression(condition)
        .set_expression_attribute_values(values)
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
        .build()
        .map_err(|e| build_error(what, e))?;
    Ok(TransactWriteItem::builder().put(put).build())
}

/// The row's part of the transaction that stores `record` whole, expecting the row at `stored_version` (or absent).
fn put_row(
    mirror: &DynamoMirror,
    record: &MirrorRecord,
    stored_version: Option<u64>,
    commit_id: &str,
    what: &str,
) -> Result<TransactWriteItem, DestinationError> {
    let next = stored_version.map_or(1, |v| v.saturating_add(1));
    let row = mirror_item(record, next, commit_id).map_err(destination_error)?;
    if !fits(&row) {
        return Err(DestinationError::Permanent(format!(
            "{what}: the row would be a {}-byte DynamoDB item, over the limit of {ITEM_SIZE_LIMIT} bytes",
            item_size(&row)
        )));
    }
    match stored_version {
        None => put(mirror, row, "attribute_not_exists(pk)", None, what),
        Some(v) => put(
            mirror,
            row,
            "version = :expected",
            Some(HashMap::from([(":expected".to_owned(), AttributeValue::N(v.to_string()))])),
            what,
        ),
    }
    .map_err(destination_error)
}

/// Writes the row (`row_write`: a conditional put or update) and the event's effect (expecting it absent, or, for a
/// `rewrite` of a forced snapshot, present: the event keeps one effect) in one `TransactWriteItems`.
async fn write(
    mirror: &DynamoMirror,
    change: &PendingChange,
    row_write: TransactWriteItem,
    applied_at: chrono::DateTime<chrono::Utc>,
    commit_id: &str,
    rewrite: bool,
    what: &str,
) -> Result<Written, DestinationError> {
    let effect = effect_item(&change.event_id, &change.entity_key, applied_at, commit_id).map_err(destination_error)?;
    let condition = if rewrite { "attribute_exists(pk)" } else { "attribute_not_exists(pk)" };
    let effect_put = put(mirror, effect, condition, None, what).map_err(destination_error)?;
    // One `ClientRequestToken` per call (the SDK's, or the direct request's), so retries of it are idempotent.
    let items = [row_write, effect_put];
    if let Some(sent) = mirror.direct.transact_write_items(&items).await {
        return match sent {
            Ok(TransactOutcome::Committed) => Ok(Written::Committed),
            Ok(TransactOutcome::Canceled(reasons)) => judge(&reasons, commit_id, what),
            Err(failure) => match failure.into_store_error(what) {
                StoreError::Conflict(_) => Ok(Written::Raced),
                other => Err(destination_error(other)),
            },
        };
    }
    let [row_write, effect_put] = items;
    let sent = mirror.client.transact_write_items().transact_items(row_write).transact_items(effect_put).send().await;
    match sent {
        Ok(_) => Ok(Written::Committed),
        Err(e) => match e.as_service_error() {
            Some(TransactWriteItemsError::TransactionCanceledException(canceled)) => {
                judge(canceled.cancellation_reasons(), commit_id, what)
            }
            _ => match from_sdk(what, e) {
                StoreError::Conflict(_) => Ok(Written::Raced),
                other => Err(destination_error(other)),
            },
        },
    }
}

/// Reads a canceled transaction's reasons (row first, effect second).
fn judge(reasons: &[CancellationReason], commit_id: &str, what: &str) -> Result<Written, DestinationError> {
    let failed = |reason: &CancellationReason| reason.code() == Some("ConditionalCheckFailed");
    if let Some(effect) = reasons.get(1).filter(|r| failed(r)) {
        // The effect exists. Without the stored item to tell whose it is, read again: the read decides.
        return Ok(match effect.item() {
            Some(old) => Written::EffectExists { ours: is_ours(old, commit_id) },
            None => Written::Raced,
        });
    }
    let mut worst: Option<(Meaning, String)> = None;
    for reason in reasons {
        let code = reason.code().unwrap_or("None");
        if code == "None" {
            continue;
        }
        let meaning = classify(Some(code), None);
        if meaning == Meaning::Conflict {
            return Ok(Written::Raced);
        }
        let message = format!(
            "{what}: transaction canceled: {code}{}",
            reason.message().map(|m| format!(" ({m})")).unwrap_or_default()
        );
        // Throttling wins over anything else: the most retryable meaning.
        if worst.as_ref().is_none_or(|(m, _)| meaning == Meaning::Throttled && *m != Meaning::Throttled) {
            worst = Some((meaning, message));
        }
    }
    Err(match worst {
        Some((meaning, message)) => destination_error(store_error(meaning, message.into())),
        None => DestinationError::retryable(format!("{what}: transaction canceled without a reason: {reasons:?}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(code: &str, item: Option<Item>) -> CancellationReason {
        CancellationReason::builder().code(code).set_item(item).build()
    }

    fn effect(commit_id: &str) -> Item {
        HashMap::from([(COMMIT_ID.to_owned(), AttributeValue::S(commit_id.to_owned()))])
    }

    #[test]
    fn a_failed_effect_condition_tells_whose_the_effect_is() {
        let ours = [reason("None", None), reason("ConditionalCheckFailed", Some(effect("c1")))];
        assert!(matches!(judge(&ours, "c1", "w"), Ok(Written::EffectExists { ours: true })));
        assert!(matches!(judge(&ours, "c2", "w"), Ok(Written::EffectExists { ours: false })));
        let both = [reason("ConditionalCheckFailed", None), reason("ConditionalCheckFailed", None)];
        assert!(matches!(judge(&both, "c1", "w"), Ok(Written::Raced)), "no old item: read again");
    }

    #[test]
    fn races_repeat_and_other_reasons_fail_by_meaning() {
        let moved = [reason("ConditionalCheckFailed", None), reason("None", None)];
        assert!(matches!(judge(&moved, "c1", "w"), Ok(Written::Raced)));
        let conflict = [reason("TransactionConflict", None), reason("None", None)];
        assert!(matches!(judge(&conflict, "c1", "w"), Ok(Written::Raced)));
        let throttled = [reason("ValidationError", None), reason("ThrottlingError", None)];
        match judge(&throttled, "c1", "w") {
            Err(DestinationError::Throttled { message, .. }) => {
                assert!(message.contains("ThrottlingError"), "{message}")
            }
            other => panic!("expected Throttled, got {:?}", other.map(|_| ())),
        }
        assert!(matches!(judge(&[], "c1", "w"), Err(DestinationError::Retryable { .. })));
    }
}
