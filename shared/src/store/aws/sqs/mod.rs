//! [`SqsQueue`]: the ingest queue and its dead-letter queue on SQS.
//!
//! - Visibility timeouts and delays run on the SQS server's wall clock in whole seconds (rounded up here), never
//!   on the engine's [`crate::Clock`].
//! - `max_receives` is the queue's redrive policy `maxReceiveCount`, read at [`SqsQueue::open`]; SQS itself moves
//!   a message to the dead-letter queue on the receive after that.
//! - SQS has no "move to the dead-letter queue" call: [`Queue::dead_letter`] sends the body (and trace header) to
//!   the DLQ, then deletes the original. It therefore needs the body: it works for messages this adapter
//!   received; for others (a Lambda event's records) call [`SqsQueue::dead_letter_message`].
//! - SQS accepts a receipt handle from an earlier receive of the same message (moto even deletes with it). The
//!   adapter remembers the handles it handed out, so a handle made stale by a later receive *in this process*
//!   deletes nothing and can't change visibility, as the port promises; across processes it is SQS's rule.
//! - `depth().oldest_sent_at` is `None`: the age of the oldest message (`ApproximateAgeOfOldestMessage`) is a
//!   CloudWatch metric, not a queue attribute.
//! - Dead letters are received from the DLQ like any message, made visible again with
//!   `ChangeMessageVisibilityBatch` (timeout 0) and removed with `DeleteMessageBatch`; a sender fault there (a
//!   handle whose message is gone) is no error.
//! - One message is sent with `SendMessage`, several with `SendMessageBatch` (moto 5.2.1 drops the
//!   `AWSTraceHeader` of batch entries; AWS keeps it).

mod held;

use self::held::{Handle, Held};
use super::error::{build_error, from_sdk};
use super::pause;
use crate::store::{OutgoingMessage, Queue, QueueDepth, QueueMessage, StoreError};
use async_trait::async_trait;
use aws_sdk_sqs::types::{
    BatchResultErrorEntry, ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, Message,
    MessageSystemAttributeName, MessageSystemAttributeNameForSends, MessageSystemAttributeValue, QueueAttributeName,
    SendMessageBatchRequestEntry,
};
use chrono::{DateTime, Duration, Utc};
use std::borrow::Cow;
use std::collections::HashMap;

/// SQS's limit of entries per batch call.
const BATCH: usize = 10;
/// SQS's limit of body bytes per batch call (and per message).
const BATCH_BYTES: usize = 1024 * 1024;
/// Calls of one batch before its entries that keep failing (the server's fault) make an error: each repeat asks
/// again for only those, after a jittered pause.
const BATCH_ROUNDS: u32 = 3;
/// SQS's longest delay, in seconds.
const MAX_DELAY: i64 = 900;
/// SQS's longest visibility timeout, in seconds.
const MAX_VISIBILITY: i64 = 43_200;

/// The SQS [`Queue`].
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    queue_url: String,
    dlq_url: String,
    max_receives: u32,
    wait_seconds: i32,
    held: Held,
}

/// `body` as SQS accepts it. SQS refuses characters outside XML's set (`InvalidMessageContents`); of those a JSON
/// writer leaves only U+FFFE and U+FFFF unescaped (serde_json escapes control characters, and a Rust string holds no
/// surrogates), so each becomes its JSON escape: inside a JSON string the same value, so the envelope, its content
/// hash and its payload are unchanged. A body that is not JSON (a malformed line sent on purpose) is changed only
/// there.
fn sqs_safe(body: &str) -> Cow<'_, str> {
    if body.contains(['\u{FFFE}', '\u{FFFF}']) {
        Cow::Owned(body.replace('\u{FFFE}', "\\ufffe").replace('\u{FFFF}', "\\uffff"))
    } else {
        Cow::Borrowed(body)
    }
}

/// A long poll's `WaitTimeSeconds`: whole seconds, at most SQS's 20.
fn wait_seconds(wait: std::time::Duration) -> i32 {
    i32::try_from(wait.as_secs().min(20)).unwrap_or(20)
}

