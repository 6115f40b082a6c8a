//! Converting AWS SDK errors into [`StoreError`]s by meaning, for all three services.

use crate::store::{Detail, StoreError};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// What a service error code means to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Meaning {
    /// A condition did not hold, or another transaction got there first: re-read and decide again.
    Conflict,
    /// Rate-limited: retry later.
    Throttled,
    /// A transient failure: retry later.
    Unavailable,
    /// The object or receipt handle does not exist (any more).
    NotFound,
    /// The object is in an archive storage class.
    Archived,
    /// Misconfiguration or a request the service refuses for good.
    Backend,
}

/// Service error codes that mean "slow down".
const THROTTLING: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "ThrottlingException",
    "Throttling",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "SlowDown",
    "KeyRangeThroughputExceeded",
    "ThrottlingError",
    "ProvisionedThroughputExceeded",
    // SQS: the queue's KMS key is throttled; too many messages in flight.
    "KmsThrottled",
    "OverLimit",
];

/// Service error codes that mean "try again later".
const TRANSIENT: &[&str] = &[
    "InternalServerError",
    "InternalFailure",
    "InternalError",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "RequestTimeout",
    "RequestTimeoutException",
    "TransactionInProgressException",
    // S3 (409): another conditional write of the same key is under way; DynamoDB global tables: another Region's
    // write of the item won a race. Both answer differently a moment later.
    "ConditionalRequestConflict",
    "OperationAborted",
    "ReplicatedWriteConflictException",
];

/// Classifies a service error by its code and HTTP status.
pub(crate) fn classify(code: Option<&str>, status: Option<u16>) -> Meaning {
    let code = code.unwrap_or_default();
    // SQS's JSON protocol may prefix codes, e.g. `AWS.SimpleQueueService.NonExistentQueue`.
    let short = code.rsplit('.').next().unwrap_or(code);
    match short {
        "ConditionalCheckFailedException"
        | "ConditionalCheckFailed"
        | "TransactionConflictException"
        | "TransactionConflict"
        | "TransactionCanceledException" => Meaning::Conflict,
        "NoSuchKey" | "NotFound" | "ReceiptHandleIsInvalid" | "MessageNotInflight" | "InvalidReceiptHandle" => {
            Meaning::NotFound
        }
        "InvalidObjectState" => Meaning::Archived,
        c if THROTTLING.contains(&c) => Meaning::Throttled,
        c if TRANSIENT.contains(&c) => Meaning::Unavailable,
        _ => match status {
            Some(429) => Meaning::Throttled,
            Some(s) if s >= 500 => Meaning::Unavailable,
            _ => Meaning::Backend,
        },
    }
}

/// The [`StoreError`] of `meaning`, with `detail`.
pub(crate) fn store_error(meaning: Meaning, detail: Detail) -> StoreError {
    match meaning {
        Meaning::Conflict => StoreError::Conflict(detail),
        Meaning::Throttled => StoreError::Throttled(detail),
        Meaning::Unavailable => StoreError::Unavailable(detail),
        Meaning::NotFound => StoreError::NotFound(detail),
        Meaning::Archived => StoreError::Archived(detail),
        Meaning::Backend => StoreError::Backend(detail),
    }
}

/// What an SDK error means: timeouts, dispatch and response failures are transient; service errors by code.
pub(crate) fn meaning_of<E>(e: &SdkError<E, HttpResponse>) -> Meaning
where
    E: ProvideErrorMetadata,
{
    match e {
        SdkError::TimeoutError(_) | SdkError::ResponseError(_) => Meaning::Unavailable,
        SdkError::DispatchFailure(failure) if failure.is_user() => Meaning::Backend,
        SdkError::DispatchFailure(_) => Meaning::Unavailable,
        SdkError::ServiceError(service) => classify(service.err().code(), Some(service.raw().status().as_u16())),
        _ => Meaning::Backend,
    }
}

/// Converts an SDK error met while doing `what` into a [`StoreError`] by meaning.
pub(crate) fn from_sdk<E>(what: &str, e: SdkError<E, HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let meaning = meaning_of(&e);
    let message = format!("{what}: {}", DisplayErrorContext(&e));
    store_error(meaning, Detail::caused_by(message, e))
}

/// A request the SDK refused to build: a bug or a bad name.
pub(crate) fn build_error(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("{what}: building the request failed: {e}").into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_classified_by_code_first_then_by_http_status() {
        let cases = [
            (Some("ConditionalCheckFailedException"), Some(400), Meaning::Conflict),
            (Some("AWS.SimpleQueueService.NonExistentQueue"), Some(400), Meaning::Backend),
            (Some("KmsThrottled"), Some(400), Meaning::Throttled),
            (Some("OverLimit"), Some(403), Meaning::Throttled),
            (Some("ConditionalRequestConflict"), Some(409), Meaning::Unavailable),
            (Some("OperationAborted"), Some(409), Meaning::Unavailable),
            (Some("ReplicatedWriteConflictException"), Some(400), Meaning::Unavailable),
            (Some("SlowDown"), Some(503), Meaning::Throttled),
            (Some("InvalidObjectState"), Some(403), Meaning::Archived),
            (Some("AccessDenied"), Some(403), Meaning::Backend),
            (Some("ValidationException"), Some(400), Meaning::Backend),
            (None, Some(429), Meaning::Throttled),
            (None, Some(502), Meaning::Unavailable),
            (None, Some(409), Meaning::Backend),
        ];
        for (code, status, meaning) in cases {
            assert_eq!(classify(code, status), meaning, "{code:?} {status:?}");
        }
    }
}
