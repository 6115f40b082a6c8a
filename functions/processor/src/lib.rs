//! The processor Lambda's handler: an `SqsEvent` in, an `SqsBatchResponse` naming exactly the records to retry out.
//!
//! Each record is parsed, validated and processed on its own, with panics caught: one bad record never fails the
//! batch. Records not started before the invocation's deadline minus a safety margin are returned for retry, and
//! made visible again at once (else they would wait out the queue's visibility timeout, six function timeouts).
//! Before any record starts, the bodies the batch's new events would archive are archived in one write
//! ([`Engine::prepare_batch`]: one S3 object per batch); if that write fails each record archives its own.
//!
//! Each record is handled in its own `record` span (message, request and trace ids, then the event id, entity,
//! status transition and attempt once known; never the payload). Each invocation's figures become CloudWatch
//! Embedded Metric Format lines ([`metrics`]), returned in the [`BatchResult`] and printed by [`Processor::handle`].

mod event_source;
mod lanes;
pub mod metrics;
mod run;

pub use event_source::{sqs_event, LOCAL_QUEUE_ARN};
pub use metrics::MetricsConfig;
pub use run::{run, run_processor, SAFETY_MARGIN};
/// The invocation's context; it lives in `synctrail-lambda`, shared by every function.
pub use synctrail_lambda::InvocationContext;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use chrono::Duration;
use futures_util::{FutureExt, StreamExt};
use metrics::Observed;
use std::io::Write;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use synctrail::engine::{Disposition, Engine, Incoming, Outcome, OutcomeFacts, Prepared};
use tracing::field::Empty;
use tracing::{Instrument, Span};

/// How long, at most, an invocation spends making the records it did not start visible again.
pub const RELEASE_WAIT: std::time::Duration = std::time::Duration::from_millis(300);
/// The time kept before the deadline to return the batch's answer, which making records visible never takes.
const ANSWER_RESERVE: std::time::Duration = std::time::Duration::from_millis(100);

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
    /// The invocation's figures as CloudWatch EMF lines (JSON), one per source of the batch (none from a processor made
    /// [`Processor::without_metrics`]).
    pub metrics: Vec<String>,
    /// Records that must be retried but carry no usable `messageId`, so the partial batch response can't name them.
    pub unidentified_retries: usize,
}

impl BatchResult {
    /// What the invocation answers Lambda: the partial batch response, or — when a record that must be retried has
    /// no usable `messageId` — an error, so that Lambda returns the whole batch instead of counting that record as
    /// a success and letting SQS delete it. Records already done come back too and are recognised as repeats.
    pub fn lambda_response(&self) -> Result<SqsBatchResponse, ProcessorError> {
        match self.unidentified_retries {
            0 => Ok(self.response.clone()),
            count => Err(ProcessorError::UnidentifiedRetry { count }),
        }
    }
}

/// Why an invocation fails as a whole (every other problem fails only its own record).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProcessorError {
    /// Records to retry can't be named in the partial batch response.
    #[error(
        "{count} record(s) must be retried but have no messageId, so the partial batch response can't name them; \
         failing the invocation so that SQS redelivers the whole batch (records already done are recognised)"
    )]
    UnidentifiedRetry {
        /// How many.
        count: usize,
    },
}

impl From<ProcessorError> for lambda_runtime::Diagnostic {
    fn from(error: ProcessorError) -> Self {
        let error_type = match error {
            ProcessorError::UnidentifiedRetry { .. } => "UnidentifiedRetry",
        };
        Self { error_type: error_type.to_owned(), error_message: error.to_string() }
    }
}

/// The handler, shared by every invocation of a warm sandbox.
pub struct Processor {
    engine: Arc<Engine>,
    safety_margin: Duration,
    /// Where the metrics go; `None`: no metrics are made (a caller that never prints them).
    metrics: Option<MetricsConfig>,
    concurrency: usize,
}

impl Processor {
    /// A processor over `engine`; records are not started within `safety_margin` of the deadline. Metrics go to
    /// the default namespace unless [`Processor::with_metrics`] says otherwise.
    pub fn new(engine: Arc<Engine>, safety_margin: Duration) -> Self {
        Self { engine, safety_margin, metrics: Some(MetricsConfig::default()), concurrency: 1 }
    }