/// Whole seconds of `d`, rounded up, within `0..=max`.
fn seconds(d: Duration, max: i64) -> i32 {
    let millis = d.num_milliseconds().max(0);
    i32::try_from(((millis + 999) / 1000).min(max)).unwrap_or(i32::MAX)
}

/// A queue URL as given, or looked up by name.
async fn resolve(client: &aws_sdk_sqs::Client, queue: &str) -> Result<String, StoreError> {
    if queue.starts_with("https://") || queue.starts_with("http://") {
        return Ok(queue.to_owned());
    }
    let out = client
        .get_queue_url()
        .queue_name(queue)
        .send()
        .await
        .map_err(|e| from_sdk(&format!("looking up the URL of queue {queue}"), e))?;
    out.queue_url.ok_or_else(|| StoreError::Backend(format!("SQS returned no URL for queue {queue}").into()))
}

/// Reads some attributes of a queue.
async fn attributes(
    client: &aws_sdk_sqs::Client,
    url: &str,
    names: &[QueueAttributeName],
) -> Result<HashMap<QueueAttributeName, String>, StoreError> {
    let out = client
        .get_queue_attributes()
        .queue_url(url)
        .set_attribute_names(Some(names.to_vec()))
        .send()
        .await
        .map_err(|e| from_sdk(&format!("reading the attributes of {url}"), e))?;
    Ok(out.attributes.unwrap_or_default())
}

/// `maxReceiveCount` and `deadLetterTargetArn` of a redrive policy (numbers may come as strings).
fn parse_redrive(policy: &str, url: &str) -> Result<(u32, String), StoreError> {
    let bad = || StoreError::Backend(format!("queue {url} has an unreadable RedrivePolicy: {policy}").into());
    let value: serde_json::Value = serde_json::from_str(policy).map_err(|_| bad())?;
    let max = match &value["maxReceiveCount"] {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.parse().ok(),
        _ => None,
    };
    let max = max.and_then(|m| u32::try_from(m).ok()).ok_or_else(bad)?;
    let target = value["deadLetterTargetArn"].as_str().ok_or_else(bad)?.to_owned();
    Ok((max, target))
}

