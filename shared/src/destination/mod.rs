//! The destination port: where changes are applied — the one trait a team implements to put synctrail in front of
//! its own database, ERP or API — and what surrounds it: the reference mirror's rules ([`guard`]) and which fields
//! its `in_order` deltas add ([`delta_fields`]), the mirror's operator view ([`MirrorView`]), destinations
//! answering "missing dependency" by rule ([`dependencies`]), fault drills ([`drill`]), the built-in HTTP
//! destination ([`http`], feature `http`), routing by direction ([`ByDirection`]) and the outbound connectors that
//! write our changes to GitHub and Shopify ([`connectors`], feature `http`; docs/connectors.md).
//!
//! # The contract
//!
//! The engine calls [`Destination::apply`] once per attempt of an event that holds its entity's lease (spec §4):
//! never two events of one entity at the same time, and never an event older than one already applied
//! (`latest_wins`). What the destination must do:
//!
//! - **Idempotency key**: [`Change::event_id`]. An event may be applied more than once (a crash after the write and
//!   before the engine recorded it, a timeout whose write landed): the second time must have no second effect —
//!   answer [`ApplyOutcome::AlreadyApplied`]. When [`Change::previous_attempt_unknown`] is set, an earlier attempt
//!   of this very event may have written: look before writing (e.g. by the event id stored with the row). A
//!   [`Change::forced`] snapshot is the exception: an operator asks for it to be written again (`reprocess --force`,
//!   `verify --repair` putting back a lost or altered state), so write it even if it was applied before, keeping one
//!   effect; a forced `in_order` delta is still added only once.
//! - **Order guard**: when the destination stores the order key ([`Change::order`]) with each row, write only
//!   `... WHERE stored_order < new_order` and answer [`ApplyOutcome::Superseded`] otherwise; this keeps a stale
//!   write out even if two writers race (spec §4.5). [`Change::fence`] grows with every claim of the entity: a
//!   destination that stores it can refuse a paused writer's late write too.
//! - **Outcomes**: [`ApplyOutcome::Applied`] (written now), [`ApplyOutcome::AlreadyApplied`] (this event was
//!   written before), [`ApplyOutcome::Superseded`] (something newer is there: the event ends `dropped`, pointing
//!   at `by`), [`ApplyOutcome::MissingDependency`] (another entity must exist first: the event waits, spec §6),
//!   [`ApplyOutcome::Written`] (written now, or found written by an earlier attempt, to an external system that
//!   will echo the change back in a webhook: what it holds now, so the engine recognises the echo, spec §10).
//! - **Errors**: [`DestinationError::Retryable`] when a later attempt may succeed (down, timed out, a 5xx: the
//!   event is retried with backoff, then ends `failed` once its attempts are used up);
//!   [`DestinationError::Throttled`] when the destination asks to slow down (a 429, a rate limit): the event is
//!   retried after the requested delay and the attempt does not count toward `failed` (the queue's receive count
//!   still bounds it); [`DestinationError::Permanent`] when it never will succeed (the change is invalid for this
//!   destination: the event ends `failed` at once). Both retryable variants may carry the delay the destination
//!   asked for (`Retry-After`, a rate limit's reset): the engine waits that long instead of its backoff — a
//!   retryable error at most `backoff_max`, a throttled one at most 11 hours (SQS hides a message at most 12, counted from its receive). A
//!   panic counts as retryable.
//! - **Time**: [`Change::deadline`] is when the invocation will be stopped: a call that is still running then is
//!   cut off with an unknown outcome, so a destination that waits on a network should give up before it.
//! - **Direction**: [`Change::direction`] says whether the change came from an external system (`inbound`: store
//!   it on our side) or is our own change to write into one (`outbound`). [`ByDirection`] sends each to its own
//!   destination; a destination that serves both may look at it itself.
//! - Nothing else: the engine records statuses, history and metrics. Keep `apply` free of side effects on other
//!   entities; a change that needs another entity says so with `MissingDependency`.
//!
//! [`Destination::read`] is optional: it returns what the destination holds for one entity, for `reconcile` and
//! `verify` ([`read`]). Its default answers [`ReadError::Unsupported`], and both refuse with that reason.

mod by_direction;
#[cfg(feature = "http")]
pub mod connectors;
pub mod delta_fields;
pub mod dependencies;
pub mod drill;
pub mod guard;
#[cfg(feature = "http")]
pub mod http;
mod mirror_view;
pub mod read;

pub use by_direction::ByDirection;
pub use mirror_view::MirrorView;
pub use read::{DestinationRecord, ReadError};

use crate::model::{ContentHash, Direction, EntityKey, EventId, ExternalWrite, Kind, OrderKey};
use crate::settings::Policy;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::time::Duration;

