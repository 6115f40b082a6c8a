//! The ports the engine needs, with no backend's types in them, and the adapters behind cargo features.
//!
//! Every backend passes one conformance suite (`tests/tests/conformance.rs`). Errors are by meaning
//! ([`StoreError`]); each adapter converts its own.

pub mod dependencies;
mod destination;
pub mod drill;
mod error;
mod events;
pub mod guard;
mod mirror_view;
mod payloads;
mod queue;

#[cfg(feature = "sqlite")]
pub mod sqlite;

#[cfg(feature = "aws")]
pub mod aws;

pub use destination::{ApplyOutcome, Change, Destination, DestinationError};
pub use error::StoreError;
pub use events::{EventQuery, EventStore, Expect, Write};
pub use mirror_view::MirrorView;
pub use payloads::PayloadStore;
pub use queue::{OutgoingMessage, Queue, QueueDepth, QueueMessage};