fn number(attributes: &HashMap<QueueAttributeName, String>, name: &QueueAttributeName) -> u64 {
    attributes.get(name).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// The first failed entry of a batch call that is the server's fault, as an error to retry later (a sender
/// fault — a bad or expired receipt handle — concerns a message that is gone: nothing to do).
fn server_fault(what: &str, failed: &[BatchResultErrorEntry]) -> Result<(), StoreError> {
    match failed.iter().find(|f| !f.sender_fault) {
        Some(failed) => Err(StoreError::Unavailable(
            format!("{what}: {}", failed.message.as_deref().unwrap_or("a server fault")).into(),
        )),
        None => Ok(()),
    }
}

fn millis_attribute(message: &Message, name: &MessageSystemAttributeName) -> Option<DateTime<Utc>> {
    let millis: i64 = message.attributes.as_ref()?.get(name)?.parse().ok()?;
    DateTime::from_timestamp_millis(millis)
}

impl SqsQueue {
    /// Opens the queue and its dead-letter queue (URLs or names). Reads the queue's redrive policy: it must
    /// exist and target `dlq`.
    pub async fn open(client: aws_sdk_sqs::Client, queue: &str, dlq: &str) -> Result<Self, StoreError> {
        let queue_url = resolve(&client, queue).await?;
        let dlq_url = resolve(&client, dlq).await?;
        let queue_attributes = attributes(&client, &queue_url, &[QueueAttributeName::RedrivePolicy]).await?;
        let policy = queue_attributes.get(&QueueAttributeName::RedrivePolicy).ok_or_else(|| {
            StoreError::Backend(
                format!(
                    "queue {queue_url} has no RedrivePolicy; give it one that targets {dlq_url} (maxReceiveCount ≥ 5)"
                )
                .into(),
            )
        })?;
        let (max_receives, target) = parse_redrive(policy, &queue_url)?;
        let dlq_attributes = attributes(&client, &dlq_url, &[QueueAttributeName::QueueArn]).await?;
        if dlq_attributes.get(&QueueAttributeName::QueueArn) != Some(&target) {
            return Err(StoreError::Backend(
                format!("queue {queue_url} sends dead letters to {target}, not to {dlq_url}; fix the configuration")
                    .into(),
            ));
        }
        Ok(Self { client, queue_url, dlq_url, max_receives, wait_seconds: 1, held: Held::default() })
    }

    /// The queue and its dead-letter queue when their receive limit is known (the deployment template sets it):
    /// no request is made, except to look up a queue given by name instead of URL. [`SqsQueue::open`] reads and
    /// checks the redrive policy instead.
    pub async fn known(
        client: aws_sdk_sqs::Client,
        queue: &str,
        dlq: &str,
        max_receives: u32,
    ) -> Result<Self, StoreError> {
        let queue_url = resolve(&client, queue).await?;
        let dlq_url = resolve(&client, dlq).await?;
        Ok(Self { client, queue_url, dlq_url, max_receives, wait_seconds: 1, held: Held::default() })
    }

    /// How long `receive` waits for a first message (long polling, 0 to 20 s; default 1 s). Zero is short
    /// polling, which on AWS samples only some servers and may miss messages.
    pub fn with_receive_wait(mut self, wait: std::time::Duration) -> Self {
        self.wait_seconds = wait_seconds(wait);
        self
    }

    /// The queue's URL.
    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }

    /// The dead-letter queue's URL.
    pub fn dlq_url(&self) -> &str {
        &self.dlq_url
    }

    /// Moves a message to the dead-letter queue given its body: sends `body` (with `trace_header`) to the DLQ,
    /// then deletes the original by `receipt_handle`. Once the copy is in the DLQ the move has happened: a failed
    /// delete is logged, not returned, since the caller would then retry the message and dead-letter it twice (a
    /// Lambda's event source deletes it anyway, as a record not named for retry; elsewhere it comes back as a
    /// redelivery).
    pub async fn dead_letter_message(
        &self,
        receipt_handle: &str,
        body: &str,
        trace_header: Option<&str>,
    ) -> Result<(), StoreError> {
        let message = OutgoingMessage {
            body: body.to_owned(),
            delay: Duration::zero(),
            trace_header: trace_header.map(str::to_owned),
        };
        self.send_to(&self.dlq_url, vec![message]).await?;
        let deleted =
            self.client.delete_message().queue_url(&self.queue_url).receipt_handle(receipt_handle).send().await;
        if let Err(e) = deleted {
            let error = from_sdk("deleting a dead-lettered message from the queue", e);
            tracing::warn!(error = %error, "the message is in the dead-letter queue; its original was not deleted");
        }
        self.held.forget(receipt_handle);
        Ok(())
    }

    async fn send_to(&self, url: &str, messages: Vec<OutgoingMessage>) -> Result<Vec<String>, StoreError> {
        let mut ids = Vec::with_capacity(messages.len());
        let mut chunk: Vec<OutgoingMessage> = Vec::new();
        let mut bytes = 0;
        for mut message in messages {
            if let Cow::Owned(safe) = sqs_safe(&message.body) {
                message.body = safe;
            }
            if !chunk.is_empty() && (chunk.len() == BATCH || bytes + message.body.len() > BATCH_BYTES) {
                ids.extend(self.send_chunk(url, std::mem::take(&mut chunk)).await?);
                bytes = 0;
            }
            bytes += message.body.len();
            chunk.push(message);
        }
        if !chunk.is_empty() {
            ids.extend(self.send_chunk(url, chunk).await?);
        }
        Ok(ids)
    }

    fn trace_attribute(trace_header: &str) -> Result<MessageSystemAttributeValue, StoreError> {
        MessageSystemAttributeValue::builder()
            .data_type("String")
            .string_value(trace_header)
            .build()
            .map_err(|e| build_error("sending a message", e))
    }

    async fn send_chunk(&self, url: &str, chunk: Vec<OutgoingMessage>) -> Result<Vec<String>, StoreError> {
        if let [message] = chunk.as_slice() {
            let mut request = self
                .client
                .send_message()
                .queue_url(url)
                .message_body(&message.body)
                .delay_seconds(seconds(message.delay, MAX_DELAY));
            if let Some(trace) = &message.trace_header {
                request = request.message_system_attributes(
                    MessageSystemAttributeNameForSends::AwsTraceHeader,
                    Self::trace_attribute(trace)?,
                );
            }
            let out = request.send().await.map_err(|e| from_sdk(&format!("sending a message to {url}"), e))?;
            return out
                .message_id
                .map(|id| vec![id])
                .ok_or_else(|| StoreError::Backend("SQS returned no message id".into()));
        }
        let mut entries = Vec::with_capacity(chunk.len());
        for (i, message) in chunk.iter().enumerate() {
            let mut entry = SendMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .message_body(&message.body)
                .delay_seconds(seconds(message.delay, MAX_DELAY));
            if let Some(trace) = &message.trace_header {
                entry = entry.message_system_attributes(
                    MessageSystemAttributeNameForSends::AwsTraceHeader,
                    Self::trace_attribute(trace)?,
                );
            }
            entries.push(entry.build().map_err(|e| build_error("sending messages", e))?);
        }
        let mut ids: Vec<Option<String>> = vec![None; chunk.len()];
        let mut pending = entries;
        for round in 0..BATCH_ROUNDS {
            if round > 0 {
                pause::before_round(round).await;
            }
            let out = self
                .client
                .send_message_batch()
                .queue_url(url)
                .set_entries(Some(pending.clone()))
                .send()
                .await
                .map_err(|e| from_sdk(&format!("sending {} messages to {url}", pending.len()), e))?;
            for ok in out.successful {
                if let Some(slot) = ok.id.parse::<usize>().ok().and_then(|i| ids.get_mut(i)) {
                    *slot = Some(ok.message_id);
                }
            }
            if out.failed.is_empty() {
                break;
            }
            if round + 1 == BATCH_ROUNDS {
                let first = &out.failed[0];
                let message = format!(
                    "{} of {} messages to {url} failed {BATCH_ROUNDS} times; first: {} {}",
                    out.failed.len(),
                    chunk.len(),
                    first.code,
                    first.message.as_deref().unwrap_or_default()
                );
                return Err(if first.sender_fault {
                    StoreError::Backend(message.into())
                } else {
                    StoreError::Unavailable(message.into())
                });
            }
            let failed: Vec<&str> = out.failed.iter().map(|f| f.id.as_str()).collect();
            pending.retain(|entry| failed.contains(&entry.id()));
        }
        ids.into_iter()
            .map(|id| id.ok_or_else(|| StoreError::Backend("SQS reported no result for a batch entry".into())))
            .collect()
    }

    /// Receives from the queue (see [`SqsQueue::receive_from`]) and remembers the handles it handed out.
    async fn receive_main(
        &self,
        max: usize,
        visibility: Duration,
        wait_seconds: i32,
    ) -> Result<Vec<QueueMessage>, StoreError> {
        let messages = self.receive_from(&self.queue_url, max, visibility, wait_seconds).await?;
        self.held.remember(
            messages.iter().map(|m| {
                (m.receipt_handle.as_str(), m.message_id.as_str(), m.body.as_str(), m.trace_header.as_deref())
            }),
        );
        Ok(messages)
    }

    /// Receives up to `max` messages from `url`, hidden for `visibility`, waiting up to `wait_seconds` for a first
    /// one.
    async fn receive_from(
        &self,
        url: &str,
        max: usize,
        visibility: Duration,
        wait_seconds: i32,
    ) -> Result<Vec<QueueMessage>, StoreError> {
        let mut out: Vec<QueueMessage> = Vec::new();
        let visibility = seconds(visibility, MAX_VISIBILITY);
        while out.len() < max {
            let want = (max - out.len()).min(BATCH);
            let got = self
                .client
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(i32::try_from(want).unwrap_or(10))
                .visibility_timeout(visibility)
                .wait_time_seconds(if out.is_empty() { wait_seconds } else { 0 })
                .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
                .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
                .message_system_attribute_names(MessageSystemAttributeName::ApproximateFirstReceiveTimestamp)
                .message_system_attribute_names(MessageSystemAttributeName::AwsTraceHeader)
                .send()
                .await
                .map_err(|e| from_sdk(&format!("receiving from {url}"), e))?;
            let messages: Vec<QueueMessage> =
                got.messages.unwrap_or_default().into_iter().filter_map(Self::to_message).collect();
            let short = messages.len() < want;
            out.extend(messages);
            if short {
                break;
            }
        }
        Ok(out)
    }

    /// Deletes messages from `url` by receipt handle, in batches; a bad or expired handle deletes nothing.
    async fn delete_from(&self, url: &str, handles: &[&str]) -> Result<(), StoreError> {
        for chunk in handles.chunks(BATCH) {
            let mut entries = Vec::with_capacity(chunk.len());
            for (i, handle) in chunk.iter().enumerate() {
                let entry = DeleteMessageBatchRequestEntry::builder().id(i.to_string()).receipt_handle(*handle).build();
                entries.push(entry.map_err(|e| build_error("deleting messages", e))?);
            }
            let out = self
                .client
                .delete_message_batch()
                .queue_url(url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| from_sdk(&format!("deleting messages from {url}"), e))?;
            server_fault(&format!("deleting messages from {url}"), &out.failed)?;
        }
        Ok(())
    }

    /// Makes messages of `url` visible at once by receipt handle, in batches; a bad or expired handle (the message
    /// is gone, or not hidden any more) changes nothing.
    async fn release_in(&self, url: &str, handles: &[String]) -> Result<(), StoreError> {
        for chunk in handles.chunks(BATCH) {
            let mut entries = Vec::with_capacity(chunk.len());
            for (i, handle) in chunk.iter().enumerate() {
                let entry = ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(handle)
                    .visibility_timeout(0)
                    .build();
                entries.push(entry.map_err(|e| build_error("releasing messages", e))?);
            }
            let out = self
                .client
                .change_message_visibility_batch()
                .queue_url(url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| from_sdk(&format!("releasing messages of {url}"), e))?;
            server_fault(&format!("releasing messages of {url}"), &out.failed)?;
        }
        Ok(())
    }

    fn to_message(message: Message) -> Option<QueueMessage> {
        let attributes = message.attributes.as_ref();
        let count = attributes
            .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
            .and_then(|c| c.parse().ok())
            .unwrap_or(1);
        let sent_at = millis_attribute(&message, &MessageSystemAttributeName::SentTimestamp).unwrap_or_else(Utc::now);
        let first_received_at =
            millis_attribute(&message, &MessageSystemAttributeName::ApproximateFirstReceiveTimestamp)
                .unwrap_or(sent_at);
        let trace_header = attributes.and_then(|a| a.get(&MessageSystemAttributeName::AwsTraceHeader)).cloned();
        Some(QueueMessage {
            message_id: message.message_id?,
            receipt_handle: message.receipt_handle?,
            body: message.body.unwrap_or_default(),
            receive_count: count,
            sent_at,
            first_received_at,
            trace_header,
        })
    }

    fn not_current(handle: &str) -> StoreError {
        StoreError::NotFound(
            format!(
                "receipt handle {}…: the message was received again since; use the newer handle",
                handle.chars().take(16).collect::<String>()
            )
            .into(),
        )
    }
}