/// One change to apply, with what the destination needs to refuse stale or fenced-off writes.
#[derive(Debug, Clone, Copy)]
pub struct Change<'a> {
    /// The event.
    pub event_id: &'a EventId,
    /// The entity.
    pub entity: &'a EntityKey,
    /// The event's order key: a `latest_wins` write is refused when the destination holds a newer one.
    pub order: OrderKey,
    /// `updated_at`: a `latest_wins` write is refused when a local edit is newer.
    pub updated_at: Option<DateTime<Utc>>,
    /// The content hash.
    pub content_hash: ContentHash,
    /// `upsert`, `delete` or `create`.
    pub kind: Kind,
    /// `inbound` (from an external system, to store on our side) or `outbound` (ours, to write into one).
    pub direction: Direction,
    /// The resource's state (or, for `in_order` types, the delta).
    pub payload: &'a Value,
    /// The claim's fencing token: a write is refused when the destination saw a newer one.
    pub fence: u64,
    /// Snapshot or delta semantics.
    pub policy: Policy,
    /// Whether ordering was skipped on purpose (`reprocess --force`, `verify --repair`): write even if older, and a
    /// snapshot even if this event was applied before.
    pub forced: bool,
    /// This attempt's number for the event (1 for the first).
    pub attempt: u32,
    /// An earlier attempt of this event reached the destination and its outcome is unknown (the invocation died
    /// after the call, or the call failed in a way that does not prove nothing was written: a timeout, a 5xx).
    /// Check whether the event was already applied before writing it again.
    pub previous_attempt_unknown: bool,
    /// When the invocation applying the change will be stopped (`None` when unknown): give up waiting before it.
    pub deadline: Option<DateTime<Utc>>,
    /// The invocation's trace header (X-Ray `Root=…;Parent=…;Sampled=…`), to pass on to a destination that traces.
    pub trace_id: Option<&'a str>,
}

/// What the destination did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// Written now.
    Applied,
    /// This very event was written before (a retry after a crash): no second effect.
    AlreadyApplied,
    /// The destination holds something newer; nothing was written. `by` names it (an event id or record ref).
    Superseded {
        /// The newer event or record.
        by: String,
    },
    /// The change needs another entity that does not exist yet (spec §6); nothing was written. The event waits
    /// until an event of `key` completes.
    MissingDependency {
        /// The entity it needs.
        key: EntityKey,
        /// An envelope (JSON text) to send to obtain it, e.g. a fetch-and-create request; `None` when the
        /// dependency will arrive by itself.
        request: Option<String>,
    },
    /// Written to an external system that sends its changes back (a webhook) — now, or by an earlier attempt of
    /// this event that the destination found. What the system holds now: the engine records it on the event and
    /// keeps it on the entity's head to recognise the echo (spec §10).
    Written(ExternalWrite),
}

/// A destination's failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DestinationError {
    /// A retry may succeed (the destination is down, timing out, failing with a 5xx). The attempt counts toward
    /// the event's `failed`.
    #[error("destination failed, will retry: {message}")]
    Retryable {
        /// What happened.
        message: String,
        /// The delay the destination asked for (`Retry-After`), used instead of the engine's backoff.
        retry_after: Option<Duration>,
    },
    /// The destination asked to slow down (HTTP 429, a rate limit): retried after `retry_after` (or the backoff),
    /// and the attempt does not count toward the event's `failed`.
    #[error("destination throttled the change, will retry: {message}")]
    Throttled {
        /// What happened.
        message: String,
        /// The delay the destination asked for (`Retry-After`), used instead of the engine's backoff.
        retry_after: Option<Duration>,
    },
    /// The destination refused the change for good.
    #[error("destination refused the change: {0}")]
    Permanent(String),
}

impl DestinationError {
    /// A retryable failure without a requested delay.
    pub fn retryable(message: impl Into<String>) -> Self {
        Self::Retryable { message: message.into(), retry_after: None }
    }

    /// A throttled answer, retried after `retry_after` when given.
    pub fn throttled(message: impl Into<String>, retry_after: Option<Duration>) -> Self {
        Self::Throttled { message: message.into(), retry_after }
    }

    /// The delay the destination asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Retryable { retry_after, .. } | Self::Throttled { retry_after, .. } => *retry_after,
            Self::Permanent(_) => None,
        }
    }
}

/// Where changes are applied.
#[async_trait]
pub trait Destination: Send + Sync {
    /// Applies one change, conditionally on its order key and fencing token.
    async fn apply(&self, change: &Change<'_>) -> Result<ApplyOutcome, DestinationError>;

    /// What the destination holds for `entity` (`None`: nothing, never written). The default says this destination
    /// can't read ([`ReadError::unsupported`]).
    async fn read(&self, entity: &EntityKey) -> Result<Option<DestinationRecord>, ReadError> {
        let _ = entity;
        Err(ReadError::unsupported())
    }

    /// Whether changes going `direction` are applied where [`Destination::read`] reads: verification replays only
    /// those (and repairs only those). The default: every change is; with an outbound connector, outbound changes
    /// go to the external system instead ([`ByDirection`]).
    fn reads_back(&self, direction: Direction) -> bool {
        let _ = direction;
        true
    }
}
