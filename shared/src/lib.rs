//! synctrail: tracked, ordered, idempotent event sync.
//!
//! - [`model`]: the envelope, ids, statuses and their transition table, event records and entity heads.
//! - [`engine`]: the protocol of `shared/spec/semantics.md` (idempotency, `latest_wins`, `in_order`), one engine
//!   for every backend.
//! - [`store`]: the ports the engine needs (event store, payload store, queue, destination) and their adapters.
//! - [`clock`]: the injected clock.

pub mod clock;
pub mod engine;
pub mod model;
pub mod settings;
pub mod store;

pub use clock::{Clock, ManualClock, SystemClock};
pub use engine::{Disposition, Engine, EngineError, Incoming, Invocation, Outcome, Ports};

pub use settings::{InvalidSetting, Policy, Settings};
