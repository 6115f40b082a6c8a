//! Reading DynamoDB's condition failures: our own retried success, a conflict, or something else.

use super::commit::Prepared;
use super::items::{number, string, Item, BODY, COMMIT_ID, VERSION};
use crate::store::aws::error::{classify, store_error, Meaning};
use crate::store::{Expect, StoreError};
use aws_sdk_dynamodb::types::CancellationReason;

/// Whether `old` (the stored item a failed condition returned) is exactly what this commit wrote: then the
/// condition failed because an earlier attempt of the same request committed (an SDK retry after a timeout).
fn is_ours(write: &Prepared, old: Option<&Item>, commit_id: &str) -> bool {
    old.is_some_and(|old| {
        string(old, COMMIT_ID) == Some(commit_id)
            && number(old, VERSION) == number(&write.item, VERSION)
            && old.get(BODY) == write.item.get(BODY)
    })
}

fn describe(expect: Expect) -> String {
    match expect {
        Expect::Absent => "it absent".to_owned(),
        Expect::Version(v) => format!("version {v}"),
    }
}

/// The conflict of `write` against the stored item `old`.
fn conflict(write: &Prepared, old: Option<&Item>) -> StoreError {
    let found =
        old.and_then(|o| number(o, VERSION)).map_or_else(|| "found none".to_owned(), |v| format!("found version {v}"));
    StoreError::Conflict(format!("{}: expected {}, {found}", write.what, describe(write.expect)).into())
}

/// A single `PutItem` failed its condition: Ok when the stored item is the one we wrote, else a conflict.
pub(super) fn judge_condition_failure(write: &Prepared, old: Option<&Item>, commit_id: &str) -> Result<(), StoreError> {
    if is_ours(write, old, commit_id) {
        tracing::info!(item = %write.what, "a retried write found its own earlier attempt committed");
        return Ok(());
    }
    Err(conflict(write, old))
}

