//! The engine: one implementation of the protocol for every backend (spec §3, §4, §5).
//!
//! [`Engine::process`] takes one queue message and returns what to do with it (ack, retry later, dead-letter).
//! Doors onto it (the Lambda processor, the local runtime, tests) stay thin.

mod archive;
mod attempt;
mod backoff;
mod dead_letters;
pub mod decide;
mod error;
mod intake;
pub mod pacing;
mod read_past;
pub mod reconcile;
mod records;
mod reprocess;
mod routing;
mod settle;
mod sweep;
pub mod verify;

pub use archive::Prepared;
pub use dead_letters::{DeadLetter, DeadLetterReport, DeadLettersSwept, Discarded};
pub use error::EngineError;
pub use reprocess::{Checked, Refusal, ReprocessError, ReprocessOptions, ReprocessReport};
pub use sweep::SweepReport;

use crate::clock::Clock;
use crate::destination::delta_fields::DeltaFields;
use crate::destination::Destination;
use crate::model::{EntityKey, ErrorInfo, EventId, EventRecord, Status};
use crate::settings::Settings;
use crate::store::{EventStore, PayloadStore, Queue};
use chrono::{DateTime, Duration, Utc};
use rand::rngs::SmallRng;
use rand::SeedableRng;
use std::sync::{Arc, Mutex};

/// One message as the engine sees it.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// The queue's message id.
    pub message_id: String,
    /// The body.
    pub body: String,
    /// How often the queue has delivered it, this time included (SQS `ApproximateReceiveCount`).
    pub receive_count: u32,
    /// The X-Ray trace header it carries.
    pub trace_header: Option<String>,
}

/// The invocation processing a message, recorded in every history entry it causes.
#[derive(Debug, Clone, Default)]
pub struct Invocation {
    /// `name:version` of the function.
    pub function: Option<String>,
    /// The request id.
    pub request_id: Option<String>,
    /// The X-Ray trace id.
    pub trace_id: Option<String>,
    /// When the invocation will be stopped; leases end there (plus the clock margin).
    pub deadline: Option<DateTime<Utc>>,
}

/// What to do with the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Done: delete it.
    Ack,
    /// Return it to the queue, visible again after `after`.
    Retry {
        /// The delay before the next delivery.
        after: Duration,
    },
    /// Attempts are exhausted and the event is `failed`: move the message to the dead-letter queue.
    DeadLetter,
}

/// The result of processing one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The event the message carried (for a rejected message, the id it was stored under).
    pub event_id: Option<EventId>,
    /// The event's status afterwards.
    pub status: Option<Status>,
    /// The message was a repeat of an event already done.
    pub redelivered: bool,
    /// What to do with the message.
    pub disposition: Disposition,
    /// What logs and metrics need to know about the event, gathered on the way (no extra store reads).
    pub facts: OutcomeFacts,
}

/// Facts about the event behind an [`Outcome`], filled where the outcome is built; empty when the message named no
/// stored event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutcomeFacts {
    /// The event's entity (its `source` is the metrics' dimension).
    pub entity: Option<EntityKey>,
    /// The event's status when the message arrived; `None` for a new event.
    pub from: Option<Status>,
    /// This message moved the event to the outcome's status (false when it found it there, or when another
    /// invocation moved it meanwhile).
    pub transitioned: bool,
    /// Attempts (claims of the entity) so far.
    pub attempt: u32,
    /// Flagged as a tie (same order key as an earlier event, other content).
    pub tie: bool,
    /// `in_order`: applied although older than the last applied event.
    pub out_of_order: bool,
    /// Superseded events this message marked `canceled`.
    pub canceled: u32,
    /// `updated_at` from the external system.
    pub external_at: Option<DateTime<Utc>>,
    /// When the event's first message arrived.
    pub received_at: Option<DateTime<Utc>>,
    /// When it was applied.
    pub completed_at: Option<DateTime<Utc>>,
    /// How long this attempt's destination write took, until it was settled.
    pub write_duration: Option<Duration>,
}

