//! Reading DynamoDB's answer to a `PutItem` (the awsJson 1.0 protocol's errors).

use super::PutFailure;
use crate::store::aws::wire::{item_from_wire, Item};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::ConnectorError;
use http_body_util::BodyExt;
use serde_json::Value;

/// What one attempt got back.
#[derive(Debug)]
pub(super) enum Answer {
    /// HTTP 200: written.
    Written,
    /// `ConditionalCheckFailedException`, with the stored item when DynamoDB returned it.
    ConditionFailed(Option<Item>),
    /// Any other error answer.
    Failed(PutFailure),
}

/// The answer of `response`; a body cut off while read is a transport failure.
pub(super) async fn read(mut response: HttpResponse) -> Result<Answer, PutFailure> {
    let status = response.status().as_u16();
    let header_code = response.headers().get("x-amzn-errortype").map(str::to_owned);
    let request_id = response.headers().get("x-amzn-requestid").map(str::to_owned);
    let body = response.take_body().collect().await.map_err(|e| PutFailure::Transport(ConnectorError::io(e)))?;
    let mut answer = judge(status, header_code.as_deref(), &body.to_bytes());
    if let Answer::Failed(PutFailure::Service { request_id: id, .. }) = &mut answer {
        *id = request_id;
    }
    Ok(answer)
}

/// The answer of an HTTP `status` with the `x-amzn-errortype` header `header_code` and `body`.
fn judge(status: u16, header_code: Option<&str>, body: &[u8]) -> Answer {
    if (200..300).contains(&status) {
        return Answer::Written;
    }
    let json: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let code = header_code
        .or_else(|| json.get("__type").and_then(Value::as_str))
        .or_else(|| json.get("code").and_then(Value::as_str))
        .map(sanitize);
    if code.as_deref() == Some("ConditionalCheckFailedException") {
        return Answer::ConditionFailed(json.get("Item").and_then(item_from_wire));
    }
    let message = json
        .get("message")
        .or_else(|| json.get("Message"))
        .and_then(Value::as_str)
        .map_or_else(|| String::from_utf8_lossy(body).chars().take(300).collect(), str::to_owned);
    Answer::Failed(PutFailure::Service { status, code, message, request_id: None })
}

/// An error code without its namespace (`com.amazonaws.dynamodb.v20120810#`) or trailing URI (`:http://…`).
fn sanitize(code: &str) -> String {
    let code = code.split(':').next().unwrap_or(code);
    code.rsplit('#').next().unwrap_or(code).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::types::AttributeValue;

    #[test]
    fn a_failed_condition_carries_the_stored_item() {
        let body = br#"{"__type":"com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException",
            "message":"The conditional request failed","Item":{"version":{"N":"4"}}}"#;
        match judge(400, None, body) {
            Answer::ConditionFailed(Some(item)) => {
                assert_eq!(item.get("version"), Some(&AttributeValue::N("4".into())))
            }
            other => panic!("expected the stored item, got {other:?}"),
        }
        let without_item = br#"{"__type":"ConditionalCheckFailedException","message":"m"}"#;
        assert!(matches!(judge(400, None, without_item), Answer::ConditionFailed(None)));
    }

    #[test]
    fn error_codes_come_from_the_header_first_then_the_body() {
        let body = br#"{"__type":"com.amazonaws.dynamodb.v20120810#ValidationException","Message":"bad"}"#;
        match judge(400, Some("ThrottlingException:http://internal.amazon.com/coral/"), body) {
            Answer::Failed(PutFailure::Service { status, code, message, request_id: None }) => {
                assert_eq!((status, code.as_deref(), message.as_str()), (400, Some("ThrottlingException"), "bad"));
            }
            other => panic!("expected a service failure, got {other:?}"),
        }
        match judge(503, None, b"<html>Service Unavailable</html>") {
            Answer::Failed(PutFailure::Service { status, code, message, request_id: None }) => {
                assert_eq!((status, code, message.as_str()), (503, None, "<html>Service Unavailable</html>"));
            }
            other => panic!("expected a service failure, got {other:?}"),
        }
        assert!(matches!(judge(200, None, b"{}"), Answer::Written));
    }
}