#[async_trait]
impl Queue for SqsQueue {
    async fn send(&self, messages: Vec<OutgoingMessage>) -> Result<Vec<String>, StoreError> {
        self.send_to(&self.queue_url, messages).await
    }

    async fn send_to(&self, queue: &str, messages: Vec<OutgoingMessage>) -> Result<Vec<String>, StoreError> {
        SqsQueue::send_to(self, queue, messages).await
    }

    async fn receive(&self, max: usize, visibility: Duration) -> Result<Vec<QueueMessage>, StoreError> {
        self.receive_main(max, visibility, self.wait_seconds).await
    }

    /// SQS long polling (`WaitTimeSeconds`), in whole seconds up to 20: a wait under a second is a short poll.
    async fn receive_waiting(
        &self,
        max: usize,
        visibility: Duration,
        wait: std::time::Duration,
    ) -> Result<Vec<QueueMessage>, StoreError> {
        self.receive_main(max, visibility, wait_seconds(wait)).await
    }

    async fn receive_dead_letters(&self, max: usize, visibility: Duration) -> Result<Vec<QueueMessage>, StoreError> {
        self.receive_from(&self.dlq_url, max, visibility, self.wait_seconds).await
    }

    async fn release_dead_letters(&self, receipt_handles: &[String]) -> Result<(), StoreError> {
        self.release_in(&self.dlq_url, receipt_handles).await
    }

