//! The engine's errors.

use crate::model::{EventId, IllegalTransition};
use crate::store::StoreError;

/// Why the engine could not process a message. Every variant leaves the message to be retried: nothing
/// acknowledged is lost.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A port failed.
    #[error("storage failed: {0}")]
    Store(#[from] StoreError),
    /// A status change the transition table forbids: a bug.
    #[error(transparent)]
    IllegalTransition(#[from] IllegalTransition),
    /// An event's stored payload is missing or does not match its SHA-256.
    #[error("event {event_id}: its archived payload can't be used ({source}); restore the payload object or reprocess from the source system")]
    Payload {
        /// The event.
        event_id: EventId,
        /// What the payload store said.
        source: StoreError,
    },
    /// A stored record lacks what the protocol needs (a bug or a hand-edited store).
    #[error("event {0}: stored record is incomplete ({1})")]
    Incomplete(EventId, &'static str),
    /// The entity's head kept changing under us.
    #[error("entity {0}: gave up after {1} compare-and-set rounds; the entity is very hot, retry later")]
    Contended(String, u32),
}

impl EngineError {
    /// A stable name of the error, for machines (a Lambda's `errorType`): the store's [`StoreError::code`], or
    /// `IllegalTransition`, `PayloadUnusable`, `IncompleteRecord`, `EntityContended`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Store(e) => e.code(),
            Self::IllegalTransition(_) => "IllegalTransition",
            Self::Payload { .. } => "PayloadUnusable",
            Self::Incomplete(..) => "IncompleteRecord",
            Self::Contended(..) => "EntityContended",
        }
    }

    /// Whether a later retry may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Store(e) => e.is_retryable(),
            Self::Contended(..) => true,
            Self::IllegalTransition(_) | Self::Payload { .. } | Self::Incomplete(..) => false,
        }
    }
}