impl OutcomeFacts {
    /// The facts a record holds (`from`, `transitioned`, `canceled` and `write_duration` left unset).
    fn of(record: &EventRecord) -> Self {
        Self {
            entity: record.entity.clone(),
            attempt: record.attempt,
            tie: record.tie,
            out_of_order: record.out_of_order,
            external_at: record.external_at,
            received_at: Some(record.received_at),
            completed_at: record.completed_at,
            ..Self::default()
        }
    }

    /// The source of the event's entity, when known.
    pub fn source(&self) -> Option<&str> {
        self.entity.as_ref().map(|e| e.source.as_str())
    }
}

impl Outcome {
    fn ack(event_id: &EventId, status: Status) -> Self {
        Self {
            event_id: Some(event_id.clone()),
            status: Some(status),
            redelivered: false,
            disposition: Disposition::Ack,
            facts: OutcomeFacts::default(),
        }
    }

    fn retry(event_id: &EventId, status: Option<Status>, after: Duration) -> Self {
        Self {
            event_id: Some(event_id.clone()),
            status,
            redelivered: false,
            disposition: Disposition::Retry { after: after.max(Duration::seconds(1)) },
            facts: OutcomeFacts::default(),
        }
    }

    /// With the facts `record` holds.
    fn about(mut self, record: &EventRecord) -> Self {
        self.facts = OutcomeFacts::of(record);
        self
    }

    /// Marks the outcome's status as this message's doing.
    fn transitioned(mut self) -> Self {
        self.facts.transitioned = true;
        self
    }

    /// Records the status the event had when the message arrived (`None`: it was new).
    fn arrived_from(mut self, from: Option<Status>) -> Self {
        self.facts.from = from;
        self
    }
}

/// The ports the engine works through.
#[derive(Clone)]
pub struct Ports {
    /// Event records and heads.
    pub store: Arc<dyn EventStore>,
    /// Archived payloads.
    pub payloads: Arc<dyn PayloadStore>,
    /// The ingest queue (promotions and re-drives are sent here).
    pub queue: Arc<dyn Queue>,
    /// Where changes are applied.
    pub destination: Arc<dyn Destination>,
    /// The time.
    pub clock: Arc<dyn Clock>,
}

/// The protocol engine.
pub struct Engine {
    ports: Ports,
    settings: Settings,
    rng: Mutex<SmallRng>,
    /// How the reference mirror adds `in_order` deltas: the rules verification replays events with.
    delta_fields: DeltaFields,
}

impl Engine {
    /// An engine over `ports` with `settings`; retry jitter is seeded from the OS.
    pub fn new(ports: Ports, settings: Settings) -> Self {
        Self { ports, settings, rng: Mutex::new(SmallRng::from_os_rng()), delta_fields: DeltaFields::default() }
    }

    /// Replays `in_order` events with `delta_fields` when verifying (the mirror's configuration; default: `delta`
    /// into `quantity`).
    pub fn with_delta_fields(mut self, delta_fields: DeltaFields) -> Self {
        self.delta_fields = delta_fields;
        self
    }

    /// Seeds the retry jitter, for reproducible simulations.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.rng = Mutex::new(SmallRng::seed_from_u64(seed));
        self
    }

    /// The engine's settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The engine's ports.
    pub fn ports(&self) -> &Ports {
        &self.ports
    }

    /// Processes one message: parses it, records it, decides its fate and, when it claims its entity, applies it.
    pub async fn process(&self, message: &Incoming, invocation: &Invocation) -> Result<Outcome, EngineError> {
        intake::process(self, message, Prepared::nothing(), invocation).await
    }

    /// Records an authenticated body that is not an envelope (a signed webhook that could not be mapped) as
    /// `rejected` with `error`, its raw bytes archived, exactly as a queue message with that body would be: under
    /// [`EventId::for_rejected`] of the bytes, so a redelivery of the same body lands on the same record (counted
    /// as redelivered, nothing archived twice). `received_as` names the delivery (kept as the last message id).
    pub async fn reject_body(
        &self,
        body: &[u8],
        error: ErrorInfo,
        received_as: &str,
        invocation: &Invocation,
    ) -> Result<Outcome, EngineError> {
        let raw = intake::Raw { bytes: body, received_as, archived: None };
        intake::reject_raw(self, raw, invocation, error, None).await
    }

    fn now(&self) -> DateTime<Utc> {
        self.ports.clock.now()
    }
}
