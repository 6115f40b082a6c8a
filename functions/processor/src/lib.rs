//! The processor Lambda's handler: an `SqsEvent` in, an `SqsBatchResponse` naming exactly the records to retry out.
//!
//! Each record is parsed, validated and processed on its own, with panics caught: one bad record never fails the
//! batch. Records not started before the invocation's deadline minus a safety margin are returned for retry.

mod event_source;

pub use event_source::{sqs_event, LOCAL_QUEUE_ARN};
/// The invocation's context; it lives in `synctrail-lambda`, shared by every function.
pub use synctrail_lambda::InvocationContext;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use chrono::Duration;
use futures_util::FutureExt;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use synctrail::engine::{Disposition, Engine, Incoming, Outcome};

/// How one record of a batch ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordResult {
    /// The engine processed it.
    Processed(Outcome),
    /// Not started: the invocation's deadline was too near.
    NotStarted,
    /// The engine failed (storage down, a bug); the message is retried.
    Failed(String),
}

/// A processed batch: the response for Lambda and what happened to each record, in order.
#[derive(Debug, Clone)]
pub struct BatchResult {
    /// The partial batch response.
    pub response: SqsBatchResponse,
    /// One result per record.
    pub records: Vec<RecordResult>,
}

/// The handler, shared by every invocation of a warm sandbox.
pub struct Processor {
    engine: Arc<Engine>,
    safety_margin: Duration,
}

impl Processor {
    /// A processor over `engine`; records are not started within `safety_margin` of the deadline.
    pub fn new(engine: Arc<Engine>, safety_margin: Duration) -> Self {
        Self { engine, safety_margin }
    }

    /// The engine behind the handler.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Handles one invocation and returns only the partial batch response.
    pub async fn handle(&self, event: SqsEvent, context: &InvocationContext) -> SqsBatchResponse {
        self.process_batch(event, context).await.response
    }

    /// Handles one invocation: every record on its own, in order.
    pub async fn process_batch(&self, event: SqsEvent, context: &InvocationContext) -> BatchResult {
        let mut response = SqsBatchResponse::default();
        let mut records = Vec::with_capacity(event.records.len());
        let clock = &self.engine.ports().clock;
        for message in &event.records {
            let message_id = message.message_id.clone().filter(|id| !id.is_empty());
            let result = if clock.now() + self.safety_margin >= context.deadline {
                RecordResult::NotStarted
            } else {
                self.process_record(message, message_id.as_deref(), context).await
            };
            if needs_retry(&result) {
                match &message_id {
                    Some(id) => response.add_failure(id.clone()),
                    None => tracing::error!("a record without messageId can't be retried: SQS will delete it"),
                }
            }
            records.push(result);
        }
        BatchResult { response, records }
    }

    async fn process_record(
        &self,
        message: &SqsMessage,
        message_id: Option<&str>,
        context: &InvocationContext,
    ) -> RecordResult {
        let incoming = Incoming {
            message_id: message_id.unwrap_or_default().to_owned(),
            body: message.body.clone().unwrap_or_default(),
            receive_count: message.attributes.get("ApproximateReceiveCount").and_then(|c| c.parse().ok()).unwrap_or(1),
            trace_header: message.attributes.get("AWSTraceHeader").cloned(),
        };
        let invocation = context.invocation();
        let span = tracing::info_span!("record", message_id = %incoming.message_id, request_id = %context.request_id);
        let _entered = span.enter();
        let processed = AssertUnwindSafe(self.engine.process(&incoming, &invocation)).catch_unwind().await;
        let receipt = message.receipt_handle.as_deref();
        match processed {
            Ok(Ok(outcome)) => {
                tracing::info!(event_id = ?outcome.event_id, status = ?outcome.status, disposition = ?outcome.disposition, "record processed");
                match (&outcome.disposition, receipt) {
                    (Disposition::Retry { after }, _) => self.delay(receipt, *after).await,
                    (Disposition::DeadLetter, _) if !self.dead_letter(receipt, &incoming).await => {
                        return RecordResult::Failed("could not move the message to the dead-letter queue".to_owned())
                    }
                    _ => {}
                }
                RecordResult::Processed(outcome)
            }
            Ok(Err(error)) if !error.is_retryable() && self.dead_letter(receipt, &incoming).await => {
                tracing::error!(error = %error, "record can't be processed; moved to the dead-letter queue");
                RecordResult::Processed(Outcome {
                    event_id: None,
                    status: None,
                    redelivered: false,
                    disposition: Disposition::DeadLetter,
                })
            }
            Ok(Err(error)) => {
                tracing::error!(error = %error, retryable = error.is_retryable(), "record failed; it will be retried");
                self.delay(receipt, self.engine.settings().backoff_base).await;
                RecordResult::Failed(error.to_string())
            }
            Err(_) => {
                tracing::error!("the engine panicked on this record; it will be retried");
                RecordResult::Failed("the engine panicked".to_owned())
            }
        }
    }

    async fn delay(&self, receipt: Option<&str>, after: Duration) {
        let Some(receipt) = receipt else { return };
        if let Err(e) = self.engine.ports().queue.change_visibility(receipt, after).await {
            tracing::warn!(error = %e, "could not delay the retry; it comes back after the visibility timeout");
        }
    }

    /// Moves the message to the dead-letter queue; false when that failed (then it must be retried, not deleted).
    async fn dead_letter(&self, receipt: Option<&str>, message: &Incoming) -> bool {
        let Some(receipt) = receipt else { return false };
        let queue = &self.engine.ports().queue;
        match queue.dead_letter(receipt, &message.body, message.trace_header.as_deref()).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "could not move the message to the dead-letter queue; it will be retried");
                false
            }
        }
    }
}

/// Whether the record must be reported as a batch item failure (returned to the queue).
fn needs_retry(result: &RecordResult) -> bool {
    match result {
        RecordResult::Processed(outcome) => matches!(outcome.disposition, Disposition::Retry { .. }),
        RecordResult::NotStarted | RecordResult::Failed(_) => true,
    }
}
