//! Archiving a batch's bodies before its messages are processed: one payload-store write for the whole batch (on
//! S3 one object, each body its own byte range) instead of one per new event.

use super::{intake, Engine, EngineError, Incoming, Invocation, Outcome};
use crate::model::{canonical_json, EnvelopeError, Message, PayloadRef};
use std::borrow::Cow;

/// A message of a batch, parsed once, with the body its intake would archive already archived.
#[derive(Debug, Default)]
pub struct Prepared {
    /// The parsed body; `None`: intake parses it.
    pub(super) parsed: Option<Result<Message, EnvelopeError>>,
    /// The body archived ahead (the canonical payload of an envelope, the raw body of a message that will be
    /// rejected); `None`: intake archives what it needs itself.
    pub(super) archived: Option<PayloadRef>,
}

impl Prepared {
    /// Nothing done ahead: the message is parsed and archived by its own intake, as a message alone would be.
    pub fn nothing() -> Self {
        Self::default()
    }
}

impl Engine {
    /// Parses every message of a batch once and archives, in one [`crate::store::PayloadStore::put_batch`], the
    /// body each one's intake would archive if its event is new: the canonical payload of an envelope, the raw
    /// body of a message that is not one (it will be rejected); a re-drive archives nothing. A body whose event
    /// turns out to be known (a redelivery, a duplicate) is stored for nothing: bytes, no extra write.
    ///
    /// When the batch write fails nothing is archived ahead: each message's intake archives its own body, one write
    /// each, exactly as for a message alone, so the batch is processed all the same (and a failure there is
    /// retried as always).
    pub async fn prepare_batch(&self, messages: &[Incoming]) -> Vec<Prepared> {
        let parsed: Vec<_> =
            messages.iter().map(|m| Message::parse(&m.body, self.settings.max_payload_bytes)).collect();
        let bodies: Vec<Option<Cow<'_, [u8]>>> = parsed
            .iter()
            .zip(messages)
            .map(|(parsed, message)| match parsed {
                Ok(Message::Envelope(envelope)) => Some(Cow::Owned(canonical_json(&envelope.payload).into_bytes())),
                Ok(Message::Redrive { .. }) => None,
                Err(_) => Some(Cow::Borrowed(message.body.as_bytes())),
            })
            .collect();
        let to_store: Vec<&[u8]> = bodies.iter().flatten().map(AsRef::as_ref).collect();
        let stored = match self.ports.payloads.put_batch(&to_store, self.now()).await {
            Ok(stored) if stored.len() == to_store.len() => stored,
            Ok(stored) => {
                tracing::warn!(
                    bodies = to_store.len(),
                    references = stored.len(),
                    "the batch archive returned a reference count that does not match; each new event archives its own"
                );
                Vec::new()
            }
            Err(error) => {
                tracing::warn!(
                    error = %error,
                    bodies = to_store.len(),
                    "archiving the batch's bodies in one write failed; each new event archives its own"
                );
                Vec::new()
            }
        };
        let mut stored = stored.into_iter();
        parsed
            .into_iter()
            .zip(&bodies)
            .map(|(parsed, body)| Prepared {
                parsed: Some(parsed),
                archived: body.as_ref().and_then(|_| stored.next()),
            })
            .collect()
    }

    /// Processes one message of a batch, with what [`Engine::prepare_batch`] did for it (or
    /// [`Prepared::nothing`]); otherwise exactly [`Engine::process`].
    pub async fn process_prepared(
        &self,
        message: &Incoming,
        prepared: Prepared,
        invocation: &Invocation,
    ) -> Result<Outcome, EngineError> {
        intake::process(self, message, prepared, invocation).await
    }
}
