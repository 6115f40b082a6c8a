//! The queue port, with SQS semantics: batch receive, visibility timeout, receive count, dead letters.

use super::StoreError;
use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};

/// A message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    /// The body (an envelope or a re-drive request).
    pub body: String,
    /// Invisible for this long after sending.
    pub delay: Duration,
    /// The X-Ray trace header to carry (`AWSTraceHeader`).
    pub trace_header: Option<String>,
}

impl OutgoingMessage {
    /// A message with no delay and no trace header.
    pub fn new(body: impl Into<String>) -> Self {
        Self { body: body.into(), delay: Duration::zero(), trace_header: None }
    }
}

/// A received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueMessage {
    /// The queue's id for the message (the same on every receive).
    pub message_id: String,
    /// The handle of this receive (for delete and change-visibility).
    pub receipt_handle: String,
    /// The body.
    pub body: String,
    /// How often it has been received, this time included.
    pub receive_count: u32,
    /// When it was first sent.
    pub sent_at: DateTime<Utc>,
    /// When it was first received.
    pub first_received_at: DateTime<Utc>,
    /// The X-Ray trace header it carries.
    pub trace_header: Option<String>,
}

/// Queue depth figures.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueDepth {
    /// Messages ready to receive.
    pub visible: u64,
    /// Messages received and not yet deleted or visible again.
    pub in_flight: u64,
    /// Messages sent with a delay not yet over.
    pub delayed: u64,
    /// Messages in the dead-letter queue.
    pub dead_letters: u64,
    /// When the oldest message still in the queue was sent.
    pub oldest_sent_at: Option<DateTime<Utc>>,
}

/// How often a waiting receive looks again for what nobody tells it of (see [`Queue::receive_waiting`]).
pub const RECEIVE_RECHECK: std::time::Duration = std::time::Duration::from_millis(20);

/// An SQS-like queue with a dead-letter queue.
#[async_trait]
pub trait Queue: Send + Sync {
    /// Sends messages; returns their ids.
    async fn send(&self, messages: Vec<OutgoingMessage>) -> Result<Vec<String>, StoreError>;

    /// Sends messages to another queue of this backend, named by its URL (the queue of another processor, for
    /// re-drives routed to the function that owns an event); returns their ids. A backend with one queue refuses.
    async fn send_to(&self, queue: &str, messages: Vec<OutgoingMessage>) -> Result<Vec<String>, StoreError>;

    /// Receives up to `max` visible messages and hides them for `visibility`. A message received more than
    /// [`Queue::max_receives`] times moves to the dead-letter queue instead of being delivered.
    async fn receive(&self, max: usize, visibility: Duration) -> Result<Vec<QueueMessage>, StoreError>;

    /// Like [`Queue::receive`], but when nothing is visible waits up to `wait` for a first message (SQS long
    /// polling), returning as soon as one can be received; empty once `wait` is over. What an event source calls in
    /// its loop instead of sleeping between empty receives. The default receives again every [`RECEIVE_RECHECK`]
    /// until `wait` is over; a backend that can be told of new messages overrides it.
    async fn receive_waiting(
        &self,
        max: usize,
        visibility: Duration,
        wait: std::time::Duration,
    ) -> Result<Vec<QueueMessage>, StoreError> {
        let until = tokio::time::Instant::now() + wait;
        loop {
            let received = self.receive(max, visibility).await?;
            let now = tokio::time::Instant::now();
            if !received.is_empty() || max == 0 || now >= until {
                return Ok(received);
            }
            tokio::time::sleep(RECEIVE_RECHECK.min(until - now)).await;
        }
    }

    /// Ends, at once, the [`Queue::receive_waiting`] calls of this process that are waiting: each returns what it
    /// has (nothing, or what the look under way when it was told takes), as if its wait were over. For an event
    /// source that stops and must hand back what its last receives take before it returns. A queue that cannot end
    /// a wait early does nothing (the default; SQS, whose long poll ends at the service in its own time).
    fn end_waits(&self) {}

    /// Deletes received messages by receipt handle; a stale handle is ignored.
    async fn delete(&self, receipt_handles: &[String]) -> Result<(), StoreError>;

    /// Makes a received message visible again after `timeout` (zero: at once).
    async fn change_visibility(&self, receipt_handle: &str, timeout: Duration) -> Result<(), StoreError>;

    /// Moves a received message to the dead-letter queue now. SQS has no such call, so the caller hands over the
    /// message's body and trace header to resend there (a Lambda's records carry them).
    async fn dead_letter(&self, receipt_handle: &str, body: &str, trace_header: Option<&str>)
        -> Result<(), StoreError>;

    /// Receives up to `max` messages from the dead-letter queue and hides them there for `visibility`, so an
    /// operator can look at them and move them back.
    async fn receive_dead_letters(&self, max: usize, visibility: Duration) -> Result<Vec<QueueMessage>, StoreError>;

    /// Makes received dead letters visible in the dead-letter queue again at once (whoever looks next, a re-drive,
    /// takes them), by receipt handle; a handle whose message is gone or received again since is not an error.
    async fn release_dead_letters(&self, receipt_handles: &[String]) -> Result<(), StoreError>;

    /// Removes received dead letters from the dead-letter queue for good, by receipt handle; a handle whose
    /// message is gone is not an error.
    async fn delete_dead_letters(&self, receipt_handles: &[String]) -> Result<(), StoreError>;

    /// Moves received dead letters back to the queue: each is sent again (body and trace header, visible at once,
    /// a fresh receive count) and removed from the dead-letter queue.
    async fn return_dead_letters(&self, messages: &[QueueMessage]) -> Result<(), StoreError>;

    /// Depth figures, dead letters included.
    async fn depth(&self) -> Result<QueueDepth, StoreError>;

    /// Receives after which a message goes to the dead-letter queue (SQS `maxReceiveCount`).
    fn max_receives(&self) -> u32;
}