    /// The same processor running up to `lanes` entities of a batch side by side (at least 1; 1 is one record
    /// after another). Records of one entity always run one after another, in arrival order.
    pub fn with_concurrency(mut self, lanes: usize) -> Self {
        self.concurrency = lanes.max(1);
        self
    }

    /// The same processor with metrics configured by `metrics`.
    pub fn with_metrics(mut self, metrics: MetricsConfig) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The same processor making no metrics: [`BatchResult::metrics`] stays empty. For a caller that never prints
    /// them (the local runtime), which would otherwise pay for their JSON on every invocation.
    pub fn without_metrics(mut self) -> Self {
        self.metrics = None;
        self
    }

    /// The engine behind the handler.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Handles one invocation (the Lambda path): processes the batch, prints its EMF lines to standard output and
    /// returns the partial batch response (or an error that returns the whole batch, see
    /// [`BatchResult::lambda_response`]).
    pub async fn handle(
        &self,
        event: SqsEvent,
        context: &InvocationContext,
    ) -> Result<SqsBatchResponse, ProcessorError> {
        let batch = self.process_batch(event, context).await;
        print_metrics(&batch.metrics);
        batch.lambda_response()
    }

    /// Handles one invocation: every record on its own; records of one entity one after another in arrival order,
    /// different entities side by side (at most [`Processor::with_concurrency`] at once). The metrics are returned,
    /// not printed.
    pub async fn process_batch(&self, event: SqsEvent, context: &InvocationContext) -> BatchResult {
        let clock = &self.engine.ports().clock;
        let messages = &event.records;
        let incomings: Vec<Incoming> = messages.iter().map(incoming).collect();
        let mut prepared = self.prepare(&incomings).await.into_iter().map(Some).collect::<Vec<_>>();
        let lanes: Vec<Vec<(usize, Prepared)>> = lanes::lanes(messages.iter().map(|m| m.body.as_deref()))
            .into_iter()
            .map(|lane| lane.into_iter().map(|i| (i, prepared[i].take().unwrap_or_default())).collect())
            .collect();
        let incomings = &incomings;
        let run_lane = |lane: Vec<(usize, Prepared)>| async move {
            let mut done = Vec::with_capacity(lane.len());
            for (index, prepared) in lane {
                let message = &messages[index];
                let started = clock.now();
                let result = if started + self.safety_margin >= context.deadline {
                    RecordResult::NotStarted
                } else {
                    // Boxed: the lane's future stays small, so the stream moves a pointer instead of copying the
                    // record's whole state machine.
                    Box::pin(self.process_record(message, &incomings[index], prepared, context)).await
                };
                done.push((index, result, clock.now() - started));
            }
            done
        };
        let mut finished: Vec<(usize, RecordResult, Duration)> = futures_util::stream::iter(lanes)
            .map(run_lane)
            .buffer_unordered(self.concurrency)
            .flat_map(futures_util::stream::iter)
            .collect()
            .await;
        finished.sort_by_key(|(index, ..)| *index);
        let not_started = finished.iter().filter(|(_, result, _)| *result == RecordResult::NotStarted);
        self.release(not_started.filter_map(|(index, ..)| messages[*index].receipt_handle.as_deref()), context).await;

        let mut response = SqsBatchResponse::default();
        let mut unidentified_retries = 0;
        let mut records = Vec::with_capacity(finished.len());
        let mut timings = Vec::with_capacity(finished.len());
        for (index, result, duration) in finished {
            let retried = needs_retry(&result);
            if retried {
                match messages[index].message_id.as_deref().filter(|id| !id.is_empty()) {
                    Some(id) => response.add_failure(id.to_owned()),
                    None => {
                        tracing::error!("a record to retry has no messageId: the whole invocation will fail");
                        unidentified_retries += 1;
                    }
                }
            }
            timings.push((retried, duration));
            records.push(result);
        }
        let metrics = match &self.metrics {
            Some(config) => {
                let observed: Vec<Observed<'_>> = records
                    .iter()
                    .zip(&timings)
                    .map(|(result, (retried, duration))| Observed { result, retried: *retried, duration: *duration })
                    .collect();
                let function = metrics::function_dimension(context.function.as_deref());
                metrics::emf_lines(config, &function, clock.now(), &observed)
            }
            None => Vec::new(),
        };
        BatchResult { response, records, metrics, unidentified_retries }
    }

