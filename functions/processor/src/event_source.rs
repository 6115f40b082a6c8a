//! Building the `SqsEvent` Lambda would deliver for received queue messages: what the local runtime and the
//! tests hand to the handler.

use aws_lambda_events::event::sqs::SqsEvent;
use serde_json::{json, Value};
use synctrail::store::QueueMessage;

/// The ARN the local event source reports.
pub const LOCAL_QUEUE_ARN: &str = "arn:aws:sqs:local:000000000000:synctrail-ingest";

/// The `SqsEvent` for `messages`, with the attributes Lambda sets (receive count, timestamps, trace header).
pub fn sqs_event(messages: &[QueueMessage]) -> Result<SqsEvent, serde_json::Error> {
    let records: Vec<Value> = messages.iter().map(record).collect();
    serde_json::from_value(json!({ "Records": records }))
}

fn record(message: &QueueMessage) -> Value {
    let mut attributes = json!({
        "ApproximateReceiveCount": message.receive_count.to_string(),
        "SentTimestamp": message.sent_at.timestamp_millis().to_string(),
        "ApproximateFirstReceiveTimestamp": message.first_received_at.timestamp_millis().to_string(),
        "SenderId": "synctrail-local",
    });
    if let (Some(trace), Some(map)) = (&message.trace_header, attributes.as_object_mut()) {
        map.insert("AWSTraceHeader".to_owned(), Value::String(trace.clone()));
    }
    json!({
        "messageId": message.message_id,
        "receiptHandle": message.receipt_handle,
        "body": message.body,
        "attributes": attributes,
        "messageAttributes": {},
        "eventSource": "aws:sqs",
        "eventSourceARN": LOCAL_QUEUE_ARN,
        "awsRegion": "local",
    })
}
