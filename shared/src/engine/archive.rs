//! Preparing a batch before its messages are processed: its events' records and heads read ahead in one request
//! where the store can, and its bodies archived in one payload-store write (on S3 one object, each body its own
//! byte range) instead of one per new event.

use super::{intake, Engine, EngineError, Incoming, Invocation, Outcome};
use crate::model::{canonical_json, EntityHead, EntityKey, EnvelopeError, EventId, EventRecord, Message, PayloadRef};
use std::borrow::Cow;

/// An arriving event's record and its entity's head, as read ahead for its batch.
pub(super) type ReadAhead = (Option<EventRecord>, Option<EntityHead>);

/// A message of a batch, parsed once, with the body its intake would archive already archived.
#[derive(Debug, Default)]
pub struct Prepared {
    /// The parsed body; `None`: intake parses it.
    pub(super) parsed: Option<Result<Message, EnvelopeError>>,
    /// The body archived ahead (the canonical payload of an envelope, the raw body of a message that will be
    /// rejected); `None`: intake archives what it needs itself.
    pub(super) archived: Option<PayloadRef>,
    /// An envelope's record and head read ahead with the batch's (`None`: intake reads them). Boxed: a `Prepared`
    /// is carried by value into the record's future, whose every level would otherwise hold these ≈ 1.5 KB.
    pub(super) read: Option<Box<ReadAhead>>,
}

impl Prepared {
    /// Nothing done ahead: the message is parsed and archived by its own intake, as a message alone would be.
    pub fn nothing() -> Self {
        Self::default()
    }
}

impl Engine {
    /// Parses every message of a batch once, reads its envelopes' records and heads ahead where the store does
    /// ([`crate::store::EventStore::read_ahead`]: one request on DynamoDB), and archives, in one
    /// [`crate::store::PayloadStore::put_batch`], the body each one's intake would archive if its event is new: the
    /// canonical payload of an envelope not recorded already with the same content, the raw body of a message that
    /// is not one (it will be rejected); a re-drive archives nothing. A body whose event turns out to be known
    /// otherwise (a redelivery the store did not read ahead, a duplicate) is stored for nothing: bytes, no extra
    /// write.
    ///
    /// When the batch write fails nothing is archived ahead: each message's intake archives its own body, one write
    /// each, exactly as for a message alone, so the batch is processed all the same (and a failure there is
    /// retried as always).
    pub async fn prepare_batch(&self, messages: &[Incoming]) -> Vec<Prepared> {
        let parsed: Vec<_> =
            messages.iter().map(|m| Message::parse(&m.body, self.settings.max_payload_bytes)).collect();
        let mut read = self.read_batch_ahead(&parsed).await;
        let bodies: Vec<Option<Cow<'_, [u8]>>> = parsed
            .iter()
            .zip(messages)
            .zip(&read)
            .map(|((parsed, message), read)| match parsed {
                // Known with the same content: its payload is archived already.
                Ok(Message::Envelope(envelope))
                    if read
                        .as_ref()
                        .and_then(|(record, _)| record.as_ref())
                        .is_some_and(|record| record.content_hash == Some(envelope.content_hash)) =>
                {
                    None
                }
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
            .zip(read.iter_mut())
            .map(|((parsed, body), read)| Prepared {
                parsed: Some(parsed),
                archived: body.as_ref().and_then(|_| stored.next()),
                read: read.take().map(Box::new),
            })
            .collect()
    }

    /// The records and heads of the batch's envelopes and of its re-drives that name their entity, one per
    /// message: `None` for the other messages, for one whose entity an earlier one in the batch names (it reads its
    /// own when it runs: by then the earlier one has moved the head on, and a head read ahead would only make its
    /// first round a conflict), and for all when the store reads nothing ahead or the read failed.
    async fn read_batch_ahead(&self, parsed: &[Result<Message, EnvelopeError>]) -> Vec<Option<ReadAhead>> {
        let mut entities = std::collections::HashSet::new();
        let wanted_of: Vec<Option<(&EventId, &EntityKey)>> = parsed
            .iter()
            .map(|p| match p {
                Ok(Message::Envelope(envelope)) => Some((&envelope.event_id, &envelope.entity)),
                Ok(Message::Redrive { event_id, entity: Some(entity), .. }) => Some((event_id, entity)),
                _ => None,
            })
            .map(|wanted| wanted.filter(|(_, entity)| entities.insert(*entity)))
            .collect();
        let first_of_entity: Vec<bool> = wanted_of.iter().map(Option::is_some).collect();
        let wanted: Vec<_> =
            wanted_of.into_iter().flatten().map(|(event_id, entity)| (event_id.clone(), entity.clone())).collect();
        if wanted.is_empty() {
            return parsed.iter().map(|_| None).collect();
        }
        let mut read = match self.ports.store.read_ahead(&wanted).await {
            Ok(Some(read)) if read.len() == wanted.len() => read.into_iter(),
            Ok(_) => Vec::new().into_iter(),
            Err(error) => {
                tracing::warn!(error = %error, events = wanted.len(), "reading the batch's events ahead failed; each reads its own");
                Vec::new().into_iter()
            }
        };
        first_of_entity.iter().map(|first| if *first { read.next() } else { None }).collect()
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