    async fn delete_dead_letters(&self, receipt_handles: &[String]) -> Result<(), StoreError> {
        let handles: Vec<&str> = receipt_handles.iter().map(String::as_str).collect();
        self.delete_from(&self.dlq_url, &handles).await
    }

    async fn return_dead_letters(&self, messages: &[QueueMessage]) -> Result<(), StoreError> {
        let resend = messages
            .iter()
            .map(|m| OutgoingMessage {
                body: m.body.clone(),
                delay: Duration::zero(),
                trace_header: m.trace_header.clone(),
            })
            .collect();
        self.send_to(&self.queue_url, resend).await?;
        let handles: Vec<&str> = messages.iter().map(|m| m.receipt_handle.as_str()).collect();
        self.delete_from(&self.dlq_url, &handles).await
    }

    async fn delete(&self, receipt_handles: &[String]) -> Result<(), StoreError> {
        // A handle made stale by a later receive here deletes nothing (SQS might still honour it).
        let live: Vec<&String> = receipt_handles.iter().filter(|h| self.held.look_up(h) != Handle::Stale).collect();
        for chunk in live.chunks(BATCH) {
            let mut entries = Vec::with_capacity(chunk.len());
            for (i, handle) in chunk.iter().enumerate() {
                let entry = DeleteMessageBatchRequestEntry::builder().id(i.to_string()).receipt_handle(*handle).build();
                entries.push(entry.map_err(|e| build_error("deleting messages", e))?);
            }
            let mut pending = entries;
            for round in 0..BATCH_ROUNDS {
                if round > 0 {
                    pause::before_round(round).await;
                }
                let out = self
                    .client
                    .delete_message_batch()
                    .queue_url(&self.queue_url)
                    .set_entries(Some(pending.clone()))
                    .send()
                    .await
                    .map_err(|e| from_sdk(&format!("deleting messages from {}", self.queue_url), e))?;
                // A sender fault is a bad or expired handle: nothing to delete, as the port allows.
                let retry: Vec<&str> = out.failed.iter().filter(|f| !f.sender_fault).map(|f| f.id.as_str()).collect();
                if retry.is_empty() {
                    break;
                }
                if round + 1 == BATCH_ROUNDS {
                    return Err(StoreError::Unavailable(
                        format!(
                            "deleting {} messages from {} failed {BATCH_ROUNDS} times",
                            retry.len(),
                            self.queue_url
                        )
                        .into(),
                    ));
                }
                pending.retain(|entry| retry.contains(&entry.id()));
            }
            for handle in chunk {
                self.held.forget(handle);
            }
        }
        Ok(())
    }