    /// The batch's bodies archived in one write (see [`Engine::prepare_batch`]), one [`Prepared`] per message;
    /// should that panic, nothing is prepared and every record is processed as if alone (its own panic, if any,
    /// then fails only that record).
    async fn prepare(&self, incomings: &[Incoming]) -> Vec<Prepared> {
        match AssertUnwindSafe(self.engine.prepare_batch(incomings)).catch_unwind().await {
            Ok(prepared) => prepared,
            Err(_) => {
                tracing::error!("preparing the batch panicked; each record is processed on its own");
                incomings.iter().map(|_| Prepared::nothing()).collect()
            }
        }
    }

    /// Processes one record inside its own span.
    async fn process_record(
        &self,
        message: &SqsMessage,
        incoming: &Incoming,
        prepared: Prepared,
        context: &InvocationContext,
    ) -> RecordResult {
        let span = tracing::info_span!(
            "record",
            message_id = incoming.message_id.as_str(),
            request_id = %context.request_id,
            trace_id = context.trace_id.as_deref().unwrap_or_default(),
            body_bytes = message.body.as_deref().map_or(0, str::len),
            event_id = Empty,
            entity = Empty,
            from = Empty,
            to = Empty,
            attempt = Empty,
        );
        self.process_in_span(message, incoming, prepared, context, &span).instrument(span.clone()).await
    }

