//! Building the `SqsEvent` Lambda would deliver for received queue messages: what the local runtime and the
//! tests hand to the handler.

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use std::collections::HashMap;
use synctrail::store::QueueMessage;

/// The ARN the local event source reports.
pub const LOCAL_QUEUE_ARN: &str = "arn:aws:sqs:local:000000000000:synctrail-ingest";

/// The `SqsEvent` for `messages`, with the attributes Lambda sets (receive count, timestamps, trace header): the
/// value Lambda's JSON for them deserializes to, built field by field.
pub fn sqs_event(messages: &[QueueMessage]) -> SqsEvent {
    let mut event = SqsEvent::default();
    event.records = messages.iter().map(record).collect();
    event
}

fn record(message: &QueueMessage) -> SqsMessage {
    let mut attributes = HashMap::with_capacity(5);
    attributes.insert("ApproximateReceiveCount".to_owned(), message.receive_count.to_string());
    attributes.insert("SentTimestamp".to_owned(), message.sent_at.timestamp_millis().to_string());
    attributes.insert(
        "ApproximateFirstReceiveTimestamp".to_owned(),
        message.first_received_at.timestamp_millis().to_string(),
    );
    attributes.insert("SenderId".to_owned(), "synctrail-local".to_owned());
    if let Some(trace) = &message.trace_header {
        attributes.insert("AWSTraceHeader".to_owned(), trace.clone());
    }
    let mut record = SqsMessage::default();
    record.message_id = Some(message.message_id.clone());
    record.receipt_handle = Some(message.receipt_handle.clone());
    record.body = Some(message.body.clone());
    record.attributes = attributes;
    record.event_source = Some("aws:sqs".to_owned());
    record.event_source_arn = Some(LOCAL_QUEUE_ARN.to_owned());
    record.aws_region = Some("local".to_owned());
    record
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use serde_json::json;

    fn message(trace_header: Option<&str>) -> QueueMessage {
        QueueMessage {
            message_id: "m-1".to_owned(),
            receipt_handle: "r-1".to_owned(),
            body: r#"{"event_id":"e1"}"#.to_owned(),
            receive_count: 3,
            sent_at: Utc.with_ymd_and_hms(2026, 12, 7, 10, 0, 0).single().expect("time"),
            first_received_at: Utc.with_ymd_and_hms(2026, 12, 7, 10, 0, 1).single().expect("time"),
            trace_header: trace_header.map(str::to_owned),
        }
    }

    #[test]
    fn the_event_is_what_lambdas_json_for_the_messages_deserializes_to() {
        let messages = [message(Some("Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1")), message(None)];
        let lambda_json = json!({ "Records": [
            {
                "messageId": "m-1", "receiptHandle": "r-1", "body": r#"{"event_id":"e1"}"#,
                "attributes": {
                    "ApproximateReceiveCount": "3", "SentTimestamp": "1796637600000",
                    "ApproximateFirstReceiveTimestamp": "1796637601000", "SenderId": "synctrail-local",
                    "AWSTraceHeader": "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1",
                },
                "messageAttributes": {}, "eventSource": "aws:sqs", "eventSourceARN": LOCAL_QUEUE_ARN,
                "awsRegion": "local",
            },
            {
                "messageId": "m-1", "receiptHandle": "r-1", "body": r#"{"event_id":"e1"}"#,
                "attributes": {
                    "ApproximateReceiveCount": "3", "SentTimestamp": "1796637600000",
                    "ApproximateFirstReceiveTimestamp": "1796637601000", "SenderId": "synctrail-local",
                },
                "messageAttributes": {}, "eventSource": "aws:sqs", "eventSourceARN": LOCAL_QUEUE_ARN,
                "awsRegion": "local",
            },
        ]});
        let expected: SqsEvent = serde_json::from_value(lambda_json).expect("Lambda's SqsEvent JSON");

        assert_eq!(sqs_event(&messages), expected);
    }
}