    async fn change_visibility(&self, receipt_handle: &str, timeout: Duration) -> Result<(), StoreError> {
        if self.held.look_up(receipt_handle) == Handle::Stale {
            return Err(Self::not_current(receipt_handle));
        }
        self.client
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(seconds(timeout, MAX_VISIBILITY))
            .send()
            .await
            .map_err(|e| from_sdk("changing a message's visibility", e))?;
        Ok(())
    }

    async fn dead_letter(
        &self,
        receipt_handle: &str,
        body: &str,
        trace_header: Option<&str>,
    ) -> Result<(), StoreError> {
        match self.held.look_up(receipt_handle) {
            Handle::Stale => Err(Self::not_current(receipt_handle)),
            Handle::Current(_) | Handle::Unknown => self.dead_letter_message(receipt_handle, body, trace_header).await,
        }
    }

    async fn depth(&self) -> Result<QueueDepth, StoreError> {
        let names = [
            QueueAttributeName::ApproximateNumberOfMessages,
            QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
            QueueAttributeName::ApproximateNumberOfMessagesDelayed,
        ];
        let (queue, dlq) = futures_util::future::try_join(
            attributes(&self.client, &self.queue_url, &names),
            attributes(&self.client, &self.dlq_url, &names),
        )
        .await?;
        Ok(QueueDepth {
            visible: number(&queue, &names[0]),
            in_flight: number(&queue, &names[1]),
            delayed: number(&queue, &names[2]),
            dead_letters: names.iter().map(|name| number(&dlq, name)).sum(),
            // ApproximateAgeOfOldestMessage is a CloudWatch metric, not a queue attribute.
            oldest_sent_at: None,
        })
    }