/// A transaction was canceled: Ok when every item failed its condition because it already holds what this very
/// commit wrote; a conflict when a condition failed or another transaction interfered; otherwise by reason code.
pub(super) fn judge_cancellation(
    writes: &[Prepared],
    reasons: &[CancellationReason],
    commit_id: &str,
) -> Result<(), StoreError> {
    let failed = |reason: &CancellationReason| reason.code() == Some("ConditionalCheckFailed");
    if reasons.len() == writes.len()
        && writes.iter().zip(reasons).all(|(w, r)| failed(r) && is_ours(w, r.item(), commit_id))
    {
        tracing::info!(writes = writes.len(), "a retried transaction found its own earlier attempt committed");
        return Ok(());
    }
    if let Some((write, reason)) = writes.iter().zip(reasons).find(|(_, r)| failed(r)) {
        return Err(conflict(write, reason.item()));
    }
    let mut worst: Option<(Meaning, String)> = None;
    for (write, reason) in writes.iter().zip(reasons) {
        let code = reason.code().unwrap_or("None");
        if code == "None" {
            continue;
        }
        let meaning = classify(Some(code), None);
        let message = format!(
            "transaction canceled at {}: {code}{}",
            write.what,
            reason.message().map(|m| format!(" ({m})")).unwrap_or_default()
        );
        // A conflict wins over throttling, which wins over anything else: the most retryable meaning.
        let rank = |m: Meaning| match m {
            Meaning::Conflict => 0,
            Meaning::Throttled => 1,
            Meaning::Unavailable => 2,
            _ => 3,
        };
        if worst.as_ref().is_none_or(|(m, _)| rank(meaning) < rank(*m)) {
            worst = Some((meaning, message));
        }
    }
    Err(match worst {
        Some((meaning, message)) => store_error(meaning, message.into()),
        None => StoreError::Backend(format!("transaction canceled without a reason: {reasons:?}").into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::aws::error::from_sdk;
    use aws_sdk_dynamodb::operation::put_item::PutItemError;
    use aws_sdk_dynamodb::types::error::ProvisionedThroughputExceededException;
    use aws_sdk_dynamodb::types::AttributeValue;
    use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
    use aws_smithy_runtime_api::client::result::{ConnectorError, SdkError};
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;

    fn response(status: u16) -> HttpResponse {
        HttpResponse::new(StatusCode::try_from(status).expect("status"), SdkBody::empty())
    }

    fn service(err: PutItemError, status: u16) -> SdkError<PutItemError, HttpResponse> {
        SdkError::service_error(err, response(status))
    }

    fn generic(code: &str, status: u16) -> SdkError<PutItemError, HttpResponse> {
        service(PutItemError::generic(ErrorMetadata::builder().code(code).message("m").build()), status)
    }

    #[test]
    fn throttling_codes_are_throttled() {
        let modeled = PutItemError::ProvisionedThroughputExceededException(
            ProvisionedThroughputExceededException::builder()
                .message("slow down")
                .meta(ErrorMetadata::builder().code("ProvisionedThroughputExceededException").build())
                .build(),
        );
        assert!(matches!(from_sdk("put", service(modeled, 400)), StoreError::Throttled(_)));
        for code in ["RequestLimitExceeded", "ThrottlingException"] {
            assert!(matches!(from_sdk("put", generic(code, 400)), StoreError::Throttled(_)), "{code}");
        }
        assert!(matches!(from_sdk("put", generic("Whatever", 429)), StoreError::Throttled(_)));
    }

    #[test]
    fn server_errors_timeouts_and_dispatch_failures_are_unavailable() {
        assert!(matches!(from_sdk("put", generic("InternalServerError", 500)), StoreError::Unavailable(_)));
        assert!(matches!(from_sdk("put", generic("Unknown", 503)), StoreError::Unavailable(_)));
        let timeout: SdkError<PutItemError, HttpResponse> = SdkError::timeout_error("attempt timed out");
        assert!(matches!(from_sdk("put", timeout), StoreError::Unavailable(_)));
        let io: SdkError<PutItemError, HttpResponse> =
            SdkError::dispatch_failure(ConnectorError::io("connection reset".into()));
        assert!(matches!(from_sdk("put", io), StoreError::Unavailable(_)));
    }

    #[test]
    fn the_sdk_error_is_kept_as_the_source() {
        use aws_sdk_dynamodb::error::ProvideErrorMetadata;
        use std::error::Error;
        let error = from_sdk("put", generic("ThrottlingException", 400));
        let sdk = error.detail().source().and_then(|e| e.downcast_ref::<SdkError<PutItemError, HttpResponse>>());
        assert_eq!(sdk.and_then(|e| e.as_service_error()).and_then(|e| e.code()), Some("ThrottlingException"));
    }

    #[test]
    fn conditions_are_conflicts_and_validation_is_a_backend_error() {
        assert!(matches!(from_sdk("put", generic("ConditionalCheckFailedException", 400)), StoreError::Conflict(_)));
        assert!(matches!(from_sdk("put", generic("TransactionConflictException", 400)), StoreError::Conflict(_)));
        match from_sdk("put", generic("ValidationException", 400)) {
            StoreError::Backend(message) => assert!(message.contains("ValidationException"), "{message}"),
            other => panic!("expected Backend, got {other:?}"),
        }
    }

    fn prepared(version: u64, body: &str) -> Prepared {
        let item = Item::from([
            (VERSION.to_owned(), AttributeValue::N(version.to_string())),
            (BODY.to_owned(), AttributeValue::S(body.to_owned())),
            (COMMIT_ID.to_owned(), AttributeValue::S("c1".to_owned())),
        ]);
        Prepared { what: "event ev-1".to_owned(), item, expect: Expect::Absent, part: None }
    }

    fn reason(code: &str, item: Option<Item>) -> CancellationReason {
        CancellationReason::builder().code(code).set_item(item).build()
    }

    #[test]
    fn a_cancellation_is_ours_only_when_every_item_is_ours() {
        let writes = [prepared(1, "a"), prepared(2, "b")];
        let ours = [
            reason("ConditionalCheckFailed", Some(writes[0].item.clone())),
            reason("ConditionalCheckFailed", Some(writes[1].item.clone())),
        ];
        assert!(judge_cancellation(&writes, &ours, "c1").is_ok());
        assert!(matches!(judge_cancellation(&writes, &ours, "c2"), Err(StoreError::Conflict(_))), "another commit");
        let mixed = [reason("None", None), reason("ConditionalCheckFailed", Some(prepared(3, "x").item))];
        match judge_cancellation(&writes, &mixed, "c1") {
            Err(StoreError::Conflict(message)) => assert!(message.contains("found version 3"), "{message}"),
            other => panic!("expected Conflict, got {other:?}"),
        }
        let raced = [reason("TransactionConflict", None), reason("None", None)];
        assert!(matches!(judge_cancellation(&writes, &raced, "c1"), Err(StoreError::Conflict(_))));
        let throttled = [reason("ThrottlingError", None), reason("None", None)];
        assert!(matches!(judge_cancellation(&writes, &throttled, "c1"), Err(StoreError::Throttled(_))));
        let invalid = [reason("ValidationError", None), reason("None", None)];
        assert!(matches!(judge_cancellation(&writes, &invalid, "c1"), Err(StoreError::Backend(_))));
    }

    #[test]
    fn a_condition_failure_is_ours_only_with_our_commit_id_version_and_body() {
        let write = prepared(1, "a");
        assert!(judge_condition_failure(&write, Some(&write.item), "c1").is_ok());
        assert!(judge_condition_failure(&write, Some(&prepared(1, "other").item), "c1").is_err());
        assert!(judge_condition_failure(&write, Some(&write.item), "c2").is_err());
        assert!(matches!(judge_condition_failure(&write, None, "c1"), Err(StoreError::Conflict(_))));
    }
}