    async fn process_in_span(
        &self,
        message: &SqsMessage,
        incoming: &Incoming,
        prepared: Prepared,
        context: &InvocationContext,
        span: &Span,
    ) -> RecordResult {
        let invocation = context.invocation();
        let processed = AssertUnwindSafe(Box::pin(self.engine.process_prepared(incoming, prepared, &invocation)))
            .catch_unwind()
            .await;
        let receipt = message.receipt_handle.as_deref();
        match processed {
            Ok(Ok(outcome)) => {
                record_outcome(span, &outcome);
                tracing::info!(disposition = ?outcome.disposition, redelivered = outcome.redelivered, "record processed");
                match (&outcome.disposition, receipt) {
                    (Disposition::Retry { after }, _) => self.delay(receipt, *after).await,
                    (Disposition::DeadLetter, _) if !self.dead_letter(receipt, incoming).await => {
                        return RecordResult::Failed("could not move the message to the dead-letter queue".to_owned())
                    }
                    _ => {}
                }
                RecordResult::Processed(outcome)
            }
            Ok(Err(error)) if !error.is_retryable() && self.dead_letter(receipt, incoming).await => {
                tracing::error!(error = %error, "record can't be processed; moved to the dead-letter queue");
                RecordResult::Processed(Outcome {
                    event_id: None,
                    status: None,
                    redelivered: false,
                    disposition: Disposition::DeadLetter,
                    facts: OutcomeFacts::default(),
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

    /// Makes the messages of records not started visible again at once, so that the next invocation takes them
    /// instead of their waiting out the visibility timeout. Bounded by [`RELEASE_WAIT`] and the deadline (less the
    /// time to answer): a message not released in time comes back after the visibility timeout, as before.
    async fn release<'a>(&self, receipts: impl Iterator<Item = &'a str>, context: &InvocationContext) {
        let queue = &self.engine.ports().queue;
        let releases: Vec<_> = receipts.map(|receipt| queue.change_visibility(receipt, Duration::zero())).collect();
        if releases.is_empty() {
            return;
        }
        let left = (context.deadline - self.engine.ports().clock.now()).to_std().unwrap_or_default();
        // The batch's answer must reach Lambda before the deadline: a timed-out invocation returns the whole batch.
        let wait = left.saturating_sub(ANSWER_RESERVE).min(RELEASE_WAIT);
        let count = releases.len();
        if wait.is_zero() {
            tracing::warn!(
                count,
                "the deadline has passed: the records not started come back after the visibility timeout"
            );
            return;
        }
        match tokio::time::timeout(wait, futures_util::future::join_all(releases)).await {
            Ok(results) => {
                if let Some(error) = results.into_iter().find_map(Result::err) {
                    tracing::warn!(error = %error, "a record not started could not be made visible again; it comes back after the visibility timeout");
                }
            }
            Err(_) => tracing::warn!(
                count,
                "the records not started were not made visible again in time; they come back after the visibility timeout"
            ),
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

/// The engine's view of an SQS record (an empty `messageId` is none).
fn incoming(message: &SqsMessage) -> Incoming {
    Incoming {
        message_id: message.message_id.as_deref().filter(|id| !id.is_empty()).unwrap_or_default().to_owned(),
        body: message.body.clone().unwrap_or_default(),
        receive_count: message.attributes.get("ApproximateReceiveCount").and_then(|c| c.parse().ok()).unwrap_or(1),
        trace_header: message.attributes.get("AWSTraceHeader").cloned(),
    }
}

/// Fills the record span's fields the outcome made known.
fn record_outcome(span: &Span, outcome: &Outcome) {
    let facts = &outcome.facts;
    if let Some(event_id) = &outcome.event_id {
        span.record("event_id", tracing::field::display(event_id));
    }
    if let Some(entity) = &facts.entity {
        span.record("entity", tracing::field::display(entity));
    }
    span.record("from", facts.from.map_or("new", |s| s.as_str()));
    if let Some(status) = outcome.status {
        span.record("to", status.as_str());
    }
    span.record("attempt", facts.attempt);
}

/// Prints EMF lines to standard output, where Lambda's log capture hands them to CloudWatch. A failed write is
/// only logged: metrics never fail an invocation.
pub fn print_metrics(lines: &[String]) {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for line in lines {
        if let Err(e) = writeln!(out, "{line}") {
            tracing::warn!(error = %e, "metrics not printed");
            return;
        }
    }
    if let Err(e) = out.flush() {
        tracing::warn!(error = %e, "metrics not printed");
    }
}

/// Whether the record must be reported as a batch item failure (returned to the queue).
fn needs_retry(result: &RecordResult) -> bool {
    match result {
        RecordResult::Processed(outcome) => matches!(outcome.disposition, Disposition::Retry { .. }),
        RecordResult::NotStarted | RecordResult::Failed(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};
    use std::sync::Mutex;
    use synctrail::model::Status;
    use synctrail::store::OutgoingMessage;
    use synctrail::{ManualClock, Settings};

    /// Every log line written while the test runs, as text.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-05-01T12:00:00Z").map(|t| t.with_timezone(&Utc)).expect("valid time")
    }

    /// Processes `bodies` as one batch on a fresh embedded backend; returns the batch and the JSON log lines.
    async fn run_logged(bodies: &[&str]) -> (BatchResult, Vec<serde_json::Value>) {
        run_logged_by(bodies, |processor| processor).await
    }

    /// [`run_logged`] with the processor as `configure` makes it.
    async fn run_logged_by(
        bodies: &[&str],
        configure: fn(Processor) -> Processor,
    ) -> (BatchResult, Vec<serde_json::Value>) {
        let home = tempfile::tempdir().expect("temporary home");
        let clock = Arc::new(ManualClock::new(t0()));
        let config = synctrail::config::Config::embedded(home.path());
        let ports = synctrail::compose::compose(&config, clock, None).await.expect("embedded backend").ports;
        let queue = Arc::clone(&ports.queue);
        let processor =
            configure(Processor::new(Arc::new(Engine::new(ports, Settings::default())), Duration::seconds(1)));
        queue.send(bodies.iter().map(|b| OutgoingMessage::new(*b)).collect()).await.expect("send");
        let messages = queue.receive(10, Duration::seconds(30)).await.expect("receive");
        let context = InvocationContext {
            request_id: "req-7".to_owned(),
            deadline: t0() + Duration::seconds(30),
            function: Some("synctrail-processor:3".to_owned()),
            trace_id: Some("Root=1-6814e3c0-0123456789abcdef01234567;Parent=53995c3f42cd8ad8;Sampled=1".to_owned()),
        };
        let logs = Captured::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(move || writer.clone())
            .finish();
        let _default = tracing::subscriber::set_default(subscriber);
        let batch = processor.process_batch(sqs_event(&messages), &context).await;
        let text = String::from_utf8(logs.0.lock().unwrap_or_else(|p| p.into_inner()).clone()).expect("UTF-8 logs");
        let lines = text.lines().map(|l| serde_json::from_str(l).expect("every log line is JSON")).collect();
        (batch, lines)
    }

    #[tokio::test]
    async fn each_record_logs_in_a_span_naming_event_entity_transition_attempt_request_and_trace() {
        let body = r#"{"source":"github","entity_type":"issue","external_id":"7","updated_at":"2026-05-01T11:00:00Z",
            "event_id":"gh-1","payload":{"title":"s3cr3t title"}}"#;
        let (batch, logs) = run_logged(&[body]).await;
        assert!(
            matches!(&batch.records[..], [RecordResult::Processed(o)] if o.status == Some(synctrail::model::Status::Completed))
        );
        let line = logs.iter().find(|l| l["message"] == "record processed").expect("a line per record");
        let span = &line["span"];
        assert_eq!(span["name"], "record");
        assert_eq!(span["event_id"], "gh-1");
        assert_eq!(span["entity"], "default/github/issue/7");
        assert_eq!((span["from"].as_str(), span["to"].as_str()), (Some("new"), Some("completed")));
        assert_eq!(span["attempt"], 1);
        assert_eq!(span["request_id"], "req-7");
        assert!(span["trace_id"].as_str().is_some_and(|t| t.starts_with("Root=1-6814e3c0")), "{span}");
        assert!(logs.iter().all(|l| !l.to_string().contains("s3cr3t")), "the payload is never logged: {logs:?}");
    }

    #[tokio::test]
    async fn a_rejected_message_logs_its_field_size_and_hash_but_not_its_content() {
        let body = r#"{"source":"github","entity_type":"issue","external_id":"7","updated_at":"s3cr3t","payload":{}}"#;
        let (_, logs) = run_logged(&[body]).await;
        let line = logs.iter().find(|l| l["message"] == "message rejected").expect("the rejection is logged");
        assert_eq!(line["field"], "updated_at");
        assert_eq!(line["body_bytes"], body.len());
        assert!(line["body_sha256"].as_str().is_some_and(|h| h.len() == 64), "{line}");
        assert!(logs.iter().all(|l| !l.to_string().contains("s3cr3t")), "the body is never logged: {logs:?}");
    }

    #[tokio::test]
    async fn the_batch_returns_its_emf_lines_instead_of_printing_them() {
        let body = r#"{"source":"shopify","entity_type":"product","external_id":"9","updated_at":"2026-05-01T11:00:00Z",
            "payload":{}}"#;
        let (batch, _) = run_logged(&[body, "not json"]).await;
        let sources: Vec<String> = batch
            .metrics
            .iter()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("JSON")["source"].to_string())
            .collect();
        assert_eq!(sources, [r#""shopify""#, r#""unknown""#]);
    }

    #[tokio::test]
    async fn a_processor_without_metrics_processes_the_batch_alike_and_makes_no_emf_lines() {
        let body = r#"{"source":"shopify","entity_type":"product","external_id":"9","updated_at":"2026-05-01T11:00:00Z",
            "payload":{}}"#;
        let (batch, _) = run_logged_by(&[body, "not json"], Processor::without_metrics).await;
        assert!(batch.metrics.is_empty(), "{:?}", batch.metrics);
        let statuses: Vec<Option<Status>> = batch
            .records
            .iter()
            .map(|r| match r {
                RecordResult::Processed(outcome) => outcome.status,
                other => panic!("not processed: {other:?}"),
            })
            .collect();
        assert_eq!(statuses, [Some(Status::Completed), Some(Status::Rejected)]);
    }
}