    fn max_receives(&self) -> u32 {
        self.max_receives
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_sqs_would_refuse_is_sent_as_the_same_json_without_the_characters_it_refuses() {
        let body =
            serde_json::json!({"payload": {"body": "a\u{FFFE}b\u{FFFF}c", "ok": "\u{FFFD}\u{10FFFF}"}}).to_string();
        assert!(body.contains('\u{FFFF}'), "serde_json leaves them as they are: {body}");
        let safe = sqs_safe(&body);
        assert!(!safe.contains(['\u{FFFE}', '\u{FFFF}']), "{safe}");
        let value = |text: &str| serde_json::from_str::<serde_json::Value>(text).expect("JSON");
        assert_eq!(value(&safe), value(&body), "the same JSON value");
        assert!(matches!(sqs_safe("{\"plain\": \"\u{FFFD}\"}"), Cow::Borrowed(_)), "nothing to change: no copy");
    }

    #[test]
    fn durations_round_up_to_whole_seconds_within_limits() {
        assert_eq!(seconds(Duration::zero(), MAX_DELAY), 0);
        assert_eq!(seconds(Duration::milliseconds(1), MAX_DELAY), 1);
        assert_eq!(seconds(Duration::seconds(2), MAX_DELAY), 2);
        assert_eq!(seconds(Duration::seconds(-5), MAX_DELAY), 0);
        assert_eq!(seconds(Duration::hours(1), MAX_DELAY), 900);
        assert_eq!(seconds(Duration::days(2), MAX_VISIBILITY), 43_200);
    }

    #[test]
    fn redrive_policies_parse_with_numbers_or_strings() {
        let arn = "arn:aws:sqs:us-east-1:123456789012:dlq";
        let numeric = format!(r#"{{"deadLetterTargetArn":"{arn}","maxReceiveCount":5}}"#);
        assert_eq!(parse_redrive(&numeric, "q").expect("parse"), (5, arn.to_owned()));
        let text = format!(r#"{{"deadLetterTargetArn":"{arn}","maxReceiveCount":"3"}}"#);
        assert_eq!(parse_redrive(&text, "q").expect("parse").0, 3);
        assert!(parse_redrive("{}", "q").is_err());
    }
}
