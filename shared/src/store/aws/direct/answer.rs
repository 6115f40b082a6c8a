//! Reading DynamoDB's answers (the awsJson 1.0 protocol: a JSON body, errors named by `x-amzn-ErrorType` or
//! `__type`).

use super::DirectFailure;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::ConnectorError;
use http_body_util::BodyExt;
use serde_json::Value;

/// The JSON body of a 2xx answer, or the failure DynamoDB answered; a body cut off while read is a transport
/// failure.
pub(super) async fn read(mut response: HttpResponse) -> Result<Value, DirectFailure> {
    let status = response.status().as_u16();
    let header_code = response.headers().get("x-amzn-errortype").map(str::to_owned);
    let request_id = response.headers().get("x-amzn-requestid").map(str::to_owned);
    let body = response.take_body().collect().await.map_err(|e| DirectFailure::Transport(ConnectorError::io(e)))?;
    judge(status, header_code.as_deref(), request_id, &body.to_bytes())
}

/// The answer of an HTTP `status` with the `x-amzn-ErrorType` header `header_code` and `body`.
fn judge(
    status: u16,
    header_code: Option<&str>,
    request_id: Option<String>,
    body: &[u8],
) -> Result<Value, DirectFailure> {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    if (200..300).contains(&status) {
        return json.ok_or_else(|| DirectFailure::Malformed(String::from_utf8_lossy(body).chars().take(300).collect()));
    }
    let json = json.unwrap_or(Value::Null);
    let code = header_code
        .or_else(|| json.get("__type").and_then(Value::as_str))
        .or_else(|| json.get("code").and_then(Value::as_str))
        .map(sanitize);
    let message = json
        .get("message")
        .or_else(|| json.get("Message"))
        .and_then(Value::as_str)
        .map_or_else(|| String::from_utf8_lossy(body).chars().take(300).collect(), str::to_owned);
    Err(DirectFailure::Service { status, code, message, request_id, details: json })
}

/// An error code without its namespace (`com.amazonaws.dynamodb.v20120810#`) or trailing URI (`:http://…`).
fn sanitize(code: &str) -> String {
    let code = code.split(':').next().unwrap_or(code);
    code.rsplit('#').next().unwrap_or(code).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_error_answer_keeps_its_details_for_the_operation_to_read() {
        let body = br#"{"__type":"com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException",
            "message":"The conditional request failed","Item":{"version":{"N":"4"}}}"#;
        match judge(400, None, Some("R1".into()), body) {
            Err(DirectFailure::Service { status, code, message, request_id, details }) => {
                assert_eq!((status, code.as_deref()), (400, Some("ConditionalCheckFailedException")));
                assert_eq!((message.as_str(), request_id.as_deref()), ("The conditional request failed", Some("R1")));
                assert_eq!(details["Item"], json!({"version": {"N": "4"}}));
            }
            other => panic!("expected a service failure, got {other:?}"),
        }
    }

    #[test]
    fn error_codes_come_from_the_header_first_then_the_body() {
        let body = br#"{"__type":"com.amazonaws.dynamodb.v20120810#ValidationException","Message":"bad"}"#;
        match judge(400, Some("ThrottlingException:http://internal.amazon.com/coral/"), None, body) {
            Err(DirectFailure::Service { status, code, message, .. }) => {
                assert_eq!((status, code.as_deref(), message.as_str()), (400, Some("ThrottlingException"), "bad"));
            }
            other => panic!("expected a service failure, got {other:?}"),
        }
        match judge(503, None, None, b"<html>Service Unavailable</html>") {
            Err(DirectFailure::Service { status, code, message, .. }) => {
                assert_eq!((status, code, message.as_str()), (503, None, "<html>Service Unavailable</html>"));
            }
            other => panic!("expected a service failure, got {other:?}"),
        }
        assert_eq!(judge(200, None, None, b"{}").ok(), Some(json!({})));
        assert!(matches!(judge(200, None, None, b"<cut"), Err(DirectFailure::Malformed(_))));
    }
}
