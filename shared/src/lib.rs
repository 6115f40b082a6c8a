//! synctrail: tracked, ordered, idempotent event sync.
//!
//! - [`model`]: the envelope, ids, statuses and their transition table, event records and entity heads.
//! - [`engine`]: the protocol of `docs/semantics.md` (idempotency, `latest_wins`, `in_order`), one engine
//!   for every backend.
//! - [`destination`]: where changes are applied — the port a team implements, the reference mirror's rules,
//!   dependency rules and fault drills.
//! - [`store`]: the storage ports the engine needs (event store, payload store, queue) and their adapters.
//! - [`config`] and [`compose`]: configuration read once into one typed value, and the one builder that turns it
//!   into the engine's ports for every function and the CLI.
//! - [`ingress`]: webhook signatures and the mapping of GitHub, Shopify and configured deliveries to envelopes.
//! - [`secrets`]: secrets named by reference (`…_ARN`), read from Secrets Manager once at a cold start.
//! - [`clock`]: the injected clock.

pub mod clock;
pub mod compose;
pub mod config;
pub mod destination;
pub mod engine;
pub mod ingress;
pub mod model;
pub mod secrets;
pub mod settings;
pub mod store;

pub use clock::{Clock, ManualClock, SystemClock};
pub use destination::{ApplyOutcome, Change, Destination, DestinationError};
pub use engine::{Disposition, Engine, EngineError, Incoming, Invocation, Outcome, Ports};

pub use settings::{InvalidSetting, Policy, Settings};
